//! Signalling a process we have identified, through a pidfd opened *before* the identity is
//! re-checked: if the pid was reused in between, the check fails and nothing is sent; if it
//! passes, the pidfd can only ever reach that process. Waiting for exit polls the pidfd, which
//! becomes readable the moment the process exits (a zombie counts as gone: PID 1 may take
//! seconds to reap it).

use std::os::fd::{AsFd, OwnedFd};
use std::time::{Duration, Instant};

use rustix::event::{PollFd, PollFlags};
use rustix::process::{Pid, PidfdFlags, Signal};

use crate::proc::{self, ProcInfo};

/// A handle on one identified process.
#[derive(Debug)]
pub struct Pidfd {
    pub pid: i32,
    fd: OwnedFd,
}

impl Pidfd {
    /// Opens a pidfd for `info.pid` and proves it is still the process `info` describes (same
    /// uid and start time, alive). `Ok(None)` when it is gone or is now another process; an
    /// error when pidfds cannot be had at all (Linux before 5.3, a seccomp filter).
    pub fn open_verified(info: &ProcInfo) -> std::io::Result<Option<Pidfd>> {
        let me = proc::my_uid();
        Self::open_if(info, |now| now.uids == info.uids && now.belongs_to(me))
    }

    /// Opens a pidfd for a process a launch of ours made (proven by the caller: in the session
    /// it created, or below it), whatever uid it runs as now, if we may signal it and it is
    /// still that process (same start time, alive).
    pub fn open_launched(info: &ProcInfo) -> std::io::Result<Option<Pidfd>> {
        Self::open_if(info, proc::may_signal)
    }

    fn open_if(
        info: &ProcInfo,
        still_ours: impl Fn(&ProcInfo) -> bool,
    ) -> std::io::Result<Option<Pidfd>> {
        let Some(pid) = Pid::from_raw(info.pid) else {
            return Ok(None);
        };
        let fd = match rustix::process::pidfd_open(pid, PidfdFlags::empty()) {
            Ok(fd) => fd,
            Err(rustix::io::Errno::SRCH) => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        let Some(now) = proc::read_proc(info.pid) else {
            return Ok(None);
        };
        if now.start_ticks != info.start_ticks || !now.is_alive() || !still_ours(&now) {
            return Ok(None);
        }
        Ok(Some(Pidfd { pid: info.pid, fd }))
    }

    /// Opens a pidfd on our own child (no identity question: it cannot be reaped by anyone
    /// else, so its pid cannot be reused while we hold the `Child`).
    pub fn for_child(pid: u32) -> std::io::Result<Pidfd> {
        let raw = i32::try_from(pid).map_err(std::io::Error::other)?;
        let p = Pid::from_raw(raw).ok_or_else(|| std::io::Error::other("pid 0"))?;
        let fd = rustix::process::pidfd_open(p, PidfdFlags::empty())?;
        Ok(Pidfd { pid: raw, fd })
    }

    pub fn signal(&self, sig: Signal) -> std::io::Result<()> {
        Ok(rustix::process::pidfd_send_signal(&self.fd, sig)?)
    }

    /// Whether the process has exited (without waiting).
    pub fn has_exited(&self) -> bool {
        self.wait_exit(Some(Duration::ZERO))
    }

    /// Waits until the process exits or `timeout` passes (None: no limit). True if it exited.
    pub fn wait_exit(&self, timeout: Option<Duration>) -> bool {
        wait_any_exit(std::slice::from_ref(self), timeout).is_some()
    }

    pub fn as_fd(&self) -> std::os::fd::BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

/// Waits until any of `fds` exits or `timeout` passes; returns the index of one that exited.
pub fn wait_any_exit(fds: &[Pidfd], timeout: Option<Duration>) -> Option<usize> {
    // A deadline too far to represent is no deadline.
    let deadline = timeout.and_then(|t| Instant::now().checked_add(t));
    loop {
        let mut polls: Vec<PollFd<'_>> = fds
            .iter()
            .map(|p| PollFd::from_borrowed_fd(p.fd.as_fd(), PollFlags::IN))
            .collect();
        let remaining = deadline.map(|d| d.saturating_duration_since(Instant::now()));
        let ts = remaining.map(|r| rustix::time::Timespec {
            tv_sec: i64::try_from(r.as_secs()).unwrap_or(i64::MAX),
            tv_nsec: i64::from(r.subsec_nanos()),
        });
        match rustix::event::poll(&mut polls, ts.as_ref()) {
            Ok(0) => return None,
            Ok(_) => return polls.iter().position(|p| !p.revents().is_empty()),
            Err(rustix::io::Errno::INTR) => {
                if remaining.is_some_and(|r| r.is_zero()) {
                    return None;
                }
            }
            Err(_) => return None,
        }
    }
}

/// How long to wait for a SIGKILLed process to be gone.
pub const AFTER_KILL: Duration = Duration::from_secs(30);

/// How a termination ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ending {
    /// Exited within the grace period after the stop signal.
    Terminated,
    /// Needed SIGKILL.
    Killed,
    /// Was already gone, or was not the process we identified: nothing was sent.
    NoAction,
    /// Still there after SIGKILL and a generous wait (stuck in the kernel).
    Stuck,
}

impl Ending {
    pub fn word(self) -> &'static str {
        match self {
            Ending::Terminated => "terminated",
            Ending::Killed => "killed",
            Ending::NoAction => "no action",
            Ending::Stuck => "still running after SIGKILL",
        }
    }
}

/// Terminates several processes together: SIGTERM to all, one shared grace period, SIGKILL to
/// those left, then waits for every one.
pub fn terminate_all(fds: &[Pidfd], grace: Duration) {
    if !grace.is_zero() {
        for p in fds {
            let _ = p.signal(Signal::TERM);
        }
        let deadline = Instant::now().checked_add(grace);
        for p in fds {
            p.wait_exit(deadline.map(|d| d.saturating_duration_since(Instant::now())));
        }
    }
    for p in fds {
        if !p.has_exited() {
            let _ = p.signal(Signal::KILL);
        }
    }
    let deadline = Instant::now() + AFTER_KILL;
    for p in fds {
        p.wait_exit(Some(deadline.saturating_duration_since(Instant::now())));
    }
}
