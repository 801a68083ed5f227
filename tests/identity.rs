//! Which process is the program, against real processes: never usrsvc's own caller, only a
//! process wholly of the user's uid, never a thread id, always what usrsvc launched and
//! recorded (whatever its title says now), never the orphans of the caller's background jobs;
//! a failed start removes what it launched, also under another uid, and says what it saw.

mod common;

use std::time::Duration;

use common::{alive, status_field, wait_for, Env};

const LONG: Duration = Duration::from_secs(30);

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

fn have_perl() -> bool {
    let ok = std::process::Command::new("perl")
        .arg("-e1")
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        eprintln!("SKIPPED: no perl");
    }
    ok
}

/// Runs `script` in `sh -c` with the test's environment; returns stdout+stderr and the code.
fn sh(t: &Env, script: &str) -> (String, Option<i32>) {
    let out = t.command("sh", &["-c", script]).output().expect("sh");
    (
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
        out.status.code(),
    )
}

#[test]
fn a_pidfile_naming_the_shell_that_runs_usrsvc_is_never_signalled() {
    let t = Env::new();
    let name = format!("worker{}", t.marker);
    // The shell's cmdline names the program, so proctitle_re matches it.
    t.programs(&[t.program(&name, &t.sleep(1), &format!("proctitle_re = {name}"))]);
    let pidfile = t.path(&format!("pids/{name}.pid"));
    let bin = common::bin("usrsvc");
    let verbs = [
        format!("stop {name}"),
        format!("status {name}"),
        format!("restart {name}"),
        format!("signal {name} HUP"),
    ];
    for verb in verbs {
        let (text, code) = sh(
            &t,
            &format!(
                "echo $$ > {}; {} {verb}; echo shell-survived",
                pidfile.display(),
                bin.display()
            ),
        );
        assert!(text.contains("shell-survived"), "{verb}: {code:?}\n{text}");
        assert!(
            text.contains("the usrsvc command that asks"),
            "{verb}: {text}"
        );
        t.run(&["stop", &name]).expect_code(0);
    }
    // Exec'd: the pid in the file is usrsvc's own.
    let (text, code) = sh(
        &t,
        &format!(
            "echo $$ > {}; exec {} stop {name}",
            pidfile.display(),
            bin.display()
        ),
    );
    assert_eq!(code, Some(0), "{text}");
    assert!(text.contains(&format!("{name} was not running.")), "{text}");
}

#[test]
fn a_process_with_another_real_uid_is_never_adopted_nor_signalled() {
    if !is_root() || !have_perl() {
        eprintln!("SKIPPED: needs root and perl");
        return;
    }
    let t = Env::new();
    let sleeper = t.sleep(1);
    t.programs(&[t.program("mixed", &sleeper, "")]);
    // Real uid 65534, effective and saved uid 0: /proc/PID is owned by root, the cmdline is
    // the program's.
    let mut other = std::process::Command::new("perl")
        .arg("-e")
        .arg(format!(
            "$< = 65534; $< == 65534 or die; exec 'sleep', '{}1'",
            t.marker
        ))
        .spawn()
        .expect("perl");
    let pid = other.id() as i32;
    t.track(pid);
    assert!(wait_for(LONG, || {
        status_field(pid, "Uid").is_some_and(|u| u.starts_with("65534\t0"))
            && common::pids_matching(&sleeper) == [pid]
    }));
    let r = t.run(&["status", "mixed"]);
    r.expect_code(1);
    assert!(!r.all().contains("Matched"), "{}", r.all());
    std::fs::write(t.path("pids/mixed.pid"), format!("{pid}\n")).expect("write");
    let r = t.run(&["stop", "mixed"]);
    r.expect_code(0);
    assert!(
        r.stderr()
            .contains("it belongs to real uid 65534, effective uid 0, saved uid 0"),
        "{}",
        r.all()
    );
    assert!(r.stdout().contains("mixed was not running."), "{}", r.all());
    assert!(
        other.try_wait().expect("try_wait").is_none(),
        "never signalled"
    );
    let _ = other.kill();
    let _ = other.wait();
}

#[test]
fn a_pidfile_holding_a_thread_id_is_not_the_program() {
    if !have_perl() {
        return;
    }
    if !std::process::Command::new("perl")
        .args(["-Mthreads", "-e1"])
        .status()
        .is_ok_and(|s| s.success())
    {
        eprintln!("SKIPPED: perl has no threads");
        return;
    }
    let t = Env::new();
    let tidfile = t.path("tid");
    let script = t.script(
        "threaded.pl",
        &format!(
            "#!/usr/bin/perl\nuse threads;\nmy $t = threads->create(sub {{ my $l = readlink('/proc/thread-self'); $l =~ s{{.*/}}{{}}; open(F, '>', '{}.new'); print F $l; close F; rename('{0}.new', '{0}'); sleep 1 while 1; }});\nsleep 1 while 1;\n",
            tidfile.display()
        ),
    );
    let command = format!("{} {}", script.display(), t.marker);
    t.programs(&[t.program("threaded", &command, "")]);
    t.run(&["start", "threaded"]).expect_code(0);
    let pid = t.pid_of("threaded").expect("pidfile");
    assert!(wait_for(LONG, || common::read(&tidfile)
        .parse::<i32>()
        .is_ok()));
    let tid: i32 = common::read(&tidfile).parse().expect("tid");
    assert_ne!(tid, pid);
    std::fs::write(t.path("pids/threaded.pid"), format!("{tid}\n")).expect("write");
    let r = t.run(&["status", "threaded"]);
    r.expect_code(0);
    assert!(
        r.stdout().contains(&format!("'pid': {pid},")),
        "the process, not its thread {tid}: {}",
        r.all()
    );
    assert_eq!(t.pid_of("threaded"), Some(pid), "pidfile repaired");
    std::fs::write(t.path("pids/threaded.pid"), format!("{tid}\n")).expect("write");
    let r = t.run(&["stop", "threaded"]);
    r.expect_code(0);
    assert!(
        r.stdout().contains(&format!("Stopping threaded [{pid}]")),
        "{}",
        r.all()
    );
    assert!(!alive(pid));
}

#[test]
fn a_launched_program_that_rewrites_its_title_is_the_program() {
    if !have_perl() {
        return;
    }
    let t = Env::new();
    let script = t.script(
        "retitle.pl",
        "#!/usr/bin/perl\n$0 = 'something else entirely';\nsleep 1 while 1;\n",
    );
    let command = format!("{} {}", script.display(), t.marker);
    t.programs(&[t.program("retitle", &command, "success_seconds = 1")]);
    let r = t.run(&["start", "retitle"]);
    r.expect_code(0);
    let pid = t.pid_of("retitle").expect("pidfile");
    assert!(
        common::read(&std::path::PathBuf::from(format!("/proc/{pid}/cmdline")))
            .starts_with("something else"),
        "the title was rewritten"
    );
    let r = t.run(&["status", "retitle"]);
    r.expect_code(0);
    assert!(
        r.stdout().contains(&format!("'pid': {pid},")),
        "{}",
        r.all()
    );
    t.run(&["start", "retitle"])
        .expect_code(0)
        .stdout()
        .contains("is already running");
    let r = t.run(&["stop", "retitle"]);
    r.expect_code(0);
    assert!(
        r.stdout().contains(&format!("Stopping retitle [{pid}]")),
        "{}",
        r.all()
    );
    assert!(!alive(pid));
}

#[test]
fn a_launched_program_is_found_after_its_command_changed() {
    let t = Env::new();
    t.programs(&[t.program("changed", &t.sleep(1), "")]);
    t.run(&["start", "changed"]).expect_code(0);
    let pid = t.pid_of("changed").expect("pidfile");
    t.programs(&[t.program("changed", &t.sleep(2), "")]);
    let r = t.run(&["status", "changed"]);
    r.expect_code(0);
    assert!(!r.all().contains("stale"), "{}", r.all());
    assert_eq!(t.pid_of("changed"), Some(pid));
    let r = t.run(&["stop", "changed"]);
    r.expect_code(0);
    assert!(
        r.stdout().contains(&format!("Stopping changed [{pid}]")),
        "{}",
        r.all()
    );
    assert!(!alive(pid));
    // An adopted process (not launched) is still checked against the command.
    let mut hand = t.command("sh", &["-c", &format!("exec {}", t.sleep(1))]);
    let mut hand = hand.spawn().expect("spawn");
    let hand_pid = hand.id() as i32;
    assert!(wait_for(LONG, || common::pids_matching(&t.sleep(1)) == [hand_pid]));
    t.programs(&[t.program("changed", &t.sleep(1), "")]);
    t.run(&["status", "changed"]).expect_code(0);
    assert_eq!(t.pid_of("changed"), Some(hand_pid), "adopted");
    t.programs(&[t.program("changed", &t.sleep(2), "")]);
    let r = t.run(&["status", "changed"]);
    r.expect_code(1);
    assert!(r.stderr().contains("does not match"), "{}", r.all());
    let _ = hand.kill();
    let _ = hand.wait();
}

#[test]
fn the_pidfile_names_the_new_process_during_the_window() {
    let t = Env::new();
    t.programs(&[t.program("window", &t.sleep(1), "success_seconds = 60")]);
    let mut start = t.spawn(&["start", "window"]);
    assert!(wait_for(LONG, || common::pids_matching(&t.sleep(1)).len() == 1));
    let pid = common::pids_matching(&t.sleep(1))[0];
    assert!(
        wait_for(LONG, || t.pid_of("window") == Some(pid)),
        "pidfile {:?}",
        t.pid_of("window")
    );
    assert!(
        start.try_wait().expect("try_wait").is_none(),
        "in the window"
    );
    // `status` (which cannot take the lock the start holds) sees it running.
    let r = t.run(&["status", "window"]);
    r.expect_code(0);
    assert!(
        r.stdout().contains(&format!("'pid': {pid},")),
        "{}",
        r.all()
    );
    let _ = start.kill();
    let _ = start.wait();
}

#[test]
fn a_failed_start_removes_the_pidfile_it_wrote_at_launch() {
    let t = Env::new();
    let go = t.path("go");
    t.programs(&[t.program(
        "shortlived",
        &format!(
            "\"while [ ! -e {} ]; do sleep 0.05; done; exit 3\"",
            go.display()
        ),
        "useshell = true\nsuccess_seconds = 60",
    )]);
    let mut start = t.spawn(&["start", "shortlived"]);
    assert!(wait_for(LONG, || t.pid_of("shortlived").is_some()));
    std::fs::write(&go, "").expect("go");
    let out = start.wait().expect("wait");
    assert_eq!(out.code(), Some(137));
    assert_eq!(t.pid_of("shortlived"), None);
    assert!(
        !t.path("pids/shortlived.pid").exists(),
        "pidfile removed after the failed start"
    );
    let _ = start.kill();
}

/// A shell that has a background job whose orphan, started during the launch (once the
/// launch has touched `launched`), matches `proctitle_re`, then `exec usrsvc start NAME`.
/// The launched program waits for the orphan (`orphan-ready`) before it goes on.
fn orphan_scenario(t: &Env, program_tail: &str) -> (String, Option<i32>, i32) {
    let d = t.home.display();
    let orphan = t.script(
        "orphan.pl",
        &format!(
            "#!/usr/bin/perl\n$0 = 'TITLE{m}';\nopen(F, '>', '{d}/orphan.pid'); print F $$; close F;\nrename('{d}/orphan.pid', '{d}/orphan-ready');\nsleep 1 while 1;\n",
            m = t.marker
        ),
    );
    let program = t.script(
        "program.sh",
        &format!(
            "#!/bin/sh\ntouch {d}/launched\nwhile [ ! -e {d}/orphan-ready ]; do sleep 0.05; done\n{program_tail}\n"
        ),
    );
    t.programs(&[t.program(
        "prog",
        &program.display().to_string(),
        &format!("proctitle_re = ^TITLE{}$\nsuccess_seconds = 4", t.marker),
    )]);
    let bin = common::bin("usrsvc");
    let (text, code) = sh(
        t,
        &format!(
            "( while [ ! -e {d}/launched ]; do sleep 0.05; done; {} & ) >/dev/null 2>&1 & exec {} start prog",
            orphan.display(),
            bin.display()
        ),
    );
    let orphan_pid: i32 = common::read(&t.path("orphan-ready"))
        .trim()
        .parse()
        .expect("the orphan ran");
    t.track(orphan_pid);
    (text, code, orphan_pid)
}

#[test]
fn a_successful_start_never_adopts_an_orphan_of_the_callers_job() {
    if !have_perl() {
        return;
    }
    let t = Env::new();
    // The program: the script's child, which takes the title after the orphan did.
    let (text, code, orphan) = orphan_scenario(
        &t,
        &format!(
            "perl -e '$0 = \"TITLE\" . \"{}\"; sleep 1 while 1' &\nwait",
            t.marker
        ),
    );
    assert_eq!(code, Some(0), "{text}");
    let pid = t.pid_of("prog").expect("pidfile");
    assert_ne!(pid, orphan, "adopted the caller's orphan:\n{text}");
    assert!(alive(orphan));
    t.run(&["stop", "prog"]).expect_code(0);
    assert!(!alive(pid));
    assert!(alive(orphan), "stop spared the orphan");
}

#[test]
fn a_failed_start_spares_an_orphan_of_the_callers_job() {
    if !have_perl() {
        return;
    }
    let t = Env::new();
    let (text, code, orphan) = orphan_scenario(&t, "exit 3");
    assert_eq!(code, Some(137), "{text}");
    assert!(
        alive(orphan),
        "the failed start killed the caller's orphan:\n{text}"
    );
}

#[test]
fn a_failed_start_removes_what_runs_under_another_uid() {
    if !is_root() {
        eprintln!("SKIPPED: needs root");
        return;
    }
    let t = Env::new();
    let sleeper = t.sleep(1);
    t.programs(&[t.program(
        "dropped",
        &format!("setpriv --reuid=65534 --regid=65534 --clear-groups {sleeper}"),
        "success_seconds = 1",
    )]);
    let r = t.run(&["start", "dropped"]);
    r.expect_code(137);
    assert!(
        r.stderr().contains("it belongs to uid 65534, not to uid 0"),
        "{}",
        r.all()
    );
    assert!(
        common::pids_matching(&sleeper).is_empty(),
        "left running: {:?}\n{}",
        common::pids_matching(&sleeper),
        r.all()
    );
}

#[test]
fn a_failed_start_says_what_it_saw() {
    let t = Env::new();
    // Forks into the background and exits 0; what it forked exits 3 (a port it cannot bind).
    t.programs(&[t.program(
        "gone",
        "\"(sleep 0.2; exit 3) & exit 0\"",
        "useshell = true\nsuccess_seconds = 1.5",
    )]);
    let r = t.run(&["start", "gone"]);
    r.expect_code(137);
    let err = r.stderr();
    assert!(!err.contains("proctitle_re"), "{err}");
    assert!(
        err.contains("(gone) - Failed to find the program (the command"),
        "{err}"
    );
    assert!(err.contains("exited with code=3"), "{err}");
    assert!(
        err.contains("Nothing it started is still running."),
        "{err}"
    );
}

#[test]
fn after_a_command_change_and_a_reread_the_daemons_program_is_still_found() {
    let t = Env::new();
    let stable = "success_seconds = 0.2\nrestart_delay = 0";
    t.programs(&[t.program("p", &t.sleep(1), stable)]);
    let mut d = t.daemon();
    let pid = t.wait_running("p");
    d.expect_watching("p", pid);
    t.programs(&[t.program("p", &t.sleep(2), stable)]);
    t.run_bin("usrsvcd", &["reread"]).expect_code(0);
    let r = t.run(&["status", "p"]);
    r.expect_code(0);
    assert!(
        r.stdout().contains(&format!("'pid': {pid},")),
        "{}",
        r.all()
    );
    assert_eq!(t.pid_of("p"), Some(pid), "the pidfile is kept");
    let r = t.run(&["stop", "p"]);
    r.expect_code(0);
    assert!(
        r.stdout().contains(&format!("Stopping p [{pid}]")),
        "{}",
        r.all()
    );
    assert!(!alive(pid));
    assert_eq!(d.stop(), Some(0));
    assert!(
        common::pids_matching(&t.sleep(2)).is_empty(),
        "nothing restarted it"
    );
}
