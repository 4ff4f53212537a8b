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
