//! The audit trail and the guard rails as `usrsvc` users meet them: `--reason` and
//! `require_reason`, the kill switch and `--force`, one whole JSON line per action even from 20
//! concurrent commands, RFC 5424 records on a syslog listener, `history`, and `signal`.

mod common;

use std::net::UdpSocket;
use std::time::Duration;

use common::{alive, wait_for, Env};
use serde_json::Value;

const LONG: Duration = Duration::from_secs(30);

/// The audit records written so far (default place: `audit.log` in the runtime directory).
fn audit(t: &Env) -> Vec<Value> {
    let text = std::fs::read_to_string(t.path("run/audit.log")).unwrap_or_default();
    text.lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l:?}")))
        .collect()
}

fn main_with(t: &Env, main: &str, programs: &[String]) {
    t.config(&format!("[Main]\n{main}\n\n{}", programs.join("\n")));
}

#[test]
fn require_reason_refuses_to_act_without_one_and_the_reason_is_recorded() {
    let t = Env::new();
    main_with(
        &t,
        "require_reason = true",
        &[t.program("p", &t.sleep(1), "")],
    );

    let r = t.run(&["start", "p"]);
    r.expect_code(140);
    assert!(
        r.stderr().contains("a reason is required"),
        "{}",
        r.stderr()
    );
    assert!(r.stderr().contains("--reason"), "{}", r.stderr());
    assert_eq!(t.pid_of("p"), None, "nothing was started");
    assert!(audit(&t).is_empty(), "a refusal is no action");
    // A blank reason is no reason.
    t.run(&["start", "p", "-r", "  "]).expect_code(140);
    // Looking needs no reason.
    t.run(&["status", "p"]).expect_code(1);

    t.run(&["start", "p", "--reason", "deploy 1.2 (JIRA-7)"])
        .expect_code(0);
    let pid = t.pid_of("p").expect("started");
    t.run(&["stop", "p", "-r", "maintenance"]).expect_code(0);

    let records = audit(&t);
    assert_eq!(records.len(), 2, "{records:?}");
    let start = &records[0];
    assert_eq!(start["program"], "p");
    assert_eq!(start["action"], "start");
    assert_eq!(start["trigger"], "cli");
    assert_eq!(start["reason"], "deploy 1.2 (JIRA-7)");
    assert_eq!(start["result"], "ok");
    assert_eq!(start["old_pid"], Value::Null);
    assert_eq!(start["new_pid"], pid);
    assert_eq!(start["uid"], nix::unistd::getuid().as_raw());
    let time = start["time"].as_str().expect("time");
    chrono::DateTime::parse_from_rfc3339(time).expect("RFC 3339 with offset");
    let stop = &records[1];
    assert_eq!(
        (
            &stop["action"],
            &stop["reason"],
            &stop["old_pid"],
            &stop["new_pid"]
        ),
        (
            &Value::from("stop"),
            &Value::from("maintenance"),
            &Value::from(pid),
            &Value::Null
        )
    );
}

#[test]
fn twenty_concurrent_restarts_leave_twenty_whole_records_in_a_chain() {
    let t = Env::new();
    t.programs(&[t.program("p", &t.sleep(2), "success_seconds = 0.1")]);
    t.run(&["start", "p"]).expect_code(0);
    let first = t.pid_of("p").expect("started");
    // Long reasons make a torn write visible.
    let children: Vec<_> = (0..20)
        .map(|i| {
            let reason = format!("r{i:02} {}", "x".repeat(2000));
            t.spawn(&["restart", "p", "-r", &reason])
        })
        .collect();
    for c in children {
        common::expect_exit(c, 0);
    }
    let records = audit(&t);
    assert_eq!(records.len(), 21, "one start and 20 restarts");
    let restarts: Vec<&Value> = records
        .iter()
        .filter(|r| r["action"] == "restart")
        .collect();
    assert_eq!(restarts.len(), 20);
    let mut reasons: Vec<String> = restarts
        .iter()
        .map(|r| r["reason"].as_str().expect("reason")[..3].to_string())
        .collect();
    reasons.sort();
    let want: Vec<String> = (0..20).map(|i| format!("r{i:02}")).collect();
    assert_eq!(reasons, want);
    // The restarts ran one after the other under the lock: each stopped the previous one's
    // process.
    let mut pid = Value::from(first);
    for r in &restarts {
        assert_eq!(r["result"], "ok");
        assert_eq!(r["old_pid"], pid, "{r}");
        pid = r["new_pid"].clone();
    }
    assert_eq!(pid, Value::from(t.pid_of("p").expect("running")));
}

/// A strict reading of one RFC 5424 message: `<PRI>1 TIMESTAMP HOST APP PROCID MSGID SD MSG`.
fn rfc5424(raw: &[u8]) -> (u8, Vec<String>, Value) {
    let text = std::str::from_utf8(raw).expect("UTF-8");
    let rest = text.strip_prefix('<').expect("<PRI>");
    let (pri, rest) = rest.split_once('>').expect("PRI>");
    let pri: u8 = pri.parse().expect("PRI number");
    let rest = rest.strip_prefix("1 ").expect("VERSION 1");
    let mut fields = rest.splitn(6, ' ');
    let header: Vec<String> = (0..5)
        .map(|_| fields.next().expect("header field").to_string())
        .collect();
    chrono::DateTime::parse_from_rfc3339(&header[0]).expect("TIMESTAMP is RFC 3339");
    let rest = fields.next().expect("SD and MSG");
    // One SD element: quoted values may hold ']' only escaped.
    assert!(rest.starts_with('['), "SD element expected: {rest}");
    let mut end = None;
    let mut escaped = false;
    let mut quoted = false;
    for (i, c) in rest.char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' => escaped = true,
            '"' => quoted = !quoted,
            ']' if !quoted => {
                end = Some(i);
                break;
            }
            _ => {}
        }
    }
    let end = end.expect("SD element closed");
    let msg = rest[end + 1..].strip_prefix(' ').expect("SP before MSG");
    let json = msg
        .strip_prefix('\u{feff}')
        .expect("MSG starts with the UTF-8 BOM");
    (
        pri,
        header,
        serde_json::from_str(json).expect("MSG is the JSON record"),
    )
}

#[test]
fn records_reach_a_udp_syslog_listener_as_rfc5424() {
    let t = Env::new();
    let listener = UdpSocket::bind("127.0.0.1:0").expect("bind");
    listener.set_read_timeout(Some(LONG)).expect("timeout");
    let port = listener.local_addr().expect("addr").port();
    main_with(
        &t,
        &format!("audit_syslog = udp://127.0.0.1:{port}"),
        &[t.program("p", &t.sleep(3), "")],
    );
    t.run(&["start", "p", "-r", "syslog \"quoted\" ]"])
        .expect_code(0);
    let mut buf = vec![0u8; 65536];
    let n = listener.recv(&mut buf).expect("a datagram within 30 s");
    let (pri, header, record) = rfc5424(&buf[..n]);
    assert_eq!(pri, 3 * 8 + 5, "daemon.notice");
    assert_eq!(header[2], "usrsvc", "APP-NAME");
    assert_eq!(header[4], "audit", "MSGID");
    assert_eq!(record["program"], "p");
    assert_eq!(record["action"], "start");
    assert_eq!(record["reason"], "syslog \"quoted\" ]");
    assert_eq!(record["new_pid"], t.pid_of("p").expect("running"));
    // The local log has the same record.
    assert_eq!(audit(&t), vec![record]);
}

#[test]
fn an_unreachable_syslog_neither_stops_the_action_nor_loses_the_record() {
    let t = Env::new();
    // Bound, never listening: refused for as long as the test holds it.
    let refusing = common::net::RefusingPort::new();
    let port = refusing.port;
    main_with(
        &t,
        &format!("audit_syslog = tcp://127.0.0.1:{port}"),
        &[t.program("p", &t.sleep(4), "")],
    );
    let r = t.run(&["start", "p"]);
    r.expect_code(0);
    assert!(
        r.stderr().contains("audit"),
        "the failure is said: {}",
        r.stderr()
    );
    assert!(
        r.stderr().contains(&format!("127.0.0.1:{port}")),
        "{}",
        r.stderr()
    );
    assert!(alive(t.pid_of("p").expect("started")));
    assert_eq!(audit(&t).len(), 1);
}

#[test]
fn the_kill_switch_refuses_start_stop_restart_unless_forced() {
    let t = Env::new();
    let switch = t.path("FREEZE");
    main_with(
        &t,
        &format!("kill_switch_file = {}", switch.display()),
        &[t.program("p", &t.sleep(5), "")],
    );
    t.run(&["start", "p"]).expect_code(0);
    let pid = t.pid_of("p").expect("started");
    std::fs::write(&switch, "incident 42\n").expect("switch on");

    for verb in ["stop", "restart", "start"] {
        let r = t.run(&[verb, "p"]);
        r.expect_code(139);
        assert!(r.stderr().contains("kill switch"), "{}", r.stderr());
        assert!(
            r.stderr().contains(&switch.display().to_string()),
            "{}",
            r.stderr()
        );
    }
    assert!(alive(pid), "nothing was touched");
    assert_eq!(t.pid_of("p"), Some(pid));
    // Looking is allowed.
    t.run(&["status", "p"]).expect_code(0);

    t.run(&["restart", "p", "--force", "-r", "hotfix"])
        .expect_code(0);
    let new = t.pid_of("p").expect("restarted");
    assert_ne!(new, pid);
    let last = audit(&t).pop().expect("record");
    assert_eq!(last["action"], "restart");
    assert_eq!(last["reason"], "hotfix (forced past the kill switch)");

    std::fs::remove_file(&switch).expect("switch off");
    t.run(&["stop", "p"]).expect_code(0);
    assert!(wait_for(LONG, || !alive(new)));
}

#[test]
fn history_prints_the_trail_filtered_and_limited() {
    let t = Env::new();
    t.programs(&[
        t.program("a", &t.sleep(6), ""),
        t.program("b", &t.sleep(7), ""),
    ]);
    t.run(&["history"]).expect_code(0);
    t.run(&["start", "a", "-r", "one"]).expect_code(0);
    t.run(&["start", "b"]).expect_code(0);
    t.run(&["restart", "a", "-r", "two"]).expect_code(0);
    t.run(&["stop", "b"]).expect_code(0);

    let r = t.run(&["history"]);
    r.expect_code(0);
    let out = r.stdout();
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 4, "{}", r.stdout());
    assert!(
        lines[2].contains("restart") && lines[2].contains("two"),
        "{}",
        lines[2]
    );

    let r = t.run(&["history", "a", "-n", "1", "--json"]);
    r.expect_code(0);
    let records: Vec<Value> = r
        .stdout()
        .lines()
        .map(|l| serde_json::from_str(l).expect("JSON line"))
        .collect();
    assert_eq!(records.len(), 1);
    assert_eq!(records[0]["action"], "restart");
    assert_eq!(records[0]["reason"], "two");

    // Garbage in the file is skipped with a warning, never a crash.
    let log = t.path("run/audit.log");
    let mut text = std::fs::read_to_string(&log).expect("log");
    text.push_str("not a record\n");
    std::fs::write(&log, text).expect("write");
    let r = t.run(&["history", "b"]);
    r.expect_code(0);
    assert_eq!(r.stdout().lines().count(), 2);
    assert!(r.stderr().contains("skipped"), "{}", r.stderr());
}

#[test]
fn signal_reaches_the_identified_process_only_and_is_audited() {
    let t = Env::new();
    let got = t.path("got-usr1");
    let script = t.script(
        "trap.sh",
        &format!(
            "#!/bin/sh\ntrap 'echo usr1 > {}' USR1\nwhile :; do {} & wait $!; done\n",
            got.display(),
            t.sleep(8)
        ),
    );
    t.programs(&[t.program("p", &script.display().to_string(), "")]);
    t.run(&["start", "p"]).expect_code(0);
    let pid = t.pid_of("p").expect("started");

    let r = t.run(&["signal", "p", "USR1", "-r", "thread dump"]);
    r.expect_code(0);
    assert!(
        r.stdout().contains(&format!("Sent SIGUSR1 to p [{pid}]")),
        "{}",
        r.stdout()
    );
    assert!(wait_for(LONG, || got.exists()), "the trap ran");
    assert!(alive(pid));
    let last = audit(&t).pop().expect("record");
    assert_eq!(
        (&last["action"], &last["reason"], &last["old_pid"]),
        (
            &Value::from("signal:USR1"),
            &Value::from("thread dump"),
            &Value::from(pid)
        )
    );

    t.run(&["signal", "p", "NOSUCHSIG"]).expect_code(131);
    t.run(&["signal", "nope", "USR1"]).expect_code(133);

    // A pidfile naming a process that is not the program: nothing is sent to it.
    t.run(&["stop", "p"]).expect_code(0);
    let mut other = std::process::Command::new("sleep")
        .arg(format!("{}9", t.marker))
        .spawn()
        .expect("spawn");
    t.track(other.id() as i32);
    std::fs::write(t.path("pids/p.pid"), other.id().to_string()).expect("pidfile");
    let r = t.run(&["signal", "p", "TERM"]);
    r.expect_code(1);
    assert!(r.stderr().contains("NOT running"), "{}", r.stderr());
    assert!(alive(other.id() as i32), "the stranger was not signalled");
    let _ = other.kill();
    let _ = other.wait();
    assert_eq!(audit(&t).pop().expect("record")["result"], "not running");
}

#[test]
fn a_group_may_carry_a_programs_name_and_program_colon_picks_the_program() {
    let t = Env::new();
    t.config(&format!(
        "[Main]\n\n{}\n{}\n[Group:xrootd]\nprograms = cmsd, xrootd\n",
        t.program("cmsd", &t.sleep(10), ""),
        t.program("xrootd", &t.sleep(11), "")
    ));
    t.run(&["start", "xrootd", "-r", "both"]).expect_code(0);
    let records = audit(&t);
    let order: Vec<(&str, &str, &str)> = records
        .iter()
        .map(|r| {
            (
                r["program"].as_str().unwrap_or("?"),
                r["action"].as_str().unwrap_or("?"),
                r["trigger"].as_str().unwrap_or("?"),
            )
        })
        .collect();
    assert_eq!(
        order,
        [
            ("cmsd", "start", "group:xrootd"),
            ("xrootd", "start", "group:xrootd")
        ]
    );
    let cmsd = t.pid_of("cmsd").expect("cmsd started");

    t.run(&["stop", "program:xrootd"]).expect_code(0);
    assert_eq!(t.pid_of("xrootd"), None, "the program alone was stopped");
    assert!(alive(cmsd), "not its group");
    let r = t.run(&["status", "group:xrootd"]);
    r.expect_code(1);
    assert!(r.stdout().contains("cmsd is running"), "{}", r.stdout());
    assert!(
        r.stderr().contains("xrootd is NOT running"),
        "{}",
        r.stderr()
    );

    // stop GROUP goes in reverse order.
    t.run(&["start", "xrootd"]).expect_code(0);
    t.run(&["stop", "xrootd"]).expect_code(0);
    let tail: Vec<String> = audit(&t)
        .iter()
        .rev()
        .take(2)
        .map(|r| {
            format!(
                "{} {}",
                r["action"].as_str().unwrap_or("?"),
                r["program"].as_str().unwrap_or("?")
            )
        })
        .collect();
    assert_eq!(
        tail,
        ["stop cmsd", "stop xrootd"],
        "newest first: xrootd stopped before cmsd"
    );
    t.run(&["status", "group:nope"]).expect_code(133);

    // program:NAME names the program for signal, repair and history too.
    t.run(&["signal", "program:cmsd", "USR2"]).expect_code(1);
    let r = t.run(&["history", "program:xrootd"]);
    r.expect_code(0);
    assert!(r.stdout().contains("xrootd  stop"), "{}", r.stdout());
    let r = t.run(&["repair", "program:xrootd"]);
    r.expect_code(1);
    assert!(r.stderr().contains("no health check"), "{}", r.stderr());
}

#[test]
fn members_of_a_group_or_all_keep_the_reason_as_given_once_forced() {
    let t = Env::new();
    let switch = t.path("FREEZE");
    t.config(&format!(
        "[Main]\nkill_switch_file = {}\n\n{}\n{}\n[Group:g]\nprograms = a, b\n",
        switch.display(),
        t.program("a", &t.sleep(12), ""),
        t.program("b", &t.sleep(13), "")
    ));
    // A reason that starts with '-' reaches the members' commands as a reason, not a flag.
    t.run(&["start", "g", "--reason=-x hotfix"]).expect_code(0);
    std::fs::write(&switch, "").expect("switch on");
    // The members pass the guard again: the mark is added once.
    t.run(&["restart", "all", "--force", "-r", "deploy"])
        .expect_code(0);
    t.run(&["stop", "g", "--force"]).expect_code(0);
    let reasons: Vec<(String, String)> = audit(&t)
        .iter()
        .map(|r| {
            (
                r["action"].as_str().unwrap_or("?").to_string(),
                r["reason"].as_str().unwrap_or("?").to_string(),
            )
        })
        .collect();
    let want = |action: &str, reason: &str| (action.to_string(), reason.to_string());
    assert_eq!(
        reasons,
        [
            want("start", "-x hotfix"),
            want("start", "-x hotfix"),
            want("restart", "deploy (forced past the kill switch)"),
            want("restart", "deploy (forced past the kill switch)"),
            want("stop", "forced past the kill switch"),
            want("stop", "forced past the kill switch"),
        ]
    );
}

/// A 120 KB reason is cut so that the record stays one small line (one `write`), marked as
/// truncated; a partial line glued to the next record (a writer killed mid-record) costs only
/// itself: `history` recovers the record after it, and says on stderr what it skipped, in
/// `--json` mode too, with nothing but records on stdout.
#[test]
fn a_huge_reason_is_bounded_and_history_counts_damaged_lines() {
    let t = Env::new();
    t.programs(&[t.program("p", &t.sleep(1), "")]);
    let reason = "r".repeat(120_000);
    t.run(&["start", "p", "--reason", &reason]).expect_code(0);
    let text = std::fs::read_to_string(t.path("run/audit.log")).expect("log");
    let line = text.lines().next().expect("one record");
    assert!(
        line.len() < usrsvc::audit::MAX_RECORD,
        "{} bytes",
        line.len()
    );
    let record: Value = serde_json::from_str(line).expect("JSON");
    assert_eq!(record["truncated"], true);
    let kept = record["reason"].as_str().expect("reason");
    assert!(
        kept.starts_with("rrrr") && kept.ends_with("…[truncated]"),
        "{kept}"
    );

    // A partial record glued to the next one.
    let log = t.path("run/audit.log");
    let half = &line[..line.len() / 2];
    std::fs::write(&log, format!("{line}\n{half}{line}\nnot a record\n")).expect("write");
    let r = t.run(&["history", "p", "--json"]);
    r.expect_code(0);
    let records: Vec<Value> = r
        .stdout()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    assert_eq!(records.len(), 2, "{}", r.stdout());
    assert!(
        r.stderr().contains("skipped 2 damaged lines"),
        "{}",
        r.stderr()
    );
    t.run(&["stop", "p"]).expect_code(0);
}

/// `history`, `plan`, `status --json`, `checkhealth`-style listings and `--help` write to a
/// closed pipe (`usrsvc history | head -1`) or a full disk without a panic (exit 101): the
/// output is lost, the command's own exit code stands.
#[test]
fn output_to_a_closed_pipe_or_a_full_disk_is_no_panic() {
    let t = Env::new();
    let cmd = t.sleep(1);
    t.programs(&[t.program("piped", &cmd, "")]);
    // An audit record, so that history has lines to write.
    t.run(&["stop", "piped"]).expect_code(0);
    let verbs: [&[&str]; 5] = [
        &["history"],
        &["history", "--json"],
        &["plan"],
        &["status", "piped", "--json"],
        &["--help"],
    ];
    for args in verbs {
        let full = std::fs::File::create("/dev/full").expect("/dev/full");
        let out = t
            .command("usrsvc", args)
            .stdout(full)
            .output()
            .expect("run");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            out.status.code() != Some(101) && !err.contains("panicked"),
            "{args:?} to /dev/full: {:?} {err}",
            out.status
        );
        let mut child = t
            .command("usrsvc", args)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("spawn");
        drop(child.stdout.take());
        let out = child.wait_with_output().expect("wait");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            out.status.code() != Some(101) && !err.contains("panicked"),
            "{args:?} to a closed pipe: {:?} {err}",
            out.status
        );
    }
}
