//! The provisioning state on disk, in `{state_dir}/provisioning/`.
//!
//! Three small JSON files, each replaced atomically (written to a temporary
//! file, fsynced, renamed over the old one, the directory fsynced), so that a
//! power cut or a kill -9 leaves either the old or the new file, never half:
//!
//! - `state.json`: what is applied (version, the exact bundle bytes, the key
//!   that signed them) and the history of pushes. Writing it with a new
//!   version is the commit point of an apply.
//! - `journal.json`: the push being applied, from the moment it passed
//!   validation: its bytes, the step it reached, and the device values it
//!   found before changing them. After a crash the journal says what to
//!   finish or undo (src/provision/provisioner.rs); it is removed when a push
//!   ends.
//! - `commands.json`: the signed commands already run, so that a captured
//!   command cannot be replayed before it expires.
//!
//! The applied bundle may hold secrets (pushed credentials), so the
//! directory is 0700 and the files 0600.

use std::fs;
use std::io::{self, Write as _};
use std::os::unix::fs::DirBuilderExt as _;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::files;

/// The directory inside the state directory.
pub const DIR: &str = "provisioning";
const STATE_FILE: &str = "state.json";
const JOURNAL_FILE: &str = "journal.json";
const COMMANDS_FILE: &str = "commands.json";
/// History entries kept in `state.json`.
pub const HISTORY_LEN: usize = 50;
/// Command ids remembered (oldest forgotten first; they expire within a day anyway).
pub const COMMANDS_LEN: usize = 1000;

/// The bundle in effect.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Applied {
    pub version: u64,
    pub key_id: String,
    /// The exact signed bundle bytes, base64.
    pub bundle: String,
    /// Unix seconds.
    pub applied_at: u64,
}

/// How one push ended (or where it stands).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HistoryEntry {
    pub version: Option<u64>,
    pub status: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    pub at: u64,
}

/// `state.json`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct State {
    pub applied: Option<Applied>,
    /// The outcome of the last push: "applied", "rejected", "rolled_back"…
    pub status: Option<String>,
    pub last_error: Option<String>,
    /// Newest last.
    pub history: Vec<HistoryEntry>,
}

impl State {
    pub fn applied_version(&self) -> Option<u64> {
        self.applied.as_ref().map(|a| a.version)
    }

    /// Records how a push ended, keeping the history bounded.
    pub fn record(&mut self, entry: HistoryEntry) {
        self.status = Some(entry.status.clone());
        self.last_error = match entry.status.as_str() {
            "applied" | "dry_run" => None,
            _ => entry.reason.clone(),
        };
        self.history.push(entry);
        let excess = self.history.len().saturating_sub(HISTORY_LEN);
        self.history.drain(..excess);
    }
}

/// A device value found before a push changed it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Kept {
    pub device_id: String,
    /// Where the device was, and the credential (by name) that writes to it.
    pub address: std::net::SocketAddr,
    pub credential: String,
    pub oid: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub value: serde_json::Value,
}

/// `journal.json`: the push in progress.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Journal {
    pub version: u64,
    pub key_id: String,
    /// The exact signed bundle bytes, base64.
    pub bundle: String,
    /// The last step reached: "validated", "staged", "applying",
    /// "applied", "verified".
    pub step: String,
    /// Device values before the push, in the order they are set.
    #[serde(default)]
    pub kept: Vec<Kept>,
    /// How many SETs were attempted (in `kept` order): what a rollback restores.
    #[serde(default)]
    pub attempted: u32,
    pub started_at: u64,
}

/// One command already run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RanCommand {
    pub request_id: String,
    /// Unix seconds after which the command is refused anyway.
    pub not_after: u64,
}

/// The provisioning directory of one agent.
#[derive(Debug, Clone)]
pub struct Store {
    dir: PathBuf,
}

impl Store {
    /// The store under `state_dir` (created on first write).
    pub fn new(state_dir: &Path) -> Store {
        Store {
            dir: state_dir.join(DIR),
        }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The state; an absent file is the empty state.
    pub fn state(&self) -> Result<State, String> {
        Ok(self.read(STATE_FILE)?.unwrap_or_default())
    }

    pub fn write_state(&self, state: &State) -> Result<(), String> {
        self.write(STATE_FILE, state)
    }

    pub fn journal(&self) -> Result<Option<Journal>, String> {
        self.read(JOURNAL_FILE)
    }

    pub fn write_journal(&self, journal: &Journal) -> Result<(), String> {
        self.write(JOURNAL_FILE, journal)
    }

    /// Ends the journal: the push is committed or undone.
    pub fn remove_journal(&self) -> Result<(), String> {
        match fs::remove_file(self.dir.join(JOURNAL_FILE)) {
            Ok(()) => files::sync_dir(&self.dir).map_err(|e| self.error("sync", &e)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(self.error("remove the journal in", &e)),
        }
    }

    pub fn commands(&self) -> Result<Vec<RanCommand>, String> {
        Ok(self.read(COMMANDS_FILE)?.unwrap_or_default())
    }

    pub fn write_commands(&self, commands: &[RanCommand]) -> Result<(), String> {
        self.write(COMMANDS_FILE, &commands)
    }

    fn read<T: serde::de::DeserializeOwned>(&self, name: &str) -> Result<Option<T>, String> {
        let path = self.dir.join(name);
        let bytes = match fs::read(&path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(format!("cannot read {}: {e}", path.display())),
        };
        serde_json::from_slice(&bytes).map(Some).map_err(|e| {
            format!(
                "{} is damaged ({e}); move it aside to start the provisioning state afresh",
                path.display()
            )
        })
    }

    fn write<T: Serialize>(&self, name: &str, value: &T) -> Result<(), String> {
        let bytes = serde_json::to_vec_pretty(value).map_err(|e| e.to_string())?;
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&self.dir)
            .map_err(|e| self.error("create", &e))?;
        files::replace(&self.dir.join(name), 0o600, |file| file.write_all(&bytes))
            .and_then(|()| files::sync_dir(&self.dir))
            .map_err(|e| self.error(&format!("write {name} in"), &e))
    }

    fn error(&self, what: &str, e: &io::Error) -> String {
        format!(
            "cannot {what} {}: {e} (storage.state_dir must be writable by the agent)",
            self.dir.display()
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_and_journal_round_trip_and_absent_files_are_empty() {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = Store::new(dir.path());
        assert_eq!(store.state(), Ok(State::default()));
        assert_eq!(store.journal(), Ok(None));
        let mut state = State {
            applied: Some(Applied {
                version: 3,
                key_id: "k".into(),
                bundle: "e30=".into(),
                applied_at: 1,
            }),
            ..State::default()
        };
        state.record(HistoryEntry {
            version: Some(3),
            status: "applied".into(),
            reason: None,
            at: 1,
        });
        store.write_state(&state).expect("write");
        assert_eq!(store.state(), Ok(state));
        let journal = Journal {
            version: 4,
            key_id: "k".into(),
            bundle: "e30=".into(),
            step: "staged".into(),
            kept: vec![],
            attempted: 0,
            started_at: 2,
        };
        store.write_journal(&journal).expect("journal");
        assert_eq!(store.journal(), Ok(Some(journal)));
        store.remove_journal().expect("remove");
        assert_eq!(store.journal(), Ok(None));
        store.remove_journal().expect("removing twice is fine");
        use std::os::unix::fs::PermissionsExt as _;
        let mode = fs::metadata(store.dir().join(STATE_FILE))
            .expect("meta")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    #[test]
    fn history_is_bounded_and_errors_follow_the_last_outcome() {
        let mut state = State::default();
        for i in 0..(HISTORY_LEN as u64 + 5) {
            state.record(HistoryEntry {
                version: Some(i),
                status: "rejected".into(),
                reason: Some(format!("r{i}")),
                at: i,
            });
        }
        assert_eq!(state.history.len(), HISTORY_LEN);
        assert_eq!(state.history[0].version, Some(5));
        assert_eq!(state.last_error.as_deref(), Some("r54"));
        state.record(HistoryEntry {
            version: Some(99),
            status: "applied".into(),
            reason: None,
            at: 99,
        });
        assert_eq!(state.last_error, None);
    }

    #[test]
    fn a_damaged_file_is_named_with_what_to_do() {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = Store::new(dir.path());
        fs::create_dir_all(store.dir()).expect("dir");
        fs::write(store.dir().join(STATE_FILE), b"{half").expect("write");
        let e = store.state().expect_err("damaged");
        assert!(
            e.contains("state.json is damaged") && e.contains("move it aside"),
            "{e}"
        );
    }
}
