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
    let out = agent::run(&["discover", "--target", "10.0.0.1/24"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("host bits"), "{}", stderr(&out));
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
