//! A hub that spawns four agents, fans a typed tool call out to them,
//! gathers the answers with a deadline and reports who answered, who died
//! and who hung, then shuts down.
//!
//! `cargo run -p ipc-hub --example hub -- pipe` (or `uds`)
use std::{error::Error, process::Command, time::Duration};

use ipc_core::{ADDRESS_ENV, Address, AsyncConnector, Config};
use ipc_hub::{Agent, CallError, Hub, HubConfig};
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

/// What each agent does when called: answer, answer, die, hang.
const ROLES: [&str; 4] = ["search", "summarize", "crash", "hang"];

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("agent") => agent(args.get(1).map_or("search", String::as_str)).await,
        None | Some("pipe") => hub(false).await,
        Some("uds") => hub(true).await,
        Some(other) => Err(format!("usage: hub [pipe|uds], not {other:?}").into()),
    }
}

async fn hub(over_uds: bool) -> Result<(), Box<dyn Error>> {
    let (config, dir) = (Config::default(), tempfile::tempdir()?);
    let socket = dir.path().join("hub.sock");
    let mut hub = Hub::new(HubConfig::default())?;
    if over_uds {
        hub.listen(ipc_uds::AsyncUdsListener::bind(&socket, &config)?)?;
    }
    let mut uds_agents = Vec::new(); // killed when dropped, if still running
    for role in ROLES {
        let mut agent = Command::new(std::env::current_exe()?);
        agent.args(["agent", role]).env(ADDRESS_ENV, Address::Uds(socket.clone()).to_string());
        if over_uds {
            uds_agents.push(tokio::process::Command::from(agent).kill_on_drop(true).spawn()?);
        } else {
            hub.add(ipc_pipe::spawn_async(agent, &config).await?).await?;
        }
    }
    let wait = Duration::from_secs(10);
    let peers = hub.wait_for_peers(ROLES.len(), wait).await?;
    let call = ToolCall { tool: "search".into(), query: "shared memory".into() };
    let deadline = Duration::from_secs(2);
    let answers: Vec<Result<ToolResult, _>> = hub.call_each(&peers, &call, deadline).await;
    for (peer, answer) in peers.iter().zip(answers) {
        match answer {
            Ok(result) => println!("{peer} answered: {}", result.output),
            Err(CallError::PeerGone(why)) => println!("{peer} died: {why}"),
            Err(CallError::Timeout) => println!("{peer} timed out after {deadline:?}"),
            Err(other) => println!("{peer} failed: {other}"),
        }
    }
    let closed = hub.shutdown(Duration::from_millis(500)).await;
    println!("shutdown: {closed} connected agents told and closed");
    Ok(())
}

async fn agent(role: &str) -> Result<(), Box<dyn Error>> {
    let (config, name, hub) = (Config::default(), format!("{role}-agent"), HubConfig::default());
    let agent = match Address::from_env()? {
        Address::Stdio => Agent::join(ipc_pipe::connect_stdio_async(&config)?, &name, hub).await?,
        uds => Agent::join(ipc_uds::AsyncUds.connect(&uds, &config).await?, &name, hub).await?,
    };
    let answer = move |call: ToolCall| async move {
        let output = format!("{role} ran {} on {:?}", call.tool, call.query);
        match role {
            "crash" => std::process::exit(3),
            "hang" => std::future::pending().await,
            _ => Ok(ToolResult { output }),
        }
    };
    agent.serve(answer).await;
    Ok(())
}
