//! The only code that creates program processes. A program starts detached from whoever ran
//! usrsvc: in a new session of its own, with default signal dispositions and an empty signal
//! mask (1.5.13's programs inherited SIGTERM and SIGINT ignored), stdin `/dev/null`, stdout and
//! stderr appended to its log files, and no file descriptor but 0–2 (1.5.13 leaked every
//! inheritable fd of the caller). Its environment is built here from scratch, so nothing one
//! program sets reaches another.

use std::fs::File;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

use crate::config::ProgramConfig;

/// The argv the program is executed with: the shlex-split command, or `/bin/sh -c command`.
pub fn program_argv(prog: &ProgramConfig) -> Vec<String> {
    if prog.useshell {
        vec!["/bin/sh".into(), "-c".into(), prog.command.clone()]
    } else {
        prog.argv.clone()
    }
}

/// The program's environment: ours when `inherit_env`, then its `[[Env]]` on top.
pub fn program_env(prog: &ProgramConfig) -> Vec<(String, String)> {
    build_env(prog.inherit_env, &prog.env)
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
/// back to `/bin:/usr/bin` when the program's environment had no PATH).
fn resolve_exe(exe: &str, env: &[(String, String)]) -> std::io::Result<PathBuf> {
    if exe.contains('/') {
        return Ok(PathBuf::from(exe));
    }
    let path = env
        .iter()
        .find(|(k, _)| k == "PATH")
        .map(|(_, v)| v.as_str())
        .unwrap_or("/bin:/usr/bin");
    std::env::split_paths(path)
        .map(|dir| dir.join(exe))
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

/// Starts the program. Returns once the new process has called `exec` (std reports an exec
/// failure, e.g. ENOENT, as the error).
pub fn spawn_program(prog: &ProgramConfig, stdout: File, stderr: File) -> std::io::Result<Child> {
    let argv = program_argv(prog);
    let (exe, args) = argv
        .split_first()
        .ok_or_else(|| std::io::Error::other("empty command"))?;
    let env = program_env(prog);
    let mut cmd = Command::new(resolve_exe(exe, &env)?);
    cmd.arg0(exe)
        .args(args)
        .env_clear()
        .envs(env)
        .stdin(Stdio::null())
        .stdout(stdout)
        .stderr(stderr);
    detach(&mut cmd);
    cmd.spawn()
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
