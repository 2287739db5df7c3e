//! Shared by the bundle targets: a fixed test key, the agent's trust, and a
//! fixed "now" (2026-11-23T18:30:00Z) so that the seeds' `not_after` times
//! are in range and runs are reproducible.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use cpe_agent::provision::bundle::Trust;
use ed25519_dalek::SigningKey;

pub const AGENT_ID: &str = "gw-000123";
pub const REQUEST_ID: &str = "r-2026-11-23-0001";

/// A fixed Ed25519 key: for fuzzing only, never a real provider key.
pub fn key() -> SigningKey {
    SigningKey::from_bytes(&[7u8; 32])
}

pub fn now() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_795_458_600)
}

pub fn trust(applied_version: Option<u64>) -> Trust {
    let mut trust = Trust::new(AGENT_ID, &[key().verifying_key()]);
    trust.groups = vec!["lab".to_string(), "region-1".to_string()];
    trust.applied_version = applied_version;
    trust
}

/// Everything the agent does with an accepted bundle that reads its fields.
pub fn use_bundle(bundle: &cpe_agent::provision::bundle::Bundle) {
    for sets in bundle.desired.devices.values() {
        for set in sets {
            let _ = set.value.to_json();
            assert!(!set.oid.is_empty());
        }
    }
    let _ = bundle.target.to_string();
}
