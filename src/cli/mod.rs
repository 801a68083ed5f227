//! Argument handling and output for both binaries: the 1.5.13 command forms and exit codes,
//! timestamped human lines, `--json`. `--help`, `--version` and `--readme` are answered before
//! any config is read (as 1.5.3 and later did).
//!
//! Nothing here uses `print!`/`println!`, which panic when stdout is a closed pipe: output
//! goes through `out`, and clippy holds that line.
#![deny(clippy::print_stdout, clippy::print_stderr)]

pub mod client;
pub mod daemon;
pub mod logs;
pub mod ops;
pub mod out;
pub mod plan;
pub mod remote;
pub mod worker;

use std::io::Write;
use std::path::PathBuf;

use crate::config::{self, Config, ConfigErrors};
use crate::control::Report;
use crate::exit::ReturnCode;

pub const VERSION: &str = env!("CARGO_PKG_VERSION");
pub const README: &str = include_str!("../../README.md");

/// 1.5.13's log prefix: local time as C `ctime()` without the newline.
pub fn timestamp() -> String {
    chrono::Local::now()
        .format("%a %b %e %H:%M:%S %Y")
        .to_string()
}

/// `[ctime] - text`, one whole line, written with one `write` so lines of concurrent actions
/// (`--parallel`) never interleave within a line.
fn write_line(mut to: impl Write, msg: &str) {
    let mut line = format!("[{}] - {msg}", timestamp());
    if !line.ends_with('\n') {
        line.push('\n');
    }
    let _ = to.write_all(line.as_bytes());
    let _ = to.flush();
}

/// The terminal: informational lines on stdout, errors on stderr. With `--json`, stdout carries
/// only the JSON document, which says all the informational lines would; warnings and errors
/// still go to stderr.
pub struct Console {
    pub debug: bool,
    pub json: bool,
}

impl Report for Console {
    fn info(&self, msg: &str) {
        if !self.json {
            write_line(std::io::stdout().lock(), msg);
        }
    }
    fn error(&self, msg: &str) {
        write_line(std::io::stderr().lock(), msg);
    }
    fn warn(&self, msg: &str) {
        if self.json {
            self.error(msg);
        } else {
            self.info(msg);
        }
    }
    fn debug(&self, msg: &str) {
        if self.debug {
            write_line(std::io::stderr().lock(), &format!("DEBUG: {msg}"));
        }
    }
}

/// The user's home: `$HOME`, else the passwd entry, else `/`.
pub fn home_dir() -> PathBuf {
    if let Some(h) = std::env::var_os("HOME").filter(|h| !h.is_empty()) {
        return PathBuf::from(h);
    }
    nix::unistd::User::from_uid(nix::unistd::getuid())
        .ok()
        .flatten()
        .map(|u| u.dir)
        .unwrap_or_else(|| PathBuf::from("/"))
}

/// The main config file: `--config`, else `$USRSVC_CONFIG`, else `$HOME/usrsvc.cfg`.
pub fn config_path(flag: Option<PathBuf>) -> PathBuf {
    flag.or_else(|| {
        std::env::var_os("USRSVC_CONFIG")
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    })
    .unwrap_or_else(|| home_dir().join("usrsvc.cfg"))
}

/// Loads the configuration and prints its warnings (unless `quiet`: a nested command whose
/// parent has printed them already).
pub fn load_config(
    path: &std::path::Path,
    report: &dyn Report,
    quiet: bool,
) -> Result<Config, ConfigErrors> {
    let cfg = config::load(path, &home_dir())?;
    if !quiet {
        for w in &cfg.warnings {
            report.warn(w);
        }
    }
    Ok(cfg)
}

/// Answers `--version`, `--help` and `--readme` wherever they stand in argv, before any config
/// is read (exit 138, as 1.5.13). None when argv asks for none of them.
pub fn answer_early(
    args: &[String],
    binary: &str,
    usage: impl Fn() -> String,
) -> Option<ReturnCode> {
    // After `--` come names (a program may be called `--help`).
    let flags: Vec<&String> = args.iter().take_while(|a| *a != "--").collect();
    let has = |flag: &str| flags.iter().any(|a| *a == flag);
    if has("--version") {
        out::eprint(&format!("{binary} version {VERSION}\n"));
    } else if has("--help") || has("-h") {
        out::eprint(&usage());
    } else if has("--readme") {
        out::print(&README.replace("\\_", "_"));
    } else {
        return None;
    }
    Some(ReturnCode::HelpMessage)
}
