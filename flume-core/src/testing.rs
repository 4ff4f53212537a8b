//! The log conformance suite (feature `testing`): the [`Log`] contract as executable
//! checks, run by every backend.
//!
//! Each public function checks one behaviour against logs made by a **factory**: a closure
//! (`FnMut() -> impl Future<Output = L>`) that returns a fresh, **empty** log each time it
//! is called. A function panics, failing the test, at the first breach of the contract,
//! and waits at most 30 seconds for anything, so that a hung stream fails instead of
//! hanging the test run.
//!
//! A backend runs the whole suite with one line in a file under `tests/`, with
//! [`log_conformance_tests!`](crate::log_conformance_tests), which writes one
//! `#[tokio::test]` per case:
//!
//! ```
//! flume_core::log_conformance_tests!(|| async { flumelog_memory::MemoryLog::new() });
//! # fn main() {}
//! ```
//!
//! A single case can also be called directly:
//!
//! ```
//! use flumelog_memory::MemoryLog;
//!
//! # #[tokio::main(flavor = "multi_thread", worker_threads = 2)]
//! # async fn main() {
//! flume_core::testing::append_batch_assigns_consecutive_seqs(|| async { MemoryLog::new() })
//!     .await;
//! # }
//! ```
//!
//! ## The cases
//!
//! | function | checks |
//! |---|---|
//! | [`empty_log`] | `since`/`durable` are `None`, `get` is `NotFound`, every stream is empty |
//! | [`append_assigns_dense_seqs`] | seqs 0, 1, 2, …; `since() == seq` as soon as `append` returns |
//! | [`get_returns_each_record`] | `get` of every record; `NotFound` past the end |
//! | [`append_batch_assigns_consecutive_seqs`] | batch ranges, empty batches, `since` after a batch |
//! | [`stream_bounds`] | every combination of `gt`/`gte`/`lt`/`lte`, oldest first |
//! | [`stream_reverse`] | the same combinations, newest first |
//! | [`stream_limit`] | `limit` (0 included) with and without bounds and `reverse` |
//! | [`stream_large_log`] | 5000 records forward and reverse, across read-chunk boundaries |
//! | [`stream_chunks_match_stream`] | `stream_chunks` yields `stream`'s records in chunks of 1 to `max`, live included |
//! | [`reverse_live_rejected`] | a reverse live stream yields `InvalidArgument` and ends |
//! | [`live_stream_has_no_gap_at_seam`] | live streams (opened before, after and during appends) see concurrent appends exactly once, in order |
//! | [`live_stream_from_midway`] | a live stream opened with `gt` in the middle of the log |
//! | [`live_stream_with_bounds_ends`] | a live stream ends at its upper bound or its limit |
//! | [`since_watch_notifies`] | `since` and `durable` watchers wake up on appends |
//! | [`concurrent_appenders`] | 8 tasks × 200 records: distinct dense seqs, every record readable |
//! | [`batch_visible_atomically`] | concurrent readers never see part of a batch |
//! | [`revert_truncates`] | `revert` (skipped when the backend returns `Unsupported`) |
//! | [`close_rejects_every_call`] | after `close`, every call returns `Closed` |
//! | [`close_ends_pending_live_streams`] | a live stream waiting when the log closes ends with `Closed` |
//! | [`large_records`] | 1 MiB records round-trip through `get` and `stream` |
//! | [`empty_record`] | a zero-length record round-trips |
//! | [`sync_makes_durable`] | `durable() >= since()` after `sync`, and after a synced append |

use std::fmt::Debug;
use std::future::Future;
use std::ops::Range;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::stream::BoxStream;
use futures::StreamExt;

use crate::{Durability, Error, Log, RawRecord, Result, Seq, StreamOptions};

/// How long the suite waits for anything before failing instead of hanging.
const PATIENCE: Duration = Duration::from_secs(30);

/// Calls the macro `$callback` with the name of every case of the suite, so that a
/// backend that needs its own test wrapper (say, one that starts a server or skips when
/// none is installed) still runs every case, including those added later:
///
/// ```
/// macro_rules! my_cases {
///     (($prefix:literal) $($case:ident)*) => {
///         const CASES: &[&str] = &[$(concat!($prefix, stringify!($case))),*];
///     };
/// }
/// flume_core::log_conformance_case_names! { [my_cases] ("case: ") }
///
/// fn main() {
///     assert!(CASES.contains(&"case: empty_log"));
/// }
/// ```
///
/// The callback's path goes in brackets; the tokens after it (here `("case: ")`) are
/// passed to it first, before the case names.
#[macro_export]
macro_rules! log_conformance_case_names {
    ([$($callback:tt)+] $($args:tt)*) => {
        $($callback)+! {
            $($args)*
            empty_log
            append_assigns_dense_seqs
            get_returns_each_record
            append_batch_assigns_consecutive_seqs
            stream_bounds
            stream_reverse
            stream_limit
            stream_large_log
            stream_chunks_match_stream
            reverse_live_rejected
            live_stream_has_no_gap_at_seam
            live_stream_from_midway
            live_stream_with_bounds_ends
            since_watch_notifies
            concurrent_appenders
            batch_visible_atomically
            revert_truncates
            close_rejects_every_call
            close_ends_pending_live_streams
            large_records
            empty_record
            sync_makes_durable
        }
    };
}

/// Runs every case of the suite against a log factory, one `#[tokio::test]` per case.
///
/// The argument is an expression, evaluated anew in each test, that gives a factory:
/// anything `FnMut() -> impl Future<Output = L>` where `L: Log`, returning a fresh, empty
/// log on every call. The tests go into a module, `log_conformance` by default; name it
/// with `name => factory` to run the suite twice in one file (say, with two
/// configurations).
///
/// The calling crate needs `tokio` with the `macros` and `rt-multi-thread` features, and
/// `flume-core` with the `testing` feature, among its dev-dependencies. Each test runs on a
/// multi-threaded runtime with two workers.
///
/// ```
/// use flumelog_memory::MemoryLog;
///
/// // In tests/conformance.rs:
/// flume_core::log_conformance_tests!(|| async { MemoryLog::new() });
///
/// // A second run in the same file, with a factory that keeps state between calls.
/// flume_core::log_conformance_tests!(preallocated => {
///     let mut made = 0;
///     move || {
///         made += 1;
///         let capacity = 1024 * made;
///         async move { MemoryLog::with_capacity(capacity) }
///     }
/// });
/// # fn main() {}
/// ```
///
/// A durable log gives each call its own directory. The factory owns the temporary
/// directory, which the suite drops only after the logs it made:
///
/// ```ignore
/// flume_core::log_conformance_tests!({
///     let dir = tempfile::tempdir().unwrap();
///     let mut made = 0;
///     move || {
///         made += 1;
///         let path = dir.path().join(format!("log-{made}"));
///         async move { flumelog_file::FileLog::open(path).await.unwrap() }
///     }
/// });
/// ```
#[macro_export]
macro_rules! log_conformance_tests {
    ($name:ident => $factory:expr $(,)?) => {
        mod $name {
            $crate::log_conformance_case_names! { [$crate::__log_conformance_cases] ($factory) }
        }
    };
    ($factory:expr $(,)?) => {
        $crate::log_conformance_tests!(log_conformance => $factory);
    };
}

/// Implementation detail of [`log_conformance_tests!`].
#[doc(hidden)]
#[macro_export]
macro_rules! __log_conformance_cases {
    (($factory:expr) $($case:ident)*) => {
        #[allow(unused_imports)]
        use super::*;
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $case() {
                $crate::testing::$case($factory).await;
            }
        )*
    };
}

// ---------------------------------------------------------------------------------------
// Helpers

/// Awaits `fut`, failing the test after [`PATIENCE`].
async fn within<T>(what: &str, fut: impl Future<Output = T>) -> T {
    match tokio::time::timeout(PATIENCE, fut).await {
        Ok(value) => value,
        Err(_) => panic!("{what}: did not complete within {PATIENCE:?}"),
    }
}

/// A fresh log from the factory, checked to be empty.
async fn fresh<F, Fut, L>(new_log: &mut F) -> L
where
    F: FnMut() -> Fut,
    Fut: Future<Output = L>,
    L: Log,
{
    let log = within("the log factory", new_log()).await;
    assert_eq!(
        *log.since().borrow(),
        None,
        "the factory must return a fresh, empty log"
    );
    log
}

/// The bytes the suite stores as record `i`: distinct for every `i`, of varying length.
fn record(i: Seq) -> Bytes {
    Bytes::from(format!("record {i};").repeat(1 + (i % 5) as usize))
}

fn records(seqs: Range<Seq>) -> Vec<Bytes> {
    seqs.map(record).collect()
}

/// Appends `record(i)` for each `i`, one at a time, checking the seqs.
async fn append_each<L: Log>(log: &L, seqs: Range<Seq>) {
    for i in seqs {
        let seq = within("append", log.append(record(i)))
            .await
            .unwrap_or_else(|e| panic!("append of record {i} failed: {e}"));
        assert_eq!(seq, i, "append must assign dense seqs from 0");
    }
}

/// Appends `record(i)` for each `i` as one batch, checking the range.
async fn append_as_batch<L: Log>(log: &L, seqs: Range<Seq>) {
    let got = within("append_batch", log.append_batch(records(seqs.clone())))
        .await
        .unwrap_or_else(|e| panic!("append_batch of records {seqs:?} failed: {e}"));
    assert_eq!(
        got, seqs,
        "append_batch must return the consecutive seqs it assigned"
    );
}

fn describe(result: &Result<Bytes>) -> String {
    match result {
        Ok(bytes) => format!("Ok(a record of {} bytes)", bytes.len()),
        Err(e) => format!("Err({e:?})"),
    }
}

fn assert_not_found(what: &str, result: Result<Bytes>, seq: Seq) {
    match result {
        Err(Error::NotFound { seq: s }) if s == seq => {}
        other => panic!(
            "{what}: expected Err(NotFound {{ seq: {seq} }}), got {}",
            describe(&other)
        ),
    }
}

fn assert_closed<T: Debug>(what: &str, result: Result<T>) {
    match result {
        Err(Error::Closed) => {}
        other => panic!("{what} after close: expected Err(Closed), got {other:?}"),
    }
}

async fn get_ok<L: Log>(log: &L, seq: Seq) -> Bytes {
    within("get", log.get(seq))
        .await
        .unwrap_or_else(|e| panic!("get({seq}) failed: {e}"))
}

/// Every item of a finite stream, failing on an error item or after [`PATIENCE`].
async fn collect_all(
    what: &str,
    mut stream: BoxStream<'static, Result<RawRecord>>,
) -> Vec<RawRecord> {
    within(what, async {
        let mut out = Vec::new();
        while let Some(item) = stream.next().await {
            match item {
                Ok(record) => out.push(record),
                Err(e) => panic!(
                    "{what}: the stream failed after {} records: {e:?}",
                    out.len()
                ),
            }
        }
        out
    })
    .await
}

/// The next `n` items of a (live) stream, failing on an error item or after [`PATIENCE`].
async fn take_n(
    what: String,
    mut stream: BoxStream<'static, Result<RawRecord>>,
    n: usize,
) -> (BoxStream<'static, Result<RawRecord>>, Vec<RawRecord>) {
    let out = within(&what, async {
        let mut out = Vec::with_capacity(n);
        while out.len() < n {
            match stream.next().await {
                Some(Ok(record)) => out.push(record),
                Some(Err(e)) => panic!(
                    "{what}: the stream failed after {} records: {e:?}",
                    out.len()
                ),
                None => panic!(
                    "{what}: the stream ended after {} of {n} records",
                    out.len()
                ),
            }
        }
        out
    })
    .await;
    (stream, out)
}

/// Checks that `got` holds exactly the seqs `want`, in order, naming the first difference.
fn assert_seqs(what: &str, got: &[RawRecord], want: &[Seq]) {
    let first_difference = got
        .iter()
        .zip(want)
        .position(|((seq, _), want)| seq != want);
    if let Some(i) = first_difference {
        panic!(
            "{what}: item {i} has seq {} where {} was expected",
            got[i].0, want[i]
        );
    }
    assert_eq!(
        got.len(),
        want.len(),
        "{what}: yielded {} records where {} were expected",
        got.len(),
        want.len()
    );
}

/// The seqs a stream over the records `0..len` must yield, computed naively from `opts`.
fn expected_seqs(opts: &StreamOptions, len: Seq) -> Vec<Seq> {
    let mut seqs: Vec<Seq> = (0..len)
        .filter(|s| opts.gt.is_none_or(|b| *s > b))
        .filter(|s| opts.gte.is_none_or(|b| *s >= b))
        .filter(|s| opts.lt.is_none_or(|b| *s < b))
        .filter(|s| opts.lte.is_none_or(|b| *s <= b))
        .collect();
    if opts.reverse {
        seqs.reverse();
    }
    if let Some(limit) = opts.limit {
        seqs.truncate(limit);
    }
    seqs
}

/// Streams with `opts` from a log holding `record(i)` for `i` in `0..len` and checks the
/// seqs and bytes.
async fn check_stream<L: Log>(log: &L, opts: StreamOptions, len: Seq) {
    let what = format!("stream({opts:?}) over {len} records");
    let got = collect_all(&what, log.stream(opts.clone())).await;
    assert_seqs(&what, &got, &expected_seqs(&opts, len));
    for (seq, bytes) in &got {
        assert!(*bytes == record(*seq), "{what}: wrong bytes for seq {seq}");
    }
}

/// Every combination of a few interesting values of each bound, for a 20-record log.
fn bound_combinations() -> Vec<StreamOptions> {
    let gts = [
        None,
        Some(0),
        Some(4),
        Some(18),
        Some(19),
        Some(25),
        Some(Seq::MAX),
    ];
    let gtes = [None, Some(0), Some(5), Some(19), Some(20)];
    let lts = [None, Some(0), Some(1), Some(8), Some(20), Some(Seq::MAX)];
    let ltes = [None, Some(0), Some(7), Some(19), Some(30), Some(Seq::MAX)];
    let mut all = Vec::new();
    for gt in gts {
        for gte in gtes {
            for lt in lts {
                for lte in ltes {
                    all.push(StreamOptions {
                        gt,
                        gte,
                        lt,
                        lte,
                        ..StreamOptions::default()
                    });
                }
            }
        }
    }
    all
}

fn live() -> StreamOptions {
    StreamOptions::new().live(true)
}

// ---------------------------------------------------------------------------------------
// The cases

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

/// [`collect_all`] with an owned description, for spawning.
async fn collect_owned(
    what: &'static str,
    stream: BoxStream<'static, Result<RawRecord>>,
) -> Vec<RawRecord> {
    collect_all(what, stream).await
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

/// Every remaining item of a stream, up to a cap, failing after [`PATIENCE`].
async fn drain_rest(mut stream: BoxStream<'static, Result<RawRecord>>) -> Vec<Result<RawRecord>> {
    within("draining a stream", async {
        let mut out = Vec::new();
        while let Some(item) = stream.next().await {
            out.push(item);
            assert!(
                out.len() <= 100_000,
                "a stream over a closed log does not end"
            );
        }
        out
    })
    .await
}

/// Checks that a drained stream yielded its records, then `Err(Closed)`, then ended.
fn assert_ended_closed(what: &str, items: Vec<Result<RawRecord>>) {
    match items.last() {
        Some(Err(Error::Closed)) => {}
        other => panic!("{what}: expected to end with Err(Closed), ended with {other:?}"),
    }
    let errors = items.iter().filter(|item| item.is_err()).count();
    assert_eq!(errors, 1, "{what}: expected one error, got {items:?}");
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

/// `sync` returns once `durable() >= since()`; a synced append or batch is durable when it
/// returns; `durable` never runs ahead of `since`.
///
/// # Panics
/// When the log breaks the contract.
pub async fn sync_makes_durable<F, Fut, L>(mut new_log: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = L>,
    L: Log,
{
    let log = fresh(&mut new_log).await;
    let check = |what: &str| {
        let since = *log.since().borrow();
        let durable = *log.durable().borrow();
        assert!(
            durable <= since,
            "{what}: durable() {durable:?} is ahead of since() {since:?}"
        );
        (since, durable)
    };
    for i in 0..5 {
        log.append_with(record(i), Some(Durability::Buffered))
            .await
            .expect("buffered append");
    }
    check("after buffered appends");
    within("sync", log.sync()).await.expect("sync");
    let (since, durable) = check("after sync");
    assert_eq!(since, Some(4));
    assert!(
        durable >= since,
        "durable() {durable:?} < since() {since:?} after sync"
    );

    let seq = within(
        "append_with(Synced)",
        log.append_with(record(5), Some(Durability::Synced)),
    )
    .await
    .expect("synced append");
    assert_eq!(seq, 5);
    let (_, durable) = check("after a synced append");
    assert!(
        durable >= Some(seq),
        "durable() {durable:?} after a synced append of {seq}"
    );

    let range = within(
        "append_batch_with(Synced)",
        log.append_batch_with(records(6..9), Some(Durability::Synced)),
    )
    .await
    .expect("synced batch");
    assert_eq!(range, 6..9);
    let (_, durable) = check("after a synced batch");
    assert!(
        durable >= Some(8),
        "durable() {durable:?} after a synced batch ending at 8"
    );

    within("sync", log.sync()).await.expect("a second sync");
    let (since, durable) = check("after a second sync");
    assert_eq!(durable, since, "durable() after a second sync");
}

/// An `xxd`-style dump of `bytes` (offset, 16 bytes as hex pairs, printable ASCII), for
/// snapshot tests that pin a file format byte by byte.
///
/// ```
/// let dump = flume_core::testing::hexdump(b"flume\x00\x01");
/// assert_eq!(dump, "00000000: 666c 756d 6500 01                        flume..\n");
/// ```
pub fn hexdump(bytes: &[u8]) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    for (i, line) in bytes.chunks(16).enumerate() {
        let _ = write!(out, "{:08x}:", i * 16);
        for pair in line.chunks(2) {
            out.push(' ');
            for b in pair {
                let _ = write!(out, "{b:02x}");
            }
        }
        let used = line.len() * 2 + line.len().div_ceil(2);
        out.push_str(&" ".repeat(40 - used));
        out.push_str("  ");
        out.extend(line.iter().map(|&b| {
            if b.is_ascii_graphic() || b == b' ' {
                b as char
            } else {
                '.'
            }
        }));
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expected_seqs_model() {
        let opts = StreamOptions::new().gt(3).lte(9).limit(2);
        assert_eq!(expected_seqs(&opts, 20), vec![4, 5]);
        let opts = StreamOptions::new().gte(5).lt(8).reverse(true);
        assert_eq!(expected_seqs(&opts, 20), vec![7, 6, 5]);
        assert!(expected_seqs(&StreamOptions::new().gt(Seq::MAX), 20).is_empty());
        assert_eq!(bound_combinations().len(), 7 * 5 * 6 * 6);
    }

    #[test]
    fn records_are_distinct() {
        let all: std::collections::HashSet<Bytes> = (0..1000).map(record).collect();
        assert_eq!(all.len(), 1000);
    }
}
