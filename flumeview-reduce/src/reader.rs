//! `ReduceReader`: the read handle of a [`Reduce`](crate::Reduce) view.

use std::fmt;
use std::sync::Arc;

use flume_core::{Error, Live, Result, Seq, Wait, Waiter};
use futures::stream::{BoxStream, StreamExt};

use crate::reduce::{read, Shared};

/// Reads a [`Reduce`](crate::Reduce) view's state. Cheap to clone; every clone reads the
/// same state.
///
/// Reads take a [`Wait`] policy: [`Wait::Log`] (after an `append` has returned, the state
/// reflects that record), [`Wait::AtLeast`] or [`Wait::NoWait`]. A read never sees a
/// half-applied batch of records.
pub struct ReduceReader<S> {
    current: Shared<S>,
    waiter: Waiter,
}

impl<S> Clone for ReduceReader<S> {
    fn clone(&self) -> Self {
        ReduceReader {
            current: Arc::clone(&self.current),
            waiter: self.waiter.clone(),
        }
    }
}

impl<S> fmt::Debug for ReduceReader<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ReduceReader")
            .field("view", &self.waiter.name())
            .field("since", &read(&self.current).since)
            .finish_non_exhaustive()
    }
}

impl<S: Clone + Send + Sync + 'static> ReduceReader<S> {
    pub(crate) fn new(current: Shared<S>, waiter: Waiter) -> Self {
        ReduceReader { current, waiter }
    }

    /// Waits as `wait` says, then returns a copy of the state.
    ///
    /// # Errors
    /// [`Error::Closed`](flume_core::Error::Closed) when the database is closed (also
    /// while waiting); [`Error::ViewFailed`](flume_core::Error::ViewFailed) when the view
    /// has failed.
    ///
    /// # Cancel safety
    /// Dropping the future stops the wait; nothing else happens.
    pub async fn get(&self, wait: Wait) -> Result<S> {
        self.read(wait, S::clone).await
    }

    /// Waits as `wait` says, then calls `f` with the state and returns what it returns,
    /// without copying the state. `f` runs under the state's read lock, which the view
    /// needs to apply the next batch: keep it short.
    ///
    /// # Errors
    /// As [`ReduceReader::get`].
    ///
    /// # Cancel safety
    /// Dropping the future stops the wait; `f` is not called.
    pub async fn read<R>(&self, wait: Wait, f: impl FnOnce(&S) -> R) -> Result<R> {
        // Through the waiter, so that a reset cannot wipe the state between the wait
        // and the read.
        self.waiter
            .read(wait, || f(&read(&self.current).state))
            .await
    }

    /// The seq of the last record the state reflects (`None`: no record yet).
    pub fn since(&self) -> Option<Seq> {
        read(&self.current).since
    }

    /// The view's state as it changes: the current `(since, state)` at once, then a new
    /// pair each time the view applies records.
    ///
    /// The first pair is never the state the view holds before it has loaded its
    /// persisted state: after a reopen, the stream starts from the checkpoint, not from
    /// the initial value.
    ///
    /// Changes are coalesced: a reader slower than the view skips intermediate states and
    /// gets the latest one, so `since` can jump by more than one record, but it never
    /// repeats (a reset sends the stream back to `(None, initial)` before the rebuild
    /// moves it forward again). Each item is consistent: the state reflects exactly the
    /// records up to its `since`.
    ///
    /// When the database closes, the stream yields the final state (if it has not
    /// already) and ends; a stream opened after close yields that state once. It also
    /// ends when the view fails.
    ///
    /// [`ReduceReader::follow`] is the same stream with a marker once the state has
    /// caught up with the log.
    pub fn changes(&self) -> BoxStream<'static, (Option<Seq>, S)> {
        Box::pin(
            self.follow()
                .filter_map(|item| std::future::ready(item.item())),
        )
    }

    /// [`ReduceReader::changes`] with one [`Live::Synced`] after the first state that
    /// reflects every record the log held when the stream was made (or the log's current
    /// last record, if a revert has since removed some): a UI can show "loading" until
    /// then.
    ///
    /// ```
    /// use flume_core::{Flume, Live};
    /// use flumelog_memory::MemoryLog;
    /// use flumeview_reduce::Reduce;
    /// use futures::StreamExt;
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> flume_core::Result<()> {
    /// let db = Flume::<u32>::new(MemoryLog::new());
    /// let count = db.add_view("count", Reduce::count(1))?;
    /// db.append_batch(&[1, 2, 3]).await?;
    /// let mut feed = count.follow();
    /// loop {
    ///     match feed.next().await {
    ///         Some(Live::Item((since, n))) => println!("{n} records so far (up to {since:?})"),
    ///         Some(Live::Synced) => break, // caught up: stop showing "loading"
    ///         None => return Ok(()),        // closed
    ///     }
    /// }
    /// db.append(&4).await?;
    /// assert_eq!(feed.next().await, Some(Live::Item((Some(3), 4))));
    /// # db.close().await }
    /// ```
    pub fn follow(&self) -> BoxStream<'static, Live<(Option<Seq>, S)>> {
        let current = Arc::clone(&self.current);
        let waiter = self.waiter.clone();
        // The starting point is now: the watch and the log's tail to catch up with.
        let mut since_watch = waiter.since_watch();
        let target = waiter.log_since();
        Box::pin(async_stream::stream! {
            let stopped = waiter.stopped();
            tokio::pin!(stopped);
            // Never the empty state the view holds before it has loaded its checkpoint.
            waiter.loaded().await;
            let mut last: Option<Option<Seq>> = None;
            let mut synced = false;
            let mut closing = false;
            loop {
                let snapshot = {
                    let current = read(&current);
                    (last != Some(current.since)).then(|| (current.since, current.state.clone()))
                };
                if let Some((since, state)) = snapshot {
                    last = Some(since);
                    yield Live::Item((since, state));
                    // Caught up with the log as it was when the stream was made, or as
                    // it is now (a revert may have taken the target away).
                    if !synced && (since >= target || since >= waiter.log_since()) {
                        synced = true;
                        yield Live::Synced;
                    }
                }
                if closing {
                    break;
                }
                tokio::select! {
                    changed = since_watch.changed() => {
                        if changed.is_err() {
                            break;
                        }
                    }
                    end = &mut stopped, if !closing => match end {
                        // One more look: the final state, if not yet sent.
                        Error::Closed => closing = true,
                        _ => break,
                    },
                }
            }
        })
    }
}
