//! "Is the program running, and which process is it?" — the one routine every verb asks
//! (1.5.13's `getRunningProgram`), the daemon included: the pidfile first, then a scan of the
//! user's own processes. Stale pidfiles are removed and adopted processes get one written, but
//! only when the caller holds the program's lock (`Mode::Repair`); a `status` that could not
//! take the lock only looks.
//!
//! A process is the program only if it is the user's (real, effective and saved uid) and is
//! not usrsvc itself, nor one of the processes the asking usrsvc runs under (the shell that
//! runs `usrsvc stop`): those are excluded here, on every path, so no caller can miss it.
//! Then one of:
//! - usrsvc launched it and recorded that (pid, start ticks, boot id in `ident.NAME` in the
//!   private runtime directory): it is the program whatever its command line says now (servers
//!   rewrite their titles; `command` may have changed since);
//! - it matches the command (`Matcher`) and, when found through the pidfile, the pid was not
//!   reused: a record of an adoption must have the same start time, and without a record (a
//!   pidfile the program writes itself, `autopid = false`) it must not have started after the
//!   file was last written. The record keeps clock skew out of the common case (a home on NFS
//!   has file times from the server's clock); the pidfile format stays `<pid>\n`.

use std::time::Duration;

use crate::config::ProgramConfig;
use crate::control::report::{process_dict, Report};
use crate::proc::{self, Matcher, PidfileRead, ProcInfo};

/// A process that started this long after its pidfile was written is a reuse of the pid, not
/// the process the file was written for. The slack covers clock granularity: start times are
/// in clock ticks, mtimes in the filesystem's timestamp resolution.
const PIDFILE_SLACK: Duration = Duration::from_secs(1);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// May remove a stale pidfile and write the pidfile of an adopted process.
    Repair,
    /// Only observes.
    Observe,
}

/// How usrsvc came to write a program's pidfile.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum How {
    /// It launched the process (and proved it part of the launch).
    Launched,
    /// It adopted a running process that matched the command.
    Adopted,
}

/// The start time usrsvc recorded for the pid it last wrote to a program's pidfile.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Recorded {
    pid: i32,
    start_ticks: u64,
    how: How,
}

fn record_path(prog: &ProgramConfig) -> Option<std::path::PathBuf> {
    let dir = crate::control::lock::runtime_dir().ok()?;
    Some(dir.join(crate::control::lock::state_file_name("ident.", &prog.name)))
}

fn boot_id() -> String {
    std::fs::read_to_string("/proc/sys/kernel/random/boot_id")
        .map(|s| s.trim().to_owned())
        .unwrap_or_default()
}

/// `PID START_TICKS BOOT_ID [launched|adopted]`; a record without the last word (written by
/// earlier versions) is an adoption's.
fn parse_record(text: &str, boot: &str) -> Option<Recorded> {
    let mut words = text.split_whitespace();
    let pid = words.next()?.parse().ok()?;
    let start_ticks = words.next()?.parse().ok()?;
    // Start ticks count from boot: a record from an earlier boot says nothing.
    if words.next()? != boot || boot.is_empty() {
        return None;
    }
    let how = match words.next() {
        Some("launched") => How::Launched,
        _ => How::Adopted,
    };
    Some(Recorded {
        pid,
        start_ticks,
        how,
    })
}

fn read_record(prog: &ProgramConfig) -> Option<Recorded> {
    let text = std::fs::read_to_string(record_path(prog)?).ok()?;
    parse_record(&text, &boot_id())
}

/// The start time (clock ticks since this boot) usrsvc recorded for `pid` as the program's
/// process, if it did.
pub fn recorded_start(prog: &ProgramConfig, pid: i32) -> Option<u64> {
    read_record(prog)
        .filter(|r| r.pid == pid)
        .map(|r| r.start_ticks)
}

/// For `pid`, the start time usrsvc recorded and the latest time (clock ticks since this boot)
/// at which it was seen holding that pid: when the record was last written (at the launch, at
/// the end of a successful start, at an adoption).
pub fn recorded_lifetime(prog: &ProgramConfig, pid: i32) -> Option<(u64, u64)> {
    let start = recorded_start(prog, pid)?;
    let written = std::fs::metadata(record_path(prog)?)
        .ok()?
        .modified()
        .ok()?;
    let since_boot = written.duration_since(proc::boot_time()).ok()?;
    let tps = proc::clock_ticks_per_second().max(1);
    let seen =
        since_boot.as_secs() * tps + u64::from(since_boot.subsec_nanos()) * tps / 1_000_000_000;
    Some((start, seen.max(start)))
}

/// Rewrites the launch record of `info` after a successful start: its time says the process
/// still held its pid at the end of the window.
pub fn confirm_launch(prog: &ProgramConfig, info: &ProcInfo) {
    write_record(prog, info, How::Launched);
}

fn write_record(prog: &ProgramConfig, info: &ProcInfo, how: How) {
    if let Some(path) = record_path(prog) {
        let word = match how {
            How::Launched => "launched",
            How::Adopted => "adopted",
        };
        let text = format!("{} {} {} {word}\n", info.pid, info.start_ticks, boot_id());
        // The record only sharpens the check; failing to write it is not an error.
        let _ = proc::write_atomic(&path, text.as_bytes());
    }
}

/// Writes the pidfile of `info`, a process adopted (found matching), and records its start time.
pub fn write_pidfile(prog: &ProgramConfig, info: &ProcInfo) -> std::io::Result<()> {
    proc::write_pidfile(&prog.pidfile, info.pid)?;
    write_record(prog, info, How::Adopted);
    Ok(())
}

/// Records `info` as the process usrsvc launched for `prog` (it is then the program whatever
/// its command line becomes) and, with `autopid`, writes it to the pidfile.
pub fn record_launch(prog: &ProgramConfig, info: &ProcInfo) -> std::io::Result<()> {
    if prog.autopid {
        proc::write_pidfile(&prog.pidfile, info.pid)?;
    }
    write_record(prog, info, How::Launched);
    Ok(())
}

/// Undoes `record_launch` after a failed start: the record, and the pidfile when usrsvc writes it.
pub fn forget_launch(prog: &ProgramConfig) -> std::io::Result<()> {
    if prog.autopid {
        remove_pidfile(prog)
    } else {
        if let Some(path) = record_path(prog) {
            let _ = std::fs::remove_file(path);
        }
        Ok(())
    }
}

/// Removes the pidfile and the start-time record.
pub fn remove_pidfile(prog: &ProgramConfig) -> std::io::Result<()> {
    if let Some(path) = record_path(prog) {
        let _ = std::fs::remove_file(path);
    }
    proc::remove_pidfile(&prog.pidfile)
}

/// The processes that are never the program: the calling process, those it runs under (the
/// shell or script running `usrsvc stop NAME` has NAME in its cmdline; a pidfile may name it),
/// and any usrsvc. The callers are read once per identification, when first needed.
struct NeverTheProgram {
    me: i32,
    callers: std::cell::OnceCell<Vec<i32>>,
}

impl NeverTheProgram {
    fn now() -> NeverTheProgram {
        NeverTheProgram {
            me: std::process::id() as i32,
            callers: std::cell::OnceCell::new(),
        }
    }

    fn reason(&self, pid: i32, argv: &[String]) -> Option<&'static str> {
        if pid == self.me {
            Some("it is this usrsvc process")
        } else if self.callers.get_or_init(proc::my_ancestors).contains(&pid) {
            Some("it runs the usrsvc command that asks (it is its caller)")
        } else if proc::is_usrsvc(pid, argv) {
            Some("it is a usrsvc process, not the program")
        } else {
            None
        }
    }
}

/// Whether `info` can never be the program (this process, its callers, a usrsvc): for the
/// daemon's own looks at its descendants.
pub fn never_the_program(info: &ProcInfo) -> bool {
    NeverTheProgram::now()
        .reason(info.pid, &info.cmdline)
        .is_some()
}

/// Why a process named by a pidfile is not the program.
fn stale_reason(
    info: &ProcInfo,
    written: std::time::SystemTime,
    recorded: Option<Recorded>,
    m: &Matcher,
    never: &NeverTheProgram,
) -> Option<String> {
    let me = proc::my_uid();
    if !info.belongs_to(me) {
        return Some(format!(
            "it belongs to {}, not to uid {me}",
            info.owner_text()
        ));
    }
    if let Some(why) = never.reason(info.pid, &info.cmdline) {
        return Some(why.into());
    }
    let recorded = recorded.filter(|r| r.pid == info.pid);
    if let Some(r) = recorded {
        if r.start_ticks != info.start_ticks {
            return Some(
                "its start time is not the one recorded for the program (the pid was reused)"
                    .into(),
            );
        }
        if r.how == How::Launched {
            // usrsvc launched this very process: its command line may say anything now.
            return None;
        }
    }
    if !m.matches(info.pid, &info.cmdline) {
        return Some(format!("it does not match {}", m.describe()));
    }
    match recorded {
        Some(_) => None,
        None if info.start_time() > written + PIDFILE_SLACK => {
            Some("it started after the pidfile was written (the pid was reused)".into())
        }
        None => None,
    }
}

/// What a program's pidfile says, checked (no side effects, no messages).
enum PidfileCheck {
    /// It names the program's live process.
    Running(ProcInfo),
    /// It names a live process that is not the program.
    Stale {
        pid: i32,
        info: ProcInfo,
        why: String,
    },
    /// It names no live process.
    Dead(i32),
    Invalid,
    Missing,
}

fn check_pidfile(prog: &ProgramConfig, matcher: &Matcher, never: &NeverTheProgram) -> PidfileCheck {
    match proc::read_pidfile(&prog.pidfile) {
        PidfileRead::Pid { pid, written } => match proc::read_proc(pid) {
            Some(info) if info.is_alive() => {
                match stale_reason(&info, written, read_record(prog), matcher, never) {
                    None => PidfileCheck::Running(info),
                    Some(why) => PidfileCheck::Stale { pid, info, why },
                }
            }
            _ => PidfileCheck::Dead(pid),
        },
        PidfileRead::Invalid => PidfileCheck::Invalid,
        PidfileRead::Missing => PidfileCheck::Missing,
    }
}

/// The program's process when its pidfile names it — the common case, answered without a
/// lock, a scan or any message. None says nothing: the full `find_running` must decide.
pub fn running_by_pidfile(prog: &ProgramConfig, matcher: &Matcher) -> Option<ProcInfo> {
    match check_pidfile(prog, matcher, &NeverTheProgram::now()) {
        PidfileCheck::Running(info) => Some(info),
        _ => None,
    }
}

/// Finds the running process of `prog`, if any.
pub fn find_running(
    prog: &ProgramConfig,
    matcher: &Matcher,
    mode: Mode,
    report: &dyn Report,
) -> Option<ProcInfo> {
    let repair = mode == Mode::Repair;
    let never = NeverTheProgram::now();
    match check_pidfile(prog, matcher, &never) {
        PidfileCheck::Running(info) => return Some(info),
        PidfileCheck::Stale { pid, info, why } => {
            report.error(&format!(
                "Warning: Detected stale pid file for {} at {} ({pid}){}\n  Proctitle for {pid} was: {}\n  Not the program because {why}.",
                prog.name,
                prog.pidfile.display(),
                if repair { ". REMOVING" } else { "" },
                info.cmdline_string(),
            ));
            if repair {
                remove_stale(prog, report);
            }
        }
        // What the dead process left of its session is found through its pid: keep it.
        PidfileCheck::Dead(pid) if crate::control::stop::has_leftovers(prog, matcher, pid) => {
            report.error(&format!(
                "({}) - pid {pid} of the pidfile {} is gone, but processes of its session remain; the pidfile is kept so that start or stop can stop them.",
                prog.name,
                prog.pidfile.display()
            ));
        }
        // With `autopid = false` the program owns its pidfile (and may be writing it right
        // now): leave it alone.
        PidfileCheck::Dead(pid) if repair && prog.autopid => {
            report.debug(&format!(
                "({}) - pid file {} names pid {pid}, which is not running. Removing it.",
                prog.name,
                prog.pidfile.display()
            ));
            remove_stale(prog, report);
        }
        PidfileCheck::Invalid if repair && prog.autopid => {
            report.error(&format!(
                "Warning: pid file for {} at {} does not contain a pid. REMOVING",
                prog.name,
                prog.pidfile.display()
            ));
            remove_stale(prog, report);
        }
        PidfileCheck::Dead(_) | PidfileCheck::Invalid | PidfileCheck::Missing => {}
    }
    if !prog.scan_for_process {
        return None;
    }
    let found = proc::scan_user(proc::my_uid(), |pid, argv| {
        matcher.matches(pid, argv) && never.reason(pid, argv).is_none()
    })
    .into_iter()
    .next()?;
    report.info(&format!(
        "Matched {} from running process:\n\n{}\n",
        prog.name,
        process_dict(&found)
    ));
    if repair && prog.autopid {
        if let Err(e) = write_pidfile(prog, &found) {
            report.error(&format!(
                "({}) Unable to write pidfile {}: {e}",
                prog.name,
                prog.pidfile.display()
            ));
        }
    }
    Some(found)
}

fn remove_stale(prog: &ProgramConfig, report: &dyn Report) {
    if let Err(e) = remove_pidfile(prog) {
        report.error(&format!(
            "({}) Unable to remove pidfile {}: {e}",
            prog.name,
            prog.pidfile.display()
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, SystemTime};

    #[test]
    fn records_parse_with_and_without_how() {
        let r = parse_record("12 345 b00t launched\n", "b00t").expect("parses");
        assert_eq!((r.pid, r.start_ticks, r.how), (12, 345, How::Launched));
        let r = parse_record("12 345 b00t\n", "b00t").expect("parses");
        assert_eq!(r.how, How::Adopted, "an earlier version's record");
        assert!(parse_record("12 345 other launched", "b00t").is_none());
        assert!(parse_record("12 345  ", "").is_none());
        assert!(parse_record("junk", "b00t").is_none());
    }

    #[test]
    fn recorded_start_time_decides_over_the_pidfile_mtime() {
        let mut child = std::process::Command::new("sleep")
            .arg("30.25")
            .spawn()
            .expect("spawn sleep");
        let m = Matcher::new("sleep 30.25", false, None).expect("matcher");
        let mut info = proc::read_proc(child.id() as i32).expect("child");
        // Right after spawn the new argv may not be set up yet.
        while info.cmdline.is_empty() {
            std::thread::sleep(Duration::from_millis(1));
            info = proc::read_proc(child.id() as i32).expect("child");
        }
        let never = NeverTheProgram::now();
        let long_ago = SystemTime::now() - Duration::from_secs(365 * 86400);
        let right = Recorded {
            pid: info.pid,
            start_ticks: info.start_ticks,
            how: How::Adopted,
        };
        let wrong = Recorded {
            start_ticks: info.start_ticks + 1,
            ..right
        };
        let other_pid = Recorded {
            pid: info.pid + 1,
            ..right
        };
        let stale = |written, rec, m: &Matcher| stale_reason(&info, written, rec, m, &never);
        // A record for this pid wins, whatever the file's mtime says (clock skew on NFS).
        assert_eq!(stale(long_ago, Some(right), &m), None);
        assert!(stale(SystemTime::now(), Some(wrong), &m)
            .expect("stale")
            .contains("start time"));
        // Without a record for this pid, the mtime decides.
        assert!(stale(long_ago, Some(other_pid), &m)
            .expect("stale")
            .contains("started after"));
        assert_eq!(stale(SystemTime::now(), None, &m), None);
        let m2 = Matcher::new("other", false, None).expect("matcher");
        assert!(stale(SystemTime::now(), None, &m2)
            .expect("stale")
            .contains("does not match"));
        // A launched process is the program whatever its cmdline, with the right start time.
        let launched = Recorded {
            how: How::Launched,
            ..right
        };
        assert_eq!(stale(long_ago, Some(launched), &m2), None);
        let reused = Recorded {
            how: How::Launched,
            ..wrong
        };
        assert!(stale(long_ago, Some(reused), &m2)
            .expect("stale")
            .contains("start time"));
        // The test binary itself is never the program, whatever it matches or records say.
        let me = proc::read_proc(std::process::id() as i32).expect("self");
        let m3 = Matcher::new("x", false, Some(".")).expect("matcher");
        let mine = Recorded {
            pid: me.pid,
            start_ticks: me.start_ticks,
            how: How::Launched,
        };
        assert!(
            stale_reason(&me, SystemTime::now(), Some(mine), &m3, &never)
                .expect("stale")
                .contains("this usrsvc process")
        );
        // Nor is its parent (what runs it).
        let parent = proc::read_proc(me.ppid).expect("parent");
        assert!(stale_reason(&parent, long_ago, None, &m3, &never)
            .is_some_and(|w| w.contains("caller")),);
        let _ = child.kill();
        let _ = child.wait();
    }
}
