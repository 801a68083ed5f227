//! One daemon per user: the instance lock, the daemon's pidfile, its log descriptors, its
//! readiness report, and finding the running daemon again for `usrsvcd stop|status|reread`.
//!
//! The lock is an `flock` on `usrsvcd.lock` in the private runtime directory, held for the
//! daemon's whole life and released by the kernel however it ends; the file holds the
//! holder's pid and start ticks, so the daemon is identified by lock + pid + start time + uid,
//! never by a substring of a cmdline (1.5.13, §6.9), and, on its second line, the main config
//! file the daemon runs, so `usrsvcd --config B stop` can refuse to act on a daemon of config
//! A. The `[Main] pidfile` is written for compatibility and removed at exit. `preflight`
//! checks what a new daemon needs without touching anything (for `usrsvcd restart`, before it
//! stops the running one). This module does not supervise anything.

use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::AsFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use nix::fcntl::{Flock, FlockArg};

use crate::config::{LogTarget, MainConfig};
use crate::control::runtime_dir;
use crate::exit::ReturnCode;
use crate::proc::{self, ProcInfo};

/// A failure to come up, with the exit code it maps to.
#[derive(Debug)]
pub struct StartError {
    pub code: ReturnCode,
    pub message: String,
}

impl StartError {
    pub fn new(code: ReturnCode, message: impl Into<String>) -> StartError {
        StartError {
            code,
            message: message.into(),
        }
    }
}

fn lock_path() -> Result<PathBuf, StartError> {
    runtime_dir()
        .map(|d| d.join("usrsvcd.lock"))
        .map_err(|e| StartError::new(ReturnCode::InsufficientPermissions, e.to_string()))
}

fn open_lock_file(path: &Path) -> std::io::Result<File> {
    crate::fsafe::open_lock(path, 0o600)
}

/// The running daemon's claim: dropping it releases the lock and removes the pidfile.
#[derive(Debug)]
pub struct Instance {
    _lock: Flock<File>,
    pidfile: PathBuf,
}

impl Instance {
    /// Takes the instance lock and writes both pid records, and the main config file the
    /// daemon runs into the lock. `Err` with ALREADY_RUNNING when another daemon holds the
    /// lock.
    pub fn claim(pidfile: &Path, config: &Path) -> Result<Instance, StartError> {
        let path = lock_path()?;
        let file = open_lock_file(&path).map_err(|e| {
            StartError::new(
                ReturnCode::InsufficientPermissions,
                format!("Cannot open the instance lock {}: {e}", path.display()),
            )
        })?;
        let lock = match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
            Ok(lock) => lock,
            Err(_) => {
                let who = running().map(|p| p.pid.to_string()).unwrap_or_default();
                return Err(StartError::new(
                    ReturnCode::UsrsvcdAlreadyRunning,
                    format!("usrsvcd is already running (pid {who})."),
                ));
            }
        };
        let me = proc::read_proc(std::process::id() as i32)
            .ok_or_else(|| StartError::new(ReturnCode::UnknownFailure, "cannot read /proc/self"))?;
        // Line 1 as before (older readers take its first two words); the rest is the path.
        let mut record = format!("{} {}\n", me.pid, me.start_ticks).into_bytes();
        record.extend_from_slice(config.as_os_str().as_encoded_bytes());
        record.push(b'\n');
        let written = lock.set_len(0).and_then(|()| (&*lock).write_all(&record));
        if let Err(e) = written {
            return Err(StartError::new(
                ReturnCode::InsufficientPermissions,
                format!("Cannot write the instance lock {}: {e}", path.display()),
            ));
        }
        if let Err(e) = proc::write_pidfile(pidfile, me.pid) {
            return Err(StartError::new(
                ReturnCode::InsufficientPermissions,
                format!("Failed to write PID file ( {} ): {e}", pidfile.display()),
            ));
        }
        Ok(Instance {
            _lock: lock,
            pidfile: pidfile.to_path_buf(),
        })
    }

    /// The pidfile the daemon holds.
    pub fn pidfile(&self) -> &Path {
        &self.pidfile
    }

    /// A reread moved the pidfile (the reread thread wrote `to`): the old one goes.
    pub fn pidfile_moved(&mut self, to: &Path) {
        if to == self.pidfile {
            return;
        }
        self.remove_pidfile();
        self.pidfile = to.to_path_buf();
    }

    /// Removes a pidfile a reread wrote and that is not applied after all.
    pub fn discard_pidfile(path: &Path) {
        if let proc::PidfileRead::Pid { pid, .. } = proc::read_pidfile(path) {
            if pid == std::process::id() as i32 {
                let _ = std::fs::remove_file(path);
            }
        }
    }

    fn remove_pidfile(&self) {
        // Only our own: a pidfile that names someone else is not ours to remove.
        Instance::discard_pidfile(&self.pidfile);
    }
}

impl Drop for Instance {
    fn drop(&mut self) {
        self.remove_pidfile();
    }
}

/// The running daemon of this user, proven by the held lock, the pid and start time it
/// recorded, and the uid. None when no daemon runs.
pub fn running() -> Option<ProcInfo> {
    running_with_config().map(|(p, _)| p)
}

/// `running()`, with the main config file the daemon runs (None from a daemon that did not
/// record it).
pub fn running_with_config() -> Option<(ProcInfo, Option<PathBuf>)> {
    let path = lock_path().ok()?;
    let mut file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW)
        .open(&path)
        .ok()?;
    // Whoever holds the lock is the daemon; if we can take it, nobody does.
    if Flock::lock(file.try_clone().ok()?, FlockArg::LockSharedNonblock).is_ok() {
        return None;
    }
    let mut bytes = Vec::new();
    file.read_to_end(&mut bytes).ok()?;
    let (first, rest) = match bytes.iter().position(|b| *b == b'\n') {
        Some(i) => (&bytes[..i], &bytes[i + 1..]),
        None => (&bytes[..], &[][..]),
    };
    let first = std::str::from_utf8(first).ok()?;
    let mut words = first.split_whitespace();
    let pid: i32 = words.next()?.parse().ok()?;
    let ticks: u64 = words.next()?.parse().ok()?;
    let info = proc::read_proc(pid)?;
    if !(info.belongs_to(proc::my_uid()) && info.start_ticks == ticks && info.is_alive()) {
        return None;
    }
    let config = rest.strip_suffix(b"\n").unwrap_or(rest);
    let config = (!config.is_empty()).then(|| {
        use std::os::unix::ffi::OsStrExt;
        PathBuf::from(std::ffi::OsStr::from_bytes(config))
    });
    Some((info, config))
}

/// Whether `a` and `b` name the same main config file: the same file once symlinks are
/// resolved, else (one of them does not exist) the same absolute path.
pub fn same_config(a: &Path, b: &Path) -> bool {
    match (std::fs::canonicalize(a), std::fs::canonicalize(b)) {
        (Ok(x), Ok(y)) => x == y,
        _ => std::path::absolute(a).ok() == std::path::absolute(b).ok(),
    }
}

/// What a new daemon of `main` needs and could not get, checked without creating or writing
/// anything (the running daemon's files stay as they are): its logs (or `default_log`) can be
/// appended to or created, and its pidfile written. The checks are `access(2)` with our real
/// uid, the uid the new daemon runs as, and, when the logs exist as regular files, the same
/// open for append the new daemon does.
pub fn preflight(main: &MainConfig, default_log: Option<&Path>) -> Result<(), StartError> {
    let mut logs: Vec<(&Path, &str)> = Vec::new();
    if let Some(p) = main.usrsvcd_stdout.as_deref().or(default_log) {
        logs.push((p, "usrsvcd_stdout"));
    }
    if let Some(LogTarget::Path(p)) = &main.usrsvcd_stderr {
        logs.push((p, "usrsvcd_stderr"));
    }
    // When every log is a regular file already, opening them for append (what the new daemon
    // does) changes nothing, and runs every check the open itself makes.
    let all_regular = logs
        .iter()
        .all(|(p, _)| std::fs::symlink_metadata(p).is_ok_and(|m| m.is_file()));
    for (path, which) in logs {
        writable(path, false).map_err(|e| {
            StartError::new(
                ReturnCode::InsufficientPermissions,
                format!(
                    "Cannot open {which} ( {} ) for writing: {e}",
                    path.display()
                ),
            )
        })?;
    }
    if all_regular {
        drop(open_log_files(main, default_log)?);
    }
    // The pidfile is replaced by a rename: its folder must be writable.
    writable(&main.pidfile, true).map_err(|e| {
        StartError::new(
            ReturnCode::InsufficientPermissions,
            format!(
                "Failed to write PID file ( {} ): {e}",
                main.pidfile.display()
            ),
        )
    })
}

/// Whether `path` can be appended to (it exists) or created (its folder is writable); with
/// `replace`, whether its folder is writable in any case.
fn writable(path: &Path, replace: bool) -> std::io::Result<()> {
    use nix::unistd::{access, AccessFlags};
    let folder = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    // The folder checks the new daemon's open will make (`fsafe`): not writable by others.
    crate::fsafe::check_folder(folder)?;
    let exists = std::fs::symlink_metadata(path).is_ok();
    if exists {
        access(path, AccessFlags::W_OK)?;
    }
    if replace || !exists {
        match std::fs::metadata(folder) {
            Ok(m) if !m.is_dir() => {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::NotADirectory,
                    format!("{} is not a folder", folder.display()),
                ))
            }
            Ok(_) => {}
            Err(e) => return Err(e),
        }
        access(folder, AccessFlags::W_OK | AccessFlags::X_OK)?;
    }
    Ok(())
}

/// Asks the running daemon, if any, to look again at the programs it does not see running
/// (SIGUSR2, through a pidfd opened on the verified daemon). Best effort: without it the
/// daemon notices at its next pidfile check.
pub fn nudge() {
    if let Some(p) = running() {
        if let Ok(Some(fd)) = crate::control::signal::Pidfd::open_verified(&p) {
            let _ = fd.signal(rustix::process::Signal::USR2);
        }
    }
}

/// Points fds 1 and 2 at `usrsvcd_stdout`/`usrsvcd_stderr` (opened for append), so output of
/// the daemon, its workers and a crash all land there. Called at start and on every reread,
/// which also serves log rotation. `default_log` is used for both when `usrsvcd_stdout` is
/// unset (a detached daemon must not write to the terminal it left).
pub fn open_logs(main: &MainConfig, default_log: Option<&Path>) -> Result<(), StartError> {
    open_log_files(main, default_log)?.install()
}

/// The daemon's log files, opened and not yet installed as fds 1 and 2: a reread opens them
/// in its own thread (an open can block), the loop installs them.
#[derive(Debug)]
pub struct Logs {
    out: Option<File>,
    err: Option<File>,
    err_follows_out: bool,
}

/// Opens the logs `open_logs` installs.
pub fn open_log_files(main: &MainConfig, default_log: Option<&Path>) -> Result<Logs, StartError> {
    // Through `fsafe`: a FIFO planted as the log fails here at once (at a reread too, which is
    // then rejected), and a symlink or a folder another user can write is refused.
    let open = |path: &Path, which: &str| {
        crate::fsafe::open_append(path, 0o644).map_err(|e| {
            StartError::new(
                ReturnCode::InsufficientPermissions,
                format!(
                    "Cannot open {which} ( {} ) for writing: {e}",
                    path.display()
                ),
            )
        })
    };
    let stdout_path = main.usrsvcd_stdout.as_deref().or(default_log);
    let out = match stdout_path {
        Some(p) => Some(open(p, "usrsvcd_stdout")?),
        None => None,
    };
    let err = match &main.usrsvcd_stderr {
        Some(LogTarget::Path(p)) => Some(open(p, "usrsvcd_stderr")?),
        _ => None,
    };
    // Errors go with stdout when asked (`stdout`), and — when usrsvcd_stderr is not set — in
    // a detached daemon (it must not write to the terminal it left) or with the default log.
    let detached = default_log.is_some();
    let err_follows_out = matches!(main.usrsvcd_stderr, Some(LogTarget::Stdout))
        || (main.usrsvcd_stderr.is_none() && (detached || main.usrsvcd_stdout.is_none()));
    Ok(Logs {
        out,
        err,
        err_follows_out,
    })
}

impl Logs {
    /// Points fds 1 and 2 at the files (a `dup2` each: never blocks).
    pub fn install(self) -> Result<(), StartError> {
        if let Some(f) = &self.out {
            redirect(f, 1)?;
            if self.err_follows_out {
                redirect(f, 2)?;
            }
        }
        if let Some(f) = &self.err {
            redirect(f, 2)?;
        }
        Ok(())
    }
}

fn redirect(file: &File, to: i32) -> Result<(), StartError> {
    use std::os::fd::AsRawFd;
    nix::unistd::dup2(file.as_raw_fd(), to)
        .map(drop)
        .map_err(|e| StartError::new(ReturnCode::InsufficientPermissions, e.to_string()))
}

/// The default log of a detached daemon without `usrsvcd_stdout`.
pub fn default_log() -> Option<PathBuf> {
    runtime_dir().ok().map(|d| d.join("usrsvcd.log"))
}

/// Tells whoever waits for the daemon to come up: `usrsvcd start` through the pipe it gave
/// as our stdin (`--ready-on-stdin`), and systemd through `$NOTIFY_SOCKET`.
pub struct Readiness {
    pipe: bool,
}

impl Readiness {
    pub fn new(pipe: bool) -> Readiness {
        Readiness { pipe }
    }

    /// Reports success or the reason we could not come up. After this, stdin is /dev/null.
    pub fn report(&mut self, outcome: Result<(), &StartError>) {
        if let Ok(()) = outcome {
            notify("READY=1\nSTATUS=supervising");
        }
        if !self.pipe {
            return;
        }
        self.pipe = false;
        let line = match outcome {
            Ok(()) => format!("READY {}\n", std::process::id()),
            Err(e) => format!("ERROR {} {}\n", e.code.code(), e.message.replace('\n', " ")),
        };
        let stdin = std::io::stdin();
        let _ = rustix::io::write(stdin.as_fd(), line.as_bytes());
        if let Ok(null) = File::open("/dev/null") {
            let _ = redirect(&null, 0);
        }
    }
}

static NOTIFY_SOCKET: std::sync::OnceLock<Option<std::ffi::OsString>> = std::sync::OnceLock::new();

/// Takes `$NOTIFY_SOCKET` out of the environment (programs inherit the daemon's environment
/// and must not talk to systemd on its behalf) and keeps it for `notify`. Call once, early,
/// while the daemon has one thread.
pub fn take_notify_socket() {
    let value = std::env::var_os("NOTIFY_SOCKET");
    std::env::remove_var("NOTIFY_SOCKET");
    let _ = NOTIFY_SOCKET.set(value);
}

/// One sd_notify message, if systemd asked for them. Failures are ignored: readiness
/// reporting must never stop the daemon.
pub fn notify(state: &str) {
    let Some(Some(path)) = NOTIFY_SOCKET.get() else {
        return;
    };
    let Ok(sock) = std::os::unix::net::UnixDatagram::unbound() else {
        return;
    };
    let bytes = path.as_encoded_bytes();
    let path = Path::new(path);
    if let Some(name) = bytes.strip_prefix(b"@") {
        use std::os::linux::net::SocketAddrExt;
        if let Ok(addr) = std::os::unix::net::SocketAddr::from_abstract_name(name) {
            let _ = sock.send_to_addr(state.as_bytes(), &addr);
        }
    } else {
        let _ = sock.send_to(state.as_bytes(), path);
    }
}

/// Drops this process's page-table entries for the code and constants of its executable
/// files (our binary, libc, the loader) once start-up is over. Start-up runs a lot of code the
/// loop never runs again (argument and config parsing, regex compilation, the first workers),
/// and the kernel maps file pages in 64 KiB clusters around each fault, so most of the binary
/// stays mapped and counted in the daemon's RSS, though it is clean, shared page cache. The
/// pages stay in the page cache; the loop maps back the few it uses (minor faults, no I/O).
///
/// Only private file mappings without write permission (`r-xp`, `r--p`) in which the kernel
/// reports not one private page — neither in memory (`Anonymous`) nor swapped out (`Swap`) —
/// are dropped: every page ever written in a private mapping (relocations, RELRO, text
/// relocations) is such a private page, so for the mappings that qualify `MADV_DONTNEED` can
/// only ever bring back the same bytes from the file. A read-only mapping cannot gain a
/// private page later (the loader relocates a library before it makes it read-only), so the
/// check cannot go stale before the call.
pub fn trim_startup_pages() {
    let Ok(smaps) = std::fs::read_to_string("/proc/self/smaps") else {
        return;
    };
    // (start, end, private pages seen so far, fields still to see)
    let mut current: Option<(usize, usize, bool, u8)> = None;
    let mut drop_ranges = Vec::new();
    for line in smaps.lines() {
        let mut f = line.split_whitespace();
        let Some(first) = f.next() else { continue };
        if let Some((a, b)) = first.split_once('-') {
            if let (Ok(start), Ok(end)) =
                (usize::from_str_radix(a, 16), usize::from_str_radix(b, 16))
            {
                let perms = f.next().unwrap_or("");
                let path = f.nth(3).unwrap_or("");
                let read_only_private = matches!(perms, "r-xp" | "r--p");
                current =
                    (read_only_private && path.starts_with('/')).then_some((start, end, false, 2));
                continue;
            }
        }
        if first == "Anonymous:" || first == "Swap:" {
            if let Some((start, end, private, left)) = current.as_mut() {
                *private |= f.next() != Some("0");
                *left -= 1;
                if *left == 0 {
                    if !*private {
                        drop_ranges.push((*start, *end));
                    }
                    current = None;
                }
            }
        }
    }
    for (start, end) in drop_ranges {
        // SAFETY: [start, end) is a whole private, non-writable file mapping in which the
        // kernel reports no private (copied-on-write) page, in memory or in swap.
        // MADV_DONTNEED on it only removes page-table entries: the next access maps the same,
        // unmodified file page again. The mapping itself stays, so no pointer into it dangles.
        unsafe {
            libc::madvise(start as *mut libc::c_void, end - start, libc::MADV_DONTNEED);
        }
    }
}
