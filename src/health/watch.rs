//! The daemon's health-check thread (`Watcher`): targets in, events out, and a byte on the
//! loop's wake socket whenever an event is queued. One thread runs every check of every
//! program with one `poll` over pidfds, output pipes and timers, so a hung check costs only
//! its own timeout and never delays another. It counts failures and runs repairs; it must not
//! act on a program — `Event::Act` asks the daemon to.
//!
//! Its check processes are children of this thread and are reaped here through their pidfds;
//! the daemon's main thread reaps with `__WNOTHREAD` and never sees them.

use std::collections::{HashMap, HashSet};
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, BorrowedFd};
use std::os::unix::net::UnixStream;
use std::sync::{mpsc, Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime};

use super::run::{self, Corpse, Job, Progress, Run};
use super::{CheckSpec, HealthAction, Outcome, Status, Target};

/// No check runs more often than this, whatever its `interval` says: a zero interval must not
/// turn the thread into a busy loop.
const MIN_INTERVAL: Duration = Duration::from_millis(50);

/// How long the thread, when the `Watcher` is dropped, waits for killed checks to be gone.
const SHUTDOWN_WAIT: Duration = Duration::from_secs(2);

/// What happened, for the daemon.
#[derive(Clone, Debug, PartialEq)]
pub enum Event {
    /// Every finished check: for the status display (the daemon keeps the last verdict per
    /// check).
    Verdict {
        program: String,
        pid: i32,
        check: String,
        outcome: Outcome,
        consecutive_failures: u32,
    },
    /// `failures` consecutive failures (after a repair that did not help, if any): the daemon
    /// applies `action`. The check's count starts again from zero.
    Act {
        program: String,
        pid: i32,
        check: String,
        action: HealthAction,
        why: String,
    },
    /// A repair made the check pass again.
    Repaired {
        program: String,
        pid: i32,
        check: String,
        repair: Outcome,
    },
}

enum Command {
    Watch(Target, Vec<CheckSpec>),
    Unwatch(String),
}

/// The health-check thread's handle. Dropping it stops the thread, kills every running
/// check's process group and reaps it (waiting up to `SHUTDOWN_WAIT`).
pub struct Watcher {
    commands: mpsc::Sender<Command>,
    /// A byte after each command wakes the thread; closing it (on drop) ends the thread.
    poke: Option<UnixStream>,
    events: mpsc::Receiver<Event>,
    /// Leaders of the check and repair processes alive now (also killed, unreaped ones).
    leaders: Arc<Mutex<HashSet<i32>>>,
    thread: Option<JoinHandle<()>>,
}

impl Watcher {
    pub fn start(wake: UnixStream) -> io::Result<Watcher> {
        let (commands, command_rx) = mpsc::channel();
        let (event_tx, events) = mpsc::channel();
        let (poke, poked) = UnixStream::pair()?;
        // Neither side of the poke socket may block: a full buffer already means "look".
        poke.set_nonblocking(true)?;
        poked.set_nonblocking(true)?;
        let leaders = Arc::new(Mutex::new(HashSet::new()));
        let state = State {
            commands: command_rx,
            poked,
            events: event_tx,
            wake,
            programs: HashMap::new(),
            corpses: Vec::new(),
            leaders: Arc::clone(&leaders),
            queued: false,
        };
        let thread = std::thread::Builder::new()
            .name("usrsvcd-health".into())
            .spawn(move || state.run())?;
        Ok(Watcher {
            commands,
            poke: Some(poke),
            events,
            leaders,
            thread: Some(thread),
        })
    }

    /// (Re)starts watching a program's process with these checks. For the same pid, checks
    /// keep their counts and schedule (a reread may change their settings); a new pid starts
    /// afresh and kills checks still running against the old one.
    pub fn watch(&mut self, target: Target, checks: Vec<CheckSpec>) {
        self.send(Command::Watch(target, checks));
    }

    /// Stops the program's checks (running ones are killed).
    pub fn unwatch(&mut self, program: &str) {
        self.send(Command::Unwatch(program.to_string()));
    }

    /// Drains what happened since the last call.
    pub fn events(&mut self) -> Vec<Event> {
        self.events.try_iter().collect()
    }

    /// The pids of the check and repair processes now alive (each leads its process group).
    /// They are descendants of the daemon: a scan of its descendants should skip their trees.
    pub fn check_pids(&self) -> Vec<i32> {
        match self.leaders.lock() {
            Ok(set) => set.iter().copied().collect(),
            Err(poisoned) => poisoned.into_inner().iter().copied().collect(),
        }
    }

    fn send(&mut self, command: Command) {
        if self.commands.send(command).is_ok() {
            if let Some(poke) = &self.poke {
                // WouldBlock: bytes are pending already, the thread will look.
                let _ = (&*poke).write(b"c");
            }
        }
    }
}

impl Drop for Watcher {
    fn drop(&mut self) {
        // EOF on the poke socket tells the thread to stop.
        drop(self.poke.take());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// The thread's side.
struct State {
    commands: mpsc::Receiver<Command>,
    poked: UnixStream,
    events: mpsc::Sender<Event>,
    wake: UnixStream,
    programs: HashMap<String, Program>,
    corpses: Vec<Corpse>,
    leaders: Arc<Mutex<HashSet<i32>>>,
    /// Events were sent since the last wake byte.
    queued: bool,
}

struct Program {
    target: Target,
    checks: Vec<Check>,
}

struct Check {
    spec: CheckSpec,
    next: Instant,
    consecutive: u32,
    phase: Phase,
}

enum Phase {
    Idle,
    Checking(Run),
    /// `failures` reached: the repair runs. Holds what the last failing check said.
    Repairing(Run, String),
    /// The repair finished: the check once more.
    Rechecking(Run, String, Outcome),
}

impl Phase {
    fn run(&self) -> Option<&Run> {
        match self {
            Phase::Idle => None,
            Phase::Checking(r) | Phase::Repairing(r, _) | Phase::Rechecking(r, _, _) => Some(r),
        }
    }
}

impl State {
    fn run(mut self) {
        loop {
            let wake_at = self.next_wake();
            let mut fds: Vec<BorrowedFd<'_>> = vec![self.poked.as_fd()];
            for p in self.programs.values() {
                for c in &p.checks {
                    if let Some(r) = c.phase.run() {
                        fds.extend(r.fds());
                    }
                }
            }
            fds.extend(self.corpses.iter().map(Corpse::fd));
            run::wait_readable(&fds, wake_at);
            drop(fds);

            if !self.read_commands() {
                break;
            }
            self.step(Instant::now());
            self.corpses = std::mem::take(&mut self.corpses)
                .into_iter()
                .filter_map(Corpse::try_reap)
                .collect();
            self.publish_leaders();
            if self.queued {
                self.queued = false;
                // Blocking, like the monitor thread: the loop reads its wake socket on every
                // turn, so the buffer only fills if the loop is stuck.
                let _ = (&self.wake).write(b"H");
            }
        }
        let programs: Vec<Program> = self.programs.drain().map(|(_, p)| p).collect();
        for p in programs {
            self.abandon(p);
        }
        run::reap_all(std::mem::take(&mut self.corpses), SHUTDOWN_WAIT);
        self.publish_leaders();
    }

    /// The earliest moment something is due: a check to start or a run's deadline.
    fn next_wake(&self) -> Option<Instant> {
        self.programs
            .values()
            .flat_map(|p| &p.checks)
            .map(|c| c.phase.run().map_or(c.next, Run::deadline))
            .min()
    }

    /// Applies the commands that arrived. False when the `Watcher` is gone.
    fn read_commands(&mut self) -> bool {
        let mut buf = [0u8; 64];
        loop {
            match (&self.poked).read(&mut buf) {
                Ok(0) => return false,
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => break,
            }
        }
        loop {
            match self.commands.try_recv() {
                Ok(Command::Watch(target, specs)) => self.watch(target, specs),
                Ok(Command::Unwatch(name)) => {
                    if let Some(p) = self.programs.remove(&name) {
                        self.abandon(p);
                    }
                }
                Err(mpsc::TryRecvError::Empty) => return true,
                Err(mpsc::TryRecvError::Disconnected) => return false,
            }
        }
    }

    fn watch(&mut self, target: Target, specs: Vec<CheckSpec>) {
        let (now, wall) = (Instant::now(), SystemTime::now());
        let mut old = match self.programs.remove(&target.program) {
            Some(p) if p.target.pid == target.pid && p.target.started == target.started => p.checks,
            Some(p) => {
                self.abandon(p);
                Vec::new()
            }
            None => Vec::new(),
        };
        let checks = specs
            .into_iter()
            .map(
                |spec| match old.iter().position(|c| c.spec.name == spec.name) {
                    Some(i) => {
                        let mut c = old.swap_remove(i);
                        c.spec = spec;
                        c
                    }
                    None => Check {
                        next: first_run(&target, &spec, now, wall),
                        spec,
                        consecutive: 0,
                        phase: Phase::Idle,
                    },
                },
            )
            .collect();
        for gone in old {
            self.abandon_check(gone);
        }
        self.programs
            .insert(target.program.clone(), Program { target, checks });
    }

    fn abandon(&mut self, p: Program) {
        for c in p.checks {
            self.abandon_check(c);
        }
    }

    fn abandon_check(&mut self, c: Check) {
        match c.phase {
            Phase::Idle => {}
            Phase::Checking(r) | Phase::Repairing(r, _) | Phase::Rechecking(r, _, _) => {
                self.corpses.push(r.abandon());
            }
        }
    }

    /// Starts what is due and moves every running check on.
    fn step(&mut self, now: Instant) {
        let mut events = Vec::new();
        for p in self.programs.values_mut() {
            for c in &mut p.checks {
                let phase = std::mem::replace(&mut c.phase, Phase::Idle);
                c.phase = match phase {
                    Phase::Idle if c.next <= now => {
                        match start(&p.target, &c.spec, &c.spec.command) {
                            Ok(r) => Phase::Checking(r),
                            // Counted like any failure (and may lead to the repair).
                            Err(failed) => after_check(&p.target, c, failed, now, &mut events),
                        }
                    }
                    Phase::Idle => Phase::Idle,
                    Phase::Checking(r) => match r.advance(now) {
                        Progress::Running(r) => Phase::Checking(r),
                        Progress::Done(outcome, corpse) => {
                            self.corpses.extend(corpse);
                            after_check(&p.target, c, outcome, now, &mut events)
                        }
                    },
                    Phase::Repairing(r, last) => match r.advance(now) {
                        Progress::Running(r) => Phase::Repairing(r, last),
                        Progress::Done(repair, corpse) => {
                            self.corpses.extend(corpse);
                            // The check once more, at once, whatever the repair's exit: the
                            // check is the judge of health.
                            match start(&p.target, &c.spec, &c.spec.command) {
                                Ok(r) => Phase::Rechecking(r, last, repair),
                                Err(failed) => after_recheck(
                                    &p.target,
                                    c,
                                    last,
                                    repair,
                                    failed,
                                    now,
                                    &mut events,
                                ),
                            }
                        }
                    },
                    Phase::Rechecking(r, last, repair) => match r.advance(now) {
                        Progress::Running(r) => Phase::Rechecking(r, last, repair),
                        Progress::Done(outcome, corpse) => {
                            self.corpses.extend(corpse);
                            after_recheck(&p.target, c, last, repair, outcome, now, &mut events)
                        }
                    },
                };
            }
        }
        // The loop may run more than one step before it reads: queue, then wake once.
        for e in events {
            if self.events.send(e).is_ok() {
                self.queued = true;
            }
        }
    }

    fn publish_leaders(&self) {
        let mut now: HashSet<i32> = self.corpses.iter().map(|c| c.pid).collect();
        for p in self.programs.values() {
            for c in &p.checks {
                now.extend(c.phase.run().map(Run::pid));
            }
        }
        match self.leaders.lock() {
            Ok(mut set) => *set = now,
            Err(poisoned) => *poisoned.into_inner() = now,
        }
    }
}

/// When a check of a newly watched process first runs: at `started + start_period`, or now
/// if that has passed. `wall` is the wall-clock time of `now`.
fn first_run(target: &Target, spec: &CheckSpec, now: Instant, wall: SystemTime) -> Instant {
    let ready = target
        .started
        .checked_add(spec.start_period)
        .unwrap_or(target.started);
    let wait = ready.duration_since(wall).unwrap_or(Duration::ZERO);
    now.checked_add(wait).unwrap_or(now)
}

fn start(target: &Target, spec: &CheckSpec, command: &str) -> Result<Run, Outcome> {
    Run::spawn(&Job {
        target,
        check: &spec.name,
        command,
        timeout: spec.timeout,
    })
}

/// The next run: `interval` after this one ended (never two at once).
fn schedule(c: &mut Check, now: Instant) -> Phase {
    let every = c.spec.interval.max(MIN_INTERVAL);
    c.next = now.checked_add(every).unwrap_or(now);
    Phase::Idle
}

/// Counts a regular check's outcome: a verdict, and at `failures` in a row the repair or
/// the action.
fn after_check(
    target: &Target,
    c: &mut Check,
    outcome: Outcome,
    now: Instant,
    events: &mut Vec<Event>,
) -> Phase {
    let failing = outcome.status == Status::Failing;
    // Healthy and degraded both end a run of failures.
    c.consecutive = if failing { c.consecutive + 1 } else { 0 };
    let last = outcome.describe();
    events.push(verdict(target, c, outcome));
    if !failing || c.consecutive < c.spec.failures.max(1) {
        return schedule(c, now);
    }
    let why = format!("{} consecutive failures; last: {last}", c.consecutive);
    if let Some(repair) = c.spec.repair.clone() {
        match start(target, &c.spec, &repair) {
            Ok(r) => return Phase::Repairing(r, why),
            Err(failed) => {
                let why = format!("{why}; repair {}", failed.describe());
                return act(target, c, why, now, events);
            }
        }
    }
    act(target, c, why, now, events)
}

/// The check after a repair: passing means repaired, failing means the action.
fn after_recheck(
    target: &Target,
    c: &mut Check,
    why: String,
    repair: Outcome,
    outcome: Outcome,
    now: Instant,
    events: &mut Vec<Event>,
) -> Phase {
    if outcome.status == Status::Failing {
        let why = format!(
            "{why}; repair ran ({}) and the check still fails ({})",
            repair.describe(),
            outcome.describe()
        );
        c.consecutive += 1;
        events.push(verdict(target, c, outcome));
        return act(target, c, why, now, events);
    }
    c.consecutive = 0;
    events.push(verdict(target, c, outcome));
    events.push(Event::Repaired {
        program: target.program.clone(),
        pid: target.pid,
        check: c.spec.name.clone(),
        repair,
    });
    schedule(c, now)
}

fn act(
    target: &Target,
    c: &mut Check,
    why: String,
    now: Instant,
    events: &mut Vec<Event>,
) -> Phase {
    events.push(Event::Act {
        program: target.program.clone(),
        pid: target.pid,
        check: c.spec.name.clone(),
        action: c.spec.action,
        why,
    });
    c.consecutive = 0;
    schedule(c, now)
}

fn verdict(target: &Target, c: &Check, outcome: Outcome) -> Event {
    Event::Verdict {
        program: target.program.clone(),
        pid: target.pid,
        check: c.spec.name.clone(),
        outcome,
        consecutive_failures: c.consecutive,
    }
}
