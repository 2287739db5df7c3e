//! The checks as a terminal table (with colour when wanted) or as JSON.

use std::time::{Duration, Instant};

use super::{exit_code, mask, run_checks, worst, Check, Options, Status};

/// The checks as the JSON `diag --json` prints, for the remote `diag`
/// command: run inside the daemon, secrets masked the same way.
pub async fn checks_json(options: &Options) -> serde_json::Value {
    let started = Instant::now();
    let (checks, secrets) = run_checks(options, started + options.timeout).await;
    let checks = mask(checks, &secrets);
    json_value(&checks, started.elapsed())
}

pub(super) fn render_json(checks: &[Check], elapsed: Duration) -> String {
    serde_json::to_string_pretty(&json_value(checks, elapsed)).unwrap_or_default()
}

fn json_value(checks: &[Check], elapsed: Duration) -> serde_json::Value {
    let count = |s| checks.iter().filter(|c| c.status == s).count();
    serde_json::json!({
        "status": worst(checks),
        "exit_code": exit_code(worst(checks)),
        "summary": { "pass": count(Status::Pass), "warn": count(Status::Warn), "fail": count(Status::Fail) },
        "elapsed_ms": elapsed.as_millis() as u64,
        "checks": checks,
    })
}

pub(super) fn render(checks: &[Check], elapsed: Duration, colour: bool) -> String {
    let width = checks
        .iter()
        .map(|c| c.name.chars().count())
        .max()
        .unwrap_or(0);
    let paint = |status: Status, text: &str| -> String {
        if !colour {
            return text.to_string();
        }
        let code = match status {
            Status::Pass => "32",
            Status::Warn => "33",
            Status::Fail => "31",
        };
        format!("\x1b[1;{code}m{text}\x1b[0m")
    };
    let mut out = String::new();
    for c in checks {
        out.push_str(&format!(
            "{}  {:<width$}  {}\n",
            paint(c.status, c.status.label()),
            c.name,
            c.reason
        ));
        if c.status != Status::Pass {
            out.push_str(&format!("      {:<width$}  -> {}\n", "", c.action));
        }
    }
    let count = |s| checks.iter().filter(|c| c.status == s).count();
    let summary = format!(
        "{} passed, {} warnings, {} failed in {:.1} s",
        count(Status::Pass),
        count(Status::Warn),
        count(Status::Fail),
        elapsed.as_secs_f64()
    );
    out.push_str(&paint(worst(checks), &summary));
    out.push('\n');
    out
}
