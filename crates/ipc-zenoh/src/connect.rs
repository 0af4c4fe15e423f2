//! The agent's side of the handshake: open a session to the hub's
//! endpoints, declare this connection's keys, ask the hub (a query on its
//! connect key) and wait until both directions are routed.

use std::sync::Arc;
use std::time::{Duration, Instant};

use ipc_core::{Address, Config, ConnectError};
use zenoh::Wait;

use crate::core::{Core, Keys, SessionGuard, connect_key, deadline, zenoh_error};
use crate::endpoints::{self, Role};
use crate::link::Link;
use crate::wire;

/// Connects to the hub at `address` (blocking; call outside any async
/// runtime).
pub fn connect(address: &Address, config: &Config) -> Result<Core, ConnectError> {
    let named = endpoints::parse(address)?;
    let name = named.name;
    let own = endpoints::terms(config)?;
    let endpoints = endpoints::resolve(
        Role::Connect,
        endpoints::choose(Role::Connect, named.endpoints)?,
    )?;
    let deadline = deadline(config.connect_timeout);
    let z = endpoints::session_config(Role::Connect, &endpoints, config, named.key.as_deref())?;
    let session = zenoh::open(z.zenoh).wait().map_err(|e| {
        let hint = if named.key.is_some() {
            "or the key in the address is not the hub's"
        } else {
            "or the hub wants a key: use the address it reports (zenoh:NAME:KEY@...)"
        };
        ConnectError::NotFound(format!(
            "no zenoh peer reachable at {} ({hint}): {e}",
            endpoints.join(",")
        ))
    })?;
    let session = Arc::new(SessionGuard::new(session));
    // One session per connection: its id is unique, and closing the
    // connection closes the session, which the hub sees at once.
    let id = session.session().zid().to_string();
    let link = Arc::new(Link::new(own));
    let core = Core::declare(
        session,
        Keys::agent(&name, &id),
        link.clone(),
        config.clone(),
    )?;

    let mut query = core
        .session()
        .get(connect_key(&name))
        .payload(wire::hello(own, &id));
    if let Some(left) = remaining(deadline) {
        query = query.timeout(left.max(Duration::from_millis(1)));
    }
    let replies = query
        .wait()
        .map_err(|e| ConnectError::Io(zenoh_error("connect query", e)))?;
    let reply = match deadline {
        Some(deadline) => replies.recv_deadline(deadline).ok().flatten(),
        None => replies.recv().ok(),
    };
    let Some(reply) = reply else {
        return Err(if deadline.is_some_and(|d| Instant::now() >= d) {
            ConnectError::Timeout
        } else {
            ConnectError::NotFound(format!(
                "no hub named `{name}` answered at {}",
                endpoints.join(",")
            ))
        });
    };
    let peer = match reply.result() {
        Ok(sample) => wire::parse_welcome(&sample.payload().to_bytes())
            .map_err(|e| ConnectError::Incompatible(format!("the hub's welcome: {e}")))?,
        Err(refusal) => {
            let why = refusal.payload().to_bytes();
            return Err(ConnectError::Incompatible(format!(
                "the hub refused: {}",
                String::from_utf8_lossy(&why)
            )));
        }
    };
    link.set_peer(peer);
    // The hub declared its token and subscriber before it answered; wait
    // until both are known here, so the first frame has a route.
    if !link.wait_peer_seen(deadline) {
        return Err(ConnectError::Timeout);
    }
    while !core.peer_subscribed() {
        if deadline.is_some_and(|d| Instant::now() >= d) {
            return Err(ConnectError::Timeout);
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    Ok(core)
}

fn remaining(deadline: Option<Instant>) -> Option<Duration> {
    deadline.map(|d| d.saturating_duration_since(Instant::now()))
}
