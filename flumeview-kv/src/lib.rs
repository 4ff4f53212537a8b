//! # flumeview-kv
//!
//! A [flume-rs](flume_core) view that turns a log into a key-value store with versions:
//! each record puts or deletes typed keys, and reads answer a key's current value with
//! its **version** (the seq of the record that wrote it), its history, its value as of
//! any past seq, and scans over live keys.
//!
//! ```
//! use flume_core::{Flume, Wait};
//! use flumelog_memory::MemoryLog;
//! use flumeview_kv::{Kv, KvReader, Op, Versioned};
//! use serde::{Deserialize, Serialize};
//!
//! // The application's own records: the view maps them to key-value operations.
//! #[derive(Debug, Clone, Serialize, Deserialize)]
//! enum Event {
//!     Set { user: String, email: String },
//!     Remove { user: String },
//! }
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let db = Flume::<Event>::new(MemoryLog::new());
//! let emails: KvReader<Event, String, String> = db.add_view(
//!     "emails",
//!     Kv::new(1, |event: &Event, e| match event {
//!         Event::Set { user, email } => e.put(user.clone(), email.clone()),
//!         Event::Remove { user } => e.delete(user.clone()),
//!     }),
//! )?;
//!
//! let first = db.append(&Event::Set { user: "alice".into(), email: "a@old.example".into() }).await?;
//! let second = db.append(&Event::Set { user: "alice".into(), email: "a@new.example".into() }).await?;
//! db.append(&Event::Set { user: "bob".into(), email: "b@example".into() }).await?;
//! let removed = db.append(&Event::Remove { user: "bob".into() }).await?;
//!
//! let alice = "alice".to_string();
//! let current = emails.get(&alice, Wait::Log).await?;
//! assert_eq!(current, Some(Versioned { value: "a@new.example".to_string(), version: second }));
//! assert!(!emails.contains(&"bob".to_string(), Wait::Log).await?);
//!
//! // Every version, newest first, and the value as of an earlier seq.
//! let history = emails.history(&"bob".to_string(), Wait::Log).await?;
//! assert_eq!(history[0], (removed, Op::Delete));
//! let then = emails.get_at(&alice, first, Wait::Log).await?;
//! assert_eq!(then.map(|v| v.value).as_deref(), Some("a@old.example"));
//!
//! // Live keys in key order.
//! let keys: Vec<String> = emails.all().keys(Wait::Log).await?.into_iter().map(|(k, _)| k).collect();
//! assert_eq!(keys, ["alice"]);
//! db.close().await?;
//! # Ok(()) }
//! ```
//!
//! ## Building a view
//!
//! [`Kv::new`] gives a map function each decoded record and a [`KvEmit`] sink; the map
//! calls [`KvEmit::put`] and [`KvEmit::delete`] on as many keys as it likes. The record
//! type stays the application's own. Keys are any [`Key`]: strings, byte strings,
//! integers and 2- or 3-tuples of them, encoded so that byte order is key order (the
//! [`key`] module).
//!
//! ## Where the values are
//!
//! The view stores, per key, the seqs of the records that put or deleted it: not the
//! values. A read that needs a value reads the record back from the log
//! ([`LogReader::get`](flume_core::LogReader::get)) and runs the map on it again, keeping
//! the record's last operation on the key. So values are never stored twice, and cost
//! one log read and decode each, like a record read from `flumeview-index`; versions,
//! [`contains`](KvReader::contains), key scans and [`count`](KvScan::count) read no
//! record. The map must be a deterministic function of the record (bump the view's
//! version whenever it changes). [`KvEmit::put_with`] makes a value only when a read
//! needs it, so that indexing a record copies no value at all.
//!
//! ## Reading
//!
//! [`KvReader::get`], [`version`](KvReader::version), [`contains`](KvReader::contains),
//! [`history`](KvReader::history) and [`get_at`](KvReader::get_at) read one key;
//! [`range`](KvReader::range), [`prefix`](KvReader::prefix) and [`all`](KvReader::all)
//! start a [`KvScan`] of live keys: forward or [`reverse`](KvScan::reverse), with a
//! [`limit`](KvScan::limit), returning [`keys`](KvScan::keys),
//! [`entries`](KvScan::entries) or a [`count`](KvScan::count). Every read waits for
//! the view to catch up as its [`Wait`](flume_core::Wait) says.
//!
//! ## Watching
//!
//! [`KvReader::watch`] streams the [`Change`]s of one key, a key prefix or every key
//! ([`WatchKeys`]) in log order, deletes included: first the kept history
//! ([`WatchFrom::History`]) or nothing ([`WatchFrom::Now`]), then each new change as the
//! view applies it, with no gap and no duplicate at the seam.
//!
//! ## Writing: compare-and-set
//!
//! Records are appended to the log as usual ([`Flume::append`](flume_core::Flume::append));
//! the view follows. For a write that must not be lost to a concurrent one,
//! [`KvReader::append_if_version`] appends a record only if a key still has the version
//! the writer read ([`Expect`]), and answers [`Cas::Conflict`] with the key's current
//! version otherwise. It reads the view caught up to the log's tail and appends with
//! [`Flume::append_if`](flume_core::Flume::append_if), conditioned on that tail, so it is
//! linearizable in one process and across processes sharing one NATS stream. For logs
//! whose records are nothing but key-value operations, [`KvOp`] is the record type,
//! [`Kv::ops`] its view and [`KvStore`] a small store with `put`, `delete`, `put_if`,
//! `delete_if` and `get`.
//!
//! ## History
//!
//! [`Kv::history`] chooses which versions stay readable: all of them (the default),
//! the latest only, or those since a seq ([`History`]). Compaction drops the rest;
//! reads filter by the option, so their answers never depend on when compaction ran,
//! and an as-of read below the kept history fails with
//! [`Error::HistoryTrimmed`](flume_core::Error::HistoryTrimmed).
//!
//! ## Storage
//!
//! The view runs on `flume-lsm`, the engine of `flumeview-index`: a bounded in-memory
//! table ([`LsmOptions::memtable_bytes`]), immutable sorted runs read through memory
//! maps, background compaction, and a manifest replaced atomically at each checkpoint
//! (a checkpoint writes only what changed since the previous one). [`Kv::persist`]
//! keeps it in a directory; it is crash-consistent exactly like an index: a crash
//! leaves an earlier consistent view that resumes from its checkpoint, and damaged
//! files make it rebuild from the log.
#![warn(
    missing_docs,
    missing_debug_implementations,
    rust_2018_idioms,
    unreachable_pub
)]

mod emit;
mod keys;
mod kv;
mod reader;
mod types;
mod watch;
mod write;

#[cfg(test)]
mod tests;

pub use crate::emit::KvEmit;
pub use crate::keys::{Key, KeyPart};
pub use crate::kv::Kv;
pub use crate::reader::{KvReader, KvScan};
pub use crate::types::{History, Op, Versioned};
pub use crate::watch::{Change, WatchFrom, WatchKeys};
pub use crate::write::{Cas, Expect, KvOp, KvStore};
/// Order-preserving key encodings (the engine's), for [`KvReader::prefix`] and keys of
/// your own.
pub use flume_lsm::key;
pub use flume_lsm::LsmOptions;
