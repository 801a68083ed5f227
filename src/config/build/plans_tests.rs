//! The builder's tests of planned restarts and groups: the 2.0 schedule keys of programs and
//! groups, and `[Group:NAME]` itself (members, order, `sequence`, `min_ok`).

use super::tests::{errors, file, main_with, ok, PROG};
use super::*;
use crate::config::{HealthAction, Step};

#[test]
fn planned_restart_keys_new_in_2_0() {
    let c = ok(&[main_with(&format!(
        "restart_windows = Mon-Fri 01:00-05:00, Sat-Sun 00:00-24:00\n\
         kill_switch_file = ~/FREEZE\nrequire_reason = true\n\
         audit_syslog = udp://127.0.0.1:514\n\
         {PROG}restart_every = 3d\nrestart_at = Sun 03:30, Wed 03:30\nrestart_jitter = 15m\n\
         restart_delay = 2m\nterm_to_kill_seconds = 1.5\n\
         [[HealthCheck:http]]\ncommand = curl -fs localhost:8080\ninterval = 1m\nfailures = 2\nrepair = ./fix\naction = alert\n\
         [[HealthCheck:disk]]\ncommand = df\n\
         [Program:q]\ncommand = sleep 2\npidfile = q.pid\nstdout = logs/q.out\nrestart_windows = \"22:00-02:00\"\n"
    ))]);
    let m = &c.main;
    assert_eq!(m.kill_switch_file, Some(PathBuf::from("/home/u/FREEZE")));
    assert!(m.require_reason);
    assert_eq!(m.audit_syslog.as_deref(), Some("udp://127.0.0.1:514"));
    assert_eq!(m.audit_log, None);
    let p = c.program("p").expect("p");
    assert_eq!(p.schedule.every, Some(Duration::from_secs(3 * 86_400)));
    assert_eq!(p.schedule.jitter, Duration::from_secs(900));
    assert!(p.schedule.at.is_some());
    // No windows of its own: [Main]'s.
    assert_eq!(p.schedule.windows, m.restart_windows);
    assert!(m.restart_windows.is_some());
    // Durations with units on 1.5.13's keys too.
    assert_eq!((p.restart_delay, p.term_to_kill_seconds), (120, 1.5));
    let names: Vec<&str> = p.health_checks.iter().map(|h| h.name.as_str()).collect();
    assert_eq!(names, ["http", "disk"]);
    let http = &p.health_checks[0];
    assert_eq!(
        (http.interval, http.failures, http.repair.as_deref()),
        (Duration::from_secs(60), 2, Some("./fix"))
    );
    assert_eq!(http.action, HealthAction::Alert);
    let disk = &p.health_checks[1];
    assert_eq!(
        (
            disk.interval,
            disk.timeout,
            disk.start_period,
            disk.failures
        ),
        (
            Duration::from_secs(30),
            Duration::from_secs(10),
            Duration::ZERO,
            3
        )
    );
    assert_eq!(disk.action, HealthAction::Restart);
    let q = c.program("q").expect("q");
    assert!(q.schedule.is_empty());
    assert_ne!(q.schedule.windows, m.restart_windows, "its own windows");
}

#[test]
fn planned_restart_keys_rejected_with_their_place() {
    let cases: [(&str, Kind, usize, &str); 11] = [
        (
            "[[HealthCheck:h]]\ncommand = x\n[[HealthCheck: h]]\ncommand = y\n",
            Kind::InvalidHealthCheck,
            8,
            "HealthCheck: h",
        ),
        (
            "restart_every = 5x\n",
            Kind::InvalidDuration,
            6,
            "restart_every",
        ),
        // A plain 3 is three seconds: surely a typo for 3d.
        (
            "restart_every = 3\n",
            Kind::InvalidDuration,
            6,
            "restart_every",
        ),
        (
            "[[HealthCheck:h]]\ncommand = x\nfailures = 0\n",
            Kind::InvalidRange,
            8,
            "HealthCheck:h.failures",
        ),
        (
            "restart_at = 25:00\n",
            Kind::InvalidSchedule,
            6,
            "restart_at",
        ),
        (
            "restart_windows = Mon 05:00\n",
            Kind::InvalidSchedule,
            6,
            "restart_windows",
        ),
        (
            "restart_delay = 5 minutes\n",
            Kind::InvalidDuration,
            6,
            "restart_delay",
        ),
        (
            "[[HealthCheck:h]]\ninterval = 1m\n",
            Kind::InvalidHealthCheck,
            6,
            "HealthCheck:h.command",
        ),
        (
            "[[HealthCheck:h]]\ncommand = x\naction = reboot\n",
            Kind::InvalidHealthCheck,
            8,
            "HealthCheck:h.action",
        ),
        (
            "[[HealthCheck:h]]\ncommand = x\ntimeout = 0\n",
            Kind::InvalidRange,
            8,
            "HealthCheck:h.timeout",
        ),
        (
            "[[HealthCheck:h]]\ncommand = x\nretries = 3\n",
            Kind::UnknownHealthCheckKeys,
            8,
            "",
        ),
    ];
    for (text, kind, line, key) in cases {
        let e = errors(&[main_with(&format!("{PROG}{text}"))]);
        assert_eq!(e.len(), 1, "{text}: {e:?}");
        assert_eq!((e[0].kind, e[0].line), (kind, Some(line)), "{text}: {e:?}");
        if !key.is_empty() {
            assert_eq!(e[0].key.as_deref(), Some(key), "{text}");
        }
        assert!(
            e[0].to_string().starts_with("/home/u/usrsvc.cfg:"),
            "{}",
            e[0]
        );
    }
    // 1.5.13's own message for a value without a unit.
    let e = errors(&[main_with(&format!("{PROG}restart_delay = soon\n"))]);
    assert_eq!(e[0].kind, Kind::InvalidInt);
    let e = errors(&[main_with(&format!("audit_syslog = http://x\n{PROG}"))]);
    assert_eq!((e[0].kind, e[0].line), (Kind::InvalidSyslog, Some(2)));
}

#[test]
fn a_group_section_of_a_1_5_13_file_is_ignored_as_it_was() {
    let c = ok(&[main_with(&format!(
        "{PROG}[Group:frontend]\nmembers = web\nowner = ops\n"
    ))]);
    assert!(c.groups.is_empty());
    assert!(
        c.warnings
            .iter()
            .any(|w| w.contains("[Group:frontend]") && w.contains("ignored")),
        "{:?}",
        c.warnings
    );
    let c = ok(&[file(
        "/home/u/usrsvc.cfg",
        &format!("Group:g = 5\n[Main]\n{PROG}"),
    )]);
    assert!(c.groups.is_empty());
}

#[test]
fn groups_name_their_members_in_order() {
    let two =
        format!("{PROG}[Program:q]\ncommand = sleep 2\npidfile = q.pid\nstdout = logs/q.out\n");
    let c = ok(&[main_with(&format!(
        "{two}[Group:g]\nprograms = q, p\nsequence = restart q, wait 5m, restart p, start q\nmin_ok = 1\nrestart_at = 03:30\n"
    ))]);
    let g = c.group("g").expect("g");
    assert_eq!(g.programs, ["q", "p"]);
    assert_eq!(
        g.sequence.as_deref(),
        Some(
            &[
                Step::Restart("q".into()),
                Step::Wait(300.0),
                Step::Restart("p".into()),
                Step::Start("q".into())
            ][..]
        )
    );
    assert_eq!(g.min_ok, 1);
    assert!(g.schedule.at.is_some());
    assert_eq!(c.groups_of("p").count(), 1);

    let bad: [(&str, &str); 7] = [
        ("[Group:g]\nprograms = p, nope\n", "not defined: nope"),
        ("[Group:g]\nprograms = p, p\n", "names p twice"),
        ("[Group:all]\nprograms = q\n", "cannot be called \"all\""),
        (
            "[Group:g]\nprograms = p, q\nsequence = reboot p\n",
            "unknown step reboot",
        ),
        (
            "[Group:g]\nprograms = p\nsequence = start q\n",
            "q is not one of the group's programs",
        ),
        (
            "[Group:g]\nprograms = p, q\nmin_ok = 2\n",
            "min_ok (2) must be less",
        ),
        (
            "[Group:g]\nprograms = p, q\nmin_ok = 1\nsequence = stop p, restart q, start p\n",
            "min_ok (1) can never hold: the sequence has 2 of the 2 members down at once",
        ),
    ];
    for (text, want) in bad {
        let e = errors(&[main_with(&format!("{two}{text}"))]);
        assert!(
            e.iter()
                .any(|e| e.to_string().contains(want) && e.line.is_some()),
            "{text}: {e:?}"
        );
    }
    let e = errors(&[main_with(&format!(
        "{two}[Group:g]\nprograms = p\nwhatever = 1\n"
    ))]);
    assert_eq!(e[0].kind, Kind::UnknownGroupKeys);
    let e = errors(&[
        main_with(&format!("{two}[Group:g]\nprograms = p\n")),
        file("/home/u/more.cfg", "[Group:g]\nprograms = q\n"),
    ]);
    assert!(
        e.iter().any(|e| e
            .to_string()
            .contains("defined more than once: first at /home/u/usrsvc.cfg:10")),
        "{e:?}"
    );
}
