//! `usrsvc::config::load` against real files in a temporary HOME: every row of spec
//! Appendix B (the original's message where it gave one, this version's behaviour where it
//! deliberately differs), the shipped examples, the README snippets, and a robustness sweep
//! that feeds mangled configs and only asks that nothing panics.

use std::fs;
use std::path::{Path, PathBuf};

use usrsvc::config::{
    load, Config, ConfigError, ConfigErrorKind as K, ConfigErrors, LogTarget, MonitoringConfig,
};

/// A temporary HOME with `logs/` and `cfg/` directories.
struct Home {
    _tmp: tempfile::TempDir,
    home: PathBuf,
}

impl Home {
    fn new() -> Home {
        let tmp = tempfile::tempdir().expect("tempdir");
        let home = tmp.path().join("home");
        fs::create_dir_all(home.join("logs")).expect("mkdir logs");
        fs::create_dir_all(home.join("cfg")).expect("mkdir cfg");
        Home { _tmp: tmp, home }
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.home.join(rel)
    }

    fn write(&self, rel: &str, text: impl AsRef<[u8]>) -> PathBuf {
        let p = self.path(rel);
        if let Some(dir) = p.parent() {
            fs::create_dir_all(dir).expect("mkdir");
        }
        fs::write(&p, text).expect("write");
        p
    }

    /// Writes the main file.
    fn main(&self, text: impl AsRef<[u8]>) -> PathBuf {
        self.write("usrsvc.cfg", text)
    }

    fn load(&self) -> Result<Config, ConfigErrors> {
        load(&self.path("usrsvc.cfg"), &self.home)
    }

    fn ok(&self) -> Config {
        match self.load() {
            Ok(c) => c,
            Err(e) => panic!("rejected:\n{e}"),
        }
    }

    fn errors(&self) -> Vec<ConfigError> {
        match self.load() {
            Ok(c) => panic!("accepted: {c:#?}"),
            Err(e) => e.into_vec(),
        }
    }

    /// The single error the config produces.
    fn error(&self) -> ConfigError {
        let mut e = self.errors();
        assert_eq!(e.len(), 1, "expected one error, got {e:#?}");
        e.remove(0)
    }

    fn s(&self, rel: &str) -> String {
        self.path(rel).display().to_string()
    }
}

const MAIN: &str = "[Main]\nconfig_dir = cfg\n";

/// `[Main]` and a valid program `p` (lines 1-6); `extra` starts at line 7.
fn with_program(extra: &str) -> String {
    format!(
        "{MAIN}[Program:p]\ncommand = sleep 1000\npidfile = ~/p.pid\nstdout = ~/logs/p.out\n{extra}"
    )
}

/// Asserts kind, message, line, section and key of an error.
#[track_caller]
fn check(e: &ConfigError, kind: K, line: Option<usize>, key: Option<&str>, message: &str) {
    assert_eq!(e.message, message, "{e:#?}");
    assert_eq!(e.kind, kind, "{e:#?}");
    assert_eq!(e.line, line, "{e:#?}");
    assert_eq!(e.key.as_deref(), key, "{e:#?}");
}

// ------------------------------------------------------------------ Appendix B, row by row

#[test]
fn no_main_section() {
    let h = Home::new();
    h.main("[Program:p]\ncommand = x\n");
    let e = h.errors();
    check(
        &e[0],
        K::MissingMain,
        None,
        None,
        "Missing [Main] section in main config. Required.",
    );
    assert_eq!(e[0].file, h.path("usrsvc.cfg"));
    assert_eq!(
        e[0].to_string(),
        format!(
            "{}: Missing [Main] section in main config. Required.",
            h.s("usrsvc.cfg")
        )
    );
}

#[test]
fn unknown_main_key() {
    let h = Home::new();
    h.main("[Main]\nbogus = 1\n");
    let e = h.error();
    check(
        &e,
        K::UnknownMainKeys,
        Some(2),
        None,
        "Unknown config options in Main section: ['bogus']",
    );
    assert_eq!(e.section.as_deref(), Some("Main"));
}

#[test]
fn relative_config_dir_resolves_against_the_main_files_directory() {
    let h = Home::new();
    h.main("[Main]\nconfig_dir = cfg/\n");
    h.write(
        "cfg/a.cfg",
        "[Program:a]\ncommand = sleep 1\npidfile = a.pid\nstdout = ../logs/a.out\n",
    );
    let c = h.ok();
    assert_eq!(c.main.config_dir, Some(h.path("cfg")));
    assert_eq!(c.files, vec![h.path("usrsvc.cfg"), h.path("cfg/a.cfg")]);
    let a = c.program("a").expect("a");
    assert_eq!(a.pidfile, h.path("cfg/a.pid"));
    assert_eq!(a.stdout, h.path("cfg/../logs/a.out"));
    // ~/ works too, and an absolute path as before.
    h.main(format!("[Main]\nconfig_dir = {}\n", h.s("cfg")));
    assert_eq!(h.ok().main.config_dir, Some(h.path("cfg")));
    h.main("[Main]\nconfig_dir = ~/cfg\n");
    assert_eq!(h.ok().main.config_dir, Some(h.path("cfg")));
}

#[test]
fn monitor_is_a_synonym_of_monitoring() {
    let h = Home::new();
    h.main(with_program(
        "[[Monitor]]\nmonitor_after = 5\nrss_limit = 2000\nactivityfile_limit = 60\n",
    ));
    let c = h.ok();
    let p = c.program("p").expect("p");
    assert_eq!(
        p.monitoring,
        MonitoringConfig {
            monitor_after: 5,
            activityfile: None,
            activityfile_limit: 60,
            rss_limit: 2000,
            check_interval: 5.0,
        }
    );
    assert!(p.monitoring.is_active());

    h.main(with_program("[[Monitoring]]\n[[Monitor]]\n"));
    let e = h.error();
    assert_eq!(e.kind, K::SynonymConflict);
    assert_eq!(e.line, Some(8));
}

#[test]
fn unknown_monitoring_key() {
    let h = Home::new();
    h.main(with_program("[[Monitoring]]\nfoo = 1\n"));
    check(
        &h.error(),
        K::UnknownMonitoringKeys,
        Some(8),
        None,
        "Unknown configuration options in Monitoring section: ['foo']",
    );
}

#[test]
fn relative_activityfile_resolves_against_its_file() {
    let h = Home::new();
    h.main(with_program(
        "[[Monitoring]]\nactivityfile = act/heartbeat\n",
    ));
    let c = h.ok();
    let m = &c.program("p").expect("p").monitoring;
    assert_eq!(m.activityfile, Some(h.path("act/heartbeat")));
    assert!(m.is_active());
    // Empty means off, as in the original.
    h.main(with_program("[[Monitoring]]\nactivityfile =\n"));
    assert!(!h.ok().program("p").expect("p").monitoring.is_active());
}

#[test]
fn unknown_program_key() {
    let h = Home::new();
    h.main(with_program("colour = blue\n"));
    let e = h.error();
    check(
        &e,
        K::UnknownKeys,
        Some(7),
        None,
        "Unknown config options: ['colour']",
    );
    assert_eq!(e.section.as_deref(), Some("Program:p"));
    assert_eq!(
        e.to_string(),
        format!(
            "{}:7: [Program:p] Unknown config options: ['colour']",
            h.s("usrsvc.cfg")
        )
    );
}

#[test]
fn no_command_is_a_clean_error() {
    let h = Home::new();
    h.main(format!(
        "{MAIN}[Program:p]\npidfile = ~/p.pid\nstdout = ~/logs/p.out\n"
    ));
    check(
        &h.error(),
        K::MissingCommand,
        Some(3),
        Some("command"),
        "Missing command for program: \"p\"",
    );
}

#[test]
fn no_pidfile_or_relative_pidfile() {
    let h = Home::new();
    h.main(format!(
        "{MAIN}[Program:p]\ncommand = x\nstdout = ~/logs/p.out\n"
    ));
    check(
        &h.error(),
        K::PidfileMissing,
        Some(3),
        Some("pidfile"),
        "pidfile must be defined for a program and must be an absolute path.",
    );
    h.main(format!(
        "{MAIN}[Program:p]\ncommand = x\npidfile =\nstdout = ~/logs/p.out\n"
    ));
    check(
        &h.error(),
        K::PidfileMissing,
        Some(5),
        Some("pidfile"),
        "pidfile must be defined for a program and must be an absolute path.",
    );
    h.main(format!(
        "{MAIN}[Program:p]\ncommand = x\npidfile = run/p.pid\nstdout = ~/logs/p.out\n"
    ));
    assert_eq!(h.ok().programs[0].pidfile, h.path("run/p.pid"));
}

#[test]
fn no_stdout() {
    let h = Home::new();
    h.main(format!(
        "{MAIN}[Program:p]\ncommand = x\npidfile = ~/p.pid\n"
    ));
    check(
        &h.error(),
        K::StdoutMissing,
        Some(3),
        Some("stdout"),
        "Program p does not define a value for stdout.",
    );
}

/// 1.5.13 rejected the whole config; now only that program's start fails (see cli_verbs.rs and
/// daemon.rs), and loading warns with the place and the path.
#[test]
fn stdout_directory_missing_is_a_warning() {
    let h = Home::new();
    h.main(format!(
        "{MAIN}[Program:p]\ncommand = x\npidfile = ~/p.pid\nstdout = ~/nolog/p.out\n[Program:q]\ncommand = y\npidfile = ~/q.pid\nstdout = ~/logs/q.out\n"
    ));
    let c = h.ok();
    assert_eq!(c.programs.len(), 2);
    assert_eq!(
        c.program("p").map(|p| p.stdout.clone()),
        Some(h.path("nolog/p.out"))
    );
    assert_eq!(
        c.warnings,
        [format!(
            "Warning: {}:6: [Program:p] stdout: Program p defines a stdout path as \"{}\" but the folder {} does not exist. Starting p fails until it exists; the other programs are not affected.",
            h.s("usrsvc.cfg"),
            h.s("nolog/p.out"),
            h.s("nolog")
        )]
    );
}

#[test]
fn relative_stderr_resolves_and_is_checked() {
    let h = Home::new();
    h.main(with_program("stderr = logs/err\n"));
    let c = h.ok();
    let p = c.program("p").expect("p");
    assert_eq!(p.stderr, h.path("logs/err"));
    assert_eq!(p.stdout, h.path("logs/p.out"));
    assert!(c.warnings.is_empty(), "{:?}", c.warnings);
    h.main(with_program("stderr = nolog/err\n"));
    let c = h.ok();
    assert_eq!(c.programs[0].stderr, h.path("nolog/err"));
    assert_eq!(
        c.warnings,
        [format!(
            "Warning: {}:7: [Program:p] stderr: Program p defines a stderr path as \"{}\" but the folder {} does not exist. Starting p fails until it exists; the other programs are not affected.",
            h.s("usrsvc.cfg"),
            h.s("nolog/err"),
            h.s("nolog")
        )]
    );
    // Absent, empty and "stdout" all mean the stdout file.
    for v in ["stderr = stdout\n", "stderr =\n", ""] {
        h.main(with_program(v));
        let c = h.ok();
        assert_eq!(c.programs[0].stderr, c.programs[0].stdout, "{v:?}");
    }
}

#[test]
fn nul_byte_in_command_or_env_is_rejected_with_its_place() {
    // exec cannot pass a NUL: 1.5.13 and earlier versions accepted it and failed at start.
    let h = Home::new();
    h.main(format!(
        "{MAIN}[Program:p]\ncommand = sleep 1\x002\npidfile = ~/p.pid\nstdout = ~/logs/p.out\n"
    ));
    check(
        &h.error(),
        K::NulByte,
        Some(4),
        Some("command"),
        "Invalid value for config parameter command: a NUL byte, which a command line or an environment cannot carry",
    );
    h.main(with_program("[[Env]]\nOK = 1\nBAD = a\x00b\n"));
    check(
        &h.error(),
        K::NulByte,
        Some(9),
        Some("Env.BAD"),
        "Invalid value for config parameter Env.BAD: a NUL byte, which a command line or an environment cannot carry",
    );
}

#[test]
fn a_config_dir_that_cannot_be_listed_names_its_line_and_key() {
    let h = Home::new();
    // A symlink loop: listing fails (ELOOP) even for root, unlike a mode-000 directory.
    let link = h.path("loop");
    std::os::unix::fs::symlink(&link, &link).expect("symlink");
    h.main("# the daemon's settings\n[Main]\n\nconfig_dir = ~/loop\n");
    let e = h.error();
    assert_eq!(e.kind, K::FileUnreadable);
    assert_eq!(e.file, h.path("usrsvc.cfg"));
    assert_eq!(e.line, Some(4));
    assert_eq!(e.section.as_deref(), Some("Main"));
    assert_eq!(e.key.as_deref(), Some("config_dir"));
    assert!(
        e.to_string().starts_with(&format!(
            "{}:4: [Main] config_dir: Cannot list config_dir {}: ",
            h.s("usrsvc.cfg"),
            h.s("loop")
        )),
        "{e}"
    );
}

#[test]
fn bad_boolean() {
    let h = Home::new();
    h.main(with_program("autostart = yes\n"));
    let e = h.error();
    check(
        &e,
        K::InvalidBool,
        Some(7),
        Some("autostart"),
        "Unknown value for config parameter autostart: yes. Should be True/1 or False/0",
    );
    assert_eq!(
        e.to_string(),
        format!(
            "{}:7: [Program:p] autostart: Unknown value for config parameter autostart: yes. Should be True/1 or False/0",
            h.s("usrsvc.cfg")
        )
    );
}

#[test]
fn bad_integers() {
    let h = Home::new();
    for (line, key, value) in [
        ("maxrestarts = -1", "maxrestarts", "-1"),
        ("restart_delay = 1.5", "restart_delay", "1.5"),
    ] {
        h.main(with_program(&format!("{line}\n")));
        check(
            &h.error(),
            K::InvalidInt,
            Some(7),
            Some(key),
            &format!(
                "Invalid value for config parameter {key}. Should be a positive integer. Got {value}"
            ),
        );
    }
    h.main(with_program("[[Monitoring]]\nrss_limit = -5\n"));
    check(
        &h.error(),
        K::InvalidInt,
        Some(8),
        Some("Monitoring.rss_limit"),
        "Invalid value for config parameter rss_limit. Should be a positive integer. Got -5",
    );
}

#[test]
fn bad_floats() {
    let h = Home::new();
    for (key, value) in [
        ("success_seconds", "1e3"),
        ("success_seconds", "5."),
        ("term_to_kill_seconds", "-1"),
    ] {
        h.main(with_program(&format!("{key} = {value}\n")));
        check(
            &h.error(),
            K::InvalidFloat,
            Some(7),
            Some(key),
            &format!(
                "Invalid value for config parameter {key}. Should be a positive floating-point number. Got {value}"
            ),
        );
    }
    h.main(with_program("success_seconds = ''\n"));
    check(
        &h.error(),
        K::InvalidFloat,
        Some(7),
        Some("success_seconds"),
        "could not convert string to float: ''",
    );
    h.main(with_program(
        "success_seconds = .5\nterm_to_kill_seconds = 0\n",
    ));
    let c = h.ok();
    assert_eq!(c.programs[0].success_seconds, 0.5);
    assert_eq!(c.programs[0].term_to_kill_seconds, 0.0);
}

#[test]
fn duplicate_key() {
    let h = Home::new();
    h.main(with_program("").replace("stdout = ~/logs/p.out\n", "command = x\n"));
    let e = h.error();
    check(
        &e,
        K::DuplicateKey,
        Some(6),
        None,
        "Duplicate keyword name at line 6.",
    );
    assert_eq!(e.file, h.path("usrsvc.cfg"));
}

#[test]
fn duplicate_section_in_a_file() {
    let h = Home::new();
    h.main(format!("{}[Program:p]\ncommand = y\n", with_program("")));
    let e = h.errors();
    check(
        &e[0],
        K::DuplicateSection,
        Some(7),
        None,
        "Duplicate section name at line 7.",
    );
    // As in configobj, the next keys land in the previous section and collide there.
    check(
        &e[1],
        K::DuplicateKey,
        Some(8),
        None,
        "Duplicate keyword name at line 8.",
    );
}

#[test]
fn duplicate_default_settings_names_both_places() {
    let h = Home::new();
    h.main(format!("{MAIN}[DefaultSettings:d]\nsuccess_seconds = 1\n"));
    h.write("cfg/x.cfg", "\n[DefaultSettings:d]\nrestart_delay = 1\n");
    let e = h.error();
    check(
        &e,
        K::DuplicateDefaults,
        Some(2),
        None,
        &format!(
            "Multiple DefaultSettings object with name \"d\". Second encountered in \"{}\" (first defined at {}:3)",
            h.s("cfg/x.cfg"),
            h.s("usrsvc.cfg")
        ),
    );
    assert_eq!(e.file, h.path("cfg/x.cfg"));

    h.main(format!("{MAIN}[DefaultSettings:]\n"));
    fs::remove_file(h.path("cfg/x.cfg")).expect("rm");
    check(
        &h.error(),
        K::DefaultsWithoutName,
        Some(3),
        None,
        &format!(
            "DefaultSettings section defined without a name in \"{}\"",
            h.s("usrsvc.cfg")
        ),
    );
}

#[test]
fn unknown_defaults() {
    let h = Home::new();
    h.main(with_program("defaults = nothere\n"));
    check(
        &h.error(),
        K::UnknownDefaults,
        Some(7),
        Some("defaults"),
        &format!(
            "Program \"p\" in file \"{}\" uses a \"defaults\" of \"nothere\", but no such DefaultSettings section exists in read configuration files!",
            h.s("usrsvc.cfg")
        ),
    );
}

#[test]
fn comma_in_command_is_a_clean_error() {
    let h = Home::new();
    h.main(format!(
        "{MAIN}[Program:p]\ncommand = echo a, b\npidfile = ~/p.pid\nstdout = ~/logs/p.out\n"
    ));
    check(
        &h.error(),
        K::ListValue,
        Some(4),
        Some("command"),
        "Invalid value for config parameter command: a list (unquoted comma); quote the value",
    );
    // Quoted, the comma is part of the command.
    h.main(format!(
        "{MAIN}[Program:p]\ncommand = \"echo a, b\"\npidfile = ~/p.pid\nstdout = ~/logs/p.out\n"
    ));
    assert_eq!(h.ok().programs[0].argv, ["echo", "a,", "b"]);
}

#[test]
fn command_ending_with_ampersand_warns() {
    let h = Home::new();
    h.main(format!(
        "{MAIN}[Program:p]\ncommand = sleep 1000 &\npidfile = ~/p.pid\nstdout = ~/logs/p.out\n"
    ));
    let c = h.ok();
    assert_eq!(c.programs[0].command, "sleep 1000 ");
    assert_eq!(c.programs[0].argv, ["sleep", "1000"]);
    assert_eq!(
        c.warnings,
        ["Warning: Program p is configured to launch in the background (ends with &) which is not supported. Disregarding final &."]
    );
}

#[test]
fn missing_sendmail_path() {
    let h = Home::new();
    h.main("[Main]\nsendmail_path = /no/such/sendmail\n");
    check(
        &h.error(),
        K::SendmailMissing,
        Some(2),
        Some("sendmail_path"),
        "sendmail_path \"/no/such/sendmail\" does not exist.",
    );
    h.write("bin/sendmail", "#!/bin/sh\n");
    h.main("[Main]\nsendmail_path = ~/bin/sendmail\n");
    assert_eq!(h.ok().main.sendmail_path, Some(h.path("bin/sendmail")));
}

#[test]
fn invalid_line() {
    let h = Home::new();
    h.main(with_program("").replace("pidfile = ~/p.pid", "pidfile: ~/p.pid"));
    check(
        &h.error(),
        K::InvalidLine,
        Some(5),
        None,
        "Invalid line ('pidfile: ~/p.pid') (matched as neither section nor keyword) at line 5.",
    );
}

#[test]
fn env_as_a_value() {
    let h = Home::new();
    h.main(with_program("Env = FOO\n"));
    check(
        &h.error(),
        K::NotASubsection,
        Some(7),
        Some("Env"),
        "Env must be a subsection, like [[Env]]",
    );
}

#[test]
fn program_without_a_name() {
    let h = Home::new();
    h.main(with_program("").replace("[Program:p]", "[Program:]"));
    let e = h.error();
    check(
        &e,
        K::ProgramWithoutName,
        Some(3),
        None,
        "Program Config defined without a name.",
    );
}

#[test]
fn bad_regex() {
    let h = Home::new();
    h.main(with_program("proctitle_re = (unclosed\n"));
    check(
        &h.error(),
        K::InvalidProctitleRe,
        Some(7),
        Some("proctitle_re"),
        "Cannot parse proctitle_re: (unclosed\nError: missing ), unterminated subpattern at position 0",
    );
    // Python syntax the default engine has too, such as lookaround, is accepted.
    h.main(with_program("proctitle_re = ^sleep (?=1000)\n"));
    assert_eq!(
        h.ok().programs[0].proctitle_re.as_deref(),
        Some("^sleep (?=1000)")
    );
}

#[test]
fn unbalanced_quote_in_command() {
    let h = Home::new();
    h.main(format!(
        "{MAIN}[Program:p]\ncommand = echo 'unterminated\npidfile = ~/p.pid\nstdout = ~/logs/p.out\n"
    ));
    check(
        &h.error(),
        K::CommandUnparsable,
        Some(4),
        Some("command"),
        "Cannot parse command,\necho 'unterminated\nError: No closing quotation",
    );
}

#[test]
fn unknown_sections_and_top_level_keys_are_ignored() {
    let h = Home::new();
    h.main(format!(
        "top = 1\n{}[Programs:x]\nanything = goes\n[Other]\n[[Deep]]\nk = v\n",
        with_program("")
    ));
    h.write("cfg/x.cfg", "[Main]\nbogus = 1\nstray = key\n");
    let c = h.ok();
    assert_eq!(c.programs.len(), 1);
}

#[test]
fn same_program_in_main_and_config_dir_names_both() {
    let h = Home::new();
    h.main(with_program(""));
    h.write(
        "cfg/dup.cfg",
        "# again\n[Program:p]\ncommand = sleep 2\npidfile = p2.pid\nstdout = ../logs/p2.out\n",
    );
    let e = h.error();
    check(
        &e,
        K::DuplicateProgram,
        Some(2),
        None,
        &format!(
            "Program \"p\" is defined more than once: first at {}:3, again at {}:2",
            h.s("usrsvc.cfg"),
            h.s("cfg/dup.cfg")
        ),
    );
    assert_eq!(e.file, h.path("cfg/dup.cfg"));
}

// -------------------------------------------------------------------- files and encodings

#[test]
fn missing_main_file() {
    let h = Home::new();
    let e = h.error();
    check(
        &e,
        K::FileMissing,
        None,
        None,
        &format!("File does not exist: {}", h.s("usrsvc.cfg")),
    );
}

#[test]
fn invalid_utf8_names_the_file() {
    let h = Home::new();
    h.main(b"[Main]\n# caf\xe9\n".as_slice());
    let e = h.error();
    check(
        &e,
        K::InvalidUtf8,
        Some(2),
        None,
        "'utf-8' codec can't decode byte 0xe9 in position 5: invalid continuation byte",
    );
    assert_eq!(e.file, h.path("usrsvc.cfg"));
}

#[test]
fn bom_and_crlf_are_fine() {
    let h = Home::new();
    h.main(format!(
        "\u{feff}{}",
        with_program("").replace('\n', "\r\n")
    ));
    assert_eq!(h.ok().programs[0].command, "sleep 1000");
}

#[test]
fn config_dir_files_sorted_dotfiles_and_directories_skipped() {
    let h = Home::new();
    h.main(MAIN);
    let prog = |n: &str| {
        format!("[Program:{n}]\ncommand = sleep 1\npidfile = {n}.pid\nstdout = ../logs/{n}.out\n")
    };
    h.write("cfg/b.cfg", prog("b"));
    h.write("cfg/a.cfg", prog("a"));
    h.write("cfg/B.cfg", prog("B"));
    h.write("cfg/.hidden.cfg", prog("hidden"));
    h.write("cfg/notes.txt", prog("txt"));
    fs::create_dir_all(h.path("cfg/dir.cfg")).expect("mkdir");
    h.write("cfg/sub/c.cfg", prog("c"));
    let c = h.ok();
    let names: Vec<&str> = c.programs.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(names, ["B", "a", "b"]);
    assert_eq!(
        c.files,
        vec![
            h.path("usrsvc.cfg"),
            h.path("cfg/B.cfg"),
            h.path("cfg/a.cfg"),
            h.path("cfg/b.cfg")
        ]
    );
    // A missing config_dir is no error.
    h.main("[Main]\nconfig_dir = nowhere\n");
    assert!(h.ok().programs.is_empty());
}

#[test]
fn errors_from_every_file_are_all_reported() {
    let h = Home::new();
    h.main(with_program("autostart = maybe\n"));
    h.write(
        "cfg/a.cfg",
        "[Program:a]\ncommand = x\npidfile = a\nstdout = ../logs/a\nrss_limit = 1\n",
    );
    h.write(
        "cfg/b.cfg",
        "[Program:b]\npidfile = b\nstdout = ../logs/b\n",
    );
    let e = h.errors();
    let got: Vec<(K, String, Option<usize>)> = e
        .iter()
        .map(|e| {
            (
                e.kind,
                e.file
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default(),
                e.line,
            )
        })
        .collect();
    assert_eq!(
        got,
        vec![
            (K::InvalidBool, "usrsvc.cfg".into(), Some(7)),
            (K::UnknownKeys, "a.cfg".into(), Some(5)),
            (K::MissingCommand, "b.cfg".into(), Some(1)),
        ]
    );
    // Syntax errors of all files are reported together (and nothing else).
    h.write("cfg/a.cfg", "[Program:a]\noops\n");
    h.write("cfg/b.cfg", "k = 1\nk = 2\n");
    let e = h.errors();
    let kinds: Vec<K> = e.iter().map(|e| e.kind).collect();
    assert_eq!(kinds, [K::InvalidLine, K::DuplicateKey]);
}

#[test]
fn main_pidfile_default_uses_home_and_uid() {
    let h = Home::new();
    h.main("[Main]\n");
    let uid = nix::unistd::getuid().as_raw();
    assert_eq!(h.ok().main.pidfile, h.path(&format!("{uid}_usrsvcd.pid")));
}

#[test]
fn interpolation_errors_name_the_key() {
    let h = Home::new();
    h.main(with_program("email_alerts = %(who)s@example.com\n"));
    check(
        &h.error(),
        K::InterpolationMissing,
        Some(7),
        Some("email_alerts"),
        "missing option \"who\" in interpolation.",
    );
    h.main(format!(
        "who = ops\n{}[[Env]]\nMAILTO = %(who)s@example.com\n",
        with_program("email_alerts = %(who)s@example.com\n")
    ));
    let c = h.ok();
    let p = &c.programs[0];
    assert_eq!(p.email_alerts.as_deref(), Some("ops@example.com"));
    assert_eq!(
        p.env,
        [("MAILTO".to_string(), "ops@example.com".to_string())]
    );
    h.main(with_program("[[Env]]\nA = %(nope)s\n"));
    check(
        &h.error(),
        K::InterpolationMissing,
        Some(8),
        Some("Env.A"),
        "missing option \"nope\" in interpolation.",
    );
}

// ------------------------------------------------------------------- examples and README

fn copy(from: &Path, to: &Path) {
    if let Some(dir) = to.parent() {
        fs::create_dir_all(dir).expect("mkdir");
    }
    fs::copy(from, to).expect("copy");
}

fn repo(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(rel)
}

#[test]
fn shipped_examples_parse_as_spec_9_2_says() {
    let h = Home::new();
    copy(&repo("examples/usrsvc.cfg"), &h.path("usrsvc.cfg"));
    copy(
        &repo("examples/cfg/MagicLooper.cfg"),
        &h.path("usrsvc.d/cfg/MagicLooper.cfg"),
    );
    fs::create_dir_all(h.path("usrsvc.d/logs")).expect("mkdir");
    let c = h.ok();
    assert_eq!(c.main.config_dir, Some(h.path("usrsvc.d/cfg")));
    assert_eq!(c.main.pidfile, h.path("usrsvc.d/pids/usrsvcd.pid"));
    assert_eq!(
        c.main.usrsvcd_stdout,
        Some(h.path("usrsvc.d/logs/usrsvcd.log"))
    );
    assert_eq!(c.main.usrsvcd_stderr, Some(LogTarget::Stdout));
    assert_eq!(c.programs.len(), 1);
    let p = c.program("MagicLooper").expect("MagicLooper");
    assert_eq!(p.defined_at.file, h.path("usrsvc.d/cfg/MagicLooper.cfg"));
    assert_eq!(p.command, "/home/myusr/bin/MagicLooper.py");
    assert_eq!(p.argv, ["/home/myusr/bin/MagicLooper.py"]);
    assert_eq!(p.pidfile, h.path("usrsvc.d/pids/magiclooper.pid"));
    assert_eq!(p.stdout, h.path("usrsvc.d/logs/magiclooper.out"));
    assert_eq!(p.stderr, h.path("usrsvc.d/logs/magiclooper.err"));
    assert!(!p.useshell);
    assert_eq!(p.email_alerts.as_deref(), Some("somebody@example.com"));
    assert_eq!(p.env, [("hello".to_string(), "world".to_string())]);
    assert!(p.autostart && p.autorestart && p.enabled && p.autopid);
    assert!(p.scan_for_process && p.inherit_env);
    assert_eq!((p.maxrestarts, p.restart_delay), (0, 0));
    assert_eq!((p.success_seconds, p.term_to_kill_seconds), (2.0, 8.0));
    assert_eq!(p.monitoring, MonitoringConfig::default());
    assert_eq!(
        (p.monitoring.monitor_after, p.monitoring.activityfile_limit),
        (30, 120)
    );
    assert_eq!(p.proctitle_re, None);
    assert_eq!(p.defaults, None);
    assert!(c.warnings.is_empty());
    // New in 2.0, in [Main].
    assert_eq!(c.main.kill_switch_file, Some(h.path("usrsvc.d/FREEZE")));
    assert_eq!(c.main.audit_log, Some(h.path("usrsvc.d/logs/audit.log")));
    assert!(!c.main.require_reason);
    assert_eq!(
        c.main.restart_windows.as_ref().map(ToString::to_string),
        Some("Mon-Fri 01:00-05:00, Sat-Sun 00:00-24:00".to_string())
    );
}

#[test]
fn the_data_service_example_has_a_group_a_plan_and_health_checks() {
    let h = Home::new();
    copy(&repo("examples/usrsvc.cfg"), &h.path("usrsvc.cfg"));
    copy(
        &repo("examples/cfg/xrootd.cfg"),
        &h.path("usrsvc.d/cfg/xrootd.cfg"),
    );
    fs::create_dir_all(h.path("usrsvc.d/logs")).expect("mkdir");
    let c = h.ok();
    let g = c.group("xrootd").expect("group");
    assert_eq!(g.programs, ["cmsd", "xrootd"]);
    assert_eq!(g.sequence.as_ref().map(Vec::len), Some(4));
    assert!(g.schedule.at.is_some());
    // The group has no windows of its own: [Main]'s.
    assert_eq!(g.schedule.windows, c.main.restart_windows);
    let x = c.program("xrootd").expect("xrootd");
    let checks: Vec<&str> = x.health_checks.iter().map(|h| h.name.as_str()).collect();
    assert_eq!(checks, ["probe", "disk"]);
    assert_eq!(x.term_to_kill_seconds, 60.0);
    assert_eq!(c.program("cmsd").expect("cmsd").restart_delay, 10);
}

#[test]
fn the_rolling_group_example_inherits_its_health_check() {
    let h = Home::new();
    copy(&repo("examples/usrsvc.cfg"), &h.path("usrsvc.cfg"));
    copy(
        &repo("examples/cfg/web.cfg"),
        &h.path("usrsvc.d/cfg/web.cfg"),
    );
    fs::create_dir_all(h.path("usrsvc.d/logs")).expect("mkdir");
    let c = h.ok();
    let g = c.group("web").expect("group");
    assert_eq!(
        (g.programs.len(), g.min_ok, g.sequence.is_none()),
        (3, 2, true)
    );
    assert!(g.schedule.every.is_some() && g.schedule.windows.is_some());
    for name in ["web1", "web2", "web3"] {
        let p = c.program(name).expect("worker");
        let checks: Vec<&str> = p.health_checks.iter().map(|h| h.name.as_str()).collect();
        assert_eq!(
            checks,
            ["http"],
            "{name} inherits the check from its defaults"
        );
        assert_eq!(p.health_checks[0].failures, 4);
        assert_eq!(p.term_to_kill_seconds, 20.0);
        assert_eq!(
            (p.stop_signal, p.stop_group),
            (3, true),
            "SIGQUIT, inherited"
        );
    }
}

#[test]
fn readme_snippets() {
    let h = Home::new();
    h.main(MAIN);
    let home = h.home.display().to_string();
    let program = fs::read_to_string(repo("tests/fixtures/config/readme_program.cfg"))
        .expect("fixture")
        .replace("/home/myusr", &home);
    let defaults =
        fs::read_to_string(repo("tests/fixtures/config/readme_defaults.cfg")).expect("fixture");
    h.write("cfg/myprogram.cfg", program);
    h.write("cfg/defaults.cfg", defaults);
    h.write(
        "cfg/user.cfg",
        "[Program:user]\ndefaults = mydefaults\ncommand = sleep 5\npidfile = u.pid\nstdout = ../logs/u.out\n",
    );
    let c = h.ok();
    let p = c.program("myprogram").expect("myprogram");
    assert_eq!(
        p.argv,
        [
            format!("{home}/bin/myprogram.py"),
            "arg1".into(),
            "arg2".into()
        ]
    );
    assert_eq!(p.stdout, h.path("logs/myprogram.log"));
    assert_eq!(p.stderr, p.stdout);
    assert_eq!(
        p.env,
        [
            ("DB_USER".to_string(), "superdb".to_string()),
            ("DB_NAME".to_string(), "mydatabase".to_string())
        ]
    );
    let u = c.program("user").expect("user");
    assert_eq!(u.success_seconds, 5.0);
    assert_eq!(u.restart_delay, 3);
    assert_eq!(u.maxrestarts, 3);
    assert_eq!(u.email_alerts.as_deref(), Some("nobody@example.com"));
    assert_eq!(u.defaults.as_deref(), Some("mydefaults"));
}

// ------------------------------------------------------------------------- robustness

/// xorshift64*: deterministic, dependency-free.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: usize) -> usize {
        usize::try_from(self.next() % (n.max(1) as u64)).unwrap_or(0)
    }
}

const RICH: &str = "\u{feff}# a config touching every feature
top = ~/logs
[Main]
config_dir = cfg/
pidfile = ~/run/usrsvcd.pid
usrsvcd_stdout = %(top)s/usrsvcd.log
usrsvcd_stderr = stdout
sendmail_path = auto
[DefaultSettings:d]
success_seconds = .5
max_restarts = 3
[[Env]]
A = 'x, y'
[[Monitoring]]
rss_limit = 10
[Program:p]
defaults = d
command = \"sh -c 'echo \\\"%(top)s\\\" # not a comment'\"
pidfile = ~/p.pid
stdout = ~/logs/p.out
stderr = stdout
proctitle_re = '''^sh -c (?=echo)'''
email_alerts = a@b, c@d
[[Env]]
B = \"\"\"multi
line\"\"\"
[[Monitor]]
activityfile = act
[Program:q]
command = sleep 1 &
pidfile = q.pid
stdout = logs/q.out
autostart = 0
";

fn try_load(h: &Home, text: &[u8]) {
    h.main(text);
    // Any outcome is fine; reaching here without a panic is the point.
    let _ = h.load();
}

/// Loads `text` mutated at random `mutations` times (bytes replaced, inserted or removed; one
/// new byte in `random_one_in` is any byte, the others come from `specials`), then with its
/// lines shuffled `shuffles` times.
fn mangle(
    h: &Home,
    text: &str,
    seed: u64,
    specials: &[u8],
    random_one_in: usize,
    (mutations, shuffles): (usize, usize),
) {
    let bytes = text.as_bytes();
    let mut rng = Rng(seed);
    for _ in 0..mutations {
        let mut b = bytes.to_vec();
        for _ in 0..=rng.below(6) {
            let i = rng.below(b.len());
            let byte = if rng.below(random_one_in) != 0 {
                specials
                    .get(rng.below(specials.len()))
                    .copied()
                    .unwrap_or(b'x')
            } else {
                u8::try_from(rng.next() & 0xff).unwrap_or(0)
            };
            match rng.below(3) {
                0 => {
                    if let Some(slot) = b.get_mut(i) {
                        *slot = byte;
                    }
                }
                1 => b.insert(i, byte),
                _ => {
                    if i < b.len() {
                        b.remove(i);
                    }
                }
            }
        }
        try_load(h, &b);
    }
    let lines: Vec<&str> = text.lines().collect();
    for _ in 0..shuffles {
        let mut l = lines.clone();
        for i in (1..l.len()).rev() {
            l.swap(i, rng.below(i + 1));
        }
        try_load(h, l.join("\n").as_bytes());
    }
}

#[test]
fn mangled_configs_never_panic() {
    let h = Home::new();
    h.write(
        "cfg/x.cfg",
        "[Program:x]\ncommand = x\npidfile = x\nstdout = ../logs/x\n",
    );
    try_load(&h, RICH.as_bytes());
    let bytes = RICH.as_bytes();
    for end in 0..=bytes.len() {
        try_load(&h, bytes.get(..end).unwrap_or_default());
    }
    mangle(
        &h,
        RICH,
        0x5eed_1234_abcd_ef01,
        b"[]\"'#,=%()&~\\\n\r\t \xff\xc3\x80",
        2,
        (400, 200),
    );
}

/// The keys new in 2.0: schedules, windows, groups, sequences, health checks, the kill switch
/// and the audit trail, inherited through DefaultSettings too.
const RICH_2_0: &str = "[Main]
config_dir = cfg/
restart_windows = \"Mon-Fri 01:00-05:00, Sat-Sun 00:00-24:00\", 22:00-02:00
kill_switch_file = ~/FREEZE
require_reason = true
audit_log = logs/audit.log
audit_syslog = udp://127.0.0.1:514
[DefaultSettings:d]
restart_jitter = 1h30m
[[HealthCheck:base]]
command = true
interval = 0.5
[Program:p]
defaults = d
command = sleep 1000
pidfile = p.pid
stdout = logs/p.out
restart_every = 3d
restart_at = Sun 03:30, Mon-Fri 02:00
restart_delay = 5m
term_to_kill_seconds = 1.5s
[[HealthCheck:http]]
command = curl -fs localhost
interval = 30s
timeout = 10s
start_period = 1m
failures = 3
repair = ./fix
action = alert
[Program:q]
command = sleep 1001
pidfile = q.pid
stdout = logs/q.out
restart_windows = Fri-Mon 23:00-24:00
[Group:g]
programs = p, q
sequence = \"restart q, wait 5m, restart p\"
min_ok = 1
restart_at = Sat-Sun 04:00
[Group:p]
programs = q, p
";

#[test]
fn mangled_configs_with_the_2_0_keys_never_panic() {
    let h = Home::new();
    h.main(RICH_2_0);
    h.ok();
    let bytes = RICH_2_0.as_bytes();
    for end in 0..=bytes.len() {
        try_load(&h, bytes.get(..end).unwrap_or_default());
    }
    mangle(
        &h,
        RICH_2_0,
        0x0200_5eed_cafe,
        b"[]\"'#,=%()&~\\\n\t -:0123456789smhd\xff\xc3\x80",
        3,
        (1500, 300),
    );
}
