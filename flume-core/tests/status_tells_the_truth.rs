//! `status()` never lags what readers see, lists every view from the moment it is added,
//! and `Flume::ready()` resolves once every view has caught up.
mod common;

use common::{Collect, CollectReader};
use flume_core::{Error, Flume, ViewState, Wait};
use flumelog_memory::MemoryLog;
use flumeview_reduce::{Reduce, ReduceReader};

#[tokio::test]
async fn a_view_is_in_the_status_as_loading_from_the_moment_it_is_added() {
    let log = MemoryLog::new();
    let db = Flume::<u64>::new(log.clone());
    db.append_batch(&[1, 2, 3]).await.unwrap();
    // On this single-threaded runtime the driver has not run yet: the view is listed,
    // loading, and the database is not ready.
    let db = db.use_view("count", Reduce::count(1)).unwrap();
    let status = db.status().borrow().clone();
    assert_eq!(status.views["count"].state, ViewState::Loading);
    assert_eq!(status.views["count"].since, None);
    assert!(!status.is_ready());
    // A view added later, at any time, too.
    let _: ReduceReader<u64> = db.add_view("later", Reduce::count(1)).unwrap();
    assert_eq!(
        db.status().borrow().views["later"].state,
        ViewState::Loading
    );
    db.ready().await.unwrap();
    assert!(db.status().borrow().is_ready());
    db.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_shows_whatever_a_read_has_seen() {
    let db = Flume::<u64>::builder(MemoryLog::new(), flume_core::Json)
        .batch_size(1)
        .build()
        .use_view("count", Reduce::count(1))
        .unwrap();
    let count: ReduceReader<u64> = db.view("count").unwrap();
    let status = db.status();
    for i in 0..2000u64 {
        let seq = db.append(&i).await.unwrap();
        assert_eq!(count.get(Wait::Log).await.unwrap(), i + 1);
        let view = status.borrow().views["count"].clone();
        assert!(
            view.since >= Some(seq),
            "a read saw record {seq}, the status shows the view at {:?} ({:?})",
            view.since,
            view.state
        );
    }
    db.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_view_shows_failed_before_its_readers_hear_of_it() {
    for _ in 0..20 {
        let db = Flume::<u64>::new(MemoryLog::new())
            .use_view("bad", Collect::new(1).failing(|seq| seq == 2))
            .unwrap();
        let bad: CollectReader = db.view("bad").unwrap();
        db.append_batch(&[0, 1, 2]).await.unwrap();
        let err = bad.get(Wait::Log).await.unwrap_err();
        assert!(matches!(err, Error::ViewFailed { .. }), "{err}");
        let view = db.status().borrow().views["bad"].clone();
        assert_eq!(view.state, ViewState::Failed);
        assert!(view.error.is_some());
        // `ready` reports the failure too.
        assert!(matches!(db.ready().await, Err(Error::ViewFailed { name, .. }) if name == "bad"));
        db.close().await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ready_waits_for_every_view_to_catch_up() {
    let log = MemoryLog::new();
    let (slow, gate) = Collect::new(1).gated();
    let db = Flume::<u64>::builder(log, flume_core::Json)
        .batch_size(10)
        .build()
        .use_view("slow", slow)
        .unwrap()
        .use_view("count", Reduce::count(1))
        .unwrap();
    let values: Vec<u64> = (0..100).collect();
    db.append_batch(&values).await.unwrap();
    let ready = tokio::spawn({
        let db = db.clone();
        async move { db.ready().await }
    });
    // The slow view has applied nothing: ready() waits.
    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    assert!(!ready.is_finished());
    for _ in 0..10 {
        gate.send(()).unwrap();
    }
    ready.await.unwrap().unwrap();
    let status = db.status().borrow().clone();
    assert!(status.is_ready(), "{status:?}");
    assert_eq!(status.views["slow"].since, Some(99));
    // Records appended after the call are not waited for.
    db.append(&100).await.unwrap();
    let ready = tokio::spawn({
        let db = db.clone();
        async move { db.ready().await }
    });
    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    assert!(!ready.is_finished());
    gate.send(()).unwrap();
    ready.await.unwrap().unwrap();
    db.close().await.unwrap();
    assert!(matches!(db.ready().await, Err(Error::Closed)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ready_on_an_empty_log_waits_for_loading() {
    let db = Flume::<u64>::new(MemoryLog::new())
        .use_view("count", Reduce::count(1))
        .unwrap();
    db.ready().await.unwrap();
    assert_ne!(
        db.status().borrow().views["count"].state,
        ViewState::Loading
    );
    db.close().await.unwrap();
}
