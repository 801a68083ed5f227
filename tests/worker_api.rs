//! The control API's client side without the server: the daemon's worker doing what an API
//! request asks (`usrsvcd --worker ACTION --caller=… -- NAME`, config as JSON on stdin), and
//! `usrsvc --user` / `usrsvc events` against a fake daemon socket served by the test.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixListener;
use std::path::Path;
use std::process::Stdio;

use common::{alive, Env};
use serde_json::{json, Value};

fn audit(t: &Env) -> Vec<Value> {
    let path = t.path("audit.log");
    let text = std::fs::read_to_string(path).unwrap_or_default();
    text.lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect()
}

fn setup(t: &Env, sections: &[String], groups: &str) -> String {
    t.config(&format!(
        "[Main]\naudit_log = {}\n\n{}\n{groups}",
        t.path("audit.log").display(),
        sections.join("\n")
    ));
    let config = usrsvc::config::load(&t.path("usrsvc.cfg"), &t.home).expect("config");
    serde_json::to_string(&config).expect("json")
}

/// Runs `usrsvcd --worker ARGS` with `json` on stdin; (exit code, stdout+stderr).
fn worker(t: &Env, args: &[&str], json: &str) -> (i32, String) {
    let mut cmd = t.command("usrsvcd", args);
    cmd.stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("worker");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(json.as_bytes())
        .expect("config to the worker");
    let out = child.wait_with_output().expect("wait");
    (
        out.status.code().unwrap_or(-1),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

fn stopped_mark(t: &Env, name: &str) -> bool {
    std::fs::read_dir(t.path("run"))
        .into_iter()
        .flatten()
        .flatten()
        .any(|e| {
            let n = e.file_name().to_string_lossy().into_owned();
            n.starts_with("stopped.") && n.contains(name)
        })
}

#[test]
fn a_delegated_stop_marks_the_program_stopped_and_records_the_caller() {
    let t = Env::new();
    let json = setup(&t, &[t.program("wa_stop", &t.sleep(1), "")], "");
    t.run(&["start", "wa_stop"]).expect_code(0);
    let pid = t.pid_of("wa_stop").expect("started");
    let (code, out) = worker(
        &t,
        &[
            "--worker",
            "stop",
            "--trigger=delegated",
            "--reason=-disk full",
            "--caller=alice:1001",
            "--",
            "wa_stop",
        ],
        &json,
    );
    assert_eq!(code, 0, "{out}");
    assert!(common::wait_for(std::time::Duration::from_secs(10), || {
        !alive(pid)
    }));
    assert!(
        stopped_mark(&t, "wa_stop"),
        "stop by the API is the operator's stop"
    );
    let records = audit(&t);
    let stop = records
        .iter()
        .find(|r| r["action"] == "stop")
        .unwrap_or_else(|| panic!("{records:?}"));
    assert_eq!(stop["trigger"], "delegated");
    assert_eq!(stop["caller"], "alice");
    assert_eq!(stop["caller_uid"], 1001);
    assert_eq!(stop["reason"], "-disk full");
    // A start by the API clears the mark.
    let (code, out) = worker(
        &t,
        &["--worker", "start", "--trigger=cli", "--", "wa_stop"],
        &json,
    );
    assert_eq!(code, 0, "{out}");
    assert!(!stopped_mark(&t, "wa_stop"));
    let new = t.pid_of("wa_stop").expect("started again");
    t.track(new);
    assert!(alive(new));
    let start = audit(&t)
        .into_iter()
        .find(|r| r["action"] == "start" && r["trigger"] == "cli");
    assert!(
        start.is_some_and(|r| r.get("caller").is_none()),
        "no caller for the owner"
    );
}

#[test]
fn group_and_signal_actions_carry_the_caller_to_every_record() {
    let t = Env::new();
    let json = setup(
        &t,
        &[
            t.program("wa_g1", &t.sleep(2), ""),
            t.program("wa_g2", &t.sleep(3), ""),
        ],
        "[Group:wa_grp]\nprograms = wa_g1, wa_g2\n",
    );
    let (code, out) = worker(
        &t,
        &[
            "--worker",
            "start-group",
            "--trigger=delegated",
            "--reason=go",
            "--caller=bob:1002",
            "--",
            "wa_grp",
        ],
        &json,
    );
    assert_eq!(code, 0, "{out}");
    let (p1, p2) = (
        t.pid_of("wa_g1").expect("g1"),
        t.pid_of("wa_g2").expect("g2"),
    );
    t.track(p1);
    t.track(p2);
    let starts: Vec<Value> = audit(&t)
        .into_iter()
        .filter(|r| r["action"] == "start")
        .collect();
    assert_eq!(starts.len(), 2, "{starts:?}");
    for r in &starts {
        assert_eq!(
            (r["caller"].clone(), r["caller_uid"].clone()),
            (json!("bob"), json!(1002)),
            "{r}"
        );
    }
    let (code, out) = worker(
        &t,
        &[
            "--worker",
            "signal:0",
            "--trigger=delegated",
            "--caller=bob:1002",
            "--",
            "wa_g1",
        ],
        &json,
    );
    // Signal 0 is no signal: refused as usrsvc signal refuses it.
    assert_eq!(code, 131, "{out}");
    let (code, out) = worker(
        &t,
        &[
            "--worker",
            "signal:28",
            "--trigger=delegated",
            "--caller=bob:1002",
            "--",
            "wa_g1",
        ],
        &json,
    );
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("Sent SIGWINCH to wa_g1"), "{out}");
    let sig = audit(&t)
        .into_iter()
        .find(|r| r["action"] == "signal:WINCH")
        .expect("signal record");
    assert_eq!(sig["caller"], "bob");
    // Stopping the group marks both members stopped, as usrsvc stop GROUP does.
    let (code, out) = worker(
        &t,
        &["--worker", "stop-group", "--trigger=cli", "--", "wa_grp"],
        &json,
    );
    assert_eq!(code, 0, "{out}");
    assert!(stopped_mark(&t, "wa_g1") && stopped_mark(&t, "wa_g2"));
}

#[test]
fn the_worker_refuses_what_the_config_does_not_have_and_unknown_actions() {
    let t = Env::new();
    let json = setup(&t, &[t.program("wa_only", &t.sleep(4), "")], "");
    let (code, out) = worker(
        &t,
        &["--worker", "start", "--trigger=cli", "--", "wa_other"],
        &json,
    );
    assert_eq!(code, 133, "{out}");
    let (code, _) = worker(
        &t,
        &["--worker", "run:ls", "--trigger=cli", "--", "wa_only"],
        &json,
    );
    assert_eq!(code, 131);
    let (code, out) = worker(
        &t,
        &["--worker", "stop", "--caller=nobody", "--", "wa_only"],
        &json,
    );
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("USER:UID"), "{out}");
    let (code, out) = worker(
        &t,
        &["--worker", "health", "--trigger=cli", "--", "wa_only"],
        &json,
    );
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("no health checks configured"), "{out}");
    let (code, out) = worker(
        &t,
        &["--worker", "repair:x", "--trigger=cli", "--", "wa_only"],
        &json,
    );
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("no health check x with a repair command"),
        "{out}"
    );
    assert!(t.pid_of("wa_only").is_none(), "nothing was started");
}

#[test]
fn the_kill_switch_holds_an_api_worker_without_force() {
    let t = Env::new();
    let switch = t.path("switch");
    std::fs::write(&switch, "").expect("switch");
    t.config(&format!(
        "[Main]\naudit_log = {}\nkill_switch_file = {}\n\n{}",
        t.path("audit.log").display(),
        switch.display(),
        t.program("wa_ks", &t.sleep(5), "")
    ));
    let config = usrsvc::config::load(&t.path("usrsvc.cfg"), &t.home).expect("config");
    let json = serde_json::to_string(&config).expect("json");
    let (code, out) = worker(
        &t,
        &["--worker", "start", "--trigger=delegated", "--", "wa_ks"],
        &json,
    );
    assert_eq!(code, 139, "{out}");
    assert!(t.pid_of("wa_ks").is_none());
    let (code, out) = worker(
        &t,
        &[
            "--worker",
            "start",
            "--trigger=cli",
            "--force",
            "--",
            "wa_ks",
        ],
        &json,
    );
    assert_eq!(code, 0, "{out}");
    t.track(t.pid_of("wa_ks").expect("forced start"));
}

/// A fake daemon on `path`: for each connection reads one request, hands it back, and
/// writes the lines `answer` makes of it; then closes.
fn fake_daemon(
    path: &Path,
    connections: usize,
    answer: impl Fn(&Value) -> Vec<Value> + Send + 'static,
) -> std::sync::mpsc::Receiver<Value> {
    let listener = UnixListener::bind(path).expect("bind");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for _ in 0..connections {
            let Ok((stream, _)) = listener.accept() else {
                return;
            };
            let mut reader = BufReader::new(stream);
            let mut line = String::new();
            if reader.read_line(&mut line).is_err() {
                continue;
            }
            let req: Value = serde_json::from_str(&line).unwrap_or(Value::Null);
            let mut out = String::new();
            for v in answer(&req) {
                out.push_str(&format!("{v}\n"));
            }
            let _ = reader.get_mut().write_all(out.as_bytes());
            let _ = tx.send(req);
        }
    });
    rx
}

#[test]
fn user_verbs_go_to_the_given_socket_and_refusals_exit_142() {
    let t = Env::new();
    let sock = t.path("shared.sock");
    let rx = fake_daemon(&sock, 2, |req| {
        if req["op"] == "stop" {
            vec![
                json!({"v":1,"ok":false,"error":{"kind":"refused","code":142,
                "rule":"no_grant:stop","message":"root may not stop wa_web"}}),
            ]
        } else {
            vec![
                json!({"v":1,"ok":true,"id":3,"accepted":true}),
                json!({"v":1,"id":3,"done":true,"code":0,"result":"ok","output":["restarted wa_web"]}),
            ]
        }
    });
    // No config of ours exists: --user does not need one.
    let s = sock.display().to_string();
    let run = t.run(&[
        "--user", "root", "--socket", &s, "stop", "wa_web", "-r", "why",
    ]);
    run.expect_code(142);
    assert!(run.stderr().contains("no_grant:stop"), "{}", run.stderr());
    assert_eq!(rx.recv().expect("req")["reason"], "why");
    let run = t.run(&[
        "--user", "root", "--socket", &s, "restart", "wa_web", "-r", "deploy",
    ]);
    run.expect_code(0);
    assert!(
        run.stdout().contains("restarted wa_web"),
        "{}",
        run.stdout()
    );
    let req = rx.recv().expect("req");
    assert_eq!(
        (req["op"].clone(), req["wait"].clone()),
        (json!("restart"), json!(true))
    );
    // Nobody there any more: 143, saying what was tried.
    drop(rx);
    let gone = t.path("gone.sock");
    let run = t.run(&[
        "--user",
        "root",
        "--socket",
        &gone.display().to_string(),
        "status",
    ]);
    run.expect_code(143);
    assert!(run.stderr().contains("gone.sock"), "{}", run.stderr());
}

#[test]
fn events_prints_one_line_each_and_ends_143_when_the_daemon_goes() {
    let t = Env::new();
    let sock = t.path("run/usrsvcd.sock");
    std::fs::create_dir_all(t.path("run")).expect("run");
    // The runtime dir must be private, as usrsvc makes it.
    std::fs::set_permissions(
        t.path("run"),
        std::os::unix::fs::PermissionsExt::from_mode(0o700),
    )
    .expect("chmod");
    let _rx = fake_daemon(&sock, 2, |_| {
        vec![
            json!({"v":1,"ok":true,"stream":"events"}),
            json!({"v":1,"event":{"kind":"restart","at":"T1","program":"wa_ev","trigger":"crash","why":"died"}}),
            json!({"v":1,"event":{"kind":"health","at":"T2","program":"wa_ev","check":"http","status":"failing","detail":"503"}}),
        ]
    });
    let run = t.run(&["events"]);
    run.expect_code(143);
    assert_eq!(
        run.stdout(),
        "T1 wa_ev restart crash: died\nT2 wa_ev health http: failing (503)\n"
    );
    assert!(
        run.stderr().contains("closed the event stream"),
        "{}",
        run.stderr()
    );
    let run = t.run(&["events", "wa_ev", "--json"]);
    run.expect_code(143);
    let first: Value =
        serde_json::from_str(run.stdout().lines().next().expect("line")).expect("json");
    assert_eq!(first["kind"], "restart");
    // No daemon at all.
    let t2 = Env::new();
    t2.run(&["events"]).expect_code(143);
}

#[test]
fn status_adds_the_daemons_view_from_its_socket_and_keeps_the_first_line() {
    let t = Env::new();
    t.programs(&[t.program("wa_st", &t.sleep(6), "")]);
    t.run(&["start", "wa_st"]).expect_code(0);
    let pid = t.pid_of("wa_st").expect("started");
    t.track(pid);
    let bare = t.run(&["status", "wa_st"]);
    bare.expect_code(0);
    std::fs::set_permissions(
        t.path("run"),
        std::os::unix::fs::PermissionsExt::from_mode(0o700),
    )
    .expect("chmod");
    let _rx = fake_daemon(&t.path("run/usrsvcd.sock"), 2, move |req| {
        assert_eq!(req["op"], "status");
        vec![json!({"v":1,"ok":true,
            "daemon":{"pid":1,"kill_switch_on":false,"kill_switch_file":null},
            "programs":[{"name":"wa_st","state":"running","pid":pid,"uptime_seconds":75,
                "restarts":3,"failures":0,"detail":"",
                "last_exit":{"pid":5,"at":"T1","how":"with status 3","why":"crashed"},
                "next_planned_restart":"T2","planned_restart_held":null,"health":[]}],
            "groups":[]})]
    });
    let rich = t.run(&["status", "wa_st"]);
    rich.expect_code(0);
    let first = |r: &common::Run| {
        r.stdout()
            .lines()
            .next()
            .unwrap_or("")
            .split("] - ")
            .nth(1)
            .map(str::to_owned)
    };
    assert_eq!(first(&rich), first(&bare), "{}", rich.stdout());
    for want in [
        "  usrsvcd: running, up 1m15s, restarted 3 times\n",
        "  last exit: pid 5 at T1 with status 3 (crashed)\n",
        "  next planned restart: T2\n",
    ] {
        assert!(
            rich.stdout().contains(want),
            "{want:?} in\n{}",
            rich.stdout()
        );
    }
    assert!(!bare.stdout().contains("usrsvcd:"), "{}", bare.stdout());
    let json = t.run(&["status", "wa_st", "--json"]);
    json.expect_code(0);
    let doc: Value = serde_json::from_str(json.stdout().trim()).expect("json");
    assert_eq!(doc["daemon"]["restarts"], 3, "{doc}");
    assert_eq!(doc["pid"], pid);
}
