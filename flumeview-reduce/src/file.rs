//! The state file: its byte layout, and how it is written atomically and read back.
//!
//! The layout is documented byte by byte in `docs/format.md`, section
//! "flumeview-reduce state file"; `tests::snapshot_*` pin it.
//!
//! ```text
//! offset  size  field
//!      0     4  magic "FVRS"
//!      4     2  file format version, u16 LE (1)
//!      6     1  codec id (1 JSON, 2 MessagePack)
//!      7     1  since flag (0 none, 1 present)
//!      8     4  view version, u32 LE
//!     12     8  since, u64 LE (0 when the flag is 0)
//!     20     8  payload length n, u64 LE
//!     28     n  payload: the state, encoded with the codec
//!   28+n     4  CRC32C of bytes 0 .. 28+n, u32 LE
//! ```

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use bytes::Bytes;
use flume_core::{Error, Result, Seq};

use crate::StateCodec;

/// The state file's name inside the view's directory.
pub(crate) const STATE_FILE: &str = "reduce.state";
/// The temporary file a checkpoint is written to before it is renamed over [`STATE_FILE`].
pub(crate) const TMP_FILE: &str = "reduce.state.tmp";

/// The first four bytes of every state file.
pub(crate) const MAGIC: [u8; 4] = *b"FVRS";
/// The file format version this crate writes and reads.
pub(crate) const FORMAT_VERSION: u16 = 1;
/// Bytes before the payload.
pub(crate) const HEADER_LEN: usize = 28;
/// Bytes after the payload (the CRC).
pub(crate) const TRAILER_LEN: usize = 4;

/// The header fields of a state file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Header {
    /// How the payload is encoded.
    pub(crate) codec: StateCodec,
    /// The view version that wrote the file.
    pub(crate) version: u32,
    /// The last seq the state reflects.
    pub(crate) since: Option<Seq>,
}

/// Lays out a complete state file: header, payload, CRC.
pub(crate) fn encode(header: Header, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER_LEN + payload.len() + TRAILER_LEN);
    out.extend_from_slice(&MAGIC);
    out.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
    out.push(header.codec.id());
    out.push(u8::from(header.since.is_some()));
    out.extend_from_slice(&header.version.to_le_bytes());
    out.extend_from_slice(&header.since.unwrap_or(0).to_le_bytes());
    out.extend_from_slice(&(payload.len() as u64).to_le_bytes());
    out.extend_from_slice(payload);
    let crc = crc32c::crc32c(&out);
    out.extend_from_slice(&crc.to_le_bytes());
    out
}

/// Parses a state file, checking everything but the payload's own encoding.
/// Returns the header and the payload.
///
/// # Errors
/// [`Error::Corrupt`] naming `path` and the offset of the first field that is wrong.
pub(crate) fn decode(path: &Path, bytes: &Bytes) -> Result<(Header, Bytes)> {
    let corrupt = |offset: usize, reason: String| Error::Corrupt {
        path: path.to_path_buf(),
        offset: offset as u64,
        reason,
    };
    let len = bytes.len();
    if len < HEADER_LEN + TRAILER_LEN {
        return Err(corrupt(
            len,
            format!(
                "the state file is truncated: {len} bytes, shorter than the {} of an empty one",
                HEADER_LEN + TRAILER_LEN
            ),
        ));
    }
    if bytes[0..4] != MAGIC {
        return Err(corrupt(
            0,
            "not a flumeview-reduce state file (wrong magic bytes)".into(),
        ));
    }
    let format = u16::from_le_bytes([bytes[4], bytes[5]]);
    if format != FORMAT_VERSION {
        return Err(corrupt(
            4,
            format!(
                "unknown state file format version {format} (this build reads {FORMAT_VERSION})"
            ),
        ));
    }
    let payload_len = u64_at(bytes, 20);
    let expected = (HEADER_LEN + TRAILER_LEN) as u64;
    if expected.checked_add(payload_len) != Some(len as u64) {
        return Err(corrupt(
            20,
            format!(
                "the header claims a {payload_len}-byte state but the file holds {} bytes for it (truncated or damaged)",
                len - HEADER_LEN - TRAILER_LEN
            ),
        ));
    }
    let body_end = len - TRAILER_LEN;
    let stored_crc = u32::from_le_bytes([
        bytes[body_end],
        bytes[body_end + 1],
        bytes[body_end + 2],
        bytes[body_end + 3],
    ]);
    let crc = crc32c::crc32c(&bytes[..body_end]);
    if crc != stored_crc {
        return Err(corrupt(
            body_end,
            format!("checksum mismatch (stored {stored_crc:#010x}, computed {crc:#010x})"),
        ));
    }
    let codec = StateCodec::from_id(bytes[6])
        .ok_or_else(|| corrupt(6, format!("unknown codec id {}", bytes[6])))?;
    let raw_since = u64_at(bytes, 12);
    let since = match bytes[7] {
        0 if raw_since == 0 => None,
        0 => return Err(corrupt(12, "since is set but its flag says absent".into())),
        1 => Some(raw_since),
        flag => return Err(corrupt(7, format!("invalid since flag {flag}"))),
    };
    let version = u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]);
    let header = Header {
        codec,
        version,
        since,
    };
    Ok((header, bytes.slice(HEADER_LEN..body_end)))
}

fn u64_at(bytes: &[u8], at: usize) -> u64 {
    let mut array = [0u8; 8];
    array.copy_from_slice(&bytes[at..at + 8]);
    u64::from_le_bytes(array)
}

/// The paths of the state file and its temporary sibling in `dir`.
#[derive(Debug, Clone)]
pub(crate) struct Paths {
    pub(crate) dir: PathBuf,
    pub(crate) state: PathBuf,
    pub(crate) tmp: PathBuf,
}

impl Paths {
    pub(crate) fn new(dir: PathBuf) -> Self {
        Paths {
            state: dir.join(STATE_FILE),
            tmp: dir.join(TMP_FILE),
            dir,
        }
    }

    /// Reads the state file; `None` when there is none.
    ///
    /// # Errors
    /// [`Error::Io`] when the file exists but cannot be read.
    pub(crate) fn read(&self) -> Result<Option<Bytes>> {
        match fs::read(&self.state) {
            Ok(bytes) => Ok(Some(Bytes::from(bytes))),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(Error::io(&self.state, e)),
        }
    }

    /// Replaces the state file with `bytes`, atomically: writes the temporary file,
    /// fsyncs it, renames it over the state file, fsyncs the directory. A crash at any
    /// point leaves either the old file or the new one, plus perhaps a stray temporary
    /// file that [`Paths::remove_tmp`] cleans up.
    ///
    /// # Errors
    /// [`Error::Io`] naming the file or directory whose operation failed.
    pub(crate) fn write_atomic(&self, bytes: &[u8]) -> Result<()> {
        fs::create_dir_all(&self.dir).map_err(|e| Error::io(&self.dir, e))?;
        let mut file = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .open(&self.tmp)
            .map_err(|e| Error::io(&self.tmp, e))?;
        file.write_all(bytes).map_err(|e| Error::io(&self.tmp, e))?;
        file.sync_all().map_err(|e| Error::io(&self.tmp, e))?;
        drop(file);
        fs::rename(&self.tmp, &self.state).map_err(|e| Error::io(&self.state, e))?;
        self.sync_dir()
    }

    /// Deletes the state file and any temporary file, then fsyncs the directory.
    ///
    /// # Errors
    /// [`Error::Io`] when a file exists but cannot be deleted.
    pub(crate) fn remove(&self) -> Result<()> {
        let removed_tmp = self.remove_tmp()?;
        let removed_state = remove_if_present(&self.state)?;
        if removed_tmp || removed_state {
            self.sync_dir()?;
        }
        Ok(())
    }

    /// Deletes a temporary file left by a checkpoint that a crash interrupted.
    /// Returns whether there was one.
    ///
    /// # Errors
    /// [`Error::Io`] when it exists but cannot be deleted.
    pub(crate) fn remove_tmp(&self) -> Result<bool> {
        remove_if_present(&self.tmp)
    }

    #[cfg(unix)]
    fn sync_dir(&self) -> Result<()> {
        File::open(&self.dir)
            .and_then(|dir| dir.sync_all())
            .map_err(|e| Error::io(&self.dir, e))
    }

    /// Directories cannot be opened for fsync on this platform; the rename is what
    /// the OS offers.
    #[cfg(not(unix))]
    fn sync_dir(&self) -> Result<()> {
        Ok(())
    }
}

fn remove_if_present(path: &Path) -> Result<bool> {
    match fs::remove_file(path) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(Error::io(path, e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use flume_core::testing::hexdump;

    use proptest::prelude::*;

    fn sample() -> (Header, Vec<u8>) {
        (
            Header {
                codec: StateCodec::Json,
                version: 3,
                since: Some(41),
            },
            br#"{"count":42}"#.to_vec(),
        )
    }

    #[test]
    fn round_trip() -> Result<()> {
        let (header, payload) = sample();
        let bytes = Bytes::from(encode(header, &payload));
        let (back, body) = decode(Path::new("x"), &bytes)?;
        assert_eq!(back, header);
        assert_eq!(&body[..], &payload[..]);
        Ok(())
    }

    #[test]
    fn round_trip_without_since_and_empty_payload() -> Result<()> {
        let header = Header {
            codec: StateCodec::MsgPack,
            version: u32::MAX,
            since: None,
        };
        let bytes = Bytes::from(encode(header, b""));
        assert_eq!(bytes.len(), HEADER_LEN + TRAILER_LEN);
        let (back, body) = decode(Path::new("x"), &bytes)?;
        assert_eq!(back, header);
        assert!(body.is_empty());
        Ok(())
    }

    #[test]
    fn snapshot_json_state_file() {
        let (header, payload) = sample();
        insta::assert_snapshot!(hexdump(&encode(header, &payload)));
    }

    #[test]
    fn snapshot_msgpack_state_file_without_since() {
        let header = Header {
            codec: StateCodec::MsgPack,
            version: 1,
            since: None,
        };
        // MessagePack for the integer 0.
        insta::assert_snapshot!(hexdump(&encode(header, &[0x00])));
    }

    fn reason(result: Result<(Header, Bytes)>) -> (u64, String) {
        match result {
            Err(Error::Corrupt { offset, reason, .. }) => (offset, reason),
            other => panic!("expected Corrupt, got {other:?}"),
        }
    }

    #[test]
    fn each_damage_is_named_with_its_offset() {
        let (header, payload) = sample();
        let good = encode(header, &payload);
        let path = Path::new("dir/reduce.state");

        let (offset, why) = reason(decode(path, &Bytes::new()));
        assert_eq!(offset, 0);
        assert!(why.contains("truncated"), "{why}");

        let mut bad = good.clone();
        bad[0] = b'X';
        assert_eq!(reason(decode(path, &Bytes::from(bad))).0, 0);

        let mut bad = good.clone();
        bad[4] = 2;
        let (offset, why) = reason(decode(path, &Bytes::from(bad)));
        assert_eq!(offset, 4);
        assert!(why.contains("format version 2"), "{why}");

        let mut bad = good.clone();
        bad.truncate(good.len() - 1);
        assert_eq!(reason(decode(path, &Bytes::from(bad))).0, 20);

        let mut bad = good.clone();
        bad.extend_from_slice(b"junk");
        assert_eq!(reason(decode(path, &Bytes::from(bad))).0, 20);

        // A length field claiming an absurd size is compared, never allocated.
        let mut bad = good.clone();
        bad[20..28].copy_from_slice(&u64::MAX.to_le_bytes());
        assert_eq!(reason(decode(path, &Bytes::from(bad))).0, 20);

        let mut bad = good.clone();
        bad[HEADER_LEN] ^= 0x01;
        let (offset, why) = reason(decode(path, &Bytes::from(bad)));
        assert_eq!(offset as usize, good.len() - TRAILER_LEN);
        assert!(why.contains("checksum"), "{why}");
    }

    /// Fields that the CRC covers but that are invalid in themselves (a writer bug, not
    /// damage) are still rejected with their own offset.
    #[test]
    fn invalid_fields_under_a_valid_crc_are_rejected() {
        let (header, payload) = sample();
        let reseal = |mut bytes: Vec<u8>| {
            let end = bytes.len() - TRAILER_LEN;
            let crc = crc32c::crc32c(&bytes[..end]);
            bytes[end..].copy_from_slice(&crc.to_le_bytes());
            Bytes::from(bytes)
        };
        let path = Path::new("x");

        let mut bad = encode(header, &payload);
        bad[6] = 9;
        assert_eq!(reason(decode(path, &reseal(bad))).0, 6);

        let mut bad = encode(header, &payload);
        bad[7] = 2;
        assert_eq!(reason(decode(path, &reseal(bad))).0, 7);

        let mut bad = encode(header, &payload);
        bad[7] = 0;
        assert_eq!(reason(decode(path, &reseal(bad))).0, 12);
    }

    proptest! {
        /// Any single flipped bit and any truncation is detected, never a panic.
        #[test]
        fn damage_is_always_detected(
            payload in proptest::collection::vec(any::<u8>(), 0..64),
            version in any::<u32>(),
            since in proptest::option::of(any::<u64>()),
            bit in any::<prop::sample::Index>(),
            cut in any::<prop::sample::Index>(),
        ) {
            let header = Header { codec: StateCodec::MsgPack, version, since };
            let good = encode(header, &payload);
            let path = Path::new("x");

            let mut flipped = good.clone();
            let at = bit.index(good.len() * 8);
            flipped[at / 8] ^= 1 << (at % 8);
            prop_assert!(decode(path, &Bytes::from(flipped)).is_err());

            let truncated = good[..cut.index(good.len())].to_vec();
            prop_assert!(decode(path, &Bytes::from(truncated)).is_err());
        }

        /// Arbitrary bytes never panic the decoder.
        #[test]
        fn junk_never_panics(junk in proptest::collection::vec(any::<u8>(), 0..128)) {
            let _ = decode(Path::new("x"), &Bytes::from(junk));
        }
    }

    #[test]
    fn atomic_write_replaces_and_leaves_no_tmp() -> Result<()> {
        let dir = tempfile::tempdir().map_err(|e| Error::io("tempdir", e))?;
        let paths = Paths::new(dir.path().join("nested/view"));
        assert_eq!(paths.read()?, None);
        paths.write_atomic(b"first")?;
        paths.write_atomic(b"second")?;
        assert_eq!(paths.read()?.as_deref(), Some(&b"second"[..]));
        assert!(!paths.tmp.exists());
        paths.remove()?;
        assert_eq!(paths.read()?, None);
        // Removing twice is fine.
        paths.remove()?;
        Ok(())
    }

    #[test]
    fn a_leftover_tmp_does_not_replace_the_state() -> Result<()> {
        let dir = tempfile::tempdir().map_err(|e| Error::io("tempdir", e))?;
        let paths = Paths::new(dir.path().to_path_buf());
        paths.write_atomic(b"committed")?;
        fs::write(&paths.tmp, b"half-writ").map_err(|e| Error::io(&paths.tmp, e))?;
        assert_eq!(paths.read()?.as_deref(), Some(&b"committed"[..]));
        assert!(paths.remove_tmp()?);
        assert!(!paths.remove_tmp()?);
        Ok(())
    }
}
