//! The MQTT contract: the schemas in docs/schemas/ accept every example in
//! docs/mqtt.md and reject the typical mistakes an agent change could make.
//! (The integration tests validate what the agent really publishes: see
//! `Subscriber` in tests/support/mosquitto.rs.)

use serde_json::{json, Value};

use crate::support::schema::{self, schema_for_topic, validate, SCHEMA_FILES};

const DOC: &str = include_str!("../../docs/mqtt.md");
const MARKER: &str = "<!-- example: ";

/// One example payload of docs/mqtt.md: a ```json block right after an
/// `<!-- example: TOPIC -->` line.
#[derive(Debug, Clone)]
struct Example {
    topic: String,
    line: usize,
    payload: String,
}

impl Example {
    fn json(&self) -> Value {
        serde_json::from_str(&self.payload).unwrap_or_else(|e| {
            panic!(
                "docs/mqtt.md:{}: example is not JSON ({e}):\n{}",
                self.line, self.payload
            )
        })
    }
}

fn examples() -> Vec<Example> {
    let lines: Vec<&str> = DOC.lines().collect();
    let mut found = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        let Some(rest) = line.strip_prefix(MARKER) else {
            continue;
        };
        let topic = rest
            .strip_suffix(" -->")
            .unwrap_or_else(|| panic!("docs/mqtt.md:{}: marker without ' -->'", i + 1))
            .trim()
            .to_string();
        assert_eq!(
            lines.get(i + 1).copied(),
            Some("```json"),
            "docs/mqtt.md:{}: an example marker must be followed by a ```json block",
            i + 1
        );
        let body: Vec<&str> = lines[i + 2..]
            .iter()
            .take_while(|l| **l != "```")
            .copied()
            .collect();
        found.push(Example {
            topic,
            line: i + 3,
            payload: body.join("\n"),
        });
    }
    found
}

/// The first example whose topic ends with `leaf` and for which `pick` holds.
fn example(leaf: &str, pick: impl Fn(&Value) -> bool) -> (String, Value) {
    examples()
        .into_iter()
        .find(|e| e.topic.ends_with(leaf) && pick(&e.json()))
        .map(|e| {
            let json = e.json();
            (e.topic, json)
        })
        .unwrap_or_else(|| panic!("docs/mqtt.md has no matching example on */{leaf}"))
}

fn bytes(value: &Value) -> Vec<u8> {
    serde_json::to_vec(value).expect("serialise")
}

/// Validation must fail; returns the error for further checks.
fn rejected(topic: &str, value: &Value) -> String {
    match validate(topic, &bytes(value)) {
        Ok(()) => panic!("{topic}: accepted, but should not be:\n{value:#}"),
        Err(message) => message,
    }
}

fn assert_mentions(message: &str, parts: &[&str]) {
    for part in parts {
        assert!(
            message.contains(part),
            "expected {part:?} in the error:\n{message}"
        );
    }
}

#[test]
fn schema_files_are_draft_2020_12_and_name_their_message_type() {
    schema::compile_all();
    for (file, text) in SCHEMA_FILES {
        let schema: Value = serde_json::from_str(text).expect("JSON");
        assert_eq!(
            schema["$schema"], "https://json-schema.org/draft/2020-12/schema",
            "{file}"
        );
        let id = schema["properties"]["schema"]["const"]
            .as_str()
            .unwrap_or_else(|| panic!("{file}: properties.schema.const"));
        assert_eq!(schema["title"], id, "{file}: title is the schema id");
        let name = file.trim_end_matches(".json");
        assert_eq!(id, format!("cpe-agent/{name}/1"), "{file}");
        assert_eq!(
            schema["$id"],
            format!("urn:cpe-agent:schema:{name}:1"),
            "{file}"
        );
    }
}

#[test]
fn schema_for_topic_knows_the_tree_and_nothing_else() {
    let cases = [
        ("cpe/v1/gw-1/status", Some("status.json")),
        ("cpe/v1/gw-1/agent/health", Some("agent-health.json")),
        (
            "cpe/v1/gw-1/devices/sn-x-1/inventory",
            Some("inventory.json"),
        ),
        ("cpe/v1/gw-1/devices/sn-x-1/health", Some("health.json")),
        ("cpe/v1/gw-1/devices/sn-x-1/events", Some("event.json")),
        ("cpe/v1/gw-1/devices/sn-x-1/other", None),
        ("cpe/v1/gw-1/devices/+/health", None),
        ("cpe/v1/gw-1/status/extra", None),
        ("cpe/v1/gw-1", None),
        ("cpe/v2/gw-1/status", None),
        ("harness/plain/state", None),
        ("cpe-agent-test-harness/probe/42/0", None),
    ];
    for (topic, expected) in cases {
        assert_eq!(schema_for_topic(topic), expected, "{topic}");
    }
    let err = validate("cpe/v1/gw-1/devices/sn-x-1/other", b"{}").expect_err("unknown topic");
    assert_mentions(&err, &["cpe/v1/gw-1/devices/sn-x-1/other", "not a topic"]);
}

#[test]
fn every_example_in_the_docs_is_valid() {
    let all = examples();
    assert!(all.len() >= 15, "only {} examples found", all.len());
    let mut failures = Vec::new();
    for example in &all {
        if let Err(message) = validate(&example.topic, example.payload.as_bytes()) {
            failures.push(format!("docs/mqtt.md:{}: {message}", example.line));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
    // Every message type has at least one example.
    for (file, _) in SCHEMA_FILES {
        assert!(
            all.iter().any(|e| schema_for_topic(&e.topic) == Some(file)),
            "docs/mqtt.md has no example for {file}"
        );
    }
}

#[test]
fn the_docs_show_every_kind_of_event_and_both_states() {
    let mut event_schema: Value =
        serde_json::from_str(include_str!("../../docs/schemas/event.json")).expect("JSON");
    schema::close_open_enums(&mut event_schema);
    let kinds: Vec<&str> = event_schema["properties"]["event"]["enum"]
        .as_array()
        .expect("event enum")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    let all = examples();
    let shown = |field: &str, value: &str| all.iter().any(|e| e.json()[field] == value);
    for kind in kinds {
        assert!(shown("event", kind), "no example of the {kind:?} event");
    }
    for state in ["online", "offline", "present", "lost"] {
        assert!(shown("state", state), "no example with state {state:?}");
    }
}

#[test]
fn a_health_sample_without_seq_is_rejected() {
    let (topic, mut health) = example("/health", |_| true);
    health.as_object_mut().expect("object").remove("seq");
    let err = rejected(&topic, &health);
    assert_mentions(&err, &[&topic, "docs/schemas/health.json", "(root)", "seq"]);
}

#[test]
fn seq_starts_at_one_and_status_has_none() {
    let (topic, mut health) = example("/health", |_| true);
    health["seq"] = json!(0);
    assert_mentions(&rejected(&topic, &health), &["/seq"]);
    health["seq"] = json!(1.5);
    assert_mentions(&rejected(&topic, &health), &["/seq"]);
    let (topic, mut status) = example("/status", |v| v["state"] == "online");
    status["seq"] = json!(7);
    assert_mentions(&rejected(&topic, &status), &["seq"]);
}

#[test]
fn an_unknown_event_is_rejected() {
    let (topic, mut event) = example("/events", |v| v["event"] == "lost");
    event["event"] = json!("exploded");
    assert_mentions(
        &rejected(&topic, &event),
        &["/event", "docs/schemas/event.json"],
    );
}

/// A NOC validating with the published files accepts an enumeration value a
/// newer v1 agent adds (a new kind, a new event); the agent's own tests,
/// which close the enumerations, do not.
#[test]
fn published_enumerations_are_open_and_the_agents_tests_keep_them_closed() {
    let (topic, mut device) = example("/inventory", |v| v.get("kind").is_some());
    device["kind"] = json!("toaster");
    assert_mentions(&rejected(&topic, &device), &["/kind"]);

    let (file, text) = SCHEMA_FILES
        .iter()
        .find(|(file, _)| *file == "inventory.json")
        .expect("inventory.json");
    let published: Value = serde_json::from_str(text).expect("JSON");
    let mut compiler = boon::Compiler::new();
    let mut schemas = boon::Schemas::new();
    let url = format!("file:///published/{file}");
    compiler.add_resource(&url, published.clone()).expect("add");
    let index = compiler.compile(&url, &mut schemas).expect("compiles");
    assert!(
        schemas.validate(&device, index).is_ok(),
        "the published inventory schema rejects a new kind"
    );
    device["kind"] = json!("Toaster Oven!");
    assert!(
        schemas.validate(&device, index).is_err(),
        "an open enumeration still has a shape"
    );

    let mut closed = published;
    schema::close_open_enums(&mut closed);
    assert!(
        !closed.to_string().contains("open_enum\"}"),
        "closing leaves no open branch"
    );
}

#[test]
fn each_event_has_its_own_fields_and_only_those() {
    let (topic, mut found) = example("/events", |v| v["event"] == "found");
    found.as_object_mut().expect("object").remove("address");
    assert_mentions(&rejected(&topic, &found), &["address"]);

    let (topic, mut lost) = example("/events", |v| v["event"] == "lost");
    lost["address"] = json!("127.0.1.3:161");
    assert_mentions(&rejected(&topic, &lost), &["address"]);

    let (topic, mut crossed) = example("/events", |v| v["event"] == "threshold_crossed");
    crossed.as_object_mut().expect("object").remove("limit");
    assert_mentions(&rejected(&topic, &crossed), &["limit"]);
    let (topic, mut crossed) = example("/events", |v| v["event"] == "threshold_crossed");
    crossed["metric"] = json!("cpu_pct");
    assert_mentions(&rejected(&topic, &crossed), &["/metric"]);
    // `subject` is optional.
    crossed["metric"] = json!("cpu_percent");
    crossed.as_object_mut().expect("object").remove("subject");
    validate(&topic, &bytes(&crossed)).expect("a threshold event without subject");

    let (topic, mut down) = example("/events", |v| v["event"] == "interface_down");
    down["if_index"] = json!("3");
    assert_mentions(&rejected(&topic, &down), &["/if_index"]);
}

#[test]
fn a_wrong_type_is_rejected_with_its_pointer() {
    let (topic, mut health) = example("/health", |v| v["interfaces"].is_array());
    health["missed_polls"] = json!("0");
    health["interfaces"][1]["in_bps"] = json!("fast");
    health["reachable"] = Value::Null;
    let err = rejected(&topic, &health);
    assert_mentions(
        &err,
        &[
            "3 violations",
            "/missed_polls",
            "/interfaces/1/in_bps",
            "/reachable",
        ],
    );
}

#[test]
fn an_extra_field_is_rejected_at_any_depth() {
    let (topic, mut inventory) = example("/inventory", |_| true);
    inventory["sysName"] = json!("typo");
    assert_mentions(&rejected(&topic, &inventory), &["sysName"]);

    let (topic, mut inventory) = example("/inventory", |v| v["interfaces"].is_array());
    inventory["interfaces"][0]["speed"] = json!(100);
    assert_mentions(&rejected(&topic, &inventory), &["/interfaces/0", "speed"]);

    let (topic, mut health) = example("/health", |v| v["docsis"].is_object());
    health["docsis"]["upstream"][0]["snr_db"] = json!(30.0);
    assert_mentions(
        &rejected(&topic, &health),
        &["/docsis/upstream/0", "snr_db"],
    );

    let (topic, mut agent) = example("/agent/health", |_| true);
    agent["queue"]["dropped"] = json!(0);
    assert_mentions(&rejected(&topic, &agent), &["/queue", "dropped"]);
}

#[test]
fn nulls_only_where_the_contract_allows_them() {
    let (topic, mut inventory) = example("/inventory", |_| true);
    inventory["vendor"] = Value::Null;
    inventory["sys_services"] = Value::Null;
    validate(&topic, &bytes(&inventory)).expect("vendor and sys_services may be null");
    inventory["kind"] = Value::Null;
    assert_mentions(&rejected(&topic, &inventory), &["/kind"]);

    let (topic, mut agent) = example("/agent/health", |_| true);
    agent["queue"]["oldest_age_s"] = Value::Null;
    validate(&topic, &bytes(&agent)).expect("oldest_age_s may be null");
    agent["poll_lag_s"] = Value::Null;
    assert_mentions(&rejected(&topic, &agent), &["/poll_lag_s"]);
}

#[test]
fn status_online_and_offline_have_their_own_fields() {
    let (topic, mut online) = example("/status", |v| v["state"] == "online");
    online.as_object_mut().expect("object").remove("last_seq");
    assert_mentions(&rejected(&topic, &online), &["last_seq"]);
    let (topic, mut online) = example("/status", |v| v["state"] == "online");
    online["config_version"] = json!(42);
    validate(&topic, &bytes(&online)).expect("an integer config_version");
    online["config_version"] = json!("2026-11-20.3");
    validate(&topic, &bytes(&online)).expect("a string config_version");

    let (topic, mut offline) = example("/status", |v| v["state"] == "offline");
    offline["version"] = json!("0.1.0");
    assert_mentions(&rejected(&topic, &offline), &["version"]);
    let (topic, mut offline) = example("/status", |v| v["state"] == "offline");
    offline["reason"] = json!("crashed");
    assert_mentions(&rejected(&topic, &offline), &["/reason"]);
    let bare = json!({
        "schema": "cpe-agent/status/1",
        "ts": "2026-11-23T16:48:37.439Z",
        "agent_id": "demo-gateway",
        "state": "offline"
    });
    validate(&topic, &bytes(&bare)).expect("reason and last_seq are optional offline");
}

#[test]
fn the_envelope_is_checked_and_matches_the_topic() {
    let (topic, health) = example("/health", |_| true);
    let mut bad = health.clone();
    bad["ts"] = json!("2026-11-23T16:48:37Z");
    assert_mentions(&rejected(&topic, &bad), &["/ts"]);
    bad["ts"] = json!("2026-11-23T16:48:37.265+01:00");
    assert_mentions(&rejected(&topic, &bad), &["/ts"]);
    bad["ts"] = json!("2026-13-23T16:48:37.265Z");
    assert_mentions(&rejected(&topic, &bad), &["/ts"]);

    let mut bad = health.clone();
    bad["schema"] = json!("cpe-agent/health/2");
    assert_mentions(&rejected(&topic, &bad), &["/schema"]);

    let mut bad = health.clone();
    bad["agent_id"] = json!("someone-else");
    assert_mentions(&rejected(&topic, &bad), &["/agent_id", "someone-else"]);
    let mut bad = health.clone();
    bad["device_id"] = json!("mac-000000000001");
    assert_mentions(&rejected(&topic, &bad), &["/device_id"]);
    let mut bad = health;
    bad["agent_id"] = json!("has space");
    assert_mentions(&rejected(&topic, &bad), &["/agent_id"]);

    let err = validate(&topic, b"not json").expect_err("not JSON");
    assert_mentions(&err, &[&topic, "not JSON"]);
    let err = validate(&topic, b"").expect_err("empty");
    assert_mentions(&err, &["not JSON"]);
}
