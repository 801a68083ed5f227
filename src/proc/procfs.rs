//! The `/proc` reader. Hand-written because the scan is on the path of every `usrsvc status` of
//! a program without a valid pidfile: it skips other users' processes with one `statat` each
//! before reading anything of theirs, reads through one directory fd, and keeps start times in
//! clock ticks (the precision PID-reuse checks need; design.md §4 has the measurements).

use std::io::Read;
use std::os::fd::{AsFd, OwnedFd};
use std::time::{Duration, SystemTime};

use rustix::fs::{AtFlags, Mode, OFlags};

/// What the kernel says a process is doing (field 3 of `/proc/PID/stat`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProcState {
    Running,
    Sleeping,
    DiskSleep,
    Stopped,
    Zombie,
    Dead,
    Other(char),
}

impl ProcState {
    fn from_char(c: char) -> ProcState {
        match c {
            'R' => ProcState::Running,
            'S' => ProcState::Sleeping,
            'D' => ProcState::DiskSleep,
            'T' | 't' => ProcState::Stopped,
            'Z' => ProcState::Zombie,
            'X' | 'x' => ProcState::Dead,
            other => ProcState::Other(other),
        }
    }

    /// A zombie has exited: only its parent (often a lazily reaping PID 1) has not collected it.
    pub fn is_alive(self) -> bool {
        !matches!(self, ProcState::Zombie | ProcState::Dead)
    }
}

/// One process as read from `/proc`, enough to prove identity: pid + uid + start time + cmdline.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcInfo {
    pub pid: i32,
    /// The effective uid (`Uid:` of `/proc/PID/status`).
    pub uid: u32,
    /// Real, effective and saved uid. A process is a user's only when all three are theirs: a
    /// set-uid binary run by another user has that user's real uid, whatever its effective one.
    pub uids: [u32; 3],
    pub ppid: i32,
    pub pgrp: i32,
    pub session: i32,
    pub state: ProcState,
    /// Start time in clock ticks since boot (field 22 of `/proc/PID/stat`).
    pub start_ticks: u64,
    pub rss_pages: u64,
    /// The arguments, boundaries kept; trailing empty arguments (title padding) removed.
    pub cmdline: Vec<String>,
}

impl ProcInfo {
    pub fn is_alive(&self) -> bool {
        self.state.is_alive()
    }

    /// Whether the process is `uid`'s: real, effective and saved uid all `uid`.
    pub fn belongs_to(&self, uid: u32) -> bool {
        self.uids.iter().all(|u| *u == uid)
    }

    /// Says whose the process is when it is not wholly one user's.
    pub fn owner_text(&self) -> String {
        let [r, e, s] = self.uids;
        if r == e && e == s {
            format!("uid {r}")
        } else {
            format!("real uid {r}, effective uid {e}, saved uid {s}")
        }
    }

    /// The cmdline as usrsvc 1.5.13 matched `proctitle_re` against: arguments joined by spaces.
    pub fn cmdline_string(&self) -> String {
        self.cmdline.join(" ")
    }

    /// Wall-clock start time, from the boot time and the start ticks.
    pub fn start_time(&self) -> SystemTime {
        let tps = clock_ticks_per_second().max(1);
        let since_boot = Duration::from_secs(self.start_ticks / tps)
            + Duration::from_nanos((self.start_ticks % tps) * 1_000_000_000 / tps);
        boot_time() + since_boot
    }

    pub fn rss_kb(&self) -> u64 {
        self.rss_pages * page_size_kb()
    }
}

pub fn clock_ticks_per_second() -> u64 {
    rustix::param::clock_ticks_per_second()
}

fn page_size_kb() -> u64 {
    (rustix::param::page_size() / 1024) as u64
}

/// The wall-clock time of boot, derived from two clocks read back to back: exact to the
/// nanosecond, unlike `btime` in `/proc/stat`, which is rounded to a second.
pub fn boot_time() -> SystemTime {
    let real = rustix::time::clock_gettime(rustix::time::ClockId::Realtime);
    let boot = rustix::time::clock_gettime(rustix::time::ClockId::Boottime);
    let to_dur = |t: rustix::time::Timespec| {
        Duration::new(
            u64::try_from(t.tv_sec).unwrap_or(0),
            u32::try_from(t.tv_nsec).unwrap_or(0),
        )
    };
    let since_epoch = to_dur(real).saturating_sub(to_dur(boot));
    SystemTime::UNIX_EPOCH + since_epoch
}

pub fn my_uid() -> u32 {
    rustix::process::getuid().as_raw()
}

fn open_proc() -> std::io::Result<OwnedFd> {
    Ok(rustix::fs::open(
        "/proc",
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )?)
}

fn read_at(dir: impl AsFd, path: &str, buf: &mut Vec<u8>) -> std::io::Result<()> {
    buf.clear();
    let fd = rustix::fs::openat(dir, path, OFlags::RDONLY | OFlags::CLOEXEC, Mode::empty())?;
    std::fs::File::from(fd).read_to_end(buf)?;
    Ok(())
}

/// Parses `/proc/PID/cmdline`: NUL-separated arguments. The last argument need not end in NUL
/// (usrsvc 1.5.13 dropped it then), and processes that rewrite their title pad with NULs, which
/// would otherwise become trailing empty arguments.
fn parse_cmdline(raw: &[u8]) -> Vec<String> {
    let mut args: Vec<String> = raw
        .split(|b| *b == 0)
        .map(|a| String::from_utf8_lossy(a).into_owned())
        .collect();
    while args.last().is_some_and(|a| a.is_empty()) {
        args.pop();
    }
    args
}

struct Stat {
    state: ProcState,
    ppid: i32,
    pgrp: i32,
    session: i32,
    start_ticks: u64,
    rss_pages: u64,
}

/// Parses `/proc/PID/stat`. The comm field may contain spaces and parentheses, so fields are
/// counted from the last `)`.
fn parse_stat(raw: &[u8]) -> Option<Stat> {
    let text = std::str::from_utf8(raw.get(raw.iter().rposition(|b| *b == b')')? + 1..)?).ok()?;
    let fields: Vec<&str> = text.split_ascii_whitespace().collect();
    // fields[0] is field 3 of proc(5).
    let field = |n: usize| fields.get(n - 3).copied();
    Some(Stat {
        state: ProcState::from_char(field(3)?.chars().next()?),
        ppid: field(4)?.parse().ok()?,
        pgrp: field(5)?.parse().ok()?,
        session: field(6)?.parse().ok()?,
        start_ticks: field(22)?.parse().ok()?,
        rss_pages: field(24)?.parse().ok()?,
    })
}

/// What `/proc/PID/status` says that `stat` does not: the thread group and the three uids.
struct Status {
    tgid: i32,
    uids: [u32; 3],
}

fn parse_status(raw: &[u8]) -> Option<Status> {
    let text = String::from_utf8_lossy(raw);
    let field = |key: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(key)?.strip_prefix(':'))
            .map(str::trim)
    };
    let tgid = field("Tgid")?.parse().ok()?;
    let mut ids = field("Uid")?
        .split_ascii_whitespace()
        .map(str::parse::<u32>);
    let mut next = || ids.next()?.ok();
    let uids = [next()?, next()?, next()?];
    Some(Status { tgid, uids })
}

/// Reads one process. `/proc/TID` of a thread that is not its group's leader exists too (it
/// is only not listed): such a pid is no process (no pidfd can be had for it, and signalling
/// it would reach the whole group), so it reads as None.
fn read_with(dir: impl AsFd + Copy, pid: i32, buf: &mut Vec<u8>) -> Option<ProcInfo> {
    read_at(dir, &format!("{pid}/status"), buf).ok()?;
    let status = parse_status(buf)?;
    if status.tgid != pid {
        return None;
    }
    read_at(dir, &format!("{pid}/stat"), buf).ok()?;
    let stat = parse_stat(buf)?;
    let cmdline = if stat.state.is_alive() {
        read_at(dir, &format!("{pid}/cmdline"), buf).ok()?;
        parse_cmdline(buf)
    } else {
        Vec::new()
    };
    Some(ProcInfo {
        pid,
        uid: status.uids[1],
        uids: status.uids,
        ppid: stat.ppid,
        pgrp: stat.pgrp,
        session: stat.session,
        state: stat.state,
        start_ticks: stat.start_ticks,
        rss_pages: stat.rss_pages,
        cmdline,
    })
}

/// Reads one process. None when it does not exist (or vanished while being read).
pub fn read_proc(pid: i32) -> Option<ProcInfo> {
    if pid <= 0 {
        return None;
    }
    let dir = open_proc().ok()?;
    read_with(&dir, pid, &mut Vec::with_capacity(512))
}

/// Whether this process may signal `info` (kill(2)'s rule: CAP_KILL — root here —, or our
/// real or effective uid is its real or saved uid).
pub fn may_signal(info: &ProcInfo) -> bool {
    let real = rustix::process::getuid().as_raw();
    let effective = rustix::process::geteuid().as_raw();
    let [target_real, _, target_saved] = info.uids;
    effective == 0
        || [real, effective]
            .iter()
            .any(|u| *u == target_real || *u == target_saved)
}

/// One line of the process tree: enough to tell which processes a launch made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Node {
    pub pid: i32,
    pub ppid: i32,
    pub pgrp: i32,
    pub session: i32,
    pub start_ticks: u64,
    pub alive: bool,
}

/// The live processes of `uid` (real, effective and saved uid all theirs) but this one that
/// `keep` accepts from their `stat` alone (session, group, start time): only those are read in
/// full, so looking for a session's members costs one small read per process (a daemon
/// worker's crash restart does it before every launch).
pub fn user_processes_where(uid: u32, keep: impl Fn(&Node) -> bool) -> Vec<ProcInfo> {
    let Ok(dir) = open_proc() else {
        return Vec::new();
    };
    let me = rustix::process::getpid().as_raw_nonzero().get();
    let mut buf = Vec::with_capacity(512);
    process_tree()
        .into_iter()
        .filter(|n| n.pid != me && n.alive && keep(n))
        .filter_map(|n| read_with(&dir, n.pid, &mut buf))
        .filter(|p| p.is_alive() && p.belongs_to(uid))
        .collect()
}

/// Every process of every user, from its `stat` only (no cmdline, no status: cheap).
pub fn process_tree() -> Vec<Node> {
    let Ok(dir) = open_proc() else {
        return Vec::new();
    };
    let mut buf = Vec::with_capacity(512);
    list_pids()
        .into_iter()
        .filter_map(|pid| {
            read_at(&dir, &format!("{pid}/stat"), &mut buf).ok()?;
            let st = parse_stat(&buf)?;
            Some(Node {
                pid,
                ppid: st.ppid,
                pgrp: st.pgrp,
                session: st.session,
                start_ticks: st.start_ticks,
                alive: st.state.is_alive(),
            })
        })
        .collect()
}

/// Whether `pid` runs usrsvc itself (this binary, any `usrsvc`/`usrsvcd`, or the Python
/// usrsvc 1.5.13 run as `python3 .../usrsvc`): a user's `proctitle_re` such as `myworker` also
/// matches `usrsvc start myworker`, and a usrsvc command must never be adopted, and then
/// signalled, as the program.
pub fn is_usrsvc(pid: i32, argv: &[String]) -> bool {
    let tool = |a: &String| {
        let base = a.rsplit('/').next().unwrap_or(a);
        base == "usrsvc" || base == "usrsvcd"
    };
    if argv.iter().take(2).any(tool) {
        return true;
    }
    let Ok(exe) = std::fs::read_link(format!("/proc/{pid}/exe")) else {
        return false;
    };
    let name = exe
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let name = name.strip_suffix(" (deleted)").unwrap_or(&name);
    if name == "usrsvc" || name == "usrsvcd" {
        return true;
    }
    // Also this very binary under another name (a copy, a test build).
    match (
        std::fs::metadata(format!("/proc/{pid}/exe")),
        std::fs::metadata("/proc/self/exe"),
    ) {
        (Ok(a), Ok(b)) => {
            use std::os::unix::fs::MetadataExt;
            a.dev() == b.dev() && a.ino() == b.ino()
        }
        _ => false,
    }
}

/// The processes the caller runs under: its parent, grandparent, … up to init. A shell that
/// runs `usrsvc stop worker` (cron, `sh -c`, a script named after the program) has the
/// program's name in its cmdline, and must never be taken for the program.
pub fn my_ancestors() -> Vec<i32> {
    let mut chain = Vec::new();
    let mut pid = rustix::process::getppid().map_or(0, |p| p.as_raw_nonzero().get());
    while pid > 1 && !chain.contains(&pid) {
        chain.push(pid);
        pid = read_proc(pid).map_or(0, |p| p.ppid);
    }
    chain
}

/// Every numeric entry of `/proc`, ascending.
pub fn list_pids() -> Vec<i32> {
    let mut pids: Vec<i32> = match std::fs::read_dir("/proc") {
        Ok(rd) => rd
            .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
            .collect(),
        Err(_) => Vec::new(),
    };
    pids.sort_unstable();
    pids
}

/// Live processes of `uid` (real, effective and saved uid), except the calling process, for
/// which `keep(pid, cmdline)` says yes. Other users' processes are skipped on the owner of their
/// `/proc` entry (the effective uid of a dumpable process, else root), before
/// anything of theirs is read; for ours the cmdline is read first and the stat only for those
/// kept, so a scan for one program reads one small file per process of the user.
pub fn scan_user(uid: u32, mut keep: impl FnMut(i32, &[String]) -> bool) -> Vec<ProcInfo> {
    let Ok(dir) = open_proc() else {
        return Vec::new();
    };
    let me = rustix::process::getpid().as_raw_nonzero().get();
    let mut buf = Vec::with_capacity(512);
    let mut found = Vec::new();
    for pid in list_pids() {
        if pid == me {
            continue;
        }
        let name = pid.to_string();
        match rustix::fs::statat(&dir, name.as_str(), AtFlags::empty()) {
            Ok(st) if st.st_uid == uid => {}
            _ => continue,
        }
        if read_at(&dir, &format!("{pid}/cmdline"), &mut buf).is_err() {
            continue;
        }
        let cmdline = parse_cmdline(&buf);
        // An empty cmdline is a zombie or a kernel thread: nothing to adopt.
        if cmdline.is_empty() || !keep(pid, &cmdline) {
            continue;
        }
        if let Some(info) = read_with(&dir, pid, &mut buf) {
            if info.is_alive() && info.belongs_to(uid) {
                found.push(info);
            }
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cmdline_keeps_boundaries_and_drops_padding() {
        assert_eq!(parse_cmdline(b"sleep\x001000\x00"), ["sleep", "1000"]);
        assert_eq!(parse_cmdline(b"a\x00b c\x00"), ["a", "b c"]);
        assert_eq!(
            parse_cmdline(b"title: worker\x00\x00\x00"),
            ["title: worker"]
        );
        assert_eq!(parse_cmdline(b"no-trailing-nul"), ["no-trailing-nul"]);
        assert!(parse_cmdline(b"").is_empty());
    }

    #[test]
    fn stat_is_parsed_after_the_last_paren() {
        let line = b"42 (evil) name) S 1 42 42 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 12345 1000000 77 18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 0 17 0 0 0 0 0 0";
        let st = parse_stat(line).expect("parses");
        assert_eq!(st.state, ProcState::Sleeping);
        assert_eq!(st.ppid, 1);
        assert_eq!(st.session, 42);
        assert_eq!(st.start_ticks, 12345);
        assert_eq!(st.rss_pages, 77);
        assert!(parse_stat(b"garbage").is_none());
        assert!(parse_stat(b"1 (x) Z").is_none());
    }

    #[test]
    fn status_gives_the_thread_group_and_all_three_uids() {
        let st =
            parse_status(b"Name:\tx\nTgid:\t42\nPid:\t43\nUid:\t65534\t0\t0\t0\n").expect("parses");
        assert_eq!(st.tgid, 42);
        assert_eq!(st.uids, [65534, 0, 0]);
        assert!(parse_status(b"Tgid:\t42\nUid:\t1\t2\n").is_none());
        assert!(parse_status(b"garbage").is_none());
    }

    #[test]
    fn a_thread_id_is_no_process() {
        let me = std::process::id() as i32;
        let (tx, rx) = std::sync::mpsc::channel();
        let (done_tx, done_rx) = std::sync::mpsc::channel::<()>();
        let t = std::thread::spawn(move || {
            // `/proc/thread-self` is `PID/task/TID`.
            let link = std::fs::read_link("/proc/thread-self").expect("thread-self");
            let tid: i32 = link
                .file_name()
                .and_then(|n| n.to_str()?.parse().ok())
                .expect("tid");
            tx.send(tid).expect("send");
            let _ = done_rx.recv();
        });
        let tid = rx.recv().expect("tid");
        assert_ne!(tid, me);
        assert!(std::path::Path::new(&format!("/proc/{tid}/stat")).exists());
        assert_eq!(read_proc(tid), None, "tid {tid} of {me}");
        let info = read_proc(me).expect("self");
        assert!(info.belongs_to(my_uid()));
        drop(done_tx);
        t.join().expect("join");
    }

    #[test]
    fn reads_a_real_child_and_finds_it_by_scan() {
        let mut child = std::process::Command::new("sleep")
            .arg("30.5")
            .spawn()
            .expect("spawn sleep");
        let pid = child.id() as i32;
        // spawn returns once exec has begun, which can be a moment before the kernel has set
        // up the new argv: wait for it.
        let mut info = read_proc(pid).expect("child exists");
        for _ in 0..1000 {
            if !info.cmdline.is_empty() {
                break;
            }
            std::thread::sleep(Duration::from_millis(1));
            info = read_proc(pid).expect("child exists");
        }
        assert_eq!(info.cmdline, ["sleep", "30.5"]);
        assert_eq!(info.uid, my_uid());
        assert_eq!(info.ppid, std::process::id() as i32);
        assert!(info.is_alive());
        let age = SystemTime::now()
            .duration_since(info.start_time())
            .expect("started in the past");
        assert!(age < Duration::from_secs(60), "start time {age:?} ago");
        let found = scan_user(my_uid(), |p, argv| p == pid && argv[0] == "sleep");
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].pid, pid);
        assert!(scan_user(my_uid(), |p, _| p == std::process::id() as i32).is_empty());
        child.kill().ok();
        child.wait().ok();
        assert!(read_proc(pid).is_none());
    }
}
