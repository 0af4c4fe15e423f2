//! Drives runners in serve mode (see [`crate::serve`]): one build, or two
//! builds interleaved cell by cell (A/B), with extra trials for blocks
//! whose judged figures are still too noisy after the planned ones.
//!
//! In A/B, every trial of every cell runs on both builds back to back, the
//! side that goes first alternating from trial to trial, so that both meet
//! the same host and neither always inherits the other's warm caches.
//! A cell only one build has (a scenario added or removed between them)
//! runs on that build alone; its figures are listed as unpaired.

use std::collections::{BTreeSet, HashMap};
use std::path::Path;
use std::time::{Duration, Instant};

use crate::compare::{Rule, paired};
use crate::error::{HarnessError, Result};
use crate::figure::{Figure, FigureId, Statistic};
use crate::runner::{BlockInfo, Progress};
use crate::schema::{ExtraBlock, ExtraTrials, RunResults};
use crate::serve::Client;

/// How many trials may be added, and for how long.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Extra {
    /// Wall time all extra trials together may take.
    pub budget: Duration,
    /// Most trials a block may reach.
    pub most_trials: u32,
}

impl Extra {
    /// No extra trials.
    pub const NONE: Extra = Extra {
        budget: Duration::ZERO,
        most_trials: 0,
    };
}

/// Trials added to a block at a time: from five, three more is the
/// fewest that narrows the median's interval (at eight trials it drops
/// the extreme trial on each side).
const EXTRA_STEP: u32 = 3;

/// What a drive produced: each side's results, in the order given.
#[derive(Debug)]
pub struct Drive {
    /// The results of each side.
    pub results: Vec<RunResults>,
}

/// Per block and cell of the new side, the old side's (block, cell).
type CellMap = [Vec<Option<(usize, usize)>>];

/// A block after its planned trials.
struct Planned {
    block: usize,
    /// Wall time of its planned trials.
    took: Duration,
    /// Its judged figures, per side.
    ids: Vec<BTreeSet<FigureId>>,
    /// Those too noisy to judge.
    noisy: Vec<String>,
}

/// One side's cell for each cell of the last side's block (`None` where
/// that side has no cell of that label).
fn match_cells(reference: &[BlockInfo], other: &[BlockInfo]) -> Vec<Vec<Option<(usize, usize)>>> {
    let mut at: HashMap<(String, &str), Vec<(usize, usize)>> = HashMap::new();
    for (b, block) in other.iter().enumerate().rev() {
        for (c, label) in block.cells.iter().enumerate().rev() {
            at.entry((block.group.name().to_owned(), label.as_str()))
                .or_default()
                .push((b, c));
        }
    }
    reference
        .iter()
        .map(|block| {
            block
                .cells
                .iter()
                .map(|label| {
                    at.get_mut(&(block.group.name().to_owned(), label.as_str()))
                        .and_then(Vec::pop)
                })
                .collect()
        })
        .collect()
}

/// The judged figures of `figures` not in `seen`.
fn new_figures(figures: &[Figure], seen: &BTreeSet<FigureId>) -> Vec<Figure> {
    figures
        .iter()
        .filter(|f| f.judged && !seen.contains(&f.id))
        .cloned()
        .collect()
}

/// Keys of the figures that could fail a run but are too noisy to: for
/// one build, its same-run ratios wider than the rule's ratio factor; for
/// two, the paired ratios wider than that factor.
fn too_noisy(old: Option<&[Figure]>, new: &[Figure], rule: Rule) -> Vec<String> {
    match old {
        Some(old) => paired(old, new, rule.ratio_factor).noisy,
        None => new
            .iter()
            .filter(|f| f.id.statistic == Statistic::Ratio && f.spread() > rule.ratio_factor)
            .map(|f| f.id.key())
            .collect(),
    }
}

/// Runs one trial of every cell of block `b` on every side that has it,
/// the old side first in even trials and second in odd ones; `ran` hears
/// of each (side, cell, error).
fn run_trial(
    sides: &mut [Client],
    schedule: &[BlockInfo],
    old_cells: Option<&CellMap>,
    b: usize,
    trial: u32,
    mut ran: impl FnMut(usize, usize, Option<&str>),
) -> Result<()> {
    let new = sides.len() - 1;
    for c in 0..schedule[b].cells.len() {
        let mut order = vec![(new, b, c)];
        if let Some(Some((ob, oc))) = old_cells.map(|o| o[b][c]) {
            if trial.is_multiple_of(2) {
                order.insert(0, (0, ob, oc));
            } else {
                order.push((0, ob, oc));
            }
        }
        for (side, sb, sc) in order {
            let error = sides[side].run(sb, sc, trial)?;
            ran(side, c, error.as_deref());
        }
    }
    Ok(())
}

/// The too-noisy figures among a block's (`ids`, per side).
fn block_noise(
    sides: &mut [Client],
    ids: &[BTreeSet<FigureId>],
    rule: Rule,
) -> Result<Vec<String>> {
    let mut figures = Vec::with_capacity(sides.len());
    for (side, ids) in sides.iter_mut().zip(ids) {
        let all = side.figures()?;
        figures.push(
            all.into_iter()
                .filter(|f| ids.contains(&f.id))
                .collect::<Vec<_>>(),
        );
    }
    let n = figures.len();
    Ok(too_noisy(
        (n == 2).then(|| &figures[0][..]),
        &figures[n - 1],
        rule,
    ))
}

/// Runs every block of the last side's plan on every side (one side: a
/// plain run; two: old then new, A/B), `trials` times, then adds trials to
/// blocks still too noisy under `rule` while `extra` allows. `scratch` is
/// where the sides write their results.
pub fn drive(
    mut sides: Vec<Client>,
    trials: u32,
    rule: Rule,
    extra: Extra,
    scratch: &Path,
    mut on_step: impl FnMut(&Progress<'_>),
) -> Result<Drive> {
    let n = sides.len();
    if !(1..=2).contains(&n) || trials == 0 {
        return Err(HarnessError::Invalid(
            "a drive takes one or two runners and at least one trial".into(),
        ));
    }
    let schedule = sides[n - 1].schedule()?;
    let old_cells = if n == 2 {
        Some(match_cells(&schedule, &sides[0].schedule()?))
    } else {
        None
    };
    let runs_per_cell =
        |b: usize, c: usize| 1 + usize::from(old_cells.as_ref().is_some_and(|o| o[b][c].is_some()));
    let total: usize = (0..schedule.len())
        .flat_map(|b| (0..schedule[b].cells.len()).map(move |c| (b, c)))
        .map(|(b, c)| runs_per_cell(b, c))
        .sum::<usize>()
        * trials as usize;
    let total_weight: f64 = schedule
        .iter()
        .enumerate()
        .flat_map(|(b, block)| {
            block
                .weights
                .iter()
                .enumerate()
                .map(move |(c, w)| (b, c, w))
        })
        .map(|(b, c, w)| w * runs_per_cell(b, c) as f64)
        .sum::<f64>()
        * f64::from(trials);
    let start = Instant::now();
    let mut done = 0;
    let mut done_weight = 0.0;
    let names: Vec<String> = sides.iter().map(|s| s.name().to_owned()).collect();
    // Per block: what it took, its judged figures on each side, and which
    // of them are too noisy.
    let mut planned = Vec::with_capacity(schedule.len());
    let mut seen: Vec<BTreeSet<FigureId>> = vec![BTreeSet::new(); n];
    for (b, block) in schedule.iter().enumerate() {
        let began = Instant::now();
        for trial in 0..trials {
            run_trial(
                &mut sides,
                &schedule,
                old_cells.as_deref(),
                b,
                trial,
                |side, c, error| {
                    done += 1;
                    done_weight += block.weights[c];
                    let elapsed = start.elapsed();
                    let pace = elapsed.as_secs_f64() / done_weight.max(f64::MIN_POSITIVE);
                    let label = &block.cells[c];
                    let shown = if n == 2 {
                        format!("{}: {label}", names[side])
                    } else {
                        label.clone()
                    };
                    on_step(&Progress {
                        done,
                        total,
                        group: block.group,
                        label: &shown,
                        trial: (trial + 1, trials),
                        error,
                        elapsed,
                        remaining: Duration::from_secs_f64(
                            pace * (total_weight - done_weight).max(0.0),
                        ),
                    });
                },
            )?;
        }
        let took = began.elapsed();
        if extra.budget.is_zero() {
            continue;
        }
        let mut ids = Vec::with_capacity(n);
        for (s, side) in sides.iter_mut().enumerate() {
            let fresh: BTreeSet<FigureId> = new_figures(&side.figures()?, &seen[s])
                .iter()
                .map(|f| f.id)
                .collect();
            seen[s].extend(fresh.iter().copied());
            ids.push(fresh);
        }
        let noisy = block_noise(&mut sides, &ids, rule)?;
        planned.push(Planned {
            block: b,
            took,
            ids,
            noisy,
        });
    }

    // Extra trials, where they buy the most: blocks by too-noisy figures
    // per second of a step, in rounds, while the budget lasts.
    let mut extra_spent = Duration::ZERO;
    let mut extra_blocks: Vec<ExtraBlock> = Vec::new();
    let mut reached: HashMap<usize, u32> = HashMap::new();
    loop {
        let step_cost = |took: Duration| took.mul_f64(f64::from(EXTRA_STEP) / f64::from(trials));
        let value = |p: &Planned| p.noisy.len() as f64 / step_cost(p.took).as_secs_f64().max(1e-3);
        let mut candidates: Vec<&Planned> = planned
            .iter()
            .filter(|p| {
                !p.noisy.is_empty()
                    && reached.get(&p.block).copied().unwrap_or(trials) + EXTRA_STEP
                        <= extra.most_trials
            })
            .collect();
        candidates.sort_by(|x, y| value(y).total_cmp(&value(x)));
        let mut ran = Vec::new();
        for p in candidates {
            let b = p.block;
            if extra_spent + step_cost(p.took) > extra.budget {
                continue;
            }
            let began = Instant::now();
            let from = reached.get(&b).copied().unwrap_or(trials);
            // Progress: extra trials report no cells, but say where they are.
            eprintln!(
                "extra trials {}-{} of {} / {} ({} too noisy; {:.0} s of the {:.0} s budget used)",
                from + 1,
                from + EXTRA_STEP,
                schedule[b].group.name(),
                schedule[b].cells.first().map_or("", String::as_str),
                p.noisy.len(),
                extra_spent.as_secs_f64(),
                extra.budget.as_secs_f64(),
            );
            for trial in from..from + EXTRA_STEP {
                run_trial(
                    &mut sides,
                    &schedule,
                    old_cells.as_deref(),
                    b,
                    trial,
                    |_, _, _| {},
                )?;
            }
            reached.insert(b, from + EXTRA_STEP);
            extra_spent += began.elapsed();
            ran.push((b, block_noise(&mut sides, &p.ids, rule)?));
        }
        if ran.is_empty() {
            break;
        }
        for (b, noisy) in ran {
            let entry = planned.iter_mut().find(|p| p.block == b).expect("planned");
            let block = &schedule[b];
            match extra_blocks.iter_mut().find(|x| x.cells == block.cells) {
                Some(x) => {
                    x.trials = reached[&b];
                    x.noisy_after = noisy.clone();
                }
                None => extra_blocks.push(ExtraBlock {
                    group: block.group.name().into(),
                    cells: block.cells.clone(),
                    trials: reached[&b],
                    noisy_before: entry.noisy.clone(),
                    noisy_after: noisy.clone(),
                }),
            }
            entry.noisy = noisy;
        }
    }
    let mut results = Vec::with_capacity(n);
    for (s, side) in sides.into_iter().enumerate() {
        let out = scratch.join(format!(".side-{s}-{}.json", std::process::id()));
        let r = side.finish(&out);
        let _ = std::fs::remove_file(&out);
        let mut r = r?;
        r.extra_trials = Some(ExtraTrials {
            budget_s: extra.budget.as_secs_f64(),
            seconds: extra_spent.as_secs_f64(),
            blocks: extra_blocks.clone(),
        });
        results.push(r);
    }
    Ok(Drive { results })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::Group;

    fn block(group: Group, cells: &[&str]) -> BlockInfo {
        BlockInfo {
            group,
            cells: cells.iter().map(|c| c.to_string()).collect(),
            weights: vec![1.0; cells.len()],
        }
    }

    #[test]
    fn cells_pair_by_group_and_label_wherever_the_other_build_has_them() {
        let new = [
            block(Group::Latency, &["a", "b", "new"]),
            block(Group::Hub, &["a"]),
        ];
        let old = [
            block(Group::Hub, &["a"]),
            block(Group::Latency, &["b", "a", "gone"]),
        ];
        let m = match_cells(&new, &old);
        assert_eq!(m[0], vec![Some((1, 1)), Some((1, 0)), None]);
        assert_eq!(m[1], vec![Some((0, 0))]);
    }
}
