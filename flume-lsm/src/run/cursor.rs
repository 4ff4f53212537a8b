//! Walking a run's entries within key bounds, forward or in reverse, a block at a time.

use std::ops::Bound;
use std::sync::Arc;

use flume_core::Result;

use flume_core::Seq;

use super::{RawEntry, Run};
use crate::entry::{Entry, Kind};
use crate::key::{above_lo, below_hi};

/// Walks a run's entries within key bounds, forward or in reverse.
pub(crate) struct RunCursor {
    run: Arc<Run>,
    reverse: bool,
    lo: Bound<Vec<u8>>,
    hi: Bound<Vec<u8>>,
    /// The block loaded in `entries`.
    block: usize,
    entries: Vec<RawEntry>,
    /// Forward: the next entry to yield. Reverse: one past it.
    pos: usize,
    started: bool,
    done: bool,
    /// Where to start instead of at the bounds: forward, at the first entry not before
    /// this position; reverse, at the last entry not after it.
    from: Option<(Vec<u8>, Seq, Kind)>,
}

impl RunCursor {
    pub(crate) fn new(
        run: Arc<Run>,
        lo: Bound<Vec<u8>>,
        hi: Bound<Vec<u8>>,
        reverse: bool,
    ) -> Self {
        RunCursor {
            run,
            reverse,
            lo,
            hi,
            block: 0,
            entries: Vec::new(),
            pos: 0,
            started: false,
            done: false,
            from: None,
        }
    }

    /// Starts at the position `(key, seq, kind)` in storage order rather than at the
    /// bounds (which still end the walk): forward at the first entry not before it,
    /// reverse at the last entry not after it. Finding it reads O(log blocks) blocks,
    /// also within a key of many blocks.
    pub(crate) fn starting_at(mut self, key: &[u8], seq: Seq, kind: Kind) -> Self {
        self.from = Some((key.to_vec(), seq, kind));
        self
    }

    /// Storage order of a run entry against a position.
    fn cmp_pos(run: &Run, e: &RawEntry, key: &[u8], seq: Seq, kind: Kind) -> std::cmp::Ordering {
        run.key(e)
            .cmp(key)
            .then_with(|| seq.cmp(&e.seq))
            .then_with(|| e.kind.cmp(&kind))
    }

    fn start_from(&mut self, key: &[u8], seq: Seq, kind: Kind) -> Result<()> {
        let n = self.run.block_count();
        let b = self.run.seek_block(key, seq, kind)?;
        if self.reverse {
            if b >= n {
                self.block = n - 1;
                self.run.block(self.block, &mut self.entries)?;
                self.pos = self.entries.len();
            } else {
                self.block = b;
                self.run.block(self.block, &mut self.entries)?;
                let run = &self.run;
                self.pos = self
                    .entries
                    .partition_point(|e| Self::cmp_pos(run, e, key, seq, kind).is_le());
            }
        } else {
            if b >= n {
                self.done = true;
                return Ok(());
            }
            self.block = b;
            self.run.block(self.block, &mut self.entries)?;
            let run = &self.run;
            self.pos = self
                .entries
                .partition_point(|e| Self::cmp_pos(run, e, key, seq, kind).is_lt());
        }
        Ok(())
    }

    fn start(&mut self) -> Result<()> {
        self.started = true;
        if let Some((key, seq, kind)) = self.from.take() {
            return self.start_from(&key, seq, kind);
        }
        let run = &self.run;
        let n = run.block_count();
        if self.reverse {
            let first_past = match &self.hi {
                Bound::Included(h) => run.first_block_not(|k| k <= h.as_slice()),
                Bound::Excluded(h) => run.first_block_not(|k| k < h.as_slice()),
                Bound::Unbounded => n - 1,
            };
            self.block = first_past.min(n - 1);
            self.run.block(self.block, &mut self.entries)?;
            let run = &self.run;
            let hi = &self.hi;
            self.pos = self.entries.partition_point(|e| below_hi(run.key(e), hi));
        } else {
            let first = match &self.lo {
                Bound::Included(l) => run.first_block_not(|k| k < l.as_slice()),
                Bound::Excluded(l) => run.first_block_not(|k| k <= l.as_slice()),
                Bound::Unbounded => 0,
            };
            if first >= n {
                self.done = true;
                return Ok(());
            }
            self.block = first;
            self.run.block(self.block, &mut self.entries)?;
            let run = &self.run;
            let lo = &self.lo;
            self.pos = self.entries.partition_point(|e| !above_lo(run.key(e), lo));
        }
        Ok(())
    }

    /// The next entry within bounds.
    ///
    /// # Errors
    /// [`Error::Corrupt`] when a block is damaged.
    pub(crate) fn next_entry(&mut self) -> Result<Option<Entry>> {
        if !self.started {
            self.start()?;
        }
        loop {
            if self.done {
                return Ok(None);
            }
            if self.reverse {
                if self.pos == 0 {
                    if self.block == 0 {
                        self.done = true;
                        continue;
                    }
                    self.block -= 1;
                    self.run.block(self.block, &mut self.entries)?;
                    self.pos = self.entries.len();
                    continue;
                }
                self.pos -= 1;
                let e = self.entries[self.pos];
                let key = self.run.key(&e);
                if !above_lo(key, &self.lo) {
                    self.done = true;
                    continue;
                }
                return Ok(Some(Entry::new(key, e.seq, e.kind)));
            } else {
                if self.pos >= self.entries.len() {
                    if self.block + 1 >= self.run.block_count() {
                        self.done = true;
                        continue;
                    }
                    self.block += 1;
                    self.run.block(self.block, &mut self.entries)?;
                    self.pos = 0;
                    continue;
                }
                let e = self.entries[self.pos];
                self.pos += 1;
                let key = self.run.key(&e);
                if !below_hi(key, &self.hi) {
                    self.done = true;
                    continue;
                }
                return Ok(Some(Entry::new(key, e.seq, e.kind)));
            }
        }
    }
}
