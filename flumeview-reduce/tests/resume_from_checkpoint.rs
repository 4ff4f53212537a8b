//! A persisted view resumes from its checkpoint after a reopen, without reprocessing.

mod common;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use common::{counting, reopen, TestResult};
use flume_core::{Flume, Wait};
use flumelog_memory::MemoryLog;
use flumeview_reduce::{Reduce, StateCodec};

async fn resumes_with(codec: StateCodec) -> TestResult {
    let dir = tempfile::tempdir()?;
    let seen = Arc::new(AtomicU64::new(0));

    let log = MemoryLog::new();
    let db = Flume::<u32>::new(log.clone());
    let count = db.add_view(
        "count",
        counting::<u32>(1, &seen).persist(dir.path()).codec(codec),
    )?;
    let sum = db.add_view(
        "sum",
        Reduce::new(1, 0u64, |s: &mut u64, v: &u32| *s += u64::from(*v))
            .persist(dir.path().join("sum"))
            .codec(codec),
    )?;
    for n in 0..10 {
        db.append(&n).await?;
    }
    assert_eq!(count.get(Wait::Log).await?, 10);
    assert_eq!(sum.get(Wait::Log).await?, 45);
    assert_eq!(seen.load(Ordering::Relaxed), 10);
    let log = reopen(&log).await?;
    db.close().await?;

    // Reopen over the same records: the state comes from the file, no record is applied
    // again, and new records continue from there.
    let seen = Arc::new(AtomicU64::new(0));
    let db = Flume::<u32>::new(log);
    let count = db.add_view(
        "count",
        counting::<u32>(1, &seen).persist(dir.path()).codec(codec),
    )?;
    let sum = db.add_view(
        "sum",
        Reduce::new(1, 0u64, |s: &mut u64, v: &u32| *s += u64::from(*v))
            .persist(dir.path().join("sum")),
    )?;
    assert_eq!(count.get(Wait::Log).await?, 10);
    assert_eq!(count.since(), Some(9));
    assert_eq!(sum.get(Wait::Log).await?, 45);
    assert_eq!(seen.load(Ordering::Relaxed), 0);

    for n in 10..15 {
        db.append(&n).await?;
    }
    assert_eq!(count.get(Wait::Log).await?, 15);
    assert_eq!(sum.get(Wait::Log).await?, (0..15).sum::<u64>());
    assert_eq!(seen.load(Ordering::Relaxed), 5);
    db.close().await?;
    Ok(())
}

#[tokio::test]
async fn resumes_json() -> TestResult {
    resumes_with(StateCodec::Json).await
}

#[tokio::test]
async fn resumes_msgpack() -> TestResult {
    resumes_with(StateCodec::MsgPack).await
}

/// Checkpoints are taken while running, not only at close: a copy of the directory
/// taken mid-run (what a crash would leave) resumes from that checkpoint.
#[tokio::test]
async fn periodic_checkpoint_survives_a_crash() -> TestResult {
    let dir = tempfile::tempdir()?;
    let state = dir.path().join("reduce.state");
    let seen = Arc::new(AtomicU64::new(0));
    let log = MemoryLog::new();
    let db = Flume::<u32>::new(log.clone());
    let count = db.add_view(
        "count",
        counting::<u32>(1, &seen)
            .persist(dir.path())
            .checkpoint_every(1, std::time::Duration::from_secs(3600)),
    )?;
    for n in 0..4 {
        db.append(&n).await?;
    }
    assert_eq!(count.get(Wait::Log).await?, 4);

    // Wait for the checkpoint of the last batch to land, then "crash": copy the
    // directory as it is now and never look at what close writes.
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let crashed = tempfile::tempdir()?;
        let reopened = Flume::<u32>::new(reopen(&log).await?);
        // The state file may not exist yet: the view then rebuilds, and we try again.
        let _ = std::fs::copy(&state, crashed.path().join("reduce.state"));
        let seen_again = Arc::new(AtomicU64::new(0));
        let again = reopened.add_view(
            "count",
            counting::<u32>(1, &seen_again).persist(crashed.path()),
        )?;
        assert_eq!(again.get(Wait::Log).await?, 4);
        let reprocessed = seen_again.load(Ordering::Relaxed);
        reopened.close().await?;
        if reprocessed == 0 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no checkpoint of since 3 was written while running"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    db.close().await?;
    Ok(())
}
