//! After `close()` every call and every pending read returns `Closed`.
mod common;

use common::{Collect, CollectReader};
use flume_core::{Error, Flume, StreamOptions, Wait};
use flumelog_memory::MemoryLog;
use futures::StreamExt;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_call_and_pending_read_returns_closed() {
    let db = Flume::<u64>::new(MemoryLog::new())
        .use_view("v", Collect::new(1))
        .unwrap();
    db.append(&1).await.unwrap();
    let reader: CollectReader = db.view("v").unwrap();
    // Pending readers waiting for seqs that will never come.
    let pending: Vec<_> = (5..15)
        .map(|seq| {
            let reader = reader.clone();
            tokio::spawn(async move { reader.get(Wait::AtLeast(seq)).await })
        })
        .collect();
    let mut live = db.stream(StreamOptions::new().live(true));
    assert_eq!(live.next().await.unwrap().unwrap(), (0, 1));
    tokio::task::yield_now().await;

    db.close().await.unwrap();

    for p in pending {
        let result = tokio::time::timeout(std::time::Duration::from_secs(5), p)
            .await
            .expect("a pending read hung after close")
            .unwrap();
        assert!(matches!(result, Err(Error::Closed)), "{result:?}");
    }
    let end = tokio::time::timeout(std::time::Duration::from_secs(5), live.next())
        .await
        .expect("a live stream hung after close");
    assert!(matches!(end, Some(Err(Error::Closed)) | None), "{end:?}");

    assert!(matches!(db.append(&2).await, Err(Error::Closed)));
    assert!(matches!(db.append_batch(&[2, 3]).await, Err(Error::Closed)));
    assert!(matches!(db.get(0).await, Err(Error::Closed)));
    assert!(matches!(db.sync().await, Err(Error::Closed)));
    assert!(matches!(db.rebuild().await, Err(Error::Closed)));
    assert!(matches!(db.revert(None).await, Err(Error::Closed)));
    assert!(matches!(db.close().await, Err(Error::Closed)));
    assert!(matches!(
        db.add_view("w", Collect::new(1)),
        Err(Error::Closed)
    ));
    let mut s = db.stream(StreamOptions::new());
    assert!(matches!(s.next().await, Some(Err(Error::Closed))));
    assert!(matches!(reader.get(Wait::NoWait).await, Err(Error::Closed)));
    assert!(matches!(reader.get(Wait::Log).await, Err(Error::Closed)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_every_handle_closes_pending_reads() {
    let db = Flume::<u64>::new(MemoryLog::new())
        .use_view("v", Collect::new(1))
        .unwrap();
    let reader: CollectReader = db.view("v").unwrap();
    let pending = tokio::spawn(async move { reader.get(Wait::AtLeast(3)).await });
    tokio::task::yield_now().await;
    drop(db);
    let result = tokio::time::timeout(std::time::Duration::from_secs(5), pending)
        .await
        .expect("a pending read hung after the database was dropped")
        .unwrap();
    assert!(matches!(result, Err(Error::Closed)));
}
