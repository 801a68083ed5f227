//! The typed configuration the rest of usrsvc codes against: `Config`, `MainConfig`,
//! `ProgramConfig`, `MonitoringConfig`. Plain data with the original's defaults; how it is
//! built and checked lives in `build.rs`. Field names are the config keys, so spec and code
//! grep alike.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::check::CheckSpec;
use super::exec::ExecConfig;
use crate::schedule::{Schedule, Windows};

/// The whole configuration: `[Main]` and every program, in the order the original iterates
/// them (file order, then section order within a file).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Config {
    pub main_file: PathBuf,
    /// The main file, then the config_dir files in the order they were read.
    pub files: Vec<PathBuf>,
    pub main: MainConfig,
    pub programs: Vec<ProgramConfig>,
    /// New in 2.0: `[Group:NAME]`, in file order.
    pub groups: Vec<GroupConfig>,
    /// Things the original printed while parsing (without its timestamp).
    pub warnings: Vec<String>,
    /// New in 2.0: what would stop `usrsvcd start` though the config is valid (a folder of its
    /// pidfile or logs is missing); `usrsvcd checkconfig` reports them and exits 136.
    #[serde(skip)]
    pub daemon_errors: Vec<crate::config::ConfigError>,
}

impl Config {
    pub fn program(&self, name: &str) -> Option<&ProgramConfig> {
        self.programs.iter().find(|p| p.name == name)
    }

    pub fn group(&self, name: &str) -> Option<&GroupConfig> {
        self.groups.iter().find(|g| g.name == name)
    }

    /// The groups `program` is a member of.
    pub fn groups_of<'c>(&'c self, program: &'c str) -> impl Iterator<Item = &'c GroupConfig> {
        self.groups
            .iter()
            .filter(move |g| g.programs.iter().any(|p| p == program))
    }
}

/// `[Main]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MainConfig {
    pub config_dir: Option<PathBuf>,
    pub pidfile: PathBuf,
    pub usrsvcd_stdout: Option<PathBuf>,
    pub usrsvcd_stderr: Option<LogTarget>,
    /// Resolved per spec §7.3; `None` when no sendmail was found.
    pub sendmail_path: Option<PathBuf>,
    /// New in 2.0: alerts go by SMTP when `smtp_host` is set, else through `sendmail_path`.
    pub smtp: Option<SmtpConfig>,
    /// New in 2.0: planned restarts of programs and groups without `restart_windows` of their
    /// own happen only inside these.
    pub restart_windows: Option<Windows>,
    /// New in 2.0: while this file exists, no planned, monitor or health restart happens and
    /// `usrsvc start|stop|restart|signal` refuse without `--force`.
    pub kill_switch_file: Option<PathBuf>,
    /// New in 2.0: `usrsvc start|stop|restart|signal` refuse without `--reason`.
    pub require_reason: bool,
    /// New in 2.0: the audit trail; `None` = `audit.log` in the state directory (decided at
    /// run time: the config does no I/O).
    pub audit_log: Option<PathBuf>,
    /// New in 2.0: also send each audit record as RFC 5424 syslog here (validated form).
    pub audit_syslog: Option<String>,
    /// New in 2.0: other local users who may act through the daemon's shared socket, on what
    /// each program's or group's `allow` grants (passwd names, as written).
    #[serde(default)]
    pub allow_users: Vec<String>,
    /// New in 2.0: members of these system groups may too (group names, as written).
    #[serde(default)]
    pub allow_groups: Vec<String>,
    /// New in 2.0: the second socket, for the users of `allow_users`/`allow_groups` (absolute;
    /// its folder owned by the user and writable by no one else). Required with them.
    #[serde(default)]
    pub shared_socket: Option<PathBuf>,
}

/// New in 2.0: one entry of `allow = restart, signal:QUIT, health, repair`: what delegated
/// callers may do on a program or group (nothing by default). Read-only operations (`list`,
/// `status`, `plan`, `history`, `events`) show a delegated caller the programs where it holds
/// any grant and nothing else.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Grant {
    Start,
    Stop,
    Restart,
    /// `signal:NAME`: this signal only (its number). There is no "any signal" grant.
    Signal(i32),
    /// Run the health checks now and see their verdicts.
    Health,
    /// Run the configured repair commands.
    Repair,
}

/// `smtp_host`, `smtp_port` (25), `smtp_from` (default `<user>@<host>`), `smtp_starttls`
/// (false), `smtp_credentials_file` (a file holding `username:password`, read at send time so
/// the secret is never part of the config or its logs).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SmtpConfig {
    pub host: String,
    pub port: u16,
    pub from: Option<String>,
    pub starttls: bool,
    pub credentials_file: Option<PathBuf>,
}

/// Where `usrsvcd_stderr` goes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum LogTarget {
    /// The literal `stdout`: the same stream as usrsvcd's stdout.
    Stdout,
    Path(PathBuf),
}

/// A place in a config file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Location {
    pub file: PathBuf,
    pub line: usize,
}

/// One `[Program:NAME]`, after `DefaultSettings` were merged in. Field names are the config
/// keys, so spec and code grep alike.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
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
    /// New in 2.0: the cap of the doubling restart delay, seconds (300).
    pub restart_delay_max: u64,
    /// New in 2.0: a run this long (seconds, 60) is a success and resets the failure count.
    pub stable_seconds: f64,
    pub success_seconds: f64,
    pub autopid: bool,
    pub useshell: bool,
    pub scan_for_process: bool,
    pub term_to_kill_seconds: f64,
    /// New in 2.0: `stop` (and the clean-up after the main process died) reaches the
    /// program's whole session, or process group, not only its main process (true).
    pub stop_group: bool,
    /// New in 2.0: the signal `stop` sends first, as a raw signal number (SIGTERM).
    pub stop_signal: i32,
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
    /// New in 2.0: at most one mail per program per this many seconds (300); what happens in
    /// between is summarised in the next mail.
    pub email_interval: u64,
    /// New in 2.0: `restart_every`, `restart_at`, `restart_jitter`, `restart_windows` (the
    /// program's own, else `[Main]`'s).
    pub schedule: Schedule,
    /// New in 2.0: `[[HealthCheck:NAME]]`, in file order.
    pub health_checks: Vec<CheckSpec>,
    /// New in 2.0: `directory`, `umask`, `env_file`, `nice`, `[[Limits]]` (`exec.rs`).
    #[serde(default)]
    pub exec: ExecConfig,
    /// New in 2.0: what delegated callers may do on this program (`allow`).
    #[serde(default)]
    pub allow: Vec<Grant>,
}

/// New in 2.0: one `[Group:NAME]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GroupConfig {
    pub name: String,
    pub defined_at: Location,
    /// Members, in start order (stop goes in reverse); each is a defined program.
    pub programs: Vec<String>,
    /// An ordered restart; `None` = rolling (one member at a time, the next once the previous
    /// is up and healthy).
    pub sequence: Option<Vec<Step>>,
    /// A planned restart that would leave fewer members up and healthy is held back (0 = no
    /// limit).
    pub min_ok: u64,
    /// The group's own schedule (windows: its own, else `[Main]`'s).
    pub schedule: Schedule,
    /// New in 2.0: what delegated callers may do on the group and on each of its programs.
    #[serde(default)]
    pub allow: Vec<Grant>,
}

impl GroupConfig {
    /// How many members can be down at once during the group's restart: 1 when rolling, else
    /// the most that the sequence has stopped (or is restarting) at any step.
    pub fn most_down(&self) -> usize {
        let Some(steps) = &self.sequence else {
            return 1;
        };
        let mut down: Vec<&str> = Vec::new();
        let mut most = 0;
        for step in steps {
            match step {
                Step::Stop(m) => {
                    if !down.contains(&m.as_str()) {
                        down.push(m);
                    }
                    most = most.max(down.len());
                }
                Step::Start(m) => down.retain(|d| d != m),
                Step::Restart(m) => {
                    let extra = usize::from(!down.contains(&m.as_str()));
                    most = most.max(down.len() + extra);
                    down.retain(|d| d != m);
                }
                Step::Wait(_) => {}
            }
        }
        most
    }
}

/// One step of a group's `sequence`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Step {
    Start(String),
    Stop(String),
    Restart(String),
    /// Seconds.
    Wait(f64),
}

impl std::fmt::Display for Step {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Step::Start(p) => write!(f, "start {p}"),
            Step::Stop(p) => write!(f, "stop {p}"),
            Step::Restart(p) => write!(f, "restart {p}"),
            Step::Wait(s) => write!(f, "wait {s}"),
        }
    }
}

/// `[[Monitoring]]` (or its synonym `[[Monitor]]`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MonitoringConfig {
    pub monitor_after: u64,
    pub activityfile: Option<PathBuf>,
    pub activityfile_limit: u64,
    /// kB; 0 = off.
    pub rss_limit: u64,
    /// New in 2.0: seconds between two runs of the monitors (5).
    pub check_interval: f64,
}

impl Default for MonitoringConfig {
    fn default() -> Self {
        MonitoringConfig {
            monitor_after: 30,
            activityfile: None,
            activityfile_limit: 120,
            rss_limit: 0,
            check_interval: 5.0,
        }
    }
}

impl MonitoringConfig {
    /// Whether any monitor is configured (the original's `isMonitoringActive`).
    pub fn is_active(&self) -> bool {
        self.activityfile.is_some() || self.rss_limit > 0
    }
}
