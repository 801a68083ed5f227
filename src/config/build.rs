//! Builds the typed `Config` from the raw trees of the files `load` read: `[Main]` (spec §4.4),
//! the two passes over `DefaultSettings:` and `Program:` sections (§4.1), and every key of
//! every program with the defaults, checks and messages of usrsvc 1.5.13 (§4.5–4.6), in the
//! original's order, gathering every error instead of stopping at the first.
//!
//! It does no I/O of its own: the few facts it needs from the system (does this directory
//! exist, the real uid, `$PATH`) come through the `Probe` trait, so tests can fake them.

mod allow;
#[cfg(test)]
mod allow_tests;
mod defaults;
mod exec;
mod group;
mod health;
mod main;
#[cfg(test)]
mod plans_tests;
mod program;
mod sections;
#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::error::{ConfigError, ConfigErrorKind as Kind, ConfigErrors};
use super::inherit::{Item, Origin, Table};
use super::interpolate::{interpolate_value, InterpolationError};
use super::model::Config;
use super::python::py_list_repr;
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
