//! MQTT delivery against a real mosquitto: store and forward across outages
//! and restarts, TLS, a full queue, a corrupt queue file.

use std::path::{Path, PathBuf};
use std::time::Duration;

use nix::sys::signal::Signal;

use crate::agent::Daemon;
use crate::durable::{self, Durable};
use crate::support::mosquitto::MosquittoOptions;
use crate::support::snmpsim::SnmpSim;
use crate::support::{self, project_data_dir};

pub(crate) const AGENT: &str = "mqtt-gw";

pub(crate) struct Setup {
    pub(crate) sim: SnmpSim,
    pub(crate) dir: tempfile::TempDir,
}

impl Setup {
    /// The project's router alone.
    pub(crate) fn new(first_host: u8) -> Setup {
        Setup::with(&["soho-router"], first_host)
    }

    pub(crate) fn with(recordings: &[&str], first_host: u8) -> Setup {
        let files: Vec<PathBuf> = recordings
            .iter()
            .map(|n| project_data_dir().join(format!("{n}.snmprec")))
            .collect();
        Setup {
            sim: SnmpSim::start_lan(&files, "127.0.1", first_host),
            dir: support::temp_dir("mqtt"),
        }
    }

    /// A config polling every second; `mqtt` is the [mqtt] body, `extra` more sections.
    pub(crate) fn config(&self, mqtt: &str, extra: &str) -> PathBuf {
        self.config_with(mqtt, &[], extra)
    }

    /// [`Setup::config`] that also sweeps `more_targets` (e.g. rogue agents).
    pub(crate) fn config_with(
        &self,
        mqtt: &str,
        more_targets: &[std::net::SocketAddr],
        extra: &str,
    ) -> PathBuf {
        let targets: Vec<String> = self
            .sim
            .endpoints()
            .iter()
            .chain(more_targets)
            .map(|e| format!("\"{e}\""))
            .collect();
        let targets = targets.join(", ");
        let text = format!(
            "[agent]\nid = \"{AGENT}\"\n[mqtt]\nhost = \"127.0.0.1\"\n{mqtt}\n\
             [discovery]\nlan_subnets = false\ntargets = [{targets}]\ntimeout = \"300ms\"\n\
             [polling]\ninterval = \"1s\"\ntimeout = \"500ms\"\n\
             [storage]\nstate_dir = \"{}\"\n{extra}\n",
            self.state_dir().display()
        );
        let path = self.dir.path().join("agent.toml");
        std::fs::write(&path, text).expect("write config");
        path
    }

    pub(crate) fn state_dir(&self) -> PathBuf {
        self.dir.path().join("state")
    }

    pub(crate) fn daemon(&self, config: &Path, log: &str) -> Daemon {
        Daemon::start(config, self.dir.path().join(log))
    }
}

pub(crate) fn is_device_health(m: &durable::Received) -> bool {
    m.topic.contains("/devices/") && m.topic.ends_with("/health")
}

/// Called as the broker comes back: collects until a report made after that
/// moment arrives — delivery is in order, so everything queued during the
/// outage must have arrived before it — and checks that no seq is missing or
/// out of order. Returns everything seen, `before` included.
pub(crate) fn assert_delivered_after_return(
    noc: &Durable,
    before: Vec<durable::Received>,
) -> Vec<durable::Received> {
    let back = std::time::SystemTime::now();
    let after = noc.until(Duration::from_secs(40), |m| made_after(m, back));
    assert!(
        after.last().is_some_and(|m| made_after(m, back)),
        "no report made after the outage arrived"
    );
    let all: Vec<_> = before.into_iter().chain(after).collect();
    durable::assert_complete_and_ordered(&durable::seqs(&all));
    all
}

/// A device health report the agent made after `moment` (by its own `ts`).
fn made_after(m: &durable::Received, moment: std::time::SystemTime) -> bool {
    let made = m.json["ts"]
        .as_str()
        .and_then(|ts| humantime::parse_rfc3339(ts).ok());
    is_device_health(m) && made.is_some_and(|t| t > moment)
}

pub(crate) fn stream_filter() -> String {
    format!("cpe/v1/{AGENT}/#")
}

#[test]
fn an_outage_loses_nothing_and_delivers_in_order() {
    let setup = Setup::new(151);
    let mut broker = MosquittoOptions::new().persistence().start();
    let noc = Durable::connect(broker.port(), "noc-outage", &stream_filter());
    let config = setup.config(&format!("port = {}", broker.port()), "");
    let mut daemon = setup.daemon(&config, "agent.log");
    let before = noc.until(Duration::from_secs(10), is_device_health);
    assert!(!durable::seqs(&before).is_empty());

    // The broker goes away; the agent keeps polling into its queue.
    broker.stop();
    daemon.wait_log("cannot connect to the broker", 1, Duration::from_secs(10));
    std::thread::sleep(Duration::from_secs(4));
    broker.start_again();

    let all = assert_delivered_after_return(&noc, before);
    let during = all.iter().filter(|m| is_device_health(m)).count();
    assert!(
        during >= 5,
        "only {during} health reports around a 4 s outage at 1 s polling"
    );
    assert!(daemon.is_running());
}

#[test]
fn an_agent_restart_in_the_middle_of_an_outage_loses_nothing() {
    let setup = Setup::new(152);
    let mut broker = MosquittoOptions::new().persistence().start();
    let noc = Durable::connect(broker.port(), "noc-restart", &stream_filter());
    let config = setup.config(&format!("port = {}", broker.port()), "");
    let mut first = setup.daemon(&config, "first.log");
    let before = noc.until(Duration::from_secs(10), is_device_health);

    broker.stop();
    std::thread::sleep(Duration::from_secs(2));
    first.signal(Signal::SIGTERM);
    assert!(
        first
            .wait_exit(Duration::from_secs(5))
            .is_some_and(|s| s.success()),
        "{}",
        first.log()
    );
    let mut second = setup.daemon(&config, "second.log");
    second.wait_log(
        "reports queued before the restart will be delivered",
        1,
        Duration::from_secs(10),
    );
    std::thread::sleep(Duration::from_secs(2));
    broker.start_again();

    assert_delivered_after_return(&noc, before);
}

/// `kill -9` in steady polling, restarted 2 s later: the NOC's durable
/// session sees every seq, with no gap and no skipped range (a process crash
/// loses no page cache, and the agent notes its next seq there).
#[test]
fn a_killed_agent_continues_its_seqs_with_no_gap() {
    let setup = Setup::new(163);
    let broker = MosquittoOptions::new().persistence().start();
    let noc = Durable::connect(broker.port(), "noc-kill", &stream_filter());
    let config = setup.config(&format!("port = {}", broker.port()), "");
    let mut first = setup.daemon(&config, "first.log");
    let mut healths = 0;
    let before = noc.until(Duration::from_secs(20), |m| {
        healths += usize::from(is_device_health(m));
        healths >= 4
    });
    assert!(healths >= 4, "no steady polling:\n{}", first.log());
    first.signal(Signal::SIGKILL);
    first.wait_exit(Duration::from_secs(5)).expect("killed");
    std::thread::sleep(Duration::from_secs(2));
    let second = setup.daemon(&config, "second.log");
    let mut healths = 0;
    let after = noc.until(Duration::from_secs(20), |m| {
        healths += usize::from(is_device_health(m));
        healths >= 4
    });
    assert!(
        healths >= 4,
        "no polling after the restart:\n{}",
        second.log()
    );
    let all: Vec<durable::Received> = before.into_iter().chain(after).collect();
    let seqs = durable::seqs(&all);
    durable::assert_complete_and_ordered(&seqs);
    let births: Vec<&durable::Received> = all
        .iter()
        .filter(|m| m.topic.ends_with("/status") && m.json["state"] == "online")
        .collect();
    assert!(
        births.iter().all(|m| m.json.get("skipped_seq").is_none()),
        "a kill skips nothing: {births:?}"
    );
    println!(
        "kill -9 and restart: seqs {}..{} ({} messages), 0 gaps",
        seqs.first().copied().unwrap_or(0),
        seqs.last().copied().unwrap_or(0),
        seqs.len()
    );
}

#[test]
fn mutual_tls_works_and_bad_certificates_are_named_without_a_tight_loop() {
    let setup = Setup::new(153);
    let broker = MosquittoOptions::new().require_client_cert().start();
    let ca = broker.ca();
    let (cert, key) = ca.issue_valid_client_cert(AGENT);
    let tls = |ca_file: &Path, cert: &Path, key: &Path| {
        format!(
            "port = {}\n[mqtt.tls]\nenabled = true\nca_file = \"{}\"\ncert_file = \"{}\"\nkey_file = \"{}\"\n",
            broker.tls_port(),
            ca_file.display(),
            cert.display(),
            key.display()
        )
    };

    // Right CA, valid client certificate: online over mutual TLS.
    let mut sub = broker.subscribe(&format!("cpe/v1/{AGENT}/status"));
    let config = setup.config(&tls(ca.cert_path(), &cert, &key), "");
    let daemon = setup.daemon(&config, "good.log");
    sub.expect_message(Duration::from_secs(10), |m| m.json()["state"] == "online");
    drop(daemon);

    // A CA that did not sign the broker: a clear TLS error, and backoff.
    let other = crate::support::mosquitto::TestCa::generate(setup.dir.path());
    let config = setup.config(&tls(other.cert_path(), &cert, &key), "");
    let mut daemon = setup.daemon(&config, "wrong-ca.log");
    std::thread::sleep(Duration::from_secs(5));
    let log = daemon.log();
    assert!(
        log.contains("TLS failed") && log.contains("mqtt.tls.ca_file"),
        "{log}"
    );
    let attempts = log.matches("cannot connect to the broker").count();
    assert!(
        (1..=4).contains(&attempts),
        "{attempts} attempts in 5 s: no backoff?\n{log}"
    );
    assert!(daemon.is_running());
    drop(daemon);

    // An expired client certificate: the broker refuses the handshake; named, and retried calmly.
    let day = Duration::from_secs(86_400);
    let now = std::time::SystemTime::now();
    let (old_cert, old_key) = ca.issue_client_cert(AGENT, now - 30 * day, now - day);
    let config = setup.config(&tls(ca.cert_path(), &old_cert, &old_key), "");
    let mut daemon = setup.daemon(&config, "expired.log");
    std::thread::sleep(Duration::from_secs(5));
    let log = daemon.log();
    assert!(
        log.contains("the client certificate: it has expired"),
        "{log}"
    );
    let attempts = log.matches("cannot connect to the broker").count();
    assert!(
        (1..=4).contains(&attempts),
        "{attempts} attempts in 5 s:\n{log}"
    );
    assert!(daemon.is_running());
}

#[test]
fn a_full_queue_drops_the_oldest_health_and_keeps_events() {
    let setup = Setup::with(&["docsis-modem", "ip-pbx", "soho-router"], 161);
    // No broker yet: everything queues, in a queue of the smallest allowed size.
    let port = support::free_tcp_port();
    // `extra` lands in [storage], the last section.
    let small = "queue_max_bytes = \"16KiB\"";
    let config = setup.config(&format!("port = {port}"), small);
    let mut daemon = setup.daemon(&config, "full.log");
    daemon.wait_log("discovery sweep finished", 1, Duration::from_secs(10));
    // Three devices polled every second fill 16 KiB of compressed reports in about 10 s.
    std::thread::sleep(Duration::from_secs(20));
    daemon.signal(Signal::SIGTERM);
    daemon.wait_exit(Duration::from_secs(5)).expect("exits");

    let broker = MosquittoOptions::new().persistence().start();
    let noc = Durable::connect(broker.port(), "noc-full", &stream_filter());
    let config = setup.config(&format!("port = {}", broker.port()), small);
    let _daemon = setup.daemon(&config, "full-2.log");
    let got = noc.until(Duration::from_secs(15), |m| {
        m.topic.ends_with("/agent/health")
            && m.json["queue"]["dropped_health"]
                .as_u64()
                .is_some_and(|d| d > 0)
    });
    let found = got
        .iter()
        .filter(|m| m.topic.ends_with("/events") && m.json["event"] == "found")
        .count();
    assert!(
        found >= 2,
        "both 'found' events survive a full queue (one per agent start): {found}"
    );
    assert!(
        got.iter().any(|m| m.topic.ends_with("/inventory")),
        "inventory is never dropped"
    );
    assert!(
        got.iter().any(|m| m.topic.ends_with("/agent/health")
            && m.json["queue"]["dropped_health"]
                .as_u64()
                .is_some_and(|d| d > 0)),
        "the drops are counted and published"
    );
}

#[test]
fn a_corrupt_queue_tail_is_cut_and_the_rest_delivered() {
    let setup = Setup::new(155);
    let port = support::free_tcp_port();
    let config = setup.config(&format!("port = {port}"), "");
    let mut daemon = setup.daemon(&config, "offline.log");
    daemon.wait_log("discovery sweep finished", 1, Duration::from_secs(10));
    std::thread::sleep(Duration::from_secs(3));
    daemon.signal(Signal::SIGTERM);
    daemon.wait_exit(Duration::from_secs(5)).expect("exits");

    // Damage the end of the newest queue file, as a power cut mid-write would.
    let newest = newest_file(&setup.state_dir().join("queue"), "health-");
    let mut bytes = std::fs::read(&newest).expect("read queue file");
    let keep = bytes.len().saturating_sub(40);
    bytes.truncate(keep);
    bytes.extend_from_slice(b"\x00\xffgarbage-from-a-torn-write");
    std::fs::write(&newest, bytes).expect("corrupt the tail");

    let broker = MosquittoOptions::new().persistence().start();
    let noc = Durable::connect(broker.port(), "noc-corrupt", &stream_filter());
    let config = setup.config(&format!("port = {}", broker.port()), "");
    let mut daemon = setup.daemon(&config, "recovered.log");
    daemon.wait_log("torn or corrupt tail", 1, Duration::from_secs(10));
    let got = noc.until(Duration::from_secs(10), |m| {
        m.topic.ends_with("/events") && m.json["event"] == "found"
    });
    let seqs = durable::seqs(&got);
    assert!(
        seqs.first().is_some_and(|&s| s == 1),
        "the oldest queued report (seq 1) is delivered: {seqs:?}"
    );
    assert!(daemon.is_running());
}

/// The newest queue segment whose name starts with `prefix` (docs/queue.md: health-*.seg, events-*.seg).
fn newest_file(dir: &Path, prefix: &str) -> PathBuf {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("read {}: {e}", dir.display()))
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            let name = p.file_name().and_then(|n| n.to_str()).unwrap_or_default();
            name.starts_with(prefix)
                && name.ends_with(".seg")
                && std::fs::metadata(p).is_ok_and(|m| m.len() > 64)
        })
        .collect();
    files.sort_by_key(|p| std::fs::metadata(p).and_then(|m| m.modified()).ok());
    files
        .pop()
        .unwrap_or_else(|| panic!("no queue file in {}", dir.display()))
}

#[test]
fn mqtt_5_delivers_the_same_contract() {
    let setup = Setup::new(156);
    let broker = MosquittoOptions::new().persistence().start();
    let noc = Durable::connect(broker.port(), "noc-v5", &stream_filter());
    let config = setup.config(&format!("port = {}\nprotocol = \"5\"", broker.port()), "");
    let daemon = setup.daemon(&config, "v5.log");
    let got = noc.until(Duration::from_secs(10), |m| {
        m.topic.contains("/devices/") && is_device_health(m)
    });
    assert!(
        got.iter()
            .any(|m| m.topic.ends_with("/status") && m.json["state"] == "online"),
        "{}",
        daemon.log()
    );
    assert!(
        got.iter().any(|m| m.topic.ends_with("/inventory")),
        "{}",
        daemon.log()
    );
    assert!(daemon.log().contains("protocol=V5"));
}
