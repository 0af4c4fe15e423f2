//! A hub on a zenoh network and two agents that join it and answer typed
//! calls: one in another process on loopback, one in another network
//! namespace, reached through a veth pair (as root with iproute2; without
//! them, both agents run on loopback and the example says so).
//!
//! `cargo run -p ipc-zenoh --example remote_agents`
use std::{error::Error, process::Command, time::Duration};

use ipc_core::{ADDRESS_ENV, Address, AsyncConnector, AsyncListener, Config};
use ipc_hub::{Agent, Hub, HubConfig};
use ipc_zenoh::{AsyncZenoh, AsyncZenohListener};
use serde::{Deserialize, Serialize};

use ipc_zenoh::netns;

#[derive(Serialize, Deserialize)]
struct Task {
    text: String,
}

#[derive(Serialize, Deserialize)]
struct Answer {
    words: usize,
    from: String,
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<(), Box<dyn Error + Send + Sync>> {
    match std::env::args().nth(1).as_deref() {
        Some("agent") => agent().await,
        _ => hub().await,
    }
}

async fn hub() -> Result<(), Box<dyn Error + Send + Sync>> {
    let namespace = match netns::unavailable() {
        None => Some(netns::Namespace::create("x")?),
        Some(why) => {
            println!("no network namespace ({why}): both agents run on loopback");
            None
        }
    };
    // Listen on loopback, and on this side of the veth pair if there is one.
    let mut endpoints = vec!["tcp/127.0.0.1:0".to_owned()];
    if let Some(ns) = &namespace {
        endpoints.push(format!("tcp/{}:0", ns.host_ip()));
    }
    let address = Address::Zenoh {
        name: "example".into(),
        key: None,
        endpoints,
    };
    // The hub makes a key; the address it reports carries it.
    let listener = AsyncZenohListener::bind(&address, &Config::default())?;
    let Address::Zenoh {
        name,
        key,
        endpoints,
    } = listener.address().clone()
    else {
        unreachable!()
    };
    println!("hub `{name}` listening at {}", endpoints.join(","));
    let mut hub = Hub::new(HubConfig::default())?;
    hub.listen(listener)?;

    // Each agent gets one string: the hub's name and key, and the endpoint
    // it can reach.
    let exe = std::env::current_exe()?;
    let mut agents = Vec::new();
    for (i, endpoint) in endpoints.iter().enumerate() {
        let mut cmd = match (&namespace, i) {
            (Some(ns), 1) => ns.command(&exe),
            _ => Command::new(&exe),
        };
        let reach = Address::Zenoh {
            name: name.clone(),
            key: key.clone(),
            endpoints: vec![endpoint.clone()],
        };
        cmd.arg("agent").env(ADDRESS_ENV, reach.to_string());
        agents.push(
            tokio::process::Command::from(cmd)
                .kill_on_drop(true)
                .spawn()?,
        );
    }
    if namespace.is_none() {
        let reach = Address::Zenoh {
            name: name.clone(),
            key: key.clone(),
            endpoints: vec![endpoints[0].clone()],
        };
        let mut cmd = tokio::process::Command::new(&exe);
        cmd.arg("agent")
            .env(ADDRESS_ENV, reach.to_string())
            .kill_on_drop(true);
        agents.push(cmd.spawn()?);
    }

    let peers = hub.wait_for_peers(2, Duration::from_secs(20)).await?;
    let task = Task {
        text: "agents on two networks answer one hub".into(),
    };
    let answers: Vec<Result<Answer, _>> =
        hub.call_each(&peers, &task, Duration::from_secs(10)).await;
    for (peer, answer) in peers.iter().zip(answers) {
        match answer {
            Ok(a) => println!("{peer} (via {}) counted {} words", a.from, a.words),
            Err(e) => println!("{peer} failed: {e}"),
        }
    }
    let closed = hub.shutdown(Duration::from_secs(2)).await.closed;
    println!("shutdown: {closed} agents told and closed");
    for mut agent in agents {
        agent.wait().await?;
    }
    Ok(())
}

async fn agent() -> Result<(), Box<dyn Error + Send + Sync>> {
    let address = Address::from_env()?;
    let Address::Zenoh { endpoints, .. } = &address else {
        return Err(format!("not a zenoh address: {address}").into());
    };
    let from = endpoints.join(",");
    let conn = AsyncZenoh.connect(&address, &Config::default()).await?;
    let agent = Agent::join(
        conn,
        &format!("agent-{}", std::process::id()),
        HubConfig::default(),
    )
    .await?;
    agent
        .serve(move |task: Task| {
            let from = from.clone();
            async move {
                Ok(Answer {
                    words: task.text.split_whitespace().count(),
                    from,
                })
            }
        })
        .await;
    Ok(())
}
