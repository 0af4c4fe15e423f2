//! Agents the hub starts and keeps running: a spec per unique name (how
//! to start it, when to restart it), one task per agent that starts the
//! process, waits for it to exit, tells the runtime, and restarts it
//! within the policy's bounds. The hub owns every process it started: it
//! kills and reaps them on [`HubHandle::stop_agent`](crate::HubHandle::stop_agent), on
//! [`Hub::shutdown`](crate::Hub::shutdown) (after their goodbye) and
//! when it is dropped.

use std::collections::VecDeque;
use std::process::Command;
use std::time::Duration;

use ipc_core::{ADDRESS_ENV, Address, Config};
use tokio::sync::watch;
use tokio::time::Instant;

/// What a supervisor needs of the hub that owns it (the hub implements
/// it; kept as a trait so this module does not depend on the hub's).
pub(crate) trait Owner: Clone + Send + Sync + 'static {
    /// Tells the runtime (an event).
    fn notice(&self, notice: AgentNotice);
    /// True once the hub shuts down: no more restarts.
    fn is_closing(&self) -> bool;
    /// Runs the handshake of a pipe agent the supervisor spawned.
    fn adopt(&self, conn: ipc_pipe::AsyncAgentConnection);
}

/// When a supervised agent's process is started again after it exits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Restart {
    /// Never: it runs once.
    Never,
    /// When it exits with a failure (a non-zero status or a signal); an
    /// agent that says goodbye and exits 0 is done.
    OnFailure,
    /// Whenever it exits, until the hub stops it.
    Always,
}

/// How to start an agent the hub supervises, and when to restart it.
///
/// ```no_run
/// # async fn run(hub: &ipc_hub::Hub) -> Result<(), Box<dyn std::error::Error>> {
/// use ipc_hub::{AgentSpec, Restart};
/// use std::process::Command;
/// // Spawned with its connection on stdin/stdout:
/// hub.supervise(AgentSpec::pipe("searcher", Command::new("./searcher")))?;
/// // Started with IPC_ADDRESS set to where the hub listens:
/// let address = "uds:/run/agents/hub.sock".parse()?;
/// hub.supervise(
///     AgentSpec::connecting("planner", Command::new("python3"), address)
///         .with_restart(Restart::Always),
/// )?;
/// let planner = hub.wait_for_agent("planner", std::time::Duration::from_secs(10)).await?;
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct AgentSpec {
    pub(crate) name: String,
    command: Command,
    start: Start,
    restart: Restart,
    max_restarts: u32,
    window: Duration,
    backoff: Duration,
}

#[derive(Debug)]
enum Start {
    /// Spawned with a pipe pair on stdin/stdout, added to the hub.
    Pipe(Config),
    /// Started with `IPC_ADDRESS`; it connects to the hub's listener.
    Connecting(Address),
}

/// Restarts allowed within [`AgentSpec::with_intensity`]'s window by default.
pub const DEFAULT_MAX_RESTARTS: u32 = 5;
/// The default restart window.
pub const DEFAULT_RESTART_WINDOW: Duration = Duration::from_secs(60);
/// The pause before the first restart; it doubles with each restart in a
/// row, up to [`MAX_BACKOFF`].
pub const DEFAULT_BACKOFF: Duration = Duration::from_millis(100);
/// The longest pause between restarts.
pub const MAX_BACKOFF: Duration = Duration::from_secs(10);
/// How long a stopped agent has to exit before it is killed.
pub const STOP_GRACE: Duration = Duration::from_secs(1);

impl AgentSpec {
    fn new(name: &str, command: Command, start: Start) -> Self {
        AgentSpec {
            name: name.to_owned(),
            command,
            start,
            restart: Restart::OnFailure,
            max_restarts: DEFAULT_MAX_RESTARTS,
            window: DEFAULT_RESTART_WINDOW,
            backoff: DEFAULT_BACKOFF,
        }
    }

    /// An agent spawned with its connection on stdin/stdout (as
    /// `ipc_pipe::spawn_async`), with the default connection config.
    /// Restarted on failure by default.
    pub fn pipe(name: &str, command: Command) -> Self {
        AgentSpec::new(name, command, Start::Pipe(Config::default()))
    }

    /// An agent started with `IPC_ADDRESS` set to `address` (where the hub
    /// listens, see [`HubHandle::listen`](crate::HubHandle::listen)); it connects and joins by
    /// itself, and is known by the name it gives and the pid the hub
    /// started. Restarted on failure by default.
    pub fn connecting(name: &str, command: Command, address: Address) -> Self {
        AgentSpec::new(name, command, Start::Connecting(address))
    }

    /// An agent reached at the hub's `address`: [`pipe`](Self::pipe) for
    /// `pipe:stdio` (its stdin/stdout), else [`connecting`](Self::connecting)
    /// to `address`. So a runtime picks a transport by address alone.
    pub fn at(name: &str, command: Command, address: &Address) -> Self {
        match address {
            Address::Stdio => AgentSpec::pipe(name, command),
            other => AgentSpec::connecting(name, command, other.clone()),
        }
    }

    /// Sets when it is restarted.
    pub fn with_restart(mut self, restart: Restart) -> Self {
        self.restart = restart;
        self
    }

    /// At most `max_restarts` within `window`; one more exit and the hub
    /// gives up on it ([`AgentNotice::GaveUp`]).
    pub fn with_intensity(mut self, max_restarts: u32, window: Duration) -> Self {
        self.max_restarts = max_restarts;
        self.window = window;
        self
    }

    /// The pause before the first restart (doubling up to [`MAX_BACKOFF`]).
    pub fn with_backoff(mut self, first: Duration) -> Self {
        self.backoff = first;
        self
    }

    /// The connection config of a pipe agent.
    pub fn with_pipe_config(mut self, config: Config) -> Self {
        if let Start::Pipe(c) = &mut self.start {
            *c = config;
        }
        self
    }
}

/// What happened to a supervised agent's process
/// ([`HubEvent::Agent`](crate::HubEvent::Agent)); its connection's
/// `Left` comes on its own.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum AgentNotice {
    /// Its process exited. `restart`: the pause after which it is started
    /// again, or `None` if it is not (its policy, its intensity, a stop
    /// or the hub's shutdown).
    Exited {
        /// The agent's name in its spec.
        name: String,
        /// The process that exited.
        pid: u32,
        /// How it exited.
        status: std::process::ExitStatus,
        /// When it is started again.
        restart: Option<Duration>,
    },
    /// Its process could not be started (it counts as a failed run).
    FailedToStart {
        /// The agent's name in its spec.
        name: String,
        /// Why.
        error: String,
    },
    /// It exited more often than its intensity allows; the hub stopped
    /// restarting it.
    GaveUp {
        /// The agent's name in its spec.
        name: String,
        /// Restarts within the window.
        restarts: u32,
    },
}

/// A supervised agent's state at the hub.
#[derive(Debug)]
pub(crate) struct Supervised {
    /// The process running now, if any.
    pub(crate) pid: watch::Receiver<Option<u32>>,
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl Supervised {
    /// Asks the task to stop its process (kill after [`STOP_GRACE`]) and
    /// returns the task, to await its reaping.
    pub(crate) fn stop(self) -> tokio::task::JoinHandle<()> {
        self.stop.send_replace(true);
        self.task
    }

    pub(crate) fn abort(&self) {
        self.task.abort();
    }
}

/// Why [`HubHandle::supervise`](crate::HubHandle::supervise) refused a spec.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SuperviseError {
    /// Another supervised agent has this name.
    #[error("an agent named `{0}` is supervised already")]
    NameTaken(String),
    /// The name is not a valid agent name.
    #[error("invalid agent name: {0}")]
    InvalidName(String),
    /// The hub is shutting down.
    #[error("the hub is shutting down")]
    ShuttingDown,
    /// No tokio runtime to run the supervisor on.
    #[error("supervise must be called inside a tokio runtime: {0}")]
    NoRuntime(String),
}

/// A supervised agent did not come up in time.
#[derive(Debug, thiserror::Error)]
#[error("agent `{name}` was not up within {waited:?}")]
pub struct NotUp {
    /// The agent.
    pub name: String,
    /// How long was waited.
    pub waited: Duration,
}

/// Starts the task that runs `spec`.
pub(crate) fn start<O: Owner>(owner: &O, spec: AgentSpec) -> Result<Supervised, SuperviseError> {
    let runtime = tokio::runtime::Handle::try_current()
        .map_err(|e| SuperviseError::NoRuntime(e.to_string()))?;
    let (stop, stopped) = watch::channel(false);
    let (pid_tx, pid) = watch::channel(None);
    let task = runtime.spawn(run(owner.clone(), spec, stopped, pid_tx));
    Ok(Supervised { pid, stop, task })
}

/// Starts the process once; its pid and the child to wait on.
async fn launch<O: Owner>(
    owner: &O,
    spec: &mut AgentSpec,
) -> std::io::Result<tokio::process::Child> {
    match &spec.start {
        Start::Connecting(address) => {
            spec.command.env(ADDRESS_ENV, address.to_string());
            tokio::process::Command::from(clone_command(&spec.command))
                .kill_on_drop(true)
                .spawn()
        }
        Start::Pipe(config) => {
            let process = ipc_pipe::spawn_async(clone_command(&spec.command), config)
                .await
                .map_err(std::io::Error::other)?;
            let (conn, child) = process.into_parts();
            // A failed handshake shows as the process's exit, or as its
            // `Rejected` event; the task waits on the process either way.
            owner.adopt(conn);
            Ok(child)
        }
    }
}

/// `std::process::Command` is not `Clone`: a copy with the same program,
/// arguments, environment and directory.
fn clone_command(command: &Command) -> Command {
    let mut copy = Command::new(command.get_program());
    copy.args(command.get_args());
    for (key, value) in command.get_envs() {
        match value {
            Some(value) => copy.env(key, value),
            None => copy.env_remove(key),
        };
    }
    if let Some(dir) = command.get_current_dir() {
        copy.current_dir(dir);
    }
    copy
}

async fn run<O: Owner>(
    owner: O,
    mut spec: AgentSpec,
    mut stop: watch::Receiver<bool>,
    pid: watch::Sender<Option<u32>>,
) {
    let mut recent: VecDeque<Instant> = VecDeque::new();
    let mut pause = spec.backoff;
    loop {
        let (status, exited_pid) = match launch(&owner, &mut spec).await {
            Ok(mut child) => {
                let child_pid = child.id().unwrap_or(0);
                pid.send_replace(Some(child_pid));
                let exited = tokio::select! {
                    status = child.wait() => Some(status),
                    _ = stop.wait_for(|stop| *stop) => None,
                };
                let Some(status) = exited else {
                    // Asked to stop: a moment to exit, then killed; reaped
                    // either way.
                    let status = match tokio::time::timeout(STOP_GRACE, child.wait()).await {
                        Ok(status) => status,
                        Err(_) => {
                            let _ = child.start_kill();
                            child.wait().await
                        }
                    };
                    pid.send_replace(None);
                    if let Ok(status) = status {
                        owner.notice(AgentNotice::Exited {
                            name: spec.name.clone(),
                            pid: child_pid,
                            status,
                            restart: None,
                        });
                    }
                    return;
                };
                pid.send_replace(None);
                (status, child_pid)
            }
            Err(e) => (Err(e), 0),
        };
        let failed = status.as_ref().map_or(true, |s| !s.success());
        let again = !owner.is_closing()
            && match spec.restart {
                Restart::Never => false,
                Restart::OnFailure => failed,
                Restart::Always => true,
            };
        let now = Instant::now();
        while recent
            .front()
            .is_some_and(|t| now.duration_since(*t) > spec.window)
        {
            recent.pop_front();
        }
        let within = recent.len() < spec.max_restarts as usize;
        let restart = (again && within).then_some(pause);
        match status {
            Ok(status) => owner.notice(AgentNotice::Exited {
                name: spec.name.clone(),
                pid: exited_pid,
                status,
                restart,
            }),
            Err(e) => owner.notice(AgentNotice::FailedToStart {
                name: spec.name.clone(),
                error: e.to_string(),
            }),
        }
        if again && !within {
            owner.notice(AgentNotice::GaveUp {
                name: spec.name.clone(),
                restarts: recent.len() as u32,
            });
        }
        let Some(pause_now) = restart else {
            return;
        };
        recent.push_back(now);
        tokio::select! {
            _ = tokio::time::sleep(pause_now) => {}
            _ = stop.wait_for(|stop| *stop) => return,
        }
        pause = (pause * 2).min(MAX_BACKOFF);
    }
}
