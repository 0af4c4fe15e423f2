//! A hub that spawns four agents, fans a typed tool call out to them,
//! gathers the answers with a deadline and reports who answered, who died
//! and who hung, then shuts down.
//!
//! `cargo run -p ipc-hub --example hub -- pipe` (or `uds`, or `shm`)
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
        None | Some("pipe") => hub(None).await,
        Some("uds") => hub(Some("uds")).await,
        Some("shm") => hub(Some("shm")).await,
        Some(other) => Err(format!("usage: hub [pipe|uds|shm], not {other:?}").into()),
    }
}

async fn hub(listen: Option<&str>) -> Result<(), Box<dyn Error>> {
    let (config, dir) = (Config::default(), tempfile::tempdir()?);
    let mut hub = Hub::new(HubConfig::default())?;
    let address = match listen {
        Some("shm") => Address::Shm(format!("hub-example-{}", std::process::id())),
        _ => Address::Uds(dir.path().join("hub.sock")),
    };
    match &address {
        Address::Shm(_) if listen.is_some() => {
            hub.listen(ipc_shm::AsyncShmListener::bind_address(&address, &config)?)?
        }
        Address::Uds(path) if listen.is_some() => {
            hub.listen(ipc_uds::AsyncUdsListener::bind(path, &config)?)?
        }
        _ => {}
    }
    let mut listening_agents = Vec::new(); // killed when dropped, if still running
    for role in ROLES {
        let mut agent = Command::new(std::env::current_exe()?);
        agent.args(["agent", role]).env(ADDRESS_ENV, address.to_string());
        if listen.is_some() {
            listening_agents.push(tokio::process::Command::from(agent).kill_on_drop(true).spawn()?);
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
    let closed = hub.shutdown(Duration::from_millis(500)).await.closed;
    println!("shutdown: {closed} connected agents told and closed");
    Ok(())
}

async fn agent(role: &str) -> Result<(), Box<dyn Error>> {
    let (config, name, hub) = (Config::default(), format!("{role}-agent"), HubConfig::default());
    let agent = match Address::from_env()? {
        Address::Stdio => Agent::join(ipc_pipe::connect_stdio_async(&config)?, &name, hub).await?,
        shm @ Address::Shm(_) => {
            Agent::join(ipc_shm::AsyncShm.connect(&shm, &config).await?, &name, hub).await?
        }
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
