//! Right after open, no read answers from the empty state a view holds before it has
//! loaded its checkpoint: `Wait::NoWait` waits for the load (and nothing more).
mod common;

use std::sync::{Arc, Mutex};

use common::{Collect, CollectReader, Saved};
use flume_core::{Checkpoint, Flume, Log, Wait};
use flumelog_memory::MemoryLog;

/// A memory log holding `0..n` and a store that has already applied all of it, as a
/// database closed cleanly leaves them.
async fn persisted(n: u64) -> (MemoryLog, common::Store) {
    let log = MemoryLog::new();
    for i in 0..n {
        log.append(serde_json::to_vec(&i).unwrap().into())
            .await
            .unwrap();
    }
    let store = Arc::new(Mutex::new(Saved {
        checkpoint: Some(Checkpoint {
            version: 1,
            since: n.checked_sub(1),
        }),
        values: (0..n).map(|i| (i, i)).collect(),
    }));
    (log, store)
}

#[tokio::test(flavor = "current_thread")]
async fn no_wait_right_after_open_answers_from_the_loaded_state() {
    let (log, store) = persisted(5).await;
    let db = Flume::<u64>::new(log);
    let reader: CollectReader = db.add_view("v", Collect::new(1).persisted(&store)).unwrap();
    // Issued before the driver has even seen the view.
    let values = reader.get(Wait::NoWait).await.unwrap();
    assert_eq!(values, (0..5).map(|i| (i, i)).collect::<Vec<_>>());
    assert_eq!(reader.since(), Some(4));
    db.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_no_wait_reads_during_open_all_see_the_loaded_state() {
    for _ in 0..20 {
        let (log, store) = persisted(50).await;
        let db = Flume::<u64>::new(log);
        // Another view first, so that the driver is busy when the readers start.
        db.add_view("first", Collect::new(1)).unwrap();
        let reader: CollectReader = db.add_view("v", Collect::new(1).persisted(&store)).unwrap();
        let readers: Vec<_> = (0..8)
            .map(|_| {
                let reader = reader.clone();
                tokio::spawn(async move { reader.sum(Wait::NoWait).await })
            })
            .collect();
        for r in readers {
            assert_eq!(r.await.unwrap().unwrap(), (0..50).sum::<u64>());
        }
        db.close().await.unwrap();
    }
}

#[tokio::test(flavor = "current_thread")]
async fn a_view_reset_at_load_is_loaded_too() {
    // A checkpoint ahead of the log: the view is reset instead of loaded, and reads
    // answer from the reset state, then from the rebuilt one.
    let (_, store) = persisted(5).await;
    let (log, _) = persisted(3).await;
    let db = Flume::<u64>::new(log);
    let reader: CollectReader = db.add_view("v", Collect::new(1).persisted(&store)).unwrap();
    let early = reader.get(Wait::NoWait).await.unwrap();
    assert!(
        early.iter().all(|&(seq, _)| seq < 3),
        "a read answered from the checkpoint ahead of the log: {early:?}"
    );
    assert_eq!(reader.get(Wait::Log).await.unwrap().len(), 3);
    db.close().await.unwrap();
}

#[tokio::test(flavor = "current_thread")]
async fn reads_of_a_closed_database_fail_rather_than_wait_for_a_load() {
    let (log, store) = persisted(5).await;
    let db = Flume::<u64>::new(log);
    let reader: CollectReader = db.add_view("v", Collect::new(1).persisted(&store)).unwrap();
    db.close().await.unwrap();
    assert!(matches!(
        reader.get(Wait::NoWait).await,
        Err(flume_core::Error::Closed)
    ));
}

#[tokio::test(flavor = "current_thread")]
async fn capture_fixes_the_log_target_when_called() {
    let (log, store) = persisted(5).await;
    let db = Flume::<u64>::new(log);
    let reader: CollectReader = db.add_view("v", Collect::new(1).persisted(&store)).unwrap();
    let waiter = reader.waiter();
    assert_eq!(waiter.capture(Wait::Log), Wait::AtLeast(4));
    assert_eq!(waiter.capture(Wait::NoWait), Wait::NoWait);
    assert_eq!(waiter.capture(Wait::AtLeast(9)), Wait::AtLeast(9));
    db.close().await.unwrap();
    let empty = Flume::<u64>::new(MemoryLog::new());
    let reader: CollectReader = empty.add_view("v", Collect::new(1)).unwrap();
    assert_eq!(reader.waiter().capture(Wait::Log), Wait::NoWait);
    empty.close().await.unwrap();
}
