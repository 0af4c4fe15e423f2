//! The hub across real processes, over pipes and over a Unix socket: who
//! answered, who died, who hung; replies out of order; a hung agent that
//! never stalls the others; calls from agents; bad replies and bad
//! handshakes; goodbyes both ways.
//!
//! `harness = false`: this binary re-runs itself as the agent (the role in
//! `ROLE_ENV`); libtest's output on stdout would corrupt a pipe agent.

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use ipc_core::{Address, AsyncConnector, Config};
use ipc_hub::{
    AdmitError, Agent, AgentEvent, CallError, Hub, HubConfig, HubEvent, LeaveReason, PeerInfo,
    SendToError,
};
use libtest_mimic::{Arguments, Failed, Trial};
use serde::{Deserialize, Serialize};

const ROLE_ENV: &str = "IPC_HUB_TEST_ROLE";
const SOCKET_ENV: &str = "IPC_HUB_TEST_SOCKET";
const MARK_ENV: &str = "IPC_HUB_TEST_MARK";
const SHM_ENV: &str = "IPC_HUB_TEST_SHM";

/// Generous: a deadline here bounds a wait that should end much sooner.
const LONG: Duration = Duration::from_secs(20);

#[derive(Debug, Serialize, Deserialize)]
struct ToolCall {
    id: u64,
    delay_ms: u64,
}

/// A request that names its answer.
#[derive(Debug, Serialize, Deserialize)]
struct Double(u64);

impl ipc_hub::Call for Double {
    type Answer = u64;
}

// Two versions of one protocol's types: the second gains an optional
// field in each. Agents use the first, the hub the second.
#[derive(Debug, Serialize, Deserialize)]
struct AskV1 {
    text: String,
}

#[derive(Debug, Serialize, Deserialize)]
struct AskV2 {
    text: String,
    #[serde(default)]
    lang: Option<String>,
}

#[derive(Debug, Serialize, Deserialize)]
struct AnswerV1 {
    upper: String,
    codec: String,
}

#[derive(Debug, Serialize, Deserialize, PartialEq)]
struct AnswerV2 {
    upper: String,
    codec: String,
    #[serde(default)]
    score: Option<u32>,
}

#[derive(Debug, Serialize, Deserialize)]
struct NoteV1 {
    from: String,
}

#[derive(Debug, Serialize, Deserialize, PartialEq)]
struct NoteV2 {
    from: String,
    #[serde(default)]
    mood: Option<String>,
}

#[derive(Debug, Serialize, Deserialize, PartialEq)]
struct ToolResult {
    id: u64,
    by: String,
}

fn ensure(ok: bool, what: impl FnOnce() -> String) -> Result<(), Failed> {
    if ok { Ok(()) } else { Err(what().into()) }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

#[derive(Clone, Copy, Debug)]
enum Via {
    Pipe,
    Uds,
    /// One shared-memory listener for all agents.
    Shm,
}

/// A hub and the agents it started; the socket directory and the uds
/// agents' processes go with it.
struct Setup {
    hub: Hub,
    dir: tempfile::TempDir,
    via: Via,
    /// The shared-memory listener's name (with `Via::Shm`).
    shm_name: String,
    children: Vec<tokio::process::Child>,
}

impl Setup {
    fn new(via: Via, config: HubConfig) -> Result<Setup, Failed> {
        let hub = Hub::new(config)?;
        let dir = tempfile::tempdir()?;
        let mut shm_name = String::new();
        match via {
            Via::Uds => {
                let listener = ipc_uds::AsyncUdsListener::bind_path(
                    dir.path().join("hub.sock"),
                    &Config::default(),
                )?;
                hub.listen(listener)?;
            }
            Via::Shm => {
                static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
                let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                shm_name = format!("hubtest-{}-{n}", std::process::id());
                hub.listen(ipc_shm::AsyncShmListener::bind_name(
                    &shm_name,
                    &Config::default(),
                )?)?;
            }
            Via::Pipe => {}
        }
        Ok(Setup {
            hub,
            dir,
            via,
            shm_name,
            children: Vec::new(),
        })
    }

    fn mark(&self, role: &str) -> PathBuf {
        self.dir.path().join(format!("{role}.mark"))
    }

    /// Starts an agent playing `role`; returns its pid.
    async fn spawn(&mut self, role: &str) -> Result<u32, Failed> {
        let mut cmd = Command::new(std::env::current_exe()?);
        cmd.env(ROLE_ENV, role).env(MARK_ENV, self.mark(role));
        match self.via {
            Via::Pipe => {
                let process = ipc_pipe::spawn_async(cmd, &Config::default()).await?;
                let pid = process.id().ok_or("no pid")?;
                self.hub.add(process).await?;
                Ok(pid)
            }
            Via::Uds => {
                cmd.env(SOCKET_ENV, self.dir.path().join("hub.sock"));
                let child = tokio::process::Command::from(cmd)
                    .kill_on_drop(true)
                    .spawn()?;
                let pid = child.id().ok_or("no pid")?;
                self.children.push(child);
                Ok(pid)
            }
            Via::Shm => {
                cmd.env(SHM_ENV, &self.shm_name);
                let child = tokio::process::Command::from(cmd)
                    .kill_on_drop(true)
                    .spawn()?;
                let pid = child.id().ok_or("no pid")?;
                self.children.push(child);
                Ok(pid)
            }
        }
    }

    /// The next event.
    async fn next(&mut self) -> Result<HubEvent, Failed> {
        Ok(tokio::time::timeout(LONG, self.hub.next()).await?)
    }

    /// Waits for `n` joins; other events stay queued for `next`.
    async fn joins(&mut self, n: usize) -> Result<Vec<PeerInfo>, Failed> {
        Ok(self.hub.wait_for_peers(n, LONG).await?)
    }

    /// Spawns one agent per role and waits until all joined; returns them
    /// in the order of `roles`, each checked against its pid.
    async fn start(&mut self, roles: &[&str]) -> Result<Vec<PeerInfo>, Failed> {
        let mut pids = Vec::new();
        for role in roles {
            pids.push(self.spawn(role).await?);
        }
        let joined = self.joins(roles.len()).await?;
        let mut ordered = Vec::new();
        for (role, pid) in roles.iter().zip(pids) {
            let peer = joined
                .iter()
                .find(|p| p.name == *role)
                .ok_or_else(|| format!("{role} did not join: {joined:?}"))?;
            ensure(peer.credentials.pid == Some(pid), || {
                format!(
                    "{role}: the OS says pid {:?}, the child is {pid}",
                    peer.credentials
                )
            })?;
            ensure(
                peer.credentials.uid == Some(rustix::process::getuid().as_raw()),
                || format!("{role}: uid {:?}", peer.credentials),
            )?;
            ordered.push(peer.clone());
        }
        Ok(ordered)
    }

    /// The next `Left` event, skipping others.
    async fn left(&mut self) -> Result<(PeerInfo, LeaveReason), Failed> {
        loop {
            if let HubEvent::Left { peer, reason } = self.next().await? {
                return Ok((peer, reason));
            }
        }
    }
}

fn call(id: u64, delay_ms: u64) -> ToolCall {
    ToolCall { id, delay_ms }
}

// ---- the tests ----

fn answers_deaths_and_hangs_are_told_apart(via: Via) -> Result<(), Failed> {
    runtime().block_on(async {
        let mut s = Setup::new(via, HubConfig::default())?;
        let peers = s.start(&["server", "crash", "hang"]).await?;
        let deadline = Duration::from_millis(1500);
        let answers: Vec<Result<ToolResult, _>> =
            s.hub.call_each(&peers, &call(7, 0), deadline).await;
        match &answers[0] {
            Ok(r) => ensure(
                r == &ToolResult {
                    id: 7,
                    by: "server".into(),
                },
                || format!("server answered {r:?}"),
            )?,
            Err(e) => return Err(format!("server: {e}").into()),
        }
        ensure(
            matches!(
                answers[1],
                Err(CallError::PeerGone(LeaveReason::Disconnected))
            ),
            || format!("crash: {:?}", answers[1]),
        )?;
        ensure(matches!(answers[2], Err(CallError::Timeout)), || {
            format!("hang: {:?}", answers[2])
        })?;
        let (gone, reason) = s.left().await?;
        ensure(
            gone.name == "crash" && reason == LeaveReason::Disconnected,
            || format!("left: {gone} {reason:?}"),
        )?;
        ensure(s.hub.peers().len() == 2, || {
            format!("peers {:?}", s.hub.peers())
        })?;
        let gone = s
            .hub
            .call::<_, ToolResult>(peers[1].id, &call(0, 0), deadline)
            .await;
        ensure(matches!(gone, Err(CallError::UnknownPeer(_))), || {
            format!("a call to a peer that left: {gone:?}")
        })?;
        Ok(())
    })
}

fn replies_are_matched_out_of_order(via: Via) -> Result<(), Failed> {
    runtime().block_on(async {
        let mut s = Setup::new(via, HubConfig::default())?;
        let peer = s.start(&["echo"]).await?.remove(0);
        // The slowest call goes first; replies come back fastest first.
        let delays = [400, 0, 200, 50];
        let hub = &s.hub;
        let calls = delays.iter().enumerate().map(|(i, delay)| async move {
            hub.call::<_, ToolResult>(peer.id, &call(i as u64, *delay), LONG)
                .await
        });
        let answers = futures::future::join_all(calls).await;
        for (i, answer) in answers.into_iter().enumerate() {
            let answer = answer?;
            ensure(answer.id == i as u64, || {
                format!("call {i} got the reply to {}", answer.id)
            })?;
        }
        Ok(())
    })
}

fn a_hung_agent_never_stalls_the_others(via: Via) -> Result<(), Failed> {
    let frozen_pid = runtime().block_on(async {
        let config = HubConfig::default()
            .with_queue_len(4)
            .with_send_timeout(Duration::from_millis(200));
        let mut s = Setup::new(via, config)?;
        let peers = s.start(&["echo", "freeze"]).await?;
        let (echo, frozen) = (&peers[0], &peers[1]);
        // The frozen agent stops its whole process on its first call.
        let hung = s
            .hub
            .call::<_, ToolResult>(frozen.id, &call(0, 0), Duration::from_millis(300))
            .await;
        ensure(matches!(hung, Err(CallError::Timeout)), || {
            format!("{hung:?}")
        })?;
        // Fill the frozen agent's transport buffer and queue.
        let big = vec![7u8; 64 * 1024];
        let mut skipped = false;
        for _ in 0..400 {
            let report = s.hub.broadcast(&big)?;
            ensure(!report.skipped.contains(&echo.id), || {
                format!("the echo agent was skipped: {report:?}")
            })?;
            if report.skipped.contains(&frozen.id) {
                skipped = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        ensure(skipped, || "the frozen agent's queue never filled".into())?;
        let full = s.hub.send_to(frozen.id, &1u8).await;
        ensure(matches!(full, Err(SendToError::Full)), || {
            format!("send_to a full queue: {full:?}")
        })?;
        // Meanwhile the other agent answers as ever.
        for i in 0..20 {
            let answer: ToolResult = s.hub.call(echo.id, &call(i, 0), LONG).await?;
            ensure(answer.id == i, || format!("{answer:?}"))?;
        }
        Ok::<_, Failed>(frozen.credentials.pid.ok_or("no pid")?)
    })?;
    // The runtime is gone, and with it the hub: the frozen agent, which
    // would sleep for an hour, must not be left running.
    let waited = std::time::Instant::now();
    while running(frozen_pid) && waited.elapsed() < LONG {
        std::thread::sleep(Duration::from_millis(10));
    }
    ensure(!running(frozen_pid), || {
        format!("the frozen agent {frozen_pid} outlived its hub")
    })
}

/// Whether `pid` is a live process (not gone, not a zombie).
fn running(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
        let state = stat
            .rsplit(')')
            .next()
            .and_then(|rest| rest.split_whitespace().next());
        !matches!(state, Some("Z" | "X") | None)
    })
}

fn agents_call_the_hub_and_bad_replies_are_errors(via: Via) -> Result<(), Failed> {
    runtime().block_on(async {
        let mut s = Setup::new(via, HubConfig::default())?;
        let peers = s.start(&["caller", "garbage"]).await?;
        let bad = s
            .hub
            .call::<_, ToolResult>(peers[1].id, &call(1, 0), LONG)
            .await;
        ensure(matches!(bad, Err(CallError::Decode(_))), || {
            format!("garbage reply: {bad:?}")
        })?;
        let refused = s
            .hub
            .call::<_, ToolResult>(peers[1].id, &call(2, 0), LONG)
            .await;
        ensure(
            matches!(&refused, Err(CallError::Failed(why)) if why.contains("dropped")),
            || format!("unanswered request: {refused:?}"),
        )?;
        // The caller asks the hub for a number, then reports what it got.
        let request = loop {
            if let HubEvent::Call(request) = s.next().await? {
                break request;
            }
        };
        ensure(request.peer() == peers[0].id, || format!("{request:?}"))?;
        let asked: u64 = request.decode()?;
        request.reply(&(asked + 1)).await?;
        let (peer, payload) = loop {
            if let HubEvent::Message { peer, payload } = s.next().await? {
                break (peer, payload);
            }
        };
        ensure(
            peer == peers[0].id && payload.decode::<u64>()? == asked + 1,
            || format!("the caller reported {payload:?}"),
        )?;
        // It then says goodbye.
        let (gone, reason) = s.left().await?;
        ensure(
            gone.id == peers[0].id && reason == LeaveReason::Closed("done".into()),
            || format!("{gone}: {reason:?}"),
        )?;
        Ok(())
    })
}

fn shutdown_tells_every_agent(via: Via) -> Result<(), Failed> {
    runtime().block_on(async {
        let mut s = Setup::new(via, HubConfig::default())?;
        let roles = ["echo", "caller-quiet"];
        s.start(&roles).await?;
        let marks: Vec<PathBuf> = roles.iter().map(|r| s.mark(r)).collect();
        let closed = s.hub.shutdown(LONG).await.closed;
        ensure(closed == roles.len(), || {
            format!("{closed} of {} closed", roles.len())
        })?;
        for mark in &marks {
            // The agent writes it when it reads the goodbye, which may be
            // after the hub saw its connection close.
            let waited = tokio::time::Instant::now();
            let written = || std::fs::read_to_string(mark).is_ok_and(|s| !s.is_empty());
            while !written() && waited.elapsed() < LONG {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            let told = std::fs::read_to_string(mark).unwrap_or_default();
            ensure(told.contains("the hub is shutting down"), || {
                format!("{}: {told:?}", mark.display())
            })?;
        }
        for mut child in s.children {
            let status = tokio::time::timeout(LONG, child.wait()).await??;
            ensure(status.success(), || {
                format!("an agent exited with {status}")
            })?;
        }
        Ok(())
    })
}

fn bad_handshakes_are_rejected() -> Result<(), Failed> {
    use tokio::io::AsyncWriteExt;
    runtime().block_on(async {
        let config = HubConfig::default().with_handshake_timeout(Duration::from_millis(300));
        let mut s = Setup::new(Via::Uds, config)?;
        let path = s.dir.path().join("hub.sock");
        let me = Some(std::process::id());
        // A silent connection.
        let _silent = tokio::net::UnixStream::connect(&path).await?;
        let event = tokio::time::timeout(LONG, s.hub.next()).await?;
        ensure(
            matches!(&event, HubEvent::Rejected { from, error: AdmitError::Timeout } if from.pid == me),
            || format!("silent: {event:?}"),
        )?;
        // A frame that is not a hello, then one with a bad name.
        for (frame, what) in [(&[5u8, 0, 0, 0, 0, 0, 0, 0, 0][..], "a reply"), (&[1, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, b'\n'][..], "a bad name")] {
            let mut raw = tokio::net::UnixStream::connect(&path).await?;
            raw.write_all(&ipc_core::frame::encode_header(frame.len())).await?;
            raw.write_all(frame).await?;
            let event = tokio::time::timeout(LONG, s.hub.next()).await?;
            ensure(
                matches!(&event, HubEvent::Rejected { error: AdmitError::Protocol(_), .. }),
                || format!("{what}: {event:?}"),
            )?;
        }
        // A peer that joins properly, then sends garbage, is dropped.
        let conn = ipc_uds::AsyncUds.connect(&Address::Uds(path.clone()), &Config::default()).await?;
        let mut conn = Some(conn);
        let joined = Agent::join(conn.take().unwrap(), "rogue", HubConfig::default()).await?;
        let peer = s.joins(1).await?.remove(0);
        drop(joined);
        let (gone, reason) = s.left().await?;
        ensure(gone.id == peer.id && reason == LeaveReason::Disconnected, || format!("{reason:?}"))?;
        let mut raw = tokio::net::UnixStream::connect(&path).await?;
        let hello = [1u8, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, b'x'];
        raw.write_all(&ipc_core::frame::encode_header(hello.len())).await?;
        raw.write_all(&hello).await?;
        s.joins(1).await?;
        raw.write_all(&ipc_core::frame::encode_header(3)).await?;
        raw.write_all(b"bad").await?;
        let (_, reason) = s.left().await?;
        ensure(matches!(reason, LeaveReason::Protocol(_)), || format!("garbage: {reason:?}"))?;
        // The hub still serves well-behaved agents.
        let peer = s.start(&["echo"]).await?.remove(0);
        let answer: ToolResult = s.hub.call(peer.id, &call(9, 0), LONG).await?;
        ensure(answer.id == 9, || format!("{answer:?}"))
    })
}

/// An agent's tracing events reach the hub over its one connection, with
/// their spans, none lost in lossless mode, the count confirmed by the
/// closing record.
fn agent_logs_reach_the_hub(via: Via) -> Result<(), Failed> {
    runtime().block_on(async {
        let mut s = Setup::new(via, HubConfig::default())?;
        let peer = s.start(&["logger"]).await?.remove(0);
        let mut seqs = Vec::new();
        let mut closing = None;
        loop {
            match s.next().await? {
                HubEvent::Log { peer: from, record } => {
                    ensure(from == peer.id, || format!("a log from {from}"))?;
                    let record = ipc_tracing::decode(&record)?;
                    ensure(record.pid == peer.credentials.pid.unwrap_or(0), || {
                        format!("record pid {}", record.pid)
                    })?;
                    if record.message == "shipper closed" {
                        closing = Some(record);
                    } else {
                        ensure(
                            record.spans.first().is_some_and(|s| s.name == "tool_call"),
                            || format!("spans {:?}", record.spans),
                        )?;
                        seqs.extend(record.fields.iter().find_map(|(n, v)| {
                            match (n.as_str(), v) {
                                ("seq", ipc_tracing::FieldValue::U64(seq)) => Some(*seq),
                                _ => None,
                            }
                        }));
                    }
                }
                HubEvent::Left { reason, .. } => {
                    ensure(reason == LeaveReason::Closed("done".into()), || {
                        format!("{reason:?}")
                    })?;
                    break;
                }
                _ => {}
            }
        }
        ensure(seqs == (0..LOG_EVENTS).collect::<Vec<_>>(), || {
            format!(
                "{} of {LOG_EVENTS} events, in order: {}",
                seqs.len(),
                seqs.windows(2).all(|w| w[0] < w[1])
            )
        })?;
        let closing = closing.ok_or("no closing record")?;
        ensure(closing.dropped == 0 && closing.agent == "logger", || {
            format!("{closing:?}")
        })
    })
}

const LOG_EVENTS: u64 = 2_000;

/// Logs sent before a reply: three times the default event queue.
const CHATTY_LOGS: u64 = 3_000;

/// A reply never waits behind logs nobody has read: an agent logs three
/// event queues' worth, then answers a call, while the hub reads no event
/// at all; the answer comes within its deadline, and every log is still
/// delivered afterwards, in order.
fn a_reply_never_waits_behind_unread_logs(via: Via) -> Result<(), Failed> {
    runtime().block_on(async {
        let mut s = Setup::new(via, HubConfig::default())?;
        let peer = s.start(&["chatty"]).await?.remove(0);
        let answer: Result<ToolResult, _> = s
            .hub
            .call(peer.id, &call(5, 0), Duration::from_secs(3))
            .await;
        ensure(
            matches!(&answer, Ok(r) if r.id == 5 && r.by == "chatty"),
            || format!("the call behind {CHATTY_LOGS} unread logs: {answer:?}"),
        )?;
        let mut seqs = Vec::new();
        loop {
            match s.next().await? {
                HubEvent::Log { record, .. } => {
                    let record = ipc_tracing::decode(&record)?;
                    seqs.extend(
                        record
                            .fields
                            .iter()
                            .find_map(|(n, v)| match (n.as_str(), v) {
                                ("seq", ipc_tracing::FieldValue::U64(seq)) => Some(*seq),
                                _ => None,
                            }),
                    );
                }
                HubEvent::Left { .. } => break,
                _ => {}
            }
        }
        ensure(seqs == (0..CHATTY_LOGS).collect::<Vec<_>>(), || {
            let out_of_place = seqs.iter().enumerate().find(|(i, seq)| *i as u64 != **seq);
            format!(
                "{} of {CHATTY_LOGS} logs delivered; first out of place: {out_of_place:?}",
                seqs.len()
            )
        })
    })
}

/// Records the `last-words` agent logs while the hub shuts down.
const LAST_WORDS: u64 = 200;

/// What an agent logs after the hub said goodbye comes back from
/// `shutdown`, every record in order, the shipper's closing record with
/// no loss, and the agent's `Left` last (before: `shutdown` discarded
/// every event that came while closing).
fn shutdown_delivers_last_words(via: Via) -> Result<(), Failed> {
    runtime().block_on(async {
        let mut s = Setup::new(via, HubConfig::default())?;
        let peer = s.start(&["last-words"]).await?.remove(0);
        let closed = s.hub.shutdown(LONG).await;
        ensure(closed.closed == 1, || format!("{} of 1 closed", closed.closed))?;
        let mut seqs = Vec::new();
        let mut closing = None;
        let mut last = None;
        for event in closed.events {
            match event {
                HubEvent::Log { peer: from, record } if from == peer.id => {
                    let record = ipc_tracing::decode(&record)?;
                    if record.message == "shipper closed" {
                        closing = Some(record);
                        continue;
                    }
                    seqs.extend(record.fields.iter().find_map(|(n, v)| match (n.as_str(), v) {
                        ("seq", ipc_tracing::FieldValue::U64(seq)) => Some(*seq),
                        _ => None,
                    }));
                }
                other => last = Some(other),
            }
        }
        ensure(seqs == (0..LAST_WORDS).collect::<Vec<_>>(), || {
            format!("{} of {LAST_WORDS} last words", seqs.len())
        })?;
        let closing = closing.ok_or("no closing record")?;
        ensure(closing.dropped == 0, || format!("{closing:?}"))?;
        ensure(
            matches!(&last, Some(HubEvent::Left { peer: p, reason: LeaveReason::Closed(_) }) if p.id == peer.id),
            || format!("the last event: {last:?}"),
        )?;
        for mut child in s.children {
            let status = tokio::time::timeout(LONG, child.wait()).await??;
            ensure(status.success(), || format!("the agent exited with {status}"))?;
        }
        Ok(())
    })
}

/// A request type names its answer (`ask` infers it, `serve_calls`
/// checks it); a broadcast reaches the chosen peers only, encoded or as
/// raw bytes, and names those it skipped.
fn typed_calls_and_chosen_broadcasts(via: Via) -> Result<(), Failed> {
    runtime().block_on(async {
        let mut s = Setup::new(via, HubConfig::default())?;
        let peers = s.start(&["typed", "listener-a", "listener-b"]).await?;
        let (typed, a, b) = (&peers[0], &peers[1], &peers[2]);
        let doubled = s.hub.ask(typed.id, &Double(21), LONG).await?;
        ensure(doubled == 42, || format!("{doubled}"))?;
        ensure(s.hub.peers_named("listener-a") == vec![a.clone()], || {
            format!("{:?}", s.hub.peers_named("listener-a"))
        })?;
        // Encoded, to `a` only; then raw bytes to `b` and to one that left.
        let sent = s.hub.broadcast_to([a], &7u64)?;
        ensure(sent.queued == vec![a.id] && sent.skipped.is_empty(), || {
            format!("{sent:?}")
        })?;
        let echoed = next_message(&mut s).await?;
        let seven: u64 = ipc_core::Codec::decode(&ipc_core::Postcard, &echoed.1)?;
        ensure(echoed.0 == a.id && seven == 7, || format!("{echoed:?}"))?;
        s.hub.remove(typed.id);
        let sent = s.hub.broadcast_bytes(Some(&[b.id, typed.id]), b"raw");
        ensure(
            sent.queued == vec![b.id] && sent.skipped == vec![typed.id],
            || format!("{sent:?}"),
        )?;
        let echoed = next_message(&mut s).await?;
        ensure(echoed == (b.id, b"raw".to_vec()), || format!("{echoed:?}"))?;
        Ok(())
    })
}

/// Messages of the burst to a slow reader ([`tally_agent`]).
const BURST: u64 = 4_000;

/// The `seq`th message of a burst: its number, then filler; mostly small
/// (gathered into one write with those queued behind it, over a stream),
/// now and then larger than a stream gathers.
fn burst_message(seq: u64) -> Vec<u8> {
    let len = match seq % 500 {
        499 => 20 * 1024,
        _ => 8 + (seq as usize * 37) % 2048,
    };
    let mut message = vec![seq as u8; len];
    message[..8].copy_from_slice(&seq.to_le_bytes());
    message
}

/// Messages sent faster than a slow agent reads pile up in the hub's
/// queue, and go out (gathered, over a stream) whole and in order, ahead
/// of the call sent after them.
fn a_burst_to_a_slow_reader_arrives_whole_and_in_order(via: Via) -> Result<(), Failed> {
    runtime().block_on(async {
        let mut s = Setup::new(via, HubConfig::default())?;
        let peers = s.start(&["tally"]).await?;
        let handle = s.hub.handle();
        for seq in 0..BURST {
            handle
                .send_bytes_to(peers[0].id, &burst_message(seq))
                .await?;
        }
        let (count, problem): (u64, String) = handle.call(peers[0].id, &BURST, LONG).await?;
        ensure(count == BURST && problem.is_empty(), || {
            format!("{count} of {BURST} messages: {problem}")
        })
    })
}

/// Reads nothing for a moment, then checks every message of the burst in
/// order; answers a call with how many came and the first thing wrong.
async fn tally_agent(role: &str) -> Result<(), Box<dyn std::error::Error>> {
    let mut agent: Agent = join_as(role).await?;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (mut count, mut problem) = (0u64, String::new());
    while let Some(event) = agent.next().await {
        match event {
            AgentEvent::Message(message) => {
                let want = burst_message(count);
                if problem.is_empty() && message.bytes()[..] != want[..] {
                    problem = format!("message {count} is not the {count}th sent");
                }
                count += 1;
            }
            AgentEvent::Call(request) => {
                request.reply(&(count, problem.clone())).await?;
            }
            _ => break,
        }
    }
    Ok(())
}

/// Messages the hub sends an agent that gives up waiting for each event
/// after a moment ([`fickle_agent`]).
const FICKLE_MESSAGES: u64 = 3_000;

/// `Agent::next` is cancel-safe: an agent that drops it after a few
/// microseconds, again and again (while it may be reading the connection
/// itself), still gets every message once and in order, and says so.
fn next_can_be_dropped_at_any_time(via: Via) -> Result<(), Failed> {
    runtime().block_on(async {
        let mut s = Setup::new(via, HubConfig::default())?;
        let peer = s.start(&["fickle"]).await?[0].id;
        for n in 0..FICKLE_MESSAGES {
            s.hub.send_to(peer, &n).await?;
            // Pauses, so that the agent often waits, and gives up.
            if n % 50 == 0 {
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        }
        let (from, report) = next_message(&mut s).await?;
        let report: String = ipc_core::Codec::decode(&ipc_core::Postcard, &report)?;
        ensure(from == peer && report == "in order", || {
            format!("the agent said {report:?}")
        })
    })
}

/// The agent of [`next_can_be_dropped_at_any_time`].
async fn fickle_agent(role: &str) -> Result<(), Box<dyn std::error::Error>> {
    let mut agent: Agent = join_as(role).await?;
    let (mut expected, mut dropped) = (0u64, 0u64);
    let report = loop {
        let event = match tokio::time::timeout(Duration::from_micros(20), agent.next()).await {
            Ok(Some(event)) => event,
            Ok(None) => return Err("the hub went away".into()),
            Err(_) => {
                dropped += 1;
                continue;
            }
        };
        let AgentEvent::Message(payload) = event else {
            break format!("{event:?} instead of message {expected}");
        };
        let n: u64 = payload.decode()?;
        if n != expected {
            break format!("message {n} when {expected} was due");
        }
        expected += 1;
        if expected == FICKLE_MESSAGES {
            break "in order".to_string();
        }
    };
    eprintln!("fickle agent: dropped `next` {dropped} times");
    agent.send(&report).await?;
    agent.close("done", LONG).await;
    Ok(())
}

fn pattern(buf: &mut [u8]) {
    for (i, b) in buf.iter_mut().enumerate() {
        *b = (i * 7 % 251) as u8;
    }
}

/// Bodies written in place (loans) both ways: the agent's reply and its
/// echo, the hub's message, one of them cut short. Shared memory lends
/// memory files (passed, not copied: `tests/shm_agents.rs` checks that);
/// the stream transports lend heap memory, copied once, same bytes.
fn loans_both_ways(via: Via) -> Result<(), Failed> {
    runtime().block_on(async {
        let mut s = Setup::new(via, HubConfig::default())?;
        let peer = s.start(&["loaner"]).await?[0].id;
        let shared = matches!(via, Via::Shm);
        let n = 2 << 20;
        let mut want = vec![0; n];
        pattern(&mut want);
        let got = s.hub.call_bytes(peer, &(n as u64), LONG).await?;
        ensure(got[..] == want[..], || "the loaned reply is wrong".into())?;
        ensure(ipc_shm::is_shared(&got) == shared, || {
            format!("read in place: {}", ipc_shm::is_shared(&got))
        })?;

        let mut body = s.hub.loan(Some(&[peer]), n)?;
        ensure(body.is_shared() == shared, || format!("{body:?}"))?;
        body.copy_from_slice(&want);
        body.truncate(n - 1000);
        s.hub.send_loan_to(peer, body).await?;
        let echoed = next_message(&mut s).await?;
        ensure(echoed == (peer, want[..n - 1000].to_vec()), || {
            format!("the echo of a loaned message: {} bytes", echoed.1.len())
        })?;
        // A loan for nobody connected is heap memory, and still sends.
        let none = s.hub.loan(Some(&[]), 16)?;
        ensure(!none.is_shared() && none.len() == 16, || {
            format!("{none:?}")
        })?;
        let sent = s.hub.broadcast_loan(None, none)?;
        ensure(sent.queued == vec![peer], || format!("{sent:?}"))?;
        let echoed = next_message(&mut s).await?;
        ensure(echoed == (peer, vec![0; 16]), || format!("{echoed:?}"))?;
        Ok(())
    })
}

/// Agents of one hub speaking JSON, MessagePack and postcard, each named
/// in its hello: the hub encodes and decodes each one's typed bodies with
/// its codec (calls, messages, broadcasts), and with the self-describing
/// codecs a type that gained an optional field still passes an agent of
/// the older type both ways. Postcard, positional, cannot: said, not
/// hidden.
/// `Agent::join_speaking` names its codec; the agent's `AgentHandle`
/// calls the hub (typed, in that codec, and raw) and logs from another
/// task while the `Agent` answers the hub's raw call.
fn a_handle_works_beside_the_events(via: Via) -> Result<(), Failed> {
    runtime().block_on(async {
        let mut s = Setup::new(via, HubConfig::default())?;
        let peers = s.start(&["handle"]).await?;
        ensure(peers[0].codec == Some(ipc_hub::BodyCodec::Json), || {
            format!("{:?}", peers[0].codec)
        })?;
        let hub = s.hub.handle();
        let to = peers[0].id;
        let raw = tokio::spawn(async move { hub.call_raw(to, b"abc", LONG).await });
        let (mut report, mut logged) = (None, false);
        while report.is_none() || !logged {
            match s.next().await? {
                HubEvent::Call(request) => {
                    if request.bytes().as_ref() == b"raw call" {
                        request.reply_bytes(b"raw reply").await?;
                    } else {
                        // JSON on the wire: the codec the agent chose.
                        ensure(request.bytes().as_ref() == b"\"from the handle\"", || {
                            format!("{:?}", request.bytes())
                        })?;
                        let text: String = request.decode()?;
                        request.reply(&format!("hub got {text}")).await?;
                    }
                }
                HubEvent::Message { payload, .. } => report = Some(payload.decode::<String>()?),
                HubEvent::Log { record, .. } => {
                    logged = ipc_tracing::decode(&record)?.message == "from the handle";
                }
                _ => {}
            }
        }
        ensure(
            report.as_deref() == Some("hub got from the handle|raw reply"),
            || format!("{report:?}"),
        )?;
        let reversed = raw.await.map_err(|e| e.to_string())??;
        ensure(reversed.as_ref() == b"cba", || format!("{reversed:?}"))?;
        let closed = s.hub.shutdown(LONG).await.closed;
        ensure(closed == 1, || format!("{closed} closed"))
    })
}

/// A hub shut down the moment an agent is welcomed still says goodbye
/// to it: the welcome and the goodbye go through the same queue. (Before,
/// the welcome was written before the peer was listed, and a shutdown in
/// between closed the connection without a goodbye: one run in ten over
/// uds.) Agents are tasks of this process, connecting over a listener.
fn a_welcomed_agent_always_gets_its_goodbye(via: Via) -> Result<(), Failed> {
    if matches!(via, Via::Pipe) {
        return Ok(()); // `Hub::add` returns once the peer is listed.
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let dir = tempfile::tempdir()?;
    runtime.block_on(async {
        for round in 0..40 {
            let hub = Hub::new(HubConfig::default())?;
            let config = Config::default();
            let address = match via {
                Via::Uds => {
                    let path = dir.path().join(format!("goodbye-{round}.sock"));
                    hub.listen(ipc_uds::AsyncUdsListener::bind_path(&path, &config)?)?;
                    Address::Uds(path)
                }
                _ => {
                    let name = format!("goodbye-{}-{round}", std::process::id());
                    let address = Address::Shm(name.clone());
                    hub.listen(ipc_shm::AsyncShmListener::bind_name(&name, &config)?)?;
                    address
                }
            };
            let conn = ipc_any::connect_async(&address, &config).await?;
            let mut agent = Agent::join(conn, "punctual", HubConfig::default()).await?;
            // Shut down at once, while the hub may still be listing it.
            let closed = tokio::spawn(hub.shutdown(LONG));
            let first = tokio::time::timeout(LONG, agent.next()).await?;
            ensure(matches!(first, Some(AgentEvent::Shutdown(_))), || {
                format!("round {round}: the agent's first event was {first:?}")
            })?;
            agent.close("done", LONG).await;
            closed.await.map_err(|e| e.to_string())?;
        }
        Ok(())
    })
}

fn codecs_per_peer(via: Via) -> Result<(), Failed> {
    use ipc_hub::BodyCodec;
    runtime().block_on(async {
        let mut s = Setup::new(via, HubConfig::default())?;
        let roles = ["codec-json", "codec-msgpack", "codec-postcard"];
        let peers = s.start(&roles).await?;
        let codecs: Vec<_> = peers.iter().map(|p| p.codec).collect();
        let want = [
            Some(BodyCodec::Json),
            Some(BodyCodec::MessagePack),
            Some(BodyCodec::Postcard),
        ];
        ensure(codecs == want, || format!("{codecs:?}"))?;
        // Each agent's note, decoded with its codec into the newer type
        // (the postcard agent's into its own).
        let mut notes = Vec::new();
        while notes.len() < roles.len() {
            if let HubEvent::Message { peer, payload } = s.next().await? {
                notes.push(if peer == peers[2].id {
                    let NoteV1 { from } = payload.decode()?;
                    NoteV2 { from, mood: None }
                } else {
                    payload.decode::<NoteV2>()?
                });
            }
        }
        for role in roles {
            ensure(
                notes.contains(&NoteV2 {
                    from: role.into(),
                    mood: None,
                }),
                || format!("{role}: {notes:?}"),
            )?;
        }
        let ask = AskV2 {
            text: "hi".into(),
            lang: Some("en".into()),
        };
        for (peer, name) in peers[..2].iter().zip(["json", "msgpack"]) {
            let got: AnswerV2 = s.hub.call(peer.id, &ask, LONG).await?;
            let want = AnswerV2 {
                upper: "HI".into(),
                codec: name.into(),
                score: None,
            };
            ensure(got == want, || format!("{name}: {got:?}"))?;
        }
        let postcard = s.hub.call::<_, AnswerV2>(peers[2].id, &ask, LONG).await;
        ensure(matches!(postcard, Err(CallError::Failed(_))), || {
            format!("postcard with a new field: {postcard:?}")
        })?;
        // A broadcast is encoded for each codec.
        let sent = s.hub.broadcast(&"ping".to_string())?;
        ensure(sent.queued.len() == 3, || format!("{sent:?}"))?;
        let mut heard = Vec::new();
        while heard.len() < roles.len() {
            if let HubEvent::Message { payload, .. } = s.next().await? {
                heard.push(payload.decode::<String>()?);
            }
        }
        heard.sort();
        let want: Vec<String> = roles.iter().map(|r| format!("{r} heard ping")).collect();
        ensure(heard == want, || format!("{heard:?}"))?;
        Ok(())
    })
}

/// A frame larger than the connection's `max_message_size` is its
/// sender's error, both ways, and the connection goes on: a message or a
/// request from the hub is refused at once, a reply from the agent fails
/// its call at once (the caller does not wait out its deadline).
fn an_oversized_frame_is_the_senders_error(via: Via) -> Result<(), Failed> {
    runtime().block_on(async {
        let mut s = Setup::new(via, HubConfig::default())?;
        let peer = s.start(&["oversized"]).await?[0].id;
        let max = Config::default().max_message_size;
        let too_big = vec![0; max];
        let sent = s.hub.send_bytes_to(peer, &too_big).await;
        ensure(
            matches!(sent, Err(SendToError::TooLarge { len, max: m }) if len == max + 9 && m == max),
            || format!("{sent:?}"),
        )?;
        let called = s.hub.call::<_, u64>(peer, &too_big, LONG).await;
        ensure(matches!(called, Err(CallError::TooLarge { .. })), || {
            format!("{called:?}")
        })?;
        let start = std::time::Instant::now();
        let answered = s.hub.call_bytes(peer, &(max as u64), LONG).await;
        ensure(
            matches!(&answered, Err(CallError::Failed(why)) if why.contains("larger than")),
            || format!("{answered:?}"),
        )?;
        ensure(start.elapsed() < LONG, || "the caller waited out its deadline".into())?;
        let (_, told) = next_message(&mut s).await?;
        let told: String = ipc_core::Codec::decode(&ipc_core::Postcard, &told)?;
        ensure(told.starts_with("refused: a frame of"), || told.clone())?;
        // The connection goes on.
        let fine = s.hub.call_bytes(peer, &1000u64, LONG).await?;
        ensure(fine.len() == 1000, || format!("{} bytes", fine.len()))?;
        Ok(())
    })
}

/// The next message an agent sent, skipping other events.
async fn next_message(s: &mut Setup) -> Result<(ipc_hub::PeerId, Vec<u8>), Failed> {
    loop {
        if let HubEvent::Message { peer, payload } = s.next().await? {
            return Ok((peer, payload.bytes().to_vec()));
        }
    }
}

/// The event stream, taken out of the hub, is read on a task of its own
/// (through `next` and as a `Stream`) while the hub calls its agent and
/// shuts down; the shutdown's events go to the stream.
fn events_read_on_a_task_of_their_own(via: Via) -> Result<(), Failed> {
    runtime().block_on(async {
        let mut s = Setup::new(via, HubConfig::default())?;
        let mut events = s.hub.take_events().ok_or("no event stream")?;
        ensure(s.hub.take_events().is_none(), || "taken twice".into())?;
        let (tx, mut seen) = tokio::sync::mpsc::unbounded_channel();
        let pump = tokio::spawn(async move {
            // The first through the `Stream`, the rest through `next`.
            let first = futures::StreamExt::next(&mut events).await;
            let _ = tx.send(first.map(|e| format!("{e:?}")));
            loop {
                let event = events.next().await;
                let left = matches!(event, HubEvent::Left { .. });
                let _ = tx.send(Some(format!("{event:?}")));
                if left {
                    return;
                }
            }
        });
        s.spawn("echo").await?;
        let joined = tokio::time::timeout(LONG, seen.recv())
            .await?
            .flatten()
            .unwrap_or_default();
        ensure(joined.starts_with("Joined"), || {
            format!("first event: {joined}")
        })?;
        let peer = s.hub.peers().first().cloned().ok_or("no peer")?;
        let answer: ToolResult = s.hub.call(peer.id, &call(3, 0), LONG).await?;
        ensure(answer.id == 3, || format!("{answer:?}"))?;
        let closed = s.hub.shutdown(LONG).await;
        ensure(closed.closed == 1 && closed.events.is_empty(), || {
            format!(
                "{} closed, {} events kept by the hub",
                closed.closed,
                closed.events.len()
            )
        })?;
        tokio::time::timeout(LONG, pump).await??;
        let mut rest = Vec::new();
        while let Ok(event) = seen.try_recv() {
            rest.extend(event);
        }
        ensure(rest.last().is_some_and(|e| e.starts_with("Left")), || {
            format!("{rest:?}")
        })
    })
}

/// Calls that the `barrier` agent answers only when all are under way.
const BARRIER: usize = 8;

/// Eight calls to one agent at once, each of which waits until all eight
/// are running: answered only if the agent serves calls side by side
/// (before: one at a time, so the first waited forever); then the hub's
/// goodbye ends the agent, seen although it serves.
fn concurrent_calls_to_one_agent(via: Via) -> Result<(), Failed> {
    runtime().block_on(async {
        let mut s = Setup::new(via, HubConfig::default())?;
        let peer = s.start(&["barrier"]).await?.remove(0);
        let requests: Vec<ToolCall> = (0..BARRIER as u64).map(|id| call(id, 0)).collect();
        let calls = requests.iter().map(|request| {
            s.hub
                .call::<_, ToolResult>(peer.id, request, Duration::from_secs(10))
        });
        let answers = futures::future::join_all(calls).await;
        for (id, answer) in answers.into_iter().enumerate() {
            let answer = answer.map_err(|e| format!("call {id}: {e}"))?;
            ensure(answer.id == id as u64, || format!("{answer:?}"))?;
        }
        let closed = s.hub.shutdown(LONG).await.closed;
        ensure(closed == 1, || format!("{closed} of 1 closed"))?;
        for mut child in s.children {
            let status = tokio::time::timeout(LONG, child.wait()).await??;
            ensure(status.success(), || {
                format!("the agent exited with {status}")
            })?;
        }
        Ok(())
    })
}

// ---- the agent side ----

/// Joins the hub the test started (by pipe, socket or shared memory, as
/// the environment says) as `role`, speaking `C`.
async fn join_as<C: ipc_hub::HubCodec>(role: &str) -> Result<Agent<C>, Box<dyn std::error::Error>> {
    let config = Config::default();
    let shm = std::env::var(SHM_ENV).ok();
    Ok(match std::env::var_os(SOCKET_ENV) {
        _ if shm.is_some() => {
            let name = shm.unwrap_or_default();
            let conn = ipc_shm::AsyncShm
                .connect(&Address::Shm(name), &config)
                .await?;
            Agent::join_with_codec(conn, role, HubConfig::default()).await?
        }
        Some(path) => {
            let conn = ipc_uds::AsyncUds
                .connect(&Address::Uds(path.into()), &config)
                .await?;
            Agent::join_with_codec(conn, role, HubConfig::default()).await?
        }
        None => {
            Agent::join_with_codec(
                ipc_pipe::connect_stdio_async(&config)?,
                role,
                HubConfig::default(),
            )
            .await?
        }
    })
}

/// An agent speaking `C` with the first version of the types: it says
/// who it is in a `NoteV1`, answers `AskV1` with `AnswerV1`, and echoes
/// string broadcasts.
async fn codec_agent<C: ipc_hub::HubCodec>(role: &str) -> Result<(), Box<dyn std::error::Error>> {
    let mut agent: Agent<C> = join_as(role).await?;
    agent.send(&NoteV1 { from: role.into() }).await?;
    while let Some(event) = agent.next().await {
        match event {
            AgentEvent::Call(request) => match request.decode::<AskV1>() {
                Ok(AskV1 { text }) => {
                    let answer = AnswerV1 {
                        upper: text.to_uppercase(),
                        codec: C::NAME.into(),
                    };
                    request.reply(&answer).await?;
                }
                Err(e) => request.fail(&e.to_string()).await?,
            },
            AgentEvent::Message(payload) => {
                let heard: String = payload.decode()?;
                agent.send(&format!("{role} heard {heard}")).await?;
            }
            _ => break,
        }
    }
    agent.close("done", LONG).await;
    Ok(())
}

/// An agent joined with a codec chosen at run time (JSON), whose
/// `AgentHandle` calls the hub (typed and raw) and ships a log record from
/// another task while the agent answers the hub's raw call, then reports.
async fn handle_agent(role: &str) -> Result<(), Box<dyn std::error::Error>> {
    let config = Config::default();
    let address = match (std::env::var(SHM_ENV), std::env::var_os(SOCKET_ENV)) {
        (Ok(name), _) => Address::Shm(name),
        (_, Some(path)) => Address::Uds(path.into()),
        _ => Address::Stdio,
    };
    let conn = ipc_any::connect_async(&address, &config).await?;
    let mut agent =
        Agent::join_speaking(conn, role, ipc_hub::BodyCodec::Json, HubConfig::default()).await?;
    let handle = agent.handle();
    let beside = tokio::spawn(async move {
        let typed: String = handle.call(&"from the handle".to_string(), LONG).await?;
        let raw = handle.call_raw(b"raw call", LONG).await?;
        let record = ipc_tracing::EventRecord {
            emitted_ns: ipc_tracing::monotonic_ns(),
            level: "INFO".into(),
            target: "handle".into(),
            message: "from the handle".into(),
            fields: Vec::new(),
            spans: Vec::new(),
            agent: "handle".into(),
            pid: std::process::id(),
            dropped: 0,
        };
        handle.try_log(&postcard::to_stdvec(&record)?)?;
        Ok::<_, Box<dyn std::error::Error + Send + Sync>>(format!(
            "{typed}|{}",
            String::from_utf8_lossy(&raw)
        ))
    });
    // Meanwhile this task takes the hub's raw call.
    if let Some(AgentEvent::Call(request)) = agent.next().await {
        let mut answer = request.bytes().to_vec();
        answer.reverse();
        request.reply_bytes(&answer).await?;
    }
    let report = beside.await?.map_err(|e| e.to_string())?;
    agent.send(&report).await?;
    while let Some(event) = agent.next().await {
        if !matches!(event, AgentEvent::Message(_)) {
            break;
        }
    }
    agent.close("done", LONG).await;
    Ok(())
}

fn agent_main(role: &str) -> Result<(), Box<dyn std::error::Error>> {
    runtime().block_on(async {
        match role {
            "handle" => return handle_agent(role).await,
            "codec-json" => return codec_agent::<ipc_core::Json>(role).await,
            "codec-msgpack" => return codec_agent::<ipc_core::MessagePack>(role).await,
            "codec-postcard" => return codec_agent::<ipc_core::Postcard>(role).await,
            "fickle" => return fickle_agent(role).await,
            "tally" => return tally_agent(role).await,
            _ => {}
        }
        let mut agent: Agent = join_as(role).await?;
        let mark = std::env::var_os(MARK_ENV).map(PathBuf::from);
        if role == "chatty" || role == "logger" {
            use tracing_subscriber::layer::SubscriberExt;
            let options = ipc_tracing::ShipperOptions::new(role)
                .with_capacity(64)
                .with_delivery(ipc_tracing::Delivery::Lossless { max_wait: LONG });
            let (layer, shipper) = ipc_tracing::AsyncShippingLayer::new(agent.log_sink(), options)?;
            let (events, in_span) = match role {
                "chatty" => (CHATTY_LOGS, false),
                _ => (LOG_EVENTS, true),
            };
            // Lossless logging may wait for the connection, which this
            // (single-threaded) runtime drives: log off its thread.
            tokio::task::spawn_blocking(move || {
                let subscriber = tracing_subscriber::registry().with(layer);
                tracing::subscriber::with_default(subscriber, || {
                    let span = tracing::info_span!("tool_call", tool = "search");
                    let _in = in_span.then(|| span.enter());
                    for seq in 0..events {
                        tracing::info!(seq, "step");
                    }
                });
            })
            .await?;
            shipper.shutdown(LONG).await;
            // The chatty agent answers one call after its logs.
            if role == "chatty"
                && let Some(AgentEvent::Call(request)) = agent.next().await
            {
                let ToolCall { id, .. } = request.decode()?;
                request
                    .reply(&ToolResult {
                        id,
                        by: role.into(),
                    })
                    .await?;
            }
            agent.close("done", LONG).await;
            return Ok(());
        }
        if role == "server" {
            let served = agent
                .serve(|ToolCall { id, .. }| async move {
                    Ok::<_, String>(ToolResult {
                        id,
                        by: "server".into(),
                    })
                })
                .await;
            return match served.answered {
                0 => Err("served no call".into()),
                _ => Ok(()),
            };
        }
        if role == "last-words" {
            // Logs only once told the hub is shutting down, then closes.
            use tracing_subscriber::layer::SubscriberExt;
            let options = ipc_tracing::ShipperOptions::new(role)
                .with_capacity(64)
                .with_delivery(ipc_tracing::Delivery::Lossless { max_wait: LONG });
            let (layer, shipper) = ipc_tracing::AsyncShippingLayer::new(agent.log_sink(), options)?;
            while let Some(event) = agent.next().await {
                if let AgentEvent::Shutdown(_) = event {
                    break;
                }
            }
            tokio::task::spawn_blocking(move || {
                let subscriber = tracing_subscriber::registry().with(layer);
                tracing::subscriber::with_default(subscriber, || {
                    for seq in 0..LAST_WORDS {
                        tracing::info!(seq, "last words");
                    }
                });
            })
            .await?;
            shipper.shutdown(LONG).await;
            agent.close("done", LONG).await;
            return Ok(());
        }
        if role == "typed" {
            let served = agent
                .serve_calls(|Double(n)| async move { Ok::<_, String>(n * 2) })
                .await;
            return match served.answered {
                0 => Err("served no call".into()),
                _ => Ok(()),
            };
        }
        if role == "oversized" {
            // Answers a call for `n` bytes with `n` bytes; says how a
            // reply that could not go failed.
            while let Some(event) = agent.next().await {
                match event {
                    AgentEvent::Call(request) => {
                        let n: u64 = request.decode()?;
                        if let Err(e) = request.reply_bytes(&vec![1; n as usize]).await {
                            agent.send(&format!("refused: {e}")).await?;
                        }
                    }
                    AgentEvent::Shutdown(_) => break,
                    _ => {}
                }
            }
            agent.close("done", LONG).await;
            return Ok(());
        }
        if role == "loaner" {
            // Answers a call for `n` bytes with a pattern written in place;
            // sends every message back, copied into memory it loaned.
            while let Some(event) = agent.next().await {
                match event {
                    AgentEvent::Call(request) => {
                        let n: u64 = request.decode()?;
                        let mut body = request.loan(n as usize)?;
                        pattern(&mut body);
                        request.reply_loan(body).await?;
                    }
                    AgentEvent::Message(payload) => {
                        let mut body = agent.loan(payload.bytes().len())?;
                        body.copy_from_slice(payload.bytes());
                        agent.send_loan(body).await?;
                    }
                    AgentEvent::Shutdown(_) => break,
                    _ => {}
                }
            }
            agent.close("done", LONG).await;
            return Ok(());
        }
        if role.starts_with("listener") {
            // Sends every message back as it came; answers calls with its name.
            while let Some(event) = agent.next().await {
                match event {
                    AgentEvent::Message(payload) => agent.send_bytes(payload.bytes()).await?,
                    AgentEvent::Call(request) => request.reply(&role.to_string()).await?,
                    AgentEvent::Shutdown(_) => break,
                    _ => {}
                }
            }
            agent.close("done", LONG).await;
            return Ok(());
        }
        if role == "barrier" {
            // Each call waits until BARRIER calls are under way at once:
            // answered only by an agent that serves them side by side.
            let barrier = std::sync::Arc::new(tokio::sync::Barrier::new(BARRIER));
            let served = agent
                .serve(|ToolCall { id, .. }| {
                    let barrier = barrier.clone();
                    async move {
                        barrier.wait().await;
                        Ok::<_, String>(ToolResult {
                            id,
                            by: "barrier".into(),
                        })
                    }
                })
                .await;
            return match served.answered {
                0 => Err("served no call".into()),
                _ => Ok(()),
            };
        }
        if role == "caller" {
            let got: u64 = agent.call(&41u64, LONG).await?;
            agent.send(&got).await?;
            agent.close("done", LONG).await;
            return Ok(());
        }
        while let Some(event) = agent.next().await {
            match event {
                AgentEvent::Call(request) => match role {
                    "crash" => std::process::exit(3),
                    // Answers nothing, keeps the connection.
                    "hang" => std::mem::forget(request),
                    // Stops the whole process: nothing reads any more.
                    "freeze" => std::thread::sleep(Duration::from_secs(3600)),
                    "garbage" => {
                        let ToolCall { id, .. } = request.decode()?;
                        if id == 1 {
                            request.reply(&[0xffu8; 3][..]).await?;
                        } // else dropped unanswered
                    }
                    _ => {
                        let ToolCall { id, delay_ms } = request.decode()?;
                        let by = role.to_string();
                        tokio::spawn(async move {
                            tokio::time::sleep(Duration::from_millis(delay_ms)).await;
                            let _ = request.reply(&ToolResult { id, by }).await;
                        });
                    }
                },
                AgentEvent::Shutdown(reason) => {
                    if let Some(mark) = &mark {
                        std::fs::write(mark, &reason)?;
                    }
                    break;
                }
                _ => {}
            }
        }
        agent.close("done", LONG).await;
        Ok(())
    })
}

fn main() {
    if let Ok(role) = std::env::var(ROLE_ENV) {
        if let Err(e) = agent_main(&role) {
            eprintln!("agent {role}: {e}");
            std::process::exit(1);
        }
        return;
    }
    let mut tests = Vec::new();
    for via in [Via::Pipe, Via::Uds, Via::Shm] {
        let name = |test: &str| format!("{test}::{}", format!("{via:?}").to_lowercase());
        tests.extend([
            Trial::test(name("answers_deaths_and_hangs_are_told_apart"), move || {
                answers_deaths_and_hangs_are_told_apart(via)
            }),
            Trial::test(name("replies_are_matched_out_of_order"), move || {
                replies_are_matched_out_of_order(via)
            }),
            Trial::test(name("a_hung_agent_never_stalls_the_others"), move || {
                a_hung_agent_never_stalls_the_others(via)
            }),
            Trial::test(
                name("agents_call_the_hub_and_bad_replies_are_errors"),
                move || agents_call_the_hub_and_bad_replies_are_errors(via),
            ),
            Trial::test(name("shutdown_tells_every_agent"), move || {
                shutdown_tells_every_agent(via)
            }),
            Trial::test(name("agent_logs_reach_the_hub"), move || {
                agent_logs_reach_the_hub(via)
            }),
            Trial::test(name("a_reply_never_waits_behind_unread_logs"), move || {
                a_reply_never_waits_behind_unread_logs(via)
            }),
            Trial::test(name("concurrent_calls_to_one_agent"), move || {
                concurrent_calls_to_one_agent(via)
            }),
            Trial::test(name("shutdown_delivers_last_words"), move || {
                shutdown_delivers_last_words(via)
            }),
            Trial::test(name("typed_calls_and_chosen_broadcasts"), move || {
                typed_calls_and_chosen_broadcasts(via)
            }),
            Trial::test(name("events_read_on_a_task_of_their_own"), move || {
                events_read_on_a_task_of_their_own(via)
            }),
            Trial::test(name("loans_both_ways"), move || loans_both_ways(via)),
            Trial::test(
                name("a_burst_to_a_slow_reader_arrives_whole_and_in_order"),
                move || a_burst_to_a_slow_reader_arrives_whole_and_in_order(via),
            ),
            Trial::test(name("next_can_be_dropped_at_any_time"), move || {
                next_can_be_dropped_at_any_time(via)
            }),
            Trial::test(name("codecs_per_peer"), move || codecs_per_peer(via)),
            Trial::test(name("a_handle_works_beside_the_events"), move || {
                a_handle_works_beside_the_events(via)
            }),
            Trial::test(
                name("a_welcomed_agent_always_gets_its_goodbye"),
                move || a_welcomed_agent_always_gets_its_goodbye(via),
            ),
            Trial::test(name("an_oversized_frame_is_the_senders_error"), move || {
                an_oversized_frame_is_the_senders_error(via)
            }),
        ]);
    }
    tests.push(Trial::test(
        "bad_handshakes_are_rejected::uds",
        bad_handshakes_are_rejected,
    ));
    libtest_mimic::run(&Arguments::from_args(), tests).exit();
}
