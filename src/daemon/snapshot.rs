//! What the loop publishes after a wake-up that changed something: the daemon's
//! `state::Snapshot` (for the API, `usrsvcd status` and `usrsvc status`), written also to the
//! state file, and a `phase` event for every program whose state or process changed.
//!
//! Must not: do more than bounded work per program, or anything when nothing changed (a
//! hash of what readers see is compared first).

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::time::{Instant, SystemTime};

use super::policy::LeaveReason;
use super::program::{Phase, Prog};
use super::state::{Event, GroupState, HealthVerdict, ProgramState, Snapshot};
use super::supervise::{Daemon, STATE_FILE};
use crate::control::{hold, Action};
use crate::health;
use crate::proc;

/// RFC 3339, local time, seconds: the form of every time in the state.
pub(super) fn rfc3339(t: chrono::DateTime<chrono::Local>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Secs, false)
}

impl Daemon {
    /// Publishes what the daemon knows of each program (the shared snapshot, the state file
    /// `usrsvcd.state` in the runtime directory) when it changed, and the phase events.
    pub(super) fn publish_state(&mut self) {
        // Most wake-ups change nothing a reader sees: compare a cheap signature first.
        let signature = self.signature();
        if signature == self.published_signature {
            return;
        }
        self.published_signature = signature;
        let snap = self.snapshot();
        for p in &snap.programs {
            let now = (p.state.clone(), p.pid);
            let before = self.last_states.insert(p.name.clone(), now.clone());
            if before.as_ref() != Some(&now) {
                self.shared.emit(Event::Phase {
                    at: snap.at.clone(),
                    program: p.name.clone(),
                    from: before.map_or_else(|| "new".to_string(), |(s, _)| s),
                    to: p.state.clone(),
                    pid: p.pid,
                    detail: p.detail.clone(),
                });
            }
        }
        self.last_states
            .retain(|name, _| snap.programs.iter().any(|p| &p.name == name));
        if let Ok(doc) = serde_json::to_string(&snap) {
            if let Ok(dir) = crate::control::runtime_dir() {
                let _ = proc::write_atomic(&dir.join(STATE_FILE), doc.as_bytes());
            }
        }
        self.shared.publish(snap);
    }

    /// A hash of everything a reader of the state sees.
    fn signature(&self) -> u64 {
        let mut h = DefaultHasher::new();
        for (name, p) in &self.progs {
            name.hash(&mut h);
            match &p.phase {
                Phase::Unknown => 0u8.hash(&mut h),
                Phase::Running(r) => {
                    1u8.hash(&mut h);
                    r.info.pid.hash(&mut h);
                    r.restart_at.as_ref().map(|r| r.at).hash(&mut h);
                    r.plan.as_ref().map(|(_, pl)| pl.fire).hash(&mut h);
                }
                Phase::Down(reason) => (3 + *reason as u8).hash(&mut h),
                Phase::Waiting { until, .. } => (8u8, until).hash(&mut h),
                Phase::Working { pid, .. } => (9u8, pid).hash(&mut h),
            }
            (p.failures, p.restarts, p.failed, &p.held, p.last_pid).hash(&mut h);
        }
        for (name, g) in &self.groups {
            (name, &g.held, g.worker).hash(&mut h);
            g.plan.as_ref().map(|(_, pl)| pl.fire).hash(&mut h);
        }
        (self.health_gen, self.reread_seq, self.reread_busy.is_some()).hash(&mut h);
        h.finish()
    }

    /// The state as readers see it now.
    pub(super) fn snapshot(&self) -> Snapshot {
        let now = Instant::now();
        let wall = chrono::Local::now();
        let at = |t: Instant| {
            let ahead =
                chrono::Duration::from_std(t.saturating_duration_since(now)).unwrap_or_default();
            rfc3339(wall + ahead)
        };
        let programs = self
            .progs
            .values()
            .map(|p| self.program_state(p, &at))
            .collect();
        let groups = self
            .config
            .groups
            .iter()
            .map(|g| {
                let st = self.groups.get(&g.name);
                GroupState {
                    name: g.name.clone(),
                    programs: g.programs.clone(),
                    min_ok: g.min_ok,
                    next_planned_restart: st
                        .and_then(|s| s.plan.as_ref())
                        .map(|(_, pl)| rfc3339(pl.fire)),
                    planned_restart_held: st.and_then(|s| s.held.clone()),
                    restarting: st.is_some_and(|s| s.worker.is_some()),
                }
            })
            .collect();
        Snapshot {
            pid: std::process::id(),
            config_file: self.opts.config_path.display().to_string(),
            kill_switch_file: self
                .config
                .main
                .kill_switch_file
                .as_ref()
                .map(|f| f.display().to_string()),
            kill_switch_on: hold::kill_switch(&self.config).is_some(),
            reread_in_progress: self.reread_busy.is_some(),
            at: rfc3339(wall),
            programs,
            groups,
        }
    }

    fn program_state(&self, p: &Prog, at: &dyn Fn(Instant) -> String) -> ProgramState {
        let (state, pid, detail) = match &p.phase {
            Phase::Unknown => ("unknown", None, String::new()),
            Phase::Running(r) => (
                "running",
                Some(r.info.pid),
                if p.failed {
                    format!(
                        "not monitored: gave up after {} consecutive failures",
                        p.failures
                    )
                } else {
                    r.restart_at
                        .as_ref()
                        .map(|r| format!("{} restart at {}", r.trigger, at(r.at)))
                        .unwrap_or_default()
                },
            ),
            Phase::Down(LeaveReason::Failed) => (
                "failed",
                None,
                format!("gave up after {} consecutive failures", p.failures),
            ),
            Phase::Down(LeaveReason::OperatorStopped) => {
                ("stopped", None, "stopped by the operator".to_string())
            }
            Phase::Down(LeaveReason::Disabled) => ("down", None, "disabled".to_string()),
            Phase::Down(LeaveReason::NotAutomatic) => (
                "down",
                None,
                "not started automatically (autostart/autorestart)".to_string(),
            ),
            Phase::Waiting { until, .. } => (
                "waiting",
                None,
                format!("restart at {} (back-off)", at(*until)),
            ),
            Phase::Working { action, .. } => (
                if *action == Action::Start {
                    "starting"
                } else {
                    "restarting"
                },
                None,
                String::new(),
            ),
        };
        let (started_at, uptime_seconds) = match &p.phase {
            Phase::Running(r) => {
                let start = r.info.start_time();
                let up = SystemTime::now()
                    .duration_since(start)
                    .unwrap_or_default()
                    .as_secs();
                (
                    Some(rfc3339(chrono::DateTime::<chrono::Local>::from(start))),
                    Some(up),
                )
            }
            _ => (None, None),
        };
        let health = p
            .health
            .iter()
            .map(|(check, h)| HealthVerdict {
                check: check.clone(),
                status: match h.status {
                    health::Status::Healthy => "healthy",
                    health::Status::Degraded => "degraded",
                    health::Status::Failing => "failing",
                }
                .to_string(),
                detail: h.detail.clone(),
                at: rfc3339(h.at),
            })
            .collect();
        let next_planned_restart = match &p.phase {
            Phase::Running(r) => r.plan.as_ref().map(|(_, pl)| rfc3339(pl.fire)),
            _ => None,
        };
        // When the next automatic (re)start or pending restart is due (back-off).
        let backoff_until = match &p.phase {
            Phase::Waiting { until, .. } => Some(at(*until)),
            Phase::Running(r) => r.restart_at.as_ref().map(|r| at(r.at)),
            _ => None,
        };
        ProgramState {
            name: p.cfg.name.clone(),
            groups: self
                .config
                .groups_of(&p.cfg.name)
                .map(|g| g.name.clone())
                .collect(),
            enabled: p.cfg.enabled,
            state: state.to_string(),
            pid,
            started_at,
            uptime_seconds,
            detail,
            failures: p.failures,
            restarts: p.restarts,
            backoff_until,
            last_exit: p.last_exit.clone(),
            next_planned_restart,
            planned_restart_held: p.held.clone(),
            health,
        }
    }
}
