//! A burst of small messages from the hub to one agent, per transport:
//! how many a second reach the agent. The hub sends them one by one from
//! one task, as fast as `send_bytes_to` takes them; once the connection
//! is full they wait in the agent's queue, and over a byte stream (pipe,
//! Unix socket) the hub's writer gathers those into one write each time.
//! Prints the median rate over interleaved trials, with the slowest and
//! fastest.
//!
//! ```text
//! cargo run --release -p ipc-hub --example burst -- [messages] [bytes] [trials] [transports]
//! ```
//!
//! `transports`: a comma-separated choice of `pipe`, `uds` and `shm`
//! (all three by default).
//!
//! The agent is this program again, started by the hub (`ROLE`).

use std::time::{Duration, Instant};

use ipc_core::{Address, AsyncConnector, Config};
use ipc_hub::{Agent, AgentEvent, Hub, HubConfig};

const ROLE: &str = "BURST_AGENT";
const LIMIT: Duration = Duration::from_secs(60);

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let messages: u64 = args.next().map_or(Ok(200_000), |a| a.parse())?.max(1);
    let size: usize = args.next().map_or(Ok(64), |a| a.parse())?;
    let trials: usize = args.next().map_or(Ok(5), |a| a.parse())?.max(1);
    let chosen = args.next().unwrap_or_else(|| "pipe,uds,shm".into());
    let vias: Vec<&str> = ["pipe", "uds", "shm"]
        .into_iter()
        .filter(|via| chosen.split(',').any(|c| c == *via))
        .collect();
    if vias.is_empty() {
        return Err(format!("no transport in {chosen:?}: choose from pipe, uds, shm").into());
    }
    if let Ok(address) = std::env::var(ROLE) {
        return agent(&address).await;
    }
    let dir = tempfile::tempdir()?;
    let mut rates: Vec<Vec<f64>> = vec![Vec::new(); vias.len()];
    for _ in 0..trials {
        for (via, rates) in vias.iter().zip(&mut rates) {
            rates.push(burst(via, dir.path(), messages, size).await?);
        }
    }
    println!("{messages} messages of {size} B from the hub to one agent, per second:");
    for (via, mut rates) in vias.iter().zip(rates) {
        rates.sort_by(f64::total_cmp);
        println!(
            "  {via:>4}: median {:.0} (slowest {:.0}, fastest {:.0}; {trials} trials)",
            rates[rates.len() / 2],
            rates[0],
            rates[rates.len() - 1]
        );
    }
    Ok(())
}

/// One burst over `via`: messages a second, until the agent has them all.
async fn burst(
    via: &str,
    dir: &std::path::Path,
    messages: u64,
    size: usize,
) -> Result<f64, Box<dyn std::error::Error>> {
    let mut hub: Hub = Hub::new(HubConfig::default())?;
    let mut agent = tokio::process::Command::new(std::env::current_exe()?);
    agent.kill_on_drop(true);
    let child = match via {
        "pipe" => {
            agent.env(ROLE, "pipe");
            let process = ipc_pipe::spawn_async(agent.into_std(), &Config::default()).await?;
            hub.add(process).await?;
            None
        }
        "uds" => {
            let path = dir.join(format!("burst-{}.sock", std::process::id()));
            let _ = std::fs::remove_file(&path);
            let listener = ipc_uds::AsyncUdsListener::bind_path(&path, &Config::default())?;
            hub.listen(listener)?;
            agent.env(ROLE, format!("uds:{}", path.display()));
            Some(agent.spawn()?)
        }
        _ => {
            let name = format!("burst-{}", std::process::id());
            hub.listen(ipc_shm::AsyncShmListener::bind_name(&name, &Config::default())?)?;
            agent.env(ROLE, format!("shm:{name}"));
            Some(agent.spawn()?)
        }
    };
    let peer = hub.wait_for_peers(1, LIMIT).await?[0].id;
    let handle = hub.handle();
    let message = vec![7u8; size];
    let start = Instant::now();
    for _ in 0..messages {
        handle.send_bytes_to(peer, &message).await?;
    }
    // Answered once the agent has read every message before the call.
    let got: u64 = handle.call(peer, &(), LIMIT).await?;
    let took = start.elapsed();
    if got != messages {
        return Err(format!("{via}: the agent got {got} of {messages} messages").into());
    }
    hub.shutdown(Duration::from_secs(5)).await;
    if let Some(mut child) = child {
        let _ = child.wait().await;
    }
    Ok(messages as f64 / took.as_secs_f64())
}

/// Counts messages; answers a call with the count.
async fn agent(address: &str) -> Result<(), Box<dyn std::error::Error>> {
    let config = Config::default();
    let hub = HubConfig::default();
    let mut agent: Agent = match address.split_once(':') {
        Some(("uds", path)) => {
            let address = Address::Uds(path.into());
            Agent::join(ipc_uds::AsyncUds.connect(&address, &config).await?, "burst", hub).await?
        }
        Some(("shm", name)) => {
            let address = Address::Shm(name.into());
            Agent::join(ipc_shm::AsyncShm.connect(&address, &config).await?, "burst", hub).await?
        }
        _ => Agent::join(ipc_pipe::connect_stdio_async(&config)?, "burst", hub).await?,
    };
    let mut count = 0u64;
    while let Some(event) = agent.next().await {
        match event {
            AgentEvent::Message(_) => count += 1,
            AgentEvent::Call(request) => request.reply(&count).await?,
            _ => break,
        }
    }
    Ok(())
}
