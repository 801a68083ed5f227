//! Builds the typed `Config` from the raw trees of the files `load` read: `[Main]` (spec §4.4),
//! the two passes over `DefaultSettings:` and `Program:` sections (§4.1), and every key of
//! every program with the defaults, checks and messages of usrsvc 1.5.13 (§4.5–4.6), in the
//! original's order, gathering every error instead of stopping at the first.
//!
//! It does no I/O of its own: the few facts it needs from the system (does this directory
//! exist, the real uid, `$PATH`) come through the `Probe` trait, so tests can fake them.

mod exec;

use std::collections::{HashMap, HashSet};
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::check::{CheckSpec, HealthAction};
use super::error::{ConfigError, ConfigErrorKind as Kind, ConfigErrors};
use super::inherit::{merge, Item, Origin, Table};
use super::interpolate::{interpolate_value, InterpolationError};
use super::model::{
    Config, GroupConfig, Location, LogTarget, MainConfig, MonitoringConfig, ProgramConfig,
    SmtpConfig, Step,
};
use super::python::{py_dirname, py_list_repr, py_strip};
use super::shlex::shlex_split;
use super::syntax::{RawTree, RawValue, ROOT};
use super::values::{parse_signal, resolve_path, to_bool, to_float, to_int};
use crate::schedule::{parse_duration, parse_times, parse_windows, Schedule, Windows};

/// What the builder needs to know about the system.
pub(crate) trait Probe {
    fn is_dir(&self, path: &Path) -> bool;
    /// `os.path.exists`: follows symlinks.
    fn exists(&self, path: &Path) -> bool;
    /// `os.access(path, X_OK)`.
    fn is_executable(&self, path: &Path) -> bool;
    /// `$PATH`.
    fn path_var(&self) -> Option<OsString>;
    fn uid(&self) -> u32;
}

/// One file as parsed.
#[derive(Debug, Clone)]
pub(crate) struct SourceFile {
    pub path: PathBuf,
    pub tree: RawTree,
}

impl SourceFile {
    fn dir(&self) -> &Path {
        self.path.parent().unwrap_or(Path::new("/"))
    }
}

const MAIN_KEYS: [&str; 15] = [
    "config_dir",
    "pidfile",
    "usrsvcd_stdout",
    "usrsvcd_stderr",
    "sendmail_path",
    // New in 2.0: SMTP delivery of alerts.
    "smtp_host",
    "smtp_port",
    "smtp_from",
    "smtp_starttls",
    "smtp_credentials_file",
    // New in 2.0: planned restarts, the kill switch, reasons and the audit trail.
    "restart_windows",
    "kill_switch_file",
    "require_reason",
    "audit_log",
    "audit_syslog",
];

/// Keys of a program, canonical spellings.
const PROGRAM_KEYS: [&str; 29] = [
    "command",
    "pidfile",
    "autostart",
    "autorestart",
    "maxrestarts",
    "restart_delay",
    "autopid",
    "useshell",
    "proctitle_re",
    "success_seconds",
    "term_to_kill_seconds",
    "scan_for_process",
    "stdout",
    "stderr",
    "enabled",
    "inherit_env",
    "Env",
    "Monitoring",
    "defaults",
    "email_alerts",
    // New in 2.0: the daemon's restart policy and the alert rate limit.
    "restart_delay_max",
    "stable_seconds",
    "email_interval",
    // New in 2.0: planned restarts (plus `[[HealthCheck:NAME]]` subsections).
    "restart_every",
    "restart_at",
    "restart_jitter",
    "restart_windows",
    // New in 2.0: what `stop` signals, and how.
    "stop_group",
    "stop_signal",
];

/// Keys of a `[[HealthCheck:NAME]]` (new in 2.0).
const HEALTH_KEYS: [&str; 7] = [
    "command",
    "interval",
    "timeout",
    "start_period",
    "failures",
    "repair",
    "action",
];

/// Keys of a `[Group:NAME]` (new in 2.0).
const GROUP_KEYS: [&str; 7] = [
    "programs",
    "sequence",
    "min_ok",
    "restart_every",
    "restart_at",
    "restart_jitter",
    "restart_windows",
];

const MONITORING_KEYS: [&str; 5] = [
    "monitor_after",
    "activityfile",
    "activityfile_limit",
    "rss_limit",
    // New in 2.0.
    "check_interval",
];

/// A key's value after interpolation.
enum Resolved<'t, 'a> {
    Str(String),
    List(Vec<String>),
    Section(&'t Table<'a>),
    /// Interpolation failed; already reported.
    Failed,
}

/// A key of a section (canonical spelling), its item, and its value after interpolation.
type Value<'t, 'a> = (&'t str, &'t Item<'a>, Resolved<'t, 'a>);
type Values<'t, 'a> = [Value<'t, 'a>];

/// Builds the typed config from the parsed files (`files[0]` is the main file).
pub(crate) fn build(
    files: &[SourceFile],
    home: &Path,
    probe: &dyn Probe,
) -> Result<Config, ConfigErrors> {
    let mut b = Builder {
        files,
        home,
        probe,
        errors: Vec::new(),
        warnings: Vec::new(),
        daemon_errors: Vec::new(),
        dirs: HashMap::new(),
    };
    let main = b.main();
    let defaults = b.collect_defaults();
    let windows = main.as_ref().and_then(|m| m.restart_windows.clone());
    let mut programs = b.programs(&defaults);
    for p in &mut programs {
        if p.schedule.windows.is_none() {
            p.schedule.windows.clone_from(&windows);
        }
    }
    let groups = b.groups(&programs, windows.as_ref());
    if let Some(errors) = ConfigErrors::from_vec(b.errors) {
        return Err(errors);
    }
    let (Some(main), Some(first)) = (main, files.first()) else {
        // Unreachable: a missing [Main] or file is an error above.
        return Err(ConfigErrors::one(ConfigError::new(
            Kind::MissingMain,
            files.first().map(|f| f.path.clone()).unwrap_or_default(),
            "Missing [Main] section in main config. Required.".into(),
        )));
    };
    Ok(Config {
        main_file: first.path.clone(),
        files: files.iter().map(|f| f.path.clone()).collect(),
        main,
        programs,
        groups,
        warnings: b.warnings,
        daemon_errors: b.daemon_errors,
    })
}

/// The `[Main] config_dir` of a parsed main file, as `build` will resolve it, and the line
/// that sets it; `load` needs it before the other files can be read. Problems with it are left
/// for `build` to report.
pub(crate) fn config_dir_of(main: &SourceFile, home: &Path) -> Option<(PathBuf, usize)> {
    let tree = &main.tree;
    let sec = tree.child(ROOT, "Main")?;
    let entry = tree.entry(sec, "config_dir")?;
    match interpolate_value(tree, sec, "config_dir", &entry.value).ok()? {
        RawValue::Scalar(s) if !s.is_empty() => {
            Some((config_dir_path(&s, home, main.dir()), entry.line))
        }
        _ => None,
    }
}

fn config_dir_path(value: &str, home: &Path, base: &Path) -> PathBuf {
    let p = resolve_path(value, home, base);
    let s = p.to_string_lossy();
    match s.strip_suffix('/') {
        Some(stripped) if !stripped.is_empty() => PathBuf::from(stripped),
        _ => p,
    }
}

/// A `DefaultSettings:NAME`, found under its name.
struct DefaultsDef {
    file: usize,
    line: usize,
    /// `None` when given as a plain key rather than a section.
    section: Option<usize>,
}

struct Builder<'a> {
    files: &'a [SourceFile],
    home: &'a Path,
    probe: &'a dyn Probe,
    errors: Vec<ConfigError>,
    warnings: Vec<String>,
    daemon_errors: Vec<ConfigError>,
    /// What `probe.is_dir` said of each folder asked about.
    dirs: HashMap<String, bool>,
}

/// Who an error is about: the section label and where to point when the key has no line.
struct Scope {
    label: String,
    file: PathBuf,
    line: usize,
}

impl<'a> Builder<'a> {
    fn path_of(&self, file: usize) -> PathBuf {
        self.files
            .get(file)
            .map(|f| f.path.clone())
            .unwrap_or_default()
    }

    fn dir_of(&self, file: usize) -> &'a Path {
        self.files.get(file).map_or(Path::new(""), |f| f.dir())
    }

    /// Records an error about `key` (spelled as in the file) at the item's place, or at the
    /// scope's place when there is no item.
    fn error(
        &mut self,
        kind: Kind,
        scope: &Scope,
        at: Option<&Origin>,
        key: Option<&str>,
        message: String,
    ) {
        let e = self.located(kind, scope, at, key, message);
        self.errors.push(e);
    }

    /// The error `error` records, for the caller to put elsewhere.
    fn located(
        &self,
        kind: Kind,
        scope: &Scope,
        at: Option<&Origin>,
        key: Option<&str>,
        message: String,
    ) -> ConfigError {
        let (file, line, label) = match at {
            Some(o) => {
                let label = match &o.inherited {
                    Some(d) => format!("{} (from DefaultSettings:{d})", scope.label),
                    None => scope.label.clone(),
                };
                (self.path_of(o.file), o.line, label)
            }
            None => (scope.file.clone(), scope.line, scope.label.clone()),
        };
        let mut e = ConfigError::new(kind, file, message)
            .at_line(line)
            .in_section(label);
        if let Some(k) = key {
            e = e.for_key(k);
        }
        e
    }

    /// Interpolates every value of `table` in `keys()` order, as the original's `**section`
    /// did, reporting interpolation errors; `prefix` names the subsection in error keys.
    fn resolve<'t>(
        &mut self,
        table: &'t Table<'a>,
        scope: &Scope,
        prefix: &str,
    ) -> Vec<Value<'t, 'a>> {
        let mut out = Vec::new();
        for (canon, item) in table.iter() {
            let resolved = match item {
                Item::Section { table, .. } => Resolved::Section(table),
                Item::Value { key, raw, origin } => {
                    let tree = self.files.get(origin.file).map(|f| &f.tree);
                    let result = match tree {
                        Some(t) => interpolate_value(t, origin.section, key, raw),
                        None => Ok((*raw).clone()),
                    };
                    match result {
                        Ok(RawValue::Scalar(s)) => Resolved::Str(s),
                        Ok(RawValue::List(items)) => Resolved::List(items),
                        Err(e) => {
                            let k = format!("{prefix}{key}");
                            let kind = interpolation_kind(&e);
                            self.error(kind, scope, Some(origin), Some(&k), e.to_string());
                            Resolved::Failed
                        }
                    }
                }
            };
            out.push((canon.as_str(), item, resolved));
        }
        out
    }

    /// A single value for `canon`: `None` when absent, `Some(None)` when present but unusable
    /// (the problem is reported here, or was during interpolation).
    fn scalar(
        &mut self,
        values: &Values<'_, 'a>,
        canon: &str,
        scope: &Scope,
        prefix: &str,
    ) -> Option<Option<(String, Origin, String)>> {
        let value = values.iter().find(|(k, _, _)| *k == canon)?;
        Some(self.scalar_of(value, scope, prefix))
    }

    /// `scalar` of one value already found.
    fn scalar_of(
        &mut self,
        (_, item, resolved): &Value<'_, 'a>,
        scope: &Scope,
        prefix: &str,
    ) -> Option<(String, Origin, String)> {
        let spelled = || format!("{prefix}{}", item.key());
        match resolved {
            Resolved::Str(s) => Some((s.clone(), item.origin().clone(), item.key().to_string())),
            Resolved::List(_) => {
                self.error(
                    Kind::ListValue,
                    scope,
                    Some(item.origin()),
                    Some(&spelled()),
                    format!(
                        "Invalid value for config parameter {}: a list (unquoted comma); quote the value",
                        item.key()
                    ),
                );
                None
            }
            Resolved::Section(_) => {
                self.error(
                    Kind::SubsectionValue,
                    scope,
                    Some(item.origin()),
                    Some(&spelled()),
                    format!(
                        "Invalid value for config parameter {}: a subsection, where a value is expected",
                        item.key()
                    ),
                );
                None
            }
            Resolved::Failed => None,
        }
    }

    fn reject(
        &mut self,
        scope: &Scope,
        origin: &Origin,
        key: &str,
        (kind, message): (Kind, String),
    ) {
        self.error(kind, scope, Some(origin), Some(key), message);
    }

    fn boolean(
        &mut self,
        values: &Values<'_, 'a>,
        canon: &str,
        default: bool,
        scope: &Scope,
    ) -> bool {
        match self.scalar(values, canon, scope, "") {
            Some(Some((v, origin, key))) => match to_bool(&key, &v) {
                Ok(b) => b,
                Err(r) => {
                    self.reject(scope, &origin, &key, r);
                    default
                }
            },
            _ => default,
        }
    }

    fn int(
        &mut self,
        values: &Values<'_, 'a>,
        canon: &str,
        default: u64,
        scope: &Scope,
        prefix: &str,
    ) -> u64 {
        match self.scalar(values, canon, scope, prefix) {
            Some(Some((v, origin, key))) => match to_int(&key, &v) {
                Ok(n) => n,
                Err(r) => {
                    self.reject(scope, &origin, &format!("{prefix}{key}"), r);
                    default
                }
            },
            _ => default,
        }
    }

    fn float(
        &mut self,
        values: &Values<'_, 'a>,
        canon: &str,
        default: f64,
        scope: &Scope,
        prefix: &str,
    ) -> f64 {
        match self.scalar(values, canon, scope, prefix) {
            Some(Some((v, origin, key))) => match to_float(&key, &v) {
                Ok(n) => n,
                Err(r) => {
                    self.reject(scope, &origin, &format!("{prefix}{key}"), r);
                    default
                }
            },
            _ => default,
        }
    }

    /// New in 2.0: a value that may be written as a list (`a, b` unquoted) or a string
    /// (`"a, b"`), as the same text either way.
    fn text(
        &mut self,
        values: &Values<'_, 'a>,
        canon: &str,
        scope: &Scope,
        prefix: &str,
    ) -> Option<(String, Origin, String)> {
        let (_, item, resolved) = values.iter().find(|(k, _, _)| *k == canon)?;
        match resolved {
            Resolved::List(items) => Some((
                items.join(", "),
                item.origin().clone(),
                item.key().to_string(),
            )),
            _ => self.scalar(values, canon, scope, prefix).flatten(),
        }
    }

    /// New in 2.0: a duration (seconds, or a number with s, m, h or d); `None` when absent or
    /// unusable (reported).
    fn duration(
        &mut self,
        values: &Values<'_, 'a>,
        canon: &str,
        scope: &Scope,
        prefix: &str,
    ) -> Option<Duration> {
        let (v, origin, key) = self.scalar(values, canon, scope, prefix)??;
        match parse_duration(v.trim()) {
            Ok(d) => Some(d),
            Err(e) => {
                self.error(
                    Kind::InvalidDuration,
                    scope,
                    Some(&origin),
                    Some(&format!("{prefix}{key}")),
                    format!("Invalid value for config parameter {key}: {e}. Got {v}"),
                );
                None
            }
        }
    }

    /// A key of 1.5.13 that counts whole seconds: its rules and messages, and since 2.0 also a
    /// number with a unit (`90s`, `15m`, `12h`, `3d`), rounded up to whole seconds.
    fn int_seconds(
        &mut self,
        values: &Values<'_, 'a>,
        canon: &str,
        default: u64,
        scope: &Scope,
        prefix: &str,
    ) -> u64 {
        if let Some(d) = self.with_unit(values, canon, scope, prefix) {
            return d.map_or(default, |d| d.as_secs() + u64::from(d.subsec_nanos() > 0));
        }
        self.int(values, canon, default, scope, prefix)
    }

    /// As `int_seconds`, for the keys 1.5.13 read as floating-point seconds.
    /// `stop_signal`: a signal name or number as `usrsvc signal` takes it (SIGTERM when
    /// absent). SIGSTOP and SIGCONT stop nothing and are refused.
    fn stop_signal(&mut self, values: &Values<'_, 'a>, scope: &Scope) -> i32 {
        use rustix::process::Signal;
        let term = Signal::TERM.as_raw();
        let Some(Some((v, origin, key))) = self.scalar(values, "stop_signal", scope, "") else {
            return term;
        };
        match parse_signal(&v) {
            Some(s) if s != Signal::STOP && s != Signal::CONT => s.as_raw(),
            _ => {
                self.error(
                    Kind::InvalidSignal,
                    scope,
                    Some(&origin),
                    Some(&key),
                    format!(
                        "Invalid value for config parameter {key}: {v:?} is not a signal that stops a program (a name such as TERM, QUIT, INT, HUP, USR1, or a number)"
                    ),
                );
                term
            }
        }
    }

    fn float_seconds(
        &mut self,
        values: &Values<'_, 'a>,
        canon: &str,
        default: f64,
        scope: &Scope,
        prefix: &str,
    ) -> f64 {
        if let Some(d) = self.with_unit(values, canon, scope, prefix) {
            return d.map_or(default, |d| d.as_secs_f64());
        }
        self.float(values, canon, default, scope, prefix)
    }

    /// `Some` when the key's value ends in a unit letter: then it is a duration (`Some(None)`
    /// when it does not parse; reported). Values without a unit keep 1.5.13's rules.
    fn with_unit(
        &mut self,
        values: &Values<'_, 'a>,
        canon: &str,
        scope: &Scope,
        prefix: &str,
    ) -> Option<Option<Duration>> {
        let (_, _, resolved) = values.iter().find(|(k, _, _)| *k == canon)?;
        let Resolved::Str(v) = resolved else {
            return None;
        };
        let v = v.trim();
        if !v.starts_with(|c: char| c.is_ascii_digit())
            || !v.ends_with(|c: char| c.is_ascii_alphabetic())
        {
            return None;
        }
        Some(self.duration(values, canon, scope, prefix))
    }

    /// New in 2.0: `restart_every`, `restart_at`, `restart_jitter`, `restart_windows` of a
    /// program or group (windows left `None` here when not set: the caller applies
    /// `[Main]`'s).
    fn schedule(&mut self, values: &Values<'_, 'a>, scope: &Scope) -> Schedule {
        // `restart_every = 3` is three seconds, and every restart succeeds, so nothing would
        // stop the storm a typo for `3d` starts: a plain number must be a minute or more (a
        // unit says what is meant: `3s`).
        if let Some(Some((v, origin, key))) = self.scalar(values, "restart_every", scope, "") {
            let plain = v.trim().parse::<f64>().ok();
            if plain.is_some_and(|n| n > 0.0 && n < 60.0) {
                self.error(
                    Kind::InvalidDuration,
                    scope,
                    Some(&origin),
                    Some(&key),
                    format!(
                        "restart_every = {v} means every {v} seconds; write {v}s if that is meant, or give a unit (m, h, d)."
                    ),
                );
            }
        }
        let every = self
            .duration(values, "restart_every", scope, "")
            .filter(|d| !d.is_zero());
        let at = self
            .text(values, "restart_at", scope, "")
            .filter(|(v, _, _)| !v.trim().is_empty())
            .and_then(|(v, origin, key)| match parse_times(v.trim()) {
                Ok(t) => Some(t),
                Err(e) => {
                    self.error(
                        Kind::InvalidSchedule,
                        scope,
                        Some(&origin),
                        Some(&key),
                        format!("Invalid value for config parameter {key}: {e}. Got {v}"),
                    );
                    None
                }
            });
        let jitter = self
            .duration(values, "restart_jitter", scope, "")
            .unwrap_or_default();
        let windows = self.windows(values, scope);
        Schedule {
            every,
            at,
            jitter,
            windows,
        }
    }

    fn windows(&mut self, values: &Values<'_, 'a>, scope: &Scope) -> Option<Windows> {
        let (v, origin, key) = self
            .text(values, "restart_windows", scope, "")
            .filter(|(v, _, _)| !v.trim().is_empty())?;
        match parse_windows(v.trim()) {
            Ok(w) => Some(w),
            Err(e) => {
                self.error(
                    Kind::InvalidSchedule,
                    scope,
                    Some(&origin),
                    Some(&key),
                    format!("Invalid value for config parameter {key}: {e}. Got {v}"),
                );
                None
            }
        }
    }

    /// A path-valued key, resolved against the directory of the file it came from.
    fn path(&self, value: &str, origin: &Origin) -> PathBuf {
        resolve_path(value, self.home, self.dir_of(origin.file))
    }

    /// Reports unknown keys, if any, as one error at the first of them: `message` followed by
    /// their names as a Python list (1.5.13's wording).
    fn unknown_keys(&mut self, unknown: &[&Item<'a>], kind: Kind, scope: &Scope, message: &str) {
        if let Some(first) = unknown.first() {
            let names: Vec<&str> = unknown.iter().map(|i| i.key()).collect();
            let at = first.origin().clone();
            self.error(
                kind,
                scope,
                Some(&at),
                None,
                format!("{message}{}", py_list_repr(&names)),
            );
        }
    }

    /// Unknown keys (not in `known`, canonical spellings), in `keys()` order.
    fn unknown<'t>(values: &[Value<'t, 'a>], known: &[&str]) -> Vec<&'t Item<'a>> {
        values
            .iter()
            .filter(|(k, _, _)| !known.contains(k))
            .map(|(_, item, _)| *item)
            .collect()
    }

    // ---------------------------------------------------------------- [Main] (spec §4.4)

    fn main(&mut self) -> Option<MainConfig> {
        let file = self.files.first()?;
        let tree = &file.tree;
        let scope = Scope {
            label: "Main".into(),
            file: file.path.clone(),
            line: 0,
        };
        let Some(sec) = tree.child(ROOT, "Main") else {
            let (kind, message) = if tree.entry(ROOT, "Main").is_some() {
                (Kind::NotASection, "Main must be a section, like [Main]")
            } else {
                (
                    Kind::MissingMain,
                    "Missing [Main] section in main config. Required.",
                )
            };
            let mut e = ConfigError::new(kind, file.path.clone(), message.into());
            if let Some(entry) = tree.entry(ROOT, "Main") {
                e = e.at_line(entry.line);
            }
            self.errors.push(e);
            return None;
        };
        let scope = Scope {
            line: tree.section(sec).map_or(0, |s| s.line),
            ..scope
        };
        let table = Table::from_section(self.files, 0, sec, false, None);
        let values = self.resolve(&table, &scope, "");

        let unknown = Self::unknown(&values, &MAIN_KEYS);
        self.unknown_keys(
            &unknown,
            Kind::UnknownMainKeys,
            &scope,
            "Unknown config options in Main section: ",
        );

        let config_dir = match self.scalar(&values, "config_dir", &scope, "") {
            Some(Some((v, origin, _))) if !v.is_empty() => {
                Some(config_dir_path(&v, self.home, self.dir_of(origin.file)))
            }
            _ => None,
        };
        let pidfile = match self.scalar(&values, "pidfile", &scope, "") {
            Some(Some((v, origin, _))) if !v.is_empty() => {
                let p = self.path(&v, &origin);
                self.daemon_file("pidfile", &p, &scope, Some(&origin));
                p
            }
            _ => {
                let p = self.home.join(format!("{}_usrsvcd.pid", self.probe.uid()));
                self.daemon_file("pidfile", &p, &scope, None);
                p
            }
        };
        let usrsvcd_stdout = match self.scalar(&values, "usrsvcd_stdout", &scope, "") {
            Some(Some((v, origin, key))) if !v.is_empty() => {
                let p = self.path(&v, &origin);
                self.daemon_file(&key, &p, &scope, Some(&origin));
                Some(p)
            }
            _ => None,
        };
        let usrsvcd_stderr = match self.scalar(&values, "usrsvcd_stderr", &scope, "") {
            Some(Some((v, _, _))) if v == "stdout" => Some(LogTarget::Stdout),
            Some(Some((v, origin, key))) if !v.is_empty() => {
                let p = self.path(&v, &origin);
                self.daemon_file(&key, &p, &scope, Some(&origin));
                Some(LogTarget::Path(p))
            }
            _ => None,
        };
        let sendmail_path = match self.scalar(&values, "sendmail_path", &scope, "") {
            Some(Some((v, origin, key))) if !v.is_empty() && v != "auto" => {
                let p = self.path(&v, &origin);
                if !self.probe.exists(&p) {
                    self.error(
                        Kind::SendmailMissing,
                        &scope,
                        Some(&origin),
                        Some(&key),
                        format!("sendmail_path \"{}\" does not exist.", p.display()),
                    );
                }
                Some(p)
            }
            Some(None) => None,
            _ => self.find_sendmail(),
        };
        let smtp = self.smtp(&values, &scope);
        let restart_windows = self.windows(&values, &scope);
        let kill_switch_file = match self.scalar(&values, "kill_switch_file", &scope, "") {
            Some(Some((v, origin, _))) if !v.is_empty() => Some(self.path(&v, &origin)),
            _ => None,
        };
        let require_reason = self.boolean(&values, "require_reason", false, &scope);
        let audit_log = match self.scalar(&values, "audit_log", &scope, "") {
            Some(Some((v, origin, _))) if !v.is_empty() => Some(self.path(&v, &origin)),
            _ => None,
        };
        let audit_syslog = match self.scalar(&values, "audit_syslog", &scope, "") {
            Some(Some((v, origin, key))) if !v.trim().is_empty() => {
                match v.trim().parse::<crate::audit::SyslogTarget>() {
                    Ok(_) => Some(v.trim().to_string()),
                    Err(e) => {
                        self.error(
                            Kind::InvalidSyslog,
                            &scope,
                            Some(&origin),
                            Some(&key),
                            format!("Invalid value for config parameter {key}: {e}"),
                        );
                        None
                    }
                }
            }
            _ => None,
        };
        Some(MainConfig {
            config_dir,
            pidfile,
            usrsvcd_stdout,
            usrsvcd_stderr,
            sendmail_path,
            smtp,
            restart_windows,
            kill_switch_file,
            require_reason,
            audit_log,
            audit_syslog,
            allow_users: Vec::new(),
            allow_groups: Vec::new(),
            shared_socket: None,
        })
    }

    /// The `smtp_*` keys: `None` unless `smtp_host` is set; the others without it are an error
    /// (they would silently do nothing).
    fn smtp(&mut self, values: &Values<'_, 'a>, scope: &Scope) -> Option<SmtpConfig> {
        let host = match self.scalar(values, "smtp_host", scope, "") {
            Some(Some((v, _, _))) if !v.trim().is_empty() => Some(v.trim().to_string()),
            _ => None,
        };
        let port = self.int(values, "smtp_port", 25, scope, "");
        let starttls = self.boolean(values, "smtp_starttls", false, scope);
        let from = match self.scalar(values, "smtp_from", scope, "") {
            Some(Some((v, _, _))) if !v.trim().is_empty() => Some(v.trim().to_string()),
            _ => None,
        };
        let credentials_file = match self.scalar(values, "smtp_credentials_file", scope, "") {
            Some(Some((v, origin, _))) if !v.is_empty() => Some(self.path(&v, &origin)),
            _ => None,
        };
        if host.is_none() {
            for key in [
                "smtp_port",
                "smtp_from",
                "smtp_starttls",
                "smtp_credentials_file",
            ] {
                if let Some((_, item, _)) = values.iter().find(|(k, _, _)| *k == key) {
                    let origin = item.origin().clone();
                    self.error(
                        Kind::SmtpWithoutHost,
                        scope,
                        Some(&origin),
                        Some(key),
                        format!("{key} is set but smtp_host is not; set smtp_host to send alerts by SMTP."),
                    );
                }
            }
            return None;
        }
        if port == 0 || port > 65535 {
            if let Some(Some((_, origin, key))) = self.scalar(values, "smtp_port", scope, "") {
                self.error(
                    Kind::InvalidRange,
                    scope,
                    Some(&origin),
                    Some(&key),
                    format!("smtp_port must be between 1 and 65535, not {port}."),
                );
            }
        }
        Some(SmtpConfig {
            host: host?,
            port: u16::try_from(port).unwrap_or(25),
            from,
            starttls,
            credentials_file,
        })
    }

    /// Spec §7.3: the two usual places, then the first executable `sendmail` on `$PATH`.
    fn find_sendmail(&self) -> Option<PathBuf> {
        for p in ["/usr/sbin/sendmail", "/usr/bin/sendmail"] {
            if self.probe.exists(Path::new(p)) {
                return Some(PathBuf::from(p));
            }
        }
        let path = self.probe.path_var()?;
        let path = path.to_string_lossy().into_owned();
        for dir in path.split(':') {
            if dir.is_empty() {
                continue;
            }
            let dir = match dir.strip_suffix('/') {
                Some(d) if !d.is_empty() => d,
                _ => dir,
            };
            let candidate = PathBuf::from(format!("{dir}/sendmail"));
            if self.probe.is_executable(&candidate) {
                return Some(candidate);
            }
        }
        None
    }

    // ------------------------------------------------- DefaultSettings (spec §4.1.8, §4.7)

    /// Pass 1 of the original: every `DefaultSettings:NAME` at the top of any file.
    fn collect_defaults(&mut self) -> HashMap<String, DefaultsDef> {
        let mut found: HashMap<String, DefaultsDef> = HashMap::new();
        for (fi, file) in self.files.iter().enumerate() {
            let Some(root) = file.tree.section(ROOT) else {
                continue;
            };
            let scalars = root.entries.iter().map(|e| (e.key.as_str(), e.line, None));
            let sections = root.children.iter().filter_map(|&c| {
                file.tree
                    .section(c)
                    .map(|s| (s.name.as_str(), s.line, Some(c)))
            });
            for (key, line, section) in scalars.chain(sections) {
                let Some(name) = key.strip_prefix("DefaultSettings:") else {
                    continue;
                };
                if name.is_empty() {
                    self.errors.push(
                        ConfigError::new(
                            Kind::DefaultsWithoutName,
                            file.path.clone(),
                            format!(
                                "DefaultSettings section defined without a name in \"{}\"",
                                file.path.display()
                            ),
                        )
                        .at_line(line)
                        .in_section(key),
                    );
                    continue;
                }
                if let Some(first) = found.get(name) {
                    let message = format!(
                        "Multiple DefaultSettings object with name \"{name}\". Second encountered in \"{}\" (first defined at {}:{})",
                        file.path.display(),
                        self.path_of(first.file).display(),
                        first.line
                    );
                    self.errors.push(
                        ConfigError::new(Kind::DuplicateDefaults, file.path.clone(), message)
                            .at_line(line)
                            .in_section(key),
                    );
                    continue;
                }
                found.insert(
                    name.to_string(),
                    DefaultsDef {
                        file: fi,
                        line,
                        section,
                    },
                );
            }
        }
        found
    }

    // ------------------------------------------------------------- programs (spec §4.5)

    /// Pass 2 of the original: every `Program:NAME` at the top of any file.
    fn programs(&mut self, defaults: &HashMap<String, DefaultsDef>) -> Vec<ProgramConfig> {
        let mut programs: Vec<ProgramConfig> = Vec::new();
        let mut seen: HashMap<String, Location> = HashMap::new();
        let files = self.files;
        for (fi, file) in files.iter().enumerate() {
            let Some(root) = file.tree.section(ROOT) else {
                continue;
            };
            for e in &root.entries {
                if let Some(name) = e.key.strip_prefix("Program:") {
                    self.errors.push(
                        ConfigError::new(
                            Kind::NotASection,
                            file.path.clone(),
                            format!("Program:{name} must be a section, like [Program:{name}]"),
                        )
                        .at_line(e.line)
                        .for_key(e.key.clone()),
                    );
                }
            }
            for &c in &root.children {
                let Some(sec) = file.tree.section(c) else {
                    continue;
                };
                let Some(name) = sec.name.strip_prefix("Program:") else {
                    continue;
                };
                let here = Location {
                    file: file.path.clone(),
                    line: sec.line,
                };
                let scope = Scope {
                    label: sec.name.clone(),
                    file: file.path.clone(),
                    line: sec.line,
                };
                let duplicate = seen.get(name).cloned();
                if let Some(first) = &duplicate {
                    self.errors.push(
                        ConfigError::new(
                            Kind::DuplicateProgram,
                            file.path.clone(),
                            format!(
                                "Program \"{name}\" is defined more than once: first at {}:{}, again at {}:{}",
                                first.file.display(),
                                first.line,
                                here.file.display(),
                                here.line
                            ),
                        )
                        .at_line(sec.line)
                        .in_section(sec.name.clone()),
                    );
                } else {
                    seen.insert(name.to_string(), here.clone());
                }
                let table = Table::from_section(files, fi, c, true, None);
                let Some(table) = self.apply_defaults(name, table, &scope, defaults) else {
                    continue;
                };
                if let Some(p) = self.program(name, &table, here, &scope) {
                    if duplicate.is_none() {
                        programs.push(p);
                    }
                }
            }
        }
        programs
    }

    /// The program's keys with its `defaults =` merged in, or `None` when that fails (then
    /// the program's own keys alone would only produce misleading errors).
    fn apply_defaults(
        &mut self,
        name: &str,
        table: Table<'a>,
        scope: &Scope,
        defaults: &HashMap<String, DefaultsDef>,
    ) -> Option<Table<'a>> {
        let Some(item) = table.get("defaults") else {
            return Some(table);
        };
        let origin = item.origin().clone();
        let wanted = match item {
            Item::Section { .. } => {
                self.error(
                    Kind::SubsectionValue,
                    scope,
                    Some(&origin),
                    Some("defaults"),
                    "Invalid value for config parameter defaults: a subsection, where a value is expected".into(),
                );
                return None;
            }
            Item::Value { key, raw, .. } => {
                let tree = &self.files.get(origin.file)?.tree;
                match interpolate_value(tree, origin.section, key, raw) {
                    Ok(RawValue::Scalar(s)) => s,
                    Ok(RawValue::List(_)) => {
                        self.error(
                            Kind::ListValue,
                            scope,
                            Some(&origin),
                            Some("defaults"),
                            "Invalid value for config parameter defaults: a list (unquoted comma); quote the value".into(),
                        );
                        return None;
                    }
                    Err(e) => {
                        self.error(
                            interpolation_kind(&e),
                            scope,
                            Some(&origin),
                            Some("defaults"),
                            e.to_string(),
                        );
                        return None;
                    }
                }
            }
        };
        let Some(def) = defaults.get(&wanted) else {
            let file = self.path_of(origin.file);
            self.error(
                Kind::UnknownDefaults,
                scope,
                Some(&origin),
                Some("defaults"),
                format!(
                    "Program \"{name}\" in file \"{}\" uses a \"defaults\" of \"{wanted}\", but no such DefaultSettings section exists in read configuration files!",
                    file.display()
                ),
            );
            return None;
        };
        let Some(section) = def.section else {
            self.error(
                Kind::NotASection,
                scope,
                Some(&origin),
                Some("defaults"),
                format!(
                    "DefaultSettings:{wanted} must be a section, like [DefaultSettings:{wanted}]"
                ),
            );
            return None;
        };
        let base = Table::from_section(self.files, def.file, section, true, Some(&wanted));
        Some(merge(&base, &table))
    }

    /// One program's keys, checked in the original's order (spec §4.5).
    fn program(
        &mut self,
        name: &str,
        table: &Table<'a>,
        defined_at: Location,
        scope: &Scope,
    ) -> Option<ProgramConfig> {
        let before = self.errors.len();
        let values = self.resolve(table, scope, "");

        // 1. command
        let mut command = match self.scalar(&values, "command", scope, "") {
            None => {
                // The original crashed here (`None.strip()`).
                self.error(
                    Kind::MissingCommand,
                    scope,
                    None,
                    Some("command"),
                    format!("Missing command for program: \"{name}\""),
                );
                None
            }
            Some(v) => v.map(|(v, origin, _)| (py_strip(&v).to_string(), origin)),
        };
        if let Some((c, _)) = &mut command {
            if let Some(stripped) = c.strip_suffix('&') {
                self.warnings.push(format!(
                    "Warning: Program {name} is configured to launch in the background (ends with &) which is not supported. Disregarding final &."
                ));
                *c = stripped.to_string();
            }
        }

        // 2. pidfile
        let pidfile = match self.scalar(&values, "pidfile", scope, "") {
            Some(Some((v, origin, _))) if !v.is_empty() => Some(self.path(&v, &origin)),
            Some(None) => None,
            found => {
                let at = found.and_then(|f| f.map(|(_, o, _)| o));
                self.error(
                    Kind::PidfileMissing,
                    scope,
                    at.as_ref(),
                    Some("pidfile"),
                    "pidfile must be defined for a program and must be an absolute path.".into(),
                );
                None
            }
        };

        // 3. typed keys, in the original's order
        let enabled = self.boolean(&values, "enabled", true, scope);
        let autostart = self.boolean(&values, "autostart", true, scope);
        let autorestart = self.boolean(&values, "autorestart", true, scope);
        self.conflicts(table, "maxrestarts", scope);
        let maxrestarts = self.int(&values, "maxrestarts", 0, scope, "");
        let restart_delay = self.int_seconds(&values, "restart_delay", 0, scope, "");
        let success_seconds = self.float_seconds(&values, "success_seconds", 2.0, scope, "");
        let autopid = self.boolean(&values, "autopid", true, scope);
        let useshell = self.boolean(&values, "useshell", false, scope);
        let scan_for_process = self.boolean(&values, "scan_for_process", true, scope);
        let term_to_kill_seconds =
            self.float_seconds(&values, "term_to_kill_seconds", 8.0, scope, "");
        let inherit_env = self.boolean(&values, "inherit_env", true, scope);
        let stop_group = self.boolean(&values, "stop_group", true, scope);
        let stop_signal = self.stop_signal(&values, scope);
        let restart_delay_max = self.int_seconds(&values, "restart_delay_max", 300, scope, "");
        if restart_delay_max < restart_delay {
            if let Some(Some((_, origin, key))) =
                self.scalar(&values, "restart_delay_max", scope, "")
            {
                self.error(
                    Kind::InvalidRange,
                    scope,
                    Some(&origin),
                    Some(&key),
                    format!(
                        "restart_delay_max ({restart_delay_max}) must not be less than restart_delay ({restart_delay})."
                    ),
                );
            }
        }
        let restart_delay_max = restart_delay_max.max(restart_delay);
        let stable_seconds = self.float_seconds(&values, "stable_seconds", 60.0, scope, "");
        let email_interval = self.int_seconds(&values, "email_interval", 300, scope, "");

        // 4. defaults (checked before the merge; only kept here)
        let defaults = values.iter().find_map(|(k, _, r)| match (k, r) {
            (&"defaults", Resolved::Str(s)) => Some(s.clone()),
            _ => None,
        });

        // 5. Env
        let env = self.env(&values, scope);

        // 6. Monitoring
        self.conflicts(table, "Monitoring", scope);
        let monitoring = self.monitoring(&values, scope);

        // 7. name
        if name.is_empty() {
            self.error(
                Kind::ProgramWithoutName,
                scope,
                None,
                None,
                "Program Config defined without a name.".into(),
            );
        }

        // 8. command non-empty and splittable
        let mut argv = Vec::new();
        match &command {
            Some((c, origin)) if c.contains('\0') => {
                let origin = origin.clone();
                self.nul_byte("command", scope, &origin);
            }
            Some((c, origin)) if c.is_empty() => {
                let origin = origin.clone();
                self.error(
                    Kind::MissingCommand,
                    scope,
                    Some(&origin),
                    Some("command"),
                    format!("Missing command for program: \"{name}\""),
                );
            }
            Some((c, origin)) => match shlex_split(c) {
                Ok(words) => argv = words,
                Err(e) => {
                    let origin = origin.clone();
                    self.error(
                        Kind::CommandUnparsable,
                        scope,
                        Some(&origin),
                        Some("command"),
                        format!("Cannot parse command,\n{c}\nError: {e}"),
                    );
                }
            },
            None => {}
        }

        // 9. proctitle_re
        let proctitle_re = match self.scalar(&values, "proctitle_re", scope, "") {
            Some(Some((re, origin, key))) if !re.is_empty() => {
                if let Err(e) = fancy_regex::Regex::new(&re) {
                    self.error(
                        Kind::InvalidProctitleRe,
                        scope,
                        Some(&origin),
                        Some(&key),
                        format!(
                            "Cannot parse proctitle_re: {re}\nError: {}",
                            regex_error(&re, &e)
                        ),
                    );
                }
                Some(re)
            }
            _ => None,
        };

        // 10. stdout
        let stdout = match self.scalar(&values, "stdout", scope, "") {
            Some(Some((v, origin, key))) if !v.is_empty() => {
                let p = self.path(&v, &origin);
                self.log_dir(name, "stdout", &p, scope, &origin, &key);
                Some(p)
            }
            Some(None) => None,
            found => {
                let at = found.and_then(|f| f.map(|(_, o, _)| o));
                self.error(
                    Kind::StdoutMissing,
                    scope,
                    at.as_ref(),
                    Some("stdout"),
                    format!("Program {name} does not define a value for stdout."),
                );
                None
            }
        };

        // 11. stderr
        let stderr = match self.scalar(&values, "stderr", scope, "") {
            Some(Some((v, origin, key))) if !v.is_empty() && v != "stdout" => {
                let p = self.path(&v, &origin);
                self.log_dir(name, "stderr", &p, scope, &origin, &key);
                Some(p)
            }
            _ => stdout.clone(),
        };

        // 12. email_alerts
        let email_alerts = match self.scalar(&values, "email_alerts", scope, "") {
            Some(Some((v, _, _))) if !v.is_empty() => Some(v),
            _ => None,
        };

        // 13. new in 2.0: planned restarts and health checks
        let schedule = self.schedule(&values, scope);
        let health_checks = self.health_checks(&values, scope);

        // 13b. new in 2.0: the exec environment (build/exec.rs)
        let exec = self.exec(&values, scope);

        // 14. anything else
        let unknown: Vec<&Item<'a>> = Self::unknown(&values, &PROGRAM_KEYS)
            .into_iter()
            .filter(|i| !i.key().starts_with("HealthCheck:"))
            .filter(|i| !exec::EXEC_KEYS.contains(&i.key()))
            .collect();
        self.unknown_keys(
            &unknown,
            Kind::UnknownKeys,
            scope,
            "Unknown config options: ",
        );

        if self.errors.len() != before {
            return None;
        }
        Some(ProgramConfig {
            name: name.to_string(),
            defined_at,
            command: command.map(|(c, _)| c).unwrap_or_default(),
            argv,
            pidfile: pidfile?,
            enabled,
            autostart,
            autorestart,
            maxrestarts,
            restart_delay,
            restart_delay_max,
            stable_seconds,
            success_seconds,
            autopid,
            useshell,
            scan_for_process,
            term_to_kill_seconds,
            stop_group,
            stop_signal,
            inherit_env,
            defaults,
            env,
            monitoring,
            proctitle_re,
            stdout: stdout?,
            stderr: stderr?,
            email_alerts,
            email_interval,
            schedule,
            health_checks,
            exec,
            allow: Vec::new(),
        })
    }

    /// Both spellings of a synonym in one section.
    fn conflicts(&mut self, table: &Table<'a>, canon: &str, scope: &Scope) {
        let found: Vec<(Origin, String)> = table
            .conflicts
            .iter()
            .filter(|(k, _)| k == canon)
            .map(|(_, item)| (item.origin().clone(), item.key().to_string()))
            .collect();
        for (origin, key) in found {
            let message = match canon {
                "maxrestarts" => "Both maxrestarts and max_restarts are given; they are the same setting, use one".to_string(),
                _ => "Both [[Monitoring]] and [[Monitor]] are given; they are the same subsection, use one".to_string(),
            };
            self.error(
                Kind::SynonymConflict,
                scope,
                Some(&origin),
                Some(&key),
                message,
            );
        }
    }

    /// `probe.is_dir`, asked once per folder (most programs share their log folder).
    fn is_dir(&mut self, dir: &str) -> bool {
        if let Some(&known) = self.dirs.get(dir) {
            return known;
        }
        let found = self.probe.is_dir(Path::new(dir));
        self.dirs.insert(dir.to_string(), found);
        found
    }

    /// A NUL byte in the program's command or environment: `exec` cannot pass one, so the start
    /// would fail; the config is refused instead (new in 2.0). `key` is shown with `\0`.
    fn nul_byte(&mut self, key: &str, scope: &Scope, origin: &Origin) {
        let key = key.replace('\0', "\\0");
        self.error(
            Kind::NulByte,
            scope,
            Some(origin),
            Some(&key),
            format!(
                "Invalid value for config parameter {key}: a NUL byte, which a command line or an environment cannot carry"
            ),
        );
    }

    /// `Program p defines a stdout path as "…" but the folder … does not exist.` In 1.5.13 this
    /// made the whole config invalid; now it is that program's problem alone: a warning here,
    /// and its start fails (exit 136) until the folder is there (design §1.5).
    fn log_dir(
        &mut self,
        name: &str,
        which: &str,
        path: &Path,
        scope: &Scope,
        origin: &Origin,
        key: &str,
    ) {
        let text = path.to_string_lossy();
        let dir = py_dirname(&text);
        if !self.is_dir(dir) {
            let e = self.located(
                Kind::LogDirMissing,
                scope,
                Some(origin),
                Some(key),
                format!(
                    "Program {name} defines a {which} path as \"{text}\" but the folder {dir} does not exist. Starting {name} fails until it exists; the other programs are not affected."
                ),
            );
            self.warnings.push(format!("Warning: {e}"));
        }
    }

    /// A file of the daemon's own (`[Main] pidfile`, `usrsvcd_stdout`, `usrsvcd_stderr`) in a
    /// folder that does not exist: `usrsvcd start` would fail on it (exit 136), `usrsvc` does
    /// not care. Kept apart from the errors, for `usrsvcd checkconfig` (new in 2.0).
    fn daemon_file(&mut self, key: &str, path: &Path, scope: &Scope, origin: Option<&Origin>) {
        let text = path.to_string_lossy();
        let dir = py_dirname(&text);
        if dir.is_empty() || self.probe.is_dir(Path::new(dir)) {
            return;
        }
        let what = if key == "pidfile" {
            "its pidfile"
        } else {
            "its log"
        };
        let e = self.located(
            Kind::DaemonDirMissing,
            scope,
            origin,
            Some(key),
            format!("usrsvcd cannot write {what} \"{text}\": the folder {dir} does not exist."),
        );
        self.daemon_errors.push(e);
    }

    /// A program's `[[NAME]]` subsection, resolved, and the prefix (`NAME.`) its keys carry in
    /// errors; `None` when it is absent, or (reported here) when NAME is a plain value.
    fn subsection<'t>(
        &mut self,
        values: &Values<'t, 'a>,
        name: &str,
        scope: &Scope,
    ) -> Option<(Vec<Value<'t, 'a>>, String)> {
        let (_, item, resolved) = values.iter().find(|(k, _, _)| *k == name)?;
        let Resolved::Section(table) = resolved else {
            if !matches!(resolved, Resolved::Failed) {
                let key = item.key();
                self.error(
                    Kind::NotASubsection,
                    scope,
                    Some(item.origin()),
                    Some(key),
                    format!("{key} must be a subsection, like [[{key}]]"),
                );
            }
            return None;
        };
        let prefix = format!("{}.", item.key());
        let inner = self.resolve(table, scope, &prefix);
        Some((inner, prefix))
    }

    fn env(&mut self, values: &Values<'_, 'a>, scope: &Scope) -> Vec<(String, String)> {
        let Some((inner, prefix)) = self.subsection(values, "Env", scope) else {
            return Vec::new();
        };
        let mut env = Vec::new();
        for value in &inner {
            if let Some((v, origin, key)) = self.scalar_of(value, scope, &prefix) {
                if key.contains('\0') || v.contains('\0') {
                    self.nul_byte(&format!("{prefix}{key}"), scope, &origin);
                } else {
                    env.push((key, v));
                }
            }
        }
        env
    }

    fn monitoring(&mut self, values: &Values<'_, 'a>, scope: &Scope) -> MonitoringConfig {
        let mut m = MonitoringConfig::default();
        let Some((inner, prefix)) = self.subsection(values, "Monitoring", scope) else {
            return m;
        };
        m.monitor_after = self.int_seconds(&inner, "monitor_after", 30, scope, &prefix);
        if let Some(Some((v, origin, _))) = self.scalar(&inner, "activityfile", scope, &prefix) {
            if !v.is_empty() {
                m.activityfile = Some(self.path(&v, &origin));
            }
        }
        m.activityfile_limit = self.int_seconds(&inner, "activityfile_limit", 120, scope, &prefix);
        m.rss_limit = self.int(&inner, "rss_limit", 0, scope, &prefix);
        m.check_interval = self.float_seconds(&inner, "check_interval", 5.0, scope, &prefix);
        if m.check_interval < 0.1 {
            if let Some(Some((_, origin, key))) =
                self.scalar(&inner, "check_interval", scope, &prefix)
            {
                self.error(
                    Kind::InvalidRange,
                    scope,
                    Some(&origin),
                    Some(&format!("{prefix}{key}")),
                    "check_interval must be at least 0.1 seconds.".into(),
                );
            }
            m.check_interval = 5.0;
        }
        let unknown = Self::unknown(&inner, &MONITORING_KEYS);
        self.unknown_keys(
            &unknown,
            Kind::UnknownMonitoringKeys,
            scope,
            "Unknown configuration options in Monitoring section: ",
        );
        m
    }
}

impl<'a> Builder<'a> {
    // ------------------------------------------------------- health checks (new in 2.0)

    /// Every `[[HealthCheck:NAME]]` of a program, in file order.
    fn health_checks(&mut self, values: &Values<'_, 'a>, scope: &Scope) -> Vec<CheckSpec> {
        let mut checks: Vec<CheckSpec> = Vec::new();
        for (canon, item, resolved) in values {
            let Some(name) = canon.strip_prefix("HealthCheck:") else {
                continue;
            };
            // `[[HealthCheck: http]]` is the check `http`.
            let name = name.trim();
            let key = item.key();
            if checks.iter().any(|c| c.name == name) {
                self.error(
                    Kind::InvalidHealthCheck,
                    scope,
                    Some(item.origin()),
                    Some(key),
                    format!("Health check {name} is defined twice in this program."),
                );
                continue;
            }
            let Resolved::Section(table) = resolved else {
                if !matches!(resolved, Resolved::Failed) {
                    self.error(
                        Kind::NotASubsection,
                        scope,
                        Some(item.origin()),
                        Some(key),
                        format!("{key} must be a subsection, like [[{key}]]"),
                    );
                }
                continue;
            };
            let prefix = format!("{key}.");
            let inner = self.resolve(table, scope, &prefix);
            if name.is_empty() {
                self.error(
                    Kind::InvalidHealthCheck,
                    scope,
                    Some(item.origin()),
                    Some(key),
                    "A health check needs a name, like [[HealthCheck:http]]".into(),
                );
            }
            let command = match self.scalar(&inner, "command", scope, &prefix) {
                Some(Some((v, origin, _))) if v.contains('\0') => {
                    self.nul_byte(&format!("{prefix}command"), scope, &origin);
                    None
                }
                Some(Some((v, _, _))) if !v.trim().is_empty() => Some(v.trim().to_string()),
                Some(None) => None,
                _ => {
                    self.error(
                        Kind::InvalidHealthCheck,
                        scope,
                        Some(item.origin()),
                        Some(&format!("{prefix}command")),
                        format!("Health check {name} has no command."),
                    );
                    None
                }
            };
            let positive = |b: &mut Self, k: &str, default: Duration| -> Duration {
                match b.duration(&inner, k, scope, &prefix) {
                    Some(d) if d.is_zero() => {
                        if let Some(Some((_, origin, spelled))) =
                            b.scalar(&inner, k, scope, &prefix)
                        {
                            b.error(
                                Kind::InvalidRange,
                                scope,
                                Some(&origin),
                                Some(&format!("{prefix}{spelled}")),
                                format!("{spelled} must be more than 0."),
                            );
                        }
                        default
                    }
                    Some(d) => d,
                    None => default,
                }
            };
            let interval = positive(self, "interval", Duration::from_secs(30));
            let timeout = positive(self, "timeout", Duration::from_secs(10));
            let start_period = self
                .duration(&inner, "start_period", scope, &prefix)
                .unwrap_or_default();
            let failures = self.int(&inner, "failures", 3, scope, &prefix);
            if failures == 0 {
                if let Some(Some((_, origin, k))) = self.scalar(&inner, "failures", scope, &prefix)
                {
                    self.error(
                        Kind::InvalidRange,
                        scope,
                        Some(&origin),
                        Some(&format!("{prefix}{k}")),
                        "failures must be at least 1.".into(),
                    );
                }
            }
            let failures = failures.max(1);
            let repair = match self.scalar(&inner, "repair", scope, &prefix) {
                Some(Some((v, _, _))) if !v.trim().is_empty() => Some(v.trim().to_string()),
                _ => None,
            };
            let action = match self.scalar(&inner, "action", scope, &prefix) {
                Some(Some((v, origin, k))) => match v.trim().to_lowercase().as_str() {
                    "restart" | "" => HealthAction::Restart,
                    "alert" => HealthAction::Alert,
                    "none" => HealthAction::None,
                    other => {
                        self.error(
                            Kind::InvalidHealthCheck,
                            scope,
                            Some(&origin),
                            Some(&format!("{prefix}{k}")),
                            format!("action must be restart, alert or none, not \"{other}\"."),
                        );
                        HealthAction::Restart
                    }
                },
                _ => HealthAction::Restart,
            };
            let unknown = Self::unknown(&inner, &HEALTH_KEYS);
            self.unknown_keys(
                &unknown,
                Kind::UnknownHealthCheckKeys,
                scope,
                &format!("Unknown configuration options in {key} section: "),
            );
            if let Some(command) = command {
                checks.push(CheckSpec {
                    name: name.to_string(),
                    command,
                    interval,
                    timeout,
                    start_period,
                    failures: u32::try_from(failures).unwrap_or(u32::MAX),
                    repair,
                    action,
                });
            }
        }
        checks
    }

    // -------------------------------------------------------------- groups (new in 2.0)

    /// Every `[Group:NAME]` at the top of any file, checked against the programs.
    fn groups(
        &mut self,
        programs: &[ProgramConfig],
        main_windows: Option<&Windows>,
    ) -> Vec<GroupConfig> {
        let mut groups: Vec<GroupConfig> = Vec::new();
        let mut seen: HashMap<String, Location> = HashMap::new();
        let names: HashSet<&str> = programs.iter().map(|p| p.name.as_str()).collect();
        let files = self.files;
        for (fi, file) in files.iter().enumerate() {
            let Some(root) = file.tree.section(ROOT) else {
                continue;
            };
            // A top-level `Group:x = …` key is ignored, as 1.5.13 ignored every top-level key.
            for &c in &root.children {
                let Some(sec) = file.tree.section(c) else {
                    continue;
                };
                let Some(name) = sec.name.strip_prefix("Group:") else {
                    continue;
                };
                let scope = Scope {
                    label: sec.name.clone(),
                    file: file.path.clone(),
                    line: sec.line,
                };
                let here = Location {
                    file: file.path.clone(),
                    line: sec.line,
                };
                let table = Table::from_section(files, fi, c, false, None);
                // 1.5.13 ignored every section it did not know: a `[Group:…]` without
                // `programs` is one of those, not a 2.0 group, and is ignored as it was.
                if table.get("programs").is_none() {
                    self.warnings.push(format!(
                        "Warning: [{}] at {}:{} has no \"programs\" key: ignored, as usrsvc 1.5.13 ignored it. A group names its members with programs = NAME, NAME, ...",
                        sec.name,
                        file.path.display(),
                        sec.line
                    ));
                    continue;
                }
                let first = seen.get(name).cloned();
                if let Some(g) = self.group(name, &table, here, &scope, &names, first) {
                    let mut g = g;
                    if g.schedule.windows.is_none() {
                        g.schedule.windows = main_windows.cloned();
                    }
                    seen.entry(g.name.clone())
                        .or_insert_with(|| g.defined_at.clone());
                    groups.push(g);
                }
            }
        }
        groups
    }

    fn group(
        &mut self,
        name: &str,
        table: &Table<'a>,
        defined_at: Location,
        scope: &Scope,
        programs: &HashSet<&str>,
        first: Option<Location>,
    ) -> Option<GroupConfig> {
        let before = self.errors.len();
        let values = self.resolve(table, scope, "");
        let bad = |b: &mut Self, at: Option<&Origin>, key: Option<&str>, message: String| {
            b.error(Kind::InvalidGroup, scope, at, key, message);
        };
        if name.is_empty() {
            bad(self, None, None, "Group defined without a name.".into());
        } else if name == "all" {
            bad(
                self,
                None,
                None,
                "A group cannot be called \"all\": usrsvc ACTION all means every program.".into(),
            );
        }
        // A group may carry a program's name (`xrootd` over `cmsd` and `xrootd`): on the
        // command line NAME then means the group, `program:NAME` the program alone.
        if let Some(first) = first {
            bad(
                self,
                None,
                None,
                format!(
                    "Group \"{name}\" is defined more than once: first at {}:{}",
                    first.file.display(),
                    first.line
                ),
            );
        }
        let mut members: Vec<String> = Vec::new();
        let mut member_set: HashSet<String> = HashSet::new();
        match self.text(&values, "programs", scope, "") {
            Some((v, origin, key)) => {
                for m in v.split(',').map(str::trim).filter(|m| !m.is_empty()) {
                    if !programs.contains(m) {
                        bad(
                            self,
                            Some(&origin),
                            Some(&key),
                            format!("Group \"{name}\" names a program that is not defined: {m}"),
                        );
                    } else if !member_set.insert(m.to_string()) {
                        bad(
                            self,
                            Some(&origin),
                            Some(&key),
                            format!("Group \"{name}\" names {m} twice."),
                        );
                    } else {
                        members.push(m.to_string());
                    }
                }
                if members.is_empty() && self.errors.len() == before {
                    bad(
                        self,
                        Some(&origin),
                        Some(&key),
                        format!("Group \"{name}\" has no programs."),
                    );
                }
            }
            None => bad(
                self,
                None,
                Some("programs"),
                format!("Group \"{name}\" has no programs = ... key."),
            ),
        }
        let sequence = match self.text(&values, "sequence", scope, "") {
            Some((v, origin, key)) if !v.trim().is_empty() => match parse_sequence(&v, &members) {
                Ok(steps) => Some(steps),
                Err(e) => {
                    bad(
                        self,
                        Some(&origin),
                        Some(&key),
                        format!("Invalid sequence: {e}"),
                    );
                    None
                }
            },
            _ => None,
        };
        let min_ok = self.int(&values, "min_ok", 0, scope, "");
        if min_ok > 0
            && usize::try_from(min_ok).map_or(true, |n| n >= members.len())
            && !members.is_empty()
        {
            if let Some(Some((_, origin, key))) = self.scalar(&values, "min_ok", scope, "") {
                bad(
                    self,
                    Some(&origin),
                    Some(&key),
                    format!(
                        "min_ok ({min_ok}) must be less than the number of programs in the group ({}): otherwise no planned restart could ever start.",
                        members.len()
                    ),
                );
            }
        }
        let schedule = self.schedule(&values, scope);
        // A `min_ok` the group's own restart can never meet would hold every planned restart
        // back for ever: say so now.
        let probe = GroupConfig {
            name: name.to_string(),
            defined_at: defined_at.clone(),
            programs: members.clone(),
            sequence: sequence.clone(),
            min_ok,
            schedule: Schedule::default(),
            allow: Vec::new(),
        };
        let most = u64::try_from(probe.most_down()).unwrap_or(u64::MAX);
        let can_stay = u64::try_from(members.len())
            .unwrap_or(0)
            .saturating_sub(most);
        if min_ok > can_stay && usize::try_from(min_ok).is_ok_and(|n| n < members.len()) {
            if let Some(Some((_, origin, key))) = self.scalar(&values, "min_ok", scope, "") {
                bad(
                    self,
                    Some(&origin),
                    Some(&key),
                    format!(
                        "min_ok ({min_ok}) can never hold: the sequence has {most} of the {} members down at once, so at most {can_stay} stay up.",
                        members.len()
                    ),
                );
            }
        }
        let unknown = Self::unknown(&values, &GROUP_KEYS);
        self.unknown_keys(
            &unknown,
            Kind::UnknownGroupKeys,
            scope,
            "Unknown config options in group: ",
        );
        if self.errors.len() != before {
            return None;
        }
        Some(GroupConfig {
            name: name.to_string(),
            defined_at,
            programs: members,
            sequence,
            min_ok,
            schedule,
            allow: Vec::new(),
        })
    }
}

/// `"stop cmsd, wait 300, restart xrootd, start cmsd"`: every step names a member.
fn parse_sequence(text: &str, members: &[String]) -> Result<Vec<Step>, String> {
    let members: HashSet<&str> = members.iter().map(String::as_str).collect();
    let mut steps = Vec::new();
    for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let mut words = part.split_whitespace();
        let (Some(verb), Some(arg), None) = (words.next(), words.next(), words.next()) else {
            return Err(format!(
                "\"{part}\": each step is \"start NAME\", \"stop NAME\", \"restart NAME\" or \"wait DURATION\""
            ));
        };
        let member = |arg: &str| {
            if members.contains(arg) {
                Ok(arg.to_string())
            } else {
                Err(format!(
                    "\"{part}\": {arg} is not one of the group's programs"
                ))
            }
        };
        steps.push(match verb {
            "start" => Step::Start(member(arg)?),
            "stop" => Step::Stop(member(arg)?),
            "restart" => Step::Restart(member(arg)?),
            "wait" => Step::Wait(
                parse_duration(arg)
                    .map_err(|e| format!("\"{part}\": {e}"))?
                    .as_secs_f64(),
            ),
            other => {
                return Err(format!(
                    "\"{part}\": unknown step {other}; use start, stop, restart or wait"
                ))
            }
        });
    }
    if steps.is_empty() {
        return Err("no steps".into());
    }
    Ok(steps)
}

fn interpolation_kind(e: &InterpolationError) -> Kind {
    match e {
        InterpolationError::Missing(_) => Kind::InterpolationMissing,
        InterpolationError::Loop(_) => Kind::InterpolationLoop,
        InterpolationError::ListValue(_)
        | InterpolationError::TooLong
        | InterpolationError::TooDeep => Kind::InterpolationInvalid,
    }
}

/// The compile error of a `proctitle_re`, worded as Python's `re` words the common case (an
/// unclosed group, spec Appendix B); fancy-regex's own text otherwise.
fn regex_error(re: &str, e: &fancy_regex::Error) -> String {
    if let fancy_regex::Error::ParseError(_, fancy_regex::ParseError::UnclosedOpenParen) = e {
        if let Some(pos) = unclosed_paren(re) {
            return format!("missing ), unterminated subpattern at position {pos}");
        }
    }
    e.to_string()
}

/// Char position of the outermost `(` left open, skipping escapes and character classes.
fn unclosed_paren(re: &str) -> Option<usize> {
    let mut stack = Vec::new();
    let mut chars = re.chars().enumerate().peekable();
    let mut in_class = false;
    while let Some((i, c)) = chars.next() {
        match c {
            '\\' => {
                chars.next();
            }
            '[' if !in_class => {
                in_class = true;
                // A ']' right after '[' or '[^' is a literal.
                if chars.peek().map(|&(_, c)| c) == Some('^') {
                    chars.next();
                }
                if chars.peek().map(|&(_, c)| c) == Some(']') {
                    chars.next();
                }
            }
            ']' if in_class => in_class = false,
            '(' if !in_class => stack.push(i),
            ')' if !in_class => {
                stack.pop();
            }
            _ => {}
        }
    }
    stack.first().copied()
}

#[cfg(test)]
mod tests {
    use super::super::syntax::parse_bytes;
    use super::*;

    /// A system where only the listed paths exist.
    #[derive(Default)]
    struct Fake {
        dirs: Vec<&'static str>,
        files: Vec<&'static str>,
        executables: Vec<&'static str>,
        path: Option<&'static str>,
    }

    impl Probe for Fake {
        fn is_dir(&self, path: &Path) -> bool {
            self.dirs.iter().any(|d| Path::new(d) == path)
        }
        fn exists(&self, path: &Path) -> bool {
            self.is_dir(path) || self.files.iter().any(|f| Path::new(f) == path)
        }
        fn is_executable(&self, path: &Path) -> bool {
            self.executables.iter().any(|f| Path::new(f) == path)
        }
        fn path_var(&self) -> Option<OsString> {
            self.path.map(OsString::from)
        }
        fn uid(&self) -> u32 {
            1001
        }
    }

    fn fake() -> Fake {
        Fake {
            dirs: vec!["/home/u", "/home/u/logs", "/home/u/cfg", "/home/u/cfg/logs"],
            ..Fake::default()
        }
    }

    fn file(path: &str, text: &str) -> SourceFile {
        match parse_bytes(text.as_bytes()) {
            Ok(p) if p.errors.is_empty() => SourceFile {
                path: PathBuf::from(path),
                tree: p.tree,
            },
            other => panic!("{other:?}"),
        }
    }

    fn build_with(files: &[SourceFile], probe: &Fake) -> Result<Config, ConfigErrors> {
        build(files, Path::new("/home/u"), probe)
    }

    fn ok(files: &[SourceFile]) -> Config {
        match build_with(files, &fake()) {
            Ok(c) => c,
            Err(e) => panic!("{e}"),
        }
    }

    fn errors(files: &[SourceFile]) -> Vec<ConfigError> {
        match build_with(files, &fake()) {
            Ok(c) => panic!("accepted: {c:?}"),
            Err(e) => e.into_vec(),
        }
    }

    const PROG: &str = "[Program:p]\ncommand = sleep 1000\npidfile = p.pid\nstdout = logs/p.out\n";

    fn main_with(rest: &str) -> SourceFile {
        file("/home/u/usrsvc.cfg", &format!("[Main]\n{rest}"))
    }

    #[test]
    fn defaults_of_a_minimal_program() {
        let c = ok(&[main_with(PROG)]);
        assert_eq!(c.main.pidfile, PathBuf::from("/home/u/1001_usrsvcd.pid"));
        assert_eq!(c.main.config_dir, None);
        assert_eq!(c.main.sendmail_path, None);
        let p = c.program("p").expect("p");
        assert_eq!(p.defined_at.line, 2);
        assert_eq!(p.argv, ["sleep", "1000"]);
        assert_eq!(p.pidfile, PathBuf::from("/home/u/p.pid"));
        assert_eq!(p.stdout, PathBuf::from("/home/u/logs/p.out"));
        assert_eq!(p.stderr, p.stdout);
        assert!(p.enabled && p.autostart && p.autorestart && p.autopid);
        assert!(p.scan_for_process && p.inherit_env && !p.useshell);
        assert_eq!((p.maxrestarts, p.restart_delay), (0, 0));
        assert_eq!((p.success_seconds, p.term_to_kill_seconds), (2.0, 8.0));
        assert_eq!(p.monitoring, MonitoringConfig::default());
        assert!(!p.monitoring.is_active());
        assert_eq!(p.proctitle_re, None);
        assert_eq!(p.email_alerts, None);
        assert!(c.program("q").is_none());
    }

    #[test]
    fn daemon_keys_new_in_2_0() {
        let c = ok(&[main_with(PROG)]);
        let p = c.program("p").expect("p");
        assert_eq!((p.restart_delay_max, p.stable_seconds), (300, 60.0));
        assert_eq!((p.email_interval, p.monitoring.check_interval), (300, 5.0));
        assert_eq!(c.main.smtp, None);

        let c = ok(&[main_with(&format!(
            "smtp_host = mail.example\nsmtp_starttls = true\nsmtp_credentials_file = ~/smtp.pw\n\
             {PROG}restart_delay = 400\nstable_seconds = 1.5\nemail_interval = 0\n\
             [[Monitoring]]\nrss_limit = 100\ncheck_interval = 0.5\n"
        ))]);
        let smtp = c.main.smtp.clone().expect("smtp");
        assert_eq!(
            (smtp.host.as_str(), smtp.port, smtp.starttls),
            ("mail.example", 25, true)
        );
        assert_eq!(
            smtp.credentials_file,
            Some(PathBuf::from("/home/u/smtp.pw"))
        );
        let p = c.program("p").expect("p");
        // An absent cap never undercuts an explicit delay.
        assert_eq!((p.restart_delay, p.restart_delay_max), (400, 400));
        assert_eq!((p.stable_seconds, p.email_interval), (1.5, 0));
        assert_eq!(p.monitoring.check_interval, 0.5);
    }

    #[test]
    fn stop_keys_new_in_2_0() {
        let p = ok(&[main_with(PROG)]).programs.remove(0);
        assert!(p.stop_group);
        assert_eq!(p.stop_signal, rustix::process::Signal::TERM.as_raw());
        for (text, sig) in [
            ("QUIT", rustix::process::Signal::QUIT),
            ("sigint", rustix::process::Signal::INT),
            (" HUP ", rustix::process::Signal::HUP),
            ("10", rustix::process::Signal::USR1),
        ] {
            let c = ok(&[main_with(&format!(
                "{PROG}stop_signal = {text}\nstop_group = false\n"
            ))]);
            assert_eq!(c.programs[0].stop_signal, sig.as_raw(), "{text}");
            assert!(!c.programs[0].stop_group);
        }
        for bad in ["TERMINATE", "STOP", "cont", "0", "999", "-15"] {
            let e = errors(&[main_with(&format!("{PROG}stop_signal = {bad}\n"))]);
            assert_eq!(e.len(), 1, "{bad}: {e:?}");
            assert_eq!(
                (e[0].kind, e[0].line),
                (Kind::InvalidSignal, Some(6)),
                "{bad}"
            );
            assert_eq!(e[0].key.as_deref(), Some("stop_signal"));
        }
        let e = errors(&[main_with(&format!("{PROG}stop_group = maybe\n"))]);
        assert_eq!((e[0].kind, e[0].line), (Kind::InvalidBool, Some(6)));
    }

    #[test]
    fn daemon_keys_rejected_with_their_place() {
        let e = errors(&[main_with(&format!(
            "{PROG}restart_delay = 10\nrestart_delay_max = 5\n"
        ))]);
        assert_eq!(e.len(), 1, "{e:?}");
        assert_eq!((e[0].kind, e[0].line), (Kind::InvalidRange, Some(7)));
        assert_eq!(e[0].key.as_deref(), Some("restart_delay_max"));

        let e = errors(&[main_with(&format!("smtp_port = 2525\n{PROG}"))]);
        assert_eq!((e[0].kind, e[0].line), (Kind::SmtpWithoutHost, Some(2)));
        assert_eq!(e[0].key.as_deref(), Some("smtp_port"));

        let e = errors(&[main_with(&format!(
            "smtp_host = h\nsmtp_port = 70000\n{PROG}"
        ))]);
        assert_eq!((e[0].kind, e[0].line), (Kind::InvalidRange, Some(3)));

        let e = errors(&[main_with(&format!(
            "{PROG}[[Monitoring]]\ncheck_interval = 0\n"
        ))]);
        assert_eq!((e[0].kind, e[0].line), (Kind::InvalidRange, Some(7)));
        assert_eq!(e[0].key.as_deref(), Some("Monitoring.check_interval"));

        let e = errors(&[main_with(&format!("{PROG}stable_seconds = soon\n"))]);
        assert_eq!(e[0].kind, Kind::InvalidFloat);
    }

    #[test]
    fn planned_restart_keys_new_in_2_0() {
        let c = ok(&[main_with(&format!(
            "restart_windows = Mon-Fri 01:00-05:00, Sat-Sun 00:00-24:00\n\
             kill_switch_file = ~/FREEZE\nrequire_reason = true\n\
             audit_syslog = udp://127.0.0.1:514\n\
             {PROG}restart_every = 3d\nrestart_at = Sun 03:30, Wed 03:30\nrestart_jitter = 15m\n\
             restart_delay = 2m\nterm_to_kill_seconds = 1.5\n\
             [[HealthCheck:http]]\ncommand = curl -fs localhost:8080\ninterval = 1m\nfailures = 2\nrepair = ./fix\naction = alert\n\
             [[HealthCheck:disk]]\ncommand = df\n\
             [Program:q]\ncommand = sleep 2\npidfile = q.pid\nstdout = logs/q.out\nrestart_windows = \"22:00-02:00\"\n"
        ))]);
        let m = &c.main;
        assert_eq!(m.kill_switch_file, Some(PathBuf::from("/home/u/FREEZE")));
        assert!(m.require_reason);
        assert_eq!(m.audit_syslog.as_deref(), Some("udp://127.0.0.1:514"));
        assert_eq!(m.audit_log, None);
        let p = c.program("p").expect("p");
        assert_eq!(p.schedule.every, Some(Duration::from_secs(3 * 86_400)));
        assert_eq!(p.schedule.jitter, Duration::from_secs(900));
        assert!(p.schedule.at.is_some());
        // No windows of its own: [Main]'s.
        assert_eq!(p.schedule.windows, m.restart_windows);
        assert!(m.restart_windows.is_some());
        // Durations with units on 1.5.13's keys too.
        assert_eq!((p.restart_delay, p.term_to_kill_seconds), (120, 1.5));
        let names: Vec<&str> = p.health_checks.iter().map(|h| h.name.as_str()).collect();
        assert_eq!(names, ["http", "disk"]);
        let http = &p.health_checks[0];
        assert_eq!(
            (http.interval, http.failures, http.repair.as_deref()),
            (Duration::from_secs(60), 2, Some("./fix"))
        );
        assert_eq!(http.action, HealthAction::Alert);
        let disk = &p.health_checks[1];
        assert_eq!(
            (
                disk.interval,
                disk.timeout,
                disk.start_period,
                disk.failures
            ),
            (
                Duration::from_secs(30),
                Duration::from_secs(10),
                Duration::ZERO,
                3
            )
        );
        assert_eq!(disk.action, HealthAction::Restart);
        let q = c.program("q").expect("q");
        assert!(q.schedule.is_empty());
        assert_ne!(q.schedule.windows, m.restart_windows, "its own windows");
    }

    #[test]
    fn planned_restart_keys_rejected_with_their_place() {
        let cases: [(&str, Kind, usize, &str); 11] = [
            (
                "[[HealthCheck:h]]\ncommand = x\n[[HealthCheck: h]]\ncommand = y\n",
                Kind::InvalidHealthCheck,
                8,
                "HealthCheck: h",
            ),
            (
                "restart_every = 5x\n",
                Kind::InvalidDuration,
                6,
                "restart_every",
            ),
            // A plain 3 is three seconds: surely a typo for 3d.
            (
                "restart_every = 3\n",
                Kind::InvalidDuration,
                6,
                "restart_every",
            ),
            (
                "[[HealthCheck:h]]\ncommand = x\nfailures = 0\n",
                Kind::InvalidRange,
                8,
                "HealthCheck:h.failures",
            ),
            (
                "restart_at = 25:00\n",
                Kind::InvalidSchedule,
                6,
                "restart_at",
            ),
            (
                "restart_windows = Mon 05:00\n",
                Kind::InvalidSchedule,
                6,
                "restart_windows",
            ),
            (
                "restart_delay = 5 minutes\n",
                Kind::InvalidDuration,
                6,
                "restart_delay",
            ),
            (
                "[[HealthCheck:h]]\ninterval = 1m\n",
                Kind::InvalidHealthCheck,
                6,
                "HealthCheck:h.command",
            ),
            (
                "[[HealthCheck:h]]\ncommand = x\naction = reboot\n",
                Kind::InvalidHealthCheck,
                8,
                "HealthCheck:h.action",
            ),
            (
                "[[HealthCheck:h]]\ncommand = x\ntimeout = 0\n",
                Kind::InvalidRange,
                8,
                "HealthCheck:h.timeout",
            ),
            (
                "[[HealthCheck:h]]\ncommand = x\nretries = 3\n",
                Kind::UnknownHealthCheckKeys,
                8,
                "",
            ),
        ];
        for (text, kind, line, key) in cases {
            let e = errors(&[main_with(&format!("{PROG}{text}"))]);
            assert_eq!(e.len(), 1, "{text}: {e:?}");
            assert_eq!((e[0].kind, e[0].line), (kind, Some(line)), "{text}: {e:?}");
            if !key.is_empty() {
                assert_eq!(e[0].key.as_deref(), Some(key), "{text}");
            }
            assert!(
                e[0].to_string().starts_with("/home/u/usrsvc.cfg:"),
                "{}",
                e[0]
            );
        }
        // 1.5.13's own message for a value without a unit.
        let e = errors(&[main_with(&format!("{PROG}restart_delay = soon\n"))]);
        assert_eq!(e[0].kind, Kind::InvalidInt);
        let e = errors(&[main_with(&format!("audit_syslog = http://x\n{PROG}"))]);
        assert_eq!((e[0].kind, e[0].line), (Kind::InvalidSyslog, Some(2)));
    }

    #[test]
    fn a_group_section_of_a_1_5_13_file_is_ignored_as_it_was() {
        let c = ok(&[main_with(&format!(
            "{PROG}[Group:frontend]\nmembers = web\nowner = ops\n"
        ))]);
        assert!(c.groups.is_empty());
        assert!(
            c.warnings
                .iter()
                .any(|w| w.contains("[Group:frontend]") && w.contains("ignored")),
            "{:?}",
            c.warnings
        );
        let c = ok(&[file(
            "/home/u/usrsvc.cfg",
            &format!("Group:g = 5\n[Main]\n{PROG}"),
        )]);
        assert!(c.groups.is_empty());
    }

    #[test]
    fn groups_name_their_members_in_order() {
        let two =
            format!("{PROG}[Program:q]\ncommand = sleep 2\npidfile = q.pid\nstdout = logs/q.out\n");
        let c = ok(&[main_with(&format!(
            "{two}[Group:g]\nprograms = q, p\nsequence = restart q, wait 5m, restart p, start q\nmin_ok = 1\nrestart_at = 03:30\n"
        ))]);
        let g = c.group("g").expect("g");
        assert_eq!(g.programs, ["q", "p"]);
        assert_eq!(
            g.sequence.as_deref(),
            Some(
                &[
                    Step::Restart("q".into()),
                    Step::Wait(300.0),
                    Step::Restart("p".into()),
                    Step::Start("q".into())
                ][..]
            )
        );
        assert_eq!(g.min_ok, 1);
        assert!(g.schedule.at.is_some());
        assert_eq!(c.groups_of("p").count(), 1);

        let bad: [(&str, &str); 7] = [
            ("[Group:g]\nprograms = p, nope\n", "not defined: nope"),
            ("[Group:g]\nprograms = p, p\n", "names p twice"),
            ("[Group:all]\nprograms = q\n", "cannot be called \"all\""),
            (
                "[Group:g]\nprograms = p, q\nsequence = reboot p\n",
                "unknown step reboot",
            ),
            (
                "[Group:g]\nprograms = p\nsequence = start q\n",
                "q is not one of the group's programs",
            ),
            (
                "[Group:g]\nprograms = p, q\nmin_ok = 2\n",
                "min_ok (2) must be less",
            ),
            (
                "[Group:g]\nprograms = p, q\nmin_ok = 1\nsequence = stop p, restart q, start p\n",
                "min_ok (1) can never hold: the sequence has 2 of the 2 members down at once",
            ),
        ];
        for (text, want) in bad {
            let e = errors(&[main_with(&format!("{two}{text}"))]);
            assert!(
                e.iter()
                    .any(|e| e.to_string().contains(want) && e.line.is_some()),
                "{text}: {e:?}"
            );
        }
        let e = errors(&[main_with(&format!(
            "{two}[Group:g]\nprograms = p\nwhatever = 1\n"
        ))]);
        assert_eq!(e[0].kind, Kind::UnknownGroupKeys);
        let e = errors(&[
            main_with(&format!("{two}[Group:g]\nprograms = p\n")),
            file("/home/u/more.cfg", "[Group:g]\nprograms = q\n"),
        ]);
        assert!(
            e.iter().any(|e| e
                .to_string()
                .contains("defined more than once: first at /home/u/usrsvc.cfg:10")),
            "{e:?}"
        );
    }

    #[test]
    fn sendmail_discovery_order() {
        let main = || main_with("");
        let probe = Fake {
            files: vec!["/usr/bin/sendmail", "/usr/sbin/sendmail"],
            ..fake()
        };
        let c = build_with(&[main()], &probe).expect("ok");
        assert_eq!(
            c.main.sendmail_path,
            Some(PathBuf::from("/usr/sbin/sendmail"))
        );
        let probe = Fake {
            files: vec!["/usr/bin/sendmail"],
            ..fake()
        };
        let c = build_with(&[main()], &probe).expect("ok");
        assert_eq!(
            c.main.sendmail_path,
            Some(PathBuf::from("/usr/bin/sendmail"))
        );
        // Empty PATH entries skipped, one trailing slash trimmed, first executable wins.
        let probe = Fake {
            executables: vec!["/opt/b/sendmail", "/opt/c/sendmail"],
            path: Some("/opt/a::/opt/b/:/opt/c"),
            ..fake()
        };
        let c = build_with(&[main()], &probe).expect("ok");
        assert_eq!(c.main.sendmail_path, Some(PathBuf::from("/opt/b/sendmail")));
        // `auto` and empty mean discovery too.
        for v in ["auto", ""] {
            let c =
                build_with(&[main_with(&format!("sendmail_path = {v}\n"))], &probe).expect("ok");
            assert_eq!(c.main.sendmail_path, Some(PathBuf::from("/opt/b/sendmail")));
        }
        // An explicit one must exist; relative ones are resolved first.
        let probe = Fake {
            files: vec!["/home/u/bin/sm"],
            ..fake()
        };
        let c = build_with(&[main_with("sendmail_path = bin/sm\n")], &probe).expect("ok");
        assert_eq!(c.main.sendmail_path, Some(PathBuf::from("/home/u/bin/sm")));
        let e = build_with(&[main_with("sendmail_path = /no/sm\n")], &probe)
            .err()
            .and_then(|e| e.first().cloned())
            .expect("error");
        assert_eq!(e.message, "sendmail_path \"/no/sm\" does not exist.");
        assert_eq!((e.kind, e.line), (Kind::SendmailMissing, Some(2)));
    }

    #[test]
    fn main_keys() {
        let c = ok(&[main_with(
            "config_dir = ~/cfg/\npidfile = run/d.pid\nusrsvcd_stdout = ~/logs/d.log\nusrsvcd_stderr = stdout\n",
        )]);
        assert_eq!(c.main.config_dir, Some(PathBuf::from("/home/u/cfg")));
        assert_eq!(c.main.pidfile, PathBuf::from("/home/u/run/d.pid"));
        assert_eq!(
            c.main.usrsvcd_stdout,
            Some(PathBuf::from("/home/u/logs/d.log"))
        );
        assert_eq!(c.main.usrsvcd_stderr, Some(LogTarget::Stdout));
        let c = ok(&[main_with("usrsvcd_stderr = /var/log/e\nconfig_dir = /\n")]);
        assert_eq!(
            c.main.usrsvcd_stderr,
            Some(LogTarget::Path(PathBuf::from("/var/log/e")))
        );
        assert_eq!(c.main.config_dir, Some(PathBuf::from("/")));
        let e = errors(&[main_with(
            "bogus = 1\nconfig_dir = a, b\nother = 2\n[[Sub]]\n",
        )]);
        let got: Vec<(Kind, Option<usize>, String)> =
            e.into_iter().map(|e| (e.kind, e.line, e.message)).collect();
        assert_eq!(
            got,
            vec![
                (
                    Kind::UnknownMainKeys,
                    Some(2),
                    "Unknown config options in Main section: ['bogus', 'other', 'Sub']".into()
                ),
                (
                    Kind::ListValue,
                    Some(3),
                    "Invalid value for config parameter config_dir: a list (unquoted comma); quote the value".into()
                ),
            ]
        );
    }

    #[test]
    fn errors_come_in_the_originals_order_and_all_of_them() {
        let e = errors(&[main_with(
            "\
[Program:a]
colour = red
proctitle_re = (x
autostart = yes
command = echo 'x
maxrestarts = -1
[[Monitoring]]
rss_limit = -5
bogus = 1
[Program:b]
command = true
",
        )]);
        let got: Vec<(Kind, Option<&str>, Option<&str>)> = e
            .iter()
            .map(|e| (e.kind, e.section.as_deref(), e.key.as_deref()))
            .collect();
        assert_eq!(
            got,
            vec![
                (Kind::PidfileMissing, Some("Program:a"), Some("pidfile")),
                (Kind::InvalidBool, Some("Program:a"), Some("autostart")),
                (Kind::InvalidInt, Some("Program:a"), Some("maxrestarts")),
                (
                    Kind::InvalidInt,
                    Some("Program:a"),
                    Some("Monitoring.rss_limit")
                ),
                (Kind::UnknownMonitoringKeys, Some("Program:a"), None),
                (Kind::CommandUnparsable, Some("Program:a"), Some("command")),
                (
                    Kind::InvalidProctitleRe,
                    Some("Program:a"),
                    Some("proctitle_re")
                ),
                (Kind::StdoutMissing, Some("Program:a"), Some("stdout")),
                (Kind::UnknownKeys, Some("Program:a"), None),
                (Kind::PidfileMissing, Some("Program:b"), Some("pidfile")),
                (Kind::StdoutMissing, Some("Program:b"), Some("stdout")),
            ]
        );
        assert_eq!(
            e.get(6).map(|e| e.message.as_str()),
            Some("Cannot parse proctitle_re: (x\nError: missing ), unterminated subpattern at position 0")
        );
    }

    #[test]
    fn synonyms() {
        let c = ok(&[main_with(&format!(
            "{PROG}max_restarts = 4\n[[Monitor]]\nrss_limit = 100\nactivityfile = act\n"
        ))]);
        let p = c.program("p").expect("p");
        assert_eq!(p.maxrestarts, 4);
        assert_eq!(p.monitoring.rss_limit, 100);
        assert_eq!(
            p.monitoring.activityfile,
            Some(PathBuf::from("/home/u/act"))
        );
        assert!(p.monitoring.is_active());
        let e = errors(&[main_with(&format!(
            "{PROG}max_restarts = 4\nmaxrestarts = 4\n[[Monitor]]\n[[Monitoring]]\n"
        ))]);
        let got: Vec<(Kind, Option<usize>, Option<&str>)> = e
            .iter()
            .map(|e| (e.kind, e.line, e.key.as_deref()))
            .collect();
        assert_eq!(
            got,
            vec![
                (Kind::SynonymConflict, Some(7), Some("maxrestarts")),
                (Kind::SynonymConflict, Some(9), Some("Monitoring")),
            ]
        );
        let e = errors(&[main_with(&format!("{PROG}Monitor = x\n"))]);
        assert_eq!(
            e.first().map(|e| e.message.as_str()),
            Some("Monitor must be a subsection, like [[Monitor]]")
        );
    }

    #[test]
    fn defaults_merge_like_the_original() {
        let main = main_with(&format!(
            "\
{PROG}defaults = d
[[Env]]
C = pc
A = pa
[[Monitoring]]
monitor_after = 1
"
        ));
        let other = file(
            "/home/u/cfg/d.cfg",
            "\
[DefaultSettings:d]
max_restarts = 3
command = ignored
stderr = logs/d.err
[[Env]]
A = da
B = db
[[Monitoring]]
rss_limit = 5
",
        );
        let c = ok(&[main, other]);
        let p = c.program("p").expect("p");
        assert_eq!(p.maxrestarts, 3);
        assert_eq!(p.command, "sleep 1000");
        assert_eq!(p.defaults.as_deref(), Some("d"));
        // Inherited relative paths resolve from the DefaultSettings file's directory.
        assert_eq!(p.stderr, PathBuf::from("/home/u/cfg/logs/d.err"));
        let env: Vec<(&str, &str)> = p
            .env
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        assert_eq!(env, [("A", "pa"), ("B", "db"), ("C", "pc")]);
        assert_eq!((p.monitoring.monitor_after, p.monitoring.rss_limit), (1, 5));
    }

    #[test]
    fn errors_in_inherited_keys_point_at_the_defaults() {
        let main = main_with(&format!("{PROG}defaults = d\nalpha = 1\n"));
        let other = file(
            "/home/u/cfg/d.cfg",
            "[DefaultSettings:d]\nzeta = 1\nrestart_delay = soon\n[[Other]]\n",
        );
        let e = errors(&[main, other]);
        assert_eq!(e.len(), 2, "{e:?}");
        assert_eq!(e[0].file, PathBuf::from("/home/u/cfg/d.cfg"));
        assert_eq!(e[0].line, Some(3));
        assert_eq!(
            e[0].section.as_deref(),
            Some("Program:p (from DefaultSettings:d)")
        );
        assert_eq!(
            e[0].message,
            "Invalid value for config parameter restart_delay. Should be a positive integer. Got soon"
        );
        // The original's key order: inherited scalars, the program's new scalars, subsections.
        assert_eq!(
            e[1].message,
            "Unknown config options: ['zeta', 'alpha', 'Other']"
        );
    }

    #[test]
    fn ampersand_and_command_rules() {
        let c = ok(&[main_with(
            "[Program:p]\ncommand = \"  run -x &  \"\npidfile = p\nstdout = logs/o\n",
        )]);
        let p = c.program("p").expect("p");
        assert_eq!(p.command, "run -x ");
        assert_eq!(
            c.warnings,
            ["Warning: Program p is configured to launch in the background (ends with &) which is not supported. Disregarding final &."]
        );
        let e = errors(&[main_with(
            "[Program:p]\ncommand = &\npidfile = p\nstdout = logs/o\n[Program:q]\npidfile = q\nstdout = logs/q\n",
        )]);
        let got: Vec<(&str, Option<usize>)> =
            e.iter().map(|e| (e.message.as_str(), e.line)).collect();
        assert_eq!(
            got,
            [
                ("Missing command for program: \"p\"", Some(3)),
                ("Missing command for program: \"q\"", Some(6)),
            ]
        );
    }

    #[test]
    fn a_missing_log_directory_is_a_warning_about_that_program_alone() {
        // 1.5.13: an error that made the whole config invalid.
        let c = ok(&[main_with(
            "[Program:p]\ncommand = x\npidfile = p\nstdout = /nope/o\nstderr = nope/e\n[Program:q]\ncommand = y\npidfile = q\nstdout = logs/q\n",
        )]);
        let names: Vec<&str> = c.programs.iter().map(|p| p.name.as_str()).collect();
        assert_eq!(names, ["p", "q"]);
        assert_eq!(
            c.program("p").map(|p| p.stdout.clone()),
            Some("/nope/o".into())
        );
        assert_eq!(
            c.warnings,
            [
                "Warning: /home/u/usrsvc.cfg:5: [Program:p] stdout: Program p defines a stdout path as \"/nope/o\" but the folder /nope does not exist. Starting p fails until it exists; the other programs are not affected.",
                "Warning: /home/u/usrsvc.cfg:6: [Program:p] stderr: Program p defines a stderr path as \"/home/u/nope/e\" but the folder /home/u/nope does not exist. Starting p fails until it exists; the other programs are not affected.",
            ]
        );
        assert!(c.daemon_errors.is_empty());
    }

    #[test]
    fn daemon_files_in_missing_folders_are_kept_for_checkconfig() {
        let c = ok(&[main_with(
            "pidfile = /nope/d.pid\nusrsvcd_stdout = gone/out\nusrsvcd_stderr = logs/err\n",
        )]);
        assert_eq!(c.main.pidfile, PathBuf::from("/nope/d.pid"));
        let got: Vec<String> = c.daemon_errors.iter().map(|e| e.to_string()).collect();
        assert_eq!(
            got,
            [
                "/home/u/usrsvc.cfg:2: [Main] pidfile: usrsvcd cannot write its pidfile \"/nope/d.pid\": the folder /nope does not exist.",
                "/home/u/usrsvc.cfg:3: [Main] usrsvcd_stdout: usrsvcd cannot write its log \"/home/u/gone/out\": the folder /home/u/gone does not exist.",
            ]
        );
        assert!(c
            .daemon_errors
            .iter()
            .all(|e| e.kind == Kind::DaemonDirMissing));
        // The default pidfile is in HOME: a missing HOME is named at the [Main] line.
        let files = [main_with(PROG)];
        let c = match build(&files, Path::new("/home/gone"), &fake()) {
            Ok(c) => c,
            Err(e) => panic!("{e}"),
        };
        let got: Vec<String> = c.daemon_errors.iter().map(|e| e.to_string()).collect();
        assert_eq!(
            got,
            ["/home/u/usrsvc.cfg:1: [Main] pidfile: usrsvcd cannot write its pidfile \"/home/gone/1001_usrsvcd.pid\": the folder /home/gone does not exist."]
        );
        assert!(ok(&[main_with(PROG)]).daemon_errors.is_empty());
    }

    #[test]
    fn nul_bytes_in_commands_and_environments_are_refused() {
        let e = errors(&[main_with(
            "[Program:p]\ncommand = \"sleep\x001\"\npidfile = p\nstdout = logs/p\n[[Env]]\nA = x\x00y\n\"B\x00C\" = z\nD = fine\n[[HealthCheck:h]]\ncommand = true\x00\n",
        )]);
        let got: Vec<String> = e.iter().map(|e| e.to_string()).collect();
        assert_eq!(
            got,
            [
                "/home/u/usrsvc.cfg:7: [Program:p] Env.A: Invalid value for config parameter Env.A: a NUL byte, which a command line or an environment cannot carry",
                "/home/u/usrsvc.cfg:8: [Program:p] Env.B\\0C: Invalid value for config parameter Env.B\\0C: a NUL byte, which a command line or an environment cannot carry",
                "/home/u/usrsvc.cfg:3: [Program:p] command: Invalid value for config parameter command: a NUL byte, which a command line or an environment cannot carry",
                "/home/u/usrsvc.cfg:11: [Program:p] HealthCheck:h.command: Invalid value for config parameter HealthCheck:h.command: a NUL byte, which a command line or an environment cannot carry",
            ]
        );
        assert!(e.iter().all(|e| e.kind == Kind::NulByte));
    }

    #[test]
    fn plain_keys_where_sections_belong() {
        let e = errors(&[file(
            "/home/u/usrsvc.cfg",
            "Main = x\nProgram:x = 1\nDefaultSettings:d = 1\n[Program:p]\ncommand = c\npidfile = p\nstdout = logs/o\ndefaults = d\n",
        )]);
        let got: Vec<(Kind, Option<usize>, &str)> = e
            .iter()
            .map(|e| (e.kind, e.line, e.message.as_str()))
            .collect();
        assert_eq!(
            got,
            [
                (
                    Kind::NotASection,
                    Some(1),
                    "Main must be a section, like [Main]"
                ),
                (
                    Kind::NotASection,
                    Some(2),
                    "Program:x must be a section, like [Program:x]"
                ),
                (
                    Kind::NotASection,
                    Some(8),
                    "DefaultSettings:d must be a section, like [DefaultSettings:d]"
                ),
            ]
        );
        let e = errors(&[main_with(
            "[Program:p]\npidfile = p\nstdout = logs/o\n[[command]]\n[[Env]]\nA = 1, 2\n[[[deep]]]\n",
        )]);
        let got: Vec<(Kind, Option<&str>)> = e.iter().map(|e| (e.kind, e.key.as_deref())).collect();
        assert_eq!(
            got,
            [
                (Kind::SubsectionValue, Some("command")),
                (Kind::ListValue, Some("Env.A")),
                (Kind::SubsectionValue, Some("Env.deep")),
            ]
        );
    }

    #[test]
    fn unclosed_paren_position() {
        assert_eq!(unclosed_paren("(unclosed"), Some(0));
        assert_eq!(unclosed_paren("a(b)(c"), Some(4));
        assert_eq!(unclosed_paren("((a)"), Some(0));
        assert_eq!(unclosed_paren("\\((a"), Some(2));
        assert_eq!(unclosed_paren("[(](a"), Some(3));
        assert_eq!(unclosed_paren("(a)"), None);
    }
}
