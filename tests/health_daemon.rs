//! Health checks end to end: the real `usrsvcd` running `[[HealthCheck:NAME]]` against real
//! processes — the restart after exactly `failures` failing checks, degraded checks that are
//! never acted on, a hanging check killed at its timeout, repairs before the restart (and
//! instead of it), `action = alert` and `none`, the kill switch, the check's environment — and
//! the CLI's `usrsvc health`, `usrsvc repair` and the health verdicts in `usrsvc status`.
//!
//! The program under test is `web.sh`, a wrapper that appends `start PID` to the test's
//! `events` file (and `stop PID` when it gets SIGTERM) and waits on a marked `sleep`; each check script appends `check PID` (its
//! `$USRSVC_PID`) and each repair `repair PID` to the same file, so the order of starts,
//! checks and repairs is the order of its lines. Conditions are waited on with generous
//! deadlines; a negative check ("not restarted") looks over a window of at least ten check
//! runs. The `Env` and `Daemon` guards kill every process by pid on drop, even on failure.

mod common;

use std::path::PathBuf;
use std::time::Duration;

use common::daemon::{Daemon, LONG};
use common::{alive, wait_for, Env};
use serde_json::Value;

/// A run counts as stable after 0.2 s: a health restart then happens at once, no back-off.
const STABLE: &str = "stable_seconds = 0.2";

/// The test's `events` file: one line per start, check and repair, in order.
fn events_path(t: &Env) -> PathBuf {
    t.path("events")
}

fn events(t: &Env) -> Vec<String> {
    common::read(&events_path(t))
        .lines()
        .map(str::to_owned)
        .collect()
}

/// How many lines of `events` are exactly `line`.
fn count(t: &Env, line: &str) -> usize {
    events(t).iter().filter(|l| *l == line).count()
}

/// Waits until `events` has `line`; returns its index.
#[track_caller]
fn wait_event(t: &Env, d: &Daemon, line: &str) -> usize {
    let ok = wait_for(LONG, || events(t).iter().any(|l| l == line));
    assert!(ok, "no {line:?} in events: {:?}\n{}", events(t), d.dump());
    index(t, line)
}

/// The index of the first line of `events` that is `line`.
#[track_caller]
fn index(t: &Env, line: &str) -> usize {
    events(t)
        .iter()
        .position(|l| l == line)
        .unwrap_or_else(|| panic!("no {line:?} in events: {:?}", events(t)))
}

/// The program: records its start, then waits on a marked sleep (killed with it on TERM).
fn wrapper(t: &Env) -> PathBuf {
    t.script(
        "web.sh",
        &format!(
            "#!/bin/sh\necho \"start $$\" >> {ev}\ntrap 'echo \"stop $$\" >> {ev}; kill $! 2>/dev/null; exit 0' TERM\n{} &\nwait\n",
            t.sleep(1),
            ev = events_path(t).display()
        ),
    )
}

/// A check (or repair) script that records `WORD $USRSVC_PID`, then runs `tail`.
fn recording(t: &Env, file: &str, word: &str, tail: &str) -> PathBuf {
    t.script(
        file,
        &format!(
            "#!/bin/sh\necho \"{word} $USRSVC_PID\" >> {}\n{tail}\n",
            events_path(t).display()
        ),
    )
}

fn audit_path(t: &Env) -> PathBuf {
    t.path("audit.log")
}

/// `[Main]` with the audit log in HOME and `main`, and program `web` (the wrapper) with
/// `prog` keys and one `[[HealthCheck:probe]]` of `check` keys.
fn web_config(t: &Env, main: &str, prog: &str, check: &str) {
    let web = wrapper(t);
    t.config(&format!(
        "[Main]\naudit_log = {}\n{main}\n\n{}",
        audit_path(t).display(),
        t.program(
            "web",
            web.to_str().expect("utf-8 HOME"),
            &format!("{STABLE}\n{prog}\n[[HealthCheck:probe]]\n{check}")
        )
    ));
}

/// Every record of the audit log.
fn audit(t: &Env) -> Vec<Value> {
    common::read(&audit_path(t))
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("audit line {l:?}: {e}")))
        .collect()
}

/// Waits for an audit record of `action` with `trigger`; returns it.
#[track_caller]
fn wait_audit(t: &Env, d: &Daemon, action: &str, trigger: &str) -> Value {
    let find = || {
        audit(t)
            .into_iter()
            .find(|r| r["action"] == action && r["trigger"] == trigger)
    };
    let ok = wait_for(LONG, || find().is_some());
    assert!(
        ok,
        "no audit record {action} / {trigger}: {}\n{}",
        common::read(&audit_path(t)),
        d.dump()
    );
    find().expect("record")
}

/// The index of the first daemon log message containing `text`.
#[track_caller]
fn msg_index(d: &Daemon, text: &str) -> usize {
    d.msgs()
        .iter()
        .position(|m| m.contains(text))
        .unwrap_or_else(|| panic!("no log line with {text:?}:\n{}", d.dump()))
}

/// Starts the daemon and waits until it watches web's first process; returns both.
fn daemon_with_web(t: &Env) -> (Daemon<'_>, i32) {
    let d = t.daemon();
    let pid = t.wait_running("web");
    d.expect_watching("web", pid);
    (d, pid)
}

/// Watches `pid` while the check runs at least `runs` more times against it: it must stay
/// web's process throughout.
#[track_caller]
fn stays_up_for_checks(t: &Env, d: &Daemon, pid: i32, runs: usize) {
    let line = format!("check {pid}");
    let target = count(t, &line) + runs;
    let ok = wait_for(LONG, || {
        assert!(
            alive(pid) && t.pid_of("web") == Some(pid),
            "web was restarted (pidfile: {:?}); events: {:?}\n{}",
            t.pid_of("web"),
            events(t),
            d.dump()
        );
        count(t, &line) >= target
    });
    assert!(
        ok,
        "the check did not run {runs} more times: {:?}\n{}",
        events(t),
        d.dump()
    );
    assert_eq!(
        d.count("; restarting it"),
        0,
        "the daemon restarted web:\n{}",
        d.dump()
    );
}

#[test]
fn a_failing_check_restarts_the_program_after_exactly_failures_failing_checks() {
    let t = Env::new();
    let check = recording(&t, "check.sh", "check", "echo broken; exit 2");
    web_config(
        &t,
        "",
        "",
        &format!(
            "command = {}\ninterval = 0.3\nfailures = 3\ntimeout = 1\n",
            check.display()
        ),
    );
    let (d, old) = daemon_with_web(&t);

    let new = t.wait_new_pid("web", old);
    d.expect_watching("web", new);
    wait_event(&t, &d, &format!("start {new}"));
    // The restart's stop is the moment that counts: no check may be missing before it.
    let stopped = index(&t, &format!("stop {old}"));
    let before = events(&t)[..stopped]
        .iter()
        .filter(|l| **l == format!("check {old}"))
        .count();
    assert!(
        before >= 3,
        "restarted after {} check(s) of the old pid: {:?}\n{}",
        before,
        events(&t),
        d.dump()
    );
    // The restart came at the third failure, not before: the daemon counted 1, 2, 3, and
    // decided on "3 consecutive failures" only after the third.
    let third = msg_index(&d, "health check probe failed (exit 2), 3 in a row.");
    let second = msg_index(&d, "health check probe failed (exit 2), 2 in a row.");
    let restart = msg_index(
        &d,
        "web: health check probe failed: 3 consecutive failures; last: exit 2; restarting it.",
    );
    assert!(second < third && third < restart, "{}", d.dump());
    assert_eq!(
        d.count("consecutive failures"),
        d.count("3 consecutive failures"),
        "acted at another count:\n{}",
        d.dump()
    );

    let r = wait_audit(&t, &d, "restart", "health:probe");
    assert_eq!(r["program"], "web", "{r}");
    assert_eq!(r["result"], "ok", "{r}");
    assert_eq!(r["old_pid"], old, "{r}");
    assert_eq!(r["new_pid"], new, "{r}");

    // The count starts afresh against the new process: three more failures, not one.
    let newer = t.wait_new_pid("web", new);
    wait_event(&t, &d, &format!("start {newer}"));
    let stopped = index(&t, &format!("stop {new}"));
    let against_new = events(&t)[..stopped]
        .iter()
        .filter(|l| **l == format!("check {new}"))
        .count();
    assert!(
        against_new >= 3,
        "restarted after {against_new} check(s) of the second pid: {:?}\n{}",
        events(&t),
        d.dump()
    );
}

#[test]
fn a_degraded_check_is_reported_and_never_restarts_the_program() {
    let t = Env::new();
    let check = recording(&t, "check.sh", "check", "echo slow; exit 1");
    web_config(
        &t,
        "",
        "",
        &format!(
            "command = {}\ninterval = 0.2\nfailures = 2\ntimeout = 1\n",
            check.display()
        ),
    );
    let (d, pid) = daemon_with_web(&t);

    d.expect_log("web: health check probe reports degraded (exit 1); no action.");
    stays_up_for_checks(&t, &d, pid, 10);
    assert_eq!(d.count("health check probe failed"), 0, "{}", d.dump());
    assert_eq!(
        d.count("reports degraded"),
        1,
        "logged when it changes, not on every run:\n{}",
        d.dump()
    );

    let r = t.run(&["status", "web"]);
    r.expect_code(0);
    assert!(
        r.stdout()
            .lines()
            .any(|l| l.trim_start().starts_with("health probe: degraded")),
        "{}",
        r.all()
    );

    let r = t.run(&["status", "web", "--json"]);
    r.expect_code(0);
    let v: Value = serde_json::from_str(&r.stdout()).expect("json");
    let health = v["health"].as_array().unwrap_or_else(|| panic!("{v}"));
    assert_eq!(health.len(), 1, "{v}");
    assert_eq!(health[0]["check"], "probe", "{v}");
    assert_eq!(health[0]["status"], "degraded", "{v}");
    assert_eq!(health[0]["detail"], "exit 1", "{v}");
}

#[test]
fn a_hanging_check_is_killed_at_its_timeout_and_counts_as_failing() {
    let t = Env::new();
    let hung = t.path("hung.pids");
    let check = recording(
        &t,
        "check.sh",
        "check",
        &format!("{} &\necho $! >> {}\nwait", t.sleep(9), hung.display()),
    );
    web_config(
        &t,
        "",
        "",
        &format!(
            "command = {}\ninterval = 0.3\nfailures = 2\ntimeout = 1\n",
            check.display()
        ),
    );
    let (d, old) = daemon_with_web(&t);

    let pids = || -> Vec<i32> {
        common::read(&hung)
            .lines()
            .filter_map(|l| l.trim().parse().ok())
            .collect()
    };
    assert!(wait_for(LONG, || !pids().is_empty()), "{}", d.dump());
    let first = pids()[0];
    t.track(first);
    assert!(alive(first), "the check's sleep hangs at first");
    assert!(
        wait_for(LONG, || !alive(first)),
        "the hanging sleep {first} outlived the check's timeout\n{}",
        d.dump()
    );
    d.expect_log("health check probe failed (timed out after 1s), 1 in a row.");

    let new = t.wait_new_pid("web", old);
    d.expect_log(
        "web: health check probe failed: 2 consecutive failures; last: timed out after 1s; restarting it.",
    );
    wait_audit(&t, &d, "restart", "health:probe");
    // Every hanging sleep started against the old process is gone (a check still running
    // when the program was restarted is killed too).
    for p in pids() {
        t.track(p);
    }
    let started = wait_event(&t, &d, &format!("start {new}"));
    let against_old = events(&t)[..started]
        .iter()
        .filter(|l| **l == format!("check {old}"))
        .count();
    assert!(against_old >= 2, "{:?}", events(&t));
    let stale: Vec<i32> = pids().into_iter().take(against_old).collect();
    assert!(
        wait_for(LONG, || stale.iter().all(|p| !alive(*p))),
        "left running: {:?}\n{}",
        stale.iter().filter(|p| alive(**p)).collect::<Vec<_>>(),
        d.dump()
    );
}

#[test]
fn a_repair_that_does_not_help_runs_before_the_restart() {
    let t = Env::new();
    let marker = t.path("repaired");
    let check = recording(&t, "check.sh", "check", "exit 2");
    // The repair takes a while and records itself when it ends: a restart that did not wait
    // for it would stop the program first.
    let repair = t.script(
        "repair.sh",
        &format!(
            "#!/bin/sh\nsleep 0.5\necho \"repair $USRSVC_PID\" >> {}\ndate +%s%N > {}\n",
            events_path(&t).display(),
            marker.display()
        ),
    );
    web_config(
        &t,
        "",
        "",
        &format!(
            "command = {}\nrepair = {}\ninterval = 0.3\nfailures = 3\ntimeout = 3\n",
            check.display(),
            repair.display()
        ),
    );
    let (d, old) = daemon_with_web(&t);

    let new = t.wait_new_pid("web", old);
    let started = wait_event(&t, &d, &format!("start {new}"));
    assert!(marker.exists(), "the repair did not run\n{}", d.dump());
    let stopped = index(&t, &format!("stop {old}"));
    let repaired = index(&t, &format!("repair {old}"));
    let ev = events(&t);
    assert!(
        repaired < stopped && stopped < started,
        "the program was stopped before its repair had finished: {ev:?}\n{}",
        d.dump()
    );
    let checks_before = ev[..repaired]
        .iter()
        .filter(|l| **l == format!("check {old}"))
        .count();
    assert!(checks_before >= 3, "repaired too early: {ev:?}");
    assert!(
        ev[repaired..stopped].contains(&format!("check {old}")),
        "the check ran again after the repair, before the restart: {ev:?}"
    );
    d.expect_log(
        "web: health check probe failed: 3 consecutive failures; last: exit 2; repair ran (exit 0) and the check still fails (exit 2); restarting it.",
    );
    assert_eq!(d.count("the check passes again"), 0, "{}", d.dump());
    let r = wait_audit(&t, &d, "restart", "health:probe");
    assert_eq!(
        (r["old_pid"].clone(), r["new_pid"].clone()),
        (old.into(), new.into())
    );
}

#[test]
fn a_repair_that_fixes_the_check_prevents_the_restart() {
    let t = Env::new();
    let fixed = t.path("fixed");
    let check = recording(
        &t,
        "check.sh",
        "check",
        &format!("[ -e {} ] || exit 2", fixed.display()),
    );
    let repair = recording(
        &t,
        "repair.sh",
        "repair",
        &format!("touch {}", fixed.display()),
    );
    web_config(
        &t,
        "",
        "",
        &format!(
            "command = {}\nrepair = {}\ninterval = 0.3\nfailures = 2\ntimeout = 1\n",
            check.display(),
            repair.display()
        ),
    );
    let (d, pid) = daemon_with_web(&t);

    d.expect_log("web: repair of health check probe ran (exit 0) and the check passes again.");
    let repaired = index(&t, &format!("repair {pid}"));
    let before = events(&t)[..repaired]
        .iter()
        .filter(|l| **l == format!("check {pid}"))
        .count();
    assert!(before >= 2, "{:?}", events(&t));
    d.expect_log("web: health check probe is healthy (exit 0).");
    stays_up_for_checks(&t, &d, pid, 10);
    assert_eq!(count(&t, &format!("repair {pid}")), 1, "{:?}", events(&t));

    let r = wait_audit(&t, &d, "repair:probe", "health:probe");
    assert_eq!(r["program"], "web", "{r}");
    assert_eq!(r["result"], "ok", "{r}");
    assert_eq!(r["old_pid"], pid, "{r}");
    assert!(
        audit(&t).iter().all(|r| r["action"] != "restart"),
        "{}",
        common::read(&audit_path(&t))
    );
}

/// Every message the stub sendmail got, oldest first, quoted-printable soft breaks undone.
fn mails(t: &Env) -> Vec<String> {
    let mut names: Vec<PathBuf> = std::fs::read_dir(t.path("mail"))
        .expect("mail dir")
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "msg"))
        .collect();
    names.sort();
    names
        .iter()
        .map(|p| {
            common::read(p)
                .replace("=\r\n", "")
                .replace("=\n", "")
                .replace("=3D", "=")
                .replace("\r\n", "\n")
        })
        .collect()
}

#[test]
fn action_alert_mails_and_does_not_restart() {
    let t = Env::new();
    std::fs::create_dir_all(t.path("mail")).expect("mail dir");
    let sendmail = t.script(
        "sendmail",
        &format!(
            "#!/bin/sh\nn={}/$(date +%s%N).$$\ncat > \"$n.tmp\"\nmv \"$n.tmp\" \"$n.msg\"\n",
            t.path("mail").display()
        ),
    );
    let check = recording(&t, "check.sh", "check", "exit 2");
    web_config(
        &t,
        &format!("sendmail_path = {}", sendmail.display()),
        "email_alerts = ops@example.org\nemail_interval = 0",
        &format!(
            "command = {}\ninterval = 0.3\nfailures = 2\ntimeout = 1\naction = alert\n",
            check.display()
        ),
    );
    let (d, pid) = daemon_with_web(&t);

    d.expect_log("web: health check probe failed: 2 consecutive failures; last: exit 2; sending an alert (action = alert).");
    let found = || {
        mails(&t)
            .into_iter()
            .find(|m| m.contains("health check probe failed"))
    };
    assert!(
        wait_for(LONG, || found().is_some()),
        "no health mail: {:?}\n{}",
        mails(&t),
        d.dump()
    );
    let mail = found().expect("mail");
    assert!(
        mail.contains("2 consecutive failures; last: exit 2"),
        "{mail}"
    );
    assert!(
        !mail.contains("was restarted") && !mail.contains("restart\n"),
        "the mail says web was restarted, but action = alert does not restart:\n{mail}"
    );
    assert!(
        mail.lines()
            .any(|l| l.starts_with("Subject: ") && l.ends_with(" - web health check failing")),
        "{mail}"
    );
    assert!(
        mail.contains("was not restarted (action = alert)"),
        "{mail}"
    );

    stays_up_for_checks(&t, &d, pid, 10);
    d.expect_count("sending an alert (action = alert)", 2);
    assert!(
        audit(&t).iter().all(|r| r["action"] != "restart"),
        "{}",
        common::read(&audit_path(&t))
    );
}

#[test]
fn action_none_only_logs() {
    let t = Env::new();
    let check = recording(&t, "check.sh", "check", "exit 2");
    web_config(
        &t,
        "",
        "",
        &format!(
            "command = {}\ninterval = 0.2\nfailures = 2\ntimeout = 1\naction = none\n",
            check.display()
        ),
    );
    let (d, pid) = daemon_with_web(&t);

    d.expect_log(
        "web: health check probe failed: 2 consecutive failures; last: exit 2 (action = none).",
    );
    stays_up_for_checks(&t, &d, pid, 10);
    // The count started again after each action: it acted again, and again only logged.
    d.expect_count("(action = none)", 2);
    assert!(
        audit(&t).iter().all(|r| r["action"] != "restart"),
        "{}",
        common::read(&audit_path(&t))
    );
}

#[test]
fn the_check_sees_program_pid_and_check_names_in_its_environment() {
    let t = Env::new();
    let out = t.path("env.out");
    let check = t.script(
        "check.sh",
        &format!(
            "#!/bin/sh\nprintf '%s|%s|%s|%s\\n' \"$USRSVC_PROGRAM\" \"$USRSVC_PID\" \"$USRSVC_CHECK\" \"$FROM_CONFIG\" > {o}.tmp\nmv {o}.tmp {o}\n",
            o = out.display()
        ),
    );
    web_config(
        &t,
        "",
        "[[Env]]\nFROM_CONFIG = yes",
        &format!("command = {}\ninterval = 0.3\n", check.display()),
    );
    let (d, pid) = daemon_with_web(&t);

    assert!(
        wait_for(LONG, || out.exists()),
        "the check did not run\n{}",
        d.dump()
    );
    assert_eq!(
        common::read(&out).trim_end(),
        format!("web|{pid}|probe|yes")
    );
    d.expect_log("web: health check probe is healthy (exit 0).");
}

#[test]
fn the_kill_switch_holds_a_health_restart_while_it_is_on() {
    let t = Env::new();
    let switch = t.path("FREEZE");
    let broken = t.path("broken");
    let check = recording(
        &t,
        "check.sh",
        "check",
        &format!("[ -e {} ] && exit 2\nexit 0", broken.display()),
    );
    web_config(
        &t,
        &format!("kill_switch_file = {}", switch.display()),
        "",
        &format!(
            "command = {}\ninterval = 0.2\nfailures = 2\ntimeout = 1\n",
            check.display()
        ),
    );
    let (d, pid) = daemon_with_web(&t);
    d.expect_log("web: health check probe is healthy (exit 0).");

    std::fs::write(&switch, "").expect("kill switch");
    std::fs::write(&broken, "").expect("break");
    let held = format!(
        "web: health check probe failed: 2 consecutive failures; last: exit 2; not restarting it: the kill switch {} is on.",
        switch.display()
    );
    d.expect_log(&held);
    stays_up_for_checks(&t, &d, pid, 10);
    d.expect_count(&held, 2);

    std::fs::remove_file(&switch).expect("kill switch off");
    let new = t.wait_new_pid("web", pid);
    d.expect_watching("web", new);
    d.expect_log("2 consecutive failures; last: exit 2; restarting it.");
    wait_audit(&t, &d, "restart", "health:probe");
}

/// `usrsvc` without a daemon: programs `ok`, `deg` and `bad` (checks exit 0, 1, 2), `down`
/// (never started), group `g` of ok and deg.
fn cli_config(t: &Env) {
    let mut sections = Vec::new();
    for (i, (name, code)) in [("ok", 0), ("deg", 1), ("bad", 2), ("down", 0)]
        .into_iter()
        .enumerate()
    {
        let check = t.script(
            &format!("{name}.sh"),
            &format!("#!/bin/sh\necho \"said $USRSVC_PROGRAM\"\nexit {code}\n"),
        );
        sections.push(t.program(
            name,
            &t.sleep(10 + i as u32),
            &format!(
                "[[HealthCheck:probe]]\ncommand = {}\ntimeout = 5\n",
                check.display()
            ),
        ));
    }
    t.config(&format!(
        "[Main]\naudit_log = {}\n\n{}\n[Group:g]\nprograms = ok, deg\n",
        audit_path(t).display(),
        sections.join("\n")
    ));
    for name in ["ok", "deg", "bad"] {
        t.run(&["start", name]).expect_code(0);
    }
}

/// The `NAME probe: ...` line of `usrsvc health` output for `name`.
#[track_caller]
fn health_line(out: &str, name: &str) -> String {
    out.lines()
        .find(|l| l.starts_with(&format!("{name} probe: ")))
        .unwrap_or_else(|| panic!("no line for {name}:\n{out}"))
        .to_owned()
}

#[test]
fn usrsvc_health_prints_each_verdict_and_exits_1_only_when_failing() {
    let t = Env::new();
    cli_config(&t);

    let r = t.run(&["health", "ok"]);
    r.expect_code(0);
    assert!(
        health_line(&r.stdout(), "ok").starts_with("ok probe: healthy (exit 0, "),
        "{}",
        r.all()
    );
    let r = t.run(&["health", "deg"]);
    r.expect_code(0);
    assert!(
        health_line(&r.stdout(), "deg").starts_with("deg probe: degraded (exit 1, "),
        "{}",
        r.all()
    );
    assert!(
        r.stdout().contains("    said deg"),
        "output shown: {}",
        r.all()
    );
    let r = t.run(&["health", "bad"]);
    r.expect_code(1);
    assert!(
        health_line(&r.stdout(), "bad").starts_with("bad probe: failing (exit 2, "),
        "{}",
        r.all()
    );
    let r = t.run(&["health", "down"]);
    r.expect_code(1);
    assert_eq!(
        health_line(&r.stdout(), "down"),
        "down probe: failing (not running)"
    );

    let r = t.run(&["health", "g"]);
    r.expect_code(0);
    let out = r.stdout();
    assert!(health_line(&out, "ok").contains("healthy"), "{out}");
    assert!(health_line(&out, "deg").contains("degraded"), "{out}");
    assert!(
        !out.contains("bad probe") && !out.contains("down probe"),
        "{out}"
    );

    let r = t.run(&["health", "all"]);
    r.expect_code(1);
    for name in ["ok", "deg", "bad", "down"] {
        health_line(&r.stdout(), name);
    }

    let r = t.run(&["health", "all", "--json"]);
    r.expect_code(1);
    let v: Value = serde_json::from_str(&r.stdout()).unwrap_or_else(|e| panic!("{e}: {}", r.all()));
    let rows = v.as_array().unwrap_or_else(|| panic!("{v}"));
    let status = |name: &str| -> Value {
        rows.iter()
            .find(|row| row["program"] == name)
            .unwrap_or_else(|| panic!("no row for {name}: {v}"))["status"]
            .clone()
    };
    assert_eq!(rows.len(), 4, "{v}");
    assert_eq!(status("ok"), "healthy");
    assert_eq!(status("deg"), "degraded");
    assert_eq!(status("bad"), "failing");
    assert_eq!(status("down"), "failing");
    let ok = rows.iter().find(|row| row["program"] == "ok").expect("ok");
    assert_eq!(ok["check"], "probe");
    assert_eq!(ok["pid"], t.pid_of("ok").expect("pid"));
    assert_eq!(ok["output"], "said ok\n");

    let r = t.run(&["health", "ok", "--json"]);
    r.expect_code(0);
    let v: Value = serde_json::from_str(&r.stdout()).expect("json");
    assert_eq!(v[0]["status"], "healthy", "{v}");

    t.run(&["health", "nosuch"]).expect_code(133);

    // Without a daemon there are no verdicts to show: `health` is null, not an empty list.
    let r = t.run(&["status", "ok", "--json"]);
    r.expect_code(0);
    let v: Value = serde_json::from_str(&r.stdout()).expect("json");
    assert_eq!(v["health"], Value::Null, "{v}");
}

#[test]
fn usrsvc_repair_runs_the_repair_command_and_audits_it() {
    let t = Env::new();
    let marker = t.path("repaired");
    let repair = t.script(
        "repair.sh",
        &format!(
            "#!/bin/sh\necho \"$USRSVC_PROGRAM $USRSVC_PID $USRSVC_CHECK\" >> {}\necho fixing\n[ -e {} ] && exit 3\nexit 0\n",
            marker.display(),
            t.path("fail-repair").display()
        ),
    );
    t.config(&format!(
        "[Main]\naudit_log = {}\n\n{}",
        audit_path(&t).display(),
        t.program(
            "web",
            &t.sleep(1),
            &format!(
                "[[HealthCheck:probe]]\ncommand = exit 2\nrepair = {}\n",
                repair.display()
            )
        )
    ));

    let r = t.run(&["repair", "web"]);
    r.expect_code(1);
    assert!(
        r.all().contains("web is NOT running; nothing to repair."),
        "{}",
        r.all()
    );
    assert!(!marker.exists(), "a repair ran against nothing");

    t.run(&["start", "web"]).expect_code(0);
    let pid = t.pid_of("web").expect("pid");
    let r = t.run(&["repair", "web", "--reason", "disk full"]);
    r.expect_code(0);
    assert!(r.all().contains("web probe: repair exit 0"), "{}", r.all());
    assert!(r.stdout().contains("    fixing"), "{}", r.all());
    assert_eq!(common::read(&marker), format!("web {pid} probe\n"));
    let records = audit(&t);
    let rec = records
        .iter()
        .find(|r| r["action"] == "repair:probe")
        .unwrap_or_else(|| panic!("no repair record: {records:?}"));
    assert_eq!(rec["program"], "web");
    assert_eq!(rec["trigger"], "cli");
    assert_eq!(rec["reason"], "disk full");
    assert_eq!(rec["result"], "ok");
    assert_eq!(rec["old_pid"], pid);
    assert_eq!(t.pid_of("web"), Some(pid), "a repair does not restart");

    std::fs::write(t.path("fail-repair"), "").expect("fail");
    let r = t.run(&["repair", "web"]);
    r.expect_code(1);
    assert!(r.all().contains("web probe: repair exit 3"), "{}", r.all());
    let last = audit(&t).pop().expect("record");
    assert_eq!(
        (last["action"].clone(), last["result"].clone()),
        ("repair:probe".into(), "failed".into())
    );
}

#[test]
fn the_kill_switch_turned_on_during_the_back_off_holds_the_health_restart() {
    let t = Env::new();
    let switch = t.path("FREEZE");
    let check = recording(&t, "check.sh", "check", "exit 2");
    web_config(
        &t,
        &format!("kill_switch_file = {}", switch.display()),
        "restart_delay = 2",
        &format!(
            "command = {}\ninterval = 0.2\nfailures = 1\n",
            check.display()
        ),
    );
    let (d, pid) = daemon_with_web(&t);
    d.expect_log("restarting it in 2.0 s (back-off)");
    std::fs::write(&switch, "").expect("kill switch");
    d.expect_log("web: the health:probe restart is not done: the kill switch");
    std::thread::sleep(Duration::from_millis(500));
    assert!(alive(pid) && t.pid_of("web") == Some(pid), "{}", d.dump());
    assert!(
        !audit(&t).iter().any(|r| r["trigger"] == "health:probe"),
        "{}",
        d.dump()
    );
    // A restart that was not done is neither a failure nor a restart of the program.
    let state: Value = serde_json::from_str(&common::read(&t.path("run/usrsvcd.state")))
        .expect("the daemon's state");
    let web = state["programs"]
        .as_array()
        .and_then(|ps| ps.iter().find(|p| p["name"] == "web"))
        .cloned()
        .expect("web in the state");
    assert_eq!(
        (&web["failures"], &web["restarts"]),
        (&Value::from(0), &Value::from(0)),
        "{web}"
    );
}

#[test]
fn a_program_removed_from_the_config_is_no_longer_checked() {
    let t = Env::new();
    let check = recording(&t, "check.sh", "check", "exit 0");
    web_config(
        &t,
        "",
        "",
        &format!("command = {}\ninterval = 0.2\n", check.display()),
    );
    let (d, pid) = daemon_with_web(&t);
    let line = format!("check {pid}");
    assert!(wait_for(LONG, || count(&t, &line) >= 2));
    t.config("[Main]\n");
    // An emptied config is refused as cut short unless forced.
    t.run_bin("usrsvcd", &["reread", "--force"]).expect_code(0);
    d.expect_log("web is no longer in the config");
    std::thread::sleep(Duration::from_millis(500));
    let n = count(&t, &line);
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(count(&t, &line), n, "checks go on: {:?}", events(&t));
    t.track(pid);
}
