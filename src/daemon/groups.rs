//! Groups and planned restarts: each program's plan (`restart_every`, `restart_at`) and each
//! scheduled group's, what holds one back (kill switch, windows, `min_ok`, a group restart under
//! way), and the group worker (`usrsvcd --worker restart-group`) that runs a group's sequence.
//!
//! Must not: restart more members than `min_ok` allows, or start a plan while the group's lock
//! is held (an operator's group action is at work).

use std::collections::BTreeMap;
use std::io::Write;
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::time::Instant;

use nix::sys::wait::WaitStatus;

use super::lifecycle::timer_for;
use super::planned::{self, Planned};
use super::program::Phase;
use super::supervise::{
    Daemon, GROUP_RESTART, GROUP_RETRY_BASE, GROUP_RETRY_MAX, GROUP_WORKER, PLAN_RETRY,
};
use crate::config::Config;
use crate::control::{group, hold, Action, ProgramLock, Report, Trigger};
use crate::health;

/// A group with a schedule: its next planned restart and its worker.
#[derive(Debug, Default)]
pub(super) struct GroupState {
    pub(super) plan: Option<(Instant, Box<Planned>)>,
    pub(super) held: Option<String>,
    pub(super) worker: Option<u32>,
    pub(super) failures: u32,
    /// Not before this (back-off after a failed group restart).
    pub(super) not_before: Option<Instant>,
}

impl Daemon {
    /// Whether `name` is up and its health checks are not failing: what `min_ok` counts.
    pub(super) fn member_ok(&self, name: &str) -> bool {
        self.progs.get(name).is_some_and(|p| {
            matches!(p.phase, Phase::Running(_))
                && !p.failed
                && p.health
                    .values()
                    .all(|h| h.status != health::Status::Failing)
        })
    }

    /// Why a planned restart must wait now, if it must (the window was judged when the time
    /// was planned, and again here).
    pub(super) fn plan_blocked(
        &self,
        windows: Option<&crate::schedule::Windows>,
    ) -> Option<String> {
        if let Some(switch) = hold::kill_switch(&self.config) {
            return Some(format!("the kill switch {} is on", switch.display()));
        }
        if !crate::schedule::in_window(windows, &chrono::Local::now()) {
            return Some("outside restart_windows".into());
        }
        None
    }

    /// A program's planned restart is due: do it, or say why it waits and look again soon.
    pub(super) fn plan_due(&mut self, name: &str, now: Instant) {
        let Some(p) = self.progs.get(name) else {
            return;
        };
        let Phase::Running(run) = &p.phase else {
            return;
        };
        let Some((_, plan)) = &run.plan else {
            return;
        };
        let wall = chrono::Local::now();
        // Timers sleep at most PLAN_LOOK; the wall clock decides.
        if plan.fire > wall {
            let fresh = planned::program_plan(&p.cfg, run.info.start_time(), wall, &self.host)
                .map(|pl| (timer_for(&pl), Box::new(pl)));
            if let Some(Phase::Running(run)) = self.progs.get_mut(name).map(|p| &mut p.phase) {
                run.plan = fresh;
            }
            return;
        }
        let why = plan.why.clone();
        let windows = p.cfg.schedule.windows.clone();
        let blocked = if !p.cfg.enabled {
            Some("it is disabled (enabled = false)".to_string())
        } else if p.failed {
            Some("usrsvcd gave up on it (maxrestarts)".to_string())
        } else if run.restart_at.is_some() {
            Some("a monitor or health restart is pending".to_string())
        } else if hold::is_stopped(name) {
            // The worker would leave it running, and the overdue plan would fire at once.
            Some(format!(
                "it was stopped by the operator (usrsvc stop {name})"
            ))
        } else if matches!(ProgramLock::try_acquire(name), Ok(None)) {
            // A `usrsvc restart` under way: its fresh process must not be restarted again.
            Some("a usrsvc command works on it".to_string())
        } else if group::member_busy(&self.config, name) {
            Some("a restart of its group is under way".to_string())
        } else {
            self.plan_blocked(windows.as_ref()).or_else(|| {
                group::program_min_ok_blocks(&self.config, name, &|m| self.member_ok(m))
            })
        };
        let log = self.opts.log.for_program(name);
        let Some(p) = self.progs.get_mut(name) else {
            return;
        };
        if let Some(b) = blocked {
            if p.held.as_deref() != Some(b.as_str()) {
                log.info(&format!("{name}: planned restart ({why}) held back: {b}."));
                p.held = Some(b);
                self.health_gen += 1;
            }
            if let Phase::Running(run) = &mut p.phase {
                if let Some((t, _)) = &mut run.plan {
                    *t = now + PLAN_RETRY;
                }
            }
            return;
        }
        p.held = None;
        log.info(&format!("{name}: planned restart ({why})."));
        let expect = match &p.phase {
            Phase::Running(r) => Some(r.info.clone()),
            _ => None,
        };
        self.spawn_worker(
            name,
            Action::Restart,
            &format!("planned restart: {why}"),
            Trigger::Schedule,
            expect.as_ref(),
        );
    }

    /// The groups' planned restarts: computed again when a member started or stopped, done
    /// when due.
    pub(super) fn group_timers(&mut self, now: Instant) {
        if self.groups_dirty {
            self.groups_dirty = false;
            let wall = chrono::Local::now();
            let mut keep = BTreeMap::new();
            for g in &self.config.groups {
                if g.schedule.is_empty() {
                    continue;
                }
                let mut state = self.groups.remove(&g.name).unwrap_or_default();
                if state.worker.is_none() {
                    // The group's uptime is its oldest running member's, among those its
                    // restart renews: any other keeps its age, and would make it due at once.
                    let renewed = group::renewed(g);
                    let oldest = g
                        .programs
                        .iter()
                        .filter(|m| renewed.contains(&m.as_str()) && !hold::is_stopped(m))
                        .filter_map(|m| match &self.progs.get(m)?.phase {
                            Phase::Running(r) => Some(r.info.start_time()),
                            _ => None,
                        })
                        .min();
                    let old_at = state.plan.as_ref().map(|(t, _)| *t);
                    state.plan = oldest
                        .and_then(|o| planned::group_plan(g, o, wall, &self.host))
                        .map(|pl| {
                            let t = timer_for(&pl);
                            // A held restart keeps its retry time.
                            (
                                old_at
                                    .filter(|o| *o > t && state.held.is_some())
                                    .unwrap_or(t),
                                Box::new(pl),
                            )
                        });
                }
                keep.insert(g.name.clone(), state);
            }
            self.groups = keep;
        }
        let due: Vec<String> = self
            .groups
            .iter()
            .filter(|(_, s)| s.worker.is_none() && s.plan.as_ref().is_some_and(|(t, _)| *t <= now))
            .map(|(n, _)| n.clone())
            .collect();
        for name in due {
            self.group_due(&name, now);
        }
    }

    pub(super) fn group_due(&mut self, name: &str, now: Instant) {
        let Some(g) = self.config.group(name).cloned() else {
            return;
        };
        let Some(state) = self.groups.get(name) else {
            return;
        };
        let Some((_, plan)) = &state.plan else {
            return;
        };
        if plan.fire > chrono::Local::now() {
            self.groups_dirty = true;
            return;
        }
        let why = plan.why.clone();
        let blocked = if state.not_before.is_some_and(|t| t > now) {
            Some(format!(
                "back-off after {} failed group restart(s)",
                state.failures
            ))
        } else if let Some(m) = g.programs.iter().find(|m| {
            self.progs
                .get(m.as_str())
                .is_some_and(|p| p.failed || matches!(p.phase, Phase::Working { .. }))
        }) {
            Some(format!("member {m} is failed or being restarted"))
        } else if group::is_busy(name) {
            Some("another restart of the group is under way".into())
        } else {
            self.plan_blocked(g.schedule.windows.as_ref())
                .or_else(|| group::min_ok_blocks(&g, &|m| self.member_ok(m)))
        };
        let log = self.opts.log.clone();
        let Some(state) = self.groups.get_mut(name) else {
            return;
        };
        if let Some(b) = blocked {
            if state.held.as_deref() != Some(b.as_str()) {
                log.info(&format!(
                    "group {name}: planned restart ({why}) held back: {b}."
                ));
                state.held = Some(b);
            }
            if let Some((t, _)) = &mut state.plan {
                *t = now + PLAN_RETRY;
            }
            return;
        }
        state.held = None;
        log.info(&format!("group {name}: planned restart ({why})."));
        self.spawn_group_worker(&g, &format!("planned restart: {why}"));
    }

    /// `usrsvcd --worker restart-group -- GROUP`: the group's restart (its sequence, or
    /// rolling) with the in-memory config, in a process of its own.
    pub(super) fn spawn_group_worker(&mut self, g: &crate::config::GroupConfig, why: &str) {
        let log = self.opts.log.clone();
        let one = Config {
            main_file: self.config.main_file.clone(),
            files: Vec::new(),
            main: self.config.main.clone(),
            programs: self
                .config
                .programs
                .iter()
                .filter(|p| g.programs.contains(&p.name))
                .cloned()
                .collect(),
            groups: vec![g.clone()],
            warnings: Vec::new(),
            daemon_errors: Vec::new(),
        };
        let json = match serde_json::to_vec(&one) {
            Ok(j) => j,
            Err(e) => {
                log.error(&format!(
                    "group {}: cannot hand the config to a worker: {e}",
                    g.name
                ));
                return;
            }
        };
        let mut cmd = Command::new("/proc/self/exe");
        cmd.arg0("usrsvcd")
            .arg("--worker")
            .arg(GROUP_RESTART)
            .arg("--log-format")
            .arg(log.format.word())
            .arg(format!("--trigger={}", Trigger::Schedule))
            .arg(format!("--reason={why}"));
        if log.debug {
            cmd.arg("--debug");
        }
        cmd.arg("--").arg(&g.name).stdin(Stdio::piped());
        let mut child = match cmd.spawn() {
            Ok(c) => c,
            Err(e) => {
                log.error(&format!("group {}: cannot run a worker: {e}", g.name));
                return;
            }
        };
        if let Some(mut stdin) = child.stdin.take() {
            let _ = stdin.write_all(&json);
        }
        self.workers
            .insert(child.id(), format!("{GROUP_WORKER}{}", g.name));
        self.trimmed = false;
        if let Some(state) = self.groups.get_mut(&g.name) {
            state.worker = Some(child.id());
            state.plan = None;
        }
        drop(child);
    }

    pub(super) fn group_worker_done(&mut self, name: &str, status: WaitStatus) {
        let code = match status {
            WaitStatus::Exited(_, c) => c,
            _ => -1,
        };
        let log = self.opts.log.clone();
        if let Some(state) = self.groups.get_mut(name) {
            state.worker = None;
            if code == 0 {
                state.failures = 0;
                state.not_before = None;
                log.info(&format!("group {name}: planned restart done."));
            } else {
                state.failures = state.failures.saturating_add(1);
                let wait = GROUP_RETRY_BASE
                    .saturating_mul(1 << state.failures.min(4).saturating_sub(1))
                    .min(GROUP_RETRY_MAX);
                state.not_before = Some(Instant::now() + wait);
                log.error(&format!(
                    "group {name}: planned restart failed ({}); next try in {} s at the earliest.",
                    crate::exit::ReturnCode::describe_code(code),
                    wait.as_secs()
                ));
            }
        }
        self.groups_dirty = true;
        // Its members were restarted under their locks: look at them again.
        let members: Vec<String> = self
            .config
            .group(name)
            .map(|g| g.programs.clone())
            .unwrap_or_default();
        for m in members {
            if !matches!(
                self.progs.get(&m).map(|p| &p.phase),
                Some(Phase::Running(_) | Phase::Working { .. })
            ) {
                self.observe(&m);
            }
        }
    }
}
