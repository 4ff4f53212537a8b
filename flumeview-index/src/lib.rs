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
//! asks). The map calls [`Emit::put`] to make a key point at the record and
//! [`Emit::delete`] to remove every earlier put of a key, for as many keys as it likes.
//! Keys are bytes; the [`key`] module encodes strings, integers and tuples so that byte
//! order is value order, and tuples so that prefix scans on their first parts work.
//!
//! ## Reading
//!
//! [`IndexReader::get`] returns the newest record a key points at,
//! [`IndexReader::seqs`] every one of them, and [`IndexReader::range`],
//! [`IndexReader::prefix`] and [`IndexReader::all`] start a [`Scan`]: forward or
//! [`reverse`](Scan::reverse), with a [`limit`](Scan::limit), returning [`Hit`]s or the
//! records, or [`live`](Scan::live), following new records as they are indexed
//! ([`follow`](Scan::follow) also says when the history is out). Every read waits for
//! the index to catch up as its [`Wait`](flume_core::Wait) says.
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

pub use crate::index::Index;
pub use crate::reader::{Hit, IndexReader, Scan};
pub use flume_lsm::key;
pub use flume_lsm::Emit;
pub use flume_lsm::LsmOptions as IndexOptions;
