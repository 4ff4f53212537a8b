//! The tail marker (`TAIL`): a small file naming the log's last segment and how many of
//! its bytes are known to be durable. Documented byte by byte in `docs/format.md`
//! ("Tail marker").
//!
//! It is what lets recovery tell damage from a torn tail in the last segment (bytes
//! below the marked length were synced before the marker was written, so no write was
//! in flight there), and notice a deleted last segment (the marker names it).
//!
//! The marker is a lower bound, never ahead of the files: the writer creates a segment
//! before it names it, syncs bytes before it marks them durable, and lowers the marker
//! before it cuts or removes anything. It is rewritten when a segment is started, when
//! the log is opened (after recovery) and closed, and by `revert` and `repair`.

use std::fs;
use std::path::Path;

use flume_core::durable::{self, Reader};
use flume_core::{Error, Result, Seq};

/// Name of the marker file inside a log directory.
pub(crate) const TAIL_FILE: &str = "TAIL";
/// Name of a marker being written (`durable::replace`'s temporary name; removed at open
/// if a crash left one).
pub(crate) const TAIL_TMP: &str = "TAIL.tmp";
/// The first 8 bytes of the marker.
const MAGIC: [u8; 8] = *b"FLUMETAL";
/// The marker format version.
const VERSION: u32 = 1;
/// Size of the marker file.
pub(crate) const TAIL_LEN: usize = 40;

/// What the marker says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct TailMark {
    /// First seq of the last segment: that segment, and every one before it, exists.
    pub(crate) segment: Seq,
    /// Bytes of that segment (header included) known to be durable: synced before the
    /// marker was written. Recovery treats anything wrong below it as damage.
    pub(crate) durable_len: u64,
}

/// Encodes a marker.
pub(crate) fn encode(mark: TailMark) -> [u8; TAIL_LEN] {
    let mut b = [0u8; TAIL_LEN];
    b[0..8].copy_from_slice(&MAGIC);
    b[8..12].copy_from_slice(&VERSION.to_le_bytes());
    // 12..16: flags, zero.
    b[16..24].copy_from_slice(&mark.segment.to_le_bytes());
    b[24..32].copy_from_slice(&mark.durable_len.to_le_bytes());
    let crc = crc32c::crc32c(&b[0..32]);
    b[32..36].copy_from_slice(&crc.to_le_bytes());
    // 36..40: zero.
    b
}

/// Decodes a marker; the error says what is wrong and at which byte.
pub(crate) fn decode(bytes: &[u8]) -> std::result::Result<TailMark, (u64, String)> {
    if bytes.len() != TAIL_LEN {
        return Err((
            0,
            format!(
                "the tail marker is {} bytes long, not {TAIL_LEN}",
                bytes.len()
            ),
        ));
    }
    if bytes[0..8] != MAGIC {
        return Err((
            0,
            "bad magic: this is not a flumelog-file tail marker".into(),
        ));
    }
    // The length is checked above: these reads cannot run short.
    let field =
        |r: std::result::Result<u64, durable::DecodeError>| r.map_err(|e| (0, e.to_string()));
    let crc = field(Reader::at(bytes, 32).u32().map(u64::from))?;
    if crc != u64::from(crc32c::crc32c(&bytes[0..32])) {
        return Err((32, "tail marker checksum mismatch".into()));
    }
    let version = field(Reader::at(bytes, 8).u32().map(u64::from))?;
    if version != u64::from(VERSION) {
        return Err((
            8,
            format!("unsupported tail marker version {version} (this build reads {VERSION})"),
        ));
    }
    if bytes[12..16] != [0; 4] || bytes[36..40] != [0; 4] {
        return Err((12, "reserved tail marker bytes are not zero".into()));
    }
    Ok(TailMark {
        segment: field(Reader::at(bytes, 16).u64())?,
        durable_len: field(Reader::at(bytes, 24).u64())?,
    })
}

/// Reads the marker of `dir`: `None` when there is none (a directory written before
/// markers existed, or one whose first marker was never written).
///
/// # Errors
/// [`Error::Corrupt`] for a damaged marker, [`Error::Io`] when it cannot be read.
pub(crate) fn read(dir: &Path) -> Result<Option<TailMark>> {
    let path = dir.join(TAIL_FILE);
    let bytes = match fs::read(&path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(Error::io(path, e)),
    };
    decode(&bytes)
        .map(Some)
        .map_err(|(offset, reason)| Error::Corrupt {
            path,
            offset,
            reason: format!("{reason}; {}", crate::recovery::REPAIR_ADVICE),
        })
}

/// Replaces the marker of `dir` atomically: written to `TAIL.tmp`, synced, renamed over
/// `TAIL`, directory synced.
pub(crate) fn write(dir: &Path, mark: TailMark) -> Result<()> {
    durable::replace(&dir.join(TAIL_FILE), &encode(mark))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn marker_bytes_are_pinned() {
        let bytes = encode(TailMark {
            segment: 0x0102_0304_0506_0708,
            durable_len: 0x1234,
        });
        let hex: Vec<String> = bytes.chunks(8).map(|c| format!("{c:02x?}")).collect();
        insta::assert_snapshot!(hex.join("\n"));
    }

    #[test]
    fn marker_round_trips_and_rejects_damage() {
        let mark = TailMark {
            segment: 42,
            durable_len: 4096,
        };
        let bytes = encode(mark);
        assert_eq!(decode(&bytes), Ok(mark));
        assert!(decode(&bytes[..39]).is_err());
        for i in 0..TAIL_LEN {
            let mut bad = bytes;
            bad[i] ^= 0x04;
            assert!(decode(&bad).is_err(), "flip at {i} accepted");
        }
    }
}
