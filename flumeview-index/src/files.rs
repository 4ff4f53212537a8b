//! The index directory: file names, atomic replacement, the lock, and the test-only
//! fault points that simulate a crash at each step.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use flume_core::{Error, Result};

/// The manifest: which runs are live, with the view version and `since`.
pub(crate) const MANIFEST: &str = "MANIFEST";
/// Where a new manifest is written before it is renamed over [`MANIFEST`].
pub(crate) const MANIFEST_TMP: &str = "MANIFEST.tmp";
/// Held locked while an index has the directory open.
pub(crate) const LOCK: &str = "LOCK";
/// Run files: `NNNNNNNNNNNNNNNNNNNN.run`, the run id in 20 decimal digits.
pub(crate) const RUN_SUFFIX: &str = ".run";
/// A run being written.
pub(crate) const TMP_SUFFIX: &str = ".tmp";

/// How long opening waits for another handle of the same directory to let go (an index
/// of a database that is still closing in this process).
const LOCK_WAIT: Duration = Duration::from_secs(5);

/// The file name of run `id`.
pub(crate) fn run_name(id: u64) -> String {
    format!("{id:020}{RUN_SUFFIX}")
}

/// The run id a file name stands for, if it is a run file's name.
pub(crate) fn parse_run_name(name: &str) -> Option<u64> {
    let digits = name.strip_suffix(RUN_SUFFIX)?;
    if digits.len() != 20 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// Locks `dir` (creating it) for this handle.
///
/// # Errors
/// [`Error::Locked`] when another handle keeps it locked for longer than a few seconds;
/// [`Error::Io`].
pub(crate) fn lock_dir(dir: &Path) -> Result<File> {
    fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    let path = dir.join(LOCK);
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .map_err(|e| Error::io(&path, e))?;
    let deadline = Instant::now() + LOCK_WAIT;
    loop {
        match file.try_lock() {
            Ok(()) => return Ok(file),
            Err(fs::TryLockError::WouldBlock) if Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(10));
            }
            Err(fs::TryLockError::WouldBlock) => {
                return Err(Error::Locked {
                    path: dir.to_path_buf(),
                })
            }
            Err(fs::TryLockError::Error(e)) => return Err(Error::io(path, e)),
        }
    }
}

/// Writes `bytes` to `tmp`, fsyncs it and renames it to `path` (the caller fsyncs the
/// directory). A crash leaves `path` as it was, plus perhaps `tmp`.
pub(crate) fn write_file(
    faults: &Faults,
    tmp: &Path,
    path: &Path,
    bytes: &[u8],
    step: &str,
) -> Result<()> {
    let mut file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .open(tmp)
        .map_err(|e| Error::io(tmp, e))?;
    let half = bytes.len() / 2;
    file.write_all(&bytes[..half])
        .map_err(|e| Error::io(tmp, e))?;
    faults.check(&format!("{step}.write"))?;
    file.write_all(&bytes[half..])
        .map_err(|e| Error::io(tmp, e))?;
    faults.check(&format!("{step}.sync"))?;
    file.sync_all().map_err(|e| Error::io(tmp, e))?;
    drop(file);
    faults.check(&format!("{step}.rename"))?;
    fs::rename(tmp, path).map_err(|e| Error::io(path, e))
}

/// Fsyncs a directory, so that renames and deletions in it are durable.
pub(crate) fn sync_dir(dir: &Path) -> Result<()> {
    #[cfg(unix)]
    {
        File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(|e| Error::io(dir, e))
    }
    #[cfg(not(unix))]
    {
        let _ = dir;
        Ok(())
    }
}

/// Deletes `path`; a missing file is fine. Returns whether it existed.
pub(crate) fn remove_if_present(path: &Path) -> Result<bool> {
    match fs::remove_file(path) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(Error::io(path, e)),
    }
}

/// What an index directory holds besides the manifest.
#[derive(Debug, Default)]
pub(crate) struct Listing {
    /// Run files, by id.
    pub(crate) runs: Vec<(u64, PathBuf)>,
    /// Temporary files left by an interrupted write.
    pub(crate) temporary: Vec<PathBuf>,
}

/// Lists `dir` (missing: empty).
pub(crate) fn list(dir: &Path) -> Result<Listing> {
    let mut listing = Listing::default();
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(listing),
        Err(e) => return Err(Error::io(dir, e)),
    };
    for entry in entries {
        let entry = entry.map_err(|e| Error::io(dir, e))?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        if name.ends_with(TMP_SUFFIX) {
            listing.temporary.push(entry.path());
        } else if let Some(id) = parse_run_name(name) {
            listing.runs.push((id, entry.path()));
        }
    }
    listing.runs.sort();
    Ok(listing)
}

/// Test-only crash points: `check(point)` fails once the armed point has been reached
/// `countdown` more times. In normal builds it is an empty struct and `check` is free.
#[derive(Debug, Default, Clone)]
pub(crate) struct Faults {
    #[cfg(test)]
    armed: std::sync::Arc<std::sync::Mutex<Option<(String, usize)>>>,
}

impl Faults {
    /// Fails (with an I/O error naming the point) when the armed crash point is reached.
    #[inline]
    pub(crate) fn check(&self, point: &str) -> Result<()> {
        #[cfg(test)]
        {
            let mut armed = self.armed.lock().unwrap_or_else(|p| p.into_inner());
            if let Some((name, countdown)) = armed.as_mut() {
                if name == point {
                    if *countdown == 0 {
                        *armed = None;
                        return Err(Error::io(
                            point,
                            io::Error::other(format!("injected crash at {point}")),
                        ));
                    }
                    *countdown -= 1;
                }
            }
        }
        let _ = point;
        Ok(())
    }

    /// Arms `point` to fail the `(countdown + 1)`th time it is reached.
    #[cfg(test)]
    pub(crate) fn arm(&self, point: &str, countdown: usize) {
        *self.armed.lock().unwrap_or_else(|p| p.into_inner()) =
            Some((point.to_string(), countdown));
    }

    /// Whether the armed point has fired (or nothing was armed).
    #[cfg(test)]
    pub(crate) fn fired(&self) -> bool {
        self.armed
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .is_none()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_names_round_trip() {
        assert_eq!(run_name(42), "00000000000000000042.run");
        assert_eq!(parse_run_name(&run_name(42)), Some(42));
        assert_eq!(parse_run_name(&run_name(u64::MAX)), Some(u64::MAX));
        assert_eq!(parse_run_name("42.run"), None);
        assert_eq!(parse_run_name("0000000000000000004x.run"), None);
        assert_eq!(parse_run_name("00000000000000000042.run.tmp"), None);
    }
}
