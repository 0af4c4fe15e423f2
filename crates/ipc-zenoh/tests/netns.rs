//! Across a real network interface: the agent runs in a network namespace
//! of its own, joined to this one by a veth pair, so its traffic leaves
//! through an interface (not loopback). Needs root and iproute2 (`ip`);
//! without them every case is skipped and says why.
//!
//! The namespace and the veth pair are this test's own (named after its
//! pid) and removed when it ends, whatever happens.

use std::time::{Duration, Instant};

use ipc_core::payload::{fill, verify};
use ipc_core::{
    ADDRESS_ENV, Address, Config, ConnectError, Connector, FrameReceiver, FrameSender, Listener,
    RecvError,
};
use ipc_zenoh::{Zenoh, ZenohListener};

use ipc_zenoh::netns::{Namespace, unavailable as cannot_run};
use libtest_mimic::{Arguments, Failed, Trial};

const AGENT_ENV: &str = "IPC_ZENOH_NETNS_AGENT";
const SAFETY: Duration = Duration::from_secs(30);
const SIZES: [usize; 5] = [0, 64, 4096, 65_536, 1 << 20];

fn config() -> Config {
    Config::default()
        .with_recv_timeout(Some(SAFETY))
        .with_send_timeout(Some(SAFETY))
}

fn ensure(ok: bool, what: impl FnOnce() -> String) -> Result<(), Failed> {
    if ok { Ok(()) } else { Err(what().into()) }
}

/// This test binary, as an agent with `role`, inside the namespace.
fn agent(ns: &Namespace, role: &str, address: &Address) -> Result<Agent, Failed> {
    let child = ns
        .command(&std::env::current_exe()?)
        .env(AGENT_ENV, role)
        .env(ADDRESS_ENV, address.to_string())
        .spawn()?;
    Ok(Agent(child))
}

struct Agent(std::process::Child);

impl Agent {
    fn wait(&mut self) -> Option<std::process::ExitStatus> {
        let until = Instant::now() + SAFETY;
        while Instant::now() < until {
            if let Ok(Some(status)) = self.0.try_wait() {
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

// ---- the cases ----

/// The hub listens on its veth address; an agent in the namespace
/// connects through the veth pair and echoes frames of every size class.
fn echo_across_a_veth_pair() -> Result<(), Failed> {
    let ns = Namespace::create("e")?;
    let address: Address = format!("zenoh:netns@tcp/{}:0", ns.host_ip()).parse()?;
    let mut listener = ZenohListener::bind(&address, &config())?;
    let mut agent = agent(&ns, "echo", listener.address())?;
    let mut conn = listener.accept_timeout(SAFETY)?;
    for (seq, size) in SIZES.into_iter().enumerate() {
        let mut frame = vec![0; size.max(16)];
        fill(seq as u64, &mut frame);
        conn.send(&frame)?;
        let back = conn.recv()?;
        ensure(back.len() == frame.len(), || {
            format!("size {size}: {} back", back.len())
        })?;
        verify(seq as u64, &back).map_err(|e| format!("size {size}: {e}"))?;
    }
    drop(conn);
    ensure(agent.wait().is_some_and(|s| s.success()), || {
        "the agent did not end cleanly".into()
    })
}

/// A hub on its default (loopback) endpoint cannot be reached from the
/// namespace, neither at 127.0.0.1 (the namespace's own loopback) nor at
/// this side's veth address.
fn loopback_hub_is_unreachable_from_another_namespace() -> Result<(), Failed> {
    let ns = Namespace::create("u")?;
    let listener = ZenohListener::bind(&"zenoh:private".parse()?, &config())?;
    let Address::Zenoh {
        name,
        key,
        endpoints,
    } = listener.address().clone()
    else {
        unreachable!()
    };
    let port = endpoints[0].rsplit(':').next().unwrap_or("").to_owned();
    for host in ["127.0.0.1", ns.host_ip()] {
        let target = Address::Zenoh {
            name: name.clone(),
            key: key.clone(),
            endpoints: vec![format!("tcp/{host}:{port}")],
        };
        let mut agent = agent(&ns, "expect-unreachable", &target)?;
        let status = agent.wait();
        ensure(status.is_some_and(|s| s.success()), || {
            format!("an agent in the namespace reached the loopback hub at {host}:{port}")
        })?;
    }
    Ok(())
}

/// The agent's host vanishes (its veth is deleted, nothing is closed): the
/// hub's connection ends in `Disconnected` after the zenoh lease.
fn vanished_host_is_disconnected_after_the_lease() -> Result<(), Failed> {
    let ns = Namespace::create("v")?;
    let address: Address = format!("zenoh:vanish@tcp/{}:0", ns.host_ip()).parse()?;
    let mut listener = ZenohListener::bind(&address, &config())?;
    let _agent = agent(&ns, "echo", listener.address())?;
    let mut conn = listener.accept_timeout(SAFETY)?;
    conn.send(b"ping")?;
    ensure(&conn.recv()?[..] == b"ping", || {
        "echo before the cut".into()
    })?;
    ns.unplug()?;
    let started = Instant::now();
    let got = conn.recv_timeout(SAFETY);
    ensure(matches!(got, Err(RecvError::Disconnected)), || {
        format!("after the cut: {got:?} ({:?})", started.elapsed())
    })
}

// ---- the agent side ----

fn run_agent(role: &str) -> Result<(), Box<dyn std::error::Error>> {
    let address = Address::from_env()?;
    let short = config().with_connect_timeout(Some(Duration::from_secs(5)));
    match role {
        "echo" => {
            let mut conn = Zenoh.connect(&address, &config())?;
            loop {
                match conn.recv() {
                    Ok(frame) => conn.send(&frame)?,
                    Err(RecvError::Disconnected) => return Ok(()),
                    Err(e) => return Err(e.into()),
                }
            }
        }
        "expect-unreachable" => match Zenoh.connect(&address, &short) {
            Err(ConnectError::NotFound(_) | ConnectError::Timeout) => Ok(()),
            Err(e) => Err(format!("unexpected error: {e}").into()),
            Ok(_) => Err("connected".into()),
        },
        other => Err(format!("unknown role {other}").into()),
    }
}

fn main() {
    if let Ok(role) = std::env::var(AGENT_ENV) {
        if let Err(e) = run_agent(&role) {
            eprintln!("agent {role}: {e}");
            std::process::exit(1);
        }
        return;
    }
    let args = Arguments::from_args();
    let skip = cannot_run();
    if let Some(why) = &skip {
        eprintln!("ipc-zenoh netns tests skipped: {why}");
    }
    let trials = vec![
        Trial::test("echo_across_a_veth_pair", echo_across_a_veth_pair),
        Trial::test(
            "loopback_hub_is_unreachable_from_another_namespace",
            loopback_hub_is_unreachable_from_another_namespace,
        ),
        Trial::test(
            "vanished_host_is_disconnected_after_the_lease",
            vanished_host_is_disconnected_after_the_lease,
        ),
    ]
    .into_iter()
    .map(|t| t.with_ignored_flag(skip.is_some()))
    .collect();
    libtest_mimic::run(&args, trials).exit();
}
