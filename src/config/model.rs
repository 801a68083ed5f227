//! The typed configuration the rest of usrsvc codes against: `Config`, `MainConfig`,
//! `ProgramConfig`, `MonitoringConfig`. Plain data with the original's defaults; how it is
//! built and checked lives in `build.rs`. Field names are the config keys, so spec and code
//! grep alike.

use std::path::PathBuf;

/// The whole configuration: `[Main]` and every program, in the order the original iterates
/// them (file order, then section order within a file).
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    pub main_file: PathBuf,
    /// The main file, then the config_dir files in the order they were read.
    pub files: Vec<PathBuf>,
    pub main: MainConfig,
    pub programs: Vec<ProgramConfig>,
    /// Things the original printed while parsing (without its timestamp).
    pub warnings: Vec<String>,
}

impl Config {
    pub fn program(&self, name: &str) -> Option<&ProgramConfig> {
        self.programs.iter().find(|p| p.name == name)
    }
}

/// `[Main]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MainConfig {
    pub config_dir: Option<PathBuf>,
    pub pidfile: PathBuf,
    pub usrsvcd_stdout: Option<PathBuf>,
    pub usrsvcd_stderr: Option<LogTarget>,
    /// Resolved per spec §7.3; `None` when no sendmail was found.
    pub sendmail_path: Option<PathBuf>,
}

/// Where `usrsvcd_stderr` goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LogTarget {
    /// The literal `stdout`: the same stream as usrsvcd's stdout.
    Stdout,
    Path(PathBuf),
}

/// A place in a config file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Location {
    pub file: PathBuf,
    pub line: usize,
}

/// One `[Program:NAME]`, after `DefaultSettings` were merged in. Field names are the config
/// keys, so spec and code grep alike.
#[derive(Debug, Clone, PartialEq)]
pub struct ProgramConfig {
    pub name: String,
    pub defined_at: Location,
    /// Stripped, with one trailing `&` removed (see `Config::warnings`).
    pub command: String,
    /// `command` split as Python's `shlex.split` does.
    pub argv: Vec<String>,
    pub pidfile: PathBuf,
    pub enabled: bool,
    pub autostart: bool,
    pub autorestart: bool,
    pub maxrestarts: u64,
    pub restart_delay: u64,
    pub success_seconds: f64,
    pub autopid: bool,
    pub useshell: bool,
    pub scan_for_process: bool,
    pub term_to_kill_seconds: f64,
    pub inherit_env: bool,
    pub defaults: Option<String>,
    /// `[[Env]]` in file order (inherited keys first, as the original's merge orders them).
    pub env: Vec<(String, String)>,
    pub monitoring: MonitoringConfig,
    /// The user's pattern, known to compile; `None` when absent or empty (the matcher then
    /// builds the default one from `command`).
    pub proctitle_re: Option<String>,
    pub stdout: PathBuf,
    /// Equal to `stdout` when absent, empty or `stdout`.
    pub stderr: PathBuf,
    pub email_alerts: Option<String>,
}

/// `[[Monitoring]]` (or its synonym `[[Monitor]]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MonitoringConfig {
    pub monitor_after: u64,
    pub activityfile: Option<PathBuf>,
    pub activityfile_limit: u64,
    /// kB; 0 = off.
    pub rss_limit: u64,
}

impl Default for MonitoringConfig {
    fn default() -> Self {
        MonitoringConfig {
            monitor_after: 30,
            activityfile: None,
            activityfile_limit: 120,
            rss_limit: 0,
        }
    }
}

impl MonitoringConfig {
    /// Whether any monitor is configured (the original's `isMonitoringActive`).
    pub fn is_active(&self) -> bool {
        self.activityfile.is_some() || self.rss_limit > 0
    }
}
