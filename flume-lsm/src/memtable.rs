//! The memtable: the entries applied since the last flush, in memory.
//!
//! Entries live in one vector and their keys in one byte buffer (no allocation per
//! entry). The vector is a short list of **sorted chunks** (the "logarithmic method"):
//! each applied batch is sorted on its own and appended as a chunk, and the last two
//! chunks are merged whenever the last is at least half as long as the one before it,
//! so chunk lengths at least halve from the first to the last and there are at most
//! about log2(entries) of them. A lookup binary-searches each chunk; a flush merges them
//! all into one. Every entry is merged O(log n) times in all — cheaper than a tree insert
//! (no per-entry allocation, no pointer chasing), and readers never see an unsorted
//! table.
//!
//! ```text
//! slots  [ chunk 0 (sorted)          | chunk 1 (sorted) | chunk 2 | c3 ]
//! keys   [ key bytes of every slot, in the order applied              ]
//! ```
//!
//! Within a chunk, entries are in storage order (see [`crate::entry`]) and distinct; an
//! entry applied twice (the same key, seq and kind) is kept once when chunks merge, and
//! counts once in every answer meanwhile.

use std::cmp::Ordering;
use std::collections::{HashMap, VecDeque};
use std::ops::{Bound, Range};

use flume_core::Seq;

use crate::entry::{newer, Entry, Kind};
use crate::key::{above_lo, below_hi, key_prefix};

/// One entry: where its key is in `keys`, the key's first bytes (for fast comparisons),
/// its seq and kind.
#[derive(Debug, Clone, Copy)]
struct Slot {
    /// The key's first 8 bytes, big-endian, zero-padded: orders like the key whenever
    /// it differs.
    prefix: u64,
    at: usize,
    len: usize,
    seq: Seq,
    kind: Kind,
}

fn key_of<'k>(keys: &'k [u8], s: &Slot) -> &'k [u8] {
    &keys[s.at..s.at + s.len]
}

/// Storage order of two slots.
fn cmp_slots(keys: &[u8], a: &Slot, b: &Slot) -> Ordering {
    a.prefix
        .cmp(&b.prefix)
        .then_with(|| key_of(keys, a).cmp(key_of(keys, b)))
        .then_with(|| b.seq.cmp(&a.seq))
        .then_with(|| a.kind.cmp(&b.kind))
}

fn same(a: &Slot, b: &Slot, keys: &[u8]) -> bool {
    a.seq == b.seq && a.kind == b.kind && a.prefix == b.prefix && key_of(keys, a) == key_of(keys, b)
}

/// The entries applied since the last flush; see the module docs.
#[derive(Debug, Default, Clone)]
pub(crate) struct Memtable {
    keys: Vec<u8>,
    slots: Vec<Slot>,
    /// Where each chunk starts in `slots`; chunk `i` ends where chunk `i + 1` starts
    /// (the last at `slots.len()`). Chunk lengths at least halve from one to the next.
    chunks: Vec<usize>,
    /// A rough count of the bytes the entries cost: key bytes plus [`Entry::OVERHEAD`]
    /// each.
    bytes: usize,
    /// Reused by merges.
    scratch: Vec<Slot>,
    /// Each key's newest delete in the table (deletes are few): found in O(1) instead
    /// of walking a key of many entries.
    deletes: HashMap<Box<[u8]>, Seq>,
}

impl Memtable {
    /// How many entries the table holds (an entry applied twice may count twice until
    /// its chunks merge).
    pub(crate) fn len(&self) -> usize {
        self.slots.len()
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    /// The approximate memory the entries cost (key bytes plus [`Entry::OVERHEAD`] each).
    pub(crate) fn bytes(&self) -> usize {
        self.bytes
    }

    #[cfg(test)]
    fn chunk_count(&self) -> usize {
        self.chunks.len()
    }

    fn chunk(&self, i: usize) -> Range<usize> {
        let end = self.chunks.get(i + 1).copied().unwrap_or(self.slots.len());
        self.chunks[i]..end
    }

    /// Empties the table, keeping its buffers' capacity.
    pub(crate) fn clear(&mut self) {
        self.keys.clear();
        self.slots.clear();
        self.chunks.clear();
        self.bytes = 0;
        self.deletes.clear();
    }

    /// Adds a batch of operations as one chunk, then merges chunks as the size rule
    /// says.
    pub(crate) fn insert_batch<'a>(
        &mut self,
        ops: impl IntoIterator<Item = (&'a [u8], Seq, Kind)>,
    ) {
        let start = self.slots.len();
        for (key, seq, kind) in ops {
            if kind == Kind::Delete {
                match self.deletes.get_mut(key) {
                    Some(newest) => *newest = (*newest).max(seq),
                    None => {
                        self.deletes.insert(key.into(), seq);
                    }
                }
            }
            let at = self.keys.len();
            self.keys.extend_from_slice(key);
            self.slots.push(Slot {
                prefix: key_prefix(key),
                at,
                len: key.len(),
                seq,
                kind,
            });
            self.bytes += key.len() + Entry::OVERHEAD;
        }
        if self.slots.len() == start {
            return;
        }
        let keys = &self.keys;
        let batch = &mut self.slots[start..];
        if !batch.is_sorted_by(|a, b| cmp_slots(keys, a, b).is_le()) {
            batch.sort_unstable_by(|a, b| cmp_slots(keys, a, b));
        }
        // Drop exact duplicates within the batch (a record that puts a key twice).
        let mut w = start;
        for r in start..self.slots.len() {
            if w == start || !same(&self.slots[w - 1], &self.slots[r], &self.keys) {
                self.slots[w] = self.slots[r];
                w += 1;
            }
        }
        self.slots.truncate(w);
        self.chunks.push(start);
        while self.chunks.len() >= 2 {
            let n = self.chunks.len();
            let last = self.slots.len() - self.chunks[n - 1];
            let before = self.chunks[n - 1] - self.chunks[n - 2];
            if last * 2 < before {
                break;
            }
            self.merge_last_two();
        }
    }

    /// Merges the last two chunks into one, dropping exact duplicates.
    fn merge_last_two(&mut self) {
        let n = self.chunks.len();
        let (a, b) = (self.chunks[n - 2], self.chunks[n - 1]);
        let end = self.slots.len();
        self.chunks.pop();
        // Fast path: already in order (e.g. keys applied in ascending order).
        if cmp_slots(&self.keys, &self.slots[b - 1], &self.slots[b]).is_lt() {
            return;
        }
        self.scratch.clear();
        self.scratch.extend_from_slice(&self.slots[a..b]);
        let (keys, left, slots) = (&self.keys, &self.scratch, &mut self.slots);
        let (mut i, mut j, mut w) = (0, b, a);
        // `w <= j` throughout: the merged output never overtakes the right chunk.
        while i < left.len() && j < end {
            match cmp_slots(keys, &left[i], &slots[j]) {
                Ordering::Less => {
                    slots[w] = left[i];
                    i += 1;
                }
                Ordering::Greater => {
                    slots[w] = slots[j];
                    j += 1;
                }
                Ordering::Equal => {
                    slots[w] = left[i];
                    i += 1;
                    j += 1;
                }
            }
            w += 1;
        }
        if i < left.len() {
            let rest = left.len() - i;
            slots[w..w + rest].copy_from_slice(&left[i..]);
            w += rest;
        } else if j < end && w < j {
            slots.copy_within(j..end, w);
            w += end - j;
        } else {
            w += end - j;
        }
        slots.truncate(w);
    }

    /// Merges every chunk into one: the table is then one sorted run of distinct
    /// entries, ready to be written out.
    pub(crate) fn freeze(&mut self) {
        while self.chunks.len() >= 2 {
            self.merge_last_two();
        }
        self.scratch = Vec::new();
    }

    /// The entries in storage order, once [`freeze`](Memtable::freeze)d.
    pub(crate) fn sorted(&self) -> impl Iterator<Item = (&[u8], Seq, Kind)> + '_ {
        debug_assert!(self.chunks.len() <= 1, "iterating an unfrozen memtable");
        self.slots
            .iter()
            .map(|s| (key_of(&self.keys, s), s.seq, s.kind))
    }

    /// Adds every entry of `other` (as one batch).
    pub(crate) fn absorb(&mut self, other: &Memtable) {
        self.insert_batch(
            other
                .slots
                .iter()
                .map(|s| (key_of(&other.keys, s), s.seq, s.kind)),
        );
    }

    /// The first entry of `key` in storage order (its newest), if any.
    pub(crate) fn first_of(&self, key: &[u8]) -> Option<(Seq, Kind)> {
        let prefix = key_prefix(key);
        let mut best = None;
        for c in 0..self.chunks.len() {
            let chunk = &self.slots[self.chunk(c)];
            // Entries of `key` sort after every smaller key, newest first.
            let i = chunk.partition_point(|s| {
                s.prefix
                    .cmp(&prefix)
                    .then_with(|| key_of(&self.keys, s).cmp(key))
                    .is_lt()
            });
            if let Some(s) = chunk.get(i) {
                if s.prefix == prefix && key_of(&self.keys, s) == key {
                    best = newer(best, Some((s.seq, s.kind)));
                }
            }
        }
        best
    }

    /// The seq of `key`'s newest delete in the table, if any.
    pub(crate) fn newest_delete(&self, key: &[u8]) -> Option<Seq> {
        self.deletes.get(key).copied()
    }

    /// A copy of `key`'s entries from the position `(key, seq, kind)` on, in storage
    /// order: forward, those not before it; reverse, those not after it. At most `cap`
    /// from each chunk, walking from the position; when a chunk had more, the copy is
    /// cut where the first such chunk's part ends (in the walk's direction), and `true`
    /// says so: a merge must not go beyond the copy. Costs O(log n + what is copied).
    pub(crate) fn key_part(
        &self,
        key: &[u8],
        (seq, kind): (Seq, Kind),
        reverse: bool,
        cap: usize,
    ) -> (VecDeque<Entry>, bool) {
        let prefix = key_prefix(key);
        let probe = Slot {
            prefix,
            at: 0,
            len: 0,
            seq,
            kind,
        };
        let cmp_probe = |s: &Slot| {
            s.prefix
                .cmp(&prefix)
                .then_with(|| key_of(&self.keys, s).cmp(key))
                .then_with(|| probe.seq.cmp(&s.seq))
                .then_with(|| s.kind.cmp(&probe.kind))
        };
        let same_key = |s: &Slot| s.prefix == prefix && key_of(&self.keys, s) == key;
        let mut out: Vec<Entry> = Vec::new();
        // The cut: the furthest entry (in the walk's direction) every part reaches.
        let mut cut: Option<Entry> = None;
        for c in 0..self.chunks.len() {
            let chunk = &self.slots[self.chunk(c)];
            let part: Vec<&Slot> = if reverse {
                let end = chunk.partition_point(|s| cmp_probe(s).is_le());
                chunk[..end]
                    .iter()
                    .rev()
                    .take_while(|s| same_key(s))
                    .take(cap.saturating_add(1))
                    .collect()
            } else {
                let start = chunk.partition_point(|s| cmp_probe(s).is_lt());
                chunk[start..]
                    .iter()
                    .take_while(|s| same_key(s))
                    .take(cap.saturating_add(1))
                    .collect()
            };
            let full = part.len() > cap;
            let part = &part[..part.len().min(cap)];
            if full {
                if let Some(last) = part.last() {
                    let last = Entry::new(key, last.seq, last.kind);
                    let nearer =
                        cut.as_ref()
                            .is_none_or(|c| if reverse { last > *c } else { last < *c });
                    if nearer {
                        cut = Some(last);
                    }
                }
                if part.is_empty() {
                    // A zero cap: nothing can be promised.
                    return (VecDeque::new(), true);
                }
            }
            out.extend(part.iter().map(|s| Entry::new(key, s.seq, s.kind)));
        }
        out.sort_unstable();
        out.dedup();
        if let Some(cut) = &cut {
            out.retain(|e| if reverse { e >= cut } else { e <= cut });
        }
        (out.into(), cut.is_some())
    }

    /// A copy of the entries within key bounds (and above `after`), in storage order.
    pub(crate) fn range(
        &self,
        lo: &Bound<Vec<u8>>,
        hi: &Bound<Vec<u8>>,
        after: Option<Seq>,
    ) -> VecDeque<Entry> {
        let mut out: Vec<Entry> = Vec::new();
        for c in 0..self.chunks.len() {
            let chunk = &self.slots[self.chunk(c)];
            let start = match lo {
                Bound::Unbounded => 0,
                _ => chunk.partition_point(|s| !above_lo(key_of(&self.keys, s), lo)),
            };
            out.extend(
                chunk[start..]
                    .iter()
                    .take_while(|s| below_hi(key_of(&self.keys, s), hi))
                    .filter(|s| after.is_none_or(|a| s.seq > a))
                    .map(|s| Entry::new(key_of(&self.keys, s), s.seq, s.kind)),
            );
        }
        if self.chunks.len() > 1 {
            out.sort_unstable();
            out.dedup();
        }
        out.into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::BTreeSet;

    fn op() -> impl Strategy<Value = (Vec<u8>, Seq, Kind)> {
        (
            proptest::collection::vec(0u8..3, 0..10),
            0u64..30,
            prop_oneof![Just(Kind::Put), Just(Kind::Delete), Just(Kind::Remove)],
        )
    }

    fn bound() -> impl Strategy<Value = Bound<Vec<u8>>> {
        prop_oneof![
            Just(Bound::Unbounded),
            proptest::collection::vec(0u8..3, 0..10).prop_map(Bound::Included),
            proptest::collection::vec(0u8..3, 0..10).prop_map(Bound::Excluded),
        ]
    }

    proptest! {
        /// The memtable answers like a `BTreeSet<Entry>` (the table it replaced) after
        /// any sequence of batches, before and after it is frozen.
        #[test]
        fn matches_a_btreeset(
            batches in proptest::collection::vec(proptest::collection::vec(op(), 0..12), 0..30),
            probes in proptest::collection::vec(proptest::collection::vec(0u8..3, 0..10), 1..10),
            lo in bound(),
            hi in bound(),
            after in proptest::option::of(0u64..30),
        ) {
            let mut mem = Memtable::default();
            let mut model = BTreeSet::new();
            for batch in &batches {
                mem.insert_batch(batch.iter().map(|(k, s, kind)| (&k[..], *s, *kind)));
                model.extend(batch.iter().map(|(k, s, kind)| Entry::new(k, *s, *kind)));
                // The chunk lengths at least halve.
                let lens: Vec<usize> = (0..mem.chunks.len()).map(|c| mem.chunk(c).len()).collect();
                prop_assert!(lens.windows(2).all(|w| w[1] * 2 < w[0]), "{:?}", lens);
            }
            for frozen in [false, true] {
                if frozen {
                    mem.freeze();
                    prop_assert!(mem.chunk_count() <= 1);
                    let all: Vec<Entry> = mem.sorted().map(|(k, s, kind)| Entry::new(k, s, kind)).collect();
                    prop_assert_eq!(&all, &model.iter().cloned().collect::<Vec<_>>());
                    prop_assert_eq!(mem.len(), model.len());
                }
                for key in &probes {
                    let expected = model
                        .range(Entry::new(key, Seq::MAX, Kind::Put)..)
                        .next()
                        .filter(|e| &*e.key == key.as_slice())
                        .map(|e| (e.seq, e.kind));
                    prop_assert_eq!(mem.first_of(key), expected);
                }
                let expected: Vec<Entry> = model
                    .iter()
                    .filter(|e| above_lo(&e.key, &lo) && below_hi(&e.key, &hi))
                    .filter(|e| after.is_none_or(|a| e.seq > a))
                    .cloned()
                    .collect();
                prop_assert_eq!(Vec::from(mem.range(&lo, &hi, after)), expected);
            }
        }
    }

    proptest! {
        /// A part of one key's entries from a position: exactly the model's when not
        /// cut, else a non-empty beginning of them (in the walk's direction); and the
        /// key's newest delete.
        #[test]
        fn key_parts_match_a_btreeset(
            batches in proptest::collection::vec(proptest::collection::vec(op(), 0..12), 0..30),
            key in proptest::collection::vec(0u8..3, 0..3),
            seq in 0u64..31,
            kind in prop_oneof![Just(Kind::Put), Just(Kind::Delete), Just(Kind::Remove)],
            reverse in any::<bool>(),
            cap in 0usize..6,
        ) {
            let mut mem = Memtable::default();
            let mut model = BTreeSet::new();
            for batch in &batches {
                mem.insert_batch(batch.iter().map(|(k, s, kind)| (&k[..], *s, *kind)));
                model.extend(batch.iter().map(|(k, s, kind)| Entry::new(k, *s, *kind)));
            }
            let at = Entry::new(&key, seq, kind);
            let mut expected: Vec<Entry> = model
                .iter()
                .filter(|e| *e.key == *key && if reverse { **e <= at } else { **e >= at })
                .cloned()
                .collect();
            if reverse {
                expected.reverse();
            }
            let (part, cut) = mem.key_part(&key, (seq, kind), reverse, cap);
            let mut part: Vec<Entry> = part.into();
            if reverse {
                part.reverse();
            }
            if cut {
                prop_assert!(part.len() < expected.len());
                prop_assert!(cap == 0 || !part.is_empty());
                prop_assert_eq!(&part[..], &expected[..part.len()]);
            } else {
                prop_assert_eq!(part, expected);
            }
            let newest = model
                .iter()
                .find(|e| *e.key == *key && e.kind == Kind::Delete)
                .map(|e| e.seq);
            prop_assert_eq!(mem.newest_delete(&key), newest);
        }
    }

    #[test]
    fn single_entry_batches_stay_logarithmic() {
        let mut mem = Memtable::default();
        for i in 0..10_000u64 {
            let key = (i.wrapping_mul(0x9E37_79B9_7F4A_7C15) % 1000).to_be_bytes();
            mem.insert_batch([(&key[..], i, Kind::Put)]);
            assert!(mem.chunk_count() <= 15, "{} chunks", mem.chunk_count());
        }
        assert_eq!(mem.len(), 10_000);
        let mut other = Memtable::default();
        other.absorb(&mem);
        other.freeze();
        mem.freeze();
        assert!(mem.sorted().eq(other.sorted()));
        assert!(mem
            .sorted()
            .zip(mem.sorted().skip(1))
            .all(|(a, b)| Entry::new(a.0, a.1, a.2) < Entry::new(b.0, b.1, b.2)));
    }
}
