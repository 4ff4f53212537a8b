//! Reads that never have to wait still yield to the runtime: a loop of them, with no
//! explicit `yield_now`, does not keep the driver (or a writer task) from running on a
//! single-threaded runtime.
mod common;

use std::time::{Duration, Instant};

use common::{Collect, CollectReader};
use flume_core::{Flume, Wait};
use flumelog_memory::MemoryLog;

const RECORDS: u64 = 200;
/// Only turns a starved runtime (an endless loop) into a failure; a passing run takes
/// milliseconds.
const STARVED: Duration = Duration::from_secs(30);

/// Spawns a writer appending `RECORDS` values one at a time, then spins on `read` until
/// it reports every record, and returns how many reads that took.
async fn spin_until_caught_up<F, Fut>(db: &Flume<u64>, mut read: F) -> u64
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = u64>,
{
    // The first read waits for the view to load; from then on reads can answer at once.
    read().await;
    let writer = tokio::spawn({
        let db = db.clone();
        async move {
            for i in 0..RECORDS {
                db.append(&i).await.unwrap();
                // A writer that lets others run: the readers below must do the same.
                tokio::task::yield_now().await;
            }
        }
    });
    let started = Instant::now();
    let mut reads = 0u64;
    while read().await < RECORDS {
        reads += 1;
        assert!(
            started.elapsed() < STARVED,
            "after {reads} reads the view still has not caught up: the reads starve the runtime"
        );
    }
    writer.await.unwrap();
    reads
}

#[tokio::test(flavor = "current_thread")]
async fn a_loop_of_no_wait_reads_lets_the_driver_run() {
    let db = Flume::<u64>::new(MemoryLog::new());
    let reader: CollectReader = db.add_view("v", Collect::new(1)).unwrap();
    let reads = spin_until_caught_up(&db, || async {
        reader.get(Wait::NoWait).await.unwrap().len() as u64
    })
    .await;
    assert!(
        reads > 0,
        "the test must read while the writer is still writing"
    );
    db.close().await.unwrap();
}

#[tokio::test(flavor = "current_thread")]
async fn a_loop_of_log_reads_lets_the_writer_run() {
    // `Wait::Log` reads answer at once whenever the view has caught up, which it has
    // after every append here: only the cooperative budget lets the writer go on.
    let db = Flume::<u64>::new(MemoryLog::new());
    let reader: CollectReader = db.add_view("v", Collect::new(1)).unwrap();
    spin_until_caught_up(&db, || async {
        reader.get(Wait::Log).await.unwrap().len() as u64
    })
    .await;
    db.close().await.unwrap();
}

#[tokio::test(flavor = "current_thread")]
async fn a_loop_of_log_gets_lets_the_writer_run() {
    let db = Flume::<u64>::new(MemoryLog::new());
    db.append(&0).await.unwrap();
    let log = db.clone();
    spin_until_caught_up(&db, || {
        let log = log.clone();
        async move {
            log.get(0).await.unwrap();
            log.since().map_or(0, |s| s + 1)
        }
    })
    .await;
    db.close().await.unwrap();
}
