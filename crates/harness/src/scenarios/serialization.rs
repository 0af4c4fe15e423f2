//! Codec costs on realistic agent messages, and typed round trips.

use std::time::Instant;

use ipc_core::{Bincode, Codec, FrameReceiver, FrameSender, Json, Postcard};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::block::{Block, cell};
use crate::error::{HarnessError, Result};
use crate::figure::{Better, FigureId, Statistic, Subject, Unit};
use crate::gather::Gather;
use crate::plan::{Group, Plan};
use crate::scenarios::Scenario;
use crate::schema::{CodecKind, CodecResult, Message, Regime, RunResults, TypedRoundTrip};
use crate::stats::Recorder;
use crate::transport::{Variant, spawn_agent};

/// The serialization group: the codecs alone, then typed round trips
/// over every transport with each codec.
pub(crate) struct Serialization;

impl Scenario for Serialization {
    fn group(&self) -> Group {
        Group::Serialization
    }

    fn blocks(&self, p: &Plan) -> Vec<Block> {
        let group = Group::Serialization;
        let batches = p.codec_batches;
        let codecs = cell("codecs".into(), 2.0, move |r, trial| {
            r.serialization.extend(codecs(batches, trial)?);
            Ok(())
        });
        let typed = p
            .transports
            .iter()
            .map(|&t| {
                let variant = Variant::of(t);
                let n = (p.latency_warmup / 4, p.latency_samples / 4);
                let pin = p.pin;
                cell(
                    format!("typed round trips over {t}"),
                    1.5,
                    move |r, trial| {
                        let rt = &mut r.typed_round_trips;
                        rt.push(typed_round_trip(
                            variant,
                            Postcard,
                            CodecKind::Postcard,
                            n,
                            pin,
                            trial,
                        )?);
                        rt.push(typed_round_trip(
                            variant,
                            Bincode,
                            CodecKind::Bincode,
                            n,
                            pin,
                            trial,
                        )?);
                        rt.push(typed_round_trip(
                            variant,
                            Json,
                            CodecKind::Json,
                            n,
                            pin,
                            trial,
                        )?);
                        Ok(())
                    },
                )
            })
            .collect();
        vec![
            Block {
                group,
                cells: vec![codecs],
            },
            Block {
                group,
                cells: typed,
            },
        ]
    }

    fn figures(&self, r: &RunResults, g: &mut Gather) {
        let id = |subject, regime, statistic| FigureId {
            group: Group::Serialization,
            subject,
            regime,
            size: None,
            agents: None,
            statistic,
        };
        for c in &r.serialization {
            let subject = Subject::Codec(c.codec);
            for (regime, v) in [
                (Regime::Encode(c.message), c.encode_ns),
                (Regime::Decode(c.message), c.decode_ns),
            ] {
                let fid = id(subject, regime, Statistic::Time);
                g.put(fid, Unit::Ns, Better::Lower, c.trial, v);
            }
            let size = id(subject, Regime::Encode(c.message), Statistic::EncodedSize);
            let bytes = c.encoded_bytes as f64;
            g.put(size, Unit::Bytes, Better::Lower, c.trial, bytes);
        }
        for t in &r.typed_round_trips {
            for (regime, v) in [
                (Regime::Typed(t.codec), t.typed_p50_ns),
                (Regime::Raw(t.codec), t.raw_p50_ns),
            ] {
                let fid = id(Subject::Transport(t.variant), regime, Statistic::P50);
                g.put(fid, Unit::Ns, Better::Lower, t.trial, v as f64);
            }
        }
    }
}

/// A structured log event, as an agent emits many of.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LogRecord {
    /// Nanoseconds since the epoch.
    pub timestamp_ns: u64,
    /// Severity.
    pub level: String,
    /// Emitting module.
    pub target: String,
    /// Text.
    pub message: String,
    /// Structured fields.
    pub fields: Vec<(String, Arg)>,
}

/// A value in a tool call's arguments (nested like JSON, but typed so the
/// binary codecs can carry it).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Arg {
    /// Text.
    Str(String),
    /// Integer.
    Int(i64),
    /// Float.
    Float(f64),
    /// Flag.
    Bool(bool),
    /// A list.
    List(Vec<Arg>),
    /// A map.
    Map(Vec<(String, Arg)>),
}

/// A tool call with nested arguments.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ToolCall {
    /// Call id.
    pub id: u64,
    /// Tool name.
    pub tool: String,
    /// Arguments.
    pub args: Vec<(String, Arg)>,
}

/// A tool result carrying a binary payload.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ToolResult {
    /// The call it answers.
    pub call_id: u64,
    /// Success.
    pub ok: bool,
    /// Result bytes (64 KiB in the scenario), as a byte string: how a
    /// runtime would declare a blob, so binary codecs copy it in one go.
    #[serde(with = "serde_bytes")]
    pub payload: Vec<u8>,
}

/// The sample log record.
pub fn log_record() -> LogRecord {
    LogRecord {
        timestamp_ns: 1_764_460_800_123_456_789,
        level: "INFO".into(),
        target: "agent::planner".into(),
        message: "tool call finished".into(),
        fields: vec![
            ("tool".into(), Arg::Str("web_search".into())),
            ("duration_ms".into(), Arg::Int(182)),
            ("tokens".into(), Arg::Int(1_204)),
            ("cached".into(), Arg::Bool(false)),
        ],
    }
}

/// The sample tool call.
pub fn tool_call() -> ToolCall {
    ToolCall {
        id: 88_231,
        tool: "web_search".into(),
        args: vec![
            (
                "query".into(),
                Arg::Str("shared memory ring buffer futex wake latency".into()),
            ),
            ("limit".into(), Arg::Int(10)),
            (
                "filters".into(),
                Arg::Map(vec![
                    (
                        "lang".into(),
                        Arg::List(vec![Arg::Str("en".into()), Arg::Str("de".into())]),
                    ),
                    ("since".into(), Arg::Str("2025-01-01".into())),
                    ("score".into(), Arg::Float(0.75)),
                ]),
            ),
        ],
    }
}

/// The sample tool result: 64 KiB of payload.
pub fn tool_result() -> ToolResult {
    ToolResult {
        call_id: 88_231,
        ok: true,
        payload: (0..64 * 1024).map(|i| (i * 31 % 251) as u8).collect(),
    }
}

/// Median nanoseconds per call of `op`. A single call is too short to
/// time alone, so calls are timed in batches sized to take at least
/// [`BATCH_TIME`] each; warm-up batches come first (caches, allocator
/// free lists), then `batches` timed ones, and the median batch counts.
fn median_ns(batches: u64, mut op: impl FnMut()) -> f64 {
    let mut batch = 1u64;
    loop {
        let start = Instant::now();
        for _ in 0..batch {
            op();
        }
        if start.elapsed() >= BATCH_TIME || batch >= 1 << 20 {
            break;
        }
        batch *= 2;
    }
    for _ in 0..WARMUP_BATCHES {
        for _ in 0..batch {
            op();
        }
    }
    let mut per_op: Vec<f64> = (0..batches.max(5))
        .map(|_| {
            let start = Instant::now();
            for _ in 0..batch {
                op();
            }
            start.elapsed().as_nanos() as f64 / batch as f64
        })
        .collect();
    per_op.sort_by(f64::total_cmp);
    per_op[per_op.len() / 2]
}

/// Shortest timed batch of codec calls: long against the clock's
/// resolution and a timer interrupt, short against a time slice.
const BATCH_TIME: std::time::Duration = std::time::Duration::from_micros(50);

/// Untimed batches before the timed ones.
const WARMUP_BATCHES: u64 = 8;

fn codec_on<C: Codec, T>(
    codec: C,
    kind: CodecKind,
    message: Message,
    value: &T,
    batches: u64,
    trial: u32,
) -> Result<CodecResult>
where
    T: Serialize + DeserializeOwned + PartialEq,
{
    let codec_error = |e: ipc_core::CodecError| HarnessError::Agent(e.to_string());
    let mut buf = Vec::new();
    codec.encode(value, &mut buf).map_err(codec_error)?;
    let back: T = codec.decode(&buf).map_err(codec_error)?;
    if &back != value {
        return Err(HarnessError::Agent(format!(
            "{} changed a {} in a round trip",
            C::NAME,
            message.name()
        )));
    }
    let encoded_bytes = buf.len();
    let encode_ns = median_ns(batches, || {
        buf.clear();
        let _ = codec.encode(std::hint::black_box(value), &mut buf);
    });
    let decode_ns = median_ns(batches, || {
        let _ = std::hint::black_box(codec.decode::<T>(std::hint::black_box(&buf)));
    });
    Ok(CodecResult {
        codec: kind,
        message,
        trial,
        encoded_bytes,
        encode_ns,
        decode_ns,
    })
}

fn codecs_on<T>(message: Message, value: &T, batches: u64, trial: u32) -> Result<Vec<CodecResult>>
where
    T: Serialize + DeserializeOwned + PartialEq,
{
    Ok(vec![
        codec_on(
            Postcard,
            CodecKind::Postcard,
            message,
            value,
            batches,
            trial,
        )?,
        codec_on(Bincode, CodecKind::Bincode, message, value, batches, trial)?,
        codec_on(Json, CodecKind::Json, message, value, batches, trial)?,
    ])
}

/// Every codec on every sample message: one trial of `batches` timed
/// batches each.
pub fn codecs(batches: u64, trial: u32) -> Result<Vec<CodecResult>> {
    let mut out = codecs_on(Message::LogRecord, &log_record(), batches, trial)?;
    out.extend(codecs_on(Message::ToolCall, &tool_call(), batches, trial)?);
    out.extend(codecs_on(
        Message::ToolResult64k,
        &tool_result(),
        batches,
        trial,
    )?);
    Ok(out)
}

/// Tool calls as `C`-encoded frames through an echo agent over `variant`:
/// each typed round trip (encode, send, echo, receive, decode) is followed
/// by a raw round trip of the same frame, so both see the same conditions.
pub fn typed_round_trip<C: Codec + Copy>(
    variant: Variant,
    codec: C,
    kind: CodecKind,
    (warmup, samples): (u64, u64),
    pin: bool,
    trial: u32,
) -> Result<TypedRoundTrip> {
    let call = tool_call();
    let codec_error = |e: ipc_core::CodecError| HarnessError::Agent(e.to_string());
    // Pinned like the latency group: unpinned, the agent landed beside the
    // parent in some trials and apart in others (4x apart over shm).
    let (parent_cpu, agent_cpu) = crate::pin::cpus()
        .filter(|_| pin)
        .map_or((None, None), |(p, a)| (Some(p), Some(a)));
    let _pinned = crate::pin::PinGuard::new(parent_cpu);
    let mut agent = spawn_agent(&crate::task::AgentTask {
        cpu: agent_cpu,
        role: crate::task::Role::Echo,
        variant,
    })?;
    let conn = agent.conn();
    let (mut typed, mut raw) = (Recorder::new(), Recorder::new());
    let mut buf = Vec::new();
    codec.encode(&call, &mut buf).map_err(codec_error)?;
    let frame = buf.clone();
    for i in 0..warmup + samples {
        if i == warmup {
            (typed, raw) = (Recorder::new(), Recorder::new());
        }
        let start = Instant::now();
        buf.clear();
        codec.encode(&call, &mut buf).map_err(codec_error)?;
        conn.send(&buf)?;
        let echo = conn.recv()?;
        let back: ToolCall = codec.decode(&echo).map_err(codec_error)?;
        typed.record(start.elapsed());
        if back != call {
            return Err(HarnessError::Agent(
                "typed echo changed the tool call".into(),
            ));
        }
        let start = Instant::now();
        conn.send(&frame)?;
        let echo = conn.recv()?;
        raw.record(start.elapsed());
        if echo != frame {
            return Err(HarnessError::Agent("raw echo changed the frame".into()));
        }
    }
    Ok(TypedRoundTrip {
        variant,
        trial,
        codec: kind,
        message: Message::ToolCall,
        typed_p50_ns: typed.summary().p50_ns,
        raw_p50_ns: raw.summary().p50_ns,
    })
}
