//! Where the writer got to: the one place that says how many records are written and
//! durable, whether the log is poisoned (and why), and whether it is closed.
//!
//! The writer (the writer thread, or an appender holding the writer lock) is the only
//! one that changes these facts; everyone else reads them. Readers read them without
//! a lock (`written` and `closed` are atomics, read on every `get`); appenders, `sync`
//! and `close` wait for them with [`Progress::subscribe`]. The watch channel inside is
//! only a doorbell: it carries no value, so there is no second copy of a fact that
//! could disagree with the first.
//!
//! A waiter checks the facts while it holds the channel's read lock, and the writer
//! rings only when someone is subscribed, reading the subscriber count under the
//! channel's write lock after it changed the facts: a waiter therefore either sees a
//! change or is counted and woken by it. Rings on a log nobody waits for cost nothing
//! but that count (no `notify_waiters`, which takes eight mutexes in tokio's watch).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};

use flume_core::{Error, Seq};
use tokio::sync::watch;

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
    /// `what` (an operation) on `path` failed with `e`.
    pub(crate) fn io(what: &str, path: &std::path::Path, e: std::io::Error) -> Failure {
        Failure {
            reason: format!("{what} {} failed: {e}", path.display()),
            kind: Some(e.kind()),
        }
    }

    /// A failure reported as a flume error (an I/O error keeps its kind).
    pub(crate) fn from_error(e: &Error) -> Failure {
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

    /// The `Poisoned` error that reports this failure.
    pub(crate) fn to_error(&self) -> Error {
        Error::Poisoned {
            reason: self.reason.clone(),
            kind: self.kind,
        }
    }
}

/// The facts, as one waiter saw them at one moment.
#[derive(Debug, Clone)]
pub(crate) struct Snapshot {
    /// Records written to the OS (count).
    pub(crate) written: u64,
    /// Records synced (count).
    pub(crate) durable: u64,
    /// Why the log is poisoned, once a write or sync failed.
    pub(crate) poisoned: Option<Arc<Failure>>,
    /// The writer finished: nothing more is written, the directory is unlocked.
    pub(crate) closed: bool,
    /// Reverts finished. Every record queued before the `n`th revert began is settled
    /// once `reverts >= n`: reverted, or kept and durable. A waiter for records queued
    /// while `reverts` was below `n` waits no longer than that.
    pub(crate) reverts: u64,
}

/// See the module docs.
#[derive(Debug)]
pub(crate) struct Progress {
    /// Records below this count are in a segment's index (read through the mapping).
    written: AtomicU64,
    /// Records below this count are synced.
    durable: AtomicU64,
    poisoned: OnceLock<Arc<Failure>>,
    closed: AtomicBool,
    /// Reverts finished (see [`Snapshot::reverts`]).
    reverts: AtomicU64,
    /// The public `durable` watch (last durable seq), kept in step with `durable`.
    durable_tx: watch::Sender<Option<Seq>>,
    /// Rung after a change someone may wait for.
    bell: watch::Sender<()>,
}

impl Progress {
    /// A log holding `records` records, all written and durable; also returns the
    /// receiver of the public `durable` watch.
    pub(crate) fn new(records: u64) -> (Progress, watch::Receiver<Option<Seq>>) {
        let (durable_tx, durable_rx) = watch::channel(records.checked_sub(1));
        let (bell, _) = watch::channel(());
        let progress = Progress {
            written: AtomicU64::new(records),
            durable: AtomicU64::new(records),
            poisoned: OnceLock::new(),
            closed: AtomicBool::new(false),
            reverts: AtomicU64::new(0),
            durable_tx,
            bell,
        };
        (progress, durable_rx)
    }

    /// Records written (count): every record below it is in a segment's index.
    pub(crate) fn written(&self) -> u64 {
        self.written.load(Ordering::Acquire)
    }

    /// Records synced (count).
    pub(crate) fn durable(&self) -> u64 {
        self.durable.load(Ordering::Acquire)
    }

    /// Why the log is poisoned, if it is.
    pub(crate) fn poisoned(&self) -> Option<&Arc<Failure>> {
        self.poisoned.get()
    }

    /// The `Poisoned` error of a poisoned log (a generic one if it is not poisoned).
    pub(crate) fn poisoned_error(&self) -> Error {
        poisoned_error(self.poisoned())
    }

    /// Whether the writer finished (reads and calls fail with `Closed`).
    pub(crate) fn closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }

    /// The facts now.
    pub(crate) fn snapshot(&self) -> Snapshot {
        Snapshot {
            written: self.written(),
            durable: self.durable(),
            poisoned: self.poisoned().cloned(),
            closed: self.closed(),
            reverts: self.reverts.load(Ordering::Acquire),
        }
    }

    /// Moves `written` to `n`, after the records below it were put in the segment
    /// indexes. Does not ring: the writer rings once per round ([`ring`](Self::ring)).
    pub(crate) fn set_written(&self, n: u64) {
        self.written.store(n, Ordering::Release);
    }

    /// The `n`th revert of the queue ([`Queue::reverts`](crate::writer::queue::Queue::reverts))
    /// finished. Does not ring: the revert moves `durable` next, which rings.
    pub(crate) fn set_reverts(&self, n: u64) {
        self.reverts.store(n, Ordering::Release);
    }

    /// Moves `durable` to `n` (updating the public watch if it changed) and rings.
    pub(crate) fn set_durable(&self, n: u64) {
        if self.durable.swap(n, Ordering::AcqRel) != n {
            self.durable_tx.send_replace(n.checked_sub(1));
        }
        self.ring();
    }

    /// Poisons the log (the first failure is the one kept) and rings.
    pub(crate) fn poison(&self, failure: Failure) {
        let _ = self.poisoned.set(Arc::new(failure));
        self.ring();
    }

    /// Marks the log closed and rings.
    pub(crate) fn close(&self) {
        self.closed.store(true, Ordering::Release);
        self.ring();
    }

    /// Wakes the waiters, if there are any.
    pub(crate) fn ring(&self) {
        self.bell
            .send_if_modified(|_| self.bell.receiver_count() > 0);
    }

    /// A waiter for changes.
    pub(crate) fn subscribe(&self) -> Waiter<'_> {
        Waiter {
            progress: self,
            rx: self.bell.subscribe(),
        }
    }
}

/// Waits for the facts of a [`Progress`] to meet a condition.
#[derive(Debug)]
pub(crate) struct Waiter<'a> {
    progress: &'a Progress,
    rx: watch::Receiver<()>,
}

impl Waiter<'_> {
    /// Waits until `met` holds, and returns the facts that met it.
    ///
    /// # Cancel safety
    /// Dropping the future only stops waiting.
    pub(crate) async fn wait_for(
        &mut self,
        mut met: impl FnMut(&Snapshot) -> bool,
    ) -> Result<Snapshot, watch::error::RecvError> {
        loop {
            {
                // Checked under the channel's read lock: see the module docs.
                let _seen = self.rx.borrow_and_update();
                let now = self.progress.snapshot();
                if met(&now) {
                    return Ok(now);
                }
            }
            self.rx.changed().await?;
        }
    }
}

/// The `Poisoned` error for `failure` (a generic one for `None`).
pub(crate) fn poisoned_error(failure: Option<&Arc<Failure>>) -> Error {
    match failure {
        Some(f) => f.to_error(),
        None => Error::Poisoned {
            reason: "an earlier write failed".into(),
            kind: None,
        },
    }
}
