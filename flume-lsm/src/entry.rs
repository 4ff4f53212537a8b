//! The store's unit of storage: one operation on one key at one seq, and its order.
//!
//! Entries sort by key ascending, then by seq **descending**, then, at one seq, a remove
//! before a put before a delete ([`Kind`]'s order). Newest-first within a key makes
//! every question the store answers a forward walk that stops early: the latest value
//! of a key is the first entry of its group, a delete hides everything after it in the
//! group (all older puts), and a remove is met just before the one put it hides.

use std::cmp::Ordering;

use flume_core::Seq;

/// What an entry does to its key. Which older entries an entry hides depends on the
/// store's [`Semantics`](crate::Semantics).
///
/// Kinds order as the store keeps them at one (key, seq): [`Remove`](Kind::Remove),
/// then [`Put`](Kind::Put), then [`Delete`](Kind::Delete) (not by their byte values).
///
/// ```
/// use flume_lsm::Kind;
/// assert!(Kind::Remove < Kind::Put && Kind::Put < Kind::Delete);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    /// The key points at the entry's seq. In a
    /// [`SingleValued`](crate::Semantics::SingleValued) store it also hides every older
    /// entry of the key; in a [`MultiValued`](crate::Semantics::MultiValued) one the
    /// key's older puts stay.
    Put = 1,
    /// Every entry of the key at a lower seq is hidden: the key points at nothing older.
    Delete = 2,
    /// Hides exactly one put: the put of the key at the entry's seq (which is the seq
    /// of the record that put it, not of the record that removed it, so that the remove
    /// meets its put in every merge). It hides nothing else and reveals nothing: in a
    /// [`SingleValued`](crate::Semantics::SingleValued) store the removed put still
    /// hides the older entries of its key. Made by [`Emit::remove`](crate::Emit::remove).
    Remove = 3,
}

impl Kind {
    pub(crate) fn from_byte(b: u8) -> Option<Kind> {
        match b {
            1 => Some(Kind::Put),
            2 => Some(Kind::Delete),
            3 => Some(Kind::Remove),
            _ => None,
        }
    }

    /// The storage order at one (key, seq): remove, put, delete.
    fn rank(self) -> u8 {
        match self {
            Kind::Remove => 0,
            Kind::Put => 1,
            Kind::Delete => 2,
        }
    }
}

impl Ord for Kind {
    fn cmp(&self, other: &Self) -> Ordering {
        self.rank().cmp(&other.rank())
    }
}

impl PartialOrd for Kind {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

/// One operation: `kind` on `key` at `seq`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct Entry {
    pub(crate) key: Box<[u8]>,
    pub(crate) seq: Seq,
    pub(crate) kind: Kind,
}

impl Entry {
    pub(crate) fn new(key: &[u8], seq: Seq, kind: Kind) -> Self {
        Entry {
            key: key.into(),
            seq,
            kind,
        }
    }

    /// What a memtable counts per entry on top of its key bytes (the
    /// [`LsmOptions::memtable_bytes`](crate::LsmOptions::memtable_bytes) budget).
    pub(crate) const OVERHEAD: usize = 64;
}

/// The newer of two answers about one key, each the first entry of the key in some
/// table: the higher seq wins; at the same seq a remove wins (the caller must then look
/// further: the put it removes may hide older entries or not), then a put wins over a
/// delete (a record that deletes and puts a key leaves it pointing at the record).
pub(crate) fn newer(a: Option<(Seq, Kind)>, b: Option<(Seq, Kind)>) -> Option<(Seq, Kind)> {
    let weight = |k: Kind| match k {
        Kind::Remove => 2,
        Kind::Put => 1,
        Kind::Delete => 0,
    };
    match (a, b) {
        (Some(x), Some(y)) => Some(if (y.0, weight(y.1)) > (x.0, weight(x.1)) {
            y
        } else {
            x
        }),
        (x, None) => x,
        (None, y) => y,
    }
}

/// The storage order: key ascending, seq descending, then remove, put, delete.
pub(crate) fn compare(a_key: &[u8], a_seq: Seq, a_kind: Kind, b: &Entry) -> Ordering {
    a_key
        .cmp(&b.key)
        .then_with(|| b.seq.cmp(&a_seq))
        .then_with(|| a_kind.cmp(&b.kind))
}

impl Ord for Entry {
    fn cmp(&self, other: &Self) -> Ordering {
        compare(&self.key, self.seq, self.kind, other)
    }
}

impl PartialOrd for Entry {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn order_is_key_then_newest_first_then_remove_put_delete() {
        let mut entries = [
            Entry::new(b"a", 1, Kind::Remove),
            Entry::new(b"b", 1, Kind::Put),
            Entry::new(b"a", 1, Kind::Delete),
            Entry::new(b"a", 1, Kind::Put),
            Entry::new(b"a", 7, Kind::Put),
            Entry::new(b"", 0, Kind::Put),
        ];
        entries.sort();
        let order: Vec<(&[u8], Seq, Kind)> =
            entries.iter().map(|e| (&*e.key, e.seq, e.kind)).collect();
        assert_eq!(
            order,
            vec![
                (&b""[..], 0, Kind::Put),
                (&b"a"[..], 7, Kind::Put),
                (&b"a"[..], 1, Kind::Remove),
                (&b"a"[..], 1, Kind::Put),
                (&b"a"[..], 1, Kind::Delete),
                (&b"b"[..], 1, Kind::Put),
            ]
        );
    }
}
