//! What the loop publishes after a wake-up that changed something: the daemon's
//! `state::Snapshot` (for the API, `usrsvcd status` and `usrsvc status`), written also to the
//! state file, and the events of what changed.
//!
//! Must not: do more than bounded work per program, or anything when nothing changed.

use std::time::Instant;

use super::policy::LeaveReason;
use super::program::Phase;
use super::supervise::{Daemon, STATE_FILE};
use crate::control::Action;
use crate::proc::{self};

impl Daemon {
    /// Writes what the daemon knows of each program to `usrsvcd.state` in the runtime
    /// directory, for `usrsvcd status`, when it changed.
    pub(super) fn publish_state(&mut self) {
        // Most wake-ups change nothing a reader sees: compare a cheap signature first.
        let mut signature: Vec<(u8, i32, u32, u64, bool)> = self
            .progs
            .values()
            .map(|p| {
                let (kind, pid) = match &p.phase {
                    Phase::Unknown => (0, 0),
                    Phase::Running(r) => (if r.restart_at.is_some() { 2 } else { 1 }, r.info.pid),
                    Phase::Down(reason) => (3 + *reason as u8, 0),
                    Phase::Waiting { .. } => (8, 0),
                    Phase::Working { pid, .. } => (9, *pid as i32),
                };
                (kind, pid, p.failures, p.restarts, p.failed)
            })
            .collect();
        signature.push((255, 0, 0, self.health_gen, false));
        // A reread changes the kill switch and config a reader sees.
        signature.push((254, 0, 0, self.reread_seq, self.reread_busy.is_some()));
        if signature == self.published_signature {
            return;
        }
        self.published_signature = signature;
        let now = Instant::now();
        let wall = chrono::Local::now();
        let at = |t: Instant| {
            let ahead =
                chrono::Duration::from_std(t.saturating_duration_since(now)).unwrap_or_default();
            (wall + ahead).to_rfc3339_opts(chrono::SecondsFormat::Secs, false)
        };
        let programs: Vec<serde_json::Value> = self
            .progs
            .values()
            .map(|p| {
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
                let health: Vec<serde_json::Value> = p
                    .health
                    .iter()
                    .map(|(check, h)| {
                        serde_json::json!({
                            "check": check,
                            "status": h.status,
                            "detail": h.detail,
                            "at": h.at.to_rfc3339_opts(chrono::SecondsFormat::Secs, false),
                        })
                    })
                    .collect();
                let plan = match &p.phase {
                    Phase::Running(r) => r
                        .plan
                        .as_ref()
                        .map(|(_, pl)| pl.fire.to_rfc3339_opts(chrono::SecondsFormat::Secs, false)),
                    _ => None,
                };
                // When the next automatic (re)start or pending restart is due (back-off).
                let backoff_until = match &p.phase {
                    Phase::Waiting { until, .. } => Some(at(*until)),
                    Phase::Running(r) => r.restart_at.as_ref().map(|r| at(r.at)),
                    _ => None,
                };
                serde_json::json!({
                    "name": p.cfg.name,
                    "state": state,
                    "pid": pid,
                    "detail": detail,
                    "failures": p.failures,
                    "restarts": p.restarts,
                    "backoff_until": backoff_until,
                    "health": health,
                    "next_planned_restart": plan,
                    "planned_restart_held": p.held,
                })
            })
            .collect();
        let doc = serde_json::json!({
            "pid": std::process::id(),
            "config_file": self.opts.config_path.display().to_string(),
            "kill_switch_file": self.config.main.kill_switch_file.as_ref().map(|f| f.display().to_string()),
            "reread_in_progress": self.reread_busy.is_some(),
            "programs": programs,
        })
        .to_string();
        if doc == self.published {
            return;
        }
        if let Ok(dir) = crate::control::runtime_dir() {
            let _ = proc::write_atomic(&dir.join(STATE_FILE), doc.as_bytes());
        }
        self.published = doc;
    }
}
