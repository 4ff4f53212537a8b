//! [`FileLogOptions`]: every knob of a [`FileLog`](crate::FileLog), with its default.

use std::time::Duration;

use flume_core::durable::Faults;
use flume_core::{Durability, Error, Result};

use crate::format::MAX_PAYLOAD;

/// How a [`FileLog`](crate::FileLog) is laid out and how durable its appends are.
///
/// Build one with [`FileLogOptions::default()`] and the builder methods; every field is public
/// and documented with its default.
///
/// ```
/// use std::time::Duration;
/// use flumelog_file::{Durability, FileLogOptions};
///
/// let options = FileLogOptions::default()
///     .segment_size(8 << 20)
///     .durability(Durability::Synced)
///     .max_record_size(1 << 20)
///     .max_write_delay(Duration::from_millis(2));
/// assert_eq!(options.segment_size, 8 << 20);
/// ```
#[derive(Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct FileLogOptions {
    /// Size in bytes at which the active segment is sealed and a new one started.
    /// A batch never spans two segments, so a segment exceeds this size only when it
    /// holds a single batch (or record) larger than it.
    /// Default: 64 MiB. Allowed: 64 bytes to 2 GiB.
    pub segment_size: u64,
    /// The durability of an append that does not choose its own
    /// ([`Log::append_with`](flume_core::Log::append_with) with `None`).
    /// Default: [`Durability::Buffered`].
    pub durability: Durability,
    /// The largest record accepted, in bytes; larger ones fail with
    /// [`Error::RecordTooLarge`]. Default: 16 MiB. Allowed: up to 2 GiB − 1.
    pub max_record_size: u64,
    /// How long a [`Durability::Buffered`] append may sit in the log's write buffer, in
    /// this process, before its bytes are written to the OS.
    ///
    /// With the default, `Duration::ZERO`, a buffered append returns only once its bytes
    /// are in the OS page cache, so an acknowledged buffered append survives a process
    /// crash, as [`Durability::Buffered`] promises. An appender that finds no write in
    /// progress writes its record itself, on the calling thread: it copies the frame
    /// into a shared, writable memory mapping of the segment (see
    /// [`reserve`](Self::reserve); no system call, a few hundred nanoseconds), whose
    /// pages *are* the page cache, so that this is exactly as safe against a process
    /// crash as a `pwrite`; concurrent appenders share one copy or one `write`.
    ///
    /// A non-zero delay is an explicit relaxation for bulk loads: appends return as
    /// soon as the record is visible, and the writer thread writes everything buffered
    /// with one `write` after at most this delay, or sooner when the buffer reaches
    /// [`write_buffer_size`](Self::write_buffer_size), on `sync`, on a synced append and
    /// on `close`. `since` moves when the append returns, but watchers of `since`
    /// (live streams, and so views) are woken when the writer writes, so they may see
    /// such appends up to the delay later. **A process crash then loses buffered
    /// appends younger than the delay.** Default: zero.
    pub max_write_delay: Duration,
    /// Buffered bytes that make the writer flush without waiting for
    /// [`max_write_delay`](Self::max_write_delay). Appenders that get 16 times this much
    /// ahead of the writer wait for its `write` (backpressure). Default: 1 MiB.
    pub write_buffer_size: usize,
    /// Bytes of zeros written ahead of the active segment's data, in steps of this
    /// size, so that the file rarely grows on a write: an `fdatasync` then has no
    /// file-size change to commit, which makes synced appends cheaper on journaling
    /// file systems. Recovery reads zeros from a frame boundary to the end of the file
    /// as this preallocated space (see `docs/format.md`); a segment is trimmed to its
    /// data when it is sealed and when the log closes. `0` disables preallocation.
    /// Default: 1 MiB.
    pub preallocate: u64,
    /// Bytes of disk space reserved (`fallocate`) ahead of the active segment's data,
    /// in steps of this size but never past [`segment_size`](Self::segment_size), so
    /// that buffered appends are copied into a shared, writable memory mapping of the
    /// segment instead of each taking a `pwrite` system call. Bytes copied into the
    /// mapping are in the OS page cache, exactly as written bytes are: they survive a
    /// process crash, and `fdatasync` writes them to disk. Reserving real blocks
    /// first means a write through the mapping never needs a block the disk does not
    /// have (`SIGBUS`); a full disk instead fails the reservation, and that poisons
    /// the log like any failed write.
    ///
    /// The reserved space reads as zeros, which recovery takes for the clean end of
    /// the data (see `docs/format.md`); it is trimmed when the segment is sealed and
    /// when the log closes. Rounds that end with an `fdatasync` (synced appends,
    /// `sync`) write with `pwrite` as before. On a file system without `fallocate` the
    /// log falls back to `pwrite`. `0` disables mapped writes. Default: 16 MiB.
    ///
    /// One difference remains: a disk *read* error on the page that holds the end of the
    /// data (read back in after the page cache evicted it) is a `SIGBUS` through a
    /// mapping, where `pwrite` would return `EIO`. Readers of the log have always read
    /// through mappings and share that exposure; set `0` where it matters.
    pub reserve: u64,
    /// The fault plan segment files are written through: inactive (and free) unless a
    /// test of this crate sets one.
    pub(crate) faults: Faults,
}

impl Default for FileLogOptions {
    fn default() -> Self {
        FileLogOptions {
            segment_size: 64 << 20,
            durability: Durability::Buffered,
            max_record_size: 16 << 20,
            max_write_delay: Duration::ZERO,
            write_buffer_size: 1 << 20,
            preallocate: 1 << 20,
            reserve: 16 << 20,
            faults: Faults::default(),
        }
    }
}

impl std::fmt::Debug for FileLogOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FileLogOptions")
            .field("segment_size", &self.segment_size)
            .field("durability", &self.durability)
            .field("max_record_size", &self.max_record_size)
            .field("max_write_delay", &self.max_write_delay)
            .field("write_buffer_size", &self.write_buffer_size)
            .field("preallocate", &self.preallocate)
            .field("reserve", &self.reserve)
            .finish_non_exhaustive()
    }
}

impl FileLogOptions {
    /// The defaults (see each field).
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets [`segment_size`](Self::segment_size).
    pub fn segment_size(mut self, bytes: u64) -> Self {
        self.segment_size = bytes;
        self
    }

    /// Sets [`durability`](Self::durability).
    pub fn durability(mut self, durability: Durability) -> Self {
        self.durability = durability;
        self
    }

    /// Sets [`max_record_size`](Self::max_record_size).
    pub fn max_record_size(mut self, bytes: u64) -> Self {
        self.max_record_size = bytes;
        self
    }

    /// Sets [`max_write_delay`](Self::max_write_delay).
    pub fn max_write_delay(mut self, delay: Duration) -> Self {
        self.max_write_delay = delay;
        self
    }

    /// Sets [`write_buffer_size`](Self::write_buffer_size).
    pub fn write_buffer_size(mut self, bytes: usize) -> Self {
        self.write_buffer_size = bytes;
        self
    }

    /// Sets [`preallocate`](Self::preallocate).
    pub fn preallocate(mut self, bytes: u64) -> Self {
        self.preallocate = bytes;
        self
    }

    /// Sets [`reserve`](Self::reserve).
    pub fn reserve(mut self, bytes: u64) -> Self {
        self.reserve = bytes;
        self
    }

    /// Checks the values against their allowed ranges.
    pub(crate) fn validate(&self) -> Result<()> {
        if !(64..=(1 << 31)).contains(&self.segment_size) {
            return Err(Error::InvalidArgument(format!(
                "segment_size must be between 64 bytes and 2 GiB, not {}",
                self.segment_size
            )));
        }
        if self.max_record_size > u64::from(MAX_PAYLOAD) {
            return Err(Error::InvalidArgument(format!(
                "max_record_size must be at most {MAX_PAYLOAD} bytes, not {}",
                self.max_record_size
            )));
        }
        Ok(())
    }
}
