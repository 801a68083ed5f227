//! The delegation keys as a whole config sees them: parsed, inherited, checked, located.

use super::super::syntax::parse_bytes;
use super::*;
use crate::config::Grant;

struct Fake;

impl Probe for Fake {
    fn is_dir(&self, path: &Path) -> bool {
        ["/home/u", "/home/u/logs", "/home/u/cfg"]
            .iter()
            .any(|d| Path::new(d) == path)
    }
    fn exists(&self, path: &Path) -> bool {
        self.is_dir(path)
    }
    fn is_executable(&self, _: &Path) -> bool {
        false
    }
    fn path_var(&self) -> Option<OsString> {
        None
    }
    fn uid(&self) -> u32 {
        1001
    }
}

fn build_text(text: &str) -> Result<Config, ConfigErrors> {
    let parsed = parse_bytes(text.as_bytes()).expect("parses");
    let files = [SourceFile {
        path: PathBuf::from("/home/u/usrsvc.cfg"),
        tree: parsed.tree,
    }];
    build(&files, Path::new("/home/u"), &Fake)
}

const PROG: &str = "[Program:p]\ncommand = sleep 8837100\npidfile = p.pid\nstdout = logs/p.out\n";

#[test]
fn delegation_keys_are_read() {
    let c = build_text(&format!(
        "[Main]\nallow_users = alice, bob\nallow_groups = dev\nshared_socket = ~/api/svc.sock\n\
         [DefaultSettings:d]\nallow = restart, signal:QUIT\n\
         {PROG}defaults = d\n\
         [Program:q]\ncommand = sleep 8837101\npidfile = q.pid\nstdout = logs/q.out\nallow = health, repair, health2\n"
    ));
    // One bad word in q: the whole config is refused, naming it.
    let e = c.expect_err("health2 is no grant").into_vec();
    assert_eq!(e.len(), 1, "{e:?}");
    assert_eq!(e[0].kind, Kind::InvalidDelegation);
    assert_eq!(e[0].line, Some(16));
    assert!(e[0].to_string().contains("health2"), "{}", e[0]);

    let c = build_text(&format!(
        "[Main]\nallow_users = alice, bob\nallow_groups = dev\nshared_socket = ~/api/svc.sock\n\
         [DefaultSettings:d]\nallow = restart, signal:QUIT\n\
         {PROG}defaults = d\n\
         [Program:q]\ncommand = sleep 8837101\npidfile = q.pid\nstdout = logs/q.out\n\
         [Group:g]\nprograms = p, q\nallow = restart\n"
    ))
    .expect("valid");
    assert_eq!(c.main.allow_users, ["alice", "bob"]);
    assert_eq!(c.main.allow_groups, ["dev"]);
    assert_eq!(
        c.main.shared_socket.as_deref(),
        Some(Path::new("/home/u/api/svc.sock"))
    );
    let quit = nix::sys::signal::Signal::SIGQUIT as i32;
    assert_eq!(
        c.program("p").map(|p| p.allow.clone()),
        Some(vec![Grant::Restart, Grant::Signal(quit)]),
        "inherited from DefaultSettings"
    );
    assert_eq!(c.program("q").map(|p| p.allow.clone()), Some(vec![]));
    assert_eq!(
        c.group("g").map(|g| g.allow.clone()),
        Some(vec![Grant::Restart])
    );
}

#[test]
fn allowing_users_needs_a_shared_socket() {
    let e = build_text(&format!("[Main]\nallow_users = alice\n{PROG}"))
        .expect_err("no shared_socket")
        .into_vec();
    assert_eq!(e[0].kind, Kind::InvalidDelegation);
    assert_eq!(e[0].line, Some(2), "points at allow_users");
    assert!(e[0].to_string().contains("shared_socket"), "{}", e[0]);
    // A shared socket alone is fine (only the owner uses it).
    assert!(build_text(&format!("[Main]\nshared_socket = /srv/s.sock\n{PROG}")).is_ok());
}

#[test]
fn bad_names_and_grants_name_file_line_and_key() {
    for (text, line, needle) in [
        (
            "[Main]\nallow_users = al ice\nshared_socket = /s/a.sock\n",
            2,
            "al ice",
        ),
        (
            "[Main]\nallow_groups = a/b\nshared_socket = /s/a.sock\n",
            2,
            "a/b",
        ),
        (
            "[Main]\n[Program:p]\nallow = signal\n",
            3,
            "needs the signal",
        ),
        (
            "[Main]\n[Program:p]\nallow = signal:9\n",
            3,
            "not its number",
        ),
        (
            "[Main]\n[Program:p]\nallow = restart, restart\n",
            3,
            "twice",
        ),
    ] {
        let text = if text.contains("[Program:p]") {
            text.replace(
                "[Program:p]\n",
                "[Program:p]\ncommand = sleep 8837100\npidfile = p.pid\nstdout = logs/p.out\n",
            )
        } else {
            format!("{text}{PROG}")
        };
        let e = build_text(&text).expect_err(needle).into_vec();
        let e = e
            .iter()
            .find(|e| e.kind == Kind::InvalidDelegation)
            .unwrap_or_else(|| panic!("{needle}: {e:?}"));
        let shown = e.to_string();
        assert!(shown.starts_with("/home/u/usrsvc.cfg:"), "{shown}");
        assert!(shown.contains(needle), "{shown}");
        let want = if text.contains("[Program:p]\ncommand") && text.contains("allow =") {
            line + 3
        } else {
            line
        };
        assert_eq!(e.line, Some(want), "{shown}");
    }
}
