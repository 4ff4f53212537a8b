//! The storage engine: a memtable, immutable runs, the manifest, flushes, compaction,
//! loading and resetting. Synchronous; the view and the readers wrap it.
//!
//! Concurrency: `tables` (a short `RwLock`) holds what readers see — the memtable, a
//! memtable being flushed, and an `Arc` of the run list, so a reader copies its slice of
//! the memtables and clones the `Arc` and then reads without any lock. `committed` (a
//! `Mutex` readers never take) serialises manifest writes between checkpoints and the
//! compactor. A compaction merges committed runs without either lock and installs its
//! result under both, briefly; the old run files are deleted only after the manifest
//! that no longer names them is durable.

use std::fs;
use std::io::{BufWriter, Write};
use std::ops::Bound;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};

use flume_core::durable::{self, Faults, TempFile};
use flume_core::{Checkpoint, Error, Result, Seq};

use crate::bloom::key_hash;
use crate::emit::OpBuf;
use crate::entry::{newer, Kind};
use crate::files;
use crate::key::{above_lo, below_hi};
use crate::manifest::{self, Manifest, RunRef};
use crate::memtable::Memtable;
use crate::merge::{count_live, live_pairs, Compacted, Merge, Pair, Source};
use crate::run::{Run, RunCursor, RunParams, RunWriter};
use crate::{LsmOptions, Retention, Semantics};

/// A run merged from others, and those (oldest first).
type Merged = (Arc<Run>, Vec<Arc<Run>>);

/// What readers see.
#[derive(Default)]
struct Tables {
    mem: Memtable,
    /// A memtable being written out as a run.
    frozen: Option<Arc<Memtable>>,
    /// Every run, oldest first: the committed ones (in the manifest), then those flushed
    /// since the last checkpoint.
    runs: Arc<Vec<Arc<Run>>>,
    /// The last seq applied.
    since: Option<Seq>,
}

/// What the manifest on disk says.
#[derive(Default)]
struct Committed {
    /// Whether a manifest exists.
    written: bool,
    since: Option<Seq>,
    /// Oldest first.
    runs: Vec<Arc<Run>>,
}

/// The storage engine of one view: see the [crate docs](crate).
///
/// | side | methods |
/// |---|---|
/// | the view (one writer) | [`load`](Store::load), [`apply`](Store::apply), [`flush`](Store::flush), [`checkpoint`](Store::checkpoint), [`reset`](Store::reset) |
/// | compaction (any thread, usually a [`Compactor`](crate::Compactor)) | [`compact`](Store::compact) |
/// | readers (any number, concurrently) | [`latest`](Store::latest), [`seqs`](Store::seqs), [`scan`](Store::scan), [`count`](Store::count), [`history`](Store::history), [`changes`](Store::changes), [`since`](Store::since) |
///
/// A store is `Send + Sync`; share it in an `Arc` between the view, its readers and its
/// compactor. Readers take a lock only to copy the part of the memtable they need, and
/// never wait for a flush or a compaction.
pub struct Store {
    version: u32,
    dir: Option<PathBuf>,
    semantics: Semantics,
    retention: Retention,
    params: RunParams,
    memtable_bytes: usize,
    fan_in: usize,
    tables: RwLock<Tables>,
    committed: Mutex<Committed>,
    next_id: AtomicU64,
    /// Bumped by every reset: a compaction that started before it is discarded.
    generation: AtomicU64,
    /// Held by a compaction while it runs; a reset takes it to wait for it.
    compacting: Mutex<()>,
    faults: Faults,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let tables = self.read();
        f.debug_struct("Store")
            .field("dir", &self.dir)
            .field("semantics", &self.semantics)
            .field("retention", &self.retention)
            .field("since", &tables.since)
            .field("memtable_entries", &tables.mem.len())
            .field("runs", &tables.runs.len())
            .finish()
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Whether key bounds admit no key at all.
fn empty_bounds(lo: &Bound<Vec<u8>>, hi: &Bound<Vec<u8>>) -> bool {
    if let (Bound::Included(l) | Bound::Excluded(l), Bound::Included(h) | Bound::Excluded(h)) =
        (lo, hi)
    {
        let both_included = matches!((lo, hi), (Bound::Included(_), Bound::Included(_)));
        return l > h || (l == h && !both_included);
    }
    false
}

/// The one key the bounds (or `point`) admit, if they admit exactly one.
fn one_key<'a>(
    lo: &'a Bound<Vec<u8>>,
    hi: &Bound<Vec<u8>>,
    point: Option<&'a [u8]>,
) -> Option<&'a [u8]> {
    match (lo, hi) {
        (Bound::Included(l), Bound::Included(h)) if l == h => Some(l.as_slice()),
        _ => point.filter(|p| above_lo(p, lo) && below_hi(p, hi)),
    }
}

/// The tighter of a lower bound and `Excluded(key)`: what is beyond a cursor's key.
fn tighter_lo(lo: &Bound<Vec<u8>>, key: &[u8]) -> Bound<Vec<u8>> {
    match lo {
        Bound::Included(l) if l.as_slice() > key => lo.clone(),
        Bound::Excluded(l) if l.as_slice() >= key => lo.clone(),
        _ => Bound::Excluded(key.to_vec()),
    }
}

/// The tighter of an upper bound and `Excluded(key)`.
fn tighter_hi(hi: &Bound<Vec<u8>>, key: &[u8]) -> Bound<Vec<u8>> {
    match hi {
        Bound::Included(h) if h.as_slice() < key => hi.clone(),
        Bound::Excluded(h) if h.as_slice() <= key => hi.clone(),
        _ => Bound::Excluded(key.to_vec()),
    }
}

/// What a [`Store::scan`] needs besides its key bounds. The default: forward, no limit,
/// every seq, not a point lookup.
#[derive(Debug, Clone, Copy, Default)]
pub struct Query<'a> {
    /// Largest keys first (and, within a key, newest seqs first).
    pub reverse: bool,
    /// At most this many pairs.
    pub limit: Option<usize>,
    /// Only entries above this seq (what a live scan has not seen yet).
    pub after: Option<Seq>,
    /// The single key the bounds admit, when they admit one (enables the bloom
    /// filters).
    pub point: Option<&'a [u8]>,
    /// Only pairs strictly after this (key, seq) in the scan's order: forward, a
    /// greater key, or the same key and a greater seq; reverse, a smaller key, or the
    /// same key and a smaller seq. Resumes a scan after the last pair of a page. The
    /// key need not be within the bounds, nor stored.
    pub cursor: Option<(&'a [u8], Seq)>,
}

/// Every crash point of the store's file steps, as [`Store::faults`] names them, each
/// checked before the step it names: `flush.*` (writing a memtable out as a run),
/// `manifest.*` (a checkpoint's manifest), `compact.*` (a background compaction),
/// `merge.*` (the merge a checkpoint may do first) and `reset.remove`. Crash tests of
/// the store and of the views on it walk this list.
///
/// ```
/// assert!(flume_lsm::CRASH_POINTS.contains(&"manifest.rename"));
/// ```
pub const CRASH_POINTS: &[&str] = &[
    "flush.write",
    "flush.sync",
    "flush.rename",
    "manifest.write",
    "manifest.sync",
    "manifest.rename",
    "manifest.dir_sync",
    "compact.write",
    "compact.sync",
    "compact.rename",
    "compact.install",
    "compact.delete",
    "merge.write",
    "merge.sync",
    "merge.rename",
    "merge.install",
    "merge.delete",
    "reset.remove",
];

/// A read's answer from the store, with a damaged run ([`Error::Corrupt`]) reported as
/// the view's own data damaged ([`Error::view_damaged`]): a view's reader wraps its
/// store reads in it, so that [`Waiter::try_read`](flume_core::Waiter::try_read) has the
/// view rebuilt from the log and reads again.
///
/// # Errors
/// `result`'s error, a [`Error::Corrupt`] turned into [`Error::ViewDamaged`].
pub fn damaged_as_view<R>(result: Result<R>) -> Result<R> {
    result.map_err(|e| match e {
        Error::Corrupt { .. } => Error::view_damaged(e),
        e => e,
    })
}

impl Store {
    /// A store for a view of `version`, tuned by `options`, kept in `dir` (`None`: in
    /// memory only), with the given [`Semantics`] and [`Retention`].
    ///
    /// Nothing is read or written yet: call [`Store::load`] to open what `dir` holds
    /// (after locking it with [`lock_dir`](crate::lock_dir)).
    pub fn new(
        version: u32,
        options: &LsmOptions,
        dir: Option<PathBuf>,
        semantics: Semantics,
        retention: Retention,
    ) -> Store {
        Store {
            version,
            dir,
            semantics,
            retention,
            params: RunParams {
                block_bytes: options.block_bytes.max(64),
                bloom_bits_per_key: options.bloom_bits_per_key.max(1),
            },
            memtable_bytes: options.memtable_bytes,
            fan_in: options.merge_fan_in.max(2),
            tables: RwLock::new(Tables::default()),
            committed: Mutex::new(Committed::default()),
            next_id: AtomicU64::new(1),
            generation: AtomicU64::new(0),
            compacting: Mutex::new(()),
            // Tests arm crash points on it; elsewhere it is inactive and free.
            faults: if cfg!(test) {
                Faults::new()
            } else {
                Faults::default()
            },
        }
    }

    /// Makes the store's file steps consult `faults` (for tests: crash points at each
    /// step of flushes, checkpoints, compactions and resets; see [`Store::faults`]).
    /// Default: an inactive plan, which costs nothing.
    #[must_use]
    pub fn with_faults(mut self, faults: Faults) -> Store {
        self.faults = faults;
        self
    }

    /// The fault-injection plan the store's file steps consult: the crash points of
    /// [`CRASH_POINTS`], each checked before the step it names.
    pub fn faults(&self) -> &Faults {
        &self.faults
    }

    /// The store's [`Semantics`].
    pub fn semantics(&self) -> Semantics {
        self.semantics
    }

    /// The store's [`Retention`].
    pub fn retention(&self) -> Retention {
        self.retention
    }

    /// The directory the store is kept in, if any.
    pub fn dir(&self) -> Option<&std::path::Path> {
        self.dir.as_deref()
    }

    fn read(&self) -> RwLockReadGuard<'_, Tables> {
        self.tables.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn write(&self) -> RwLockWriteGuard<'_, Tables> {
        self.tables.write().unwrap_or_else(PoisonError::into_inner)
    }

    /// The last seq applied (`None`: nothing yet).
    pub fn since(&self) -> Option<Seq> {
        self.read().since
    }

    /// How many runs readers see (committed and not yet).
    pub fn run_count(&self) -> usize {
        self.read().runs.len()
    }

    // ----- queries -------------------------------------------------------------------

    /// The live (key, seq) pairs within bounds, and the `since` they reflect: forward in
    /// (key, seq) order, reverse in the opposite order, at most `q.limit` of them.
    ///
    /// A put is live when no entry of its key with a higher seq hides it (a delete, or,
    /// under [`Semantics::SingleValued`], a put) and no [`Kind::Remove`] at its seq does.
    /// With `q.cursor`, only the pairs after it in this order.
    ///
    /// # Errors
    /// [`Error::Corrupt`] when a run block is damaged.
    pub fn scan(
        &self,
        lo: &Bound<Vec<u8>>,
        hi: &Bound<Vec<u8>>,
        q: Query<'_>,
    ) -> Result<(Vec<Pair>, Option<Seq>)> {
        if empty_bounds(lo, hi) {
            return Ok((Vec::new(), self.since()));
        }
        if let Some(key) = one_key(lo, hi, q.point) {
            // One key: seek to where the answer starts, whatever the key's size.
            let from = match q.cursor {
                Some((ck, cs)) if ck == key => Some(cs),
                Some((ck, _)) if (ck > key) != q.reverse => {
                    return Ok((Vec::new(), self.since()));
                }
                _ => None,
            };
            let (seqs, since) = self.scan_key(key, q.reverse, from, q.after, q.limit)?;
            let key: Box<[u8]> = key.into();
            return Ok((seqs.into_iter().map(|s| (key.clone(), s)).collect(), since));
        }
        let mut out = Vec::new();
        let mut limit = q.limit;
        let (lo, hi) = match q.cursor {
            Some((ck, cs)) => {
                // The rest of the cursor's key first (a seek), then the keys beyond it.
                if above_lo(ck, lo) && below_hi(ck, hi) {
                    let (seqs, _) = self.scan_key(ck, q.reverse, Some(cs), q.after, limit)?;
                    let key: Box<[u8]> = ck.into();
                    limit = limit.map(|l| l - seqs.len());
                    out.extend(seqs.into_iter().map(|s| (key.clone(), s)));
                }
                if q.reverse {
                    (lo.clone(), tighter_hi(hi, ck))
                } else {
                    (tighter_lo(lo, ck), hi.clone())
                }
            }
            None => (lo.clone(), hi.clone()),
        };
        if limit == Some(0) || empty_bounds(&lo, &hi) {
            return Ok((out, self.since()));
        }
        let (mut merge, since) = self.merge(&lo, &hi, q.reverse, q.after, q.point);
        out.extend(live_pairs(&mut merge, q.reverse, limit, self.semantics)?);
        Ok((out, since))
    }

    /// The live seqs of one key in a scan's order, strictly beyond `from` (forward:
    /// above, reverse: below), above `after`, at most `limit`; and the `since` they
    /// reflect. Seeks in every table to where the answer starts (a run: O(log blocks)
    /// block reads; a memtable: binary searches) and reads on from there: about
    /// O(log n + limit), also for a key of millions of entries.
    fn scan_key(
        &self,
        key: &[u8],
        reverse: bool,
        from: Option<Seq>,
        after: Option<Seq>,
        limit: Option<usize>,
    ) -> Result<(Vec<Seq>, Option<Seq>)> {
        let limit = limit.unwrap_or(usize::MAX);
        if limit == 0 {
            return Ok((Vec::new(), self.since()));
        }
        // Memtable parts are copied a bounded number at a time; a part cut short that
        // runs out before the answer is complete makes the walk start again uncut.
        let mut cap = limit.saturating_mul(2).saturating_add(64);
        loop {
            if let Some(done) = self.scan_key_once(key, reverse, from, after, limit, cap)? {
                return Ok(done);
            }
            cap = usize::MAX;
        }
    }

    /// [`Store::scan_key`] with memtable parts of at most `cap` entries; `None` when a
    /// cut part ran out first.
    fn scan_key_once(
        &self,
        key: &[u8],
        reverse: bool,
        from: Option<Seq>,
        after: Option<Seq>,
        limit: usize,
        cap: usize,
    ) -> Result<Option<(Vec<Seq>, Option<Seq>)>> {
        let single = self.semantics == Semantics::SingleValued;
        let hash = key_hash(key);
        let bound = || Bound::Included(key.to_vec());
        let tables = self.read();
        let since = tables.since;
        let runs: Vec<Arc<Run>> = tables
            .runs
            .iter()
            .filter(|r| r.may_contain_hash(hash))
            .cloned()
            .collect();
        let mems: Vec<&Memtable> = std::iter::once(&tables.mem)
            .chain(tables.frozen.as_deref())
            .collect();
        let part = |m: &Memtable, pos: (Seq, Kind), rev: bool| {
            let (entries, cut) = m.key_part(key, pos, rev, cap);
            if cut {
                Source::Cut(entries)
            } else {
                Source::Mem(entries)
            }
        };
        let mut out = Vec::new();
        if single {
            // The key's newest put or delete decides; a remove just before its put
            // hides it. Then the cursor and `after` filter that one answer.
            let mut sources: Vec<Source> = mems
                .iter()
                .map(|m| part(m, (Seq::MAX, Kind::Remove), false))
                .collect();
            sources.extend(
                runs.iter()
                    .map(|r| Source::Run(RunCursor::new(Arc::clone(r), bound(), bound(), false))),
            );
            drop(tables);
            let mut merge = Merge::new(sources, false, after);
            let mut removed = None;
            while let Some(e) = merge.next_entry()? {
                match e.kind {
                    Kind::Remove => removed = Some(e.seq),
                    Kind::Put if removed != Some(e.seq) => {
                        out.push(e.seq);
                        break;
                    }
                    _ => break,
                }
            }
            if out.is_empty() && merge.incomplete() {
                return Ok(None);
            }
            out.retain(|&s| match from {
                Some(f) if reverse => s < f,
                Some(f) => s > f,
                None => true,
            });
            return Ok(Some((out, since)));
        }
        // Multi-valued: live puts are at or above the key's newest delete, and not
        // removed.
        let mut floor = mems.iter().filter_map(|m| m.newest_delete(key)).max();
        for run in &runs {
            if floor.is_some_and(|f| run.stats.max_seq <= f) {
                continue;
            }
            floor = floor.max(run.newest_delete(key)?);
        }
        let floor = floor
            .unwrap_or(0)
            .max(after.map_or(0, |a| a.saturating_add(1)));
        if reverse {
            // Newest first: storage order from just below `from` down to the floor.
            let top = match from {
                Some(0) => return Ok(Some((out, since))),
                Some(f) => f - 1,
                None => Seq::MAX,
            };
            if top < floor {
                return Ok(Some((out, since)));
            }
            let mut sources: Vec<Source> = mems
                .iter()
                .map(|m| part(m, (top, Kind::Remove), false))
                .collect();
            sources.extend(
                runs.iter()
                    .filter(|r| r.stats.min_seq <= top && r.stats.max_seq >= floor)
                    .map(|r| {
                        Source::Run(
                            RunCursor::new(Arc::clone(r), bound(), bound(), false).starting_at(
                                key,
                                top,
                                Kind::Remove,
                            ),
                        )
                    }),
            );
            drop(tables);
            let mut merge = Merge::new(sources, false, None);
            let mut removed = None;
            while let Some(e) = merge.next_entry()? {
                if e.seq < floor {
                    return Ok(Some((out, since)));
                }
                match e.kind {
                    Kind::Remove => removed = Some(e.seq),
                    Kind::Put if removed != Some(e.seq) => {
                        out.push(e.seq);
                        if out.len() == limit {
                            return Ok(Some((out, since)));
                        }
                    }
                    _ => {}
                }
            }
            if merge.incomplete() {
                return Ok(None);
            }
            return Ok(Some((out, since)));
        }
        // Oldest first: storage order backwards from the lowest seq wanted up (at one
        // seq: delete, put, remove; a put is live unless its remove comes next).
        let bottom = match from {
            Some(Seq::MAX) => return Ok(Some((out, since))),
            Some(f) => (f + 1).max(floor),
            None => floor,
        };
        let mut sources: Vec<Source> = mems
            .iter()
            .map(|m| part(m, (bottom, Kind::Delete), true))
            .collect();
        sources.extend(runs.iter().filter(|r| r.stats.max_seq >= bottom).map(|r| {
            Source::Run(
                RunCursor::new(Arc::clone(r), bound(), bound(), true).starting_at(
                    key,
                    bottom,
                    Kind::Delete,
                ),
            )
        }));
        drop(tables);
        let mut merge = Merge::new(sources, true, None);
        let mut pending: Option<Seq> = None;
        while let Some(e) = merge.next_entry()? {
            if e.kind == Kind::Remove && pending == Some(e.seq) {
                pending = None;
                continue;
            }
            if let Some(p) = pending.take() {
                out.push(p);
                if out.len() == limit {
                    return Ok(Some((out, since)));
                }
            }
            if e.kind == Kind::Put {
                pending = Some(e.seq);
            }
        }
        if merge.incomplete() {
            return Ok(None);
        }
        out.extend(pending);
        Ok(Some((out, since)))
    }

    /// How many live pairs [`Store::scan`] would return for these bounds (without limit
    /// or `after`), without collecting them (removed puts do not count); and the
    /// `since` the count reflects. It walks every entry within the bounds.
    ///
    /// # Errors
    /// As [`Store::scan`].
    pub fn count(&self, lo: &Bound<Vec<u8>>, hi: &Bound<Vec<u8>>) -> Result<(usize, Option<Seq>)> {
        if empty_bounds(lo, hi) {
            return Ok((0, self.since()));
        }
        let (mut merge, since) = self.merge(lo, hi, false, None, None);
        Ok((count_live(&mut merge, self.semantics)?, since))
    }

    /// Every stored entry of `key`, newest first (at one seq: a remove, a put, a delete),
    /// hidden ones included: what the [`Retention`] has kept so far.
    ///
    /// # Errors
    /// As [`Store::scan`].
    pub fn history(&self, key: &[u8]) -> Result<Vec<(Seq, Kind)>> {
        let bound = Bound::Included(key.to_vec());
        let (mut merge, _) = self.merge(&bound, &bound, false, None, Some(key));
        let mut out = Vec::new();
        while let Some(e) = merge.next_entry()? {
            out.push((e.seq, e.kind));
        }
        Ok(out)
    }

    /// Every stored entry within key bounds with a seq above `after` (all: `None`),
    /// hidden ones included, sorted by seq, then key (at one seq and key, a delete before
    /// the put that wins over it, then a remove of that put); and the `since` they reflect: a follower that saw
    /// these has seen every entry up to it that the store holds.
    ///
    /// Under [`Retention::Live`] and [`Retention::Since`], a compaction may have dropped
    /// hidden entries before this call.
    ///
    /// # Errors
    /// As [`Store::scan`].
    #[allow(clippy::type_complexity)]
    pub fn changes(
        &self,
        lo: &Bound<Vec<u8>>,
        hi: &Bound<Vec<u8>>,
        after: Option<Seq>,
    ) -> Result<(Vec<(Box<[u8]>, Seq, Kind)>, Option<Seq>)> {
        if empty_bounds(lo, hi) {
            return Ok((Vec::new(), self.since()));
        }
        let (mut merge, since) = self.merge(lo, hi, false, after, None);
        let mut out = Vec::new();
        while let Some(e) = merge.next_entry()? {
            out.push((e.key, e.seq, e.kind));
        }
        // At one seq and key: a delete, the put that wins over it, the remove that
        // came later and hides the put.
        let rank = |k: Kind| match k {
            Kind::Delete => 0,
            Kind::Put => 1,
            Kind::Remove => 2,
        };
        out.sort_unstable_by(|a, b| {
            a.1.cmp(&b.1)
                .then_with(|| a.0.cmp(&b.0))
                .then_with(|| rank(a.2).cmp(&rank(b.2)))
        });
        Ok((out, since))
    }

    /// A merged stream of every table's entries within bounds (and above `after`),
    /// skipping runs whose bloom filter rules `point` out; and the `since` it reflects.
    fn merge(
        &self,
        lo: &Bound<Vec<u8>>,
        hi: &Bound<Vec<u8>>,
        reverse: bool,
        after: Option<Seq>,
        point: Option<&[u8]>,
    ) -> (Merge, Option<Seq>) {
        let (mem, frozen, runs, since) = {
            let tables = self.read();
            let copy = |m: &Memtable| m.range(lo, hi, after);
            let frozen = tables.frozen.as_deref().map(copy);
            (
                copy(&tables.mem),
                frozen,
                Arc::clone(&tables.runs),
                tables.since,
            )
        };
        let hash = point.map(key_hash);
        let mut sources = vec![Source::Mem(mem)];
        sources.extend(frozen.map(Source::Mem));
        for run in runs.iter() {
            if after.is_some_and(|a| run.stats.max_seq <= a) {
                continue;
            }
            if hash.is_some_and(|h| !run.may_contain_hash(h)) {
                continue;
            }
            sources.push(Source::Run(RunCursor::new(
                Arc::clone(run),
                lo.clone(),
                hi.clone(),
                reverse,
            )));
        }
        (Merge::new(sources, reverse, after), since)
    }

    /// The newest live seq of `key` (the same under either [`Semantics`]).
    ///
    /// # Errors
    /// As [`Store::scan`].
    pub fn latest(&self, key: &[u8]) -> Result<Option<Seq>> {
        // The key's newest entry decides: a put is live exactly when no delete of the
        // key has a higher seq (a put wins over a delete at the same seq, as in
        // `live_pairs`). Each table holds its entries of a key newest first, so one
        // look per table (one block per run whose bloom filter admits the key) finds it,
        // instead of merging the key's whole group.
        let (mut best, runs) = {
            let tables = self.read();
            let best = newer(
                tables.mem.first_of(key),
                tables.frozen.as_deref().and_then(|m| m.first_of(key)),
            );
            (best, Arc::clone(&tables.runs))
        };
        let hash = key_hash(key);
        for run in runs.iter().rev() {
            if best.is_some_and(|(seq, _)| run.stats.max_seq < seq) || !run.may_contain_hash(hash) {
                continue;
            }
            best = newer(best, run.first_of(key)?);
        }
        match best {
            // A remove at the newest seq: whether it hid the put there (and so, under
            // `SingleValued`, everything) or hid nothing, only a walk of the key tells.
            Some((_, Kind::Remove)) => {
                let bound = Bound::Included(key.to_vec());
                let q = Query {
                    reverse: true,
                    limit: Some(1),
                    point: Some(key),
                    ..Query::default()
                };
                Ok(self.scan(&bound, &bound, q)?.0.first().map(|p| p.1))
            }
            Some((seq, Kind::Put)) => Ok(Some(seq)),
            _ => Ok(None),
        }
    }

    /// Every live seq of `key`, in log order (at most one under
    /// [`Semantics::SingleValued`]).
    ///
    /// # Errors
    /// As [`Store::scan`].
    pub fn seqs(&self, key: &[u8]) -> Result<Vec<Seq>> {
        let bound = Bound::Included(key.to_vec());
        let q = Query {
            point: Some(key),
            ..Query::default()
        };
        Ok(self
            .scan(&bound, &bound, q)?
            .0
            .into_iter()
            .map(|(_, s)| s)
            .collect())
    }

    // ----- writing -------------------------------------------------------------------

    /// Adds a batch's operations (`last` is the batch's last seq; the operations' seqs
    /// are at most `last` and above [`Store::since`], except a [`Kind::Remove`]'s, which
    /// is the seq of the put it removes) in one step, so readers see the
    /// store before or after the batch, never in between; then flushes the memtable when
    /// it is full.
    ///
    /// # Errors
    /// [`Error::Io`] when a flush fails (the operations are applied all the same).
    pub fn apply(&self, ops: &OpBuf, last: Seq) -> Result<()> {
        let full = {
            let mut tables = self.write();
            tables.mem.insert_batch(ops.ops());
            tables.since = Some(last);
            tables.mem.bytes() >= self.memtable_bytes
        };
        if full {
            // More is probably coming: the next memtable reuses this one's buffers.
            self.flush_and(true)?;
        }
        Ok(())
    }

    /// Writes the memtable out as a (not yet committed) run.
    ///
    /// # Errors
    /// [`Error::Io`]; the memtable is then kept as it was.
    pub fn flush(&self) -> Result<()> {
        self.flush_and(false)
    }

    /// [`Store::flush`]; with `reuse`, the written memtable's buffers (cleared) become
    /// the next memtable's, which saves growing them again (and faulting their pages in)
    /// while a build fills memtable after memtable.
    fn flush_and(&self, reuse: bool) -> Result<()> {
        let frozen = {
            let mut tables = self.write();
            if tables.mem.is_empty() {
                return Ok(());
            }
            let mut mem = std::mem::take(&mut tables.mem);
            mem.freeze();
            let mem = Arc::new(mem);
            tables.frozen = Some(Arc::clone(&mem));
            mem
        };
        let count = frozen.len() as u64;
        let keys = frozen.sorted().map(|e| Ok(Some(e)));
        let written = self.write_run(keys, count, 0, "flush", &|| false);
        let mut tables = self.write();
        match written {
            Ok(run) => {
                if let Some(run) = run {
                    tracing::debug!(
                        run = run.id,
                        entries = run.stats.entries,
                        bytes = run.stats.bytes,
                        "flushed the memtable"
                    );
                    let mut runs = Vec::clone(&tables.runs);
                    runs.push(run);
                    tables.runs = Arc::new(runs);
                }
                tables.frozen = None;
                if reuse && tables.mem.is_empty() {
                    if let Ok(mut spare) = Arc::try_unwrap(frozen) {
                        spare.clear();
                        tables.mem = spare;
                    }
                }
                Ok(())
            }
            Err(e) => {
                // Put the entries back (nothing else writes the memtable meanwhile).
                tables.frozen = None;
                let mut mem = Arc::try_unwrap(frozen).unwrap_or_else(|arc| (*arc).clone());
                mem.absorb(&tables.mem);
                tables.mem = mem;
                Err(e)
            }
        }
    }

    /// Writes entries (an iterator of `Result<Option<(key, seq, kind)>>` ending with `Ok(None)` or
    /// running out) as run `level`. `None` when there was nothing to write.
    fn write_run<K: AsRef<[u8]>>(
        &self,
        entries: impl Iterator<Item = Result<Option<(K, Seq, Kind)>>>,
        max_keys: u64,
        level: u32,
        step: &str,
        cancelled: &dyn Fn() -> bool,
    ) -> Result<Option<Arc<Run>>> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let Some(dir) = &self.dir else {
            let mut writer = RunWriter::new(Vec::new(), self.params, max_keys)
                .map_err(|e| Error::io("<memory>", e))?;
            for entry in entries {
                let Some((key, seq, kind)) = entry? else {
                    break;
                };
                writer
                    .add(key.as_ref(), seq, kind)
                    .map_err(|e| Error::io("<memory>", e))?;
            }
            if writer.entries() == 0 || cancelled() {
                return Ok(None);
            }
            let (bytes, _) = writer.finish().map_err(|e| Error::io("<memory>", e))?;
            return Ok(Some(Arc::new(Run::from_vec(bytes, id, level)?)));
        };
        let path = dir.join(files::run_name(id));
        let tmp = TempFile::create(&path)?.with_faults(&self.faults, step);
        let tmp_path = tmp.tmp_path().to_path_buf();
        let result = (|| -> Result<Option<()>> {
            let mut tmp = tmp;
            let mut writer = RunWriter::new(
                BufWriter::with_capacity(256 << 10, tmp.file()),
                self.params,
                max_keys,
            )
            .map_err(|e| Error::io(&tmp_path, e))?;
            for entry in entries {
                let Some((key, seq, kind)) = entry? else {
                    break;
                };
                writer
                    .add(key.as_ref(), seq, kind)
                    .map_err(|e| Error::io(&tmp_path, e))?;
                if writer.entries() % 4096 == 0 && cancelled() {
                    return Ok(None);
                }
            }
            if writer.entries() == 0 || cancelled() {
                return Ok(None);
            }
            self.faults.check(&format!("{step}.write"))?;
            let (buffered, _) = writer.finish().map_err(|e| Error::io(&tmp_path, e))?;
            buffered
                .into_inner()
                .map_err(|e| Error::io(&tmp_path, e.into_error()))?;
            // Fsynced and renamed; the directory is synced with the manifest that will
            // name the run.
            tmp.rename()?;
            Ok(Some(()))
        })();
        match result {
            Ok(Some(())) => Ok(Some(Arc::new(Run::open(&path, id, level)?))),
            Ok(None) => {
                durable::remove_if_present(&tmp_path)?;
                Ok(None)
            }
            Err(e) => {
                if self.faults.is_active() && e.to_string().contains("injected crash") {
                    // A simulated crash leaves the files as they are.
                    return Err(e);
                }
                let _ = durable::remove_if_present(&tmp_path);
                Err(e)
            }
        }
    }

    fn write_manifest(&self, manifest: &Manifest) -> Result<()> {
        let Some(dir) = &self.dir else {
            return Ok(());
        };
        let bytes = manifest.encode();
        let mut tmp =
            TempFile::create(dir.join(files::MANIFEST))?.with_faults(&self.faults, "manifest");
        // Half, then a crash point: a torn temporary file is one of the states a crash
        // can leave.
        let (first, second) = bytes.split_at(bytes.len() / 2);
        tmp.write_all(first)
            .map_err(|e| Error::io(tmp.tmp_path(), e))?;
        self.faults.check("manifest.write")?;
        tmp.write_all(second)
            .map_err(|e| Error::io(tmp.tmp_path(), e))?;
        // Fsync, rename over the manifest, fsync the directory (which also makes the
        // renames of the runs it names durable).
        tmp.persist().map(drop)
    }

    fn manifest_of(&self, since: Option<Seq>, runs: &[Arc<Run>]) -> Manifest {
        Manifest {
            version: self.version,
            since,
            semantics: self.semantics,
            retention: self.retention,
            runs: runs
                .iter()
                .map(|r| RunRef {
                    id: r.id,
                    level: r.level,
                })
                .collect(),
        }
    }

    /// Flushes the memtable and writes a manifest naming every run, with `since`.
    /// Returns whether the manifest changed. Does nothing unless `since` is the last
    /// seq applied.
    ///
    /// When at least [`LsmOptions::merge_fan_in`] runs were flushed since the last
    /// checkpoint (a build or a catch-up: the driver checkpoints a view only between
    /// batches, so a long one flushes many runs first), they are merged into one run
    /// first, and the manifest names that run instead: the compactor only merges runs a
    /// manifest names, and the process may end right after this checkpoint (a close),
    /// so this is the one chance to leave a single run rather than a pile of them.
    ///
    /// Crash safety of that merge: its run is written like any other (temporary file,
    /// fsync, rename) and is named by no manifest until the one this checkpoint writes;
    /// the runs it replaces are deleted only after that manifest, which no longer names
    /// them, is durable. A crash at any step leaves the previous manifest or this one,
    /// each naming only files that exist, and the next open removes the run files the
    /// surviving one does not name.
    ///
    /// # Errors
    /// [`Error::Io`]; the previous manifest then stays in force.
    pub fn checkpoint(&self, since: Seq) -> Result<bool> {
        if self.since() != Some(since) {
            return Ok(false);
        }
        self.flush()?;
        let merged = self.merge_fresh()?;
        let mut committed = lock(&self.committed);
        let mut runs = Vec::clone(&self.read().runs);
        if let Some((run, replaced)) = &merged {
            splice_ids(&mut runs, replaced, run);
        }
        let unchanged = committed.written
            && committed.since == Some(since)
            && committed.runs.len() == runs.len()
            && committed
                .runs
                .iter()
                .zip(runs.iter())
                .all(|(a, b)| a.id == b.id);
        if unchanged {
            return Ok(false);
        }
        // On an error the merged run's file stays: a manifest that reached the disk
        // despite the error may name it; otherwise the next open removes it.
        self.faults.check("merge.install")?;
        self.write_manifest(&self.manifest_of(Some(since), &runs))?;
        committed.written = true;
        committed.since = Some(since);
        committed.runs = runs.clone();
        if let Some((run, replaced)) = &merged {
            let mut tables = self.write();
            let mut visible = Vec::clone(&tables.runs);
            splice_ids(&mut visible, replaced, run);
            tables.runs = Arc::new(visible);
        }
        drop(committed);
        tracing::debug!(since, runs = runs.len(), "checkpointed the store");
        if let Some((_, replaced)) = merged {
            self.faults.check("merge.delete")?;
            for run in &replaced {
                remove_run_file(run);
            }
        }
        Ok(true)
    }

    /// Merges the runs flushed since the last checkpoint into one run, when there are
    /// at least `fan_in` of them. Returns the merged run (written, named by no
    /// manifest, not yet visible to readers) and the runs it replaces, oldest first.
    /// Readers and the compactor go on meanwhile; the caller is the view's only writer,
    /// so no flush adds a run while this one merges.
    ///
    /// # Errors
    /// [`Error::Io`] or [`Error::Corrupt`] writing or reading a run.
    fn merge_fresh(&self) -> Result<Option<Merged>> {
        let (fresh, keep_deletes) = {
            let committed = lock(&self.committed);
            let runs = Arc::clone(&self.read().runs);
            let fresh: Vec<Arc<Run>> = runs
                .iter()
                .filter(|r| !committed.runs.iter().any(|c| c.id == r.id))
                .cloned()
                .collect();
            // Deletes must stay while an older run may hold a put they hide.
            (fresh, !committed.runs.is_empty())
        };
        if fresh.len() < self.fan_in {
            return Ok(None);
        }
        let Some(merged) = self.merge_runs(&fresh, keep_deletes, "merge", &|| false)? else {
            // Everything cancelled out (deletes of keys no older run holds): the fresh
            // runs still go into the manifest as they are.
            return Ok(None);
        };
        tracing::debug!(
            merged = fresh.len(),
            level = merged.level,
            entries = merged.stats.entries,
            "merged the runs flushed since the last checkpoint"
        );
        Ok(Some((merged, fresh)))
    }

    /// Merges `runs` (oldest first) into one new run, one level above the highest of
    /// them, dropping deletes unless `keep_deletes` (an older run may hold a put they
    /// hide). `None` when nothing is left (or `cancelled`; see `write_run`).
    ///
    /// # Errors
    /// [`Error::Io`] or [`Error::Corrupt`] writing or reading a run.
    fn merge_runs(
        &self,
        runs: &[Arc<Run>],
        keep_deletes: bool,
        step: &str,
        cancelled: &dyn Fn() -> bool,
    ) -> Result<Option<Arc<Run>>> {
        let level = runs.iter().map(|r| r.level).max().unwrap_or(0) + 1;
        let max_keys: u64 = runs.iter().map(|r| r.stats.keys).sum();
        let sources = runs
            .iter()
            .map(|r| {
                Source::Run(RunCursor::new(
                    Arc::clone(r),
                    Bound::Unbounded,
                    Bound::Unbounded,
                    false,
                ))
            })
            .collect();
        let mut compacted = Compacted::new(
            Merge::new(sources, false, None),
            keep_deletes,
            self.semantics,
            self.retention,
        );
        let entries = std::iter::from_fn(|| {
            Some(
                compacted
                    .next_entry()
                    .map(|e| e.map(|e| (e.key, e.seq, e.kind))),
            )
        });
        self.write_run(entries, max_keys, level, step, cancelled)
    }

    /// Reads the manifest and opens its runs; removes files no manifest names (written
    /// after the last checkpoint, or left by an interrupted write).
    ///
    /// Returns `None` when there is nothing to load (no directory, or no manifest: the
    /// view builds from the start of the log), else the manifest's view version and
    /// `since`. When that version is not the store's, nothing is opened: the caller
    /// resets the store ([`Store::reset`]) and rebuilds. Otherwise the store holds what
    /// the manifest names and the view re-applies the records after `since`.
    ///
    /// The manifest also records the [`Semantics`] and the [`Retention`] its runs were
    /// written under. When the semantics differ, or the stored retention may have
    /// dropped entries the store's must keep (a `Live` store reopened with `All` or
    /// `Since`, `Since(a)` reopened with `All` or `Since(b)` for `b < a`), nothing is
    /// opened either, and the returned checkpoint has a version other than the
    /// store's (its bitwise complement), so that the caller (the `flume-core` driver,
    /// which compares versions) resets and rebuilds as for a version change; the
    /// reason is logged at info. A narrower retention than the stored one (`All`
    /// reopened with `Since(h)` or `Live`, `Since(a)` with `Since(b)` for `b >= a`, or
    /// with `Live`) keeps the runs; they are compacted under the store's retention
    /// from then on, and the next manifest written records it. A manifest of format
    /// version 1 (before these fields) reads as [`Semantics::MultiValued`] and
    /// [`Retention::Live`].
    ///
    /// # Errors
    /// [`Error::Corrupt`] for a damaged manifest or run; [`Error::Io`].
    pub fn load(&self) -> Result<Option<Checkpoint>> {
        let Some(dir) = &self.dir else {
            return Ok(None);
        };
        let listing = files::list(dir)?;
        let highest = listing.runs.iter().map(|(id, _)| *id).max().unwrap_or(0);
        self.next_id.fetch_max(highest + 1, Ordering::Relaxed);
        for tmp in &listing.temporary {
            tracing::debug!(path = %tmp.display(), "removing a file left by an interrupted write");
            durable::remove_if_present(tmp)?;
        }
        let path = dir.join(files::MANIFEST);
        let bytes = match fs::read(&path) {
            Ok(bytes) => Some(bytes),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => return Err(Error::io(&path, e)),
        };
        let Some(bytes) = bytes else {
            self.remove_unlisted(&listing, &[])?;
            tracing::debug!(dir = %dir.display(), "no manifest; the view builds from the start of the log");
            return Ok(None);
        };
        let manifest = Manifest::decode(&path, &bytes).inspect_err(|e| {
            tracing::warn!(error = %e, "unreadable manifest; the view will be rebuilt");
        })?;
        let checkpoint = Checkpoint {
            version: manifest.version,
            since: manifest.since,
        };
        if manifest.version != self.version {
            tracing::info!(
                stored = manifest.version,
                current = self.version,
                "the manifest has another view version; the view will be rebuilt"
            );
            return Ok(Some(checkpoint));
        }
        if let Some(why) = self.unfit(&manifest) {
            tracing::info!(
                stored_semantics = ?manifest.semantics,
                stored_retention = ?manifest.retention,
                semantics = ?self.semantics,
                retention = ?self.retention,
                "{why}; the view will be rebuilt"
            );
            // What the driver resets on: a version other than the view's.
            return Ok(Some(Checkpoint {
                version: !self.version,
                ..checkpoint
            }));
        }
        if manifest.retention != self.retention {
            tracing::info!(
                stored = ?manifest.retention,
                current = ?self.retention,
                "the manifest was written under a wider retention; the store keeps its runs and compacts them under its own from now on"
            );
        }
        let mut runs = Vec::with_capacity(manifest.runs.len());
        for r in &manifest.runs {
            let run =
                Run::open(&dir.join(files::run_name(r.id)), r.id, r.level).inspect_err(|e| {
                    tracing::warn!(error = %e, "unreadable run; the view will be rebuilt");
                })?;
            runs.push(Arc::new(run));
        }
        self.remove_unlisted(&listing, &manifest.runs)?;
        {
            let mut committed = lock(&self.committed);
            committed.written = true;
            committed.since = manifest.since;
            committed.runs = runs.clone();
        }
        *self.write() = Tables {
            runs: Arc::new(runs),
            since: manifest.since,
            ..Tables::default()
        };
        tracing::debug!(dir = %dir.display(), since = ?manifest.since, runs = manifest.runs.len(), "loaded the store");
        Ok(Some(checkpoint))
    }

    /// Why the runs a manifest names cannot serve this store, if they cannot: they were
    /// written under other [`Semantics`], or under a [`Retention`] that may have dropped
    /// entries this store's must keep (see `manifest::covers`).
    fn unfit(&self, manifest: &Manifest) -> Option<&'static str> {
        if manifest.semantics != self.semantics {
            Some("the manifest was written under other semantics")
        } else if !manifest::covers(manifest.retention, self.retention) {
            Some("the manifest was written under a retention that may have dropped history the store must keep")
        } else {
            None
        }
    }

    fn remove_unlisted(&self, listing: &files::Listing, keep: &[RunRef]) -> Result<()> {
        let mut removed = 0;
        for (id, path) in &listing.runs {
            if !keep.iter().any(|r| r.id == *id) {
                durable::remove_if_present(path)?;
                removed += 1;
            }
        }
        if removed > 0 || !listing.temporary.is_empty() {
            if let Some(dir) = &self.dir {
                durable::sync_dir(dir)?;
            }
            tracing::info!(
                removed,
                "removed runs no manifest names (written after the last checkpoint)"
            );
        }
        Ok(())
    }

    /// Wipes everything, in memory and on disk, after waiting for a compaction in
    /// progress to notice and stop.
    ///
    /// # Errors
    /// [`Error::Io`] when a file cannot be deleted.
    pub fn reset(&self) -> Result<()> {
        self.generation.fetch_add(1, Ordering::AcqRel);
        let _compacting = lock(&self.compacting);
        let mut committed = lock(&self.committed);
        *committed = Committed::default();
        *self.write() = Tables::default();
        if let Some(dir) = &self.dir {
            // The manifest first: a crash part way leaves no manifest, so the next open
            // rebuilds and removes the leftover runs.
            let manifest = dir.join(files::MANIFEST);
            if durable::remove_if_present(&manifest)? {
                durable::sync_dir(dir)?;
            }
            self.faults.check("reset.remove")?;
            let listing = files::list(dir)?;
            self.remove_unlisted(&listing, &[])?;
            for tmp in &listing.temporary {
                durable::remove_if_present(tmp)?;
            }
            tracing::debug!(dir = %dir.display(), "reset the store");
        }
        Ok(())
    }

    // ----- compaction ----------------------------------------------------------------

    /// Merges one group of committed runs, if the policy finds one: the newest
    /// [`LsmOptions::merge_fan_in`] consecutive runs of one level become one run of the
    /// next level (with `full`: every committed run, even a single one, is rewritten as
    /// one). What the merge keeps is the store's [`Retention`]'s choice. Returns whether
    /// it changed anything; without `full`, call it again until it returns `false` to
    /// merge as far as the policy goes. `stop` is
    /// polled while merging: when it returns true the merge is abandoned (so is one that
    /// a [`Store::reset`] overtakes).
    ///
    /// Readers and the writer go on meanwhile; the result is installed under a brief
    /// lock, the manifest first, and the merged runs' files are deleted after it.
    ///
    /// # Errors
    /// [`Error::Io`] or [`Error::Corrupt`]; the runs are then left as they were.
    pub fn compact(&self, full: bool, stop: &dyn Fn() -> bool) -> Result<bool> {
        let _compacting = lock(&self.compacting);
        let generation = self.generation.load(Ordering::Acquire);
        let (group, start) = {
            let committed = lock(&self.committed);
            match self.pick(&committed.runs, full) {
                Some(start_len) => (
                    committed.runs[start_len.0..start_len.0 + start_len.1].to_vec(),
                    start_len.0,
                ),
                None => return Ok(false),
            }
        };
        let keep_deletes = start > 0;
        let cancelled = || stop() || self.generation.load(Ordering::Acquire) != generation;
        let merged = self.merge_runs(&group, keep_deletes, "compact", &cancelled)?;
        if cancelled() {
            if let Some(run) = merged {
                remove_run_file(&run);
            }
            return Ok(false);
        }
        // Install: the manifest first, then what readers see, then delete the old files.
        let mut committed = lock(&self.committed);
        let ids: Vec<u64> = group.iter().map(|r| r.id).collect();
        let Some(at) = committed.runs.iter().position(|r| r.id == ids[0]) else {
            if let Some(run) = merged {
                remove_run_file(&run);
            }
            return Ok(false);
        };
        let mut runs = committed.runs.clone();
        runs.splice(at..at + ids.len(), merged.clone());
        let install = self
            .faults
            .check("compact.install")
            .and_then(|()| self.write_manifest(&self.manifest_of(committed.since, &runs)));
        if let Err(e) = install {
            if self.faults.is_active() && e.to_string().contains("injected crash") {
                // A simulated crash leaves the files as they are.
                return Err(e);
            }
            if let Some(run) = merged {
                remove_run_file(&run);
            }
            return Err(e);
        }
        committed.runs = runs;
        {
            let mut tables = self.write();
            let mut visible = Vec::clone(&tables.runs);
            if let Some(at) = visible.iter().position(|r| r.id == ids[0]) {
                visible.splice(at..at + ids.len(), merged.clone());
            }
            tables.runs = Arc::new(visible);
        }
        drop(committed);
        tracing::debug!(
            merged = ids.len(),
            level = merged.as_ref().map_or(0, |r| r.level),
            entries = merged.as_ref().map_or(0, |r| r.stats.entries),
            dropped_deletes = !keep_deletes,
            "compacted runs"
        );
        self.faults.check("compact.delete")?;
        for run in &group {
            remove_run_file(run);
        }
        Ok(true)
    }

    /// The runs to merge: `(first index, count)`.
    fn pick(&self, runs: &[Arc<Run>], full: bool) -> Option<(usize, usize)> {
        if full {
            return (!runs.is_empty()).then_some((0, runs.len()));
        }
        let n = self.fan_in;
        if runs.len() < n {
            return None;
        }
        (0..=runs.len() - n)
            .rev()
            .find(|&start| {
                runs[start..start + n]
                    .iter()
                    .all(|r| r.level == runs[start].level)
            })
            .map(|start| (start, n))
    }
}

/// Replaces `replaced` (consecutive in `runs`) by `run`.
fn splice_ids(runs: &mut Vec<Arc<Run>>, replaced: &[Arc<Run>], run: &Arc<Run>) {
    if let Some(at) = runs.iter().position(|r| r.id == replaced[0].id) {
        let end = (at + replaced.len()).min(runs.len());
        runs.splice(at..end, [Arc::clone(run)]);
    }
}

fn remove_run_file(run: &Run) {
    if let Some(path) = &run.path {
        if let Err(e) = durable::remove_if_present(path) {
            tracing::warn!(error = %e, "could not delete a compacted run; it is removed at the next open");
        }
    }
}
