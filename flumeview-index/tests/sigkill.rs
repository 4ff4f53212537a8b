//! A real crash: a child process indexing into a persisted index is killed with
//! SIGKILL at a random moment; the reopened index must equal one rebuilt from scratch.
//!
//! The test binary re-executes itself: `sigkill_child` does the work when
//! `FLUMEVIEW_INDEX_SIGKILL_DIR` is set, and nothing otherwise. Records are a function
//! of their seq, so the parent can rebuild the log the child had.

mod common;

use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{counting_by_author, msg, Msg, TestResult};
use flume_core::{Flume, Wait};
use flumelog_memory::MemoryLog;
use flumeview_index::{Hit, IndexOptions};

const CHILD_DIR: &str = "FLUMEVIEW_INDEX_SIGKILL_DIR";
const RECORDS: u64 = 20_000;

fn options() -> IndexOptions {
    IndexOptions::default()
        .memtable_bytes(64 << 10)
        .merge_fan_in(2)
        .checkpoint_every(300, Duration::from_millis(5))
}

/// The child: appends every record in small batches, checkpointing and compacting as
/// it goes, until it is killed (or done).
#[test]
fn sigkill_child() -> TestResult {
    let Ok(dir) = std::env::var(CHILD_DIR) else {
        return Ok(());
    };
    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(async move {
        let seen = Arc::new(AtomicU64::new(0));
        let db = Flume::<Msg>::new(MemoryLog::new()).use_view(
            "by_author",
            counting_by_author(1, &seen)
                .persist(&dir)
                .options(options()),
        )?;
        let batch: Vec<Msg> = (0..RECORDS).map(msg).collect();
        for chunk in batch.chunks(100) {
            db.append_batch(chunk).await?;
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        db.close().await?;
        Ok(())
    })
}

async fn hits(
    log: MemoryLog,
    dir: Option<&std::path::Path>,
) -> flume_core::Result<(Vec<Hit>, u64)> {
    let seen = Arc::new(AtomicU64::new(0));
    let index = counting_by_author(1, &seen).options(options());
    let index = match dir {
        Some(d) => index.persist(d),
        None => index,
    };
    let db = Flume::<Msg>::new(log);
    let idx = db.add_view("by_author", index)?;
    let found = idx.all().hits(Wait::Log).await?;
    db.close().await?;
    Ok((found, seen.load(Ordering::Relaxed)))
}

#[cfg(unix)]
#[tokio::test]
async fn killed_mid_indexing_reopens_equal_to_a_rebuild() -> TestResult {
    let exe = std::env::current_exe()?;
    let log = MemoryLog::new();
    let all: Vec<Msg> = (0..RECORDS).map(msg).collect();
    for chunk in all.chunks(1000) {
        let bytes = chunk
            .iter()
            .map(|m| serde_json::to_vec(m).map(bytes::Bytes::from))
            .collect::<Result<Vec<_>, _>>()?;
        flume_core::Log::append_batch(&log, bytes).await?;
    }
    let (expected, _) = hits(log.reopen(), None).await?;
    assert_eq!(expected.len() as u64, RECORDS);

    for (round, delay_ms) in [0u64, 40, 150].into_iter().enumerate() {
        let dir = tempfile::tempdir()?;
        let mut child = Command::new(&exe)
            .args([
                "sigkill_child",
                "--exact",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(CHILD_DIR, dir.path())
            .stdout(std::process::Stdio::null())
            .spawn()?;
        // Kill once there is a checkpoint to recover, a little later each round.
        let deadline = Instant::now() + Duration::from_secs(60);
        while !dir.path().join("MANIFEST").exists() && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        tokio::time::sleep(Duration::from_millis(delay_ms)).await;
        child.kill()?;
        let status = child.wait()?;
        let (found, remapped) = hits(log.reopen(), Some(dir.path())).await?;
        eprintln!("round {round}: killed after +{delay_ms} ms ({status}); {remapped} records remapped on reopen");
        assert_eq!(found, expected, "round {round}");
        assert!(remapped <= RECORDS);
    }
    Ok(())
}
