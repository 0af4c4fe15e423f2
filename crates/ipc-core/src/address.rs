//! Endpoint addresses with a string form that a parent hands to a child.

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

/// The environment variable a parent sets to tell a spawned agent where to
/// connect ([`Address::from_env`]).
pub const ADDRESS_ENV: &str = "IPC_ADDRESS";

/// Where a transport endpoint lives.
///
/// The string form is `SCHEME:REST`:
///
/// | form | meaning |
/// |---|---|
/// | `pipe:stdio` | this process's stdin/stdout, connected to its parent |
/// | `uds:/run/agent.sock` | a Unix domain socket at that absolute or relative path |
/// | `shm:agent-7` | a shared-memory segment of that name |
/// | `zenoh:hub@tcp/10.0.0.5:7447` | a hub named `hub` on a zenoh network, reached at those endpoints |
/// | `zenoh:hub:KEY@tcp/10.0.0.5:7447` | the same hub, with the key that admits its agents |
///
/// A zenoh address names the hub (a key-expression chunk: letters, digits,
/// `-`, `_`, `.`), then optionally `:KEY`, the hub's key (letters, digits,
/// `-`, `_`; see `ipc-zenoh`: a listener makes one and reports it in its
/// address, which is what agents are given), and, after `@`, the zenoh
/// endpoints to listen on or connect to, separated by commas. Without
/// endpoints (`zenoh:hub`) the transport takes them from its environment.
/// An address with a key is a secret, as the key is.
///
/// ```
/// use ipc_core::Address;
/// let addr: Address = "uds:/tmp/agent.sock".parse()?;
/// assert_eq!(addr.to_string(), "uds:/tmp/agent.sock");
/// assert!("tcp:1.2.3.4".parse::<Address>().is_err());
/// # Ok::<(), ipc_core::AddressError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Address {
    /// The standard input and output of this process (`pipe:stdio`).
    Stdio,
    /// A Unix domain socket path (`uds:PATH`).
    Uds(PathBuf),
    /// The name of a shared-memory listener (`shm:NAME`); agents meet it
    /// at the socket `/dev/shm/ipc-NAME` and get their own memory there.
    Shm(String),
    /// A hub on a zenoh network (`zenoh:NAME` or `zenoh:NAME@ENDPOINT,...`).
    Zenoh {
        /// The hub's name: the key-expression chunk its connections live under.
        name: String,
        /// The key that admits agents to the hub (`None`: the address
        /// names none).
        key: Option<String>,
        /// Zenoh endpoints (`tcp/HOST:PORT`, `tls/HOST:PORT`, ...); empty
        /// when the address names none.
        endpoints: Vec<String>,
    },
}

/// Longest shared-memory name accepted: the listener's rendezvous socket,
/// `/dev/shm/ipc-NAME`, must fit in a socket address (107 bytes).
pub const MAX_SHM_NAME: usize = 90;

/// Longest zenoh hub name accepted.
pub const MAX_ZENOH_NAME: usize = 64;

/// Longest zenoh hub key accepted.
pub const MAX_ZENOH_KEY: usize = 128;

/// Why an address string does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AddressError {
    /// No `scheme:` prefix.
    #[error(
        "address `{0}` has no scheme; expected `pipe:stdio`, `uds:PATH`, `shm:NAME` or `zenoh:NAME@ENDPOINT`"
    )]
    MissingScheme(String),
    /// A scheme this crate does not know.
    #[error("address `{0}` has unknown scheme `{1}`; expected `pipe`, `uds`, `shm` or `zenoh`")]
    UnknownScheme(String, String),
    /// The part after the scheme is not valid for it.
    #[error("address `{address}` is malformed: {reason}")]
    Malformed {
        /// The whole address.
        address: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// [`ADDRESS_ENV`] is not set or not UTF-8.
    #[error("environment variable {ADDRESS_ENV} is not set (or not UTF-8)")]
    EnvMissing,
}

impl Address {
    /// Reads the address from the [`ADDRESS_ENV`] environment variable.
    pub fn from_env() -> Result<Self, AddressError> {
        std::env::var(ADDRESS_ENV)
            .map_err(|_| AddressError::EnvMissing)?
            .parse()
    }

    /// The scheme of this address: `pipe`, `uds`, `shm` or `zenoh`.
    pub fn scheme(&self) -> &'static str {
        match self {
            Address::Stdio => "pipe",
            Address::Uds(_) => "uds",
            Address::Shm(_) => "shm",
            Address::Zenoh { .. } => "zenoh",
        }
    }
}

impl FromStr for Address {
    type Err = AddressError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let malformed = |reason| AddressError::Malformed {
            address: s.to_owned(),
            reason,
        };
        let (scheme, rest) = s
            .split_once(':')
            .ok_or_else(|| AddressError::MissingScheme(s.to_owned()))?;
        match scheme {
            "pipe" if rest == "stdio" => Ok(Address::Stdio),
            "pipe" => Err(malformed("the only pipe address is `pipe:stdio`")),
            "uds" if rest.is_empty() => Err(malformed("empty socket path")),
            "uds" if rest.contains('\0') => Err(malformed("socket path contains a NUL byte")),
            "uds" => Ok(Address::Uds(PathBuf::from(rest))),
            "shm" if rest.is_empty() => Err(malformed("empty segment name")),
            "shm" if rest.len() > MAX_SHM_NAME => Err(malformed("segment name is too long")),
            "shm" if !rest.bytes().all(is_shm_name_byte) => Err(malformed(
                "segment name may hold only ASCII letters, digits, `-`, `_` and `.`",
            )),
            "shm" if rest.starts_with('.') => Err(malformed("segment name may not start with `.`")),
            "shm" => Ok(Address::Shm(rest.to_owned())),
            "zenoh" => parse_zenoh(rest).map_err(malformed),
            _ => Err(AddressError::UnknownScheme(s.to_owned(), scheme.to_owned())),
        }
    }
}

fn parse_zenoh(rest: &str) -> Result<Address, &'static str> {
    let (name, endpoints) = match rest.split_once('@') {
        Some((name, list)) => (name, Some(list)),
        None => (rest, None),
    };
    let (name, key) = match name.split_once(':') {
        Some((name, key)) => (name, Some(key)),
        None => (name, None),
    };
    if let Some(key) = key {
        if key.is_empty() {
            return Err("empty key after `:`");
        }
        if key.len() > MAX_ZENOH_KEY {
            return Err("key is too long");
        }
        if !key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_'))
        {
            return Err("key may hold only ASCII letters, digits, `-` and `_`");
        }
    }
    if name.is_empty() {
        return Err("empty hub name");
    }
    if name.len() > MAX_ZENOH_NAME {
        return Err("hub name is too long");
    }
    if !name.bytes().all(is_shm_name_byte) {
        return Err("hub name may hold only ASCII letters, digits, `-`, `_` and `.`");
    }
    let endpoints = match endpoints {
        None => Vec::new(),
        Some("") => return Err("empty endpoint list after `@`"),
        Some(list) => list
            .split(',')
            .map(|e| {
                let well_formed = e.split_once('/').is_some_and(|(proto, at)| {
                    !proto.is_empty()
                        && !at.is_empty()
                        && proto
                            .bytes()
                            .all(|b| b.is_ascii_alphanumeric() || b == b'-')
                });
                if !well_formed {
                    Err("an endpoint is not of the form `PROTOCOL/ADDRESS` (`tcp/10.0.0.5:7447`)")
                } else if !e.bytes().all(|b| b.is_ascii_graphic()) {
                    Err("an endpoint holds a space or a non-printable byte")
                } else {
                    Ok(e.to_owned())
                }
            })
            .collect::<Result<_, _>>()?,
    };
    Ok(Address::Zenoh {
        name: name.to_owned(),
        key: key.map(str::to_owned),
        endpoints,
    })
}

fn is_shm_name_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.')
}

impl fmt::Display for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Address::Stdio => f.write_str("pipe:stdio"),
            Address::Uds(path) => write!(f, "uds:{}", path.display()),
            Address::Shm(name) => write!(f, "shm:{name}"),
            Address::Zenoh {
                name,
                key,
                endpoints,
            } => {
                write!(f, "zenoh:{name}")?;
                if let Some(key) = key {
                    write!(f, ":{key}")?;
                }
                if !endpoints.is_empty() {
                    write!(f, "@{}", endpoints.join(","))?;
                }
                Ok(())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_every_scheme() {
        for s in [
            "pipe:stdio",
            "uds:/run/x.sock",
            "uds:rel/a b.sock",
            "shm:agent-7",
            "zenoh:hub",
            "zenoh:hub@tcp/127.0.0.1:7447",
            "zenoh:hub.v2@tcp/[::1]:7447,tls/example.org:7448",
            "zenoh:hub:3f9a-x_Z@tcp/127.0.0.1:7447",
            "zenoh:hub:k1",
        ] {
            let a: Address = s.parse().unwrap();
            assert_eq!(a.to_string(), s);
        }
    }

    #[test]
    fn rejects_malformed_addresses_with_a_reason() {
        let cases = [
            ("", "no scheme"),
            ("agent", "no scheme"),
            ("tcp:1.2.3.4:80", "unknown scheme"),
            ("pipe:", "pipe:stdio"),
            ("pipe:other", "pipe:stdio"),
            ("uds:", "empty socket path"),
            ("uds:/a\0b", "NUL"),
            ("shm:", "empty segment name"),
            ("shm:a/b", "only ASCII"),
            ("shm:..", "may not start"),
            ("zenoh:", "empty hub name"),
            ("zenoh:@tcp/1.2.3.4:5", "empty hub name"),
            ("zenoh:a/b", "only ASCII"),
            ("zenoh:hub@", "empty endpoint list"),
            ("zenoh:hub@tcp", "PROTOCOL/ADDRESS"),
            ("zenoh:hub@tcp/", "PROTOCOL/ADDRESS"),
            ("zenoh:hub@tcp/1.2.3.4:5,", "PROTOCOL/ADDRESS"),
            ("zenoh:hub@tcp/a b:5", "space"),
            ("zenoh:hub:@tcp/1.2.3.4:5", "empty key"),
            ("zenoh:hub:a.b@tcp/1.2.3.4:5", "key may hold"),
            ("zenoh::k@tcp/1.2.3.4:5", "empty hub name"),
        ];
        for (input, expected) in cases {
            let err = input.parse::<Address>().unwrap_err().to_string();
            assert!(err.contains(expected), "{input:?} gave {err:?}");
        }
        let long = format!("shm:{}", "a".repeat(MAX_SHM_NAME + 1));
        assert!(long.parse::<Address>().is_err());
    }
}
