//! The event loop: one `poll` over a pidfd per running program, the signal self-pipe and the
//! earliest timer. Each wake-up is observe → decide (`policy`) → act (a worker process runs
//! the start or restart through `control`, exactly as `usrsvc` would). The loop never holds a
//! program lock across wake-ups, never blocks on a program, a worker or a mail server, and
//! reads `/proc` only for the programs it acts on: no full scan in the steady state (a scan
//! only to adopt a program with no valid pidfile, at start, after a reread or a nudge).
//!
//! This file is the loop itself (what wakes it, the order of work in a wake-up, the timers);
//! what each step does lives in the files named for it (see `daemon`).
//!
//! With `USRSVCD_WATCH=poll` (or where `pidfd_open` is refused) exits are found by reading
//! `/proc/PID/stat` of each running program every half second instead.

use std::collections::{BTreeMap, HashMap};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use nix::sys::wait::WaitStatus;
use rustix::event::{PollFd, PollFlags};

use super::groups::GroupState;
use super::instance::{self, Instance};
use super::lifecycle::still_running;
use super::log::Log;
use super::monitor;
use super::program::{Pending, Phase, Prog, Run};
use super::reread;
use super::signals::Signals;
use crate::alert::{AlertEvent, AlertKind, Alerts, Deliverer};
use crate::config::Config;
use crate::control::{hold, ProgramLock, Report};
use crate::exit::ReturnCode;
use crate::health;

/// `usrsvcd status` reads the daemon's view of its programs from this file.
pub const STATE_FILE: &str = "usrsvcd.state";

/// How many programs in `Phase::Unknown` one wake-up looks at (each look may be a scan).
pub(super) const OBSERVE_PER_WAKEUP: usize = 8;
/// How long a reread may be under way before a new one is started without waiting for it.
pub(super) const REREAD_STUCK: Duration = Duration::from_secs(30);
/// How often a program's process is looked at in the `/proc` polling mode.
pub(super) const POLL_EVERY: Duration = Duration::from_millis(500);
/// How long a monitor check may hang before the daemon says so and queues no more.
pub(super) const MONITOR_STALL: Duration = Duration::from_secs(30);
/// How long the loop must have been idle before it gives back start-up pages.
pub(super) const TRIM_AFTER: Duration = Duration::from_secs(1);
/// How soon a program whose lock is held (a `usrsvc` command at work) is looked at again.
pub(super) const BUSY_RECHECK: Duration = Duration::from_millis(200);
/// How soon a planned restart that something holds back (kill switch, `min_ok`, a group
/// restart under way) is tried again.
pub(super) const PLAN_RETRY: Duration = Duration::from_secs(5);
/// The longest a planned-restart timer sleeps before the wall clock is read again (a clock
/// step or a suspend must not make a restart late by more than this).
pub(super) const PLAN_LOOK: Duration = Duration::from_secs(3600);
/// The first wait after a failed planned group restart; it doubles up to `GROUP_RETRY_MAX`.
pub(super) const GROUP_RETRY_BASE: Duration = Duration::from_secs(60);
pub(super) const GROUP_RETRY_MAX: Duration = Duration::from_secs(3600);
/// The worker action of a group restart.
pub const GROUP_RESTART: &str = "restart-group";
/// `workers` entries of group restarts are named so.
pub(super) const GROUP_WORKER: &str = "\0group:";
/// How often the pidfile of a program that is down is read, to notice a start by other means
/// (`usrsvc start` also nudges the daemon, which then looks at once).
pub(super) const DOWN_RECHECK: Duration = Duration::from_secs(5);

/// How the daemon was asked to run.
pub struct Options {
    pub config_path: PathBuf,
    /// The log of a detached daemon without `usrsvcd_stdout` (reopened on reread too).
    pub default_log: Option<PathBuf>,
    pub log: Log,
    pub poll_mode: bool,
}

pub struct Daemon {
    pub(super) opts: Options,
    pub(super) config: Config,
    pub(super) instance: Instance,
    pub(super) progs: BTreeMap<String, Prog>,
    /// Worker pid → program name.
    pub(super) workers: HashMap<u32, String>,
    /// Exit statuses of programs that were our descendants (we are their subreaper).
    pub(super) exits: HashMap<i32, WaitStatus>,
    pub(super) signals: Signals,
    /// The grid monitor checks are aligned to.
    pub(super) epoch: Instant,
    /// The monitor thread, started at the first check.
    pub(super) checker: Option<monitor::Checker>,
    /// The monitor thread's stall was logged.
    pub(super) checker_stall_logged: bool,
    /// Set up when some program has `email_alerts` (at start or reread, not on the restart
    /// path): it looks up the host's name, which a broken resolver can make take a second.
    pub(super) alerts: Option<Alerts>,
    pub(super) mailer: Deliverer,
    pub(super) reread_seq: u64,
    /// Outcomes of reread threads.
    pub(super) reread_tx: mpsc::Sender<(u64, reread::Outcome)>,
    pub(super) reread_rx: mpsc::Receiver<(u64, reread::Outcome)>,
    /// The reread under way (its seq and when it began), and whether another was asked for
    /// meanwhile.
    pub(super) reread_busy: Option<(u64, Instant)>,
    pub(super) reread_again: bool,
    /// A hash of what the last published state was made from, to skip rebuilding it when
    /// nothing changed.
    pub(super) published_signature: u64,
    /// Each program's state and pid in the last published state, for the phase events.
    pub(super) last_states: HashMap<String, (String, Option<i32>)>,
    /// The state readers see (the API, `usrsvcd status`), and its event stream.
    pub(super) shared: super::state::Shared,
    /// Rereads asked for through the API, and who waits for each (the first reread that
    /// begins at or after the seq answers).
    pub(super) reread_asks: mpsc::Receiver<super::handle::RereadAsk>,
    pub(super) reread_asks_tx: mpsc::Sender<super::handle::RereadAsk>,
    pub(super) reread_waiters: Vec<(u64, mpsc::Sender<super::handle::RereadAnswer>)>,
    /// The next reread overrides the drop rule (an API `reread` with `force`).
    pub(super) reread_force_next: bool,
    /// Start-up pages were given back (`instance::trim_startup_pages`).
    pub(super) trimmed: bool,
    /// The health-check thread, started when a running program has checks.
    pub(super) health: Option<health::Watcher>,
    /// Changes of health verdicts, so `publish_state` notices them.
    pub(super) health_gen: u64,
    /// Groups that have a schedule.
    pub(super) groups: BTreeMap<String, GroupState>,
    /// The group plans must be computed again (a member started or stopped).
    pub(super) groups_dirty: bool,
    /// The host name, part of the jitter's seed.
    pub(super) host: String,
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
        let (reread_asks_tx, reread_asks) = mpsc::channel();
        let shared = super::state::Shared::new();
        shared.set_config(config.clone());
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
            published_signature: 0,
            last_states: HashMap::new(),
            shared,
            reread_asks,
            reread_asks_tx,
            reread_waiters: Vec::new(),
            reread_force_next: false,
            trimmed: false,
            health: None,
            health_gen: 0,
            groups: BTreeMap::new(),
            groups_dirty: true,
            host: crate::alert::identity::short_host(),
        })
    }

    pub(super) fn log(&self) -> &Log {
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
        if let Err(e) = super::audit_tail::spawn(self.shared.clone()) {
            self.log()
                .error(&format!("Cannot follow the audit trail for events: {e}"));
        }
        loop {
            if self.signals.term.swap(false, Ordering::SeqCst) {
                self.log()
                    .error("usrsvcd got SIGTERM, shutting down. Programs keep running.");
                break;
            }
            if self.signals.reread.swap(false, Ordering::SeqCst) {
                self.ask_reread();
            }
            self.api_rereads();
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

    /// Blocks in `poll` until a signal, a program exit or the next timer; returns the
    /// programs whose process exited.
    pub(super) fn wait(&mut self) -> Vec<String> {
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

    pub(super) fn next_deadline(&self) -> Option<Instant> {
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
    pub(super) fn timers(&mut self, now: Instant) {
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

    /// SIGUSR2 from `usrsvc start|stop|restart`: look at once, by pidfile, at the programs
    /// that are not running. A back-off keeps its time (a nudge for one program must not
    /// postpone another's restart), and nothing is scanned.
    pub(super) fn nudged(&mut self) {
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

    pub(super) fn alert(&mut self, name: &str, kind: AlertKind, text: String) {
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
}

/// The thread in `slot`, started at first use with its own end of the loop's wake-up socket;
/// `None` (logged) when it cannot be started.
pub(super) fn started<'s, T>(
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
pub(super) fn align(epoch: Instant, t: Instant, interval: Duration) -> Instant {
    let since = t.saturating_duration_since(epoch).as_nanos();
    let step = interval.as_nanos().max(1_000_000);
    let k = since.div_ceil(step);
    let off = u64::try_from(k.saturating_mul(step)).unwrap_or(u64::MAX);
    epoch + Duration::from_nanos(off)
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
