//! A reread of the configuration, prepared off the loop's thread. The reread thread loads and
//! validates the config, decides whether it drops too many programs, builds the matchers,
//! opens the new logs and writes a moved pidfile; it sends the result back through a channel
//! and wakes the loop through its wake-up socket. The loop only applies a result that is
//! complete and valid (bounded work: compare programs, swap descriptors), so a slow config
//! (a huge file, a hung network filesystem, a FIFO as a log) never delays a crash restart.
//!
//! Also the files `usrsvcd reread` talks to the daemon through, in the private runtime
//! directory: the outcome of the last reread (`usrsvcd.reread`) and the one-shot `--force`
//! request (`usrsvcd.reread-force`). This module changes nothing the loop owns.

use std::collections::HashMap;
use std::io::Write;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::sync::mpsc;

use super::instance::Instance;
use super::instance::{self, Logs};
use super::lifecycle::first_check;
use super::lifecycle::timer_for;
use super::planned;
use super::program::{Phase, Prog};
use super::supervise::{Daemon, REREAD_STUCK};
use crate::alert::Alerts;
use crate::config::Config;
use crate::config::ProgramConfig;
use crate::control::Report;
use crate::exit::ReturnCode;
use crate::proc::ProcInfo;
use crate::proc::{self, Matcher};
use std::time::Instant;

const STATUS_FILE: &str = "usrsvcd.reread";
const FORCE_FILE: &str = "usrsvcd.reread-force";

/// Test hook, honoured only by debug builds: while the file this names exists, a reread
/// thread waits before it loads the config (a stand-in for a config that is slow to load).
pub const TEST_GATE_VAR: &str = "USRSVCD_TEST_REREAD_GATE";

/// What a reread needs to know of the running daemon.
pub struct Ask {
    pub seq: u64,
    pub config_path: PathBuf,
    pub default_log: Option<PathBuf>,
    /// The programs the daemon manages now.
    pub managed: Vec<String>,
    /// The pidfile the daemon holds now.
    pub pidfile: PathBuf,
    /// The drop rule is overridden (an API `reread` with `force`).
    pub force: bool,
}

/// A new config, checked and ready to be applied.
pub struct Prepared {
    pub config: Config,
    pub logs: Logs,
    /// A matcher (or why there is none) for every program of `config`.
    pub matchers: HashMap<String, Result<Matcher, String>>,
    /// The new pidfile was written (it differs from the one the daemon holds).
    pub pidfile_moved: bool,
    /// Why the drop rule was overridden, when it was (`--force`).
    pub forced: Option<String>,
}

pub enum Outcome {
    /// The config does not load: every error.
    Invalid(Vec<String>),
    /// Valid, but it would drop most programs and no `--force` was given.
    Refused(String),
    /// Valid, but a file it names cannot be written (log, pidfile).
    CannotApply(String),
    Ready(Box<Prepared>),
}

impl Outcome {
    /// The exit code `usrsvcd reread` reports for it.
    pub fn code(&self) -> ReturnCode {
        match self {
            Outcome::Invalid(_) => ReturnCode::InvalidConfig,
            Outcome::Refused(_) => ReturnCode::GeneralFailure,
            // As before: a config whose files cannot be written is rejected as a whole.
            Outcome::CannotApply(_) => ReturnCode::InvalidConfig,
            Outcome::Ready(_) => ReturnCode::Success,
        }
    }
}

/// Whether a reread that keeps `kept` of the `managed` programs the daemon runs must be
/// refused without `--force`: it keeps none of them (a config emptied or cut short), or it
/// drops more than half of them and at least two. Renaming a single program is no loss of
/// supervision; losing most of them at once is what an editor that truncated the file does.
pub fn drops_too_many(managed: usize, kept: usize, new_total: usize) -> bool {
    let dropped = managed.saturating_sub(kept);
    if managed == 0 || dropped == 0 {
        return false;
    }
    (new_total == 0) || (dropped >= 2 && dropped * 2 > managed)
}

/// Starts a reread thread; its outcome arrives on `done` (then a byte on `wake`).
pub fn spawn(
    ask: Ask,
    done: mpsc::Sender<(u64, Outcome)>,
    wake: UnixStream,
) -> std::io::Result<()> {
    std::thread::Builder::new()
        .name("usrsvcd-reread".into())
        .spawn(move || {
            let seq = ask.seq;
            let outcome = prepare(&ask);
            if done.send((seq, outcome)).is_ok() {
                let _ = (&wake).write_all(&[1]);
            }
        })
        .map(drop)
}

fn prepare(ask: &Ask) -> Outcome {
    test_gate();
    // Taken in any case: a `--force` file is for one reread.
    let force = take_force() | ask.force;
    let config = match crate::config::load(&ask.config_path, &crate::cli::home_dir()) {
        Ok(c) => c,
        Err(errors) => return Outcome::Invalid(errors.iter().map(|e| e.to_string()).collect()),
    };
    let kept = ask
        .managed
        .iter()
        .filter(|n| config.program(n).is_some())
        .count();
    let mut forced = None;
    if drops_too_many(ask.managed.len(), kept, config.programs.len()) {
        let mut dropped: Vec<&str> = ask
            .managed
            .iter()
            .filter(|n| config.program(n).is_none())
            .map(String::as_str)
            .collect();
        let more = dropped.len().saturating_sub(10);
        dropped.truncate(10);
        let msg = format!(
            "The new config would end the supervision of {} of the {} programs usrsvcd manages ({}{}); it has {} program(s). Refusing it (was the file cut short?); \"usrsvcd reread --force\" loads it anyway.",
            ask.managed.len() - kept,
            ask.managed.len(),
            dropped.join(", "),
            if more > 0 { format!(" and {more} more") } else { String::new() },
            config.programs.len()
        );
        if !force {
            return Outcome::Refused(msg);
        }
        forced = Some(format!(
            "Forced (usrsvcd reread --force): {} of the {} programs are no longer managed.",
            ask.managed.len() - kept,
            ask.managed.len()
        ));
    }
    let matchers = config
        .programs
        .iter()
        .map(|p| {
            let m = Matcher::new(&p.command, p.useshell, p.proctitle_re.as_deref())
                .map_err(|e| e.to_string());
            (p.name.clone(), m)
        })
        .collect();
    // The logs first, then the pidfile: a config whose files cannot be written is rejected
    // as a whole, and nothing of it is left behind.
    let logs = match instance::open_log_files(&config.main, ask.default_log.as_deref()) {
        Ok(l) => l,
        Err(e) => return Outcome::CannotApply(e.message),
    };
    let pidfile_moved = config.main.pidfile != ask.pidfile;
    if pidfile_moved {
        if let Err(e) = proc::write_pidfile(&config.main.pidfile, std::process::id() as i32) {
            return Outcome::CannotApply(format!(
                "Failed to write PID file ( {} ): {e}",
                config.main.pidfile.display()
            ));
        }
    }
    Outcome::Ready(Box::new(Prepared {
        config,
        logs,
        matchers,
        pidfile_moved,
        forced,
    }))
}

fn test_gate() {
    if !cfg!(debug_assertions) {
        return;
    }
    if let Some(gate) = std::env::var_os(TEST_GATE_VAR) {
        while Path::new(&gate).exists() {
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    }
}

/// `usrsvcd reread --force`: the next reread of the daemon `pid` may drop most programs.
pub fn request_force(pid: i32) -> std::io::Result<()> {
    let dir = crate::control::runtime_dir().map_err(std::io::Error::other)?;
    proc::write_atomic(&dir.join(FORCE_FILE), format!("{pid}\n").as_bytes())
}

/// Takes (removes) a `--force` request meant for this daemon.
fn take_force() -> bool {
    let Ok(dir) = crate::control::runtime_dir() else {
        return false;
    };
    let path = dir.join(FORCE_FILE);
    let Ok(text) = std::fs::read_to_string(&path) else {
        return false;
    };
    let _ = std::fs::remove_file(&path);
    text.trim().parse::<u32>().ok() == Some(std::process::id())
}

/// Where a reread stands, for `usrsvcd reread` to wait on and report.
#[derive(Debug, Clone, PartialEq)]
pub struct Status {
    pub pid: u32,
    pub seq: u64,
    /// Over (the other fields say how), or still under way.
    pub done: bool,
    pub code: u8,
    pub errors: Vec<String>,
    /// The main config file the daemon reread.
    pub config: String,
}

/// Writes the reread's status file (atomically).
pub fn write_status(status: &Status) {
    let Ok(dir) = crate::control::runtime_dir() else {
        return;
    };
    let doc = serde_json::json!({
        "pid": status.pid,
        "seq": status.seq,
        "done": status.done,
        "ok": status.done && status.code == 0,
        "code": status.code,
        "errors": status.errors,
        "config": status.config,
    });
    let _ = proc::write_atomic(&dir.join(STATUS_FILE), doc.to_string().as_bytes());
}

/// The status `write_status` wrote last.
pub fn read_status() -> Option<Status> {
    let dir = crate::control::runtime_dir().ok()?;
    let text = std::fs::read_to_string(dir.join(STATUS_FILE)).ok()?;
    let v: serde_json::Value = serde_json::from_str(&text).ok()?;
    let ok = v["ok"].as_bool()?;
    Some(Status {
        pid: u32::try_from(v["pid"].as_u64()?).ok()?,
        seq: v["seq"].as_u64()?,
        done: v["done"].as_bool().unwrap_or(true),
        code: v["code"]
            .as_u64()
            .and_then(|c| u8::try_from(c).ok())
            .unwrap_or(if ok { 0 } else { 130 }),
        errors: v["errors"]
            .as_array()?
            .iter()
            .filter_map(|e| e.as_str().map(String::from))
            .collect(),
        config: v["config"].as_str().unwrap_or_default().to_string(),
    })
}

// The loop's side: asking for a reread and applying what the thread prepared.

impl Daemon {
    /// SIGUSR1/SIGHUP: a reread, prepared in a thread of its own (see `reread`); one at a
    /// time, and one more after it when asked for meanwhile.
    pub(super) fn ask_reread(&mut self) {
        let log = self.opts.log.clone();
        if let Some((seq, since)) = self.reread_busy {
            // A reread hung on a file (a FIFO, a dead network filesystem) must not hold back
            // every later one: it is left behind, and its outcome ignored when it comes.
            if since.elapsed() < REREAD_STUCK {
                self.reread_again = true;
                return;
            }
            log.error(&format!(
                "The reread started {} s ago (#{seq}) is still under way (a file that hangs?); starting another, and that one's outcome will be ignored.",
                since.elapsed().as_secs()
            ));
        }
        instance::notify("RELOADING=1");
        log.info("Got SIGUSR1, reprocessing config.");
        self.reread_seq += 1;
        let seq = self.reread_seq;
        let ask = Ask {
            seq,
            config_path: self.opts.config_path.clone(),
            default_log: self.opts.default_log.clone(),
            managed: self.progs.keys().cloned().collect(),
            pidfile: self.instance.pidfile().to_path_buf(),
            force: std::mem::take(&mut self.reread_force_next),
        };
        self.reread_status_running(seq);
        let spawned = self
            .signals
            .wake
            .try_clone()
            .and_then(|wake| spawn(ask, self.reread_tx.clone(), wake));
        match spawned {
            Ok(()) => self.reread_busy = Some((seq, Instant::now())),
            Err(e) => {
                self.reject(
                    ReturnCode::UnknownFailure,
                    &format!("cannot start a reread thread: {e}"),
                );
                instance::notify("READY=1");
            }
        }
    }

    /// Applies what a reread thread has prepared, or says why it is not applied.
    pub(super) fn reread_results(&mut self) {
        while let Ok((seq, outcome)) = self.reread_rx.try_recv() {
            if self.reread_busy.map(|(s, _)| s) != Some(seq) {
                // One left behind as hung: its config is older than the one that followed.
                self.opts.log.error(&format!(
                    "The reread #{seq}, left behind as hung, is over; its outcome is ignored."
                ));
                if let Outcome::Ready(prep) = outcome {
                    if prep.pidfile_moved && prep.config.main.pidfile != self.instance.pidfile() {
                        Instance::discard_pidfile(&prep.config.main.pidfile);
                    }
                }
                continue;
            }
            self.reread_busy = None;
            self.reread_outcome(outcome);
            instance::notify("READY=1");
        }
        if self.reread_busy.is_none() && self.reread_again {
            self.reread_again = false;
            self.ask_reread();
        }
    }

    pub(super) fn reread_outcome(&mut self, outcome: Outcome) {
        let log = self.opts.log.clone();
        let code = outcome.code();
        match outcome {
            Outcome::Invalid(msgs) => {
                for m in &msgs {
                    log.error(&format!("Error in configuration: {m}"));
                }
                log.error("Keeping the running configuration.");
                self.reread_status(self.reread_seq, false, code, &msgs);
            }
            Outcome::Refused(msg) => {
                log.error(&msg);
                log.error("Keeping the running configuration.");
                self.reread_status(self.reread_seq, false, code, &[msg]);
            }
            Outcome::CannotApply(msg) => self.reject(code, &msg),
            Outcome::Ready(prep) => {
                let Prepared {
                    config: new,
                    logs,
                    matchers,
                    pidfile_moved,
                    forced,
                } = *prep;
                if let Err(e) = logs.install() {
                    if pidfile_moved {
                        Instance::discard_pidfile(&new.main.pidfile);
                    }
                    self.reject(ReturnCode::InvalidConfig, &e.message);
                    return;
                }
                if pidfile_moved {
                    self.instance.pidfile_moved(&new.main.pidfile);
                }
                if let Some(f) = &forced {
                    log.error(f);
                }
                for w in &new.warnings {
                    log.warn(w);
                }
                self.mailer.update(&new.main);
                self.apply(new, matchers);
                log.info("Successfully loaded new config.");
                self.trimmed = false;
                self.reread_status(self.reread_seq, true, ReturnCode::Success, &[]);
            }
        }
    }

    /// A reread that cannot be applied: logged, reported to `usrsvcd reread`, old config kept.
    pub(super) fn reject(&mut self, code: ReturnCode, msg: &str) {
        self.opts
            .log
            .error(&format!("Cannot apply the new config: {msg}"));
        self.opts.log.error("Keeping the running configuration.");
        self.reread_status(self.reread_seq, false, code, &[msg.to_string()]);
    }

    pub(super) fn reread_status(
        &mut self,
        seq: u64,
        ok: bool,
        code: ReturnCode,
        errors: &[String],
    ) {
        if seq > 0 {
            self.shared.emit(crate::daemon::state::Event::Reread {
                at: super::snapshot::rfc3339(chrono::Local::now()),
                ok,
                errors: errors.to_vec(),
            });
        }
        // The API's callers waiting for this reread (or for one that began before it).
        let answer = if ok {
            Ok(())
        } else {
            Err((i32::from(code.code()), errors.to_vec()))
        };
        self.reread_waiters.retain(|(from, reply)| {
            if *from > seq {
                return true;
            }
            let _ = reply.send(answer.clone());
            false
        });
        write_status(&Status {
            pid: std::process::id(),
            seq,
            done: true,
            code: if ok { 0 } else { code.code() },
            errors: errors.to_vec(),
            config: self.opts.config_path.display().to_string(),
        });
    }

    pub(super) fn reread_status_running(&self, seq: u64) {
        write_status(&Status {
            pid: std::process::id(),
            seq,
            done: false,
            code: 0,
            errors: Vec::new(),
            config: self.opts.config_path.display().to_string(),
        });
    }

    /// Puts a validated config in force: bounded work (comparisons, the matchers the reread
    /// thread built), then a look at the programs that are new or changed while down.
    pub(super) fn apply(
        &mut self,
        new: Config,
        mut matchers: HashMap<String, Result<Matcher, String>>,
    ) {
        let log = self.opts.log.clone();
        let removed: Vec<String> = self
            .progs
            .keys()
            .filter(|n| new.program(n).is_none())
            .cloned()
            .collect();
        for name in removed {
            log.for_program(&name).info(&format!(
                "{name} is no longer in the config: no longer managed, left as it is."
            ));
            self.progs.remove(&name);
            // Its health checks too: nothing would ever stop them otherwise.
            if let Some(h) = self.health.as_mut() {
                h.unwatch(&name);
            }
        }
        let mut fresh = Vec::new();
        for cfg in &new.programs {
            match self.progs.get_mut(&cfg.name) {
                Some(p) if p.cfg != *cfg => {
                    log.for_program(&cfg.name)
                        .info(&format!("{} has new settings.", cfg.name));
                    let matcher = take_matcher(&mut matchers, cfg);
                    p.cfg = cfg.clone();
                    p.matcher = matcher.ok();
                    // New monitor settings apply to the running process from now on.
                    if let Phase::Running(run) = &mut p.phase {
                        run.monitor_at = first_check(&p.cfg, run.started, self.epoch);
                    }
                    if !matches!(p.phase, Phase::Running(_) | Phase::Working { .. }) {
                        fresh.push(cfg.name.clone());
                    }
                }
                Some(_) => {}
                None => {
                    log.for_program(&cfg.name)
                        .info(&format!("{} is new in the config.", cfg.name));
                    let matcher = take_matcher(&mut matchers, cfg);
                    self.progs.insert(
                        cfg.name.clone(),
                        Prog::with_matcher(cfg.clone(), matcher, &log),
                    );
                    fresh.push(cfg.name.clone());
                }
            }
        }
        if self.alerts.is_none() && new.programs.iter().any(|p| p.email_alerts.is_some()) {
            self.alerts = Some(Alerts::new());
        }
        self.shared.set_config(new.clone());
        self.config = new;
        self.groups_dirty = true;
        // Schedules and health checks may have changed: plan again, watch again.
        let running: Vec<(String, ProcInfo)> = self
            .progs
            .iter()
            .filter_map(|(n, p)| match &p.phase {
                Phase::Running(r) => Some((n.clone(), r.info.clone())),
                _ => None,
            })
            .collect();
        for (name, info) in running {
            let Some(p) = self.progs.get_mut(&name) else {
                continue;
            };
            let plan =
                planned::program_plan(&p.cfg, info.start_time(), chrono::Local::now(), &self.host)
                    .map(|pl| (timer_for(&pl), Box::new(pl)));
            if let Phase::Running(r) = &mut p.phase {
                r.plan = plan;
            }
            self.health_watch(&name);
        }
        // Looked at by the timers, a few per wake-up (see `timers`).
        let now = Instant::now();
        for name in fresh {
            if let Some(p) = self.progs.get_mut(&name) {
                if !matches!(p.phase, Phase::Running(_) | Phase::Working { .. }) {
                    p.phase = Phase::Unknown;
                    p.recheck_at = Some(now);
                }
            }
        }
    }
}

/// The matcher the reread thread built for `cfg`, or one built now if it has none.
pub(super) fn take_matcher(
    matchers: &mut HashMap<String, Result<Matcher, String>>,
    cfg: &ProgramConfig,
) -> Result<Matcher, String> {
    matchers.remove(&cfg.name).unwrap_or_else(|| {
        Matcher::new(&cfg.command, cfg.useshell, cfg.proctitle_re.as_deref())
            .map_err(|e| e.to_string())
    })
}

#[cfg(test)]
mod tests {
    use super::drops_too_many;

    #[test]
    fn the_drop_rule() {
        // Nothing managed, nothing dropped: fine.
        assert!(!drops_too_many(0, 0, 0));
        assert!(!drops_too_many(5, 5, 9));
        // An emptied config, however few programs ran.
        assert!(drops_too_many(1, 0, 0));
        assert!(drops_too_many(2, 0, 0));
        // Renaming the only program is no loss of supervision.
        assert!(!drops_too_many(1, 0, 1));
        // Half is not most; more than half and at least two is.
        assert!(!drops_too_many(2, 1, 1));
        assert!(drops_too_many(2, 0, 2));
        assert!(drops_too_many(3, 1, 1));
        assert!(!drops_too_many(4, 2, 2));
        assert!(drops_too_many(4, 1, 1));
        assert!(drops_too_many(100, 3, 3));
        assert!(!drops_too_many(100, 60, 60));
    }
}
