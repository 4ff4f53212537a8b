//! The writer: takes everything appended since its last round, frames it into one
//! buffer, writes it with one `write`, syncs once for every synced append waiting, and
//! publishes the result. It owns the active segment's file; readers never wait for it
//! except for the short index update at the end of a write.
//!
//! The `Writer` lives behind a mutex shared by the writer thread and the appenders
//! (leader/follower group commit). The thread waits for work *without* the mutex, then
//! takes it to write. A buffered appender that finds the mutex free writes its own
//! records inline (no thread hand-off) unless a segment must be sealed; when the mutex
//! is busy it leaves its records to whoever holds it next. Every snapshot of pending
//! records is taken under the mutex, so no record is ever written twice. fsyncs happen
//! on the writer thread, except for a lone synced append on a multi-thread runtime,
//! which syncs on its own thread ([`Writer::sync_inline`]).
//!
//! Buffered rounds copy their frames into a shared, writable mapping of the active
//! segment ([`WriteMap`]) instead of calling `pwrite`: the pages of a shared file
//! mapping are the page cache, so a copied frame is exactly as safe from a process
//! crash as a written one. The file is first made long enough with `fallocate`, in
//! large steps ([`Options::reserve`](crate::Options::reserve)), so that a write through
//! the mapping never lands past the end of the file or needs a block the disk does
//! not have; a failed reservation poisons the log like a failed write. Rounds that
//! end with an fsync keep using `pwrite` (and write zeros ahead, `preallocate`).
//!
//! The common case, one buffered record appended while nothing else is queued, takes
//! a shorter path still ([`Writer::append_one`]): the appender frames the record
//! straight into the mapping under the tail lock, never queuing it. Its `since` moves
//! at once, but its watchers are woken at most once per [`SINCE_INTERVAL`]: the first
//! append of a burst wakes them itself, the writer thread wakes them for the rest.

use std::fs;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Instant;

use bytes::Bytes;
use flume_core::{Error, Result, Seq};
use tokio::sync::watch;

use crate::format::{self, HEADER_LEN};
use crate::io::{segment_io, SegmentIo};
use crate::mmap::{self, WriteMap};
use crate::segment::{self, SegState, Segment};
use crate::shared::{Ahead, Command, Shared, State, Tail};
use crate::tailmark::{self, TailMark};

/// How often, at most, appends on the fast path ([`Writer::append_one`]) wake the
/// watchers of `since` (live streams, the view driver). `since` itself moves before
/// every append returns; only the wake-up of a task waiting for it to change is
/// coalesced, which saves a `notify_waiters` (eight mutexes in tokio's `watch`) on
/// every append of a burst.
pub(crate) const SINCE_INTERVAL: std::time::Duration = std::time::Duration::from_millis(1);

/// The segment being appended to.
#[derive(Debug)]
pub(crate) struct Active {
    pub(crate) seg: Arc<Segment>,
    pub(crate) io: Box<dyn SegmentIo>,
    /// Bytes of data in the file (header included): where the next frame goes.
    pub(crate) len: u64,
    /// The file's length: `len` plus preallocated zeros (`Options::preallocate`) and
    /// reserved space (`Options::reserve`).
    pub(crate) file_len: u64,
    /// End of the bytes really written (data, or zeros by `preallocate`): from here to
    /// `file_len` the file is reserved space, allocated by `fallocate` but not written.
    pub(crate) zeroed: u64,
    /// Records in the segment.
    pub(crate) count: u64,
    /// Length of the readers' mapping.
    pub(crate) map_len: usize,
    /// The writer's writable mapping, for buffered rounds; `None` when mapped writes
    /// are off (`Options::reserve == 0`, or no `fallocate` on this file system).
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
        options: &crate::Options,
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

/// What one round of the writer does.
#[derive(Debug)]
struct Job {
    entries: Vec<(Bytes, bool)>,
    first_seq: Seq,
    sync_upto: u64,
    /// Synced appends this round's fdatasync serves (see `Tail::last_group`).
    sync_asks: u64,
    commands: Vec<Command>,
    state: State,
}

#[derive(Debug)]
pub(crate) struct Writer {
    pub(crate) shared: Arc<Shared>,
    pub(crate) active: Active,
    pub(crate) durable_tx: watch::Sender<Option<Seq>>,
    /// Records synced (count).
    pub(crate) durable: u64,
    buf: Vec<u8>,
    offsets: Vec<u32>,
    /// This round ends with an fdatasync: worth preallocating for (a round that only
    /// writes would write the zeros and then the data over them, for nothing).
    syncing: bool,
    /// Buffered rounds write through a mapping (`Options::reserve > 0`, and the file
    /// system supports `fallocate`).
    map_writes: bool,
}

/// An I/O failure that poisons the log: what failed, on which file, and the kind of
/// the OS error (what [`Error::Poisoned`] lets callers match).
#[derive(Debug)]
pub(crate) struct Failure {
    pub(crate) reason: String,
    pub(crate) kind: Option<std::io::ErrorKind>,
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.reason)
    }
}

impl Failure {
    /// A failure reported as a flume error (an I/O error keeps its kind).
    fn from_error(e: &Error) -> Failure {
        let kind = match e {
            Error::Io { source, .. } => Some(source.kind()),
            Error::Poisoned { kind, .. } => *kind,
            _ => None,
        };
        Failure {
            reason: e.to_string(),
            kind,
        }
    }
}

fn failure(what: &str, path: &std::path::Path, e: std::io::Error) -> Failure {
    Failure {
        reason: format!("{what} {} failed: {e}", path.display()),
        kind: Some(e.kind()),
    }
}

impl Writer {
    pub(crate) fn new(
        shared: Arc<Shared>,
        active: Active,
        durable_tx: watch::Sender<Option<Seq>>,
        durable: u64,
    ) -> Self {
        let map_writes = active.wmap.is_some();
        Writer {
            shared,
            active,
            durable_tx,
            durable,
            buf: Vec::new(),
            offsets: Vec::new(),
            syncing: false,
            map_writes,
        }
    }

    /// Hands the active segment's writable mapping to the writer thread, for its work
    /// ahead of the fast path ([`Ahead`]); called whenever the active segment changes.
    pub(crate) fn set_ahead(&self) {
        self.shared.tail().ahead = self.active.ahead();
    }

    /// The writer thread's main loop; returns once the log is closed.
    pub(crate) fn run(writer: Arc<Mutex<Writer>>, shared: Arc<Shared>) {
        let mut entries = Vec::new();
        let mut synced_at = None;
        loop {
            let work = wait_for_work(&shared, synced_at.take());
            let mut w = lock(&writer);
            if !work {
                w.finish();
                return;
            }
            let mut job = w.take_job(std::mem::take(&mut entries));
            let durable_before = w.durable;
            let outcome = w.execute(&mut job);
            if w.durable != durable_before {
                synced_at = Some(Instant::now());
            }
            if let Err(reason) = outcome {
                w.poison(reason);
            }
            if let State::Closing { .. } = job.state {
                let tail = shared.tail();
                let idle = tail.pending.is_empty() && tail.commands.is_empty();
                drop(tail);
                if idle {
                    w.finish();
                    return;
                }
            }
            drop(w);
            job.entries.clear();
            entries = job.entries;
        }
    }

    /// Writes the pending records on the calling (appending) thread, if that can be done
    /// with one `write` and no fsync. Returns whether everything appended up to `end`
    /// (a count) is now written; `false` leaves the work to the writer thread.
    pub(crate) fn write_inline(&mut self, end: u64) -> bool {
        if self.shared.written.load(Ordering::Acquire) >= end {
            return true;
        }
        let mut job = {
            let mut tail = self.shared.tail();
            if tail.poisoned.is_some() || tail.state != State::Open || !tail.commands.is_empty() {
                return false;
            }
            let bytes: u64 = tail
                .pending
                .iter()
                .map(|(b, _)| format::framed_len(b.len()) as u64)
                .sum();
            let has_records = self.active.count > 0;
            if has_records && self.active.len + bytes > self.shared.options.segment_size {
                // Sealing a segment takes an fsync: the writer thread's job.
                return false;
            }
            tail.pending_bytes = 0;
            Job {
                entries: tail.pending.iter().cloned().collect(),
                first_seq: tail.pending_first,
                sync_upto: 0,
                sync_asks: 0,
                commands: Vec::new(),
                state: tail.state,
            }
        };
        match self.execute(&mut job) {
            Ok(()) => self.shared.written.load(Ordering::Acquire) >= end,
            Err(reason) => {
                self.poison(reason);
                false
            }
        }
    }

    /// Appends `record` at the default buffered durability on the calling thread, the
    /// shortest way: when nothing else is queued and the record fits the active
    /// segment's reserved, mapped space, it is framed straight into the mapping (no
    /// system call) and published to readers, all under the tail lock, so that no
    /// reader can see its seq before its bytes. Returns its seq, or the error that
    /// poisoned the log; `None` when the general path must take it (the caller then
    /// queues it). The caller checked its size against `max_record_size`.
    pub(crate) fn append_one(&mut self, record: &Bytes) -> Option<Result<Seq>> {
        if self.shared.closed.load(Ordering::Acquire) {
            // Closed (and trimmed) already: reserve nothing more.
            return None;
        }
        let at = self.active.len;
        let end = at + format::framed_len(record.len()) as u64;
        if self.active.count > 0 && end > self.shared.options.segment_size {
            // Sealing a segment takes an fsync: the writer thread's job.
            return None;
        }
        match self.reserve_for(end) {
            Ok(true) => {}
            Ok(false) => return None,
            Err(reason) => {
                self.poison(reason);
                return Some(Err(poisoned(&self.shared.tail().poisoned)));
            }
        }
        let mut tail = self.shared.tail();
        if tail.state != State::Open
            || tail.poisoned.is_some()
            || !tail.pending.is_empty()
            || !tail.commands.is_empty()
        {
            return None;
        }
        let map = self.active.wmap.as_deref()?;
        self.buf.clear();
        format::encode_frame(&mut self.buf, record, false);
        if let Err(e) = self.active.io.write_mapped(map, &self.buf, at) {
            drop(tail);
            self.poison(failure("write to", &self.active.seg.path, e));
            return Some(Err(poisoned(&self.shared.tail().poisoned)));
        }
        // The next record goes right after this one: have its cache lines ready.
        map.prefetch(end, 512);
        self.active.len = end;
        self.active.zeroed = self.active.zeroed.max(end);
        self.active.count += 1;
        {
            let mut state = self.active.seg.write_state();
            state.offsets.push(at as u32);
            state.end = end;
        }
        let seq = tail.next_seq;
        tail.next_seq = seq + 1;
        tail.pending_first = seq + 1;
        self.shared.written.store(seq + 1, Ordering::Release);
        let mut wake = move_since(&mut tail, seq);
        if let Some(ahead) = &mut tail.ahead {
            let want = (end + AHEAD / 2).min(self.active.file_len);
            if !ahead.requested && (ahead.populated < want || end >= ahead.dropped + AHEAD) {
                ahead.requested = true;
                ahead.end = end;
                ahead.reserved = self.active.file_len;
                if tail.writer_asleep {
                    tail.writer_idle = false;
                    wake = true;
                }
            }
        }
        drop(tail);
        if wake {
            self.shared.wake.notify_one();
        }
        Some(Ok(seq))
    }

    /// Writes the pending records and syncs them on the calling thread: a synced appender
    /// that found the writer free (inside `block_in_place`). Returns whether everything
    /// appended up to `end` (a count) is now durable; `false` leaves the work to the
    /// writer thread.
    pub(crate) fn sync_inline(&mut self, first: u64, end: u64) -> bool {
        if self.durable >= end {
            return true;
        }
        let mut job = {
            let mut tail = self.shared.tail();
            if tail.poisoned.is_some()
                || tail.state != State::Open
                || !tail.commands.is_empty()
                || tail.pending_first != first
                || tail.next_seq != end
                || !tail.groups_of_one
            {
                // Other appends are queued with this one: the writer thread commits
                // them together (group commit).
                return false;
            }
            tail.pending_bytes = 0;
            tail.sync_upto = tail.sync_upto.max(end);
            Job {
                entries: tail.pending.iter().cloned().collect(),
                first_seq: tail.pending_first,
                sync_upto: tail.sync_upto,
                sync_asks: 1,
                commands: Vec::new(),
                state: tail.state,
            }
        };
        match self.execute(&mut job) {
            Ok(()) => self.durable >= end,
            Err(reason) => {
                self.poison(reason);
                false
            }
        }
    }

    /// Takes a snapshot of the pending records and requests. Called with the writer
    /// mutex held, so that no one else writes the same records.
    fn take_job(&self, mut entries: Vec<(Bytes, bool)>) -> Job {
        let mut tail = self.shared.tail();
        tail.sync_asked_at = None;
        let sync_asks = std::mem::take(&mut tail.sync_asks);
        entries.extend(tail.pending.iter().cloned());
        tail.pending_bytes = 0;
        Job {
            sync_asks,
            entries,
            first_seq: tail.pending_first,
            sync_upto: tail.sync_upto,
            commands: std::mem::take(&mut tail.commands),
            state: tail.state,
        }
    }
}

/// How far ahead of the data the writer thread faults in the writable mapping's pages
/// (see [`Ahead`]); it drops the pages behind the data in steps of this size too.
const AHEAD: u64 = 16 << 20;

/// Does the work appenders asked for on the writable mapping ([`Ahead`]), without the
/// tail lock (which it takes again before it returns). Best effort: a failure only
/// means that appends take the page faults themselves.
fn work_ahead<'a>(shared: &'a Shared, mut tail: MutexGuard<'a, Tail>) -> MutexGuard<'a, Tail> {
    let Some(ahead) = tail.ahead.as_mut().filter(|a| a.requested) else {
        return tail;
    };
    ahead.requested = false;
    let map = Arc::clone(&ahead.map);
    let populate = ahead.populated.max(ahead.end)..(ahead.end + AHEAD).min(ahead.reserved);
    ahead.populated = ahead.populated.max(populate.end);
    let unmap = ahead.dropped..ahead.end;
    ahead.dropped = ahead.dropped.max(ahead.end);
    drop(tail);
    if !populate.is_empty() {
        if let Err(e) = map.populate(populate.start, populate.end - populate.start) {
            tracing::trace!(error = %e, "flumelog-file: could not fault in the mapping ahead");
        }
    }
    if !unmap.is_empty() {
        if let Err(e) = map.unmap_below(unmap.start, unmap.end) {
            tracing::trace!(error = %e, "flumelog-file: could not drop mapped pages behind");
        }
    }
    shared.tail()
}

/// Moves `since` to `last` for an append on the fast path. Wakes its watchers when
/// none were woken in the last [`SINCE_INTERVAL`]; otherwise leaves that to the writer
/// thread, at the end of the interval. Returns whether the writer thread must be
/// notified (it sleeps without a timeout).
fn move_since(tail: &mut Tail, last: Seq) -> bool {
    let announce = !tail.since_unannounced && {
        let now = Instant::now();
        match tail.since_quiet_until {
            Some(until) if now < until => false,
            _ => {
                tail.since_quiet_until = Some(now + SINCE_INTERVAL);
                true
            }
        }
    };
    if let Some(tx) = &tail.since_tx {
        tx.send_if_modified(|since| {
            *since = Some(last);
            announce
        });
    }
    if announce || tail.since_unannounced {
        return false;
    }
    tail.since_unannounced = true;
    tail.since_announce_at = tail.since_quiet_until;
    if tail.writer_idle {
        tail.writer_idle = false;
        return tail.writer_asleep;
    }
    false
}

/// Wakes the watchers of `since` if it moved without waking them.
fn announce_since(tail: &mut Tail) {
    if std::mem::take(&mut tail.since_unannounced) {
        if let Some(tx) = &tail.since_tx {
            tx.send_modify(|_| {});
        }
    }
}

/// Locks the writer. Its state stays consistent across a panic (a failed write poisons
/// the log instead), so a poisoned mutex is used as it is.
pub(crate) fn lock(writer: &Mutex<Writer>) -> MutexGuard<'_, Writer> {
    writer.lock().unwrap_or_else(PoisonError::into_inner)
}

/// How long the writer thread keeps looking for the next synced append after an fsync
/// before it sleeps: a synced appender usually appends again within microseconds of
/// its acknowledgement, and finding that append without a sleep and a wake-up takes
/// tens of microseconds off its latency. The thread yields the CPU while it looks.
const SPIN_AFTER_SYNC: std::time::Duration = std::time::Duration::from_micros(300);

/// Until when the writer thread waits before syncing, to gather the next group of
/// synced appenders: when the last fdatasync served several of them (they come back
/// together, each with its next append, within about the time of one fdatasync) and
/// fewer than that await a sync now, it waits for the rest, at most as long as
/// the last fdatasync took (and never more than [`MAX_GATHER`]) after the first asked.
/// Groups count synced appends, not records: buffered appends between two synced ones
/// do not make a lone synced appender wait.
/// Without this, the first appender back gets a sync of its own and the others wait
/// for it to end. `None`: sync now.
fn gather_until(tail: &Tail, durable: u64) -> Option<Instant> {
    gather_policy(
        tail.sync_asks,
        tail.sync_upto > durable,
        tail.last_group,
        tail.last_sync,
        tail.sync_asked_at,
        tail.sync_last_ask,
    )
}

/// [`gather_until`] on its inputs: synced appends waiting, whether a sync is asked
/// for, the last group's size and fdatasync time, when the sync was first and last
/// asked for. The wait also ends [`GATHER_GAP`] after the last ask: when the appenders
/// stop coming back quickly (a loaded machine), waiting longer only delays them.
fn gather_policy(
    waiting: u64,
    asked: bool,
    last_group: u64,
    last_sync: std::time::Duration,
    first_ask: Option<Instant>,
    last_ask: Option<Instant>,
) -> Option<Instant> {
    if !asked || last_group <= 1 || waiting >= last_group {
        return None;
    }
    let window = first_ask? + last_sync.min(MAX_GATHER);
    Some(last_ask.map_or(window, |t| window.min(t + GATHER_GAP)))
}

/// How long the writer thread waits for the next synced appender of a group after the
/// last one came.
const GATHER_GAP: std::time::Duration = std::time::Duration::from_micros(50);

/// The longest a synced append waits for others to share its fdatasync.
const MAX_GATHER: std::time::Duration = std::time::Duration::from_millis(1);

/// Waits until there is work for the writer thread. `false` when the log is poisoned
/// and closing (nothing more will be written). `synced_at`: when the last round ended
/// with an fsync (see [`SPIN_AFTER_SYNC`]).
fn wait_for_work(shared: &Shared, synced_at: Option<Instant>) -> bool {
    let delay = shared.options.max_write_delay;
    let spin_until = synced_at.map(|t| t + SPIN_AFTER_SYNC);
    let mut tail = shared.tail();
    let mut waited = false;
    loop {
        if tail.poisoned.is_some() {
            // Nothing more is written; answer commands, wait for close.
            announce_since(&mut tail);
            tail.since_announce_at = None;
            let reason = tail.poisoned.clone();
            for Command::Revert { reply, .. } in tail.commands.drain(..) {
                let _ = reply.send(Err(poisoned(&reason)));
            }
            if tail.state != State::Open {
                return false;
            }
            tail.writer_idle = true;
            tail.writer_asleep = true;
            tail = shared.wake.wait(tail).unwrap_or_else(|e| e.into_inner());
            tail.writer_asleep = false;
            tail.writer_idle = false;
            continue;
        }
        if tail.ahead.as_ref().is_some_and(|a| a.requested) {
            tail = work_ahead(shared, tail);
            continue;
        }
        // Appends on the fast path left waking the watchers of `since` to us.
        let mut announce_at = tail.since_announce_at;
        if let Some(at) = announce_at {
            let now = Instant::now();
            if now >= at {
                if tail.since_unannounced {
                    announce_since(&mut tail);
                    // Stay on duty for one more interval: appends of an ongoing
                    // burst then need not wake this thread.
                    tail.since_quiet_until = Some(now + SINCE_INTERVAL);
                    announce_at = tail.since_quiet_until;
                } else {
                    announce_at = None;
                }
                tail.since_announce_at = announce_at;
            }
        }
        let has_pending = !tail.pending.is_empty();
        let durable = shared.progress.borrow().durable;
        let gathering = gather_until(&tail, durable).filter(|&t| Instant::now() < t);
        let urgent = tail.state != State::Open
            || tail.sync_upto > durable && gathering.is_none()
            || tail.write_upto > tail.pending_first && has_pending
            || tail.pending_bytes >= shared.options.write_buffer_size
            || !tail.commands.is_empty();
        if urgent || (has_pending && gathering.is_none() && (waited || delay.is_zero())) {
            break;
        }
        if let Some(until) = gathering {
            // Appenders notify us (we are asleep) as they come.
            tail = sleep(
                shared,
                tail,
                until.saturating_duration_since(Instant::now()),
            );
        } else if has_pending {
            waited = true;
            tail = sleep(shared, tail, delay);
        } else if spin_until.is_some_and(|t| Instant::now() < t) {
            drop(tail);
            std::thread::yield_now();
            tail = shared.tail();
        } else if let Some(at) = announce_at {
            // Not idle: appenders need not notify us, we look again at `at`.
            tail = sleep(shared, tail, at.saturating_duration_since(Instant::now()));
        } else {
            tail.writer_idle = true;
            tail.writer_asleep = true;
            tail = shared.wake.wait(tail).unwrap_or_else(|e| e.into_inner());
            tail.writer_asleep = false;
            tail.writer_idle = false;
        }
    }
    true
}

/// Sleeps on the writer's condition variable for at most `timeout` (marked asleep, so
/// that appenders notify it), and returns the tail lock again.
fn sleep<'a>(
    shared: &'a Shared,
    mut tail: MutexGuard<'a, Tail>,
    timeout: std::time::Duration,
) -> MutexGuard<'a, Tail> {
    tail.writer_asleep = true;
    let mut tail = shared
        .wake
        .wait_timeout(tail, timeout)
        .unwrap_or_else(|e| e.into_inner())
        .0;
    tail.writer_asleep = false;
    tail
}

impl Writer {
    fn execute(&mut self, job: &mut Job) -> Result<(), Failure> {
        if !job.entries.is_empty() {
            let started = Instant::now();
            let bytes_before = self.active.len;
            self.syncing = job.sync_upto > self.durable;
            let outcome = self.write_entries(&job.entries, job.first_seq);
            self.syncing = false;
            outcome?;
            let written = job.first_seq + job.entries.len() as u64;
            // Readers find everything below `written` in the segments now.
            let mut tail = self.shared.tail();
            let n = job.entries.len().min(tail.pending.len());
            tail.pending.drain(..n);
            tail.pending_first += n as u64;
            announce_since(&mut tail);
            drop(tail);
            self.shared.publish(|p| p.written = written);
            tracing::trace!(
                records = job.entries.len(),
                bytes = self.active.len.saturating_sub(bytes_before),
                elapsed_us = started.elapsed().as_micros() as u64,
                "flumelog-file: flushed"
            );
        }
        let written = self.shared.written.load(Ordering::Acquire);
        let must_sync =
            job.sync_upto > self.durable || matches!(job.state, State::Closing { sync: true });
        if must_sync && written > self.durable {
            let started = Instant::now();
            self.active
                .io
                .sync_data()
                .map_err(|e| failure("fdatasync of", &self.active.seg.path, e))?;
            {
                let mut tail = self.shared.tail();
                tail.last_group = job.sync_asks;
                if job.sync_asks > 0 {
                    // An average over about the last eight groups (a lone synced
                    // append that synced inline counts as a group of one).
                    tail.group_avg16 = (tail.group_avg16 * 7 + job.sync_asks * 16) / 8;
                    tail.groups_of_one = tail.group_avg16 <= 20;
                }
                tail.last_sync = started.elapsed();
            }
            self.set_durable(written);
            tracing::trace!(
                durable = written,
                elapsed_us = started.elapsed().as_micros() as u64,
                "flumelog-file: synced"
            );
        } else if must_sync {
            // Nothing unsynced (or nothing at all): the request is already met.
            self.set_durable(self.durable.max(written.min(job.sync_upto)));
        }
        for command in job.commands.drain(..) {
            match command {
                Command::Revert { keep, reply } => {
                    let result = self.revert(keep);
                    let failed = result.as_ref().err().map(Failure::from_error);
                    let _ = reply.send(result);
                    if let Some(reason) = failed {
                        return Err(reason);
                    }
                }
            }
        }
        Ok(())
    }

    fn set_durable(&mut self, durable: u64) {
        // `durable` first: an appender woken by `progress` finds it up to date.
        if durable != self.durable {
            self.durable = durable;
            self.durable_tx.send_replace(durable.checked_sub(1));
        }
        self.shared.publish(|p| p.durable = durable);
    }

    /// Frames and writes `entries` (whole batches), rotating segments as needed, and
    /// publishes them to readers through the segment indexes and `written`.
    fn write_entries(&mut self, entries: &[(Bytes, bool)], first_seq: Seq) -> Result<(), Failure> {
        let segment_size = self.shared.options.segment_size;
        self.buf.clear();
        self.offsets.clear();
        let mut seq = first_seq;
        let mut i = 0;
        while i < entries.len() {
            // The batch starting at `i` ends at the first entry without "more".
            let mut j = i;
            let mut size = 0u64;
            loop {
                size += format::framed_len(entries[j].0.len()) as u64;
                if !entries[j].1 || j + 1 == entries.len() {
                    break;
                }
                j += 1;
            }
            let pos = self.active.len + self.buf.len() as u64;
            let has_records = self.active.count > 0 || !self.offsets.is_empty();
            if has_records && pos + size > segment_size {
                self.commit(seq)?;
                self.rotate(seq)?;
            }
            for (payload, more) in &entries[i..=j] {
                let at = self.active.len + self.buf.len() as u64;
                self.offsets.push(at as u32);
                format::encode_frame(&mut self.buf, payload, *more);
                seq += 1;
            }
            i = j + 1;
        }
        self.commit(seq)?;
        if self.buf.capacity() > 16 << 20 {
            self.buf = Vec::new();
        }
        Ok(())
    }

    /// Writes the buffer to the active segment and publishes its records; `next_seq` is
    /// the seq after the last buffered record.
    fn commit(&mut self, next_seq: Seq) -> Result<(), Failure> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let seg = Arc::clone(&self.active.seg);
        let path = &seg.path;
        let at = self.active.len;
        let new_len = at + self.buf.len() as u64;
        // Rounds that sync write as they always did; the others copy into the mapping.
        let mapped = !self.syncing && self.reserve_for(new_len)?;
        match self.active.wmap.as_mut() {
            Some(map) if mapped => self.active.io.write_mapped(map, &self.buf, at),
            _ => self.active.io.write_all_at(&self.buf, at),
        }
        .map_err(|e| failure("write to", path, e))?;
        self.active.file_len = self.active.file_len.max(new_len);
        self.active.zeroed = self.active.zeroed.max(new_len);
        self.preallocate(new_len)?;
        let new_map = if new_len as usize > self.active.map_len {
            let map_len = segment::active_map_len(
                self.shared.options.segment_size,
                new_len.max(self.active.map_len as u64 * 2),
            );
            let map = mmap::map(self.active.io.file(), map_len)
                .map_err(|e| failure("mapping", path, e))?;
            self.active.map_len = map_len;
            Some(Arc::new(map))
        } else {
            None
        };
        {
            let mut state = self.active.seg.write_state();
            if let Some(map) = new_map {
                state.map = map;
            }
            state.offsets.extend_from_slice(&self.offsets);
            state.end = new_len;
        }
        self.active.count += self.offsets.len() as u64;
        self.active.len = new_len;
        self.shared.written.store(next_seq, Ordering::Release);
        self.buf.clear();
        self.offsets.clear();
        Ok(())
    }

    /// Writes zeros ahead of the data once it reached the preallocated space, so that
    /// the next writes (and their fdatasyncs) do not change the file's size. Only in
    /// rounds that sync: bulk writes do not pay for zeros they overwrite. Never
    /// past the segment size (a sealed segment is trimmed anyway).
    ///
    /// Zeros are also written over space reserved for mapped writes (allocated but
    /// never written: an "unwritten extent"), so that the fdatasyncs of synced rounds
    /// there do not each have an extent conversion to commit.
    fn preallocate(&mut self, data_end: u64) -> Result<(), Failure> {
        static ZEROS: [u8; 64 << 10] = [0; 64 << 10];
        let step = self.shared.options.preallocate;
        if step == 0 || !self.syncing || data_end < self.active.zeroed {
            return Ok(());
        }
        let target = data_end
            .saturating_add(step)
            .min(self.shared.options.segment_size);
        let mut at = self.active.zeroed;
        while at < target {
            let n = (target - at).min(ZEROS.len() as u64) as usize;
            self.active
                .io
                .write_all_at(&ZEROS[..n], at)
                .map_err(|e| failure("preallocating", &self.active.seg.path, e))?;
            at += n as u64;
            self.active.zeroed = at;
            self.active.file_len = self.active.file_len.max(at);
        }
        Ok(())
    }

    /// Makes sure bytes up to `end` of the active segment can be written through the
    /// mapping: within the mapping, and within the file, in space that has its blocks.
    /// Reserves [`Options::reserve`](crate::Options::reserve) bytes ahead (never past
    /// the segment size, and at least up to `end`) when `end` is past the file's end.
    /// `Ok(false)`: write with `pwrite` instead (mapped writes are off, the write does
    /// not fit the mapping, or the file system has no `fallocate`, which turns mapped
    /// writes off). A failed reservation is a failed write: it poisons the log.
    fn reserve_for(&mut self, end: u64) -> Result<bool, Failure> {
        let Some(map) = &self.active.wmap else {
            return Ok(false);
        };
        if end > map.len() || end > self.active.map_len as u64 {
            return Ok(false);
        }
        let from = self.active.file_len;
        let step = self.shared.options.reserve;
        let limit = self.shared.options.segment_size.min(map.len());
        if end <= from {
            // Reserve the next step once half of this one is used, so that the writer
            // thread can fault its pages in before the appends get there.
            let early =
                !self.active.reserve_failed && from < limit && end.saturating_add(step / 2) > from;
            if early {
                let target = from.saturating_add(step).min(limit);
                match self.active.io.reserve(from, target - from) {
                    Ok(()) => self.active.file_len = target,
                    Err(e) => {
                        // Not fatal yet: the space reserved suffices for now. Reserve
                        // only on demand from here on (and fail then, if it fails).
                        tracing::debug!(
                            segment = %self.active.seg.path.display(),
                            error = %e,
                            "flumelog-file: could not reserve space ahead"
                        );
                        self.active.reserve_failed = true;
                    }
                }
            }
            return Ok(true);
        }
        let mut target = end.max(from.saturating_add(step).min(limit));
        let path = &self.active.seg.path;
        let mut result = self.active.io.reserve(from, target - from);
        if target > end && matches!(&result, Err(e) if e.raw_os_error() == Some(libc::ENOSPC)) {
            // No room for a whole step: reserve just what this write needs.
            target = end;
            result = self.active.io.reserve(from, target - from);
        }
        match result {
            Ok(()) => {
                self.active.file_len = target;
                tracing::trace!(
                    segment = %path.display(),
                    from,
                    to = target,
                    "flumelog-file: reserved space for mapped writes"
                );
                Ok(true)
            }
            Err(e)
                if matches!(
                    e.raw_os_error(),
                    Some(libc::EOPNOTSUPP | libc::ENOSYS | libc::EINVAL)
                ) =>
            {
                // No `fallocate` here (the file length is unchanged): write as before.
                tracing::debug!(
                    segment = %path.display(),
                    error = %e,
                    "flumelog-file: cannot reserve space; writing with pwrite"
                );
                self.active.wmap = None;
                self.map_writes = false;
                self.set_ahead();
                Ok(false)
            }
            Err(e) => Err(failure("reserving space in", path, e)),
        }
    }

    /// Cuts the preallocated zeros after the active segment's data.
    fn trim(&mut self) -> Result<(), Failure> {
        if self.active.file_len > self.active.len {
            self.active
                .io
                .set_len(self.active.len)
                .map_err(|e| failure("trimming", &self.active.seg.path, e))?;
            self.active.file_len = self.active.len;
            self.active.zeroed = self.active.len;
        }
        Ok(())
    }

    /// Seals the active segment (synced, so that only the last segment can ever have a
    /// torn tail) and starts a new one whose first record is `first_seq`.
    fn rotate(&mut self, first_seq: Seq) -> Result<(), Failure> {
        let started = Instant::now();
        self.trim()?;
        let old = &self.active.seg.path;
        self.active
            .io
            .sync_data()
            .map_err(|e| failure("fdatasync of", old, e))?;
        self.set_durable(first_seq);
        let (path, file) = segment::create_segment(&self.shared.dir, first_seq)
            .map_err(|e| Failure::from_error(&e))?;
        // The marker names the new segment before any record goes into it: a log whose
        // last segment is deleted later on is then detected at open.
        tailmark::write(
            &self.shared.dir,
            TailMark {
                segment: first_seq,
                durable_len: HEADER_LEN as u64,
            },
        )
        .map_err(|e| Failure::from_error(&e))?;
        let map_len = segment::active_map_len(self.shared.options.segment_size, HEADER_LEN as u64);
        let map = mmap::map(&file, map_len).map_err(|e| failure("mapping", &path, e))?;
        let seg = Arc::new(Segment::new(
            first_seq,
            path.clone(),
            SegState {
                map: Arc::new(map),
                offsets: Vec::new(),
                end: HEADER_LEN as u64,
            },
        ));
        self.shared.segments_mut().push(Arc::clone(&seg));
        self.active = Active::new(
            seg,
            file,
            &self.shared.options,
            HEADER_LEN as u64,
            HEADER_LEN as u64,
            0,
            map_len,
            self.map_writes,
        )
        .map_err(|e| failure("mapping", &path, e))?;
        self.set_ahead();
        tracing::debug!(
            segment = %path.display(),
            first_seq,
            elapsed_us = started.elapsed().as_micros() as u64,
            "flumelog-file: started a new segment"
        );
        Ok(())
    }

    /// Drops every record from `keep` on. Runs with the tail locked (no append can
    /// interleave); syncs after releasing it.
    fn revert(&mut self, keep: u64) -> Result<()> {
        let mut tail = self.shared.tail();
        if !tail.pending.is_empty() {
            // Appends raced the revert: write them first, then revert.
            let entries: Vec<_> = tail.pending.iter().cloned().collect();
            let first = tail.pending_first;
            drop(tail);
            self.write_entries(&entries, first)
                .map_err(|f| Error::Poisoned {
                    reason: f.reason,
                    kind: f.kind,
                })?;
            tail = self.shared.tail();
            let n = entries.len().min(tail.pending.len());
            tail.pending.drain(..n);
            tail.pending_first += n as u64;
            if !tail.pending.is_empty() {
                drop(tail);
                return self.revert(keep);
            }
        }
        if keep >= tail.next_seq {
            return Ok(());
        }
        let io_err = |p: &PathBuf| {
            let p = p.clone();
            move |e| Error::io(p, e)
        };
        // Remove whole segments after the one that will hold the new tail, newest first,
        // so that a crash midway leaves a prefix of the log. The tail marker first names
        // that segment, with nothing of it marked durable but its header (it is about
        // to be cut), so that it never names a removed segment or cut bytes.
        let (removed, target): (Vec<Arc<Segment>>, Arc<Segment>) = {
            let mut segments = self.shared.segments_mut();
            let keep_from = segments
                .iter()
                .position(|s| s.first_seq >= keep)
                .unwrap_or(segments.len())
                .max(1);
            let removed = segments.split_off(keep_from);
            let target = segments
                .last()
                .cloned()
                .ok_or(Error::Unsupported("revert of a log without segments"))?;
            (removed, target)
        };
        tailmark::write(
            &self.shared.dir,
            TailMark {
                segment: target.first_seq,
                durable_len: HEADER_LEN as u64,
            },
        )?;
        for seg in removed.iter().rev() {
            fs::remove_file(&seg.path).map_err(io_err(&seg.path))?;
        }
        // The kept prefix is copied to a new file that replaces the segment (rename): the
        // mapped file is never truncated or rewritten, so records read before the revert
        // (slices of the old mapping) stay valid for as long as they are held.
        let keep_here = (keep - target.first_seq) as usize;
        let (old_map, new_len, end_batch) = {
            let state = target.read_state();
            let new_len = match state.offsets.get(keep_here) {
                Some(&at) => u64::from(at),
                None => state.end,
            };
            // Cutting a batch short: its new last record must end the batch, or recovery
            // would take the kept part for an unfinished batch.
            let end_batch = keep_here
                .checked_sub(1)
                .and_then(|k| state.offsets.get(k))
                .and_then(|&at| {
                    let header = format::end_batch_header(state.data(), at as usize)?;
                    Some((u64::from(at), header))
                });
            (Arc::clone(&state.map), new_len, end_batch)
        };
        let file = segment::rewrite_segment(
            &self.shared.dir,
            target.first_seq,
            &target.path,
            &mmap::committed(&old_map, new_len)[..new_len as usize],
            end_batch,
        )?;
        drop(old_map);
        // The new file and the directory were synced: the kept bytes are durable.
        tailmark::write(
            &self.shared.dir,
            TailMark {
                segment: target.first_seq,
                durable_len: new_len,
            },
        )?;
        let map_len = segment::active_map_len(self.shared.options.segment_size, new_len);
        let map = mmap::map(&file, map_len).map_err(io_err(&target.path))?;
        {
            let mut state = target.write_state();
            state.map = Arc::new(map);
            state.offsets.truncate(keep_here);
            state.end = new_len;
        }
        self.active = Active::new(
            Arc::clone(&target),
            file,
            &self.shared.options,
            new_len,
            new_len,
            keep_here as u64,
            map_len,
            self.map_writes,
        )
        .map_err(io_err(&target.path))?;
        self.shared.written.store(keep, Ordering::Release);
        tail.next_seq = keep;
        tail.pending_first = keep;
        tail.sync_upto = tail.sync_upto.min(keep);
        tail.write_upto = tail.write_upto.min(keep);
        tail.ahead = self.active.ahead();
        if let Some(tx) = &tail.since_tx {
            tx.send_replace(keep.checked_sub(1));
        }
        drop(tail);
        // The new file and the directory were synced, so everything kept is durable.
        self.durable = keep;
        self.durable_tx.send_replace(keep.checked_sub(1));
        self.shared.progress.send_modify(|p| {
            p.written = keep;
            p.durable = keep;
        });
        tracing::info!(
            kept = keep,
            segments_removed = removed.len(),
            "flumelog-file: reverted"
        );
        Ok(())
    }

    fn poison(&mut self, reason: Failure) {
        tracing::error!(reason = %reason, "flumelog-file: write failed; the log is poisoned");
        let reason = Arc::new(reason);
        let mut tail = self.shared.tail();
        if tail.poisoned.is_none() {
            tail.poisoned = Some(Arc::clone(&reason));
        }
        drop(tail);
        self.shared
            .progress
            .send_modify(|p| p.poisoned = Some(Arc::clone(&reason)));
    }

    /// Closes: `since` ends, the lock is released, waiters are told.
    fn finish(&mut self) {
        if self.shared.tail().poisoned.is_none() {
            // Leave the file at its data's length; zeros left behind would be read as
            // preallocated space anyway, so a failure here costs nothing but space.
            if let Err(reason) = self.trim() {
                tracing::debug!(reason = %reason, "flumelog-file: could not trim the active segment");
            }
            // Everything written is synced (a `close`): the marker says so, which makes
            // damage anywhere in the last segment detectable at the next open.
            if self.durable >= self.shared.written.load(Ordering::Acquire) {
                let mark = TailMark {
                    segment: self.active.seg.first_seq,
                    durable_len: self.active.len,
                };
                if let Err(e) = tailmark::write(&self.shared.dir, mark) {
                    tracing::warn!(error = %e, "flumelog-file: could not update the tail marker");
                }
            }
        }
        let mut tail = self.shared.tail();
        tail.state = State::Closed;
        announce_since(&mut tail);
        tail.since_announce_at = None;
        tail.since_tx = None;
        self.shared.closed.store(true, Ordering::Release);
        drop(tail);
        let lock = self
            .shared
            .lock_file
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        drop(lock);
        self.shared.progress.send_modify(|p| p.closed = true);
        tracing::debug!(dir = %self.shared.dir.display(), "flumelog-file: closed");
    }
}

/// The `Poisoned` error for a failure.
pub(crate) fn poisoned(failure: &Option<Arc<Failure>>) -> Error {
    match failure.as_deref() {
        Some(f) => Error::Poisoned {
            reason: f.reason.clone(),
            kind: f.kind,
        },
        None => Error::Poisoned {
            reason: "an earlier write failed".into(),
            kind: None,
        },
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use super::{gather_policy, GATHER_GAP, MAX_GATHER};

    #[test]
    fn the_writer_gathers_a_group_only_after_a_group() {
        let now = Instant::now();
        let ms = Duration::from_millis;
        let first = Some(now);
        // Nothing asked, or a lone appender last time: sync at once.
        assert_eq!(gather_policy(3, false, 8, ms(1), first, first), None);
        assert_eq!(gather_policy(1, true, 1, ms(1), first, first), None);
        assert_eq!(gather_policy(1, true, 0, ms(1), first, first), None);
        // As many waiting as last time: the group is complete.
        assert_eq!(gather_policy(8, true, 8, ms(1), first, first), None);
        assert_eq!(gather_policy(9, true, 8, ms(1), first, first), None);
        // Fewer: wait for the rest, as long as the last fdatasync took, at most
        // MAX_GATHER, counted from the first ask...
        let short = Duration::from_micros(150);
        let last = Some(now + Duration::from_micros(120));
        assert_eq!(
            gather_policy(3, true, 8, short, first, last),
            Some(now + short)
        );
        assert_eq!(
            gather_policy(3, true, 8, ms(50), first, Some(now + ms(5))),
            Some(now + MAX_GATHER)
        );
        // ...and no longer than GATHER_GAP after the last ask.
        assert_eq!(
            gather_policy(3, true, 8, ms(1), first, first),
            Some(now + GATHER_GAP)
        );
        // No record of when it was asked (an explicit `sync`): at once.
        assert_eq!(gather_policy(3, true, 8, short, None, None), None);
    }
}
