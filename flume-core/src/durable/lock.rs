//! [`DirLock`].

use std::fs::{self, File, OpenOptions};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::{Error, Result};

/// An exclusive lock on a directory, held as long as the value lives: an advisory lock
/// (`flock`) on the file `LOCK` inside it, so it excludes other handles in this process
/// and in other processes alike, and the OS releases it when the process dies.
///
/// ```
/// use std::time::Duration;
/// use flume_core::{durable::DirLock, Error};
///
/// # fn main() -> flume_core::Result<()> {
/// # let tmp = tempfile::tempdir().unwrap();
/// let dir = tmp.path().join("my-view"); // created if missing
/// let lock = DirLock::acquire(&dir, Duration::ZERO)?;
/// assert!(matches!(
///     DirLock::acquire(&dir, Duration::from_millis(20)),
///     Err(Error::Locked { .. })
/// ));
/// drop(lock);
/// DirLock::acquire(&dir, Duration::ZERO)?;
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct DirLock {
    file: File,
    dir: PathBuf,
}

impl DirLock {
    /// The lock file's name inside the directory.
    pub const FILE_NAME: &'static str = "LOCK";

    /// Locks `dir`, creating it (and the lock file) when missing. When another handle
    /// holds it, retries every 10 ms for up to `wait` (a handle of the same directory
    /// that is still closing in this process, say); `Duration::ZERO` tries once.
    ///
    /// # Errors
    /// [`Error::Locked`] naming `dir` when it is still locked after `wait`;
    /// [`Error::Io`] when the directory or the lock file cannot be created or locked.
    pub fn acquire(dir: &Path, wait: Duration) -> Result<DirLock> {
        fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        let path = dir.join(Self::FILE_NAME);
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(|e| Error::io(&path, e))?;
        let deadline = Instant::now() + wait;
        loop {
            match file.try_lock() {
                Ok(()) => {
                    return Ok(DirLock {
                        file,
                        dir: dir.to_path_buf(),
                    })
                }
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

    /// The locked directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The open lock file; the lock lasts as long as it stays open.
    pub fn into_file(self) -> File {
        self.file
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waits_for_a_release_within_the_wait() -> Result<()> {
        let tmp = tempfile::tempdir().map_err(|e| Error::io("tempdir", e))?;
        let dir = tmp.path().join("a/b");
        let held = DirLock::acquire(&dir, Duration::ZERO)?;
        assert_eq!(held.dir(), dir);
        let releaser = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(50));
            drop(held);
        });
        let again = DirLock::acquire(&dir, Duration::from_secs(5))?;
        releaser.join().expect("the releasing thread");
        match DirLock::acquire(&dir, Duration::ZERO) {
            Err(Error::Locked { path }) => assert_eq!(path, dir),
            other => panic!("expected Locked, got {other:?}"),
        }
        let file = again.into_file();
        match DirLock::acquire(&dir, Duration::ZERO) {
            Err(Error::Locked { path }) => assert_eq!(path, dir),
            other => panic!("the file still holds the lock, got {other:?}"),
        }
        drop(file);
        DirLock::acquire(&dir, Duration::ZERO).map(drop)
    }
}
