//! The transports under test, one enum over their connections (static
//! dispatch on the hot path), and spawning an agent connected by one.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use ipc_core::{ADDRESS_ENV, Address, ConnectError, FrameReceiver, Listener, RecvError};
use ipc_shm::ShmConnection;

use crate::error::{HarnessError, Result};
use crate::task::{AgentTask, TASK_ENV};
pub use crate::variant::{
    Large, Net, SCENARIO_TIMEOUT, Strategy, Transport, Variant, ZERO_COPY_RING,
};

/// A connection of any transport: `ipc-any`'s, which dispatches by enum
/// (static dispatch on the hot path).
pub type AnyConnection = ipc_any::Connection;

/// A listener of a transport with addresses (`ipc-any`'s).
pub type AnyListener = ipc_any::Listener;

/// What the scenarios ask of a connection beyond the contract.
pub trait ConnectionExt {
    /// Applies what `variant`'s config cannot say to this new connection:
    /// blobs off for the copying variant.
    fn tune(&mut self, variant: &Variant);
    /// The peer's process id, as the operating system reports it (none for
    /// pipes: the parent knows its child already).
    fn peer_pid(&self) -> Option<u32>;
    /// The shared-memory connection inside, for its zero-copy API.
    fn as_shm(&mut self) -> Option<&mut ShmConnection>;
}

impl ConnectionExt for AnyConnection {
    fn tune(&mut self, variant: &Variant) {
        if let (Large::Copy, Some(shm)) = (variant.large, self.as_shm()) {
            shm.set_blob_threshold(None);
        }
    }

    fn peer_pid(&self) -> Option<u32> {
        use ipc_core::stream::RawStream;
        match self {
            AnyConnection::Uds(c) => {
                ipc_core::PeerCredentials::of_unix_socket(c.get_ref().read_fd())
                    .ok()
                    .and_then(|p| p.pid)
            }
            AnyConnection::Shm(c) => c.peer_credentials().pid,
            // The agent's own report: it runs on this host here.
            AnyConnection::Zenoh(c) => Some(c.reported_pid()),
            _ => None,
        }
    }

    fn as_shm(&mut self) -> Option<&mut ShmConnection> {
        match self {
            AnyConnection::Shm(c) => Some(c),
            _ => None,
        }
    }
}

/// Binds a fresh, unique address for `variant` (uds, shm or zenoh).
pub fn bind_unique(variant: &Variant) -> Result<AnyListener> {
    let name = unique_name();
    let address = match variant.transport {
        Transport::Uds => Address::Uds(std::env::temp_dir().join(format!("{name}.sock"))),
        Transport::Shm => Address::Shm(name),
        Transport::Zenoh => {
            let host = match variant.net {
                Net::Loopback => "127.0.0.1".to_owned(),
                Net::Veth => veth::host_ip().ok_or_else(|| {
                    HarnessError::Invalid("no veth namespace for zenoh-veth".into())
                })?,
            };
            Address::Zenoh {
                name,
                key: None,
                endpoints: vec![format!("tcp/{host}:0")],
            }
        }
        Transport::Pipe => {
            return Err(HarnessError::Invalid(
                "pipes have no address to listen on".into(),
            ));
        }
    };
    bind(variant, &address)
}

/// Binds `address` (uds, shm or zenoh) with `variant`'s config.
pub fn bind(variant: &Variant, address: &Address) -> Result<AnyListener> {
    Ok(ipc_any::bind(address, &variant.config())?)
}

/// The connection to this agent's parent: at the address the parent
/// gave in the environment, else over stdin and stdout.
pub fn parent(variant: &Variant) -> Result<AnyConnection> {
    let address = Address::from_env().unwrap_or(Address::Stdio);
    Ok(connect(variant, &address)?)
}

/// Connects to `address` with `variant`'s config; pipes connect to the
/// parent over stdio.
pub fn connect(variant: &Variant, address: &Address) -> Result<AnyConnection, ConnectError> {
    let mut conn = ipc_any::connect(address, &variant.config())?;
    conn.tune(variant);
    Ok(conn)
}

/// Connects to `address`, retrying while nothing listens there yet (a
/// sibling agent that is still starting), for up to `patience`.
pub fn connect_retrying(
    variant: &Variant,
    address: &Address,
    patience: Duration,
) -> Result<AnyConnection> {
    let deadline = Instant::now() + patience;
    loop {
        match connect(variant, address) {
            Ok(conn) => return Ok(conn),
            Err(ConnectError::NotFound(_)) if Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(1));
            }
            Err(e) => return Err(e.into()),
        }
    }
}

/// The address an agent listens on under `name`, fixed before it binds
/// (so its peers can be told in advance): a socket file, a segment name,
/// or a zenoh hub on loopback at a port free now (see `fixed_port`).
pub fn address_for(transport: Transport, name: &str) -> Result<String> {
    Ok(match transport {
        Transport::Shm => format!("shm:{name}"),
        // The key too is fixed now: the listener binds with it.
        Transport::Zenoh => format!(
            "zenoh:{name}:{}@tcp/127.0.0.1:{}",
            ipc_zenoh::new_key()?,
            fixed_port()?
        ),
        _ => format!(
            "uds:{}",
            std::env::temp_dir().join(format!("{name}.sock")).display()
        ),
    })
}

/// A loopback TCP port free now and outside the kernel's ephemeral range,
/// for an address handed out before its agent binds it. A port the kernel
/// picked (`bind(0)`) is an ephemeral one, which any outgoing connection
/// (zenoh opens several) may take meanwhile: a pattern of eight zenoh
/// agents failed once that way ("address in use by a live endpoint").
fn fixed_port() -> Result<u16> {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let (low, high) = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|r| {
            let mut it = r.split_whitespace().map(|p| p.parse::<u16>().ok());
            Some((it.next()??, it.next()??))
        })
        .unwrap_or((32768, 60999));
    // Below the range (or above it, if it starts low), from a place this
    // process and call make unlikely to be another run's.
    let (first, last) = if low > 2048 {
        (1024u16, low - 1)
    } else {
        (high.saturating_add(1).max(1024), u16::MAX)
    };
    let span = usize::from(last - first) + 1;
    let start = std::process::id() as usize * 97 + NEXT.fetch_add(1, Ordering::Relaxed) * 7;
    (0..span.min(4096))
        .map(|i| first + ((start + i) % span) as u16)
        .find(|&port| std::net::TcpListener::bind(("127.0.0.1", port)).is_ok())
        .ok_or_else(|| {
            HarnessError::Invalid("no free loopback port outside the ephemeral range".into())
        })
}

/// The network namespace a run measures `zenoh-veth` through: made by
/// [`start`](veth::start) when the run begins (as root with iproute2),
/// removed by [`stop`](veth::stop) when it ends.
pub mod veth {
    use std::path::Path;
    use std::process::Command;
    use std::sync::Mutex;

    use ipc_zenoh::netns::{self, Namespace};

    static NAMESPACE: Mutex<Option<Namespace>> = Mutex::new(None);

    fn with<T>(f: impl FnOnce(&Namespace) -> T) -> Option<T> {
        NAMESPACE
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()
            .map(f)
    }

    /// Makes the namespace; `Err` says why it cannot be (not root, no
    /// `ip`, or `ip` failed).
    pub fn start() -> Result<(), String> {
        if let Some(why) = netns::unavailable() {
            return Err(why);
        }
        let ns = Namespace::create("b").map_err(|e| e.to_string())?;
        *NAMESPACE.lock().unwrap_or_else(|e| e.into_inner()) = Some(ns);
        Ok(())
    }

    /// Removes the namespace, if there is one.
    pub fn stop() {
        drop(NAMESPACE.lock().unwrap_or_else(|e| e.into_inner()).take());
    }

    /// Whether there is a namespace to measure through.
    pub fn ready() -> bool {
        with(|_| ()).is_some()
    }

    /// This side's address on the veth pair.
    pub fn host_ip() -> Option<String> {
        with(|ns| ns.host_ip().to_owned())
    }

    /// `program`, run inside the namespace.
    pub fn command(program: &Path) -> Option<Command> {
        with(|ns| ns.command(program))
    }
}

/// A name for a socket file or segment that no other run uses.
pub fn unique_name() -> String {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    format!(
        "ipc-h-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

/// A spawned agent process and the parent's connection to it. Dropping it
/// closes the connection, waits briefly for the agent to exit, kills it if
/// it does not, and reaps it.
#[derive(Debug)]
pub struct Agent {
    conn: Option<AnyConnection>,
    child: Child,
}

impl Agent {
    /// The connection to the agent.
    pub fn conn(&mut self) -> &mut AnyConnection {
        self.conn.as_mut().expect("present until drop")
    }

    /// Takes the connection out (to move it to another thread); the agent
    /// process stays owned by `self`.
    pub fn take_conn(&mut self) -> AnyConnection {
        self.conn.take().expect("present until taken")
    }

    /// The agent's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        drop(self.conn.take());
        let deadline = Instant::now() + Duration::from_secs(2);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The command that re-runs this binary as an agent doing `task` (inside
/// the veth namespace for a `zenoh-veth` task).
pub fn agent_command(task: &AgentTask) -> Result<Command> {
    agent_command_of(&std::env::current_exe()?, task)
}

/// Like [`agent_command`], running `program` (which plays `task`'s role:
/// this binary, or an idle agent, `idle_agent.rs`).
fn agent_command_of(program: &Path, task: &AgentTask) -> Result<Command> {
    let mut cmd = match task.variant.net {
        Net::Loopback => Command::new(program),
        Net::Veth => veth::command(program)
            .ok_or_else(|| HarnessError::Invalid("no veth namespace for zenoh-veth".into()))?,
    };
    cmd.env(
        TASK_ENV,
        serde_json::to_string(task).expect("tasks serialize"),
    )
    .stdin(Stdio::null())
    .stdout(Stdio::null());
    Ok(cmd)
}

/// Spawns an agent doing `task`, connected over `task.variant`.
pub fn spawn_agent(task: &AgentTask) -> Result<Agent> {
    let variant = task.variant;
    if variant.transport == Transport::Pipe {
        return spawn_pipe_agent(&std::env::current_exe()?, task);
    }
    let mut cmd = agent_command(task)?;
    let mut listener = bind_unique(&variant)?;
    cmd.env(ADDRESS_ENV, listener.address().to_string());
    let mut child = cmd.spawn()?;
    match listener.accept_timeout(Duration::from_secs(30)) {
        Ok(mut conn) => {
            conn.tune(&variant);
            Ok(Agent {
                conn: Some(conn),
                child,
            })
        }
        Err(e) => {
            let _ = child.kill();
            let status = child.wait()?;
            Err(HarnessError::Agent(format!(
                "agent did not connect ({e}); it exited with {status}"
            )))
        }
    }
}

/// Spawns `program` as an agent doing `task`, its standard input and
/// output the connection (pipes join only parent and child).
fn spawn_pipe_agent(program: &Path, task: &AgentTask) -> Result<Agent> {
    let mut cmd = agent_command_of(program, task)?;
    let (conn, child) = ipc_pipe::spawn(&mut cmd, &task.variant.config())?.into_parts();
    Ok(Agent {
        conn: Some(AnyConnection::Pipe(conn)),
        child,
    })
}

/// Spawns `count` agents doing `task`, all joining one listener (one
/// address for all, as a hub has); pipes give each its own pair.
pub fn spawn_agents(task: &AgentTask, count: usize) -> Result<Vec<Agent>> {
    spawn_agents_of(&std::env::current_exe()?, task, count)
}

/// Like [`spawn_agents`], running `program` as the agents.
pub fn spawn_agents_of(program: &Path, task: &AgentTask, count: usize) -> Result<Vec<Agent>> {
    let variant = task.variant;
    if variant.transport == Transport::Pipe {
        return (0..count)
            .map(|_| spawn_pipe_agent(program, task))
            .collect();
    }
    let mut listener = bind_unique(&variant)?;
    let mut children = Vec::with_capacity(count);
    for _ in 0..count {
        let mut cmd = agent_command_of(program, task)?;
        cmd.env(ADDRESS_ENV, listener.address().to_string());
        children.push(cmd.spawn()?);
    }
    let mut conns = Vec::with_capacity(count);
    for _ in 0..count {
        match listener.accept_timeout(Duration::from_secs(30)) {
            Ok(mut conn) => {
                conn.tune(&variant);
                conns.push(conn);
            }
            Err(e) => {
                for mut child in children {
                    let _ = child.kill();
                    let _ = child.wait();
                }
                return Err(HarnessError::Agent(format!(
                    "an agent did not connect ({e})"
                )));
            }
        }
    }
    // Each connection with its own child (by the pid the OS reports), so
    // that dropping an agent closes the connection its process waits on.
    let mut agents = Vec::with_capacity(count);
    for conn in conns {
        let at = conn
            .peer_pid()
            .and_then(|pid| children.iter().position(|c| c.id() == pid))
            .unwrap_or(0);
        agents.push(Agent {
            conn: Some(conn),
            child: children.swap_remove(at),
        });
    }
    Ok(agents)
}

/// Spawns an agent process with no connection to the parent (it finds its
/// peers by the addresses in its task).
pub fn spawn_detached(task: &AgentTask) -> Result<Child> {
    Ok(agent_command(task)?.spawn()?)
}

/// Waits for the parent to close the connection.
pub fn wait_for_parent_to_leave(conn: &mut AnyConnection) -> Result<()> {
    loop {
        match conn.recv_timeout(Duration::from_secs(3600)) {
            Err(RecvError::Disconnected) => return Ok(()),
            Err(RecvError::Timeout) | Ok(_) => {}
            Err(e) => return Err(e.into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Ports handed out in advance are free and never ephemeral ones, which
    /// outgoing connections could take before the agent binds them.
    #[test]
    fn fixed_ports_are_free_and_not_ephemeral() {
        let range = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
            .unwrap_or_else(|_| "32768 60999".into());
        let mut it = range.split_whitespace().map(|p| p.parse::<u16>().unwrap());
        let (low, high) = (it.next().unwrap(), it.next().unwrap());
        let mut seen = std::collections::HashSet::new();
        for _ in 0..20 {
            let port = fixed_port().unwrap();
            assert!(!(low..=high).contains(&port), "{port} is ephemeral");
            assert!(std::net::TcpListener::bind(("127.0.0.1", port)).is_ok());
            seen.insert(port);
        }
        assert!(seen.len() > 1, "every call gave the same port");
        let address = address_for(Transport::Zenoh, "x").unwrap();
        let port: u16 = address.rsplit(':').next().unwrap().parse().unwrap();
        assert!(!(low..=high).contains(&port), "{address}");
    }
}
