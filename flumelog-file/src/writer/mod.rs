//! The writer: takes everything appended since its last round, frames it into one
//! buffer, writes it with one `write`, syncs once for every synced append waiting, and
//! publishes the result. It owns the active segment's file; readers never wait for it
//! except for the short index update at the end of a write.
//!
//! The [`Writer`] lives behind the writer lock (a mutex; see the lock order in
//! [`shared`](crate::shared)) shared by the writer thread and the appenders
//! (leader/follower group commit). The thread waits for work *without* it, then takes
//! it to write. An appender that finds it free commits on its own thread, through one
//! entry point, [`try_commit`] (no thread hand-off); when it is busy, the appender
//! leaves its records to whoever holds it next. Appenders never wait for the writer
//! lock, so never for an fsync. Every snapshot of pending records is taken under the
//! `tail` mutex with the writer lock held, so no record is ever written twice.
//!
//! Buffered rounds copy their frames into a shared, writable mapping of the active
//! segment ([`WriteMap`]) instead of calling `pwrite`: the pages of a shared file
//! mapping are the page cache, so a copied frame is exactly as safe from a process
//! crash as a written one. The file is first made long enough with `fallocate`, in
//! large steps ([`FileLogOptions::reserve`](crate::FileLogOptions::reserve)), so that a write through
//! the mapping never lands past the end of the file or needs a block the disk does
//! not have; a failed reservation poisons the log like a failed write. Rounds that
//! end with an fsync keep using `pwrite` (and write zeros ahead, `preallocate`).
//!
//! The modules, by what they own:
//! - [`queue`]: the append queue and `since`, behind the `tail` mutex;
//! - [`schedule`]: the private commit schedule (what to write and sync, fsync
//!   statistics, group commit);
//! - [`commit`]: one round of writing and syncing, and the inline entry point;
//! - [`thread`]: the writer thread's loop, its work ahead on the mapping, closing;
//! - [`segments`]: whole segment files: sealing and starting one, trimming, revert.
//!
//! What the writer got to (written, durable, poisoned, closed) is published in one
//! place only, [`Progress`](crate::progress::Progress).

use std::sync::{Arc, Mutex, MutexGuard, PoisonError, TryLockError};

use bytes::Bytes;
use flume_core::{Result, Seq};

use crate::io::{segment_io, SegmentIo};
use crate::mmap::WriteMap;
use crate::segment::Segment;
use crate::shared::Shared;

mod commit;
pub(crate) mod queue;
pub(crate) mod schedule;
mod segments;
mod thread;

pub(crate) use queue::{Ahead, Tail};

/// How often, at most, appends on the fast path ([`Inline::Record`]) wake the
/// watchers of `since` (live streams, the view driver). `since` itself moves before
/// every append returns; only the wake-up of a task waiting for it to change is
/// coalesced, which saves a `notify_waiters` (eight mutexes in tokio's `watch`) on
/// every append of a burst.
pub(crate) const SINCE_INTERVAL: std::time::Duration = std::time::Duration::from_millis(1);

/// How far ahead of the data the writer thread faults in the writable mapping's pages
/// (see [`Ahead`]); it drops the pages behind the data in steps of this size too.
const AHEAD: u64 = 16 << 20;

/// The segment being appended to.
#[derive(Debug)]
pub(crate) struct Active {
    pub(crate) seg: Arc<Segment>,
    pub(crate) io: Box<dyn SegmentIo>,
    /// Bytes of data in the file (header included): where the next frame goes.
    pub(crate) len: u64,
    /// The file's length: `len` plus preallocated zeros (`FileLogOptions::preallocate`) and
    /// reserved space (`FileLogOptions::reserve`).
    pub(crate) file_len: u64,
    /// End of the bytes really written (data, or zeros by `preallocate`): from here to
    /// `file_len` the file is reserved space, allocated by `fallocate` but not written.
    pub(crate) zeroed: u64,
    /// Records in the segment.
    pub(crate) count: u64,
    /// Length of the readers' mapping.
    pub(crate) map_len: usize,
    /// The writer's writable mapping, for buffered rounds; `None` when mapped writes
    /// are off (`FileLogOptions::reserve == 0`, or no `fallocate` on this file system).
    pub(crate) wmap: Option<Arc<WriteMap>>,
    /// Reserving space ahead failed in this segment: reserve only on demand.
    pub(crate) reserve_failed: bool,
}

impl Active {
    /// A fresh [`Ahead`] for this segment's writable mapping, if it has one.
    fn ahead(&self) -> Option<Ahead> {
        self.wmap.as_ref().map(|map| Ahead {
            map: Arc::clone(map),
            end: self.len,
            reserved: self.file_len,
            populated: self.len,
            dropped: 0,
            requested: false,
        })
    }

    /// The active segment `seg`, open as `file`, holding `count` records in its first
    /// `len` bytes; the file is `file_len` bytes long, the readers' mapping `map_len`.
    /// Maps it for writing when `map_writes`.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new(
        seg: Arc<Segment>,
        file: std::fs::File,
        options: &crate::FileLogOptions,
        len: u64,
        file_len: u64,
        count: u64,
        map_len: usize,
        map_writes: bool,
    ) -> std::io::Result<Active> {
        let wmap = if map_writes {
            Some(Arc::new(WriteMap::new(&file, map_len)?))
        } else {
            None
        };
        Ok(Active {
            seg,
            io: segment_io(file, options),
            len,
            file_len,
            zeroed: len,
            count,
            map_len,
            wmap,
            reserve_failed: false,
        })
    }
}

/// The writer: the active segment and the buffers of a round. Only the holder of the
/// writer lock touches it.
#[derive(Debug)]
pub(crate) struct Writer {
    pub(crate) shared: Arc<Shared>,
    pub(crate) active: Active,
    buf: Vec<u8>,
    offsets: Vec<u32>,
    /// This round ends with an fdatasync: worth preallocating for (a round that only
    /// writes would write the zeros and then the data over them, for nothing).
    syncing: bool,
    /// Buffered rounds write through a mapping (`FileLogOptions::reserve > 0`, and the file
    /// system supports `fallocate`).
    map_writes: bool,
    /// Test builds: where `revert` stops, between lowering the queue and touching the
    /// files, until the test lets it go on.
    #[cfg(test)]
    pub(crate) revert_pause: Option<segments::Pause>,
}

impl Writer {
    pub(crate) fn new(shared: Arc<Shared>, active: Active) -> Self {
        let map_writes = active.wmap.is_some();
        Writer {
            shared,
            active,
            buf: Vec::new(),
            offsets: Vec::new(),
            syncing: false,
            map_writes,
            #[cfg(test)]
            revert_pause: None,
        }
    }

    /// Hands the active segment's writable mapping to the writer thread, for its work
    /// ahead of the fast path ([`Ahead`]); called whenever the active segment changes.
    pub(crate) fn set_ahead(&self) {
        self.shared.tail().ahead = self.active.ahead();
    }

    /// Poisons the log: nothing more is written.
    fn poison(&mut self, reason: crate::progress::Failure) {
        tracing::error!(reason = %reason, "flumelog-file: write failed; the log is poisoned");
        self.shared.progress.poison(reason);
    }

    /// The error that poisoned the log.
    fn poisoned_error(&self) -> flume_core::Error {
        self.shared.progress.poisoned_error()
    }
}

/// What an appender asks the writer to do on its own thread.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Inline<'a> {
    /// Frame this buffered record straight into the active segment's mapping, without
    /// queuing it (the shortest way: nothing else queued, and it fits the reserved,
    /// mapped space). The caller checked its size against `max_record_size`.
    /// `expected`: a conditional append's tail, compared under the tail lock.
    Record {
        record: &'a Bytes,
        expected: Option<Option<Seq>>,
    },
    /// Write everything queued, at least up to `end` (a count), with one `write` and
    /// no fsync (a buffered append that must reach the OS).
    Write { end: u64 },
    /// Write and sync the queued records `first..end` (seqs), which must be all that
    /// is queued: a lone synced append. Runs inside `block_in_place`.
    Sync { first: Seq, end: u64 },
}

/// The one entry point of the fast paths: does `ask` on the calling thread if the
/// writer lock is free. `None`: the writer is busy, or the round cannot be done
/// inline (a segment must be sealed, other appends are queued, a command waits, the
/// log is closing); the writer thread then takes it (a queued record waits for it; an
/// [`Inline::Record`] must be queued by the caller). `Some(Ok(seq))`: done (`seq` is
/// the record's for [`Inline::Record`], the first of the range otherwise);
/// `Some(Err(Conflict))`: a conditional [`Inline::Record`] found another tail (nothing
/// written); `Some(Err(_))` otherwise: it failed, and the log is poisoned.
pub(crate) fn try_commit(writer: &Mutex<Writer>, ask: Inline<'_>) -> Option<Result<Seq>> {
    let sync = matches!(ask, Inline::Sync { .. });
    if sync && !can_block_in_place() {
        // (Polled off a multi-thread runtime after all: the writer thread syncs.)
        return None;
    }
    let mut writer = match writer.try_lock() {
        Ok(writer) => writer,
        Err(TryLockError::Poisoned(p)) => p.into_inner(),
        Err(TryLockError::WouldBlock) => return None,
    };
    if sync {
        tokio::task::block_in_place(|| writer.commit_inline(ask))
    } else {
        writer.commit_inline(ask)
    }
}

/// Whether the calling thread may block for an fsync with `block_in_place` (a worker
/// of a multi-thread tokio runtime).
pub(crate) fn can_block_in_place() -> bool {
    tokio::runtime::Handle::try_current()
        .is_ok_and(|h| h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread)
}

/// Locks the writer (the writer thread only; appenders use [`try_commit`]). Its state
/// stays consistent across a panic (a failed write poisons the log instead), so a
/// poisoned mutex is used as it is.
pub(crate) fn lock(writer: &Mutex<Writer>) -> MutexGuard<'_, Writer> {
    writer.lock().unwrap_or_else(PoisonError::into_inner)
}
