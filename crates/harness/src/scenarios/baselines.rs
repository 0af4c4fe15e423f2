//! The bare mechanisms under the transports, measured in the same run so
//! every transport figure can be given as a ratio: a pipe, a socketpair, a
//! shared cache line (both sides spin) and a futex (both sides sleep), each
//! as a round trip between two processes with no library on top; and
//! in-process `memcpy` bandwidth.

use std::io::{Read, Write};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::process::{Child, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use rustix::mm::{MapFlags, ProtFlags};
use rustix::thread::futex;

use crate::agent::{AgentTask, Role};
use crate::error::{HarnessError, Result};
use crate::schema::{BaselineLatency, MemcpyResult};
use crate::stats::Recorder;
use crate::transport::{Variant, agent_command};

/// Value the parent stores to tell a spinning or futex agent to stop.
const STOP: u32 = u32::MAX;
/// An agent waiting this long with no change gives up (its parent died).
const ABANDONED: Duration = Duration::from_secs(10);

fn task(role: Role, cpu: Option<usize>) -> AgentTask {
    AgentTask {
        role,
        variant: Variant::of(crate::Transport::Pipe),
        cpu,
    }
}

/// Runs `measure` with the parent pinned (and hands it the agent's CPU),
/// if `pin` and the machine has two CPUs.
fn placed<T>(pin: bool, measure: impl FnOnce(Option<usize>) -> Result<T>) -> Result<(T, bool)> {
    let cpus = pin.then(crate::pin::cpus).flatten();
    let _pinned = crate::pin::PinGuard::new(cpus.map(|c| c.0));
    Ok((measure(cpus.map(|c| c.1))?, cpus.is_some()))
}

/// Reaps a baseline agent, killing it if it does not exit soon.
#[derive(Debug)]
struct Reaped(Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(2);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.0.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn record_round_trips(
    warmup: u64,
    samples: u64,
    mut round_trip: impl FnMut() -> Result<Duration>,
) -> Result<Recorder> {
    for _ in 0..warmup {
        round_trip()?;
    }
    let mut recorder = Recorder::new();
    for _ in 0..samples {
        recorder.record(round_trip()?);
    }
    Ok(recorder)
}

fn result(mechanism: &str, size: usize, (recorder, pinned): (Recorder, bool)) -> BaselineLatency {
    BaselineLatency {
        mechanism: mechanism.into(),
        size,
        pinned,
        stats: recorder.summary(),
    }
}

/// A child echoing `size`-byte blocks on its stdin/stdout: the bare pipe.
pub struct RawPipe {
    to: std::process::ChildStdin,
    from: std::process::ChildStdout,
    out: Vec<u8>,
    back: Vec<u8>,
    _child: Reaped,
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
        let mut cmd = agent_command(&task(Role::RawPipeEcho { size }, cpu))?;
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
            out: vec![7u8; size],
            back: vec![0u8; size],
            _child: child,
        })
    }

    /// One round trip.
    pub fn once(&mut self) -> Result<Duration> {
        let start = Instant::now();
        self.to.write_all(&self.out)?;
        self.from.read_exact(&mut self.back)?;
        Ok(start.elapsed())
    }
}

/// Round trips of `size` bytes through the stdin/stdout pipes of a child.
pub fn pipe(size: usize, warmup: u64, samples: u64, pin: bool) -> Result<BaselineLatency> {
    let measured = placed(pin, |cpu| {
        let mut raw = RawPipe::start(size, cpu)?;
        record_round_trips(warmup, samples, || raw.once())
    })?;
    Ok(result("pipe", size, measured))
}

/// The agent side of [`pipe`].
pub(crate) fn raw_pipe_echo(size: usize) -> Result<()> {
    let mut buf = vec![0u8; size];
    let (mut input, mut output) = (std::io::stdin().lock(), std::io::stdout().lock());
    while input.read_exact(&mut buf).is_ok() {
        output.write_all(&buf)?;
        output.flush()?;
    }
    Ok(())
}

/// A child echoing `size`-byte blocks over a socketpair: the bare socket.
#[derive(Debug)]
pub struct RawSocket {
    ours: UnixStream,
    out: Vec<u8>,
    back: Vec<u8>,
    _child: Reaped,
}

impl RawSocket {
    /// Spawns the echoing child with the other end as its stdin (pinned
    /// to `cpu`, if given).
    pub fn start(size: usize, cpu: Option<usize>) -> Result<Self> {
        let (ours, theirs) = UnixStream::pair()?;
        let mut cmd = agent_command(&task(Role::RawSocketEcho { size }, cpu))?;
        let child = Reaped(cmd.stdin(Stdio::from(OwnedFd::from(theirs))).spawn()?);
        Ok(RawSocket {
            ours,
            out: vec![7u8; size],
            back: vec![0u8; size],
            _child: child,
        })
    }

    /// One round trip.
    pub fn once(&mut self) -> Result<Duration> {
        let start = Instant::now();
        self.ours.write_all(&self.out)?;
        self.ours.read_exact(&mut self.back)?;
        Ok(start.elapsed())
    }
}

/// Round trips of `size` bytes over a socketpair shared with a child.
pub fn socketpair(size: usize, warmup: u64, samples: u64, pin: bool) -> Result<BaselineLatency> {
    let measured = placed(pin, |cpu| {
        let mut raw = RawSocket::start(size, cpu)?;
        record_round_trips(warmup, samples, || raw.once())
    })?;
    Ok(result("socketpair", size, measured))
}

/// The agent side of [`socketpair`]: the socket is its stdin.
pub(crate) fn raw_socket_echo(size: usize) -> Result<()> {
    let fd = rustix::io::fcntl_dupfd_cloexec(rustix::stdio::stdin(), 3)?;
    let mut socket = UnixStream::from(fd);
    let mut buf = vec![0u8; size];
    while socket.read_exact(&mut buf).is_ok() {
        socket.write_all(&buf)?;
    }
    Ok(())
}

/// One page of memory shared with a child through a memfd.
#[derive(Debug)]
struct SharedPage {
    ptr: *mut std::ffi::c_void,
}

impl SharedPage {
    const LEN: usize = 4096;

    /// Creates the memfd and maps it.
    fn create() -> Result<(Self, OwnedFd)> {
        let fd = rustix::fs::memfd_create("ipc-baseline", rustix::fs::MemfdFlags::CLOEXEC)?;
        rustix::fs::ftruncate(&fd, Self::LEN as u64)?;
        Ok((Self::map(fd.as_fd())?, fd))
    }

    fn map(fd: BorrowedFd<'_>) -> Result<Self> {
        // SAFETY: a fresh shared mapping of a page-sized memfd at an address
        // the kernel picks; it aliases no Rust object. It is unmapped on drop.
        let ptr = unsafe {
            rustix::mm::mmap(
                std::ptr::null_mut(),
                Self::LEN,
                ProtFlags::READ | ProtFlags::WRITE,
                MapFlags::SHARED,
                fd,
                0,
            )
        }?;
        Ok(SharedPage { ptr })
    }

    /// The word both processes ping-pong on.
    fn word(&self) -> &AtomicU32 {
        // SAFETY: the mapping is page-aligned, at least 4 bytes, zeroed or
        // written only through this atomic, and lives as long as `self`.
        unsafe { &*(self.ptr as *const AtomicU32) }
    }
}

impl Drop for SharedPage {
    fn drop(&mut self) {
        // SAFETY: `ptr` came from our `mmap` of `LEN` bytes; no reference
        // into it outlives `self` (they borrow `self`).
        let _ = unsafe { rustix::mm::munmap(self.ptr, Self::LEN) };
    }
}

/// How a side waits for the other's store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Hand {
    Spin,
    Futex,
}

fn await_value(word: &AtomicU32, want: u32, hand: Hand) -> Result<()> {
    let start = Instant::now();
    loop {
        let now = word.load(Ordering::Acquire);
        if now == want || now == STOP {
            return Ok(());
        }
        match hand {
            Hand::Spin => std::hint::spin_loop(),
            Hand::Futex => {
                let timeout = futex::Timespec {
                    tv_sec: 1,
                    tv_nsec: 0,
                };
                let _ = futex::wait(word, futex::Flags::empty(), now, Some(&timeout));
            }
        }
        if start.elapsed() > ABANDONED {
            return Err(HarnessError::Agent(
                "the other side stopped answering".into(),
            ));
        }
    }
}

fn store(word: &AtomicU32, value: u32, hand: Hand) {
    word.store(value, Ordering::Release);
    if hand == Hand::Futex {
        let _ = futex::wake(word, futex::Flags::empty(), 1);
    }
}

/// A child ping-ponging on a word shared through a memfd: spinning (the
/// bare cache line) or sleeping (the bare futex).
#[derive(Debug)]
pub struct SharedWordPingPong {
    page: SharedPage,
    hand: Hand,
    next: u32,
    _child: Reaped,
}

impl SharedWordPingPong {
    fn start(hand: Hand, cpu: Option<usize>) -> Result<Self> {
        let (page, fd) = SharedPage::create()?;
        let role = if hand == Hand::Spin {
            Role::SpinEcho
        } else {
            Role::FutexEcho
        };
        let mut cmd = agent_command(&task(role, cpu))?;
        let child = Reaped(cmd.stdin(Stdio::from(fd)).spawn()?);
        Ok(SharedWordPingPong {
            page,
            hand,
            next: 1,
            _child: child,
        })
    }

    /// Both sides spin on the cache line (the child pinned to `cpu`).
    pub fn spinning(cpu: Option<usize>) -> Result<Self> {
        Self::start(Hand::Spin, cpu)
    }

    /// Both sides sleep on a futex (the child pinned to `cpu`).
    pub fn sleeping(cpu: Option<usize>) -> Result<Self> {
        Self::start(Hand::Futex, cpu)
    }

    /// One round trip.
    pub fn once(&mut self) -> Result<Duration> {
        let word = self.page.word();
        let start = Instant::now();
        store(word, self.next, self.hand);
        await_value(word, self.next + 1, self.hand)?;
        let took = start.elapsed();
        self.next += 2;
        Ok(took)
    }
}

impl Drop for SharedWordPingPong {
    fn drop(&mut self) {
        store(self.page.word(), STOP, self.hand);
    }
}

fn shared_word_round_trips(
    hand: Hand,
    warmup: u64,
    samples: u64,
    pin: bool,
) -> Result<BaselineLatency> {
    let measured = placed(pin, |cpu| {
        let mut ping = SharedWordPingPong::start(hand, cpu)?;
        record_round_trips(warmup, samples, || ping.once())
    })?;
    let name = if hand == Hand::Spin {
        "cache-line"
    } else {
        "futex"
    };
    Ok(result(name, 4, measured))
}

/// Round trips on one shared cache line, both sides spinning.
pub fn cache_line(warmup: u64, samples: u64, pin: bool) -> Result<BaselineLatency> {
    shared_word_round_trips(Hand::Spin, warmup, samples, pin)
}

/// Round trips through a futex, both sides sleeping in the kernel.
pub fn futex(warmup: u64, samples: u64, pin: bool) -> Result<BaselineLatency> {
    shared_word_round_trips(Hand::Futex, warmup, samples, pin)
}

fn shared_word_echo(hand: Hand) -> Result<()> {
    let page = SharedPage::map(rustix::stdio::stdin())?;
    let word = page.word();
    let mut expect = 1u32;
    loop {
        await_value(word, expect, hand)?;
        if word.load(Ordering::Acquire) == STOP {
            return Ok(());
        }
        store(word, expect + 1, hand);
        expect += 2;
    }
}

/// The agent side of [`cache_line`].
pub(crate) fn spin_echo() -> Result<()> {
    shared_word_echo(Hand::Spin)
}

/// The agent side of [`futex`].
pub(crate) fn futex_echo() -> Result<()> {
    shared_word_echo(Hand::Futex)
}

/// `memcpy` bandwidth at `size`, copying about `budget` bytes in all.
pub fn memcpy(size: usize, budget: u64) -> MemcpyResult {
    let src = vec![1u8; size];
    let mut dst = vec![0u8; size];
    let rounds = (budget / size.max(1) as u64).max(4);
    let start = Instant::now();
    for _ in 0..rounds {
        dst.copy_from_slice(std::hint::black_box(&src));
        std::hint::black_box(&mut dst);
    }
    let seconds = start.elapsed().as_secs_f64();
    MemcpyResult {
        size,
        bytes_per_s: (rounds * size as u64) as f64 / seconds,
    }
}
