//! `usrsvcd`: the optional daemon. It keeps programs running (autostart, autorestart with
//! back-off, monitors), rereads its config live, and sends alerts; it is never the parent
//! programs depend on — it can crash, be stopped or upgraded, and every program keeps running
//! and is adopted again by the next daemon.
//!
//! `instance` owns "one daemon per user" (lock, pidfile, logs, readiness); `supervise` the
//! event loop (poll, timers, dispatch); `program` a program's state and its pure transitions;
//! `lifecycle` carries them out (look, watch, exit, down, start); `workers` the worker
//! processes and what the daemon reaps; `checks` monitors and health checks seen from the
//! loop; `groups` groups and planned restarts; `reread` the reread (prepared in a thread of its
//! own, applied by the loop); `snapshot` what the loop publishes into `state` (the one model
//! that the API, `usrsvcd status` and `usrsvc status` read); `policy` the pure restart rules;
//! `monitor` the observations behind `[[Monitoring]]`; `signals` the self-pipe; `log` the log
//! lines. Starting and signalling programs stays in `control`: the daemon runs each start or
//! restart in a worker process (`usrsvcd --worker`).

mod audit_tail;
mod checks;
mod groups;
pub mod handle;
pub mod instance;
mod lifecycle;
pub mod log;
pub mod monitor;
pub mod planned;
pub mod policy;
mod program;
pub mod reread;
mod signals;
mod snapshot;
pub mod state;
pub mod supervise;
mod workers;

pub use log::{Format, Log};
