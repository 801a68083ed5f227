//! `env_file`: the `KEY=VALUE` file a program's environment is read from at each start (new in
//! 2.0), a small, strict subset of systemd's `EnvironmentFile=`:
//!
//! - one `KEY=VALUE` per line; blank lines and lines starting with `#` or `;` are skipped;
//!   spaces around the line, the key and the value are dropped;
//! - KEY is letters, digits and `_`, not starting with a digit;
//! - a value wholly inside one pair of `"` or `'` loses them, and nothing inside is interpreted
//!   (no escapes, no `$VAR`); any other value is taken as written;
//! - a later line for the same key wins.
//!
//! Refused, with the file and line: `export KEY=…`, a line without `=`, a bad name, an
//! unterminated quote, a quote of the same kind inside a quoted value, a `\` at the end of a
//! line (systemd would join lines; we do not guess), NUL bytes, invalid UTF-8. The file is
//! opened read-only and non-blocking and must be a regular file (a FIFO cannot hang a start) of
//! at most 1 MiB, that no other user can write or replace (`fsafe::open_trusted_read`).
//!
//! Reading is the only I/O; `parse` is pure.

use std::io::Read;
use std::path::Path;

/// The largest env_file read.
pub const MAX_BYTES: u64 = 1 << 20;

/// Reads and parses `path`; the error names the path (and the line).
pub fn read(path: &Path) -> Result<Vec<(String, String)>, String> {
    let shown = path.display();
    let fail = |why: String| format!("Cannot read env_file {shown}: {why}");
    // Read as safely as the config: whoever can write it sets the program's environment.
    let file = crate::fsafe::open_trusted_read(path).map_err(|e| fail(e.to_string()))?;
    let meta = file.metadata().map_err(|e| fail(e.to_string()))?;
    if !meta.is_file() {
        return Err(fail("not a regular file".into()));
    }
    let mut bytes = Vec::new();
    file.take(MAX_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| fail(e.to_string()))?;
    if bytes.len() as u64 > MAX_BYTES {
        return Err(fail(format!("larger than {MAX_BYTES} bytes")));
    }
    parse(&bytes).map_err(|(line, why)| format!("env_file {shown}:{line}: {why}"))
}

/// The variables of an env_file's text, in order (a later one for the same key replaces the
/// earlier one); on error the 1-based line and why.
pub fn parse(bytes: &[u8]) -> Result<Vec<(String, String)>, (usize, String)> {
    // A later line for the same key replaces the earlier one, which leaves its place: the
    // index keeps that linear (a 1 MiB file of distinct keys took minutes with a scan per line).
    let mut vars: Vec<Option<(String, String)>> = Vec::new();
    let mut index: std::collections::HashMap<String, usize> = std::collections::HashMap::new();
    for (i, raw) in bytes.split(|b| *b == b'\n').enumerate() {
        let line_no = i + 1;
        if raw.contains(&0) {
            return Err((line_no, "contains a NUL byte".into()));
        }
        let line = std::str::from_utf8(raw)
            .map_err(|_| (line_no, "is not valid UTF-8".to_string()))?
            .trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        let (key, value) = parse_line(line).map_err(|why| (line_no, why))?;
        if let Some(old) = index.insert(key.clone(), vars.len()) {
            vars[old] = None;
        }
        vars.push(Some((key, value)));
    }
    Ok(vars.into_iter().flatten().collect())
}

fn parse_line(line: &str) -> Result<(String, String), String> {
    let Some((key, value)) = line.split_once('=') else {
        return Err("expected KEY=VALUE".into());
    };
    let key = key.trim();
    if key.starts_with("export ") || key.starts_with("export\t") {
        return Err(
            "`export` is not supported: write KEY=VALUE (as systemd's EnvironmentFile= does)"
                .into(),
        );
    }
    let valid = key
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    if !valid {
        return Err(format!(
            "invalid variable name {key:?} (letters, digits and _, not starting with a digit)"
        ));
    }
    let value = value.trim();
    let value = match value.chars().next() {
        Some(q @ ('"' | '\'')) => {
            let inner = value
                .strip_prefix(q)
                .and_then(|v| v.strip_suffix(q))
                .ok_or_else(|| format!("unterminated {q} quote"))?;
            if inner.contains(q) {
                return Err(format!(
                    "a {q} inside a {q}-quoted value is not supported (no escapes are interpreted)"
                ));
            }
            inner
        }
        _ if value.ends_with('\\') => {
            return Err("a \\ at the end of the line (line continuation) is not supported".into())
        }
        _ => value,
    };
    Ok((key.to_string(), value.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(text: &str) -> Vec<(String, String)> {
        parse(text.as_bytes()).unwrap_or_else(|e| panic!("{text:?}: {e:?}"))
    }

    fn pairs(v: &[(&str, &str)]) -> Vec<(String, String)> {
        v.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn the_subset() {
        let text = "# comment\n; also\n\n  A = 1  \nB=\"two words\"\nC='$HOME \\n'\nD=\nE=x=y # not a comment\nA=again\r\n";
        assert_eq!(
            ok(text),
            pairs(&[
                ("B", "two words"),
                ("C", "$HOME \\n"),
                ("D", ""),
                ("E", "x=y # not a comment"),
                ("A", "again"),
            ])
        );
        assert_eq!(ok(""), pairs(&[]));
        assert_eq!(ok("_x9=\"\""), pairs(&[("_x9", "")]));
    }

    /// The largest file allowed, in distinct keys, parses in well under a start's patience
    /// (a scan of the earlier keys per line made 30 000 lines take about 20 s).
    #[test]
    fn many_keys_parse_in_linear_time() {
        let text: String = (0..30_000).map(|n| format!("K{n}=v\n")).collect();
        let started = std::time::Instant::now();
        let vars = ok(&text);
        assert_eq!(vars.len(), 30_000);
        assert_eq!(vars[29_999], ("K29999".to_string(), "v".to_string()));
        assert!(
            started.elapsed() < std::time::Duration::from_secs(3),
            "{:?}",
            started.elapsed()
        );
    }

    #[test]
    fn refusals_name_the_line() {
        for (text, line, why) in [
            (&b"A=1\nexport B=2"[..], 2, "export"),
            (b"A=1\n\nnovalue", 3, "KEY=VALUE"),
            (b"9A=1", 1, "invalid variable name"),
            (b"A B=1", 1, "invalid variable name"),
            (b"=1", 1, "invalid variable name"),
            (b"A=\"open", 1, "unterminated"),
            (b"A='it's'", 1, "inside"),
            (b"A=one \\", 1, "continuation"),
            (b"A=1\nB=\0", 2, "NUL"),
            (b"A=1\nB=\xff", 2, "UTF-8"),
        ] {
            let (l, w) = parse(text).expect_err(why);
            assert_eq!(l, line, "{w}");
            assert!(w.contains(why), "{w}");
        }
    }

    #[test]
    fn read_refuses_fifos_big_and_missing_files() {
        let dir = tempfile::tempdir().expect("tempdir");
        let missing = dir.path().join("missing.env");
        let e = read(&missing).expect_err("missing");
        assert!(e.contains(&missing.display().to_string()), "{e}");
        let fifo = dir.path().join("fifo.env");
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::S_IRWXU).expect("mkfifo");
        let e = read(&fifo).expect_err("fifo");
        assert!(e.contains("not a regular file"), "{e}");
        let big = dir.path().join("big.env");
        std::fs::write(&big, vec![b'#'; MAX_BYTES as usize + 1]).expect("write");
        assert!(read(&big).expect_err("big").contains("larger than"));
        let good = dir.path().join("good.env");
        std::fs::write(&good, "A=1\nB=x\n").expect("write");
        assert_eq!(read(&good), Ok(pairs(&[("A", "1"), ("B", "x")])));
        std::fs::write(&good, "A=1\nB\n").expect("write");
        let e = read(&good).expect_err("bad line");
        assert!(e.contains(&format!("{}:2:", good.display())), "{e}");
    }
}
