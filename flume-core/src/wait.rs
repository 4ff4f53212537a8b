//! Reads wait for catch-up: the ordered queue of readers waiting on a view's `since`.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::{mpsc, oneshot, watch, RwLock};

use crate::{BoxError, Error, Result, Seq};

/// How long a view read waits before answering.
///
/// Every level first waits for the view to have *loaded*: right after a database opens,
/// the driver reads each view's persisted state (its checkpoint) before feeding it new
/// records, and until then the view holds an empty state that says nothing about the
/// database. No read ever answers from that empty state. A view that persists nothing is
/// loaded as soon as the driver reaches it (at once, in practice).
///
/// | level | waits until the view has | the answer reflects | use it when |
/// |---|---|---|---|
/// | [`Wait::Log`] (default) | applied every record the log showed when the read was issued | every record appended before the read, including your own | reading your own writes; most reads |
/// | [`Wait::AtLeast(seq)`](Wait::AtLeast) | applied `seq` | at least the records up to `seq` | you hold a seq (from `append`, a log stream, another view) and need the view to include it |
/// | [`Wait::NoWait`] | loaded its persisted state, nothing more | whatever the view has applied so far: the state saved at the last checkpoint, or later | showing something at once (a UI that then follows changes), or a view that may be far behind during a rebuild |
///
/// With every level, a read of a closed database fails with
/// [`Error::Closed`](crate::Error::Closed) (also while waiting) and a read of a failed view
/// with [`Error::ViewFailed`](crate::Error::ViewFailed). Reads also yield to the runtime
/// now and then (Tokio's cooperative budget), so that a loop of reads that never has to
/// wait does not keep the driver from running on a small runtime.
///
/// This is JavaScript flumedb's `since` argument: `Wait::NoWait` is `since: -1` (answer
/// once loaded), `Wait::Log` is waiting for the log's `since` at call time.
///
/// ```
/// use flume_core::{Flume, Wait};
/// use flumelog_memory::MemoryLog;
/// use flumeview_reduce::Reduce;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> flume_core::Result<()> {
/// let db = Flume::<u64>::new(MemoryLog::new());
/// let count = db.add_view("count", Reduce::count(1))?;
/// let seq = db.append(&7).await?;
/// assert_eq!(count.get(Wait::Log).await?, 1); // includes the append above
/// assert_eq!(count.get(Wait::AtLeast(seq)).await?, 1); // includes record `seq`
/// assert!(count.get(Wait::NoWait).await? <= 1); // loaded, maybe not caught up
/// assert_eq!(Wait::default(), Wait::Log);
/// # db.close().await }
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Wait {
    /// Wait until the view has applied every record the log showed when the read was
    /// issued. After `append` returns, a read with this policy reflects that record.
    #[default]
    Log,
    /// Wait until the view has applied this seq.
    AtLeast(Seq),
    /// Answer from the view's current state, once the view has loaded its persisted
    /// state (never from the empty state it holds before that).
    NoWait,
}

/// Lets a view's reader read the view's state once it has caught up. Cheap to clone.
///
/// A view's reader reads through [`Waiter::read`] (or [`Waiter::try_read`]): it waits as
/// the [`Wait`] policy says, then runs a closure that reads the view's state. While the
/// closure runs the driver cannot reset the view (a rebuild, a revert, a reset after a
/// failure), and the closure only runs when the view's position is still at or beyond
/// the read's target; so a read never sees a wiped view or a state older than it waited
/// for. Applying new records may go on meanwhile: the state only moves forward.
///
/// ```
/// use std::sync::{Arc, Mutex};
/// use flume_core::{Result, Wait, Waiter};
///
/// #[derive(Clone)]
/// struct TotalReader {
///     total: Arc<Mutex<u64>>,
///     waiter: Waiter,
/// }
///
/// impl TotalReader {
///     async fn get(&self, wait: Wait) -> Result<u64> {
///         self.waiter.read(wait, || *self.total.lock().unwrap()).await
///     }
/// }
/// ```
///
/// Readers are kept in a queue ordered by the seq they wait for; each advance of the
/// view completes exactly the readers it satisfies, each exactly once, and closing the
/// database completes every pending reader with [`Error::Closed`].
#[derive(Clone)]
pub struct Waiter {
    shared: Arc<ViewShared>,
    log_since: watch::Receiver<Option<Seq>>,
}

impl std::fmt::Debug for Waiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Waiter")
            .field("view", &self.shared.name)
            .field("since", &self.since())
            .finish()
    }
}

impl Waiter {
    pub(crate) fn new(shared: Arc<ViewShared>, log_since: watch::Receiver<Option<Seq>>) -> Self {
        Waiter { shared, log_since }
    }

    /// The view's name.
    pub fn name(&self) -> &str {
        &self.shared.name
    }

    /// The last seq the view has applied (`None`: nothing).
    pub fn since(&self) -> Option<Seq> {
        self.shared.since()
    }

    /// A watch of the view's `since`.
    pub fn since_watch(&self) -> watch::Receiver<Option<Seq>> {
        self.shared.since_tx.subscribe()
    }

    /// Resolves when the view stops serving reads: with [`Error::Closed`] once the
    /// database closes, or [`Error::ViewFailed`] when the view fails. A stream of view
    /// changes can select on this to end cleanly.
    ///
    /// # Cancel safety
    /// Cancel safe.
    pub async fn stopped(&self) -> Error {
        let mut life = self.shared.life.subscribe();
        let result = life.wait_for(|l| !matches!(l, Life::Running)).await;
        match result.as_deref() {
            Ok(Life::Failed(e)) => Error::ViewFailed {
                name: self.shared.name.clone(),
                source: Arc::clone(e),
            },
            _ => Error::Closed,
        }
    }

    /// Waits as `wait` says, and nothing more.
    ///
    /// This is a synchronisation point, not a read: the view may be reset (by a
    /// rebuild, a revert or a failure) right after it returns, so state read after it
    /// may be wiped. To read a view's state use [`Waiter::read`] or
    /// [`Waiter::try_read`], which keep resets out while the read runs.
    ///
    /// # Errors
    /// [`Error::Closed`] when the database is closed (also while waiting);
    /// [`Error::ViewFailed`] when the view has failed.
    ///
    /// # Cancel safety
    /// Dropping the future removes the reader from the queue; nothing else happens.
    pub async fn wait(&self, wait: Wait) -> Result<()> {
        self.wait_target(self.target(wait)).await
    }

    /// Waits until the view has loaded and has applied `target` (if any).
    async fn wait_target(&self, target: Option<Seq>) -> Result<()> {
        // A read that never has to wait must still let other tasks (the driver) run.
        tokio::task::coop::consume_budget().await;
        self.shared.until_loaded().await;
        match target {
            None => self.shared.check(),
            Some(target) => self.shared.wait_for(target).await,
        }
    }

    /// Resolves once the view has loaded its persisted state (or has stopped: closed or
    /// failed). Every [`Waiter::wait`] does this first; a stream that reads the view's
    /// state without a `wait` (a change feed) should too.
    ///
    /// # Cancel safety
    /// Cancel safe.
    pub async fn loaded(&self) {
        self.shared.until_loaded().await;
    }

    /// Whether the view has loaded its persisted state (or has stopped).
    pub fn is_loaded(&self) -> bool {
        *self.shared.loaded.borrow()
    }

    /// The seq of the last record in the log (`None`: empty), as [`Wait::Log`] captures it.
    pub fn log_since(&self) -> Option<Seq> {
        *self.log_since.borrow()
    }

    /// `wait` with its target fixed now: [`Wait::Log`] becomes [`Wait::AtLeast`] the
    /// log's current last seq ([`Wait::NoWait`] when the log is empty, which waits for the
    /// same thing); the other levels are returned as they are. A stream made now and
    /// polled later uses this so that its starting point is the moment it was made.
    ///
    /// ```
    /// # async fn demo(waiter: flume_core::Waiter) {
    /// use flume_core::Wait;
    /// match waiter.capture(Wait::Log) {
    ///     Wait::AtLeast(seq) => assert_eq!(Some(seq), waiter.log_since()),
    ///     other => assert_eq!(other, Wait::NoWait),
    /// }
    /// # }
    /// ```
    pub fn capture(&self, wait: Wait) -> Wait {
        self.target(wait).map_or(Wait::NoWait, Wait::AtLeast)
    }

    /// The seq a read with `wait` waits for, if any.
    fn target(&self, wait: Wait) -> Option<Seq> {
        match wait {
            Wait::NoWait => None,
            Wait::AtLeast(seq) => Some(seq),
            Wait::Log => *self.log_since.borrow(),
        }
    }

    /// Waits as `wait` says, then calls `read` and returns what it returns.
    ///
    /// `read` runs while the view cannot be reset, and only once the view has applied
    /// the read's target (a reset between the wait and the read sends the read back to
    /// waiting), so it sees the view's state as of the target or later, never a wiped
    /// one. `read` runs on the caller's task and holds back resets while it runs: keep
    /// it short and do not block in it (it cannot `.await`).
    ///
    /// ```
    /// # use flume_core::{Wait, Waiter};
    /// # async fn demo(waiter: Waiter, state: std::sync::Mutex<Vec<u64>>) -> flume_core::Result<()> {
    /// let len = waiter.read(Wait::Log, || state.lock().unwrap().len()).await?;
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    /// [`Error::Closed`] when the database is closed (also while waiting; a read pending
    /// at close never runs `read`); [`Error::ViewFailed`] when the view has failed.
    ///
    /// # Cancel safety
    /// Dropping the future stops the wait; `read` is not called.
    pub async fn read<R>(&self, wait: Wait, read: impl FnOnce() -> R) -> Result<R> {
        let target = self.target(wait);
        let _entered = self.enter(target, 0).await?;
        Ok(read())
    }

    /// Like [`Waiter::read`], for reads that can fail, and that heals a view whose own
    /// data turns out damaged.
    ///
    /// When `read` returns [`Error::ViewDamaged`] (say, a checksum mismatch in one of
    /// the view's files), the driver is asked to reset the view and rebuild it from the
    /// log; the read waits until the rebuild has reached the read's target (or the
    /// position the view had when the damage was found, whichever is higher) and runs
    /// `read` once more. A second `ViewDamaged` is returned to the caller, with this
    /// view's name. Other errors are returned as they are.
    ///
    /// ```
    /// # use flume_core::{Error, Wait, Waiter};
    /// # async fn demo(waiter: Waiter, file: std::path::PathBuf) -> flume_core::Result<()> {
    /// let bytes = waiter
    ///     .try_read(Wait::Log, || {
    ///         let bytes = std::fs::read(&file).map_err(|e| Error::io(&file, e))?;
    ///         if bytes.is_empty() {
    ///             return Err(Error::view_damaged(format!("{} is empty", file.display())));
    ///         }
    ///         Ok(bytes)
    ///     })
    ///     .await?;
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    /// As [`Waiter::read`]; whatever `read` returns; [`Error::ViewDamaged`] when the
    /// data is still damaged after the rebuild.
    ///
    /// # Cancel safety
    /// Dropping the future stops the wait or the rebuild wait; a reset already asked
    /// for still happens.
    pub async fn try_read<R>(&self, wait: Wait, mut read: impl FnMut() -> Result<R>) -> Result<R> {
        let mut target = self.target(wait);
        let mut min_epoch = 0;
        let mut healing = false;
        loop {
            let entered = self.enter(target, min_epoch).await?;
            let source = match read() {
                Err(Error::ViewDamaged { source, .. }) => source,
                other => return other,
            };
            // Where the view was when the damage was found. A reset may lower `since`
            // already (it waits for the gate only to wipe): then it was where the read
            // found it.
            let since = self.since().max(entered.since);
            let epoch = entered.epoch;
            drop(entered);
            if healing {
                return Err(Error::ViewDamaged {
                    name: self.shared.name.clone(),
                    source,
                });
            }
            healing = true;
            tracing::warn!(view = %self.shared.name, error = %source, "a read found the view's data damaged; rebuilding it");
            let reason = format!("a read found its data damaged: {source}");
            if !self.shared.report_damage(epoch, reason) {
                return Err(Error::ViewDamaged {
                    name: self.shared.name.clone(),
                    source,
                });
            }
            target = target.max(since);
            min_epoch = epoch + 1;
        }
    }

    /// Waits until the view has applied `target` (if any) and has been reset at least
    /// up to `min_epoch`, then takes the read side of the view's reset gate, and returns
    /// it with the view's epoch and `since`, once both still hold under it.
    async fn enter(&self, target: Option<Seq>, min_epoch: u64) -> Result<Entered<'_>> {
        loop {
            if min_epoch > 0 {
                self.shared.wait_epoch(min_epoch).await?;
            }
            self.wait_target(target).await?;
            let gate = self.shared.gate.read().await;
            let entered = {
                let q = self.shared.lock();
                self.shared.status(&q)?;
                let since = self.shared.since();
                let reached = target.is_none_or(|t| since.is_some_and(|s| s >= t));
                // The epoch changes under the queue lock too, so it agrees with `since`.
                let epoch = *self.shared.epoch_tx.borrow();
                (reached && epoch >= min_epoch).then_some((epoch, since))
            };
            // Otherwise a reset slipped in between the wait and the gate: wait again.
            if let Some((epoch, since)) = entered {
                return Ok(Entered {
                    _gate: gate,
                    epoch,
                    since,
                });
            }
        }
    }
}

/// A read let in by [`Waiter::enter`]: it holds the read side of the reset gate.
struct Entered<'a> {
    _gate: tokio::sync::RwLockReadGuard<'a, ()>,
    /// The view's epoch when the read was let in.
    epoch: u64,
    /// The view's `since` when the read was let in (at or beyond the read's target).
    since: Option<Seq>,
}

/// Whether a view serves reads.
enum Life {
    Running,
    Failed(Arc<BoxError>),
    Closed,
}

struct Queue {
    failed: Option<Arc<BoxError>>,
    closed: bool,
    next_id: u64,
    waiting: BTreeMap<(Seq, u64), oneshot::Sender<Result<()>>>,
}

/// A read found a view's own data damaged: the driver should reset the view, unless it
/// has been reset since (`epoch` is the view's epoch when the read ran).
#[derive(Debug)]
pub(crate) struct Damage {
    pub(crate) name: String,
    pub(crate) epoch: u64,
    pub(crate) reason: String,
}

/// The state a view shares between its driver and its readers.
///
/// The view's `since` lives in one place, `since_tx`. Only the driver writes it
/// ([`ViewShared::advance`], [`ViewShared::lower`]), and always under the queue lock,
/// together with the database's status; readers compare it with their target under the
/// same lock. So a reader never misses an advance, and never sees a `since` the status
/// does not show yet.
pub(crate) struct ViewShared {
    pub(crate) name: String,
    since_tx: watch::Sender<Option<Seq>>,
    life: watch::Sender<Life>,
    queue: Mutex<Queue>,
    /// Reads hold the read side while they run; a reset lowers `since`, then holds the
    /// write side while it wipes the view.
    gate: RwLock<()>,
    /// How many times the view has been reset; changed under the queue lock.
    epoch_tx: watch::Sender<u64>,
    damage: Option<mpsc::UnboundedSender<Damage>>,
    /// Whether the view has loaded its persisted state (or stopped): reads wait for it.
    loaded: watch::Sender<bool>,
}

impl ViewShared {
    #[cfg(test)]
    pub(crate) fn new(name: String) -> Arc<Self> {
        Self::with_damage(name, None)
    }

    /// A view whose readers report damaged data on `damage`.
    pub(crate) fn with_damage(
        name: String,
        damage: Option<mpsc::UnboundedSender<Damage>>,
    ) -> Arc<Self> {
        Arc::new(ViewShared {
            name,
            since_tx: watch::Sender::new(None),
            life: watch::Sender::new(Life::Running),
            gate: RwLock::new(()),
            epoch_tx: watch::Sender::new(0),
            damage,
            loaded: watch::Sender::new(false),
            queue: Mutex::new(Queue {
                failed: None,
                closed: false,
                next_id: 0,
                waiting: BTreeMap::new(),
            }),
        })
    }

    fn lock(&self) -> MutexGuard<'_, Queue> {
        // A panic while holding this lock leaves the queue consistent (every change is
        // a single map operation), so a poisoned lock is safe to use.
        self.queue.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn status(&self, q: &Queue) -> Result<()> {
        if q.closed {
            Err(Error::Closed)
        } else if let Some(e) = &q.failed {
            Err(Error::ViewFailed {
                name: self.name.clone(),
                source: Arc::clone(e),
            })
        } else {
            Ok(())
        }
    }

    /// The last seq the view has applied (`None`: nothing).
    pub(crate) fn since(&self) -> Option<Seq> {
        *self.since_tx.borrow()
    }

    fn check(&self) -> Result<()> {
        let q = self.lock();
        self.status(&q)
    }

    /// Records that the view has loaded its persisted state (or was reset instead), and
    /// lets the reads waiting for that go on.
    pub(crate) fn mark_loaded(&self) {
        self.loaded
            .send_if_modified(|loaded| !std::mem::replace(loaded, true));
    }

    async fn until_loaded(&self) {
        if *self.loaded.borrow() {
            return;
        }
        let mut loaded = self.loaded.subscribe();
        // `self` owns the sender, so the channel cannot close while we wait.
        let _ = loaded.wait_for(|l| *l).await;
    }

    async fn wait_for(&self, target: Seq) -> Result<()> {
        let (id, rx) = {
            let mut q = self.lock();
            self.status(&q)?;
            if self.since().is_some_and(|s| s >= target) {
                return Ok(());
            }
            let id = q.next_id;
            q.next_id += 1;
            let (tx, rx) = oneshot::channel();
            q.waiting.insert((target, id), tx);
            (id, rx)
        };
        let guard = Dequeue {
            shared: self,
            key: (target, id),
        };
        let result = rx.await.unwrap_or(Err(Error::Closed));
        std::mem::forget(guard);
        result
    }

    /// Waits until the view has been reset `min_epoch` times or more.
    async fn wait_epoch(&self, min_epoch: u64) -> Result<()> {
        let mut epoch = self.epoch_tx.subscribe();
        let stopped = async {
            let mut life = self.life.subscribe();
            let _ = life.wait_for(|l| !matches!(l, Life::Running)).await;
        };
        tokio::select! {
            _ = epoch.wait_for(|e| *e >= min_epoch) => {}
            _ = stopped => {}
        }
        self.check()
    }

    /// Asks the driver to reset the view after a read found its data damaged. Returns
    /// false when no driver listens (the database is gone).
    fn report_damage(&self, epoch: u64, reason: String) -> bool {
        let damage = Damage {
            name: self.name.clone(),
            epoch,
            reason,
        };
        self.damage
            .as_ref()
            .is_some_and(|tx| tx.send(damage).is_ok())
    }

    /// The view's epoch: how many times it has been reset.
    pub(crate) fn epoch(&self) -> u64 {
        *self.epoch_tx.borrow()
    }

    /// Lowers the view's `since` to nothing and counts one more reset, before the view is
    /// wiped: every read that starts from now on waits for the rebuild, and a read that
    /// already runs holds the gate that [`ViewShared::wipe_with`] waits for. `publish` runs
    /// once `since` is lowered, before any reader can see it (the driver publishes its
    /// status there).
    pub(crate) fn lower(&self, publish: impl FnOnce()) {
        let _q = self.lock();
        self.since_tx.send_replace(None);
        self.epoch_tx.send_modify(|e| *e += 1);
        publish();
    }

    /// Runs `wipe` under the write side of the gate: no read runs meanwhile. Call it after
    /// [`ViewShared::lower`]. Blocks: call it on a blocking thread.
    pub(crate) fn wipe_with<R>(&self, wipe: impl FnOnce() -> R) -> R {
        let _gate = self.gate.blocking_write();
        wipe()
    }

    /// Records that the view applied everything up to `since`, runs `publish` (before any
    /// reader can see the new `since`: the driver publishes its status there), then
    /// completes the readers waiting for it.
    pub(crate) fn advance(&self, since: Option<Seq>, publish: impl FnOnce()) {
        let ready = {
            let mut q = self.lock();
            self.since_tx.send_replace(since);
            publish();
            match since.and_then(|s| s.checked_add(1)) {
                Some(above) => {
                    let rest = q.waiting.split_off(&(above, 0));
                    std::mem::replace(&mut q.waiting, rest)
                }
                None if since.is_some() => std::mem::take(&mut q.waiting),
                None => BTreeMap::new(),
            }
        };
        for (_, tx) in ready {
            let _ = tx.send(Ok(()));
        }
    }

    /// Marks the view failed and fails every waiting reader.
    pub(crate) fn fail(&self, error: Arc<BoxError>) {
        let waiting = {
            let mut q = self.lock();
            q.failed = Some(Arc::clone(&error));
            std::mem::take(&mut q.waiting)
        };
        self.life.send_replace(Life::Failed(Arc::clone(&error)));
        self.mark_loaded();
        for (_, tx) in waiting {
            let _ = tx.send(Err(Error::ViewFailed {
                name: self.name.clone(),
                source: Arc::clone(&error),
            }));
        }
    }

    /// Clears a failure (the view is being rebuilt).
    pub(crate) fn clear_failure(&self) {
        let mut q = self.lock();
        if q.failed.take().is_some() && !q.closed {
            self.life.send_replace(Life::Running);
        }
    }

    /// Closes the view: every waiting reader and every later read gets `Closed`.
    pub(crate) fn close(&self) {
        let waiting = {
            let mut q = self.lock();
            q.closed = true;
            std::mem::take(&mut q.waiting)
        };
        self.life.send_replace(Life::Closed);
        self.mark_loaded();
        for (_, tx) in waiting {
            let _ = tx.send(Err(Error::Closed));
        }
    }

    /// How many readers are waiting (for tests and status).
    #[cfg(test)]
    pub(crate) fn waiting(&self) -> usize {
        self.lock().waiting.len()
    }
}

/// Removes a reader from the queue when its future is dropped before completion.
struct Dequeue<'a> {
    shared: &'a ViewShared,
    key: (Seq, u64),
}

impl Drop for Dequeue<'_> {
    fn drop(&mut self) {
        self.shared.lock().waiting.remove(&self.key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn waiter(shared: &Arc<ViewShared>, log: Option<Seq>) -> Waiter {
        shared.mark_loaded();
        let (_tx, rx) = watch::channel(log);
        Waiter::new(Arc::clone(shared), rx)
    }

    #[tokio::test]
    async fn readers_complete_in_seq_order_exactly_once() {
        let shared = ViewShared::new("v".into());
        let w = waiter(&shared, None);
        let mut handles = Vec::new();
        for target in [5u64, 1, 3, 3, 0] {
            let w = w.clone();
            handles.push(tokio::spawn(async move {
                (target, w.wait(Wait::AtLeast(target)).await)
            }));
        }
        tokio::task::yield_now().await;
        while shared.waiting() < 5 {
            tokio::task::yield_now().await;
        }
        shared.advance(Some(3), || {});
        for h in handles.drain(1..) {
            let (_, r) = h.await.unwrap();
            r.unwrap();
        }
        assert_eq!(shared.waiting(), 1);
        shared.advance(Some(5), || {});
        let (t, r) = handles.pop().unwrap().await.unwrap();
        assert_eq!(t, 5);
        r.unwrap();
        assert_eq!(shared.waiting(), 0);
    }

    #[tokio::test]
    async fn dropped_reader_leaves_the_queue() {
        let shared = ViewShared::new("v".into());
        let w = waiter(&shared, None);
        let fut = w.wait(Wait::AtLeast(9));
        let r = tokio::time::timeout(std::time::Duration::from_millis(10), fut).await;
        assert!(r.is_err());
        assert_eq!(shared.waiting(), 0);
    }

    #[tokio::test]
    async fn close_fails_pending_and_later_reads() {
        let shared = ViewShared::new("v".into());
        let w = waiter(&shared, Some(4));
        let pending = tokio::spawn({
            let w = w.clone();
            async move { w.wait(Wait::Log).await }
        });
        while shared.waiting() < 1 {
            tokio::task::yield_now().await;
        }
        let stopped = tokio::spawn({
            let w = w.clone();
            async move { w.stopped().await }
        });
        shared.close();
        assert!(matches!(pending.await.unwrap(), Err(Error::Closed)));
        assert!(matches!(stopped.await.unwrap(), Error::Closed));
        assert!(matches!(w.wait(Wait::NoWait).await, Err(Error::Closed)));
    }

    #[tokio::test]
    async fn failure_fails_pending_reads_and_stopped_until_cleared() {
        let shared = ViewShared::new("v".into());
        let w = waiter(&shared, None);
        let pending = tokio::spawn({
            let w = w.clone();
            async move { w.wait(Wait::AtLeast(2)).await }
        });
        while shared.waiting() < 1 {
            tokio::task::yield_now().await;
        }
        shared.fail(Arc::new("broken".into()));
        assert!(matches!(
            pending.await.unwrap(),
            Err(Error::ViewFailed { .. })
        ));
        assert!(matches!(w.stopped().await, Error::ViewFailed { .. }));
        assert!(matches!(
            w.wait(Wait::NoWait).await,
            Err(Error::ViewFailed { .. })
        ));
        shared.clear_failure();
        w.wait(Wait::NoWait).await.unwrap();
        let stopped = tokio::time::timeout(std::time::Duration::from_millis(20), w.stopped()).await;
        assert!(stopped.is_err(), "a running view has not stopped");
    }

    #[tokio::test]
    async fn wait_log_on_empty_log_returns_at_once() {
        let shared = ViewShared::new("v".into());
        waiter(&shared, None).wait(Wait::Log).await.unwrap();
    }
}
