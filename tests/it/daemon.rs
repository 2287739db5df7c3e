//! The daemon's lifecycle against a real broker and simulated devices:
//! start, report, reload on SIGHUP (refusing a broken file), exit on SIGTERM.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;

use crate::agent::Daemon;
use crate::support::mosquitto::{Message, Mosquitto};
use crate::support::snmpsim::SnmpSim;
use crate::support::{self, project_data_dir};

const AGENT_ID: &str = "it-gateway";

struct Lab {
    broker: Mosquitto,
    sim: SnmpSim,
    dir: tempfile::TempDir,
}

impl Lab {
    /// A broker and the project's modem and router on 127.0.1.{first,first+1}.
    fn start(first_host: u8) -> Lab {
        let recordings = [
            project_data_dir().join("docsis-modem.snmprec"),
            project_data_dir().join("soho-router.snmprec"),
        ];
        Lab {
            broker: Mosquitto::start(),
            sim: SnmpSim::start_lan(&recordings, "127.0.1", first_host),
            dir: support::temp_dir("daemon"),
        }
    }

    fn config(&self, polling_interval: &str) -> String {
        let addrs = self.sim.endpoints();
        let first = addrs.first().expect("a device").ip();
        let last = addrs.last().expect("a device").ip();
        format!(
            "[agent]\nid = \"{AGENT_ID}\"\n\n[mqtt]\nhost = \"127.0.0.1\"\nport = {}\n\n\
             [discovery]\nlan_subnets = false\ntargets = [\"{first}-{last}:{}\"]\ntimeout = \"300ms\"\n\n\
             [polling]\ninterval = \"{polling_interval}\"\ntimeout = \"500ms\"\n\n\
             [storage]\nstate_dir = \"{}\"\n",
            self.broker.port(),
            self.sim.port(),
            self.dir.path().join("state").display(),
        )
    }

    fn write_config(&self, text: &str) -> PathBuf {
        let path = self.dir.path().join("agent.toml");
        std::fs::write(&path, text).expect("write config");
        path
    }

    fn daemon(&self, config: &Path) -> Daemon {
        Daemon::start(config, self.dir.path().join("agent.log"))
    }
}

fn is(message: &Message, leaf: &str) -> bool {
    message.topic.starts_with(&format!("cpe/v1/{AGENT_ID}/")) && message.topic.ends_with(leaf)
}

#[test]
fn daemon_reports_reloads_and_shuts_down_cleanly() {
    let lab = Lab::start(31);
    let mut sub = lab.broker.subscribe(&format!("cpe/v1/{AGENT_ID}/#"));
    let config = lab.write_config(&lab.config("1s"));
    let mut daemon = lab.daemon(&config);

    // Birth, then inventory for both devices, then health.
    let birth = sub.expect_message(Duration::from_secs(10), |m| is(m, "/status"));
    if birth.json()["state"] != "online" {
        std::thread::sleep(Duration::from_secs(1));
        panic!("first status {}\n{}", birth.text(), daemon.log());
    }
    assert_eq!(birth.json()["agent_id"], AGENT_ID);
    let mut inventories = std::collections::BTreeSet::new();
    let mut healthy = std::collections::BTreeSet::new();
    let seen = sub.messages_until(Duration::from_secs(15), |m| {
        if is(m, "/inventory") {
            inventories.insert(m.topic.clone());
        }
        if is(m, "/health") && m.json()["reachable"] == true {
            healthy.insert(m.json()["device_id"].to_string());
        }
        inventories.len() == 2 && healthy.len() == 2
    });
    assert_eq!((inventories.len(), healthy.len()), (2, 2), "got {seen:?}");

    // Health carries what each kind has: rates from counter deltas from the
    // second poll on, DOCSIS levels for the modem, CPU and memory for the router.
    let router = sub.expect_message(Duration::from_secs(10), |m| {
        is(m, "/health")
            && m.json()["cpu_percent"].is_number()
            && m.json()["interfaces"].as_array().is_some_and(|ifs| {
                ifs.iter()
                    .any(|i| i["in_bps"].as_f64().is_some_and(|r| r > 0.0))
            })
    });
    assert!(
        router.json()["memory_percent"].is_number(),
        "{}",
        router.text()
    );
    assert_eq!(router.json()["rebooted"], false);
    let modem = sub.expect_message(Duration::from_secs(10), |m| {
        is(m, "/health") && m.json()["docsis"].is_object()
    });
    let docsis = &modem.json()["docsis"];
    assert_eq!(
        docsis["downstream"].as_array().map(Vec::len),
        Some(8),
        "{}",
        modem.text()
    );
    assert!(
        docsis["downstream"][0]["power_dbmv"].is_number()
            && docsis["downstream"][0]["snr_db"].is_number()
    );
    assert_eq!(
        docsis["upstream"].as_array().map(Vec::len),
        Some(4),
        "{}",
        modem.text()
    );

    // A valid change is taken on SIGHUP.
    lab.write_config(&lab.config("2s"));
    daemon.signal(Signal::SIGHUP);
    daemon.wait_log("config reloaded", 1, Duration::from_secs(5));

    // A broken file is refused with its location, and the agent runs on.
    lab.write_config(
        &lab.config("2s")
            .replace("interval = \"2s\"", "interval = \"soon\""),
    );
    daemon.signal(Signal::SIGHUP);
    daemon.wait_log("config reload refused", 1, Duration::from_secs(5));
    assert!(
        daemon.log().contains("agent.toml:14:12: polling.interval"),
        "{}",
        daemon.log()
    );
    assert!(daemon.is_running());
    let after = Instant::now();
    sub.expect_message(Duration::from_secs(10), |m| is(m, "/health"));
    assert!(after.elapsed() < Duration::from_secs(10));

    // SIGTERM: offline published, exit 0 within 5 s.
    let stopping = Instant::now();
    daemon.signal(Signal::SIGTERM);
    let status = daemon
        .wait_exit(Duration::from_secs(5))
        .expect("the agent exits within 5 s of SIGTERM");
    assert!(status.success(), "exit status {status}:\n{}", daemon.log());
    assert!(stopping.elapsed() < Duration::from_secs(5));
    let offline = sub.expect_message(Duration::from_secs(5), |m| {
        is(m, "/status") && m.json()["state"] == "offline"
    });
    assert_eq!(offline.json()["agent_id"], AGENT_ID);
}

#[test]
fn sigkill_leaves_the_last_will_offline() {
    let lab = Lab::start(41);
    let mut sub = lab.broker.subscribe(&format!("cpe/v1/{AGENT_ID}/status"));
    let config = lab.write_config(&lab.config("5s"));
    let mut daemon = lab.daemon(&config);
    sub.expect_message(Duration::from_secs(10), |m| m.json()["state"] == "online");
    daemon.signal(Signal::SIGKILL);
    daemon.wait_exit(Duration::from_secs(5)).expect("killed");
    sub.expect_message(Duration::from_secs(10), |m| m.json()["state"] == "offline");
    // A NOC dashboard that connects later sees the retained offline status.
    let mut late = lab.broker.subscribe(&format!("cpe/v1/{AGENT_ID}/status"));
    let retained = late.expect_message(Duration::from_secs(5), |m| m.retained);
    assert_eq!(retained.json()["state"], "offline");
}

#[test]
fn sigterm_exits_promptly_even_without_a_broker() {
    let lab = Lab::start(51);
    let text = lab.config("5s").replace(
        &format!("port = {}", lab.broker.port()),
        &format!("port = {}", support::free_tcp_port()),
    );
    let config = lab.write_config(&text);
    let mut daemon = lab.daemon(&config);
    daemon.wait_log("cannot connect to the broker", 1, Duration::from_secs(10));
    daemon.signal(Signal::SIGTERM);
    let status = daemon
        .wait_exit(Duration::from_secs(5))
        .expect("exits within 5 s");
    assert!(status.success(), "{status}:\n{}", daemon.log());
}

#[test]
fn an_invalid_config_at_start_is_refused_with_its_location() {
    let dir = support::temp_dir("daemon-bad");
    let path = dir.path().join("agent.toml");
    std::fs::write(&path, "[mqtt]\nhots = \"x\"\n").expect("write");
    let out = crate::agent::run(&["run", "--config", path.to_str().expect("utf-8")]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("agent.toml:2:1: mqtt") && err.contains("unknown field `hots`"),
        "{err}"
    );
}

#[test]
fn a_device_that_goes_away_is_lost_then_found_again_with_its_reboot() {
    let mut lab = Lab::start(61);
    let mut events = lab
        .broker
        .subscribe(&format!("cpe/v1/{AGENT_ID}/devices/+/events"));
    let mut inventory = lab
        .broker
        .subscribe(&format!("cpe/v1/{AGENT_ID}/devices/+/inventory"));
    let config = lab.write_config(&lab.config("1s"));
    let mut daemon = lab.daemon(&config);
    for _ in 0..2 {
        events.expect_message(Duration::from_secs(10), |m| m.json()["event"] == "found");
    }
    // Two polls each, so that the next reading has one to compare with.
    daemon.wait_log("discovery sweep finished", 1, Duration::from_secs(10));
    std::thread::sleep(Duration::from_millis(2500));

    lab.sim.stop();
    let lost = events.expect_message(Duration::from_secs(15), |m| m.json()["event"] == "lost");
    assert_eq!(
        lost.json()["missed_polls"],
        3,
        "lost after polling.lost_after (3) missed polls"
    );
    let marked = inventory.expect_message(Duration::from_secs(5), |m| m.json()["state"] == "lost");
    assert_eq!(marked.json()["device_id"], lost.json()["device_id"]);

    // Back on the same address, counters and uptime started over: found, and a reboot.
    lab.sim.start_again();
    let found = events.expect_message(Duration::from_secs(15), |m| m.json()["event"] == "found");
    let rebooted =
        events.expect_message(Duration::from_secs(10), |m| m.json()["event"] == "rebooted");
    assert_eq!(found.json()["device_id"], rebooted.json()["device_id"]);
    inventory.expect_message(Duration::from_secs(5), |m| m.json()["state"] == "present");

    // SIGUSR1 asks for a sweep now.
    daemon.signal(Signal::SIGUSR1);
    daemon.wait_log("rediscovery requested", 1, Duration::from_secs(5));
    daemon.wait_log("discovery sweep finished", 2, Duration::from_secs(10));
}

#[test]
fn a_slow_device_never_delays_the_others() {
    use crate::support::rogue::{sample_table, Behaviour, Rogue};
    let broker = Mosquitto::start();
    let sim = SnmpSim::start_lan(
        &[project_data_dir().join("soho-router.snmprec")],
        "127.0.1",
        71,
    );
    // Every answer 1.5 s late: inventory takes it many seconds, and each poll overruns.
    let slow = Rogue::start(
        sample_table(2),
        &[Behaviour::SlowReplies(Duration::from_millis(1500))],
    );
    let dir = support::temp_dir("daemon-slow");
    let config = dir.path().join("agent.toml");
    let text = format!(
        "[agent]\nid = \"{AGENT_ID}\"\n[mqtt]\nhost = \"127.0.0.1\"\nport = {}\n\
         [discovery]\nlan_subnets = false\ntargets = [\"{}\", \"127.0.1.71:{}\"]\ntimeout = \"2s\"\nretries = 0\n\
         [polling]\ninterval = \"1s\"\ntimeout = \"2s\"\nretries = 0\n[storage]\nstate_dir = \"{}\"\n",
        broker.port(),
        slow.addr(),
        sim.port(),
        dir.path().join("state").display()
    );
    std::fs::write(&config, text).expect("write config");
    let mut sub = broker.subscribe(&format!("cpe/v1/{AGENT_ID}/devices/#"));
    let _daemon = Daemon::start(&config, dir.path().join("agent.log"));

    // The router is reported while the slow device is still being inventoried.
    let started = Instant::now();
    let inventory = sub.expect_message(Duration::from_secs(5), |m| m.topic.ends_with("/inventory"));
    assert_eq!(
        inventory.json()["kind"],
        "router",
        "the fast device comes first: {}",
        inventory.text()
    );
    let router = inventory.json()["device_id"]
        .as_str()
        .expect("device id")
        .to_string();
    let healthy = sub.messages_until(Duration::from_secs(6), |_| false);
    let router_polls = healthy
        .iter()
        .filter(|m| m.topic.ends_with("/health") && m.json()["device_id"] == router.as_str())
        .count();
    assert!(
        router_polls >= 4,
        "the router was polled {router_polls} times in 6 s beside a slow device"
    );
    assert!(started.elapsed() < Duration::from_secs(15));
    // The slow device is found in the end: slowness is not silence.
    sub.expect_message(Duration::from_secs(30), |m| {
        m.topic.ends_with("/inventory") && m.json()["device_id"] != router.as_str()
    });
}

#[test]
fn diag_reads_what_the_running_daemon_reports() {
    let lab = Lab::start(81);
    let config = lab.write_config(&lab.config("1s"));
    let mut daemon = lab.daemon(&config);
    daemon.wait_log("discovery sweep finished", 1, Duration::from_secs(10));
    // The status file is refreshed every 5 s; give it one refresh after the sweep.
    std::thread::sleep(Duration::from_secs(6));
    let out = crate::agent::run(&[
        "diag",
        "--json",
        "--timeout",
        "20s",
        "--config",
        config.to_str().expect("utf-8"),
    ]);
    let report: serde_json::Value =
        serde_json::from_slice(&out.stdout).expect("diag --json prints JSON");
    let checks = report["checks"].as_array().expect("checks");
    let status = |name: &str| {
        checks
            .iter()
            .find(|c| c["name"] == name)
            .map(|c| c["status"].as_str().unwrap_or_default().to_string())
            .unwrap_or_else(|| panic!("no {name} check in {report}"))
    };
    for name in [
        "config",
        "broker.mqtt",
        "daemon",
        "daemon.report",
        "daemon.queue",
    ] {
        assert_eq!(status(name), "pass", "{name} in {report}");
    }
    let devices: Vec<&serde_json::Value> = checks
        .iter()
        .filter(|c| c["name"].as_str().is_some_and(|n| n.starts_with("device ")))
        .collect();
    assert_eq!(devices.len(), 2, "both known devices are checked: {report}");
    assert!(devices.iter().all(|c| c["status"] == "pass"), "{report}");
    assert!(daemon.is_running());
}

#[test]
fn thresholds_are_crossed_and_cleared_on_real_readings() {
    let lab = Lab::start(91);
    let mut events = lab
        .broker
        .subscribe(&format!("cpe/v1/{AGENT_ID}/devices/+/events"));
    // Limits the simulated router's CPU and the modem's downstream SNR (38.9–40.3 dB) break.
    let strict = "[thresholds]\ncpu_percent = { max = 0 }\ndocsis_snr_db = { min = 45 }\n";
    let config = lab.write_config(&format!("{}{strict}", lab.config("1s")));
    let mut daemon = lab.daemon(&config);
    let crossed = |metric: &str| {
        let metric = metric.to_string();
        move |m: &Message| {
            m.json()["event"] == "threshold_crossed" && m.json()["metric"] == metric.as_str()
        }
    };
    let cpu = events.expect_message(Duration::from_secs(15), crossed("cpu_percent"));
    assert_eq!(cpu.json()["limit"], 0.0);
    assert!(
        cpu.json()["value"].as_f64().is_some_and(|v| v > 0.0),
        "{}",
        cpu.text()
    );
    let snr = events.expect_message(Duration::from_secs(15), crossed("docsis_snr_db"));
    assert_eq!(snr.json()["limit"], 45.0);
    assert!(
        snr.json()["subject"]
            .as_str()
            .is_some_and(|s| s.starts_with("downstream ")),
        "{}",
        snr.text()
    );

    // Back to the default limits: the next poll clears them.
    lab.write_config(&lab.config("1s"));
    daemon.signal(Signal::SIGHUP);
    daemon.wait_log("config reloaded", 1, Duration::from_secs(5));
    events.expect_message(Duration::from_secs(10), |m| {
        m.json()["event"] == "threshold_cleared" && m.json()["metric"] == "cpu_percent"
    });
}
