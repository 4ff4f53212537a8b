//! A read never sees a wiped view or a state older than its wait target, across
//! `rebuild()`, resets after failures and reverts; a read pending at close fails with
//! `Closed`.
//!
//! `FLUME_RESET_STRESS_CYCLES` sets how many rebuilds, failure resets and reverts each
//! test runs (default 20).
mod common;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use common::{Collect, CollectReader};
use flume_core::{Error, Flume, Wait};
use flumelog_memory::MemoryLog;
use flumeview_reduce::{Reduce, ReduceReader};

const RECORDS: u64 = 200;

fn cycles() -> usize {
    std::env::var("FLUME_RESET_STRESS_CYCLES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20)
}

/// A database over `RECORDS` records with a count and a collecting view that fails its
/// next apply whenever `fail_next` is set.
async fn database(fail_next: &Arc<AtomicBool>) -> Flume<u64> {
    let flag = Arc::clone(fail_next);
    let collect = Collect::new(1).failing(move |_| flag.swap(false, Ordering::SeqCst));
    let db = Flume::<u64>::builder(MemoryLog::new(), flume_core::Json)
        .batch_size(16)
        .build()
        .use_view("count", Reduce::count(1))
        .unwrap()
        .use_view("collect", collect)
        .unwrap();
    let values: Vec<u64> = (0..RECORDS).collect();
    db.append_batch(&values).await.unwrap();
    db.ready().await.unwrap();
    db
}

/// Readers that read both views until `stop`, checking each answer against the target
/// the read waited for: with `Wait::Log` when the log keeps `RECORDS` records, else with
/// `Wait::AtLeast` the log's last seq when the read starts. Each returns how many reads
/// it checked.
fn spawn_readers(
    db: &Flume<u64>,
    stop: &Arc<AtomicBool>,
    log_changes: bool,
) -> Vec<tokio::task::JoinHandle<u64>> {
    let count: ReduceReader<u64> = db.view("count").unwrap();
    let collect: CollectReader = db.view("collect").unwrap();
    (0..4)
        .map(|_| {
            let (count, collect, stop, db) =
                (count.clone(), collect.clone(), stop.clone(), db.clone());
            tokio::spawn(async move {
                let mut reads = 0;
                while !stop.load(Ordering::Relaxed) {
                    let (wait, target) = match db.since() {
                        Some(last) if log_changes => (Wait::AtLeast(last), last + 1),
                        _ => (Wait::Log, RECORDS),
                    };
                    let n = count.get(wait).await.unwrap();
                    assert!(
                        n >= target,
                        "count read {n} after waiting for {target} records"
                    );
                    let values = collect.get(wait).await.unwrap();
                    assert!(
                        values.len() as u64 >= target,
                        "collect read {} values after waiting for {target}",
                        values.len()
                    );
                    let dense = values
                        .iter()
                        .enumerate()
                        .all(|(i, &(s, v))| s == i as u64 && v == s);
                    assert!(dense, "collect read a state with gaps");
                    reads += 2;
                    tokio::task::yield_now().await;
                }
                reads
            })
        })
        .collect()
}

async fn stop_readers(stop: &AtomicBool, readers: Vec<tokio::task::JoinHandle<u64>>) -> u64 {
    stop.store(true, Ordering::SeqCst);
    let mut reads = 0;
    for reader in readers {
        reads += reader
            .await
            .expect("a reader saw a state older than its target");
    }
    reads
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_during_rebuilds_never_see_a_wiped_view() {
    let fail_next = Arc::new(AtomicBool::new(false));
    let db = database(&fail_next).await;
    let stop = Arc::new(AtomicBool::new(false));
    let readers = spawn_readers(&db, &stop, false);
    for _ in 0..cycles() {
        db.rebuild().await.unwrap();
    }
    let reads = stop_readers(&stop, readers).await;
    assert!(reads > 0);
    db.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_during_failure_resets_never_see_a_wiped_view() {
    let fail_next = Arc::new(AtomicBool::new(false));
    let db = database(&fail_next).await;
    let stop = Arc::new(AtomicBool::new(false));
    let readers = spawn_readers(&db, &stop, false);
    for _ in 0..cycles() {
        // The rebuild's applies fail once: the driver resets the view again and
        // rebuilds it a second time.
        fail_next.store(true, Ordering::SeqCst);
        db.rebuild().await.unwrap();
        assert!(!fail_next.load(Ordering::SeqCst), "no apply failed");
    }
    let reads = stop_readers(&stop, readers).await;
    assert!(reads > 0);
    db.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_during_reverts_never_see_a_wiped_view() {
    let fail_next = Arc::new(AtomicBool::new(false));
    let db = database(&fail_next).await;
    let stop = Arc::new(AtomicBool::new(false));
    let readers = spawn_readers(&db, &stop, true);
    for _ in 0..cycles() {
        // Cut the last 50 records and put them back: every view rebuilds.
        db.revert(Some(RECORDS - 51)).await.unwrap();
        let values: Vec<u64> = (RECORDS - 50..RECORDS).collect();
        db.append_batch(&values).await.unwrap();
        db.ready().await.unwrap();
    }
    let reads = stop_readers(&stop, readers).await;
    assert!(reads > 0);
    db.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_pending_at_close_fails_with_closed() {
    for round in 0..cycles() {
        let fail_next = Arc::new(AtomicBool::new(false));
        let db = database(&fail_next).await;
        let count: ReduceReader<u64> = db.view("count").unwrap();
        let collect: CollectReader = db.view("collect").unwrap();
        let answered = Arc::new(AtomicU64::new(0));
        // Reads that race a rebuild and then the close: each answers with the whole
        // state or fails with `Closed`, never with a wiped state.
        let readers: Vec<_> = (0..4)
            .map(|_| {
                let (count, collect, answered) = (count.clone(), collect.clone(), answered.clone());
                tokio::spawn(async move {
                    loop {
                        match count.get(Wait::Log).await {
                            Ok(n) => assert_eq!(n, RECORDS, "a read saw a wiped count"),
                            Err(Error::Closed) => return,
                            Err(e) => panic!("unexpected error {e}"),
                        }
                        match collect.get(Wait::Log).await {
                            Ok(v) => assert_eq!(v.len() as u64, RECORDS, "a read saw a wiped view"),
                            Err(Error::Closed) => return,
                            Err(e) => panic!("unexpected error {e}"),
                        }
                        answered.fetch_add(1, Ordering::Relaxed);
                        tokio::task::yield_now().await;
                    }
                })
            })
            .collect();
        // A read that can only be answered by records never appended is pending at close.
        let pending = tokio::spawn({
            let count = count.clone();
            async move { count.get(Wait::AtLeast(RECORDS + 10)).await }
        });
        // Rebuilds, one after the other, until the close stops them.
        let rebuild = tokio::spawn({
            let db = db.clone();
            async move {
                loop {
                    if let Err(e) = db.rebuild().await {
                        return e;
                    }
                }
            }
        });
        // Close at a different point of the rebuild each round.
        while answered.load(Ordering::Relaxed) < 50 + round as u64 % 16 {
            tokio::task::yield_now().await;
        }
        db.close().await.unwrap();
        assert!(matches!(rebuild.await.unwrap(), Error::Closed));
        assert!(matches!(pending.await.unwrap(), Err(Error::Closed)));
        for reader in readers {
            reader.await.expect("a reader saw a wiped state");
        }
        assert!(matches!(count.get(Wait::NoWait).await, Err(Error::Closed)));
    }
}
