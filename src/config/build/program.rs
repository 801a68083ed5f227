//! The builder's `[Program:NAME]` (spec §4.5): pass 2 over the programs, and every key of
//! one program in the original's order. Subsections are `sections`, `health` and `exec`.

use std::collections::HashMap;
use std::path::Path;

use super::super::error::ConfigError;
use super::super::inherit::{Item, Origin, Table};
use super::super::model::{Location, ProgramConfig};
use super::super::python::{py_dirname, py_strip};
use super::super::shlex::shlex_split;
use super::super::syntax::ROOT;
use super::{Builder, DefaultsDef, Kind, Resolved, Scope};

/// Keys of a program, canonical spellings.
pub(super) const PROGRAM_KEYS: [&str; 30] = [
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
    // New in 2.0: what delegated callers may do (the control API).
    "allow",
];

impl<'a> Builder<'a> {
    /// Pass 2 of the original: every `Program:NAME` at the top of any file.
    pub(super) fn programs(
        &mut self,
        defaults: &HashMap<String, DefaultsDef>,
    ) -> Vec<ProgramConfig> {
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

    /// One program's keys, checked in the original's order (spec §4.5).
    pub(super) fn program(
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
        let allow = self.grants(&values, scope, "");

        // 14. anything else
        let unknown: Vec<&Item<'a>> = Self::unknown(&values, &PROGRAM_KEYS)
            .into_iter()
            .filter(|i| !i.key().starts_with("HealthCheck:"))
            .filter(|i| !super::exec::EXEC_KEYS.contains(&i.key()))
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
            allow,
        })
    }

    /// Both spellings of a synonym in one section.
    pub(super) fn conflicts(&mut self, table: &Table<'a>, canon: &str, scope: &Scope) {
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
    pub(super) fn is_dir(&mut self, dir: &str) -> bool {
        if let Some(&known) = self.dirs.get(dir) {
            return known;
        }
        let found = self.probe.is_dir(Path::new(dir));
        self.dirs.insert(dir.to_string(), found);
        found
    }

    /// A NUL byte in the program's command or environment: `exec` cannot pass one, so the start
    /// would fail; the config is refused instead (new in 2.0). `key` is shown with `\0`.
    pub(super) fn nul_byte(&mut self, key: &str, scope: &Scope, origin: &Origin) {
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
    pub(super) fn log_dir(
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
pub(super) fn unclosed_paren(re: &str) -> Option<usize> {
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
