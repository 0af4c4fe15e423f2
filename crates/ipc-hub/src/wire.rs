//! The hub protocol on the wire: every frame is one envelope,
//! `[kind: u8][id: u64 LE][body]`. Bodies are the application's encoded
//! values, opaque here. Decoding checks everything a peer could get wrong.

use std::cell::Cell;

use bytes::{Buf, BufMut, Bytes, BytesMut};

use crate::codec::{BodyCodec, HubCodec, PeerCodec};

/// Protocol version sent in `Hello`; a hub refuses any other.
pub(crate) const PROTOCOL: u16 = 1;
/// Longest agent name, in bytes.
pub const MAX_NAME_LEN: usize = 256;
pub(crate) const HEADER: usize = 9;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// Agent to hub, first frame: body `[protocol u16 LE][name utf-8]`,
    /// then optionally `[0][codec name]`.
    Hello = 1,
    /// Hub to agent, answer to `Hello`: id is the agent's peer id.
    Welcome = 2,
    /// A one-way message.
    Message = 3,
    /// A request: id is the caller's correlation id.
    Call = 4,
    /// The answer to the call with this id.
    Reply = 5,
    /// The callee could not answer the call with this id: body is a
    /// utf-8 reason.
    Fail = 6,
    /// A log record (ipc-tracing's encoding, opaque here).
    Log = 7,
    /// The sender is leaving: body is a utf-8 reason.
    Bye = 8,
}

impl Kind {
    fn from_u8(b: u8) -> Option<Kind> {
        Some(match b {
            1 => Kind::Hello,
            2 => Kind::Welcome,
            3 => Kind::Message,
            4 => Kind::Call,
            5 => Kind::Reply,
            6 => Kind::Fail,
            7 => Kind::Log,
            8 => Kind::Bye,
            _ => return None,
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Envelope {
    pub kind: Kind,
    pub id: u64,
    pub body: Bytes,
}

/// A frame that is not a valid envelope.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    /// Shorter than the envelope header.
    #[error("frame of {0} bytes is shorter than the {HEADER}-byte envelope header")]
    Short(usize),
    /// An envelope kind this protocol does not have.
    #[error("unknown envelope kind {0}")]
    UnknownKind(u8),
    /// A `Hello` that does not parse.
    #[error("bad hello: {0}")]
    BadHello(String),
}

/// An envelope's header.
pub(crate) fn header(kind: Kind, id: u64) -> [u8; HEADER] {
    let mut h = [0; HEADER];
    h[0] = kind as u8;
    h[1..].copy_from_slice(&id.to_le_bytes());
    h
}

pub(crate) fn encode(kind: Kind, id: u64, body: &[u8]) -> Bytes {
    let mut out = BytesMut::with_capacity(HEADER + body.len());
    out.put_u8(kind as u8);
    out.put_u64_le(id);
    out.extend_from_slice(body);
    out.freeze()
}

/// An envelope whose body is encoded straight after the header (one
/// buffer, no copy of the body).
pub(crate) fn encode_with(
    kind: Kind,
    id: u64,
    fill: impl FnOnce(&mut Vec<u8>) -> Result<(), ipc_core::CodecError>,
) -> Result<Outgoing, ipc_core::CodecError> {
    let mut out = SCRATCH.try_with(Cell::take).unwrap_or_default();
    out.clear();
    out.push(kind as u8);
    out.extend_from_slice(&id.to_le_bytes());
    let filled = fill(&mut out);
    if out.len() > SCRATCH_MAX {
        // Large: the buffer becomes the frame, not copied.
        return filled.map(|()| Outgoing(Frame::Owned(Bytes::from(out))));
    }
    let frame = Outgoing(Frame::Scratch(out));
    filled.map(|()| frame)
}

thread_local! {
    /// Where this thread encodes small frames.
    static SCRATCH: Cell<Vec<u8>> = const { Cell::new(Vec::new()) };
}

/// The largest frame encoded in the thread's scratch buffer; a larger
/// one is a buffer of its own.
const SCRATCH_MAX: usize = 4096;

/// A frame to send. A small one encoded here stays in its thread's
/// scratch buffer: written at once (inline), it costs no allocation, and
/// it is copied into a buffer of its own only to wait in a queue (where
/// a new `Vec` would have grown, then been allocated again to share a
/// buffer whose length is not its capacity).
#[derive(Debug)]
pub(crate) struct Outgoing(Frame);

#[derive(Debug)]
enum Frame {
    Scratch(Vec<u8>),
    Owned(Bytes),
}

impl Outgoing {
    /// The frame as a buffer of its own, to keep.
    pub(crate) fn into_bytes(mut self) -> Bytes {
        match &mut self.0 {
            Frame::Scratch(out) => Bytes::copy_from_slice(out),
            Frame::Owned(frame) => std::mem::take(frame),
        }
    }
}

impl std::ops::Deref for Outgoing {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        match &self.0 {
            Frame::Scratch(out) => out,
            Frame::Owned(frame) => frame,
        }
    }
}

impl From<Bytes> for Outgoing {
    fn from(frame: Bytes) -> Self {
        Outgoing(Frame::Owned(frame))
    }
}

impl Drop for Outgoing {
    fn drop(&mut self) {
        if let Frame::Scratch(out) = &mut self.0 {
            let out = std::mem::take(out);
            // (Not while the thread's locals are being torn down.)
            let _ = SCRATCH.try_with(|scratch| scratch.set(out));
        }
    }
}

/// An envelope of `kind` whose body is `value` encoded for a peer.
pub(crate) fn encode_value<C: HubCodec, T: serde::Serialize + ?Sized>(
    codec: PeerCodec,
    kind: Kind,
    id: u64,
    value: &T,
) -> Result<Outgoing, ipc_core::CodecError> {
    encode_with(kind, id, |out| codec.encode::<C, T>(value, out))
}

pub(crate) fn decode(mut frame: Bytes) -> Result<Envelope, WireError> {
    if frame.len() < HEADER {
        return Err(WireError::Short(frame.len()));
    }
    let kind = Kind::from_u8(frame[0]).ok_or(WireError::UnknownKind(frame[0]))?;
    let id = u64::from_le_bytes(frame[1..HEADER].try_into().expect("8 bytes"));
    // The body is the frame moved past its header: no second handle on
    // the buffer (which `slice` would allocate for a frame made from a
    // `Vec`).
    frame.advance(HEADER);
    Ok(Envelope {
        kind,
        id,
        body: frame,
    })
}

/// A hello naming the agent and, if it says, the codec of its bodies
/// (after a 0 byte, which no name contains).
pub(crate) fn hello(name: &str, codec: Option<BodyCodec>) -> Bytes {
    let mut body = Vec::with_capacity(2 + name.len() + 16);
    body.extend_from_slice(&PROTOCOL.to_le_bytes());
    body.extend_from_slice(name.as_bytes());
    if let Some(codec) = codec {
        body.push(0);
        body.extend_from_slice(codec.name().as_bytes());
    }
    encode(Kind::Hello, 0, &body)
}

/// The name in a `Hello` body and the codec it names (`None`: the
/// hub's own), checked.
pub(crate) fn parse_hello(body: &[u8]) -> Result<(String, Option<BodyCodec>), WireError> {
    let bad = |why: String| WireError::BadHello(why);
    let (version, rest) = body
        .split_first_chunk::<2>()
        .ok_or_else(|| bad("no protocol version".into()))?;
    let version = u16::from_le_bytes(*version);
    if version != PROTOCOL {
        return Err(bad(format!(
            "protocol {version}, this hub speaks {PROTOCOL}"
        )));
    }
    let (name, codec) = match rest.iter().position(|&b| b == 0) {
        None => (rest, None),
        Some(at) => (&rest[..at], Some(&rest[at + 1..])),
    };
    let name = check_name(name).map_err(bad)?;
    let codec = match codec {
        None => None,
        Some(codec) => Some(
            std::str::from_utf8(codec)
                .ok()
                .and_then(BodyCodec::from_name)
                .ok_or_else(|| {
                    let known: Vec<&str> = BodyCodec::ALL.iter().map(|c| c.name()).collect();
                    bad(format!(
                        "codec {:?}: this hub speaks {}",
                        reason(codec),
                        known.join(", ")
                    ))
                })?,
        ),
    };
    Ok((name, codec))
}

pub(crate) fn check_name(name: &[u8]) -> Result<String, String> {
    if name.is_empty() || name.len() > MAX_NAME_LEN {
        return Err(format!(
            "name of {} bytes (1 to {MAX_NAME_LEN} allowed)",
            name.len()
        ));
    }
    let name = std::str::from_utf8(name).map_err(|_| "name is not utf-8".to_string())?;
    if name.chars().any(char::is_control) {
        return Err("name has control characters".into());
    }
    Ok(name.to_owned())
}

/// A utf-8 reason from a peer, lossily decoded and cut to a sane length.
pub(crate) fn reason(body: &[u8]) -> String {
    let cut = &body[..body.len().min(1024)];
    String::from_utf8_lossy(cut).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn envelopes_round_trip_and_bad_frames_are_errors() {
        let frame = encode(Kind::Call, 42, b"body");
        let env = decode(frame).unwrap();
        assert_eq!(
            (env.kind, env.id, &env.body[..]),
            (Kind::Call, 42, &b"body"[..])
        );
        assert_eq!(
            decode(Bytes::from_static(b"\x03abc")),
            Err(WireError::Short(4))
        );
        assert_eq!(
            decode(Bytes::from_static(&[99; 9])),
            Err(WireError::UnknownKind(99))
        );
        let hello = decode(hello("planner", None)).unwrap();
        assert_eq!(parse_hello(&hello.body).unwrap(), ("planner".into(), None));
        let json = decode(super::hello("planner", Some(BodyCodec::Json))).unwrap();
        assert_eq!(
            parse_hello(&json.body).unwrap(),
            ("planner".into(), Some(BodyCodec::Json))
        );
        for codec in BodyCodec::ALL {
            let named = decode(super::hello("a", Some(codec))).unwrap();
            assert_eq!(parse_hello(&named.body).unwrap().1, Some(codec));
        }
        assert!(parse_hello(b"\x01\x00a\x00yaml").is_err(), "unknown codec");
        assert!(parse_hello(b"\x01\x00a\x00").is_err(), "empty codec");
        assert!(parse_hello(b"\x01\x00\x00json").is_err(), "no name");
        assert!(
            parse_hello(b"\x01\x00a\x00\xff").is_err(),
            "codec not utf-8"
        );
        assert!(parse_hello(&[2, 0, b'a']).is_err(), "wrong protocol");
        assert!(parse_hello(&[1, 0]).is_err(), "empty name");
        assert!(parse_hello(&[1, 0, 0xff]).is_err(), "not utf-8");
        assert!(parse_hello(&[1, 0, b'\n']).is_err(), "control character");
        assert!(parse_hello(&[1]).is_err(), "no version");
        let long = [&[1, 0][..], &[b'a'; MAX_NAME_LEN + 1]].concat();
        assert!(parse_hello(&long).is_err(), "too long");
    }

    /// Frames encoded in the thread's scratch buffer are whole and their
    /// own, however they are encoded: small and large, one inside
    /// another's encoding (a body whose serialization encodes a frame),
    /// and after a failed encoding.
    #[test]
    fn scratch_frames_are_whole_and_their_own() {
        let fill = |body: Vec<u8>| {
            move |out: &mut Vec<u8>| {
                out.extend_from_slice(&body);
                Ok(())
            }
        };
        let small = encode_with(Kind::Message, 1, fill(vec![7; 64])).unwrap();
        let large = encode_with(Kind::Reply, 2, fill(vec![8; SCRATCH_MAX * 2])).unwrap();
        assert!(matches!(small.0, Frame::Scratch(_)));
        assert!(matches!(large.0, Frame::Owned(_)));
        let inner = std::cell::RefCell::new(None);
        let outer = encode_with(Kind::Call, 3, |out| {
            *inner.borrow_mut() = Some(encode_with(Kind::Log, 4, fill(vec![9; 16])).unwrap());
            out.extend_from_slice(&[6; 32]);
            Ok(())
        })
        .unwrap();
        let failed = encode_with(Kind::Call, 5, |out| {
            out.extend_from_slice(&[5; 100]);
            Err(ipc_core::CodecError {
                codec: "test",
                op: "encode",
                message: "no".into(),
            })
        });
        assert!(failed.is_err());
        let again = encode_with(Kind::Message, 6, fill(vec![4; 8])).unwrap();
        let inner = inner.into_inner().unwrap();
        for (frame, kind, id, body) in [
            (small, Kind::Message, 1, vec![7; 64]),
            (large, Kind::Reply, 2, vec![8; SCRATCH_MAX * 2]),
            (outer, Kind::Call, 3, vec![6; 32]),
            (inner, Kind::Log, 4, vec![9; 16]),
            (again, Kind::Message, 6, vec![4; 8]),
        ] {
            let env = decode(frame.into_bytes()).unwrap();
            assert_eq!((env.kind, env.id, &env.body[..]), (kind, id, &body[..]));
        }
    }
}
