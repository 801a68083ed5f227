//! The next planned restart of a program or a group as both `usrsvcd` and `usrsvc plan` see
//! it: the schedule (`restart_every`, `restart_at`, `restart_jitter`, `restart_windows`)
//! applied to the process's real start time, in local time. Pure arithmetic over
//! `schedule::next`; deciding whether the restart may happen now (kill switch, `min_ok`) is
//! the caller's.

use std::time::{Duration, SystemTime};

use chrono::{DateTime, Local};

use crate::config::{GroupConfig, ProgramConfig};
use crate::schedule::{self, Schedule};

/// A planned restart.
#[derive(Debug, Clone, PartialEq)]
pub struct Planned {
    /// When it became or becomes due, before jitter and windows.
    pub due: DateTime<Local>,
    /// When it is to happen (after jitter, inside a window).
    pub fire: DateTime<Local>,
    /// The windows put it later than it came due.
    pub waits_for_window: bool,
    /// Which key planned it, for logs and the audit trail's reason.
    pub why: String,
}

/// The next planned restart of `prog`'s process that started at `started`.
pub fn program_plan(
    prog: &ProgramConfig,
    started: SystemTime,
    now: DateTime<Local>,
    host: &str,
) -> Option<Planned> {
    plan(&prog.schedule, started, now, &[host, "program", &prog.name])
}

/// The next planned restart of a group whose oldest running member started at `oldest`.
pub fn group_plan(
    group: &GroupConfig,
    oldest: SystemTime,
    now: DateTime<Local>,
    host: &str,
) -> Option<Planned> {
    plan(&group.schedule, oldest, now, &[host, "group", &group.name])
}

fn plan(s: &Schedule, started: SystemTime, now: DateTime<Local>, seed: &[&str]) -> Option<Planned> {
    if s.is_empty() {
        return None;
    }
    let started: DateTime<Local> = started.into();
    let next = schedule::next(s, started, now, schedule::seed(seed))?;
    let by_every = s
        .every
        .and_then(|e| chrono::TimeDelta::from_std(e).ok())
        .and_then(|e| started.checked_add_signed(e))
        .is_some_and(|t| t == next.due);
    let why = match (&s.every, &s.at) {
        (Some(e), _) if by_every => format!("restart_every = {}", human(*e)),
        (_, Some(at)) => format!("restart_at = {at}"),
        (Some(e), None) => format!("restart_every = {}", human(*e)),
        (None, None) => return None,
    };
    Some(Planned {
        due: next.due,
        fire: next.fire,
        waits_for_window: next.waits_for_window,
        why,
    })
}

/// `3d`, `12h`, `15m`, `90s`: the largest unit that divides the duration evenly.
pub fn human(d: Duration) -> String {
    let secs = d.as_secs();
    if d.subsec_nanos() != 0 {
        return format!("{}s", d.as_secs_f64());
    }
    for (unit, size) in [("d", 86_400), ("h", 3600), ("m", 60)] {
        if secs >= size && secs % size == 0 {
            return format!("{}{unit}", secs / size);
        }
    }
    format!("{secs}s")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_back_in_their_largest_unit() {
        assert_eq!(human(Duration::from_secs(3 * 86_400)), "3d");
        assert_eq!(human(Duration::from_secs(90)), "90s");
        assert_eq!(human(Duration::from_secs(900)), "15m");
        assert_eq!(human(Duration::from_secs(0)), "0s");
        assert_eq!(human(Duration::from_millis(1500)), "1.5s");
    }
}
