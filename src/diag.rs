//! `cpe-agent diag`: the field technician's checks.
//!
//! Each check gives PASS, WARN or FAIL with one line of reason and one line of
//! what to do. The exit code is 0 when all pass, 1 with warnings only, 2 with
//! any failure. This release checks the config file; the broker, device and
//! daemon checks build on the same [`Check`] type.

use std::path::Path;

use serde::Serialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Pass,
    Warn,
    Fail,
}

/// One check's result.
#[derive(Debug, Clone, Serialize)]
pub struct Check {
    pub name: &'static str,
    pub status: Status,
    pub reason: String,
    pub action: String,
}

/// Runs the checks, prints them, and returns the exit code.
pub fn run(config_path: &Path, json: bool) -> i32 {
    let checks = vec![check_config(config_path)];
    let worst = checks
        .iter()
        .map(|c| c.status)
        .max()
        .unwrap_or(Status::Pass);
    if json {
        let out = serde_json::json!({ "checks": checks, "status": worst });
        println!("{}", serde_json::to_string_pretty(&out).unwrap_or_default());
    } else {
        print!("{}", render(&checks));
    }
    exit_code(worst)
}

fn exit_code(worst: Status) -> i32 {
    match worst {
        Status::Pass => 0,
        Status::Warn => 1,
        Status::Fail => 2,
    }
}

fn check_config(path: &Path) -> Check {
    match crate::config::load(path) {
        Ok(_) => Check {
            name: "config",
            status: Status::Pass,
            reason: format!("{} is valid", path.display()),
            action: "none".into(),
        },
        Err(e) => Check {
            name: "config",
            status: Status::Fail,
            reason: e.to_string(),
            action: format!(
                "fix the file, then run: cpe-agent config check {}",
                path.display()
            ),
        },
    }
}

fn render(checks: &[Check]) -> String {
    let width = checks.iter().map(|c| c.name.len()).max().unwrap_or(0);
    let mut out = String::new();
    for c in checks {
        let status = match c.status {
            Status::Pass => "PASS",
            Status::Warn => "WARN",
            Status::Fail => "FAIL",
        };
        out.push_str(&format!("{status}  {:<width$}  {}\n", c.name, c.reason));
        if c.status != Status::Pass {
            out.push_str(&format!("      {:<width$}  -> {}\n", "", c.action));
        }
    }
    let count = |s| checks.iter().filter(|c| c.status == s).count();
    out.push_str(&format!(
        "{} passed, {} warnings, {} failed\n",
        count(Status::Pass),
        count(Status::Warn),
        count(Status::Fail)
    ));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_codes_follow_the_worst_result() {
        assert_eq!(exit_code(Status::Pass), 0);
        assert_eq!(exit_code(Status::Warn), 1);
        assert_eq!(exit_code(Status::Fail), 2);
    }

    #[test]
    fn a_missing_config_fails_with_what_to_do() {
        let c = check_config(Path::new("/nonexistent/agent.toml"));
        assert_eq!(c.status, Status::Fail);
        assert!(c.action.contains("cpe-agent config check"));
        assert!(render(&[c]).contains("0 passed, 0 warnings, 1 failed"));
    }
}
