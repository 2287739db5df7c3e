//! Provider-pushed configuration and remote commands, end to end: the agent
//! binary, a real mosquitto, and net-snmp's snmpd as the device whose
//! sysLocation a push changes.

use std::path::PathBuf;
use std::time::Duration;

use ed25519_dalek::SigningKey;
use serde_json::{json, Value};

use crate::agent::{self, Daemon};
use crate::support::mosquitto::{Message, Mosquitto, Subscriber};
use crate::support::rogue::{self, Behaviour, Rogue};
use crate::support::snmpd::Snmpd;
use crate::support::{self, net_snmp_ok};

const AGENT: &str = "gw-prov";
const PREFIX: &str = "cpe/v1/gw-prov";
const SYS_LOCATION: &str = "1.3.6.1.2.1.1.6.0";
const SYS_DESCR: &str = "1.3.6.1.2.1.1.1.0";
const WAIT: Duration = Duration::from_secs(20);

fn provider_key() -> SigningKey {
    SigningKey::from_bytes(&[7; 32])
}

fn public_key_line(key: &SigningKey) -> String {
    cpe_agent::keys::public_key_base64(&key.verifying_key())
}

/// One agent, its broker and its device.
struct Setup {
    dir: tempfile::TempDir,
    broker: Mosquitto,
    snmpd: Snmpd,
    config: PathBuf,
    /// Everything the agent publishes.
    watch: Subscriber,
    device_id: String,
    /// What [`Setup::final_ack`] saw on the way.
    seen: Vec<Message>,
}

impl Setup {
    fn start() -> Setup {
        Setup::start_with(Mosquitto::start(), "", "")
    }

    /// `mqtt_extra` goes into [mqtt], `provisioning_extra` into [provisioning].
    fn start_with(broker: Mosquitto, mqtt_extra: &str, provisioning_extra: &str) -> Setup {
        Setup::start_custom(broker, mqtt_extra, provisioning_extra, "", "")
    }

    /// Also: `more_targets` (", \"HOST:PORT\"" …) swept, and `more` appended
    /// to the file (further [[credentials]]).
    fn start_custom(
        broker: Mosquitto,
        mqtt_extra: &str,
        provisioning_extra: &str,
        more_targets: &str,
        more: &str,
    ) -> Setup {
        let dir = support::temp_dir("provisioning");
        let snmpd = Snmpd::start();
        let config = dir.path().join("agent.toml");
        let text = format!(
            r#"[agent]
id = "{AGENT}"

[mqtt]
host = "127.0.0.1"
port = {port}
{mqtt_extra}

[discovery]
lan_subnets = false
targets = ["127.0.0.1:{snmp_port}"{more_targets}]
interval = "1h"

[[credentials]]
name = "lan-rw"
version = "v2c"
community = "{community}"

[polling]
interval = "1h"
timeout = "500ms"

[storage]
state_dir = "{state}"

[provisioning]
enabled = true
public_keys = ["{key}"]
verify_timeout = "3s"
{provisioning_extra}

{more}
"#,
            port = broker.port(),
            snmp_port = snmpd.port(),
            community = snmpd.rw_community,
            state = dir.path().join("state").display(),
            key = public_key_line(&provider_key()),
        );
        std::fs::write(&config, text).expect("write config");
        let watch = broker.subscribe(&format!("{PREFIX}/#"));
        Setup {
            dir,
            broker,
            snmpd,
            config,
            watch,
            device_id: String::new(),
            seen: Vec::new(),
        }
    }

    fn daemon(&self, log: &str) -> Daemon {
        Daemon::start(&self.config, self.dir.path().join(log))
    }

    fn daemon_killed_at(&self, step: &str, log: &str) -> Daemon {
        Daemon::start_with_env(
            &self.config,
            self.dir.path().join(log),
            &[(cpe_agent::provision::KILL_AT_ENV, step)],
        )
    }

    /// Waits for the device's inventory (the agent knows it and is connected).
    fn wait_for_device(&mut self) {
        let inventory = self.watch.expect_message(WAIT, is_inventory);
        self.device_id = inventory.json()["device_id"]
            .as_str()
            .expect("device_id")
            .to_string();
    }

    fn sys_location(&self) -> String {
        self.snmp_get(SYS_LOCATION)
    }

    fn snmp_get(&self, oid: &str) -> String {
        net_snmp_ok(
            "snmpget",
            &[
                "-v2c",
                "-c",
                &self.snmpd.rw_community,
                "-Ovq",
                "-t",
                "1",
                &self.snmpd.addr().to_string(),
                oid,
            ],
        )
        .trim_matches('"')
        .to_string()
    }

    fn set_sys_location(&self, value: &str) {
        net_snmp_ok(
            "snmpset",
            &[
                "-v2c",
                "-c",
                &self.snmpd.rw_community,
                &self.snmpd.addr().to_string(),
                SYS_LOCATION,
                "s",
                value,
            ],
        );
    }

    fn push_signed(&self, bundle: &Value) {
        self.push_raw(sign(bundle, &provider_key()).as_bytes());
    }

    fn push_raw(&self, message: &[u8]) {
        self.broker
            .publish(&format!("{PREFIX}/config/push"), message, false);
    }

    /// The acknowledgements of `version` until one with a final status.
    fn final_ack(&mut self, version: &str) -> (Vec<String>, Value) {
        let topic = format!("{PREFIX}/config/ack/{version}");
        let seen = self.watch.messages_until(WAIT, |m| {
            m.topic == topic
                && matches!(
                    m.json()["status"].as_str(),
                    Some("applied" | "rejected" | "rolled_back" | "dry_run")
                )
        });
        let acks: Vec<&Message> = seen.iter().filter(|m| m.topic == topic).collect();
        let last = acks
            .last()
            .map(|m| m.json())
            .unwrap_or_else(|| panic!("no acknowledgement on {topic}; saw {:?}", topics(&seen)));
        assert!(
            matches!(
                last["status"].as_str(),
                Some("applied" | "rejected" | "rolled_back" | "dry_run")
            ),
            "no final acknowledgement on {topic}: {acks:?}"
        );
        let statuses = acks
            .iter()
            .map(|m| m.json()["status"].as_str().unwrap_or_default().to_string())
            .collect();
        self.seen = seen;
        (statuses, last)
    }

    fn config_show(&self) -> Value {
        let out = agent::run(&[
            "config",
            "show",
            "--json",
            "--config",
            self.config.to_str().expect("utf-8 path"),
        ]);
        assert!(
            out.status.success(),
            "config show: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).expect("config show --json")
    }

    fn retained_state(&self) -> Value {
        let mut fresh = self.broker.subscribe(&format!("{PREFIX}/config/state"));
        fresh.expect_message(WAIT, |m| m.retained).json()
    }
}

fn is_inventory(m: &Message) -> bool {
    m.topic.starts_with(&format!("{PREFIX}/devices/")) && m.topic.ends_with("/inventory")
}

fn topics(messages: &[Message]) -> Vec<String> {
    messages.iter().map(|m| m.topic.clone()).collect()
}

fn sign(bundle: &Value, key: &SigningKey) -> String {
    cpe_agent::provision::bundle::sign(bundle.to_string().as_bytes(), key)
}

fn bundle(version: u64, desired: Value) -> Value {
    json!({
        "schema": "cpe-agent/bundle/1",
        "target": {"agent": AGENT},
        "version": version,
        "desired": desired,
    })
}

fn location_push(device_id: &str, version: u64, location: &str) -> Value {
    bundle(
        version,
        json!({
            "agent": {"polling": {"interval": "1s"}},
            "devices": {device_id: [
                {"oid": SYS_LOCATION, "type": "string", "value": location}
            ]}
        }),
    )
}

fn health_count(messages: &[Message]) -> usize {
    messages
        .iter()
        .filter(|m| m.topic.ends_with("/health") && m.topic.contains("/devices/"))
        .count()
}

#[test]
fn a_signed_push_changes_the_poll_interval_and_sys_location() {
    let mut setup = Setup::start();
    let _daemon = setup.daemon("agent.log");
    setup.wait_for_device();
    let before = setup.sys_location();
    assert_ne!(before, "rack-7");
    // Polling every hour: no second health message in 3 s.
    let quiet = setup
        .watch
        .messages_until(Duration::from_secs(3), |_| false);
    assert!(health_count(&quiet) <= 1, "{:?}", topics(&quiet));

    setup.push_signed(&location_push(&setup.device_id, 1, "rack-7"));
    let (statuses, last) = setup.final_ack("1");
    assert_eq!(statuses, ["received", "applying", "applied"], "{last}");
    assert_eq!(setup.sys_location(), "rack-7");
    // The new interval is in effect: a health message every second.
    let polled = setup
        .watch
        .messages_until(Duration::from_secs(4), |_| false);
    assert!(health_count(&polled) >= 2, "{:?}", topics(&polled));
    let state = setup.retained_state();
    assert_eq!(
        (state["version"].as_u64(), state["status"].as_str()),
        (Some(1), Some("applied")),
        "{state}"
    );
    let show = setup.config_show();
    assert_eq!(show["applied"]["version"], 1, "{show}");
    assert_eq!(
        show["applied"]["agent_settings"],
        json!(["polling.interval"])
    );

    // The same bundle again is acknowledged as already applied.
    setup.push_signed(&location_push(&setup.device_id, 1, "rack-7"));
    let (_, again) = setup.final_ack("1");
    assert_eq!(again["status"], "applied");
    assert!(
        again["reason"]
            .as_str()
            .unwrap_or_default()
            .contains("already applied"),
        "{again}"
    );
}

#[test]
fn every_refusal_is_acknowledged_with_its_reason_and_changes_nothing() {
    let mut setup = Setup::start();
    let _daemon = setup.daemon("agent.log");
    setup.wait_for_device();
    setup.push_signed(&location_push(&setup.device_id, 5, "applied-5"));
    assert_eq!(setup.final_ack("5").1["status"], "applied");

    let good = location_push(&setup.device_id, 6, "never");
    let stranger = SigningKey::from_bytes(&[9; 32]);
    let mut tampered: Value = serde_json::from_str(&sign(&good, &provider_key())).expect("json");
    tampered["signature"] = sign(
        &location_push(&setup.device_id, 6, "other"),
        &provider_key(),
    )
    .parse::<Value>()
    .expect("json")["signature"]
        .clone();
    let mut unsigned: Value = serde_json::from_str(&sign(&good, &provider_key())).expect("json");
    unsigned
        .as_object_mut()
        .expect("object")
        .remove("signature");
    let mut expired = location_push(&setup.device_id, 8, "never");
    expired["not_after"] = json!("2020-01-01T00:00:00Z");
    let mut elsewhere = location_push(&setup.device_id, 9, "never");
    elsewhere["target"] = json!({"agent": "gw-other"});
    let oversize = vec![b' '; 300 * 1024];

    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        ("6", tampered.to_string().into_bytes(), "bad_signature"),
        ("6", sign(&good, &stranger).into_bytes(), "unknown_key"),
        ("6", unsigned.to_string().into_bytes(), "unsigned"),
        (
            "5",
            sign(&location_push(&setup.device_id, 5, "replayed"), &provider_key()).into_bytes(),
            "replay",
        ),
        (
            "4",
            sign(&location_push(&setup.device_id, 4, "older"), &provider_key()).into_bytes(),
            "replay",
        ),
        ("8", sign(&expired, &provider_key()).into_bytes(), "expired"),
        ("9", sign(&elsewhere, &provider_key()).into_bytes(), "wrong_target"),
        ("unknown", oversize, "too_large"),
        (
            "10",
            sign(
                &bundle(10, json!({"devices": {"no-such-device": [{"oid": SYS_LOCATION, "type": "string", "value": "x"}]}})),
                &provider_key(),
            )
            .into_bytes(),
            "invalid",
        ),
    ];
    for (version, message, code) in cases {
        setup.push_raw(&message);
        let (statuses, last) = setup.final_ack(version);
        assert_eq!(
            (last["status"].as_str(), last["code"].as_str()),
            (Some("rejected"), Some(code)),
            "{code}: {last}"
        );
        assert_eq!(statuses.first().map(String::as_str), Some("received"));
        assert!(
            !statuses.iter().any(|s| s == "applying"),
            "{code}: {statuses:?}"
        );
        assert!(last["reason"].as_str().is_some_and(|r| !r.is_empty()));
        assert_eq!(
            setup.sys_location(),
            "applied-5",
            "{code} changed the device"
        );
    }
    let show = setup.config_show();
    assert_eq!(show["applied"]["version"], 5, "{show}");
    assert_eq!(show["status"], "rejected");
    let state = setup.retained_state();
    assert_eq!(state["version"], 5);
}

/// Writes go only to the device a push names, and only as securely as the
/// operator asks:
/// - with `provisioning.writes_require_authpriv`, a v2c write credential is
///   refused `insecure_write`, and the device is not written;
/// - an impostor answering at the known address (the device went away) is
///   refused `identity_changed` when it is read back before the SET, and
///   receives no SET.
#[test]
fn writes_go_only_to_the_named_device_and_as_securely_as_required() {
    let mut setup = Setup::start_with(Mosquitto::start(), "", "writes_require_authpriv = true");
    let daemon = setup.daemon("agent.log");
    setup.wait_for_device();
    setup.push_signed(&location_push(&setup.device_id, 3, "insecure"));
    let (statuses, last) = setup.final_ack("3");
    assert_eq!(
        (last["status"].as_str(), last["code"].as_str()),
        (Some("rejected"), Some("insecure_write")),
        "{last}"
    );
    assert!(!statuses.iter().any(|s| s == "applying"), "{statuses:?}");
    assert_ne!(setup.sys_location(), "insecure");
    drop(daemon);

    let mut setup = Setup::start();
    let _daemon = setup.daemon("agent.log");
    setup.wait_for_device();
    let at = setup.snmpd.addr();
    setup.snmpd.stop();
    let impostor = Rogue::start_on(at, rogue::sample_table(2), &[Behaviour::AnyCommunity]);
    setup.push_signed(&location_push(&setup.device_id, 4, "hijacked"));
    let (statuses, last) = setup.final_ack("4");
    assert_eq!(
        (last["status"].as_str(), last["code"].as_str()),
        (Some("rejected"), Some("identity_changed")),
        "{last}"
    );
    assert!(!statuses.iter().any(|s| s == "applying"), "{statuses:?}");
    assert!(
        last["reason"]
            .as_str()
            .is_some_and(|r| r.contains("is not the one the push names")),
        "{last}"
    );
    assert_eq!(impostor.counts().other, 0, "a SET reached the impostor");
}

/// Replay protection that survives the loss of the state directory and
/// does not rest on the clock: a captured push is refused `replay` after a
/// factory reset (the floor is read back from the agent's own retained
/// config state), and a command signed before the agent restarted is
/// refused `stale_nonce`.
#[test]
fn captured_pushes_and_commands_do_not_run_again_after_a_reset() {
    let mut setup = Setup::start();
    let mut daemon = setup.daemon("first.log");
    setup.wait_for_device();
    let captured = sign(
        &location_push(&setup.device_id, 7, "seven"),
        &provider_key(),
    );
    setup.push_raw(captured.as_bytes());
    assert_eq!(setup.final_ack("7").1["status"], "applied");
    let old_nonce = nonce(&setup);
    let stale = command("old-1", "poll-now", None);
    daemon.signal(nix::sys::signal::Signal::SIGTERM);
    daemon.wait_exit(Duration::from_secs(10)).expect("stops");
    // Factory reset: the state directory is gone; the device is set back.
    std::fs::remove_dir_all(setup.dir.path().join("state")).expect("wipe the state");
    net_snmp_ok(
        "snmpset",
        &[
            "-v2c",
            "-c",
            &setup.snmpd.rw_community,
            &setup.snmpd.addr().to_string(),
            SYS_LOCATION,
            "s",
            "factory",
        ],
    );
    let _daemon = setup.daemon("second.log");
    setup.wait_for_device();
    setup.push_raw(captured.as_bytes());
    let (_, last) = setup.final_ack("7");
    assert_eq!(
        (last["status"].as_str(), last["code"].as_str()),
        (Some("rejected"), Some("replay")),
        "{last}"
    );
    assert_eq!(
        setup.sys_location(),
        "factory",
        "the captured push ran again"
    );
    let mut stale = stale;
    stale["nonce"] = json!(old_nonce);
    let result = run_command(&mut setup, "old-1", &stale);
    assert_eq!(
        (result["status"].as_str(), result["code"].as_str()),
        (Some("rejected"), Some("stale_nonce")),
        "{result}"
    );
    // A push above the floor still applies.
    setup.push_signed(&location_push(&setup.device_id, 8, "eight"));
    assert_eq!(setup.final_ack("8").1["status"], "applied");
    assert_eq!(setup.sys_location(), "eight");
}

#[test]
fn a_failing_second_set_rolls_the_first_back() {
    let mut setup = Setup::start();
    let _daemon = setup.daemon("agent.log");
    setup.wait_for_device();
    setup.set_sys_location("original");
    let descr = setup.snmp_get(SYS_DESCR);
    let push = bundle(
        1,
        json!({
            "agent": {"polling": {"interval": "1s"}},
            "devices": {setup.device_id.clone(): [
                {"oid": SYS_LOCATION, "type": "string", "value": "changed"},
                {"oid": SYS_DESCR, "type": "string", "value": "read-only"}
            ]}
        }),
    );
    setup.push_signed(&push);
    let (statuses, last) = setup.final_ack("1");
    assert_eq!(statuses, ["received", "applying", "rolled_back"], "{last}");
    assert_eq!(last["step"], "apply", "{last}");
    let reason = last["reason"].as_str().unwrap_or_default();
    assert!(
        reason.contains(SYS_DESCR) && reason.contains("notWritable"),
        "{reason}"
    );
    assert!(!reason.contains("could not restore"), "{reason}");
    assert_eq!(setup.sys_location(), "original");
    assert_eq!(setup.snmp_get(SYS_DESCR), descr);
    let show = setup.config_show();
    assert!(show["applied"].is_null(), "{show}");
    assert_eq!(show["status"], "rolled_back");
    // The poll interval went back to an hour with the rest (after at most
    // one poll scheduled while the push was in effect).
    setup
        .watch
        .messages_until(Duration::from_secs(2), |_| false);
    let quiet = setup
        .watch
        .messages_until(Duration::from_secs(3), |_| false);
    assert_eq!(health_count(&quiet), 0, "{:?}", topics(&quiet));
}

#[test]
fn mqtt_settings_the_broker_refuses_are_reverted() {
    let broker = Mosquitto::options().user("agent", "right-password").start();
    let mut setup = Setup::start_with(
        broker,
        "username = \"agent\"\npassword = \"right-password\"",
        "",
    );
    let mut daemon = setup.daemon("agent.log");
    setup.wait_for_device();
    let push = bundle(
        1,
        json!({"agent": {"mqtt": {"username": "agent", "password": "wrong-password"}}}),
    );
    setup.push_signed(&push);
    let (statuses, last) = setup.final_ack("1");
    assert_eq!(
        statuses.last().map(String::as_str),
        Some("rolled_back"),
        "{last}"
    );
    assert_eq!(last["step"], "verify", "{last}");
    let reason = last["reason"].as_str().unwrap_or_default();
    assert!(reason.contains("did not accept"), "{reason}");
    assert!(
        !reason.contains("wrong-password"),
        "a secret leaked: {reason}"
    );
    // Back on the old settings: the acknowledgement itself came over them,
    // after the agent's birth message of the new connection.
    assert!(
        setup
            .seen
            .iter()
            .any(|m| m.topic.ends_with("/status") && m.json()["state"] == "online"),
        "no reconnect: {:?}",
        topics(&setup.seen)
    );
    daemon.wait_log("config push", 1, WAIT);
    assert!(
        !daemon.log().contains("wrong-password"),
        "a secret reached the log"
    );
    assert!(daemon.is_running());
}

#[test]
fn a_dry_run_reports_the_difference_and_changes_nothing() {
    let mut setup = Setup::start();
    let _daemon = setup.daemon("agent.log");
    setup.wait_for_device();
    let before = setup.sys_location();
    let mut push = location_push(&setup.device_id, 3, "dry");
    push["dry_run"] = json!(true);
    setup.push_signed(&push);
    let (_, last) = setup.final_ack("3");
    assert_eq!(last["status"], "dry_run", "{last}");
    let diff = &last["diff"];
    assert_eq!(diff["agent"][0]["key"], "polling.interval", "{diff}");
    assert_eq!(diff["agent"][0]["to"], "1s", "{diff}");
    assert_eq!(diff["devices"][0]["oid"], SYS_LOCATION, "{diff}");
    assert_eq!(setup.sys_location(), before);
    assert!(setup.config_show()["applied"].is_null());
    // Not applied, so the same version can still be applied for real.
    setup.push_signed(&location_push(&setup.device_id, 3, "real"));
    assert_eq!(setup.final_ack("3").1["status"], "applied");
}

#[test]
fn a_group_push_reaches_the_agents_of_the_group() {
    let mut setup = Setup::start_with(Mosquitto::start(), "", "groups = [\"north\"]");
    let _daemon = setup.daemon("agent.log");
    setup.wait_for_device();
    let mut push = location_push(&setup.device_id, 2, "group-set");
    push["target"] = json!({"group": "north"});
    setup.broker.publish(
        "cpe/v1/groups/north/config/push",
        sign(&push, &provider_key()),
        false,
    );
    assert_eq!(setup.final_ack("2").1["status"], "applied");
    assert_eq!(setup.sys_location(), "group-set");
}

/// Each step of the apply, killed with SIGKILL there: after the restart the
/// config is entirely old or entirely new, and the acknowledgement says which.
#[test]
fn a_kill_at_any_step_leaves_the_old_or_the_new_config() {
    let mut setup = Setup::start();
    let steps = cpe_agent::provision::STEPS;
    let mut applied_location = {
        let daemon = setup.daemon("first.log");
        setup.wait_for_device();
        drop(daemon);
        setup.sys_location()
    };
    let mut applied_version: Option<u64> = None;
    for (i, step) in steps.iter().enumerate() {
        let version = 10 + i as u64;
        let location = format!("loc-{version}");
        let mut doomed = setup.daemon_killed_at(step, &format!("{step}.log"));
        // The device is known again (so the push can name it).
        setup.watch.expect_message(WAIT, is_inventory);
        setup.push_signed(&location_push(&setup.device_id, version, &location));
        let status = doomed.wait_exit(WAIT).unwrap_or_else(|| {
            panic!(
                "the hook did not kill the agent at {step}:\n{}",
                doomed.log()
            )
        });
        use std::os::unix::process::ExitStatusExt as _;
        assert_eq!(
            status.signal(),
            Some(9),
            "{step}: {status:?}\n{}",
            doomed.log()
        );

        let restarted = setup.daemon(&format!("{step}-after.log"));
        let (_, last) = setup.final_ack(&version.to_string());
        // Its inventory too, so that the next round waits for its own.
        if !setup.seen.iter().any(is_inventory) {
            setup.watch.expect_message(WAIT, is_inventory);
        }
        drop(restarted);
        let show = setup.config_show();
        if *step == "committed" {
            assert_eq!(last["status"], "applied", "{step}: {last}");
            applied_location = location;
            applied_version = Some(version);
        } else {
            assert_eq!(last["status"], "rolled_back", "{step}: {last}");
        }
        assert_eq!(setup.sys_location(), applied_location, "{step}");
        assert_eq!(
            show["applied"]["version"].as_u64(),
            applied_version,
            "{step}: {show}"
        );
        assert!(show["in_progress"].is_null(), "{step}: {show}");
    }
    assert_eq!(applied_version, Some(16));
}

fn command(request_id: &str, command: &str, device: Option<&str>) -> Value {
    let mut body = json!({
        "schema": "cpe-agent/command/1",
        "target": {"agent": AGENT},
        "request_id": request_id,
        "not_after": humantime::format_rfc3339_seconds(std::time::SystemTime::now() + Duration::from_secs(600)).to_string(),
        "command": command,
    });
    if let Some(device) = device {
        body["device"] = json!(device);
    }
    body
}

/// The agent's current nonce, from its retained status (as the provider's
/// tooling reads it).
fn nonce(setup: &Setup) -> String {
    let mut status = setup.broker.subscribe(&format!("{PREFIX}/status"));
    status
        .expect_message(WAIT, |m| m.retained && m.json()["state"] == "online")
        .json()["nonce"]
        .as_str()
        .expect("nonce in the online status")
        .to_string()
}

/// Sends a signed command, with the agent's nonce unless `body` has one.
fn run_command(setup: &mut Setup, request_id: &str, body: &Value) -> Value {
    let mut body = body.clone();
    if body.get("nonce").is_none() {
        body["nonce"] = json!(nonce(setup));
    }
    setup.broker.publish(
        &format!("{PREFIX}/cmd/{request_id}"),
        sign(&body, &provider_key()),
        false,
    );
    let topic = format!("{PREFIX}/cmd/{request_id}/result");
    setup
        .watch
        .expect_message(WAIT, |m| m.topic == topic)
        .json()
}

#[test]
fn signed_commands_run_and_answer() {
    let mut setup = Setup::start();
    let _daemon = setup.daemon("agent.log");
    setup.wait_for_device();
    let device = setup.device_id.clone();

    let polled = run_command(&mut setup, "r1", &command("r1", "poll-now", Some(&device)));
    assert_eq!(polled["status"], "ok", "{polled}");
    assert_eq!(polled["result"]["polls_started"], 1);
    // The poll itself (the interval is an hour, so this health is the command's).
    setup.watch.expect_message(WAIT, |m| {
        m.topic == format!("{PREFIX}/devices/{device}/health")
    });

    let diag = run_command(&mut setup, "r2", &command("r2", "diag", None));
    assert_eq!(diag["status"], "ok", "{diag}");
    assert!(
        diag["result"]["checks"]
            .as_array()
            .is_some_and(|c| !c.is_empty()),
        "{diag}"
    );
    assert!(
        !diag.to_string().contains(&setup.snmpd.rw_community),
        "a secret leaked"
    );

    let sweep = run_command(&mut setup, "r3", &command("r3", "rediscover", None));
    assert_eq!(sweep["status"], "ok", "{sweep}");

    let reboot = run_command(
        &mut setup,
        "r4",
        &command("r4", "reboot-device", Some(&device)),
    );
    assert_eq!(reboot["status"], "failed", "{reboot}");
    assert!(
        reboot["reason"]
            .as_str()
            .unwrap_or_default()
            .contains("docsDevResetNow"),
        "{reboot}"
    );

    let again = run_command(&mut setup, "r1", &command("r1", "poll-now", Some(&device)));
    assert_eq!(
        (again["status"].as_str(), again["code"].as_str()),
        (Some("rejected"), Some("replay"))
    );

    let moved = run_command(&mut setup, "r5", &command("r6", "poll-now", None));
    assert_eq!(moved["code"], "invalid", "{moved}");

    let unknown = run_command(
        &mut setup,
        "r7",
        &command("r7", "poll-now", Some("no-such-device")),
    );
    assert_eq!(unknown["status"], "failed", "{unknown}");
}

/// A cable modem whose docsDevResetNow is writable (snmpsim's writecache
/// variation): reboot-device SETs it, and the SET reaches the device.
#[test]
fn reboot_device_resets_a_cable_modem_through_its_mib() {
    let recording =
        std::fs::read_to_string(support::project_data_dir().join("docsis-modem.snmprec"))
            .expect("read the modem recording");
    let reset_now = "1.3.6.1.2.1.69.1.1.3.0|2|2";
    assert!(
        recording.contains(reset_now),
        "the recording has docsDevResetNow"
    );
    let writable = recording.replace(reset_now, "1.3.6.1.2.1.69.1.1.3.0|2:writecache|value=2");
    let data = support::temp_dir("writable-modem");
    let path = data.path().join("modem-writable.snmprec");
    std::fs::write(&path, writable).expect("write the recording");
    let sim = crate::support::snmpsim::SnmpSim::start_communities(&[&path]);
    let modem = sim.device("modem-writable").addr;
    let mut setup = Setup::start_custom(
        Mosquitto::start(),
        "",
        "",
        &format!(", \"{modem}\""),
        "[[credentials]]\nname = \"modem\"\nversion = \"v2c\"\ncommunity = \"modem-writable\"\n",
    );
    let _daemon = setup.daemon("agent.log");
    let modem_id = loop {
        let inventory = setup.watch.expect_message(WAIT, is_inventory).json();
        if inventory["kind"] == "modem" {
            break inventory["device_id"].as_str().expect("id").to_string();
        }
    };
    let get_reset = || {
        net_snmp_ok(
            "snmpget",
            &[
                "-v2c",
                "-c",
                "modem-writable",
                "-Ovq",
                &modem.to_string(),
                "1.3.6.1.2.1.69.1.1.3.0",
            ],
        )
    };
    assert_eq!(get_reset(), "2");
    let reboot = run_command(
        &mut setup,
        "boot-1",
        &command("boot-1", "reboot-device", Some(&modem_id)),
    );
    assert_eq!(reboot["status"], "ok", "{reboot}");
    assert_eq!(reboot["result"]["object"], "docsDevResetNow", "{reboot}");
    assert_eq!(get_reset(), "1", "the SET did not reach the modem");
}
