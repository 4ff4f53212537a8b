//! `Live`: the items of a stream that follows history into new records, with a marker
//! between the two.

use futures::stream::{BoxStream, StreamExt};
use tokio::sync::watch;

use crate::{Result, Seq, StreamOptions};

/// An item of a stream that first replays what already exists, then follows what comes
/// next, and says once when it has caught up: JavaScript flumedb's `{sync: true}`.
///
/// Streams that follow a log or a view come in two shapes: the plain one
/// ([`Flume::stream`](crate::Flume::stream) with `live(true)`, a view's change stream)
/// yields bare items; its `follow` twin ([`Flume::follow`](crate::Flume::follow), and the
/// views' own `follow` methods) yields `Live` items, with exactly one [`Live::Synced`]
/// once everything that existed when the stream was *made* has been yielded. A UI shows
/// "loading" until then.
///
/// ```
/// use flume_core::{Flume, Live, StreamOptions};
/// use flumelog_memory::MemoryLog;
/// use futures::StreamExt;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> flume_core::Result<()> {
/// let db = Flume::<u64>::new(MemoryLog::new());
/// db.append_batch(&[10, 11]).await?;
/// let mut feed = db.follow(StreamOptions::new());
/// db.append(&12).await?; // after the stream was made: a new record
/// let mut got = Vec::new();
/// while let Some(item) = feed.next().await {
///     match item? {
///         Live::Item((seq, value)) => got.push(format!("{seq}={value}")),
///         Live::Synced => got.push("synced".into()),
///     }
///     if got.len() == 4 {
///         break;
///     }
/// }
/// assert_eq!(got, ["0=10", "1=11", "synced", "2=12"]);
/// # db.close().await }
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Live<T> {
    /// An item: from the history, or new.
    Item(T),
    /// Every item that existed when the stream was made has been yielded; what follows
    /// is new. Yielded once per stream (never, when the stream ends before catching up,
    /// say at its limit).
    Synced,
}

impl<T> Live<T> {
    /// The item, or `None` for the marker.
    pub fn item(self) -> Option<T> {
        match self {
            Live::Item(item) => Some(item),
            Live::Synced => None,
        }
    }

    /// Whether this is the [`Live::Synced`] marker.
    pub fn is_synced(&self) -> bool {
        matches!(self, Live::Synced)
    }

    /// The item mapped by `f`; the marker stays the marker.
    pub fn map<U>(self, f: impl FnOnce(T) -> U) -> Live<U> {
        match self {
            Live::Item(item) => Live::Item(f(item)),
            Live::Synced => Live::Synced,
        }
    }
}

/// A live log stream with [`Live::Synced`] after the record `tail` (the log's last seq
/// when the stream was made), as far as the stream's bounds reach: at once when that
/// history is empty. After a revert removed records up to `tail`, the marker comes after
/// the log's last record instead (`since` is the log's tail as it moves), and before any
/// record above `tail` in any case.
pub(crate) fn mark_synced<T: Send + 'static>(
    records: BoxStream<'static, Result<(Seq, T)>>,
    opts: &StreamOptions,
    since: watch::Receiver<Option<Seq>>,
) -> BoxStream<'static, Result<Live<(Seq, T)>>> {
    let tail = *since.borrow();
    // The last seq of the history: the tail, capped by the upper bound; none when the
    // bounds leave no history.
    let history_end = opts.bounds().and_then(|(first, last)| {
        let end = match last {
            Some(last) => tail?.min(last),
            None => tail?,
        };
        (end >= first).then_some(end)
    });
    async_stream::stream! {
        let mut synced = false;
        if history_end.is_none() {
            synced = true;
            yield Ok(Live::Synced);
        }
        let mut records = records;
        while let Some(item) = records.next().await {
            let item = match item {
                Ok(record) => record,
                Err(e) => {
                    yield Err(e);
                    continue;
                }
            };
            let seq = item.0;
            if !synced && history_end.is_some_and(|end| seq > end) {
                synced = true;
                yield Ok(Live::Synced);
            }
            yield Ok(Live::Item(item));
            let caught_up = Some(seq) >= *since.borrow();
            if !synced && (caught_up || history_end.is_some_and(|end| seq >= end)) {
                synced = true;
                yield Ok(Live::Synced);
            }
        }
    }
    .boxed()
}
