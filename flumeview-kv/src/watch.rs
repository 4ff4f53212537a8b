//! `KvReader::watch`: a stream of the changes of one key, of a prefix, or of every key.
//!
//! A watch reads the engine's stored entries with `Store::changes` (every put and
//! delete of the watched keys above a seq, in seq order), first once to replay the
//! history (or to find where "now" is), then again each time the view moves. Each look
//! reports exactly the entries between the seq it has reported up to and the seq the
//! engine's answer reflects, so consecutive looks neither overlap nor leave a gap.

use std::collections::HashMap;
use std::ops::Bound;

use flume_core::{Error, Result, Seq, Wait};
use flume_lsm::key::prefix_end;
use flume_lsm::Kind;
use futures::stream::BoxStream;

use crate::{History, Key, KvReader, Op};
use flume_lsm::damaged_as_view as damaged;

/// The keys a [watch](KvReader::watch) follows.
///
/// ```
/// use flumeview_kv::{key, WatchKeys};
/// let one: WatchKeys<String> = WatchKeys::key("alice".to_string());
/// // Every (author, n) key of one author: the encoded prefix of a 1-tuple.
/// let posts: WatchKeys<(String, u64)> = WatchKeys::prefix(key::tuple(("alice",)));
/// let all: WatchKeys<String> = WatchKeys::All;
/// # let _ = (one, posts, all);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum WatchKeys<K> {
    /// One key.
    Key(K),
    /// Every key whose encoding starts with these bytes: the encoded prefix of a tuple
    /// key, or the leading bytes of a string key (see the [`key`](crate::key) module).
    Prefix(Vec<u8>),
    /// Every key.
    All,
}

impl<K: Key> WatchKeys<K> {
    /// One key.
    pub fn key(key: K) -> Self {
        WatchKeys::Key(key)
    }

    /// Every key whose encoding starts with `prefix`.
    pub fn prefix(prefix: impl AsRef<[u8]>) -> Self {
        WatchKeys::Prefix(prefix.as_ref().to_vec())
    }

    /// The encoded key range: both ends included for one key (encodings are prefix-free,
    /// so no other key falls between them).
    fn bounds(&self) -> (Bound<Vec<u8>>, Bound<Vec<u8>>) {
        match self {
            WatchKeys::Key(key) => {
                let mut bytes = Vec::new();
                key.encode(&mut bytes);
                (Bound::Included(bytes.clone()), Bound::Included(bytes))
            }
            WatchKeys::Prefix(prefix) => (
                Bound::Included(prefix.clone()),
                prefix_end(prefix).map_or(Bound::Unbounded, Bound::Excluded),
            ),
            WatchKeys::All => (Bound::Unbounded, Bound::Unbounded),
        }
    }
}

/// Where a [watch](KvReader::watch) starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum WatchFrom {
    /// First every stored change of the watched keys, oldest first, as the view's
    /// [`History`] option keeps them; then the new ones.
    History,
    /// Only the changes of records after the watch's [`Wait`] target (see
    /// [`KvReader::watch`]).
    Now,
}

/// One change of a watched key: the record at `seq` put or deleted `key`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change<K, V> {
    /// The seq of the record that made the change (the key's new version).
    pub seq: Seq,
    /// The key.
    pub key: K,
    /// The value it put, or [`Op::Delete`].
    pub op: Op<V>,
}

/// The entries one look at the engine found, as `(key bytes, seq, kind)`.
type Entries = Vec<(Box<[u8]>, Seq, Kind)>;

impl<T, K, V> KvReader<T, K, V>
where
    T: Send + Sync + 'static,
    K: Key,
    V: Send + Sync + 'static,
{
    /// A stream of the changes of `keys`, in seq order (changes made by one record come
    /// in key order), that stays open until the database closes.
    ///
    /// With [`WatchFrom::History`] the stream first replays the stored changes, once the
    /// view has caught up as `wait` says. With [`WatchFrom::Now`] it starts after the
    /// wait's target: with [`Wait::Log`], after the records the log held when `watch`
    /// was called; with [`Wait::AtLeast(seq)`](Wait::AtLeast), after `seq`; with
    /// [`Wait::NoWait`], after what the view has applied when the stream first looks.
    /// Either way every later change follows, each exactly once, and none is missed
    /// between the replay and the live changes. Deletes are changes too
    /// ([`Op::Delete`]). A value is read from the log like [`get`](KvReader::get) does:
    /// one record read and one map call per put. Following costs little between
    /// changes: each look skips the sorted runs that hold nothing newer than what the
    /// stream has reported.
    ///
    /// The starting point is when `watch` is called: [`Wait::Log`] waits for the log as
    /// it was then, not at the first poll.
    ///
    /// What the view keeps decides what a watch can report. With [`History::All`] (the
    /// default) it reports every change. With [`History::Since(h)`](History::Since) it
    /// reports every change above `h` and, for older ones, each key's newest. With
    /// [`History::Latest`] it reports each key's newest change each time it looks: a key
    /// changed several times between two looks is reported once, with its newest change.
    ///
    /// While the view rebuilds (after a version change or `Flume::rebuild`) the stream
    /// waits until the rebuild passes the changes it has already reported. It ends when
    /// the database closes (after the changes the view had applied by then), and with an
    /// error item when the view fails or a read fails. Dropping the stream stops the
    /// watch; nothing else happens.
    ///
    /// ```
    /// # async fn demo(kv: flumeview_kv::KvReader<String, String, u64>) -> flume_core::Result<()> {
    /// use flume_core::Wait;
    /// use flumeview_kv::{Op, WatchFrom, WatchKeys};
    /// use futures::StreamExt;
    /// let mut changes = kv.watch(WatchKeys::key("counter".into()), WatchFrom::Now, Wait::Log);
    /// while let Some(change) = changes.next().await {
    ///     let change = change?;
    ///     match change.op {
    ///         Op::Put(n) => println!("counter = {n} (version {})", change.seq),
    ///         Op::Delete => println!("counter deleted at {}", change.seq),
    ///     }
    /// }
    /// # Ok(()) }
    /// ```
    pub fn watch(
        &self,
        keys: WatchKeys<K>,
        from: WatchFrom,
        wait: Wait,
    ) -> BoxStream<'static, Result<Change<K, V>>> {
        let reader = self.clone();
        let waiter = self.waiter().clone();
        // The starting point is now: the wait's target and the watch of `since`.
        let captured = waiter.capture(wait);
        // Where "now" is for `WatchFrom::Now`: the target (none: the log is empty, and
        // every change is new), or with `NoWait` the view's position at the first look.
        let now = match (wait, captured) {
            (Wait::NoWait, _) => None,
            (_, Wait::AtLeast(target)) => Some(Some(target)),
            _ => Some(None),
        };
        let wait = captured;
        let mut since_watch = waiter.since_watch();
        let (lo, hi) = keys.bounds();
        let keep = Keep::of(self.history_option());
        Box::pin(async_stream::stream! {
            let store = reader.store();
            // The first look, under the reset gate: the replay, or only where now is.
            let first = waiter
                .try_read(wait, || {
                    damaged(match from {
                        WatchFrom::History => store.changes(&lo, &hi, None),
                        WatchFrom::Now => Ok((Vec::new(), now.unwrap_or_else(|| store.since()))),
                    })
                })
                .await;
            let (entries, mut seen) = match first {
                Ok(found) => found,
                Err(Error::Closed) => return,
                Err(e) => {
                    yield Err(e);
                    return;
                }
            };
            for entry in keep.filter(entries, None, seen) {
                let change = reader.change(entry).await;
                let failed = change.is_err();
                yield change;
                if failed {
                    return;
                }
            }
            let stopped = waiter.stopped();
            tokio::pin!(stopped);
            let mut closing = false;
            loop {
                if store.since() > seen {
                    let (entries, since) = match damaged(store.changes(&lo, &hi, seen)) {
                        Ok(found) => found,
                        Err(e) => {
                            yield Err(e);
                            return;
                        }
                    };
                    // A reset may have lowered the view meanwhile: then nothing is new.
                    if since > seen {
                        for entry in keep.filter(entries, seen, since) {
                            let change = reader.change(entry).await;
                            let failed = change.is_err();
                            yield change;
                            if failed {
                                return;
                            }
                        }
                        seen = since;
                    }
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
                        // One more look for what was applied before the close.
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

    /// The change an engine entry stands for: its key decoded and, for a put, its value
    /// recovered from the record.
    async fn change(&self, (bytes, seq, kind): (Box<[u8]>, Seq, Kind)) -> Result<Change<K, V>> {
        let key = Self::decode_key(&bytes, seq)?;
        let op = match kind {
            // A kv map emits no removes; a removed put leaves no value.
            Kind::Delete | Kind::Remove => Op::Delete,
            Kind::Put => self.value_at(&bytes, seq).await?,
        };
        Ok(Change { seq, key, op })
    }
}

/// Which of the engine's entries a watch reports, from the view's [`History`] option,
/// so that what it reports does not depend on when compaction ran.
#[derive(Debug, Clone, Copy)]
enum Keep {
    /// Every entry.
    All,
    /// Every entry above the seq, and each key's newest entry at or below it.
    NewestAtOrBelow(Seq),
}

impl Keep {
    fn of(history: History) -> Keep {
        match history {
            History::Latest => Keep::NewestAtOrBelow(Seq::MAX),
            History::Since(h) => Keep::NewestAtOrBelow(h),
            History::All => Keep::All,
        }
    }

    /// The entries of one look with seq in `(after, upto]`, in `(seq, key)` order,
    /// without those the option does not keep.
    fn filter(
        self,
        mut entries: Entries,
        after: Option<Seq>,
        upto: Option<Seq>,
    ) -> impl Iterator<Item = (Box<[u8]>, Seq, Kind)> {
        // Entries above what the answer reflects are left for the next look.
        // The engine answers in (seq, key) order already.
        entries.retain(|(_, seq, _)| Some(*seq) > after && Some(*seq) <= upto);
        if let Keep::NewestAtOrBelow(horizon) = self {
            let mut newest: HashMap<&[u8], Seq> = HashMap::new();
            for (key, seq, _) in &entries {
                if *seq <= horizon {
                    newest.insert(key, *seq);
                }
            }
            let newest: HashMap<Box<[u8]>, Seq> =
                newest.into_iter().map(|(k, s)| (Box::from(k), s)).collect();
            entries.retain(|(key, seq, _)| *seq > horizon || newest.get(key) == Some(seq));
        }
        entries.into_iter()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entries(list: &[(&str, Seq, Kind)]) -> Entries {
        list.iter()
            .map(|(k, s, kind)| (Box::from(k.as_bytes()), *s, *kind))
            .collect()
    }

    fn seqs(keep: Keep, list: &[(&str, Seq, Kind)], after: Option<Seq>, upto: Seq) -> Vec<Seq> {
        keep.filter(entries(list), after, Some(upto))
            .map(|(_, s, _)| s)
            .collect()
    }

    const LIST: &[(&str, Seq, Kind)] = &[
        ("a", 0, Kind::Put),
        ("b", 1, Kind::Put),
        ("a", 2, Kind::Put),
        ("b", 3, Kind::Delete),
        ("a", 4, Kind::Put),
        ("c", 4, Kind::Put),
    ];

    #[test]
    fn keep_all_reports_the_window_in_seq_order() {
        assert_eq!(seqs(Keep::All, LIST, None, 4), vec![0, 1, 2, 3, 4, 4]);
        assert_eq!(seqs(Keep::All, LIST, Some(1), 3), vec![2, 3]);
    }

    #[test]
    fn keep_newest_reports_each_keys_newest_below_the_horizon() {
        assert_eq!(
            seqs(Keep::NewestAtOrBelow(Seq::MAX), LIST, None, 4),
            vec![3, 4, 4]
        );
        assert_eq!(
            seqs(Keep::NewestAtOrBelow(2), LIST, None, 4),
            vec![1, 2, 3, 4, 4]
        );
        assert_eq!(
            seqs(Keep::NewestAtOrBelow(2), LIST, Some(2), 4),
            vec![3, 4, 4]
        );
    }

    #[test]
    fn one_key_bounds_hold_only_that_key() {
        let (lo, hi) = WatchKeys::key("ab".to_string()).bounds();
        assert_eq!(lo, hi);
    }
}
