//! Pidfiles: the format stays `<pid>\n` (other tools read them: `kill $(cat x.pid)`); writes are
//! atomic (temp file + rename) so a concurrent reader never sees an empty or half file.

use std::io::{Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

/// What a pidfile said.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PidfileRead {
    Missing,
    /// Present but not a pid (empty, garbage, zero or negative).
    Invalid,
    /// A pid, and the file's modification time (a process that started after it cannot be the
    /// one the file was written for).
    Pid {
        pid: i32,
        written: SystemTime,
    },
}

/// Parses a pid the way Python's `int()` did in usrsvc 1.5.13: surrounding whitespace, an
/// optional `+`, and single underscores between digits are accepted.
fn parse_pid(text: &str) -> Option<i32> {
    let t = text.trim();
    let t = t.strip_prefix('+').unwrap_or(t);
    if t.is_empty() || t.starts_with('_') || t.ends_with('_') || t.contains("__") {
        return None;
    }
    let digits: String = t.chars().filter(|c| *c != '_').collect();
    if !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse::<i32>().ok().filter(|p| *p > 0)
}

/// Opens a small regular file for reading without ever blocking: a FIFO or device planted at
/// the path must not hang the caller (while it may hold a program's lock).
pub(crate) fn open_regular(path: &Path) -> std::io::Result<std::fs::File> {
    let f = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)?;
    if !f.metadata()?.is_file() {
        return Err(std::io::Error::other("not a regular file"));
    }
    Ok(f)
}

pub fn read_pidfile(path: &Path) -> PidfileRead {
    let f = match open_regular(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return PidfileRead::Missing,
        Err(_) => return PidfileRead::Invalid,
    };
    let written = f
        .metadata()
        .and_then(|m| m.modified())
        .unwrap_or(SystemTime::UNIX_EPOCH);
    // A pid is a few bytes; whatever is larger is not a pidfile.
    let mut text = String::new();
    if f.take(256).read_to_string(&mut text).is_err() {
        return PidfileRead::Invalid;
    }
    match parse_pid(&text) {
        Some(pid) => PidfileRead::Pid { pid, written },
        None => PidfileRead::Invalid,
    }
}

/// Writes `<pid>\n` atomically: a temp file in the same directory, renamed over the pidfile.
pub fn write_pidfile(path: &Path, pid: i32) -> std::io::Result<()> {
    write_atomic(path, format!("{pid}\n").as_bytes())
}

/// Replaces `path` with `contents` atomically. The temp file is created new (never opened if
/// something is already there, never through a symlink), with an unpredictable name: a
/// pidfile directory may be shared with other users, who could otherwise plant a symlink at
/// the temp name and have us overwrite a file of ours.
pub fn write_atomic(path: &Path, contents: &[u8]) -> std::io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "pidfile".to_owned());
    let mut attempt = 0u32;
    let (tmp, mut file) = loop {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let tmp: PathBuf = dir.join(format!(
            ".{name}.{}.{nanos:x}{attempt}.tmp",
            std::process::id()
        ));
        // `fsafe`: O_EXCL, never through a symlink, and not in a folder another user can
        // write (unless sticky: then nobody else can rename over what we create).
        match crate::fsafe::create_new(&tmp, 0o644) {
            Ok(f) => break (tmp, f),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists && attempt < 16 => {
                attempt += 1;
            }
            Err(e) => return Err(e),
        }
    };
    let result = file
        .write_all(contents)
        .and_then(|()| std::fs::rename(&tmp, path));
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// Removes a pidfile; one that is already gone is not an error.
pub fn remove_pidfile(path: &Path) -> std::io::Result<()> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pid_parsing_follows_python_int() {
        assert_eq!(parse_pid("123\n"), Some(123));
        assert_eq!(parse_pid("  +12 "), Some(12));
        assert_eq!(parse_pid("1_2"), Some(12));
        for bad in ["", "abc", "-5", "0", "1__2", "_1", "1.5", "99999999999"] {
            assert_eq!(parse_pid(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn write_read_remove_round_trip() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = dir.path().join("x.pid");
        assert_eq!(read_pidfile(&p), PidfileRead::Missing);
        write_pidfile(&p, 4242).expect("write");
        assert_eq!(std::fs::read_to_string(&p).expect("read"), "4242\n");
        assert!(matches!(
            read_pidfile(&p),
            PidfileRead::Pid { pid: 4242, .. }
        ));
        std::fs::write(&p, "junk").expect("write junk");
        assert_eq!(read_pidfile(&p), PidfileRead::Invalid);
        std::fs::remove_file(&p).expect("rm");
        nix::unistd::mkfifo(&p, nix::sys::stat::Mode::S_IRWXU).expect("mkfifo");
        assert_eq!(read_pidfile(&p), PidfileRead::Invalid);
        remove_pidfile(&p).expect("remove");
        remove_pidfile(&p).expect("remove again is fine");
        assert_eq!(std::fs::read_dir(dir.path()).expect("ls").count(), 0);
        assert!(write_pidfile(&dir.path().join("no/such/dir/x.pid"), 1).is_err());
    }

    #[test]
    fn a_folder_anyone_can_write_gets_no_pidfile() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().expect("tempdir");
        let open = dir.path().join("open");
        std::fs::create_dir(&open).expect("mkdir");
        std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o777)).expect("chmod");
        let e = write_pidfile(&open.join("x.pid"), 7).expect_err("refused");
        assert!(e.to_string().contains("sticky"), "{e}");
        assert_eq!(
            std::fs::read_dir(&open).expect("ls").count(),
            0,
            "no temp file left"
        );
        std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o1777)).expect("chmod");
        write_pidfile(&open.join("x.pid"), 7).expect("sticky: ours is safe");
    }

    #[test]
    fn a_planted_symlink_is_never_followed() {
        let dir = tempfile::tempdir().expect("tempdir");
        let precious = dir.path().join("precious");
        std::fs::write(&precious, "data").expect("write");
        // Whatever temp name is tried, a symlink there is not opened: plant many.
        for entry in 0..64 {
            let _ = std::os::unix::fs::symlink(&precious, dir.path().join(format!("l{entry}")));
        }
        write_pidfile(&dir.path().join("x.pid"), 7).expect("write");
        assert_eq!(std::fs::read_to_string(&precious).expect("read"), "data");
        // A symlink at the pidfile itself is replaced, not written through.
        std::os::unix::fs::symlink(&precious, dir.path().join("y.pid")).expect("symlink");
        write_pidfile(&dir.path().join("y.pid"), 8).expect("write");
        assert_eq!(std::fs::read_to_string(&precious).expect("read"), "data");
        assert_eq!(
            std::fs::read_to_string(dir.path().join("y.pid")).expect("read"),
            "8\n"
        );
    }
}
