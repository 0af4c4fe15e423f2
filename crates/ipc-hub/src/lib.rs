#![doc = include_str!("../README.md")]
#![warn(missing_docs)]
#![forbid(unsafe_code)]

mod agent;
mod codec;
mod config;
mod error;
mod hub;
mod link;
mod message;
mod supervise;
mod wire;

use std::fmt;

pub use agent::{Agent, AgentEvent, AgentHandle, LogSink, SERVE_CONCURRENCY, Served};
pub use codec::{BodyCodec, HubCodec};
pub use config::{HubConfig, HubConfigError, MAX_BACKLOG, MAX_COUNT};
pub use error::{AdmitError, CallError, JoinError, LeaveReason, SendToError};
pub use hub::{
    Broadcast, Closed, Hub, HubEvent, HubEvents, HubHandle, LAST_WORDS, PeersMissing,
    SHUTDOWN_EVENTS,
};
pub use ipc_core::PeerCredentials;
pub use message::{LoanedBody, Payload, Request};
pub use supervise::{
    AgentNotice, AgentSpec, DEFAULT_BACKOFF, DEFAULT_MAX_RESTARTS, DEFAULT_RESTART_WINDOW,
    MAX_BACKOFF, NotUp, Restart, STOP_GRACE, SuperviseError,
};
pub use wire::{MAX_NAME_LEN, WireError};

/// A request type that names its answer type, so that
/// [`HubHandle::ask`] and [`AgentHandle::ask`] infer what comes back and
/// [`Agent::serve_calls`] checks the handler returns it. An agent that
/// takes several kinds of request takes an enum of them (answered by an
/// enum, or by one type all share).
///
/// ```
/// use serde::{Deserialize, Serialize};
/// #[derive(Serialize, Deserialize)]
/// struct WordCount(String);
/// impl ipc_hub::Call for WordCount {
///     type Answer = u64;
/// }
/// // let n = hub.ask(peer, &WordCount("a b c".into()), timeout).await?; // n: u64
/// ```
pub trait Call: serde::Serialize {
    /// What the peer answers.
    type Answer: serde::Serialize + serde::de::DeserializeOwned;
}

/// A peer's number at its hub, unique for the hub's lifetime (never
/// reused).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PeerId(pub(crate) u64);

impl PeerId {
    /// The number.
    pub fn get(self) -> u64 {
        self.0
    }
}

impl fmt::Display for PeerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "#{}", self.0)
    }
}

impl From<&PeerInfo> for PeerId {
    fn from(peer: &PeerInfo) -> PeerId {
        peer.id
    }
}

impl From<&PeerId> for PeerId {
    fn from(peer: &PeerId) -> PeerId {
        *peer
    }
}

/// Who a peer is: the name it gave and what the OS says about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerInfo {
    /// Its number at this hub.
    pub id: PeerId,
    /// The name it gave in its hello (checked: 1 to [`MAX_NAME_LEN`]
    /// bytes of utf-8 without control characters; not unique, not
    /// proof of anything).
    pub name: String,
    /// Its process, as the OS reports it (`SO_PEERCRED` for a socket, the
    /// child's pid for a spawned agent).
    pub credentials: PeerCredentials,
    /// The codec of its typed bodies, as it said in its hello (`None`: it
    /// named none, and speaks the hub's own).
    pub codec: Option<BodyCodec>,
}

impl fmt::Display for PeerInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {} ({})", self.id, self.name, self.credentials)
    }
}
