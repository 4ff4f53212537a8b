//! `Kv`: the view, its builder methods, and its `View` implementation.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use flume_core::{BoxError, Checkpoint, CheckpointPolicy, ReaderContext, Records, Seq, View};
use flume_lsm::{Engine, LsmOptions, OpBuf, Retention, Semantics, Store};

use crate::emit::{KvEmit, RecordOps};
use crate::{History, Key, KvReader};

/// The map of a [`Kv`], shared by the view (to index records) and its readers (to read
/// values back from records).
pub(crate) type MapFn<T, K, V> = dyn Fn(&T, &mut KvEmit<'_, K, V>) + Send + Sync;

/// A key-value view: each record is mapped to zero or more operations
/// ([`KvEmit::put`], [`KvEmit::delete`]) on typed keys, and [`KvReader`] answers a key's
/// value and version (the seq of the record that wrote it), its history, its value as of
/// any past seq, and scans over live keys.
///
/// | option | default |
/// |---|---|
/// | [`.persist(dir)`](Kv::persist) | in memory only: rebuilt from the log at every start |
/// | [`.options(options)`](Kv::options) | [`LsmOptions::default`] |
/// | [`.history(history)`](Kv::history) | [`History::All`]: every version stays readable |
///
/// Storage is the LSM engine of `flumeview-index` (crate `flume-lsm`): a bounded
/// in-memory table, immutable sorted runs on disk, background compaction, a manifest
/// replaced atomically at each checkpoint. An entry is `(key, seq, put or delete)`:
/// **values are not stored in the view**. A read that needs a value reads the record at
/// that seq from the log and runs the map on it again, taking the record's last
/// operation on the key; so the map must be a deterministic function of the record
/// (bump `version` whenever it changes). A value costs one log read and decode, like
/// `IndexReader::get` in `flumeview-index`; versions, `contains`, key scans and counts
/// read no record.
pub struct Kv<T, K, V> {
    version: u32,
    map: Arc<MapFn<T, K, V>>,
    options: LsmOptions,
    history: History,
    dir: Option<PathBuf>,
    engine: Engine,
    ops: OpBuf,
    record: RecordOps,
}

impl<T, K, V> fmt::Debug for Kv<T, K, V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Kv")
            .field("version", &self.version)
            .field("dir", &self.dir)
            .field("history", &self.history)
            .field("options", &self.options)
            .field("store", self.engine.store())
            .finish_non_exhaustive()
    }
}

impl<T, K, V> Kv<T, K, V>
where
    T: Send + Sync + 'static,
    K: Key,
    V: Send + Sync + 'static,
{
    /// A key-value view whose map turns each record into operations on keys.
    ///
    /// `version` is yours to choose: bump it whenever `map` changes, and the persisted
    /// view is thrown away and rebuilt. The map is also run again by reads, on the
    /// record that wrote a value, to recover the value (see [`Kv`]).
    ///
    /// ```
    /// use flumeview_kv::Kv;
    ///
    /// #[derive(Debug)]
    /// enum Cmd { Set(String, i64), Unset(String) }
    ///
    /// let state: Kv<Cmd, String, i64> = Kv::new(1, |cmd: &Cmd, e| match cmd {
    ///     Cmd::Set(k, v) => e.put(k.clone(), *v),
    ///     Cmd::Unset(k) => e.delete(k.clone()),
    /// });
    /// ```
    pub fn new<F>(version: u32, map: F) -> Self
    where
        F: Fn(&T, &mut KvEmit<'_, K, V>) + Send + Sync + 'static,
    {
        let options = LsmOptions::default();
        let history = History::default();
        Kv {
            version,
            map: Arc::new(map),
            engine: new_engine(version, &options, None, history),
            options,
            history,
            dir: None,
            ops: OpBuf::default(),
            record: RecordOps::default(),
        }
    }

    /// Persists the view in `dir` (created if missing), so that a restart resumes from
    /// the last checkpoint instead of rebuilding. Default: in memory only.
    ///
    /// The directory belongs to this view (give each view its own) and is locked while
    /// the view is open. Its files are those of `flumeview-index` (`docs/format.md`). A
    /// damaged manifest or run makes the view rebuild; it never stops the database.
    ///
    /// ```
    /// use flumeview_kv::Kv;
    /// let names: Kv<(u64, String), u64, String> =
    ///     Kv::new(1, |(id, name): &(u64, String), e| e.put(*id, name.clone()))
    ///         .persist("/var/lib/myapp/views/names");
    /// ```
    #[must_use]
    pub fn persist(mut self, dir: impl Into<PathBuf>) -> Self {
        self.dir = Some(dir.into());
        self.rebuild_store();
        self
    }

    /// Sets every tuning knob of the engine at once. Default: [`LsmOptions::default`].
    ///
    /// ```
    /// use flumeview_kv::{Kv, LsmOptions};
    /// let small: Kv<(u64, String), u64, String> =
    ///     Kv::new(1, |(id, name): &(u64, String), e| e.put(*id, name.clone()))
    ///         .options(LsmOptions::default().memtable_bytes(1 << 20));
    /// ```
    #[must_use]
    pub fn options(mut self, options: LsmOptions) -> Self {
        self.options = options;
        self.rebuild_store();
        self
    }

    /// Which versions stay readable. Default: [`History::All`].
    ///
    /// Reads answer by this option whenever compaction runs (see [`History`]). A
    /// persisted view's manifest records the history its files keep: opened with a
    /// longer one ([`History::Latest`] or [`History::Since`] to [`History::All`], or a
    /// lower horizon), the view is rebuilt from the log, since compaction may have
    /// dropped versions the new option keeps; opened with the same or a shorter one, it
    /// resumes and compacts by the new option from then on.
    ///
    /// ```
    /// use flumeview_kv::{History, Kv};
    /// let latest: Kv<(u64, String), u64, String> =
    ///     Kv::new(1, |(id, name): &(u64, String), e| e.put(*id, name.clone()))
    ///         .history(History::Latest);
    /// ```
    #[must_use]
    pub fn history(mut self, history: History) -> Self {
        self.history = history;
        self.rebuild_store();
        self
    }

    /// The directory the view is persisted in, if any.
    pub fn dir(&self) -> Option<&Path> {
        self.dir.as_deref()
    }

    fn rebuild_store(&mut self) {
        self.engine = new_engine(self.version, &self.options, self.dir.clone(), self.history);
    }
}

/// The engine for a view: one entry per key per record, a put hiding the key's older
/// entries; compaction keeps what `history` needs.
fn new_engine(
    version: u32,
    options: &LsmOptions,
    dir: Option<PathBuf>,
    history: History,
) -> Engine {
    let retention = match history {
        History::All => Retention::All,
        // Each key's newest entry, a delete included, so that `history` and `get_at`
        // answer the same before and after compaction.
        History::Latest => Retention::Since(Seq::MAX),
        History::Since(h) => Retention::Since(h),
    };
    let store = Store::new(version, options, dir, Semantics::SingleValued, retention);
    Engine::new(store, options)
}

impl<T, K, V> View<T> for Kv<T, K, V>
where
    T: Send + Sync + 'static,
    K: Key,
    V: Send + Sync + 'static,
{
    type Reader = KvReader<T, K, V>;

    fn version(&self) -> u32 {
        self.version
    }

    fn reader(&self, ctx: ReaderContext<T>) -> KvReader<T, K, V> {
        KvReader::new(
            Arc::clone(self.engine.store()),
            ctx.waiter,
            ctx.log,
            Arc::clone(&self.map),
            self.history,
        )
    }

    /// Locks the directory, reads the manifest and opens the runs it names; removes
    /// files a crash left behind.
    ///
    /// # Errors
    /// [`Error::Locked`](flume_core::Error::Locked) when another open view holds the
    /// directory; an unreadable or damaged manifest or run: the driver then resets the
    /// view, which deletes its files.
    fn load(&mut self) -> Result<Option<Checkpoint>, BoxError> {
        Ok(self.engine.load()?)
    }

    /// Maps the batch (keeping each record's last operation per key), then adds the
    /// operations to the memtable in one step, and flushes the memtable when it is full.
    ///
    /// # Errors
    /// A decoding error for a record, or a failed flush. Nothing of the batch is applied
    /// then.
    fn apply(&mut self, records: Records<'_, T>) -> Result<(), BoxError> {
        let Some(last) = records.last_seq() else {
            return Ok(());
        };
        let after = self.engine.store().since();
        self.ops.clear();
        for record in records.iter() {
            let seq = record.seq();
            if after.is_some_and(|a| seq <= a) {
                continue;
            }
            self.record.clear();
            (self.map)(record.value()?, &mut KvEmit::collect(seq, &mut self.record));
            let mut emit = self.ops.emit(seq);
            self.record.finals(|key, put| {
                if put {
                    emit.put(key);
                } else {
                    emit.delete(key);
                }
            });
        }
        self.engine.store().apply(&self.ops, last)?;
        Ok(())
    }

    /// Flushes the memtable to a run and writes the manifest, atomically replacing the
    /// previous one, with `since`; then lets the compactor look for runs to merge.
    ///
    /// # Errors
    /// [`Error::Io`](flume_core::Error::Io); the previous checkpoint stays in force.
    fn checkpoint(&mut self, since: Seq) -> Result<(), BoxError> {
        Ok(self.engine.checkpoint(since)?)
    }

    /// Deletes every run and the manifest, and empties the memtable.
    ///
    /// # Errors
    /// [`Error::Io`](flume_core::Error::Io) when a file cannot be deleted.
    fn reset(&mut self) -> Result<(), BoxError> {
        Ok(self.engine.reset()?)
    }

    fn checkpoint_policy(&self) -> CheckpointPolicy {
        self.options.checkpoint
    }
}
