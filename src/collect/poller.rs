//! Polling: the health of every known device, at each poll interval.
//!
//! The poller owns the set of known devices. Sweeps feed it (discover →
//! collect), and it feeds the reporter (collect → report): inventory when a
//! device is new or changed, a health sample per device per poll, and events
//! (found, lost, rebooted, interface up and down).
//!
//! Each device has its own task, schedule and client, so a slow or dead
//! device costs its own timeouts and never delays another device's polls. A
//! shared semaphore bounds how many devices are being polled at once, and
//! each device has at most one request outstanding. A device is lost after
//! `polling.lost_after` missed polls in a row, and found again when it answers.

use std::collections::BTreeMap;
use std::sync::Arc;

use portable_atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, oneshot, watch, Notify, Semaphore};
use tokio::task::JoinSet;

use super::health::{self, Change, Reading};
use super::identity::{Assigned, Identities, Note};
use super::reading;
use crate::config::Config;
use crate::message::{Body, Device, DeviceEvent, HealthSample, Report, ThresholdChange};
use crate::shutdown::Shutdown;
use crate::snmp::{Client, Timing};

/// What other tasks may ask of the poller (provisioning, remote commands).
#[derive(Debug)]
pub enum Request {
    /// The device with this id, as last discovered.
    Lookup {
        device_id: String,
        reply: oneshot::Sender<Option<Device>>,
    },
    /// Poll one device (or every device) now; answers how many polls were started.
    PollNow {
        device_id: Option<String>,
        reply: oneshot::Sender<Result<usize, String>>,
    },
}

/// A known device: its latest inventory, a way to make it poll now, and
/// when it last answered ([`mono_ms`]; for telling a collision from a move,
/// and for forgetting it).
struct Known {
    updates: watch::Sender<Device>,
    poll_now: Arc<Notify>,
    last_answer: Arc<AtomicU64>,
}

impl Known {
    /// Answered within three poll intervals (and 30 s).
    fn alive(&self, interval: Duration) -> bool {
        let window = (interval * 3).max(Duration::from_secs(30)).as_millis() as u64;
        mono_ms().saturating_sub(self.last_answer.load(Ordering::Relaxed)) <= window
    }
}

/// Milliseconds on a monotonic clock (since the first call): how long a
/// device has been silent must not jump with the wall clock (a gateway
/// whose NTP answers late jumps by years).
fn mono_ms() -> u64 {
    static START: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
    START.get_or_init(Instant::now).elapsed().as_millis() as u64
}

/// Runs until shutdown: merges sweeps into the known set, one task per device.
pub async fn run(
    config: watch::Receiver<Arc<Config>>,
    mut sweeps: mpsc::Receiver<Vec<Device>>,
    reports: mpsc::Sender<Report>,
    mut requests: mpsc::Receiver<Request>,
    mut shutdown: Shutdown,
) {
    let permits = Arc::new(Semaphore::new(config.borrow().discovery.concurrency.max(1)));
    let mut known: BTreeMap<String, Known> = BTreeMap::new();
    let state_dir = config.borrow().storage.state_dir.clone();
    let (mut identities, warnings) =
        Identities::load(&state_dir, config.borrow().discovery.max_devices);
    for warning in warnings {
        tracing::warn!("device identities: {warning}");
    }
    let mut refused_logged = false;
    let mut tasks = JoinSet::new();
    let mut beats = tokio::time::interval(crate::metrics::BEAT_EVERY);
    let hang_at = test_hang_at();
    loop {
        tokio::select! {
            _ = shutdown.wait() => break,
            _ = beats.tick() => {
                if hang_at.is_some_and(|at| Instant::now() >= at) {
                    tracing::warn!("test hook: the poll loop hangs now");
                    std::future::pending::<()>().await;
                }
                crate::metrics::beat(crate::metrics::Loop::Polling);
                let forget_after = config.borrow().polling.forget_after.get();
                forget_silent(&mut known, &mut identities, forget_after, &reports);
                save_if_changed(&mut identities, &state_dir);
            }
            Some(request) = requests.recv() => answer(&known, request),
            sweep = sweeps.recv() => {
                let Some(devices) = sweep else { break };
                let spawner = Spawner { reports: &reports, config: &config, permits: &permits, shutdown: &shutdown };
                for mut device in devices {
                    let interval = config.borrow().polling.interval.get();
                    let claim = device.id.clone();
                    let assigned = identities.assign(&claim, device.socket_addr(), |id| {
                        known.get(id).is_some_and(|k| k.alive(interval))
                    });
                    let Assigned::Id { id, notes } = assigned else {
                        crate::metrics::bump(&crate::metrics::DEVICES_REFUSED);
                        if !refused_logged {
                            refused_logged = true;
                            tracing::error!(device = %claim, address = %device.socket_addr(), max_devices = identities.len(), "more devices than discovery.max_devices: this one (and any more) is not tracked; raise discovery.max_devices if the LAN really holds this many");
                        }
                        continue;
                    };
                    device.claimed_id = (id != claim).then(|| claim.clone());
                    device.id = id;
                    for note in notes {
                        on_identity_note(&mut known, &mut tasks, &spawner, &device, note);
                    }
                    save_if_changed(&mut identities, &state_dir);
                    match known.get(&device.id) {
                        Some(entry) => {
                            entry.last_answer.store(mono_ms(), Ordering::Relaxed);
                            entry.updates.send_if_modified(|current| {
                                let changed = !same_inventory(current, &device);
                                *current = device;
                                changed
                            });
                        }
                        None => {
                            crate::metrics::bump(&crate::metrics::DEVICES_KNOWN);
                            track(&mut known, &mut tasks, &spawner, device);
                        }
                    }
                }
            }
            Some(ended) = tasks.join_next() => {
                if let Err(e) = ended {
                    tracing::error!(error = %e, "a device poller failed unexpectedly");
                }
            }
        }
    }
    while tasks.join_next().await.is_some() {}
    tracing::debug!("poller stopped");
}

/// Saves the identities when they changed; a failure is logged (ids of
/// colliding devices may then differ after a restart).
fn save_if_changed(identities: &mut Identities, state_dir: &std::path::Path) {
    if identities.take_changed() {
        if let Err(e) = identities.save(state_dir) {
            tracing::warn!(error = %e, "cannot save the device identities; ids of colliding devices may differ after a restart");
        }
    }
}

/// Forgets the devices silent for longer than `forget_after`: their pollers
/// stop (their update channel closes), their ids are freed, and a
/// `forgotten` event tells the reporter to clear their retained inventory.
fn forget_silent(
    known: &mut BTreeMap<String, Known>,
    identities: &mut Identities,
    forget_after: Duration,
    reports: &mpsc::Sender<Report>,
) {
    let now = mono_ms();
    let limit = forget_after.as_millis() as u64;
    let silent: Vec<(String, u64)> = known
        .iter()
        .map(|(id, k)| {
            (
                id,
                now.saturating_sub(k.last_answer.load(Ordering::Relaxed)),
            )
        })
        .filter(|(_, silent)| *silent > limit)
        .map(|(id, silent)| (id.clone(), silent))
        .collect();
    for (id, silent_ms) in &silent {
        known.remove(id);
        identities.forget(id);
        crate::metrics::DEVICES_KNOWN.fetch_sub(1, Ordering::Relaxed);
        tracing::info!(device = %id, silent_s = silent_ms / 1000, "forgotten after polling.forget_after without an answer");
        send(
            reports,
            Report::Event(DeviceEvent::Forgotten {
                device_id: id.clone(),
                silent_s: silent_ms / 1000,
            }),
        );
    }
}

/// What a device's poller is started with, besides the device.
struct Spawner<'a> {
    reports: &'a mpsc::Sender<Report>,
    config: &'a watch::Receiver<Arc<Config>>,
    permits: &'a Arc<Semaphore>,
    shutdown: &'a Shutdown,
}

/// Starts tracking a device: its entry and its poller.
fn track(
    known: &mut BTreeMap<String, Known>,
    tasks: &mut JoinSet<()>,
    spawner: &Spawner<'_>,
    device: Device,
) {
    crate::metrics::bump(&crate::metrics::DEVICES_REACHABLE);
    let (updates, device_rx) = watch::channel(device.clone());
    let poll_now = Arc::new(Notify::new());
    let last_answer = Arc::new(AtomicU64::new(mono_ms()));
    known.insert(
        device.id.clone(),
        Known {
            updates,
            poll_now: Arc::clone(&poll_now),
            last_answer: Arc::clone(&last_answer),
        },
    );
    let poller = DevicePoller::new(
        device_rx,
        spawner.config.clone(),
        spawner.reports.clone(),
        Arc::clone(spawner.permits),
        poll_now,
        last_answer,
    );
    tasks.spawn(poller.run(spawner.shutdown.clone()));
}

/// Tells the NOC what the identities found, and retracks a device that
/// lost its contested id under its own.
fn on_identity_note(
    known: &mut BTreeMap<String, Known>,
    tasks: &mut JoinSet<()>,
    spawner: &Spawner<'_>,
    device: &Device,
    note: Note,
) {
    let reports = spawner.reports;
    let address = device.socket_addr().to_string();
    match note {
        Note::Collision {
            claim,
            other,
            other_id,
        } => {
            tracing::warn!(claimed = %claim, address = %address, other = %other, "two devices claim one id (a copied serial or MAC?): each is tracked under its own id now");
            // The device that held the contested id: its stream ends under
            // it (lost, retained) and goes on under its own.
            if let Some(held) = known.remove(&claim) {
                let mut other_device = held.updates.borrow().clone();
                send(reports, Report::Lost(other_device.clone()));
                other_device.claimed_id = Some(claim.clone());
                other_device.id = other_id.clone();
                track(known, tasks, spawner, other_device);
            }
            for (id, at, elsewhere) in [
                (other_id.as_str(), other.to_string(), address.clone()),
                (device.id.as_str(), address.clone(), other.to_string()),
            ] {
                send(
                    reports,
                    Report::Event(DeviceEvent::IdentityCollision {
                        device_id: id.to_string(),
                        address: at,
                        claimed_id: claim.clone(),
                        other_address: elsewhere,
                    }),
                );
            }
        }
        Note::Moved { from } => {
            tracing::info!(device = %device.id, from = %from, to = %address, "device answers at a new address");
            send(
                reports,
                Report::Event(DeviceEvent::AddressChanged {
                    device_id: device.id.clone(),
                    address,
                    previous_address: from.to_string(),
                }),
            );
        }
        Note::Replaced { old_id } => {
            tracing::info!(device = %device.id, old = %old_id, address = %address, "another device answers at this address now");
            if let Some(gone) = known.remove(&old_id) {
                crate::metrics::DEVICES_KNOWN.fetch_sub(1, Ordering::Relaxed);
                send(reports, Report::Lost(gone.updates.borrow().clone()));
            }
        }
        Note::Churn { claimed } => {
            tracing::warn!(device = %device.id, address = %address, claimed = %claimed, "this address keeps changing who it says it is; it is held to its id");
            send(
                reports,
                Report::Event(DeviceEvent::IdentityChurn {
                    device_id: device.id.clone(),
                    address,
                    claimed_id: claimed,
                }),
            );
        }
    }
}

/// The test hook `CPE_AGENT_TEST_HANG_POLLING=SECONDS`: the poll loop hangs
/// that long after start (for the watchdog's test).
pub const HANG_ENV: &str = "CPE_AGENT_TEST_HANG_POLLING";

fn test_hang_at() -> Option<Instant> {
    let seconds: u64 = std::env::var(HANG_ENV).ok()?.parse().ok()?;
    Some(Instant::now() + Duration::from_secs(seconds))
}

fn answer(known: &BTreeMap<String, Known>, request: Request) {
    match request {
        Request::Lookup { device_id, reply } => {
            let _ = reply.send(known.get(&device_id).map(|k| k.updates.borrow().clone()));
        }
        Request::PollNow { device_id, reply } => {
            let asked = match device_id {
                Some(id) => match known.get(&id) {
                    Some(entry) => {
                        entry.poll_now.notify_one();
                        Ok(1)
                    }
                    None => Err(format!("no device with id {id:?} is known to the agent")),
                },
                None => {
                    known.values().for_each(|k| k.poll_now.notify_one());
                    Ok(known.len())
                }
            };
            let _ = reply.send(asked);
        }
    }
}

/// Inventory is republished on change only; uptime is health, not inventory.
fn same_inventory(a: &Device, b: &Device) -> bool {
    a.id == b.id
        && a.address == b.address
        && a.port == b.port
        && a.credential == b.credential
        && a.inventory == b.inventory
}

/// One device's polling loop and state.
struct DevicePoller {
    device: watch::Receiver<Device>,
    config: watch::Receiver<Arc<Config>>,
    reports: mpsc::Sender<Report>,
    permits: Arc<Semaphore>,
    poll_now: Arc<Notify>,
    /// When it last answered ([`mono_ms`]), shared with its [`Known`] entry.
    last_answer: Arc<AtomicU64>,
    client: Option<Client>,
    last: Option<(Instant, Reading)>,
    /// Limits currently crossed, so that each crossing is told once.
    breached: health::Crossed,
    missed: u32,
    lost: bool,
}

impl DevicePoller {
    fn new(
        device: watch::Receiver<Device>,
        config: watch::Receiver<Arc<Config>>,
        reports: mpsc::Sender<Report>,
        permits: Arc<Semaphore>,
        poll_now: Arc<Notify>,
        last_answer: Arc<AtomicU64>,
    ) -> DevicePoller {
        DevicePoller {
            device,
            config,
            reports,
            permits,
            poll_now,
            last_answer,
            client: None,
            last: None,
            breached: health::Crossed::default(),
            missed: 0,
            lost: false,
        }
    }

    async fn run(mut self, mut shutdown: Shutdown) {
        let device = self.device.borrow_and_update().clone();
        send(
            &self.reports,
            Report::Event(DeviceEvent::Found {
                device_id: device.id.clone(),
                address: device.socket_addr().to_string(),
            }),
        );
        send(&self.reports, Report::Inventory(device));
        let mut next = Instant::now();
        loop {
            tokio::select! {
                _ = shutdown.wait() => return,
                _ = tokio::time::sleep_until(next.into()) => {
                    crate::metrics::record_poll_lag(Instant::now().saturating_duration_since(next));
                    let interval = self.config.borrow().polling.interval.get();
                    next = Instant::now() + interval;
                    // A poll never runs into the next one: what is not read by then is missed.
                    tokio::select! {
                        _ = shutdown.wait() => return,
                        _ = self.poll(interval) => {}
                    }
                }
                changed = self.device.changed() => {
                    if changed.is_err() {
                        // No longer tracked (forgotten, or retracked under
                        // another id): out of the counts it was in.
                        let count = if self.lost {
                            &crate::metrics::DEVICES_LOST
                        } else {
                            &crate::metrics::DEVICES_REACHABLE
                        };
                        count.fetch_sub(1, Ordering::Relaxed);
                        return;
                    }
                    let device = self.device.borrow_and_update().clone();
                    tracing::info!(device = %device.id, "inventory changed");
                    self.client = None;
                    send(&self.reports, Report::Inventory(device));
                }
                _ = self.poll_now.notified() => next = Instant::now(),
                changed = self.config.changed() => {
                    if changed.is_err() { return; }
                    // New credentials or timing apply from the next poll.
                    self.client = None;
                    let interval = self.config.borrow().polling.interval.get();
                    next = next.min(Instant::now() + interval);
                }
            }
        }
    }

    fn client(&mut self, device: &Device) -> Option<&mut Client> {
        if self.client.is_none() {
            let config = self.config.borrow().clone();
            let Some(credential) = config
                .credentials_or_default()
                .into_iter()
                .find(|c| c.name == device.credential)
            else {
                tracing::warn!(device = %device.id, credential = %device.credential, "the credential that found this device is no longer configured; waiting for the next sweep");
                return None;
            };
            let timing = Timing {
                timeout: config.polling.timeout.get(),
                retries: config.polling.retries,
            };
            self.client = Some(Client::new(device.socket_addr(), credential, timing));
        }
        self.client.as_mut()
    }

    async fn poll(&mut self, budget: Duration) {
        let device = self.device.borrow().clone();
        let Ok(_permit) = Arc::clone(&self.permits).acquire_owned().await else {
            return;
        };
        let mut options = reading::walk_options(&device.inventory);
        let Some(client) = self.client(&device) else {
            return;
        };
        let reading = tokio::time::timeout(
            budget,
            reading::read(client, &device.inventory, &mut options),
        )
        .await;
        match reading {
            Ok(Ok(reading)) => self.answered(&device, reading),
            Ok(Err(e)) => {
                tracing::debug!(device = %device.id, error = %e, "poll not answered");
                self.missed(&device);
            }
            Err(_) => {
                tracing::warn!(device = %device.id, budget = ?budget, "poll took longer than the poll interval; counted as missed");
                self.client = None;
                self.missed(&device);
            }
        }
        // Between polls the device holds no socket: a thousand idle devices
        // do not cost a thousand descriptors.
        if let Some(client) = self.client.as_mut() {
            client.release_idle();
        }
    }

    fn answered(&mut self, device: &Device, reading: Reading) {
        self.last_answer.store(mono_ms(), Ordering::Relaxed);
        let now = Instant::now();
        if self.lost {
            tracing::info!(device = %device.id, "device answers again");
            crate::metrics::DEVICES_LOST.fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
            crate::metrics::bump(&crate::metrics::DEVICES_REACHABLE);
            send(
                &self.reports,
                Report::Event(DeviceEvent::Found {
                    device_id: device.id.clone(),
                    address: device.socket_addr().to_string(),
                }),
            );
            send(&self.reports, Report::Inventory(device.clone()));
        }
        self.missed = 0;
        self.lost = false;
        let previous = self
            .last
            .as_ref()
            .map(|(at, r)| (now.duration_since(*at), r));
        let elapsed = previous.as_ref().map_or(Duration::ZERO, |(e, _)| *e);
        let (body, changes) = health::evaluate(previous.map(|(_, r)| r), &reading, elapsed);
        for change in changes {
            send(&self.reports, Report::Event(event(&device.id, change)));
        }
        let limits = self.config.borrow().thresholds.clone();
        for change in self.breached.update(health::breaches(&body, &limits)) {
            send(&self.reports, Report::Event(event(&device.id, change)));
        }
        send(
            &self.reports,
            Report::Health(HealthSample {
                device_id: device.id.clone(),
                reachable: true,
                latency_ms: reading
                    .response_time
                    .map(|t| health::round2(t.as_secs_f64() * 1000.0)),
                uptime_s: reading.uptime_ticks.map(|t| t as f64 / 100.0),
                missed_polls: 0,
                body,
            }),
        );
        self.last = Some((now, reading));
    }

    fn missed(&mut self, device: &Device) {
        self.missed += 1;
        let lost_after = self.config.borrow().polling.lost_after;
        if !self.lost && self.missed >= lost_after {
            self.lost = true;
            tracing::warn!(device = %device.id, missed = self.missed, "device lost");
            crate::metrics::bump(&crate::metrics::DEVICES_LOST);
            crate::metrics::DEVICES_REACHABLE.fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
            send(
                &self.reports,
                Report::Event(DeviceEvent::Lost {
                    device_id: device.id.clone(),
                    missed_polls: self.missed,
                }),
            );
            send(&self.reports, Report::Lost(device.clone()));
        }
        send(
            &self.reports,
            Report::Health(HealthSample {
                device_id: device.id.clone(),
                reachable: false,
                latency_ms: None,
                uptime_s: None,
                missed_polls: self.missed,
                body: Body::default(),
            }),
        );
    }
}

fn event(device_id: &str, change: Change) -> DeviceEvent {
    let device_id = device_id.to_string();
    match change {
        Change::Rebooted { uptime_ticks } => DeviceEvent::Rebooted {
            device_id,
            uptime_s: uptime_ticks as f64 / 100.0,
        },
        Change::InterfaceUp { index, name } => DeviceEvent::InterfaceUp {
            device_id,
            if_index: index,
            name,
        },
        Change::InterfaceDown { index, name } => DeviceEvent::InterfaceDown {
            device_id,
            if_index: index,
            name,
        },
        Change::ThresholdCrossed(breach) => DeviceEvent::ThresholdCrossed {
            device_id,
            threshold: ThresholdChange::from(&breach),
        },
        Change::ThresholdCleared(breach) => DeviceEvent::ThresholdCleared {
            device_id,
            threshold: ThresholdChange::from(&breach),
        },
    }
}

/// Hands a report on; when the reporter is far behind, the report is dropped
/// and counted rather than stalling the poll loop.
fn send(reports: &mpsc::Sender<Report>, report: Report) {
    if let Err(mpsc::error::TrySendError::Full(report)) = reports.try_send(report) {
        crate::metrics::bump(&crate::metrics::DROPPED);
        tracing::warn!(kind = report.kind(), "reporter is behind; report dropped");
    }
}
