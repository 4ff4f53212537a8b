//! A persisted index resumes from its checkpoint without remapping records; a version
//! change or a damaged manifest rebuilds it.

mod common;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use common::{counting_by_author, msg, Msg, TestResult};
use flume_core::{Flume, Wait};
use flumelog_memory::MemoryLog;
use flumeview_index::{key, IndexReader, Options};

fn small() -> Options {
    Options::default().memtable_bytes(4 << 10).merge_fan_in(2)
}

async fn open(
    log: MemoryLog,
    dir: &std::path::Path,
    version: u32,
    seen: &Arc<AtomicU64>,
) -> flume_core::Result<(Flume<Msg>, IndexReader<Msg>)> {
    let db = Flume::<Msg>::new(log);
    let idx = db.add_view(
        "by_author",
        counting_by_author(version, seen)
            .persist(dir)
            .options(small()),
    )?;
    Ok((db, idx))
}

#[tokio::test]
async fn resumes_then_rebuilds_on_version_change() -> TestResult {
    let dir = tempfile::tempdir()?;
    let log = MemoryLog::new();
    let seen = Arc::new(AtomicU64::new(0));
    let (db, idx) = open(log.clone(), dir.path(), 1, &seen).await?;
    for i in 0..500 {
        db.append(&msg(i)).await?;
    }
    let alice = key::tuple(("@alice.ed25519",));
    assert_eq!(idx.prefix(&alice).hits(Wait::Log).await?.len(), 167);
    assert_eq!(seen.load(Ordering::Relaxed), 500);
    db.close().await?;

    // Reopen: nothing is mapped again, and new records continue from there.
    let seen = Arc::new(AtomicU64::new(0));
    let log = log.reopen();
    let (db, idx) = open(log.clone(), dir.path(), 1, &seen).await?;
    assert_eq!(idx.prefix(&alice).hits(Wait::Log).await?.len(), 167);
    assert_eq!(seen.load(Ordering::Relaxed), 0);
    db.append(&msg(500)).await?;
    assert_eq!(
        idx.get_seq(key::tuple(("@carol.ed25519", 166u64)), Wait::Log)
            .await?,
        Some(500)
    );
    assert_eq!(seen.load(Ordering::Relaxed), 1);
    db.close().await?;

    // Version 2: rebuilt from the start of the log.
    let seen = Arc::new(AtomicU64::new(0));
    let (db, idx) = open(log.reopen(), dir.path(), 2, &seen).await?;
    assert_eq!(idx.prefix(&alice).hits(Wait::Log).await?.len(), 167);
    assert_eq!(seen.load(Ordering::Relaxed), 501);
    db.close().await?;
    Ok(())
}

#[tokio::test]
async fn a_damaged_manifest_rebuilds() -> TestResult {
    let dir = tempfile::tempdir()?;
    let log = MemoryLog::new();
    let seen = Arc::new(AtomicU64::new(0));
    let (db, idx) = open(log.clone(), dir.path(), 1, &seen).await?;
    for i in 0..50 {
        db.append(&msg(i)).await?;
    }
    idx.get_seq("x", Wait::Log).await?;
    let reopened = log.reopen();
    db.close().await?;
    let manifest = dir.path().join("MANIFEST");
    let mut bytes = std::fs::read(&manifest)?;
    let last = bytes.len() - 1;
    bytes[last] ^= 0xff;
    std::fs::write(&manifest, bytes)?;

    let seen = Arc::new(AtomicU64::new(0));
    let (db, idx) = open(reopened, dir.path(), 1, &seen).await?;
    assert_eq!(idx.all().hits(Wait::Log).await?.len(), 50);
    assert_eq!(seen.load(Ordering::Relaxed), 50);
    db.close().await?;
    Ok(())
}
