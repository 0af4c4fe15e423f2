//! The Rust hub the Python tests drive: `ipc-hub-driver ADDRESS` listens
//! there (`pipe:stdio`: only agents it starts), reads one JSON command a
//! line on stdin and answers each with one JSON line on stdout.
//!
//! Commands (`op`): `spawn {name, argv, env}` starts a supervised agent
//! (never restarted); `wait {count, timeout}` waits for that many more
//! peers; `call {peer, value, timeout}` and `call_bytes {peer, len,
//! timeout}` call one (`call_bytes` sends `body`, a string, if given); `send {peer, value}` and `send_bytes {peer, len}`
//! message one; `events {}` returns what happened since the last time
//! (logs decoded, messages, departures); `shutdown {grace}` ends.
//!
//! Agents' calls are answered at once: `{"echo": V}` with V, `{"big": N}`
//! with N bytes (`i % 251`) written in place (passed, not copied, on
//! shared memory), `{"fail": R}` fails with R, `{"sleep": S}` with
//! itself after S seconds, anything else fails.
//! Every value crosses as `rmpv::Value` in the agent's own codec; bytes
//! reported in JSON are arrays of numbers.

use std::collections::HashMap;
use std::error::Error;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ipc_core::{Address, Config};
use ipc_hub::{AgentSpec, CallError, Hub, HubEvent, HubHandle, PeerId, PeerInfo, Request, Restart};
use serde_json::{Value as Json, json};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

type Seen = Arc<Mutex<Vec<Json>>>;
type Peers = Arc<Mutex<HashMap<u64, PeerInfo>>>;

#[tokio::main]
async fn main() -> Result<(), Box<dyn Error>> {
    let address: Address = std::env::args()
        .nth(1)
        .ok_or("usage: ipc-hub-driver ADDRESS")?
        .parse()?;
    let mut hub: Hub = Hub::new(ipc_hub::HubConfig::default())?;
    if address != Address::Stdio {
        hub.listen(ipc_any::bind_async(&address, &connection())?)?;
    }
    let handle = hub.handle();
    let seen: Seen = Arc::default();
    let peers: Peers = Arc::default();
    let mut events = hub.take_events().ok_or("events taken")?;
    let joined = Arc::new(tokio::sync::Notify::new());
    {
        let (seen, peers, joined) = (seen.clone(), peers.clone(), joined.clone());
        tokio::spawn(async move {
            loop {
                let event = events.next().await;
                note(event, &seen, &peers, &joined).await;
            }
        });
    }
    let mut lines = BufReader::new(tokio::io::stdin()).lines();
    let mut out = tokio::io::stdout();
    let mut waited = 0;
    while let Some(line) = lines.next_line().await? {
        let command: Json = serde_json::from_str(&line)?;
        let op = command["op"].as_str().unwrap_or_default().to_owned();
        let answer = match op.as_str() {
            "spawn" => spawn(&handle, &address, &command),
            "wait" => {
                let count = command["count"].as_u64().unwrap_or(1) as usize;
                let deadline = Instant::now() + secs(&command["timeout"], 10.0);
                waited += count;
                loop {
                    let notified = joined.notified();
                    let have: Vec<Json> = {
                        let peers = peers.lock().unwrap();
                        let mut all: Vec<&PeerInfo> = peers.values().collect();
                        all.sort_by_key(|p| p.id);
                        all.iter().map(|p| peer_json(p)).collect()
                    };
                    if have.len() >= waited {
                        break json!({ "peers": have });
                    }
                    let left = deadline.saturating_duration_since(Instant::now());
                    if tokio::time::timeout(left, notified).await.is_err() {
                        break json!({ "error": "timeout", "peers": have });
                    }
                }
            }
            "call" => {
                let value: rmpv::Value = serde_json::from_value(command["value"].clone())?;
                let timeout = secs(&command["timeout"], 5.0);
                let started = Instant::now();
                let answer: Result<rmpv::Value, _> =
                    handle.call(peer(&peers, &command)?, &value, timeout).await;
                match answer {
                    Ok(v) => json!({ "ok": v, "us": started.elapsed().as_secs_f64() * 1e6 }),
                    Err(e) => call_error(&e),
                }
            }
            "call_bytes" => {
                let body = match command["body"].as_str() {
                    Some(text) => text.as_bytes().to_vec(),
                    None => pattern(command["len"].as_u64().unwrap_or(0) as usize),
                };
                let timeout = secs(&command["timeout"], 5.0);
                let started = Instant::now();
                match handle
                    .call_raw(peer(&peers, &command)?, &body, timeout)
                    .await
                {
                    Ok(reply) => json!({
                        "len": reply.len(),
                        "shared": ipc_shm::is_shared(&reply),
                        "pattern": reply.iter().enumerate().all(|(i, &b)| b == (i % 251) as u8),
                        "ms": started.elapsed().as_secs_f64() * 1e3,
                    }),
                    Err(e) => call_error(&e),
                }
            }
            "send" => {
                let value: rmpv::Value = serde_json::from_value(command["value"].clone())?;
                match handle.send_to(peer(&peers, &command)?, &value).await {
                    Ok(()) => json!({ "ok": true }),
                    Err(e) => json!({ "error": e.to_string() }),
                }
            }
            "send_bytes" => {
                let len = command["len"].as_u64().unwrap_or(0) as usize;
                let to = peer(&peers, &command)?;
                match handle.loan(Some(&[to]), len) {
                    Ok(mut body) => {
                        fill(&mut body);
                        let shared = body.is_shared();
                        match handle.send_loan_to(to, body).await {
                            Ok(()) => json!({ "ok": true, "shared": shared }),
                            Err(e) => json!({ "error": e.to_string() }),
                        }
                    }
                    Err(e) => json!({ "error": e.to_string() }),
                }
            }
            "events" => {
                tokio::time::sleep(secs(&command["settle"], 0.0)).await;
                json!({ "events": std::mem::take(&mut *seen.lock().unwrap()) })
            }
            "shutdown" => {
                let closed = hub.shutdown(secs(&command["grace"], 2.0)).await;
                let answer = json!({ "closed": closed.closed });
                out.write_all(format!("{answer}\n").as_bytes()).await?;
                out.flush().await?;
                return Ok(());
            }
            other => json!({ "error": format!("unknown op {other:?}") }),
        };
        out.write_all(format!("{answer}\n").as_bytes()).await?;
        out.flush().await?;
    }
    hub.shutdown(Duration::from_secs(1)).await;
    Ok(())
}

/// Room for the tests' 64 MiB results.
fn connection() -> Config {
    Config::default().with_max_message_size(128 << 20)
}

fn secs(v: &Json, default: f64) -> Duration {
    Duration::from_secs_f64(v.as_f64().unwrap_or(default).max(0.0))
}

/// The peer a command names, among those that joined (left or not).
fn peer(peers: &Peers, command: &Json) -> Result<PeerId, Box<dyn Error>> {
    let n = command["peer"].as_u64().unwrap_or(0);
    let known = peers.lock().unwrap().get(&n).map(|p| p.id);
    known.ok_or_else(|| format!("no peer #{n} joined").into())
}

fn peer_json(p: &PeerInfo) -> Json {
    json!({
        "id": p.id.get(),
        "name": p.name,
        "pid": p.credentials.pid,
        "codec": p.codec.map(|c| c.name()),
    })
}

fn pattern(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i % 251) as u8).collect()
}

fn fill(body: &mut [u8]) {
    for (i, b) in body.iter_mut().enumerate() {
        *b = (i % 251) as u8;
    }
}

fn call_error(e: &CallError) -> Json {
    let kind = match e {
        CallError::Timeout => "timeout",
        CallError::PeerGone(_) => "gone",
        CallError::Failed(_) => "failed",
        _ => "other",
    };
    json!({ "error": kind, "text": e.to_string() })
}

fn spawn(hub: &HubHandle, address: &Address, command: &Json) -> Json {
    let name = command["name"].as_str().unwrap_or("agent");
    let argv: Vec<String> = command["argv"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|s| s.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default();
    let Some((program, args)) = argv.split_first() else {
        return json!({ "error": "no argv" });
    };
    let mut process = Command::new(program);
    process.args(args);
    if let Some(env) = command["env"].as_object() {
        for (k, v) in env {
            process.env(k, v.as_str().unwrap_or_default());
        }
    }
    let spec = match address {
        Address::Stdio => AgentSpec::pipe(name, process).with_pipe_config(connection()),
        _ => AgentSpec::connecting(name, process, address.clone()),
    };
    match hub.supervise(spec.with_restart(Restart::Never)) {
        Ok(()) => json!({ "ok": true }),
        Err(e) => json!({ "error": e.to_string() }),
    }
}

async fn note(event: HubEvent, seen: &Seen, peers: &Peers, joined: &tokio::sync::Notify) {
    let record = match event {
        HubEvent::Joined(p) => {
            peers.lock().unwrap().insert(p.id.get(), p);
            joined.notify_waiters();
            return;
        }
        HubEvent::Call(request) => {
            // Each on its own task: a slow answer holds up no event.
            tokio::spawn(answer(request));
            return;
        }
        HubEvent::Log { peer, record } => match ipc_tracing::decode(&record) {
            Ok(r) => json!({
                "log": {
                    "peer": peer.get(), "level": r.level, "target": r.target,
                    "message": r.message, "agent": r.agent, "pid": r.pid,
                    "dropped": r.dropped,
                    "fields": r.fields.iter().map(|(k, v)| (k.clone(), field(v)))
                        .collect::<serde_json::Map<_, _>>(),
                }
            }),
            Err(e) => json!({ "bad_log": e.to_string() }),
        },
        HubEvent::Message { peer, payload } => json!({
            "message": {
                "peer": peer.get(),
                "value": payload.decode::<rmpv::Value>().ok(),
                "len": payload.bytes().len(),
                "shared": ipc_shm::is_shared(payload.bytes()),
                "pattern": payload.bytes().iter().enumerate().all(|(i, &b)| b == (i % 251) as u8),
            }
        }),
        HubEvent::Left { peer, reason } => {
            json!({ "left": { "peer": peer.id.get(), "reason": format!("{reason:?}") } })
        }
        HubEvent::Agent(notice) => json!({ "agent": format!("{notice:?}") }),
        other => json!({ "other": format!("{other:?}") }),
    };
    seen.lock().unwrap().push(record);
}

fn field(v: &ipc_tracing::FieldValue) -> Json {
    use ipc_tracing::FieldValue;
    match v {
        FieldValue::Str(s) => json!(s),
        FieldValue::I64(i) => json!(i),
        FieldValue::U64(u) => json!(u),
        FieldValue::F64(f) => json!(f),
        FieldValue::Bool(b) => json!(b),
    }
}

async fn answer(request: Request<ipc_core::Postcard>) {
    let value = match request.decode::<rmpv::Value>() {
        Ok(v) => v,
        Err(e) => {
            let _ = request.fail(&format!("undecodable: {e}")).await;
            return;
        }
    };
    let field = |name: &str| {
        value
            .as_map()
            .and_then(|m| m.iter().find(|(k, _)| k.as_str() == Some(name)))
            .map(|(_, v)| v.clone())
    };
    if let Some(secs) = field("sleep").and_then(|s| s.as_f64()) {
        tokio::time::sleep(Duration::from_secs_f64(secs.max(0.0))).await;
        let _ = request.reply(&value).await;
    } else if let Some(echo) = field("echo") {
        let _ = request.reply(&echo).await;
    } else if let Some(n) = field("big").and_then(|n| n.as_u64()) {
        match request.loan(n as usize) {
            Ok(mut body) => {
                fill(&mut body);
                let _ = request.reply_loan(body).await;
            }
            Err(e) => {
                let _ = request.fail(&e.to_string()).await;
            }
        }
    } else if let Some(reason) = field("fail") {
        let _ = request.fail(reason.as_str().unwrap_or("failed")).await;
    } else {
        let _ = request.fail("unknown request").await;
    }
}
