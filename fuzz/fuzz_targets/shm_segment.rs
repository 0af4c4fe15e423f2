//! A segment as a hostile listener may hand it to an agent.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| ipc_shm::fuzzing::segment_image(data));
