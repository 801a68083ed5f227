//! The audit trail: one JSON object per line for every action on a program, by `usrsvc` or by
//! `usrsvcd`, appended to a file and optionally copied to syslog (RFC 5424). Owns the record's
//! shape and wording ([`Record`], [`Trigger`]), the append (`AuditLog::append`: one `write`
//! per record, so writers in different processes never interleave and logrotate can move the
//! file at any time), the syslog transports (`syslog`) and reading the trail back for
//! `usrsvc history` (`history`).
//!
//! Must not: decide anything or act on a program (callers tell it what happened), panic on
//! anything from the caller, the file system or the network, or hold up the action it records
//! for long: every problem comes back as a string for the caller to log, and a syslog server
//! gets at most about a second (connect and write timeouts) before the record is given up.

mod bound;
mod history;
mod syslog;

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::OnceLock;

use chrono::{Local, SecondsFormat};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

pub use bound::{MAX_RECORD, TRUNCATED_MARK};
pub use history::{format_history, read_history, read_history_where, shown as escape_controls};
pub use syslog::{format_rfc5424, SyslogTarget, SYSLOG_TIMEOUT};

/// Why an action happened. Written as `cli`, `delegated`, `autostart`, `crash`,
/// `monitor:<name>`, `health:<name>`, `schedule`, `group:<name>`; [`FromStr`] reads exactly what [`Display`]
/// writes (the daemon hands it to its workers as an argument).
///
/// [`Display`]: fmt::Display
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Trigger {
    /// A person or script ran `usrsvc`.
    Cli,
    /// Another user, granted it by `allow_users`/`allow_groups`, asked through the daemon's
    /// socket (`usrsvc --user`); the record's `caller` says who.
    Delegated,
    /// The daemon started a program marked for autostart.
    Autostart,
    /// The daemon restarted a program it found not running.
    Crash,
    /// A monitor (by name) fired.
    Monitor(String),
    /// A health check (by name) failed.
    Health(String),
    /// A scheduled action.
    Schedule,
    /// An action on a group (by name) reached this program.
    Group(String),
}

impl fmt::Display for Trigger {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Trigger::Cli => f.write_str("cli"),
            Trigger::Delegated => f.write_str("delegated"),
            Trigger::Autostart => f.write_str("autostart"),
            Trigger::Crash => f.write_str("crash"),
            Trigger::Monitor(name) => write!(f, "monitor:{name}"),
            Trigger::Health(name) => write!(f, "health:{name}"),
            Trigger::Schedule => f.write_str("schedule"),
            Trigger::Group(name) => write!(f, "group:{name}"),
        }
    }
}

/// A trigger string that is none of the accepted forms.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "unknown trigger {0:?}: expected cli, delegated, autostart, crash, schedule, \
     monitor:NAME, health:NAME or group:NAME"
)]
pub struct UnknownTrigger(pub String);

impl FromStr for Trigger {
    type Err = UnknownTrigger;

    /// The inverse of `Display`. The name after `monitor:`, `health:` or `group:` is taken
    /// verbatim (it may contain `:`; it may be empty, because `Display` can write that and a
    /// record read back must not be lost over it).
    fn from_str(s: &str) -> Result<Trigger, UnknownTrigger> {
        match s {
            "cli" => return Ok(Trigger::Cli),
            "delegated" => return Ok(Trigger::Delegated),
            "autostart" => return Ok(Trigger::Autostart),
            "crash" => return Ok(Trigger::Crash),
            "schedule" => return Ok(Trigger::Schedule),
            _ => {}
        }
        match s.split_once(':') {
            Some(("monitor", name)) => Ok(Trigger::Monitor(name.to_owned())),
            Some(("health", name)) => Ok(Trigger::Health(name.to_owned())),
            Some(("group", name)) => Ok(Trigger::Group(name.to_owned())),
            _ => Err(UnknownTrigger(s.to_owned())),
        }
    }
}

// The JSON form is the string form, so `jq 'select(.trigger == "crash")'` and grep both work.
impl Serialize for Trigger {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Trigger {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Trigger, D::Error> {
        let s = String::deserialize(deserializer)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// One action on one program. Serialized with the fields in this order; absent `reason`,
/// `old_pid` and `new_pid` are written as `null`; `caller` and `caller_uid` only when set.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    /// RFC 3339 local time with offset, milliseconds: `2026-11-23T15:20:01.123+01:00`.
    pub time: String,
    /// The kernel's (short) host name: records from hosts sharing an NFS home stay apart.
    pub host: String,
    /// The passwd name of `uid`, else the uid as a number.
    pub user: String,
    pub uid: u32,
    /// Who asked, when it is not `user`: the passwd name (from the kernel's peer credentials
    /// of the daemon's socket) of a delegated caller. Written only when set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub caller: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub caller_uid: Option<u32>,
    pub program: String,
    /// `start`, `stop`, `restart`, `signal:QUIT`, … (the caller's words).
    pub action: String,
    pub trigger: Trigger,
    pub reason: Option<String>,
    /// `ok`, `failed`, `not running`, … (the caller's words). Results starting with `failed`
    /// are syslog warnings, the rest notices.
    pub result: String,
    pub old_pid: Option<i32>,
    pub new_pid: Option<i32>,
    /// Set when free texts were cut to keep the line under [`MAX_RECORD`] bytes (each cut text
    /// ends in [`TRUNCATED_MARK`]). Written only when true.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub truncated: bool,
}

impl Record {
    /// A record of an action that happened now, by this process's user on this host.
    pub fn new(
        program: impl Into<String>,
        action: impl Into<String>,
        trigger: Trigger,
        reason: Option<String>,
        result: impl Into<String>,
        old_pid: Option<i32>,
        new_pid: Option<i32>,
    ) -> Record {
        // Looked up once: neither changes under a running process, and the daemon appends a
        // record for every restart.
        static WHO: OnceLock<(String, String)> = OnceLock::new();
        let (host, user) =
            WHO.get_or_init(|| (crate::alert::short_host(), crate::alert::user_name()));
        Record {
            time: Local::now().to_rfc3339_opts(SecondsFormat::Millis, false),
            host: host.clone(),
            user: user.clone(),
            uid: crate::proc::my_uid(),
            caller: None,
            caller_uid: None,
            program: program.into(),
            action: action.into(),
            trigger,
            reason,
            result: result.into(),
            old_pid,
            new_pid,
            truncated: false,
        }
    }

    /// The record with the delegated caller who asked for the action (none: unchanged).
    pub fn with_caller(mut self, caller: Option<&(String, u32)>) -> Record {
        if let Some((name, uid)) = caller {
            self.caller = Some(name.clone());
            self.caller_uid = Some(*uid);
        }
        self
    }

    /// The record as its line in the file: compact JSON and `\n`, at most [`MAX_RECORD`] bytes
    /// (longer free texts are cut, see `bound`). serde_json escapes every control character
    /// inside strings, so a reason with a newline is still one line.
    pub fn to_line(&self) -> String {
        let line = self.json_line();
        if line.len() <= MAX_RECORD {
            return line;
        }
        bound::bounded(self).json_line()
    }

    fn json_line(&self) -> String {
        let mut line = serde_json::to_string(self).unwrap_or_else(|e| {
            // Unreachable for this struct (string keys, no maps, no floats); kept so that a
            // future field cannot turn an audit append into a panic.
            serde_json::json!({ "error": e.to_string() }).to_string()
        });
        line.push('\n');
        line
    }

    /// Whether `result` says the action failed (decides the syslog severity).
    pub fn failed(&self) -> bool {
        self.result.starts_with("failed")
    }
}

/// Where records go: a file, and optionally a syslog server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditLog {
    pub path: PathBuf,
    pub syslog: Option<SyslogTarget>,
}

impl AuditLog {
    pub fn new(path: PathBuf, syslog: Option<SyslogTarget>) -> AuditLog {
        AuditLog { path, syslog }
    }

    /// Appends `record` to the file (created 0600, with missing parent directories 0700), then
    /// sends it to syslog. The file comes first so that a dead log server costs nothing but
    /// its own line. Returns what went wrong, one string each (empty: all well), for the caller
    /// to log; never panics, and waits on a syslog server at most about [`SYSLOG_TIMEOUT`].
    pub fn append(&self, record: &Record) -> Vec<String> {
        let mut problems = Vec::new();
        // The file and syslog get the same record: bounded, if it is over the bound.
        let line = record.json_line();
        let bounded;
        let (record, line) = if line.len() <= MAX_RECORD {
            (record, line)
        } else {
            bounded = bound::bounded(record);
            (&bounded, bounded.json_line())
        };
        if let Err(e) = append_line(&self.path, line.as_bytes()) {
            problems.push(format!("audit log {}: {e}", self.path.display()));
        }
        if let Some(target) = &self.syslog {
            if let Err(e) = target.send(record) {
                problems.push(format!("audit syslog {target}: {e}"));
            }
        }
        problems
    }
}

/// Appends `line` with one `write` on a descriptor opened for this line alone.
///
/// One `write` with O_APPEND is what keeps lines whole: the kernel moves to the end and writes
/// under the inode lock, so two processes' lines never interleave (on local file systems; NFS
/// has no atomic append). Opening per line, never keeping the descriptor, lets logrotate move
/// the file away without a `copytruncate` or a signal. The open is `fsafe`'s: a symlink, a
/// FIFO or a folder another user can write is refused (a warning), never written through.
fn append_line(path: &Path, line: &[u8]) -> Result<(), String> {
    let open = || crate::fsafe::open_append(path, 0o600);
    let fd = match open() {
        Ok(fd) => fd,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                use std::os::unix::fs::DirBuilderExt;
                std::fs::DirBuilder::new()
                    .recursive(true)
                    .mode(0o700)
                    .create(dir)
                    .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
            }
            open().map_err(|e| format!("cannot open: {e}"))?
        }
        Err(e) => return Err(format!("cannot open: {e}")),
    };
    loop {
        match rustix::io::write(&fd, line) {
            Ok(n) if n == line.len() => return Ok(()),
            // Never finish the line with a second write: another process's line could land
            // between the two halves. A short write means a full disk or a file size limit.
            Ok(n) => {
                return Err(format!(
                    "short write: {n} of {} bytes (disk full?); the file now ends in a partial \
                     line",
                    line.len()
                ))
            }
            // Interrupted before anything was written: trying again cannot split the line.
            Err(rustix::io::Errno::INTR) => continue,
            Err(e) => return Err(format!("cannot write: {}", std::io::Error::from(e))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn sample() -> Record {
        Record::new(
            "web",
            "restart",
            Trigger::Monitor("rss".into()),
            Some("rss 600 MB > 500 MB".into()),
            "ok",
            Some(100),
            Some(200),
        )
    }

    #[test]
    fn trigger_strings_round_trip() {
        let all = [
            (Trigger::Cli, "cli"),
            (Trigger::Delegated, "delegated"),
            (Trigger::Autostart, "autostart"),
            (Trigger::Crash, "crash"),
            (Trigger::Monitor("rss".into()), "monitor:rss"),
            (Trigger::Health("http".into()), "health:http"),
            (Trigger::Schedule, "schedule"),
            (Trigger::Group("web".into()), "group:web"),
            (Trigger::Group("a:b".into()), "group:a:b"),
            (Trigger::Monitor(String::new()), "monitor:"),
        ];
        for (trigger, text) in all {
            assert_eq!(trigger.to_string(), text);
            assert_eq!(text.parse::<Trigger>(), Ok(trigger));
        }
    }

    #[test]
    fn unknown_triggers_are_errors_that_list_the_forms() {
        for bad in [
            "",
            "CLI",
            "cron",
            "delegated:x",
            "Delegated",
            "crash:x",
            "monitor",
            "tick:x",
            " cli",
        ] {
            let err = bad.parse::<Trigger>().expect_err(bad);
            assert!(err.to_string().contains("monitor:NAME"), "{err}");
        }
    }

    #[test]
    fn record_json_has_the_fields_in_order_with_nulls() {
        let mut r = sample();
        r.reason = None;
        r.old_pid = None;
        let line = r.to_line();
        assert!(line.ends_with("}\n") && !line[..line.len() - 1].contains('\n'));
        let keys = [
            "time", "host", "user", "uid", "program", "action", "trigger", "reason", "result",
            "old_pid", "new_pid",
        ];
        let mut at = 0;
        for key in keys {
            let found = line[at..]
                .find(&format!("\"{key}\":"))
                .unwrap_or_else(|| panic!("{key} missing or out of order in {line}"));
            at += found;
        }
        assert!(line.contains("\"reason\":null") && line.contains("\"old_pid\":null"));
        assert!(line.contains("\"trigger\":\"monitor:rss\""), "{line}");
        assert!(line.contains("\"new_pid\":200"), "{line}");
        let back: Record = serde_json::from_str(&line).expect("parses back");
        assert_eq!(back, r);
    }

    #[test]
    fn the_caller_is_written_after_uid_only_when_set_and_read_back() {
        let plain = sample().to_line();
        assert!(!plain.contains("caller"), "{plain}");
        let r = sample().with_caller(Some(&("alice".to_owned(), 1001)));
        let line = r.to_line();
        let uid = line.find("\"uid\":").expect("uid");
        let caller = line
            .find("\"caller\":\"alice\",\"caller_uid\":1001,")
            .expect(&line);
        let program = line.find("\"program\":").expect("program");
        assert!(uid < caller && caller < program, "{line}");
        let back: Record = serde_json::from_str(&line).expect("parses back");
        assert_eq!(back, r);
        assert_eq!(
            (back.caller.as_deref(), back.caller_uid),
            (Some("alice"), Some(1001))
        );
        // A line without the fields (every record before 2.0's API) still reads.
        let old: Record = serde_json::from_str(&plain).expect("old line");
        assert_eq!((old.caller, old.caller_uid), (None, None));
    }

    #[test]
    fn record_new_fills_time_and_identity() {
        let r = sample();
        let t = chrono::DateTime::parse_from_rfc3339(&r.time).expect("RFC 3339");
        // Milliseconds and a numeric offset, as documented.
        assert_eq!(
            r.time.len(),
            "2026-11-23T15:20:01.123+01:00".len(),
            "{}",
            r.time
        );
        assert!((Local::now().fixed_offset() - t).num_seconds().abs() < 60);
        assert_eq!(r.uid, crate::proc::my_uid());
        assert!(!r.user.is_empty() && !r.host.is_empty());
    }

    #[test]
    fn a_newline_in_a_reason_stays_inside_the_line() {
        let mut r = sample();
        r.reason = Some("line one\nline two\r\u{7}".into());
        let line = r.to_line();
        assert_eq!(line.matches('\n').count(), 1);
        assert_eq!(serde_json::from_str::<Record>(&line).expect("parses"), r);
    }

    #[test]
    fn append_creates_the_file_0600_and_its_directories() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("a/b/audit.log");
        let log = AuditLog::new(path.clone(), None);
        assert_eq!(log.append(&sample()), Vec::<String>::new());
        assert_eq!(log.append(&sample()), Vec::<String>::new());
        let meta = std::fs::metadata(&path).expect("file");
        assert_eq!(meta.permissions().mode() & 0o777, 0o600);
        let text = std::fs::read_to_string(&path).expect("read");
        assert_eq!(text.lines().count(), 2);
        for line in text.lines() {
            assert_eq!(
                serde_json::from_str::<Record>(line).expect("json"),
                sample_like(line)
            );
        }
    }

    /// The sample record with the time of `line` (the only field that differs between calls).
    fn sample_like(line: &str) -> Record {
        let parsed: Record = serde_json::from_str(line).expect("json");
        Record {
            time: parsed.time,
            ..sample()
        }
    }

    #[test]
    fn an_unwritable_path_is_a_problem_not_a_panic() {
        let dir = tempfile::tempdir().expect("tempdir");
        // A directory where the file should be.
        let log = AuditLog::new(dir.path().to_owned(), None);
        let problems = log.append(&sample());
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(
            problems[0].starts_with(&format!("audit log {}: ", dir.path().display())),
            "{problems:?}"
        );
        // A parent that is a file.
        let file = dir.path().join("f");
        std::fs::write(&file, "").expect("write");
        let log = AuditLog::new(file.join("audit.log"), None);
        assert_eq!(log.append(&sample()).len(), 1);
    }

    #[test]
    fn a_fifo_without_reader_fails_at_once() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("fifo");
        nix::unistd::mkfifo(&path, nix::sys::stat::Mode::from_bits_truncate(0o600))
            .expect("mkfifo");
        let problems = AuditLog::new(path, None).append(&sample());
        assert_eq!(problems.len(), 1, "{problems:?}");
    }

    #[test]
    fn failed_results_are_failures() {
        let mut r = sample();
        assert!(!r.failed());
        r.result = "failed: exited with 1".into();
        assert!(r.failed());
        r.result = "not running".into();
        assert!(!r.failed());
    }
}
