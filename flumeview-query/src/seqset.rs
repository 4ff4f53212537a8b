//! `SeqSet`: the seqs a many-key term matched within a window, in bounded memory.
//!
//! A prefix or range term covers many keys, and an index returns their entries in key
//! order, not seq order. The query collects the seqs once into a set over the window:
//! a sorted list while it is small (8 bytes a seq), a bitmap over the window (one bit
//! per record) once the list would be bigger than that. Its memory is therefore at most
//! about `window / 8` bytes, whatever the number of hits.

use flume_core::Seq;

use crate::span::Span;

/// The seqs of one term within a span.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum SeqSet {
    /// Sorted, without duplicates.
    Sparse(Vec<Seq>),
    /// Bit `i` set: seq `base + i` is in the set.
    Dense { base: Seq, bits: Vec<u64>, len: u64 },
}

/// Gathers seqs in any order into a [`SeqSet`].
#[derive(Debug)]
pub(crate) struct SeqSetBuilder {
    lo: Seq,
    hi: Seq,
    set: SeqSet,
}

impl SeqSetBuilder {
    /// A builder for seqs `lo..=hi`; others are ignored.
    pub(crate) fn new(lo: Seq, hi: Seq) -> Self {
        SeqSetBuilder {
            lo,
            hi,
            set: SeqSet::Sparse(Vec::new()),
        }
    }

    /// The list is turned into a bitmap when it holds more seqs than this.
    fn sparse_max(&self) -> usize {
        let words = (self.hi - self.lo) / 64 + 1;
        usize::try_from(words).unwrap_or(usize::MAX).max(64)
    }

    /// Adds `seq` if it lies within the window.
    pub(crate) fn insert(&mut self, seq: Seq) {
        if seq < self.lo || seq > self.hi {
            return;
        }
        let max = self.sparse_max();
        match &mut self.set {
            SeqSet::Sparse(list) => {
                list.push(seq);
                if list.len() > max {
                    list.sort_unstable();
                    list.dedup();
                    if list.len() > max / 2 {
                        let list = std::mem::take(list);
                        self.set = self.dense_from(&list);
                    }
                }
            }
            SeqSet::Dense { base, bits, len } => {
                let i = seq - *base;
                let (w, b) = ((i / 64) as usize, i % 64);
                if bits[w] & (1 << b) == 0 {
                    bits[w] |= 1 << b;
                    *len += 1;
                }
            }
        }
    }

    fn dense_from(&self, list: &[Seq]) -> SeqSet {
        let words = ((self.hi - self.lo) / 64 + 1) as usize;
        let mut bits = vec![0u64; words];
        for &s in list {
            let i = s - self.lo;
            bits[(i / 64) as usize] |= 1 << (i % 64);
        }
        SeqSet::Dense {
            base: self.lo,
            bits,
            len: list.len() as u64,
        }
    }

    /// The finished set.
    pub(crate) fn finish(self) -> SeqSet {
        match self.set {
            SeqSet::Sparse(mut list) => {
                list.sort_unstable();
                list.dedup();
                SeqSet::Sparse(list)
            }
            dense => dense,
        }
    }
}

impl SeqSet {
    /// How many seqs the set holds.
    pub(crate) fn len(&self) -> u64 {
        match self {
            SeqSet::Sparse(list) => list.len() as u64,
            SeqSet::Dense { len, .. } => *len,
        }
    }

    /// Whether the set is a bitmap (for `explain`).
    pub(crate) fn is_dense(&self) -> bool {
        matches!(self, SeqSet::Dense { .. })
    }

    /// The bytes the set holds on the heap.
    pub(crate) fn heap_bytes(&self) -> usize {
        match self {
            SeqSet::Sparse(list) => list.capacity() * 8,
            SeqSet::Dense { bits, .. } => bits.capacity() * 8,
        }
    }

    /// The first seq of the set at or beyond `t` in the span's walk, within the span.
    pub(crate) fn seek(&self, span: &Span, t: Seq) -> Option<Seq> {
        if !span.contains(t) {
            return None;
        }
        let found = if span.newest_first() {
            self.at_or_below(t)
        } else {
            self.at_or_above(t)
        };
        found.filter(|s| span.contains(*s))
    }

    fn at_or_above(&self, t: Seq) -> Option<Seq> {
        match self {
            SeqSet::Sparse(list) => list.get(list.partition_point(|s| *s < t)).copied(),
            SeqSet::Dense { base, bits, .. } => {
                let i = t.max(*base) - base;
                let (mut w, b) = ((i / 64) as usize, i % 64);
                let mut word = bits.get(w)? & (u64::MAX << b);
                loop {
                    if word != 0 {
                        return Some(base + (w as u64) * 64 + u64::from(word.trailing_zeros()));
                    }
                    w += 1;
                    word = *bits.get(w)?;
                }
            }
        }
    }

    fn at_or_below(&self, t: Seq) -> Option<Seq> {
        match self {
            SeqSet::Sparse(list) => {
                let n = list.partition_point(|s| *s <= t);
                n.checked_sub(1).map(|i| list[i])
            }
            SeqSet::Dense { base, bits, .. } => {
                let i = t.checked_sub(*base)?;
                let last = (bits.len() as u64) * 64 - 1;
                let i = i.min(last);
                let (mut w, b) = ((i / 64) as usize, i % 64);
                let mut word = bits[w] & (u64::MAX >> (63 - b));
                loop {
                    if word != 0 {
                        return Some(base + (w as u64) * 64 + 63 - u64::from(word.leading_zeros()));
                    }
                    w = w.checked_sub(1)?;
                    word = bits[w];
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::span::Order;
    use proptest::prelude::*;

    fn build(lo: Seq, hi: Seq, seqs: &[Seq]) -> SeqSet {
        let mut b = SeqSetBuilder::new(lo, hi);
        for &s in seqs {
            b.insert(s);
        }
        b.finish()
    }

    #[test]
    fn small_sets_stay_lists_and_big_ones_become_bitmaps() {
        let small = build(0, 100_000, &[5, 3, 5, 99]);
        assert_eq!(small, SeqSet::Sparse(vec![3, 5, 99]));
        let all: Vec<Seq> = (0..1000).rev().collect();
        let big = build(0, 999, &all);
        assert!(big.is_dense());
        assert_eq!(big.len(), 1000);
        assert!(big.heap_bytes() <= 128, "{}", big.heap_bytes());
    }

    proptest! {
        #[test]
        fn seek_matches_a_sorted_list(
            lo in 0u64..200,
            width in 0u64..700,
            seqs in prop::collection::vec(0u64..1000, 0..600),
            targets in prop::collection::vec(0u64..1000, 1..20),
        ) {
            let hi = lo + width;
            let set = build(lo, hi, &seqs);
            let mut model: Vec<Seq> = seqs.iter().copied().filter(|s| (lo..=hi).contains(s)).collect();
            model.sort_unstable();
            model.dedup();
            prop_assert_eq!(set.len(), model.len() as u64);
            for order in [Order::OldestFirst, Order::NewestFirst] {
                let span = Span::between(lo, hi, order).unwrap();
                for &t in &targets {
                    let want = if !span.contains(t) {
                        None
                    } else if span.newest_first() {
                        model.iter().rev().find(|s| **s <= t).copied()
                    } else {
                        model.iter().find(|s| **s >= t).copied()
                    };
                    prop_assert_eq!(set.seek(&span, t), want, "t={} order={:?}", t, order);
                }
            }
        }
    }
}
