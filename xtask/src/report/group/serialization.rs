//! The serialization group's section: codecs alone and typed round trips.

use std::fmt::Write;

use harness::figure::FigureId;
use harness::{Regime, Statistic};

use crate::report::Index;
use crate::report::format::{cell, cell_interval, table, with_interval};

pub(crate) fn section_serialization(out: &mut String, ix: &Index<'_>) {
    let codecs: Vec<Vec<String>> = ix
        .all(|id| matches!(id.regime, Regime::Encode(_)) && id.statistic == Statistic::Time)
        .into_iter()
        .map(|e| {
            let Regime::Encode(message) = e.id.regime else {
                unreachable!("filtered")
            };
            let decode = ix.get(FigureId {
                regime: Regime::Decode(message),
                ..e.id
            });
            vec![
                e.id.subject.label(),
                message.name().into(),
                cell(ix.stat(e.id, Statistic::EncodedSize)),
                with_interval(e),
                cell_interval(decode),
            ]
        })
        .collect();
    let typed: Vec<Vec<String>> = ix
        .all(|id| matches!(id.regime, Regime::Typed(_)) && id.statistic == Statistic::P50)
        .into_iter()
        .map(|t| {
            let Regime::Typed(codec) = t.id.regime else {
                unreachable!("filtered")
            };
            let raw = ix.get(FigureId {
                regime: Regime::Raw(codec),
                ..t.id
            });
            vec![
                t.id.subject.label(),
                codec.name().into(),
                with_interval(t),
                cell_interval(raw),
            ]
        })
        .collect();
    if codecs.is_empty() && typed.is_empty() {
        return;
    }
    let _ = writeln!(out, "## Serialization\n");
    table(
        out,
        &[
            "codec",
            "message",
            "bytes",
            "encode [interval]",
            "decode [interval]",
        ],
        &codecs,
    );
    table(
        out,
        &[
            "transport",
            "codec",
            "typed round trip p50",
            "raw frame p50",
        ],
        &typed,
    );
}
