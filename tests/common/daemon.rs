//! A `usrsvcd` under test: `Env::daemon()` runs `usrsvcd --foreground --debug --log-format
//! json` for the test's HOME with its output in a log file of its own, and the guard stops it
//! on drop (SIGTERM, then SIGKILL by pid) together with any start worker it left, before the
//! `Env` kills the programs — a daemon outliving the cleanup would start them again. Log
//! helpers parse every line as JSON, so each test also checks that the log is one object per
//! line.

use std::cell::Cell;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use serde_json::Value;

use super::{alive, live_cmdlines, stat_field, wait_for, Env};

/// How long anything the daemon does in a test may take, on a loaded 2-core machine.
pub const LONG: Duration = Duration::from_secs(30);

thread_local! {
    static DAEMONS: Cell<u32> = const { Cell::new(0) };
}

/// A running daemon; stopped (and killed if need be) on drop.
pub struct Daemon<'a> {
    pub env: &'a Env,
    /// Set when this test process is the daemon's parent (`--foreground`).
    child: Option<Child>,
    pub pid: i32,
    pub log: PathBuf,
    /// Seen gone: its pid may belong to someone else by now.
    gone: bool,
}

/// Every line of a JSON log, parsed; a line that is not one JSON object fails the test. A
/// last line without its newline is being written right now: it is left for the next read.
pub fn json_lines(path: &Path) -> Vec<Value> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let complete = text.rfind('\n').map_or("", |end| &text[..=end]);
    complete
        .lines()
        .map(|l| {
            serde_json::from_str::<Value>(l)
                .ok()
                .filter(Value::is_object)
                .unwrap_or_else(|| panic!("log line is not a JSON object: {l:?}\n{text}"))
        })
        .collect()
}

/// The `msg` of every line of a JSON log.
pub fn json_msgs(path: &Path) -> Vec<String> {
    json_lines(path)
        .iter()
        .map(|v| v["msg"].as_str().unwrap_or_default().to_owned())
        .collect()
}

/// Sends `sig` to `pid`; a process that is already gone is fine.
pub fn signal(pid: i32, sig: Signal) {
    let _ = kill(Pid::from_raw(pid), sig);
}

/// SIGKILL to `pid`, then waits until it is dead (a zombie counts as dead).
#[track_caller]
pub fn kill9(pid: i32) {
    signal(pid, Signal::SIGKILL);
    assert!(wait_for(LONG, || !alive(pid)), "pid {pid} survived SIGKILL");
}

impl Env {
    /// `usrsvcd --foreground --debug --log-format json`, waited for until it says it is up.
    pub fn daemon(&self) -> Daemon<'_> {
        self.daemon_with(&[])
    }

    /// `daemon()` with extra environment variables.
    pub fn daemon_with(&self, vars: &[(&str, &str)]) -> Daemon<'_> {
        let n = DAEMONS.with(|c| {
            let n = c.get() + 1;
            c.set(n);
            n
        });
        self.daemon_logging_to(self.home.join(format!("usrsvcd-{n}.log")), vars)
    }

    /// `daemon_with()` for a config whose `usrsvcd_stdout` is `log`: the guard reads that.
    pub fn daemon_logging_to(&self, log: PathBuf, vars: &[(&str, &str)]) -> Daemon<'_> {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .expect("daemon log");
        let config = self.home.join("usrsvc.cfg");
        let mut cmd = self.command(
            "usrsvcd",
            &[
                "--foreground",
                "--debug",
                "--log-format",
                "json",
                "--config",
                config.to_str().expect("utf-8 HOME"),
            ],
        );
        cmd.stdin(Stdio::null())
            .stdout(file.try_clone().expect("dup"))
            .stderr(file)
            .env_remove("NOTIFY_SOCKET")
            .env_remove("USRSVCD_WATCH");
        for (k, v) in vars {
            cmd.env(k, v);
        }
        let child = cmd.spawn().expect("spawn usrsvcd");
        let d = Daemon {
            env: self,
            pid: child.id() as i32,
            child: Some(child),
            log,
            gone: false,
        };
        d.expect_log("usrsvcd started as pid");
        d
    }

    /// Guards a daemon this test did not spawn (`usrsvcd start`), logging to `log`.
    pub fn attach_daemon(&self, pid: i32, log: PathBuf) -> Daemon<'_> {
        Daemon {
            env: self,
            child: None,
            pid,
            log,
            gone: false,
        }
    }

    /// The pid recorded in the instance lock (the running daemon, if any).
    pub fn daemon_pid(&self) -> Option<i32> {
        std::fs::read_to_string(self.path("run/usrsvcd.lock"))
            .ok()?
            .split_whitespace()
            .next()?
            .parse()
            .ok()
    }

    /// Waits until `name`'s pidfile names a live process other than `old`; returns it.
    #[track_caller]
    pub fn wait_new_pid(&self, name: &str, old: i32) -> i32 {
        let mut new = None;
        let ok = wait_for(LONG, || {
            new = self.pid_of(name).filter(|p| *p != old && alive(*p));
            new.is_some()
        });
        assert!(
            ok,
            "{name} was not restarted (pidfile: {:?})",
            self.pid_of(name)
        );
        new.expect("new pid")
    }

    /// Waits until `name` runs (pidfile names a live process); returns its pid.
    #[track_caller]
    pub fn wait_running(&self, name: &str) -> i32 {
        self.wait_new_pid(name, 0)
    }
}

impl Daemon<'_> {
    /// Every log line, parsed; a line that is not one JSON object fails the test.
    pub fn lines(&self) -> Vec<Value> {
        json_lines(&self.log)
    }

    /// The `msg` of every line.
    pub fn msgs(&self) -> Vec<String> {
        json_msgs(&self.log)
    }

    /// How many lines contain `text`.
    pub fn count(&self, text: &str) -> usize {
        self.msgs().iter().filter(|m| m.contains(text)).count()
    }

    /// The whole log, for failure messages.
    pub fn dump(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits until the log has at least `n` lines containing `text`.
    #[track_caller]
    pub fn expect_count(&self, text: &str, n: usize) {
        let ok = wait_for(LONG, || self.count(text) >= n);
        assert!(
            ok,
            "expected {n} log line(s) with {text:?}:\n{}",
            self.dump()
        );
    }

    /// Waits until a log line contains `text`; returns that line.
    #[track_caller]
    pub fn expect_log(&self, text: &str) -> Value {
        self.expect_count(text, 1);
        self.lines()
            .into_iter()
            .find(|v| v["msg"].as_str().is_some_and(|m| m.contains(text)))
            .expect("line")
    }

    /// Waits until the daemon watches `pid` for `name` (it has settled on that process).
    #[track_caller]
    pub fn expect_watching(&self, name: &str, pid: i32) {
        self.expect_log(&format!("({name}) - watching pid {pid}"));
    }

    pub fn signal(&self, sig: Signal) {
        signal(self.pid, sig);
    }

    pub fn is_alive(&mut self) -> bool {
        if self.gone {
            return false;
        }
        match &mut self.child {
            Some(c) => matches!(c.try_wait(), Ok(None)),
            None => alive(self.pid),
        }
    }

    /// Waits until the daemon process is gone; its exit code when it is our child.
    #[track_caller]
    pub fn wait_gone(&mut self, limit: Duration) -> Option<i32> {
        let end = Instant::now() + limit;
        loop {
            match &mut self.child {
                Some(c) => {
                    if let Ok(Some(status)) = c.try_wait() {
                        self.child = None;
                        self.gone = true;
                        return status.code();
                    }
                }
                None => {
                    if self.gone || !alive(self.pid) {
                        self.gone = true;
                        return None;
                    }
                }
            }
            assert!(
                Instant::now() < end,
                "usrsvcd {} still runs:\n{}",
                self.pid,
                self.dump()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGTERM, and the exit code once it is gone.
    #[track_caller]
    pub fn stop(&mut self) -> Option<i32> {
        self.signal(Signal::SIGTERM);
        self.wait_gone(LONG)
    }

    /// SIGKILL, waited for.
    #[track_caller]
    pub fn kill9(&mut self) {
        self.signal(Signal::SIGKILL);
        self.wait_gone(LONG);
    }

    /// The daemon's start workers still alive (children running `usrsvcd --worker`).
    fn workers(&self) -> Vec<i32> {
        let me = self.pid.to_string();
        live_cmdlines()
            .into_iter()
            .filter(|(pid, cmd)| {
                cmd.contains("--worker") && stat_field(*pid, 4).as_deref() == Some(me.as_str())
            })
            .map(|(pid, _)| pid)
            .collect()
    }
}

impl Drop for Daemon<'_> {
    fn drop(&mut self) {
        if !self.is_alive() {
            return;
        }
        let workers = self.workers();
        signal(self.pid, Signal::SIGTERM);
        let end = Instant::now() + Duration::from_secs(5);
        while self.is_alive() && Instant::now() < end {
            std::thread::sleep(Duration::from_millis(20));
        }
        if self.is_alive() {
            signal(self.pid, Signal::SIGKILL);
        }
        for w in workers.into_iter().chain(self.workers()) {
            signal(w, Signal::SIGKILL);
        }
        if let Some(c) = &mut self.child {
            let _ = c.wait();
        }
    }
}

/// `usrsvcd`'s own command: a sanity check that `pid` is a daemon and not some reused pid.
pub fn is_usrsvcd(pid: i32) -> bool {
    std::fs::read(format!("/proc/{pid}/cmdline"))
        .map(|c| String::from_utf8_lossy(&c).contains("usrsvcd"))
        .unwrap_or(false)
}
