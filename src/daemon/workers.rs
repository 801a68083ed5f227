//! Worker processes: `usrsvcd --worker ACTION -- NAME` runs a start or restart with the
//! daemon's in-memory config, exactly as `usrsvc` would, so the loop never waits out a
//! `success_seconds` window or a program lock. Also what the daemon learns as a subreaper:
//! reaping workers and exited programs, and the hand-over of a program to a copy it started.
//!
//! Must not: wait for a worker (they are reaped on SIGCHLD) or write the audit trail in the
//! loop's thread (a syslog server may take seconds).

use std::io::Write;
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};

use super::policy::Verdict;
use super::program::Phase;
use super::supervise::{Daemon, GROUP_WORKER};
use crate::config::Config;
use crate::control::{identify, Action, ProgramLock, Report, Trigger};
use crate::health;
use crate::proc::{self, ProcInfo};

impl Daemon {
    /// Runs `usrsvcd --worker ACTION -- NAME` with the in-memory config on its stdin: the
    /// start or restart of `usrsvc`, under the program's lock, in a process of its own (a
    /// start makes its process a subreaper and waits out `success_seconds`; the loop must not).
    pub(super) fn spawn_worker(
        &mut self,
        name: &str,
        action: Action,
        why: &str,
        trigger: Trigger,
        expect: Option<&ProcInfo>,
    ) {
        let log = self.opts.log.clone();
        // Right after a process the daemon had started died, a copy of the program it handed
        // over to (a fresh copy started before it exited, as servers do for an upgrade) can
        // only be among the daemon's own descendants: as their subreaper, it inherited every
        // process that process started. Look there — a few processes — and adopt such a copy.
        let own_exit = self
            .progs
            .get_mut(name)
            .and_then(|p| p.own_exit.take())
            .is_some_and(|t| t.elapsed() < Duration::from_secs(1));
        let fresh = |t: Option<Instant>| t.is_some_and(|t| t.elapsed() < Duration::from_secs(1));
        let nothing_left = fresh(self.progs.get_mut(name).and_then(|p| p.nothing_left.take()));
        let mut skip_scan = nothing_left && action == Action::Start;
        if own_exit && !skip_scan && action == Action::Start {
            // Adopting writes the pidfile, which takes the program's lock, as any adoption.
            if let Ok(Some(lock)) = ProgramLock::try_acquire(name) {
                let found = self.handed_over_to(name);
                skip_scan = found == Descendants::None;
                if let Descendants::Copy(info) = found {
                    let old = self.progs.get(name).and_then(|p| p.last_pid).unwrap_or(0);
                    self.adopt_hand_over(name, old, info, lock);
                    return;
                }
            }
        }
        let Some(p) = self.progs.get(name) else {
            return;
        };
        // The worker gets the daemon's config of this one program (not the file, which may
        // have changed or be broken; not the other programs, which it does not need). It looks
        // for a running copy (pidfile, then a scan of every process) before it launches —
        // except right after the daemon's own descendant died and the daemon has no other
        // descendant than its programs and workers: then the pidfile suffices, and the scan
        // (most of a restart's time as a user with many processes) is skipped.
        let mut prog = p.cfg.clone();
        if skip_scan {
            prog.scan_for_process = false;
        }
        let one = Config {
            main_file: self.config.main_file.clone(),
            files: Vec::new(),
            main: self.config.main.clone(),
            programs: vec![prog],
            groups: Vec::new(),
            warnings: Vec::new(),
            daemon_errors: Vec::new(),
        };
        let json = match serde_json::to_vec(&one) {
            Ok(j) => j,
            Err(e) => {
                log.for_program(name).error(&format!(
                    "({name}) - cannot hand the config to a worker: {e}"
                ));
                return;
            }
        };
        let mut cmd = Command::new("/proc/self/exe");
        cmd.arg0("usrsvcd")
            .arg("--worker")
            .arg(action.word())
            .arg("--log-format")
            .arg(log.format.word())
            .arg(format!("--trigger={trigger}"))
            .arg(format!("--reason={why}"));
        if let Some(info) = expect {
            cmd.arg(format!("--expect={}:{}", info.pid, info.start_ticks));
        }
        // A crash restart: the process that died, for the worker's audit record.
        if let Some(old) = p.last_pid.filter(|_| trigger == Trigger::Crash) {
            cmd.arg(format!("--replaces={old}"));
        }
        if log.debug {
            cmd.arg("--debug");
        }
        cmd.arg("--").arg(name).stdin(Stdio::piped());
        let mut child = match cmd.spawn() {
            Ok(c) => c,
            Err(e) => {
                log.for_program(name)
                    .error(&format!("({name}) - cannot run a worker: {e}"));
                if let Some(p) = self.progs.get_mut(name) {
                    p.failures += 1;
                    p.phase = Phase::Waiting {
                        until: Instant::now() + p.policy().delay(p.failures),
                        verdict: Verdict::Restart,
                    };
                }
                return;
            }
        };
        if let Some(mut stdin) = child.stdin.take() {
            // A worker that cannot read its config fails and is counted; never block here
            // beyond the pipe buffer, which the worker drains at once.
            let _ = stdin.write_all(&json);
        }
        log.for_program(name).debug(&format!(
            "({name}) - worker {} runs {} ({why})",
            child.id(),
            action.word()
        ));
        self.workers.insert(child.id(), name.to_string());
        self.shared.emit(super::state::Event::Restart {
            at: super::snapshot::rfc3339(chrono::Local::now()),
            program: name.to_string(),
            trigger: trigger.to_string(),
            why: why.to_string(),
        });
        self.trimmed = false;
        if let Some(p) = self.progs.get_mut(name) {
            p.phase = Phase::Working {
                pid: child.id(),
                action,
            };
            p.recheck_at = None;
            p.trigger = trigger;
        }
        // Its checks would fail while it restarts: they start again with the new process.
        if let Some(h) = self.health.as_mut() {
            h.unwatch(name);
        }
        self.groups_dirty = true;
        // The Child handle is dropped without waiting: `reap` collects it on SIGCHLD.
        drop(child);
    }

    /// `name`'s process `old` exited, and `info` is a copy of the program that it started (a
    /// hand-over, as nginx's binary upgrade does): adopted, logged and audited as such.
    pub(super) fn adopt_hand_over(
        &mut self,
        name: &str,
        old: i32,
        info: ProcInfo,
        lock: ProgramLock,
    ) {
        let log = self.opts.log.for_program(name);
        log.info(&format!(
            "Matched {name} from running process (pid {}, started by the copy that exited): {name} handed over from pid {old} to pid {}; adopting it, no restart.",
            info.pid, info.pid
        ));
        if let Some(p) = self.progs.get(name).filter(|p| p.cfg.autopid) {
            if let Err(e) = identify::write_pidfile(&p.cfg, &info) {
                log.error(&format!(
                    "({name}) - Cannot write pidfile {}: {e}",
                    p.cfg.pidfile.display()
                ));
            }
        }
        drop(lock);
        let record = crate::audit::Record::new(
            name,
            "adopt",
            Trigger::Crash,
            Some(format!(
                "hand-over: pid {old} exited and left a copy of the program it started (pid {})",
                info.pid
            )),
            "handover",
            Some(old),
            Some(info.pid),
        );
        self.audit_off_loop(name, record);
        self.watch(name, info);
    }

    /// Appends an audit record in a thread of its own: a syslog target that does not answer
    /// may take seconds, and the loop must go on noticing crashes meanwhile.
    pub(super) fn audit_off_loop(&self, program: &str, record: crate::audit::Record) {
        let trail = crate::control::audit::audit_log(&self.config);
        let log = self.opts.log.for_program(program);
        let program = program.to_string();
        let spawned = std::thread::Builder::new()
            .name("usrsvcd-audit".into())
            .spawn(move || match trail {
                Some(trail) => {
                    for problem in trail.append(&record) {
                        log.error(&format!("({program}) - Warning: audit: {problem}"));
                    }
                }
                None => log.error(&format!(
                    "({program}) - Warning: no state directory, the {} is not in the audit log.",
                    record.action
                )),
            });
        if let Err(e) = spawned {
            self.opts
                .log
                .error(&format!("Cannot write an audit record: {e}"));
        }
    }

    /// Collects every exited child: workers, and programs we are the subreaper of.
    pub(super) fn reap(&mut self) {
        // Only children of this (the main) thread: workers, and orphans re-parented to us
        // (the kernel gives them to the first live thread, this one). A sendmail is a child
        // of the mail thread, which reaps it for its exit status; taking it here lost that.
        let flags = WaitPidFlag::WNOHANG | WaitPidFlag::__WNOTHREAD;
        loop {
            let status = match waitpid(None, Some(flags)) {
                Ok(WaitStatus::StillAlive) | Err(_) => return,
                Ok(s) => s,
            };
            let Some(pid) = status.pid() else { continue };
            let raw = pid.as_raw();
            if let Some(name) = self.workers.remove(&(raw as u32)) {
                if let Some(group) = name.strip_prefix(GROUP_WORKER) {
                    self.group_worker_done(group, status);
                } else {
                    self.worker_done(&name, raw as u32, status);
                }
            } else if self.is_watched(raw) {
                self.exits.insert(raw, status);
            }
        }
    }

    /// Looks for a copy of `name` among the daemon's descendants, outside the trees of the
    /// programs it watches and of its workers.
    pub(super) fn handed_over_to(&self, name: &str) -> Descendants {
        let Some(matcher) = self.progs.get(name).and_then(|p| p.matcher.as_ref()) else {
            return Descendants::Unexplained;
        };
        let mut skip: Vec<i32> = self.workers.keys().map(|&w| w as i32).collect();
        skip.extend(self.progs.values().filter_map(|p| match &p.phase {
            Phase::Running(r) => Some(r.info.pid),
            _ => None,
        }));
        // A health check (`myprog --check`) is no copy of the program.
        skip.extend(self.health.iter().flat_map(health::Watcher::check_pids));
        let me = proc::my_uid();
        let mut todo = children_of(std::process::id() as i32);
        let mut verdict = Descendants::None;
        let mut seen = 0;
        while let Some(pid) = todo.pop() {
            seen += 1;
            if seen > 10_000 {
                return Descendants::Unexplained;
            }
            if skip.contains(&pid) {
                continue;
            }
            let Some(info) = proc::read_proc(pid) else {
                continue;
            };
            if !info.is_alive() {
                continue;
            }
            if info.belongs_to(me)
                && matcher.matches(pid, &info.cmdline)
                && !identify::never_the_program(&info)
            {
                return Descendants::Copy(info);
            }
            // Something else: perhaps the copy between fork and exec (`setsid`, a shell);
            // only a scan a moment later can tell.
            verdict = Descendants::Unexplained;
            todo.extend(children_of(pid));
        }
        verdict
    }
}

/// What the daemon's descendants say about a program whose process just exited.
#[derive(Debug, PartialEq)]
pub(super) enum Descendants {
    /// A copy of the program, to adopt.
    Copy(ProcInfo),
    /// Only watched programs and workers: no copy exists that the exited process started.
    None,
    /// Something else lives there (maybe a copy still being exec'd): scan to be sure.
    Unexplained,
}

/// The children of every thread of `pid` (`/proc/PID/task/*/children`).
pub(super) fn children_of(pid: i32) -> Vec<i32> {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for t in tasks.flatten() {
        if let Ok(text) = std::fs::read_to_string(t.path().join("children")) {
            out.extend(
                text.split_whitespace()
                    .filter_map(|w| w.parse::<i32>().ok()),
            );
        }
    }
    out
}
