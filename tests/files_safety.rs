//! The files usrsvc writes are opened safely (README "Files usrsvc writes, and what is
//! checked"): a symlink planted at a log is refused and its target untouched, a FIFO never
//! blocks a start or a reread, and a log in a folder another user can write is refused unless
//! the folder is sticky and the file ours. Real files, FIFOs, symlinks and, as root, another
//! user (65534) through `setpriv`.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use common::daemon::kill9;
use common::{pids_matching, read, Env, Run};

const STABLE: &str = "stable_seconds = 0.2";

/// Long enough for any loaded machine; a command that takes longer is hung.
const HUNG: Duration = Duration::from_secs(60);

fn chmod(p: &Path, mode: u32) {
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).expect("chmod");
}

fn mkfifo(p: &Path) {
    nix::unistd::mkfifo(p, nix::sys::stat::Mode::from_bits_truncate(0o600)).expect("mkfifo");
}

/// Runs `cmd`, killing it and failing the test if it has not exited within [`HUNG`].
#[track_caller]
fn run_within(what: &str, mut cmd: Command) -> Run {
    let mut child = cmd
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn");
    let end = Instant::now() + HUNG;
    while child.try_wait().expect("try_wait").is_none() {
        if Instant::now() > end {
            let _ = child.kill();
            let out = child.wait_with_output().expect("wait");
            panic!(
                "{what} hung for {HUNG:?}\n--- stderr:\n{}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let out: Output = child.wait_with_output().expect("wait");
    Run {
        cmd: what.to_owned(),
        out,
    }
}

/// A program section like `Env::program`'s, with both logs at `log` (and the pidfile at
/// `pidfile` when given).
fn section(t: &Env, name: &str, command: &str, log: &str, pidfile: Option<&str>) -> String {
    let h = t.home.display();
    let pidfile = pidfile.map_or_else(|| format!("{h}/pids/{name}.pid"), str::to_owned);
    format!(
        "[Program:{name}]\ncommand = {command}\npidfile = {pidfile}\nstdout = {log}\n\
         stderr = {log}\nsuccess_seconds = 0.5\nterm_to_kill_seconds = 5\n"
    )
}

fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

#[test]
fn a_symlink_as_program_stdout_is_refused_and_its_target_untouched() {
    let t = Env::new();
    let target = t.path("precious");
    std::fs::write(&target, "precious\n").expect("write");
    std::os::unix::fs::symlink(&target, t.path("logs/p.out")).expect("symlink");
    t.programs(&[t.program("p", &format!("sh -c 'echo out; {}; true'", t.sleep(1)), "")]);

    let r = t.run(&["start", "p"]);
    r.expect_code(136);
    let log = t.path("logs/p.out").display().to_string();
    assert!(
        r.all().contains(&log) && r.all().contains("symbolic link"),
        "{}",
        r.all()
    );
    assert_eq!(read(&target), "precious\n");
    assert!(pids_matching(&t.sleep(1)).is_empty(), "nothing was started");
}

#[test]
fn a_fifo_as_program_stdout_fails_the_start_at_once() {
    let t = Env::new();
    mkfifo(&t.path("logs/p.out"));
    t.programs(&[t.program("p", &t.sleep(1), "")]);
    let r = run_within("usrsvc start p", t.command("usrsvc", &["start", "p"]));
    r.expect_code(136);
    assert!(
        r.all().contains("logs/p.out") && r.all().contains("FIFO"),
        "{}",
        r.all()
    );
    // The lock was not left held: the next command gets it.
    let r = run_within("usrsvc stop p", t.command("usrsvc", &["stop", "p"]));
    assert!(!r.all().contains("lock"), "{}", r.all());
    assert!(pids_matching(&t.sleep(1)).is_empty());
}

#[test]
fn a_log_in_a_folder_anyone_can_write_is_refused_naming_it() {
    let t = Env::new();
    let open = t.path("open");
    std::fs::create_dir(&open).expect("mkdir");
    chmod(&open, 0o777);
    let h = t.home.display();
    t.programs(&[section(
        &t,
        "p",
        &t.sleep(1),
        &format!("{h}/open/p.out"),
        None,
    )]);
    // checkconfig warns of it (the config stays valid: the folder can be fixed before a start).
    let c = t.run_bin("usrsvcd", &["checkconfig"]);
    c.expect_code(0);
    assert!(
        c.all().contains(&format!(
            "Warning: Program p: stdout {h}/open/p.out: refused"
        )),
        "{}",
        c.all()
    );
    let r = t.run(&["start", "p"]);
    r.expect_code(136);
    let text = r.all();
    assert!(
        text.contains(&format!("{h}/open/p.out")) && text.contains("sticky"),
        "{text}"
    );
    assert!(!open.join("p.out").exists(), "the file was not created");
    assert!(pids_matching(&t.sleep(1)).is_empty());

    // The same folder for a pidfile: the start fails and leaves nothing running.
    let q_pid = format!("{h}/open/q.pid");
    let q_log = format!("{h}/logs/q.out");
    t.programs(&[section(&t, "q", &t.sleep(2), &q_log, Some(&q_pid))]);
    let r = t.run(&["start", "q"]);
    r.expect_code(136);
    assert!(r.all().contains("Cannot write pidfile"), "{}", r.all());
    assert!(!open.join("q.pid").exists());
    assert!(common::wait_for(HUNG, || pids_matching(&t.sleep(2)).is_empty()));
}

#[test]
fn a_log_of_ours_in_a_sticky_shared_folder_is_accepted() {
    let t = Env::new();
    let shared = t.path("shared");
    std::fs::create_dir(&shared).expect("mkdir");
    chmod(&shared, 0o1777);
    let h = t.home.display();
    let command = format!("sh -c 'echo hello; {}; true'", t.sleep(1));
    t.programs(&[section(
        &t,
        "p",
        &command,
        &format!("{h}/shared/p.out"),
        None,
    )]);
    t.run(&["start", "p"]).expect_code(0);
    assert!(common::wait_for(HUNG, || read(&shared.join("p.out")).contains("hello")));
    t.run(&["stop", "p"]).expect_code(0);
    // Again, now that the file exists (ours).
    t.run(&["start", "p"]).expect_code(0);
    t.run(&["stop", "p"]).expect_code(0);
}

/// Runs `sh -c SCRIPT` as uid/gid 65534 (root only).
fn as_nobody(script: &str) {
    let ok = Command::new("setpriv")
        .args([
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            "sh",
            "-c",
            script,
        ])
        .status()
        .expect("setpriv");
    assert!(ok.success(), "setpriv sh -c {script}");
}

/// Another user's attacks in folders they can write, as root: a file they created first in a
/// sticky folder, their symlink there, and a folder of theirs.
#[test]
fn another_users_files_and_folders_are_refused() {
    if !is_root() {
        eprintln!("skipped: needs root to act as another user");
        return;
    }
    let t = Env::new();
    // uid 65534 must reach the folders of this test.
    chmod(&t.home, 0o755);
    let shared = t.path("shared");
    std::fs::create_dir(&shared).expect("mkdir");
    chmod(&shared, 0o1777);
    let theirs = shared.join("theirs");
    let precious = t.path("precious");
    std::fs::write(&precious, "precious\n").expect("write");
    let s = shared.display();
    // A folder of ours the attacker would have us write in through their symlink.
    let ours = t.path("ours");
    std::fs::create_dir(&ours).expect("mkdir");
    as_nobody(&format!(
        "touch {s}/a.out && chmod 666 {s}/a.out && ln -s {} {s}/b.out && mkdir -m 755 {s}/theirs \
         && ln -s {} {s}/way",
        precious.display(),
        ours.display()
    ));
    for (name, log, why) in [
        ("a", format!("{s}/a.out"), "belongs to uid 65534"),
        ("b", format!("{s}/b.out"), "symbolic link"),
        ("c", format!("{s}/theirs/c.out"), "belongs to uid 65534"),
        ("d", format!("{s}/way/d.out"), "symbolic link of uid 65534"),
    ] {
        let command = format!("sh -c 'echo root data; {}; true'", t.sleep(1));
        t.programs(&[section(&t, name, &command, &log, None)]);
        let r = t.run(&["start", name]);
        r.expect_code(136);
        assert!(
            r.all().contains(&log) && r.all().contains(why),
            "{name}: {}",
            r.all()
        );
    }
    assert_eq!(
        read(&shared.join("a.out")),
        "",
        "nothing written to their file"
    );
    assert_eq!(read(&precious), "precious\n");
    assert!(!theirs.join("c.out").exists());
    assert!(
        !ours.join("d.out").exists(),
        "nothing created through their symlink"
    );
    assert!(pids_matching(&t.sleep(1)).is_empty());
}

#[test]
fn a_symlinked_audit_log_is_not_written_through() {
    let t = Env::new();
    let target = t.path("precious");
    std::fs::write(&target, "precious\n").expect("write");
    let audit = t.path("run/trail.log");
    std::os::unix::fs::symlink(&target, &audit).expect("symlink");
    let p = t.program("p", &t.sleep(1), "");
    t.config(&format!("[Main]\naudit_log = {}\n\n{p}", audit.display()));
    let r = t.run(&["start", "p"]);
    r.expect_code(0);
    assert!(
        r.all().contains("Warning: audit") && r.all().contains("symbolic link"),
        "{}",
        r.all()
    );
    assert_eq!(read(&target), "precious\n");
    t.run(&["stop", "p"]).expect_code(0);
}

#[test]
fn a_refused_daemon_log_fails_usrsvcd_start() {
    let t = Env::new();
    let target = t.path("precious");
    std::fs::write(&target, "precious\n").expect("write");
    let log = t.path("logs/usrsvcd.log");
    std::os::unix::fs::symlink(&target, &log).expect("symlink");
    t.config(&format!(
        "[Main]\nusrsvcd_stdout = {}\n\n{}",
        log.display(),
        t.program("p", &t.sleep(1), STABLE)
    ));
    let r = run_within("usrsvcd start", t.command("usrsvcd", &["start"]));
    if r.code() == 0 {
        let _ = t.run_bin("usrsvcd", &["stop"]);
    }
    r.expect_code(136);
    assert!(
        r.all().contains(&log.display().to_string()) && r.all().contains("symbolic link"),
        "{}",
        r.all()
    );
    assert_eq!(read(&target), "precious\n");
    assert!(pids_matching(&t.sleep(1)).is_empty());
}

/// A FIFO as the new daemon log: the reread is rejected at once (the daemon is not stuck in
/// `open`), the old config stays, and a crashed program is still restarted.
#[test]
fn a_fifo_as_the_daemon_log_rejects_the_reread() {
    let t = Env::new();
    let log = t.path("logs/usrsvcd.log");
    let fifo = t.path("logs/fifo.log");
    mkfifo(&fifo);
    let p = t.program("p", &t.sleep(1), STABLE);
    let main = |out: &Path| format!("[Main]\nusrsvcd_stdout = {}\n\n", out.display());
    t.config(&format!("{}{p}", main(&log)));
    let mut d = t.daemon_logging_to(log.clone(), &[]);
    let pid = t.wait_running("p");
    d.expect_watching("p", pid);

    t.config(&format!(
        "{}{p}{}",
        main(&fifo),
        t.program("q", &t.sleep(2), STABLE)
    ));
    let r = run_within("usrsvcd reread", t.command("usrsvcd", &["reread"]));
    assert_ne!(r.code(), 0, "{}", r.all());
    assert!(r.all().contains("FIFO"), "{}", r.all());
    d.expect_log("Cannot apply the new config");
    assert!(d.is_alive(), "{}", d.dump());
    assert_eq!(d.count("q is new in the config"), 0, "{}", d.dump());

    kill9(pid);
    let new = t.wait_new_pid("p", pid);
    d.expect_watching("p", new);
    assert!(pids_matching(&t.sleep(2)).is_empty(), "q was started");
}
