//! [`StateFile`]: a versioned, CRC32C-checked state file, replaced atomically.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use bytes::Bytes;

use super::files::{parent, remove_if_present, replace, sync_dir};
use super::Reader;
use crate::{Checkpoint, Error, Result, Seq};

/// One file holding a view's whole state (any bytes: JSON, MessagePack, your own
/// format) together with the view's version and the `since` the state reflects, so the
/// three can never disagree. Writes replace the file atomically (write `<path>.tmp`,
/// fsync, rename, fsync the directory); reads check a CRC32C over everything. The bytes
/// are laid out in `docs/format.md`, section "State file".
///
/// A view uses it in three of its methods:
///
/// - `checkpoint(since)`: [`save`](Self::save)`(since, &bytes)`.
/// - `load()`: [`load`](Self::load). `Some(saved)`: restore the state from
///   `saved.bytes` and return `Ok(Some(saved.checkpoint()))`. `None`: return `Ok(None)`;
///   the driver then builds the view from the start of the log, and the next checkpoint
///   replaces the file. `load` answers `None` when there is no file, when the file was
///   written by another version of the view (its state may not even parse any more, so
///   it is not offered), and when the file is damaged (truncated, a flipped bit, not a
///   state file at all); it logs why with `tracing`. Bytes that pass the checksum but
///   that your code cannot parse are an error: return it from `load`, and the driver
///   resets the view.
/// - `reset()`: [`remove`](Self::remove).
///
/// ```
/// use flume_core::durable::StateFile;
///
/// # fn main() -> flume_core::Result<()> {
/// # let dir = tempfile::tempdir().unwrap();
/// let path = dir.path().join("view.state");
/// let file = StateFile::new(&path, 2);
/// assert!(file.load()?.is_none()); // nothing saved yet: build from the log
///
/// file.save(9, b"state after seq 9")?;
/// let saved = file.load()?.expect("just saved");
/// assert_eq!(saved.checkpoint(), flume_core::Checkpoint { version: 2, since: Some(9) });
/// assert_eq!(&saved.bytes[..], b"state after seq 9");
///
/// // Version 3 of the view does not take version 2's state: it rebuilds.
/// assert!(StateFile::new(&path, 3).load()?.is_none());
///
/// // Neither does anyone take a damaged file.
/// let mut bytes = std::fs::read(&path).unwrap();
/// bytes[30] ^= 1;
/// std::fs::write(&path, bytes).unwrap();
/// assert!(file.load()?.is_none());
///
/// file.remove()?; // in `reset`
/// assert!(!path.exists());
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StateFile {
    path: PathBuf,
    version: u32,
    magic: [u8; 4],
    tag: u8,
}

/// What a [`StateFile`] holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Saved {
    /// The view version that wrote the file.
    pub version: u32,
    /// The last seq the state reflects (`None`: nothing applied).
    pub since: Option<Seq>,
    /// The tag byte the writer chose (see [`StateFile::tag`]); `0` by default.
    pub tag: u8,
    /// The state, as saved.
    pub bytes: Bytes,
}

impl Saved {
    /// The checkpoint to return from `View::load`.
    pub fn checkpoint(&self) -> Checkpoint {
        Checkpoint {
            version: self.version,
            since: self.since,
        }
    }
}

impl StateFile {
    /// The magic bytes a state file starts with unless [`magic`](Self::magic) says
    /// otherwise: ASCII `FLST`.
    pub const MAGIC: [u8; 4] = *b"FLST";
    /// The layout version this build writes and reads (bytes 4..6).
    pub const FORMAT_VERSION: u16 = 1;
    /// Bytes before the state.
    pub const HEADER_LEN: usize = 28;
    /// Bytes after the state (the CRC32C).
    pub const TRAILER_LEN: usize = 4;

    /// The state file at `path` of a view at `version` (its `View::version()`).
    pub fn new(path: impl Into<PathBuf>, version: u32) -> StateFile {
        StateFile {
            path: path.into(),
            version,
            magic: Self::MAGIC,
            tag: 0,
        }
    }

    /// Uses other magic bytes, so that a file of one kind is never read as another.
    /// Default: [`StateFile::MAGIC`].
    pub fn magic(mut self, magic: [u8; 4]) -> StateFile {
        self.magic = magic;
        self
    }

    /// A byte saved in the header for the caller's own use, such as the encoding of
    /// the state (`flumeview-reduce` stores its codec there). Default: `0`.
    pub fn tag(mut self, tag: u8) -> StateFile {
        self.tag = tag;
        self
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Where a save writes before it renames: the path plus `.tmp`.
    pub fn tmp_path(&self) -> PathBuf {
        let mut tmp = self.path.clone().into_os_string();
        tmp.push(".tmp");
        PathBuf::from(tmp)
    }

    /// The view version this file is written and loaded with.
    pub fn version(&self) -> u32 {
        self.version
    }

    /// Replaces the file with `bytes` as the state after `since`, atomically (creating
    /// the directory when missing). A crash at any point leaves the previous file or
    /// this one.
    ///
    /// # Errors
    /// [`Error::Io`]; the previous file is then intact.
    pub fn save(&self, since: Seq, bytes: &[u8]) -> Result<()> {
        let dir = parent(&self.path);
        fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        replace(&self.path, &self.encode(Some(since), bytes))
    }

    /// The saved state, when there is one written by this version of the view and it
    /// is intact; `None` otherwise (the reason is logged). Removes a temporary file
    /// left by an interrupted save first. See the type's documentation for what a view
    /// does with the answer.
    ///
    /// # Errors
    /// [`Error::Io`] when the file exists but cannot be read.
    pub fn load(&self) -> Result<Option<Saved>> {
        if self.remove_tmp()? {
            tracing::debug!(path = %self.tmp_path().display(), "removed the temporary file of an interrupted save");
        }
        let saved = match self.read() {
            Ok(Some(saved)) => saved,
            Ok(None) => return Ok(None),
            Err(e @ Error::Corrupt { .. }) => {
                tracing::warn!(error = %e, "damaged state file; the view will be rebuilt from the log");
                return Ok(None);
            }
            Err(e) => return Err(e),
        };
        if saved.version != self.version {
            tracing::info!(
                path = %self.path.display(),
                stored = saved.version,
                current = self.version,
                "the state file was written by another view version; the view will be rebuilt from the log"
            );
            return Ok(None);
        }
        Ok(Some(saved))
    }

    /// The file's content, whatever version wrote it; `None` when there is no file.
    /// For views that report damage themselves (see [`load`](Self::load) for the
    /// forgiving read).
    ///
    /// # Errors
    /// [`Error::Corrupt`] naming the path and the offset of the first wrong field when
    /// the file is damaged; [`Error::Io`] when it cannot be read.
    pub fn read(&self) -> Result<Option<Saved>> {
        match fs::read(&self.path) {
            Ok(bytes) => self.decode(Bytes::from(bytes)).map(Some),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(Error::io(&self.path, e)),
        }
    }

    /// Deletes the file and any temporary file, then fsyncs the directory.
    ///
    /// # Errors
    /// [`Error::Io`] when a file exists but cannot be deleted.
    pub fn remove(&self) -> Result<()> {
        let tmp = self.remove_tmp()?;
        let state = remove_if_present(&self.path)?;
        if tmp || state {
            sync_dir(parent(&self.path))?;
        }
        Ok(())
    }

    /// Deletes a temporary file left by an interrupted save; returns whether there was
    /// one.
    ///
    /// # Errors
    /// [`Error::Io`] when it exists but cannot be deleted.
    pub fn remove_tmp(&self) -> Result<bool> {
        remove_if_present(&self.tmp_path())
    }

    /// The file's bytes for `bytes` as the state after `since`: header, state, CRC32C.
    pub fn encode(&self, since: Option<Seq>, bytes: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(Self::HEADER_LEN + bytes.len() + Self::TRAILER_LEN);
        out.extend_from_slice(&self.magic);
        out.extend_from_slice(&Self::FORMAT_VERSION.to_le_bytes());
        out.push(self.tag);
        out.push(u8::from(since.is_some()));
        out.extend_from_slice(&self.version.to_le_bytes());
        out.extend_from_slice(&since.unwrap_or(0).to_le_bytes());
        out.extend_from_slice(&(bytes.len() as u64).to_le_bytes());
        out.extend_from_slice(bytes);
        let crc = crc32c::crc32c(&out);
        out.extend_from_slice(&crc.to_le_bytes());
        out
    }

    /// Parses a whole file's `bytes`, checking everything but the state's own
    /// encoding. The state in the answer is a slice of `bytes`, not a copy.
    ///
    /// # Errors
    /// [`Error::Corrupt`] naming the path and the offset of the first wrong field.
    pub fn decode(&self, bytes: Bytes) -> Result<Saved> {
        let corrupt = |offset: usize, reason: String| Error::Corrupt {
            path: self.path.clone(),
            offset: offset as u64,
            reason,
        };
        let len = bytes.len();
        let overhead = Self::HEADER_LEN + Self::TRAILER_LEN;
        if len < overhead {
            return Err(corrupt(
                len,
                format!(
                    "the state file is truncated: {len} bytes, shorter than the {overhead} of an empty one"
                ),
            ));
        }
        let header = || -> Result<_, super::DecodeError> {
            let mut r = Reader::new(&bytes);
            Ok((
                r.array::<4>()?,
                r.u16()?,
                r.u8()?,
                r.u8()?,
                r.u32()?,
                r.u64()?,
                r.u64()?,
            ))
        };
        let (magic, format, tag, flag, version, raw_since, state_len) =
            header().map_err(|e| corrupt(0, e.to_string()))?;
        if magic != self.magic {
            return Err(corrupt(
                0,
                format!(
                    "not this kind of state file (magic {:?} expected, found {:?})",
                    String::from_utf8_lossy(&self.magic),
                    String::from_utf8_lossy(&magic)
                ),
            ));
        }
        if format != Self::FORMAT_VERSION {
            return Err(corrupt(
                4,
                format!(
                    "unknown state file format version {format} (this build reads {})",
                    Self::FORMAT_VERSION
                ),
            ));
        }
        if (overhead as u64).checked_add(state_len) != Some(len as u64) {
            return Err(corrupt(
                20,
                format!(
                    "the header claims a {state_len}-byte state but the file holds {} bytes for it (truncated or damaged)",
                    len - overhead
                ),
            ));
        }
        let body_end = len - Self::TRAILER_LEN;
        let stored = Reader::at(&bytes, body_end)
            .u32()
            .map_err(|e| corrupt(body_end, e.to_string()))?;
        let computed = crc32c::crc32c(&bytes[..body_end]);
        if stored != computed {
            return Err(corrupt(
                body_end,
                format!("checksum mismatch (stored {stored:#010x}, computed {computed:#010x})"),
            ));
        }
        let since = match flag {
            0 if raw_since == 0 => None,
            0 => return Err(corrupt(12, "since is set but its flag says absent".into())),
            1 => Some(raw_since),
            flag => return Err(corrupt(7, format!("invalid since flag {flag}"))),
        };
        Ok(Saved {
            version,
            since,
            tag,
            bytes: bytes.slice(Self::HEADER_LEN..body_end),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::durable::hexdump;
    use proptest::prelude::*;

    fn tempdir() -> tempfile::TempDir {
        tempfile::tempdir().expect("a temporary directory")
    }

    fn sample() -> (StateFile, Vec<u8>) {
        (
            StateFile::new("dir/view.state", 3),
            br#"{"count":42}"#.to_vec(),
        )
    }

    #[test]
    fn snapshot_state_file() {
        let (file, state) = sample();
        insta::assert_snapshot!(hexdump(&file.encode(Some(41), &state)));
    }

    #[test]
    fn snapshot_state_file_with_magic_and_tag_without_since() {
        let file = StateFile::new("x", 1).magic(*b"FVRS").tag(2);
        insta::assert_snapshot!(hexdump(&file.encode(None, &[0x00])));
    }

    #[test]
    fn round_trips() -> Result<()> {
        let (file, state) = sample();
        let saved = file.decode(Bytes::from(file.encode(Some(41), &state)))?;
        assert_eq!(
            saved,
            Saved {
                version: 3,
                since: Some(41),
                tag: 0,
                bytes: Bytes::from(state)
            }
        );
        let file = StateFile::new("x", u32::MAX).tag(7);
        let bytes = file.encode(None, b"");
        assert_eq!(bytes.len(), StateFile::HEADER_LEN + StateFile::TRAILER_LEN);
        let saved = file.decode(Bytes::from(bytes))?;
        assert_eq!((saved.version, saved.since, saved.tag), (u32::MAX, None, 7));
        assert!(saved.bytes.is_empty());
        Ok(())
    }

    fn offset(result: Result<Saved>) -> (u64, String) {
        match result {
            Err(Error::Corrupt { offset, reason, .. }) => (offset, reason),
            other => panic!("expected Corrupt, got {other:?}"),
        }
    }

    #[test]
    fn each_damage_is_named_with_its_offset() {
        let (file, state) = sample();
        let good = file.encode(Some(41), &state);
        let decode = |bytes: Vec<u8>| file.decode(Bytes::from(bytes));

        let (at, why) = offset(decode(Vec::new()));
        assert_eq!(at, 0);
        assert!(why.contains("truncated"), "{why}");

        let mut bad = good.clone();
        bad[0] = b'X';
        let (at, why) = offset(decode(bad));
        assert_eq!(at, 0);
        assert!(why.contains("magic"), "{why}");
        // Another kind's magic is refused too.
        let (at, _) = offset(
            file.clone()
                .magic(*b"FVRS")
                .decode(Bytes::from(good.clone())),
        );
        assert_eq!(at, 0);

        let mut bad = good.clone();
        bad[4] = 2;
        let (at, why) = offset(decode(bad));
        assert_eq!(at, 4);
        assert!(why.contains("format version 2"), "{why}");

        let mut bad = good.clone();
        bad.truncate(good.len() - 1);
        assert_eq!(offset(decode(bad)).0, 20);

        let mut bad = good.clone();
        bad.extend_from_slice(b"junk");
        assert_eq!(offset(decode(bad)).0, 20);

        // A length field claiming an absurd size is compared, never allocated.
        let mut bad = good.clone();
        bad[20..28].copy_from_slice(&u64::MAX.to_le_bytes());
        assert_eq!(offset(decode(bad)).0, 20);

        let mut bad = good.clone();
        bad[StateFile::HEADER_LEN] ^= 0x01;
        let (at, why) = offset(decode(bad));
        assert_eq!(at as usize, good.len() - StateFile::TRAILER_LEN);
        assert!(why.contains("checksum"), "{why}");
    }

    /// Fields that the CRC covers but that are invalid in themselves (a writer bug, not
    /// damage) are still rejected with their own offset.
    #[test]
    fn invalid_fields_under_a_valid_crc_are_rejected() {
        let (file, state) = sample();
        let reseal = |mut bytes: Vec<u8>| {
            let end = bytes.len() - StateFile::TRAILER_LEN;
            let crc = crc32c::crc32c(&bytes[..end]);
            bytes[end..].copy_from_slice(&crc.to_le_bytes());
            Bytes::from(bytes)
        };
        let mut bad = file.encode(Some(41), &state);
        bad[7] = 2;
        assert_eq!(offset(file.decode(reseal(bad))).0, 7);

        let mut bad = file.encode(Some(41), &state);
        bad[7] = 0;
        assert_eq!(offset(file.decode(reseal(bad))).0, 12);
    }

    #[test]
    fn load_answers_none_for_missing_other_version_and_damage() -> Result<()> {
        let dir = tempdir();
        let file = StateFile::new(dir.path().join("nested/v.state"), 1);
        assert_eq!(file.load()?, None);
        assert_eq!(file.read()?, None);
        file.save(5, b"five")?;
        let saved = file.load()?.expect("saved");
        assert_eq!(
            saved.checkpoint(),
            Checkpoint {
                version: 1,
                since: Some(5)
            }
        );
        assert_eq!(&saved.bytes[..], b"five");

        // Another version: `read` shows it, `load` does not offer it.
        let newer = StateFile::new(file.path(), 2);
        assert_eq!(newer.load()?, None);
        assert_eq!(newer.read()?.map(|s| s.version), Some(1));

        // Damage: `read` says where, `load` answers None.
        let mut bytes = fs::read(file.path()).map_err(|e| Error::io(file.path(), e))?;
        bytes[StateFile::HEADER_LEN] ^= 0x80;
        fs::write(file.path(), &bytes).map_err(|e| Error::io(file.path(), e))?;
        assert!(matches!(
            file.read(),
            Err(Error::Corrupt { offset: 32, .. })
        ));
        assert_eq!(file.load()?, None);

        file.remove()?;
        assert!(!file.path().exists());
        file.remove()?; // twice is fine
        Ok(())
    }

    #[test]
    fn a_leftover_tmp_never_replaces_the_state_and_load_removes_it() -> Result<()> {
        let dir = tempdir();
        let file = StateFile::new(dir.path().join("v.state"), 1);
        file.save(1, b"committed")?;
        assert!(!file.tmp_path().exists());
        fs::write(file.tmp_path(), b"half-writ").map_err(|e| Error::io("tmp", e))?;
        assert_eq!(&file.load()?.expect("saved").bytes[..], b"committed");
        assert!(!file.tmp_path().exists());
        Ok(())
    }

    #[test]
    fn an_unreadable_file_is_an_error_not_a_rebuild() -> Result<()> {
        let dir = tempdir();
        // A directory where the file should be: reading it fails with an I/O error.
        let file = StateFile::new(dir.path().to_path_buf(), 1);
        assert!(matches!(file.load(), Err(Error::Io { .. })));
        Ok(())
    }

    proptest! {
        /// Random damage to a state file (flipped bits, a cut, junk appended, a byte
        /// overwritten) is always detected, never a panic.
        #[test]
        fn random_damage_is_always_detected(
            state in proptest::collection::vec(any::<u8>(), 0..64),
            version in any::<u32>(),
            since in proptest::option::of(any::<u64>()),
            flips in proptest::collection::vec(any::<prop::sample::Index>(), 1..4),
            cut in any::<prop::sample::Index>(),
            junk in proptest::collection::vec(any::<u8>(), 1..8),
        ) {
            let file = StateFile::new("x", version);
            let good = file.encode(since, &state);
            prop_assert!(file.decode(Bytes::from(good.clone())).is_ok());

            // One to three flipped bits: CRC32C detects every error of up to 3 bits
            // at these lengths (flips of one bit twice cancel; skip those).
            let mut flipped = good.clone();
            for bit in &flips {
                let at = bit.index(good.len() * 8);
                flipped[at / 8] ^= 1 << (at % 8);
            }
            if flipped != good {
                prop_assert!(file.decode(Bytes::from(flipped)).is_err());
            }

            let truncated = good[..cut.index(good.len())].to_vec();
            prop_assert!(file.decode(Bytes::from(truncated)).is_err());

            let mut longer = good.clone();
            longer.extend_from_slice(&junk);
            prop_assert!(file.decode(Bytes::from(longer)).is_err());
        }

        /// Arbitrary bytes never panic the decoder.
        #[test]
        fn junk_never_panics(junk in proptest::collection::vec(any::<u8>(), 0..128)) {
            let _ = StateFile::new("x", 1).decode(Bytes::from(junk));
        }
    }
}
