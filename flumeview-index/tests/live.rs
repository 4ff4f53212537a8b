//! A live prefix scan yields what is indexed now, then new matches as they come, and
//! ends when the database closes.

mod common;

use common::{by_author, msg, Msg, TestResult};
use flume_core::{Flume, Wait};
use flumelog_memory::MemoryLog;
use flumeview_index::{key, IndexReader};
use futures::StreamExt;

#[tokio::test]
async fn live_prefix_follows_new_records() -> TestResult {
    let db = Flume::<Msg>::new(MemoryLog::new()).use_view("by_author", by_author())?;
    for i in 0..6 {
        db.append(&msg(i)).await?;
    }
    let idx: IndexReader<Msg> = db.view("by_author")?;
    let mut live = idx.prefix(key::tuple(("@alice.ed25519",))).live(Wait::Log);
    let mut seen = Vec::new();
    for _ in 0..2 {
        seen.push(live.next().await.expect("history")?.seq);
    }
    assert_eq!(seen, vec![0, 3]);
    for i in 6..12 {
        db.append(&msg(i)).await?;
    }
    for _ in 0..2 {
        seen.push(live.next().await.expect("live")?.seq);
    }
    assert_eq!(seen, vec![0, 3, 6, 9]);
    db.close().await?;
    assert!(live.next().await.is_none(), "the stream ends at close");
    Ok(())
}

#[tokio::test]
async fn live_limit_and_reverse() -> TestResult {
    let db = Flume::<Msg>::new(MemoryLog::new()).use_view("by_author", by_author())?;
    let idx: IndexReader<Msg> = db.view("by_author")?;
    let live = idx.all().limit(3).live(Wait::Log);
    for i in 0..5 {
        db.append(&msg(i)).await?;
    }
    let got: Vec<u64> = live
        .map(|h| h.map(|h| h.seq))
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .collect::<Result<_, _>>()?;
    assert_eq!(got.len(), 3);
    let mut reversed = idx.all().reverse().live(Wait::Log);
    assert!(matches!(
        reversed.next().await,
        Some(Err(flume_core::Error::InvalidArgument(_)))
    ));
    db.close().await?;
    Ok(())
}
