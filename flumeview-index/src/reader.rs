//! `IndexReader`: the read handle of an [`Index`](crate::Index), and its scans.

use std::fmt;
use std::ops::{Bound, RangeBounds};
use std::sync::Arc;

use flume_core::{Error, Live, LogReader, Result, Seq, Wait, Waiter};
use futures::stream::{BoxStream, StreamExt};

use flume_lsm::damaged_as_view as damaged;
use flume_lsm::key::prefix_end;
use flume_lsm::{Query, Store};

/// One answer of a scan: a key and the seq of a record it points at.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Hit {
    /// The key, as the map emitted it.
    pub key: Vec<u8>,
    /// The seq of a record the key points at.
    pub seq: Seq,
}

/// Reads an [`Index`](crate::Index). Cheap to clone; every clone reads the same index.
///
/// Every read takes a [`Wait`] policy: [`Wait::Log`] (after an `append` has returned, the
/// answer reflects that record), [`Wait::AtLeast`] or [`Wait::NoWait`]. A read never sees
/// half of a batch of records.
///
/// A key may point at several records: each put adds one, a delete removes those of
/// earlier records. [`get`](IndexReader::get) answers with the newest,
/// [`seqs`](IndexReader::seqs) with all of them.
pub struct IndexReader<T> {
    store: Arc<Store>,
    waiter: Waiter,
    log: LogReader<T>,
}

impl<T> Clone for IndexReader<T> {
    fn clone(&self) -> Self {
        IndexReader {
            store: Arc::clone(&self.store),
            waiter: self.waiter.clone(),
            log: self.log.clone(),
        }
    }
}

impl<T> fmt::Debug for IndexReader<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IndexReader")
            .field("view", &self.waiter.name())
            .field("since", &self.store.since())
            .finish_non_exhaustive()
    }
}

impl<T: Send + Sync + 'static> IndexReader<T> {
    pub(crate) fn new(store: Arc<Store>, waiter: Waiter, log: LogReader<T>) -> Self {
        IndexReader { store, waiter, log }
    }

    /// The newest record `key` points at, with its seq, or `None`.
    ///
    /// # Errors
    /// [`Error::Closed`], [`Error::ViewFailed`] (also while waiting);
    /// [`Error::ViewDamaged`] when a run file is still damaged after the index was
    /// rebuilt (a read that finds a damaged run has the index rebuilt from the log and
    /// waits for it); the log's errors reading the record.
    ///
    /// # Cancel safety
    /// Dropping the future stops the read; nothing else happens.
    pub async fn get(&self, key: impl AsRef<[u8]>, wait: Wait) -> Result<Option<(Seq, T)>> {
        match self.get_seq(key, wait).await? {
            Some(seq) => Ok(Some((seq, self.log.get(seq).await?))),
            None => Ok(None),
        }
    }

    /// The seq of the newest record `key` points at, without reading the record.
    ///
    /// # Errors
    /// As [`IndexReader::get`], without the log's.
    ///
    /// # Cancel safety
    /// Dropping the future stops the read; nothing else happens.
    pub async fn get_seq(&self, key: impl AsRef<[u8]>, wait: Wait) -> Result<Option<Seq>> {
        let key = key.as_ref();
        self.waiter
            .try_read(wait, || damaged(self.store.latest(key)))
            .await
    }

    /// The seqs of every record `key` points at, in log order.
    ///
    /// # Errors
    /// As [`IndexReader::get_seq`].
    ///
    /// # Cancel safety
    /// Dropping the future stops the read; nothing else happens.
    pub async fn seqs(&self, key: impl AsRef<[u8]>, wait: Wait) -> Result<Vec<Seq>> {
        let key = key.as_ref();
        self.waiter
            .try_read(wait, || damaged(self.store.seqs(key)))
            .await
    }

    /// A scan of the keys in `range`, in key order. Finish it with
    /// [`hits`](Scan::hits), [`values`](Scan::values) or [`live`](Scan::live).
    ///
    /// ```
    /// # async fn demo(idx: flumeview_index::IndexReader<String>) -> flume_core::Result<()> {
    /// use flume_core::Wait;
    /// use flumeview_index::key;
    /// let page = idx.range(key::u64(10)..key::u64(20)).limit(5).hits(Wait::Log).await?;
    /// # Ok(()) }
    /// ```
    pub fn range<K: AsRef<[u8]>>(&self, range: impl RangeBounds<K>) -> Scan<T> {
        let owned = |b: Bound<&K>| match b {
            Bound::Included(k) => Bound::Included(k.as_ref().to_vec()),
            Bound::Excluded(k) => Bound::Excluded(k.as_ref().to_vec()),
            Bound::Unbounded => Bound::Unbounded,
        };
        Scan::new(
            self.clone(),
            owned(range.start_bound()),
            owned(range.end_bound()),
        )
    }

    /// A scan of the keys that start with `prefix`, in key order.
    ///
    /// ```
    /// # async fn demo(idx: flumeview_index::IndexReader<String>) -> flume_core::Result<()> {
    /// use flume_core::Wait;
    /// use flumeview_index::key;
    /// // The newest 10 posts of an author, indexed by (author, sequence).
    /// let latest = idx
    ///     .prefix(key::tuple(("@alice",)))
    ///     .reverse()
    ///     .limit(10)
    ///     .values(Wait::Log)
    ///     .await?;
    /// # Ok(()) }
    /// ```
    pub fn prefix(&self, prefix: impl AsRef<[u8]>) -> Scan<T> {
        let prefix = prefix.as_ref();
        let hi = prefix_end(prefix).map_or(Bound::Unbounded, Bound::Excluded);
        Scan::new(self.clone(), Bound::Included(prefix.to_vec()), hi)
    }

    /// A scan of every key.
    pub fn all(&self) -> Scan<T> {
        Scan::new(self.clone(), Bound::Unbounded, Bound::Unbounded)
    }

    /// The seq of the last record the index reflects (`None`: none yet).
    pub fn since(&self) -> Option<Seq> {
        self.store.since()
    }
}

/// A scan of an index in key order, built by [`IndexReader::range`],
/// [`IndexReader::prefix`] or [`IndexReader::all`].
///
/// Forward scans return hits in `(key, seq)` order; reverse scans in the opposite order.
pub struct Scan<T> {
    reader: IndexReader<T>,
    lo: Bound<Vec<u8>>,
    hi: Bound<Vec<u8>>,
    reverse: bool,
    limit: Option<usize>,
}

impl<T> fmt::Debug for Scan<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Scan")
            .field("lo", &self.lo)
            .field("hi", &self.hi)
            .field("reverse", &self.reverse)
            .field("limit", &self.limit)
            .finish_non_exhaustive()
    }
}

impl<T: Send + Sync + 'static> Scan<T> {
    fn new(reader: IndexReader<T>, lo: Bound<Vec<u8>>, hi: Bound<Vec<u8>>) -> Self {
        Scan {
            reader,
            lo,
            hi,
            reverse: false,
            limit: None,
        }
    }

    /// Largest keys first (and, within a key, newest records first). Default: smallest
    /// first.
    #[must_use]
    pub fn reverse(mut self) -> Self {
        self.reverse = true;
        self
    }

    /// At most `n` hits. Default: no limit.
    #[must_use]
    pub fn limit(mut self, n: usize) -> Self {
        self.limit = Some(n);
        self
    }

    fn query(&self, after: Option<Seq>) -> Result<(Vec<Hit>, Option<Seq>)> {
        let q = Query {
            reverse: self.reverse,
            limit: self.limit,
            after,
            point: None,
            cursor: None,
        };
        let (pairs, since) = self.reader.store.scan(&self.lo, &self.hi, q)?;
        let hits = pairs
            .into_iter()
            .map(|(key, seq)| Hit {
                key: key.into_vec(),
                seq,
            })
            .collect();
        Ok((hits, since))
    }

    /// The hits: every (key, seq) pair in the scan.
    ///
    /// # Errors
    /// [`Error::Closed`], [`Error::ViewFailed`] (also while waiting);
    /// [`Error::ViewDamaged`] as for [`IndexReader::get`].
    ///
    /// # Cancel safety
    /// Dropping the future stops the scan; nothing else happens.
    pub async fn hits(self, wait: Wait) -> Result<Vec<Hit>> {
        let waiter = &self.reader.waiter;
        let (hits, _) = waiter.try_read(wait, || damaged(self.query(None))).await?;
        Ok(hits)
    }

    /// The hits with the records they point at, read from the log.
    ///
    /// # Errors
    /// As [`Scan::hits`], and the log's errors reading the records.
    ///
    /// # Cancel safety
    /// Dropping the future stops the scan; nothing else happens.
    pub async fn values(self, wait: Wait) -> Result<Vec<(Hit, T)>> {
        let log = self.reader.log.clone();
        let hits = self.hits(wait).await?;
        let mut out = Vec::with_capacity(hits.len());
        for hit in hits {
            let value = log.get(hit.seq).await?;
            out.push((hit, value));
        }
        Ok(out)
    }

    /// The hits as a stream that stays open: first the hits the scan finds now (after
    /// waiting as `wait` says), in key order, then every new hit as records are indexed,
    /// in the order they are indexed. The limit counts both; a live scan cannot be
    /// reversed.
    ///
    /// The stream's starting point is when `live` is called: [`Wait::Log`] waits for the
    /// log as it was then, not at the first poll; and no level answers from the state
    /// the index holds before it has loaded its persisted files.
    ///
    /// A new hit is a put of a key in the scan's range by a record above what the stream
    /// has seen, that no later record had deleted when the index was looked at. While
    /// the index rebuilds (after a version change or `Flume::rebuild`), the stream waits
    /// until the rebuild passes the records it has already reported.
    ///
    /// The stream ends when the database closes, and with an error item when the view
    /// fails or a read fails.
    ///
    /// [`Scan::follow`] is the same stream with a marker once it has caught up.
    pub fn live(self, wait: Wait) -> BoxStream<'static, Result<Hit>> {
        Box::pin(
            self.follow(wait)
                .filter_map(|item| std::future::ready(item.map(Live::item).transpose())),
        )
    }

    /// [`Scan::live`] with one [`Live::Synced`] once the stream has yielded every hit of
    /// the records the log held when `follow` was called (or of every record the log
    /// holds, if a revert has since removed some): a UI can show "loading" until then.
    /// With [`Wait::NoWait`], the first hits come from whatever the index has loaded and
    /// applied, and the marker still comes only once the history is complete.
    ///
    /// ```
    /// # async fn demo(idx: flumeview_index::IndexReader<String>) -> flume_core::Result<()> {
    /// use flume_core::{Live, Wait};
    /// use futures::StreamExt;
    /// let mut feed = idx.all().follow(Wait::NoWait);
    /// while let Some(item) = feed.next().await {
    ///     match item? {
    ///         Live::Item(hit) => println!("{:?} -> {}", hit.key, hit.seq),
    ///         Live::Synced => println!("up to date; now following new records"),
    ///     }
    /// }
    /// # Ok(()) }
    /// ```
    pub fn follow(self, wait: Wait) -> BoxStream<'static, Result<Live<Hit>>> {
        let waiter = self.reader.waiter.clone();
        // The starting point is now: the wait's target, the watch, and the log's tail
        // that the marker waits for.
        let wait = waiter.capture(wait);
        let mut since_watch = waiter.since_watch();
        let target = waiter.log_since();
        Box::pin(async_stream::stream! {
            if self.reverse {
                yield Err(Error::InvalidArgument("a live scan cannot be reversed".into()));
                return;
            }
            // Caught up once the hits of every record up to the target (or up to the
            // log's current tail, after a revert) have been yielded.
            let caught_up = |seen: Option<Seq>| seen >= target || seen >= waiter.log_since();
            let mut remaining = self.limit.unwrap_or(usize::MAX);
            let (hits, mut seen) = match waiter.try_read(wait, || damaged(self.query(None))).await {
                Ok(found) => found,
                Err(Error::Closed) => return,
                Err(e) => {
                    yield Err(e);
                    return;
                }
            };
            for hit in hits {
                if remaining == 0 {
                    return;
                }
                remaining -= 1;
                yield Ok(Live::Item(hit));
            }
            let mut synced = caught_up(seen);
            if synced {
                yield Ok(Live::Synced);
            }
            let stopped = waiter.stopped();
            tokio::pin!(stopped);
            let mut closing = false;
            while remaining > 0 {
                if self.reader.store.since() > seen {
                    let (mut hits, since) = match self.query(seen) {
                        Ok(found) => found,
                        Err(e) => {
                            yield Err(e);
                            return;
                        }
                    };
                    // In the order they were indexed.
                    hits.sort_by_key(|h| h.seq);
                    for hit in hits {
                        if remaining == 0 {
                            return;
                        }
                        remaining -= 1;
                        yield Ok(Live::Item(hit));
                    }
                    if remaining == 0 {
                        // The limit is reached: end now, not at the next change.
                        return;
                    }
                    seen = seen.max(since);
                }
                if !synced && caught_up(seen) {
                    synced = true;
                    yield Ok(Live::Synced);
                }
                if closing {
                    return;
                }
                tokio::select! {
                    changed = since_watch.changed() => {
                        if changed.is_err() {
                            return;
                        }
                    }
                    end = &mut stopped => match end {
                        // One more look for what was indexed before the close.
                        Error::Closed => closing = true,
                        e => {
                            yield Err(e);
                            return;
                        }
                    },
                }
            }
        })
    }
}
