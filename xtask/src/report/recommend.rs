//! The recommendations: what this run's numbers say to use, each derived
//! from the figures (the hub's path first: it is the one runtimes take).

use harness::figure::FigureId;
use harness::{Figure, Group, Regime, RunResults, Statistic, Subject};

use crate::report::Index;
use crate::report::format::{bytes, cell, in_unit, is_default, ns, with_interval};

/// Recommendations derived from this run's numbers.
pub fn recommendations(r: &RunResults) -> Vec<String> {
    let ix = Index::new(r);
    let mut out = Vec::new();
    let (small, large) = (ix.smallest(), ix.largest());
    if let Some(line) = through_the_hub(&ix) {
        out.push(line);
    }

    let mut hot = ix.all(|id| {
        is_default(&id.subject)
            && id.group == Group::Latency
            && id.size == Some(small)
            && id.regime == Regime::BackToBack
            && id.statistic == Statistic::P50
    });
    hot.sort_by(|a, b| a.median.total_cmp(&b.median));
    if let [best, second, ..] = hot.as_slice() {
        let cpu = |f: &Figure| {
            let id = FigureId {
                group: Group::Throughput,
                regime: Regime::OneWay,
                statistic: Statistic::CpuPerOp,
                ..f.id
            };
            ix.get(id)
                .map(|c| format!("{} CPU per message", ns(c.median)))
                .unwrap_or_default()
        };
        let p99 = |f: &Figure| cell(ix.stat(f.id, Statistic::P99));
        out.push(format!(
            "**Small, latency-critical messages: `{}`.** {} B round trip p50 {} / p99 {}, against {} / {} for `{}` \
             ({:.1}x faster at the median). Cost: {} (vs {} for `{}`).",
            best.id.subject.label(),
            small,
            with_interval(best),
            p99(best),
            with_interval(second),
            p99(second),
            second.id.subject.label(),
            second.median / best.median.max(1.0),
            cpu(best),
            cpu(second),
            second.id.subject.label(),
        ));
    }
    let mut parked = ix.all(|id| {
        id.group == Group::Latency
            && id.regime == Regime::Parked
            && id.size == Some(small)
            && id.statistic == Statistic::P50
    });
    parked.sort_by(|a, b| a.median.total_cmp(&b.median));
    if let Some(best) = parked.first() {
        let list: Vec<String> = parked
            .iter()
            .map(|f| {
                let cpu = ix
                    .stat(f.id, Statistic::CpuPerOp)
                    .map_or(String::new(), |c| format!(" ({} CPU each)", ns(c.median)));
                format!("`{}` {}{cpu}", f.id.subject.label(), ns(f.median))
            })
            .collect();
        out.push(format!(
            "**Messages with pauses between them** (the receiver has gone to sleep): `{}` is quickest; p50 round trip {}.",
            best.id.subject.label(),
            list.join(", ")
        ));
    }
    let mut bulk = ix.all(|id| {
        id.group == Group::Throughput
            && id.regime == Regime::OneWay
            && id.size == Some(large)
            && id.statistic == Statistic::Bandwidth
    });
    bulk.sort_by(|a, b| b.median.total_cmp(&a.median));
    if let [best, ..] = bulk.as_slice() {
        let others: Vec<String> = bulk
            .iter()
            .skip(1)
            .filter(|f| is_default(&f.id.subject))
            .map(|f| format!("`{}` {}", f.id.subject.label(), cell(Some(f))))
            .collect();
        out.push(format!(
            "**Bulk transfer: `{}`.** {} with {} messages; {}.",
            best.id.subject.label(),
            with_interval(best),
            bytes(large as f64),
            others.join(", ")
        ));
    }
    if let Some(line) = large_messages(&ix) {
        out.push(line);
    }
    let idle = ix.all(|id| id.regime == Regime::Idle && id.statistic == Statistic::CpuPercent);
    let most = idle.iter().filter_map(|f| f.id.agents).max();
    let mut idle: Vec<_> = idle.into_iter().filter(|f| f.id.agents == most).collect();
    idle.sort_by(|a, b| a.median.total_cmp(&b.median));
    if let Some(best) = idle.first() {
        let list: Vec<String> = idle
            .iter()
            .map(|f| {
                format!(
                    "`{}` {} CPU, {} max RSS",
                    f.id.subject.label(),
                    in_unit(f.median, f.unit),
                    cell(ix.stat(f.id, Statistic::Rss))
                )
            })
            .collect();
        out.push(format!(
            "**Many idle agents:** with {} idle agents connected, {}. Lowest: `{}`.",
            most.unwrap_or(0),
            list.join("; "),
            best.id.subject.label()
        ));
    }
    let fan = ix.all(|id| id.regime == Regime::FanOut && id.statistic == Statistic::Rate);
    let most = fan.iter().filter_map(|f| f.id.agents).max();
    let mut fan: Vec<_> = fan.into_iter().filter(|f| f.id.agents == most).collect();
    fan.sort_by(|a, b| b.median.total_cmp(&a.median));
    if let [best, ..] = fan.as_slice() {
        out.push(format!(
            "**A hub dealing work to {} agents:** `{}` moves {} ({}).",
            most.unwrap_or(0),
            best.id.subject.label(),
            with_interval(best),
            fan.iter()
                .skip(1)
                .map(|f| format!("`{}` {}", f.id.subject.label(), cell(Some(f))))
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    let encode = |f: &Figure| {
        ix.get(FigureId {
            regime: Regime::Encode(harness::schema::Message::ToolCall),
            ..f.id
        })
    };
    let mut codecs: Vec<(&Figure, &Figure)> = ix
        .all(|id| {
            id.regime == Regime::Decode(harness::schema::Message::ToolCall)
                && id.statistic == Statistic::Time
        })
        .into_iter()
        .filter_map(|d| encode(d).map(|e| (e, d)))
        .collect();
    codecs.sort_by(|a, b| (a.0.median + a.1.median).total_cmp(&(b.0.median + b.1.median)));
    if let [(e, d), rest @ ..] = codecs.as_slice() {
        out.push(format!(
            "**Typed messages: `{}`.** A tool call encodes in {} and decodes in {}; {}.",
            e.id.subject.label(),
            ns(e.median),
            ns(d.median),
            rest.iter()
                .map(|(e, d)| format!(
                    "`{}` {} + {}",
                    e.id.subject.label(),
                    ns(e.median),
                    ns(d.median)
                ))
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    out
}

/// The hub group's verdict: which transport a runtime's typed call is
/// fastest over, through `ipc-hub` unpinned, as a runtime runs.
pub(crate) fn through_the_hub(ix: &Index<'_>) -> Option<String> {
    let mut calls = ix.all(|id| {
        id.group == Group::Hub
            && is_default(&id.subject)
            && id.regime == Regime::HubCall
            && id.statistic == Statistic::P50
    });
    calls.sort_by(|a, b| a.median.total_cmp(&b.median));
    let [best, rest @ ..] = calls.as_slice() else {
        return None;
    };
    let over_blocking = |f: &Figure| {
        let Subject::Transport(v) = f.id.subject else {
            return String::new();
        };
        ix.get(FigureId {
            subject: Subject::Path(v, Regime::BackToBack),
            statistic: Statistic::Ratio,
            ..f.id
        })
        .map_or(String::new(), |r| {
            format!(", {} its blocking round trip", with_interval(r))
        })
    };
    Some(format!(
        "**Through the hub (the path a runtime takes): `{}`.** A typed {} B call through `ipc-hub`, unpinned, p50 {}{}; {}.",
        best.id.subject.label(),
        best.id.size.unwrap_or(0),
        with_interval(best),
        over_blocking(best),
        rest.iter()
            .map(|f| format!(
                "`{}` {}{}",
                f.id.subject.label(),
                cell(Some(f)),
                over_blocking(f)
            ))
            .collect::<Vec<_>>()
            .join("; ")
    ))
}

/// Shared memory's large messages, by size: by reference (the default,
/// reusable slots) against copies through the ring, and fresh blobs.
pub(crate) fn large_messages(ix: &Index<'_>) -> Option<String> {
    use harness::transport::Large;
    let bandwidth = |large: Large, size: usize| {
        ix.get(FigureId {
            group: Group::Throughput,
            subject: Subject::Transport(harness::Variant::shm_large(large)),
            regime: Regime::OneWay,
            size: Some(size),
            agents: None,
            statistic: Statistic::Bandwidth,
        })
    };
    let mut sizes: Vec<usize> = ix
        .all(|id| {
            id.group == Group::Throughput
                && id.subject == Subject::Transport(harness::Variant::shm_large(Large::Copy))
                && id.statistic == Statistic::Bandwidth
        })
        .iter()
        .filter_map(|f| f.id.size)
        .collect();
    sizes.sort_unstable();
    sizes.dedup();
    let mut by_reference = Vec::new();
    let mut by_copy = Vec::new();
    let mut fresh = Vec::new();
    for size in sizes {
        let (Some(slot), Some(copy)) = (
            bandwidth(Large::Default, size),
            bandwidth(Large::Copy, size),
        ) else {
            continue;
        };
        let entry = format!(
            "{} ({} against {})",
            bytes(size as f64),
            in_unit(slot.median, slot.unit),
            in_unit(copy.median, copy.unit)
        );
        if slot.median >= copy.median {
            by_reference.push(entry);
        } else {
            by_copy.push(entry);
        }
        if let Some(blob) = bandwidth(Large::Blob, size) {
            fresh.push(format!(
                "{} {}",
                bytes(size as f64),
                in_unit(blob.median, blob.unit)
            ));
        }
    }
    if by_reference.is_empty() && by_copy.is_empty() {
        return None;
    }
    let mut line = String::from("**Large messages on shared memory:** ");
    if !by_reference.is_empty() {
        line += &format!(
            "by reference (the default above a ring record: one copy into a reusable slot, read in \
             place) beats copying through the ring at {}",
            by_reference.join(", ")
        );
    }
    if !by_copy.is_empty() {
        if !by_reference.is_empty() {
            line += "; ";
        }
        line += &format!(
            "copying through the ring (`set_blob_threshold(None)`) is faster at {}",
            by_copy.join(", ")
        );
    }
    if !fresh.is_empty() {
        line += &format!(
            ". A fresh blob per message (`BlobBuf`, written in place but on new memory, which the \
             kernel must zero and fault in) streams at {}: use it to write once for many readers \
             (see bulk-broadcast)",
            fresh.join(", ")
        );
    }
    line.push('.');
    Some(line)
}
