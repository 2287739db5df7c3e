//! `cpe-agent diag` as a field technician runs it: against a real broker
//! (plain, TLS, with users) and simulated devices, with the daemon's status
//! file written here the way the daemon writes it.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use cpe_agent::report::status_file::{self, AgentStatus, KnownDevice};

use crate::agent;
use crate::support::mosquitto::{Mosquitto, MosquittoOptions, TestCa};
use crate::support::snmpsim::SnmpSim;
use crate::support::{self, project_data_dir};

const AGENT_ID: &str = "it-diag";
const TIMEOUT: Duration = Duration::from_secs(15);

fn recordings(n: usize) -> Vec<PathBuf> {
    ["docsis-modem", "ip-pbx", "soho-router"]
        .iter()
        .take(n)
        .map(|name| project_data_dir().join(format!("{name}.snmprec")))
        .collect()
}

/// A config: `[mqtt]` body, the community of the one credential, the sim's devices as targets.
fn config(dir: &Path, mqtt: &str, community: &str, sim: &SnmpSim) -> PathBuf {
    let addrs = sim.endpoints();
    let first = addrs.first().expect("a device").ip();
    let last = addrs.last().expect("a device").ip();
    let text = format!(
        "[agent]\nid = \"{AGENT_ID}\"\n\n[mqtt]\n{mqtt}\n\n\
         [discovery]\nlan_subnets = false\ntargets = [\"{first}-{last}:{port}\"]\ntimeout = \"500ms\"\nretries = 1\n\n\
         [[credentials]]\nname = \"lan\"\nversion = \"v2c\"\ncommunity = \"{community}\"\n\n\
         [storage]\nstate_dir = \"{state}\"\n",
        port = sim.port(),
        state = dir.join("state").display(),
    );
    let path = dir.join("agent.toml");
    std::fs::write(&path, text).expect("write config");
    path
}

fn plain_mqtt(broker: &Mosquitto) -> String {
    format!("host = \"127.0.0.1\"\nport = {}", broker.port())
}

fn tls_mqtt(port: u16, ca: &Path, user: Option<(&str, &str)>) -> String {
    let mut text = format!("host = \"127.0.0.1\"\nport = {port}\n");
    if let Some((name, password)) = user {
        text += &format!("username = \"{name}\"\npassword = \"{password}\"\n");
    }
    text + &format!(
        "\n[mqtt.tls]\nenabled = true\nca_file = \"{}\"",
        ca.display()
    )
}

/// What the daemon would write: itself running (this process's pid), a
/// recent report, an empty queue, and the sim's devices as known devices.
fn write_daemon_state(dir: &Path, sim: &SnmpSim) {
    let state = dir.join("state");
    let mut status = AgentStatus::new();
    status.last_report_at = Some(status_file::unix_now() - 5);
    status.config_version = Some("v1".into());
    status.config_status = Some("applied".into());
    status.known_devices = sim
        .devices()
        .iter()
        .map(|d| KnownDevice {
            id: format!("{}-{}", d.name, d.addr.ip()),
            address: d.addr.ip(),
            port: d.addr.port(),
            credential: "lan".into(),
            kind: "other".into(),
        })
        .collect();
    status_file::write(&state, &status).expect("write the status file");
    status_file::write_pid_file(&state).expect("write the pid file");
}

struct Run {
    code: Option<i32>,
    stdout: String,
    stderr: String,
    elapsed: Duration,
}

impl Run {
    fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("diag --json printed no JSON ({e}):\n{}", self.stdout))
    }

    /// The named check from --json output: (status, reason).
    fn check(&self, name: &str) -> (String, String) {
        let json = self.json();
        let checks = json["checks"].as_array().expect("checks");
        let check = checks
            .iter()
            .find(|c| c["name"] == name)
            .unwrap_or_else(|| panic!("no check {name}:\n{}", self.stdout));
        (
            check["status"].as_str().unwrap_or_default().to_string(),
            check["reason"].as_str().unwrap_or_default().to_string(),
        )
    }
}

fn diag(config: &Path, args: &[&str]) -> Run {
    let started = Instant::now();
    let out = Command::new(agent::binary())
        .args(["diag", "--config"])
        .arg(config)
        .args(["--timeout", "15s"])
        .args(args)
        .env_remove("CPE_AGENT_CONFIG")
        .output()
        .expect("run cpe-agent diag");
    Run {
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        elapsed: started.elapsed(),
    }
}

/// `cpe-agent diag ARGS` in a pseudo-terminal (util-linux `script`); the transcript.
fn diag_in_pty(config: &Path, args: &str, no_color: bool) -> String {
    support::require_tool("script", "util-linux");
    let command = format!(
        "{} diag --config {} --timeout 15s {args}",
        agent::binary().display(),
        config.display()
    );
    let mut script = Command::new("script");
    script
        .args(["-qec", &command, "/dev/null"])
        .env("TERM", "xterm")
        // Works around src/logging.rs calling with_ansi(true) without
        // tracing-subscriber's `ansi` feature, which panics in debug builds
        // when stderr is a terminal; JOURNAL_STREAM turns its ANSI off. Diag's
        // own colours do not depend on it.
        .env("JOURNAL_STREAM", "0:0")
        .env_remove("CPE_AGENT_CONFIG")
        .env_remove("NO_COLOR");
    if no_color {
        script.env("NO_COLOR", "1");
    }
    let out = script.output().expect("run script");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn everything_up_passes_every_check_and_masks_secrets() {
    let broker = MosquittoOptions::new()
        .tls()
        .user("gateway", "mqtt-Pa55word")
        .start();
    let sim = SnmpSim::start_lan(&recordings(3), "127.0.1", 171);
    let dir = support::temp_dir("diag-pass");
    let path = config(
        dir.path(),
        &tls_mqtt(
            broker.tls_port(),
            broker.ca().cert_path(),
            Some(("gateway", "mqtt-Pa55word")),
        ),
        "public",
        &sim,
    );
    write_daemon_state(dir.path(), &sim);

    let run = diag(&path, &["--json", "--sweep"]);
    let json = run.json();
    for check in json["checks"].as_array().expect("checks") {
        if check["name"] == "route" && !Path::new("/proc/net/route").exists() {
            continue;
        }
        assert_eq!(check["status"], "pass", "{check}\n{}", run.stdout);
    }
    assert_eq!(run.code, Some(0), "{}", run.stdout);
    assert_eq!(json["exit_code"], 0);
    for name in [
        "config",
        "clock",
        "lan",
        "broker.dns",
        "broker.tcp",
        "broker.tls",
        "broker.mqtt",
        "sweep",
        "daemon",
        "daemon.report",
        "daemon.queue",
    ] {
        run.check(name);
    }
    for device in sim.devices() {
        let (_, reason) = run.check(&format!("device {}-{}", device.name, device.addr.ip()));
        assert!(reason.contains(" ms: "), "latency and sysDescr: {reason}");
    }
    let (_, tls) = run.check("broker.tls");
    assert!(tls.contains("until"), "{tls}");
    let (_, sweep) = run.check("sweep");
    assert!(
        sweep.contains("3 device(s)") && sweep.contains("new: none"),
        "{sweep}"
    );

    // The table, piped: plain, aligned, a summary at the end.
    let table = diag(&path, &[]);
    assert_eq!(table.code, Some(0), "{}", table.stdout);
    assert!(!table.stdout.contains('\x1b'), "{}", table.stdout);
    assert!(
        table
            .stdout
            .lines()
            .last()
            .unwrap_or_default()
            .contains("0 warnings, 0 failed"),
        "{}",
        table.stdout
    );
    for out in [&run.stdout, &table.stdout] {
        assert!(!out.contains("mqtt-Pa55word"), "password printed:\n{out}");
        assert!(!out.contains("public"), "community printed:\n{out}");
    }
    assert!(
        table.stdout.contains("community ********"),
        "{}",
        table.stdout
    );
}

#[test]
fn a_stopped_broker_fails_with_the_reason_and_the_rest_still_runs() {
    let mut broker = Mosquitto::start();
    let sim = SnmpSim::start_lan(&recordings(1), "127.0.1", 174);
    let dir = support::temp_dir("diag-stopped");
    let path = config(dir.path(), &plain_mqtt(&broker), "public", &sim);
    write_daemon_state(dir.path(), &sim);
    broker.stop();

    let run = diag(&path, &["--json"]);
    assert_eq!(run.code, Some(2), "{}", run.stdout);
    assert!(run.elapsed < TIMEOUT, "took {:?}", run.elapsed);
    let (status, reason) = run.check("broker.tcp");
    assert_eq!(status, "fail");
    assert!(reason.contains("refused"), "{reason}");
    assert_eq!(run.check("broker.dns").0, "pass");
    assert_eq!(run.check("clock").0, "pass");
    assert_eq!(run.check("daemon").0, "pass");
    let device = &sim.devices()[0];
    assert_eq!(
        run.check(&format!("device {}-{}", device.name, device.addr.ip()))
            .0,
        "pass",
        "{}",
        run.stdout
    );
}

#[test]
fn tls_problems_are_named_an_expiring_certificate_and_a_wrong_ca() {
    let broker = MosquittoOptions::new()
        .server_cert_expires_in(Duration::from_secs(10 * 24 * 3600))
        .start();
    let sim = SnmpSim::start_lan(&recordings(1), "127.0.1", 175);
    let dir = support::temp_dir("diag-tls");

    let path = config(
        dir.path(),
        &tls_mqtt(broker.tls_port(), broker.ca().cert_path(), None),
        "public",
        &sim,
    );
    let run = diag(&path, &["--json"]);
    let (status, reason) = run.check("broker.tls");
    assert_eq!(status, "warn", "{}", run.stdout);
    assert!(
        reason.contains("expires in 9 days") || reason.contains("expires in 10 days"),
        "{reason}"
    );
    assert_eq!(run.check("broker.mqtt").0, "pass", "{}", run.stdout);

    let other_ca = TestCa::new();
    let path = config(
        dir.path(),
        &tls_mqtt(broker.tls_port(), other_ca.cert_path(), None),
        "public",
        &sim,
    );
    let run = diag(&path, &["--json"]);
    assert_eq!(run.code, Some(2), "{}", run.stdout);
    let (status, reason) = run.check("broker.tls");
    assert_eq!(status, "fail");
    assert!(
        reason.contains("not signed by the CA in mqtt.tls.ca_file"),
        "{reason}"
    );
}

#[test]
fn a_wrong_password_and_a_wrong_community_are_named_and_masked() {
    let broker = MosquittoOptions::new()
        .user("gateway", "right-Pa55word")
        .start();
    let sim = SnmpSim::start_lan(&recordings(1), "127.0.1", 176);
    let dir = support::temp_dir("diag-refused");
    let mqtt = format!(
        "{}\nusername = \"gateway\"\npassword = \"wrong-Pa55word\"",
        plain_mqtt(&broker)
    );
    let path = config(dir.path(), &mqtt, "wrong-community", &sim);
    write_daemon_state(dir.path(), &sim);

    for args in [&["--json"][..], &[]] {
        let run = diag(&path, args);
        assert_eq!(run.code, Some(2), "{}", run.stdout);
        assert!(!run.stdout.contains("wrong-Pa55word"), "{}", run.stdout);
        assert!(!run.stdout.contains("wrong-community"), "{}", run.stdout);
        if args.is_empty() {
            continue;
        }
        let (status, reason) = run.check("broker.mqtt");
        assert_eq!(status, "fail");
        assert!(
            reason.contains("refused")
                && (reason.contains("NotAuthorized") || reason.contains("BadUserNamePassword")),
            "{reason}"
        );
        let device = &sim.devices()[0];
        let (status, reason) = run.check(&format!("device {}-{}", device.name, device.addr.ip()));
        assert_eq!(status, "fail");
        assert!(reason.contains("does not answer to \"lan\""), "{reason}");
    }
}

#[test]
fn an_unresolvable_broker_is_named_within_the_timeout() {
    let sim = SnmpSim::start_lan(&recordings(1), "127.0.1", 177);
    let dir = support::temp_dir("diag-dns");
    let path = config(
        dir.path(),
        "host = \"broker.invalid\"\nport = 8883",
        "public",
        &sim,
    );
    let run = diag(&path, &["--json"]);
    assert_eq!(run.code, Some(2), "{}", run.stdout);
    assert!(run.elapsed < TIMEOUT, "took {:?}", run.elapsed);
    let (status, reason) = run.check("broker.dns");
    assert_eq!(status, "fail");
    assert!(reason.contains("cannot resolve broker.invalid"), "{reason}");
}

#[test]
fn colours_and_the_progress_bar_only_on_a_terminal() {
    let broker = Mosquitto::start();
    let sim = SnmpSim::start_lan(&recordings(2), "127.0.1", 178);
    let dir = support::temp_dir("diag-pty");
    let path = config(dir.path(), &plain_mqtt(&broker), "public", &sim);
    write_daemon_state(dir.path(), &sim);

    let tty = diag_in_pty(&path, "--sweep", false);
    assert!(
        tty.contains("\x1b[1;32mPASS\x1b[0m"),
        "no colour on a terminal:\n{tty:?}"
    );
    assert!(
        tty.contains("probed"),
        "no progress bar on a terminal:\n{tty:?}"
    );

    let no_color = diag_in_pty(&path, "--sweep", true);
    assert!(no_color.contains("PASS"), "{no_color:?}");
    assert!(
        !no_color.contains("\x1b[1;3"),
        "colour despite NO_COLOR:\n{no_color:?}"
    );

    let piped = diag(&path, &["--sweep"]);
    assert!(piped.stdout.contains("PASS"), "{}", piped.stdout);
    assert!(!piped.stdout.contains('\x1b'), "{}", piped.stdout);
    assert!(!piped.stdout.contains("probed"), "{}", piped.stdout);
    assert!(!piped.stderr.contains("probed"), "{}", piped.stderr);
    assert!(!piped.stderr.contains('\x1b'), "{}", piped.stderr);
}

#[test]
fn a_silent_broker_cannot_make_it_hang() {
    // Accepts TCP connections and never says a word.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let sim = SnmpSim::start_lan(&recordings(1), "127.0.1", 180);
    let dir = support::temp_dir("diag-silent");
    let path = config(
        dir.path(),
        &format!("host = \"127.0.0.1\"\nport = {port}"),
        "public",
        &sim,
    );
    let started = Instant::now();
    let out = Command::new(agent::binary())
        .args(["diag", "--json", "--timeout", "3s", "--config"])
        .arg(&path)
        .output()
        .expect("run cpe-agent diag");
    let elapsed = started.elapsed();
    let run = Run {
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        elapsed,
    };
    assert!(
        run.elapsed < Duration::from_secs(6),
        "took {:?}",
        run.elapsed
    );
    assert_eq!(run.code, Some(2), "{}{}", run.stdout, run.stderr);
    let json = run.json();
    let broker_failed = json["checks"].as_array().expect("checks").iter().any(|c| {
        c["name"].as_str().is_some_and(|n| n.starts_with("broker")) && c["status"] == "fail"
    });
    assert!(broker_failed, "{}", run.stdout);
    assert_eq!(run.check("clock").0, "pass");
    drop(listener);
}
