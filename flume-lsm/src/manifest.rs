//! The manifest: the list of live runs, with the view version and the `since` they
//! reflect, replaced atomically at every checkpoint and compaction.
//!
//! ```text
//! offset  size  field
//!      0     4  magic "FVIM"
//!      4     2  format version, u16 LE (1)
//!      6     1  since flag (0 none, 1 present)
//!      7     1  reserved, 0
//!      8     4  view version, u32 LE
//!     12     8  since, u64 LE (0 when the flag is 0)
//!     20     4  run count n, u32 LE
//!     24  16*n  runs, oldest first: id u64 LE, level u32 LE, reserved u32 (0)
//! 24+16n     4  CRC32C of bytes 0 .. 24+16n, u32 LE
//! ```

use std::path::Path;

use flume_core::{Error, Result, Seq};

use crate::coding::{u16_at, u32_at, u64_at};

/// The first four bytes of a manifest.
pub(crate) const MAGIC: [u8; 4] = *b"FVIM";
/// The manifest format version this crate writes and reads.
pub(crate) const FORMAT_VERSION: u16 = 1;
const HEADER_LEN: usize = 24;
const RUN_LEN: usize = 16;

/// A run as the manifest names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct RunRef {
    pub(crate) id: u64,
    pub(crate) level: u32,
}

/// The manifest's content.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Manifest {
    pub(crate) version: u32,
    pub(crate) since: Option<Seq>,
    /// Oldest first.
    pub(crate) runs: Vec<RunRef>,
}

impl Manifest {
    pub(crate) fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(HEADER_LEN + RUN_LEN * self.runs.len() + 4);
        out.extend_from_slice(&MAGIC);
        out.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
        out.push(u8::from(self.since.is_some()));
        out.push(0);
        out.extend_from_slice(&self.version.to_le_bytes());
        out.extend_from_slice(&self.since.unwrap_or(0).to_le_bytes());
        out.extend_from_slice(&(self.runs.len() as u32).to_le_bytes());
        for run in &self.runs {
            out.extend_from_slice(&run.id.to_le_bytes());
            out.extend_from_slice(&run.level.to_le_bytes());
            out.extend_from_slice(&0u32.to_le_bytes());
        }
        let crc = crc32c::crc32c(&out);
        out.extend_from_slice(&crc.to_le_bytes());
        out
    }

    /// Parses a manifest.
    ///
    /// # Errors
    /// [`Error::Corrupt`] naming `path` and the offset of the first wrong field.
    pub(crate) fn decode(path: &Path, bytes: &[u8]) -> Result<Manifest> {
        let corrupt = |offset: usize, reason: String| Error::Corrupt {
            path: path.to_path_buf(),
            offset: offset as u64,
            reason,
        };
        let len = bytes.len();
        if len < HEADER_LEN + 4 {
            return Err(corrupt(
                len,
                format!("the manifest is truncated: {len} bytes"),
            ));
        }
        if bytes[0..4] != MAGIC {
            return Err(corrupt(
                0,
                "not a flume-lsm manifest (wrong magic bytes)".into(),
            ));
        }
        let format = u16_at(bytes, 4);
        if format != FORMAT_VERSION {
            return Err(corrupt(
                4,
                format!(
                    "unknown manifest format version {format} (this build reads {FORMAT_VERSION})"
                ),
            ));
        }
        let count = u64::from(u32_at(bytes, 20));
        if (HEADER_LEN as u64 + 4).checked_add(count * RUN_LEN as u64) != Some(len as u64) {
            return Err(corrupt(
                20,
                format!("the manifest names {count} runs but is {len} bytes long (truncated or damaged)"),
            ));
        }
        let body = len - 4;
        let stored = u32_at(bytes, body);
        let computed = crc32c::crc32c(&bytes[..body]);
        if stored != computed {
            return Err(corrupt(
                body,
                format!("checksum mismatch (stored {stored:#010x}, computed {computed:#010x})"),
            ));
        }
        if bytes[7] != 0 {
            return Err(corrupt(7, "reserved byte is not zero".into()));
        }
        let raw_since = u64_at(bytes, 12);
        let since = match bytes[6] {
            0 if raw_since == 0 => None,
            0 => return Err(corrupt(12, "since is set but its flag says absent".into())),
            1 => Some(raw_since),
            flag => return Err(corrupt(6, format!("invalid since flag {flag}"))),
        };
        let mut runs = Vec::with_capacity(count as usize);
        for i in 0..count as usize {
            let at = HEADER_LEN + i * RUN_LEN;
            let run = RunRef {
                id: u64_at(bytes, at),
                level: u32_at(bytes, at + 8),
            };
            if u32_at(bytes, at + 12) != 0 {
                return Err(corrupt(at + 12, "reserved field is not zero".into()));
            }
            if runs.iter().any(|r: &RunRef| r.id == run.id) {
                return Err(corrupt(at, format!("run {} is listed twice", run.id)));
            }
            runs.push(run);
        }
        Ok(Manifest {
            version: u32_at(bytes, 8),
            since,
            runs,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use flume_core::durable::hexdump;
    use proptest::prelude::*;

    fn sample() -> Manifest {
        Manifest {
            version: 3,
            since: Some(41),
            runs: vec![RunRef { id: 7, level: 1 }, RunRef { id: 12, level: 0 }],
        }
    }

    #[test]
    fn round_trip() -> Result<()> {
        for m in [
            sample(),
            Manifest {
                version: 0,
                since: None,
                runs: vec![],
            },
        ] {
            assert_eq!(Manifest::decode(Path::new("m"), &m.encode())?, m);
        }
        Ok(())
    }

    #[test]
    fn snapshot_manifest() {
        insta::assert_snapshot!(hexdump(&sample().encode()));
    }

    #[test]
    fn damage_is_named_with_its_offset() {
        let good = sample().encode();
        let offset = |bytes: &[u8]| match Manifest::decode(Path::new("m"), bytes) {
            Err(Error::Corrupt { offset, .. }) => offset,
            other => panic!("expected Corrupt, got {other:?}"),
        };
        assert_eq!(offset(&good[..10]), 10);
        let mut bad = good.clone();
        bad[1] = b'x';
        assert_eq!(offset(&bad), 0);
        let mut bad = good.clone();
        bad[4] = 9;
        assert_eq!(offset(&bad), 4);
        let mut bad = good.clone();
        bad[20] = 200;
        assert_eq!(offset(&bad), 20);
        let mut bad = good.clone();
        bad[30] ^= 1;
        assert_eq!(offset(&bad), (good.len() - 4) as u64);
    }

    proptest! {
        #[test]
        fn any_damage_is_detected(bit in any::<prop::sample::Index>(), cut in any::<prop::sample::Index>()) {
            let good = sample().encode();
            let mut flipped = good.clone();
            let at = bit.index(good.len() * 8);
            flipped[at / 8] ^= 1 << (at % 8);
            prop_assert!(Manifest::decode(Path::new("m"), &flipped).is_err());
            prop_assert!(Manifest::decode(Path::new("m"), &good[..cut.index(good.len())]).is_err());
        }

        #[test]
        fn junk_never_panics(junk in proptest::collection::vec(any::<u8>(), 0..80)) {
            let _ = Manifest::decode(Path::new("m"), &junk);
        }
    }
}
