//! A blob record and descriptor as a hostile peer may send them.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| ipc_shm::fuzzing::blob_handle(data));
