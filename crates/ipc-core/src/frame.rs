//! Length-prefixed framing for byte-stream transports (pipes, sockets).
//!
//! Every frame is an 8-byte header followed by the payload:
//!
//! ```text
//! +----------------+----------------------+-----------------+
//! | len: u32 LE    | check: u32 LE        | payload (len B) |
//! +----------------+----------------------+-----------------+
//! check = !len ^ HEADER_MAGIC
//! ```
//!
//! The check word makes garbage on the stream fail fast as
//! [`FrameError::BadHeader`] instead of being taken as a length and waited
//! on. A declared length above the maximum is reported before anything is
//! allocated for it, and its bytes are then skipped as they arrive.
//!
//! [`FrameDecoder`] is pure: it works on a byte buffer and does no I/O, so
//! the sync and async streams share it and it can be fuzzed on its own.

use bytes::{Buf, Bytes, BytesMut};

/// Size of a frame header in bytes.
pub const HEADER_LEN: usize = 8;

/// Mixed into the header check word (`"IPC1"`), so that a stream of zeros
/// is not a valid sequence of empty frames.
pub const HEADER_MAGIC: u32 = u32::from_le_bytes(*b"IPC1");

/// Encodes the header of a frame of `len` bytes.
///
/// # Panics
/// Never for `len <= u32::MAX`; callers check the maximum message size
/// (at most [`MAX_MESSAGE_SIZE_LIMIT`](crate::MAX_MESSAGE_SIZE_LIMIT)) first.
pub fn encode_header(len: usize) -> [u8; HEADER_LEN] {
    let len = u32::try_from(len).expect("frame length checked against the maximum");
    let mut header = [0; HEADER_LEN];
    header[..4].copy_from_slice(&len.to_le_bytes());
    header[4..].copy_from_slice(&(!len ^ HEADER_MAGIC).to_le_bytes());
    header
}

/// What is wrong with the incoming byte stream.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    /// A header announced a frame above the maximum. The frame's bytes will
    /// be skipped; decoding can continue.
    #[error("frame of {len} bytes exceeds the maximum of {max}")]
    TooLarge {
        /// Declared length.
        len: usize,
        /// Configured maximum.
        max: usize,
    },
    /// The header's check word does not match: the stream is not ours or
    /// has lost sync. Decoding cannot continue.
    #[error("bad frame header {0:02x?}")]
    BadHeader([u8; HEADER_LEN]),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Waiting for a header.
    Header,
    /// Header read; waiting for this many payload bytes.
    Body(usize),
    /// Skipping this many bytes of an oversized frame.
    Skip(usize),
    /// This bad header was seen; nothing more can be decoded.
    Broken([u8; HEADER_LEN]),
}

/// Splits a byte stream into frames. See the [module docs](self).
#[derive(Debug, Clone)]
pub struct FrameDecoder {
    max: usize,
    state: State,
}

impl FrameDecoder {
    /// A decoder that rejects frames above `max_message_size` bytes.
    pub fn new(max_message_size: usize) -> Self {
        FrameDecoder {
            max: max_message_size,
            state: State::Header,
        }
    }

    /// Takes the next complete frame out of `buf`.
    ///
    /// Returns `Ok(None)` when `buf` holds no complete frame yet; the bytes
    /// stay in `buf` (or are consumed into decoder state) for the next call.
    /// After [`FrameError::BadHeader`] every later call returns it again.
    pub fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<Bytes>, FrameError> {
        loop {
            match self.state {
                State::Broken(header) => return Err(FrameError::BadHeader(header)),
                State::Skip(rest) => {
                    let n = rest.min(buf.len());
                    buf.advance(n);
                    if n < rest {
                        self.state = State::Skip(rest - n);
                        return Ok(None);
                    }
                    self.state = State::Header;
                }
                State::Header => {
                    if buf.len() < HEADER_LEN {
                        return Ok(None);
                    }
                    let header: [u8; HEADER_LEN] = buf[..HEADER_LEN].try_into().expect("8 bytes");
                    let len = u32::from_le_bytes(header[..4].try_into().expect("4 bytes"));
                    let check = u32::from_le_bytes(header[4..].try_into().expect("4 bytes"));
                    if check != !len ^ HEADER_MAGIC {
                        self.state = State::Broken(header);
                        return Err(FrameError::BadHeader(header));
                    }
                    buf.advance(HEADER_LEN);
                    let len = len as usize;
                    if len > self.max {
                        self.state = State::Skip(len);
                        return Err(FrameError::TooLarge { len, max: self.max });
                    }
                    self.state = State::Body(len);
                }
                State::Body(len) => {
                    if buf.len() < len {
                        return Ok(None);
                    }
                    self.state = State::Header;
                    return Ok(Some(take_frame(buf, len)));
                }
            }
        }
    }

    /// The next frame for a receiver: [`decode`](Self::decode) with its
    /// errors as the receive errors they are, and the end of the stream
    /// (`at_eof`) told apart: between frames it is `Disconnected`, inside
    /// one `Corrupted`. `Ok(None)`: read more.
    pub fn next_frame(
        &mut self,
        buf: &mut BytesMut,
        at_eof: bool,
    ) -> Result<Option<Bytes>, crate::RecvError> {
        use crate::RecvError;
        match self.decode(buf) {
            Ok(Some(frame)) => return Ok(Some(frame)),
            Ok(None) => {}
            Err(FrameError::TooLarge { len, max }) => {
                return Err(RecvError::FrameTooLarge { len, max });
            }
            Err(err @ FrameError::BadHeader(_)) => {
                return Err(RecvError::Corrupted(err.to_string()));
            }
        }
        if !at_eof {
            return Ok(None);
        }
        Err(if self.at_frame_boundary(buf) {
            RecvError::Disconnected
        } else {
            RecvError::Corrupted("peer closed the stream inside a frame".into())
        })
    }

    /// How many more bytes the current frame needs before `decode` can
    /// return it; a hint for sizing the next read (never above the maximum
    /// message size plus a header).
    pub fn bytes_wanted(&self, buf: &BytesMut) -> usize {
        match self.state {
            State::Header => HEADER_LEN.saturating_sub(buf.len()),
            State::Body(len) => len.saturating_sub(buf.len()),
            State::Skip(rest) => rest.min(1 << 16),
            State::Broken(_) => 0,
        }
    }

    /// True when the stream is between frames: an end of stream here is a
    /// clean disconnect, anywhere else it cuts a frame short.
    pub fn at_frame_boundary(&self, buf: &BytesMut) -> bool {
        matches!(self.state, State::Header) && buf.is_empty()
    }

    /// True once a bad header has been seen.
    pub fn is_broken(&self) -> bool {
        matches!(self.state, State::Broken(_))
    }
}

/// Takes the first `len` bytes of `buf` as a frame. A frame that is most
/// of the buffer shares its allocation (no copy); a small one is copied
/// out, so a frame the caller keeps never pins a read buffer much larger
/// than itself (a peer alternating huge and tiny frames would otherwise
/// make every kept tiny frame hold a huge buffer alive).
fn take_frame(buf: &mut BytesMut, len: usize) -> Bytes {
    if len.saturating_mul(2) >= buf.capacity() {
        buf.split_to(len).freeze()
    } else {
        let frame = Bytes::copy_from_slice(&buf[..len]);
        buf.advance(len);
        frame
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn framed(payloads: &[&[u8]]) -> BytesMut {
        let mut out = BytesMut::new();
        for p in payloads {
            out.extend_from_slice(&encode_header(p.len()));
            out.extend_from_slice(p);
        }
        out
    }

    #[test]
    fn decodes_frames_split_at_every_byte() {
        let payloads: [&[u8]; 4] = [b"", b"a", &[7; 300], b"tail"];
        let stream = framed(&payloads);
        for split in 0..stream.len() {
            let mut dec = FrameDecoder::new(1024);
            let mut buf = BytesMut::from(&stream[..split]);
            let mut got = Vec::new();
            while let Some(f) = dec.decode(&mut buf).unwrap() {
                got.push(f);
            }
            buf.extend_from_slice(&stream[split..]);
            while let Some(f) = dec.decode(&mut buf).unwrap() {
                got.push(f);
            }
            assert_eq!(got, payloads, "split at {split}");
            assert!(dec.at_frame_boundary(&buf));
        }
    }

    #[test]
    fn oversized_frame_is_reported_before_its_body_and_then_skipped() {
        let mut dec = FrameDecoder::new(4);
        let mut buf = BytesMut::from(&encode_header(1_000_000)[..]);
        assert_eq!(
            dec.decode(&mut buf),
            Err(FrameError::TooLarge {
                len: 1_000_000,
                max: 4
            })
        );
        // The body arrives in pieces and is skipped, not buffered.
        let mut skipped = 0;
        while skipped < 1_000_000 {
            buf.extend_from_slice(&[0; 10_000]);
            skipped += 10_000;
            assert_eq!(dec.decode(&mut buf), Ok(None));
            assert!(buf.is_empty());
        }
        buf.extend_from_slice(&framed(&[b"ok"]));
        assert_eq!(dec.decode(&mut buf).unwrap().as_deref(), Some(&b"ok"[..]));
    }

    #[test]
    fn garbage_breaks_the_decoder_for_good() {
        let mut dec = FrameDecoder::new(1 << 20);
        let mut buf = BytesMut::from(&b"GET / HTTP/1.1\r\n"[..]);
        assert!(matches!(
            dec.decode(&mut buf),
            Err(FrameError::BadHeader(_))
        ));
        assert!(dec.is_broken());
        buf.extend_from_slice(&framed(&[b"late"]));
        assert!(matches!(
            dec.decode(&mut buf),
            Err(FrameError::BadHeader(_))
        ));
        // Zeros are garbage too, not a stream of empty frames.
        let mut dec = FrameDecoder::new(16);
        let mut zeros = BytesMut::from(&[0u8; 8][..]);
        assert!(dec.decode(&mut zeros).is_err());
    }

    #[test]
    fn boundary_and_wanted_hints() {
        let mut dec = FrameDecoder::new(100);
        let mut buf = BytesMut::new();
        assert!(dec.at_frame_boundary(&buf));
        assert_eq!(dec.bytes_wanted(&buf), HEADER_LEN);
        buf.extend_from_slice(&encode_header(50));
        buf.extend_from_slice(&[1; 10]);
        assert_eq!(dec.decode(&mut buf), Ok(None));
        assert!(!dec.at_frame_boundary(&buf));
        assert_eq!(dec.bytes_wanted(&buf), 40);
    }
}
