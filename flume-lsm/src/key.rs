//! Keys: byte strings compared byte by byte, and helpers that encode typed values so
//! that byte order is value order.
//!
//! | helper | encoding | order |
//! |---|---|---|
//! | [`string`] | the UTF-8 bytes | byte order (code point order) |
//! | [`u64()`], [`u32()`] | big-endian, fixed width | numeric |
//! | [`i64()`], [`i32()`] | big-endian with the sign bit flipped, fixed width | numeric, negatives first |
//! | [`tuple()`] | each part encoded in turn (see [`Part`]) | part by part, like Rust tuples |
//!
//! A tuple is **prefix-free**: each string or byte part is escaped (`00` becomes
//! `00 ff`) and terminated (`00 01`), integers have a fixed width. So the encoding of
//! the first parts of a tuple is a byte prefix of the encoding of every longer tuple
//! that starts with them, and of nothing else: scanning the prefix
//! `tuple(("@alice",))` finds every `("@alice", …)` key and never `("@alice2", …)`.
//!
//! ```
//! use flume_lsm::key;
//!
//! assert!(key::i64(-5) < key::i64(3));
//! assert!(key::u64(9) < key::u64(10));
//! assert!(key::tuple(("a", 2u64)) < key::tuple(("a", 10u64)));
//! assert!(key::tuple(("a", 99u64)) < key::tuple(("a\0", 0u64)));
//!
//! let alice = key::tuple(("@alice",));
//! assert!(key::tuple(("@alice", 7u64)).starts_with(&alice));
//! assert!(!key::tuple(("@alice2", 7u64)).starts_with(&alice));
//!
//! // Reading a tuple key back:
//! let k = key::tuple(("@alice", 7u64));
//! let mut parts = key::Parts::new(&k);
//! assert_eq!(parts.string().as_deref(), Some("@alice"));
//! assert_eq!(parts.u64(), Some(7));
//! assert!(parts.is_empty());
//! ```
//!
//! Use one type per tuple position: a `u32` and a `u64` part do not compare with each
//! other, and neither do a plain [`string`] key and a one-part tuple.

use std::ops::Bound;

/// The key of a string: its UTF-8 bytes, as they are (no copy).
///
/// ```
/// assert_eq!(flume_lsm::key::string("abc"), b"abc");
/// ```
pub fn string(s: &str) -> &[u8] {
    s.as_bytes()
}

/// The key of an unsigned integer: 8 bytes, big-endian, so byte order is numeric order.
///
/// ```
/// assert_eq!(flume_lsm::key::u64(258), [0, 0, 0, 0, 0, 0, 1, 2]);
/// ```
pub fn u64(n: u64) -> [u8; 8] {
    n.to_be_bytes()
}

/// The key of an unsigned 32-bit integer: 4 bytes, big-endian.
///
/// ```
/// assert_eq!(flume_lsm::key::u32(1), [0, 0, 0, 1]);
/// ```
pub fn u32(n: u32) -> [u8; 4] {
    n.to_be_bytes()
}

/// The key of a signed integer: 8 bytes, big-endian with the sign bit flipped, so byte
/// order is numeric order (`i64::MIN` is all zeroes).
///
/// ```
/// use flume_lsm::key;
/// assert_eq!(key::i64(0), [0x80, 0, 0, 0, 0, 0, 0, 0]);
/// assert!(key::i64(-1) < key::i64(0));
/// ```
pub fn i64(n: i64) -> [u8; 8] {
    ((n as u64) ^ (1 << 63)).to_be_bytes()
}

/// The key of a signed 32-bit integer: 4 bytes, big-endian with the sign bit flipped.
///
/// ```
/// use flume_lsm::key;
/// assert!(key::i32(-1) < key::i32(1));
/// ```
pub fn i32(n: i32) -> [u8; 4] {
    ((n as u32) ^ (1 << 31)).to_be_bytes()
}

/// The key of a tuple of [`Part`]s, for compound keys such as `(author, timestamp)`.
/// Order-preserving and prefix-free: see the [module docs](self).
///
/// ```
/// use flume_lsm::key;
/// let k = key::tuple(("@bob", 3u64));
/// assert_eq!(k, b"@bob\x00\x01\x00\x00\x00\x00\x00\x00\x00\x03");
/// ```
pub fn tuple(parts: impl Tuple) -> Vec<u8> {
    let mut out = Vec::new();
    parts.encode(&mut out);
    out
}

/// The byte that starts an escape or a terminator inside a tuple's byte part.
const ESCAPE: u8 = 0x00;
/// `00 ff`: a literal zero byte.
const ESCAPED_ZERO: u8 = 0xff;
/// `00 01`: the end of a byte part.
const TERMINATOR: u8 = 0x01;

/// One component of a [`tuple()`] key.
///
/// Strings and byte strings are escaped and terminated; integers are fixed width.
pub trait Part {
    /// Appends the encoding of this part to `out`.
    fn encode(&self, out: &mut Vec<u8>);
}

/// Appends `bytes` escaped and terminated.
fn encode_bytes(bytes: &[u8], out: &mut Vec<u8>) {
    for &b in bytes {
        if b == ESCAPE {
            out.extend_from_slice(&[ESCAPE, ESCAPED_ZERO]);
        } else {
            out.push(b);
        }
    }
    out.extend_from_slice(&[ESCAPE, TERMINATOR]);
}

impl Part for str {
    fn encode(&self, out: &mut Vec<u8>) {
        encode_bytes(self.as_bytes(), out);
    }
}

impl Part for String {
    fn encode(&self, out: &mut Vec<u8>) {
        encode_bytes(self.as_bytes(), out);
    }
}

impl Part for [u8] {
    fn encode(&self, out: &mut Vec<u8>) {
        encode_bytes(self, out);
    }
}

impl Part for Vec<u8> {
    fn encode(&self, out: &mut Vec<u8>) {
        encode_bytes(self, out);
    }
}

impl Part for u64 {
    fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&u64(*self));
    }
}

impl Part for u32 {
    fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&u32(*self));
    }
}

impl Part for i64 {
    fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&i64(*self));
    }
}

impl Part for i32 {
    fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&i32(*self));
    }
}

impl<P: Part + ?Sized> Part for &P {
    fn encode(&self, out: &mut Vec<u8>) {
        (**self).encode(out);
    }
}

/// A tuple of [`Part`]s (one to four of them) that [`tuple()`] encodes.
pub trait Tuple {
    /// Appends the encoding of every part, in order, to `out`.
    fn encode(&self, out: &mut Vec<u8>);
}

macro_rules! tuple_impl {
    ($($name:ident),+) => {
        impl<$($name: Part),+> Tuple for ($($name,)+) {
            #[allow(non_snake_case)]
            fn encode(&self, out: &mut Vec<u8>) {
                let ($($name,)+) = self;
                $($name.encode(out);)+
            }
        }
    };
}

tuple_impl!(A);
tuple_impl!(A, B);
tuple_impl!(A, B, C);
tuple_impl!(A, B, C, D);

/// Reads the parts of a [`tuple()`] key back, one at a time, in order.
///
/// Each method returns `None` (and consumes nothing) when the next part is not of the
/// asked type or the key is malformed.
///
/// ```
/// use flume_lsm::key;
/// let k = key::tuple(("x\0y", -3i64, b"raw".to_vec()));
/// let mut parts = key::Parts::new(&k);
/// assert_eq!(parts.string().as_deref(), Some("x\0y"));
/// assert_eq!(parts.i64(), Some(-3));
/// assert_eq!(parts.bytes().as_deref(), Some(&b"raw"[..]));
/// assert!(parts.is_empty());
/// ```
#[derive(Debug, Clone)]
pub struct Parts<'a> {
    rest: &'a [u8],
}

impl<'a> Parts<'a> {
    /// Starts reading `key`.
    pub fn new(key: &'a [u8]) -> Self {
        Parts { rest: key }
    }

    /// Whether every part has been read.
    pub fn is_empty(&self) -> bool {
        self.rest.is_empty()
    }

    /// The bytes not read yet.
    pub fn rest(&self) -> &'a [u8] {
        self.rest
    }

    /// The next part as a byte string.
    pub fn bytes(&mut self) -> Option<Vec<u8>> {
        let mut out = Vec::new();
        let mut i = 0;
        while i < self.rest.len() {
            let b = self.rest[i];
            if b != ESCAPE {
                out.push(b);
                i += 1;
                continue;
            }
            match self.rest.get(i + 1) {
                Some(&ESCAPED_ZERO) => {
                    out.push(0);
                    i += 2;
                }
                Some(&TERMINATOR) => {
                    self.rest = &self.rest[i + 2..];
                    return Some(out);
                }
                _ => return None,
            }
        }
        None
    }

    /// The next part as a UTF-8 string.
    pub fn string(&mut self) -> Option<String> {
        let before = self.rest;
        let text = self.bytes().and_then(|b| String::from_utf8(b).ok());
        if text.is_none() {
            self.rest = before;
        }
        text
    }

    fn fixed<const N: usize>(&mut self) -> Option<[u8; N]> {
        let (head, tail) = self.rest.split_first_chunk::<N>()?;
        self.rest = tail;
        Some(*head)
    }

    /// The next part as a `u64`.
    pub fn u64(&mut self) -> Option<u64> {
        self.fixed::<8>().map(u64::from_be_bytes)
    }

    /// The next part as a `u32`.
    pub fn u32(&mut self) -> Option<u32> {
        self.fixed::<4>().map(u32::from_be_bytes)
    }

    /// The next part as an `i64`.
    pub fn i64(&mut self) -> Option<i64> {
        self.fixed::<8>()
            .map(|b| (u64::from_be_bytes(b) ^ (1 << 63)) as i64)
    }

    /// The next part as an `i32`.
    pub fn i32(&mut self) -> Option<i32> {
        self.fixed::<4>()
            .map(|b| (u32::from_be_bytes(b) ^ (1 << 31)) as i32)
    }
}

/// The smallest key greater than every key starting with `prefix`, or `None` when there
/// is none (the prefix is empty or all `ff` bytes).
pub fn prefix_end(prefix: &[u8]) -> Option<Vec<u8>> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return Some(end);
        }
    }
    None
}

/// A key's first 8 bytes as a big-endian number (zero-padded): orders like the key
/// whenever it differs, so sorted tables and run indexes compare it first.
pub(crate) fn key_prefix(key: &[u8]) -> u64 {
    let mut b = [0u8; 8];
    let n = key.len().min(8);
    b[..n].copy_from_slice(&key[..n]);
    u64::from_be_bytes(b)
}

/// Whether `key` is at or above the lower bound.
pub fn above_lo(key: &[u8], lo: &Bound<Vec<u8>>) -> bool {
    match lo {
        Bound::Included(b) => key >= b.as_slice(),
        Bound::Excluded(b) => key > b.as_slice(),
        Bound::Unbounded => true,
    }
}

/// Whether `key` is at or below the upper bound.
pub fn below_hi(key: &[u8], hi: &Bound<Vec<u8>>) -> bool {
    match hi {
        Bound::Included(b) => key <= b.as_slice(),
        Bound::Excluded(b) => key < b.as_slice(),
        Bound::Unbounded => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn prefix_end_is_the_first_key_after_the_prefix() {
        assert_eq!(prefix_end(b"ab"), Some(b"ac".to_vec()));
        assert_eq!(prefix_end(b"a\xff"), Some(b"b".to_vec()));
        assert_eq!(prefix_end(b"\xff\xff"), None);
        assert_eq!(prefix_end(b""), None);
    }

    proptest! {
        #[test]
        fn integers_keep_their_order(a in any::<i64>(), b in any::<i64>(), c in any::<u64>(), d in any::<u64>()) {
            prop_assert_eq!(a.cmp(&b), i64(a).cmp(&i64(b)));
            prop_assert_eq!(c.cmp(&d), u64(c).cmp(&u64(d)));
            prop_assert_eq!((a as i32).cmp(&(b as i32)), i32(a as i32).cmp(&i32(b as i32)));
        }

        #[test]
        fn tuples_keep_their_order_and_read_back(
            a in proptest::collection::vec(any::<u8>(), 0..6),
            b in any::<i64>(),
            c in proptest::collection::vec(any::<u8>(), 0..6),
            d in any::<i64>(),
        ) {
            let ka = tuple((a.clone(), b));
            let kc = tuple((c.clone(), d));
            prop_assert_eq!((&a, b).cmp(&(&c, d)), ka.cmp(&kc));
            // Prefix-freedom: the first part's encoding is a prefix exactly when equal.
            let pa = tuple((a.clone(),));
            prop_assert_eq!(kc.starts_with(&pa), a == c);
            let mut parts = Parts::new(&ka);
            prop_assert_eq!(parts.bytes(), Some(a));
            prop_assert_eq!(parts.i64(), Some(b));
            prop_assert!(parts.is_empty());
        }

        #[test]
        fn reading_junk_never_panics(junk in proptest::collection::vec(any::<u8>(), 0..20)) {
            let mut parts = Parts::new(&junk);
            let _ = parts.string();
            let _ = parts.bytes();
            let _ = parts.u64();
            let _ = parts.i32();
        }
    }
}
