//! Which id a device found on the LAN gets, when the LAN lies.
//!
//! A device's id comes from what it says of itself (vendor and serial, base
//! MAC, else its address: `discover::inventory::device_id`). Everything it
//! says can be copied or made up, so the id a sweep computes is only a
//! *claim*. [`Identities`] turns claims into ids that stay unique:
//!
//! - **a collision**: two devices that answer at once at two addresses and
//!   claim the same id (a cloned serial, two ids equal after cleaning). Both
//!   then get the claim with their address appended (`{claim}.at-{address}`):
//!   order does not matter, neither keeps the contested id (so a push naming
//!   it reaches neither), and the claim stays marked as contested;
//! - **a move**: the holder of the claim no longer answers and another
//!   address claims it: the device moved (DHCP), and keeps its id;
//! - **churn**: an address whose claim keeps changing (a serial made up at
//!   every request) keeps the id it had after [`CHURN_LIMIT`] changes, so it
//!   cannot mint ids, streams and retained topics without end;
//! - **a bound**: at most `max_devices` ids are tracked; more are refused.
//!
//! The state is pure (tested without sockets) and saved to
//! `<state_dir>/identities` after every change, so that ids do not depend on
//! the order devices answer in after a restart. A device that never
//! collided keeps exactly the id it always had.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, SocketAddr};
use std::path::Path;

/// Changes of claim at one address after which its id is held.
pub const CHURN_LIMIT: u32 = 2;

/// What happened to a claim, for events and logs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Note {
    /// Two devices claim `claim`: this one is `id` now, the other answers at
    /// `other` and is `other_id`.
    Collision {
        claim: String,
        other: SocketAddr,
        other_id: String,
    },
    /// The device `id` answers at a new address.
    Moved { from: SocketAddr },
    /// The address keeps changing what it claims; it is held to its id.
    Churn { claimed: String },
    /// Another device answers at this address now: the one known as
    /// `old_id` is gone from it (its id is forgotten).
    Replaced { old_id: String },
}

/// The id a claim gets, or why it gets none.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Assigned {
    /// Track the device under this id (and tell the notes).
    Id { id: String, notes: Vec<Note> },
    /// More than `max_devices` ids: not tracked.
    TooMany,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Held {
    address: SocketAddr,
    claim: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct AtAddress {
    id: String,
    changes: u32,
}

/// The ids handed out, and what they were handed out for.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Identities {
    /// id → where it answers and what it claimed.
    held: BTreeMap<String, Held>,
    /// Claims two devices made at once: never handed out plain again.
    contested: BTreeSet<String>,
    /// address → the id it has, and how often its claim changed.
    at: BTreeMap<SocketAddr, AtAddress>,
    max_devices: usize,
    /// Changed since the last [`Identities::take_changed`]: to be saved.
    changed: bool,
}

impl Identities {
    pub fn new(max_devices: usize) -> Identities {
        Identities {
            max_devices,
            ..Identities::default()
        }
    }

    /// True once after any change: the caller saves then.
    pub fn take_changed(&mut self) -> bool {
        std::mem::take(&mut self.changed)
    }

    /// How many ids are tracked.
    pub fn len(&self) -> usize {
        self.held.len()
    }

    pub fn is_empty(&self) -> bool {
        self.held.is_empty()
    }

    /// The id for a device at `address` that claims `claim`. `alive(id)`
    /// says whether the device known by `id` still answers (a collision
    /// rather than a move).
    pub fn assign(
        &mut self,
        claim: &str,
        address: SocketAddr,
        alive: impl Fn(&str) -> bool,
    ) -> Assigned {
        let before = self.at.get(&address).map(|a| a.id.clone());
        let mut assigned = self.assign_inner(claim, address, alive);
        if let (Some(old_id), Assigned::Id { id, notes }) = (before, &mut assigned) {
            let churned = notes.iter().any(|n| matches!(n, Note::Churn { .. }));
            if old_id != *id
                && !churned
                && self.held.get(&old_id).is_some_and(|h| h.address == address)
            {
                self.held.remove(&old_id);
                self.changed = true;
                notes.push(Note::Replaced { old_id });
            }
        }
        assigned
    }

    fn assign_inner(
        &mut self,
        claim: &str,
        address: SocketAddr,
        alive: impl Fn(&str) -> bool,
    ) -> Assigned {
        // Churn: this address claimed something else before.
        if let Some(at) = self.at.get(&address).cloned() {
            let before = self.held.get(&at.id).map(|h| h.claim.clone());
            if before.as_deref().is_some_and(|c| c != claim) {
                let changes = at.changes + 1;
                if let Some(entry) = self.at.get_mut(&address) {
                    entry.changes = changes;
                    self.changed = true;
                }
                if changes >= CHURN_LIMIT {
                    return Assigned::Id {
                        id: at.id,
                        notes: vec![Note::Churn {
                            claimed: claim.to_string(),
                        }],
                    };
                }
            }
        }
        if self.contested.contains(claim) {
            let id = at_address(claim, address);
            return self.hold(id, claim, address, Vec::new());
        }
        match self.held.get(claim).cloned() {
            Some(held) if held.address == address => {
                self.hold(claim.to_string(), claim, address, Vec::new())
            }
            Some(held) if alive(claim) => {
                // Two devices claim one id at once: neither keeps it.
                self.changed = true;
                self.contested.insert(claim.to_string());
                self.held.remove(claim);
                let other_id = at_address(claim, held.address);
                self.held.insert(
                    other_id.clone(),
                    Held {
                        address: held.address,
                        claim: claim.to_string(),
                    },
                );
                if let Some(at) = self.at.get_mut(&held.address) {
                    at.id = other_id.clone();
                }
                let id = at_address(claim, address);
                let note = Note::Collision {
                    claim: claim.to_string(),
                    other: held.address,
                    other_id,
                };
                self.hold(id, claim, address, vec![note])
            }
            Some(held) => {
                self.at.remove(&held.address);
                self.changed = true;
                let note = Note::Moved { from: held.address };
                self.hold(claim.to_string(), claim, address, vec![note])
            }
            None => self.hold(claim.to_string(), claim, address, Vec::new()),
        }
    }

    fn hold(&mut self, id: String, claim: &str, address: SocketAddr, notes: Vec<Note>) -> Assigned {
        if !self.held.contains_key(&id) && self.held.len() >= self.max_devices {
            return Assigned::TooMany;
        }
        let held = Held {
            address,
            claim: claim.to_string(),
        };
        let at = AtAddress {
            id: id.clone(),
            changes: self.at.get(&address).map_or(0, |a| a.changes),
        };
        if self.held.get(&id) != Some(&held) || self.at.get(&address) != Some(&at) {
            self.changed = true;
            self.held.insert(id.clone(), held);
            self.at.insert(address, at);
        }
        Assigned::Id { id, notes }
    }

    /// Forgets an id (a device lost for good): its address and claim may be
    /// handed out again.
    pub fn forget(&mut self, id: &str) {
        if let Some(held) = self.held.remove(id) {
            self.changed = true;
            if self.at.get(&held.address).is_some_and(|a| a.id == id) {
                self.at.remove(&held.address);
            }
        }
    }

    /// The saved form: one line per id, and one per contested claim.
    pub fn to_text(&self) -> String {
        let mut text = String::from("# cpe-agent identities 1\n");
        for (id, held) in &self.held {
            let changes = self.at.get(&held.address).map_or(0, |a| a.changes);
            text.push_str(&format!(
                "id\t{id}\t{}\t{}\t{changes}\n",
                held.address, held.claim
            ));
        }
        for claim in &self.contested {
            text.push_str(&format!("contested\t{claim}\n"));
        }
        text
    }

    /// Reads the saved form; a line it cannot read is skipped (and named in
    /// the returned warnings), at most `max_devices` ids are taken.
    pub fn from_text(text: &str, max_devices: usize) -> (Identities, Vec<String>) {
        let mut ids = Identities::new(max_devices);
        let mut warnings = Vec::new();
        for (n, line) in text.lines().enumerate() {
            if line.starts_with('#') || line.trim().is_empty() {
                continue;
            }
            let fields: Vec<&str> = line.split('\t').collect();
            match fields.as_slice() {
                ["id", id, address, claim, changes] if ids.held.len() < max_devices => {
                    let (Ok(address), Ok(changes)) = (address.parse(), changes.parse()) else {
                        warnings.push(format!("line {}: unreadable", n + 1));
                        continue;
                    };
                    ids.held.insert(
                        id.to_string(),
                        Held {
                            address,
                            claim: claim.to_string(),
                        },
                    );
                    ids.at.insert(
                        address,
                        AtAddress {
                            id: id.to_string(),
                            changes,
                        },
                    );
                }
                ["id", ..] => {
                    warnings.push(format!("line {}: over max_devices or unreadable", n + 1))
                }
                ["contested", claim] => {
                    ids.contested.insert(claim.to_string());
                }
                _ => warnings.push(format!("line {}: unreadable", n + 1)),
            }
        }
        (ids, warnings)
    }

    /// Loads `<state_dir>/identities` (bounded read; missing: empty).
    pub fn load(state_dir: &Path, max_devices: usize) -> (Identities, Vec<String>) {
        let path = state_dir.join(FILE);
        // An id line is at most a few hundred bytes.
        let bound = (max_devices as u64 + 64) * 1024;
        match crate::files::read_bounded(&path, bound) {
            Ok(bytes) => Identities::from_text(&String::from_utf8_lossy(&bytes), max_devices),
            Err(crate::files::ReadError::Io(e)) if e.kind() == std::io::ErrorKind::NotFound => {
                (Identities::new(max_devices), Vec::new())
            }
            Err(e) => (
                Identities::new(max_devices),
                vec![format!("{}: {e}; ids start afresh", path.display())],
            ),
        }
    }

    /// Saves to `<state_dir>/identities` (replaced whole).
    pub fn save(&self, state_dir: &Path) -> std::io::Result<()> {
        let text = self.to_text();
        crate::files::replace(&state_dir.join(FILE), 0o600, |f| {
            std::io::Write::write_all(f, text.as_bytes())
        })
    }
}

const FILE: &str = "identities";

/// A contested claim made unique by the address of the device that made it.
fn at_address(claim: &str, address: SocketAddr) -> String {
    let place = match address.ip() {
        IpAddr::V4(ip) => {
            let [a, b, c, d] = ip.octets();
            format!("{a}-{b}-{c}-{d}")
        }
        IpAddr::V6(ip) => ip.to_string().replace(':', "_"),
    };
    format!("{claim}.at-{place}-{}", address.port())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(last: u8) -> SocketAddr {
        SocketAddr::from(([192, 0, 2, last], 161))
    }

    fn id(assigned: &Assigned) -> &str {
        match assigned {
            Assigned::Id { id, .. } => id,
            Assigned::TooMany => "(too many)",
        }
    }

    #[test]
    fn distinct_claims_keep_their_ids() {
        let mut ids = Identities::new(10);
        assert_eq!(id(&ids.assign("sn-acme-1", addr(1), |_| true)), "sn-acme-1");
        assert_eq!(id(&ids.assign("sn-acme-2", addr(2), |_| true)), "sn-acme-2");
        assert_eq!(id(&ids.assign("sn-acme-1", addr(1), |_| true)), "sn-acme-1");
        assert_eq!(ids.len(), 2);
    }

    /// A cloned serial: neither device keeps the contested id, whichever
    /// answered first, and the ids do not depend on the order.
    #[test]
    fn a_collision_gives_both_devices_their_own_id_in_any_order() {
        for order in [[1, 2], [2, 1]] {
            let mut ids = Identities::new(10);
            ids.assign("sn-acme-1", addr(order[0]), |_| true);
            let second = ids.assign("sn-acme-1", addr(order[1]), |_| true);
            let Assigned::Id { id, notes } = second else {
                panic!("too many")
            };
            assert_eq!(id, format!("sn-acme-1.at-192-0-2-{}-161", order[1]));
            assert_eq!(
                notes,
                [Note::Collision {
                    claim: "sn-acme-1".into(),
                    other: addr(order[0]),
                    other_id: format!("sn-acme-1.at-192-0-2-{}-161", order[0]),
                }]
            );
            // Later sweeps: each at its address, the contested id never again.
            for n in [1, 2] {
                let again = ids.assign("sn-acme-1", addr(n), |_| true);
                assert_eq!(id_of(&again), format!("sn-acme-1.at-192-0-2-{n}-161"));
            }
        }
    }

    fn id_of(a: &Assigned) -> String {
        id(a).to_string()
    }

    #[test]
    fn a_device_whose_old_address_is_silent_moved() {
        let mut ids = Identities::new(10);
        ids.assign("mac-0011", addr(1), |_| true);
        let moved = ids.assign("mac-0011", addr(7), |_| false);
        assert_eq!(
            moved,
            Assigned::Id {
                id: "mac-0011".into(),
                notes: vec![Note::Moved { from: addr(1) }]
            }
        );
        assert_eq!(ids.len(), 1);
    }

    /// A serial made up at every request: a handful of ids, then held.
    #[test]
    fn churn_is_held_to_one_id() {
        let mut ids = Identities::new(100);
        let mut seen = BTreeSet::new();
        for n in 0..60 {
            let a = ids.assign(&format!("sn-liar-{n}"), addr(9), |_| false);
            seen.insert(id_of(&a));
        }
        assert!(seen.len() <= CHURN_LIMIT as usize, "{seen:?}");
        assert_eq!(ids.len(), 1, "the replaced id is forgotten");
        let last = ids.assign("sn-liar-99", addr(9), |_| false);
        assert!(
            matches!(&last, Assigned::Id { notes, .. } if matches!(notes[..], [Note::Churn { .. }]))
        );
    }

    #[test]
    fn the_bound_holds_and_a_forgotten_id_frees_a_place() {
        let mut ids = Identities::new(2);
        ids.assign("a", addr(1), |_| true);
        ids.assign("b", addr(2), |_| true);
        assert_eq!(ids.assign("c", addr(3), |_| true), Assigned::TooMany);
        ids.forget("a");
        assert_eq!(id(&ids.assign("c", addr(3), |_| true)), "c");
    }

    #[test]
    fn the_saved_form_round_trips_and_bad_lines_are_named() {
        let mut ids = Identities::new(10);
        ids.assign("sn-acme-1", addr(1), |_| true);
        ids.assign("sn-acme-1", addr(2), |_| true);
        ids.assign("mac-0011", addr(3), |_| true);
        let (back, warnings) = Identities::from_text(&ids.to_text(), 10);
        assert!(ids.take_changed(), "changes are told once");
        assert!(!ids.take_changed());
        assert!(warnings.is_empty(), "{warnings:?}");
        assert_eq!(back, ids);
        let (_, warnings) = Identities::from_text("id\tx\tnot-an-address\tx\t0\nnonsense\n", 10);
        assert_eq!(warnings.len(), 2, "{warnings:?}");
    }
}
