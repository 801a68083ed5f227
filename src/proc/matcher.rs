//! Deciding whether a process is a program: the user's `proctitle_re`, or the default matcher.
//!
//! usrsvc 1.5.13 built the default pattern `(<words>)$`, which also adopted any process whose
//! cmdline merely ended with the command (`timeout 20 sleep 1000`, `vim /path/script.py`). The
//! default here compares arguments, boundaries kept: the process runs exactly the command, or it
//! is the interpreter named by the script's `#!` line running the script with the same
//! arguments (what the kernel makes of `./script.py args`). It never reads another file than
//! that script, and only for processes whose arguments already fit.

use std::io::Read;
use std::path::{Path, PathBuf};

#[derive(Debug, Clone)]
pub enum Matcher {
    /// The default: the command's words, compared argument by argument.
    Argv(Vec<String>),
    /// A user `proctitle_re`, searched (not anchored) in the space-joined cmdline as in 1.5.13.
    Regex {
        re: fancy_regex::Regex,
        /// With `useshell`, the wrapping `/bin/sh -c …` is never the program.
        skip_shell: bool,
    },
}

impl Matcher {
    /// Builds the matcher of a program. Errors only for a command or pattern the config loader
    /// would already have rejected.
    pub fn new(command: &str, useshell: bool, proctitle_re: Option<&str>) -> Result<Self, String> {
        if let Some(re) = proctitle_re.filter(|r| !r.is_empty()) {
            let re = fancy_regex::Regex::new(re).map_err(|e| e.to_string())?;
            return Ok(Matcher::Regex {
                re,
                skip_shell: useshell,
            });
        }
        let text = if useshell {
            // As 1.5.13: with a shell, the program is what runs after the last `&&`.
            command.rsplit("&&").next().unwrap_or(command)
        } else {
            command
        };
        let mut words = crate::config::shlex_split(text)?;
        if useshell {
            // `exec prog` and `VAR=x prog` run `prog`; 1.5.13's pattern could never match them.
            let skip = words
                .iter()
                .take_while(|w| *w == "exec" || is_assignment(w))
                .count();
            words.drain(..skip);
        }
        if words.is_empty() {
            return Err("the command has no words".to_owned());
        }
        Ok(Matcher::Argv(words))
    }

    /// Whether the process `pid` with arguments `argv` is the program.
    pub fn matches(&self, pid: i32, argv: &[String]) -> bool {
        if argv.is_empty() {
            return false;
        }
        match self {
            Matcher::Regex { re, skip_shell } => {
                let line = argv.join(" ");
                if *skip_shell && line.starts_with("/bin/sh -c") {
                    return false;
                }
                re.is_match(&line).unwrap_or(false)
            }
            Matcher::Argv(cmd) => argv_matches(cmd, argv, pid),
        }
    }

    /// Whether this is the user's `proctitle_re` (not the default matcher).
    pub fn is_proctitle_re(&self) -> bool {
        matches!(self, Matcher::Regex { .. })
    }

    /// What the matcher looks for, for messages.
    pub fn describe(&self) -> String {
        match self {
            Matcher::Regex { re, .. } => format!("proctitle_re {:?}", re.as_str()),
            Matcher::Argv(cmd) => format!("the command {:?}", cmd.join(" ")),
        }
    }
}

fn is_assignment(word: &str) -> bool {
    match word.split_once('=') {
        Some((name, _)) => {
            !name.is_empty()
                && !name.starts_with(|c: char| c.is_ascii_digit())
                && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        }
        None => false,
    }
}

fn basename(s: &str) -> &str {
    s.rsplit('/').next().unwrap_or(s)
}

/// `prog` as configured, `exe` as it appears in a cmdline: the same, or a bare name that was
/// found on PATH and run by its full path.
fn same_program(exe: &str, prog: &str) -> bool {
    exe == prog || (!prog.contains('/') && basename(exe) == prog)
}

fn argv_matches(cmd: &[String], argv: &[String], pid: i32) -> bool {
    let (Some(prog), Some(exe)) = (cmd.first(), argv.first()) else {
        return false;
    };
    if let [title] = argv {
        if title.contains(' ') && title_matches(title, &cmd.join(" ")) {
            return true;
        }
    }
    let n = cmd.len();
    if argv.len() == n && argv[1..] == cmd[1..] && same_program(exe, prog) {
        return true;
    }
    // `interpreter [options] script args`: the kernel's rewrite of a `#!` script.
    if argv.len() <= n || argv[argv.len() - n + 1..] != cmd[1..] {
        return false;
    }
    let script_at = argv.len() - n;
    let script = &argv[script_at];
    if !same_program(script, prog) {
        return false;
    }
    let Some(shebang) = read_shebang(&script_path(script, pid)) else {
        return false;
    };
    basename(exe) == shebang.interpreter
        && argv[1..script_at]
            .iter()
            .all(|a| a.starts_with('-') || Some(a.as_str()) == shebang.argument.as_deref())
}

/// A process that rewrote its title (perl's `$0`, setproctitle, nginx) shows one argument with
/// spaces, e.g. `worker: master process /x/worker.pl --foo`. As 1.5.13 did, such a title is
/// the program when it ends with the command — at a word boundary here.
fn title_matches(title: &str, command: &str) -> bool {
    let title = title.trim_end();
    match title.strip_suffix(command) {
        Some(before) => before.is_empty() || before.ends_with(char::is_whitespace),
        None => false,
    }
}

/// Where the script a process runs lives: relative names are relative to that process's cwd.
fn script_path(script: &str, pid: i32) -> PathBuf {
    if script.starts_with('/') {
        PathBuf::from(script)
    } else if script.contains('/') {
        PathBuf::from(format!("/proc/{pid}/cwd")).join(script)
    } else {
        std::env::var_os("PATH")
            .map(|p| {
                std::env::split_paths(&p)
                    .map(|d| d.join(script))
                    .find(|c| c.is_file())
                    .unwrap_or_default()
            })
            .unwrap_or_default()
    }
}

#[derive(Debug, PartialEq, Eq)]
struct Shebang {
    /// The basename the interpreter shows as argv[0] (for `#!/usr/bin/env python3`: `python3`).
    interpreter: String,
    /// The single optional argument of the `#!` line, as the kernel passes it.
    argument: Option<String>,
}

fn read_shebang(path: &Path) -> Option<Shebang> {
    let mut head = [0u8; 256];
    let mut f = super::pidfile::open_regular(path).ok()?;
    let len = f.read(&mut head).ok()?;
    parse_shebang(&head[..len])
}

fn parse_shebang(head: &[u8]) -> Option<Shebang> {
    let line = head.strip_prefix(b"#!")?;
    let line = &line[..line.iter().position(|b| *b == b'\n').unwrap_or(line.len())];
    let line = std::str::from_utf8(line).ok()?.trim();
    let (interp, arg) = match line.split_once([' ', '\t']) {
        Some((i, a)) => (i, Some(a.trim()).filter(|a| !a.is_empty())),
        None => (line, None),
    };
    if basename(interp) == "env" {
        // `env [-S] [VAR=x] name args`: argv[0] becomes `name`.
        let name = arg?
            .split_whitespace()
            .find(|w| !w.starts_with('-') && !is_assignment(w))?;
        return Some(Shebang {
            interpreter: basename(name).to_owned(),
            argument: arg.map(str::to_owned),
        });
    }
    Some(Shebang {
        interpreter: basename(interp).to_owned(),
        argument: arg.map(str::to_owned),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(words: &[&str]) -> Vec<String> {
        words.iter().map(|w| (*w).to_owned()).collect()
    }

    #[test]
    fn default_matches_the_command_and_not_wrappers() {
        let m = Matcher::new("sleep 1000", false, None).expect("matcher");
        assert!(m.matches(1, &v(&["sleep", "1000"])));
        assert!(m.matches(1, &v(&["/usr/bin/sleep", "1000"])));
        assert!(!m.matches(1, &v(&["timeout", "20", "sleep", "1000"])));
        assert!(!m.matches(1, &v(&["nohup", "sleep", "1000"])));
        assert!(!m.matches(1, &v(&["sleep", "10000"])));
        assert!(!m.matches(1, &v(&["sleep", "1000", "x"])));
        // One argument with spaces is a rewritten title: it ends with the command.
        assert!(m.matches(1, &v(&["sleep 1000"])));
        assert!(!m.matches(1, &[]));
    }

    #[test]
    fn a_rewritten_title_ending_with_the_command_matches() {
        let m = Matcher::new("/x/worker.pl --foo", false, None).expect("matcher");
        assert!(m.matches(1, &v(&["worker: master process /x/worker.pl --foo"])));
        assert!(m.matches(1, &v(&["worker: /x/worker.pl --foo   "])));
        assert!(!m.matches(1, &v(&["worker: /y/x/worker.pl --foo-bar"])));
        assert!(!m.matches(1, &v(&["worker:/x/worker.pl --foo"])));
        assert!(!m.matches(1, &v(&["/x/worker.pl --foo --more"])));
    }

    #[test]
    fn argument_boundaries_are_kept() {
        let m = Matcher::new(r#"prog "a b" c"#, false, None).expect("matcher");
        assert!(m.matches(1, &v(&["prog", "a b", "c"])));
        assert!(!m.matches(1, &v(&["prog", "a", "b", "c"])));
    }

    #[test]
    fn a_shebang_script_is_matched_through_its_interpreter_only() {
        let dir = tempfile::tempdir().expect("tempdir");
        let script = dir.path().join("looper.py");
        std::fs::write(&script, "#!/usr/bin/env python3\nprint(1)\n").expect("write");
        let s = script.to_str().expect("utf8").to_owned();
        let m = Matcher::new(&format!("{s} --fast"), false, None).expect("matcher");
        assert!(m.matches(1, &v(&["python3", &s, "--fast"])));
        assert!(m.matches(1, &v(&["/usr/bin/python3", "-u", &s, "--fast"])));
        assert!(!m.matches(1, &v(&["vim", &s, "--fast"])));
        assert!(!m.matches(1, &v(&["python3", &s])));
        let sh = dir.path().join("run.sh");
        std::fs::write(&sh, "#!/bin/sh -e\necho\n").expect("write");
        let s = sh.to_str().expect("utf8").to_owned();
        let m = Matcher::new(&s, false, None).expect("matcher");
        assert!(m.matches(1, &v(&["/bin/sh", "-e", &s])));
        assert!(!m.matches(1, &v(&["/bin/bash", &s])));
    }

    #[test]
    fn useshell_matches_the_last_command() {
        let m = Matcher::new("cd /tmp && ./run.sh -x \"a b\"", true, None).expect("matcher");
        assert!(m.matches(1, &v(&["./run.sh", "-x", "a b"])));
        let m = Matcher::new("exec FOO=1 sleep 1003", true, None).expect("matcher");
        assert!(m.matches(1, &v(&["sleep", "1003"])));
        let m = Matcher::new("exec", true, None);
        assert!(m.is_err());
    }

    #[test]
    fn user_regex_searches_the_joined_cmdline() {
        let m = Matcher::new("whatever", true, Some(r"^sleep \d+$")).expect("matcher");
        assert!(m.matches(1, &v(&["sleep", "5"])));
        assert!(!m.matches(1, &v(&["/bin/sh", "-c", "sleep 5"])));
        let m = Matcher::new("whatever", false, Some(r"(?<!x)worker")).expect("lookbehind");
        assert!(m.matches(1, &v(&["my", "worker"])));
        assert!(!m.matches(1, &v(&["xworker"])));
    }

    #[test]
    fn shebang_lines() {
        assert_eq!(
            parse_shebang(b"#!/usr/bin/env -S python3 -u\n"),
            Some(Shebang {
                interpreter: "python3".into(),
                argument: Some("-S python3 -u".into())
            })
        );
        assert_eq!(
            parse_shebang(b"#! /bin/bash\n"),
            Some(Shebang {
                interpreter: "bash".into(),
                argument: None
            })
        );
        assert_eq!(parse_shebang(b"\x7fELF"), None);
    }
}
