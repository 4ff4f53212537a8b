//! Revert and close: truncation, and every call after close.

use std::future::Future;
use std::time::Duration;

use bytes::Bytes;

use super::support::*;
use crate::{Durability, Error, Log, Seq, StreamOptions};

/// `revert(Some(n))` truncates after `n` (since, get, stream; the next append gets
/// `n + 1`); reverting to the tail changes nothing; reverting past the tail is
/// [`Error::NotFound`] naming the seq and changes nothing; `revert(None)` empties the log. Skipped, with a note on stderr,
/// when the backend returns [`Error::Unsupported`].
///
/// # Panics
/// When the log breaks the contract.
pub async fn revert_truncates<F, Fut, L>(mut new_log: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = L>,
    L: Log,
{
    let log = fresh(&mut new_log).await;
    append_each(&log, 0..10).await;
    match within("revert(Some(4))", log.revert(Some(4))).await {
        Err(Error::Unsupported(what)) => {
            eprintln!("revert_truncates: skipped, this backend does not support {what}");
            return;
        }
        other => other.unwrap_or_else(|e| panic!("revert(Some(4)) failed: {e}")),
    }
    assert_eq!(
        *log.since().borrow(),
        Some(4),
        "since() after revert(Some(4))"
    );
    assert_not_found("get(5) after revert(Some(4))", log.get(5).await, 5);
    assert!(
        get_ok(&log, 4).await == record(4),
        "get(4) after revert(Some(4))"
    );
    check_stream(&log, StreamOptions::new(), 5).await;
    check_stream(&log, StreamOptions::new().reverse(true), 5).await;

    let replaced = Bytes::from_static(b"appended after the revert");
    let seq = log
        .append(replaced.clone())
        .await
        .expect("append after revert");
    assert_eq!(seq, 5, "the next append after revert(Some(4))");
    assert!(
        get_ok(&log, 5).await == replaced,
        "get(5) after revert and append"
    );

    log.revert(Some(5))
        .await
        .expect("revert to the current tail");
    assert_eq!(
        *log.since().borrow(),
        Some(5),
        "since() after reverting to the tail"
    );
    assert!(
        get_ok(&log, 5).await == replaced,
        "get(5) after reverting to the tail"
    );

    for past in [6, 100, Seq::MAX] {
        let result = log.revert(Some(past)).await;
        assert!(
            matches!(result, Err(Error::NotFound { seq }) if seq == past),
            "revert(Some({past})) on a log ending at 5 must fail with NotFound {{ seq: {past} }} \
             (it would leave a gap), got {result:?}"
        );
        assert_eq!(
            *log.since().borrow(),
            Some(5),
            "since() after a failed revert"
        );
    }
    assert!(
        get_ok(&log, 5).await == replaced,
        "get(5) after a failed revert"
    );

    log.revert(Some(2)).await.expect("revert(Some(2))");
    let range = log
        .append_batch(records(3..6))
        .await
        .expect("batch after revert");
    assert_eq!(range, 3..6, "a batch after revert(Some(2))");
    check_stream(&log, StreamOptions::new(), 6).await;

    log.revert(None).await.expect("revert(None)");
    assert_eq!(*log.since().borrow(), None, "since() after revert(None)");
    assert_not_found("get(0) after revert(None)", log.get(0).await, 0);
    check_stream(&log, StreamOptions::new(), 0).await;
    append_each(&log, 0..3).await;
    check_stream(&log, StreamOptions::new(), 3).await;
}

/// After `close`: a live stream that was waiting ends with [`Error::Closed`], so does one
/// opened before the close but not yet polled, and every call (`append`, `append_with`,
/// `append_batch` (empty too), `get`, `stream` (whatever the options), `sync`, `revert`)
/// returns [`Error::Closed`]. A second `close` returns `Ok` or `Closed`.
///
/// # Panics
/// When the log breaks the contract.
pub async fn close_rejects_every_call<F, Fut, L>(mut new_log: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = L>,
    L: Log,
{
    let log = fresh(&mut new_log).await;
    append_each(&log, 0..3).await;
    let (waiting, history) = take_n("live stream before close".into(), log.stream(live()), 3).await;
    assert_seqs("live stream before close", &history, &[0, 1, 2]);
    let pending = tokio::spawn(drain_rest(waiting));
    let unpolled = log.stream(live().gt(2));
    tokio::time::sleep(Duration::from_millis(20)).await;

    within("close", log.close()).await.expect("close");

    let rest = within("a live stream pending at close", pending)
        .await
        .expect("stream task panicked");
    assert_ended_closed("a live stream pending at close", rest);
    let rest = drain_rest(unpolled).await;
    assert_ended_closed("a live stream opened before close, polled after", rest);

    assert_closed("append", log.append(record(3)).await);
    assert_closed(
        "append_with(Synced)",
        log.append_with(record(3), Some(Durability::Synced)).await,
    );
    assert_closed("append_batch", log.append_batch(records(3..5)).await);
    assert_closed("append_batch(empty)", log.append_batch(Vec::new()).await);
    assert_closed(
        "append_batch_with(Synced)",
        log.append_batch_with(records(3..5), Some(Durability::Synced))
            .await,
    );
    for seq in [0, 2, 3, 1000] {
        let result = log.get(seq).await;
        if !matches!(result, Err(Error::Closed)) {
            panic!(
                "get({seq}) after close: expected Err(Closed), got {}",
                describe(&result)
            );
        }
    }
    assert_closed("sync", log.sync().await);
    for opts in [
        StreamOptions::new(),
        StreamOptions::new().reverse(true),
        StreamOptions::new().gt(1000),
        StreamOptions::new().limit(0),
        live(),
        live().gt(2),
    ] {
        let what = format!("stream({opts:?}) opened after close");
        let rest = drain_rest(log.stream(opts)).await;
        match rest.first() {
            Some(Err(Error::Closed)) => {}
            other => panic!("{what}: expected Err(Closed) first, got {other:?}"),
        }
        assert!(
            rest[1..]
                .iter()
                .all(|item| matches!(item, Err(Error::Closed))),
            "{what}: yielded something besides Err(Closed): {rest:?}"
        );
    }
    match log.revert(Some(0)).await {
        Err(Error::Closed) | Err(Error::Unsupported(_)) => {}
        other => panic!("revert after close: expected Err(Closed), got {other:?}"),
    }
    match log.close().await {
        Ok(()) | Err(Error::Closed) => {}
        Err(e) => panic!("a second close: expected Ok or Err(Closed), got {e:?}"),
    }
}

/// A live stream waiting on an empty log, and one waiting past the tail of a non-empty
/// log, both end with [`Error::Closed`] (rather than hang) when the log closes.
///
/// # Panics
/// When the log breaks the contract.
pub async fn close_ends_pending_live_streams<F, Fut, L>(mut new_log: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = L>,
    L: Log,
{
    let empty = fresh(&mut new_log).await;
    let on_empty = tokio::spawn(drain_rest(empty.stream(live())));
    let full = fresh(&mut new_log).await;
    append_each(&full, 0..5).await;
    let past_tail = tokio::spawn(drain_rest(full.stream(live().gt(4))));
    let bounded = tokio::spawn(drain_rest(full.stream(live().gte(2).lt(100))));
    tokio::time::sleep(Duration::from_millis(20)).await;

    within("close", empty.close())
        .await
        .expect("close of an empty log");
    let rest = within("a live stream on an empty log", on_empty)
        .await
        .expect("stream task panicked");
    assert!(
        matches!(rest.as_slice(), [Err(Error::Closed)]),
        "a live stream on an empty log: expected [Err(Closed)] at close, got {rest:?}"
    );

    within("close", full.close()).await.expect("close");
    let rest = within("a live stream past the tail", past_tail)
        .await
        .expect("stream task panicked");
    assert!(
        matches!(rest.as_slice(), [Err(Error::Closed)]),
        "a live stream past the tail: expected [Err(Closed)] at close, got {rest:?}"
    );
    let rest = within("a bounded live stream", bounded)
        .await
        .expect("stream task panicked");
    assert_ended_closed("a bounded live stream", rest);
}
