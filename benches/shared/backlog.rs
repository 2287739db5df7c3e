//! A backlog as a WAN outage leaves it, and its drain: shared by
//! `benches/publish.rs` and the publish section of `benches/compare.rs`.
//!
//! A real disk queue is filled with realistic health reports of 50 devices
//! while no broker is connected; then the agent's real reporter
//! (`report::run`) drains it into a local mosquitto with QoS 1. A report
//! counts when the broker PUBACKs it.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use cpe_agent::config::Config;
use cpe_agent::report::queue::{Class, Queue, QueueOptions};

/// A filled queue, ready to drain.
pub struct Backlog {
    agent_id: String,
    config: Config,
    queue: Queue,
    pub records: u64,
    /// JSON bytes of all reports (before the queue's compression).
    pub payload_bytes: u64,
    pub fill_time: Duration,
    /// The queue's size on disk and its RAM index, when full.
    pub disk_bytes: u64,
    pub index_bytes: usize,
}

/// Fills a queue in `dir` with `records` health reports for an agent that
/// will publish to mosquitto on 127.0.0.1:`broker_port`.
pub fn fill(agent_id: &str, broker_port: u16, dir: &Path, records: u64) -> Backlog {
    let mut config = Config::default();
    config.agent.id = Some(agent_id.into());
    config.mqtt.host = "127.0.0.1".into();
    config.mqtt.port = broker_port;
    config.storage.state_dir = dir.to_path_buf();
    config.polling.interval = cpe_agent::config::HumanDuration(Duration::from_secs(3600));
    let (mut queue, _) =
        Queue::open(dir, QueueOptions::from_storage(&config.storage)).expect("open the queue");
    let started = Instant::now();
    let mut payload_bytes = 0u64;
    for i in 0..records {
        let device = format!("sn-bench-{:04}", i % 50);
        let topic = format!("cpe/v1/{agent_id}/devices/{device}/health");
        queue
            .push(Class::Health, &topic, false, |seq| {
                let body = health_payload(agent_id, &device, seq);
                payload_bytes += body.len() as u64;
                body.into_bytes()
            })
            .expect("push");
    }
    queue.sync().expect("sync");
    let fill_time = started.elapsed();
    Backlog {
        agent_id: agent_id.into(),
        disk_bytes: queue.stats().bytes,
        index_bytes: queue.index_heap_bytes(),
        config,
        queue,
        records,
        payload_bytes,
        fill_time,
    }
}

/// Runs the reporter until the broker has acknowledged every queued report
/// (and the agent's birth status and own health); returns the wall time.
/// Panics when that takes more than 300 s.
pub fn drain(backlog: Backlog) -> Duration {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let (config_tx, config_rx) = tokio::sync::watch::channel(Arc::new(backlog.config));
    let (trigger, shutdown) = cpe_agent::shutdown::channel();
    let (_reports_tx, reports_rx) = tokio::sync::mpsc::channel(16);
    let published = || cpe_agent::metrics::get(&cpe_agent::metrics::MQTT_PUBLISHED);
    let wanted = published() + backlog.records + 2;
    let started = Instant::now();
    let drained = runtime.block_on(async {
        let reporter = tokio::spawn(cpe_agent::report::run(
            backlog.agent_id,
            config_rx,
            reports_rx,
            backlog.queue,
            cpe_agent::report::Links::unused(),
            shutdown,
        ));
        let deadline = Instant::now() + Duration::from_secs(300);
        while published() < wanted && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let elapsed = started.elapsed();
        let done = published() >= wanted;
        trigger.fire();
        let _ = reporter.await;
        done.then_some(elapsed)
    });
    drop(config_tx);
    drained.unwrap_or_else(|| {
        panic!(
            "the backlog of {} reports was not delivered within 300 s",
            backlog.records
        )
    })
}

/// A health report like a 7-interface router's.
pub fn health_payload(agent_id: &str, device: &str, seq: u64) -> String {
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
        "schema": "cpe-agent/health/1", "ts": "2026-11-23T16:38:14.352Z", "agent_id": agent_id,
        "device_id": device, "seq": seq, "reachable": true, "latency_ms": 1.5, "uptime_s": 285_635.57,
        "missed_polls": 0, "rebooted": false, "interfaces": interfaces, "cpu_percent": 12.5, "memory_percent": 40.1
    })
    .to_string()
}
