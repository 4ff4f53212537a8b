//! The file operations the writer performs on a segment, behind a small trait so that
//! tests can inject faults (short writes, a full disk, failing fsyncs, a file system
//! without `fallocate`).

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;

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

/// Wraps a segment file for the writer, with the test-only faults of `options` applied.
pub(crate) fn segment_io(file: File, options: &crate::Options) -> Box<dyn SegmentIo> {
    #[cfg(test)]
    if let Some(plan) = &options.faults {
        return Box::new(FaultyIo {
            inner: RealIo(file),
            plan: std::sync::Arc::clone(plan),
        });
    }
    let _ = options;
    Box::new(RealIo(file))
}

/// Which operations fail, shared by every segment of a log (test builds only).
#[cfg(test)]
#[derive(Debug, Default)]
pub(crate) struct FaultPlan {
    /// Bytes that may still be written; a write beyond writes what fits (a short write)
    /// and then fails with `ENOSPC`. `u64::MAX` = unlimited.
    pub(crate) write_budget: std::sync::atomic::AtomicU64,
    /// Syncs that may still succeed; the next one fails with `EIO`. `u64::MAX` = unlimited.
    pub(crate) sync_budget: std::sync::atomic::AtomicU64,
    /// Bytes that may still be reserved (`fallocate`); a reservation beyond fails
    /// whole with `ENOSPC`. `u64::MAX` = unlimited.
    pub(crate) reserve_budget: std::sync::atomic::AtomicU64,
    /// Reservations fail with `EOPNOTSUPP`, as on a file system without `fallocate`.
    pub(crate) reserve_unsupported: std::sync::atomic::AtomicBool,
    /// Mapped writes done (to check which path a test exercised).
    pub(crate) mapped_writes: std::sync::atomic::AtomicU64,
    /// `pwrite`s done.
    pub(crate) plain_writes: std::sync::atomic::AtomicU64,
    /// `fdatasync`s done on the writer thread, and on any other (an appender's).
    pub(crate) writer_thread_syncs: std::sync::atomic::AtomicU64,
    pub(crate) other_thread_syncs: std::sync::atomic::AtomicU64,
}

/// Plans compare by identity (so that `Options` stays `PartialEq`).
#[cfg(test)]
impl PartialEq for FaultPlan {
    fn eq(&self, other: &Self) -> bool {
        std::ptr::eq(self, other)
    }
}

#[cfg(test)]
impl Eq for FaultPlan {}

#[cfg(test)]
impl FaultPlan {
    /// A plan that lets everything through until told otherwise.
    pub(crate) fn new() -> std::sync::Arc<Self> {
        std::sync::Arc::new(FaultPlan {
            write_budget: u64::MAX.into(),
            sync_budget: u64::MAX.into(),
            reserve_budget: u64::MAX.into(),
            ..FaultPlan::default()
        })
    }
}

#[cfg(test)]
#[derive(Debug)]
struct FaultyIo {
    inner: RealIo,
    plan: std::sync::Arc<FaultPlan>,
}

#[cfg(test)]
impl SegmentIo for FaultyIo {
    fn write_all_at(&mut self, buf: &[u8], offset: u64) -> io::Result<()> {
        use std::sync::atomic::Ordering;
        self.plan.plain_writes.fetch_add(1, Ordering::SeqCst);
        let budget = self.plan.write_budget.load(Ordering::SeqCst);
        if budget == u64::MAX {
            return self.inner.write_all_at(buf, offset);
        }
        let fits = (budget.min(buf.len() as u64)) as usize;
        self.inner.write_all_at(&buf[..fits], offset)?;
        self.plan
            .write_budget
            .store(budget - fits as u64, Ordering::SeqCst);
        if fits < buf.len() {
            return Err(io::Error::from_raw_os_error(28)); // ENOSPC
        }
        Ok(())
    }
    fn write_mapped(&mut self, map: &WriteMap, frames: &[u8], offset: u64) -> io::Result<()> {
        use std::sync::atomic::Ordering;
        self.plan.mapped_writes.fetch_add(1, Ordering::SeqCst);
        let budget = self.plan.write_budget.load(Ordering::SeqCst);
        let fits = budget.min(frames.len() as u64) as usize;
        let copied = map.write_frames(offset, frames, fits);
        if budget != u64::MAX {
            self.plan
                .write_budget
                .store(budget - copied as u64, Ordering::SeqCst);
        }
        if copied < frames.len() {
            return Err(io::Error::from_raw_os_error(28)); // ENOSPC
        }
        Ok(())
    }
    fn reserve(&mut self, offset: u64, len: u64) -> io::Result<()> {
        use std::sync::atomic::Ordering;
        if self.plan.reserve_unsupported.load(Ordering::SeqCst) {
            return Err(io::Error::from_raw_os_error(95)); // EOPNOTSUPP
        }
        let budget = self.plan.reserve_budget.load(Ordering::SeqCst);
        if budget != u64::MAX {
            // Only bytes past the end of the file need new blocks.
            let file_len = self.inner.0.metadata()?.len();
            let new = (offset + len).saturating_sub(file_len.max(offset));
            if new > budget {
                return Err(io::Error::from_raw_os_error(28)); // ENOSPC
            }
            self.plan
                .reserve_budget
                .store(budget - new, Ordering::SeqCst);
        }
        self.inner.reserve(offset, len)
    }
    fn sync_data(&mut self) -> io::Result<()> {
        use std::sync::atomic::Ordering;
        let on_writer = std::thread::current().name() == Some("flumelog-file-writer");
        let counter = if on_writer {
            &self.plan.writer_thread_syncs
        } else {
            &self.plan.other_thread_syncs
        };
        counter.fetch_add(1, Ordering::SeqCst);
        let budget = self.plan.sync_budget.load(Ordering::SeqCst);
        if budget == 0 {
            return Err(io::Error::from_raw_os_error(5)); // EIO
        }
        if budget != u64::MAX {
            self.plan.sync_budget.store(budget - 1, Ordering::SeqCst);
        }
        self.inner.sync_data()
    }
    fn set_len(&mut self, len: u64) -> io::Result<()> {
        self.inner.set_len(len)
    }
    fn file(&self) -> &File {
        self.inner.file()
    }
}
