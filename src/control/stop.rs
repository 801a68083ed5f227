//! `stop`: SIGTERM through a pidfd, `term_to_kill_seconds` for the exit, then SIGKILL, then
//! wait until the process is really gone, so that a following start never sees it (1.5.13 did
//! not wait after SIGKILL, and `restart` could adopt the dying process).

use crate::config::ProgramConfig;
use crate::control::identify::{find_running, Mode};
use crate::control::report::Report;
use crate::control::signal::{terminate, Ending, Pidfd};
use crate::exit::ReturnCode;
use crate::proc::{Matcher, ProcInfo};

/// Stops `prog` if it runs. The caller holds the program's lock. SUCCESS, as in 1.5.13, also
/// when it was not running; UNKNOWN_FAILURE only when the process survived SIGKILL.
pub fn stop(prog: &ProgramConfig, matcher: &Matcher, report: &dyn Report) -> ReturnCode {
    stop_found(prog, matcher, report).0
}

/// `stop`, also saying which process it found (and stopped, when the code is SUCCESS): the
/// audit trail's old pid.
pub fn stop_found(
    prog: &ProgramConfig,
    matcher: &Matcher,
    report: &dyn Report,
) -> (ReturnCode, Option<i32>) {
    let Some(running) = find_running(prog, matcher, Mode::Repair, report) else {
        report.info(&format!("{} was not running.", prog.name));
        return (ReturnCode::Success, None);
    };
    (stop_process(prog, &running, report), Some(running.pid))
}

fn stop_process(prog: &ProgramConfig, running: &ProcInfo, report: &dyn Report) -> ReturnCode {
    report.info(&format!("Stopping {} [{}]", prog.name, running.pid));
    let grace = crate::control::seconds(prog.term_to_kill_seconds);
    let ending = match Pidfd::open_verified(running) {
        Ok(Some(fd)) => terminate(&fd, grace),
        Ok(None) => Ending::NoAction,
        Err(e) => {
            // Without a pidfd there is no race-free way to signal it: refuse, keep the pidfile.
            report.error(&format!(
                "({}) - Cannot open a pidfd for pid {} (Linux 5.3 or later is required): {e}",
                prog.name, running.pid
            ));
            return ReturnCode::UnknownFailure;
        }
    };
    if ending == Ending::Stuck {
        report.error(&format!(
            "{} [{}] is still running {} s after SIGKILL; its pidfile is kept.",
            prog.name,
            running.pid,
            crate::control::signal::AFTER_KILL.as_secs()
        ));
        return ReturnCode::UnknownFailure;
    }
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
