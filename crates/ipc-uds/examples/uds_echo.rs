//! A parent listens on a Unix socket, spawns an agent process that connects
//! to it, and exchanges messages with it.
//!
//! ```sh
//! cargo run --release -p ipc-uds --example uds_echo -- [ROUNDS] [SIZE]
//! ```
//!
//! The same binary is both: the parent passes the socket address to the
//! agent in `IPC_ADDRESS`.

use std::process::Command;
use std::time::{Duration, Instant};

use ipc_core::{
    ADDRESS_ENV, Address, AddressError, Config, Connector, FrameReceiver, FrameSender, Listener,
    RecvError, payload,
};
use ipc_uds::{Uds, UdsListener};

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
    let mut conn = Uds.connect(address, &Config::default())?;
    eprintln!("agent {}: connected to {address}", std::process::id());
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
    let path = std::env::temp_dir().join(format!("ipc-uds-echo-{}.sock", std::process::id()));
    let mut listener = UdsListener::bind_path(&path, &config)?;
    let mut child = Command::new(std::env::current_exe()?)
        .env(ADDRESS_ENV, listener.address().to_string())
        .spawn()?;
    let mut conn = listener.accept_timeout(Duration::from_secs(10))?;
    println!(
        "parent {}: agent {} connected to {}",
        std::process::id(),
        child.id(),
        listener.address()
    );

    let mut msg = vec![0; size];
    let mut times = Vec::with_capacity(rounds as usize);
    for seq in 0..rounds {
        payload::fill(seq, &mut msg);
        let start = Instant::now();
        conn.send(&msg)?;
        let back = conn.recv()?;
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
    drop(conn);
    println!("agent exited: {}", child.wait()?);
    Ok(())
}
