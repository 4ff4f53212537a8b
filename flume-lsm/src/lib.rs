//! # flume-lsm
//!
//! The storage engine of flume-rs's persistent views: a log-structured merge tree of
//! `(key, seq, put | delete | remove)` entries with bounded memory. It is the shared engine of
//! `flumeview-index` (a secondary index, [`Semantics::MultiValued`]) and `flumeview-kv`
//! (a key-value view, [`Semantics::SingleValued`]); the views map records to operations
//! and answer their readers from a [`Store`].
//!
//! ```
//! use std::ops::Bound;
//! use flume_lsm::{Kind, LsmOptions, OpBuf, Query, Retention, Semantics, Store};
//!
//! # fn main() -> flume_core::Result<()> {
//! let store = Store::new(1, &LsmOptions::default(), None, Semantics::SingleValued, Retention::All);
//! let mut ops = OpBuf::default();
//! ops.emit(0).put(b"apple");
//! ops.emit(1).put(b"pear");
//! ops.emit(2).put(b"apple");
//! ops.emit(3).delete(b"pear");
//! store.apply(&ops, 3)?;
//!
//! assert_eq!(store.latest(b"apple")?, Some(2));
//! assert_eq!(store.latest(b"pear")?, None);
//! let (live, since) = store.scan(&Bound::Unbounded, &Bound::Unbounded, Query::default())?;
//! assert_eq!(live, [(b"apple"[..].into(), 2)]);
//! assert_eq!(since, Some(3));
//! assert_eq!(store.history(b"pear")?, [(3, Kind::Delete), (1, Kind::Put)]);
//! # Ok(()) }
//! ```
//!
//! ## Entries and what they hide
//!
//! A view turns each record into operations on byte keys ([`OpBuf`], [`Emit`]) and
//! [applies](Store::apply) them a batch of records at a time. An entry is one
//! operation: a key, the seq of the record, and its [`Kind`]. Entries are stored in key
//! order, newest first within a key, so the newest entry of a key is the first one
//! found. A delete hides every older entry of its key; under
//! [`Semantics::SingleValued`] a put does too. A remove ([`Emit::remove`]) hides one
//! put: its key's put at its seq (it is stored at that seq, so it meets its put in
//! every merge, and a compaction drops the two together). The live answers
//! ([`Store::scan`], [`Store::latest`], [`Store::seqs`], [`Store::count`]) are the puts
//! nothing hides;
//! [`Store::history`] and [`Store::changes`] return every stored entry, hidden ones
//! included. The [`key`] module encodes strings, integers and tuples so that byte order
//! is value order.
//!
//! ## Memtable, runs, manifest
//!
//! Applied entries go to the **memtable**, in memory, bounded by
//! [`LsmOptions::memtable_bytes`]. When it is full (and at every checkpoint) it is
//! written out as a **run**: an immutable file of sorted entries in checksummed blocks,
//! with a sparse index of the blocks and a bloom filter of the keys, read through a
//! memory map. A store without a directory keeps its runs in memory.
//!
//! The **manifest** names the runs that make up the store, with the view version and
//! the `since` (the last seq applied) they reflect, and the [`Semantics`] and
//! [`Retention`] they were written under. [`Store::checkpoint`] flushes the
//! memtable and replaces the manifest atomically (temporary file, fsync, rename,
//! directory fsync); a crash at any point leaves an earlier consistent store, which
//! [`Store::load`] opens, removing the files written after it. The view then re-applies
//! the records after its `since`. The byte layout is in `docs/format.md`, section
//! "flumeview-index files".
//!
//! ## Compaction
//!
//! Runs pile up as memtables are flushed; [`Store::compact`] merges runs of the same
//! level into one run of the next level, and a [`Compactor`] thread does so in the
//! background after each checkpoint, without blocking reads or writes. A merge keeps
//! what the store's [`Retention`] says: only what the live answers need
//! ([`Retention::Live`]), every entry ([`Retention::All`]), or the entries above a seq
//! and each key's state at it ([`Retention::Since`]). Old run files are deleted only
//! once a durable manifest no longer names them.
//!
//! ## Building a view on it
//!
//! A view holds its store in an [`Engine`], which takes the directory lock and starts
//! the compactor on first use and stops the compactor before releasing the lock. The
//! `flume_core::View` methods map onto it one to one:
//!
//! | `View` | the engine |
//! |---|---|
//! | `load` | [`Engine::load`]: [`lock_dir`] once (the directory belongs to one open store), [`Compactor::start`] once (unless [`LsmOptions::background_compaction`] is off), then [`Store::load`] |
//! | `apply` | gather the batch's operations in an [`OpBuf`] (one [`OpBuf::emit`] per record), then [`Store::apply`] on [`Engine::store`] |
//! | `checkpoint` | [`Engine::checkpoint`]: [`Store::checkpoint`], then [`Compactor::poke`] when it wrote a run |
//! | `reset` | [`Engine::reset`]: [`Store::reset`] |
//! | `checkpoint_policy` | [`LsmOptions::checkpoint`] |
//!
//! A scan pages with [`Query::cursor`]: it resumes strictly after the last (key, seq)
//! of the previous page. Within one key it seeks (in a run, a binary search of the
//! blocks that decodes one entry per probe; in the memtable, binary searches), so a
//! page of a key of millions of entries costs O(log n + page), oldest first or newest
//! first; a scan of many keys walks each key it passes whole.
//!
//! Readers share the store in an `Arc` and call its query methods; a read that fails
//! with `Error::Corrupt` found a damaged run, which the view reports as
//! `Error::view_damaged` so that the driver rebuilds it. Tests can simulate a crash at
//! every step of the store's file writes with [`Store::with_faults`].
//!
//! ## Concurrency
//!
//! One writer (the view) applies, flushes and checkpoints; any number of readers query
//! at the same time, each seeing the store before or after an applied batch, never in
//! between; a reader holds a lock only to copy its part of the memtable.
#![warn(
    missing_docs,
    missing_debug_implementations,
    rust_2018_idioms,
    unreachable_pub
)]

mod bloom;
mod coding;
mod compactor;
mod emit;
mod entry;
mod files;
mod handle;
pub mod key;
mod manifest;
mod memtable;
mod merge;
mod mmap;
mod options;
mod run;
mod semantics;
mod store;
mod typed;

#[cfg(test)]
mod tests;

pub use crate::compactor::Compactor;
pub use crate::emit::{Emit, OpBuf};
pub use crate::entry::Kind;
pub use crate::files::lock_dir;
pub use crate::handle::Engine;
pub use crate::merge::Pair;
pub use crate::options::LsmOptions;
pub use crate::semantics::{Retention, Semantics};
pub use crate::store::{damaged_as_view, Query, Store, CRASH_POINTS};
pub use crate::typed::{AsKey, AsPart, Key, KeyPart, KeyPrefix};
