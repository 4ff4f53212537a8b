//! Conditional appends: [`Log::append_batch_if_with`] appends only at the expected tail,
//! all or nothing, and of racing appenders expecting one tail exactly one wins.

use std::collections::HashSet;
use std::future::Future;
use std::ops::Range;
use std::sync::Arc;

use bytes::Bytes;

use super::support::*;
use crate::{Durability, Error, Log, Result, Seq, StreamOptions};

/// Checks that `result` is a [`Error::Conflict`] naming `expected` and `actual`.
fn assert_conflict<T: std::fmt::Debug>(
    what: &str,
    result: Result<T>,
    expected: Option<Seq>,
    actual: Option<Seq>,
) {
    match result {
        Err(Error::Conflict {
            expected: e,
            actual: a,
        }) if e == expected && a == actual => {}
        other => panic!(
            "{what}: expected Err(Conflict {{ expected: {expected:?}, actual: {actual:?} }}), \
             got {other:?}"
        ),
    }
}

/// Checks that the log holds exactly `record(i)` for `i` in `0..len`: `since`, `get` past
/// the end, and a full stream.
async fn assert_holds<L: Log>(what: &str, log: &L, len: Seq) {
    assert_eq!(
        *log.since().borrow(),
        len.checked_sub(1),
        "{what}: since() must show the last of the {len} records"
    );
    assert_not_found(&format!("{what}: get({len})"), log.get(len).await, len);
    check_stream(log, StreamOptions::new(), len).await;
}

/// On an empty log: expecting a seq is a conflict with `actual: None`; expecting `None`
/// (an empty log) appends at seq 0, once; an empty batch checks the tail too.
///
/// # Panics
/// When the log breaks the contract.
pub async fn append_if_on_empty_log<F, Fut, L>(mut new_log: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = L>,
    L: Log,
{
    let log = fresh(&mut new_log).await;
    for expected in [Some(0), Some(5)] {
        assert_conflict(
            &format!("append_if(_, {expected:?}) on an empty log"),
            within("append_if", log.append_if(record(0), expected)).await,
            expected,
            None,
        );
        assert_conflict(
            &format!("an empty batch expecting {expected:?} on an empty log"),
            within(
                "append_batch_if_with",
                log.append_batch_if_with(Vec::new(), expected, None),
            )
            .await,
            expected,
            None,
        );
    }
    assert_holds("after conflicts on an empty log", &log, 0).await;
    let empty = within(
        "append_batch_if_with",
        log.append_batch_if_with(Vec::new(), None, None),
    )
    .await;
    assert!(
        matches!(&empty, Ok(r) if *r == (0..0)),
        "an empty batch expecting an empty log, on an empty log: expected Ok(0..0), got {empty:?}"
    );
    assert_holds("after an empty conditional batch", &log, 0).await;

    let seq = within("append_if", log.append_if(record(0), None))
        .await
        .unwrap_or_else(|e| panic!("append_if(_, None) on an empty log failed: {e}"));
    assert_eq!(seq, 0, "the first conditional append gets seq 0");
    assert_holds("after append_if(_, None)", &log, 1).await;
    assert_conflict(
        "a second append_if(_, None)",
        within("append_if", log.append_if(record(1), None)).await,
        None,
        Some(0),
    );
    assert_conflict(
        "an empty batch expecting an empty log, on a log of one record",
        within(
            "append_batch_if_with",
            log.append_batch_if_with(Vec::new(), None, None),
        )
        .await,
        None,
        Some(0),
    );
    assert_holds("after conflicts on a log of one record", &log, 1).await;
}

/// A conditional append that expects another tail than the log's (behind it, ahead of
/// it, or `None`) is [`Error::Conflict`] with the actual tail; nothing is appended,
/// `since` stays where it was, and the append at the right tail then succeeds, with
/// `since` showing it as soon as it returns.
///
/// # Panics
/// When the log breaks the contract.
pub async fn append_if_conflict_appends_nothing<F, Fut, L>(mut new_log: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = L>,
    L: Log,
{
    let log = fresh(&mut new_log).await;
    append_each(&log, 0..5).await;
    let stale = Bytes::from_static(b"a record that must never be stored");
    for expected in [None, Some(0), Some(3), Some(5), Some(6), Some(Seq::MAX)] {
        let what = format!("append_if(_, {expected:?}) on a log ending at 4");
        assert_conflict(
            &what,
            within("append_if", log.append_if(stale.clone(), expected)).await,
            expected,
            Some(4),
        );
        assert_holds(&what, &log, 5).await;
    }
    for i in 5..10 {
        let seq = within("append_if", log.append_if(record(i), Some(i - 1)))
            .await
            .unwrap_or_else(|e| panic!("append_if(record {i}, Some({})) failed: {e}", i - 1));
        assert_eq!(seq, i, "append_if at the tail gets the next seq");
        assert_eq!(
            *log.since().borrow(),
            Some(i),
            "since() as soon as append_if returns"
        );
    }
    assert_conflict(
        "append_if at a tail the log has moved past",
        within("append_if", log.append_if(stale, Some(4))).await,
        Some(4),
        Some(9),
    );
    assert_holds("after conditional appends", &log, 10).await;
    // Mixed with unconditional appends: the tail is the tail, however it got there.
    append_each(&log, 10..12).await;
    let seq = within("append_if", log.append_if(record(12), Some(11)))
        .await
        .expect("append_if after unconditional appends");
    assert_eq!(seq, 12);
    assert_holds("after mixed appends", &log, 13).await;
}

/// Conditional batches: at the right tail, all records get consecutive seqs and `since`
/// shows the last; at a wrong tail, none is stored. An empty batch appends nothing and
/// still checks the tail. A synced conditional batch is durable when it returns.
///
/// # Panics
/// When the log breaks the contract.
pub async fn append_batch_if_all_or_nothing<F, Fut, L>(mut new_log: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = L>,
    L: Log,
{
    let log = fresh(&mut new_log).await;
    let range = within(
        "append_batch_if_with",
        log.append_batch_if_with(records(0..4), None, None),
    )
    .await
    .expect("a conditional batch into an empty log");
    assert_eq!(range, 0..4, "a conditional batch into an empty log");
    assert_holds("after a conditional batch", &log, 4).await;

    let stale: Vec<Bytes> = (0..3)
        .map(|i| Bytes::from(format!("stale batch record {i}")))
        .collect();
    for expected in [None, Some(0), Some(2), Some(4), Some(100)] {
        let what = format!("a batch expecting {expected:?} on a log ending at 3");
        assert_conflict(
            &what,
            within(
                "append_batch_if_with",
                log.append_batch_if_with(stale.clone(), expected, None),
            )
            .await,
            expected,
            Some(3),
        );
        assert_holds(&what, &log, 4).await;
        assert_conflict(
            &format!("an empty {what}"),
            within(
                "append_batch_if_with",
                log.append_batch_if_with(Vec::new(), expected, None),
            )
            .await,
            expected,
            Some(3),
        );
    }
    let empty = within(
        "append_batch_if_with",
        log.append_batch_if_with(Vec::new(), Some(3), None),
    )
    .await;
    assert!(
        matches!(&empty, Ok(r) if *r == (4..4)),
        "an empty batch at the right tail: expected Ok(4..4), got {empty:?}"
    );
    assert_holds("after an empty conditional batch", &log, 4).await;

    let range = within(
        "append_batch_if_with(Buffered)",
        log.append_batch_if_with(records(4..7), Some(3), Some(Durability::Buffered)),
    )
    .await
    .expect("a buffered conditional batch");
    assert_eq!(range, 4..7);
    let one = within(
        "append_batch_if_with(one record)",
        log.append_batch_if_with(records(7..8), Some(6), None),
    )
    .await
    .expect("a conditional batch of one record");
    assert_eq!(one, 7..8);
    let range = within(
        "append_batch_if_with(Synced)",
        log.append_batch_if_with(records(8..12), Some(7), Some(Durability::Synced)),
    )
    .await
    .expect("a synced conditional batch");
    assert_eq!(range, 8..12);
    let durable = *log.durable().borrow();
    assert!(
        durable >= Some(11),
        "durable() {durable:?} after a synced conditional batch ending at 11"
    );
    assert_holds("after conditional batches", &log, 12).await;
}

/// After `close`, conditional appends (single, batch, empty batch) return
/// [`Error::Closed`], whatever tail they expect.
///
/// # Panics
/// When the log breaks the contract.
pub async fn append_if_after_close<F, Fut, L>(mut new_log: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = L>,
    L: Log,
{
    let log = fresh(&mut new_log).await;
    append_each(&log, 0..2).await;
    within("close", log.close()).await.expect("close");
    for expected in [None, Some(0), Some(1), Some(2)] {
        assert_closed(
            &format!("append_if(_, {expected:?})"),
            within("append_if", log.append_if(record(2), expected)).await,
        );
        assert_closed(
            &format!("append_batch_if_with(_, {expected:?})"),
            within(
                "append_batch_if_with",
                log.append_batch_if_with(records(2..4), expected, Some(Durability::Synced)),
            )
            .await,
        );
        assert_closed(
            &format!("append_batch_if_with(empty, {expected:?})"),
            within(
                "append_batch_if_with",
                log.append_batch_if_with(Vec::new(), expected, None),
            )
            .await,
        );
    }
}

/// One conditional append that won: the tail it expected, its seqs and its records.
#[derive(Debug)]
struct Won {
    expected: Option<Seq>,
    seqs: Range<Seq>,
    records: Vec<Bytes>,
}

/// Eight tasks race: each reads `since` and appends conditionally on it (two tasks with
/// batches of three), over and over, until the log holds 48 records. The checks are
/// those of [`conditional_race`].
///
/// # Panics
/// When the log breaks the contract.
pub async fn conditional_appenders_race<F, Fut, L>(mut new_log: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = L>,
    L: Log,
{
    let log = fresh(&mut new_log).await;
    let (winners, conflicts) = conditional_race(vec![log], 8, 48).await;
    // Not a check (a scheduler may run the tasks one after another), but worth seeing:
    // a race worth the name has losers.
    eprintln!("conditional_appenders_race: {winners} winners, {conflicts} conflicts");
}

/// A race of conditional appends over `handles` of one empty log (several handles
/// of a shared log, say two connections to one NATS stream, or one handle):
/// `tasks_per_handle` tasks on each read their handle's `since` and append conditionally
/// on it (every fourth task with batches of three), over and over, until the log holds at
/// least `len` records. The tasks start together, and each pauses for a millisecond
/// between reading the tail and appending, so that others read the same tail. Checks that every refusal is a [`Error::Conflict`] naming the
/// expected tail and a later actual one, which that handle's `since` then reaches; that
/// no two appends win on the same tail; that the winners, ordered by seq, chain from the
/// empty log, each expecting the previous one's last seq; and that the log is exactly
/// their records, with dense seqs. Returns the number of winners and of conflicts.
///
/// # Panics
/// When the log breaks the contract, or `handles` is empty.
pub async fn conditional_race<L: Log>(
    handles: Vec<L>,
    tasks_per_handle: u64,
    len: Seq,
) -> (usize, u64) {
    let handles: Vec<Arc<L>> = handles.into_iter().map(Arc::new).collect();
    let first = Arc::clone(handles.first().expect("at least one handle"));
    let mut tasks = Vec::new();
    let start = Arc::new(tokio::sync::Barrier::new(
        handles.len() * tasks_per_handle as usize,
    ));
    for (h, log) in handles.iter().enumerate() {
        for t in 0..tasks_per_handle {
            let log = Arc::clone(log);
            let task = format!("handle {h} task {t}");
            let batch = if t % 4 == 3 { 3 } else { 1 };
            let start = Arc::clone(&start);
            tasks.push(tokio::spawn(async move {
                start.wait().await;
                race_task(log, task, batch, len).await
            }));
        }
    }
    let mut winners = Vec::new();
    let mut conflicts = 0;
    for handle in tasks {
        let (won, lost) = within("a conditional appender task", handle)
            .await
            .expect("a conditional appender task panicked");
        winners.extend(won);
        conflicts += lost;
    }
    winners.sort_by_key(|w| w.seqs.start);
    let mut tails = HashSet::new();
    let mut tail: Option<Seq> = None;
    for won in &winners {
        assert!(
            tails.insert(won.expected),
            "two conditional appends won on the tail {:?}",
            won.expected
        );
        assert_eq!(
            won.expected, tail,
            "the winner at {:?} expected {:?}, but the log ended at {tail:?} before it",
            won.seqs, won.expected
        );
        tail = Some(won.seqs.end - 1);
    }
    let total = tail.map_or(0, |t| t + 1);
    assert!(
        total >= len,
        "the race stopped at {total} records, before {len}"
    );
    let mut since = first.since();
    within(
        "since() to show the last winner",
        since.wait_for(|s| *s >= tail),
    )
    .await
    .expect("since() ended while the log was open");
    assert_eq!(
        *first.since().borrow(),
        tail,
        "since() after the race: the last winner's last seq"
    );
    let want: Vec<(Seq, Bytes)> = winners
        .iter()
        .flat_map(|w| w.seqs.clone().zip(w.records.iter().cloned()))
        .collect();
    let got = collect_all("stream after the race", first.stream(StreamOptions::new())).await;
    assert_seqs(
        "stream after the race",
        &got,
        &want.iter().map(|(seq, _)| *seq).collect::<Vec<_>>(),
    );
    for ((seq, bytes), (_, expected)) in got.iter().zip(&want) {
        assert!(
            bytes == expected,
            "the record at seq {seq} is not the winner's"
        );
    }
    (winners.len(), conflicts)
}

/// One task of [`conditional_race`]: its winning appends and how many times it lost.
async fn race_task<L: Log>(log: Arc<L>, task: String, batch: u64, len: Seq) -> (Vec<Won>, u64) {
    let mut won: Vec<Won> = Vec::new();
    let mut conflicts = 0u64;
    let mut since = log.since();
    for attempt in 0u64.. {
        let expected = *since.borrow_and_update();
        let next = expected.map_or(0, |s| s + 1);
        if next >= len {
            break;
        }
        let records: Vec<Bytes> = (0..batch)
            .map(|i| Bytes::from(format!("{task} attempt {attempt} record {i}")))
            .collect();
        // Between reading the tail and appending, a writer reads a view and decides:
        // here it only pauses, so that the other tasks read the same tail meanwhile (a
        // yield is not enough: a scheduler may run one task on and on). Nothing is
        // timed: the pause only makes losers likely, the checks hold either way.
        tokio::time::sleep(std::time::Duration::from_millis(1)).await;
        let result = within(
            "a conditional append in the race",
            log.append_batch_if_with(records.clone(), expected, None),
        )
        .await;
        match result {
            Ok(seqs) => {
                assert_eq!(
                    seqs,
                    next..next + batch,
                    "{task}: a conditional append expecting {expected:?} must get the seqs \
                     right after it"
                );
                won.push(Won {
                    expected,
                    seqs,
                    records,
                });
            }
            Err(Error::Conflict {
                expected: e,
                actual,
            }) => {
                assert_eq!(e, expected, "{task}: Conflict names the expected tail");
                assert!(
                    actual > expected,
                    "{task}: a conflict expecting {expected:?} must name a later tail, not \
                     {actual:?} (only appends happen here)"
                );
                conflicts += 1;
                // The log is at `actual` at least: `since` shows it.
                within(
                    "since() to reach the tail a conflict named",
                    since.wait_for(|s| *s >= actual),
                )
                .await
                .expect("since() ended while the log was open");
            }
            Err(e) => panic!("{task}: a conditional append failed: {e}"),
        }
    }
    (won, conflicts)
}
