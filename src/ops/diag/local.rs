//! The checks that need nothing but the gateway itself: the config file
//! (and the secrets to mask), the system clock, the LAN interfaces and the
//! default route.

use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::{Check, MASK};
use crate::config::{self, Config};
use crate::discover::lan;

/// 2025-01-01T00:00:00Z: no clock showing an earlier time can be right.
pub(super) const CLOCK_FLOOR: u64 = 1_735_689_600;
/// 2100-01-01T00:00:00Z: later than any plausible clock.
pub(super) const CLOCK_CEILING: u64 = 4_102_444_800;

pub(super) fn check_config(path: &Path) -> (Check, Option<Config>) {
    match crate::discover::load_config(path, None) {
        Ok(config) => (
            Check::pass("config", format!("{} is valid", path.display())),
            Some(config),
        ),
        Err(e) => (
            Check::fail(
                "config",
                e.to_string(),
                format!(
                    "fix the file, then run: cpe-agent config check {}",
                    path.display()
                ),
            ),
            None,
        ),
    }
}

/// Every secret in the config, to be masked wherever it might appear.
pub(super) fn secrets_of(config: &Config) -> Vec<String> {
    let mut secrets: Vec<String> = config
        .mqtt
        .password
        .iter()
        .map(|s| s.expose().to_string())
        .collect();
    for c in &config.credentials {
        for s in [&c.community, &c.auth_password, &c.priv_password]
            .into_iter()
            .flatten()
        {
            secrets.push(s.expose().to_string());
        }
    }
    secrets.retain(|s| !s.is_empty());
    // Longest first, so that a secret containing another is masked whole.
    secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
    secrets
}

pub(super) fn mask(mut checks: Vec<Check>, secrets: &[String]) -> Vec<Check> {
    for check in &mut checks {
        for secret in secrets {
            check.reason = check.reason.replace(secret.as_str(), MASK);
            check.action = check.action.replace(secret.as_str(), MASK);
        }
    }
    checks
}

// ---------------------------------------------------------------- clock

pub(super) fn check_clock(now: SystemTime, binary_built: Option<SystemTime>) -> Check {
    let now_s = now
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let shown = rfc3339(now_s);
    let action = "set the clock (check NTP: timedatectl status, or ntpd/chrony); TLS to the broker fails with a wrong clock";
    if now_s < CLOCK_FLOOR {
        return Check::fail(
            "clock",
            format!("the clock says {shown}, before 2025: it is wrong"),
            action,
        );
    }
    if let Some(built) = binary_built
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map(|d| d.as_secs())
    {
        // A day's slack for time zones and clock skew of the build machine.
        if now_s + 86_400 < built {
            return Check::fail(
                "clock",
                format!(
                    "the clock says {shown}, before this binary was installed ({})",
                    rfc3339(built)
                ),
                action,
            );
        }
    }
    if now_s > CLOCK_CEILING {
        return Check::fail(
            "clock",
            format!("the clock says {shown}, absurdly far in the future"),
            action,
        );
    }
    Check::pass("clock", format!("{shown} (plausible)"))
}

pub(super) fn rfc3339(unix_s: u64) -> String {
    humantime::format_rfc3339_seconds(UNIX_EPOCH + Duration::from_secs(unix_s)).to_string()
}

// ---------------------------------------------------------------- LAN and route

pub(super) fn check_lan(settings: &config::DiscoveryConfig) -> Check {
    let wan = lan::default_route_interfaces();
    let interfaces: Vec<String> = lan::ipv4_interfaces()
        .unwrap_or_default()
        .into_iter()
        .map(|ifa| {
            let role = if wan.contains(&ifa.name) {
                " (WAN)"
            } else if settings.exclude_interfaces.contains(&ifa.name) {
                " (excluded)"
            } else {
                ""
            };
            format!("{} {}/{}{role}", ifa.name, ifa.address, ifa.prefix)
        })
        .collect();
    let shown = if interfaces.is_empty() {
        "no IPv4 interface up".to_string()
    } else {
        interfaces.join(", ")
    };
    let targets: Vec<String> = settings.targets.iter().map(ToString::to_string).collect();
    if !settings.lan_subnets {
        return Check::pass(
            "lan",
            format!(
                "discovery.lan_subnets is off; targets: {}; interfaces: {shown}",
                if targets.is_empty() {
                    "none".to_string()
                } else {
                    targets.join(", ")
                }
            ),
        );
    }
    let subnets: Vec<String> = lan::lan_subnets(settings)
        .iter()
        .map(ToString::to_string)
        .collect();
    if subnets.is_empty() && targets.is_empty() {
        return Check::warn(
            "lan",
            format!("no LAN subnet to sweep; interfaces: {shown}"),
            "check that the LAN interface (bridge) is up and has an address, or set discovery.targets",
        );
    }
    Check::pass(
        "lan",
        format!(
            "sweeping {}; interfaces: {shown}",
            subnets
                .into_iter()
                .chain(targets)
                .collect::<Vec<_>>()
                .join(", ")
        ),
    )
}

pub(super) fn check_route(default_interfaces: &[String]) -> Check {
    if default_interfaces.is_empty() {
        Check::fail(
            "route",
            "no default route: the gateway has no way to the provider",
            "check the WAN link (cable, DSL/DOCSIS sync) and that it got an address (DHCP/PPPoE)",
        )
    } else {
        Check::pass(
            "route",
            format!("default route via {}", default_interfaces.join(", ")),
        )
    }
}
