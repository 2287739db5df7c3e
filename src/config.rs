//! The agent's configuration: one type tree, loaded from TOML.
//!
//! Every config type lives here so that the file format is defined in one place
//! and documented in one place (`config/agent.toml`). Loading is strict
//! (`deny_unknown_fields`): a misspelt key on a gateway in the field is far
//! worse than a refused file, because the provider would never learn that the
//! setting was ignored. Every error names the file, line, column and key, and
//! says what was expected, e.g.
//! `agent.toml:12:9: discovery.interval: expected a duration like "5m", got "soon"`.
//!
//! Secrets (communities, v3 passphrases, the MQTT password) are wrapped in
//! [`Secret`], whose `Debug` and `Display` never show the value, so that no log
//! line or `config show` output can leak them by accident.

use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

pub mod target;

pub use target::{TargetError, TargetSet, TargetSpec};

/// Where the daemon looks for its config when neither `--config` nor
/// `CPE_AGENT_CONFIG` says otherwise.
pub const DEFAULT_CONFIG_PATH: &str = "/etc/cpe-agent/agent.toml";

/// The environment variable that overrides [`DEFAULT_CONFIG_PATH`].
pub const CONFIG_ENV: &str = "CPE_AGENT_CONFIG";

/// The largest config file we read; anything larger is a mistake, not a config.
const MAX_CONFIG_BYTES: u64 = 1024 * 1024;

use crate::files::ReadError;

/// The whole configuration.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub agent: AgentConfig,
    pub mqtt: MqttConfig,
    pub discovery: DiscoveryConfig,
    pub credentials: Vec<Credential>,
    pub polling: PollingConfig,
    pub storage: StorageConfig,
    pub provisioning: ProvisioningConfig,
    pub thresholds: Thresholds,
    /// The text of `discovery.rules_file`, read and checked when the config is loaded.
    #[serde(skip)]
    pub operator_rules: Option<String>,
    /// The version of the provider's bundle laid over the file, if any.
    #[serde(skip)]
    pub pushed_version: Option<u64>,
}

/// `[agent]`: who this agent is.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct AgentConfig {
    /// The agent id used in MQTT topics and as the MQTT client id. When unset
    /// it is derived from the gateway (see [`crate::identity`]).
    pub id: Option<String>,
    /// Started as root (without systemd's `User=`), the agent switches to
    /// this user, and to `group` (default: the user's group).
    pub user: Option<String>,
    pub group: Option<String>,
}

/// `[mqtt]`: the provider's broker.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct MqttConfig {
    pub host: String,
    pub port: u16,
    pub protocol: MqttProtocol,
    pub username: Option<String>,
    pub password: Option<Secret>,
    pub keep_alive: HumanDuration,
    /// Topic prefix; `{agent_id}` is replaced by the agent id.
    pub topic_prefix: String,
    /// The largest payload the agent publishes: a larger report is cut to
    /// fit (docs/mqtt.md, Sizes). Set it to what the broker takes.
    pub max_message_bytes: ByteSize,
    pub tls: TlsConfig,
}

/// Bounds of `mqtt.max_message_bytes`: a small inventory fits the lower; the
/// upper leaves room for the topic under the 1 MiB packet limit.
pub const MIN_MESSAGE_BYTES: u64 = 4 * 1024;
pub const MAX_MESSAGE_BYTES: u64 = 960 * 1024;

impl Default for MqttConfig {
    fn default() -> Self {
        MqttConfig {
            host: "localhost".to_string(),
            port: 1883,
            protocol: MqttProtocol::V311,
            username: None,
            password: None,
            keep_alive: HumanDuration(Duration::from_secs(30)),
            topic_prefix: "cpe/v1/{agent_id}".to_string(),
            max_message_bytes: ByteSize(256 * 1024),
            tls: TlsConfig::default(),
        }
    }
}

/// The MQTT protocol version to speak.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
pub enum MqttProtocol {
    #[serde(rename = "3.1.1")]
    V311,
    #[serde(rename = "5")]
    V5,
}

/// `[mqtt.tls]`: TLS to the broker.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct TlsConfig {
    pub enabled: bool,
    /// PEM file of the CA(s) that sign the broker's certificate.
    pub ca_file: Option<PathBuf>,
    /// PEM client certificate and key, for mutual TLS.
    pub cert_file: Option<PathBuf>,
    pub key_file: Option<PathBuf>,
}

/// `[discovery]`: which part of the LAN to sweep, and how.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct DiscoveryConfig {
    /// Time between sweeps.
    pub interval: HumanDuration,
    /// Sweep the gateway's directly attached IPv4 LAN subnets.
    pub lan_subnets: bool,
    /// Extra CIDRs, ranges and hosts, each with an optional `:PORT`.
    pub targets: Vec<TargetSpec>,
    /// Interfaces never swept (besides loopback and the default-route one).
    pub exclude_interfaces: Vec<String>,
    /// The largest network (smallest prefix length) a sweep may cover.
    pub max_prefix: u8,
    /// The most devices tracked at once (ids, pollers, retained topics): a
    /// LAN that shows more is logged and the rest are not tracked.
    pub max_devices: usize,
    /// Hosts probed at once.
    pub concurrency: usize,
    /// Per-request timeout, and retries after it.
    pub timeout: HumanDuration,
    pub retries: u32,
    /// Classification rules of the operator's, tried before the built-in ones.
    pub rules_file: Option<PathBuf>,
}

impl Default for DiscoveryConfig {
    fn default() -> Self {
        DiscoveryConfig {
            interval: HumanDuration(Duration::from_secs(3600)),
            lan_subnets: true,
            targets: Vec::new(),
            exclude_interfaces: Vec::new(),
            max_prefix: 22,
            max_devices: 1024,
            concurrency: 32,
            timeout: HumanDuration(Duration::from_secs(1)),
            retries: 1,
            rules_file: None,
        }
    }
}

/// `[[credentials]]`: one SNMP credential; the list is tried in order.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Credential {
    /// A name for logs and reports; the secret itself is never shown.
    pub name: String,
    pub version: SnmpVersion,
    /// v1/v2c community.
    pub community: Option<Secret>,
    /// v3 user name, and its authentication and privacy settings.
    pub user: Option<String>,
    pub auth_protocol: Option<AuthProtocol>,
    pub auth_password: Option<Secret>,
    pub priv_protocol: Option<PrivProtocol>,
    pub priv_password: Option<Secret>,
}

impl Credential {
    /// The credential used when none is configured (and by `discover --target`).
    pub fn default_public() -> Credential {
        Credential {
            name: "public".to_string(),
            version: SnmpVersion::V2c,
            community: Some(Secret::new("public")),
            user: None,
            auth_protocol: None,
            auth_password: None,
            priv_protocol: None,
            priv_password: None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SnmpVersion {
    V1,
    V2c,
    V3,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum AuthProtocol {
    Md5,
    Sha,
    Sha224,
    Sha256,
    Sha384,
    Sha512,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum PrivProtocol {
    Des,
    Aes,
    Aes192,
    Aes256,
}

/// `[polling]`: how often known devices are polled.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct PollingConfig {
    pub interval: HumanDuration,
    pub timeout: HumanDuration,
    pub retries: u32,
    /// Missed polls after which a device is reported lost.
    pub lost_after: u32,
    /// A device that has not answered for this long is forgotten: its id,
    /// its poller and its retained inventory go.
    pub forget_after: HumanDuration,
}

impl Default for PollingConfig {
    fn default() -> Self {
        PollingConfig {
            interval: HumanDuration(Duration::from_secs(60)),
            timeout: HumanDuration(Duration::from_secs(2)),
            retries: 1,
            lost_after: 3,
            forget_after: HumanDuration(Duration::from_secs(7 * 24 * 3600)),
        }
    }
}

/// `[thresholds]`: limits whose crossing is an event. Each is `{ min = .., max = .. }`
/// (either or both); remove a limit by setting it to `{}`.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Thresholds {
    pub cpu_percent: Limit,
    pub memory_percent: Limit,
    pub storage_percent: Limit,
    pub interface_errors_per_s: Limit,
    pub docsis_downstream_power_dbmv: Limit,
    pub docsis_snr_db: Limit,
    pub docsis_upstream_power_dbmv: Limit,
    pub dsl_snr_margin_db: Limit,
    pub ups_charge_percent: Limit,
}

impl Default for Thresholds {
    fn default() -> Self {
        let max = |v| Limit {
            min: None,
            max: Some(v),
        };
        let min = |v| Limit {
            min: Some(v),
            max: None,
        };
        let range = |a, b| Limit {
            min: Some(a),
            max: Some(b),
        };
        Thresholds {
            cpu_percent: max(90.0),
            memory_percent: max(90.0),
            storage_percent: max(90.0),
            interface_errors_per_s: max(1.0),
            // DOCSIS 3.0 operating ranges commonly used by cable operators.
            docsis_downstream_power_dbmv: range(-15.0, 15.0),
            docsis_snr_db: min(30.0),
            docsis_upstream_power_dbmv: range(35.0, 52.0),
            dsl_snr_margin_db: min(6.0),
            ups_charge_percent: min(50.0),
        }
    }
}

/// A lower and/or upper bound.
#[derive(Debug, Clone, Copy, PartialEq, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Limit {
    pub min: Option<f64>,
    pub max: Option<f64>,
}

impl Limit {
    /// The bound `value` is outside of, if any.
    pub fn breached_by(&self, value: f64) -> Option<f64> {
        match (self.min, self.max) {
            (Some(min), _) if value < min => Some(min),
            (_, Some(max)) if value > max => Some(max),
            _ => None,
        }
    }
}

/// `[storage]`: where state survives restarts.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct StorageConfig {
    pub state_dir: PathBuf,
    /// The most disk the report queue may use; when full, the oldest health
    /// samples are dropped (never events).
    pub queue_max_bytes: ByteSize,
    /// How often queued reports are forced to disk: "always", or a duration.
    /// Events and inventory are always written through at once.
    pub queue_fsync: FsyncSetting,
}

impl Default for StorageConfig {
    fn default() -> Self {
        StorageConfig {
            state_dir: PathBuf::from("/var/lib/cpe-agent"),
            queue_max_bytes: ByteSize(64 * 1024 * 1024),
            queue_fsync: FsyncSetting::Interval(HumanDuration(Duration::from_secs(1))),
        }
    }
}

/// A size written the human way: "64MiB", "512KiB", "1GiB", or a number of bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct ByteSize(pub u64);

impl<'de> Deserialize<'de> for ByteSize {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl serde::de::Visitor<'_> for Visitor {
            type Value = ByteSize;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a size like \"64MiB\"")
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<ByteSize, E> {
                u64::try_from(v)
                    .map(ByteSize)
                    .map_err(|_| E::custom(format!("expected a size like \"64MiB\", got {v}")))
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<ByteSize, E> {
                parse_size(v)
                    .map(ByteSize)
                    .ok_or_else(|| E::custom(format!("expected a size like \"64MiB\", got {v:?}")))
            }
        }
        d.deserialize_any(Visitor)
    }
}

impl Serialize for ByteSize {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(self.0)
    }
}

fn parse_size(text: &str) -> Option<u64> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: u64 = number.parse().ok()?;
    let factor: u64 = match unit.trim() {
        "" | "B" => 1,
        "KiB" | "K" | "KB" => 1 << 10,
        "MiB" | "M" | "MB" => 1 << 20,
        "GiB" | "G" | "GB" => 1 << 30,
        _ => return None,
    };
    number.checked_mul(factor)
}

/// `storage.queue_fsync`: "always", or a duration like "1s".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FsyncSetting {
    Always,
    Interval(HumanDuration),
}

impl<'de> Deserialize<'de> for FsyncSetting {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        if text == "always" {
            return Ok(FsyncSetting::Always);
        }
        humantime::parse_duration(&text)
            .map(|d| FsyncSetting::Interval(HumanDuration(d)))
            .map_err(|_| {
                serde::de::Error::custom(format!(
                    "expected \"always\" or a duration like \"1s\", got {text:?}"
                ))
            })
    }
}

impl Serialize for FsyncSetting {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            FsyncSetting::Always => s.serialize_str("always"),
            FsyncSetting::Interval(d) => d.serialize(s),
        }
    }
}

/// `[provisioning]`: provider-pushed configuration.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct ProvisioningConfig {
    pub enabled: bool,
    /// Ed25519 public keys whose signatures are accepted, each the base64 of
    /// the raw 32-byte key (as `cpe-agent keygen` prints it). Several keys
    /// allow rotation. See docs/provisioning.md.
    pub public_keys: Vec<String>,
    /// Groups the agent follows: it also takes pushes on each group's topic.
    pub groups: Vec<String>,
    /// A group's push topic; `{group}` is replaced by the group name.
    pub group_topic: String,
    /// How long an applied change has to prove itself (the broker accepting
    /// new MQTT settings) before it is rolled back.
    pub verify_timeout: HumanDuration,
    /// The credential (by name) used for SNMP SETs; unset: the credential
    /// that found the device.
    pub write_credential: Option<String>,
    /// Refuse device writes (pushes' SETs, reboot-device) unless the write
    /// credential is SNMPv3 authPriv: a v1/v2c SET shows its community to
    /// anyone on the LAN (docs/provisioning.md).
    pub writes_require_authpriv: bool,
}

impl Default for ProvisioningConfig {
    fn default() -> Self {
        ProvisioningConfig {
            enabled: false,
            public_keys: Vec::new(),
            groups: Vec::new(),
            group_topic: "cpe/v1/groups/{group}/config/push".to_string(),
            verify_timeout: HumanDuration(Duration::from_secs(30)),
            write_credential: None,
            writes_require_authpriv: false,
        }
    }
}

/// A secret string: shown as `********` everywhere, serialised the same way.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Secret {
        Secret(value.into())
    }

    /// The real value, for the one place that must hand it to a protocol.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(********)")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("********")
    }
}

impl Serialize for Secret {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str("********")
    }
}

/// A duration written the human way: "30s", "5m", "1h 30m".
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct HumanDuration(pub Duration);

impl HumanDuration {
    pub fn get(self) -> Duration {
        self.0
    }
}

impl<'de> Deserialize<'de> for HumanDuration {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl serde::de::Visitor<'_> for Visitor {
            type Value = HumanDuration;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a duration like \"5m\"")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<HumanDuration, E> {
                humantime::parse_duration(v)
                    .map(HumanDuration)
                    .map_err(|_| E::custom(format!("expected a duration like \"5m\", got {v:?}")))
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<HumanDuration, E> {
                Err(E::custom(format!(
                    "expected a duration like \"5m\", got the bare number {v} (add a unit: \"{v}s\")"
                )))
            }
        }
        d.deserialize_any(Visitor)
    }
}

impl Serialize for HumanDuration {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(&humantime::format_duration(self.0))
    }
}

/// A config that could not be used, with where and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// The file as given (or `<text>` for text that came from elsewhere).
    pub file: String,
    /// 1-based line and column, when the problem has a place in the file.
    pub position: Option<(usize, usize)>,
    /// The dotted key path, e.g. `discovery.interval` or `credentials[1].user`.
    pub key: Option<String>,
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file)?;
        if let Some((line, column)) = self.position {
            write!(f, ":{line}:{column}")?;
        }
        write!(f, ": ")?;
        if let Some(key) = &self.key {
            write!(f, "{key}: ")?;
        }
        write!(f, "{}", self.message)
    }
}

impl std::error::Error for ConfigError {}

/// Settings pushed by the provider, shaped like the config file, in JSON.
pub type Overlay = serde_json::Map<String, serde_json::Value>;

/// Reads and validates a config file, then lays the provider's pushed
/// settings over it: tables merge key by key, any other value (arrays
/// included) replaces the file's. The file must be valid on its own, and the
/// result is checked like a file; errors about the result name the key and
/// say that pushed settings are involved. The agent loads through
/// `discover::load_config`, which also parses the operator's rules file
/// read here.
pub fn load_with_overlay(path: &Path, overlay: Option<&Overlay>) -> Result<Config, ConfigError> {
    let (text, file) = read_text(path)?;
    let mut config = parse(&text, &file)?;
    if let Some(overlay) = overlay {
        config = merged(&text, overlay, &format!("{file} with the pushed settings"))?;
    }
    if let Some(rules_file) = config.discovery.rules_file.clone() {
        config.operator_rules = Some(load_rules_file(&rules_file)?);
    }
    Ok(config)
}

/// The config text with the overlay laid over it (no rules file read).
fn merged(text: &str, overlay: &Overlay, origin: &str) -> Result<Config, ConfigError> {
    let fail = |key: Option<String>, message: String| ConfigError {
        file: origin.to_string(),
        position: None,
        key,
        message: tidy_message(&message),
    };
    let table: toml::Table = toml::from_str(text).map_err(|e| fail(None, e.to_string()))?;
    let mut value = serde_json::to_value(table).map_err(|e| fail(None, e.to_string()))?;
    merge_json(&mut value, overlay);
    let config: Config = serde_path_to_error::deserialize(value).map_err(|e| {
        let key = dotted(e.path());
        fail(key, e.into_inner().to_string())
    })?;
    config
        .validate()
        .map_err(|(key, message)| fail(Some(key), message))?;
    Ok(config)
}

/// Lays `overlay` over `base`: objects merge recursively, the rest replaces.
pub fn merge_json(base: &mut serde_json::Value, overlay: &Overlay) {
    let serde_json::Value::Object(map) = base else {
        *base = serde_json::Value::Object(overlay.clone());
        return;
    };
    for (key, value) in overlay {
        match (map.get_mut(key), value) {
            (Some(existing @ serde_json::Value::Object(_)), serde_json::Value::Object(inner)) => {
                merge_json(existing, inner)
            }
            _ => {
                map.insert(key.clone(), value.clone());
            }
        }
    }
}

/// The file's text, checked for size and encoding.
fn read_text(path: &Path) -> Result<(String, String), ConfigError> {
    let file = path.display().to_string();
    let plain = |message: String| ConfigError {
        file: file.clone(),
        position: None,
        key: None,
        message,
    };
    let bytes = crate::files::read_bounded(path, MAX_CONFIG_BYTES).map_err(|e| match e {
        ReadError::Io(e) => plain(read_hint(&e)),
        ReadError::TooLarge(max) => plain(format!(
            "the file is larger than {max} bytes, the most a config may be"
        )),
        not_regular => plain(format!("cannot read the config: {not_regular}")),
    })?;
    let text = String::from_utf8(bytes).map_err(|e| {
        plain(format!(
            "the file is not UTF-8 text (bad byte at offset {})",
            e.utf8_error().valid_up_to()
        ))
    })?;
    Ok((text, file))
}

/// Reads the operator's classification rules; `discover::load_config` parses them.
fn load_rules_file(path: &Path) -> Result<String, ConfigError> {
    let origin = path.display().to_string();
    let fail = |message: String| ConfigError {
        file: origin.clone(),
        position: None,
        key: None,
        message,
    };
    let bytes = crate::files::read_bounded(path, MAX_CONFIG_BYTES).map_err(|e| {
        fail(format!(
            "cannot read the rules file named by discovery.rules_file: {e}"
        ))
    })?;
    String::from_utf8(bytes).map_err(|e| {
        fail(format!(
            "the rules file is not UTF-8 text (bad byte at offset {})",
            e.utf8_error().valid_up_to()
        ))
    })
}

fn read_hint(e: &std::io::Error) -> String {
    match e.kind() {
        std::io::ErrorKind::NotFound => {
            format!("cannot read the config: {e} (pass --config PATH or set {CONFIG_ENV})")
        }
        _ => format!("cannot read the config: {e}"),
    }
}

/// Parses and validates config text; `file` names it in errors.
pub fn parse(text: &str, file: &str) -> Result<Config, ConfigError> {
    let deserializer = toml::de::Deserializer::parse(text)
        .map_err(|e| located(text, file, None, e.span(), e.message().to_string()))?;
    let config: Config = serde_path_to_error::deserialize(deserializer).map_err(|e| {
        let key = dotted(e.path());
        let inner = e.into_inner();
        // toml places errors inside arrays at the array; the element is more useful.
        let span = match &key {
            Some(k) if k.ends_with(']') => span_of_key(text, k).or(inner.span()),
            _ => inner.span(),
        };
        located(text, file, key, span, inner.message().to_string())
    })?;
    config.validate().map_err(|(key, message)| {
        let span = span_of_key(text, &key);
        located(text, file, Some(key), span, message)
    })?;
    Ok(config)
}

/// serde_path_to_error's path, as the dotted key the file uses.
fn dotted(path: &serde_path_to_error::Path) -> Option<String> {
    use serde_path_to_error::Segment;
    let mut out = String::new();
    for segment in path.iter() {
        match segment {
            Segment::Seq { index } => out.push_str(&format!("[{index}]")),
            Segment::Map { key } | Segment::Enum { variant: key } => {
                if !out.is_empty() {
                    out.push('.');
                }
                out.push_str(key);
            }
            Segment::Unknown => {}
        }
    }
    (!out.is_empty()).then_some(out)
}

fn located(
    text: &str,
    file: &str,
    key: Option<String>,
    span: Option<Range<usize>>,
    message: String,
) -> ConfigError {
    ConfigError {
        file: file.to_string(),
        position: span.map(|s| line_column(text, s.start)),
        key,
        message: tidy_message(&message),
    }
}

/// toml's messages sometimes end in a newline or repeat "invalid value: ";
/// a one-line message reads better after `file:line:col: key:`.
fn tidy_message(message: &str) -> String {
    let mut out = message.trim().replace('\n', " ");
    for (rust, human) in [
        ("expected u8", "expected a whole number from 0 to 255"),
        ("expected u16", "expected a whole number from 0 to 65535"),
        (
            "expected u32",
            "expected a whole number from 0 to 4294967295",
        ),
        ("expected usize", "expected a whole number"),
        ("expected a boolean", "expected true or false"),
    ] {
        if out.ends_with(rust) {
            out = format!("{}{human}", &out[..out.len() - rust.len()]);
        }
    }
    out
}

fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, column)
}

/// Finds where a dotted key (as produced by [`Config::validate`]) stands in the file.
fn span_of_key(text: &str, key: &str) -> Option<Range<usize>> {
    use toml::de::{DeTable, DeValue};
    let root = DeTable::parse(text).ok()?;
    let mut table = root.get_ref();
    let mut span = None;
    let mut segments = key_segments(key).into_iter().peekable();
    while let Some((name, index)) = segments.next() {
        let (k, v) = table.get_key_value(name)?;
        span = Some(k.span());
        let mut value = v;
        if let Some(i) = index {
            let DeValue::Array(items) = value.get_ref() else {
                return span;
            };
            value = items.get(i)?;
            span = Some(value.span());
        }
        match value.get_ref() {
            DeValue::Table(t) if segments.peek().is_some() => table = t,
            _ => return span,
        }
    }
    span
}

/// `credentials[1].user` → [("credentials", Some(1)), ("user", None)].
fn key_segments(key: &str) -> Vec<(&str, Option<usize>)> {
    key.split('.')
        .map(|part| match part.split_once('[') {
            Some((name, rest)) => (name, rest.trim_end_matches(']').parse().ok()),
            None => (part, None),
        })
        .collect()
}

type Invalid = (String, String);

impl Config {
    /// Checks what types alone cannot: ranges, and settings that only make
    /// sense together. Errors carry the dotted key they are about.
    fn validate(&self) -> Result<(), Invalid> {
        let bad = |key: &str, message: String| Err((key.to_string(), message));
        if let Some(id) = &self.agent.id {
            if let Err(why) = crate::identity::check_agent_id(id) {
                return bad("agent.id", why);
            }
        }
        self.mqtt.validate()?;
        self.discovery.validate()?;
        for (i, credential) in self.credentials.iter().enumerate() {
            credential.validate(i)?;
        }
        let mut names: Vec<&str> = self.credentials.iter().map(|c| c.name.as_str()).collect();
        names.sort_unstable();
        if let Some(pair) = names.windows(2).find(|w| w[0] == w[1]) {
            let index = self.credentials.iter().rposition(|c| c.name == pair[0]);
            return bad(
                &format!("credentials[{}].name", index.unwrap_or(0)),
                format!(
                    "the name {:?} is used twice; each credential needs its own",
                    pair[0]
                ),
            );
        }
        self.polling.validate()?;
        self.thresholds.validate()?;
        self.provisioning.validate()?;
        if let Some(name) = &self.provisioning.write_credential {
            if !self
                .credentials_or_default()
                .iter()
                .any(|c| &c.name == name)
            {
                return bad(
                    "provisioning.write_credential",
                    format!("no credential is named {name:?}; name one of [[credentials]]"),
                );
            }
        }
        if self.storage.state_dir.as_os_str().is_empty() {
            return bad(
                "storage.state_dir",
                "expected a directory, got an empty path".into(),
            );
        }
        Ok(())
    }

    /// The same checks a config file gets after parsing, for settings that
    /// arrive another way (a provider's pushed bundle): the dotted key and
    /// what is wrong with it.
    pub fn check(&self) -> Result<(), (String, String)> {
        self.validate()
    }

    /// The credentials to try, in order: the configured ones, or `public`.
    pub fn credentials_or_default(&self) -> Vec<Credential> {
        if self.credentials.is_empty() {
            vec![Credential::default_public()]
        } else {
            self.credentials.clone()
        }
    }
}

impl MqttConfig {
    fn validate(&self) -> Result<(), Invalid> {
        let bad = |key: &str, message: &str| Err((key.to_string(), message.to_string()));
        if self.host.trim().is_empty() {
            return bad(
                "mqtt.host",
                "expected a broker host name or address, got \"\"",
            );
        }
        if self.port == 0 {
            return bad("mqtt.port", "expected a port from 1 to 65535, got 0");
        }
        if self.keep_alive.0 < Duration::from_secs(5)
            || self.keep_alive.0 > Duration::from_secs(65535)
        {
            return bad("mqtt.keep_alive", "expected a keep-alive from 5s to 18h");
        }
        if self.password.is_some() && self.username.is_none() {
            return bad("mqtt.password", "a password needs mqtt.username too");
        }
        let prefix = &self.topic_prefix;
        if prefix.is_empty() || prefix.starts_with('/') || prefix.ends_with('/') {
            return bad(
                "mqtt.topic_prefix",
                "expected a topic prefix like \"cpe/v1/{agent_id}\" (no leading or trailing '/')",
            );
        }
        if prefix.contains(['+', '#']) {
            return bad(
                "mqtt.topic_prefix",
                "wildcards '+' and '#' are not allowed in a topic prefix",
            );
        }
        if !(MIN_MESSAGE_BYTES..=MAX_MESSAGE_BYTES).contains(&self.max_message_bytes.0) {
            return bad(
                "mqtt.max_message_bytes",
                &format!(
                    "expected {MIN_MESSAGE_BYTES} to {MAX_MESSAGE_BYTES} bytes (\"4KiB\" to \"960KiB\"), got {}",
                    self.max_message_bytes.0
                ),
            );
        }
        if self.tls.cert_file.is_some() != self.tls.key_file.is_some() {
            return bad(
                "mqtt.tls.cert_file",
                "a client certificate needs both cert_file and key_file",
            );
        }
        Ok(())
    }
}

impl DiscoveryConfig {
    fn validate(&self) -> Result<(), Invalid> {
        if !(8..=32).contains(&self.max_prefix) {
            return Err((
                "discovery.max_prefix".into(),
                format!(
                    "expected a prefix length from 8 to 32, got {}",
                    self.max_prefix
                ),
            ));
        }
        for (i, target) in self.targets.iter().enumerate() {
            target
                .check_size(self.max_prefix, "discovery.max_prefix = ")
                .map_err(|e| (format!("discovery.targets[{i}]"), e))?;
        }
        if !(1..=65_535).contains(&self.max_devices) {
            return Err((
                "discovery.max_devices".into(),
                format!("expected 1 to 65535 devices, got {}", self.max_devices),
            ));
        }
        if !(1..=1024).contains(&self.concurrency) {
            return Err((
                "discovery.concurrency".into(),
                format!("expected 1 to 1024 hosts at once, got {}", self.concurrency),
            ));
        }
        check_timeout("discovery.timeout", self.timeout)?;
        check_retries("discovery.retries", self.retries)?;
        if self.interval.0 < Duration::from_secs(60) {
            return Err((
                "discovery.interval".into(),
                "expected at least \"1m\" between sweeps".into(),
            ));
        }
        Ok(())
    }
}

impl Thresholds {
    fn validate(&self) -> Result<(), Invalid> {
        let all = [
            ("cpu_percent", self.cpu_percent),
            ("memory_percent", self.memory_percent),
            ("storage_percent", self.storage_percent),
            ("interface_errors_per_s", self.interface_errors_per_s),
            (
                "docsis_downstream_power_dbmv",
                self.docsis_downstream_power_dbmv,
            ),
            ("docsis_snr_db", self.docsis_snr_db),
            (
                "docsis_upstream_power_dbmv",
                self.docsis_upstream_power_dbmv,
            ),
            ("dsl_snr_margin_db", self.dsl_snr_margin_db),
            ("ups_charge_percent", self.ups_charge_percent),
        ];
        for (name, limit) in all {
            if let (Some(min), Some(max)) = (limit.min, limit.max) {
                if min > max {
                    return Err((
                        format!("thresholds.{name}"),
                        format!("min {min} is above max {max}"),
                    ));
                }
            }
        }
        Ok(())
    }
}

impl ProvisioningConfig {
    fn validate(&self) -> Result<(), Invalid> {
        if !self.group_topic.contains("{group}") || self.group_topic.contains(['+', '#']) {
            return Err((
                "provisioning.group_topic".into(),
                format!(
                    "expected a topic with {{group}} in it and no wildcards, got {:?}",
                    self.group_topic
                ),
            ));
        }
        for (i, group) in self.groups.iter().enumerate() {
            if group.is_empty() || group.contains(['/', '+', '#']) {
                return Err((
                    format!("provisioning.groups[{i}]"),
                    format!("expected a group name without '/', '+' or '#', got {group:?}"),
                ));
            }
        }
        if self.verify_timeout.0 < Duration::from_secs(1)
            || self.verify_timeout.0 > Duration::from_secs(600)
        {
            return Err((
                "provisioning.verify_timeout".into(),
                "expected from \"1s\" to \"10m\"".into(),
            ));
        }
        for (i, key) in self.public_keys.iter().enumerate() {
            crate::keys::parse_public_key(key)
                .map_err(|why| (format!("provisioning.public_keys[{i}]"), why))?;
        }
        if self.enabled && self.public_keys.is_empty() {
            return Err((
                "provisioning.enabled".into(),
                "provisioning needs at least one key in provisioning.public_keys (see `cpe-agent keygen`)".into(),
            ));
        }
        Ok(())
    }

    /// The trusted keys; [`Config`] validation has already checked them.
    pub fn verifying_keys(&self) -> Vec<ed25519_dalek::VerifyingKey> {
        self.public_keys
            .iter()
            .filter_map(|k| crate::keys::parse_public_key(k).ok())
            .collect()
    }
}

impl PollingConfig {
    fn validate(&self) -> Result<(), Invalid> {
        if self.interval.0 < Duration::from_secs(1) {
            return Err(("polling.interval".into(), "expected at least \"1s\"".into()));
        }
        check_timeout("polling.timeout", self.timeout)?;
        check_retries("polling.retries", self.retries)?;
        if self.lost_after == 0 {
            return Err((
                "polling.lost_after".into(),
                "expected at least 1 missed poll".into(),
            ));
        }
        if self.forget_after.0 < Duration::from_secs(10) {
            return Err((
                "polling.forget_after".into(),
                "expected at least \"10s\" (default \"7d\")".into(),
            ));
        }
        Ok(())
    }
}

fn check_timeout(key: &str, timeout: HumanDuration) -> Result<(), Invalid> {
    if timeout.0 < Duration::from_millis(10) || timeout.0 > Duration::from_secs(60) {
        return Err((
            key.into(),
            "expected a timeout from \"10ms\" to \"60s\"".into(),
        ));
    }
    Ok(())
}

fn check_retries(key: &str, retries: u32) -> Result<(), Invalid> {
    if retries > 10 {
        return Err((
            key.into(),
            format!("expected 0 to 10 retries, got {retries}"),
        ));
    }
    Ok(())
}

impl Credential {
    fn validate(&self, index: usize) -> Result<(), Invalid> {
        let key = |field: &str| format!("credentials[{index}].{field}");
        let bad = |field: &str, message: &str| Err((key(field), message.to_string()));
        if self.name.trim().is_empty() {
            return bad("name", "expected a name for this credential");
        }
        match self.version {
            SnmpVersion::V1 | SnmpVersion::V2c => {
                if self.community.is_none() {
                    return bad("version", "a v1/v2c credential needs a community");
                }
                let v3_field = [
                    ("user", self.user.is_some()),
                    ("auth_protocol", self.auth_protocol.is_some()),
                    ("auth_password", self.auth_password.is_some()),
                    ("priv_protocol", self.priv_protocol.is_some()),
                    ("priv_password", self.priv_password.is_some()),
                ]
                .into_iter()
                .find(|(_, set)| *set);
                if let Some((field, _)) = v3_field {
                    return bad(
                        field,
                        "only SNMPv3 credentials take this; set version = \"v3\"",
                    );
                }
            }
            SnmpVersion::V3 => {
                if self.community.is_some() {
                    return bad("community", "SNMPv3 uses user, not community");
                }
                if self.user.as_deref().is_none_or(str::is_empty) {
                    return bad("version", "an SNMPv3 credential needs a user");
                }
                if self.auth_protocol.is_some() != self.auth_password.is_some() {
                    return bad(
                        "auth_protocol",
                        "set auth_protocol and auth_password together",
                    );
                }
                if self.priv_protocol.is_some() != self.priv_password.is_some() {
                    return bad(
                        "priv_protocol",
                        "set priv_protocol and priv_password together",
                    );
                }
                if self.priv_protocol.is_some() && self.auth_protocol.is_none() {
                    return bad(
                        "priv_protocol",
                        "privacy needs authentication (auth_protocol) too",
                    );
                }
                for (field, secret) in [
                    ("auth_password", &self.auth_password),
                    ("priv_password", &self.priv_password),
                ] {
                    if secret.as_ref().is_some_and(|s| s.expose().len() < 8) {
                        return bad(
                            field,
                            "SNMPv3 passphrases are at least 8 characters (RFC 3414)",
                        );
                    }
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(text: &str) -> String {
        parse(text, "agent.toml")
            .expect_err("should be refused")
            .to_string()
    }

    #[test]
    fn empty_config_is_all_defaults() {
        let config = parse("", "agent.toml").expect("empty config");
        assert_eq!(config, Config::default());
        assert_eq!(config.polling.interval.get(), Duration::from_secs(60));
    }

    #[test]
    fn bad_duration_names_line_column_and_key() {
        let text = "[agent]\n\n[discovery]\ninterval = \"soon\"\n";
        assert_eq!(
            err(text),
            "agent.toml:4:12: discovery.interval: expected a duration like \"5m\", got \"soon\""
        );
    }

    #[test]
    fn misspelt_key_names_line_column_and_key() {
        let e = err("[polling]\nintervall = \"5m\"\n");
        assert!(e.starts_with("agent.toml:2:1: polling"), "{e}");
        assert!(e.contains("unknown field `intervall`"), "{e}");
    }

    #[test]
    fn wrong_type_names_line_column_and_key() {
        let e = err("[mqtt]\nhost = \"broker\"\nport = \"eighteen\"\n");
        assert!(e.starts_with("agent.toml:3:8: mqtt.port:"), "{e}");
        assert!(
            e.ends_with("expected a whole number from 0 to 65535"),
            "{e}"
        );
    }

    #[test]
    fn bare_number_duration_suggests_a_unit() {
        let e = err("[polling]\ninterval = 60\n");
        assert!(e.contains("add a unit: \"60s\""), "{e}");
    }

    #[test]
    fn bad_target_is_located() {
        let e = err("[discovery]\ntargets = [\"10.0.0.0/24\", \"10.0.0.1/24\"]\n");
        assert!(
            e.starts_with("agent.toml:2:27: discovery.targets[1]:"),
            "{e}"
        );
        assert!(e.contains("host bits"), "{e}");
    }

    #[test]
    fn oversized_sweep_is_refused_with_the_way_out() {
        let e = err("[discovery]\ntargets = [\"10.0.0.0/16\"]\n");
        assert!(e.contains("discovery.targets[0]"), "{e}");
        assert!(e.contains("discovery.max_prefix = 16"), "{e}");
        let ok = "[discovery]\nmax_prefix = 16\ntargets = [\"10.0.0.0/16\"]\n";
        parse(ok, "agent.toml").expect("allowed with max_prefix");
    }

    #[test]
    fn semantic_errors_point_at_the_key() {
        let text = "[[credentials]]\nname = \"a\"\nversion = \"v2c\"\ncommunity = \"x\"\n\n\
                    [[credentials]]\nname = \"b\"\nversion = \"v3\"\nuser = \"noc\"\n\
                    auth_protocol = \"sha\"\nauth_password = \"short\"\n";
        let e = err(text);
        assert!(
            e.starts_with("agent.toml:11:1: credentials[1].auth_password:"),
            "{e}"
        );
    }

    #[test]
    fn duplicate_credential_names_are_refused() {
        let text = "[[credentials]]\nname = \"a\"\nversion = \"v1\"\ncommunity = \"x\"\n\
                    [[credentials]]\nname = \"a\"\nversion = \"v2c\"\ncommunity = \"y\"\n";
        assert!(err(text).contains("used twice"));
    }

    #[test]
    fn syntax_errors_are_located() {
        let e = err("[mqtt\nhost = 1\n");
        assert!(e.starts_with("agent.toml:1:"), "{e}");
    }

    #[test]
    fn secrets_never_print() {
        let text = "[mqtt]\nusername = \"u\"\npassword = \"hunter22\"\n\
                    [[credentials]]\nname = \"lan\"\nversion = \"v2c\"\ncommunity = \"s3cret\"\n";
        let config = parse(text, "agent.toml").expect("valid");
        let shown = format!(
            "{config:?} {}",
            serde_json::to_string(&config).unwrap_or_default()
        );
        assert!(
            !shown.contains("hunter22") && !shown.contains("s3cret"),
            "{shown}"
        );
        assert_eq!(
            config.mqtt.password.as_ref().map(Secret::expose),
            Some("hunter22")
        );
    }

    #[test]
    fn sizes_and_fsync_settings_parse() {
        let text = "[storage]\nqueue_max_bytes = \"16MiB\"\nqueue_fsync = \"always\"\n";
        let config = parse(text, "agent.toml").expect("valid");
        assert_eq!(config.storage.queue_max_bytes, ByteSize(16 << 20));
        assert_eq!(config.storage.queue_fsync, FsyncSetting::Always);
        let e = err("[storage]\nqueue_max_bytes = \"lots\"\n");
        assert!(
            e.contains("storage.queue_max_bytes") && e.contains("64MiB"),
            "{e}"
        );
        let e = err("[storage]\nqueue_fsync = \"sometimes\"\n");
        assert!(e.contains("storage.queue_fsync"), "{e}");
    }

    #[test]
    fn missing_file_says_how_to_point_at_one() {
        let e = load_with_overlay(Path::new("/nonexistent/agent.toml"), None).expect_err("missing");
        assert!(e.to_string().contains("--config PATH"), "{e}");
    }
}
