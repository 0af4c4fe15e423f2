//! One section of the summary per benchmark group, listed once in
//! [`SECTIONS`] in the order the summary gives them.

use harness::Group;

use crate::report::Index;

pub(crate) mod baselines;
pub(crate) mod hub;
pub(crate) mod latency;
pub(crate) mod logging;
pub(crate) mod patterns;
pub(crate) mod peers;
pub(crate) mod resources;
pub(crate) mod scale;
pub(crate) mod serialization;
pub(crate) mod throughput;

/// Writes a group's section from the run's figures.
pub(crate) type Section = fn(&mut String, &Index<'_>);

/// Every group's section, in the summary's order: the runtime's path
/// first, then the transports, the mechanisms and the rest.
pub(crate) const SECTIONS: [(Group, Section); 10] = [
    (Group::Hub, hub::section_hub),
    (Group::Scale, scale::section_scale),
    (Group::Latency, latency::section_latency),
    (Group::Peers, peers::section_peers),
    (Group::Throughput, throughput::section_throughput),
    (Group::Baselines, baselines::section_baselines),
    (Group::Serialization, serialization::section_serialization),
    (Group::Resources, resources::section_resources),
    (Group::Patterns, patterns::section_patterns),
    (Group::Logging, logging::section_logging),
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_group_has_one_section() {
        for g in Group::ALL {
            let n = SECTIONS.iter().filter(|(s, _)| *s == g).count();
            assert_eq!(n, 1, "{g}: {n} sections");
        }
    }
}
