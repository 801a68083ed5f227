//! The monitors of `[[Monitoring]]`: observations only (a file's age, a process's resident
//! memory) that say whether a running program should be restarted, and why. Deciding when and
//! whether a restart happens (back-off, `maxrestarts`, `enabled`) is `policy`'s; acting is the
//! loop's.
//!
//! What is measured:
//! - `rss_limit` (kB): the resident set of the program's process — `/proc/PID/statm` field 2
//!   × page size, as 1.5.13 measured it: anonymous *and* file-backed and shared pages, of that
//!   one process (its children are not counted). Restart when it is above the limit.
//! - `activityfile` with `activityfile_limit` (s): the file's modification time; for a
//!   directory the newest modification time of the directory itself and of the entries
//!   directly in it (1.5.13 looked at the directory's own time only, which a write to a file
//!   inside never changes). Restart when it is older than the limit, or missing.
//!
//! The checks run in a thread of their own (`Checker`): an activity file on a hung network
//! filesystem blocks that thread, never the loop that restarts crashed programs.

use std::collections::VecDeque;
use std::io::Write;
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::sync::mpsc;
use std::time::{Duration, Instant, SystemTime};

use crate::config::MonitoringConfig;
use crate::proc::ProcInfo;

/// One program's monitors to run on its process.
pub struct Job {
    pub name: String,
    pub info: ProcInfo,
    pub cfg: MonitoringConfig,
}

/// What a `Job` found, for the process it ran on.
pub struct Verdict {
    pub name: String,
    pub pid: i32,
    pub start_ticks: u64,
    pub trigger: Option<Trigger>,
}

/// The monitor thread: jobs in, verdicts out, and a byte on `wake` after a verdict that asks
/// for a restart, so the loop's `poll` returns.
pub struct Checker {
    jobs: mpsc::Sender<Job>,
    verdicts: mpsc::Receiver<Verdict>,
    /// When each job still without a verdict was sent, oldest first.
    waiting: VecDeque<Instant>,
}

impl Checker {
    pub fn start(wake: UnixStream) -> std::io::Result<Checker> {
        let (jobs, job_rx) = mpsc::channel::<Job>();
        let (verdict_tx, verdicts) = mpsc::channel();
        std::thread::Builder::new()
            .name("usrsvcd-monitor".into())
            .spawn(move || {
                for job in job_rx {
                    let trigger = check(&job.cfg, &job.info, SystemTime::now());
                    // Only a verdict that asks for action wakes the loop; the others are
                    // collected at its next wake-up (at the latest the next monitor round).
                    let wake_loop = trigger.is_some();
                    let verdict = Verdict {
                        name: job.name,
                        pid: job.info.pid,
                        start_ticks: job.info.start_ticks,
                        trigger,
                    };
                    if verdict_tx.send(verdict).is_err() {
                        return;
                    }
                    if wake_loop {
                        let _ = (&wake).write(b"M");
                    }
                }
            })?;
        Ok(Checker {
            jobs,
            verdicts,
            waiting: VecDeque::new(),
        })
    }

    pub fn submit(&mut self, job: Job) {
        if self.jobs.send(job).is_ok() {
            self.waiting.push_back(Instant::now());
        }
    }

    /// Every verdict that has arrived.
    pub fn verdicts(&mut self) -> Vec<Verdict> {
        let got: Vec<Verdict> = self.verdicts.try_iter().collect();
        for _ in &got {
            self.waiting.pop_front();
        }
        got
    }

    /// How long the oldest job has waited for its verdict.
    pub fn stuck_for(&self, now: Instant) -> Duration {
        self.waiting
            .front()
            .map_or(Duration::ZERO, |t| now.saturating_duration_since(*t))
    }
}

/// A monitor that wants a restart.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Trigger {
    pub monitor: &'static str,
    pub reason: String,
}

/// Runs the configured monitors in 1.5.13's order (activity file, then RSS); the first that
/// fires wins.
pub fn check(m: &MonitoringConfig, info: &ProcInfo, now: SystemTime) -> Option<Trigger> {
    if let Some(path) = &m.activityfile {
        if let Some(t) = activity(path, m.activityfile_limit, now) {
            return Some(t);
        }
    }
    if m.rss_limit > 0 {
        let kb = rss_kb(info.pid)?;
        if kb > m.rss_limit {
            return Some(Trigger {
                monitor: "RSS Limit Monitor",
                reason: format!(
                    "RSS size {kb}kB exceeds limit of {}kB (pid {})",
                    m.rss_limit, info.pid
                ),
            });
        }
    }
    None
}

fn activity(path: &Path, limit: u64, now: SystemTime) -> Option<Trigger> {
    let fire = |reason: String| {
        Some(Trigger {
            monitor: "Activity File Monitor",
            reason,
        })
    };
    let meta = match std::fs::metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return fire(format!(
                "activity file ( {} ) does not exist",
                path.display()
            ));
        }
        // Cannot look (permissions): no verdict, no restart.
        Err(_) => return None,
    };
    let mut newest = meta.modified().ok()?;
    if meta.is_dir() {
        if let Ok(entries) = std::fs::read_dir(path) {
            for e in entries.flatten() {
                if let Ok(t) = e.metadata().and_then(|m| m.modified()) {
                    newest = newest.max(t);
                }
            }
        }
    }
    let age = now.duration_since(newest).unwrap_or(Duration::ZERO);
    if age > Duration::from_secs(limit) {
        return fire(format!(
            "it has not modified activity file ( {} ) in {:.1} seconds. Limit is {limit} seconds.",
            path.display(),
            age.as_secs_f64()
        ));
    }
    None
}

/// Resident set of `pid` in kB, read fresh.
pub fn rss_kb(pid: i32) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/statm")).ok()?;
    let pages: u64 = text.split_whitespace().nth(1)?.parse().ok()?;
    Some(pages * (rustix::param::page_size() as u64) / 1024)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn me() -> ProcInfo {
        crate::proc::read_proc(std::process::id() as i32).expect("self")
    }

    #[test]
    fn activity_file_missing_old_and_fresh() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("beat");
        let mut m = MonitoringConfig {
            activityfile: Some(file.clone()),
            activityfile_limit: 60,
            ..MonitoringConfig::default()
        };
        let t = check(&m, &me(), SystemTime::now()).expect("missing fires");
        assert!(t.reason.contains("does not exist"), "{t:?}");
        std::fs::write(&file, "x").expect("write");
        assert_eq!(check(&m, &me(), SystemTime::now()), None);
        let later = SystemTime::now() + Duration::from_secs(61);
        assert!(check(&m, &me(), later).is_some(), "older than the limit");
        m.activityfile_limit = 120;
        assert_eq!(check(&m, &me(), later), None);
    }

    #[test]
    fn a_write_inside_a_directory_counts_as_activity() {
        let dir = tempfile::tempdir().expect("tempdir");
        let inner = dir.path().join("log");
        std::fs::write(&inner, "a").expect("write");
        let m = MonitoringConfig {
            activityfile: Some(dir.path().to_path_buf()),
            activityfile_limit: 5,
            ..MonitoringConfig::default()
        };
        let old = SystemTime::now() - Duration::from_secs(3600);
        let f = std::fs::File::options()
            .write(true)
            .open(&inner)
            .expect("open");
        f.set_modified(old).expect("age the file");
        let d = std::fs::File::open(dir.path()).expect("dir");
        d.set_modified(old).expect("age the dir");
        assert!(check(&m, &me(), SystemTime::now()).is_some(), "all old");
        f.set_modified(SystemTime::now()).expect("touch the file");
        assert_eq!(check(&m, &me(), SystemTime::now()), None);
    }

    #[test]
    fn the_checker_thread_sends_verdicts_and_wakes_the_loop() {
        let (read, wake) = UnixStream::pair().expect("pair");
        let mut checker = Checker::start(wake).expect("thread");
        let info = me();
        checker.submit(Job {
            name: "p".into(),
            info: info.clone(),
            cfg: MonitoringConfig {
                rss_limit: 1,
                ..MonitoringConfig::default()
            },
        });
        assert!(checker.stuck_for(Instant::now() + Duration::from_secs(1)) > Duration::ZERO);
        let mut byte = [0u8; 1];
        std::io::Read::read_exact(&mut &read, &mut byte).expect("a trigger wakes the loop");
        let verdicts = checker.verdicts();
        assert_eq!(verdicts.len(), 1);
        assert_eq!(
            (verdicts[0].pid, verdicts[0].start_ticks),
            (info.pid, info.start_ticks)
        );
        assert!(verdicts[0].trigger.is_some());
        assert_eq!(
            checker.stuck_for(Instant::now()),
            Duration::ZERO,
            "nothing waits"
        );
    }

    #[test]
    fn rss_limit_compares_resident_kilobytes() {
        let info = me();
        let kb = rss_kb(info.pid).expect("rss");
        assert!(kb > 100, "{kb}");
        let over = MonitoringConfig {
            rss_limit: 1,
            ..MonitoringConfig::default()
        };
        let t = check(&over, &info, SystemTime::now()).expect("fires");
        assert_eq!(t.monitor, "RSS Limit Monitor");
        let under = MonitoringConfig {
            rss_limit: 100_000_000,
            ..MonitoringConfig::default()
        };
        assert_eq!(check(&under, &info, SystemTime::now()), None);
    }
}
