//! One segment file: its mapping, its seq → offset index, and reads from it.

use std::fs::File;
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, PoisonError, RwLock};

use bytes::Bytes;
use flume_core::durable::TempFile;
use flume_core::{Error, RawRecord, Result, Seq};
use memmap2::Mmap;

use crate::format;

/// Suffix of segment files: `00000000000000000000.seg`.
pub(crate) const SEGMENT_SUFFIX: &str = ".seg";
/// Suffix of a segment being created or rewritten (`durable::TempFile`'s name for it;
/// removed at open if a crash left one).
pub(crate) const TMP_SUFFIX: &str = ".seg.tmp";

/// The file name of the segment whose first record has `first_seq`.
pub(crate) fn segment_name(first_seq: Seq) -> String {
    format!("{first_seq:020}{SEGMENT_SUFFIX}")
}

/// The first seq encoded in a segment file name, if it is one.
pub(crate) fn parse_segment_name(name: &str) -> Option<Seq> {
    let digits = name.strip_suffix(SEGMENT_SUFFIX)?;
    if digits.len() != 20 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// A segment: immutable first seq and path, and a lock-protected read state that only
/// the writer thread changes.
#[derive(Debug)]
pub(crate) struct Segment {
    pub(crate) first_seq: Seq,
    pub(crate) path: PathBuf,
    state: RwLock<SegState>,
}

/// What readers need: the mapping, the offsets of the records, the committed end.
#[derive(Debug)]
pub(crate) struct SegState {
    pub(crate) map: Arc<Mmap>,
    /// Byte offset of each record's frame; record `first_seq + i` is at `offsets[i]`.
    pub(crate) offsets: Vec<u32>,
    /// End of the last committed frame; readers never look past it.
    pub(crate) end: u64,
}

impl Segment {
    pub(crate) fn new(first_seq: Seq, path: PathBuf, state: SegState) -> Self {
        Segment {
            first_seq,
            path,
            state: RwLock::new(state),
        }
    }

    pub(crate) fn read_state(&self) -> std::sync::RwLockReadGuard<'_, SegState> {
        self.state.read().unwrap_or_else(PoisonError::into_inner)
    }

    pub(crate) fn write_state(&self) -> std::sync::RwLockWriteGuard<'_, SegState> {
        self.state.write().unwrap_or_else(PoisonError::into_inner)
    }

    /// Number of records in the segment.
    pub(crate) fn count(&self) -> u64 {
        self.read_state().offsets.len() as u64
    }

    /// Records `first..=last` (all in this segment), oldest first.
    pub(crate) fn read_into(&self, first: Seq, last: Seq, out: &mut Vec<RawRecord>) -> Result<()> {
        let state = self.read_state();
        let count = state.offsets.len() as u64;
        let lo = first
            .checked_sub(self.first_seq)
            .filter(|&i| i < count)
            .ok_or(Error::NotFound { seq: first })?;
        let hi = last
            .checked_sub(self.first_seq)
            .filter(|&i| i < count)
            .ok_or(Error::NotFound { seq: last })?;
        let data = state.data();
        // Every indexed frame was verified when the log was opened or when this process
        // wrote it (and the directory is locked against other writers): reads trust the
        // index and skip the checksum. Records are slices of the mapping, not copies: one
        // shared owner for the whole range (one allocation), one slice per record.
        let start = state.offsets[lo as usize] as usize;
        let end = match state.offsets.get(hi as usize + 1) {
            Some(&next) => next as usize,
            None => data.len(),
        };
        let all = crate::mmap::slice(&state.map, start..end);
        out.reserve((hi - lo + 1) as usize);
        for i in lo..=hi {
            let at = state.offsets[i as usize] as usize;
            let payload = format::verified_payload(data, at)
                .ok_or_else(|| self.damaged(at, self.first_seq + i))?;
            out.push((
                self.first_seq + i,
                all.slice(payload.start - start..payload.end - start),
            ));
        }
        Ok(())
    }

    /// The error for an indexed frame whose length runs past the committed data, which
    /// the index rules out unless the file changed under us.
    fn damaged(&self, at: usize, seq: Seq) -> Error {
        Error::Corrupt {
            path: self.path.clone(),
            offset: at as u64,
            reason: format!(
                "record {seq} on read: frame length runs past the end of the segment (the \
                 file changed while the log was open; close the log, then {})",
                crate::recovery::REPAIR_ADVICE.trim_start_matches("to open the log, ")
            ),
        }
    }

    /// One record.
    pub(crate) fn read(&self, seq: Seq) -> Result<Bytes> {
        let state = self.read_state();
        let at = seq
            .checked_sub(self.first_seq)
            .and_then(|i| state.offsets.get(i as usize))
            .ok_or(Error::NotFound { seq })?;
        let at = *at as usize;
        let data = state.data();
        let payload = format::verified_payload(data, at).ok_or_else(|| self.damaged(at, seq))?;
        Ok(crate::mmap::slice(&state.map, payload))
    }
}

impl SegState {
    /// The committed bytes.
    pub(crate) fn data(&self) -> &[u8] {
        crate::mmap::committed(&self.map, self.end)
    }
}

/// Replaces the segment file at `path` (first record `first_seq`, in `dir`) with one
/// holding `data` (its kept prefix), with `patch` (an offset and 8 bytes) written over it:
/// written to a temporary file, synced, renamed over the old file, directory synced
/// (`durable::TempFile`). A crash leaves either the old file or the new one (and perhaps
/// a temporary file, removed at open). The old file is never modified, so mappings of it
/// stay valid. Returns the new file, opened for reading and writing.
pub(crate) fn rewrite_segment(
    dir: &Path,
    first_seq: Seq,
    path: &Path,
    data: &[u8],
    patch: Option<(u64, [u8; 8])>,
) -> Result<File> {
    debug_assert_eq!(path, dir.join(segment_name(first_seq)));
    let mut tmp = TempFile::create(path)?;
    let written = tmp.file().write_all(data).and_then(|()| match patch {
        Some((at, bytes)) => tmp.file().write_all_at(&bytes, at),
        None => Ok(()),
    });
    written.map_err(|e| Error::io(tmp.tmp_path(), e))?;
    tmp.persist()
}

/// Creates a new, empty segment atomically: header written to a temporary file, synced,
/// renamed into place, directory synced. Returns the file opened for reading and writing.
pub(crate) fn create_segment(dir: &Path, first_seq: Seq) -> Result<(PathBuf, File)> {
    let path = dir.join(segment_name(first_seq));
    let mut tmp = TempFile::create(&path)?;
    tmp.write_all(&format::encode_header(first_seq))
        .map_err(|e| Error::io(tmp.tmp_path(), e))?;
    if path.exists() {
        // Never overwrite an existing segment.
        let _ = tmp.discard();
        return Err(Error::Corrupt {
            path,
            offset: 0,
            reason: format!(
                "a segment with this first seq already exists (a file appeared in the \
                 directory of an open log); {}",
                crate::recovery::REPAIR_ADVICE
            ),
        });
    }
    let file = tmp.persist()?;
    Ok((path, file))
}

/// The mapping length for the active segment: room to grow to `segment_size` without
/// remapping, and at least `needed` bytes.
pub(crate) fn active_map_len(segment_size: u64, needed: u64) -> usize {
    const ROUND: u64 = 1 << 16;
    let want = segment_size.max(needed).max(1);
    (want.div_ceil(ROUND) * ROUND) as usize
}
