//! The restart policy, as pure functions of the program's settings, its history and `now`:
//! what to do about a program that is not running, how long to wait before an automatic
//! restart, and when consecutive failures mean giving up. One policy for every cause (a
//! crash, a failed start, a monitor). No I/O and no clock reads here, so every rule is
//! unit-tested without sleeping.
//!
//! The rules (design.md §2, fixing spec §11.15–16):
//! - a *failure* is a start that did not come up, or a run that ended (crash or monitor)
//!   before it had been up `stable_seconds`; a run that lasted that long resets the count;
//! - before every automatic restart the daemon waits `restart_delay`, doubled for each
//!   consecutive failure, capped at `restart_delay_max`; with `restart_delay = 0` the first
//!   restart after a stable run is immediate and failures back off from 1 s; a failure never
//!   waits less than 1 s, whatever `restart_delay_max` says;
//! - `maxrestarts` (0 = no limit) consecutive failures mark the program failed: it is left
//!   alone until the operator starts it.

use std::time::Duration;

use crate::config::ProgramConfig;
use crate::control::seconds;

/// The knobs of one program's policy.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Policy {
    pub restart_delay: Duration,
    pub restart_delay_max: Duration,
    pub stable: Duration,
    /// 0 = unlimited.
    pub maxrestarts: u64,
}

/// The back-off base when `restart_delay` is 0: a crash loop must not spin.
const FAILURE_BASE: Duration = Duration::from_millis(500);
/// The shortest wait before restarting a program that failed.
const FAILURE_FLOOR: Duration = Duration::from_secs(1);

impl Policy {
    pub fn of(prog: &ProgramConfig) -> Policy {
        Policy {
            // Capped (at about a century) like every duration from a config: 1.5.13 accepted
            // any size, and a deadline must not overflow.
            restart_delay: seconds(prog.restart_delay as f64),
            restart_delay_max: seconds(prog.restart_delay_max as f64),
            stable: seconds(prog.stable_seconds),
            maxrestarts: prog.maxrestarts,
        }
    }

    /// The wait before the next automatic restart, after `failures` consecutive failures.
    pub fn delay(&self, failures: u32) -> Duration {
        if failures == 0 {
            return self.restart_delay.min(self.restart_delay_max);
        }
        let base = if self.restart_delay.is_zero() {
            FAILURE_BASE
        } else {
            self.restart_delay
        };
        let factor = 1u32.checked_shl(failures.min(31)).unwrap_or(u32::MAX);
        // The cap bounds the doubling, never the floor: whatever the settings, a program that
        // keeps failing is not started more than once a second (with restart_delay_max = 0 it
        // would otherwise be restarted hundreds of times a second).
        base.checked_mul(factor)
            .unwrap_or(Duration::MAX)
            .min(self.restart_delay_max.max(self.restart_delay))
            .max(FAILURE_FLOOR)
    }

    /// The failure count after a run that ended after `uptime` (None: unknown, counts as
    /// short).
    pub fn after_run(&self, failures: u32, uptime: Option<Duration>) -> u32 {
        match uptime {
            Some(up) if up >= self.stable => 0,
            _ => failures.saturating_add(1),
        }
    }

    /// Whether `failures` consecutive failures exhaust `maxrestarts`.
    pub fn exhausted(&self, failures: u32) -> bool {
        self.maxrestarts > 0 && u64::from(failures) >= self.maxrestarts
    }
}

/// What the daemon knows about a program that is not running.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Down {
    pub enabled: bool,
    pub autostart: bool,
    pub autorestart: bool,
    /// `usrsvc stop NAME` and no start since.
    pub operator_stopped: bool,
    /// Given up after `maxrestarts`; only the operator can start it.
    pub failed: bool,
    /// The daemon has seen it running, or started it, since it began managing it.
    pub was_up: bool,
    /// The daemon has already tried to autostart it (successfully or not).
    pub autostart_tried: bool,
}

/// The verdict on a program that is not running.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Leave it down, for this reason.
    Leave(LeaveReason),
    /// First start by the daemon (autostart).
    Autostart,
    /// Automatic restart after it went down.
    Restart,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LeaveReason {
    Disabled,
    OperatorStopped,
    Failed,
    /// autostart = false and never seen up, or autorestart = false.
    NotAutomatic,
}

/// Decides about a program that is not running (spec §6.7a step 10, with the fixes).
pub fn decide(d: Down) -> Verdict {
    if !d.enabled {
        Verdict::Leave(LeaveReason::Disabled)
    } else if d.operator_stopped {
        Verdict::Leave(LeaveReason::OperatorStopped)
    } else if d.failed {
        Verdict::Leave(LeaveReason::Failed)
    } else if d.was_up {
        if d.autorestart {
            Verdict::Restart
        } else {
            Verdict::Leave(LeaveReason::NotAutomatic)
        }
    } else if d.autostart && !d.autostart_tried {
        Verdict::Autostart
    } else if d.autostart && d.autorestart {
        // An autostart that failed is retried like any failed start.
        Verdict::Restart
    } else {
        Verdict::Leave(LeaveReason::NotAutomatic)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(delay: u64, max: u64, maxrestarts: u64) -> Policy {
        Policy {
            restart_delay: Duration::from_secs(delay),
            restart_delay_max: Duration::from_secs(max),
            stable: Duration::from_secs(60),
            maxrestarts,
        }
    }

    #[test]
    fn delay_doubles_per_failure_up_to_the_cap() {
        let p = policy(5, 300, 0);
        let secs: Vec<u64> = (0..9).map(|f| p.delay(f).as_secs()).collect();
        assert_eq!(secs, [5, 10, 20, 40, 80, 160, 300, 300, 300]);
        assert_eq!(p.delay(u32::MAX), Duration::from_secs(300));
    }

    #[test]
    fn zero_delay_restarts_at_once_after_a_stable_run_but_backs_off_failures() {
        let p = policy(0, 300, 0);
        assert_eq!(p.delay(0), Duration::ZERO);
        let ms: Vec<u128> = (1..5).map(|f| p.delay(f).as_millis()).collect();
        assert_eq!(ms, [1000, 2000, 4000, 8000]);
        assert_eq!(policy(0, 3, 0).delay(10), Duration::from_secs(3));
        assert_eq!(
            policy(0, 0, 0).delay(10),
            Duration::from_secs(1),
            "a failing program waits at least 1 s, whatever the cap"
        );
        assert_eq!(
            policy(0, 0, 0).delay(0),
            Duration::ZERO,
            "after a stable run: at once"
        );
    }

    #[test]
    fn a_stable_run_resets_failures_and_a_short_one_counts() {
        let p = policy(1, 300, 3);
        assert_eq!(p.after_run(2, Some(Duration::from_secs(60))), 0);
        assert_eq!(p.after_run(2, Some(Duration::from_secs(59))), 3);
        assert_eq!(p.after_run(0, None), 1);
        assert!(!p.exhausted(2));
        assert!(p.exhausted(3));
        assert!(!policy(1, 300, 0).exhausted(u32::MAX), "0 = unlimited");
    }

    fn down() -> Down {
        Down {
            enabled: true,
            autostart: true,
            autorestart: true,
            operator_stopped: false,
            failed: false,
            was_up: false,
            autostart_tried: false,
        }
    }

    #[test]
    fn verdicts() {
        assert_eq!(decide(down()), Verdict::Autostart);
        let tried = Down {
            autostart_tried: true,
            ..down()
        };
        assert_eq!(decide(tried), Verdict::Restart);
        let up = Down {
            was_up: true,
            ..down()
        };
        assert_eq!(decide(up), Verdict::Restart);
        let no_restart = Down {
            autorestart: false,
            ..up
        };
        assert_eq!(
            decide(no_restart),
            Verdict::Leave(LeaveReason::NotAutomatic)
        );
        let manual = Down {
            autostart: false,
            ..down()
        };
        assert_eq!(decide(manual), Verdict::Leave(LeaveReason::NotAutomatic));
        assert_eq!(
            decide(Down {
                autostart: false,
                ..up
            }),
            Verdict::Restart,
            "started by hand, then died: autorestart applies"
        );
        assert_eq!(
            decide(Down {
                operator_stopped: true,
                ..up
            }),
            Verdict::Leave(LeaveReason::OperatorStopped)
        );
        assert_eq!(
            decide(Down { failed: true, ..up }),
            Verdict::Leave(LeaveReason::Failed)
        );
        assert_eq!(
            decide(Down {
                enabled: false,
                ..up
            }),
            Verdict::Leave(LeaveReason::Disabled)
        );
    }
}
