//! How the state value is encoded inside the state file.

use bytes::Bytes;
use flume_core::{BoxError, Codec, Json, MsgPack};
use serde::de::DeserializeOwned;
use serde::Serialize;

/// The encoding of the persisted state value.
///
/// The codec is recorded in the state file, so a file written with one codec is still
/// read after switching to the other (the next checkpoint rewrites it with the new one);
/// changing the codec never forces a rebuild.
///
/// `flume_core::Json` and `flume_core::MsgPack` convert into this enum, so
/// `.codec(flume_core::MsgPack)` and `.codec(StateCodec::MsgPack)` mean the same.
///
/// ```
/// use flumeview_reduce::StateCodec;
/// assert_eq!(StateCodec::default(), StateCodec::Json);
/// assert_eq!(StateCodec::from(flume_core::MsgPack), StateCodec::MsgPack);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
pub enum StateCodec {
    /// JSON through serde_json (codec id 1): readable with any text tool. The default.
    #[default]
    Json,
    /// MessagePack through rmp-serde with named fields (codec id 2): smaller and faster.
    MsgPack,
}

impl StateCodec {
    /// The codec's id byte in the state file.
    pub(crate) fn id(self) -> u8 {
        match self {
            StateCodec::Json => 1,
            StateCodec::MsgPack => 2,
        }
    }

    /// The codec with this id byte, if any.
    pub(crate) fn from_id(id: u8) -> Option<Self> {
        match id {
            1 => Some(StateCodec::Json),
            2 => Some(StateCodec::MsgPack),
            _ => None,
        }
    }
}

impl From<Json> for StateCodec {
    fn from(_: Json) -> Self {
        StateCodec::Json
    }
}

impl From<MsgPack> for StateCodec {
    fn from(_: MsgPack) -> Self {
        StateCodec::MsgPack
    }
}

/// Encodes a state value with `codec`.
pub(crate) fn encode_state<S>(codec: StateCodec, state: &S) -> Result<Bytes, BoxError>
where
    S: Serialize + DeserializeOwned,
{
    match codec {
        StateCodec::Json => Json.encode(state),
        StateCodec::MsgPack => MsgPack.encode(state),
    }
}

/// Decodes a state value written with `codec`.
pub(crate) fn decode_state<S>(codec: StateCodec, bytes: &Bytes) -> Result<S, BoxError>
where
    S: Serialize + DeserializeOwned,
{
    match codec {
        StateCodec::Json => Json.decode(bytes),
        StateCodec::MsgPack => MsgPack.decode(bytes),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_round_trip() {
        for codec in [StateCodec::Json, StateCodec::MsgPack] {
            assert_eq!(StateCodec::from_id(codec.id()), Some(codec));
        }
        assert_eq!(StateCodec::from_id(0), None);
        assert_eq!(StateCodec::from_id(3), None);
    }

    #[test]
    fn both_codecs_round_trip_a_value() -> Result<(), BoxError> {
        let value = (7u64, "seven".to_string());
        for codec in [StateCodec::Json, StateCodec::MsgPack] {
            let bytes = encode_state(codec, &value)?;
            let back: (u64, String) = decode_state(codec, &bytes)?;
            assert_eq!(back, value);
        }
        Ok(())
    }
}
