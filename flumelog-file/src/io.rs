//! The file operations the writer performs on a segment, behind a small trait so that
//! tests can inject faults (short writes, a full disk, failing fsyncs, a file system
//! without `fallocate`) through `flume_core::durable::Faults`, the fault plan every
//! crate's tests use.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;

use flume_core::durable::Faults;

use crate::mmap::{self, WriteMap};

/// Writes and syncs one segment file.
pub(crate) trait SegmentIo: Send + std::fmt::Debug {
    /// Writes all of `buf` at byte `offset` (`pwrite`).
    fn write_all_at(&mut self, buf: &[u8], offset: u64) -> io::Result<()>;
    /// Copies the whole frames in `frames` into `map` at byte `offset`, which lies in
    /// space [`reserve`](Self::reserve)d before (see [`WriteMap::write_frames`]).
    fn write_mapped(&mut self, map: &WriteMap, frames: &[u8], offset: u64) -> io::Result<()>;
    /// Allocates disk blocks for `offset .. offset + len`, extending the file if
    /// needed (`fallocate`).
    fn reserve(&mut self, offset: u64, len: u64) -> io::Result<()>;
    /// `fdatasync`.
    fn sync_data(&mut self) -> io::Result<()>;
    /// Truncates or extends the file.
    fn set_len(&mut self, len: u64) -> io::Result<()>;
    /// The underlying file (for mapping).
    fn file(&self) -> &File;
}

/// The real thing.
#[derive(Debug)]
pub(crate) struct RealIo(pub(crate) File);

impl SegmentIo for RealIo {
    fn write_all_at(&mut self, buf: &[u8], offset: u64) -> io::Result<()> {
        self.0.write_all_at(buf, offset)
    }
    fn write_mapped(&mut self, map: &WriteMap, frames: &[u8], offset: u64) -> io::Result<()> {
        map.write_frames(offset, frames, usize::MAX);
        Ok(())
    }
    fn reserve(&mut self, offset: u64, len: u64) -> io::Result<()> {
        mmap::fallocate(&self.0, offset, len)
    }
    fn sync_data(&mut self) -> io::Result<()> {
        self.0.sync_data()
    }
    fn set_len(&mut self, len: u64) -> io::Result<()> {
        self.0.set_len(len)
    }
    fn file(&self) -> &File {
        &self.0
    }
}

/// Wraps a segment file for the writer, through the fault plan of `options` when it has
/// an active one (tests only; see [`Faults`]).
pub(crate) fn segment_io(file: File, options: &crate::FileLogOptions) -> Box<dyn SegmentIo> {
    if options.faults.is_active() {
        return Box::new(FaultyIo {
            inner: RealIo(file),
            faults: options.faults.clone(),
        });
    }
    Box::new(RealIo(file))
}

/// `ENOSPC`: what a write beyond the plan's write budget fails with.
fn disk_full() -> io::Error {
    io::Error::from_raw_os_error(28)
}

/// A segment file whose operations go through a fault plan: short writes and a full
/// disk once the write budget is spent, failing fsyncs, failing or unsupported
/// reservations, and counters of the writes and syncs done (by kind and thread).
#[derive(Debug)]
struct FaultyIo {
    inner: RealIo,
    faults: Faults,
}

impl SegmentIo for FaultyIo {
    fn write_all_at(&mut self, buf: &[u8], offset: u64) -> io::Result<()> {
        self.faults.count("plain_writes");
        let fits = self.faults.write_allowance(buf.len());
        self.inner.write_all_at(&buf[..fits], offset)?;
        self.faults.wrote(fits);
        if fits < buf.len() {
            return Err(disk_full());
        }
        Ok(())
    }
    fn write_mapped(&mut self, map: &WriteMap, frames: &[u8], offset: u64) -> io::Result<()> {
        self.faults.count("mapped_writes");
        let fits = self.faults.write_allowance(frames.len());
        let copied = map.write_frames(offset, frames, fits);
        self.faults.wrote(copied);
        if copied < frames.len() {
            return Err(disk_full());
        }
        Ok(())
    }
    fn reserve(&mut self, offset: u64, len: u64) -> io::Result<()> {
        // Only bytes past the end of the file need new blocks.
        let new = if self.faults.reserve_is_limited() {
            let file_len = self.inner.0.metadata()?.len();
            (offset + len).saturating_sub(file_len.max(offset))
        } else {
            0
        };
        self.faults.reserve(new)?;
        self.inner.reserve(offset, len)
    }
    fn sync_data(&mut self) -> io::Result<()> {
        let on_writer = std::thread::current().name() == Some("flumelog-file-writer");
        self.faults.count(if on_writer {
            "writer_thread_syncs"
        } else {
            "other_thread_syncs"
        });
        self.faults.sync()?;
        self.inner.sync_data()
    }
    fn set_len(&mut self, len: u64) -> io::Result<()> {
        self.inner.set_len(len)
    }
    fn file(&self) -> &File {
        self.inner.file()
    }
}
