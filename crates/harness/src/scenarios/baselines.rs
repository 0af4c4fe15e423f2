//! The bare mechanisms under the transports, measured interleaved with them
//! so every transport figure can be given as a ratio to the mechanism it
//! rides on, trial by trial.
//!
//! Like with like: each mechanism moves the same payload as the transport
//! compared with it, in the same regime, with the same per-message work.
//! The parent fills every payload (sequence number + pattern) before the
//! timed part and verifies the echo after it, as the transport round trips
//! do; the echoing child copies every byte out and back in, as an echo
//! agent's `recv` + `send` do.
//!
//! - `pipe`, `socketpair`: blocks echoed through a child's pipes / a
//!   socketpair.
//! - `shared-buffer`: a shared mapping with both sides spinning: copy in,
//!   publish a sequence word, copy out (round trips); or two slots
//!   streamed one way, every block verified by the child (bandwidth). The
//!   hardware limit of a copying shared-memory transport.
//! - `futex`: the shared buffer in the parked regime: the same pause
//!   between round trips as the transports, and each side spins briefly
//!   then sleeps on a futex, as the adaptive wait does. So the receiver
//!   pays one kernel wake-up per round trip, exactly like `shm` parked.
//! - `memcpy`: in-process copy between two cache-hot buffers, for
//!   reference only (no hand-over between cores).

use std::io::{Read, Write};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::process::Stdio;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering, fence};
use std::time::{Duration, Instant};

use ipc_core::payload;
use ipc_sys::memory::{Mapping, Populate};
use rustix::thread::futex;

use serde::{Deserialize, Serialize};

use crate::block::{Block, Cell, cell};
use crate::error::{HarnessError, Result};
use crate::figure::{Better, FigureId, Statistic, Subject, Unit};
use crate::gather::Gather;
use crate::plan::{Group, Plan};
pub use crate::scenarios::echoing::Echoing;
use crate::scenarios::echoing::{ABANDONED, Reaped, placed, record_round_trips, task};
use crate::scenarios::{Scenario, part};
use crate::schema::{BaselineBandwidth, BaselineLatency, Mechanism, Regime, RunResults};
use crate::task::{AgentTask, Role};
use crate::transport::agent_command;
use crate::variant::Variant;

/// The baselines group: the bare mechanisms alone (with latency or
/// throughput in the run, their cells are built here but measured in
/// those groups' blocks, beside the transports), and in-process memcpy.
pub(crate) struct Baselines;

impl Scenario for Baselines {
    fn group(&self) -> Group {
        Group::Baselines
    }

    fn blocks(&self, p: &Plan) -> Vec<Block> {
        let group = Group::Baselines;
        let mut blocks = Vec::new();
        if !p.groups.contains(&Group::Latency) {
            for &size in &p.sizes {
                let cells = p
                    .transports
                    .iter()
                    .map(|&t| mechanism_cell(p, Variant::of(t).mechanism(Regime::BackToBack), size))
                    .collect();
                blocks.push(Block { group, cells });
            }
            let cells = vec![parked_mechanism_cell(p, p.sizes[0])];
            blocks.push(Block { group, cells });
        }
        if !p.groups.contains(&Group::Throughput) {
            let cells = p
                .sizes
                .iter()
                .filter(|&&s| s >= BULK_SIZE)
                .map(|&s| copy_stream_cell(p, s))
                .collect();
            blocks.push(Block { group, cells });
        }
        let budget = p.throughput_bytes;
        let memcpy = cell("memcpy bandwidth".into(), 0.5, move |r, trial| {
            for size in [64, 4096, 64 << 10, 1 << 20, 64 << 20] {
                r.baselines.bandwidth.push(memcpy(size, budget, trial));
            }
            Ok(())
        });
        blocks.push(Block {
            group,
            cells: vec![memcpy],
        });
        blocks
    }

    fn figures(&self, r: &RunResults, g: &mut Gather) {
        for b in &r.baselines.latency {
            let base = FigureId {
                group: Group::Baselines,
                subject: Subject::Mechanism(b.mechanism),
                regime: b.regime,
                size: Some(b.size),
                agents: None,
                statistic: Statistic::P50,
            };
            g.round_trips(base, b.trial, &b.stats, b.cpu_ns_per_op);
        }
        for b in &r.baselines.bandwidth {
            let fid = FigureId {
                group: Group::Baselines,
                subject: Subject::Mechanism(b.mechanism),
                regime: Regime::OneWay,
                size: Some(b.size),
                agents: None,
                statistic: Statistic::Bandwidth,
            };
            g.put(fid, Unit::BytesPerS, Better::Higher, b.trial, b.bytes_per_s);
        }
    }

    fn agent(&self, task: serde_json::Value, _: &AgentTask) -> Result<()> {
        match part(task)? {
            Part::RawPipeEcho { size } => raw_pipe_echo(size),
            Part::RawSocketEcho { size } => raw_socket_echo(size),
            Part::SharedEcho { size, hand } => shared_echo(size, hand),
            Part::SharedSink { size } => shared_sink(size),
        }
    }
}

/// The agent parts of the baselines: echoes and sinks with no library.
#[derive(Debug, Clone, Serialize, Deserialize)]
enum Part {
    /// Echo `size`-byte blocks on stdin/stdout.
    RawPipeEcho {
        /// Block size.
        size: usize,
    },
    /// Echo `size`-byte blocks on the socket at fd 0.
    RawSocketEcho {
        /// Block size.
        size: usize,
    },
    /// Echo `size`-byte blocks through a shared buffer (memfd at fd 0).
    SharedEcho {
        /// Block size.
        size: usize,
        /// How each side waits.
        hand: Hand,
    },
    /// Receive and verify `size`-byte blocks streamed through two shared
    /// slots (memfd at fd 0).
    SharedSink {
        /// Block size.
        size: usize,
    },
}

/// The task of a baseline's agent playing `part`, pinned to `cpu`.
fn part_task(part: Part, cpu: Option<usize>) -> Result<AgentTask> {
    Ok(task(Role::part(Group::Baselines, &part)?, cpu))
}

/// How a side of the shared buffer waits for the other's store.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Hand {
    /// Spin on the word.
    Spin,
    /// Spin for 50 µs (the adaptive wait's spin phase), then sleep on a
    /// futex (announced in a waiting word so the other side wakes it only
    /// when needed).
    Adaptive,
}

/// Smallest message size compared with a copy baseline for bandwidth:
/// below it, per-message costs, not copying, decide throughput.
pub const BULK_SIZE: usize = 64 << 10;

/// The cell of `mechanism`'s round trips at `size`, back to back.
pub(crate) fn mechanism_cell(plan: &Plan, mechanism: Mechanism, size: usize) -> Cell {
    let (w, n, pin) = (plan.latency_warmup, plan.latency_samples_at(size), plan.pin);
    cell(
        format!("{} round trip {size} B", mechanism.name()),
        1.0,
        move |r, trial| {
            r.baselines
                .latency
                .push(back_to_back(mechanism, size, w, n, pin, trial)?);
            Ok(())
        },
    )
}

/// The cell of the parked regime's mechanism (the futex) at `size`.
pub(crate) fn parked_mechanism_cell(plan: &Plan, size: usize) -> Cell {
    let (w, n, pin) = (plan.latency_warmup / 10, plan.parked_samples, plan.pin);
    let gap = Duration::from_micros(plan.parked_gap_us);
    cell(
        format!("futex round trip {size} B parked"),
        1.0,
        move |r, trial| {
            r.baselines
                .latency
                .push(parked(size, gap, w, n, pin, trial)?);
            Ok(())
        },
    )
}

/// The cell of the cross-process copy stream at `size`.
pub(crate) fn copy_stream_cell(plan: &Plan, size: usize) -> Cell {
    let (blocks, pin) = (plan.throughput_messages(size), plan.pin);
    cell(
        format!("shared-buffer copy stream {size} B x {blocks}"),
        1.0,
        move |r, trial| {
            r.baselines
                .bandwidth
                .push(copy_stream(size, blocks, pin, trial)?);
            Ok(())
        },
    )
}

/// How long a [`Hand::Adaptive`] side spins before it sleeps: the
/// adaptive wait's spin phase (`ipc_shm`'s `ADAPTIVE_SPIN`).
const ADAPTIVE_SPIN: Duration = Duration::from_micros(50);

/// A child echoing `size`-byte blocks on its stdin/stdout: the bare pipe.
pub struct RawPipe {
    to: std::process::ChildStdin,
    from: std::process::ChildStdout,
    out: Vec<u8>,
    back: Vec<u8>,
    child: Reaped,
}

impl std::fmt::Debug for RawPipe {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RawPipe")
            .field("size", &self.out.len())
            .finish()
    }
}

impl RawPipe {
    /// Spawns the echoing child (pinned to `cpu`, if given).
    pub fn start(size: usize, cpu: Option<usize>) -> Result<Self> {
        let mut cmd = agent_command(&part_task(Part::RawPipeEcho { size }, cpu)?)?;
        let mut child = Reaped(cmd.stdin(Stdio::piped()).stdout(Stdio::piped()).spawn()?);
        let to = child
            .0
            .stdin
            .take()
            .ok_or_else(|| HarnessError::Agent("no stdin".into()))?;
        let from = child
            .0
            .stdout
            .take()
            .ok_or_else(|| HarnessError::Agent("no stdout".into()))?;
        Ok(RawPipe {
            to,
            from,
            out: vec![0u8; size],
            back: vec![0u8; size],
            child,
        })
    }
}

impl Echoing for RawPipe {
    fn round_trip(&mut self) -> Result<Duration> {
        let start = Instant::now();
        self.to.write_all(&self.out)?;
        self.from.read_exact(&mut self.back)?;
        Ok(start.elapsed())
    }
    fn buffers(&mut self) -> (&mut [u8], &[u8]) {
        (&mut self.out, &self.back)
    }
    fn child_cpu_ns(&self) -> u64 {
        self.child.cpu_ns()
    }
}

/// The agent side of the pipe baseline.
fn raw_pipe_echo(size: usize) -> Result<()> {
    let mut buf = vec![0u8; size];
    let (mut input, mut output) = (std::io::stdin().lock(), std::io::stdout().lock());
    while input.read_exact(&mut buf).is_ok() {
        output.write_all(&buf)?;
        output.flush()?;
    }
    Ok(())
}

/// Which bare socket a [`RawSocket`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SocketKind {
    /// A socketpair.
    Unix,
    /// A TCP connection over 127.0.0.1, `TCP_NODELAY` on both ends.
    TcpLoopback,
}

/// A child echoing `size`-byte blocks over a bare socket.
#[derive(Debug)]
pub struct RawSocket {
    ours: std::fs::File,
    out: Vec<u8>,
    back: Vec<u8>,
    child: Reaped,
}

impl RawSocket {
    /// Spawns the echoing child with the other end as its stdin (pinned
    /// to `cpu`, if given).
    pub fn start(size: usize, cpu: Option<usize>, kind: SocketKind) -> Result<Self> {
        let (ours, theirs): (OwnedFd, OwnedFd) = match kind {
            SocketKind::Unix => {
                let (a, b) = UnixStream::pair()?;
                (a.into(), b.into())
            }
            SocketKind::TcpLoopback => {
                let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
                let a = std::net::TcpStream::connect(listener.local_addr()?)?;
                let (b, _) = listener.accept()?;
                a.set_nodelay(true)?;
                b.set_nodelay(true)?;
                (a.into(), b.into())
            }
        };
        let mut cmd = agent_command(&part_task(Part::RawSocketEcho { size }, cpu)?)?;
        let child = Reaped(cmd.stdin(Stdio::from(theirs)).spawn()?);
        Ok(RawSocket {
            ours: ours.into(),
            out: vec![0u8; size],
            back: vec![0u8; size],
            child,
        })
    }
}

impl Echoing for RawSocket {
    fn round_trip(&mut self) -> Result<Duration> {
        let start = Instant::now();
        self.ours.write_all(&self.out)?;
        self.ours.read_exact(&mut self.back)?;
        Ok(start.elapsed())
    }
    fn buffers(&mut self) -> (&mut [u8], &[u8]) {
        (&mut self.out, &self.back)
    }
    fn child_cpu_ns(&self) -> u64 {
        self.child.cpu_ns()
    }
}

/// The agent side of the bare-socket baselines: the socket (of either
/// kind) is its stdin.
fn raw_socket_echo(size: usize) -> Result<()> {
    let fd = rustix::io::fcntl_dupfd_cloexec(rustix::stdio::stdin(), 3)?;
    let mut socket = std::fs::File::from(fd);
    let mut buf = vec![0u8; size];
    while socket.read_exact(&mut buf).is_ok() {
        socket.write_all(&buf)?;
    }
    Ok(())
}

/// The control words of a shared buffer, each on its own cache line.
#[repr(C, align(64))]
struct Word {
    value: AtomicU64,
    /// 1 while the reader of `value` sleeps on `futex`.
    waiting: AtomicU32,
    /// Bumped with every store of `value`; what sleepers wait on.
    futex: AtomicU32,
}

/// The head of the mapping: the parent's word, the child's word, and the
/// child's count of blocks that failed verification.
#[repr(C)]
struct Control {
    to_child: Word,
    to_parent: Word,
    errors: Word,
}

/// Where the two data slots start (after the control page).
const DATA_AT: usize = 4096;

/// Value that tells the child to stop.
const STOP: u64 = u64::MAX;

/// A memory mapping shared with a child through a sealed memory file
/// (`ipc_sys::memory`): a control page, then two `slot`-byte data slots.
#[derive(Debug)]
struct SharedBuffer {
    map: Mapping,
    slot: usize,
}

impl SharedBuffer {
    fn layout(size: usize) -> (usize, usize) {
        let slot = size.max(1).next_multiple_of(4096);
        (slot, DATA_AT + 2 * slot)
    }

    /// Creates the memory file for `size`-byte blocks and maps it.
    fn create(size: usize) -> Result<(Self, OwnedFd)> {
        let (_, len) = Self::layout(size);
        let fd = ipc_sys::memory::sealed_memfd("ipc-baseline", len)?;
        Ok((Self::map(fd.as_fd(), size)?, fd))
    }

    fn map(fd: BorrowedFd<'_>, size: usize) -> Result<Self> {
        let (slot, len) = Self::layout(size);
        let sealed = ipc_sys::memory::sealed_len(fd, "shared buffer")
            .map_err(|e| HarnessError::Agent(e.to_string()))?;
        if sealed < len as u64 {
            return Err(HarnessError::Agent("shared buffer is too small".into()));
        }
        let map = Mapping::new(fd, len, true, Populate::No)?;
        Ok(SharedBuffer { map, slot })
    }

    fn control(&self) -> &Control {
        // SAFETY: the mapping is page-aligned and at least a page long, so
        // it holds a `Control` (192 bytes, 64-byte aligned) made only of
        // atomics, for which any bit pattern (zeroed at creation) is valid;
        // it lives as long as `self`.
        unsafe { &*(self.map.as_ptr() as *const Control) }
    }

    /// Slot `i` (0 or 1) as a raw pointer: both processes write the slots,
    /// so they are only touched by `copy_in` / `copy_out` while the
    /// protocol's sequence words say this side owns them.
    fn slot_ptr(&self, i: usize) -> *mut u8 {
        debug_assert!(i < 2);
        // SAFETY: DATA_AT + (i + 1) * slot <= len by `layout`.
        unsafe { self.map.as_ptr().add(DATA_AT + i * self.slot) }
    }

    fn copy_in(&self, i: usize, from: &[u8]) {
        assert!(from.len() <= self.slot);
        // SAFETY: the slot holds `slot` >= `from.len()` bytes; the other
        // process does not touch it until this side publishes its store
        // (Release) after the copy, so the regions are not concurrently
        // written; source and destination do not overlap (one is private
        // memory).
        unsafe { std::ptr::copy_nonoverlapping(from.as_ptr(), self.slot_ptr(i), from.len()) };
    }

    fn copy_out(&self, i: usize, to: &mut [u8]) {
        assert!(to.len() <= self.slot);
        // SAFETY: as in `copy_in`, with this side reading a slot the other
        // published (Acquire) and will not write again before this side
        // answers.
        unsafe { std::ptr::copy_nonoverlapping(self.slot_ptr(i), to.as_mut_ptr(), to.len()) };
    }
}

/// Publishes `value` in `word`, waking its reader if it sleeps.
fn publish(word: &Word, value: u64, hand: Hand) {
    word.value.store(value, Ordering::Release);
    if hand == Hand::Adaptive {
        word.futex.fetch_add(1, Ordering::Release);
        // Pairs with the reader's fence between announcing its sleep and
        // re-checking the value: one of the two sees the other.
        fence(Ordering::SeqCst);
        if word.waiting.load(Ordering::Relaxed) == 1 {
            let _ = futex::wake(&word.futex, futex::Flags::empty(), 1);
        }
    }
}

/// Waits until `word` holds at least `want` (values only grow; [`STOP`]
/// is the largest); returns what it holds.
fn await_value(word: &Word, want: u64, hand: Hand) -> Result<u64> {
    let start = Instant::now();
    let mut spins = 0u32;
    loop {
        let now = word.value.load(Ordering::Acquire);
        if now >= want {
            return Ok(now);
        }
        spins = spins.wrapping_add(1);
        if hand == Hand::Adaptive && spins.is_multiple_of(64) && start.elapsed() > ADAPTIVE_SPIN {
            let seen = word.futex.load(Ordering::Acquire);
            word.waiting.store(1, Ordering::Relaxed);
            fence(Ordering::SeqCst);
            if word.value.load(Ordering::Acquire) < want {
                let timeout = futex::Timespec {
                    tv_sec: 1,
                    tv_nsec: 0,
                };
                let _ = futex::wait(&word.futex, futex::Flags::empty(), seen, Some(&timeout));
            }
            word.waiting.store(0, Ordering::Relaxed);
        } else {
            std::hint::spin_loop();
        }
        if spins.is_multiple_of(4096) && start.elapsed() > ABANDONED {
            return Err(HarnessError::Agent(
                "the other side stopped answering".into(),
            ));
        }
    }
}

/// A child echoing blocks through a shared buffer: copy in, publish,
/// wait, copy out.
#[derive(Debug)]
pub struct SharedEcho {
    buf: SharedBuffer,
    hand: Hand,
    next: u64,
    out: Vec<u8>,
    back: Vec<u8>,
    child: Reaped,
}

impl SharedEcho {
    /// Spawns the echoing child for `size`-byte blocks (pinned to `cpu`).
    pub fn start(size: usize, hand: Hand, cpu: Option<usize>) -> Result<Self> {
        let (buf, fd) = SharedBuffer::create(size)?;
        let mut cmd = agent_command(&part_task(Part::SharedEcho { size, hand }, cpu)?)?;
        let child = Reaped(cmd.stdin(Stdio::from(fd)).spawn()?);
        Ok(SharedEcho {
            buf,
            hand,
            next: 1,
            out: vec![0u8; size],
            back: vec![0u8; size],
            child,
        })
    }
}

impl Echoing for SharedEcho {
    fn round_trip(&mut self) -> Result<Duration> {
        let c = self.buf.control();
        let start = Instant::now();
        self.buf.copy_in(0, &self.out);
        publish(&c.to_child, self.next, self.hand);
        if await_value(&c.to_parent, self.next, self.hand)? == STOP {
            return Err(HarnessError::Agent("the echo stopped".into()));
        }
        self.buf.copy_out(1, &mut self.back);
        let took = start.elapsed();
        self.next += 1;
        Ok(took)
    }
    fn buffers(&mut self) -> (&mut [u8], &[u8]) {
        (&mut self.out, &self.back)
    }
    fn child_cpu_ns(&self) -> u64 {
        self.child.cpu_ns()
    }
}

impl Drop for SharedEcho {
    fn drop(&mut self) {
        publish(&self.buf.control().to_child, STOP, self.hand);
    }
}

/// The agent side of [`SharedEcho`]: copy out (as `recv` does), copy back
/// in (as `send` does), publish.
fn shared_echo(size: usize, hand: Hand) -> Result<()> {
    let buf = SharedBuffer::map(rustix::stdio::stdin(), size)?;
    let c = buf.control();
    let mut local = vec![0u8; size];
    let mut expect = 1u64;
    loop {
        if await_value(&c.to_child, expect, hand)? == STOP {
            return Ok(());
        }
        buf.copy_out(0, &mut local);
        buf.copy_in(1, &local);
        publish(&c.to_parent, expect, hand);
        expect += 1;
    }
}

fn round_trips(
    mechanism: Mechanism,
    size: usize,
    regime: Regime,
    gap: Duration,
    (warmup, samples): (u64, u64),
    pin: bool,
    trial: u32,
) -> Result<BaselineLatency> {
    let ((recorder, cpu), pinned) = placed(pin, |cpu| match mechanism {
        Mechanism::Pipe => {
            record_round_trips(&mut RawPipe::start(size, cpu)?, warmup, samples, gap)
        }
        Mechanism::Socketpair => record_round_trips(
            &mut RawSocket::start(size, cpu, SocketKind::Unix)?,
            warmup,
            samples,
            gap,
        ),
        Mechanism::TcpLoopback => record_round_trips(
            &mut RawSocket::start(size, cpu, SocketKind::TcpLoopback)?,
            warmup,
            samples,
            gap,
        ),
        Mechanism::SharedBuffer => record_round_trips(
            &mut SharedEcho::start(size, Hand::Spin, cpu)?,
            warmup,
            samples,
            gap,
        ),
        Mechanism::Futex => record_round_trips(
            &mut SharedEcho::start(size, Hand::Adaptive, cpu)?,
            warmup,
            samples,
            gap,
        ),
        Mechanism::Memcpy => Err(HarnessError::Invalid("memcpy has no round trip".into())),
        Mechanism::Iceoryx2 => {
            crate::scenarios::peers::iceoryx2::round_trips(size, cpu, warmup, samples)
        }
    })?;
    Ok(BaselineLatency {
        mechanism,
        trial,
        size,
        regime,
        pinned,
        cpu_ns_per_op: cpu,
        stats: recorder.summary(),
    })
}

/// Round trips of `size`-byte blocks over `mechanism`, back to back.
pub fn back_to_back(
    mechanism: Mechanism,
    size: usize,
    warmup: u64,
    samples: u64,
    pin: bool,
    trial: u32,
) -> Result<BaselineLatency> {
    round_trips(
        mechanism,
        size,
        Regime::BackToBack,
        Duration::ZERO,
        (warmup, samples),
        pin,
        trial,
    )
}

/// Round trips of `size`-byte blocks through the shared buffer with `gap`
/// between them, both sides spinning briefly and then sleeping on a
/// futex: the mechanism of the parked regime.
pub fn parked(
    size: usize,
    gap: Duration,
    warmup: u64,
    samples: u64,
    pin: bool,
    trial: u32,
) -> Result<BaselineLatency> {
    round_trips(
        Mechanism::Futex,
        size,
        Regime::Parked,
        gap,
        (warmup, samples),
        pin,
        trial,
    )
}

/// Streams `blocks` blocks of `size` bytes one way through two shared
/// slots, both sides spinning: the parent fills each block and copies it
/// in, the child copies it out and verifies it. What a copying
/// shared-memory transport's throughput is bounded by.
pub fn copy_stream(size: usize, blocks: u64, pin: bool, trial: u32) -> Result<BaselineBandwidth> {
    let (seconds, _) = placed(pin, |cpu| {
        let (buf, fd) = SharedBuffer::create(size)?;
        let mut cmd = agent_command(&part_task(Part::SharedSink { size }, cpu)?)?;
        let child = Reaped(cmd.stdin(Stdio::from(fd)).spawn()?);
        let c = buf.control();
        let mut msg = vec![0u8; size];
        let start = Instant::now();
        for seq in 0..blocks {
            // Slot seq % 2 is free once the child consumed block seq - 2.
            if seq >= 2 && await_value(&c.to_parent, seq - 1, Hand::Spin)? == STOP {
                return Err(HarnessError::Agent("the sink stopped".into()));
            }
            payload::fill(seq, &mut msg);
            buf.copy_in((seq % 2) as usize, &msg);
            publish(&c.to_child, seq + 1, Hand::Spin);
        }
        if await_value(&c.to_parent, blocks, Hand::Spin)? == STOP {
            return Err(HarnessError::Agent("the sink stopped".into()));
        }
        let seconds = start.elapsed().as_secs_f64();
        publish(&c.to_child, STOP, Hand::Spin);
        let errors = c.errors.value.load(Ordering::Acquire);
        drop(child);
        if errors > 0 {
            return Err(HarnessError::Agent(format!(
                "{errors} blocks failed verification"
            )));
        }
        Ok(seconds)
    })?;
    Ok(BaselineBandwidth {
        mechanism: Mechanism::SharedBuffer,
        trial,
        size,
        blocks,
        bytes_per_s: (blocks * size as u64) as f64 / seconds,
    })
}

/// The agent side of [`copy_stream`].
fn shared_sink(size: usize) -> Result<()> {
    let buf = SharedBuffer::map(rustix::stdio::stdin(), size)?;
    let c = buf.control();
    let mut local = vec![0u8; size];
    let mut seq = 0u64;
    loop {
        // The parent publishes seq + 1 once block `seq` is in (it may be a
        // block further ahead already).
        if await_value(&c.to_child, seq + 1, Hand::Spin)? == STOP {
            return Ok(());
        }
        buf.copy_out((seq % 2) as usize, &mut local);
        if payload::verify(seq, &local).is_err() {
            c.errors.value.fetch_add(1, Ordering::AcqRel);
        }
        seq += 1;
        publish(&c.to_parent, seq, Hand::Spin);
    }
}

/// `memcpy` bandwidth at `size` in one process, copying about `budget`
/// bytes in all.
pub fn memcpy(size: usize, budget: u64, trial: u32) -> BaselineBandwidth {
    let src = vec![1u8; size];
    let mut dst = vec![0u8; size];
    let rounds = (budget / size.max(1) as u64).max(4);
    let start = Instant::now();
    for _ in 0..rounds {
        dst.copy_from_slice(std::hint::black_box(&src));
        std::hint::black_box(&mut dst);
    }
    let seconds = start.elapsed().as_secs_f64();
    BaselineBandwidth {
        mechanism: Mechanism::Memcpy,
        trial,
        size,
        blocks: rounds,
        bytes_per_s: (rounds * size as u64) as f64 / seconds,
    }
}
