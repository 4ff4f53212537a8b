//! Fault injection: a failed write (short write, full disk) or a failed fsync poisons
//! the log; nothing unacknowledged is reported durable; reopening recovers.

use bytes::Bytes;
use flume_core::{Durability, Error, Log};

use crate::{FileLog, FileLogOptions};
use flume_core::durable::Faults;

fn record(i: u64) -> Bytes {
    Bytes::from(format!("record {i} ").repeat(3))
}

fn faulty(plan: &Faults) -> FileLogOptions {
    let mut options = FileLogOptions::default().segment_size(2048);
    options.faults = plan.clone();
    options
}

/// A fresh directory, a fault plan that lets everything through, and a log opened there
/// with the plan and `options` applied to the faulty options.
async fn open_faulty(
    options: impl FnOnce(FileLogOptions) -> FileLogOptions,
) -> (tempfile::TempDir, Faults, FileLog) {
    let dir = tempfile::tempdir().unwrap();
    let plan = Faults::new();
    let log = FileLog::open(dir.path(), options(faulty(&plan)))
        .await
        .unwrap();
    (dir, plan, log)
}

/// Lets the writer thread go idle. Right after open (the pages it faults in ahead) and
/// after a burst of buffered appends (it wakes the watchers of `since`), it stays awake
/// for a few milliseconds; awake, it may take a queued synced record first and sync it
/// itself, which is correct but not what the inline-sync tests look at.
async fn let_the_writer_idle() {
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
}

fn assert_poisoned<T: std::fmt::Debug>(what: &str, result: flume_core::Result<T>) {
    match result {
        Err(Error::Poisoned { reason, .. }) => assert!(!reason.is_empty()),
        other => panic!("{what}: expected Poisoned, got {other:?}"),
    }
}

async fn check_reopen(dir: &std::path::Path, at_least: u64) -> u64 {
    let log = FileLog::open(dir, FileLogOptions::default())
        .await
        .expect("reopen");
    let since = log.since().borrow().map_or(0, |s| s + 1);
    assert!(
        since >= at_least,
        "reopen found {since} records, expected at least {at_least}"
    );
    for i in 0..at_least {
        assert_eq!(
            log.get(i).await.unwrap(),
            record(i),
            "record {i} after reopen"
        );
    }
    since
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_short_write_on_a_full_disk_poisons() {
    let (dir, plan, log) = open_faulty(|o| o).await;
    for i in 0..10 {
        log.append_with(record(i), Some(Durability::Synced))
            .await
            .unwrap();
    }
    // The next write gets 20 bytes through, then ENOSPC.
    plan.set_write_budget(20);
    assert_poisoned(
        "the synced append whose write failed",
        log.append_with(record(10), Some(Durability::Synced)).await,
    );
    assert!(log.poisoned().unwrap().contains("write to"));
    assert_poisoned("a later append", log.append(record(11)).await);
    assert_poisoned("a later batch", log.append_batch(vec![record(11)]).await);
    assert_poisoned("sync", log.sync().await);
    assert_poisoned("revert", log.revert(Some(3)).await);
    assert_eq!(
        *log.durable().borrow(),
        Some(9),
        "nothing unsynced is durable"
    );
    // Reads still work, including the record that never reached the file.
    assert_eq!(log.get(3).await.unwrap(), record(3));
    assert_eq!(log.get(10).await.unwrap(), record(10));
    assert_poisoned("close", log.close().await);
    drop(log);
    // The 20 bytes are a torn tail; everything acknowledged is there.
    let log = FileLog::open(dir.path(), FileLogOptions::default())
        .await
        .unwrap();
    let report = log.recovery().expect("the short write was cut").clone();
    // The cut covers the 20 bytes and the preallocated zeros after them.
    assert!(report.bytes_dropped >= 20, "{report:?}");
    assert_eq!(report.records_dropped, 1);
    drop(log);
    assert_eq!(check_reopen(dir.path(), 10).await, 10);
}

/// A full disk is something a program can match: `Poisoned` with the OS error's kind,
/// on the write path (`pwrite`, a copy into the mapping) and the reservation path, and
/// the message says what to do. Freeing space and reopening gets the log going again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_is_poisoned_with_storage_full() {
    fn assert_disk_full<T: std::fmt::Debug>(what: &str, result: flume_core::Result<T>) {
        match result {
            Err(
                e @ Error::Poisoned {
                    kind: Some(std::io::ErrorKind::StorageFull),
                    ..
                },
            ) => {
                let message = e.to_string();
                assert!(message.contains("free space"), "{what}: {message}");
                assert!(message.contains("reopen"), "{what}: {message}");
            }
            other => panic!("{what}: expected Poisoned with StorageFull, got {other:?}"),
        }
    }
    // A synced append (`pwrite`), a buffered one (a copy into the mapping), and a
    // reservation that finds no room.
    for path in ["pwrite", "mapped", "reserve"] {
        let (dir, plan, log) = open_faulty(|o| o).await;
        for i in 0..3 {
            log.append(record(i)).await.unwrap();
        }
        let failed = match path {
            "pwrite" => {
                plan.set_write_budget(5);
                log.append_with(record(3), Some(Durability::Synced)).await
            }
            "mapped" => {
                plan.set_write_budget(5);
                log.append(record(3)).await
            }
            _ => {
                // Fill the segment's reservation, then the next segment's fails.
                plan.set_reserve_budget(0);
                let mut next = 3;
                loop {
                    match log.append(record(next)).await {
                        Ok(_) => next += 1,
                        Err(e) => break Err(e),
                    }
                    assert!(next < 1000, "the reservation never failed");
                }
            }
        };
        assert_disk_full(path, failed);
        assert_disk_full(
            &format!("{path}: a later append"),
            log.append(record(99)).await,
        );
        drop(log);
        // Space is back: reopening recovers everything acknowledged.
        assert!(check_reopen(dir.path(), 3).await >= 3, "{path}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_buffered_write_poisons_later_appends() {
    // With a write delay, buffered appends are acknowledged before they are written.
    let (dir, plan, log) =
        open_faulty(|o| o.max_write_delay(std::time::Duration::from_millis(2))).await;
    log.append(record(0)).await.unwrap();
    log.sync().await.unwrap();
    plan.set_write_budget(0);
    log.append(record(1)).await.unwrap(); // acknowledged before the writer runs
    let mut since = log.since();
    assert_eq!(*since.borrow_and_update(), Some(1));
    assert_poisoned("sync after the failed write", log.sync().await);
    assert_poisoned("append after the failed write", log.append(record(2)).await);
    drop(log);
    assert_eq!(check_reopen(dir.path(), 1).await, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn by_default_a_failed_write_fails_the_buffered_append_itself() {
    let (dir, plan, log) = open_faulty(|o| o).await;
    log.append(record(0)).await.unwrap();
    plan.set_write_budget(0);
    // Nothing is acknowledged that did not reach the OS.
    assert_poisoned("the append whose write failed", log.append(record(1)).await);
    assert_poisoned("the next append", log.append(record(2)).await);
    drop(log);
    assert_eq!(check_reopen(dir.path(), 1).await, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_fsync_poisons_and_is_never_retried() {
    let (dir, plan, log) = open_faulty(|o| o).await;
    for i in 0..5 {
        log.append_with(record(i), Some(Durability::Synced))
            .await
            .unwrap();
    }
    plan.set_sync_budget(0);
    // Several synced appenders share the failing fsync; all of them learn about it.
    let tasks: Vec<_> = (5..9)
        .map(|i| {
            let log = log.clone();
            tokio::spawn(async move { log.append_with(record(i), Some(Durability::Synced)).await })
        })
        .collect();
    for t in tasks {
        assert_poisoned("a synced append sharing the failed fsync", t.await.unwrap());
    }
    assert_eq!(*log.durable().borrow(), Some(4));
    plan.set_sync_budget(u64::MAX);
    assert_poisoned(
        "sync after a failed fsync, even once the disk is fine",
        log.sync().await,
    );
    assert!(log.poisoned().unwrap().contains("fdatasync"));
    drop(log);
    // The records whose fsync failed were written to the OS: they may come back.
    check_reopen(dir.path(), 5).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_fsync_while_sealing_a_segment_poisons() {
    let (dir, plan, log) =
        open_faulty(|o| o.max_write_delay(std::time::Duration::from_millis(2))).await;
    plan.set_sync_budget(0);
    // Buffered appends need no fsync, until the writer seals the full segment.
    for i in 0..100 {
        log.append(record(i)).await.unwrap();
    }
    let mut progress = log.shared().progress.subscribe();
    tokio::time::timeout(
        std::time::Duration::from_secs(10),
        progress.wait_for(|p| p.poisoned.is_some()),
    )
    .await
    .expect("the writer tried to seal the segment")
    .unwrap();
    assert_poisoned("append once sealing failed", log.append(record(100)).await);
    assert!(log.poisoned().unwrap().contains("fdatasync"));
    assert_eq!(log.segments().len(), 1, "no segment after the failed seal");
    assert_eq!(log.get(99).await.unwrap(), record(99));
    drop(log);
    check_reopen(dir.path(), 1).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn buffered_appends_are_copied_into_the_mapping_and_synced_ones_written() {
    let (dir, plan, log) = open_faulty(|o| o).await;
    for i in 0..20 {
        log.append(record(i)).await.unwrap();
    }
    assert!(plan.counted("mapped_writes") >= 20);
    assert_eq!(plan.counted("plain_writes"), 0, "no pwrite");
    log.append_with(record(20), Some(Durability::Synced))
        .await
        .unwrap();
    assert!(plan.counted("plain_writes") > 0, "synced rounds pwrite");
    log.close().await.unwrap();
    check_reopen(dir.path(), 21).await;
}

/// On a multi-thread runtime, a synced append that finds nothing else queued writes and
/// syncs on its own thread (no hand-off to the writer thread and back); on a
/// current-thread runtime, which must not block, the writer thread does it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lone_synced_append_syncs_on_its_own_thread() {
    let (dir, plan, log) = open_faulty(|o| o.segment_size(1 << 20)).await;
    let_the_writer_idle().await;
    for i in 0..10 {
        let seq = log
            .append_with(record(i), Some(Durability::Synced))
            .await
            .unwrap();
        assert_eq!(*log.durable().borrow(), Some(seq));
    }
    assert_eq!(plan.counted("other_thread_syncs"), 10);
    assert_eq!(plan.counted("writer_thread_syncs"), 0);
    // Buffered appends between synced ones do not count as a group of synced
    // appenders: the next synced appends still sync on their own thread.
    for i in 10..60 {
        log.append(record(i)).await.unwrap();
    }
    let_the_writer_idle().await;
    for i in 60..63 {
        log.append_with(record(i), Some(Durability::Synced))
            .await
            .unwrap();
    }
    assert_eq!(plan.counted("other_thread_syncs"), 13);
    assert_eq!(plan.counted("writer_thread_syncs"), 0);
    log.close().await.unwrap();
    check_reopen(dir.path(), 63).await;
}

#[test]
fn on_a_current_thread_runtime_the_writer_thread_syncs() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let (_dir, plan, log) = open_faulty(|o| o).await;
        for i in 0..10 {
            let seq = log
                .append_with(record(i), Some(Durability::Synced))
                .await
                .unwrap();
            assert_eq!(*log.durable().borrow(), Some(seq));
        }
        assert_eq!(plan.counted("other_thread_syncs"), 0);
        assert!(plan.counted("writer_thread_syncs") >= 10);
        log.close().await.unwrap();
    });
}

/// A failed fsync on the appender's own thread poisons the log like one on the writer
/// thread: the append fails, and so does everything after it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_inline_fsync_poisons() {
    let (dir, plan, log) = open_faulty(|o| o.segment_size(1 << 20)).await;
    let_the_writer_idle().await;
    log.append_with(record(0), Some(Durability::Synced))
        .await
        .unwrap();
    plan.set_sync_budget(0);
    assert_poisoned(
        "a lone synced append whose fsync fails",
        log.append_with(record(1), Some(Durability::Synced)).await,
    );
    assert!(plan.counted("other_thread_syncs") >= 2);
    assert_eq!(*log.durable().borrow(), Some(0));
    assert_poisoned("a later append", log.append(record(2)).await);
    drop(log);
    check_reopen(dir.path(), 1).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_reservation_poisons() {
    let (dir, plan, log) = open_faulty(|o| o).await;
    // The first append reserves the whole (2 KiB) segment.
    let mut acked = 0;
    for i in 0..10 {
        log.append(record(i)).await.unwrap();
        acked += 1;
    }
    // The disk is full: the next segment cannot reserve anything.
    plan.set_reserve_budget(0);
    let failed = loop {
        match log.append(record(acked)).await {
            Ok(seq) => {
                assert_eq!(seq, acked);
                acked += 1;
                assert!(acked < 1000, "the reservation never failed");
            }
            Err(e) => break e,
        }
    };
    assert!(log.segments().len() >= 2, "it failed in a new segment");
    assert_poisoned("the append whose reservation failed", Err::<(), _>(failed));
    let reason = log.poisoned().unwrap();
    assert!(reason.contains("reserving space in"), "{reason}");
    assert!(reason.contains("No space left on device"), "{reason}");
    assert_poisoned("a later append", log.append(record(acked)).await);
    assert_poisoned("sync", log.sync().await);
    drop(log);
    assert_eq!(check_reopen(dir.path(), acked).await, acked);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_nearly_full_disk_reserves_only_what_each_write_needs() {
    let dir = tempfile::tempdir().unwrap();
    let plan = Faults::new();
    // Room for a few records past the header, not for a whole reservation step.
    plan.set_reserve_budget(200);
    let log = FileLog::open(dir.path(), faulty(&plan)).await.unwrap();
    let mut acked = 0;
    while log.append(record(acked)).await.is_ok() {
        acked += 1;
        assert!(acked < 100, "the reservations never failed");
    }
    // Each record is 8 + 30 bytes: five fit in 200 bytes.
    assert_eq!(acked, 5);
    assert_eq!(plan.counted("plain_writes"), 0);
    assert!(log.poisoned().unwrap().contains("reserving space in"));
    drop(log);
    assert_eq!(check_reopen(dir.path(), acked).await, acked);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_fallocate_buffered_appends_fall_back_to_pwrite() {
    let dir = tempfile::tempdir().unwrap();
    let plan = Faults::new();
    plan.set_reserve_unsupported(true);
    let log = FileLog::open(dir.path(), faulty(&plan)).await.unwrap();
    for i in 0..200 {
        log.append(record(i)).await.unwrap();
    }
    assert_eq!(plan.counted("mapped_writes"), 0);
    assert!(plan.counted("plain_writes") >= 200);
    assert!(log.segments().len() > 2, "rotated");
    assert_eq!(log.poisoned(), None);
    log.close().await.unwrap();
    check_reopen(dir.path(), 200).await;
}
