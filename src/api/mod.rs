//! The daemon's control API: a Unix socket in the private runtime directory (owner only), and
//! with delegation a second, shared socket (`[Main] shared_socket`). One JSON object per line
//! each way, versioned (`{"v":1,"op":...}`), decoded into [`protocol::Request`] — an explicit
//! list of operations, never dispatch by name or reflection.
//!
//! Owns: the wire format (`protocol`), the caller's identity from the kernel (`peer`:
//! `SO_PEERCRED` on the accepted fd as a typed value, groups from the group database), the
//! delegation rules (`rules`, pure), the listeners and connections (`server`: bounded request
//! size, per-connection deadlines, bounded connections) and the client side (`client`).
//!
//! Must not: run in the daemon's loop thread, hold anything the loop waits for, or run a
//! command a caller supplies. It reads the loop's published state ([`crate::daemon::state`]);
//! a change-making operation runs the daemon's worker (`usrsvcd --worker`) with the config's
//! own commands, in a thread of the API's, exactly as an operator's `usrsvc` would act.

pub mod client;
mod dispatch;
pub mod peer;
pub mod protocol;
pub mod rules;
pub mod server;

use std::sync::Arc;

use crate::config::Config;
use crate::daemon::state::{Event, Snapshot};

/// The socket's file name in the private runtime directory.
pub const SOCKET: &str = "usrsvcd.sock";

/// Who is calling, from the kernel (never from what the client sends).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    pub uid: u32,
    pub gid: u32,
    pub pid: i32,
    /// The passwd name of `uid` (the uid as text when it has none).
    pub user: String,
    /// The names of every group the user is in (primary and supplementary).
    pub groups: Vec<String>,
}

/// What the API needs of the daemon: its published state and config, its events, and a way
/// to ask for a reread or a fresh look. Implemented by the daemon; tests use a fake.
pub trait Backend: Send + Sync + 'static {
    /// The latest snapshot.
    fn snapshot(&self) -> Arc<Snapshot>;
    /// The config in force (replaced by each applied reread).
    fn config(&self) -> Arc<Config>;
    /// A stream of the events from now on; it ends if the reader falls behind.
    fn subscribe(&self) -> std::sync::mpsc::Receiver<Arc<Event>>;
    /// Publishes an event (the API's own: `op_done`).
    fn emit(&self, event: Event);
    /// Asks the loop to look at the programs that are not running now (as `usrsvc`'s nudge).
    fn nudge(&self);
    /// Asks the loop for a reread; the answer comes when it is applied or refused:
    /// `Ok(())`, or the exit code and the errors.
    fn reread(&self, force: bool) -> Result<(), (i32, Vec<String>)>;
}

#[cfg(test)]
pub(crate) mod testkit;
