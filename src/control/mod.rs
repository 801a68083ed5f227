//! The only code that starts or signals processes: the verbs start, stop, restart and status on
//! one program, under that program's lock. Everything here identifies a process (pid + uid +
//! start time + cmdline) before acting on it, and acts through a pidfd.

pub mod hold;
pub mod identify;
pub mod lock;
pub mod report;
pub mod signal;
pub(crate) mod spawn;
pub mod start;
pub mod stop;

use std::time::Duration;

pub use identify::{find_running, Mode};
pub use lock::{runtime_dir, LockError, ProgramLock};
pub use report::{process_dict, Report};

use crate::config::{Config, ProgramConfig};
use crate::exit::ReturnCode;
use crate::proc::{Matcher, ProcInfo};

/// The verbs of `usrsvc` on one program.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Start,
    Stop,
    Restart,
    Status,
}

impl Action {
    pub fn parse(word: &str) -> Option<Action> {
        match word {
            "start" => Some(Action::Start),
            "stop" => Some(Action::Stop),
            "restart" => Some(Action::Restart),
            "status" => Some(Action::Status),
            _ => None,
        }
    }

    pub fn word(self) -> &'static str {
        match self {
            Action::Start => "start",
            Action::Stop => "stop",
            Action::Restart => "restart",
            Action::Status => "status",
        }
    }
}

/// What an action found or left running, for `--json` and for callers that go on from here.
#[derive(Debug)]
pub struct Outcome {
    pub code: ReturnCode,
    pub process: Option<ProcInfo>,
}

impl Outcome {
    /// An outcome without a process: a failure, or a stop.
    pub fn no_process(code: ReturnCode) -> Outcome {
        Outcome {
            code,
            process: None,
        }
    }
}

/// Keeps the operator-stop mark in step with the action, under the program's lock. Some when
/// the action must not go on.
fn mark(action: Action, name: &str, by: Actor, report: &dyn Report) -> Option<Outcome> {
    match (action, by) {
        (Action::Status, _) => None,
        (Action::Stop, Actor::Operator) => {
            if let Err(e) = hold::mark_stopped(name) {
                report.error(&format!(
                    "({name}) - Warning: cannot record the stop ({e}); a running usrsvcd may start {name} again."
                ));
            }
            None
        }
        (Action::Start | Action::Restart, Actor::Operator) => {
            if let Err(e) = hold::clear_stopped(name) {
                report.error(&format!(
                    "({name}) - Warning: cannot clear the stopped-by-operator mark ({e}); usrsvcd will not restart {name} if it dies."
                ));
            }
            None
        }
        (Action::Start | Action::Restart, Actor::Daemon) if hold::is_stopped(name) => {
            report.info(&format!(
                "({name}) - stopped by the operator (usrsvc stop {name}); not starting it."
            ));
            Some(Outcome::no_process(ReturnCode::Success))
        }
        (_, Actor::Daemon) => None,
    }
}

/// A config value in seconds as a `Duration`. 1.5.13 accepted any size, so huge values are
/// capped (at about a century) rather than overflowing a deadline.
pub fn seconds(value: f64) -> Duration {
    const CAP: Duration = Duration::from_secs(100 * 365 * 86_400);
    Duration::try_from_secs_f64(value).map_or(CAP, |d| d.min(CAP))
}

/// How long a command waits for another one working on the same program: longer than that one
/// can legitimately take (a stop's grace period plus a start's window), and never less than
/// 1.5.13's 31 s.
fn lock_timeout(prog: &ProgramConfig) -> Duration {
    let busy = prog.term_to_kill_seconds + prog.success_seconds;
    Duration::from_secs(31) + seconds(busy)
}

/// Who asks for an action: the operator (`usrsvc`) or the daemon.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Actor {
    /// `usrsvc`: `stop` marks the program stopped by the operator, `start`/`restart` clear
    /// the mark.
    Operator,
    /// `usrsvcd`: never touches the mark, and never starts a program the operator stopped
    /// (checked under the lock, so a `usrsvc stop` racing the daemon's restart wins).
    Daemon,
}

/// Runs `action` on the program `name`: the single-program path of `usrsvc ACTION NAME`.
/// `status` never waits behind another command's lock: when the lock is taken it only looks.
pub fn run(config: &Config, action: Action, name: &str, report: &dyn Report) -> Outcome {
    run_as(config, action, name, report, Actor::Operator)
}

/// `run` on behalf of `by`.
pub fn run_as(
    config: &Config,
    action: Action,
    name: &str,
    report: &dyn Report,
    by: Actor,
) -> Outcome {
    let Some(prog) = config.program(name) else {
        report.error(&format!("No such program: {name}"));
        return Outcome::no_process(ReturnCode::ProgramUndefined);
    };
    if !prog.enabled && matches!(action, Action::Start | Action::Restart) {
        report.error(&format!(
            "Program {name} is currently disabled in config. Only the \"stop\" and \"status\" actions are supported on disabled programs."
        ));
        return Outcome::no_process(ReturnCode::ProgramDisabled);
    }
    let matcher = match Matcher::new(&prog.command, prog.useshell, prog.proctitle_re.as_deref()) {
        Ok(m) => m,
        Err(e) => {
            report.error(&format!("({name}) - Cannot build a matcher: {e}"));
            return Outcome::no_process(ReturnCode::InvalidConfig);
        }
    };
    if action == Action::Status {
        // The common case needs no lock: the pidfile names the running program.
        if let Some(p) = identify::running_by_pidfile(prog, &matcher) {
            report.info(&format!("{name} is running:\n\n{}\n", process_dict(&p)));
            return Outcome {
                code: ReturnCode::Success,
                process: Some(p),
            };
        }
    }
    let lock = if action == Action::Status {
        ProgramLock::try_acquire(name)
    } else {
        ProgramLock::acquire(name, lock_timeout(prog)).map(Some)
    };
    let lock = match lock {
        Ok(lock) => lock,
        // Looking needs no lock: a status still answers when the runtime directory is unusable.
        Err(e) if action == Action::Status => {
            report.debug(&format!("({name}) - no lock, only observing: {e}"));
            None
        }
        Err(LockError::Timeout) => {
            report.error(&format!(
                "Cannot acquire lock for {name}. Is something else looping trying to access it? Try the command again."
            ));
            return Outcome::no_process(ReturnCode::TryAgain);
        }
        Err(e) => {
            report.error(&format!("({name}) - {e}"));
            return Outcome::no_process(ReturnCode::InsufficientPermissions);
        }
    };
    if let Some(outcome) = mark(action, name, by, report) {
        return outcome;
    }
    let outcome = match action {
        Action::Start => start::start(prog, &matcher, report),
        Action::Stop => Outcome::no_process(stop::stop(prog, &matcher, report)),
        Action::Restart => {
            stop::stop(prog, &matcher, report);
            start::start(prog, &matcher, report)
        }
        Action::Status => {
            let mode = if lock.is_some() {
                Mode::Repair
            } else {
                Mode::Observe
            };
            let process = find_running(prog, &matcher, mode, report);
            match &process {
                Some(p) => report.info(&format!("{name} is running:\n\n{}\n", process_dict(p))),
                None => report.error(&format!("{name} is NOT running")),
            }
            Outcome {
                code: if process.is_some() {
                    ReturnCode::Success
                } else {
                    ReturnCode::GeneralFailure
                },
                process,
            }
        }
    };
    drop(lock);
    if !outcome.code.is_success() && matches!(action, Action::Start | Action::Restart) {
        report.error(&format!(
            "Failed to start {name}! Err={}",
            ReturnCode::describe_code(i32::from(outcome.code.code()))
        ));
    }
    outcome
}
