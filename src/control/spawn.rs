//! The only code that creates program processes. A program starts detached from whoever ran
//! usrsvc: in a new session of its own, with default signal dispositions and an empty signal
//! mask (1.5.13's programs inherited SIGTERM and SIGINT ignored), stdin `/dev/null`, stdout and
//! stderr appended to its log files, and no file descriptor but 0–2 (1.5.13 leaked every
//! inheritable fd of the caller). Its environment is built here from scratch, so nothing one
//! program sets reaches another.
//!
//! New in 2.0, the exec environment (`config::exec`): the working directory (`directory`,
//! default the user's home from the passwd database, whoever starts the program), `umask`,
//! `nice`, `[[Limits]]` and `env_file`. Everything the child needs is prepared before the fork
//! (paths as C strings, limits as `rlimit`s); between fork and exec only raw syscalls run, and
//! a step that fails writes its number and errno into a close-on-exec pipe, so the start can
//! say which setting could not be applied.

use std::ffi::CString;
use std::fs::File;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use crate::config::{ExecConfig, Limit, LimitValue, ProgramConfig, Resource};
use crate::control::envfile;

/// The argv the program is executed with: the shlex-split command, or `/bin/sh -c command`.
pub fn program_argv(prog: &ProgramConfig) -> Vec<String> {
    if prog.useshell {
        vec!["/bin/sh".into(), "-c".into(), prog.command.clone()]
    } else {
        prog.argv.clone()
    }
}

/// An environment built from scratch: ours when `inherit`, then `vars` on top (a later key
/// replaces an earlier one). Shared with health checks, which see what their program sees.
pub fn build_env(inherit: bool, vars: &[(String, String)]) -> Vec<(String, String)> {
    let mut env: Vec<(String, String)> = if inherit {
        std::env::vars_os()
            .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)))
            .collect()
    } else {
        Vec::new()
    };
    for (k, v) in vars {
        env.retain(|(ek, _)| ek != k);
        env.push((k.clone(), v.clone()));
    }
    env
}

/// The kernel's `struct sigaction` (x86_64 and aarch64 both have `sa_restorer`), for
/// `rt_sigaction` without glibc's filtering.
#[repr(C)]
struct KernelSigaction {
    handler: libc::sighandler_t,
    flags: libc::c_ulong,
    restorer: usize,
    mask: u64,
}

/// Finds a bare command name on the PATH the program will have (1.5.13, through Python, fell
/// back to `/bin:/usr/bin` when the program's environment had no PATH). Relative paths are
/// relative to the program's working directory `dir`: a command path such as `./run.sh` is
/// executed as written after the child's `chdir` (so a script's cmdline still shows
/// `./run.sh`, which the matcher knows), and relative PATH entries are looked up from `dir`.
fn resolve_exe(exe: &str, env: &[(String, String)], dir: &Path) -> std::io::Result<PathBuf> {
    if exe.contains('/') {
        return Ok(PathBuf::from(exe));
    }
    let path = env
        .iter()
        .find(|(k, _)| k == "PATH")
        .map(|(_, v)| v.as_str())
        .unwrap_or("/bin:/usr/bin");
    std::env::split_paths(path)
        .map(|entry| dir.join(entry).join(exe))
        .find(|cand| {
            std::fs::metadata(cand)
                .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
        .ok_or_else(|| {
            std::io::Error::new(
                std::io::ErrorKind::NotFound,
                format!("No such file or directory: {exe:?} (searched PATH={path})"),
            )
        })
}

/// Why a program could not be started.
#[derive(Debug)]
pub enum SpawnError {
    /// The command could not be executed (not found, not executable, no fork).
    Exec(std::io::Error),
    /// A setting of the exec environment could not be applied (`env_file`, `directory`,
    /// `nice`, a limit): the message says which, and why.
    Setup(String),
}

/// Starts the program. Returns once the new process has called `exec`; a failure before
/// (std reports the errno of a failed exec or pre-exec step) says which step failed.
pub fn spawn_program(
    prog: &ProgramConfig,
    stdout: File,
    stderr: File,
) -> Result<Child, SpawnError> {
    let argv = program_argv(prog);
    let (exe, args) = argv
        .split_first()
        .ok_or_else(|| SpawnError::Exec(std::io::Error::other("empty command")))?;
    let setup = ExecSetup::new(&prog.exec)?;
    let env = exec_env(prog, &setup.directory)?;
    let mut cmd = Command::new(resolve_exe(exe, &env, &setup.directory).map_err(SpawnError::Exec)?);
    cmd.arg0(exe)
        .args(args)
        .env_clear()
        .envs(env)
        .stdin(Stdio::null())
        .stdout(stdout)
        .stderr(stderr);
    detach(&mut cmd);
    let (failed_r, failed_w) = rustix::pipe::pipe_with(
        rustix::pipe::PipeFlags::CLOEXEC | rustix::pipe::PipeFlags::NONBLOCK,
    )
    .map_err(|e| SpawnError::Exec(e.into()))?;
    setup.clone().install(&mut cmd, failed_w.as_raw_fd());
    let spawned = cmd.spawn();
    // The pre-exec step names the pipe by number: `cmd` must not outlive it.
    drop(cmd);
    drop(failed_w);
    spawned.map_err(|e| match failed_step(&failed_r) {
        Some((step, errno)) => SpawnError::Setup(setup.describe(step, errno)),
        None => SpawnError::Exec(e),
    })
}

/// The program's environment: inherited (with a `PWD` that names its working directory, not
/// ours), then `[[Env]]`, then `env_file`, read now (a later setting wins, as systemd's
/// `Environment=` and `EnvironmentFile=`).
fn exec_env(prog: &ProgramConfig, dir: &Path) -> Result<Vec<(String, String)>, SpawnError> {
    let mut env = build_env(prog.inherit_env, &[]);
    if let Some(pwd) = env.iter_mut().find(|(k, _)| k == "PWD") {
        pwd.1 = dir.to_string_lossy().into_owned();
    }
    let mut vars = prog.env.clone();
    if let Some(path) = &prog.exec.env_file {
        vars.extend(envfile::read(path).map_err(SpawnError::Setup)?);
    }
    for (k, v) in vars {
        env.retain(|(ek, _)| *ek != k);
        env.push((k, v));
    }
    Ok(env)
}

/// What would make a start of `prog` fail in its exec environment today: a `directory` that
/// is not a folder, an `env_file` that cannot be read or has a bad line, a log in a folder
/// that `fsafe` refuses (others can write it). For `checkconfig`, which warns (a folder or file
/// may appear or be fixed before the program starts, so the config is valid).
pub fn check_exec(prog: &ProgramConfig) -> Vec<String> {
    let mut warnings = Vec::new();
    let mut logs = vec![("stdout", &prog.stdout)];
    if prog.stderr != prog.stdout {
        logs.push(("stderr", &prog.stderr));
    }
    for (key, path) in logs {
        // A missing folder is the config's own warning; here, one that exists but is unsafe.
        let Some(dir) = path.parent().filter(|d| d.is_dir()) else {
            continue;
        };
        if let Err(why) = crate::fsafe::check_folder(dir) {
            warnings.push(format!(
                "Program {}: {key} {}: {why}: its starts fail until that is fixed",
                prog.name,
                path.display()
            ));
        }
    }
    if let Some(dir) = prog.exec.directory.as_ref().filter(|d| !d.is_dir()) {
        warnings.push(format!(
            "Program {}: directory {} is not a folder (yet): its starts fail until it is",
            prog.name,
            dir.display()
        ));
    }
    if let Some(path) = &prog.exec.env_file {
        if let Err(why) = envfile::read(path) {
            warnings.push(format!(
                "Program {}: {why}: its starts fail until that is fixed",
                prog.name
            ));
        }
    }
    warnings
}

/// The default `directory`: the user's home from the passwd database (not `$HOME`, which a
/// login shell, cron, sudo and a unit set differently), so `usrsvc` and `usrsvcd` agree; `/`
/// when there is none.
fn default_directory() -> PathBuf {
    nix::unistd::User::from_uid(nix::unistd::getuid())
        .ok()
        .flatten()
        .map(|u| u.dir)
        .filter(|d| d.is_dir())
        .unwrap_or_else(|| PathBuf::from("/"))
}

/// Step numbers a failed pre-exec step reports; a limit reports its index.
const STEP_NICE: u32 = 1000;
const STEP_CHDIR: u32 = 1001;

/// What the child applies between fork and exec, prepared before the fork.
#[derive(Clone)]
struct ExecSetup {
    directory: PathBuf,
    directory_c: CString,
    /// Whether `directory` was configured (else it is the default).
    configured: bool,
    umask: Option<libc::mode_t>,
    nice: Option<i32>,
    limits: Vec<(Limit, libc::__rlimit_resource_t, libc::rlimit)>,
}

impl ExecSetup {
    fn new(exec: &ExecConfig) -> Result<ExecSetup, SpawnError> {
        let directory = exec.directory.clone().unwrap_or_else(default_directory);
        let directory_c = CString::new(directory.as_os_str().as_bytes()).map_err(|_| {
            SpawnError::Setup(format!(
                "Cannot change to directory {}: it contains a NUL byte",
                directory.display()
            ))
        })?;
        let bound = |v: LimitValue| match v {
            LimitValue::Unlimited => libc::RLIM_INFINITY,
            LimitValue::Finite(n) => n,
        };
        let limits = exec
            .limits
            .iter()
            .map(|l| {
                let resource = match l.resource {
                    Resource::Nofile => libc::RLIMIT_NOFILE,
                    Resource::Core => libc::RLIMIT_CORE,
                    Resource::Nproc => libc::RLIMIT_NPROC,
                    Resource::As => libc::RLIMIT_AS,
                };
                let rlim = libc::rlimit {
                    rlim_cur: bound(l.soft),
                    rlim_max: bound(l.hard),
                };
                (*l, resource, rlim)
            })
            .collect();
        Ok(ExecSetup {
            directory,
            directory_c,
            configured: exec.directory.is_some(),
            umask: exec.umask.map(|m| m as libc::mode_t),
            nice: exec.nice,
            limits,
        })
    }

    /// Applies the settings in the child. `failed` is the write end of the report pipe.
    fn install(self, cmd: &mut Command, failed: RawFd) {
        // SAFETY: the closure runs in the child between fork and exec, where only
        // async-signal-safe calls are allowed: it reads what was prepared before the fork
        // (no allocation, no lock) and makes raw syscalls only (setrlimit, setpriority,
        // umask, chdir, write). `failed` is open in the child: std forks while `cmd` and the
        // pipe's write end are alive, and it is close-on-exec.
        unsafe {
            cmd.pre_exec(move || {
                let fail = |step: u32| -> std::io::Error {
                    let err = std::io::Error::last_os_error();
                    let mut msg = [0u8; 8];
                    msg[..4].copy_from_slice(&step.to_ne_bytes());
                    msg[4..].copy_from_slice(&err.raw_os_error().unwrap_or(0).to_ne_bytes());
                    libc::write(failed, msg.as_ptr().cast(), msg.len());
                    err
                };
                for (i, (_, resource, rlim)) in self.limits.iter().enumerate() {
                    if libc::setrlimit(*resource, rlim) != 0 {
                        return Err(fail(i as u32));
                    }
                }
                if let Some(n) = self.nice {
                    if libc::setpriority(libc::PRIO_PROCESS, 0, n) != 0 {
                        return Err(fail(STEP_NICE));
                    }
                }
                if let Some(m) = self.umask {
                    libc::umask(m);
                }
                if libc::chdir(self.directory_c.as_ptr()) != 0 {
                    return Err(fail(STEP_CHDIR));
                }
                Ok(())
            });
        }
    }

    /// What a failed step means, for the start's error message.
    fn describe(&self, step: u32, errno: i32) -> String {
        let err = std::io::Error::from_raw_os_error(errno);
        let denied = matches!(errno, libc::EPERM | libc::EACCES);
        match step {
            STEP_CHDIR if self.configured => {
                format!(
                    "Cannot change to directory {} (directory): {err}",
                    self.directory.display()
                )
            }
            STEP_CHDIR => format!(
                "Cannot change to the user's home {} (the default of directory): {err}",
                self.directory.display()
            ),
            STEP_NICE => {
                let n = self.nice.unwrap_or_default();
                let hint = if denied {
                    "; a nice value below the current one needs privilege (CAP_SYS_NICE or RLIMIT_NICE)"
                } else {
                    ""
                };
                format!("Cannot set nice = {n}: {err}{hint}")
            }
            i => match self.limits.get(i as usize) {
                Some((limit, _, _)) => {
                    let hint = match (denied, limit.resource) {
                        (true, Resource::Nofile) => "; raising a hard limit needs privilege (CAP_SYS_RESOURCE), and nofile cannot exceed /proc/sys/fs/nr_open",
                        (true, _) => "; raising a hard limit needs privilege (CAP_SYS_RESOURCE)",
                        _ => "",
                    };
                    format!("Cannot set [[Limits]] {limit}: {err}{hint}")
                }
                None => format!("A step before exec failed: {err}"),
            },
        }
    }
}

/// The step and errno a failed pre-exec step reported, if one did.
fn failed_step(pipe: &OwnedFd) -> Option<(u32, i32)> {
    let mut msg = [0u8; 8];
    match rustix::io::read(pipe, &mut msg) {
        Ok(8) => {
            let step = u32::from_ne_bytes(msg[..4].try_into().ok()?);
            let errno = i32::from_ne_bytes(msg[4..].try_into().ok()?);
            Some((step, errno))
        }
        _ => None,
    }
}

/// Makes `cmd` start detached: its own session, every signal disposition at its default, an
/// empty signal mask, no fd above 2 inherited. Used for programs and for the daemon.
pub fn detach(cmd: &mut Command) {
    // SAFETY: the closure runs in the child between fork and exec, where only async-signal-safe
    // calls are allowed; it makes only raw syscalls (setsid, sigaction via signal,
    // sigprocmask, close_range/fcntl) and touches no heap or lock.
    unsafe {
        cmd.pre_exec(|| {
            if libc::setsid() == -1 {
                return Err(std::io::Error::last_os_error());
            }
            // rt_sigaction directly: glibc's signal() refuses the two real-time signals it
            // reserves (32, 33), and a caller may have left those ignored too.
            let dfl = KernelSigaction {
                handler: libc::SIG_DFL,
                flags: 0,
                restorer: 0,
                mask: 0,
            };
            for sig in 1..=64 {
                if sig != libc::SIGKILL && sig != libc::SIGSTOP {
                    libc::syscall(
                        libc::SYS_rt_sigaction,
                        sig,
                        &dfl as *const KernelSigaction,
                        std::ptr::null_mut::<KernelSigaction>(),
                        8usize,
                    );
                }
            }
            let mut empty: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut empty);
            libc::sigprocmask(libc::SIG_SETMASK, &empty, std::ptr::null_mut());
            // Mark every fd above 2 close-on-exec rather than closing it: std's own
            // exec-status pipe must stay open until exec.
            let rc = libc::syscall(
                libc::SYS_close_range,
                3u32,
                u32::MAX,
                libc::CLOSE_RANGE_CLOEXEC,
            );
            if rc != 0 {
                for fd in 3..4096 {
                    libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC);
                }
            }
            Ok(())
        });
    }
}

/// While alive, SIGINT, SIGTERM and SIGHUP are ignored by the calling process: a start, once
/// launched, runs to its end — success, or failure with its cleanup — instead of leaving a
/// program half-started without a pidfile when the terminal is closed or Ctrl-C is pressed.
/// (1.5.13 ignored SIGINT and SIGTERM for its whole run.) The program itself starts with
/// default dispositions all the same (`spawn_program` resets them).
pub struct InterruptsDeferred {
    saved: Vec<(nix::sys::signal::Signal, nix::sys::signal::SigAction)>,
}

impl InterruptsDeferred {
    pub fn new() -> Self {
        use nix::sys::signal::{sigaction, SaFlags, SigAction, SigHandler, SigSet, Signal};
        let ignore = SigAction::new(SigHandler::SigIgn, SaFlags::empty(), SigSet::empty());
        let saved = [Signal::SIGINT, Signal::SIGTERM, Signal::SIGHUP]
            .into_iter()
            .filter_map(|sig| {
                // SAFETY: installing SIG_IGN runs no handler code, so no async-signal-safety
                // question arises; the previous action is restored as it was on drop.
                unsafe { sigaction(sig, &ignore) }
                    .ok()
                    .map(|old| (sig, old))
            })
            .collect();
        InterruptsDeferred { saved }
    }
}

impl Drop for InterruptsDeferred {
    fn drop(&mut self) {
        for (sig, old) in &self.saved {
            // SAFETY: restores the action that was in place before `new`, unchanged.
            let _ = unsafe { nix::sys::signal::sigaction(*sig, old) };
        }
    }
}
