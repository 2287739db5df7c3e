//! The running daemon as its status file shows it: alive, reporting,
//! queue, config and recent errors.

use std::path::Path;
use std::time::{Duration, Instant};

use super::local::rfc3339;
use super::{step, Check};
use crate::report::status_file::{self, AgentStatus};
use crate::text::clip;

/// A status file older than this means the daemon stopped updating it.
const STATUS_STALE_S: u64 = 120;
/// No acknowledged report for this long is a warning.
const REPORT_STALE_S: u64 = 15 * 60;
/// Records queued for longer than this are not getting through.
const QUEUE_STALE_S: u64 = 10 * 60;

/// Whether the daemon runs: systemd when it manages this system, else the pid file.
fn daemon_running(state_dir: &Path, deadline: Instant) -> Result<String, String> {
    if Path::new("/run/systemd/system").is_dir() {
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let out = std::process::Command::new("systemctl")
                .args(["is-active", "cpe-agent"])
                .stdin(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .output();
            let _ = tx.send(out);
        });
        if let Ok(Ok(out)) = rx.recv_timeout(step(deadline).max(Duration::from_millis(100))) {
            if String::from_utf8_lossy(&out.stdout).trim() == "active" {
                return Ok("running (systemctl is-active cpe-agent: active)".into());
            }
        }
    }
    let pid_path = status_file::pid_path(state_dir);
    match status_file::read_pid_file(state_dir) {
        Some(pid) if process_alive(pid) => Ok(format!("running (pid {pid})")),
        Some(pid) => Err(format!(
            "not running (stale pid file {} names pid {pid})",
            pid_path.display()
        )),
        None => Err(format!(
            "not running (not active in systemd, no pid in {})",
            pid_path.display()
        )),
    }
}

fn process_alive(pid: u32) -> bool {
    let Ok(pid) = i32::try_from(pid) else {
        return false;
    };
    match nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None) {
        Ok(()) => true,
        Err(e) => e == nix::errno::Errno::EPERM,
    }
}

fn age(seconds: u64) -> String {
    humantime::format_duration(Duration::from_secs(seconds)).to_string()
}

pub(super) fn check_daemon(
    state_dir: &Path,
    status: &Result<AgentStatus, String>,
    deadline: Instant,
) -> Vec<Check> {
    let mut checks = vec![match daemon_running(state_dir, deadline) {
        Ok(reason) => Check::pass("daemon", reason),
        Err(reason) => Check::fail(
            "daemon",
            reason,
            "start it (systemctl start cpe-agent, or /etc/init.d/cpe-agent start) and read its log",
        ),
    }];
    let status = match status {
        Ok(status) => status,
        Err(e) => {
            checks.push(Check::warn(
                "daemon.status",
                format!("no status from the daemon: {e}"),
                "start the daemon; it writes this file every few seconds",
            ));
            return checks;
        }
    };
    checks.extend(status_checks(status, status_file::unix_now()));
    checks
}

pub(super) fn status_checks(status: &AgentStatus, now: u64) -> Vec<Check> {
    let mut checks = Vec::new();
    let stale = now.saturating_sub(status.updated_at);
    if stale > STATUS_STALE_S {
        checks.push(Check::warn(
            "daemon.status",
            format!(
                "the status file was last written {} ago: the daemon is stopped or stuck",
                age(stale)
            ),
            "restart the daemon and read its log",
        ));
    }
    checks.push(match status.last_report_at {
        Some(at) if now.saturating_sub(at) <= REPORT_STALE_S => Check::pass(
            "daemon.report",
            format!(
                "last report acknowledged {} ago ({})",
                age(now.saturating_sub(at)),
                rfc3339(at)
            ),
        ),
        Some(at) => Check::warn(
            "daemon.report",
            format!(
                "last report acknowledged {} ago ({})",
                age(now.saturating_sub(at)),
                rfc3339(at)
            ),
            "reports are not getting through: see the broker checks above",
        ),
        None => Check::warn(
            "daemon.report",
            format!(
                "no report acknowledged since the daemon started {} ago",
                age(now.saturating_sub(status.started_at))
            ),
            "see the broker checks above",
        ),
    });
    let oldest = status.queue_oldest_age_s.unwrap_or(0);
    checks.push(if status.queue_records == 0 {
        Check::pass("daemon.queue", "empty")
    } else if oldest > QUEUE_STALE_S {
        Check::warn(
            "daemon.queue",
            format!(
                "{} record(s) queued, the oldest for {}",
                status.queue_records,
                age(oldest)
            ),
            "reports are not getting through: see the broker checks above",
        )
    } else {
        Check::pass(
            "daemon.queue",
            format!(
                "{} record(s) queued, the oldest for {}",
                status.queue_records,
                age(oldest)
            ),
        )
    });
    let version = status.config_version.as_deref().unwrap_or("-");
    checks.push(match status.config_status.as_deref() {
        None | Some("applied") | Some("") => {
            Check::pass("daemon.config", format!("config version {version} applied"))
        }
        Some(other) => Check::warn(
            "daemon.config",
            format!("config version {version}: {other}"),
            "fix the config file (cpe-agent config check), then reload: systemctl reload cpe-agent",
        ),
    });
    checks.push(match status.recent_errors.last() {
        None => Check::pass("daemon.errors", "no recent errors"),
        Some(last) => Check::warn(
            "daemon.errors",
            format!(
                "{} recent error(s); the last: {}",
                status.recent_errors.len(),
                clip(last, 120)
            ),
            "read the daemon's log (journalctl -u cpe-agent, or logread)",
        ),
    });
    checks
}
