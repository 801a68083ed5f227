//! `stop`: SIGTERM through a pidfd, `term_to_kill_seconds` for the exit, then SIGKILL, then
//! wait until the process is really gone, so that a following start never sees it (1.5.13 did
//! not wait after SIGKILL, and `restart` could adopt the dying process).

use std::time::Duration;

use crate::config::ProgramConfig;
use crate::control::identify::{find_running, Mode};
use crate::control::report::Report;
use crate::control::signal::{terminate, Ending, Pidfd};
use crate::exit::ReturnCode;
use crate::proc::Matcher;

/// Stops `prog` if it runs. The caller holds the program's lock. Always SUCCESS, as in 1.5.13:
/// a program that is not running is stopped.
pub fn stop(prog: &ProgramConfig, matcher: &Matcher, report: &dyn Report) -> ReturnCode {
    let Some(running) = find_running(prog, matcher, Mode::Repair, report) else {
        report.info(&format!("{} was not running.", prog.name));
        return ReturnCode::Success;
    };
    report.info(&format!("Stopping {} [{}]", prog.name, running.pid));
    let grace = Duration::try_from_secs_f64(prog.term_to_kill_seconds).unwrap_or(Duration::MAX);
    let ending = match Pidfd::open_verified(&running) {
        Some(fd) => terminate(&fd, grace),
        None => Ending::NoAction,
    };
    if let Err(e) = crate::control::identify::remove_pidfile(prog) {
        report.error(&format!(
            "({}) Unable to remove pidfile {}: {e}",
            prog.name,
            prog.pidfile.display()
        ));
    }
    report.info(&format!("{} {}", prog.name, ending.word()));
    ReturnCode::Success
}
