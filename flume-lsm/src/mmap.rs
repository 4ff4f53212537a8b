//! The crate's only `unsafe` code: memory-mapping run files for reading.
//!
//! A mapping is only sound while nobody truncates or rewrites the mapped bytes. This
//! crate upholds that:
//!
//! - a run file is written under a temporary name, fsynced, and renamed into place;
//!   only then is it mapped, and it is never opened for writing again;
//! - a run file is deleted (never truncated) once no manifest names it; on Unix a deleted
//!   file stays readable through existing mappings, so readers still holding the run
//!   are unaffected;
//! - the store directory is locked exclusively (`LOCK`), so no other store handle, in
//!   this or another process, writes to the directory while it is open.
//!
//! Other programs modifying the run files of an open store break this contract (as they
//! would for any embedded database).
#![allow(unsafe_code)]

use std::fs::File;
use std::io;

use memmap2::Mmap;

/// Maps the whole of `file` read-only. The file must not be empty.
pub(crate) fn map(file: &File) -> io::Result<Mmap> {
    // SAFETY: see the module docs: run files are immutable once renamed into place, are
    // deleted but never truncated or rewritten, and the directory is locked against
    // other writers for as long as the store is open.
    unsafe { Mmap::map(file) }
}
