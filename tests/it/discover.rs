//! `cpe-agent discover` against simulated LANs: the real-device recordings,
//! the project's own, and net-snmp snmpd with SNMPv3.

use std::time::Instant;

use serde_json::Value as Json;

use crate::agent;
use crate::support;
use crate::support::snmpd::Snmpd;
use crate::support::snmpsim::SnmpSim;

fn discover(args: &[&str]) -> Vec<Json> {
    let out = agent::run(&[&["discover", "--json"], args].concat());
    assert!(
        out.status.success(),
        "discover failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("discover --json prints a JSON array")
}

fn project_recordings() -> Vec<std::path::PathBuf> {
    ["docsis-modem", "ip-pbx", "soho-router"]
        .iter()
        .map(|n| support::project_data_dir().join(format!("{n}.snmprec")))
        .collect()
}

#[test]
fn the_26_real_devices_are_found_and_classified() {
    let Some(dir) = support::shared_devices_dir() else {
        return;
    };
    let recordings = support::snmprec_files(&dir);
    let expected: toml::Table =
        toml::from_str(&std::fs::read_to_string(dir.join("expected.toml")).expect("expected.toml"))
            .expect("parses");
    let sim = SnmpSim::start_lan(&recordings, "127.0.1", 1);
    let started = Instant::now();
    let found = discover(&["--target", &format!("127.0.1.0/24:{}", sim.port())]);
    let sweep = started.elapsed();
    assert_eq!(found.len(), recordings.len(), "every recording is found");

    let mut right_kind = 0;
    println!(
        "{:<26} {:<12} {:<12} {:<22} {:>6}",
        "recording", "expected", "got", "rule", "ifaces"
    );
    for device in sim.devices() {
        let got = found
            .iter()
            .find(|d| d["address"].as_str() == Some(&device.addr.ip().to_string()))
            .unwrap_or_else(|| panic!("{} not in the output", device.name));
        let want = expected
            .get(&device.name)
            .unwrap_or_else(|| panic!("{} not in expected.toml", device.name));
        let field = |key: &str| {
            want.get(key)
                .and_then(|v| v.as_str())
                .unwrap_or_default()
                .to_string()
        };
        assert_eq!(
            got["sys_object_id"].as_str(),
            Some(field("sys_object_id").trim_start_matches('.')),
            "{}",
            device.name
        );
        let if_count = want
            .get("if_count")
            .and_then(|v| v.as_integer())
            .unwrap_or(-1);
        let interfaces = got["interfaces"].as_array().map_or(0, Vec::len);
        assert_eq!(
            interfaces as i64, if_count,
            "{}: interface count",
            device.name
        );
        for key in [
            "id",
            "kind",
            "rule",
            "credential",
            "sys_descr",
            "interfaces",
        ] {
            assert!(got.get(key).is_some(), "{}: no {key} in {got}", device.name);
        }
        if got["kind"].as_str() == Some(&field("kind")) {
            right_kind += 1;
        }
        println!(
            "{:<26} {:<12} {:<12} {:<22} {:>6}",
            device.name,
            field("kind"),
            got["kind"].as_str().unwrap_or("?"),
            got["rule"].as_str().unwrap_or("?"),
            interfaces
        );
    }
    println!(
        "{right_kind}/{} classified as expected; sweep of 127.0.1.0/24 took {sweep:?}",
        recordings.len()
    );
    assert!(
        right_kind >= 24,
        "only {right_kind} of 26 got the expected kind"
    );
}

#[test]
fn the_project_recordings_have_full_inventory_and_stable_ids() {
    let sim = SnmpSim::start_lan(&project_recordings(), "127.0.1", 111);
    let target = format!("127.0.1.111-113:{}", sim.port());
    let found = discover(&["--target", &target]);
    let kinds: Vec<&str> = found.iter().filter_map(|d| d["kind"].as_str()).collect();
    assert_eq!(kinds, ["modem", "pbx", "router"]);
    for device in &found {
        for key in ["vendor", "model", "firmware"] {
            assert!(
                device[key].as_str().is_some_and(|s| !s.is_empty()),
                "no {key}: {device}"
            );
        }
        assert!(
            !device["interfaces"]
                .as_array()
                .expect("interfaces")
                .is_empty(),
            "{device}"
        );
        let id = device["id"].as_str().expect("id");
        assert!(
            !id.starts_with("ip-"),
            "the id should come from a serial or MAC, not the address: {id}"
        );
    }
    let router = &found[2];
    assert_eq!(router["serial"].as_str(), Some("C8F20B7A41E3"));
    assert!(router["entities"].as_array().is_some_and(|e| !e.is_empty()));
    assert!(router["ip_addresses"]
        .as_array()
        .is_some_and(|a| !a.is_empty()));

    // The same devices on other addresses (a DHCP change) keep their ids.
    let moved = SnmpSim::start_lan(&project_recordings(), "127.0.1", 121);
    let again = discover(&["--target", &format!("127.0.1.121-123:{}", moved.port())]);
    let ids = |devices: &[Json]| {
        devices
            .iter()
            .map(|d| d["id"].to_string())
            .collect::<Vec<_>>()
    };
    assert_eq!(ids(&found), ids(&again));
}

#[test]
fn explain_names_the_rule_and_its_evidence() {
    let sim = SnmpSim::start_lan(&project_recordings()[2..], "127.0.1", 131);
    let out = agent::run(&[
        "discover",
        "--explain",
        "--target",
        &format!("127.0.1.131:{}", sim.port()),
    ]);
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("KIND") && text.contains("router"), "{text}");
    assert!(text.contains("by rule"), "{text}");
    assert!(text.contains("confidence 100"), "{text}");
}

/// A device no product rule knows is classified from its weighed evidence,
/// and --explain shows every vote and each candidate's score.
#[test]
fn explain_shows_the_weighed_evidence_of_a_device_no_rule_knows() {
    let dir = tempfile::tempdir().expect("tempdir");
    let recording = dir.path().join("unknown-switch.snmprec");
    let mut lines = vec![
        "1.3.6.1.2.1.1.1.0|4|Acme Industrial 24-port managed switch".to_string(),
        "1.3.6.1.2.1.1.2.0|6|1.3.6.1.4.1.99999.1.2".to_string(),
        "1.3.6.1.2.1.1.3.0|67|1000".to_string(),
        "1.3.6.1.2.1.1.5.0|4|acme".to_string(),
        "1.3.6.1.2.1.1.7.0|2|2".to_string(),
        "1.3.6.1.2.1.2.1.0|2|26".to_string(),
    ];
    for column in [1, 2, 3, 6] {
        for index in 1..=26 {
            lines.push(match column {
                1 => format!("1.3.6.1.2.1.2.2.1.1.{index}|2|{index}"),
                2 => format!("1.3.6.1.2.1.2.2.1.2.{index}|4|port {index}"),
                3 => format!("1.3.6.1.2.1.2.2.1.3.{index}|2|6"),
                _ => format!("1.3.6.1.2.1.2.2.1.6.{index}|4x|00000c0000{index:02x}"),
            });
        }
    }
    lines.push("1.3.6.1.2.1.4.1.0|2|2".to_string());
    lines.push("1.3.6.1.2.1.17.1.1.0|4x|00000c000001".to_string());
    lines.sort_by(|a, b| {
        let key = |l: &str| -> Vec<u64> {
            l.split('|')
                .next()
                .unwrap_or("")
                .split('.')
                .filter_map(|p| p.parse().ok())
                .collect()
        };
        key(a).cmp(&key(b))
    });
    std::fs::write(&recording, lines.join("\n") + "\n").expect("write");
    let sim = SnmpSim::start_lan(&[&recording], "127.0.1", 141);
    let target = format!("127.0.1.141:{}", sim.port());
    let out = agent::run(&["discover", "--explain", "--target", &target]);
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("kind switch by the weighed evidence"),
        "{text}"
    );
    assert!(text.contains("scores: switch"), "{text}");
    assert!(text.contains("ethernet-ports-24"), "{text}");
    assert!(text.contains("bridge MIB answers"), "{text}");
    let found = discover(&["--target", &target]);
    assert_eq!(found[0]["kind"], "switch");
    assert_eq!(found[0]["rule"], "evidence");
    // No registered owner of enterprise 99999: the MACs name the maker.
    assert_eq!(found[0]["vendor"], "Cisco");
    assert!(found[0]["confidence"]
        .as_u64()
        .is_some_and(|c| c > 0 && c < 100));
}

fn v3_config(dir: &std::path::Path, snmpd: &Snmpd, credentials: &str) -> std::path::PathBuf {
    let text = format!(
        "[discovery]\nlan_subnets = false\ntargets = [\"{}\"]\ntimeout = \"500ms\"\nretries = 0\n\n{credentials}",
        snmpd.addr()
    );
    let path = dir.join("agent.toml");
    std::fs::write(&path, text).expect("write config");
    path
}

#[test]
fn snmpv3_auth_priv_is_found_only_with_the_right_passphrases() {
    let snmpd = Snmpd::start();
    let user = &snmpd.priv_user;
    let priv_passphrase = user
        .priv_passphrase
        .clone()
        .expect("the authPriv user has a privacy passphrase");
    let dir = support::temp_dir("discover-v3");
    let wrong = format!(
        "[[credentials]]\nname = \"guess\"\nversion = \"v2c\"\ncommunity = \"not-the-community\"\n\n\
         [[credentials]]\nname = \"v3-wrong\"\nversion = \"v3\"\nuser = \"{}\"\nauth_protocol = \"sha\"\n\
         auth_password = \"wrong-passphrase\"\npriv_protocol = \"aes\"\npriv_password = \"wrong-passphrase\"\n",
        user.name
    );
    let right = format!(
        "[[credentials]]\nname = \"v3-right\"\nversion = \"v3\"\nuser = \"{}\"\nauth_protocol = \"sha\"\n\
         auth_password = \"{}\"\npriv_protocol = \"aes\"\npriv_password = \"{}\"\n",
        user.name, user.auth_passphrase, priv_passphrase
    );
    let config = v3_config(dir.path(), &snmpd, &wrong);
    assert!(discover(&["--config", config.to_str().expect("utf-8")]).is_empty());

    let config = v3_config(dir.path(), &snmpd, &format!("{wrong}\n{right}"));
    let out = agent::run(&[
        "discover",
        "--json",
        "--config",
        config.to_str().expect("utf-8"),
    ]);
    assert!(out.status.success());
    let stdout = String::from_utf8_lossy(&out.stdout);
    let found: Vec<Json> = serde_json::from_str(&stdout).expect("JSON");
    assert_eq!(found.len(), 1);
    assert_eq!(found[0]["credential"], "v3-right");
    assert!(found[0]["sys_descr"]
        .as_str()
        .is_some_and(|s| s.contains("Linux")));
    // Secrets never reach the output.
    for secret in [&user.auth_passphrase, &priv_passphrase] {
        assert!(!stdout.contains(secret.as_str()));
        assert!(!String::from_utf8_lossy(&out.stderr).contains(secret.as_str()));
    }
}

#[test]
fn operator_rules_from_the_config_come_first_and_are_checked() {
    let sim = SnmpSim::start_lan(&project_recordings()[2..], "127.0.1", 141);
    let dir = support::temp_dir("operator-rules");
    let rules = dir.path().join("rules.toml");
    // This provider ships these MikroTik boxes as managed firewalls.
    std::fs::write(
        &rules,
        "[[rule]]\nid = \"acme-managed-firewall\"\nkind = \"firewall\"\nvendor = \"MikroTik\"\nsys_descr = '^RouterOS RB750'\n",
    )
    .expect("write rules");
    let config = dir.path().join("agent.toml");
    let text = format!(
        "[discovery]\nlan_subnets = false\ntargets = [\"127.0.1.141:{}\"]\nrules_file = \"{}\"\n",
        sim.port(),
        rules.display()
    );
    std::fs::write(&config, text).expect("write config");
    let found = discover(&["--config", config.to_str().expect("utf-8")]);
    assert_eq!(found[0]["kind"], "firewall");
    assert_eq!(found[0]["rule"], "acme-managed-firewall");

    // A broken rules file makes the config invalid, naming the rules file and the rule.
    std::fs::write(
        &rules,
        "[[rule]]\nid = \"broken\"\nkind = \"gateway\"\nsys_descr = 'x'\n",
    )
    .expect("write rules");
    let out = agent::run(&["config", "check", config.to_str().expect("utf-8")]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("rules.toml") && err.contains("broken") && err.contains("unknown kind"),
        "{err}"
    );
}

/// A device with `n` interfaces and every ifEntry column, plus ifName,
/// ifHighSpeed and ifAlias.
fn big_device(n: u64) -> Vec<(cpe_agent::snmp::Oid, cpe_agent::snmp::Value)> {
    use cpe_agent::snmp::{Oid, Value};
    let entry = Oid::from_arcs(&[1, 3, 6, 1, 2, 1, 2, 2, 1]);
    let ifx = Oid::from_arcs(&[1, 3, 6, 1, 2, 1, 31, 1, 1, 1]);
    let mut table = support::rogue::sample_table(n);
    for row in 1..=n {
        for column in [7, 8, 9] {
            table.push((entry.child(&[column, row]), Value::Integer(1)));
        }
        for column in 11..=22 {
            table.push((entry.child(&[column, row]), Value::Counter32(row as u32)));
        }
        table.push((
            entry.child(&[6, row]),
            Value::OctetString(vec![2, 0, 0, 0, (row >> 8) as u8, row as u8]),
        ));
        table.push((
            ifx.child(&[1, row]),
            Value::OctetString(format!("port{row}").into_bytes()),
        ));
        table.push((ifx.child(&[15, row]), Value::Gauge32(1000)));
        table.push((
            ifx.child(&[18, row]),
            Value::OctetString(format!("alias{row}").into_bytes()),
        ));
    }
    table
}

/// A device with 1,300 interfaces (28,600 ifEntry cells, well over the
/// default walk cap of 10,000): every interface is in the inventory with
/// every column, ifOperStatus (cells 9,101 to 10,400) included.
#[test]
fn thirteen_hundred_interfaces_are_read_whole() {
    use support::rogue::{Behaviour, Rogue};
    let rogue = Rogue::start(big_device(1300), &[Behaviour::Normal]);
    let devices = discover(&["--target", &rogue.addr().to_string()]);
    let interfaces = devices[0]["interfaces"].as_array().expect("interfaces");
    assert_eq!(interfaces.len(), 1300);
    let last = &interfaces[1299];
    assert_eq!(last["alias"], "alias1300", "{last}");
    assert_eq!(last["speed_bps"], 1_000_000_000u64, "{last}");
    assert_eq!(last["oper_status"], "up", "{last}");
}

/// And a poll of it reads the counters of the last interface too (ifOutErrors
/// is cell 26,000 of ifEntry).
#[test]
fn a_poll_reads_every_counter_of_thirteen_hundred_interfaces() {
    use cpe_agent::config::Credential;
    use cpe_agent::snmp::{Client, Timing};
    use support::rogue::{Behaviour, Rogue};
    let rogue = Rogue::start(big_device(1300), &[Behaviour::Normal]);
    let timing = Timing {
        timeout: std::time::Duration::from_secs(2),
        retries: 1,
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let rules = cpe_agent::discover::classify::Rules::embedded();
        let public = [Credential::default_public()];
        let device = cpe_agent::discover::probe(rogue.addr(), &public, &rules, timing)
            .await
            .expect("the device answers");
        let mut client = Client::new(rogue.addr(), Credential::default_public(), timing);
        let mut options = cpe_agent::collect::reading::walk_options(&device.inventory);
        let reading =
            cpe_agent::collect::reading::read(&mut client, &device.inventory, &mut options)
                .await
                .expect("the poll");
        assert_eq!(reading.interfaces.len(), 1300);
        let last = &reading.interfaces[&1300];
        assert!(
            last.out_errors.is_some() && last.out_octets.is_some() && last.in_errors.is_some(),
            "{last:?}"
        );
    });
}
