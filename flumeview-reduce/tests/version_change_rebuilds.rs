//! The scenario: a sum persisted at version 1, reopened over the same log as a
//! count at version 2, reports the count of all records.

mod common;

use common::{reopen, TestResult};
use flume_core::{Flume, Wait};
use flumelog_memory::MemoryLog;
use flumeview_reduce::Reduce;

#[tokio::test]
async fn sum_v1_then_count_v2_counts_everything() -> TestResult {
    let dir = tempfile::tempdir()?;
    let log = MemoryLog::new();
    let db = Flume::<i64>::new(log.clone());
    let sum = db.add_view(
        "view",
        Reduce::new(1, 0i64, |s: &mut i64, v: &i64| *s += v).persist(dir.path()),
    )?;
    for n in [10, 20, 30, 40] {
        db.append(&n).await?;
    }
    assert_eq!(sum.get(Wait::Log).await?, 100);
    let log = reopen(&log).await?;
    db.close().await?;
    assert!(dir.path().join("reduce.state").exists());

    let db = Flume::<i64>::new(log);
    let count = db.add_view("view", Reduce::count(2).persist(dir.path()))?;
    assert_eq!(count.get(Wait::Log).await?, 4);
    db.append(&50).await?;
    assert_eq!(count.get(Wait::Log).await?, 5);
    let log = reopen(db.log().as_ref()).await?;
    db.close().await?;

    // And the count at version 2 is what is persisted now.
    let db = Flume::<i64>::new(log);
    let count = db.add_view("view", Reduce::count(2).persist(dir.path()))?;
    assert_eq!(count.get(Wait::Log).await?, 5);
    db.close().await?;
    Ok(())
}
