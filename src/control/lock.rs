//! Per-user, per-program locks that serialize start/stop/restart across concurrent `usrsvc`
//! invocations (and, later, `usrsvcd`).
//!
//! A lock is an `flock` on a file in the user's private runtime directory (mode 0700, owned by
//! the user): no lease to expire, released by the kernel when the holder exits however it exits,
//! and no name shared with other users (1.5.13 used `/tmp/.lock_usrsvc<name>` for everyone).

use std::fs::File;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::Duration;

use nix::fcntl::{Flock, FlockArg};

#[derive(Debug, thiserror::Error)]
pub enum LockError {
    #[error("cannot use runtime directory {path}: {reason}")]
    RuntimeDir { path: PathBuf, reason: String },
    #[error("cannot open lock file {path}: {source}")]
    Open {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("timed out waiting for the lock")]
    Timeout,
}

/// The private directory for locks and start-time records: `/tmp/usrsvc-<uid>`, or
/// `$USRSVC_RUNTIME_DIR` when that is set (for tests and containers; every invocation must then
/// see the same value). It depends on nothing else in the environment on purpose: a login
/// shell, cron, `su` and a systemd unit all set `XDG_RUNTIME_DIR` differently or not at all,
/// and a lock that two invocations find in different places locks nothing.
///
/// Created 0700; refused unless it is a real directory owned by the user and closed to others
/// (a directory planted by another user must not be trusted).
pub fn runtime_dir() -> Result<PathBuf, LockError> {
    let uid = crate::proc::my_uid();
    let dir = match std::env::var_os("USRSVC_RUNTIME_DIR").filter(|v| !v.is_empty()) {
        Some(dir) => PathBuf::from(dir),
        None => PathBuf::from(format!("/tmp/usrsvc-{uid}")),
    };
    let fail = |reason: String| LockError::RuntimeDir {
        path: dir.clone(),
        reason,
    };
    match std::fs::DirBuilder::new().mode(0o700).create(&dir) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(fail(e.to_string())),
    }
    let meta = std::fs::symlink_metadata(&dir).map_err(|e| fail(e.to_string()))?;
    if !meta.file_type().is_dir() {
        return Err(fail("not a directory".into()));
    }
    if meta.uid() != uid {
        return Err(fail(format!("owned by uid {}, not {uid}", meta.uid())));
    }
    if meta.permissions().mode() & 0o077 != 0 {
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700))
            .map_err(|e| fail(e.to_string()))?;
    }
    Ok(dir)
}

/// A file name for any program name: `/`, `%` and a leading `.` are percent-encoded, so every
/// configobj-legal name (spaces, slashes) has its own lock.
fn lock_file_name(name: &str) -> String {
    state_file_name("lock.", name)
}

/// `prefix` + the program name made safe as one file name.
pub(crate) fn state_file_name(prefix: &str, name: &str) -> String {
    let mut out = String::from(prefix);
    for (i, c) in name.chars().enumerate() {
        match c {
            '/' | '%' | '\0' => out.push_str(&format!("%{:02X}", c as u32)),
            '.' if i == 0 => out.push_str("%2E"),
            c => out.push(c),
        }
    }
    out
}

/// A held program lock; dropping it releases it.
#[derive(Debug)]
pub struct ProgramLock {
    _flock: Flock<File>,
}

fn open_lock(dir: &Path, name: &str) -> Result<File, LockError> {
    let path = dir.join(lock_file_name(name));
    std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .read(true)
        .write(true)
        .open(&path)
        .map_err(|source| LockError::Open { path, source })
}

impl ProgramLock {
    /// Takes the lock without waiting: None when someone else holds it.
    pub fn try_acquire(name: &str) -> Result<Option<ProgramLock>, LockError> {
        let file = open_lock(&runtime_dir()?, name)?;
        match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
            Ok(flock) => Ok(Some(ProgramLock { _flock: flock })),
            Err(_) => Ok(None),
        }
    }

    /// Waits up to `timeout` for the lock. The wait is a blocking `flock` in a helper thread,
    /// so a contended lock costs no polling; on timeout that thread is abandoned (the caller is
    /// about to exit with TRY_AGAIN).
    pub fn acquire(name: &str, timeout: Duration) -> Result<ProgramLock, LockError> {
        let file = open_lock(&runtime_dir()?, name)?;
        let file = match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
            Ok(flock) => return Ok(ProgramLock { _flock: flock }),
            Err((file, _)) => file,
        };
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let _ = tx.send(Flock::lock(file, FlockArg::LockExclusive));
        });
        match rx.recv_timeout(timeout) {
            Ok(Ok(flock)) => Ok(ProgramLock { _flock: flock }),
            Ok(Err(_)) | Err(_) => Err(LockError::Timeout),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_encoded_to_one_file_each() {
        assert_eq!(lock_file_name("web"), "lock.web");
        assert_eq!(lock_file_name("a/b"), "lock.a%2Fb");
        assert_eq!(lock_file_name(".."), "lock.%2E.");
        assert_eq!(lock_file_name("my prog"), "lock.my prog");
    }
}
