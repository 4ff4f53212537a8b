//! A long build closed right away leaves one run, not the pile of runs it flushed: the
//! checkpoint at close merges them (the compactor would only merge them after that
//! checkpoint, and closing stops it).

mod common;

use std::time::Duration;

use common::{by_key, msg, Msg, TestResult};
use flume_core::{Flume, Json, Wait};
use flumelog_memory::MemoryLog;
use flumeview_index::{key, IndexOptions, IndexReader};

const N: u64 = 3000;

/// Small memtables (many runs), and no checkpoint before the one at close.
fn options() -> IndexOptions {
    IndexOptions::default()
        .memtable_bytes(4 << 10)
        .checkpoint_every(u64::MAX, Duration::from_secs(3600))
}

fn run_files(dir: &std::path::Path) -> std::io::Result<usize> {
    Ok(std::fs::read_dir(dir)?
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().ends_with(".run"))
        .count())
}

#[tokio::test]
async fn a_build_closed_at_once_leaves_one_run() -> TestResult {
    let dir = tempfile::tempdir()?;
    let log = MemoryLog::new();
    // Batches of 50 records: the index flushes a full memtable after a batch.
    let db = Flume::builder(log.clone(), Json).batch_size(50).build();
    let msgs: Vec<Msg> = (0..N).map(msg).collect();
    db.append_batch(&msgs).await?;
    let idx: IndexReader<Msg> =
        db.add_view("by_key", by_key().persist(dir.path()).options(options()))?;
    idx.get_seq(b"", Wait::Log).await?;
    // Every memtable went out as a run, and none was checkpointed yet.
    assert!(
        run_files(dir.path())? > 20,
        "{} runs",
        run_files(dir.path())?
    );
    db.close().await?;
    assert_eq!(run_files(dir.path())?, 1);

    let db = Flume::<Msg>::new(log.reopen());
    let idx: IndexReader<Msg> =
        db.add_view("by_key", by_key().persist(dir.path()).options(options()))?;
    for i in (0..N).step_by(7) {
        let (seq, m) = idx
            .get(key::string(&msg(i).key), Wait::Log)
            .await?
            .expect("indexed");
        assert_eq!((seq, m), (i, msg(i)));
    }
    assert_eq!(idx.all().hits(Wait::Log).await?.len(), N as usize);
    assert_eq!(idx.get_seq("%absent", Wait::Log).await?, None);
    db.close().await?;
    assert_eq!(run_files(dir.path())?, 1);
    Ok(())
}
