//! A read right after `append` reflects the record, even when the view is slow.
mod common;

use std::time::Duration;

use common::{Collect, CollectReader};
use flume_core::{Flume, Wait};
use flumelog_memory::MemoryLog;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_after_append_sees_the_record_with_a_sleeping_view() {
    let slow = Collect::new(1).sleeping(Duration::from_millis(30));
    let db = Flume::<u64>::new(MemoryLog::new())
        .use_view("slow", slow)
        .unwrap();
    let reader: CollectReader = db.view("slow").unwrap();
    for i in 0..5u64 {
        let seq = db.append(&(i * 10)).await.unwrap();
        let values = reader.get(Wait::Log).await.unwrap();
        assert_eq!(values.last(), Some(&(seq, i * 10)), "read after append {i}");
        assert_eq!(values.len() as u64, seq + 1);
    }
    db.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wait_at_least_and_no_wait() {
    let (view, gate) = Collect::new(1).gated();
    let db = Flume::<u64>::builder(MemoryLog::new(), flume_core::Json)
        .batch_size(1)
        .build()
        .use_view("v", view)
        .unwrap();
    let reader: CollectReader = db.view("v").unwrap();
    for i in 0..3u64 {
        db.append(&i).await.unwrap();
    }
    // Nothing applied yet: NoWait answers at once with the empty state.
    assert!(reader.get(Wait::NoWait).await.unwrap().is_empty());
    let pending = tokio::spawn({
        let reader = reader.clone();
        async move { reader.get(Wait::AtLeast(1)).await }
    });
    gate.send(()).unwrap();
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(!pending.is_finished(), "AtLeast(1) must wait for seq 1");
    gate.send(()).unwrap();
    let values = pending.await.unwrap().unwrap();
    assert!(values.len() >= 2);
    gate.send(()).unwrap();
    assert_eq!(reader.get(Wait::Log).await.unwrap().len(), 3);
    db.close().await.unwrap();
}
