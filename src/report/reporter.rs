//! Reporting: every report goes to disk first, then to the broker.
//!
//! Store and forward: a report gets its `seq` and is written to the queue
//! ([`super::queue`]) the moment it arrives, whether the broker is reachable or
//! not. While connected, the oldest unacknowledged records are published with
//! QoS 1, at most [`WINDOW`] at a time, and a record leaves the queue only
//! when the broker's PUBACK for it arrives. Delivery is therefore in seq
//! order, at least once: after a reconnect the oldest unacknowledged record is
//! sent again, so a consumer may see a duplicate (same seq) but never a gap
//! that the agent did not report.
//!
//! rumqttc keeps protocol state (packet ids, keep-alive); [`super::delivery`]
//! keeps the delivery state, pure, and this task drives it. On any
//! connection error the rumqttc client and event loop are dropped and built
//! anew after a backoff (exponential, with jitter): rumqttc's own in-memory
//! retransmission would otherwise race the queue's.
//! Reports keep flowing into the queue while the broker is away.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use tokio::sync::{mpsc, watch};

use super::contract::{
    self, AgentHealth, Contract, DeviceCounts, Message, MqttCounts, QueueHealth, SnmpCounts, Status,
};
use super::delivery::{Delivery, Released};
use super::mqtt::{self, Happening, Session, Will};
use super::queue::{Class, Queue, QueueError, QueueOptions};
use super::status_file::{self, AgentStatus};
use crate::config::{Config, MqttConfig, ProvisioningConfig};
use crate::message::{DeviceEvent, Inbound, LinkState, Report};
use crate::metrics;
use crate::shutdown::Shutdown;

/// Publishes awaiting their PUBACK at once.
const WINDOW: usize = 32;
/// How long a clean shutdown waits for the broker to take the last messages.
const GOODBYE_TIMEOUT: Duration = Duration::from_secs(2);
const BACKOFF_MIN: Duration = Duration::from_secs(1);
const BACKOFF_MAX: Duration = Duration::from_secs(60);
/// rumqttc's request channel: a little more than the window and the status.
const REQUEST_CAPACITY: usize = WINDOW + 16;
/// Housekeeping: the queue's fsync interval and the agent-health timer.
const TICK: Duration = Duration::from_millis(250);
/// How often the status file for `cpe-agent diag` is refreshed.
const STATUS_EVERY: Duration = Duration::from_secs(5);

/// Opens the report queue in the state directory, logging what recovery did.
pub fn open_queue(config: &Config) -> Result<Queue, String> {
    let options = QueueOptions::from_storage(&config.storage);
    let dir = &config.storage.state_dir;
    let (queue, report) = Queue::open(dir, options).map_err(|e| {
        format!("cannot open the report queue in {}: {e} (check storage.state_dir: it must exist or be creatable, and be writable by the agent)", dir.display())
    })?;
    for warning in &report.warnings {
        tracing::warn!("report queue: {warning}");
    }
    if report.truncated_bytes > 0 {
        tracing::warn!(
            cut = report.truncated_bytes,
            kept = report.records,
            "the report queue had a torn or corrupt tail; it was cut and the rest is kept"
        );
    }
    if let Some((first, last)) = report.skipped {
        tracing::warn!(
            first,
            last,
            "the agent stopped without saying where its seqs ended (power cut?); these seqs are skipped, and the birth status says so"
        );
    }
    if report.records > 0 {
        tracing::info!(
            records = report.records,
            bytes = report.bytes,
            "reports queued before the restart will be delivered"
        );
    }
    Ok(queue)
}

/// What the reporter hands to and tells the rest of the agent.
pub struct Links {
    /// Messages arriving on the subscribed topics (pushes, commands).
    pub inbound: mpsc::Sender<Inbound>,
    pub state: watch::Sender<LinkState>,
}

impl Links {
    /// Links nobody listens to: for a reporter without provisioning (benchmarks, tools).
    pub fn unused() -> Links {
        Links {
            inbound: mpsc::channel(1).0,
            state: watch::channel(LinkState::default()).0,
        }
    }
}

/// Runs until shutdown: queues every report, delivers the queue.
pub async fn run(
    agent_id: String,
    config: watch::Receiver<Arc<Config>>,
    reports: mpsc::Receiver<Report>,
    queue: Queue,
    links: Links,
    shutdown: Shutdown,
) {
    let mut reporter = Reporter::new(agent_id, config, queue, links);
    reporter.serve(reports, shutdown).await;
}

/// A live (or connecting) broker session.
struct Link {
    session: Session,
    connected: bool,
    delivery: Delivery,
    /// The broker's Maximum Packet Size (MQTT 5 CONNACK), if it set one.
    broker_max_packet: Option<u32>,
}

struct Reporter {
    agent_id: String,
    config: watch::Receiver<Arc<Config>>,
    mqtt: MqttConfig,
    /// The provisioning settings the subscriptions were made for.
    provisioning: ProvisioningConfig,
    contract: Contract,
    queue: Queue,
    started: SystemTime,
    devices: BTreeSet<String>,
    link: Option<Link>,
    retry_at: Instant,
    backoff: Duration,
    ever_connected: bool,
    queue_failing: bool,
    next_agent_health: Instant,
    /// What `cpe-agent diag` reads from the state directory.
    status: AgentStatus,
    next_status_write: Instant,
    links: Links,
    /// `metrics::FD_EXHAUSTED` as last told to diag.
    fd_exhausted_noted: u64,
}

enum Step {
    Report(Option<Box<Report>>),
    Mqtt(Result<Happening, String>),
    ConfigChanged(bool),
    Tick,
    Shutdown,
}

impl Reporter {
    fn new(
        agent_id: String,
        config: watch::Receiver<Arc<Config>>,
        queue: Queue,
        links: Links,
    ) -> Reporter {
        let mqtt = config.borrow().mqtt.clone();
        let provisioning = config.borrow().provisioning.clone();
        let contract = Contract::new(&agent_id, &mqtt);
        Reporter {
            agent_id,
            config,
            mqtt,
            provisioning,
            contract,
            queue,
            started: SystemTime::now(),
            devices: Default::default(),
            link: None,
            retry_at: Instant::now(),
            backoff: BACKOFF_MIN,
            ever_connected: false,
            queue_failing: false,
            next_agent_health: Instant::now(),
            status: AgentStatus::new(),
            next_status_write: Instant::now(),
            fd_exhausted_noted: 0,
            links,
        }
    }

    async fn serve(&mut self, mut reports: mpsc::Receiver<Report>, mut shutdown: Shutdown) {
        let mut tick = tokio::time::interval(TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            if self.link.is_none() && Instant::now() >= self.retry_at {
                self.connect();
            }
            let step = tokio::select! {
                _ = shutdown.wait() => Step::Shutdown,
                report = reports.recv() => Step::Report(report.map(Box::new)),
                event = poll(&mut self.link) => Step::Mqtt(event),
                changed = self.config.changed() => Step::ConfigChanged(changed.is_ok()),
                _ = tick.tick() => Step::Tick,
            };
            match step {
                Step::Shutdown => break,
                Step::Report(Some(report)) => {
                    self.enqueue(&report);
                    self.pump();
                }
                Step::Report(None) | Step::ConfigChanged(false) => break,
                Step::Mqtt(event) => self.on_mqtt(event),
                Step::ConfigChanged(true) => self.on_config_change(),
                Step::Tick => self.housekeeping(),
            }
        }
        // In-flight work is persisted: whatever the pollers already handed over goes to disk.
        while let Ok(report) = reports.try_recv() {
            self.enqueue(&report);
        }
        self.goodbye().await;
    }

    fn connect(&mut self) {
        let will = self.contract.status(&Status::Will);
        let will = Will {
            topic: will.topic,
            payload: will.payload.to_string().into_bytes(),
        };
        let session = match Session::open(&self.agent_id, &self.mqtt, will, REQUEST_CAPACITY) {
            Ok(session) => session,
            Err(e) => {
                tracing::error!(error = %e, "cannot connect to the broker; fix [mqtt] and reload");
                let settings = self.mqtt.clone();
                self.links.state.send_modify(|state| {
                    state.settings = Some(settings);
                    state.connected = false;
                    state.error = Some(e);
                });
                self.retry_at = Instant::now() + BACKOFF_MAX;
                return;
            }
        };
        tracing::info!(broker = %format!("{}:{}", self.mqtt.host, self.mqtt.port), tls = self.mqtt.tls.enabled, protocol = ?self.mqtt.protocol, "connecting to the broker");
        let settings = self.mqtt.clone();
        self.links.state.send_modify(|state| {
            state.settings = Some(settings);
            state.connected = false;
        });
        self.link = Some(Link {
            session,
            connected: false,
            delivery: Delivery::new(WINDOW),
            broker_max_packet: None,
        });
    }

    fn on_mqtt(&mut self, event: Result<Happening, String>) {
        let Some(link) = self.link.as_mut() else {
            return;
        };
        match event {
            Ok(Happening::Connected { max_packet }) => {
                tracing::info!(broker_max_packet = max_packet, "connected to the broker");
                link.broker_max_packet = max_packet;
                if self.ever_connected {
                    metrics::bump(&metrics::MQTT_RECONNECTS);
                }
                self.ever_connected = true;
                link.connected = true;
                self.backoff = BACKOFF_MIN;
                subscribe(link, &self.contract, &self.config.borrow());
                self.links.state.send_modify(|state| {
                    state.connected = true;
                    state.error = None;
                });
                let birth = self.contract.status(&Status::Online {
                    started: self.started,
                    devices: self.devices.len(),
                    config_version: contract::config_version(&self.config.borrow()),
                    last_seq: self.queue.stats().next_seq.saturating_sub(1),
                    skipped_seq: self.queue.skipped(),
                });
                publish_status(link, &birth);
                self.pump();
            }
            Ok(Happening::PublishSent(pkid)) => link.delivery.packet_id(pkid),
            Ok(Happening::Acked(pkid)) => {
                if let Some(released) = link.delivery.acked(pkid) {
                    metrics::bump(&metrics::MQTT_PUBLISHED);
                    self.status.note_report_acked();
                    if let Released::Record(seq) = released {
                        if let Err(e) = self.queue.ack(seq) {
                            tracing::error!(seq, error = %e, "cannot remove a delivered report from the queue; it may be sent again");
                        }
                    }
                }
                self.pump();
            }
            Ok(Happening::Message { topic, payload }) => {
                let inbound = Inbound { topic, payload };
                if let Err(e) = self.links.inbound.try_send(inbound) {
                    tracing::error!(topic = %e.into_inner().topic, "a pushed message arrived while provisioning is busy with many others; it was not taken (no acknowledgement will follow: push it again)");
                }
            }
            Ok(_) => {}
            Err(e) => {
                let pause = with_jitter(self.backoff);
                let error = e.clone();
                self.links.state.send_modify(|state| {
                    state.connected = false;
                    state.error = Some(error);
                });
                if link.connected {
                    tracing::warn!(error = %e, "lost the broker connection; reconnecting");
                } else {
                    tracing::warn!(error = %e, retry_in = ?pause, "cannot connect to the broker");
                }
                status_file::record_error(format!("broker: {e}"));
                // Start the next session from the queue, not from rumqttc's memory.
                self.link = None;
                self.retry_at = Instant::now() + pause;
                self.backoff = (self.backoff * 2).min(BACKOFF_MAX);
            }
        }
    }

    fn on_config_change(&mut self) {
        let (mqtt, provisioning) = {
            let config = self.config.borrow_and_update();
            (config.mqtt.clone(), config.provisioning.clone())
        };
        let subscriptions_changed = (
            provisioning.enabled,
            &provisioning.groups,
            &provisioning.group_topic,
        ) != (
            self.provisioning.enabled,
            &self.provisioning.groups,
            &self.provisioning.group_topic,
        );
        self.provisioning = provisioning;
        if mqtt != self.mqtt || subscriptions_changed {
            tracing::info!(
                "[mqtt] or the provisioning topics changed; reconnecting with the new settings"
            );
            self.mqtt = mqtt;
            self.contract = Contract::new(&self.agent_id, &self.mqtt);
            self.link = None;
            self.retry_at = Instant::now();
            self.backoff = BACKOFF_MIN;
        }
    }

    fn housekeeping(&mut self) {
        metrics::beat(metrics::Loop::Reporting);
        if let Err(e) = self.queue.flush_due() {
            tracing::error!(error = %e, "cannot sync the report queue");
        }
        if Instant::now() >= self.next_status_write {
            self.write_status();
        }
        if Instant::now() >= self.next_agent_health {
            self.next_agent_health = Instant::now() + self.config.borrow().polling.interval.get();
            self.publish_agent_health();
        }
    }

    /// Refreshes the status file `cpe-agent diag` reads (every few seconds).
    fn write_status(&mut self) {
        self.next_status_write = Instant::now() + STATUS_EVERY;
        // Running out of descriptors is the agent's fault, not the LAN's:
        // diag shows it among the recent errors.
        let exhausted = metrics::get(&metrics::FD_EXHAUSTED);
        if exhausted > self.fd_exhausted_noted {
            self.fd_exhausted_noted = exhausted;
            status_file::record_error(format!(
                "out of file descriptors: {exhausted} socket(s) could not be opened since start, devices went unasked; raise LimitNOFILE or lower discovery.concurrency"
            ));
        }
        let config = self.config.borrow().clone();
        self.status.note_queue(&self.queue.stats());
        self.status
            .note_config(contract::config_version(&config), "applied");
        // After note_config, so that a refused reload shows.
        self.status.merge_recorded();
        if let Err(e) = status_file::write(&config.storage.state_dir, &self.status) {
            tracing::warn!(error = %e, "cannot write the status file for diag");
        }
    }

    /// Writes a report to the queue with its seq; a failing disk is logged once and counted.
    fn enqueue(&mut self, report: &Report) {
        if let Report::Inventory(device) = report {
            self.devices.insert(device.id.clone());
            self.status.upsert_device(device);
        }
        if let Report::Event(DeviceEvent::Forgotten { device_id, .. }) = report {
            self.devices.remove(device_id);
            self.status.remove_device(device_id);
        }
        let class = match report {
            Report::Health(_) => Class::Health,
            // Provisioning answers are never dropped, like events.
            Report::Event(_)
            | Report::ConfigAck(_)
            | Report::ConfigState(_)
            | Report::CommandResult(_) => Class::Event,
            Report::Inventory(_) | Report::Lost(_) => Class::Inventory,
        };
        let contract = &self.contract;
        let (topic, retain) = contract.placement(report);
        let pushed = self.queue.push(class, &topic, retain, |seq| {
            contract.payload_bytes(report, seq)
        });
        self.note_queue_result(pushed.map(|_| ()), report.kind());
    }

    fn publish_agent_health(&mut self) {
        let stats = self.queue.stats();
        let now_ms = unix_ms();
        let health = AgentHealth {
            rss_bytes: metrics::rss_bytes().unwrap_or(0),
            queue: QueueHealth {
                records: stats.records as u64,
                bytes: stats.bytes,
                oldest_age_s: stats
                    .oldest_enqueued_at_ms
                    .map(|t| now_ms.saturating_sub(t) as f64 / 1000.0),
                dropped_health: stats.dropped_health,
            },
            poll_lag_s: metrics::take_poll_lag_s(),
            devices: DeviceCounts {
                known: metrics::get(&metrics::DEVICES_KNOWN),
                reachable: metrics::get(&metrics::DEVICES_REACHABLE),
                lost: metrics::get(&metrics::DEVICES_LOST),
            },
            snmp: SnmpCounts {
                requests: metrics::get(&metrics::SNMP_REQUESTS),
                timeouts: metrics::get(&metrics::SNMP_TIMEOUTS),
                bad_replies: metrics::get(&metrics::BAD_REPLIES),
                fd_exhausted: metrics::get(&metrics::FD_EXHAUSTED),
            },
            mqtt: MqttCounts {
                connected: self.link.as_ref().is_some_and(|l| l.connected),
                reconnects: metrics::get(&metrics::MQTT_RECONNECTS),
                published: metrics::get(&metrics::MQTT_PUBLISHED),
                dropped: metrics::get(&metrics::DROPPED),
                dead_lettered: metrics::get(&metrics::DEAD_LETTERED),
            },
        };
        let contract = &self.contract;
        let topic = contract.agent_health_topic();
        let pushed = self.queue.push(Class::AgentHealth, &topic, false, |seq| {
            contract
                .agent_health(&health, seq)
                .payload
                .to_string()
                .into_bytes()
        });
        self.note_queue_result(pushed.map(|_| ()), "agent-health");
        self.pump();
    }

    fn note_queue_result(&mut self, result: Result<(), QueueError>, kind: &str) {
        match result {
            Ok(()) if self.queue_failing => {
                self.queue_failing = false;
                tracing::info!("the report queue accepts reports again");
            }
            Ok(()) => {}
            Err(e) => {
                metrics::bump(&metrics::DROPPED);
                if !self.queue_failing {
                    self.queue_failing = true;
                    tracing::error!(error = %e, kind, "cannot queue reports; already queued ones are kept, new ones are dropped until this is fixed");
                }
            }
        }
    }

    /// Hands the oldest unsent records to rumqttc, up to the window.
    fn pump(&mut self) {
        let Some(link) = self.link.as_mut().filter(|l| l.connected) else {
            return;
        };
        let room = link.delivery.room();
        if room == 0 {
            return;
        }
        let records = match self.queue.peek(link.delivery.resume_after(), room) {
            Ok(records) => records,
            Err(e) => {
                tracing::error!(error = %e, "cannot read the report queue");
                return;
            }
        };
        for record in records {
            let limit = payload_limit(
                self.contract.max_message_bytes(),
                link.broker_max_packet,
                &record.topic,
            );
            let payload = if record.payload.len() <= limit {
                record.payload
            } else if let Some(smaller) = contract::refit(&record.payload, limit) {
                // Queued under a larger limit (an older agent, a broker
                // that takes less): cut to fit now.
                smaller
            } else {
                dead_letter(
                    &self.config.borrow().storage.state_dir,
                    &record.topic,
                    record.seq,
                    &record.payload,
                    limit,
                );
                if let Err(e) = self.queue.ack(record.seq) {
                    tracing::error!(error = %e, seq = record.seq, "cannot remove a set-aside record from the queue");
                }
                continue;
            };
            let forgotten = self.contract.forgotten_device(&record.topic, &payload);
            let handed = link
                .session
                .try_publish(&record.topic, record.retain, payload);
            if handed.is_err() {
                break;
            }
            link.delivery.record_handed(record.seq);
            // A forgotten device's retained inventory is cleared right after
            // the event (so after every earlier record about it): an empty
            // retained message, outside the seq stream like status.
            if let Some(device_id) = forgotten {
                let topic = self.contract.inventory_topic(&device_id);
                if link.session.try_publish(&topic, true, Vec::new()).is_ok() {
                    link.delivery.status_handed();
                }
            }
        }
    }

    /// Clean shutdown: persist, say offline, let the broker take what is in flight.
    async fn goodbye(&mut self) {
        if let Err(e) = self.queue.sync() {
            tracing::error!(error = %e, "cannot sync the report queue at shutdown");
        }
        let last_seq = self.queue.stats().next_seq.saturating_sub(1);
        let Some(mut link) = self.link.take().filter(|l| l.connected) else {
            return;
        };
        publish_status(
            &mut link,
            &self.contract.status(&Status::Offline { last_seq }),
        );
        link.session.try_disconnect();
        let drained = tokio::time::timeout(GOODBYE_TIMEOUT, async {
            loop {
                match link.session.next().await {
                    Ok(Happening::DisconnectSent) | Err(_) => break,
                    Ok(Happening::PublishSent(pkid)) => link.delivery.packet_id(pkid),
                    Ok(Happening::Acked(pkid)) => {
                        if let Some(Released::Record(seq)) = link.delivery.acked(pkid) {
                            let _ = self.queue.ack(seq);
                        }
                    }
                    Ok(_) => {}
                }
            }
        })
        .await;
        if drained.is_err() {
            tracing::warn!("the broker did not take the offline status in time");
        }
        let _ = self.queue.sync();
    }
}

/// The next event of the link, or never when there is none.
async fn poll(link: &mut Option<Link>) -> Result<Happening, String> {
    match link {
        Some(link) => link.session.next().await,
        None => std::future::pending().await,
    }
}

/// Hands a status message (outside the stream) to the MQTT client.
fn publish_status(link: &mut Link, message: &Message) {
    let payload = message.payload.to_string().into_bytes();
    match link
        .session
        .try_publish(&message.topic, message.retain, payload)
    {
        Ok(()) => link.delivery.status_handed(),
        Err(e) => {
            tracing::warn!(topic = %message.topic, error = %e, "could not hand a status message to the MQTT client")
        }
    }
}

/// Subscribes to the provider's pushes and commands (each connect: the
/// session is clean), when provisioning is on.
fn subscribe(link: &Link, contract: &Contract, config: &Config) {
    if !config.provisioning.enabled {
        return;
    }
    let groups = config
        .provisioning
        .groups
        .iter()
        .map(|g| config.provisioning.group_topic.replace("{group}", g));
    // The agent's own retained config state first: the broker sends it
    // before any retained push, so the version floor is known before a
    // push is taken, even with a wiped state directory.
    let filters = [
        contract.config_state_topic(),
        contract.push_topic(),
        contract.command_filter(),
    ]
    .into_iter()
    .chain(groups);
    for filter in filters {
        if let Err(e) = link.session.try_subscribe(&filter) {
            tracing::error!(topic = %filter, error = %e, "cannot subscribe; pushes on this topic will not arrive until the next connection");
        }
    }
}

/// The largest payload that can go out on `topic`: the configured maximum,
/// and what fits in the packet the broker (MQTT 5 CONNACK) and the client
/// take with the topic and the headers.
fn payload_limit(max_message: usize, broker_max_packet: Option<u32>, topic: &str) -> usize {
    /// Fixed header, topic length, packet id and MQTT 5 properties.
    const HEADERS: usize = 32;
    let packet = broker_max_packet.map_or(mqtt::MAX_PACKET, |b| (b as usize).min(mqtt::MAX_PACKET));
    max_message.min(packet.saturating_sub(topic.len() + HEADERS))
}

/// Dead letters kept in `<state_dir>/dead-letter/` (the oldest go first).
const DEAD_LETTERS_KEPT: usize = 4;

/// Sets aside a record that cannot be published at all (too large even cut
/// to its bare envelope, or not a JSON object): kept for a support engineer
/// in `<state_dir>/dead-letter/<seq>.json`, counted, logged, and never again
/// in the way of the stream.
fn dead_letter(state_dir: &std::path::Path, topic: &str, seq: u64, payload: &[u8], limit: usize) {
    metrics::bump(&metrics::DEAD_LETTERED);
    let dir = state_dir.join("dead-letter");
    let kept = std::fs::create_dir_all(&dir).and_then(|()| {
        let mut old: Vec<_> = std::fs::read_dir(&dir)?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "json"))
            .collect();
        old.sort();
        while old.len() >= DEAD_LETTERS_KEPT {
            std::fs::remove_file(old.remove(0))?;
        }
        std::fs::write(dir.join(format!("{seq:020}.json")), payload)
    });
    tracing::error!(
        seq,
        topic,
        bytes = payload.len(),
        limit,
        kept = kept.is_ok(),
        dir = %dir.display(),
        "a report cannot be published at any size the broker takes; it is set aside (dead letter) and the stream goes on"
    );
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

fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jitter_stays_within_half_to_full() {
        let d = with_jitter(Duration::from_secs(10));
        assert!(
            d >= Duration::from_secs(5) && d <= Duration::from_secs(10),
            "{d:?}"
        );
    }
}
