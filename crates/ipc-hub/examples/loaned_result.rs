//! A large result through the hub over shared memory, two ways: built in
//! a `Vec` and answered with `reply_bytes` (copied into the envelope, then
//! into shared memory), or written in place in a loan and answered with
//! `reply_loan` (passed, not copied). Prints the median call time of each
//! over interleaved trials, with the fastest and slowest.
//!
//! ```text
//! cargo run --release -p ipc-hub --example loaned_result -- [MiB] [trials]
//! ```
//!
//! The agent is this program again, started by the hub (`ROLE`).

use std::time::{Duration, Instant};

use ipc_core::{Address, AsyncConnector, Config};
use ipc_hub::{Agent, AgentEvent, Hub, HubConfig};
use ipc_shm::{AsyncShm, AsyncShmListener};
use serde::{Deserialize, Serialize};

const ROLE: &str = "LOANED_RESULT_AGENT";

#[derive(Serialize, Deserialize)]
enum Ask {
    Copied(u64),
    Loaned(u64),
}

fn config(mib: usize) -> Config {
    Config::default().with_max_message_size((mib + 1) << 20)
}

fn median_and_range(mut v: Vec<Duration>) -> String {
    v.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    format!(
        "median {:.1} ms (fastest {:.1}, slowest {:.1}; {} trials)",
        ms(v[v.len() / 2]),
        ms(v[0]),
        ms(v[v.len() - 1]),
        v.len()
    )
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let mib: usize = args.next().map_or(Ok(64), |a| a.parse())?;
    let trials: usize = args.next().map_or(Ok(9), |a| a.parse())?.max(1);
    if let Ok(name) = std::env::var(ROLE) {
        return agent(&name, mib).await;
    }
    let name = format!("loaned-result-{}", std::process::id());
    let mut hub: Hub = Hub::new(HubConfig::default())?;
    hub.listen(AsyncShmListener::bind_name(&name, &config(mib))?)?;
    let mut child = tokio::process::Command::new(std::env::current_exe()?)
        .args([mib.to_string(), trials.to_string()])
        .env(ROLE, &name)
        .kill_on_drop(true)
        .spawn()?;
    let peer = hub.wait_for_peers(1, Duration::from_secs(30)).await?[0].id;
    let handle = hub.handle();
    let limit = Duration::from_secs(60);
    let (mut copied, mut loaned) = (Vec::new(), Vec::new());
    // One of each first, unmeasured (first-touch costs), then interleaved.
    for trial in 0..=trials {
        for (ask, times) in
            [(Ask::Copied(mib as u64), &mut copied), (Ask::Loaned(mib as u64), &mut loaned)]
        {
            let start = Instant::now();
            let got = handle.call_bytes(peer, &ask, limit).await?;
            let took = start.elapsed();
            if got.len() != mib << 20 || got.iter().step_by(4096).any(|&b| b != 7) {
                return Err("a wrong result".into());
            }
            drop(got);
            if trial > 0 {
                times.push(took);
            }
        }
    }
    println!("a {mib} MiB result through the hub over shared memory:");
    println!("  reply_bytes (built in a Vec): {}", median_and_range(copied));
    println!("  reply_loan (written in place): {}", median_and_range(loaned));
    hub.shutdown(Duration::from_secs(5)).await;
    let _ = child.wait().await;
    Ok(())
}

async fn agent(name: &str, mib: usize) -> Result<(), Box<dyn std::error::Error>> {
    let address = Address::Shm(name.to_owned());
    let conn = AsyncShm.connect(&address, &config(mib)).await?;
    let mut agent: Agent = Agent::join(conn, "result-maker", HubConfig::default()).await?;
    while let Some(event) = agent.next().await {
        let AgentEvent::Call(request) = event else {
            continue;
        };
        match request.decode::<Ask>()? {
            Ask::Copied(mib) => {
                let result = vec![7u8; (mib as usize) << 20];
                request.reply_bytes(&result).await?;
            }
            Ask::Loaned(mib) => {
                let mut result = request.loan((mib as usize) << 20)?;
                result.fill(7);
                request.reply_loan(result).await?;
            }
        }
    }
    Ok(())
}
