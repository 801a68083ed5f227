//! `usrsvcd stop|restart|status|reread` against a real daemon: a restart that checks what a
//! new daemon needs before it stops the running one, actions that refuse a daemon running
//! another config file, `status` (human and `--json`), rereads that run off the loop's
//! thread (a crash restart is never delayed by one) and rereads that would drop most programs.
//!
//! Each test runs its own daemon in its own HOME and runtime dir, and waits on what the daemon
//! logs or does, with generous deadlines.

mod common;

use common::daemon::{kill9, LONG};
use common::{alive, wait_for, Env};
use nix::sys::signal::Signal;
use serde_json::Value;

/// A program that restarts at once after a kill (its run counts as stable after 0.2 s).
const STABLE: &str = "stable_seconds = 0.2";

fn json(text: &str) -> Value {
    serde_json::from_str(text.trim()).unwrap_or_else(|e| panic!("not JSON ({e}): {text:?}"))
}

#[test]
fn restart_checks_the_new_daemon_first_and_leaves_the_running_one() {
    let t = Env::new();
    let prog = t.program("p", &t.sleep(1), STABLE);
    t.programs(std::slice::from_ref(&prog));
    let d = t.daemon();
    let p = t.wait_running("p");
    d.expect_watching("p", p);
    let cases = [
        // An invalid config.
        (
            format!("[Main]\n\n{prog}bogus_key = 1\n"),
            130,
            "Error in configuration",
        ),
        // A pidfile in a folder that does not exist.
        (
            format!(
                "[Main]\npidfile = {}\n\n{prog}",
                t.path("nodir/usrsvcd.pid").display()
            ),
            136,
            "Failed to write PID file",
        ),
        // A log that cannot be opened.
        (
            format!(
                "[Main]\nusrsvcd_stdout = {}\n\n{prog}",
                t.path("nodir/usrsvcd.log").display()
            ),
            136,
            "Cannot open usrsvcd_stdout",
        ),
    ];
    for (config, code, why) in cases {
        t.config(&config);
        let r = t.run_bin("usrsvcd", &["restart"]);
        r.expect_code(code);
        assert!(r.stderr().contains(why), "{}", r.stderr());
        assert!(
            r.stderr().contains(&format!(
                "the running daemon (pid {}) was left running",
                d.pid
            )),
            "{}",
            r.stderr()
        );
        assert!(alive(d.pid), "the daemon was stopped");
        assert_eq!(t.daemon_pid(), Some(d.pid));
    }
    // Still supervising.
    kill9(p);
    let p2 = t.wait_new_pid("p", p);
    d.expect_watching("p", p2);

    // A good config: the old daemon goes, a new one comes.
    t.programs(&[prog]);
    t.run_bin("usrsvcd", &["restart"]).expect_code(0);
    let new = t.daemon_pid().expect("a new daemon");
    assert_ne!(new, d.pid);
    let _guard = t.attach_daemon(new, t.path("run/usrsvcd.log"));
    assert!(!alive(d.pid));
    assert!(alive(p2), "programs keep running across a daemon restart");
}

#[test]
fn actions_refuse_a_daemon_that_runs_another_config_file() {
    let t = Env::new();
    t.programs(&[t.program("p", &t.sleep(1), STABLE)]);
    let other = t.path("other.cfg");
    std::fs::write(
        &other,
        format!("[Main]\n\n{}", t.program("q", &t.sleep(2), STABLE)),
    )
    .expect("other config");
    let d = t.daemon();
    let p = t.wait_running("p");
    d.expect_watching("p", p);
    let mine = t.path("usrsvc.cfg");

    let b = other.display().to_string();
    for action in ["stop", "status", "reread", "restart"] {
        let r = t.run_bin("usrsvcd", &["--config", &b, action]);
        r.expect_code(1);
        assert!(
            r.stderr().contains(&format!(
                "usrsvcd (pid {}) runs the config file {}, not {b}: not acting on it",
                d.pid,
                mine.display()
            )),
            "{action}: {}",
            r.stderr()
        );
        assert!(
            alive(d.pid),
            "{action} acted on the daemon of another config"
        );
    }
    assert_eq!(d.count("Got SIGUSR1"), 0, "{}", d.dump());
    assert!(t.pid_of("q").is_none(), "the other config was loaded");
    let r = t.run_bin("usrsvcd", &["--config", &b, "status", "--json"]);
    r.expect_code(1);
    let doc = json(&r.stdout());
    assert_eq!(doc["config_file"], mine.display().to_string());

    // The same file by another name is the same file.
    let link = t.path("cfg/link.cfg");
    std::os::unix::fs::symlink(&mine, &link).expect("symlink");
    let via = t.run_bin(
        "usrsvcd",
        &["--config", link.to_str().expect("utf-8"), "status"],
    );
    via.expect_code(0);
    assert!(
        via.stdout()
            .contains(&format!("config file: {}", mine.display())),
        "{}",
        via.stdout()
    );
    // No --config: the default file, which is the one it runs.
    let r = t.run_bin("usrsvcd", &["reread"]);
    r.expect_code(0);
    assert!(
        r.stdout().contains(&format!(
            "usrsvcd loaded the new config ({})",
            mine.display()
        )),
        "{}",
        r.stdout()
    );
}

#[test]
fn status_shows_the_config_file_the_kill_switch_and_json() {
    let t = Env::new();
    let switch = t.path("switch");
    t.config(&format!(
        "[Main]\nkill_switch_file = {}\n\n{}",
        switch.display(),
        t.program("p", &t.sleep(1), STABLE)
    ));
    let r = t.run_bin("usrsvcd", &["status", "--json"]);
    r.expect_code(1);
    assert_eq!(json(&r.stdout())["running"], false);

    let d = t.daemon();
    let p = t.wait_running("p");
    d.expect_watching("p", p);
    let status = |args: &[&str]| {
        let mut doc = Value::Null;
        // The state file is published right after the loop settles.
        let ok = wait_for(LONG, || {
            let r = t.run_bin("usrsvcd", args);
            doc = json(&r.stdout());
            r.code() == 0 && doc["programs"][0]["state"] == "running"
        });
        assert!(ok, "{doc}");
        doc
    };
    let doc = status(&["status", "--json"]);
    assert_eq!(doc["running"], true);
    assert_eq!(doc["pid"], d.pid);
    assert_eq!(
        doc["config_file"],
        t.path("usrsvc.cfg").display().to_string()
    );
    assert_eq!(doc["kill_switch"]["file"], switch.display().to_string());
    assert_eq!(doc["kill_switch"]["on"], false);
    let prog = &doc["programs"][0];
    assert_eq!(prog["name"], "p");
    assert_eq!(prog["pid"], p);
    assert_eq!(prog["restarts"], 0);
    assert!(prog.get("backoff_until").is_some(), "{prog}");

    std::fs::write(&switch, "").expect("switch on");
    let doc = status(&["status", "--json"]);
    assert_eq!(doc["kill_switch"]["on"], true);
    let human = t.run_bin("usrsvcd", &["status"]);
    human.expect_code(0);
    let out = human.stdout();
    assert!(
        out.contains(&format!("config file: {}", t.path("usrsvc.cfg").display())),
        "{out}"
    );
    assert!(out.contains("kill switch: ON"), "{out}");
    std::fs::remove_file(&switch).expect("switch off");
    let out = t.run_bin("usrsvcd", &["status"]).stdout();
    assert!(out.contains("kill switch: off"), "{out}");
}

/// `count` programs p0.. and the config text with the first `keep` of them.
fn many(t: &Env, count: u32, keep: u32) -> (Vec<String>, String) {
    let sections: Vec<String> = (0..count)
        .map(|i| t.program(&format!("p{i}"), &t.sleep(10 + i), STABLE))
        .collect();
    let text = format!("[Main]\n\n{}", sections[..keep as usize].join("\n"));
    (sections, text)
}

/// A daemon on `sections` (programs `p0`, `p1`, …), once it watches each of them; their pids.
fn watching<'t>(t: &'t Env, sections: &[String]) -> (common::daemon::Daemon<'t>, Vec<i32>) {
    t.programs(sections);
    let d = t.daemon();
    let pids: Vec<i32> = (0..sections.len())
        .map(|i| t.wait_running(&format!("p{i}")))
        .collect();
    for (i, pid) in pids.iter().enumerate() {
        d.expect_watching(&format!("p{i}"), *pid);
    }
    (d, pids)
}

#[test]
fn a_reread_that_drops_most_programs_is_refused_unless_forced() {
    let t = Env::new();
    let (sections, cut) = many(&t, 3, 1);
    let (d, pids) = watching(&t, &sections);

    // Cut short: one program of three left.
    t.config(&cut);
    let r = t.run_bin("usrsvcd", &["reread"]);
    r.expect_code(1);
    assert!(
        r.stderr()
            .contains("would end the supervision of 2 of the 3 programs"),
        "{}",
        r.stderr()
    );
    assert!(
        r.stderr().contains("usrsvcd reread --force"),
        "{}",
        r.stderr()
    );
    d.expect_log("would end the supervision of 2 of the 3 programs usrsvcd manages (p1, p2)");
    // Emptied, and by a signal (no way to say --force): refused the same way.
    t.config("[Main]\n");
    d.signal(Signal::SIGHUP);
    d.expect_log("would end the supervision of 3 of the 3 programs");
    assert_eq!(d.count("is no longer in the config"), 0, "{}", d.dump());
    // Still supervised.
    kill9(pids[2]);
    let p2 = t.wait_new_pid("p2", pids[2]);
    d.expect_watching("p2", p2);

    t.config(&cut);
    let r = t.run_bin("usrsvcd", &["reread", "--force"]);
    r.expect_code(0);
    d.expect_log("Forced (usrsvcd reread --force): 2 of the 3 programs are no longer managed.");
    d.expect_log("p2 is no longer in the config");
    d.expect_log("p1 is no longer in the config");
    // A --force is for one reread only.
    t.config("[Main]\n");
    t.run_bin("usrsvcd", &["reread"]).expect_code(1);
}

/// `usrsvcd restart` with a config cut short is refused like a reread of it (it silently ended
/// the supervision of every program), and `--force` restarts with it anyway.
#[test]
fn a_restart_that_drops_most_programs_is_refused_unless_forced() {
    let t = Env::new();
    let (sections, cut) = many(&t, 3, 1);
    let (d, pids) = watching(&t, &sections);
    for config in [cut.clone(), "[Main]\n".to_string()] {
        t.config(&config);
        let r = t.run_bin("usrsvcd", &["restart"]);
        r.expect_code(1);
        assert!(
            r.stderr().contains("would end the supervision of")
                && r.stderr().contains("usrsvcd restart --force")
                && r.stderr().contains(&format!(
                    "the running daemon (pid {}) was left running",
                    d.pid
                )),
            "{}",
            r.stderr()
        );
        assert_eq!(t.daemon_pid(), Some(d.pid));
    }
    // Still supervised.
    kill9(pids[2]);
    let p2 = t.wait_new_pid("p2", pids[2]);
    d.expect_watching("p2", p2);

    t.config(&cut);
    t.run_bin("usrsvcd", &["restart", "--force"]).expect_code(0);
    let new = t.daemon_pid().expect("a new daemon");
    assert_ne!(new, d.pid);
    let _guard = t.attach_daemon(new, t.path("run/usrsvcd.log"));
    assert!(!alive(d.pid));
}

/// A reread whose config takes long to load (held by the test hook) does not delay the
/// restart of a program that crashes meanwhile.
#[test]
fn a_slow_reread_does_not_delay_a_crash_restart() {
    let t = Env::new();
    t.programs(&[t.program("p", &t.sleep(1), STABLE)]);
    let gate = t.path("gate");
    std::fs::write(&gate, "").expect("gate");
    let d = t.daemon_with(&[("USRSVCD_TEST_REREAD_GATE", gate.to_str().expect("utf-8"))]);
    let p = t.wait_running("p");
    d.expect_watching("p", p);

    d.signal(Signal::SIGUSR1);
    d.expect_log("Got SIGUSR1, reprocessing config.");
    kill9(p);
    let new = t.wait_new_pid("p", p);
    d.expect_watching("p", new);
    assert_eq!(
        d.count("Successfully loaded new config"),
        0,
        "the reread was not held: {}",
        d.dump()
    );
    let r = t.run_bin("usrsvcd", &["status", "--json"]);
    assert_eq!(
        json(&r.stdout())["reread_in_progress"],
        true,
        "{}",
        r.stdout()
    );
    std::fs::remove_file(&gate).expect("open the gate");
    d.expect_log("Successfully loaded new config");
}

/// A FIFO as the new daemon log: opening it for writing blocks until a reader comes. The
/// reread waits (or refuses it), the loop goes on restarting programs.
#[test]
fn a_fifo_as_the_daemon_log_does_not_block_the_loop_on_reread() {
    let t = Env::new();
    let prog = t.program("p", &t.sleep(1), STABLE);
    t.programs(std::slice::from_ref(&prog));
    let d = t.daemon();
    let p = t.wait_running("p");
    d.expect_watching("p", p);
    let fifo = t.path("logs/daemon.fifo");
    nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).expect("mkfifo");
    t.config(&format!(
        "[Main]\nusrsvcd_stdout = {}\n\n{prog}",
        fifo.display()
    ));
    d.signal(Signal::SIGUSR1);
    d.expect_log("Got SIGUSR1, reprocessing config.");
    kill9(p);
    let new = t.wait_new_pid("p", p);
    d.expect_watching("p", new);

    // A reread that hangs does not hold back the ones after it for ever: after 30 s, a new
    // one goes ahead (the config is fixed meanwhile).
    t.programs(std::slice::from_ref(&prog));
    let loaded = wait_for(LONG * 3, || {
        d.signal(Signal::SIGUSR1);
        d.count("Successfully loaded new config") > 0
    });
    assert!(loaded, "{}", d.dump());
}

#[test]
fn a_stopped_program_has_no_health_verdict_and_an_undefined_one_says_so() {
    let t = Env::new();
    t.programs(&[t.program(
        "p",
        &t.sleep(1),
        &format!("{STABLE}\n[[HealthCheck:probe]]\ncommand = true\ninterval = 0.2\ntimeout = 5\n"),
    )]);
    let d = t.daemon();
    let p = t.wait_running("p");
    d.expect_watching("p", p);
    d.expect_log("health check probe is healthy");
    let healthy = |args: &[&str]| t.run_bin("usrsvc", args).stdout().contains("healthy");
    assert!(wait_for(LONG, || healthy(&["status", "p"])));
    assert!(t
        .run_bin("usrsvcd", &["status"])
        .stdout()
        .contains("healthy"));

    t.run(&["stop", "p"]).expect_code(0);
    d.expect_log(&format!("p (pid {p}) exited"));
    let gone = wait_for(LONG, || {
        !healthy(&["status", "p"])
            && !t
                .run_bin("usrsvcd", &["status"])
                .stdout()
                .contains("health")
    });
    assert!(
        gone,
        "usrsvc status: {}\nusrsvcd status: {}",
        t.run(&["status", "p"]).stdout(),
        t.run_bin("usrsvcd", &["status"]).stdout()
    );
    let r = t.run(&["status", "p", "--json"]);
    let doc = json(&r.stdout());
    assert_eq!(doc["state"], "stopped");
    assert_eq!(doc["health"], serde_json::json!([]), "{doc}");

    let r = t.run(&["status", "nosuch", "--json"]);
    r.expect_code(133);
    let doc = json(&r.stdout());
    assert_eq!(doc["error"], "PROGRAM_UNDEFINED");
    assert_eq!(doc["state"], "undefined");
}

/// The audit records of the default audit log (in the runtime directory).
fn audit(t: &Env) -> Vec<Value> {
    common::read(&t.path("run/audit.log"))
        .lines()
        .map(json)
        .collect()
}

#[test]
fn a_crash_restart_is_audited_with_the_pid_it_replaces() {
    let t = Env::new();
    t.programs(&[t.program("p", &t.sleep(1), STABLE)]);
    let d = t.daemon();
    let p = t.wait_running("p");
    d.expect_watching("p", p);
    kill9(p);
    let new = t.wait_new_pid("p", p);
    d.expect_watching("p", new);
    let found = wait_for(LONG, || {
        audit(&t)
            .iter()
            .any(|r| r["trigger"] == "crash" && r["new_pid"] == new)
    });
    assert!(found, "{:?}", audit(&t));
    let rec = audit(&t)
        .into_iter()
        .find(|r| r["trigger"] == "crash" && r["new_pid"] == new)
        .expect("record");
    assert_eq!(rec["action"], "start");
    assert_eq!(rec["result"], "ok");
    assert_eq!(rec["old_pid"], p, "{rec}");
}

#[test]
fn while_the_kill_switch_is_on_a_monitor_episode_is_logged_once() {
    let t = Env::new();
    let switch = t.path("switch");
    std::fs::write(&switch, "").expect("switch on");
    t.config(&format!(
        "[Main]\nkill_switch_file = {}\n\n{}",
        switch.display(),
        t.program(
            "m",
            &t.sleep(1),
            &format!(
                "{STABLE}\n[[Monitoring]]\nmonitor_after = 0\ncheck_interval = 0.2\nrss_limit = 1\n"
            )
        )
    ));
    let d = t.daemon();
    let p = t.wait_running("m");
    d.expect_watching("m", p);
    d.expect_log("not restarting it for the monitor: the kill switch");
    // Three more checks found it over the limit.
    d.expect_count("still fires; held back by the kill switch", 3);
    let episode = d
        .msgs()
        .iter()
        .filter(|m| m.starts_with("MONITOR ("))
        .count();
    assert_eq!(episode, 1, "{}", d.dump());
    assert_eq!(d.count("not restarting it for the monitor"), 1);
    assert_eq!(t.pid_of("m"), Some(p));
    assert!(alive(p));
    // The switch goes off: the restart happens.
    std::fs::remove_file(&switch).expect("switch off");
    let new = t.wait_new_pid("m", p);
    d.expect_watching("m", new);
}
