//! The status watch reports, step by step, what a progress bar needs. Pinned by snapshots.
mod common;

use common::{Collect, CollectReader};
use flume_core::{Flume, Status, Wait};
use flumelog_memory::MemoryLog;

async fn until(db: &Flume<u64>, what: impl Fn(&Status) -> bool) -> Status {
    let mut status = db.status();
    let reached = tokio::time::timeout(std::time::Duration::from_secs(10), status.wait_for(what))
        .await
        .expect("status never reached the expected state")
        .unwrap()
        .clone();
    reached
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_sequence_of_a_scripted_catch_up() {
    let (view, gate) = Collect::new(1).gated();
    let db = Flume::<u64>::builder(MemoryLog::new(), flume_core::Json)
        .batch_size(1)
        .build()
        .use_view("v", view)
        .unwrap()
        .use_view("free", Collect::new(1))
        .unwrap();
    let mut steps = vec![until(&db, |s| s.views.len() == 2 && s.is_ready()).await];
    db.append_batch(&[10, 20, 30]).await.unwrap();
    steps.push(
        until(&db, |s| {
            s.log.since == Some(2) && s.views["free"].since == Some(2)
        })
        .await,
    );
    for k in 0..3u64 {
        gate.send(()).unwrap();
        steps.push(until(&db, |s| s.views["v"].since == Some(k)).await);
    }
    let reader: CollectReader = db.view("v").unwrap();
    insta::assert_json_snapshot!("catch_up_values", reader.get(Wait::Log).await.unwrap());
    db.close().await.unwrap();
    steps.push(db.status().borrow().clone());
    insta::assert_json_snapshot!("catch_up_status", steps);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_sequence_of_a_failure() {
    let db = Flume::<u64>::new(MemoryLog::new())
        .use_view("bad", Collect::new(1).failing(|seq| seq == 1))
        .unwrap();
    db.append_batch(&[1, 2, 3]).await.unwrap();
    let failed = until(&db, |s| {
        s.views.get("bad").is_some_and(|v| v.error.is_some())
    })
    .await;
    db.close().await.unwrap();
    insta::assert_json_snapshot!("failure_status", failed);
}
