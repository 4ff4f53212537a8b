//! Opening a directory: the lock, the segment list, the scan that rebuilds each
//! segment's index, cutting a torn tail, and `repair`.

use std::fs::{self, File, OpenOptions};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use flume_core::durable::{self, DirLock};
use flume_core::{Error, Result, Seq};

use crate::format::{self, HEADER_LEN};
use crate::mmap;
use crate::segment::{self, SegState, Segment, TMP_SUFFIX};
use crate::tailmark::{self, TailMark};
use crate::FileLogOptions;

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

/// What [`FileLog::repair`](crate::FileLog::repair) did to make a damaged log open
/// again: what it kept, what it cut, and where it put every file it took out of the log.
/// Repair never deletes a byte: a file it cuts or rebuilds is first linked (or copied)
/// aside, a file it drops is moved aside, both under the name of the original followed
/// by `.quarantined-<why>` (see [`Quarantined`]).
///
/// The first seven fields describe the first damage found and where the log ends now.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct RepairReport {
    /// The file holding the first damage (or the missing file).
    pub segment: PathBuf,
    /// The length `segment` has now: the end of its last complete batch before the
    /// damage (its whole length when only its header was rebuilt; `0` when it is
    /// missing or was taken out of the log).
    pub offset: u64,
    /// Where the damage is in `segment`: `0` for its header.
    pub damage_offset: u64,
    /// What was wrong.
    pub reason: String,
    /// The seq of the first record dropped: the log now holds the records before it
    /// (every one of them, when nothing was dropped).
    pub first_dropped_seq: Seq,
    /// Bytes cut from the end of `segment`.
    pub bytes_dropped: u64,
    /// Segment files taken out of the log (moved aside, see `quarantined`), oldest first.
    pub segments_removed: Vec<PathBuf>,
    /// Every file moved or copied aside, in the order repair did it.
    pub quarantined: Vec<Quarantined>,
    /// Segments whose damaged header was rebuilt from what is known (the seq in the
    /// file name, which follows the segments before it); their records were kept.
    pub headers_rebuilt: Vec<PathBuf>,
    /// Segment files the tail marker said exist but that were gone: their records are
    /// accepted as lost.
    pub missing: Vec<PathBuf>,
}

/// A file [`FileLog::repair`](crate::FileLog::repair) took out of the log or replaced,
/// kept under another name in the log's directory (the log never reads it again;
/// inspect it, or delete it once you no longer need it).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Quarantined {
    /// Where the file was.
    pub original: PathBuf,
    /// Where it is now: `<original>.quarantined-<why>`, with `.<n>` appended when that
    /// name is taken.
    pub moved_to: PathBuf,
    /// Why: `damaged` (cut at its first damage; the cut file replaced it),
    /// `bad-header` (its header was rebuilt), `after-damage` (it follows the damage),
    /// `after-gap` (records before it are missing), `overlap` (it ended with records
    /// the next segment starts with, which were cut; or, when they cannot be cut at a
    /// batch boundary, the next segment and all after it), `too-large` (over 4 GiB), `bad-marker` (a
    /// damaged tail marker, rebuilt).
    pub why: &'static str,
}

/// What to do about a `Corrupt` error from opening a log: appended to every such message.
pub(crate) const REPAIR_ADVICE: &str = "to open the log, call `FileLog::repair` on its \
     directory (it keeps every record before the damage and moves damaged files aside, \
     nothing is deleted), or restore the directory from a backup";

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
    if dir.exists() && !dir.is_dir() {
        return Err(Error::io(
            dir,
            std::io::Error::new(
                std::io::ErrorKind::NotADirectory,
                format!(
                    "not a directory: {} (a log is a directory of segment files; give the \
                     path of a directory, or of one to create)",
                    dir.display()
                ),
            ),
        ));
    }
    // No waiting: a second open of an open log fails at once.
    DirLock::acquire(dir, Duration::ZERO).map(DirLock::into_file)
}

/// The segment files of `dir`, sorted by first seq; removes leftovers of interrupted
/// segment creation and marker writes.
fn list_segments(dir: &Path) -> Result<Vec<(Seq, PathBuf)>> {
    let mut found = Vec::new();
    for entry in fs::read_dir(dir).map_err(|e| Error::io(dir, e))? {
        let entry = entry.map_err(|e| Error::io(dir, e))?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        if name.ends_with(TMP_SUFFIX) || name == tailmark::TAIL_TMP {
            let path = entry.path();
            tracing::debug!(path = %path.display(), "removing an unfinished file");
            fs::remove_file(&path).map_err(|e| Error::io(&path, e))?;
        } else if let Some(first) = segment::parse_segment_name(name) {
            found.push((first, entry.path()));
        }
    }
    found.sort();
    Ok(found)
}

/// The `Corrupt` error for damage found at open, with what to do about it.
fn corrupt(path: &Path, offset: u64, reason: &str) -> Error {
    Error::Corrupt {
        path: path.to_path_buf(),
        offset,
        reason: format!("{reason}; {REPAIR_ADVICE}"),
    }
}

/// What repair did so far.
#[derive(Debug, Default)]
struct Fixes {
    /// The first damage: file, offset, what.
    first: Option<(PathBuf, u64, String)>,
    /// Where the log was cut: file, new length, bytes cut.
    cut: Option<(PathBuf, u64, u64)>,
    segments_removed: Vec<PathBuf>,
    quarantined: Vec<Quarantined>,
    headers_rebuilt: Vec<PathBuf>,
    missing: Vec<PathBuf>,
}

impl Fixes {
    fn damage(&mut self, path: &Path, offset: u64, reason: impl Into<String>) {
        if self.first.is_none() {
            self.first = Some((path.to_path_buf(), offset, reason.into()));
        }
    }

    /// Moves `path` aside (`keep`: links or copies it aside, leaving it in place, for a
    /// file about to be replaced).
    fn quarantine(&mut self, path: &Path, why: &'static str, keep: bool) -> Result<PathBuf> {
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let dir = path.parent().unwrap_or(Path::new("."));
        let mut to = dir.join(format!("{name}.quarantined-{why}"));
        let mut n = 1;
        while to.symlink_metadata().is_ok() {
            n += 1;
            to = dir.join(format!("{name}.quarantined-{why}.{n}"));
        }
        let moved = if keep {
            fs::hard_link(path, &to).or_else(|_| fs::copy(path, &to).map(|_| ()))
        } else {
            fs::rename(path, &to)
        };
        moved.map_err(|e| Error::io(&to, e))?;
        durable::sync_dir(dir)?;
        tracing::warn!(
            file = %path.display(),
            moved_to = %to.display(),
            why,
            "flumelog-file: repair moved a file aside"
        );
        self.quarantined.push(Quarantined {
            original: path.to_path_buf(),
            moved_to: to.clone(),
            why,
        });
        Ok(to)
    }

    /// Takes `listed` (segments from the damage on) out of the log; the first one is
    /// moved aside as `why`, the rest as `after-damage`.
    fn drop_segments(&mut self, listed: &[(Seq, PathBuf)], why: &'static str) -> Result<()> {
        for (k, (_, path)) in listed.iter().enumerate() {
            self.quarantine(path, if k == 0 { why } else { "after-damage" }, false)?;
            self.segments_removed.push(path.clone());
        }
        Ok(())
    }

    fn is_empty(&self) -> bool {
        self.first.is_none()
            && self.quarantined.is_empty()
            && self.headers_rebuilt.is_empty()
            && self.missing.is_empty()
    }

    fn report(self, next_seq: Seq) -> Option<RepairReport> {
        if self.is_empty() {
            return None;
        }
        let (segment, damage_offset, reason) = self.first.unwrap_or_default();
        let (offset, bytes_dropped) = match &self.cut {
            Some((path, offset, dropped)) if *path == segment => (*offset, *dropped),
            _ => (fs::metadata(&segment).map(|m| m.len()).unwrap_or(0), 0),
        };
        Some(RepairReport {
            segment,
            offset,
            damage_offset,
            reason,
            first_dropped_seq: next_seq,
            bytes_dropped,
            segments_removed: self.segments_removed,
            quarantined: self.quarantined,
            headers_rebuilt: self.headers_rebuilt,
            missing: self.missing,
        })
    }
}

/// What a segment's scan means.
enum Verdict {
    /// Ends after a complete batch (or in preallocated space).
    Clean,
    /// Ends in a torn tail, cut at `scan.end`: why.
    Torn(String),
    /// Damaged at this offset: why.
    Damage(u64, String),
}

/// Judges a scanned segment: `mark` is the length the tail marker says is durable when
/// it names this segment. See `docs/format.md`, "Recovery rules".
fn judge(data: &[u8], scan: &format::Scan, is_last: bool, mark: Option<u64>) -> Verdict {
    let end = scan.end as u64;
    let len = data.len() as u64;
    let what = |offset: usize| match scan.invalid {
        Some((at, reason)) if at <= offset => reason.to_string(),
        _ if scan.unfinished > 0 => "the segment ends inside an unfinished batch".to_string(),
        _ => "nothing valid follows".to_string(),
    };
    if let Some(durable) = mark.filter(|&d| end < d) {
        // Bytes synced before the marker was written are not all there.
        let (at, reason) = match scan.invalid {
            Some((at, reason)) => (at as u64, reason.to_string()),
            None if len < durable => (
                len,
                format!(
                    "the segment ends at byte {len}, but its first {durable} bytes were \
                     synced (the tail marker says so): its end was cut off"
                ),
            ),
            None if scan.unfinished > 0 => (
                end,
                "the segment ends inside an unfinished batch".to_string(),
            ),
            None => (
                end,
                format!("bytes {end}..{durable} were synced but read as zeros"),
            ),
        };
        return Verdict::Damage(
            at,
            format!("{reason} (below byte {durable}, which was synced: not a torn tail)"),
        );
    }
    if scan.is_clean() {
        return Verdict::Clean;
    }
    let at = scan.invalid.map_or(scan.end, |(at, _)| at);
    if !is_last {
        return Verdict::Damage(
            at as u64,
            format!(
                "{} (in a sealed segment, which was synced whole before the next one was \
                 started: not a torn tail)",
                what(at)
            ),
        );
    }
    match scan.invalid {
        Some((at, reason)) if format::damage_evidence(data, at) => Verdict::Damage(
            at as u64,
            format!(
                "{reason}, and a valid frame follows where this frame's length says it ends \
                 (not a torn tail)"
            ),
        ),
        _ => Verdict::Torn(what(at)),
    }
}

/// Repairs an overlap: the last of `segments` holds records from `from` on, which the
/// next segment starts with. Cuts them off that segment (the original kept aside as
/// `overlap`), when `from` starts a batch inside it. Returns whether it did.
fn cut_overlap(
    dir: &Path,
    segments: &[Arc<Segment>],
    from: Seq,
    fixes: &mut Fixes,
) -> Result<bool> {
    let Some(prev) = segments.last().cloned() else {
        return Ok(false);
    };
    let (kept, cut_at, data_len) = {
        let state = prev.read_state();
        let Some(k) = from
            .checked_sub(prev.first_seq)
            .filter(|&k| k > 0 && (k as usize) < state.offsets.len())
        else {
            return Ok(false);
        };
        let k = k as usize;
        let data = state.data();
        // The record before the cut must end its batch.
        let before = state.offsets[k - 1] as usize;
        match data.get(before + 3) {
            Some(&b) if b & 0x80 == 0 => {}
            _ => return Ok(false),
        }
        (k, state.offsets[k] as usize, data.len())
    };
    fixes.quarantine(&prev.path, "overlap", true)?;
    let map = {
        let state = prev.read_state();
        let file = segment::rewrite_segment(
            dir,
            prev.first_seq,
            &prev.path,
            &state.data()[..cut_at],
            None,
        )?;
        mmap::map(&file, cut_at).map_err(|e| Error::io(&prev.path, e))?
    };
    fixes.cut = Some((prev.path.clone(), cut_at as u64, (data_len - cut_at) as u64));
    tracing::warn!(
        segment = %prev.path.display(),
        offset = cut_at,
        "flumelog-file: repair cut records that the next segment starts with"
    );
    let mut state = prev.write_state();
    state.map = Arc::new(map);
    state.offsets.truncate(kept);
    state.end = cut_at as u64;
    Ok(true)
}

/// Opens every segment of a locked directory, verifying every record; with
/// [`OnCorrupt::Repair`], repairs what it finds instead of failing.
pub(crate) fn open_locked(
    dir: &Path,
    lock: File,
    options: &FileLogOptions,
    on_corrupt: OnCorrupt,
) -> Result<(Opened, Option<RepairReport>)> {
    let repairing = on_corrupt == OnCorrupt::Repair;
    let mut fixes = Fixes::default();
    let mut listed = list_segments(dir)?;
    let mut mark = match tailmark::read(dir) {
        Ok(mark) => mark,
        Err(Error::Corrupt {
            path,
            offset,
            reason,
        }) if repairing => {
            fixes.damage(&path, offset, reason);
            fixes.quarantine(&path, "bad-marker", false)?;
            None
        }
        Err(e) => return Err(e),
    };
    if let Some(m) = mark {
        let newest = listed.last().map(|(first, _)| *first);
        if newest.is_none_or(|newest| newest < m.segment) {
            let missing = dir.join(segment::segment_name(m.segment));
            let reason = format!(
                "the tail marker ({}) says the log's last segment starts at seq {} and \
                 holds at least {} bytes, but there is no such file{}; restore it from a \
                 backup, or call `FileLog::repair` to accept the loss (it keeps the records \
                 of the segments that remain)",
                tailmark::TAIL_FILE,
                m.segment,
                m.durable_len,
                match &newest {
                    Some(n) => format!(" (the newest segment starts at seq {n})"),
                    None => " (no segment is left)".to_string(),
                },
            );
            if !repairing {
                return Err(Error::Missing {
                    path: missing,
                    reason,
                });
            }
            fixes.damage(&missing, 0, reason);
            fixes.missing.push(missing);
            mark = None;
        }
    }
    if listed.is_empty() {
        let (path, _) = segment::create_segment(dir, 0)?;
        listed.push((0, path));
    }
    let mut segments = Vec::with_capacity(listed.len());
    let mut next_seq: Seq = 0;
    let mut recovery = None;
    let mut active = None;
    let mut i = 0;
    while i < listed.len() {
        let (name_seq, path) = listed[i].clone();
        let is_last = i + 1 == listed.len();
        if name_seq != next_seq {
            let (why, reason) = if name_seq > next_seq {
                (
                    "after-gap",
                    format!(
                        "segment starts at seq {name_seq} but the segments before it end \
                         before seq {next_seq}: records {next_seq}..{name_seq} are missing \
                         (a segment is missing)"
                    ),
                )
            } else {
                (
                    "overlap",
                    format!(
                        "segment starts at seq {name_seq} but the segments before it \
                         already hold records up to seq {}",
                        next_seq - 1
                    ),
                )
            };
            if !repairing {
                return Err(corrupt(&path, 16, &reason));
            }
            fixes.damage(&path, 16, reason);
            if name_seq < next_seq && cut_overlap(dir, &segments, name_seq, &mut fixes)? {
                // The previous segment ended with extra records: they were cut (the
                // original is kept aside), and this segment follows it again.
                next_seq = name_seq;
                continue;
            }
            fixes.drop_segments(&listed[i..], why)?;
            listed.truncate(i);
            break;
        }
        let file = OpenOptions::new()
            .read(true)
            .write(is_last)
            .open(&path)
            .map_err(|e| Error::io(&path, e))?;
        let len = file.metadata().map_err(|e| Error::io(&path, e))?.len();
        if len > u64::from(u32::MAX) {
            let reason = format!("segment of {len} bytes exceeds 4 GiB");
            if !repairing {
                return Err(corrupt(&path, 0, &reason));
            }
            fixes.damage(&path, 0, reason);
            fixes.drop_segments(&listed[i..], "too-large")?;
            listed.truncate(i);
            break;
        }
        let header = if len < HEADER_LEN as u64 {
            Err(format!("segment of {len} bytes has no complete header"))
        } else {
            let mut h = [0u8; HEADER_LEN];
            use std::os::unix::fs::FileExt;
            file.read_exact_at(&mut h, 0)
                .map_err(|e| Error::io(&path, e))?;
            format::decode_header(&h).and_then(|first| {
                if first == name_seq {
                    Ok(first)
                } else {
                    Err(format!(
                        "header says first seq {first}, the file name says {name_seq}"
                    ))
                }
            })
        };
        let file = match header {
            Ok(_) => file,
            Err(reason) => {
                if !repairing {
                    return Err(corrupt(&path, 0, &reason));
                }
                // Rebuild the header from what is known: the seq in the file name, which
                // follows the segments before it. The frames are checked as usual.
                fixes.damage(&path, 0, reason);
                fixes.quarantine(&path, "bad-header", true)?;
                let map =
                    mmap::map(&file, (len as usize).max(1)).map_err(|e| Error::io(&path, e))?;
                let old = &map[..len as usize];
                let mut rebuilt = format::encode_header(name_seq).to_vec();
                rebuilt.extend_from_slice(old.get(HEADER_LEN..).unwrap_or(&[]));
                let file = segment::rewrite_segment(dir, name_seq, &path, &rebuilt, None)?;
                fixes.headers_rebuilt.push(path.clone());
                file
            }
        };
        let len = file.metadata().map_err(|e| Error::io(&path, e))?.len();
        let map_len = if is_last {
            segment::active_map_len(options.segment_size, len)
        } else {
            len as usize
        };
        let map = mmap::map(&file, map_len).map_err(|e| Error::io(&path, e))?;
        let data = &map[..len as usize];
        let scan = format::scan(data);
        let marked = mark
            .filter(|m| m.segment == name_seq)
            .map(|m| m.durable_len);
        let end = scan.end as u64;
        match judge(data, &scan, is_last, marked) {
            Verdict::Clean => {}
            Verdict::Torn(reason) => {
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
                file.set_len(end).map_err(|e| Error::io(&path, e))?;
                file.sync_all().map_err(|e| Error::io(&path, e))?;
                recovery = Some(report);
            }
            Verdict::Damage(at, reason) => {
                if !repairing {
                    return Err(corrupt(&path, at, &reason));
                }
                fixes.damage(&path, at, reason);
                // The damaged file is kept aside whole; a new file with the kept prefix
                // replaces it (the mapped file is never truncated: records an earlier
                // handle of this directory handed out may still be slices of it).
                fixes.quarantine(&path, "damaged", true)?;
                fixes.drop_segments(&listed[i + 1..], "after-damage")?;
                listed.truncate(i + 1);
                let file = segment::rewrite_segment(dir, name_seq, &path, &data[..scan.end], None)?;
                fixes.cut = Some((path.clone(), end, len - end));
                tracing::warn!(
                    segment = %path.display(),
                    offset = end,
                    damage_offset = at,
                    "flumelog-file: repair cut the log at its first damage"
                );
                let map_len = segment::active_map_len(options.segment_size, end);
                let map = mmap::map(&file, map_len).map_err(|e| Error::io(&path, e))?;
                next_seq = name_seq + scan.offsets.len() as u64;
                segments.push(Arc::new(Segment::new(
                    name_seq,
                    path.clone(),
                    SegState {
                        map: Arc::new(map),
                        offsets: scan.offsets,
                        end,
                    },
                )));
                active = Some((file, map_len));
                break;
            }
        }
        next_seq = name_seq + scan.offsets.len() as u64;
        segments.push(Arc::new(Segment::new(
            name_seq,
            path.clone(),
            SegState {
                map: Arc::new(map),
                offsets: scan.offsets,
                end: end.min(len),
            },
        )));
        if is_last {
            // Opened for writing (or rewritten by repair, which opens for writing).
            active = Some((file, map_len));
        }
        i += 1;
    }
    if active.is_none() {
        // Repair took every segment from some point on out of the log: the last one
        // kept becomes the active one again (or a new first segment starts the log).
        match segments.pop() {
            Some(seg) => {
                let file = OpenOptions::new()
                    .read(true)
                    .write(true)
                    .open(&seg.path)
                    .map_err(|e| Error::io(&seg.path, e))?;
                let end = seg.read_state().end;
                let map_len = segment::active_map_len(options.segment_size, end);
                let map = mmap::map(&file, map_len).map_err(|e| Error::io(&seg.path, e))?;
                seg.write_state().map = Arc::new(map);
                segments.push(seg);
                active = Some((file, map_len));
            }
            None => {
                let (path, file) = segment::create_segment(dir, 0)?;
                let map_len = segment::active_map_len(options.segment_size, HEADER_LEN as u64);
                let map = mmap::map(&file, map_len).map_err(|e| Error::io(&path, e))?;
                segments.push(Arc::new(Segment::new(
                    0,
                    path,
                    SegState {
                        map: Arc::new(map),
                        offsets: Vec::new(),
                        end: HEADER_LEN as u64,
                    },
                )));
                next_seq = 0;
                active = Some((file, map_len));
            }
        }
    }
    let Some((active_file, active_map_len)) = active else {
        return Err(Error::io(
            dir,
            std::io::Error::other("no active segment after open"),
        ));
    };
    let last = &segments[segments.len() - 1];
    let active_file_len = active_file
        .metadata()
        .map_err(|e| Error::io(&last.path, e))?
        .len();
    // Whatever a crashed predecessor left in the page cache becomes durable now, so
    // that `durable == since` after open; the marker then says so.
    active_file
        .sync_data()
        .map_err(|e| Error::io(&last.path, e))?;
    tailmark::write(
        dir,
        TailMark {
            segment: last.first_seq,
            durable_len: last.read_state().end,
        },
    )?;
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
        fixes.report(next_seq),
    ))
}
