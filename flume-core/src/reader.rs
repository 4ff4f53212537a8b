//! Typed read access to the log, for `Flume` and for view readers that return records.

use std::sync::Arc;

use futures::stream::{BoxStream, StreamExt};

use crate::view::Decoder;
use crate::{Live, Log, Result, Seq, StreamOptions, Waiter};

/// Reads records from the log, decoded and mapped as the database does. Cheap to clone.
///
/// A view's reader gets one in its [`ReaderContext`], so that an index can answer "the
/// record with this key" and not only "its seq".
pub struct LogReader<T> {
    log: Arc<dyn Log>,
    decoder: Arc<Decoder<T>>,
}

impl<T> Clone for LogReader<T> {
    fn clone(&self) -> Self {
        LogReader {
            log: Arc::clone(&self.log),
            decoder: Arc::clone(&self.decoder),
        }
    }
}

impl<T> std::fmt::Debug for LogReader<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LogReader")
            .field("since", &*self.log.since().borrow())
            .finish_non_exhaustive()
    }
}

impl<T: Send + Sync + 'static> LogReader<T> {
    pub(crate) fn new(log: Arc<dyn Log>, decoder: Arc<Decoder<T>>) -> Self {
        LogReader { log, decoder }
    }

    /// The value stored at `seq`, decoded and mapped.
    ///
    /// # Errors
    /// [`Error::NotFound`](crate::Error::NotFound); [`Error::Codec`](crate::Error::Codec);
    /// the log's errors.
    pub async fn get(&self, seq: Seq) -> Result<T> {
        // A loop of gets that never wait must still let other tasks run.
        tokio::task::coop::consume_budget().await;
        let bytes = self.log.get(seq).await?;
        self.decoder.decode(seq, &bytes)
    }

    /// The values selected by `opts`, decoded and mapped, with their seqs.
    pub fn stream(&self, opts: StreamOptions) -> BoxStream<'static, Result<(Seq, T)>> {
        let decoder = Arc::clone(&self.decoder);
        self.log
            .stream(opts)
            .map(move |item| {
                let (seq, bytes) = item?;
                Ok((seq, decoder.decode(seq, &bytes)?))
            })
            .boxed()
    }

    /// The seq of the last record in the log (`None`: empty).
    pub fn since(&self) -> Option<Seq> {
        *self.log.since().borrow()
    }

    /// The values selected by `opts` as a live stream (whatever `opts.live` says), with
    /// one [`Live::Synced`] once every record the log held *now* (within the bounds) has
    /// been yielded. See [`Live`] for an example.
    pub fn follow(&self, opts: StreamOptions) -> BoxStream<'static, Result<Live<(Seq, T)>>> {
        let opts = opts.live(true);
        let since = self.log.since();
        let records = self.stream(opts.clone());
        crate::live::mark_synced(records, &opts, since)
    }
}

/// What a view's reader is made from: the [`Waiter`] that makes reads wait for the view
/// to catch up, and a [`LogReader`] for views whose reads return records.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ReaderContext<T> {
    /// Makes reads wait until the view has caught up.
    pub waiter: Waiter,
    /// Reads records from the log.
    pub log: LogReader<T>,
}

impl<T> ReaderContext<T> {
    pub(crate) fn new(waiter: Waiter, log: LogReader<T>) -> Self {
        ReaderContext { waiter, log }
    }
}
