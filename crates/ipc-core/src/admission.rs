//! The connections a listener is still handshaking with: a bounded table
//! that a flood from one process cannot fill against the others.
//!
//! A listener that stops accepting while its handshake slots are full
//! leaves new agents in the kernel's queue behind the flood (measured: one
//! process holding about 190 silent connections kept a good agent out for
//! 25 s). So a listener using this table always accepts. Beyond `limit`
//! handshakes under way, room is made by dropping the oldest handshake of
//! a process that has more than one under way (the one with the most): a
//! flood from a few processes pushes out only its own connections. A
//! burst of agents from as many processes (a runtime starting a thousand
//! agents at once, on a loaded machine where each takes a while to say
//! hello) is not cut: each brings a process of its own, so the table
//! grows past `limit`, up to [`SPREAD`] times it, before the oldest
//! handshake of all is dropped.
//!
//! ```
//! use ipc_core::admission::Admission;
//! let mut table = Admission::new(3);
//! let (_, none) = table.admit(Some(7), "flood 1");
//! assert!(none.is_none());
//! table.admit(Some(7), "flood 2");
//! let (good, _) = table.admit(Some(9), "agent");
//! // Full: the flooder's oldest goes, not the agent.
//! let (_, dropped) = table.admit(Some(7), "flood 3");
//! assert_eq!(dropped, Some("flood 1"));
//! assert_eq!(table.remove(good), Some("agent"));
//! // Agents of processes of their own are not cut at the limit.
//! table.admit(Some(10), "agent 10");
//! assert_eq!(table.admit(Some(11), "agent 11").1, Some("flood 2"));
//! assert_eq!(table.admit(Some(12), "agent 12").1, None);
//! ```

use std::collections::VecDeque;

/// How far past its limit a table grows while every handshake under way
/// comes from a process of its own (each costs its sender a process).
pub const SPREAD: usize = 16;

/// Names one entry of an [`Admission`] table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Ticket(u64);

/// Handshakes under way, oldest first, each with the process it came from
/// (a pid; `None` when the transport cannot tell, all such counted as one
/// source). See the [module docs](self).
#[derive(Debug)]
pub struct Admission<T> {
    limit: usize,
    entries: VecDeque<(Ticket, Option<u32>, T)>,
    next: u64,
}

impl<T> Admission<T> {
    /// A table of at most `limit` handshakes (at least one).
    pub fn new(limit: usize) -> Self {
        Admission {
            limit: limit.max(1),
            entries: VecDeque::new(),
            next: 0,
        }
    }

    /// Adds a handshake from `from`. At the limit, first takes out and
    /// returns the one to drop: the oldest of the source with the most
    /// entries (of several such sources, the one whose oldest entry is
    /// oldest), if that source has more than one; while every source has
    /// one, nothing until [`SPREAD`] times the limit, then the oldest.
    pub fn admit(&mut self, from: Option<u32>, item: T) -> (Ticket, Option<T>) {
        let dropped = if self.entries.len() >= self.limit {
            self.heaviest_oldest(self.entries.len() >= self.limit.saturating_mul(SPREAD))
                .and_then(|at| self.entries.remove(at))
                .map(|(_, _, item)| item)
        } else {
            None
        };
        let ticket = Ticket(self.next);
        self.next += 1;
        self.entries.push_back((ticket, from, item));
        (ticket, dropped)
    }

    /// Takes out the handshake of `ticket` (finished or failed); `None` if
    /// it was dropped to make room.
    pub fn remove(&mut self, ticket: Ticket) -> Option<T> {
        let at = self.entries.iter().position(|(t, ..)| *t == ticket)?;
        self.entries.remove(at).map(|(_, _, item)| item)
    }

    /// Keeps only the entries `keep` says yes to.
    pub fn retain(&mut self, mut keep: impl FnMut(&T) -> bool) {
        self.entries.retain(|(_, _, item)| keep(item));
    }

    /// Handshakes under way.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True when none is under way.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The entries, oldest first.
    pub fn iter(&self) -> impl Iterator<Item = (Ticket, &T)> {
        self.entries.iter().map(|(t, _, item)| (*t, item))
    }

    /// Where the entry to drop is: the oldest of the heaviest source if it
    /// holds more than one entry, or (`even_single`) in any case.
    fn heaviest_oldest(&self, even_single: bool) -> Option<usize> {
        let mut counts = std::collections::HashMap::<Option<u32>, usize>::new();
        for e in &self.entries {
            *counts.entry(e.1).or_default() += 1;
        }
        let most = counts.values().copied().max()?;
        if most < 2 && !even_single {
            return None;
        }
        // The first (oldest) entry whose source has that many.
        self.entries.iter().position(|e| counts[&e.1] == most)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_flood_from_one_process_only_pushes_out_its_own() {
        let mut table = Admission::new(64);
        let (good, _) = table.admit(Some(1), "good");
        for i in 0..10_000 {
            let (_, dropped) = table.admit(Some(2), "flood");
            if i >= 63 {
                assert_eq!(dropped, Some("flood"), "round {i}");
            }
            assert!(table.len() <= 64);
        }
        assert_eq!(table.remove(good), Some("good"));
    }

    #[test]
    fn equal_sources_lose_their_oldest_first_and_unknowns_are_one_source() {
        let mut table = Admission::new(3);
        table.admit(None, 1);
        table.admit(Some(5), 2);
        table.admit(None, 3);
        // `None` holds two: its oldest goes.
        assert_eq!(table.admit(Some(6), 4).1, Some(1));
        // One each: past the limit, nothing goes.
        assert_eq!(table.admit(Some(7), 5).1, None);
        assert_eq!(table.admit(Some(7), 6).1, None);
        // 7 holds two now: its oldest goes.
        assert_eq!(table.admit(Some(9), 7).1, Some(5));
        let left: Vec<i32> = table.iter().map(|(_, v)| *v).collect();
        assert_eq!(left, [2, 3, 4, 6, 7]);
    }

    #[test]
    fn a_burst_from_many_processes_is_not_cut_until_the_spread() {
        let mut table = Admission::new(64);
        for pid in 0..64 * SPREAD as u32 {
            assert_eq!(table.admit(Some(pid), pid).1, None, "agent {pid}");
        }
        // Past the spread, the oldest of all makes room.
        assert_eq!(table.admit(Some(99_999), 0).1, Some(0));
        assert_eq!(table.len(), 64 * SPREAD);
        // A second handshake from one process is cut first again.
        assert_eq!(table.admit(Some(5), 1).1, Some(1));
        assert_eq!(table.admit(Some(100_000), 2).1, Some(5));
    }

    #[test]
    fn removed_tickets_are_gone_and_retain_filters() {
        let mut table = Admission::new(4);
        let (a, _) = table.admit(Some(1), 10);
        let (b, _) = table.admit(Some(1), 11);
        assert_eq!(table.remove(a), Some(10));
        assert_eq!(table.remove(a), None);
        table.retain(|v| *v != 11);
        assert_eq!(table.remove(b), None);
        assert!(table.is_empty());
        // A limit of 0 still takes one.
        let mut one = Admission::new(0);
        one.admit(None, ());
        assert_eq!(one.len(), 1);
    }
}
