//! The store's unit of storage: one operation on one key at one seq, and its order.
//!
//! Entries sort by key ascending, then by seq **descending**, then puts before deletes.
//! Newest-first within a key makes every question the store answers a forward walk that
//! stops early: the latest value of a key is the first entry of its group, and a delete
//! hides everything after it in the group (all older puts).

use std::cmp::Ordering;

use flume_core::Seq;

/// What an entry does to its key. Which older entries an entry hides depends on the
/// store's [`Semantics`](crate::Semantics).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    /// The key points at the entry's seq. In a
    /// [`SingleValued`](crate::Semantics::SingleValued) store it also hides every older
    /// entry of the key; in a [`MultiValued`](crate::Semantics::MultiValued) one the
    /// key's older puts stay.
    Put = 1,
    /// Every entry of the key at a lower seq is hidden: the key points at nothing older.
    Delete = 2,
}

impl Kind {
    pub(crate) fn from_byte(b: u8) -> Option<Kind> {
        match b {
            1 => Some(Kind::Put),
            2 => Some(Kind::Delete),
            _ => None,
        }
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
/// table: the higher seq wins, and at the same seq a put wins over a delete (a record
/// that deletes and puts a key leaves it pointing at the record).
pub(crate) fn newer(a: Option<(Seq, Kind)>, b: Option<(Seq, Kind)>) -> Option<(Seq, Kind)> {
    match (a, b) {
        (Some(x), Some(y)) => Some(if (y.0, y.1 == Kind::Put) > (x.0, x.1 == Kind::Put) {
            y
        } else {
            x
        }),
        (x, None) => x,
        (None, y) => y,
    }
}

/// The storage order: key ascending, seq descending, put before delete.
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
    fn order_is_key_then_newest_first_then_put_before_delete() {
        let mut entries = [
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
                (&b"a"[..], 1, Kind::Put),
                (&b"a"[..], 1, Kind::Delete),
                (&b"b"[..], 1, Kind::Put),
            ]
        );
    }
}
