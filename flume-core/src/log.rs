//! The `Log` trait: the contract every log backend meets, over opaque bytes.

use std::ops::Range;

use bytes::Bytes;
use futures::future::BoxFuture;
use futures::stream::BoxStream;
use tokio::sync::watch;

use crate::{Error, Result, Seq};

/// One stored record as a backend returns it: its seq and its bytes.
pub type RawRecord = (Seq, Bytes);

/// How durable an append must be before it is acknowledged.
///
/// | level | survives a process crash | survives a power loss / OS crash |
/// |---|---|---|
/// | [`Durability::Buffered`] | yes (the bytes are in the OS page cache) | only once a later `sync()` or synced append has returned |
/// | [`Durability::Synced`] | yes | yes (fdatasync has returned) |
///
/// An in-memory log survives neither; a replicated log documents its own guarantees.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Durability {
    /// Acknowledged once the OS holds the bytes (page cache).
    #[default]
    Buffered,
    /// Acknowledged once the bytes are on stable storage.
    Synced,
}

/// Which records a [`Log::stream`] yields, in which order, and whether it follows new appends.
///
/// Bounds combine: `gt(3).lte(9)` yields seqs 4 to 9. `live` streams yield the matching
/// history first, then every new record as it becomes visible, with no gap and no
/// duplicate at the seam; a live stream cannot be reversed.
///
/// ```
/// use flume_core::StreamOptions;
/// let opts = StreamOptions::new().gt(3).lte(9).limit(2);
/// assert_eq!(opts.bounds(), Some((4, Some(9))));
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StreamOptions {
    /// Only seqs strictly greater than this. Default: none.
    pub gt: Option<Seq>,
    /// Only seqs greater than or equal to this. Default: none.
    pub gte: Option<Seq>,
    /// Only seqs strictly less than this. Default: none.
    pub lt: Option<Seq>,
    /// Only seqs less than or equal to this. Default: none.
    pub lte: Option<Seq>,
    /// Newest first. Default: false (oldest first).
    pub reverse: bool,
    /// At most this many records. Default: no limit.
    pub limit: Option<usize>,
    /// After the history, keep yielding records as they are appended. Default: false.
    pub live: bool,
}

impl StreamOptions {
    /// All records, oldest first, not live.
    pub fn new() -> Self {
        Self::default()
    }
    /// Only seqs `> seq`.
    pub fn gt(mut self, seq: Seq) -> Self {
        self.gt = Some(seq);
        self
    }
    /// Only seqs `> seq`, or every seq when `seq` is `None` (handy with a `since`).
    pub fn after(mut self, seq: Option<Seq>) -> Self {
        self.gt = seq;
        self
    }
    /// Only seqs `>= seq`.
    pub fn gte(mut self, seq: Seq) -> Self {
        self.gte = Some(seq);
        self
    }
    /// Only seqs `< seq`.
    pub fn lt(mut self, seq: Seq) -> Self {
        self.lt = Some(seq);
        self
    }
    /// Only seqs `<= seq`.
    pub fn lte(mut self, seq: Seq) -> Self {
        self.lte = Some(seq);
        self
    }
    /// Newest first.
    pub fn reverse(mut self, reverse: bool) -> Self {
        self.reverse = reverse;
        self
    }
    /// At most `n` records.
    pub fn limit(mut self, n: usize) -> Self {
        self.limit = Some(n);
        self
    }
    /// Keep following the log after the history.
    pub fn live(mut self, live: bool) -> Self {
        self.live = live;
        self
    }

    /// The inclusive seq range the bounds allow: `(first, last)` where `last == None`
    /// means unbounded. `None` when the bounds admit no seq at all.
    pub fn bounds(&self) -> Option<(Seq, Option<Seq>)> {
        let mut first: Seq = 0;
        if let Some(gt) = self.gt {
            first = first.max(gt.checked_add(1)?);
        }
        if let Some(gte) = self.gte {
            first = first.max(gte);
        }
        let mut last: Option<Seq> = None;
        if let Some(lt) = self.lt {
            let l = lt.checked_sub(1)?;
            last = Some(last.map_or(l, |x: Seq| x.min(l)));
        }
        if let Some(lte) = self.lte {
            last = Some(last.map_or(lte, |x: Seq| x.min(lte)));
        }
        match last {
            Some(l) if l < first => None,
            _ => Some((first, last)),
        }
    }

    /// Checks combinations that make no sense.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for a reverse live stream.
    pub fn validate(&self) -> Result<()> {
        if self.live && self.reverse {
            return Err(Error::InvalidArgument(
                "a live stream cannot be reversed".into(),
            ));
        }
        Ok(())
    }
}

/// An append-only log of opaque byte records with dense seqs `0, 1, 2, …`.
///
/// Every backend (memory, file, replicated) implements this trait, and every backend runs
/// the same conformance suite (`flume_core::testing`, feature `testing`). The contract:
///
/// - seqs are assigned densely from 0 and never change;
/// - when an append returns `seq`, `since()` already shows a value `>= seq`;
/// - `append_batch` assigns consecutive seqs and is all-or-nothing after a crash;
/// - `stream` honours its [`StreamOptions`]; a live stream has no gap and no duplicate
///   at the history/live seam, and ends with [`Error::Closed`] when the log closes;
/// - after `close`, every call returns [`Error::Closed`] (a second `close` may return
///   `Ok` or `Closed`), and so does a stream, even one whose bounds select nothing;
/// - `since()` and `durable()` return receivers that start with the current value
///   marked as seen (like [`watch::Sender::subscribe`]);
/// - dropping the last handle of a log closes it, so live streams end instead of hanging.
///
/// Methods return boxed futures so that the trait can be used as `dyn Log`.
pub trait Log: Send + Sync + 'static {
    /// Appends one record and returns its seq.
    ///
    /// `durability` overrides the log's default level for this append.
    ///
    /// # Cancel safety
    /// If the future is dropped the record may or may not be appended.
    fn append_with(
        &self,
        record: Bytes,
        durability: Option<Durability>,
    ) -> BoxFuture<'_, Result<Seq>>;

    /// Appends records with consecutive seqs, all or nothing, and returns their seq range
    /// (empty, starting at the next seq, for an empty batch).
    ///
    /// # Cancel safety
    /// If the future is dropped the batch may or may not be appended (as a whole).
    fn append_batch_with(
        &self,
        records: Vec<Bytes>,
        durability: Option<Durability>,
    ) -> BoxFuture<'_, Result<Range<Seq>>>;

    /// The record with this seq.
    ///
    /// # Errors
    /// [`Error::NotFound`] when no record has this seq.
    fn get(&self, seq: Seq) -> BoxFuture<'_, Result<Bytes>>;

    /// The records selected by `opts`, as a stream that owns what it needs.
    fn stream(&self, opts: StreamOptions) -> BoxStream<'static, Result<RawRecord>>;

    /// [`Log::stream`] in chunks: the same records in the same order, handed out as
    /// vectors of 1 to `max` records, each chunk as soon as it is available (a chunk
    /// never waits to fill up). An error ends the stream, after a chunk with the records
    /// read before it.
    ///
    /// The view driver reads the log this way. The default collects [`Log::stream`];
    /// backends that read ranges natively override it (see [`range_chunks`](crate::range_chunks))
    /// so that a batch costs one call instead of one poll per record.
    ///
    /// ```
    /// use bytes::Bytes;
    /// use flume_core::{Log, StreamOptions};
    /// use flumelog_memory::MemoryLog;
    /// use futures::StreamExt;
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> flume_core::Result<()> {
    /// let log = MemoryLog::new();
    /// log.append_batch((0..5u8).map(|i| Bytes::from(vec![i])).collect()).await?;
    /// let chunks: Vec<_> = log.stream_chunks(StreamOptions::new(), 2).collect().await;
    /// let sizes: Vec<usize> = chunks.iter().map(|c| c.as_ref().unwrap().len()).collect();
    /// assert_eq!(sizes, [2, 2, 1]);
    /// # Ok(()) }
    /// ```
    fn stream_chunks(
        &self,
        opts: StreamOptions,
        max: usize,
    ) -> BoxStream<'static, Result<Vec<RawRecord>>> {
        crate::stream::chunk(self.stream(opts), max)
    }

    /// The seq of the last record visible to readers (`None` while the log is empty).
    fn since(&self) -> watch::Receiver<Option<Seq>>;

    /// The seq of the last record that survives a power loss. Defaults to `since`
    /// (for logs where every visible record is as durable as it will ever be).
    fn durable(&self) -> watch::Receiver<Option<Seq>> {
        self.since()
    }

    /// Makes every appended record durable; returns once `durable() >= since()`.
    fn sync(&self) -> BoxFuture<'_, Result<()>>;

    /// Removes every record after `last` (`None`: every record), so that the next append
    /// gets seq `last + 1`. A `last` beyond the tail is [`Error::NotFound`] with
    /// `seq: last` and changes nothing (every backend, checked by the conformance suite's
    /// `revert_truncates`). Views above the new tail must be rebuilt; `Flume::revert`
    /// does that. Backends that cannot revert return [`Error::Unsupported`].
    fn revert(&self, last: Option<Seq>) -> BoxFuture<'_, Result<()>> {
        let _ = last;
        Box::pin(async { Err(Error::Unsupported("revert")) })
    }

    /// Appends `records` with consecutive seqs, all or nothing, **only if** the log's last
    /// seq is exactly `expected` (`None`: only into an empty log); returns their seq range.
    ///
    /// The check and the append are one atomic step: of many conditional appenders that
    /// expect the same tail, exactly one succeeds. This is the primitive under
    /// compare-and-set: read a view caught up to tail `T`, decide, append if the tail is
    /// still `T`. An empty batch appends nothing and still checks the tail.
    ///
    /// # Errors
    /// [`Error::Conflict`] with the actual last seq when the tail is not `expected`
    /// (nothing is appended); the backend's usual append errors. The default returns
    /// [`Error::Unsupported`]: every backend of this workspace overrides it.
    ///
    /// # Cancel safety
    /// If the future is dropped the batch may or may not be appended (as a whole).
    fn append_batch_if_with(
        &self,
        records: Vec<Bytes>,
        expected: Option<Seq>,
        durability: Option<Durability>,
    ) -> BoxFuture<'_, Result<Range<Seq>>> {
        let _ = (records, expected, durability);
        Box::pin(async { Err(Error::Unsupported("append_if")) })
    }

    /// Appends one record only if the log's last seq is exactly `expected`, at the log's
    /// default durability; returns its seq. See [`Log::append_batch_if_with`].
    ///
    /// ```
    /// use bytes::Bytes;
    /// use flume_core::{Error, Log};
    /// use flumelog_memory::MemoryLog;
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> flume_core::Result<()> {
    /// let log = MemoryLog::new();
    /// assert_eq!(log.append_if(Bytes::from("first"), None).await?, 0);
    /// // A writer that still believes the log is empty loses, and nothing is appended.
    /// let lost = log.append_if(Bytes::from("stale"), None).await;
    /// assert!(matches!(lost, Err(Error::Conflict { expected: None, actual: Some(0) })));
    /// assert_eq!(log.append_if(Bytes::from("second"), Some(0)).await?, 1);
    /// # Ok(()) }
    /// ```
    fn append_if(&self, record: Bytes, expected: Option<Seq>) -> BoxFuture<'_, Result<Seq>> {
        let batch = self.append_batch_if_with(vec![record], expected, None);
        Box::pin(async move { Ok(batch.await?.start) })
    }

    /// Syncs and closes the log. Later calls return [`Error::Closed`]; pending live
    /// streams end with [`Error::Closed`].
    fn close(&self) -> BoxFuture<'_, Result<()>>;

    /// Appends one record at the log's default durability. See [`Log::append_with`].
    fn append(&self, record: Bytes) -> BoxFuture<'_, Result<Seq>> {
        self.append_with(record, None)
    }

    /// Appends a batch at the log's default durability. See [`Log::append_batch_with`].
    fn append_batch(&self, records: Vec<Bytes>) -> BoxFuture<'_, Result<Range<Seq>>> {
        self.append_batch_with(records, None)
    }
}

macro_rules! forward_log {
    ($ty:ty) => {
        fn append_with(
            &self,
            record: Bytes,
            durability: Option<Durability>,
        ) -> BoxFuture<'_, Result<Seq>> {
            (**self).append_with(record, durability)
        }
        fn append_batch_with(
            &self,
            records: Vec<Bytes>,
            durability: Option<Durability>,
        ) -> BoxFuture<'_, Result<Range<Seq>>> {
            (**self).append_batch_with(records, durability)
        }
        fn get(&self, seq: Seq) -> BoxFuture<'_, Result<Bytes>> {
            (**self).get(seq)
        }
        fn stream(&self, opts: StreamOptions) -> BoxStream<'static, Result<RawRecord>> {
            (**self).stream(opts)
        }
        fn stream_chunks(
            &self,
            opts: StreamOptions,
            max: usize,
        ) -> BoxStream<'static, Result<Vec<RawRecord>>> {
            (**self).stream_chunks(opts, max)
        }
        fn append_batch_if_with(
            &self,
            records: Vec<Bytes>,
            expected: Option<Seq>,
            durability: Option<Durability>,
        ) -> BoxFuture<'_, Result<Range<Seq>>> {
            (**self).append_batch_if_with(records, expected, durability)
        }
        fn since(&self) -> watch::Receiver<Option<Seq>> {
            (**self).since()
        }
        fn durable(&self) -> watch::Receiver<Option<Seq>> {
            (**self).durable()
        }
        fn sync(&self) -> BoxFuture<'_, Result<()>> {
            (**self).sync()
        }
        fn revert(&self, last: Option<Seq>) -> BoxFuture<'_, Result<()>> {
            (**self).revert(last)
        }
        fn close(&self) -> BoxFuture<'_, Result<()>> {
            (**self).close()
        }
    };
}

impl<L: Log + ?Sized> Log for std::sync::Arc<L> {
    forward_log!(std::sync::Arc<L>);
}

impl<L: Log + ?Sized> Log for Box<L> {
    forward_log!(Box<L>);
}
