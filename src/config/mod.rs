//! Configuration: usrsvc 1.5.13's config files, read unchanged. `load` is the only entry point
//! and the only place in this module that touches the system (it reads the main file, lists
//! and reads `config_dir/*.cfg`, and lets the builder ask whether log directories and
//! `sendmail_path` exist). The stages below it are pure: configobj syntax → `RawTree` with line
//! numbers (`syntax`, `interpolate`) → typed `Config` (`model`, `values`, `shlex`).
//!
//! Differences from the original, on purpose (see design §2): every error is reported, with
//! file, line, section and key, instead of the first one or a traceback; relative paths and
//! `~/` are resolved instead of rejected; `[[Monitor]]` and `max_restarts` are accepted as
//! synonyms; `config_dir` files are read in sorted order, and a program defined twice is an
//! error rather than "last one wins".
//!
//! Layering: `config` is a leaf. It imports nothing from `health`, `control`, `daemon`,
//! `api` or `cli` (they all read a `Config`; the health check's spec, `CheckSpec`, and the
//! signal-name parser live here for that reason). Its only imports from the rest of the crate
//! are `schedule` (pure arithmetic, itself a leaf) and `audit::SyslogTarget`'s parser, to
//! validate `audit_syslog`; that parser is pure, but `audit` as a module reaches `alert` and
//! `proc`, which read `config`, so the target syntax is the one edge left to move down.

mod build;
mod check;
mod error;
mod exec;
mod fastpath;
mod hashing;
mod inherit;
mod interpolate;
mod model;
mod pattern;
pub mod peek;
pub(crate) mod python;
#[cfg(test)]
mod scaling_tests;
mod shlex;
mod syntax;
mod values;

use std::ffi::OsString;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

pub use check::{CheckSpec, HealthAction};
pub use error::{ConfigError, ConfigErrorKind, ConfigErrors};
pub use exec::{ExecConfig, Limit, LimitValue, Resource};
pub use model::{
    Config, Grant, GroupConfig, Location, LogTarget, MainConfig, MonitoringConfig, ProgramConfig,
    SmtpConfig, Step,
};
pub use shlex::shlex_split;
pub use values::parse_signal;

use build::{Probe, SourceFile};

/// Reads and checks the whole configuration: `main_file` (normally `$HOME/usrsvc.cfg`) and the
/// `*.cfg` files of its `[Main] config_dir`. `home` is what `~/` means, and where the default
/// usrsvcd pidfile goes.
///
/// On failure every problem found is returned. Syntax errors (and unreadable or non-UTF-8
/// files) of all files are reported together and stop there, since the meaning of a file that
/// does not parse is a guess; otherwise every key of every program is checked.
pub fn load(main_file: &Path, home: &Path) -> Result<Config, ConfigErrors> {
    let main_file = std::path::absolute(main_file).unwrap_or_else(|_| main_file.to_path_buf());
    let home = std::path::absolute(home).unwrap_or_else(|_| home.to_path_buf());
    if !main_file.exists() {
        return Err(ConfigErrors::one(ConfigError::new(
            ConfigErrorKind::FileMissing,
            main_file.clone(),
            format!("File does not exist: {}", main_file.display()),
        )));
    }
    let mut errors = Vec::new();
    let mut files = Vec::new();
    // The original (configobj) reads anything that is not a regular file as empty.
    let main_bytes = if main_file.is_file() {
        read(&main_file, &mut errors)
    } else {
        Some(Vec::new())
    };
    let Some(main_bytes) = main_bytes else {
        return Err(ConfigErrors::from_vec(errors).unwrap_or_else(|| unreadable(&main_file)));
    };
    if let Some(main) = parse(&main_file, &main_bytes, &mut errors) {
        let dir = build::config_dir_of(&main, &home);
        files.push(main);
        if let Some((dir, line)) = dir {
            for path in config_dir_files(&dir, &main_file, line, &mut errors) {
                if let Some(bytes) = read(&path, &mut errors) {
                    if let Some(f) = parse(&path, &bytes, &mut errors) {
                        files.push(f);
                    }
                }
            }
        }
    }
    if let Some(errors) = ConfigErrors::from_vec(errors) {
        return Err(errors);
    }
    build::build(&files, &home, &System)
}

fn unreadable(path: &Path) -> ConfigErrors {
    ConfigErrors::one(ConfigError::new(
        ConfigErrorKind::FileUnreadable,
        path.to_path_buf(),
        format!("Cannot read config file {}", path.display()),
    ))
}

fn read(path: &Path, errors: &mut Vec<ConfigError>) -> Option<Vec<u8>> {
    match std::fs::read(path) {
        Ok(b) => Some(b),
        Err(e) => {
            errors.push(ConfigError::new(
                ConfigErrorKind::FileUnreadable,
                path.to_path_buf(),
                format!("Cannot read config file {}: {e}", path.display()),
            ));
            None
        }
    }
}

/// Parses one file, adding its decode or syntax errors to `errors`. The tree is returned even
/// when there were syntax errors (the main file's `config_dir` is still used to find the others).
fn parse(path: &Path, bytes: &[u8], errors: &mut Vec<ConfigError>) -> Option<SourceFile> {
    match syntax::parse_bytes(bytes) {
        Err(e) => {
            errors.push(
                ConfigError::new(ConfigErrorKind::InvalidUtf8, path.to_path_buf(), e.message)
                    .at_line(e.line),
            );
            None
        }
        Ok(parsed) => {
            for e in parsed.errors {
                let kind = match e.kind {
                    syntax::SyntaxErrorKind::Nesting => ConfigErrorKind::Nesting,
                    syntax::SyntaxErrorKind::DuplicateSection => ConfigErrorKind::DuplicateSection,
                    syntax::SyntaxErrorKind::DuplicateKey => ConfigErrorKind::DuplicateKey,
                    syntax::SyntaxErrorKind::InvalidLine => ConfigErrorKind::InvalidLine,
                    syntax::SyntaxErrorKind::Value => ConfigErrorKind::ValueSyntax,
                    syntax::SyntaxErrorKind::Multiline => ConfigErrorKind::MultilineValue,
                };
                errors.push(ConfigError::new(kind, path.to_path_buf(), e.message).at_line(e.line));
            }
            Some(SourceFile {
                path: path.to_path_buf(),
                tree: parsed.tree,
            })
        }
    }
}

/// `config_dir/*.cfg` as Python's glob sees it (not recursive, no dot-files), in byte order,
/// keeping only regular files (configobj reads anything else as empty). A config_dir that does
/// not exist, or is not a directory, gives no files, as in the original. One that cannot be
/// listed is an error at `line` of the main file, where `config_dir` is set.
fn config_dir_files(
    dir: &Path,
    main_file: &Path,
    line: usize,
    errors: &mut Vec<ConfigError>,
) -> Vec<PathBuf> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e)
            if matches!(
                e.kind(),
                io::ErrorKind::NotFound | io::ErrorKind::NotADirectory
            ) =>
        {
            return Vec::new()
        }
        Err(e) => {
            errors.push(
                ConfigError::new(
                    ConfigErrorKind::FileUnreadable,
                    main_file.to_path_buf(),
                    format!("Cannot list config_dir {}: {e}", dir.display()),
                )
                .at_line(line)
                .in_section("Main")
                .for_key("config_dir"),
            );
            return Vec::new();
        }
    };
    let mut names: Vec<OsString> = entries
        .filter_map(Result::ok)
        .map(|e| e.file_name())
        .filter(|n| {
            let b = n.as_bytes();
            b.ends_with(b".cfg") && !b.starts_with(b".")
        })
        .collect();
    names.sort_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
    names
        .into_iter()
        .map(|n| dir.join(n))
        .filter(|p| p.is_file())
        .collect()
}

/// The real system, for the builder.
struct System;

impl Probe for System {
    fn is_dir(&self, path: &Path) -> bool {
        path.is_dir()
    }
    fn exists(&self, path: &Path) -> bool {
        path.exists()
    }
    fn is_executable(&self, path: &Path) -> bool {
        nix::unistd::access(path, nix::unistd::AccessFlags::X_OK).is_ok()
    }
    fn path_var(&self) -> Option<OsString> {
        std::env::var_os("PATH")
    }
    fn uid(&self) -> u32 {
        nix::unistd::getuid().as_raw()
    }
}
