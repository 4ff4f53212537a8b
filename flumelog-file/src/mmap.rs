//! The crate's only `unsafe` code: memory-mapping segment files (read-only for readers,
//! writable for the writer), and `fallocate`, which `std` lacks.
//!
//! A mapping of a file is only sound while nobody truncates or rewrites the mapped bytes
//! that are being read (truncation turns reads into `SIGBUS`, rewriting into torn reads).
//! This crate upholds that as follows:
//!
//! - the directory is locked exclusively (`LOCK`, `flock`), so no other handle of this
//!   crate, in this or another process, writes to the files while they are mapped;
//! - readers only touch bytes below a segment's committed end, under the segment's
//!   read lock, and those bytes are never rewritten: the log is append-only;
//!   a reader's slice covers the committed bytes only ([`committed`]), never the bytes
//!   above them that the writer is filling in;
//! - the writer writes through its own writable mapping ([`WriteMap`]) only at or above
//!   the committed end (bytes no reader can reach until the writer raises the end under
//!   the segment's write lock), and only below the file's length, in space it reserved
//!   with `fallocate` (so that a write never lands past the end of the file, which would
//!   be `SIGBUS`, and never needs a block the disk no longer has);
//! - records handed out by reads are not copies but slices of the read-only mapping
//!   ([`slice`]), which keep it alive while they are held: so a mapped file is never
//!   truncated below its committed end, nor are committed bytes rewritten. `revert` and
//!   `repair` write the kept prefix to a new file and rename it over the old one (whose
//!   inode, and every record still held from it, lives on until its last mapping is
//!   dropped); only bytes above every committed end are ever cut (reserved space on seal
//!   and close, a torn tail at open, before any reader exists);
//! - the active segment is mapped with headroom past the end of the file; pages past the
//!   end of the file are never touched because they are above the committed end and
//!   above the reserved length.
//!
//! Other programs modifying the segment files of an open log break this contract
//! (as they would for any embedded database); the crate documents that.

use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;
use std::sync::atomic::{compiler_fence, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use memmap2::{Advice, Mmap, MmapOptions, MmapRaw, UncheckedAdvice};

use crate::format::FRAME_HEADER_LEN;

/// Maps `len` bytes of `file` read-only. `len` may exceed the file's current size
/// (headroom for the active segment); it must not be zero.
#[allow(unsafe_code)]
pub(crate) fn map(file: &File, len: usize) -> io::Result<Mmap> {
    // SAFETY: see the module docs. The mapping is read-only; the crate holds the
    // directory's exclusive lock, reads only committed bytes, never rewrites them, and
    // never truncates a mapped file below its committed end (revert and repair replace
    // the file instead), so no read ever reaches a page past the end of the file.
    unsafe { MmapOptions::new().len(len).map(file) }
}

/// The first `end` bytes of `map` (fewer if the mapping is shorter): the committed
/// bytes of a segment. Built from the mapping's pointer so that the slice covers only
/// those bytes, never the ones above them that the writer may be writing.
#[allow(unsafe_code)]
pub(crate) fn committed(map: &Mmap, end: u64) -> &[u8] {
    let len = usize::try_from(end).unwrap_or(usize::MAX).min(map.len());
    // SAFETY: `len` is within the mapping, which lives as long as the borrow of `map`.
    // The bytes below the committed end are not written while a reader holds the
    // segment's read lock (see the module docs).
    unsafe { std::slice::from_raw_parts(map.as_ptr(), len) }
}

/// Bytes `range` of `map` (committed bytes: see [`committed`]) as `Bytes` that keep the
/// mapping alive while they, or slices of them, are held: a read without a copy.
pub(crate) fn slice(map: &Arc<Mmap>, range: std::ops::Range<usize>) -> Bytes {
    Bytes::from_owner(MapSlice {
        map: Arc::clone(map),
        range,
    })
}

/// The owner behind [`slice`].
struct MapSlice {
    map: Arc<Mmap>,
    range: std::ops::Range<usize>,
}

impl AsRef<[u8]> for MapSlice {
    fn as_ref(&self) -> &[u8] {
        // Only the range's bytes (committed, never written again), never the whole map.
        &committed(&self.map, self.range.end as u64)[self.range.clone()]
    }
}

/// The writer's writable, shared mapping of the active segment. Bytes copied into it
/// are in the page cache as soon as the copy is done, exactly like bytes written with
/// `pwrite`: they survive a crash of the process, and `fdatasync` writes them to disk.
///
/// Only the holder of the writer's mutex copies into it; the writer thread may at the
/// same time fault pages in ahead of the copies ([`populate`](Self::populate)) and drop
/// pages behind them ([`unmap_below`](Self::unmap_below)), neither of which changes
/// the file's bytes.
#[derive(Debug)]
pub(crate) struct WriteMap {
    raw: MmapRaw,
}

impl WriteMap {
    /// Maps `len` bytes of `file` (opened for reading and writing) for writing. `len`
    /// may exceed the file's current size; only bytes below it may be written.
    pub(crate) fn new(file: &File, len: usize) -> io::Result<WriteMap> {
        let raw = MmapOptions::new().len(len).map_raw(file)?;
        Ok(WriteMap { raw })
    }

    /// The mapping's length in bytes.
    pub(crate) fn len(&self) -> u64 {
        self.raw.len() as u64
    }

    /// Copies `frames` (whole frames, as [`encode_frame`](crate::format::encode_frame)
    /// writes them) to byte `at` of the file, frame by frame and each frame's header
    /// after its payload, so that a crash of the process in the middle of the copy
    /// leaves a prefix of complete frames followed by at most one frame whose header
    /// is still zero (a torn tail, cut at open) — never a complete frame after a
    /// missing one. Copies at most `budget` bytes (a prefix, for fault injection) and
    /// returns how many it copied.
    ///
    /// The caller guarantees that `at .. at + frames.len()` lies within the file, in
    /// space reserved with [`fallocate`], at or above the segment's committed end (no
    /// reader looks there); this method checks it lies within the mapping.
    #[allow(unsafe_code)]
    pub(crate) fn write_frames(&self, at: u64, frames: &[u8], budget: usize) -> usize {
        let end = at
            .checked_add(frames.len() as u64)
            .filter(|&end| end <= self.len());
        assert!(end.is_some(), "a mapped write past the end of the mapping");
        let base = self.raw.as_mut_ptr();
        let mut pos = 0usize;
        while pos < frames.len() {
            let word = u32::from_le_bytes([
                frames[pos],
                frames[pos + 1],
                frames[pos + 2],
                frames[pos + 3],
            ]);
            let frame_len = FRAME_HEADER_LEN + (word & crate::format::MAX_PAYLOAD) as usize;
            let frame = &frames[pos..pos + frame_len];
            if pos + frame_len > budget {
                // Fault injection: a prefix of the bytes, as a short write leaves them.
                let fits = budget - pos;
                // SAFETY: as below; `fits < frame_len`.
                unsafe {
                    std::ptr::copy_nonoverlapping(
                        frame.as_ptr(),
                        base.add(at as usize + pos),
                        fits,
                    );
                }
                return budget;
            }
            // SAFETY: `at + pos .. at + pos + frame_len` is within the mapping (checked
            // above) and within the file's reserved space (the caller's guarantee), so
            // the pages exist and have blocks; no reader has a reference to these bytes
            // (they are above the committed end), and `frames` is not in the mapping.
            unsafe {
                let dst = base.add(at as usize + pos);
                std::ptr::copy_nonoverlapping(
                    frame.as_ptr().add(FRAME_HEADER_LEN),
                    dst.add(FRAME_HEADER_LEN),
                    frame_len - FRAME_HEADER_LEN,
                );
                // The payload is in place before the header that makes it a frame.
                compiler_fence(Ordering::SeqCst);
                std::ptr::copy_nonoverlapping(frame.as_ptr(), dst, FRAME_HEADER_LEN);
            }
            // The next frame's bytes are stored only after this frame is complete.
            compiler_fence(Ordering::SeqCst);
            pos += frame_len;
        }
        pos
    }

    /// Hints the CPU to fetch the cache lines of `at .. at + len` for writing, so that
    /// the next copy there does not wait for them. Does nothing off x86-64.
    #[allow(unsafe_code)]
    pub(crate) fn prefetch(&self, at: u64, len: u64) {
        #[cfg(target_arch = "x86_64")]
        {
            let end = at.saturating_add(len).min(self.len());
            let mut line = at & !63;
            while line < end {
                // SAFETY: a prefetch is only a hint: it never faults, even on an
                // address that is not mapped, and changes no memory.
                unsafe {
                    std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_ET0 }>(
                        self.raw.as_ptr().add(line as usize).cast(),
                    );
                }
                line += 64;
            }
        }
        #[cfg(not(target_arch = "x86_64"))]
        let _ = (at, len);
    }

    /// Faults in (and allocates page-cache pages for) `at .. at + len`, so that later
    /// copies do not take page faults. Best effort: the caller ignores failures
    /// (`MADV_POPULATE_WRITE` needs Linux 5.14).
    pub(crate) fn populate(&self, at: u64, len: u64) -> io::Result<()> {
        let end = at.saturating_add(len).min(self.len());
        if end <= at {
            return Ok(());
        }
        self.raw
            .advise_range(Advice::PopulateWrite, at as usize, (end - at) as usize)
    }

    /// Drops this mapping's pages between `from` and `to` (both rounded down to whole
    /// pages): the bytes stay in the page cache (dirty ones are still written back;
    /// this is `MADV_DONTNEED` on a shared file mapping), but writeback need no longer
    /// write-protect them in this mapping, one TLB flush per page. For pages the
    /// writer is done with (below the committed end); if one is written again anyway
    /// it is simply faulted in again.
    #[allow(unsafe_code)]
    pub(crate) fn unmap_below(&self, from: u64, to: u64) -> io::Result<()> {
        let page = page_size();
        let from = from / page * page;
        let to = to.min(self.len()) / page * page;
        if to <= from {
            return Ok(());
        }
        // SAFETY: the mapping is shared and backed by a file, so `MADV_DONTNEED` only
        // removes page-table entries: later reads and writes through the mapping see
        // the file's bytes again, unchanged. No reference into this mapping exists
        // (it is only ever written through raw pointers).
        unsafe {
            self.raw.unchecked_advise_range(
                UncheckedAdvice::DontNeed,
                from as usize,
                (to - from) as usize,
            )
        }
    }
}

/// The size of a memory page.
fn page_size() -> u64 {
    static PAGE: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    *PAGE.get_or_init(|| {
        #[allow(unsafe_code)]
        // SAFETY: `sysconf` has no preconditions.
        let size = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
        u64::try_from(size).ok().filter(|&s| s > 0).unwrap_or(4096)
    })
}

/// Allocates disk blocks for `offset .. offset + len` of `file`, extending it if
/// needed (`fallocate(2)`, mode 0): writes there, through a mapping too, then never
/// fail for lack of space. Unsupported file systems give `EOPNOTSUPP`.
#[allow(unsafe_code)]
pub(crate) fn fallocate(file: &File, offset: u64, len: u64) -> io::Result<()> {
    let (Ok(offset), Ok(len)) = (libc::off_t::try_from(offset), libc::off_t::try_from(len)) else {
        return Err(io::Error::from(io::ErrorKind::InvalidInput));
    };
    loop {
        // SAFETY: a plain system call on a file descriptor that `file` keeps open; no
        // memory is passed.
        let rc = unsafe { libc::fallocate(file.as_raw_fd(), 0, offset, len) };
        if rc == 0 {
            return Ok(());
        }
        let err = io::Error::last_os_error();
        if err.kind() != io::ErrorKind::Interrupted {
            return Err(err);
        }
    }
}
