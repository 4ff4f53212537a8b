//! Bytes of the log's own format (`docs/format.md`), for tests that build segments or
//! records that embed them.

/// A segment header of the log's format (`docs/format.md`), first seq `first`.
pub(crate) fn segment_header(first: u64) -> Vec<u8> {
    let mut h = b"FLUMELOG".to_vec();
    h.extend_from_slice(&1u32.to_le_bytes());
    h.extend_from_slice(&0u32.to_le_bytes());
    h.extend_from_slice(&first.to_le_bytes());
    let crc = crc32c::crc32c(&h);
    h.extend_from_slice(&crc.to_le_bytes());
    h.extend_from_slice(&0u32.to_le_bytes());
    h
}

/// Appends a valid frame of the log's format holding `payload` to `out`.
pub(crate) fn frame(out: &mut Vec<u8>, payload: &[u8], more: bool) {
    let word = (payload.len() as u32 | if more { 1 << 31 } else { 0 }).to_le_bytes();
    let crc = crc32c::crc32c_append(crc32c::crc32c(&word), payload);
    out.extend_from_slice(&word);
    out.extend_from_slice(&crc.to_le_bytes());
    out.extend_from_slice(payload);
}
