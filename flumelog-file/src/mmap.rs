//! The crate's only `unsafe` code: memory-mapping segment files for reading.
//!
//! A mapping of a file is only sound while nobody truncates or rewrites the mapped bytes
//! that are being read (truncation turns reads into `SIGBUS`, rewriting into torn reads).
//! This crate upholds that as follows:
//!
//! - the directory is locked exclusively (`LOCK`, `flock`), so no other handle of this
//!   crate, in this or another process, writes to the files while they are mapped;
//! - readers only touch bytes below a segment's committed end, under the segment's
//!   read lock, and those bytes are never rewritten: the log is append-only (`revert`
//!   rewrites the 8-byte header of the frame it cuts a batch at, under the write lock);
//! - a mapped file is truncated (by `revert`) only after its committed end was lowered
//!   under the segment's write lock, so no reader is inside or can reach the truncated
//!   bytes; readers copy bytes out of the mapping before releasing the read lock (a
//!   torn tail is cut at open, before any reader exists);
//! - the active segment is mapped with headroom past the end of the file; pages past the
//!   end of the file are never touched because they are above the committed end.
//!
//! Other programs modifying the segment files of an open log break this contract
//! (as they would for any embedded database); the crate documents that.

use std::fs::File;
use std::io;

use memmap2::{Mmap, MmapOptions};

/// Maps `len` bytes of `file` read-only. `len` may exceed the file's current size
/// (headroom for the active segment); it must not be zero.
#[allow(unsafe_code)]
pub(crate) fn map(file: &File, len: usize) -> io::Result<Mmap> {
    // SAFETY: see the module docs. The mapping is read-only; the crate holds the
    // directory's exclusive lock, reads only committed bytes (never rewritten except a
    // frame header by `revert`, under the segment's write lock), and truncates a mapped
    // file only after lowering the committed end under that lock, so no read ever
    // reaches a page past the end of the file.
    unsafe { MmapOptions::new().len(len).map(file) }
}
