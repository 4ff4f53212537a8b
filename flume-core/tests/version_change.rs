//! A view persisted at one version and reopened at another is rebuilt from the log.
mod common;

use std::sync::atomic::Ordering;

use common::{Collect, CollectReader, Store};
use flume_core::{Flume, Wait};
use flumelog_memory::MemoryLog;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sum_at_v1_reopened_as_count_at_v2_counts_everything() {
    let log = MemoryLog::new();
    let store = Store::default();
    {
        // Version 1 sums the values.
        let db = Flume::<u64>::new(log.clone())
            .use_view("agg", Collect::new(1).persisted(&store))
            .unwrap();
        db.append_batch(&[5, 6, 7]).await.unwrap();
        let sum: CollectReader = db.view("agg").unwrap();
        assert_eq!(sum.sum(Wait::Log).await.unwrap(), 18);
        db.close().await.unwrap();
    }
    assert_eq!(
        store
            .lock()
            .unwrap()
            .checkpoint
            .map(|c| (c.version, c.since)),
        Some((1, Some(2))),
        "close checkpoints the view"
    );
    // The log lives on (a memory log is reopened by reusing its handle's data).
    let log = log.reopen();
    // Version 2 counts records, without decoding them.
    let count = Collect::new(2).persisted(&store).raw();
    let counters = count.counters.clone();
    let db = Flume::<u64>::new(log).use_view("agg", count).unwrap();
    let reader: CollectReader = db.view("agg").unwrap();
    assert_eq!(reader.sum(Wait::Log).await.unwrap(), 3);
    assert_eq!(counters.resets.load(Ordering::SeqCst), 1);
    assert_eq!(counters.applied_records.load(Ordering::SeqCst), 3);
    db.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn same_version_resumes_from_since_without_reprocessing() {
    let log = MemoryLog::new();
    let store = Store::default();
    {
        let db = Flume::<u64>::new(log.clone())
            .use_view("agg", Collect::new(1).persisted(&store))
            .unwrap();
        db.append_batch(&[1, 2, 3]).await.unwrap();
        let reader: CollectReader = db.view("agg").unwrap();
        assert_eq!(reader.sum(Wait::Log).await.unwrap(), 6);
        db.close().await.unwrap();
    }
    let log = log.reopen();
    let view = Collect::new(1).persisted(&store);
    let counters = view.counters.clone();
    let db = Flume::<u64>::new(log).use_view("agg", view).unwrap();
    db.append(&4).await.unwrap();
    let reader: CollectReader = db.view("agg").unwrap();
    assert_eq!(reader.sum(Wait::Log).await.unwrap(), 10);
    assert_eq!(counters.resets.load(Ordering::SeqCst), 0);
    assert_eq!(
        counters.applied_records.load(Ordering::SeqCst),
        1,
        "only the new record"
    );
    db.close().await.unwrap();
}
