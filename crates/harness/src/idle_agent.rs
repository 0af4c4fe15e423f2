//! The idle agents of the resources group: one small binary per transport
//! (`ipc-idle-pipe`, `ipc-idle-uds`, `ipc-idle-shm`, `ipc-idle-zenoh`),
//! each linking `ipc-core` and that one transport, as a user's agent does.
//!
//! Their memory is what the idle figures report. Played by the runner
//! instead, an idle agent's resident set would mostly be the runner's own
//! code (every scenario, every transport, iceoryx2): the figure would grow
//! with the benchmark, not with the transport.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use ipc_core::{Address, Config, Connector, FrameReceiver, RecvError};

use crate::variant::{Net, Transport, Variant};

/// The file name of `transport`'s idle agent binary.
pub fn program_name(transport: Transport) -> String {
    format!("ipc-idle-{}", transport.name())
}

/// The idle agent binary for `variant`, if it is the default variant of
/// its transport (the binary knows no other configuration) and the binary
/// was built beside this one (or beside the directory this one is in, as
/// for test binaries in `target/*/deps`).
pub fn program(variant: &Variant) -> Option<PathBuf> {
    if *variant != Variant::of(variant.transport) || variant.net != Net::Loopback {
        return None;
    }
    let exe = std::env::current_exe().ok()?;
    let dir = exe.parent()?;
    let name = program_name(variant.transport);
    [Some(dir), dir.parent()]
        .into_iter()
        .flatten()
        .map(|d: &Path| d.join(&name))
        .find(|p| p.is_file())
}

/// The whole of an idle agent: connect to the parent (the address in
/// `IPC_ADDRESS`, or standard input and output), then wait until it
/// leaves. Exit code 0 when the parent closed the connection.
pub fn serve<C>(connector: C) -> ExitCode
where
    C: Connector,
    C::Connection: FrameReceiver,
{
    let address = Address::from_env().unwrap_or(Address::Stdio);
    let mut conn = match connector.connect(&address, &Config::default()) {
        Ok(conn) => conn,
        Err(e) => {
            eprintln!("idle agent: connecting to {address}: {e}");
            return ExitCode::FAILURE;
        }
    };
    loop {
        match conn.recv_timeout(Duration::from_secs(3600)) {
            Ok(_) | Err(RecvError::Timeout) => {}
            Err(RecvError::Disconnected) => return ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("idle agent: {e}");
                return ExitCode::FAILURE;
            }
        }
    }
}
