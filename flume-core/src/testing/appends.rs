//! Appends: dense seqs, batches, `get`, concurrent appenders, record sizes.

use std::future::Future;
use std::sync::Arc;

use bytes::Bytes;

use super::support::*;
use super::PATIENCE;
use crate::{Durability, Log, Seq, StreamOptions};

/// An empty log: `since` and `durable` are `None`, `get` is `NotFound`, every stream is
/// empty, and `sync` succeeds.
///
/// # Panics
/// When the log breaks the contract.
pub async fn empty_log<F, Fut, L>(mut new_log: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = L>,
    L: Log,
{
    let log = fresh(&mut new_log).await;
    assert_eq!(*log.durable().borrow(), None, "durable() of an empty log");
    for seq in [0, 1, Seq::MAX] {
        assert_not_found(
            &format!("get({seq}) on an empty log"),
            log.get(seq).await,
            seq,
        );
    }
    for opts in [
        StreamOptions::new(),
        StreamOptions::new().reverse(true),
        StreamOptions::new().gt(0),
        StreamOptions::new().gte(0).lte(10),
        StreamOptions::new().reverse(true).limit(3),
    ] {
        check_stream(&log, opts, 0).await;
    }
    within("sync", log.sync())
        .await
        .expect("sync of an empty log");
    assert_eq!(
        *log.since().borrow(),
        None,
        "since() after sync of an empty log"
    );
    assert_eq!(
        *log.durable().borrow(),
        None,
        "durable() after sync of an empty log"
    );
}

/// Appends get seqs 0, 1, 2, … and, as soon as an append returns `seq`, `since()` (both
/// a new receiver and one taken before) shows `seq`. Every durability level is accepted.
///
/// # Panics
/// When the log breaks the contract.
pub async fn append_assigns_dense_seqs<F, Fut, L>(mut new_log: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = L>,
    L: Log,
{
    let log = fresh(&mut new_log).await;
    let earlier = log.since();
    for i in 0..100 {
        let durability = match i % 10 {
            3 => Some(Durability::Synced),
            4 => Some(Durability::Buffered),
            _ => None,
        };
        let seq = within("append", log.append_with(record(i), durability))
            .await
            .unwrap_or_else(|e| panic!("append of record {i} ({durability:?}) failed: {e}"));
        assert_eq!(seq, i, "append must assign dense seqs from 0");
        assert_eq!(
            *log.since().borrow(),
            Some(seq),
            "since() must show seq {seq} as soon as its append returns"
        );
        assert_eq!(
            *earlier.borrow(),
            Some(seq),
            "a since() receiver taken earlier must show seq {seq} as soon as its append returns"
        );
    }
}

/// `get` returns every record's bytes, in any order, and `NotFound` past the end.
///
/// # Panics
/// When the log breaks the contract.
pub async fn get_returns_each_record<F, Fut, L>(mut new_log: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = L>,
    L: Log,
{
    let log = fresh(&mut new_log).await;
    append_each(&log, 0..50).await;
    append_as_batch(&log, 50..150).await;
    append_each(&log, 150..200).await;
    // Every seq once, in a scrambled order (97 is coprime with 200).
    for k in 0..200 {
        let seq = (k * 97) % 200;
        assert!(
            get_ok(&log, seq).await == record(seq),
            "get({seq}) returned the wrong bytes"
        );
    }
    for seq in [200, 201, 1 << 40, Seq::MAX] {
        assert_not_found(
            &format!("get({seq}) on a log of 200"),
            log.get(seq).await,
            seq,
        );
    }
}

/// A batch gets consecutive seqs and returns their range; an empty batch returns the empty
/// range at the next seq and changes nothing; `since` shows a batch's last seq as soon as
/// it returns.
///
/// # Panics
/// When the log breaks the contract.
pub async fn append_batch_assigns_consecutive_seqs<F, Fut, L>(mut new_log: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = L>,
    L: Log,
{
    let log = fresh(&mut new_log).await;
    let empty = log
        .append_batch(Vec::new())
        .await
        .expect("empty batch on an empty log");
    assert_eq!(empty, 0..0, "an empty batch on an empty log");
    assert_eq!(*log.since().borrow(), None, "since() after an empty batch");

    append_as_batch(&log, 0..5).await;
    assert_eq!(*log.since().borrow(), Some(4), "since() after a batch");

    let empty = log.append_batch(Vec::new()).await.expect("empty batch");
    assert_eq!(
        empty,
        5..5,
        "an empty batch returns the empty range at the next seq"
    );
    assert_eq!(
        *log.since().borrow(),
        Some(4),
        "since() after an empty batch"
    );

    append_each(&log, 5..6).await;
    append_as_batch(&log, 6..7).await;
    assert_eq!(
        *log.since().borrow(),
        Some(6),
        "since() after a batch of one"
    );

    let empty = log
        .append_batch_with(Vec::new(), Some(Durability::Synced))
        .await
        .expect("empty synced batch");
    assert_eq!(empty, 7..7, "an empty synced batch");

    let range = within(
        "append_batch_with(Synced)",
        log.append_batch_with(records(7..107), Some(Durability::Synced)),
    )
    .await
    .expect("synced batch");
    assert_eq!(range, 7..107, "a synced batch");
    assert_eq!(
        *log.since().borrow(),
        Some(106),
        "since() after a synced batch"
    );

    let range = within(
        "append_batch_with(Buffered)",
        log.append_batch_with(records(107..110), Some(Durability::Buffered)),
    )
    .await
    .expect("buffered batch");
    assert_eq!(range, 107..110, "a buffered batch");

    append_each(&log, 110..111).await;
    for seq in 0..111 {
        assert!(
            get_ok(&log, seq).await == record(seq),
            "get({seq}) returned the wrong bytes"
        );
    }
    check_stream(&log, StreamOptions::new(), 111).await;
}

/// 8 tasks append 200 records each at once (six one at a time, two in batches of 10): the
/// seqs are distinct and dense, each task's seqs increase, each batch is consecutive, and
/// every record reads back (by `get` and by `stream`) as the bytes its task appended.
///
/// # Panics
/// When the log breaks the contract.
pub async fn concurrent_appenders<F, Fut, L>(mut new_log: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = L>,
    L: Log,
{
    const TASKS: u64 = 8;
    const PER_TASK: u64 = 200;
    const BATCH: u64 = 10;
    let log = Arc::new(fresh(&mut new_log).await);
    let tasks: Vec<_> = (0..TASKS)
        .map(|task| {
            let log = Arc::clone(&log);
            tokio::spawn(async move {
                let mut written: Vec<(Seq, Bytes)> = Vec::new();
                if task < 6 {
                    for i in 0..PER_TASK {
                        let bytes = Bytes::from(format!("task {task} record {i}"));
                        let seq = log.append(bytes.clone()).await.expect("concurrent append");
                        written.push((seq, bytes));
                    }
                } else {
                    for b in 0..PER_TASK / BATCH {
                        let batch: Vec<Bytes> = (0..BATCH)
                            .map(|i| Bytes::from(format!("task {task} batch {b} record {i}")))
                            .collect();
                        let range = log
                            .append_batch(batch.clone())
                            .await
                            .expect("concurrent batch");
                        assert_eq!(range.end - range.start, BATCH, "batch range length");
                        written.extend(range.zip(batch));
                    }
                }
                written
            })
        })
        .collect();
    let mut all = Vec::new();
    for (task, handle) in tasks.into_iter().enumerate() {
        let written = within("appender task", handle)
            .await
            .expect("appender task panicked");
        assert!(
            written.windows(2).all(|w| w[0].0 < w[1].0),
            "task {task}: seqs returned to one task must increase"
        );
        all.extend(written);
    }
    all.sort_by_key(|(seq, _)| *seq);
    let total = TASKS * PER_TASK;
    assert_seqs(
        "seqs returned to concurrent appenders",
        &all,
        &(0..total).collect::<Vec<_>>(),
    );
    assert_eq!(
        *log.since().borrow(),
        Some(total - 1),
        "since() after concurrent appends"
    );
    for (seq, bytes) in &all {
        assert!(
            get_ok(&*log, *seq).await == *bytes,
            "get({seq}) returned another task's bytes"
        );
    }
    let streamed = collect_all(
        "stream after concurrent appends",
        log.stream(StreamOptions::new()),
    )
    .await;
    assert_eq!(streamed, all, "stream after concurrent appends");
}

/// While four tasks append batches of 50, readers never see part of a batch: every `since`
/// observed (by a thread polling it without pause, and by a task woken on each change)
/// ends a batch, and every stream read holds whole batches.
///
/// # Panics
/// When the log breaks the contract.
pub async fn batch_visible_atomically<F, Fut, L>(mut new_log: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = L>,
    L: Log,
{
    const BATCH: u64 = 50;
    const TASKS: u64 = 4;
    const BATCHES: u64 = 40;
    const LAST: Seq = BATCH * TASKS * BATCHES - 1;
    fn check_since(since: Option<Seq>) {
        if let Some(s) = since {
            assert_eq!(
                (s + 1) % BATCH,
                0,
                "since() = {s} shows part of a batch of {BATCH}"
            );
        }
    }
    let log = Arc::new(fresh(&mut new_log).await);
    // Polls `since` as fast as it can, to catch a value published in the middle of a batch.
    let (started, poller_running) = tokio::sync::oneshot::channel();
    let poller = {
        let rx = log.since();
        tokio::task::spawn_blocking(move || {
            let deadline = std::time::Instant::now() + PATIENCE;
            let _ = started.send(());
            loop {
                let since = *rx.borrow();
                check_since(since);
                if since == Some(LAST) {
                    return;
                }
                assert!(
                    std::time::Instant::now() < deadline,
                    "since() did not reach {LAST} within {PATIENCE:?}"
                );
                std::thread::yield_now();
            }
        })
    };
    let reader = {
        let log = Arc::clone(&log);
        tokio::spawn(async move {
            let mut rx = log.since();
            let mut observations = 0;
            loop {
                let since = *rx.borrow_and_update();
                check_since(since);
                let seen = collect_all(
                    "stream during batch appends",
                    log.stream(StreamOptions::new()),
                )
                .await;
                assert_eq!(
                    seen.len() as u64 % BATCH,
                    0,
                    "a stream read {} records, part of a batch of {BATCH}",
                    seen.len()
                );
                assert_seqs(
                    "stream during batch appends",
                    &seen,
                    &(0..seen.len() as Seq).collect::<Vec<_>>(),
                );
                observations += 1;
                if since == Some(LAST) {
                    return observations;
                }
                within("since() to advance", rx.changed())
                    .await
                    .expect("the since channel closed while the log is open");
            }
        })
    };
    within("the since() poller to start", poller_running)
        .await
        .expect("the since() poller panicked");
    let writers: Vec<_> = (0..TASKS)
        .map(|task| {
            let log = Arc::clone(&log);
            tokio::spawn(async move {
                for b in 0..BATCHES {
                    // Spread the batches out, so that the readers look at many of them.
                    tokio::task::yield_now().await;
                    let batch = (0..BATCH)
                        .map(|i| Bytes::from(format!("task {task} batch {b} record {i}")))
                        .collect();
                    let range = log.append_batch(batch).await.expect("concurrent batch");
                    assert_eq!(range.end - range.start, BATCH, "batch range length");
                }
            })
        })
        .collect();
    for writer in writers {
        within("appender task", writer)
            .await
            .expect("appender task panicked");
    }
    let observations = within("reader task", reader)
        .await
        .expect("reader task panicked");
    assert!(observations >= 1);
    within("since() poller", poller)
        .await
        .expect("since() poller panicked");
}

/// Records of 1 MiB round-trip through `append`, `append_batch`, `get` and `stream`.
///
/// # Panics
/// When the log breaks the contract.
pub async fn large_records<F, Fut, L>(mut new_log: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = L>,
    L: Log,
{
    const MIB: usize = 1 << 20;
    let big = |salt: u8| -> Bytes {
        (0..MIB)
            .map(|i| (i as u8).wrapping_mul(31).wrapping_add(salt))
            .collect::<Vec<u8>>()
            .into()
    };
    let log = fresh(&mut new_log).await;
    let mut written = vec![big(1)];
    assert_eq!(log.append(big(1)).await.expect("append of 1 MiB"), 0);
    append_each(&log, 1..2).await;
    written.push(record(1));
    let batch = vec![big(2), big(3)];
    let range = log
        .append_batch(batch.clone())
        .await
        .expect("batch of 2 × 1 MiB");
    assert_eq!(range, 2..4);
    written.extend(batch);
    for (seq, bytes) in written.iter().enumerate() {
        let got = get_ok(&log, seq as Seq).await;
        assert_eq!(got.len(), bytes.len(), "get({seq}): length");
        assert!(got == *bytes, "get({seq}): the bytes differ");
    }
    for reverse in [false, true] {
        let what = format!("stream of large records (reverse: {reverse})");
        let mut got = collect_all(&what, log.stream(StreamOptions::new().reverse(reverse))).await;
        if reverse {
            got.reverse();
        }
        assert_seqs(&what, &got, &[0, 1, 2, 3]);
        for (seq, bytes) in got {
            assert!(
                bytes == written[seq as usize],
                "{what}: the bytes of {seq} differ"
            );
        }
    }
}

/// A zero-length record is stored, counted and read back like any other.
///
/// # Panics
/// When the log breaks the contract.
pub async fn empty_record<F, Fut, L>(mut new_log: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = L>,
    L: Log,
{
    let log = fresh(&mut new_log).await;
    assert_eq!(
        log.append(Bytes::new())
            .await
            .expect("append of an empty record"),
        0
    );
    append_each(&log, 1..2).await;
    let range = log
        .append_batch(vec![Bytes::new(), Bytes::new()])
        .await
        .expect("batch of empty records");
    assert_eq!(range, 2..4);
    assert_eq!(*log.since().borrow(), Some(3));
    for seq in [0, 2, 3] {
        assert!(
            get_ok(&log, seq).await.is_empty(),
            "get({seq}) of an empty record"
        );
    }
    let got = collect_all(
        "stream with empty records",
        log.stream(StreamOptions::new()),
    )
    .await;
    let want = vec![
        (0, Bytes::new()),
        (1, record(1)),
        (2, Bytes::new()),
        (3, Bytes::new()),
    ];
    assert_eq!(got, want, "stream with empty records");
}
