//! `cpe-agent diag`: the field technician's checks.
//!
//! Each check gives PASS, WARN or FAIL with one line of reason and one line of
//! what to do. The exit code is 0 when all pass, 1 with warnings only, 2 with
//! any failure. The checks, in order: the config file, the system clock, the
//! LAN interfaces and the default route, the broker (DNS, TCP, TLS, MQTT
//! CONNECT), each known device over SNMP, optionally a sweep of the LAN, and
//! the daemon (running, last report, queue, config, recent errors) from the
//! status file it keeps (see [`crate::report::status_file`]).
//!
//! Nothing here can hang: every network step has its own timeout and the
//! whole run ends by `--timeout`; a check still running then is a FAIL.
//! Secrets (MQTT password, communities, SNMPv3 passphrases) are masked in
//! every line printed.
//!
//! This file is the runner (order, timeouts, masking, exit code); the checks
//! are in `local`, `broker`, `devices` and `daemon`, the output in
//! `render`.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use serde::Serialize;

use crate::discover::lan;
use crate::report::status_file;

mod broker;
mod daemon;
mod devices;
mod local;
mod render;

use broker::check_broker;
pub use broker::not_after;
use daemon::check_daemon;
use devices::{check_devices, check_sweep};
use local::{check_clock, check_config, check_lan, check_route, mask, secrets_of};
pub use render::checks_json;
use render::{render, render_json};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Pass,
    Warn,
    Fail,
}

impl Status {
    fn label(self) -> &'static str {
        match self {
            Status::Pass => "PASS",
            Status::Warn => "WARN",
            Status::Fail => "FAIL",
        }
    }
}

/// One check's result.
#[derive(Debug, Clone, Serialize)]
pub struct Check {
    pub name: String,
    pub status: Status,
    pub reason: String,
    pub action: String,
}

impl Check {
    fn new(name: impl Into<String>, status: Status, reason: impl Into<String>) -> Check {
        Check {
            name: name.into(),
            status,
            reason: reason.into(),
            action: "none".into(),
        }
    }

    fn pass(name: impl Into<String>, reason: impl Into<String>) -> Check {
        Check::new(name, Status::Pass, reason)
    }

    fn warn(
        name: impl Into<String>,
        reason: impl Into<String>,
        action: impl Into<String>,
    ) -> Check {
        Check::new(name, Status::Warn, reason).action(action)
    }

    fn fail(
        name: impl Into<String>,
        reason: impl Into<String>,
        action: impl Into<String>,
    ) -> Check {
        Check::new(name, Status::Fail, reason).action(action)
    }

    fn action(mut self, action: impl Into<String>) -> Check {
        self.action = action.into();
        self
    }
}

/// What `cpe-agent diag` was asked to do.
#[derive(Debug, Clone)]
pub struct Options {
    pub config_path: PathBuf,
    pub json: bool,
    /// The whole run ends by then.
    pub timeout: Duration,
    /// Also sweep the LAN and compare with the daemon's known devices.
    pub sweep: bool,
}

/// The longest any single network step may take.
const STEP_TIMEOUT: Duration = Duration::from_secs(5);
const MASK: &str = "********";

/// Runs the checks, prints them, and returns the exit code.
pub fn run(options: &Options) -> i32 {
    let started = Instant::now();
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("cpe-agent diag: cannot start the async runtime: {e}");
            return 2;
        }
    };
    let (checks, secrets) = runtime.block_on(run_checks(options, started + options.timeout));
    // Blocking helpers (TLS handshakes, systemctl) are bounded by their own timeouts.
    runtime.shutdown_timeout(Duration::from_millis(100));
    let checks = mask(checks, &secrets);
    let worst = worst(&checks);
    if options.json {
        println!("{}", render_json(&checks, started.elapsed()));
    } else {
        print!(
            "{}",
            render(
                &checks,
                started.elapsed(),
                colour_wanted(std::io::stdout().is_terminal())
            )
        );
    }
    exit_code(worst)
}

fn worst(checks: &[Check]) -> Status {
    checks
        .iter()
        .map(|c| c.status)
        .max()
        .unwrap_or(Status::Pass)
}

fn exit_code(worst: Status) -> i32 {
    match worst {
        Status::Pass => 0,
        Status::Warn => 1,
        Status::Fail => 2,
    }
}

/// Colour only on a terminal, and never with NO_COLOR set (https://no-color.org).
fn colour_wanted(terminal: bool) -> bool {
    terminal && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
}

async fn run_checks(options: &Options, deadline: Instant) -> (Vec<Check>, Vec<String>) {
    let mut checks = Vec::new();
    let loaded = check_config(&options.config_path);
    checks.push(loaded.0);
    let config = loaded.1;
    let secrets = config.as_ref().map(secrets_of).unwrap_or_default();
    checks.push(check_clock(
        SystemTime::now(),
        std::env::current_exe()
            .and_then(std::fs::metadata)
            .and_then(|m| m.modified())
            .ok(),
    ));
    let settings = config.clone().unwrap_or_default();
    checks.push(check_lan(&settings.discovery));
    checks.push(check_route(&lan::default_route_interfaces()));
    let status = status_file::read(&settings.storage.state_dir);
    if let Some(config) = &config {
        let config = Arc::new(config.clone());
        let known = status
            .as_ref()
            .map(|s| s.known_devices.clone())
            .unwrap_or_default();
        let (broker, devices, sweep) = tokio::join!(
            bounded(
                "broker",
                deadline,
                check_broker(Arc::clone(&config), deadline)
            ),
            bounded(
                "devices",
                deadline,
                check_devices(Arc::clone(&config), known.clone(), status.is_ok())
            ),
            async {
                if options.sweep {
                    let show_bar = !options.json && std::io::stderr().is_terminal();
                    bounded(
                        "sweep",
                        deadline,
                        check_sweep(Arc::clone(&config), known.clone(), show_bar),
                    )
                    .await
                } else {
                    Vec::new()
                }
            }
        );
        checks.extend(broker);
        checks.extend(devices);
        checks.extend(sweep);
    } else {
        checks.push(Check::fail(
            "broker",
            "not checked: the config file could not be read",
            "fix the config file first",
        ));
    }
    checks.extend(check_daemon(&settings.storage.state_dir, &status, deadline));
    (checks, secrets)
}

/// Runs a group of checks until the deadline; a group still running then is a FAIL.
async fn bounded(
    what: &str,
    deadline: Instant,
    checks: impl std::future::Future<Output = Vec<Check>>,
) -> Vec<Check> {
    match tokio::time::timeout_at(deadline.into(), checks).await {
        Ok(checks) => checks,
        Err(_) => vec![Check::fail(
            what,
            "not finished within --timeout",
            "run again with a longer --timeout to see where it stalls",
        )],
    }
}

/// The earlier of the deadline and `STEP_TIMEOUT` from now, as a duration.
fn step(deadline: Instant) -> Duration {
    deadline
        .saturating_duration_since(Instant::now())
        .min(STEP_TIMEOUT)
}

#[cfg(test)]
mod tests {
    use super::broker::*;
    use super::daemon::*;
    use super::local::{CLOCK_CEILING, CLOCK_FLOOR};
    use super::*;
    use crate::report::status_file::AgentStatus;
    use std::path::Path;
    use std::time::UNIX_EPOCH;

    #[test]
    fn exit_codes_follow_the_worst_result() {
        assert_eq!(exit_code(Status::Pass), 0);
        assert_eq!(exit_code(Status::Warn), 1);
        assert_eq!(exit_code(Status::Fail), 2);
    }

    #[test]
    fn a_missing_config_fails_with_what_to_do() {
        let (c, config) = check_config(Path::new("/nonexistent/agent.toml"));
        assert!(config.is_none());
        assert_eq!(c.status, Status::Fail);
        assert!(c.action.contains("cpe-agent config check"));
        assert!(render(&[c], Duration::ZERO, false).contains("0 passed, 0 warnings, 1 failed"));
    }

    #[test]
    fn the_clock_must_be_plausible() {
        let at = |s: u64| UNIX_EPOCH + Duration::from_secs(s);
        assert_eq!(check_clock(at(1_700_000_000), None).status, Status::Fail);
        assert_eq!(check_clock(at(1_790_000_000), None).status, Status::Pass);
        assert_eq!(
            check_clock(at(1_790_000_000), Some(at(1_800_000_000))).status,
            Status::Fail
        );
        assert_eq!(check_clock(at(5_000_000_000), None).status, Status::Fail);
    }

    #[test]
    fn colour_only_where_wanted() {
        let checks = [
            Check::pass("a", "fine"),
            Check::fail("b", "broken", "fix it"),
        ];
        let plain = render(&checks, Duration::ZERO, false);
        assert!(!plain.contains('\x1b'), "{plain}");
        assert!(plain.contains("FAIL  b  broken\n"), "{plain}");
        assert!(plain.contains("-> fix it"), "{plain}");
        let coloured = render(&checks, Duration::ZERO, true);
        assert!(coloured.contains("\x1b[1;31mFAIL\x1b[0m"), "{coloured}");
        assert!(!colour_wanted(false));
    }

    #[test]
    fn secrets_are_masked() {
        let checks = vec![Check::fail("x", "community s3cret refused", "use s3cret")];
        let masked = mask(checks, &["s3cret".to_string()]);
        assert_eq!(masked[0].reason, "community ******** refused");
        assert_eq!(masked[0].action, "use ********");
    }

    #[test]
    fn der_times_are_read() {
        assert_eq!(der_time(0x17, b"700101000000Z"), Some(0));
        assert_eq!(der_time(0x17, b"250101000000Z"), Some(CLOCK_FLOOR));
        assert_eq!(der_time(0x18, b"21000101000000Z"), Some(CLOCK_CEILING));
        assert_eq!(days_from_civil(2000, 3, 1), 11_017);
    }

    #[test]
    fn status_file_findings() {
        let now = 2_000_000_000;
        let mut status = AgentStatus {
            started_at: now - 3600,
            updated_at: now - 2,
            last_report_at: Some(now - 30),
            config_version: Some("v7".into()),
            config_status: Some("applied".into()),
            ..AgentStatus::default()
        };
        assert!(status_checks(&status, now)
            .iter()
            .all(|c| c.status == Status::Pass));
        status.queue_records = 12;
        status.queue_oldest_age_s = Some(3600);
        status.last_report_at = Some(now - 3600);
        status.push_error("broker unreachable");
        status.config_status = Some("rejected: bad key".into());
        status.updated_at = now - 600;
        let checks = status_checks(&status, now);
        let warned: Vec<&str> = checks
            .iter()
            .filter(|c| c.status == Status::Warn)
            .map(|c| c.name.as_str())
            .collect();
        assert_eq!(
            warned,
            [
                "daemon.status",
                "daemon.report",
                "daemon.queue",
                "daemon.config",
                "daemon.errors"
            ]
        );
    }
}
