//! The daemon as the control API sees it: a cloneable handle on the loop's published state
//! (`state::Shared`), its wake-up socket and nudge flag, and a channel for rereads. It is the
//! only way in from another thread, and every call returns at once except `reread`, which
//! waits for the reread it asked for (in the caller's thread, never the loop's).
//!
//! Must not: touch anything the loop owns; it only sets flags, sends messages and wakes it.

use std::io::Write;
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::time::Duration;

use super::state::{Event, Shared, Snapshot};
use super::supervise::Daemon;
use crate::config::Config;

/// How long an API reread waits for its outcome (one reread may take a while behind a hung
/// one; `usrsvcd reread` waits as long).
const REREAD_WAIT: Duration = Duration::from_secs(35);

/// The outcome of a reread: applied, or the exit code and the errors.
pub type RereadAnswer = Result<(), (i32, Vec<String>)>;

/// A reread asked for through the API.
pub struct RereadAsk {
    pub force: bool,
    pub reply: mpsc::Sender<RereadAnswer>,
}

/// See the module documentation.
pub struct Handle {
    shared: Shared,
    wake: UnixStream,
    nudge: Arc<AtomicBool>,
    rereads: mpsc::Sender<RereadAsk>,
    /// The config when the handle was made (the shared one is always set; this only keeps
    /// `config` total).
    first: Arc<Config>,
}

impl Handle {
    fn wake(&self) {
        // A full socket means the loop has wake-ups pending anyway.
        let _ = (&self.wake).write(&[1]);
    }
}

impl crate::api::Backend for Handle {
    fn snapshot(&self) -> Arc<Snapshot> {
        self.shared.snapshot()
    }

    fn config(&self) -> Arc<Config> {
        self.shared
            .config()
            .unwrap_or_else(|| Arc::clone(&self.first))
    }

    fn subscribe(&self) -> mpsc::Receiver<Arc<Event>> {
        self.shared.subscribe()
    }

    fn emit(&self, event: Event) {
        self.shared.emit(event);
    }

    fn nudge(&self) {
        self.nudge.store(true, Ordering::SeqCst);
        self.wake();
    }

    fn reread(&self, force: bool) -> RereadAnswer {
        let (reply, answer) = mpsc::channel();
        if self.rereads.send(RereadAsk { force, reply }).is_err() {
            return Err((254, vec!["the daemon is shutting down".into()]));
        }
        self.wake();
        answer.recv_timeout(REREAD_WAIT).unwrap_or_else(|_| {
            Err((
                1,
                vec![
                    "usrsvcd did not finish the reread within 35 s (it may still be at it)".into(),
                ],
            ))
        })
    }
}

impl Daemon {
    /// A handle for the API (any number; each holds its own end of the wake-up socket).
    pub fn handle(&self) -> std::io::Result<Handle> {
        Ok(Handle {
            shared: self.shared.clone(),
            wake: self.signals.wake.try_clone()?,
            nudge: Arc::clone(&self.signals.nudge),
            rereads: self.reread_asks_tx.clone(),
            first: Arc::new(self.config.clone()),
        })
    }

    /// The config the daemon runs now.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Rereads asked for through the API: each waits for the next reread that begins.
    pub(super) fn api_rereads(&mut self) {
        let mut any = false;
        while let Ok(ask) = self.reread_asks.try_recv() {
            self.reread_force_next |= ask.force;
            self.reread_waiters.push((self.reread_seq + 1, ask.reply));
            any = true;
        }
        if any {
            self.ask_reread();
        }
    }
}
