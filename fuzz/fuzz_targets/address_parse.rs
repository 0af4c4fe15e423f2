//! Address parsing: never a panic, and what parses prints back the same.
#![no_main]

use ipc_core::Address;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    if let Ok(address) = text.parse::<Address>() {
        let printed = address.to_string();
        assert_eq!(printed.parse::<Address>().as_ref(), Ok(&address));
    }
});
