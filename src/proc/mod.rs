//! Reading processes: what `/proc` says about a pid (uid, start time, state, session, cmdline
//! with its argument boundaries), scans of the calling user's own processes, pidfiles, and the
//! matcher that decides whether a process is a given program.
//!
//! This module only reads (and writes pidfiles); it never starts or signals a process — that is
//! `control`'s job. Other users' processes are skipped before anything of theirs is read.

mod matcher;
mod pidfile;
mod procfs;

pub use matcher::Matcher;
pub use pidfile::{read_pidfile, remove_pidfile, write_atomic, write_pidfile, PidfileRead};
pub use procfs::{
    boot_time, clock_ticks_per_second, is_usrsvc, list_pids, may_signal, my_ancestors, my_uid,
    process_tree, read_proc, scan_user, user_processes_where, Node, ProcInfo, ProcState,
};
