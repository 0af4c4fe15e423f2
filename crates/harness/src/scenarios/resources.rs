//! What agents cost at rest, and whether connecting and disconnecting
//! leaks memory.

use std::time::{Duration, Instant};

use ipc_core::{FrameReceiver, FrameSender};

use crate::block::{Block, cell, per_transport};
use crate::error::{HarnessError, Result};
use crate::figure::{Better, FigureId, Statistic, Subject, Unit};
use crate::gather::Gather;
use crate::plan::{Group, Plan};
use crate::procfs;
use crate::scenarios::Scenario;
use crate::schema::{ChurnResult, IdleResult, Regime, RunResults};
use crate::task::{AgentReport, AgentTask, Role};
use crate::transport::ConnectionExt;
use crate::transport::{
    AnyListener, Transport, Variant, address_for, spawn_agent, spawn_agents_of, unique_name,
};
use ipc_core::Listener as _;

/// The resources group: per count, idle agents of every transport
/// interleaved; then connect/disconnect cycles.
pub(crate) struct Resources;

impl Scenario for Resources {
    fn group(&self) -> Group {
        Group::Resources
    }

    fn blocks(&self, p: &Plan) -> Vec<Block> {
        let group = Group::Resources;
        let window = Duration::from_millis(p.idle_window_ms);
        let mut blocks = Vec::new();
        for &agents in &p.idle_agents {
            let weight = 1.0 + window.as_secs_f64() * 4.0;
            let cells = per_transport(p, |t| {
                let variant = Variant::of(t);
                cell(
                    format!("{t}: {agents} idle agents"),
                    weight,
                    move |r, trial| {
                        let mut idle = idle(variant, agents, window)?;
                        idle.trial = trial;
                        r.idle.push(idle);
                        Ok(())
                    },
                )
            });
            blocks.push(Block { group, cells });
        }
        let cycles = p.churn_cycles;
        let cells = per_transport(p, |t| {
            let variant = Variant::of(t);
            cell(
                format!("{t}: {cycles} connect/disconnect cycles"),
                3.0,
                move |r, trial| {
                    let mut churn = churn(variant, cycles)?;
                    churn.trial = trial;
                    r.churn.push(churn);
                    Ok(())
                },
            )
        });
        blocks.push(Block { group, cells });
        blocks
    }

    fn figures(&self, r: &RunResults, g: &mut Gather) {
        for i in &r.idle {
            let base = FigureId {
                group: Group::Resources,
                subject: Subject::Transport(i.variant),
                regime: Regime::Idle,
                size: None,
                agents: Some(i.agents),
                statistic: Statistic::CpuPercent,
            };
            let cpu = i.agents_cpu_percent;
            g.put(base, Unit::PercentCore, Better::Lower, i.trial, cpu);
            let rss = FigureId {
                statistic: Statistic::Rss,
                ..base
            };
            g.put(rss, Unit::Kib, Better::Lower, i.trial, i.rss_kib_max as f64);
            if let Some(kib) = i.shm_kib_per_agent {
                let shared = FigureId {
                    statistic: Statistic::SharedMemory,
                    ..base
                };
                g.put(shared, Unit::Kib, Better::Lower, i.trial, kib);
            }
        }
        for c in &r.churn {
            let fid = FigureId {
                group: Group::Resources,
                subject: Subject::Transport(c.variant),
                regime: Regime::Churn,
                size: None,
                agents: None,
                statistic: Statistic::Growth,
            };
            let growth = c
                .parent_rss_growth_kib
                .max(c.agent_rss_growth_kib.unwrap_or(0));
            g.put(fid, Unit::Kib, Better::Lower, c.trial, growth as f64);
        }
    }
}

/// RSS growth over the churn cycles (after warm-up) above which a leak is
/// suspected: generous, since allocators keep freed memory.
pub const LEAK_TOLERANCE_KIB: i64 = 1024;

/// Time for new agents to settle (finish starting, park) before measuring.
const SETTLE: Duration = Duration::from_millis(300);

/// `agents` idle agents connected over `variant`, after a little traffic:
/// their CPU while the parent waits on them (`window`, at least
/// `IDLE_RELEASE` and a moment), their resident memory, and the shared
/// memory each connection still holds.
pub fn idle(variant: Variant, agents: usize, window: Duration) -> Result<IdleResult> {
    let task = AgentTask {
        cpu: None,
        role: Role::Idle,
        variant,
    };
    // On one address, as a hub's agents are; each a process linking only
    // its transport, as a user's agent is (the runner plays it when those
    // binaries were not built, and the result says so).
    let runner = std::env::current_exe()?;
    let program = crate::idle_agent::program(&variant).unwrap_or(runner);
    let mut spawned = spawn_agents_of(&program, &task, agents)?;
    // Some traffic first, as a working agent has had: 64 messages of
    // 4 KiB (through every page of a default ring; the agents take and
    // drop them).
    for agent in &mut spawned {
        for i in 0..64u8 {
            agent.conn().send(&[i; 4096])?;
        }
    }
    std::thread::sleep(SETTLE);
    let pids: Vec<u32> = spawned.iter().map(|a| a.pid()).collect();
    let cpu = |pids: &[u32]| -> Result<u64> {
        pids.iter()
            .map(|&pid| {
                procfs::cpu_ns(pid)
                    .ok_or_else(|| HarnessError::Agent(format!("agent {pid} is gone")))
            })
            .sum()
    };
    let agents_before = cpu(&pids)?;
    let parent_before = procfs::self_cpu_ns();
    let start = Instant::now();
    // The parent waits on every connection, as a hub's readers do: long
    // enough for idle shared memory to be given back.
    let wait = window.max(ipc_shm::IDLE_RELEASE + SETTLE);
    let readers: Vec<_> = spawned
        .iter_mut()
        .map(|a| {
            let mut conn = a.take_conn();
            std::thread::spawn(move || match conn.recv_timeout(wait) {
                Err(ipc_core::RecvError::Timeout) => Ok(conn),
                other => Err(HarnessError::Agent(format!(
                    "an idle agent sent {:?}",
                    other.map(|b| b.len())
                ))),
            })
        })
        .collect();
    let mut conns = Vec::with_capacity(readers.len());
    for reader in readers {
        conns.push(
            reader
                .join()
                .map_err(|_| HarnessError::Agent("reader thread panicked".into()))??,
        );
    }
    let elapsed = start.elapsed();
    let shm_bytes: Option<u64> = conns
        .iter_mut()
        .map(|c| c.as_shm().map(|c| c.shared_memory_bytes()))
        .sum();
    let agents_cpu = cpu(&pids)? - agents_before;
    let parent_cpu = procfs::self_cpu_ns() - parent_before;
    let rss: Vec<u64> = pids
        .iter()
        .filter_map(|&pid| procfs::rss_kib(pid))
        .collect();
    if rss.len() != pids.len() {
        return Err(HarnessError::Agent("an idle agent exited".into()));
    }
    Ok(IdleResult {
        variant,
        trial: 0,
        agents,
        window_s: elapsed.as_secs_f64(),
        agents_cpu_percent: procfs::cpu_percent(agents_cpu, elapsed),
        parent_cpu_percent: procfs::cpu_percent(parent_cpu, elapsed),
        rss_kib_mean: rss.iter().sum::<u64>() as f64 / rss.len() as f64,
        rss_kib_max: rss.iter().copied().max().unwrap_or(0),
        shm_kib_per_agent: shm_bytes.map(|b| b as f64 / 1024.0 / agents as f64),
        agent_program: program
            .file_name()
            .map_or_else(String::new, |n| n.to_string_lossy().into_owned()),
    })
}

/// `cycles` connect/disconnect cycles over `variant`, each exchanging one
/// message: RSS of the connecting agent and of the accepting parent
/// before and after. For pipes each cycle spawns and reaps an agent.
pub fn churn(variant: Variant, cycles: u32) -> Result<ChurnResult> {
    let me = std::process::id();
    let warmup = cycles / 10;
    let mut parent_start = 0;
    let mut agent_growth = None;
    if variant.transport == Transport::Pipe {
        for cycle in 0..cycles {
            if cycle == warmup {
                parent_start = procfs::rss_kib(me).unwrap_or(0);
            }
            let mut agent = spawn_agent(&AgentTask {
                cpu: None,
                role: Role::Echo,
                variant,
            })?;
            agent.conn().send(b"hi")?;
            agent.conn().recv()?;
        }
    } else {
        let per_cycle = variant.transport == Transport::Shm;
        let base = unique_name();
        let address_base = address_for(variant.transport, &base)?;
        let mut listener = if per_cycle {
            None
        } else {
            Some(bind(&address_base, &variant)?)
        };
        let mut agent = spawn_agent(&AgentTask {
            cpu: None,
            role: Role::Churn {
                cycles,
                address_base: address_base.clone(),
                per_cycle,
            },
            variant,
        })?;
        for cycle in 0..cycles {
            if cycle == warmup {
                parent_start = procfs::rss_kib(me).unwrap_or(0);
            }
            let mut fresh;
            let listener = match listener.as_mut() {
                Some(l) => l,
                None => {
                    fresh = bind(&format!("{address_base}-{cycle}"), &variant)?;
                    &mut fresh
                }
            };
            let mut conn = listener.accept_timeout(Duration::from_secs(30))?;
            conn.recv()?;
            conn.send(b"ok")?;
        }
        let report: AgentReport = serde_json::from_slice(&agent.conn().recv()?)?;
        agent_growth = Some(report.rss_end_kib as i64 - report.rss_start_kib as i64);
    }
    let parent_growth = procfs::rss_kib(me).unwrap_or(0) as i64 - parent_start as i64;
    Ok(ChurnResult {
        variant,
        trial: 0,
        cycles,
        agent_rss_growth_kib: agent_growth,
        parent_rss_growth_kib: parent_growth,
        tolerance_kib: LEAK_TOLERANCE_KIB,
        leak_suspected: parent_growth > LEAK_TOLERANCE_KIB
            || agent_growth.is_some_and(|g| g > LEAK_TOLERANCE_KIB),
    })
}

fn bind(address: &str, variant: &Variant) -> Result<AnyListener> {
    let address: ipc_core::Address = address
        .parse()
        .map_err(|e| HarnessError::Invalid(format!("{e}")))?;
    crate::transport::bind(variant, &address)
}
