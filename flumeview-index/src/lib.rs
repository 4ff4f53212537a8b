//! # flumeview-index
//!
//! A [flume-rs](flume_core) view that indexes records by keys you choose — a message id,
//! `(author, sequence)`, a tag — and answers which records a key, a key range or a key
//! prefix points at. It is a log-structured merge tree: a bounded in-memory table,
//! immutable sorted runs on disk read through memory maps, and background compaction.
//! The engine is the [`flume_lsm`] crate, which `flumeview-kv` shares.
//!
//! ```
//! use flume_core::{Flume, Wait};
//! use flumelog_memory::MemoryLog;
//! use flumeview_index::{key, Index, IndexReader};
//! use serde::{Deserialize, Serialize};
//!
//! #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
//! struct Msg { key: String, author: String, sequence: u64, text: String }
//!
//! # #[tokio::main] async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let db = Flume::<Msg>::new(MemoryLog::new())
//!     .use_view("by_key", Index::new(1, |m: &Msg, e| e.put(key::string(&m.key))))?
//!     .use_view("by_author", Index::new(1, |m: &Msg, e| {
//!         e.put(key::tuple((&m.author, m.sequence)))
//!     }))?;
//! for (i, text) in ["hello", "flume", "again"].iter().enumerate() {
//!     let author = if i == 1 { "@bob" } else { "@alice" };
//!     let msg = Msg { key: format!("%{i}"), author: author.into(), sequence: i as u64, text: text.to_string() };
//!     db.append(&msg).await?;
//! }
//!
//! let by_key: IndexReader<Msg> = db.view("by_key")?;
//! let (seq, msg) = by_key.get("%1", Wait::Log).await?.expect("indexed");
//! assert_eq!((seq, msg.text.as_str()), (1, "flume"));
//!
//! // Alice's messages, newest first.
//! let by_author: IndexReader<Msg> = db.view("by_author")?;
//! let texts: Vec<String> = by_author
//!     .prefix(key::tuple(("@alice",)))
//!     .reverse()
//!     .values(Wait::Log)
//!     .await?
//!     .into_iter()
//!     .map(|(_, m)| m.text)
//!     .collect();
//! assert_eq!(texts, ["again", "hello"]);
//! db.close().await?;
//! # Ok(()) }
//! ```
//!
//! ## Building an index
//!
//! [`Index::new`] gives a map function each decoded value and an [`Emit`] sink;
//! [`Index::raw`] gives it the raw [`Record`](flume_core::Record) (no decoding unless it
//! asks). The map calls [`Emit::put`] to make a key point at the record,
//! [`Emit::delete`] to remove every earlier put of a key, and [`Emit::remove`] to remove
//! one put (the key's put by one record), for as many keys as it likes. **The map sees
//! the record's seq** too, as [`Emit::seq`]: a key may carry it (`(author, seq)` is
//! unique per record), and a later record may name it to remove that entry. Keys of
//! these indexes are bytes; the [`key`] module encodes strings, integers and tuples so
//! that byte order is value order, and tuples so that prefix scans on their first parts
//! work.
//!
//! ## Typed keys
//!
//! [`Index::keyed`] declares the key type once, `Index<T, K>`: its map sees each
//! record's seq and value and emits keys of type `K` ([`KeyEmit`]), and every read of
//! its [`IndexReader<T, K>`] takes a `K` or a borrowed form of it ([`AsKey`]: `&str` for
//! a `String`, `("alice", 7)` for a `(String, u64)`), prefix scans take a typed prefix
//! ([`KeyPrefix`]: `("alice",)` of a `(String, u64)`), and [`Hit`]s return `K`. Key
//! types are strings, integers, byte vectors, 2- and 3-tuples of them, and types of
//! your own that implement [`Key`]. A key of the wrong shape does not compile.
//!
//! A feed of posts by author, where a later "delete" record removes one post, with
//! counts per author:
//!
//! ```
//! use flume_core::{Flume, Seq, Wait};
//! use flumelog_memory::MemoryLog;
//! use flumeview_index::{Index, IndexReader};
//! use serde::{Deserialize, Serialize};
//!
//! #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
//! enum Rec {
//!     Post { author: String, text: String },
//!     Delete { author: String, post: Seq },
//! }
//!
//! # #[tokio::main] async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let by_author: Index<Rec, (String, u64)> = Index::keyed(1, |seq, rec, e| match rec {
//!     Rec::Post { author, .. } => e.put((author, seq)),
//!     // Only the deleted post's entry goes; the author's other posts stay.
//!     Rec::Delete { author, post } => e.remove((author, *post), *post),
//! });
//! let db = Flume::<Rec>::new(MemoryLog::new());
//! let posts: IndexReader<Rec, (String, u64)> = db.add_view("by_author", by_author)?;
//! for (author, text) in [("alice", "hi"), ("bob", "yo"), ("alice", "oops"), ("alice", "bye")] {
//!     db.append(&Rec::Post { author: author.into(), text: text.into() }).await?;
//! }
//! db.append(&Rec::Delete { author: "alice".into(), post: 2 }).await?;
//!
//! // Alice's latest post: typed prefix, typed hit.
//! let latest = posts.prefix(("alice",)).reverse().limit(1).values(Wait::Log).await?;
//! let (hit, post) = &latest[0];
//! assert_eq!(hit.key, ("alice".to_string(), 3));
//! assert_eq!(*post, Rec::Post { author: "alice".into(), text: "bye".into() });
//!
//! // Counts, without collecting the hits.
//! assert_eq!(posts.prefix(("alice",)).count(Wait::Log).await?, 2);
//! assert_eq!(posts.all().count(Wait::Log).await?, 3);
//! assert_eq!(posts.count(("alice", 2), Wait::Log).await?, 0);
//! db.close().await?;
//! # Ok(()) }
//! ```
//!
//! A key or prefix of the wrong shape is a compile error:
//!
//! ```compile_fail
//! # async fn demo(posts: flumeview_index::IndexReader<String, (String, u64)>) -> flume_core::Result<()> {
//! use flume_core::Wait;
//! posts.get((7u64, "alice"), Wait::Log).await?; // the parts in the wrong order
//! # Ok(()) }
//! ```
//!
//! ```compile_fail
//! # async fn demo(posts: flumeview_index::IndexReader<String, (String, u64)>) -> flume_core::Result<()> {
//! use flume_core::Wait;
//! posts.prefix("alice").hits(Wait::Log).await?; // a string is no prefix of a tuple: ("alice",)
//! # Ok(()) }
//! ```
//!
//! ```compile_fail
//! # async fn demo(names: flumeview_index::IndexReader<String, String>) -> flume_core::Result<()> {
//! use flume_core::Wait;
//! names.get(7u64, Wait::Log).await?; // a number is not a string key
//! # Ok(()) }
//! ```
//!
//! [`IndexReader::bytes`] reads a typed index by bytes (the keys' encodings), for code
//! that handles indexes of any key type alike.
//!
//! ## Reading
//!
//! [`IndexReader::get`] returns the newest record a key points at,
//! [`IndexReader::seqs`] every one of them, [`IndexReader::count`] how many, and
//! [`IndexReader::range`], [`IndexReader::prefix`] and [`IndexReader::all`] start a
//! [`Scan`]: forward or [`reverse`](Scan::reverse), with a [`limit`](Scan::limit),
//! returning [`Hit`]s, the records, or a [`count`](Scan::count); or
//! [`live`](Scan::live), following new records as they are indexed
//! ([`follow`](Scan::follow) also says when the history is out,
//! [`live_values`](Scan::live_values) yields the records). Every read waits for the
//! index to catch up as its [`Wait`](flume_core::Wait) says.
//!
//! ### Pagination
//!
//! [`Scan::after`] resumes a scan strictly after a hit, forward or reverse: the cursor
//! is the last hit of the previous page, a plain value that stays valid across
//! restarts. Starting from it costs about O(log n) block reads, not the pages before.
//! [`Scan::page`] returns a [`Page`] with the next page's cursor.
//!
//! ```
//! use flume_core::{Flume, Wait};
//! use flumelog_memory::MemoryLog;
//! use flumeview_index::{Index, IndexReader};
//!
//! # #[tokio::main] async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let db = Flume::<String>::new(MemoryLog::new());
//! let words: IndexReader<String, String> =
//!     db.add_view("words", Index::<String, String>::keyed(1, |_, w, e| e.put(w)))?;
//! for w in ["b", "a", "c", "a", "d"] {
//!     db.append(&w.to_string()).await?;
//! }
//! // Newest first, two at a time.
//! let mut pages = Vec::new();
//! let mut page = words.all().reverse().limit(2).hits(Wait::Log).await?;
//! while let Some(last) = page.last().cloned() {
//!     pages.push(page.iter().map(|h| (h.key.clone(), h.seq)).collect::<Vec<_>>());
//!     page = words.all().reverse().limit(2).after(&last).hits(Wait::Log).await?;
//! }
//! let s = String::from;
//! assert_eq!(pages, [
//!     vec![(s("d"), 4), (s("c"), 2)],
//!     vec![(s("b"), 0), (s("a"), 3)],
//!     vec![(s("a"), 1)],
//! ]);
//! db.close().await?;
//! # Ok(()) }
//! ```
//!
//! ### Live-only subscriptions
//!
//! A live scan first yields what the index holds, then new hits. With
//! [`Scan::new_only`] it skips the history: only the records appended after the call.
//!
//! ```
//! use flume_core::{Flume, Wait};
//! use flumelog_memory::MemoryLog;
//! use flumeview_index::{Index, IndexReader};
//! use futures::StreamExt;
//!
//! # #[tokio::main] async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let db = Flume::<String>::new(MemoryLog::new());
//! let words: IndexReader<String, String> =
//!     db.add_view("words", Index::<String, String>::keyed(1, |_, w, e| e.put(w)))?;
//! db.append(&"news: old".to_string()).await?; // before the call: not in the feed
//! let mut feed = words.prefix("news").new_only().live_values(Wait::Log);
//! db.append(&"news: flume".to_string()).await?;
//! let (hit, value) = feed.next().await.expect("a new record")?;
//! assert_eq!((hit.seq, value.as_str()), (1, "news: flume"));
//! db.close().await?;
//! assert!(feed.next().await.is_none()); // ends when the database closes
//! # Ok(()) }
//! ```
//!
//! ## Persistence
//!
//! [`Index::persist`] keeps the index in a directory: immutable run files and a
//! manifest naming the live runs with the view version and the `since` they reflect.
//! A checkpoint writes the in-memory table as a run and replaces the manifest atomically
//! (temporary file, fsync, rename, directory fsync); a crash at any point leaves an
//! earlier consistent index that resumes from its `since`, and files written after it
//! are removed at the next open. Compaction merges runs in a background thread without
//! blocking reads or indexing; old runs are deleted only once a durable manifest no
//! longer names them. A checkpoint that finds at least [`IndexOptions::merge_fan_in`] runs
//! flushed since the previous one (after a build or a long catch-up, during which the
//! driver does not checkpoint) first merges them into one, so that an index built and
//! closed at once is left as one run rather than a pile of them. A damaged manifest or
//! run makes the index rebuild from the log: at open, or when a read finds a damaged run
//! block (the read waits for the rebuild to reach its target and answers from it; the
//! view's status shows `Rebuilding` meanwhile).
//! The byte layout is documented in `docs/format.md`, section "flumeview-index files".
//!
//! Memory is bounded by [`IndexOptions::memtable_bytes`] (plus the small sparse index of each
//! run); run data is read through memory maps, so the OS page cache holds what is hot.
#![warn(
    missing_docs,
    missing_debug_implementations,
    rust_2018_idioms,
    unreachable_pub
)]

mod index;
mod reader;

#[cfg(test)]
mod tests;

pub use crate::index::{Index, KeyEmit};
pub use crate::reader::{Hit, IndexReader, Page, Scan};
pub use flume_lsm::key;
pub use flume_lsm::Emit;
pub use flume_lsm::LsmOptions as IndexOptions;
pub use flume_lsm::{AsKey, AsPart, Key, KeyPart, KeyPrefix};
