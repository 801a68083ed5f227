//! The daemon's state as its readers see it: one immutable [`Snapshot`] of every program,
//! published by the loop after each wake-up that changed something, and a stream of
//! [`Event`]s (phase changes, restarts, health verdicts, audit records). The control socket,
//! `usrsvcd status`, `usrsvc status` (through the socket, or the state file it is also
//! written to) and later `/metrics` read only these.
//!
//! Must not: hold anything the loop waits for. Publishing swaps an `Arc` under a mutex held
//! for the swap only; events go to bounded per-subscriber queues with `try_send`, and a
//! subscriber that does not keep up is dropped (it sees its stream end and may reconnect),
//! never waited for.

use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};

/// How many events a subscriber may be behind before it is dropped.
pub const EVENT_QUEUE: usize = 4096;

/// Everything the daemon knows of its programs at one moment.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Snapshot {
    /// The daemon's pid.
    pub pid: u32,
    /// The main config file it runs.
    pub config_file: String,
    /// `[Main] kill_switch_file`, and whether it exists now.
    pub kill_switch_file: Option<String>,
    pub kill_switch_on: bool,
    pub reread_in_progress: bool,
    /// When this snapshot was made (RFC 3339, local, seconds).
    pub at: String,
    pub programs: Vec<ProgramState>,
    pub groups: Vec<GroupState>,
}

/// One program.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ProgramState {
    pub name: String,
    /// The groups it is a member of.
    pub groups: Vec<String>,
    pub enabled: bool,
    /// `unknown`, `running`, `stopped` (by the operator), `failed` (gave up), `down`
    /// (disabled, or not started automatically), `waiting` (back-off), `starting`,
    /// `restarting`.
    pub state: String,
    pub pid: Option<i32>,
    /// The running process's start time (RFC 3339, local, seconds) and uptime in seconds.
    pub started_at: Option<String>,
    pub uptime_seconds: Option<u64>,
    /// Why it is in this state, in words (`gave up after 3 consecutive failures`, …).
    pub detail: String,
    /// Consecutive failures, and restarts done by this daemon.
    pub failures: u32,
    pub restarts: u64,
    /// When the next automatic (re)start or pending restart is due (back-off).
    pub backoff_until: Option<String>,
    pub last_exit: Option<LastExit>,
    pub next_planned_restart: Option<String>,
    /// What holds the due planned restart back (window, kill switch, `min_ok`, …).
    pub planned_restart_held: Option<String>,
    pub health: Vec<HealthVerdict>,
}

/// How the last watched process of a program ended.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct LastExit {
    pub pid: i32,
    /// RFC 3339, local, seconds.
    pub at: String,
    /// `with status 3`, `killed by signal 9 (SIGKILL)`, `(exit status unknown: …)`.
    pub how: String,
    pub code: Option<i32>,
    pub signal: Option<i32>,
    /// What the daemon made of it: `crashed: …`, `stopped by the operator`, …
    pub why: String,
}

/// A health check's last verdict.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct HealthVerdict {
    pub check: String,
    /// `healthy`, `degraded`, `failing`.
    pub status: String,
    pub detail: String,
    pub at: String,
}

/// A group.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct GroupState {
    pub name: String,
    pub programs: Vec<String>,
    pub min_ok: u64,
    pub next_planned_restart: Option<String>,
    pub planned_restart_held: Option<String>,
    /// A group restart is under way.
    pub restarting: bool,
}

/// Something that happened, as it happened.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Event {
    /// A program went from one state (`ProgramState::state`) to another.
    Phase {
        at: String,
        program: String,
        from: String,
        to: String,
        pid: Option<i32>,
        detail: String,
    },
    /// The daemon began a restart (crash, monitor, health, schedule).
    Restart {
        at: String,
        program: String,
        trigger: String,
        why: String,
    },
    /// A health check's verdict.
    Health {
        at: String,
        program: String,
        check: String,
        status: String,
        detail: String,
    },
    /// A line of the audit trail (by the daemon, its workers, or `usrsvc`).
    Audit { record: crate::audit::Record },
    /// A change-making operation of the API is done.
    OpDone {
        id: u64,
        op: String,
        target: String,
        code: i32,
        result: String,
    },
    /// The config was reread (`ok`) or kept (`errors`).
    Reread {
        at: String,
        ok: bool,
        errors: Vec<String>,
    },
}

impl Event {
    /// The program an event is about, for filtering by what a caller may see.
    pub fn program(&self) -> Option<&str> {
        match self {
            Event::Phase { program, .. }
            | Event::Restart { program, .. }
            | Event::Health { program, .. } => Some(program),
            Event::Audit { record } => Some(&record.program),
            Event::OpDone { target, .. } => Some(target),
            Event::Reread { .. } => None,
        }
    }
}

/// The current snapshot, shared by the loop (writer) and every reader.
#[derive(Debug, Clone, Default)]
pub struct Shared {
    current: Arc<Mutex<Arc<Snapshot>>>,
    subscribers: Arc<Mutex<Vec<SyncSender<Arc<Event>>>>>,
    config: Arc<Mutex<Option<Arc<crate::config::Config>>>>,
}

impl Shared {
    pub fn new() -> Shared {
        Shared::default()
    }

    /// The latest snapshot (a cheap `Arc` clone).
    pub fn snapshot(&self) -> Arc<Snapshot> {
        match self.current.lock() {
            Ok(g) => Arc::clone(&g),
            Err(poisoned) => Arc::clone(&poisoned.into_inner()),
        }
    }

    /// Puts `snap` in force for every reader.
    pub fn publish(&self, snap: Snapshot) {
        let snap = Arc::new(snap);
        match self.current.lock() {
            Ok(mut g) => *g = snap,
            Err(poisoned) => *poisoned.into_inner() = snap,
        }
    }

    /// Sends `event` to every subscriber that keeps up; drops the others. Never blocks.
    pub fn emit(&self, event: Event) {
        let mut subs = match self.subscribers.lock() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        };
        if subs.is_empty() {
            return;
        }
        let event = Arc::new(event);
        subs.retain(|s| match s.try_send(Arc::clone(&event)) {
            Ok(()) => true,
            Err(TrySendError::Full(_)) | Err(TrySendError::Disconnected(_)) => false,
        });
    }

    /// A new stream of the events from now on.
    pub fn subscribe(&self) -> Receiver<Arc<Event>> {
        let (tx, rx) = sync_channel(EVENT_QUEUE);
        match self.subscribers.lock() {
            Ok(mut g) => g.push(tx),
            Err(poisoned) => poisoned.into_inner().push(tx),
        }
        rx
    }

    /// The config in force (`None` before the daemon has set it).
    pub fn config(&self) -> Option<Arc<crate::config::Config>> {
        match self.config.lock() {
            Ok(g) => g.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// Puts `config` in force for every reader.
    pub fn set_config(&self, config: crate::config::Config) {
        let config = Some(Arc::new(config));
        match self.config.lock() {
            Ok(mut g) => *g = config,
            Err(poisoned) => *poisoned.into_inner() = config,
        }
    }

    /// How many subscribers are connected (for tests and status).
    pub fn subscribers(&self) -> usize {
        self.subscribers.lock().map_or(0, |g| g.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn phase(n: u32) -> Event {
        Event::Phase {
            at: String::new(),
            program: format!("p{n}"),
            from: "running".into(),
            to: "waiting".into(),
            pid: None,
            detail: String::new(),
        }
    }

    #[test]
    fn a_subscriber_that_falls_behind_is_dropped_not_waited_for() {
        let shared = Shared::new();
        let slow = shared.subscribe();
        let fast = shared.subscribe();
        for n in 0..EVENT_QUEUE as u32 {
            shared.emit(phase(n));
            assert!(fast.try_recv().is_ok());
        }
        assert_eq!(shared.subscribers(), 2);
        shared.emit(phase(9999));
        assert_eq!(
            shared.subscribers(),
            1,
            "the full queue's subscriber is gone"
        );
        assert_eq!(fast.try_recv().ok().as_deref(), Some(&phase(9999)));
        // The slow one still reads what it was sent, then sees the end.
        assert_eq!(slow.iter().count(), EVENT_QUEUE);
    }

    #[test]
    fn readers_see_the_last_published_snapshot() {
        let shared = Shared::new();
        let before = shared.snapshot();
        shared.publish(Snapshot {
            pid: 7,
            ..Snapshot::default()
        });
        assert_eq!(before.pid, 0);
        assert_eq!(shared.snapshot().pid, 7);
    }
}
