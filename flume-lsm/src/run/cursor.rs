//! Walking a run's entries within key bounds, forward or in reverse, a block at a time.

use std::ops::Bound;
use std::sync::Arc;

use flume_core::Result;

use super::{RawEntry, Run};
use crate::entry::Entry;
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
        }
    }

    fn start(&mut self) -> Result<()> {
        self.started = true;
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
