//! The e-mail alerts of the real `usrsvcd`, end to end: a stub `sendmail_path` script that
//! records each call, the test SMTP sink on 127.0.0.1 (tests/common/smtp.rs), the rate limit
//! and its summary mail, giving up and running again, a mail server or sendmail that hangs
//! (no restart waits for it) and a sendmail that fails (logged, supervision goes on).
//!
//! Each test runs its own daemon (`Env::daemon`) and waits on what it does, with generous
//! deadlines; "no more mail" is checked after the daemon has stopped, when it has finished
//! delivering everything it queued.

mod common;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::daemon::{kill9, Daemon, LONG};
use common::smtp::{Received, SmtpSink};
use common::{alive, wait_for, Env};
use usrsvc::alert::Identity;

/// A run counts as stable after 0.2 s: a kill is followed by an immediate restart.
const STABLE: &str = "stable_seconds = 0.2";
const TO: &str = "ops@example.org";

/// A restart that takes longer than this while a mail delivery hangs was held up by it (the
/// delivery timeout is 30 s; a restart takes well under a second).
const PROMPT: Duration = Duration::from_secs(5);

/// One call of the stub sendmail: its arguments and the message it read on stdin.
struct Call {
    /// When the stub ran (ns since the epoch, from its file name).
    at_ns: u128,
    argv: Vec<String>,
    msg: Received,
}

/// Where the stub sendmail writes.
fn mail_dir(t: &Env) -> PathBuf {
    t.path("mail")
}

/// A stub `sendmail_path`: each call writes `<ns>.<pid>.argv` (the argument count, then one
/// argument per line) and `<ns>.<pid>.msg` (its stdin, written aside and renamed, so a `.msg`
/// file is always whole and its `.argv` already there), then runs `tail`.
fn stub_sendmail(t: &Env, tail: &str) -> PathBuf {
    let dir = mail_dir(t);
    std::fs::create_dir_all(&dir).expect("mail dir");
    t.script(
        "sendmail",
        &format!(
            "#!/bin/sh\nd={}\nn=$(date +%s%N).$$\n\
             {{ printf '%s\\n' \"$#\"; for a in \"$@\"; do printf '%s\\n' \"$a\"; done; }} > \"$d/$n.argv\"\n\
             cat > \"$d/$n.tmp\"\nmv \"$d/$n.tmp\" \"$d/$n.msg\"\n{tail}\n",
            dir.display()
        ),
    )
}

/// Every completed stub call, oldest first.
fn calls(t: &Env) -> Vec<Call> {
    let dir = mail_dir(t);
    let mut stems: Vec<String> = std::fs::read_dir(&dir)
        .expect("mail dir")
        .flatten()
        .filter_map(|e| {
            e.file_name()
                .to_str()?
                .strip_suffix(".msg")
                .map(str::to_owned)
        })
        .collect();
    // `date +%s%N` has 19 digits until 2286: names sort in call order.
    stems.sort();
    stems
        .into_iter()
        .map(|stem| {
            let argv_text = common::read(&dir.join(format!("{stem}.argv")));
            let mut lines = argv_text.lines().map(str::to_owned);
            let argc: usize = lines
                .next()
                .and_then(|n| n.parse().ok())
                .unwrap_or_else(|| panic!("argc in {stem}.argv: {argv_text:?}"));
            let argv: Vec<String> = lines.collect();
            assert_eq!(argv.len(), argc, "{argv_text:?}");
            let at_ns = stem
                .split('.')
                .next()
                .and_then(|n| n.parse().ok())
                .expect("time in the file name");
            let data = common::read(&dir.join(format!("{stem}.msg")));
            Call {
                at_ns,
                argv,
                msg: Received {
                    data,
                    ..Default::default()
                },
            }
        })
        .collect()
}

/// Waits until the stub has been called `n` times; returns the calls.
#[track_caller]
fn wait_calls(t: &Env, d: &Daemon, n: usize) -> Vec<Call> {
    let ok = wait_for(LONG, || calls(t).len() >= n);
    let got = calls(t);
    assert!(
        ok,
        "expected {n} mail(s), got {}: {:?}\n{}",
        got.len(),
        subjects(&got),
        d.dump()
    );
    got
}

fn subjects(calls: &[Call]) -> Vec<String> {
    calls
        .iter()
        .map(|c| c.msg.header("Subject").unwrap_or_default())
        .collect()
}

/// The body as text: decoded by its Content-Transfer-Encoding (lettre picks quoted-printable
/// for lines over 76 characters), line ends back to LF, for searching.
fn body(r: &Received) -> String {
    let raw = r.body();
    let text = match r.header("Content-Transfer-Encoding").as_deref() {
        Some("quoted-printable") => decode_qp(&raw),
        Some("7bit" | "8bit") | None => raw,
        Some(other) => panic!("unexpected Content-Transfer-Encoding {other:?}"),
    };
    text.replace("\r\n", "\n")
}

/// RFC 2045 quoted-printable: `=` CRLF is a soft line break, `=XY` a byte.
fn decode_qp(s: &str) -> String {
    let s = s.replace("=\r\n", "");
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let byte = (b[i] == b'=')
            .then(|| s.get(i + 1..i + 3))
            .flatten()
            .and_then(|hex| u8::from_str_radix(hex, 16).ok());
        match byte {
            Some(v) => {
                out.push(v);
                i += 3;
            }
            None => {
                out.push(b[i]);
                i += 1;
            }
        }
    }
    String::from_utf8(out).expect("UTF-8 body")
}

/// The checks of RFC 5322 a mail reader relies on: CRLF line ends only, a blank line after
/// the headers, each header `Name: value` (or a folded continuation), the required and the
/// promised headers present, a parseable Date and a `<left@right>` Message-ID.
#[track_caller]
fn assert_rfc5322(r: &Received) {
    let data = &r.data;
    let bytes = data.as_bytes();
    for (i, b) in bytes.iter().enumerate() {
        match b {
            b'\n' => assert!(i > 0 && bytes[i - 1] == b'\r', "bare LF at {i}: {data:?}"),
            b'\r' => assert!(bytes.get(i + 1) == Some(&b'\n'), "bare CR at {i}: {data:?}"),
            _ => {}
        }
    }
    let (head, _) = data
        .split_once("\r\n\r\n")
        .expect("blank line after headers");
    for line in head.split("\r\n") {
        let ok = line.starts_with([' ', '\t'])
            || line.split_once(':').is_some_and(|(name, _)| {
                !name.is_empty() && name.bytes().all(|c| c.is_ascii_graphic() && c != b':')
            });
        assert!(ok, "not a header line: {line:?}\n{data}");
        assert!(line.len() <= 998, "header line too long: {line:?}");
    }
    for name in ["Date", "Message-ID", "From", "To", "Subject"] {
        let n = head
            .split("\r\n")
            .filter(|l| {
                l.split_once(':')
                    .is_some_and(|(k, _)| k.eq_ignore_ascii_case(name))
            })
            .count();
        assert_eq!(n, 1, "{name} header {n} times:\n{data}");
    }
    let date = r.header("Date").expect("Date");
    chrono::DateTime::parse_from_rfc2822(&date)
        .unwrap_or_else(|e| panic!("Date {date:?} is not RFC 5322: {e}"));
    let id = r.header("Message-ID").expect("Message-ID");
    let inner = id
        .strip_prefix('<')
        .and_then(|s| s.strip_suffix('>'))
        .unwrap_or_else(|| panic!("Message-ID {id:?}"));
    let (left, right) = inner.split_once('@').expect("Message-ID left@right");
    assert!(!left.is_empty() && !right.is_empty(), "Message-ID {id:?}");
}

/// `[Main]` with `main_keys`, then one program with `email_alerts` set.
fn config(t: &Env, main_keys: &str, name: &str, command: &str, extra: &str) {
    t.config(&format!(
        "[Main]\n{main_keys}\n\n{}",
        t.program(name, command, &format!("email_alerts = \"{TO}\"\n{extra}"))
    ));
}

fn sendmail_key(path: &Path) -> String {
    format!("sendmail_path = {}", path.display())
}

fn smtp_keys(port: u16) -> String {
    format!("smtp_host = 127.0.0.1\nsmtp_port = {port}")
}

/// Stops the daemon (its mail queue drained) and checks it exited cleanly.
#[track_caller]
fn stop(d: &mut Daemon) {
    assert_eq!(d.stop(), Some(0), "{}", d.dump());
}

#[test]
fn sendmail_gets_a_mail_for_the_autostart_and_one_for_the_restart_after_a_crash() {
    let t = Env::new();
    let id = Identity::of_this_process();
    let stub = stub_sendmail(&t, "exit 0");
    config(
        &t,
        &sendmail_key(&stub),
        "p",
        &t.sleep(1),
        &format!("{STABLE}\nemail_interval = 0"),
    );
    let mut d = t.daemon();
    let pid = t.wait_running("p");
    d.expect_watching("p", pid);

    let c = wait_calls(&t, &d, 1);
    assert_eq!(
        c[0].msg.header("Subject").as_deref(),
        Some(format!("{} - p starting", id.user).as_str())
    );
    let b = body(&c[0].msg);
    assert!(
        b.contains(&format!(
            "p running on {} was started because it was found not running.",
            id.host
        )) && b.contains("usrsvcd started it (autostart)"),
        "{b}"
    );

    kill9(pid);
    let new = t.wait_new_pid("p", pid);
    d.expect_watching("p", new);
    let c = wait_calls(&t, &d, 2);
    assert_eq!(
        c[1].msg.header("Subject").as_deref(),
        Some(format!("{} - p restarting", id.user).as_str())
    );
    let b = body(&c[1].msg);
    assert!(
        b.contains(&format!(
            "crashed: pid {pid} exited killed by signal 9 (SIGKILL) after running"
        )),
        "says it crashed and how: {b}"
    );
    assert!(
        b.contains("Restart 1 by this usrsvcd"),
        "restart count: {b}"
    );

    for call in &c {
        assert_eq!(call.argv, [TO], "exactly one argument, email_alerts");
        assert_rfc5322(&call.msg);
        assert_eq!(call.msg.header("To").as_deref(), Some(TO));
        assert_eq!(call.msg.header("From"), Some(id.default_from()));
        let b = body(&call.msg);
        assert!(
            b.ends_with(&format!("Yours,\nusrsvcd ({})\n", id.user)),
            "{b}"
        );
    }
    assert_ne!(c[0].msg.header("Message-ID"), c[1].msg.header("Message-ID"));

    stop(&mut d);
    assert_eq!(calls(&t).len(), 2, "{:?}", subjects(&calls(&t)));
    assert_eq!(d.count("MAIL:"), 0, "no delivery problem: {}", d.dump());
}

#[test]
fn smtp_server_gets_the_mail_with_its_envelope_and_headers() {
    let t = Env::new();
    let id = Identity::of_this_process();
    let (port, sink) = SmtpSink::start();
    let to = "ops@example.org, Bob <bob@example.org>";
    t.config(&format!(
        "[Main]\n{}\n\n{}",
        smtp_keys(port),
        t.program(
            "p",
            &t.sleep(1),
            &format!("email_alerts = \"{to}\"\n{STABLE}\nemail_interval = 0")
        )
    ));
    let d = t.daemon();
    let pid = t.wait_running("p");
    d.expect_watching("p", pid);

    let got = sink.wait_for(1, LONG);
    assert_eq!(got.len(), 1, "{}", d.dump());
    let m = &got[0];
    assert_eq!(m.mail_from, id.default_from(), "MAIL FROM");
    assert_eq!(m.rcpt_to, ["ops@example.org", "bob@example.org"], "RCPT TO");
    assert_eq!(m.helo, id.host, "EHLO names this host");
    assert_eq!(m.auth, None);
    assert_rfc5322(m);
    assert_eq!(m.header("To").as_deref(), Some(to));
    assert_eq!(m.header("From"), Some(id.default_from()));
    assert_eq!(
        m.header("Subject"),
        Some(format!("{} - p starting", id.user))
    );

    kill9(pid);
    let new = t.wait_new_pid("p", pid);
    d.expect_watching("p", new);
    let got = sink.wait_for(2, LONG);
    assert_eq!(got.len(), 2, "{}", d.dump());
    assert_eq!(got[1].rcpt_to, ["ops@example.org", "bob@example.org"]);
    assert_eq!(
        got[1].header("Subject"),
        Some(format!("{} - p restarting", id.user))
    );
    assert!(
        body(&got[1]).contains(&format!("crashed: pid {pid} exited killed by signal 9")),
        "{}",
        body(&got[1])
    );
    assert_eq!(d.count("MAIL:"), 0, "no delivery problem: {}", d.dump());
}

#[test]
fn crashes_within_email_interval_are_held_and_sent_as_one_summary() {
    const INTERVAL: u64 = 6;
    let t = Env::new();
    let id = Identity::of_this_process();
    let stub = stub_sendmail(&t, "exit 0");
    config(
        &t,
        &sendmail_key(&stub),
        "p",
        &t.sleep(1),
        &format!("{STABLE}\nsuccess_seconds = 0.3\nemail_interval = {INTERVAL}"),
    );
    let mut d = t.daemon();
    let mut pid = t.wait_running("p");
    d.expect_watching("p", pid);
    let first = wait_calls(&t, &d, 1);
    assert_eq!(
        first[0].msg.header("Subject"),
        Some(format!("{} - p starting", id.user))
    );

    let mut crashed = Vec::new();
    for n in 1..=3 {
        kill9(pid);
        crashed.push(pid);
        pid = t.wait_new_pid("p", pid);
        d.expect_watching("p", pid);
        d.expect_count("p has stopped running, and autorestart=True.", n);
    }
    // All three restarts (and their alerts) happened before the interval was over: if this
    // fails, the machine was too slow for the test, not the rate limit wrong.
    let held = calls(&t).len();
    let since_first = now_ns().saturating_sub(first[0].at_ns);
    assert!(
        held == 1 && since_first < u128::from(INTERVAL) * 1_000_000_000,
        "3 crashes took {} ms after the first mail; mails so far: {:?}",
        since_first / 1_000_000,
        subjects(&calls(&t))
    );

    let c = wait_calls(&t, &d, 2);
    let summary = &c[1];
    assert_eq!(
        summary.msg.header("Subject"),
        Some(format!("{} - p: 3 events, latest restarting", id.user))
    );
    let gap = summary.at_ns - c[0].at_ns;
    assert!(
        gap >= u128::from(INTERVAL - 1) * 1_000_000_000,
        "the summary came {} ms after the first mail",
        gap / 1_000_000
    );
    let b = body(&summary.msg);
    assert!(
        b.starts_with(&format!(
            "3 events for p running on {} since the last mail:",
            id.host
        )),
        "{b}"
    );
    // Every event is in it, in order.
    let mut from = 0;
    for (i, old) in crashed.iter().enumerate() {
        let needle = format!("crashed: pid {old} exited killed by signal 9");
        let at = b[from..]
            .find(&needle)
            .unwrap_or_else(|| panic!("{needle:?} (in order) in the summary:\n{b}"));
        let restart = format!("Restart {} by this usrsvcd", i + 1);
        assert!(b[from + at..].contains(&restart), "{restart:?}:\n{b}");
        from += at + needle.len();
    }
    assert_eq!(b.matches("restarting.").count(), 3, "{b}");
    assert_eq!(summary.argv, [TO]);
    assert_rfc5322(&summary.msg);

    stop(&mut d);
    assert_eq!(
        calls(&t).len(),
        2,
        "one immediate mail and one summary: {:?}",
        subjects(&calls(&t))
    );
    assert_eq!(d.count("MAIL:"), 0, "no delivery problem: {}", d.dump());
}

fn now_ns() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock after 1970")
        .as_nanos()
}

#[test]
fn giving_up_and_running_again_are_mailed() {
    let t = Env::new();
    let id = Identity::of_this_process();
    let stub = stub_sendmail(&t, "exit 0");
    let broken = t.path("broken");
    std::fs::write(&broken, "").expect("flag");
    let script = t.script(
        "crash.sh",
        &format!(
            "#!/bin/sh\n[ -e {} ] && exit 3\n{}\n",
            broken.display(),
            t.sleep(1)
        ),
    );
    config(
        &t,
        &sendmail_key(&stub),
        "c",
        &script.display().to_string(),
        "success_seconds = 0.3\nrestart_delay = 0\nmaxrestarts = 2\nstable_seconds = 1000\nemail_interval = 0",
    );
    let mut d = t.daemon();
    d.expect_log("c has reached the maximum number of restarts 2");
    let c = wait_calls(&t, &d, 3);
    let user = &id.user;
    assert_eq!(
        subjects(&c),
        [
            format!("{user} - c starting"),
            format!("{user} - c restarting"),
            format!("{user} - c failed"),
        ]
    );
    let b = body(&c[1].msg);
    assert!(b.contains("failed to start"), "why it restarted: {b}");
    let b = body(&c[2].msg);
    assert!(
        b.contains("c failed 2 times in a row (maxrestarts = 2)")
            && b.contains("until \"usrsvc start c\""),
        "{b}"
    );

    std::fs::remove_file(&broken).expect("unbreak");
    t.run(&["start", "c"]).expect_code(0);
    let pid = t.wait_running("c");
    d.expect_log(&format!(
        "c is running again (pid {pid}); supervising it again."
    ));
    let c = wait_calls(&t, &d, 4);
    assert_eq!(
        c[3].msg.header("Subject"),
        Some(format!("{user} - c running again"))
    );
    let b = body(&c[3].msg);
    assert!(
        b.contains(&format!("c was seen running again (pid {pid})")),
        "{b}"
    );
    for call in &c {
        assert_eq!(call.argv, [TO]);
        assert_rfc5322(&call.msg);
    }

    stop(&mut d);
    assert_eq!(calls(&t).len(), 4, "{:?}", subjects(&calls(&t)));
    assert_eq!(d.count("MAIL:"), 0, "no delivery problem: {}", d.dump());
}

/// Kills `name` three times; each restart must come within `PROMPT` and `usrsvcd status`
/// must answer at once and show it. Returns the last pid.
fn three_prompt_restarts(t: &Env, d: &Daemon, name: &str, mut pid: i32) -> i32 {
    for n in 1..=3 {
        kill9(pid);
        let killed = Instant::now();
        let mut new = None;
        let ok = wait_for(PROMPT, || {
            new = t.pid_of(name).filter(|p| *p != pid && alive(*p));
            new.is_some()
        });
        assert!(
            ok,
            "restart {n} took longer than {PROMPT:?} while a mail hangs\n{}",
            d.dump()
        );
        pid = new.expect("new pid");
        d.expect_watching(name, pid);
        assert!(
            killed.elapsed() < PROMPT,
            "restart {n}: {:?}",
            killed.elapsed()
        );

        let shown = format!("pid {pid}");
        let ok = wait_for(PROMPT, || {
            let asked = Instant::now();
            let r = t.run_bin("usrsvcd", &["status"]);
            r.expect_code(0);
            assert!(
                asked.elapsed() < PROMPT,
                "usrsvcd status took {:?}",
                asked.elapsed()
            );
            r.stdout().contains(&shown) && r.stdout().contains(&format!("restarted {n} time"))
        });
        assert!(ok, "usrsvcd status does not show {shown}\n{}", d.dump());
    }
    pid
}

#[test]
fn a_hanging_smtp_server_delays_no_restart() {
    let t = Env::new();
    let (port, sink) = SmtpSink::hanging();
    config(
        &t,
        &smtp_keys(port),
        "p",
        &t.sleep(1),
        &format!("{STABLE}\nemail_interval = 0"),
    );
    let d = t.daemon();
    let pid = t.wait_running("p");
    d.expect_watching("p", pid);
    // The "starting" mail is being delivered: connected, waiting for a greeting that never
    // comes.
    assert!(
        wait_for(LONG, || sink.connections() >= 1),
        "no connection to the mail server\n{}",
        d.dump()
    );
    let hung_since = Instant::now();

    three_prompt_restarts(&t, &d, "p", pid);

    // Still the first delivery: one connection, nothing failed yet (the timeout is 30 s).
    assert!(hung_since.elapsed() < Duration::from_secs(25));
    assert_eq!(sink.connections(), 1);
    assert_eq!(d.count("MAIL:"), 0, "{}", d.dump());
    // Closing the connections ends the hung delivery, so the daemon's shutdown does not wait.
    drop(sink);
}

#[test]
fn a_hanging_sendmail_delays_no_restart_and_is_killed_at_shutdown() {
    let t = Env::new();
    let pids = t.path("sendmail.pids");
    let stub = t.script(
        "sendmail",
        &format!(
            "#!/bin/sh\necho $$ >> {}\nexec {}\n",
            pids.display(),
            t.sleep(9)
        ),
    );
    config(
        &t,
        &sendmail_key(&stub),
        "p",
        &t.sleep(1),
        &format!("{STABLE}\nemail_interval = 0"),
    );
    let mut d = t.daemon();
    let pid = t.wait_running("p");
    d.expect_watching("p", pid);
    let read_pids = || -> Vec<i32> {
        common::read(&pids)
            .lines()
            .filter_map(|l| l.trim().parse().ok())
            .collect()
    };
    assert!(
        wait_for(LONG, || !read_pids().is_empty()),
        "sendmail was not run\n{}",
        d.dump()
    );
    let hung = read_pids()[0];
    // Killed by the test's cleanup whatever happens below.
    t.track(hung);
    assert!(alive(hung));

    three_prompt_restarts(&t, &d, "p", pid);

    assert!(alive(hung), "the first sendmail still hangs");
    assert_eq!(read_pids(), [hung], "one delivery at a time");
    assert_eq!(d.count("MAIL:"), 0, "{}", d.dump());

    // Shutdown waits a while for the queue, then kills the hanging sendmail.
    stop(&mut d);
    for p in read_pids() {
        t.track(p);
    }
    assert!(
        wait_for(LONG, || !alive(hung)),
        "the daemon left its sendmail {hung} running"
    );
    d.expect_log("Shutting down: gave up waiting for the mail being delivered.");
    assert_eq!(
        d.count("Shutting down: mail not sent: about p to ops@example.org"),
        3,
        "the three restart mails were queued, and are reported\n{}",
        d.dump()
    );
}

#[test]
fn a_failing_sendmail_is_logged_with_its_exit_code_and_supervision_goes_on() {
    let t = Env::new();
    let stub = t.script(
        "sendmail",
        "#!/bin/sh\ncat > /dev/null\necho 'relay refused' >&2\nexit 1\n",
    );
    config(
        &t,
        &sendmail_key(&stub),
        "p",
        &t.sleep(1),
        &format!("{STABLE}\nemail_interval = 0"),
    );
    let d = t.daemon();
    let pid = t.wait_running("p");
    d.expect_watching("p", pid);
    let failed = format!(
        "MAIL: Failed to send mail about p to {TO} (\"{} - p starting\"): {} exited with code 1; output: relay refused",
        Identity::of_this_process().user,
        stub.display()
    );
    let line = d.expect_log(&failed);
    assert_eq!(line["level"], "error", "{line}");

    kill9(pid);
    let new = t.wait_new_pid("p", pid);
    d.expect_watching("p", new);
    d.expect_count("MAIL: Failed to send mail about p", 2);
    let second = d
        .msgs()
        .into_iter()
        .filter(|m| m.contains("MAIL: Failed to send mail about p"))
        .nth(1)
        .expect("second failure");
    assert!(
        second.contains("p restarting") && second.contains("exited with code 1"),
        "{second}"
    );

    // And again: still supervising.
    kill9(new);
    let third = t.wait_new_pid("p", new);
    d.expect_watching("p", third);
}
