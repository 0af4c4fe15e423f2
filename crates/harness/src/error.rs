//! The harness's error type.

/// Why a scenario could not produce its figures.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HarnessError {
    /// Setting up a connection or agent failed.
    #[error("connect: {0}")]
    Connect(#[from] ipc_core::ConnectError),
    /// A send failed mid-scenario.
    #[error("send: {0}")]
    Send(#[from] ipc_core::SendError),
    /// A receive failed mid-scenario.
    #[error("receive: {0}")]
    Recv(#[from] ipc_core::RecvError),
    /// A message arrived lost, duplicated, reordered or corrupted.
    #[error("integrity: {0}")]
    Integrity(#[from] ipc_core::payload::IntegrityError),
    /// An agent reported a failure or broke the protocol.
    #[error("agent: {0}")]
    Agent(String),
    /// An operating-system error.
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
    /// Bad input (plan, arguments).
    #[error("{0}")]
    Invalid(String),
}

impl From<rustix::io::Errno> for HarnessError {
    fn from(e: rustix::io::Errno) -> Self {
        HarnessError::Io(e.into())
    }
}

impl From<serde_json::Error> for HarnessError {
    fn from(e: serde_json::Error) -> Self {
        HarnessError::Agent(format!("bad message from agent: {e}"))
    }
}

/// The harness's result type.
pub type Result<T, E = HarnessError> = std::result::Result<T, E>;
