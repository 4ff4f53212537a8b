//! One round of the writer: frame the records taken from the queue into one buffer,
//! write it (through the mapping, or with `pwrite` in rounds that sync), sync when
//! asked, publish; and [`Writer::commit_inline`], the rounds appenders run on their
//! own thread ([`try_commit`](super::try_commit)).
//!
//! The common case, one buffered record appended while nothing else is queued, takes
//! the shortest path ([`Inline::Record`]): the appender frames the record straight
//! into the mapping under the tail lock, never queuing it. Its `since` moves at once,
//! but its watchers are woken at most once per [`SINCE_INTERVAL`](super::SINCE_INTERVAL):
//! the first append of a burst wakes them itself, the writer thread wakes them for the
//! rest.

use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use flume_core::{Error, Result, Seq};

use super::queue::{Command, State};
use super::{Inline, Writer, AHEAD};
use crate::format;
use crate::mmap;
use crate::progress::Failure;
use crate::segment;

/// What one round of the writer does.
#[derive(Debug)]
pub(super) struct Job {
    pub(super) entries: Vec<(Bytes, bool)>,
    pub(super) first_seq: Seq,
    /// Records below this count must be synced by the end of the round.
    pub(super) sync_upto: u64,
    /// Synced appends this round's fdatasync serves (the group's size).
    pub(super) sync_asks: u64,
    pub(super) commands: Vec<Command>,
    pub(super) state: State,
}

impl Writer {
    /// See [`Inline`] and [`try_commit`](super::try_commit); called with the writer
    /// lock held.
    pub(super) fn commit_inline(&mut self, ask: Inline<'_>) -> Option<Result<Seq>> {
        let progress = &self.shared.progress;
        if progress.closed() {
            // Closed (and trimmed) already: write nothing more.
            return None;
        }
        let (mut job, end) = match ask {
            Inline::Record { record, expected } => return self.append_one(record, expected),
            Inline::Write { end } => {
                if progress.written() >= end {
                    return Some(Ok(end - 1));
                }
                let mut tail = self.shared.tail();
                if progress.poisoned().is_some() || !tail.queue.inline_ok() {
                    return None;
                }
                let bytes: u64 = tail
                    .queue
                    .pending
                    .iter()
                    .map(|(b, _)| format::framed_len(b.len()) as u64)
                    .sum();
                if self.active.count > 0
                    && self.active.len + bytes > self.shared.options.segment_size
                {
                    // Sealing a segment takes an fsync: the writer thread's job.
                    return None;
                }
                let mut entries = Vec::new();
                let first_seq = tail.queue.take(&mut entries);
                let job = Job {
                    entries,
                    first_seq,
                    sync_upto: 0,
                    sync_asks: 0,
                    commands: Vec::new(),
                    state: State::Open,
                };
                (job, end)
            }
            Inline::Sync { first, end } => {
                if progress.durable() >= end {
                    return Some(Ok(end - 1));
                }
                let mut tail = self.shared.tail();
                if progress.poisoned().is_some()
                    || !tail.queue.inline_ok()
                    || tail.queue.pending_first != first
                    || tail.queue.next_seq != end
                    || !tail.schedule.groups_of_one()
                {
                    // Other appends are queued with this one: the writer thread commits
                    // them together (group commit).
                    return None;
                }
                tail.schedule.ask_sync(end, false);
                let mut entries = Vec::new();
                let first_seq = tail.queue.take(&mut entries);
                let job = Job {
                    entries,
                    first_seq,
                    sync_upto: tail.schedule.sync_upto(),
                    sync_asks: 1,
                    commands: Vec::new(),
                    state: State::Open,
                };
                (job, end)
            }
        };
        if let Err(reason) = self.execute(&mut job) {
            self.poison(reason);
            return Some(Err(self.poisoned_error()));
        }
        let progress = &self.shared.progress;
        let done = match ask {
            Inline::Sync { .. } => progress.durable() >= end,
            _ => progress.written() >= end,
        };
        done.then_some(Ok(end - 1))
    }

    /// [`Inline::Record`]: when nothing else is queued and the record fits the active
    /// segment's reserved, mapped space, it is framed straight into the mapping (no
    /// system call) and published to readers, all under the tail lock, so that no
    /// reader can see its seq before its bytes. A conditional append (`expected`) is
    /// compared with the tail under that same lock.
    fn append_one(&mut self, record: &Bytes, expected: Option<Option<Seq>>) -> Option<Result<Seq>> {
        let at = self.active.len;
        let end = at + format::framed_len(record.len()) as u64;
        if self.active.count > 0 && end > self.shared.options.segment_size {
            // Sealing a segment takes an fsync: the writer thread's job.
            return None;
        }
        match self.reserve_for(end) {
            Ok(true) => {}
            Ok(false) => return None,
            Err(reason) => {
                self.poison(reason);
                return Some(Err(self.poisoned_error()));
            }
        }
        let mut guard = self.shared.tail();
        let tail = &mut *guard;
        if self.shared.progress.poisoned().is_some()
            || !tail.queue.inline_ok()
            || !tail.queue.pending.is_empty()
        {
            return None;
        }
        let actual = tail.queue.next_seq.checked_sub(1);
        if let Some(expected) = expected.filter(|e| *e != actual) {
            return Some(Err(Error::Conflict { expected, actual }));
        }
        let map = self.active.wmap.as_deref()?;
        self.buf.clear();
        format::encode_frame(&mut self.buf, record, false);
        if let Err(e) = self.active.io.write_mapped(map, &self.buf, at) {
            drop(guard);
            self.poison(Failure::io("write to", &self.active.seg.path, e));
            return Some(Err(self.poisoned_error()));
        }
        // The next record goes right after this one: have its cache lines ready.
        map.prefetch(end, 512);
        self.active.len = end;
        self.active.zeroed = self.active.zeroed.max(end);
        self.active.count += 1;
        {
            let mut state = self.active.seg.write_state();
            state.offsets.push(at as u32);
            state.end = end;
        }
        let seq = tail.queue.next_seq;
        tail.queue.next_seq = seq + 1;
        tail.queue.pending_first = seq + 1;
        self.shared.progress.set_written(seq + 1);
        // The writer thread, put on duty for `since`, must be nudged if it is idle.
        let mut wake = tail.since.move_fast(seq) && tail.schedule.idle() && tail.schedule.nudge();
        if let Some(ahead) = &mut tail.ahead {
            let want = (end + AHEAD / 2).min(self.active.file_len);
            if !ahead.requested && (ahead.populated < want || end >= ahead.dropped + AHEAD) {
                ahead.requested = true;
                ahead.end = end;
                ahead.reserved = self.active.file_len;
                if tail.schedule.asleep() {
                    tail.schedule.nudge();
                    wake = true;
                }
            }
        }
        drop(guard);
        if wake {
            self.shared.wake.notify_one();
        }
        Some(Ok(seq))
    }

    /// Writes the job's records, syncs if asked, publishes, then carries out the job's
    /// commands.
    pub(super) fn execute(&mut self, job: &mut Job) -> Result<(), Failure> {
        if !job.entries.is_empty() {
            let started = Instant::now();
            let bytes_before = self.active.len;
            self.syncing = job.sync_upto > self.shared.progress.durable();
            let outcome = self.write_entries(&job.entries, job.first_seq);
            self.syncing = false;
            outcome?;
            // Readers find them in the segments now.
            {
                let mut tail = self.shared.tail();
                tail.queue.written(job.entries.len());
                tail.since.announce();
            }
            self.shared.progress.ring();
            tracing::trace!(
                records = job.entries.len(),
                bytes = self.active.len.saturating_sub(bytes_before),
                elapsed_us = started.elapsed().as_micros() as u64,
                "flumelog-file: flushed"
            );
        }
        let progress = &self.shared.progress;
        let written = progress.written();
        let durable = progress.durable();
        let must_sync =
            job.sync_upto > durable || matches!(job.state, State::Closing { sync: true });
        if must_sync && written > durable {
            let started = Instant::now();
            self.active
                .io
                .sync_data()
                .map_err(|e| Failure::io("fdatasync of", &self.active.seg.path, e))?;
            self.shared
                .tail()
                .schedule
                .synced(job.sync_asks, started.elapsed());
            // `durable` first: an appender woken by the ring finds it up to date.
            self.shared.progress.set_durable(written);
            tracing::trace!(
                durable = written,
                elapsed_us = started.elapsed().as_micros() as u64,
                "flumelog-file: synced"
            );
        } else if must_sync {
            // Nothing unsynced (or nothing at all): the request is already met.
            progress.set_durable(durable.max(written.min(job.sync_upto)));
        }
        for command in job.commands.drain(..) {
            match command {
                Command::Revert { keep, reply } => {
                    let result = self.revert(keep);
                    let failed = result.as_ref().err().map(Failure::from_error);
                    let _ = reply.send(result);
                    if let Some(reason) = failed {
                        return Err(reason);
                    }
                }
            }
        }
        Ok(())
    }

    /// Frames and writes `entries` (whole batches), rotating segments as needed, and
    /// publishes them to readers through the segment indexes and `written`.
    pub(super) fn write_entries(
        &mut self,
        entries: &[(Bytes, bool)],
        first_seq: Seq,
    ) -> Result<(), Failure> {
        let segment_size = self.shared.options.segment_size;
        self.buf.clear();
        self.offsets.clear();
        let mut seq = first_seq;
        let mut i = 0;
        while i < entries.len() {
            // The batch starting at `i` ends at the first entry without "more".
            let mut j = i;
            let mut size = 0u64;
            loop {
                size += format::framed_len(entries[j].0.len()) as u64;
                if !entries[j].1 || j + 1 == entries.len() {
                    break;
                }
                j += 1;
            }
            let pos = self.active.len + self.buf.len() as u64;
            let has_records = self.active.count > 0 || !self.offsets.is_empty();
            if has_records && pos + size > segment_size {
                self.write_buffer(seq)?;
                self.rotate(seq)?;
            }
            for (payload, more) in &entries[i..=j] {
                let at = self.active.len + self.buf.len() as u64;
                self.offsets.push(at as u32);
                format::encode_frame(&mut self.buf, payload, *more);
                seq += 1;
            }
            i = j + 1;
        }
        self.write_buffer(seq)?;
        if self.buf.capacity() > 16 << 20 {
            self.buf = Vec::new();
        }
        Ok(())
    }

    /// Writes the buffer to the active segment and publishes its records; `next_seq` is
    /// the seq after the last buffered record.
    fn write_buffer(&mut self, next_seq: Seq) -> Result<(), Failure> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let seg = Arc::clone(&self.active.seg);
        let path = &seg.path;
        let at = self.active.len;
        let new_len = at + self.buf.len() as u64;
        // Rounds that sync write as they always did; the others copy into the mapping.
        let mapped = !self.syncing && self.reserve_for(new_len)?;
        match self.active.wmap.as_mut() {
            Some(map) if mapped => self.active.io.write_mapped(map, &self.buf, at),
            _ => self.active.io.write_all_at(&self.buf, at),
        }
        .map_err(|e| Failure::io("write to", path, e))?;
        self.active.file_len = self.active.file_len.max(new_len);
        self.active.zeroed = self.active.zeroed.max(new_len);
        self.preallocate(new_len)?;
        let new_map = if new_len as usize > self.active.map_len {
            let map_len = segment::active_map_len(
                self.shared.options.segment_size,
                new_len.max(self.active.map_len as u64 * 2),
            );
            let map = mmap::map(self.active.io.file(), map_len)
                .map_err(|e| Failure::io("mapping", path, e))?;
            self.active.map_len = map_len;
            Some(Arc::new(map))
        } else {
            None
        };
        {
            let mut state = self.active.seg.write_state();
            if let Some(map) = new_map {
                state.map = map;
            }
            state.offsets.extend_from_slice(&self.offsets);
            state.end = new_len;
        }
        self.active.count += self.offsets.len() as u64;
        self.active.len = new_len;
        self.shared.progress.set_written(next_seq);
        self.buf.clear();
        self.offsets.clear();
        Ok(())
    }

    /// Writes zeros ahead of the data once it reached the preallocated space, so that
    /// the next writes (and their fdatasyncs) do not change the file's size. Only in
    /// rounds that sync: bulk writes do not pay for zeros they overwrite. Never
    /// past the segment size (a sealed segment is trimmed anyway).
    ///
    /// Zeros are also written over space reserved for mapped writes (allocated but
    /// never written: an "unwritten extent"), so that the fdatasyncs of synced rounds
    /// there do not each have an extent conversion to commit.
    fn preallocate(&mut self, data_end: u64) -> Result<(), Failure> {
        static ZEROS: [u8; 64 << 10] = [0; 64 << 10];
        let step = self.shared.options.preallocate;
        if step == 0 || !self.syncing || data_end < self.active.zeroed {
            return Ok(());
        }
        let target = data_end
            .saturating_add(step)
            .min(self.shared.options.segment_size);
        let mut at = self.active.zeroed;
        while at < target {
            let n = (target - at).min(ZEROS.len() as u64) as usize;
            self.active
                .io
                .write_all_at(&ZEROS[..n], at)
                .map_err(|e| Failure::io("preallocating", &self.active.seg.path, e))?;
            at += n as u64;
            self.active.zeroed = at;
            self.active.file_len = self.active.file_len.max(at);
        }
        Ok(())
    }

    /// Makes sure bytes up to `end` of the active segment can be written through the
    /// mapping: within the mapping, and within the file, in space that has its blocks.
    /// Reserves [`FileLogOptions::reserve`](crate::FileLogOptions::reserve) bytes ahead (never past
    /// the segment size, and at least up to `end`) when `end` is past the file's end.
    /// `Ok(false)`: write with `pwrite` instead (mapped writes are off, the write does
    /// not fit the mapping, or the file system has no `fallocate`, which turns mapped
    /// writes off). A failed reservation is a failed write: it poisons the log.
    fn reserve_for(&mut self, end: u64) -> Result<bool, Failure> {
        let Some(map) = &self.active.wmap else {
            return Ok(false);
        };
        if end > map.len() || end > self.active.map_len as u64 {
            return Ok(false);
        }
        let from = self.active.file_len;
        let step = self.shared.options.reserve;
        let limit = self.shared.options.segment_size.min(map.len());
        if end <= from {
            // Reserve the next step once half of this one is used, so that the writer
            // thread can fault its pages in before the appends get there.
            let early =
                !self.active.reserve_failed && from < limit && end.saturating_add(step / 2) > from;
            if early {
                let target = from.saturating_add(step).min(limit);
                match self.active.io.reserve(from, target - from) {
                    Ok(()) => self.active.file_len = target,
                    Err(e) => {
                        // Not fatal yet: the space reserved suffices for now. Reserve
                        // only on demand from here on (and fail then, if it fails).
                        tracing::debug!(
                            segment = %self.active.seg.path.display(),
                            error = %e,
                            "flumelog-file: could not reserve space ahead"
                        );
                        self.active.reserve_failed = true;
                    }
                }
            }
            return Ok(true);
        }
        let mut target = end.max(from.saturating_add(step).min(limit));
        let path = &self.active.seg.path;
        let mut result = self.active.io.reserve(from, target - from);
        if target > end && matches!(&result, Err(e) if e.raw_os_error() == Some(libc::ENOSPC)) {
            // No room for a whole step: reserve just what this write needs.
            target = end;
            result = self.active.io.reserve(from, target - from);
        }
        match result {
            Ok(()) => {
                self.active.file_len = target;
                tracing::trace!(
                    segment = %path.display(),
                    from,
                    to = target,
                    "flumelog-file: reserved space for mapped writes"
                );
                Ok(true)
            }
            Err(e)
                if matches!(
                    e.raw_os_error(),
                    Some(libc::EOPNOTSUPP | libc::ENOSYS | libc::EINVAL)
                ) =>
            {
                // No `fallocate` here (the file length is unchanged): write as before.
                tracing::debug!(
                    segment = %path.display(),
                    error = %e,
                    "flumelog-file: cannot reserve space; writing with pwrite"
                );
                self.active.wmap = None;
                self.map_writes = false;
                self.set_ahead();
                Ok(false)
            }
            Err(e) => Err(Failure::io("reserving space in", path, e)),
        }
    }
}
