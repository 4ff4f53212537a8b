//! `IndexReader`: the read handle of an [`Index`](crate::Index), and its scans.

use std::fmt;
use std::marker::PhantomData;
use std::ops::{Bound, RangeBounds};
use std::sync::Arc;

use flume_core::{Error, Live, LogReader, Result, Seq, Wait, Waiter};
use futures::stream::{BoxStream, StreamExt};

use flume_lsm::damaged_as_view as damaged;
use flume_lsm::key::prefix_end;
use flume_lsm::{AsKey, Key, KeyPrefix, Pair, Query, Store};

/// One answer of a scan: a key and the seq of a record it points at.
///
/// `K` is the index's key type: bytes (`Vec<u8>`, the default) for an index built with
/// [`Index::new`](crate::Index::new), the declared type for one built with
/// [`Index::keyed`](crate::Index::keyed).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Hit<K = Vec<u8>> {
    /// The key, as the map emitted it.
    pub key: K,
    /// The seq of a record the key points at.
    pub seq: Seq,
}

/// One page of a scan ([`Scan::page`]): its hits, and where the next page starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page<K = Vec<u8>> {
    /// The hits of this page, in the scan's order.
    pub hits: Vec<Hit<K>>,
    /// The last hit, when the page is full (more may follow): the next page is the same
    /// scan [`after`](Scan::after) it. `None`: this was the last page.
    pub next: Option<Hit<K>>,
}

/// Reads an [`Index`](crate::Index). Cheap to clone; every clone reads the same index.
///
/// Every read takes a [`Wait`] policy: [`Wait::Log`] (after an `append` has returned, the
/// answer reflects that record), [`Wait::AtLeast`] or [`Wait::NoWait`]. A read never sees
/// half of a batch of records.
///
/// A key may point at several records: each put adds one, a delete removes those of
/// earlier records, a remove the one of a given record. [`get`](IndexReader::get)
/// answers with the newest, [`seqs`](IndexReader::seqs) with all of them,
/// [`count`](IndexReader::count) with how many.
///
/// `K` is the key type the index declares ([`Index::keyed`](crate::Index::keyed)); reads
/// take it or a borrowed form of it ([`AsKey`]), prefix scans a typed prefix
/// ([`KeyPrefix`]), and hits return it. An index of byte keys (`K = Vec<u8>`, built by
/// [`Index::new`](crate::Index::new) or [`Index::raw`](crate::Index::raw)) takes
/// anything `AsRef<[u8]>`. [`bytes`](IndexReader::bytes) reads any index by bytes.
pub struct IndexReader<T, K = Vec<u8>> {
    store: Arc<Store>,
    waiter: Waiter,
    log: LogReader<T>,
    key: PhantomData<fn() -> K>,
}

impl<T, K> Clone for IndexReader<T, K> {
    fn clone(&self) -> Self {
        IndexReader {
            store: Arc::clone(&self.store),
            waiter: self.waiter.clone(),
            log: self.log.clone(),
            key: PhantomData,
        }
    }
}

impl<T, K> fmt::Debug for IndexReader<T, K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IndexReader")
            .field("view", &self.waiter.name())
            .field("key", &std::any::type_name::<K>())
            .field("since", &self.store.since())
            .finish_non_exhaustive()
    }
}

/// A key's bytes, decoded as `K` (a hit's key).
fn decode<K: Key>((key, seq): Pair) -> Result<Hit<K>> {
    match K::decode(&key) {
        Ok(key) => Ok(Hit { key, seq }),
        Err(source) => Err(Error::Codec {
            seq: Some(seq),
            source: format!("index key of record {seq}: {source}").into(),
        }),
    }
}

fn owned_bound<K: Key, Q: AsKey<K> + ?Sized>(b: Bound<&Q>) -> Bound<Vec<u8>> {
    match b {
        Bound::Included(k) => Bound::Included(k.key_bytes()),
        Bound::Excluded(k) => Bound::Excluded(k.key_bytes()),
        Bound::Unbounded => Bound::Unbounded,
    }
}

impl<T: Send + Sync + 'static, K: Key> IndexReader<T, K> {
    pub(crate) fn new(store: Arc<Store>, waiter: Waiter, log: LogReader<T>) -> Self {
        IndexReader {
            store,
            waiter,
            log,
            key: PhantomData,
        }
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
    pub async fn get(&self, key: impl AsKey<K>, wait: Wait) -> Result<Option<(Seq, T)>> {
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
    pub async fn get_seq(&self, key: impl AsKey<K>, wait: Wait) -> Result<Option<Seq>> {
        let key = key.key_bytes();
        self.waiter
            .try_read(wait, || damaged(self.store.latest(&key)))
            .await
    }

    /// The seqs of every record `key` points at, in log order.
    ///
    /// # Errors
    /// As [`IndexReader::get_seq`].
    ///
    /// # Cancel safety
    /// Dropping the future stops the read; nothing else happens.
    pub async fn seqs(&self, key: impl AsKey<K>, wait: Wait) -> Result<Vec<Seq>> {
        let key = key.key_bytes();
        self.waiter
            .try_read(wait, || damaged(self.store.seqs(&key)))
            .await
    }

    /// How many records `key` points at, counted without collecting them.
    ///
    /// ```
    /// # async fn demo(by_author: flumeview_index::IndexReader<String, (String, u64)>) -> flume_core::Result<()> {
    /// use flume_core::Wait;
    /// // Posts of one author, in an index keyed (author, seq): a prefix count.
    /// let posts = by_author.prefix(("@alice",)).count(Wait::Log).await?;
    /// // The entries of one key.
    /// let one = by_author.count(("@alice", 7), Wait::Log).await?;
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    /// As [`IndexReader::get_seq`].
    ///
    /// # Cancel safety
    /// Dropping the future stops the read; nothing else happens.
    pub async fn count(&self, key: impl AsKey<K>, wait: Wait) -> Result<usize> {
        let key = Bound::Included(key.key_bytes());
        let (n, _) = self
            .waiter
            .try_read(wait, || damaged(self.store.count(&key, &key)))
            .await?;
        Ok(n)
    }

    /// A scan of the keys in `range`, in key order. Finish it with
    /// [`hits`](Scan::hits), [`values`](Scan::values), [`count`](Scan::count) or
    /// [`live`](Scan::live).
    ///
    /// ```
    /// # async fn demo(idx: flumeview_index::IndexReader<String>) -> flume_core::Result<()> {
    /// use flume_core::Wait;
    /// use flumeview_index::key;
    /// let page = idx.range(key::u64(10)..key::u64(20)).limit(5).hits(Wait::Log).await?;
    /// # Ok(()) }
    /// ```
    pub fn range<Q: AsKey<K> + ?Sized>(&self, range: impl RangeBounds<Q>) -> Scan<T, K> {
        Scan::new(
            self.clone(),
            owned_bound(range.start_bound()),
            owned_bound(range.end_bound()),
        )
    }

    /// A scan of the keys that start with `prefix`, in key order: for a tuple key
    /// `(A, B)`, every key whose first part is `a` is the prefix `(a,)`.
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
    pub fn prefix(&self, prefix: impl KeyPrefix<K>) -> Scan<T, K> {
        let prefix = prefix.prefix_bytes();
        let hi = prefix_end(&prefix).map_or(Bound::Unbounded, Bound::Excluded);
        Scan::new(self.clone(), Bound::Included(prefix), hi)
    }

    /// A scan of every key.
    pub fn all(&self) -> Scan<T, K> {
        Scan::new(self.clone(), Bound::Unbounded, Bound::Unbounded)
    }

    /// The seq of the last record the index reflects (`None`: none yet).
    pub fn since(&self) -> Option<Seq> {
        self.store.since()
    }

    /// The same index read by byte keys (the encodings of `K`): cheap, shares
    /// everything with `self`. For code that handles indexes of any key type alike.
    pub fn bytes(&self) -> IndexReader<T> {
        IndexReader {
            store: Arc::clone(&self.store),
            waiter: self.waiter.clone(),
            log: self.log.clone(),
            key: PhantomData,
        }
    }

    /// Waits for the index as `wait` says and returns the `since` it then reflects:
    /// what a later [`Wait::NoWait`] read answers from at least. A query over several
    /// indexes waits for each with it and answers as of the lowest.
    ///
    /// # Errors
    /// [`Error::Closed`], [`Error::ViewFailed`] (also while waiting).
    ///
    /// # Cancel safety
    /// Dropping the future stops the wait; nothing else happens.
    pub async fn ready(&self, wait: Wait) -> Result<Option<Seq>> {
        self.waiter.try_read(wait, || Ok(self.store.since())).await
    }

    /// The log the index reads its records from.
    pub fn log(&self) -> &LogReader<T> {
        &self.log
    }

    /// The index's waiter: its name, status and the log's tail (for capturing one
    /// [`Wait`] target shared by several views).
    pub fn waiter(&self) -> &Waiter {
        &self.waiter
    }

    /// One page of the seqs ONE key points at, by its encoded bytes (`K`'s encoding:
    /// [`Key::to_bytes`], [`AsKey::key_bytes`]): at most `limit` of them strictly after
    /// `from` in the direction asked (`newest_first`: below `from`, newest first;
    /// otherwise above it, oldest first; `None`: from the start). Reads the index as it
    /// is, without waiting ([`ready`](IndexReader::ready) first); costs about
    /// O(log n + limit) block reads however many seqs the key holds.
    ///
    /// ```
    /// # async fn demo(idx: flumeview_index::IndexReader<String>) -> flume_core::Result<()> {
    /// use flume_core::Wait;
    /// idx.ready(Wait::Log).await?;
    /// let mut from = None;
    /// loop {
    ///     let page = idx.key_seqs(b"tag", from, true, 100)?;
    ///     let Some(&last) = page.last() else { break };
    ///     from = Some(last);
    /// }
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    /// [`Error::ViewDamaged`] when a run block is damaged (the index is then rebuilt;
    /// read again after [`ready`](IndexReader::ready)).
    pub fn key_seqs(
        &self,
        key: &[u8],
        from: Option<Seq>,
        newest_first: bool,
        limit: usize,
    ) -> Result<Vec<Seq>> {
        let bound = Bound::Included(key.to_vec());
        let q = Query {
            reverse: newest_first,
            limit: Some(limit),
            after: None,
            point: Some(key),
            cursor: from.map(|s| (key, s)),
        };
        let (pairs, _) = damaged(self.store.scan(&bound, &bound, q))?;
        Ok(pairs.into_iter().map(|(_, seq)| seq).collect())
    }
}

/// A scan of an index in key order, built by [`IndexReader::range`],
/// [`IndexReader::prefix`] or [`IndexReader::all`].
///
/// Forward scans return hits in `(key, seq)` order; reverse scans in the opposite order.
/// [`after`](Scan::after) resumes a scan after a hit it returned (pagination);
/// [`new_only`](Scan::new_only) makes a live scan skip the history.
pub struct Scan<T, K = Vec<u8>> {
    reader: IndexReader<T, K>,
    lo: Bound<Vec<u8>>,
    hi: Bound<Vec<u8>>,
    reverse: bool,
    limit: Option<usize>,
    cursor: Option<(Vec<u8>, Seq)>,
    after: Option<Seq>,
    new_only: bool,
}

impl<T, K> fmt::Debug for Scan<T, K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Scan")
            .field("lo", &self.lo)
            .field("hi", &self.hi)
            .field("reverse", &self.reverse)
            .field("limit", &self.limit)
            .field("cursor", &self.cursor)
            .field("after", &self.after)
            .field("new_only", &self.new_only)
            .finish_non_exhaustive()
    }
}

impl<T: Send + Sync + 'static, K: Key> Scan<T, K> {
    fn new(reader: IndexReader<T, K>, lo: Bound<Vec<u8>>, hi: Bound<Vec<u8>>) -> Self {
        Scan {
            reader,
            lo,
            hi,
            reverse: false,
            limit: None,
            cursor: None,
            after: None,
            new_only: false,
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

    /// Only hits strictly after `hit` in the scan's order (forward: a larger key, or the
    /// same key and a larger seq; reverse: the opposite): the next page after the last
    /// hit of the previous one. The cursor is a plain value, so a page can be resumed
    /// later, by another reader, or after a restart; a hit removed since still marks
    /// its place. Reading from a cursor costs about O(log n) block reads, not the pages
    /// before it. A live scan ([`live`](Scan::live)) yields its history from the
    /// cursor, then every new hit in the scan's range. Default: from the start.
    ///
    /// ```
    /// # async fn demo(idx: flumeview_index::IndexReader<String, (String, u64)>) -> flume_core::Result<()> {
    /// use flume_core::Wait;
    /// let mut pages = Vec::new();
    /// let mut scan = idx.prefix(("@alice",)).reverse().limit(20);
    /// loop {
    ///     let page = scan.hits(Wait::Log).await?;
    ///     let Some(last) = page.last().cloned() else { break };
    ///     pages.push(page);
    ///     scan = idx.prefix(("@alice",)).reverse().limit(20).after(&last);
    /// }
    /// # Ok(()) }
    /// ```
    #[must_use]
    pub fn after(mut self, hit: &Hit<K>) -> Self {
        self.cursor = Some((hit.key.to_bytes(), hit.seq));
        self
    }

    /// Only entries of records with a seq above `seq`: a put by an earlier record is not
    /// returned, and neither hides nor is hidden by anything (what a live scan uses to
    /// find what it has not seen, and a query to look at a range of records). Default:
    /// every record.
    #[must_use]
    pub fn after_seq(mut self, seq: Seq) -> Self {
        self.after = Some(self.after.map_or(seq, |a| a.max(seq)));
        self
    }

    /// Makes [`live`](Scan::live), [`follow`](Scan::follow) and
    /// [`live_values`](Scan::live_values) skip the history: they yield only the hits of
    /// records appended after the call that starts them (then [`Live::Synced`] comes
    /// first). No effect on the other reads. Default: the history first.
    ///
    /// ```
    /// # async fn demo(idx: flumeview_index::IndexReader<String, (String, u64)>) -> flume_core::Result<()> {
    /// use flume_core::Wait;
    /// use futures::StreamExt;
    /// // New posts of one author as they arrive.
    /// let mut feed = idx.prefix(("@alice",)).new_only().live_values(Wait::Log);
    /// while let Some(item) = feed.next().await {
    ///     let (hit, post) = item?;
    ///     println!("{} at {}: {post}", hit.key.0, hit.seq);
    /// }
    /// # Ok(()) }
    /// ```
    #[must_use]
    pub fn new_only(mut self) -> Self {
        self.new_only = true;
        self
    }

    /// The scan's hits: from its cursor, or (`live`) those of records after `seen`.
    fn query(&self, seen: Option<Seq>, live: bool) -> Result<(Vec<Hit<K>>, Option<Seq>)> {
        let after = match (seen, self.after) {
            (Some(a), Some(b)) => Some(a.max(b)),
            (a, b) => a.or(b),
        };
        let q = Query {
            reverse: self.reverse,
            limit: self.limit,
            after,
            point: None,
            // A live scan looks for new records in the whole range.
            cursor: match &self.cursor {
                Some((key, seq)) if !live => Some((key.as_slice(), *seq)),
                _ => None,
            },
        };
        let (pairs, since) = self.reader.store.scan(&self.lo, &self.hi, q)?;
        let hits = pairs.into_iter().map(decode).collect::<Result<_>>()?;
        Ok((hits, since))
    }

    /// The hits: every (key, seq) pair in the scan.
    ///
    /// # Errors
    /// [`Error::Closed`], [`Error::ViewFailed`] (also while waiting);
    /// [`Error::ViewDamaged`] as for [`IndexReader::get`]; [`Error::Codec`] when a key
    /// is not an encoding of `K` (the index was written with another key type: bump
    /// its version).
    ///
    /// # Cancel safety
    /// Dropping the future stops the scan; nothing else happens.
    pub async fn hits(self, wait: Wait) -> Result<Vec<Hit<K>>> {
        let waiter = &self.reader.waiter;
        let (hits, _) = waiter
            .try_read(wait, || damaged(self.query(None, false)))
            .await?;
        Ok(hits)
    }

    /// One page: the hits (at most the [`limit`](Scan::limit)) and the cursor of the
    /// next page, `None` once the scan is done.
    ///
    /// ```
    /// # async fn demo(idx: flumeview_index::IndexReader<String, String>) -> flume_core::Result<()> {
    /// use flume_core::Wait;
    /// let mut page = idx.prefix("news/").limit(50).page(Wait::Log).await?;
    /// let mut total = page.hits.len();
    /// while let Some(next) = page.next {
    ///     page = idx.prefix("news/").limit(50).after(&next).page(Wait::Log).await?;
    ///     total += page.hits.len();
    /// }
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    /// As [`Scan::hits`].
    ///
    /// # Cancel safety
    /// Dropping the future stops the scan; nothing else happens.
    pub async fn page(self, wait: Wait) -> Result<Page<K>>
    where
        K: Clone,
    {
        let limit = self.limit;
        let hits = self.hits(wait).await?;
        let next = match (limit, hits.last()) {
            (Some(n), Some(last)) if hits.len() >= n => Some(last.clone()),
            _ => None,
        };
        Ok(Page { hits, next })
    }

    /// How many hits [`hits`](Scan::hits) would return, counted without collecting
    /// them (at most the [`limit`](Scan::limit)). With a cursor
    /// ([`after`](Scan::after)) or [`after_seq`](Scan::after_seq) the hits are
    /// gathered to count them.
    ///
    /// ```
    /// # async fn demo(idx: flumeview_index::IndexReader<String, (String, u64)>) -> flume_core::Result<()> {
    /// use flume_core::Wait;
    /// let alice = idx.prefix(("@alice",)).count(Wait::Log).await?;
    /// let everything = idx.all().count(Wait::Log).await?;
    /// assert!(alice <= everything);
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    /// As [`Scan::hits`].
    ///
    /// # Cancel safety
    /// Dropping the future stops the count; nothing else happens.
    pub async fn count(self, wait: Wait) -> Result<usize> {
        let waiter = &self.reader.waiter;
        let limit = self.limit.unwrap_or(usize::MAX);
        if self.cursor.is_some() || self.after.is_some() {
            let n = waiter
                .try_read(wait, || {
                    let q = Query {
                        reverse: self.reverse,
                        limit: self.limit,
                        after: self.after,
                        point: None,
                        cursor: self.cursor.as_ref().map(|(k, s)| (k.as_slice(), *s)),
                    };
                    damaged(self.reader.store.scan(&self.lo, &self.hi, q)).map(|(p, _)| p.len())
                })
                .await?;
            return Ok(n);
        }
        let (n, _) = waiter
            .try_read(wait, || {
                damaged(self.reader.store.count(&self.lo, &self.hi))
            })
            .await?;
        Ok(n.min(limit))
    }

    /// The hits with the records they point at, read from the log.
    ///
    /// # Errors
    /// As [`Scan::hits`], and the log's errors reading the records.
    ///
    /// # Cancel safety
    /// Dropping the future stops the scan; nothing else happens.
    pub async fn values(self, wait: Wait) -> Result<Vec<(Hit<K>, T)>> {
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
    /// With [`new_only`](Scan::new_only) the history is skipped: the stream yields only
    /// the hits of records appended after `live` was called.
    ///
    /// [`Scan::follow`] is the same stream with a marker once it has caught up;
    /// [`Scan::live_values`] yields the records too.
    pub fn live(self, wait: Wait) -> BoxStream<'static, Result<Hit<K>>> {
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
    pub fn follow(self, wait: Wait) -> BoxStream<'static, Result<Live<Hit<K>>>> {
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
            let history = || {
                if self.new_only {
                    // Nothing before the call: start from the log's tail as it was then.
                    Ok((Vec::new(), target))
                } else {
                    damaged(self.query(None, false))
                }
            };
            let (hits, mut seen) = match waiter.try_read(wait, history).await {
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
                    let (mut hits, since) = match self.query(seen, true) {
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

    /// [`Scan::live`] with the record each hit points at, read from the log: a live
    /// feed of values. With [`new_only`](Scan::new_only), only new records.
    ///
    /// ```
    /// # async fn demo(idx: flumeview_index::IndexReader<String, String>) -> flume_core::Result<()> {
    /// use flume_core::Wait;
    /// use futures::StreamExt;
    /// let mut feed = idx.prefix("news/").new_only().live_values(Wait::Log);
    /// while let Some(item) = feed.next().await {
    ///     let (hit, value) = item?;
    ///     println!("{} -> {value}", hit.key);
    /// }
    /// # Ok(()) }
    /// ```
    ///
    /// The stream ends as [`Scan::live`] does, and with an error item when a record
    /// cannot be read.
    pub fn live_values(self, wait: Wait) -> BoxStream<'static, Result<(Hit<K>, T)>> {
        let log = self.reader.log.clone();
        Box::pin(self.live(wait).then(move |item| {
            let log = log.clone();
            async move {
                let hit = item?;
                let value = log.get(hit.seq).await?;
                Ok((hit, value))
            }
        }))
    }
}
