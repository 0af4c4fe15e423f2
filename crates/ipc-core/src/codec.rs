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
    }

    #[test]
    fn encode_appends() {
        let mut buf = vec![9];
        Postcard.encode(&1u8, &mut buf).unwrap();
        assert_eq!(buf, [9, 1]);
    }
}
