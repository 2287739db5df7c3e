//! What provisioning tells the provider: acknowledgements of pushes, the
//! retained provisioning state, and results of remote commands.
//!
//! Produced by [`crate::provision`], carried by the report queue like every
//! other message.

use serde::Serialize;
use serde_json::Value as Json;

/// The largest push or command message the agent takes: a larger one is
/// refused `too_large` before it is parsed, `cpe-agent config sign` refuses
/// to make one, and the birth status says it (`max_push_bytes`).
pub const MAX_PUSH_BYTES: usize = 256 * 1024;

/// Where a push stands, in its acknowledgements.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AckStatus {
    Received,
    Applying,
    Applied,
    Rejected,
    RolledBack,
    DryRun,
}

impl AckStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            AckStatus::Received => "received",
            AckStatus::Applying => "applying",
            AckStatus::Applied => "applied",
            AckStatus::Rejected => "rejected",
            AckStatus::RolledBack => "rolled_back",
            AckStatus::DryRun => "dry_run",
        }
    }
}

/// One acknowledgement on `{prefix}/config/ack/{version}`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ConfigAck {
    /// None when the message had no readable version.
    pub version: Option<u64>,
    pub status: AckStatus,
    /// A rejection's code (docs/provisioning.md).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub code: Option<String>,
    /// The step that failed, for `rolled_back`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub step: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// What a dry run would change.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub diff: Option<Json>,
}

impl ConfigAck {
    pub(crate) fn new(version: Option<u64>, status: AckStatus) -> ConfigAck {
        ConfigAck {
            version,
            status,
            code: None,
            step: None,
            reason: None,
            diff: None,
        }
    }
}

/// The retained `{prefix}/config/state`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ConfigState {
    /// The applied version (None: only the local file).
    pub version: Option<u64>,
    /// "none", "applying", "applied", "rejected", "rolled_back", "dry_run":
    /// how the last push ended, or that one is under way.
    pub status: String,
    pub last_error: Option<String>,
}

/// How a command ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CommandStatus {
    Ok,
    Failed,
    Rejected,
}

/// The answer on `{prefix}/cmd/{request_id}/result`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CommandResult {
    pub request_id: String,
    pub command: Option<String>,
    pub status: CommandStatus,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub code: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub result: Option<Json>,
}
