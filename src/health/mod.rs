//! Health checks of running programs (`[[HealthCheck:NAME]]`): running a check or repair
//! command against a program's process and turning its end into a verdict (`run`), the
//! daemon-side thread that runs them on schedule and counts failures (`watch`), and the
//! plain types both share. It owns the check processes — spawning, timing out, killing their
//! whole process group, reaping — and nothing else: it never signals, restarts or alerts about
//! the program itself. A check asks for action through an `Event`; the daemon decides and acts
//! (`control`), so identity-before-action stays where it is proven.
//!
//! A check is `/bin/sh -c COMMAND` in a process group of its own, stdin `/dev/null`, stdout
//! and stderr into one pipe of which the last `OUTPUT_TAIL` bytes are kept, and the program's
//! environment (`inherit_env`, `[[Env]]`) plus `USRSVC_PROGRAM`, `USRSVC_PID` and
//! `USRSVC_CHECK`. Exit 0 is healthy, 1 degraded (reported, never acted on), anything else,
//! death by a signal, a timeout or a failure to start is failing. When a check ends, whatever
//! it left in its process group is killed, so a check never leaks background processes.

mod run;
mod watch;

use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};

// The check's spec is config's plain data (config must not depend on health).
pub use crate::config::{CheckSpec, HealthAction};
pub use run::OUTPUT_TAIL;
pub use watch::{Event, Watcher};

/// The program a check looks at.
#[derive(Clone, Debug)]
pub struct Target {
    pub program: String,
    pub pid: i32,
    /// The real start time of the process (`start_period` counts from it).
    pub started: SystemTime,
    /// The program's `[[Env]]`.
    pub env: Vec<(String, String)>,
    pub inherit_env: bool,
}

/// A check's verdict.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Healthy,
    Degraded,
    Failing,
}

/// How a check or repair process ended.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Exit {
    Code(i32),
    Signal(i32),
    /// Still running after this long: its process group was killed.
    TimedOut(Duration),
    /// Could not be started (no pipe, no `/bin/sh`, no pidfd): the reason.
    NotStarted(String),
    /// Ran, but its exit status could not be collected (someone else reaped it).
    Lost(String),
}

impl Exit {
    pub fn status(&self) -> Status {
        match self {
            Exit::Code(0) => Status::Healthy,
            Exit::Code(1) => Status::Degraded,
            _ => Status::Failing,
        }
    }
}

/// One finished run of a check or repair command.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Outcome {
    pub status: Status,
    pub exit: Exit,
    /// The last `OUTPUT_TAIL` bytes of stdout and stderr together, as lossy UTF-8.
    pub output: String,
    pub elapsed: Duration,
    /// When it started.
    pub at: SystemTime,
}

impl Outcome {
    /// "exit 2", "killed by SIGKILL", "timed out after 10s", "not started: …".
    pub fn describe(&self) -> String {
        match &self.exit {
            Exit::Code(c) => format!("exit {c}"),
            Exit::Signal(s) => match nix::sys::signal::Signal::try_from(*s) {
                Ok(sig) => format!("killed by {}", sig.as_str()),
                Err(_) => format!("killed by signal {s}"),
            },
            Exit::TimedOut(after) => format!("timed out after {}", seconds(*after)),
            Exit::NotStarted(why) => format!("not started: {why}"),
            Exit::Lost(why) => format!("exit status unknown: {why}"),
        }
    }
}

/// "10s", "0.25s": as short as the value allows.
fn seconds(d: Duration) -> String {
    let text = format!("{:.3}", d.as_secs_f64());
    let text = text.trim_end_matches('0').trim_end_matches('.');
    format!("{text}s")
}

/// Runs one check now and waits for it (bounded by its timeout): `usrsvc health`.
pub fn run_check(target: &Target, spec: &CheckSpec) -> Outcome {
    let mut all = run::run_together(&[run::Job {
        target,
        check: &spec.name,
        command: &spec.command,
        timeout: spec.timeout,
    }]);
    all.pop()
        .unwrap_or_else(|| run::not_started("nothing ran".into()))
}

/// Runs the check's repair command now and waits for it: `usrsvc repair`. None when the
/// check has no repair.
pub fn run_repair(target: &Target, spec: &CheckSpec) -> Option<Outcome> {
    let repair = spec.repair.as_deref()?;
    let mut all = run::run_together(&[run::Job {
        target,
        check: &spec.name,
        command: repair,
        timeout: spec.timeout,
    }]);
    all.pop()
}

/// Runs several checks at once, each bounded by its own timeout; outcomes in input order.
pub fn run_all(jobs: &[(Target, CheckSpec)]) -> Vec<Outcome> {
    let jobs: Vec<run::Job<'_>> = jobs
        .iter()
        .map(|(target, spec)| run::Job {
            target,
            check: &spec.name,
            command: &spec.command,
            timeout: spec.timeout,
        })
        .collect();
    run::run_together(&jobs)
}

#[cfg(test)]
mod tests;
