//! A persisted view resumes from the checkpoint its state file holds, whatever codec wrote
//! it, and from checkpoints taken while running. (Resuming after a clean close is a case
//! of the view conformance suite in `conformance.rs`.)

mod common;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use common::{counting, reopen, TestResult};
use flume_core::{Flume, Wait};
use flumelog_memory::MemoryLog;
use flumeview_reduce::{Reduce, StateCodec};

/// A state file names the codec that wrote it: a view configured with the other codec
/// loads it all the same, without applying a record again.
#[tokio::test]
async fn a_state_file_loads_whatever_codec_wrote_it() -> TestResult {
    for (wrote, reads) in [
        (StateCodec::Json, StateCodec::MsgPack),
        (StateCodec::MsgPack, StateCodec::Json),
    ] {
        let dir = tempfile::tempdir()?;
        let log = MemoryLog::new();
        let db = Flume::<u32>::new(log.clone());
        let sum = db.add_view(
            "sum",
            Reduce::new(1, 0u64, |s: &mut u64, v: &u32| *s += u64::from(*v))
                .persist(dir.path())
                .codec(wrote),
        )?;
        db.append_batch(&(0..10).collect::<Vec<u32>>()).await?;
        assert_eq!(sum.get(Wait::Log).await?, 45);
        let log = reopen(&log).await?;
        db.close().await?;

        let seen = Arc::new(AtomicU64::new(0));
        let db = Flume::<u32>::new(log);
        let count = db.add_view("sum", counting_sum(&seen).persist(dir.path()).codec(reads))?;
        assert_eq!(
            count.get(Wait::Log).await?,
            45,
            "{wrote:?} read as {reads:?}"
        );
        assert_eq!(
            seen.load(Ordering::Relaxed),
            0,
            "{wrote:?} read as {reads:?}"
        );
        db.close().await?;
    }
    Ok(())
}

/// A sum that counts, in `seen`, the records it applies.
fn counting_sum(seen: &Arc<AtomicU64>) -> Reduce<u32, u64> {
    let seen = Arc::clone(seen);
    Reduce::new(1, 0u64, move |s: &mut u64, v: &u32| {
        seen.fetch_add(1, Ordering::Relaxed);
        *s += u64::from(*v);
    })
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
