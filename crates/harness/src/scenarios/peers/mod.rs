//! The peers group: `shm` against the crate people use instead, iceoryx2
//! (crates.io), round trips between two processes, interleaved trial by
//! trial in the same blocks with the bare shared buffer (the floor).
//! Built only with the harness feature `peers` (`cargo xtask bench`
//! builds the runner with it).

use crate::block::{Block, cell};
use crate::error::Result;
use crate::figure::{Better, FigureId, Statistic, Subject};
use crate::gather::{Gather, Pair};
use crate::plan::{Group, Plan};
use crate::scenarios::{Scenario, baselines, latency, part};
use crate::schema::{Mechanism, RunResults};
use crate::task::AgentTask;
use crate::variant::{Transport, Variant};

pub(crate) mod iceoryx2;

/// Whether the peers can be measured by this build.
pub const AVAILABLE: bool = cfg!(feature = "peers");

/// The peers group.
pub(crate) struct Peers;

impl Scenario for Peers {
    fn group(&self) -> Group {
        Group::Peers
    }

    /// Per size: iceoryx2 beside shm, trial by trial, and the bare shared
    /// buffer doing the same copies. Without shm there is nothing to set
    /// beside the peers.
    fn blocks(&self, p: &Plan) -> Vec<Block> {
        if !p.transports.contains(&Transport::Shm) {
            return Vec::new();
        }
        if !AVAILABLE {
            eprintln!("peers: not measured, the runner was built without the `peers` feature");
            return Vec::new();
        }
        let mut blocks = Vec::new();
        for &size in &p.sizes {
            let (w, n, pin) = (p.latency_warmup, p.latency_samples_at(size), p.pin);
            let theirs = cell(
                format!("iceoryx2 round trip {size} B"),
                1.0,
                move |r, trial| {
                    let m = Mechanism::Iceoryx2;
                    let rt = baselines::back_to_back(m, size, w, n, pin, trial)?;
                    r.peers.others.push(rt);
                    Ok(())
                },
            );
            let variant = Variant::of(Transport::Shm);
            let ours = cell(
                format!("shm round trip {size} B (peers)"),
                1.0,
                move |r, trial| {
                    let rt = latency::back_to_back(variant, size, (w, n), pin, trial)?;
                    r.peers.ours.push(rt);
                    Ok(())
                },
            );
            let floor = cell(
                format!("shared buffer round trip {size} B (peers)"),
                1.0,
                move |r, trial| {
                    let m = Mechanism::SharedBuffer;
                    let rt = baselines::back_to_back(m, size, w, n, pin, trial)?;
                    r.peers.floor.push(rt);
                    Ok(())
                },
            );
            blocks.push(Block {
                group: Group::Peers,
                cells: vec![theirs, ours, floor],
            });
        }
        blocks
    }

    fn figures(&self, r: &RunResults, g: &mut Gather) {
        let id = |subject, regime, size| FigureId {
            group: Group::Peers,
            subject,
            regime,
            size: Some(size),
            agents: None,
            statistic: Statistic::P50,
        };
        g.latency_results(Group::Peers, &r.peers.ours);
        for b in r.peers.others.iter().chain(&r.peers.floor) {
            let base = id(Subject::Mechanism(b.mechanism), b.regime, b.size);
            g.round_trips(base, b.trial, &b.stats, b.cpu_ns_per_op);
        }
    }

    /// Against the peer and the floor measured beside it.
    fn ratios(&self, ids: &[FigureId]) -> Vec<Pair> {
        let ours = ids.iter().filter(|f| {
            matches!(
                (f.subject, f.group, f.statistic),
                (Subject::Transport(_), Group::Peers, Statistic::P50)
            )
        });
        ours.flat_map(|&fid| {
            [Mechanism::Iceoryx2, Mechanism::SharedBuffer].map(|m| {
                let under = FigureId {
                    subject: Subject::Mechanism(m),
                    ..fid
                };
                (fid, under, Better::Lower)
            })
        })
        .collect()
    }

    fn agent(&self, task: serde_json::Value, _: &AgentTask) -> Result<()> {
        let echo: iceoryx2::EchoPart = part(task)?;
        iceoryx2::echo(echo.size, &echo.service)
    }
}
