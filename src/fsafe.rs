//! Opening the files usrsvc writes (program logs, the daemon's logs, the audit log, lock files,
//! and the temp files behind pidfiles, markers and records) so that nobody who can write
//! where they live can turn a write of ours into a write of theirs.
//!
//! Every open: never follows a symlink in the last component (`O_NOFOLLOW`, and an `lstat`
//! first for a clear message); never blocks (`O_NONBLOCK`: a FIFO planted at the path fails or
//! is refused at once, and a device is never opened at all); is close-on-exec; and keeps the
//! file only if `fstat` says it is a regular file (or the null device, which users write
//! `stdout = /dev/null` for). `O_NONBLOCK` is cleared again on the regular file, so a program
//! that inherits it as stdout sees an ordinary descriptor.
//!
//! The folder holding the file is checked first: it must not be writable by another user
//! (world- or group-writable, or owned by another uid than ours or root's), unless it has the
//! sticky bit, which protects the files of their owner only; so in a sticky folder such as
//! `/tmp` an existing file must be ours and have one link (a new file we create is ours). A
//! group-writable folder is fine when the group is the user's private group (same name and
//! gid as the user, no other members: what `umask 002` systems create).
//!
//! Above the file's folder, a symlink on the way that lies in a folder others can write must
//! be ours or root's (as the kernel's `fs.protected_symlinks` has it for sticky folders, but
//! whether or not that is on); otherwise those folders are trusted. Must not: decide anything about programs, or write anything itself;
//! every refusal is an `io::Error` whose text says why (the callers name the path).

use std::fs::File;
use std::io;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use rustix::fs::{Mode, OFlags};

/// The folder a file is opened in, as far as the checks are concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Folder {
    /// Only we (and root) can change its entries.
    Private,
    /// Others may write it, but it is sticky: only an entry's owner can replace that entry.
    Sticky,
}

/// Opens `path` to append to it (a log), created with `mode` if missing.
pub fn open_append(path: &Path, mode: u32) -> io::Result<File> {
    open(path, OFlags::WRONLY | OFlags::APPEND | OFlags::CREATE, mode)
}

/// Opens `path` for reading and writing without truncating it, created with `mode` if missing
/// (lock files).
pub fn open_lock(path: &Path, mode: u32) -> io::Result<File> {
    open(path, OFlags::RDWR | OFlags::CREATE, mode)
}

/// Creates `path`, which must not exist yet (`O_EXCL`: the temp file of an atomic replace).
pub fn create_new(path: &Path, mode: u32) -> io::Result<File> {
    open(path, OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL, mode)
}

/// Opens a file usrsvc reads back (the audit log for `history`) without ever blocking: a FIFO
/// or device at the path is refused instead of hanging the reader. Symlinks are followed
/// (reading through one writes nothing).
pub fn open_read(path: &Path) -> io::Result<File> {
    let fd = rustix::fs::open(
        path,
        OFlags::RDONLY | OFlags::NONBLOCK | OFlags::CLOEXEC,
        Mode::empty(),
    )?;
    let file = File::from(fd);
    let meta = file.metadata()?;
    if !meta.is_file() {
        check_kind(&meta)?;
        return Err(refused("it is not a regular file".into()));
    }
    let flags = rustix::fs::fcntl_getfl(&file)?;
    rustix::fs::fcntl_setfl(&file, flags - OFlags::NONBLOCK)?;
    Ok(file)
}

fn refused(reason: String) -> io::Error {
    io::Error::new(
        io::ErrorKind::PermissionDenied,
        format!("refused: {reason}"),
    )
}

fn open(path: &Path, flags: OFlags, mode: u32) -> io::Result<File> {
    let dir = folder_of(path);
    check_way(&dir)?;
    let folder = check_folder(&dir)?;
    let exclusive = flags.contains(OFlags::EXCL);
    if !exclusive {
        match std::fs::symlink_metadata(path) {
            Ok(meta) => check_kind(&meta)?,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
    }
    let fd = rustix::fs::open(
        path,
        flags | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC,
        Mode::from_raw_mode(mode),
    )
    .map_err(|e| match e {
        // Between our lstat and the open something else was put there.
        rustix::io::Errno::LOOP => refused(SYMLINK.to_owned()),
        rustix::io::Errno::NXIO => refused("it is a FIFO or socket, not a regular file".into()),
        e => io::Error::from(e),
    })?;
    let file = File::from(fd);
    let meta = file.metadata()?;
    check_kind(&meta)?;
    if meta.is_file() && folder == Folder::Sticky {
        check_shared_file(path, &meta)?;
    }
    // A program inherits this as its stdout: it gets an ordinary, blocking descriptor.
    let flags = rustix::fs::fcntl_getfl(&file)?;
    rustix::fs::fcntl_setfl(&file, flags - OFlags::NONBLOCK)?;
    Ok(file)
}

/// Opens for reading a file whose text decides how a program runs (an `env_file`: it can set
/// `LD_PRELOAD` or `PATH`), so it must be as safe from other users as the program itself.
/// Symlinks are resolved first; then the folder of the real file must pass `check_folder`
/// (in a sticky one the file must be ours, with one link), and the file must be a regular
/// file of ours or root's that no other user can write. Never blocks (a FIFO is refused).
pub fn open_trusted_read(path: &Path) -> io::Result<File> {
    let real = std::fs::canonicalize(path)?;
    let dir = folder_of(&real);
    let folder = check_folder(&dir)?;
    let fd = rustix::fs::open(
        &real,
        OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC | OFlags::NOCTTY,
        Mode::empty(),
    )
    .map_err(|e| match e {
        rustix::io::Errno::LOOP => refused(SYMLINK.to_owned()),
        e => io::Error::from(e),
    })?;
    let file = File::from(fd);
    let meta = file.metadata()?;
    if !meta.is_file() {
        return Err(refused("not a regular file".into()));
    }
    if folder == Folder::Sticky {
        check_shared_file(&real, &meta)?;
    }
    let me = crate::proc::my_uid();
    if meta.uid() != me && meta.uid() != 0 {
        return Err(refused(format!(
            "{} belongs to uid {}, who could change the environment of the program",
            real.display(),
            meta.uid()
        )));
    }
    if let Some(who) = others_can_write(&meta, me) {
        return Err(refused(format!(
            "{} is {who} (mode {:04o}), so another user could change the environment of the program",
            real.display(),
            meta.mode() & 0o7777
        )));
    }
    Ok(file)
}

const SYMLINK: &str = "it is a symbolic link, and usrsvc never follows one there";

/// The folder `path` is in (`.` for a bare name).
fn folder_of(path: &Path) -> PathBuf {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

/// Refuses anything but a regular file or the null device.
fn check_kind(meta: &std::fs::Metadata) -> io::Result<()> {
    let t = meta.file_type();
    let what = if t.is_file() || is_null_device(meta) {
        return Ok(());
    } else if t.is_symlink() {
        return Err(refused(SYMLINK.to_owned()));
    } else if t.is_fifo() {
        "a FIFO"
    } else if t.is_socket() {
        "a socket"
    } else if t.is_dir() {
        "a directory"
    } else if t.is_char_device() {
        "a character device"
    } else if t.is_block_device() {
        "a block device"
    } else {
        "something else"
    };
    Err(refused(format!("it is {what}, not a regular file")))
}

/// `/dev/null` (major 1, minor 3): the one device a log may be.
fn is_null_device(meta: &std::fs::Metadata) -> bool {
    meta.file_type().is_char_device()
        && rustix::fs::major(meta.rdev()) == 1
        && rustix::fs::minor(meta.rdev()) == 3
}

/// In a sticky folder others can write, a file is safe only if it is ours and not a second
/// name of some other file.
fn check_shared_file(path: &Path, meta: &std::fs::Metadata) -> io::Result<()> {
    let dir = folder_of(path);
    let me = crate::proc::my_uid();
    if meta.uid() != me {
        return Err(refused(format!(
            "the folder {} is shared (writable by others, sticky) and the file belongs to uid {}, not to uid {me}",
            dir.display(),
            meta.uid()
        )));
    }
    if meta.nlink() > 1 {
        return Err(refused(format!(
            "the folder {} is shared (writable by others, sticky) and the file has {} hard links",
            dir.display(),
            meta.nlink()
        )));
    }
    Ok(())
}

/// Whether another user can add, remove or replace entries of `dir`, and if so whether the
/// sticky bit protects ours. `Err` (naming the folder and the reason) when it does not.
pub fn check_folder(dir: &Path) -> io::Result<Folder> {
    let meta = std::fs::metadata(dir)?;
    if !meta.is_dir() {
        return Err(refused(format!("{} is not a folder", dir.display())));
    }
    let me = crate::proc::my_uid();
    let mode = meta.mode() & 0o7777;
    if meta.uid() != me && meta.uid() != 0 {
        return Err(refused(format!(
            "the folder {} belongs to uid {}, who could replace the file",
            dir.display(),
            meta.uid()
        )));
    }
    let sticky = mode & 0o1000 != 0;
    match others_can_write(&meta, me) {
        None => Ok(Folder::Private),
        Some(_) if sticky => Ok(Folder::Sticky),
        Some(who) => Err(refused(format!(
            "the folder {} is {who} (mode {mode:04o}) without the sticky bit, so another user \
             could replace the file",
            dir.display()
        ))),
    }
}

/// Stricter than [`check_folder`], for a folder where a socket others connect to lives (the
/// daemon's shared socket): it must be ours, and writable by no one else at all — not by
/// root's ownership, a group or the sticky bit, since whoever can add an entry there can put
/// a socket of theirs where our users look for ours.
pub fn check_own_folder(dir: &Path) -> io::Result<()> {
    check_way(dir)?;
    let meta = std::fs::metadata(dir)?;
    if !meta.is_dir() {
        return Err(refused(format!("{} is not a folder", dir.display())));
    }
    let me = crate::proc::my_uid();
    let mode = meta.mode() & 0o7777;
    if meta.uid() != me {
        return Err(refused(format!(
            "the folder {} belongs to uid {}, not to uid {me}",
            dir.display(),
            meta.uid()
        )));
    }
    if mode & 0o022 != 0 {
        return Err(refused(format!(
            "the folder {} is writable by its group or others (mode {mode:04o})",
            dir.display()
        )));
    }
    Ok(())
}

/// Who besides `me` (and root) can write the folder `meta` is of, if anyone.
fn others_can_write(meta: &std::fs::Metadata, me: u32) -> Option<String> {
    if meta.mode() & 0o002 != 0 {
        Some("writable by every user".to_owned())
    } else if meta.mode() & 0o020 != 0 && !private_group(meta.gid(), me) {
        Some(format!("writable by the group {}", group_name(meta.gid())))
    } else {
        None
    }
}

/// The folders on the way to `dir`: a symlink among them that sits in a folder others can
/// write must be ours or root's (what the kernel's `fs.protected_symlinks` enforces in sticky
/// folders, when it is on). Otherwise whoever planted it chooses the folder we write in.
fn check_way(dir: &Path) -> io::Result<()> {
    let me = crate::proc::my_uid();
    let mut at = PathBuf::new();
    for part in dir.components() {
        at.push(part);
        let Ok(meta) = std::fs::symlink_metadata(&at) else {
            // Missing: the open fails on it.
            return Ok(());
        };
        if !meta.file_type().is_symlink() || meta.uid() == me || meta.uid() == 0 {
            continue;
        }
        let container = folder_of(&at);
        let Ok(cmeta) = std::fs::metadata(&container) else {
            continue;
        };
        if let Some(who) = others_can_write(&cmeta, me) {
            return Err(refused(format!(
                "{} on the way is a symbolic link of uid {} in the folder {}, which is {who}",
                at.display(),
                meta.uid(),
                container.display()
            )));
        }
    }
    Ok(())
}

fn group_name(gid: u32) -> String {
    match nix::unistd::Group::from_gid(nix::unistd::Gid::from_raw(gid)) {
        Ok(Some(g)) => format!("{} (gid {gid})", g.name),
        _ => format!("gid {gid}"),
    }
}

/// A user private group: the user's primary group, named like the user, with no member but
/// the user. Only then is a group-writable folder writable by nobody else.
fn private_group(gid: u32, uid: u32) -> bool {
    let Ok(Some(user)) = nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(uid)) else {
        return false;
    };
    let Ok(Some(group)) = nix::unistd::Group::from_gid(nix::unistd::Gid::from_raw(gid)) else {
        return false;
    };
    user.gid.as_raw() == gid && group.name == user.name && group.mem.iter().all(|m| *m == user.name)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::os::unix::fs::PermissionsExt;

    fn chmod(p: &Path, mode: u32) {
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).expect("chmod");
    }

    fn text(e: io::Error) -> String {
        assert_eq!(e.kind(), io::ErrorKind::PermissionDenied, "{e}");
        e.to_string()
    }

    #[test]
    fn a_regular_file_is_appended_to_and_blocking_again() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = dir.path().join("a.log");
        let mut f = open_append(&p, 0o640).expect("created");
        f.write_all(b"one\n").expect("write");
        let mut f = open_append(&p, 0o640).expect("reopened");
        f.write_all(b"two\n").expect("write");
        assert_eq!(std::fs::read_to_string(&p).expect("read"), "one\ntwo\n");
        let flags = rustix::fs::fcntl_getfl(&f).expect("getfl");
        assert!(!flags.contains(OFlags::NONBLOCK), "{flags:?}");
        let fdflags = rustix::io::fcntl_getfd(&f).expect("getfd");
        assert!(fdflags.contains(rustix::io::FdFlags::CLOEXEC));
        assert_eq!(
            std::fs::metadata(&p).expect("stat").mode() & 0o777,
            0o640 & !current_umask()
        );
        assert!(open_append(Path::new("/dev/null"), 0o644).is_ok());
    }

    fn current_umask() -> u32 {
        let old = rustix::process::umask(Mode::from_raw_mode(0o022));
        rustix::process::umask(old);
        old.as_raw_mode()
    }

    #[test]
    fn symlinks_fifos_directories_and_devices_are_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let target = dir.path().join("target");
        std::fs::write(&target, "precious").expect("write");
        let link = dir.path().join("link");
        std::os::unix::fs::symlink(&target, &link).expect("symlink");
        let dangling = dir.path().join("dangling");
        std::os::unix::fs::symlink(dir.path().join("nothing"), &dangling).expect("symlink");
        let fifo = dir.path().join("fifo");
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::S_IRWXU).expect("mkfifo");
        for (p, why) in [
            (&link, "symbolic link"),
            (&dangling, "symbolic link"),
            (&fifo, "a FIFO"),
        ] {
            for r in [open_append(p, 0o600), open_lock(p, 0o600)] {
                let e = text(r.expect_err("refused"));
                assert!(e.contains(why), "{e}");
            }
        }
        assert!(!dir.path().join("nothing").exists(), "no file created");
        assert_eq!(std::fs::read_to_string(&target).expect("read"), "precious");
        assert!(create_new(&link, 0o600).is_err());
        let e = text(open_append(dir.path(), 0o600).expect_err("dir"));
        assert!(e.contains("a directory"), "{e}");
        let e = text(open_append(Path::new("/dev/zero"), 0o600).expect_err("dev"));
        assert!(e.contains("a character device"), "{e}");
    }

    #[test]
    fn a_fifo_with_a_reader_is_refused_too() {
        let dir = tempfile::tempdir().expect("tempdir");
        let fifo = dir.path().join("fifo");
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::S_IRWXU).expect("mkfifo");
        let _reader = rustix::fs::open(&fifo, OFlags::RDONLY | OFlags::NONBLOCK, Mode::empty())
            .expect("reader");
        // The lstat sees it first; the fstat after the open would too.
        let e = text(open_append(&fifo, 0o600).expect_err("fifo"));
        assert!(e.contains("a FIFO"), "{e}");
    }

    #[test]
    fn folders_others_can_write_are_refused_unless_sticky() {
        let base = tempfile::tempdir().expect("tempdir");
        let open_dir = base.path().join("open");
        std::fs::create_dir(&open_dir).expect("mkdir");
        chmod(&open_dir, 0o777);
        let e = text(open_append(&open_dir.join("x.log"), 0o600).expect_err("refused"));
        assert!(
            e.contains(&open_dir.display().to_string()) && e.contains("sticky"),
            "{e}"
        );
        assert!(!open_dir.join("x.log").exists());
        assert!(create_new(&open_dir.join("t"), 0o600).is_err());

        let sticky = base.path().join("sticky");
        std::fs::create_dir(&sticky).expect("mkdir");
        chmod(&sticky, 0o1777);
        assert_eq!(check_folder(&sticky).expect("ok"), Folder::Sticky);
        open_append(&sticky.join("mine.log"), 0o600).expect("ours, new");
        open_append(&sticky.join("mine.log"), 0o600).expect("ours, again");
        std::fs::hard_link(sticky.join("mine.log"), sticky.join("second")).expect("link");
        let e = text(open_append(&sticky.join("second"), 0o600).expect_err("two links"));
        assert!(e.contains("hard links"), "{e}");

        assert_eq!(check_folder(base.path()).expect("ok"), Folder::Private);
        let e = text(check_folder(&sticky.join("mine.log")).expect_err("file"));
        assert!(e.contains("not a folder"), "{e}");
    }
}
