//! Secondary indexes over SSB-style messages: by message key, and by (author, sequence).
//!
//! Appends a feed of messages, queries both indexes, closes, reopens (the persisted
//! indexes resume instantly), then reopens with a new version of one index, which
//! rebuilds it from the log while a progress bar follows `db.status()`.
//!
//! Run with `cargo run -p examples --example index`.

use std::time::Instant;

use flume_core::{BoxError, Flume, Wait};
use flumelog_memory::MemoryLog;
use flumeview_index::{key, Index, IndexReader};
use indicatif::{ProgressBar, ProgressStyle};
use serde::{Deserialize, Serialize};

/// A message of a Secure Scuttlebutt-like feed, stored in the log as JSON.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Msg {
    /// `%<base64 hash>.sha256`
    key: String,
    /// `@<base64 public key>.ed25519`
    author: String,
    /// The author's own counter: 1, 2, 3, …
    sequence: u64,
    #[serde(rename = "type")]
    kind: String,
    text: String,
}

const MESSAGES: u64 = 50_000;
const AUTHORS: u64 = 25;

/// A small deterministic random number generator (xorshift64*).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next() as u8).collect()
    }
}

fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

fn feed() -> Vec<Msg> {
    let mut rng = Rng(0x5eed);
    let authors: Vec<String> = (0..AUTHORS)
        .map(|_| format!("@{}.ed25519", base64(&rng.bytes(32))))
        .collect();
    let mut sequences = vec![0u64; AUTHORS as usize];
    let kinds = ["post", "vote", "contact", "about"];
    (0..MESSAGES)
        .map(|i| {
            let a = (rng.next() % AUTHORS) as usize;
            sequences[a] += 1;
            Msg {
                key: format!("%{}.sha256", base64(&rng.bytes(32))),
                author: authors[a].clone(),
                sequence: sequences[a],
                kind: kinds[(rng.next() % 4) as usize].to_string(),
                text: format!("message {i}"),
            }
        })
        .collect()
}

/// The indexes: `by_author`'s version is a parameter, to show a rebuild.
fn open(
    log: MemoryLog,
    dir: &std::path::Path,
    author_version: u32,
) -> Result<Flume<Msg>, BoxError> {
    let by_key = Index::new(1, |m: &Msg, e| e.put(key::string(&m.key))).persist(dir.join("by_key"));
    let by_author = Index::new(author_version, |m: &Msg, e| {
        e.put(key::tuple((&m.author, m.sequence)));
    })
    .persist(dir.join("by_author"));
    Ok(Flume::<Msg>::new(log)
        .use_view("by_key", by_key)?
        .use_view("by_author", by_author)?)
}

/// Waits for `db.ready()` (every view loaded and caught up), with a progress bar for
/// `view` that follows `db.status()` meanwhile.
async fn show_progress(db: &Flume<Msg>, view: &str) -> Result<(), BoxError> {
    let bar = ProgressBar::new(1000);
    bar.set_style(
        ProgressStyle::with_template("{msg:>12} [{bar:40}] {percent:>3}% {elapsed}")?
            .progress_chars("=> "),
    );
    bar.set_message(view.to_string());
    let ready = db.ready();
    tokio::pin!(ready);
    let mut status = db.status();
    loop {
        let progress = status
            .borrow_and_update()
            .views
            .get(view)
            .map_or(0.0, |v| v.progress);
        bar.set_position((progress * 1000.0) as u64);
        tokio::select! {
            done = &mut ready => {
                // A failed view ends the wait with `Error::ViewFailed`.
                done?;
                break;
            }
            _ = status.changed() => {}
        }
    }
    bar.set_position(1000);
    bar.finish();
    Ok(())
}

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    let dir = std::env::temp_dir().join(format!("flume-index-example-{}", std::process::id()));
    let messages = feed();
    let log = MemoryLog::new();

    // 1. Index a feed as it is written.
    let db = open(log.clone(), &dir, 1)?;
    let started = Instant::now();
    for chunk in messages.chunks(1000) {
        db.append_batch(chunk).await?;
    }
    let by_key: IndexReader<Msg> = db.view("by_key")?;
    let by_author: IndexReader<Msg> = db.view("by_author")?;
    by_author.get_seq("", Wait::Log).await?;
    by_key.get_seq("", Wait::Log).await?;
    println!(
        "appended and indexed {MESSAGES} messages in {:.2?}",
        started.elapsed()
    );

    // 2. Queries.
    let wanted = &messages[12_345];
    let (seq, found) = by_key
        .get(&wanted.key, Wait::Log)
        .await?
        .ok_or("message not indexed")?;
    println!(
        "\nby_key.get({}…) -> #{seq}: {} #{} {:?}",
        &wanted.key[..12],
        &found.author[..12],
        found.sequence,
        found.text
    );

    let author = &wanted.author;
    let feed_of = key::tuple((author,));
    let count = by_author.prefix(&feed_of).hits(Wait::Log).await?.len();
    println!(
        "\n{}… has {count} messages; the latest three:",
        &author[..12]
    );
    for (hit, m) in by_author
        .prefix(&feed_of)
        .reverse()
        .limit(3)
        .values(Wait::Log)
        .await?
    {
        println!(
            "  #{:<6} sequence {:<5} {:<8} {:?}",
            hit.seq, m.sequence, m.kind, m.text
        );
    }
    println!("sequences 10..13 of the same author:");
    let page = by_author
        .range(key::tuple((author, 10u64))..key::tuple((author, 13u64)))
        .values(Wait::Log)
        .await?;
    for (hit, m) in page {
        let mut parts = key::Parts::new(&hit.key);
        let (_, sequence) = (parts.string(), parts.u64());
        println!(
            "  key ({}…, {}) -> #{} {:?}",
            &author[..12],
            sequence.unwrap_or_default(),
            hit.seq,
            m.text
        );
    }
    db.close().await?;

    // 3. Reopen: both indexes resume from their checkpoints.
    let started = Instant::now();
    let db = open(log.reopen(), &dir, 1)?;
    let by_author: IndexReader<Msg> = db.view("by_author")?;
    let latest = by_author
        .prefix(&feed_of)
        .reverse()
        .limit(1)
        .hits(Wait::Log)
        .await?;
    println!(
        "\nreopened in {:.2?}: indexes resumed at #{}, {}…'s latest is #{}",
        started.elapsed(),
        by_author.since().unwrap_or_default(),
        &author[..12],
        latest.first().map_or(0, |h| h.seq)
    );
    db.close().await?;

    // 4. A new version of by_author: rebuilt from the log, with progress.
    println!("\nby_author version 2: rebuilding from the log");
    let started = Instant::now();
    let db = open(log.reopen(), &dir, 2)?;
    show_progress(&db, "by_author").await?;
    let by_author: IndexReader<Msg> = db.view("by_author")?;
    let again = by_author.prefix(&feed_of).hits(Wait::Log).await?.len();
    println!(
        "rebuilt in {:.2?}; {}… has {again} messages",
        started.elapsed(),
        &author[..12]
    );
    db.close().await?;

    std::fs::remove_dir_all(&dir)?;
    Ok(())
}
