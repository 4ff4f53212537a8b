//! Codecs turn typed values into the opaque bytes a log stores, and back.

use bytes::Bytes;
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::BoxError;

/// Encodes values of type `T` to bytes and decodes them back.
///
/// flume-core applies the codec, so every log backend works with every record type.
/// The built-in codecs are [`Json`], [`MsgPack`] and [`Raw`]; a custom codec is a few
/// lines:
///
/// ```
/// use bytes::Bytes;
/// use flume_core::{BoxError, Codec};
///
/// /// Stores `u64`s as 8 little-endian bytes.
/// #[derive(Debug)]
/// struct U64Le;
///
/// impl Codec<u64> for U64Le {
///     fn encode(&self, value: &u64) -> Result<Bytes, BoxError> {
///         Ok(Bytes::copy_from_slice(&value.to_le_bytes()))
///     }
///     fn decode(&self, bytes: &Bytes) -> Result<u64, BoxError> {
///         let array: [u8; 8] = bytes.as_ref().try_into()?;
///         Ok(u64::from_le_bytes(array))
///     }
/// }
///
/// assert_eq!(U64Le.decode(&U64Le.encode(&7).unwrap()).unwrap(), 7);
/// ```
pub trait Codec<T>: Send + Sync + 'static {
    /// Encodes one value.
    ///
    /// # Errors
    /// Whatever the serializer reports (for example a map with non-string keys in JSON).
    fn encode(&self, value: &T) -> Result<Bytes, BoxError>;

    /// Decodes one value.
    ///
    /// # Errors
    /// When the bytes are not a valid encoding of `T`.
    fn decode(&self, bytes: &Bytes) -> Result<T, BoxError>;
}

/// JSON through serde_json: human-readable, the format JS flumedb used.
///
/// ```
/// use flume_core::{Codec, Json};
/// let bytes = Json.encode(&vec![1, 2]).unwrap();
/// assert_eq!(&bytes[..], b"[1,2]");
/// let back: Vec<i32> = Json.decode(&bytes).unwrap();
/// assert_eq!(back, vec![1, 2]);
/// ```
#[derive(Debug, Clone, Copy, Default)]
pub struct Json;

impl<T: Serialize + DeserializeOwned> Codec<T> for Json {
    fn encode(&self, value: &T) -> Result<Bytes, BoxError> {
        Ok(serde_json::to_vec(value)?.into())
    }
    fn decode(&self, bytes: &Bytes) -> Result<T, BoxError> {
        Ok(serde_json::from_slice(bytes)?)
    }
}

/// MessagePack through rmp-serde, with named fields (structs encode as maps, so records
/// stay readable after fields are added).
///
/// ```
/// use flume_core::{Codec, MsgPack};
/// let bytes = MsgPack.encode(&(1u8, "a".to_string())).unwrap();
/// let back: (u8, String) = MsgPack.decode(&bytes).unwrap();
/// assert_eq!(back, (1, "a".to_string()));
/// ```
#[derive(Debug, Clone, Copy, Default)]
pub struct MsgPack;

impl<T: Serialize + DeserializeOwned> Codec<T> for MsgPack {
    fn encode(&self, value: &T) -> Result<Bytes, BoxError> {
        Ok(rmp_serde::to_vec_named(value)?.into())
    }
    fn decode(&self, bytes: &Bytes) -> Result<T, BoxError> {
        Ok(rmp_serde::from_slice(bytes)?)
    }
}

/// The bytes as they are, for records of type [`Bytes`] or `Vec<u8>`. Never fails.
///
/// ```
/// use bytes::Bytes;
/// use flume_core::{Codec, Raw};
/// let bytes = Raw.encode(&Bytes::from_static(b"hi")).unwrap();
/// assert_eq!(&bytes[..], b"hi");
/// ```
#[derive(Debug, Clone, Copy, Default)]
pub struct Raw;

impl Codec<Bytes> for Raw {
    fn encode(&self, value: &Bytes) -> Result<Bytes, BoxError> {
        Ok(value.clone())
    }
    fn decode(&self, bytes: &Bytes) -> Result<Bytes, BoxError> {
        Ok(bytes.clone())
    }
}

impl Codec<Vec<u8>> for Raw {
    fn encode(&self, value: &Vec<u8>) -> Result<Bytes, BoxError> {
        Ok(Bytes::copy_from_slice(value))
    }
    fn decode(&self, bytes: &Bytes) -> Result<Vec<u8>, BoxError> {
        Ok(bytes.to_vec())
    }
}
