//! # flumelog-memory
//!
//! [`MemoryLog`]: an append-only log held in memory, the reference implementation of the
//! [`Log`] contract of [flume-core](flume_core) and the default log for tests and examples.
//!
//! ```
//! use bytes::Bytes;
//! use flume_core::{Log, StreamOptions};
//! use flumelog_memory::MemoryLog;
//! use futures::TryStreamExt;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> flume_core::Result<()> {
//! let log = MemoryLog::new();
//! assert_eq!(log.append(Bytes::from("hello")).await?, 0);
//! assert_eq!(log.append_batch(vec![Bytes::from("a"), Bytes::from("b")]).await?, 1..3);
//! assert_eq!(*log.since().borrow(), Some(2));
//!
//! assert_eq!(log.get(1).await?, Bytes::from("a"));
//! let newest_first: Vec<_> = log
//!     .stream(StreamOptions::new().reverse(true).limit(2))
//!     .try_collect()
//!     .await?;
//! assert_eq!(newest_first, vec![(2, Bytes::from("b")), (1, Bytes::from("a"))]);
//!
//! log.close().await?;
//! assert!(matches!(log.get(0).await, Err(flume_core::Error::Closed)));
//! # Ok(())
//! # }
//! ```
//!
//! ## Guarantees
//!
//! - Seqs are dense from 0. An append is one lock, one `Vec` push and one watch update: no
//!   allocation beyond the [`Bytes`] the caller hands in (and the amortised growth of the
//!   vector).
//! - A batch becomes visible as a whole: a concurrent reader sees all of it or none of it.
//! - When an append returns `seq`, [`Log::since`] already shows `seq` or later.
//! - Reads never copy record bytes: [`Bytes`] are reference counted.
//! - [`Log::revert`] is supported (the log is truncated).
//!
//! ## Durability
//!
//! **Nothing survives a crash or the end of the process.** Every record is as durable as it
//! will ever be the moment it is visible, so [`Log::durable`] is [`Log::since`],
//! [`Log::sync`] returns at once, and the [`Durability`] asked of an append is ignored.
//!
//! ## Closing
//!
//! [`Log::close`] (or dropping the last clone of a [`MemoryLog`]) closes the log: every
//! later call returns [`Error::Closed`], and pending live streams end with
//! [`Error::Closed`].
#![warn(
    missing_docs,
    missing_debug_implementations,
    rust_2018_idioms,
    unreachable_pub
)]

use std::fmt;
use std::ops::Range;
use std::sync::{Arc, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};

use bytes::Bytes;
use flume_core::{
    range_chunks, range_stream, Durability, Error, Log, RawRecord, ReadRange, Result, Seq,
    StreamOptions,
};
use futures::future::BoxFuture;
use futures::stream::BoxStream;
use futures::StreamExt;
use tokio::sync::watch;

/// An append-only log held in memory.
///
/// Cloning is cheap (an [`Arc`]); clones share the same records. The log closes when
/// [`Log::close`] is called on any clone or when the last clone is dropped; streams that
/// are still running do not keep it open.
///
/// Nothing survives a crash: see the [crate docs](crate#durability).
///
/// ```
/// use bytes::Bytes;
/// use flume_core::Log;
/// use flumelog_memory::MemoryLog;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> flume_core::Result<()> {
/// let log = MemoryLog::new();
/// let writer = log.clone();
/// writer.append(Bytes::from_static(b"shared")).await?;
/// assert_eq!(log.get(0).await?, Bytes::from_static(b"shared"));
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct MemoryLog {
    handle: Arc<Handle>,
}

/// Owned by the `MemoryLog` clones only; closes the log when the last one goes.
struct Handle {
    shared: Arc<Shared>,
}

/// Owned by the log and by its streams.
struct Shared {
    state: RwLock<State>,
    /// A receiver kept to hand out clones, also after the sender is gone.
    since: watch::Receiver<Option<Seq>>,
}

struct State {
    records: Vec<Bytes>,
    /// `None` once closed; dropping it ends pending live streams with `Closed`.
    tx: Option<watch::Sender<Option<Seq>>>,
}

impl MemoryLog {
    /// An empty, open log.
    ///
    /// ```
    /// use flume_core::Log;
    /// let log = flumelog_memory::MemoryLog::new();
    /// assert_eq!(*log.since().borrow(), None);
    /// ```
    pub fn new() -> Self {
        Self::with_capacity(0)
    }

    /// An empty, open log with room for `capacity` records before its index grows.
    ///
    /// ```
    /// let log = flumelog_memory::MemoryLog::with_capacity(1_000_000);
    /// assert!(log.is_empty());
    /// ```
    pub fn with_capacity(capacity: usize) -> Self {
        let (tx, rx) = watch::channel(None);
        MemoryLog {
            handle: Arc::new(Handle {
                shared: Arc::new(Shared {
                    state: RwLock::new(State {
                        records: Vec::with_capacity(capacity),
                        tx: Some(tx),
                    }),
                    since: rx,
                }),
            }),
        }
    }

    /// How many records the log holds (`since + 1`). Still answers after close.
    ///
    /// ```
    /// use bytes::Bytes;
    /// use flume_core::Log;
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> flume_core::Result<()> {
    /// let log = flumelog_memory::MemoryLog::new();
    /// log.append(Bytes::from("x")).await?;
    /// assert_eq!(log.len(), 1);
    /// # Ok(())
    /// # }
    /// ```
    pub fn len(&self) -> usize {
        self.shared().read().records.len()
    }

    /// Whether the log holds no record. Still answers after close.
    ///
    /// ```
    /// assert!(flumelog_memory::MemoryLog::new().is_empty());
    /// ```
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether the log has been closed.
    ///
    /// ```
    /// use flume_core::Log;
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> flume_core::Result<()> {
    /// let log = flumelog_memory::MemoryLog::new();
    /// assert!(!log.is_closed());
    /// log.close().await?;
    /// assert!(log.is_closed());
    /// # Ok(())
    /// # }
    /// ```
    pub fn is_closed(&self) -> bool {
        self.shared().read().tx.is_none()
    }

    /// A new, open log holding the same records as this one, open or closed: what a
    /// durable log would show after a restart. Handy for testing views that persist
    /// themselves. The records are shared, not copied.
    ///
    /// ```
    /// use bytes::Bytes;
    /// use flume_core::Log;
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> flume_core::Result<()> {
    /// let log = flumelog_memory::MemoryLog::new();
    /// log.append(Bytes::from("kept")).await?;
    /// log.close().await?;
    /// let reopened = log.reopen();
    /// assert_eq!(reopened.get(0).await?, Bytes::from("kept"));
    /// # Ok(())
    /// # }
    /// ```
    pub fn reopen(&self) -> MemoryLog {
        let records = self.shared().read().records.clone();
        records.into_iter().collect()
    }

    fn shared(&self) -> &Arc<Shared> {
        &self.handle.shared
    }

    fn append_now(&self, record: Bytes) -> Result<Seq> {
        let mut guard = self.shared().write();
        let State { records, tx } = &mut *guard;
        let tx = tx.as_ref().ok_or(Error::Closed)?;
        let seq = records.len() as Seq;
        records.push(record);
        tx.send_replace(Some(seq));
        Ok(seq)
    }

    /// Appends under the write lock; with `expected = Some(tail)`, only if the last seq
    /// is `tail` (checked under the same lock, so racing appenders see one winner).
    fn append_batch_now(
        &self,
        records: Vec<Bytes>,
        expected: Option<Option<Seq>>,
    ) -> Result<Range<Seq>> {
        let mut guard = self.shared().write();
        let State {
            records: stored,
            tx,
        } = &mut *guard;
        let tx = tx.as_ref().ok_or(Error::Closed)?;
        let first = stored.len() as Seq;
        let actual = first.checked_sub(1);
        if let Some(expected) = expected.filter(|e| *e != actual) {
            return Err(Error::Conflict { expected, actual });
        }
        let end = first + records.len() as Seq;
        stored.extend(records);
        if end > first {
            // Published under the same lock as the push, so no reader sees part of a batch.
            tx.send_replace(Some(end - 1));
        }
        Ok(first..end)
    }

    fn get_now(&self, seq: Seq) -> Result<Bytes> {
        let state = self.shared().read();
        state.check_open()?;
        usize::try_from(seq)
            .ok()
            .and_then(|i| state.records.get(i))
            .cloned()
            .ok_or(Error::NotFound { seq })
    }

    fn revert_now(&self, last: Option<Seq>) -> Result<()> {
        let mut guard = self.shared().write();
        let State { records, tx } = &mut *guard;
        let tx = tx.as_ref().ok_or(Error::Closed)?;
        let len = match last {
            None => 0,
            Some(seq) => match usize::try_from(seq) {
                Ok(i) if i < records.len() => i + 1,
                // Reverting to a seq the log never assigned would leave a gap.
                _ => return Err(Error::NotFound { seq }),
            },
        };
        if len < records.len() {
            records.truncate(len);
            tx.send_replace(last);
        }
        Ok(())
    }

    fn close_now(&self) -> Result<()> {
        self.shared().close()
    }
}

impl Default for MemoryLog {
    /// Same as [`MemoryLog::new`].
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for MemoryLog {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = self.shared().read();
        f.debug_struct("MemoryLog")
            .field("len", &state.records.len())
            .field("closed", &state.tx.is_none())
            .finish_non_exhaustive()
    }
}

impl<B: Into<Bytes>> FromIterator<B> for MemoryLog {
    /// An open log holding these records, with seqs from 0.
    ///
    /// ```
    /// use flume_core::Log;
    /// use flumelog_memory::MemoryLog;
    /// let log: MemoryLog = ["a", "b", "c"].into_iter().collect();
    /// assert_eq!(*log.since().borrow(), Some(2));
    /// ```
    fn from_iter<I: IntoIterator<Item = B>>(iter: I) -> Self {
        let log = MemoryLog::new();
        let records: Vec<Bytes> = iter.into_iter().map(Into::into).collect();
        // The log is new and open, so this cannot fail.
        let _ = log.append_batch_now(records, None);
        log
    }
}

impl Drop for Handle {
    fn drop(&mut self) {
        // The last `MemoryLog` clone is gone: end pending live streams.
        let _ = self.shared.close();
    }
}

impl Shared {
    fn read(&self) -> RwLockReadGuard<'_, State> {
        // No code panics while holding the lock, and the state is valid at every step.
        self.state.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn write(&self) -> RwLockWriteGuard<'_, State> {
        self.state.write().unwrap_or_else(PoisonError::into_inner)
    }

    fn close(&self) -> Result<()> {
        let tx = self.write().tx.take().ok_or(Error::Closed)?;
        // Dropping the sender wakes every live stream, which then ends with `Closed`.
        drop(tx);
        Ok(())
    }
}

impl State {
    fn check_open(&self) -> Result<()> {
        match self.tx {
            Some(_) => Ok(()),
            None => Err(Error::Closed),
        }
    }
}

impl ReadRange for Shared {
    fn read_range(
        &self,
        first: Seq,
        last: Seq,
        reverse: bool,
        out: &mut Vec<RawRecord>,
    ) -> Result<()> {
        let state = self.read();
        state.check_open()?;
        let len = state.records.len();
        let slice = match (usize::try_from(first), usize::try_from(last)) {
            (Ok(lo), Ok(hi)) if lo <= hi && hi < len => &state.records[lo..=hi],
            // Only a concurrent revert can take records from under a stream.
            _ => {
                return Err(Error::NotFound {
                    seq: first.max(len as Seq),
                })
            }
        };
        out.reserve(slice.len());
        let numbered = slice
            .iter()
            .enumerate()
            .map(|(i, bytes)| (first + i as Seq, bytes.clone()));
        if reverse {
            out.extend(numbered.rev());
        } else {
            out.extend(numbered);
        }
        Ok(())
    }
}

/// Every method completes on its first poll: a future dropped before it is polled has no
/// effect, and one that has been polled has done all of its work.
impl Log for MemoryLog {
    /// Appends one record and returns its seq. `durability` is ignored: nothing in memory
    /// survives a crash.
    ///
    /// # Errors
    /// [`Error::Closed`] after [`close`](Log::close).
    ///
    /// # Cancel safety
    /// The record is appended on the first poll; dropped before that, nothing is appended.
    fn append_with(
        &self,
        record: Bytes,
        _durability: Option<Durability>,
    ) -> BoxFuture<'_, Result<Seq>> {
        Box::pin(async move { self.append_now(record) })
    }

    /// Appends records with consecutive seqs; concurrent readers see all or none of them.
    /// `durability` is ignored.
    ///
    /// # Errors
    /// [`Error::Closed`] after [`close`](Log::close), even for an empty batch.
    ///
    /// # Cancel safety
    /// The batch is appended on the first poll; dropped before that, nothing is appended.
    fn append_batch_with(
        &self,
        records: Vec<Bytes>,
        _durability: Option<Durability>,
    ) -> BoxFuture<'_, Result<Range<Seq>>> {
        Box::pin(async move { self.append_batch_now(records, None) })
    }

    /// [`Log::append_batch_with`] if the last seq is `expected`, checked under the same
    /// lock as the append.
    ///
    /// # Errors
    /// [`Error::Conflict`] when the last seq is another; [`Error::Closed`].
    fn append_batch_if_with(
        &self,
        records: Vec<Bytes>,
        expected: Option<Seq>,
        _durability: Option<Durability>,
    ) -> BoxFuture<'_, Result<Range<Seq>>> {
        Box::pin(async move { self.append_batch_now(records, Some(expected)) })
    }

    /// The record with this seq (a reference-counted handle, not a copy).
    ///
    /// # Errors
    /// [`Error::NotFound`] past the end, [`Error::Closed`] after [`close`](Log::close).
    fn get(&self, seq: Seq) -> BoxFuture<'_, Result<Bytes>> {
        Box::pin(async move { self.get_now(seq) })
    }

    /// The records selected by `opts`, read 1024 at a time (see [`range_stream`]).
    ///
    /// A stream opened after [`close`](Log::close) yields one [`Error::Closed`]; a live
    /// stream pending when the log closes ends with [`Error::Closed`].
    fn stream(&self, opts: StreamOptions) -> BoxStream<'static, Result<RawRecord>> {
        if self.is_closed() {
            return futures::stream::once(async { Err(Error::Closed) }).boxed();
        }
        range_stream(Arc::clone(self.shared()), self.since(), opts)
    }

    /// The records selected by `opts`, `max` at a time (see [`range_chunks`]).
    fn stream_chunks(
        &self,
        opts: StreamOptions,
        max: usize,
    ) -> BoxStream<'static, Result<Vec<RawRecord>>> {
        if self.is_closed() {
            return futures::stream::once(async { Err(Error::Closed) }).boxed();
        }
        range_chunks(Arc::clone(self.shared()), self.since(), opts, max)
    }

    /// The seq of the last record (`None` while empty). The receiver starts with the
    /// current value marked as seen. After close it keeps the last value, and
    /// `changed()` returns an error.
    fn since(&self) -> watch::Receiver<Option<Seq>> {
        let mut rx = self.shared().since.clone();
        rx.borrow_and_update();
        rx
    }

    /// Same as [`since`](Log::since): nothing in memory is more durable than visible.
    fn durable(&self) -> watch::Receiver<Option<Seq>> {
        self.since()
    }

    /// Returns at once: there is nothing to sync.
    ///
    /// # Errors
    /// [`Error::Closed`] after [`close`](Log::close).
    fn sync(&self) -> BoxFuture<'_, Result<()>> {
        Box::pin(async move { self.shared().read().check_open() })
    }

    /// Truncates the log after `last` (`None`: empties it); the next append gets
    /// `last + 1`. `since` moves back to `last`. Reverting to the current tail changes
    /// nothing.
    ///
    /// A live stream already past the new tail does not go back: it resumes at the seq it
    /// was waiting for, so streams (and views) above the new tail must be reopened.
    ///
    /// # Errors
    /// [`Error::NotFound`] when `last` is past the end (nothing is changed),
    /// [`Error::Closed`] after [`close`](Log::close).
    ///
    /// # Cancel safety
    /// The log is truncated on the first poll; dropped before that, nothing changes.
    fn revert(&self, last: Option<Seq>) -> BoxFuture<'_, Result<()>> {
        Box::pin(async move { self.revert_now(last) })
    }

    /// Closes the log. The records stay readable through [`MemoryLog::len`] only; every
    /// later call returns [`Error::Closed`] (a second `close` included).
    ///
    /// # Cancel safety
    /// The log is closed on the first poll; dropped before that, nothing changes.
    fn close(&self) -> BoxFuture<'_, Result<()>> {
        Box::pin(async move { self.close_now() })
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use futures::TryStreamExt;

    use super::*;

    fn b(s: &'static str) -> Bytes {
        Bytes::from_static(s.as_bytes())
    }

    #[tokio::test]
    async fn clones_share_records() {
        let log = MemoryLog::new();
        let other = log.clone();
        log.append(b("a")).await.unwrap();
        assert_eq!(other.get(0).await.unwrap(), b("a"));
        assert_eq!(other.len(), 1);
        other.close().await.unwrap();
        assert!(log.is_closed());
        assert!(matches!(log.append(b("b")).await, Err(Error::Closed)));
    }

    #[tokio::test]
    async fn debug_shows_len_and_state() {
        let log: MemoryLog = ["a", "b"].into_iter().collect();
        assert_eq!(
            format!("{log:?}"),
            "MemoryLog { len: 2, closed: false, .. }"
        );
        log.close().await.unwrap();
        assert_eq!(format!("{log:?}"), "MemoryLog { len: 2, closed: true, .. }");
    }

    #[tokio::test]
    async fn from_iter_and_capacity() {
        let log: MemoryLog = vec![b("x"), b("y")].into_iter().collect();
        assert_eq!(*log.since().borrow(), Some(1));
        assert_eq!(log.append(b("z")).await.unwrap(), 2);

        let empty: MemoryLog = Vec::<Bytes>::new().into_iter().collect();
        assert!(empty.is_empty());
        assert_eq!(*empty.since().borrow(), None);

        let log = MemoryLog::with_capacity(10);
        assert_eq!(log.append_batch(vec![b("a"); 20]).await.unwrap(), 0..20);
        assert_eq!(log.len(), 20);
    }

    #[tokio::test]
    async fn since_receiver_starts_seen() {
        let log = MemoryLog::new();
        log.append(b("a")).await.unwrap();
        let mut rx = log.since();
        assert!(!rx.has_changed().unwrap());
        log.append(b("b")).await.unwrap();
        assert!(rx.has_changed().unwrap());
        assert_eq!(*rx.borrow_and_update(), Some(1));
        log.close().await.unwrap();
        // After close: the last value stays, and the channel reports closed.
        let rx = log.since();
        assert_eq!(*rx.borrow(), Some(1));
        assert!(rx.has_changed().is_err());
        assert_eq!(*log.durable().borrow(), Some(1));
    }

    #[tokio::test]
    async fn dropping_last_handle_ends_live_streams() {
        let log = MemoryLog::new();
        log.append(b("a")).await.unwrap();
        let mut live = log.stream(StreamOptions::new().live(true));
        let second = log.clone();
        assert_eq!(live.try_next().await.unwrap(), Some((0, b("a"))));
        drop(log);
        // One clone is still alive: the stream keeps following it.
        second.append(b("b")).await.unwrap();
        assert_eq!(live.try_next().await.unwrap(), Some((1, b("b"))));
        drop(second);
        let end = tokio::time::timeout(Duration::from_secs(10), live.next())
            .await
            .expect("the live stream must end when the last handle is dropped");
        assert!(matches!(end, Some(Err(Error::Closed))));
    }

    #[tokio::test]
    async fn stream_made_before_close_polled_after() {
        let log: MemoryLog = ["a"].into_iter().collect();
        let mut history = log.stream(StreamOptions::new());
        log.close().await.unwrap();
        assert!(matches!(history.next().await, Some(Err(Error::Closed))));
    }

    #[tokio::test]
    async fn revert_past_the_end_changes_nothing() {
        let log: MemoryLog = ["a", "b"].into_iter().collect();
        assert!(matches!(
            log.revert(Some(2)).await,
            Err(Error::NotFound { seq: 2 })
        ));
        assert!(matches!(
            log.revert(Some(u64::MAX)).await,
            Err(Error::NotFound { .. })
        ));
        assert_eq!(log.len(), 2);
        assert_eq!(*log.since().borrow(), Some(1));
        log.revert(Some(1)).await.unwrap();
        assert_eq!(log.len(), 2);
    }

    #[tokio::test]
    async fn read_range_reports_records_reverted_underneath() {
        let log: MemoryLog = ["a", "b", "c"].into_iter().collect();
        let shared = Arc::clone(log.shared());
        let mut out = Vec::new();
        shared.read_range(1, 2, true, &mut out).unwrap();
        assert_eq!(out, vec![(2, b("c")), (1, b("b"))]);
        log.revert(Some(0)).await.unwrap();
        out.clear();
        assert!(matches!(
            shared.read_range(1, 2, false, &mut out),
            Err(Error::NotFound { seq: 1 })
        ));
        assert!(out.is_empty());
    }

    #[tokio::test]
    async fn futures_dropped_unpolled_do_nothing() {
        let log = MemoryLog::new();
        drop(log.append(b("a")));
        drop(log.append_batch(vec![b("a"), b("b")]));
        drop(log.close());
        assert!(log.is_empty());
        assert!(!log.is_closed());
    }

    #[tokio::test]
    async fn get_huge_seq_is_not_found() {
        let log: MemoryLog = ["a"].into_iter().collect();
        assert!(matches!(
            log.get(u64::MAX).await,
            Err(Error::NotFound { seq: u64::MAX })
        ));
    }

    #[test]
    fn is_send_sync_and_usable_as_dyn_log() {
        fn assert_send_sync<T: Send + Sync + 'static>() {}
        assert_send_sync::<MemoryLog>();
        let _: Box<dyn Log> = Box::new(MemoryLog::new());
    }
}
