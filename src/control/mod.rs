//! The only code that starts or signals processes: the verbs start, stop, restart and status on
//! one program, under that program's lock. Everything here identifies a process (pid + uid +
//! start time + cmdline) before acting on it, and acts through a pidfd.

pub mod audit;
pub(crate) mod envfile;
pub mod group;
pub mod hold;
pub mod identify;
pub mod lock;
pub mod report;
pub mod session;
pub mod signal;
pub(crate) mod spawn;
pub mod start;
pub mod stop;

use std::time::Duration;

pub use identify::{find_running, Mode};
pub use lock::{runtime_dir, LockError, ProgramLock};
pub use report::{process_dict, Report};

pub use crate::audit::Trigger;

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
fn mark(action: Action, name: &str, req: &Request<'_>, report: &dyn Report) -> Option<Outcome> {
    match (action, req.by) {
        (Action::Status, _) => None,
        (Action::Stop, Actor::Operator) if req.step => None,
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

/// The answer to a program lock that could not be had: 1.5.13's TRY_AGAIN after waiting, or
/// INSUFFICIENT_PERMISSIONS when the runtime directory or the lock file is unusable.
fn lock_failed(name: &str, e: LockError, report: &dyn Report) -> Outcome {
    match e {
        LockError::Timeout => {
            report.error(&format!(
                "Cannot acquire lock for {name}. Is something else looping trying to access it? Try the command again."
            ));
            Outcome::no_process(ReturnCode::TryAgain)
        }
        e => {
            report.error(&format!("({name}) - {e}"));
            Outcome::no_process(ReturnCode::InsufficientPermissions)
        }
    }
}

/// The program's matcher, or the outcome of a configuration that cannot build one.
fn matcher_of(prog: &ProgramConfig, report: &dyn Report) -> Result<Matcher, Outcome> {
    Matcher::new(&prog.command, prog.useshell, prog.proctitle_re.as_deref()).map_err(|e| {
        report.error(&format!("({}) - Cannot build a matcher: {e}", prog.name));
        Outcome::no_process(ReturnCode::InvalidConfig)
    })
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

/// Who asks for an action and why: what the audit trail records.
#[derive(Debug, Clone, PartialEq)]
pub struct Request<'r> {
    pub by: Actor,
    pub trigger: Trigger,
    pub reason: Option<&'r str>,
    /// A step of a group restart: its `stop` does not mark the program stopped by the
    /// operator. The group's lock keeps usrsvcd off the member until the sequence is over;
    /// if the sequence fails or dies half-way, the daemon restarts what is down.
    pub step: bool,
    /// A restart meant for this process (pid, start ticks): the daemon's planned, monitor and
    /// health restarts. If another process runs by the time the lock is had (an operator's
    /// `usrsvc restart` came first), or none, nothing is done: a second restart would undo
    /// the first.
    pub expect: Option<(i32, u64)>,
    /// The process a crash restart replaces (it died): its pid goes into the audit record.
    pub replaces: Option<i32>,
    /// The delegated caller (passwd name, uid) an action of the daemon's API is done for:
    /// every audit record of the action carries it.
    pub caller: Option<(String, u32)>,
}

impl<'r> Request<'r> {
    /// `usrsvc ACTION NAME [--reason TEXT]`.
    pub fn cli(reason: Option<&'r str>) -> Request<'r> {
        Request {
            by: Actor::Operator,
            trigger: Trigger::Cli,
            reason,
            step: false,
            expect: None,
            replaces: None,
            caller: None,
        }
    }
}

/// Runs `action` on the program `name`: the single-program path of `usrsvc ACTION NAME`.
/// `status` never waits behind another command's lock: when the lock is taken it only looks.
pub fn run(config: &Config, action: Action, name: &str, report: &dyn Report) -> Outcome {
    run_as(config, action, name, report, &Request::cli(None))
}

/// `run` on behalf of `req.by`, recorded in the audit trail with `req`'s trigger and reason.
pub fn run_as(
    config: &Config,
    action: Action,
    name: &str,
    report: &dyn Report,
    req: &Request<'_>,
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
    let matcher = match matcher_of(prog, report) {
        Ok(m) => m,
        Err(outcome) => return outcome,
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
        Err(e) => return lock_failed(name, e, report),
    };
    if let Some(outcome) = mark(action, name, req, report) {
        return outcome;
    }
    if let (Action::Restart, Some((pid, ticks))) = (action, req.expect) {
        let now = find_running(prog, &matcher, Mode::Repair, report);
        if now
            .as_ref()
            .is_none_or(|p| p.pid != pid || p.start_ticks != ticks)
        {
            report.info(&format!(
                "({name}) - not restarted: pid {pid}, which the restart was for, is gone or was replaced{}.",
                now.as_ref().map(|p| format!(" (now pid {})", p.pid)).unwrap_or_default()
            ));
            return Outcome {
                code: ReturnCode::Success,
                process: now,
            };
        }
    }
    if action != Action::Status {
        // A main process that died may have left its session behind (a server's workers,
        // holding its port): stopped first, or a new start fails on them (and a stop would
        // leave them running).
        if let Some(left) = stop::stop_leftovers(prog, &matcher, report) {
            let old = Some(left.pid);
            audit::record(
                config,
                name,
                "cleanup",
                req,
                left.result(),
                old,
                None,
                report,
            );
        }
    }
    let outcome = match action {
        Action::Start => {
            let (outcome, fresh) = start::start_fresh(prog, &matcher, report);
            let launched = outcome.process.as_ref().map(|p| p.pid);
            let result = match (fresh, outcome.code.is_success()) {
                (false, _) => "already running",
                (true, true) => "ok",
                (true, false) => "failed",
            };
            let old = req.replaces.or(if fresh { None } else { launched });
            // A crash restart that finds the program running as another process: a hand-over
            // (or a start by other means), adopted.
            let what = if !fresh && req.replaces.is_some() {
                "adopt"
            } else {
                "start"
            };
            audit::record(config, name, what, req, result, old, launched, report);
            outcome
        }
        Action::Stop => {
            let stopped = stop::stop_found(prog, &matcher, report);
            let old = stopped.old;
            audit::record(
                config,
                name,
                "stop",
                req,
                stopped.result(),
                old,
                None,
                report,
            );
            Outcome::no_process(stopped.code)
        }
        Action::Restart => {
            let stopped = stop::stop_found(prog, &matcher, report);
            let old = stopped.old;
            let outcome = start::start(prog, &matcher, report);
            // `killed`: restarted, but the old process had to be SIGKILLed.
            let result = match (outcome.code.is_success(), stopped.result()) {
                (true, "killed") => "killed",
                (true, _) => "ok",
                (false, _) => "failed",
            };
            let new = outcome.process.as_ref().map(|p| p.pid);
            audit::record(config, name, "restart", req, result, old, new, report);
            outcome
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

// The config's `stop_signal` and `allow = signal:NAME` read signals the same way; config
// must not depend on control, so the parser lives there.
pub use crate::config::parse_signal;

/// `usrsvc signal NAME SIGNAL`: sends `signal` to the program's process once it is identified
/// (pidfile or scan, uid, start time, command line), through a pidfd opened before the last
/// identity check, under the program's lock so it never lands on a process half-way through a
/// restart. Audited as `signal:NAME`.
pub fn send_signal(
    config: &Config,
    name: &str,
    signal: rustix::process::Signal,
    report: &dyn Report,
    req: &Request<'_>,
) -> Outcome {
    let Some(prog) = config.program(name) else {
        report.error(&format!("No such program: {name}"));
        return Outcome::no_process(ReturnCode::ProgramUndefined);
    };
    let sig_name = nix::sys::signal::Signal::try_from(signal.as_raw())
        .map(|s| s.as_str().trim_start_matches("SIG").to_string())
        .unwrap_or_else(|_| signal.as_raw().to_string());
    let action = format!("signal:{sig_name}");
    let matcher = match matcher_of(prog, report) {
        Ok(m) => m,
        Err(outcome) => return outcome,
    };
    let _lock = match ProgramLock::acquire(name, lock_timeout(prog)) {
        Ok(lock) => lock,
        Err(e) => return lock_failed(name, e, report),
    };
    let Some(p) = find_running(prog, &matcher, Mode::Repair, report) else {
        report.error(&format!("{name} is NOT running; no signal sent."));
        audit::record(
            config,
            name,
            &action,
            req,
            "not running",
            None,
            None,
            report,
        );
        return Outcome::no_process(ReturnCode::GeneralFailure);
    };
    let sent = match signal::Pidfd::open_verified(&p) {
        Ok(Some(fd)) => fd.signal(signal).map_err(|e| e.to_string()),
        Ok(None) => Err("it exited or is no longer the same process".to_string()),
        Err(e) => Err(format!("cannot open a pidfd: {e}")),
    };
    match sent {
        Ok(()) => {
            report.info(&format!("Sent SIG{sig_name} to {name} [{}]", p.pid));
            audit::record(
                config,
                name,
                &action,
                req,
                "ok",
                Some(p.pid),
                Some(p.pid),
                report,
            );
            Outcome {
                code: ReturnCode::Success,
                process: Some(p),
            }
        }
        Err(e) => {
            report.error(&format!(
                "({name}) - SIG{sig_name} not sent to [{}]: {e}",
                p.pid
            ));
            audit::record(
                config,
                name,
                &action,
                req,
                "failed",
                Some(p.pid),
                None,
                report,
            );
            Outcome::no_process(ReturnCode::GeneralFailure)
        }
    }
}
