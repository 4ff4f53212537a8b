//! `Index`: the view, its builder methods, and its `View` implementation.

use std::fmt;
use std::marker::PhantomData;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use flume_core::{
    BoxError, Checkpoint, CheckpointPolicy, ReaderContext, Record, Records, Seq, View,
};

use flume_lsm::{AsKey, Emit, Engine, Key, OpBuf, Retention, Semantics, Store};

use crate::{IndexOptions, IndexReader};

/// The map every constructor compiles down to: it sees the raw record and adds its
/// operations to the batch's buffer.
type Map<T> = Box<dyn FnMut(&Record<'_, T>, &mut OpBuf) -> Result<(), BoxError> + Send>;

/// A secondary index: each record is mapped to zero or more operations on byte keys
/// ([`Emit::put`], [`Emit::delete`]), and [`IndexReader`] answers which records a key,
/// a key range or a key prefix points at.
///
/// | constructor | the map sees | decodes records |
/// |---|---|---|
/// | [`Index::new`] | each value, `&T` | yes |
/// | [`Index::raw`] | each raw [`Record`]: seq, bytes, and the value on demand | only if the map calls [`Record::value`] |
///
/// | option | default |
/// |---|---|
/// | [`.persist(dir)`](Index::persist) | in memory only: rebuilt from the log at every start |
/// | [`.options(options)`](Index::options) | [`IndexOptions::default`] |
///
/// Operations go to an in-memory table, written out as an immutable sorted run when it
/// reaches [`IndexOptions::memtable_bytes`] and at every checkpoint; a background thread
/// merges runs. Readers never wait for either. A persisted index resumes from its last
/// checkpoint; see the [crate docs](crate#persistence).
pub struct Index<T, K = Vec<u8>> {
    version: u32,
    key: PhantomData<fn() -> K>,
    map: Map<T>,
    options: IndexOptions,
    dir: Option<PathBuf>,
    engine: Engine,
    ops: OpBuf,
}

impl<T, K> fmt::Debug for Index<T, K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Index")
            .field("version", &self.version)
            .field("key", &std::any::type_name::<K>())
            .field("dir", &self.dir)
            .field("options", &self.options)
            .field("store", self.engine.store())
            .finish_non_exhaustive()
    }
}

impl<T: 'static> Index<T> {
    /// An index whose map sees every decoded value and emits its byte keys.
    ///
    /// `version` is yours to choose: bump it whenever `map` changes, and the persisted
    /// index is thrown away and rebuilt.
    ///
    /// The map also sees the record's seq: [`Emit::seq`]. With it a key can carry the
    /// seq (`(author, seq)`, unique per record), and a later record can take one entry
    /// out with [`Emit::remove`] (only the put of `key` by the record at `seq`), where
    /// [`Emit::delete`] takes out every earlier put of the key.
    ///
    /// ```
    /// use flumeview_index::{key, Index};
    ///
    /// #[derive(Debug)]
    /// struct Msg { key: String, author: String, sequence: u64 }
    ///
    /// let by_key = Index::new(1, |m: &Msg, e| e.put(key::string(&m.key)));
    /// let by_author = Index::new(1, |m: &Msg, e| e.put(key::tuple((&m.author, m.sequence))));
    /// // Keyed by the record's own seq.
    /// let by_author_seq = Index::new(1, |m: &Msg, e| {
    ///     let seq = e.seq();
    ///     e.put(key::tuple((&m.author, seq)))
    /// });
    /// # let _: (Index<Msg>, Index<Msg>, Index<Msg>) = (by_key, by_author, by_author_seq);
    /// ```
    ///
    /// For keys of a declared type, see [`Index::keyed`].
    pub fn new<F>(version: u32, mut map: F) -> Self
    where
        F: FnMut(&T, &mut Emit<'_>) + Send + 'static,
    {
        Self::from_map(
            version,
            Box::new(move |record, ops| {
                map(record.value()?, &mut ops.emit(record.seq()));
                Ok(())
            }),
        )
    }

    /// An index whose map sees each raw [`Record`]: its seq, its stored bytes, and its
    /// value through [`Record::value`], decoded only when asked for (and at most once
    /// across all views). The map may fail; the view is then reset and rebuilt once, and
    /// marked failed if it fails again.
    ///
    /// ```
    /// use bytes::Bytes;
    /// use flume_core::{BoxError, Record};
    /// use flumeview_index::{Emit, Index};
    ///
    /// // Index records by their first 8 bytes, without decoding them.
    /// let by_prefix: Index<Bytes> = Index::raw(1, |r: &Record<'_, Bytes>, e: &mut Emit<'_>| {
    ///     e.put(&r.bytes()[..r.bytes().len().min(8)]);
    ///     Ok::<(), BoxError>(())
    /// });
    /// ```
    pub fn raw<F>(version: u32, mut map: F) -> Self
    where
        F: FnMut(&Record<'_, T>, &mut Emit<'_>) -> Result<(), BoxError> + Send + 'static,
    {
        Self::from_map(
            version,
            Box::new(move |record, ops| map(record, &mut ops.emit(record.seq()))),
        )
    }
}

impl<T: 'static, K: Key> Index<T, K> {
    /// An index of keys of type `K`: its map sees each record's seq and decoded value
    /// and emits typed keys ([`KeyEmit`]); every read of its
    /// [`IndexReader<T, K>`](crate::IndexReader) takes and returns `K`.
    ///
    /// `version` is yours to choose: bump it whenever `map` (or `K`) changes, and the
    /// persisted index is thrown away and rebuilt.
    ///
    /// ```
    /// use flumeview_index::Index;
    ///
    /// #[derive(Debug)]
    /// struct Post { author: String, text: String }
    ///
    /// // Posts by (author, seq): unique per post, newest last within an author.
    /// let by_author = Index::<Post, (String, u64)>::keyed(1, |seq, post, e| {
    ///     e.put((&post.author, seq));
    /// });
    /// ```
    ///
    /// Name the types in the path (`Index::<T, K>::keyed`) or match on the value in the
    /// map, so that the closure's parameters are known. See [`KeyEmit::remove`] for a
    /// record that takes another's entry out.
    pub fn keyed<F>(version: u32, mut map: F) -> Self
    where
        F: FnMut(Seq, &T, &mut KeyEmit<'_, K>) + Send + 'static,
    {
        let mut scratch = Vec::new();
        Self::from_map(
            version,
            Box::new(move |record, ops| {
                let value = record.value()?;
                let mut emit = KeyEmit::new(ops.emit(record.seq()), &mut scratch);
                map(record.seq(), value, &mut emit);
                Ok(())
            }),
        )
    }

    /// [`Index::keyed`] whose map sees the raw [`Record`] (its value decoded only when
    /// asked for) and may fail, like [`Index::raw`].
    ///
    /// ```
    /// use bytes::Bytes;
    /// use flume_core::BoxError;
    /// use flumeview_index::Index;
    ///
    /// // Records by their length.
    /// let by_len: Index<Bytes, u64> = Index::keyed_raw(1, |r, e| {
    ///     e.put(r.bytes().len() as u64);
    ///     Ok::<(), BoxError>(())
    /// });
    /// ```
    pub fn keyed_raw<F>(version: u32, mut map: F) -> Self
    where
        F: FnMut(&Record<'_, T>, &mut KeyEmit<'_, K>) -> Result<(), BoxError> + Send + 'static,
    {
        let mut scratch = Vec::new();
        Self::from_map(
            version,
            Box::new(move |record, ops| {
                let mut emit = KeyEmit::new(ops.emit(record.seq()), &mut scratch);
                map(record, &mut emit)
            }),
        )
    }

    fn from_map(version: u32, map: Map<T>) -> Self {
        let options = IndexOptions::default();
        Index {
            version,
            key: PhantomData,
            map,
            engine: new_engine(version, &options, None),
            options,
            dir: None,
            ops: OpBuf::default(),
        }
    }

    /// Persists the index in `dir` (created if missing), so that a restart resumes from
    /// the last checkpoint instead of rebuilding. Default: in memory only.
    ///
    /// The directory belongs to this index (give each index its own) and is locked
    /// while the index is open. Its files are described in `docs/format.md`. A damaged
    /// manifest or run makes the index rebuild; it never stops the database.
    ///
    /// ```
    /// use flumeview_index::{key, Index};
    /// let by_name = Index::new(1, |name: &String, e| e.put(key::string(name)))
    ///     .persist("/var/lib/myapp/views/by_name");
    /// ```
    #[must_use]
    pub fn persist(mut self, dir: impl Into<PathBuf>) -> Self {
        self.dir = Some(dir.into());
        self.rebuild_store();
        self
    }

    /// Sets every tuning knob at once. Default: [`IndexOptions::default`].
    ///
    /// ```
    /// use flumeview_index::{key, Index, IndexOptions};
    /// let small = Index::new(1, |name: &String, e| e.put(key::string(name)))
    ///     .options(IndexOptions::default().memtable_bytes(1 << 20));
    /// ```
    #[must_use]
    pub fn options(mut self, options: IndexOptions) -> Self {
        self.options = options;
        self.rebuild_store();
        self
    }

    /// The directory the index is persisted in, if any.
    pub fn dir(&self) -> Option<&Path> {
        self.dir.as_deref()
    }

    fn rebuild_store(&mut self) {
        self.engine = new_engine(self.version, &self.options, self.dir.clone());
    }

    #[cfg(test)]
    pub(crate) fn store(&self) -> &Arc<Store> {
        self.engine.store()
    }

    /// Applies operations gathered by a test (records cannot be built outside flume-core).
    #[cfg(test)]
    pub(crate) fn apply_with(
        &mut self,
        seq: flume_core::Seq,
        f: impl FnOnce(&mut Emit<'_>),
    ) -> Result<(), BoxError> {
        self.ops.clear();
        f(&mut self.ops.emit(seq));
        self.engine.store().apply(&self.ops, seq)?;
        Ok(())
    }
}

/// The engine of an index: multi-valued keys, compaction keeping only what is live.
fn new_engine(version: u32, options: &IndexOptions, dir: Option<PathBuf>) -> Engine {
    let store = Store::new(
        version,
        options,
        dir,
        Semantics::MultiValued,
        Retention::Live,
    );
    let store = if cfg!(test) {
        // The crate's tests arm crash points on it.
        store.with_faults(flume_core::durable::Faults::new())
    } else {
        store
    };
    Engine::new(store, options)
}

impl<T: Send + Sync + 'static, K: Key> View<T> for Index<T, K> {
    type Reader = IndexReader<T, K>;

    fn version(&self) -> u32 {
        self.version
    }

    fn reader(&self, ctx: ReaderContext<T>) -> IndexReader<T, K> {
        IndexReader::new(Arc::clone(self.engine.store()), ctx.waiter, ctx.log)
    }

    /// Locks the directory, reads the manifest and opens the runs it names; removes
    /// files a crash left behind.
    ///
    /// # Errors
    /// [`Error::Locked`](flume_core::Error::Locked) when another open index holds the
    /// directory; an unreadable or damaged manifest or run
    /// ([`Error::Corrupt`](flume_core::Error::Corrupt), [`Error::Io`](flume_core::Error::Io)):
    /// the driver then resets the index, which deletes its files.
    fn load(&mut self) -> Result<Option<Checkpoint>, BoxError> {
        Ok(self.engine.load()?)
    }

    /// Maps the batch, then adds its operations to the memtable in one step (readers see
    /// the index before or after a batch, never in between), and flushes the memtable
    /// when it is full.
    ///
    /// # Errors
    /// Whatever the map returns, a decoding error for a value it needed, or a failed
    /// flush. Nothing of the batch is applied then.
    fn apply(&mut self, records: Records<'_, T>) -> Result<(), BoxError> {
        let Some(last) = records.last_seq() else {
            return Ok(());
        };
        let after = self.engine.store().since();
        self.ops.clear();
        for record in records.iter() {
            if after.is_some_and(|a| record.seq() <= a) {
                continue;
            }
            (self.map)(&record, &mut self.ops)?;
        }
        self.engine.store().apply(&self.ops, last)?;
        Ok(())
    }

    /// Flushes the memtable to a run and writes the manifest, atomically replacing the
    /// previous one, with `since`; then lets the compactor look for runs to merge.
    ///
    /// # Errors
    /// [`Error::Io`](flume_core::Error::Io); the previous checkpoint stays in force.
    fn checkpoint(&mut self, since: flume_core::Seq) -> Result<(), BoxError> {
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

/// Where a typed map ([`Index::keyed`]) sends the operations of one record, with keys
/// of the index's type `K` or their borrowed forms ([`AsKey`]).
///
/// | call | effect |
/// |---|---|
/// | [`put(key)`](KeyEmit::put) | `key` points at this record (too) |
/// | [`delete(key)`](KeyEmit::delete) | `key` no longer points at any earlier record |
/// | [`remove(key, seq)`](KeyEmit::remove) | `key` no longer points at the record at `seq` (one entry) |
pub struct KeyEmit<'a, K> {
    emit: Emit<'a>,
    scratch: &'a mut Vec<u8>,
    key: PhantomData<fn(K)>,
}

impl<K> fmt::Debug for KeyEmit<'_, K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyEmit")
            .field("seq", &self.emit.seq())
            .finish()
    }
}

impl<'a, K: Key> KeyEmit<'a, K> {
    fn new(emit: Emit<'a>, scratch: &'a mut Vec<u8>) -> Self {
        KeyEmit {
            emit,
            scratch,
            key: PhantomData,
        }
    }

    /// Encodes `key` into the scratch buffer.
    fn encode(&mut self, key: &impl AsKey<K>) {
        self.scratch.clear();
        key.encode_key(self.scratch);
    }

    /// The seq of the record being mapped.
    pub fn seq(&self) -> Seq {
        self.emit.seq()
    }

    /// Makes `key` point at this record, as well as at any earlier record it points at.
    pub fn put(&mut self, key: impl AsKey<K>) {
        self.encode(&key);
        self.emit.put(&*self.scratch);
    }

    /// Removes every put of `key` by an earlier record. Puts by this record and later
    /// ones count.
    pub fn delete(&mut self, key: impl AsKey<K>) {
        self.encode(&key);
        self.emit.delete(&*self.scratch);
    }

    /// Removes exactly one entry: the put of `key` by the record at `seq` (this record
    /// or an earlier one; a higher `seq` is ignored). Other puts of the key stay. What
    /// a "delete post" record does to its post's entry:
    ///
    /// ```
    /// use flumeview_index::Index;
    ///
    /// #[derive(Debug)]
    /// enum Rec { Post { author: String }, Delete { author: String, post: u64 } }
    ///
    /// let by_author: Index<Rec, (String, u64)> = Index::keyed(1, |seq, rec, e| match rec {
    ///     Rec::Post { author } => e.put((author, seq)),
    ///     Rec::Delete { author, post } => e.remove((author, *post), *post),
    /// });
    /// ```
    pub fn remove(&mut self, key: impl AsKey<K>, seq: Seq) {
        self.encode(&key);
        self.emit.remove(&*self.scratch, seq);
    }

    /// The same record's operations on byte keys (for keys built by hand; they must be
    /// encodings of `K` for reads to decode them).
    pub fn bytes(&mut self) -> &mut Emit<'a> {
        &mut self.emit
    }
}
