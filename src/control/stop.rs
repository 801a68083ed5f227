//! `stop`: the program's `stop_signal` (SIGTERM) through a pidfd, then SIGCONT, to its main
//! process and — with `stop_group` — to every process of its session (see `session`), then
//! `term_to_kill_seconds` for all of it to exit, then SIGKILL to what is left, then wait until
//! all of it is really gone, so that a following start never sees it (1.5.13 signalled the
//! main process only, never woke a stopped one, and did not wait after SIGKILL: `restart`
//! could adopt the dying process, and children kept ports and files).
//!
//! Also the clean-up before a start or a stop: when the pidfile names a main process that died, what
//! is left of its session (the workers of a server whose master was killed, holding its
//! listening socket) is stopped the same way, so that the new start can bind its port.

use crate::config::ProgramConfig;
use crate::control::identify::{find_running, Mode};
use crate::control::report::Report;
use crate::control::session::{stop_all, HowToStop, Members, Scope, Stopped};
use crate::control::signal::{Ending, Pidfd};
use crate::exit::ReturnCode;
use crate::proc::{self, Matcher, PidfileRead, ProcInfo};

/// What a stop did, for the caller and the audit trail.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StopOutcome {
    pub code: ReturnCode,
    /// The process it found (and stopped, when the code is SUCCESS).
    pub old: Option<i32>,
    pub ending: Ending,
}

impl StopOutcome {
    /// The audit record's result: `ok` (exited on the stop signal), `killed` (needed
    /// SIGKILL), `not running`, `failed`.
    pub fn result(&self) -> &'static str {
        match (self.code.is_success(), self.old, self.ending) {
            (true, Some(_), Ending::Killed) => "killed",
            (true, Some(_), _) => "ok",
            (true, None, _) => "not running",
            (false, _, _) => "failed",
        }
    }
}

/// Stops `prog` if it runs. The caller holds the program's lock. SUCCESS, as in 1.5.13, also
/// when it was not running; UNKNOWN_FAILURE only when a process survived SIGKILL.
pub fn stop(prog: &ProgramConfig, matcher: &Matcher, report: &dyn Report) -> ReturnCode {
    stop_found(prog, matcher, report).code
}

/// `stop`, also saying which process it found and how it ended.
pub fn stop_found(prog: &ProgramConfig, matcher: &Matcher, report: &dyn Report) -> StopOutcome {
    let Some(running) = find_running(prog, matcher, Mode::Repair, report) else {
        report.info(&format!("{} was not running.", prog.name));
        return StopOutcome {
            code: ReturnCode::Success,
            old: None,
            ending: Ending::NoAction,
        };
    };
    let (code, ending) = stop_process(prog, &running, report);
    StopOutcome {
        code,
        old: Some(running.pid),
        ending,
    }
}

/// The stop signal and grace period of `prog`.
fn how(prog: &ProgramConfig) -> HowToStop {
    HowToStop {
        signal: rustix::process::Signal::from_named_raw(prog.stop_signal)
            .unwrap_or(rustix::process::Signal::TERM),
        grace: crate::control::seconds(prog.term_to_kill_seconds),
    }
}

fn others(n: usize) -> String {
    match n {
        0 => String::new(),
        1 => " (and 1 other process of its session)".into(),
        n => format!(" (and {n} other processes of its session)"),
    }
}

fn stop_process(
    prog: &ProgramConfig,
    running: &ProcInfo,
    report: &dyn Report,
) -> (ReturnCode, Ending) {
    report.info(&format!("Stopping {} [{}]", prog.name, running.pid));
    let main = match Pidfd::open_verified(running) {
        Ok(fd) => fd,
        Err(e) => {
            // Without a pidfd there is no race-free way to signal it: refuse, keep the pidfile.
            report.error(&format!(
                "({}) - Cannot open a pidfd for pid {} (Linux 5.3 or later is required): {e}",
                prog.name, running.pid
            ));
            return (ReturnCode::UnknownFailure, Ending::NoAction);
        }
    };
    let scope = if prog.stop_group {
        Scope::of(running)
    } else {
        Scope::Alone
    };
    let stopped = stop_all(main, &Members::new(scope, running.start_ticks), how(prog));
    if stopped.ending == Ending::Stuck {
        report.error(&format!(
            "{} [{}]{} is still running {} s after SIGKILL; its pidfile is kept.",
            prog.name,
            running.pid,
            others(stopped.members),
            crate::control::signal::AFTER_KILL.as_secs()
        ));
        return (ReturnCode::UnknownFailure, stopped.ending);
    }
    if let Err(e) = crate::control::identify::remove_pidfile(prog) {
        report.error(&format!(
            "({}) Unable to remove pidfile {}: {e}",
            prog.name,
            prog.pidfile.display()
        ));
    }
    report.info(&format!(
        "{} {}{}",
        prog.name,
        stopped.ending.word(),
        others(stopped.members)
    ));
    (ReturnCode::Success, stopped.ending)
}

/// What was left of a program whose main process died, and what its clean-up did.
#[derive(Debug, Clone, Copy)]
pub struct Leftovers {
    /// The dead main process (the session's id).
    pub pid: i32,
    pub stopped: Stopped,
}

impl Leftovers {
    /// The audit record's result: `ok`, `killed` or `failed` (something survived SIGKILL).
    pub fn result(&self) -> &'static str {
        match self.stopped.ending {
            Ending::Killed => "killed",
            Ending::Stuck => "failed",
            Ending::Terminated | Ending::NoAction => "ok",
        }
    }
}

/// What a dead main process left of its session (with `stop_group`): when the pidfile names
/// a process that is gone, the user's processes whose session id is that pid and that started
/// no earlier than it (when that is known). Returns the pid, the rule and what it found now;
/// None when there is nothing.
fn find_leftovers(prog: &ProgramConfig) -> Option<(i32, Members, Vec<ProcInfo>)> {
    // Looking for them is a look at every process: not for a program that must never be
    // looked for that way (`scan_for_process = false`), which is also how usrsvcd tells its
    // crash worker that nothing is left (it saw no descendant of its own but its programs and
    // workers, and what a dead program of its leaves behind is re-parented to it).
    if !prog.stop_group || !prog.scan_for_process {
        return None;
    }
    let PidfileRead::Pid { pid, written } = proc::read_pidfile(&prog.pidfile) else {
        return None;
    };
    // A pidfile from before this boot names nothing that runs now.
    if written < proc::boot_time() {
        return None;
    }
    let recorded = crate::control::identify::recorded_start(prog, pid);
    // When the pid is free, it may have been given since to an unrelated process that made
    // it the id of a session of its own and left members in it. A member born while the
    // recorded process still held the pid proves the session its: that member has kept the
    // session, and so the pid, reserved ever since.
    let mut born_by = None;
    let since = match proc::read_proc(pid) {
        // It runs: the program, or a reuse of the pid (then no session of that id is left).
        Some(p) if p.is_alive() => return None,
        // A zombie nobody reaped yet: it must have led its session, and be the process usrsvc
        // recorded, if it recorded one.
        Some(z) => {
            if z.session != pid
                || z.uid != proc::my_uid()
                || recorded.is_some_and(|r| r != z.start_ticks)
            {
                return None;
            }
            z.start_ticks
        }
        None => {
            let (start, seen) = crate::control::identify::recorded_lifetime(prog, pid)?;
            born_by = Some(seen);
            start
        }
    };
    let members = Members::new(Scope::Session(pid), since);
    let found = members.scan(&[]);
    if let Some(seen) = born_by {
        // Born a whole clock tick before the record's time: the record's time is a coarse,
        // wall-clock one, and a tick of slack keeps a process born just after it out.
        if !found.iter().any(|p| p.start_ticks + 1 < seen) {
            return None;
        }
    }
    (!found.is_empty()).then_some((pid, members, found))
}

/// Whether the pidfile's dead `pid` left processes of its session that are not the program:
/// then the pidfile is kept for `start` or `stop` to find them.
pub fn has_leftovers(prog: &ProgramConfig, matcher: &Matcher, pid: i32) -> bool {
    find_leftovers(prog).is_some_and(|(p, _, found)| {
        p == pid && !found.iter().any(|f| matcher.matches(f.pid, &f.cmdline))
    })
}

/// Before a start or stop (with `stop_group`): stops what the pidfile's dead main process left
/// of its session (`find_leftovers`). None when there is nothing to do. A member that is
/// itself the program (a copy the dead process handed over to, as in a binary upgrade) is left
/// alone for the start to adopt. The caller holds the lock.
pub fn stop_leftovers(
    prog: &ProgramConfig,
    matcher: &Matcher,
    report: &dyn Report,
) -> Option<Leftovers> {
    let (pid, members, found) = find_leftovers(prog)?;
    let name = &prog.name;
    if let Some(p) = found.iter().find(|p| matcher.matches(p.pid, &p.cmdline)) {
        report.info(&format!(
            "({name}) - pid {pid} of the pidfile is gone; pid {} of its session is the program, and is not stopped.",
            p.pid
        ));
        return None;
    }
    let pids: Vec<String> = found.iter().map(|p| p.pid.to_string()).collect();
    report.error(&format!(
        "({name}) - pid {pid} of the pidfile is gone, but {} process(es) of its session remain: {}. Stopping them.",
        found.len(),
        pids.join(", ")
    ));
    let stopped = stop_all(None, &members, how(prog));
    let line = format!(
        "({name}) - What was left of pid {pid}'s session: {} process(es) {}.",
        stopped.members,
        stopped.ending.word()
    );
    if stopped.ending == Ending::Stuck {
        report.error(&line);
    } else {
        report.info(&line);
    }
    Some(Leftovers { pid, stopped })
}
