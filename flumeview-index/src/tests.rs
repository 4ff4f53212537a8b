//! Crate-level tests of the storage engine: a model-based property test against a
//! `BTreeMap`, and crash points at every step of flushes, checkpoints, compactions and
//! resets.

use std::collections::{BTreeMap, BTreeSet};
use std::ops::Bound;
use std::path::Path;
use std::sync::Arc;

use flume_core::{BoxError, Error, Seq, View};
use proptest::prelude::*;

use flume_lsm::key::{above_lo, below_hi, prefix_end};
use flume_lsm::{Kind, Query, Store, CRASH_POINTS};

use crate::{Index, IndexOptions};

/// One record's operations.
type Ops = Vec<(Kind, Vec<u8>)>;

/// The model: key -> live seqs.
#[derive(Debug, Default, Clone, PartialEq)]
struct Model(BTreeMap<Vec<u8>, BTreeSet<Seq>>);

impl Model {
    fn apply(&mut self, seq: Seq, ops: &Ops) {
        // A delete at `seq` removes puts below `seq` (all existing ones), whatever the
        // order of the record's operations; its puts then count.
        for (kind, key) in ops {
            if *kind == Kind::Delete {
                self.0.remove(key);
            }
        }
        for (kind, key) in ops {
            if *kind == Kind::Put {
                self.0.entry(key.clone()).or_default().insert(seq);
            }
        }
    }

    fn of(records: &[Ops]) -> Model {
        let mut m = Model::default();
        for (seq, ops) in records.iter().enumerate() {
            m.apply(seq as Seq, ops);
        }
        m
    }

    fn pairs(&self, lo: &Bound<Vec<u8>>, hi: &Bound<Vec<u8>>) -> Vec<(Vec<u8>, Seq)> {
        self.0
            .iter()
            .filter(|(k, _)| above_lo(k, lo) && below_hi(k, hi))
            .flat_map(|(k, seqs)| seqs.iter().map(move |s| (k.clone(), *s)))
            .collect()
    }
}

fn index(dir: Option<&Path>, options: IndexOptions) -> Index<()> {
    let idx = Index::new(1, |_: &(), _| {}).options(options);
    match dir {
        Some(d) => idx.persist(d),
        None => idx,
    }
}

fn apply(idx: &mut Index<()>, seq: Seq, ops: &Ops) -> Result<(), BoxError> {
    idx.apply_with(seq, |e| {
        for (kind, key) in ops {
            match kind {
                Kind::Put => e.put(key),
                Kind::Delete => e.delete(key),
                Kind::Remove => e.remove(key, seq),
            }
        }
    })
}

fn scan(
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
    store
        .scan(lo, hi, q)
        .expect("scan")
        .0
        .into_iter()
        .map(|(k, s)| (k.into_vec(), s))
        .collect()
}

/// Checks every kind of read against the model.
fn check(store: &Arc<Store>, model: &Model, keys: &BTreeSet<Vec<u8>>) -> Result<(), TestCaseError> {
    let all = model.pairs(&Bound::Unbounded, &Bound::Unbounded);
    prop_assert_eq!(
        &scan(store, &Bound::Unbounded, &Bound::Unbounded, false, None),
        &all
    );
    let mut rev = all.clone();
    rev.reverse();
    prop_assert_eq!(
        &scan(store, &Bound::Unbounded, &Bound::Unbounded, true, None),
        &rev
    );
    for key in keys.iter().chain([b"zz".to_vec()].iter()) {
        let live = model.0.get(key).cloned().unwrap_or_default();
        prop_assert_eq!(
            store.seqs(key).expect("seqs"),
            live.iter().copied().collect::<Vec<_>>()
        );
        prop_assert_eq!(store.latest(key).expect("latest"), live.last().copied());
        // Prefix scans with limits, both ways.
        let lo = Bound::Included(key.clone());
        let hi = prefix_end(key).map_or(Bound::Unbounded, Bound::Excluded);
        let expected = model.pairs(&lo, &hi);
        for limit in [1, 3] {
            let forward: Vec<_> = expected.iter().take(limit).cloned().collect();
            prop_assert_eq!(scan(store, &lo, &hi, false, Some(limit)), forward);
            let backward: Vec<_> = expected.iter().rev().take(limit).cloned().collect();
            prop_assert_eq!(scan(store, &lo, &hi, true, Some(limit)), backward);
        }
        // Exclusive bounds.
        let ex = Bound::Excluded(key.clone());
        prop_assert_eq!(
            scan(store, &ex, &Bound::Unbounded, false, None),
            model.pairs(&ex, &Bound::Unbounded)
        );
        let mut below = model.pairs(&Bound::Unbounded, &ex);
        below.reverse();
        prop_assert_eq!(scan(store, &Bound::Unbounded, &ex, true, None), below);
    }
    Ok(())
}

#[derive(Debug, Clone)]
enum Action {
    Record(Ops),
    Flush,
    Checkpoint,
    Compact,
    CompactAll,
    /// Checkpoint, close, open again.
    Reopen,
    /// Drop without a checkpoint; the driver re-feeds records after the loaded since.
    Crash,
    Reset,
}

fn key() -> impl Strategy<Value = Vec<u8>> {
    proptest::collection::vec(
        prop_oneof![Just(0u8), Just(b'a'), Just(b'b'), Just(0xffu8)],
        0..3,
    )
}

fn action() -> impl Strategy<Value = Action> {
    let op = (
        prop_oneof![4 => Just(Kind::Put), 1 => Just(Kind::Delete)],
        key(),
    );
    prop_oneof![
        20 => proptest::collection::vec(op, 0..4).prop_map(Action::Record),
        2 => Just(Action::Flush),
        2 => Just(Action::Checkpoint),
        2 => Just(Action::Compact),
        1 => Just(Action::CompactAll),
        1 => Just(Action::Reopen),
        1 => Just(Action::Crash),
        1 => Just(Action::Reset),
    ]
}

fn run_model(actions: Vec<Action>, persist: bool) -> Result<(), TestCaseError> {
    let dir = tempfile::tempdir().expect("tempdir");
    let dir = persist.then(|| dir.path().to_path_buf());
    let options = IndexOptions::default()
        .memtable_bytes(300)
        .block_bytes(64)
        .merge_fan_in(2)
        .background_compaction(false);
    let mut idx = index(dir.as_deref(), options);
    prop_assert_eq!(View::<()>::load(&mut idx).expect("load"), None);
    let mut records: Vec<Ops> = Vec::new();
    let mut keys = BTreeSet::new();
    for action in actions {
        match action {
            Action::Record(ops) => {
                keys.extend(ops.iter().map(|(_, k)| k.clone()));
                apply(&mut idx, records.len() as Seq, &ops).expect("apply");
                records.push(ops);
            }
            Action::Flush => idx.store().flush().expect("flush"),
            Action::Checkpoint => {
                if let Some(since) = records.len().checked_sub(1) {
                    View::<()>::checkpoint(&mut idx, since as Seq).expect("checkpoint");
                }
            }
            Action::Compact => {
                idx.store().compact(false, &|| false).expect("compact");
            }
            Action::CompactAll => {
                idx.store().compact(true, &|| false).expect("compact");
            }
            Action::Reopen | Action::Crash if dir.is_some() => {
                if matches!(action, Action::Reopen) {
                    if let Some(since) = records.len().checked_sub(1) {
                        View::<()>::checkpoint(&mut idx, since as Seq).expect("checkpoint");
                    }
                }
                drop(idx);
                idx = index(dir.as_deref(), options);
                let loaded = View::<()>::load(&mut idx).expect("load");
                let since = loaded.and_then(|c| c.since);
                let resume = since.map_or(0, |s| s as usize + 1);
                if matches!(action, Action::Reopen) {
                    prop_assert_eq!(resume, records.len());
                }
                check(idx.store(), &Model::of(&records[..resume]), &keys)?;
                for (seq, ops) in records.iter().enumerate().skip(resume) {
                    apply(&mut idx, seq as Seq, ops).expect("apply");
                }
            }
            Action::Reopen | Action::Crash => {}
            Action::Reset => {
                View::<()>::reset(&mut idx).expect("reset");
                check(idx.store(), &Model::default(), &keys)?;
                for (seq, ops) in records.iter().enumerate() {
                    apply(&mut idx, seq as Seq, ops).expect("apply");
                }
            }
        }
    }
    check(idx.store(), &Model::of(&records), &keys)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    /// Random puts, deletes, flushes, checkpoints, compactions, reopens, crashes and
    /// resets, checked against a `BTreeMap` after each reopen and at the end.
    #[test]
    fn persisted_index_matches_the_model(actions in proptest::collection::vec(action(), 1..60)) {
        run_model(actions, true)?;
    }

    /// The same without a directory: runs in memory.
    #[test]
    fn in_memory_index_matches_the_model(actions in proptest::collection::vec(action(), 1..60)) {
        run_model(actions, false)?;
    }
}

/// A deterministic workload: record `i` puts and deletes a few keys.
fn workload(n: usize) -> Vec<Ops> {
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    (0..n)
        .map(|_| {
            let mut ops = Vec::new();
            for _ in 0..(next() % 3) {
                let key = format!("k{:02}", next() % 40).into_bytes();
                let kind = if next() % 5 == 0 {
                    Kind::Delete
                } else {
                    Kind::Put
                };
                ops.push((kind, key));
            }
            ops
        })
        .collect()
}

/// Runs the workload: checkpoints every 25 records, a compaction after each, and a
/// reset (followed by the rebuild the driver would do) at record 150.
fn drive(idx: &mut Index<()>, records: &[Ops]) -> Result<(), BoxError> {
    let mut seq = 0;
    let mut reset_done = false;
    while seq < records.len() {
        apply(idx, seq as Seq, &records[seq])?;
        if seq % 25 == 24 {
            View::<()>::checkpoint(idx, seq as Seq)?;
            idx.store().compact(false, &|| false)?;
        }
        if seq == 150 && !reset_done {
            reset_done = true;
            View::<()>::reset(idx)?;
            seq = 0;
            continue;
        }
        seq += 1;
    }
    View::<()>::checkpoint(idx, records.len() as Seq - 1)?;
    Ok(())
}

/// A crash (an error, then the process state thrown away) at each step of each file
/// operation leaves a directory that opens to an earlier consistent state, and resumes.
#[test]
fn a_crash_at_any_step_resumes_from_a_consistent_state() -> Result<(), BoxError> {
    let records = workload(260);
    let keys: BTreeSet<Vec<u8>> = records.iter().flatten().map(|(_, k)| k.clone()).collect();
    let options = IndexOptions::default()
        .memtable_bytes(2000)
        .block_bytes(128)
        .merge_fan_in(2)
        .background_compaction(false);
    let mut fired = BTreeSet::new();
    for point in CRASH_POINTS {
        for countdown in [0, 2, 5] {
            let dir = tempfile::tempdir()?;
            let mut idx = index(Some(dir.path()), options);
            View::<()>::load(&mut idx)?;
            idx.store().faults().arm(point, countdown);
            let result = drive(&mut idx, &records);
            let crashed = idx.store().faults().fired();
            // Failing exactly when the crash fired, and with the injected crash itself.
            match &result {
                Ok(()) => assert!(!crashed, "{point} #{countdown}: fired but succeeded"),
                Err(e) => match e.downcast_ref::<Error>() {
                    Some(Error::Io { path, source }) => {
                        assert!(crashed, "{point} #{countdown}: {e}");
                        assert_eq!(path, Path::new(point), "{point} #{countdown}");
                        assert_eq!(source.to_string(), format!("injected crash at {point}"));
                    }
                    _ => panic!("{point} #{countdown}: not the injected crash: {e:?}"),
                },
            }
            if crashed {
                fired.insert(*point);
            }
            drop(idx);

            let mut idx = index(Some(dir.path()), options);
            let since = View::<()>::load(&mut idx)?.and_then(|c| c.since);
            let resume = since.map_or(0, |s| s as usize + 1);
            check(idx.store(), &Model::of(&records[..resume]), &keys)
                .map_err(|e| format!("{point} #{countdown}, after reopening at {since:?}: {e}"))?;
            for (seq, ops) in records.iter().enumerate().skip(resume) {
                apply(&mut idx, seq as Seq, ops)?;
            }
            View::<()>::checkpoint(&mut idx, records.len() as Seq - 1)?;
            idx.store().compact(true, &|| false)?;
            check(idx.store(), &Model::of(&records), &keys)
                .map_err(|e| format!("{point} #{countdown}, after catching up: {e}"))?;
            // Nothing a crash left behind survives the next open.
            drop(idx);
            let mut idx = index(Some(dir.path()), options);
            View::<()>::load(&mut idx)?;
            let files: Vec<String> = std::fs::read_dir(dir.path())?
                .map(|e| e.map(|e| e.file_name().to_string_lossy().into_owned()))
                .collect::<Result<_, _>>()?;
            let runs = files.iter().filter(|f| f.ends_with(".run")).count();
            assert_eq!(
                runs,
                idx.store().run_count(),
                "{point} #{countdown}: {files:?}"
            );
            assert!(
                !files.iter().any(|f| f.ends_with(".tmp")),
                "{point} #{countdown}: {files:?}"
            );
        }
    }
    let missed: Vec<_> = CRASH_POINTS
        .iter()
        .filter(|p| !fired.contains(*p))
        .collect();
    assert!(missed.is_empty(), "crash points never reached: {missed:?}");
    Ok(())
}

/// A damaged manifest or run is an error from `load` (the driver then resets).
#[test]
fn damaged_files_fail_the_load() -> Result<(), BoxError> {
    let records = workload(100);
    let options = IndexOptions::default()
        .memtable_bytes(1500)
        .background_compaction(false);
    let dir = tempfile::tempdir()?;
    let mut idx = index(Some(dir.path()), options);
    View::<()>::load(&mut idx)?;
    drive(&mut idx, &records)?;
    drop(idx);
    let manifest = dir.path().join("MANIFEST");
    let good = std::fs::read(&manifest)?;
    let mut bad = good.clone();
    bad[9] ^= 1;
    std::fs::write(&manifest, &bad)?;
    let mut idx = index(Some(dir.path()), options);
    let err = View::<()>::load(&mut idx).expect_err("damaged manifest");
    assert!(
        matches!(err.downcast_ref(), Some(flume_core::Error::Corrupt { .. })),
        "{err}"
    );
    drop(idx);
    std::fs::write(&manifest, &good)?;
    let run = std::fs::read_dir(dir.path())?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| p.extension().is_some_and(|e| e == "run"))
        .expect("a run");
    let len = std::fs::metadata(&run)?.len();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&run)?
        .set_len(len - 3)?;
    let mut idx = index(Some(dir.path()), options);
    let err = View::<()>::load(&mut idx).expect_err("truncated run");
    assert!(
        matches!(err.downcast_ref(), Some(flume_core::Error::Corrupt { .. })),
        "{err}"
    );
    View::<()>::reset(&mut idx)?;
    drop(idx);
    let mut idx = index(Some(dir.path()), options);
    assert_eq!(View::<()>::load(&mut idx)?, None);
    Ok(())
}

/// Another version in the manifest is reported without opening the runs.
#[test]
fn another_version_is_reported() -> Result<(), BoxError> {
    let dir = tempfile::tempdir()?;
    let mut idx = index(Some(dir.path()), IndexOptions::default());
    View::<()>::load(&mut idx)?;
    apply(&mut idx, 0, &vec![(Kind::Put, b"a".to_vec())])?;
    View::<()>::checkpoint(&mut idx, 0)?;
    drop(idx);
    let mut v2: Index<()> = Index::new(2, |_: &(), _| {}).persist(dir.path());
    let loaded = View::<()>::load(&mut v2)?.expect("a manifest");
    assert_eq!((loaded.version, loaded.since), (1, Some(0)));
    Ok(())
}

/// A second open index on the same directory is refused.
#[test]
fn the_directory_is_locked() -> Result<(), BoxError> {
    let dir = tempfile::tempdir()?;
    let mut first = index(Some(dir.path()), IndexOptions::default());
    View::<()>::load(&mut first)?;
    let mut second = index(Some(dir.path()), IndexOptions::default());
    let started = std::time::Instant::now();
    let err = View::<()>::load(&mut second).expect_err("locked");
    assert!(
        matches!(err.downcast_ref(), Some(flume_core::Error::Locked { .. })),
        "{err}"
    );
    assert!(started.elapsed() >= std::time::Duration::from_secs(1));
    Ok(())
}

/// A checkpoint after many flushes merges the runs it commits into one, keeping the
/// deletes that hide puts in older, committed runs; the answers stay the model's, before
/// and after reopening, and the merged-away run files are gone.
#[test]
fn a_checkpoint_merges_the_runs_flushed_since_the_last() -> Result<(), BoxError> {
    let records = workload(600);
    let keys: BTreeSet<Vec<u8>> = records.iter().flatten().map(|(_, k)| k.clone()).collect();
    let options = IndexOptions::default()
        .memtable_bytes(1000)
        .block_bytes(128)
        .merge_fan_in(4)
        .background_compaction(false);
    let dir = tempfile::tempdir()?;
    let run_files = || -> std::io::Result<usize> {
        Ok(std::fs::read_dir(dir.path())?
            .filter_map(|e| e.ok())
            .filter(|e| e.file_name().to_string_lossy().ends_with(".run"))
            .count())
    };
    let mut idx = index(Some(dir.path()), options);
    View::<()>::load(&mut idx)?;
    // Two builds, each checkpointed once at its end: the second one's deletes must
    // survive its merge, since the first one's run holds puts they hide.
    for (start, end) in [(0, 300), (300, 600)] {
        for (seq, ops) in records.iter().enumerate().take(end).skip(start) {
            apply(&mut idx, seq as Seq, ops)?;
        }
        let before = idx.store().run_count();
        assert!(before >= 5 + start / 300, "{before} runs");
        View::<()>::checkpoint(&mut idx, end as Seq - 1)?;
        assert_eq!(idx.store().run_count(), 1 + start / 300);
        assert_eq!(run_files()?, 1 + start / 300);
        check(idx.store(), &Model::of(&records[..end]), &keys)
            .map_err(|e| format!("after the checkpoint at {end}: {e}"))?;
    }
    drop(idx);
    let mut idx = index(Some(dir.path()), options);
    let since = View::<()>::load(&mut idx)?.and_then(|c| c.since);
    assert_eq!(since, Some(599));
    assert_eq!(idx.store().run_count(), 2);
    check(idx.store(), &Model::of(&records), &keys).map_err(|e| format!("reopened: {e}"))?;
    // Fewer than `merge_fan_in` new runs are committed as they are.
    apply(&mut idx, 600, &vec![(Kind::Put, b"k01".to_vec())])?;
    View::<()>::checkpoint(&mut idx, 600)?;
    assert_eq!(idx.store().run_count(), 3);
    Ok(())
}
