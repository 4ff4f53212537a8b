//! Atomic file replacement and the directory chores around it.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use super::Faults;
use crate::{Error, Result};

/// A file being written under a temporary name (its final name plus `.tmp`), to be
/// renamed over its final name once it is complete and synced: the write-to-temp,
/// fsync, rename, fsync-the-directory sequence that replaces a file so that a crash at
/// any point leaves either the old file or the new one (plus perhaps the temporary
/// file, which the owner of the directory removes when it opens it).
///
/// Dropping a `TempFile` without [`persist`](Self::persist) or
/// [`rename`](Self::rename) leaves the temporary file where it is, as a crash would;
/// [`discard`](Self::discard) removes it.
///
/// ```
/// use std::io::Write;
/// use flume_core::durable::TempFile;
///
/// # fn main() -> flume_core::Result<()> {
/// # let dir = tempfile::tempdir().unwrap();
/// let path = dir.path().join("settings.json");
/// let mut tmp = TempFile::create(&path)?; // writes "settings.json.tmp"
/// tmp.write_all(b"{\"theme\":\"dark\"}").map_err(|e| flume_core::Error::io(&path, e))?;
/// tmp.persist()?; // fsync, rename over settings.json, fsync the directory
/// assert_eq!(std::fs::read(&path).unwrap(), b"{\"theme\":\"dark\"}");
/// assert!(!dir.path().join("settings.json.tmp").exists());
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct TempFile {
    file: File,
    tmp: PathBuf,
    path: PathBuf,
    faults: Faults,
    step: String,
}

impl TempFile {
    /// Creates (or truncates) `<path>.tmp`, opened for reading and writing. The
    /// directory must exist.
    ///
    /// # Errors
    /// [`Error::Io`] naming the temporary file.
    pub fn create(path: impl Into<PathBuf>) -> Result<TempFile> {
        let path = path.into();
        let mut tmp = path.clone().into_os_string();
        tmp.push(".tmp");
        let tmp = PathBuf::from(tmp);
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&tmp)
            .map_err(|e| Error::io(&tmp, e))?;
        Ok(TempFile {
            file,
            tmp,
            path,
            faults: Faults::default(),
            step: String::new(),
        })
    }

    /// Simulates crashes at the steps of [`rename`](Self::rename) and
    /// [`persist`](Self::persist) for tests: before each step, `faults` is
    /// [checked](Faults::check) at the point `"{step}.sync"`, `"{step}.rename"` and
    /// `"{step}.dir_sync"`.
    pub fn with_faults(mut self, faults: &Faults, step: &str) -> TempFile {
        self.faults = faults.clone();
        self.step = step.to_string();
        self
    }

    /// The temporary file's path.
    pub fn tmp_path(&self) -> &Path {
        &self.tmp
    }

    /// The final path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The open temporary file, to write it.
    pub fn file(&mut self) -> &mut File {
        &mut self.file
    }

    /// Fsyncs the temporary file and renames it to its final name, without syncing the
    /// directory: for a file that becomes durable with a later directory sync (a data
    /// file that a manifest written next will name). Returns the file, still open.
    ///
    /// # Errors
    /// [`Error::Io`]; the temporary file then stays.
    pub fn rename(self) -> Result<File> {
        self.check("sync")?;
        self.file.sync_all().map_err(|e| Error::io(&self.tmp, e))?;
        self.check("rename")?;
        fs::rename(&self.tmp, &self.path).map_err(|e| Error::io(&self.path, e))?;
        Ok(self.file)
    }

    /// [`rename`](Self::rename)s the file into place and fsyncs its directory, so that
    /// the new file is durable under its final name. Returns the file, still open.
    ///
    /// # Errors
    /// [`Error::Io`]. When the rename failed, the old file is intact; when only the
    /// directory sync failed, either file may be found after a crash.
    pub fn persist(self) -> Result<File> {
        let dir = parent(&self.path).to_path_buf();
        let faults = self.faults.clone();
        let point = format!("{}.dir_sync", self.step);
        let file = self.rename()?;
        faults.check(&point)?;
        sync_dir(&dir)?;
        Ok(file)
    }

    /// Removes the temporary file, leaving the final one as it was.
    ///
    /// # Errors
    /// [`Error::Io`] when it exists but cannot be removed.
    pub fn discard(self) -> Result<()> {
        drop(self.file);
        remove_if_present(&self.tmp).map(drop)
    }

    fn check(&self, step: &str) -> Result<()> {
        if self.faults.is_active() {
            self.faults.check(&format!("{}.{step}", self.step))?;
        }
        Ok(())
    }
}

impl Write for TempFile {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.file.write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.file.flush()
    }
}

/// Replaces the file at `path` with `bytes` atomically, through a [`TempFile`]: a crash
/// at any point leaves the old content or the new one.
///
/// ```
/// use flume_core::durable::replace;
///
/// # fn main() -> flume_core::Result<()> {
/// # let dir = tempfile::tempdir().unwrap();
/// let path = dir.path().join("HEAD");
/// replace(&path, b"one")?;
/// replace(&path, b"two")?;
/// assert_eq!(std::fs::read(&path).unwrap(), b"two");
/// # Ok(()) }
/// ```
///
/// # Errors
/// [`Error::Io`] naming the file or directory whose operation failed; the old file is
/// then intact, or (when only the final directory sync failed) already replaced.
pub fn replace(path: &Path, bytes: &[u8]) -> Result<()> {
    let mut tmp = TempFile::create(path)?;
    tmp.write_all(bytes)
        .map_err(|e| Error::io(tmp.tmp_path(), e))?;
    tmp.persist().map(drop)
}

/// Fsyncs the directory `dir`, so that files created, renamed and removed in it stay
/// so after a power loss. (Does nothing where directories cannot be opened.)
///
/// ```
/// # fn main() -> flume_core::Result<()> {
/// # let dir = tempfile::tempdir().unwrap();
/// std::fs::write(dir.path().join("new"), b"x").unwrap();
/// flume_core::durable::sync_dir(dir.path())?;
/// # Ok(()) }
/// ```
///
/// # Errors
/// [`Error::Io`] naming `dir`.
pub fn sync_dir(dir: &Path) -> Result<()> {
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

/// Deletes the file at `path`; a missing file is fine. Returns whether it existed.
///
/// ```
/// use flume_core::durable::remove_if_present;
///
/// # fn main() -> flume_core::Result<()> {
/// # let dir = tempfile::tempdir().unwrap();
/// let path = dir.path().join("stale.tmp");
/// std::fs::write(&path, b"x").unwrap();
/// assert!(remove_if_present(&path)?);
/// assert!(!remove_if_present(&path)?);
/// # Ok(()) }
/// ```
///
/// # Errors
/// [`Error::Io`] when it exists but cannot be deleted.
pub fn remove_if_present(path: &Path) -> Result<bool> {
    match fs::remove_file(path) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(Error::io(path, e)),
    }
}

/// The directory holding `path` (`.` for a bare file name).
pub(crate) fn parent(path: &Path) -> &Path {
    match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tempdir() -> tempfile::TempDir {
        tempfile::tempdir().expect("a temporary directory")
    }

    #[test]
    fn a_crash_at_each_step_leaves_the_old_file_or_the_new_one() -> Result<()> {
        for (point, replaced) in [
            ("state.sync", false),
            ("state.rename", false),
            ("state.dir_sync", true),
        ] {
            let dir = tempdir();
            let path = dir.path().join("f");
            replace(&path, b"old")?;
            let faults = Faults::new();
            faults.arm(point, 0);
            let mut tmp = TempFile::create(&path)?.with_faults(&faults, "state");
            tmp.write_all(b"new").map_err(|e| Error::io(&path, e))?;
            let err = tmp.persist().expect_err(point);
            assert!(faults.fired(), "{point}");
            assert!(err.to_string().contains("injected crash"), "{point}: {err}");
            let now = fs::read(&path).map_err(|e| Error::io(&path, e))?;
            assert_eq!(now, if replaced { &b"new"[..] } else { b"old" }, "{point}");
            assert_eq!(dir.path().join("f.tmp").exists(), !replaced, "{point}");
        }
        Ok(())
    }

    #[test]
    fn rename_keeps_the_file_open_and_discard_removes_the_tmp() -> Result<()> {
        let dir = tempdir();
        let path = dir.path().join("run");
        let mut tmp = TempFile::create(&path)?;
        assert_eq!(tmp.path(), path);
        assert_eq!(tmp.tmp_path(), dir.path().join("run.tmp"));
        tmp.file()
            .write_all(b"abc")
            .map_err(|e| Error::io(&path, e))?;
        let file = tmp.rename()?;
        assert_eq!(file.metadata().map_err(|e| Error::io(&path, e))?.len(), 3);

        let tmp = TempFile::create(&path)?;
        assert!(dir.path().join("run.tmp").exists());
        tmp.discard()?;
        assert!(!dir.path().join("run.tmp").exists());
        assert_eq!(fs::read(&path).map_err(|e| Error::io(&path, e))?, b"abc");
        Ok(())
    }

    #[test]
    fn a_bare_file_name_lives_in_the_current_directory() {
        assert_eq!(parent(Path::new("x")), Path::new("."));
        assert_eq!(parent(Path::new("a/x")), Path::new("a"));
    }
}
