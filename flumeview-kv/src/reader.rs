//! `KvReader`: the read handle of a [`Kv`](crate::Kv), and its scans.

use std::fmt;
use std::ops::{Bound, RangeBounds};
use std::sync::Arc;

use flume_core::{Error, LogReader, Result, Seq, Wait, Waiter};
use flume_lsm::damaged_as_view as damaged;
use flume_lsm::key::prefix_end;
use flume_lsm::{Kind, Query, Store};
use futures::stream::{self, StreamExt, TryStreamExt};

use crate::emit::KvEmit;
use crate::kv::MapFn;
use crate::{History, Key, Op, Versioned};

/// How many records a read of several values reads from the log at once (in order): a
/// log on a server answers them in one round trip's time instead of one each.
const READ_AHEAD: usize = 16;

/// Reads a [`Kv`](crate::Kv). Cheap to clone; every clone reads the same view.
///
/// Every read takes a [`Wait`] policy: [`Wait::Log`] (after an `append` has returned, the
/// answer reflects that record), [`Wait::AtLeast`] or [`Wait::NoWait`]. A read never sees
/// half of a batch of records.
///
/// | read | answers | reads records from the log |
/// |---|---|---|
/// | [`get`](KvReader::get) | the value and its version | one |
/// | [`version`](KvReader::version), [`contains`](KvReader::contains) | the version / whether the key is set | none |
/// | [`history`](KvReader::history) | every kept version, newest first, deletes included | one per put |
/// | [`get_at`](KvReader::get_at) | the value as of a past seq | one |
/// | [`range`](KvReader::range), [`prefix`](KvReader::prefix), [`all`](KvReader::all) | a [`KvScan`] of live keys | one per key, for [`entries`](KvScan::entries) |
///
/// Reads of several values (`history`, `entries`) read up to 16 records from the log at
/// a time, so that a log on a server (`flumelog-nats`) answers in round trips of 16.
pub struct KvReader<T, K, V> {
    store: Arc<Store>,
    waiter: Waiter,
    log: LogReader<T>,
    map: Arc<MapFn<T, K, V>>,
    history: History,
}

impl<T, K, V> Clone for KvReader<T, K, V> {
    fn clone(&self) -> Self {
        KvReader {
            store: Arc::clone(&self.store),
            waiter: self.waiter.clone(),
            log: self.log.clone(),
            map: Arc::clone(&self.map),
            history: self.history,
        }
    }
}

impl<T, K, V> fmt::Debug for KvReader<T, K, V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KvReader")
            .field("view", &self.waiter.name())
            .field("since", &self.store.since())
            .field("history", &self.history)
            .finish_non_exhaustive()
    }
}

impl<T, K, V> KvReader<T, K, V>
where
    T: Send + Sync + 'static,
    K: Key,
    V: Send + Sync + 'static,
{
    pub(crate) fn new(
        store: Arc<Store>,
        waiter: Waiter,
        log: LogReader<T>,
        map: Arc<MapFn<T, K, V>>,
        history: History,
    ) -> Self {
        KvReader {
            store,
            waiter,
            log,
            map,
            history,
        }
    }

    /// The engine holding the view's entries.
    #[allow(dead_code)]
    pub(crate) fn store(&self) -> &Arc<Store> {
        &self.store
    }

    /// The view's waiter.
    #[allow(dead_code)]
    pub(crate) fn waiter(&self) -> &Waiter {
        &self.waiter
    }

    /// The log the values are read back from.
    #[allow(dead_code)]
    pub(crate) fn log(&self) -> &LogReader<T> {
        &self.log
    }

    /// The view's map (a read runs it again on a record to recover a value).
    #[allow(dead_code)]
    pub(crate) fn map(&self) -> &Arc<MapFn<T, K, V>> {
        &self.map
    }

    /// The view's history option.
    #[allow(dead_code)]
    pub(crate) fn history_option(&self) -> History {
        self.history
    }

    /// A key back from its encoding, as found in the entry of record `seq`.
    pub(crate) fn decode_key(bytes: &[u8], seq: Seq) -> Result<K> {
        K::decode(bytes).map_err(|e| Error::codec(Some(seq), e))
    }

    /// The final operation of record `seq` on the key encoded as `key_bytes`: the
    /// record read from the log and mapped again.
    ///
    /// # Errors
    /// The log's errors reading the record; [`Error::Codec`] when the map emits nothing
    /// for the key (it is not deterministic, or changed without a version bump).
    pub(crate) async fn value_at(&self, key_bytes: &[u8], seq: Seq) -> Result<Op<V>> {
        let record = self.log.get(seq).await?;
        let mut emit = KvEmit::find(seq, key_bytes);
        (self.map)(&record, &mut emit);
        emit.found().ok_or_else(|| {
            Error::codec(
                Some(seq),
                "the view's map emits no operation on this key for the record that wrote \
                 it: the map must be deterministic, and its view version bumped when it changes",
            )
        })
    }

    /// The value put by record `seq` on the key encoded as `key_bytes`.
    async fn put_value(&self, key_bytes: &[u8], seq: Seq) -> Result<V> {
        match self.value_at(key_bytes, seq).await? {
            Op::Put(value) => Ok(value),
            Op::Delete => Err(Error::codec(
                Some(seq),
                "the view's map deletes a key for the record that put it: the map must be \
                 deterministic, and its view version bumped when it changes",
            )),
        }
    }

    /// The key's entries the history option keeps, newest first.
    async fn entries(&self, key_bytes: &[u8], wait: Wait) -> Result<Vec<(Seq, Kind)>> {
        let mut entries = self
            .waiter
            .try_read(wait, || damaged(self.store.history(key_bytes)))
            .await?;
        self.history.filter(&mut entries, |e| e.0);
        Ok(entries)
    }

    /// The key's value and version (the seq of the record that wrote it), or `None`
    /// when the key is not set.
    ///
    /// ```
    /// # use flume_core::{Flume, Wait};
    /// # use flumelog_memory::MemoryLog;
    /// use flumeview_kv::{Kv, KvReader, Versioned};
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> flume_core::Result<()> {
    /// let db = Flume::<(String, u32)>::new(MemoryLog::new());
    /// let kv: KvReader<(String, u32), String, u32> =
    ///     db.add_view("kv", Kv::new(1, |(k, v): &(String, u32), e| e.put(k.clone(), *v)))?;
    /// let seq = db.append(&("a".into(), 7)).await?;
    /// assert_eq!(kv.get(&"a".into(), Wait::Log).await?, Some(Versioned { value: 7, version: seq }));
    /// assert_eq!(kv.get(&"b".into(), Wait::Log).await?, None);
    /// # db.close().await }
    /// ```
    ///
    /// # Errors
    /// [`Error::Closed`], [`Error::ViewFailed`] (also while waiting);
    /// [`Error::ViewDamaged`] when a run file is still damaged after the view was
    /// rebuilt; the log's errors reading the record.
    ///
    /// # Cancel safety
    /// Dropping the future stops the read; nothing else happens.
    pub async fn get(&self, key: &K, wait: Wait) -> Result<Option<Versioned<V>>> {
        let bytes = key.to_bytes();
        let Some(version) = self.version_of(&bytes, wait).await? else {
            return Ok(None);
        };
        let value = self.put_value(&bytes, version).await?;
        Ok(Some(Versioned { value, version }))
    }

    /// The key's version (the seq of the record that wrote its value), or `None` when
    /// the key is not set. Reads no record.
    ///
    /// ```
    /// # use flume_core::{Flume, Wait};
    /// # use flumelog_memory::MemoryLog;
    /// # use flumeview_kv::{Kv, KvReader};
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> flume_core::Result<()> {
    /// # let db = Flume::<(String, Option<u32>)>::new(MemoryLog::new());
    /// # let kv: KvReader<(String, Option<u32>), String, u32> = db.add_view("kv", Kv::new(1,
    /// #     |(k, v): &(String, Option<u32>), e| match v { Some(v) => e.put(k.clone(), *v), None => e.delete(k.clone()) }))?;
    /// let a = "a".to_string();
    /// let seq = db.append(&(a.clone(), Some(1))).await?;
    /// assert_eq!(kv.version(&a, Wait::Log).await?, Some(seq));
    /// db.append(&(a.clone(), None)).await?;
    /// assert_eq!(kv.version(&a, Wait::Log).await?, None);
    /// # db.close().await }
    /// ```
    ///
    /// # Errors
    /// As [`KvReader::get`], without the log's.
    ///
    /// # Cancel safety
    /// Dropping the future stops the read; nothing else happens.
    pub async fn version(&self, key: &K, wait: Wait) -> Result<Option<Seq>> {
        self.version_of(&key.to_bytes(), wait).await
    }

    async fn version_of(&self, key_bytes: &[u8], wait: Wait) -> Result<Option<Seq>> {
        self.waiter
            .try_read(wait, || damaged(self.store.latest(key_bytes)))
            .await
    }

    /// Whether the key is set. Reads no record.
    ///
    /// ```
    /// # use flume_core::{Flume, Wait};
    /// # use flumelog_memory::MemoryLog;
    /// # use flumeview_kv::{Kv, KvReader};
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> flume_core::Result<()> {
    /// # let db = Flume::<(String, Option<u32>)>::new(MemoryLog::new());
    /// # let kv: KvReader<(String, Option<u32>), String, u32> = db.add_view("kv", Kv::new(1,
    /// #     |(k, v): &(String, Option<u32>), e| match v { Some(v) => e.put(k.clone(), *v), None => e.delete(k.clone()) }))?;
    /// let a = "a".to_string();
    /// assert!(!kv.contains(&a, Wait::Log).await?);
    /// db.append(&(a.clone(), Some(1))).await?;
    /// assert!(kv.contains(&a, Wait::Log).await?);
    /// # db.close().await }
    /// ```
    ///
    /// # Errors
    /// As [`KvReader::version`].
    ///
    /// # Cancel safety
    /// Dropping the future stops the read; nothing else happens.
    pub async fn contains(&self, key: &K, wait: Wait) -> Result<bool> {
        Ok(self.version(key, wait).await?.is_some())
    }

    /// The key's versions, newest first, as (seq, operation): every put with its value
    /// and every delete, as far as the view's [`History`] keeps them
    /// ([`History::Latest`]: the newest only; [`History::Since(h)`](History::Since): those
    /// above `h` and the newest at or below `h`). Empty for a key never written.
    ///
    /// ```
    /// # use flume_core::{Flume, Wait};
    /// # use flumelog_memory::MemoryLog;
    /// # use flumeview_kv::{Kv, KvReader};
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> flume_core::Result<()> {
    /// # let db = Flume::<(String, Option<u32>)>::new(MemoryLog::new());
    /// # let kv: KvReader<(String, Option<u32>), String, u32> = db.add_view("kv", Kv::new(1,
    /// #     |(k, v): &(String, Option<u32>), e| match v { Some(v) => e.put(k.clone(), *v), None => e.delete(k.clone()) }))?;
    /// use flumeview_kv::Op;
    /// let a = "a".to_string();
    /// let s0 = db.append(&(a.clone(), Some(1))).await?;
    /// let s1 = db.append(&(a.clone(), None)).await?;
    /// let s2 = db.append(&(a.clone(), Some(2))).await?;
    /// assert_eq!(
    ///     kv.history(&a, Wait::Log).await?,
    ///     [(s2, Op::Put(2)), (s1, Op::Delete), (s0, Op::Put(1))]
    /// );
    /// # db.close().await }
    /// ```
    ///
    /// # Errors
    /// As [`KvReader::get`].
    ///
    /// # Cancel safety
    /// Dropping the future stops the read; nothing else happens.
    pub async fn history(&self, key: &K, wait: Wait) -> Result<Vec<(Seq, Op<V>)>> {
        let bytes = key.to_bytes();
        let entries = self.entries(&bytes, wait).await?;
        let bytes = &bytes;
        stream::iter(entries)
            .map(|(seq, kind)| async move {
                let op = match kind {
                    Kind::Put => Op::Put(self.put_value(bytes, seq).await?),
                    // A kv map emits no removes; a removed put leaves no value.
                    Kind::Delete | Kind::Remove => Op::Delete,
                };
                Ok((seq, op))
            })
            .buffered(READ_AHEAD)
            .try_collect()
            .await
    }

    /// The key's value as of `seq`: the value of the newest put at or below `seq`,
    /// unless a delete came after it (then `None`), with its version. `None` for a key
    /// not written at or below `seq`.
    ///
    /// The answer reflects what the view has applied (as `wait` says); a `seq` above it
    /// answers as of the view's current state.
    ///
    /// ```
    /// # use flume_core::{Flume, Wait};
    /// # use flumelog_memory::MemoryLog;
    /// # use flumeview_kv::{Kv, KvReader};
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> flume_core::Result<()> {
    /// # let db = Flume::<(String, Option<u32>)>::new(MemoryLog::new());
    /// # let kv: KvReader<(String, Option<u32>), String, u32> = db.add_view("kv", Kv::new(1,
    /// #     |(k, v): &(String, Option<u32>), e| match v { Some(v) => e.put(k.clone(), *v), None => e.delete(k.clone()) }))?;
    /// let a = "a".to_string();
    /// let s0 = db.append(&(a.clone(), Some(1))).await?;
    /// let s1 = db.append(&(a.clone(), Some(2))).await?;
    /// let s2 = db.append(&(a.clone(), None)).await?;
    /// let at = |seq| kv.get_at(&a, seq, Wait::Log);
    /// assert_eq!(at(s0).await?.map(|v| (v.value, v.version)), Some((1, s0)));
    /// assert_eq!(at(s1).await?.map(|v| (v.value, v.version)), Some((2, s1)));
    /// assert_eq!(at(s2).await?, None);
    /// # db.close().await }
    /// ```
    ///
    /// # Errors
    /// [`Error::HistoryTrimmed`] when `seq` is below what the view's [`History`] keeps:
    /// with [`History::Since(h)`](History::Since) when `seq < h` (the horizon is `h`);
    /// with [`History::Latest`] when `seq` is below the key's newest entry (the horizon is
    /// that entry's seq); never with [`History::All`]. Otherwise as [`KvReader::get`].
    ///
    /// # Cancel safety
    /// Dropping the future stops the read; nothing else happens.
    pub async fn get_at(&self, key: &K, seq: Seq, wait: Wait) -> Result<Option<Versioned<V>>> {
        if let History::Since(horizon) = self.history {
            if seq < horizon {
                return Err(Error::HistoryTrimmed { seq, horizon });
            }
        }
        let bytes = key.to_bytes();
        let entries = self.entries(&bytes, wait).await?;
        if let (History::Latest, Some(&(newest, _))) = (self.history, entries.first()) {
            if seq < newest {
                return Err(Error::HistoryTrimmed {
                    seq,
                    horizon: newest,
                });
            }
        }
        match entries.into_iter().find(|e| e.0 <= seq) {
            Some((version, Kind::Put)) => {
                let value = self.put_value(&bytes, version).await?;
                Ok(Some(Versioned { value, version }))
            }
            _ => Ok(None),
        }
    }

    /// A scan of the live keys in `range`, in key order. Finish it with
    /// [`keys`](KvScan::keys), [`entries`](KvScan::entries) or [`count`](KvScan::count).
    ///
    /// ```
    /// # async fn demo(kv: flumeview_kv::KvReader<String, u64, String>) -> flume_core::Result<()> {
    /// use flume_core::Wait;
    /// let page = kv.range(10..20).limit(5).entries(Wait::Log).await?;
    /// # Ok(()) }
    /// ```
    pub fn range(&self, range: impl RangeBounds<K>) -> KvScan<T, K, V> {
        let owned = |b: Bound<&K>| match b {
            Bound::Included(k) => Bound::Included(k.to_bytes()),
            Bound::Excluded(k) => Bound::Excluded(k.to_bytes()),
            Bound::Unbounded => Bound::Unbounded,
        };
        KvScan::new(
            self.clone(),
            owned(range.start_bound()),
            owned(range.end_bound()),
        )
    }

    /// A scan of the live keys whose encoding starts with `prefix`, in key order: the
    /// first parts of a tuple key encoded with [`key::tuple`](crate::key::tuple), or the
    /// first bytes of a string key.
    ///
    /// ```
    /// # async fn demo(kv: flumeview_kv::KvReader<String, (String, u64), String>) -> flume_core::Result<()> {
    /// use flume_core::Wait;
    /// use flumeview_kv::key;
    /// // Alice's 10 newest documents, keyed by (user, number).
    /// let latest = kv.prefix(key::tuple(("alice",))).reverse().limit(10).entries(Wait::Log).await?;
    /// # Ok(()) }
    /// ```
    pub fn prefix(&self, prefix: impl AsRef<[u8]>) -> KvScan<T, K, V> {
        let prefix = prefix.as_ref();
        let hi = prefix_end(prefix).map_or(Bound::Unbounded, Bound::Excluded);
        KvScan::new(self.clone(), Bound::Included(prefix.to_vec()), hi)
    }

    /// A scan of every live key.
    ///
    /// ```
    /// # use flume_core::{Flume, Wait};
    /// # use flumelog_memory::MemoryLog;
    /// # use flumeview_kv::{Kv, KvReader};
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> flume_core::Result<()> {
    /// # let db = Flume::<(String, Option<u32>)>::new(MemoryLog::new());
    /// # let kv: KvReader<(String, Option<u32>), String, u32> = db.add_view("kv", Kv::new(1,
    /// #     |(k, v): &(String, Option<u32>), e| match v { Some(v) => e.put(k.clone(), *v), None => e.delete(k.clone()) }))?;
    /// for (k, v) in [("b", 2), ("a", 1), ("c", 3)] {
    ///     db.append(&(k.to_string(), Some(v))).await?;
    /// }
    /// let keys = kv.all().keys(Wait::Log).await?;
    /// assert_eq!(keys, [("a".to_string(), 1), ("b".to_string(), 0), ("c".to_string(), 2)]);
    /// assert_eq!(kv.all().count(Wait::Log).await?, 3);
    /// # db.close().await }
    /// ```
    pub fn all(&self) -> KvScan<T, K, V> {
        KvScan::new(self.clone(), Bound::Unbounded, Bound::Unbounded)
    }

    /// The seq of the last record the view reflects (`None`: none yet).
    pub fn since(&self) -> Option<Seq> {
        self.store.since()
    }
}

/// A scan of a [`Kv`](crate::Kv)'s live keys in key order, built by
/// [`KvReader::range`], [`KvReader::prefix`] or [`KvReader::all`].
///
/// Each live key appears once, with its current version.
pub struct KvScan<T, K, V> {
    reader: KvReader<T, K, V>,
    lo: Bound<Vec<u8>>,
    hi: Bound<Vec<u8>>,
    reverse: bool,
    limit: Option<usize>,
}

impl<T, K, V> fmt::Debug for KvScan<T, K, V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KvScan")
            .field("lo", &self.lo)
            .field("hi", &self.hi)
            .field("reverse", &self.reverse)
            .field("limit", &self.limit)
            .finish_non_exhaustive()
    }
}

impl<T, K, V> KvScan<T, K, V>
where
    T: Send + Sync + 'static,
    K: Key,
    V: Send + Sync + 'static,
{
    fn new(reader: KvReader<T, K, V>, lo: Bound<Vec<u8>>, hi: Bound<Vec<u8>>) -> Self {
        KvScan {
            reader,
            lo,
            hi,
            reverse: false,
            limit: None,
        }
    }

    /// Largest keys first. Default: smallest first.
    #[must_use]
    pub fn reverse(mut self) -> Self {
        self.reverse = true;
        self
    }

    /// At most `n` keys. Default: no limit.
    #[must_use]
    pub fn limit(mut self, n: usize) -> Self {
        self.limit = Some(n);
        self
    }

    /// The live keys with their versions. Reads no record.
    ///
    /// # Errors
    /// [`Error::Closed`], [`Error::ViewFailed`] (also while waiting);
    /// [`Error::ViewDamaged`] as for [`KvReader::get`]; [`Error::Codec`] for a stored key
    /// that is not an encoding of `K`.
    ///
    /// # Cancel safety
    /// Dropping the future stops the scan; nothing else happens.
    pub async fn keys(self, wait: Wait) -> Result<Vec<(K, Seq)>> {
        let q = Query {
            reverse: self.reverse,
            limit: self.limit,
            ..Query::default()
        };
        let store = &self.reader.store;
        let (pairs, _) = self
            .reader
            .waiter
            .try_read(wait, || damaged(store.scan(&self.lo, &self.hi, q)))
            .await?;
        pairs
            .into_iter()
            .map(|(key, seq)| Ok((KvReader::<T, K, V>::decode_key(&key, seq)?, seq)))
            .collect()
    }

    /// The live keys with their values and versions, each value read back from the
    /// record that wrote it.
    ///
    /// ```
    /// # use flume_core::{Flume, Wait};
    /// # use flumelog_memory::MemoryLog;
    /// # use flumeview_kv::{Kv, KvReader};
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> flume_core::Result<()> {
    /// # let db = Flume::<(u64, String)>::new(MemoryLog::new());
    /// # let kv: KvReader<(u64, String), u64, String> =
    /// #     db.add_view("kv", Kv::new(1, |(k, v): &(u64, String), e| e.put(*k, v.clone())))?;
    /// for (id, name) in [(3, "c"), (1, "a"), (2, "b"), (1, "a2")] {
    ///     db.append(&(id, name.to_string())).await?;
    /// }
    /// let largest_two: Vec<(u64, String, u64)> = kv
    ///     .all()
    ///     .reverse()
    ///     .limit(2)
    ///     .entries(Wait::Log)
    ///     .await?
    ///     .into_iter()
    ///     .map(|(id, v)| (id, v.value, v.version))
    ///     .collect();
    /// assert_eq!(largest_two, [(3, "c".to_string(), 0), (2, "b".to_string(), 2)]);
    /// # db.close().await }
    /// ```
    ///
    /// # Errors
    /// As [`KvScan::keys`], and the log's errors reading the records.
    ///
    /// # Cancel safety
    /// Dropping the future stops the scan; nothing else happens.
    pub async fn entries(self, wait: Wait) -> Result<Vec<(K, Versioned<V>)>> {
        let reader = self.reader.clone();
        let keys = self.keys(wait).await?;
        let reader = &reader;
        stream::iter(keys)
            .map(|(key, version)| async move {
                let value = reader.put_value(&key.to_bytes(), version).await?;
                Ok((key, Versioned { value, version }))
            })
            .buffered(READ_AHEAD)
            .try_collect()
            .await
    }

    /// How many live keys the scan holds (at most its limit), counted by the engine
    /// without collecting or decoding them.
    ///
    /// # Errors
    /// As [`KvScan::keys`].
    ///
    /// # Cancel safety
    /// Dropping the future stops the count; nothing else happens.
    pub async fn count(self, wait: Wait) -> Result<usize> {
        let store = &self.reader.store;
        let (n, _) = self
            .reader
            .waiter
            .try_read(wait, || damaged(store.count(&self.lo, &self.hi)))
            .await?;
        Ok(self.limit.map_or(n, |limit| n.min(limit)))
    }
}
