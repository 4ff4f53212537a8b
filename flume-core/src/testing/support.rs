//! What every case of the log suite shares: the records it stores, waiting with a
//! deadline, and checks that name the first difference.

use std::fmt::Debug;
use std::future::Future;
use std::ops::Range;

use bytes::Bytes;
use futures::stream::BoxStream;
use futures::StreamExt;

use super::PATIENCE;
use crate::{Error, Log, RawRecord, Result, Seq, StreamOptions};

/// Awaits `fut`, failing the test after [`PATIENCE`].
pub(super) async fn within<T>(what: &str, fut: impl Future<Output = T>) -> T {
    match tokio::time::timeout(PATIENCE, fut).await {
        Ok(value) => value,
        Err(_) => panic!("{what}: did not complete within {PATIENCE:?}"),
    }
}

/// A fresh log from the factory, checked to be empty.
pub(super) async fn fresh<F, Fut, L>(new_log: &mut F) -> L
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
pub(super) fn record(i: Seq) -> Bytes {
    Bytes::from(format!("record {i};").repeat(1 + (i % 5) as usize))
}

pub(super) fn records(seqs: Range<Seq>) -> Vec<Bytes> {
    seqs.map(record).collect()
}

/// Appends `record(i)` for each `i`, one at a time, checking the seqs.
pub(super) async fn append_each<L: Log>(log: &L, seqs: Range<Seq>) {
    for i in seqs {
        let seq = within("append", log.append(record(i)))
            .await
            .unwrap_or_else(|e| panic!("append of record {i} failed: {e}"));
        assert_eq!(seq, i, "append must assign dense seqs from 0");
    }
}

/// Appends `record(i)` for each `i` as one batch, checking the range.
pub(super) async fn append_as_batch<L: Log>(log: &L, seqs: Range<Seq>) {
    let got = within("append_batch", log.append_batch(records(seqs.clone())))
        .await
        .unwrap_or_else(|e| panic!("append_batch of records {seqs:?} failed: {e}"));
    assert_eq!(
        got, seqs,
        "append_batch must return the consecutive seqs it assigned"
    );
}

pub(super) fn describe(result: &Result<Bytes>) -> String {
    match result {
        Ok(bytes) => format!("Ok(a record of {} bytes)", bytes.len()),
        Err(e) => format!("Err({e:?})"),
    }
}

pub(super) fn assert_not_found(what: &str, result: Result<Bytes>, seq: Seq) {
    match result {
        Err(Error::NotFound { seq: s }) if s == seq => {}
        other => panic!(
            "{what}: expected Err(NotFound {{ seq: {seq} }}), got {}",
            describe(&other)
        ),
    }
}

pub(super) fn assert_closed<T: Debug>(what: &str, result: Result<T>) {
    match result {
        Err(Error::Closed) => {}
        other => panic!("{what} after close: expected Err(Closed), got {other:?}"),
    }
}

pub(super) async fn get_ok<L: Log>(log: &L, seq: Seq) -> Bytes {
    within("get", log.get(seq))
        .await
        .unwrap_or_else(|e| panic!("get({seq}) failed: {e}"))
}

/// Every item of a finite stream, failing on an error item or after [`PATIENCE`].
pub(super) async fn collect_all(
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
pub(super) async fn take_n(
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
pub(super) fn assert_seqs(what: &str, got: &[RawRecord], want: &[Seq]) {
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
pub(super) fn expected_seqs(opts: &StreamOptions, len: Seq) -> Vec<Seq> {
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
pub(super) async fn check_stream<L: Log>(log: &L, opts: StreamOptions, len: Seq) {
    let what = format!("stream({opts:?}) over {len} records");
    let got = collect_all(&what, log.stream(opts.clone())).await;
    assert_seqs(&what, &got, &expected_seqs(&opts, len));
    for (seq, bytes) in &got {
        assert!(*bytes == record(*seq), "{what}: wrong bytes for seq {seq}");
    }
}

/// Every combination of a few interesting values of each bound, for a 20-record log.
pub(super) fn bound_combinations() -> Vec<StreamOptions> {
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

pub(super) fn live() -> StreamOptions {
    StreamOptions::new().live(true)
}

/// [`collect_all`] with an owned description, for spawning.
pub(super) async fn collect_owned(
    what: &'static str,
    stream: BoxStream<'static, Result<RawRecord>>,
) -> Vec<RawRecord> {
    collect_all(what, stream).await
}

/// Every remaining item of a stream, up to a cap, failing after [`PATIENCE`].
pub(super) async fn drain_rest(
    mut stream: BoxStream<'static, Result<RawRecord>>,
) -> Vec<Result<RawRecord>> {
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
pub(super) fn assert_ended_closed(what: &str, items: Vec<Result<RawRecord>>) {
    match items.last() {
        Some(Err(Error::Closed)) => {}
        other => panic!("{what}: expected to end with Err(Closed), ended with {other:?}"),
    }
    let errors = items.iter().filter(|item| item.is_err()).count();
    assert_eq!(errors, 1, "{what}: expected one error, got {items:?}");
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
