//! Writing through a KV view: compare-and-set appends ([`KvReader::append_if_version`]),
//! a record type whose records are KV operations ([`KvOp`]) and a small store over it
//! ([`KvStore`]).
//!
//! The loop, why it is linearizable and what it costs are documented on
//! [`KvReader::append_if_version`], where users read them.

use serde::{Deserialize, Serialize};

use flume_core::{Error, Flume, Result, Seq, Wait};

use crate::{Key, Kv, KvEmit, KvReader, Versioned};

/// What a compare-and-set expects of a key's version before it writes.
///
/// The version of a key is the seq of the record that last wrote it (a put or a delete);
/// a key that was never written, or whose last operation is a delete, is absent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Expect {
    /// The key holds no value: never written, or deleted last. For "create".
    Absent,
    /// The key holds the value written by the record at this seq (a version read earlier
    /// with [`KvReader::get`] or [`KvReader::version`]).
    Version(Seq),
    /// Anything: the write is unconditional.
    Any,
}

impl Expect {
    /// `Expect::Version(v)` for `Some(v)`, `Expect::Absent` for `None`: what to expect of a
    /// key after reading its version.
    pub fn from_version(version: Option<Seq>) -> Self {
        match version {
            Some(seq) => Expect::Version(seq),
            None => Expect::Absent,
        }
    }

    /// Whether a key whose current version is `current` meets the expectation.
    pub fn matches(self, current: Option<Seq>) -> bool {
        match self {
            Expect::Absent => current.is_none(),
            Expect::Version(seq) => current == Some(seq),
            Expect::Any => true,
        }
    }
}

/// The outcome of a compare-and-set: written, or not because the key had moved on.
#[must_use = "a compare-and-set may not have written anything: check for Cas::Conflict"]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Cas {
    /// The record was appended at this seq, which is the key's new version.
    Written(Seq),
    /// Nothing was appended: the key's version did not match. `current` is its version
    /// when the check was made (`None`: absent), the seq of the record that won.
    Conflict {
        /// The key's version at the check (`None`: the key held no value).
        current: Option<Seq>,
    },
}

impl Cas {
    /// The seq written, or `None` for a conflict.
    pub fn written(self) -> Option<Seq> {
        match self {
            Cas::Written(seq) => Some(seq),
            Cas::Conflict { .. } => None,
        }
    }

    /// Whether the record was appended.
    pub fn is_written(self) -> bool {
        matches!(self, Cas::Written(_))
    }
}

impl<T, K, V> KvReader<T, K, V>
where
    T: Send + Sync + 'static,
    K: Key,
    V: Send + Sync + 'static,
{
    /// Appends `record` to `db` only if `key`'s version meets `expected`, as one
    /// linearizable compare-and-set; returns [`Cas::Written`] with the record's seq, or
    /// [`Cas::Conflict`] with the key's current version (and nothing appended).
    ///
    /// `db` must be the database this view belongs to. The record may touch any keys (the
    /// view's map decides); only `key` is checked. [`Expect::Any`] appends unconditionally.
    ///
    /// ```
    /// use flume_core::Flume;
    /// use flumelog_memory::MemoryLog;
    /// use flumeview_kv::{Cas, Expect, Kv};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> flume_core::Result<()> {
    /// // Records are (name, balance) pairs; the view keeps the newest balance per name.
    /// let db = Flume::<(String, u64)>::new(MemoryLog::new());
    /// let balances = db.add_view(
    ///     "balances",
    ///     Kv::new(1, |(name, balance): &(String, u64), kv| kv.put(name.clone(), *balance)),
    /// )?;
    /// let alice = "alice".to_string();
    /// let open = (alice.clone(), 10);
    /// let first = balances.append_if_version(&db, &alice, Expect::Absent, &open).await?;
    /// assert_eq!(first, Cas::Written(0));
    /// // A second "create" loses: the key is no longer absent.
    /// let again = balances.append_if_version(&db, &alice, Expect::Absent, &open).await?;
    /// assert_eq!(again, Cas::Conflict { current: Some(0) });
    /// # db.close().await }
    /// ```
    ///
    /// # How it works
    ///
    /// The log is the only thing writers share, and the one atomic step it offers is the
    /// conditional append: "append this record only if the log still ends at seq `T`"
    /// ([`Flume::append_if`]). A compare-and-set on one key is built from it:
    ///
    /// 1. take the log's tail `T` as this handle knows it;
    /// 2. wait until the view has applied the log up to `T`, and read the key's version;
    /// 3. if the version is not the expected one, answer [`Cas::Conflict`] with it;
    /// 4. otherwise append the record only if the log still ends at `T`;
    /// 5. if the log moved on meanwhile (to `T'`), go back to step 2 with `T'`: the records
    ///    between `T` and `T'` may or may not have touched the key, and only the view can tell.
    ///
    /// **Why it is linearizable.** A conditional append that succeeds is placed right after
    /// record `T`, so the state it was judged against (the view's state at `T`, read in step
    /// 2) is exactly the state of the log just before it: nothing can come in between. Two
    /// writers that both expect version `v` of a key and both read the log at `T` cannot
    /// both win, because only one record can follow `T`; the loser re-reads at the new tail,
    /// sees the winner's version and reports it. A conflict is answered only from a view state
    /// that the log actually held (at some tail the writer waited for), so the version it
    /// carries is one that really won. If the view has already applied records beyond `T`
    /// when step 2 reads it, the log also ends beyond `T`, the append in step 4 fails and the
    /// loop goes round once more: a decision is never made on a state the append is not
    /// placed after.
    ///
    /// # Cost under contention
    ///
    /// The condition is on the tail of the whole log, not on the key: any append (to any key,
    /// by any writer) between steps 1 and 4 makes the attempt go round again. Each round costs
    /// a conditional append that fails (a lock on the file log, a round trip to the stream
    /// leader on NATS) and a wait for the view to apply what was appended meanwhile. With `n`
    /// writers appending as fast as they can, only one of them wins each tail, so the log
    /// still moves forward by one record per round, but the work done is up to `n` attempts
    /// per written record. That is fine for the usual document-store load (writes spread in
    /// time, conflicts rare), and it is what the lost-update tests measure.
    ///
    /// What would scale it further:
    ///
    /// - **Per-key conditions.** NATS JetStream can check the last sequence of one subject
    ///   (`Nats-Expected-Last-Subject-Sequence`): with one subject per key (or per key hash
    ///   bucket), writes to different keys would never conflict and the view would not need
    ///   to catch up before each attempt. That needs a log whose records carry a subject, a
    ///   change of the `Log` contract, not of this helper.
    /// - **One writer per process.** Within one process the attempts could queue on a lock
    ///   instead of racing on the tail (conflicts would then only come from other
    ///   processes), or be batched: several compare-and-sets judged against one tail and
    ///   appended as one conditional batch ([`Flume::append_batch_if`]).
    ///
    /// # Errors
    /// The errors of the view's reads and of [`Flume::append_batch_if`] other than
    /// [`Error::Conflict`], which only makes the loop go round again at the tail it names.
    ///
    /// # Cancel safety
    /// If the future is dropped the record may or may not be appended (at most once).
    pub async fn append_if_version(
        &self,
        db: &Flume<T>,
        key: &K,
        expected: Expect,
        record: &T,
    ) -> Result<Cas> {
        self.append_batch_if_version(db, key, expected, std::slice::from_ref(record))
            .await
    }

    /// [`KvReader::append_if_version`] for several records, appended all or nothing with
    /// consecutive seqs; [`Cas::Written`] carries the first one's seq.
    ///
    /// # Errors
    /// As [`KvReader::append_if_version`]; [`Error::InvalidArgument`] for no records.
    ///
    /// # Cancel safety
    /// If the future is dropped the records may or may not be appended (as a whole).
    pub async fn append_batch_if_version(
        &self,
        db: &Flume<T>,
        key: &K,
        expected: Expect,
        records: &[T],
    ) -> Result<Cas> {
        if records.is_empty() {
            return Err(Error::InvalidArgument(
                "a compare-and-set needs at least one record".into(),
            ));
        }
        if expected == Expect::Any {
            return Ok(Cas::Written(db.append_batch(records).await?.start));
        }
        let mut tail = db.since();
        loop {
            // The view at (or beyond) the tail the append will be conditioned on.
            let wait = match tail {
                Some(seq) => Wait::AtLeast(seq),
                None => Wait::NoWait,
            };
            let current = self.version(key, wait).await?;
            if !expected.matches(current) {
                return Ok(Cas::Conflict { current });
            }
            match db.append_batch_if(records, tail).await {
                Ok(range) => return Ok(Cas::Written(range.start)),
                // The log ends at `actual` now: judge again at that tail. (Every backend
                // reports a tail other than the expected one; one that did not would
                // make this loop spin, so that conflict is passed on instead.)
                Err(Error::Conflict { actual, .. }) if actual != tail => {
                    tracing::trace!(?tail, ?actual, "compare-and-set: the log moved, again");
                    tail = actual;
                }
                Err(e) => return Err(e),
            }
        }
    }
}

/// A record that is one KV operation, for applications whose log holds nothing else (a
/// key-value store, a replicated state machine's map). [`Kv::ops`] is its view and
/// [`KvStore`] writes it.
///
/// In the log (as JSON, the default codec): `{"Put":{"key":…,"value":…}}` or
/// `{"Delete":{"key":…}}`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum KvOp<K, V> {
    /// Set `key` to `value`.
    Put {
        /// The key.
        key: K,
        /// Its new value.
        value: V,
    },
    /// Remove `key`.
    Delete {
        /// The key.
        key: K,
    },
}

impl<K, V> KvOp<K, V> {
    /// The key the operation writes.
    pub fn key(&self) -> &K {
        match self {
            KvOp::Put { key, .. } | KvOp::Delete { key } => key,
        }
    }

    /// The map of a view over `KvOp` records: a put puts, a delete deletes. What
    /// [`Kv::ops`] uses.
    pub fn map(&self, kv: &mut KvEmit<'_, K, V>)
    where
        K: Key + Clone,
        V: Clone,
    {
        match self {
            KvOp::Put { key, value } => kv.put_with(key.clone(), || value.clone()),
            KvOp::Delete { key } => kv.delete(key.clone()),
        }
    }
}

impl<K, V> Kv<KvOp<K, V>, K, V>
where
    K: Key + Clone,
    V: Clone + Send + Sync + 'static,
{
    /// The view of a log of [`KvOp`] records, at map version `version`:
    /// `Kv::new(version, KvOp::map)`.
    pub fn ops(version: u32) -> Self {
        Kv::new(version, |op: &KvOp<K, V>, kv: &mut KvEmit<'_, K, V>| {
            op.map(kv)
        })
    }
}

/// A key-value store: a database whose records are [`KvOp`]s and the [`Kv::ops`] view of
/// it, with puts, deletes and their compare-and-set forms. Cheap to clone.
///
/// It is a thin layer: [`KvStore::db`] and [`KvStore::reader`] give the database (to add
/// other views, close it) and the view's reader (for scans, history, as-of reads).
///
/// ```
/// use flume_core::{Flume, Wait};
/// use flumelog_memory::MemoryLog;
/// use flumeview_kv::{Cas, Expect, Kv, KvStore};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> flume_core::Result<()> {
/// let store = KvStore::<String, u64>::new(Flume::new(MemoryLog::new()), "kv", Kv::ops(1))?;
/// let v1 = store.put("apples".into(), 3).await?;
/// let read = store.get(&"apples".into(), Wait::Log).await?.expect("just put");
/// assert_eq!((read.value, read.version), (3, v1));
///
/// // Compare-and-set against the version read: the first writer wins…
/// let won = store.put_if("apples".into(), 4, Expect::Version(v1)).await?;
/// assert!(won.is_written());
/// // …a second writer that read the same version is told who won.
/// let lost = store.put_if("apples".into(), 5, Expect::Version(v1)).await?;
/// assert_eq!(lost, Cas::Conflict { current: won.written() });
/// # store.db().close().await }
/// ```
pub struct KvStore<K, V>
where
    K: Key,
    V: Send + Sync + 'static,
{
    db: Flume<KvOp<K, V>>,
    reader: KvReader<KvOp<K, V>, K, V>,
}

impl<K, V> Clone for KvStore<K, V>
where
    K: Key,
    V: Send + Sync + 'static,
{
    fn clone(&self) -> Self {
        KvStore {
            db: self.db.clone(),
            reader: self.reader.clone(),
        }
    }
}

impl<K, V> std::fmt::Debug for KvStore<K, V>
where
    K: Key,
    V: Send + Sync + 'static,
{
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KvStore").field("db", &self.db).finish()
    }
}

impl<K, V> KvStore<K, V>
where
    K: Key + Clone + Serialize + for<'de> Deserialize<'de>,
    V: Clone + Send + Sync + 'static + Serialize + for<'de> Deserialize<'de>,
{
    /// Adds `view` (usually [`Kv::ops`], persisted or not) to `db` under `name` and
    /// returns the store writing through it.
    ///
    /// # Errors
    /// As [`Flume::add_view`].
    pub fn new(db: Flume<KvOp<K, V>>, name: &str, view: Kv<KvOp<K, V>, K, V>) -> Result<Self> {
        let reader = db.add_view(name, view)?;
        Ok(KvStore { db, reader })
    }

    /// A store over a database and the reader of a view of it already added.
    pub fn from_parts(db: Flume<KvOp<K, V>>, reader: KvReader<KvOp<K, V>, K, V>) -> Self {
        KvStore { db, reader }
    }

    /// The database.
    pub fn db(&self) -> &Flume<KvOp<K, V>> {
        &self.db
    }

    /// The view's reader, for every read the store does not wrap.
    pub fn reader(&self) -> &KvReader<KvOp<K, V>, K, V> {
        &self.reader
    }

    /// Sets `key` to `value`, unconditionally; returns the new version.
    ///
    /// # Errors
    /// As [`Flume::append`].
    ///
    /// # Cancel safety
    /// If the future is dropped the write may or may not happen.
    pub async fn put(&self, key: K, value: V) -> Result<Seq> {
        self.db.append(&KvOp::Put { key, value }).await
    }

    /// Removes `key`, unconditionally; returns the seq of the delete.
    ///
    /// # Errors
    /// As [`Flume::append`].
    ///
    /// # Cancel safety
    /// If the future is dropped the write may or may not happen.
    pub async fn delete(&self, key: K) -> Result<Seq> {
        self.db.append(&KvOp::Delete { key }).await
    }

    /// Sets `key` to `value` only if its version meets `expected`.
    ///
    /// # Errors
    /// As [`KvReader::append_if_version`].
    ///
    /// # Cancel safety
    /// If the future is dropped the write may or may not happen (at most once).
    pub async fn put_if(&self, key: K, value: V, expected: Expect) -> Result<Cas> {
        let op = KvOp::Put { key, value };
        self.reader
            .append_if_version(&self.db, op.key(), expected, &op)
            .await
    }

    /// Removes `key` only if its version meets `expected`.
    ///
    /// # Errors
    /// As [`KvReader::append_if_version`].
    ///
    /// # Cancel safety
    /// If the future is dropped the write may or may not happen (at most once).
    pub async fn delete_if(&self, key: K, expected: Expect) -> Result<Cas> {
        let op = KvOp::Delete { key };
        self.reader
            .append_if_version(&self.db, op.key(), expected, &op)
            .await
    }

    /// The value of `key` and its version; `None` when absent.
    ///
    /// # Errors
    /// As [`KvReader::get`].
    pub async fn get(&self, key: &K, wait: Wait) -> Result<Option<Versioned<V>>> {
        self.reader.get(key, wait).await
    }
}
