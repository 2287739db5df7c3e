//! The command line as a provider's script or a technician uses it.

use crate::agent;
use crate::support;

fn write(dir: &std::path::Path, name: &str, text: &str) -> std::path::PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).expect("write config");
    path
}

fn stderr(output: &std::process::Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[test]
fn the_shipped_example_config_is_valid() {
    let example = concat!(env!("CARGO_MANIFEST_DIR"), "/config/agent.toml");
    let out = agent::run(&["config", "check", example]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains("valid"));
}

#[test]
fn config_errors_name_file_line_column_and_key() {
    let dir = support::temp_dir("config-errors");
    let cases = [
        (
            "misspelt.toml",
            "[agent]\n\n[polling]\nintervall = \"5m\"\n",
            ":4:1: polling.intervall",
            "unknown field `intervall`, expected one of `interval`",
        ),
        (
            "wrong-type.toml",
            "[mqtt]\nport = \"1883\"\n",
            ":2:8: mqtt.port",
            "expected a whole number from 0 to 65535",
        ),
        (
            "bad-duration.toml",
            "[discovery]\ninterval = \"soon\"\n",
            ":2:12: discovery.interval",
            "expected a duration like \"5m\", got \"soon\"",
        ),
    ];
    for (name, text, place, message) in cases {
        let path = write(dir.path(), name, text);
        let out = agent::run(&["config", "check", path.to_str().expect("utf-8 path")]);
        assert_eq!(out.status.code(), Some(1), "{name}: {}", stderr(&out));
        let err = stderr(&out);
        assert!(err.contains(&format!("{name}{place}: ")), "{name}: {err}");
        assert!(err.contains(message), "{name}: {err}");
    }
}

#[test]
fn bad_cli_arguments_are_refused_with_the_reason() {
    for (target, why) in [
        ("10.0.0.1/24", "host bits"),
        ("256.1.1.1", "is not an IPv4 address"),
        // The internet, or a /8: refused before a packet is sent.
        ("0.0.0.0/0", "more than a /22"),
        ("127.0.0.0/8", "raise the limit with --max-prefix 8"),
        ("127.0.0.0-127.0.8.0", "more than a /22"),
    ] {
        let out = agent::run(&["discover", "--target", target]);
        assert_eq!(out.status.code(), Some(2), "{target}: {}", stderr(&out));
        assert!(stderr(&out).contains(why), "{target}: {}", stderr(&out));
    }
    let out = agent::run(&["discover", "--max-prefix", "4", "--target", "0.0.0.0/0"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    for args in [
        &["--version"][..],
        &["--help"],
        &["run", "--help"],
        &["config", "check", "--help"],
    ] {
        assert!(agent::run(args).status.success(), "{args:?}");
    }
}

#[test]
fn diag_reports_the_config_check() {
    let dir = support::temp_dir("diag");
    let good = write(dir.path(), "good.toml", "");
    let out = agent::run(&["diag", "--config", good.to_str().expect("utf-8"), "--json"]);
    // The exit code also reflects the broker, device and daemon checks (tests/it/diag.rs).
    assert!(matches!(out.status.code(), Some(0..=2)), "{}", stderr(&out));
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).expect("diag --json is JSON");
    assert_eq!(json["checks"][0]["name"], "config");
    assert_eq!(json["checks"][0]["status"], "pass");
    let bad = write(dir.path(), "bad.toml", "[mqtt]\nport = 0\n");
    let out = agent::run(&["diag", "--config", bad.to_str().expect("utf-8")]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stdout).contains("FAIL"));
}

#[test]
fn discover_finds_the_project_recordings_on_their_own_addresses() {
    let recordings = ["docsis-modem", "ip-pbx", "soho-router"]
        .map(|n| support::project_data_dir().join(format!("{n}.snmprec")));
    let sim = support::snmpsim::SnmpSim::start_lan(&recordings, "127.0.1", 101);
    let target = format!("127.0.1.100-127.0.1.110:{}", sim.port());
    let out = agent::run(&["discover", "--target", &target, "--json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let devices: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).expect("JSON array");
    let addresses: Vec<&str> = devices
        .iter()
        .filter_map(|d| d["address"].as_str())
        .collect();
    assert_eq!(addresses, ["127.0.1.101", "127.0.1.102", "127.0.1.103"]);
    for device in &devices {
        assert_eq!(device["port"], sim.port());
        assert_eq!(device["credential"], "public");
        assert!(
            device["sys_object_id"]
                .as_str()
                .is_some_and(|s| s.starts_with("1.3.6.1.4.1.")),
            "{device}"
        );
        assert!(
            device["sys_descr"].as_str().is_some_and(|s| !s.is_empty()),
            "{device}"
        );
    }
}

/// `config check` of what is not a config file: a device that never ends, a
/// FIFO nobody writes, a file over the 1 MiB bound. Each is refused at once
/// with the reason; none is read whole or waited on.
#[test]
fn config_check_refuses_devices_fifos_and_oversized_files() {
    let dir = support::temp_dir("config-not-a-file");
    let fifo = dir.path().join("fifo.toml");
    let made = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .expect("mkfifo (coreutils)");
    assert!(made.success());
    let big = dir.path().join("big.toml");
    std::fs::write(&big, "# padding\n".repeat(110_000)).expect("write big config");
    let cases = [
        ("/dev/zero".into(), "it is a device, not a regular file"),
        ("/dev/urandom".into(), "it is a device, not a regular file"),
        (fifo, "it is a FIFO, not a regular file"),
        (big, "larger than 1048576 bytes"),
    ];
    for (path, reason) in cases {
        let mut child = std::process::Command::new(agent::binary())
            .args(["config", "check"])
            .arg(&path)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("start cpe-agent");
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while child.try_wait().expect("wait").is_none() {
            if std::time::Instant::now() > deadline {
                let _ = child.kill();
                panic!("config check {} still runs after 10 s", path.display());
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        let out = child.wait_with_output().expect("output");
        assert_eq!(
            out.status.code(),
            Some(1),
            "{}: {}",
            path.display(),
            stderr(&out)
        );
        let err = stderr(&out);
        assert!(err.contains(reason), "{}: {err}", path.display());
        assert!(
            err.contains(&path.display().to_string()),
            "names the file: {err}"
        );
    }
}

/// The widest range `--max-prefix` allows (a /8, on loopback) is swept
/// address by address: the process stays small however many are left.
#[test]
fn discover_of_a_slash_8_stays_small() {
    let port = support::free_udp_port(std::net::Ipv4Addr::LOCALHOST);
    let target = format!("127.0.0.0/8:{port}");
    let mut child = std::process::Command::new(agent::binary())
        .args(["discover", "--max-prefix", "8", "--target", &target, "-q"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("start cpe-agent");
    std::thread::sleep(std::time::Duration::from_secs(3));
    let status = std::fs::read_to_string(format!("/proc/{}/status", child.id()))
        .expect("the sweep still runs after 3 s");
    let _ = child.kill();
    let _ = child.wait();
    let hwm_kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmHWM in /proc/PID/status");
    // 16.7 million addresses held at once would be gigabytes.
    assert!(hwm_kb < 64 * 1024, "VmHWM {hwm_kb} kB");
    println!("discover --target 127.0.0.0/8: VmHWM {hwm_kb} kB after 3 s");
}
