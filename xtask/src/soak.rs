//! `cargo xtask soak`: the long reliability runs of the harness runner.

use std::process::Command;

use crate::Failure;
use crate::workspace::{build_runner, workspace_root};

/// Parses `90`, `90s`, `10m`, `1h` into seconds.
pub fn parse_duration(s: &str) -> Result<u64, Failure> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (n, unit) = s.split_at(split);
    let n: u64 = n
        .parse()
        .map_err(|_| Failure::Input(format!("bad duration `{s}`; expected e.g. 60s, 10m")))?;
    let scale = match unit {
        "" | "s" => 1,
        "m" => 60,
        "h" => 3600,
        _ => {
            return Err(Failure::Input(format!(
                "bad duration unit in `{s}`; use s, m or h"
            )));
        }
    };
    match n * scale {
        0 => Err(Failure::Input("duration must be positive".into())),
        secs => Ok(secs),
    }
}

/// Runs the soak (and backpressure) and returns the exit code.
pub fn run(
    duration: &str,
    backpressure: Option<&str>,
    transports: &[String],
) -> Result<u8, Failure> {
    let secs = parse_duration(duration)?;
    let backpressure = backpressure.map(parse_duration).transpose()?;
    for t in transports {
        t.parse::<harness::Transport>()
            .map_err(|e| Failure::Input(e.to_string()))?;
    }
    let runner = build_runner(&workspace_root())?;
    let mut cmd = Command::new(runner);
    cmd.arg(format!("--soak={secs}"));
    if let Some(b) = backpressure {
        cmd.arg(format!("--backpressure={b}"));
    }
    if !transports.is_empty() {
        cmd.arg(format!("--transports={}", transports.join(",")));
    }
    let status = cmd
        .status()
        .map_err(|e| Failure::Error(format!("running the soak: {e}")))?;
    Ok(if status.success() { 0 } else { 1 })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse() {
        assert_eq!(parse_duration("60s").ok(), Some(60));
        assert_eq!(parse_duration("10m").ok(), Some(600));
        assert_eq!(parse_duration("2").ok(), Some(2));
        assert!(parse_duration("0s").is_err());
        assert!(parse_duration("ten").is_err());
        assert!(parse_duration("5 parsecs").is_err());
    }
}
