//! A store's directory: file names, the listing, the lock. Atomic replacement, the
//! lock itself and the fault points that simulate a crash at each step are
//! `flume_core::durable`'s.

use std::fs::{self, File};
use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

use flume_core::durable::DirLock;
use flume_core::{Error, Result};

/// The manifest: which runs are live, with the view version and `since`.
pub(crate) const MANIFEST: &str = "MANIFEST";
/// Run files: `NNNNNNNNNNNNNNNNNNNN.run`, the run id in 20 decimal digits.
pub(crate) const RUN_SUFFIX: &str = ".run";
/// A file being written (a run or the manifest: `durable::TempFile`'s names).
pub(crate) const TMP_SUFFIX: &str = ".tmp";

/// How long opening waits for another handle of the same directory to let go (a store
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
/// [`Error::Locked`](flume_core::Error::Locked) when another handle keeps it locked for
/// longer than a few seconds; [`Error::Io`].
pub fn lock_dir(dir: &Path) -> Result<File> {
    DirLock::acquire(dir, LOCK_WAIT).map(DirLock::into_file)
}

/// What a store directory holds besides the manifest.
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
