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

use std::path::Path;
use std::time::{Duration, SystemTime};

use crate::config::MonitoringConfig;
use crate::proc::ProcInfo;

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
