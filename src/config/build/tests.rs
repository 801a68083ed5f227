//! The builder's tests: each key's defaults, checks and messages, on fake files and a fake
//! system (`Fake`), so they need no real files or processes.

use super::super::syntax::parse_bytes;
use super::program::unclosed_paren;
use super::*;
use crate::config::{LogTarget, MonitoringConfig};

/// A system where only the listed paths exist.
#[derive(Default)]
pub(super) struct Fake {
    pub(super) dirs: Vec<&'static str>,
    pub(super) files: Vec<&'static str>,
    pub(super) executables: Vec<&'static str>,
    pub(super) path: Option<&'static str>,
}

impl Probe for Fake {
    fn is_dir(&self, path: &Path) -> bool {
        self.dirs.iter().any(|d| Path::new(d) == path)
    }
    fn exists(&self, path: &Path) -> bool {
        self.is_dir(path) || self.files.iter().any(|f| Path::new(f) == path)
    }
    fn is_executable(&self, path: &Path) -> bool {
        self.executables.iter().any(|f| Path::new(f) == path)
    }
    fn path_var(&self) -> Option<OsString> {
        self.path.map(OsString::from)
    }
    fn uid(&self) -> u32 {
        1001
    }
}

fn fake() -> Fake {
    Fake {
        dirs: vec!["/home/u", "/home/u/logs", "/home/u/cfg", "/home/u/cfg/logs"],
        ..Fake::default()
    }
}

pub(super) fn file(path: &str, text: &str) -> SourceFile {
    match parse_bytes(text.as_bytes()) {
        Ok(p) if p.errors.is_empty() => SourceFile {
            path: PathBuf::from(path),
            tree: p.tree,
        },
        other => panic!("{other:?}"),
    }
}

pub(super) fn build_with(files: &[SourceFile], probe: &Fake) -> Result<Config, ConfigErrors> {
    build(files, Path::new("/home/u"), probe)
}

pub(super) fn ok(files: &[SourceFile]) -> Config {
    match build_with(files, &fake()) {
        Ok(c) => c,
        Err(e) => panic!("{e}"),
    }
}

pub(super) fn errors(files: &[SourceFile]) -> Vec<ConfigError> {
    match build_with(files, &fake()) {
        Ok(c) => panic!("accepted: {c:?}"),
        Err(e) => e.into_vec(),
    }
}

pub(super) const PROG: &str =
    "[Program:p]\ncommand = sleep 1000\npidfile = p.pid\nstdout = logs/p.out\n";

pub(super) fn main_with(rest: &str) -> SourceFile {
    file("/home/u/usrsvc.cfg", &format!("[Main]\n{rest}"))
}

#[test]
fn defaults_of_a_minimal_program() {
    let c = ok(&[main_with(PROG)]);
    assert_eq!(c.main.pidfile, PathBuf::from("/home/u/1001_usrsvcd.pid"));
    assert_eq!(c.main.config_dir, None);
    assert_eq!(c.main.sendmail_path, None);
    let p = c.program("p").expect("p");
    assert_eq!(p.defined_at.line, 2);
    assert_eq!(p.argv, ["sleep", "1000"]);
    assert_eq!(p.pidfile, PathBuf::from("/home/u/p.pid"));
    assert_eq!(p.stdout, PathBuf::from("/home/u/logs/p.out"));
    assert_eq!(p.stderr, p.stdout);
    assert!(p.enabled && p.autostart && p.autorestart && p.autopid);
    assert!(p.scan_for_process && p.inherit_env && !p.useshell);
    assert_eq!((p.maxrestarts, p.restart_delay), (0, 0));
    assert_eq!((p.success_seconds, p.term_to_kill_seconds), (2.0, 8.0));
    assert_eq!(p.monitoring, MonitoringConfig::default());
    assert!(!p.monitoring.is_active());
    assert_eq!(p.proctitle_re, None);
    assert_eq!(p.email_alerts, None);
    assert!(c.program("q").is_none());
}

#[test]
fn daemon_keys_new_in_2_0() {
    let c = ok(&[main_with(PROG)]);
    let p = c.program("p").expect("p");
    assert_eq!((p.restart_delay_max, p.stable_seconds), (300, 60.0));
    assert_eq!((p.email_interval, p.monitoring.check_interval), (300, 5.0));
    assert_eq!(c.main.smtp, None);

    let c = ok(&[main_with(&format!(
        "smtp_host = mail.example\nsmtp_starttls = true\nsmtp_credentials_file = ~/smtp.pw\n\
         {PROG}restart_delay = 400\nstable_seconds = 1.5\nemail_interval = 0\n\
         [[Monitoring]]\nrss_limit = 100\ncheck_interval = 0.5\n"
    ))]);
    let smtp = c.main.smtp.clone().expect("smtp");
    assert_eq!(
        (smtp.host.as_str(), smtp.port, smtp.starttls),
        ("mail.example", 25, true)
    );
    assert_eq!(
        smtp.credentials_file,
        Some(PathBuf::from("/home/u/smtp.pw"))
    );
    let p = c.program("p").expect("p");
    // An absent cap never undercuts an explicit delay.
    assert_eq!((p.restart_delay, p.restart_delay_max), (400, 400));
    assert_eq!((p.stable_seconds, p.email_interval), (1.5, 0));
    assert_eq!(p.monitoring.check_interval, 0.5);
}

#[test]
fn stop_keys_new_in_2_0() {
    let p = ok(&[main_with(PROG)]).programs.remove(0);
    assert!(p.stop_group);
    assert_eq!(p.stop_signal, rustix::process::Signal::TERM.as_raw());
    for (text, sig) in [
        ("QUIT", rustix::process::Signal::QUIT),
        ("sigint", rustix::process::Signal::INT),
        (" HUP ", rustix::process::Signal::HUP),
        ("10", rustix::process::Signal::USR1),
    ] {
        let c = ok(&[main_with(&format!(
            "{PROG}stop_signal = {text}\nstop_group = false\n"
        ))]);
        assert_eq!(c.programs[0].stop_signal, sig.as_raw(), "{text}");
        assert!(!c.programs[0].stop_group);
    }
    for bad in ["TERMINATE", "STOP", "cont", "0", "999", "-15"] {
        let e = errors(&[main_with(&format!("{PROG}stop_signal = {bad}\n"))]);
        assert_eq!(e.len(), 1, "{bad}: {e:?}");
        assert_eq!(
            (e[0].kind, e[0].line),
            (Kind::InvalidSignal, Some(6)),
            "{bad}"
        );
        assert_eq!(e[0].key.as_deref(), Some("stop_signal"));
    }
    let e = errors(&[main_with(&format!("{PROG}stop_group = maybe\n"))]);
    assert_eq!((e[0].kind, e[0].line), (Kind::InvalidBool, Some(6)));
}

#[test]
fn daemon_keys_rejected_with_their_place() {
    let e = errors(&[main_with(&format!(
        "{PROG}restart_delay = 10\nrestart_delay_max = 5\n"
    ))]);
    assert_eq!(e.len(), 1, "{e:?}");
    assert_eq!((e[0].kind, e[0].line), (Kind::InvalidRange, Some(7)));
    assert_eq!(e[0].key.as_deref(), Some("restart_delay_max"));

    let e = errors(&[main_with(&format!("smtp_port = 2525\n{PROG}"))]);
    assert_eq!((e[0].kind, e[0].line), (Kind::SmtpWithoutHost, Some(2)));
    assert_eq!(e[0].key.as_deref(), Some("smtp_port"));

    let e = errors(&[main_with(&format!(
        "smtp_host = h\nsmtp_port = 70000\n{PROG}"
    ))]);
    assert_eq!((e[0].kind, e[0].line), (Kind::InvalidRange, Some(3)));

    let e = errors(&[main_with(&format!(
        "{PROG}[[Monitoring]]\ncheck_interval = 0\n"
    ))]);
    assert_eq!((e[0].kind, e[0].line), (Kind::InvalidRange, Some(7)));
    assert_eq!(e[0].key.as_deref(), Some("Monitoring.check_interval"));

    let e = errors(&[main_with(&format!("{PROG}stable_seconds = soon\n"))]);
    assert_eq!(e[0].kind, Kind::InvalidFloat);
}

#[test]
fn sendmail_discovery_order() {
    let main = || main_with("");
    let probe = Fake {
        files: vec!["/usr/bin/sendmail", "/usr/sbin/sendmail"],
        ..fake()
    };
    let c = build_with(&[main()], &probe).expect("ok");
    assert_eq!(
        c.main.sendmail_path,
        Some(PathBuf::from("/usr/sbin/sendmail"))
    );
    let probe = Fake {
        files: vec!["/usr/bin/sendmail"],
        ..fake()
    };
    let c = build_with(&[main()], &probe).expect("ok");
    assert_eq!(
        c.main.sendmail_path,
        Some(PathBuf::from("/usr/bin/sendmail"))
    );
    // Empty PATH entries skipped, one trailing slash trimmed, first executable wins.
    let probe = Fake {
        executables: vec!["/opt/b/sendmail", "/opt/c/sendmail"],
        path: Some("/opt/a::/opt/b/:/opt/c"),
        ..fake()
    };
    let c = build_with(&[main()], &probe).expect("ok");
    assert_eq!(c.main.sendmail_path, Some(PathBuf::from("/opt/b/sendmail")));
    // `auto` and empty mean discovery too.
    for v in ["auto", ""] {
        let c = build_with(&[main_with(&format!("sendmail_path = {v}\n"))], &probe).expect("ok");
        assert_eq!(c.main.sendmail_path, Some(PathBuf::from("/opt/b/sendmail")));
    }
    // An explicit one must exist; relative ones are resolved first.
    let probe = Fake {
        files: vec!["/home/u/bin/sm"],
        ..fake()
    };
    let c = build_with(&[main_with("sendmail_path = bin/sm\n")], &probe).expect("ok");
    assert_eq!(c.main.sendmail_path, Some(PathBuf::from("/home/u/bin/sm")));
    let e = build_with(&[main_with("sendmail_path = /no/sm\n")], &probe)
        .err()
        .and_then(|e| e.first().cloned())
        .expect("error");
    assert_eq!(e.message, "sendmail_path \"/no/sm\" does not exist.");
    assert_eq!((e.kind, e.line), (Kind::SendmailMissing, Some(2)));
}

#[test]
fn main_keys() {
    let c = ok(&[main_with(
        "config_dir = ~/cfg/\npidfile = run/d.pid\nusrsvcd_stdout = ~/logs/d.log\nusrsvcd_stderr = stdout\n",
    )]);
    assert_eq!(c.main.config_dir, Some(PathBuf::from("/home/u/cfg")));
    assert_eq!(c.main.pidfile, PathBuf::from("/home/u/run/d.pid"));
    assert_eq!(
        c.main.usrsvcd_stdout,
        Some(PathBuf::from("/home/u/logs/d.log"))
    );
    assert_eq!(c.main.usrsvcd_stderr, Some(LogTarget::Stdout));
    let c = ok(&[main_with("usrsvcd_stderr = /var/log/e\nconfig_dir = /\n")]);
    assert_eq!(
        c.main.usrsvcd_stderr,
        Some(LogTarget::Path(PathBuf::from("/var/log/e")))
    );
    assert_eq!(c.main.config_dir, Some(PathBuf::from("/")));
    let e = errors(&[main_with(
        "bogus = 1\nconfig_dir = a, b\nother = 2\n[[Sub]]\n",
    )]);
    let got: Vec<(Kind, Option<usize>, String)> =
        e.into_iter().map(|e| (e.kind, e.line, e.message)).collect();
    assert_eq!(
        got,
        vec![
            (
                Kind::UnknownMainKeys,
                Some(2),
                "Unknown config options in Main section: ['bogus', 'other', 'Sub']".into()
            ),
            (
                Kind::ListValue,
                Some(3),
                "Invalid value for config parameter config_dir: a list (unquoted comma); quote the value".into()
            ),
        ]
    );
}

#[test]
fn errors_come_in_the_originals_order_and_all_of_them() {
    let e = errors(&[main_with(
        "\
[Program:a]
colour = red
proctitle_re = (x
autostart = yes
command = echo 'x
maxrestarts = -1
[[Monitoring]]
rss_limit = -5
bogus = 1
[Program:b]
command = true
",
    )]);
    let got: Vec<(Kind, Option<&str>, Option<&str>)> = e
        .iter()
        .map(|e| (e.kind, e.section.as_deref(), e.key.as_deref()))
        .collect();
    assert_eq!(
        got,
        vec![
            (Kind::PidfileMissing, Some("Program:a"), Some("pidfile")),
            (Kind::InvalidBool, Some("Program:a"), Some("autostart")),
            (Kind::InvalidInt, Some("Program:a"), Some("maxrestarts")),
            (
                Kind::InvalidInt,
                Some("Program:a"),
                Some("Monitoring.rss_limit")
            ),
            (Kind::UnknownMonitoringKeys, Some("Program:a"), None),
            (Kind::CommandUnparsable, Some("Program:a"), Some("command")),
            (
                Kind::InvalidProctitleRe,
                Some("Program:a"),
                Some("proctitle_re")
            ),
            (Kind::StdoutMissing, Some("Program:a"), Some("stdout")),
            (Kind::UnknownKeys, Some("Program:a"), None),
            (Kind::PidfileMissing, Some("Program:b"), Some("pidfile")),
            (Kind::StdoutMissing, Some("Program:b"), Some("stdout")),
        ]
    );
    assert_eq!(
        e.get(6).map(|e| e.message.as_str()),
        Some("Cannot parse proctitle_re: (x\nError: missing ), unterminated subpattern at position 0")
    );
}

#[test]
fn synonyms() {
    let c = ok(&[main_with(&format!(
        "{PROG}max_restarts = 4\n[[Monitor]]\nrss_limit = 100\nactivityfile = act\n"
    ))]);
    let p = c.program("p").expect("p");
    assert_eq!(p.maxrestarts, 4);
    assert_eq!(p.monitoring.rss_limit, 100);
    assert_eq!(
        p.monitoring.activityfile,
        Some(PathBuf::from("/home/u/act"))
    );
    assert!(p.monitoring.is_active());
    let e = errors(&[main_with(&format!(
        "{PROG}max_restarts = 4\nmaxrestarts = 4\n[[Monitor]]\n[[Monitoring]]\n"
    ))]);
    let got: Vec<(Kind, Option<usize>, Option<&str>)> = e
        .iter()
        .map(|e| (e.kind, e.line, e.key.as_deref()))
        .collect();
    assert_eq!(
        got,
        vec![
            (Kind::SynonymConflict, Some(7), Some("maxrestarts")),
            (Kind::SynonymConflict, Some(9), Some("Monitoring")),
        ]
    );
    let e = errors(&[main_with(&format!("{PROG}Monitor = x\n"))]);
    assert_eq!(
        e.first().map(|e| e.message.as_str()),
        Some("Monitor must be a subsection, like [[Monitor]]")
    );
}

#[test]
fn defaults_merge_like_the_original() {
    let main = main_with(&format!(
        "\
{PROG}defaults = d
[[Env]]
C = pc
A = pa
[[Monitoring]]
monitor_after = 1
"
    ));
    let other = file(
        "/home/u/cfg/d.cfg",
        "\
[DefaultSettings:d]
max_restarts = 3
command = ignored
stderr = logs/d.err
[[Env]]
A = da
B = db
[[Monitoring]]
rss_limit = 5
",
    );
    let c = ok(&[main, other]);
    let p = c.program("p").expect("p");
    assert_eq!(p.maxrestarts, 3);
    assert_eq!(p.command, "sleep 1000");
    assert_eq!(p.defaults.as_deref(), Some("d"));
    // Inherited relative paths resolve from the DefaultSettings file's directory.
    assert_eq!(p.stderr, PathBuf::from("/home/u/cfg/logs/d.err"));
    let env: Vec<(&str, &str)> = p
        .env
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    assert_eq!(env, [("A", "pa"), ("B", "db"), ("C", "pc")]);
    assert_eq!((p.monitoring.monitor_after, p.monitoring.rss_limit), (1, 5));
}

#[test]
fn errors_in_inherited_keys_point_at_the_defaults() {
    let main = main_with(&format!("{PROG}defaults = d\nalpha = 1\n"));
    let other = file(
        "/home/u/cfg/d.cfg",
        "[DefaultSettings:d]\nzeta = 1\nrestart_delay = soon\n[[Other]]\n",
    );
    let e = errors(&[main, other]);
    assert_eq!(e.len(), 2, "{e:?}");
    assert_eq!(e[0].file, PathBuf::from("/home/u/cfg/d.cfg"));
    assert_eq!(e[0].line, Some(3));
    assert_eq!(
        e[0].section.as_deref(),
        Some("Program:p (from DefaultSettings:d)")
    );
    assert_eq!(
        e[0].message,
        "Invalid value for config parameter restart_delay. Should be a positive integer. Got soon"
    );
    // The original's key order: inherited scalars, the program's new scalars, subsections.
    assert_eq!(
        e[1].message,
        "Unknown config options: ['zeta', 'alpha', 'Other']"
    );
}

#[test]
fn ampersand_and_command_rules() {
    let c = ok(&[main_with(
        "[Program:p]\ncommand = \"  run -x &  \"\npidfile = p\nstdout = logs/o\n",
    )]);
    let p = c.program("p").expect("p");
    assert_eq!(p.command, "run -x ");
    assert_eq!(
        c.warnings,
        ["Warning: Program p is configured to launch in the background (ends with &) which is not supported. Disregarding final &."]
    );
    let e = errors(&[main_with(
        "[Program:p]\ncommand = &\npidfile = p\nstdout = logs/o\n[Program:q]\npidfile = q\nstdout = logs/q\n",
    )]);
    let got: Vec<(&str, Option<usize>)> = e.iter().map(|e| (e.message.as_str(), e.line)).collect();
    assert_eq!(
        got,
        [
            ("Missing command for program: \"p\"", Some(3)),
            ("Missing command for program: \"q\"", Some(6)),
        ]
    );
}

#[test]
fn a_missing_log_directory_is_a_warning_about_that_program_alone() {
    // 1.5.13: an error that made the whole config invalid.
    let c = ok(&[main_with(
        "[Program:p]\ncommand = x\npidfile = p\nstdout = /nope/o\nstderr = nope/e\n[Program:q]\ncommand = y\npidfile = q\nstdout = logs/q\n",
    )]);
    let names: Vec<&str> = c.programs.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(names, ["p", "q"]);
    assert_eq!(
        c.program("p").map(|p| p.stdout.clone()),
        Some("/nope/o".into())
    );
    assert_eq!(
        c.warnings,
        [
            "Warning: /home/u/usrsvc.cfg:5: [Program:p] stdout: Program p defines a stdout path as \"/nope/o\" but the folder /nope does not exist. Starting p fails until it exists; the other programs are not affected.",
            "Warning: /home/u/usrsvc.cfg:6: [Program:p] stderr: Program p defines a stderr path as \"/home/u/nope/e\" but the folder /home/u/nope does not exist. Starting p fails until it exists; the other programs are not affected.",
        ]
    );
    assert!(c.daemon_errors.is_empty());
}

#[test]
fn daemon_files_in_missing_folders_are_kept_for_checkconfig() {
    let c = ok(&[main_with(
        "pidfile = /nope/d.pid\nusrsvcd_stdout = gone/out\nusrsvcd_stderr = logs/err\n",
    )]);
    assert_eq!(c.main.pidfile, PathBuf::from("/nope/d.pid"));
    let got: Vec<String> = c.daemon_errors.iter().map(|e| e.to_string()).collect();
    assert_eq!(
        got,
        [
            "/home/u/usrsvc.cfg:2: [Main] pidfile: usrsvcd cannot write its pidfile \"/nope/d.pid\": the folder /nope does not exist.",
            "/home/u/usrsvc.cfg:3: [Main] usrsvcd_stdout: usrsvcd cannot write its log \"/home/u/gone/out\": the folder /home/u/gone does not exist.",
        ]
    );
    assert!(c
        .daemon_errors
        .iter()
        .all(|e| e.kind == Kind::DaemonDirMissing));
    // The default pidfile is in HOME: a missing HOME is named at the [Main] line.
    let files = [main_with(PROG)];
    let c = match build(&files, Path::new("/home/gone"), &fake()) {
        Ok(c) => c,
        Err(e) => panic!("{e}"),
    };
    let got: Vec<String> = c.daemon_errors.iter().map(|e| e.to_string()).collect();
    assert_eq!(
        got,
        ["/home/u/usrsvc.cfg:1: [Main] pidfile: usrsvcd cannot write its pidfile \"/home/gone/1001_usrsvcd.pid\": the folder /home/gone does not exist."]
    );
    assert!(ok(&[main_with(PROG)]).daemon_errors.is_empty());
}

#[test]
fn nul_bytes_in_commands_and_environments_are_refused() {
    let e = errors(&[main_with(
        "[Program:p]\ncommand = \"sleep\x001\"\npidfile = p\nstdout = logs/p\n[[Env]]\nA = x\x00y\n\"B\x00C\" = z\nD = fine\n[[HealthCheck:h]]\ncommand = true\x00\n",
    )]);
    let got: Vec<String> = e.iter().map(|e| e.to_string()).collect();
    assert_eq!(
        got,
        [
            "/home/u/usrsvc.cfg:7: [Program:p] Env.A: Invalid value for config parameter Env.A: a NUL byte, which a command line or an environment cannot carry",
            "/home/u/usrsvc.cfg:8: [Program:p] Env.B\\0C: Invalid value for config parameter Env.B\\0C: a NUL byte, which a command line or an environment cannot carry",
            "/home/u/usrsvc.cfg:3: [Program:p] command: Invalid value for config parameter command: a NUL byte, which a command line or an environment cannot carry",
            "/home/u/usrsvc.cfg:11: [Program:p] HealthCheck:h.command: Invalid value for config parameter HealthCheck:h.command: a NUL byte, which a command line or an environment cannot carry",
        ]
    );
    assert!(e.iter().all(|e| e.kind == Kind::NulByte));
}

#[test]
fn plain_keys_where_sections_belong() {
    let e = errors(&[file(
        "/home/u/usrsvc.cfg",
        "Main = x\nProgram:x = 1\nDefaultSettings:d = 1\n[Program:p]\ncommand = c\npidfile = p\nstdout = logs/o\ndefaults = d\n",
    )]);
    let got: Vec<(Kind, Option<usize>, &str)> = e
        .iter()
        .map(|e| (e.kind, e.line, e.message.as_str()))
        .collect();
    assert_eq!(
        got,
        [
            (
                Kind::NotASection,
                Some(1),
                "Main must be a section, like [Main]"
            ),
            (
                Kind::NotASection,
                Some(2),
                "Program:x must be a section, like [Program:x]"
            ),
            (
                Kind::NotASection,
                Some(8),
                "DefaultSettings:d must be a section, like [DefaultSettings:d]"
            ),
        ]
    );
    let e = errors(&[main_with(
        "[Program:p]\npidfile = p\nstdout = logs/o\n[[command]]\n[[Env]]\nA = 1, 2\n[[[deep]]]\n",
    )]);
    let got: Vec<(Kind, Option<&str>)> = e.iter().map(|e| (e.kind, e.key.as_deref())).collect();
    assert_eq!(
        got,
        [
            (Kind::SubsectionValue, Some("command")),
            (Kind::ListValue, Some("Env.A")),
            (Kind::SubsectionValue, Some("Env.deep")),
        ]
    );
}

#[test]
fn unclosed_paren_position() {
    assert_eq!(unclosed_paren("(unclosed"), Some(0));
    assert_eq!(unclosed_paren("a(b)(c"), Some(4));
    assert_eq!(unclosed_paren("((a)"), Some(0));
    assert_eq!(unclosed_paren("\\((a"), Some(2));
    assert_eq!(unclosed_paren("[(](a"), Some(3));
    assert_eq!(unclosed_paren("(a)"), None);
}
