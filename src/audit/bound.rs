//! The size bound of an audit record: a line longer than [`MAX_RECORD`] bytes has its free
//! texts cut (each cut text ends in [`TRUNCATED_MARK`], and the record says `"truncated":
//! true`), so every record goes to the file in one small `write`.
//!
//! Why 4 KiB: a regular file's `write` is copied a page at a time and a fatal signal (SIGKILL,
//! the OOM killer) is honoured between pages, so a 120 KB record killed mid-write left a
//! partial line that the next record was glued to. A record of at most one page's size spans
//! at most two pages, which makes that window tiny (and `usrsvc history` recovers the record
//! glued after a partial one); it is also `PIPE_BUF`, and small enough for one syslog
//! datagram. What a person reads in a reason fits easily: the first 3.5 KB or more are kept.
//!
//! Must not: fail or panic. Only free texts are cut (reason, program, action, result, the
//! name in the trigger, host, user); time, uid and pids are never touched.

use super::{Record, Trigger};

/// The most bytes a record's line (with its `\n`) takes in the file.
pub const MAX_RECORD: usize = 4096;

/// What ends a text that was cut.
pub const TRUNCATED_MARK: &str = "…[truncated]";

/// The most bytes (as JSON, escapes counted) any free text but the reason keeps in a record
/// that is over the bound. Six such texts and the fixed fields stay far under [`MAX_RECORD`],
/// so the reason always has room.
const FIELD_MAX: usize = 256;

/// `record` with its free texts cut so that its line fits [`MAX_RECORD`].
pub(super) fn bounded(record: &Record) -> Record {
    let mut r = record.clone();
    r.truncated = true;
    for text in [
        &mut r.host,
        &mut r.user,
        &mut r.program,
        &mut r.action,
        &mut r.result,
    ] {
        cut(text, FIELD_MAX);
    }
    if let Some(caller) = &mut r.caller {
        cut(caller, FIELD_MAX);
    }
    match &mut r.trigger {
        Trigger::Monitor(name) | Trigger::Health(name) | Trigger::Group(name) => {
            cut(name, FIELD_MAX)
        }
        Trigger::Cli
        | Trigger::Delegated
        | Trigger::Autostart
        | Trigger::Crash
        | Trigger::Schedule => {}
    }
    if let Some(reason) = r.reason.take() {
        // What the line takes without any reason text; the rest is the reason's.
        r.reason = Some(String::new());
        let fixed = r.json_line().len();
        let mut reason = reason;
        cut(&mut reason, MAX_RECORD.saturating_sub(fixed));
        r.reason = Some(reason);
    }
    r
}

/// Cuts `text` (at a character boundary) so that its JSON form, without the quotes, takes at
/// most `max` bytes, mark included. A text that fits is left alone.
fn cut(text: &mut String, max: usize) {
    if json_len(text) <= max {
        return;
    }
    // Too little room for the mark (never the case for the bounds above): text only.
    let marked = max >= TRUNCATED_MARK.len();
    let budget = if marked {
        max - TRUNCATED_MARK.len()
    } else {
        max
    };
    let mut used = 0;
    let mut end = 0;
    for (i, c) in text.char_indices() {
        let n = char_json_len(c);
        if used + n > budget {
            break;
        }
        used += n;
        end = i + c.len_utf8();
    }
    text.truncate(end);
    if marked {
        text.push_str(TRUNCATED_MARK);
    }
}

fn json_len(text: &str) -> usize {
    text.chars().map(char_json_len).sum()
}

/// The bytes serde_json writes for `c` inside a string.
fn char_json_len(c: char) -> usize {
    match c {
        '"' | '\\' | '\n' | '\r' | '\t' | '\u{8}' | '\u{c}' => 2,
        c if (c as u32) < 0x20 => 6,
        c => c.len_utf8(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(reason: &str) -> Record {
        Record::new(
            "web",
            "restart",
            Trigger::Health("http".into()),
            Some(reason.to_owned()),
            "ok",
            Some(1),
            Some(2),
        )
    }

    #[test]
    fn a_small_record_is_untouched() {
        let r = record("deploy 1.2");
        let line = r.to_line();
        assert!(!line.contains("truncated"), "{line}");
        assert_eq!(serde_json::from_str::<Record>(&line).expect("json"), r);
    }

    #[test]
    fn a_120_kb_reason_is_cut_to_one_bounded_line_marked_truncated() {
        let reason = "x".repeat(120_000);
        let line = record(&reason).to_line();
        assert!(line.len() <= MAX_RECORD, "{}", line.len());
        assert!(
            line.len() > MAX_RECORD - 16,
            "the room is used: {}",
            line.len()
        );
        assert!(line.ends_with("}\n") && line.matches('\n').count() == 1);
        let back: Record = serde_json::from_str(&line).expect("json");
        assert!(back.truncated);
        let got = back.reason.expect("reason");
        assert!(
            got.ends_with(TRUNCATED_MARK) && got.starts_with("xxxx"),
            "{got}"
        );
        assert_eq!((back.program.as_str(), back.new_pid), ("web", Some(2)));
        assert!(line.contains("\"truncated\":true"), "{line}");
    }

    #[test]
    fn escapes_multibyte_text_and_long_names_are_bounded_too() {
        let nasty: String = "\u{1}é\"\\\n€".repeat(5_000);
        let mut r = Record::new(
            nasty.clone(),
            nasty.clone(),
            Trigger::Group(nasty.clone()),
            Some(nasty.clone()),
            nasty.clone(),
            None,
            None,
        );
        r.host = nasty.clone();
        r.user = nasty.clone();
        r.caller = Some(nasty.clone());
        r.caller_uid = Some(7);
        let line = r.to_line();
        assert!(line.len() <= MAX_RECORD, "{}", line.len());
        let back: Record = serde_json::from_str(&line).expect("json");
        assert!(back.truncated);
        for text in [
            &back.program,
            &back.action,
            &back.result,
            &back.host,
            &back.user,
            back.caller.as_ref().expect("caller"),
        ] {
            assert!(text.ends_with(TRUNCATED_MARK), "{text}");
            assert!(nasty.starts_with(text.trim_end_matches(TRUNCATED_MARK)));
        }
        assert!(back.trigger.to_string().ends_with(TRUNCATED_MARK));
        assert_eq!(back.caller_uid, Some(7));
        // Without a reason the other texts alone are bounded.
        r.reason = None;
        assert!(r.to_line().len() <= MAX_RECORD);
    }

    #[test]
    fn cut_keeps_whole_characters_within_the_budget() {
        let mut s = "é".repeat(10);
        cut(&mut s, TRUNCATED_MARK.len() + 5);
        assert_eq!(s, format!("éé{TRUNCATED_MARK}"));
        let mut s = "abc".to_owned();
        cut(&mut s, 3);
        assert_eq!(s, "abc");
        let mut s = "abcdef".to_owned();
        cut(&mut s, 2);
        assert_eq!(s, "ab", "no room for the mark: cut only");
    }
}
