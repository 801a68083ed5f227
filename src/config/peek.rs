//! One key of `[Main]` read from a main config file's bytes, leniently, without building the
//! whole configuration: what `usrsvc --user ACCOUNT` needs of another user's file (its
//! `shared_socket`) — a file that may not even be valid for us to load (its `config_dir`, its
//! programs' paths are that user's business).
//!
//! Must not: do I/O (the caller reads the file, bounded), fail on errors elsewhere in the
//! file (configobj keeps going after one, and so does this), or interpolate (`%(name)s` is
//! returned as it stands; the caller says it cannot use it).

use std::path::{Path, PathBuf};

use super::syntax::{self, RawValue, ROOT};

/// The value of `key` in `[Main]` of the file's `bytes`, as a path (`~` from `home`, a
/// relative path from `base_dir`): `Ok(None)` when the file has no such key, `Err` with why
/// when the value is unusable (a list, interpolation, not UTF-8).
pub fn main_path(
    bytes: &[u8],
    key: &str,
    home: &Path,
    base_dir: &Path,
) -> Result<Option<PathBuf>, String> {
    let parsed = syntax::parse_bytes(bytes).map_err(|e| e.message)?;
    let tree = &parsed.tree;
    let Some(main) = tree.child(ROOT, "Main") else {
        return Ok(None);
    };
    let Some(entry) = tree.entry(main, key) else {
        return Ok(None);
    };
    match &entry.value {
        RawValue::Scalar(v) if v.contains("%(") => Err(format!(
            "{key} (line {}) uses interpolation, which usrsvc --user does not resolve",
            entry.line
        )),
        RawValue::Scalar(v) if v.trim().is_empty() => Ok(None),
        RawValue::Scalar(v) => Ok(Some(super::values::resolve_path(v.trim(), home, base_dir))),
        RawValue::List(_) => Err(format!("{key} (line {}) is a list, not a path", entry.line)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peek(text: &str) -> Result<Option<PathBuf>, String> {
        main_path(
            text.as_bytes(),
            "shared_socket",
            Path::new("/home/u"),
            Path::new("/etc/x"),
        )
    }

    #[test]
    fn finds_the_key_of_main_only_and_resolves_it() {
        assert_eq!(
            peek("[Main]\nshared_socket = ~/s/usrsvcd.sock\n"),
            Ok(Some(PathBuf::from("/home/u/s/usrsvcd.sock")))
        );
        assert_eq!(
            peek("[Main]\nshared_socket = rel.sock\n"),
            Ok(Some(PathBuf::from("/etc/x/rel.sock")))
        );
        assert_eq!(
            peek("[Program:a]\nshared_socket = /x\n[Main]\npidfile = /p\n"),
            Ok(None)
        );
        assert_eq!(peek(""), Ok(None));
        // Errors elsewhere in the file do not hide the key.
        assert_eq!(
            peek("garbage line\n[Main]\nshared_socket = /run/a.sock\n[[[bad\n"),
            Ok(Some(PathBuf::from("/run/a.sock")))
        );
    }

    #[test]
    fn unusable_values_say_why() {
        assert!(peek("[Main]\nshared_socket = a, b\n")
            .expect_err("list")
            .contains("list"));
        assert!(peek("[Main]\nshared_socket = %(HOME)s/x\n")
            .expect_err("interp")
            .contains("interpolation"));
        assert!(main_path(b"\xff\xfe", "k", Path::new("/"), Path::new("/")).is_err());
    }
}
