//! `start`: launch a program detached and prove, at the end of `success_seconds`, that a
//! matching process is alive. Nothing busy-waits: the window is one `poll` on the launched
//! process's pidfd (1.5.13 spun a core for the whole window). A start that fails kills every
//! process it launched — the new session the program was started in identifies them, whatever
//! their parent now is — and says why: exit status or signal, and the program's last stderr
//! lines (1.5.13 left the processes running and said only "exited with code=N").

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::Child;
use std::time::{Duration, Instant};

use crate::config::ProgramConfig;
use crate::control::identify::{find_running, Mode};
use crate::control::report::{process_dict, py_str, Report};
use crate::control::signal::{terminate_all, Pidfd};
use crate::control::spawn::{program_argv, spawn_program};
use crate::control::{seconds, Outcome};
use crate::exit::ReturnCode;
use crate::proc::{self, Matcher, ProcInfo};

/// How many lines of the program's stderr a failed start shows.
const STDERR_TAIL_LINES: usize = 10;

/// Starts `prog` unless it already runs. The caller holds the program's lock.
pub fn start(prog: &ProgramConfig, matcher: &Matcher, report: &dyn Report) -> Outcome {
    if let Some(running) = find_running(prog, matcher, Mode::Repair, report) {
        report.info(&format!(
            "Program {} is already running:\n\n{}\n",
            prog.name,
            process_dict(&running)
        ));
        return Outcome {
            code: ReturnCode::Success,
            process: Some(running),
        };
    }
    launch(prog, matcher, report)
}

fn open_append(path: &Path) -> std::io::Result<File> {
    std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .open(path)
}

/// Launches `prog` (known not to be running) and watches it for `success_seconds`.
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
        let status = child.wait();
        match status {
            Ok(s) if s.success() => exited_ok = true,
            Ok(s) => {
                let why = match (s.code(), s.signal()) {
                    (Some(code), _) => format!("exited with code={code}"),
                    (None, Some(sig)) => format!("was killed by signal {}", signal_name(sig)),
                    _ => format!("ended with status {s}"),
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
    /// process it started that did not leave the session.
    child_pid: i32,
    kind: &'static str,
    stderr_from: u64,
    report: &'a dyn Report,
}

impl Launched<'_> {
    /// Processes of ours in the launched session, alive, lowest pid first.
    fn session_members(&self, keep: impl FnMut(i32, &[String]) -> bool) -> Vec<ProcInfo> {
        proc::scan_user(proc::my_uid(), keep)
            .into_iter()
            .filter(|p| p.session == self.child_pid)
            .collect()
    }

    /// The program: the launched process itself when it matches (the common case), else the
    /// first matching process of its session (a shell's child).
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
        self.session_members(|pid, argv| matcher.matches(pid, argv))
            .into_iter()
            .next()
    }

    /// Kills everything the launch started, shows the program's last stderr lines, and
    /// returns `code`.
    fn fail(&self, child: &mut Child, code: ReturnCode) -> Outcome {
        let members: Vec<Pidfd> = self
            .session_members(|_, _| true)
            .iter()
            .filter_map(|p| Pidfd::open_verified(p).ok().flatten())
            .collect();
        if !members.is_empty() {
            self.report.error(&format!(
                "({}) - Stopping {} process(es) left by the failed start: {}",
                self.prog.name,
                members.len(),
                members
                    .iter()
                    .map(|m| m.pid.to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
            let grace = seconds(self.prog.term_to_kill_seconds);
            terminate_all(&members, grace);
        }
        let _ = child.kill();
        let _ = child.wait();
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

fn signal_name(sig: i32) -> String {
    nix::sys::signal::Signal::try_from(sig)
        .map(|s| s.as_str().to_owned())
        .unwrap_or_else(|_| sig.to_string())
}
