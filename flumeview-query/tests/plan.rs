//! The planner: the sparsest term drives an `and`, denser ones are probed, and
//! `explain` says so; prefixes and ranges are read into sets.

use flume_core::{Flume, Wait};
use flumelog_memory::MemoryLog;
use flumeview_index::{Index, IndexReader};
use flumeview_query::{eq, prefix, range};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Post {
    author: String,
    mention: String,
    ts: u64,
}

async fn db() -> (
    Flume<Post>,
    IndexReader<Post, String>,
    IndexReader<Post, String>,
    IndexReader<Post, (String, u64)>,
) {
    let db = Flume::<Post>::new(MemoryLog::new())
        .use_view(
            "author",
            Index::<Post, String>::keyed(1, |_, p, e| e.put(p.author.as_str())),
        )
        .and_then(|db| {
            db.use_view(
                "mention",
                Index::<Post, String>::keyed(1, |_, p, e| e.put(p.mention.as_str())),
            )
        })
        .and_then(|db| {
            db.use_view(
                "author_ts",
                Index::<Post, (String, u64)>::keyed(1, |_, p, e| e.put((p.author.as_str(), p.ts))),
            )
        })
        .unwrap();
    let posts: Vec<Post> = (0..400u64)
        .map(|i| Post {
            author: if i % 4 == 0 { "@rare" } else { "@common" }.into(),
            mention: if i % 50 == 7 { "@bob" } else { "@nobody" }.into(),
            ts: 1000 + i,
        })
        .collect();
    db.append_batch(&posts).await.unwrap();
    let (a, m, t) = (
        db.view("author").unwrap(),
        db.view("mention").unwrap(),
        db.view("author_ts").unwrap(),
    );
    (db, a, m, t)
}

#[tokio::test]
async fn the_sparsest_term_drives_whatever_the_order_written() {
    let (db, author, mention, _) = db().await;
    let query = (eq(&author, "@common") & eq(&mention, "@bob"))
        .query()
        .limit(3);
    let plan = query.explain(Wait::Log).await.unwrap();
    let lines: Vec<&str> = plan.lines().collect();
    assert!(
        lines[1].starts_with("horizon 399, window 0..=399 (400 records)"),
        "{plan}"
    );
    assert!(lines[2].starts_with("and"), "{plan}");
    assert!(
        lines[3].contains("mention"),
        "the rare mention drives:\n{plan}"
    );
    assert!(lines[4].contains("author"), "the author is probed:\n{plan}");
    let page = query.page(Wait::Log).await.unwrap();
    let seqs: Vec<u64> = page.items.iter().map(|(s, _)| *s).collect();
    assert_eq!(seqs, [357, 307, 257]);
    assert_eq!(page.next, Some(257));
    db.close().await.unwrap();
}

#[tokio::test]
async fn prefixes_and_ranges_are_read_into_sets() {
    let (db, _, mention, author_ts) = db().await;
    let query = (prefix(&author_ts, ("@rare",)) & !eq(&mention, "@nobody"))
        .query()
        .oldest_first();
    let plan = query.explain(Wait::Log).await.unwrap();
    let lines: Vec<&str> = plan.lines().collect();
    assert!(
        lines[3].contains("prefix author_ts") && lines[3].contains("set of 100 seqs"),
        "the set drives, the not is probed:\n{plan}"
    );
    assert!(lines[4].starts_with("  not"), "{plan}");
    let seqs: Vec<u64> = query
        .page(Wait::Log)
        .await
        .unwrap()
        .items
        .iter()
        .map(|(s, _)| *s)
        .collect();
    // i % 4 == 0 and i % 50 == 7 never meet.
    assert!(seqs.is_empty());

    let ranged = range(&author_ts, ("@rare", 1100u64)..("@rare", 1120u64)).query();
    let page = ranged.page(Wait::Log).await.unwrap();
    let ts: Vec<u64> = page.items.iter().map(|(_, p)| p.ts).collect();
    assert_eq!(ts, [1116, 1112, 1108, 1104, 1100]);
    db.close().await.unwrap();
}

#[tokio::test]
async fn a_lone_not_walks_the_window() {
    let (db, author, _, _) = db().await;
    let query = (!eq(&author, "@common")).query().limit(2);
    let plan = query.explain(Wait::Log).await.unwrap();
    assert!(plan.lines().nth(2).unwrap().starts_with("not"), "{plan}");
    let page = query.page(Wait::Log).await.unwrap();
    let seqs: Vec<u64> = page.items.iter().map(|(s, _)| *s).collect();
    assert_eq!(seqs, [396, 392]);
    db.close().await.unwrap();
}
