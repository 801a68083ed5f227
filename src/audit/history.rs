//! Reading the audit trail back for `usrsvc history`: the last records, optionally of one
//! program, and their human table. Owns tolerance of a damaged file (a line that is not a
//! record is counted and skipped, never an error); must not write to the file, and must not
//! hold more than the records asked for (plus one bounded line) in memory, however long the
//! file has grown.

use std::collections::VecDeque;
use std::io::{self, BufRead, BufReader};
use std::path::Path;

use super::Record;

/// Lines longer than this are not read into memory (they are skipped and counted): a file
/// damaged into one endless line must not take `usrsvc history` down. A record is far smaller
/// unless its reason is a megabyte of text.
pub const MAX_LINE: usize = 1 << 20;

/// The last `n` records of the file at `path` (only `program`'s if given), oldest first, and
/// how many non-blank lines were not records (garbage, a partial last line, a line over
/// [`MAX_LINE`]). A missing or unreadable file is the `Err` (the caller may treat `NotFound`
/// as "no history yet").
pub fn read_history(
    path: &Path,
    program: Option<&str>,
    n: usize,
) -> io::Result<(Vec<Record>, usize)> {
    read_history_where(
        path,
        &|r: &Record| program.is_none_or(|p| r.program == p),
        n,
    )
}

/// The last `n` records that `keep` accepts, as [`read_history`] (the control API shows a
/// delegated caller the records of the programs it may see).
pub fn read_history_where(
    path: &Path,
    keep: &dyn Fn(&Record) -> bool,
    n: usize,
) -> io::Result<(Vec<Record>, usize)> {
    let mut reader = BufReader::new(crate::fsafe::open_read(path)?);
    let mut last: VecDeque<Record> = VecDeque::new();
    let mut skipped = 0;
    let mut line = Vec::new();
    while let Some(fits) = next_line(&mut reader, &mut line)? {
        let text = line.trim_ascii();
        if fits && text.is_empty() {
            continue;
        }
        let (record, damaged) = if fits {
            match serde_json::from_slice::<Record>(text) {
                Ok(r) => (Some(r), false),
                Err(_) => (glued_record(text), true),
            }
        } else {
            (None, true)
        };
        if damaged {
            skipped += 1;
        }
        match record {
            None => {}
            Some(r) if keep(&r) => {
                if n == 0 {
                    continue;
                }
                if last.len() == n {
                    last.pop_front();
                }
                last.push_back(r);
            }
            Some(_) => {}
        }
    }
    Ok((last.into(), skipped))
}

/// The record at the end of a damaged line: a writer killed mid-record leaves a partial line
/// without its `\n`, and the next record is glued to it. Every record starts with `{"time":`.
fn glued_record(text: &[u8]) -> Option<Record> {
    const START: &[u8] = b"{\"time\":";
    let at = (1..text.len().saturating_sub(START.len()) + 1)
        .rev()
        .find(|&i| text[i..].starts_with(START))?;
    serde_json::from_slice(&text[at..]).ok()
}

/// Reads the next line (without its `\n`) into `buf`, keeping at most [`MAX_LINE`] bytes of
/// it. `None` at the end of the file; `Some(false)` if the line was longer and got cut.
fn next_line(reader: &mut impl BufRead, buf: &mut Vec<u8>) -> io::Result<Option<bool>> {
    buf.clear();
    let mut fits = true;
    let mut any = false;
    loop {
        let chunk = match reader.fill_buf() {
            Ok(c) => c,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        if chunk.is_empty() {
            return Ok(any.then_some(fits));
        }
        any = true;
        let (part, used, done) = match chunk.iter().position(|&b| b == b'\n') {
            Some(i) => (&chunk[..i], i + 1, true),
            None => (chunk, chunk.len(), false),
        };
        if fits && buf.len() + part.len() <= MAX_LINE {
            buf.extend_from_slice(part);
        } else {
            fits = false;
            buf.clear();
        }
        reader.consume(used);
        if done {
            return Ok(Some(fits));
        }
    }
}

/// One line per record, columns aligned: time, program, action, trigger, result, `old→new`
/// pids (`-` for none), then who asked when it was a delegated caller (`by alice (uid
/// 1001)`) and the reason. Control characters in the free-text fields are shown escaped
/// so that every record stays on one line.
pub fn format_history(records: &[Record]) -> String {
    let rows: Vec<[String; 7]> = records
        .iter()
        .map(|r| {
            [
                shown(&r.time),
                shown(&r.program),
                shown(&r.action),
                shown(&r.trigger.to_string()),
                shown(&r.result),
                format!("{}→{}", pid(r.old_pid), pid(r.new_pid)),
                last_cell(r),
            ]
        })
        .collect();
    let mut widths = [0usize; 6];
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row.iter()) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    for row in &rows {
        let mut line = String::new();
        for (i, cell) in row.iter().enumerate() {
            if i > 0 {
                line.push_str("  ");
            }
            line.push_str(cell);
            if let Some(&w) = widths.get(i) {
                line.extend(std::iter::repeat_n(' ', w - cell.chars().count()));
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// `by USER (uid N)` of a delegated caller, then the reason.
fn last_cell(r: &Record) -> String {
    let by = match (&r.caller, r.caller_uid) {
        (Some(c), Some(uid)) => Some(format!("by {} (uid {uid})", shown(c))),
        (Some(c), None) => Some(format!("by {}", shown(c))),
        (None, Some(uid)) => Some(format!("by uid {uid}")),
        (None, None) => None,
    };
    let reason = r.reason.as_deref().map(shown);
    match (by, reason) {
        (Some(b), Some(r)) => format!("{b}: {r}"),
        (Some(b), None) => b,
        (None, r) => r.unwrap_or_default(),
    }
}

fn pid(p: Option<i32>) -> String {
    p.map_or_else(|| "-".to_owned(), |p| p.to_string())
}

/// `s` with its control characters escaped (`\n`, `\u{1b}`), for text shown on a terminal.
pub fn shown(s: &str) -> String {
    if !s.chars().any(char::is_control) {
        return s.to_owned();
    }
    s.chars()
        .map(|c| {
            if c.is_control() {
                c.escape_default().to_string()
            } else {
                c.to_string()
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::Trigger;
    use std::io::Write;

    fn rec(program: &str, action: &str, n: i32) -> Record {
        Record {
            time: format!("2026-11-23T15:20:{n:02}.000+01:00"),
            host: "box".into(),
            user: "alice".into(),
            uid: 1000,
            caller: None,
            caller_uid: None,
            program: program.into(),
            action: action.into(),
            trigger: Trigger::Cli,
            reason: None,
            result: "ok".into(),
            old_pid: None,
            new_pid: Some(n),
            truncated: false,
        }
    }

    fn file_with(lines: &[String]) -> tempfile::NamedTempFile {
        let mut f = tempfile::NamedTempFile::new().expect("temp file");
        for l in lines {
            f.write_all(l.as_bytes()).expect("write");
        }
        f
    }

    #[test]
    fn last_n_oldest_first_filtered_with_garbage_counted() {
        let mut lines = Vec::new();
        for i in 0..10 {
            let program = if i % 2 == 0 { "web" } else { "db" };
            lines.push(rec(program, "start", i).to_line());
            if i == 3 {
                lines.push("not json\n".into());
                lines.push("\n".into());
                lines.push("{\"time\":\"x\"}\n".into());
                lines.push("[1,2]\n".into());
            }
        }
        // A partial last line (a short write on a full disk).
        lines.push(rec("web", "stop", 99).to_line()[..40].to_owned());
        let f = file_with(&lines);

        let (all, skipped) = read_history(f.path(), None, 100).expect("read");
        assert_eq!(skipped, 4);
        assert_eq!(
            all.iter().filter_map(|r| r.new_pid).collect::<Vec<_>>(),
            (0..10).collect::<Vec<_>>()
        );

        let (web, _) = read_history(f.path(), Some("web"), 3).expect("read");
        assert_eq!(
            web.iter().filter_map(|r| r.new_pid).collect::<Vec<_>>(),
            [4, 6, 8]
        );
        assert!(web.iter().all(|r| r.program == "web"));

        let (none, skipped) = read_history(f.path(), Some("web"), 0).expect("read");
        assert!(none.is_empty());
        assert_eq!(skipped, 4);
        let (none, _) = read_history(f.path(), Some("nosuch"), 5).expect("read");
        assert!(none.is_empty());
    }

    #[test]
    fn a_record_glued_to_a_partial_one_is_recovered_and_the_partial_counted() {
        let partial = rec("a", "restart", 1).to_line();
        let partial = &partial[..partial.len() / 2];
        let f = file_with(&[
            rec("a", "start", 0).to_line(),
            format!("{partial}{}", rec("a", "stop", 2).to_line()),
            format!("{partial}{partial}\n"),
            rec("a", "start", 3).to_line(),
        ]);
        let (records, skipped) = read_history(f.path(), None, 10).expect("read");
        assert_eq!(skipped, 2);
        assert_eq!(
            records
                .iter()
                .map(|r| r.action.as_str())
                .collect::<Vec<_>>(),
            ["start", "stop", "start"]
        );
    }

    #[test]
    fn an_overlong_line_is_skipped_and_reading_goes_on() {
        let mut huge = "x".repeat(MAX_LINE + 10);
        huge.push('\n');
        let f = file_with(&[
            rec("a", "start", 1).to_line(),
            huge,
            rec("a", "stop", 2).to_line(),
        ]);
        let (records, skipped) = read_history(f.path(), None, 10).expect("read");
        assert_eq!(skipped, 1);
        assert_eq!(records.len(), 2);
        assert_eq!(records[1].action, "stop");
    }

    #[test]
    fn invalid_utf8_is_skipped() {
        let mut f = tempfile::NamedTempFile::new().expect("temp file");
        f.write_all(b"\xff\xfe{\n").expect("write");
        f.write_all(rec("a", "start", 1).to_line().as_bytes())
            .expect("write");
        let (records, skipped) = read_history(f.path(), None, 10).expect("read");
        assert_eq!((records.len(), skipped), (1, 1));
    }

    #[test]
    fn a_missing_file_is_not_found() {
        let dir = tempfile::tempdir().expect("tempdir");
        let err = read_history(&dir.path().join("none"), None, 1).expect_err("missing");
        assert_eq!(err.kind(), io::ErrorKind::NotFound);
    }

    #[test]
    fn table_is_aligned_one_line_per_record() {
        let mut a = rec("web", "restart", 1);
        a.old_pid = Some(100);
        a.new_pid = Some(200);
        a.trigger = Trigger::Monitor("rss".into());
        a.reason = Some("rss 600 MB\nover limit".into());
        let mut b = rec("database", "stop", 2);
        b.new_pid = None;
        b.old_pid = Some(7);
        b.result = "failed".into();
        let c = rec("x", "signal:QUIT", 3);
        let table = format_history(&[a, b, c]);
        assert_eq!(
            table,
            "2026-11-23T15:20:01.000+01:00  web       restart      monitor:rss  ok      100→200  rss 600 MB\\nover limit\n\
             2026-11-23T15:20:02.000+01:00  database  stop         cli          failed  7→-\n\
             2026-11-23T15:20:03.000+01:00  x         signal:QUIT  cli          ok      -→3\n"
        );
        assert_eq!(format_history(&[]), "");
    }

    #[test]
    fn a_delegated_caller_is_shown_before_the_reason() {
        let mut a = rec("web", "restart", 1);
        a.trigger = Trigger::Delegated;
        a.caller = Some("alice".into());
        a.caller_uid = Some(1001);
        a.reason = Some("deploy".into());
        let mut b = a.clone();
        b.reason = None;
        let table = format_history(&[a, b]);
        assert_eq!(
            table,
            "2026-11-23T15:20:01.000+01:00  web  restart  delegated  ok  -→1  by alice (uid 1001): deploy\n\
             2026-11-23T15:20:01.000+01:00  web  restart  delegated  ok  -→1  by alice (uid 1001)\n"
        );
        let line = rec("web", "start", 1).to_line();
        let back: Record = serde_json::from_str(&line).expect("json");
        assert_eq!(back.caller, None);
    }
}
