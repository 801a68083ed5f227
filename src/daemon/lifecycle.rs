//! A program's life as the loop sees it: looking for its process (`observe`, a pidfile or a
//! scan), watching it (a pidfd), its exit, the decision about a program that is down, and the
//! automatic start. The decisions themselves are `program::step`'s (pure); this file gathers
//! the facts it needs (the lock, the operator's mark, the group's restart) and carries out what
//! it says.
//!
//! Must not: block (locks are only tried), or scan `/proc` on the crash path.

use std::time::{Duration, Instant, SystemTime};

use nix::sys::wait::{WaitPidFlag, WaitStatus};

use super::planned::{self, Planned};
use super::policy::{LeaveReason, Verdict};
use super::program::{step, Event, Facts, Next, Phase, Run, Settings};
use super::state::LastExit;
use super::supervise::{align, Daemon, BUSY_RECHECK, DOWN_RECHECK, PLAN_LOOK};
use super::workers::Descendants;
use crate::alert::AlertKind;
use crate::config::ProgramConfig;
use crate::control::signal::Pidfd;
use crate::control::{
    find_running, group, hold, identify, Action, Mode, ProgramLock, Report, Trigger,
};
use crate::proc::{self, ProcInfo};

impl Daemon {
    /// Looks for the program's process (pidfile, then a scan) and decides.
    pub(super) fn observe(&mut self, name: &str) {
        let log = self.opts.log.clone();
        let Some(p) = self.progs.get_mut(name) else {
            return;
        };
        if matches!(p.phase, Phase::Working { .. }) {
            return;
        }
        let Some(matcher) = &p.matcher else {
            p.phase = Phase::Down(LeaveReason::Disabled);
            return;
        };
        // A `usrsvc` command at work on it: look again shortly, decide nothing now.
        let lock = match ProgramLock::try_acquire(name) {
            Ok(Some(lock)) => Some(lock),
            Ok(None) => {
                p.phase = Phase::Unknown;
                p.recheck_at = Some(Instant::now() + BUSY_RECHECK);
                return;
            }
            Err(e) => {
                log.for_program(name)
                    .debug(&format!("({name}) - no lock, only observing: {e}"));
                None
            }
        };
        let mode = if lock.is_some() {
            Mode::Repair
        } else {
            Mode::Observe
        };
        let found = find_running(&p.cfg, matcher, mode, &log);
        drop(lock);
        match found {
            Some(info) => self.watch(name, info),
            None => self.down(name),
        }
    }

    /// The program's process when its pidfile names it: a cheap look, no scan.
    pub(super) fn by_pidfile(&self, name: &str) -> Option<ProcInfo> {
        let p = self.progs.get(name)?;
        identify::running_by_pidfile(&p.cfg, p.matcher.as_ref()?)
    }

    /// A cheap look for a program that is down: its pidfile only, no scan.
    pub(super) fn recheck_down(&mut self, name: &str) {
        match self.by_pidfile(name) {
            Some(info) => self.watch(name, info),
            None => self.down(name),
        }
    }

    /// The program runs as `info`: watch it.
    pub(super) fn watch(&mut self, name: &str, info: ProcInfo) {
        let log = self.opts.log.clone();
        let poll_mode = self.opts.poll_mode;
        let Some(p) = self.progs.get_mut(name) else {
            return;
        };
        if let Phase::Running(r) = &p.phase {
            if r.info.pid == info.pid && r.info.start_ticks == info.start_ticks {
                return;
            }
        }
        let pidfd = if poll_mode {
            None
        } else {
            match Pidfd::open_verified(&info) {
                Ok(Some(fd)) => Some(fd),
                // Gone between the look and the open: look again.
                Ok(None) => {
                    p.phase = Phase::Unknown;
                    p.recheck_at = Some(Instant::now());
                    return;
                }
                Err(e) => {
                    log.for_program(name)
                        .debug(&format!("({name}) - no pidfd ({e}); polling /proc"));
                    None
                }
            }
        };
        if p.failed {
            log.for_program(name).info(&format!(
                "{name} is running again (pid {}); supervising it again.",
                info.pid
            ));
            p.failed = false;
            p.failures = 0;
            let text = format!("{name} was seen running again (pid {}).", info.pid);
            self.alert(name, AlertKind::RunningAgain, text);
        }
        let Some(p) = self.progs.get_mut(name) else {
            return;
        };
        log.for_program(name)
            .debug(&format!("({name}) - watching pid {}", info.pid));
        let started = monotonic_start(&info);
        let monitor_at = first_check(&p.cfg, started, self.epoch);
        let plan =
            planned::program_plan(&p.cfg, info.start_time(), chrono::Local::now(), &self.host)
                .map(|pl| (timer_for(&pl), Box::new(pl)));
        p.was_up = true;
        p.recheck_at = None;
        p.held = None;
        p.switch_logged = false;
        p.health.clear();
        p.phase = Phase::Running(Run {
            info,
            pidfd,
            started,
            restart_at: None,
            plan,
            monitor_at,
            monitor_pending: false,
        });
        self.health_gen += 1;
        self.groups_dirty = true;
        self.health_watch(name);
    }

    /// The program is not running: decide what to do about it.
    pub(super) fn down(&mut self, name: &str) {
        let facts = self.facts(name, false);
        self.decide(name, Event::NotFound, facts);
    }

    /// What the loop sees around an event of `name` (the lock only when `lock` is asked: a
    /// look at a program that is down has just tried it).
    pub(super) fn facts(&self, name: &str, lock: bool) -> Facts {
        Facts {
            lock_held: lock && matches!(ProgramLock::try_acquire(name), Ok(None)),
            group_busy: group::member_busy(&self.config, name),
            operator_stopped: hold::is_stopped(name),
        }
    }

    /// Runs `program::step` for `event` and carries out what it says.
    pub(super) fn decide(&mut self, name: &str, event: Event, facts: Facts) {
        let Some(p) = self.progs.get_mut(name) else {
            return;
        };
        let mut counters = p.counters();
        let next = step(
            &mut counters,
            Settings::of(&p.cfg),
            &p.policy(),
            event,
            facts,
        );
        p.set_counters(counters);
        let log = self.opts.log.for_program(name);
        match next {
            Next::LookAgain(after) => {
                if facts.group_busy
                    && event == Event::NotFound
                    && !matches!(p.phase, Phase::Unknown)
                {
                    log.info(&format!(
                        "{name} is not running; a restart of its group is under way, so it is left to that."
                    ));
                }
                p.phase = Phase::Unknown;
                p.recheck_at = Some(Instant::now() + after);
            }
            Next::Look => self.observe(name),
            Next::Leave(reason) => {
                if !matches!(p.phase, Phase::Down(r) if r == reason) {
                    match reason {
                        LeaveReason::OperatorStopped => log.info(&format!(
                            "{name} is not running: stopped by the operator; not starting it until \"usrsvc start {name}\"."
                        )),
                        _ => log.debug(&format!("({name}) - not running; left down: {reason:?}")),
                    }
                }
                p.phase = Phase::Down(reason);
                p.recheck_at = Some(Instant::now() + DOWN_RECHECK);
            }
            Next::GiveUp => self.give_up(name),
            Next::Start(verdict) => self.start_due(name, verdict),
            Next::Wait { delay, verdict } => {
                log.info(&format!(
                    "{name} is not running; restarting it in {:.1} s (back-off after {} consecutive failure{}).",
                    delay.as_secs_f64(),
                    p.failures,
                    if p.failures == 1 { "" } else { "s" }
                ));
                p.phase = Phase::Waiting {
                    until: Instant::now() + delay,
                    verdict,
                };
            }
        }
    }

    pub(super) fn give_up(&mut self, name: &str) {
        let Some(p) = self.progs.get_mut(name) else {
            return;
        };
        let max = p.cfg.maxrestarts;
        p.phase = Phase::Down(LeaveReason::Failed);
        p.recheck_at = Some(Instant::now() + DOWN_RECHECK);
        self.opts.log.for_program(name).error(&format!(
            "{name} has reached the maximum number of restarts {max} ({} consecutive failures). Further restarts will not be attempted until the process is seen running again (so manually fix, and run \"usrsvc start {name}\").",
            p.failures
        ));
        let text = format!(
            "{name} failed {} times in a row (maxrestarts = {max}); usrsvcd gave up and leaves it down until \"usrsvc start {name}\". Last: {}",
            p.failures, p.cause
        );
        self.alert(name, AlertKind::GaveUp, text);
    }

    /// An automatic start is due now.
    pub(super) fn start_due(&mut self, name: &str, verdict: Verdict) {
        let Some(p) = self.progs.get_mut(name) else {
            return;
        };
        let attempt = p.failures + 1;
        let (line, kind, why) = if verdict == Verdict::Autostart {
            (
                format!("{name} was not running and autostart=True. Trying to start [Attempt {attempt}]."),
                AlertKind::Starting,
                format!("{name} was found not running, so usrsvcd started it (autostart)."),
            )
        } else {
            p.restarts += 1;
            (
                format!(
                    "{name} has stopped running, and autorestart=True. Trying to start [Attempt {attempt}]."
                ),
                AlertKind::Restarting,
                format!(
                    "{name} was restarted because it {}. Restart {} by this usrsvcd; {} consecutive failure(s){}.",
                    if p.cause.is_empty() { "was found not running" } else { &p.cause },
                    p.restarts,
                    p.failures,
                    if p.cfg.maxrestarts > 0 {
                        format!(", maxrestarts = {}", p.cfg.maxrestarts)
                    } else {
                        String::new()
                    }
                ),
            )
        };
        self.opts.log.for_program(name).info(&line);
        let trigger = if verdict == Verdict::Autostart {
            Trigger::Autostart
        } else {
            Trigger::Crash
        };
        // The restart first: building the alert is off the hot path too, but not free.
        self.spawn_worker(name, Action::Start, &why, trigger, None);
        self.alert(name, kind, why);
    }

    pub(super) fn worker_done(&mut self, name: &str, pid: u32, status: WaitStatus) {
        let log = self.opts.log.clone();
        let Some(p) = self.progs.get_mut(name) else {
            return;
        };
        let Phase::Working { pid: wpid, action } = p.phase else {
            return;
        };
        if wpid != pid {
            return;
        }
        let code = match status {
            WaitStatus::Exited(_, c) => c,
            _ => -1,
        };
        p.phase = Phase::Unknown;
        let planned = matches!(p.trigger, Trigger::Schedule);
        if code != 0 {
            p.cause = format!(
                "failed to start ({})",
                crate::exit::ReturnCode::describe_code(code)
            );
            log.for_program(name).error(&format!(
                "WARNING: The command \"usrsvc {} {name}\" returned non-zero: {}",
                action.word(),
                crate::exit::ReturnCode::describe_code(code)
            ));
        }
        self.decide(name, Event::WorkerDone { code, planned }, Facts::default());
    }

    /// The watched process of `name` exited.
    pub(super) fn exited(&mut self, name: &str) {
        let log = self.opts.log.clone();
        let Some(p) = self.progs.get_mut(name) else {
            return;
        };
        let Phase::Running(run) = std::mem::replace(&mut p.phase, Phase::Unknown) else {
            return;
        };
        p.last_pid = Some(run.info.pid);
        // Its verdicts were about the process that is gone: a stopped program is not "healthy".
        if !p.health.is_empty() {
            p.health.clear();
            self.health_gen += 1;
        }
        self.groups_dirty = true;
        if let Some(h) = self.health.as_mut() {
            h.unwatch(name);
        }
        // Our descendant: its status may be waiting for us.
        let status = self.exits.remove(&run.info.pid).or_else(|| {
            nix::sys::wait::waitpid(
                nix::unistd::Pid::from_raw(run.info.pid),
                Some(WaitPidFlag::WNOHANG),
            )
            .ok()
            .filter(|s| !matches!(s, WaitStatus::StillAlive))
        });
        let Some(p) = self.progs.get_mut(name) else {
            return;
        };
        let uptime = Instant::now().saturating_duration_since(run.started);
        let how = describe_exit(status);
        // Reaped by us: it was our descendant (see `handed_over_to`).
        if status.is_some() {
            p.own_exit = Some(Instant::now());
        }
        // A `usrsvc stop|restart` holds the lock while it works: not a crash. Nor is the
        // exit of a member a group restart has stopped (between its steps the group's lock
        // is held, not the program's).
        let facts = self.facts(name, true);
        let pid = run.info.pid;
        let log = log.for_program(name);
        let (code, signal) = match status {
            Some(WaitStatus::Exited(_, c)) => (Some(c), None),
            Some(WaitStatus::Signaled(_, sig, _)) => (None, Some(sig as i32)),
            _ => (None, None),
        };
        let why = if facts.lock_held {
            "a usrsvc command was at work on it"
        } else if facts.group_busy {
            "a restart of its group was under way"
        } else if facts.operator_stopped {
            "stopped by the operator"
        } else {
            "crashed"
        };
        let last_exit = Some(LastExit {
            pid,
            at: super::snapshot::rfc3339(chrono::Local::now()),
            how: how.clone(),
            code,
            signal,
            why: why.to_string(),
        });
        if let Some(p) = self.progs.get_mut(name) {
            p.last_exit = last_exit;
        }
        if facts.lock_held {
            log.info(&format!(
                "{name} (pid {pid}) exited {how} while a usrsvc command works on it."
            ));
        } else if facts.group_busy {
            log.info(&format!(
                "{name} (pid {pid}) exited {how} while a restart of its group is under way."
            ));
        } else if facts.operator_stopped {
            log.info(&format!(
                "{name} (pid {pid}) exited {how}; it was stopped by the operator and stays down."
            ));
        } else {
            // Our descendant, which may have handed over to a copy it started (a binary
            // upgrade): that is no crash, and nothing is restarted.
            if status.is_some() {
                if let Ok(Some(lock)) = ProgramLock::try_acquire(name) {
                    let found = self.handed_over_to(name);
                    if found == Descendants::None {
                        // The restart's worker need not look again (see `spawn_worker`).
                        if let Some(p) = self.progs.get_mut(name) {
                            p.nothing_left = Some(Instant::now());
                        }
                    }
                    if let Descendants::Copy(info) = found {
                        if let Some(p) = self.progs.get_mut(name) {
                            p.own_exit = None;
                            if let Some(e) = p.last_exit.as_mut() {
                                e.why =
                                    format!("handed over to a copy it started (pid {})", info.pid);
                            }
                        }
                        log.info(&format!(
                            "{name} (pid {pid}) exited {how} after starting a copy of itself."
                        ));
                        self.adopt_hand_over(name, pid, info, lock);
                        return;
                    }
                }
            }
            let Some(p) = self.progs.get_mut(name) else {
                return;
            };
            p.cause = format!(
                "crashed: pid {pid} exited {how} after running {:.1} s",
                uptime.as_secs_f64()
            );
            log.error(&format!("{name} {}.", p.cause));
        }
        // No look for another process here: nobody held the lock, so nobody started one, and
        // the worker looks anyway before it launches (a scan saved on the crash path).
        self.decide(name, Event::Exited { uptime }, facts);
    }

    pub(super) fn is_watched(&self, pid: i32) -> bool {
        self.progs
            .values()
            .any(|p| matches!(&p.phase, Phase::Running(r) if r.info.pid == pid))
    }
}

/// Whether the process `info` describes still exists (a zombie counts as gone).
pub(super) fn still_running(info: &ProcInfo) -> bool {
    proc::read_proc(info.pid)
        .is_some_and(|now| now.start_ticks == info.start_ticks && now.is_alive())
}

/// The process's start time as an `Instant`, from its start ticks (boot-relative).
pub(super) fn monotonic_start(info: &ProcInfo) -> Instant {
    let age = SystemTime::now()
        .duration_since(info.start_time())
        .unwrap_or_default();
    Instant::now().checked_sub(age).unwrap_or_else(Instant::now)
}

pub(super) fn describe_exit(status: Option<WaitStatus>) -> String {
    match status {
        Some(WaitStatus::Exited(_, code)) => format!("with status {code}"),
        Some(WaitStatus::Signaled(_, sig, core)) => format!(
            "killed by signal {} ({sig}){}",
            sig as i32,
            if core { ", core dumped" } else { "" }
        ),
        _ => "(exit status unknown: not started by this usrsvcd)".to_string(),
    }
}

/// When the monitors of a program whose process started at `started` first run: not before
/// `monitor_after` from its real start, on the monitor grid. None without monitors.
pub(super) fn first_check(
    cfg: &ProgramConfig,
    started: Instant,
    epoch: Instant,
) -> Option<Instant> {
    if !cfg.monitoring.is_active() {
        return None;
    }
    let after = crate::control::seconds(cfg.monitoring.monitor_after as f64);
    let interval = crate::control::seconds(cfg.monitoring.check_interval);
    Some(align(
        epoch,
        (started + after).max(Instant::now()),
        interval,
    ))
}

/// The monotonic time to look at a plan: its fire time, but never more than `PLAN_LOOK` ahead.
pub(super) fn timer_for(plan: &Planned) -> Instant {
    let left = (plan.fire - chrono::Local::now())
        .to_std()
        .unwrap_or(Duration::ZERO);
    Instant::now() + left.min(PLAN_LOOK)
}
