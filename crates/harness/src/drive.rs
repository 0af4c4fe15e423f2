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
use crate::figures::{Figure, FigureId, Statistic};
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
    let mut extra_spent = Duration::ZERO;
    let mut extra_blocks = Vec::new();
    let mut seen: Vec<BTreeSet<FigureId>> = vec![BTreeSet::new(); n];
    let names: Vec<String> = sides.iter().map(|s| s.name().to_owned()).collect();

    for (b, block) in schedule.iter().enumerate() {
        let mut run_trial = |sides: &mut Vec<Client>, trial: u32, planned: bool| -> Result<()> {
            for (c, label) in block.cells.iter().enumerate() {
                // (side, block, cell) in the order they run this trial.
                let mut order = vec![(n - 1, b, c)];
                if let Some(Some((ob, oc))) = old_cells.as_ref().map(|o| o[b][c]) {
                    if trial.is_multiple_of(2) {
                        order.insert(0, (0, ob, oc));
                    } else {
                        order.push((0, ob, oc));
                    }
                }
                for (side, sb, sc) in order {
                    let error = sides[side].run(sb, sc, trial)?;
                    if !planned {
                        continue;
                    }
                    done += 1;
                    done_weight += block.weights[c];
                    let elapsed = start.elapsed();
                    let pace = elapsed.as_secs_f64() / done_weight.max(f64::MIN_POSITIVE);
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
                        error: error.as_deref(),
                        elapsed,
                        remaining: Duration::from_secs_f64(
                            pace * (total_weight - done_weight).max(0.0),
                        ),
                    });
                }
            }
            Ok(())
        };
        for trial in 0..trials {
            run_trial(&mut sides, trial, true)?;
        }
        if extra.budget.is_zero() {
            continue;
        }
        // This block's figures, on each side.
        let block_figures = |sides: &mut Vec<Client>| -> Result<Vec<Vec<Figure>>> {
            (0..n)
                .map(|s| Ok(new_figures(&sides[s].figures()?, &seen[s])))
                .collect()
        };
        let mut figures = block_figures(&mut sides)?;
        let noisy = |f: &[Vec<Figure>]| too_noisy((n == 2).then(|| &f[0][..]), &f[n - 1], rule);
        let before = noisy(&figures);
        let mut after = before.clone();
        let mut reached = trials;
        while !after.is_empty()
            && reached + EXTRA_STEP <= extra.most_trials.max(trials)
            && extra_spent < extra.budget
        {
            let began = Instant::now();
            for trial in reached..reached + EXTRA_STEP {
                run_trial(&mut sides, trial, false)?;
            }
            reached += EXTRA_STEP;
            extra_spent += began.elapsed();
            figures = block_figures(&mut sides)?;
            after = noisy(&figures);
        }
        if reached > trials {
            extra_blocks.push(ExtraBlock {
                group: block.group.name().into(),
                cells: block.cells.clone(),
                trials: reached,
                noisy_before: before,
                noisy_after: after,
            });
        }
        for (s, f) in figures.iter().enumerate() {
            seen[s].extend(f.iter().map(|f| f.id));
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
