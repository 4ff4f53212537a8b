//! Reverting the log rebuilds exactly the views that had applied records beyond the new tail.
mod common;

use std::sync::atomic::Ordering;

use common::{Collect, CollectReader};
use flume_core::{Flume, Wait};
use flumelog_memory::MemoryLog;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revert_resets_views_beyond_the_new_tail() {
    let view = Collect::new(1);
    let counters = view.counters.clone();
    let db = Flume::<u64>::new(MemoryLog::new())
        .use_view("v", view)
        .unwrap();
    db.append_batch(&[1, 2, 3, 4]).await.unwrap();
    let reader: CollectReader = db.view("v").unwrap();
    assert_eq!(reader.sum(Wait::Log).await.unwrap(), 10);
    db.revert(Some(1)).await.unwrap();
    assert_eq!(db.since(), Some(1));
    assert_eq!(reader.get(Wait::Log).await.unwrap(), vec![(0, 1), (1, 2)]);
    assert_eq!(db.append(&50).await.unwrap(), 2);
    assert_eq!(
        reader.get(Wait::Log).await.unwrap(),
        vec![(0, 1), (1, 2), (2, 50)]
    );
    assert_eq!(counters.resets.load(Ordering::SeqCst), 1);

    // Reverting above every view's since resets nothing.
    db.revert(Some(2)).await.unwrap();
    assert_eq!(counters.resets.load(Ordering::SeqCst), 1);
    db.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_log_truncated_behind_the_databases_back_still_rebuilds_its_views() {
    use flume_core::Log;
    let log = MemoryLog::new();
    let db = Flume::<u64>::new(log.clone())
        .use_view("v", Collect::new(1))
        .unwrap();
    db.append_batch(&[1, 2, 3, 4]).await.unwrap();
    let reader: CollectReader = db.view("v").unwrap();
    assert_eq!(reader.sum(Wait::Log).await.unwrap(), 10);
    log.revert(Some(0)).await.unwrap();
    db.append(&7).await.unwrap();
    let values = tokio::time::timeout(std::time::Duration::from_secs(10), async {
        loop {
            let values = reader.get(Wait::Log).await.unwrap();
            if values == vec![(0, 1), (1, 7)] {
                return values;
            }
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
    })
    .await
    .expect("the view never matched the truncated log");
    assert_eq!(values, vec![(0, 1), (1, 7)]);
    db.close().await.unwrap();
}
