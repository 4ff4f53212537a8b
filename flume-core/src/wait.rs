//! Reads wait for catch-up: the ordered queue of readers waiting on a view's `since`.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::{oneshot, watch};

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

/// Lets a view's reader wait until the view has caught up. Cheap to clone.
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
        *self.shared.since_tx.borrow()
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

    /// Waits as `wait` says.
    ///
    /// # Errors
    /// [`Error::Closed`] when the database is closed (also while waiting);
    /// [`Error::ViewFailed`] when the view has failed.
    ///
    /// # Cancel safety
    /// Dropping the future removes the reader from the queue; nothing else happens.
    pub async fn wait(&self, wait: Wait) -> Result<()> {
        let target = match wait {
            Wait::NoWait => None,
            Wait::AtLeast(seq) => Some(seq),
            Wait::Log => *self.log_since.borrow(),
        };
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
        match wait {
            Wait::Log => self.log_since().map_or(Wait::NoWait, Wait::AtLeast),
            other => other,
        }
    }
}

/// Whether a view serves reads.
enum Life {
    Running,
    Failed(Arc<BoxError>),
    Closed,
}

struct Queue {
    since: Option<Seq>,
    failed: Option<Arc<BoxError>>,
    closed: bool,
    next_id: u64,
    waiting: BTreeMap<(Seq, u64), oneshot::Sender<Result<()>>>,
}

/// The state a view shares between its driver and its readers.
pub(crate) struct ViewShared {
    pub(crate) name: String,
    since_tx: watch::Sender<Option<Seq>>,
    life: watch::Sender<Life>,
    queue: Mutex<Queue>,
    /// Whether the view has loaded its persisted state (or stopped): reads wait for it.
    loaded: watch::Sender<bool>,
}

impl ViewShared {
    pub(crate) fn new(name: String) -> Arc<Self> {
        Arc::new(ViewShared {
            name,
            since_tx: watch::Sender::new(None),
            life: watch::Sender::new(Life::Running),
            loaded: watch::Sender::new(false),
            queue: Mutex::new(Queue {
                since: None,
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

    fn check(&self) -> Result<()> {
        let q = self.lock();
        self.status(&q)
    }

    /// Records that the view has loaded its persisted state (or was reset instead), and
    /// lets the reads waiting for that go on.
    pub(crate) fn mark_loaded(&self) {
        self.loaded.send_replace(true);
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
            if q.since.is_some_and(|s| s >= target) {
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

    /// Records that the view applied everything up to `since`, and completes the readers
    /// waiting for it.
    pub(crate) fn advance(&self, since: Option<Seq>) {
        let ready = {
            let mut q = self.lock();
            q.since = since;
            match since.and_then(|s| s.checked_add(1)) {
                Some(above) => {
                    let rest = q.waiting.split_off(&(above, 0));
                    std::mem::replace(&mut q.waiting, rest)
                }
                None if since.is_some() => std::mem::take(&mut q.waiting),
                None => BTreeMap::new(),
            }
        };
        self.since_tx.send_replace(since);
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
        shared.advance(Some(3));
        for h in handles.drain(1..) {
            let (_, r) = h.await.unwrap();
            r.unwrap();
        }
        assert_eq!(shared.waiting(), 1);
        shared.advance(Some(5));
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
