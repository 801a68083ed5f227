//! `usrsvcd` against real processes, files and signals: restarts after a crash (pidfd and
//! `/proc` polling), a daemon that dies or stops while programs keep running, rereads good and
//! bad, the operator's stop, back-off and `maxrestarts`, monitors, the instance lock, log
//! reopening and JSON logs, busy program locks and sd_notify.
//!
//! Each test runs its own daemon (`Env::daemon`, `--debug --log-format json`) and waits on
//! what the daemon logs or does, with generous deadlines; a negative check ("not restarted")
//! first waits for an event that proves the daemon has had its chance.

mod common;

use std::time::Duration;

use common::daemon::{json_lines, json_msgs, kill9, LONG};
use common::{alive, pids_matching, wait_for, Env};
use nix::sys::signal::Signal;

/// A program that restarts at once after a kill (its run counts as stable after 0.2 s).
const STABLE: &str = "stable_seconds = 0.2";

fn cmdline(pid: i32) -> String {
    String::from_utf8_lossy(&std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default())
        .replace('\0', " ")
        .trim_end()
        .to_owned()
}

/// How many pidfds `pid` holds open.
fn pidfds(pid: i32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .expect("fd dir")
        .flatten()
        .filter(|e| {
            std::fs::read_link(e.path()).is_ok_and(|l| l.to_string_lossy().contains("pidfd"))
        })
        .count()
}

fn restarted_after_kill9(poll: bool) {
    let t = Env::new();
    t.programs(&[t.program("p", &t.sleep(1), STABLE)]);
    let d = if poll {
        t.daemon_with(&[("USRSVCD_WATCH", "poll")])
    } else {
        t.daemon()
    };
    let pid = t.wait_running("p");
    d.expect_watching("p", pid);
    assert_eq!(
        pidfds(d.pid) > 0,
        !poll,
        "pidfds held by the daemon, poll mode = {poll}"
    );

    kill9(pid);
    let new = t.wait_new_pid("p", pid);
    d.expect_watching("p", new);
    assert_eq!(cmdline(new), t.sleep(1));
    assert_eq!(pids_matching(&t.sleep(1)), vec![new], "exactly one p");
    let crash = d.expect_log(&format!("p crashed: pid {pid} exited"));
    assert!(
        crash["msg"].as_str().unwrap_or("").contains("signal 9"),
        "{crash}"
    );
    assert_eq!(
        crash["program"], "p",
        "the daemon's lines about p name it: {crash}"
    );
    d.expect_log("p has stopped running, and autorestart=True. Trying to start [Attempt 1].");
}

#[test]
fn killed_program_is_restarted_pidfd() {
    restarted_after_kill9(false);
}

#[test]
fn killed_program_is_restarted_proc_polling() {
    restarted_after_kill9(true);
}

#[test]
fn killed_daemon_leaves_programs_and_the_next_one_adopts_them() {
    let t = Env::new();
    t.programs(&[
        t.program("a", &t.sleep(1), STABLE),
        t.program("b", &t.sleep(2), STABLE),
    ]);
    let mut d1 = t.daemon();
    let a = t.wait_running("a");
    let b = t.wait_running("b");
    d1.expect_watching("a", a);
    d1.expect_watching("b", b);

    d1.kill9();
    assert!(alive(a) && alive(b), "programs die with the daemon");

    let d2 = t.daemon();
    d2.expect_watching("a", a);
    d2.expect_watching("b", b);
    assert!(alive(a) && alive(b));
    assert_eq!((t.pid_of("a"), t.pid_of("b")), (Some(a), Some(b)));
    for m in d2.msgs() {
        assert!(
            !m.contains("Trying to start") && !m.contains("Starting "),
            "the new daemon started something: {m}\n{}",
            d2.dump()
        );
    }
}

#[test]
fn sigterm_stops_the_daemon_only() {
    let t = Env::new();
    t.programs(&[t.program("p", &t.sleep(1), STABLE)]);
    let mut d = t.daemon();
    let pid = t.wait_running("p");
    d.expect_watching("p", pid);
    let pidfile = t.path(&format!("{}_usrsvcd.pid", nix::unistd::getuid()));
    assert_eq!(
        common::read(&pidfile).trim(),
        d.pid.to_string(),
        "[Main] pidfile"
    );

    assert_eq!(d.stop(), Some(0));
    assert!(!pidfile.exists(), "the daemon removes its pidfile");
    assert!(alive(pid), "the program keeps running");
    assert_eq!(t.pid_of("p"), Some(pid));
    d.expect_log("usrsvcd got SIGTERM, shutting down.");
    t.run_bin("usrsvcd", &["status"]).expect_code(1);
}

#[test]
fn bad_config_on_sigusr1_is_reported_and_the_old_one_stays() {
    let t = Env::new();
    let good = format!("[Main]\n\n{}", t.program("p", &t.sleep(1), STABLE));
    t.config(&good);
    let line = good.lines().count() + 1;
    let cfg = t.path("usrsvc.cfg");
    let d = t.daemon();
    let mut pid = t.wait_running("p");
    d.expect_watching("p", pid);

    let cases = [
        ("this line has no equals", "Invalid line"),
        ("success_seconds = 0.4", "Duplicate keyword name"),
        ("bogus_key = 1", "Unknown config options: ['bogus_key']"),
    ];
    for (n, (bad, what)) in cases.iter().enumerate() {
        t.config(&format!("{good}{bad}\n"));
        d.signal(Signal::SIGUSR1);
        d.expect_count("Keeping the running configuration.", n + 1);
        let error = format!("Error in configuration: {}:{line}: ", cfg.display());
        assert!(
            d.msgs()
                .iter()
                .any(|m| m.starts_with(&error) && m.contains(what)),
            "no {error:?} … {what:?} in the log:\n{}",
            d.dump()
        );
        // Still alive and still supervising with the old config.
        kill9(pid);
        pid = t.wait_new_pid("p", pid);
        d.expect_watching("p", pid);
    }
    assert_eq!(d.count("Successfully loaded new config."), 0);

    let r = t.run_bin("usrsvcd", &["reread"]);
    r.expect_code(130);
    assert!(r.stderr().contains("bogus_key"), "{}", r.stderr());
    t.config(&good);
    t.run_bin("usrsvcd", &["reread"]).expect_code(0);
    d.expect_log("Successfully loaded new config.");
    assert_eq!(t.pid_of("p"), Some(pid), "a reread restarts nothing");
}

/// Lines where the daemon decides to start `name`.
fn start_decisions(d: &common::daemon::Daemon, name: &str) -> usize {
    d.count(&format!("{name} was not running and autostart"))
        + d.count(&format!("{name} has stopped running"))
}

#[test]
fn operator_stop_is_respected_across_daemons_until_start() {
    let t = Env::new();
    t.programs(&[
        t.program("p", &t.sleep(1), STABLE),
        t.program("q", &t.sleep(2), STABLE),
    ]);
    let mut d = t.daemon();
    let p = t.wait_running("p");
    let q = t.wait_running("q");
    d.expect_watching("p", p);
    d.expect_watching("q", q);

    t.run(&["stop", "p"]).expect_code(0);
    assert!(!alive(p));
    d.expect_log(
        "p is not running: stopped by the operator; not starting it until \"usrsvc start p\".",
    );
    let decided = start_decisions(&d, "p");
    // A nudge makes the daemon look at p again; a crash of q, handled after it, proves the
    // daemon went round its loop since.
    d.signal(Signal::SIGUSR2);
    kill9(q);
    let q = t.wait_new_pid("q", q);
    d.expect_watching("q", q);
    assert_eq!(start_decisions(&d, "p"), decided, "{}", d.dump());
    assert!(pids_matching(&t.sleep(1)).is_empty(), "p was started again");

    // A new daemon respects it too.
    assert_eq!(d.stop(), Some(0));
    let d = t.daemon();
    d.expect_watching("q", q);
    d.expect_log(
        "p is not running: stopped by the operator; not starting it until \"usrsvc start p\".",
    );
    assert_eq!(start_decisions(&d, "p"), 0, "{}", d.dump());
    assert!(pids_matching(&t.sleep(1)).is_empty(), "p was started again");

    // `usrsvc start` hands it back to the daemon.
    t.run(&["start", "p"]).expect_code(0);
    let p = t.wait_running("p");
    d.expect_watching("p", p);
    kill9(p);
    let p2 = t.wait_new_pid("p", p);
    d.expect_watching("p", p2);
    d.expect_log(&format!("p crashed: pid {p} exited"));
}

fn log_time(line: &serde_json::Value) -> chrono::DateTime<chrono::FixedOffset> {
    let text = line["time"].as_str().expect("time");
    chrono::DateTime::parse_from_rfc3339(text).expect("RFC 3339 time")
}

#[test]
fn crash_loop_backs_off_and_gives_up_at_maxrestarts() {
    let t = Env::new();
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
    t.programs(&[t.program(
        "c",
        &script.display().to_string(),
        "success_seconds = 0.3\nrestart_delay = 0\nmaxrestarts = 3\nstable_seconds = 1000",
    )]);
    let d = t.daemon();
    d.expect_log("c has reached the maximum number of restarts 3");

    let attempts: Vec<_> = d
        .lines()
        .into_iter()
        .filter(|l| {
            l["msg"]
                .as_str()
                .is_some_and(|m| m.starts_with("c ") && m.contains("Trying to start [Attempt"))
        })
        .collect();
    assert_eq!(attempts.len(), 3, "{}", d.dump());
    for (i, a) in attempts.iter().enumerate() {
        let m = a["msg"].as_str().unwrap_or_default();
        assert!(m.contains(&format!("[Attempt {}]", i + 1)), "{m}");
    }
    let times: Vec<_> = attempts.iter().map(log_time).collect();
    let gap = |i: usize| (times[i + 1] - times[i]).num_milliseconds();
    // restart_delay = 0: failures back off from 1 s, doubling.
    d.expect_log("restarting it in 1.0 s (back-off after 1 consecutive failure)");
    d.expect_log("restarting it in 2.0 s (back-off after 2 consecutive failures)");
    assert!(gap(0) >= 1000, "first gap {} ms\n{}", gap(0), d.dump());
    assert!(gap(1) >= 2000, "second gap {} ms\n{}", gap(1), d.dump());

    // The operator fixes it and starts it; the daemon supervises it again.
    std::fs::remove_file(&broken).expect("unbreak");
    t.run(&["start", "c"]).expect_code(0);
    let pid = t.wait_running("c");
    d.expect_log(&format!(
        "c is running again (pid {pid}); supervising it again."
    ));
    assert_eq!(d.count("reached the maximum number of restarts"), 1);
    assert_eq!(d.count("Trying to start [Attempt"), 3, "{}", d.dump());
}

/// The `[[Monitoring]]` block of a test: looked at every 0.2 s from the start.
fn monitoring(keys: &str) -> String {
    format!("[[Monitoring]]\nmonitor_after = 0\ncheck_interval = 0.2\n{keys}")
}

#[test]
fn rss_limit_restarts_the_program() {
    let t = Env::new();
    let big = t.path("big");
    std::fs::write(&big, "").expect("flag");
    // The first run holds 64 MiB (a filled string: touched pages); the restarted one does
    // not. The size is a variable: perl folds a constant `'x' x N` at compile time, and
    // every run would hold it. perl stays the process, so the pidfile keeps naming it.
    let script = t.script(
        "alloc.pl",
        &format!(
            "my $n = 64 * 1024 * 1024;\nif (-e '{b}') {{ unlink '{b}'; $x = 'x' x $n; }}\nsleep({m}1);\n",
            b = big.display(),
            m = t.marker
        ),
    );
    t.programs(&[t.program(
        "r",
        &format!("/usr/bin/perl {}", script.display()),
        &format!("{STABLE}\n{}", monitoring("rss_limit = 30000")),
    )]);
    let d = t.daemon();
    let fired = d.expect_log("MONITOR ( RSS Limit Monitor ): RSS size ");
    let msg = fired["msg"].as_str().unwrap_or_default();
    let pid: i32 = msg
        .split("exceeds limit of 30000kB (pid ")
        .nth(1)
        .and_then(|rest| rest.trim_end_matches(')').parse().ok())
        .unwrap_or_else(|| panic!("{msg}"));
    d.expect_watching("r", pid);
    let new = t.wait_new_pid("r", pid);
    d.expect_watching("r", new);
    assert!(!alive(pid), "the big one is gone");
    assert!(cmdline(new).contains("alloc.pl"), "{}", cmdline(new));
    // The new run is small: checked every 0.2 s, it is left alone.
    assert!(
        !wait_for(Duration::from_secs(1), || !alive(new)),
        "{}",
        d.dump()
    );
    assert_eq!(d.count("MONITOR ("), 1, "{}", d.dump());
}

#[test]
fn activity_file_monitor_restarts_a_silent_program_and_spares_a_busy_one() {
    let t = Env::new();
    let stale = t.path("stale");
    let beat = t.path("beat");
    std::fs::write(&stale, "").expect("stale");
    std::fs::write(&beat, "").expect("beat");
    let toucher = t.script(
        "beat.sh",
        &format!(
            "#!/bin/sh\nwhile :; do touch {}; sleep 0.2; done\n",
            beat.display()
        ),
    );
    t.programs(&[
        t.program(
            "silent",
            &t.sleep(1),
            &format!(
                "stable_seconds = 1000\nmaxrestarts = 2\n{}",
                monitoring(&format!(
                    "activityfile = {}\nactivityfile_limit = 1",
                    stale.display()
                ))
            ),
        ),
        t.program(
            "busy",
            &toucher.display().to_string(),
            &format!(
                "{STABLE}\n{}",
                monitoring(&format!(
                    "activityfile = {}\nactivityfile_limit = 2",
                    beat.display()
                ))
            ),
        ),
    ]);
    let d = t.daemon();
    let silent = t.wait_running("silent");
    let busy = t.wait_running("busy");
    d.expect_watching("busy", busy);

    d.expect_log(&format!(
        "MONITOR ( Activity File Monitor ): it has not modified activity file ( {} )",
        stale.display()
    ));
    let new = t.wait_new_pid("silent", silent);
    d.expect_watching("silent", new);
    // The second firing exhausts maxrestarts = 2: left running, no longer restarted.
    d.expect_log("silent has reached the maximum number of restarts 2");
    assert!(alive(new));
    assert_eq!(t.pid_of("silent"), Some(new));

    // By now busy has been checked every 0.2 s for well over its limit.
    assert!(alive(busy));
    assert_eq!(t.pid_of("busy"), Some(busy));
    assert_eq!(
        d.count(&format!("activity file ( {} )", beat.display())),
        0,
        "{}",
        d.dump()
    );
}

#[test]
fn reread_adds_and_removes_programs() {
    let t = Env::new();
    let keep = t.program("keep", &t.sleep(1), STABLE);
    let gone = t.program("gone", &t.sleep(2), STABLE);
    let added = t.program("added", &t.sleep(3), STABLE);
    t.programs(&[keep.clone(), gone]);
    let d = t.daemon();
    let k = t.wait_running("keep");
    let g = t.wait_running("gone");
    d.expect_watching("keep", k);
    d.expect_watching("gone", g);

    t.programs(&[keep, added]);
    t.run_bin("usrsvcd", &["reread"]).expect_code(0);
    d.expect_log("gone is no longer in the config");
    d.expect_log("added is new in the config");
    let a = t.wait_running("added");
    d.expect_watching("added", a);
    assert!(alive(g), "a removed program is left running");

    kill9(g);
    // keep's restart, after gone's death, shows the daemon has handled both.
    kill9(k);
    let k2 = t.wait_new_pid("keep", k);
    d.expect_watching("keep", k2);
    assert!(pids_matching(&t.sleep(2)).is_empty(), "gone was restarted");
    assert_eq!(start_decisions(&d, "gone"), 1, "{}", d.dump());
    assert!(alive(a));
}

#[test]
fn start_stop_status_restart_of_the_daemon() {
    let t = Env::new();
    t.programs(&[t.program("p", &t.sleep(1), STABLE)]);
    let log = t.path("run/usrsvcd.log");

    let args = ["start", "--debug", "--log-format", "json"];
    let first = t.piped(t.command("usrsvcd", &args));
    let second = t.piped(t.command("usrsvcd", &args));
    let outs = [first, second].map(|c| c.wait_with_output().expect("wait"));
    let mut codes: Vec<_> = outs.iter().map(|o| o.status.code()).collect();
    codes.sort();
    assert_eq!(codes, [Some(0), Some(135)], "{outs:?}");
    let pid = t.daemon_pid().expect("instance lock names the daemon");
    let d = t.attach_daemon(pid, log.clone());
    let winner = outs.iter().find(|o| o.status.success()).expect("winner");
    assert!(
        String::from_utf8_lossy(&winner.stdout).contains(&format!("usrsvcd started as pid: {pid}"))
    );
    let loser = outs.iter().find(|o| !o.status.success()).expect("loser");
    assert!(String::from_utf8_lossy(&loser.stderr).contains("already running"));
    let home = t.home.display().to_string();
    let daemons =
        || pids_matching_all(|c| c.contains("usrsvcd --foreground") && c.contains(&home)).len();
    assert!(wait_for(LONG, || daemons() == 1), "one daemon only");

    t.run_bin("usrsvcd", &["status"]).expect_code(0);
    let p = t.wait_running("p");
    d.expect_watching("p", p);

    let r = t.run_bin("usrsvcd", &["restart", "--debug", "--log-format", "json"]);
    r.expect_code(0);
    let pid2 = t.daemon_pid().expect("new daemon");
    assert_ne!(pid2, pid);
    assert!(!alive(pid));
    drop(d);
    let d = t.attach_daemon(pid2, log);
    d.expect_count(&format!("(p) - watching pid {p}"), 2);
    assert_eq!(
        t.pid_of("p"),
        Some(p),
        "restart of the daemon keeps programs"
    );
    assert!(alive(p));

    t.run_bin("usrsvcd", &["stop"]).expect_code(0);
    assert!(!alive(pid2));
    t.run_bin("usrsvcd", &["status"]).expect_code(1);
    t.run_bin("usrsvcd", &["stop"]).expect_code(0);
    assert!(alive(p));
    drop(d);
}

/// Live processes whose cmdline (joined by spaces) satisfies `f`.
fn pids_matching_all(f: impl Fn(&str) -> bool) -> Vec<i32> {
    std::fs::read_dir("/proc")
        .expect("/proc")
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| alive(*pid) && f(&cmdline(*pid)))
        .collect()
}

#[test]
fn daemon_that_cannot_come_up_says_why_and_leaves_nothing() {
    let t = Env::new();
    let prog = t.program("p", &t.sleep(1), STABLE);
    let home = t.home.display().to_string();
    let no_daemon = || {
        wait_for(LONG, || {
            pids_matching_all(|c| c.contains("usrsvcd") && c.contains(&home)).is_empty()
        })
    };

    let pidfile = t.path("nodir/usrsvcd.pid");
    t.config(&format!(
        "[Main]\npidfile = {}\n\n{prog}",
        pidfile.display()
    ));
    let r = t.run_bin("usrsvcd", &["start"]);
    r.expect_code(136);
    assert!(
        r.stderr().contains(&format!(
            "usrsvcd did not start: Failed to write PID file ( {} )",
            pidfile.display()
        )),
        "{}",
        r.stderr()
    );
    assert!(no_daemon(), "a daemon was left behind");
    t.run_bin("usrsvcd", &["status"]).expect_code(1);

    t.config(&format!("[Main]\n\n{prog}bogus_key = 1\n"));
    let r = t.run_bin("usrsvcd", &["start"]);
    r.expect_code(130);
    assert!(
        r.stderr().contains("Error in configuration"),
        "{}",
        r.stderr()
    );
    assert!(no_daemon(), "a daemon was left behind");
    t.run_bin("usrsvcd", &["status"]).expect_code(1);
    t.run_bin("usrsvcd", &["stop"]).expect_code(0);
    assert!(pids_matching(&t.sleep(1)).is_empty());
}

#[test]
fn log_is_reopened_on_reread_and_every_line_is_json() {
    let t = Env::new();
    let log = t.path("logs/usrsvcd.log");
    t.config(&format!(
        "[Main]\nusrsvcd_stdout = {}\nusrsvcd_stderr = stdout\n\n{}",
        log.display(),
        t.program("p", &t.sleep(1), STABLE)
    ));
    let d = t.daemon_logging_to(log.clone(), &[]);
    let pid = t.wait_running("p");
    d.expect_watching("p", pid);

    let rotated = t.path("logs/usrsvcd.log.1");
    std::fs::rename(&log, &rotated).expect("rotate");
    t.run_bin("usrsvcd", &["reread"]).expect_code(0);
    d.expect_log("Successfully loaded new config.");
    kill9(pid);
    let new = t.wait_new_pid("p", pid);
    d.expect_watching("p", new);

    let old_msgs = json_msgs(&rotated);
    assert!(old_msgs.iter().any(|m| m.contains("Got SIGUSR1")));
    for m in &old_msgs {
        assert!(
            !m.contains("Successfully loaded") && !m.contains("crashed"),
            "written to the rotated log: {m}"
        );
    }
    d.expect_log(&format!("p crashed: pid {pid}"));
    // The worker's lines, with their program field, land in the new file too.
    assert!(d.lines().iter().any(|l| l["program"] == "p"
        && l["msg"]
            .as_str()
            .is_some_and(|m| m.starts_with("Started p"))));
    for l in d.lines().iter().chain(json_lines(&rotated).iter()) {
        assert!(l["time"].is_string() && l["level"].is_string() && l["msg"].is_string());
        log_time(l);
    }
}

/// Holds the lock of program `name` with `flock` until the returned pids are killed.
fn hold_lock(t: &Env, name: &str, n: u32) -> Vec<i32> {
    let lock = t.path(&format!("run/lock.{name}"));
    let mut cmd = std::process::Command::new("flock");
    cmd.arg(&lock)
        .args(t.sleep(n).split(' '))
        .stdin(std::process::Stdio::null());
    // flock and its sleep carry the test's marker: the harness kills them if the test fails.
    let holder = cmd.spawn().expect("flock").id() as i32;
    let held = wait_for(LONG, || pids_matching(&t.sleep(n)).len() == 1);
    assert!(held, "flock did not run its command");
    let mut pids = pids_matching(&t.sleep(n));
    pids.push(holder);
    pids
}

fn release(pids: &[i32]) {
    for pid in pids {
        kill9(*pid);
    }
    // flock is our child: reap it.
    let _ = nix::sys::wait::waitpid(
        nix::unistd::Pid::from_raw(pids[pids.len() - 1]),
        Some(nix::sys::wait::WaitPidFlag::WNOHANG),
    );
}

#[test]
fn held_program_lock_defers_start_and_restart() {
    let t = Env::new();
    t.programs(&[t.program("p", &t.sleep(1), STABLE)]);
    let holder = hold_lock(&t, "p", 9);
    let d = t.daemon();
    // The daemon looks again every 0.2 s while the lock is held: give it many looks.
    assert!(
        !wait_for(Duration::from_secs(2), || t.pid_of("p").is_some()
            || !pids_matching(&t.sleep(1)).is_empty()),
        "started while its lock was held"
    );
    assert_eq!(start_decisions(&d, "p"), 0);
    release(&holder);
    let pid = t.wait_running("p");
    d.expect_watching("p", pid);

    let holder = hold_lock(&t, "p", 8);
    kill9(pid);
    d.expect_log(&format!(
        "p (pid {pid}) exited killed by signal 9 (SIGKILL) while a usrsvc command works on it."
    ));
    assert!(
        !wait_for(Duration::from_secs(2), || !pids_matching(&t.sleep(1))
            .is_empty()),
        "restarted while its lock was held"
    );
    assert_eq!(start_decisions(&d, "p"), 1);
    release(&holder);
    let new = t.wait_new_pid("p", pid);
    d.expect_watching("p", new);
}

#[test]
fn sd_notify_ready_and_programs_do_not_inherit_notify_socket() {
    let t = Env::new();
    t.programs(&[t.program("p", &t.sleep(1), STABLE)]);
    let path = t.path("notify.sock");
    let sock = std::os::unix::net::UnixDatagram::bind(&path).expect("bind");
    sock.set_read_timeout(Some(LONG)).expect("timeout");
    let mut d = t.daemon_with(&[("NOTIFY_SOCKET", path.to_str().expect("utf-8"))]);
    let mut buf = [0u8; 512];
    let n = sock.recv(&mut buf).expect("READY=1 within the deadline");
    let msg = String::from_utf8_lossy(&buf[..n]).into_owned();
    assert!(msg.lines().any(|l| l == "READY=1"), "{msg:?}");

    let pid = t.wait_running("p");
    d.expect_watching("p", pid);
    let environ = std::fs::read(format!("/proc/{pid}/environ")).expect("environ");
    let vars: Vec<_> = environ.split(|b| *b == 0).collect();
    assert!(
        vars.iter().any(|v| v.starts_with(b"USRSVC_RUNTIME_DIR=")),
        "environ unreadable?"
    );
    assert!(
        !vars.iter().any(|v| v.starts_with(b"NOTIFY_SOCKET=")),
        "the program inherited NOTIFY_SOCKET"
    );

    assert_eq!(d.stop(), Some(0));
    let mut seen = Vec::new();
    while let Ok(n) = sock.recv(&mut buf) {
        let m = String::from_utf8_lossy(&buf[..n]).into_owned();
        let stopping = m.contains("STOPPING=1");
        seen.push(m);
        if stopping {
            break;
        }
    }
    assert!(seen.iter().any(|m| m.contains("STOPPING=1")), "{seen:?}");
}
/// A program that hands over to a fresh copy of itself (as a server does for a binary
/// upgrade) and exits 0: the daemon sees the exit, and its restart must adopt the new copy,
/// not start a second one — whether the daemon started the program (the copy is then the
/// daemon's descendant) or adopted it (the copy is found by the scan).
fn hand_over(started_by_daemon: bool) {
    let t = Env::new();
    let script = t.script(
        "handover.sh",
        &format!(
            "#!/bin/sh\n\
             trap 'kill $! 2>/dev/null; setsid \"$0\" \"$@\" </dev/null >/dev/null 2>&1 & exit 0' USR1\n\
             {} &\nwait\n",
            t.sleep(1)
        ),
    );
    let title = format!("/bin/sh {}", script.display());
    t.programs(&[t.program("h", &script.display().to_string(), STABLE)]);
    if !started_by_daemon {
        t.run(&["start", "h"]).expect_code(0);
    }
    let d = t.daemon();
    let pid = t.wait_running("h");
    d.expect_watching("h", pid);
    assert_eq!(pids_matching(&title), vec![pid]);

    common::daemon::signal(pid, Signal::SIGUSR1);
    let new = t.wait_new_pid("h", pid);
    d.expect_watching("h", new);
    d.expect_log("Matched h from running process");
    // Give a wrongly started second copy every chance to show up.
    assert!(
        !wait_for(Duration::from_secs(2), || pids_matching(&title).len() > 1),
        "a second copy was started: {:?}\n{}",
        pids_matching(&title),
        d.dump()
    );
    assert_eq!(pids_matching(&title), vec![new]);
    // A hand-over, not a crash, and in the audit trail with both pids.
    let audit = || -> Vec<serde_json::Value> {
        common::read(&t.path("run/audit.log"))
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    };
    let record = || {
        audit()
            .into_iter()
            .find(|r| r["action"] == "adopt" && r["new_pid"] == new)
    };
    assert!(wait_for(LONG, || record().is_some()), "{:?}", audit());
    let r = record().expect("record");
    assert_eq!(r["old_pid"], pid, "{r}");
    assert_eq!(r["trigger"], "crash", "{r}");
    // The daemon's own descendant is found among its descendants when it exits, unless the
    // copy is still between fork and exec: then the worker's scan finds it.
    if started_by_daemon && r["result"] == "handover" {
        d.expect_log(&format!("h handed over from pid {pid} to pid {new}"));
        assert_eq!(d.count("h crashed"), 0, "{}", d.dump());
    } else {
        assert_eq!(r["result"], "already running", "{r}");
    }
}

#[test]
fn a_program_that_hands_over_to_a_new_copy_is_adopted_not_doubled() {
    hand_over(true);
}

#[test]
fn an_adopted_program_that_hands_over_is_adopted_not_doubled() {
    hand_over(false);
}

/// Integers of any size are valid config values (1.5.13 had unbounded integers); a deadline
/// made from one must not overflow and take the daemon down.
#[test]
fn huge_durations_do_not_crash_the_daemon() {
    let t = Env::new();
    t.programs(&[t.program(
        "p",
        &t.sleep(1),
        "restart_delay = 20000000000000000000\nemail_interval = 99999999999999999999\n\
         [[Monitoring]]\nmonitor_after = 99999999999999999999\nrss_limit = 1\n",
    )]);
    t.run_bin("usrsvcd", &["checkconfig"]).expect_code(0);
    let mut d = t.daemon();
    let pid = t.wait_running("p");
    d.expect_watching("p", pid);
    kill9(pid);
    d.expect_log(&format!("p crashed: pid {pid} exited"));
    d.expect_log("p is not running; restarting it in");
    t.run_bin("usrsvcd", &["reread"]).expect_code(0);
    d.expect_log("Successfully loaded new config.");
    assert!(d.is_alive(), "{}", d.dump());
}

/// `usrsvc start|stop|restart` nudge the daemon; a nudge must not postpone another
/// program's restart that is waiting out its back-off.
#[test]
fn nudges_do_not_postpone_a_back_off() {
    let t = Env::new();
    t.programs(&[
        t.program("a", &t.sleep(1), "restart_delay = 1"),
        t.program("b", &t.sleep(2), STABLE),
    ]);
    let d = t.daemon();
    let a = t.wait_running("a");
    let b = t.wait_running("b");
    d.expect_watching("a", a);
    d.expect_watching("b", b);
    kill9(a);
    d.expect_log("a is not running; restarting it in 2.0 s");
    let start = std::time::Instant::now();
    // Nudges every 0.3 s, for longer than the back-off.
    let mut restarted = false;
    while start.elapsed() < Duration::from_secs(6) {
        t.run(&["start", "b"]).expect_code(0);
        if t.pid_of("a").is_some_and(|p| p != a && alive(p)) {
            restarted = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(300));
    }
    assert!(restarted, "a was not restarted while nudged\n{}", d.dump());
    assert_eq!(
        d.count("a is not running; restarting it in"),
        1,
        "{}",
        d.dump()
    );
}

/// A reread whose new log or pidfile cannot be written is rejected as a whole: the old config
/// stays (no new program is started) and `usrsvcd reread` says so.
#[test]
fn reread_with_an_unwritable_log_keeps_the_old_config() {
    let t = Env::new();
    let log = t.path("logs/usrsvcd.log");
    let main = format!(
        "[Main]\nusrsvcd_stdout = {}\nusrsvcd_stderr = stdout\n\n",
        log.display()
    );
    let p = t.program("p", &t.sleep(1), STABLE);
    t.config(&format!("{main}{p}"));
    let mut d = t.daemon_logging_to(log.clone(), &[]);
    let pid = t.wait_running("p");
    d.expect_watching("p", pid);

    for bad in [
        "usrsvcd_stdout = /nonexistent/dir/usrsvcd.log",
        "pidfile = /nonexistent/dir/d.pid",
    ] {
        t.config(&format!(
            "[Main]\n{bad}\n\n{p}{}",
            t.program("q", &t.sleep(2), STABLE)
        ));
        let r = t.run_bin("usrsvcd", &["reread"]);
        r.expect_code(130);
        assert!(r.stderr().contains("/nonexistent/dir"), "{}", r.stderr());
        d.expect_log("Cannot apply the new config");
        assert!(d.is_alive(), "{}", d.dump());
        assert_eq!(d.count("q is new in the config"), 0, "{}", d.dump());
        assert!(pids_matching(&t.sleep(2)).is_empty(), "q was started");
    }
    // The old config is still in force: p is restarted after a crash.
    kill9(pid);
    let new = t.wait_new_pid("p", pid);
    d.expect_watching("p", new);
}

/// `usrsvcd start` detaches: with `usrsvcd_stdout` set and `usrsvcd_stderr` not, errors go to
/// the log too, not to the terminal the daemon was started from.
#[test]
fn a_detached_daemon_writes_errors_to_its_log_not_the_terminal() {
    let t = Env::new();
    let log = t.path("logs/usrsvcd.log");
    t.config(&format!(
        "[Main]\nusrsvcd_stdout = {}\n\n{}",
        log.display(),
        t.program("p", &t.sleep(1), STABLE)
    ));
    t.run_bin("usrsvcd", &["start", "--debug", "--log-format", "json"])
        .expect_code(0);
    let pid = t.daemon_pid().expect("daemon");
    let d = t.attach_daemon(pid, log.clone());
    let fd2 = std::fs::read_link(format!("/proc/{pid}/fd/2")).expect("fd 2");
    assert_eq!(fd2, log);
    let p = t.wait_running("p");
    d.expect_watching("p", p);
    kill9(p);
    // An error-level line, in the log.
    let crash = d.expect_log(&format!("p crashed: pid {p}"));
    assert_eq!(crash["level"], "error");
}
