//! A hub that supervises four agents, fans a typed tool call out to them,
//! gathers the answers with a deadline and reports who answered, who died
//! (`PeerGone`) and who hung (`Timeout`), then shuts down, stopping and
//! reaping every process it started.
//!
//! `cargo run -p ipc-hub --example hub -- [ADDRESS [PYTHON]]`: the hub's
//! address picks the transport: `pipe:stdio` (the default; the hub starts
//! pipe agents), `uds:/tmp/hub.sock`, `shm:hub`, `zenoh:hub@tcp/127.0.0.1:0`
//! (agents connect to it). A second argument, a command line, adds a fifth
//! agent, a Python one (examples/python/tool_agent.py).
use std::{error::Error, process::Command, time::Duration};

use ipc_core::{Address, Config};
use ipc_hub::{Agent, AgentSpec, Call, Hub, HubConfig};
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

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if let Some(role) = args.get(1).filter(|_| args[0] == "agent") {
        return agent(role.clone().leak()).await;
    }
    let (mut address, python): (Address, _) =
        (args.first().map_or("pipe:stdio", |a| a).parse()?, args.get(1));
    let mut hub = Hub::new(HubConfig::default())?;
    if address != Address::Stdio {
        // Any transport by its address (`ipc-any`); agents get the address it bound.
        address = hub.listen(ipc_any::bind_async(&address, &Config::default())?)?;
    }
    let roles = ["search", "summarize", "crash", "hang"];
    for role in roles.into_iter().chain(python.map(|_| "python")) {
        // This program as an agent, or the Python one through the shell.
        let mut command =
            Command::new(if role == "python" { "sh".into() } else { std::env::current_exe()? });
        command
            .args(python.filter(|_| role == "python").map_or(["agent", role], |line| ["-c", line]));
        // Restarted if it fails (the crash agent is, once the call has seen it die).
        hub.supervise(AgentSpec::at(&format!("{role}-agent"), command, &address))?;
    }
    let agents = roles.len() + usize::from(python.is_some());
    let peers = hub.wait_for_peers(agents, Duration::from_secs(10)).await?;
    let call = ToolCall { tool: "search".into(), query: "shared memory".into() };
    // Or one agent, its answer's type inferred: hub.ask(peer, &call, deadline).
    let answers = hub.call_each(&peers, &call, Duration::from_secs(2)).await;
    for (peer, answer) in peers.iter().zip(answers) {
        println!("{peer}: {:?}", answer.map(|result: ToolResult| result.output));
    }
    let closed = hub.shutdown(Duration::from_millis(500)).await.closed;
    println!("shutdown: {closed} agents closed when told; every process the hub started is reaped");
    Ok(())
}

async fn agent(role: &'static str) -> Result<(), Box<dyn Error>> {
    // Whichever transport the hub gave in IPC_ADDRESS (pipe:stdio, uds:, shm:, zenoh:).
    let conn = ipc_any::connect_async(&Address::from_env()?, &Config::default()).await?;
    let agent = Agent::join(conn, &format!("{role}-agent"), HubConfig::default()).await?;
    let answer = move |call: ToolCall| async move {
        match role {
            "crash" => std::process::exit(3),
            "hang" => std::future::pending().await,
            _ => Ok(ToolResult { output: format!("{role} ran {} on {:?}", call.tool, call.query) }),
        }
    };
    agent.serve_calls(answer).await;
    Ok(())
}
