//! Publish throughput and queue cost: how fast the agent drains a backlog.
//!
//! ```text
//! cargo bench --bench publish            # 20,000 queued health reports
//! cargo bench --bench publish -- --quick # 2,000 (what `cargo test` runs)
//! ```
//!
//! A real queue is filled with realistic health reports (as after a WAN
//! outage), then the agent's real reporter drains it into a local mosquitto.
//! Throughput counts PUBACKs, i.e. reports the broker has taken responsibility
//! for (a subscriber would measure itself: mosquitto drops QoS 1 messages for
//! a subscriber more than `max_queued_messages` behind). Prints one table;
//! asserts nothing about timing.

#[path = "../tests/support/mod.rs"]
#[allow(dead_code)]
mod support;

#[path = "shared/backlog.rs"]
mod backlog;

use support::mosquitto::Mosquitto;

const AGENT: &str = "bench-gw";

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let quick = !args.iter().any(|a| a == "--bench") || args.iter().any(|a| a == "--quick");
    let records: u64 = if quick { 2_000 } else { 20_000 };
    cpe_agent::logging::init(tracing::Level::WARN);
    let broker = Mosquitto::start();
    let dir = support::temp_dir("bench-publish");
    let backlog = backlog::fill(AGENT, broker.port(), dir.path(), records);
    let (payload_bytes, fill_time) = (backlog.payload_bytes, backlog.fill_time);
    let (disk_bytes, index_bytes) = (backlog.disk_bytes, backlog.index_bytes);
    let drain_time = backlog::drain(backlog);

    let per_s = records as f64 / drain_time.as_secs_f64();
    println!(
        "publish benchmark{}: {records} queued health reports, mosquitto on loopback, QoS 1",
        if quick { " (--quick)" } else { "" }
    );
    println!("  {:<38} {:>14}", "measure", "value");
    println!(
        "  {:<38} {:>14.0}",
        "mean JSON payload (bytes)",
        payload_bytes as f64 / records as f64
    );
    println!(
        "  {:<38} {:>14.0}",
        "queue disk per report (bytes)",
        disk_bytes as f64 / records as f64
    );
    println!(
        "  {:<38} {:>14.1}",
        "queue RAM index per report (bytes)",
        index_bytes as f64 / records as f64
    );
    println!(
        "  {:<38} {:>14.0}",
        "enqueue rate (reports/s)",
        records as f64 / fill_time.as_secs_f64()
    );
    println!(
        "  {:<38} {:>14.2}",
        "drain time (s)",
        drain_time.as_secs_f64()
    );
    println!("  {:<38} {:>14.0}", "publish throughput (reports/s)", per_s);
    println!(
        "  {:<38} {:>14.2}",
        "publish throughput (MB/s of JSON)",
        per_s * payload_bytes as f64 / records as f64 / 1e6
    );
}
