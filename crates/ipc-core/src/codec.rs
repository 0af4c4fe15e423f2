//! Serde codecs: typed values to frames and back.
//!
//! A codec knows nothing about transports; [`Typed`](crate::Typed) joins a
//! codec to a connection. A decode of bytes that are not a valid encoding
//! is an error, never a panic.

use serde::Serialize;
use serde::de::DeserializeOwned;

/// Why a value could not be encoded or decoded.
#[derive(Debug, thiserror::Error)]
#[error("{codec} {op} failed: {message}")]
pub struct CodecError {
    /// The codec's name.
    pub codec: &'static str,
    /// `encode` or `decode`.
    pub op: &'static str,
    /// The codec's own description of the failure.
    pub message: String,
}

/// Encodes serde values into bytes and decodes them back.
pub trait Codec {
    /// A short name for reports (`postcard`, `bincode`, `json`).
    const NAME: &'static str;

    /// Appends the encoding of `value` to `out`.
    fn encode<T: Serialize + ?Sized>(&self, value: &T, out: &mut Vec<u8>)
    -> Result<(), CodecError>;

    /// Decodes one value that fills all of `bytes`.
    fn decode<T: DeserializeOwned>(&self, bytes: &[u8]) -> Result<T, CodecError>;
}

fn error(codec: &'static str, op: &'static str, err: impl std::fmt::Display) -> CodecError {
    CodecError {
        codec,
        op,
        message: err.to_string(),
    }
}

/// [postcard](https://docs.rs/postcard): compact, varint-based; the default.
#[derive(Debug, Clone, Copy, Default)]
pub struct Postcard;

impl Codec for Postcard {
    const NAME: &'static str = "postcard";

    fn encode<T: Serialize + ?Sized>(
        &self,
        value: &T,
        out: &mut Vec<u8>,
    ) -> Result<(), CodecError> {
        let taken = std::mem::take(out);
        *out = postcard::to_extend(value, taken).map_err(|e| error(Self::NAME, "encode", e))?;
        Ok(())
    }

    fn decode<T: DeserializeOwned>(&self, bytes: &[u8]) -> Result<T, CodecError> {
        let (value, rest) =
            postcard::take_from_bytes(bytes).map_err(|e| error(Self::NAME, "decode", e))?;
        if !rest.is_empty() {
            return Err(error(
                Self::NAME,
                "decode",
                format!("{} trailing bytes", rest.len()),
            ));
        }
        Ok(value)
    }
}

/// [bincode 2](https://docs.rs/bincode) (feature `bincode`) with its standard configuration
/// (varint integers, little endian), plus a decode limit: without one, a
/// length prefix in hostile bytes makes bincode allocate whatever it says
/// (found by the `codec_decode` fuzz target). Kept for comparison: 2.x is
/// no longer maintained and 3.0.0 is an empty release.
#[cfg(feature = "bincode")]
#[derive(Debug, Clone, Copy, Default)]
pub struct Bincode;

/// The most bytes a bincode decode may claim: the default maximum message
/// size, since a frame is never larger.
#[cfg(feature = "bincode")]
pub const BINCODE_DECODE_LIMIT: usize = crate::DEFAULT_MAX_MESSAGE_SIZE;

#[cfg(feature = "bincode")]
fn bincode_config() -> impl bincode::config::Config {
    bincode::config::standard().with_limit::<BINCODE_DECODE_LIMIT>()
}

#[cfg(feature = "bincode")]
impl Codec for Bincode {
    const NAME: &'static str = "bincode";

    fn encode<T: Serialize + ?Sized>(
        &self,
        value: &T,
        out: &mut Vec<u8>,
    ) -> Result<(), CodecError> {
        bincode::serde::encode_into_std_write(value, out, bincode_config())
            .map_err(|e| error(Self::NAME, "encode", e))?;
        Ok(())
    }

    fn decode<T: DeserializeOwned>(&self, bytes: &[u8]) -> Result<T, CodecError> {
        let (value, used) = bincode::serde::decode_from_slice(bytes, bincode_config())
            .map_err(|e| error(Self::NAME, "decode", e))?;
        if used != bytes.len() {
            return Err(error(
                Self::NAME,
                "decode",
                format!("{} trailing bytes", bytes.len() - used),
            ));
        }
        Ok(value)
    }
}

/// JSON via [serde_json](https://docs.rs/serde_json) (feature `json`):
/// readable, largest.
#[cfg(feature = "json")]
#[derive(Debug, Clone, Copy, Default)]
pub struct Json;

#[cfg(feature = "json")]
impl Codec for Json {
    const NAME: &'static str = "json";

    fn encode<T: Serialize + ?Sized>(
        &self,
        value: &T,
        out: &mut Vec<u8>,
    ) -> Result<(), CodecError> {
        serde_json::to_writer(out, value).map_err(|e| error(Self::NAME, "encode", e))
    }

    fn decode<T: DeserializeOwned>(&self, bytes: &[u8]) -> Result<T, CodecError> {
        serde_json::from_slice(bytes).map_err(|e| error(Self::NAME, "decode", e))
    }
}

/// [MessagePack](https://msgpack.org) via
/// [rmp-serde](https://docs.rs/rmp-serde) (feature `msgpack`): compact,
/// and read by every common language. Structs are written as maps with
/// their field names, so a type can gain a field (`#[serde(default)]`)
/// without breaking an older peer either way: the older one skips the
/// field it does not know, the newer one defaults the field it did not
/// get. (Postcard and bincode write fields by position and cannot.)
#[cfg(feature = "msgpack")]
#[derive(Debug, Clone, Copy, Default)]
pub struct MessagePack;

#[cfg(feature = "msgpack")]
impl Codec for MessagePack {
    const NAME: &'static str = "msgpack";

    fn encode<T: Serialize + ?Sized>(
        &self,
        value: &T,
        out: &mut Vec<u8>,
    ) -> Result<(), CodecError> {
        let mut ser = rmp_serde::Serializer::new(out).with_struct_map();
        value
            .serialize(&mut ser)
            .map_err(|e| error(Self::NAME, "encode", e))
    }

    fn decode<T: DeserializeOwned>(&self, bytes: &[u8]) -> Result<T, CodecError> {
        // A reader over the slice: a length prefix reads at most the bytes
        // that are there, never allocates what it claims.
        let mut de = rmp_serde::Deserializer::new(bytes);
        let value = T::deserialize(&mut de).map_err(|e| error(Self::NAME, "decode", e))?;
        let rest = de.get_ref().len();
        if rest != 0 {
            return Err(error(
                Self::NAME,
                "decode",
                format!("{rest} trailing bytes"),
            ));
        }
        Ok(value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;
    use std::collections::BTreeMap;

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct ToolCall {
        id: u64,
        name: String,
        args: BTreeMap<String, Vec<i32>>,
        note: Option<String>,
    }

    fn sample() -> ToolCall {
        ToolCall {
            id: 7,
            name: "search".into(),
            args: BTreeMap::from([("k".into(), vec![1, -2, 3])]),
            note: None,
        }
    }

    fn round_trip<C: Codec>(codec: C) {
        let mut buf = Vec::new();
        codec.encode(&sample(), &mut buf).unwrap();
        let back: ToolCall = codec.decode(&buf).unwrap();
        assert_eq!(back, sample(), "{}", C::NAME);
        // Garbage and truncation are errors, not panics.
        assert!(
            codec.decode::<ToolCall>(&buf[..buf.len() / 2]).is_err(),
            "{}",
            C::NAME
        );
        assert!(
            codec.decode::<ToolCall>(&[0xff; 40]).is_err(),
            "{}",
            C::NAME
        );
        let mut extra = buf.clone();
        extra.push(0);
        assert!(
            codec.decode::<ToolCall>(&extra).is_err(),
            "{} trailing",
            C::NAME
        );
    }

    #[test]
    fn every_codec_round_trips_and_rejects_bad_bytes() {
        round_trip(Postcard);
        #[cfg(feature = "bincode")]
        round_trip(Bincode);
        #[cfg(feature = "json")]
        round_trip(Json);
        #[cfg(feature = "msgpack")]
        round_trip(MessagePack);
    }

    /// The self-describing codecs let a type gain an optional field with
    /// peers of either version; the positional ones do not.
    #[test]
    #[cfg(all(feature = "json", feature = "msgpack"))]
    fn a_new_optional_field_passes_old_peers_both_ways() {
        #[derive(Debug, PartialEq, Serialize, Deserialize)]
        struct Old {
            id: u64,
            name: String,
        }
        #[derive(Debug, PartialEq, Serialize, Deserialize)]
        struct New {
            id: u64,
            name: String,
            #[serde(default)]
            tags: Option<Vec<String>>,
        }
        fn check<C: Codec>(codec: C) {
            let mut old = Vec::new();
            codec
                .encode(
                    &Old {
                        id: 1,
                        name: "a".into(),
                    },
                    &mut old,
                )
                .unwrap();
            let got: New = codec.decode(&old).unwrap();
            assert_eq!(
                got,
                New {
                    id: 1,
                    name: "a".into(),
                    tags: None
                },
                "{}",
                C::NAME
            );
            let mut new = Vec::new();
            let tags = Some(vec!["x".into()]);
            codec
                .encode(
                    &New {
                        id: 2,
                        name: "b".into(),
                        tags,
                    },
                    &mut new,
                )
                .unwrap();
            let got: Old = codec.decode(&new).unwrap();
            assert_eq!(
                got,
                Old {
                    id: 2,
                    name: "b".into()
                },
                "{}",
                C::NAME
            );
        }
        check(Json);
        check(MessagePack);
        let mut old = Vec::new();
        Postcard
            .encode(
                &Old {
                    id: 1,
                    name: "a".into(),
                },
                &mut old,
            )
            .unwrap();
        assert!(
            Postcard.decode::<New>(&old).is_err(),
            "postcard is positional"
        );
    }

    /// Found by the `codec_decode` fuzz target: a 4 GiB string length in
    /// 6 bytes of input must be an error, not a 4 GiB allocation.
    #[test]
    fn hostile_length_prefixes_do_not_allocate() {
        #[cfg(feature = "bincode")]
        assert!(
            Bincode
                .decode::<ToolCall>(&[0x00, 0xFC, 0xFF, 0xFF, 0xFF, 0xFE])
                .is_err()
        );
        assert!(
            Postcard
                .decode::<ToolCall>(&[0x00, 0xFF, 0xFF, 0xFF, 0xFF, 0x0F])
                .is_err()
        );
        // A map of one entry whose key is a str32 of 4 GiB.
        #[cfg(feature = "msgpack")]
        assert!(
            MessagePack
                .decode::<ToolCall>(&[0x81, 0xDB, 0xFF, 0xFF, 0xFF, 0xFF, b'a'])
                .is_err()
        );
        #[cfg(feature = "msgpack")]
        assert!(
            MessagePack
                .decode::<Vec<u64>>(&[0xDD, 0xFF, 0xFF, 0xFF, 0xFF])
                .is_err()
        );
    }

    #[test]
    fn encode_appends() {
        let mut buf = vec![9];
        Postcard.encode(&1u8, &mut buf).unwrap();
        assert_eq!(buf, [9, 1]);
    }
}
