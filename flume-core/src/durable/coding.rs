//! Little-endian integers and LEB128 varints: [`put_varint`] and a [`Reader`] that
//! never panics on short input.

/// What is wrong with bytes a [`Reader`] was asked to decode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeError {
    /// The input ends inside a field.
    #[error("truncated: {wanted} bytes wanted at byte {offset}, {available} left")]
    Truncated {
        /// Where the field starts.
        offset: usize,
        /// Bytes the field needs (for a varint: at least the bytes read so far, plus one).
        wanted: usize,
        /// Bytes left at `offset`.
        available: usize,
    },
    /// A varint runs past ten bytes or past the range of a `u64`.
    #[error("varint at byte {offset} overflows a u64")]
    VarintOverflow {
        /// Where the varint starts.
        offset: usize,
    },
}

/// Appends `value` as an LEB128 varint: seven bits per byte, least significant first,
/// the high bit set on every byte but the last (1 to 10 bytes).
///
/// ```
/// use flume_core::durable::{put_varint, varint_len};
///
/// let mut out = Vec::new();
/// put_varint(&mut out, 300);
/// assert_eq!(out, [0xac, 0x02]);
/// assert_eq!(varint_len(300), 2);
/// ```
#[inline]
pub fn put_varint(out: &mut Vec<u8>, mut value: u64) {
    while value >= 0x80 {
        out.push(value as u8 | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

/// The bytes [`put_varint`] writes for `value`.
pub fn varint_len(value: u64) -> usize {
    (64 - (value | 1).leading_zeros() as usize).div_ceil(7)
}

/// Reads fields one after another from a byte slice: little-endian integers, varints,
/// byte strings. Every read checks the length first and returns a [`DecodeError`] that
/// names the offset, so decoding damaged or truncated input never panics.
///
/// ```
/// use flume_core::durable::{put_varint, DecodeError, Reader};
///
/// let mut bytes = 7u32.to_le_bytes().to_vec();
/// put_varint(&mut bytes, 300);
/// bytes.extend_from_slice(b"key");
///
/// let mut r = Reader::new(&bytes);
/// assert_eq!(r.u32(), Ok(7));
/// assert_eq!(r.varint(), Ok(300));
/// assert_eq!(r.bytes(3), Ok(&b"key"[..]));
/// assert!(r.is_empty());
/// assert_eq!(
///     r.u64(),
///     Err(DecodeError::Truncated { offset: 9, wanted: 8, available: 0 })
/// );
/// ```
#[derive(Debug, Clone)]
pub struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    /// A reader at the start of `bytes`.
    #[inline]
    pub fn new(bytes: &'a [u8]) -> Reader<'a> {
        Reader { bytes, at: 0 }
    }

    /// A reader at byte `offset` of `bytes` (reads past the end fail; they do not panic).
    #[inline]
    pub fn at(bytes: &'a [u8], offset: usize) -> Reader<'a> {
        Reader { bytes, at: offset }
    }

    /// The offset of the next byte to read.
    #[inline]
    pub fn position(&self) -> usize {
        self.at
    }

    /// Bytes left.
    #[inline]
    pub fn remaining(&self) -> usize {
        self.bytes.len().saturating_sub(self.at)
    }

    /// Whether every byte has been read.
    pub fn is_empty(&self) -> bool {
        self.remaining() == 0
    }

    /// The next `n` bytes.
    ///
    /// # Errors
    /// [`DecodeError::Truncated`] when fewer are left (nothing is consumed).
    #[inline]
    pub fn bytes(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        let available = self.remaining();
        if n > available {
            return Err(DecodeError::Truncated {
                offset: self.at,
                wanted: n,
                available,
            });
        }
        let out = &self.bytes[self.at..self.at + n];
        self.at += n;
        Ok(out)
    }

    /// The next `N` bytes as an array.
    ///
    /// # Errors
    /// [`DecodeError::Truncated`].
    #[inline]
    pub fn array<const N: usize>(&mut self) -> Result<[u8; N], DecodeError> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.bytes(N)?);
        Ok(out)
    }

    /// The next byte.
    ///
    /// # Errors
    /// [`DecodeError::Truncated`].
    #[inline]
    pub fn u8(&mut self) -> Result<u8, DecodeError> {
        self.array::<1>().map(|[b]| b)
    }

    /// A little-endian `u16`.
    ///
    /// # Errors
    /// [`DecodeError::Truncated`].
    #[inline]
    pub fn u16(&mut self) -> Result<u16, DecodeError> {
        self.array().map(u16::from_le_bytes)
    }

    /// A little-endian `u32`.
    ///
    /// # Errors
    /// [`DecodeError::Truncated`].
    #[inline]
    pub fn u32(&mut self) -> Result<u32, DecodeError> {
        self.array().map(u32::from_le_bytes)
    }

    /// A little-endian `u64`.
    ///
    /// # Errors
    /// [`DecodeError::Truncated`].
    #[inline]
    pub fn u64(&mut self) -> Result<u64, DecodeError> {
        self.array().map(u64::from_le_bytes)
    }

    /// An LEB128 varint, as [`put_varint`] writes it.
    ///
    /// # Errors
    /// [`DecodeError::Truncated`] when the input ends before the last byte;
    /// [`DecodeError::VarintOverflow`] when the value does not fit a `u64` (nothing is
    /// consumed either way).
    #[inline]
    pub fn varint(&mut self) -> Result<u64, DecodeError> {
        let start = self.at;
        let mut value = 0u64;
        for i in 0..10 {
            let Some(&byte) = self.bytes.get(start + i) else {
                return Err(DecodeError::Truncated {
                    offset: start,
                    wanted: i + 1,
                    available: self.remaining(),
                });
            };
            let bits = u64::from(byte & 0x7f);
            if i == 9 && byte > 1 {
                return Err(DecodeError::VarintOverflow { offset: start });
            }
            value |= bits << (7 * i);
            if byte & 0x80 == 0 {
                self.at = start + i + 1;
                return Ok(value);
            }
        }
        Err(DecodeError::VarintOverflow { offset: start })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn varint_edges() {
        for (value, bytes) in [
            (0u64, vec![0x00]),
            (127, vec![0x7f]),
            (128, vec![0x80, 0x01]),
            (
                u64::MAX,
                vec![0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01],
            ),
        ] {
            let mut out = Vec::new();
            put_varint(&mut out, value);
            assert_eq!(out, bytes, "{value}");
            assert_eq!(varint_len(value), bytes.len(), "{value}");
            assert_eq!(Reader::new(&bytes).varint(), Ok(value));
        }
    }

    #[test]
    fn a_truncated_varint_is_a_typed_error_that_consumes_nothing() {
        let mut r = Reader::at(&[0x01, 0x80, 0x80], 1);
        assert_eq!(
            r.varint(),
            Err(DecodeError::Truncated {
                offset: 1,
                wanted: 3,
                available: 2
            })
        );
        assert_eq!(r.position(), 1);
        assert_eq!(
            Reader::new(&[]).varint(),
            Err(DecodeError::Truncated {
                offset: 0,
                wanted: 1,
                available: 0
            })
        );
    }

    #[test]
    fn an_overlong_varint_overflows() {
        let eleven = [0xff; 11];
        assert_eq!(
            Reader::new(&eleven).varint(),
            Err(DecodeError::VarintOverflow { offset: 0 })
        );
        let mut too_big = vec![0xff; 9];
        too_big.push(0x02);
        assert_eq!(
            Reader::new(&too_big).varint(),
            Err(DecodeError::VarintOverflow { offset: 0 })
        );
    }

    #[test]
    fn fixed_width_reads() {
        let bytes = [1, 2, 0, 3, 0, 0, 0, 4, 0, 0, 0, 0, 0, 0, 0, 9];
        let mut r = Reader::new(&bytes);
        assert_eq!(r.u8(), Ok(1));
        assert_eq!(r.u16(), Ok(2));
        assert_eq!(r.u32(), Ok(3));
        assert_eq!(r.u64(), Ok(4));
        assert_eq!(r.remaining(), 1);
        assert_eq!(
            r.u16(),
            Err(DecodeError::Truncated {
                offset: 15,
                wanted: 2,
                available: 1
            })
        );
        assert_eq!(r.array::<1>(), Ok([9]));
        // An offset past the end reads as empty, not a panic.
        assert_eq!(Reader::at(&bytes, 99).remaining(), 0);
        assert!(Reader::at(&bytes, 99).bytes(1).is_err());
    }

    proptest! {
        #[test]
        fn varints_round_trip_and_every_cut_is_truncated(value in any::<u64>(), shift in 0u32..64) {
            let value = value >> shift;
            let mut out = Vec::new();
            put_varint(&mut out, value);
            prop_assert_eq!(out.len(), varint_len(value));
            let mut r = Reader::new(&out);
            prop_assert_eq!(r.varint(), Ok(value));
            prop_assert!(r.is_empty());
            for cut in 0..out.len() {
                let truncated = Reader::new(&out[..cut]).varint();
                prop_assert!(matches!(truncated, Err(DecodeError::Truncated { offset: 0, .. })), "{:?}", truncated);
            }
        }

        #[test]
        fn junk_never_panics(junk in proptest::collection::vec(any::<u8>(), 0..32)) {
            let mut r = Reader::new(&junk);
            while r.varint().is_ok() {}
            let mut r = Reader::new(&junk);
            while r.u32().is_ok() {}
        }
    }
}
