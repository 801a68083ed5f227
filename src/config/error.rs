//! Config errors: one `ConfigError` per problem, carrying the file, line, section and key it is
//! about and the message in usrsvc 1.5.13's own wording (spec §4 and Appendix B), plus a
//! `ConfigErrorKind` named for the condition so callers and tests need not match on text.
//! `ConfigErrors` is the non-empty, ordered list `load` returns: the compatible CLI prints the
//! first, `usrsvcd checkconfig` prints them all.
//!
//! This module only describes errors; it decides nothing about exit codes (that is `exit.rs`)
//! and never formats timestamps or prefixes such as `ERROR in config:`.

use std::fmt;
use std::path::PathBuf;

/// What went wrong, named for the condition.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ConfigErrorKind {
    /// The main config file does not exist.
    FileMissing,
    /// A config file or config_dir exists but cannot be read.
    FileUnreadable,
    /// A config file is not valid UTF-8.
    InvalidUtf8,
    /// configobj: a line that is neither a section marker nor `key = value`.
    InvalidLine,
    /// configobj: `Duplicate keyword name`.
    DuplicateKey,
    /// configobj: `Duplicate section name` (also the same program twice in one file).
    DuplicateSection,
    /// configobj: `[`/`]` counts differ, a section nested too deep, or an impossible nesting.
    Nesting,
    /// configobj: a value its value syntax rejects (e.g. an unterminated quote).
    ValueSyntax,
    /// configobj: an unterminated or malformed triple-quoted value.
    MultilineValue,
    /// `%(name)s` names an option that does not exist.
    InterpolationMissing,
    /// `%(a)s` refers back to itself.
    InterpolationLoop,
    /// `%(name)s` names a list value, or the result grows beyond any sensible size.
    InterpolationInvalid,
    /// The main file has no `[Main]` section.
    MissingMain,
    /// `Main`, `Program:x` or `DefaultSettings:x` given as a plain key instead of a section.
    NotASection,
    /// Unknown keys in `[Main]`.
    UnknownMainKeys,
    /// Unknown keys in a program.
    UnknownKeys,
    /// Unknown keys in `[[Monitoring]]`.
    UnknownMonitoringKeys,
    /// A value with an unquoted comma (a configobj list) where one value is expected.
    ListValue,
    /// A subsection where a value is expected.
    SubsectionValue,
    /// `Env` or `Monitoring` given as a value instead of a subsection.
    NotASubsection,
    /// Both spellings of a key given (`maxrestarts`/`max_restarts`, `Monitoring`/`Monitor`).
    SynonymConflict,
    /// A boolean that is neither digits nor true/false.
    InvalidBool,
    /// An integer that is not all digits.
    InvalidInt,
    /// A number that does not match the original's float syntax.
    InvalidFloat,
    /// A number outside the range its key allows (e.g. `restart_delay_max` < `restart_delay`).
    InvalidRange,
    /// An `smtp_*` key without `smtp_host`.
    SmtpWithoutHost,
    /// An explicit `sendmail_path` that does not exist.
    SendmailMissing,
    /// A program without `command`, or whose command is empty.
    MissingCommand,
    /// A command shlex cannot split.
    CommandUnparsable,
    /// New in 2.0: a NUL byte in a `command` or an `[[Env]]` name or value (no process can be
    /// given it).
    NulByte,
    /// A program without `pidfile`.
    PidfileMissing,
    /// A program without `stdout`.
    StdoutMissing,
    /// The directory of `stdout`/`stderr` does not exist (a warning since 2.0: only that
    /// program's start fails).
    LogDirMissing,
    /// New in 2.0: the directory of `[Main] pidfile`, `usrsvcd_stdout` or `usrsvcd_stderr` does
    /// not exist: `usrsvcd checkconfig` and `usrsvcd start` fail (136), `usrsvc` works.
    DaemonDirMissing,
    /// `proctitle_re` does not compile.
    InvalidProctitleRe,
    /// New in 2.0: `directory`, `umask`, `env_file`, `nice` or a `[[Limits]]` value that is
    /// not valid.
    InvalidExecSetting,
    /// New in 2.0: an unknown key in `[[Limits]]`.
    UnknownLimitsKeys,
    /// `[Program:]`.
    ProgramWithoutName,
    /// The same program defined in two places.
    DuplicateProgram,
    /// `[DefaultSettings:]`.
    DefaultsWithoutName,
    /// The same DefaultSettings name defined twice.
    DuplicateDefaults,
    /// `defaults = x` without a `[DefaultSettings:x]`.
    UnknownDefaults,
    /// New in 2.0: a duration that is neither seconds nor a number with s, m, h or d.
    InvalidDuration,
    /// New in 2.0: `restart_at` or `restart_windows` that does not parse.
    InvalidSchedule,
    /// New in 2.0: `audit_syslog` that is not unix:PATH, udp://HOST:PORT or tcp://HOST:PORT.
    InvalidSyslog,
    /// New in 2.0: `allow_users`, `allow_groups`, `shared_socket` or `allow` that is not valid.
    InvalidDelegation,
    /// New in 2.0: an unknown key in `[[HealthCheck:NAME]]`.
    UnknownHealthCheckKeys,
    /// New in 2.0: `[[HealthCheck:NAME]]` without a command, or with an unknown action.
    InvalidHealthCheck,
    /// New in 2.0: an unknown key in `[Group:NAME]`.
    UnknownGroupKeys,
    /// New in 2.0: a group that is defined twice, has no name, clashes with a program or
    /// `all`, names a program that does not exist, or has a bad `sequence` or `min_ok`.
    InvalidGroup,
    /// New in 2.0: a `stop_signal` that is not a signal name or number, or SIGSTOP/SIGCONT.
    InvalidSignal,
}

/// One problem in the configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub kind: ConfigErrorKind,
    pub file: PathBuf,
    pub line: Option<usize>,
    /// The section the problem is about, without brackets (`Main`, `Program:p`).
    pub section: Option<String>,
    /// The key, as spelled in the file; keys of a subsection are written `Env.FOO`.
    pub key: Option<String>,
    /// The text usrsvc 1.5.13 printed after `ERROR in config: `, where it had one.
    pub message: String,
}

impl ConfigError {
    pub(crate) fn new(kind: ConfigErrorKind, file: impl Into<PathBuf>, message: String) -> Self {
        ConfigError {
            kind,
            file: file.into(),
            line: None,
            section: None,
            key: None,
            message,
        }
    }

    pub(crate) fn at_line(mut self, line: usize) -> Self {
        self.line = Some(line);
        self
    }

    pub(crate) fn in_section(mut self, section: impl Into<String>) -> Self {
        self.section = Some(section.into());
        self
    }

    pub(crate) fn for_key(mut self, key: impl Into<String>) -> Self {
        self.key = Some(key.into());
        self
    }
}

/// `{file}:{line}: [{section}] {key}: {message}`, leaving out the parts that are absent.
impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.kind == ConfigErrorKind::FileMissing {
            // "File does not exist: <path>" already names the file (1.5.13's wording).
            return f.write_str(&self.message);
        }
        write!(f, "{}", self.file.display())?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
        }
        f.write_str(": ")?;
        if let Some(section) = &self.section {
            write!(f, "[{section}] ")?;
        }
        if let Some(key) = &self.key {
            write!(f, "{key}: ")?;
        }
        f.write_str(&self.message)
    }
}

impl std::error::Error for ConfigError {}

/// Every error found in one `load`, in a stable order: file order, and within a program the
/// order in which usrsvc 1.5.13 checked its keys (spec §4.5). Never empty.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigErrors(Vec<ConfigError>);

impl ConfigErrors {
    /// `None` when there is nothing to report.
    pub fn from_vec(errors: Vec<ConfigError>) -> Option<ConfigErrors> {
        if errors.is_empty() {
            None
        } else {
            Some(ConfigErrors(errors))
        }
    }

    pub fn one(error: ConfigError) -> ConfigErrors {
        ConfigErrors(vec![error])
    }

    /// The error the original would have stopped at (always `Some`).
    pub fn first(&self) -> Option<&ConfigError> {
        self.0.first()
    }

    pub fn iter(&self) -> std::slice::Iter<'_, ConfigError> {
        self.0.iter()
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Always false: there is always a first error.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn into_vec(self) -> Vec<ConfigError> {
        self.0
    }
}

impl<'a> IntoIterator for &'a ConfigErrors {
    type Item = &'a ConfigError;
    type IntoIter = std::slice::Iter<'a, ConfigError>;
    fn into_iter(self) -> Self::IntoIter {
        self.0.iter()
    }
}

impl IntoIterator for ConfigErrors {
    type Item = ConfigError;
    type IntoIter = std::vec::IntoIter<ConfigError>;
    fn into_iter(self) -> Self::IntoIter {
        self.0.into_iter()
    }
}

/// One error per line.
impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_leaves_out_absent_parts() {
        let e = ConfigError::new(
            ConfigErrorKind::InvalidBool,
            "/home/u/usrsvc.cfg",
            "Unknown value for config parameter autostart: yes. Should be True/1 or False/0".into(),
        )
        .at_line(7)
        .in_section("Program:p")
        .for_key("autostart");
        assert_eq!(
            e.to_string(),
            "/home/u/usrsvc.cfg:7: [Program:p] autostart: Unknown value for config parameter \
             autostart: yes. Should be True/1 or False/0"
        );
        let e = ConfigError::new(
            ConfigErrorKind::MissingMain,
            "/home/u/usrsvc.cfg",
            "Missing [Main] section in main config. Required.".into(),
        );
        assert_eq!(
            e.to_string(),
            "/home/u/usrsvc.cfg: Missing [Main] section in main config. Required."
        );
    }

    #[test]
    fn errors_list_one_per_line() {
        let a = ConfigError::new(ConfigErrorKind::MissingMain, "/a", "one".into());
        let b = ConfigError::new(ConfigErrorKind::MissingMain, "/b", "two".into()).at_line(3);
        assert!(ConfigErrors::from_vec(vec![]).is_none());
        let errs = ConfigErrors::from_vec(vec![a.clone(), b]).expect("non-empty");
        assert_eq!(errs.first(), Some(&a));
        assert_eq!(errs.len(), 2);
        assert_eq!(errs.to_string(), "/a: one\n/b:3: two");
    }
}
