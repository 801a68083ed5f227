//! One check or repair process, from spawn to reap, driven without blocking so that one
//! thread can run many at once: the caller polls `Run::fds`, then calls `Run::advance`. It
//! owns the process group it creates and must not touch any other process.
//!
//! Reaping is by pidfd (`waitid(P_PIDFD)`), never `waitpid(-1)`: the daemon's main thread and
//! this one each collect only their own children.

use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime};

use rustix::event::{PollFd, PollFlags};
use rustix::process::{Pid, PidfdFlags, Signal, WaitId, WaitIdOptions};

use super::{Exit, Outcome, Status, Target};
use crate::control::spawn::build_env;

/// How much of a check's output is kept: its end, where the reason usually is.
pub const OUTPUT_TAIL: usize = 2048;

/// How long a synchronous run waits for killed processes to be gone before it returns
/// (a process in uninterruptible sleep can outlive SIGKILL for a while).
const KILL_WAIT: Duration = Duration::from_secs(2);

/// Reads per `drain`: a check that writes without pause cannot keep the thread from its
/// other work; the rest is read on the next turn.
const READS_PER_DRAIN: usize = 16;

/// What to run.
pub(crate) struct Job<'a> {
    pub target: &'a Target,
    pub check: &'a str,
    pub command: &'a str,
    pub timeout: Duration,
}

/// A running check or repair process: the leader of its own process group.
pub(crate) struct Run {
    pid: i32,
    pidfd: OwnedFd,
    /// The read end of the stdout+stderr pipe, until EOF.
    out: Option<OwnedFd>,
    tail: Vec<u8>,
    began: Instant,
    at: SystemTime,
    deadline: Instant,
    timeout: Duration,
}

/// A process that was SIGKILLed with its group and is not reaped yet.
pub(crate) struct Corpse {
    pub pid: i32,
    pidfd: OwnedFd,
}

pub(crate) enum Progress {
    Running(Run),
    /// Finished; a timed-out run leaves a `Corpse` to reap once it is gone.
    Done(Outcome, Option<Corpse>),
}

pub(crate) fn not_started(why: String) -> Outcome {
    Outcome {
        status: Status::Failing,
        exit: Exit::NotStarted(why),
        output: String::new(),
        elapsed: Duration::ZERO,
        at: SystemTime::now(),
    }
}

impl Run {
    /// Starts `/bin/sh -c COMMAND` for `job`. A failure to start is an `Outcome` already.
    pub fn spawn(job: &Job<'_>) -> Result<Run, Outcome> {
        let at = SystemTime::now();
        let began = Instant::now();
        let fail = |what: &str, e: io::Error| not_started(format!("{what}: {e}"));
        // Close-on-exec, so checks spawned by other threads never inherit this pipe; std
        // dup2()s it onto fds 1 and 2 of the child, where it stays open.
        let (read, write) = rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC)
            .map_err(|e| fail("pipe", e.into()))?;
        // Non-blocking on our end only: the child's end must block when the pipe is full.
        rustix::fs::fcntl_setfl(&read, rustix::fs::OFlags::NONBLOCK)
            .map_err(|e| fail("pipe", e.into()))?;
        let write2 = write.try_clone().map_err(|e| fail("pipe", e))?;

        let mut env = build_env(job.target.inherit_env, &job.target.env);
        let ours = [
            ("USRSVC_PROGRAM", job.target.program.clone()),
            ("USRSVC_PID", job.target.pid.to_string()),
            ("USRSVC_CHECK", job.check.to_string()),
        ];
        env.retain(|(k, _)| !ours.iter().any(|(o, _)| o == k));
        env.extend(ours.iter().map(|(k, v)| (k.to_string(), v.clone())));

        let mut cmd = Command::new("/bin/sh");
        cmd.arg("-c")
            .arg(job.command)
            .env_clear()
            .envs(env)
            .stdin(Stdio::null())
            .stdout(Stdio::from(write))
            .stderr(Stdio::from(write2))
            // Its own group, so the whole check — and whatever it started in the
            // background — can be killed with one kill(-pgid).
            .process_group(0);
        let child = cmd.spawn().map_err(|e| fail("/bin/sh", e))?;
        // Our copies of the write end go with `cmd`: EOF then means the check's side closed.
        drop(cmd);
        let Ok(pid) = i32::try_from(child.id()) else {
            return Err(not_started("pid out of range".into()));
        };
        // `child` is dropped without waiting: the pidfd reaps it. Until then the pid (and the
        // group id) cannot be reused, so the pidfd opened here is surely this process.
        drop(child);
        let pidfd = match Pid::from_raw(pid)
            .ok_or(rustix::io::Errno::SRCH)
            .and_then(|p| rustix::process::pidfd_open(p, PidfdFlags::empty()))
        {
            Ok(fd) => fd,
            Err(e) => {
                kill_group(pid);
                let _ = rustix::process::waitpid(
                    Pid::from_raw(pid),
                    rustix::process::WaitOptions::empty(),
                );
                return Err(fail("pidfd_open", e.into()));
            }
        };
        Ok(Run {
            pid,
            pidfd,
            out: Some(read),
            tail: Vec::new(),
            began,
            at,
            deadline: began
                .checked_add(job.timeout)
                .unwrap_or(began + Duration::from_secs(86400 * 365)),
            timeout: job.timeout,
        })
    }

    pub fn pid(&self) -> i32 {
        self.pid
    }

    pub fn deadline(&self) -> Instant {
        self.deadline
    }

    /// What to poll for readability: the pidfd, and the output pipe while it is open.
    pub fn fds(&self) -> impl Iterator<Item = BorrowedFd<'_>> {
        std::iter::once(self.pidfd.as_fd()).chain(self.out.as_ref().map(|f| f.as_fd()))
    }

    /// Reads what output there is, and finishes the run if its leader exited or its time is
    /// up. Never blocks.
    pub fn advance(mut self, now: Instant) -> Progress {
        self.drain();
        if has_exited(&self.pidfd) {
            // Whatever the leader wrote before exiting is in the pipe now. Do not wait for
            // EOF: a grandchild that left the group may hold the pipe open for ever.
            self.drain();
            // Kill what the check left behind in its group *before* reaping the leader: the
            // unreaped (zombie) leader keeps its pid, which is the group id, from being
            // reused, so this kill(-pgid) cannot reach an unrelated new group.
            kill_group(self.pid);
            let exit = reap(&self.pidfd);
            let outcome = self.outcome(exit, Instant::now());
            return Progress::Done(outcome, None);
        }
        if now >= self.deadline {
            // The leader is alive, so the group id is still ours.
            kill_group(self.pid);
            self.drain();
            let outcome = self.outcome(Exit::TimedOut(self.timeout), now);
            return Progress::Done(outcome, Some(self.into_corpse()));
        }
        Progress::Running(self)
    }

    /// Kills the whole group (the check is no longer wanted) and leaves it to be reaped.
    pub fn abandon(self) -> Corpse {
        kill_group(self.pid);
        self.into_corpse()
    }

    fn into_corpse(self) -> Corpse {
        Corpse {
            pid: self.pid,
            pidfd: self.pidfd,
        }
    }

    fn outcome(&self, exit: Exit, end: Instant) -> Outcome {
        Outcome {
            status: exit.status(),
            exit,
            output: tail_text(&self.tail),
            elapsed: end.saturating_duration_since(self.began),
            at: self.at,
        }
    }

    /// Reads what is readable now, keeping the last `OUTPUT_TAIL` bytes.
    fn drain(&mut self) {
        let Some(fd) = &self.out else { return };
        let mut buf = [0u8; 16 * 1024];
        for _ in 0..READS_PER_DRAIN {
            match rustix::io::read(fd, &mut buf) {
                Ok(0) => {
                    self.out = None;
                    return;
                }
                Ok(n) => {
                    self.tail.extend_from_slice(&buf[..n]);
                    if self.tail.len() > OUTPUT_TAIL {
                        let cut = self.tail.len() - OUTPUT_TAIL;
                        self.tail.drain(..cut);
                    }
                }
                Err(rustix::io::Errno::INTR) => {}
                Err(rustix::io::Errno::AGAIN) => return,
                Err(_) => {
                    self.out = None;
                    return;
                }
            }
        }
    }
}

impl Corpse {
    pub fn fd(&self) -> BorrowedFd<'_> {
        self.pidfd.as_fd()
    }

    /// Reaps it if it is gone (after one more kill of its group, still safe while it is
    /// unreaped); gives it back otherwise.
    pub fn try_reap(self) -> Option<Corpse> {
        if !has_exited(&self.pidfd) {
            return Some(self);
        }
        kill_group(self.pid);
        reap(&self.pidfd);
        None
    }
}

/// Runs `jobs` concurrently, each bounded by its own timeout, and returns their outcomes in
/// order once all are done and killed processes are reaped (or `KILL_WAIT` passed).
pub(crate) fn run_together(jobs: &[Job<'_>]) -> Vec<Outcome> {
    enum Slot {
        Running(Run),
        Done(Outcome),
        Empty,
    }
    let mut slots: Vec<Slot> = jobs
        .iter()
        .map(|job| match Run::spawn(job) {
            Ok(run) => Slot::Running(run),
            Err(outcome) => Slot::Done(outcome),
        })
        .collect();
    let mut corpses: Vec<Corpse> = Vec::new();
    loop {
        let running: Vec<&Run> = slots
            .iter()
            .filter_map(|s| match s {
                Slot::Running(r) => Some(r),
                _ => None,
            })
            .collect();
        if running.is_empty() {
            break;
        }
        let deadline = running.iter().map(|r| r.deadline()).min();
        let fds: Vec<BorrowedFd<'_>> = running.iter().flat_map(|r| r.fds()).collect();
        wait_readable(&fds, deadline);
        let now = Instant::now();
        for slot in &mut slots {
            if !matches!(slot, Slot::Running(_)) {
                continue;
            }
            if let Slot::Running(run) = std::mem::replace(slot, Slot::Empty) {
                *slot = match run.advance(now) {
                    Progress::Running(run) => Slot::Running(run),
                    Progress::Done(outcome, corpse) => {
                        corpses.extend(corpse);
                        Slot::Done(outcome)
                    }
                };
            }
        }
    }
    reap_all(corpses, KILL_WAIT);
    slots
        .into_iter()
        .map(|s| match s {
            Slot::Done(o) => o,
            Slot::Running(_) | Slot::Empty => not_started("lost track of the run".into()),
        })
        .collect()
}

/// Waits up to `limit` for killed processes to be gone and reaps them. Those still there
/// afterwards stay unreaped children of this thread (the kernel hands them on when it exits).
pub(crate) fn reap_all(mut corpses: Vec<Corpse>, limit: Duration) {
    let end = Instant::now() + limit;
    loop {
        corpses = corpses.into_iter().filter_map(Corpse::try_reap).collect();
        if corpses.is_empty() || Instant::now() >= end {
            return;
        }
        let fds: Vec<BorrowedFd<'_>> = corpses.iter().map(Corpse::fd).collect();
        wait_readable(&fds, Some(end));
    }
}

/// Polls `fds` for input (a pidfd: its process exited; a pipe: data or EOF) until one is
/// ready or `deadline` passes (None: no limit). An interrupted poll just returns early.
pub(crate) fn wait_readable(fds: &[BorrowedFd<'_>], deadline: Option<Instant>) {
    let mut polls: Vec<PollFd<'_>> = fds
        .iter()
        .map(|fd| PollFd::from_borrowed_fd(*fd, PollFlags::IN))
        .collect();
    let ts = deadline.map(|d| {
        // Rounded up to the next millisecond, so a wake-up is never just before a deadline
        // (which would spin until it passes).
        let r = d.saturating_duration_since(Instant::now()) + Duration::from_micros(999);
        rustix::time::Timespec {
            tv_sec: i64::try_from(r.as_secs()).unwrap_or(i64::MAX),
            tv_nsec: i64::from(r.subsec_millis()) * 1_000_000,
        }
    });
    let _ = rustix::event::poll(&mut polls, ts.as_ref());
}

/// Whether the process behind `pidfd` has exited (without waiting).
fn has_exited(pidfd: &OwnedFd) -> bool {
    let mut p = [PollFd::new(pidfd, PollFlags::IN)];
    let zero = rustix::time::Timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    matches!(rustix::event::poll(&mut p, Some(&zero)), Ok(n) if n > 0)
}

/// Collects the exit status of an exited child of this thread.
fn reap(pidfd: &OwnedFd) -> Exit {
    loop {
        match rustix::process::waitid(WaitId::PidFd(pidfd.as_fd()), WaitIdOptions::EXITED) {
            Ok(Some(st)) => {
                if let Some(code) = st.exit_status() {
                    return Exit::Code(code);
                }
                if let Some(sig) = st.terminating_signal() {
                    return Exit::Signal(sig);
                }
                return Exit::Lost("no exit status".into());
            }
            Ok(None) => return Exit::Lost("no exit status".into()),
            Err(rustix::io::Errno::INTR) => {}
            Err(e) => return Exit::Lost(io::Error::from(e).to_string()),
        }
    }
}

/// SIGKILL to the process group `pgid`; an error (the group is empty) is no matter.
fn kill_group(pgid: i32) {
    if let Some(p) = Pid::from_raw(pgid) {
        let _ = rustix::process::kill_process_group(p, Signal::KILL);
    }
}

/// The kept bytes as text, without a UTF-8 sequence cut in half at the front.
fn tail_text(tail: &[u8]) -> String {
    let start = if tail.len() >= OUTPUT_TAIL {
        tail.iter()
            .take(4)
            .position(|b| b & 0xC0 != 0x80)
            .unwrap_or(0)
    } else {
        0
    };
    String::from_utf8_lossy(&tail[start..]).into_owned()
}
