//! The feed scenario of `examples/examples/feed.rs`, checked against a plain model of
//! the log: authors write posts mentioning other authors, and delete some of them with
//! later records. Two typed indexes (author, mention) and combined queries over them
//! must answer as a filter over the whole log would:
//!
//! - the latest 10 posts by an author, and the number of posts of each author;
//! - posts by X that mention Y (and `or` / `not` variants), both orders, page by page;
//! - a deleted post disappears from every answer, also after a reopen of persisted
//!   indexes;
//! - a live subscription to X yields only posts written after it started.
//!
//! Public API only, as an application would use it.

use std::collections::BTreeSet;
use std::path::Path;

use flume_core::{Flume, Seq, Wait};
use flumelog_file::{FileLog, FileLogOptions};
use flumelog_memory::MemoryLog;
use flumeview_index::{Index, IndexReader};
use flumeview_query::{eq, Query, Term};
use futures::{StreamExt, TryStreamExt};
use serde::{Deserialize, Serialize};

type TestResult = Result<(), Box<dyn std::error::Error + Send + Sync>>;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum Msg {
    Post(Post),
    /// Deletes the post at `post`, naming the keys it was indexed under.
    Delete {
        post: Seq,
        author: String,
        mentions: Vec<String>,
    },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Post {
    author: String,
    text: String,
    mentions: Vec<String>,
}

fn by_author() -> Index<Msg, String> {
    Index::keyed(1, |_seq, msg: &Msg, e| match msg {
        Msg::Post(p) => e.put(p.author.as_str()),
        Msg::Delete { post, author, .. } => e.remove(author.as_str(), *post),
    })
}

fn by_mention() -> Index<Msg, String> {
    Index::keyed(1, |_seq, msg: &Msg, e| match msg {
        Msg::Post(p) => p.mentions.iter().for_each(|m| e.put(m.as_str())),
        Msg::Delete { post, mentions, .. } => {
            mentions.iter().for_each(|m| e.remove(m.as_str(), *post))
        }
    })
}

const AUTHORS: [&str; 6] = ["@alice", "@bob", "@carol", "@dave", "@erin", "@frank"];

/// A deterministic random number generator (xorshift64*).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn author(&mut self) -> &'static str {
        AUTHORS[(self.next() % AUTHORS.len() as u64) as usize]
    }
}

fn post(rng: &mut Rng, i: usize) -> Msg {
    let author = rng.author();
    let mut mentions: Vec<String> = Vec::new();
    for _ in 0..rng.next() % 3 {
        let m = rng.author();
        if m != author && !mentions.iter().any(|x| x == m) {
            mentions.push(m.to_string());
        }
    }
    Msg::Post(Post {
        author: author.to_string(),
        text: format!("post {i}"),
        mentions,
    })
}

/// The log as the application wrote it, and the answers a filter over it gives.
#[derive(Default)]
struct Model {
    log: Vec<Msg>,
}

impl Model {
    /// The posts not deleted, by seq.
    fn live_posts(&self) -> Vec<(Seq, &Post)> {
        let deleted: BTreeSet<Seq> = self
            .log
            .iter()
            .filter_map(|m| match m {
                Msg::Delete { post, .. } => Some(*post),
                Msg::Post(_) => None,
            })
            .collect();
        self.log
            .iter()
            .enumerate()
            .filter_map(|(seq, m)| match m {
                Msg::Post(p) if !deleted.contains(&(seq as Seq)) => Some((seq as Seq, p)),
                _ => None,
            })
            .collect()
    }

    /// The seqs of live posts `keep` selects, oldest first.
    fn select(&self, keep: impl Fn(&Post) -> bool) -> Vec<Seq> {
        self.live_posts()
            .into_iter()
            .filter(|(_, p)| keep(p))
            .map(|(s, _)| s)
            .collect()
    }

    /// A delete record for live post `seq`.
    fn delete_of(&self, seq: Seq) -> Msg {
        match &self.log[seq as usize] {
            Msg::Post(p) => Msg::Delete {
                post: seq,
                author: p.author.clone(),
                mentions: p.mentions.clone(),
            },
            Msg::Delete { .. } => panic!("#{seq} is not a post"),
        }
    }
}

fn mentions(p: &Post, who: &str) -> bool {
    p.mentions.iter().any(|m| m == who)
}

/// What a model answer keeps.
type Keep = Box<dyn Fn(&Post) -> bool>;

struct Feed {
    db: Flume<Msg>,
    by_author: IndexReader<Msg, String>,
    by_mention: IndexReader<Msg, String>,
}

fn open(log: impl flume_core::Log, dir: Option<&Path>) -> Result<Feed, flume_core::Error> {
    let (a, m) = match dir {
        Some(dir) => (
            by_author().persist(dir.join("by_author")),
            by_mention().persist(dir.join("by_mention")),
        ),
        None => (by_author(), by_mention()),
    };
    let db = Flume::<Msg>::new(log)
        .use_view("by_author", a)?
        .use_view("by_mention", m)?;
    Ok(Feed {
        by_author: db.view("by_author")?,
        by_mention: db.view("by_mention")?,
        db,
    })
}

/// Appends `n` posts, writing each to the model too.
async fn write_posts(feed: &Feed, model: &mut Model, rng: &mut Rng, n: usize) -> TestResult {
    let posts: Vec<Msg> = (0..n).map(|i| post(rng, model.log.len() + i)).collect();
    feed.db.append_batch(&posts).await?;
    model.log.extend(posts);
    Ok(())
}

/// Deletes every `every`th live post (from `start`), with one record each.
async fn delete_some(feed: &Feed, model: &mut Model, start: usize, every: usize) -> TestResult {
    let doomed: Vec<Seq> = model
        .live_posts()
        .iter()
        .skip(start)
        .step_by(every)
        .map(|(s, _)| *s)
        .collect();
    let deletes: Vec<Msg> = doomed.iter().map(|&s| model.delete_of(s)).collect();
    feed.db.append_batch(&deletes).await?;
    model.log.extend(deletes);
    Ok(())
}

/// Every answer of the feed against the model: latest 10 and count per author, and
/// combined queries paged both ways.
async fn check_everything(feed: &Feed, model: &Model) -> TestResult {
    for author in AUTHORS {
        let want = model.select(|p| p.author == author);
        let latest: Vec<Seq> = feed
            .by_author
            .range(author..=author)
            .reverse()
            .limit(10)
            .hits(Wait::Log)
            .await?
            .iter()
            .map(|h| h.seq)
            .collect();
        let want_latest: Vec<Seq> = want.iter().rev().take(10).copied().collect();
        assert_eq!(latest, want_latest, "latest 10 by {author}");
        assert_eq!(
            feed.by_author.count(author, Wait::Log).await?,
            want.len(),
            "posts by {author}"
        );
    }
    let (x, y, z) = ("@alice", "@bob", "@carol");
    let cases: Vec<(&str, Term<Msg>, Keep)> = vec![
        (
            "by x mentioning y",
            eq(&feed.by_author, x) & eq(&feed.by_mention, y),
            Box::new(move |p: &Post| p.author == x && mentions(p, y)),
        ),
        (
            "by x mentioning y or z",
            eq(&feed.by_author, x) & (eq(&feed.by_mention, y) | eq(&feed.by_mention, z)),
            Box::new(move |p: &Post| p.author == x && (mentions(p, y) || mentions(p, z))),
        ),
        (
            "by x not mentioning y",
            eq(&feed.by_author, x) & !eq(&feed.by_mention, y),
            Box::new(move |p: &Post| p.author == x && !mentions(p, y)),
        ),
        (
            "by y or mentioning y",
            eq(&feed.by_author, y) | eq(&feed.by_mention, y),
            Box::new(move |p: &Post| p.author == y || mentions(p, y)),
        ),
    ];
    for (name, term, keep) in cases {
        let want = model.select(keep);
        assert!(!want.is_empty(), "{name}: the data has matches");
        for newest_first in [true, false] {
            let query = Query::new(term.clone());
            let query = if newest_first {
                query.newest_first()
            } else {
                query.oldest_first()
            };
            let mut want = want.clone();
            if newest_first {
                want.reverse();
            }
            // All at once, as a stream, with the values.
            let all: Vec<(Seq, Msg)> = query.stream(Wait::Log).try_collect().await?;
            let seqs: Vec<Seq> = all.iter().map(|(s, _)| *s).collect();
            assert_eq!(seqs, want, "{name}, newest first: {newest_first}");
            assert_eq!(
                query.count(Wait::Log).await?,
                want.len() as u64,
                "{name}: count"
            );
            for (seq, msg) in &all {
                assert_eq!(
                    msg, &model.log[*seq as usize],
                    "{name}: the value of #{seq}"
                );
            }
            // Page by page, resuming from each page's cursor.
            let mut paged = Vec::new();
            let mut cursor = None;
            loop {
                let page = query
                    .clone()
                    .limit(7)
                    .after_opt(cursor)
                    .page(Wait::Log)
                    .await?;
                assert!(page.items.len() <= 7);
                paged.extend(page.items.iter().map(|(s, _)| *s));
                match page.next {
                    Some(next) => cursor = Some(next),
                    None => break,
                }
            }
            assert_eq!(paged, want, "{name} paged, newest first: {newest_first}");
        }
    }
    Ok(())
}

#[tokio::test]
async fn latest_counts_and_combined_queries_match_a_filter_over_the_log() -> TestResult {
    let feed = open(MemoryLog::new(), None)?;
    let mut model = Model::default();
    let mut rng = Rng(0x5eed);
    write_posts(&feed, &mut model, &mut rng, 3000).await?;
    check_everything(&feed, &model).await?;
    feed.db.close().await?;
    Ok(())
}

#[tokio::test]
async fn a_deleted_post_disappears_from_every_answer() -> TestResult {
    let feed = open(MemoryLog::new(), None)?;
    let mut model = Model::default();
    let mut rng = Rng(7);
    write_posts(&feed, &mut model, &mut rng, 1500).await?;

    // The newest post by alice mentioning bob: in every answer before its delete.
    let query = Query::new(eq(&feed.by_author, "@alice") & eq(&feed.by_mention, "@bob"));
    let page = query.clone().limit(1).page(Wait::Log).await?;
    let (target, _) = page.items.first().cloned().ok_or("a post to delete")?;
    let count_before = feed.by_author.count("@alice", Wait::Log).await?;
    let delete = model.delete_of(target);
    feed.db.append(&delete).await?;
    model.log.push(delete);

    let page = query.clone().limit(1).page(Wait::Log).await?;
    assert_ne!(page.items.first().map(|(s, _)| *s), Some(target));
    let in_any = |hits: Vec<flumeview_index::Hit<String>>| hits.iter().any(|h| h.seq == target);
    assert!(!in_any(feed.by_author.all().hits(Wait::Log).await?));
    assert!(!in_any(feed.by_mention.all().hits(Wait::Log).await?));
    assert_eq!(
        feed.by_author.count("@alice", Wait::Log).await?,
        count_before - 1
    );
    // Only that post: the other posts of alice and mentions of bob stay.
    check_everything(&feed, &model).await?;

    // Many more deletes, interleaved with new posts.
    delete_some(&feed, &mut model, 3, 5).await?;
    write_posts(&feed, &mut model, &mut rng, 500).await?;
    delete_some(&feed, &mut model, 1, 9).await?;
    check_everything(&feed, &model).await?;
    feed.db.close().await?;
    Ok(())
}

#[tokio::test]
async fn deletes_stay_deleted_across_a_reopen_of_persisted_indexes() -> TestResult {
    let dir = tempfile::tempdir()?;
    let log_dir = dir.path().join("log");
    let mut model = Model::default();
    let mut rng = Rng(99);
    {
        let log = FileLog::open(&log_dir, FileLogOptions::default()).await?;
        let feed = open(log, Some(dir.path()))?;
        write_posts(&feed, &mut model, &mut rng, 1200).await?;
        delete_some(&feed, &mut model, 0, 4).await?;
        check_everything(&feed, &model).await?;
        feed.db.close().await?;
    }
    let log = FileLog::open(&log_dir, FileLogOptions::default()).await?;
    let feed = open(log, Some(dir.path()))?;
    check_everything(&feed, &model).await?;
    // And after the reopen, new posts and deletes on top of the persisted indexes.
    write_posts(&feed, &mut model, &mut rng, 300).await?;
    delete_some(&feed, &mut model, 2, 7).await?;
    check_everything(&feed, &model).await?;
    feed.db.close().await?;
    Ok(())
}

#[tokio::test]
async fn a_live_subscription_sees_only_new_posts() -> TestResult {
    let feed = open(MemoryLog::new(), None)?;
    let mut model = Model::default();
    let mut rng = Rng(3);
    write_posts(&feed, &mut model, &mut rng, 800).await?;
    let history = model.log.len() as Seq;

    // Both kinds of subscription start now, after 800 posts.
    let alice = feed
        .by_author
        .range("@alice"..="@alice")
        .new_only()
        .live_values(Wait::Log);
    let alice_mentions_bob =
        Query::new(eq(&feed.by_author, "@alice") & eq(&feed.by_mention, "@bob"))
            .oldest_first()
            .live(Wait::Log);

    write_posts(&feed, &mut model, &mut rng, 200).await?;
    // A delete of an old post of alice is no new post.
    let old = model.select(|p| p.author == "@alice")[0];
    let delete = model.delete_of(old);
    feed.db.append(&delete).await?;
    model.log.push(delete);
    // What each subscription must yield: the new matching posts, none of the 800.
    let want_alice: Vec<Seq> = model
        .select(|p| p.author == "@alice")
        .into_iter()
        .filter(|&s| s >= history)
        .collect();
    let want_both: Vec<Seq> = model
        .select(|p| p.author == "@alice" && mentions(p, "@bob"))
        .into_iter()
        .filter(|&s| s >= history)
        .collect();
    assert!(!want_alice.is_empty() && !want_both.is_empty());

    let got: Vec<(flumeview_index::Hit<String>, Msg)> =
        alice.take(want_alice.len()).try_collect().await?;
    let seqs: Vec<Seq> = got.iter().map(|(h, _)| h.seq).collect();
    assert_eq!(seqs, want_alice);
    for (hit, msg) in &got {
        assert_eq!(hit.key, "@alice");
        assert_eq!(msg, &model.log[hit.seq as usize]);
    }
    let got: Vec<(Seq, Msg)> = alice_mentions_bob
        .take(want_both.len())
        .try_collect()
        .await?;
    let seqs: Vec<Seq> = got.iter().map(|(s, _)| *s).collect();
    assert_eq!(seqs, want_both);

    // Nothing more is pending: a fresh subscription sees the next post, not history.
    let mut next = feed
        .by_author
        .range("@alice"..="@alice")
        .new_only()
        .live_values(Wait::Log);
    let seq = feed
        .db
        .append(&Msg::Post(Post {
            author: "@alice".into(),
            text: "the newest".into(),
            mentions: vec![],
        }))
        .await?;
    let (hit, _) = next.next().await.ok_or("the feed ended")??;
    assert_eq!(hit.seq, seq);
    feed.db.close().await?;
    Ok(())
}
