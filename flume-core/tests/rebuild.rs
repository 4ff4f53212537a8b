//! `rebuild()` under concurrent appends ends equal to a fresh build; reads during it wait.
mod common;

use std::sync::atomic::Ordering;
use std::time::Duration;

use common::{Collect, CollectReader};
use flume_core::{Flume, ViewState, Wait};
use flumelog_memory::MemoryLog;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rebuild_under_concurrent_appends_equals_a_fresh_build() {
    let log = MemoryLog::new();
    let view = Collect::new(1).sleeping(Duration::from_millis(2));
    let counters = view.counters.clone();
    let db = Flume::<u64>::builder(log.clone(), flume_core::Json)
        .batch_size(50)
        .build()
        .use_view("v", view)
        .unwrap();
    let reader: CollectReader = db.view("v").unwrap();
    let first: Vec<u64> = (0..2000).collect();
    db.append_batch(&first).await.unwrap();
    reader.get(Wait::Log).await.unwrap();

    let writer = tokio::spawn({
        let db = db.clone();
        async move {
            for i in 2000..2500u64 {
                db.append(&i).await.unwrap();
                if i % 50 == 0 {
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
            }
        }
    });
    let rebuild = tokio::spawn({
        let db = db.clone();
        async move { db.rebuild().await }
    });
    // A read issued while the rebuild runs waits for the rebuild to reach its target.
    let mut status = db.status();
    status
        .wait_for(|s| s.views["v"].state == ViewState::Rebuilding)
        .await
        .unwrap();
    let during = reader.get(Wait::AtLeast(1999)).await.unwrap();
    assert!(
        during.len() >= 2000,
        "read during rebuild saw {} values",
        during.len()
    );
    assert_eq!(
        &during[..2000],
        &first.iter().map(|&v| (v, v)).collect::<Vec<_>>()[..]
    );

    rebuild.await.unwrap().unwrap();
    writer.await.unwrap();
    let rebuilt = reader.get(Wait::Log).await.unwrap();
    assert_eq!(counters.resets.load(Ordering::SeqCst), 1);

    // A fresh database over the same log builds the same state.
    let fresh = Flume::<u64>::new(log.clone())
        .use_view("v", Collect::new(1))
        .unwrap();
    let fresh_reader: CollectReader = fresh.view("v").unwrap();
    assert_eq!(fresh_reader.get(Wait::Log).await.unwrap(), rebuilt);
    assert_eq!(rebuilt.len(), 2500);
    assert_eq!(rebuilt, (0..2500).map(|v| (v, v)).collect::<Vec<_>>());
    db.close().await.unwrap();
}
