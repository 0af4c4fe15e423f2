//! The shared-memory ring reader over an arbitrary segment image.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| ipc_shm::fuzzing::ring_image(data));
