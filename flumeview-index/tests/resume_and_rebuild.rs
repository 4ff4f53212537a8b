//! A damaged manifest, or one written under other semantics, makes a persisted index
//! rebuild. (Resuming from a checkpoint
//! without remapping records, and rebuilding on a version change, are cases of the view
//! conformance suite in `conformance.rs`.)

mod common;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use common::{counting_by_author, msg, Msg, TestResult};
use flume_core::{Flume, Wait};
use flumelog_memory::MemoryLog;
use flumeview_index::{IndexOptions, IndexReader};

fn small() -> IndexOptions {
    IndexOptions::default()
        .memtable_bytes(4 << 10)
        .merge_fan_in(2)
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

/// A manifest of the right view version written by a store of other semantics (a
/// key-value view's, say) is not taken: the store's load answers with another version,
/// and the driver resets and rebuilds the index.
#[tokio::test]
async fn a_manifest_of_other_semantics_rebuilds() -> TestResult {
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
    // Replace the index's files by an empty single-valued store of version 1 at since 49.
    let store = flume_lsm::Store::new(
        1,
        &small(),
        Some(dir.path().to_path_buf()),
        flume_lsm::Semantics::SingleValued,
        flume_lsm::Retention::Live,
    );
    store.reset()?;
    store.apply(&flume_lsm::OpBuf::default(), 49)?;
    assert!(store.checkpoint(49)?);
    drop(store);

    let seen = Arc::new(AtomicU64::new(0));
    let (db, idx) = open(reopened, dir.path(), 1, &seen).await?;
    assert_eq!(idx.all().hits(Wait::Log).await?.len(), 50);
    assert_eq!(seen.load(Ordering::Relaxed), 50);
    db.close().await?;
    Ok(())
}
