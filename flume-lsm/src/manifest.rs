//! The manifest: the list of live runs, with the view version and the `since` they
//! reflect, and the [`Semantics`] and [`Retention`] they were written under, replaced
//! atomically at every checkpoint and compaction.
//!
//! Format version 2 (what this crate writes):
//!
//! ```text
//! offset  size  field
//!      0     4  magic "FVIM"
//!      4     2  format version, u16 LE (2)
//!      6     1  since flag (0 none, 1 present)
//!      7     1  semantics (0 MultiValued, 1 SingleValued)
//!      8     4  view version, u32 LE
//!     12     8  since, u64 LE (0 when the flag is 0)
//!     20     4  run count n, u32 LE
//!     24     1  retention (0 Live, 1 All, 2 Since)
//!     25     7  reserved, 0
//!     32     8  horizon, u64 LE: the h of Since(h) (0 for Live and All)
//!     40  16*n  runs, oldest first: id u64 LE, level u32 LE, reserved u32 (0)
//! 40+16n     4  CRC32C of bytes 0 .. 40+16n, u32 LE
//! ```
//!
//! Format version 1 (still read) is the same without bytes 24 .. 40: its runs start at
//! byte 24, its CRC covers bytes `0 .. 24+16n`, and its byte 7 is reserved (0). It is
//! read as [`Semantics::MultiValued`] and [`Retention::Live`], what every store that
//! wrote it (`flumeview-index`) used.

use std::path::Path;

use flume_core::{Error, Result, Seq};

use crate::coding::{u16_at, u32_at, u64_at};
use crate::{Retention, Semantics};

/// The first four bytes of a manifest.
pub(crate) const MAGIC: [u8; 4] = *b"FVIM";
/// The manifest format version this crate writes (it also reads version 1).
pub(crate) const FORMAT_VERSION: u16 = 2;
/// The first format version: no semantics, no retention.
const FORMAT_V1: u16 = 1;
/// The fields every format version has.
const COMMON_LEN: usize = 24;
/// Version 2's retention block, after the common fields.
const RETENTION_LEN: usize = 16;
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
    /// What a put hid in the runs.
    pub(crate) semantics: Semantics,
    /// What the compactions that wrote the runs kept.
    pub(crate) retention: Retention,
    /// Oldest first.
    pub(crate) runs: Vec<RunRef>,
}

impl Manifest {
    pub(crate) fn encode(&self) -> Vec<u8> {
        let header = COMMON_LEN + RETENTION_LEN;
        let mut out = Vec::with_capacity(header + RUN_LEN * self.runs.len() + 4);
        out.extend_from_slice(&MAGIC);
        out.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
        out.push(u8::from(self.since.is_some()));
        out.push(match self.semantics {
            Semantics::MultiValued => 0,
            Semantics::SingleValued => 1,
        });
        out.extend_from_slice(&self.version.to_le_bytes());
        out.extend_from_slice(&self.since.unwrap_or(0).to_le_bytes());
        out.extend_from_slice(&(self.runs.len() as u32).to_le_bytes());
        let (kind, horizon) = match self.retention {
            Retention::Live => (0u8, 0u64),
            Retention::All => (1, 0),
            Retention::Since(h) => (2, h),
        };
        out.push(kind);
        out.extend_from_slice(&[0; 7]);
        out.extend_from_slice(&horizon.to_le_bytes());
        for run in &self.runs {
            out.extend_from_slice(&run.id.to_le_bytes());
            out.extend_from_slice(&run.level.to_le_bytes());
            out.extend_from_slice(&0u32.to_le_bytes());
        }
        let crc = crc32c::crc32c(&out);
        out.extend_from_slice(&crc.to_le_bytes());
        out
    }

    /// Parses a manifest of format version 2 or 1.
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
        if len < COMMON_LEN + 4 {
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
        let header = match format {
            FORMAT_V1 => COMMON_LEN,
            FORMAT_VERSION => COMMON_LEN + RETENTION_LEN,
            _ => {
                return Err(corrupt(
                    4,
                    format!(
                        "unknown manifest format version {format} (this build reads {FORMAT_V1} and {FORMAT_VERSION})"
                    ),
                ))
            }
        };
        let count = u64::from(u32_at(bytes, 20));
        if (header as u64 + 4).checked_add(count * RUN_LEN as u64) != Some(len as u64) {
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
        let raw_since = u64_at(bytes, 12);
        let since = match bytes[6] {
            0 if raw_since == 0 => None,
            0 => return Err(corrupt(12, "since is set but its flag says absent".into())),
            1 => Some(raw_since),
            flag => return Err(corrupt(6, format!("invalid since flag {flag}"))),
        };
        let (semantics, retention) = if format == FORMAT_V1 {
            if bytes[7] != 0 {
                return Err(corrupt(7, "reserved byte is not zero".into()));
            }
            (Semantics::MultiValued, Retention::Live)
        } else {
            (
                decode_semantics(bytes[7])
                    .ok_or_else(|| corrupt(7, format!("invalid semantics {}", bytes[7])))?,
                decode_retention(bytes, &corrupt)?,
            )
        };
        let mut runs = Vec::with_capacity(count as usize);
        for i in 0..count as usize {
            let at = header + i * RUN_LEN;
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
            semantics,
            retention,
            runs,
        })
    }
}

fn decode_semantics(byte: u8) -> Option<Semantics> {
    match byte {
        0 => Some(Semantics::MultiValued),
        1 => Some(Semantics::SingleValued),
        _ => None,
    }
}

/// Version 2's retention block (bytes 24 .. 40), which the caller checked to be there.
fn decode_retention(bytes: &[u8], corrupt: &dyn Fn(usize, String) -> Error) -> Result<Retention> {
    let at = COMMON_LEN;
    if let Some(i) = (at + 1..at + 8).find(|&i| bytes[i] != 0) {
        return Err(corrupt(i, "reserved byte is not zero".into()));
    }
    let horizon = u64_at(bytes, at + 8);
    match bytes[at] {
        0 | 1 if horizon != 0 => Err(corrupt(
            at + 8,
            "a horizon is set but the retention is not Since".into(),
        )),
        0 => Ok(Retention::Live),
        1 => Ok(Retention::All),
        2 => Ok(Retention::Since(horizon)),
        kind => Err(corrupt(at, format!("invalid retention {kind}"))),
    }
}

/// Whether runs compacted under `stored` still hold everything a store with `wanted`
/// must keep, so that the store may adopt them (and compact them under `wanted` from
/// then on).
///
/// - Anything covers [`Retention::Live`]: every retention keeps the entries the live
///   answers need (a compaction only ever drops hidden entries), and what more it kept
///   is history a `Live` store does not promise (its next compactions drop it).
/// - [`Retention::All`] covers everything.
/// - [`Retention::Since`]`(a)` covers `Since(b)` when `a <= b`: it kept every entry
///   above `a` (so above `b`), and each key's newest entry at or below `b` is either
///   above `a` or its newest at or below `a`, which it kept too.
/// - Nothing else: `Live` dropped hidden history that `All` and `Since` must return,
///   and `Since(a)` dropped history at or below `a` that `All` or `Since(b)` with
///   `b < a` must return.
///
/// This holds under either [`Semantics`] (the caller compares those separately).
pub(crate) fn covers(stored: Retention, wanted: Retention) -> bool {
    match (stored, wanted) {
        (_, Retention::Live) | (Retention::All, _) => true,
        (Retention::Since(a), Retention::Since(b)) => a <= b,
        (Retention::Live | Retention::Since(_), Retention::All | Retention::Since(_)) => false,
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
            semantics: Semantics::SingleValued,
            retention: Retention::Since(17),
            runs: vec![RunRef { id: 7, level: 1 }, RunRef { id: 12, level: 0 }],
        }
    }

    /// `sample()` with MultiValued and Live, as format version 1 wrote it (the bytes of
    /// the version 1 snapshot).
    const V1_SAMPLE: &[u8] = &[
        0x46, 0x56, 0x49, 0x4d, 0x01, 0x00, 0x01, 0x00, 0x03, 0x00, 0x00, 0x00, 0x29, 0x00, 0x00,
        0x00, 0x00, 0x00, 0x00, 0x00, 0x02, 0x00, 0x00, 0x00, 0x07, 0x00, 0x00, 0x00, 0x00, 0x00,
        0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x0c, 0x00, 0x00, 0x00, 0x00,
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x41, 0x51, 0x22, 0x80,
    ];

    #[test]
    fn round_trip() -> Result<()> {
        let mut manifests = vec![Manifest {
            version: 0,
            since: None,
            semantics: Semantics::MultiValued,
            retention: Retention::Live,
            runs: vec![],
        }];
        for semantics in [Semantics::MultiValued, Semantics::SingleValued] {
            for retention in [
                Retention::Live,
                Retention::All,
                Retention::Since(0),
                Retention::Since(17),
                Retention::Since(u64::MAX),
            ] {
                manifests.push(Manifest {
                    semantics,
                    retention,
                    ..sample()
                });
            }
        }
        for m in manifests {
            let bytes = m.encode();
            assert_eq!(bytes.len(), 44 + 16 * m.runs.len());
            assert_eq!(u16_at(&bytes, 4), FORMAT_VERSION);
            assert_eq!(Manifest::decode(Path::new("m"), &bytes)?, m);
        }
        Ok(())
    }

    #[test]
    fn a_version_1_manifest_reads_as_multi_valued_and_live() -> Result<()> {
        let m = Manifest::decode(Path::new("m"), V1_SAMPLE)?;
        assert_eq!(
            m,
            Manifest {
                semantics: Semantics::MultiValued,
                retention: Retention::Live,
                ..sample()
            }
        );
        // Its reserved byte 7 is still checked (after the CRC: fix that up too).
        let mut bad = V1_SAMPLE.to_vec();
        bad[7] = 1;
        let body = bad.len() - 4;
        let crc = crc32c::crc32c(&bad[..body]);
        bad[body..].copy_from_slice(&crc.to_le_bytes());
        assert!(matches!(
            Manifest::decode(Path::new("m"), &bad),
            Err(Error::Corrupt { offset: 7, .. })
        ));
        Ok(())
    }

    #[test]
    fn invalid_retention_fields_are_named_with_their_offset() {
        let offset = |edit: &dyn Fn(&mut Vec<u8>)| {
            let mut bytes = sample().encode();
            edit(&mut bytes);
            let body = bytes.len() - 4;
            let crc = crc32c::crc32c(&bytes[..body]);
            bytes[body..].copy_from_slice(&crc.to_le_bytes());
            match Manifest::decode(Path::new("m"), &bytes) {
                Err(Error::Corrupt { offset, .. }) => offset,
                other => panic!("expected Corrupt, got {other:?}"),
            }
        };
        assert_eq!(offset(&|b| b[7] = 2), 7);
        assert_eq!(offset(&|b| b[24] = 3), 24);
        assert_eq!(offset(&|b| b[29] = 1), 29);
        // Live or All with a horizon.
        assert_eq!(offset(&|b| b[24] = 0), 32);
        assert_eq!(offset(&|b| b[24] = 1), 32);
    }

    #[test]
    fn what_each_retention_covers() {
        use Retention::{All, Live, Since};
        let cases = [
            (Live, Live, true),
            (Live, All, false),
            (Live, Since(0), false),
            (Live, Since(u64::MAX), false),
            (All, Live, true),
            (All, All, true),
            (All, Since(0), true),
            (Since(5), Live, true),
            (Since(5), All, false),
            (Since(5), Since(4), false),
            (Since(5), Since(5), true),
            (Since(5), Since(10), true),
        ];
        for (stored, wanted, expected) in cases {
            assert_eq!(covers(stored, wanted), expected, "{stored:?} → {wanted:?}");
        }
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
