//! Reads and live scans after a reopen over a durable log start from the persisted
//! index, and `follow` says when a live scan has caught up with the log.

mod common;

use std::path::Path;
use std::time::Duration;

use common::{by_author, msg, Msg, TestResult};
use flume_core::{Flume, Live, Wait};
use flumelog_file::{FileLog, FileLogOptions};
use flumeview_index::{Hit, IndexReader};
use futures::stream::BoxStream;
use futures::StreamExt;

async fn open(dir: &Path) -> flume_core::Result<(Flume<Msg>, IndexReader<Msg>)> {
    let log = FileLog::open(dir.join("log"), FileLogOptions::default()).await?;
    let db = Flume::<Msg>::new(log);
    let idx = db.add_view("by_author", by_author().persist(dir.join("by_author")))?;
    Ok((db, idx))
}

/// A database holding messages `0..n`, indexed and closed.
async fn persisted(n: u64) -> Result<tempfile::TempDir, Box<dyn std::error::Error>> {
    let dir = tempfile::tempdir()?;
    let (db, idx) = open(dir.path()).await?;
    for i in 0..n {
        db.append(&msg(i)).await?;
    }
    assert_eq!(idx.all().hits(Wait::Log).await?.len() as u64, n);
    db.close().await?;
    Ok(dir)
}

async fn next<T>(stream: &mut BoxStream<'static, flume_core::Result<T>>) -> T {
    tokio::time::timeout(Duration::from_secs(10), stream.next())
        .await
        .expect("the stream stalled")
        .expect("the stream ended")
        .expect("the stream failed")
}

#[tokio::test(flavor = "current_thread")]
async fn no_wait_reads_after_reopen_see_the_persisted_index() -> TestResult {
    let dir = persisted(30).await?;
    let (db, idx) = open(dir.path()).await?;
    // Issued before the driver has loaded the view.
    assert_eq!(idx.all().hits(Wait::NoWait).await?.len(), 30);
    let newest = msg(29);
    assert_eq!(
        idx.get_seq(
            flumeview_index::key::tuple((&newest.author, newest.seq)),
            Wait::NoWait
        )
        .await?,
        Some(29)
    );
    db.close().await?;
    Ok(())
}

#[tokio::test(flavor = "current_thread")]
async fn a_live_scan_after_reopen_starts_with_the_persisted_hits_in_key_order() -> TestResult {
    let dir = persisted(30).await?;
    let expected = {
        let (db, idx) = open(dir.path()).await?;
        let hits = idx.all().hits(Wait::Log).await?;
        db.close().await?;
        hits
    };
    let (db, idx) = open(dir.path()).await?;
    let mut live = idx.all().live(Wait::NoWait);
    let mut history = Vec::new();
    for _ in 0..30 {
        history.push(next(&mut live).await);
    }
    // The history comes in key order (by author), not in the order records were indexed.
    assert_eq!(history, expected);
    db.append(&msg(30)).await?;
    assert_eq!(next(&mut live).await.seq, 30);
    db.close().await?;
    Ok(())
}

#[tokio::test(flavor = "current_thread")]
async fn follow_marks_synced_after_the_history() -> TestResult {
    let dir = persisted(6).await?;
    let (db, idx) = open(dir.path()).await?;
    let mut feed = idx.all().follow(Wait::NoWait);
    let mut history = Vec::new();
    while let Live::Item(hit) = next(&mut feed).await {
        history.push(hit.seq);
    }
    history.sort_unstable();
    assert_eq!(history, (0..6).collect::<Vec<_>>());
    db.append(&msg(6)).await?;
    assert_eq!(next(&mut feed).await.item().map(|h| h.seq), Some(6));
    db.close().await?;
    assert!(feed.next().await.is_none(), "the stream ends at close");

    // On an empty log, the marker comes at once.
    let empty = tempfile::tempdir()?;
    let (db, idx) = open(empty.path()).await?;
    let mut feed = idx.all().follow(Wait::Log);
    assert_eq!(next(&mut feed).await, Live::Synced);
    db.close().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn follow_on_a_lagging_index_syncs_only_once_every_old_hit_is_out() -> TestResult {
    // An index far behind the log, followed without waiting: hits trickle in as it
    // catches up, and the marker comes only once every record the log held when
    // `follow` was called has been reported.
    let dir = tempfile::tempdir()?;
    let log = FileLog::open(dir.path(), FileLogOptions::default()).await?;
    let db = Flume::<Msg>::builder(log, flume_core::Json)
        .batch_size(8)
        .build();
    let old: Vec<Msg> = (0..300).map(msg).collect();
    db.append_batch(&old).await?;
    let slow = flumeview_index::Index::new(1, |m: &Msg, e| {
        std::thread::sleep(Duration::from_micros(100));
        e.put(flumeview_index::key::tuple((&m.author, m.seq)));
    });
    let idx: IndexReader<Msg> = db.add_view("slow", slow)?;
    let mut feed = idx.all().follow(Wait::NoWait);
    let new: Vec<Msg> = (300..400).map(msg).collect();
    db.append_batch(&new).await?;
    let mut before: Vec<Hit> = Vec::new();
    loop {
        match tokio::time::timeout(Duration::from_secs(30), feed.next()).await? {
            Some(Ok(Live::Item(hit))) => before.push(hit),
            Some(Ok(Live::Synced)) => break,
            Some(Err(e)) => return Err(e.into()),
            None => return Err("the stream ended before it synced".into()),
        }
    }
    let mut seqs: Vec<u64> = before.iter().map(|h| h.seq).collect();
    seqs.sort_unstable();
    seqs.dedup();
    assert!(
        seqs.len() >= 300 && seqs[..300] == (0..300).collect::<Vec<_>>()[..],
        "synced before every old record's hit was out: {} hits",
        seqs.len()
    );
    db.close().await?;
    Ok(())
}
