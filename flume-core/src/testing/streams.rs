//! Streams of history: bounds, reverse, limit, chunks, a large log.

use std::future::Future;

use futures::StreamExt;

use super::support::*;
use crate::{Log, RawRecord, Result, Seq, StreamOptions};

/// Every combination of `gt`, `gte`, `lt` and `lte` (including bounds past the end,
/// contradictory bounds and `Seq::MAX`) over 20 records, oldest first.
///
/// # Panics
/// When the log breaks the contract.
pub async fn stream_bounds<F, Fut, L>(mut new_log: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = L>,
    L: Log,
{
    let log = fresh(&mut new_log).await;
    append_each(&log, 0..20).await;
    for opts in bound_combinations() {
        check_stream(&log, opts, 20).await;
    }
    // The builder's `after`, as used with a view's `since`.
    check_stream(&log, StreamOptions::new().after(None), 20).await;
    check_stream(&log, StreamOptions::new().after(Some(9)), 20).await;
}

/// The same bound combinations as [`stream_bounds`], newest first.
///
/// # Panics
/// When the log breaks the contract.
pub async fn stream_reverse<F, Fut, L>(mut new_log: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = L>,
    L: Log,
{
    let log = fresh(&mut new_log).await;
    append_each(&log, 0..20).await;
    for opts in bound_combinations() {
        check_stream(&log, opts.reverse(true), 20).await;
    }
}

/// `limit` (0, 1, exact, past the end, `usize::MAX`) with and without bounds, forward and
/// reverse.
///
/// # Panics
/// When the log breaks the contract.
pub async fn stream_limit<F, Fut, L>(mut new_log: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = L>,
    L: Log,
{
    let log = fresh(&mut new_log).await;
    append_each(&log, 0..20).await;
    let bounds = [
        StreamOptions::new(),
        StreamOptions::new().gt(3),
        StreamOptions::new().gte(3).lt(15),
        StreamOptions::new().lte(10),
        StreamOptions::new().gt(25),
    ];
    for opts in bounds {
        for limit in [0, 1, 2, 5, 11, 19, 20, 21, usize::MAX] {
            for reverse in [false, true] {
                check_stream(&log, opts.clone().limit(limit).reverse(reverse), 20).await;
            }
        }
    }
    // A limit of 0 yields nothing, even for a live stream (which then ends).
    let what = "live stream with limit 0";
    let got = collect_all(what, log.stream(live().limit(0))).await;
    assert!(got.is_empty(), "{what}: yielded {} records", got.len());
}

/// `stream_chunks` yields exactly the records `stream` does, in order, in chunks of 1 to
/// `max` records, for bounds, reverse and limits; a live chunked stream also yields
/// records appended after it was opened.
///
/// # Panics
/// When the log breaks the contract.
pub async fn stream_chunks_match_stream<F, Fut, L>(mut new_log: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = L>,
    L: Log,
{
    let log = fresh(&mut new_log).await;
    append_as_batch(&log, 0..7).await;
    append_each(&log, 7..20).await;
    let cases = [
        StreamOptions::new(),
        StreamOptions::new().gt(3).lt(15),
        StreamOptions::new().gte(5).limit(6),
        StreamOptions::new().lte(10).reverse(true),
        StreamOptions::new().limit(7).reverse(true),
        StreamOptions::new().gt(25),
    ];
    for opts in cases {
        for max in [1, 3, 20, 1000] {
            let what = format!("stream_chunks({opts:?}, {max})");
            let chunks: Vec<Result<Vec<RawRecord>>> =
                within(&what, log.stream_chunks(opts.clone(), max).collect()).await;
            let mut got = Vec::new();
            for chunk in chunks {
                let chunk = chunk.unwrap_or_else(|e| panic!("{what}: failed: {e:?}"));
                assert!(
                    (1..=max).contains(&chunk.len()),
                    "{what}: a chunk of {} records",
                    chunk.len()
                );
                got.extend(chunk);
            }
            let want = collect_all(&what, log.stream(opts.clone())).await;
            assert_eq!(got, want, "{what}: not the records stream yields");
            assert_seqs(&what, &got, &expected_seqs(&opts, 20));
        }
    }
    // Live: the history, then what is appended later, with no gap or duplicate.
    let what = "live stream_chunks from seq 15";
    let mut chunks = log.stream_chunks(live().gte(15), 4);
    let mut got = Vec::new();
    while got.len() < 5 {
        match within(what, chunks.next()).await {
            Some(Ok(chunk)) => got.extend(chunk),
            other => panic!("{what}: {other:?}"),
        }
    }
    append_each(&log, 20..26).await;
    while got.len() < 11 {
        match within(what, chunks.next()).await {
            Some(Ok(chunk)) => got.extend(chunk),
            other => panic!("{what}: {other:?}"),
        }
    }
    let seqs: Vec<Seq> = got.iter().map(|r| r.0).collect();
    assert_eq!(seqs, (15..26).collect::<Vec<_>>(), "{what}");
    for (seq, bytes) in &got {
        assert!(*bytes == record(*seq), "{what}: wrong bytes for seq {seq}");
    }
}

/// 5000 records (more than several read chunks of any reasonable backend), streamed whole
/// and in slices that start and end on and around chunk boundaries, forward and reverse.
///
/// # Panics
/// When the log breaks the contract.
pub async fn stream_large_log<F, Fut, L>(mut new_log: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = L>,
    L: Log,
{
    const N: Seq = 5000;
    let log = fresh(&mut new_log).await;
    append_as_batch(&log, 0..2500).await;
    append_each(&log, 2500..2510).await;
    append_as_batch(&log, 2510..N).await;
    for opts in [
        StreamOptions::new(),
        StreamOptions::new().reverse(true),
        StreamOptions::new().gte(1000).lt(4100),
        StreamOptions::new()
            .gt(10)
            .lte(4097)
            .reverse(true)
            .limit(2500),
        StreamOptions::new().limit(2049),
        StreamOptions::new().gt(1023).limit(1025),
        StreamOptions::new().lt(1024).reverse(true),
        StreamOptions::new().lte(1024).reverse(true),
        StreamOptions::new().gte(2047).lte(3073),
        StreamOptions::new().gte(N - 1),
        StreamOptions::new().gte(N - 1).reverse(true),
        StreamOptions::new().reverse(true).limit(3000),
    ] {
        check_stream(&log, opts, N).await;
    }
}
