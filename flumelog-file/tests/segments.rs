//! Layout: rotation, reopening, exclusive open, reads from the write buffer and from
//! sealed segments, limits, revert across segments.

use std::time::Duration;

use bytes::Bytes;
use flume_core::{Error, Log, StreamOptions};
use flumelog_file::{Durability, FileLog, FileLogOptions};
use futures::TryStreamExt;

fn record(i: u64) -> Bytes {
    Bytes::from(format!("record-{i}-").repeat(1 + (i % 7) as usize))
}

fn small() -> FileLogOptions {
    FileLogOptions::default().segment_size(1024)
}

async fn all(log: &FileLog, opts: StreamOptions) -> Vec<(u64, Bytes)> {
    log.stream(opts).try_collect().await.expect("stream")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotation_and_reopen_keep_every_seq() {
    let dir = tempfile::tempdir().unwrap();
    let log = FileLog::open(dir.path(), small()).await.unwrap();
    for i in 0..300 {
        assert_eq!(log.append(record(i)).await.unwrap(), i);
    }
    let batch: Vec<Bytes> = (300..310).map(record).collect();
    assert_eq!(log.append_batch(batch).await.unwrap(), 300..310);
    log.sync().await.unwrap();
    let segments = log.segments();
    assert!(segments.len() > 10, "{} segments", segments.len());
    for (i, path) in segments.iter().enumerate() {
        let len = std::fs::metadata(path).unwrap().len();
        if i + 1 < segments.len() {
            assert!(len <= 1024, "{} is {len} bytes", path.display());
        }
    }
    log.close().await.unwrap();

    let log = FileLog::open(dir.path(), small()).await.unwrap();
    assert_eq!(log.segments(), segments, "reopen renames nothing");
    assert_eq!(*log.since().borrow(), Some(309));
    assert_eq!(*log.durable().borrow(), Some(309));
    for i in (0..310).rev() {
        assert_eq!(log.get(i).await.unwrap(), record(i), "get({i})");
    }
    let forward = all(&log, StreamOptions::new().gte(5).lt(305)).await;
    assert_eq!(forward.len(), 300);
    assert!(forward.iter().all(|(s, b)| *b == record(*s)));
    let reverse = all(&log, StreamOptions::new().reverse(true).limit(50)).await;
    assert_eq!(reverse.first().map(|r| r.0), Some(309));
    assert_eq!(reverse.last().map(|r| r.0), Some(260));
    assert!(matches!(
        log.get(310).await,
        Err(Error::NotFound { seq: 310 })
    ));
    // Appends continue where the log ended.
    assert_eq!(log.append(record(310)).await.unwrap(), 310);
    log.close().await.unwrap();
}

/// A path that is a regular file is not a log: the error says so and has a kind to
/// match, and nothing is changed (`repair` too).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn opening_a_regular_file_says_not_a_directory() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("not-a-log");
    std::fs::write(&file, b"some bytes").unwrap();
    let check = |what: &str, result: flume_core::Result<()>| match result {
        Err(e @ Error::Io { .. }) => {
            let Error::Io { path, source } = &e else {
                unreachable!()
            };
            assert_eq!(path, &file, "{what}");
            assert_eq!(source.kind(), std::io::ErrorKind::NotADirectory, "{what}");
            let message = e.to_string();
            assert!(
                message.contains(&format!("not a directory: {}", file.display())),
                "{what}: {message}"
            );
        }
        other => panic!("{what}: expected Io(NotADirectory), got {other:?}"),
    };
    check(
        "open",
        FileLog::open(&file, FileLogOptions::default())
            .await
            .map(drop),
    );
    check(
        "repair",
        FileLog::repair(&file, &FileLogOptions::default()).map(drop),
    );
    assert_eq!(std::fs::read(&file).unwrap(), b"some bytes");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_open_is_locked_until_the_first_closes() {
    let dir = tempfile::tempdir().unwrap();
    let log = FileLog::open(dir.path(), FileLogOptions::default())
        .await
        .unwrap();
    match FileLog::open(dir.path(), FileLogOptions::default()).await {
        Err(Error::Locked { path }) => assert_eq!(path, dir.path()),
        other => panic!("expected Locked, got {other:?}"),
    }
    assert!(matches!(
        FileLog::repair(dir.path(), &FileLogOptions::default()),
        Err(Error::Locked { .. })
    ));
    log.close().await.unwrap();
    let log = FileLog::open(dir.path(), FileLogOptions::default())
        .await
        .unwrap();
    log.append(record(0)).await.unwrap();
    drop(log); // dropping the last handle unlocks too
    let log = FileLog::open(dir.path(), FileLogOptions::default())
        .await
        .unwrap();
    assert_eq!(
        *log.since().borrow(),
        Some(0),
        "drop wrote the buffered record"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unwritten_records_are_read_from_the_buffer_then_from_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let options = FileLogOptions::default()
        .max_write_delay(Duration::from_secs(3600))
        .write_buffer_size(usize::MAX);
    let log = FileLog::open(dir.path(), options).await.unwrap();
    for i in 0..100 {
        log.append(record(i)).await.unwrap();
    }
    // Nothing was written yet: the segment holds only its header.
    assert_eq!(std::fs::metadata(&log.segments()[0]).unwrap().len(), 32);
    assert_eq!(log.get(42).await.unwrap(), record(42));
    assert_eq!(all(&log, StreamOptions::new()).await.len(), 100);
    assert_eq!(*log.durable().borrow(), None);
    log.sync().await.unwrap();
    assert_eq!(*log.durable().borrow(), Some(99));
    assert!(std::fs::metadata(&log.segments()[0]).unwrap().len() > 32);
    assert_eq!(log.get(42).await.unwrap(), record(42));
    let mixed: Vec<Bytes> = (100..110).map(record).collect();
    log.append_batch(mixed).await.unwrap();
    let got = all(&log, StreamOptions::new().gte(95)).await;
    assert_eq!(
        got.iter().map(|r| r.0).collect::<Vec<_>>(),
        (95..110).collect::<Vec<_>>()
    );
    assert!(got.iter().all(|(s, b)| *b == record(*s)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn limits_are_enforced() {
    let dir = tempfile::tempdir().unwrap();
    let log = FileLog::open(dir.path(), small().max_record_size(100))
        .await
        .unwrap();
    match log.append(Bytes::from(vec![7u8; 101])).await {
        Err(Error::RecordTooLarge {
            size: 101,
            max: 100,
        }) => {}
        other => panic!("expected RecordTooLarge, got {other:?}"),
    }
    let batch = vec![Bytes::from_static(b"ok"), Bytes::from(vec![1u8; 200])];
    assert!(matches!(
        log.append_batch(batch).await,
        Err(Error::RecordTooLarge { .. })
    ));
    assert_eq!(
        *log.since().borrow(),
        None,
        "a rejected batch appends nothing"
    );
    assert_eq!(log.append(Bytes::from(vec![7u8; 100])).await.unwrap(), 0);
    assert!(matches!(
        FileLog::open(
            tempfile::tempdir().unwrap().path(),
            FileLogOptions::default().segment_size(10)
        )
        .await,
        Err(Error::InvalidArgument(_))
    ));
    assert!(matches!(
        FileLog::open(
            tempfile::tempdir().unwrap().path(),
            FileLogOptions::default().max_record_size(u64::MAX)
        )
        .await,
        Err(Error::InvalidArgument(_))
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_and_batches_larger_than_a_segment_get_their_own() {
    let dir = tempfile::tempdir().unwrap();
    let log = FileLog::open(dir.path(), small()).await.unwrap();
    log.append(record(0)).await.unwrap();
    let big = Bytes::from(vec![9u8; 5000]);
    assert_eq!(log.append(big.clone()).await.unwrap(), 1);
    let batch: Vec<Bytes> = (0..20).map(|_| Bytes::from(vec![3u8; 300])).collect();
    assert_eq!(log.append_batch(batch).await.unwrap(), 2..22);
    log.append(record(22)).await.unwrap();
    log.close().await.unwrap();
    let log = FileLog::open(dir.path(), small()).await.unwrap();
    assert_eq!(log.segments().len(), 4);
    assert_eq!(log.get(1).await.unwrap(), big);
    assert_eq!(log.get(21).await.unwrap().len(), 300);
    assert_eq!(log.get(22).await.unwrap(), record(22));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revert_across_segments_survives_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let log = FileLog::open(dir.path(), small()).await.unwrap();
    for i in 0..200 {
        log.append(record(i)).await.unwrap();
    }
    log.sync().await.unwrap();
    let before = log.segments().len();
    log.revert(Some(20)).await.unwrap();
    assert!(log.segments().len() < before);
    assert_eq!(*log.since().borrow(), Some(20));
    assert_eq!(*log.durable().borrow(), Some(20));
    assert_eq!(log.append(Bytes::from_static(b"new")).await.unwrap(), 21);
    log.close().await.unwrap();
    let log = FileLog::open(dir.path(), small()).await.unwrap();
    assert_eq!(*log.since().borrow(), Some(21));
    assert_eq!(log.get(20).await.unwrap(), record(20));
    assert_eq!(log.get(21).await.unwrap(), Bytes::from_static(b"new"));
    log.revert(None).await.unwrap();
    assert_eq!(log.segments().len(), 1);
    assert_eq!(std::fs::metadata(&log.segments()[0]).unwrap().len(), 32);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_synced_appenders_are_group_committed() {
    let dir = tempfile::tempdir().unwrap();
    let options = FileLogOptions::default().durability(Durability::Synced);
    let log = FileLog::open(dir.path(), options).await.unwrap();
    let tasks: Vec<_> = (0..16)
        .map(|t| {
            let log = log.clone();
            tokio::spawn(async move {
                let mut seqs = Vec::new();
                for i in 0..20 {
                    let seq = log.append(record(t * 1000 + i)).await.unwrap();
                    assert!(log.durable().borrow().is_some_and(|d| d >= seq));
                    seqs.push(seq);
                }
                seqs
            })
        })
        .collect();
    let mut seqs = Vec::new();
    for t in tasks {
        seqs.extend(t.await.unwrap());
    }
    seqs.sort();
    assert_eq!(seqs, (0..320).collect::<Vec<_>>());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revert_inside_a_batch_keeps_the_kept_part() {
    let dir = tempfile::tempdir().unwrap();
    let log = FileLog::open(dir.path(), FileLogOptions::default())
        .await
        .unwrap();
    let batch: Vec<Bytes> = (0..5).map(record).collect();
    log.append_batch(batch).await.unwrap();
    log.revert(Some(2)).await.unwrap();
    log.close().await.unwrap();
    let log = FileLog::open(dir.path(), FileLogOptions::default())
        .await
        .unwrap();
    assert!(log.recovery().is_none(), "{:?}", log.recovery());
    assert_eq!(*log.since().borrow(), Some(2));
    assert_eq!(log.get(2).await.unwrap(), record(2));
}

/// Records are slices of the segment mappings, not copies. A revert never truncates or
/// rewrites a mapped file (it writes the kept prefix to a new file), so records read before
/// it keep their bytes, even after new appends take their seqs and file offsets.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_read_before_a_revert_keep_their_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let log = FileLog::open(dir.path(), small()).await.unwrap();
    for i in 0..60 {
        log.append(record(i)).await.unwrap();
    }
    let last_segment_first = log.segments().len();
    let held: Vec<(u64, Bytes)> = all(&log, StreamOptions::new().gte(3)).await;
    let got = log.get(58).await.unwrap();
    log.revert(Some(2)).await.unwrap();
    assert!(log.segments().len() < last_segment_first);
    for i in 3..60 {
        // Same lengths as the reverted records: they land at the same offsets.
        let other = Bytes::from(record(i).iter().map(|b| b ^ 0x20).collect::<Vec<u8>>());
        assert_eq!(log.append(other).await.unwrap(), i);
    }
    log.sync().await.unwrap();
    assert_eq!(got, record(58));
    assert_eq!(held.len(), 57);
    for (seq, bytes) in held {
        assert_eq!(bytes, record(seq), "record {seq} read before the revert");
    }
    assert_ne!(log.get(58).await.unwrap(), record(58));
}
