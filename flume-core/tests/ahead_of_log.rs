//! A view whose persisted since is ahead of the log is reset exactly once, then correct.
mod common;

use std::sync::atomic::Ordering;

use common::{Collect, CollectReader, Saved, Store};
use flume_core::{Checkpoint, Flume, Log, Wait};
use flumelog_memory::MemoryLog;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn view_ahead_of_the_log_is_reset_once() {
    // The log lost its tail in a crash: 3 records remain.
    let log = MemoryLog::new();
    let records = [b"1", b"2", b"3"]
        .map(|r| bytes::Bytes::from_static(r))
        .to_vec();
    log.append_batch(records).await.unwrap();
    // The view claims to have applied 10 records.
    let store = Store::new(std::sync::Mutex::new(Saved {
        checkpoint: Some(Checkpoint {
            version: 1,
            since: Some(9),
        }),
        values: (0..10).map(|s| (s, 100)).collect(),
    }));
    let view = Collect::new(1).persisted(&store);
    let counters = view.counters.clone();
    let db = Flume::<u64>::new(log).use_view("v", view).unwrap();
    let reader: CollectReader = db.view("v").unwrap();
    assert_eq!(
        reader.get(Wait::Log).await.unwrap(),
        vec![(0, 1), (1, 2), (2, 3)]
    );
    db.append(&4).await.unwrap();
    assert_eq!(reader.sum(Wait::Log).await.unwrap(), 10);
    assert_eq!(
        counters.resets.load(Ordering::SeqCst),
        1,
        "reset exactly once"
    );
    db.close().await.unwrap();
}
