//! Live streams and watchers: the seam between history and new records, bounds, `since`.

use std::future::Future;
use std::sync::Arc;

use bytes::Bytes;
use futures::StreamExt;

use super::support::*;
use crate::{Error, Log, Seq};

/// A reverse live stream yields one [`Error::InvalidArgument`] and ends, on an empty log
/// and on a non-empty one.
///
/// # Panics
/// When the log breaks the contract.
pub async fn reverse_live_rejected<F, Fut, L>(mut new_log: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = L>,
    L: Log,
{
    let log = fresh(&mut new_log).await;
    for round in 0..2 {
        for opts in [
            live().reverse(true),
            live().reverse(true).gt(1).lt(5),
            live().reverse(true).limit(1),
        ] {
            let what = format!("stream({opts:?}) (round {round})");
            let mut stream = log.stream(opts);
            match within(&what, stream.next()).await {
                Some(Err(Error::InvalidArgument(_))) => {}
                Some(Ok((seq, _))) => {
                    panic!("{what}: expected Err(InvalidArgument), got the record {seq}")
                }
                other => panic!("{what}: expected Err(InvalidArgument), got {other:?}"),
            }
            assert!(
                within(&what, stream.next()).await.is_none(),
                "{what}: the stream must end after the error"
            );
        }
        if round == 0 {
            append_each(&log, 0..10).await;
        }
    }
}

/// Live streams yield exactly every record, in order, with no gap and no duplicate at the
/// seam between history and live records, while four tasks append concurrently (singles
/// and batches, yielding between appends): one stream opened on the empty log, one opened
/// after 3000 records (so that it is still reading history when the appends start), and
/// one opened with `gt` while the appends run.
///
/// # Panics
/// When the log breaks the contract.
pub async fn live_stream_has_no_gap_at_seam<F, Fut, L>(mut new_log: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = L>,
    L: Log,
{
    const HISTORY: Seq = 3000;
    const TASKS: Seq = 4;
    const PER_TASK: Seq = 200;
    const TOTAL: Seq = HISTORY + TASKS * PER_TASK;
    const MIDWAY: Seq = HISTORY + 99;
    let log = Arc::new(fresh(&mut new_log).await);

    // Opened and already waiting before anything is appended.
    let from_empty = tokio::spawn(take_n(
        "live stream opened on the empty log".into(),
        log.stream(live()),
        TOTAL as usize,
    ));
    append_each(&*log, 0..50).await;
    append_as_batch(&*log, 50..HISTORY).await;
    // Opened with history present; it reads the history while the appends below run.
    let with_history = tokio::spawn(take_n(
        "live stream opened after the history".into(),
        log.stream(live()),
        TOTAL as usize,
    ));

    let appenders: Vec<_> = (0..TASKS)
        .map(|task| {
            let log = Arc::clone(&log);
            tokio::spawn(async move {
                let mut seqs = Vec::new();
                if task % 2 == 0 {
                    for i in 0..PER_TASK {
                        tokio::task::yield_now().await;
                        let bytes = Bytes::from(format!("task {task} item {i}"));
                        seqs.push(log.append(bytes).await.expect("concurrent append"));
                    }
                } else {
                    for b in 0..PER_TASK / 10 {
                        tokio::task::yield_now().await;
                        let batch = (0..10)
                            .map(|i| Bytes::from(format!("task {task} batch {b} item {i}")))
                            .collect();
                        seqs.extend(log.append_batch(batch).await.expect("concurrent batch"));
                    }
                }
                seqs
            })
        })
        .collect();
    // Opened while the appends run: its start may be in the history or still ahead.
    let midway = tokio::spawn(take_n(
        format!("live stream gt({MIDWAY}) opened during the appends"),
        log.stream(live().gt(MIDWAY)),
        (TOTAL - MIDWAY - 1) as usize,
    ));

    let mut appended = Vec::new();
    for task in appenders {
        appended.extend(
            within("appender task", task)
                .await
                .expect("appender task panicked"),
        );
    }
    appended.sort_unstable();
    assert_eq!(
        appended,
        (HISTORY..TOTAL).collect::<Vec<_>>(),
        "concurrent appends must get distinct, dense seqs"
    );

    let mut streams = Vec::new();
    for (what, first, consumer) in [
        ("live stream opened on the empty log", 0, from_empty),
        ("live stream opened after the history", 0, with_history),
        ("live stream opened during the appends", MIDWAY + 1, midway),
    ] {
        let (stream, got) = within(what, consumer)
            .await
            .expect("stream consumer panicked");
        assert_seqs(what, &got, &(first..TOTAL).collect::<Vec<_>>());
        for (seq, bytes) in &got {
            assert!(
                *bytes == get_ok(&*log, *seq).await,
                "{what}: wrong bytes for seq {seq}"
            );
        }
        streams.push((what, stream));
    }

    // Nothing more, nothing repeated: the next item is the next append.
    let seq = log
        .append(record(TOTAL))
        .await
        .expect("append after the live streams");
    assert_eq!(seq, TOTAL);
    for (what, stream) in streams {
        let (_, got) = take_n(what.to_owned(), stream, 1).await;
        assert_seqs(&format!("{what}, after one more append"), &got, &[TOTAL]);
        assert!(
            got[0].1 == record(TOTAL),
            "{what}: wrong bytes for seq {TOTAL}"
        );
    }
}

/// A live stream opened with `gt` in the middle of a log yields the rest of the history,
/// then every record appended (concurrently, by two tasks) after it, exactly once.
///
/// # Panics
/// When the log breaks the contract.
pub async fn live_stream_from_midway<F, Fut, L>(mut new_log: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = L>,
    L: Log,
{
    let log = Arc::new(fresh(&mut new_log).await);
    append_each(&*log, 0..100).await;
    let consumer = tokio::spawn(take_n(
        "live stream gt(59)".into(),
        log.stream(live().gt(59)),
        140,
    ));
    let appenders: Vec<_> = (0..2)
        .map(|_| {
            let log = Arc::clone(&log);
            tokio::spawn(async move {
                for _ in 0..50 {
                    log.append(Bytes::from_static(b"live"))
                        .await
                        .expect("concurrent append");
                }
            })
        })
        .collect();
    for task in appenders {
        within("appender task", task)
            .await
            .expect("appender task panicked");
    }
    let (_, got) = within("live stream gt(59)", consumer)
        .await
        .expect("stream consumer panicked");
    assert_seqs("live stream gt(59)", &got, &(60..200).collect::<Vec<_>>());
    for (seq, bytes) in &got {
        let want = if *seq < 100 {
            record(*seq)
        } else {
            Bytes::from_static(b"live")
        };
        assert!(
            *bytes == want,
            "live stream gt(59): wrong bytes for seq {seq}"
        );
    }

    // Starting at the very end: only new records.
    let tail = tokio::spawn(take_n(
        "live stream gt(199)".into(),
        log.stream(live().gt(199)),
        2,
    ));
    append_each(&*log, 200..202).await;
    let (_, got) = within("live stream gt(199)", tail)
        .await
        .expect("consumer panicked");
    assert_seqs("live stream gt(199)", &got, &[200, 201]);

    // Starting past the end: waits for the log to get there.
    let ahead = tokio::spawn(take_n(
        "live stream gte(205)".into(),
        log.stream(live().gte(205)),
        2,
    ));
    append_each(&*log, 202..207).await;
    let (_, got) = within("live stream gte(205)", ahead)
        .await
        .expect("consumer panicked");
    assert_seqs("live stream gte(205)", &got, &[205, 206]);
}

/// A live stream with an upper bound or a limit ends once it has yielded the last record
/// it may yield, whether that record is in the history or appended later.
///
/// # Panics
/// When the log breaks the contract.
pub async fn live_stream_with_bounds_ends<F, Fut, L>(mut new_log: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = L>,
    L: Log,
{
    let log = Arc::new(fresh(&mut new_log).await);
    append_each(&*log, 0..20).await;

    // Bound inside the history: ends without waiting.
    let what = "live stream lte(10) over 20 records";
    let got = collect_all(what, log.stream(live().lte(10))).await;
    assert_seqs(what, &got, &(0..=10).collect::<Vec<_>>());
    let what = "live stream limit(5) over 20 records";
    let got = collect_all(what, log.stream(live().gt(2).limit(5))).await;
    assert_seqs(what, &got, &[3, 4, 5, 6, 7]);

    // Bounds past the history: ends once the appends reach them.
    let until = tokio::spawn(collect_owned(
        "live stream gte(15).lt(30)",
        log.stream(live().gte(15).lt(30)),
    ));
    let limited = tokio::spawn(collect_owned(
        "live stream gt(17).limit(6)",
        log.stream(live().gt(17).limit(6)),
    ));
    append_each(&*log, 20..40).await;
    let got = within("live stream gte(15).lt(30)", until)
        .await
        .expect("consumer panicked");
    assert_seqs(
        "live stream gte(15).lt(30)",
        &got,
        &(15..30).collect::<Vec<_>>(),
    );
    let got = within("live stream gt(17).limit(6)", limited)
        .await
        .expect("consumer panicked");
    assert_seqs(
        "live stream gt(17).limit(6)",
        &got,
        &(18..24).collect::<Vec<_>>(),
    );
}

/// `since` receivers wake up on appends and batches (`changed` and `wait_for`), and
/// `durable` receivers wake up once a synced append or a `sync` makes records durable.
///
/// # Panics
/// When the log breaks the contract.
pub async fn since_watch_notifies<F, Fut, L>(mut new_log: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = L>,
    L: Log,
{
    let log = Arc::new(fresh(&mut new_log).await);

    // wait_for, from another task.
    let mut rx = log.since();
    let waiter = tokio::spawn(async move {
        let seen = *rx
            .wait_for(|since| since.is_some_and(|s| s >= 9))
            .await
            .expect("the since channel closed while the log is open");
        seen
    });
    {
        let log = Arc::clone(&log);
        tokio::spawn(async move { append_each(&*log, 0..10).await })
            .await
            .expect("appender task panicked");
    }
    let seen = within("since().wait_for(>= 9)", waiter)
        .await
        .expect("waiter panicked");
    assert_eq!(seen, Some(9), "since() after 10 appends");

    // changed, after a single append and after a batch.
    for (round, batch) in [(0, 1), (1, 5)] {
        let mut rx = log.since();
        rx.borrow_and_update();
        let waiter = tokio::spawn(async move {
            rx.changed()
                .await
                .expect("the since channel closed while the log is open");
            let seen = *rx.borrow_and_update();
            seen
        });
        tokio::task::yield_now().await;
        let end = log.since().borrow().map_or(0, |s| s + 1);
        if batch == 1 {
            append_each(&*log, end..end + 1).await;
        } else {
            append_as_batch(&*log, end..end + batch).await;
        }
        let seen = within(&format!("since().changed() (round {round})"), waiter)
            .await
            .expect("waiter panicked");
        assert!(
            seen.is_some_and(|s| s >= end),
            "since().changed() woke with {seen:?}, before seq {end} was visible"
        );
    }

    // durable, once a sync returns.
    let mut durable = log.durable();
    let seq = log
        .append(Bytes::from_static(b"durable"))
        .await
        .expect("append");
    within("sync", log.sync()).await.expect("sync");
    let seen = *within(
        "durable().wait_for",
        durable.wait_for(|d| d.is_some_and(|d| d >= seq)),
    )
    .await
    .expect("the durable channel closed while the log is open");
    assert!(seen.is_some_and(|d| d >= seq), "durable() after sync");
}
