//! Who this agent is: the id in every MQTT topic and payload.
//!
//! The id must be stable for the life of the gateway (a NOC keys its
//! dashboards on it) and safe inside an MQTT topic. When the provider does not
//! set `agent.id`, it is derived from the gateway in this order:
//! 1. `/etc/machine-id` (unique per installation, stable across reboots),
//!    shortened to its first 16 hex digits and prefixed `cpe-`;
//! 2. the host name, when there is no machine id (some busybox systems).
//!
//! The host name comes last because many routers ship with the same default
//! one ("OpenWrt"), which would make two customers' gateways collide.

use std::path::Path;
use std::sync::OnceLock;

/// A random value new at every start of the agent, published in its
/// retained status (`nonce`): a remote command must carry the current one,
/// so a command captured before a restart (or before the state directory
/// was lost) cannot run again, whatever the clock says.
pub fn boot_nonce() -> &'static str {
    static NONCE: OnceLock<String> = OnceLock::new();
    NONCE.get_or_init(|| {
        let mut bytes = [0u8; 8];
        if getrandom::getrandom(&mut bytes).is_err() {
            // No entropy source: the time and pid still differ per start.
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos() as u64);
            bytes = (now ^ u64::from(std::process::id()).rotate_left(32)).to_le_bytes();
        }
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    })
}

const MACHINE_ID: &str = "/etc/machine-id";
const MAX_ID_LEN: usize = 64;

/// Checks a configured or derived id; the error says what is allowed.
pub fn check_agent_id(id: &str) -> Result<(), String> {
    if id.is_empty() || id.len() > MAX_ID_LEN {
        return Err(format!(
            "expected 1 to {MAX_ID_LEN} characters, got {}",
            id.len()
        ));
    }
    if let Some(c) = id
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')))
    {
        return Err(format!(
            "{c:?} is not allowed in an agent id (it goes into MQTT topics): use letters, digits, '-', '_' and '.'"
        ));
    }
    Ok(())
}

/// The agent id: the configured one, or one derived from the gateway.
pub fn agent_id(configured: Option<&str>) -> Result<String, String> {
    if let Some(id) = configured {
        return Ok(id.to_string());
    }
    derive_from(Path::new(MACHINE_ID)).ok_or_else(|| {
        "cannot derive an agent id: no /etc/machine-id and no usable host name; set agent.id".into()
    })
}

fn derive_from(machine_id: &Path) -> Option<String> {
    if let Some(id) = std::fs::read_to_string(machine_id)
        .ok()
        .and_then(|text| id_from_machine_id(&text))
    {
        return Some(id);
    }
    let host = nix::unistd::gethostname().ok()?;
    let host = host.to_str()?;
    let cleaned: String = host
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' {
                c
            } else {
                '_'
            }
        })
        .take(MAX_ID_LEN)
        .collect();
    check_agent_id(&cleaned).ok().map(|_| cleaned)
}

fn id_from_machine_id(text: &str) -> Option<String> {
    let hex = text.trim();
    let valid = hex.len() >= 16 && hex.chars().all(|c| c.is_ascii_hexdigit());
    valid.then(|| format!("cpe-{}", &hex[..16].to_ascii_lowercase()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn machine_id_gives_a_short_stable_id() {
        let id = id_from_machine_id("0123456789ABCDEF0123456789abcdef\n");
        assert_eq!(id.as_deref(), Some("cpe-0123456789abcdef"));
        assert_eq!(id_from_machine_id("uninitialized\n"), None);
    }

    #[test]
    fn derived_id_is_topic_safe() {
        let id = derive_from(Path::new("/nonexistent")).expect("host name fallback");
        check_agent_id(&id).expect("derived id is valid");
    }

    #[test]
    fn topic_breaking_ids_are_refused() {
        for bad in ["", "a/b", "a+b", "a#", "a b"] {
            assert!(check_agent_id(bad).is_err(), "{bad:?}");
        }
        check_agent_id("gw-0042.customer_7").expect("valid");
    }
}
