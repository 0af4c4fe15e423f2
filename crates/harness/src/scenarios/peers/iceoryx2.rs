//! iceoryx2 (crates.io), the crate people use instead of `shm`: round
//! trips between two processes, measured like a bare mechanism.
//!
//! Like with like: the same sizes, the payload filled before and verified
//! after the timed part, both sides spinning on the receive, the same
//! pinning, and the same per-message work as `shm`'s copying API (the
//! parent copies its message into a loaned sample, the echo copies the
//! received sample into a new one, the parent copies the echo out).
//! Built only with the harness feature `peers` (`cargo xtask bench`
//! builds the runner with it).

use serde::{Deserialize, Serialize};

use crate::error::Result;
use crate::stats::Recorder;

/// The agent's part: echo `size`-byte samples over iceoryx2 services
/// `SERVICE/ping` (in) and `SERVICE/pong` (out).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct EchoPart {
    /// Sample size.
    pub(crate) size: usize,
    /// The services' name prefix.
    pub(crate) service: String,
}

/// Round trips of `size`-byte samples over iceoryx2 publish-subscribe,
/// with the echo pinned to `cpu`: the recorder and the CPU both sides
/// used per round trip. Run it through
/// `baselines::back_to_back`
/// with [`Mechanism::Iceoryx2`](crate::schema::Mechanism::Iceoryx2).
pub(crate) fn round_trips(
    size: usize,
    cpu: Option<usize>,
    warmup: u64,
    samples: u64,
) -> Result<(Recorder, f64)> {
    imp::round_trips(size, cpu, warmup, samples)
}

/// The agent side of [`round_trips`].
pub(crate) fn echo(size: usize, service: &str) -> Result<()> {
    imp::echo(size, service)
}

#[cfg(not(feature = "peers"))]
mod imp {
    use crate::error::{HarnessError, Result};
    use crate::stats::Recorder;

    fn missing() -> HarnessError {
        HarnessError::Invalid("the runner was built without the `peers` feature".into())
    }

    pub(super) fn round_trips(
        _: usize,
        _: Option<usize>,
        _: u64,
        _: u64,
    ) -> Result<(Recorder, f64)> {
        Err(missing())
    }

    pub(super) fn echo(_: usize, _: &str) -> Result<()> {
        Err(missing())
    }
}

#[cfg(feature = "peers")]
mod imp {
    use std::sync::atomic::{AtomicU32, Ordering};
    use std::time::{Duration, Instant};

    use iceoryx2::port::publisher::Publisher;
    use iceoryx2::port::subscriber::Subscriber;
    use iceoryx2::prelude::*;
    use iceoryx2::service::port_factory::publish_subscribe::PortFactory;

    use crate::error::{HarnessError, Result};
    use crate::plan::Group;
    use crate::scenarios::echoing::{ABANDONED, Echoing, Reaped, record_round_trips, task};
    use crate::stats::Recorder;
    use crate::task::Role;
    use crate::transport::agent_command;

    type Pub = Publisher<ipc::Service, [u8], ()>;
    type Sub = Subscriber<ipc::Service, [u8], ()>;
    type Factory = PortFactory<ipc::Service, [u8], ()>;

    fn error(what: &str, e: impl std::fmt::Display) -> HarnessError {
        HarnessError::Agent(format!("iceoryx2 {what}: {e}"))
    }

    /// A node with a publisher on `NAME/out` and a subscriber on `NAME/in`.
    struct Ports {
        // Ports before their services, services before the node.
        publisher: Pub,
        subscriber: Sub,
        _services: (Factory, Factory),
        _node: Node<ipc::Service>,
    }

    impl Ports {
        fn open(prefix: &str, out: &str, inbound: &str, size: usize) -> Result<Ports> {
            set_log_level(LogLevel::Error);
            let node = NodeBuilder::new()
                .create::<ipc::Service>()
                .map_err(|e| error("node", e))?;
            let service = |end: &str| -> Result<Factory> {
                let name = format!("{prefix}/{end}");
                let name = ServiceName::new(&name).map_err(|e| error("service name", e))?;
                node.service_builder(&name)
                    .publish_subscribe::<[u8]>()
                    .open_or_create()
                    .map_err(|e| error("service", e))
            };
            let (outgoing, incoming) = (service(out)?, service(inbound)?);
            let publisher = outgoing
                .publisher_builder()
                .initial_max_slice_len(size.max(1))
                .create()
                .map_err(|e| error("publisher", e))?;
            let subscriber = incoming
                .subscriber_builder()
                .create()
                .map_err(|e| error("subscriber", e))?;
            Ok(Ports {
                publisher,
                subscriber,
                _services: (outgoing, incoming),
                _node: node,
            })
        }

        /// Copies `bytes` into a loaned sample and sends it.
        fn send(&self, bytes: &[u8]) -> Result<()> {
            let sample = self
                .publisher
                .loan_slice_uninit(bytes.len())
                .map_err(|e| error("loan", e))?;
            sample
                .write_from_slice(bytes)
                .send()
                .map_err(|e| error("send", e))?;
            Ok(())
        }
    }

    /// The parent of the round trips.
    struct Iceoryx2Echo {
        ports: Ports,
        out: Vec<u8>,
        back: Vec<u8>,
        // Declared last: the child is reaped after the ports are gone.
        child: Reaped,
    }

    impl Iceoryx2Echo {
        fn start(size: usize, cpu: Option<usize>) -> Result<Self> {
            static NEXT: AtomicU32 = AtomicU32::new(0);
            let n = NEXT.fetch_add(1, Ordering::Relaxed);
            let service = format!("ipc-bench/{}/{n}", std::process::id());
            let ports = Ports::open(&service, "ping", "pong", size)?;
            let part = super::EchoPart {
                size,
                service: service.clone(),
            };
            let role = Role::part(Group::Peers, &part)?;
            let child = Reaped(agent_command(&task(role, cpu))?.spawn()?);
            let echo = Iceoryx2Echo {
                ports,
                out: vec![0; size],
                back: vec![0; size],
                child,
            };
            echo.connect()?;
            Ok(echo)
        }

        /// Probes until the echo answers (a sample sent before its
        /// subscriber exists is lost), then drops late probe answers.
        fn connect(&self) -> Result<()> {
            let deadline = Instant::now() + ABANDONED;
            loop {
                self.ports.send(&[1])?;
                let wait = Instant::now() + Duration::from_millis(10);
                while Instant::now() < wait {
                    if self.receive()?.is_some() {
                        std::thread::sleep(Duration::from_millis(20));
                        while self.receive()?.is_some() {}
                        return Ok(());
                    }
                    std::thread::yield_now();
                }
                if Instant::now() > deadline {
                    return Err(HarnessError::Agent(
                        "the iceoryx2 echo never answered".into(),
                    ));
                }
            }
        }

        fn receive(&self) -> Result<Option<usize>> {
            match self.ports.subscriber.receive() {
                Ok(Some(sample)) => Ok(Some(sample.payload().len())),
                Ok(None) => Ok(None),
                Err(e) => Err(error("receive", e)),
            }
        }
    }

    impl Echoing for Iceoryx2Echo {
        fn round_trip(&mut self) -> Result<Duration> {
            let start = Instant::now();
            self.ports.send(&self.out)?;
            let mut spins = 0u32;
            loop {
                let received = self
                    .ports
                    .subscriber
                    .receive()
                    .map_err(|e| error("receive", e))?;
                if let Some(sample) = received {
                    let echo = sample.payload();
                    if echo.len() == self.back.len() {
                        self.back.copy_from_slice(echo);
                        return Ok(start.elapsed());
                    }
                    return Err(HarnessError::Agent(format!(
                        "an echo of {} bytes for {}",
                        echo.len(),
                        self.back.len()
                    )));
                }
                spins = spins.wrapping_add(1);
                if spins.is_multiple_of(4096) && start.elapsed() > ABANDONED {
                    return Err(HarnessError::Agent("the iceoryx2 echo stopped".into()));
                }
                std::hint::spin_loop();
            }
        }
        fn buffers(&mut self) -> (&mut [u8], &[u8]) {
            (&mut self.out, &self.back)
        }
        fn child_cpu_ns(&self) -> u64 {
            self.child.cpu_ns()
        }
    }

    impl Drop for Iceoryx2Echo {
        fn drop(&mut self) {
            // An empty sample stops the echo.
            let _ = self.ports.send(&[]);
        }
    }

    pub(super) fn round_trips(
        size: usize,
        cpu: Option<usize>,
        warmup: u64,
        samples: u64,
    ) -> Result<(Recorder, f64)> {
        let mut echo = Iceoryx2Echo::start(size, cpu)?;
        record_round_trips(&mut echo, warmup, samples, Duration::ZERO)
    }

    pub(super) fn echo(size: usize, service: &str) -> Result<()> {
        let ports = Ports::open(service, "pong", "ping", size)?;
        let parent = rustix::process::getppid();
        let mut copy = Vec::with_capacity(size);
        let mut spins = 0u32;
        loop {
            let received = ports
                .subscriber
                .receive()
                .map_err(|e| error("receive", e))?;
            match received {
                Some(sample) if sample.payload().is_empty() => return Ok(()),
                Some(sample) => {
                    // As shm's echo does: copy out, then copy into the reply.
                    copy.clear();
                    copy.extend_from_slice(sample.payload());
                    drop(sample);
                    ports.send(&copy)?;
                }
                None => {
                    spins = spins.wrapping_add(1);
                    if spins.is_multiple_of(1 << 16) && rustix::process::getppid() != parent {
                        return Ok(());
                    }
                    std::hint::spin_loop();
                }
            }
        }
    }
}
