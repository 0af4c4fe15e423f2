//! The codecs of typed bodies: the hub's own `C`, or the one a peer
//! named in its hello.

use ipc_core::{Codec, CodecError};
use serde::Serialize;
use serde::de::DeserializeOwned;

/// The codecs a hub can speak: any [`Codec`] that is a plain value.
pub trait HubCodec: Codec + Default + Send + Sync + 'static {}
impl<C: Codec + Default + Send + Sync + 'static> HubCodec for C {}

/// A codec an agent can name in its hello, so the hub encodes and
/// decodes that agent's typed bodies with it (docs/PROTOCOL.md, section
/// 5). JSON and MessagePack are read by every common language, and a type
/// can gain an optional field (`#[serde(default)]`) without breaking an
/// older peer either way; postcard is the compact Rust default.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum BodyCodec {
    /// [`ipc_core::Postcard`], named `postcard`.
    Postcard,
    /// [`ipc_core::Json`], named `json`.
    Json,
    /// [`ipc_core::MessagePack`], named `msgpack`.
    MessagePack,
}

impl BodyCodec {
    /// Every codec a hub speaks.
    pub const ALL: [BodyCodec; 3] = [BodyCodec::Postcard, BodyCodec::Json, BodyCodec::MessagePack];

    /// Its name in a hello.
    pub fn name(self) -> &'static str {
        match self {
            BodyCodec::Postcard => ipc_core::Postcard::NAME,
            BodyCodec::Json => ipc_core::Json::NAME,
            BodyCodec::MessagePack => ipc_core::MessagePack::NAME,
        }
    }

    /// The codec of that name, if a hub speaks it.
    pub fn from_name(name: &str) -> Option<BodyCodec> {
        BodyCodec::ALL.into_iter().find(|c| c.name() == name)
    }

    fn encode<T: Serialize + ?Sized>(self, value: &T, out: &mut Vec<u8>) -> Result<(), CodecError> {
        match self {
            BodyCodec::Postcard => ipc_core::Postcard.encode(value, out),
            BodyCodec::Json => ipc_core::Json.encode(value, out),
            BodyCodec::MessagePack => ipc_core::MessagePack.encode(value, out),
        }
    }

    fn decode<T: DeserializeOwned>(self, bytes: &[u8]) -> Result<T, CodecError> {
        match self {
            BodyCodec::Postcard => ipc_core::Postcard.decode(bytes),
            BodyCodec::Json => ipc_core::Json.decode(bytes),
            BodyCodec::MessagePack => ipc_core::MessagePack.decode(bytes),
        }
    }
}

/// The codec of one peer's typed bodies: the one it named in its hello,
/// or (none named) the owner's own `C`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub(crate) struct PeerCodec(pub(crate) Option<BodyCodec>);

impl PeerCodec {
    pub(crate) fn encode<C: HubCodec, T: Serialize + ?Sized>(
        self,
        value: &T,
        out: &mut Vec<u8>,
    ) -> Result<(), CodecError> {
        match self.0 {
            Some(codec) => codec.encode(value, out),
            None => C::default().encode(value, out),
        }
    }

    pub(crate) fn decode<C: HubCodec, T: DeserializeOwned>(
        self,
        bytes: &[u8],
    ) -> Result<T, CodecError> {
        match self.0 {
            Some(codec) => codec.decode(bytes),
            None => C::default().decode(bytes),
        }
    }
}
