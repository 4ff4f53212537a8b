//! The jobs a view runs: `load`, `apply`, `checkpoint` and `reset`, each on a blocking
//! thread, one at a time per view.
//!
//! The driver starts a job, records it in the view's slot, and goes on with the scan and
//! the other views; the job reports back as a [`Done`] through the driver's set of
//! running jobs. While a view runs a job it is given nothing else to do: no batch is
//! applied during its load, reset or checkpoint, and no checkpoint is taken while it
//! applies.

use std::sync::{Arc, Mutex};

use futures::future::BoxFuture;

use crate::view::{self, Decoder};
use crate::wait::ViewShared;
use crate::{BoxError, Checkpoint, CheckpointPolicy, Records, Result, Seq, View};

/// The object-safe part of [`View`] the driver needs.
pub(crate) trait DynView<T>: Send {
    fn version(&self) -> u32;
    fn load(&mut self) -> Result<Option<Checkpoint>, BoxError>;
    fn apply(&mut self, records: Records<'_, T>) -> Result<(), BoxError>;
    fn checkpoint(&mut self, since: Seq) -> Result<(), BoxError>;
    fn reset(&mut self) -> Result<(), BoxError>;
    fn checkpoint_policy(&self) -> CheckpointPolicy;
}

impl<T, V: View<T>> DynView<T> for V {
    fn version(&self) -> u32 {
        View::version(self)
    }
    fn load(&mut self) -> Result<Option<Checkpoint>, BoxError> {
        View::load(self)
    }
    fn apply(&mut self, records: Records<'_, T>) -> Result<(), BoxError> {
        View::apply(self, records)
    }
    fn checkpoint(&mut self, since: Seq) -> Result<(), BoxError> {
        View::checkpoint(self, since)
    }
    fn reset(&mut self) -> Result<(), BoxError> {
        View::reset(self)
    }
    fn checkpoint_policy(&self) -> CheckpointPolicy {
        View::checkpoint_policy(self)
    }
}

pub(crate) type BoxView<T> = Box<dyn DynView<T>>;

/// A view as its jobs share it: only the job running (one at a time) locks it.
pub(super) type SharedView<T> = Arc<Mutex<BoxView<T>>>;

/// Records read from the log once and shared by every view that needs them.
pub(super) type Batch<T> = Arc<view::Batch<T>>;

/// What a view is doing on its blocking thread.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Job {
    /// Loading its persisted state (the first job of every view).
    Load,
    /// Applying a batch whose last record is `last`, `count` records in all.
    Apply { last: Seq, count: u64 },
    /// Persisting its state as of `since`.
    Checkpoint { since: Seq },
    /// Wiping its state (its `since` was lowered before the job started).
    Reset,
}

impl Job {
    /// Whether this is the view's own I/O (anything but applying records). The scan does
    /// not wait for a view busy with it.
    pub(super) fn is_io(self) -> bool {
        !matches!(self, Job::Apply { .. })
    }
}

/// A finished job, reported back to the driver, which knows from the view's slot what
/// the job was.
pub(super) struct Done {
    /// The view's index among the driver's slots.
    pub(super) index: usize,
    /// The load's checkpoint; `None` for every other job.
    pub(super) result: Result<Option<Checkpoint>, BoxError>,
}

/// A job on its way: resolves when the blocking thread is done.
pub(super) type Running = BoxFuture<'static, Done>;

/// Loads the view's persisted state.
pub(super) fn load<T: 'static>(index: usize, view: &SharedView<T>) -> Running {
    run(index, view, |v| v.load())
}

/// Applies the records of `batch` from `start` on.
pub(super) fn apply<T: Send + Sync + 'static>(
    index: usize,
    view: &SharedView<T>,
    batch: Batch<T>,
    start: usize,
    decoder: Arc<Decoder<T>>,
) -> Running {
    run(index, view, move |v| {
        v.apply(Records::new(&batch, start, &decoder))?;
        Ok(None)
    })
}

/// Persists the view's state as of `since`.
pub(super) fn checkpoint<T: 'static>(index: usize, view: &SharedView<T>, since: Seq) -> Running {
    run(index, view, move |v| {
        v.checkpoint(since)?;
        Ok(None)
    })
}

/// Wipes the view, with no read running (see [`ViewShared::wipe_with`]).
pub(super) fn reset<T: 'static>(
    index: usize,
    view: &SharedView<T>,
    shared: Arc<ViewShared>,
) -> Running {
    run(index, view, move |v| {
        shared.wipe_with(|| v.reset())?;
        Ok(None)
    })
}

/// Runs `f` on the view on a blocking thread, turning a panic into an error.
fn run<T, F>(index: usize, view: &SharedView<T>, f: F) -> Running
where
    T: 'static,
    F: FnOnce(&mut BoxView<T>) -> Result<Option<Checkpoint>, BoxError> + Send + 'static,
{
    let view = Arc::clone(view);
    let task = tokio::task::spawn_blocking(move || {
        // Only this job locks the view while it runs; a panic is caught inside the
        // guard's scope, so the lock is never poisoned by the view's own code.
        let mut guard = view.lock().unwrap_or_else(|p| p.into_inner());
        catch(|| f(&mut guard))
    });
    Box::pin(async move {
        let result = match task.await {
            Ok(result) => result,
            Err(e) => Err(format!("the view's task did not finish: {e}").into()),
        };
        Done { index, result }
    })
}

/// Calls `f`, turning a panic into an error.
pub(super) fn catch<R>(f: impl FnOnce() -> Result<R, BoxError>) -> Result<R, BoxError> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(f))
        .unwrap_or_else(|panic| Err(panic_message(&*panic).into()))
}

fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    let text = panic
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| panic.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("(no message)");
    format!("the view panicked: {text}")
}
