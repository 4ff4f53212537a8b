//! Little-endian integers and LEB128 varints, as the run files and the manifest store
//! them (see `docs/format.md`, section "flumeview-index files"): thin shims over
//! [`flume_core::durable`]'s coding, in the shapes the hot lookup paths want.
//!
//! Readers of fixed-width integers take a position that the caller has checked to be in
//! bounds (they panic otherwise); the varint reader checks for itself.

use flume_core::durable::Reader;

pub(crate) use flume_core::durable::put_varint;

/// Reads a LEB128 number at `*at`, advancing it. `None` when it runs past the end or
/// does not fit in 64 bits.
#[inline]
pub(crate) fn get_varint(bytes: &[u8], at: &mut usize) -> Option<u64> {
    let mut reader = Reader::at(bytes, *at);
    let n = reader.varint().ok()?;
    *at = reader.position();
    Some(n)
}

/// The little-endian `u16` at `at`, which the caller checked to be in bounds.
#[inline]
pub(crate) fn u16_at(bytes: &[u8], at: usize) -> u16 {
    Reader::at(bytes, at)
        .u16()
        .expect("the caller checks the bounds")
}

/// The little-endian `u32` at `at`, which the caller checked to be in bounds.
#[inline]
pub(crate) fn u32_at(bytes: &[u8], at: usize) -> u32 {
    Reader::at(bytes, at)
        .u32()
        .expect("the caller checks the bounds")
}

/// The little-endian `u64` at `at`, which the caller checked to be in bounds.
#[inline]
pub(crate) fn u64_at(bytes: &[u8], at: usize) -> u64 {
    Reader::at(bytes, at)
        .u64()
        .expect("the caller checks the bounds")
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
