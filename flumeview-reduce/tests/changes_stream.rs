//! `changes()`: the state as it changes, consistent, coalesced, ending at close.

mod common;

use std::time::Duration;

use common::TestResult;
use flume_core::{Flume, Wait};
use flumelog_memory::MemoryLog;
use flumeview_reduce::Reduce;
use futures::StreamExt;

#[tokio::test]
async fn follows_the_state_until_close() -> TestResult {
    let db = Flume::<u32>::new(MemoryLog::new());
    let count = db.add_view("count", Reduce::count(1))?;
    let mut changes = count.changes();
    assert_eq!(changes.next().await, Some((None, 0)));

    db.append(&1).await?;
    assert_eq!(changes.next().await, Some((Some(0), 1)));

    // Many appends at once: items may be coalesced, but each is consistent, `since`
    // only moves forward, and the last one is the final state.
    for n in 0..50 {
        db.append(&n).await?;
    }
    let mut previous = Some(0);
    loop {
        let (since, state) = tokio::time::timeout(Duration::from_secs(10), changes.next())
            .await?
            .ok_or("the stream ended early")?;
        assert!(since > previous, "{since:?} after {previous:?}");
        assert_eq!(Some(state), since.map(|s| s + 1));
        previous = since;
        if since == Some(50) {
            break;
        }
    }

    db.close().await?;
    let end = tokio::time::timeout(Duration::from_secs(10), changes.next()).await?;
    assert_eq!(end, None);
    Ok(())
}

#[tokio::test]
async fn a_stream_opened_after_close_yields_the_final_state() -> TestResult {
    let db = Flume::<u32>::new(MemoryLog::new());
    let count = db.add_view("count", Reduce::count(1))?;
    db.append(&1).await?;
    count.get(Wait::Log).await?;
    db.close().await?;
    let all: Vec<_> = count.changes().collect().await;
    assert_eq!(all, vec![(Some(0), 1)]);
    Ok(())
}

#[tokio::test]
async fn many_watchers_see_the_same_end_state() -> TestResult {
    let db = Flume::<u32>::new(MemoryLog::new());
    let sum = db.add_view(
        "sum",
        Reduce::new(1, 0u64, |s: &mut u64, v: &u32| *s += u64::from(*v)),
    )?;
    let watchers: Vec<_> = (0..4)
        .map(|_| {
            let mut changes = sum.changes();
            tokio::spawn(async move {
                let mut last = None;
                while let Some(item) = changes.next().await {
                    last = Some(item);
                }
                last
            })
        })
        .collect();
    for n in 1..=20 {
        db.append(&n).await?;
    }
    assert_eq!(sum.get(Wait::Log).await?, 210);
    // Closing right away: every watcher still ends with the final state.
    db.close().await?;
    for watcher in watchers {
        assert_eq!(watcher.await?, Some((Some(19), 210)));
    }
    Ok(())
}
