//! A hub that supervises four agents, fans a typed tool call out to them,
//! gathers the answers with a deadline and reports who answered, who died
//! (and whether it is restarted) and who hung, then shuts down, stopping
//! and reaping every process it started.
//!
//! `cargo run -p ipc-hub --example hub -- ADDRESS`: the hub's address picks
//! the transport: `pipe:stdio` (the default; the hub starts pipe agents),
//! `uds:/tmp/hub.sock`, `shm:hub` (agents connect to it). `--python CMD`
//! adds a fifth agent, a Python one (examples/python/tool_agent.py).
use std::{error::Error, process::Command, time::Duration};

use ipc_core::{Address, Config};
use ipc_hub::{Agent, AgentSpec, Call, CallError, Hub, HubConfig, Restart};
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize)]
struct ToolCall {
    tool: String,
    query: String,
}

#[derive(Serialize, Deserialize)]
struct ToolResult {
    output: String,
}

impl Call for ToolCall {
    type Answer = ToolResult;
}

/// What each agent does when called: answer, answer, die, hang.
const ROLES: [&str; 4] = ["search", "summarize", "crash", "hang"];

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let python = args.iter().position(|a| a == "--python").and_then(|i| args.get(i + 1));
    match args.first().map(String::as_str) {
        Some("agent") => agent(args.get(1).map_or("search", String::as_str)).await,
        Some("--python") | None => hub("pipe:stdio".parse()?, python).await,
        Some(address) => hub(address.parse()?, python).await,
    }
}

async fn hub(address: Address, python: Option<&String>) -> Result<(), Box<dyn Error>> {
    let mut hub = Hub::new(HubConfig::default())?;
    if address != Address::Stdio {
        // Any transport by its address (`ipc-any`): uds, shm, zenoh.
        hub.listen(ipc_any::bind_async(&address, &Config::default())?)?;
    }
    for role in ROLES {
        let (name, mut command) = (format!("{role}-agent"), Command::new(std::env::current_exe()?));
        command.args(["agent", role]);
        let spec = match address {
            Address::Stdio => AgentSpec::pipe(&name, command),
            _ => AgentSpec::connecting(&name, command, address.clone()),
        };
        hub.supervise(spec.with_restart(Restart::Never))?;
    }
    if let Some([program, args @ ..]) =
        python.map(|p| p.split_whitespace().collect::<Vec<_>>()).as_deref()
    {
        let mut command = Command::new(program);
        command.args(args);
        let spec = match address {
            Address::Stdio => AgentSpec::pipe("python-agent", command),
            _ => AgentSpec::connecting("python-agent", command, address.clone()),
        };
        hub.supervise(spec.with_restart(Restart::Never))?;
    }
    let agents = ROLES.len() + usize::from(python.is_some());
    let peers = hub.wait_for_peers(agents, Duration::from_secs(10)).await?;
    let call = ToolCall { tool: "search".into(), query: "shared memory".into() };
    let deadline = Duration::from_secs(2);
    let answers: Vec<Result<ToolResult, _>> = hub.call_each(&peers, &call, deadline).await;
    // Or one agent, its answer's type inferred: hub.ask(peer, &call, deadline).
    for (peer, answer) in peers.iter().zip(answers) {
        match answer {
            Ok(result) => println!("{peer} answered: {}", result.output),
            Err(CallError::PeerGone(why)) => println!("{peer} died: {why}"),
            Err(CallError::Timeout) => println!("{peer} timed out after {deadline:?}"),
            Err(other) => println!("{peer} failed: {other}"),
        }
    }
    let closed = hub.shutdown(Duration::from_millis(500)).await.closed;
    println!("shutdown: {closed} agents closed when told; every process the hub started is reaped");
    Ok(())
}

async fn agent(role: &str) -> Result<(), Box<dyn Error>> {
    // Whichever transport the hub gave in IPC_ADDRESS (pipe:stdio, uds:, shm:).
    let conn = ipc_any::connect_async(&Address::from_env()?, &Config::default()).await?;
    let agent = Agent::join(conn, &format!("{role}-agent"), HubConfig::default()).await?;
    let answer = move |call: ToolCall| async move {
        let output = format!("{role} ran {} on {:?}", call.tool, call.query);
        match role {
            "crash" => std::process::exit(3),
            "hang" => std::future::pending().await,
            _ => Ok(ToolResult { output }),
        }
    };
    agent.serve_calls(answer).await;
    Ok(())
}
