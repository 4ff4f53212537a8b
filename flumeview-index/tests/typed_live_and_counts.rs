//! Typed keys in use: a feed of posts keyed `(author, seq)`, where a later "delete"
//! record removes one post's entry. Live-only subscriptions (`new_only`) see only
//! records appended after they start, also over a persisted index reopened; live
//! values; counts; cursor pagination forward and reverse; the query crate's hooks.

use std::time::Duration;

use flume_core::{Flume, Live, Seq, Wait};
use flumelog_memory::MemoryLog;
use flumeview_index::{Hit, Index, IndexOptions, IndexReader};
use futures::StreamExt;
use serde::{Deserialize, Serialize};

type TestResult = Result<(), Box<dyn std::error::Error>>;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
enum Rec {
    Post {
        author: String,
        text: String,
    },
    /// Deletes the post at `post`.
    Delete {
        author: String,
        post: Seq,
    },
}

fn post(author: &str, text: &str) -> Rec {
    Rec::Post {
        author: author.into(),
        text: text.into(),
    }
}

fn by_author() -> Index<Rec, (String, u64)> {
    Index::keyed(1, |seq, rec, e| match rec {
        Rec::Post { author, .. } => e.put((author, seq)),
        Rec::Delete { author, post } => e.remove((author, *post), *post),
    })
}

fn persisted(dir: &std::path::Path) -> Index<Rec, (String, u64)> {
    by_author().persist(dir).options(
        IndexOptions::default()
            .memtable_bytes(256)
            .block_bytes(64)
            .checkpoint_every(4, Duration::from_millis(1)),
    )
}

fn seqs<K>(hits: &[Hit<K>]) -> Vec<Seq> {
    hits.iter().map(|h| h.seq).collect()
}

#[tokio::test]
async fn remove_takes_out_one_entry_and_counts_follow() -> TestResult {
    let db = Flume::<Rec>::new(MemoryLog::new());
    let idx = db.add_view("by_author", by_author())?;
    for i in 0..6 {
        let author = if i % 2 == 0 { "alice" } else { "bob" };
        db.append(&post(author, &format!("post {i}"))).await?;
    }
    // alice: 0, 2, 4; bob: 1, 3, 5. Alice deletes post 2.
    db.append(&Rec::Delete {
        author: "alice".into(),
        post: 2,
    })
    .await?;
    let alice = idx.prefix(("alice",)).hits(Wait::Log).await?;
    assert_eq!(seqs(&alice), [0, 4]);
    assert_eq!(alice[0].key, ("alice".to_string(), 0));
    assert_eq!(idx.prefix(("alice",)).count(Wait::Log).await?, 2);
    assert_eq!(idx.prefix(("bob",)).count(Wait::Log).await?, 3);
    assert_eq!(idx.all().count(Wait::Log).await?, 5);
    assert_eq!(idx.count(("alice", 2), Wait::Log).await?, 0);
    assert_eq!(idx.count(("alice", 4), Wait::Log).await?, 1);
    assert_eq!(idx.get_seq(("alice", 2), Wait::Log).await?, None);
    // Counts honour a limit and a cursor.
    assert_eq!(idx.all().limit(2).count(Wait::Log).await?, 2);
    let first = idx.all().limit(1).hits(Wait::Log).await?;
    assert_eq!(idx.all().after(&first[0]).count(Wait::Log).await?, 4);
    assert_eq!(idx.all().after_seq(3).count(Wait::Log).await?, 2);
    // Values come with typed hits.
    let values = idx
        .prefix(("bob",))
        .reverse()
        .limit(1)
        .values(Wait::Log)
        .await?;
    assert_eq!(values[0].0.seq, 5);
    assert_eq!(values[0].1, post("bob", "post 5"));
    db.close().await?;
    Ok(())
}

#[tokio::test]
async fn cursor_pagination_forward_and_reverse_over_runs() -> TestResult {
    let dir = tempfile::tempdir()?;
    let db = Flume::<Rec>::new(MemoryLog::new());
    let idx = db.add_view("by_author", persisted(dir.path()))?;
    for i in 0..300 {
        let author = ["alice", "bob", "carol"][i % 3];
        db.append(&post(author, "x")).await?;
    }
    // Every tenth post of bob's deleted.
    for s in (1..300).step_by(30) {
        db.append(&Rec::Delete {
            author: "bob".into(),
            post: s,
        })
        .await?;
    }
    let bob: Vec<Seq> = (1..300).step_by(3).filter(|s| (s - 1) % 30 != 0).collect();
    for reverse in [false, true] {
        let mut want = bob.clone();
        if reverse {
            want.reverse();
        }
        let scan = || {
            let s = idx.prefix(("bob",)).limit(7);
            if reverse {
                s.reverse()
            } else {
                s
            }
        };
        let mut got = Vec::new();
        let mut page = scan().hits(Wait::Log).await?;
        while let Some(last) = page.last().cloned() {
            assert!(page.len() <= 7);
            got.extend(seqs(&page));
            page = scan().after(&last).hits(Wait::Log).await?;
        }
        assert_eq!(got, want, "reverse: {reverse}");
        // The same walk with pages.
        let mut got = Vec::new();
        let mut page = scan().page(Wait::Log).await?;
        loop {
            got.extend(seqs(&page.hits));
            let Some(next) = page.next else { break };
            page = scan().after(&next).page(Wait::Log).await?;
        }
        assert_eq!(got, want, "pages, reverse: {reverse}");
        // The one-key hook finds each key's one seq.
        let key = flumeview_index::Key::to_bytes(&("bob".to_string(), 4u64));
        assert_eq!(idx.key_seqs(&key, None, reverse, 10)?, [4]);
        let raw = idx
            .bytes()
            .prefix(flumeview_index::key::tuple(("bob",)))
            .hits(Wait::NoWait)
            .await?;
        let mut got = Vec::new();
        for hit in raw {
            got.extend(idx.key_seqs(&hit.key, None, reverse, 5)?);
        }
        got.sort_unstable();
        assert_eq!(got, bob);
    }
    db.close().await?;
    Ok(())
}

#[tokio::test]
async fn a_key_with_many_seqs_pages_both_ways() -> TestResult {
    let db = Flume::<u64>::new(MemoryLog::new());
    let idx: IndexReader<u64, String> = db.add_view(
        "parity",
        Index::<u64, String>::keyed(1, |_, n, e| {
            e.put(if n % 2 == 0 { "even" } else { "odd" });
        })
        .options(IndexOptions::default().memtable_bytes(512).block_bytes(64)),
    )?;
    for n in 0..500u64 {
        db.append(&n).await?;
    }
    idx.ready(Wait::Log).await?;
    let key = idx.all().limit(1).hits(Wait::NoWait).await?[0].key.clone();
    assert_eq!(key, "even");
    for newest_first in [false, true] {
        let mut want: Vec<Seq> = (0..500).step_by(2).collect();
        if newest_first {
            want.reverse();
        }
        let mut got = Vec::new();
        let mut from = None;
        loop {
            let page = idx.key_seqs(b"even", from, newest_first, 33)?;
            let Some(&last) = page.last() else { break };
            got.extend(page);
            from = Some(last);
        }
        assert_eq!(got, want);
    }
    // From a cursor in the middle, both ways.
    assert_eq!(idx.key_seqs(b"odd", Some(101), false, 3)?, [103, 105, 107]);
    assert_eq!(idx.key_seqs(b"odd", Some(101), true, 3)?, [99, 97, 95]);
    assert_eq!(idx.count("odd", Wait::Log).await?, 250);
    db.close().await?;
    Ok(())
}

#[tokio::test]
async fn new_only_sees_only_records_appended_after_the_call() -> TestResult {
    let db = Flume::<Rec>::new(MemoryLog::new());
    let idx = db.add_view("by_author", by_author())?;
    for i in 0..4 {
        db.append(&post("alice", &format!("old {i}"))).await?;
    }
    let mut live = idx.prefix(("alice",)).new_only().live(Wait::Log);
    let mut follow = idx.prefix(("alice",)).new_only().follow(Wait::Log);
    let mut values = idx.prefix(("alice",)).new_only().live_values(Wait::Log);
    db.append(&post("bob", "not alice")).await?;
    db.append(&post("alice", "new 5")).await?;
    db.append(&post("alice", "new 6")).await?;
    for want in [5, 6] {
        assert_eq!(live.next().await.expect("live")?.seq, want);
    }
    assert!(matches!(follow.next().await, Some(Ok(Live::Synced))));
    for want in [5, 6] {
        match follow.next().await {
            Some(Ok(Live::Item(hit))) => assert_eq!(hit.seq, want),
            other => panic!("expected a hit, got {other:?}"),
        }
    }
    let (hit, value) = values.next().await.expect("value")?;
    assert_eq!((hit.key, hit.seq), (("alice".to_string(), 5), 5));
    assert_eq!(value, post("alice", "new 5"));
    db.close().await?;
    assert!(live.next().await.is_none(), "the stream ends at close");
    Ok(())
}

#[tokio::test]
async fn new_only_over_a_persisted_index_reopened() -> TestResult {
    let dir = tempfile::tempdir()?;
    let log = MemoryLog::new();
    let db = Flume::<Rec>::new(log.clone());
    let _idx = db.add_view("by_author", persisted(dir.path()))?;
    for i in 0..20 {
        db.append(&post("alice", &format!("old {i}"))).await?;
    }
    let next = log.reopen();
    db.close().await?;

    let db = Flume::<Rec>::new(next);
    let idx = db.add_view("by_author", persisted(dir.path()))?;
    let mut live = idx.prefix(("alice",)).new_only().live_values(Wait::Log);
    let mut all = idx.prefix(("alice",)).live(Wait::Log);
    db.append(&post("alice", "new 20")).await?;
    db.append(&post("alice", "new 21")).await?;
    for want in [20, 21] {
        let (hit, value) = live.next().await.expect("live")?;
        assert_eq!(hit.seq, want);
        assert_eq!(value, post("alice", &format!("new {want}")));
    }
    // Without new_only the history comes first.
    assert_eq!(all.next().await.expect("history")?.seq, 0);
    db.close().await?;
    assert!(live.next().await.is_none());
    Ok(())
}

#[tokio::test]
async fn live_values_yield_history_then_new_records() -> TestResult {
    let db = Flume::<Rec>::new(MemoryLog::new());
    let idx = db.add_view("by_author", by_author())?;
    db.append(&post("alice", "a")).await?;
    let mut live = idx.prefix(("alice",)).live_values(Wait::Log);
    db.append(&post("alice", "b")).await?;
    let got: Vec<(Seq, Rec)> = vec![
        live.next().await.expect("1")?,
        live.next().await.expect("2")?,
    ]
    .into_iter()
    .map(|(h, v)| (h.seq, v))
    .collect();
    assert_eq!(got, [(0, post("alice", "a")), (1, post("alice", "b"))]);
    db.close().await?;
    Ok(())
}

#[tokio::test]
async fn hooks_for_queries() -> TestResult {
    let db = Flume::<Rec>::new(MemoryLog::new());
    let idx = db.add_view("by_author", by_author())?;
    for i in 0..5 {
        db.append(&post(["alice", "bob"][i % 2], "x")).await?;
    }
    assert_eq!(idx.ready(Wait::Log).await?, Some(4));
    assert_eq!(idx.since(), Some(4));
    assert_eq!(idx.log().get(1).await?, post("bob", "x"));
    // The same index by bytes.
    let bytes: IndexReader<Rec> = idx.bytes();
    let raw = bytes.all().hits(Wait::NoWait).await?;
    assert_eq!(raw.len(), 5);
    assert_eq!(raw[0].key, flumeview_index::key::tuple(("alice", 0u64)));
    // Only entries of records above a seq.
    let later = bytes
        .prefix(flumeview_index::key::tuple(("alice",)))
        .after_seq(1)
        .hits(Wait::NoWait)
        .await?;
    assert_eq!(seqs(&later), [2, 4]);
    db.close().await?;
    Ok(())
}
