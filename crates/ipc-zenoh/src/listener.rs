//! The hub's side: one zenoh session listening on the named endpoints, a
//! queryable on `ipc/NAME/connect`, and a handshake per agent, each on
//! its own short-lived thread (at most [`MAX_HANDSHAKES`] at once, each
//! within [`HANDSHAKE_LIMIT`]), so a slow or lying agent delays nobody.
//! Finished connections wait in a bounded queue for `accept`.

use std::collections::HashSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ipc_core::{Address, Config, ConnectError, NetworkAccess};
use zenoh::Wait;
use zenoh::query::{Query, Queryable};

use crate::core::{Core, Keys, SessionGuard, connect_key, zenoh_error};
use crate::endpoints::{self, Role};
use crate::link::Link;
use crate::wire::{self, Terms};

/// Longest a handshake may take on the hub's side.
pub const HANDSHAKE_LIMIT: Duration = Duration::from_secs(5);

/// Handshakes run at once; more agents asking at the same moment are
/// refused ("busy") and may retry.
pub const MAX_HANDSHAKES: usize = 64;

/// Connections handshaken and not yet accepted.
const ACCEPT_QUEUE: usize = 16;

/// What the queryable's callback and the handshake threads share.
#[derive(Debug)]
struct Shared {
    session: Arc<SessionGuard>,
    name: String,
    own: Terms,
    config: Config,
    accepted: flume::Sender<Core>,
    /// Every agent proved it holds the key (zenoh refused any other).
    keyed: bool,
    running: AtomicUsize,
    /// Connection ids being handshaken or connected here: a second hello
    /// with one is refused (two connections must not share keys). An id
    /// leaves when its handshake fails or its connection drops, so the set
    /// is bounded by the live connections plus `MAX_HANDSHAKES`.
    ids: Mutex<HashSet<String>>,
}

/// A bound listener; the blocking and async listeners wrap it.
#[derive(Debug)]
pub struct ListenerCore {
    // Declared first, dropped first: no handshake starts after this.
    _queryable: Queryable<()>,
    pub accepted: flume::Receiver<Core>,
    pub address: Address,
    _shared: Arc<Shared>,
}

impl ListenerCore {
    /// Opens the hub's session (blocking; call outside any async runtime).
    pub fn bind(address: &Address, config: &Config) -> Result<Self, ConnectError> {
        let named = endpoints::parse(address)?;
        let name = named.name;
        let own = endpoints::terms(config)?;
        let endpoints = endpoints::resolve(
            Role::Listen,
            endpoints::choose(Role::Listen, named.endpoints)?,
        )?;
        let key = match (named.key, config.network_access) {
            (Some(key), _) => Some(key),
            (None, NetworkAccess::Open) => {
                tracing::warn!(
                    "ipc-zenoh: hub `{name}` admits anyone who reaches {} \
                     (NetworkAccess::Open)",
                    endpoints.join(",")
                );
                None
            }
            (None, _) => Some(endpoints::new_key()?),
        };
        let z = endpoints::session_config(Role::Listen, &endpoints, config, key.as_deref())?;
        // The dictionary is read while the session opens, then closed.
        let session = zenoh::open(z.zenoh).wait().map_err(|e| {
            let text = e.to_string();
            let at = endpoints.join(",");
            if text.contains("in use") {
                ConnectError::AddrInUse(at)
            } else {
                ConnectError::Io(zenoh_error(&format!("listening on {at}"), text))
            }
        })?;
        let session = Arc::new(SessionGuard::new(session));
        let (tx, rx) = flume::bounded(ACCEPT_QUEUE);
        let shared = Arc::new(Shared {
            session: session.clone(),
            name: name.clone(),
            own,
            config: config.clone(),
            accepted: tx,
            keyed: key.is_some(),
            running: AtomicUsize::new(0),
            ids: Mutex::new(HashSet::new()),
        });
        let on_query = {
            let shared = shared.clone();
            move |query: Query| start_handshake(&shared, query)
        };
        let queryable = session
            .session()
            .declare_queryable(connect_key(&name))
            .complete(true)
            .callback(on_query)
            .wait()
            .map_err(|e| ConnectError::Io(zenoh_error("queryable", e)))?;
        Ok(ListenerCore {
            _queryable: queryable,
            accepted: rx,
            address: Address::Zenoh {
                name,
                key,
                endpoints,
            },
            _shared: shared,
        })
    }
}

fn start_handshake(shared: &Arc<Shared>, query: Query) {
    if shared.running.fetch_add(1, Ordering::AcqRel) >= MAX_HANDSHAKES {
        shared.running.fetch_sub(1, Ordering::AcqRel);
        let _ = query.reply_err("busy: too many handshakes at once").wait();
        return;
    }
    let worker = shared.clone();
    let spawned = std::thread::Builder::new()
        .name("ipc-zenoh-handshake".into())
        .spawn(move || {
            if let Err(why) = handshake(&worker, &query) {
                tracing::debug!("ipc-zenoh: refused an agent: {why}");
                let _ = query.reply_err(why).wait();
            }
            worker.running.fetch_sub(1, Ordering::AcqRel);
        });
    if spawned.is_err() {
        shared.running.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Checks a hello, declares the hub's side, waits until the agent's token
/// and subscriber are known, answers, and queues the connection.
fn handshake(shared: &Arc<Shared>, query: &Query) -> Result<(), String> {
    let payload = query
        .payload()
        .map(|p| p.to_bytes().into_owned())
        .unwrap_or_default();
    let (peer, id) = wire::parse_hello(&payload)?;
    if !shared.ids().insert(id.clone()) {
        return Err(format!("connection id {id} is already in use"));
    }
    let result = admit(shared, query, peer, &id);
    if result.is_err() {
        shared.ids().remove(&id);
    }
    result
}

impl Shared {
    fn ids(&self) -> std::sync::MutexGuard<'_, HashSet<String>> {
        self.ids.lock().unwrap_or_else(|e| e.into_inner())
    }
}

fn admit(shared: &Arc<Shared>, query: &Query, peer: Terms, id: &str) -> Result<(), String> {
    let deadline = Instant::now() + HANDSHAKE_LIMIT;
    let link = Arc::new(Link::new(shared.own));
    link.set_peer(peer);
    let mut core = Core::declare(
        shared.session.clone(),
        Keys::hub(&shared.name, id),
        link.clone(),
        shared.config.clone(),
    )
    .map_err(|e| e.to_string())?;
    core.holds_key = shared.keyed;
    if !link.wait_peer_seen(Some(deadline)) {
        return Err("the agent's liveliness token never appeared".into());
    }
    while !core.peer_subscribed() {
        if Instant::now() >= deadline {
            return Err("the agent's subscriber never appeared".into());
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    query
        .reply(query.key_expr().clone(), wire::welcome(shared.own))
        .wait()
        .map_err(|e| format!("answering: {e}"))?;
    // The id is free again once the connection is gone.
    let (weak, id) = (Arc::downgrade(shared), id.to_owned());
    core.on_drop(move || {
        if let Some(shared) = weak.upgrade() {
            shared.ids().remove(&id);
        }
    });
    // Dropped here when the listener is gone or does not accept in time:
    // the agent then sees the connection close.
    let _ = shared.accepted.send_timeout(core, HANDSHAKE_LIMIT);
    Ok(())
}
