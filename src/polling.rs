//! Polling: the health of every known device, at each poll interval.
//!
//! The poller owns the set of known devices. Sweeps feed it (discovery →
//! polling), and it feeds the reporter (polling → reporting): new or changed
//! inventory, a health sample per device per poll, and found/lost events.
//! Each device is polled by its own task with its own timeout, so a dead
//! device costs its timeout and nothing else. A device is lost after
//! `polling.lost_after` missed polls in a row, and found again when it answers.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;
use tokio::sync::{mpsc, watch, Semaphore};
use tokio::task::JoinSet;

use crate::config::{Config, Credential};
use crate::discovery::Device;
use crate::oid;
use crate::report::Report;
use crate::shutdown::Shutdown;
use crate::snmp::{Client, Timing};

/// One device's health at one poll.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct HealthSample {
    pub device_id: String,
    pub reachable: bool,
    /// Round-trip time of the poll's request, when it was answered.
    pub latency_ms: Option<f64>,
    /// sysUpTime in hundredths of a second.
    pub sys_uptime: Option<u64>,
    /// Polls missed in a row.
    pub missed_polls: u32,
}

/// A change in a device's presence.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum DeviceEvent {
    Found {
        device_id: String,
        address: String,
    },
    Lost {
        device_id: String,
        missed_polls: u32,
    },
}

struct Known {
    device: Device,
    client: Option<Client>,
    missed: u32,
    lost: bool,
}

/// Runs until shutdown: merges sweeps into the known set and polls it.
pub async fn run(
    mut config: watch::Receiver<Arc<Config>>,
    mut sweeps: mpsc::Receiver<Vec<Device>>,
    reports: mpsc::Sender<Report>,
    mut shutdown: Shutdown,
) {
    let mut known: BTreeMap<String, Known> = BTreeMap::new();
    let mut next_poll = Instant::now();
    loop {
        let interval = config.borrow().polling.interval.get();
        tokio::select! {
            _ = shutdown.wait() => break,
            sweep = sweeps.recv() => match sweep {
                Some(devices) => merge(&mut known, devices, &config.borrow(), &reports),
                None => break,
            },
            _ = tokio::time::sleep_until(next_poll.into()) => {
                let settings = config.borrow().clone();
                poll_all(&mut known, &settings, &reports, &mut shutdown).await;
                next_poll = Instant::now() + interval;
            }
            changed = config.changed() => {
                if changed.is_err() { break; }
                // A new interval takes effect from now, not after the old one ran out.
                let interval = config.borrow().polling.interval.get();
                next_poll = next_poll.min(Instant::now() + interval);
                refresh_credentials(&mut known, &config.borrow());
            }
        }
    }
    tracing::debug!("poller stopped");
}

fn merge(
    known: &mut BTreeMap<String, Known>,
    devices: Vec<Device>,
    config: &Config,
    reports: &mpsc::Sender<Report>,
) {
    for device in devices {
        let changed = match known.get(&device.id) {
            None => {
                send(
                    reports,
                    Report::Event(DeviceEvent::Found {
                        device_id: device.id.clone(),
                        address: device.socket_addr().to_string(),
                    }),
                );
                true
            }
            Some(k) => !same_inventory(&k.device, &device),
        };
        if changed {
            send(reports, Report::Inventory(device.clone()));
        }
        let client = client_for(&device, config);
        let entry = known.entry(device.id.clone()).or_insert(Known {
            device: device.clone(),
            client: None,
            missed: 0,
            lost: false,
        });
        entry.device = device;
        entry.client = client;
    }
}

/// Inventory is republished on change only; uptime is health, not inventory.
fn same_inventory(a: &Device, b: &Device) -> bool {
    Device {
        sys_uptime: None,
        ..a.clone()
    } == Device {
        sys_uptime: None,
        ..b.clone()
    }
}

fn client_for(device: &Device, config: &Config) -> Option<Client> {
    let credential: Credential = config
        .credentials_or_default()
        .into_iter()
        .find(|c| c.name == device.credential)?;
    let timing = Timing {
        timeout: config.polling.timeout.get(),
        retries: config.polling.retries,
    };
    Some(Client::new(device.socket_addr(), credential, timing))
}

/// After a reload, clients are rebuilt with the new credentials and timing.
fn refresh_credentials(known: &mut BTreeMap<String, Known>, config: &Config) {
    for entry in known.values_mut() {
        entry.client = client_for(&entry.device, config);
    }
}

async fn poll_all(
    known: &mut BTreeMap<String, Known>,
    config: &Config,
    reports: &mpsc::Sender<Report>,
    shutdown: &mut Shutdown,
) {
    let permits = Arc::new(Semaphore::new(config.discovery.concurrency.max(1)));
    let mut polls = JoinSet::new();
    for (id, entry) in known.iter_mut() {
        let Some(client) = entry.client.take() else {
            tracing::warn!(device = %id, credential = %entry.device.credential, "the credential that found this device is no longer configured; not polling it");
            continue;
        };
        let permits = Arc::clone(&permits);
        let id = id.clone();
        polls.spawn(async move {
            let _permit = permits.acquire_owned().await;
            poll_one(id, client).await
        });
    }
    loop {
        tokio::select! {
            next = polls.join_next() => match next {
                Some(Ok((id, client, answer))) => record(known, id, client, answer, config, reports),
                Some(Err(e)) => tracing::error!(error = %e, "a poll task failed unexpectedly"),
                None => break,
            },
            _ = shutdown.wait() => {
                polls.abort_all();
                break;
            }
        }
    }
}

type Answer = Option<(Duration, Option<u64>)>;

async fn poll_one(id: String, mut client: Client) -> (String, Client, Answer) {
    let started = Instant::now();
    let answer = match client.get(&[oid!(1, 3, 6, 1, 2, 1, 1, 3, 0)]).await {
        Ok(varbinds) => {
            let uptime = varbinds.first().and_then(|(_, v)| v.as_u64());
            Some((started.elapsed(), uptime))
        }
        Err(e) => {
            tracing::debug!(device = %id, error = %e, "poll not answered");
            None
        }
    };
    (id, client, answer)
}

fn record(
    known: &mut BTreeMap<String, Known>,
    id: String,
    client: Client,
    answer: Answer,
    config: &Config,
    reports: &mpsc::Sender<Report>,
) {
    let Some(entry) = known.get_mut(&id) else {
        return;
    };
    entry.client = Some(client);
    match answer {
        Some((latency, uptime)) => {
            if entry.lost {
                tracing::info!(device = %id, "device answers again");
                send(
                    reports,
                    Report::Event(DeviceEvent::Found {
                        device_id: id.clone(),
                        address: entry.device.socket_addr().to_string(),
                    }),
                );
                send(reports, Report::Inventory(entry.device.clone()));
            }
            entry.missed = 0;
            entry.lost = false;
            send(
                reports,
                Report::Health(HealthSample {
                    device_id: id,
                    reachable: true,
                    latency_ms: Some((latency.as_secs_f64() * 1000.0 * 100.0).round() / 100.0),
                    sys_uptime: uptime,
                    missed_polls: 0,
                }),
            );
        }
        None => {
            entry.missed += 1;
            if !entry.lost && entry.missed >= config.polling.lost_after {
                entry.lost = true;
                tracing::warn!(device = %id, missed = entry.missed, "device lost");
                send(
                    reports,
                    Report::Event(DeviceEvent::Lost {
                        device_id: id.clone(),
                        missed_polls: entry.missed,
                    }),
                );
                send(reports, Report::Lost(entry.device.clone()));
            }
            send(
                reports,
                Report::Health(HealthSample {
                    device_id: id,
                    reachable: false,
                    latency_ms: None,
                    sys_uptime: None,
                    missed_polls: entry.missed,
                }),
            );
        }
    }
}

/// Hands a report on; when the reporter is far behind, the report is dropped
/// and counted rather than stalling the poll loop.
fn send(reports: &mpsc::Sender<Report>, report: Report) {
    if let Err(mpsc::error::TrySendError::Full(report)) = reports.try_send(report) {
        crate::report::DROPPED.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        tracing::warn!(kind = report.kind(), "reporter is behind; report dropped");
    }
}
