//! Sixteen agents on one shared-memory name, across real processes:
//! typed calls, 1 MiB and 64 MiB results read in place (a view of the
//! agent's blob, never copied into the hub), an agent killed while it
//! streams 64 MiB blobs, and nothing left behind.
//!
//! `harness = false`: this binary re-runs itself as the agent (`ROLE_ENV`).

use std::process::Command;
use std::time::Duration;

use ipc_core::{Address, AsyncConnector, Config};
use ipc_hub::{Agent, AgentEvent, CallError, Hub, HubConfig, HubEvent, LeaveReason, PeerId};
use ipc_shm::{AsyncShm, AsyncShmListener};
use libtest_mimic::{Arguments, Failed, Trial};
use serde::{Deserialize, Serialize};

const ROLE_ENV: &str = "IPC_HUB_SHM_ROLE";
const NAME_ENV: &str = "IPC_HUB_SHM_NAME";
const AGENTS: usize = 16;
const MIB: usize = 1 << 20;
const BIG: usize = 64 * MIB;
const LONG: Duration = Duration::from_secs(60);

/// Room for a 64 MiB result and its envelope.
fn config() -> Config {
    Config::default().with_max_message_size(BIG + MIB)
}

#[derive(Debug, Serialize, Deserialize)]
enum Ask {
    Double(u64),
    /// A result of `size` bytes of `fill`, as raw bytes.
    Result {
        size: u64,
        fill: u8,
    },
    /// One-way messages of `size` bytes, until the agent dies.
    Stream {
        size: u64,
    },
}

fn ensure(ok: bool, what: impl FnOnce() -> String) -> Result<(), Failed> {
    if ok { Ok(()) } else { Err(what().into()) }
}

/// True if `bytes` lie inside a mapping of an ipc-shm blob or blob slot:
/// read in place, not copied.
fn in_blob(bytes: &[u8]) -> bool {
    let (start, end) = (
        bytes.as_ptr() as usize,
        bytes.as_ptr() as usize + bytes.len(),
    );
    let maps = std::fs::read_to_string("/proc/self/maps").unwrap_or_default();
    maps.lines().any(|line| {
        let Some((lo, hi)) = line
            .split_whitespace()
            .next()
            .and_then(|r| r.split_once('-'))
        else {
            return false;
        };
        let lo = usize::from_str_radix(lo, 16).unwrap_or(usize::MAX);
        let hi = usize::from_str_radix(hi, 16).unwrap_or(0);
        let shared = line.contains("memfd:ipc-shm blob") || line.contains("memfd:ipc-shm slot");
        shared && lo <= start && end <= hi
    })
}

fn leftovers(name: &str) -> Vec<String> {
    let mut held: Vec<String> = std::fs::read_dir("/dev/shm")
        .map(|d| {
            d.filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.contains(name))
                .collect()
        })
        .unwrap_or_default();
    let maps = std::fs::read_to_string("/proc/self/maps").unwrap_or_default();
    held.extend(
        maps.lines()
            .filter(|l| l.contains(&format!("memfd:ipc-shm:{name} ")))
            .map(str::to_owned),
    );
    held
}

async fn results(hub: &ipc_hub::HubHandle, peers: &[PeerId], size: usize) -> Result<(), Failed> {
    let calls = peers.iter().enumerate().map(|(i, &peer)| async move {
        let ask = Ask::Result {
            size: size as u64,
            fill: i as u8,
        };
        (i, hub.call_bytes(peer, &ask, LONG).await)
    });
    for (i, got) in futures::future::join_all(calls).await {
        let got = got?;
        ensure(got.len() == size, || {
            format!("agent {i}: {} bytes", got.len())
        })?;
        ensure(got.iter().all(|&b| b == i as u8), || {
            format!("agent {i}: wrong bytes")
        })?;
        ensure(in_blob(&got), || {
            format!("agent {i}: a {size}-byte result was copied, not read in place")
        })?;
        // The transport says so too, without /proc.
        ensure(ipc_shm::is_shared(&got), || {
            format!("agent {i}: ipc_shm::is_shared says the result was copied")
        })?;
    }
    Ok(())
}

fn sixteen_agents_on_one_name() -> Result<(), Failed> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let name = format!("hub16-{}", std::process::id());
    runtime.block_on(async {
        let mut hub: Hub = Hub::new(HubConfig::default())?;
        hub.listen(AsyncShmListener::bind(&name, &config())?)?;
        let mut children = Vec::new();
        for i in 0..AGENTS {
            let mut cmd = Command::new(std::env::current_exe()?);
            cmd.env(ROLE_ENV, format!("agent-{i}")).env(NAME_ENV, &name);
            children.push(
                tokio::process::Command::from(cmd)
                    .kill_on_drop(true)
                    .spawn()?,
            );
        }
        let mut peers = hub.wait_for_peers(AGENTS, LONG).await?;
        peers.sort_by_key(|p| p.name.clone());
        let ids: Vec<PeerId> = peers.iter().map(|p| p.id).collect();
        let handle = hub.handle();

        let doubled = handle
            .call_each(&ids, &Ask::Double(21), LONG)
            .await
            .into_iter()
            .collect::<Result<Vec<u64>, CallError>>()?;
        ensure(doubled == vec![42; AGENTS], || format!("{doubled:?}"))?;
        results(&handle, &ids, MIB).await?;
        results(&handle, &ids[..4], BIG).await?;

        // Agent 0 streams 64 MiB messages; it is killed after the first.
        let doomed = ids[0];
        let streaming = {
            let handle = handle.clone();
            tokio::spawn(async move {
                handle
                    .call_bytes(doomed, &Ask::Stream { size: BIG as u64 }, LONG)
                    .await
            })
        };
        let mut streamed = 0;
        let mut left = None;
        while left.is_none() {
            match tokio::time::timeout(LONG, hub.next()).await? {
                HubEvent::Message { peer, payload } if peer == doomed => {
                    ensure(payload.bytes().len() == BIG, || "a torn blob".into())?;
                    ensure(in_blob(payload.bytes()), || {
                        "a streamed blob was copied".into()
                    })?;
                    streamed += 1;
                    if streamed == 1 {
                        children[0].start_kill()?;
                    }
                }
                HubEvent::Left { peer, reason } if peer.id == doomed => left = Some(reason),
                other => return Err(format!("unexpected {other:?}").into()),
            }
        }
        ensure(matches!(left, Some(LeaveReason::Disconnected)), || {
            format!("the killed agent left with {left:?}")
        })?;
        let call = streaming.await?;
        ensure(matches!(call, Err(CallError::PeerGone(_))), || {
            format!("the killed agent's call ended with {call:?}")
        })?;
        println!("    the killed agent streamed {streamed} blobs of 64 MiB first");

        // The fifteen others are served as before.
        let doubled = handle
            .call_each(&ids[1..], &Ask::Double(5), LONG)
            .await
            .into_iter()
            .collect::<Result<Vec<u64>, CallError>>()?;
        ensure(doubled == vec![10; AGENTS - 1], || format!("{doubled:?}"))?;
        results(&handle, &ids[1..], MIB).await?;

        let told = hub.shutdown(Duration::from_secs(10)).await.closed;
        ensure(told == AGENTS - 1, || {
            format!("shutdown told {told} agents")
        })?;
        for mut child in children {
            let _ = tokio::time::timeout(LONG, child.wait()).await;
        }
        Ok::<_, Failed>(())
    })?;
    let left = leftovers(&name);
    ensure(left.is_empty(), || format!("left behind: {left:?}"))
}

fn agent_main(role: &str) -> Result<(), Box<dyn std::error::Error>> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let address = Address::Shm(std::env::var(NAME_ENV)?);
        let conn = AsyncShm.connect(&address, &config()).await?;
        let mut agent: Agent = Agent::join(conn, role, HubConfig::default()).await?;
        while let Some(event) = agent.next().await {
            let AgentEvent::Call(request) = event else {
                continue;
            };
            match request.decode::<Ask>()? {
                Ask::Double(n) => request.reply(&(n * 2)).await?,
                Ask::Result { size, fill } => {
                    request.reply_bytes(&vec![fill; size as usize]).await?;
                }
                Ask::Stream { size } => {
                    let body = vec![0x77; size as usize];
                    loop {
                        agent.send_bytes(&body).await?;
                    }
                }
            }
        }
        Ok(())
    })
}

fn main() {
    if let Ok(role) = std::env::var(ROLE_ENV) {
        if let Err(e) = agent_main(&role) {
            eprintln!("agent {role}: {e}");
            std::process::exit(1);
        }
        return;
    }
    let tests = vec![Trial::test(
        "sixteen_agents_on_one_shm_name",
        sixteen_agents_on_one_name,
    )];
    libtest_mimic::run(&Arguments::from_args(), tests).exit();
}
