//! A live stream opened before N appends yields exactly those N, in order, with no
//! duplicate or gap at the history/live seam.
use flume_core::{Flume, StreamOptions};
use flumelog_memory::MemoryLog;
use futures::StreamExt;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_stream_sees_every_append_once_in_order() {
    let db = Flume::<u64>::new(MemoryLog::new());
    // Some history first, so that the stream crosses the seam while appends race it.
    let history: Vec<u64> = (0..500).collect();
    db.append_batch(&history).await.unwrap();
    let stream = db.stream(StreamOptions::new().gte(500).live(true));
    const N: u64 = 3000;
    let writer = tokio::spawn({
        let db = db.clone();
        async move {
            for i in 0..N {
                db.append(&(500 + i)).await.unwrap();
                if i % 100 == 0 {
                    tokio::task::yield_now().await;
                }
            }
        }
    });
    let got: Vec<(u64, u64)> = tokio::time::timeout(
        std::time::Duration::from_secs(20),
        stream.take(N as usize).map(|r| r.unwrap()).collect(),
    )
    .await
    .expect("live stream stalled");
    writer.await.unwrap();
    let expected: Vec<(u64, u64)> = (500..500 + N).map(|s| (s, s)).collect();
    assert_eq!(got, expected);

    // And one that starts with the whole history, then follows.
    let mut all = db.stream(StreamOptions::new().live(true));
    for s in 0..500 + N {
        assert_eq!(all.next().await.unwrap().unwrap(), (s, s));
    }
    db.append(&9).await.unwrap();
    assert_eq!(all.next().await.unwrap().unwrap(), (500 + N, 9));
    db.close().await.unwrap();
}
