//! Opening a directory: the lock, the segment list, the scan that rebuilds each
//! segment's index, cutting a torn tail, and `repair`.

use std::fs::{self, File, OpenOptions};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use flume_core::{Error, Result, Seq};

use crate::format::{self, HEADER_LEN};
use crate::mmap;
use crate::segment::{self, SegState, Segment, TMP_SUFFIX};
use crate::Options;

/// Name of the lock file inside a log directory.
pub(crate) const LOCK_FILE: &str = "LOCK";

/// What opening found and cut at the end of the log: a torn tail, the partly written
/// last record or batch of a crash. Returned by [`FileLog::recovery`](crate::FileLog::recovery).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct RecoveryReport {
    /// The segment that was cut.
    pub segment: PathBuf,
    /// The byte offset it was cut at (its new length).
    pub offset: u64,
    /// How many bytes were cut.
    pub bytes_dropped: u64,
    /// How many records were cut: complete records of an unfinished batch, plus one
    /// when a partial record was cut.
    pub records_dropped: u64,
    /// Why the bytes were judged a torn tail.
    pub reason: String,
}

/// What [`FileLog::repair`](crate::FileLog::repair) cut to make a damaged log open again.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct RepairReport {
    /// The segment holding the first damage; it was truncated.
    pub segment: PathBuf,
    /// The offset it was truncated at: the end of the last complete batch before the damage.
    pub offset: u64,
    /// Where the damage is and what it is.
    pub damage_offset: u64,
    /// What was wrong.
    pub reason: String,
    /// The seq of the first record dropped; every record from it on is gone.
    pub first_dropped_seq: Seq,
    /// Bytes cut from `segment`.
    pub bytes_dropped: u64,
    /// Later segments that were deleted.
    pub segments_removed: Vec<PathBuf>,
}

/// Everything `FileLog` needs from a successful open.
#[derive(Debug)]
pub(crate) struct Opened {
    pub(crate) lock: File,
    pub(crate) segments: Vec<Arc<Segment>>,
    /// The last segment, opened for writing.
    pub(crate) active_file: File,
    pub(crate) active_map_len: usize,
    /// The last segment's file length: its data and any preallocated zeros after it.
    pub(crate) active_file_len: u64,
    /// Total records.
    pub(crate) next_seq: Seq,
    pub(crate) recovery: Option<RecoveryReport>,
}

/// What to do with corruption before the tail.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum OnCorrupt {
    Fail,
    Repair,
}

/// Locks `dir`, creating it (and its first segment) when needed.
pub(crate) fn lock_dir(dir: &Path) -> Result<File> {
    fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    let lock_path = dir.join(LOCK_FILE);
    let lock = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&lock_path)
        .map_err(|e| Error::io(&lock_path, e))?;
    match lock.try_lock() {
        Ok(()) => Ok(lock),
        Err(fs::TryLockError::WouldBlock) => Err(Error::Locked {
            path: dir.to_path_buf(),
        }),
        Err(fs::TryLockError::Error(e)) => Err(Error::io(lock_path, e)),
    }
}

/// The segment files of `dir`, sorted by first seq; removes leftovers of interrupted
/// segment creation.
fn list_segments(dir: &Path) -> Result<Vec<(Seq, PathBuf)>> {
    let mut found = Vec::new();
    for entry in fs::read_dir(dir).map_err(|e| Error::io(dir, e))? {
        let entry = entry.map_err(|e| Error::io(dir, e))?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        if name.ends_with(TMP_SUFFIX) {
            let path = entry.path();
            tracing::debug!(path = %path.display(), "removing an unfinished segment");
            fs::remove_file(&path).map_err(|e| Error::io(&path, e))?;
        } else if let Some(first) = segment::parse_segment_name(name) {
            found.push((first, entry.path()));
        }
    }
    found.sort();
    Ok(found)
}

/// Opens every segment of a locked directory, verifying every record.
pub(crate) fn open_locked(
    dir: &Path,
    lock: File,
    options: &Options,
    on_corrupt: OnCorrupt,
) -> Result<(Opened, Option<RepairReport>)> {
    let mut listed = list_segments(dir)?;
    if listed.is_empty() {
        let (path, _) = segment::create_segment(dir, 0)?;
        listed.push((0, path));
    }
    let mut segments = Vec::with_capacity(listed.len());
    let mut next_seq: Seq = 0;
    let mut recovery = None;
    let mut repair = None;
    let last_index = listed.len() - 1;
    let mut active = None;
    for (i, (name_seq, path)) in listed.iter().enumerate() {
        let is_last = i == last_index;
        let file = OpenOptions::new()
            .read(true)
            .write(is_last || on_corrupt == OnCorrupt::Repair)
            .open(path)
            .map_err(|e| Error::io(path, e))?;
        let len = file.metadata().map_err(|e| Error::io(path, e))?.len();
        let corrupt = |offset: u64, reason: String| Error::Corrupt {
            path: path.clone(),
            offset,
            reason,
        };
        if len > u64::from(u32::MAX) {
            return Err(corrupt(0, format!("segment of {len} bytes exceeds 4 GiB")));
        }
        if len < HEADER_LEN as u64 {
            return Err(corrupt(
                0,
                format!("segment of {len} bytes has no complete header"),
            ));
        }
        let map_len = if is_last {
            segment::active_map_len(options.segment_size, len)
        } else {
            len as usize
        };
        let map = mmap::map(&file, map_len).map_err(|e| Error::io(path, e))?;
        let data = &map[..len as usize];
        let first_seq = format::decode_header(data).map_err(|r| corrupt(0, r))?;
        if first_seq != *name_seq {
            return Err(corrupt(
                16,
                format!("header says first seq {first_seq}, the file name says {name_seq}"),
            ));
        }
        if first_seq != next_seq {
            return Err(corrupt(
                16,
                format!("segment starts at seq {first_seq} but the previous segments end before seq {next_seq} (a segment is missing)"),
            ));
        }
        let scan = format::scan(data);
        let mut end = scan.end as u64;
        if !scan.is_clean() {
            let (damage_at, reason) = scan.invalid.map(|(at, r)| (at, r.to_string())).unwrap_or((
                scan.end,
                "the segment ends inside an unfinished batch".into(),
            ));
            // Valid frames of an unfinished batch running to the end of the file are a
            // torn tail; so is damage that nothing valid follows.
            let torn = is_last
                && scan
                    .invalid
                    .is_none_or(|(at, _)| format::looks_torn(data, at));
            if torn {
                let report = RecoveryReport {
                    segment: path.clone(),
                    offset: end,
                    bytes_dropped: len - end,
                    records_dropped: scan.unfinished as u64 + u64::from(scan.invalid.is_some()),
                    reason: reason.clone(),
                };
                tracing::warn!(
                    segment = %path.display(),
                    offset = end,
                    bytes_dropped = report.bytes_dropped,
                    records_dropped = report.records_dropped,
                    reason = %reason,
                    "flumelog-file: cutting a torn tail"
                );
                file.set_len(end).map_err(|e| Error::io(path, e))?;
                file.sync_all().map_err(|e| Error::io(path, e))?;
                recovery = Some(report);
            } else if on_corrupt == OnCorrupt::Repair {
                let mut removed = Vec::new();
                for (_, later) in listed[i + 1..].iter().rev() {
                    fs::remove_file(later).map_err(|e| Error::io(later, e))?;
                    removed.push(later.clone());
                }
                removed.reverse();
                // A new file with the kept prefix replaces the damaged one (the mapped
                // file is never truncated: records an earlier handle of this directory
                // handed out may still be slices of it).
                let file =
                    segment::rewrite_segment(dir, first_seq, path, &data[..end as usize], None)?;
                let report = RepairReport {
                    segment: path.clone(),
                    offset: end,
                    damage_offset: damage_at as u64,
                    reason,
                    first_dropped_seq: first_seq + scan.offsets.len() as u64,
                    bytes_dropped: len - end,
                    segments_removed: removed,
                };
                tracing::warn!(
                    segment = %path.display(),
                    offset = end,
                    damage_offset = report.damage_offset,
                    first_dropped_seq = report.first_dropped_seq,
                    segments_removed = report.segments_removed.len(),
                    "flumelog-file: repair truncated the log at the first corruption"
                );
                repair = Some(report);
                // Remap as the (new) active segment.
                let map_len = segment::active_map_len(options.segment_size, end);
                let map = mmap::map(&file, map_len).map_err(|e| Error::io(path, e))?;
                next_seq = first_seq + scan.offsets.len() as u64;
                segments.push(Arc::new(Segment::new(
                    first_seq,
                    path.clone(),
                    SegState {
                        map: Arc::new(map),
                        offsets: scan.offsets,
                        end,
                    },
                )));
                active = Some((file, map_len));
                break;
            } else {
                return Err(corrupt(
                    damage_at as u64,
                    format!(
                        "{reason} (before the end of the log, so it is not a torn tail; \
                         FileLog::repair truncates the log here)"
                    ),
                ));
            }
        }
        end = end.min(len);
        next_seq = first_seq + scan.offsets.len() as u64;
        segments.push(Arc::new(Segment::new(
            first_seq,
            path.clone(),
            SegState {
                map: Arc::new(map),
                offsets: scan.offsets,
                end,
            },
        )));
        if is_last {
            active = Some((file, map_len));
        }
    }
    let Some((active_file, active_map_len)) = active else {
        return Err(Error::io(
            dir,
            std::io::Error::other("no active segment after open"),
        ));
    };
    let active_path = &segments[segments.len() - 1].path;
    let active_file_len = active_file
        .metadata()
        .map_err(|e| Error::io(active_path, e))?
        .len();
    // Whatever a crashed predecessor left in the page cache becomes durable now, so
    // that `durable == since` after open.
    active_file
        .sync_data()
        .map_err(|e| Error::io(&segments[segments.len() - 1].path, e))?;
    Ok((
        Opened {
            lock,
            segments,
            active_file,
            active_map_len,
            active_file_len,
            next_seq,
            recovery,
        },
        repair,
    ))
}
