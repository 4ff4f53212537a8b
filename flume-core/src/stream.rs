//! Ready-made streams for backends that can read a seq range: [`ReadRange`] for a source
//! that copies records out without waiting, [`AsyncReadRange`] for one that fetches them
//! (over a network, say). Both run the same loop: bounds, reverse, limit and live tailing
//! are written once, here.

use std::future::Future;
use std::sync::Arc;

use futures::stream::BoxStream;
use futures::StreamExt;
use tokio::sync::watch;

use crate::{Error, RawRecord, Result, Seq, StreamOptions};

/// How many records [`range_stream`] asks its source for at a time.
const CHUNK: u64 = 1024;

/// A log that can copy out a contiguous range of its records without waiting
/// (an in-memory vector, a memory-mapped file).
///
/// Implement this and [`range_stream`] gives you a complete [`Log::stream`](crate::Log::stream)
/// with bounds, reverse, limit and live tailing.
pub trait ReadRange: Send + Sync + 'static {
    /// Pushes the records `first..=last` onto `out`, newest first when `reverse`.
    /// The range is never empty and `last` never exceeds the `since` the stream last
    /// saw; a revert since then may have removed records, which the source reports as
    /// [`Error::NotFound`].
    ///
    /// # Errors
    /// Whatever reading fails with; [`Error::Closed`] once the log is closed.
    fn read_range(
        &self,
        first: Seq,
        last: Seq,
        reverse: bool,
        out: &mut Vec<RawRecord>,
    ) -> Result<()>;
}

/// A log that reads a contiguous range of its records asynchronously: the counterpart of
/// [`ReadRange`] for a source that must wait for its records (a remote server).
///
/// Implement this and [`async_range_chunks`] gives you the stream that [`range_chunks`]
/// builds over a [`ReadRange`]: bounds, reverse, limit and live tailing. A stream owns its
/// source, so `read_range` may keep state between chunks (a cache, a cursor).
///
/// ```
/// use bytes::Bytes;
/// use flume_core::{async_range_chunks, AsyncReadRange, RawRecord, Result, Seq, StreamOptions};
/// use futures::StreamExt;
///
/// /// Record `i` is `i` as one byte, fetched after a pause; counts its fetches.
/// struct Remote {
///     fetches: usize,
/// }
/// impl AsyncReadRange for Remote {
///     async fn read_range(&mut self, first: Seq, last: Seq, reverse: bool, out: &mut Vec<RawRecord>) -> Result<()> {
///         tokio::task::yield_now().await;
///         self.fetches += 1;
///         let start = out.len();
///         out.extend((first..=last).map(|s| (s, Bytes::from(vec![s as u8]))));
///         if reverse {
///             out[start..].reverse();
///         }
///         Ok(())
///     }
/// }
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let (_tail, since) = tokio::sync::watch::channel(Some(9));
/// let opts = StreamOptions::new().reverse(true).limit(5);
/// let chunks: Vec<Vec<RawRecord>> = async_range_chunks(Remote { fetches: 0 }, since, opts, 3)
///     .map(|c| c.unwrap())
///     .collect()
///     .await;
/// let seqs: Vec<Vec<Seq>> = chunks.iter().map(|c| c.iter().map(|r| r.0).collect()).collect();
/// assert_eq!(seqs, [vec![9, 8, 7], vec![6, 5]]);
/// # }
/// ```
pub trait AsyncReadRange: Send + 'static {
    /// Pushes the records `first..=last` onto `out`, newest first when `reverse`, under
    /// the same terms as [`ReadRange::read_range`].
    ///
    /// # Errors
    /// Whatever reading fails with; [`Error::Closed`] once the log is closed.
    fn read_range(
        &mut self,
        first: Seq,
        last: Seq,
        reverse: bool,
        out: &mut Vec<RawRecord>,
    ) -> impl Future<Output = Result<()>> + Send;

    /// Completes when the log closes, which ends a live stream waiting for new records
    /// with [`Error::Closed`]. The default never completes: the stream then learns of
    /// `close` when the sender of its `since` channel is dropped.
    fn closed(&self) -> impl Future<Output = ()> + Send {
        std::future::pending()
    }
}

/// A [`ReadRange`] as an [`AsyncReadRange`]: each read is done by the time its future is
/// first polled, so the shared loop calls the source as directly as a loop of its own.
struct Ready<R>(Arc<R>);

impl<R: ReadRange> AsyncReadRange for Ready<R> {
    fn read_range(
        &mut self,
        first: Seq,
        last: Seq,
        reverse: bool,
        out: &mut Vec<RawRecord>,
    ) -> impl Future<Output = Result<()>> + Send {
        std::future::ready(self.0.read_range(first, last, reverse, out))
    }
}

/// Builds a [`Log::stream`](crate::Log::stream) over a [`ReadRange`] source and the log's
/// `since` channel.
///
/// A live stream waits on `since` for new records and ends with [`Error::Closed`] when the
/// channel's sender is dropped (which is how a backend signals `close`). A backend must
/// itself return `Closed` for a stream asked of an already closed log: this function
/// cannot tell when the bounds select nothing. The stream reads
/// in chunks of 1024 records, so it never holds the source busy for long.
pub fn range_stream<R: ReadRange>(
    source: Arc<R>,
    since: watch::Receiver<Option<Seq>>,
    opts: StreamOptions,
) -> BoxStream<'static, Result<RawRecord>> {
    range_chunks(source, since, opts, CHUNK as usize)
        .flat_map(|chunk| {
            let records: Vec<Result<RawRecord>> = match chunk {
                Ok(records) => records.into_iter().map(Ok).collect(),
                Err(e) => vec![Err(e)],
            };
            futures::stream::iter(records)
        })
        .boxed()
}

/// Builds a [`Log::stream_chunks`](crate::Log::stream_chunks) over a [`ReadRange`] source:
/// [`range_stream`]'s records, read and handed out up to `max` at a time (one
/// [`ReadRange::read_range`] call per chunk).
///
/// ```
/// use std::sync::Arc;
/// use bytes::Bytes;
/// use flume_core::{range_chunks, RawRecord, ReadRange, Result, Seq, StreamOptions};
/// use futures::StreamExt;
///
/// /// Record `i` is `i` as one byte.
/// struct Counting;
/// impl ReadRange for Counting {
///     fn read_range(&self, first: Seq, last: Seq, reverse: bool, out: &mut Vec<RawRecord>) -> Result<()> {
///         let start = out.len();
///         out.extend((first..=last).map(|s| (s, Bytes::from(vec![s as u8]))));
///         if reverse {
///             out[start..].reverse();
///         }
///         Ok(())
///     }
/// }
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let (_tail, since) = tokio::sync::watch::channel(Some(9));
/// let chunks: Vec<Vec<RawRecord>> = range_chunks(Arc::new(Counting), since, StreamOptions::new().gte(3), 4)
///     .map(|c| c.unwrap())
///     .collect()
///     .await;
/// let seqs: Vec<Vec<Seq>> = chunks.iter().map(|c| c.iter().map(|r| r.0).collect()).collect();
/// assert_eq!(seqs, [vec![3, 4, 5, 6], vec![7, 8, 9]]);
/// # }
/// ```
pub fn range_chunks<R: ReadRange>(
    source: Arc<R>,
    since: watch::Receiver<Option<Seq>>,
    opts: StreamOptions,
    max: usize,
) -> BoxStream<'static, Result<Vec<RawRecord>>> {
    async_range_chunks(Ready(source), since, opts, max)
}

/// [`range_chunks`] over an [`AsyncReadRange`] source: the records selected by `opts`, read
/// and handed out up to `max` at a time (one [`AsyncReadRange::read_range`] call per
/// chunk).
///
/// A live stream waits on `since` for new records and ends with [`Error::Closed`] when the
/// channel's sender is dropped or the source's [`AsyncReadRange::closed`] completes. As
/// with [`range_stream`], a backend must itself return `Closed` for a stream asked of an
/// already closed log. See [`AsyncReadRange`] for an example.
pub fn async_range_chunks<S: AsyncReadRange>(
    mut source: S,
    mut since: watch::Receiver<Option<Seq>>,
    opts: StreamOptions,
    max: usize,
) -> BoxStream<'static, Result<Vec<RawRecord>>> {
    let max = max.max(1) as u64;
    async_stream::stream! {
        if let Err(e) = opts.validate() {
            yield Err(e);
            return;
        }
        let Some((first, last)) = opts.bounds() else { return };
        let mut remaining = opts.limit.map_or(u64::MAX, |l| l as u64);
        if opts.reverse {
            let tail = *since.borrow_and_update();
            let Some(top) = clamp(tail, last) else { return };
            if top < first {
                return;
            }
            let mut hi = top;
            while remaining > 0 {
                let lo = hi.saturating_sub(max - 1).max(first).max(hi.saturating_sub(remaining - 1));
                let mut chunk = Vec::with_capacity((hi - lo + 1) as usize);
                if let Err(e) = source.read_range(lo, hi, true, &mut chunk).await {
                    yield Err(e);
                    return;
                }
                remaining -= chunk.len() as u64;
                yield Ok(chunk);
                if lo == first {
                    break;
                }
                hi = lo - 1;
            }
            return;
        }
        let mut next = first;
        loop {
            let tail = *since.borrow_and_update();
            if let Some(upto) = clamp(tail, last) {
                if next <= upto && remaining > 0 {
                    let hi = upto
                        .min(next.saturating_add(max - 1))
                        .min(next.saturating_add(remaining - 1));
                    let mut chunk = Vec::with_capacity((hi - next + 1) as usize);
                    if let Err(e) = source.read_range(next, hi, false, &mut chunk).await {
                        yield Err(e);
                        return;
                    }
                    remaining -= chunk.len() as u64;
                    yield Ok(chunk);
                    // A reader that always finds records ready still lets other tasks run.
                    tokio::task::coop::consume_budget().await;
                    match hi.checked_add(1) {
                        Some(n) => next = n,
                        None => return,
                    }
                    continue;
                }
            }
            let done = remaining == 0 || last.is_some_and(|l| next > l);
            if done || !opts.live {
                return;
            }
            let closed = tokio::select! {
                biased;
                changed = since.changed() => changed.is_err(),
                () = source.closed() => true,
            };
            if closed {
                yield Err(Error::Closed);
                return;
            }
        }
    }
    .boxed()
}

/// [`Log::stream_chunks`](crate::Log::stream_chunks) for any record stream: what is ready,
/// up to `max` records a chunk; an error ends the stream after the records before it.
pub(crate) fn chunk(
    records: BoxStream<'static, Result<RawRecord>>,
    max: usize,
) -> BoxStream<'static, Result<Vec<RawRecord>>> {
    records
        .ready_chunks(max.max(1))
        .flat_map(|items| {
            let mut out = Vec::with_capacity(2);
            let mut chunk = Vec::with_capacity(items.len());
            for item in items {
                match item {
                    Ok(record) => chunk.push(record),
                    Err(e) => {
                        if !chunk.is_empty() {
                            out.push(Ok(std::mem::take(&mut chunk)));
                        }
                        out.push(Err(e));
                        break;
                    }
                }
            }
            if !chunk.is_empty() {
                out.push(Ok(chunk));
            }
            futures::stream::iter(out)
        })
        .scan(false, |ended, item| {
            if *ended {
                return std::future::ready(None);
            }
            *ended = item.is_err();
            std::future::ready(Some(item))
        })
        .boxed()
}

/// The highest seq readable now: the log's tail capped by the stream's upper bound.
fn clamp(tail: Option<Seq>, last: Option<Seq>) -> Option<Seq> {
    match (tail, last) {
        (None, _) => None,
        (Some(t), None) => Some(t),
        (Some(t), Some(l)) => Some(t.min(l)),
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;

    /// Record `i` is `i` as one byte.
    fn records(first: Seq, last: Seq, reverse: bool, out: &mut Vec<RawRecord>) {
        let start = out.len();
        out.extend((first..=last).map(|s| (s, Bytes::from(vec![s as u8]))));
        if reverse {
            out[start..].reverse();
        }
    }

    struct Counting;

    impl ReadRange for Counting {
        fn read_range(
            &self,
            first: Seq,
            last: Seq,
            reverse: bool,
            out: &mut Vec<RawRecord>,
        ) -> Result<()> {
            records(first, last, reverse, out);
            Ok(())
        }
    }

    /// [`Counting`] that waits before each read, and closes when `closed` turns true.
    struct Remote {
        closed: watch::Receiver<bool>,
    }

    impl AsyncReadRange for Remote {
        async fn read_range(
            &mut self,
            first: Seq,
            last: Seq,
            reverse: bool,
            out: &mut Vec<RawRecord>,
        ) -> Result<()> {
            tokio::task::yield_now().await;
            records(first, last, reverse, out);
            Ok(())
        }

        async fn closed(&self) {
            let mut closed = self.closed.clone();
            let _ = closed.wait_for(|c| *c).await;
        }
    }

    fn seqs(chunks: Vec<Result<Vec<RawRecord>>>) -> Vec<Vec<Seq>> {
        chunks
            .into_iter()
            .map(|c| c.expect("no error").iter().map(|r| r.0).collect())
            .collect()
    }

    #[tokio::test]
    async fn an_async_source_streams_what_a_ready_one_does() {
        let (_close, closed) = watch::channel(false);
        let (_tail, since) = watch::channel(Some(40));
        let cases = [
            StreamOptions::new(),
            StreamOptions::new().gt(3).lte(30).limit(17),
            StreamOptions::new().reverse(true),
            StreamOptions::new().reverse(true).gte(5).lt(39).limit(9),
            StreamOptions::new().gte(41),
        ];
        for opts in cases {
            let ready = range_chunks(Arc::new(Counting), since.clone(), opts.clone(), 7);
            let remote = Remote {
                closed: closed.clone(),
            };
            let fetched = async_range_chunks(remote, since.clone(), opts.clone(), 7);
            let ready = seqs(ready.collect().await);
            assert_eq!(seqs(fetched.collect().await), ready, "{opts:?}");
        }
    }

    #[tokio::test]
    async fn a_live_stream_ends_with_closed_when_its_source_closes() {
        let (close, closed) = watch::channel(false);
        let (_tail, since) = watch::channel(Some(2));
        let mut chunks = async_range_chunks(
            Remote { closed },
            since,
            StreamOptions::new().live(true),
            10,
        );
        let first = chunks.next().await.expect("a chunk").expect("records");
        assert_eq!(first.iter().map(|r| r.0).collect::<Vec<_>>(), [0, 1, 2]);
        close.send_replace(true);
        assert!(matches!(chunks.next().await, Some(Err(Error::Closed))));
        assert!(chunks.next().await.is_none());
    }
}
