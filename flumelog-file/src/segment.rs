//! One segment file: its mapping, its seq → offset index, and reads from it.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, PoisonError, RwLock};

use bytes::Bytes;
use flume_core::{Error, RawRecord, Result, Seq};
use memmap2::Mmap;

use crate::format;

/// Suffix of segment files: `00000000000000000000.seg`.
pub(crate) const SEGMENT_SUFFIX: &str = ".seg";
/// Suffix of a segment being created (removed at open if a crash left one).
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

    /// Copies out records `first..=last` (all in this segment), oldest first.
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
        // index and skip the checksum. Records are copied out a run of frames at a time
        // (up to SHARED_COPY bytes, one allocation) and handed out as slices of that
        // copy: a record held on to keeps at most that much memory alive.
        const SHARED_COPY: usize = 64 << 10;
        let mut copy = Bytes::new();
        let mut copy_at = 0usize;
        out.reserve((hi - lo + 1) as usize);
        for i in lo..=hi {
            let at = state.offsets[i as usize] as usize;
            let payload = format::verified_payload(data, at)
                .ok_or_else(|| self.damaged(at, self.first_seq + i))?;
            if payload.end > copy_at + copy.len() || payload.start < copy_at {
                let end = (at + SHARED_COPY).max(payload.end);
                let end = match state.offsets.get(hi as usize + 1) {
                    Some(&next) => end.min(next as usize),
                    None => end.min(data.len()),
                }
                .max(payload.end);
                copy = Bytes::copy_from_slice(&data[at..end]);
                copy_at = at;
            }
            let record = copy.slice(payload.start - copy_at..payload.end - copy_at);
            out.push((self.first_seq + i, record));
        }
        Ok(())
    }

    /// The error for an indexed frame whose length runs past the committed data, which
    /// the index rules out unless the file changed under us.
    fn damaged(&self, at: usize, seq: Seq) -> Error {
        Error::Corrupt {
            path: self.path.clone(),
            offset: at as u64,
            reason: format!("record {seq} on read: frame length runs past the end of the segment"),
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
        Ok(Bytes::copy_from_slice(&data[payload]))
    }
}

impl SegState {
    /// The committed bytes.
    pub(crate) fn data(&self) -> &[u8] {
        crate::mmap::committed(&self.map, self.end)
    }
}

/// Creates a new, empty segment atomically: header written to a temporary file, synced,
/// renamed into place, directory synced. Returns the file opened for reading and writing.
pub(crate) fn create_segment(dir: &Path, first_seq: Seq) -> Result<(PathBuf, File)> {
    let path = dir.join(segment_name(first_seq));
    let tmp = dir.join(format!("{first_seq:020}{TMP_SUFFIX}"));
    let io = |p: &Path| {
        let p = p.to_path_buf();
        move |e| Error::io(p, e)
    };
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(&tmp)
        .map_err(io(&tmp))?;
    file.write_all(&format::encode_header(first_seq))
        .map_err(io(&tmp))?;
    file.sync_data().map_err(io(&tmp))?;
    if path.exists() {
        // Never overwrite an existing segment.
        let _ = fs::remove_file(&tmp);
        return Err(Error::Corrupt {
            path,
            offset: 0,
            reason: "a segment with this first seq already exists".into(),
        });
    }
    fs::rename(&tmp, &path).map_err(io(&path))?;
    sync_dir(dir)?;
    Ok((path, file))
}

/// `fsync` on a directory, so that created, renamed and removed entries are durable.
pub(crate) fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| Error::io(dir, e))
}

/// The mapping length for the active segment: room to grow to `segment_size` without
/// remapping, and at least `needed` bytes.
pub(crate) fn active_map_len(segment_size: u64, needed: u64) -> usize {
    const ROUND: u64 = 1 << 16;
    let want = segment_size.max(needed).max(1);
    (want.div_ceil(ROUND) * ROUND) as usize
}
