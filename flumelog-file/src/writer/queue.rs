//! The append queue: what appenders hand the writer, under the `tail` mutex.
//!
//! [`Tail`] is everything behind that mutex: the [`Queue`] (seqs, records appended but
//! not yet written, the writer's commands, whether the log still accepts calls), the
//! [`Since`] watch that appends move, the private commit [`Schedule`] and the
//! writer thread's work ahead on the mapping ([`Ahead`]). Appenders change it only
//! through [`push`], [`Tail::ask_sync`], [`Tail::push_command`] and [`Tail::close`];
//! the writer takes from it.

use std::collections::VecDeque;
use std::ops::Range;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use flume_core::{Durability, Error, Result, Seq};
use tokio::sync::{oneshot, watch};

use super::schedule::Schedule;
use super::SINCE_INTERVAL;
use crate::format::{self, HEADER_LEN};
use crate::progress::Snapshot;
use crate::shared::Shared;

/// Whether the log accepts calls. Once it is closed (the writer finished), that is
/// [`Progress::closed`](crate::progress::Progress::closed).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum State {
    Open,
    /// `close` was called (or the last handle dropped); the writer is finishing.
    Closing {
        sync: bool,
    },
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

/// Records appended and not yet written, and the seqs.
#[derive(Debug)]
pub(crate) struct Queue {
    pub(crate) state: State,
    /// The seq the next append gets.
    pub(crate) next_seq: Seq,
    /// Seq of `pending[0]`.
    pub(crate) pending_first: Seq,
    /// Visible records not yet written, with "another record of this batch follows".
    pub(crate) pending: VecDeque<(Bytes, bool)>,
    /// Framed bytes in `pending` that the writer has not taken yet.
    pub(crate) pending_bytes: usize,
    pub(crate) commands: Vec<Command>,
    /// Reverts that lowered the queue so far; appends remember it, and stop waiting
    /// once a later revert finished ([`Snapshot::reverts`]).
    pub(crate) reverts: u64,
}

impl Queue {
    /// Copies the pending records into `entries` for the writer (it drains them once
    /// written, [`written`](Self::written)); returns the seq of the first.
    pub(crate) fn take(&mut self, entries: &mut Vec<(Bytes, bool)>) -> Seq {
        entries.extend(self.pending.iter().cloned());
        self.pending_bytes = 0;
        self.pending_first
    }

    /// The first `n` pending records were written (readers find them in the segments).
    pub(crate) fn written(&mut self, n: usize) {
        let n = n.min(self.pending.len());
        self.pending.drain(..n);
        self.pending_first += n as u64;
    }

    /// Whether the writer has nothing left to do.
    pub(crate) fn idle(&self) -> bool {
        self.pending.is_empty() && self.commands.is_empty()
    }

    /// Whether the writer may take a round on an appender's thread: the log is open and
    /// no command waits for the writer thread.
    pub(crate) fn inline_ok(&self) -> bool {
        self.state == State::Open && self.commands.is_empty()
    }
}

/// The `since` watch that appends move, and who wakes its watchers.
///
/// `since` moves before every append returns, but a bulk append, or an append on the
/// fast path within [`SINCE_INTERVAL`] of the last wake-up, leaves waking its watchers
/// to the writer thread (it wakes them when it writes, or at `announce_at`).
#[derive(Debug)]
pub(crate) struct Since {
    /// Sends the visible `since`; dropped when the log closes, which ends live streams.
    tx: Option<watch::Sender<Option<Seq>>>,
    /// `since` was moved without waking its watchers.
    unannounced: bool,
    /// Until when appends on the fast path leave waking the watchers to the writer
    /// thread (the last wake-up plus `SINCE_INTERVAL`).
    quiet_until: Option<Instant>,
    /// When the writer thread next wakes the watchers; `None`: it is not on duty (the
    /// next fast append wakes them itself, or sets this and nudges the thread).
    announce_at: Option<Instant>,
}

impl Since {
    pub(crate) fn new(tx: watch::Sender<Option<Seq>>) -> Since {
        Since {
            tx: Some(tx),
            unannounced: false,
            quiet_until: None,
            announce_at: None,
        }
    }

    /// Moves `since` to `last` for an append on the general path; wakes the watchers
    /// only when `announce` (an append that waits), otherwise leaves it to the writer.
    fn set(&mut self, last: Seq, announce: bool) {
        if let Some(tx) = &self.tx {
            tx.send_if_modified(|since| {
                *since = Some(last);
                announce
            });
        }
        self.unannounced = !announce;
    }

    /// Moves `since` to `last` for an append on the fast path. Wakes its watchers when
    /// none were woken in the last [`SINCE_INTERVAL`]; otherwise puts the writer
    /// thread on duty, at the end of the interval. Returns whether it was put on duty
    /// just now (the caller then nudges it).
    pub(crate) fn move_fast(&mut self, last: Seq) -> bool {
        let announce = !self.unannounced && {
            let now = Instant::now();
            match self.quiet_until {
                Some(until) if now < until => false,
                _ => {
                    self.quiet_until = Some(now + SINCE_INTERVAL);
                    true
                }
            }
        };
        if let Some(tx) = &self.tx {
            tx.send_if_modified(|since| {
                *since = Some(last);
                announce
            });
        }
        if announce || self.unannounced {
            return false;
        }
        self.unannounced = true;
        self.announce_at = self.quiet_until;
        true
    }

    /// Wakes the watchers if `since` moved without waking them.
    pub(crate) fn announce(&mut self) {
        if std::mem::take(&mut self.unannounced) {
            if let Some(tx) = &self.tx {
                tx.send_modify(|_| {});
            }
        }
    }

    /// The writer thread's duty: wakes the watchers once `announce_at` passed, and
    /// stays on duty one more interval if it had to (appends of an ongoing burst then
    /// need not nudge it). Returns when to look again.
    pub(crate) fn on_duty(&mut self) -> Option<Instant> {
        let at = self.announce_at?;
        let now = Instant::now();
        if now < at {
            return Some(at);
        }
        self.announce_at = if self.unannounced {
            self.announce();
            self.quiet_until = Some(now + SINCE_INTERVAL);
            self.quiet_until
        } else {
            None
        };
        self.announce_at
    }

    /// Wakes the watchers and leaves the duty (nothing more will be appended).
    pub(crate) fn off_duty(&mut self) {
        self.announce();
        self.announce_at = None;
    }

    /// `since` goes back to `last` (a revert).
    pub(crate) fn reset(&mut self, last: Option<Seq>) {
        if let Some(tx) = &self.tx {
            tx.send_replace(last);
        }
    }

    /// Ends `since` (the log closed): live streams end.
    pub(crate) fn end(&mut self) {
        self.off_duty();
        self.tx = None;
    }
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

/// The append side, under one mutex (see the module docs).
#[derive(Debug)]
pub(crate) struct Tail {
    pub(crate) queue: Queue,
    pub(crate) since: Since,
    pub(crate) schedule: Schedule,
    /// The active segment's writable mapping, which the writer thread keeps ready for
    /// appends on the fast path; `None` without mapped writes.
    pub(crate) ahead: Option<Ahead>,
}

impl Tail {
    /// An empty queue whose next append gets `next_seq`.
    pub(crate) fn new(next_seq: Seq, since_tx: watch::Sender<Option<Seq>>) -> Tail {
        Tail {
            queue: Queue {
                state: State::Open,
                next_seq,
                pending_first: next_seq,
                pending: VecDeque::new(),
                pending_bytes: 0,
                commands: Vec::new(),
                reverts: 0,
            },
            since: Since::new(since_tx),
            schedule: Schedule::new(),
            ahead: None,
        }
    }

    /// Asks for everything below `end` (a count) to be synced; `waiter` when a synced
    /// append waits for it (group commit counts those). Returns whether the writer
    /// thread must be notified.
    pub(crate) fn ask_sync(&mut self, end: u64, waiter: bool) -> bool {
        self.schedule.ask_sync(end, waiter);
        self.schedule.nudge()
    }

    /// Queues a command for the writer thread. Returns whether it must be notified.
    pub(crate) fn push_command(&mut self, command: Command) -> bool {
        self.queue.commands.push(command);
        self.schedule.nudge()
    }

    /// Stops accepting calls; the writer finishes once it wrote (and, with `sync`,
    /// synced) what is queued. `false` when the log was closing already.
    pub(crate) fn close(&mut self, sync: bool) -> bool {
        if self.queue.state != State::Open {
            return false;
        }
        self.queue.state = State::Closing { sync };
        self.schedule.nudge();
        true
    }
}

/// What an append waits for before it returns (see [`Await::met`]).
#[derive(Debug, Clone, Copy)]
pub(crate) enum Await {
    Nothing,
    /// Written: `written >= n`.
    Written(u64),
    /// Synced: `durable >= n`.
    Durable(u64),
    /// `durable >= n`, syncing on the appender's own thread if it can.
    SyncInline(u64),
}

impl Await {
    /// Whether `progress` meets it, for records queued when the queue had been
    /// reverted `reverts` times: they need not wait past a later revert, which writes
    /// them and then drops them or makes them durable.
    pub(crate) fn met(self, progress: &Snapshot, reverts: u64) -> bool {
        if progress.reverts > reverts {
            return true;
        }
        match self {
            Await::Nothing => true,
            Await::Written(n) => progress.written >= n,
            Await::Durable(n) | Await::SyncInline(n) => progress.durable >= n,
        }
    }
}

/// What [`push`] did, and what the appender does next.
#[derive(Debug)]
pub(crate) struct Pushed {
    pub(crate) seqs: Range<Seq>,
    pub(crate) wait: Await,
    /// [`Queue::reverts`] when they were queued.
    pub(crate) reverts: u64,
    pub(crate) then: Then,
}

/// What an appender does after queuing its records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Then {
    /// Nothing: wait (or not) as [`Pushed::wait`] says.
    Wait,
    /// Notify the writer thread, then wait.
    Notify,
    /// Write the records on this thread if the writer lock is free (a buffered append
    /// that must reach the OS before it returns); notify the writer thread otherwise.
    WriteInline,
}

/// Validates and queues `records` (one batch); assigns their seqs and moves `since`.
/// `sync_inline_ok`: the caller could sync on its own thread. `expected`: a conditional
/// append's tail (`Some(None)`: only into an empty log), checked here, under the `tail`
/// lock where seqs are assigned, so that of appends expecting one tail one wins.
pub(crate) fn push(
    shared: &Shared,
    records: impl ExactSizeIterator<Item = Bytes>,
    durability: Durability,
    sync_inline_ok: bool,
    expected: Option<Option<Seq>>,
) -> Result<Pushed> {
    let options = &shared.options;
    let n = records.len();
    let max = options.max_record_size;
    let mut tail = shared.tail();
    shared.check_open(&tail)?;
    let queue = &mut tail.queue;
    let first = queue.next_seq;
    let actual = first.checked_sub(1);
    if let Some(expected) = expected.filter(|e| *e != actual) {
        return Err(Error::Conflict { expected, actual });
    }
    let reverts = queue.reverts;
    if n == 0 {
        return Ok(Pushed {
            seqs: first..first,
            wait: Await::Nothing,
            reverts,
            then: Then::Wait,
        });
    }
    let mut bytes = 0u64;
    let start_len = queue.pending.len();
    for (i, record) in records.enumerate() {
        let size = record.len() as u64;
        if size > max {
            queue.pending.truncate(start_len);
            return Err(Error::RecordTooLarge { size, max });
        }
        bytes += format::framed_len(record.len()) as u64;
        queue.pending.push_back((record, i + 1 < n));
    }
    let batch_max = u64::from(u32::MAX) - HEADER_LEN as u64;
    if bytes > batch_max {
        queue.pending.truncate(start_len);
        return Err(Error::RecordTooLarge {
            size: bytes,
            max: batch_max,
        });
    }
    let end = first + n as u64;
    queue.next_seq = end;
    let before = queue.pending_bytes;
    queue.pending_bytes += bytes as usize;
    let pending_bytes = queue.pending_bytes;
    // A synced append syncs on its own thread if it finds the writer free and synced
    // appends are not arriving in groups; it asks the writer thread otherwise.
    let sync_inline =
        durability == Durability::Synced && tail.schedule.groups_of_one() && sync_inline_ok;
    let wait = match durability {
        Durability::Synced if sync_inline => {
            // Marked for syncing now: a writer thread that happens to be awake may
            // take the record before its appender does, and must then sync it.
            tail.schedule.ask_sync(end, false);
            Await::SyncInline(end)
        }
        Durability::Synced => {
            tail.schedule.ask_sync(end, true);
            Await::Durable(end)
        }
        // Backpressure: appenders outrunning the disk wait for the writer.
        _ if options.max_write_delay.is_zero()
            || pending_bytes >= options.write_buffer_size.saturating_mul(16) =>
        {
            tail.schedule.ask_write(end);
            Await::Written(end)
        }
        _ => Await::Nothing,
    };
    // `since` moves now (a read after this append returns sees the record). A bulk
    // append (nothing to wait for) leaves waking the channel's watchers to the
    // writer's next round, at most `max_write_delay` away: one wake-up per write
    // instead of one per append.
    tail.since.set(end - 1, !matches!(wait, Await::Nothing));
    // A buffered append that must reach the OS before it returns is written by the
    // appender itself when no one else is writing (no thread hand-off).
    let inline = durability == Durability::Buffered && matches!(wait, Await::Written(_));
    let threshold = options.write_buffer_size;
    let then = if inline {
        Then::WriteInline
    } else if !sync_inline
        && (!matches!(wait, Await::Nothing)
            || tail.schedule.idle()
            || (before < threshold && pending_bytes >= threshold))
        // A writer that is not asleep looks at the tail before it sleeps again: a
        // notification would be a wasted system call.
        && tail.schedule.nudge()
    {
        Then::Notify
    } else {
        Then::Wait
    };
    Ok(Pushed {
        seqs: first..end,
        wait,
        reverts,
        then,
    })
}
