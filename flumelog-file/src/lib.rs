//! # flumelog-file
//!
//! The durable log of flume-rs: records in segment files in one directory, each framed
//! with its length and a CRC32C, written with group commit (leader/follower: an idle
//! appender writes inline, a writer thread takes over under contention and syncs),
//! read through memory maps, recovered after a crash.
//!
//! ```
//! use bytes::Bytes;
//! use flume_core::{Log, StreamOptions};
//! use flumelog_file::{Durability, FileLog, FileLogOptions};
//! use futures::TryStreamExt;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> flume_core::Result<()> {
//! let dir = tempfile::tempdir().unwrap();
//! let log = FileLog::open(dir.path(), FileLogOptions::default()).await?;
//!
//! let seq = log.append(Bytes::from_static(b"hello")).await?;
//! assert_eq!(seq, 0);
//! let seqs = log
//!     .append_batch_with(vec![Bytes::from_static(b"a"), Bytes::from_static(b"b")], Some(Durability::Synced))
//!     .await?;
//! assert_eq!(seqs, 1..3);
//! assert_eq!(log.get(2).await?, Bytes::from_static(b"b"));
//!
//! let all: Vec<_> = log.stream(StreamOptions::new().reverse(true)).try_collect().await?;
//! assert_eq!(all.iter().map(|(seq, _)| *seq).collect::<Vec<_>>(), vec![2, 1, 0]);
//! log.close().await?;
//!
//! // Reopening finds everything again.
//! let log = FileLog::open(dir.path(), FileLogOptions::default()).await?;
//! assert_eq!(*log.since().borrow(), Some(2));
//! # Ok(())
//! # }
//! ```
//!
//! ## Layout
//!
//! A log is a directory holding a `LOCK` file and segment files named after the seq of
//! their first record (`00000000000000000000.seg`, `00000000000000001234.seg`, …). The
//! active segment is sealed and a new one started once it reaches
//! [`FileLogOptions::segment_size`]. The byte layout is documented in `docs/format.md`
//! ("flumelog-file segments").
//!
//! Seqs are dense from 0 and never change. Each segment's seq → offset index lives in
//! memory (4 bytes per record) and is rebuilt at open by scanning every segment and
//! verifying every record's checksum; there is no sidecar index file that could
//! disagree with the data. `get(seq)` is a binary search over the (few) segments and
//! one array lookup. Opening therefore reads the whole log once (CRC32C runs at several
//! GB/s); open is a blocking operation — [`FileLog::open`] runs it on tokio's blocking
//! pool, [`FileLog::open_blocking`] runs it on the calling thread.
//!
//! Because every indexed record was verified at open or written by this process (and
//! the directory is locked against other writers), `get` and `stream` do not compute
//! checksums again, and do not copy: a record read is a slice of the segment's mapping
//! (`Bytes` that keep the mapping alive while held; a `revert` or `repair` replaces a
//! segment file instead of truncating it, so a held record never changes). `stream_chunks` (how the view driver reads) takes a whole chunk of records
//! per segment lock.
//!
//! ## Durability
//!
//! Appends become visible to `get`, `stream` and `since` before the call returns.
//! When they reach the disk depends on their [`Durability`] and on
//! [`FileLogOptions::max_write_delay`] (default zero):
//!
//! | level | acknowledged when | survives a process crash | survives a power loss / OS crash |
//! |---|---|---|---|
//! | `Buffered`, `max_write_delay = 0` (default) | its bytes are in the OS page cache: copied into the segment's shared mapping, or `write()` returned (shared by concurrent appenders) | yes | once a later `sync()` / synced append returned, or its segment was sealed |
//! | `Buffered`, `max_write_delay > 0` (opt-in, for bulk loads) | the record is visible (in this process's write buffer) | once written to the OS: at most `max_write_delay` later, or at the next `sync`, synced append or `close` | as above |
//! | `Synced` | `fdatasync()` returned (one for every append waiting) | yes | yes |
//!
//! [`Log::durable`] is the last seq that survives a power loss; [`Log::sync`] makes
//! everything appended so far durable. A batch ([`Log::append_batch_with`]) is
//! all-or-nothing across a crash: its frames are marked "batch continues" except the
//! last, and recovery drops an unfinished batch whole.
//!
//! ## Recovery
//!
//! Opening verifies every record. A torn tail — the partly written end of the last
//! segment left by a crash — is cut; [`FileLog::recovery`] reports what was cut and a
//! `tracing` warning says so. A process crash never leaves a log that does not open,
//! whatever the records hold (records holding frames of this very format included):
//! recovery reads frames only at boundaries reached from a segment's header, and calls
//! a bad frame damage only with proof (the rule is in `docs/format.md`, "Recovery
//! rules"). Damage fails the open with [`Error::Corrupt`] naming the file and byte
//! offset; a deleted last segment fails it with [`Error::Missing`] (a small `TAIL` file
//! names the last segment). [`FileLog::repair`] keeps the longest intact prefix on
//! request, moving damaged files aside instead of deleting them.
//!
//! After a failed write or fsync the log is poisoned: every later append fails with
//! [`Error::Poisoned`], whose `kind` says why (a full disk is
//! `Some(std::io::ErrorKind::StorageFull)`): free space if needed, then close and
//! reopen the log.
//!
//! ## Concurrency
//!
//! Writing is group commit, leader/follower style. Appends are queued under a short
//! lock; whoever holds the writer (the writer thread, or a buffered appender that found
//! it idle and writes its own records inline) frames everything queued and writes it at
//! once. Buffered writes are copied into a shared, writable memory mapping of the active
//! segment, in disk space reserved ahead with `fallocate` ([`FileLogOptions::reserve`]): no
//! system call per append, and the bytes are in the page cache as soon as they are
//! copied. A lone buffered append is framed straight into the mapping without being
//! queued at all; the writer thread faults the mapping's pages in ahead of the appends
//! and wakes watchers of `since` at most once a millisecond during a burst (`since`
//! itself moves before every append returns). Rounds that sync use `pwrite`. An
//! `fdatasync` serves every append waiting at that moment and holds no lock that
//! appenders or readers need. It runs on the writer thread, except for a synced append
//! that finds nothing else queued and the writer idle, on a worker of a multi-thread
//! tokio runtime: that appender writes and syncs its record itself, inside
//! [`tokio::task::block_in_place`], and skips two thread hand-offs (about a quarter of a
//! lone synced append's latency on the machine measured). Under concurrency, and on a
//! current-thread runtime (which must not block), the writer thread does it. Readers slice records out of memory maps
//! (or, for records not yet written, out of the write buffer) and never wait for I/O.
//! A second open of the same directory, from this or another process, fails with
//! [`Error::Locked`]. Other programs must not modify the files of an open log.
//!
//! A conditional append ([`Log::append_if`], [`Log::append_batch_if_with`]) compares
//! the expected tail with the log's under the same short lock where appends get their
//! seqs, and is then written and synced like any other append: no system call and no
//! fsync of its own, and of appenders expecting one tail exactly one wins.
#![warn(
    missing_docs,
    missing_debug_implementations,
    rust_2018_idioms,
    unreachable_pub
)]

mod format;
mod io;
mod log;
mod mmap;
mod options;
mod progress;
mod recovery;
mod segment;
mod shared;
mod tailmark;
mod writer;

pub use crate::log::FileLog;
pub use crate::options::FileLogOptions;
pub use crate::recovery::{Quarantined, RecoveryReport, RepairReport};
pub use flume_core::{Durability, Error, Log, Result, Seq};

#[cfg(test)]
mod fault_tests;
