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

/// The private directory for locks and start-time records:
/// `<home>/.local/state/usrsvc/<hostname>`, where home is the user's home directory from the
/// passwd database, or `$USRSVC_RUNTIME_DIR` when that is set (for tests and containers; every
/// invocation must then see the same value).
///
/// It depends on nothing the caller's environment may vary: a login shell, cron, `su` and a
/// systemd unit set `$HOME` and `$XDG_RUNTIME_DIR` differently or not at all, and a unit may
/// have a private `/tmp`; a lock that two invocations find in different places locks nothing.
/// Under the home no other user can create it first. The host name keeps hosts that share an
/// NFS home apart. Only when the home cannot hold it (no home, read-only) does it fall back to
/// `/tmp/usrsvc-<uid>`.
pub fn runtime_dir() -> Result<PathBuf, LockError> {
    let uid = crate::proc::my_uid();
    if let Some(dir) = std::env::var_os("USRSVC_RUNTIME_DIR").filter(|v| !v.is_empty()) {
        return private_dir(PathBuf::from(dir), uid);
    }
    let home = nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(uid))
        .ok()
        .flatten()
        .map(|u| u.dir);
    let host = nix::unistd::gethostname()
        .map(|h| h.to_string_lossy().replace('/', "_"))
        .unwrap_or_else(|_| "localhost".to_owned());
    if let Some(home) = home.filter(|h| h.is_dir()) {
        if let Ok(dir) = private_dir(home.join(".local/state/usrsvc").join(host), uid) {
            return Ok(dir);
        }
    }
    private_dir(PathBuf::from(format!("/tmp/usrsvc-{uid}")), uid)
}

/// Creates `dir` (and missing parents) 0700, or checks an existing one: a real directory,
/// owned by `uid`, not writable by others. An existing directory's mode is never changed.
fn private_dir(dir: PathBuf, uid: u32) -> Result<PathBuf, LockError> {
    let fail = |reason: String| LockError::RuntimeDir {
        path: dir.clone(),
        reason,
    };
    match std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&dir)
    {
        Ok(()) => {}
        Err(e) => return Err(fail(e.to_string())),
    }
    let meta = std::fs::symlink_metadata(&dir).map_err(|e| fail(e.to_string()))?;
    if !meta.file_type().is_dir() {
        return Err(fail("not a directory".into()));
    }
    if meta.uid() != uid {
        return Err(fail(format!("owned by uid {}, not {uid}", meta.uid())));
    }
    if meta.permissions().mode() & 0o022 != 0 {
        return Err(fail(format!(
            "writable by others (mode {:o})",
            meta.permissions().mode() & 0o7777
        )));
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
    crate::fsafe::open_lock(&path, 0o600).map_err(|source| LockError::Open { path, source })
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
    fn private_dir_is_created_0700_and_never_loosens_or_tightens_an_existing_one() {
        let base = tempfile::tempdir().expect("tempdir");
        let uid = crate::proc::my_uid();
        let new = private_dir(base.path().join("a/b"), uid).expect("created");
        let mode = std::fs::metadata(&new).expect("stat").permissions().mode() & 0o777;
        assert_eq!(mode & 0o077, 0, "mode {mode:o}");
        let shared = base.path().join("shared");
        std::fs::create_dir(&shared).expect("mkdir");
        std::fs::set_permissions(&shared, std::fs::Permissions::from_mode(0o1777)).expect("chmod");
        assert!(private_dir(shared.clone(), uid).is_err());
        let mode = std::fs::metadata(&shared)
            .expect("stat")
            .permissions()
            .mode()
            & 0o7777;
        assert_eq!(mode, 0o1777, "an existing directory keeps its mode");
        std::os::unix::fs::symlink(&new, base.path().join("link")).expect("symlink");
        assert!(
            private_dir(base.path().join("link"), uid).is_err(),
            "no symlinks"
        );
    }

    #[test]
    fn names_are_encoded_to_one_file_each() {
        assert_eq!(lock_file_name("web"), "lock.web");
        assert_eq!(lock_file_name("a/b"), "lock.a%2Fb");
        assert_eq!(lock_file_name(".."), "lock.%2E.");
        assert_eq!(lock_file_name("my prog"), "lock.my prog");
    }
}
