//! The writer thread: waits for work without the writer lock, takes the lock for one
//! round, and finishes the log when it closes. Between rounds it does the appenders'
//! errands that need no writer lock: faulting in the writable mapping ahead of the
//! fast path ([`Ahead`](super::Ahead)) and waking the watchers of `since` that appends
//! on the fast path left to it.

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use super::commit::Job;
use super::queue::{Command, State, Tail};
use super::{lock, Writer, AHEAD};
use crate::shared::Shared;
use crate::tailmark::{self, TailMark};

/// How long the writer thread keeps looking for the next synced append after an fsync
/// before it sleeps: a synced appender usually appends again within microseconds of
/// its acknowledgement, and finding that append without a sleep and a wake-up takes
/// tens of microseconds off its latency. The thread yields the CPU while it looks.
const SPIN_AFTER_SYNC: Duration = Duration::from_micros(300);

impl Writer {
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
            let durable_before = shared.progress.durable();
            let outcome = w.execute(&mut job);
            if shared.progress.durable() != durable_before {
                synced_at = Some(Instant::now());
            }
            if let Err(reason) = outcome {
                w.poison(reason);
            }
            if let State::Closing { .. } = job.state {
                if shared.tail().queue.idle() {
                    w.finish();
                    return;
                }
            }
            drop(w);
            job.entries.clear();
            entries = job.entries;
        }
    }

    /// Takes a snapshot of the pending records and requests. Called with the writer
    /// lock held, so that no one else writes the same records.
    fn take_job(&self, mut entries: Vec<(bytes::Bytes, bool)>) -> Job {
        let mut tail = self.shared.tail();
        let sync_asks = tail.schedule.take_asks();
        let first_seq = tail.queue.take(&mut entries);
        Job {
            sync_asks,
            entries,
            first_seq,
            sync_upto: tail.schedule.sync_upto(),
            commands: std::mem::take(&mut tail.queue.commands),
            state: tail.queue.state,
        }
    }

    /// Closes: `since` ends, the directory is unlocked, waiters are told.
    fn finish(&mut self) {
        if self.shared.progress.poisoned().is_none() {
            // Leave the file at its data's length; zeros left behind would be read as
            // preallocated space anyway, so a failure here costs nothing but space.
            if let Err(reason) = self.trim() {
                tracing::debug!(reason = %reason, "flumelog-file: could not trim the active segment");
            }
            // Everything written is synced (a `close`): the marker says so, which makes
            // damage anywhere in the last segment detectable at the next open.
            let progress = &self.shared.progress;
            if progress.durable() >= progress.written() {
                let mark = TailMark {
                    segment: self.active.seg.first_seq,
                    durable_len: self.active.len,
                };
                if let Err(e) = tailmark::write(&self.shared.dir, mark) {
                    tracing::warn!(error = %e, "flumelog-file: could not update the tail marker");
                }
            }
        }
        self.shared.tail().since.end();
        let lock = self
            .shared
            .lock_file
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        drop(lock);
        // Last: a `close` returns only once the directory is unlocked.
        self.shared.progress.close();
        tracing::debug!(dir = %self.shared.dir.display(), "flumelog-file: closed");
    }
}

/// Does the work appenders asked for on the writable mapping ([`Ahead`](super::Ahead)),
/// without the tail lock (which it takes again before it returns). Best effort: a
/// failure only means that appends take the page faults themselves.
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

/// Waits until there is work for the writer thread. `false` when the log is poisoned
/// and closing (nothing more will be written). `synced_at`: when the last round ended
/// with an fsync (see [`SPIN_AFTER_SYNC`]).
fn wait_for_work(shared: &Shared, synced_at: Option<Instant>) -> bool {
    let delay = shared.options.max_write_delay;
    let spin_until = synced_at.map(|t| t + SPIN_AFTER_SYNC);
    let mut tail = shared.tail();
    let mut waited = false;
    loop {
        if shared.progress.poisoned().is_some() {
            // Nothing more is written; answer commands, wait for close.
            tail.since.off_duty();
            for Command::Revert { reply, .. } in tail.queue.commands.drain(..) {
                let _ = reply.send(Err(shared.progress.poisoned_error()));
            }
            if tail.queue.state != State::Open {
                return false;
            }
            tail = sleep(shared, tail, None);
            continue;
        }
        if tail.ahead.as_ref().is_some_and(|a| a.requested) {
            tail = work_ahead(shared, tail);
            continue;
        }
        // Appends on the fast path left waking the watchers of `since` to us.
        let announce_at = tail.since.on_duty();
        let has_pending = !tail.queue.pending.is_empty();
        let durable = shared.progress.durable();
        let gathering = tail
            .schedule
            .gather_until(durable)
            .filter(|&t| Instant::now() < t);
        let urgent = tail.queue.state != State::Open
            || tail.schedule.sync_upto() > durable && gathering.is_none()
            || tail.schedule.write_upto() > tail.queue.pending_first && has_pending
            || tail.queue.pending_bytes >= shared.options.write_buffer_size
            || !tail.queue.commands.is_empty();
        if urgent || (has_pending && gathering.is_none() && (waited || delay.is_zero())) {
            break;
        }
        if let Some(until) = gathering {
            // Appenders notify us (we are asleep) as they come.
            tail = sleep(shared, tail, Some(until));
        } else if has_pending {
            waited = true;
            tail = sleep(shared, tail, Some(Instant::now() + delay));
        } else if spin_until.is_some_and(|t| Instant::now() < t) {
            drop(tail);
            std::thread::yield_now();
            tail = shared.tail();
        } else if let Some(at) = announce_at {
            // Not idle: appenders need not notify us, we look again at `at`.
            tail = sleep(shared, tail, Some(at));
        } else {
            tail = sleep(shared, tail, None);
        }
    }
    true
}

/// Sleeps on the writer's condition variable until `until` (`None`: idle, until
/// notified), marked asleep so that appenders notify it, and returns the tail lock
/// again.
fn sleep<'a>(
    shared: &'a Shared,
    mut tail: MutexGuard<'a, Tail>,
    until: Option<Instant>,
) -> MutexGuard<'a, Tail> {
    tail.schedule.sleeping(until.is_none());
    let mut tail = match until {
        Some(until) => {
            shared
                .wake
                .wait_timeout(tail, until.saturating_duration_since(Instant::now()))
                .unwrap_or_else(|e| e.into_inner())
                .0
        }
        None => shared.wake.wait(tail).unwrap_or_else(|e| e.into_inner()),
    };
    tail.schedule.awake();
    tail
}
