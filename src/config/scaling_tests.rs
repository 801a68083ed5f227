//! Parsing and building take time linear in the size of the config, whatever its shape: one
//! long unquoted list (a megabyte-long line took 35 s), many sections, many keys in one
//! section, many multi-line values, long interpolations. Each case runs on its own thread and
//! must use less CPU time than a bound that is generous for a debug build (the thread's own CPU
//! time, so a loaded machine does not make the tests flaky), yet far below what the quadratic
//! code took on the same input (minutes, or for ever).

use std::path::Path;
use std::sync::mpsc;
use std::time::Duration;

use rustix::time::{clock_gettime, ClockId};

use super::interpolate::{interpolate, InterpolationError};
use super::syntax::{handle_value, handle_value_regex, parse_bytes, Parsed, RawValue, ROOT};

/// CPU time one case may use: each takes well under 3 s in a debug build.
const CPU_LIMIT: Duration = Duration::from_secs(15);
/// How long to wait for a case at all, however loaded the machine.
const WALL_LIMIT: Duration = Duration::from_secs(300);

/// `f()` on its own thread; fails the test when it used more than `CPU_LIMIT` of CPU time, or
/// has not returned by `WALL_LIMIT` (the thread is then left to run until the binary exits).
fn within<T: Send + 'static>(what: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
    cpu_of(what, f).0
}

/// `within`, also giving the CPU time `f` used.
fn cpu_of<T: Send + 'static>(what: &str, f: impl FnOnce() -> T + Send + 'static) -> (T, Duration) {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let cpu = || Duration::try_from(clock_gettime(ClockId::ThreadCPUTime)).unwrap_or_default();
        let start = cpu();
        let v = f();
        let _ = tx.send((v, cpu().saturating_sub(start)));
    });
    match rx.recv_timeout(WALL_LIMIT) {
        Ok((v, used)) => {
            eprintln!("{what}: {used:?} of CPU");
            assert!(
                used < CPU_LIMIT,
                "{what}: {used:?} of CPU time: parsing is not linear"
            );
            (v, used)
        }
        Err(_) => panic!("{what}: not done after {WALL_LIMIT:?}: parsing is not linear"),
    }
}

fn parse(text: String) -> Parsed {
    match parse_bytes(text.as_bytes()) {
        Ok(p) => p,
        Err(e) => panic!("decode error {e:?}"),
    }
}

#[test]
fn a_two_megabyte_unquoted_list_line() {
    let n = 400_000;
    let line = format!("{}c@d", "a@b, ".repeat(n));
    // Through configobj's regular expressions (the matcher), and the plain-list shortcut.
    let copy = line.clone();
    let v = within("the value regex on a 2 MB list", move || {
        handle_value_regex(&copy)
    });
    let fast = within("handle_value of a 2 MB list", move || handle_value(&line));
    assert_eq!(v, fast);
    match v {
        Some(RawValue::List(items)) => {
            assert_eq!(items.len(), n + 1);
            assert_eq!(items.first().map(String::as_str), Some("a@b"));
            assert_eq!(items.last().map(String::as_str), Some("c@d"));
        }
        other => panic!("{other:?}"),
    }
    // As a line of a file (1 MB), quoted items mixed in.
    let n = n / 2;
    let text = format!("k = {}'x, y', \"z\"\n", "a@b, ".repeat(n));
    let p = within("parse of a 1 MB list line", move || parse(text));
    assert!(p.errors.is_empty(), "{:?}", p.errors.first());
    match p.tree.entry(ROOT, "k").map(|e| &e.value) {
        Some(RawValue::List(items)) => {
            assert_eq!(items.len(), n + 2);
            assert_eq!(items.get(n).map(String::as_str), Some("x, y"));
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_long_quoted_string_and_a_long_key() {
    let text = format!(
        "k = \"{}\"\n{} = v\n",
        "x, ".repeat(200_000),
        "y".repeat(500_000)
    );
    let p = within("parse of a 600 kB quoted value", move || parse(text));
    assert!(p.errors.is_empty(), "{:?}", p.errors.first());
    assert!(matches!(
        p.tree.entry(ROOT, "k").map(|e| &e.value),
        Some(RawValue::Scalar(s)) if s.len() == 600_000
    ));
}

#[test]
fn many_sections_and_many_keys() {
    let n = 60_000;
    let mut text = String::new();
    for i in 0..n {
        text.push_str(&format!("[Program:p{i}]\nk = v\n"));
    }
    text.push_str("[Program:p7]\n");
    let p = within("parse of 60000 sections", move || parse(text));
    assert_eq!(p.tree.sections.len(), n + 1);
    // The duplicate is still found.
    assert_eq!(p.errors.len(), 1, "{:?}", p.errors);

    let mut text = String::from("[s]\n");
    for i in 0..n {
        text.push_str(&format!("key{i} = value {i}\n"));
    }
    text.push_str("key5 = again\n");
    let p = within("parse of 60000 keys in one section", move || parse(text));
    assert_eq!(p.errors.len(), 1, "{:?}", p.errors);
    let s = p.tree.child(ROOT, "s").unwrap_or(usize::MAX);
    assert_eq!(p.tree.section(s).map(|s| s.entries.len()), Some(n));
}

/// These were linear already (an unterminated value's search for its end stops at the next
/// line holding the quote): kept so they stay so.
#[test]
fn many_continuation_lines_and_unterminated_multi_line_values() {
    // One value continued over 200000 lines.
    let n = 200_000;
    let text = format!("k = '''first\n{}last'''\nj = 1\n", "more\n".repeat(n));
    let p = within("parse of a 200000-line value", move || parse(text));
    assert!(p.errors.is_empty(), "{:?}", p.errors.first());
    assert!(matches!(
        p.tree.entry(ROOT, "k").map(|e| &e.value),
        Some(RawValue::Scalar(s)) if s.len() == "first\n".len() + 5 * n + "last".len()
    ));
    // 100000 values that never close.
    let n = 100_000;
    let mut text = String::new();
    for i in 0..n {
        text.push_str(&format!("k{i} = '''open\n"));
    }
    let p = within("parse of 100000 unterminated values", move || parse(text));
    assert_eq!(p.errors.len(), n);
    // ... and the same when a line at the end holds the quote but does not close a value.
    let mut text = String::new();
    for i in 0..n {
        text.push_str(&format!("k{i} = '''open\n"));
    }
    text.push_str("x''' y\n");
    let p = within("parse of 100000 values with a bad end", move || parse(text));
    assert_eq!(p.errors.len(), n + 1);
}

fn interpolated(text: String, key: &'static str) -> Result<String, InterpolationError> {
    let p = parse(text);
    interpolated_in(&p, key)
}

fn interpolated_in(p: &Parsed, key: &str) -> Result<String, InterpolationError> {
    assert!(p.errors.is_empty(), "{:?}", p.errors.first());
    let raw = match p.tree.entry(ROOT, key).map(|e| &e.value) {
        Some(RawValue::Scalar(s)) => s.clone(),
        other => panic!("{other:?}"),
    };
    interpolate(&p.tree, ROOT, key, &raw)
}

#[test]
fn many_interpolations_in_one_value() {
    // configobj splices each replacement into the whole value: 200000 copies of 1 MB. An
    // interpolated value is at most 1 MiB long, so the quadratic cost stays in seconds; what
    // shows it is that interpolating the value costs more than one linear pass of the matcher
    // over it (configobj's value regex).
    let n = 200_000;
    let value = "%(x)s".repeat(n);
    let p = parse(format!("x = y\nv = {value}\n"));
    let (_, yardstick) = cpu_of("the value regex over 200000 references", move || {
        handle_value_regex(&value)
    });
    let (v, interpolating) = cpu_of("200000 references", move || interpolated_in(&p, "v"));
    assert_eq!(v.map(|s| s.len()), Ok(n));
    assert!(
        interpolating < yardstick,
        "interpolating took {interpolating:?} of CPU, a pass of the matcher {yardstick:?}: not linear"
    );
}

#[test]
fn a_doubling_interpolation_chain() {
    // Doubling with an empty end: 2^60 expansions for configobj, the result stays empty.
    let mut text = String::from("k0 =\n");
    for i in 1..=60 {
        text.push_str(&format!("k{i} = %(k{p})s%(k{p})s\n", p = i - 1));
    }
    let v = within("a doubling chain", move || interpolated(text, "k60"));
    assert_eq!(v, Ok(String::new()));
}

#[test]
fn unclosed_interpolation_references() {
    // `%(` without a closing parenthesis, 600000 times.
    let text = format!("v = {}\n", "%(".repeat(600_000));
    let v = within("unclosed references", move || interpolated(text, "v"));
    assert_eq!(v.map(|s| s.len()), Ok(1_200_000));
}

#[test]
fn deep_interpolation_chains_are_refused() {
    // A chain deeper than any sane config is refused, not a stack overflow.
    let mut text = String::from("k0 = end\n");
    for i in 1..=20_000 {
        text.push_str(&format!("k{i} = %(k{})s\n", i - 1));
    }
    let v = within("a 20000-deep chain", move || interpolated(text, "k20000"));
    assert_eq!(v, Err(InterpolationError::TooDeep));
    let mut text = String::from("k0 = end\n");
    for i in 1..=150 {
        text.push_str(&format!("k{i} = %(k{})s\n", i - 1));
    }
    assert_eq!(interpolated(text, "k150"), Ok("end".to_string()));
}

/// `load` of `text` (`{H}` is the temporary HOME holding it).
fn load(what: &'static str, text: &str) -> super::Config {
    let dir = match tempfile::tempdir() {
        Ok(d) => d,
        Err(e) => panic!("tempdir: {e}"),
    };
    let home = dir.path().to_path_buf();
    let file = home.join("usrsvc.cfg");
    if let Err(e) = std::fs::write(&file, text.replace("{H}", &home.display().to_string())) {
        panic!("write: {e}");
    }
    let config = within(what, move || super::load(&file, Path::new(&home)));
    drop(dir);
    match config {
        Ok(c) => c,
        Err(e) => panic!("{e}"),
    }
}

fn program(name: &str) -> String {
    format!("[Program:{name}]\ncommand = sleep 1\npidfile = {{H}}/{name}.pid\nstdout = {{H}}/{name}.log\n")
}

#[test]
fn a_program_with_many_env_keys() {
    let n = 50_000;
    let mut text = format!("[Main]\n{}[[Env]]\n", program("envy"));
    for i in 0..n {
        text.push_str(&format!("VAR_{i} = value {i}\n"));
    }
    let config = load("load of 50000 Env keys", &text);
    assert_eq!(config.programs.first().map(|p| p.env.len()), Some(n));
}

#[test]
fn many_programs_and_a_group_of_them() {
    let n = 5_000;
    let mut text = String::from("[Main]\n");
    let names: Vec<String> = (0..n).map(|i| format!("p{i}")).collect();
    for (i, name) in names.iter().enumerate() {
        text.push_str(&program(name));
        text.push_str(&format!("defaults = d{i}\n[DefaultSettings:d{i}]\n"));
    }
    text.push_str(&format!(
        "[Group:everyone]\nprograms = {}\nsequence = {}\n",
        names.join(", "),
        names
            .iter()
            .cycle()
            .take(20 * n)
            .map(|n| format!("restart {n}"))
            .collect::<Vec<_>>()
            .join(", ")
    ));
    let config = load("load of 5000 programs and a group", &text);
    assert_eq!(config.programs.len(), n);
    let group = config.groups.first();
    assert_eq!(group.map(|g| g.programs.len()), Some(n));
    assert_eq!(
        group.and_then(|g| g.sequence.as_ref()).map(Vec::len),
        Some(20 * n)
    );
}

/// Sections and merged tables are scanned while small and indexed past a dozen names: both
/// find every key and subsection, and the duplicate checks see them, on either side.
#[test]
fn lookups_agree_around_the_index_threshold() {
    for n in 0..30 {
        let mut text = String::from("[s]\n");
        for i in 0..n {
            text.push_str(&format!("k{i} = {i}\n"));
        }
        for i in 0..n {
            text.push_str(&format!("[[c{i}]]\n"));
        }
        let p = parse(text);
        assert!(p.errors.is_empty(), "{n}: {:?}", p.errors);
        let s = p.tree.child(ROOT, "s").unwrap_or(usize::MAX);
        for i in 0..n {
            let entry = p.tree.entry(s, &format!("k{i}")).map(|e| e.line);
            assert_eq!(entry, Some(2 + i), "{n} k{i}");
            assert!(p.tree.child(s, &format!("c{i}")).is_some(), "{n} c{i}");
            assert!(p.tree.entry(s, &format!("c{i}")).is_none(), "{n} c{i}");
            assert!(p.tree.child(s, &format!("k{i}")).is_none(), "{n} k{i}");
        }
        assert!(p.tree.entry(s, "nope").is_none());
        // Duplicates: a key given again, and a section named like a key.
        let mut text = String::new();
        for i in 0..n {
            text.push_str(&format!("k{i} = {i}\n"));
        }
        text.push_str("k0 = again\n[k1]\n");
        let p = parse(text);
        let dups = usize::from(n > 0) + usize::from(n > 1);
        assert_eq!(p.errors.len(), dups, "{n}: {:?}", p.errors);
    }
    // A program's keys merged over its defaults, on both sides of the threshold.
    for n in [3, 12, 13, 40] {
        let mut text = String::from("[Main]\n[DefaultSettings:d]\n[[Env]]\n");
        for i in 0..n {
            text.push_str(&format!("D{i} = d\n"));
        }
        text.push_str(&format!("{}defaults = d\n[[Env]]\n", program("p")));
        for i in 0..n {
            text.push_str(&format!("D{} = p\n", i * 2));
        }
        let config = load("a merge", &text);
        let env = config
            .programs
            .first()
            .map(|p| p.env.clone())
            .unwrap_or_default();
        let get = |k: &str| {
            env.iter()
                .find(|(key, _)| key == k)
                .map(|(_, v)| v.as_str())
        };
        assert_eq!(env.len(), n + n / 2, "{n}");
        assert_eq!(get("D0"), Some("p"));
        assert_eq!(get("D1"), Some("d"));
        assert_eq!(get(&format!("D{}", 2 * (n - 1))), Some("p"));
    }
}
