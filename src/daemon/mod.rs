//! `usrsvcd`: the optional daemon. It keeps programs running (autostart, autorestart with
//! back-off, monitors), rereads its config live, and sends alerts; it is never the parent
//! programs depend on — it can crash, be stopped or upgraded, and every program keeps running
//! and is adopted again by the next daemon.
//!
//! `instance` owns "one daemon per user" (lock, pidfile, logs, readiness); `supervise` the
//! event loop; `reread` the reread, prepared in a thread of its own; `policy` the pure restart
//! rules; `monitor` the observations behind
//! `[[Monitoring]]`; `log` the log lines. Starting and signalling programs stays in `control`:
//! the daemon runs each start or restart in a worker process (`usrsvcd --worker`).

pub mod instance;
pub mod log;
pub mod monitor;
pub mod planned;
pub mod policy;
pub mod reread;
pub mod state;
pub mod supervise;

pub use log::{Format, Log};
