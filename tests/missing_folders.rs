//! Missing folders, through the real binaries. A program's stdout or stderr in a folder that
//! does not exist is that program's problem alone (1.5.13 rejected the whole config): loading
//! warns with file, line, key and path, `checkconfig` exits 0, every other program works, and
//! the start of that program fails with exit 136 naming the path — from `usrsvc` and from the
//! daemon, which supervises the others meanwhile and starts it once the folder is there. The
//! daemon's own pidfile in a missing folder is caught by `checkconfig` (exit 136, as `usrsvcd
//! start` ends), while `usrsvc` works on.

mod common;

use common::daemon::LONG;
use common::{wait_for, Env};

/// A config of `lost` (stdout in `HOME/gone/`, which does not exist) and `fine`; the `[Main]`
/// lines are `main`. Returns the line of `lost`'s stdout.
fn two_programs(t: &Env, main: &str) -> usize {
    let h = t.home.display();
    let lost = format!(
        "[Program:lost]\ncommand = {}\npidfile = {h}/pids/lost.pid\nstdout = {h}/gone/lost.out\nsuccess_seconds = 0.5\nrestart_delay = 1\nrestart_delay_max = 1\n",
        t.sleep(1)
    );
    let text = format!("[Main]\n{main}{lost}{}", t.program("fine", &t.sleep(2), ""));
    t.config(&text);
    text.lines()
        .position(|l| l.starts_with("stdout = ") && l.contains("/gone/"))
        .map(|i| i + 1)
        .expect("stdout line")
}

#[test]
fn a_missing_log_folder_fails_only_that_programs_start() {
    let t = Env::new();
    let line = two_programs(&t, "");
    let cfg = t.path("usrsvc.cfg");
    let warning = format!(
        "Warning: {}:{line}: [Program:lost] stdout: Program lost defines a stdout path as \"{}\" but the folder {} does not exist.",
        cfg.display(),
        t.path("gone/lost.out").display(),
        t.path("gone").display()
    );

    let r = t.run_bin("usrsvcd", &["checkconfig"]);
    r.expect_code(0);
    assert!(r.all().contains(&warning), "{}", r.all());

    // 1.5.13: exit 130 for every command on every program.
    let r = t.run(&["status", "fine"]);
    r.expect_code(1);
    assert!(r.all().contains("fine is NOT running"), "{}", r.all());
    t.run(&["start", "fine"]).expect_code(0);
    let fine = t.pid_of("fine").expect("fine's pidfile");
    assert!(common::alive(fine));

    let r = t.run(&["start", "lost"]);
    r.expect_code(136);
    assert!(
        r.stderr()
            .contains(&t.path("gone/lost.out").display().to_string()),
        "the message names the path: {}",
        r.all()
    );
    assert_eq!(t.pid_of("lost"), None);
    t.run(&["status", "lost"]).expect_code(1);
    t.run(&["stop", "fine"]).expect_code(0);
}

#[test]
fn the_daemon_supervises_the_others_and_starts_it_once_the_folder_exists() {
    let t = Env::new();
    two_programs(&t, "");
    let d = t.daemon();
    let fine = t.wait_running("fine");
    d.expect_watching("fine", fine);
    // The daemon logs the failed start with its path, and keeps trying.
    let path = t.path("gone/lost.out").display().to_string();
    d.expect_count(&path, 2);
    assert_eq!(t.pid_of("lost"), None);
    // A crash of the other program is still handled.
    common::daemon::kill9(fine);
    let again = t.wait_new_pid("fine", fine);
    d.expect_watching("fine", again);
    // Once the folder exists, the next attempt starts it.
    std::fs::create_dir(t.path("gone")).expect("mkdir gone");
    let lost = t.wait_running("lost");
    d.expect_watching("lost", lost);
    assert!(
        wait_for(LONG, || t.path("gone/lost.out").exists()),
        "its log is there"
    );
}

#[test]
fn checkconfig_catches_the_daemon_pidfile_in_a_missing_folder() {
    let t = Env::new();
    let pidfile = t.path("nodir/usrsvcd.pid");
    two_programs(&t, &format!("pidfile = {}\n", pidfile.display()));
    std::fs::create_dir(t.path("gone")).expect("mkdir gone");
    let r = t.run_bin("usrsvcd", &["checkconfig"]);
    r.expect_code(136);
    let expected = format!(
        "{}:2: [Main] pidfile: usrsvcd cannot write its pidfile \"{}\": the folder {} does not exist.",
        t.path("usrsvc.cfg").display(),
        pidfile.display(),
        t.path("nodir").display()
    );
    assert!(r.stderr().contains(&expected), "{}", r.all());
    // `usrsvcd start` fails on it with the same code; `usrsvc` does not care.
    let r = t.run_bin("usrsvcd", &["start"]);
    r.expect_code(136);
    assert!(
        r.all().contains(&pidfile.display().to_string()),
        "{}",
        r.all()
    );
    t.run(&["status", "fine"]).expect_code(1);
    // The same for the daemon's log.
    let log = t.path("nolog/usrsvcd.log");
    two_programs(&t, &format!("usrsvcd_stdout = {}\n", log.display()));
    let r = t.run_bin("usrsvcd", &["checkconfig"]);
    r.expect_code(136);
    assert!(
        r.stderr().contains(&format!(
            "{}:2: [Main] usrsvcd_stdout: usrsvcd cannot write its log \"{}\"",
            t.path("usrsvc.cfg").display(),
            log.display()
        )),
        "{}",
        r.all()
    );
    std::fs::create_dir(t.path("nolog")).expect("mkdir nolog");
    t.run_bin("usrsvcd", &["checkconfig"]).expect_code(0);
}
