//! The MQTT contract as executable checks: every payload the agent publishes
//! is validated against its JSON Schema from `docs/schemas/` (draft 2020-12,
//! with format assertions on), using the `boon` crate.
//!
//! * [`schema_for_topic`] maps a topic of the default tree
//!   `cpe/v1/{agent_id}/...` to the schema file of its message type; any
//!   other topic (the harness's probe topics, a test's own topics) is not the
//!   agent's and gets `None`.
//! * [`validate`] parses the payload, validates it, and also checks that the
//!   payload's `agent_id` and `device_id` are the ones in its topic. The
//!   error names the topic, the schema and every violation with its JSON
//!   pointer.
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
pub const SCHEMA_FILES: [(&str, &str); 5] = [
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
];

/// What a topic of the tree says about its message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicParts<'a> {
    pub agent_id: &'a str,
    pub device_id: Option<&'a str>,
    pub schema_file: &'static str,
}

/// Splits `cpe/v1/{agent_id}/...` into its parts; `None` when the topic is
/// not one of the contract's.
pub fn parse_topic(topic: &str) -> Option<TopicParts<'_>> {
    let rest = topic.strip_prefix(TOPIC_ROOT)?;
    let levels: Vec<&str> = rest.split('/').collect();
    let (agent_id, device_id, schema_file) = match levels.as_slice() {
        [agent, "status"] => (*agent, None, "status.json"),
        [agent, "agent", "health"] => (*agent, None, "agent-health.json"),
        [agent, "devices", device, leaf] => {
            let file = match *leaf {
                "inventory" => "inventory.json",
                "health" => "health.json",
                "events" => "event.json",
                _ => return None,
            };
            (*agent, Some(*device), file)
        }
        _ => return None,
    };
    let level_ok = |level: &str| !level.is_empty() && !level.contains(['+', '#']);
    if !level_ok(agent_id) || !device_id.is_none_or(level_ok) {
        return None;
    }
    Some(TopicParts {
        agent_id,
        device_id,
        schema_file,
    })
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
            let json: Value = serde_json::from_str(text)
                .unwrap_or_else(|e| panic!("docs/schemas/{file} is not JSON: {e}"));
            let location = schema_location(file);
            compiler
                .add_resource(&location, json)
                .unwrap_or_else(|e| panic!("docs/schemas/{file}: {e}"));
            let index = compiler
                .compile(&location, &mut schemas)
                .unwrap_or_else(|e| panic!("docs/schemas/{file} is not a valid schema: {e:#}"));
            by_file.insert(file, index);
        }
        Compiled { schemas, by_file }
    })
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
