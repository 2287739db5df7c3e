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

use std::sync::Arc;
use std::time::{Duration, Instant};

use cpe_agent::config::Config;
use cpe_agent::queue::{Class, Queue, QueueOptions};
use support::mosquitto::Mosquitto;

const AGENT: &str = "bench-gw";

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let quick = !args.iter().any(|a| a == "--bench") || args.iter().any(|a| a == "--quick");
    let records: u64 = if quick { 2_000 } else { 20_000 };
    cpe_agent::logging::init(tracing::Level::WARN);
    let broker = Mosquitto::start();
    let dir = support::temp_dir("bench-publish");

    // A backlog as a WAN outage leaves it: health reports of 50 devices.
    let mut config = Config::default();
    config.agent.id = Some(AGENT.into());
    config.mqtt.host = "127.0.0.1".into();
    config.mqtt.port = broker.port();
    config.storage.state_dir = dir.path().to_path_buf();
    config.polling.interval = cpe_agent::config::HumanDuration(Duration::from_secs(3600));
    let (mut queue, _) = Queue::open(dir.path(), QueueOptions::from_storage(&config.storage))
        .expect("open the queue");
    let filled = Instant::now();
    let mut payload_bytes = 0u64;
    for i in 0..records {
        let device = format!("sn-bench-{:04}", i % 50);
        let topic = format!("cpe/v1/{AGENT}/devices/{device}/health");
        queue
            .push(Class::Health, &topic, false, |seq| {
                let body = health_payload(&device, seq);
                payload_bytes += body.len() as u64;
                body.into_bytes()
            })
            .expect("push");
    }
    queue.sync().expect("sync");
    let fill_time = filled.elapsed();
    let stats = queue.stats();
    let index_bytes = queue.index_heap_bytes();

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let (config_tx, config_rx) = tokio::sync::watch::channel(Arc::new(config));
    let (trigger, shutdown) = cpe_agent::shutdown::channel();
    let (_reports_tx, reports_rx) = tokio::sync::mpsc::channel(16);
    let acked_before = cpe_agent::metrics::get(&cpe_agent::metrics::MQTT_PUBLISHED);
    let started = Instant::now();
    let drained = runtime.block_on(async {
        let reporter = tokio::spawn(cpe_agent::report::run(
            AGENT.into(),
            config_rx,
            reports_rx,
            queue,
            cpe_agent::report::Links::unused(),
            shutdown,
        ));
        // The birth status and the agent's own health are acknowledged too.
        let wanted = acked_before + records + 2;
        let deadline = Instant::now() + Duration::from_secs(300);
        while cpe_agent::metrics::get(&cpe_agent::metrics::MQTT_PUBLISHED) < wanted
            && Instant::now() < deadline
        {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let elapsed = started.elapsed();
        let done = cpe_agent::metrics::get(&cpe_agent::metrics::MQTT_PUBLISHED) >= wanted;
        trigger.fire();
        let _ = reporter.await;
        done.then_some(elapsed)
    });
    drop(config_tx);
    let Some(drain_time) = drained else {
        panic!("the backlog of {records} reports was not delivered within 300 s");
    };

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
        stats.bytes as f64 / records as f64
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

/// A health report like a 7-interface router's.
fn health_payload(device: &str, seq: u64) -> String {
    let interfaces: Vec<serde_json::Value> = (1..=7)
        .map(|i| {
            serde_json::json!({
                "index": i, "name": format!("ether{i}"), "admin_status": "up", "oper_status": "up",
                "in_bps": 169_402.0 * f64::from(i), "out_bps": 1_448_056.24, "in_errors_per_s": 0.0,
                "out_errors_per_s": 0.0, "in_discards_per_s": 0.0, "out_discards_per_s": 0.0
            })
        })
        .collect();
    serde_json::json!({
        "schema": "cpe-agent/health/1", "ts": "2026-11-23T16:38:14.352Z", "agent_id": AGENT,
        "device_id": device, "seq": seq, "reachable": true, "latency_ms": 1.5, "uptime_s": 285_635.57,
        "missed_polls": 0, "rebooted": false, "interfaces": interfaces, "cpu_percent": 12.5, "memory_percent": 40.1
    })
    .to_string()
}
