//! State shared by the handles, the readers and the writer thread, and the crate's
//! lock order.
//!
//! # Locks
//!
//! Every lock of the crate, in the order they may be taken: a thread holding one
//! takes only locks further down the list.
//!
//! 1. `Handle::thread` (`log.rs`): the writer thread's join handle; taken alone, by
//!    the last handle's drop, which holds it while it joins the thread (so it waits
//!    for the writer lock's holder).
//! 2. `Handle::writer` (`log.rs`), *the writer lock*: the [`Writer`](crate::writer::Writer),
//!    i.e. the right to write and sync segment files. Held for a whole round, fsyncs,
//!    segment rotation and revert included. Only the writer thread ever blocks on it;
//!    appenders only try it ([`try_commit`](crate::writer::try_commit)) and queue
//!    their records when it is busy, so no appender or reader ever waits for an fsync.
//! 3. [`Shared::tail`]: the append queue, `since` and the commit schedule
//!    ([`Tail`]). Held briefly, never across a system call that can block for long
//!    (no fsync, no file creation or rename, no `fallocate`); the fast path copies one
//!    frame into the mapping under it. The writer thread's condition variable
//!    [`Shared::wake`] is paired with it.
//! 4. [`Shared::segments`]: the list of segments. Held briefly (to look a segment up,
//!    to add or remove one).
//! 5. A segment's state (`Segment::state` in `segment.rs`): its mapping and index.
//!    Held briefly by readers (read) and by the writer to publish records (write).
//!
//! Leaves, taken with no other crate lock held by their own code, and taking none:
//! [`Shared::lock_file`] (released when the log closes) and the tokio watch channels
//! (`since`, `durable`, the progress doorbell), which may be sent to under the
//! `tail` lock. [`Progress`] itself is lock-free for
//! readers.

use std::fs::File;
use std::path::PathBuf;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError, RwLock};

use bytes::Bytes;
use flume_core::{Error, RawRecord, ReadRange, Result, Seq};
use tokio::sync::watch;

use crate::progress::Progress;
use crate::segment::Segment;
use crate::writer::queue::State;
use crate::writer::Tail;
use crate::FileLogOptions;

#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) dir: PathBuf,
    pub(crate) options: FileLogOptions,
    /// The append side (lock 3 of the lock order).
    pub(crate) tail: Mutex<Tail>,
    /// Wakes the writer thread.
    pub(crate) wake: Condvar,
    /// Lock 4 of the lock order.
    pub(crate) segments: RwLock<Vec<Arc<Segment>>>,
    /// Written, durable, poisoned, closed: what the writer got to.
    pub(crate) progress: Progress,
    pub(crate) since_rx: watch::Receiver<Option<Seq>>,
    pub(crate) durable_rx: watch::Receiver<Option<Seq>>,
    pub(crate) lock_file: Mutex<Option<File>>,
    pub(crate) recovery: Option<crate::RecoveryReport>,
}

impl Shared {
    pub(crate) fn tail(&self) -> MutexGuard<'_, Tail> {
        self.tail.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub(crate) fn segments(&self) -> std::sync::RwLockReadGuard<'_, Vec<Arc<Segment>>> {
        self.segments.read().unwrap_or_else(PoisonError::into_inner)
    }

    pub(crate) fn segments_mut(&self) -> std::sync::RwLockWriteGuard<'_, Vec<Arc<Segment>>> {
        self.segments
            .write()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// `Ok` when the log accepts calls: open (not closing, not closed) and not
    /// poisoned; `tail` is the locked tail.
    pub(crate) fn check_open(&self, tail: &Tail) -> Result<()> {
        if tail.queue.state != State::Open {
            return Err(Error::Closed);
        }
        match self.progress.poisoned() {
            Some(failure) => Err(failure.to_error()),
            None => Ok(()),
        }
    }

    /// Whether the log is open: neither closed nor closing (poisoned or not).
    pub(crate) fn accepting(&self) -> bool {
        !self.progress.closed() && self.tail().queue.state == State::Open
    }

    /// The segment holding `seq` (if any segment starts at or before it).
    pub(crate) fn segment_for(&self, seq: Seq) -> Option<Arc<Segment>> {
        let segments = self.segments();
        let i = segments.partition_point(|s| s.first_seq <= seq);
        i.checked_sub(1).map(|i| Arc::clone(&segments[i]))
    }

    /// One record, from a segment or from the not-yet-written tail.
    pub(crate) fn get(&self, seq: Seq) -> Result<Bytes> {
        if self.progress.closed() {
            return Err(Error::Closed);
        }
        if seq >= self.progress.written() {
            let tail = self.tail();
            let queue = &tail.queue;
            if seq >= queue.next_seq {
                return Err(Error::NotFound { seq });
            }
            if seq >= queue.pending_first {
                let i = (seq - queue.pending_first) as usize;
                return Ok(queue.pending[i].0.clone());
            }
            // Written (and taken out of `pending`) since we looked: read the segment.
        }
        self.segment_for(seq)
            .ok_or(Error::NotFound { seq })?
            .read(seq)
    }
}

impl ReadRange for Shared {
    fn read_range(
        &self,
        first: Seq,
        last: Seq,
        reverse: bool,
        out: &mut Vec<RawRecord>,
    ) -> Result<()> {
        if self.progress.closed() {
            return Err(Error::Closed);
        }
        let start = out.len();
        let mut next = first;
        while next <= last {
            let written = self.progress.written();
            if next < written {
                let seg = self
                    .segment_for(next)
                    .ok_or(Error::NotFound { seq: next })?;
                let seg_last = seg.first_seq + seg.count();
                let hi = last.min(written - 1).min(seg_last.saturating_sub(1));
                if hi < next {
                    return Err(Error::NotFound { seq: next });
                }
                seg.read_into(next, hi, out)?;
                next = hi + 1;
                continue;
            }
            let tail = self.tail();
            let queue = &tail.queue;
            if next >= queue.pending_first {
                let hi = last.min(queue.next_seq.saturating_sub(1));
                if next > hi {
                    return Err(Error::NotFound { seq: next });
                }
                let from = (next - queue.pending_first) as usize;
                let to = (hi - queue.pending_first) as usize;
                out.extend(
                    queue
                        .pending
                        .range(from..=to)
                        .zip(next..)
                        .map(|((b, _), seq)| (seq, b.clone())),
                );
                next = hi + 1;
            }
            // Otherwise the writer wrote `next` since we loaded `written`; loop.
        }
        if reverse {
            out[start..].reverse();
        }
        Ok(())
    }
}
