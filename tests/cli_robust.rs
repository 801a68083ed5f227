//! No input panics either binary: a stdout whose reader went away (`usrsvc history | head -1`)
//! ends a command quietly (exit 141, nothing on stderr about it), and a seeded argv fuzzer
//! (empty names, `..`, slashes, 100 KB and non-UTF-8 arguments, for every verb of both
//! binaries) never gets exit 101 or "panicked at".

mod common;

use std::ffi::OsString;
use std::os::unix::ffi::OsStringExt;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::{wait_for, Env};

/// Runs `cmd` with stdout a pipe whose read end is closed before the command starts (so every
/// write gets EPIPE, however small the output and however fast the command).
fn with_closed_stdout(mut cmd: Command) -> (Option<i32>, String) {
    let (read, write) = nix::unistd::pipe().expect("pipe");
    drop(read);
    let child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::from(write))
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    drop(cmd);
    let out = child.wait_with_output().expect("wait");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[track_caller]
fn assert_quiet_141(what: &str, (code, stderr): (Option<i32>, String)) {
    assert!(
        !stderr.contains("panicked"),
        "{what} panicked on a closed stdout:\n{stderr}"
    );
    assert_eq!(
        code,
        Some(141),
        "{what}: exit 141 on a closed stdout\n{stderr}"
    );
}

/// Many programs with long names, so every listing is far more than a pipe's 64 KB buffer.
fn many_programs(t: &Env, n: usize) {
    let sections: Vec<String> = (0..n)
        .map(|i| {
            let name = format!("prog{i:04}-{}", "x".repeat(60));
            t.program(
                &name,
                &t.sleep(i as u32),
                "enabled = false\nrestart_every = 1h",
            )
        })
        .collect();
    t.programs(&sections);
}

#[test]
fn a_closed_stdout_ends_every_listing_quietly() {
    let t = Env::new();
    many_programs(&t, 700);
    // An audit trail of 2000 records for `history`.
    let record = |i: usize| {
        format!(
            "{{\"time\":\"2026-12-03T12:00:00.000+00:00\",\"host\":\"h\",\"user\":\"u\",\"uid\":0,\"program\":\"prog0000\",\"action\":\"start\",\"trigger\":\"cli\",\"reason\":\"r{i} {}\",\"result\":\"ok\",\"old_pid\":null,\"new_pid\":{i}}}\n",
            "y".repeat(80)
        )
    };
    let audit: String = (0..2000).map(record).collect();
    std::fs::write(t.path("run/audit.log"), audit).expect("audit log");
    for args in [
        &["history", "-n", "2000"][..],
        &["history", "-n", "2000", "--json"],
        &["plan"],
        &["plan", "--json"],
        &["status", "all", "--json"],
        &["--readme"],
    ] {
        assert_quiet_141(
            &format!("usrsvc {}", args.join(" ")),
            with_closed_stdout(t.command("usrsvc", args)),
        );
    }
}

#[test]
fn a_closed_stdout_ends_usrsvcd_status_quietly_and_the_daemon_lives_on() {
    let t = Env::new();
    many_programs(&t, 700);
    let mut d = t.daemon();
    // The daemon's state file lists every program before `status` prints its table.
    assert!(
        wait_for(Duration::from_secs(60), || {
            let out = t.run_bin("usrsvcd", &["status"]);
            out.stdout().lines().filter(|l| l.contains("prog")).count() == 700
        }),
        "usrsvcd status lists the 700 programs"
    );
    assert_quiet_141(
        "usrsvcd status",
        with_closed_stdout(t.command("usrsvcd", &["status"])),
    );
    assert!(d.is_alive(), "the daemon is not hurt by its client's pipe");
}

/// A tiny deterministic generator (xorshift64*), so a failure is reproducible from its seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn pick<'a, T>(&mut self, from: &'a [T]) -> &'a T {
        &from[(self.next() % from.len() as u64) as usize]
    }
}

/// The argument shapes that broke or could break a command line.
fn shapes() -> Vec<OsString> {
    let mut s: Vec<OsString> = [
        "",
        "..",
        ".",
        "/",
        "a/b",
        "../../etc/passwd",
        "a/../../b",
        "-",
        "--",
        "-n",
        "-1",
        "0",
        "18446744073709551616",
        "99999999999",
        "all",
        "group:",
        "program:",
        "group:..",
        "program:a/b",
        "%2E",
        "a\nb",
        " ",
        "é",
        "-P",
        "--json",
        "--force",
        "QUIT",
        "SIGRTMAX",
        "64",
        "p",
        "grp",
    ]
    .iter()
    .map(OsString::from)
    .collect();
    s.push(OsString::from("a".repeat(100 * 1024)));
    s.push(OsString::from(format!(
        "{}/{}",
        "é".repeat(300),
        "../".repeat(2000)
    )));
    s.push(OsString::from_vec(vec![0xff, 0xfe, b'/', b'.', b'.']));
    s.push(OsString::from_vec(b"caf\xe9".to_vec()));
    s
}

#[test]
fn the_argv_fuzzer_never_panics_either_binary() {
    let t = Env::new();
    let cmd = t.sleep(1);
    t.programs(&[
        t.program("p", &cmd, ""),
        "[Group:grp]\nprograms = p\n".to_string(),
    ]);
    let client = [
        "start", "stop", "restart", "status", "signal", "health", "repair", "history", "plan",
        "logs", "bogus",
    ];
    let flags = [
        "--json", "-P", "--force", "-n", "-r", "--reason", "-c", "--config", "--debug",
    ];
    let daemon = ["status", "checkconfig", "stop", "reread", "start", "bogus"];
    let shapes = shapes();
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    for case in 0..300 {
        let usrsvcd = case % 4 == 3;
        let mut args: Vec<OsString> = Vec::new();
        let verbs: &[&str] = if usrsvcd { &daemon } else { &client };
        args.push(rng.pick(verbs).into());
        for _ in 0..(rng.next() % 4) {
            match rng.next() % 3 {
                0 => args.push(rng.pick(&flags).into()),
                _ => args.push(rng.pick(&shapes).clone()),
            }
        }
        if rng.next() % 2 == 0 {
            args.rotate_right(1);
        }
        let bin = if usrsvcd { "usrsvcd" } else { "usrsvc" };
        let mut c = t.command(bin, &[]);
        c.args(&args).stdin(Stdio::null());
        let out = c.output().expect("run");
        let stderr = String::from_utf8_lossy(&out.stderr);
        let shown: Vec<String> = args
            .iter()
            .map(|a| a.to_string_lossy().chars().take(40).collect())
            .collect();
        assert!(
            out.status.code() != Some(101) && !stderr.contains("panicked at"),
            "case {case}: {bin} {shown:?} panicked:\n{stderr}"
        );
        // A start shape that did start a daemon: stopped before the next case.
        if usrsvcd
            && args.iter().any(|a| a == "start")
            && t.run_bin("usrsvcd", &["status"]).code() == 0
        {
            t.run_bin("usrsvcd", &["stop"]).expect_code(0);
            eprintln!("case {case}: {shown:?} started a daemon; stopped it");
        }
    }
    // Nothing the fuzzer did left a daemon or a file outside the runtime dir.
    let status = t.run_bin("usrsvcd", &["status"]);
    assert_ne!(status.code(), 0, "no usrsvcd was started: {}", status.all());
    for entry in std::fs::read_dir(t.path("run")).expect("run dir").flatten() {
        let name = entry.file_name();
        let name = name.to_string_lossy();
        assert!(!name.contains('/'), "{name}");
    }
}

#[test]
fn program_names_with_slashes_and_dots_stay_in_the_runtime_dir() {
    let t = Env::new();
    let escape = format!("../esc{}", t.marker);
    let names = ["..", escape.as_str(), "a/b", ".hidden"];
    let sections: Vec<String> = names
        .iter()
        .enumerate()
        .map(|(i, n)| {
            // Pidfile and logs by index: the name is only ever a lock, mark or record name.
            let prog = t.program(&format!("p{i}"), &t.sleep(i as u32 + 1), "");
            prog.replacen(&format!("[Program:p{i}]"), &format!("[Program:{n}]"), 1)
        })
        .collect();
    t.programs(&sections);
    for n in names {
        t.run(&["start", n]).expect_code(0);
        t.run(&["stop", n]).expect_code(0);
        t.run(&["status", n]).expect_code(1);
    }
    let run = t.path("run");
    let mut files: Vec<String> = std::fs::read_dir(&run)
        .expect("run dir")
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    files.sort();
    for f in &files {
        assert!(
            f == "audit.log"
                || f.starts_with("lock.")
                || f.starts_with("stopped.")
                || f.starts_with("ident."),
            "unexpected file {f} in {files:?}"
        );
    }
    let encoded = format!("lock.%2E.%2Fesc{}", t.marker);
    assert!(files.contains(&encoded), "{encoded} in {files:?}");
    // Nothing landed beside the runtime dir or above it.
    for dir in [t.home.clone(), t.home.join("..")] {
        for e in std::fs::read_dir(&dir).expect("dir").flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            assert!(!name.contains(&t.marker), "{name} in {}", dir.display());
        }
    }
}

#[test]
fn an_action_with_a_closed_stdout_is_carried_out_and_keeps_its_exit_code() {
    // Only the listings stop at a closed pipe: a start or stop in progress finishes (its lock,
    // pidfile and audit record), whatever happens to its progress lines.
    let t = Env::new();
    let cmd = t.sleep(1);
    t.programs(&[t.program("p", &cmd, "")]);
    let (code, stderr) = with_closed_stdout(t.command("usrsvc", &["start", "p"]));
    assert_eq!(code, Some(0), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    let pid = t.pid_of("p").expect("pidfile written");
    assert!(common::alive(pid));
    let (code, stderr) = with_closed_stdout(t.command("usrsvc", &["stop", "p"]));
    assert_eq!(code, Some(0), "{stderr}");
    assert!(wait_for(Duration::from_secs(30), || !common::alive(pid)));
    let history = t.run(&["history", "p"]);
    assert!(history.stdout().contains("stop"), "{}", history.all());
}

#[test]
fn a_closed_stderr_panics_nothing_either() {
    let t = Env::new();
    t.config("[Main]\nbogus = 1\n");
    for (bin, args, code) in [
        ("usrsvc", &["--help"][..], 138),
        ("usrsvc", &["--version"], 138),
        ("usrsvcd", &["--help"], 138),
        ("usrsvc", &["status", "p"], 130),
        ("usrsvcd", &["checkconfig"], 130),
        ("usrsvc", &["too", "many", "words"], 130),
    ] {
        let (read, write) = nix::unistd::pipe().expect("pipe");
        drop(read);
        let mut cmd = t.command(bin, args);
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::from(write))
            .spawn()
            .expect("spawn");
        drop(cmd);
        let status = child.wait().expect("wait");
        assert_eq!(
            status.code(),
            Some(code),
            "{bin} {args:?} with a closed stderr"
        );
    }
}
