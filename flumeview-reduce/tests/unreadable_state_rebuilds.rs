//! A damaged, truncated or foreign state file makes the view rebuild; nothing panics.
//! (An intact file resuming, and a state ahead of the log rebuilding, are cases of the
//! view conformance suite in `conformance.rs`.)

mod common;

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use common::{counting, reopen, TestResult};
use flume_core::{Flume, Wait};
use flumelog_memory::MemoryLog;

/// Writes 6 records and a checkpoint at since 5; returns the log to reopen.
async fn persisted(dir: &Path) -> flume_core::Result<MemoryLog> {
    let log = MemoryLog::new();
    let db = Flume::<u8>::new(log.clone());
    let seen = Arc::new(AtomicU64::new(0));
    let count = db.add_view("count", counting::<u8>(1, &seen).persist(dir))?;
    db.append_batch(&[1, 2, 3, 4, 5, 6]).await?;
    assert_eq!(count.get(Wait::Log).await?, 6);
    let copy = reopen(&log).await?;
    db.close().await?;
    Ok(copy)
}

/// Opens the count over `log` and `dir`, checks it is right, and returns how many records
/// its reducer saw.
async fn reopen_and_count(log: MemoryLog, dir: &Path) -> Result<u64, Box<dyn std::error::Error>> {
    let db = Flume::<u8>::new(log);
    let seen = Arc::new(AtomicU64::new(0));
    let count = db.add_view("count", counting::<u8>(1, &seen).persist(dir))?;
    assert_eq!(count.get(Wait::Log).await?, 6);
    assert_eq!(count.since(), Some(5));
    db.close().await?;
    Ok(seen.load(Ordering::Relaxed))
}

#[tokio::test]
async fn damaged_files_rebuild() -> TestResult {
    let state = |dir: &Path| dir.join("reduce.state");
    type Damage = fn(&mut Vec<u8>);
    let damages: [(&str, Damage); 6] = [
        ("bit flip in the payload", |b| b[28] ^= 0x04),
        ("bit flip in since", |b| b[12] ^= 0x01),
        ("bad crc", |b| {
            let last = b.len() - 1;
            b[last] ^= 0xff
        }),
        ("truncated", |b| b.truncate(b.len() / 2)),
        ("empty", |b| b.clear()),
        ("not a state file", |b| *b = b"hello, world".to_vec()),
    ];
    for (what, damage) in damages {
        let dir = tempfile::tempdir()?;
        let log = persisted(dir.path()).await?;
        let mut bytes = std::fs::read(state(dir.path()))?;
        damage(&mut bytes);
        std::fs::write(state(dir.path()), &bytes)?;
        // A memory log closes with its database: one copy per run.
        let (first, second) = (reopen(&log).await?, reopen(&log).await?);
        assert_eq!(
            reopen_and_count(first, dir.path()).await?,
            6,
            "{what}: expected a full rebuild"
        );
        // The rebuild wrote a good file again.
        assert_eq!(reopen_and_count(second, dir.path()).await?, 0, "{what}");
    }
    Ok(())
}

#[tokio::test]
async fn a_leftover_tmp_file_is_ignored() -> TestResult {
    let dir = tempfile::tempdir()?;
    let log = persisted(dir.path()).await?;
    std::fs::write(dir.path().join("reduce.state.tmp"), b"cut short by a crash")?;
    assert_eq!(reopen_and_count(log, dir.path()).await?, 0);
    assert!(!dir.path().join("reduce.state.tmp").exists());
    Ok(())
}
