//! Codecs on agent messages, and typed round trips:
//! `cargo bench -p benches --bench serialization`.

fn main() {
    benches::main();
}

mod serialization {
    use divan::Bencher;
    use harness::scenarios::serialization::{ToolCall, log_record, tool_call, tool_result};
    use ipc_core::{Bincode, Codec, FrameReceiver, FrameSender, Json, Postcard};
    use serde::Serialize;
    use serde::de::DeserializeOwned;

    fn encode<C: Codec, T: Serialize>(bencher: Bencher<'_, '_>, codec: C, value: T) {
        let mut buf = Vec::new();
        bencher.bench_local(|| {
            buf.clear();
            codec
                .encode(divan::black_box(&value), &mut buf)
                .expect("encodes");
        });
    }

    fn decode<C: Codec, T: Serialize + DeserializeOwned>(
        bencher: Bencher<'_, '_>,
        codec: C,
        value: T,
    ) {
        let mut buf = Vec::new();
        codec.encode(&value, &mut buf).expect("encodes");
        bencher.bench_local(|| codec.decode::<T>(divan::black_box(&buf)).expect("decodes"));
    }

    macro_rules! codec_benches {
        ($name:ident, $codec:expr) => {
            mod $name {
                use super::*;

                #[divan::bench]
                fn encode_log_record(b: Bencher<'_, '_>) {
                    encode(b, $codec, log_record());
                }
                #[divan::bench]
                fn decode_log_record(b: Bencher<'_, '_>) {
                    decode(b, $codec, log_record());
                }
                #[divan::bench]
                fn encode_tool_call(b: Bencher<'_, '_>) {
                    encode(b, $codec, tool_call());
                }
                #[divan::bench]
                fn decode_tool_call(b: Bencher<'_, '_>) {
                    decode(b, $codec, tool_call());
                }
                #[divan::bench]
                fn encode_tool_result_64k(b: Bencher<'_, '_>) {
                    encode(b, $codec, tool_result());
                }
                #[divan::bench]
                fn decode_tool_result_64k(b: Bencher<'_, '_>) {
                    decode(b, $codec, tool_result());
                }
            }
        };
    }

    codec_benches!(postcard, Postcard);
    codec_benches!(bincode, Bincode);
    codec_benches!(json, Json);

    /// A typed tool call (postcard) round trip through an echo agent.
    #[divan::bench(args = benches::TRANSPORTS)]
    fn typed_round_trip(bencher: Bencher<'_, '_>, transport: &str) {
        let mut agent = harness::transport::spawn_agent(&harness::task::AgentTask {
            cpu: None,
            role: harness::task::Role::Echo,
            variant: benches::variant(transport),
        })
        .expect("echo agent");
        let call = tool_call();
        let mut buf = Vec::new();
        bencher.bench_local(|| {
            buf.clear();
            Postcard.encode(&call, &mut buf).expect("encodes");
            agent.conn().send(&buf).expect("send");
            let frame = agent.conn().recv().expect("recv");
            Postcard.decode::<ToolCall>(&frame).expect("decodes")
        });
    }
}
