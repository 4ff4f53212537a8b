//! Whole segment files: sealing the active segment and starting the next (rotation),
//! cutting the preallocated zeros after its data (trim), and dropping records from
//! the end of the log (revert). All of it runs with the writer lock held and nothing
//! else: the fsyncs here never hold a lock that appenders or readers need.

use std::fs;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use flume_core::{Error, Result, Seq};

use super::{Active, Writer};
use crate::format::{self, HEADER_LEN};
use crate::mmap;
use crate::progress::Failure;
use crate::segment::{self, SegState, Segment};
use crate::tailmark::{self, TailMark};

impl Writer {
    /// Cuts the preallocated zeros after the active segment's data.
    pub(super) fn trim(&mut self) -> Result<(), Failure> {
        if self.active.file_len > self.active.len {
            self.active
                .io
                .set_len(self.active.len)
                .map_err(|e| Failure::io("trimming", &self.active.seg.path, e))?;
            self.active.file_len = self.active.len;
            self.active.zeroed = self.active.len;
        }
        Ok(())
    }

    /// Seals the active segment (synced, so that only the last segment can ever have a
    /// torn tail) and starts a new one whose first record is `first_seq`.
    pub(super) fn rotate(&mut self, first_seq: Seq) -> Result<(), Failure> {
        let started = Instant::now();
        self.trim()?;
        let old = &self.active.seg.path;
        self.active
            .io
            .sync_data()
            .map_err(|e| Failure::io("fdatasync of", old, e))?;
        self.shared.progress.set_durable(first_seq);
        let (path, file) = segment::create_segment(&self.shared.dir, first_seq)
            .map_err(|e| Failure::from_error(&e))?;
        // The marker names the new segment before any record goes into it: a log whose
        // last segment is deleted later on is then detected at open.
        tailmark::write(
            &self.shared.dir,
            TailMark {
                segment: first_seq,
                durable_len: HEADER_LEN as u64,
            },
        )
        .map_err(|e| Failure::from_error(&e))?;
        let map_len = segment::active_map_len(self.shared.options.segment_size, HEADER_LEN as u64);
        let map = mmap::map(&file, map_len).map_err(|e| Failure::io("mapping", &path, e))?;
        let seg = Arc::new(Segment::new(
            first_seq,
            path.clone(),
            SegState {
                map: Arc::new(map),
                offsets: Vec::new(),
                end: HEADER_LEN as u64,
            },
        ));
        self.shared.segments_mut().push(Arc::clone(&seg));
        self.active = Active::new(
            seg,
            file,
            &self.shared.options,
            HEADER_LEN as u64,
            HEADER_LEN as u64,
            0,
            map_len,
            self.map_writes,
        )
        .map_err(|e| Failure::io("mapping", &path, e))?;
        self.set_ahead();
        tracing::debug!(
            segment = %path.display(),
            first_seq,
            elapsed_us = started.elapsed().as_micros() as u64,
            "flumelog-file: started a new segment"
        );
        Ok(())
    }

    /// Drops every record from `keep` on.
    ///
    /// First, under the tail lock, the queue goes back to `keep`: from then on appends
    /// get seqs from `keep` on and wait in the queue (readers find them there), while
    /// readers of the kept records keep reading the segments. The writer writes
    /// nothing into the segments meanwhile: it is busy here, and appenders never write
    /// without the writer lock. Then, with no lock but the writer lock, the files are
    /// changed and synced; last, the kept records are marked durable.
    pub(super) fn revert(&mut self, keep: u64) -> Result<()> {
        #[cfg(test)]
        self.pause(Step::Start);
        let Some(reverts) = self.lower_queue(keep)? else {
            return Ok(());
        };
        #[cfg(test)]
        self.pause(Step::Files);
        let io_err = |p: &PathBuf| {
            let p = p.clone();
            move |e| Error::io(p, e)
        };
        // Remove whole segments after the one that will hold the new tail, newest first,
        // so that a crash midway leaves a prefix of the log. The tail marker first names
        // that segment, with nothing of it marked durable but its header (it is about
        // to be cut), so that it never names a removed segment or cut bytes.
        let (removed, target): (Vec<Arc<Segment>>, Arc<Segment>) = {
            let mut segments = self.shared.segments_mut();
            let keep_from = segments
                .iter()
                .position(|s| s.first_seq >= keep)
                .unwrap_or(segments.len())
                .max(1);
            let removed = segments.split_off(keep_from);
            let target = segments
                .last()
                .cloned()
                .ok_or(Error::Unsupported("revert of a log without segments"))?;
            (removed, target)
        };
        tailmark::write(
            &self.shared.dir,
            TailMark {
                segment: target.first_seq,
                durable_len: HEADER_LEN as u64,
            },
        )?;
        for seg in removed.iter().rev() {
            fs::remove_file(&seg.path).map_err(io_err(&seg.path))?;
        }
        // The kept prefix is copied to a new file that replaces the segment (rename): the
        // mapped file is never truncated or rewritten, so records read before the revert
        // (slices of the old mapping) stay valid for as long as they are held.
        let keep_here = (keep - target.first_seq) as usize;
        let (old_map, new_len, end_batch) = {
            let state = target.read_state();
            let new_len = match state.offsets.get(keep_here) {
                Some(&at) => u64::from(at),
                None => state.end,
            };
            // Cutting a batch short: its new last record must end the batch, or recovery
            // would take the kept part for an unfinished batch.
            let end_batch = keep_here
                .checked_sub(1)
                .and_then(|k| state.offsets.get(k))
                .and_then(|&at| {
                    let header = format::end_batch_header(state.data(), at as usize)?;
                    Some((u64::from(at), header))
                });
            (Arc::clone(&state.map), new_len, end_batch)
        };
        let file = segment::rewrite_segment(
            &self.shared.dir,
            target.first_seq,
            &target.path,
            &mmap::committed(&old_map, new_len)[..new_len as usize],
            end_batch,
        )?;
        drop(old_map);
        // The new file and the directory were synced: the kept bytes are durable.
        tailmark::write(
            &self.shared.dir,
            TailMark {
                segment: target.first_seq,
                durable_len: new_len,
            },
        )?;
        let map_len = segment::active_map_len(self.shared.options.segment_size, new_len);
        let map = mmap::map(&file, map_len).map_err(io_err(&target.path))?;
        {
            let mut state = target.write_state();
            state.map = Arc::new(map);
            state.offsets.truncate(keep_here);
            state.end = new_len;
        }
        self.active = Active::new(
            Arc::clone(&target),
            file,
            &self.shared.options,
            new_len,
            new_len,
            keep_here as u64,
            map_len,
            self.map_writes,
        )
        .map_err(io_err(&target.path))?;
        self.set_ahead();
        // Everything kept is durable: the earlier segments were synced when sealed, the
        // new file and the directory just now. Appends queued before the revert are
        // settled (kept and durable, or dropped): their waiters stop waiting.
        self.shared.progress.set_reverts(reverts);
        self.shared.progress.set_durable(keep);
        tracing::info!(
            kept = keep,
            segments_removed = removed.len(),
            "flumelog-file: reverted"
        );
        Ok(())
    }

    /// The first step of [`revert`](Self::revert): writes what was queued before it
    /// (appends may have raced it), then, under the same tail lock that finds the queue
    /// empty, lowers the queue, `since`, `written` and `durable` to `keep` records.
    /// Returns the revert's number ([`Queue::reverts`](super::queue::Queue::reverts)),
    /// or `None` when there is nothing to revert (the log holds no more than `keep`
    /// records).
    fn lower_queue(&mut self, keep: u64) -> Result<Option<u64>> {
        let mut entries = Vec::new();
        loop {
            let mut tail = self.shared.tail();
            if tail.queue.pending.is_empty() {
                if keep >= tail.queue.next_seq {
                    return Ok(None);
                }
                tail.queue.reverts += 1;
                tail.queue.next_seq = keep;
                tail.queue.pending_first = keep;
                tail.queue.pending_bytes = 0;
                tail.schedule.revert(keep);
                // Kept ready again for the new active segment once it is there.
                tail.ahead = None;
                tail.since.reset(keep.checked_sub(1));
                let progress = &self.shared.progress;
                progress.set_written(keep);
                if progress.durable() > keep {
                    progress.set_durable(keep);
                }
                return Ok(Some(tail.queue.reverts));
            }
            entries.clear();
            let first = tail.queue.take(&mut entries);
            drop(tail);
            self.write_entries(&entries, first)
                .map_err(|f| f.to_error())?;
            self.shared.tail().queue.written(entries.len());
            self.shared.progress.ring();
        }
    }
}

/// Test builds: stops a revert at step `at` (see [`Writer::revert_pause`]): tells
/// `reached`, then waits for `release`.
#[cfg(test)]
#[derive(Debug)]
pub(crate) struct Pause {
    pub(crate) at: Step,
    pub(crate) reached: std::sync::mpsc::Sender<()>,
    pub(crate) release: std::sync::mpsc::Receiver<()>,
}

/// Where a revert stops in tests.
#[cfg(test)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Step {
    /// Before it writes what was queued and lowers the queue.
    Start,
    /// Once it lowered the queue, before it touches a file.
    Files,
}

#[cfg(test)]
impl Writer {
    fn pause(&self, at: Step) {
        if let Some(pause) = self.revert_pause.as_ref().filter(|p| p.at == at) {
            let _ = pause.reached.send(());
            let _ = pause.release.recv();
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::mpsc;
    use std::time::Duration;

    use bytes::Bytes;
    use flume_core::{Durability, Error, Log};

    use super::{Pause, Step};
    use crate::writer::lock;
    use crate::{FileLog, FileLogOptions};

    fn record(i: u64) -> Bytes {
        Bytes::from(format!("record {i} ").repeat(20))
    }

    /// A revert rewrites a segment and syncs it and the directory, holding the writer
    /// lock only: while it is stopped there (for as long as the test likes, so a slow
    /// machine cannot make this pass or fail), an append on another thread gets its
    /// seq, is visible and returns, and `since`, `durable` and `get` answer. With the
    /// tail lock held across the fsyncs (as it once was), the append would block until
    /// the revert ends, and the test would fail after its ten seconds.
    #[test]
    fn appends_and_reads_are_not_blocked_behind_a_revert() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let dir = tempfile::tempdir().unwrap();
        // A bulk log: buffered appends return once queued (the writer is busy).
        let options = FileLogOptions::default()
            .segment_size(4096)
            .max_write_delay(Duration::from_secs(1));
        let log = FileLog::open_blocking(dir.path(), options.clone()).unwrap();
        for i in 0..100 {
            rt.block_on(log.append(record(i))).unwrap();
        }
        rt.block_on(log.sync()).unwrap();
        assert!(
            log.segments().len() > 2,
            "the revert removes whole segments too"
        );
        let (reached_tx, reached) = mpsc::channel();
        let (release, release_rx) = mpsc::channel();
        lock(log.writer()).revert_pause = Some(Pause {
            at: Step::Files,
            reached: reached_tx,
            release: release_rx,
        });

        let revert = log.revert(Some(9));
        reached
            .recv_timeout(Duration::from_secs(60))
            .expect("the revert started");
        let (done_tx, done) = mpsc::channel();
        std::thread::spawn({
            let log = log.clone();
            move || {
                let seq = futures::executor::block_on(log.append(record(1000)));
                let _ = done_tx.send(seq);
            }
        });
        let seq = done
            .recv_timeout(Duration::from_secs(10))
            .expect("an append returned while the revert was syncing");
        assert_eq!(seq.unwrap(), 10, "the append comes after the kept records");
        assert_eq!(*log.since().borrow(), Some(10));
        // Synced before; what is kept stays durable, the rest is gone.
        assert_eq!(*log.durable().borrow(), Some(9));
        assert_eq!(rt.block_on(log.get(10)).unwrap(), record(1000));
        assert_eq!(rt.block_on(log.get(9)).unwrap(), record(9));
        assert!(matches!(
            rt.block_on(log.get(11)),
            Err(Error::NotFound { seq: 11 })
        ));

        release.send(()).unwrap();
        rt.block_on(revert).unwrap();
        lock(log.writer()).revert_pause = None;
        assert_eq!(*log.durable().borrow(), Some(9));
        rt.block_on(log.close()).unwrap();

        let log = FileLog::open_blocking(dir.path(), options).unwrap();
        assert_eq!(*log.since().borrow(), Some(10));
        assert_eq!(log.segments().len(), 1);
        for i in 0..10 {
            assert_eq!(rt.block_on(log.get(i)).unwrap(), record(i));
        }
        assert_eq!(rt.block_on(log.get(10)).unwrap(), record(1000));
    }

    /// A synced append queued after the writer took a revert on, but before the revert
    /// lowered the queue, is written, then reverted. Its waiter returns once the revert
    /// finished, instead of waiting for a sync of records that no longer exist.
    #[test]
    fn a_synced_append_reverted_by_a_racing_revert_returns() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let log = FileLog::open_blocking(dir.path(), FileLogOptions::default()).unwrap();
        for i in 0..10 {
            rt.block_on(log.append(record(i))).unwrap();
        }
        rt.block_on(log.sync()).unwrap();
        let (reached_tx, reached) = mpsc::channel();
        let (release, release_rx) = mpsc::channel();
        lock(log.writer()).revert_pause = Some(Pause {
            at: Step::Start,
            reached: reached_tx,
            release: release_rx,
        });

        let revert = log.revert(Some(3));
        reached
            .recv_timeout(Duration::from_secs(60))
            .expect("the revert started");
        // Queued (on a current-thread runtime: for the writer thread to sync).
        let append = log.append_with(record(99), Some(Durability::Synced));
        assert_eq!(*log.since().borrow(), Some(10));
        release.send(()).unwrap();
        rt.block_on(revert).unwrap();
        let seq = rt
            .block_on(async { tokio::time::timeout(Duration::from_secs(10), append).await })
            .expect("the reverted append's waiter returned");
        assert_eq!(seq.unwrap(), 10);
        lock(log.writer()).revert_pause = None;
        assert_eq!(*log.since().borrow(), Some(3));
        assert_eq!(*log.durable().borrow(), Some(3));
        for seq in [4, 10] {
            assert!(matches!(
                rt.block_on(log.get(seq)),
                Err(Error::NotFound { seq: s }) if s == seq
            ));
        }
        // The log goes on from the kept records.
        let seq = rt
            .block_on(log.append_with(record(100), Some(Durability::Synced)))
            .unwrap();
        assert_eq!(seq, 4);
        assert_eq!(*log.durable().borrow(), Some(4));
        rt.block_on(log.close()).unwrap();
    }
}
