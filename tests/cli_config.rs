//! Configuration errors through the real binaries: every case of spec Appendix B gives one
//! line `ERROR in config: FILE:LINE: [SECTION] KEY: MESSAGE` with the 1.5.13 wording and exit
//! 130 (`usrsvc`), and `usrsvcd checkconfig` prints every error of a config, not only the first.
//! The library-level details of each case are in config_cases.rs.

mod common;

use common::Env;

/// A valid program section; `{H}` is HOME, `{S}` a `sleep` only this test runs (a `status p`
/// that scanned for a plain `sleep 1` would find any user's `sleep 1`).
const P: &str = "[Program:p]\ncommand = {S}\npidfile = {H}/p.pid\nstdout = {H}/logs/p.out";

/// (case, config, expected stderr). In both, `{H}` is HOME and `{P}` the program above.
const CASES: &[(&str, &str, &str)] = &[
    ("no [Main]", "[Program:p]\n",
     "ERROR in config: {H}/usrsvc.cfg: Missing [Main] section in main config. Required.\n"),
    ("unknown Main key", "[Main]\nbogus = 1\n",
     "ERROR in config: {H}/usrsvc.cfg:2: [Main] Unknown config options in Main section: ['bogus']\n"),
    ("unknown Monitoring key ([[Monitor]] accepted)", "[Main]\n{P}\n[[Monitor]]\nfoo = 1\n",
     "ERROR in config: {H}/usrsvc.cfg:7: [Program:p] Unknown configuration options in Monitoring section: ['foo']\n"),
    ("unknown program key", "[Main]\n{P}\ncolour = red\n",
     "ERROR in config: {H}/usrsvc.cfg:6: [Program:p] Unknown config options: ['colour']\n"),
    ("no command (1.5.13: traceback)", "[Main]\n[Program:p]\npidfile = {H}/p.pid\nstdout = {H}/logs/p.out\n",
     "ERROR in config: {H}/usrsvc.cfg:2: [Program:p] command: Missing command for program: \"p\"\n"),
    ("no pidfile", "[Main]\n[Program:p]\ncommand = {S}\nstdout = {H}/logs/p.out\n",
     "ERROR in config: {H}/usrsvc.cfg:2: [Program:p] pidfile: pidfile must be defined for a program and must be an absolute path.\n"),
    ("no stdout", "[Main]\n[Program:p]\ncommand = {S}\npidfile = {H}/p.pid\n",
     "ERROR in config: {H}/usrsvc.cfg:2: [Program:p] stdout: Program p does not define a value for stdout.\n"),
    // A missing stdout/stderr folder is no longer a config error (tests/missing_folders.rs).
    ("NUL byte in command (1.5.13: failed at start)", "[Main]\n[Program:p]\ncommand = {S}\x001\npidfile = {H}/p.pid\nstdout = {H}/logs/p.out\n",
     "ERROR in config: {H}/usrsvc.cfg:3: [Program:p] command: Invalid value for config parameter command: a NUL byte, which a command line or an environment cannot carry\n"),
    ("NUL byte in [[Env]]", "[Main]\n{P}\n[[Env]]\nX = a\x00b\n",
     "ERROR in config: {H}/usrsvc.cfg:7: [Program:p] Env.X: Invalid value for config parameter Env.X: a NUL byte, which a command line or an environment cannot carry\n"),
    ("autostart = yes", "[Main]\n{P}\nautostart = yes\n",
     "ERROR in config: {H}/usrsvc.cfg:6: [Program:p] autostart: Unknown value for config parameter autostart: yes. Should be True/1 or False/0\n"),
    ("maxrestarts = -1", "[Main]\n{P}\nmaxrestarts = -1\n",
     "ERROR in config: {H}/usrsvc.cfg:6: [Program:p] maxrestarts: Invalid value for config parameter maxrestarts. Should be a positive integer. Got -1\n"),
    ("restart_delay = 1.5", "[Main]\n{P}\nrestart_delay = 1.5\n",
     "ERROR in config: {H}/usrsvc.cfg:6: [Program:p] restart_delay: Invalid value for config parameter restart_delay. Should be a positive integer. Got 1.5\n"),
    ("success_seconds = 1e3", "[Main]\n{P}\nsuccess_seconds = 1e3\n",
     "ERROR in config: {H}/usrsvc.cfg:6: [Program:p] success_seconds: Invalid value for config parameter success_seconds. Should be a positive floating-point number. Got 1e3\n"),
    ("success_seconds = 5.", "[Main]\n{P}\nsuccess_seconds = 5.\n",
     "ERROR in config: {H}/usrsvc.cfg:6: [Program:p] success_seconds: Invalid value for config parameter success_seconds. Should be a positive floating-point number. Got 5.\n"),
    ("success_seconds = ''", "[Main]\n{P}\nsuccess_seconds = ''\n",
     "ERROR in config: {H}/usrsvc.cfg:6: [Program:p] success_seconds: could not convert string to float: ''\n"),
    ("term_to_kill_seconds = -1", "[Main]\n{P}\nterm_to_kill_seconds = -1\n",
     "ERROR in config: {H}/usrsvc.cfg:6: [Program:p] term_to_kill_seconds: Invalid value for config parameter term_to_kill_seconds. Should be a positive floating-point number. Got -1\n"),
    ("rss_limit = -5", "[Main]\n{P}\n[[Monitoring]]\nrss_limit = -5\n",
     "ERROR in config: {H}/usrsvc.cfg:7: [Program:p] Monitoring.rss_limit: Invalid value for config parameter rss_limit. Should be a positive integer. Got -5\n"),
    ("duplicate key (1.5.13: traceback)", "[Main]\n{P}\nautostart = 1\nautostart = 0\n",
     "ERROR in config: {H}/usrsvc.cfg:7: Duplicate keyword name at line 7.\n"),
    ("duplicate section (1.5.13: traceback)", "[Main]\n{P}\n{P}\n",
     "ERROR in config: {H}/usrsvc.cfg:6: Duplicate section name at line 6.\n"),
    ("unknown defaults", "[Main]\n{P}\ndefaults = nothere\n",
     "ERROR in config: {H}/usrsvc.cfg:6: [Program:p] defaults: Program \"p\" in file \"{H}/usrsvc.cfg\" uses a \"defaults\" of \"nothere\", but no such DefaultSettings section exists in read configuration files!\n"),
    ("comma in command (1.5.13: traceback)", "[Main]\n[Program:p]\ncommand = a, b\npidfile = {H}/p.pid\nstdout = {H}/logs/p.out\n",
     "ERROR in config: {H}/usrsvc.cfg:3: [Program:p] command: Invalid value for config parameter command: a list (unquoted comma); quote the value\n"),
    ("missing sendmail_path", "[Main]\nsendmail_path = /no/such/sendmail\n",
     "ERROR in config: {H}/usrsvc.cfg:2: [Main] sendmail_path: sendmail_path \"/no/such/sendmail\" does not exist.\n"),
    ("invalid line (1.5.13: traceback)", "[Main]\nthis is junk\n",
     "ERROR in config: {H}/usrsvc.cfg:2: Invalid line ('this is junk') (matched as neither section nor keyword) at line 2.\n"),
    ("Env = FOO", "[Main]\n{P}\nEnv = FOO\n",
     "ERROR in config: {H}/usrsvc.cfg:6: [Program:p] Env: Env must be a subsection, like [[Env]]\n"),
    ("[Program:]", "[Main]\n[Program:]\ncommand = x\npidfile = {H}/p.pid\nstdout = {H}/logs/p.out\n",
     "ERROR in config: {H}/usrsvc.cfg:2: [Program:] Program Config defined without a name.\n"),
    ("bad regex", "[Main]\n{P}\nproctitle_re = (unclosed\n",
     "ERROR in config: {H}/usrsvc.cfg:6: [Program:p] proctitle_re: Cannot parse proctitle_re: (unclosed\nError: missing ), unterminated subpattern at position 0\n"),
    ("unbalanced quote", "[Main]\n[Program:p]\ncommand = echo 'unterminated\npidfile = {H}/p.pid\nstdout = {H}/logs/p.out\n",
     "ERROR in config: {H}/usrsvc.cfg:3: [Program:p] command: Cannot parse command,\necho 'unterminated\nError: No closing quotation\n"),
];

fn fill(t: &Env, text: &str) -> String {
    text.replace("{P}", P)
        .replace("{S}", &t.sleep(1))
        .replace("{H}", &t.home.display().to_string())
}

#[test]
fn every_appendix_b_error_is_one_clean_message_and_exit_130() {
    let t = Env::new();
    for (case, config, expected) in CASES {
        t.config(&fill(&t, config));
        let r = t.run(&["status", "p"]);
        assert_eq!(r.code(), 130, "{case}: {}", r.all());
        assert_eq!(r.stderr(), fill(&t, expected), "{case}");
        assert_eq!(r.stdout(), "", "{case}");
    }
}

#[test]
fn accepted_cases_of_appendix_b() {
    let t = Env::new();
    // Relative paths (1.5.13: "must be an absolute path") resolve against the file's folder;
    // unknown sections and top-level keys are ignored; a trailing & is dropped with a warning.
    t.config(&fill(
        &t,
        "top = level\n[Main]\nconfig_dir = cfg\n[Other]\nx = 1\n[Program:p]\ncommand = {S} &\npidfile = p.pid\nstdout = logs/p.out\nstderr = logs/p.err\n[[Monitoring]]\nactivityfile = act\n",
    ));
    let r = t.run(&["status", "p"]);
    r.expect_code(1);
    assert!(r.stdout().contains(
        "Warning: Program p is configured to launch in the background (ends with &) which is not supported. Disregarding final &."
    ), "{}", r.stdout());
    let r = t.run(&["status", "p", "--json"]);
    let v: serde_json::Value = serde_json::from_str(&r.stdout()).expect("stdout is only JSON");
    assert!(
        r.stderr().contains("Disregarding final &."),
        "the warning moves to stderr"
    );
    assert_eq!(
        v["pidfile"].as_str(),
        Some(t.path("p.pid").to_str().expect("utf8"))
    );
}

#[test]
fn a_program_in_two_files_is_an_error_naming_both() {
    let t = Env::new();
    t.config(&fill(&t, "[Main]\nconfig_dir = cfg\n{P}\n"));
    std::fs::write(t.path("cfg/more.cfg"), fill(&t, "\n{P}\n")).expect("write");
    let r = t.run(&["status", "p"]);
    r.expect_code(130);
    let err = r.stderr();
    assert!(
        err.contains(&format!("{}:3", t.path("usrsvc.cfg").display())),
        "{err}"
    );
    assert!(
        err.contains(&format!("{}:2", t.path("cfg/more.cfg").display())),
        "{err}"
    );
}

#[test]
fn checkconfig_prints_every_error() {
    let t = Env::new();
    t.config(&fill(
        &t,
        "[Main]\nbogus = 1\n{P}\nautostart = yes\n[Program:q]\ncommand = {S}2\npidfile = {H}/q.pid\nstdout = {H}/logs/q.out\nmaxrestarts = -1\n",
    ));
    let r = t.run_bin("usrsvcd", &["checkconfig"]);
    r.expect_code(130);
    let lines: Vec<String> = r
        .stderr()
        .lines()
        .filter(|l| l.contains("Error in configuration: "))
        .map(str::to_owned)
        .collect();
    assert_eq!(lines.len(), 3, "{}", r.stderr());
    assert!(lines[0].ends_with("[Main] Unknown config options in Main section: ['bogus']"));
    assert!(lines[1].contains("[Program:p] autostart:"));
    assert!(lines[2].contains("[Program:q] maxrestarts:"));
    // usrsvc itself prints the first.
    let r = t.run(&["status", "p"]);
    r.expect_code(130);
    assert_eq!(r.stderr().lines().count(), 1);

    t.config(&fill(&t, "[Main]\n{P}\n"));
    let r = t.run_bin("usrsvcd", &["checkconfig"]);
    r.expect_code(0);
    assert_eq!(r.all(), "");
}

/// A NUL byte passed `checkconfig` and failed at start; a `config_dir` that cannot be listed
/// named neither line nor key.
#[test]
fn checkconfig_names_nul_bytes_and_an_unlistable_config_dir() {
    let t = Env::new();
    t.config(&fill(
        &t,
        "[Main]\n{P}\n[[Env]]\nOK = 1\nBAD = x\x00y\n[Program:q]\ncommand = sleep\x002\npidfile = {H}/q.pid\nstdout = {H}/logs/q.out\n",
    ));
    let r = t.run_bin("usrsvcd", &["checkconfig"]);
    r.expect_code(130);
    let err = r.stderr();
    for (line, key) in [(8, "Env.BAD"), (10, "command")] {
        let expected = fill(
            &t,
            &format!("{{H}}/usrsvc.cfg:{line}: [Program:{}] {key}: Invalid value for config parameter {key}: a NUL byte", if key == "command" { "q" } else { "p" }),
        );
        assert!(err.contains(&expected), "{expected}\n{err}");
    }

    std::os::unix::fs::symlink(t.path("loop"), t.path("loop")).expect("symlink");
    t.config(&fill(&t, "[Main]\nconfig_dir = {H}/loop\n{P}\n"));
    let r = t.run_bin("usrsvcd", &["checkconfig"]);
    r.expect_code(130);
    let expected = fill(
        &t,
        "Error in configuration: {H}/usrsvc.cfg:2: [Main] config_dir: Cannot list config_dir {H}/loop: ",
    );
    assert!(r.stderr().contains(&expected), "{}", r.all());
}

#[test]
fn a_missing_config_file_is_invalid_config() {
    let t = Env::new();
    let r = t.run(&["status", "p"]);
    r.expect_code(130);
    assert_eq!(
        r.stderr(),
        format!(
            "ERROR in config: File does not exist: {}\n",
            t.path("usrsvc.cfg").display()
        )
    );
    // --config and $USRSVC_CONFIG choose another file.
    std::fs::write(t.path("other.cfg"), fill(&t, "[Main]\n{P}\n")).expect("write");
    t.run(&["--config", "other.cfg", "status", "p"])
        .expect_code(1);
    let out = t
        .command("usrsvc", &["status", "p"])
        .env("USRSVC_CONFIG", t.path("other.cfg"))
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(1));
}
