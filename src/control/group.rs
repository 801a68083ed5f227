//! Groups (`[Group:NAME]`): the members acted on in order — start in order, stop in reverse,
//! restart by the group's `sequence` or rolling (one member at a time, the next once the
//! previous is up and healthy) — and the `min_ok` guard of planned restarts.
//!
//! A group restart holds the group's lock from its first step to its last, so a running
//! usrsvcd leaves a member that a `stop` step took down alone until the sequence starts it
//! again; if the sequence fails or dies half-way, the lock goes with it and the daemon
//! restarts what is down (a `stop` step never marks a member stopped by the operator). Each member's action runs through `member` (the callers run it in a process of
//! its own, see `start::launch`), so this module never starts or signals anything itself.

use std::time::{Duration, Instant};

use super::lock::{LockError, ProgramLock};
use super::{Action, Outcome, Report, Request, Trigger};
use crate::config::{Config, GroupConfig, Step};
use crate::exit::ReturnCode;
use crate::health::{self, Status};

/// Runs one member's action: the caller decides how (a process of its own).
pub type Member<'m> = dyn Fn(Action, &str, &Request<'_>) -> Outcome + 'm;

/// The lock name of a group: not a valid program lock name, so never a program's.
fn lock_name(group: &str) -> String {
    format!("group:{group}")
}

/// Whether a group restart of `group` is under way (its lock is held).
pub fn is_busy(group: &str) -> bool {
    matches!(ProgramLock::try_acquire(&lock_name(group)), Ok(None))
}

/// Whether `program` belongs to a group whose restart is under way.
pub fn member_busy(config: &Config, program: &str) -> bool {
    config.groups_of(program).any(|g| is_busy(&g.name))
}

/// `usrsvc ACTION GROUP` (and the daemon's planned group restarts).
pub fn run_group(
    config: &Config,
    action: Action,
    group: &GroupConfig,
    report: &dyn Report,
    req: &Request<'_>,
    member: &Member<'_>,
) -> ReturnCode {
    let trigger = match &req.trigger {
        // A member acted on for a group says so; a planned group restart too.
        Trigger::Cli | Trigger::Schedule => Trigger::Group(group.name.clone()),
        other => other.clone(),
    };
    let reason = match (&req.trigger, req.reason) {
        (_, Some(r)) => Some(r.to_string()),
        (Trigger::Schedule, None) => Some("planned restart of the group".to_string()),
        _ => None,
    };
    let sub = Request {
        by: req.by,
        trigger,
        reason: reason.as_deref(),
        // `usrsvc stop GROUP` marks its members stopped, as `usrsvc stop NAME` does; the stop
        // steps of a restart do not (see `Request::step`).
        step: action == Action::Restart,
        expect: None,
        replaces: None,
        caller: req.caller.clone(),
    };
    match action {
        Action::Status => worst(
            group
                .programs
                .iter()
                .map(|m| member(Action::Status, m, &sub).code),
        ),
        Action::Start => {
            for m in &group.programs {
                let code = member(Action::Start, m, &sub).code;
                if !code.is_success() {
                    report.error(&format!(
                        "({}) - {m} did not start; the members after it are left as they are.",
                        group.name
                    ));
                    return code;
                }
            }
            ReturnCode::Success
        }
        Action::Stop => worst(
            group
                .programs
                .iter()
                .rev()
                .map(|m| member(Action::Stop, m, &sub).code)
                .collect::<Vec<_>>(),
        ),
        Action::Restart => {
            let _lock = match ProgramLock::acquire(
                &lock_name(&group.name),
                group_wait(config, group),
            ) {
                Ok(l) => l,
                Err(LockError::Timeout) => {
                    report.error(&format!(
                        "Cannot acquire lock for group {}: another restart of it is under way. Try the command again.",
                        group.name
                    ));
                    return ReturnCode::TryAgain;
                }
                Err(e) => {
                    report.error(&format!("({}) - {e}", group.name));
                    return ReturnCode::InsufficientPermissions;
                }
            };
            match &group.sequence {
                Some(steps) => run_sequence(group, steps, report, &sub, member),
                None => rolling(config, group, report, &sub, member),
            }
        }
    }
}

/// The first failure, else success.
fn worst(codes: impl IntoIterator<Item = ReturnCode>) -> ReturnCode {
    codes.into_iter().fold(
        ReturnCode::Success,
        |acc, c| if acc.is_success() { c } else { acc },
    )
}

/// How long a second restart of the same group waits for the first one.
fn group_wait(config: &Config, group: &GroupConfig) -> Duration {
    let per_member: f64 = group
        .programs
        .iter()
        .filter_map(|m| config.program(m))
        .map(|p| p.term_to_kill_seconds + p.success_seconds + 5.0)
        .sum();
    Duration::from_secs(31) + super::seconds(per_member)
}

fn run_sequence(
    group: &GroupConfig,
    steps: &[Step],
    report: &dyn Report,
    sub: &Request<'_>,
    member: &Member<'_>,
) -> ReturnCode {
    for (i, step) in steps.iter().enumerate() {
        report.info(&format!(
            "({}) - step {}/{}: {step}",
            group.name,
            i + 1,
            steps.len()
        ));
        let code = match step {
            Step::Start(m) => member(Action::Start, m, sub).code,
            Step::Stop(m) => member(Action::Stop, m, sub).code,
            Step::Restart(m) => member(Action::Restart, m, sub).code,
            Step::Wait(secs) => {
                std::thread::sleep(super::seconds(*secs));
                ReturnCode::Success
            }
        };
        if !code.is_success() {
            report.error(&format!(
                "({}) - step {}/{} ({step}) failed: {}; the rest of the sequence is not run.",
                group.name,
                i + 1,
                steps.len(),
                ReturnCode::describe_code(i32::from(code.code()))
            ));
            return code;
        }
    }
    ReturnCode::Success
}

/// One member at a time; the next only once the previous is up and its health checks pass.
fn rolling(
    config: &Config,
    group: &GroupConfig,
    report: &dyn Report,
    sub: &Request<'_>,
    member: &Member<'_>,
) -> ReturnCode {
    for m in &group.programs {
        let outcome = member(Action::Restart, m, sub);
        if !outcome.code.is_success() {
            report.error(&format!(
                "({}) - {m} did not come back up; the members after it are not restarted.",
                group.name
            ));
            return outcome.code;
        }
        if let Err(why) = wait_healthy(config, m, report) {
            report.error(&format!(
                "({}) - {m} is up but not healthy ({why}); the members after it are not restarted.",
                group.name
            ));
            return ReturnCode::GeneralFailure;
        }
    }
    ReturnCode::Success
}

/// Runs `program`'s health checks until each passes (healthy or degraded), for at most its
/// `start_period` + `failures` × `interval` — the time the daemon would give it.
pub fn wait_healthy(config: &Config, program: &str, report: &dyn Report) -> Result<(), String> {
    let Some(prog) = config.program(program) else {
        return Ok(());
    };
    for check in &prog.health_checks {
        let budget = check.start_period + check.interval * check.failures.max(1);
        let deadline = Instant::now() + budget;
        loop {
            let Some(target) = health_target(config, program) else {
                return Err("it is not running".into());
            };
            let outcome = health::run_check(&target, check);
            match outcome.status {
                Status::Healthy | Status::Degraded => break,
                Status::Failing if Instant::now() >= deadline => {
                    return Err(format!("check {}: {}", check.name, outcome.describe()));
                }
                Status::Failing => {
                    report.debug(&format!(
                        "({program}) - check {} not passing yet: {}",
                        check.name,
                        outcome.describe()
                    ));
                    std::thread::sleep(Duration::from_secs(1).min(check.interval));
                }
            }
        }
    }
    Ok(())
}

/// The running process of `program` as a health check's target.
pub fn health_target(config: &Config, program: &str) -> Option<health::Target> {
    let prog = config.program(program)?;
    let matcher =
        crate::proc::Matcher::new(&prog.command, prog.useshell, prog.proctitle_re.as_deref())
            .ok()?;
    let p = super::identify::running_by_pidfile(prog, &matcher).or_else(|| {
        super::find_running(prog, &matcher, super::Mode::Observe, &super::report::Silent)
    })?;
    Some(health::Target {
        program: program.to_string(),
        pid: p.pid,
        started: p.start_time(),
        env: prog.env.clone(),
        inherit_env: prog.inherit_env,
    })
}

/// The members a restart of `group` replaces: all of them when rolling, else those a `stop`
/// or `restart` step of its `sequence` names. The group's age (its planned restarts) is
/// theirs alone: a member the sequence leaves running keeps its age.
pub fn renewed(group: &GroupConfig) -> Vec<&str> {
    let Some(steps) = &group.sequence else {
        return group.programs.iter().map(String::as_str).collect();
    };
    group
        .programs
        .iter()
        .map(String::as_str)
        .filter(|m| {
            steps
                .iter()
                .any(|s| matches!(s, Step::Stop(x) | Step::Restart(x) if x == m))
        })
        .collect()
}

/// Why a planned restart of `group` must wait for `min_ok`, if it must: `ok` says whether a
/// member is up and healthy now.
pub fn min_ok_blocks(group: &GroupConfig, ok: &dyn Fn(&str) -> bool) -> Option<String> {
    if group.min_ok == 0 {
        return None;
    }
    let up = group.programs.iter().filter(|m| ok(m)).count();
    let left = up.saturating_sub(group.most_down());
    (u64::try_from(left).unwrap_or(u64::MAX) < group.min_ok).then(|| {
        format!(
            "min_ok = {}: {up} of {} members are up and healthy, the restart would leave {left}",
            group.min_ok,
            group.programs.len()
        )
    })
}

/// Why a planned restart of the single program `program` must wait for the `min_ok` of a
/// group it belongs to, if it must.
pub fn program_min_ok_blocks(
    config: &Config,
    program: &str,
    ok: &dyn Fn(&str) -> bool,
) -> Option<String> {
    config.groups_of(program).find_map(|g| {
        if g.min_ok == 0 {
            return None;
        }
        let up = g.programs.iter().filter(|m| ok(m)).count();
        let left = up.saturating_sub(usize::from(ok(program)));
        (u64::try_from(left).unwrap_or(u64::MAX) < g.min_ok).then(|| {
            format!(
                "min_ok = {} of group {}: {up} of {} members are up and healthy, restarting {program} would leave {left}",
                g.min_ok,
                g.name,
                g.programs.len()
            )
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schedule::Schedule;

    fn group(sequence: Option<Vec<Step>>, min_ok: u64) -> GroupConfig {
        GroupConfig {
            name: "g".into(),
            defined_at: crate::config::Location {
                file: "/c".into(),
                line: 1,
            },
            programs: vec!["a".into(), "b".into(), "c".into()],
            sequence,
            min_ok,
            schedule: Schedule::default(),
            allow: Vec::new(),
        }
    }

    #[test]
    fn most_down_follows_the_sequence() {
        assert_eq!(group(None, 0).most_down(), 1);
        let seq = vec![
            Step::Stop("a".into()),
            Step::Wait(1.0),
            Step::Restart("b".into()),
            Step::Start("a".into()),
            Step::Restart("c".into()),
        ];
        assert_eq!(group(Some(seq), 0).most_down(), 2);
        let seq = vec![
            Step::Stop("a".into()),
            Step::Stop("b".into()),
            Step::Stop("a".into()),
        ];
        assert_eq!(group(Some(seq), 0).most_down(), 2);
    }

    #[test]
    fn renewed_members_are_those_a_step_stops_or_restarts() {
        assert_eq!(renewed(&group(None, 0)), ["a", "b", "c"]);
        let seq = vec![Step::Restart("b".into()), Step::Start("c".into())];
        assert_eq!(renewed(&group(Some(seq), 0)), ["b"]);
        let seq = vec![
            Step::Stop("c".into()),
            Step::Wait(1.0),
            Step::Start("c".into()),
        ];
        assert_eq!(renewed(&group(Some(seq), 0)), ["c"]);
    }

    #[test]
    fn min_ok_counts_members_up_and_healthy() {
        let all = |_: &str| true;
        let not_c = |m: &str| m != "c";
        assert_eq!(min_ok_blocks(&group(None, 2), &all), None);
        assert!(min_ok_blocks(&group(None, 2), &not_c).is_some());
        assert_eq!(min_ok_blocks(&group(None, 0), &|_| false), None);
    }
}
