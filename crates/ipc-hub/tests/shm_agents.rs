//! Sixteen agents on one shared-memory name, across real processes:
//! typed calls, 1 MiB and 64 MiB results read in place (a view of the
//! agent's blob, never copied into the hub), an agent killed while it
//! streams 64 MiB blobs, and nothing left behind. Zero copy both ways:
//! 64 MiB replies written in place by the agents and mapped by the hub
//! from the very file they wrote, and a 1 MiB body broadcast to eight
//! agents written once.
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
    /// A result of `size` bytes written in place (a loan): its first 8
    /// bytes are the inode of the memory the agent wrote, then `fill`.
    Loaned {
        size: u64,
        fill: u8,
    },
}

/// What an agent saw of a broadcast body: the inode of the memory it
/// read it from, the inode the body says it was written in, and whether
/// the rest was intact.
#[derive(Debug, Serialize, Deserialize)]
struct Seen {
    mapped: u64,
    written: u64,
    intact: bool,
}

/// The inode of the file mapped at `ptr` in this process (0 if none),
/// from /proc/self/maps: two processes that map one memory file see the
/// same inode.
fn inode_at(ptr: *const u8) -> u64 {
    let at = ptr as usize;
    let maps = std::fs::read_to_string("/proc/self/maps").unwrap_or_default();
    maps.lines()
        .find_map(|line| {
            let mut fields = line.split_whitespace();
            let (lo, hi) = fields.next()?.split_once('-')?;
            let lo = usize::from_str_radix(lo, 16).ok()?;
            let hi = usize::from_str_radix(hi, 16).ok()?;
            let inode: u64 = fields.nth(3)?.parse().ok()?;
            (lo <= at && at < hi).then_some(inode)
        })
        .unwrap_or(0)
}

/// The inode a loaned body names in its first 8 bytes, and whether the
/// rest is all `fill`.
fn named_inode(body: &[u8], fill: u8) -> (u64, bool) {
    let Some((head, rest)) = body.split_first_chunk::<8>() else {
        return (0, false);
    };
    (u64::from_le_bytes(*head), rest.iter().all(|&b| b == fill))
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

/// Starts `n` agents (this binary again) on shared-memory name `name`,
/// playing `ROLE-0` to `ROLE-(n-1)`; killed when dropped.
fn start_agents(name: &str, role: &str, n: usize) -> Result<Vec<tokio::process::Child>, Failed> {
    let mut children = Vec::new();
    for i in 0..n {
        let mut cmd = Command::new(std::env::current_exe()?);
        cmd.env(ROLE_ENV, format!("{role}-{i}")).env(NAME_ENV, name);
        children.push(
            tokio::process::Command::from(cmd)
                .kill_on_drop(true)
                .spawn()?,
        );
    }
    Ok(children)
}

fn sixteen_agents_on_one_name() -> Result<(), Failed> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let name = format!("hub16-{}", std::process::id());
    runtime.block_on(async {
        let mut hub: Hub = Hub::new(HubConfig::default())?;
        hub.listen(AsyncShmListener::bind_name(&name, &config())?)?;
        let mut children = start_agents(&name, "agent", AGENTS)?;
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

/// Zero copy both ways through the hub, across processes: each agent's
/// 64 MiB reply is written in place and the hub maps the very file the
/// agent wrote (no copy on either side); a 1 MiB body the hub writes in
/// place and broadcasts to eight agents is one file that all eight map
/// (written once). The same 64 MiB from `reply_bytes` is a copy, which
/// the check tells apart.
fn zero_copy_both_ways() -> Result<(), Failed> {
    const EIGHT: usize = 8;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let name = format!("hubloan-{}", std::process::id());
    runtime.block_on(async {
        let mut hub: Hub = Hub::new(HubConfig::default())?;
        hub.listen(AsyncShmListener::bind_name(&name, &config())?)?;
        let children = start_agents(&name, "loaner", EIGHT)?;
        let peers = hub.wait_for_peers(EIGHT, LONG).await?;
        let ids: Vec<PeerId> = peers.iter().map(|p| p.id).collect();
        let handle = hub.handle();

        for (i, &peer) in ids.iter().take(2).enumerate() {
            let fill = 0x40 + i as u8;
            let ask = Ask::Loaned {
                size: BIG as u64,
                fill,
            };
            let got = handle.call_bytes(peer, &ask, LONG).await?;
            ensure(got.len() == BIG, || format!("{} bytes", got.len()))?;
            let (written, intact) = named_inode(&got, fill);
            ensure(intact, || "the loaned reply's bytes are wrong".into())?;
            ensure(written != 0 && inode_at(got.as_ptr()) == written, || {
                format!(
                    "the hub reads the reply from inode {}, the agent wrote inode {written}: \
                     a copy",
                    inode_at(got.as_ptr())
                )
            })?;
        }
        // The control: `reply_bytes` of the same size is copied into
        // memory of the transport's (read in place, but not the file the
        // agent filled).
        let copied = handle
            .call_bytes(
                ids[0],
                &Ask::Result {
                    size: BIG as u64,
                    fill: 1,
                },
                LONG,
            )
            .await?;
        ensure(in_blob(&copied), || "reply_bytes not read in place".into())?;

        // One body for all eight, written in place by the hub.
        let mut body = handle.loan(Some(&ids), MIB)?;
        ensure(body.is_shared(), || "a 1 MiB loan is heap memory".into())?;
        body.fill(0x5a);
        let written = inode_at(body.as_ptr());
        body[..8].copy_from_slice(&written.to_le_bytes());
        let report = handle.broadcast_loan(Some(&ids), body)?;
        ensure(report.skipped.is_empty(), || format!("{report:?}"))?;
        let mut seen = 0;
        while seen < EIGHT {
            match tokio::time::timeout(LONG, hub.next()).await? {
                HubEvent::Message { peer, payload } => {
                    let s: Seen = payload.decode()?;
                    ensure(s.intact, || format!("{peer}: the broadcast body is wrong"))?;
                    ensure(s.written == written && s.mapped == written, || {
                        format!(
                            "{peer} read the broadcast from inode {} ({} written): a copy",
                            s.mapped, s.written
                        )
                    })?;
                    seen += 1;
                }
                other => return Err(format!("unexpected {other:?}").into()),
            }
        }
        hub.shutdown(Duration::from_secs(10)).await;
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
            let request = match event {
                AgentEvent::Call(request) => request,
                AgentEvent::Message(payload) => {
                    // A broadcast body: say where it was read from.
                    let body = payload.bytes();
                    let (written, intact) = named_inode(body, 0x5a);
                    let seen = Seen {
                        mapped: inode_at(body.as_ptr()),
                        written,
                        intact,
                    };
                    agent.send(&seen).await?;
                    continue;
                }
                _ => continue,
            };
            match request.decode::<Ask>()? {
                Ask::Double(n) => request.reply(&(n * 2)).await?,
                Ask::Result { size, fill } => {
                    request.reply_bytes(&vec![fill; size as usize]).await?;
                }
                Ask::Loaned { size, fill } => {
                    let mut body = request.loan(size as usize)?;
                    body.fill(fill);
                    let inode = inode_at(body.as_ptr());
                    body[..8].copy_from_slice(&inode.to_le_bytes());
                    request.reply_loan(body).await?;
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
    let tests = vec![
        Trial::test("sixteen_agents_on_one_shm_name", sixteen_agents_on_one_name),
        Trial::test("zero_copy_both_ways", zero_copy_both_ways),
    ];
    libtest_mimic::run(&Arguments::from_args(), tests).exit();
}
