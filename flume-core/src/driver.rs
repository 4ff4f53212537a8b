//! The view driver: one task per database that feeds every view from one scan of the log.
//!
//! The driver owns the views and is the only place their state machine lives. It keeps
//! one live stream of the log open, starting at the first seq the furthest-behind view
//! has not been fed. Each batch it reads is shared (an `Arc`) by every view that needs it
//! and decoded lazily: at most once per record, not at all when no view asks for values.
//!
//! ```text
//!   log ──stream──▶ driver ──batch──▶ [queue v1] ──▶ job of v1 on a blocking thread ──┐
//!                     ▲       └─────▶ [queue v2] ──▶ job of v2 on a blocking thread ──┤
//!                     └────────── loaded / applied / checkpointed / reset ◀──────────┘
//! ```
//!
//! Everything a view does runs as a job of its own ([`job`]): its `load`, each `apply`,
//! each `checkpoint` and each `reset`, one at a time per view, on a blocking thread.
//! The driver's loop never waits for a view: it starts jobs and takes their results as
//! they come, so one view's slow I/O (an index merging runs and fsyncing) never holds
//! back the scan, the other views, their readers or `close`.
//!
//! Each view applies one batch at a time, in order, while the driver reads ahead; the
//! scan pauses only when a view that is applying has `QUEUE_DEPTH` batches waiting, so a
//! slow view holds back the others by at most that much. A view busy with its own I/O
//! does not pause the scan: batches wait for it (up to `BUSY_QUEUE_RECORDS` records, then
//! the scan leaves it behind and comes back for it once its job is done). Views that
//! fail are reset and rebuilt once, then marked failed; the others keep running.
//!
//! A view's `since` lives in one watch ([`ViewShared`]); the driver is its only writer,
//! and publishes the status together with it, so the status never shows less than a read
//! has seen.

mod job;
mod slot;

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use futures::stream::{BoxStream, FuturesUnordered, StreamExt};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::Instant;

pub(crate) use self::job::BoxView;
use self::job::{Batch, Done, Job, Running, SharedView};
use self::slot::Slot;
use crate::status::{LogStatus, Status, ViewState, ViewStatus};
use crate::view::{self, Decoder};
use crate::wait::{Damage, ViewShared};
use crate::{BoxError, Checkpoint, Error, Log, RawRecord, Result, Seq, StreamOptions};

/// Requests from `Flume` handles to the driver.
pub(crate) enum Command<T> {
    AddView {
        name: String,
        view: BoxView<T>,
        shared: Arc<ViewShared>,
    },
    Rebuild {
        done: oneshot::Sender<Result<()>>,
    },
    Revert {
        last: Option<Seq>,
        done: oneshot::Sender<Result<()>>,
    },
    Close {
        done: oneshot::Sender<Result<()>>,
    },
}

/// Tuning the driver takes from `FlumeBuilder`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct DriverOptions {
    pub(crate) batch: usize,
}

struct PendingRebuild {
    target: Option<Seq>,
    done: oneshot::Sender<Result<()>>,
}

/// A revert waits for the checkpoints running when it was asked for, so that no view
/// persists a state the log no longer holds.
struct PendingRevert {
    last: Option<Seq>,
    done: oneshot::Sender<Result<()>>,
}

type LogStream = BoxStream<'static, Result<Vec<RawRecord>>>;

pub(crate) struct Driver<T> {
    log: Arc<dyn Log>,
    decoder: Arc<Decoder<T>>,
    commands: mpsc::UnboundedReceiver<Command<T>>,
    /// Reads that found a view's data damaged.
    damage: mpsc::UnboundedReceiver<Damage>,
    status: Arc<watch::Sender<Status>>,
    log_since: watch::Receiver<Option<Seq>>,
    durable: watch::Receiver<Option<Seq>>,
    options: DriverOptions,
    slots: Vec<Slot<T>>,
    /// The open log stream and the next seq it will yield.
    stream: Option<(LogStream, Seq)>,
    /// Every view's job in flight (at most one per view).
    jobs: FuturesUnordered<Running>,
    /// After a stream error, do not reopen before this instant.
    retry_at: Option<Instant>,
    backoff: Duration,
    rebuilds: Vec<PendingRebuild>,
    reverts: VecDeque<PendingRevert>,
    syncing: Option<tokio::task::JoinHandle<()>>,
    /// Whether the log's durable channel still has a sender.
    durable_open: bool,
    /// The log's `since` is not watched before this instant (see `TAIL_INTERVAL`).
    tail_quiet_until: Option<Instant>,
    /// The driver has stopped (closed, or found the log closed); see `Drop`.
    stopped: bool,
}

/// How often, at most, the driver looks at the log's tail when nothing else wakes it.
const TAIL_INTERVAL: Duration = Duration::from_millis(50);
const MAX_BACKOFF: Duration = Duration::from_secs(5);
const MIN_BACKOFF: Duration = Duration::from_millis(50);

impl<T: Send + Sync + 'static> Driver<T> {
    pub(crate) fn new(
        log: Arc<dyn Log>,
        decoder: Arc<Decoder<T>>,
        commands: mpsc::UnboundedReceiver<Command<T>>,
        damage: mpsc::UnboundedReceiver<Damage>,
        status: Arc<watch::Sender<Status>>,
        options: DriverOptions,
    ) -> Self {
        let log_since = log.since();
        let durable = log.durable();
        Driver {
            log,
            decoder,
            commands,
            damage,
            status,
            log_since,
            durable,
            options,
            slots: Vec::new(),
            stream: None,
            jobs: FuturesUnordered::new(),
            retry_at: None,
            backoff: MIN_BACKOFF,
            rebuilds: Vec::new(),
            reverts: VecDeque::new(),
            syncing: None,
            durable_open: true,
            tail_quiet_until: None,
            stopped: false,
        }
    }

    pub(crate) async fn run(mut self) {
        loop {
            self.join_loaded();
            self.position_stream();
            let deadline = self.next_deadline();
            let can_read = self.stream.is_some() && self.has_room();
            let working = !self.jobs.is_empty();
            tokio::select! {
                biased;
                command = self.commands.recv() => {
                    let Some(command) = command else {
                        // Every `Flume` handle is gone: close as if asked to.
                        if let Err(e) = self.shutdown().await {
                            tracing::warn!(error = %e, "closing after the last handle was dropped failed");
                        }
                        return;
                    };
                    // Take every queued command before touching the stream again, so
                    // that views registered together share one scan.
                    let mut next = Some(command);
                    while let Some(command) = next.take() {
                        if let Command::Close { done } = command {
                            let _ = done.send(self.shutdown().await);
                            return;
                        }
                        self.handle(command);
                        next = self.commands.try_recv().ok();
                    }
                }
                Some(done) = self.jobs.next(), if working => self.finished(done),
                Some(damage) = self.damage.recv() => self.damaged(damage),
                batch = next_batch(&mut self.stream), if can_read => match batch {
                    Some(batch) => self.read(batch),
                    None => {
                        tracing::debug!("log stream ended; reopening");
                        self.stream = None;
                    }
                },
                changed = self.log_since.changed(), if self.tail_quiet_until.is_none() => {
                    if changed.is_err() {
                        // The log dropped its since channel: it was closed under us.
                        self.stop(Error::Closed).await;
                        return;
                    }
                    // Views are woken by their stream; the tail itself is followed (for
                    // status and for truncations) at most every TAIL_INTERVAL, so that
                    // appends do not wake the driver one by one.
                    self.tail_quiet_until = Some(Instant::now() + TAIL_INTERVAL);
                    self.follow_tail();
                }
                changed = self.durable.changed(), if self.durable_open => {
                    self.durable_open = changed.is_ok();
                }
                _ = sleep_until(deadline), if deadline.is_some() => {
                    let now = Instant::now();
                    if self.retry_at.is_some_and(|t| t <= now) {
                        self.retry_at = None;
                    }
                    if self.tail_quiet_until.is_some_and(|t| t <= now) {
                        self.tail_quiet_until = None;
                    }
                }
            }
            self.run_reverts().await;
            self.pump();
            self.checkpoint_due(false);
            self.finish_rebuilds();
            self.refresh_status();
        }
    }

    /// Lets the views that have loaded join the scan, once no view is loading: views
    /// added together load in parallel and then share one scan of the log.
    fn join_loaded(&mut self) {
        if self.slots.iter().all(|s| s.joined)
            || self.slots.iter().any(|s| s.state == ViewState::Loading)
        {
            return;
        }
        for slot in &mut self.slots {
            slot.joined = true;
        }
    }

    /// Opens, reopens or drops the log stream so that it starts at the first seq the
    /// furthest-behind view has not been fed yet.
    fn position_stream(&mut self) {
        let want = self
            .slots
            .iter()
            .filter(|s| s.fed_by_scan())
            .map(|s| s.fed)
            .min();
        let Some(want) = want else {
            self.stream = None;
            return;
        };
        if self.stream.as_ref().is_some_and(|(_, next)| *next == want) {
            return;
        }
        self.stream = None;
        if self.retry_at.is_some() {
            return;
        }
        let opts = StreamOptions::new().gte(want).live(true);
        let stream = self.log.stream_chunks(opts, self.options.batch);
        self.stream = Some((stream, want));
    }

    /// Whether every view the scan feeds can take another batch.
    fn has_room(&self) -> bool {
        self.slots
            .iter()
            .filter(|s| s.fed_by_scan())
            .all(|s| s.has_room())
    }

    /// When the loop must wake up by itself: for a checkpoint that comes due, a stream to
    /// reopen, the tail to look at. A view with a job in flight, or whose checkpoint waits
    /// for the log to be durable, wakes the loop when that is over.
    fn next_deadline(&self) -> Option<Instant> {
        let durable = *self.durable.borrow();
        let checkpoints = self
            .slots
            .iter()
            .filter(|s| s.idle() && s.active() && durable >= s.since())
            .filter_map(|s| s.dirty_at.map(|t| t + s.policy.interval));
        checkpoints
            .chain(self.retry_at)
            .chain(self.tail_quiet_until)
            .min()
    }

    fn handle(&mut self, command: Command<T>) {
        match command {
            Command::AddView { name, view, shared } => self.add_view(name, view, shared),
            Command::Rebuild { done } => {
                let target = *self.log_since.borrow();
                for index in 0..self.slots.len() {
                    let slot = &mut self.slots[index];
                    slot.shared.clear_failure();
                    slot.error = None;
                    slot.retried = false;
                    if slot.state == ViewState::Failed {
                        slot.state = ViewState::Rebuilding;
                    }
                    self.reset(index, "rebuild requested".into());
                }
                self.rebuilds.push(PendingRebuild { target, done });
            }
            Command::Revert { last, done } => self.reverts.push_back(PendingRevert { last, done }),
            Command::Close { .. } => unreachable!("close is handled by run"),
        }
    }

    /// Reverts the log as asked, once no checkpoint runs (none starts while a revert
    /// waits), and rebuilds every view that had applied records beyond the new tail.
    async fn run_reverts(&mut self) {
        while !self.reverts.is_empty() {
            let checkpointing = self
                .slots
                .iter()
                .any(|s| matches!(s.job, Some(Job::Checkpoint { .. })));
            if checkpointing {
                return;
            }
            let Some(PendingRevert { last, done }) = self.reverts.pop_front() else {
                return;
            };
            let result = self.log.revert(last).await;
            if result.is_ok() {
                self.cut_above(last, "the log was reverted below the view");
            }
            let _ = done.send(result);
        }
    }

    /// The log's tail moved. If it moved below a view (the log was truncated without
    /// `Flume::revert`, say by another handle), that view is rebuilt.
    fn follow_tail(&mut self) {
        let tail = *self.log_since.borrow();
        self.cut_above(tail, "the log's tail moved below the view");
    }

    /// The log now ends at `tail`: rebuild every view that applied (or is applying)
    /// records beyond it, and drop every batch read before the cut.
    fn cut_above(&mut self, tail: Option<Seq>, reason: &str) {
        let beyond = |s: &Slot<T>| s.active() && (s.since() > tail || s.applying() > tail);
        let queued_beyond = |s: &Slot<T>| s.fed > tail.map_or(0, |t| t + 1);
        if !self.slots.iter().any(|s| beyond(s) || queued_beyond(s)) {
            return;
        }
        for index in 0..self.slots.len() {
            let slot = &mut self.slots[index];
            let reset = beyond(slot);
            slot.refeed();
            if reset {
                self.reset(index, reason.into());
            }
        }
        // The stream may have read records that no longer exist.
        self.stream = None;
    }

    /// Registers a view and starts its load. Reads wait for the load; the view joins the
    /// scan once it (and every other view loading) has loaded.
    fn add_view(&mut self, name: String, view: BoxView<T>, shared: Arc<ViewShared>) {
        let policy = view.checkpoint_policy();
        let version = view.version();
        let view: SharedView<T> = Arc::new(std::sync::Mutex::new(view));
        let index = self.slots.len();
        self.jobs.push(job::load(index, &view));
        self.slots
            .push(Slot::loading(name, view, shared, version, policy));
        self.refresh_status();
    }

    /// A view's job returned: take its result, then see what the view does next.
    fn finished(&mut self, done: Done) {
        let Done { index, result } = done;
        let slot = &mut self.slots[index];
        let Some(job) = slot.job.take() else {
            tracing::error!(view = %slot.name, "a job returned for a view that ran none");
            return;
        };
        match job {
            Job::Load => self.loaded(index, result),
            Job::Apply { last, count } => self.applied(index, last, count, result.map(drop)),
            Job::Checkpoint { since } => self.checkpointed(index, since, result.map(drop)),
            Job::Reset => self.was_reset(index, result.map(drop)),
        }
    }

    fn loaded(&mut self, index: usize, loaded: Result<Option<Checkpoint>, BoxError>) {
        let log_since = *self.log_since.borrow();
        let slot = &mut self.slots[index];
        slot.state = ViewState::CatchingUp;
        let version = slot.version;
        // A reset asked for while the view loaded (a rebuild) replaces what it loaded.
        let reason = match (slot.reset_pending.take(), loaded) {
            (Some(reason), _) => Err(reason),
            (None, Err(e)) => Err(format!("its stored state could not be loaded: {e}")),
            (None, Ok(None)) => Ok(None),
            (None, Ok(Some(c))) if c.version != version => Err(format!(
                "its stored version {} differs from the current {version}",
                c.version
            )),
            (None, Ok(Some(c))) if c.since > log_since => Err(format!(
                "its stored since {:?} is ahead of the log's {:?}",
                c.since, log_since
            )),
            (None, Ok(Some(c))) => Ok(c.since),
        };
        match reason {
            // The reset marks the view loaded when it is done.
            Err(reason) => self.reset(index, reason),
            Ok(since) => {
                self.publish(index, since);
                let slot = &mut self.slots[index];
                slot.refeed();
                // Reads wait for this: none answers from the state the view had before.
                slot.shared.mark_loaded();
                tracing::debug!(view = %slot.name, ?since, "view loaded");
            }
        }
    }

    fn applied(&mut self, index: usize, last: Seq, count: u64, result: Result<(), BoxError>) {
        let slot = &mut self.slots[index];
        if let Some(reason) = slot.reset_pending.take() {
            self.reset(index, reason);
            return;
        }
        match result {
            Ok(()) => {
                slot.unsaved += count;
                slot.dirty_at.get_or_insert_with(Instant::now);
                self.publish(index, Some(last));
            }
            Err(e) if !slot.retried => {
                slot.retried = true;
                self.reset(index, format!("apply failed: {e}"));
            }
            Err(e) => self.fail(index, e),
        }
    }

    fn checkpointed(&mut self, index: usize, since: Seq, result: Result<(), BoxError>) {
        let slot = &mut self.slots[index];
        match result {
            Ok(()) => {
                slot.unsaved = 0;
                slot.dirty_at = None;
                tracing::debug!(view = %slot.name, since, "view checkpointed");
            }
            Err(e) => {
                // Try again after another interval.
                slot.dirty_at = Some(Instant::now());
                tracing::warn!(view = %slot.name, error = %e, "view checkpoint failed");
            }
        }
        if let Some(reason) = slot.reset_pending.take() {
            self.reset(index, reason);
        }
    }

    fn was_reset(&mut self, index: usize, result: Result<(), BoxError>) {
        match result {
            Err(e) => self.fail(index, e),
            // A view reset instead of loaded is loaded now (with nothing).
            Ok(()) => self.slots[index].shared.mark_loaded(),
        }
    }

    /// Sets the view's `since` and completes the readers waiting for it, with the status
    /// published first: whatever a woken reader sees, the status shows already.
    fn publish(&mut self, index: usize, since: Option<Seq>) {
        let shared = Arc::clone(&self.slots[index].shared);
        shared.advance(since, || self.refresh_status());
    }

    /// Wipes a view and starts it over from the beginning of the log: now if it is idle,
    /// else as soon as its job returns.
    fn reset(&mut self, index: usize, reason: String) {
        let slot = &mut self.slots[index];
        if slot.state == ViewState::Loading {
            // Reset when the load returns, instead of taking what it loaded.
            slot.reset_pending = Some(reason);
            return;
        }
        if !matches!(slot.state, ViewState::Failed | ViewState::Closed) {
            slot.state = ViewState::Rebuilding;
        }
        slot.clear_queue();
        match slot.job {
            // Already wiping: the view starts over from nothing anyway.
            Some(Job::Reset) => return,
            Some(_) => {
                slot.reset_pending = Some(reason);
                return;
            }
            None => {}
        }
        tracing::info!(view = %slot.name, reason, "resetting view");
        slot.unsaved = 0;
        slot.dirty_at = None;
        slot.job = Some(Job::Reset);
        let shared = Arc::clone(&slot.shared);
        // Since first (with the status), then the wipe: a read that starts now waits for
        // the rebuild, and one still running on the old state holds the wipe back.
        shared.lower(|| self.refresh_status());
        let slot = &mut self.slots[index];
        slot.refeed();
        self.jobs.push(job::reset(index, &slot.view, shared));
    }

    /// A read found a view's data damaged: reset the view, unless it has been reset
    /// since that read (several readers report the same damage) or no longer runs.
    fn damaged(&mut self, damage: Damage) {
        let Some(index) = self.slots.iter().position(|s| s.name == damage.name) else {
            return;
        };
        let slot = &self.slots[index];
        if !slot.active() || slot.shared.epoch() != damage.epoch || slot.reset_pending.is_some() {
            return;
        }
        self.reset(index, damage.reason);
    }

    fn fail(&mut self, index: usize, error: BoxError) {
        let slot = &mut self.slots[index];
        tracing::error!(view = %slot.name, error = %error, "view failed");
        slot.state = ViewState::Failed;
        slot.error = Some(error.to_string());
        slot.clear_queue();
        slot.unsaved = 0;
        slot.dirty_at = None;
        // Status first: a reader told the view failed finds the status saying so.
        self.refresh_status();
        self.slots[index].shared.fail(Arc::new(error));
    }

    /// Takes a batch from the log stream and queues it for every view that needs it.
    fn read(&mut self, batch: Result<Vec<RawRecord>>) {
        let (records, failure) = match batch {
            Ok(records) => (records, None),
            Err(e) => (Vec::new(), Some(e)),
        };
        if let (Some((_, next)), Some(last)) = (&mut self.stream, records.last()) {
            *next = last.0 + 1;
        }
        if let (Some(&(first, _)), Some(&(last, _))) = (records.first(), records.last()) {
            let batch: Batch<T> = Arc::new(view::Batch::new(records));
            for slot in self.slots.iter_mut().filter(|s| s.fed_by_scan()) {
                if slot.fed > last {
                    continue;
                }
                if slot.fed < first {
                    // The stream skipped records this view needs (seqs not dense?):
                    // never apply past a gap; reopen from the view's position.
                    tracing::error!(view = %slot.name, fed = slot.fed, first, "gap in the log stream");
                    self.stream = None;
                    break;
                }
                let start = batch.records.partition_point(|r| r.0 < slot.fed);
                slot.push(Arc::clone(&batch), start);
                slot.fed = last + 1;
                if slot.left_behind() {
                    tracing::debug!(view = %slot.name, fed = slot.fed, job = ?slot.job, "the scan goes on without a busy view");
                }
            }
        }
        match failure {
            None => self.backoff = MIN_BACKOFF,
            Some(e) => {
                self.stream = None;
                tracing::warn!(error = %e, retry_in = ?self.backoff, "reading the log failed");
                self.retry_at = Some(Instant::now() + self.backoff);
                self.backoff = (self.backoff * 2).min(MAX_BACKOFF);
            }
        }
    }

    /// Starts an `apply` for every idle view with a queued batch.
    fn pump(&mut self) {
        for (index, slot) in self.slots.iter_mut().enumerate() {
            if !slot.idle() || !slot.active() {
                continue;
            }
            let Some((batch, start)) = slot.pop() else {
                continue;
            };
            let last = batch.last_seq().unwrap_or(0);
            let count = (batch.records.len() - start) as u64;
            slot.job = Some(Job::Apply { last, count });
            let decoder = Arc::clone(&self.decoder);
            self.jobs
                .push(job::apply(index, &slot.view, batch, start, decoder));
        }
    }

    /// Starts a checkpoint for every idle view that is due (every idle view with unsaved
    /// records, when `all`), as far as the log is durable. Asks the log to sync when a
    /// due checkpoint waits for durability. None starts while a revert waits.
    fn checkpoint_due(&mut self, all: bool) {
        if !self.reverts.is_empty() {
            return;
        }
        let durable = *self.durable.borrow();
        let now = Instant::now();
        let mut needs_sync = false;
        for (index, slot) in self.slots.iter_mut().enumerate() {
            let due = slot.unsaved > 0
                && (all
                    || slot.unsaved >= slot.policy.records
                    || slot
                        .dirty_at
                        .is_some_and(|t| t + slot.policy.interval <= now));
            if !due || !slot.active() || !slot.idle() || slot.reset_pending.is_some() {
                continue;
            }
            let Some(since) = slot.since() else { continue };
            if durable < Some(since) {
                needs_sync = true;
                continue;
            }
            slot.job = Some(Job::Checkpoint { since });
            self.jobs.push(job::checkpoint(index, &slot.view, since));
        }
        if needs_sync && !all && self.syncing.as_ref().is_none_or(|h| h.is_finished()) {
            let log = Arc::clone(&self.log);
            self.syncing = Some(tokio::spawn(async move {
                if let Err(e) = log.sync().await {
                    tracing::warn!(error = %e, "syncing the log for a view checkpoint failed");
                }
            }));
        }
    }

    fn finish_rebuilds(&mut self) {
        if self.rebuilds.is_empty() {
            return;
        }
        let slots = &self.slots;
        let pending = std::mem::take(&mut self.rebuilds);
        for rebuild in pending {
            let caught_up = slots.iter().all(|s| {
                s.state == ViewState::Failed
                    || (s.state != ViewState::Loading
                        && !s.resetting()
                        && s.since() >= rebuild.target)
            });
            if !caught_up {
                self.rebuilds.push(rebuild);
                continue;
            }
            let result = match slots.iter().find(|s| s.state == ViewState::Failed) {
                None => Ok(()),
                Some(s) => Err(Error::ViewFailed {
                    name: s.name.clone(),
                    source: Arc::new(s.error.clone().unwrap_or_default().into()),
                }),
            };
            let _ = rebuild.done.send(result);
        }
    }

    /// Updates view states from positions and publishes the status if anything changed.
    /// Runs after every event, so it allocates nothing when nothing changed.
    fn refresh_status(&mut self) {
        // One statement per channel: `durable()` may be the very `since` channel, and
        // two read guards of one watch held at once deadlock against a sender.
        let since = *self.log_since.borrow();
        let durable = *self.durable.borrow();
        let log = LogStatus { since, durable };
        for slot in &mut self.slots {
            if slot.active() && !slot.resetting() {
                if slot.since() >= log.since {
                    slot.state = ViewState::Ready;
                    slot.retried = false;
                } else if slot.state == ViewState::Ready {
                    slot.state = ViewState::CatchingUp;
                }
            }
        }
        let slots = &self.slots;
        self.status.send_if_modified(|current| {
            let mut changed = current.log != log;
            current.log = log;
            for slot in slots {
                let since = slot.since();
                let progress = match (slot.state, log.since) {
                    (ViewState::Ready, _) | (_, None) => 1.0,
                    (_, Some(tail)) => {
                        (since.map_or(0, |s| s + 1) as f64 / (tail as f64 + 1.0)).min(1.0)
                    }
                };
                let view = current.views.get_mut(&slot.name);
                let same = view.as_ref().is_some_and(|v| {
                    v.since == since
                        && v.state == slot.state
                        && v.progress == progress
                        && v.error == slot.error
                });
                if same {
                    continue;
                }
                changed = true;
                let status = ViewStatus {
                    since,
                    state: slot.state,
                    progress,
                    error: slot.error.clone(),
                };
                match view {
                    Some(v) => *v = status,
                    None => {
                        current.views.insert(slot.name.clone(), status);
                    }
                }
            }
            changed
        });
    }

    /// Close: stop reading, let the jobs in flight finish (a checkpoint included), run
    /// the reverts asked for, make the log durable, checkpoint every view, fail pending
    /// readers with `Closed`, close the log.
    async fn shutdown(&mut self) -> Result<()> {
        self.stream = None;
        self.drain().await;
        self.run_reverts().await;
        self.drain().await;
        let synced = self.log.sync().await;
        if let Err(e) = &synced {
            tracing::warn!(error = %e, "syncing the log at close failed; views checkpoint only what is durable");
        }
        self.checkpoint_due(true);
        self.drain().await;
        self.stop(Error::Closed).await;
        let closed = self.log.close().await;
        match (synced, closed) {
            (_, Err(Error::Closed)) | (Ok(()), Ok(())) => Ok(()),
            (Err(e), _) | (_, Err(e)) => Err(e),
        }
    }

    /// Waits for every job in flight, and for the jobs they lead to (a reset after a
    /// load or a failure), starting no apply, and drops every queued batch.
    async fn drain(&mut self) {
        for slot in &mut self.slots {
            slot.clear_queue();
        }
        while let Some(done) = self.jobs.next().await {
            self.finished(done);
            for slot in &mut self.slots {
                slot.clear_queue();
            }
        }
    }

    /// Stops the driver: every reader, pending or future, gets `Closed`.
    async fn stop(&mut self, error: Error) {
        self.stream = None;
        self.drain().await;
        for slot in &mut self.slots {
            slot.state = ViewState::Closed;
        }
        self.refresh_status();
        for slot in &self.slots {
            slot.shared.close();
        }
        for pending in self.rebuilds.drain(..) {
            let _ = pending.done.send(Err(error.duplicate()));
        }
        for pending in self.reverts.drain(..) {
            let _ = pending.done.send(Err(error.duplicate()));
        }
        self.commands.close();
        self.close_queued_views();
        self.stopped = true;
        tracing::debug!("view driver stopped");
    }

    /// Closes the views whose `AddView` was still queued when the driver stopped, so that
    /// their readers get `Closed` instead of waiting for a load that never comes.
    fn close_queued_views(&mut self) {
        while let Ok(command) = self.commands.try_recv() {
            if let Command::AddView { shared, .. } = command {
                shared.close();
            }
        }
    }
}

/// How long a dropped driver waits for the log to sync before it checkpoints only what
/// the log holds durably already.
const DROP_SYNC_WAIT: Duration = Duration::from_secs(5);

impl<T> Drop for Driver<T> {
    /// The driver's task was dropped before the driver stopped: its runtime is shutting
    /// down (typically the program ends right after dropping its last `Flume` handle,
    /// before the driver's own close finished). Best effort, on the dropping thread
    /// (which is tearing the runtime down, not running tasks): sync the log through a
    /// helper thread, waiting at most `DROP_SYNC_WAIT`, then checkpoint every idle view
    /// whose state the log holds durably, so that the next open resumes from there. A
    /// view with a job in flight is left alone: its state is not the one `since` says
    /// (an apply), or it is checkpointing already.
    fn drop(&mut self) {
        if self.stopped {
            return;
        }
        let due: Vec<(SharedView<T>, Seq, String)> = self
            .slots
            .iter()
            .filter(|s| s.unsaved > 0 && s.active() && s.idle() && s.reset_pending.is_none())
            .filter_map(|s| Some((Arc::clone(&s.view), s.since()?, s.name.clone())))
            .collect();
        if due.is_empty() {
            return;
        }
        let log = Arc::clone(&self.log);
        let (tx, rx) = std::sync::mpsc::channel();
        let spawned = std::thread::Builder::new()
            .name("flume-drop-sync".into())
            .spawn(move || {
                // A log whose sync needs the (gone) runtime fails or never answers;
                // the wait below is bounded either way.
                let _ = tx.send(futures::executor::block_on(log.sync()));
            });
        match spawned.map(|_| rx.recv_timeout(DROP_SYNC_WAIT)) {
            Ok(Ok(Ok(()))) => {}
            Ok(Ok(Err(e))) => {
                tracing::warn!(error = %e, "syncing the log of a dropped database failed")
            }
            _ => tracing::warn!(
                "the log of a dropped database did not sync; views checkpoint only what is durable"
            ),
        }
        let durable = *self.durable.borrow();
        for (view, since, name) in due {
            if durable < Some(since) {
                tracing::warn!(view = %name, since, ?durable, "not checkpointing a dropped view beyond the durable log");
                continue;
            }
            let mut guard = view.lock().unwrap_or_else(|p| p.into_inner());
            match job::catch(|| guard.checkpoint(since)) {
                Ok(()) => tracing::debug!(view = %name, since, "dropped view checkpointed"),
                Err(e) => {
                    tracing::warn!(view = %name, error = %e, "checkpointing a dropped view failed")
                }
            }
        }
    }
}

/// The next batch from the stream, if there is one.
async fn next_batch(stream: &mut Option<(LogStream, Seq)>) -> Option<Result<Vec<RawRecord>>> {
    match stream {
        Some((s, _)) => s.next().await,
        None => std::future::pending().await,
    }
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(t) => tokio::time::sleep_until(t).await,
        None => std::future::pending().await,
    }
}
