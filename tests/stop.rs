//! `stop` against real process trees: `stop_group` reaches the program's whole session (and
//! only with it), SIGKILL after the grace period reaches the children too and is audited as
//! `killed`, `stop_signal` is the signal the program gets, a stopped (SIGSTOP) program is woken
//! to run its handler, and what a killed main process left behind (a child holding the
//! program's port) is stopped before the next start, by `usrsvc start` and by the daemon.

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::daemon::kill9;
use common::{alive, wait_for, Env};
use serde_json::Value;

const LONG: Duration = Duration::from_secs(30);

/// The audit records written so far.
fn audit(t: &Env) -> Vec<Value> {
    let text = std::fs::read_to_string(t.path("run/audit.log")).unwrap_or_default();
    text.lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l:?}")))
        .collect()
}

/// The last audit record of `action`.
fn last(t: &Env, action: &str) -> Value {
    audit(t)
        .into_iter()
        .rev()
        .find(|r| r["action"] == action)
        .unwrap_or_else(|| panic!("no {action} record: {:?}", audit(t)))
}

/// Waits until `pattern` (a whole cmdline) runs; returns its pids.
#[track_caller]
fn wait_pids(pattern: &str, n: usize) -> Vec<i32> {
    let mut pids = Vec::new();
    let ok = wait_for(LONG, || {
        pids = common::pids_matching(pattern);
        pids.len() >= n
    });
    assert!(ok, "{pattern:?} is not running ({} found)", pids.len());
    pids
}

/// A shell script with two background children that waits for them.
fn family(t: &Env, name: &str, trap: &str) -> (String, String, String) {
    let (a, b) = (t.sleep(1), t.sleep(2));
    let script = t.script(
        &format!("{name}.sh"),
        &format!("#!/bin/sh\n{trap}\n{a} &\n{b} &\nwait\n"),
    );
    (script.display().to_string(), a, b)
}

#[test]
fn stop_leaves_none_of_the_programs_children_behind() {
    let t = Env::new();
    let (cmd, a, b) = family(&t, "fam", "");
    t.programs(&[t.program("fam", &cmd, "term_to_kill_seconds = 20")]);
    t.run(&["start", "fam"]).expect_code(0);
    let kids = [wait_pids(&a, 1)[0], wait_pids(&b, 1)[0]];
    let began = Instant::now();
    let r = t.run(&["stop", "fam"]);
    r.expect_code(0);
    assert!(
        r.stdout()
            .contains("fam terminated (and 2 other processes of its session)"),
        "{}",
        r.stdout()
    );
    // Nothing needed SIGKILL: well inside the 20 s grace period.
    assert!(
        began.elapsed() < Duration::from_secs(15),
        "{:?}",
        began.elapsed()
    );
    for k in kids {
        assert!(!alive(k), "child {k} survived the stop");
    }
    assert_eq!(last(&t, "stop")["result"], "ok");
}

#[test]
fn stop_group_false_signals_only_the_main_process() {
    let t = Env::new();
    let (cmd, a, _) = family(&t, "solo", "");
    t.programs(&[t.program("solo", &cmd, "stop_group = false")]);
    t.run(&["start", "solo"]).expect_code(0);
    let main = t.pid_of("solo").expect("pid");
    let kid = wait_pids(&a, 1)[0];
    let r = t.run(&["stop", "solo"]);
    r.expect_code(0);
    assert!(r.stdout().contains("solo terminated"), "{}", r.stdout());
    assert!(!r.stdout().contains("other process"), "{}", r.stdout());
    assert!(!alive(main));
    // 1.5.13's behaviour: the child is left running.
    assert!(alive(kid), "stop_group = false reached the child");
}

#[test]
fn a_program_that_ignores_term_is_killed_with_its_children_and_audited_killed() {
    let t = Env::new();
    // `trap '' TERM` is inherited: the children ignore SIGTERM too.
    let (cmd, a, b) = family(&t, "deaf", "trap '' TERM");
    t.programs(&[t.program("deaf", &cmd, "term_to_kill_seconds = 1")]);
    t.run(&["start", "deaf"]).expect_code(0);
    let main = t.pid_of("deaf").expect("pid");
    let kids = [wait_pids(&a, 1)[0], wait_pids(&b, 1)[0]];
    let began = Instant::now();
    let r = t.run(&["stop", "deaf"]);
    r.expect_code(0);
    assert!(began.elapsed() >= Duration::from_millis(950));
    assert!(
        r.stdout()
            .contains("deaf killed (and 2 other processes of its session)"),
        "{}",
        r.stdout()
    );
    assert!(!alive(main));
    for k in kids {
        assert!(!alive(k), "child {k} survived SIGKILL");
    }
    let rec = last(&t, "stop");
    assert_eq!(rec["result"], "killed", "{rec}");
    assert_eq!(rec["old_pid"], main);
    let h = t.run(&["history", "deaf", "-n", "1"]);
    h.expect_code(0);
    assert!(h.stdout().contains("killed"), "{}", h.stdout());
    // A restart whose stop needed SIGKILL says so too.
    t.run(&["start", "deaf"]).expect_code(0);
    let before = t.pid_of("deaf").expect("pid");
    t.run(&["restart", "deaf"]).expect_code(0);
    let rec = last(&t, "restart");
    assert_eq!(rec["result"], "killed", "{rec}");
    assert_eq!(rec["old_pid"], before);
}

#[test]
fn stop_signal_is_what_the_program_receives() {
    let t = Env::new();
    let got = t.path("got");
    let g = got.display();
    let script = t.script(
        "quitter.sh",
        &format!(
            "#!/bin/sh\ntrap 'echo quit > {g}; kill $!; exit 0' QUIT\ntrap 'echo term > {g}; kill $!; exit 0' TERM\n{} &\nwait $!\n",
            t.sleep(1)
        ),
    );
    t.programs(&[t.program(
        "quitter",
        &script.display().to_string(),
        "stop_signal = QUIT\nterm_to_kill_seconds = 20",
    )]);
    t.run(&["start", "quitter"]).expect_code(0);
    let r = t.run(&["stop", "quitter"]);
    r.expect_code(0);
    assert!(r.stdout().contains("quitter terminated"), "{}", r.stdout());
    assert_eq!(common::read(&got).trim(), "quit");
}

#[test]
fn an_invalid_stop_signal_is_a_config_error_with_its_place() {
    let t = Env::new();
    t.programs(&[t.program("bad", &t.sleep(1), "stop_signal = TERMINATE")]);
    let r = t.run(&["status", "bad"]);
    r.expect_code(130);
    // The file, the line (10: after [Main], a blank line and 6 lines of the program), the key.
    let at = format!(
        "{}:10: [Program:bad] stop_signal:",
        t.path("usrsvc.cfg").display()
    );
    assert!(r.stderr().contains(&at), "{}", r.stderr());
}

#[test]
fn a_stopped_program_is_woken_to_run_its_term_handler() {
    let t = Env::new();
    let got = t.path("got");
    let script = t.script(
        "frozen.sh",
        &format!(
            "#!/bin/sh\ntrap 'echo term > {}; kill $!; exit 0' TERM\n{} &\nwait $!\n",
            got.display(),
            t.sleep(1)
        ),
    );
    t.programs(&[t.program(
        "frozen",
        &script.display().to_string(),
        "term_to_kill_seconds = 20",
    )]);
    t.run(&["start", "frozen"]).expect_code(0);
    let pid = t.pid_of("frozen").expect("pid");
    common::daemon::signal(pid, nix::sys::signal::Signal::SIGSTOP);
    assert!(wait_for(LONG, || common::stat_field(pid, 3).as_deref() == Some("T")));
    let began = Instant::now();
    let r = t.run(&["stop", "frozen"]);
    r.expect_code(0);
    assert!(r.stdout().contains("frozen terminated"), "{}", r.stdout());
    assert!(
        began.elapsed() < Duration::from_secs(15),
        "{:?}",
        began.elapsed()
    );
    assert_eq!(common::read(&got).trim(), "term");
}

/// A program whose child listens on a port of 127.0.0.1: the first start gets one from the
/// kernel and writes it to `port`; every later start must bind that same port. The main
/// process (the shell) runs a sleep; the listener forks off and writes its pid to `port.pid`.
fn server(t: &Env, name: &str) -> String {
    let port = t.path(&format!("{name}.port"));
    let perl = r#"use IO::Socket::INET; my $f = $ARGV[0]; my $p = 0;
if (open my $i, "<", $f) { $p = <$i>; chomp $p; }
my $s = IO::Socket::INET->new(Listen => 5, LocalAddr => "127.0.0.1", LocalPort => $p, ReuseAddr => 1, Proto => "tcp") or die "bind $p: $!\n";
open my $o, ">", "$f.tmp" or die; print $o $s->sockport, "\n"; close $o; rename "$f.tmp", $f;
exit 0 if fork;
open my $q, ">", "$f.pid" or die; print $q "$$\n"; close $q;
sleep 1 while 1;"#;
    let script = t.script(
        &format!("{name}.sh"),
        &format!(
            "#!/bin/sh\nperl -e '{perl}' {} || exit 3\n{}\n",
            port.display(),
            t.sleep(3)
        ),
    );
    script.display().to_string()
}

fn read_num(p: &Path) -> Option<i32> {
    common::read(p).trim().parse().ok()
}

/// Waits for the listener the current start forked (not `old`); returns (pid, port).
#[track_caller]
fn listener(t: &Env, name: &str, old: i32) -> (i32, u16) {
    let pidfile = t.path(&format!("{name}.port.pid"));
    let mut pid = 0;
    let ok = wait_for(LONG, || {
        pid = read_num(&pidfile).unwrap_or(0);
        pid != 0 && pid != old && alive(pid)
    });
    assert!(ok, "no listener of {name}");
    let port = read_num(&t.path(&format!("{name}.port"))).expect("port") as u16;
    (pid, port)
}

fn have_perl() -> bool {
    let ok = std::process::Command::new("perl")
        .args(["-MIO::Socket::INET", "-e1"])
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        eprintln!("SKIPPED: no perl with IO::Socket::INET");
    }
    ok
}

#[test]
fn after_kill_9_of_the_main_process_start_stops_what_holds_its_port() {
    if !have_perl() {
        return;
    }
    let t = Env::new();
    let cmd = server(&t, "srv");
    t.programs(&[t.program("srv", &cmd, "success_seconds = 2")]);
    t.run(&["start", "srv"]).expect_code(0);
    let main = t.pid_of("srv").expect("pid");
    let (old, port) = listener(&t, "srv", 0);
    kill9(main);
    assert!(alive(old), "the listener went with its parent");
    // status says so, and keeps the pidfile that leads to the listener.
    let r = t.run(&["status", "srv"]);
    r.expect_code(1);
    assert!(
        r.stderr().contains(&format!("pid {main} of the pidfile")),
        "{}",
        r.all()
    );
    assert_eq!(t.pid_of("srv"), Some(main));

    let r = t.run(&["start", "srv"]);
    r.expect_code(0);
    assert!(
        r.stderr()
            .contains(&format!("pid {main} of the pidfile is gone")),
        "{}",
        r.all()
    );
    assert!(!alive(old), "the old listener {old} is still there");
    let (new, again) = listener(&t, "srv", old);
    assert_eq!(again, port);
    assert!(std::net::TcpStream::connect(("127.0.0.1", port)).is_ok());
    let rec = last(&t, "cleanup");
    assert_eq!(rec["old_pid"], main, "{rec}");
    assert_eq!(rec["result"], "ok", "{rec}");
    t.run(&["stop", "srv"]).expect_code(0);
    assert!(!alive(new));
}

#[test]
fn after_kill_9_of_the_main_process_the_daemon_restart_stops_what_holds_its_port() {
    if !have_perl() {
        return;
    }
    let t = Env::new();
    let cmd = server(&t, "dsrv");
    t.programs(&[t.program(
        "dsrv",
        &cmd,
        "success_seconds = 2\nrestart_delay = 0\nstable_seconds = 1",
    )]);
    let d = t.daemon();
    let main = t.wait_running("dsrv");
    let (old, port) = listener(&t, "dsrv", 0);
    d.expect_watching("dsrv", main);
    kill9(main);
    let new_main = t.wait_new_pid("dsrv", main);
    d.expect_log(&format!("pid {main} of the pidfile is gone"));
    let (_, again) = listener(&t, "dsrv", old);
    assert!(!alive(old), "the old listener {old} is still there");
    assert_eq!(again, port);
    d.expect_watching("dsrv", new_main);
    assert_eq!(d.count("Failed to start dsrv"), 0, "{}", d.dump());
    let rec = last(&t, "cleanup");
    assert_eq!(rec["old_pid"], main, "{rec}");
    assert_eq!(rec["trigger"], "crash", "{rec}");
}

#[test]
fn a_left_over_process_that_is_the_program_is_adopted_not_stopped() {
    if !have_perl() {
        return;
    }
    let t = Env::new();
    // The parent and its forked copy have the same command line: the copy is the program once
    // the parent is gone (a hand-over, as in a server's binary upgrade).
    let cmd = format!(
        "perl -e 'fork or do {{ sleep 1 while 1 }}; sleep 1 while 1' {}",
        t.marker
    );
    t.programs(&[t.program("copy", &cmd, "")]);
    t.run(&["start", "copy"]).expect_code(0);
    let main = t.pid_of("copy").expect("pid");
    let mut copy = 0;
    assert!(wait_for(LONG, || {
        copy = common::pids_matching(&cmd.replace('\'', ""))
            .into_iter()
            .find(|p| *p != main)
            .unwrap_or(0);
        copy != 0
    }));
    kill9(main);
    let r = t.run(&["start", "copy"]);
    r.expect_code(0);
    assert!(
        r.stdout()
            .contains(&format!("pid {copy} of its session is the program")),
        "{}",
        r.all()
    );
    assert!(alive(copy), "the copy was stopped");
    assert_eq!(t.pid_of("copy"), Some(copy), "{}", r.all());
    assert!(audit(&t).iter().all(|r| r["action"] != "cleanup"));
}

#[test]
fn after_kill_9_of_the_main_process_stop_still_reaches_its_children() {
    let t = Env::new();
    let (cmd, a, b) = family(&t, "orphans", "");
    t.programs(&[t.program("orphans", &cmd, "")]);
    t.run(&["start", "orphans"]).expect_code(0);
    let main = t.pid_of("orphans").expect("pid");
    let kids = [wait_pids(&a, 1)[0], wait_pids(&b, 1)[0]];
    kill9(main);
    let r = t.run(&["stop", "orphans"]);
    r.expect_code(0);
    assert!(
        r.stderr().contains(&format!(
            "pid {main} of the pidfile is gone, but 2 process(es)"
        )),
        "{}",
        r.all()
    );
    for k in kids {
        assert!(!alive(k), "child {k} survived the stop");
    }
    let rec = last(&t, "cleanup");
    assert_eq!(
        (&rec["old_pid"], &rec["result"]),
        (&main.into(), &"ok".into()),
        "{rec}"
    );
    assert_eq!(last(&t, "stop")["result"], "not running");
}

/// Runs `usrsvc start NAME` as a subreaper's child, SIGKILLs the program's main process (no
/// child of its own), reaps it so that its pid is free, then gives that pid (through
/// ns_last_pid, root only) to an unrelated process that makes it a session of its own, starts
/// `unrelated` in it and exits. Returns (the dead pid, the unrelated process), None when the
/// pid could not be had (another process took it first) or this is not root.
fn reuse_as_a_session(t: &Env, name: &str, unrelated: &str) -> Option<(i32, i32)> {
    if !nix::unistd::geteuid().is_root() || !have_perl() {
        return None;
    }
    let usrsvc = common::bin("usrsvc");
    let script = t.script(
        "reuse.pl",
        r#"use POSIX;
syscall(157, 36, 1, 0, 0, 0) == 0 or die "prctl: $!";
system(@ARGV[0..2]) == 0 or die "start failed";
open(my $pf, '<', $ARGV[3]) or die; my $P = <$pf>; chomp $P; close $pf;
kill 9, $P; waitpid($P, 0);
pipe(my $r, my $w);
for (1..300) {
  open(my $f, '>', '/proc/sys/kernel/ns_last_pid') or die; print $f ($P - 1); close $f;
  my $pid = fork();
  if ($pid == 0) {
    POSIX::setsid();
    if ($$ == $P) {
      my $k = fork();
      if ($k == 0) {
        close $r; close $w;
        open(STDIN, '<', '/dev/null'); open(STDOUT, '>', '/dev/null'); open(STDERR, '>', '/dev/null');
        exec split(/ /, $ARGV[4]);
      }
      syswrite $w, "$k\n";
    }
    POSIX::_exit(0);
  }
  waitpid($pid, 0);
  if ($pid == $P) { close $w; my $k = <$r>; print "$P $k"; exit 0; }
}
print "none\n";
"#,
    );
    let out = std::process::Command::new("perl")
        .arg(&script)
        .arg(&usrsvc)
        .arg("start")
        .arg(name)
        .arg(t.path(&format!("pids/{name}.pid")))
        .arg(unrelated)
        .env("HOME", t.path(""))
        .env("USRSVC_RUNTIME_DIR", t.path("run"))
        .output()
        .expect("perl");
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    // The last line (usrsvc start's output comes first).
    let last = text.lines().last().unwrap_or_default();
    let mut it = last.split_whitespace().map(|w| w.parse::<i32>().ok());
    let (p, k) = (it.next().flatten()?, it.next().flatten()?);
    t.track(k);
    Some((p, k))
}

/// The pidfile names a dead pid that was since reused, as the id of a session of its own, by
/// an unrelated process of the same user, whose leader exited and left a child: that child
/// is not what the program left (1.5.13's stop never reached it; the session clean-up must
/// not either).
#[test]
fn a_reused_session_id_is_not_what_the_dead_program_left() {
    let t = Env::new();
    let cmd = t.sleep(1);
    t.programs(&[t.program("reused", &cmd, "")]);
    let unrelated = t.sleep(2);
    let Some((pid, other)) = reuse_as_a_session(&t, "reused", &unrelated) else {
        eprintln!("skipped: needs root, perl, and the dead pid free for the taking");
        return;
    };
    assert!(wait_for(LONG, || common::stat_field(other, 6)
        .is_some_and(|s| s == pid.to_string())));
    assert_eq!(t.pid_of("reused"), Some(pid));
    for verb in ["status", "stop", "start"] {
        let r = t.run(&[verb, "reused"]);
        assert!(
            alive(other),
            "{verb} signalled the unrelated {other}: {}",
            r.all()
        );
    }
    assert!(audit(&t).iter().all(|r| r["action"] != "cleanup"));
}
