//! One program's state in the daemon: its phase (unknown, running and watched, down, waiting
//! out a back-off, a worker at work) and what the loop keeps with it (failures, restarts, the
//! pending restart, health verdicts).

use std::collections::BTreeMap;
use std::time::Instant;

use super::log::Log;
use super::planned::Planned;
use super::policy::{LeaveReason, Policy, Verdict};
use crate::alert::AlertKind;
use crate::config::ProgramConfig;
use crate::control::signal::Pidfd;
use crate::control::{Action, Report, Trigger};
use crate::health;
use crate::proc::{Matcher, ProcInfo};

/// Where a program stands.
#[derive(Debug)]
pub(super) enum Phase {
    /// To be looked at (first sight, after a reread, a nudge, a busy lock).
    Unknown,
    /// Running and watched.
    Running(Run),
    /// Not running; `policy` said to leave it (the reason is kept for status and logs).
    Down(LeaveReason),
    /// Not running; an automatic (re)start is due at `until`.
    Waiting { until: Instant, verdict: Verdict },
    /// A worker is starting or restarting it.
    Working { pid: u32, action: Action },
}

#[derive(Debug)]
pub(super) struct Run {
    pub(super) info: ProcInfo,
    pub(super) pidfd: Option<Pidfd>,
    /// The process's real start time on the monotonic clock.
    pub(super) started: Instant,
    /// A monitor or health check asked for a restart; it happens at this time (the
    /// back-off), for this reason and trigger.
    pub(super) restart_at: Option<Box<Pending>>,
    /// The next planned restart (`restart_every`, `restart_at`), and when to look at it.
    pub(super) plan: Option<(Instant, Box<Planned>)>,
    pub(super) monitor_at: Option<Instant>,
    /// Its monitors are running in the monitor thread.
    pub(super) monitor_pending: bool,
}

pub(super) struct Prog {
    pub(super) cfg: ProgramConfig,
    pub(super) matcher: Option<Matcher>,
    pub(super) phase: Phase,
    /// Timer for `Unknown` (busy) and `Down` (pidfile recheck).
    pub(super) recheck_at: Option<Instant>,
    pub(super) failures: u32,
    pub(super) was_up: bool,
    pub(super) autostart_tried: bool,
    pub(super) failed: bool,
    /// Why the next automatic start happens, for its log line and mail.
    pub(super) cause: String,
    /// Restarts by the daemon since it started managing the program.
    pub(super) restarts: u64,
    /// When a watched process that was the daemon's descendant exited (cleared by the next
    /// start).
    pub(super) own_exit: Option<Instant>,
    /// The trigger of the worker at work (for the audit trail and the policy).
    pub(super) trigger: Trigger,
    /// The last verdict of each health check, by check name.
    pub(super) health: BTreeMap<String, HealthSeen>,
    /// Why the due planned restart waits (logged once per cause).
    pub(super) held: Option<String>,
    /// A monitor or health restart was refused by the kill switch (logged once per episode).
    pub(super) switch_logged: bool,
    /// The pid of its last watched process, once that exited: what a crash restart replaces.
    pub(super) last_pid: Option<i32>,
}

/// A monitor or health restart waiting out its back-off. Its failure is counted and its mail
/// sent only when it is done: the kill switch may refuse it meanwhile.
#[derive(Debug)]
pub(super) struct Pending {
    pub(super) at: Instant,
    pub(super) why: String,
    pub(super) trigger: Trigger,
    /// The consecutive failures once this restart is done (the back-off was computed from it).
    pub(super) failures: u32,
    pub(super) mail: AlertKind,
    /// The mail's "was restarted because …".
    pub(super) because: String,
}

/// A health check's last verdict, for `status`.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct HealthSeen {
    pub(super) status: health::Status,
    pub(super) detail: String,
    pub(super) at: chrono::DateTime<chrono::Local>,
}

impl Prog {
    pub(super) fn new(cfg: ProgramConfig, log: &Log) -> Prog {
        let matcher = Matcher::new(&cfg.command, cfg.useshell, cfg.proctitle_re.as_deref())
            .map_err(|e| e.to_string());
        Prog::with_matcher(cfg, matcher, log)
    }

    pub(super) fn with_matcher(
        cfg: ProgramConfig,
        matcher: Result<Matcher, String>,
        log: &Log,
    ) -> Prog {
        let matcher = matcher
            .map_err(|e| log.error(&format!("({}) - Cannot build a matcher: {e}", cfg.name)))
            .ok();
        Prog {
            cfg,
            matcher,
            phase: Phase::Unknown,
            recheck_at: None,
            failures: 0,
            was_up: false,
            autostart_tried: false,
            failed: false,
            cause: String::new(),
            restarts: 0,
            own_exit: None,
            trigger: Trigger::Crash,
            health: BTreeMap::new(),
            held: None,
            switch_logged: false,
            last_pid: None,
        }
    }

    pub(super) fn policy(&self) -> Policy {
        Policy::of(&self.cfg)
    }
}
