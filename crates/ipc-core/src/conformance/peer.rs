//! The peer side of the conformance cases.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use super::{PEER_MAX_ENV, TransportUnderTest};
use crate::{
    AsyncFrameReceiver, AsyncFrameSender, Config, FrameReceiver, FrameSender, RecvError, payload,
};

/// What a peer process does once connected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PeerMode {
    /// Sends every frame back until the parent disconnects.
    Echo,
    /// [`PeerMode::Echo`] through the async API.
    AsyncEcho,
    /// Sends this many payload frames (sizes from `message_size`).
    Generate(u64),
    /// Receives and verifies this many payload frames, then replies `ok` or
    /// the first error.
    Verify(u64),
    /// Receives nothing until the parent disconnects.
    Silent,
    /// Exits as soon as it is connected.
    Exit,
    /// Exits this many milliseconds after connecting.
    ExitAfter(u64),
    /// Sends one frame of this size, then the frame `after`.
    SendOversized(usize),
    /// Never reads; sleeps until killed (or a minute passes).
    Stall,
    /// Receives and drops frames until the parent disconnects.
    Drain,
    /// Sends this many payload frames, then exits at once (a clean close
    /// in the middle of the parent's reading).
    Burst(u64),
    /// Leaves a frame unfinished ([`TransportUnderTest::leave_half_a_frame`])
    /// and hangs until killed; exits with [`UNSUPPORTED`] if the transport
    /// cannot.
    HalfFrame,
    /// Stops reading for good while connected
    /// ([`TransportUnderTest::stop_reading`]) and hangs until killed; exits
    /// with [`UNSUPPORTED`] if the transport cannot.
    StopReading,
    /// Binds a listener at this address, says `ready` on stdout, and hangs
    /// until killed (leaving its files behind).
    Own(String),
    /// Connects to this address: exits 0 if that was refused for
    /// permission, 2 if it connected, 1 otherwise.
    ConnectTo(String),
}

/// The exit code of a peer whose transport cannot do what its mode asks.
pub const UNSUPPORTED: i32 = 3;

/// The reply of a [`PeerMode::Verify`] peer whose frames all verified.
pub const VERIFY_OK: &[u8] = b"ok";

/// The frame a [`PeerMode::SendOversized`] peer sends after the big one.
pub const AFTER_OVERSIZED: &[u8] = b"after";

/// Size of message `seq` in the ordering cases: a mix from empty to 1 KiB
/// that crosses the payload header size.
pub fn message_size(seq: u64) -> usize {
    const SIZES: [usize; 10] = [0, 1, 15, 16, 17, 64, 100, 512, 1000, 1024];
    SIZES[(seq % SIZES.len() as u64) as usize]
}

impl fmt::Display for PeerMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PeerMode::Echo => write!(f, "echo"),
            PeerMode::AsyncEcho => write!(f, "async-echo"),
            PeerMode::Generate(n) => write!(f, "generate:{n}"),
            PeerMode::Verify(n) => write!(f, "verify:{n}"),
            PeerMode::Silent => write!(f, "silent"),
            PeerMode::Exit => write!(f, "exit"),
            PeerMode::ExitAfter(ms) => write!(f, "exit-after:{ms}"),
            PeerMode::SendOversized(n) => write!(f, "send-oversized:{n}"),
            PeerMode::Stall => write!(f, "stall"),
            PeerMode::Drain => write!(f, "drain"),
            PeerMode::Burst(n) => write!(f, "burst:{n}"),
            PeerMode::HalfFrame => write!(f, "half-frame"),
            PeerMode::StopReading => write!(f, "stop-reading"),
            PeerMode::Own(address) => write!(f, "own:{address}"),
            PeerMode::ConnectTo(address) => write!(f, "connect-to:{address}"),
        }
    }
}

impl FromStr for PeerMode {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (name, arg) = s.split_once(':').unwrap_or((s, ""));
        let num = || {
            arg.parse::<u64>()
                .map_err(|e| format!("peer mode {s:?}: {e}"))
        };
        Ok(match name {
            "echo" => PeerMode::Echo,
            "async-echo" => PeerMode::AsyncEcho,
            "generate" => PeerMode::Generate(num()?),
            "verify" => PeerMode::Verify(num()?),
            "silent" => PeerMode::Silent,
            "exit" => PeerMode::Exit,
            "exit-after" => PeerMode::ExitAfter(num()?),
            "send-oversized" => PeerMode::SendOversized(num()? as usize),
            "stall" => PeerMode::Stall,
            "drain" => PeerMode::Drain,
            "burst" => PeerMode::Burst(num()?),
            "half-frame" => PeerMode::HalfFrame,
            "stop-reading" => PeerMode::StopReading,
            "own" => PeerMode::Own(arg.to_owned()),
            "connect-to" => PeerMode::ConnectTo(arg.to_owned()),
            _ => return Err(format!("unknown peer mode {s:?}")),
        })
    }
}

/// Runs the peer part; returns the process exit code.
pub(super) fn run<T: TransportUnderTest>(transport: &T, mode: &str) -> i32 {
    match try_run(transport, mode) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("conformance peer ({mode}): {e}");
            1
        }
    }
}

/// How long a peer that hangs on purpose sleeps (it is killed long before).
const HANG: Duration = Duration::from_secs(120);

fn try_run<T: TransportUnderTest>(transport: &T, mode: &str) -> Result<i32, super::BoxError> {
    let mode: PeerMode = mode.parse()?;
    let max = std::env::var(PEER_MAX_ENV)
        .ok()
        .and_then(|m| m.parse().ok())
        .unwrap_or(crate::DEFAULT_MAX_MESSAGE_SIZE);
    let config = Config::default().with_max_message_size(max);
    let hook = match &mode {
        PeerMode::AsyncEcho => return async_echo(transport, &config).map(|()| 0),
        PeerMode::HalfFrame => Some(transport.leave_half_a_frame(&config)),
        PeerMode::StopReading => Some(transport.stop_reading(&config)),
        PeerMode::Own(address) => {
            let _listener = transport.bind(&address.parse()?, &config)?;
            println!("ready");
            std::thread::sleep(HANG);
            return Ok(0);
        }
        PeerMode::ConnectTo(address) => {
            return Ok(match transport.connect(&address.parse()?, &config) {
                Err(crate::ConnectError::PermissionDenied(_)) => 0,
                Ok(_) => 2,
                Err(e) => {
                    eprintln!("connect to {address}: {e}");
                    1
                }
            });
        }
        _ => None,
    };
    match hook {
        // Connected so the parent's spawn returns, then says it cannot.
        Some(None) => {
            let _conn = transport.connect_to_parent(&config)?;
            return Ok(UNSUPPORTED);
        }
        Some(Some(held)) => {
            let _held = held?;
            std::thread::sleep(HANG);
            return Ok(0);
        }
        None => {}
    }
    let mut conn = transport.connect_to_parent(&config)?;
    let done = match mode {
        PeerMode::AsyncEcho
        | PeerMode::HalfFrame
        | PeerMode::StopReading
        | PeerMode::Own(_)
        | PeerMode::ConnectTo(_) => unreachable!("handled above"),
        PeerMode::Echo => loop {
            match conn.recv() {
                Ok(frame) => conn.send(&frame)?,
                Err(RecvError::Disconnected) => break Ok(()),
                Err(e) => return Err(e.into()),
            }
        },
        PeerMode::Generate(n) => {
            send_payloads(&mut conn, n)?;
            wait_for_parent_to_leave(&mut conn)
        }
        PeerMode::Verify(n) => {
            let mut outcome = Ok(());
            for seq in 0..n {
                let frame = conn.recv()?;
                if outcome.is_ok() {
                    outcome = payload::verify(seq, &frame).and_then(|()| {
                        if frame.len() == message_size(seq) {
                            Ok(())
                        } else {
                            Err(payload::IntegrityError::Length {
                                seq,
                                declared: message_size(seq) as u64,
                                got: frame.len(),
                            })
                        }
                    });
                }
            }
            match outcome {
                Ok(()) => conn.send(VERIFY_OK)?,
                Err(e) => conn.send(e.to_string().as_bytes())?,
            }
            wait_for_parent_to_leave(&mut conn)
        }
        PeerMode::Silent => wait_for_parent_to_leave(&mut conn),
        PeerMode::Exit => Ok(()),
        PeerMode::ExitAfter(ms) => {
            std::thread::sleep(Duration::from_millis(ms));
            Ok(())
        }
        PeerMode::SendOversized(len) => {
            conn.send(&vec![7; len])?;
            conn.send(AFTER_OVERSIZED)?;
            wait_for_parent_to_leave(&mut conn)
        }
        PeerMode::Stall => {
            std::thread::sleep(Duration::from_secs(60));
            Ok(())
        }
        PeerMode::Drain => loop {
            match conn.recv() {
                Ok(_) => {}
                Err(RecvError::Disconnected) => break Ok(()),
                Err(e) => break Err(e.into()),
            }
        },
        PeerMode::Burst(n) => send_payloads(&mut conn, n),
    };
    done.map(|()| 0)
}

fn async_echo<T: TransportUnderTest>(
    transport: &T,
    config: &Config,
) -> Result<(), super::BoxError> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let mut conn = transport.connect_to_parent_async(config).await?;
        loop {
            match conn.recv().await {
                Ok(frame) => conn.send(&frame).await?,
                Err(RecvError::Disconnected) => return Ok(()),
                Err(e) => return Err(e.into()),
            }
        }
    })
}

/// Sends `n` payload frames of the mixed sizes (`message_size`), then
/// flushes.
fn send_payloads(conn: &mut impl FrameSender, n: u64) -> Result<(), super::BoxError> {
    let mut buf = vec![0; 1024];
    for seq in 0..n {
        let msg = &mut buf[..message_size(seq)];
        payload::fill(seq, msg);
        conn.send(msg)?;
    }
    conn.flush()?;
    Ok(())
}

/// Receives until the parent disconnects; frames that arrive are errors.
fn wait_for_parent_to_leave(conn: &mut impl FrameReceiver) -> Result<(), super::BoxError> {
    match conn.recv() {
        Err(RecvError::Disconnected) => Ok(()),
        Ok(frame) => Err(format!("unexpected {}-byte frame", frame.len()).into()),
        Err(e) => Err(e.into()),
    }
}
