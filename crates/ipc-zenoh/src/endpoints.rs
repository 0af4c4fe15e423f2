//! From an [`Address`] and a [`Config`] to a zenoh session configuration:
//! which endpoints, which mode, what is switched off.

use std::io;
use std::net::TcpListener;
use std::str::FromStr;
use std::time::Duration;

use ipc_core::{Address, Config, ConfigError, ConnectError, DEFAULT_MAX_MESSAGE_SIZE};
use zenoh::config::EndPoint;

use crate::wire::{DATA_HEADER, Terms};

/// Endpoints to use when the address names none (comma-separated, as in
/// an address: `tcp/10.0.0.5:7447,tcp/[::1]:7447`).
pub const ENDPOINTS_ENV: &str = "IPC_ZENOH_ENDPOINTS";

/// A zenoh configuration file (JSON5) to start from, for TLS, user and
/// password authentication or access control. With it, only the mode and
/// the endpoints are set by this crate; without it, see
/// [`session_config`](crate) in the crate docs.
pub const CONFIG_ENV: &str = "IPC_ZENOH_CONFIG";

/// Where a listener listens when neither its address nor
/// [`ENDPOINTS_ENV`] names endpoints: loopback only, a free port.
pub const DEFAULT_LISTEN: &str = "tcp/127.0.0.1:0";

/// How much of a peer's data a connection buffers (frame costs: length
/// plus 64 bytes each) when [`Config::buffer_size`] is not set.
pub const DEFAULT_WINDOW: usize = 4 << 20;

/// The zenoh lease this crate sets (without [`CONFIG_ENV`]): a peer whose
/// host vanishes without closing its link is declared gone after at most
/// this long.
pub const LEASE: Duration = Duration::from_secs(3);

/// How long the hub's zenoh waits for a new TCP link to complete zenoh's
/// own handshake (without [`CONFIG_ENV`]): a silent connection holds a
/// slot this long.
pub const ACCEPT_TIMEOUT: Duration = Duration::from_secs(2);

/// Links the hub's zenoh handshakes at once (without [`CONFIG_ENV`]);
/// beyond it zenoh closes new links at once. Zenoh's default, 100, let one
/// process holding 1 000 silent connections keep every agent out; a
/// pending link costs a socket and a small task.
pub const ACCEPT_PENDING: usize = 8192;

/// Largest frame the transport carries: zenoh's own default limit for one
/// reassembled message (1 GiB), less the frame header.
pub const MAX_FRAME: usize = (1 << 30) - DATA_HEADER;

/// The link protocols this build has.
const PROTOCOLS: &[&str] = &[
    "tcp",
    #[cfg(feature = "tls")]
    "tls",
];

#[cfg(feature = "tls")]
const PROTOCOLS_BUILT: &str = "protocol not built in: this build has tcp and tls";
#[cfg(not(feature = "tls"))]
const PROTOCOLS_BUILT: &str =
    "protocol not built in: this build has tcp (tls needs ipc-zenoh's `tls` feature)";

/// Whether a session is a hub's (listens) or an agent's (connects).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Listen,
    Connect,
}

/// What an address names: the hub, its key, its endpoints.
pub struct Named {
    pub name: String,
    pub key: Option<String>,
    pub endpoints: Vec<String>,
}

/// The hub name, key and endpoints of an address.
pub fn parse(address: &Address) -> Result<Named, ConnectError> {
    match address {
        Address::Zenoh {
            name,
            key,
            endpoints,
        } => Ok(Named {
            name: name.clone(),
            key: key.clone(),
            endpoints: endpoints.clone(),
        }),
        other => Err(ConnectError::WrongTransport {
            address: other.to_string(),
            expected: "zenoh",
        }),
    }
}

/// The endpoints to use: the address's, else the environment's, else
/// (listening only) [`DEFAULT_LISTEN`].
pub fn choose(role: Role, from_address: Vec<String>) -> Result<Vec<String>, ConnectError> {
    if !from_address.is_empty() {
        return Ok(from_address);
    }
    if let Ok(list) = std::env::var(ENDPOINTS_ENV) {
        let parsed: Address = format!("zenoh:x@{list}")
            .parse()
            .map_err(|_| bad_endpoint(&list, "IPC_ZENOH_ENDPOINTS is malformed"))?;
        return parse(&parsed).map(|named| named.endpoints);
    }
    match role {
        Role::Listen => Ok(vec![DEFAULT_LISTEN.to_owned()]),
        Role::Connect => Err(ConnectError::NotFound(format!(
            "no zenoh endpoint to connect to: name one in the address (zenoh:NAME@tcp/HOST:PORT) \
             or in {ENDPOINTS_ENV}"
        ))),
    }
}

fn bad_endpoint(endpoint: &str, reason: &'static str) -> ConnectError {
    ConnectError::InvalidAddress(ipc_core::AddressError::Malformed {
        address: endpoint.to_owned(),
        reason,
    })
}

/// Checks each endpoint with zenoh's own parser and gives listening
/// endpoints on port 0 a free port now, so the listener's address names
/// the port agents must use.
pub fn resolve(role: Role, endpoints: Vec<String>) -> Result<Vec<String>, ConnectError> {
    endpoints
        .into_iter()
        .map(|e| {
            let parsed = EndPoint::from_str(&e).map_err(|_| {
                bad_endpoint(
                    &e,
                    "not a zenoh endpoint (PROTOCOL/HOST:PORT, as tcp/10.0.0.5:7447)",
                )
            })?;
            if !PROTOCOLS.contains(&parsed.protocol().as_str()) {
                return Err(bad_endpoint(&e, PROTOCOLS_BUILT));
            }
            match role {
                Role::Listen => pick_port(&e),
                Role::Connect => Ok(e),
            }
        })
        .collect()
}

/// `tcp/HOST:0` (or `tls/`) with a port the system has free now.
fn pick_port(endpoint: &str) -> Result<String, ConnectError> {
    let Some((proto, rest)) = endpoint.split_once('/') else {
        return Ok(endpoint.to_owned());
    };
    let (hostport, tail) = match rest.find(['?', '#']) {
        Some(at) => rest.split_at(at),
        None => (rest, ""),
    };
    let Some(host) = hostport.strip_suffix(":0") else {
        return Ok(endpoint.to_owned());
    };
    if !matches!(proto, "tcp" | "tls") {
        return Ok(endpoint.to_owned());
    }
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    let probe = TcpListener::bind((bare, 0)).map_err(|e| {
        ConnectError::Io(io::Error::new(
            e.kind(),
            format!("cannot listen on {endpoint}: {e}"),
        ))
    })?;
    let port = probe.local_addr()?.port();
    Ok(format!("{proto}/{host}:{port}{tail}"))
}

/// This side's terms from its configuration.
pub fn terms(config: &Config) -> Result<Terms, ConnectError> {
    config.validate()?;
    if config.max_message_size > MAX_FRAME {
        return Err(ConfigError::MaxMessageSizeTooLarge {
            size: config.max_message_size,
            limit: MAX_FRAME,
        }
        .into());
    }
    Ok(Terms {
        window: config.buffer_size.unwrap_or(DEFAULT_WINDOW) as u64,
        max_message_size: config.max_message_size as u64,
        pid: std::process::id(),
    })
}

/// The user name agents authenticate as; the hub's key is the password.
const KEY_USER: &str = "ipc-agent";

/// A fresh random key for a hub (128 bits from the operating system, in
/// hex), for an address fixed before its listener binds
/// (`zenoh:NAME:KEY@...`); a listener whose address names no key makes
/// its own.
pub fn new_key() -> Result<String, ConnectError> {
    let mut bytes = [0u8; 16];
    let mut filled = 0;
    while filled < bytes.len() {
        filled +=
            rustix::rand::getrandom(&mut bytes[filled..], rustix::rand::GetRandomFlags::empty())
                .map_err(|e| ConnectError::Io(e.into()))?;
    }
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

/// A session's configuration and what must stay open while it opens.
pub struct SessionConfig {
    pub zenoh: zenoh::Config,
    /// The hub's user/password dictionary (a memory file zenoh reads by
    /// its /proc path while the session opens; no file on disk).
    pub _dictionary: Option<std::os::fd::OwnedFd>,
}

/// The zenoh configuration of a session.
///
/// With a `key`: zenoh's user/password authentication, the hub checking
/// that the agent knows the key (a challenge with a nonce: the key never
/// crosses the link), the agent proving it.
///
/// Without [`CONFIG_ENV`]: zenoh's defaults, then mode `peer` (listening)
/// or `client` (connecting), exactly the given endpoints (nothing else
/// listened on or connected to), multicast scouting and gossip off, the
/// [`LEASE`], open and accept timeouts from `connect_timeout`, and a
/// reassembly limit that covers the largest frame the side accepts. With
/// it: that file, then the mode and endpoints.
pub fn session_config(
    role: Role,
    endpoints: &[String],
    config: &Config,
    key: Option<&str>,
) -> Result<SessionConfig, ConnectError> {
    let file = std::env::var_os(CONFIG_ENV);
    let mut z = match &file {
        Some(path) => zenoh::Config::from_file(path).map_err(|e| {
            ConnectError::Io(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{CONFIG_ENV}={}: {e}", path.to_string_lossy()),
            ))
        })?,
        None => zenoh::Config::default(),
    };
    let list = serde_list(endpoints);
    let (mode, listen, connect) = match role {
        Role::Listen => ("peer", list.as_str(), "[]"),
        Role::Connect => ("client", "[]", list.as_str()),
    };
    let mut set = vec![
        ("mode", format!("\"{mode}\"")),
        ("listen/endpoints", listen.to_owned()),
        ("connect/endpoints", connect.to_owned()),
    ];
    if file.is_none() {
        let open_ms = config
            .connect_timeout
            .map_or(u64::MAX / 2, |t| {
                t.as_millis().min(u64::MAX as u128 / 2) as u64
            })
            .max(1);
        // Reassembly limit: the largest frame this side takes, or the
        // default, whichever is larger (a peer may send more than we take:
        // that frame is refused as too large, not lost in zenoh).
        let rx_limit = config.max_message_size.max(DEFAULT_MAX_MESSAGE_SIZE) + DATA_HEADER + 1024;
        set.extend([
            ("scouting/multicast/enabled", "false".to_owned()),
            ("scouting/gossip/enabled", "false".to_owned()),
            ("transport/link/tx/lease", LEASE.as_millis().to_string()),
            ("transport/link/rx/max_message_size", rx_limit.to_string()),
            ("transport/unicast/open_timeout", open_ms.to_string()),
            (
                "transport/unicast/accept_timeout",
                ACCEPT_TIMEOUT.as_millis().to_string(),
            ),
            (
                "transport/unicast/accept_pending",
                ACCEPT_PENDING.to_string(),
            ),
            ("adminspace/enabled", "false".to_owned()),
        ]);
    }
    let mut dictionary = None;
    match (role, key) {
        (_, None) => {}
        (Role::Listen, Some(key)) => {
            let fd = rustix::fs::memfd_create("ipc-zenoh keys", rustix::fs::MemfdFlags::CLOEXEC)
                .map_err(|e| ConnectError::Io(e.into()))?;
            let line = format!("{KEY_USER}:{key}\n");
            rustix::io::write(&fd, line.as_bytes()).map_err(|e| ConnectError::Io(e.into()))?;
            let path = format!("/proc/self/fd/{}", std::os::fd::AsRawFd::as_raw_fd(&fd));
            set.push(("transport/auth/usrpwd/dictionary_file", format!("{path:?}")));
            dictionary = Some(fd);
        }
        (Role::Connect, Some(key)) => {
            set.push(("transport/auth/usrpwd/user", format!("{KEY_USER:?}")));
            set.push(("transport/auth/usrpwd/password", format!("{key:?}")));
        }
    }
    for (name, value) in set {
        z.insert_json5(name, &value).map_err(|e| {
            // The key is a secret: never in an error.
            let shown = if name.ends_with("password") {
                "***"
            } else {
                value.as_str()
            };
            ConnectError::Io(io::Error::other(format!(
                "zenoh configuration {name}={shown}: {e}"
            )))
        })?;
    }
    Ok(SessionConfig {
        zenoh: z,
        _dictionary: dictionary,
    })
}

fn serde_list(endpoints: &[String]) -> String {
    let quoted: Vec<String> = endpoints.iter().map(|e| format!("{e:?}")).collect();
    format!("[{}]", quoted.join(","))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn port_zero_gets_a_free_port_and_other_endpoints_stay() {
        let picked = pick_port("tcp/127.0.0.1:0").unwrap();
        let port: u16 = picked.rsplit(':').next().unwrap().parse().unwrap();
        assert_ne!(port, 0);
        assert_eq!(
            pick_port("tcp/127.0.0.1:7447").unwrap(),
            "tcp/127.0.0.1:7447"
        );
        let v6 = pick_port("tcp/[::1]:0");
        if let Ok(v6) = v6 {
            assert!(v6.starts_with("tcp/[::1]:") && !v6.ends_with(":0"), "{v6}");
        }
    }

    #[test]
    fn wrong_addresses_and_bad_endpoints_are_refused() {
        let shm: Address = "shm:x".parse().unwrap();
        assert!(matches!(
            parse(&shm),
            Err(ConnectError::WrongTransport { .. })
        ));
        let err = resolve(Role::Connect, vec!["nosuch/1.2.3.4:5".into()]);
        assert!(
            matches!(err, Err(ConnectError::InvalidAddress(_))),
            "{err:?}"
        );
    }

    #[test]
    fn defaults_listen_on_loopback_and_switch_discovery_off() {
        let z = session_config(
            Role::Listen,
            &["tcp/127.0.0.1:7447".into()],
            &Config::default(),
            Some("k3y"),
        )
        .unwrap();
        let dictionary = z
            .zenoh
            .get_json("transport/auth/usrpwd/dictionary_file")
            .unwrap();
        let path: String = dictionary.trim_matches('"').to_owned();
        assert_eq!(std::fs::read_to_string(path).unwrap(), "ipc-agent:k3y\n");
        let z = z.zenoh;
        assert_eq!(z.get_json("mode").unwrap(), "\"peer\"");
        assert_eq!(
            z.get_json("listen/endpoints").unwrap(),
            "[\"tcp/127.0.0.1:7447\"]"
        );
        assert_eq!(z.get_json("connect/endpoints").unwrap(), "[]");
        assert_eq!(z.get_json("scouting/multicast/enabled").unwrap(), "false");
        assert_eq!(z.get_json("scouting/gossip/enabled").unwrap(), "false");
        let agent = session_config(
            Role::Connect,
            &["tcp/127.0.0.1:7447".into()],
            &Config::default(),
            Some("k3y"),
        )
        .unwrap()
        .zenoh;
        assert_eq!(agent.get_json("mode").unwrap(), "\"client\"");
        assert_eq!(
            agent.get_json("transport/auth/usrpwd/password").unwrap(),
            "\"k3y\""
        );
        let open = session_config(Role::Connect, &[], &Config::default(), None).unwrap();
        assert_eq!(
            open.zenoh
                .get_json("transport/auth/usrpwd/password")
                .unwrap(),
            "null"
        );
    }
}
