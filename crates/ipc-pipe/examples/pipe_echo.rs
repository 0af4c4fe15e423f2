//! A parent spawns an agent process and exchanges messages with it over the
//! agent's stdin/stdout.
//!
//! ```sh
//! cargo run --release -p ipc-pipe --example pipe_echo -- [ROUNDS] [SIZE]
//! ```
//!
//! The same binary is both: run with no `IPC_ADDRESS` it is the parent and
//! spawns itself; `ipc_pipe::spawn` sets `IPC_ADDRESS=pipe:stdio` for the
//! agent.

use std::time::{Duration, Instant};

use ipc_core::{
    ADDRESS_ENV, Address, AddressError, Config, Connector, FrameReceiver, FrameSender, RecvError,
    payload,
};
use ipc_pipe::Pipe;

type Error = Box<dyn std::error::Error>;

fn main() -> Result<(), Error> {
    // No address: this is the parent. A malformed one is an error, never
    // a reason to start a second parent.
    match Address::from_env() {
        Ok(address) => agent(&address),
        Err(AddressError::EnvMissing) => parent(),
        Err(e) => Err(format!("{ADDRESS_ENV}: {e}").into()),
    }
}

/// The agent: echo every frame until the parent leaves.
fn agent(address: &Address) -> Result<(), Error> {
    let mut conn = Pipe.connect(address, &Config::default())?;
    eprintln!("agent {}: connected over {address}", std::process::id());
    loop {
        match conn.recv() {
            Ok(frame) => conn.send(&frame)?,
            Err(RecvError::Disconnected) => return Ok(()),
            Err(e) => return Err(e.into()),
        }
    }
}

fn parent() -> Result<(), Error> {
    let mut args = std::env::args().skip(1);
    let rounds: u64 = args.next().map_or(Ok(10_000), |a| a.parse())?;
    let size: usize = args.next().map_or(Ok(64), |a| a.parse())?;
    let config = Config::default().with_recv_timeout(Some(Duration::from_secs(10)));
    let mut agent = ipc_pipe::spawn(
        &mut std::process::Command::new(std::env::current_exe()?),
        &config,
    )?;
    println!(
        "parent {}: spawned agent {}",
        std::process::id(),
        agent.id()
    );

    let mut msg = vec![0; size];
    let mut times = Vec::with_capacity(rounds as usize);
    for seq in 0..rounds {
        payload::fill(seq, &mut msg);
        let start = Instant::now();
        agent.send(&msg)?;
        let back = agent.recv()?;
        times.push(start.elapsed());
        payload::verify(seq, &back)?;
    }
    times.sort();
    let pct = |p: f64| times[((times.len() - 1) as f64 * p) as usize];
    println!(
        "{rounds} round trips of {size} B, all verified: p50 {:?}, p99 {:?}, max {:?}",
        pct(0.50),
        pct(0.99),
        pct(1.0)
    );
    let status = agent.shutdown(Duration::from_secs(5))?;
    println!("agent exited: {status}");
    Ok(())
}
