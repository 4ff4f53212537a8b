//! Queries running while every view is wiped and rebuilt answer as if nothing
//! happened: they wait for the rebuild to reach their horizon, also in the middle of a
//! walk (an index found lowered under a page read is waited for and read again).

use flume_core::{Flume, Seq, Wait};
use flumelog_memory::MemoryLog;
use flumeview_index::{Index, IndexReader};
use flumeview_query::{eq, prefix};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Post {
    author: u64,
    mention: u64,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queries_during_a_rebuild_give_the_same_answers() {
    let db = Flume::<Post>::new(MemoryLog::new())
        .use_view(
            "author",
            Index::<Post, u64>::keyed(1, |_, p, e| e.put(p.author)),
        )
        .and_then(|db| {
            db.use_view(
                "mention",
                Index::<Post, (u64, u64)>::keyed(1, |seq, p, e| e.put((p.mention, seq))),
            )
        })
        .unwrap();
    let posts: Vec<Post> = (0..5_000u64)
        .map(|i| Post {
            author: i % 3,
            mention: i % 7,
        })
        .collect();
    db.append_batch(&posts).await.unwrap();
    let author: IndexReader<Post, u64> = db.view("author").unwrap();
    let mention: IndexReader<Post, (u64, u64)> = db.view("mention").unwrap();
    let query = (eq(&author, 1u64) & prefix(&mention, (2u64,))).query();
    let want: Vec<Seq> = (0..5_000u64)
        .rev()
        .filter(|i| i % 3 == 1 && i % 7 == 2)
        .collect();

    let rebuild = tokio::spawn({
        let db = db.clone();
        async move {
            for _ in 0..3 {
                db.rebuild().await.unwrap();
            }
        }
    });
    let mut runs = 0;
    while !rebuild.is_finished() || runs < 3 {
        let page = query.clone().limit(50).page(Wait::Log).await.unwrap();
        let seqs: Vec<Seq> = page.items.iter().map(|(s, _)| *s).collect();
        assert_eq!(seqs, want[..50]);
        assert_eq!(page.horizon, Some(4_999));
        assert_eq!(query.count(Wait::Log).await.unwrap(), want.len() as u64);
        runs += 1;
    }
    rebuild.await.unwrap();
    db.close().await.unwrap();
}
