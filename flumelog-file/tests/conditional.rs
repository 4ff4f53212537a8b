//! Conditional appends on the file log beyond the conformance suite: across a reopen
//! (the tail a reopened log compares with is the recovered one), and racing with
//! unconditional buffered and synced appends, single and batched, with small segments
//! so that rounds rotate.

use std::time::Duration;

use bytes::Bytes;
use flume_core::{Durability, Error, Log, Seq, StreamOptions};
use flumelog_file::{FileLog, FileLogOptions};
use futures::TryStreamExt;

fn record(tag: &str, i: u64) -> Bytes {
    Bytes::from(format!("{tag} {i} ").repeat(3))
}

async fn all(log: &FileLog) -> Vec<(Seq, Bytes)> {
    log.stream(StreamOptions::new())
        .try_collect()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conditional_appends_after_reopen_compare_with_the_recovered_tail() {
    let dir = tempfile::tempdir().unwrap();
    let log = FileLog::open(dir.path(), FileLogOptions::default())
        .await
        .unwrap();
    assert_eq!(log.append_if(record("a", 0), None).await.unwrap(), 0);
    log.append_batch_with(
        vec![record("a", 1), record("a", 2)],
        Some(Durability::Synced),
    )
    .await
    .unwrap();
    log.close().await.unwrap();

    let log = FileLog::open(dir.path(), FileLogOptions::default())
        .await
        .unwrap();
    let e = log.append_if(record("b", 0), None).await.unwrap_err();
    assert!(
        matches!(
            e,
            Error::Conflict {
                expected: None,
                actual: Some(2)
            }
        ),
        "{e:?}"
    );
    let e = log.append_if(record("b", 0), Some(1)).await.unwrap_err();
    assert!(
        matches!(
            e,
            Error::Conflict {
                expected: Some(1),
                actual: Some(2)
            }
        ),
        "{e:?}"
    );
    let seq = log
        .append_batch_if_with(vec![record("b", 1)], Some(2), Some(Durability::Synced))
        .await
        .unwrap();
    assert_eq!(seq, 3..4);
    assert!(
        *log.durable().borrow() >= Some(3),
        "a synced conditional append is durable"
    );
    let range = log
        .append_batch_if_with(vec![record("b", 2), record("b", 3)], Some(3), None)
        .await
        .unwrap();
    assert_eq!(range, 4..6);
    // Dropped without close: buffered records still reach the OS.
    drop(log);

    let log = FileLog::open(dir.path(), FileLogOptions::default())
        .await
        .unwrap();
    let got = all(&log).await;
    let want = vec![
        (0, record("a", 0)),
        (1, record("a", 1)),
        (2, record("a", 2)),
        (3, record("b", 1)),
        (4, record("b", 2)),
        (5, record("b", 3)),
    ];
    assert_eq!(got, want);
    let e = log.append_if(record("c", 0), Some(4)).await.unwrap_err();
    assert!(
        matches!(
            e,
            Error::Conflict {
                expected: Some(4),
                actual: Some(5)
            }
        ),
        "{e:?}"
    );
    assert_eq!(log.append_if(record("c", 0), Some(5)).await.unwrap(), 6);
    log.close().await.unwrap();
}

/// Three tasks append unconditionally (buffered, synced, batches) while two append
/// conditionally on the tail they read. Every conditional append that returns a seq
/// got the one right after its expected tail, and every conflict names a later tail;
/// the log holds every acknowledged record, densely, after a reopen too.
async fn interleaved(options: FileLogOptions) {
    let dir = tempfile::tempdir().unwrap();
    let log = FileLog::open(dir.path(), options.clone()).await.unwrap();
    let mut tasks = tokio::task::JoinSet::new();
    for task in 0..3u64 {
        let log = log.clone();
        tasks.spawn(async move {
            let tag = format!("plain {task}");
            let mut written = Vec::new();
            for i in 0..200u64 {
                match (task + i) % 3 {
                    0 => {
                        let seq = log.append(record(&tag, i)).await.unwrap();
                        written.push((seq, record(&tag, i)));
                    }
                    1 => {
                        let seq = log
                            .append_with(record(&tag, i), Some(Durability::Synced))
                            .await
                            .unwrap();
                        written.push((seq, record(&tag, i)));
                    }
                    _ => {
                        let batch = vec![record(&tag, i), record(&tag, i + 1000)];
                        let range = log.append_batch(batch.clone()).await.unwrap();
                        written.extend(range.zip(batch));
                    }
                }
            }
            (written, 0u64)
        });
    }
    for task in 0..2u64 {
        let log = log.clone();
        tasks.spawn(async move {
            let tag = format!("conditional {task}");
            let mut written = Vec::new();
            let mut conflicts = 0;
            for i in 0..200u64 {
                let expected = *log.since().borrow();
                let durability = (i % 4 == 0).then_some(Durability::Synced);
                let batch: Vec<Bytes> = (0..1 + i % 2).map(|k| record(&tag, i * 10 + k)).collect();
                match log
                    .append_batch_if_with(batch.clone(), expected, durability)
                    .await
                {
                    Ok(range) => {
                        let next = expected.map_or(0, |s| s + 1);
                        assert_eq!(
                            range.start, next,
                            "a conditional append lands right after its tail"
                        );
                        if durability.is_some() {
                            assert!(*log.durable().borrow() >= Some(range.end - 1));
                        }
                        written.extend(range.zip(batch));
                    }
                    Err(Error::Conflict {
                        expected: e,
                        actual,
                    }) => {
                        assert_eq!(e, expected);
                        assert!(actual > expected, "{actual:?} after {expected:?}");
                        conflicts += 1;
                    }
                    Err(e) => panic!("conditional append: {e}"),
                }
            }
            (written, conflicts)
        });
    }
    let mut written = Vec::new();
    tokio::time::timeout(Duration::from_secs(120), async {
        while let Some(result) = tasks.join_next().await {
            let (w, _conflicts) = result.unwrap();
            written.extend(w);
        }
    })
    .await
    .expect("every append answers");
    written.sort_by_key(|(seq, _)| *seq);
    let seqs: Vec<Seq> = written.iter().map(|(s, _)| *s).collect();
    assert_eq!(
        seqs,
        (0..written.len() as Seq).collect::<Vec<_>>(),
        "dense seqs"
    );
    assert_eq!(all(&log).await, written);
    log.close().await.unwrap();
    let log = FileLog::open(dir.path(), options).await.unwrap();
    assert_eq!(all(&log).await, written, "after a reopen");
    log.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conditional_appends_interleave_with_plain_ones() {
    interleaved(FileLogOptions::default()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conditional_appends_interleave_with_plain_ones_small_segments_delayed_writes() {
    interleaved(
        FileLogOptions::default()
            .segment_size(4096)
            .max_write_delay(Duration::from_millis(1)),
    )
    .await;
}
