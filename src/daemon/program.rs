//! One program's state in the daemon: its phase (unknown, running and watched, down, waiting
//! out a back-off, a worker at work) and what the loop keeps with it (failures, restarts, the
//! pending restart, health verdicts).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use super::log::Log;
use super::planned::Planned;
use super::policy::{decide, Down, LeaveReason, Policy, Verdict};
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
    /// When the exit of its process was looked into and the daemon's descendants held no copy
    /// of it (the crash path's look, which the restart's worker then need not repeat).
    pub(super) nothing_left: Option<Instant>,
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
    /// How its last watched process ended, and what the daemon made of it.
    pub(super) last_exit: Option<super::state::LastExit>,
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
            nothing_left: None,
            trigger: Trigger::Crash,
            health: BTreeMap::new(),
            held: None,
            switch_logged: false,
            last_pid: None,
            last_exit: None,
        }
    }

    pub(super) fn policy(&self) -> Policy {
        Policy::of(&self.cfg)
    }

    pub(super) fn counters(&self) -> Counters {
        Counters {
            failures: self.failures,
            failed: self.failed,
            was_up: self.was_up,
            autostart_tried: self.autostart_tried,
        }
    }

    pub(super) fn set_counters(&mut self, c: Counters) {
        self.failures = c.failures;
        self.failed = c.failed;
        self.was_up = c.was_up;
        self.autostart_tried = c.autostart_tried;
    }
}

/// What happened to a program, as the loop saw it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) enum Event {
    /// It was looked for (pidfile, scan) and is not running.
    NotFound,
    /// Its watched process exited after running this long (a hand-over to a copy it started
    /// has been ruled out by the loop).
    Exited { uptime: Duration },
    /// The worker's start or restart ended with this exit code (0: it runs); `planned` when it
    /// was a planned restart.
    WorkerDone { code: i32, planned: bool },
}

/// What the loop observed around an event (the lock and marks are files; the step reads none).
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub(super) struct Facts {
    /// A `usrsvc` command holds the program's lock.
    pub(super) lock_held: bool,
    /// A restart of one of its groups is between its steps.
    pub(super) group_busy: bool,
    /// `usrsvc stop` marked it stopped by the operator.
    pub(super) operator_stopped: bool,
}

/// What a step reads and updates of a program, besides its phase.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub(super) struct Counters {
    pub(super) failures: u32,
    pub(super) failed: bool,
    pub(super) was_up: bool,
    pub(super) autostart_tried: bool,
}

/// The settings a step reads.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) struct Settings {
    pub(super) enabled: bool,
    pub(super) autostart: bool,
    pub(super) autorestart: bool,
}

impl Settings {
    pub(super) fn of(cfg: &ProgramConfig) -> Settings {
        Settings {
            enabled: cfg.enabled,
            autostart: cfg.autostart,
            autorestart: cfg.autorestart,
        }
    }
}

/// What the loop does next about the program.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) enum Next {
    /// Someone else is at work on it (a `usrsvc` command, its group's restart): nothing is
    /// decided; look again after this long.
    LookAgain(Duration),
    /// Look for its process now (a worker is done).
    Look,
    /// Leave it down (looked at again by pidfile now and then).
    Leave(LeaveReason),
    /// `maxrestarts` is reached: down until it is seen running again.
    GiveUp,
    /// Start it now.
    Start(Verdict),
    /// Start it after this back-off.
    Wait { delay: Duration, verdict: Verdict },
}

/// How long a program held by its group's restart waits before it is looked at again.
pub(super) const GROUP_BUSY_RECHECK: Duration = Duration::from_secs(1);
/// How long a program whose lock a `usrsvc` command holds waits before it is looked at again.
pub(super) const LOCK_BUSY_RECHECK: Duration = Duration::from_millis(200);

/// A program's transition: a pure function of its counters, settings, the event and the
/// facts around it. Updates `c` (failures counted, the autostart tried, given up) and says
/// what comes next; the loop carries that out (logs, workers, timers, mail).
pub(super) fn step(
    c: &mut Counters,
    cfg: Settings,
    policy: &Policy,
    event: Event,
    facts: Facts,
) -> Next {
    match event {
        Event::WorkerDone { code, planned } => {
            if code == 0 && planned {
                // A planned restart that came up is a success of the restart policy.
                c.failures = 0;
            } else if code != 0 {
                c.failures = c.failures.saturating_add(1);
            }
            Next::Look
        }
        Event::Exited { uptime } => {
            // A `usrsvc stop|restart` holds the lock while it works: not a crash. Nor is the
            // exit of a member its group's restart has stopped.
            if facts.lock_held {
                return Next::LookAgain(LOCK_BUSY_RECHECK);
            }
            if facts.group_busy {
                return Next::LookAgain(LOCK_BUSY_RECHECK);
            }
            if !facts.operator_stopped {
                c.failures = policy.after_run(c.failures, Some(uptime));
            }
            down(c, cfg, policy, facts)
        }
        Event::NotFound => down(c, cfg, policy, facts),
    }
}

/// The program is not running: what to do about it.
fn down(c: &mut Counters, cfg: Settings, policy: &Policy, facts: Facts) -> Next {
    // A group restart is between its steps (a `stop` step, a `wait`): not ours to act.
    if facts.group_busy {
        return Next::LookAgain(GROUP_BUSY_RECHECK);
    }
    let verdict = decide(Down {
        enabled: cfg.enabled,
        autostart: cfg.autostart,
        autorestart: cfg.autorestart,
        operator_stopped: facts.operator_stopped,
        failed: c.failed,
        was_up: c.was_up,
        autostart_tried: c.autostart_tried,
    });
    match verdict {
        Verdict::Leave(reason) => Next::Leave(reason),
        Verdict::Restart if policy.exhausted(c.failures) => {
            c.failed = true;
            Next::GiveUp
        }
        Verdict::Autostart => {
            c.autostart_tried = true;
            Next::Start(verdict)
        }
        Verdict::Restart => match policy.delay(c.failures) {
            d if d.is_zero() => Next::Start(verdict),
            delay => Next::Wait { delay, verdict },
        },
    }
}

#[cfg(test)]
#[path = "program_tests.rs"]
mod tests;
