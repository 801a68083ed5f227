//! What a stop reaches beyond the program's main process, and stopping all of it.
//!
//! `usrsvc start` runs every program in a session of its own: the launched process is its
//! leader (session id == its pid), and whatever it starts stays in that session unless it
//! calls `setsid` itself. A session id is a pid that the kernel keeps reserved for as long as
//! any process of the session lives, so no unrelated process can be given it while one of the
//! program's processes is still there. The program's processes are therefore: the user's own
//! processes (real, effective and saved uid) in the session whose id is the program's pid,
//! started no earlier than the program. An adopted program that is not a session leader
//! reaches only its process group, when it leads one, else only its main process.
//!
//! Every member is signalled through a pidfd opened before its identity (uid, start time,
//! session) is checked again, so a pid reused in between is never signalled. Never: the calling
//! process, its ancestors, a usrsvc process.

use std::time::{Duration, Instant};

use rustix::process::Signal;

use crate::control::signal::{Ending, Pidfd, AFTER_KILL};
use crate::proc::{self, ProcInfo};

/// Which processes belong to a program besides its main process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// The session with this id (the program's pid: it is, or was, the session leader).
    Session(i32),
    /// The process group with this id (an adopted program that leads a group only).
    Group(i32),
    /// Nothing but the main process.
    Alone,
}

impl Scope {
    /// What a stop of `main` reaches: its session when it leads one, else its process group
    /// when it leads one, else nothing more.
    pub fn of(main: &ProcInfo) -> Scope {
        if main.session == main.pid {
            Scope::Session(main.pid)
        } else if main.pgrp == main.pid {
            Scope::Group(main.pid)
        } else {
            Scope::Alone
        }
    }

    fn holds(self, p: &ProcInfo) -> bool {
        match self {
            Scope::Session(sid) => p.session == sid,
            Scope::Group(pgid) => p.pgrp == pgid,
            Scope::Alone => false,
        }
    }

    fn holds_node(self, n: &proc::Node) -> bool {
        match self {
            Scope::Session(sid) => n.session == sid,
            Scope::Group(pgid) => n.pgrp == pgid,
            Scope::Alone => false,
        }
    }

    fn id(self) -> Option<i32> {
        match self {
            Scope::Session(id) | Scope::Group(id) => Some(id),
            Scope::Alone => None,
        }
    }
}

/// Who may be signalled as a member of a scope.
#[derive(Debug, Clone)]
pub struct Members {
    pub scope: Scope,
    /// Members started before this (clock ticks since boot) are not the program's.
    pub since: u64,
    /// Never signalled: the calling process's ancestors.
    callers: Vec<i32>,
}

impl Members {
    pub fn new(scope: Scope, since: u64) -> Members {
        Members {
            scope,
            since,
            callers: proc::my_ancestors(),
        }
    }

    /// The live members, read now (the calling process is never among them), lowest pid
    /// first, leaving out the pids in `known`.
    pub fn scan(&self, known: &[i32]) -> Vec<ProcInfo> {
        let Some(id) = self.scope.id() else {
            return Vec::new();
        };
        let scope = self.scope;
        let since = self.since;
        proc::user_processes_where(proc::my_uid(), |n| {
            scope.holds_node(n) && n.start_ticks >= since
        })
        .into_iter()
        // Read again in full: still in the scope (the stat could have changed since).
        .filter(|p| self.scope.holds(p) && p.start_ticks >= self.since)
        .filter(|p| !known.contains(&p.pid) && !self.callers.contains(&p.pid))
        // The leader itself is the main process, handled by the caller.
        .filter(|p| p.pid != id)
        .filter(|p| !proc::is_usrsvc(p.pid, &p.cmdline))
        .collect()
    }

    /// Pidfds on `found`, each proven after it was opened: still the same process (uid, start
    /// time), still in the scope, every uid the user's.
    pub fn open(&self, found: &[ProcInfo]) -> Vec<Pidfd> {
        found
            .iter()
            .filter_map(|p| {
                let fd = Pidfd::open_verified(p).ok().flatten()?;
                let now = proc::read_proc(p.pid)?;
                let ok = self.scope.holds(&now)
                    && now.start_ticks == p.start_ticks
                    && now.belongs_to(proc::my_uid());
                // Not exited after the reads: they were about the pidfd's process.
                (ok && !fd.has_exited()).then_some(fd)
            })
            .collect()
    }
}

/// How to stop: the first signal and how long to wait after it before SIGKILL.
#[derive(Debug, Clone, Copy)]
pub struct HowToStop {
    pub signal: Signal,
    pub grace: Duration,
}

/// What a stop did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stopped {
    pub ending: Ending,
    /// Processes reached besides the main one.
    pub members: usize,
}

/// How many SIGKILL rounds a stop makes at most: a member may fork between a scan and the
/// signal, and the next round catches the new one.
const KILL_ROUNDS: usize = 10;

/// Stops `main` (when it is still there) and every member of `members.scope`: the stop signal
/// to all of them, then SIGCONT (a stopped process could not act on the signal), then up to
/// `how.grace` for all of it to be gone — what the members start meanwhile included, and not
/// signalled, so a shutdown handler's own commands are left to finish — then SIGKILL rounds
/// until nothing is left. `grace` zero sends SIGKILL at once. A zombie counts as gone.
pub fn stop_all(main: Option<Pidfd>, members: &Members, how: HowToStop) -> Stopped {
    let mut fds: Vec<Pidfd> = main.into_iter().collect();
    let mut opened = members.open(&members.scan(&[]));
    let mut reached = opened.len();
    fds.append(&mut opened);
    if fds.is_empty() {
        return Stopped {
            ending: Ending::NoAction,
            members: 0,
        };
    }
    if !how.grace.is_zero() {
        for p in &fds {
            let _ = p.signal(how.signal);
        }
        for p in &fds {
            let _ = p.signal(Signal::CONT);
        }
        let deadline = Instant::now().checked_add(how.grace);
        loop {
            if !wait_all(&fds, deadline) {
                break;
            }
            // All that was known is gone: anything new in the scope?
            let new = members.open(&members.scan(&[]));
            if new.is_empty() {
                return Stopped {
                    ending: Ending::Terminated,
                    members: reached,
                };
            }
            reached += new.len();
            fds = new;
        }
    }
    let mut killed = false;
    let deadline = Instant::now().checked_add(AFTER_KILL);
    for round in 0..=KILL_ROUNDS {
        fds.retain(|p| !p.has_exited());
        let known: Vec<i32> = fds.iter().map(|p| p.pid).collect();
        let mut new = members.open(&members.scan(&known));
        reached += new.len();
        fds.append(&mut new);
        if fds.is_empty() {
            let ending = if killed {
                Ending::Killed
            } else {
                Ending::Terminated
            };
            return Stopped {
                ending,
                members: reached,
            };
        }
        if round == KILL_ROUNDS {
            break;
        }
        for p in &fds {
            killed |= p.signal(Signal::KILL).is_ok();
        }
        if !wait_all(&fds, deadline) {
            break;
        }
    }
    Stopped {
        ending: Ending::Stuck,
        members: reached,
    }
}

/// Waits until every one of `fds` has exited, or `deadline` (None: none). True if all did.
fn wait_all(fds: &[Pidfd], deadline: Option<Instant>) -> bool {
    fds.iter()
        .all(|p| p.wait_exit(deadline.map(|d| d.saturating_duration_since(Instant::now()))))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::process::CommandExt;

    fn info(pid: i32, pgrp: i32, session: i32) -> ProcInfo {
        ProcInfo {
            pid,
            uid: 0,
            uids: [0; 3],
            ppid: 1,
            pgrp,
            session,
            state: proc::ProcState::Sleeping,
            start_ticks: 0,
            rss_pages: 0,
            cmdline: Vec::new(),
        }
    }

    #[test]
    fn the_scope_is_the_session_a_group_or_nothing() {
        assert_eq!(Scope::of(&info(10, 10, 10)), Scope::Session(10));
        // Adopted, not a session leader: its group when it leads one.
        assert_eq!(Scope::of(&info(10, 10, 3)), Scope::Group(10));
        assert_eq!(Scope::of(&info(10, 4, 3)), Scope::Alone);
        assert!(Scope::Session(10).holds(&info(11, 11, 10)));
        assert!(!Scope::Session(10).holds(&info(11, 10, 12)));
        assert!(Scope::Group(10).holds(&info(11, 10, 12)));
        assert!(!Scope::Alone.holds(&info(10, 10, 10)));
    }

    /// A session leader with a child; both are stopped, and the count says one member.
    #[test]
    fn stop_all_reaches_the_session_and_waits_for_it() {
        let mut leader = std::process::Command::new("sh");
        leader.args(["-c", "sleep 30.75 & wait"]);
        // SAFETY: setsid is async-signal-safe.
        unsafe {
            leader.pre_exec(|| {
                nix::unistd::setsid().map_err(std::io::Error::from)?;
                Ok(())
            });
        }
        let mut child = leader.spawn().expect("spawn");
        let pid = child.id() as i32;
        let deadline = Instant::now() + Duration::from_secs(30);
        let m = loop {
            let m = Members::new(Scope::Session(pid), 0);
            if !m.scan(&[]).is_empty() || Instant::now() > deadline {
                break m;
            }
            std::thread::sleep(Duration::from_millis(5));
        };
        let kids = m.scan(&[]);
        assert_eq!(kids.len(), 1, "{kids:?}");
        let main_info = proc::read_proc(pid).expect("leader");
        let main = Pidfd::open_verified(&main_info).expect("pidfd");
        let how = HowToStop {
            signal: Signal::TERM,
            grace: Duration::from_secs(20),
        };
        let stopped = stop_all(main, &m, how);
        assert_eq!(stopped.ending, Ending::Terminated);
        assert_eq!(stopped.members, 1);
        assert!(proc::read_proc(kids[0].pid).is_none_or(|p| !p.is_alive()));
        let _ = child.wait();
        // Nothing left: nothing done.
        assert_eq!(stop_all(None, &m, how).ending, Ending::NoAction);
    }
}
