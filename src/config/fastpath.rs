//! The shapes nearly every line of a config has — `key = plain value`, `key = a, b, c`,
//! `key = "quoted"` — decided by plain string scanning, without running configobj's regular
//! expressions through the matcher (which costs some hundred nanoseconds a character). Each
//! function gives exactly what the regex would, or `None` to leave the line to it; the
//! reasoning is beside each one, and a test compares both on every short string of the
//! characters that matter.
//!
//! Like `syntax.rs`, this module does no I/O and knows nothing about usrsvc's keys.

use super::python::py_isspace;
use super::syntax::RawValue;

/// Whether configobj's section marker regex can match: it needs `[` as the first character
/// after the leading whitespace.
pub(super) fn may_be_section(line: &str) -> bool {
    line.trim_start_matches(py_isspace).starts_with('[')
}

/// `^(\s*)((?:\[\s*)+)((?:"\s*\S.*?\s*")|(?:'\s*\S.*?\s*')|(?:[^'"\s].*?))((?:\s*\])+)\s*(\#.*)?$`
/// on a plain marker (`[name]`, `[[name]]`, a comment after it): the brackets, the name and
/// the closing brackets (groups 2 to 4; only their count of brackets matters).
///
/// The `[` run is taken whole (no whitespace in it or after it), the name starts with a
/// character that is neither whitespace nor a quote nor `]`, and holds no bracket, quote or `#`.
/// The lazy name ends at the first place followed by `(\s*\])+\s*(\#.*)?$`: it needs a `]`,
/// and the first one is followed by more `]` and then only whitespace or a comment, so the
/// name ends after its last non-whitespace character.
pub(super) fn section(line: &str) -> Option<(&str, &str, &str)> {
    let body = line.trim_start_matches(py_isspace);
    let name_start = body.find(|c| c != '[')?;
    if name_start == 0 || line.contains('\n') {
        return None;
    }
    let open = body.get(..name_start)?;
    let rest = body.get(name_start..)?;
    let first = rest.chars().next()?;
    if py_isspace(first) || matches!(first, '\'' | '"' | ']') {
        return None;
    }
    let close_at = rest.find(']')?;
    let raw = rest.get(..close_at)?;
    if raw.contains(['[', '\'', '"', '#']) {
        return None;
    }
    let name = raw.trim_end_matches(py_isspace);
    let after = rest.get(close_at..)?;
    let tail = after.trim_start_matches(']');
    let close = after.get(..after.len() - tail.len())?;
    let tail = tail.trim_start_matches(py_isspace);
    if !(tail.is_empty() || tail.starts_with('#')) {
        return None;
    }
    Some((open, name, close))
}

/// `^(\s*)((?:".*?")|(?:'.*?')|(?:[^'"=].*?))\s*=\s*(.*)$` on a line whose key is not quoted:
/// the key and the value text (groups 2 and 3).
///
/// `(\s*)` takes all leading whitespace, so the key starts at a character that is neither
/// whitespace, a quote nor `=`. The lazy key ends at the first place followed by `\s*=`: after
/// the last non-whitespace character before the first `=`. Then `\s*` takes all whitespace
/// after the `=` and `(.*)` the rest (no line holds a newline), and the match is complete, so
/// no backtracking changes it.
pub(super) fn keyword(line: &str) -> Option<(&str, &str)> {
    let body = line.trim_start_matches(py_isspace);
    let first = body.chars().next()?;
    if matches!(first, '\'' | '"' | '=') || line.contains('\n') {
        return None;
    }
    let eq = body.find('=')?;
    let key = body.get(..eq)?.trim_end_matches(py_isspace);
    let value = body.get(eq + 1..)?.trim_start_matches(py_isspace);
    Some((key, value))
}

/// configobj's `_handle_value` for a value without quotes, `#` or empty items, and for one
/// quoted string.
///
/// Unquoted: the value starts with a character that is neither whitespace nor a comma. Each
/// item of the list part (`[^'",\#][^,\#]*?` then `\s*,\s*`) is lazy, so it ends after the last
/// non-whitespace character before its comma, and the greedy `\s*` after the comma leaves the
/// next item starting at its first non-whitespace character. The greedy `(...)*` takes every
/// item followed by a comma; the last part (no comma) is the single value
/// (`[^'",\#\s][^,]*?` then `\s*$`), or, when it is empty, nothing: after a comma `(?<!,)`
/// fails and the optional group is skipped, and after trailing whitespace it matches the empty
/// string, which configobj drops. `findall` over the list part splits it at the same commas
/// with the same trimming. No comma at all: the single value, trimmed at its end.
pub(super) fn value(v: &str) -> Option<RawValue> {
    let first = v.chars().next()?;
    if first == '"' || first == '\'' {
        return quoted(v, first);
    }
    if py_isspace(first) || first == ',' || v.contains(['\'', '"', '#', '\n']) {
        return None;
    }
    if !v.contains(',') {
        return Some(RawValue::Scalar(v.trim_end_matches(py_isspace).to_string()));
    }
    let mut items = Vec::new();
    let mut parts = v.split(',').peekable();
    while let Some(part) = parts.next() {
        let item = part.trim_matches(py_isspace);
        let last = parts.peek().is_none();
        match (item.is_empty(), last) {
            (false, _) => items.push(item.to_string()),
            (true, true) => {}
            // `a, , b`: the regex backtracks into odd items; leave it to the regex.
            (true, false) => return None,
        }
    }
    Some(RawValue::List(items))
}

/// `"text"` (or `'text'`), then only whitespace and perhaps a comment, with no other quote
/// character anywhere: the list part cannot take it (a quoted item needs a comma after its
/// closing quote, and there is no second closing quote to try), so the single value is the
/// quoted string and configobj unquotes it.
fn quoted(v: &str, q: char) -> Option<RawValue> {
    let other = if q == '"' { '\'' } else { '"' };
    if v.contains(other) || v.contains('\n') {
        return None;
    }
    let rest = v.get(q.len_utf8()..)?;
    let close = rest.find(q)?;
    let inner = rest.get(..close)?;
    let tail = rest.get(close + q.len_utf8()..)?;
    if tail.contains(q) {
        return None;
    }
    let tail = tail.trim_start_matches(py_isspace);
    if !(tail.is_empty() || tail.starts_with('#')) {
        return None;
    }
    Some(RawValue::Scalar(inner.to_string()))
}

#[cfg(test)]
mod tests {
    use super::super::syntax::{handle_value_regex, keyword_regex, section_regex};
    use super::*;

    /// Every string of up to `len` characters from `alphabet`.
    fn strings(alphabet: &[char], len: usize) -> Vec<String> {
        let mut all = vec![String::new()];
        let mut last = vec![String::new()];
        for _ in 0..len {
            let mut next = Vec::new();
            for s in &last {
                for &c in alphabet {
                    let mut t = s.clone();
                    t.push(c);
                    next.push(t);
                }
            }
            all.extend(next.iter().cloned());
            last = next;
        }
        all
    }

    #[test]
    fn values_are_what_the_regex_gives() {
        let alphabet = ['a', 'b', ' ', '\t', ',', '"', '\'', '#', '\u{a0}'];
        let mut fast = 0;
        for v in strings(&alphabet, 6) {
            if let Some(got) = value(&v) {
                fast += 1;
                assert_eq!(Some(got), handle_value_regex(&v), "{v:?}");
            }
        }
        // Most of them took the fast path.
        assert!(fast > 20_000, "{fast}");
    }

    #[test]
    fn keyword_lines_are_what_the_regex_gives() {
        let alphabet = ['k', ' ', '=', '"', '\'', '[', '#', '\u{3000}'];
        for line in strings(&alphabet, 6) {
            let regex = keyword_regex(&line);
            if let Some((k, v)) = keyword(&line) {
                assert_eq!(Some((k.to_string(), v.to_string())), regex, "{line:?}");
            }
            if !may_be_section(&line) {
                assert!(section_regex(&format!("{line}]")).is_none(), "{line:?}");
            }
        }
    }

    #[test]
    fn section_markers_are_what_the_regex_gives() {
        let alphabet = ['[', ']', 's', ' ', '#', '"', '\u{a0}'];
        let mut fast = 0;
        for line in strings(&alphabet, 6) {
            if let Some((open, name, close)) = section(&line) {
                fast += 1;
                let got = Some((open.to_string(), name.to_string(), close.to_string()));
                let regex = section_regex(&line);
                // Only the count of brackets in the closing group matters.
                let count = |r: &Option<(String, String, String)>| {
                    r.as_ref()
                        .map(|(o, n, c)| (o.clone(), n.clone(), c.matches(']').count()))
                };
                assert_eq!(count(&got), count(&regex), "{line:?}");
            }
        }
        assert!(fast > 400, "{fast}");
    }
}
