//! The log suite's one list of cases, and the macros made from it.

/// The log suite's cases, each with the line the docs show about it: the one list that
/// [`log_conformance_tests!`](crate::log_conformance_tests),
/// [`log_conformance_case_names!`](crate::log_conformance_case_names) and the table in
/// [`testing`](crate::testing) are made from. Calls `$callback` with the tokens after it,
/// then `name: "line",` for every case.
#[doc(hidden)]
#[macro_export]
macro_rules! __log_conformance_list {
    ([$($callback:tt)+] $($args:tt)*) => {
        $($callback)+! {
            $($args)*
            empty_log: "`since`/`durable` are `None`, `get` is `NotFound`, every stream is empty",
            append_assigns_dense_seqs: "seqs 0, 1, 2, …; `since() == seq` as soon as `append` returns",
            get_returns_each_record: "`get` of every record; `NotFound` past the end",
            append_batch_assigns_consecutive_seqs: "batch ranges, empty batches, `since` after a batch",
            stream_bounds: "every combination of `gt`/`gte`/`lt`/`lte`, oldest first",
            stream_reverse: "the same combinations, newest first",
            stream_limit: "`limit` (0 included) with and without bounds and `reverse`",
            stream_large_log: "5000 records forward and reverse, across read-chunk boundaries",
            stream_chunks_match_stream: "`stream_chunks` yields `stream`'s records in chunks of 1 to `max`, live included",
            reverse_live_rejected: "a reverse live stream yields `InvalidArgument` and ends",
            live_stream_has_no_gap_at_seam: "live streams (opened before, after and during appends) see concurrent appends exactly once, in order",
            live_stream_from_midway: "a live stream opened with `gt` in the middle of the log",
            live_stream_with_bounds_ends: "a live stream ends at its upper bound or its limit",
            since_watch_notifies: "`since` and `durable` watchers wake up on appends",
            concurrent_appenders: "8 tasks × 200 records: distinct dense seqs, every record readable",
            batch_visible_atomically: "concurrent readers never see part of a batch",
            revert_truncates: "`revert` (skipped when the backend returns `Unsupported`)",
            close_rejects_every_call: "after `close`, every call returns `Closed`",
            close_ends_pending_live_streams: "a live stream waiting when the log closes ends with `Closed`",
            large_records: "1 MiB records round-trip through `get` and `stream`",
            empty_record: "a zero-length record round-trips",
            sync_makes_durable: "`durable() >= since()` after `sync`, and after a synced append",
            append_if_on_empty_log: "conditional appends on an empty log: `None` wins once, a seq conflicts; empty batches check the tail",
            append_if_conflict_appends_nothing: "a wrong expected tail is `Conflict` with the actual one; nothing appended, `since` unchanged",
            append_batch_if_all_or_nothing: "conditional batches: consecutive seqs or nothing; empty batches check the tail; synced ones are durable",
            append_if_after_close: "after `close`, conditional appends return `Closed`",
            conditional_appenders_race: "8 tasks append on the tail they read: one winner per tail, the log is exactly the winners",
        }
    };
}

/// Calls the macro `$callback` with the name of every case of the log suite, so that a
/// backend that needs its own test wrapper (say, one that starts a server first) still
/// runs every case, including those added later:
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
        $crate::__log_conformance_list! { [$crate::__conformance_names] [$($callback)+] ($($args)*) }
    };
}

/// Implementation detail of [`log_conformance_case_names!`]: drops the lines.
#[doc(hidden)]
#[macro_export]
macro_rules! __conformance_names {
    ([$($callback:tt)+] ($($args:tt)*) $($case:ident: $checks:literal,)*) => {
        $($callback)+! { $($args)* $($case)* }
    };
}

/// Runs every case of the log suite against a log factory, one `#[tokio::test]` per case.
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
            $crate::__log_conformance_list! { [$crate::__log_conformance_cases] ($factory) }
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
    (($factory:expr) $($case:ident: $checks:literal,)*) => {
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
