//! A view that fails is rebuilt once and then reported failed; other views are unaffected.
mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use common::{Collect, CollectReader};
use flume_core::{Error, Flume, ViewState, Wait};
use flumelog_memory::MemoryLog;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failing_view_is_rebuilt_once_then_failed_others_keep_running() {
    let bad = Collect::new(1).failing(|seq| seq == 3);
    let bad_counters = bad.counters.clone();
    let db = Flume::<u64>::new(MemoryLog::new())
        .use_view("bad", bad)
        .unwrap()
        .use_view("good", Collect::new(1))
        .unwrap();
    let good: CollectReader = db.view("good").unwrap();
    let bad_reader: CollectReader = db.view("bad").unwrap();
    let pending = tokio::spawn({
        let bad_reader = bad_reader.clone();
        async move { bad_reader.get(Wait::AtLeast(4)).await }
    });
    db.append_batch(&[0, 1, 2, 3, 4]).await.unwrap();

    assert_eq!(good.get(Wait::Log).await.unwrap().len(), 5);
    let err = bad_reader.get(Wait::Log).await.unwrap_err();
    assert!(
        matches!(&err, Error::ViewFailed { name, .. } if name == "bad"),
        "{err}"
    );
    assert!(err.to_string().contains("refusing record 3"), "{err}");
    assert!(matches!(
        pending.await.unwrap(),
        Err(Error::ViewFailed { .. })
    ));
    assert_eq!(
        bad_counters.resets.load(Ordering::SeqCst),
        1,
        "rebuilt exactly once"
    );

    let status = db.status().borrow().clone();
    assert_eq!(status.views["bad"].state, ViewState::Failed);
    assert!(status.views["bad"]
        .error
        .as_deref()
        .unwrap()
        .contains("refusing record 3"));
    assert_eq!(status.views["good"].state, ViewState::Ready);

    // The other view keeps running.
    db.append(&5).await.unwrap();
    assert_eq!(good.get(Wait::Log).await.unwrap().len(), 6);
    db.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transient_failure_heals_with_one_rebuild() {
    let failures = Arc::new(AtomicUsize::new(1));
    let flaky = Collect::new(1).failing({
        let failures = failures.clone();
        move |seq| seq == 2 && failures.fetch_sub(1, Ordering::SeqCst) > 0
    });
    let counters = flaky.counters.clone();
    let db = Flume::<u64>::new(MemoryLog::new())
        .use_view("flaky", flaky)
        .unwrap();
    db.append_batch(&[10, 20, 30]).await.unwrap();
    let reader: CollectReader = db.view("flaky").unwrap();
    assert_eq!(
        reader.get(Wait::Log).await.unwrap(),
        vec![(0, 10), (1, 20), (2, 30)]
    );
    assert_eq!(counters.resets.load(Ordering::SeqCst), 1);
    db.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rebuild_gives_a_failed_view_another_chance() {
    let failures = Arc::new(AtomicUsize::new(2));
    let view = Collect::new(1).failing({
        let failures = failures.clone();
        move |seq| seq == 0 && failures.fetch_sub(1, Ordering::SeqCst) > 0
    });
    let db = Flume::<u64>::new(MemoryLog::new())
        .use_view("v", view)
        .unwrap();
    db.append(&7).await.unwrap();
    let reader: CollectReader = db.view("v").unwrap();
    let failed = reader.get(Wait::Log).await;
    assert!(
        matches!(&failed, Err(Error::ViewFailed { name, .. }) if name == "v"),
        "{failed:?}"
    );
    db.rebuild().await.unwrap();
    assert_eq!(reader.get(Wait::Log).await.unwrap(), vec![(0, 7)]);
    db.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panicking_view_is_failed_not_fatal() {
    struct Panics;
    impl flume_core::View<u64> for Panics {
        type Reader = flume_core::Waiter;
        fn version(&self) -> u32 {
            1
        }
        fn reader(&self, ctx: flume_core::ReaderContext<u64>) -> flume_core::Waiter {
            ctx.waiter
        }
        fn apply(&mut self, _: flume_core::Records<'_, u64>) -> Result<(), flume_core::BoxError> {
            panic!("boom")
        }
        fn reset(&mut self) -> Result<(), flume_core::BoxError> {
            Ok(())
        }
    }
    let db = Flume::<u64>::new(MemoryLog::new())
        .use_view("panics", Panics)
        .unwrap()
        .use_view("good", Collect::new(1))
        .unwrap();
    db.append(&1).await.unwrap();
    let waiter: flume_core::Waiter = db.view("panics").unwrap();
    let err = waiter.wait(Wait::Log).await.unwrap_err();
    assert!(
        matches!(&err, Error::ViewFailed { name, .. } if name == "panics"),
        "{err}"
    );
    assert!(err.to_string().contains("boom"), "{err}");
    let good: CollectReader = db.view("good").unwrap();
    assert_eq!(good.get(Wait::Log).await.unwrap(), vec![(0, 1)]);
    db.close().await.unwrap();
}
