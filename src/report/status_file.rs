//! The daemon's status file: what `cpe-agent diag` reads to tell a technician
//! how the running agent is doing, without talking to it.
//!
//! The daemon rewrites `{state_dir}/agent-status.json` every few seconds
//! (atomically: a temp file, then a rename, so a reader never sees half a
//! file), and keeps its pid in `{state_dir}/cpe-agent.pid` while it runs.
//! Times are seconds since the Unix epoch. Secrets never go in here: devices
//! carry the *name* of their credential only.

use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use super::queue::Stats;
use crate::files;
use crate::message::Device;

/// The status file's name inside the state directory.
pub const STATUS_FILE: &str = "agent-status.json";
/// The pid file's name inside the state directory.
pub const PID_FILE: &str = "cpe-agent.pid";
/// How many recent errors the file keeps.
pub const MAX_RECENT_ERRORS: usize = 10;

/// One device the daemon knows (from its last sweep).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KnownDevice {
    pub id: String,
    pub address: std::net::IpAddr,
    pub port: u16,
    /// The name of the credential that answered (never the secret).
    pub credential: String,
    /// The classified kind, e.g. "modem".
    pub kind: String,
}

impl KnownDevice {
    pub fn from_device(device: &Device) -> KnownDevice {
        KnownDevice {
            id: device.id.clone(),
            address: device.address,
            port: device.port,
            credential: device.credential.clone(),
            kind: device.inventory.classification.kind.as_str().to_string(),
        }
    }

    pub fn socket_addr(&self) -> std::net::SocketAddr {
        std::net::SocketAddr::new(self.address, self.port)
    }
}

/// What the daemon says about itself.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct AgentStatus {
    pub pid: u32,
    pub started_at: u64,
    /// When this file was last written (diag warns when it is stale).
    pub updated_at: u64,
    /// The last PUBACK from the broker.
    pub last_report_at: Option<u64>,
    pub queue_records: u64,
    pub queue_oldest_age_s: Option<u64>,
    pub config_version: Option<String>,
    /// "applied", or "rejected: <why>" for a config that was refused.
    pub config_status: Option<String>,
    pub known_devices: Vec<KnownDevice>,
    /// The last [`MAX_RECENT_ERRORS`] errors, oldest first.
    pub recent_errors: Vec<String>,
}

impl AgentStatus {
    /// A fresh status for this process.
    pub fn new() -> AgentStatus {
        let now = unix_now();
        AgentStatus {
            pid: std::process::id(),
            started_at: now,
            updated_at: now,
            ..AgentStatus::default()
        }
    }

    /// Remembers an error, keeping the last [`MAX_RECENT_ERRORS`].
    pub fn push_error(&mut self, error: impl Into<String>) {
        self.recent_errors.push(error.into());
        let excess = self.recent_errors.len().saturating_sub(MAX_RECENT_ERRORS);
        self.recent_errors.drain(..excess);
    }

    /// Replaces the known devices with a sweep's.
    pub fn set_devices(&mut self, devices: &[Device]) {
        self.known_devices = devices.iter().map(KnownDevice::from_device).collect();
    }

    /// Adds or updates one device (on each inventory report).
    pub fn upsert_device(&mut self, device: &Device) {
        let known = KnownDevice::from_device(device);
        match self.known_devices.iter_mut().find(|d| d.id == known.id) {
            Some(slot) => *slot = known,
            None => self.known_devices.push(known),
        }
    }

    /// Forgets a device (when it is reported lost).
    pub fn remove_device(&mut self, id: &str) {
        self.known_devices.retain(|d| d.id != id);
    }

    /// The broker acknowledged a report (PUBACK) just now.
    pub fn note_report_acked(&mut self) {
        self.last_report_at = Some(unix_now());
    }

    /// The queue's depth and the age of its oldest record.
    pub fn note_queue(&mut self, stats: &Stats) {
        self.queue_records = stats.records as u64;
        let now_ms = unix_now().saturating_mul(1000);
        self.queue_oldest_age_s = stats
            .oldest_enqueued_at_ms
            .map(|at| now_ms.saturating_sub(at) / 1000);
    }

    /// The config now in force: its version, and "applied" or "rejected: <why>".
    pub fn note_config(&mut self, version: impl Into<String>, status: impl Into<String>) {
        self.config_version = Some(version.into());
        self.config_status = Some(status.into());
    }
}

/// What other tasks tell the status writer: errors, and a refused reload.
struct Shared {
    errors: std::collections::VecDeque<String>,
    rejected_config: Option<String>,
}

static SHARED: std::sync::Mutex<Shared> = std::sync::Mutex::new(Shared {
    errors: std::collections::VecDeque::new(),
    rejected_config: None,
});

fn shared() -> std::sync::MutexGuard<'static, Shared> {
    SHARED
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Remembers an error from anywhere in the daemon for the next status write.
pub fn record_error(error: impl std::fmt::Display) {
    let mut shared = shared();
    shared.errors.push_back(format!(
        "{} {error}",
        humantime::format_rfc3339_seconds(SystemTime::now())
    ));
    while shared.errors.len() > MAX_RECENT_ERRORS {
        shared.errors.pop_front();
    }
}

/// A reload was refused (`Some(why)`) or a config was applied (`None`).
pub fn record_config_reload(rejected: Option<String>) {
    shared().rejected_config = rejected;
}

impl AgentStatus {
    /// Takes in what [`record_error`] and [`record_config_reload`] noted.
    pub fn merge_recorded(&mut self) {
        let mut shared = shared();
        for error in shared.errors.drain(..) {
            self.push_error(error);
        }
        if let Some(why) = &shared.rejected_config {
            self.config_status = Some(format!("rejected: {why}"));
        }
    }
}

/// Seconds since the Unix epoch, now.
pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

pub fn status_path(state_dir: &Path) -> PathBuf {
    state_dir.join(STATUS_FILE)
}

pub fn pid_path(state_dir: &Path) -> PathBuf {
    state_dir.join(PID_FILE)
}

/// Writes the status atomically (temp file in the same directory, then
/// rename), stamping `updated_at`.
pub fn write(state_dir: &Path, status: &AgentStatus) -> io::Result<()> {
    let mut status = status.clone();
    status.updated_at = unix_now();
    let text = serde_json::to_vec_pretty(&status).map_err(io::Error::other)?;
    write_atomically(&status_path(state_dir), &text)
}

/// Reads the status file; the error says which file and why.
pub fn read(state_dir: &Path) -> Result<AgentStatus, String> {
    let path = status_path(state_dir);
    let text = std::fs::read(&path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    serde_json::from_slice(&text)
        .map_err(|e| format!("{} is not a status file: {e}", path.display()))
}

/// Writes this process's pid to `{state_dir}/cpe-agent.pid`.
pub fn write_pid_file(state_dir: &Path) -> io::Result<()> {
    write_atomically(
        &pid_path(state_dir),
        format!("{}\n", std::process::id()).as_bytes(),
    )
}

/// Removes the pid file (at a clean exit); a missing file is fine.
pub fn remove_pid_file(state_dir: &Path) {
    let _ = std::fs::remove_file(pid_path(state_dir));
}

/// The pid in `{state_dir}/cpe-agent.pid`, if the file holds one.
pub fn read_pid_file(state_dir: &Path) -> Option<u32> {
    std::fs::read_to_string(pid_path(state_dir))
        .ok()?
        .trim()
        .parse()
        .ok()
}

fn write_atomically(path: &Path, contents: &[u8]) -> io::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    files::replace(path, 0o666, |file| file.write_all(contents))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_status_round_trips_and_keeps_ten_errors() {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut status = AgentStatus::new();
        for i in 0..15 {
            status.push_error(format!("error {i}"));
        }
        assert_eq!(status.recent_errors.len(), MAX_RECENT_ERRORS);
        assert_eq!(status.recent_errors[0], "error 5");
        status.note_report_acked();
        assert!(status.last_report_at.is_some());
        status.note_queue(&Stats {
            records: 3,
            bytes: 100,
            oldest_enqueued_at_ms: Some(unix_now().saturating_sub(60) * 1000),
            dropped_health: 0,
            next_seq: 4,
        });
        assert_eq!(status.queue_records, 3);
        assert!(status
            .queue_oldest_age_s
            .is_some_and(|a| (59..=62).contains(&a)));
        status.note_config("local-1", "applied");
        status.known_devices.push(KnownDevice {
            id: "modem-1".into(),
            address: "192.168.1.1".parse().expect("ip"),
            port: 161,
            credential: "lan".into(),
            kind: "modem".into(),
        });
        write(dir.path(), &status).expect("write");
        let back = read(dir.path()).expect("read");
        assert_eq!(back.known_devices, status.known_devices);
        assert_eq!(back.recent_errors, status.recent_errors);
        assert!(back.updated_at >= status.started_at);
        write_pid_file(dir.path()).expect("pid");
        assert_eq!(read_pid_file(dir.path()), Some(std::process::id()));
        remove_pid_file(dir.path());
        assert_eq!(read_pid_file(dir.path()), None);
        record_error("broker unreachable");
        record_config_reload(Some("agent.toml:3:1: bad key".into()));
        status.merge_recorded();
        assert!(status
            .recent_errors
            .last()
            .is_some_and(|e| e.ends_with(" broker unreachable")));
        assert_eq!(
            status.config_status.as_deref(),
            Some("rejected: agent.toml:3:1: bad key")
        );
        record_config_reload(None);
        let e = read(&dir.path().join("missing")).err().unwrap_or_default();
        assert!(e.contains("cannot read"), "{e}");
    }
}
