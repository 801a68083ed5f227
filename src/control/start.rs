//! `start`: launch a program detached and prove, at the end of `success_seconds`, that the
//! program is alive: the launched process (recorded with its start time from the moment it is
//! launched, so the pidfile names it during the window too), or a matching process of the
//! launch. Nothing busy-waits: the window is one `poll` on the launched process's pidfd (1.5.13
//! spun a core for the whole window). A start that fails kills every process it launched that
//! it may signal — the new session the program was started in identifies them, whatever their
//! parent and uid now are — and says why: exit status or signal, what was running and why it
//! was not the program, and the program's last stderr lines (1.5.13 left the processes running
//! and said only "exited with code=N").
//!
//! A launch owns only what descends from the process it launched or lives in the session that
//! process created. usrsvc is a child subreaper during the launch, so orphans come back to it
//! and lose that ancestry; they are the launch's only when usrsvc had no child before it (then
//! nothing else can be re-parented to it). A shell that `exec`s usrsvc may leave it background
//! jobs: their orphans are never the launch's, neither to adopt nor to kill.

use std::collections::{BTreeSet, HashSet};
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::Path;
use std::process::Child;
use std::time::{Duration, Instant};

use crate::config::ProgramConfig;
use crate::control::identify::{self, find_running, Mode};
use crate::control::report::{process_dict, py_str, Report};
use crate::control::signal::{terminate_all, Pidfd};
use crate::control::spawn::{program_argv, spawn_program, InterruptsDeferred, SpawnError};
use crate::control::{seconds, Outcome};
use crate::exit::ReturnCode;
use crate::proc::Node;
use crate::proc::{self, Matcher, ProcInfo};
use nix::sys::wait::{waitid, Id, WaitPidFlag, WaitStatus};

/// How many lines of the program's stderr a failed start shows.
const STDERR_TAIL_LINES: usize = 10;

/// Starts `prog` unless it already runs. The caller holds the program's lock.
pub fn start(prog: &ProgramConfig, matcher: &Matcher, report: &dyn Report) -> Outcome {
    start_fresh(prog, matcher, report).0
}

/// `start`, also saying whether it launched (false: it was already running).
pub fn start_fresh(
    prog: &ProgramConfig,
    matcher: &Matcher,
    report: &dyn Report,
) -> (Outcome, bool) {
    if let Some(running) = find_running(prog, matcher, Mode::Repair, report) {
        report.info(&format!(
            "Program {} is already running:\n\n{}\n",
            prog.name,
            process_dict(&running)
        ));
        let outcome = Outcome {
            code: ReturnCode::Success,
            process: Some(running),
        };
        return (outcome, false);
    }
    (launch(prog, matcher, report), true)
}

/// A program's log, opened by `fsafe` (no symlink, no FIFO, no folder others can write).
fn open_append(path: &Path) -> std::io::Result<File> {
    crate::fsafe::open_append(path, 0o666)
}

/// Launches `prog` (known not to be running) and watches it for `success_seconds`.
///
/// The calling process becomes a child subreaper and, if the start fails, stops every process
/// that descends from it and did not exist before the launch. So a process should launch one
/// program at a time and not keep earlier launches' programs as children that may fork later
/// (the CLI runs each start of `start all` in a process of its own).
pub fn launch(prog: &ProgramConfig, matcher: &Matcher, report: &dyn Report) -> Outcome {
    let name = &prog.name;
    report.info(&format!(
        "Starting {name} (success_seconds={:.1})",
        prog.success_seconds
    ));
    if prog.autopid {
        if let Some(dir) = prog.pidfile.parent().filter(|d| !d.is_dir()) {
            report.error(&format!(
                "({name}) - Cannot write pidfile {}: the folder {} does not exist",
                prog.pidfile.display(),
                dir.display()
            ));
            return Outcome::no_process(ReturnCode::InsufficientPermissions);
        }
    }
    let stdout = match open_append(&prog.stdout) {
        Ok(f) => f,
        Err(e) => {
            report.error(&format!(
                "({name}) - Cannot open stdout {} for writing: {e}",
                prog.stdout.display()
            ));
            return Outcome::no_process(ReturnCode::InsufficientPermissions);
        }
    };
    let stderr = if prog.stderr == prog.stdout {
        stdout.try_clone()
    } else {
        open_append(&prog.stderr)
    };
    let stderr = match stderr {
        Ok(f) => f,
        Err(e) => {
            report.error(&format!(
                "({name}) - Cannot open stderr {} for writing: {e}",
                prog.stderr.display()
            ));
            return Outcome::no_process(ReturnCode::InsufficientPermissions);
        }
    };
    let stderr_from = stderr.metadata().map(|m| m.len()).unwrap_or(0);
    let window = seconds(prog.success_seconds);
    // As a subreaper, usrsvc gets back every process the launch orphans, even one that left
    // the session (`setsid`): a failed start can then find and stop it. When usrsvc exits,
    // they pass on to init as before. Our descendants from before this launch are not its.
    let _ = nix::sys::prctl::set_child_subreaper(true);
    let _deferred = InterruptsDeferred::new();
    let me = std::process::id() as i32;
    // Without children we have no descendants, and orphans can only come back to us from the
    // launch. With children (a shell's background jobs, when it exec'd us) they may come from
    // those too, and only the launch's session and what descends from it are the launch's.
    let exclusive = match has_children() {
        Some(any) => !any,
        None => !proc::process_tree().iter().any(|n| n.ppid == me),
    };
    let started_at = Instant::now();
    let mut child = match spawn_program(prog, stdout, stderr) {
        Ok(c) => c,
        Err(SpawnError::Exec(e)) => {
            let argv: Vec<String> = program_argv(prog).iter().map(|a| py_str(a)).collect();
            report.error(&format!(
                "({name}) - Failed to run command ( [{}] ): {e}",
                argv.join(", ")
            ));
            return Outcome::no_process(ReturnCode::ProgramFailedToLaunch);
        }
        Err(SpawnError::Setup(why)) => {
            report.error(&format!("({name}) - Cannot start: {why}"));
            return Outcome::no_process(ReturnCode::ProgramFailedToLaunch);
        }
    };
    let launched = Launched {
        prog,
        child_pid: child.id() as i32,
        kind: if prog.useshell { "shell" } else { "process" },
        stderr_from,
        report,
        exclusive,
    };
    let pidfd = match Pidfd::for_child(child.id()) {
        Ok(fd) => fd,
        Err(e) => {
            report.error(&format!("({name}) - Cannot watch the started process: {e}"));
            return launched.fail(&mut child, ReturnCode::ProgramFailedToLaunch);
        }
    };
    // Recorded at once: during the window, the pidfile already names the new process (after a
    // crash restart, the server is serving long before the window ends).
    let recorded = proc::read_proc(launched.child_pid)
        .map(|info| identify::record_launch(prog, &info))
        .unwrap_or(Ok(()));
    if let Err(e) = recorded {
        report.error(&format!(
            "({name}) - Cannot write pidfile {}: {e}",
            prog.pidfile.display()
        ));
        return launched.fail(&mut child, ReturnCode::InsufficientPermissions);
    }
    let mut exited_ok = false;
    if pidfd.wait_exit(Some(window)) {
        // WNOWAIT: the exited child stays a zombie, so its pid (the id of the session it
        // created) cannot be reused by an unrelated process while we still look for, or
        // clean up, what it started.
        let status = waitid(
            Id::Pid(nix::unistd::Pid::from_raw(launched.child_pid)),
            WaitPidFlag::WEXITED | WaitPidFlag::WNOWAIT,
        );
        match status {
            Ok(WaitStatus::Exited(_, 0)) => exited_ok = true,
            Ok(s) => {
                report.error(&format!(
                    "({name}) - Parent {} {}",
                    launched.kind,
                    ended(&s)
                ));
                return launched.fail(&mut child, ReturnCode::ProgramFailedToLaunch);
            }
            Err(e) => {
                report.error(&format!(
                    "({name}) - Cannot wait for the started process: {e}"
                ));
                return launched.fail(&mut child, ReturnCode::ProgramFailedToLaunch);
            }
        }
        // Exit status 0 inside the window: a program that forks into the background. Its
        // process, if it is there, must still be alive at the end of the window.
        std::thread::sleep(window.saturating_sub(started_at.elapsed()));
    }
    let found = match launched.find_program(matcher) {
        Ok(found) => found,
        Err(seen) => {
            if exited_ok {
                report.error(&format!(
                    "({name}) - Parent {} exited with code=0",
                    launched.kind
                ));
            }
            let looked_for = if matcher.is_proctitle_re() {
                // 1.5.13's words, which scripts may look for.
                "program matching proctitle_re".to_owned()
            } else {
                format!("the program ({})", matcher.describe())
            };
            report.error(&format!(
                "({name}) - Failed to find {looked_for} within success_seconds={:.1} seconds. Parent {} pid is: {}",
                prog.success_seconds, launched.kind, launched.child_pid
            ));
            for line in seen {
                report.error(&format!("({name}) - {line}"));
            }
            report.debug(&format!("({name}) - looked for {}", matcher.describe()));
            return launched.fail(&mut child, ReturnCode::ProgramFailedToLaunch);
        }
    };
    if found.pid != launched.child_pid {
        if let Err(e) = identify::record_launch(prog, &found) {
            report.error(&format!(
                "({name}) - Cannot write pidfile {}: {e}",
                prog.pidfile.display()
            ));
            return launched.fail(&mut child, ReturnCode::InsufficientPermissions);
        }
    } else {
        identify::confirm_launch(prog, &found);
    }
    if exited_ok {
        // Nothing needs its pid any more: the session id lives on in the program's process.
        let _ = child.wait();
    }
    report.info(&format!("Started {name}:\n\n{}\n", process_dict(&found)));
    Outcome {
        code: ReturnCode::Success,
        process: Some(found),
    }
}

/// How a process ended, in 1.5.13's words.
fn ended(s: &WaitStatus) -> String {
    match s {
        WaitStatus::Exited(_, code) => format!("exited with code={code}"),
        WaitStatus::Signaled(_, sig, _) => format!("was killed by signal {}", sig.as_str()),
        other => format!("ended with status {other:?}"),
    }
}

/// What a launch created, for finding the program in it or cleaning it up.
struct Launched<'a> {
    prog: &'a ProgramConfig,
    /// The launched process; it leads the new session, so its pid is the session id of every
    /// process it started that did not leave the session. Not reaped before the end of the
    /// launch, so that id stays ours.
    child_pid: i32,
    kind: &'static str,
    stderr_from: u64,
    report: &'a dyn Report,
    /// We had no child when the launch began: every descendant of ours is the launch's.
    exclusive: bool,
}

/// Whether this process has any child, from `/proc/self/task/*/children`; None when the
/// kernel does not provide those files.
fn has_children() -> Option<bool> {
    for task in std::fs::read_dir("/proc/self/task").ok()?.flatten() {
        let children = std::fs::read_to_string(task.path().join("children")).ok()?;
        if !children.trim().is_empty() {
            return Some(true);
        }
    }
    Some(false)
}

/// The pids of `tree` that a launch owns: `roots` and what descends from them, to a fixpoint
/// (parents can have larger pids than their children after pid wrap).
fn closure(tree: &[Node], roots: impl IntoIterator<Item = i32>) -> BTreeSet<i32> {
    let mut owned: HashSet<i32> = roots.into_iter().collect();
    loop {
        let size = owned.len();
        for n in tree {
            if owned.contains(&n.ppid) {
                owned.insert(n.pid);
            }
        }
        if owned.len() == size {
            break;
        }
    }
    owned.into_iter().collect()
}

impl Launched<'_> {
    /// The pids of the launch (alive or zombie): the launched process, its session, what
    /// descends from them, and — when we had no child before — every descendant of ours.
    fn members(&self, tree: &[Node]) -> BTreeSet<i32> {
        let me = std::process::id() as i32;
        let roots = tree
            .iter()
            .filter(|n| {
                n.pid == self.child_pid
                    || n.session == self.child_pid
                    || (self.exclusive && n.ppid == me)
            })
            .map(|n| n.pid);
        let mut owned = closure(tree, roots);
        owned.remove(&me);
        owned
    }

    /// Every live process of the launch, whatever its uid, lowest pid first.
    fn processes(&self) -> Vec<ProcInfo> {
        let tree = proc::process_tree();
        let members = self.members(&tree);
        tree.iter()
            .filter(|n| n.alive && members.contains(&n.pid))
            .filter_map(|n| {
                // The same process as in the tree, not a reuse of its pid since.
                proc::read_proc(n.pid).filter(|p| p.start_ticks == n.start_ticks)
            })
            .filter(ProcInfo::is_alive)
            .collect()
    }

    /// The program: the launched process when it matches (the common case), else the oldest
    /// matching process of the launch (a shell's child, a daemon's), else the launched process
    /// if it is still alive and the user's (a server that rewrote its title: usrsvc launched
    /// it, and it is recorded as the program). Err: what was seen instead, for the message.
    fn find_program(&self, matcher: &Matcher) -> Result<ProcInfo, Vec<String>> {
        let me = proc::my_uid();
        let is_ours = |p: &ProcInfo| p.is_alive() && p.belongs_to(me);
        // Right after exec the kernel has woken us before it set up the new argv, so an
        // empty cmdline of a live process means "not yet": look again, briefly.
        let mut launched = proc::read_proc(self.child_pid);
        for _ in 0..100 {
            match &launched {
                Some(p) if p.is_alive() && p.cmdline.is_empty() => {
                    std::thread::sleep(Duration::from_millis(1));
                    launched = proc::read_proc(self.child_pid);
                }
                _ => break,
            }
        }
        if let Some(p) = launched
            .as_ref()
            .filter(|p| is_ours(p) && matcher.matches(p.pid, &p.cmdline))
        {
            return Ok(p.clone());
        }
        let all = self.processes();
        // The oldest match: a daemon's master rather than a worker it forked (whose pid may
        // be lower after pid wrap).
        let matching = all
            .iter()
            .filter(|p| is_ours(p) && matcher.matches(p.pid, &p.cmdline))
            .filter(|p| !identify::never_the_program(p))
            .min_by_key(|p| (p.start_ticks, p.pid));
        if let Some(p) = matching {
            return Ok(p.clone());
        }
        // The wrapping `/bin/sh -c` of `useshell` that is still the shell is not the program.
        let wrapper = |p: &ProcInfo| self.prog.useshell && p.cmdline == program_argv(self.prog);
        if let Some(p) = launched.filter(|p| is_ours(p) && !wrapper(p)) {
            return Ok(p);
        }
        Err(self.seen(&all, matcher))
    }

    /// What the launch left running and why none of it is the program, and how the processes
    /// of the launch that have exited ended (they are our children: we are their subreaper).
    fn seen(&self, all: &[ProcInfo], matcher: &Matcher) -> Vec<String> {
        const MAX: usize = 5;
        let me = proc::my_uid();
        let mut lines: Vec<String> = all
            .iter()
            .take(MAX)
            .map(|p| {
                let why = if !p.belongs_to(me) {
                    format!("it belongs to {}, not to uid {me}", p.owner_text())
                } else if p.pid == self.child_pid {
                    "it is the shell that runs the command".to_owned()
                } else {
                    format!("it does not match {}", matcher.describe())
                };
                format!(
                    "Running: pid {} ({}), not the program: {why}",
                    p.pid,
                    p.cmdline_string()
                )
            })
            .collect();
        if all.len() > MAX {
            lines.push(format!("… and {} more process(es)", all.len() - MAX));
        }
        let tree = proc::process_tree();
        let me_pid = std::process::id() as i32;
        let exited: Vec<i32> = self
            .members(&tree)
            .into_iter()
            .filter(|pid| *pid != self.child_pid)
            .filter(|pid| {
                tree.iter()
                    .any(|n| n.pid == *pid && !n.alive && n.ppid == me_pid)
            })
            .collect();
        for pid in exited {
            let status = waitid(
                Id::Pid(nix::unistd::Pid::from_raw(pid)),
                WaitPidFlag::WEXITED | WaitPidFlag::WNOHANG,
            );
            if let Ok(s @ (WaitStatus::Exited(..) | WaitStatus::Signaled(..))) = status {
                lines.push(format!("Process {pid} it started {}", ended(&s)));
            }
        }
        if all.is_empty() {
            lines.push("Nothing it started is still running.".to_owned());
        }
        lines
    }

    /// Kills everything the launch started that we may signal, forgets the launch's pidfile,
    /// shows the program's last stderr lines, and returns `code`. Rounds repeat while
    /// processes remain: one may fork between the scan and the signal.
    fn fail(&self, child: &mut Child, code: ReturnCode) -> Outcome {
        let mut grace = seconds(self.prog.term_to_kill_seconds);
        for round in 0..=CLEANUP_ROUNDS {
            let left: Vec<Pidfd> = self
                .processes()
                .iter()
                .filter_map(|p| Pidfd::open_launched(p).ok().flatten())
                .collect();
            if left.is_empty() {
                break;
            }
            let pids = left
                .iter()
                .map(|m| m.pid.to_string())
                .collect::<Vec<_>>()
                .join(", ");
            if round == CLEANUP_ROUNDS {
                self.report.error(&format!(
                    "({}) - Gave up stopping what the failed start left: {} process(es) still running (it keeps forking?): {pids}",
                    self.prog.name,
                    left.len(),
                ));
                break;
            }
            self.report.error(&format!(
                "({}) - Stopping {} process(es) left by the failed start: {pids}",
                self.prog.name,
                left.len(),
            ));
            terminate_all(&left, grace);
            // Latecomers get no second grace period.
            grace = Duration::ZERO;
        }
        if let Err(e) = identify::forget_launch(self.prog) {
            self.report.error(&format!(
                "({}) Unable to remove pidfile {}: {e}",
                self.prog.name,
                self.prog.pidfile.display()
            ));
        }
        let _ = child.kill();
        let _ = child.wait();
        reap_zombie_children();
        if let Some(tail) = read_tail(&self.prog.stderr, self.stderr_from) {
            self.report.error(&format!(
                "({}) - Last lines of {}:\n{tail}",
                self.prog.name,
                self.prog.stderr.display()
            ));
        }
        Outcome::no_process(code)
    }
}

/// How many kill rounds a failed start's cleanup makes at most.
const CLEANUP_ROUNDS: usize = 10;

/// Collects the exit status of children that have exited: the orphans a subreaper inherits
/// are its children too, and should not linger as zombies while usrsvc runs.
fn reap_zombie_children() {
    while let Ok(status) = nix::sys::wait::waitpid(None, Some(WaitPidFlag::WNOHANG)) {
        if status == WaitStatus::StillAlive {
            break;
        }
    }
}

/// The last lines written to `path` since offset `from`, indented, or None if there are none.
fn read_tail(path: &Path, from: u64) -> Option<String> {
    const MAX_BYTES: u64 = 8192;
    let mut f = File::open(path).ok()?;
    let len = f.metadata().ok()?.len();
    let start = from.max(len.saturating_sub(MAX_BYTES));
    f.seek(SeekFrom::Start(start)).ok()?;
    let mut buf = Vec::new();
    f.read_to_end(&mut buf).ok()?;
    let text = String::from_utf8_lossy(&buf);
    let lines: Vec<&str> = text.lines().collect();
    let tail = &lines[lines.len().saturating_sub(STDERR_TAIL_LINES)..];
    if tail.iter().all(|l| l.trim().is_empty()) {
        return None;
    }
    Some(
        tail.iter()
            .map(|l| format!("    {l}"))
            .collect::<Vec<_>>()
            .join("\n"),
    )
}
