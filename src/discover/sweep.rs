//! Discovery: which SNMP devices answer on the LAN, and with which credential.
//!
//! A sweep expands the targets into addresses and probes each one with a GET
//! of the system group, trying the credentials in their configured order. The
//! first credential that gets an answer is remembered with the device so that
//! polls never walk the list again. Probes run concurrently, bounded by
//! `discovery.concurrency`, and each has its own timeout, so one silent or slow
//! address never holds up the rest. Each device that answers has its
//! inventory read and is classified (see [`crate::discover::inventory`]).

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;

use super::classify::Rules;
use super::inventory;
use crate::config::{Config, Credential, DiscoveryConfig, SnmpVersion, TargetSpec};
use crate::message::{Device, System};
use crate::oid;
use crate::shutdown::Shutdown;
use crate::snmp::{display_value, Client, Oid, SnmpError, Timing, Value, WalkOptions};

/// The result of one sweep.
#[derive(Debug, Clone, Default)]
pub struct Sweep {
    pub devices: Vec<Device>,
    pub probed: usize,
    pub elapsed: Duration,
    /// True when a shutdown cut the sweep short.
    pub interrupted: bool,
}

const SYS_DESCR: [u64; 9] = [1, 3, 6, 1, 2, 1, 1, 1, 0];

fn system_oids() -> [Oid; 7] {
    [
        Oid::from_arcs(&SYS_DESCR),
        oid!(1, 3, 6, 1, 2, 1, 1, 2, 0),
        oid!(1, 3, 6, 1, 2, 1, 1, 3, 0),
        oid!(1, 3, 6, 1, 2, 1, 1, 4, 0),
        oid!(1, 3, 6, 1, 2, 1, 1, 5, 0),
        oid!(1, 3, 6, 1, 2, 1, 1, 6, 0),
        oid!(1, 3, 6, 1, 2, 1, 1, 7, 0),
    ]
}

/// The targets with each named host resolved to its (first IPv4) address;
/// a name that does not resolve is logged and left out.
pub async fn resolve(targets: &[TargetSpec]) -> Vec<TargetSpec> {
    let mut out = Vec::with_capacity(targets.len());
    for target in targets {
        let Some(name) = target.host_name() else {
            out.push(target.clone());
            continue;
        };
        match tokio::net::lookup_host((name, target.port)).await {
            Ok(addrs) => {
                let first = addrs.filter_map(|a| match a.ip() {
                    IpAddr::V4(ip) => Some(ip),
                    IpAddr::V6(_) => None,
                });
                out.extend(first.take(1).map(|ip| target.resolved(ip)));
            }
            Err(e) => {
                tracing::warn!(target = %target, error = %e, "cannot resolve discovery target; skipping it")
            }
        }
    }
    out
}

/// Every address the (resolved) targets cover, each once, in order, made
/// as it is asked for: an address an earlier target covers is skipped, so
/// nothing grows with the size of the range.
pub fn addresses(targets: &[TargetSpec]) -> impl Iterator<Item = SocketAddr> + '_ {
    targets.iter().enumerate().flat_map(move |(i, target)| {
        target
            .addresses()
            .filter(move |ip| !targets[..i].iter().any(|t| t.contains(*ip, target.port)))
            .map(move |ip| SocketAddr::new(IpAddr::V4(ip), target.port))
    })
}

/// One sweep, worked out from the config: the targets, the addresses they
/// cover, the credentials and rules to try there, and the timing. The
/// daemon, `cpe-agent discover` and `diag` all sweep through this one plan.
pub struct Plan {
    /// The targets, named hosts resolved.
    pub targets: Vec<TargetSpec>,
    /// How many addresses they cover, each counted once.
    pub address_count: usize,
    credentials: Arc<[Credential]>,
    rules: Arc<Rules>,
    timing: Timing,
    concurrency: usize,
}

impl Plan {
    pub async fn new(config: &Config) -> Plan {
        let targets = resolve(&sweep_targets(&config.discovery)).await;
        let address_count = addresses(&targets).count();
        Plan {
            targets,
            address_count,
            credentials: config.credentials_or_default().into(),
            rules: Arc::new(Rules::for_config(config)),
            timing: Timing {
                timeout: config.discovery.timeout.get(),
                retries: config.discovery.retries,
            },
            concurrency: config.discovery.concurrency.max(1),
        }
    }

    /// The same plan, its classifications keeping every weighed signal's
    /// votes (`discover --explain`).
    pub fn explaining(mut self) -> Plan {
        self.rules = Arc::new(Rules::clone(&self.rules).explaining());
        self
    }

    /// Every address to sweep, each once (see [`addresses`]).
    pub fn addresses(&self) -> impl Iterator<Item = SocketAddr> + '_ {
        addresses(&self.targets)
    }

    /// The targets, comma-separated, for a log line.
    pub fn target_list(&self) -> String {
        let shown: Vec<String> = self.targets.iter().map(ToString::to_string).collect();
        shown.join(",")
    }
}

/// Reads one device afresh as a sweep would (its credential, the config's
/// rules and discovery timing): what a write checks the device against just
/// before it writes. `None` when it does not answer.
pub async fn reprobe(config: &Config, addr: SocketAddr, credential: &str) -> Option<Device> {
    let credentials: Vec<Credential> = config
        .credentials_or_default()
        .into_iter()
        .filter(|c| c.name == credential)
        .collect();
    let timing = Timing {
        timeout: config.discovery.timeout.get(),
        retries: config.discovery.retries,
    };
    probe(addr, &credentials, &Rules::for_config(config), timing).await
}

/// What a sweep tells as it goes, besides its result.
#[derive(Default, Clone, Copy)]
pub struct Progress<'a> {
    /// Each device as soon as it is known, so that one slow device does not
    /// hold back the reports of the others.
    pub found: Option<&'a mpsc::Sender<Vec<Device>>>,
    /// Called as each address's probe ends (a progress bar).
    pub probed: Option<&'a (dyn Fn() + Sync)>,
}

/// Probes every address of the plan; returns the devices that answered, in
/// address order.
pub async fn sweep_once(plan: &Plan, progress: Progress<'_>, shutdown: &mut Shutdown) -> Sweep {
    let started = Instant::now();
    let timing = plan.timing;
    // At most `concurrency` probes exist at once, each started as another
    // ends: memory does not grow with the range.
    let mut pending = plan.addresses();
    let mut probes = JoinSet::new();
    let mut start_next = |probes: &mut JoinSet<Option<Device>>| {
        let Some(addr) = pending.next() else { return };
        let credentials = Arc::clone(&plan.credentials);
        let rules = Arc::clone(&plan.rules);
        probes.spawn(async move { probe(addr, &credentials, &rules, timing).await });
    };
    for _ in 0..plan.concurrency {
        start_next(&mut probes);
    }
    let mut devices = Vec::new();
    let mut interrupted = false;
    let mut probed = 0;
    loop {
        tokio::select! {
            next = probes.join_next() => {
                let Some(next) = next else { break };
                probed += 1;
                start_next(&mut probes);
                if let Some(probed) = progress.probed {
                    probed();
                }
                match next {
                    Ok(Some(device)) => {
                        if let Some(found) = progress.found {
                            if found.send(vec![device.clone()]).await.is_err() {
                                interrupted = true;
                                break;
                            }
                        }
                        devices.push(device);
                    }
                    Ok(None) => {}
                    Err(e) => tracing::error!(error = %e, "a discovery probe failed unexpectedly"),
                }
            },
            _ = shutdown.wait() => {
                probes.abort_all();
                interrupted = true;
                break;
            }
        }
    }
    devices.sort_by_key(|d| (d.address, d.port));
    Sweep {
        devices,
        probed,
        elapsed: started.elapsed(),
        interrupted,
    }
}

/// Tries each credential in order; the first answer wins. The device's
/// inventory is then read with that credential.
pub async fn probe(
    addr: SocketAddr,
    credentials: &[Credential],
    rules: &Rules,
    timing: Timing,
) -> Option<Device> {
    for credential in credentials {
        let mut client = Client::new(addr, credential.clone(), timing);
        match client.get(&system_oids()).await {
            Ok(varbinds) => {
                let (system, sys_uptime) = system_from(addr, &varbinds)?;
                let options = WalkOptions {
                    use_bulk: credential.version != SnmpVersion::V1,
                    ..WalkOptions::default()
                };
                let inventory = inventory::collect(&mut client, system, rules, &options).await;
                return Some(Device {
                    id: inventory::device_id(&inventory, addr),
                    address: addr.ip(),
                    port: addr.port(),
                    credential: credential.name.clone(),
                    claimed_id: None,
                    inventory,
                    sys_uptime,
                });
            }
            Err(SnmpError::Auth(why)) => {
                tracing::debug!(%addr, credential = %credential.name, %why, "credential refused; trying the next");
            }
            Err(e) => {
                tracing::trace!(%addr, credential = %credential.name, error = %e, "no answer");
            }
        }
    }
    None
}

/// The system group from the answer to a GET of its scalars (the probe), and
/// sysUpTime; None when the agent has no system group.
pub fn system_from(addr: SocketAddr, varbinds: &[(Oid, Value)]) -> Option<(System, Option<u64>)> {
    let value = |index: u64| {
        varbinds
            .iter()
            .find(|(oid, _)| oid.arcs().get(7) == Some(&index) && oid.arcs().len() == 9)
            .map(|(_, v)| v)
            .filter(|v| !v.is_exception())
    };
    // An agent that answers but has no system group at all is not a device we can describe.
    if (1..=7).all(|i| value(i).is_none()) {
        tracing::debug!(%addr, "answered without a system group; ignored");
        return None;
    }
    let text = |i| value(i).and_then(display_value);
    let system = System {
        sys_descr: text(1),
        sys_object_id: value(2).and_then(Value::as_oid).map(Oid::to_string),
        sys_contact: text(4),
        sys_name: text(5),
        sys_location: text(6),
        sys_services: value(7).and_then(Value::as_u64),
    };
    Some((system, value(3).and_then(Value::as_u64)))
}

/// The task: sweeps at start, then every `discovery.interval`, and at once
/// when a reload changes `[discovery]` or the credentials. Each sweep's devices
/// go to the poller.
pub async fn run(
    mut config: watch::Receiver<Arc<Config>>,
    sweeps: mpsc::Sender<Vec<Device>>,
    rediscover: Arc<tokio::sync::Notify>,
    mut shutdown: Shutdown,
) {
    loop {
        let settings = config.borrow().clone();
        let plan = Plan::new(&settings).await;
        tracing::info!(targets = %plan.target_list(), addresses = plan.address_count, "discovery sweep started");
        let progress = Progress {
            found: Some(&sweeps),
            probed: None,
        };
        let result = sweep_once(&plan, progress, &mut shutdown).await;
        // The rules and the evidence model are only needed while sweeping:
        // not kept resident while the agent waits and polls.
        drop(plan);
        if result.interrupted {
            break;
        }
        tracing::info!(found = result.devices.len(), probed = result.probed, elapsed = ?result.elapsed, "discovery sweep finished");
        let next = tokio::time::sleep(settings.discovery.interval.get());
        tokio::pin!(next);
        loop {
            tokio::select! {
                _ = shutdown.wait() => return,
                _ = &mut next => break,
                _ = rediscover.notified() => {
                    tracing::info!("rediscovery requested");
                    break;
                }
                changed = config.changed() => {
                    if changed.is_err() { return; }
                    let new = config.borrow().clone();
                    if new.discovery != settings.discovery || new.credentials != settings.credentials {
                        tracing::info!("discovery settings changed; sweeping again now");
                        break;
                    }
                }
            }
        }
    }
    tracing::debug!("discovery stopped");
}

/// The configured targets plus, when `lan_subnets` is on, the gateway's own LAN subnets.
pub fn sweep_targets(settings: &DiscoveryConfig) -> Vec<TargetSpec> {
    let mut targets = settings.targets.clone();
    if settings.lan_subnets {
        targets.extend(super::lan::lan_subnets(settings));
    }
    targets
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn system_group_is_read() {
        let addr: SocketAddr = "127.0.1.7:16100".parse().expect("addr");
        let varbinds = vec![
            (
                Oid::from_arcs(&SYS_DESCR),
                Value::OctetString(b"RouterOS RB750Gr3".to_vec()),
            ),
            (
                oid!(1, 3, 6, 1, 2, 1, 1, 2, 0),
                Value::ObjectId(oid!(1, 3, 6, 1, 4, 1, 14988, 1)),
            ),
            (oid!(1, 3, 6, 1, 2, 1, 1, 3, 0), Value::TimeTicks(4200)),
            (oid!(1, 3, 6, 1, 2, 1, 1, 5, 0), Value::NoSuchInstance),
            (oid!(1, 3, 6, 1, 2, 1, 1, 7, 0), Value::Integer(78)),
        ];
        let (system, uptime) = system_from(addr, &varbinds).expect("device");
        assert_eq!(system.sys_object_id.as_deref(), Some("1.3.6.1.4.1.14988.1"));
        assert_eq!(uptime, Some(4200));
        assert_eq!(system.sys_name, None);
        assert_eq!(system.sys_services, Some(78));
    }

    #[test]
    fn an_agent_without_a_system_group_is_no_device() {
        let addr: SocketAddr = "127.0.1.7:161".parse().expect("addr");
        let varbinds = vec![(Oid::from_arcs(&SYS_DESCR), Value::NoSuchObject)];
        assert_eq!(system_from(addr, &varbinds), None);
    }

    #[tokio::test(flavor = "current_thread")]
    async fn addresses_dedup_in_order() {
        let targets: Vec<TargetSpec> = [
            "127.0.0.1",
            "127.0.0.0/30",
            "127.0.0.2-3",
            "localhost",
            "127.0.0.1:1161",
        ]
        .iter()
        .map(|s| s.parse().expect("spec"))
        .collect();
        let targets = resolve(&targets).await;
        let shown: Vec<String> = addresses(&targets).map(|a| a.to_string()).collect();
        assert_eq!(
            shown,
            [
                "127.0.0.1:161",
                "127.0.0.2:161",
                "127.0.0.3:161",
                "127.0.0.1:1161"
            ]
        );
    }

    /// A /8 is swept address by address: taking a few costs nothing of the
    /// other sixteen million.
    #[test]
    fn a_wide_range_is_expanded_lazily() {
        let targets: Vec<TargetSpec> = ["10.0.0.0/8".parse().expect("spec")].into();
        let mut all = addresses(&targets);
        assert_eq!(
            all.next().map(|a| a.to_string()).as_deref(),
            Some("10.0.0.1:161")
        );
        assert_eq!(
            all.nth(65_534).map(|a| a.to_string()).as_deref(),
            Some("10.1.0.0:161")
        );
    }
}
