//! Reporting: what the agent learned, published to the provider's broker.
//!
//! Topics (the prefix is `mqtt.topic_prefix`, default `cpe/v1/{agent_id}`):
//! - `{prefix}/status`, retained: `online` at every connect (the birth
//!   message), `offline` as the last will and on a clean shutdown;
//! - `{prefix}/devices/{device_id}/inventory`, retained, on change; a lost
//!   device's inventory is republished with `"state": "lost"`;
//! - `{prefix}/devices/{device_id}/health`, at each poll;
//! - `{prefix}/devices/{device_id}/events`: found and lost.
//!
//! Every payload is a JSON object with `schema`, `ts` (RFC 3339 UTC) and
//! `agent_id`. The MQTT protocol state lives in rumqttc; this module owns the
//! topic and payload contract (pure functions, tested without a broker) and
//! the connection's lifecycle: reconnect with exponential backoff and jitter,
//! a new connection when a reload changes `[mqtt]`, and `offline` published
//! before a clean exit.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use rumqttc::{
    AsyncClient, Event, EventLoop, LastWill, MqttOptions, Outgoing, Packet, QoS, TlsConfiguration,
    Transport,
};
use serde_json::{json, Value as Json};
use tokio::sync::{mpsc, watch};

use crate::config::{Config, MqttConfig};
use crate::discovery::Device;
use crate::polling::{DeviceEvent, HealthSample};
use crate::shutdown::Shutdown;

/// Reports dropped because the reporter fell behind (published in the agent's health later).
pub static DROPPED: AtomicU64 = AtomicU64::new(0);

/// How long a clean shutdown waits for `offline` to reach the broker.
const GOODBYE_TIMEOUT: Duration = Duration::from_secs(2);
const BACKOFF_MIN: Duration = Duration::from_secs(1);
const BACKOFF_MAX: Duration = Duration::from_secs(60);
/// Requests rumqttc may hold while the connection is down.
const REQUEST_CAPACITY: usize = 256;

/// One thing to publish.
#[derive(Debug, Clone)]
pub enum Report {
    Inventory(Device),
    Lost(Device),
    Health(HealthSample),
    Event(DeviceEvent),
}

impl Report {
    pub fn kind(&self) -> &'static str {
        match self {
            Report::Inventory(_) | Report::Lost(_) => "inventory",
            Report::Health(_) => "health",
            Report::Event(_) => "event",
        }
    }
}

/// One MQTT message: the contract, independent of any connection.
#[derive(Debug, Clone, PartialEq)]
pub struct Message {
    pub topic: String,
    pub payload: Json,
    pub retain: bool,
}

/// Names topics and shapes payloads for one agent.
#[derive(Debug, Clone)]
pub struct Contract {
    agent_id: String,
    prefix: String,
}

impl Contract {
    pub fn new(agent_id: &str, mqtt: &MqttConfig) -> Contract {
        Contract {
            agent_id: agent_id.to_string(),
            prefix: mqtt.topic_prefix.replace("{agent_id}", agent_id),
        }
    }

    pub fn status_topic(&self) -> String {
        format!("{}/status", self.prefix)
    }

    fn envelope(&self, schema: &str, device_id: Option<&str>, body: Json) -> Json {
        let mut payload = json!({
            "schema": schema,
            "ts": now_rfc3339(),
            "agent_id": self.agent_id,
        });
        if let Some(id) = device_id {
            payload["device_id"] = json!(id);
        }
        if let (Json::Object(out), Json::Object(extra)) = (&mut payload, body) {
            out.extend(extra);
        }
        payload
    }

    /// The retained status: `online` with what a NOC wants to see at a glance.
    pub fn status(&self, online: bool, started: SystemTime, devices: usize) -> Message {
        let body = if online {
            json!({
                "state": "online",
                "version": env!("CARGO_PKG_VERSION"),
                "started_at": humantime::format_rfc3339_seconds(started).to_string(),
                "devices": devices,
            })
        } else {
            json!({ "state": "offline" })
        };
        Message {
            topic: self.status_topic(),
            payload: self.envelope("cpe-agent/status/1", None, body),
            retain: true,
        }
    }

    pub fn report(&self, report: &Report) -> Message {
        match report {
            Report::Inventory(device) | Report::Lost(device) => {
                let state = if matches!(report, Report::Lost(_)) {
                    "lost"
                } else {
                    "present"
                };
                let mut body = serde_json::to_value(device).unwrap_or_default();
                body["state"] = json!(state);
                if let Json::Object(map) = &mut body {
                    map.remove("id");
                    map.remove("sys_uptime");
                }
                Message {
                    topic: self.device_topic(&device.id, "inventory"),
                    payload: self.envelope("cpe-agent/inventory/1", Some(&device.id), body),
                    retain: true,
                }
            }
            Report::Health(sample) => {
                let mut body = serde_json::to_value(sample).unwrap_or_default();
                if let Json::Object(map) = &mut body {
                    map.remove("device_id");
                }
                Message {
                    topic: self.device_topic(&sample.device_id, "health"),
                    payload: self.envelope("cpe-agent/health/1", Some(&sample.device_id), body),
                    retain: false,
                }
            }
            Report::Event(event) => {
                let device_id = event.device_id();
                let mut body = serde_json::to_value(event).unwrap_or_default();
                if let Json::Object(map) = &mut body {
                    map.remove("device_id");
                }
                Message {
                    topic: self.device_topic(device_id, "events"),
                    payload: self.envelope("cpe-agent/event/1", Some(device_id), body),
                    retain: false,
                }
            }
        }
    }

    fn device_topic(&self, device_id: &str, leaf: &str) -> String {
        format!("{}/devices/{device_id}/{leaf}", self.prefix)
    }
}

fn now_rfc3339() -> String {
    humantime::format_rfc3339_millis(SystemTime::now()).to_string()
}

/// Builds rumqttc's options from `[mqtt]`; fails when TLS files are unreadable.
pub fn mqtt_options(
    agent_id: &str,
    mqtt: &MqttConfig,
    contract: &Contract,
) -> Result<MqttOptions, String> {
    let mut options = MqttOptions::new(agent_id, mqtt.host.clone(), mqtt.port);
    options.set_keep_alive(mqtt.keep_alive.get());
    options.set_clean_session(true);
    if let Some(user) = &mqtt.username {
        let password = mqtt
            .password
            .as_ref()
            .map(|p| p.expose().to_string())
            .unwrap_or_default();
        options.set_credentials(user.clone(), password);
    }
    let offline = contract.status(false, SystemTime::now(), 0);
    options.set_last_will(LastWill::new(
        offline.topic,
        offline.payload.to_string(),
        QoS::AtLeastOnce,
        true,
    ));
    if mqtt.tls.enabled {
        options.set_transport(Transport::Tls(tls_configuration(mqtt)?));
    }
    Ok(options)
}

fn tls_configuration(mqtt: &MqttConfig) -> Result<TlsConfiguration, String> {
    let read = |what: &str, path: &std::path::Path| {
        std::fs::read(path)
            .map_err(|e| format!("cannot read mqtt.tls.{what} {}: {e}", path.display()))
    };
    let ca = match &mqtt.tls.ca_file {
        Some(path) => read("ca_file", path)?,
        None => return Err(
            "mqtt.tls.enabled needs mqtt.tls.ca_file (the CA that signs the broker's certificate)"
                .into(),
        ),
    };
    let client_auth = match (&mqtt.tls.cert_file, &mqtt.tls.key_file) {
        (Some(cert), Some(key)) => Some((read("cert_file", cert)?, read("key_file", key)?)),
        _ => None,
    };
    // rumqttc is built without a default crypto provider; ring is ours.
    let _ = rustls::crypto::ring::default_provider().install_default();
    Ok(TlsConfiguration::Simple {
        ca,
        alpn: None,
        client_auth,
    })
}

/// Runs until shutdown: publishes every report, reconnecting as needed.
pub async fn run(
    agent_id: String,
    mut config: watch::Receiver<Arc<Config>>,
    mut reports: mpsc::Receiver<Report>,
    mut shutdown: Shutdown,
) {
    let started = SystemTime::now();
    let mut devices = std::collections::BTreeSet::new();
    loop {
        let mqtt = config.borrow().mqtt.clone();
        let contract = Contract::new(&agent_id, &mqtt);
        let options = match mqtt_options(&agent_id, &mqtt, &contract) {
            Ok(options) => options,
            Err(e) => {
                tracing::error!(error = %e, "cannot connect to the broker; fix [mqtt] and reload");
                tokio::select! {
                    _ = shutdown.wait() => return,
                    changed = config.changed() => if changed.is_err() { return } else { continue },
                }
            }
        };
        let (client, eventloop) = AsyncClient::new(options, REQUEST_CAPACITY);
        tracing::info!(broker = %format!("{}:{}", mqtt.host, mqtt.port), tls = mqtt.tls.enabled, "connecting to the broker");
        let mut session = Session {
            client,
            eventloop,
            contract,
            started,
            devices: &mut devices,
        };
        match session
            .serve(&mut config, &mut reports, &mut shutdown)
            .await
        {
            Ended::Shutdown => {
                session.goodbye().await;
                return;
            }
            Ended::Reconfigured => {
                tracing::info!("[mqtt] changed; reconnecting with the new settings")
            }
            Ended::ReportsClosed => return,
        }
    }
}

enum Ended {
    Shutdown,
    Reconfigured,
    ReportsClosed,
}

struct Session<'a> {
    client: AsyncClient,
    eventloop: EventLoop,
    contract: Contract,
    started: SystemTime,
    devices: &'a mut std::collections::BTreeSet<String>,
}

impl Session<'_> {
    async fn serve(
        &mut self,
        config: &mut watch::Receiver<Arc<Config>>,
        reports: &mut mpsc::Receiver<Report>,
        shutdown: &mut Shutdown,
    ) -> Ended {
        let mqtt = config.borrow().mqtt.clone();
        let mut backoff = BACKOFF_MIN;
        let mut connected = false;
        loop {
            tokio::select! {
                _ = shutdown.wait() => return Ended::Shutdown,
                changed = config.changed() => {
                    if changed.is_err() { return Ended::Shutdown; }
                    if config.borrow().mqtt != mqtt { return Ended::Reconfigured; }
                }
                report = reports.recv() => match report {
                    Some(report) => self.publish_report(&report),
                    None => return Ended::ReportsClosed,
                },
                event = self.eventloop.poll() => match event {
                    Ok(Event::Incoming(Packet::ConnAck(_))) => {
                        tracing::info!("connected to the broker");
                        connected = true;
                        backoff = BACKOFF_MIN;
                        let birth = self.contract.status(true, self.started, self.devices.len());
                        self.publish(birth);
                    }
                    Ok(_) => {}
                    Err(e) => {
                        if connected {
                            tracing::warn!(error = %e, "lost the broker connection; reconnecting");
                        } else {
                            tracing::warn!(error = %e, retry_in = ?backoff, "cannot reach the broker");
                        }
                        connected = false;
                        let pause = with_jitter(backoff);
                        backoff = (backoff * 2).min(BACKOFF_MAX);
                        tokio::select! {
                            _ = shutdown.wait() => return Ended::Shutdown,
                            _ = tokio::time::sleep(pause) => {}
                        }
                    }
                }
            }
        }
    }

    fn publish_report(&mut self, report: &Report) {
        if let Report::Inventory(device) = report {
            self.devices.insert(device.id.clone());
        }
        let message = self.contract.report(report);
        self.publish(message);
    }

    fn publish(&self, message: Message) {
        let payload = message.payload.to_string();
        if let Err(e) = self.client.try_publish(
            message.topic.clone(),
            QoS::AtLeastOnce,
            message.retain,
            payload,
        ) {
            DROPPED.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(topic = %message.topic, error = %e, "publish queue full; message dropped");
        }
    }

    /// Publishes `offline` and disconnects, waiting a bounded time for both.
    async fn goodbye(&mut self) {
        let offline = self.contract.status(false, self.started, 0);
        self.publish(offline);
        let _ = self.client.try_disconnect();
        let drained = tokio::time::timeout(GOODBYE_TIMEOUT, async {
            loop {
                match self.eventloop.poll().await {
                    Ok(Event::Outgoing(Outgoing::Disconnect)) | Err(_) => break,
                    Ok(_) => {}
                }
            }
        })
        .await;
        if drained.is_err() {
            tracing::warn!("the broker did not take the offline status in time");
        }
    }
}

/// Spreads reconnects of many gateways over time: 50–100 % of the backoff.
fn with_jitter(backoff: Duration) -> Duration {
    let nanos = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    let fraction = 0.5 + f64::from(nanos % 1000) / 2000.0;
    backoff.mul_f64(fraction)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn contract() -> Contract {
        Contract::new("gw-1", &MqttConfig::default())
    }

    fn device() -> Device {
        use crate::classify::{Classification, Kind};
        use crate::inventory::{Inventory, System};
        Device {
            id: "ip-127-0-1-1-161".into(),
            address: "127.0.1.1".parse().expect("ip"),
            port: 161,
            credential: "lan".into(),
            inventory: Inventory {
                classification: Classification {
                    kind: Kind::Modem,
                    vendor: Some("ARRIS".into()),
                    model: None,
                    firmware: None,
                    serial: None,
                    rule: "test".into(),
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
    fn status_topic_and_payload() {
        let online = contract().status(true, SystemTime::UNIX_EPOCH, 3);
        assert_eq!(online.topic, "cpe/v1/gw-1/status");
        assert!(online.retain);
        assert_eq!(online.payload["state"], "online");
        assert_eq!(online.payload["devices"], 3);
        assert_eq!(online.payload["agent_id"], "gw-1");
        assert_eq!(online.payload["schema"], "cpe-agent/status/1");
        let offline = contract().status(false, SystemTime::UNIX_EPOCH, 3);
        assert_eq!(offline.payload["state"], "offline");
    }

    #[test]
    fn inventory_is_retained_and_lost_is_marked() {
        let inventory = contract().report(&Report::Inventory(device()));
        assert_eq!(
            inventory.topic,
            "cpe/v1/gw-1/devices/ip-127-0-1-1-161/inventory"
        );
        assert!(inventory.retain);
        assert_eq!(inventory.payload["state"], "present");
        assert_eq!(inventory.payload["kind"], "modem");
        assert_eq!(inventory.payload["vendor"], "ARRIS");
        assert_eq!(inventory.payload["device_id"], "ip-127-0-1-1-161");
        assert!(inventory.payload.get("sys_uptime").is_none());
        let lost = contract().report(&Report::Lost(device()));
        assert_eq!(lost.payload["state"], "lost");
    }

    #[test]
    fn health_and_events_are_not_retained() {
        let health = contract().report(&Report::Health(HealthSample {
            device_id: "d1".into(),
            reachable: true,
            latency_ms: Some(1.5),
            uptime_s: Some(1.0),
            missed_polls: 0,
            body: crate::health::Body::default(),
        }));
        assert_eq!(health.topic, "cpe/v1/gw-1/devices/d1/health");
        assert!(!health.retain);
        assert_eq!(health.payload["latency_ms"], 1.5);
        let event = contract().report(&Report::Event(DeviceEvent::Lost {
            device_id: "d1".into(),
            missed_polls: 3,
        }));
        assert_eq!(event.topic, "cpe/v1/gw-1/devices/d1/events");
        assert_eq!(event.payload["event"], "lost");
    }

    #[test]
    fn credentials_never_reach_a_payload() {
        let mqtt = MqttConfig {
            username: Some("u".into()),
            password: Some(crate::config::Secret::new("hunter22")),
            ..MqttConfig::default()
        };
        let c = Contract::new("gw-1", &mqtt);
        let all = format!(
            "{:?}",
            [
                c.status(true, SystemTime::now(), 0),
                c.report(&Report::Inventory(device()))
            ]
        );
        assert!(!all.contains("hunter22"));
    }

    #[test]
    fn jitter_stays_within_half_to_full() {
        let d = with_jitter(Duration::from_secs(10));
        assert!(
            d >= Duration::from_secs(5) && d <= Duration::from_secs(10),
            "{d:?}"
        );
    }
}
