//! A view as the driver keeps it: its state, its job, and the batches waiting for it.

use std::collections::VecDeque;
use std::sync::Arc;

use tokio::time::Instant;

use super::job::{Batch, Job, SharedView};
use crate::status::ViewState;
use crate::wait::ViewShared;
use crate::{CheckpointPolicy, Seq};

/// How many batches may wait for a view beyond the one it is applying. The scan pauses
/// while the slowest view's queue is full; faster views run ahead by up to this much.
const QUEUE_DEPTH: usize = 4;

/// How many records may wait for a view busy with its own I/O (a load, a reset or a
/// checkpoint): the scan does not wait for such a view, up to this many records. Beyond
/// them the view is left behind, and the scan goes back for it once its job is done.
pub(super) const BUSY_QUEUE_RECORDS: u64 = 1 << 16;

pub(super) struct Slot<T> {
    pub(super) name: String,
    pub(super) view: SharedView<T>,
    /// The view's `since` (the one place it lives), its readers and its reset gate.
    pub(super) shared: Arc<ViewShared>,
    /// The view's version, as it said when it was added.
    pub(super) version: u32,
    pub(super) state: ViewState,
    /// The first seq not yet applied, in flight or queued for this view.
    pub(super) fed: Seq,
    /// Batches waiting for this view, with the index of the first entry it needs.
    queue: VecDeque<(Batch<T>, usize)>,
    /// How many records `queue` holds.
    queued: u64,
    /// What the view is doing on its blocking thread, if anything.
    pub(super) job: Option<Job>,
    /// A reset asked for while a job ran; done when it returns.
    pub(super) reset_pending: Option<String>,
    /// Whether the scan feeds the view. A view joins once no view is loading, so that
    /// views loading together share one scan.
    pub(super) joined: bool,
    /// The view was reset after a failure and has not caught up since.
    pub(super) retried: bool,
    pub(super) policy: CheckpointPolicy,
    /// Records applied since the last checkpoint, and when the first of them was applied.
    pub(super) unsaved: u64,
    pub(super) dirty_at: Option<Instant>,
    pub(super) error: Option<String>,
}

impl<T> Slot<T> {
    /// A view just added: loading, with its load as its first job.
    pub(super) fn loading(
        name: String,
        view: SharedView<T>,
        shared: Arc<ViewShared>,
        version: u32,
        policy: CheckpointPolicy,
    ) -> Self {
        Slot {
            name,
            view,
            shared,
            version,
            state: ViewState::Loading,
            fed: 0,
            queue: VecDeque::new(),
            queued: 0,
            job: Some(Job::Load),
            reset_pending: None,
            joined: false,
            retried: false,
            policy,
            unsaved: 0,
            dirty_at: None,
            error: None,
        }
    }

    /// The last seq the view has applied.
    pub(super) fn since(&self) -> Option<Seq> {
        self.shared.since()
    }

    pub(super) fn active(&self) -> bool {
        !matches!(
            self.state,
            ViewState::Failed | ViewState::Closed | ViewState::Loading
        )
    }

    pub(super) fn idle(&self) -> bool {
        self.job.is_none()
    }

    /// The last seq of the batch being applied right now, if any.
    pub(super) fn applying(&self) -> Option<Seq> {
        match self.job {
            Some(Job::Apply { last, .. }) => Some(last),
            _ => None,
        }
    }

    /// Whether the view is being reset, or will be once its job returns.
    pub(super) fn resetting(&self) -> bool {
        self.reset_pending.is_some() || self.job == Some(Job::Reset)
    }

    /// Whether the view is busy with its own I/O and holds as many records as it may
    /// meanwhile: the scan leaves it behind.
    pub(super) fn left_behind(&self) -> bool {
        self.job.is_some_and(Job::is_io) && self.queued >= BUSY_QUEUE_RECORDS
    }

    /// Whether the scan must feed this view.
    pub(super) fn fed_by_scan(&self) -> bool {
        self.active() && self.joined && self.reset_pending.is_none() && !self.left_behind()
    }

    /// Whether the view can take another batch now. The scan pauses for a view that
    /// applies, never for one busy with its own I/O.
    pub(super) fn has_room(&self) -> bool {
        self.job.is_some_and(Job::is_io) || self.queue.len() < QUEUE_DEPTH
    }

    /// Queues the records of `batch` from `start` on.
    pub(super) fn push(&mut self, batch: Batch<T>, start: usize) {
        self.queued += (batch.records.len() - start) as u64;
        self.queue.push_back((batch, start));
    }

    /// The next batch to apply, with the index of its first record for this view.
    pub(super) fn pop(&mut self) -> Option<(Batch<T>, usize)> {
        let (batch, start) = self.queue.pop_front()?;
        self.queued -= (batch.records.len() - start) as u64;
        Some((batch, start))
    }

    pub(super) fn clear_queue(&mut self) {
        self.queue.clear();
        self.queued = 0;
    }

    /// Drops the queue and feeds the view again from the first seq it has not applied
    /// (or is not applying).
    pub(super) fn refeed(&mut self) {
        self.clear_queue();
        self.fed = self.applying().or(self.since()).map_or(0, |s| s + 1);
    }
}
