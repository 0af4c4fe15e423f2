//! The stored record of one run: the harness's results plus where and how
//! they were measured. One JSON file per run in the results directory.

use std::path::{Path, PathBuf};
use std::process::Command;

use harness::RunResults;
use serde::{Deserialize, Serialize};

/// Version of [`BenchRecord`]; readers refuse other versions.
pub const RECORD_SCHEMA: u32 = 2;

/// One run, as written to `benchmark_<UTC>.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BenchRecord {
    /// [`RECORD_SCHEMA`].
    pub record_schema: u32,
    /// UTC time the run started, RFC 3339.
    pub started_utc: String,
    /// The machine it ran on.
    pub machine: Machine,
    /// The compiler that built it.
    pub toolchain: String,
    /// The source it measured.
    pub git: Option<GitState>,
    /// The command line it was started with.
    pub command: Vec<String>,
    /// Everything the harness measured (with its own schema version); in
    /// an A/B run, the new build's side.
    pub results: RunResults,
    /// In an A/B run (`--against`), the old build's side, measured in the
    /// same run, cell by cell (absent otherwise, and in older records).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub against: Option<Against>,
}

/// The old build of an A/B run.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Against {
    /// What `--against` named.
    pub reference: String,
    /// The commit it resolved to (none for a runner given by path).
    pub commit: Option<String>,
    /// What the old build measured.
    pub results: RunResults,
}

/// Facts about the machine.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Machine {
    /// CPU model name.
    pub cpu_model: String,
    /// Logical CPUs.
    pub cpus: usize,
    /// Memory, MiB.
    pub memory_mib: u64,
    /// Kernel release.
    pub kernel: String,
    /// Hypervisor, if the CPU reports one (vendor from DMI if readable).
    pub hypervisor: Option<String>,
    /// `/etc/machine-id` (or D-Bus's), where one exists: tells two
    /// machines of the same kind apart.
    pub machine_id: Option<String>,
}

/// The source tree measured.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GitState {
    /// `HEAD`.
    pub commit: String,
    /// Uncommitted changes present.
    pub dirty: bool,
}

impl Machine {
    /// Reads this machine's facts.
    pub fn detect() -> Self {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let field = |name: &str| {
            cpuinfo
                .lines()
                .find(|l| l.starts_with(name))
                .and_then(|l| l.split_once(':'))
                .map(|(_, v)| v.trim().to_owned())
        };
        let hypervisor = field("flags")
            .is_some_and(|f| f.split_whitespace().any(|x| x == "hypervisor"))
            .then(|| {
                std::fs::read_to_string("/sys/class/dmi/id/sys_vendor")
                    .map(|v| v.trim().to_owned())
                    .ok()
                    .filter(|v| !v.is_empty())
                    .unwrap_or_else(|| "yes (vendor not visible)".into())
            });
        let memory_mib = std::fs::read_to_string("/proc/meminfo")
            .ok()
            .and_then(|m| {
                m.lines()
                    .find_map(|l| l.strip_prefix("MemTotal:"))
                    .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
            })
            .map_or(0, |kib| kib / 1024);
        let uname = rustix::system::uname();
        let machine_id = ["/etc/machine-id", "/var/lib/dbus/machine-id"]
            .iter()
            .find_map(|p| std::fs::read_to_string(p).ok())
            .map(|id| id.trim().to_owned())
            .filter(|id| !id.is_empty());
        Machine {
            cpu_model: field("model name").unwrap_or_else(|| "unknown".into()),
            cpus: std::thread::available_parallelism().map_or(0, |n| n.get()),
            memory_mib,
            kernel: uname.release().to_string_lossy().into_owned(),
            hypervisor,
            machine_id,
        }
    }

    /// True if `other` is this machine, as far as the records can tell:
    /// same CPU model, core count, memory (within 1 %: the kernel's
    /// reservation moves a little between boots), kernel, hypervisor and
    /// machine id. A regression is judged only against a run on the same
    /// machine (or a baseline the user names).
    pub fn same_as(&self, other: &Machine) -> bool {
        self.cpu_model == other.cpu_model
            && self.cpus == other.cpus
            && self.memory_mib.abs_diff(other.memory_mib) * 100 <= self.memory_mib.max(1)
            && self.kernel == other.kernel
            && self.hypervisor == other.hypervisor
            && self.machine_id == other.machine_id
    }
}

/// The `rustc` version.
pub fn toolchain() -> String {
    Command::new("rustc")
        .arg("-V")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .map_or_else(|| "unknown".into(), |s| s.trim().to_owned())
}

/// The git state of the tree at `root`, if it is a checkout.
pub fn git_state(root: &Path) -> Option<GitState> {
    let git = |args: &[&str]| {
        Command::new("git")
            .args(args)
            .current_dir(root)
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
    };
    let commit = git(&["rev-parse", "HEAD"])?.trim().to_owned();
    // Report files the bench itself rewrites are not source changes.
    let status = [
        "status",
        "--porcelain",
        "--untracked-files=no",
        "--",
        ".",
        ":!benchmark_results",
    ];
    let dirty = !git(&status)?.trim().is_empty();
    Some(GitState { commit, dirty })
}

/// Why a stored record cannot be used.
#[derive(Debug)]
pub struct RecordError(pub String);

impl std::fmt::Display for RecordError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// Loads a record, refusing foreign or differently-versioned files.
pub fn load(path: &Path) -> Result<BenchRecord, RecordError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| RecordError(format!("{}: {e}", path.display())))?;
    let value: serde_json::Value = serde_json::from_str(&text)
        .map_err(|e| RecordError(format!("{}: not JSON: {e}", path.display())))?;
    match value.get("record_schema").and_then(|v| v.as_u64()) {
        Some(v) if v == u64::from(RECORD_SCHEMA) => {}
        Some(v) => {
            return Err(RecordError(format!(
                "{}: record schema {v}, this tool reads {RECORD_SCHEMA}",
                path.display()
            )));
        }
        None => {
            return Err(RecordError(format!(
                "{}: not a benchmark record (no record_schema)",
                path.display()
            )));
        }
    }
    let harness_schema = value
        .pointer("/results/schema_version")
        .and_then(|v| v.as_u64());
    if harness_schema != Some(u64::from(harness::SCHEMA_VERSION)) {
        return Err(RecordError(format!(
            "{}: results schema {harness_schema:?}, this tool reads {}",
            path.display(),
            harness::SCHEMA_VERSION
        )));
    }
    serde_json::from_value(value).map_err(|e| RecordError(format!("{}: {e}", path.display())))
}

/// Writes `contents` to `path` atomically (a temporary file, then rename),
/// so a crash never leaves a half-written file behind as a result.
pub fn write_atomic(path: &Path, contents: &[u8]) -> std::io::Result<()> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    std::fs::write(&tmp, contents)?;
    std::fs::rename(&tmp, path)
}

/// The stored runs in `dir`, oldest first (names sort by UTC time).
pub fn stored_runs(dir: &Path) -> Vec<PathBuf> {
    let mut runs: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| {
                    p.file_name()
                        .and_then(|n| n.to_str())
                        .is_some_and(|n| n.starts_with("benchmark_") && n.ends_with(".json"))
                })
                .collect()
        })
        .unwrap_or_default();
    runs.sort();
    runs
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record() -> BenchRecord {
        BenchRecord {
            record_schema: RECORD_SCHEMA,
            started_utc: "2026-11-30T00:00:00Z".into(),
            machine: Machine::detect(),
            toolchain: "rustc 1.95.0".into(),
            git: None,
            command: vec!["cargo".into(), "xtask".into()],
            against: None,
            results: RunResults {
                schema_version: harness::SCHEMA_VERSION,
                ..RunResults::default()
            },
        }
    }

    #[test]
    fn records_round_trip_and_foreign_files_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("benchmark_a.json");
        write_atomic(&path, &serde_json::to_vec(&record()).unwrap()).unwrap();
        let back = load(&path).unwrap();
        assert_eq!(back.results.schema_version, harness::SCHEMA_VERSION);
        assert_eq!(stored_runs(dir.path()), vec![path.clone()]);

        let foreign = dir.path().join("other.json");
        std::fs::write(&foreign, br#"{"name": "something else"}"#).unwrap();
        assert!(
            load(&foreign)
                .unwrap_err()
                .0
                .contains("not a benchmark record")
        );
        std::fs::write(&foreign, br#"{"record_schema": 99}"#).unwrap();
        assert!(load(&foreign).unwrap_err().0.contains("record schema 99"));
        std::fs::write(&foreign, b"garbage").unwrap();
        assert!(load(&foreign).unwrap_err().0.contains("not JSON"));
        assert!(load(&dir.path().join("missing.json")).is_err());
        let mut old = serde_json::to_value(record()).unwrap();
        old["results"]["schema_version"] = 0.into();
        std::fs::write(&foreign, old.to_string()).unwrap();
        assert!(load(&foreign).unwrap_err().0.contains("results schema"));
    }

    #[test]
    fn machine_facts_are_read() {
        let m = Machine::detect();
        assert!(m.cpus >= 1 && m.memory_mib > 0 && !m.kernel.is_empty());
    }

    #[test]
    fn another_machine_is_not_the_same() {
        let here = Machine::detect();
        assert!(here.same_as(&here.clone()));
        let mut rebooted = here.clone();
        rebooted.memory_mib += here.memory_mib / 200;
        assert!(
            here.same_as(&rebooted),
            "memory moves a little between boots"
        );
        for change in [
            |m: &mut Machine| m.cpus += 1,
            |m: &mut Machine| m.kernel.push('+'),
            |m: &mut Machine| m.machine_id = Some("another".into()),
            |m: &mut Machine| m.cpu_model = "another CPU".into(),
            |m: &mut Machine| m.memory_mib *= 2,
        ] {
            let mut other = here.clone();
            change(&mut other);
            assert!(!here.same_as(&other), "{other:?}");
        }
    }
}
