//! The MQTT contract as executable checks: every payload the agent publishes
//! is validated against its JSON Schema from `docs/schemas/` (draft 2020-12,
//! with format assertions on), using the `boon` crate.
//!
//! * [`schema_for_topic`] maps a topic of the default tree
//!   `cpe/v1/{agent_id}/...` to the schema file of its message type; any
//!   other topic (the harness's probe topics, a test's own topics, and what
//!   the provider publishes: `{prefix}/config/push`, `{prefix}/cmd/{id}`,
//!   the group topics `cpe/v1/groups/...`) is not the agent's and gets
//!   `None`.
//! * [`validate`] parses the payload, validates it, and also checks that the
//!   payload's `agent_id`, `device_id`, `version` (config acks) and
//!   `request_id` (command results) are the ones in its topic. The error
//!   names the topic, the schema and every violation with its JSON pointer.
//! * [`PROVIDER_SCHEMA_FILES`] are the schemas of what the provider sends the
//!   agent (the signed envelope, the bundle, the command); they are checked
//!   by this file's unit tests, not applied to any topic.
//! * The schema files are compiled into the test binary (`include_str!`) and
//!   compiled as schemas once per process ([`OnceLock`]); compiling also
//!   checks each file against the draft 2020-12 meta-schema.
//!
//! [`super::mosquitto::Subscriber`] calls [`assert_valid`] on every message
//! it hands out whose topic [`schema_for_topic`] recognises, so every test
//! that watches the agent's topics checks the contract as a side effect.

use std::collections::BTreeMap;
use std::sync::OnceLock;

use serde_json::Value;

/// The topic tree's root, as published with the default `mqtt.topic_prefix`.
pub const TOPIC_ROOT: &str = "cpe/v1/";

/// Every schema file, by name, with its text (as in `docs/schemas/`).
pub const SCHEMA_FILES: [(&str, &str); 8] = [
    (
        "status.json",
        include_str!("../../docs/schemas/status.json"),
    ),
    (
        "inventory.json",
        include_str!("../../docs/schemas/inventory.json"),
    ),
    (
        "health.json",
        include_str!("../../docs/schemas/health.json"),
    ),
    ("event.json", include_str!("../../docs/schemas/event.json")),
    (
        "agent-health.json",
        include_str!("../../docs/schemas/agent-health.json"),
    ),
    (
        "config-ack.json",
        include_str!("../../docs/schemas/config-ack.json"),
    ),
    (
        "config-state.json",
        include_str!("../../docs/schemas/config-state.json"),
    ),
    (
        "command-result.json",
        include_str!("../../docs/schemas/command-result.json"),
    ),
];

/// The schemas of what the provider publishes to the agent (docs/provisioning.md):
/// not the agent's messages, so no topic maps to them.
pub const PROVIDER_SCHEMA_FILES: [(&str, &str); 3] = [
    (
        "push-envelope.json",
        include_str!("../../docs/schemas/push-envelope.json"),
    ),
    (
        "bundle.json",
        include_str!("../../docs/schemas/bundle.json"),
    ),
    (
        "command.json",
        include_str!("../../docs/schemas/command.json"),
    ),
];

/// The topic level under the root that holds the group topics
/// (`provisioning.group_topic`, default `cpe/v1/groups/{group}/config/push`):
/// never an agent's.
const GROUPS_LEVEL: &str = "groups";

/// What a topic of the tree says about its message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicParts<'a> {
    pub agent_id: &'a str,
    pub device_id: Option<&'a str>,
    /// `config/ack/{version}`: the version level, digits or `unknown`.
    pub ack_version: Option<&'a str>,
    /// `cmd/{request_id}/result`: the request id.
    pub request_id: Option<&'a str>,
    pub schema_file: &'static str,
}

/// Splits `cpe/v1/{agent_id}/...` into its parts; `None` when the topic is
/// not one of the contract's. The provider's topics (`config/push`,
/// `cmd/{request_id}`, `cpe/v1/groups/...`) are not: the agent only
/// subscribes to them.
pub fn parse_topic(topic: &str) -> Option<TopicParts<'_>> {
    let rest = topic.strip_prefix(TOPIC_ROOT)?;
    let levels: Vec<&str> = rest.split('/').collect();
    let mut parts = TopicParts {
        agent_id: levels.first().copied()?,
        device_id: None,
        ack_version: None,
        request_id: None,
        schema_file: "",
    };
    parts.schema_file = match levels.as_slice() {
        [_, "status"] => "status.json",
        [_, "agent", "health"] => "agent-health.json",
        [_, "devices", device, leaf] => {
            parts.device_id = Some(*device);
            match *leaf {
                "inventory" => "inventory.json",
                "health" => "health.json",
                "events" => "event.json",
                _ => return None,
            }
        }
        [_, "config", "ack", version] => {
            let digits = !version.is_empty() && version.bytes().all(|b| b.is_ascii_digit());
            if !(*version == "unknown" || digits && version.parse::<u64>().is_ok()) {
                return None;
            }
            parts.ack_version = Some(*version);
            "config-ack.json"
        }
        [_, "config", "state"] => "config-state.json",
        [_, "cmd", request_id, "result"] => {
            parts.request_id = Some(*request_id);
            "command-result.json"
        }
        _ => return None,
    };
    let level_ok = |level: &str| !level.is_empty() && !level.contains(['+', '#']);
    if !level_ok(parts.agent_id)
        || parts.agent_id == GROUPS_LEVEL
        || !parts.device_id.is_none_or(level_ok)
        || !parts.request_id.is_none_or(level_ok)
    {
        return None;
    }
    Some(parts)
}

/// The schema file (under `docs/schemas/`) for a topic of the agent's tree,
/// or `None` for a topic that is not the agent's.
pub fn schema_for_topic(topic: &str) -> Option<&'static str> {
    parse_topic(topic).map(|parts| parts.schema_file)
}

struct Compiled {
    schemas: boon::Schemas,
    by_file: BTreeMap<&'static str, boon::SchemaIndex>,
}

fn compiled() -> &'static Compiled {
    static COMPILED: OnceLock<Compiled> = OnceLock::new();
    COMPILED.get_or_init(|| {
        let mut compiler = boon::Compiler::new();
        compiler.enable_format_assertions();
        let mut schemas = boon::Schemas::new();
        let mut by_file = BTreeMap::new();
        for (file, text) in SCHEMA_FILES {
            let index = compile_file(&mut compiler, &mut schemas, file, text);
            by_file.insert(file, index);
        }
        Compiled { schemas, by_file }
    })
}

/// Compiles one schema file of docs/schemas/ into `schemas`.
fn compile_file(
    compiler: &mut boon::Compiler,
    schemas: &mut boon::Schemas,
    file: &str,
    text: &str,
) -> boon::SchemaIndex {
    let mut json: Value = serde_json::from_str(text)
        .unwrap_or_else(|e| panic!("docs/schemas/{file} is not JSON: {e}"));
    close_open_enums(&mut json);
    let location = schema_location(file);
    compiler
        .add_resource(&location, json)
        .unwrap_or_else(|e| panic!("docs/schemas/{file}: {e}"));
    compiler
        .compile(&location, schemas)
        .unwrap_or_else(|e| panic!("docs/schemas/{file} is not a valid schema: {e:#}"))
}

/// The published files' enumerations are open (`anyOf: [{enum}, open_enum]`,
/// so a NOC's validator accepts values a newer agent adds). The agent's own
/// messages are held to the listed values: a misspelt or undocumented value
/// fails its tests. This closes them again.
pub fn close_open_enums(value: &mut Value) {
    match value {
        Value::Object(map) => {
            let open =
                map.get("anyOf")
                    .and_then(Value::as_array)
                    .and_then(|any| match any.as_slice() {
                        [listed @ Value::Object(_), reference]
                            if reference.get("$ref").and_then(Value::as_str)
                                == Some("#/$defs/open_enum") =>
                        {
                            Some(listed.clone())
                        }
                        _ => None,
                    });
            if let Some(Value::Object(listed)) = open {
                map.remove("anyOf");
                map.extend(listed);
            }
            for child in map.values_mut() {
                close_open_enums(child);
            }
        }
        Value::Array(items) => items.iter_mut().for_each(close_open_enums),
        _ => {}
    }
}

/// Where a schema file is registered with the validator (its `$id` inside
/// takes over for references).
fn schema_location(file: &str) -> String {
    format!("{SCHEMA_BASE}{file}")
}

const SCHEMA_BASE: &str = "file:///cpe-agent/docs/schemas/";

/// Compiles every schema file (once); panics naming the file that is not a
/// valid draft 2020-12 schema.
pub fn compile_all() {
    compiled();
}

/// Validates `value` against one schema file; the violations, each as
/// "`pointer`: message (schema location)".
pub fn violations(schema_file: &str, value: &Value) -> Vec<String> {
    let compiled = compiled();
    let Some(index) = compiled.by_file.get(schema_file) else {
        return vec![format!("no schema file named {schema_file}")];
    };
    match compiled.schemas.validate(value, *index) {
        Ok(()) => Vec::new(),
        Err(error) => {
            let mut out = Vec::new();
            leaves(&error, &mut out);
            out
        }
    }
}

/// The innermost errors: the ones that say what is wrong, each with the
/// JSON pointer of the offending value and where in which schema file.
fn leaves(error: &boon::ValidationError<'_, '_>, out: &mut Vec<String>) {
    if error.causes.is_empty() {
        let pointer = error.instance_location.to_string();
        let pointer = if pointer.is_empty() {
            "(root)".to_string()
        } else {
            pointer
        };
        let rule = error
            .schema_url
            .strip_prefix(SCHEMA_BASE)
            .unwrap_or(error.schema_url);
        // `"field": false` is how a schema forbids a field of another variant.
        let what = match error.kind {
            boon::ErrorKind::FalseSchema => "not allowed here".to_string(),
            ref kind => kind.to_string(),
        };
        out.push(format!("{pointer}: {what} (at {rule})"));
    }
    for cause in &error.causes {
        leaves(cause, out);
    }
}

/// At most this much of a payload is quoted in an error.
const QUOTE_MAX: usize = 4096;

fn quote(payload: &[u8]) -> String {
    let text = String::from_utf8_lossy(payload);
    match text.char_indices().nth(QUOTE_MAX) {
        Some((cut, _)) => format!("{}… ({} bytes in all)", &text[..cut], payload.len()),
        None => text.into_owned(),
    }
}

/// Parses `payload` as JSON and validates it against the schema for `topic`,
/// also checking that its `agent_id` and `device_id` match the topic's.
pub fn validate(topic: &str, payload: &[u8]) -> Result<(), String> {
    let text = quote(payload);
    let Some(parts) = parse_topic(topic) else {
        return Err(format!(
            "{topic}: not a topic of the MQTT contract (docs/mqtt.md): no schema for it\n  payload: {text}"
        ));
    };
    let file = parts.schema_file;
    let value: Value = serde_json::from_slice(payload).map_err(|e| {
        format!("{topic}: payload is not JSON ({e}); schema docs/schemas/{file}\n  payload: {text}")
    })?;
    let mut problems = violations(file, &value);
    let mut same = |field: &str, expected: &str| {
        if let Some(actual) = value.get(field).and_then(Value::as_str) {
            if actual != expected {
                problems.push(format!(
                    "/{field}: {actual:?} differs from the topic's {expected:?}"
                ));
            }
        }
    };
    same("agent_id", parts.agent_id);
    if let Some(device_id) = parts.device_id {
        same("device_id", device_id);
    }
    if let Some(request_id) = parts.request_id {
        same("request_id", request_id);
    }
    // The ack topic's last level is the version, `unknown` for null.
    if let (Some(level), Some(version)) = (parts.ack_version, value.get("version")) {
        let in_payload = match version {
            Value::Null => Some("unknown".to_string()),
            other => other.as_u64().map(|v| v.to_string()),
        };
        if in_payload.is_some_and(|actual| actual != level) {
            problems.push(format!(
                "/version: {version} differs from the topic's {level:?}"
            ));
        }
    }
    if problems.is_empty() {
        return Ok(());
    }
    Err(format!(
        "{topic}: payload violates docs/schemas/{file} ({} violation{}):\n  {}\n  payload: {text}",
        problems.len(),
        if problems.len() == 1 { "" } else { "s" },
        problems.join("\n  ")
    ))
}

/// [`validate`], panicking with its error.
pub fn assert_valid(topic: &str, payload: &[u8]) {
    if let Err(message) = validate(topic, payload) {
        panic!("MQTT contract violation: {message}");
    }
}

#[cfg(test)]
mod tests {
    use serde_json::{json, Value};

    use super::*;

    fn bytes(value: &Value) -> Vec<u8> {
        serde_json::to_vec(value).expect("serialise")
    }

    fn rejected(topic: &str, value: &Value, parts: &[&str]) {
        let message = match validate(topic, &bytes(value)) {
            Ok(()) => panic!("{topic}: accepted, but should not be:\n{value:#}"),
            Err(message) => message,
        };
        for part in parts {
            assert!(
                message.contains(part),
                "expected {part:?} in the error:\n{message}"
            );
        }
    }

    fn valid(topic: &str, value: &Value) {
        if let Err(message) = validate(topic, &bytes(value)) {
            panic!("{message}");
        }
    }

    #[test]
    fn schema_topics_of_provisioning_messages() {
        let cases = [
            ("cpe/v1/gw-1/config/ack/42", Some("config-ack.json")),
            ("cpe/v1/gw-1/config/ack/0", Some("config-ack.json")),
            ("cpe/v1/gw-1/config/ack/unknown", Some("config-ack.json")),
            ("cpe/v1/gw-1/config/state", Some("config-state.json")),
            (
                "cpe/v1/gw-1/cmd/req-20261123-0007/result",
                Some("command-result.json"),
            ),
            ("cpe/v1/gw-1/config/ack/4x", None),
            ("cpe/v1/gw-1/config/ack/-1", None),
            ("cpe/v1/gw-1/config/ack/", None),
            ("cpe/v1/gw-1/config/ack/+", None),
            ("cpe/v1/gw-1/config/ack/99999999999999999999", None),
            ("cpe/v1/gw-1/config/ack", None),
            ("cpe/v1/gw-1/config/state/extra", None),
            ("cpe/v1/gw-1/cmd/+/result", None),
            ("cpe/v1/gw-1/cmd//result", None),
            ("cpe/v1/gw-1/cmd/req-7/result/extra", None),
            // The provider's messages: the agent subscribes, it never publishes.
            ("cpe/v1/gw-1/config/push", None),
            ("cpe/v1/gw-1/cmd/req-7", None),
            ("cpe/v1/groups/region-north/config/push", None),
            ("cpe/v1/groups/config/state", None),
            ("cpe/v1/groups/status", None),
            // The existing tree is unchanged.
            ("cpe/v1/gw-1/status", Some("status.json")),
            ("cpe/v1/gw-1/devices/d1/events", Some("event.json")),
        ];
        for (topic, expected) in cases {
            assert_eq!(schema_for_topic(topic), expected, "{topic}");
        }
        let ack = parse_topic("cpe/v1/gw-1/config/ack/42").expect("ack");
        assert_eq!(
            (ack.agent_id, ack.ack_version, ack.request_id, ack.device_id),
            ("gw-1", Some("42"), None, None)
        );
        let result = parse_topic("cpe/v1/gw-1/cmd/r-1/result").expect("result");
        assert_eq!(
            (result.agent_id, result.request_id, result.ack_version),
            ("gw-1", Some("r-1"), None)
        );
    }

    fn ack(version: Value, status: &str, extra: Value) -> Value {
        let mut ack = json!({
            "schema": "cpe-agent/config-ack/1",
            "ts": "2026-11-23T18:02:11.417Z",
            "agent_id": "gw-1",
            "seq": 2211,
            "version": version,
            "status": status,
        });
        with_fields(&mut ack, extra);
        ack
    }

    /// Adds `extra`'s fields to an example payload.
    fn with_fields(payload: &mut Value, extra: Value) {
        if let (Value::Object(payload), Value::Object(extra)) = (payload, extra) {
            payload.extend(extra);
        }
    }

    #[test]
    fn schema_accepts_every_kind_of_config_ack() {
        let topic = "cpe/v1/gw-1/config/ack/42";
        for status in ["received", "applying", "applied"] {
            valid(topic, &ack(json!(42), status, json!({})));
        }
        valid(
            topic,
            &ack(
                json!(42),
                "applied",
                json!({"reason": "version 42 is already applied"}),
            ),
        );
        valid(
            topic,
            &ack(
                json!(42),
                "rejected",
                json!({
                    "code": "replay",
                    "reason": "replay: version 42 is not greater than the applied version 42; push a higher version"
                }),
            ),
        );
        valid(
            topic,
            &ack(
                json!(42),
                "rolled_back",
                json!({
                    "step": "verify",
                    "reason": "1.3.6.1.2.1.1.5.0 on sn-arris-391437209184210503 reads back String(\"old\"), not the value set"
                }),
            ),
        );
        valid(
            topic,
            &ack(
                json!(42),
                "dry_run",
                json!({"diff": {
                    "agent": [
                        {"key": "polling.interval", "from": "1m", "to": "30s"},
                        {"key": "thresholds.cpu_percent", "from": null, "to": {"max": 80.0, "min": null}}
                    ],
                    "devices": [
                        {"device_id": "sn-mikrotik-C8F20B7A41E3", "oid": "1.3.6.1.2.1.1.5.0", "type": "string", "value": "office-gw"},
                        {"device_id": "sn-mikrotik-C8F20B7A41E3", "oid": "1.3.6.1.2.1.2.2.1.7.3", "type": "integer", "value": 2}
                    ]
                }}),
            ),
        );
        let unreadable = ack(
            Value::Null,
            "rejected",
            json!({"code": "invalid", "reason": "invalid: envelope: expected value at line 1 column 1"}),
        );
        valid("cpe/v1/gw-1/config/ack/unknown", &unreadable);
        valid(
            "cpe/v1/gw-1/config/ack/unknown",
            &ack(Value::Null, "received", json!({})),
        );
    }

    #[test]
    fn schema_refuses_config_acks_that_break_the_contract() {
        let topic = "cpe/v1/gw-1/config/ack/42";
        rejected(
            topic,
            &ack(json!(42), "half_applied", json!({})),
            &["/status", "docs/schemas/config-ack.json"],
        );
        // The topic's version and the payload's agree.
        rejected(
            topic,
            &ack(json!(43), "received", json!({})),
            &["/version", "\"42\""],
        );
        rejected(
            topic,
            &ack(Value::Null, "received", json!({})),
            &["/version"],
        );
        rejected(
            "cpe/v1/gw-1/config/ack/unknown",
            &ack(json!(42), "received", json!({})),
            &["/version"],
        );
        // Each status has its own fields.
        rejected(
            topic,
            &ack(json!(42), "rejected", json!({"reason": "no code"})),
            &["code"],
        );
        rejected(
            topic,
            &ack(
                json!(42),
                "rejected",
                json!({"code": "nope", "reason": "r"}),
            ),
            &["/code"],
        );
        rejected(
            topic,
            &ack(json!(42), "rolled_back", json!({"reason": "no step"})),
            &["step"],
        );
        rejected(
            topic,
            &ack(json!(42), "applied", json!({"code": "replay"})),
            &["/code", "not allowed"],
        );
        rejected(topic, &ack(json!(42), "dry_run", json!({})), &["diff"]);
        rejected(
            topic,
            &ack(
                json!(42),
                "dry_run",
                json!({"diff": {"agent": [{"key": "polling.interval", "to": "30s"}], "devices": []}}),
            ),
            &["/diff/agent/0", "from"],
        );
        rejected(
            topic,
            &ack(json!(42), "received", json!({"extra": 1})),
            &["extra"],
        );
    }

    fn state(version: Value, status: &str, last_error: Value) -> Value {
        json!({
            "schema": "cpe-agent/config-state/1",
            "ts": "2026-11-23T18:02:14.903Z",
            "agent_id": "gw-1",
            "seq": 2215,
            "version": version,
            "status": status,
            "last_error": last_error,
        })
    }

    #[test]
    fn schema_accepts_and_refuses_config_states() {
        let topic = "cpe/v1/gw-1/config/state";
        valid(topic, &state(Value::Null, "none", Value::Null));
        valid(topic, &state(json!(42), "applied", Value::Null));
        valid(
            topic,
            &state(
                json!(41),
                "rolled_back",
                json!("verify: the broker did not accept the new MQTT settings within 30s"),
            ),
        );
        rejected(
            topic,
            &state(json!(42), "committed", Value::Null),
            &["/status", "docs/schemas/config-state.json"],
        );
        let mut missing = state(json!(42), "applied", Value::Null);
        missing
            .as_object_mut()
            .expect("object")
            .remove("last_error");
        rejected(topic, &missing, &["last_error"]);
        rejected(
            topic,
            &state(json!("42"), "applied", Value::Null),
            &["/version"],
        );
    }

    fn result(request_id: &str, command: Value, status: &str, extra: Value) -> Value {
        let mut result = json!({
            "schema": "cpe-agent/command-result/1",
            "ts": "2026-11-23T18:10:40.077Z",
            "agent_id": "gw-1",
            "seq": 2240,
            "request_id": request_id,
            "command": command,
            "status": status,
        });
        with_fields(&mut result, extra);
        result
    }

    #[test]
    fn schema_accepts_every_kind_of_command_result() {
        let topic = "cpe/v1/gw-1/cmd/req-7/result";
        valid(
            topic,
            &result(
                "req-7",
                json!("rediscover"),
                "ok",
                json!({"result": {"sweep": "started"}}),
            ),
        );
        valid(
            topic,
            &result(
                "req-7",
                json!("poll-now"),
                "ok",
                json!({"result": {"polls_started": 3}}),
            ),
        );
        valid(
            topic,
            &result(
                "req-7",
                json!("diag"),
                "ok",
                json!({"result": {
                    "status": "warn",
                    "exit_code": 1,
                    "summary": {"pass": 11, "warn": 1, "fail": 0},
                    "elapsed_ms": 1840,
                    "checks": [
                        {"name": "broker.mqtt", "status": "pass", "reason": "connected to broker.example.net:8883 (TLS)", "action": "none"},
                        {"name": "lan.sweep", "status": "warn", "reason": "no device answered on 192.168.1.0/24", "action": "check discovery.subnets"}
                    ]
                }}),
            ),
        );
        valid(
            topic,
            &result(
                "req-7",
                json!("reboot-device"),
                "ok",
                json!({"result": {"rebooting": true, "object": "docsDevResetNow", "oid": "1.3.6.1.2.1.69.1.1.3.0"}}),
            ),
        );
        valid(
            topic,
            &result(
                "req-7",
                json!("reboot-device"),
                "failed",
                json!({"reason": "the device supports no known reboot object (docsDevResetNow, prtGeneralReset)"}),
            ),
        );
        valid(
            topic,
            &result(
                "req-7",
                Value::Null,
                "rejected",
                json!({"code": "replay", "reason": "replay: command \"req-7\" has already run; send a new request id"}),
            ),
        );
    }

    #[test]
    fn schema_refuses_command_results_that_break_the_contract() {
        let topic = "cpe/v1/gw-1/cmd/req-7/result";
        rejected(
            topic,
            &result("req-7", json!("diag"), "done", json!({"result": {}})),
            &["/status", "docs/schemas/command-result.json"],
        );
        rejected(
            topic,
            &result(
                "req-8",
                json!("rediscover"),
                "ok",
                json!({"result": {"sweep": "started"}}),
            ),
            &["/request_id", "req-8", "req-7"],
        );
        rejected(
            topic,
            &result(
                "req-7",
                json!("format-disk"),
                "failed",
                json!({"reason": "r"}),
            ),
            &["/command"],
        );
        rejected(
            topic,
            &result("req-7", json!("rediscover"), "ok", json!({})),
            &["result"],
        );
        rejected(
            topic,
            &result(
                "req-7",
                Value::Null,
                "rejected",
                json!({"reason": "no code"}),
            ),
            &["code"],
        );
        rejected(
            topic,
            &result(
                "req-7",
                json!("poll-now"),
                "ok",
                json!({"result": {"polls": 3}}),
            ),
            &["/result", "polls"],
        );
    }

    /// What the agent's own code publishes fits the schemas.
    #[test]
    fn schema_accepts_what_the_contract_code_publishes() {
        use cpe_agent::message::Report;
        use cpe_agent::message::{AckStatus, CommandResult, CommandStatus, ConfigAck, ConfigState};
        use cpe_agent::report::contract::Contract;
        let contract = Contract::new("gw-1", &cpe_agent::config::MqttConfig::default());
        let ack = |version, status, code: Option<&str>, step: Option<&str>| {
            Report::ConfigAck(ConfigAck {
                version,
                status,
                code: code.map(str::to_string),
                step: step.map(str::to_string),
                reason: (code.is_some() || step.is_some()).then(|| "why".to_string()),
                diff: (status == AckStatus::DryRun).then(|| json!({"agent": [], "devices": []})),
            })
        };
        let reports = [
            ack(Some(42), AckStatus::Received, None, None),
            ack(None, AckStatus::Received, None, None),
            ack(Some(42), AckStatus::Applying, None, None),
            ack(Some(42), AckStatus::Applied, None, None),
            ack(None, AckStatus::Rejected, Some("too_large"), None),
            ack(Some(42), AckStatus::RolledBack, None, Some("apply")),
            ack(Some(42), AckStatus::DryRun, None, None),
            Report::ConfigState(ConfigState {
                version: None,
                status: "none".into(),
                last_error: None,
            }),
            Report::CommandResult(CommandResult {
                request_id: "req-7".into(),
                command: Some("poll-now".into()),
                status: CommandStatus::Ok,
                code: None,
                reason: None,
                result: Some(json!({"polls_started": 1})),
            }),
            Report::CommandResult(CommandResult {
                request_id: "req-8".into(),
                command: None,
                status: CommandStatus::Rejected,
                code: Some("expired".into()),
                reason: Some("expired".into()),
                result: None,
            }),
        ];
        for (i, report) in reports.iter().enumerate() {
            let message = contract.report(report, 100 + i as u64);
            let retained = schema_for_topic(&message.topic) == Some("config-state.json");
            assert_eq!(message.retain, retained, "{}", message.topic);
            valid(&message.topic, &message.payload);
        }
    }

    /// The provider-side schemas, compiled on their own (they are not
    /// applied to any topic).
    fn provider_violations(file: &str, value: &Value) -> Vec<String> {
        let mut compiler = boon::Compiler::new();
        compiler.enable_format_assertions();
        let mut schemas = boon::Schemas::new();
        let (_, text) = PROVIDER_SCHEMA_FILES
            .iter()
            .find(|(name, _)| *name == file)
            .unwrap_or_else(|| panic!("no provider schema {file}"));
        let index = compile_file(&mut compiler, &mut schemas, file, text);
        match schemas.validate(value, index) {
            Ok(()) => Vec::new(),
            Err(error) => {
                let mut out = Vec::new();
                leaves(&error, &mut out);
                out
            }
        }
    }

    fn bundle_example() -> Value {
        json!({
            "schema": "cpe-agent/bundle/1",
            "target": {"agent": "gw-000123"},
            "version": 42,
            "not_after": "2026-12-01T00:00:00Z",
            "desired": {
                "agent": {
                    "polling": {"interval": "30s"},
                    "thresholds": {"cpu_percent": {"max": 80}}
                },
                "devices": {
                    "sn-mikrotik-C8F20B7A41E3": [
                        {"oid": "1.3.6.1.2.1.1.5.0", "type": "string", "value": "living-room-ap"},
                        {"oid": "1.3.6.1.2.1.2.2.1.7.3", "type": "integer", "value": 2},
                        {"oid": "1.3.6.1.4.1.9.2", "type": "hex", "value": "0a1B"},
                        {"oid": "1.3.6.1.4.1.9.3", "type": "ipaddress", "value": "192.0.2.1"}
                    ]
                }
            }
        })
    }

    fn command_example() -> Value {
        json!({
            "schema": "cpe-agent/command/1",
            "target": {"agent": "gw-000123"},
            "request_id": "req-20261123-0007",
            "not_after": "2026-11-23T19:00:00Z",
            "command": "reboot-device",
            "device": "sn-arris-391437209184210503"
        })
    }

    #[test]
    fn schema_of_the_provider_messages_compiles_and_accepts_valid_ones() {
        for (file, _) in PROVIDER_SCHEMA_FILES {
            let _ = provider_violations(file, &json!({}));
        }
        let bundle = bundle_example();
        assert_eq!(
            provider_violations("bundle.json", &bundle),
            Vec::<String>::new()
        );
        let mut group_dry_run = bundle.clone();
        group_dry_run["target"] = json!({"group": "region-north"});
        group_dry_run["dry_run"] = json!(true);
        group_dry_run
            .as_object_mut()
            .expect("object")
            .remove("not_after");
        assert_eq!(
            provider_violations("bundle.json", &group_dry_run),
            Vec::<String>::new()
        );
        let command = command_example();
        assert_eq!(
            provider_violations("command.json", &command),
            Vec::<String>::new()
        );
        // The envelope exactly as the agent's signer writes it.
        let key = ed25519_dalek::SigningKey::from_bytes(&[7; 32]);
        for signed in [&bundle, &command] {
            let envelope = cpe_agent::provision::bundle::sign(&bytes(signed), &key);
            let envelope: Value = serde_json::from_str(&envelope).expect("envelope JSON");
            assert_eq!(
                provider_violations("push-envelope.json", &envelope),
                Vec::<String>::new(),
                "{envelope}"
            );
        }
    }

    #[test]
    fn schema_of_the_provider_messages_refuses_invalid_ones() {
        let refused = |file: &str, value: &Value, part: &str| {
            let problems = provider_violations(file, value);
            assert!(
                problems.iter().any(|p| p.contains(part)),
                "{file}: expected a violation mentioning {part:?}, got {problems:?}\n{value:#}"
            );
        };
        let key = ed25519_dalek::SigningKey::from_bytes(&[7; 32]);
        let envelope: Value = serde_json::from_str(&cpe_agent::provision::bundle::sign(
            &bytes(&bundle_example()),
            &key,
        ))
        .expect("envelope");
        let mut extra = envelope.clone();
        extra["version"] = json!(42);
        refused("push-envelope.json", &extra, "version");
        let mut unsigned = envelope.clone();
        unsigned
            .as_object_mut()
            .expect("object")
            .remove("signature");
        refused("push-envelope.json", &unsigned, "signature");
        let mut upper = envelope;
        upper["key_id"] = json!("ABCDEF0123456789");
        refused("push-envelope.json", &upper, "/key_id");

        let mut bundle = bundle_example();
        bundle["desired"]["agent"]["provisioning"] = json!({"enabled": false});
        refused("bundle.json", &bundle, "provisioning");
        let mut bundle = bundle_example();
        bundle["desired"]["devices"]["sn-mikrotik-C8F20B7A41E3"][1]["value"] =
            json!(2_147_483_648_i64);
        refused(
            "bundle.json",
            &bundle,
            "/desired/devices/sn-mikrotik-C8F20B7A41E3/1/value",
        );
        let mut bundle = bundle_example();
        bundle["desired"]["devices"]["sn-mikrotik-C8F20B7A41E3"][0]["oid"] = json!("1.3.x");
        refused("bundle.json", &bundle, "/oid");
        let mut bundle = bundle_example();
        bundle["target"] = json!({"agent": "gw-1", "group": "g"});
        refused("bundle.json", &bundle, "/target");
        let mut bundle = bundle_example();
        bundle["not_after"] = json!("tomorrow");
        refused("bundle.json", &bundle, "/not_after");

        let mut command = command_example();
        command.as_object_mut().expect("object").remove("device");
        refused("command.json", &command, "device");
        let mut command = command_example();
        command["command"] = json!("diag");
        refused("command.json", &command, "/device");
        let mut command = command_example();
        command.as_object_mut().expect("object").remove("not_after");
        refused("command.json", &command, "not_after");
    }
}
