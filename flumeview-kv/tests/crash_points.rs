//! Injected crashes at every step of the view's file operations: a directory written by
//! the engine configured as a key-value view (single-valued, every version kept), and
//! crashed at a flush, a manifest write, a merge, a compaction or a reset, opens as a
//! `Kv` that answers exactly what a view rebuilt from the log answers.
//!
//! The engine is driven directly, the way the view drives it (each record's final
//! operation per key, checkpoints, compactions, a reset), because the crash points are
//! the engine's: a crash is the injected error, then the process state thrown away.

mod common_watch;

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use common_watch::{counting_kv, dump, Rec, TestResult};
use flume_core::durable::Faults;
use flume_core::{Error, Flume, Seq, Wait};
use flume_lsm::{Kind, LsmOptions, OpBuf, Retention, Semantics, Store, CRASH_POINTS};
use flumelog_memory::MemoryLog;
use flumeview_kv::{Key, KvReader};

const RECORDS: u64 = 260;
const KEYS: u64 = 40;

fn key(i: u64) -> String {
    format!("k{:02}", i.wrapping_mul(17) % KEYS)
}

/// Record `i`: mostly sets, some removes, some moves (a delete and a put in one record,
/// or a delete and a put of one key, which is a put).
fn rec(i: u64) -> Rec {
    match i % 9 {
        4 => Rec::Remove(key(i)),
        6 => Rec::Move(key(i), key(i + 3), i),
        8 => Rec::Move(key(i), key(i), i),
        _ => Rec::Set(key(i), i),
    }
}

/// What the view hands the engine for a record: each key's final operation.
fn ops(rec: &Rec) -> Vec<(Kind, String)> {
    match rec {
        Rec::Set(k, _) => vec![(Kind::Put, k.clone())],
        Rec::Remove(k) => vec![(Kind::Delete, k.clone())],
        Rec::Move(from, to, _) if from == to => vec![(Kind::Put, to.clone())],
        Rec::Move(from, to, _) => vec![(Kind::Delete, from.clone()), (Kind::Put, to.clone())],
    }
}

fn options() -> LsmOptions {
    LsmOptions::default()
        .memtable_bytes(600)
        .block_bytes(128)
        .merge_fan_in(2)
        .background_compaction(false)
}

/// The engine as `Kv::new(1, ..).persist(dir)` with `History::All` makes it.
fn store(dir: &Path, faults: &Faults) -> Store {
    Store::new(
        1,
        &options(),
        Some(dir.to_path_buf()),
        Semantics::SingleValued,
        Retention::All,
    )
    .with_faults(faults.clone())
}

fn apply(store: &Store, seq: Seq) -> flume_core::Result<()> {
    let mut buf = OpBuf::default();
    for (kind, k) in ops(&rec(seq)) {
        let mut bytes = Vec::new();
        k.encode(&mut bytes);
        buf.push(seq, kind, &bytes);
    }
    store.apply(&buf, seq)
}

/// The view's life: checkpoints every 25 records with a compaction after each, and a
/// reset (then the rebuild the driver would do) at record 150.
fn drive(store: &Store) -> flume_core::Result<()> {
    let mut seq = 0;
    let mut reset_done = false;
    while seq < RECORDS {
        apply(store, seq)?;
        if seq % 25 == 24 {
            store.checkpoint(seq)?;
            store.compact(false, &|| false)?;
        }
        if seq == 150 && !reset_done {
            reset_done = true;
            store.reset()?;
            seq = 0;
            continue;
        }
        seq += 1;
    }
    store.checkpoint(RECORDS - 1)?;
    Ok(())
}

/// The view over the log of every record: persisted in `dir` (resuming from what is
/// there), or in memory; its dump, and how many records it mapped to catch up.
async fn open(
    log: &MemoryLog,
    dir: Option<&Path>,
) -> flume_core::Result<(common_watch::Dump, u64)> {
    let seen = Arc::new(AtomicU64::new(0));
    let view = counting_kv(&seen).options(options());
    let view = match dir {
        Some(d) => view.persist(d),
        None => view,
    };
    let db = Flume::<Rec>::new(log.reopen());
    let reader: KvReader<Rec, String, u64> = db.add_view("kv", view)?;
    reader.version(&key(0), Wait::Log).await?;
    let mapped = seen.load(Ordering::Relaxed);
    let found = dump(&reader, (0..KEYS).map(key)).await?;
    db.close().await?;
    Ok((found, mapped))
}

#[tokio::test]
async fn a_crash_at_any_step_reopens_equal_to_a_rebuild() -> TestResult {
    let log = MemoryLog::new();
    let bytes = (0..RECORDS)
        .map(|i| serde_json::to_vec(&rec(i)).map(bytes::Bytes::from))
        .collect::<Result<Vec<_>, _>>()?;
    flume_core::Log::append_batch(&log, bytes).await?;
    let (expected, mapped) = open(&log, None).await?;
    assert_eq!(mapped, RECORDS);

    let mut fired = BTreeSet::new();
    let mut resumed = 0;
    for point in CRASH_POINTS {
        for countdown in [0, 2, 5] {
            let dir = tempfile::tempdir()?;
            let faults = Faults::new();
            let s = store(dir.path(), &faults);
            s.load()?;
            faults.arm(point, countdown);
            let result = drive(&s);
            let crashed = faults.fired();
            match result {
                Ok(()) => assert!(!crashed, "{point} #{countdown}: fired but succeeded"),
                Err(Error::Io { path, source }) => {
                    assert!(crashed, "{point} #{countdown}: {source}");
                    assert_eq!(path, Path::new(point), "{point} #{countdown}");
                    assert_eq!(source.to_string(), format!("injected crash at {point}"));
                    fired.insert(*point);
                }
                Err(e) => panic!("{point} #{countdown}: not the injected crash: {e:?}"),
            }
            // The crash: the process state is gone, the files stay.
            drop(s);
            let (found, remapped) = open(&log, Some(dir.path())).await?;
            assert_eq!(found, expected, "{point} #{countdown}");
            assert!(remapped <= RECORDS, "{point} #{countdown}");
            if remapped < RECORDS {
                resumed += 1;
            }
        }
    }
    let missed: Vec<_> = CRASH_POINTS
        .iter()
        .filter(|p| !fired.contains(*p))
        .collect();
    assert!(missed.is_empty(), "crash points never reached: {missed:?}");
    assert!(resumed > 0, "no reopen resumed from a checkpoint");
    Ok(())
}
