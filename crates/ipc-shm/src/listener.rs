//! Creating a segment and waiting for its peer; opening one as the peer.

use std::time::{Duration, Instant};

use ipc_core::{Address, Config, ConfigError, ConnectError, Connector, Listener};
use rustix::thread::futex;

use crate::connection::ShmConnection;
use crate::segment::{MAX_RING, MIN_RING, Segment};
use crate::sync::Ordering;
use crate::wait::PARK_SLICE;

/// Ring size (each direction) when `Config::buffer_size` is not set.
/// See docs/ARCHITECTURE.md for the measurement behind it.
pub const DEFAULT_RING_SIZE: usize = 256 << 10;

/// The ring size a config asks for: `buffer_size` rounded up to a power of
/// two, or the default.
fn ring_size(config: &Config) -> Result<u64, ConnectError> {
    let asked = config.buffer_size.unwrap_or(DEFAULT_RING_SIZE) as u64;
    let size = asked.checked_next_power_of_two().unwrap_or(u64::MAX);
    if !(MIN_RING..=MAX_RING).contains(&size) {
        return Err(ConnectError::InvalidConfig(ConfigError::OutOfRange {
            field: "buffer_size",
            why: format!("{asked} is outside {MIN_RING}..={MAX_RING} bytes"),
        }));
    }
    Ok(size)
}

fn shm_name(address: &Address) -> Result<&str, ConnectError> {
    match address {
        Address::Shm(name) => Ok(name),
        other => Err(ConnectError::WrongTransport {
            address: other.to_string(),
            expected: "shm",
        }),
    }
}

/// Creates a segment and accepts the one peer that opens it.
///
/// A shared-memory connection is one-to-one: for several agents, bind one
/// name per agent. The segment is unlinked when the listener (before any
/// peer) or the accepted connection drops.
///
/// ```
/// use ipc_core::{Config, Connector, FrameReceiver, FrameSender, Listener};
/// use ipc_shm::{Shm, ShmListener};
///
/// let name = format!("doc-{}", std::process::id());
/// let mut listener = ShmListener::bind(&name, &Config::default())?;
/// // An agent does this in its own process, given listener.address():
/// let mut agent = Shm.connect(listener.address(), &Config::default())?;
/// let mut parent = listener.accept()?;
/// agent.send(b"hello")?;
/// assert_eq!(&parent.recv()?[..], b"hello");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug)]
pub struct ShmListener {
    segment: Option<Segment>,
    address: Address,
    config: Config,
}

impl ShmListener {
    /// Creates segment `name` (`/dev/shm/ipc-NAME`, owner-only). A segment
    /// left there by a dead process is reclaimed.
    ///
    /// Errors: [`ConnectError::AddrInUse`] (a live owner has it),
    /// [`ConnectError::InvalidAddress`] (a bad name),
    /// [`ConnectError::InvalidConfig`], [`ConnectError::PermissionDenied`].
    pub fn bind(name: &str, config: &Config) -> Result<Self, ConnectError> {
        let address: Address = format!("shm:{name}").parse()?;
        Self::bind_address(&address, config)
    }

    /// Creates the segment of a `shm:` address.
    pub fn bind_address(address: &Address, config: &Config) -> Result<Self, ConnectError> {
        config.validate().map_err(ConnectError::InvalidConfig)?;
        let name = shm_name(address)?;
        let segment = Segment::create(name, ring_size(config)?)?;
        Ok(ShmListener {
            segment: Some(segment),
            address: address.clone(),
            config: config.clone(),
        })
    }

    fn accept_until(&mut self, deadline: Option<Instant>) -> Result<ShmConnection, ConnectError> {
        let segment = self.segment.as_ref().ok_or_else(|| {
            ConnectError::AddrInUse(format!(
                "{} already has its peer (ipc-shm connections are one-to-one)",
                self.address
            ))
        })?;
        let attached = &segment.header().peer_attached;
        loop {
            match attached.load(Ordering::Acquire) {
                0 => {}
                1 => break,
                other => {
                    return Err(ConnectError::Corrupted(format!(
                        "{}: the peer's attach word holds {other}",
                        self.address
                    )));
                }
            }
            let mut slice = PARK_SLICE;
            if let Some(deadline) = deadline {
                let left = deadline.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    return Err(ConnectError::Timeout);
                }
                slice = slice.min(left);
            }
            let timeout = futex::Timespec::try_from(slice).unwrap_or(futex::Timespec {
                tv_sec: 0,
                tv_nsec: 0,
            });
            // The peer wakes this futex once attached; a slice bounds a
            // missed wake-up.
            let _ = futex::wait(attached, futex::Flags::empty(), 0, Some(&timeout));
            // A peer that claimed the slot and died before attaching must
            // not block the name for good: free the slot for the next one.
            segment.release_abandoned_claim();
        }
        let segment = self.segment.take().expect("checked above");
        ShmConnection::new(segment, self.config.clone())
    }
}

impl Listener for ShmListener {
    type Connection = ShmConnection;

    fn accept(&mut self) -> Result<ShmConnection, ConnectError> {
        self.accept_until(None)
    }

    fn accept_timeout(&mut self, timeout: Duration) -> Result<ShmConnection, ConnectError> {
        self.accept_until(Some(Instant::now() + timeout))
    }

    fn address(&self) -> &Address {
        &self.address
    }
}

/// The shared-memory transport, as a value for generic code:
/// `Shm.connect(&"shm:NAME".parse()?, &config)` opens a listener's segment.
#[derive(Debug, Clone, Copy, Default)]
pub struct Shm;

impl Connector for Shm {
    type Connection = ShmConnection;

    /// Opens the segment of a `shm:` address as its peer.
    ///
    /// Errors: [`ConnectError::NotFound`] (no such segment, or its owner is
    /// dead), [`ConnectError::AddrInUse`] (it already has a peer),
    /// [`ConnectError::Incompatible`] (not an ipc-shm segment, or another
    /// layout version), [`ConnectError::Corrupted`] (an inconsistent
    /// header), [`ConnectError::PermissionDenied`].
    fn connect(&self, address: &Address, config: &Config) -> Result<ShmConnection, ConnectError> {
        config.validate().map_err(ConnectError::InvalidConfig)?;
        let segment = Segment::open(shm_name(address)?, config.peer_owner)?;
        let _ = futex::wake(&segment.header().peer_attached, futex::Flags::empty(), 1);
        ShmConnection::new(segment, config.clone())
    }
}
