//! Monitors and health checks, from the loop's side: sending a running program's monitors to
//! the monitor thread and its health checks to the health thread, and acting on what they
//! report (a restart after the back-off, a repair recorded, an alert). The checks themselves
//! run in those threads (`monitor`, `crate::health`).
//!
//! Must not: run a check or read a file here; every restart it asks for waits out the policy's
//! back-off and respects the kill switch.

use std::time::Instant;

use super::monitor;
use super::policy::Policy;
use super::program::{HealthSeen, Pending, Phase};
use super::supervise::{align, started, Daemon, MONITOR_STALL};
use crate::alert::AlertKind;
use crate::control::{hold, Action, Report, Trigger};
use crate::health;

impl Daemon {
    /// Hands the program's health checks and its running process to the health thread (or
    /// stops its checks when it has none, or is disabled).
    pub(super) fn health_watch(&mut self, name: &str) {
        let Some(p) = self.progs.get(name) else {
            return;
        };
        let Phase::Running(run) = &p.phase else {
            return;
        };
        if p.cfg.health_checks.is_empty() || !p.cfg.enabled {
            if let Some(h) = self.health.as_mut() {
                h.unwatch(name);
            }
            return;
        }
        let checks = p.cfg.health_checks.clone();
        let target = health::Target {
            program: name.to_string(),
            pid: run.info.pid,
            started: run.info.start_time(),
            env: p.cfg.env.clone(),
            inherit_env: p.cfg.inherit_env,
        };
        let watcher = started(
            &mut self.health,
            &self.signals.wake,
            health::Watcher::start,
            &self.opts.log,
            "health-check",
        );
        if let Some(h) = watcher {
            h.watch(target, checks);
        }
    }

    /// Sends the program's monitors to the monitor thread, at most one job at a time.
    pub(super) fn check_monitors(&mut self, name: &str, now: Instant) {
        let Some(p) = self.progs.get_mut(name) else {
            return;
        };
        let Phase::Running(run) = &mut p.phase else {
            return;
        };
        let interval = crate::control::seconds(p.cfg.monitoring.check_interval);
        run.monitor_at = Some(align(self.epoch, now + interval / 2, interval));
        if run.monitor_pending || run.restart_at.is_some() || !p.cfg.enabled || p.failed {
            return;
        }
        let job = monitor::Job {
            name: name.to_string(),
            info: run.info.clone(),
            cfg: p.cfg.monitoring.clone(),
        };
        let Some(checker) = started(
            &mut self.checker,
            &self.signals.wake,
            monitor::Checker::start,
            &self.opts.log,
            "monitor",
        ) else {
            return;
        };
        // A check that hangs (an activity file on a dead network filesystem) stalls only the
        // monitors; say so once, and queue nothing more behind it.
        let stuck = checker.stuck_for(now);
        if stuck > MONITOR_STALL {
            if !self.checker_stall_logged {
                self.checker_stall_logged = true;
                self.opts.log.error(&format!(
                    "Monitor checks have been stuck for {} s (a hung filesystem?); monitors wait, supervision goes on.",
                    stuck.as_secs()
                ));
            }
            return;
        }
        self.checker_stall_logged = false;
        checker.submit(job);
        run.monitor_pending = true;
    }

    /// Acts on the verdicts the monitor thread has sent.
    pub(super) fn monitor_verdicts(&mut self) {
        let Some(checker) = self.checker.as_mut() else {
            return;
        };
        for v in checker.verdicts() {
            let Some(p) = self.progs.get_mut(&v.name) else {
                continue;
            };
            let Phase::Running(run) = &mut p.phase else {
                continue;
            };
            if run.info.pid != v.pid || run.info.start_ticks != v.start_ticks {
                continue;
            }
            run.monitor_pending = false;
            match v.trigger {
                Some(trigger) => self.monitor_fired(&v.name, trigger, Instant::now()),
                // Back within its limits: an episode the kill switch held back is over.
                None => p.switch_logged = false,
            }
        }
    }

    /// A monitor wants the program restarted: the restart policy decides when, or whether.
    pub(super) fn monitor_fired(&mut self, name: &str, trigger: monitor::Trigger, now: Instant) {
        let log = self.opts.log.clone();
        let Some(p) = self.progs.get_mut(name) else {
            return;
        };
        let Phase::Running(run) = &mut p.phase else {
            return;
        };
        if run.restart_at.is_some() || !p.cfg.enabled || p.failed {
            return;
        }
        // While the kill switch holds the restart back, the program stays over its limit and
        // every check says so again: the episode is logged once, at its start (it ends when
        // a check passes, or with a new process once the switch is off).
        if let Some(switch) = hold::kill_switch(&self.config) {
            if p.switch_logged {
                log.for_program(name).debug(&format!(
                    "({name}) - MONITOR ( {} ) still fires; held back by the kill switch (logged once)",
                    trigger.monitor
                ));
            } else {
                p.switch_logged = true;
                log.for_program(name).error(&format!(
                    "MONITOR ( {} ): {}",
                    trigger.monitor, trigger.reason
                ));
                log.for_program(name).error(&format!(
                    "{name}: not restarting it for the monitor: the kill switch {} is on.",
                    switch.display()
                ));
            }
            return;
        }
        log.for_program(name).error(&format!(
            "MONITOR ( {} ): {}",
            trigger.monitor, trigger.reason
        ));
        let audit_trigger = Trigger::Monitor(monitor_key(trigger.monitor).to_string());
        let uptime = now.saturating_duration_since(run.started);
        let policy = Policy::of(&p.cfg);
        let failures = policy.after_run(p.failures, Some(uptime));
        p.cause = format!("triggered the {}: {}", trigger.monitor, trigger.reason);
        if policy.exhausted(failures) {
            // Left running, but no longer restarted for it: the operator decides.
            p.failures = failures;
            run.monitor_at = None;
            self.give_up_running(name);
            return;
        }
        let delay = policy.delay(failures);
        run.restart_at = Some(Box::new(Pending {
            at: now + delay,
            why: p.cause.clone(),
            trigger: audit_trigger,
            failures,
            mail: AlertKind::MonitorRestart,
            because: format!("it {}", p.cause),
        }));
        if !delay.is_zero() {
            log.for_program(name).info(&format!(
                "{name}: monitor restart in {:.1} s (back-off).",
                delay.as_secs_f64()
            ));
        }
    }

    /// A monitor or health restart whose time has come: counted, mailed and done.
    pub(super) fn restart_pending(&mut self, name: &str, pending: Pending) {
        let Some(p) = self.progs.get_mut(name) else {
            return;
        };
        p.restarts += 1;
        p.failures = pending.failures;
        let text = format!(
            "{name} was restarted because {}. Restart {} by this usrsvcd; {} consecutive failure(s).",
            pending.because, p.restarts, pending.failures
        );
        let expect = match &p.phase {
            Phase::Running(r) => Some(r.info.clone()),
            _ => None,
        };
        self.spawn_worker(
            name,
            Action::Restart,
            &pending.why,
            pending.trigger,
            expect.as_ref(),
        );
        self.alert(name, pending.mail, text);
    }

    /// Acts on what the health-check thread reports.
    pub(super) fn health_events(&mut self) {
        let Some(h) = self.health.as_mut() else {
            return;
        };
        let events = h.events();
        for event in events {
            match event {
                health::Event::Verdict {
                    program,
                    pid,
                    check,
                    outcome,
                    consecutive_failures,
                } => {
                    let Some(p) = self.progs.get_mut(&program) else {
                        continue;
                    };
                    if !matches!(&p.phase, Phase::Running(r) if r.info.pid == pid) {
                        continue;
                    }
                    let seen = HealthSeen {
                        status: outcome.status,
                        detail: outcome.describe(),
                        at: chrono::Local::now(),
                    };
                    let log = self.opts.log.for_program(&program);
                    let changed = p.health.get(&check).is_none_or(|h| h.status != seen.status);
                    match seen.status {
                        health::Status::Healthy if changed => log.info(&format!(
                            "{program}: health check {check} is healthy ({}).",
                            seen.detail
                        )),
                        health::Status::Degraded if changed => log.info(&format!(
                            "{program}: health check {check} reports degraded ({}); no action.",
                            seen.detail
                        )),
                        health::Status::Failing => log.error(&format!(
                            "{program}: health check {check} failed ({}), {consecutive_failures} in a row.",
                            seen.detail
                        )),
                        _ => {}
                    }
                    if p.health.get(&check) != Some(&seen) {
                        self.health_gen += 1;
                    }
                    self.shared.emit(super::state::Event::Health {
                        at: super::snapshot::rfc3339(seen.at),
                        program: program.clone(),
                        check: check.clone(),
                        status: serde_json::to_value(seen.status)
                            .ok()
                            .and_then(|v| v.as_str().map(str::to_string))
                            .unwrap_or_default(),
                        detail: seen.detail.clone(),
                    });
                    p.health.insert(check, seen);
                }
                health::Event::Repaired {
                    program,
                    pid,
                    check,
                    repair,
                } => {
                    self.opts.log.for_program(&program).info(&format!(
                        "{program}: repair of health check {check} ran ({}) and the check passes again.",
                        repair.describe()
                    ));
                    let record = crate::audit::Record::new(
                        &program,
                        format!("repair:{check}"),
                        Trigger::Health(check.clone()),
                        Some("health check failed; repair command ran".to_string()),
                        "ok",
                        Some(pid),
                        Some(pid),
                    );
                    self.audit_off_loop(&program, record);
                }
                health::Event::Act {
                    program,
                    pid,
                    check,
                    action,
                    why,
                } => self.health_act(&program, pid, &check, &action, &why),
            }
        }
    }

    /// A health check failed `failures` times in a row (and a repair did not help).
    pub(super) fn health_act(
        &mut self,
        name: &str,
        pid: i32,
        check: &str,
        action: &health::HealthAction,
        why: &str,
    ) {
        let log = self.opts.log.clone();
        let Some(p) = self.progs.get_mut(name) else {
            return;
        };
        let Phase::Running(run) = &mut p.phase else {
            return;
        };
        if run.info.pid != pid {
            return;
        }
        let text = format!("health check {check} failed: {why}");
        match action {
            health::HealthAction::None => {
                log.for_program(name)
                    .error(&format!("{name}: {text} (action = none)."));
            }
            health::HealthAction::Alert => {
                log.for_program(name).error(&format!(
                    "{name}: {text}; sending an alert (action = alert)."
                ));
                self.alert(name, AlertKind::HealthFailing, format!("{name}: {text}."));
            }
            health::HealthAction::Restart => {
                if run.restart_at.is_some() || !p.cfg.enabled || p.failed {
                    return;
                }
                if let Some(switch) = hold::kill_switch(&self.config) {
                    log.for_program(name).error(&format!(
                        "{name}: {text}; not restarting it: the kill switch {} is on.",
                        switch.display()
                    ));
                    return;
                }
                let now = Instant::now();
                let uptime = now.saturating_duration_since(run.started);
                let policy = Policy::of(&p.cfg);
                let failures = policy.after_run(p.failures, Some(uptime));
                p.cause = text.clone();
                if policy.exhausted(failures) {
                    p.failures = failures;
                    self.give_up_running(name);
                    return;
                }
                let delay = policy.delay(failures);
                log.for_program(name).error(&format!(
                    "{name}: {text}; restarting it{}.",
                    if delay.is_zero() {
                        String::new()
                    } else {
                        format!(" in {:.1} s (back-off)", delay.as_secs_f64())
                    }
                ));
                run.restart_at = Some(Box::new(Pending {
                    at: now + delay,
                    why: text.clone(),
                    trigger: Trigger::Health(check.to_string()),
                    failures,
                    mail: AlertKind::HealthRestart,
                    because: format!("its {text}"),
                }));
            }
        }
    }

    pub(super) fn give_up_running(&mut self, name: &str) {
        let Some(p) = self.progs.get_mut(name) else {
            return;
        };
        p.failed = true;
        let max = p.cfg.maxrestarts;
        self.opts.log.for_program(name).error(&format!(
            "{name} has reached the maximum number of restarts {max}; it is left running, no longer monitored, until \"usrsvc restart {name}\"."
        ));
        let text = format!(
            "{name} failed {} times in a row (maxrestarts = {max}); usrsvcd gave up. Last: {}",
            p.failures, p.cause
        );
        self.alert(name, AlertKind::GaveUp, text);
    }
}

/// The audit trigger's name of a monitor: `monitor:rss`, `monitor:activityfile`.
pub(super) fn monitor_key(monitor: &str) -> &'static str {
    if monitor.starts_with("RSS") {
        "rss"
    } else {
        "activityfile"
    }
}
