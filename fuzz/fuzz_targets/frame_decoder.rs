//! The stream frame decoder fed arbitrary bytes in arbitrary pieces.
#![no_main]

use bytes::BytesMut;
use ipc_core::frame::{FrameDecoder, FrameError};
use libfuzzer_sys::fuzz_target;

const MAX: usize = 4096;

fuzz_target!(|data: &[u8]| {
    // The first byte sets the piece size, so splits vary too.
    let Some((&step, stream)) = data.split_first() else { return };
    let step = usize::from(step).max(1);
    let mut decoder = FrameDecoder::new(MAX);
    let mut buf = BytesMut::new();
    for piece in stream.chunks(step) {
        buf.extend_from_slice(piece);
        loop {
            match decoder.decode(&mut buf) {
                Ok(Some(frame)) => assert!(frame.len() <= MAX),
                Ok(None) => break,
                Err(FrameError::TooLarge { len, max }) => assert!(len > max),
                Err(FrameError::BadHeader(_)) => {
                    assert!(decoder.is_broken());
                    return;
                }
            }
        }
        // Bytes are either consumed or wait for more; a hint never asks
        // for more than one frame's worth.
        assert!(decoder.bytes_wanted(&buf) <= MAX.max(1 << 16) + 8);
    }
});
