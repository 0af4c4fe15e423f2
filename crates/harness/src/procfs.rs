//! CPU time and resident memory of processes, from `/proc`.

use std::time::Duration;

/// One process's accounting at one moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProcSample {
    /// User + system CPU time, nanoseconds.
    pub cpu_ns: u64,
    /// Resident set size, KiB.
    pub rss_kib: u64,
}

/// Parses utime + stime (fields 14 and 15, in clock ticks) out of the text
/// of `/proc/PID/stat`.
pub fn parse_stat_cpu_ticks(stat: &str) -> Option<u64> {
    // Field 2 (the command) is parenthesized and may contain anything.
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut fields = rest.split_ascii_whitespace();
    // `rest` starts at field 3 (state): utime is field 14, 11 further.
    let utime: u64 = fields.nth(11)?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some(utime + stime)
}

/// Parses `VmRSS` (KiB) out of the text of `/proc/PID/status`.
pub fn parse_status_rss_kib(status: &str) -> Option<u64> {
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// CPU time of process `pid` (all its threads), in nanoseconds: from the
/// scheduler's nanosecond accounting (`/proc/PID/task/*/schedstat`) where
/// available, else from `/proc/PID/stat` in clock ticks (10 ms steps, too
/// coarse for an idle process over a short window).
pub fn cpu_ns(pid: u32) -> Option<u64> {
    schedstat_ns(pid).or_else(|| {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        let ticks = parse_stat_cpu_ticks(&stat)?;
        Some(ticks * 1_000_000_000 / rustix::param::clock_ticks_per_second())
    })
}

/// Parses the on-CPU nanoseconds (first field) of a `schedstat` file.
pub fn parse_schedstat_ns(text: &str) -> Option<u64> {
    text.split_whitespace().next()?.parse().ok()
}

fn schedstat_ns(pid: u32) -> Option<u64> {
    let tasks = std::fs::read_dir(format!("/proc/{pid}/task")).ok()?;
    let mut total = 0;
    for task in tasks {
        let text = std::fs::read_to_string(task.ok()?.path().join("schedstat")).ok()?;
        total += parse_schedstat_ns(&text)?;
    }
    Some(total)
}

/// CPU time of this process, in nanoseconds, at full resolution.
pub fn self_cpu_ns() -> u64 {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::ProcessCPUTime);
    t.tv_sec as u64 * 1_000_000_000 + t.tv_nsec as u64
}

/// Resident set size of process `pid`, in KiB.
pub fn rss_kib(pid: u32) -> Option<u64> {
    parse_status_rss_kib(&std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?)
}

/// Samples process `pid`.
pub fn sample(pid: u32) -> Option<ProcSample> {
    Some(ProcSample {
        cpu_ns: cpu_ns(pid)?,
        rss_kib: rss_kib(pid)?,
    })
}

/// CPU used over a window as a percentage of one core.
pub fn cpu_percent(cpu_ns: u64, window: Duration) -> f64 {
    cpu_ns as f64 / window.as_nanos() as f64 * 100.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_stat_with_a_hostile_command_name() {
        let stat = "42 (a) b) c) S 1 42 42 0 -1 4194560 100 0 0 0 250 75 0 0 20 0 1 0 123 0 0";
        assert_eq!(parse_stat_cpu_ticks(stat), Some(325));
        assert_eq!(parse_stat_cpu_ticks("garbage"), None);
    }

    #[test]
    fn parses_schedstat() {
        assert_eq!(parse_schedstat_ns("123456 789 10\n"), Some(123_456));
        assert_eq!(parse_schedstat_ns(""), None);
    }

    #[test]
    fn parses_rss_from_status() {
        let status = "Name:\tx\nVmPeak:\t  9000 kB\nVmRSS:\t    1234 kB\nThreads:\t1\n";
        assert_eq!(parse_status_rss_kib(status), Some(1234));
        assert_eq!(parse_status_rss_kib("Name:\tx\n"), None);
    }

    #[test]
    fn own_process_burns_cpu_and_has_memory() {
        let me = std::process::id();
        let before = self_cpu_ns();
        let mut x = 0u64;
        let start = std::time::Instant::now();
        while start.elapsed() < Duration::from_millis(30) {
            x = std::hint::black_box(x.wrapping_mul(31).wrapping_add(7));
        }
        assert!(
            self_cpu_ns() - before >= 10_000_000,
            "30 ms of spinning shows as CPU"
        );
        let s = sample(me).unwrap();
        assert!(s.cpu_ns >= 10_000_000, "schedstat sees the spinning too");
        assert!(s.rss_kib > 100);
        assert!(cpu_ns(u32::MAX).is_none());
        assert!((cpu_percent(5_000_000, Duration::from_secs(1)) - 0.5).abs() < 1e-9);
    }
}
