//! Dropping the last `Flume` handle without `close()` stops the driver and checkpoints
//! the views, so that the next open resumes instead of applying everything again; also
//! when the program's runtime ends right after the drop.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use flume_core::{Error, Flume, Wait};
use flumelog_file::{FileLog, FileLogOptions};
use flumeview_reduce::{Reduce, ReduceReader};

const RECORDS: u64 = 20_000;

/// A sum that counts the records it applies.
fn sum(dir: &std::path::Path, applied: &Arc<AtomicU64>) -> Reduce<u64, u64> {
    let applied = Arc::clone(applied);
    Reduce::new(1, 0u64, move |sum: &mut u64, n: &u64| {
        applied.fetch_add(1, Ordering::Relaxed);
        *sum += n;
    })
    .persist(dir.join("sum"))
}

/// Opens the log, retrying while a previous handle still holds it.
async fn open_log(dir: &std::path::Path) -> FileLog {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match FileLog::open(dir.join("log"), FileLogOptions::default()).await {
            Ok(log) => return log,
            Err(Error::Locked { .. }) if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            Err(e) => panic!("reopening the log failed: {e}"),
        }
    }
}

/// Appends `RECORDS` records, waits until the view has applied them, and drops every
/// handle without closing.
async fn fill_and_drop(dir: &std::path::Path) {
    let applied = Arc::new(AtomicU64::new(0));
    let db = Flume::<u64>::new(open_log(dir).await)
        .use_view("sum", sum(dir, &applied))
        .unwrap();
    let values: Vec<u64> = (0..RECORDS).collect();
    db.append_batch(&values).await.unwrap();
    let reader: ReduceReader<u64> = db.view("sum").unwrap();
    assert_eq!(
        reader.get(Wait::Log).await.unwrap(),
        RECORDS * (RECORDS - 1) / 2
    );
    assert_eq!(applied.load(Ordering::Relaxed), RECORDS);
    drop(db);
    drop(reader);
}

/// Reopens and returns how many records the view applied to catch up.
async fn reopen_and_count(dir: &std::path::Path) -> u64 {
    let applied = Arc::new(AtomicU64::new(0));
    let db = Flume::<u64>::new(open_log(dir).await)
        .use_view("sum", sum(dir, &applied))
        .unwrap();
    let reader: ReduceReader<u64> = db.view("sum").unwrap();
    assert_eq!(
        reader.get(Wait::Log).await.unwrap(),
        RECORDS * (RECORDS - 1) / 2
    );
    db.close().await.unwrap();
    applied.load(Ordering::Relaxed)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_the_last_handle_checkpoints_the_views() {
    let dir = tempfile::tempdir().unwrap();
    fill_and_drop(dir.path()).await;
    let again = reopen_and_count(dir.path()).await;
    assert_eq!(
        again, 0,
        "the view applied {again} records again after the drop"
    );
}

#[test]
fn dropping_the_last_handle_then_the_runtime_checkpoints_the_views() {
    let dir = tempfile::tempdir().unwrap();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(fill_and_drop(dir.path()));
    // The program ends right after the drop: its runtime goes away.
    drop(runtime);
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let again = runtime.block_on(reopen_and_count(dir.path()));
    assert_eq!(
        again, 0,
        "the view applied {again} records again after the drop"
    );
}
