//! The systemd units and their installer, for real: `systemd/install.sh` runs into a temporary
//! DESTDIR (never the real `/usr/lib/systemd`), the installed files are checked, and
//! `systemd-analyze verify` checks them where it exists. What the units must say — foreground
//! `Type=notify`, reload = reread, `KillMode=process` so no program dies with the unit — is
//! checked line by line, since no systemd runs under the tests to try it.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const TEMPLATE: &str = "usrsvcd@.service";
const USER_UNIT: &str = "usrsvcd.service";
const SYSTEM_DIR: &str = "usr/lib/systemd/system";
const USER_DIR: &str = "usr/lib/systemd/user";

fn systemd_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("systemd")
}

fn source(name: &str) -> String {
    fs::read_to_string(systemd_dir().join(name)).expect("read unit source")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Runs install.sh from `cwd` (not from systemd/, to prove it finds its files) with `args` and
/// `env`, and with DESTDIR and BINDIR removed from the inherited environment.
fn run_install(cwd: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(systemd_dir().join("install.sh"));
    cmd.args(args)
        .current_dir(cwd)
        .env_remove("DESTDIR")
        .env_remove("BINDIR")
        .env_remove("BINSRC")
        .env_remove("CARGO_TARGET_DIR");
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().expect("run systemd/install.sh")
}

#[track_caller]
fn expect_success(out: &Output, what: &str) {
    assert!(
        out.status.success(),
        "{what}: exit {:?}\n--- stdout:\n{}\n--- stderr:\n{}",
        out.status.code(),
        text(&out.stdout),
        text(&out.stderr)
    );
}

/// Asserts both units are installed under `root` with mode 644 and returns their contents
/// (template, user unit).
#[track_caller]
fn installed(root: &Path, stdout: &str) -> (String, String) {
    let mut contents = Vec::new();
    for (dir, name) in [(SYSTEM_DIR, TEMPLATE), (USER_DIR, USER_UNIT)] {
        let path = root.join(dir).join(name);
        let meta = fs::metadata(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        assert_eq!(
            meta.permissions().mode() & 0o7777,
            0o644,
            "mode of {}",
            path.display()
        );
        assert!(
            stdout.contains(&format!("installed {}\n", path.display())),
            "install.sh should name {}:\n{stdout}",
            path.display()
        );
        contents.push(fs::read_to_string(&path).expect("read installed unit"));
    }
    let user = contents.pop().expect("user unit");
    (contents.pop().expect("template"), user)
}

/// The non-comment lines of a unit file, trimmed.
fn directives(unit: &str) -> Vec<&str> {
    unit.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#') && !l.starts_with(';'))
        .collect()
}

fn value<'a>(unit: &'a str, key: &str) -> Vec<&'a str> {
    directives(unit)
        .into_iter()
        .filter_map(|l| l.strip_prefix(key)?.strip_prefix('='))
        .collect()
}

#[test]
fn install_with_destdir_argument_copies_both_units_mode_644() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dest = tmp.path().join("pkg");
    let out = run_install(tmp.path(), &[&format!("DESTDIR={}", dest.display())], &[]);
    expect_success(&out, "install.sh DESTDIR=...");
    let stdout = text(&out.stdout);
    let (template, user) = installed(&dest, &stdout);
    // The default BINDIR is the units' own /usr/bin: the copies are exact.
    assert_eq!(template, source(TEMPLATE));
    assert_eq!(user, source(USER_UNIT));
    // It runs no systemctl, and says what to run instead.
    for next in [
        "systemctl daemon-reload",
        "systemctl enable --now usrsvcd@USER",
        "systemctl --user enable --now usrsvcd",
        "loginctl enable-linger USER",
    ] {
        assert!(
            stdout.contains(next),
            "next step {next:?} missing:\n{stdout}"
        );
    }
}

#[test]
fn install_copies_the_built_binaries_mode_755_or_warns_without_them() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dest = tmp.path().join("pkg");
    // The binaries this test run built (target/debug).
    let built = Path::new(env!("CARGO_BIN_EXE_usrsvc"))
        .parent()
        .expect("bin dir")
        .to_path_buf();
    let out = run_install(
        tmp.path(),
        &[
            &format!("DESTDIR={}", dest.display()),
            "BINDIR=/usr/local/bin",
            &format!("BINSRC={}", built.display()),
        ],
        &[],
    );
    expect_success(&out, "install.sh BINSRC=...");
    for bin in ["usrsvc", "usrsvcd"] {
        let path = dest.join("usr/local/bin").join(bin);
        let mode = fs::metadata(&path)
            .unwrap_or_else(|e| panic!("{} not installed: {e}", path.display()))
            .permissions()
            .mode();
        assert_eq!(mode & 0o7777, 0o755, "{}", path.display());
        assert_eq!(
            fs::read(&path).expect("read"),
            fs::read(built.join(bin)).expect("read"),
            "{bin} is the built one"
        );
        assert!(text(&out.stdout).contains(&format!("installed {}", path.display())));
    }
    // Not built: the units are installed, and it says how to get the binaries.
    let empty = tmp.path().join("empty");
    fs::create_dir(&empty).expect("mkdir");
    let dest2 = tmp.path().join("pkg2");
    let out = run_install(
        tmp.path(),
        &[
            &format!("DESTDIR={}", dest2.display()),
            &format!("BINSRC={}", empty.display()),
        ],
        &[],
    );
    expect_success(&out, "install.sh without binaries");
    assert!(
        text(&out.stderr).contains("cargo build --release"),
        "{}",
        text(&out.stderr)
    );
    assert!(!dest2.join("usr/bin/usrsvcd").exists());
    installed(&dest2, &text(&out.stdout));
}

#[test]
fn install_with_destdir_from_environment_normalises_slashes() {
    let tmp = tempfile::tempdir().expect("tempdir");
    // Doubled and trailing slashes, as package recipes produce them.
    let messy = format!("{}//stage///", tmp.path().display());
    let out = run_install(tmp.path(), &[], &[("DESTDIR", &messy)]);
    expect_success(&out, "DESTDIR=... install.sh");
    let stdout = text(&out.stdout);
    let (template, user) = installed(&tmp.path().join("stage"), &stdout);
    assert_eq!(template, source(TEMPLATE));
    assert_eq!(user, source(USER_UNIT));
    assert!(
        !stdout.contains("//"),
        "printed paths should be normalised:\n{stdout}"
    );
}

#[test]
fn bindir_rewrites_the_exec_lines_of_the_installed_copies() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dest = tmp.path().join("pkg");
    let out = run_install(
        tmp.path(),
        &[&format!("DESTDIR={}", dest.display()), "BINDIR=/opt/x/bin/"],
        &[],
    );
    expect_success(&out, "install.sh BINDIR=/opt/x/bin/");
    let (template, user) = installed(&dest, &text(&out.stdout));
    for (unit, name) in [(&template, TEMPLATE), (&user, USER_UNIT)] {
        assert_eq!(
            value(unit, "ExecStart"),
            ["/opt/x/bin/usrsvcd --foreground"],
            "{name}"
        );
        assert_eq!(
            value(unit, "ExecReload"),
            ["/opt/x/bin/usrsvcd reread"],
            "{name}"
        );
        assert!(!unit.contains("/usr/bin/usrsvcd"), "{name}:\n{unit}");
        // Nothing else changes.
        assert_eq!(
            *unit,
            source(name).replace("=/usr/bin/usrsvcd ", "=/opt/x/bin/usrsvcd "),
            "{name}"
        );
    }
}

#[test]
fn install_failures_exit_non_zero_with_a_message() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let file = tmp.path().join("not-a-dir");
    fs::write(&file, "").expect("write");
    let cases: [(Vec<String>, &str); 3] = [
        (
            vec![format!("DESTDIR={}", file.display())],
            "install.sh: error: cannot create",
        ),
        (
            vec![
                format!("DESTDIR={}", tmp.path().display()),
                "BINDIR=bin".into(),
            ],
            "install.sh: error: BINDIR must be an absolute path",
        ),
        (vec!["PREFIX=/usr".into()], "unknown argument 'PREFIX=/usr'"),
    ];
    for (args, message) in cases {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = run_install(tmp.path(), &args, &[]);
        assert_eq!(out.status.code(), Some(1), "{args:?}");
        assert!(
            text(&out.stderr).contains(message),
            "{args:?}: stderr should contain {message:?}:\n{}",
            text(&out.stderr)
        );
    }
    // Nothing was installed by the refused BINDIR.
    assert!(!tmp.path().join("usr").exists());
}

#[test]
fn units_run_the_daemon_in_the_foreground_and_never_kill_a_program() {
    for name in [TEMPLATE, USER_UNIT] {
        let unit = source(name);
        for (key, want) in [
            ("Type", "notify"),
            ("NotifyAccess", "main"),
            ("KillMode", "process"),
            ("Restart", "on-failure"),
            ("WorkingDirectory", "~"),
            ("ExecStart", "/usr/bin/usrsvcd --foreground"),
            ("ExecReload", "/usr/bin/usrsvcd reread"),
        ] {
            assert_eq!(value(&unit, key), [want], "{name}: {key}");
        }
        assert_eq!(value(&unit, "RestartSec").len(), 1, "{name}: RestartSec");
        // Stopping the daemon must not stop programs, and programs inherit the unit's
        // namespace: none of these may appear.
        for key in ["ExecStop", "PrivateTmp", "ProtectHome", "NoNewPrivileges"] {
            assert!(value(&unit, key).is_empty(), "{name} must not set {key}");
        }
    }
    let template = source(TEMPLATE);
    assert_eq!(value(&template, "User"), ["%i"]);
    assert_eq!(value(&template, "WantedBy"), ["multi-user.target"]);
    let user = source(USER_UNIT);
    assert!(
        value(&user, "User").is_empty(),
        "a user unit runs as its user"
    );
    assert_eq!(value(&user, "WantedBy"), ["default.target"]);
}

/// `systemd-analyze verify` needs no running systemd, but it checks that every Exec binary
/// exists and is executable: the units are installed with BINDIR pointing at a stub.
#[test]
fn systemd_analyze_verify_accepts_the_installed_units() {
    if Command::new("systemd-analyze")
        .arg("--version")
        .output()
        .is_err()
    {
        eprintln!(
            "SKIPPED systemd_analyze_verify_accepts_the_installed_units: \
             systemd-analyze is not installed, the units were not verified"
        );
        return;
    }
    let tmp = tempfile::tempdir().expect("tempdir");
    let bin = tmp.path().join("bin");
    fs::create_dir(&bin).expect("mkdir bin");
    let stub = bin.join("usrsvcd");
    fs::write(&stub, "#!/bin/sh\nexit 0\n").expect("write stub");
    fs::set_permissions(&stub, fs::Permissions::from_mode(0o755)).expect("chmod stub");
    // The user manager's verify wants a runtime directory of its own.
    let runtime = tmp.path().join("runtime");
    fs::create_dir(&runtime).expect("mkdir runtime");
    fs::set_permissions(&runtime, fs::Permissions::from_mode(0o700)).expect("chmod runtime");

    let verify = |dest: &Path| -> Vec<(String, Output)> {
        let template = dest.join(SYSTEM_DIR).join("usrsvcd@alice.service");
        let user = dest.join(USER_DIR).join(USER_UNIT);
        let system = Command::new("systemd-analyze")
            .arg("verify")
            .arg(&template)
            .output()
            .expect("run systemd-analyze verify");
        let user = Command::new("systemd-analyze")
            .args(["--user", "verify"])
            .arg(&user)
            .env("XDG_RUNTIME_DIR", &runtime)
            .output()
            .expect("run systemd-analyze --user verify");
        vec![
            (
                "systemd-analyze verify usrsvcd@alice.service".into(),
                system,
            ),
            ("systemd-analyze --user verify usrsvcd.service".into(), user),
        ]
    };

    // Control: the same units pointing at a missing binary must fail, or a pass below would
    // prove nothing about this environment.
    let broken = tmp.path().join("broken");
    let out = run_install(
        tmp.path(),
        &[
            &format!("DESTDIR={}", broken.display()),
            &format!("BINDIR={}", tmp.path().join("missing").display()),
        ],
        &[],
    );
    expect_success(&out, "install.sh into broken/");
    let control = verify(&broken);
    if control.iter().any(|(_, out)| {
        text(&out.stderr).contains("Failed to initialize manager")
            || text(&out.stderr).contains("Failed to lookup RuntimeDirectory")
    }) {
        for (what, out) in &control {
            eprintln!("{what}: {}", text(&out.stderr));
        }
        eprintln!(
            "SKIPPED systemd_analyze_verify_accepts_the_installed_units: systemd-analyze \
             cannot start its manager here, the units were not verified"
        );
        return;
    }
    for (what, out) in &control {
        assert!(
            !out.status.success() && text(&out.stderr).contains("is not executable"),
            "{what} should reject a missing ExecStart binary: exit {:?}\n{}",
            out.status.code(),
            text(&out.stderr)
        );
    }

    let dest = tmp.path().join("pkg");
    let out = run_install(
        tmp.path(),
        &[
            &format!("DESTDIR={}", dest.display()),
            &format!("BINDIR={}", bin.display()),
        ],
        &[],
    );
    expect_success(&out, "install.sh with the stub BINDIR");
    for (what, out) in verify(&dest) {
        // verify exits 0 on unknown keys and bad values, warning on stderr: any line about
        // our units fails the test. (Lines about the host's other units are not ours to fix.)
        let stderr = text(&out.stderr);
        let ours: Vec<&str> = stderr.lines().filter(|l| l.contains("usrsvcd")).collect();
        assert!(
            out.status.success() && ours.is_empty(),
            "{what}: exit {:?}\n{stderr}",
            out.status.code()
        );
    }
}
