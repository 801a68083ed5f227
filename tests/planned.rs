//! Planned restarts, groups and the kill switch end to end: the real `usrsvcd` and `usrsvc`
//! against real processes, checked through what they leave behind — pids, the daemon's JSON
//! log, the audit trail, `usrsvc plan` and `usrsvc history`. Covers `restart_every` and
//! `restart_at`, `restart_windows` that hold a restart back, the kill switch (planned and CLI
//! restarts refused, crash restarts still done, `--force`), a group `sequence` with its pause
//! run by `usrsvc` and by the daemon's group schedule, `min_ok`, and the group verbs' order.
//!
//! Everything is waited for with generous deadlines; a "nothing happens" check is a bounded
//! observation window that starts only after the daemon has shown it had its chance (a
//! "held back" line, or a schedule that came due well before the window ends).

mod common;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use chrono::{DateTime, FixedOffset, Local, Timelike};
use common::daemon::{kill9, LONG};
use common::{alive, wait_for, Env};
use serde_json::Value;

/// A program that restarts at once after a crash (its run counts as stable after 0.2 s).
const STABLE: &str = "stable_seconds = 0.2";

/// Writes a config of `[Main]` with `main` lines plus the given sections.
fn write_config(t: &Env, main: &str, sections: &[String]) {
    t.config(&format!("[Main]\n{main}\n\n{}", sections.join("\n")));
}

/// `audit_log = HOME/audit.log`, the trail most tests read.
fn audit_main(t: &Env) -> String {
    format!("audit_log = {}", audit_path(t).display())
}

fn audit_path(t: &Env) -> PathBuf {
    t.path("audit.log")
}

/// Every record of an audit log; a line that is not a JSON object fails the test. A last line
/// without its newline is being written right now and is left for the next read.
fn records(path: &Path) -> Vec<Value> {
    let text = common::read(path);
    let complete = text.rfind('\n').map_or("", |end| &text[..=end]);
    complete
        .lines()
        .map(|l| {
            serde_json::from_str::<Value>(l)
                .ok()
                .filter(Value::is_object)
                .unwrap_or_else(|| panic!("audit line is not a JSON object: {l:?}\n{text}"))
        })
        .collect()
}

/// Waits until the audit log has a record for which `pred` holds; returns the first.
#[track_caller]
fn wait_record(path: &Path, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
    let mut found = None;
    let ok = wait_for(LONG, || {
        found = records(path).into_iter().find(|r| pred(r));
        found.is_some()
    });
    assert!(
        ok,
        "no audit record {what} in {}:\n{}",
        path.display(),
        common::read(path)
    );
    found.expect("record")
}

fn is(r: &Value, program: &str, action: &str, trigger: &str) -> bool {
    r["program"] == program && r["action"] == action && r["trigger"] == trigger
}

fn pid_field(r: &Value, key: &str) -> Option<i32> {
    r[key].as_i64().and_then(|p| i32::try_from(p).ok())
}

fn record_time(r: &Value) -> DateTime<FixedOffset> {
    let text = r["time"].as_str().expect("time");
    DateTime::parse_from_rfc3339(text).unwrap_or_else(|e| panic!("time {text:?}: {e}"))
}

/// `usrsvc plan --json`, the row of `name`.
fn plan_row(t: &Env, name: &str) -> Value {
    let r = t.run(&["plan", "--json"]);
    r.expect_code(0);
    let rows: Value = serde_json::from_str(&r.stdout())
        .unwrap_or_else(|e| panic!("plan --json is not JSON ({e}):\n{}", r.stdout()));
    rows.as_array()
        .expect("an array")
        .iter()
        .find(|row| row["name"] == name)
        .unwrap_or_else(|| panic!("no row for {name}:\n{}", r.stdout()))
        .clone()
}

/// Whether `name`'s plan row has a `blocked_by` entry containing `text`.
fn plan_blocked_by(t: &Env, name: &str, text: &str) -> bool {
    plan_row(t, name)["blocked_by"]
        .as_array()
        .is_some_and(|bs| {
            bs.iter()
                .any(|b| b.as_str().is_some_and(|b| b.contains(text)))
        })
}

/// Watches for `limit` that `name` keeps running as `pid`, failing at the first change.
#[track_caller]
fn keeps_pid(t: &Env, name: &str, pid: i32, limit: Duration, why: &str) {
    let end = Instant::now() + limit;
    while Instant::now() < end {
        assert!(
            alive(pid) && t.pid_of(name) == Some(pid),
            "{name} (pid {pid}) was restarted or stopped although {why} (pidfile: {:?})",
            t.pid_of(name)
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn schedule_records(path: &Path, program: &str) -> Vec<Value> {
    records(path)
        .into_iter()
        .filter(|r| r["program"] == program && r["trigger"] == "schedule")
        .collect()
}

#[test]
fn restart_every_restarts_the_program_and_audits_it() {
    let t = Env::new();
    // No audit_log: the default, audit.log in the state directory ($USRSVC_RUNTIME_DIR).
    write_config(
        &t,
        "",
        &[t.program("p", &t.sleep(1), &format!("{STABLE}\nrestart_every = 2s"))],
    );
    let audit = t.path("run/audit.log");
    let d = t.daemon();
    let old = t.wait_running("p");
    d.expect_watching("p", old);

    let new = t.wait_new_pid("p", old);
    d.expect_log("p: planned restart (restart_every = 2s).");
    let r = wait_record(&audit, "of p's planned restart", |r| {
        is(r, "p", "restart", "schedule") && pid_field(r, "old_pid") == Some(old)
    });
    assert_eq!(r["result"], "ok", "{r}");
    assert_eq!(pid_field(&r, "new_pid"), Some(new), "{r}");
    assert!(
        r["reason"]
            .as_str()
            .is_some_and(|s| s.contains("restart_every")),
        "{r}"
    );
    d.expect_watching("p", new);

    let h = t.run(&["history", "p", "--json"]);
    h.expect_code(0);
    let shown: Vec<Value> = h
        .stdout()
        .lines()
        .map(|l| serde_json::from_str(l).expect("history --json line"))
        .collect();
    assert!(
        shown.iter().any(|s| is(s, "p", "restart", "schedule")
            && pid_field(s, "old_pid") == Some(old)
            && pid_field(s, "new_pid") == Some(new)
            && s["result"] == "ok"),
        "history --json:\n{}",
        h.stdout()
    );
}

/// A one-minute window 12 hours from now: on the weekday of that moment, so it never holds
/// the current local time, midnight or not.
fn window_far_from_now() -> String {
    let at = Local::now() + chrono::TimeDelta::hours(12);
    let start = at.hour() * 60 + at.minute();
    let end = start + 1;
    format!(
        "{} {:02}:{:02}-{:02}:{:02}",
        at.format("%a"),
        start / 60,
        start % 60,
        end / 60,
        end % 60
    )
}

#[test]
fn restart_outside_windows_is_held_back() {
    let t = Env::new();
    let window = window_far_from_now();
    write_config(
        &t,
        &audit_main(&t),
        &[t.program(
            "p",
            &t.sleep(1),
            &format!("{STABLE}\nrestart_every = 1s\nrestart_windows = {window}"),
        )],
    );
    let d = t.daemon();
    let pid = t.wait_running("p");
    d.expect_watching("p", pid);
    let since = Instant::now();
    // Due after 1 s; give it several times that.
    keeps_pid(
        &t,
        "p",
        pid,
        Duration::from_secs(5).saturating_sub(since.elapsed()),
        &format!("its window is {window}"),
    );
    assert!(
        schedule_records(&audit_path(&t), "p").is_empty(),
        "{}",
        common::read(&audit_path(&t))
    );
    assert_eq!(d.count("p: planned restart (restart_every = 1s)."), 0);

    // usrsvc plan says why.
    assert!(
        plan_blocked_by(&t, "p", "outside restart_windows"),
        "plan of p: {}",
        plan_row(&t, "p")
    );
    let plan = t.run(&["plan"]);
    plan.expect_code(0);
    assert!(
        plan.stdout()
            .contains("blocked: outside restart_windows until"),
        "{}",
        plan.stdout()
    );
}

#[test]
fn kill_switch_holds_planned_restarts_but_not_crash_restarts() {
    let t = Env::new();
    let switch = t.path("FREEZE");
    write_config(
        &t,
        &format!(
            "{}\nkill_switch_file = {}",
            audit_main(&t),
            switch.display()
        ),
        &[t.program("p", &t.sleep(1), &format!("{STABLE}\nrestart_every = 2s"))],
    );
    let audit = audit_path(&t);
    std::fs::write(&switch, "").expect("kill switch");
    let d = t.daemon();
    let pid = t.wait_running("p");
    d.expect_watching("p", pid);

    // Due after 2 s, held back.
    let held = d.expect_log("p: planned restart (restart_every = 2s) held back: the kill switch");
    assert!(
        held["msg"]
            .as_str()
            .is_some_and(|m| m.contains(&switch.display().to_string())),
        "{held}"
    );
    assert!(
        plan_blocked_by(&t, "p", "kill switch"),
        "{}",
        plan_row(&t, "p")
    );
    keeps_pid(
        &t,
        "p",
        pid,
        Duration::from_secs(3),
        "the kill switch is on",
    );
    assert!(
        schedule_records(&audit, "p").is_empty(),
        "{}",
        common::read(&audit)
    );

    // A crash is still restarted.
    kill9(pid);
    let pid2 = t.wait_new_pid("p", pid);
    d.expect_watching("p", pid2);
    let crash = wait_record(&audit, "of p's crash restart", |r| {
        r["program"] == "p" && r["trigger"] == "crash" && pid_field(r, "new_pid") == Some(pid2)
    });
    assert_eq!(crash["result"], "ok", "{crash}");

    // The CLI refuses without --force and names the file.
    let r = t.run(&["restart", "p"]);
    r.expect_code(139);
    assert!(
        r.stderr().contains(&switch.display().to_string()),
        "{}",
        r.all()
    );
    assert_eq!(t.pid_of("p"), Some(pid2));
    assert!(alive(pid2));

    t.run(&["restart", "p", "--force", "-r", "why"])
        .expect_code(0);
    let pid3 = t.wait_new_pid("p", pid2);
    let forced = wait_record(&audit, "of the forced restart", |r| {
        is(r, "p", "restart", "cli") && pid_field(r, "old_pid") == Some(pid2)
    });
    assert_eq!(pid_field(&forced, "new_pid"), Some(pid3), "{forced}");
    let reason = forced["reason"].as_str().unwrap_or_default();
    assert!(
        reason.contains("why") && reason.contains("kill switch"),
        "{forced}"
    );
    assert!(
        schedule_records(&audit, "p").is_empty(),
        "{}",
        common::read(&audit)
    );

    // Switch off: the planned restart goes ahead.
    std::fs::remove_file(&switch).expect("switch off");
    let planned = wait_record(&audit, "of a planned restart after the switch", |r| {
        is(r, "p", "restart", "schedule")
    });
    assert_eq!(planned["result"], "ok", "{planned}");
    assert_eq!(pid_field(&planned, "old_pid"), Some(pid3), "{planned}");
    t.wait_new_pid("p", pid3);
}

/// Programs a and b and group g of both with `group_keys`.
fn two_members(t: &Env, group_keys: &str) {
    write_config(
        t,
        &audit_main(t),
        &[
            t.program("a", &t.sleep(1), STABLE),
            t.program("b", &t.sleep(2), STABLE),
            format!("[Group:g]\nprograms = a, b\n{group_keys}\n"),
        ],
    );
}

const SEQUENCE: &str = "sequence = stop b, wait 2, restart a, start b";

/// The records the sequence `stop b, wait 2, restart a, start b` left, checked: in order,
/// with the group's trigger, the pause between b's stop and a's restart, and b started once
/// (by the sequence, not by the daemon in the pause).
fn check_sequence_records(audit: &Path, a: i32, b: i32) {
    let all = records(audit);
    let stop_at = all
        .iter()
        .position(|r| r["program"] == "b" && r["action"] == "stop")
        .unwrap_or_else(|| panic!("no stop of b:\n{}", common::read(audit)));
    // A group schedule may have begun the next round since: the first three records count.
    let after = &all[stop_at..];
    assert!(after.len() >= 3, "{}", common::read(audit));
    let after = &after[..3];
    let steps: Vec<(String, String, String)> = after
        .iter()
        .map(|r| {
            let s = |k: &str| r[k].as_str().unwrap_or_default().to_string();
            (s("program"), s("action"), s("trigger"))
        })
        .collect();
    let g = "group:g".to_string();
    assert_eq!(
        steps,
        vec![
            ("b".into(), "stop".into(), g.clone()),
            ("a".into(), "restart".into(), g.clone()),
            ("b".into(), "start".into(), g),
        ],
        "{}",
        common::read(audit)
    );
    for r in after {
        assert_eq!(r["result"], "ok", "{r}");
    }
    assert_eq!(pid_field(&after[0], "old_pid"), Some(b), "{}", after[0]);
    assert_eq!(pid_field(&after[1], "old_pid"), Some(a), "{}", after[1]);
    let pause = record_time(&after[1]) - record_time(&after[0]);
    assert!(
        pause.num_milliseconds() >= 2000,
        "b's stop to a's restart took {} ms, the sequence waits 2 s",
        pause.num_milliseconds()
    );
}

#[test]
fn group_sequence_runs_in_order_with_its_pause() {
    let t = Env::new();
    two_members(&t, SEQUENCE);
    let audit = audit_path(&t);
    let d = t.daemon();
    let a = t.wait_running("a");
    let b = t.wait_running("b");
    d.expect_watching("a", a);
    d.expect_watching("b", b);

    let r = t.run(&["restart", "g", "-r", "test"]);
    r.expect_code(0);
    check_sequence_records(&audit, a, b);
    let all = records(&audit);
    assert!(
        all.iter()
            .filter(|r| r["trigger"] == "group:g")
            .all(|r| r["reason"] == "test"),
        "{}",
        common::read(&audit)
    );
    // The daemon saw b go down in the pause and left it to the sequence (the group's lock).
    d.expect_log(&format!("b (pid {b}) exited"));
    let a2 = t.wait_new_pid("a", a);
    let b2 = t.wait_new_pid("b", b);
    d.expect_watching("a", a2);
    d.expect_watching("b", b2);
    assert!(
        !records(&audit).iter().any(|r| r["trigger"] == "crash"),
        "{}",
        common::read(&audit)
    );
}

#[test]
fn a_sequence_that_fails_half_way_leaves_the_daemon_to_restart_what_it_stopped() {
    let t = Env::new();
    // a refuses to come back while HOME/broken exists.
    let broken = t.path("broken");
    let script = t.script(
        "a.sh",
        &format!(
            "#!/bin/sh\n[ -e {} ] && exit 3\n{}\n",
            broken.display(),
            t.sleep(1)
        ),
    );
    write_config(
        &t,
        &audit_main(&t),
        &[
            t.program("a", &script.display().to_string(), STABLE),
            t.program("b", &t.sleep(2), STABLE),
            "[Group:g]\nprograms = a, b\nsequence = stop b, restart a, start b\n".to_string(),
        ],
    );
    let audit = audit_path(&t);
    let d = t.daemon();
    let a = t.wait_running("a");
    let b = t.wait_running("b");
    d.expect_watching("b", b);
    std::fs::write(&broken, "").expect("break a");

    t.run(&["restart", "g", "-r", "upgrade"]).expect_code(137);
    assert!(
        !t.path("run/stopped.b").exists(),
        "a stop step is no operator's stop of b"
    );
    // The sequence is over and its lock gone: the daemon brings b back.
    let b2 = t.wait_new_pid("b", b);
    d.expect_watching("b", b2);
    let back = wait_record(&audit, "of b's restart by the daemon", |r| {
        r["program"] == "b" && r["action"] == "start" && r["trigger"] == "crash"
    });
    assert_eq!(back["result"], "ok", "{back}");
    assert!(!alive(a), "a was stopped by its restart step");

    // `usrsvc stop GROUP` is an operator's stop of every member: the daemon leaves them.
    std::fs::remove_file(&broken).expect("mend a");
    t.run(&["start", "g"]).expect_code(0);
    t.run(&["stop", "g"]).expect_code(0);
    assert!(t.path("run/stopped.a").exists() && t.path("run/stopped.b").exists());
}

#[test]
fn group_schedule_runs_the_sequence_under_the_daemon() {
    let t = Env::new();
    two_members(&t, &format!("{SEQUENCE}\nrestart_every = 2s"));
    let audit = audit_path(&t);
    let d = t.daemon();
    let a = t.wait_running("a");
    let b = t.wait_running("b");
    d.expect_watching("a", a);
    d.expect_watching("b", b);

    d.expect_log("group g: planned restart (restart_every = 2s).");
    d.expect_log("group g: planned restart done.");
    check_sequence_records(&audit, a, b);
    // The daemon saw b go down in the pause and left it to the sequence (the group's lock).
    d.expect_log(&format!("b (pid {b}) exited"));
    let start_b = wait_record(&audit, "of b's start", |r| is(r, "b", "start", "group:g"));
    assert!(
        start_b["reason"]
            .as_str()
            .is_some_and(|s| s.contains("restart_every")),
        "{start_b}"
    );
    assert!(
        !records(&audit).iter().any(|r| r["trigger"] == "crash"),
        "{}",
        common::read(&audit)
    );
}

#[test]
fn min_ok_holds_a_planned_restart_back_until_enough_members_are_up() {
    let t = Env::new();
    write_config(
        &t,
        &audit_main(&t),
        &[
            t.program("a", &t.sleep(1), &format!("{STABLE}\nrestart_every = 2s")),
            t.program("b", &t.sleep(2), STABLE),
            "[Group:g]\nprograms = a, b\nmin_ok = 1\n".to_string(),
        ],
    );
    let audit = audit_path(&t);
    // b is down (stopped by the operator) before any daemon could restart a: no race with
    // a's schedule. The daemon adopts a, whose age counts from its real start.
    t.run(&["start", "a"]).expect_code(0);
    t.run(&["start", "b"]).expect_code(0);
    let a = t.wait_running("a");
    let b = t.wait_running("b");
    t.run(&["stop", "b"]).expect_code(0);
    assert!(wait_for(LONG, || !alive(b)), "b still runs");
    let d = t.daemon();
    d.expect_watching("a", a);
    d.expect_log("b is not running: stopped by the operator");

    let held = d.expect_log("a: planned restart (restart_every = 2s) held back: min_ok = 1");
    assert!(
        held["msg"].as_str().is_some_and(|m| m.contains("group g")),
        "{held}"
    );
    assert!(
        plan_blocked_by(&t, "a", "min_ok = 1"),
        "{}",
        plan_row(&t, "a")
    );
    keeps_pid(
        &t,
        "a",
        a,
        Duration::from_secs(3),
        "b is down and min_ok = 1",
    );
    assert!(
        schedule_records(&audit, "a").is_empty(),
        "{}",
        common::read(&audit)
    );

    t.run(&["start", "b"]).expect_code(0);
    let b2 = t.wait_running("b");
    d.expect_watching("b", b2);
    let a2 = t.wait_new_pid("a", a);
    let r = wait_record(&audit, "of a's planned restart", |r| {
        is(r, "a", "restart", "schedule")
    });
    assert_eq!(
        (pid_field(&r, "old_pid"), r["result"].as_str()),
        (Some(a), Some("ok")),
        "{r}"
    );
    assert_eq!(pid_field(&r, "new_pid"), Some(a2), "{r}");
    assert!(alive(b2), "b must stay up");
}

#[test]
fn group_verbs_start_in_order_stop_in_reverse_and_show_each_member() {
    let t = Env::new();
    write_config(
        &t,
        &audit_main(&t),
        &[
            t.program("a", &t.sleep(1), ""),
            t.program("b", &t.sleep(2), ""),
            t.program("c", &t.sleep(3), ""),
            "[Group:g]\nprograms = a, b, c\n".to_string(),
        ],
    );
    let audit = audit_path(&t);
    let acts = |action: &str| -> Vec<String> {
        records(&audit)
            .iter()
            .filter(|r| r["action"] == action)
            .map(|r| {
                assert_eq!(r["trigger"], "group:g", "{r}");
                assert_eq!(r["result"], "ok", "{r}");
                r["program"].as_str().unwrap_or_default().to_string()
            })
            .collect()
    };

    t.run(&["start", "g"]).expect_code(0);
    assert_eq!(acts("start"), ["a", "b", "c"], "{}", common::read(&audit));
    let pids: Vec<i32> = ["a", "b", "c"].iter().map(|m| t.wait_running(m)).collect();

    let s = t.run(&["status", "g"]);
    s.expect_code(0);
    let out = s.all();
    let at = |text: &str| {
        out.find(text)
            .unwrap_or_else(|| panic!("status g does not say {text:?}:\n{out}"))
    };
    let mut last = 0;
    for (m, pid) in ["a", "b", "c"].iter().zip(&pids) {
        let here = at(&format!("{m} is running:"));
        assert!(here >= last, "status g: members out of order:\n{out}");
        assert!(
            out[here..].contains(&format!("'pid': {pid}")),
            "status g: {m}'s pid {pid}:\n{out}"
        );
        last = here;
    }

    t.run(&["stop", "g"]).expect_code(0);
    assert_eq!(acts("stop"), ["c", "b", "a"], "{}", common::read(&audit));
    for pid in pids {
        assert!(wait_for(LONG, || !alive(pid)), "pid {pid} still runs");
    }
    let s = t.run(&["status", "g"]);
    s.expect_code(1);
    for m in ["a", "b", "c"] {
        assert!(
            s.all().contains(&format!("{m} is NOT running")),
            "{}",
            s.all()
        );
    }
}

#[test]
fn plan_shows_the_next_restart_at_and_no_schedule() {
    let t = Env::new();
    // Two hours ahead, on the minute: the first restart_at occurrence after the start.
    let now = Local::now();
    let target = (now + chrono::TimeDelta::hours(2))
        .with_second(0)
        .and_then(|d| d.with_nanosecond(0))
        .expect("a time on the minute");
    let hhmm = target.format("%H:%M").to_string();
    write_config(
        &t,
        &audit_main(&t),
        &[
            t.program("p", &t.sleep(1), &format!("restart_at = {hhmm}")),
            t.program("q", &t.sleep(2), ""),
        ],
    );
    let d = t.daemon();
    let p = t.wait_running("p");
    let q = t.wait_running("q");
    d.expect_watching("p", p);
    d.expect_watching("q", q);

    let row = plan_row(&t, "p");
    let next = row["next_restart"].as_str().unwrap_or_default().to_string();
    let parsed = DateTime::parse_from_rfc3339(&next)
        .unwrap_or_else(|e| panic!("next_restart {next:?}: {e}\n{row}"));
    assert_eq!(parsed, target, "{row}");
    assert_eq!(row["why"], format!("restart_at = {hhmm}"), "{row}");
    assert_eq!(row["blocked_by"], serde_json::json!([]), "{row}");
    let row = plan_row(&t, "q");
    assert_eq!(row["next_restart"], Value::Null, "{row}");
    assert_eq!(row["blocked_by"], serde_json::json!([]), "{row}");

    let human = t.run(&["plan"]);
    human.expect_code(0);
    let out = human.stdout();
    let line = |name: &str| {
        out.lines()
            .find(|l| l.split_whitespace().nth(1) == Some(name))
            .unwrap_or_else(|| panic!("no line for {name}:\n{out}"))
            .to_string()
    };
    assert!(line("p").contains(&next), "{out}");
    assert!(line("p").contains(&format!("restart_at = {hhmm}")), "{out}");
    assert!(line("q").contains("no schedule"), "{out}");
}

#[test]
fn a_group_sequence_that_leaves_a_member_alone_is_not_restarted_in_a_loop() {
    let t = Env::new();
    // a is in no step: it keeps its age, which must not count as the group's.
    write_config(
        &t,
        &audit_main(&t),
        &[
            t.program("a", &t.sleep(1), STABLE),
            t.program("b", &t.sleep(2), STABLE),
            "[Group:g]\nprograms = a, b\nsequence = restart b\nrestart_every = 3s\n".to_string(),
        ],
    );
    let audit = audit_path(&t);
    let d = t.daemon();
    let a = t.wait_running("a");
    d.expect_watching("a", a);
    d.expect_log("group g: planned restart done.");
    std::thread::sleep(Duration::from_secs(2));
    let restarts = records(&audit)
        .into_iter()
        .filter(|r| is(r, "b", "restart", "group:g"))
        .count();
    assert_eq!(
        restarts,
        1,
        "b restarted {restarts} times in ~2 s:\n{}",
        d.dump()
    );
    assert_eq!(t.pid_of("a"), Some(a));
}

#[test]
fn a_running_program_stopped_by_the_operator_is_held_not_restarted_in_a_loop() {
    let t = Env::new();
    write_config(
        &t,
        &audit_main(&t),
        &[t.program("p", &t.sleep(1), &format!("{STABLE}\nrestart_every = 2s"))],
    );
    let d = t.daemon();
    let old = t.wait_running("p");
    d.expect_watching("p", old);
    t.run(&["stop", "p"]).expect_code(0);
    // Started by hand after the stop, pidfile and all: the daemon adopts it, overdue.
    let mut child = std::process::Command::new("sleep")
        .arg(t.sleep(1).trim_start_matches("sleep "))
        .spawn()
        .expect("sleep");
    let pid = child.id() as i32;
    t.track(pid);
    std::fs::write(t.path("pids/p.pid"), format!("{pid}\n")).expect("pidfile");
    // Adopted by the daemon's look at the pidfile of a program that is down.
    d.expect_log("held back: it was stopped by the operator");
    std::thread::sleep(Duration::from_secs(1));
    assert!(
        d.count("p: planned restart (restart_every = 2s).") == 0,
        "planned restarts of an operator-stopped program:\n{}",
        d.dump()
    );
    assert!(alive(pid));
    let _ = child.kill();
    let _ = child.wait();
}

#[test]
fn a_daemon_restart_meant_for_a_process_that_was_replaced_does_nothing() {
    let t = Env::new();
    write_config(&t, &audit_main(&t), &[t.program("p", &t.sleep(1), STABLE)]);
    t.run(&["start", "p"]).expect_code(0);
    let pid = t.pid_of("p").expect("started");
    let ticks = common::stat_field(pid, 22).expect("start ticks");
    let config = usrsvc::config::load(&t.path("usrsvc.cfg"), &t.home).expect("config");
    let json = serde_json::to_string(&config).expect("json");
    // What the daemon runs for a planned restart, as if an operator's restart had come first:
    // the process it was meant for is no longer the one running.
    let worker = |expect: &str| {
        let mut cmd = t.command(
            "usrsvcd",
            &[
                "--worker",
                "restart",
                "--trigger=schedule",
                expect,
                "--",
                "p",
            ],
        );
        cmd.stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped());
        let mut child = cmd.spawn().expect("worker");
        std::io::Write::write_all(&mut child.stdin.take().expect("stdin"), json.as_bytes())
            .expect("config to the worker");
        common::expect_exit(child, 0)
    };
    let stale = format!(
        "--expect={pid}:{}",
        ticks.parse::<u64>().expect("ticks") + 1
    );
    let out = worker(&stale);
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("not restarted")
            || String::from_utf8_lossy(&out.stdout).contains("not restarted"),
        "{out:?}"
    );
    assert_eq!(
        t.pid_of("p"),
        Some(pid),
        "the running process was left alone"
    );
    assert!(alive(pid));
    assert!(schedule_records(&audit_path(&t), "p").is_empty());

    worker(&format!("--expect={pid}:{ticks}"));
    let new = t.pid_of("p").expect("restarted");
    assert_ne!(new, pid, "the restart was for this very process");
    assert_eq!(schedule_records(&audit_path(&t), "p").len(), 1);
}
