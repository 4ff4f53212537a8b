//! The `View` trait: what a view author implements, and the records a view is fed.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use bytes::Bytes;

use crate::{BoxError, Codec, Error, RawRecord, ReaderContext, Result, Seq};

/// What a view persisted at its last checkpoint: the version it was built with and the
/// seq of the last record it had applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Checkpoint {
    /// The view's [`View::version`] when it wrote this checkpoint.
    pub version: u32,
    /// The last applied seq (`None`: nothing applied).
    pub since: Option<Seq>,
}

/// When the driver asks a view to persist itself (besides at close, always).
///
/// A checkpoint is taken once `records` records have been applied since the last one,
/// or `interval` has passed with unsaved records, whichever comes first, and never
/// beyond the log's `durable` seq.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CheckpointPolicy {
    /// Records applied between checkpoints. Default: 100,000.
    pub records: u64,
    /// Longest time unsaved records wait for a checkpoint. Default: 1 second.
    pub interval: Duration,
}

impl Default for CheckpointPolicy {
    fn default() -> Self {
        CheckpointPolicy {
            records: 100_000,
            interval: Duration::from_secs(1),
        }
    }
}

/// A streaming view over a log of `T` records.
///
/// The core drives views: it loads each view's [`Checkpoint`], feeds it every record it
/// has not applied yet, in order and in batches, on a blocking thread (so `apply` may do
/// CPU-heavy or blocking work), asks it to checkpoint now and then, and resets it when
/// its version changed, when it is ahead of the log, or after a failure. Views never
/// read the log themselves. `load`, `checkpoint` and `reset` run on a blocking thread
/// too, one call at a time per view (never during an `apply`), and may take their time:
/// the other views and their readers go on meanwhile.
///
/// Reads go through the view's [`Reader`](View::Reader), made from a [`ReaderContext`]:
/// its [`Waiter`](crate::Waiter) runs every read of the view's state, through
/// [`Waiter::read`](crate::Waiter::read) (or [`Waiter::try_read`](crate::Waiter::try_read)
/// for reads that can fail or find the view's files damaged), once the view has caught
/// up, and never while the driver resets it; its [`LogReader`](crate::LogReader) fetches
/// records for views that return them. Read the state only inside those closures: state
/// read after a plain [`Waiter::wait`](crate::Waiter::wait) may already be wiped by a
/// rebuild.
///
/// A complete in-memory view, "how many records mention rust":
///
/// ```
/// use std::sync::{Arc, atomic::{AtomicU64, Ordering}};
/// use flume_core::{BoxError, ReaderContext, Records, Result, View, Wait, Waiter};
///
/// #[derive(Debug, Default)]
/// struct Mentions(Arc<AtomicU64>);
///
/// #[derive(Debug, Clone)]
/// struct MentionsReader(Arc<AtomicU64>, Waiter);
///
/// impl MentionsReader {
///     async fn get(&self, wait: Wait) -> Result<u64> {
///         // Waits as `wait` says, then reads with resets held off.
///         self.1.read(wait, || self.0.load(Ordering::Acquire)).await
///     }
/// }
///
/// impl View<String> for Mentions {
///     type Reader = MentionsReader;
///     fn version(&self) -> u32 { 1 }
///     fn reader(&self, ctx: ReaderContext<String>) -> MentionsReader {
///         MentionsReader(self.0.clone(), ctx.waiter)
///     }
///     fn apply(&mut self, records: flume_core::Records<'_, String>) -> Result<(), BoxError> {
///         for record in records {
///             if record.value()?.contains("rust") {
///                 self.0.fetch_add(1, Ordering::Release);
///             }
///         }
///         Ok(())
///     }
///     fn reset(&mut self) -> Result<(), BoxError> {
///         self.0.store(0, Ordering::Release);
///         Ok(())
///     }
/// }
/// ```
pub trait View<T>: Send + 'static {
    /// What readers of this view get from `Flume::view` and `Flume::add_view`.
    type Reader: Clone + Send + Sync + 'static;

    /// The version of this view's logic. When it differs from the stored one, the view is
    /// reset and rebuilt from the start of the log. Bump it whenever `apply` changes.
    fn version(&self) -> u32;

    /// Makes the read handle. `ctx.waiter` runs reads once the view has caught up
    /// ([`Waiter::read`](crate::Waiter::read)); `ctx.log` reads records.
    fn reader(&self, ctx: ReaderContext<T>) -> Self::Reader;

    /// Loads persisted state, returning the checkpoint it was saved at, or `None` when
    /// nothing is persisted (the default: in-memory views).
    ///
    /// # Errors
    /// An error (say, an unreadable state file) makes the driver reset the view.
    fn load(&mut self) -> Result<Option<Checkpoint>, BoxError> {
        Ok(None)
    }

    /// Applies the next records, in log order. On error the view is reset and rebuilt
    /// once; if it fails again it is marked failed.
    ///
    /// # Errors
    /// Whatever the view's logic fails with.
    fn apply(&mut self, records: Records<'_, T>) -> Result<(), BoxError>;

    /// Persists the state together with `version()` and `since`, atomically.
    ///
    /// `since` is always the view's last applied seq (the state as it is now), and only
    /// ever one the log holds durably: the driver never calls this while a batch is being
    /// applied, and waits for (or asks for) a log sync first. Default: nothing to persist.
    ///
    /// # Errors
    /// A failed checkpoint is reported on the view's status and retried later.
    fn checkpoint(&mut self, since: Seq) -> Result<(), BoxError> {
        let _ = since;
        Ok(())
    }

    /// Wipes all state, in memory and persisted, back to "nothing applied".
    ///
    /// # Errors
    /// A view that cannot reset is marked failed.
    fn reset(&mut self) -> Result<(), BoxError>;

    /// How often the driver calls [`View::checkpoint`]. Default: [`CheckpointPolicy::default`].
    fn checkpoint_policy(&self) -> CheckpointPolicy {
        CheckpointPolicy::default()
    }
}

/// Decodes record bytes into values: the codec, then the optional mapper.
pub(crate) struct Decoder<T> {
    pub(crate) codec: Arc<dyn Codec<T>>,
    pub(crate) mapper: Option<Arc<Mapper<T>>>,
}

/// A function applied to every decoded value before views and readers see it.
pub type Mapper<T> = dyn Fn(T) -> Result<T, BoxError> + Send + Sync;

impl<T: 'static> Decoder<T> {
    pub(crate) fn decode(&self, seq: Seq, bytes: &Bytes) -> Result<T> {
        let value = self
            .codec
            .decode(bytes)
            .map_err(|e| Error::codec(Some(seq), e))?;
        match &self.mapper {
            None => Ok(value),
            Some(map) => map(value).map_err(|e| Error::codec(Some(seq), e)),
        }
    }
}

/// Records read from the log together, each decoded at most once however many views use
/// it. The decoded values' slots are allocated on the first decode, so a batch that no
/// view decodes (a count) costs nothing beyond the records themselves.
pub(crate) struct Batch<T> {
    pub(crate) records: Vec<RawRecord>,
    values: OnceLock<Box<[OnceLock<Result<T>>]>>,
}

impl<T> Batch<T> {
    pub(crate) fn new(records: Vec<RawRecord>) -> Self {
        Batch {
            records,
            values: OnceLock::new(),
        }
    }

    /// The seq of the last record.
    pub(crate) fn last_seq(&self) -> Option<Seq> {
        self.records.last().map(|r| r.0)
    }

    fn value_slot(&self, index: usize) -> &OnceLock<Result<T>> {
        let values = self
            .values
            .get_or_init(|| self.records.iter().map(|_| OnceLock::new()).collect());
        &values[index]
    }
}

/// A batch of consecutive records handed to [`View::apply`].
pub struct Records<'a, T> {
    batch: &'a Batch<T>,
    start: usize,
    decoder: &'a Decoder<T>,
}

impl<'a, T> Records<'a, T> {
    /// The records of `batch` from index `start` on.
    pub(crate) fn new(batch: &'a Batch<T>, start: usize, decoder: &'a Decoder<T>) -> Self {
        Records {
            batch,
            start,
            decoder,
        }
    }

    /// How many records the batch holds.
    pub fn len(&self) -> usize {
        self.batch.records.len() - self.start
    }

    /// Whether the batch is empty (the driver never sends an empty one).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The seq of the last record in the batch.
    pub fn last_seq(&self) -> Option<Seq> {
        if self.is_empty() {
            None
        } else {
            self.batch.last_seq()
        }
    }

    /// The records, in log order.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = Record<'a, T>> + 'a {
        let (batch, decoder) = (self.batch, self.decoder);
        (self.start..batch.records.len()).map(move |index| Record {
            batch,
            index,
            decoder,
        })
    }
}

impl<'a, T> IntoIterator for Records<'a, T> {
    type Item = Record<'a, T>;
    type IntoIter = Box<dyn ExactSizeIterator<Item = Record<'a, T>> + 'a>;
    fn into_iter(self) -> Self::IntoIter {
        Box::new(self.iter())
    }
}

impl<T> std::fmt::Debug for Records<'_, T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Records")
            .field("len", &self.len())
            .field("first", &self.batch.records.get(self.start).map(|r| r.0))
            .field("last", &self.last_seq())
            .finish()
    }
}

/// One record of a batch: its seq, its raw bytes, and its value decoded on first use.
pub struct Record<'a, T> {
    batch: &'a Batch<T>,
    index: usize,
    decoder: &'a Decoder<T>,
}

impl<'a, T> Record<'a, T> {
    /// The record's seq.
    pub fn seq(&self) -> Seq {
        self.batch.records[self.index].0
    }

    /// The record's stored bytes (before the codec and mapper). Reading them costs nothing.
    pub fn bytes(&self) -> &'a Bytes {
        &self.batch.records[self.index].1
    }
}

impl<'a, T: 'static> Record<'a, T> {
    /// The decoded (and mapped) value. The first call on a record decodes it; every
    /// other view asking for the same record gets the same value without decoding again.
    ///
    /// # Errors
    /// [`Error::Codec`] when the bytes do not decode or the mapper fails.
    pub fn value(&self) -> Result<&'a T> {
        let batch: &'a Batch<T> = self.batch;
        let (seq, bytes) = &batch.records[self.index];
        match batch
            .value_slot(self.index)
            .get_or_init(|| self.decoder.decode(*seq, bytes))
        {
            Ok(v) => Ok(v),
            Err(e) => Err(e.duplicate()),
        }
    }
}

impl<T> std::fmt::Debug for Record<'_, T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Record")
            .field("seq", &self.seq())
            .field("len", &self.bytes().len())
            .finish()
    }
}
