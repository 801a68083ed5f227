//! `usrsvc logs NAME [-n N] [-f]`: the tail of a program's logs, labelled when stderr is a file
//! of its own; `-f` follows appended lines, a `copytruncate` rotation and a rename rotation.
//! A FIFO planted as the log is refused at once, not read (it would hang the command).

mod common;

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, Stdio};
use std::sync::mpsc::{channel, Receiver};
use std::time::{Duration, Instant};

use common::Env;

const LONG: Duration = Duration::from_secs(30);

fn setup(t: &Env, separate_stderr: bool) {
    let cmd = t.sleep(1);
    let mut prog = t.program("web", &cmd, "");
    if !separate_stderr {
        prog = prog.replace(
            &format!("stderr = {}/logs/web.err", t.home.display()),
            "stderr = stdout",
        );
    }
    t.programs(&[prog]);
}

fn append(path: &std::path::Path, text: &str) {
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .expect("open log");
    f.write_all(text.as_bytes()).expect("append");
}

fn numbered(prefix: &str, n: usize) -> String {
    (1..=n).map(|i| format!("{prefix} {i}\n")).collect()
}

#[test]
fn logs_shows_the_last_lines_of_stdout_and_a_separate_stderr_labelled() {
    let t = Env::new();
    setup(&t, true);
    append(&t.path("logs/web.out"), &numbered("out", 30));
    append(&t.path("logs/web.err"), &numbered("err", 3));
    let r = t.run(&["logs", "web", "-n", "5"]);
    r.expect_code(0);
    let out = r.stdout();
    let want_out: String = (26..=30).map(|i| format!("out {i}\n")).collect();
    assert!(out.contains(&want_out), "{out}");
    assert!(!out.contains("out 25\n"), "{out}");
    assert!(
        out.contains("(stdout) <==") && out.contains("(stderr) <=="),
        "{out}"
    );
    assert!(out.contains("err 1\nerr 2\nerr 3\n"), "{out}");

    // Ten lines by default; `program:NAME` names the program too.
    let r = t.run(&["logs", "program:web"]);
    r.expect_code(0);
    assert!(r.stdout().contains("out 21\n") && !r.stdout().contains("out 20\n"));
    // -n 0: nothing.
    let r = t.run(&["logs", "web", "-n", "0"]);
    r.expect_code(0);
    assert!(!r.stdout().contains("out "), "{}", r.stdout());
}

#[test]
fn logs_of_one_file_is_unlabelled_and_refuses_what_is_not_a_log() {
    let t = Env::new();
    setup(&t, false);
    // Before the program ever ran there is no log: said, exit 1.
    let r = t.run(&["logs", "web"]);
    r.expect_code(1);
    assert!(r.stderr().contains("web has no log file"), "{}", r.stderr());

    append(&t.path("logs/web.out"), &numbered("line", 3));
    let r = t.run(&["logs", "web"]);
    r.expect_code(0);
    assert_eq!(r.stdout(), "line 1\nline 2\nline 3\n");

    // An undefined program.
    t.run(&["logs", "nosuch"]).expect_code(133);

    // A FIFO where the log was: refused at once (a blocking open would hang forever).
    std::fs::remove_file(t.path("logs/web.out")).expect("rm");
    nix::unistd::mkfifo(&t.path("logs/web.out"), nix::sys::stat::Mode::S_IRWXU).expect("fifo");
    let started = Instant::now();
    let r = t.run(&["logs", "web"]);
    r.expect_code(1);
    assert!(r.stderr().contains("not a regular file"), "{}", r.stderr());
    assert!(started.elapsed() < LONG);
}

/// `usrsvc logs web -f -n N` as a child whose stdout lines arrive on a channel.
fn follow(t: &Env, n: &str) -> (Child, Receiver<String>) {
    let mut child = t
        .command("usrsvc", &["logs", "web", "-f", "-n", n])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn logs -f");
    let stdout = child.stdout.take().expect("stdout");
    let (tx, rx) = channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    (child, rx)
}

/// Waits for a line equal to `want`; returns the lines seen before it.
#[track_caller]
fn wait_line(rx: &Receiver<String>, want: &str) -> Vec<String> {
    let end = Instant::now() + LONG;
    let mut seen = Vec::new();
    while let Some(left) = end.checked_duration_since(Instant::now()) {
        match rx.recv_timeout(left) {
            Ok(line) if line == want => return seen,
            Ok(line) => seen.push(line),
            Err(_) => break,
        }
    }
    panic!("no line {want:?} within {LONG:?}; saw {seen:?}");
}

struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        // Our own child, by its pid.
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn logs_follow_shows_appended_lines_across_copytruncate_and_rename_rotation() {
    let t = Env::new();
    setup(&t, false);
    let log = t.path("logs/web.out");
    append(&log, &numbered("old", 20));
    let (child, rx) = follow(&t, "2");
    let _guard = Killed(child);
    let before = wait_line(&rx, "old 20");
    assert_eq!(
        before,
        vec!["old 19".to_string()],
        "-n 2 shows two lines first"
    );

    append(&log, "appended 1\nappended 2\n");
    wait_line(&rx, "appended 1");
    wait_line(&rx, "appended 2");

    // logrotate copytruncate: the file is copied away and cut to 0 in place; the program goes
    // on writing at its offset (O_APPEND: at the new end).
    std::fs::copy(&log, t.path("logs/web.out.1")).expect("copy");
    std::fs::OpenOptions::new()
        .write(true)
        .open(&log)
        .expect("open")
        .set_len(0)
        .expect("truncate");
    append(&log, "after truncate\n");
    let seen = wait_line(&rx, "after truncate");
    assert!(seen.is_empty(), "nothing old is shown again: {seen:?}");

    // Rename rotation: the file is renamed away and a new one takes its path. What reached the
    // old file before the new one appeared is still shown, then the new file from its start.
    std::fs::rename(&log, t.path("logs/web.out.2")).expect("rename");
    append(&t.path("logs/web.out.2"), "last of the old file\n");
    append(&log, "first of the new file\nsecond of the new file\n");
    let seen = wait_line(&rx, "first of the new file");
    assert_eq!(seen, vec!["last of the old file".to_string()]);
    wait_line(&rx, "second of the new file");
    append(&log, "more\n");
    wait_line(&rx, "more");
}

#[test]
fn logs_follow_waits_for_a_log_that_does_not_exist_yet() {
    let t = Env::new();
    setup(&t, false);
    let (child, rx) = follow(&t, "10");
    let _guard = Killed(child);
    append(&t.path("logs/web.out"), "born\n");
    wait_line(&rx, "born");
}

#[test]
fn a_stderr_that_is_the_stdout_file_under_another_name_is_shown_once() {
    let t = Env::new();
    setup(&t, true);
    append(&t.path("logs/web.out"), "only once\n");
    std::os::unix::fs::symlink(t.path("logs/web.out"), t.path("logs/web.err")).expect("symlink");
    let r = t.run(&["logs", "web"]);
    r.expect_code(0);
    assert_eq!(r.stdout(), "only once\n");
}

#[test]
fn logs_shows_every_asked_line_of_a_log_over_16_mb() {
    let t = Env::new();
    setup(&t, false);
    // 2 200 000 lines of 8 bytes: 17.6 MB, more than one 16 MB read.
    let text: String = (0..2_200_000).map(|i| format!("{i:07}\n")).collect();
    append(&t.path("logs/web.out"), &text);
    let r = t.run(&["logs", "web", "-n", "2200000"]);
    r.expect_code(0);
    let out = r.stdout();
    assert_eq!(out.len(), text.len(), "every byte, once");
    assert!(out.ends_with("2199999\n") && out.starts_with("0000000\n"));
}

#[test]
fn logs_follow_ends_the_old_files_unfinished_line_at_a_rotation() {
    // The last line of a rotated-away file had no newline: it was glued to the first line of
    // the new file ("old partialfirst of the new file").
    let t = Env::new();
    setup(&t, false);
    let log = t.path("logs/web.out");
    append(&log, "start\nold partial");
    let (child, rx) = follow(&t, "5");
    let _guard = Killed(child);
    wait_line(&rx, "start");
    std::fs::rename(&log, t.path("logs/web.out.1")).expect("rename");
    append(&log, "first of the new file\n");
    let seen = wait_line(&rx, "first of the new file");
    assert_eq!(seen, vec!["old partial".to_string()]);
}

#[test]
fn logs_follow_shows_a_line_that_never_ends_instead_of_holding_it() {
    // 3 MB without a newline: -f held it all in memory and showed nothing, without bound.
    let t = Env::new();
    setup(&t, false);
    append(&t.path("logs/web.out"), &"x".repeat(3 << 20));
    let mut child = t
        .command("usrsvc", &["logs", "web", "-f", "-n", "1"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn logs -f");
    let mut stdout = child.stdout.take().expect("stdout");
    let _guard = Killed(child);
    let (tx, rx) = channel();
    std::thread::spawn(move || {
        let mut buf = vec![0u8; 64 * 1024];
        let mut total = 0usize;
        while let Ok(n) = std::io::Read::read(&mut stdout, &mut buf) {
            if n == 0 {
                break;
            }
            total += n;
            if tx.send(total).is_err() {
                break;
            }
        }
    });
    let end = Instant::now() + LONG;
    let mut got = 0;
    while let Some(left) = end.checked_duration_since(Instant::now()) {
        match rx.recv_timeout(left) {
            Ok(total) if total >= 3 << 20 => return,
            Ok(total) => got = total,
            Err(_) => break,
        }
    }
    panic!("-f showed {got} of the 3 MB line within {LONG:?}");
}
