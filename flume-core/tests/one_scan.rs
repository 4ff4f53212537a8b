//! One scan of the log feeds every view that is behind, and a record is decoded at most
//! once however many views consume it (and not at all when no view needs its value).
mod common;

use std::sync::atomic::Ordering;

use common::{Collect, CollectReader, CountingJson, CountingLog, Saved, Store};
use flume_core::{Checkpoint, Flume, Log, Wait};
use flumelog_memory::MemoryLog;

const N: u64 = 10_000;

async fn filled() -> CountingLog<MemoryLog> {
    let log = CountingLog::new(MemoryLog::new());
    let records = (0..N).map(|v| bytes::Bytes::from(v.to_string())).collect();
    log.append_batch(records).await.unwrap();
    log
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn views_behind_share_one_scan_and_one_decode() {
    let log = filled().await;
    let decodes = CountingJson::default();
    // One view resumes half-way; three start from scratch; one needs no values.
    let store = Store::new(std::sync::Mutex::new(Saved {
        checkpoint: Some(Checkpoint {
            version: 1,
            since: Some(N / 2 - 1),
        }),
        values: (0..N / 2).map(|s| (s, s)).collect(),
    }));
    let streams_before = log.streams.load(Ordering::SeqCst);
    let streamed_before = log.streamed.load(Ordering::SeqCst);
    // Hold the first view's load until every view is registered: views that load
    // together join the scan together, as an application registering views at start-up
    // would (and without racing the driver).
    let (release, gate) = std::sync::mpsc::channel::<()>();
    let db = Flume::<u64>::builder(log.clone(), decodes.clone())
        .build()
        .use_view("gate", HoldLoad(std::sync::Mutex::new(gate)))
        .unwrap()
        .use_view("half", Collect::new(1).persisted(&store))
        .unwrap()
        .use_view("a", Collect::new(1))
        .unwrap()
        .use_view("b", Collect::new(1))
        .unwrap()
        .use_view("c", Collect::new(1))
        .unwrap()
        .use_view("count", Collect::new(1).raw())
        .unwrap();
    release.send(()).unwrap();
    for name in ["half", "a", "b", "c"] {
        let reader: CollectReader = db.view(name).unwrap();
        let values = reader.get(Wait::Log).await.unwrap();
        assert_eq!(values, (0..N).map(|s| (s, s)).collect::<Vec<_>>(), "{name}");
    }
    let count: CollectReader = db.view("count").unwrap();
    assert_eq!(count.sum(Wait::Log).await.unwrap(), N);

    assert_eq!(
        log.streams.load(Ordering::SeqCst) - streams_before,
        1,
        "one scan"
    );
    assert_eq!(log.streamed.load(Ordering::SeqCst) - streamed_before, N);
    assert_eq!(
        decodes.0.load(Ordering::SeqCst) as u64,
        N,
        "each record decoded once"
    );
    db.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_count_view_decodes_nothing() {
    let log = filled().await;
    let decodes = CountingJson::default();
    let db = Flume::<u64>::builder(log, decodes.clone())
        .build()
        .use_view("count", Collect::new(1).raw())
        .unwrap();
    let count: CollectReader = db.view("count").unwrap();
    assert_eq!(count.sum(Wait::Log).await.unwrap(), N);
    assert_eq!(decodes.0.load(Ordering::SeqCst), 0);
    db.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_view_added_later_catches_up_from_its_own_since() {
    let log = filled().await;
    let db = Flume::<u64>::new(log.clone())
        .use_view("first", Collect::new(1))
        .unwrap();
    let first: CollectReader = db.view("first").unwrap();
    assert_eq!(first.get(Wait::Log).await.unwrap().len() as u64, N);
    db.append(&N).await.unwrap();
    let late = db.add_view("late", Collect::new(1)).unwrap();
    let values = late.get(Wait::Log).await.unwrap();
    assert_eq!(values, (0..=N).map(|s| (s, s)).collect::<Vec<_>>());
    assert_eq!(first.get(Wait::Log).await.unwrap().len() as u64, N + 1);
    db.close().await.unwrap();
}

/// A view whose `load` waits for a signal: it holds the scan while a test registers
/// more views. It needs no values.
struct HoldLoad(std::sync::Mutex<std::sync::mpsc::Receiver<()>>);

impl flume_core::View<u64> for HoldLoad {
    type Reader = ();
    fn version(&self) -> u32 {
        1
    }
    fn reader(&self, _: flume_core::ReaderContext<u64>) {}
    fn load(&mut self) -> Result<Option<Checkpoint>, flume_core::BoxError> {
        self.0.lock().unwrap().recv()?;
        Ok(None)
    }
    fn apply(&mut self, _: flume_core::Records<'_, u64>) -> Result<(), flume_core::BoxError> {
        Ok(())
    }
    fn reset(&mut self) -> Result<(), flume_core::BoxError> {
        Ok(())
    }
}
