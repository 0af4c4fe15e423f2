//! What travels in a zenoh payload: the handshake (a query and its reply)
//! and the messages of one direction of a connection. Pure encoding and
//! decoding; everything decoded here came from the network and is checked.
//!
//! ```text
//! hello    "IPCZ" version:u8 window:u64 max:u64 pid:u32 conn-id (query payload, agent -> hub)
//! welcome  "IPCZ" version:u8 window:u64 max:u64 pid:u32         (reply payload, hub -> agent)
//! data     0 seq:u64 frame...    a frame, numbered from 0
//! credit   1 consumed:u64        the receiver has taken this much (frame costs)
//! want     2                     the sender waits for credit
//! close    3 frames:u64          no frame after these; the sender has let go
//! close-ack 4                    the close arrived, with every frame before it
//! ```
//!
//! Integers are little-endian.

use bytes::Bytes;

/// Marks a handshake payload as ours.
const MAGIC: &[u8; 4] = b"IPCZ";

/// The protocol version in hello and welcome; a mismatch is refused.
pub const VERSION: u8 = 1;

/// Bytes of a data message before the frame.
pub const DATA_HEADER: usize = 9;

/// What a frame costs against the receiver's window beyond its length, so
/// that empty frames are not free.
pub const FRAME_OVERHEAD: u64 = 64;

/// The window cost of a frame of `len` bytes.
pub fn cost(len: usize) -> u64 {
    len as u64 + FRAME_OVERHEAD
}

const DATA: u8 = 0;
const CREDIT: u8 = 1;
const WANT: u8 = 2;
const CLOSE: u8 = 3;
const CLOSE_ACK: u8 = 4;

/// Longest connection id accepted in a hello (a zenoh id is at most 32 hex
/// digits).
pub const MAX_CONN_ID: usize = 32;

/// One side's terms, sent in the handshake.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Terms {
    /// How many bytes (frame costs) this side buffers for its peer.
    pub window: u64,
    /// Largest frame this side accepts.
    pub max_message_size: u64,
    /// The process id this side reports (on its own host; not verified).
    pub pid: u32,
}

fn put_terms(out: &mut Vec<u8>, terms: Terms) {
    out.extend_from_slice(MAGIC);
    out.push(VERSION);
    out.extend_from_slice(&terms.window.to_le_bytes());
    out.extend_from_slice(&terms.max_message_size.to_le_bytes());
    out.extend_from_slice(&terms.pid.to_le_bytes());
}

const TERMS_LEN: usize = 4 + 1 + 8 + 8 + 4;

fn take_terms(payload: &[u8]) -> Result<(Terms, &[u8]), String> {
    if payload.len() < 5 || &payload[..4] != MAGIC {
        return Err("not an ipc-zenoh handshake".into());
    }
    if payload[4] != VERSION {
        return Err(format!(
            "protocol version {} (this side speaks {VERSION})",
            payload[4]
        ));
    }
    if payload.len() < TERMS_LEN {
        return Err(format!("handshake of {} bytes is too short", payload.len()));
    }
    let window = u64_at(payload, 5);
    let max_message_size = u64_at(payload, 13);
    let pid = u32::from_le_bytes([payload[21], payload[22], payload[23], payload[24]]);
    if window == 0 {
        return Err("a window of zero".into());
    }
    Ok((
        Terms {
            window,
            max_message_size,
            pid,
        },
        &payload[TERMS_LEN..],
    ))
}

fn u64_at(bytes: &[u8], at: usize) -> u64 {
    let mut word = [0; 8];
    word.copy_from_slice(&bytes[at..at + 8]);
    u64::from_le_bytes(word)
}

/// The agent's hello: its terms and the connection id its keys use.
pub fn hello(terms: Terms, conn_id: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(TERMS_LEN + conn_id.len());
    put_terms(&mut out, terms);
    out.extend_from_slice(conn_id.as_bytes());
    out
}

/// Reads a hello; the connection id must be 1 to [`MAX_CONN_ID`] ASCII
/// letters and digits (it becomes a key-expression chunk).
pub fn parse_hello(payload: &[u8]) -> Result<(Terms, String), String> {
    let (terms, rest) = take_terms(payload)?;
    if rest.is_empty() || rest.len() > MAX_CONN_ID || !rest.iter().all(u8::is_ascii_alphanumeric) {
        return Err("the connection id is not 1 to 32 letters and digits".into());
    }
    Ok((terms, String::from_utf8_lossy(rest).into_owned()))
}

/// The hub's welcome: its terms.
pub fn welcome(terms: Terms) -> Vec<u8> {
    let mut out = Vec::with_capacity(TERMS_LEN);
    put_terms(&mut out, terms);
    out
}

/// Reads a welcome.
pub fn parse_welcome(payload: &[u8]) -> Result<Terms, String> {
    let (terms, rest) = take_terms(payload)?;
    if !rest.is_empty() {
        return Err("trailing bytes after the welcome".into());
    }
    Ok(terms)
}

/// One message of a connection's direction.
#[derive(Debug, PartialEq, Eq)]
pub enum Message {
    /// Frame number `seq`.
    Data {
        /// Its number, from 0.
        seq: u64,
        /// The frame.
        frame: Bytes,
    },
    /// The receiver has consumed this much in total.
    Credit(u64),
    /// The sender waits for credit.
    Want,
    /// The sender closed after this many frames.
    Close(u64),
    /// The peer received our close.
    CloseAck,
}

/// A data message for `frame`, its header in front.
pub fn data(seq: u64, frame: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(DATA_HEADER + frame.len());
    out.push(DATA);
    out.extend_from_slice(&seq.to_le_bytes());
    out.extend_from_slice(frame);
    out
}

/// A credit message.
pub fn credit(consumed: u64) -> Vec<u8> {
    let mut out = vec![CREDIT];
    out.extend_from_slice(&consumed.to_le_bytes());
    out
}

/// A want message.
pub fn want() -> Vec<u8> {
    vec![WANT]
}

/// A close message.
pub fn close(frames: u64) -> Vec<u8> {
    let mut out = vec![CLOSE];
    out.extend_from_slice(&frames.to_le_bytes());
    out
}

/// A close acknowledgement.
pub fn close_ack() -> Vec<u8> {
    vec![CLOSE_ACK]
}

/// Reads one message. `payload` is the whole zenoh payload; a data
/// message's frame is a slice of it (no copy).
pub fn parse(payload: Bytes) -> Result<Message, String> {
    let Some(&kind) = payload.first() else {
        return Err("an empty message".into());
    };
    let word = |what: &str| -> Result<u64, String> {
        if payload.len() != 9 {
            return Err(format!("a {what} message of {} bytes", payload.len()));
        }
        Ok(u64_at(&payload, 1))
    };
    match kind {
        DATA if payload.len() >= DATA_HEADER => Ok(Message::Data {
            seq: u64_at(&payload, 1),
            frame: payload.slice(DATA_HEADER..),
        }),
        DATA => Err(format!("a data message of {} bytes", payload.len())),
        CREDIT => word("credit").map(Message::Credit),
        CLOSE => word("close").map(Message::Close),
        WANT if payload.len() == 1 => Ok(Message::Want),
        CLOSE_ACK if payload.len() == 1 => Ok(Message::CloseAck),
        WANT | CLOSE_ACK => Err(format!("a {}-byte control message", payload.len())),
        other => Err(format!("unknown message kind {other}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_message_round_trips() {
        let frame = b"frame bytes";
        let cases = [
            (
                data(7, frame),
                Message::Data {
                    seq: 7,
                    frame: Bytes::from_static(frame),
                },
            ),
            (
                data(0, b""),
                Message::Data {
                    seq: 0,
                    frame: Bytes::new(),
                },
            ),
            (credit(1 << 40), Message::Credit(1 << 40)),
            (want(), Message::Want),
            (close(3), Message::Close(3)),
            (close_ack(), Message::CloseAck),
        ];
        for (bytes, message) in cases {
            assert_eq!(parse(Bytes::from(bytes)).unwrap(), message);
        }
    }

    #[test]
    fn malformed_messages_are_errors() {
        for bad in [
            &b""[..],
            &[DATA, 1, 2],
            &[CREDIT, 1],
            &[CLOSE],
            &[WANT, 0],
            &[CLOSE_ACK, 1, 2],
            &[9, 0, 0],
            &[255],
        ] {
            assert!(parse(Bytes::copy_from_slice(bad)).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn handshakes_round_trip_and_reject_bad_input() {
        let terms = Terms {
            window: 1 << 22,
            max_message_size: 1 << 24,
            pid: 4321,
        };
        assert_eq!(
            parse_hello(&hello(terms, "abc123")).unwrap(),
            (terms, "abc123".into())
        );
        assert_eq!(parse_welcome(&welcome(terms)).unwrap(), terms);
        let mut wrong_version = hello(terms, "a");
        wrong_version[4] = VERSION + 1;
        let zero_window = hello(Terms { window: 0, ..terms }, "a");
        for (bad, why) in [
            (b"HTTP/1.1".to_vec(), "not an ipc-zenoh"),
            (wrong_version, "protocol version"),
            (hello(terms, "")[..10].to_vec(), "too short"),
            (zero_window, "window of zero"),
            (hello(terms, ""), "connection id"),
            (hello(terms, "a/b"), "connection id"),
            (hello(terms, &"a".repeat(MAX_CONN_ID + 1)), "connection id"),
        ] {
            let err = parse_hello(&bad).unwrap_err();
            assert!(err.contains(why), "{err}");
        }
        assert!(parse_welcome(&hello(terms, "x")).is_err());
    }
}
