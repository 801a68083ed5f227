//! "Is the program running, and which process is it?" — the one routine every verb asks
//! (1.5.13's `getRunningProgram`): the pidfile first, proven by uid + start time + cmdline, then
//! a scan of the user's own processes. Stale pidfiles are removed and adopted processes get one
//! written, but only when the caller holds the program's lock (`Mode::Repair`); a `status` that
//! could not take the lock only looks.
//!
//! Start times: whenever usrsvc writes a pidfile it also records the process's start time (in
//! clock ticks, with the boot id) in the private runtime directory, and a pidfile pid with such
//! a record must have exactly that start time. A pidfile usrsvc did not write (`autopid =
//! false`: the program writes its own) has no record; its pid must not have started after the
//! file was last written. The record keeps clock skew out of the common case (a home on NFS
//! has file times from the server's clock); the pidfile format stays `<pid>\n`.

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

/// The start time usrsvc recorded for the pid it last wrote to a program's pidfile.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Recorded {
    pid: i32,
    start_ticks: u64,
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

fn read_record(prog: &ProgramConfig) -> Option<Recorded> {
    let text = std::fs::read_to_string(record_path(prog)?).ok()?;
    let mut words = text.split_whitespace();
    let pid = words.next()?.parse().ok()?;
    let start_ticks = words.next()?.parse().ok()?;
    // Start ticks count from boot: a record from an earlier boot says nothing.
    (words.next()? == boot_id()).then_some(Recorded { pid, start_ticks })
}

/// The start time (clock ticks since this boot) usrsvc recorded for `pid` as the program's
/// process, if it did.
pub fn recorded_start(prog: &ProgramConfig, pid: i32) -> Option<u64> {
    read_record(prog)
        .filter(|r| r.pid == pid)
        .map(|r| r.start_ticks)
}

/// Writes the pidfile of `info` and records its start time.
pub fn write_pidfile(prog: &ProgramConfig, info: &ProcInfo) -> std::io::Result<()> {
    proc::write_pidfile(&prog.pidfile, info.pid)?;
    if let Some(path) = record_path(prog) {
        let text = format!("{} {} {}\n", info.pid, info.start_ticks, boot_id());
        // The record only sharpens the check; failing to write it is not an error.
        let _ = proc::write_atomic(&path, text.as_bytes());
    }
    Ok(())
}

/// Removes the pidfile and the start-time record.
pub fn remove_pidfile(prog: &ProgramConfig) -> std::io::Result<()> {
    if let Some(path) = record_path(prog) {
        let _ = std::fs::remove_file(path);
    }
    proc::remove_pidfile(&prog.pidfile)
}

/// Why a process named by a pidfile is not the program.
fn stale_reason(
    info: &ProcInfo,
    written: std::time::SystemTime,
    recorded: Option<Recorded>,
    m: &Matcher,
) -> Option<String> {
    let me = proc::my_uid();
    if info.uid != me {
        return Some(format!("it belongs to uid {}, not to uid {me}", info.uid));
    }
    if !m.matches(info.pid, &info.cmdline) {
        return Some(format!("it does not match {}", m.describe()));
    }
    if proc::is_usrsvc(info.pid, &info.cmdline) {
        return Some("it is a usrsvc process, not the program".into());
    }
    match recorded.filter(|r| r.pid == info.pid) {
        Some(r) if r.start_ticks != info.start_ticks => Some(
            "its start time is not the one recorded for the program (the pid was reused)".into(),
        ),
        Some(_) => None,
        None if info.start_time() > written + PIDFILE_SLACK => {
            Some("it started after the pidfile was written (the pid was reused)".into())
        }
        None => None,
    }
}

/// Finds the running process of `prog`, if any.
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

fn check_pidfile(prog: &ProgramConfig, matcher: &Matcher) -> PidfileCheck {
    match proc::read_pidfile(&prog.pidfile) {
        PidfileRead::Pid { pid, written } => match proc::read_proc(pid) {
            Some(info) if info.is_alive() => {
                match stale_reason(&info, written, read_record(prog), matcher) {
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
    match check_pidfile(prog, matcher) {
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
    match check_pidfile(prog, matcher) {
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
    let callers = proc::my_ancestors();
    let found = proc::scan_user(proc::my_uid(), |pid, argv| {
        matcher.matches(pid, argv) && !callers.contains(&pid) && !proc::is_usrsvc(pid, argv)
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
        let long_ago = SystemTime::now() - Duration::from_secs(365 * 86400);
        let right = Recorded {
            pid: info.pid,
            start_ticks: info.start_ticks,
        };
        let wrong = Recorded {
            start_ticks: info.start_ticks + 1,
            ..right
        };
        let other_pid = Recorded {
            pid: info.pid + 1,
            ..right
        };
        // A record for this pid wins, whatever the file's mtime says (clock skew on NFS).
        assert_eq!(stale_reason(&info, long_ago, Some(right), &m), None);
        assert!(stale_reason(&info, SystemTime::now(), Some(wrong), &m)
            .expect("stale")
            .contains("start time"));
        // Without a record for this pid, the mtime decides.
        assert!(stale_reason(&info, long_ago, Some(other_pid), &m)
            .expect("stale")
            .contains("started after"));
        assert_eq!(stale_reason(&info, SystemTime::now(), None, &m), None);
        let m2 = Matcher::new("other", false, None).expect("matcher");
        assert!(stale_reason(&info, SystemTime::now(), None, &m2)
            .expect("stale")
            .contains("does not match"));
        // The test binary itself is never the program, whatever it matches.
        let me = proc::read_proc(std::process::id() as i32).expect("self");
        let m3 = Matcher::new("x", false, Some(".")).expect("matcher");
        assert!(stale_reason(&me, SystemTime::now(), None, &m3)
            .expect("stale")
            .contains("usrsvc process"));
        let _ = child.kill();
        let _ = child.wait();
    }
}
