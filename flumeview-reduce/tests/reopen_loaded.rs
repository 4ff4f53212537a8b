//! After a reopen over a durable log, reads and change streams start from the persisted
//! state, never from the initial value the view holds before it has loaded; `follow`
//! says when the state has caught up with the log.

mod common;

use std::path::Path;
use std::time::Duration;

use common::TestResult;
use flume_core::{Flume, Live, Wait};
use flumelog_file::{FileLog, FileLogOptions};
use flumeview_reduce::{Reduce, ReduceReader};
use futures::StreamExt;

/// Every value seen, in order.
fn collect() -> Reduce<u32, Vec<u32>> {
    Reduce::new(1, Vec::new(), |all: &mut Vec<u32>, n: &u32| all.push(*n))
}

async fn open(dir: &Path) -> flume_core::Result<(Flume<u32>, ReduceReader<Vec<u32>>)> {
    let log = FileLog::open(dir.join("log"), FileLogOptions::default()).await?;
    let db = Flume::<u32>::new(log);
    let all = db.add_view("all", collect().persist(dir.join("all")))?;
    Ok((db, all))
}

/// A database holding `0..5`, closed (so the view's state is checkpointed at seq 4).
async fn persisted() -> Result<tempfile::TempDir, Box<dyn std::error::Error>> {
    let dir = tempfile::tempdir()?;
    let (db, all) = open(dir.path()).await?;
    db.append_batch(&[0, 1, 2, 3, 4]).await?;
    assert_eq!(all.get(Wait::Log).await?, [0, 1, 2, 3, 4]);
    db.close().await?;
    Ok(dir)
}

#[tokio::test(flavor = "current_thread")]
async fn changes_after_reopen_start_from_the_persisted_state() -> TestResult {
    let dir = persisted().await?;
    let (db, all) = open(dir.path()).await?;
    let mut changes = all.changes();
    let first = tokio::time::timeout(Duration::from_secs(10), changes.next()).await?;
    assert_eq!(first, Some((Some(4), vec![0, 1, 2, 3, 4])));
    db.append(&5).await?;
    let next = tokio::time::timeout(Duration::from_secs(10), changes.next()).await?;
    assert_eq!(next, Some((Some(5), vec![0, 1, 2, 3, 4, 5])));
    db.close().await?;
    Ok(())
}

#[tokio::test(flavor = "current_thread")]
async fn follow_after_reopen_is_synced_with_the_persisted_state() -> TestResult {
    let dir = persisted().await?;
    let (db, all) = open(dir.path()).await?;
    let mut feed = all.follow();
    assert_eq!(
        feed.next().await,
        Some(Live::Item((Some(4), vec![0, 1, 2, 3, 4])))
    );
    assert_eq!(feed.next().await, Some(Live::Synced));
    db.append(&5).await?;
    assert_eq!(
        feed.next().await,
        Some(Live::Item((Some(5), vec![0, 1, 2, 3, 4, 5])))
    );
    db.close().await?;
    assert_eq!(feed.next().await, None);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn follow_marks_synced_once_the_state_reaches_the_log_at_creation() -> TestResult {
    // A slow view far behind the log: the marker comes right after the first state
    // that includes the log's last record at the time `follow` was called, never before.
    let dir = tempfile::tempdir()?;
    let log = FileLog::open(dir.path(), FileLogOptions::default()).await?;
    let db = Flume::<u32>::builder(log, flume_core::Json)
        .batch_size(16)
        .build();
    let values: Vec<u32> = (0..400).collect();
    db.append_batch(&values).await?;
    let slow = db.add_view(
        "slow",
        Reduce::new(1, 0u64, |n: &mut u64, _: &u32| {
            std::thread::sleep(Duration::from_micros(200));
            *n += 1;
        }),
    )?;
    let mut feed = slow.follow();
    db.append_batch(&values).await?; // after the stream was made: not part of its history
    let mut before = Vec::new();
    loop {
        match tokio::time::timeout(Duration::from_secs(30), feed.next()).await? {
            Some(Live::Item((since, _))) => before.push(since),
            Some(Live::Synced) => break,
            None => return Err("the stream ended before it synced".into()),
        }
    }
    let (last, earlier) = before.split_last().ok_or("no state before the marker")?;
    assert!(
        *last >= Some(399),
        "synced at {last:?}, before the log's 399"
    );
    assert!(
        earlier.iter().all(|s| *s < Some(399)),
        "a state at the target came before the one the marker follows: {before:?}"
    );
    db.close().await?;
    Ok(())
}

#[tokio::test(flavor = "current_thread")]
async fn follow_on_an_empty_log_is_synced_after_the_first_state() -> TestResult {
    let dir = tempfile::tempdir()?;
    let (db, all) = open(dir.path()).await?;
    let mut feed = all.follow();
    assert_eq!(feed.next().await, Some(Live::Item((None, vec![]))));
    assert_eq!(feed.next().await, Some(Live::Synced));
    db.append(&7).await?;
    assert_eq!(feed.next().await, Some(Live::Item((Some(0), vec![7]))));
    db.close().await?;
    Ok(())
}
