//! The LAN's devices: each known one over SNMP with its credential, and
//! (on request) a sweep compared with what the daemon knows.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::{Check, MASK, STEP_TIMEOUT};
use crate::config::{Config, Credential, SnmpVersion, TargetSet};
use crate::discover::{self, Plan, Progress};
use crate::message::{Device, Kind};
use crate::report::status_file::KnownDevice;
use crate::snmp::{Client, Oid, Timing};
use crate::text::clip;

/// The devices to check: the daemon's known devices, else the single hosts
/// in `discovery.targets`.
fn devices_to_check(
    config: &Config,
    known: Vec<KnownDevice>,
    have_status: bool,
) -> Vec<(String, SocketAddr, Option<String>)> {
    if have_status && !known.is_empty() {
        return known
            .into_iter()
            .map(|d| (d.id.clone(), d.socket_addr(), Some(d.credential)))
            .collect();
    }
    config
        .discovery
        .targets
        .iter()
        .filter_map(|t| match &t.set {
            TargetSet::Host(_) => t.addresses().next().map(|ip| {
                let addr = SocketAddr::new(ip.into(), t.port);
                (addr.to_string(), addr, None)
            }),
            _ => None,
        })
        .collect()
}

pub(super) async fn check_devices(
    config: Arc<Config>,
    known: Vec<KnownDevice>,
    have_status: bool,
) -> Vec<Check> {
    let devices = devices_to_check(&config, known, have_status);
    if devices.is_empty() {
        return vec![Check::warn(
            "devices",
            "no known devices: no daemon status file with devices, and no single hosts in discovery.targets",
            "start the daemon and let it sweep, or run: cpe-agent diag --sweep",
        )];
    }
    let credentials: Arc<[Credential]> = config.credentials_or_default().into();
    let timing = Timing {
        timeout: config.discovery.timeout.get().min(STEP_TIMEOUT),
        retries: config.discovery.retries.min(1),
    };
    let mut set = tokio::task::JoinSet::new();
    for (index, (id, addr, credential)) in devices.into_iter().enumerate() {
        let credentials = Arc::clone(&credentials);
        set.spawn(async move {
            (
                index,
                check_device(&id, addr, credential.as_deref(), &credentials, timing).await,
            )
        });
    }
    let mut results = Vec::new();
    while let Some(done) = set.join_next().await {
        if let Ok(result) = done {
            results.push(result);
        }
    }
    results.sort_by_key(|(i, _)| *i);
    results.into_iter().map(|(_, c)| c).collect()
}

fn describe_credential(c: &Credential) -> String {
    match c.version {
        SnmpVersion::V3 => format!(
            "\"{}\" (v3 user {})",
            c.name,
            c.user.as_deref().unwrap_or("-")
        ),
        v => format!(
            "\"{}\" ({} community {MASK})",
            c.name,
            format!("{v:?}").to_lowercase()
        ),
    }
}

async fn snmp_system(
    addr: SocketAddr,
    credential: &Credential,
    timing: Timing,
) -> Result<(Duration, String), String> {
    let mut client = Client::new(addr, credential.clone(), timing);
    let sys_descr: Oid = Oid::from_arcs(&[1, 3, 6, 1, 2, 1, 1, 1, 0]);
    let started = Instant::now();
    let varbinds = client.get(&[sys_descr]).await.map_err(|e| match e {
        crate::snmp::SnmpError::Socket(why) if why.contains("Receive") => {
            "no SNMP agent listens there: port unreachable".to_string()
        }
        e => e.to_string(),
    })?;
    let descr = varbinds
        .first()
        .and_then(|(_, v)| crate::snmp::display_value(v))
        .unwrap_or_else(|| "-".into());
    Ok((started.elapsed(), descr))
}

async fn check_device(
    id: &str,
    addr: SocketAddr,
    credential: Option<&str>,
    credentials: &[Credential],
    timing: Timing,
) -> Check {
    let name = format!("device {id}");
    let known = credential.and_then(|n| credentials.iter().find(|c| c.name == n));
    if let (Some(n), None) = (credential, known) {
        return Check::fail(
            name,
            format!("{addr}: the daemon reached it with credential \"{n}\", which is no longer in the config"),
            "add the credential back, or let the daemon sweep again",
        );
    }
    let first: Vec<&Credential> = match known {
        Some(c) => vec![c],
        None => credentials.iter().collect(),
    };
    let mut errors = Vec::new();
    for c in &first {
        match snmp_system(addr, c, timing).await {
            Ok((latency, descr)) => {
                return Check::pass(
                    name,
                    format!(
                        "{addr} answers to {} in {} ms: {}",
                        describe_credential(c),
                        latency.as_millis(),
                        clip(&descr, 60)
                    ),
                )
            }
            Err(e) => errors.push(format!("{}: {e}", describe_credential(c))),
        }
    }
    // Does it answer to another of the configured credentials?
    if let Some(known) = known {
        for other in credentials.iter().filter(|c| c.name != known.name) {
            if snmp_system(addr, other, timing).await.is_ok() {
                return Check::fail(
                    name,
                    format!(
                        "{addr} does not answer to {} but does to {}",
                        describe_credential(known),
                        describe_credential(other)
                    ),
                    "the device's credentials changed: the daemon will switch at its next sweep (or restart it)",
                );
            }
        }
    }
    Check::fail(
        name,
        format!(
            "{addr} does not answer to {} (a wrong community / v3 user, or the device is off)",
            errors.join("; ")
        ),
        "check the device is on and its SNMP agent enabled, and that the community / v3 user in the config match the device's",
    )
}

// ---------------------------------------------------------------- sweep

pub(super) async fn check_sweep(
    config: Arc<Config>,
    known: Vec<KnownDevice>,
    show_bar: bool,
) -> Vec<Check> {
    let plan = Plan::new(&config).await;
    if plan.address_count == 0 {
        return vec![Check::warn(
            "sweep",
            "nothing to sweep: no LAN subnet and no discovery.targets",
            "set discovery.targets, or check the LAN interface",
        )];
    }
    let (_trigger, mut shutdown) = crate::shutdown::channel();
    let bar = if show_bar {
        let bar = indicatif::ProgressBar::with_draw_target(
            Some(plan.address_count as u64),
            indicatif::ProgressDrawTarget::stderr(),
        );
        if let Ok(style) =
            indicatif::ProgressStyle::with_template("sweep [{bar:30}] {pos}/{len} probed")
        {
            bar.set_style(style.progress_chars("=> "));
        }
        bar.tick();
        bar
    } else {
        indicatif::ProgressBar::hidden()
    };
    let started = Instant::now();
    let step = || bar.inc(1);
    let progress = Progress {
        found: None,
        probed: Some(&step),
    };
    let devices = discover::sweep_once(&plan, progress, &mut shutdown)
        .await
        .devices;
    bar.finish_and_clear();
    let is_known = |d: &Device| {
        known
            .iter()
            .any(|k| k.id == d.id || k.socket_addr() == d.socket_addr())
    };
    let new: Vec<String> = devices
        .iter()
        .filter(|d| !is_known(d))
        .map(|d| {
            format!(
                "{} {}",
                d.socket_addr(),
                d.inventory.classification.kind.as_str()
            )
        })
        .collect();
    let lost: Vec<String> = known
        .iter()
        .filter(|k| {
            !devices
                .iter()
                .any(|d| k.id == d.id || k.socket_addr() == d.socket_addr())
        })
        .map(|k| format!("{} ({})", k.socket_addr(), k.id))
        .collect();
    let unclassified: Vec<String> = devices
        .iter()
        .filter(|d| d.inventory.classification.kind == Kind::Other)
        .map(|d| d.socket_addr().to_string())
        .collect();
    let list = |v: &[String]| {
        if v.is_empty() {
            "none".to_string()
        } else {
            v.join(", ")
        }
    };
    let reason = format!(
        "{} device(s) among {} address(es) in {:.1} s; new: {}; lost: {}; unclassified: {}",
        devices.len(),
        plan.address_count,
        started.elapsed().as_secs_f64(),
        list(&new),
        list(&lost),
        list(&unclassified)
    );
    if !lost.is_empty() {
        vec![Check::warn(
            "sweep",
            reason,
            "check the lost devices are on and connected; the daemon drops them after polling.lost_after missed polls",
        )]
    } else if !unclassified.is_empty() {
        vec![Check::warn(
            "sweep",
            reason,
            "add a rule for the unclassified devices (discovery.rules_file; see cpe-agent discover --explain)",
        )]
    } else {
        vec![Check::pass("sweep", reason)]
    }
}
