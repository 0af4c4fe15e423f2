//! An idle shm agent for the resources group: links `ipc-core` and the
//! shm transport only (see `harness::idle_agent`).

fn main() -> std::process::ExitCode {
    harness::idle_agent::serve(ipc_shm::Shm)
}
