//! usrsvc: a user-level process supervisor that keeps no parent/child bond with its programs.
//!
//! Theory of operation. A program is started detached (its own session, default signal
//! dispositions, fds 0–2 only) and afterwards exists on its own: it is found again through its
//! pidfile, proven by uid + start time + cmdline, or by a scan of the user's processes for its
//! command (`proctitle_re`), so processes started some other way are adopted too. Nothing
//! depends on usrsvc or usrsvcd staying alive.
//!
//! Layers: `config` turns configobj files into a typed `Config` (no I/O but `load`); `proc`
//! reads `/proc` and pidfiles; `control` is the only code that starts or signals processes;
//! `cli` maps arguments and outcomes to the compatible command line; `exit` owns exit codes;
//! `fsafe` opens every file usrsvc writes (no symlink, FIFO or other user's folder);
//! `alert` builds, rate-limits and delivers e-mail alerts off the supervision path; `audit`
//! appends one JSON line per action to the audit trail (and syslog) and reads it back;
//! `health` runs programs' health checks (their own processes, never the program's) and
//! reports verdicts; `schedule` is the pure arithmetic of planned restarts (times, windows,
//! jitter, across DST).

pub mod alert;
pub mod api;
pub mod audit;
pub mod cli;
pub mod config;
pub mod control;
pub mod daemon;
pub mod exit;
pub mod fsafe;
pub mod health;
pub mod proc;
pub mod schedule;
