//! Live queries: new matching records arrive, others do not, history is skipped (or
//! resumed from a cursor), and the stream ends when the database closes.

use flume_core::{Error, Flume, Seq, Wait};
use flumelog_memory::MemoryLog;
use flumeview_index::{Index, IndexReader};
use flumeview_query::{and, eq, not};
use futures::{StreamExt, TryStreamExt};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Post {
    author: String,
    tag: String,
}

fn post(author: &str, tag: &str) -> Post {
    Post {
        author: author.into(),
        tag: tag.into(),
    }
}

struct Db {
    db: Flume<Post>,
    author: IndexReader<Post, String>,
    tag: IndexReader<Post, String>,
}

fn open() -> Db {
    let db = Flume::<Post>::new(MemoryLog::new())
        .use_view(
            "author",
            Index::<Post, String>::keyed(1, |_, p, e| e.put(p.author.as_str())),
        )
        .and_then(|db| {
            db.use_view(
                "tag",
                Index::<Post, String>::keyed(1, |_, p, e| e.put(p.tag.as_str())),
            )
        })
        .unwrap();
    Db {
        author: db.view("author").unwrap(),
        tag: db.view("tag").unwrap(),
        db,
    }
}

#[tokio::test]
async fn new_matching_records_arrive_and_others_do_not() {
    let d = open();
    d.db.append(&post("@alice", "news")).await.unwrap(); // history: not yielded
    let query = (eq(&d.author, "@alice") & !eq(&d.tag, "spam"))
        .query()
        .oldest_first();
    let feed = query.live(Wait::Log);
    let writer = {
        let db = d.db.clone();
        tokio::spawn(async move {
            let mut seqs = Vec::new();
            for (author, tag) in [
                ("@bob", "news"),
                ("@alice", "spam"),
                ("@alice", "news"),
                ("@carol", "news"),
                ("@alice", "cats"),
            ] {
                seqs.push(db.append(&post(author, tag)).await.unwrap());
                tokio::task::yield_now().await;
            }
            seqs
        })
    };
    let got: Vec<(Seq, Post)> = feed.take(2).try_collect().await.unwrap();
    let seqs = writer.await.unwrap();
    assert_eq!(
        got,
        vec![
            (seqs[2], post("@alice", "news")),
            (seqs[4], post("@alice", "cats"))
        ]
    );
    d.db.close().await.unwrap();
}

#[tokio::test]
async fn a_live_query_ends_when_the_database_closes() {
    let d = open();
    let mut feed = eq(&d.author, "@alice")
        .query()
        .oldest_first()
        .live(Wait::Log);
    d.db.append(&post("@alice", "x")).await.unwrap();
    let (seq, _) = feed.next().await.unwrap().unwrap();
    assert_eq!(seq, 0);
    d.db.close().await.unwrap();
    assert!(feed.next().await.is_none(), "ends, without an error");
}

#[tokio::test]
async fn a_cursor_resumes_a_subscription_with_its_history() {
    let d = open();
    for tag in ["a", "b", "c"] {
        d.db.append(&post("@alice", tag)).await.unwrap();
    }
    let query = eq(&d.author, "@alice")
        .query()
        .oldest_first()
        .after(0)
        .limit(3);
    let feed = query.live(Wait::Log);
    d.db.append(&post("@bob", "d")).await.unwrap();
    d.db.append(&post("@alice", "e")).await.unwrap();
    let tags: Vec<String> = feed.map_ok(|(_, p)| p.tag).try_collect().await.unwrap();
    assert_eq!(tags, ["b", "c", "e"], "ends at its limit");
    d.db.close().await.unwrap();
}

#[tokio::test]
async fn a_live_query_is_oldest_first() {
    let d = open();
    let mut feed = eq(&d.author, "@alice").query().live(Wait::Log);
    assert!(matches!(
        feed.next().await,
        Some(Err(Error::InvalidArgument(_)))
    ));
    d.db.close().await.unwrap();
}

#[tokio::test]
async fn a_live_not_sees_every_new_record_it_does_not_exclude() {
    let d = open();
    d.db.append(&post("@alice", "old")).await.unwrap();
    let feed = not(eq(&d.tag, "spam"))
        .query()
        .oldest_first()
        .live(Wait::Log);
    for tag in ["spam", "one", "spam", "two"] {
        d.db.append(&post("@bob", tag)).await.unwrap();
    }
    let tags: Vec<String> = feed
        .take(2)
        .map_ok(|(_, p)| p.tag)
        .try_collect()
        .await
        .unwrap();
    assert_eq!(tags, ["one", "two"]);
    d.db.close().await.unwrap();
}

#[tokio::test]
async fn a_query_without_lookups_is_rejected() {
    let d = open();
    let r = and::<Post>([]).query().page(Wait::Log).await;
    assert!(matches!(r, Err(Error::InvalidArgument(_))), "{r:?}");
    d.db.close().await.unwrap();
}
