//! Compact, sorted tables for the classification data.
//!
//! The evidence and vendor tables hold a few thousand entries for the whole
//! life of the daemon, on gateways where every 100 KiB counts. A `BTreeMap`
//! of `String` to `Vec` costs three heap blocks and a node share per entry;
//! a sorted `Vec` of boxed keys and inline [`Votes`] costs one block, and
//! looks up as fast (binary search).

use std::borrow::Borrow;

use crate::message::Kind;

/// The most kinds one signal may vote for.
pub const MAX_VOTES: usize = 6;

/// Votes for kinds, weights −128..127 (the data clamps them to ±20): held
/// inline, no heap.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Votes {
    pairs: [(Kind, i8); MAX_VOTES],
    len: u8,
}

impl Default for Votes {
    fn default() -> Self {
        Votes {
            pairs: [(Kind::Other, 0); MAX_VOTES],
            len: 0,
        }
    }
}

impl Votes {
    /// Votes from (kind, weight) pairs; an error when there are more than
    /// [`MAX_VOTES`].
    pub fn from_pairs(pairs: impl IntoIterator<Item = (Kind, i32)>) -> Result<Votes, String> {
        let mut votes = Votes::default();
        for (kind, weight) in pairs {
            let slot = votes
                .pairs
                .get_mut(usize::from(votes.len))
                .ok_or_else(|| format!("more than {MAX_VOTES} kinds"))?;
            *slot = (kind, weight.clamp(-128, 127) as i8);
            votes.len += 1;
        }
        Ok(votes)
    }

    pub fn iter(&self) -> impl Iterator<Item = (Kind, i32)> + '_ {
        self.pairs[..usize::from(self.len)]
            .iter()
            .map(|(kind, weight)| (*kind, i32::from(*weight)))
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

/// A map kept as a sorted `Vec`: one heap block for all entries.
#[derive(Debug, Clone, PartialEq)]
pub struct Table<K, V> {
    entries: Vec<(K, V)>,
}

impl<K, V> Default for Table<K, V> {
    fn default() -> Self {
        Table {
            entries: Vec::new(),
        }
    }
}

impl<K: Ord, V> Table<K, V> {
    /// Inserts or replaces.
    pub fn insert(&mut self, key: K, value: V) {
        match self.entries.binary_search_by(|(k, _)| k.cmp(&key)) {
            Ok(at) => self.entries[at].1 = value,
            Err(at) => self.entries.insert(at, (key, value)),
        }
    }

    pub fn get<Q>(&self, key: &Q) -> Option<&V>
    where
        K: Borrow<Q>,
        Q: Ord + ?Sized,
    {
        let at = self
            .entries
            .binary_search_by(|(k, _)| k.borrow().cmp(key))
            .ok()?;
        Some(&self.entries[at].1)
    }

    /// Lays `other` over this table: same key, replaced.
    pub fn extend(&mut self, other: Table<K, V>) {
        for (key, value) in other.entries {
            self.insert(key, value);
        }
    }

    pub fn iter(&self) -> impl Iterator<Item = (&K, &V)> {
        self.entries.iter().map(|(k, v)| (k, v))
    }

    /// The value at a position of the sorted order.
    pub fn value_at(&self, at: usize) -> Option<&V> {
        self.entries.get(at).map(|(_, v)| v)
    }

    pub fn values(&self) -> impl Iterator<Item = &V> {
        self.entries.iter().map(|(_, v)| v)
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Gives back spare capacity once the table is built.
    pub fn shrink(&mut self) {
        self.entries.shrink_to_fit();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_stay_sorted_and_replace_by_key() {
        let mut t: Table<Box<str>, u8> = Table::default();
        for (k, v) in [("b", 1), ("a", 2), ("c", 3), ("a", 4)] {
            t.insert(k.into(), v);
        }
        assert_eq!(t.len(), 3);
        assert_eq!(t.get("a"), Some(&4));
        assert_eq!(t.get("z"), None);
        let keys: Vec<&str> = t.iter().map(|(k, _)| k.as_ref()).collect();
        assert_eq!(keys, ["a", "b", "c"]);
    }

    #[test]
    fn votes_are_inline_and_bounded() {
        let votes = Votes::from_pairs([(Kind::Ups, 4), (Kind::Pdu, -300)]).expect("two");
        assert_eq!(
            votes.iter().collect::<Vec<_>>(),
            [(Kind::Ups, 4), (Kind::Pdu, -128)]
        );
        assert!(Votes::from_pairs(std::iter::repeat_n((Kind::Ap, 1), MAX_VOTES + 1)).is_err());
        assert!(Votes::default().is_empty());
    }
}
