//! The MQTT contract: topic names and payloads, as pure functions.
//!
//! docs/mqtt.md is the NOC-facing description and docs/schemas/ the JSON
//! Schemas; this module is what produces them, tested without a broker.
//! Topics (prefix `mqtt.topic_prefix`, default `cpe/v1/{agent_id}`):
//! - `{prefix}/status` (retained): online at every connect, offline as the
//!   last will and at a clean shutdown;
//! - `{prefix}/devices/{id}/inventory` (retained), `.../health`, `.../events`;
//! - `{prefix}/agent/health`: the agent's own health.
//!
//! Every payload has `schema`, `ts` (RFC 3339 UTC), `agent_id`, `device_id`
//! where one applies, and — on every topic but status — `seq`: one stream per
//! agent, strictly increasing across restarts, so that a consumer sees gaps
//! and drops duplicates. Status messages are outside the stream (the last will
//! is fixed at connect time and sent by the broker); they carry `last_seq`.

use std::time::SystemTime;

use serde::Serialize;
use serde_json::{json, Value as Json};

use crate::config::MqttConfig;
use crate::message::Report;

/// One MQTT message.
#[derive(Debug, Clone, PartialEq)]
pub struct Message {
    pub topic: String,
    pub payload: Json,
    pub retain: bool,
}

/// The agent's own health, published on `{prefix}/agent/health`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AgentHealth {
    /// Resident set size; 0 where the system does not say.
    pub rss_bytes: u64,
    pub queue: QueueHealth,
    pub poll_lag_s: f64,
    pub devices: DeviceCounts,
    pub snmp: SnmpCounts,
    pub mqtt: MqttCounts,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct QueueHealth {
    pub records: u64,
    pub bytes: u64,
    pub oldest_age_s: Option<f64>,
    pub dropped_health: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DeviceCounts {
    pub known: u64,
    pub reachable: u64,
    pub lost: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SnmpCounts {
    pub requests: u64,
    pub timeouts: u64,
    pub bad_replies: u64,
    /// Sockets that could not be opened for want of file descriptors.
    pub fd_exhausted: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MqttCounts {
    pub connected: bool,
    pub reconnects: u64,
    pub published: u64,
    pub dropped: u64,
    /// Reports set aside because no size the broker takes could hold them.
    pub dead_lettered: u64,
}

/// What the status message says about the agent.
#[derive(Debug, Clone, PartialEq)]
pub enum Status {
    Online {
        started: SystemTime,
        devices: usize,
        config_version: String,
        last_seq: u64,
        /// Seqs (first, last) never assigned because the agent restarted
        /// above a reserved block (after a power cut): not losses.
        skipped_seq: Option<(u64, u64)>,
    },
    /// A clean shutdown.
    Offline { last_seq: u64 },
    /// The last will, sent by the broker when the connection is lost.
    Will,
}

/// Names topics and shapes payloads for one agent.
#[derive(Debug, Clone)]
pub struct Contract {
    agent_id: String,
    prefix: String,
    /// `mqtt.max_message_bytes`: reports are cut to fit it.
    max_message_bytes: usize,
}

impl Contract {
    pub fn new(agent_id: &str, mqtt: &MqttConfig) -> Contract {
        Contract {
            agent_id: agent_id.to_string(),
            prefix: mqtt.topic_prefix.replace("{agent_id}", agent_id),
            max_message_bytes: usize::try_from(mqtt.max_message_bytes.0).unwrap_or(usize::MAX),
        }
    }

    pub fn status_topic(&self) -> String {
        format!("{}/status", self.prefix)
    }

    pub fn agent_health_topic(&self) -> String {
        format!("{}/agent/health", self.prefix)
    }

    /// Where the provider pushes bundles to this agent.
    /// The retained provisioning state, read back at connect for the
    /// version floor.
    pub fn config_state_topic(&self) -> String {
        format!("{}/config/state", self.prefix)
    }

    /// A device's retained inventory topic.
    pub fn inventory_topic(&self, device_id: &str) -> String {
        self.device_topic(device_id, "inventory")
    }

    /// The device a queued record's payload forgets (a `forgotten` event),
    /// whose retained inventory is then cleared.
    pub fn forgotten_device(&self, topic: &str, payload: &[u8]) -> Option<String> {
        if !topic.ends_with("/events") || !payload.windows(9).any(|w| w == b"forgotten") {
            return None;
        }
        let json: Json = serde_json::from_slice(payload).ok()?;
        (json["event"] == "forgotten").then(|| json["device_id"].as_str().map(str::to_string))?
    }

    pub fn push_topic(&self) -> String {
        format!("{}/config/push", self.prefix)
    }

    /// The filter for the provider's commands: `{prefix}/cmd/{request_id}`.
    pub fn command_filter(&self) -> String {
        format!("{}/cmd/+", self.prefix)
    }

    /// The request id of a command topic, or None for any other topic.
    pub fn command_request_id<'t>(&self, topic: &'t str) -> Option<&'t str> {
        let id = topic
            .strip_prefix(self.prefix.as_str())?
            .strip_prefix("/cmd/")?;
        (!id.is_empty() && !id.contains('/')).then_some(id)
    }

    fn device_topic(&self, device_id: &str, leaf: &str) -> String {
        format!("{}/devices/{device_id}/{leaf}", self.prefix)
    }

    fn envelope(
        &self,
        schema: &str,
        device_id: Option<&str>,
        seq: Option<u64>,
        body: Json,
    ) -> Json {
        let mut payload = json!({
            "schema": schema,
            "ts": now_rfc3339(),
            "agent_id": self.agent_id,
        });
        if let Some(id) = device_id {
            payload["device_id"] = json!(id);
        }
        if let Some(seq) = seq {
            payload["seq"] = json!(seq);
        }
        if let (Json::Object(out), Json::Object(extra)) = (&mut payload, body) {
            out.extend(extra);
        }
        payload
    }

    /// The retained status message.
    pub fn status(&self, status: &Status) -> Message {
        let body = match status {
            Status::Online {
                started,
                devices,
                config_version,
                last_seq,
                skipped_seq,
            } => {
                let mut body = json!({
                    "state": "online",
                    "version": env!("CARGO_PKG_VERSION"),
                    "started_at": humantime::format_rfc3339_seconds(*started).to_string(),
                    "devices": devices,
                    "config_version": config_version,
                    "last_seq": last_seq,
                    "max_push_bytes": crate::message::MAX_PUSH_BYTES,
                    "nonce": crate::identity::boot_nonce(),
                });
                if let Some((first, last)) = skipped_seq {
                    body["skipped_seq"] = json!({ "first": first, "last": last });
                }
                body
            }
            Status::Offline { last_seq } => {
                json!({ "state": "offline", "reason": "shutdown", "last_seq": last_seq })
            }
            Status::Will => json!({ "state": "offline", "reason": "connection_lost" }),
        };
        Message {
            topic: self.status_topic(),
            payload: self.envelope("cpe-agent/status/1", None, None, body),
            retain: true,
        }
    }

    /// Where a report is published: its topic, and whether it is retained.
    pub fn placement(&self, report: &Report) -> (String, bool) {
        match report {
            Report::Inventory(device) | Report::Lost(device) => {
                (self.device_topic(&device.id, "inventory"), true)
            }
            Report::Health(sample) => (self.device_topic(&sample.device_id, "health"), false),
            Report::Event(event) => (self.device_topic(event.device_id(), "events"), false),
            Report::ConfigAck(ack) => (self.ack_topic(ack.version), false),
            Report::ConfigState(_) => (self.config_state_topic(), true),
            Report::CommandResult(result) => (
                format!("{}/cmd/{}/result", self.prefix, result.request_id),
                false,
            ),
        }
    }

    /// `{prefix}/config/ack/{version}`; `unknown` when the message had no readable version.
    fn ack_topic(&self, version: Option<u64>) -> String {
        match version {
            Some(v) => format!("{}/config/ack/{v}", self.prefix),
            None => format!("{}/config/ack/unknown", self.prefix),
        }
    }

    /// A report as the message to publish, with its place `seq` in the
    /// agent's stream: topic and retain from [`Contract::placement`], the
    /// payload in its schema's envelope.
    pub fn report(&self, report: &Report, seq: u64) -> Message {
        let (schema, device_id, body) = match report {
            Report::Inventory(device) | Report::Lost(device) => {
                let state = if matches!(report, Report::Lost(_)) {
                    "lost"
                } else {
                    "present"
                };
                let mut body = to_json(device);
                body["state"] = json!(state);
                if let Json::Object(map) = &mut body {
                    map.remove("id");
                }
                ("cpe-agent/inventory/1", Some(device.id.as_str()), body)
            }
            Report::Health(sample) => ("cpe-agent/health/1", None, to_json(sample)),
            Report::Event(event) => ("cpe-agent/event/1", None, to_json(event)),
            Report::ConfigAck(ack) => ("cpe-agent/config-ack/1", None, to_json(ack)),
            Report::ConfigState(state) => ("cpe-agent/config-state/1", None, to_json(state)),
            Report::CommandResult(result) => ("cpe-agent/command-result/1", None, to_json(result)),
        };
        let (topic, retain) = self.placement(report);
        Message {
            topic,
            payload: self.envelope(schema, device_id, Some(seq), body),
            retain,
        }
    }

    /// [`Contract::report`]'s payload as the bytes to queue, cut to fit
    /// `mqtt.max_message_bytes` when it is larger (serialised once when it
    /// fits, which is nearly always).
    pub fn payload_bytes(&self, report: &Report, seq: u64) -> Vec<u8> {
        let mut payload = self.report(report, seq).payload;
        let bytes = payload.to_string().into_bytes();
        if bytes.len() <= self.max_message_bytes {
            return bytes;
        }
        fit(&mut payload, self.max_message_bytes);
        payload.to_string().into_bytes()
    }

    /// The largest payload this contract publishes.
    pub fn max_message_bytes(&self) -> usize {
        self.max_message_bytes
    }

    pub fn agent_health(&self, health: &AgentHealth, seq: u64) -> Message {
        Message {
            topic: self.agent_health_topic(),
            payload: self.envelope(
                "cpe-agent/agent-health/1",
                None,
                Some(seq),
                serde_json::to_value(health).unwrap_or_default(),
            ),
            retain: false,
        }
    }
}

/// The lists a payload may be cut in to fit, each item whole: inventory's
/// interfaces, entities and addresses, health's interfaces and storage.
const CUTTABLE: [&str; 4] = ["interfaces", "entities", "ip_addresses", "storage"];

/// Room kept for the `truncated` note itself.
const NOTE_BYTES: usize = 128;

/// Makes `payload` serialise to at most `max` bytes by keeping the first
/// items of its long lists: every list is cut to the same number of items,
/// the largest that fits, so short lists stay whole. `truncated` then says
/// how many items of each list were left out (docs/mqtt.md, Sizes). False
/// when it cannot fit even with those lists empty (the caller sets the
/// message aside).
pub fn fit(payload: &mut Json, max: usize) -> bool {
    let size = |v: &Json| serde_json::to_vec(v).map_or(usize::MAX, |b| b.len());
    if size(payload) <= max {
        return true;
    }
    // Cut before (a queued record refitted to a smaller limit): add to it.
    let before = match payload.as_object_mut().map(|map| map.remove("truncated")) {
        None => return false,
        Some(Some(Json::Object(before))) => before,
        Some(_) => serde_json::Map::new(),
    };
    let whole = size(payload);
    let Json::Object(map) = payload else {
        return false;
    };
    // Each list's items' sizes, with the comma after each.
    let lists: Vec<(&str, Vec<usize>)> = CUTTABLE
        .iter()
        .filter_map(|&key| {
            let items = map.get(key)?.as_array()?;
            Some((
                key,
                items.iter().map(|i| size(i).saturating_add(1)).collect(),
            ))
        })
        .collect();
    let listed: usize = lists.iter().flat_map(|(_, s)| s).sum();
    let base = whole.saturating_sub(listed).saturating_add(NOTE_BYTES);
    let kept_bytes = |cap: usize| -> usize {
        lists
            .iter()
            .map(|(_, sizes)| sizes.iter().take(cap).sum::<usize>())
            .sum()
    };
    if base > max {
        return false;
    }
    let longest = lists.iter().map(|(_, s)| s.len()).max().unwrap_or(0);
    // The largest cap on items per list that fits.
    let (mut low, mut high) = (0, longest);
    while low < high {
        let mid = (low + high).div_ceil(2);
        if base.saturating_add(kept_bytes(mid)) <= max {
            low = mid;
        } else {
            high = mid - 1;
        }
    }
    let mut truncated = before;
    for (key, sizes) in &lists {
        if sizes.len() > low {
            if let Some(Json::Array(items)) = map.get_mut(*key) {
                items.truncate(low);
            }
            let earlier = truncated.get(*key).and_then(Json::as_u64).unwrap_or(0);
            let omitted = (sizes.len() - low) as u64 + earlier;
            truncated.insert((*key).to_string(), json!(omitted));
        }
    }
    map.insert("truncated".to_string(), Json::Object(truncated));
    size(payload) <= max
}

/// [`fit`] for a payload already serialised (a queued record made under a
/// larger limit): the smaller bytes, or `None` when it is not a JSON object
/// or cannot fit.
pub fn refit(payload: &[u8], max: usize) -> Option<Vec<u8>> {
    let mut json: Json = serde_json::from_slice(payload).ok()?;
    if !json.is_object() || !fit(&mut json, max) {
        return None;
    }
    serde_json::to_vec(&json).ok()
}

fn now_rfc3339() -> String {
    humantime::format_rfc3339_millis(SystemTime::now()).to_string()
}

/// A short, stable fingerprint of the running config (secrets are masked
/// before hashing, so it never reveals them): lets a NOC see that a gateway's
/// config changed. Provider-pushed configs replace it with their version.
pub fn config_version(config: &crate::config::Config) -> String {
    let text = serde_json::to_string(config).unwrap_or_default();
    // FNV-1a, 64 bit: stable across builds and platforms.
    let hash = text.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    });
    match config.pushed_version {
        Some(version) => format!("pushed-{version}/local-{hash:016x}"),
        None => format!("local-{hash:016x}"),
    }
}

/// A payload body as JSON (our types always serialise).
fn to_json(body: &impl Serialize) -> Json {
    serde_json::to_value(body).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::{
        Body, Classification, Device, DeviceEvent, HealthSample, Inventory, Kind, System,
    };

    fn contract() -> Contract {
        Contract::new("gw-1", &MqttConfig::default())
    }

    fn device() -> Device {
        Device {
            id: "ip-127-0-1-1-161".into(),
            address: "127.0.1.1".parse().expect("ip"),
            port: 161,
            credential: "lan".into(),
            claimed_id: None,
            inventory: Inventory {
                classification: Classification {
                    kind: Kind::Modem,
                    vendor: Some("ARRIS".into()),
                    model: None,
                    firmware: None,
                    serial: None,
                    rule: "test".into(),
                    confidence: 100,
                    evidence: Vec::new(),
                },
                system: System {
                    sys_descr: Some("modem".into()),
                    sys_object_id: Some("1.3.6.1.4.1.4115.1".into()),
                    ..System::default()
                },
                interfaces: Vec::new(),
                entities: Vec::new(),
                ip_addresses: Vec::new(),
                subtrees: Default::default(),
                bulk_ok: true,
            },
            sys_uptime: Some(5),
        }
    }

    #[test]
    fn status_online_offline_and_will() {
        let online = contract().status(&Status::Online {
            started: SystemTime::UNIX_EPOCH,
            devices: 3,
            config_version: "local-1".into(),
            last_seq: 41,
            skipped_seq: None,
        });
        assert!(online.payload.get("skipped_seq").is_none());
        assert_eq!(online.payload["max_push_bytes"], 262_144);
        assert_eq!(online.payload["nonce"], crate::identity::boot_nonce());
        let after_power_cut = contract().status(&Status::Online {
            started: SystemTime::UNIX_EPOCH,
            devices: 3,
            config_version: "local-1".into(),
            last_seq: 2048,
            skipped_seq: Some((1030, 2048)),
        });
        assert_eq!(
            after_power_cut.payload["skipped_seq"],
            serde_json::json!({ "first": 1030, "last": 2048 })
        );
        assert_eq!(online.topic, "cpe/v1/gw-1/status");
        assert!(online.retain);
        assert_eq!(online.payload["state"], "online");
        assert_eq!(online.payload["devices"], 3);
        assert_eq!(online.payload["last_seq"], 41);
        assert_eq!(online.payload["schema"], "cpe-agent/status/1");
        assert!(
            online.payload.get("seq").is_none(),
            "status is outside the seq stream"
        );
        let offline = contract().status(&Status::Offline { last_seq: 42 });
        assert_eq!(
            (
                offline.payload["state"].as_str(),
                offline.payload["reason"].as_str()
            ),
            (Some("offline"), Some("shutdown"))
        );
        assert_eq!(
            contract().status(&Status::Will).payload["reason"],
            "connection_lost"
        );
    }

    #[test]
    fn inventory_is_retained_with_seq_and_lost_is_marked() {
        let inventory = contract().report(&Report::Inventory(device()), 7);
        assert_eq!(
            inventory.topic,
            "cpe/v1/gw-1/devices/ip-127-0-1-1-161/inventory"
        );
        assert!(inventory.retain);
        assert_eq!(inventory.payload["seq"], 7);
        assert_eq!(inventory.payload["state"], "present");
        assert_eq!(inventory.payload["kind"], "modem");
        assert_eq!(inventory.payload["device_id"], "ip-127-0-1-1-161");
        assert!(inventory.payload.get("id").is_none());
        assert_eq!(
            contract().report(&Report::Lost(device()), 8).payload["state"],
            "lost"
        );
    }

    /// A chassis's worth of interfaces, as a real switch names them.
    fn big_device(interfaces: u64, entities: u64) -> Device {
        let mut d = device();
        d.inventory.interfaces = (1..=interfaces)
            .map(|i| crate::message::Interface {
                index: i,
                name: Some(format!("GigabitEthernet{}/0/{}", i / 48 + 1, i % 48 + 1)),
                descr: Some(format!("GigabitEthernet{}/0/{}", i / 48 + 1, i % 48 + 1)),
                alias: Some(format!("customer port {i}")),
                if_type: Some(6),
                mac: Some("00:11:22:33:44:55".into()),
                mtu: Some(1500),
                speed_bps: Some(1_000_000_000),
                admin_status: Some("up".into()),
                oper_status: Some("down".into()),
                hc_counters: true,
            })
            .collect();
        d.inventory.entities = (1..=entities)
            .map(|i| crate::message::Entity {
                index: i,
                class: Some("port".into()),
                facts: crate::message::EntityFacts {
                    descr: Some(format!("Port {i}")),
                    ..Default::default()
                },
            })
            .collect();
        d
    }

    /// The largest inventory is cut to `mqtt.max_message_bytes` in whole
    /// items, and says what it left out; a small one is untouched.
    #[test]
    fn an_oversized_inventory_is_cut_to_fit_and_says_so() {
        let contract = contract();
        let max = contract.max_message_bytes();
        let queued = |report: &Report, seq| -> (usize, Json) {
            let bytes = contract.payload_bytes(report, seq);
            (bytes.len(), serde_json::from_slice(&bytes).expect("json"))
        };
        let (_, small) = queued(&Report::Inventory(device()), 1);
        assert!(small.get("truncated").is_none());
        let (bytes, huge) = queued(&Report::Inventory(big_device(6_500, 10_000)), 2);
        assert!(bytes <= max, "{bytes} > {max}");
        let kept = huge["interfaces"].as_array().expect("list").len();
        let entities = huge["entities"].as_array().expect("list").len();
        assert_eq!(kept, entities, "every list cut to the same length");
        assert_eq!(huge["truncated"]["interfaces"], 6_500 - kept as u64);
        assert_eq!(huge["truncated"]["entities"], 10_000 - kept as u64);
        assert!(huge["truncated"].get("ip_addresses").is_none());
        assert_eq!(huge["seq"], 2, "the envelope is whole");
        // Queued under a larger limit: cut again, the counts add up.
        let again =
            refit(&serde_json::to_vec(&huge).expect("json"), 16 * 1024).expect("fits 16 KiB");
        let again: Json = serde_json::from_slice(&again).expect("json");
        let now = again["interfaces"].as_array().expect("list").len() as u64;
        assert_eq!(again["truncated"]["interfaces"], 6_500 - now);
        assert_eq!(refit(b"not json", 16 * 1024), None);
        // How many interfaces (with as many ENTITY ports) report whole at
        // the default limit: what docs/mqtt.md says.
        let whole = (100..5_000)
            .step_by(50)
            .take_while(|&n| {
                let (_, m) = queued(&Report::Inventory(big_device(n, 0)), 3);
                m.get("truncated").is_none()
            })
            .last()
            .unwrap_or(0);
        println!("at {max} bytes: an inventory of {whole} interfaces reports whole");
        assert!(whole >= 900, "{whole}");
    }

    #[test]
    fn health_events_and_agent_health_are_not_retained() {
        let health = contract().report(
            &Report::Health(HealthSample {
                device_id: "d1".into(),
                reachable: true,
                latency_ms: Some(1.5),
                uptime_s: Some(1.0),
                missed_polls: 0,
                body: Body::default(),
            }),
            9,
        );
        assert_eq!(health.topic, "cpe/v1/gw-1/devices/d1/health");
        assert!(!health.retain);
        assert_eq!(
            (
                health.payload["seq"].as_u64(),
                health.payload["device_id"].as_str()
            ),
            (Some(9), Some("d1"))
        );
        let event = contract().report(
            &Report::Event(DeviceEvent::Lost {
                device_id: "d1".into(),
                missed_polls: 3,
            }),
            10,
        );
        assert_eq!(event.topic, "cpe/v1/gw-1/devices/d1/events");
        assert_eq!(event.payload["event"], "lost");
        let agent = contract().agent_health(
            &AgentHealth {
                rss_bytes: 1,
                queue: QueueHealth {
                    records: 0,
                    bytes: 0,
                    oldest_age_s: None,
                    dropped_health: 0,
                },
                poll_lag_s: 0.0,
                devices: DeviceCounts {
                    known: 0,
                    reachable: 0,
                    lost: 0,
                },
                snmp: SnmpCounts {
                    requests: 0,
                    timeouts: 0,
                    bad_replies: 0,
                    fd_exhausted: 0,
                },
                mqtt: MqttCounts {
                    connected: true,
                    reconnects: 0,
                    published: 0,
                    dropped: 0,
                    dead_lettered: 0,
                },
            },
            11,
        );
        assert_eq!(agent.topic, "cpe/v1/gw-1/agent/health");
        assert_eq!(agent.payload["queue"]["records"], 0);
    }

    #[test]
    fn config_version_is_stable_and_hides_secrets() {
        let mut config = crate::config::Config::default();
        let a = config_version(&config);
        assert_eq!(a, config_version(&config));
        config.mqtt.username = Some("u".into());
        config.mqtt.password = Some(crate::config::Secret::new("one"));
        let b = config_version(&config);
        config.mqtt.password = Some(crate::config::Secret::new("two"));
        assert_ne!(a, b);
        assert_eq!(
            b,
            config_version(&config),
            "the hash does not depend on the secret's value"
        );
    }
}
