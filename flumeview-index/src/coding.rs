//! Little-endian integers and LEB128 varints, as the run files and the manifest store
//! them (see `docs/format.md`, section "flumeview-index files").
//!
//! Readers of fixed-width integers take a position that the caller has checked to be in
//! bounds (they panic otherwise); the varint reader checks for itself.

/// Appends `n` as LEB128: 7 bits per byte, low bits first, high bit set on all but the
/// last byte.
pub(crate) fn put_varint(out: &mut Vec<u8>, mut n: u64) {
    while n >= 0x80 {
        out.push((n as u8) | 0x80);
        n >>= 7;
    }
    out.push(n as u8);
}

/// Reads a LEB128 number at `*at`, advancing it. `None` when it runs past the end or
/// does not fit in 64 bits.
pub(crate) fn get_varint(bytes: &[u8], at: &mut usize) -> Option<u64> {
    let mut n: u64 = 0;
    for shift in (0..64).step_by(7) {
        let b = *bytes.get(*at)?;
        *at += 1;
        let bits = u64::from(b & 0x7f);
        if shift == 63 && bits > 1 {
            return None;
        }
        n |= bits << shift;
        if b & 0x80 == 0 {
            return Some(n);
        }
    }
    None
}

/// The little-endian `u16` at `at`.
pub(crate) fn u16_at(bytes: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([bytes[at], bytes[at + 1]])
}

/// The little-endian `u32` at `at`.
pub(crate) fn u32_at(bytes: &[u8], at: usize) -> u32 {
    let mut a = [0u8; 4];
    a.copy_from_slice(&bytes[at..at + 4]);
    u32::from_le_bytes(a)
}

/// The little-endian `u64` at `at`.
pub(crate) fn u64_at(bytes: &[u8], at: usize) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&bytes[at..at + 8]);
    u64::from_le_bytes(a)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varints_round_trip_and_reject_overflow() {
        for n in [0, 1, 127, 128, 300, u64::from(u32::MAX), u64::MAX] {
            let mut v = Vec::new();
            put_varint(&mut v, n);
            let mut at = 0;
            assert_eq!(get_varint(&v, &mut at), Some(n));
            assert_eq!(at, v.len());
        }
        let mut at = 0;
        assert_eq!(get_varint(&[0xff; 11], &mut at), None);
        let mut at = 0;
        assert_eq!(get_varint(&[0x80], &mut at), None);
    }

    #[test]
    fn fixed_width_integers_are_little_endian() {
        let bytes = [9, 0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08];
        assert_eq!(u16_at(&bytes, 1), 0x0201);
        assert_eq!(u32_at(&bytes, 1), 0x0403_0201);
        assert_eq!(u64_at(&bytes, 1), 0x0807_0605_0403_0201);
    }
}
