//! The "stopped by the operator" state shared by `usrsvc` and `usrsvcd`: `usrsvc stop NAME`
//! leaves a marker file in the private runtime directory, `usrsvc start|restart NAME` removes
//! it, and the daemon never starts a program while its marker exists (1.5.13 restarted it a
//! second after the stop, §11.14). A file, so the state outlives any daemon and needs no
//! daemon to be set. This module only reads and writes markers; it decides nothing.

use std::path::PathBuf;

use super::lock::{runtime_dir, state_file_name};

fn marker(name: &str) -> Option<PathBuf> {
    Some(runtime_dir().ok()?.join(state_file_name("stopped.", name)))
}

/// Records that the operator stopped `name`. Errors are returned: a stop the daemon would
/// undo must say so.
pub fn mark_stopped(name: &str) -> std::io::Result<()> {
    let path = marker(name).ok_or_else(|| std::io::Error::other("no runtime directory"))?;
    crate::proc::write_atomic(&path, b"stopped by usrsvc stop\n")
}

/// Forgets the operator's stop of `name` (a missing marker is fine).
pub fn clear_stopped(name: &str) -> std::io::Result<()> {
    match marker(name).map(std::fs::remove_file) {
        Some(Err(e)) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

/// Whether the operator stopped `name` and has not started it since.
pub fn is_stopped(name: &str) -> bool {
    marker(name).is_some_and(|p| p.exists())
}

/// `[Main] kill_switch_file`, when it is set and the file exists: then no planned, monitor or
/// health restart happens, and `usrsvc` acts only with `--force`. Whatever the file holds is
/// ignored: its existence is the switch, so `touch` is all an operator in a hurry needs.
pub fn kill_switch(config: &crate::config::Config) -> Option<&std::path::Path> {
    let path = config.main.kill_switch_file.as_deref()?;
    // symlink_metadata: a dangling symlink is still a switch someone put there.
    std::fs::symlink_metadata(path).is_ok().then_some(path)
}
