//! A social feed: authors write posts that mention other authors, and delete posts.
//!
//! Two typed indexes answer the feed's questions: `by_author` (author → posts) and
//! `by_mention` (mentioned author → posts). The example:
//!
//! 1. appends a few thousand posts;
//! 2. shows the latest 10 posts by one author, and how many posts each author has;
//! 3. asks a combined query: posts by Alice that mention Bob, newest first, a page at
//!    a time;
//! 4. deletes one of those posts with a later "delete" record, and shows it gone from
//!    every answer;
//! 5. follows Alice live: only her new posts arrive, with their values.
//!
//! Run with `cargo run -p examples --example feed`.

use flume_core::{BoxError, Flume, Seq, Wait};
use flumelog_memory::MemoryLog;
use flumeview_index::{Index, IndexReader};
use flumeview_query::{eq, Query};
use futures::StreamExt;
use serde::{Deserialize, Serialize};

/// A record of the log.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum Msg {
    /// A post.
    Post(Post),
    /// Deletes the post at seq `post`. An index's map sees only the record in hand, so
    /// the delete names the keys its target was indexed under: the app reads the post
    /// before it deletes it ([`Msg::delete`]).
    Delete {
        post: Seq,
        author: String,
        mentions: Vec<String>,
    },
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Post {
    author: String,
    text: String,
    mentions: Vec<String>,
}

impl Msg {
    fn post(author: &str, text: impl Into<String>, mentions: &[&str]) -> Msg {
        Msg::Post(Post {
            author: author.to_string(),
            text: text.into(),
            mentions: mentions.iter().map(|m| m.to_string()).collect(),
        })
    }

    /// The record that deletes `post`, stored at `seq`.
    fn delete(seq: Seq, post: &Post) -> Msg {
        Msg::Delete {
            post: seq,
            author: post.author.clone(),
            mentions: post.mentions.clone(),
        }
    }
}

/// Author → their posts. A delete removes exactly the deleted post's entry.
fn by_author() -> Index<Msg, String> {
    Index::keyed(1, |_seq, msg: &Msg, e| match msg {
        Msg::Post(p) => e.put(p.author.as_str()),
        Msg::Delete { post, author, .. } => e.remove(author.as_str(), *post),
    })
}

/// Mentioned author → the posts that mention them.
fn by_mention() -> Index<Msg, String> {
    Index::keyed(1, |_seq, msg: &Msg, e| match msg {
        Msg::Post(p) => p.mentions.iter().for_each(|m| e.put(m.as_str())),
        Msg::Delete { post, mentions, .. } => {
            mentions.iter().for_each(|m| e.remove(m.as_str(), *post))
        }
    })
}

const AUTHORS: [&str; 5] = ["@alice", "@bob", "@carol", "@dave", "@erin"];
const POSTS: u64 = 5_000;

/// Deterministic posts, each by a random author, mentioning up to two others.
fn history() -> Vec<Msg> {
    let mut x = 0x5eed_u64;
    let mut next = move || {
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    };
    (0..POSTS)
        .map(|i| {
            let author = AUTHORS[(next() % 5) as usize];
            let mut mentions: Vec<&str> = (0..next() % 3)
                .map(|_| AUTHORS[(next() % 5) as usize])
                .filter(|m| *m != author)
                .collect();
            // At most two: a repeat is next to its first.
            mentions.dedup();
            Msg::post(author, format!("post number {i}"), &mentions)
        })
        .collect()
}

fn show(seq: Seq, msg: &Msg) -> String {
    match msg {
        Msg::Post(p) if p.mentions.is_empty() => format!("#{seq:<5} {} {:?}", p.author, p.text),
        Msg::Post(p) => format!(
            "#{seq:<5} {} {:?} (mentions {})",
            p.author,
            p.text,
            p.mentions.join(", ")
        ),
        Msg::Delete { post, .. } => format!("#{seq:<5} delete #{post}"),
    }
}

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    let db = Flume::<Msg>::new(MemoryLog::new())
        .use_view("by_author", by_author())?
        .use_view("by_mention", by_mention())?;
    let by_author: IndexReader<Msg, String> = db.view("by_author")?;
    let by_mention: IndexReader<Msg, String> = db.view("by_mention")?;

    // 1. History.
    let posts = history();
    db.append_batch(&posts).await?;
    println!(
        "appended {} posts by {} authors",
        posts.len(),
        AUTHORS.len()
    );

    // 2. The latest 10 posts by Alice; posts per author, counted in the index.
    println!("\nthe latest 10 posts by @alice:");
    let latest = by_author
        .range("@alice"..="@alice")
        .reverse()
        .limit(10)
        .values(Wait::Log)
        .await?;
    for (hit, msg) in &latest {
        println!("  {}", show(hit.seq, msg));
    }
    println!("\nposts per author:");
    for author in AUTHORS {
        println!(
            "  {author:<7} {}",
            by_author.count(author, Wait::Log).await?
        );
    }

    // 3. A combined query: posts by Alice that mention Bob, newest first, 5 a page.
    let alice_mentions_bob = Query::new(eq(&by_author, "@alice") & eq(&by_mention, "@bob"))
        .newest_first()
        .limit(5);
    println!("\nposts by @alice mentioning @bob, the plan:");
    for line in alice_mentions_bob.explain(Wait::Log).await?.lines() {
        println!("  | {line}");
    }
    let first = alice_mentions_bob.page(Wait::Log).await?;
    println!("the first page:");
    for (seq, msg) in &first.items {
        println!("  {}", show(*seq, msg));
    }
    let next = first.next.ok_or("a second page")?;
    let second = alice_mentions_bob
        .clone()
        .after(next)
        .page(Wait::Log)
        .await?;
    println!("the next page (after #{next}):");
    for (seq, msg) in &second.items {
        println!("  {}", show(*seq, msg));
    }
    // Counted without reading the records.
    let total = Query::new(eq(&by_author, "@alice") & eq(&by_mention, "@bob"))
        .count(Wait::Log)
        .await?;
    println!("{total} in all");

    // 4. Alice deletes the newest of them: a later record removes its index entries.
    let (doomed, doomed_msg) = first.items.first().cloned().ok_or("a post to delete")?;
    let Msg::Post(doomed_post) = &doomed_msg else {
        return Err("the query returns posts".into());
    };
    let posts_before = by_author.count("@alice", Wait::Log).await?;
    let mentions_before = by_mention.count("@bob", Wait::Log).await?;
    let at = db.append(&Msg::delete(doomed, doomed_post)).await?;
    println!("\n#{at} deletes #{doomed}; now:");
    let newest = alice_mentions_bob.page(Wait::Log).await?;
    println!(
        "  the combined query's newest: #{}",
        newest.items.first().map_or(0, |(s, _)| *s)
    );
    let latest = by_author
        .range("@alice"..="@alice")
        .reverse()
        .limit(1)
        .hits(Wait::Log)
        .await?;
    println!(
        "  @alice's latest post: #{}",
        latest.first().map_or(0, |h| h.seq)
    );
    println!(
        "  @alice's posts: {posts_before} -> {}; @bob's mentions: {mentions_before} -> {}",
        by_author.count("@alice", Wait::Log).await?,
        by_mention.count("@bob", Wait::Log).await?
    );
    let still_there = by_mention
        .range("@bob"..="@bob")
        .hits(Wait::Log)
        .await?
        .iter()
        .any(|h| h.seq == doomed);
    println!("  #{doomed} among @bob's mentions: {still_there}");

    // 5. Follow Alice: only posts written from now on, each with its value.
    let mut alice_live = by_author
        .range("@alice"..="@alice")
        .new_only()
        .live_values(Wait::Log);
    let mut alice_mentions_bob_live =
        Query::new(eq(&by_author, "@alice") & eq(&by_mention, "@bob"))
            .oldest_first()
            .live(Wait::Log);
    let new_posts = [
        Msg::post("@bob", "hi all", &[]),
        Msg::post("@alice", "fresh news", &["@carol"]),
        Msg::post("@carol", "hello @alice", &["@alice"]),
        Msg::post("@alice", "thanks @bob", &["@bob"]),
    ];
    db.append_batch(&new_posts).await?;
    println!("\nfollowing @alice, after 4 new posts (2 by her):");
    for _ in 0..2 {
        let (hit, msg) = alice_live.next().await.ok_or("the feed ended")??;
        println!("  {}", show(hit.seq, &msg));
    }
    let (seq, msg) = alice_mentions_bob_live
        .next()
        .await
        .ok_or("the feed ended")??;
    println!("following @alice mentioning @bob:\n  {}", show(seq, &msg));

    db.close().await?;
    Ok(())
}
