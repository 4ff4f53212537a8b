//! [`FileLog`]: the handle, and its [`Log`] implementation.

use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::Instant;

use bytes::Bytes;
use flume_core::{Durability, Error, Log, RawRecord, Result, Seq, StreamOptions};
use futures::future::BoxFuture;
use futures::stream::BoxStream;
use futures::StreamExt;
use tokio::sync::{oneshot, watch};

use crate::progress::{poisoned_error, Progress};
use crate::recovery::{self, OnCorrupt, RecoveryReport, RepairReport};
use crate::shared::Shared;
use crate::writer::queue::{self, Await, Command, Then};
use crate::writer::{can_block_in_place, try_commit, Active, Inline, Tail, Writer};
use crate::FileLogOptions;

/// A durable, segmented, append-only log in a directory. Cheap to clone (an `Arc`
/// inside); every clone is the same log.
///
/// Use it through the [`Log`] trait (`append`, `get`, `stream`, …). When the last clone
/// is dropped without [`Log::close`], buffered records are still written to the OS
/// (not synced) and the directory is unlocked before the drop returns.
///
/// ```
/// use bytes::Bytes;
/// use flume_core::Log;
/// use flumelog_file::{FileLog, FileLogOptions};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> flume_core::Result<()> {
/// let dir = tempfile::tempdir().unwrap();
/// let log = FileLog::open(dir.path(), FileLogOptions::default()).await?;
/// let seq = log.append(Bytes::from_static(b"record")).await?;
/// assert_eq!(log.get(seq).await?, Bytes::from_static(b"record"));
/// log.close().await?;
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct FileLog {
    handle: Arc<Handle>,
}

/// Owns the writer thread; dropping the last handle closes the log. Its two locks
/// are in the crate's lock order (see [`shared`](crate::shared)).
#[derive(Debug)]
struct Handle {
    shared: Arc<Shared>,
    /// The writer lock, shared with the writer thread; appenders that find it free
    /// commit on their own thread ([`try_commit`]).
    writer: Arc<Mutex<Writer>>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

impl Drop for Handle {
    fn drop(&mut self) {
        self.shared.tail().close(false);
        self.shared.wake.notify_all();
        let thread = self.thread.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(thread) = thread {
            let _ = thread.join();
        }
    }
}

impl FileLog {
    /// Opens (creating if needed) the log in `dir`, recovering from a crash if the last
    /// one left a torn tail (see [`recovery`](Self::recovery)).
    ///
    /// Opening reads and verifies every record; it runs on tokio's blocking thread pool.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> flume_core::Result<()> {
    /// use flumelog_file::{FileLog, FileLogOptions};
    /// let dir = tempfile::tempdir().unwrap();
    /// let log = FileLog::open(dir.path().join("log"), FileLogOptions::default()).await?;
    /// assert!(log.recovery().is_none());
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// # Errors
    /// - [`Error::Locked`] when another handle, in this or another process, has it open;
    /// - [`Error::Corrupt`] when a record before the torn tail is damaged, naming the
    ///   file and byte offset ([`repair`](Self::repair) keeps what is before it);
    /// - [`Error::Missing`] when the last segment is gone (the directory's tail marker
    ///   names it; [`repair`](Self::repair) accepts the loss);
    /// - [`Error::InvalidArgument`] for options out of range;
    /// - [`Error::Io`] when the directory or a file cannot be read or written.
    ///
    /// # Cancel safety
    /// Dropping the future before it completes lets the open finish in the background
    /// and then closes the log again.
    pub async fn open(dir: impl AsRef<Path>, options: FileLogOptions) -> Result<FileLog> {
        let dir = dir.as_ref().to_path_buf();
        tokio::task::spawn_blocking(move || FileLog::open_blocking(dir, options))
            .await
            .map_err(|e| Error::Backend(e.into()))?
    }

    /// [`open`](Self::open) on the calling thread (blocking I/O; no runtime needed).
    ///
    /// ```
    /// use flumelog_file::{FileLog, FileLogOptions};
    /// let dir = tempfile::tempdir().unwrap();
    /// let log = FileLog::open_blocking(dir.path(), FileLogOptions::default())?;
    /// # Ok::<(), flume_core::Error>(())
    /// ```
    ///
    /// # Errors
    /// As [`open`](Self::open).
    pub fn open_blocking(dir: impl AsRef<Path>, options: FileLogOptions) -> Result<FileLog> {
        options.validate()?;
        let dir = dir.as_ref().to_path_buf();
        let started = Instant::now();
        let lock = recovery::lock_dir(&dir)?;
        let (opened, _) = recovery::open_locked(&dir, lock, &options, OnCorrupt::Fail)?;
        let next_seq = opened.next_seq;
        let last = next_seq.checked_sub(1);
        let (since_tx, since_rx) = watch::channel(last);
        let (progress, durable_rx) = Progress::new(next_seq);
        let active_seg = Arc::clone(&opened.segments[opened.segments.len() - 1]);
        let segment_count = opened.segments.len();
        let shared = Arc::new(Shared {
            dir: dir.clone(),
            tail: Mutex::new(Tail::new(next_seq, since_tx)),
            wake: Condvar::new(),
            segments: std::sync::RwLock::new(opened.segments),
            progress,
            since_rx,
            durable_rx,
            lock_file: Mutex::new(Some(opened.lock)),
            recovery: opened.recovery,
            options,
        });
        let active_len = active_seg.read_state().end;
        let active_path = active_seg.path.clone();
        let active = Active::new(
            Arc::clone(&active_seg),
            opened.active_file,
            &shared.options,
            active_len,
            opened.active_file_len,
            active_seg.count(),
            opened.active_map_len,
            shared.options.reserve > 0,
        )
        .map_err(|e| Error::io(active_path, e))?;
        let writer = Writer::new(Arc::clone(&shared), active);
        writer.set_ahead();
        let writer = Arc::new(Mutex::new(writer));
        let thread = std::thread::Builder::new()
            .name("flumelog-file-writer".into())
            .spawn({
                let writer = Arc::clone(&writer);
                let shared = Arc::clone(&shared);
                move || Writer::run(writer, shared)
            })
            .map_err(|e| Error::io(&dir, e))?;
        tracing::info!(
            dir = %dir.display(),
            segments = segment_count,
            records = next_seq,
            elapsed_ms = started.elapsed().as_millis() as u64,
            "flumelog-file: opened"
        );
        Ok(FileLog {
            handle: Arc::new(Handle {
                shared,
                writer,
                thread: Mutex::new(Some(thread)),
            }),
        })
    }

    /// Makes the damaged log in `dir` open again, keeping the longest intact prefix of
    /// it: everything before the first damaged record (an unfinished batch before it
    /// included), and every segment whose only damage is its header (rebuilt from the
    /// seq in its file name). Nothing is deleted: a file repair cuts or rebuilds is
    /// first linked or copied aside, a file it drops from the log is moved aside, both
    /// as `<name>.quarantined-<why>` in `dir` (listed in the report). A deleted last
    /// segment is accepted as lost. A torn tail is cut as [`open`](Self::open) would.
    /// Returns what was kept, cut and moved aside, or `None` when nothing was damaged.
    /// Blocking; the log must not be open. `docs/format.md` ("Repair") lists what
    /// repair does for each kind of damage.
    ///
    /// ```
    /// use flumelog_file::{FileLog, FileLogOptions};
    /// let dir = tempfile::tempdir().unwrap();
    /// assert_eq!(FileLog::repair(dir.path(), &FileLogOptions::default())?, None);
    /// # Ok::<(), flume_core::Error>(())
    /// ```
    ///
    /// # Errors
    /// [`Error::Locked`] when the log is open; [`Error::Io`] when a file cannot be
    /// read, written, linked or renamed.
    pub fn repair(dir: impl AsRef<Path>, options: &FileLogOptions) -> Result<Option<RepairReport>> {
        options.validate()?;
        let dir = dir.as_ref();
        let lock = recovery::lock_dir(dir)?;
        let (_opened, report) = recovery::open_locked(dir, lock, options, OnCorrupt::Repair)?;
        Ok(report)
    }

    /// What opening cut from the end of the log (a torn tail left by a crash), if anything.
    ///
    /// ```
    /// # fn main() -> flume_core::Result<()> {
    /// use flumelog_file::{FileLog, FileLogOptions};
    /// let dir = tempfile::tempdir().unwrap();
    /// let log = FileLog::open_blocking(dir.path(), FileLogOptions::default())?;
    /// assert_eq!(log.recovery(), None);
    /// # Ok(())
    /// # }
    /// ```
    pub fn recovery(&self) -> Option<&RecoveryReport> {
        self.shared().recovery.as_ref()
    }

    /// The log's directory.
    ///
    /// ```
    /// # fn main() -> flume_core::Result<()> {
    /// use flumelog_file::{FileLog, FileLogOptions};
    /// let dir = tempfile::tempdir().unwrap();
    /// let log = FileLog::open_blocking(dir.path(), FileLogOptions::default())?;
    /// assert_eq!(log.dir(), dir.path());
    /// # Ok(())
    /// # }
    /// ```
    pub fn dir(&self) -> &Path {
        &self.shared().dir
    }

    /// The options the log was opened with.
    ///
    /// ```
    /// # fn main() -> flume_core::Result<()> {
    /// use flumelog_file::{FileLog, FileLogOptions};
    /// let dir = tempfile::tempdir().unwrap();
    /// let log = FileLog::open_blocking(dir.path(), FileLogOptions::default().segment_size(1 << 20))?;
    /// assert_eq!(log.options().segment_size, 1 << 20);
    /// # Ok(())
    /// # }
    /// ```
    pub fn options(&self) -> &FileLogOptions {
        &self.shared().options
    }

    /// The segment files, oldest first.
    ///
    /// ```
    /// # fn main() -> flume_core::Result<()> {
    /// use flumelog_file::{FileLog, FileLogOptions};
    /// let dir = tempfile::tempdir().unwrap();
    /// let log = FileLog::open_blocking(dir.path(), FileLogOptions::default())?;
    /// assert_eq!(log.segments(), vec![dir.path().join("00000000000000000000.seg")]);
    /// # Ok(())
    /// # }
    /// ```
    pub fn segments(&self) -> Vec<PathBuf> {
        self.shared()
            .segments()
            .iter()
            .map(|s| s.path.clone())
            .collect()
    }

    /// Why the log is poisoned (a write or fsync failed), if it is; appends then fail
    /// with [`Error::Poisoned`] until the log is reopened.
    ///
    /// ```
    /// # fn main() -> flume_core::Result<()> {
    /// use flumelog_file::{FileLog, FileLogOptions};
    /// let dir = tempfile::tempdir().unwrap();
    /// let log = FileLog::open_blocking(dir.path(), FileLogOptions::default())?;
    /// assert_eq!(log.poisoned(), None);
    /// # Ok(())
    /// # }
    /// ```
    pub fn poisoned(&self) -> Option<String> {
        self.shared().progress.poisoned().map(|f| f.reason.clone())
    }

    pub(crate) fn shared(&self) -> &Arc<Shared> {
        &self.handle.shared
    }

    /// The writer lock (tests stop the writer with it).
    #[cfg(test)]
    pub(crate) fn writer(&self) -> &Mutex<Writer> {
        &self.handle.writer
    }

    /// Validates and queues records (only if the log ends at `expected`, for a
    /// conditional append); returns their seqs and what to wait for.
    fn enqueue(
        &self,
        records: impl ExactSizeIterator<Item = Bytes>,
        durability: Option<Durability>,
        expected: Option<Option<Seq>>,
    ) -> Result<(Range<Seq>, Await, u64)> {
        let shared = self.shared();
        let durability = durability.unwrap_or(shared.options.durability);
        // (Only a synced append asks the runtime: the question costs a thread-local.)
        let sync_inline_ok = durability == Durability::Synced && can_block_in_place();
        let pushed = queue::push(shared, records, durability, sync_inline_ok, expected)?;
        match pushed.then {
            Then::Wait => {}
            Then::Notify => shared.wake.notify_one(),
            Then::WriteInline => {
                let end = pushed.seqs.end;
                match try_commit(&self.handle.writer, Inline::Write { end }) {
                    Some(Ok(_)) => return Ok((pushed.seqs, Await::Nothing, pushed.reverts)),
                    Some(Err(e)) => return Err(e),
                    // Someone else is writing (or a segment must be sealed): the writer
                    // thread takes over, and the append waits for it.
                    None => shared.wake.notify_one(),
                }
            }
        }
        Ok((pushed.seqs, pushed.wait, pushed.reverts))
    }

    /// Waits until the writer has written or synced what `wait` names, for records
    /// queued after `reverts` reverts of the queue (see [`Await::met`]).
    async fn wait(shared: Arc<Shared>, wait: Await, reverts: u64) -> Result<()> {
        if wait.met(&shared.progress.snapshot(), reverts) {
            return Ok(());
        }
        let mut waiter = shared.progress.subscribe();
        let progress = waiter
            .wait_for(|p| wait.met(p, reverts) || p.poisoned.is_some() || p.closed)
            .await
            .map_err(|_| Error::Closed)?;
        if wait.met(&progress, reverts) {
            Ok(())
        } else if progress.poisoned.is_some() {
            Err(poisoned_error(progress.poisoned.as_ref()))
        } else {
            Err(Error::Closed)
        }
    }

    /// The fast path of a buffered append of one record, when the log writes buffered
    /// appends before acknowledging them (`max_write_delay` zero): see
    /// [`Inline::Record`] (conditional when `expected` is set). `None`: take the general
    /// path.
    fn append_inline(
        &self,
        record: &Bytes,
        durability: Option<Durability>,
        expected: Option<Option<Seq>>,
    ) -> Option<Result<Seq>> {
        let options = &self.shared().options;
        if durability.unwrap_or(options.durability) != Durability::Buffered
            || !options.max_write_delay.is_zero()
            || record.len() as u64 > options.max_record_size
        {
            return None;
        }
        try_commit(&self.handle.writer, Inline::Record { record, expected })
    }

    /// Queues `records` (see [`enqueue`](Self::enqueue)) and waits for their durability.
    fn append_many(
        &self,
        records: impl ExactSizeIterator<Item = Bytes>,
        durability: Option<Durability>,
        expected: Option<Option<Seq>>,
    ) -> BoxFuture<'static, Result<Range<Seq>>> {
        match self.enqueue(records, durability, expected) {
            Err(e) => Box::pin(futures::future::ready(Err(e))),
            Ok((range, Await::Nothing, _)) => Box::pin(futures::future::ready(Ok(range))),
            Ok((range, Await::SyncInline(end), reverts)) => {
                let shared = Arc::clone(self.shared());
                let writer = Arc::clone(&self.handle.writer);
                Box::pin(async move {
                    let first = range.start;
                    match try_commit(&writer, Inline::Sync { first, end }) {
                        Some(Ok(_)) => {}
                        Some(Err(e)) => return Err(e),
                        None => {
                            // `sync_upto` may already cover `end` (set when the append
                            // was queued): the writer thread must be woken all the same.
                            // Unless a revert came in between: it settles the record
                            // (see `Await::met`), and `end` may be past the log's end.
                            let notify = {
                                let mut tail = shared.tail();
                                tail.queue.reverts == reverts && tail.ask_sync(end, true)
                            };
                            if notify {
                                shared.wake.notify_one();
                            }
                            FileLog::wait(shared, Await::Durable(end), reverts).await?;
                        }
                    }
                    Ok(range)
                })
            }
            Ok((range, wait, reverts)) => {
                let shared = Arc::clone(self.shared());
                Box::pin(async move {
                    FileLog::wait(shared, wait, reverts).await?;
                    Ok(range)
                })
            }
        }
    }
}

impl Log for FileLog {
    /// Appends one record. The record is visible (and `since` advanced) before this
    /// returns; it is on disk according to its durability (see the crate docs).
    ///
    /// # Errors
    /// [`Error::RecordTooLarge`], [`Error::Poisoned`], [`Error::Closed`].
    ///
    /// # Cancel safety
    /// The record is appended when the method is called, before the future is first
    /// polled; dropping the future only stops waiting for its durability.
    fn append_with(
        &self,
        record: Bytes,
        durability: Option<Durability>,
    ) -> BoxFuture<'_, Result<Seq>> {
        if let Some(result) = self.append_inline(&record, durability, None) {
            return Box::pin(futures::future::ready(result));
        }
        let fut = self.append_many(std::iter::once(record), durability, None);
        Box::pin(async move { fut.await.map(|r| r.start) })
    }

    /// Appends a batch with consecutive seqs; after a crash either all of it or none of
    /// it is in the log.
    ///
    /// # Errors
    /// [`Error::RecordTooLarge`] for a record over `max_record_size` or a batch over
    /// 4 GiB (nothing is appended), [`Error::Poisoned`], [`Error::Closed`].
    ///
    /// # Cancel safety
    /// As [`append_with`](Self::append_with).
    fn append_batch_with(
        &self,
        records: Vec<Bytes>,
        durability: Option<Durability>,
    ) -> BoxFuture<'_, Result<Range<Seq>>> {
        self.append_many(records.into_iter(), durability, None)
    }

    /// [`append_batch_with`](Self::append_batch_with) only if the log's last seq is
    /// `expected`. The check is made under the lock where appends get their seqs, so it
    /// costs no system call and no fsync of its own; the batch is then written and
    /// synced like any other, at `durability` (the log's default when `None`).
    ///
    /// ```
    /// use bytes::Bytes;
    /// use flume_core::{Error, Log};
    /// use flumelog_file::{FileLog, FileLogOptions};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> flume_core::Result<()> {
    /// let dir = tempfile::tempdir().unwrap();
    /// let log = FileLog::open(dir.path(), FileLogOptions::default()).await?;
    /// let batch = vec![Bytes::from_static(b"a"), Bytes::from_static(b"b")];
    /// assert_eq!(log.append_batch_if_with(batch.clone(), None, None).await?, 0..2);
    /// let stale = log.append_batch_if_with(batch, None, None).await;
    /// assert!(matches!(stale, Err(Error::Conflict { expected: None, actual: Some(1) })));
    /// assert_eq!(*log.since().borrow(), Some(1));
    /// # log.close().await?;
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// # Errors
    /// [`Error::Conflict`] when the log ends elsewhere (nothing is appended); otherwise
    /// as [`append_batch_with`](Self::append_batch_with) ([`Error::Closed`] before a
    /// conflict).
    ///
    /// # Cancel safety
    /// As [`append_with`](Self::append_with): the check and the append happen when the
    /// method is called.
    fn append_batch_if_with(
        &self,
        records: Vec<Bytes>,
        expected: Option<Seq>,
        durability: Option<Durability>,
    ) -> BoxFuture<'_, Result<Range<Seq>>> {
        if let [record] = records.as_slice() {
            if let Some(result) = self.append_inline(record, durability, Some(expected)) {
                return Box::pin(futures::future::ready(result.map(|seq| seq..seq + 1)));
            }
        }
        self.append_many(records.into_iter(), durability, Some(expected))
    }

    fn get(&self, seq: Seq) -> BoxFuture<'_, Result<Bytes>> {
        Box::pin(futures::future::ready(self.shared().get(seq)))
    }

    fn stream(&self, opts: StreamOptions) -> BoxStream<'static, Result<RawRecord>> {
        let shared = self.shared();
        if !shared.accepting() {
            return futures::stream::once(futures::future::ready(Err(Error::Closed))).boxed();
        }
        flume_core::range_stream(Arc::clone(shared), shared.since_rx.clone(), opts)
    }

    /// Reads `max` records per lock of a segment (see [`flume_core::range_chunks`]).
    fn stream_chunks(
        &self,
        opts: StreamOptions,
        max: usize,
    ) -> BoxStream<'static, Result<Vec<RawRecord>>> {
        let shared = self.shared();
        if !shared.accepting() {
            return futures::stream::once(futures::future::ready(Err(Error::Closed))).boxed();
        }
        flume_core::range_chunks(Arc::clone(shared), shared.since_rx.clone(), opts, max)
    }

    fn since(&self) -> watch::Receiver<Option<Seq>> {
        self.shared().since_rx.clone()
    }

    fn durable(&self) -> watch::Receiver<Option<Seq>> {
        self.shared().durable_rx.clone()
    }

    /// Makes every record appended so far durable (one `fdatasync`, shared with any
    /// concurrent synced appends).
    ///
    /// # Cancel safety
    /// Dropping the future stops waiting; the sync still happens.
    fn sync(&self) -> BoxFuture<'_, Result<()>> {
        let shared = Arc::clone(self.shared());
        let (target, reverts) = {
            let mut tail = shared.tail();
            if let Err(e) = shared.check_open(&tail) {
                return Box::pin(futures::future::ready(Err(e)));
            }
            let target = tail.queue.next_seq;
            let reverts = tail.queue.reverts;
            if shared.progress.durable() < target && tail.ask_sync(target, false) {
                drop(tail);
                shared.wake.notify_one();
            }
            (target, reverts)
        };
        Box::pin(FileLog::wait(shared, Await::Durable(target), reverts))
    }

    /// Drops every record after `last` (every record for `None`), truncating the segment
    /// that holds `last` and deleting later segments. Appends racing with a revert may
    /// land before it (and be reverted) or after it.
    ///
    /// # Errors
    /// [`Error::NotFound`] (with `seq: last`, changing nothing) when `last` is past the
    /// end of the log; [`Error::Poisoned`], [`Error::Closed`], [`Error::Io`].
    ///
    /// # Cancel safety
    /// Dropping the future stops waiting; the revert still happens.
    fn revert(&self, last: Option<Seq>) -> BoxFuture<'_, Result<()>> {
        let shared = Arc::clone(self.shared());
        let keep = last.map_or(0, |l| l.saturating_add(1));
        let (rx, notify) = {
            let mut tail = shared.tail();
            if let Err(e) = shared.check_open(&tail) {
                return Box::pin(futures::future::ready(Err(e)));
            }
            if let Some(seq) = last.filter(|_| keep > tail.queue.next_seq) {
                // As the trait says: a seq the log never assigned (reverting to it
                // would leave a gap).
                return Box::pin(futures::future::ready(Err(Error::NotFound { seq })));
            }
            if keep == tail.queue.next_seq {
                return Box::pin(futures::future::ready(Ok(())));
            }
            let (reply, rx) = oneshot::channel();
            (rx, tail.push_command(Command::Revert { keep, reply }))
        };
        if notify {
            shared.wake.notify_one();
        }
        Box::pin(async move { rx.await.map_err(|_| Error::Closed)? })
    }

    /// Writes and syncs everything, stops the writer thread and unlocks the directory.
    ///
    /// # Errors
    /// [`Error::Closed`] when already closed; [`Error::Poisoned`] when the final write
    /// or sync failed (the log is closed anyway).
    ///
    /// # Cancel safety
    /// Dropping the future stops waiting; the log still closes.
    fn close(&self) -> BoxFuture<'_, Result<()>> {
        let shared = Arc::clone(self.shared());
        if !shared.tail().close(true) {
            return Box::pin(futures::future::ready(Err(Error::Closed)));
        }
        shared.wake.notify_all();
        Box::pin(async move {
            let mut waiter = shared.progress.subscribe();
            let progress = waiter
                .wait_for(|p| p.closed)
                .await
                .map_err(|_| Error::Closed)?;
            match progress.poisoned {
                Some(failure) => Err(failure.to_error()),
                None => Ok(()),
            }
        })
    }
}
