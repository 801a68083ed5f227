//! The exec environment of a program (new in 2.0): `directory` (default: the user's home from
//! the passwd database, whoever starts it), `umask`, `env_file`, `nice` and `[[Limits]]`,
//! checked on real processes through `/proc/PID/{cwd,status,stat,environ,limits}`, plus the
//! config errors for bad values (file:line:key, exit 130).

mod common;

use std::path::PathBuf;
use std::time::Duration;

use common::{alive, stat_field, status_field, wait_for, Env};
use usrsvc::config::{load, ConfigErrorKind as K, Limit, LimitValue, Resource};

const LONG: Duration = Duration::from_secs(30);

/// The current user's home as the passwd database has it (not the test's `$HOME`).
fn passwd_home() -> PathBuf {
    nix::unistd::User::from_uid(nix::unistd::getuid())
        .expect("getpwuid")
        .expect("a passwd entry")
        .dir
}

fn cwd_of(pid: i32) -> PathBuf {
    std::fs::read_link(format!("/proc/{pid}/cwd")).expect("readlink cwd")
}

fn environ_of(pid: i32) -> Vec<String> {
    std::fs::read(format!("/proc/{pid}/environ"))
        .expect("environ")
        .split(|b| *b == 0)
        .map(|v| String::from_utf8_lossy(v).into_owned())
        .collect()
}

/// The soft and hard columns of a row of `/proc/PID/limits` (`Max open files`).
fn limits_row(pid: i32, row: &str) -> (String, String) {
    let text = std::fs::read_to_string(format!("/proc/{pid}/limits")).expect("limits");
    let line = text
        .lines()
        .find(|l| l.starts_with(row))
        .unwrap_or_else(|| panic!("no {row} in\n{text}"));
    let mut cols = line[row.len()..].split_whitespace();
    (
        cols.next().expect("soft").to_owned(),
        cols.next().expect("hard").to_owned(),
    )
}

// ---------------------------------------------------------------------------- config

#[test]
fn exec_keys_are_read_and_limits_inherit_key_by_key() {
    let t = Env::new();
    let h = t.home.display();
    t.config(&format!(
        "[Main]\n\
         [DefaultSettings:d]\n\
         umask = 077\n\
         [[Limits]]\n\
         nofile = 100\n\
         core = 1M\n\
         {}\
         {}",
        t.program(
            "p",
            &t.sleep(1),
            "directory = ~/work\nenv_file = app.env\nnice = 5\numask = 027\n\
             defaults = d\n[[Limits]]\nnofile = 1024:4096\nas = 2G\nnproc = unlimited\n"
        ),
        t.program("q", &t.sleep(2), "defaults = d\n[[Limits]]\ncore = 0\n"),
    ));
    let c = load(&t.path("usrsvc.cfg"), &t.home).unwrap_or_else(|e| panic!("{e}"));
    let p = &c.program("p").expect("p").exec;
    assert_eq!(p.directory, Some(t.path("work")));
    assert_eq!(p.env_file, Some(t.path("app.env")), "relative to {h}");
    assert_eq!((p.umask, p.nice), (Some(0o27), Some(5)));
    let lim = |r, s, h| Limit {
        resource: r,
        soft: s,
        hard: h,
    };
    use LimitValue::{Finite, Unlimited};
    assert_eq!(
        p.limits,
        [
            lim(Resource::Nofile, Finite(1024), Finite(4096)),
            lim(Resource::Core, Finite(1 << 20), Finite(1 << 20)),
            lim(Resource::As, Finite(2 << 30), Finite(2 << 30)),
            lim(Resource::Nproc, Unlimited, Unlimited),
        ]
    );
    let q = &c.program("q").expect("q").exec;
    assert_eq!(
        (q.directory.clone(), q.umask, q.nice),
        (None, Some(0o77), None)
    );
    assert_eq!(
        q.limits,
        [
            lim(Resource::Nofile, Finite(100), Finite(100)),
            lim(Resource::Core, Finite(0), Finite(0)),
        ]
    );
}

#[test]
fn bad_exec_values_are_config_errors_with_file_line_and_key() {
    let t = Env::new();
    let cfg = t.path("usrsvc.cfg");
    // Line 1 is [Main], the program section starts at line 3 (after a blank line) and its
    // generated keys take lines 3-9; `extra` starts at line 10.
    for (extra, kind, key, words) in [
        ("umask = 0800", K::InvalidExecSetting, "umask", "octal"),
        ("umask = 1000", K::InvalidExecSetting, "umask", "0777"),
        ("nice = -21", K::InvalidExecSetting, "nice", "-20 to 19"),
        ("nice = high", K::InvalidExecSetting, "nice", "-20 to 19"),
        ("Limits = 5", K::NotASubsection, "Limits", "[[Limits]]"),
        (
            "[[Limits]]\nnofile = lots",
            K::InvalidExecSetting,
            "Limits.nofile",
            "or unlimited",
        ),
        (
            "[[Limits]]\nas = 2G:1G",
            K::InvalidExecSetting,
            "Limits.as",
            "above the hard limit",
        ),
        (
            "[[Limits]]\nnofile = 2K",
            K::InvalidExecSetting,
            "Limits.nofile",
            "a number",
        ),
    ] {
        t.programs(&[t.program("p", &t.sleep(1), extra)]);
        let errors = load(&cfg, &t.home).expect_err(extra).into_vec();
        assert_eq!(errors.len(), 1, "{extra}: {errors:#?}");
        let e = &errors[0];
        let line = if extra.starts_with("[[") { 11 } else { 10 };
        assert_eq!(
            (e.kind, e.line, e.key.as_deref()),
            (kind, Some(line), Some(key)),
            "{extra}: {e}"
        );
        assert!(e.message.contains(words), "{extra}: {e}");
        // The CLI says so, with file:line and key, and exits 130.
        let r = t.run(&["status", "p"]);
        r.expect_code(130);
        let want = format!("{}:{line}: [Program:p] {key}: ", cfg.display());
        assert!(r.stderr().contains(&want), "{want}\n{}", r.stderr());
    }
    t.programs(&[t.program("p", &t.sleep(1), "[[Limits]]\nstack = 8M")]);
    let errors = load(&cfg, &t.home).expect_err("stack").into_vec();
    assert_eq!(errors[0].kind, K::UnknownLimitsKeys, "{}", errors[0]);
    assert!(errors[0].message.contains("'stack'"), "{}", errors[0]);
    // A directory or env_file that does not exist (yet) is not a config error.
    t.programs(&[t.program(
        "p",
        &t.sleep(1),
        "directory = /nonexistent/usrsvc-dir\nenv_file = missing.env",
    )]);
    load(&cfg, &t.home).unwrap_or_else(|e| panic!("{e}"));
}

// ------------------------------------------------------------------------ processes

#[test]
fn default_directory_is_the_passwd_home_for_usrsvc_and_usrsvcd() {
    let t = Env::new();
    let home = passwd_home();
    assert_ne!(
        home, t.home,
        "the test needs a HOME other than the passwd one"
    );
    t.programs(&[
        t.program("p", &t.sleep(1), "autostart = false"),
        t.program("q", &t.sleep(2), ""),
    ]);
    // Run from another folder: 1.5.13 gave the program usrsvc's own cwd (and PWD).
    let elsewhere = t.path("cfg");
    let out = t
        .command("usrsvc", &["start", "p"])
        .current_dir(&elsewhere)
        .env("PWD", &elsewhere)
        .output()
        .expect("usrsvc start");
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let pid = t.pid_of("p").expect("pidfile");
    assert_eq!(cwd_of(pid), home);
    let pwd: Vec<String> = environ_of(pid)
        .into_iter()
        .filter(|v| v.starts_with("PWD="))
        .collect();
    assert_eq!(pwd, [format!("PWD={}", home.display())]);

    // The daemon (whose own cwd is the test's HOME) starts q in the same place.
    let _d = t.daemon();
    let pid = t.wait_running("q");
    assert_eq!(cwd_of(pid), home);
}

#[test]
fn directory_umask_and_env_file_reach_the_program() {
    let t = Env::new();
    std::fs::create_dir(t.path("work")).expect("mkdir");
    std::fs::write(
        t.path("app.env"),
        "# settings\nA=from_file\nB=\"two words\"\n\n; done\n",
    )
    .expect("env file");
    t.programs(&[t.program(
        "p",
        &t.sleep(1),
        "directory = work\numask = 027\nenv_file = app.env\n[[Env]]\nA = from_env\nC = from_env",
    )]);
    t.run(&["start", "p"]).expect_code(0);
    let pid = t.pid_of("p").expect("pidfile");
    assert_eq!(cwd_of(pid), t.path("work"));
    assert_eq!(status_field(pid, "Umask").as_deref(), Some("0027"));
    let env = environ_of(pid);
    for want in ["A=from_file", "B=two words", "C=from_env"] {
        assert!(env.iter().any(|v| v == want), "{want} not in {env:?}");
    }
    // Read at each start: a change shows at the next one, without a config reread.
    std::fs::write(t.path("app.env"), "A=changed\n").expect("env file");
    t.run(&["restart", "p"]).expect_code(0);
    let pid = t.pid_of("p").expect("pidfile");
    assert!(environ_of(pid).iter().any(|v| v == "A=changed"));
}

#[test]
fn missing_or_bad_env_file_and_missing_directory_fail_the_start_clearly() {
    let t = Env::new();
    let started = |t: &Env| !common::pids_matching(&t.sleep(1)).is_empty();
    let env_file = t.path("absent.env");
    t.programs(&[t.program("p", &t.sleep(1), "env_file = absent.env")]);
    let r = t.run(&["start", "p"]);
    r.expect_code(137);
    let want = format!("Cannot read env_file {}: No such file", env_file.display());
    assert!(r.stderr().contains(&want), "{}", r.stderr());
    assert!(!started(&t));

    std::fs::write(&env_file, "A=1\nexport B=2\n").expect("env file");
    let r = t.run(&["start", "p"]);
    r.expect_code(137);
    let want = format!(
        "env_file {}:2: `export` is not supported",
        env_file.display()
    );
    assert!(r.stderr().contains(&want), "{}", r.stderr());
    assert!(!started(&t));

    // A FIFO would hang a start that opened it blocking; it is refused at once.
    std::fs::remove_file(&env_file).expect("rm");
    nix::unistd::mkfifo(&env_file, nix::sys::stat::Mode::S_IRWXU).expect("mkfifo");
    let r = t.run(&["start", "p"]);
    r.expect_code(137);
    assert!(r.stderr().contains("not a regular file"), "{}", r.stderr());

    let dir = t.path("nowhere");
    t.programs(&[t.program("p", &t.sleep(1), "directory = nowhere")]);
    let r = t.run(&["start", "p"]);
    r.expect_code(137);
    let want = format!(
        "Cannot change to directory {} (directory): No such file or directory",
        dir.display()
    );
    assert!(r.stderr().contains(&want), "{}", r.stderr());
    assert!(!started(&t));
    // Once the folder is there, the same config starts.
    std::fs::create_dir(&dir).expect("mkdir");
    t.run(&["start", "p"]).expect_code(0);
    assert_eq!(cwd_of(t.pid_of("p").expect("pidfile")), dir);
}

#[test]
fn nice_and_limits_are_applied_before_exec() {
    let t = Env::new();
    // nproc as we have it: raising it could need privilege.
    let (nproc_soft, nproc_hard) = limits_row(std::process::id() as i32, "Max processes");
    t.programs(&[t.program(
        "p",
        &t.sleep(1),
        &format!(
            "nice = 7\n[[Limits]]\nnofile = 1000:2000\ncore = 0\nas = 4G\nnproc = {nproc_soft}:{nproc_hard}"
        ),
    )]);
    t.run(&["start", "p"]).expect_code(0);
    let pid = t.pid_of("p").expect("pidfile");
    assert_eq!(stat_field(pid, 19).as_deref(), Some("7"), "nice");
    let row = |name: &str, s: &str, h: &str| {
        assert_eq!(
            limits_row(pid, name),
            (s.to_owned(), h.to_owned()),
            "{name}"
        );
    };
    row("Max open files", "1000", "2000");
    row("Max core file size", "0", "0");
    row("Max address space", "4294967296", "4294967296");
    row("Max processes", &nproc_soft, &nproc_hard);
}

#[test]
fn a_limit_the_kernel_refuses_fails_the_start_and_names_the_limit() {
    let t = Env::new();
    // Above fs.nr_open even root cannot raise nofile: the child's setrlimit fails after the
    // fork, and the parent must learn which step it was.
    let nr_open: u64 = std::fs::read_to_string("/proc/sys/fs/nr_open")
        .expect("nr_open")
        .trim()
        .parse()
        .expect("number");
    let too_many = nr_open + 1;
    t.programs(&[t.program(
        "p",
        &t.sleep(1),
        &format!("[[Limits]]\ncore = 0\nnofile = {too_many}"),
    )]);
    let r = t.run(&["start", "p"]);
    r.expect_code(137);
    let want = format!("Cannot start: Cannot set [[Limits]] nofile = {too_many}:{too_many}: ");
    assert!(r.stderr().contains(&want), "{}", r.stderr());
    assert!(common::pids_matching(&t.sleep(1)).is_empty());
}

#[test]
fn a_negative_nice_without_privilege_fails_the_start() {
    let t = Env::new();
    t.programs(&[t.program("p", &t.sleep(1), "nice = -5")]);
    // Root keeps CAP_SYS_NICE unless it is taken away: run usrsvc without it.
    let mut cmd = if nix::unistd::getuid().is_root() {
        let mut c = t.command(
            "setpriv",
            &["--bounding-set=-sys_nice", "--inh-caps=-sys_nice"],
        );
        c.arg(common::bin("usrsvc")).args(["start", "p"]);
        c
    } else {
        t.command("usrsvc", &["start", "p"])
    };
    let out = cmd.output().expect("setpriv usrsvc start");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(137), "{stderr}");
    assert!(
        stderr.contains("Cannot set nice = -5: Permission denied")
            && stderr.contains("needs privilege"),
        "{stderr}"
    );
    assert!(wait_for(LONG, || common::pids_matching(&t.sleep(1))
        .iter()
        .all(|p| !alive(*p))));
}

#[test]
fn the_web_example_sets_the_exec_environment_for_every_worker() {
    let t = Env::new();
    let repo = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    std::fs::copy(repo.join("examples/usrsvc.cfg"), t.path("usrsvc.cfg")).expect("copy");
    std::fs::create_dir_all(t.path("usrsvc.d/cfg")).expect("mkdir");
    std::fs::create_dir_all(t.path("usrsvc.d/logs")).expect("mkdir");
    std::fs::copy(
        repo.join("examples/cfg/web.cfg"),
        t.path("usrsvc.d/cfg/web.cfg"),
    )
    .expect("copy");
    let c = load(&t.path("usrsvc.cfg"), &t.home).unwrap_or_else(|e| panic!("{e}"));
    for name in ["web1", "web2", "web3"] {
        let e = &c.program(name).expect(name).exec;
        assert_eq!(e.directory, Some(PathBuf::from("/srv/web")), "{name}");
        assert_eq!(e.env_file, Some(t.path("usrsvc.d/web.env")), "{name}");
        assert_eq!((e.umask, e.nice, e.limits.len()), (Some(0o27), Some(5), 2));
    }
}

#[test]
fn checkconfig_warns_of_a_missing_directory_or_a_bad_env_file_and_passes() {
    let t = Env::new();
    std::fs::write(t.path("bad.env"), "A=1\n\nB\n").expect("env file");
    t.programs(&[
        t.program("p", &t.sleep(1), "directory = nowhere"),
        t.program("q", &t.sleep(2), "env_file = bad.env"),
        t.program("r", &t.sleep(3), "env_file = absent.env"),
    ]);
    let r = t.run_bin("usrsvcd", &["checkconfig"]);
    r.expect_code(0);
    let out = r.all();
    for want in [
        format!(
            "Warning: Program p: directory {} is not a folder (yet)",
            t.path("nowhere").display()
        ),
        format!(
            "Warning: Program q: env_file {}:3: expected KEY=VALUE",
            t.path("bad.env").display()
        ),
        format!(
            "Warning: Program r: Cannot read env_file {}: No such file",
            t.path("absent.env").display()
        ),
    ] {
        assert!(out.contains(&want), "{want}\n{out}");
    }
}

#[test]
fn a_relative_command_path_is_relative_to_directory() {
    let t = Env::new();
    std::fs::create_dir(t.path("work")).expect("mkdir");
    let script = format!("run-{}.sh", t.marker);
    std::fs::write(
        t.path(&format!("work/{script}")),
        format!("#!/bin/sh\n{}\n", t.sleep(1)),
    )
    .expect("script");
    let mut perm = std::fs::metadata(t.path(&format!("work/{script}")))
        .expect("stat")
        .permissions();
    std::os::unix::fs::PermissionsExt::set_mode(&mut perm, 0o755);
    std::fs::set_permissions(t.path(&format!("work/{script}")), perm).expect("chmod");
    t.programs(&[t.program("p", &format!("./{script}"), "directory = work")]);
    // Started from a folder that has no such script.
    let out = t
        .command("usrsvc", &["start", "p"])
        .current_dir(t.path("cfg"))
        .output()
        .expect("usrsvc start");
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let pid = t.pid_of("p").expect("pidfile");
    assert_eq!(cwd_of(pid), t.path("work"));
    // The default matcher still knows the script by the command as written.
    t.run(&["status", "p"]).expect_code(0);
    t.run(&["stop", "p"]).expect_code(0);
}

/// An env_file sets the program's environment (`LD_PRELOAD`, `PATH`): one that another user
/// can write or replace — in a folder others can write without the sticky bit, writable by
/// others itself, reached through a symlink into such a folder, or, in a sticky folder, not
/// ours — is refused and the program not started, like a config error of that program.
#[test]
fn an_env_file_another_user_could_write_is_refused() {
    use std::os::unix::fs::PermissionsExt;
    let t = Env::new();
    let started = |t: &Env| !common::pids_matching(&t.sleep(1)).is_empty();
    let set_mode = |p: &std::path::Path, m: u32| {
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(m)).expect("chmod")
    };
    let open = t.path("open");
    std::fs::create_dir(&open).expect("mkdir");
    let in_open = open.join("app.env");
    std::fs::write(&in_open, "A=1\n").expect("env file");
    set_mode(&open, 0o777);
    let mine = t.path("mine.env");
    std::fs::write(&mine, "A=1\n").expect("env file");
    let link = t.path("link.env");
    std::os::unix::fs::symlink(&in_open, &link).expect("symlink");
    let cases = [
        (in_open.clone(), "writable by every user"),
        (link.clone(), "writable by every user"),
        (mine.clone(), "another user could change"),
    ];
    set_mode(&mine, 0o666);
    for (path, why) in cases {
        t.programs(&[t.program("p", &t.sleep(1), &format!("env_file = {}", path.display()))]);
        let r = t.run(&["start", "p"]);
        r.expect_code(137);
        assert!(
            r.stderr()
                .contains(&format!("Cannot read env_file {}", path.display()))
                && r.stderr().contains(why),
            "{}: {}",
            path.display(),
            r.stderr()
        );
        assert!(!started(&t));
    }
    // Private again: the same files are fine.
    set_mode(&open, 0o755);
    set_mode(&mine, 0o644);
    t.run(&["start", "p"]).expect_code(0);
    t.run(&["stop", "p"]).expect_code(0);
    t.programs(&[t.program("p", &t.sleep(1), &format!("env_file = {}", link.display()))]);
    t.run(&["start", "p"]).expect_code(0);
}
