//! Crate-level tests of the engine's semantics, retention and history reads: unit tests
//! of each, and a model-based property test against a `BTreeMap` of every key's full
//! history, through flushes, checkpoints, compactions, reopens and crashes.
//! (`flumeview-index` has the crash-point and multi-valued model tests of the view.)

use std::collections::{BTreeMap, BTreeSet};
use std::ops::Bound;
use std::path::Path;

use flume_core::{Result, Seq};
use proptest::prelude::*;

use crate::key::{above_lo, below_hi, prefix_end};
use crate::{Kind, LsmOptions, OpBuf, Query, Retention, Semantics, Store, CRASH_POINTS};

use Kind::{Delete, Put, Remove};

/// One record's operations: a kind, a key and, for a remove, the seq of the put it
/// removes (ignored otherwise).
type Ops = Vec<(Kind, Vec<u8>, Seq)>;

fn small() -> LsmOptions {
    LsmOptions::default()
        .memtable_bytes(300)
        .block_bytes(64)
        .merge_fan_in(2)
        .background_compaction(false)
}

fn open(dir: Option<&Path>, semantics: Semantics, retention: Retention) -> Store {
    Store::new(
        1,
        &small(),
        dir.map(Path::to_path_buf),
        semantics,
        retention,
    )
}

/// Applies one record's operations at `seq`.
fn apply(store: &Store, seq: Seq, ops: &[(Kind, &[u8])]) -> Result<()> {
    let ops: Ops = ops.iter().map(|(k, key)| (*k, key.to_vec(), 0)).collect();
    apply_owned(store, seq, &ops)
}

fn apply_owned(store: &Store, seq: Seq, ops: &Ops) -> Result<()> {
    let mut buf = OpBuf::default();
    let mut emit = buf.emit(seq);
    for (kind, key, target) in ops {
        match kind {
            Put => emit.put(key),
            Delete => emit.delete(key),
            Remove => emit.remove(key, *target),
        }
    }
    store.apply(&buf, seq)
}

fn all(store: &Store, reverse: bool, limit: Option<usize>) -> Vec<(Vec<u8>, Seq)> {
    range(store, &Bound::Unbounded, &Bound::Unbounded, reverse, limit)
}

fn range(
    store: &Store,
    lo: &Bound<Vec<u8>>,
    hi: &Bound<Vec<u8>>,
    reverse: bool,
    limit: Option<usize>,
) -> Vec<(Vec<u8>, Seq)> {
    let q = Query {
        reverse,
        limit,
        ..Query::default()
    };
    let (pairs, _) = store.scan(lo, hi, q).expect("scan");
    pairs.into_iter().map(|(k, s)| (k.into_vec(), s)).collect()
}

fn pairs(v: &[(&str, Seq)]) -> Vec<(Vec<u8>, Seq)> {
    v.iter().map(|(k, s)| (k.as_bytes().to_vec(), *s)).collect()
}

fn unbounded() -> (Bound<Vec<u8>>, Bound<Vec<u8>>) {
    (Bound::Unbounded, Bound::Unbounded)
}

/// The same records, read in memory, from runs, and from one compacted run.
fn each_layout(
    semantics: Semantics,
    retention: Retention,
    records: &[Ops],
    check: impl Fn(&Store, &str),
) {
    for layout in ["memtable", "runs", "compacted"] {
        let store = open(None, semantics, retention);
        for (seq, ops) in records.iter().enumerate() {
            apply_owned(&store, seq as Seq, ops).expect("apply");
            if layout != "memtable" {
                store.flush().expect("flush");
            }
        }
        if layout == "compacted" {
            store
                .checkpoint(records.len() as Seq - 1)
                .expect("checkpoint");
            store.compact(true, &|| false).expect("compact");
            assert!(store.run_count() <= 1);
        }
        check(&store, layout);
    }
}

fn ops(v: &[(Kind, &str)]) -> Ops {
    v.iter()
        .map(|(k, key)| (*k, key.as_bytes().to_vec(), 0))
        .collect()
}

#[test]
fn a_single_valued_put_hides_the_older_entries_of_its_key() {
    let records = [
        ops(&[(Put, "k")]),
        ops(&[(Put, "k"), (Put, "j")]),
        ops(&[(Put, "k")]),
        ops(&[(Put, "j"), (Delete, "j")]),
        ops(&[(Delete, "i"), (Put, "i")]),
    ];
    each_layout(
        Semantics::SingleValued,
        Retention::Live,
        &records,
        |s, at| {
            assert_eq!(
                all(s, false, None),
                pairs(&[("i", 4), ("j", 3), ("k", 2)]),
                "{at}"
            );
            assert_eq!(
                all(s, true, None),
                pairs(&[("k", 2), ("j", 3), ("i", 4)]),
                "{at}"
            );
            assert_eq!(all(s, false, Some(2)), pairs(&[("i", 4), ("j", 3)]), "{at}");
            assert_eq!(all(s, true, Some(1)), pairs(&[("k", 2)]), "{at}");
            assert_eq!(s.seqs(b"k").expect("seqs"), [2], "{at}");
            assert_eq!(s.latest(b"k").expect("latest"), Some(2), "{at}");
            assert_eq!(s.latest(b"j").expect("latest"), Some(3), "{at}");
            let (lo, hi) = unbounded();
            assert_eq!(s.count(&lo, &hi).expect("count"), (3, Some(4)), "{at}");
        },
    );
    // The same records in an index keep every put since the last delete.
    each_layout(
        Semantics::MultiValued,
        Retention::Live,
        &records,
        |s, at| {
            let expected = [("i", 4), ("j", 3), ("k", 0), ("k", 1), ("k", 2)];
            assert_eq!(all(s, false, None), pairs(&expected), "{at}");
            assert_eq!(s.seqs(b"k").expect("seqs"), [0, 1, 2], "{at}");
            let (lo, hi) = unbounded();
            assert_eq!(s.count(&lo, &hi).expect("count"), (5, Some(4)), "{at}");
        },
    );
}

/// Records of a "remove one entry" scenario: puts of `k`, removes by later records (one
/// aimed above its record, ignored), and a put of `j` removed by the next record.
fn removals() -> Vec<Ops> {
    vec![
        vec![(Put, b"k".to_vec(), 0)],
        vec![(Put, b"k".to_vec(), 0)],
        vec![(Put, b"k".to_vec(), 0), (Remove, b"k".to_vec(), 1)],
        vec![(Remove, b"k".to_vec(), 0)],
        vec![(Put, b"j".to_vec(), 0)],
        vec![(Remove, b"j".to_vec(), 4), (Remove, b"k".to_vec(), 9)],
    ]
}

#[test]
fn a_remove_hides_exactly_its_put_in_every_layout() {
    for retention in [Retention::Live, Retention::All] {
        each_layout(
            Semantics::MultiValued,
            retention,
            &removals(),
            |store, layout| {
                assert_eq!(all(store, false, None), pairs(&[("k", 2)]), "{layout}");
                assert_eq!(store.seqs(b"k").expect("seqs"), [2], "{layout}");
                assert_eq!(store.latest(b"k").expect("latest"), Some(2), "{layout}");
                assert_eq!(store.latest(b"j").expect("latest"), None, "{layout}");
                assert_eq!(
                    store
                        .count(&unbounded().0, &unbounded().1)
                        .expect("count")
                        .0,
                    1
                );
                let history = store.history(b"k").expect("history");
                match (retention, layout) {
                    // A compaction drops each remove with its put.
                    (Retention::Live, "compacted") => assert_eq!(history, [(2, Put)]),
                    _ => assert_eq!(
                        history,
                        [(2, Put), (1, Remove), (1, Put), (0, Remove), (0, Put)],
                        "{layout}"
                    ),
                }
            },
        );
    }
}

#[test]
fn a_removed_single_valued_put_still_hides_what_it_hid() {
    let mut records = removals();
    records.truncate(3);
    for retention in [Retention::Live, Retention::All] {
        each_layout(
            Semantics::SingleValued,
            retention,
            &records,
            |store, layout| {
                // Put 2 is the key's value; removing put 1 changes nothing.
                assert_eq!(store.latest(b"k").expect("latest"), Some(2), "{layout}");
            },
        );
    }
    records.push(vec![(Remove, b"k".to_vec(), 2)]);
    for retention in [Retention::Live, Retention::All] {
        each_layout(
            Semantics::SingleValued,
            retention,
            &records,
            |store, layout| {
                // Put 2 is removed; it still hides put 0 (and put 1).
                assert_eq!(all(store, false, None), [], "{layout}");
                assert_eq!(store.latest(b"k").expect("latest"), None, "{layout}");
                assert_eq!(
                    store.seqs(b"k").expect("seqs"),
                    Vec::<Seq>::new(),
                    "{layout}"
                );
            },
        );
    }
}

#[test]
fn reapplying_a_record_changes_nothing() -> Result<()> {
    let store = open(None, Semantics::MultiValued, Retention::All);
    for (seq, ops) in removals().iter().enumerate() {
        apply_owned(&store, seq as Seq, ops)?;
        store.flush()?;
        apply_owned(&store, seq as Seq, ops)?;
    }
    assert_eq!(all(&store, false, None), pairs(&[("k", 2)]));
    assert_eq!(
        store.history(b"k")?,
        [(2, Put), (1, Remove), (1, Put), (0, Remove), (0, Put)]
    );
    let (changes, _) = store.changes(&unbounded().0, &unbounded().1, None)?;
    let changes: Vec<(Seq, Kind)> = changes.into_iter().map(|(_, s, k)| (s, k)).collect();
    // At one seq and key: the put, then the remove that came later.
    assert_eq!(
        changes,
        [
            (0, Put),
            (0, Remove),
            (1, Put),
            (1, Remove),
            (2, Put),
            (4, Put),
            (4, Remove)
        ]
    );
    Ok(())
}

#[test]
fn a_cursor_resumes_a_scan_after_a_pair_in_both_directions() {
    let records: Vec<Ops> = (0..6)
        .map(|i| ops(&[(Put, "a"), (Put, if i % 2 == 0 { "b" } else { "c" })]))
        .collect();
    each_layout(
        Semantics::MultiValued,
        Retention::Live,
        &records,
        |store, layout| {
            let (lo, hi) = unbounded();
            let page = |cursor: Option<(&[u8], Seq)>, reverse| {
                let q = Query {
                    reverse,
                    limit: Some(3),
                    cursor,
                    ..Query::default()
                };
                let (pairs, _) = store.scan(&lo, &hi, q).expect("scan");
                pairs
                    .into_iter()
                    .map(|(k, s)| (k.into_vec(), s))
                    .collect::<Vec<_>>()
            };
            assert_eq!(
                page(Some((b"a", 3)), false),
                pairs(&[("a", 4), ("a", 5), ("b", 0)])
            );
            assert_eq!(
                page(Some((b"a", 5)), false),
                pairs(&[("b", 0), ("b", 2), ("b", 4)])
            );
            assert_eq!(
                page(Some((b"b", 2)), true),
                pairs(&[("b", 0), ("a", 5), ("a", 4)])
            );
            assert_eq!(
                page(Some((b"bb", 0)), true),
                pairs(&[("b", 4), ("b", 2), ("b", 0)])
            );
            assert_eq!(page(Some((b"c", 5)), false), [], "{layout}");
            assert_eq!(page(Some((b"a", 0)), true), [], "{layout}");
            // One key, from a cursor.
            let key = Bound::Included(b"a".to_vec());
            let q = Query {
                limit: Some(2),
                cursor: Some((b"a", 1)),
                ..Query::default()
            };
            let (one, _) = store.scan(&key, &key, q).expect("scan");
            assert_eq!(one.iter().map(|p| p.1).collect::<Vec<_>>(), [2, 3]);
        },
    );
}

/// A key of many entries in a large memtable, most of its puts removed by later
/// batches: one-key pages (which copy memtable parts a bounded number at a time, and
/// start again uncut when a part runs out) match a plain filter, in memory and after a
/// flush.
#[test]
fn pages_of_a_big_key_in_the_memtable() {
    let store = Store::new(
        1,
        &LsmOptions::default().background_compaction(false),
        None,
        Semantics::MultiValued,
        Retention::All,
    );
    let mut buf = OpBuf::default();
    for seq in 0..300u64 {
        buf.clear();
        buf.emit(seq).put(b"k");
        if seq == 10 {
            buf.emit(seq).delete(b"k");
        }
        store.apply(&buf, seq).expect("apply");
    }
    buf.clear();
    for seq in 300..500u64 {
        buf.emit(seq).remove(b"k", seq - 290);
    }
    store.apply(&buf, 499).expect("apply");
    // Live: puts 10 (a put wins over a delete at its seq) to 299, minus 10..=209.
    let live: Vec<(Vec<u8>, Seq)> = (210..300).map(|s| (b"k".to_vec(), s)).collect();
    let key = Bound::Included(b"k".to_vec());
    for flushed in [false, true] {
        if flushed {
            store.flush().expect("flush");
        }
        for page in [1, 7] {
            assert_eq!(
                paged(&store, &key, &key, false, page),
                live,
                "{flushed} {page}"
            );
            let mut rev = live.clone();
            rev.reverse();
            assert_eq!(
                paged(&store, &key, &key, true, page),
                rev,
                "{flushed} {page}"
            );
        }
        assert_eq!(store.latest(b"k").expect("latest"), Some(299));
    }
}

#[test]
fn a_delete_hides_a_single_valued_key() {
    let records = [
        ops(&[(Put, "a"), (Put, "b")]),
        ops(&[(Delete, "a")]),
        ops(&[(Put, "c")]),
        ops(&[(Delete, "c"), (Put, "a")]),
    ];
    each_layout(
        Semantics::SingleValued,
        Retention::Live,
        &records,
        |s, at| {
            assert_eq!(all(s, false, None), pairs(&[("a", 3), ("b", 0)]), "{at}");
            assert_eq!(s.latest(b"c").expect("latest"), None, "{at}");
            assert!(s.seqs(b"c").expect("seqs").is_empty(), "{at}");
        },
    );
}

#[test]
fn count_counts_what_scan_returns_within_bounds() {
    let store = open(None, Semantics::SingleValued, Retention::Live);
    for i in 0..50u64 {
        let key = crate::key::u64(i % 20);
        let kind = if i % 7 == 6 { Delete } else { Put };
        apply(&store, i, &[(kind, &key[..])]).expect("apply");
        if i % 9 == 0 {
            store.flush().expect("flush");
        }
    }
    let bounds = [
        (Bound::Unbounded, Bound::Unbounded),
        (
            Bound::Included(crate::key::u64(3).to_vec()),
            Bound::Excluded(crate::key::u64(11).to_vec()),
        ),
        (
            Bound::Excluded(crate::key::u64(3).to_vec()),
            Bound::Included(crate::key::u64(11).to_vec()),
        ),
        (
            Bound::Included(crate::key::u64(9).to_vec()),
            Bound::Included(crate::key::u64(2).to_vec()),
        ),
    ];
    for (lo, hi) in &bounds {
        let scanned = range(&store, lo, hi, false, None).len();
        assert_eq!(store.count(lo, hi).expect("count"), (scanned, Some(49)));
    }
    assert!(store.count(&bounds[0].0, &bounds[0].1).expect("count").0 > 0);
}

#[test]
fn history_lists_every_stored_entry_of_a_key_newest_first() {
    let records = [
        ops(&[(Put, "k"), (Put, "other")]),
        ops(&[(Delete, "k")]),
        ops(&[(Put, "k"), (Delete, "k")]),
        ops(&[(Put, "kk")]),
        ops(&[(Put, "k")]),
    ];
    let expected = [(4, Put), (2, Put), (2, Delete), (1, Delete), (0, Put)];
    for semantics in [Semantics::MultiValued, Semantics::SingleValued] {
        each_layout(semantics, Retention::All, &records, |s, at| {
            assert_eq!(s.history(b"k").expect("history"), expected, "{at}");
            assert_eq!(s.history(b"kk").expect("history"), [(3, Put)], "{at}");
            assert!(s.history(b"absent").expect("history").is_empty(), "{at}");
        });
    }
    // Split over memtables and runs, with the frozen memtable in the middle.
    let store = open(None, Semantics::SingleValued, Retention::Live);
    for (seq, ops) in records.iter().enumerate() {
        apply_owned(&store, seq as Seq, ops).expect("apply");
        if seq == 1 {
            store.flush().expect("flush");
        }
    }
    assert_eq!(store.history(b"k").expect("history"), expected);
}

#[test]
fn changes_are_every_entry_after_a_seq_in_seq_order() {
    let records = [
        ops(&[(Put, "b"), (Put, "a")]),
        ops(&[(Delete, "b")]),
        ops(&[(Put, "c"), (Delete, "c"), (Put, "a")]),
        ops(&[]),
        ops(&[(Put, "b")]),
    ];
    each_layout(
        Semantics::SingleValued,
        Retention::All,
        &records,
        |s, at| {
            let (lo, hi) = unbounded();
            let (changes, since) = s.changes(&lo, &hi, None).expect("changes");
            let changes: Vec<(Vec<u8>, Seq, Kind)> = changes
                .into_iter()
                .map(|(k, s, kind)| (k.into_vec(), s, kind))
                .collect();
            let b = |k: &str| k.as_bytes().to_vec();
            assert_eq!(
                changes,
                [
                    (b("a"), 0, Put),
                    (b("b"), 0, Put),
                    (b("b"), 1, Delete),
                    (b("a"), 2, Put),
                    (b("c"), 2, Delete),
                    (b("c"), 2, Put),
                    (b("b"), 4, Put),
                ],
                "{at}"
            );
            assert_eq!(since, Some(4), "{at}");
            let (after, _) = s.changes(&lo, &hi, Some(1)).expect("changes");
            assert_eq!(after.len(), 4, "{at}");
            assert!(after.iter().all(|(_, seq, _)| *seq > 1), "{at}");
            let only_b = Bound::Included(b("b"));
            let (just_b, _) = s.changes(&only_b, &only_b, None).expect("changes");
            let seqs: Vec<Seq> = just_b.iter().map(|(_, s, _)| *s).collect();
            assert_eq!(seqs, [0, 1, 4], "{at}");
            let (none, since) = s.changes(&lo, &hi, Some(4)).expect("changes");
            assert!(none.is_empty(), "{at}");
            assert_eq!(since, Some(4), "{at}");
        },
    );
}

/// One key's history through five records, then everything compacted into one run.
fn compacted_history(semantics: Semantics, retention: Retention) -> Vec<(Seq, Kind)> {
    let records = [
        ops(&[(Put, "k")]),
        ops(&[(Put, "k")]),
        ops(&[(Delete, "k")]),
        ops(&[(Put, "k")]),
        ops(&[(Put, "k")]),
    ];
    let store = open(None, semantics, retention);
    for (seq, ops) in records.iter().enumerate() {
        apply_owned(&store, seq as Seq, ops).expect("apply");
        store.flush().expect("flush");
    }
    store.checkpoint(4).expect("checkpoint");
    store.compact(true, &|| false).expect("compact");
    assert_eq!(store.run_count(), 1);
    store.history(b"k").expect("history")
}

#[test]
fn compaction_keeps_what_the_retention_says() {
    use Semantics::{MultiValued, SingleValued};
    let every = vec![(4, Put), (3, Put), (2, Delete), (1, Put), (0, Put)];
    assert_eq!(compacted_history(SingleValued, Retention::Live), [(4, Put)]);
    assert_eq!(
        compacted_history(MultiValued, Retention::Live),
        [(4, Put), (3, Put)]
    );
    assert_eq!(compacted_history(SingleValued, Retention::All), every);
    assert_eq!(compacted_history(MultiValued, Retention::All), every);
    assert_eq!(
        compacted_history(SingleValued, Retention::Since(2)),
        [(4, Put), (3, Put), (2, Delete)]
    );
    assert_eq!(
        compacted_history(SingleValued, Retention::Since(1)),
        [(4, Put), (3, Put), (2, Delete), (1, Put)]
    );
    assert_eq!(
        compacted_history(SingleValued, Retention::Since(3)),
        [(4, Put), (3, Put)]
    );
    assert_eq!(
        compacted_history(SingleValued, Retention::Since(9)),
        [(4, Put)]
    );
    // An index also keeps its live puts at or below the horizon.
    assert_eq!(
        compacted_history(MultiValued, Retention::Since(4)),
        [(4, Put), (3, Put)]
    );
}

#[test]
fn a_merge_of_newer_runs_keeps_the_deletes_older_runs_need() {
    // The oldest run holds a put; the newer ones a put, a delete and an unrelated put.
    // A merge of the newer two alone must keep the delete (and may drop the put it
    // hides).
    let store = open(None, Semantics::SingleValued, Retention::Live);
    apply(&store, 0, &[(Put, b"k")]).expect("apply");
    store.checkpoint(0).expect("checkpoint");
    apply(&store, 1, &[(Put, b"k")]).expect("apply");
    apply(&store, 2, &[(Delete, b"k")]).expect("apply");
    store.flush().expect("flush");
    apply(&store, 3, &[(Put, b"j")]).expect("apply");
    store.flush().expect("flush");
    assert_eq!(store.run_count(), 3);
    // The checkpoint merges the two runs flushed since the last one (`merge_fan_in`).
    store.checkpoint(3).expect("checkpoint");
    assert_eq!(store.run_count(), 2);
    assert_eq!(store.latest(b"k").expect("latest"), None);
    assert_eq!(
        store.history(b"k").expect("history"),
        [(2, Delete), (0, Put)]
    );
    // A merge of every run drops the delete and what it hides.
    assert!(store.compact(true, &|| false).expect("compact"));
    assert_eq!(store.run_count(), 1);
    assert!(store.history(b"k").expect("history").is_empty());
    assert_eq!(all(&store, false, None), pairs(&[("j", 3)]));
}

#[test]
fn semantics_and_retention_survive_a_reopen() -> Result<()> {
    let dir = tempfile::tempdir().map_err(|e| flume_core::Error::io("tempdir", e))?;
    let store = open(Some(dir.path()), Semantics::SingleValued, Retention::All);
    assert_eq!(store.load()?, None);
    apply(&store, 0, &[(Put, b"k")])?;
    apply(&store, 1, &[(Put, b"k")])?;
    store.checkpoint(1)?;
    drop(store);
    let store = open(Some(dir.path()), Semantics::SingleValued, Retention::All);
    let loaded = store.load()?.expect("a manifest");
    assert_eq!(loaded.since, Some(1));
    assert_eq!(store.history(b"k")?, [(1, Put), (0, Put)]);
    assert_eq!(all(&store, false, None), pairs(&[("k", 1)]));
    Ok(())
}

/// Opens the store in `dir` with `semantics` and `retention` and loads it: the
/// checkpoint it returns, and the store.
fn reopen(
    dir: &Path,
    semantics: Semantics,
    retention: Retention,
) -> Result<(Option<flume_core::Checkpoint>, Store)> {
    let store = open(Some(dir), semantics, retention);
    let loaded = store.load()?;
    Ok((loaded, store))
}

/// Five records on one key (put, put, delete, put, put), checkpointed, and every run
/// compacted into one under `retention`.
fn compacted_store(dir: &Path, semantics: Semantics, retention: Retention) -> Result<()> {
    let store = open(Some(dir), semantics, retention);
    assert_eq!(store.load()?, None);
    for (seq, kind) in [Put, Put, Delete, Put, Put].into_iter().enumerate() {
        apply(&store, seq as Seq, &[(kind, b"k")])?;
        store.flush()?;
    }
    store.checkpoint(4)?;
    store.compact(true, &|| false)?;
    assert_eq!(store.run_count(), 1);
    Ok(())
}

#[test]
fn a_retention_that_dropped_history_the_store_must_keep_asks_for_a_rebuild() -> Result<()> {
    use Semantics::{MultiValued, SingleValued};
    let dir = tempfile::tempdir().map_err(|e| flume_core::Error::io("tempdir", e))?;
    compacted_store(dir.path(), SingleValued, Retention::Live)?;
    // The hidden entries are gone.
    let (loaded, store) = reopen(dir.path(), SingleValued, Retention::Live)?;
    let loaded = loaded.expect("a manifest");
    assert_eq!((loaded.version, loaded.since), (1, Some(4)));
    assert_eq!(store.history(b"k")?, [(4, Put)]);
    drop(store);
    // A store that must keep history, or hides differently, gets a checkpoint of
    // another version (the driver resets and rebuilds), and opens nothing.
    for (semantics, retention) in [
        (SingleValued, Retention::All),
        (SingleValued, Retention::Since(0)),
        (SingleValued, Retention::Since(9)),
        (MultiValued, Retention::Live),
    ] {
        let (loaded, store) = reopen(dir.path(), semantics, retention)?;
        let loaded = loaded.expect("a manifest");
        assert_ne!(loaded.version, 1, "{semantics:?} {retention:?}");
        assert_eq!(loaded.since, Some(4));
        assert_eq!(store.run_count(), 0);
        assert_eq!(store.since(), None);
        assert!(store.history(b"k")?.is_empty());
    }
    // Nothing was removed: the same retention still loads it.
    let (loaded, store) = reopen(dir.path(), SingleValued, Retention::Live)?;
    assert_eq!(loaded.map(|c| c.version), Some(1));
    assert_eq!(store.latest(b"k")?, Some(4));
    // What the driver does then: reset, rebuild, checkpoint; the new manifest records
    // the new retention.
    drop(store);
    let (_, store) = reopen(dir.path(), SingleValued, Retention::All)?;
    store.reset()?;
    assert_eq!(store.load()?, None);
    for (seq, kind) in [Put, Put, Delete, Put, Put].into_iter().enumerate() {
        apply(&store, seq as Seq, &[(kind, b"k")])?;
    }
    store.checkpoint(4)?;
    drop(store);
    let (loaded, store) = reopen(dir.path(), SingleValued, Retention::All)?;
    assert_eq!(loaded.map(|c| c.version), Some(1));
    assert_eq!(store.history(b"k")?.len(), 5);
    Ok(())
}

#[test]
fn a_since_store_rebuilds_for_an_earlier_horizon_and_keeps_its_runs_for_a_later_one() -> Result<()>
{
    let dir = tempfile::tempdir().map_err(|e| flume_core::Error::io("tempdir", e))?;
    compacted_store(dir.path(), Semantics::SingleValued, Retention::Since(2))?;
    let kept = [(4, Put), (3, Put), (2, Delete)];
    for retention in [Retention::All, Retention::Since(1)] {
        let (loaded, _) = reopen(dir.path(), Semantics::SingleValued, retention)?;
        assert_ne!(loaded.map(|c| c.version), Some(1), "{retention:?}");
    }
    for retention in [Retention::Since(2), Retention::Since(3)] {
        let (loaded, store) = reopen(dir.path(), Semantics::SingleValued, retention)?;
        assert_eq!(loaded.map(|c| c.version), Some(1), "{retention:?}");
        assert_eq!(store.history(b"k")?, kept);
    }
    // A Live store takes the runs too (every retention keeps the live answers).
    let (loaded, store) = reopen(dir.path(), Semantics::SingleValued, Retention::Live)?;
    assert_eq!(loaded.map(|c| c.version), Some(1));
    assert_eq!(store.latest(b"k")?, Some(4));
    Ok(())
}

#[test]
fn a_narrower_retention_keeps_the_runs_and_the_next_manifest_records_it() -> Result<()> {
    let dir = tempfile::tempdir().map_err(|e| flume_core::Error::io("tempdir", e))?;
    compacted_store(dir.path(), Semantics::SingleValued, Retention::All)?;
    let every = [(4, Put), (3, Put), (2, Delete), (1, Put), (0, Put)];
    let (loaded, store) = reopen(dir.path(), Semantics::SingleValued, Retention::Since(3))?;
    assert_eq!(loaded.map(|c| (c.version, c.since)), Some((1, Some(4))));
    assert_eq!(store.history(b"k")?, every);
    drop(store);
    // Until a manifest is written, the runs are still what `All` kept.
    let (loaded, store) = reopen(dir.path(), Semantics::SingleValued, Retention::All)?;
    assert_eq!(loaded.map(|c| c.version), Some(1));
    drop(store);
    // A compaction under Since(3) drops history at or below 3 and records Since(3).
    let (_, store) = reopen(dir.path(), Semantics::SingleValued, Retention::Since(3))?;
    assert!(store.compact(true, &|| false)?);
    assert_eq!(store.history(b"k")?, [(4, Put), (3, Put)]);
    drop(store);
    let (loaded, _) = reopen(dir.path(), Semantics::SingleValued, Retention::All)?;
    assert_ne!(loaded.map(|c| c.version), Some(1));
    let (loaded, _) = reopen(dir.path(), Semantics::SingleValued, Retention::Since(2))?;
    assert_ne!(loaded.map(|c| c.version), Some(1));
    let (loaded, store) = reopen(dir.path(), Semantics::SingleValued, Retention::Since(3))?;
    assert_eq!(loaded.map(|c| c.version), Some(1));
    assert_eq!(store.history(b"k")?, [(4, Put), (3, Put)]);
    Ok(())
}

/// A compactor thread merges committed runs when poked, and stops when dropped.
#[test]
fn a_compactor_merges_committed_runs_in_the_background() -> Result<()> {
    let store = std::sync::Arc::new(open(None, Semantics::SingleValued, Retention::Live));
    for seq in 0..8u64 {
        let key = crate::key::u64(seq % 3);
        apply(&store, seq, &[(Put, &key[..])])?;
        // One run per checkpoint: fewer than `merge_fan_in` fresh runs are committed as
        // they are.
        store.checkpoint(seq)?;
    }
    assert_eq!(store.run_count(), 8);
    let compactor =
        crate::Compactor::start(&store).map_err(|e| flume_core::Error::io("thread", e))?;
    compactor.poke();
    // Fan-in 2: 8 runs of level 0 become one of level 3. Poll (no timing asserted).
    for _ in 0..6000 {
        if store.run_count() == 1 {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    drop(compactor);
    assert_eq!(store.run_count(), 1);
    assert_eq!(
        all(&store, false, None),
        [
            (crate::key::u64(0).to_vec(), 6),
            (crate::key::u64(1).to_vec(), 7),
            (crate::key::u64(2).to_vec(), 5),
        ]
    );
    assert_eq!(store.history(&crate::key::u64(0))?, [(6, Put)]);
    Ok(())
}

// ----- the model ---------------------------------------------------------------------

/// Every entry ever applied: key -> (seq, kind), newest first (at one seq a remove, a
/// put, a delete), as the engine orders a key's entries.
#[derive(Debug, Default, Clone)]
struct Model(BTreeMap<Vec<u8>, BTreeSet<(std::cmp::Reverse<Seq>, Kind)>>);

impl Model {
    fn of(records: &[Ops]) -> Model {
        let mut m = Model::default();
        for (seq, ops) in records.iter().enumerate() {
            for (kind, key, target) in ops {
                let at = if *kind == Remove { *target } else { seq as Seq };
                if at <= seq as Seq {
                    m.0.entry(key.clone())
                        .or_default()
                        .insert((std::cmp::Reverse(at), *kind));
                }
            }
        }
        m
    }

    fn history(&self, key: &[u8]) -> Vec<(Seq, Kind)> {
        self.0
            .get(key)
            .map(|h| h.iter().map(|(s, k)| (s.0, *k)).collect())
            .unwrap_or_default()
    }

    /// The key's live seqs, oldest first: the puts above its newest delete (under
    /// `SingleValued`, its newest put or delete, if a put), minus the removed ones.
    fn live(&self, key: &[u8], semantics: Semantics) -> Vec<Seq> {
        let history = self.history(key);
        let removed: BTreeSet<Seq> = history
            .iter()
            .filter(|(_, k)| *k == Remove)
            .map(|(s, _)| *s)
            .collect();
        let mut live = Vec::new();
        for (seq, kind) in history {
            match kind {
                Remove => continue,
                Delete => break,
                Put if !removed.contains(&seq) => live.push(seq),
                Put => {}
            }
            if semantics == Semantics::SingleValued {
                break;
            }
        }
        live.reverse();
        live
    }

    fn pairs(
        &self,
        lo: &Bound<Vec<u8>>,
        hi: &Bound<Vec<u8>>,
        semantics: Semantics,
    ) -> Vec<(Vec<u8>, Seq)> {
        self.0
            .keys()
            .filter(|k| above_lo(k, lo) && below_hi(k, hi))
            .flat_map(|k| {
                self.live(k, semantics)
                    .into_iter()
                    .map(move |s| (k.clone(), s))
            })
            .collect()
    }
}

/// Checks every read against the model: the live answers exactly, the stored history
/// between what the retention must keep and everything.
fn check(
    store: &Store,
    model: &Model,
    keys: &BTreeSet<Vec<u8>>,
) -> std::result::Result<(), TestCaseError> {
    let semantics = store.semantics();
    let (lo, hi) = unbounded();
    let every = model.pairs(&lo, &hi, semantics);
    prop_assert_eq!(&all(store, false, None), &every);
    let mut rev = every.clone();
    rev.reverse();
    prop_assert_eq!(&all(store, true, None), &rev);
    prop_assert_eq!(store.count(&lo, &hi).expect("count").0, every.len());
    // Live scans ask only for what is above a seq they have seen.
    if let Some(mid) = store.since().map(|s| s / 2) {
        let q = Query {
            after: Some(mid),
            ..Query::default()
        };
        let (above, _) = store.scan(&lo, &hi, q).expect("scan");
        let above: Vec<(Vec<u8>, Seq)> =
            above.into_iter().map(|(k, s)| (k.into_vec(), s)).collect();
        let expected: Vec<_> = every.iter().filter(|(_, s)| *s > mid).cloned().collect();
        prop_assert_eq!(above, expected);
    }
    let mut stored: Vec<(Vec<u8>, Seq, Kind)> = Vec::new();
    for key in keys.iter().chain([b"zz".to_vec()].iter()) {
        let live = model.live(key, semantics);
        prop_assert_eq!(store.seqs(key).expect("seqs"), live.clone());
        prop_assert_eq!(store.latest(key).expect("latest"), live.last().copied());
        let p_lo = Bound::Included(key.clone());
        let p_hi = prefix_end(key).map_or(Bound::Unbounded, Bound::Excluded);
        let expected = model.pairs(&p_lo, &p_hi, semantics);
        prop_assert_eq!(store.count(&p_lo, &p_hi).expect("count").0, expected.len());
        for limit in [1, 2] {
            let forward: Vec<_> = expected.iter().take(limit).cloned().collect();
            prop_assert_eq!(range(store, &p_lo, &p_hi, false, Some(limit)), forward);
            let backward: Vec<_> = expected.iter().rev().take(limit).cloned().collect();
            prop_assert_eq!(range(store, &p_lo, &p_hi, true, Some(limit)), backward);
        }
        // Page through the key and through the prefix, both ways, with cursors.
        for (lo, hi) in [
            (Bound::Included(key.clone()), Bound::Included(key.clone())),
            (p_lo.clone(), p_hi.clone()),
        ] {
            let expected = model.pairs(&lo, &hi, semantics);
            for reverse in [false, true] {
                for page in [1, 3] {
                    let got = paged(store, &lo, &hi, reverse, page);
                    let mut want = expected.clone();
                    if reverse {
                        want.reverse();
                    }
                    prop_assert_eq!(got, want, "reverse {} page {}", reverse, page);
                }
            }
        }
        let history = store.history(key).expect("history");
        let full = model.history(key);
        // Newest first, and only entries that were applied.
        prop_assert!(history
            .windows(2)
            .all(|w| (std::cmp::Reverse(w[0].0), w[0].1) < (std::cmp::Reverse(w[1].0), w[1].1)));
        prop_assert!(
            history.iter().all(|e| full.contains(e)),
            "{:?} not in {:?}",
            history,
            full
        );
        let must: Vec<(Seq, Kind)> = match store.retention() {
            Retention::All => full.clone(),
            Retention::Live => Vec::new(),
            Retention::Since(h) => {
                let newest_below = full.iter().find(|(s, _)| *s <= h).copied();
                full.iter()
                    .filter(|(s, _)| *s > h)
                    .copied()
                    .chain(newest_below)
                    .collect()
            }
        };
        for e in &must {
            prop_assert!(
                history.contains(e),
                "{:?} dropped from {:?} ({:?})",
                e,
                history,
                full
            );
        }
        stored.extend(history.into_iter().map(|(s, kind)| (key.clone(), s, kind)));
    }
    // `changes` is the stored history of every key, in seq order.
    let rank = |k: Kind| match k {
        Delete => 0,
        Put => 1,
        Remove => 2,
    };
    stored.sort_by(|a, b| (a.1, &a.0, rank(a.2)).cmp(&(b.1, &b.0, rank(b.2))));
    let (changes, since) = store.changes(&lo, &hi, None).expect("changes");
    let changes: Vec<(Vec<u8>, Seq, Kind)> = changes
        .into_iter()
        .map(|(k, s, kind)| (k.into_vec(), s, kind))
        .collect();
    prop_assert_eq!(&changes, &stored);
    if let Some(mid) = since.map(|s| s / 2) {
        let (later, _) = store.changes(&lo, &hi, Some(mid)).expect("changes");
        let later: Vec<(Vec<u8>, Seq, Kind)> = later
            .into_iter()
            .map(|(k, s, kind)| (k.into_vec(), s, kind))
            .collect();
        let expected: Vec<_> = stored.iter().filter(|c| c.1 > mid).cloned().collect();
        prop_assert_eq!(later, expected);
    }
    Ok(())
}

/// Every pair within bounds, read `page` at a time, each page resumed after the last
/// pair of the one before with a cursor.
fn paged(
    store: &Store,
    lo: &Bound<Vec<u8>>,
    hi: &Bound<Vec<u8>>,
    reverse: bool,
    page: usize,
) -> Vec<(Vec<u8>, Seq)> {
    let mut out: Vec<(Vec<u8>, Seq)> = Vec::new();
    loop {
        let last = out.last().cloned();
        let q = Query {
            reverse,
            limit: Some(page),
            cursor: last.as_ref().map(|(k, s)| (&k[..], *s)),
            ..Query::default()
        };
        let (pairs, _) = store.scan(lo, hi, q).expect("scan");
        let n = pairs.len();
        out.extend(pairs.into_iter().map(|(k, s)| (k.into_vec(), s)));
        if n < page {
            return out;
        }
        assert!(out.len() < 100_000, "paging does not end");
    }
}

#[derive(Debug, Clone)]
enum Action {
    Record(Ops),
    Flush,
    Checkpoint,
    Compact,
    CompactAll,
    /// Checkpoint, drop, open again.
    Reopen,
    /// Drop without a checkpoint; re-apply the records after the loaded since.
    Crash,
    /// Many records putting one key.
    Fill,
}

fn key() -> impl Strategy<Value = Vec<u8>> {
    proptest::collection::vec(prop_oneof![Just(0u8), Just(b'a'), Just(0xffu8)], 0..3)
}

fn action() -> impl Strategy<Value = Action> {
    // A remove targets one of the last few seqs (the record itself included; a target
    // above it is ignored, which the model knows too).
    let op = (
        prop_oneof![6 => Just(Put), 2 => Just(Delete), 3 => Just(Remove)],
        key(),
        0u64..4,
    );
    prop_oneof![
        20 => proptest::collection::vec(op, 0..4).prop_map(Action::Record),
        2 => Just(Action::Fill),
        2 => Just(Action::Flush),
        2 => Just(Action::Checkpoint),
        3 => Just(Action::Compact),
        1 => Just(Action::CompactAll),
        1 => Just(Action::Reopen),
        1 => Just(Action::Crash),
    ]
}

fn retention() -> impl Strategy<Value = Retention> {
    prop_oneof![
        Just(Retention::Live),
        Just(Retention::All),
        (0u64..40).prop_map(Retention::Since),
    ]
}

fn run_model(
    semantics: Semantics,
    retention: Retention,
    actions: Vec<Action>,
    persist: bool,
) -> std::result::Result<(), TestCaseError> {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = persist.then(|| tmp.path());
    let mut store = open(dir, semantics, retention);
    prop_assert_eq!(store.load().expect("load"), None);
    let mut records: Vec<Ops> = Vec::new();
    let mut keys = BTreeSet::new();
    let last = |records: &Vec<Ops>| records.len().checked_sub(1).map(|s| s as Seq);
    for action in actions {
        match action {
            Action::Record(ops) => {
                let seq = records.len() as Seq;
                let ops: Ops = ops
                    .into_iter()
                    .map(|(kind, k, back)| (kind, k, seq.saturating_sub(back)))
                    .collect();
                keys.extend(ops.iter().map(|(_, k, _)| k.clone()));
                apply_owned(&store, seq, &ops).expect("apply");
                records.push(ops);
            }
            Action::Fill => {
                // A key of many entries (many blocks): puts, and a remove of every
                // third one.
                keys.insert(b"a".to_vec());
                for i in 0..40 {
                    let seq = records.len() as Seq;
                    let mut ops: Ops = vec![(Put, b"a".to_vec(), 0)];
                    if i % 3 == 2 {
                        ops.push((Remove, b"a".to_vec(), seq - 1));
                    }
                    apply_owned(&store, seq, &ops).expect("apply");
                    records.push(ops);
                }
            }
            Action::Flush => store.flush().expect("flush"),
            Action::Checkpoint => {
                if let Some(since) = last(&records) {
                    store.checkpoint(since).expect("checkpoint");
                }
            }
            Action::Compact => {
                store.compact(false, &|| false).expect("compact");
            }
            Action::CompactAll => {
                store.compact(true, &|| false).expect("compact");
            }
            Action::Reopen | Action::Crash if persist => {
                if matches!(action, Action::Reopen) {
                    if let Some(since) = last(&records) {
                        store.checkpoint(since).expect("checkpoint");
                    }
                }
                drop(store);
                store = open(dir, semantics, retention);
                let since = store.load().expect("load").and_then(|c| c.since);
                let resume = since.map_or(0, |s| s as usize + 1);
                if matches!(action, Action::Reopen) {
                    prop_assert_eq!(resume, records.len());
                }
                check(&store, &Model::of(&records[..resume]), &keys)?;
                for (seq, ops) in records.iter().enumerate().skip(resume) {
                    apply_owned(&store, seq as Seq, ops).expect("apply");
                }
            }
            Action::Reopen | Action::Crash => {}
        }
    }
    check(&store, &Model::of(&records), &keys)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    /// A key-value store (single-valued) under each retention, persisted: reads match
    /// the model through flushes, checkpoints, compactions, reopens and crashes.
    #[test]
    fn single_valued_store_matches_the_model(
        retention in retention(),
        actions in proptest::collection::vec(action(), 1..60),
    ) {
        run_model(Semantics::SingleValued, retention, actions, true)?;
    }

    /// The same in memory.
    #[test]
    fn single_valued_store_in_memory_matches_the_model(
        retention in retention(),
        actions in proptest::collection::vec(action(), 1..60),
    ) {
        run_model(Semantics::SingleValued, retention, actions, false)?;
    }

    /// A multi-valued store (an index) under each retention.
    #[test]
    fn multi_valued_store_matches_the_model(
        retention in retention(),
        actions in proptest::collection::vec(action(), 1..60),
    ) {
        run_model(Semantics::MultiValued, retention, actions, true)?;
    }
}

// ----- crashes -----------------------------------------------------------------------

/// A deterministic workload: record `i` puts, deletes and removes (the puts of the
/// last few records) a few of 30 keys.
fn workload(n: usize) -> Vec<Ops> {
    let mut x: u64 = 0x2545_f491_4f6c_dd1d;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    (0..n as Seq)
        .map(|seq| {
            (0..next() % 3)
                .map(|_| {
                    let key = format!("k{:02}", next() % 30).into_bytes();
                    let kind = if next() % 4 == 0 { Delete } else { Put };
                    // Every fifth record's puts remove the put of the record before
                    // instead (drawing nothing more, so that the flushes and merges
                    // happen where they did before removes existed).
                    if kind == Put && seq % 5 == 4 {
                        (Remove, key, seq - 1)
                    } else {
                        (kind, key, 0)
                    }
                })
                .collect()
        })
        .collect()
}

/// Applies the workload as a view would: a checkpoint every 20 records and a
/// compaction after each, and a reset (then the rebuild) at record 120.
fn drive(store: &Store, records: &[Ops]) -> Result<()> {
    let mut seq = 0;
    let mut reset_done = false;
    while seq < records.len() {
        apply_owned(store, seq as Seq, &records[seq])?;
        if seq % 20 == 19 {
            store.checkpoint(seq as Seq)?;
            while store.compact(false, &|| false)? {}
        }
        if seq == 120 && !reset_done {
            reset_done = true;
            store.reset()?;
            seq = 0;
            continue;
        }
        seq += 1;
    }
    store.checkpoint(records.len() as Seq - 1)?;
    Ok(())
}

/// A crash at each step of each file operation of a key-value store that keeps every
/// entry leaves a directory that opens to an earlier consistent state (live answers and
/// history), resumes, and keeps no stray file.
#[test]
fn a_crash_at_any_step_leaves_a_consistent_store() -> std::result::Result<(), TestCaseError> {
    let records = workload(200);
    let keys: BTreeSet<Vec<u8>> = records
        .iter()
        .flatten()
        .map(|(_, k, _)| k.clone())
        .collect();
    let options = LsmOptions::default()
        .memtable_bytes(1500)
        .block_bytes(128)
        .merge_fan_in(2)
        .background_compaction(false);
    let open = |dir: &Path| {
        Store::new(
            1,
            &options,
            Some(dir.to_path_buf()),
            Semantics::SingleValued,
            Retention::All,
        )
        .with_faults(flume_core::durable::Faults::new())
    };
    let mut fired = BTreeSet::new();
    for point in CRASH_POINTS {
        for countdown in [0, 3] {
            let tmp = tempfile::tempdir().expect("tempdir");
            let store = open(tmp.path());
            store.load().expect("load");
            store.faults().arm(point, countdown);
            let result = drive(&store, &records);
            let crashed = store.faults().fired();
            match &result {
                Ok(()) => prop_assert!(!crashed, "{} #{}: fired but succeeded", point, countdown),
                Err(flume_core::Error::Io { path, source }) => {
                    prop_assert!(crashed, "{} #{}: {}", point, countdown, source);
                    prop_assert_eq!(path, Path::new(point));
                    prop_assert_eq!(source.to_string(), format!("injected crash at {point}"));
                }
                Err(e) => prop_assert!(
                    false,
                    "{} #{}: not the injected crash: {:?}",
                    point,
                    countdown,
                    e
                ),
            }
            if crashed {
                fired.insert(*point);
            }
            drop(store);

            let store = open(tmp.path());
            let since = store.load().expect("load").and_then(|c| c.since);
            let resume = since.map_or(0, |s| s as usize + 1);
            check(&store, &Model::of(&records[..resume]), &keys)?;
            for (seq, ops) in records.iter().enumerate().skip(resume) {
                apply_owned(&store, seq as Seq, ops).expect("apply");
            }
            store
                .checkpoint(records.len() as Seq - 1)
                .expect("checkpoint");
            store.compact(true, &|| false).expect("compact");
            check(&store, &Model::of(&records), &keys)?;
            drop(store);
            let store = open(tmp.path());
            store.load().expect("load");
            let files: Vec<String> = std::fs::read_dir(tmp.path())
                .expect("list")
                .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
                .collect();
            let runs = files.iter().filter(|f| f.ends_with(".run")).count();
            prop_assert_eq!(
                runs,
                store.run_count(),
                "{} #{}: {:?}",
                point,
                countdown,
                files
            );
            prop_assert!(!files.iter().any(|f| f.ends_with(".tmp")), "{:?}", files);
        }
    }
    let missed: Vec<_> = CRASH_POINTS
        .iter()
        .filter(|p| !fired.contains(*p))
        .collect();
    prop_assert!(
        missed.is_empty(),
        "crash points never reached: {:?}",
        missed
    );
    Ok(())
}
