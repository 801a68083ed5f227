//! The event loop: one `poll` over a pidfd per running program, the signal self-pipe and the
//! earliest timer. Each wake-up is observe → decide (`policy`) → act (a worker process runs
//! the start or restart through `control`, exactly as `usrsvc` would). The loop never holds a
//! program lock across wake-ups, never blocks on a program, a worker or a mail server, and
//! reads `/proc` only for the programs it acts on: no full scan in the steady state (a scan
//! only to adopt a program with no valid pidfile, at start, after a reread or a nudge).
//!
//! With `USRSVCD_WATCH=poll` (or where `pidfd_open` is refused) exits are found by reading
//! `/proc/PID/stat` of each running program every half second instead.

use std::collections::{BTreeMap, HashMap};
use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant, SystemTime};

use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use rustix::event::{PollFd, PollFlags};

use super::instance::{self, Instance};
use super::log::Log;
use super::monitor;
use super::planned::{self, Planned};
use super::policy::{decide, Down, LeaveReason, Policy, Verdict};
use super::reread;
use crate::alert::{AlertEvent, AlertKind, Alerts, Deliverer};
use crate::config::{Config, ProgramConfig};
use crate::control::signal::Pidfd;
use crate::control::{
    find_running, group, hold, identify, Action, Mode, ProgramLock, Report, Trigger,
};
use crate::exit::ReturnCode;
use crate::health;
use crate::proc::{self, Matcher, ProcInfo};

/// `usrsvcd status` reads the daemon's view of its programs from this file.
pub const STATE_FILE: &str = "usrsvcd.state";

/// How many programs in `Phase::Unknown` one wake-up looks at (each look may be a scan).
const OBSERVE_PER_WAKEUP: usize = 8;
/// How long a reread may be under way before a new one is started without waiting for it.
const REREAD_STUCK: Duration = Duration::from_secs(30);
/// How often a program's process is looked at in the `/proc` polling mode.
const POLL_EVERY: Duration = Duration::from_millis(500);
/// How long a monitor check may hang before the daemon says so and queues no more.
const MONITOR_STALL: Duration = Duration::from_secs(30);
/// How long the loop must have been idle before it gives back start-up pages.
const TRIM_AFTER: Duration = Duration::from_secs(1);
/// How soon a program whose lock is held (a `usrsvc` command at work) is looked at again.
const BUSY_RECHECK: Duration = Duration::from_millis(200);
/// How soon a planned restart that something holds back (kill switch, `min_ok`, a group
/// restart under way) is tried again.
const PLAN_RETRY: Duration = Duration::from_secs(5);
/// The longest a planned-restart timer sleeps before the wall clock is read again (a clock
/// step or a suspend must not make a restart late by more than this).
const PLAN_LOOK: Duration = Duration::from_secs(3600);
/// The first wait after a failed planned group restart; it doubles up to `GROUP_RETRY_MAX`.
const GROUP_RETRY_BASE: Duration = Duration::from_secs(60);
const GROUP_RETRY_MAX: Duration = Duration::from_secs(3600);
/// The worker action of a group restart.
pub const GROUP_RESTART: &str = "restart-group";
/// `workers` entries of group restarts are named so.
const GROUP_WORKER: &str = "\0group:";
/// How often the pidfile of a program that is down is read, to notice a start by other means
/// (`usrsvc start` also nudges the daemon, which then looks at once).
const DOWN_RECHECK: Duration = Duration::from_secs(5);

/// Signals, turned into flags plus a wake-up byte on a socket the loop polls.
struct Signals {
    read: UnixStream,
    /// The write end, for the monitor thread to wake the loop.
    wake: UnixStream,
    term: Arc<AtomicBool>,
    reread: Arc<AtomicBool>,
    nudge: Arc<AtomicBool>,
    child: Arc<AtomicBool>,
}

impl Signals {
    fn install() -> std::io::Result<Signals> {
        use signal_hook::consts::{SIGCHLD, SIGHUP, SIGINT, SIGTERM, SIGUSR1, SIGUSR2};
        let (read, write) = UnixStream::pair()?;
        read.set_nonblocking(true)?;
        write.set_nonblocking(true)?;
        let s = Signals {
            read,
            wake: write.try_clone()?,
            term: Arc::default(),
            reread: Arc::default(),
            nudge: Arc::default(),
            child: Arc::default(),
        };
        for (sig, flag) in [
            (SIGTERM, &s.term),
            (SIGINT, &s.term),
            (SIGHUP, &s.reread),
            (SIGUSR1, &s.reread),
            (SIGUSR2, &s.nudge),
            (SIGCHLD, &s.child),
        ] {
            // The flag is set before the wake-up byte is written, so a woken loop sees it.
            signal_hook::flag::register(sig, Arc::clone(flag))?;
            signal_hook::low_level::pipe::register(sig, write.try_clone()?)?;
        }
        Ok(s)
    }

    fn drain(&self) {
        let mut buf = [0u8; 64];
        while matches!((&self.read).read(&mut buf), Ok(n) if n > 0) {}
    }
}

/// Where a program stands.
#[derive(Debug)]
enum Phase {
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
struct Run {
    info: ProcInfo,
    pidfd: Option<Pidfd>,
    /// The process's real start time on the monotonic clock.
    started: Instant,
    /// A monitor or health check asked for a restart; it happens at this time (the
    /// back-off), for this reason and trigger.
    restart_at: Option<Box<Pending>>,
    /// The next planned restart (`restart_every`, `restart_at`), and when to look at it.
    plan: Option<(Instant, Box<Planned>)>,
    monitor_at: Option<Instant>,
    /// Its monitors are running in the monitor thread.
    monitor_pending: bool,
}

struct Prog {
    cfg: ProgramConfig,
    matcher: Option<Matcher>,
    phase: Phase,
    /// Timer for `Unknown` (busy) and `Down` (pidfile recheck).
    recheck_at: Option<Instant>,
    failures: u32,
    was_up: bool,
    autostart_tried: bool,
    failed: bool,
    /// Why the next automatic start happens, for its log line and mail.
    cause: String,
    /// Restarts by the daemon since it started managing the program.
    restarts: u64,
    /// When a watched process that was the daemon's descendant exited (cleared by the next
    /// start).
    own_exit: Option<Instant>,
    /// The trigger of the worker at work (for the audit trail and the policy).
    trigger: Trigger,
    /// The last verdict of each health check, by check name.
    health: BTreeMap<String, HealthSeen>,
    /// Why the due planned restart waits (logged once per cause).
    held: Option<String>,
    /// A monitor or health restart was refused by the kill switch (logged once per episode).
    switch_logged: bool,
    /// The pid of its last watched process, once that exited: what a crash restart replaces.
    last_pid: Option<i32>,
}

/// A monitor or health restart waiting out its back-off. Its failure is counted and its mail
/// sent only when it is done: the kill switch may refuse it meanwhile.
#[derive(Debug)]
struct Pending {
    at: Instant,
    why: String,
    trigger: Trigger,
    /// The consecutive failures once this restart is done (the back-off was computed from it).
    failures: u32,
    mail: AlertKind,
    /// The mail's "was restarted because …".
    because: String,
}

/// A health check's last verdict, for `status`.
#[derive(Debug, Clone, PartialEq)]
struct HealthSeen {
    status: health::Status,
    detail: String,
    at: chrono::DateTime<chrono::Local>,
}

/// A group with a schedule: its next planned restart and its worker.
#[derive(Debug, Default)]
struct GroupState {
    plan: Option<(Instant, Box<Planned>)>,
    held: Option<String>,
    worker: Option<u32>,
    failures: u32,
    /// Not before this (back-off after a failed group restart).
    not_before: Option<Instant>,
}

impl Prog {
    fn new(cfg: ProgramConfig, log: &Log) -> Prog {
        let matcher = Matcher::new(&cfg.command, cfg.useshell, cfg.proctitle_re.as_deref())
            .map_err(|e| e.to_string());
        Prog::with_matcher(cfg, matcher, log)
    }

    fn with_matcher(cfg: ProgramConfig, matcher: Result<Matcher, String>, log: &Log) -> Prog {
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

    fn policy(&self) -> Policy {
        Policy::of(&self.cfg)
    }
}

/// How the daemon was asked to run.
pub struct Options {
    pub config_path: PathBuf,
    /// The log of a detached daemon without `usrsvcd_stdout` (reopened on reread too).
    pub default_log: Option<PathBuf>,
    pub log: Log,
    pub poll_mode: bool,
}

pub struct Daemon {
    opts: Options,
    config: Config,
    instance: Instance,
    progs: BTreeMap<String, Prog>,
    /// Worker pid → program name.
    workers: HashMap<u32, String>,
    /// Exit statuses of programs that were our descendants (we are their subreaper).
    exits: HashMap<i32, WaitStatus>,
    signals: Signals,
    /// The grid monitor checks are aligned to.
    epoch: Instant,
    /// The monitor thread, started at the first check.
    checker: Option<monitor::Checker>,
    /// The monitor thread's stall was logged.
    checker_stall_logged: bool,
    /// Set up when some program has `email_alerts` (at start or reread, not on the restart
    /// path): it looks up the host's name, which a broken resolver can make take a second.
    alerts: Option<Alerts>,
    mailer: Deliverer,
    reread_seq: u64,
    /// Outcomes of reread threads.
    reread_tx: mpsc::Sender<(u64, reread::Outcome)>,
    reread_rx: mpsc::Receiver<(u64, reread::Outcome)>,
    /// The reread under way (its seq and when it began), and whether another was asked for
    /// meanwhile.
    reread_busy: Option<(u64, Instant)>,
    reread_again: bool,
    /// The state last written for `usrsvcd status`.
    published: String,
    /// What `published` was made from, to skip rebuilding it when nothing changed.
    published_signature: Vec<(u8, i32, u32, u64, bool)>,
    /// Start-up pages were given back (`instance::trim_startup_pages`).
    trimmed: bool,
    /// The health-check thread, started when a running program has checks.
    health: Option<health::Watcher>,
    /// Changes of health verdicts, so `publish_state` notices them.
    health_gen: u64,
    /// Groups that have a schedule.
    groups: BTreeMap<String, GroupState>,
    /// The group plans must be computed again (a member started or stopped).
    groups_dirty: bool,
    /// The host name, part of the jitter's seed.
    host: String,
}

impl Daemon {
    pub fn new(opts: Options, config: Config, instance: Instance) -> std::io::Result<Daemon> {
        let signals = Signals::install()?;
        // Programs the workers start are re-parented to us when the worker exits, so their
        // exit status reaches the log; if the daemon goes, they go to init and notice nothing.
        let _ = nix::sys::prctl::set_child_subreaper(true);
        let sink = opts.log.clone();
        let mailer = Deliverer::start(
            &config.main,
            Arc::new(move |line: &str| sink.error(&format!("MAIL: {line}"))),
        );
        let wants_alerts = config.programs.iter().any(|p| p.email_alerts.is_some());
        let (reread_tx, reread_rx) = mpsc::channel();
        let mut progs = BTreeMap::new();
        for p in &config.programs {
            progs.insert(p.name.clone(), Prog::new(p.clone(), &opts.log));
        }
        Ok(Daemon {
            opts,
            config,
            instance,
            progs,
            workers: HashMap::new(),
            exits: HashMap::new(),
            signals,
            epoch: Instant::now(),
            checker: None,
            checker_stall_logged: false,
            alerts: wants_alerts.then(Alerts::new),
            mailer,
            reread_seq: 0,
            reread_tx,
            reread_rx,
            reread_busy: None,
            reread_again: false,
            published: String::new(),
            published_signature: Vec::new(),
            trimmed: false,
            health: None,
            health_gen: 0,
            groups: BTreeMap::new(),
            groups_dirty: true,
            host: crate::alert::identity::short_host(),
        })
    }

    fn log(&self) -> &Log {
        &self.opts.log
    }

    /// Runs until SIGTERM or SIGINT. Programs are never signalled on the way out. `ready`
    /// is called once every program has been looked at (adopted, or its start under way).
    pub fn run(mut self, ready: impl FnOnce()) {
        let names: Vec<String> = self.progs.keys().cloned().collect();
        for name in &names {
            self.observe(name);
        }
        ready();
        self.reread_status(0, true, ReturnCode::Success, &[]);
        loop {
            if self.signals.term.swap(false, Ordering::SeqCst) {
                self.log()
                    .error("usrsvcd got SIGTERM, shutting down. Programs keep running.");
                break;
            }
            if self.signals.reread.swap(false, Ordering::SeqCst) {
                self.ask_reread();
            }
            self.reread_results();
            if self.signals.child.swap(false, Ordering::SeqCst) {
                self.reap();
            }
            if self.signals.nudge.swap(false, Ordering::SeqCst) {
                self.nudged();
            }
            self.monitor_verdicts();
            self.health_events();
            self.timers(Instant::now());
            self.publish_state();
            let ready = self.wait();
            for name in ready {
                self.exited(&name);
            }
        }
        instance::notify("STOPPING=1");
        // A reread that is ready but not applied must not leave its pidfile behind.
        for (_, outcome) in self.reread_rx.try_iter() {
            if let reread::Outcome::Ready(prep) = outcome {
                if prep.pidfile_moved {
                    Instance::discard_pidfile(&prep.config.main.pidfile);
                }
            }
        }
        if let Ok(dir) = crate::control::runtime_dir() {
            let _ = std::fs::remove_file(dir.join(STATE_FILE));
        }
        let Daemon {
            mailer,
            instance,
            alerts,
            ..
        } = self;
        for mail in alerts.map(|mut a| a.flush()).unwrap_or_default() {
            mailer.send(mail);
        }
        mailer.shutdown(Duration::from_secs(5));
        drop(instance);
    }

    /// Writes what the daemon knows of each program to `usrsvcd.state` in the runtime
    /// directory, for `usrsvcd status`, when it changed.
    fn publish_state(&mut self) {
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

    /// Blocks in `poll` until a signal, a program exit or the next timer; returns the
    /// programs whose process exited.
    fn wait(&mut self) -> Vec<String> {
        let now = Instant::now();
        let mut deadline = self.next_deadline();
        let polling = self
            .progs
            .values()
            .any(|p| matches!(&p.phase, Phase::Running(r) if r.pidfd.is_none()));
        if polling {
            let at = now + POLL_EVERY;
            deadline = Some(deadline.map_or(at, |d| d.min(at)));
        }
        let mut names = Vec::new();
        let mut fds = vec![PollFd::new(&self.signals.read, PollFlags::IN)];
        for (name, p) in &self.progs {
            if let Phase::Running(Run {
                pidfd: Some(fd), ..
            }) = &p.phase
            {
                fds.push(PollFd::from_borrowed_fd(fd.as_fd(), PollFlags::IN));
                names.push(name.clone());
            }
        }
        // When the loop has been idle for a second after start-up or a burst of work (no
        // worker at work), it gives back the pages only that work needed, and goes straight
        // back to waiting: an idle daemon's RSS is then its own memory, not the code of its
        // last restart.
        let mut trim_at = (!self.trimmed && self.workers.is_empty()).then(|| now + TRIM_AFTER);
        loop {
            let until = match (deadline, trim_at) {
                (Some(d), Some(t)) => Some(d.min(t)),
                (d, t) => d.or(t),
            };
            let timeout = until.map(|d| timespec(d.saturating_duration_since(Instant::now())));
            let woken = rustix::event::poll(&mut fds, timeout.as_ref()).unwrap_or(1);
            match trim_at {
                Some(t) if woken == 0 && Instant::now() >= t => {
                    self.trimmed = true;
                    trim_at = None;
                    instance::trim_startup_pages();
                }
                _ => break,
            }
        }
        if !fds[0].revents().is_empty() {
            self.signals.drain();
        }
        let mut exited: Vec<String> = fds[1..]
            .iter()
            .zip(names)
            .filter(|(fd, _)| !fd.revents().is_empty())
            .map(|(_, n)| n)
            .collect();
        drop(fds);
        if polling {
            for (name, p) in &self.progs {
                if let Phase::Running(r) = &p.phase {
                    if r.pidfd.is_none() && !still_running(&r.info) {
                        exited.push(name.clone());
                    }
                }
            }
        }
        exited
    }

    fn next_deadline(&self) -> Option<Instant> {
        let mut best: Option<Instant> = self.alerts.as_ref().and_then(Alerts::next_due);
        let mut consider = |t: Option<Instant>| {
            if let Some(t) = t {
                best = Some(best.map_or(t, |b| b.min(t)));
            }
        };
        for p in self.progs.values() {
            consider(p.recheck_at);
            match &p.phase {
                Phase::Waiting { until, .. } => consider(Some(*until)),
                Phase::Running(r) => {
                    consider(r.monitor_at);
                    consider(r.restart_at.as_ref().map(|r| r.at));
                    consider(r.plan.as_ref().map(|(t, _)| *t));
                }
                _ => {}
            }
        }
        for g in self.groups.values() {
            consider(g.plan.as_ref().map(|(t, _)| *t));
        }
        best
    }

    /// Everything whose time has come.
    fn timers(&mut self, now: Instant) {
        let names: Vec<String> = self.progs.keys().cloned().collect();
        // A look at an unknown program may scan every process: a few per wake-up, so that
        // a reread that adds many programs never keeps the loop from a crash for long (the
        // rest stay due, and the next wake-up follows at once).
        let mut looks = OBSERVE_PER_WAKEUP;
        for name in names {
            let Some(p) = self.progs.get_mut(&name) else {
                continue;
            };
            if p.recheck_at.is_some_and(|t| t <= now) {
                if matches!(p.phase, Phase::Unknown) {
                    if looks == 0 {
                        continue;
                    }
                    looks -= 1;
                }
                p.recheck_at = None;
                match p.phase {
                    Phase::Unknown => self.observe(&name),
                    Phase::Down(_) => self.recheck_down(&name),
                    _ => {}
                }
                continue;
            }
            match &mut p.phase {
                Phase::Waiting { until, verdict } if *until <= now => {
                    let verdict = *verdict;
                    self.start_due(&name, verdict);
                }
                Phase::Running(r) => {
                    if let Some(pending) = r.restart_at.take() {
                        if pending.at <= now {
                            // The switch may have been turned on during the back-off.
                            if let Some(switch) = hold::kill_switch(&self.config) {
                                self.opts.log.for_program(&name).error(&format!(
                                    "{name}: the {} restart is not done: the kill switch {} is on.",
                                    pending.trigger,
                                    switch.display()
                                ));
                                continue;
                            }
                            // A `usrsvc` command at work would be undone by a second restart.
                            if let Ok(None) = ProgramLock::try_acquire(&name) {
                                r.restart_at = Some(Box::new(Pending {
                                    at: now + BUSY_RECHECK,
                                    ..*pending
                                }));
                                continue;
                            }
                            self.restart_pending(&name, *pending);
                            continue;
                        }
                        r.restart_at = Some(pending);
                    }
                    if r.plan.as_ref().is_some_and(|(t, _)| *t <= now) {
                        self.plan_due(&name, now);
                        continue;
                    }
                    if r.monitor_at.is_some_and(|t| t <= now) {
                        self.check_monitors(&name, now);
                    }
                }
                _ => {}
            }
        }
        self.group_timers(now);
        for mail in self.alerts.as_mut().map(|a| a.due(now)).unwrap_or_default() {
            self.mailer.send(mail);
        }
    }

    /// Looks for the program's process (pidfile, then a scan) and decides.
    fn observe(&mut self, name: &str) {
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
    fn by_pidfile(&self, name: &str) -> Option<ProcInfo> {
        let p = self.progs.get(name)?;
        identify::running_by_pidfile(&p.cfg, p.matcher.as_ref()?)
    }

    /// A cheap look for a program that is down: its pidfile only, no scan.
    fn recheck_down(&mut self, name: &str) {
        match self.by_pidfile(name) {
            Some(info) => self.watch(name, info),
            None => self.down(name),
        }
    }

    /// SIGUSR2 from `usrsvc start|stop|restart`: look at once, by pidfile, at the programs
    /// that are not running. A back-off keeps its time (a nudge for one program must not
    /// postpone another's restart), and nothing is scanned.
    fn nudged(&mut self) {
        self.log()
            .debug("nudged: looking at the programs that are not running");
        let names: Vec<String> = self
            .progs
            .iter()
            .filter(|(_, p)| !matches!(p.phase, Phase::Running(_) | Phase::Working { .. }))
            .map(|(n, _)| n.clone())
            .collect();
        for name in names {
            let Some(p) = self.progs.get(&name) else {
                continue;
            };
            match p.phase {
                Phase::Unknown => self.observe(&name),
                Phase::Down(_) => self.recheck_down(&name),
                Phase::Waiting { .. } => {
                    if let Some(info) = self.by_pidfile(&name) {
                        self.watch(&name, info);
                    }
                }
                Phase::Running(_) | Phase::Working { .. } => {}
            }
        }
    }

    /// The program runs as `info`: watch it.
    fn watch(&mut self, name: &str, info: ProcInfo) {
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

    /// Hands the program's health checks and its running process to the health thread (or
    /// stops its checks when it has none, or is disabled).
    fn health_watch(&mut self, name: &str) {
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

    /// The program is not running: decide what to do about it.
    fn down(&mut self, name: &str) {
        // A group restart is between its steps (a `stop` step, a `wait`): not ours to act.
        if group::member_busy(&self.config, name) {
            if let Some(p) = self.progs.get_mut(name) {
                if !matches!(p.phase, Phase::Unknown) {
                    self.opts.log.for_program(name).info(&format!(
                        "{name} is not running; a restart of its group is under way, so it is left to that."
                    ));
                }
                p.phase = Phase::Unknown;
                p.recheck_at = Some(Instant::now() + BUSY_RECHECK * 5);
            }
            return;
        }
        let Some(p) = self.progs.get_mut(name) else {
            return;
        };
        let verdict = decide(Down {
            enabled: p.cfg.enabled,
            autostart: p.cfg.autostart,
            autorestart: p.cfg.autorestart,
            operator_stopped: hold::is_stopped(name),
            failed: p.failed,
            was_up: p.was_up,
            autostart_tried: p.autostart_tried,
        });
        match verdict {
            Verdict::Leave(reason) => {
                if !matches!(p.phase, Phase::Down(r) if r == reason) {
                    let log = &self.opts.log;
                    match reason {
                        LeaveReason::OperatorStopped => log.for_program(name).info(&format!(
                            "{name} is not running: stopped by the operator; not starting it until \"usrsvc start {name}\"."
                        )),
                        _ => log.for_program(name).debug(&format!("({name}) - not running; left down: {reason:?}")),
                    }
                }
                p.phase = Phase::Down(reason);
                p.recheck_at = Some(Instant::now() + DOWN_RECHECK);
            }
            Verdict::Autostart | Verdict::Restart => {
                let policy = p.policy();
                if verdict == Verdict::Restart && policy.exhausted(p.failures) {
                    self.give_up(name);
                    return;
                }
                let delay = if verdict == Verdict::Autostart {
                    Duration::ZERO
                } else {
                    policy.delay(p.failures)
                };
                if delay.is_zero() {
                    self.start_due(name, verdict);
                } else {
                    self.opts.log.for_program(name).info(&format!(
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
    }

    fn give_up(&mut self, name: &str) {
        let Some(p) = self.progs.get_mut(name) else {
            return;
        };
        let max = p.cfg.maxrestarts;
        p.failed = true;
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
    fn start_due(&mut self, name: &str, verdict: Verdict) {
        let Some(p) = self.progs.get_mut(name) else {
            return;
        };
        let attempt = p.failures + 1;
        let (line, kind, why) = if verdict == Verdict::Autostart {
            p.autostart_tried = true;
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

    /// Runs `usrsvcd --worker ACTION -- NAME` with the in-memory config on its stdin: the
    /// start or restart of `usrsvc`, under the program's lock, in a process of its own (a
    /// start makes its process a subreaper and waits out `success_seconds`; the loop must not).
    fn spawn_worker(
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
        let mut skip_scan = false;
        if own_exit && action == Action::Start {
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
    fn adopt_hand_over(&mut self, name: &str, old: i32, info: ProcInfo, lock: ProgramLock) {
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
    fn audit_off_loop(&self, program: &str, record: crate::audit::Record) {
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
    fn reap(&mut self) {
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
    fn handed_over_to(&self, name: &str) -> Descendants {
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

    fn is_watched(&self, pid: i32) -> bool {
        self.progs
            .values()
            .any(|p| matches!(&p.phase, Phase::Running(r) if r.info.pid == pid))
    }

    fn worker_done(&mut self, name: &str, pid: u32, status: WaitStatus) {
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
        if code == 0 && planned {
            // A planned restart that came up is a success of the restart policy.
            p.failures = 0;
        }
        if code != 0 {
            p.failures = p.failures.saturating_add(1);
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
        self.observe(name);
    }

    /// The watched process of `name` exited.
    fn exited(&mut self, name: &str) {
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
        if let Ok(None) = ProgramLock::try_acquire(name) {
            log.for_program(name).info(&format!(
                "{name} (pid {}) exited {how} while a usrsvc command works on it.",
                run.info.pid
            ));
            p.recheck_at = Some(Instant::now() + BUSY_RECHECK);
            return;
        }
        if group::member_busy(&self.config, name) {
            log.for_program(name).info(&format!(
                "{name} (pid {}) exited {how} while a restart of its group is under way.",
                run.info.pid
            ));
            p.recheck_at = Some(Instant::now() + BUSY_RECHECK);
            return;
        }
        if hold::is_stopped(name) {
            log.for_program(name).info(&format!(
                "{name} (pid {}) exited {how}; it was stopped by the operator and stays down.",
                run.info.pid
            ));
            self.down(name);
            return;
        }
        // Our descendant, which may have handed over to a copy it started (a binary upgrade):
        // that is no crash, and nothing is restarted.
        if status.is_some() {
            if let Ok(Some(lock)) = ProgramLock::try_acquire(name) {
                if let Descendants::Copy(info) = self.handed_over_to(name) {
                    if let Some(p) = self.progs.get_mut(name) {
                        p.own_exit = None;
                    }
                    log.for_program(name).info(&format!(
                        "{name} (pid {}) exited {how} after starting a copy of itself.",
                        run.info.pid
                    ));
                    self.adopt_hand_over(name, run.info.pid, info, lock);
                    return;
                }
            }
        }
        let Some(p) = self.progs.get_mut(name) else {
            return;
        };
        p.failures = p.policy().after_run(p.failures, Some(uptime));
        p.cause = format!(
            "crashed: pid {} exited {how} after running {:.1} s",
            run.info.pid,
            uptime.as_secs_f64()
        );
        log.for_program(name).error(&format!("{name} {}.", p.cause));
        // No look for another process here: nobody held the lock, so nobody started one, and
        // the worker looks anyway before it launches (a scan saved on the crash path).
        self.down(name);
    }

    /// Sends the program's monitors to the monitor thread, at most one job at a time.
    fn check_monitors(&mut self, name: &str, now: Instant) {
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
    fn monitor_verdicts(&mut self) {
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
    fn monitor_fired(&mut self, name: &str, trigger: monitor::Trigger, now: Instant) {
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
    fn restart_pending(&mut self, name: &str, pending: Pending) {
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
    fn health_events(&mut self) {
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
    fn health_act(
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

    /// Whether `name` is up and its health checks are not failing: what `min_ok` counts.
    fn member_ok(&self, name: &str) -> bool {
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
    fn plan_blocked(&self, windows: Option<&crate::schedule::Windows>) -> Option<String> {
        if let Some(switch) = hold::kill_switch(&self.config) {
            return Some(format!("the kill switch {} is on", switch.display()));
        }
        if !crate::schedule::in_window(windows, &chrono::Local::now()) {
            return Some("outside restart_windows".into());
        }
        None
    }

    /// A program's planned restart is due: do it, or say why it waits and look again soon.
    fn plan_due(&mut self, name: &str, now: Instant) {
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
    fn group_timers(&mut self, now: Instant) {
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

    fn group_due(&mut self, name: &str, now: Instant) {
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
    fn spawn_group_worker(&mut self, g: &crate::config::GroupConfig, why: &str) {
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

    fn group_worker_done(&mut self, name: &str, status: WaitStatus) {
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

    fn give_up_running(&mut self, name: &str) {
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

    fn alert(&mut self, name: &str, kind: AlertKind, text: String) {
        let Some(p) = self.progs.get(name) else {
            return;
        };
        let Some(to) = p.cfg.email_alerts.clone() else {
            return;
        };
        let interval = crate::control::seconds(p.cfg.email_interval as f64);
        let event = AlertEvent {
            kind,
            at: chrono::Local::now(),
            text,
        };
        let alerts = self.alerts.get_or_insert_with(Alerts::new);
        if let Some(mail) = alerts.push(name, &to, interval, event, Instant::now()) {
            self.mailer.send(mail);
        }
    }

    /// SIGUSR1/SIGHUP: a reread, prepared in a thread of its own (see `reread`); one at a
    /// time, and one more after it when asked for meanwhile.
    fn ask_reread(&mut self) {
        let log = self.opts.log.clone();
        if let Some((seq, since)) = self.reread_busy {
            // A reread hung on a file (a FIFO, a dead network filesystem) must not hold back
            // every later one: it is left behind, and its outcome ignored when it comes.
            if since.elapsed() < REREAD_STUCK {
                self.reread_again = true;
                return;
            }
            log.error(&format!(
                "The reread started {} s ago (#{seq}) is still under way (a file that hangs?); starting another, and that one's outcome will be ignored.",
                since.elapsed().as_secs()
            ));
        }
        instance::notify("RELOADING=1");
        log.info("Got SIGUSR1, reprocessing config.");
        self.reread_seq += 1;
        let seq = self.reread_seq;
        let ask = reread::Ask {
            seq,
            config_path: self.opts.config_path.clone(),
            default_log: self.opts.default_log.clone(),
            managed: self.progs.keys().cloned().collect(),
            pidfile: self.instance.pidfile().to_path_buf(),
        };
        self.reread_status_running(seq);
        let spawned = self
            .signals
            .wake
            .try_clone()
            .and_then(|wake| reread::spawn(ask, self.reread_tx.clone(), wake));
        match spawned {
            Ok(()) => self.reread_busy = Some((seq, Instant::now())),
            Err(e) => {
                self.reject(
                    ReturnCode::UnknownFailure,
                    &format!("cannot start a reread thread: {e}"),
                );
                instance::notify("READY=1");
            }
        }
    }

    /// Applies what a reread thread has prepared, or says why it is not applied.
    fn reread_results(&mut self) {
        while let Ok((seq, outcome)) = self.reread_rx.try_recv() {
            if self.reread_busy.map(|(s, _)| s) != Some(seq) {
                // One left behind as hung: its config is older than the one that followed.
                self.opts.log.error(&format!(
                    "The reread #{seq}, left behind as hung, is over; its outcome is ignored."
                ));
                if let reread::Outcome::Ready(prep) = outcome {
                    if prep.pidfile_moved && prep.config.main.pidfile != self.instance.pidfile() {
                        Instance::discard_pidfile(&prep.config.main.pidfile);
                    }
                }
                continue;
            }
            self.reread_busy = None;
            self.reread_outcome(outcome);
            instance::notify("READY=1");
        }
        if self.reread_busy.is_none() && self.reread_again {
            self.reread_again = false;
            self.ask_reread();
        }
    }

    fn reread_outcome(&mut self, outcome: reread::Outcome) {
        let log = self.opts.log.clone();
        let code = outcome.code();
        match outcome {
            reread::Outcome::Invalid(msgs) => {
                for m in &msgs {
                    log.error(&format!("Error in configuration: {m}"));
                }
                log.error("Keeping the running configuration.");
                self.reread_status(self.reread_seq, false, code, &msgs);
            }
            reread::Outcome::Refused(msg) => {
                log.error(&msg);
                log.error("Keeping the running configuration.");
                self.reread_status(self.reread_seq, false, code, &[msg]);
            }
            reread::Outcome::CannotApply(msg) => self.reject(code, &msg),
            reread::Outcome::Ready(prep) => {
                let reread::Prepared {
                    config: new,
                    logs,
                    matchers,
                    pidfile_moved,
                    forced,
                } = *prep;
                if let Err(e) = logs.install() {
                    if pidfile_moved {
                        Instance::discard_pidfile(&new.main.pidfile);
                    }
                    self.reject(ReturnCode::InvalidConfig, &e.message);
                    return;
                }
                if pidfile_moved {
                    self.instance.pidfile_moved(&new.main.pidfile);
                }
                if let Some(f) = &forced {
                    log.error(f);
                }
                for w in &new.warnings {
                    log.warn(w);
                }
                self.mailer.update(&new.main);
                self.apply(new, matchers);
                log.info("Successfully loaded new config.");
                self.trimmed = false;
                self.reread_status(self.reread_seq, true, ReturnCode::Success, &[]);
            }
        }
    }

    /// A reread that cannot be applied: logged, reported to `usrsvcd reread`, old config kept.
    fn reject(&mut self, code: ReturnCode, msg: &str) {
        self.opts
            .log
            .error(&format!("Cannot apply the new config: {msg}"));
        self.opts.log.error("Keeping the running configuration.");
        self.reread_status(self.reread_seq, false, code, &[msg.to_string()]);
    }

    fn reread_status(&self, seq: u64, ok: bool, code: ReturnCode, errors: &[String]) {
        reread::write_status(&reread::Status {
            pid: std::process::id(),
            seq,
            done: true,
            code: if ok { 0 } else { code.code() },
            errors: errors.to_vec(),
            config: self.opts.config_path.display().to_string(),
        });
    }

    fn reread_status_running(&self, seq: u64) {
        reread::write_status(&reread::Status {
            pid: std::process::id(),
            seq,
            done: false,
            code: 0,
            errors: Vec::new(),
            config: self.opts.config_path.display().to_string(),
        });
    }

    /// Puts a validated config in force: bounded work (comparisons, the matchers the reread
    /// thread built), then a look at the programs that are new or changed while down.
    fn apply(&mut self, new: Config, mut matchers: HashMap<String, Result<Matcher, String>>) {
        let log = self.opts.log.clone();
        let removed: Vec<String> = self
            .progs
            .keys()
            .filter(|n| new.program(n).is_none())
            .cloned()
            .collect();
        for name in removed {
            log.for_program(&name).info(&format!(
                "{name} is no longer in the config: no longer managed, left as it is."
            ));
            self.progs.remove(&name);
            // Its health checks too: nothing would ever stop them otherwise.
            if let Some(h) = self.health.as_mut() {
                h.unwatch(&name);
            }
        }
        let mut fresh = Vec::new();
        for cfg in &new.programs {
            match self.progs.get_mut(&cfg.name) {
                Some(p) if p.cfg != *cfg => {
                    log.for_program(&cfg.name)
                        .info(&format!("{} has new settings.", cfg.name));
                    let matcher = take_matcher(&mut matchers, cfg);
                    p.cfg = cfg.clone();
                    p.matcher = matcher.ok();
                    // New monitor settings apply to the running process from now on.
                    if let Phase::Running(run) = &mut p.phase {
                        run.monitor_at = first_check(&p.cfg, run.started, self.epoch);
                    }
                    if !matches!(p.phase, Phase::Running(_) | Phase::Working { .. }) {
                        fresh.push(cfg.name.clone());
                    }
                }
                Some(_) => {}
                None => {
                    log.for_program(&cfg.name)
                        .info(&format!("{} is new in the config.", cfg.name));
                    let matcher = take_matcher(&mut matchers, cfg);
                    self.progs.insert(
                        cfg.name.clone(),
                        Prog::with_matcher(cfg.clone(), matcher, &log),
                    );
                    fresh.push(cfg.name.clone());
                }
            }
        }
        if self.alerts.is_none() && new.programs.iter().any(|p| p.email_alerts.is_some()) {
            self.alerts = Some(Alerts::new());
        }
        self.config = new;
        self.groups_dirty = true;
        // Schedules and health checks may have changed: plan again, watch again.
        let running: Vec<(String, ProcInfo)> = self
            .progs
            .iter()
            .filter_map(|(n, p)| match &p.phase {
                Phase::Running(r) => Some((n.clone(), r.info.clone())),
                _ => None,
            })
            .collect();
        for (name, info) in running {
            let Some(p) = self.progs.get_mut(&name) else {
                continue;
            };
            let plan =
                planned::program_plan(&p.cfg, info.start_time(), chrono::Local::now(), &self.host)
                    .map(|pl| (timer_for(&pl), Box::new(pl)));
            if let Phase::Running(r) = &mut p.phase {
                r.plan = plan;
            }
            self.health_watch(&name);
        }
        // Looked at by the timers, a few per wake-up (see `timers`).
        let now = Instant::now();
        for name in fresh {
            if let Some(p) = self.progs.get_mut(&name) {
                if !matches!(p.phase, Phase::Running(_) | Phase::Working { .. }) {
                    p.phase = Phase::Unknown;
                    p.recheck_at = Some(now);
                }
            }
        }
    }
}

/// The thread in `slot`, started at first use with its own end of the loop's wake-up socket;
/// `None` (logged) when it cannot be started.
fn started<'s, T>(
    slot: &'s mut Option<T>,
    wake: &UnixStream,
    start: fn(UnixStream) -> std::io::Result<T>,
    log: &Log,
    what: &str,
) -> Option<&'s mut T> {
    if slot.is_none() {
        match wake.try_clone().and_then(start) {
            Ok(t) => *slot = Some(t),
            Err(e) => log.error(&format!("Cannot start the {what} thread: {e}")),
        }
    }
    slot.as_mut()
}

/// The monotonic time to look at a plan: its fire time, but never more than `PLAN_LOOK` ahead.
fn timer_for(plan: &Planned) -> Instant {
    let left = (plan.fire - chrono::Local::now())
        .to_std()
        .unwrap_or(Duration::ZERO);
    Instant::now() + left.min(PLAN_LOOK)
}

/// The audit trigger's name of a monitor: `monitor:rss`, `monitor:activityfile`.
fn monitor_key(monitor: &str) -> &'static str {
    if monitor.starts_with("RSS") {
        "rss"
    } else {
        "activityfile"
    }
}

/// The running daemon's view of its programs (its state file), when a daemon runs and the
/// file is its own: for `usrsvcd status`, `usrsvc status` and `usrsvc plan`.
pub fn read_state() -> Option<serde_json::Value> {
    let daemon = instance::running()?;
    let dir = crate::control::runtime_dir().ok()?;
    let text = std::fs::read_to_string(dir.join(STATE_FILE)).ok()?;
    let doc: serde_json::Value = serde_json::from_str(&text).ok()?;
    (doc["pid"].as_i64() == Some(i64::from(daemon.pid))).then_some(doc)
}

/// One program's entry in the daemon's state.
pub fn program_state<'d>(doc: &'d serde_json::Value, name: &str) -> Option<&'d serde_json::Value> {
    doc["programs"]
        .as_array()?
        .iter()
        .find(|p| p["name"].as_str() == Some(name))
}

/// `    health NAME: STATUS (DETAIL) at TIME` lines of a program's last health verdicts.
pub fn health_lines(program: &serde_json::Value) -> String {
    let mut out = String::new();
    for h in program["health"].as_array().into_iter().flatten() {
        out.push_str(&format!(
            "    health {}: {} ({}) at {}\n",
            h["check"].as_str().unwrap_or("?"),
            h["status"].as_str().unwrap_or("?"),
            h["detail"].as_str().unwrap_or(""),
            h["at"].as_str().unwrap_or("?")
        ));
    }
    out
}

/// A poll timeout for `left`, rounded up to the next millisecond: waking a hair early would
/// spin until the deadline.
fn timespec(left: Duration) -> rustix::time::Timespec {
    let mut t = rustix::time::Timespec {
        tv_sec: i64::try_from(left.as_secs()).unwrap_or(i64::MAX),
        tv_nsec: i64::from(left.subsec_nanos()) + 1_000_000,
    };
    if t.tv_nsec >= 1_000_000_000 {
        t.tv_sec = t.tv_sec.saturating_add(1);
        t.tv_nsec -= 1_000_000_000;
    }
    t
}

/// The first multiple of `interval` (counted from `epoch`) at or after `t`: monitors with the
/// same interval run in the same wake-up, so 100 monitored programs cost one wake-up per
/// interval, not 100.
fn align(epoch: Instant, t: Instant, interval: Duration) -> Instant {
    let since = t.saturating_duration_since(epoch).as_nanos();
    let step = interval.as_nanos().max(1_000_000);
    let k = since.div_ceil(step);
    let off = u64::try_from(k.saturating_mul(step)).unwrap_or(u64::MAX);
    epoch + Duration::from_nanos(off)
}

/// When the monitors of a program whose process started at `started` first run: not before
/// `monitor_after` from its real start, on the monitor grid. None without monitors.
fn first_check(cfg: &ProgramConfig, started: Instant, epoch: Instant) -> Option<Instant> {
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

/// What the daemon's descendants say about a program whose process just exited.
#[derive(Debug, PartialEq)]
enum Descendants {
    /// A copy of the program, to adopt.
    Copy(ProcInfo),
    /// Only watched programs and workers: no copy exists that the exited process started.
    None,
    /// Something else lives there (maybe a copy still being exec'd): scan to be sure.
    Unexplained,
}

/// The children of every thread of `pid` (`/proc/PID/task/*/children`).
fn children_of(pid: i32) -> Vec<i32> {
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

/// Whether the process `info` describes still exists (a zombie counts as gone).
fn still_running(info: &ProcInfo) -> bool {
    proc::read_proc(info.pid)
        .is_some_and(|now| now.start_ticks == info.start_ticks && now.is_alive())
}

/// The process's start time as an `Instant`, from its start ticks (boot-relative).
fn monotonic_start(info: &ProcInfo) -> Instant {
    let age = SystemTime::now()
        .duration_since(info.start_time())
        .unwrap_or_default();
    Instant::now().checked_sub(age).unwrap_or_else(Instant::now)
}

fn describe_exit(status: Option<WaitStatus>) -> String {
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

/// The matcher the reread thread built for `cfg`, or one built now if it has none.
fn take_matcher(
    matchers: &mut HashMap<String, Result<Matcher, String>>,
    cfg: &ProgramConfig,
) -> Result<Matcher, String> {
    matchers.remove(&cfg.name).unwrap_or_else(|| {
        Matcher::new(&cfg.command, cfg.useshell, cfg.proctitle_re.as_deref())
            .map_err(|e| e.to_string())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn monitor_times_fall_on_one_grid() {
        let epoch = Instant::now();
        let five = Duration::from_secs(5);
        let at = |ms: u64| align(epoch, epoch + Duration::from_millis(ms), five);
        assert_eq!(at(0), epoch);
        assert_eq!(at(1), epoch + five);
        assert_eq!(at(4_999), epoch + five);
        assert_eq!(at(5_000), epoch + five);
        assert_eq!(at(12_000), epoch + 3 * five);
        // Programs that started at different moments still share the wake-ups.
        assert_eq!(at(5_300), at(9_100));
    }
}
