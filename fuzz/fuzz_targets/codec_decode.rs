//! Every codec decoding arbitrary bytes into agent message types: an
//! error is fine, a panic or a hang is not; what decodes re-encodes.
#![no_main]

use ipc_core::{Bincode, Codec, Json, MessagePack, Postcard};
use libfuzzer_sys::fuzz_target;
use serde::{Deserialize, Serialize};

/// A tool call with nested arguments, as the runtime sends.
#[derive(Debug, PartialEq, Serialize, Deserialize)]
struct ToolCall {
    id: u64,
    tool: String,
    args: Vec<(String, Arg)>,
}

#[derive(Debug, PartialEq, Serialize, Deserialize)]
enum Arg {
    Str(String),
    Int(i64),
    Float(f64),
    Bool(bool),
    List(Vec<Arg>),
    Map(Vec<(String, Arg)>),
}

fn each<C: Codec>(codec: C, data: &[u8]) {
    if let Ok(call) = codec.decode::<ToolCall>(data) {
        let mut again = Vec::new();
        codec.encode(&call, &mut again).expect("what decodes encodes");
    }
    let _ = codec.decode::<ipc_tracing::EventRecord>(data);
}

fuzz_target!(|data: &[u8]| {
    each(Postcard, data);
    each(Bincode, data);
    each(Json, data);
    each(MessagePack, data);
});
