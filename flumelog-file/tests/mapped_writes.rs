//! Buffered appends copied into a shared mapping of the active segment, in space
//! reserved ahead with `fallocate` (`FileLogOptions::reserve`): the reserved space reads as
//! zeros after the data, so an open log's files (what a crash leaves) reopen cleanly,
//! a torn frame in it is cut, rotation and close trim it, and watchers of `since` see
//! every append.

use std::path::{Path, PathBuf};
use std::time::Duration;

use bytes::Bytes;
use flume_core::{Durability, Log, StreamOptions};
use flumelog_file::{FileLog, FileLogOptions};
use futures::{StreamExt, TryStreamExt};

fn record(i: u64) -> Bytes {
    Bytes::from(format!("mapped record {i} ").repeat(1 + (i % 5) as usize))
}

fn framed(i: u64) -> u64 {
    8 + record(i).len() as u64
}

fn len(path: &Path) -> u64 {
    std::fs::metadata(path).unwrap().len()
}

fn copy_dir(from: &Path, to: &Path) -> Vec<PathBuf> {
    let mut copied = Vec::new();
    for entry in std::fs::read_dir(from).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "seg") {
            let target = to.join(path.file_name().unwrap());
            std::fs::copy(&path, &target).unwrap();
            copied.push(target);
        }
    }
    copied.sort();
    copied
}

async fn check(log: &FileLog, count: u64) {
    assert_eq!(*log.since().borrow(), count.checked_sub(1));
    let all: Vec<_> = log
        .stream(StreamOptions::new())
        .try_collect()
        .await
        .unwrap();
    assert_eq!(all.len() as u64, count);
    for (seq, bytes) in all {
        assert_eq!(bytes, record(seq), "record {seq}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_open_log_reserves_space_and_a_copy_of_it_reopens_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let log = FileLog::open(dir.path(), FileLogOptions::default().reserve(1 << 20))
        .await
        .unwrap();
    let mut data = 32;
    for i in 0..1000 {
        log.append(record(i)).await.unwrap();
        data += framed(i);
    }
    // What a crash of the process leaves: the data, then reserved space (zeros).
    let seg = log.segments().remove(0);
    assert_eq!(len(&seg), 32 + (1 << 20), "a whole reservation step");
    let copy = tempfile::tempdir().unwrap();
    let copied = copy_dir(dir.path(), copy.path()).remove(0);
    let bytes = std::fs::read(&copied).unwrap();
    assert!(bytes[data as usize..].iter().all(|&b| b == 0));
    log.close().await.unwrap();
    assert_eq!(len(&seg), data, "close trims the reserved space");

    let reopened = FileLog::open(copy.path(), FileLogOptions::default())
        .await
        .unwrap();
    assert_eq!(
        reopened.recovery(),
        None,
        "reserved space is not a torn tail"
    );
    check(&reopened, 1000).await;
    // The next append goes right after the data, then close trims the rest.
    assert_eq!(reopened.append(record(1000)).await.unwrap(), 1000);
    reopened.close().await.unwrap();
    assert_eq!(len(&copied), data + framed(1000));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frame_torn_by_a_crash_in_reserved_space_is_cut() {
    let dir = tempfile::tempdir().unwrap();
    let log = FileLog::open(dir.path(), FileLogOptions::default())
        .await
        .unwrap();
    let mut data = 32;
    for i in 0..100 {
        log.append(record(i)).await.unwrap();
        data += framed(i);
    }
    let copy = tempfile::tempdir().unwrap();
    let copied = copy_dir(dir.path(), copy.path()).remove(0);
    log.close().await.unwrap();
    // A crash in the middle of copying the next frame: its payload is partly there,
    // its header (copied last) is not; megabytes of reserved zeros follow.
    let mut bytes = std::fs::read(&copied).unwrap();
    assert!(
        bytes.len() as u64 >= data + (8 << 20),
        "{} bytes",
        bytes.len()
    );
    let at = data as usize;
    bytes[at + 8..at + 20].copy_from_slice(b"mapped recor");
    std::fs::write(&copied, &bytes).unwrap();
    let started = std::time::Instant::now();
    let reopened = FileLog::open(copy.path(), FileLogOptions::default())
        .await
        .unwrap();
    let report = reopened.recovery().expect("the torn frame is cut").clone();
    assert_eq!(report.offset, data);
    assert_eq!(report.records_dropped, 1);
    assert_eq!(report.bytes_dropped, bytes.len() as u64 - data);
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "recovery scanned the zeros byte by byte: {:?}",
        started.elapsed()
    );
    check(&reopened, 100).await;
    reopened.close().await.unwrap();
    assert_eq!(len(&copied), data);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_small_segments_rotate_through_the_mapping() {
    let dir = tempfile::tempdir().unwrap();
    let options = FileLogOptions::default().segment_size(4096).reserve(1024);
    let log = FileLog::open(dir.path(), options.clone()).await.unwrap();
    let mut sizes = vec![32u64];
    for i in 0..3000 {
        let seq = log.append(record(i)).await.unwrap();
        assert_eq!(seq, i);
        if sizes.last().unwrap() + framed(i) > 4096 {
            sizes.push(32);
        }
        *sizes.last_mut().unwrap() += framed(i);
        if i % 97 == 0 {
            // Reads see every record at once, from the mapping.
            assert_eq!(log.get(i).await.unwrap(), record(i));
            assert_eq!(log.get(i / 2).await.unwrap(), record(i / 2));
        }
        if i == 1500 {
            // A synced append in the middle: written with pwrite, same file.
            log.append_with(record(3000), Some(Durability::Synced))
                .await
                .unwrap();
            log.revert(Some(1500)).await.unwrap();
        }
    }
    let segments = log.segments();
    assert_eq!(segments.len(), sizes.len());
    // Sealed segments were trimmed to their data; the active one holds reserved space.
    for (path, size) in segments.iter().zip(&sizes).take(sizes.len() - 1) {
        assert_eq!(len(path), *size, "{}", path.display());
    }
    assert!(len(segments.last().unwrap()) > *sizes.last().unwrap());
    check(&log, 3000).await;
    log.close().await.unwrap();
    for (path, size) in segments.iter().zip(&sizes) {
        assert_eq!(len(path), *size, "{} after close", path.display());
    }
    let log = FileLog::open(dir.path(), options).await.unwrap();
    assert_eq!(log.recovery(), None);
    check(&log, 3000).await;
    log.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watchers_of_since_see_the_end_of_a_burst() {
    let dir = tempfile::tempdir().unwrap();
    let log = FileLog::open(dir.path(), FileLogOptions::default())
        .await
        .unwrap();
    for round in 0..3u64 {
        let mut since = log.since();
        let base = round * 1000;
        let last = base + 999;
        let waiter = tokio::spawn(async move {
            since
                .wait_for(|s| *s == Some(last))
                .await
                .map(|s| *s)
                .unwrap()
        });
        for i in base..=last {
            log.append(record(i)).await.unwrap();
            // `since` itself moves before the append returns.
            assert_eq!(*log.since().borrow(), Some(i));
        }
        // The wake-ups of a burst are coalesced, never lost.
        let seen = tokio::time::timeout(Duration::from_secs(5), waiter)
            .await
            .expect("the watcher was woken for the last append")
            .unwrap();
        assert_eq!(seen, Some(last));
        // And a live stream sees every record.
        let live: Vec<_> = log
            .stream(StreamOptions::new().gt(last.saturating_sub(10)).live(true))
            .take(10)
            .try_collect()
            .await
            .unwrap();
        assert_eq!(live.len(), 10);
    }
    log.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_reservation_the_file_holds_only_data() {
    let dir = tempfile::tempdir().unwrap();
    let log = FileLog::open(dir.path(), FileLogOptions::default().reserve(0))
        .await
        .unwrap();
    let mut data = 32;
    for i in 0..100 {
        log.append(record(i)).await.unwrap();
        data += framed(i);
    }
    assert_eq!(len(&log.segments()[0]), data);
    check(&log, 100).await;
    log.close().await.unwrap();
}
