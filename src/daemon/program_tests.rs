//! The transitions of `program::step`, as a table: counters, settings, event and facts in;
//! counters and what comes next out.

use std::time::Duration;

use super::*;

const S: Duration = Duration::from_secs(1);

fn policy(maxrestarts: u64) -> Policy {
    Policy {
        restart_delay: Duration::from_secs(5),
        restart_delay_max: Duration::from_secs(300),
        stable: Duration::from_secs(60),
        maxrestarts,
    }
}

fn zero_delay() -> Policy {
    Policy {
        restart_delay: Duration::ZERO,
        ..policy(0)
    }
}

const ON: Settings = Settings {
    enabled: true,
    autostart: true,
    autorestart: true,
};

fn c(failures: u32, was_up: bool) -> Counters {
    Counters {
        failures,
        failed: false,
        was_up,
        autostart_tried: was_up,
    }
}

const NONE: Facts = Facts {
    lock_held: false,
    group_busy: false,
    operator_stopped: false,
};
const LOCKED: Facts = Facts {
    lock_held: true,
    ..NONE
};
const GROUP: Facts = Facts {
    group_busy: true,
    ..NONE
};
const STOPPED: Facts = Facts {
    operator_stopped: true,
    ..NONE
};

fn exited(secs: u64) -> Event {
    Event::Exited {
        uptime: Duration::from_secs(secs),
    }
}

struct Row {
    what: &'static str,
    before: Counters,
    settings: Settings,
    policy: Policy,
    event: Event,
    facts: Facts,
    next: Next,
    failures: u32,
    failed: bool,
}

fn rows() -> Vec<Row> {
    let off = Settings {
        enabled: false,
        ..ON
    };
    let manual = Settings {
        autostart: false,
        autorestart: false,
        ..ON
    };
    let no_restart = Settings {
        autorestart: false,
        ..ON
    };
    vec![
        Row {
            what: "a crash after a short run counts a failure and backs off",
            before: c(0, true),
            settings: ON,
            policy: policy(0),
            event: exited(2),
            facts: NONE,
            next: Next::Wait {
                delay: 10 * S,
                verdict: Verdict::Restart,
            },
            failures: 1,
            failed: false,
        },
        Row {
            what: "a crash after a stable run resets the failures",
            before: c(4, true),
            settings: ON,
            policy: policy(0),
            event: exited(3600),
            facts: NONE,
            next: Next::Wait {
                delay: 5 * S,
                verdict: Verdict::Restart,
            },
            failures: 0,
            failed: false,
        },
        Row {
            what: "restart_delay 0 after a stable run: restarted at once",
            before: c(0, true),
            settings: ON,
            policy: zero_delay(),
            event: exited(3600),
            facts: NONE,
            next: Next::Start(Verdict::Restart),
            failures: 0,
            failed: false,
        },
        Row {
            what: "restart_delay 0 still backs off a crash loop",
            before: c(2, true),
            settings: ON,
            policy: zero_delay(),
            event: exited(1),
            facts: NONE,
            next: Next::Wait {
                delay: 4 * S,
                verdict: Verdict::Restart,
            },
            failures: 3,
            failed: false,
        },
        Row {
            what: "an exit while a usrsvc command holds the lock is no crash",
            before: c(1, true),
            settings: ON,
            policy: policy(0),
            event: exited(1),
            facts: LOCKED,
            next: Next::LookAgain(LOCK_BUSY_RECHECK),
            failures: 1,
            failed: false,
        },
        Row {
            what: "an exit during its group's restart is no crash",
            before: c(0, true),
            settings: ON,
            policy: policy(0),
            event: exited(1),
            facts: GROUP,
            next: Next::LookAgain(LOCK_BUSY_RECHECK),
            failures: 0,
            failed: false,
        },
        Row {
            what: "an exit of a program the operator stopped: left down, nothing counted",
            before: c(0, true),
            settings: ON,
            policy: policy(0),
            event: exited(1),
            facts: STOPPED,
            next: Next::Leave(LeaveReason::OperatorStopped),
            failures: 0,
            failed: false,
        },
        Row {
            what: "the failure that reaches maxrestarts gives up",
            before: c(2, true),
            settings: ON,
            policy: policy(3),
            event: exited(1),
            facts: NONE,
            next: Next::GiveUp,
            failures: 3,
            failed: true,
        },
        Row {
            what: "one below maxrestarts is still restarted",
            before: c(1, true),
            settings: ON,
            policy: policy(3),
            event: exited(1),
            facts: NONE,
            next: Next::Wait {
                delay: 20 * S,
                verdict: Verdict::Restart,
            },
            failures: 2,
            failed: false,
        },
        Row {
            what: "autorestart = false: a crash leaves it down",
            before: c(0, true),
            settings: no_restart,
            policy: policy(0),
            event: exited(1),
            facts: NONE,
            next: Next::Leave(LeaveReason::NotAutomatic),
            failures: 1,
            failed: false,
        },
        Row {
            what: "first sight of an autostart program not running: started at once",
            before: c(0, false),
            settings: ON,
            policy: policy(0),
            event: Event::NotFound,
            facts: NONE,
            next: Next::Start(Verdict::Autostart),
            failures: 0,
            failed: false,
        },
        Row {
            what: "a failed autostart is retried like a failed start",
            before: Counters {
                autostart_tried: true,
                ..c(1, false)
            },
            settings: ON,
            policy: policy(0),
            event: Event::NotFound,
            facts: NONE,
            next: Next::Wait {
                delay: 10 * S,
                verdict: Verdict::Restart,
            },
            failures: 1,
            failed: false,
        },
        Row {
            what: "disabled: left down",
            before: c(0, true),
            settings: off,
            policy: policy(0),
            event: Event::NotFound,
            facts: NONE,
            next: Next::Leave(LeaveReason::Disabled),
            failures: 0,
            failed: false,
        },
        Row {
            what: "neither autostart nor autorestart: left down",
            before: c(0, false),
            settings: manual,
            policy: policy(0),
            event: Event::NotFound,
            facts: NONE,
            next: Next::Leave(LeaveReason::NotAutomatic),
            failures: 0,
            failed: false,
        },
        Row {
            what: "given up: stays down until seen running",
            before: Counters {
                failed: true,
                ..c(3, true)
            },
            settings: ON,
            policy: policy(3),
            event: Event::NotFound,
            facts: NONE,
            next: Next::Leave(LeaveReason::Failed),
            failures: 3,
            failed: true,
        },
        Row {
            what: "not found while its group restarts: the group's to act on",
            before: c(0, true),
            settings: ON,
            policy: policy(0),
            event: Event::NotFound,
            facts: GROUP,
            next: Next::LookAgain(GROUP_BUSY_RECHECK),
            failures: 0,
            failed: false,
        },
        Row {
            what: "a worker that failed counts a failure, then the program is looked at",
            before: c(1, true),
            settings: ON,
            policy: policy(0),
            event: Event::WorkerDone {
                code: 137,
                planned: false,
            },
            facts: NONE,
            next: Next::Look,
            failures: 2,
            failed: false,
        },
        Row {
            what: "a planned restart that came up resets the failures",
            before: c(2, true),
            settings: ON,
            policy: policy(0),
            event: Event::WorkerDone {
                code: 0,
                planned: true,
            },
            facts: NONE,
            next: Next::Look,
            failures: 0,
            failed: false,
        },
        Row {
            what: "a crash restart that came up keeps its count until a stable run",
            before: c(2, true),
            settings: ON,
            policy: policy(0),
            event: Event::WorkerDone {
                code: 0,
                planned: false,
            },
            facts: NONE,
            next: Next::Look,
            failures: 2,
            failed: false,
        },
    ]
}

#[test]
fn transitions() {
    for row in rows() {
        let mut counters = row.before;
        let next = step(
            &mut counters,
            row.settings,
            &row.policy,
            row.event,
            row.facts,
        );
        assert_eq!(next, row.next, "{}", row.what);
        assert_eq!(counters.failures, row.failures, "{}: failures", row.what);
        assert_eq!(counters.failed, row.failed, "{}: failed", row.what);
    }
}

#[test]
fn an_autostart_is_tried_once() {
    let mut counters = c(0, false);
    assert_eq!(
        step(&mut counters, ON, &policy(0), Event::NotFound, NONE),
        Next::Start(Verdict::Autostart)
    );
    assert!(counters.autostart_tried);
    // Its start failed and it is still not running: now a restart with back-off.
    counters.failures = 1;
    assert_eq!(
        step(&mut counters, ON, &policy(0), Event::NotFound, NONE),
        Next::Wait {
            delay: 10 * S,
            verdict: Verdict::Restart
        }
    );
}

#[test]
fn a_crash_loop_backs_off_up_to_the_cap_then_gives_up() {
    let mut counters = c(0, true);
    let p = policy(8);
    let mut delays = Vec::new();
    loop {
        match step(&mut counters, ON, &p, exited(1), NONE) {
            Next::Wait { delay, .. } => delays.push(delay.as_secs()),
            Next::GiveUp => break,
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(delays, [10, 20, 40, 80, 160, 300, 300]);
    assert!(counters.failed);
    assert_eq!(
        step(&mut counters, ON, &p, Event::NotFound, NONE),
        Next::Leave(LeaveReason::Failed)
    );
}
