//! The value rules of usrsvc 1.5.13's `configcommon` (booleans, integers, floats) with their
//! exact messages, and this version's path rule (`~/` from `home`, relative paths from the
//! directory of the file that set them), and signal names. Pure functions of their
//! arguments: no I/O.

use std::path::{Path, PathBuf};

use super::error::ConfigErrorKind;
use super::python::{matches_float_re, py_isdigit, py_repr};

/// A rejected value: the kind and the original's message.
pub(crate) type Rejection = (ConfigErrorKind, String);

/// `getConfigValueBool`: digits are an integer's truth, else `true`/`false` in any case.
pub(crate) fn to_bool(key: &str, value: &str) -> Result<bool, Rejection> {
    if py_isdigit(value) {
        return Ok(value.bytes().any(|b| b != b'0'));
    }
    let lower = value.to_lowercase();
    match lower.as_str() {
        "true" => Ok(true),
        "false" => Ok(false),
        _ => Err((
            ConfigErrorKind::InvalidBool,
            format!(
                "Unknown value for config parameter {key}: {lower}. Should be True/1 or False/0"
            ),
        )),
    }
}

/// `getConfigValueInt`: all digits. Python's integers are unbounded; a value beyond `u64`
/// saturates, which means "for ever" for every integer key usrsvc has.
pub(crate) fn to_int(key: &str, value: &str) -> Result<u64, Rejection> {
    if !py_isdigit(value) {
        return Err((
            ConfigErrorKind::InvalidInt,
            format!(
                "Invalid value for config parameter {key}. Should be a positive integer. Got {value}"
            ),
        ));
    }
    Ok(value.parse::<u64>().unwrap_or(u64::MAX))
}

/// `getConfigValueFloat`: `^(\d*)(\.(\d+))?$`, then Python's `float()`, whose own message shows
/// for the strings the pattern lets through but `float()` refuses (the empty string).
pub(crate) fn to_float(key: &str, value: &str) -> Result<f64, Rejection> {
    if !matches_float_re(value) {
        return Err((
            ConfigErrorKind::InvalidFloat,
            format!(
                "Invalid value for config parameter {key}. Should be a positive floating-point number. Got {value}"
            ),
        ));
    }
    // float() ignores surrounding whitespace (a trailing newline is all the pattern allows).
    let trimmed = value.trim();
    match trimmed.parse::<f64>() {
        Ok(f) if !trimmed.is_empty() && trimmed != "." => Ok(f),
        _ => Err((
            ConfigErrorKind::InvalidFloat,
            format!("could not convert string to float: {}", py_repr(value)),
        )),
    }
}

/// Where a path-valued key points: `~` and `~/x` from `home`, absolute paths as they are, any
/// other relative path from `base_dir` (the directory of the file the key was read from).
pub(crate) fn resolve_path(value: &str, home: &Path, base_dir: &Path) -> PathBuf {
    if value == "~" {
        home.to_path_buf()
    } else if let Some(rest) = value.strip_prefix("~/") {
        home.join(rest.trim_start_matches('/'))
    } else if value.starts_with('/') {
        PathBuf::from(value)
    } else {
        base_dir.join(value)
    }
}

/// A signal as an operator writes it: `QUIT`, `SIGQUIT`, `quit` or `3` (what `usrsvc signal`
/// and `stop_signal` take).
pub fn parse_signal(text: &str) -> Option<rustix::process::Signal> {
    let t = text.trim();
    if let Ok(n) = t.parse::<i32>() {
        return rustix::process::Signal::from_named_raw(n);
    }
    let upper = t.to_ascii_uppercase();
    let name = if upper.starts_with("SIG") {
        upper
    } else {
        format!("SIG{upper}")
    };
    let sig: nix::sys::signal::Signal = name.parse().ok()?;
    rustix::process::Signal::from_named_raw(sig as i32)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg<T: std::fmt::Debug>(r: Result<T, Rejection>) -> String {
        match r {
            Err((_, m)) => m,
            Ok(v) => panic!("accepted: {v:?}"),
        }
    }

    #[test]
    fn booleans() {
        for (v, want) in [
            ("1", true),
            ("2", true),
            ("10", true),
            ("0", false),
            ("00", false),
            ("true", true),
            ("True", true),
            ("TRUE", true),
            ("false", false),
            ("FaLsE", false),
        ] {
            assert_eq!(to_bool("k", v), Ok(want), "{v}");
        }
        assert_eq!(
            msg(to_bool("autostart", "Yes")),
            "Unknown value for config parameter autostart: yes. Should be True/1 or False/0"
        );
        assert_eq!(
            msg(to_bool("autostart", "")),
            "Unknown value for config parameter autostart: . Should be True/1 or False/0"
        );
        assert!(to_bool("k", "-1").is_err());
        assert!(to_bool("k", " 1").is_err());
    }

    #[test]
    fn integers() {
        assert_eq!(to_int("k", "0"), Ok(0));
        assert_eq!(to_int("k", "007"), Ok(7));
        assert_eq!(to_int("k", "99999999999999999999999"), Ok(u64::MAX));
        assert_eq!(
            msg(to_int("maxrestarts", "-1")),
            "Invalid value for config parameter maxrestarts. Should be a positive integer. Got -1"
        );
        assert_eq!(
            msg(to_int("restart_delay", "1.5")),
            "Invalid value for config parameter restart_delay. Should be a positive integer. Got 1.5"
        );
        assert_eq!(
            msg(to_int("rss_limit", "")),
            "Invalid value for config parameter rss_limit. Should be a positive integer. Got "
        );
        assert!(to_int("k", "+1").is_err());
        assert!(to_int("k", "1 ").is_err());
    }

    #[test]
    fn floats() {
        assert_eq!(to_float("k", "5"), Ok(5.0));
        assert_eq!(to_float("k", "5.5"), Ok(5.5));
        assert_eq!(to_float("k", ".5"), Ok(0.5));
        assert_eq!(to_float("k", "0"), Ok(0.0));
        assert_eq!(to_float("k", "2\n"), Ok(2.0));
        for bad in ["5.", "-1", "1e3", "inf", "nan", " 1"] {
            assert_eq!(
                msg(to_float("success_seconds", bad)),
                format!(
                    "Invalid value for config parameter success_seconds. Should be a positive floating-point number. Got {bad}"
                )
            );
        }
        assert_eq!(
            msg(to_float("success_seconds", "")),
            "could not convert string to float: ''"
        );
        assert_eq!(
            msg(to_float("success_seconds", "\n")),
            "could not convert string to float: '\\n'"
        );
    }

    #[test]
    fn paths() {
        let home = Path::new("/home/u");
        let dir = Path::new("/home/u/usrsvc.d/cfg");
        assert_eq!(resolve_path("~", home, dir), PathBuf::from("/home/u"));
        assert_eq!(
            resolve_path("~/logs/a.out", home, dir),
            PathBuf::from("/home/u/logs/a.out")
        );
        assert_eq!(resolve_path("~//x", home, dir), PathBuf::from("/home/u/x"));
        assert_eq!(resolve_path("/abs/p", home, dir), PathBuf::from("/abs/p"));
        assert_eq!(
            resolve_path("logs/err", home, dir),
            PathBuf::from("/home/u/usrsvc.d/cfg/logs/err")
        );
        assert_eq!(
            resolve_path("~other/x", home, dir),
            PathBuf::from("/home/u/usrsvc.d/cfg/~other/x")
        );
    }
}
