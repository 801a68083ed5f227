//! `start`: launch a program detached and prove, at the end of `success_seconds`, that a
//! matching process is alive. Nothing busy-waits: the window is one `poll` on the launched
//! process's pidfd (1.5.13 spun a core for the whole window). A start that fails kills every
//! process it launched — the new session the program was started in identifies them, whatever
//! their parent now is — and says why: exit status or signal, and the program's last stderr
//! lines (1.5.13 left the processes running and said only "exited with code=N").

use std::collections::HashSet;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::Path;
use std::process::Child;
use std::time::{Duration, Instant};

use crate::config::ProgramConfig;
use crate::control::identify::{find_running, Mode};
use crate::control::report::{process_dict, py_str, Report};
use crate::control::signal::{terminate_all, Pidfd};
use crate::control::spawn::{program_argv, spawn_program, InterruptsDeferred};
use crate::control::{seconds, Outcome};
use crate::exit::ReturnCode;
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
    // A process without children has no descendants: no need to read every process (the
    // common case — a `usrsvc` command, a daemon's worker — and most of a restart's cost).
    let before = if has_children() == Some(false) {
        HashSet::new()
    } else {
        our_descendants(&proc::user_processes(proc::my_uid()), |_| false)
            .map(|p| (p.pid, p.start_ticks))
            .collect()
    };
    let started_at = Instant::now();
    let mut child = match spawn_program(prog, stdout, stderr) {
        Ok(c) => c,
        Err(e) => {
            let argv: Vec<String> = program_argv(prog).iter().map(|a| py_str(a)).collect();
            report.error(&format!(
                "({name}) - Failed to run command ( [{}] ): {e}",
                argv.join(", ")
            ));
            return Outcome::no_process(ReturnCode::ProgramFailedToLaunch);
        }
    };
    let launched = Launched {
        prog,
        child_pid: child.id() as i32,
        kind: if prog.useshell { "shell" } else { "process" },
        stderr_from,
        report,
        before,
    };
    let pidfd = match Pidfd::for_child(child.id()) {
        Ok(fd) => fd,
        Err(e) => {
            report.error(&format!("({name}) - Cannot watch the started process: {e}"));
            return launched.fail(&mut child, ReturnCode::ProgramFailedToLaunch);
        }
    };
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
                let why = match s {
                    WaitStatus::Exited(_, code) => format!("exited with code={code}"),
                    WaitStatus::Signaled(_, sig, _) => {
                        format!("was killed by signal {}", sig.as_str())
                    }
                    other => format!("ended with status {other:?}"),
                };
                report.error(&format!("({name}) - Parent {} {why}", launched.kind));
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
    let Some(found) = launched.find_program(matcher) else {
        if exited_ok {
            report.error(&format!(
                "({name}) - Parent {} exited with code=0",
                launched.kind
            ));
        }
        report.error(&format!(
            "({name}) - Failed to find program matching proctitle_re within success_seconds={:.1} seconds. Parent {} pid is: {}",
            prog.success_seconds, launched.kind, launched.child_pid
        ));
        report.debug(&format!("({name}) - looked for {}", matcher.describe()));
        return launched.fail(&mut child, ReturnCode::ProgramFailedToLaunch);
    };
    if prog.autopid {
        if let Err(e) = crate::control::identify::write_pidfile(prog, &found) {
            report.error(&format!(
                "({name}) - Cannot write pidfile {}: {e}",
                prog.pidfile.display()
            ));
            return launched.fail(&mut child, ReturnCode::InsufficientPermissions);
        }
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
    /// Our descendants (pid, start ticks) from before the launch.
    before: HashSet<(i32, u64)>,
}

/// The processes in `all` that descend from the calling process, not looking below those for
/// which `stop_at` says so.
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

fn our_descendants(
    all: &[ProcInfo],
    stop_at: impl Fn(&ProcInfo) -> bool,
) -> impl Iterator<Item = &ProcInfo> {
    let mut tree: HashSet<i32> = HashSet::from([std::process::id() as i32]);
    let mut expand: HashSet<i32> = tree.clone();
    // Parents can have larger pids than their children (pid wrap): grow to a fixpoint.
    loop {
        let size = tree.len();
        for p in all {
            if expand.contains(&p.ppid) && tree.insert(p.pid) && !stop_at(p) {
                expand.insert(p.pid);
            }
        }
        if tree.len() == size {
            break;
        }
    }
    all.iter().filter(move |p| tree.contains(&p.pid))
}

impl Launched<'_> {
    /// Every live process this launch started, lowest pid first: its session, and whatever
    /// came back to us as orphans after the launch began.
    fn processes(&self, matching: Option<&Matcher>) -> Vec<ProcInfo> {
        let all = proc::user_processes(proc::my_uid());
        // What our children from before the launch start later is theirs, not the launch's.
        let old = |p: &ProcInfo| self.before.contains(&(p.pid, p.start_ticks));
        let ours: HashSet<i32> = our_descendants(&all, old)
            .filter(|p| !old(p))
            .map(|p| p.pid)
            .collect();
        all.into_iter()
            .filter(|p| p.session == self.child_pid || ours.contains(&p.pid))
            .filter(|p| matching.is_none_or(|m| m.matches(p.pid, &p.cmdline)))
            .collect()
    }

    /// The program: the launched process itself when it matches (the common case), else the
    /// oldest matching process the launch started (a shell's child, a daemon's).
    fn find_program(&self, matcher: &Matcher) -> Option<ProcInfo> {
        // Right after exec the kernel has woken us before it set up the new argv, so an
        // empty cmdline of a live process means "not yet": look again, briefly.
        for _ in 0..100 {
            match proc::read_proc(self.child_pid) {
                Some(me) if me.is_alive() && me.cmdline.is_empty() => {
                    std::thread::sleep(Duration::from_millis(1));
                }
                Some(me) if me.is_alive() && matcher.matches(me.pid, &me.cmdline) => {
                    return Some(me);
                }
                _ => break,
            }
        }
        // The oldest match: a daemon's master rather than a worker it forked (whose pid may
        // be lower after pid wrap).
        self.processes(Some(matcher))
            .into_iter()
            .min_by_key(|p| (p.start_ticks, p.pid))
    }

    /// Kills everything the launch started, shows the program's last stderr lines, and
    /// returns `code`. Rounds repeat while processes remain: one may fork between the scan
    /// and the signal.
    fn fail(&self, child: &mut Child, code: ReturnCode) -> Outcome {
        let mut grace = seconds(self.prog.term_to_kill_seconds);
        for round in 0..=CLEANUP_ROUNDS {
            let left: Vec<Pidfd> = self
                .processes(None)
                .iter()
                .filter_map(|p| Pidfd::open_verified(p).ok().flatten())
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
