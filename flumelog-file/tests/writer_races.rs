//! Appends (single and batched, buffered and synced), syncs and reverts racing on a
//! multi-thread runtime, small segments so that rounds rotate: every call returns
//! (none waits for a sync that never comes), and the log reopens holding exactly what
//! it held when it was closed.

use std::time::Duration;

use bytes::Bytes;
use flume_core::{Durability, Log, StreamOptions};
use flumelog_file::{FileLog, FileLogOptions};
use futures::TryStreamExt;

fn record(task: u64, i: u64) -> Bytes {
    Bytes::from(format!("task {task} op {i} ").repeat(4))
}

async fn race(options: FileLogOptions) {
    let dir = tempfile::tempdir().unwrap();
    let log = FileLog::open(dir.path(), options.clone()).await.unwrap();
    let mut tasks = tokio::task::JoinSet::new();
    for task in 0..4u64 {
        let log = log.clone();
        tasks.spawn(async move {
            for i in 0..150u64 {
                match (task + i) % 5 {
                    0 => drop(log.append(record(task, i)).await.unwrap()),
                    1 => drop(
                        log.append_with(record(task, i), Some(Durability::Synced))
                            .await
                            .unwrap(),
                    ),
                    2 => drop(
                        log.append_batch(vec![record(task, i), record(task, i + 1000)])
                            .await
                            .unwrap(),
                    ),
                    3 => drop(
                        log.append_batch_with(vec![record(task, i)], Some(Durability::Synced))
                            .await
                            .unwrap(),
                    ),
                    _ => log.sync().await.unwrap(),
                }
            }
        });
    }
    {
        let log = log.clone();
        tasks.spawn(async move {
            for _ in 0..30 {
                tokio::time::sleep(Duration::from_micros(300)).await;
                // Only this task reverts: `since` only grows until the revert.
                let since = *log.since().borrow();
                if let Some(last) = since {
                    log.revert(Some(last / 2)).await.unwrap();
                }
            }
        });
    }
    tokio::time::timeout(Duration::from_secs(120), async {
        while let Some(done) = tasks.join_next().await {
            done.unwrap();
        }
    })
    .await
    .expect("every append, sync and revert returned");

    let before: Vec<_> = log
        .stream(StreamOptions::new())
        .try_collect()
        .await
        .unwrap();
    let since = *log.since().borrow();
    assert_eq!(before.len() as u64, since.map_or(0, |s| s + 1));
    log.close().await.unwrap();

    let log = FileLog::open(dir.path(), options).await.unwrap();
    assert_eq!(log.recovery(), None, "a closed log has no torn tail");
    assert_eq!(*log.since().borrow(), since);
    let after: Vec<_> = log
        .stream(StreamOptions::new())
        .try_collect()
        .await
        .unwrap();
    assert_eq!(after, before);
    log.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn appends_syncs_and_reverts_racing_all_return_and_reopen_as_closed() {
    race(FileLogOptions::default().segment_size(8 << 10)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_same_race_in_bulk_mode_with_pwrite() {
    race(
        FileLogOptions::default()
            .segment_size(8 << 10)
            .max_write_delay(Duration::from_millis(1))
            .reserve(0),
    )
    .await;
}
