//! Signed configuration bundles: the format the provider pushes to
//! `{prefix}/config/push`, and its verification.
//!
//! The wire message is a small JSON envelope
//! `{"bundle": "<base64>", "key_id": "<16 hex>", "signature": "<base64>"}`.
//! `bundle` is the base64 of the exact bundle bytes (UTF-8 JSON, see
//! docs/provisioning.md) and `signature` the Ed25519 signature over those
//! exact bytes, so standard tools (`openssl pkeyutl -sign -rawin`) can sign.
//! `key_id` names the provider key: the first 8 bytes of SHA-256 of the raw
//! 32-byte public key, in hex.
//!
//! [`verify`] is pure: it looks at the message, the [`Trust`] and the time,
//! and either returns the [`Bundle`] or the [`Rejection`] to acknowledge. It
//! never panics, whatever the input.

use std::collections::BTreeMap;
use std::fmt;
use std::time::SystemTime;

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use ed25519_dalek::{Signature, Signer as _, SigningKey, VerifyingKey};
use serde::Deserialize;

use crate::config::Config;

/// The `schema` every bundle of this format carries.
pub const SCHEMA: &str = "cpe-agent/bundle/1";

/// The largest message accepted unless [`Trust::max_bytes`] says otherwise.
pub const DEFAULT_MAX_BYTES: usize = crate::message::MAX_PUSH_BYTES;

/// The `desired.agent` sections a provider may push. `agent`, `storage` and
/// `provisioning` stay local: a push must not change who the agent is, where
/// it keeps state, or which keys it trusts.
pub const PUSHABLE_SECTIONS: [&str; 5] =
    ["credentials", "discovery", "mqtt", "polling", "thresholds"];

/// What the agent trusts, and what it has already applied.
#[derive(Debug, Clone)]
pub struct Trust {
    pub agent_id: String,
    /// The groups the agent follows (`provisioning.groups`).
    pub groups: Vec<String>,
    /// The provider keys, each with its [`key_id`].
    pub keys: Vec<(String, VerifyingKey)>,
    /// The version of the bundle applied last, if any.
    pub applied_version: Option<u64>,
    /// The largest message accepted.
    pub max_bytes: usize,
    /// The nonce a command must carry (this start's, see
    /// [`crate::identity::boot_nonce`]); `None`: not checked.
    pub nonce: Option<String>,
}

impl Trust {
    /// Trust for `agent_id` in these keys, nothing applied yet, the default size limit.
    pub fn new(agent_id: impl Into<String>, keys: &[VerifyingKey]) -> Trust {
        Trust {
            agent_id: agent_id.into(),
            groups: Vec::new(),
            keys: keys.iter().map(|k| (key_id(k), *k)).collect(),
            applied_version: None,
            nonce: None,
            max_bytes: DEFAULT_MAX_BYTES,
        }
    }
}

impl Trust {
    /// Refuses what is meant for another agent, or a group this one does not follow.
    pub fn check_target(&self, target: &Target) -> Result<(), Rejection> {
        let ours = match target {
            Target::Agent(id) => *id == self.agent_id,
            Target::Group(group) => self.groups.iter().any(|g| g == group),
        };
        if ours {
            Ok(())
        } else {
            Err(Rejection::WrongTarget {
                target: target.to_string(),
            })
        }
    }
}

/// Why a message was refused; nothing was changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rejection {
    /// No signature or no key id.
    Unsigned,
    /// The signature does not match the bundle bytes.
    BadSignature,
    /// Signed with a key the agent does not trust.
    UnknownKey { key_id: String },
    /// Meant for another agent, or a group this agent does not follow.
    WrongTarget { target: String },
    /// Not newer than the bundle applied last.
    Replay { version: u64, applied: u64 },
    /// A command with a request id that already ran.
    RepeatedCommand { request_id: String },
    /// Its `not_after` has passed.
    Expired { not_after: String },
    /// Not a valid envelope or bundle: what and where.
    Invalid(String),
    /// Larger than the agent accepts; refused before any parsing.
    TooLarge { bytes: usize, max: usize },
    /// A command without this start's nonce: made before the agent's last
    /// restart, or by someone who did not read its status.
    StaleNonce,
}

impl Rejection {
    /// A stable, machine-readable code for the acknowledgement.
    pub fn code(&self) -> &'static str {
        match self {
            Rejection::Unsigned => "unsigned",
            Rejection::BadSignature => "bad_signature",
            Rejection::UnknownKey { .. } => "unknown_key",
            Rejection::WrongTarget { .. } => "wrong_target",
            Rejection::Replay { .. } | Rejection::RepeatedCommand { .. } => "replay",
            Rejection::Expired { .. } => "expired",
            Rejection::Invalid(_) => "invalid",
            Rejection::TooLarge { .. } => "too_large",
            Rejection::StaleNonce => "stale_nonce",
        }
    }

    /// A one-line explanation for people, saying what to do.
    pub fn reason(&self) -> String {
        match self {
            Rejection::StaleNonce => {
                "stale nonce: the command does not carry the nonce of the agent's current start; read \"nonce\" from its retained status and sign it into the command (a command made before a restart never runs)".into()
            }
            Rejection::Unsigned => {
                "unsigned: the message needs both \"key_id\" and \"signature\"; sign the bundle with `cpe-agent config sign`".into()
            }
            Rejection::BadSignature => {
                "bad signature: the signature does not match the bundle bytes; re-sign the bundle exactly as sent".into()
            }
            Rejection::UnknownKey { key_id } => format!(
                "unknown key: key id {key_id:?} is not in provisioning.public_keys; add its public key or sign with a trusted key"
            ),
            Rejection::WrongTarget { target } => format!(
                "wrong target: the bundle is for {target}, not for this agent or a group it follows"
            ),
            Rejection::Replay { version, applied } => format!(
                "replay: version {version} is not greater than the applied version {applied}; push a higher version"
            ),
            Rejection::RepeatedCommand { request_id } => format!(
                "replay: command {request_id:?} has already run; send a new request id"
            ),
            Rejection::Expired { not_after } => {
                format!("expired: not_after {not_after} has passed; re-issue the bundle")
            }
            Rejection::Invalid(what) => format!("invalid: {what}"),
            Rejection::TooLarge { bytes, max } => {
                format!("too large: the message is {bytes} bytes; at most {max} are accepted")
            }
        }
    }
}

impl fmt::Display for Rejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.reason())
    }
}

impl std::error::Error for Rejection {}

/// Who a bundle is for.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase", deny_unknown_fields)]
pub enum Target {
    Agent(String),
    Group(String),
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Target::Agent(id) => write!(f, "agent {id:?}"),
            Target::Group(group) => write!(f, "group {group:?}"),
        }
    }
}

/// A verified (or, from [`check_bundle`], merely valid) bundle.
#[derive(Debug, Clone)]
pub struct Bundle {
    /// The exact bytes that were signed.
    pub bytes: Vec<u8>,
    /// The key that signed it (empty from [`check_bundle`]).
    pub key_id: String,
    pub target: Target,
    pub version: u64,
    /// As written (RFC 3339), and as a time.
    pub not_after: Option<(String, SystemTime)>,
    /// Check and report the difference; change nothing.
    pub dry_run: bool,
    pub desired: Desired,
}

/// The desired state.
#[derive(Debug, Clone, Default)]
pub struct Desired {
    /// Agent settings, shaped like the config file (checked to be valid).
    pub agent: Option<serde_json::Map<String, serde_json::Value>>,
    /// SNMP SETs per device id, in order.
    pub devices: BTreeMap<String, Vec<SnmpSet>>,
}

/// One SNMP SET.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnmpSet {
    /// A numeric OID, e.g. `1.3.6.1.2.1.1.5.0`.
    pub oid: String,
    pub value: SetValue,
}

pub use crate::snmp::SetValue;

use crate::keys::key_id;

/// Signs the exact bundle bytes; returns the envelope JSON.
pub fn sign(bundle_bytes: &[u8], key: &SigningKey) -> String {
    let signature = key.sign(bundle_bytes);
    envelope(
        bundle_bytes,
        &key_id(&key.verifying_key()),
        &signature.to_bytes(),
    )
}

/// The envelope JSON for bundle bytes signed elsewhere.
pub fn envelope(bundle_bytes: &[u8], key_id: &str, signature: &[u8]) -> String {
    serde_json::json!({
        "bundle": BASE64.encode(bundle_bytes),
        "key_id": key_id,
        "signature": BASE64.encode(signature),
    })
    .to_string()
}

/// Verifies a pushed message against the agent's trust at time `now`.
///
/// Checks, in order: size (before parsing anything), envelope, key, signature
/// over the exact bundle bytes, bundle validity, target, expiry, version.
pub fn verify(message: &[u8], trust: &Trust, now: SystemTime) -> Result<Bundle, Rejection> {
    let bundle = authenticate(message, &trust.keys, trust.max_bytes)?;
    trust.check_target(&bundle.target)?;
    check_expiry(&bundle, now)?;
    if let Some(applied) = trust.applied_version {
        if bundle.version <= applied {
            return Err(Rejection::Replay {
                version: bundle.version,
                applied,
            });
        }
    }
    Ok(bundle)
}

/// The checks that need no agent: size, envelope, key, signature and bundle
/// validity (not target, expiry or version).
pub fn authenticate(
    message: &[u8],
    keys: &[(String, VerifyingKey)],
    max_bytes: usize,
) -> Result<Bundle, Rejection> {
    let (bytes, key_id) = open_envelope(message, keys, max_bytes)?;
    let mut bundle = check_bundle(&bytes)?;
    bundle.key_id = key_id;
    Ok(bundle)
}

/// Size, envelope, key and signature: the signed bytes and the key id.
fn open_envelope(
    message: &[u8],
    keys: &[(String, VerifyingKey)],
    max_bytes: usize,
) -> Result<(Vec<u8>, String), Rejection> {
    if message.len() > max_bytes {
        return Err(Rejection::TooLarge {
            bytes: message.len(),
            max: max_bytes,
        });
    }
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Envelope {
        bundle: String,
        key_id: Option<String>,
        signature: Option<String>,
    }
    let envelope: Envelope = serde_json::from_slice(message).map_err(|e| {
        Rejection::Invalid(format!(
            "envelope: {e}; expected {{\"bundle\": BASE64, \"key_id\": HEX, \"signature\": BASE64}}"
        ))
    })?;
    let (Some(id), Some(signature)) = (envelope.key_id, envelope.signature) else {
        return Err(Rejection::Unsigned);
    };
    if id.is_empty() || signature.is_empty() {
        return Err(Rejection::Unsigned);
    }
    let Some((_, key)) = keys.iter().find(|(known, _)| *known == id) else {
        return Err(Rejection::UnknownKey { key_id: id });
    };
    let bytes = BASE64
        .decode(envelope.bundle.as_bytes())
        .map_err(|e| Rejection::Invalid(format!("envelope.bundle: not base64 ({e})")))?;
    let signature = BASE64
        .decode(signature.as_bytes())
        .ok()
        .and_then(|s| Signature::from_slice(&s).ok())
        .ok_or(Rejection::BadSignature)?;
    key.verify_strict(&bytes, &signature)
        .map_err(|_| Rejection::BadSignature)?;
    Ok((bytes, id))
}

/// The `schema` of a signed command.
pub const COMMAND_SCHEMA: &str = "cpe-agent/command/1";

/// A command must expire within this long of its arrival: a captured
/// command cannot be replayed later, and the agent only has to remember the
/// ids it ran for this long.
pub const COMMAND_MAX_LIFETIME: std::time::Duration = std::time::Duration::from_secs(24 * 3600);

/// What a command asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CommandKind {
    /// Sweep the LAN now.
    Rediscover,
    /// Poll one device (or all) now.
    PollNow { device: Option<String> },
    /// Run the diag checks and return their JSON.
    Diag,
    /// Reboot a device through its MIB.
    RebootDevice { device: String },
}

impl CommandKind {
    pub fn name(&self) -> &'static str {
        match self {
            CommandKind::Rediscover => "rediscover",
            CommandKind::PollNow { .. } => "poll-now",
            CommandKind::Diag => "diag",
            CommandKind::RebootDevice { .. } => "reboot-device",
        }
    }
}

/// A verified command.
#[derive(Debug, Clone)]
pub struct Command {
    pub request_id: String,
    pub key_id: String,
    pub not_after: (String, SystemTime),
    pub kind: CommandKind,
}

/// Verifies a command from `{prefix}/cmd/{request_id}`: signed like a
/// bundle, for this agent, carrying the topic's request id, not expired and
/// expiring within [`COMMAND_MAX_LIFETIME`], and not run before (`ran`).
pub fn verify_command(
    message: &[u8],
    topic_request_id: &str,
    trust: &Trust,
    ran: &[String],
    now: SystemTime,
) -> Result<Command, Rejection> {
    let (bytes, key_id) = open_envelope(message, &trust.keys, trust.max_bytes)?;
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Raw {
        schema: String,
        target: Target,
        request_id: String,
        not_after: String,
        command: String,
        device: Option<String>,
        nonce: Option<String>,
    }
    let raw: Raw =
        serde_json::from_slice(&bytes).map_err(|e| Rejection::Invalid(format!("command: {e}")))?;
    if raw.schema != COMMAND_SCHEMA {
        return Err(Rejection::Invalid(format!(
            "schema: expected {COMMAND_SCHEMA:?}, got {:?}",
            raw.schema
        )));
    }
    if raw.request_id != topic_request_id {
        return Err(Rejection::Invalid(format!(
            "request_id: {:?} is not the topic's {topic_request_id:?}; sign the command for the topic it is sent to",
            raw.request_id
        )));
    }
    let kind = match (raw.command.as_str(), raw.device) {
        ("rediscover", None) => CommandKind::Rediscover,
        ("diag", None) => CommandKind::Diag,
        ("poll-now", device) => CommandKind::PollNow { device },
        ("reboot-device", Some(device)) => CommandKind::RebootDevice { device },
        ("reboot-device", None) => {
            return Err(Rejection::Invalid(
                "device: reboot-device needs the device id".into(),
            ))
        }
        ("rediscover" | "diag", Some(_)) => {
            return Err(Rejection::Invalid(format!(
                "device: {} takes no device",
                raw.command
            )))
        }
        (other, _) => {
            return Err(Rejection::Invalid(format!(
                "command: {other:?} is not one of rediscover, poll-now, diag, reboot-device"
            )))
        }
    };
    trust.check_target(&raw.target)?;
    if trust.nonce.is_some() && raw.nonce != trust.nonce {
        return Err(Rejection::StaleNonce);
    }
    let not_after = parse_not_after(raw.not_after)?;
    if now > not_after.1 {
        return Err(Rejection::Expired {
            not_after: not_after.0,
        });
    }
    if not_after.1 > now + COMMAND_MAX_LIFETIME {
        return Err(Rejection::Invalid(format!(
            "not_after: {} is more than 24 hours away; commands must expire sooner",
            not_after.0
        )));
    }
    if ran.contains(&raw.request_id) {
        return Err(Rejection::RepeatedCommand {
            request_id: raw.request_id,
        });
    }
    Ok(Command {
        request_id: raw.request_id,
        key_id,
        not_after,
        kind,
    })
}

/// Refuses a bundle whose `not_after` is before `now`.
pub fn check_expiry(bundle: &Bundle, now: SystemTime) -> Result<(), Rejection> {
    match &bundle.not_after {
        Some((text, at)) if now > *at => Err(Rejection::Expired {
            not_after: text.clone(),
        }),
        _ => Ok(()),
    }
}

/// Parses and validates bundle bytes (no signature involved).
pub fn check_bundle(bytes: &[u8]) -> Result<Bundle, Rejection> {
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Raw {
        schema: String,
        target: Target,
        version: u64,
        not_after: Option<String>,
        #[serde(default)]
        dry_run: bool,
        desired: RawDesired,
    }
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct RawDesired {
        agent: Option<serde_json::Map<String, serde_json::Value>>,
        devices: Option<BTreeMap<String, Vec<RawSet>>>,
    }
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct RawSet {
        oid: String,
        #[serde(rename = "type")]
        kind: SetType,
        value: serde_json::Value,
    }
    let invalid = |what: String| Rejection::Invalid(what);
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let raw: Raw = serde_path_to_error::deserialize(&mut de)
        .map_err(|e| {
            let path = e.path().to_string();
            let inner = e.into_inner();
            let place = if path == "." || inner.is_syntax() || inner.is_eof() {
                "bundle".into()
            } else {
                path
            };
            invalid(format!("{place}: {inner}"))
        })
        .and_then(|raw| {
            de.end()
                .map(|()| raw)
                .map_err(|e| invalid(format!("bundle: {e}")))
        })?;
    if raw.schema != SCHEMA {
        return Err(invalid(format!(
            "schema: expected {SCHEMA:?}, got {:?}",
            raw.schema
        )));
    }
    let (name, value) = match &raw.target {
        Target::Agent(id) => ("target.agent", id),
        Target::Group(group) => ("target.group", group),
    };
    if value.trim().is_empty() {
        return Err(invalid(format!("{name}: expected a name, got \"\"")));
    }
    let not_after = raw.not_after.map(parse_not_after).transpose()?;
    if let Some(agent) = &raw.desired.agent {
        check_agent_settings(agent)?;
    }
    let mut devices = BTreeMap::new();
    for (device, sets) in raw.desired.devices.unwrap_or_default() {
        let place = format!("desired.devices.{device}");
        if device.trim().is_empty() {
            return Err(invalid(
                "desired.devices: a device id is empty; use the id the agent reports".into(),
            ));
        }
        let mut checked = Vec::with_capacity(sets.len());
        for (i, set) in sets.into_iter().enumerate() {
            if !is_numeric_oid(&set.oid) {
                return Err(invalid(format!(
                    "{place}[{i}].oid: {:?} is not a numeric OID like \"1.3.6.1.2.1.1.5.0\"",
                    set.oid
                )));
            }
            let value = set_value(set.kind, &set.value)
                .map_err(|why| invalid(format!("{place}[{i}].value: {why}")))?;
            checked.push(SnmpSet {
                oid: set.oid,
                value,
            });
        }
        devices.insert(device, checked);
    }
    Ok(Bundle {
        bytes: bytes.to_vec(),
        key_id: String::new(),
        target: raw.target,
        version: raw.version,
        not_after,
        dry_run: raw.dry_run,
        desired: Desired {
            agent: raw.desired.agent,
            devices,
        },
    })
}

fn parse_not_after(text: String) -> Result<(String, SystemTime), Rejection> {
    let at = humantime::parse_rfc3339(&text).map_err(|_| {
        Rejection::Invalid(format!(
            "not_after: expected an RFC 3339 UTC time like \"2026-12-01T00:00:00Z\", got {text:?}"
        ))
    })?;
    Ok((text, at))
}

/// The version a pushed message claims, read without trusting it: only to
/// name the acknowledgement topic of a message that is refused.
pub fn peek_version(message: &[u8]) -> Option<u64> {
    #[derive(Deserialize)]
    struct Envelope {
        bundle: String,
    }
    #[derive(Deserialize)]
    struct Versioned {
        version: u64,
    }
    let envelope: Envelope = serde_json::from_slice(message).ok()?;
    let bytes = BASE64.decode(envelope.bundle.as_bytes()).ok()?;
    serde_json::from_slice::<Versioned>(&bytes)
        .ok()
        .map(|v| v.version)
}

/// A SET value from the bundle format's `type` and `value` (also how the
/// journal keeps values found before a push).
pub fn parse_set_value(kind: &str, value: &serde_json::Value) -> Result<SetValue, String> {
    let kind: SetType = serde_json::from_value(serde_json::Value::String(kind.to_string()))
        .map_err(|_| format!("{kind:?} is not a SET type"))?;
    set_value(kind, value)
}

/// Checks `desired.agent` the way the config file is checked: the same types,
/// the same strictness about unknown keys.
fn check_agent_settings(
    agent: &serde_json::Map<String, serde_json::Value>,
) -> Result<(), Rejection> {
    for section in agent.keys() {
        if !PUSHABLE_SECTIONS.contains(&section.as_str()) {
            return Err(Rejection::Invalid(format!(
                "desired.agent.{section}: cannot be pushed; expected only {}",
                PUSHABLE_SECTIONS.join(", ")
            )));
        }
    }
    let value = serde_json::Value::Object(agent.clone());
    let config = serde_path_to_error::deserialize::<_, Config>(value).map_err(|e| {
        let path = e.path().to_string();
        Rejection::Invalid(format!("desired.agent.{path}: {}", e.into_inner()))
    })?;
    // Pushed settings pass the same checks as the config file.
    config
        .check()
        .map_err(|(key, message)| Rejection::Invalid(format!("desired.agent.{key}: {message}")))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
enum SetType {
    Integer,
    String,
    Oid,
    IpAddress,
    Unsigned,
    Counter32,
    TimeTicks,
    Hex,
}

/// A dotted numeric OID: at least two arcs, each a 32-bit number, the first 0 to 2.
fn is_numeric_oid(oid: &str) -> bool {
    let arcs: Vec<&str> = oid.split('.').collect();
    (2..=128).contains(&arcs.len())
        && arcs.iter().all(|a| {
            !a.is_empty() && a.bytes().all(|b| b.is_ascii_digit()) && a.parse::<u32>().is_ok()
        })
        && arcs
            .first()
            .and_then(|a| a.parse::<u32>().ok())
            .is_some_and(|a| a <= 2)
}

fn set_value(kind: SetType, value: &serde_json::Value) -> Result<SetValue, String> {
    let unsigned = |name: &str| {
        value
            .as_u64()
            .and_then(|v| u32::try_from(v).ok())
            .ok_or_else(|| format!("{name} needs a whole number from 0 to 4294967295, got {value}"))
    };
    let text = |name: &str| {
        value
            .as_str()
            .ok_or_else(|| format!("{name} needs a JSON string, got {value}"))
    };
    Ok(match kind {
        SetType::Integer => SetValue::Integer(
            value
                .as_i64()
                .and_then(|v| i32::try_from(v).ok())
                .ok_or_else(|| {
                    format!(
                        "integer needs a whole number from -2147483648 to 2147483647, got {value}"
                    )
                })?,
        ),
        SetType::Unsigned => SetValue::Unsigned(unsigned("unsigned")?),
        SetType::Counter32 => SetValue::Counter32(unsigned("counter32")?),
        SetType::TimeTicks => SetValue::TimeTicks(unsigned("timeticks")?),
        SetType::String => {
            let s = text("string")?;
            if s.len() > 65535 {
                return Err(format!("string is {} bytes; at most 65535", s.len()));
            }
            SetValue::String(s.to_string())
        }
        SetType::Oid => {
            let s = text("oid")?;
            if !is_numeric_oid(s) {
                return Err(format!("{s:?} is not a numeric OID like \"1.3.6.1.4.1\""));
            }
            SetValue::Oid(s.to_string())
        }
        SetType::IpAddress => {
            let s = text("ipaddress")?;
            SetValue::IpAddress(
                s.parse()
                    .map_err(|_| format!("{s:?} is not an IPv4 address like \"192.0.2.1\""))?,
            )
        }
        SetType::Hex => {
            let s = text("hex")?;
            decode_hex(s)
                .ok_or_else(|| {
                    format!("{s:?} is not hex bytes like \"0a1b2c\" (an even number of hex digits)")
                })
                .and_then(|bytes| {
                    if bytes.len() > 65535 {
                        Err(format!("hex is {} bytes; at most 65535", bytes.len()))
                    } else {
                        Ok(SetValue::Hex(bytes))
                    }
                })?
        }
    })
}

fn decode_hex(text: &str) -> Option<Vec<u8>> {
    let digits = text.as_bytes();
    if digits.len() % 2 != 0 {
        return None;
    }
    digits
        .chunks(2)
        .map(|pair| {
            let pair = std::str::from_utf8(pair).ok()?;
            u8::from_str_radix(pair, 16).ok()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn key(seed: u8) -> SigningKey {
        SigningKey::from_bytes(&[seed; 32])
    }

    fn now() -> SystemTime {
        humantime::parse_rfc3339("2026-11-23T12:00:00Z").expect("test time")
    }

    fn trust() -> Trust {
        let mut trust = Trust::new("gw-1", &[key(1).verifying_key()]);
        trust.groups = vec!["region-north".into()];
        trust
    }

    fn bundle_json(target: &str, version: u64, extra: &str, desired: &str) -> String {
        format!(
            r#"{{"schema":"cpe-agent/bundle/1","target":{target},"version":{version}{extra},"desired":{desired}}}"#
        )
    }

    const DESIRED: &str = r#"{"agent":{"polling":{"interval":"30s"},"thresholds":{"cpu_percent":{"max":80}}},"devices":{"gw-modem":[{"oid":"1.3.6.1.2.1.1.5.0","type":"string","value":"modem"},{"oid":"1.3.6.1.4.1.9.1","type":"integer","value":-3},{"oid":"1.3.6.1.4.1.9.2","type":"hex","value":"0a1B"},{"oid":"1.3.6.1.4.1.9.3","type":"ipaddress","value":"192.0.2.1"}]}}"#;

    fn valid(version: u64) -> String {
        bundle_json(r#"{"agent":"gw-1"}"#, version, "", DESIRED)
    }

    fn signed(bundle: &str) -> Vec<u8> {
        sign(bundle.as_bytes(), &key(1)).into_bytes()
    }

    fn code(message: &[u8], trust: &Trust) -> &'static str {
        match verify(message, trust, now()) {
            Ok(_) => "ok",
            Err(r) => r.code(),
        }
    }

    fn invalid_reason(bundle: &str) -> String {
        match verify(&signed(bundle), &trust(), now()) {
            Err(Rejection::Invalid(what)) => what,
            other => panic!("expected invalid, got {other:?}"),
        }
    }

    #[test]
    fn a_valid_bundle_verifies_with_its_exact_bytes() {
        let text = valid(42);
        let bundle = verify(&signed(&text), &trust(), now()).expect("valid");
        assert_eq!(bundle.bytes, text.as_bytes());
        assert_eq!(bundle.version, 42);
        assert_eq!(bundle.target, Target::Agent("gw-1".into()));
        assert_eq!(bundle.key_id, key_id(&key(1).verifying_key()));
        assert_eq!(bundle.key_id.len(), 16);
        let sets = bundle.desired.devices.get("gw-modem").expect("device");
        assert_eq!(sets.len(), 4);
        assert_eq!(sets[1].value, SetValue::Integer(-3));
        assert_eq!(sets[2].value, SetValue::Hex(vec![0x0a, 0x1b]));
        assert!(bundle.desired.agent.is_some());
    }

    #[test]
    fn tampered_bytes_are_a_bad_signature() {
        let good: serde_json::Value =
            serde_json::from_slice(&signed(&valid(42))).expect("envelope");
        let mut tampered = good.clone();
        tampered["bundle"] = BASE64.encode(valid(43)).into();
        let r = verify(tampered.to_string().as_bytes(), &trust(), now()).expect_err("tampered");
        assert_eq!(r, Rejection::BadSignature);
        assert_eq!(r.code(), "bad_signature");
        assert!(r.reason().starts_with("bad signature"));
        let mut short = good;
        short["signature"] = "AAAA".into();
        assert_eq!(
            code(short.to_string().as_bytes(), &trust()),
            "bad_signature"
        );
    }

    #[test]
    fn an_unknown_key_is_refused() {
        let message = sign(valid(42).as_bytes(), &key(2));
        let r = verify(message.as_bytes(), &trust(), now()).expect_err("unknown");
        assert_eq!(r.code(), "unknown_key");
        assert!(r.reason().contains(&key_id(&key(2).verifying_key())));
    }

    #[test]
    fn key_rotation_accepts_either_trusted_key() {
        let both = Trust::new("gw-1", &[key(1).verifying_key(), key(2).verifying_key()]);
        for k in [key(1), key(2)] {
            let message = sign(valid(42).as_bytes(), &k);
            assert_eq!(code(message.as_bytes(), &both), "ok");
        }
        assert_ne!(
            key_id(&key(1).verifying_key()),
            key_id(&key(2).verifying_key())
        );
    }

    #[test]
    fn targets_must_be_this_agent_or_a_followed_group() {
        let other = bundle_json(r#"{"agent":"gw-2"}"#, 42, "", "{}");
        assert_eq!(code(&signed(&other), &trust()), "wrong_target");
        let group = bundle_json(r#"{"group":"region-north"}"#, 42, "", "{}");
        assert_eq!(code(&signed(&group), &trust()), "ok");
        let other_group = bundle_json(r#"{"group":"region-south"}"#, 42, "", "{}");
        let r = verify(&signed(&other_group), &trust(), now()).expect_err("wrong");
        assert_eq!(r.code(), "wrong_target");
        assert!(r.reason().contains("region-south"));
    }

    #[test]
    fn versions_not_above_the_applied_one_are_replays() {
        let mut t = trust();
        t.applied_version = Some(42);
        assert_eq!(
            verify(&signed(&valid(42)), &t, now()).expect_err("equal"),
            Rejection::Replay {
                version: 42,
                applied: 42
            }
        );
        assert_eq!(code(&signed(&valid(7)), &t), "replay");
        assert_eq!(code(&signed(&valid(43)), &t), "ok");
    }

    #[test]
    fn a_past_not_after_is_expired() {
        let text = bundle_json(
            r#"{"agent":"gw-1"}"#,
            42,
            r#","not_after":"2026-11-23T11:59:59Z""#,
            "{}",
        );
        let r = verify(&signed(&text), &trust(), now()).expect_err("expired");
        assert_eq!(r.code(), "expired");
        assert!(r.reason().contains("2026-11-23T11:59:59Z"));
        let later = now().checked_sub(Duration::from_secs(3600)).expect("time");
        assert!(verify(&signed(&text), &trust(), later).is_ok());
    }

    #[test]
    fn invalid_bundles_name_the_place() {
        assert!(invalid_reason("{not json").starts_with("bundle"));
        let cases = [
            (
                r#"{"agent":{"polling":{"intervall":"5m"}}}"#,
                "desired.agent.polling.intervall",
            ),
            (
                r#"{"agent":{"polling":{"interval":"soon"}}}"#,
                "desired.agent.polling.interval",
            ),
            (
                r#"{"agent":{"provisioning":{}}}"#,
                "desired.agent.provisioning: cannot be pushed",
            ),
            // Well-typed, but outside what the config file allows.
            (
                r#"{"agent":{"discovery":{"max_prefix":4}}}"#,
                "desired.agent.discovery.max_prefix: expected a prefix length from 8 to 32",
            ),
            (
                r#"{"devices":{"gw-modem":[{"oid":"1.3.6.1","type":"integer","value":1},{"oid":"1.3.x","type":"integer","value":1}]}}"#,
                "desired.devices.gw-modem[1].oid: \"1.3.x\" is not a numeric OID",
            ),
            (
                r#"{"devices":{"d":[{"oid":"1.3.6.1","type":"integer","value":"one"}]}}"#,
                "desired.devices.d[0].value: integer needs a whole number",
            ),
            (
                r#"{"devices":{"d":[{"oid":"1.3.6.1","type":"ipaddress","value":"300.1.1.1"}]}}"#,
                "desired.devices.d[0].value: \"300.1.1.1\" is not an IPv4 address",
            ),
            (
                r#"{"devices":{"d":[{"oid":"1.3.6.1","type":"hex","value":"abc"}]}}"#,
                "desired.devices.d[0].value",
            ),
            (
                r#"{"devices":{"d":[{"oid":"1.3.6.1","type":"unsigned","value":-1}]}}"#,
                "desired.devices.d[0].value: unsigned",
            ),
            (
                r#"{"devices":{"d":[{"oid":"1.3.6.1","type":"float","value":1}]}}"#,
                "desired.devices.d[0].type",
            ),
            (r#"{"colour":"blue"}"#, "desired.colour"),
        ];
        for (desired, place) in cases {
            let what = invalid_reason(&bundle_json(r#"{"agent":"gw-1"}"#, 1, "", desired));
            assert!(what.starts_with(place), "{desired}: {what}");
        }
        let schema = valid(1).replace("bundle/1", "bundle/9");
        assert!(invalid_reason(&schema).starts_with("schema:"));
        let when = bundle_json(r#"{"agent":"gw-1"}"#, 1, r#","not_after":"tomorrow""#, "{}");
        assert!(invalid_reason(&when).starts_with("not_after:"));
        assert!(invalid_reason(&format!("{} x", valid(1))).starts_with("bundle:"));
    }

    #[test]
    fn oversize_is_refused_before_any_parsing() {
        let mut t = trust();
        t.max_bytes = 100;
        let junk = vec![b'{'; 101];
        assert_eq!(
            verify(&junk, &t, now()).expect_err("large"),
            Rejection::TooLarge {
                bytes: 101,
                max: 100
            }
        );
        assert_eq!(
            code(&vec![b' '; DEFAULT_MAX_BYTES + 1], &trust()),
            "too_large"
        );
    }

    #[test]
    fn a_missing_signature_or_key_id_is_unsigned() {
        let bundle = BASE64.encode(valid(1));
        for message in [
            serde_json::json!({ "bundle": bundle }),
            serde_json::json!({ "bundle": bundle, "key_id": key_id(&key(1).verifying_key()) }),
            serde_json::json!({ "bundle": bundle, "signature": "AAAA" }),
            serde_json::json!({ "bundle": bundle, "key_id": "", "signature": "" }),
        ] {
            assert_eq!(code(message.to_string().as_bytes(), &trust()), "unsigned");
        }
        assert_eq!(code(b"[1,2]", &trust()), "invalid");
    }

    #[test]
    fn garbage_never_panics() {
        let good = signed(&valid(42));
        let t = trust();
        for len in 0..good.len() {
            let _ = verify(good.get(..len).unwrap_or_default(), &t, now());
        }
        // Every bit would take minutes in a debug build: a prime stride still
        // reaches every byte and every bit position.
        for i in (0..good.len() * 8).step_by(7) {
            let mut flipped = good.clone();
            if let Some(byte) = flipped.get_mut(i / 8) {
                *byte ^= 1 << (i % 8);
            }
            let _ = verify(&flipped, &t, now());
        }
        // And inside the signed bytes, where only parsing stands guard.
        let text = valid(42);
        for len in 0..text.len() {
            let _ = check_bundle(text.as_bytes().get(..len).unwrap_or_default());
        }
    }
}
