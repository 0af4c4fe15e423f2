//! Fault cases across real processes on loopback: an agent killed while
//! it streams, a hung (stopped) agent, clean closes both ways, garbage
//! injected into a connection by another zenoh session, refused
//! handshakes, and what a default hub exposes.
//!
//! `harness = false`: this binary re-runs itself as the agent, selected by
//! `AGENT_ENV`.

use std::collections::HashSet;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use ipc_core::payload::{fill, verify};
use ipc_core::{
    ADDRESS_ENV, Address, Config, ConnectError, Connector, FrameReceiver, FrameSender, Listener,
    RecvError, SendError,
};
use ipc_zenoh::{LEASE, Zenoh, ZenohConnection, ZenohListener};
use libtest_mimic::{Arguments, Failed, Trial};
use zenoh::Wait;

const AGENT_ENV: &str = "IPC_ZENOH_TEST_AGENT";
/// Generous bound for anything that must happen "soon" (not a speed test).
const SAFETY: Duration = Duration::from_secs(30);
const STREAM_FRAME: usize = 1 << 20;
const CLOSE_FRAMES: u64 = 2000;

fn config() -> Config {
    Config::default()
        .with_recv_timeout(Some(SAFETY))
        .with_send_timeout(Some(SAFETY))
}

fn ensure(ok: bool, what: impl FnOnce() -> String) -> Result<(), Failed> {
    if ok { Ok(()) } else { Err(what().into()) }
}

fn unique_address() -> Address {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    format!("zenoh:faults-{}-{n}@tcp/127.0.0.1:0", std::process::id())
        .parse()
        .expect("a valid address")
}

/// A child agent, killed and reaped when dropped.
struct Agent(Child);

impl Agent {
    fn start(role: &str, address: &Address) -> Agent {
        let child = Command::new(std::env::current_exe().expect("own path"))
            .env(AGENT_ENV, role)
            .env(ADDRESS_ENV, address.to_string())
            .stdin(Stdio::null())
            .spawn()
            .expect("spawn the agent");
        Agent(child)
    }

    fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .args([signal, &self.0.id().to_string()])
            .status()
            .expect("run kill");
        assert!(status.success());
    }

    fn wait(&mut self) -> Option<std::process::ExitStatus> {
        let until = Instant::now() + SAFETY;
        while Instant::now() < until {
            if let Some(status) = self.0.try_wait().expect("try_wait") {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        None
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn hub() -> Result<ZenohListener, Failed> {
    Ok(ZenohListener::bind(&unique_address(), &config())?)
}

fn accept(listener: &mut ZenohListener) -> Result<ZenohConnection, Failed> {
    Ok(listener.accept_timeout(SAFETY)?)
}

// ---- the cases ----

/// Killed while streaming 1 MiB frames: every frame received is whole and
/// right, then `Disconnected`, never a hang or a torn frame.
fn killed_mid_stream() -> Result<(), Failed> {
    let mut listener = hub()?;
    let agent = Agent::start("stream", listener.address());
    let mut conn = accept(&mut listener)?;
    let mut seq = 0;
    loop {
        if seq == 8 {
            agent.signal("-KILL");
        }
        match conn.recv() {
            Ok(frame) => {
                ensure(frame.len() == STREAM_FRAME, || {
                    format!("frame {seq} has {} bytes", frame.len())
                })?;
                verify(seq, &frame).map_err(|e| format!("frame {seq}: {e}"))?;
                seq += 1;
            }
            Err(RecvError::Disconnected) => break,
            Err(e) => return Err(format!("after {seq} frames: {e:?}").into()),
        }
    }
    ensure(seq >= 8, || format!("only {seq} frames before the end"))?;
    let sent = conn.send(b"anyone?");
    ensure(matches!(sent, Err(SendError::Disconnected)), || {
        format!("a send after the agent died gave {sent:?}")
    })
}

/// A stopped agent (its zenoh threads too) stops renewing its lease: the
/// hub's receive ends in `Disconnected` once the lease runs out, and its
/// sends, once the window is full, wait and time out instead of growing.
fn hung_agent_is_lost_after_the_lease() -> Result<(), Failed> {
    let mut listener = hub()?;
    let agent = Agent::start("idle", listener.address());
    let mut conn = accept(&mut listener)?;
    agent.signal("-STOP");
    let chunk = vec![7u8; 64 << 10];
    let mut timed_out = false;
    for _ in 0..10_000 {
        match conn.send_timeout(&chunk, Duration::from_millis(20)) {
            Ok(()) => {}
            Err(SendError::Timeout) => {
                timed_out = true;
                break;
            }
            // The lease may already have run out on a slow machine.
            Err(SendError::Disconnected) => break,
            Err(e) => return Err(format!("send to a stopped agent gave {e:?}").into()),
        }
    }
    let started = Instant::now();
    let got = conn.recv_timeout(SAFETY);
    ensure(matches!(got, Err(RecvError::Disconnected)), || {
        format!("a stopped agent gave {got:?} after {:?}", started.elapsed())
    })?;
    ensure(timed_out || started.elapsed() < SAFETY, || {
        "sends never filled the window".into()
    })?;
    agent.signal("-CONT");
    drop(agent);
    Ok(())
}

/// Frames sent just before a clean close all arrive, then `Disconnected`:
/// agent to hub, and hub to agent (the agent checks and exits 0).
fn clean_close_delivers_every_frame() -> Result<(), Failed> {
    let mut listener = hub()?;
    let mut agent = Agent::start("send-then-close", listener.address());
    let mut conn = accept(&mut listener)?;
    for seq in 0..CLOSE_FRAMES {
        let frame = conn.recv().map_err(|e| format!("frame {seq}: {e:?}"))?;
        verify(seq, &frame).map_err(|e| format!("frame {seq}: {e}"))?;
    }
    let end = conn.recv();
    ensure(matches!(end, Err(RecvError::Disconnected)), || {
        format!("after the agent's close: {end:?}")
    })?;
    ensure(agent.wait().is_some_and(|s| s.success()), || {
        "the sending agent failed".into()
    })?;

    let mut agent = Agent::start("receive-until-close", listener.address());
    let mut conn = accept(&mut listener)?;
    for seq in 0..CLOSE_FRAMES {
        conn.send(&frame_of(seq))?;
    }
    drop(conn);
    let status = agent.wait();
    ensure(status.is_some_and(|s| s.success()), || {
        format!("the receiving agent did not get every frame then the close: {status:?}")
    })
}

fn frame_of(seq: u64) -> Vec<u8> {
    let mut frame = vec![0; 16 + (seq as usize * 37) % 3000];
    fill(seq, &mut frame);
    frame
}

/// Another zenoh session on the hub's network publishes garbage on a
/// connection's key: the connection reports `Corrupted` with the reason,
/// after the frames that came before, and stays failed; the hub's other
/// connections go on.
fn garbage_in_a_sample_is_corrupted() -> Result<(), Failed> {
    for garbage in [
        Vec::new(),
        vec![42],
        vec![0, 1],
        vec![1, 0],
        b"\0\x05\0\0\0\0\0\0\0out of sequence".to_vec(),
    ] {
        let mut listener = hub()?;
        let _victim_agent = Agent::start("echo", listener.address());
        let mut victim = accept(&mut listener)?;
        let _other_agent = Agent::start("echo", listener.address());
        let mut other = accept(&mut listener)?;
        victim.send(b"before")?;
        ensure(&victim.recv()?[..] == b"before", || "echo".into())?;

        let Address::Zenoh {
            name,
            key,
            endpoints,
        } = listener.address().clone()
        else {
            unreachable!()
        };
        let session = raw_session(&endpoints, key.as_deref())?;
        // Only the victim's connection id is needed; a wildcard finds it.
        let ids = connection_ids(&session, &name)?;
        let victim_id = ids
            .iter()
            .next()
            .ok_or("no connection tokens visible")?
            .clone();
        // Inject into one connection (the other keeps its stream).
        session
            .put(format!("ipc/{name}/{victim_id}/up"), garbage.clone())
            .wait()
            .map_err(|e| e.to_string())?;
        let (hit, spared) = match victim.recv_timeout(Duration::from_secs(5)) {
            Err(RecvError::Corrupted(why)) => (why, &mut other),
            Err(RecvError::Timeout) => match other.recv_timeout(SAFETY) {
                Err(RecvError::Corrupted(why)) => (why, &mut victim),
                got => return Err(format!("garbage {garbage:?} gave {got:?}").into()),
            },
            got => return Err(format!("garbage {garbage:?} gave {got:?}").into()),
        };
        ensure(
            hit.contains("malformed") || hit.contains("were lost"),
            || format!("unclear reason: {hit}"),
        )?;
        spared.send(b"still here")?;
        ensure(&spared.recv()?[..] == b"still here", || {
            "the other connection was disturbed".into()
        })?;
        drop(session);
    }
    Ok(())
}

/// A zenoh session of our own at `endpoints`: with the hub's `key`, a
/// peer the hub admitted, free to misbehave.
fn raw_session(endpoints: &[String], key: Option<&str>) -> Result<zenoh::Session, Failed> {
    let mut z = zenoh::Config::default();
    let list = format!(
        "[{}]",
        endpoints
            .iter()
            .map(|e| format!("{e:?}"))
            .collect::<Vec<_>>()
            .join(",")
    );
    let mut set = vec![
        ("mode", "\"client\"".to_owned()),
        ("connect/endpoints", list),
        ("scouting/multicast/enabled", "false".to_owned()),
    ];
    if let Some(key) = key {
        set.push(("transport/auth/usrpwd/user", "\"ipc-agent\"".to_owned()));
        set.push(("transport/auth/usrpwd/password", format!("{key:?}")));
    }
    for (name, value) in set {
        z.insert_json5(name, &value).map_err(|e| e.to_string())?;
    }
    Ok(zenoh::open(z).wait().map_err(|e| e.to_string())?)
}

/// The connection ids whose agent tokens are alive under hub `name`.
fn connection_ids(session: &zenoh::Session, name: &str) -> Result<HashSet<String>, Failed> {
    let replies = session
        .liveliness()
        .get(format!("ipc/{name}/*/agent"))
        .timeout(Duration::from_secs(5))
        .wait()
        .map_err(|e| e.to_string())?;
    let mut ids = HashSet::new();
    while let Ok(reply) = replies.recv() {
        if let Ok(sample) = reply.result() {
            let key = sample.key_expr().as_str().to_owned();
            if let Some(id) = key.split('/').nth(2) {
                ids.insert(id.to_owned());
            }
        }
    }
    Ok(ids)
}

/// Hellos that are not ours, of another version or replaying a live
/// connection's id are refused with a reason; a good agent is accepted
/// right after; once that agent's connection is gone its id is free again
/// (the hub keeps no id of a closed connection: bounded memory).
fn bad_hellos_are_refused() -> Result<(), Failed> {
    let mut listener = hub()?;
    let Address::Zenoh {
        name,
        key,
        endpoints,
    } = listener.address().clone()
    else {
        unreachable!()
    };
    let session = raw_session(&endpoints, key.as_deref())?;
    let ask = |hello: Vec<u8>| -> Result<String, Failed> {
        let replies = session
            .get(format!("ipc/{name}/connect"))
            .payload(hello)
            .timeout(Duration::from_secs(10))
            .wait()
            .map_err(|e| e.to_string())?;
        let reply = replies.recv().map_err(|e| e.to_string())?;
        match reply.result() {
            Err(refusal) => Ok(String::from_utf8_lossy(&refusal.payload().to_bytes()).into_owned()),
            Ok(_) => Err("a bad hello was welcomed".into()),
        }
    };
    let mut wrong_version = b"IPCZ\x09".to_vec();
    wrong_version.extend_from_slice(&[1; 16]);
    for (hello, why) in [
        (b"GET / HTTP/1.1".to_vec(), "not an ipc-zenoh handshake"),
        (wrong_version, "protocol version"),
        (Vec::new(), "not an ipc-zenoh handshake"),
    ] {
        let refusal = ask(hello)?;
        ensure(refusal.contains(why), || format!("refusal: {refusal}"))?;
    }
    let mut agent = Agent::start("echo", listener.address());
    let mut conn = accept(&mut listener)?;
    conn.send(b"ok")?;
    ensure(&conn.recv()?[..] == b"ok", || "echo after refusals".into())?;

    // A hello (version 1, window, maximum, pid) replaying the live id.
    let id = connection_ids(&session, &name)?
        .into_iter()
        .next()
        .ok_or("the agent's token is not visible")?;
    let hello = |id: &str| {
        let mut h = b"IPCZ\x01".to_vec();
        h.extend_from_slice(&(1u64 << 20).to_le_bytes());
        h.extend_from_slice(&(1u64 << 20).to_le_bytes());
        h.extend_from_slice(&7u32.to_le_bytes());
        h.extend_from_slice(id.as_bytes());
        h
    };
    let refusal = ask(hello(&id))?;
    ensure(refusal.contains("already in use"), || {
        format!("a replayed live id: {refusal}")
    })?;
    drop(conn);
    ensure(agent.wait().is_some(), || "the agent did not leave".into())?;
    // Now the id is free: the hello gets as far as waiting for a token
    // that never comes (refused after the handshake limit).
    let refusal = ask(hello(&id))?;
    ensure(!refusal.contains("already in use"), || {
        format!("a closed connection's id is still held: {refusal}")
    })
}

/// Connecting where no hub listens, or to a hub of another name, fails
/// with `NotFound`, not a hang.
fn connect_errors_are_clear() -> Result<(), Failed> {
    let free = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let nowhere: Address = format!("zenoh:nobody@tcp/127.0.0.1:{free}").parse()?;
    let err = Zenoh.connect(&nowhere, &config()).err();
    ensure(matches!(err, Some(ConnectError::NotFound(_))), || {
        format!("connecting to a closed port gave {err:?}")
    })?;
    let listener = hub()?;
    let Address::Zenoh { endpoints, .. } = listener.address().clone() else {
        unreachable!()
    };
    let Address::Zenoh { key, .. } = listener.address().clone() else {
        unreachable!()
    };
    let other_name = Address::Zenoh {
        name: "someone-else".into(),
        key,
        endpoints,
    };
    let err = Zenoh
        .connect(
            &other_name,
            &config().with_connect_timeout(Some(Duration::from_secs(5))),
        )
        .err();
    ensure(
        matches!(err, Some(ConnectError::NotFound(_) | ConnectError::Timeout)),
        || format!("connecting to the wrong name gave {err:?}"),
    )?;
    let no_endpoint: Address = "zenoh:hub".parse()?;
    let err = Zenoh.connect(&no_endpoint, &config()).err();
    ensure(
        matches!(&err, Some(ConnectError::NotFound(m)) if m.contains("IPC_ZENOH_ENDPOINTS")),
        || format!("an address without endpoints gave {err:?}"),
    )
}

/// A hub with the default configuration listens on loopback only, on the
/// one TCP port its address names, and opens no UDP socket (no multicast
/// scouting): nothing beyond what its configuration names. Checked in a
/// child process of its own, so no other test's sockets are counted.
fn default_hub_exposes_only_loopback() -> Result<(), Failed> {
    let status = Command::new(std::env::current_exe()?)
        .env(AGENT_ENV, "exposure")
        .stdin(Stdio::null())
        .status()?;
    ensure(status.success(), || {
        format!("the exposure check failed: {status}")
    })
}

fn check_exposure() -> Result<(), Box<dyn std::error::Error>> {
    let before = own_sockets();
    let listener = ZenohListener::bind(&"zenoh:exposure".parse()?, &config())?;
    let Address::Zenoh { endpoints, .. } = listener.address().clone() else {
        unreachable!()
    };
    if endpoints.len() != 1 || !endpoints[0].starts_with("tcp/127.0.0.1:") {
        return Err(format!("default endpoints {endpoints:?}").into());
    }
    let port: u16 = endpoints[0].rsplit(':').next().unwrap_or("").parse()?;
    let new: Vec<_> = own_sockets()
        .into_iter()
        .filter(|s| !before.contains(s))
        .collect();
    let listening: Vec<_> = new.iter().filter(|s| s.listening).collect();
    if listening.len() != 1 || listening[0].local != format!("0100007F:{port:04X}") {
        return Err(format!("listening sockets {listening:?} (expected 127.0.0.1:{port})").into());
    }
    if !new.iter().all(|s| s.proto.starts_with("tcp")) {
        return Err(format!("non-TCP sockets opened: {new:?}").into());
    }
    Ok(())
}

#[derive(Debug, PartialEq)]
struct Socket {
    proto: &'static str,
    local: String,
    listening: bool,
}

/// This process's sockets, from /proc (inode of each fd matched with the
/// kernel's socket tables).
fn own_sockets() -> Vec<Socket> {
    let mut inodes = HashSet::new();
    for fd in std::fs::read_dir("/proc/self/fd")
        .into_iter()
        .flatten()
        .flatten()
    {
        if let Ok(target) = std::fs::read_link(fd.path()) {
            let t = target.to_string_lossy().into_owned();
            if let Some(inode) = t.strip_prefix("socket:[").and_then(|s| s.strip_suffix(']')) {
                inodes.insert(inode.to_owned());
            }
        }
    }
    let mut out = Vec::new();
    for proto in ["tcp", "tcp6", "udp", "udp6"] {
        let table = std::fs::read_to_string(format!("/proc/self/net/{proto}")).unwrap_or_default();
        for line in table.lines().skip(1) {
            let cols: Vec<&str> = line.split_whitespace().collect();
            if cols.len() > 9 && inodes.contains(cols[9]) {
                out.push(Socket {
                    proto,
                    local: cols[1].to_owned(),
                    listening: proto.starts_with("tcp") && cols[3] == "0A",
                });
            }
        }
    }
    out
}

// ---- the agent side ----

fn run_agent(role: &str) -> Result<(), Box<dyn std::error::Error>> {
    if role == "exposure" {
        return check_exposure();
    }
    let address = Address::from_env()?;
    let mut conn = Zenoh.connect(&address, &config())?;
    match role {
        "stream" => {
            let mut frame = vec![0; STREAM_FRAME];
            for seq in 0.. {
                fill(seq, &mut frame);
                conn.send(&frame)?;
            }
        }
        "idle" => std::thread::sleep(SAFETY * 2),
        "echo" => loop {
            match conn.recv_timeout(SAFETY * 2) {
                Ok(frame) => conn.send(&frame)?,
                Err(_) => return Ok(()),
            }
        },
        "send-then-close" => {
            for seq in 0..CLOSE_FRAMES {
                conn.send(&frame_of(seq))?;
            }
            drop(conn);
        }
        "receive-until-close" => {
            for seq in 0..CLOSE_FRAMES {
                let frame = conn.recv()?;
                verify(seq, &frame).map_err(|e| format!("frame {seq}: {e}"))?;
            }
            match conn.recv() {
                Err(RecvError::Disconnected) => {}
                other => return Err(format!("after the last frame: {other:?}").into()),
            }
        }
        other => return Err(format!("unknown role {other}").into()),
    }
    Ok(())
}

fn main() {
    if let Ok(role) = std::env::var(AGENT_ENV) {
        if let Err(e) = run_agent(&role) {
            eprintln!("agent {role}: {e}");
            std::process::exit(1);
        }
        return;
    }
    let _ = LEASE; // the bound the hung-agent case relies on
    let args = Arguments::from_args();
    let trials = vec![
        Trial::test("killed_mid_stream", killed_mid_stream),
        Trial::test(
            "hung_agent_is_lost_after_the_lease",
            hung_agent_is_lost_after_the_lease,
        ),
        Trial::test(
            "clean_close_delivers_every_frame",
            clean_close_delivers_every_frame,
        ),
        Trial::test(
            "garbage_in_a_sample_is_corrupted",
            garbage_in_a_sample_is_corrupted,
        ),
        Trial::test("bad_hellos_are_refused", bad_hellos_are_refused),
        Trial::test("connect_errors_are_clear", connect_errors_are_clear),
        Trial::test(
            "default_hub_exposes_only_loopback",
            default_hub_exposes_only_loopback,
        ),
    ];
    libtest_mimic::run(&args, trials).exit();
}
