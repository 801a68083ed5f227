//! `usrsvcd --worker ACTION [flags] -- NAME`: one action on the daemon's behalf, in a process
//! of its own, with the daemon's in-memory config as JSON on stdin (not the file, which may
//! have changed or be broken). The daemon's own workers (crash, schedule, monitor, health
//! restarts, planned group restarts) act as the daemon; the control API's workers (trigger
//! `cli` or `delegated`, and their group members with `--as-operator`) act as the operator's
//! `usrsvc` would: the same guard rails (require_reason, kill switch), `stop` marks the program
//! stopped by the operator, `start`/`restart` clear the mark, and `signal`, `health` and
//! `repair` are `usrsvc`'s own code (`cli::ops`), so they say and exit the same.
//!
//! Must not: run anything that is not in the config it got (it acts on names only; the
//! commands are the config's), or read the config file.

use std::io::Read;
use std::process::{Command, Stdio};

use crate::config::Config;
use crate::control::{self, Action, Actor, Outcome, Report, Request, Trigger};
use crate::daemon::Log;
use crate::exit::ReturnCode;

/// The worker's flags, as `usrsvcd` parsed them.
#[derive(Debug, Default)]
pub struct WorkerArgs<'a> {
    pub trigger: Option<&'a str>,
    pub reason: Option<&'a str>,
    /// `PID:START_TICKS` of the process a restart is meant for.
    pub expect: Option<&'a str>,
    pub replaces: Option<i32>,
    /// `USER:UID` of a delegated caller.
    pub caller: Option<&'a str>,
    pub as_operator: bool,
    pub step: bool,
    pub force: bool,
}

/// What `--worker ACTION` asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Job {
    Program(Action),
    Group(Action),
    Signal(String),
    Health,
    Repair(Option<String>),
}

impl Job {
    /// The ACTION words of the control API (and `status`, harmless, as before).
    pub fn parse(word: &str) -> Option<Job> {
        if let Some(sig) = word.strip_prefix("signal:") {
            return (!sig.is_empty()).then(|| Job::Signal(sig.to_owned()));
        }
        if let Some(check) = word.strip_prefix("repair:") {
            return (!check.is_empty()).then(|| Job::Repair(Some(check.to_owned())));
        }
        match word {
            "health" => Some(Job::Health),
            "repair" => Some(Job::Repair(None)),
            "start-group" => Some(Job::Group(Action::Start)),
            "stop-group" => Some(Job::Group(Action::Stop)),
            w if w == crate::daemon::supervise::GROUP_RESTART => Some(Job::Group(Action::Restart)),
            w => Action::parse(w).map(Job::Program),
        }
    }
}

/// `USER:UID` (the name may hold a `:`; the uid is after the last one).
pub fn parse_caller(text: &str) -> Option<(String, u32)> {
    let (user, uid) = text.rsplit_once(':')?;
    if user.is_empty() {
        return None;
    }
    Some((user.to_owned(), uid.parse().ok()?))
}

/// Runs the worker; its exit code is the action's.
pub fn worker(word: &str, words: &[String], args: &WorkerArgs<'_>, log: Log) -> ReturnCode {
    let (Some(job), [name]) = (Job::parse(word), words) else {
        log.error("usrsvcd --worker: needs ACTION -- NAME");
        return ReturnCode::InvalidAction;
    };
    let trigger = match args.trigger.map(str::parse::<Trigger>) {
        None => Trigger::Crash,
        Some(Ok(t)) => t,
        Some(Err(e)) => {
            log.error(&format!("usrsvcd --worker: bad --trigger: {e}"));
            return ReturnCode::GeneralFailure;
        }
    };
    let caller = match args.caller.map(parse_caller) {
        None => None,
        Some(Some(c)) => Some(c),
        Some(None) => {
            log.error("usrsvcd --worker: --caller must be USER:UID");
            return ReturnCode::GeneralFailure;
        }
    };
    // The control API's own request (not a member's of its group action): the guard rails
    // of `usrsvc` apply, as for an operator in a shell.
    let api = matches!(trigger, Trigger::Cli | Trigger::Delegated);
    let by = if api || args.as_operator {
        Actor::Operator
    } else {
        Actor::Daemon
    };
    let mut json = String::new();
    if let Err(e) = std::io::stdin().read_to_string(&mut json) {
        log.error(&format!("({name}) - worker cannot read its config: {e}"));
        return ReturnCode::UnknownFailure;
    }
    let config: Config = match serde_json::from_str(&json) {
        Ok(c) => c,
        Err(e) => {
            log.error(&format!("({name}) - worker got a bad config: {e}"));
            return ReturnCode::UnknownFailure;
        }
    };
    let flags = super::ops::Flags {
        reason: args.reason,
        force: args.force,
        json: false,
        count: None,
        follow: false,
        nested: false,
    };
    let guarded = |verb: &str| -> Result<Option<String>, ReturnCode> {
        if api {
            super::ops::guard(&config, verb, &flags, &log)
        } else {
            Ok(args.reason.map(str::to_owned))
        }
    };
    let base = Request {
        by,
        trigger,
        reason: None,
        step: args.step,
        expect: args.expect.and_then(|e| {
            let (pid, ticks) = e.split_once(':')?;
            Some((pid.parse().ok()?, ticks.parse().ok()?))
        }),
        replaces: args.replaces,
        caller,
    };
    match job {
        Job::Group(action) => {
            let Some(g) = config.group(name) else {
                log.error(&format!(
                    "usrsvcd --worker: no group {name} in the config it got"
                ));
                return ReturnCode::ProgramUndefined;
            };
            let reason = match guarded(action.word()) {
                Ok(r) => r,
                Err(code) => return code,
            };
            let req = Request {
                reason: reason.as_deref(),
                ..base
            };
            let member = |action: Action, member: &str, sub: &Request<'_>| {
                member_worker(&json, &log, action, member, sub)
            };
            control::group::run_group(&config, action, g, &log, &req, &member)
        }
        Job::Program(action) => {
            let reason = match guarded(action.word()) {
                Ok(r) => r,
                Err(code) => return code,
            };
            let req = Request {
                reason: reason.as_deref(),
                ..base
            };
            let log = log.for_program(name);
            control::run_as(&config, action, name, &log, &req).code
        }
        // `usrsvc`'s own verbs: they pass the guard rails themselves.
        Job::Signal(sig) => {
            let flags = super::ops::Flags {
                reason: args.reason,
                ..flags
            };
            super::ops::signal(&config, name, &sig, &flags, &log.for_program(name), &base)
        }
        Job::Health => super::ops::health(&config, name, &flags, &log),
        Job::Repair(check) => super::ops::repair(
            &config,
            name,
            check.as_deref(),
            &flags,
            &log.for_program(name),
            &base,
        ),
    }
}

/// A group member's action in a worker of its own (see `control::start::launch`), with the
/// config the group's worker got.
fn member_worker(
    json: &str,
    log: &Log,
    action: Action,
    member: &str,
    sub: &Request<'_>,
) -> Outcome {
    let mut cmd = Command::new("/proc/self/exe");
    std::os::unix::process::CommandExt::arg0(&mut cmd, "usrsvcd");
    cmd.arg("--worker")
        .arg(action.word())
        .arg("--log-format")
        .arg(log.format.word())
        .arg(format!("--trigger={}", sub.trigger));
    if let Some(r) = sub.reason {
        // One argument: a reason may start with '-'.
        cmd.arg(format!("--reason={r}"));
    }
    if let Some((user, uid)) = &sub.caller {
        cmd.arg(format!("--caller={user}:{uid}"));
    }
    if sub.by == Actor::Operator {
        cmd.arg("--as-operator");
    }
    if sub.step {
        cmd.arg("--step");
    }
    if log.debug {
        cmd.arg("--debug");
    }
    cmd.arg("--").arg(member).stdin(Stdio::piped());
    let code = cmd
        .spawn()
        .and_then(|mut child| {
            if let Some(mut stdin) = child.stdin.take() {
                std::io::Write::write_all(&mut stdin, json.as_bytes())?;
            }
            child.wait()
        })
        .map_or(ReturnCode::UnknownFailure, |st| {
            st.code()
                .and_then(ReturnCode::from_code)
                .unwrap_or(ReturnCode::UnknownFailure)
        });
    Outcome::no_process(code)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_api_action_words_parse_and_others_do_not() {
        let ok = [
            ("start", Job::Program(Action::Start)),
            ("stop", Job::Program(Action::Stop)),
            ("restart", Job::Program(Action::Restart)),
            ("start-group", Job::Group(Action::Start)),
            ("stop-group", Job::Group(Action::Stop)),
            ("restart-group", Job::Group(Action::Restart)),
            ("signal:3", Job::Signal("3".into())),
            ("health", Job::Health),
            ("repair", Job::Repair(None)),
            ("repair:http", Job::Repair(Some("http".into()))),
        ];
        for (word, job) in ok {
            assert_eq!(Job::parse(word), Some(job), "{word}");
        }
        for bad in [
            "",
            "signal:",
            "repair:",
            "kill",
            "status-group",
            "START",
            "run:ls",
        ] {
            assert_eq!(Job::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn callers_are_user_colon_uid() {
        assert_eq!(parse_caller("alice:1001"), Some(("alice".into(), 1001)));
        assert_eq!(parse_caller("a:b:7"), Some(("a:b".into(), 7)));
        for bad in ["alice", ":1", "alice:", "alice:-1", "alice:x"] {
            assert_eq!(parse_caller(bad), None, "{bad}");
        }
    }
}
