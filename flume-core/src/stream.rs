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
    mut since: watch::Receiver<Option<Seq>>,
    opts: StreamOptions,
) -> BoxStream<'static, Result<RawRecord>> {
    async_stream::stream! {
        if let Err(e) = opts.validate() {
            yield Err(e);
            return;
        }
        let Some((first, last)) = opts.bounds() else { return };
        let mut remaining = opts.limit.map_or(u64::MAX, |l| l as u64);
        let mut buf = Vec::new();
        if opts.reverse {
            let tail = *since.borrow_and_update();
            let Some(top) = clamp(tail, last) else { return };
            if top < first {
                return;
            }
            let mut hi = top;
            while remaining > 0 {
                let lo = hi.saturating_sub(CHUNK - 1).max(first).max(hi.saturating_sub(remaining - 1));
                buf.clear();
                if let Err(e) = source.read_range(lo, hi, true, &mut buf) {
                    yield Err(e);
                    return;
                }
                for record in buf.drain(..) {
                    remaining -= 1;
                    yield Ok(record);
                }
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
                        .min(next.saturating_add(CHUNK - 1))
                        .min(next.saturating_add(remaining - 1));
                    buf.clear();
                    if let Err(e) = source.read_range(next, hi, false, &mut buf) {
                        yield Err(e);
                        return;
                    }
                    for record in buf.drain(..) {
                        remaining -= 1;
                        yield Ok(record);
                    }
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

/// The highest seq readable now: the log's tail capped by the stream's upper bound.
fn clamp(tail: Option<Seq>, last: Option<Seq>) -> Option<Seq> {
    match (tail, last) {
        (None, _) => None,
        (Some(t), None) => Some(t),
        (Some(t), Some(l)) => Some(t.min(l)),
    }
}
