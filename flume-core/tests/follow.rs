//! `Flume::follow`: a live log stream that says, once, when it has yielded every record
//! the log held when the stream was made.
use flume_core::{Error, Flume, Live, StreamOptions};
use flumelog_memory::MemoryLog;
use futures::StreamExt;

type Item = Live<(u64, u64)>;

async fn take(
    stream: &mut futures::stream::BoxStream<'static, flume_core::Result<Item>>,
    n: usize,
) -> Vec<Item> {
    let mut out = Vec::new();
    for _ in 0..n {
        let item = tokio::time::timeout(std::time::Duration::from_secs(10), stream.next())
            .await
            .expect("the stream stalled")
            .expect("the stream ended early")
            .unwrap();
        out.push(item);
    }
    out
}

fn items(seqs: std::ops::Range<u64>) -> Vec<Item> {
    seqs.map(|s| Live::Item((s, s * 10))).collect()
}

async fn db_with(n: u64) -> Flume<u64> {
    let db = Flume::<u64>::new(MemoryLog::new());
    let values: Vec<u64> = (0..n).map(|s| s * 10).collect();
    db.append_batch(&values).await.unwrap();
    db
}

#[tokio::test(flavor = "current_thread")]
async fn synced_comes_after_the_history_as_of_creation() {
    let db = db_with(5).await;
    let mut feed = db.follow(StreamOptions::new());
    // Appended after the stream was made, before its first poll: new records, after
    // the marker.
    for s in 5..8 {
        db.append(&(s * 10)).await.unwrap();
    }
    let mut expected = items(0..5);
    expected.push(Live::Synced);
    expected.extend(items(5..8));
    assert_eq!(take(&mut feed, 9).await, expected);
    db.append(&80).await.unwrap();
    assert_eq!(take(&mut feed, 1).await, items(8..9));
    db.close().await.unwrap();
    let end: Vec<_> = feed.collect().await;
    assert!(
        matches!(end.as_slice(), [] | [Err(Error::Closed)]),
        "{end:?}"
    );
}

#[tokio::test(flavor = "current_thread")]
async fn an_empty_history_is_synced_at_once() {
    let db = db_with(0).await;
    let mut feed = db.follow(StreamOptions::new());
    assert_eq!(take(&mut feed, 1).await, vec![Live::Synced]);
    db.append(&0).await.unwrap();
    assert_eq!(take(&mut feed, 1).await, items(0..1));

    // Bounds above the tail leave no history either.
    let mut above = db.follow(StreamOptions::new().gte(3));
    assert_eq!(take(&mut above, 1).await, vec![Live::Synced]);
    db.close().await.unwrap();
}

#[tokio::test(flavor = "current_thread")]
async fn bounds_and_limits() {
    let db = db_with(5).await;
    // An upper bound inside the history: the marker after it, then the end.
    let upto: Vec<_> = db
        .follow(StreamOptions::new().lte(2))
        .map(|i| i.unwrap())
        .collect()
        .await;
    let mut expected = items(0..3);
    expected.push(Live::Synced);
    assert_eq!(upto, expected);

    // A lower bound: only the part of the history it selects.
    let mut from = db.follow(StreamOptions::new().gt(2));
    let mut expected = items(3..5);
    expected.push(Live::Synced);
    assert_eq!(take(&mut from, 3).await, expected);

    // A limit reached inside the history ends the stream without a marker.
    let limited: Vec<_> = db
        .follow(StreamOptions::new().limit(2))
        .map(|i| i.unwrap())
        .collect()
        .await;
    assert_eq!(limited, items(0..2));

    // `follow` is live whatever the options say, and cannot be reversed.
    let mut reversed = db.follow(StreamOptions::new().reverse(true));
    assert!(matches!(
        reversed.next().await,
        Some(Err(Error::InvalidArgument(_)))
    ));
    db.close().await.unwrap();
    let mut closed = db.follow(StreamOptions::new());
    assert!(matches!(closed.next().await, Some(Err(Error::Closed))));
}

#[tokio::test(flavor = "current_thread")]
async fn a_revert_below_the_target_still_syncs() {
    let db = db_with(5).await;
    let mut feed = db.follow(StreamOptions::new().gte(1));
    // Records 2 to 4 are gone before the first poll: the stream catches up with the
    // log as it is now.
    db.revert(Some(1)).await.unwrap();
    assert_eq!(
        take(&mut feed, 2).await,
        vec![Live::Item((1, 10)), Live::Synced]
    );
    db.append(&777).await.unwrap();
    assert_eq!(take(&mut feed, 1).await, vec![Live::Item((2, 777))]);
    db.close().await.unwrap();
}
