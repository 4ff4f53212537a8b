//! State shared by the handles, the readers and the writer thread.

use std::collections::VecDeque;
use std::fs::File;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError, RwLock};

use bytes::Bytes;
use flume_core::{Error, RawRecord, ReadRange, Result, Seq};
use tokio::sync::{oneshot, watch};

use crate::segment::Segment;
use crate::Options;

/// Whether the log accepts calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum State {
    Open,
    /// `close` was called (or the last handle dropped); the writer is finishing.
    Closing {
        sync: bool,
    },
    Closed,
}

/// A request the writer thread carries out after flushing.
#[derive(Debug)]
pub(crate) enum Command {
    /// Keep the first `keep` records, drop the rest.
    Revert {
        keep: u64,
        reply: oneshot::Sender<Result<()>>,
    },
}

/// The append side, under one mutex: appended records not yet written to a segment,
/// and what the writer has been asked to do.
#[derive(Debug)]
pub(crate) struct Tail {
    pub(crate) state: State,
    /// Why the log is poisoned, once a write or sync failed.
    pub(crate) poisoned: Option<Arc<crate::writer::Failure>>,
    /// The seq the next append gets.
    pub(crate) next_seq: Seq,
    /// Seq of `pending[0]`.
    pub(crate) pending_first: Seq,
    /// Visible records not yet written, with "another record of this batch follows".
    pub(crate) pending: VecDeque<(Bytes, bool)>,
    /// Framed bytes in `pending` that the writer has not taken yet.
    pub(crate) pending_bytes: usize,
    /// Records below this seq must be synced as soon as possible (count, not seq).
    pub(crate) sync_upto: u64,
    /// Records below this seq must be written as soon as possible (count, not seq).
    pub(crate) write_upto: u64,
    pub(crate) commands: Vec<Command>,
    /// The writer waits without a timeout (nothing pending) and needs a notification.
    pub(crate) writer_idle: bool,
    /// The writer thread waits on `wake` (idle or for `max_write_delay`); when it does
    /// not, it looks at the tail again before it sleeps, so appenders need not wake it.
    pub(crate) writer_asleep: bool,
    /// `since` was moved without waking its watchers (bulk appends, or appends on the
    /// fast path within [`SINCE_INTERVAL`](crate::writer::SINCE_INTERVAL) of the last
    /// wake-up); the writer wakes them when it writes, or at `since_announce_at`.
    pub(crate) since_unannounced: bool,
    /// Until when appends on the fast path leave waking the watchers of `since` to the
    /// writer thread (the last wake-up plus `SINCE_INTERVAL`).
    pub(crate) since_quiet_until: Option<std::time::Instant>,
    /// When the writer thread next looks at `since_unannounced` and wakes the watchers
    /// of `since`; `None`: it is not on duty (the next fast append wakes them itself,
    /// or sets this and notifies the thread).
    pub(crate) since_announce_at: Option<std::time::Instant>,
    /// Sends the visible `since`; dropped when the log closes, which ends live streams.
    pub(crate) since_tx: Option<watch::Sender<Option<Seq>>>,
    /// The active segment's writable mapping, which the writer thread keeps ready for
    /// appends on the fast path; `None` without mapped writes.
    pub(crate) ahead: Option<Ahead>,
    /// Synced appends (and sync requests of appends) the last fdatasync served: how
    /// many synced appenders were waiting together. Above 1, the writer thread gathers
    /// the next group (see `writer::gather_until`), and lone synced appends no longer
    /// sync inline.
    pub(crate) last_group: u64,
    /// Whether the recent fdatasyncs (an average over about the last eight) each served
    /// one synced appender: only then does a lone synced append sync on its own thread.
    /// One lone group among many (appenders that came back slowly) does not count.
    pub(crate) groups_of_one: bool,
    /// That average, in sixteenths of an appender.
    pub(crate) group_avg16: u64,
    /// Synced appends that asked for a sync since the writer thread last took one on.
    pub(crate) sync_asks: u64,
    /// How long the last fdatasync took.
    pub(crate) last_sync: std::time::Duration,
    /// When a sync was first asked for since the writer thread last took one on.
    pub(crate) sync_asked_at: Option<std::time::Instant>,
    /// When a sync was last asked for.
    pub(crate) sync_last_ask: Option<std::time::Instant>,
}

/// Work the writer thread does on the active segment's writable mapping, off the
/// appenders' path: faulting pages in ahead of the appends (so that they take no page
/// faults) and dropping the pages behind them (so that writeback need not
/// write-protect them one TLB flush at a time).
#[derive(Debug)]
pub(crate) struct Ahead {
    pub(crate) map: Arc<crate::mmap::WriteMap>,
    /// The data's end when the work was last asked for.
    pub(crate) end: u64,
    /// The file's length (reserved space included) then: nothing is faulted in past it.
    pub(crate) reserved: u64,
    /// Bytes below this were faulted in (or asked for).
    pub(crate) populated: u64,
    /// Pages below this were dropped from the mapping (or asked for).
    pub(crate) dropped: u64,
    /// An appender asked for work the writer thread has not started.
    pub(crate) requested: bool,
}

/// Where the writer got to, for appenders and `sync` waiting on it.
#[derive(Debug, Clone, Default)]
pub(crate) struct Progress {
    /// Records written to the OS (count).
    pub(crate) written: u64,
    /// Records synced (count).
    pub(crate) durable: u64,
    pub(crate) poisoned: Option<Arc<crate::writer::Failure>>,
    pub(crate) closed: bool,
}

#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) dir: PathBuf,
    pub(crate) options: Options,
    pub(crate) tail: Mutex<Tail>,
    /// Wakes the writer thread.
    pub(crate) wake: Condvar,
    /// Records below this count are in a segment's index (read through the mapping).
    pub(crate) written: AtomicU64,
    pub(crate) closed: AtomicBool,
    pub(crate) segments: RwLock<Vec<Arc<Segment>>>,
    pub(crate) progress: watch::Sender<Progress>,
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

    /// Updates `progress`, waking its receivers only when there are any. Receivers
    /// exist only while someone waits (`FileLog::wait`, `close`), and a waiter always
    /// reads the value after it subscribed: the count is read under the channel's
    /// write lock, so a waiter either is counted or sees the new value. Saves a
    /// `notify_waiters` (eight mutexes in tokio's watch) on every unwatched write.
    pub(crate) fn publish(&self, modify: impl FnOnce(&mut Progress)) {
        self.progress.send_if_modified(|p| {
            modify(p);
            self.progress.receiver_count() > 0
        });
    }

    /// The segment holding `seq` (if any segment starts at or before it).
    pub(crate) fn segment_for(&self, seq: Seq) -> Option<Arc<Segment>> {
        let segments = self.segments();
        let i = segments.partition_point(|s| s.first_seq <= seq);
        i.checked_sub(1).map(|i| Arc::clone(&segments[i]))
    }

    /// One record, from a segment or from the not-yet-written tail.
    pub(crate) fn get(&self, seq: Seq) -> Result<Bytes> {
        if self.closed.load(Ordering::Acquire) {
            return Err(Error::Closed);
        }
        if seq >= self.written.load(Ordering::Acquire) {
            let tail = self.tail();
            if seq >= tail.next_seq {
                return Err(Error::NotFound { seq });
            }
            if seq >= tail.pending_first {
                let i = (seq - tail.pending_first) as usize;
                return Ok(tail.pending[i].0.clone());
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
        if self.closed.load(Ordering::Acquire) {
            return Err(Error::Closed);
        }
        let start = out.len();
        let mut next = first;
        while next <= last {
            let written = self.written.load(Ordering::Acquire);
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
            if next >= tail.pending_first {
                let hi = last.min(tail.next_seq.saturating_sub(1));
                if next > hi {
                    return Err(Error::NotFound { seq: next });
                }
                let from = (next - tail.pending_first) as usize;
                let to = (hi - tail.pending_first) as usize;
                out.extend(
                    tail.pending
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
