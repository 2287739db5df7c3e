//! The service manager's side: readiness, status and the watchdog over the
//! notify protocol, with a NOTIFY_SOCKET of the test's own; the unit file's
//! hardening, checked by systemd-analyze; and the privilege drop when the
//! agent is started as root without systemd.

use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::agent::Daemon;
use crate::support::mosquitto::Mosquitto;
use crate::support::{self, require_tool};

/// A config for an agent with no devices, reporting to `broker`.
fn config(dir: &Path, broker: &Mosquitto, agent_extra: &str) -> PathBuf {
    let path = dir.join("agent.toml");
    let text = format!(
        "[agent]\nid = \"gw-systemd\"\n{agent_extra}\n\n[mqtt]\nhost = \"127.0.0.1\"\nport = {}\n\n\
         [discovery]\nlan_subnets = false\ntargets = []\n\n[storage]\nstate_dir = \"{}\"\n",
        broker.port(),
        dir.join("state").display()
    );
    std::fs::write(&path, text).expect("write config");
    path
}

/// The notifications that arrive within `window`.
fn notifications(socket: &UnixDatagram, window: Duration) -> Vec<(Duration, String)> {
    let started = Instant::now();
    let mut seen = Vec::new();
    let mut buf = vec![0u8; 4096];
    while started.elapsed() < window {
        let left = window
            .saturating_sub(started.elapsed())
            .max(Duration::from_millis(1));
        socket.set_read_timeout(Some(left)).expect("timeout");
        if let Ok(n) = socket.recv(&mut buf) {
            seen.push((
                started.elapsed(),
                String::from_utf8_lossy(&buf[..n]).into_owned(),
            ));
        }
    }
    seen
}

#[test]
fn ready_status_and_a_watchdog_that_stops_when_the_poll_loop_hangs() {
    let broker = Mosquitto::start();
    let dir = support::temp_dir("notify");
    let config = config(dir.path(), &broker, "");
    let socket_path = dir.path().join("notify.sock");
    let socket = UnixDatagram::bind(&socket_path).expect("bind the notify socket");
    let mut daemon = Daemon::start_with_env(
        &config,
        dir.path().join("agent.log"),
        &[
            ("NOTIFY_SOCKET", socket_path.to_str().expect("utf-8")),
            ("WATCHDOG_USEC", "1000000"),
            (cpe_agent::collect::HANG_ENV, "4"),
        ],
    );
    // Before the hang: ready, a status line, and a ping every half second.
    let early = notifications(&socket, Duration::from_secs(4));
    let texts: Vec<&str> = early.iter().map(|(_, t)| t.as_str()).collect();
    let ready = texts
        .iter()
        .find(|t| t.contains("READY=1"))
        .unwrap_or_else(|| panic!("no READY=1: {texts:?}\n{}", daemon.log()));
    assert!(ready.contains("STATUS="), "{ready}");
    assert!(
        texts
            .iter()
            .any(|t| t.starts_with("STATUS=connected to 127.0.0.1")),
        "{texts:?}"
    );
    let pings = texts.iter().filter(|t| **t == "WATCHDOG=1").count();
    assert!(pings >= 4, "{pings} pings in 4 s: {texts:?}");
    // The poll loop hangs at 4 s; within its 3 s of grace the pings stop.
    notifications(&socket, Duration::from_secs(4));
    let late = notifications(&socket, Duration::from_secs(3));
    assert!(
        !late.iter().any(|(_, t)| t == "WATCHDOG=1"),
        "pings went on with the poll loop hung: {late:?}"
    );
    daemon.wait_log("not pinging the watchdog", 1, Duration::from_secs(5));
    assert!(daemon.log().contains("Polling"), "{}", daemon.log());
}

#[test]
fn without_notify_socket_nothing_is_sent_and_the_agent_runs() {
    let broker = Mosquitto::start();
    let dir = support::temp_dir("no-notify");
    let config = config(dir.path(), &broker, "");
    let mut watch = broker.subscribe("cpe/v1/gw-systemd/status");
    let mut daemon = Daemon::start(&config, dir.path().join("agent.log"));
    watch.expect_message(Duration::from_secs(20), |m| m.json()["state"] == "online");
    assert!(daemon.is_running());
}

/// `systemd-analyze security --offline=true` rates the shipped unit 2.0 or lower.
#[test]
fn the_unit_is_hardened_to_an_exposure_of_two_or_less() {
    let analyze = require_tool("systemd-analyze", "systemd");
    let unit = Path::new(env!("CARGO_MANIFEST_DIR")).join("systemd/cpe-agent.service");
    let out = std::process::Command::new(analyze)
        .args(["security", "--offline=true", "--no-pager"])
        .arg(&unit)
        .output()
        .expect("run systemd-analyze");
    let text = String::from_utf8_lossy(&out.stdout);
    let level = text
        .lines()
        .find_map(|l| l.split("Overall exposure level for").nth(1))
        .and_then(|rest| rest.split(':').nth(1))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse::<f64>().ok())
        .unwrap_or_else(|| {
            panic!(
                "no exposure level in systemd-analyze's output:\n{text}\n{}",
                String::from_utf8_lossy(&out.stderr)
            )
        });
    eprintln!("exposure level of systemd/cpe-agent.service: {level}");
    assert!(level <= 2.0, "exposure {level} > 2.0:\n{text}");
}

/// The `Uid:` or `Gid:` line of a process: real, effective, saved, filesystem.
fn ids(pid: u32, which: &str) -> Vec<u32> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("read /proc status");
    status
        .lines()
        .find_map(|l| l.strip_prefix(which))
        .map(|rest| {
            rest.split_whitespace()
                .filter_map(|v| v.parse().ok())
                .collect()
        })
        .unwrap_or_default()
}

/// Started as root without systemd, the agent runs as `agent.user`.
#[test]
fn started_as_root_the_agent_runs_as_the_configured_user() {
    assert!(
        support::running_as_root(),
        "this test checks the switch from root: run the suite as root (CI does)"
    );
    let nobody = nix::unistd::User::from_name("nobody")
        .ok()
        .flatten()
        .expect("user nobody");
    let nogroup = nix::unistd::Group::from_name("nogroup")
        .ok()
        .flatten()
        .expect("group nogroup");
    let broker = Mosquitto::start();
    let dir = support::temp_dir("drop-root");
    // The agent's own state dir is made and handed over by it; the test's
    // temp dir above it must be reachable by the user.
    support::chmod(dir.path(), 0o755);
    let config = config(
        dir.path(),
        &broker,
        "user = \"nobody\"\ngroup = \"nogroup\"",
    );
    let mut watch = broker.subscribe("cpe/v1/gw-systemd/status");
    let mut daemon = Daemon::start(&config, dir.path().join("agent.log"));
    watch.expect_message(Duration::from_secs(20), |m| m.json()["state"] == "online");
    let uid = nobody.uid.as_raw();
    let gid = nogroup.gid.as_raw();
    assert_eq!(ids(daemon.pid(), "Uid:"), [uid; 4], "{}", daemon.log());
    assert_eq!(ids(daemon.pid(), "Gid:"), [gid; 4], "{}", daemon.log());
    assert!(daemon.log().contains("dropped root"), "{}", daemon.log());
    // What it writes is the user's.
    use std::os::unix::fs::MetadataExt as _;
    daemon.wait_log("connected to the broker", 1, Duration::from_secs(10));
    let state = dir.path().join("state");
    let meta = std::fs::metadata(&state).expect("state dir");
    assert_eq!(
        (meta.uid(), meta.gid(), meta.mode() & 0o777),
        (uid, gid, 0o700)
    );
    assert!(daemon.is_running());
}

/// The OpenWrt init script is valid shell and runs the same commands as the unit.
#[test]
fn the_procd_init_script_parses_and_checks_the_config_first() {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("systemd/cpe-agent.init");
    let out = std::process::Command::new("sh")
        .arg("-n")
        .arg(&script)
        .output()
        .expect("run sh -n");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = std::fs::read_to_string(&script).expect("read the init script");
    assert!(text.contains("USE_PROCD=1"));
    assert!(text.contains("\"$PROG\" config check \"$CONF\" || return 1"));
    assert!(text.contains("procd_set_param command \"$PROG\" run --config \"$CONF\""));
    assert!(text.contains("procd_send_signal cpe-agent '*' HUP"));
}
