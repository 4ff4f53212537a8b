//! The on-disk format: segment headers and record frames.
//!
//! Documented byte by byte in `docs/format.md` ("flumelog-file segments") and pinned by
//! the snapshot tests at the bottom of this file.
//!
//! ```text
//! segment = header (32 bytes) frame*
//! header  = magic "FLUMELOG" | version u32 | flags u32 (0) | first_seq u64 | crc32c u32 | zero u32
//! frame   = word u32 (bit 31: batch continues, bits 0..31: payload length) | crc32c u32 | payload
//! ```
//!
//! All integers are little-endian. A frame's CRC covers its length word and its payload.

use flume_core::durable::Reader;

/// The first 8 bytes of every segment file.
pub(crate) const MAGIC: [u8; 8] = *b"FLUMELOG";
/// The format version this build writes and reads.
pub(crate) const VERSION: u32 = 1;
/// Size of the segment header.
pub(crate) const HEADER_LEN: usize = 32;
/// Size of a frame header (length word + CRC).
pub(crate) const FRAME_HEADER_LEN: usize = 8;
/// Bit 31 of the length word: another record of the same batch follows.
pub(crate) const MORE: u32 = 1 << 31;
/// The largest payload the format can describe (2 GiB − 1).
pub(crate) const MAX_PAYLOAD: u32 = MORE - 1;

/// Encodes a segment header.
pub(crate) fn encode_header(first_seq: u64) -> [u8; HEADER_LEN] {
    let mut h = [0u8; HEADER_LEN];
    h[0..8].copy_from_slice(&MAGIC);
    h[8..12].copy_from_slice(&VERSION.to_le_bytes());
    // 12..16: flags, zero in version 1.
    h[16..24].copy_from_slice(&first_seq.to_le_bytes());
    let crc = crc32c::crc32c(&h[0..24]);
    h[24..28].copy_from_slice(&crc.to_le_bytes());
    // 28..32: zero.
    h
}

/// Decodes a segment header and returns its first seq, or why it is not a valid header.
pub(crate) fn decode_header(bytes: &[u8]) -> Result<u64, String> {
    let Some(h) = bytes.get(..HEADER_LEN) else {
        return Err(format!(
            "the segment is {} bytes long, shorter than its {HEADER_LEN}-byte header",
            bytes.len()
        ));
    };
    if h[0..8] != MAGIC {
        return Err("bad magic: this is not a flumelog-file segment".into());
    }
    let crc = u32_at(h, 24);
    if crc != crc32c::crc32c(&h[0..24]) {
        return Err("segment header checksum mismatch".into());
    }
    let version = u32_at(h, 8);
    if version != VERSION {
        return Err(format!(
            "unsupported segment format version {version} (this build reads version {VERSION})"
        ));
    }
    if h[28..32] != [0; 4] {
        return Err("reserved segment header bytes are not zero".into());
    }
    let flags = u32_at(h, 12);
    if flags != 0 {
        return Err(format!("unknown segment flags {flags:#x}"));
    }
    Ok(u64_at(h, 16))
}

/// Bytes a payload of `len` bytes takes on disk.
pub(crate) fn framed_len(len: usize) -> usize {
    FRAME_HEADER_LEN + len
}

/// Appends one frame to `out`. `payload.len()` must not exceed [`MAX_PAYLOAD`]
/// (checked by the caller against `max_record_size`).
pub(crate) fn encode_frame(out: &mut Vec<u8>, payload: &[u8], more: bool) {
    debug_assert!(payload.len() <= MAX_PAYLOAD as usize);
    let word = (payload.len() as u32) | if more { MORE } else { 0 };
    let word = word.to_le_bytes();
    let crc = crc32c::crc32c_append(crc32c::crc32c(&word), payload);
    out.reserve(FRAME_HEADER_LEN + payload.len());
    out.extend_from_slice(&word);
    out.extend_from_slice(&crc.to_le_bytes());
    out.extend_from_slice(payload);
}

/// One frame parsed from a segment.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Frame {
    /// A frame whose checksum matches.
    Valid {
        /// Byte range of the payload within the segment.
        payload: std::ops::Range<usize>,
        /// Another record of the same batch follows.
        more: bool,
    },
    /// Not a valid frame, and why.
    Invalid(&'static str),
}

/// Parses the frame at `at` in `data` (the readable bytes of a segment).
///
/// Never panics and never trusts the length word beyond `data`'s bounds.
pub(crate) fn parse_frame(data: &[u8], at: usize) -> Frame {
    let Some(rest) = data.get(at..) else {
        return Frame::Invalid("frame starts past the end of the segment");
    };
    if rest.len() < FRAME_HEADER_LEN {
        return Frame::Invalid("incomplete frame header");
    }
    let word = u32_at(rest, 0);
    let len = (word & MAX_PAYLOAD) as usize;
    if len > rest.len() - FRAME_HEADER_LEN {
        return Frame::Invalid("frame length runs past the end of the segment");
    }
    let payload = &rest[FRAME_HEADER_LEN..FRAME_HEADER_LEN + len];
    let crc = crc32c::crc32c_append(crc32c::crc32c(&rest[0..4]), payload);
    if crc != u32_at(rest, 4) {
        return Frame::Invalid("frame checksum mismatch");
    }
    let start = at + FRAME_HEADER_LEN;
    Frame::Valid {
        payload: start..start + len,
        more: word & MORE != 0,
    }
}

/// The payload of the frame at `at`, which was verified before (at open, or when this
/// process wrote it): its length word is trusted, its checksum not computed again.
/// Still bounds-checked, so a damaged length can only give `None`, never a panic.
pub(crate) fn verified_payload(data: &[u8], at: usize) -> Option<std::ops::Range<usize>> {
    let header = data.get(at..at.checked_add(FRAME_HEADER_LEN)?)?;
    let len = (u32_at(header, 0) & MAX_PAYLOAD) as usize;
    let start = at + FRAME_HEADER_LEN;
    let end = start.checked_add(len).filter(|&end| end <= data.len())?;
    Some(start..end)
}

/// The frame header that makes the frame at `at` the last of its batch: `None` when it
/// already is (or is not a valid frame). Used by `revert`, which may cut a batch short.
pub(crate) fn end_batch_header(data: &[u8], at: usize) -> Option<[u8; FRAME_HEADER_LEN]> {
    let Frame::Valid {
        payload,
        more: true,
    } = parse_frame(data, at)
    else {
        return None;
    };
    let word = (payload.len() as u32).to_le_bytes();
    let crc = crc32c::crc32c_append(crc32c::crc32c(&word), &data[payload]);
    let mut header = [0u8; FRAME_HEADER_LEN];
    header[..4].copy_from_slice(&word);
    header[4..].copy_from_slice(&crc.to_le_bytes());
    Some(header)
}

/// What a scan of a segment found.
#[derive(Debug, Default)]
pub(crate) struct Scan {
    /// Start offset of every record of every complete batch, in order.
    pub(crate) offsets: Vec<u32>,
    /// End of the last complete batch (where a clean segment ends).
    pub(crate) end: usize,
    /// The first invalid frame: its offset and what is wrong. `None` when the scan
    /// reached the end of the data, or preallocated space (zeros from a frame boundary
    /// to the end of the data), on a frame boundary.
    pub(crate) invalid: Option<(usize, &'static str)>,
    /// Valid frames after `end` that belong to a batch whose last frame is missing.
    pub(crate) unfinished: usize,
}

impl Scan {
    /// True when the segment ends cleanly after a complete batch.
    pub(crate) fn is_clean(&self) -> bool {
        self.invalid.is_none() && self.unfinished == 0
    }
}

/// Whether `data[at..]` is preallocated space: not empty, and nothing but zeros. An
/// all-zero frame header is never a valid frame (the CRC32C of a zero length word is
/// not zero), so zeros running from a frame boundary to the end of the file are the
/// clean end of the data, not damage.
pub(crate) fn is_preallocated(data: &[u8], at: usize) -> bool {
    data.get(at..)
        .is_some_and(|rest| !rest.is_empty() && rest.iter().all(|&b| b == 0))
}

/// Scans every frame of a segment's bytes (header included in `data`), stopping at
/// the end of the data or at preallocated space ([`is_preallocated`]).
///
/// `data.len()` must fit in a `u32` (checked by the caller).
pub(crate) fn scan(data: &[u8]) -> Scan {
    let mut scan = Scan {
        end: HEADER_LEN.min(data.len()),
        ..Scan::default()
    };
    let mut committed = 0;
    let mut pos = HEADER_LEN;
    while pos < data.len() {
        match parse_frame(data, pos) {
            Frame::Valid { payload, more } => {
                scan.offsets.push(pos as u32);
                pos = payload.end;
                if !more {
                    committed = scan.offsets.len();
                    scan.end = pos;
                }
            }
            Frame::Invalid(_) if is_preallocated(data, pos) => break,
            Frame::Invalid(reason) => {
                scan.invalid = Some((pos, reason));
                break;
            }
        }
    }
    scan.unfinished = scan.offsets.len() - committed;
    scan.offsets.truncate(committed);
    scan
}

/// Whether the invalid frame at `at` (the first frame of the last segment that does not
/// verify, at or above its durably marked length) is provably damage rather than the
/// remains of a write a crash interrupted. Only bytes at frame boundaries reached from
/// the segment header are ever read as frame headers: nothing inside a payload is.
///
/// The proof: the frame's header is complete and not all zeros (so it is the header
/// the writer wrote: a header copied into the mapping comes after its payload, a
/// `pwrite` writes it first), its length keeps it inside the file, and a valid frame
/// starts right where that length says the frame ends. A crashed write leaves nothing
/// after the point it reached, which is inside this frame (it is incomplete), so the
/// frame after it would read as zeros. One exception, for a power loss (pages
/// written back out of order): when a whole 4 KiB page of the frame, or its first page
/// (up to the frame's start), reads as zeros, the frame may simply have lost a page
/// that was never written back; that is a torn tail too.
///
/// Anything else after the last valid frame is a torn tail. See `docs/format.md`,
/// "Recovery rules".
pub(crate) fn damage_evidence(data: &[u8], at: usize) -> bool {
    let Some(header) = data.get(at..at.saturating_add(FRAME_HEADER_LEN)) else {
        return false;
    };
    if header.iter().all(|&b| b == 0) {
        return false;
    }
    let len = (u32_at(header, 0) & MAX_PAYLOAD) as usize;
    let end = at + FRAME_HEADER_LEN + len;
    if end > data.len() || !matches!(parse_frame(data, end), Frame::Valid { .. }) {
        return false;
    }
    !has_lost_page(data, at, end)
}

/// Size of the pages a file system writes back (and may lose in a power loss) as units.
const PAGE: usize = 4096;

/// Whether `data[from..to]` holds an aligned 4 KiB page of zeros, or starts with zeros
/// up to the next page boundary: what a page never written back looks like.
fn has_lost_page(data: &[u8], from: usize, to: usize) -> bool {
    let zeros = |range: std::ops::Range<usize>| data[range].iter().all(|&b| b == 0);
    let first_end = (from / PAGE + 1) * PAGE;
    if first_end <= to && zeros(from..first_end) {
        return true;
    }
    let mut page = first_end;
    while page + PAGE <= to {
        if zeros(page..page + PAGE) {
            return true;
        }
        page += PAGE;
    }
    false
}

/// The little-endian `u32` at `at`, which the caller checked to be in bounds.
#[inline]
fn u32_at(b: &[u8], at: usize) -> u32 {
    Reader::at(b, at)
        .u32()
        .expect("the caller checks the bounds")
}

/// The little-endian `u64` at `at`, which the caller checked to be in bounds.
#[inline]
fn u64_at(b: &[u8], at: usize) -> u64 {
    Reader::at(b, at)
        .u64()
        .expect("the caller checks the bounds")
}

#[cfg(test)]
mod tests {
    use super::*;
    use flume_core::durable::hexdump;

    fn sample_segment() -> Vec<u8> {
        let mut seg = encode_header(7).to_vec();
        encode_frame(&mut seg, b"hello", false);
        encode_frame(&mut seg, b"", false);
        encode_frame(&mut seg, b"batch-a", true);
        encode_frame(&mut seg, b"batch-b", false);
        seg
    }

    #[test]
    fn header_bytes_are_pinned() {
        insta::assert_snapshot!(hexdump(&encode_header(0x0102_0304_0506_0708)));
    }

    #[test]
    fn segment_bytes_are_pinned() {
        insta::assert_snapshot!(hexdump(&sample_segment()));
    }

    #[test]
    fn header_round_trips_and_rejects_damage() {
        let h = encode_header(42);
        assert_eq!(decode_header(&h), Ok(42));
        assert!(decode_header(&h[..31]).is_err());
        for i in 0..32 {
            let mut bad = h;
            bad[i] ^= 0x10;
            assert!(decode_header(&bad).is_err(), "flip at {i} accepted");
        }
    }

    #[test]
    fn scan_finds_every_record_and_batch_boundaries() {
        let seg = sample_segment();
        let s = scan(&seg);
        assert!(s.is_clean());
        assert_eq!(s.offsets, vec![32, 45, 53, 68]);
        assert_eq!(s.end, seg.len());
        // Cut inside the batch: the batch's complete first frame is unfinished.
        let s = scan(&seg[..seg.len() - 1]);
        assert_eq!(s.offsets, vec![32, 45]);
        assert_eq!(s.end, 53);
        assert_eq!(s.unfinished, 1);
        assert_eq!(
            s.invalid,
            Some((68, "frame length runs past the end of the segment"))
        );
        // Cut exactly between the batch's frames.
        let s = scan(&seg[..68]);
        assert_eq!((s.end, s.unfinished, s.invalid), (53, 1, None));
    }

    #[test]
    fn a_length_claiming_gigabytes_is_rejected_without_allocating() {
        let mut seg = encode_header(0).to_vec();
        seg.extend_from_slice(&[0xff, 0xff, 0xff, 0x7f, 0, 0, 0, 0, 1, 2, 3]);
        let s = scan(&seg);
        assert_eq!(s.offsets.len(), 0);
        assert_eq!(s.invalid.map(|i| i.0), Some(32));
        assert!(!damage_evidence(&seg, 32));
    }

    #[test]
    fn damage_followed_by_a_valid_frame_is_not_torn() {
        let mut seg = sample_segment();
        seg[40] ^= 1; // payload of "hello"
        let s = scan(&seg);
        assert_eq!(s.invalid, Some((32, "frame checksum mismatch")));
        // The frame's length leads to the next frame, which verifies: damage.
        assert!(damage_evidence(&seg, 32));
        // A damaged length leads nowhere: no proof (recovery then relies on the tail
        // marker, which covers every byte synced before it was written).
        let mut seg = sample_segment();
        seg[33] ^= 1;
        assert!(!damage_evidence(&seg, 32));
    }

    /// The payload of the frame a crash interrupted may hold anything, valid frames and
    /// segment headers of this format included: they are never read as frames.
    #[test]
    fn frames_inside_a_torn_payload_are_not_evidence_of_damage() {
        let inner = sample_segment();
        let mut payload = inner.clone();
        payload.extend_from_slice(&inner[32..]);
        let mut full = encode_header(0).to_vec();
        encode_frame(&mut full, b"kept", false);
        let torn_at = full.len();
        encode_frame(&mut full, &payload, false);
        for cut in torn_at + 1..full.len() {
            // `pwrite` interrupted: a prefix, then the end of the file or zeros.
            for zeros in [0usize, 5, 4096] {
                let mut data = full[..cut].to_vec();
                data.resize(cut + zeros, 0);
                let s = scan(&data);
                if s.invalid.is_some() {
                    assert_eq!(s.end, torn_at, "cut {cut}+{zeros}");
                    assert!(!damage_evidence(&data, torn_at), "cut {cut}+{zeros}");
                }
            }
            // The mapping: payload copied first, header still zero.
            let mut data = full[..cut].to_vec();
            data.resize(full.len() + 64, 0);
            data[torn_at..torn_at + 8].fill(0);
            let s = scan(&data);
            assert_eq!((s.end, s.offsets.len()), (torn_at, 1), "mapped cut {cut}");
            assert!(!damage_evidence(&data, torn_at), "mapped cut {cut}");
        }
    }

    #[test]
    fn a_page_of_zeros_in_the_frame_is_a_lost_page_not_damage() {
        let mut seg = encode_header(0).to_vec();
        let at = seg.len();
        encode_frame(&mut seg, &[7u8; 3 * 4096], false);
        encode_frame(&mut seg, b"after", false);
        let mut lost = seg.clone();
        lost[4096..8192].fill(0);
        assert_eq!(scan(&lost).invalid.map(|i| i.0), Some(at));
        assert!(!damage_evidence(&lost, at));
        // A flipped bit instead: damage.
        let mut flipped = seg.clone();
        flipped[5000] ^= 0x20;
        assert!(damage_evidence(&flipped, at));
    }

    #[test]
    fn zeros_after_the_last_frame_are_preallocated_space() {
        let clean = sample_segment();
        let mut seg = clean.clone();
        seg.extend_from_slice(&[0u8; 100]);
        let s = scan(&seg);
        assert!(s.is_clean());
        assert_eq!(s.end, clean.len());
        assert_eq!(s.offsets, vec![32, 45, 53, 68]);
        // Fewer zeros than a frame header are preallocated space too.
        let mut seg = clean.clone();
        seg.extend_from_slice(&[0u8; 3]);
        assert!(scan(&seg).is_clean());
    }

    #[test]
    fn zeros_inside_an_unfinished_batch_leave_it_unfinished() {
        let seg = sample_segment();
        // Cut between the batch's two frames, then zeros: the batch is not committed.
        let mut cut = seg[..68].to_vec();
        cut.extend_from_slice(&[0u8; 4096]);
        let s = scan(&cut);
        assert_eq!((s.end, s.unfinished, s.invalid), (53, 1, None));
        assert!(!s.is_clean());
    }

    #[test]
    fn a_zero_header_is_never_damage_whatever_follows() {
        let seg = sample_segment();
        // A torn frame (zero header, half a payload), megabytes of reserved space, then
        // valid frames: the frames cannot have been written after the interrupted copy,
        // so they are the payload's own bytes.
        let mut torn = seg[..45].to_vec();
        torn.extend_from_slice(&[0u8; 8]);
        torn.extend_from_slice(b"half a payl");
        torn.resize(torn.len() + (8 << 20), 0);
        assert!(!damage_evidence(&torn, 45));
        for gap in [0usize, 1, 7, 8, 9, 4096] {
            let mut gapped = torn.clone();
            gapped.resize(torn.len() + gap, 0);
            encode_frame(&mut gapped, b"", false);
            encode_frame(&mut gapped, b"after", false);
            assert_eq!(scan(&gapped).invalid.map(|i| i.0), Some(45), "gap {gap}");
            assert!(!damage_evidence(&gapped, 45), "gap {gap}");
        }
    }

    #[test]
    fn zeros_then_data_are_torn_or_damage_not_preallocated_space() {
        let seg = sample_segment();
        // A torn write: a frame whose payload was never written, zeros after it.
        let mut torn = seg[..45].to_vec();
        torn.extend_from_slice(&[5, 0, 0, 0, 1, 2, 3, 4, 0, 0]);
        torn.extend_from_slice(&[0u8; 200]);
        let s = scan(&torn);
        assert_eq!(s.invalid.map(|i| i.0), Some(45));
        assert!(!damage_evidence(&torn, 45));
        // Zeros followed by a valid frame (a lost page before a written one): not the
        // clean end; the zeros are invalid.
        let mut gap = seg[..45].to_vec();
        gap.extend_from_slice(&[0u8; 16]);
        encode_frame(&mut gap, b"after", false);
        let s = scan(&gap);
        assert_eq!(s.invalid.map(|i| i.0), Some(45));
        assert_eq!(s.end, 45);
    }
}
