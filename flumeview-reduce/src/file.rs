//! The state file: a [`StateFile`] (see `flume_core::durable`) with its own magic,
//! `FVRS`, and the codec id in the tag byte. Documented byte by byte in
//! `docs/format.md`, sections "State file" and "flumeview-reduce state file";
//! `tests::snapshot_*` pin it.
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

use std::path::Path;

use flume_core::durable::{Saved, StateFile};
use flume_core::{Error, Result};

use crate::StateCodec;

/// The state file's name inside the view's directory.
pub(crate) const STATE_FILE: &str = "reduce.state";
/// The temporary file a checkpoint is written to before it is renamed over [`STATE_FILE`].
#[cfg(test)]
pub(crate) const TMP_FILE: &str = "reduce.state.tmp";
/// The first four bytes of every state file.
pub(crate) const MAGIC: [u8; 4] = *b"FVRS";
/// Bytes before the payload.
pub(crate) const HEADER_LEN: usize = StateFile::HEADER_LEN;

/// The state file in `dir` of a view at `version`, writing with `codec`.
pub(crate) fn state_file(dir: &Path, version: u32, codec: StateCodec) -> StateFile {
    StateFile::new(dir.join(STATE_FILE), version)
        .magic(MAGIC)
        .tag(codec.id())
}

/// The codec a saved file's payload is encoded with.
///
/// # Errors
/// [`Error::Corrupt`] at byte 6 for an id no codec has.
pub(crate) fn codec_of(file: &StateFile, saved: &Saved) -> Result<StateCodec> {
    StateCodec::from_id(saved.tag).ok_or_else(|| Error::Corrupt {
        path: file.path().to_path_buf(),
        offset: 6,
        reason: format!("unknown codec id {}", saved.tag),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use flume_core::durable::hexdump;

    fn json() -> StateFile {
        state_file(Path::new("dir"), 3, StateCodec::Json)
    }

    const PAYLOAD: &[u8] = br#"{"count":42}"#;

    /// The bytes are those of the format's first version, which every reduce state
    /// file on disk has: the snapshots are unchanged since then.
    #[test]
    fn snapshot_json_state_file() {
        insta::assert_snapshot!(hexdump(&json().encode(Some(41), PAYLOAD)));
    }

    #[test]
    fn snapshot_msgpack_state_file_without_since() {
        let file = state_file(Path::new("dir"), 1, StateCodec::MsgPack);
        // MessagePack for the integer 0.
        insta::assert_snapshot!(hexdump(&file.encode(None, &[0x00])));
    }

    #[test]
    fn round_trip_names_the_codec() -> Result<()> {
        for codec in [StateCodec::Json, StateCodec::MsgPack] {
            let file = state_file(Path::new("dir"), 3, codec);
            let saved = file.decode(Bytes::from(file.encode(Some(41), PAYLOAD)))?;
            assert_eq!((saved.version, saved.since), (3, Some(41)));
            assert_eq!(&saved.bytes[..], PAYLOAD);
            assert_eq!(codec_of(&file, &saved)?, codec);
        }
        Ok(())
    }

    /// A codec id that no codec has, under a valid CRC, is rejected at its offset.
    #[test]
    fn an_unknown_codec_id_is_corrupt_at_byte_6() -> Result<()> {
        let file = json();
        let mut bytes = file.encode(Some(41), PAYLOAD);
        bytes[6] = 9;
        let end = bytes.len() - StateFile::TRAILER_LEN;
        let crc = crc32c::crc32c(&bytes[..end]);
        bytes[end..].copy_from_slice(&crc.to_le_bytes());
        let saved = file.decode(Bytes::from(bytes))?;
        match codec_of(&file, &saved) {
            Err(Error::Corrupt { offset, reason, .. }) => {
                assert_eq!(offset, 6);
                assert_eq!(reason, "unknown codec id 9");
            }
            other => panic!("expected Corrupt, got {other:?}"),
        }
        Ok(())
    }

    /// Another kind of state file is not read as a reduce state file.
    #[test]
    fn another_magic_is_corrupt_at_byte_0() {
        let other = StateFile::new("dir/reduce.state", 3);
        let bytes = Bytes::from(other.encode(Some(1), PAYLOAD));
        assert!(matches!(
            json().decode(bytes),
            Err(Error::Corrupt { offset: 0, .. })
        ));
    }
}
