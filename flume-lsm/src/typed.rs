//! Typed keys: key types with an order-preserving byte encoding ([`Key`], [`KeyPart`]),
//! the borrowed forms a read accepts for them ([`AsKey`], [`AsPart`]) and their typed
//! prefixes ([`KeyPrefix`]). The views built on this engine (`flumeview-index`,
//! `flumeview-kv`) declare a key type once and take and return it in every read.

use flume_core::BoxError;

use crate::key::{self, Parts};

/// A key type: encoded to bytes whose order is the key's order, so that range scans and
/// the order of a full scan follow the keys' own order.
///
/// | type | encoding ([`key`] module) |
/// |---|---|
/// | `String` | its UTF-8 bytes ([`key::string`]) |
/// | `Vec<u8>` | the bytes as they are |
/// | `u64`, `u32` | big-endian ([`key::u64()`], [`key::u32()`]) |
/// | `i64`, `i32` | big-endian with the sign bit flipped ([`key::i64()`], [`key::i32()`]) |
/// | `(A, B)`, `(A, B, C)` of the above | [`key::tuple()`]: prefix-free, part by part |
///
/// A tuple's first parts encoded with [`key::tuple()`] are a byte prefix of every key
/// that starts with them, so a prefix scan finds, say, every `(user, document)` key of
/// one user ([`KeyPrefix`]).
///
/// ```
/// use flume_lsm::{key, Key};
///
/// let mut bytes = Vec::new();
/// ("alice".to_string(), 7u64).encode(&mut bytes);
/// assert_eq!(bytes, key::tuple(("alice", 7u64)));
/// assert_eq!(<(String, u64)>::decode(&bytes).unwrap(), ("alice".to_string(), 7));
///
/// let (mut a, mut b) = (Vec::new(), Vec::new());
/// (-3i64).encode(&mut a);
/// 2i64.encode(&mut b);
/// assert!(a < b);
/// ```
///
/// Implement it for a key type of your own by encoding to bytes whose byte order is the
/// order you want scans in (any encoding works for point reads; only scans see the
/// order), and implement [`AsKey`] for it too, so that reads accept it:
///
/// ```
/// use flume_core::BoxError;
/// use flume_lsm::{AsKey, Key};
///
/// #[derive(Debug, PartialEq)]
/// struct Day(u32);
///
/// impl Key for Day {
///     fn encode(&self, out: &mut Vec<u8>) { self.0.encode(out) }
///     fn decode(bytes: &[u8]) -> Result<Self, BoxError> { u32::decode(bytes).map(Day) }
/// }
/// impl AsKey<Day> for Day {
///     fn encode_key(&self, out: &mut Vec<u8>) { self.encode(out) }
/// }
///
/// assert_eq!(Day::decode(&Day(3).key_bytes()).unwrap(), Day(3));
/// ```
pub trait Key: Sized + Send + Sync + 'static {
    /// Appends the key's encoding to `out`.
    fn encode(&self, out: &mut Vec<u8>);

    /// The key back from its encoding.
    ///
    /// # Errors
    /// Bytes that are not an encoding of this type (the view's keys were written by a
    /// map with another key type: bump the view's version).
    fn decode(bytes: &[u8]) -> Result<Self, BoxError>;

    /// The key's encoding, as a new vector.
    ///
    /// ```
    /// use flume_lsm::Key;
    /// assert_eq!(7u32.to_bytes(), [0, 0, 0, 7]);
    /// ```
    fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::new();
        self.encode(&mut out);
        out
    }
}

/// A [`Key`] that can be a part of a tuple key: its tuple encoding (see [`key::Part`])
/// is prefix-free, unlike the plain encoding of a string or byte key.
///
/// ```
/// use flume_lsm::{key, KeyPart};
/// let mut out = Vec::new();
/// "a".to_string().encode_part(&mut out);
/// assert_eq!(out, key::tuple(("a",)));
/// ```
pub trait KeyPart: Key {
    /// Appends the part's encoding inside a tuple to `out`.
    fn encode_part(&self, out: &mut Vec<u8>);

    /// Reads the next part of a tuple, `None` when it is not of this type.
    fn decode_part(parts: &mut Parts<'_>) -> Option<Self>;
}

/// What a read of a `K`-keyed view accepts as a key: a `K`, or a borrowed form of it
/// that encodes the same, so that a read needs no owned key.
///
/// | `K` | accepted |
/// |---|---|
/// | `Vec<u8>` | anything `AsRef<[u8]>`: `&[u8]`, `[u8; N]`, `Vec<u8>`, `&str`, `String`, … |
/// | `String` | `String`, `&String`, `&str` |
/// | `u64`, `u32`, `i64`, `i32` | the integer, or a reference to it |
/// | `(A, B)`, `(A, B, C)` | a tuple of [`AsPart`] forms of the parts: `(&str, u64)` for `(String, u64)`; or a reference to one |
///
/// ```
/// use flume_lsm::{AsKey, Key};
///
/// fn encoded<K: Key>(key: impl AsKey<K>) -> Vec<u8> { key.key_bytes() }
///
/// let owned = ("alice".to_string(), 7u64);
/// assert_eq!(encoded::<(String, u64)>(("alice", 7)), owned.to_bytes());
/// assert_eq!(encoded::<(String, u64)>(&owned), owned.to_bytes());
/// assert_eq!(encoded::<String>("bob"), b"bob");
/// assert_eq!(encoded::<Vec<u8>>(*b"raw"), b"raw");
/// ```
///
/// A key of the wrong shape does not compile:
///
/// ```compile_fail
/// use flume_lsm::{AsKey, Key};
/// fn encoded<K: Key>(key: impl AsKey<K>) -> Vec<u8> { key.key_bytes() }
/// // The parts in the wrong order.
/// encoded::<(String, u64)>((7u64, "alice"));
/// ```
///
/// ```compile_fail
/// use flume_lsm::{AsKey, Key};
/// fn encoded<K: Key>(key: impl AsKey<K>) -> Vec<u8> { key.key_bytes() }
/// // A one-part tuple is not a string key (it encodes differently).
/// encoded::<String>(("alice",));
/// ```
///
/// ```compile_fail
/// use flume_lsm::{AsKey, Key};
/// fn encoded<K: Key>(key: impl AsKey<K>) -> Vec<u8> { key.key_bytes() }
/// // A u32 is not a u64 key.
/// encoded::<u64>(7u32);
/// ```
pub trait AsKey<K: Key> {
    /// Appends the encoding of the key `K` this stands for to `out`.
    fn encode_key(&self, out: &mut Vec<u8>);

    /// The encoding, as a new vector.
    fn key_bytes(&self) -> Vec<u8> {
        let mut out = Vec::new();
        self.encode_key(&mut out);
        out
    }
}

/// A borrowed (or owned) form of a tuple part `P`: `&str` or `String` for a `String`
/// part, `&[u8]` or `Vec<u8>` for a `Vec<u8>` part, the integer for an integer part.
pub trait AsPart<P: KeyPart> {
    /// Appends the encoding of the part `P` this stands for, inside a tuple, to `out`.
    fn encode_part_as(&self, out: &mut Vec<u8>);
}

/// A typed prefix of the keys `K`: what a prefix scan of a `K`-keyed view accepts.
///
/// | `K` | prefixes |
/// |---|---|
/// | `Vec<u8>` | any bytes (`AsRef<[u8]>`) |
/// | `String` | any string (`&str`, `String`): a prefix of the text |
/// | `(A, B)` | `(a,)` (every key whose first part is `a`), `(a, b)` |
/// | `(A, B, C)` | `(a,)`, `(a, b)`, `(a, b, c)` |
///
/// where `a`, `b`, `c` are [`AsPart`] forms of the parts. Integers have no prefixes.
///
/// ```
/// use flume_lsm::{Key, KeyPrefix};
///
/// fn prefix<K: Key>(p: impl KeyPrefix<K>) -> Vec<u8> { p.prefix_bytes() }
///
/// let key = ("alice".to_string(), 7u64, -1i64).to_bytes();
/// assert!(key.starts_with(&prefix::<(String, u64, i64)>(("alice",))));
/// assert!(key.starts_with(&prefix::<(String, u64, i64)>(("alice", 7))));
/// assert!(!key.starts_with(&prefix::<(String, u64, i64)>(("ali",))));
/// assert!("alice".to_string().to_bytes().starts_with(&prefix::<String>("ali")));
/// ```
///
/// A prefix of the wrong shape does not compile:
///
/// ```compile_fail
/// use flume_lsm::{Key, KeyPrefix};
/// fn prefix<K: Key>(p: impl KeyPrefix<K>) -> Vec<u8> { p.prefix_bytes() }
/// // The first part of (String, u64) is a string.
/// prefix::<(String, u64)>((7u64,));
/// ```
///
/// ```compile_fail
/// use flume_lsm::{Key, KeyPrefix};
/// fn prefix<K: Key>(p: impl KeyPrefix<K>) -> Vec<u8> { p.prefix_bytes() }
/// // A plain string is no prefix of a tuple key: use ("ali",).
/// prefix::<(String, u64)>("ali");
/// ```
pub trait KeyPrefix<K: Key> {
    /// Appends the prefix's encoding to `out`: a byte prefix of the encoding of every key
    /// it is a prefix of, and of no other.
    fn encode_prefix(&self, out: &mut Vec<u8>);

    /// The encoding, as a new vector.
    fn prefix_bytes(&self) -> Vec<u8> {
        let mut out = Vec::new();
        self.encode_prefix(&mut out);
        out
    }
}

fn not_a(what: &str, bytes: &[u8]) -> BoxError {
    format!("{} bytes are not the key encoding of {what}", bytes.len()).into()
}

// ----- scalar keys ----------------------------------------------------------------------

impl Key for String {
    fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(key::string(self));
    }

    fn decode(bytes: &[u8]) -> Result<Self, BoxError> {
        Ok(String::from_utf8(bytes.to_vec())?)
    }
}

impl Key for Vec<u8> {
    fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(self);
    }

    fn decode(bytes: &[u8]) -> Result<Self, BoxError> {
        Ok(bytes.to_vec())
    }
}

macro_rules! int_key {
    ($ty:ident, $n:literal) => {
        impl Key for $ty {
            fn encode(&self, out: &mut Vec<u8>) {
                out.extend_from_slice(&key::$ty(*self));
            }

            fn decode(bytes: &[u8]) -> Result<Self, BoxError> {
                if bytes.len() != $n {
                    return Err(not_a(stringify!($ty), bytes));
                }
                Parts::new(bytes)
                    .$ty()
                    .ok_or_else(|| not_a(stringify!($ty), bytes))
            }
        }

        impl KeyPart for $ty {
            fn encode_part(&self, out: &mut Vec<u8>) {
                self.encode(out);
            }

            fn decode_part(parts: &mut Parts<'_>) -> Option<Self> {
                parts.$ty()
            }
        }

        impl AsKey<$ty> for $ty {
            fn encode_key(&self, out: &mut Vec<u8>) {
                self.encode(out);
            }
        }

        impl AsPart<$ty> for $ty {
            fn encode_part_as(&self, out: &mut Vec<u8>) {
                self.encode(out);
            }
        }
    };
}

int_key!(u64, 8);
int_key!(u32, 4);
int_key!(i64, 8);
int_key!(i32, 4);

impl KeyPart for String {
    fn encode_part(&self, out: &mut Vec<u8>) {
        key::Part::encode(self.as_str(), out);
    }

    fn decode_part(parts: &mut Parts<'_>) -> Option<Self> {
        parts.string()
    }
}

impl KeyPart for Vec<u8> {
    fn encode_part(&self, out: &mut Vec<u8>) {
        key::Part::encode(self.as_slice(), out);
    }

    fn decode_part(parts: &mut Parts<'_>) -> Option<Self> {
        parts.bytes()
    }
}

// ----- borrowed forms -------------------------------------------------------------------

impl<B: AsRef<[u8]> + ?Sized> AsKey<Vec<u8>> for B {
    fn encode_key(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(self.as_ref());
    }
}

impl<B: AsRef<[u8]> + ?Sized> KeyPrefix<Vec<u8>> for B {
    fn encode_prefix(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(self.as_ref());
    }
}

impl AsKey<String> for str {
    fn encode_key(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(self.as_bytes());
    }
}

impl AsKey<String> for String {
    fn encode_key(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(self.as_bytes());
    }
}

impl KeyPrefix<String> for str {
    fn encode_prefix(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(self.as_bytes());
    }
}

impl KeyPrefix<String> for String {
    fn encode_prefix(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(self.as_bytes());
    }
}

impl AsPart<String> for str {
    fn encode_part_as(&self, out: &mut Vec<u8>) {
        key::Part::encode(self, out);
    }
}

impl AsPart<String> for String {
    fn encode_part_as(&self, out: &mut Vec<u8>) {
        key::Part::encode(self.as_str(), out);
    }
}

impl AsPart<Vec<u8>> for [u8] {
    fn encode_part_as(&self, out: &mut Vec<u8>) {
        key::Part::encode(self, out);
    }
}

impl AsPart<Vec<u8>> for Vec<u8> {
    fn encode_part_as(&self, out: &mut Vec<u8>) {
        key::Part::encode(self.as_slice(), out);
    }
}

impl<const N: usize> AsPart<Vec<u8>> for [u8; N] {
    fn encode_part_as(&self, out: &mut Vec<u8>) {
        key::Part::encode(self.as_slice(), out);
    }
}

/// A reference stands for what it points at (`&String`, `&&str`, `&u64`, `&(A, B)`…).
macro_rules! by_ref {
    ($trait:ident, $method:ident, [$($g:ident),*], $k:ty) => {
        impl<$($g: KeyPart,)* Q: $trait<$k> + ?Sized> $trait<$k> for &Q {
            fn $method(&self, out: &mut Vec<u8>) {
                (**self).$method(out);
            }
        }
    };
}

by_ref!(AsKey, encode_key, [], String);
by_ref!(AsKey, encode_key, [], u64);
by_ref!(AsKey, encode_key, [], u32);
by_ref!(AsKey, encode_key, [], i64);
by_ref!(AsKey, encode_key, [], i32);
by_ref!(AsKey, encode_key, [A, B], (A, B));
by_ref!(AsKey, encode_key, [A, B, C], (A, B, C));
by_ref!(KeyPrefix, encode_prefix, [], String);
by_ref!(KeyPrefix, encode_prefix, [A, B], (A, B));
by_ref!(KeyPrefix, encode_prefix, [A, B, C], (A, B, C));
by_ref!(AsPart, encode_part_as, [], String);
by_ref!(AsPart, encode_part_as, [], Vec<u8>);
by_ref!(AsPart, encode_part_as, [], u64);
by_ref!(AsPart, encode_part_as, [], u32);
by_ref!(AsPart, encode_part_as, [], i64);
by_ref!(AsPart, encode_part_as, [], i32);

// ----- tuples ---------------------------------------------------------------------------

impl<A: KeyPart, B: KeyPart> Key for (A, B) {
    fn encode(&self, out: &mut Vec<u8>) {
        self.0.encode_part(out);
        self.1.encode_part(out);
    }

    fn decode(bytes: &[u8]) -> Result<Self, BoxError> {
        let mut parts = Parts::new(bytes);
        let a = A::decode_part(&mut parts);
        let b = B::decode_part(&mut parts);
        match (a, b) {
            (Some(a), Some(b)) if parts.is_empty() => Ok((a, b)),
            _ => Err(not_a("a 2-tuple", bytes)),
        }
    }
}

impl<A: KeyPart, B: KeyPart, C: KeyPart> Key for (A, B, C) {
    fn encode(&self, out: &mut Vec<u8>) {
        self.0.encode_part(out);
        self.1.encode_part(out);
        self.2.encode_part(out);
    }

    fn decode(bytes: &[u8]) -> Result<Self, BoxError> {
        let mut parts = Parts::new(bytes);
        let a = A::decode_part(&mut parts);
        let b = B::decode_part(&mut parts);
        let c = C::decode_part(&mut parts);
        match (a, b, c) {
            (Some(a), Some(b), Some(c)) if parts.is_empty() => Ok((a, b, c)),
            _ => Err(not_a("a 3-tuple", bytes)),
        }
    }
}

impl<A: KeyPart, B: KeyPart, X: AsPart<A>, Y: AsPart<B>> AsKey<(A, B)> for (X, Y) {
    fn encode_key(&self, out: &mut Vec<u8>) {
        self.0.encode_part_as(out);
        self.1.encode_part_as(out);
    }
}

impl<A, B, C, X, Y, Z> AsKey<(A, B, C)> for (X, Y, Z)
where
    A: KeyPart,
    B: KeyPart,
    C: KeyPart,
    X: AsPart<A>,
    Y: AsPart<B>,
    Z: AsPart<C>,
{
    fn encode_key(&self, out: &mut Vec<u8>) {
        self.0.encode_part_as(out);
        self.1.encode_part_as(out);
        self.2.encode_part_as(out);
    }
}

impl<A: KeyPart, B: KeyPart, X: AsPart<A>> KeyPrefix<(A, B)> for (X,) {
    fn encode_prefix(&self, out: &mut Vec<u8>) {
        self.0.encode_part_as(out);
    }
}

impl<A: KeyPart, B: KeyPart, X: AsPart<A>, Y: AsPart<B>> KeyPrefix<(A, B)> for (X, Y) {
    fn encode_prefix(&self, out: &mut Vec<u8>) {
        self.0.encode_part_as(out);
        self.1.encode_part_as(out);
    }
}

impl<A: KeyPart, B: KeyPart, C: KeyPart, X: AsPart<A>> KeyPrefix<(A, B, C)> for (X,) {
    fn encode_prefix(&self, out: &mut Vec<u8>) {
        self.0.encode_part_as(out);
    }
}

impl<A: KeyPart, B: KeyPart, C: KeyPart, X: AsPart<A>, Y: AsPart<B>> KeyPrefix<(A, B, C)>
    for (X, Y)
{
    fn encode_prefix(&self, out: &mut Vec<u8>) {
        self.0.encode_part_as(out);
        self.1.encode_part_as(out);
    }
}

impl<A, B, C, X, Y, Z> KeyPrefix<(A, B, C)> for (X, Y, Z)
where
    A: KeyPart,
    B: KeyPart,
    C: KeyPart,
    X: AsPart<A>,
    Y: AsPart<B>,
    Z: AsPart<C>,
{
    fn encode_prefix(&self, out: &mut Vec<u8>) {
        self.0.encode_part_as(out);
        self.1.encode_part_as(out);
        self.2.encode_part_as(out);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn roundtrip<K: Key + PartialEq + std::fmt::Debug>(k: &K) -> Result<(), TestCaseError> {
        prop_assert_eq!(&K::decode(&k.to_bytes()).expect("decodes"), k);
        Ok(())
    }

    proptest! {
        #[test]
        fn scalar_keys_keep_their_order_and_read_back(
            a in any::<i64>(), b in any::<i64>(), c in any::<u32>(), d in any::<u32>(),
            s in ".{0,6}", t in ".{0,6}",
        ) {
            prop_assert_eq!(a.cmp(&b), a.to_bytes().cmp(&b.to_bytes()));
            prop_assert_eq!((a as i32).cmp(&(b as i32)), (a as i32).to_bytes().cmp(&(b as i32).to_bytes()));
            prop_assert_eq!((a as u64).cmp(&(b as u64)), (a as u64).to_bytes().cmp(&(b as u64).to_bytes()));
            prop_assert_eq!(c.cmp(&d), c.to_bytes().cmp(&d.to_bytes()));
            prop_assert_eq!(s.cmp(&t), s.to_bytes().cmp(&t.to_bytes()));
            roundtrip(&a)?;
            roundtrip(&(a as i32))?;
            roundtrip(&(a as u64))?;
            roundtrip(&c)?;
            roundtrip(&s)?;
            roundtrip(&s.clone().into_bytes())?;
        }

        #[test]
        fn tuple_keys_keep_their_order_read_back_and_are_prefix_free(
            a in proptest::collection::vec(prop_oneof![Just(0u8), Just(1u8), Just(b'a'), Just(0xff)], 0..4),
            b in any::<u64>(),
            c in proptest::collection::vec(prop_oneof![Just(0u8), Just(1u8), Just(b'a'), Just(0xff)], 0..4),
            d in any::<u64>(),
            s in "[a\u{0}]{0,3}", t in "[a\u{0}]{0,3}", n in any::<i32>(),
        ) {
            let (x, y) = ((a.clone(), b), (c.clone(), d));
            prop_assert_eq!(x.cmp(&y), x.to_bytes().cmp(&y.to_bytes()));
            roundtrip(&x)?;
            let (x3, y3) = ((s.clone(), n, b), (t.clone(), n, d));
            prop_assert_eq!(x3.cmp(&y3), x3.to_bytes().cmp(&y3.to_bytes()));
            roundtrip(&x3)?;
            // The first part, as `key::tuple` encodes it, is a prefix exactly when equal.
            prop_assert_eq!(y.to_bytes().starts_with(&key::tuple((a.clone(),))), a == c);
            prop_assert_eq!(y3.to_bytes().starts_with(&key::tuple((s.as_str(),))), s == t);
        }

        #[test]
        fn decoding_junk_fails_without_panicking(junk in proptest::collection::vec(any::<u8>(), 0..20)) {
            let _ = u64::decode(&junk);
            let _ = i32::decode(&junk);
            let _ = String::decode(&junk);
            let _ = <(String, u64)>::decode(&junk);
            let _ = <(Vec<u8>, i64, u32)>::decode(&junk);
        }
    }

    #[test]
    fn wrong_lengths_and_trailing_bytes_are_errors() {
        assert!(u64::decode(&[0; 7]).is_err());
        assert!(u32::decode(&[0; 5]).is_err());
        let mut bytes = ("a".to_string(), 1u64).to_bytes();
        bytes.push(0);
        assert!(<(String, u64)>::decode(&bytes).is_err());
        assert!(String::decode(&[0xff]).is_err());
    }
}
