//! A ready-made `stream` for backends that can read a seq range synchronously.

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
                if let Err(e) = source.read_range(lo, hi, true, &mut chunk) {
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
                    if let Err(e) = source.read_range(next, hi, false, &mut chunk) {
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
            if since.changed().await.is_err() {
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
