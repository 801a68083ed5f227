//! Test harness: a temp HOME per test with its own runtime dir, configs written into it, the
//! real binaries run against it, and every process the test caused killed by pid on drop — even
//! when the test fails. Each test's commands carry a unique marker (`t.sleep(n)` gives a
//! `sleep` with a duration no other test uses) so the cleanup finds exactly its processes.
#![allow(
    dead_code,
    reason = "each test crate uses a different part of the harness"
)]

pub mod net;
pub mod smtp;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

pub mod daemon;

static COUNTER: AtomicU32 = AtomicU32::new(0);

pub struct Env {
    pub dir: tempfile::TempDir,
    pub home: PathBuf,
    /// Digits unique to this test, embedded in every command it configures.
    pub marker: String,
    extra_pids: std::cell::RefCell<Vec<i32>>,
}

pub struct Run {
    pub cmd: String,
    pub out: Output,
}

/// Asserts that a spawned command exited with `code`, showing its stderr otherwise.
#[track_caller]
pub fn expect_exit(child: std::process::Child, code: i32) -> Output {
    let out = child.wait_with_output().expect("wait");
    assert_eq!(
        out.status.code(),
        Some(code),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

impl Run {
    pub fn code(&self) -> i32 {
        self.out.status.code().unwrap_or(-1)
    }
    pub fn stdout(&self) -> String {
        String::from_utf8_lossy(&self.out.stdout).into_owned()
    }
    pub fn stderr(&self) -> String {
        String::from_utf8_lossy(&self.out.stderr).into_owned()
    }
    /// Asserts the exit code, printing the command and both streams when it differs.
    #[track_caller]
    pub fn expect_code(&self, code: i32) -> &Self {
        assert_eq!(
            self.code(),
            code,
            "command: {}\n--- stdout:\n{}\n--- stderr:\n{}",
            self.cmd,
            self.stdout(),
            self.stderr()
        );
        self
    }
    pub fn all(&self) -> String {
        format!("{}{}", self.stdout(), self.stderr())
    }
}

pub fn bin(name: &str) -> PathBuf {
    match name {
        "usrsvc" => PathBuf::from(env!("CARGO_BIN_EXE_usrsvc")),
        "usrsvcd" => PathBuf::from(env!("CARGO_BIN_EXE_usrsvcd")),
        // Anything else from PATH (`sh` to run usrsvc inside a shell).
        other => PathBuf::from(other),
    }
}

impl Env {
    pub fn new() -> Env {
        let dir = tempfile::Builder::new()
            .prefix("usrsvc-test-")
            .tempdir()
            .expect("tempdir");
        let home = dir.path().to_path_buf();
        for sub in ["logs", "pids", "run", "cfg"] {
            std::fs::create_dir_all(home.join(sub)).expect("mkdir");
        }
        let n = COUNTER.fetch_add(1, Ordering::SeqCst);
        let marker = format!("{}{:03}", process_marker(), n);
        Env {
            dir,
            home,
            marker,
            extra_pids: Default::default(),
        }
    }

    /// `sleep <unique>` — a long sleep whose argument only this test uses.
    pub fn sleep(&self, n: u32) -> String {
        format!("sleep {}{n}", self.marker)
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.home.join(rel)
    }

    /// Writes `$HOME/usrsvc.cfg`.
    pub fn config(&self, text: &str) {
        std::fs::write(self.home.join("usrsvc.cfg"), text).expect("write config");
    }

    /// A `[Program:NAME]` section with pidfile and logs under HOME, quick defaults
    /// (`success_seconds = 0.5`, `term_to_kill_seconds = 5`), plus `extra` lines, whose keys
    /// replace those defaults.
    pub fn program(&self, name: &str, command: &str, extra: &str) -> String {
        let h = self.home.display();
        let mut text = format!(
            "[Program:{name}]\ncommand = {command}\npidfile = {h}/pids/{name}.pid\nstdout = {h}/logs/{name}.out\nstderr = {h}/logs/{name}.err\n"
        );
        for (key, value) in [("success_seconds", "0.5"), ("term_to_kill_seconds", "5")] {
            let overridden = extra
                .lines()
                .any(|l| l.split('=').next().is_some_and(|k| k.trim() == key));
            if !overridden {
                text.push_str(&format!("{key} = {value}\n"));
            }
        }
        text.push_str(extra);
        text.push('\n');
        text
    }

    /// Writes a config of `[Main]` plus the given program sections.
    pub fn programs(&self, sections: &[String]) {
        self.config(&format!("[Main]\n\n{}", sections.join("\n")));
    }

    /// Writes an executable script into HOME and returns its path.
    pub fn script(&self, name: &str, body: &str) -> PathBuf {
        let p = self.home.join(name);
        std::fs::write(&p, body).expect("write script");
        let mut perm = std::fs::metadata(&p).expect("stat").permissions();
        std::os::unix::fs::PermissionsExt::set_mode(&mut perm, 0o755);
        std::fs::set_permissions(&p, perm).expect("chmod");
        p
    }

    pub fn command(&self, bin_name: &str, args: &[&str]) -> Command {
        let mut c = Command::new(bin(bin_name));
        c.args(args)
            .env("HOME", &self.home)
            .env("USRSVC_RUNTIME_DIR", self.home.join("run"))
            .env_remove("XDG_RUNTIME_DIR")
            .env_remove("USRSVC_CONFIG")
            .current_dir(&self.home);
        c
    }

    /// Starts `usrsvc ARGS` without waiting, output captured (for concurrent commands).
    pub fn spawn(&self, args: &[&str]) -> std::process::Child {
        self.piped(self.command("usrsvc", args))
    }

    /// Spawns `cmd` with its output captured.
    pub fn piped(&self, mut cmd: Command) -> std::process::Child {
        cmd.stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("spawn")
    }

    pub fn run(&self, args: &[&str]) -> Run {
        self.run_bin("usrsvc", args)
    }

    pub fn run_bin(&self, bin_name: &str, args: &[&str]) -> Run {
        let out = self.command(bin_name, args).output().expect("run binary");
        Run {
            cmd: format!("{bin_name} {}", args.join(" ")),
            out,
        }
    }

    /// The pid in a program's pidfile.
    pub fn pid_of(&self, name: &str) -> Option<i32> {
        std::fs::read_to_string(self.path(&format!("pids/{name}.pid")))
            .ok()?
            .trim()
            .parse()
            .ok()
    }

    /// Registers a pid to be killed at the end of the test.
    pub fn track(&self, pid: i32) {
        self.extra_pids.borrow_mut().push(pid);
    }

    /// Live processes whose cmdline contains this test's marker or HOME.
    pub fn my_processes(&self) -> Vec<i32> {
        let home = self.home.display().to_string();
        live_cmdlines()
            .into_iter()
            .filter(|(_, cmd)| has_marker(cmd, &self.marker) || cmd.contains(&home))
            .map(|(pid, _)| pid)
            .collect()
    }
}

/// Four digits no other live test process has (of this suite, or of another copy of it
/// running at the same time for the same user): claimed by binding the abstract unix socket
/// `usrsvc-test-marker-DIGITS`, which the kernel gives to one process at a time and frees when
/// it exits (no file is left anywhere). `pid % 2000` alone let two test processes share a
/// marker, and each one's cleanup kill the other's commands. Four digits plus the counter
/// keep `sleep MARKERnn` within a 32-bit integer (perl's `sleep` takes no more).
fn process_marker() -> u32 {
    use std::os::linux::net::SocketAddrExt;
    static CLAIM: std::sync::OnceLock<(u32, Option<std::os::unix::net::UnixListener>)> =
        std::sync::OnceLock::new();
    CLAIM
        .get_or_init(|| {
            let start = std::process::id() % 9000;
            for i in 0..9000 {
                let digits = 1000 + (start + i) % 9000;
                let name = format!("usrsvc-test-marker-{digits}");
                let Ok(addr) = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes())
                else {
                    break;
                };
                if let Ok(l) = std::os::unix::net::UnixListener::bind_addr(&addr) {
                    return (digits, Some(l));
                }
            }
            (1000 + start, None)
        })
        .0
}

/// Whether `cmd` carries `marker` as the start of a number (`sleep 1234005`, `xdg1234005`),
/// not inside another number: `sleep 11234005` is another marker's `t.sleep(5)`.
fn has_marker(cmd: &str, marker: &str) -> bool {
    cmd.match_indices(marker)
        .any(|(i, _)| i == 0 || !cmd.as_bytes()[i - 1].is_ascii_digit())
}

/// Every live process but this one, with its cmdline joined by spaces.
fn live_cmdlines() -> Vec<(i32, String)> {
    let me = std::process::id() as i32;
    std::fs::read_dir("/proc")
        .expect("/proc")
        .flatten()
        .filter_map(|entry| entry.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| *pid != me && alive(*pid))
        .filter_map(|pid| {
            let raw = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
            Some((pid, String::from_utf8_lossy(&raw).replace('\0', " ")))
        })
        .collect()
}

impl Drop for Env {
    fn drop(&mut self) {
        let kill = |pid: i32| {
            // SAFETY-free: the harness kills only processes it identified as this test's.
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            );
        };
        // Daemons and their start workers first: left alive, they would start the programs
        // killed after them again. Workers do not name HOME in their cmdline; their
        // environment does.
        let runtime = format!("USRSVC_RUNTIME_DIR={}", self.home.join("run").display());
        for (pid, cmd) in live_cmdlines() {
            let environ = std::fs::read(format!("/proc/{pid}/environ")).unwrap_or_default();
            let ours = environ
                .split(|b| *b == 0)
                .any(|var| var == runtime.as_bytes());
            if cmd.contains("usrsvcd") && ours {
                kill(pid);
            }
        }
        let mut pids = self.my_processes();
        pids.extend(self.extra_pids.borrow().iter().copied());
        for pid in pids {
            kill(pid);
        }
    }
}

/// Alive = exists and not a zombie (PID 1 here reaps orphans lazily).
pub fn alive(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(s) => match s.rfind(')') {
            Some(i) => !matches!(
                s[i + 1..].trim_start().chars().next(),
                Some('Z') | Some('X')
            ),
            None => false,
        },
        Err(_) => false,
    }
}

/// A field of `/proc/PID/status`.
pub fn status_field(pid: i32, key: &str) -> Option<String> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("{key}:")))
        .map(|v| v.trim().to_owned())
}

/// Field N (1-based, as in proc(5)) of `/proc/PID/stat`.
pub fn stat_field(pid: i32, n: usize) -> Option<String> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &s[s.rfind(')')? + 1..];
    rest.split_whitespace().nth(n - 3).map(str::to_owned)
}

/// Waits up to `limit` for `cond`, checking every 20 ms.
pub fn wait_for(limit: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + limit;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() > end {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Live processes whose whole cmdline (joined by spaces) is `pattern`.
pub fn pids_matching(pattern: &str) -> Vec<i32> {
    live_cmdlines()
        .into_iter()
        .filter(|(_, cmd)| cmd.trim_end() == pattern)
        .map(|(pid, _)| pid)
        .collect()
}

pub fn read(p: &Path) -> String {
    std::fs::read_to_string(p).unwrap_or_default()
}
