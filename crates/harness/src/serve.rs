//! The runner's serve mode (`ipc-bench --serve`): it holds one
//! [`Session`] and runs cells when asked, one request and one reply per
//! line of JSON. `cargo xtask bench` drives two runners this way to
//! interleave an old build and a new one cell by cell (A/B), and one
//! runner to add trials to blocks whose figures are still too noisy.
//!
//! Replies go to standard output behind [`REPLY_PREFIX`], so that anything
//! else written there (an agent that inherited the stream) is skipped, not
//! taken for a reply.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};

use serde::{Deserialize, Serialize};

use crate::error::{HarnessError, Result};
use crate::figure::Figure;
use crate::plan::Plan;
use crate::runner::{BlockInfo, Session};
use crate::schema::RunResults;

/// What marks a reply line.
pub const REPLY_PREFIX: &str = "ipc-bench-serve ";

/// A request to a serving runner.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "kebab-case")]
pub enum Request {
    /// The plan's blocks and cells.
    Schedule,
    /// One trial of one cell.
    Run {
        /// Block index.
        block: usize,
        /// Cell index within the block.
        cell: usize,
        /// Trial number (from 0; trials past the plan's are extra ones).
        trial: u32,
    },
    /// The figures of what has run so far.
    Figures,
    /// Write the results to `out` and exit.
    Finish {
        /// Where the results go.
        out: PathBuf,
    },
}

/// A serving runner's answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Reply {
    /// The blocks.
    Schedule(Vec<BlockInfo>),
    /// The cell ran; `error` if it failed (the run goes on).
    Ran {
        /// Why the cell failed.
        error: Option<String>,
    },
    /// The figures so far.
    Figures(Vec<Figure>),
    /// The results were written.
    Finished,
    /// The request could not be carried out.
    Refused(String),
}

/// Serves `plan` until a `finish` request or the end of `input`.
pub fn serve(plan: &Plan, input: impl BufRead, mut output: impl Write) -> Result<()> {
    let mut session = Some(Session::new(plan)?);
    for line in input.lines() {
        let line = line?;
        if line.trim().is_empty() {
            continue;
        }
        let Some(s) = session.as_mut() else { break };
        let reply = match serde_json::from_str::<Request>(&line) {
            Err(e) => Reply::Refused(format!("not a request ({e}): {line}")),
            Ok(Request::Schedule) => Reply::Schedule(s.schedule()),
            Ok(Request::Run { block, cell, trial }) => match s.run_cell(block, cell, trial) {
                Ok(error) => Reply::Ran { error },
                Err(e) => Reply::Refused(e.to_string()),
            },
            Ok(Request::Figures) => Reply::Figures(s.figures()),
            Ok(Request::Finish { out }) => {
                let results = session.take().expect("present").finish();
                let json = serde_json::to_vec_pretty(&results).expect("results serialize");
                match std::fs::write(&out, json) {
                    Ok(()) => Reply::Finished,
                    Err(e) => Reply::Refused(format!("writing {}: {e}", out.display())),
                }
            }
        };
        let text = serde_json::to_string(&reply).expect("replies serialize");
        writeln!(output, "{REPLY_PREFIX}{text}")?;
        output.flush()?;
    }
    Ok(())
}

/// A runner in serve mode, driven from another process.
#[derive(Debug)]
pub struct Client {
    name: String,
    child: Child,
    input: Option<ChildStdin>,
    output: BufReader<ChildStdout>,
}

impl Client {
    /// Starts `command` (a runner with its plan's arguments) in serve
    /// mode; `name` says which build it is in errors.
    pub fn spawn(mut command: Command, name: &str) -> Result<Self> {
        let mut child = command
            .arg("--serve")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .map_err(|e| HarnessError::Invalid(format!("starting the {name} runner: {e}")))?;
        let input = child.stdin.take().expect("piped");
        let output = BufReader::new(child.stdout.take().expect("piped"));
        Ok(Client {
            name: name.to_owned(),
            child,
            input: Some(input),
            output,
        })
    }

    /// Which build this is.
    pub fn name(&self) -> &str {
        &self.name
    }

    fn request(&mut self, request: &Request) -> Result<Reply> {
        let gone = |e: std::io::Error| {
            HarnessError::Invalid(format!("the {} runner stopped answering: {e}", self.name))
        };
        let text = serde_json::to_string(request).expect("requests serialize");
        let input = self.input.as_mut().expect("open until dropped");
        writeln!(input, "{text}").map_err(gone)?;
        input.flush().map_err(gone)?;
        let mut line = String::new();
        loop {
            line.clear();
            if self.output.read_line(&mut line).map_err(gone)? == 0 {
                let status = self.child.wait().map_err(gone)?;
                return Err(HarnessError::Invalid(format!(
                    "the {} runner exited ({status}) while asked {text}{}",
                    self.name,
                    if status.code() == Some(2) {
                        " (a runner that predates serve mode rejects --serve)"
                    } else {
                        ""
                    }
                )));
            }
            if let Some(reply) = line.trim_end().strip_prefix(REPLY_PREFIX) {
                return match serde_json::from_str(reply)? {
                    Reply::Refused(why) => Err(HarnessError::Invalid(format!(
                        "the {} runner refused {text}: {why}",
                        self.name
                    ))),
                    reply => Ok(reply),
                };
            }
            // Not a reply: something an agent printed.
        }
    }

    fn unexpected(&self, reply: Reply) -> HarnessError {
        HarnessError::Invalid(format!("the {} runner answered {reply:?}", self.name))
    }

    /// The plan's blocks.
    pub fn schedule(&mut self) -> Result<Vec<BlockInfo>> {
        match self.request(&Request::Schedule)? {
            Reply::Schedule(blocks) => Ok(blocks),
            other => Err(self.unexpected(other)),
        }
    }

    /// Runs one trial of one cell; `Some(why)` if it failed.
    pub fn run(&mut self, block: usize, cell: usize, trial: u32) -> Result<Option<String>> {
        match self.request(&Request::Run { block, cell, trial })? {
            Reply::Ran { error } => Ok(error),
            other => Err(self.unexpected(other)),
        }
    }

    /// The figures so far.
    pub fn figures(&mut self) -> Result<Vec<Figure>> {
        match self.request(&Request::Figures)? {
            Reply::Figures(f) => Ok(f),
            other => Err(self.unexpected(other)),
        }
    }

    /// Ends the session and reads its results (written to `out`).
    pub fn finish(mut self, out: &Path) -> Result<RunResults> {
        match self.request(&Request::Finish {
            out: out.to_owned(),
        })? {
            Reply::Finished => {}
            other => return Err(self.unexpected(other)),
        }
        let text = std::fs::read(out)?;
        Ok(serde_json::from_slice(&text)?)
    }
}

impl Drop for Client {
    fn drop(&mut self) {
        // Closing its input ends a serving runner; one stuck in a cell is
        // killed rather than waited for.
        drop(self.input.take());
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while matches!(self.child.try_wait(), Ok(None)) {
            if std::time::Instant::now() > deadline {
                let _ = self.child.kill();
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        let _ = self.child.wait();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::Group;

    #[test]
    fn serves_a_schedule_runs_a_cell_and_refuses_what_is_not_there() {
        let mut plan = Plan::tiny();
        plan.groups = vec![Group::Serialization];
        plan.transports = vec![crate::Transport::Pipe];
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("results.json");
        let requests = [
            serde_json::to_string(&Request::Schedule).unwrap(),
            "garbage".to_string(),
            serde_json::to_string(&Request::Run {
                block: 99,
                cell: 0,
                trial: 0,
            })
            .unwrap(),
            serde_json::to_string(&Request::Run {
                block: 0,
                cell: 0,
                trial: 0,
            })
            .unwrap(),
            serde_json::to_string(&Request::Figures).unwrap(),
            serde_json::to_string(&Request::Finish { out: out.clone() }).unwrap(),
        ]
        .join("\n");
        let mut written = Vec::new();
        serve(&plan, requests.as_bytes(), &mut written).unwrap();
        let replies: Vec<Reply> = String::from_utf8(written)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l.strip_prefix(REPLY_PREFIX).unwrap()).unwrap())
            .collect();
        assert_eq!(replies.len(), 6, "{replies:?}");
        let Reply::Schedule(blocks) = &replies[0] else {
            panic!("{:?}", replies[0])
        };
        assert_eq!(blocks[0].cells[0], "codecs");
        assert!(matches!(&replies[1], Reply::Refused(why) if why.contains("not a request")));
        assert!(matches!(&replies[2], Reply::Refused(why) if why.contains("no block 99")));
        assert_eq!(replies[3], Reply::Ran { error: None });
        let Reply::Figures(figures) = &replies[4] else {
            panic!("{:?}", replies[4])
        };
        assert!(figures.iter().any(|f| f.id.group == Group::Serialization));
        assert_eq!(replies[5], Reply::Finished);
        let results: crate::RunResults =
            serde_json::from_slice(&std::fs::read(&out).unwrap()).unwrap();
        assert!(!results.serialization.is_empty());
    }
}
