//! The few Python built-in string behaviours that usrsvc 1.5.13's config handling leans on and
//! that show through in its values and messages: `str.isspace`/`strip`, `repr()` of strings and
//! lists (the `['colour']` in "Unknown config options"), `os.path.dirname`, and the digit and
//! float rules of `configcommon`. Nothing here knows about usrsvc keys or files.

/// Python's `str.isspace()`, which is also what `\s` and `str.strip()` use: Unicode White_Space
/// plus the four information separators (U+001C..U+001F) that Python counts as whitespace.
pub(crate) fn py_isspace(c: char) -> bool {
    c.is_whitespace() || ('\u{1c}'..='\u{1f}').contains(&c)
}

/// Python's `str.strip()` with no argument.
pub(crate) fn py_strip(s: &str) -> &str {
    s.trim_matches(py_isspace)
}

/// Python's `repr()` of a `str`.
pub(crate) fn py_repr(s: &str) -> String {
    let quote = if s.contains('\'') && !s.contains('"') {
        '"'
    } else {
        '\''
    };
    let mut out = String::with_capacity(s.len() + 2);
    out.push(quote);
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\t' => out.push_str("\\t"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            c if c == quote => {
                out.push('\\');
                out.push(c);
            }
            c if (c as u32) < 0x20 || c as u32 == 0x7f => {
                out.push_str(&format!("\\x{:02x}", c as u32));
            }
            c if c.is_ascii() || is_printable(c) => out.push(c),
            c if (c as u32) <= 0xff => out.push_str(&format!("\\x{:02x}", c as u32)),
            c if (c as u32) <= 0xffff => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push_str(&format!("\\U{:08x}", c as u32)),
        }
    }
    out.push(quote);
    out
}

/// Python's `str(list_of_str)`: `['a', 'b']`.
pub(crate) fn py_list_repr<S: AsRef<str>>(items: &[S]) -> String {
    let parts: Vec<String> = items.iter().map(|s| py_repr(s.as_ref())).collect();
    format!("[{}]", parts.join(", "))
}

/// Python's `str.isprintable()` for one non-ASCII char, as far as it can be told without the
/// Unicode category tables: controls, separators, format characters and private use are not
/// printable (unassigned code points are taken as printable).
fn is_printable(c: char) -> bool {
    let u = c as u32;
    if c.is_control() || c.is_whitespace() {
        return false;
    }
    let format_or_private = [
        (0x00ad, 0x00ad),
        (0x0600, 0x0605),
        (0x061c, 0x061c),
        (0x06dd, 0x06dd),
        (0x070f, 0x070f),
        (0x0890, 0x0891),
        (0x08e2, 0x08e2),
        (0x180e, 0x180e),
        (0x200b, 0x200f),
        (0x202a, 0x202e),
        (0x2060, 0x2064),
        (0x2066, 0x206f),
        (0xd800, 0xdfff),
        (0xe000, 0xf8ff),
        (0xfeff, 0xfeff),
        (0xfff9, 0xfffb),
        (0x110bd, 0x110bd),
        (0x110cd, 0x110cd),
        (0x13430, 0x1343f),
        (0x1bca0, 0x1bca3),
        (0x1d173, 0x1d17a),
        (0xe0001, 0xe0001),
        (0xe0020, 0xe007f),
        (0xf0000, 0x10ffff),
    ];
    !format_or_private
        .iter()
        .any(|&(lo, hi)| (lo..=hi).contains(&u))
}

/// Python's `os.path.dirname` (posixpath): everything up to the last `/`, with trailing slashes
/// removed unless that leaves nothing but slashes.
pub(crate) fn py_dirname(p: &str) -> &str {
    let head = match p.rfind('/') {
        Some(i) => p.get(..=i).unwrap_or(""),
        None => "",
    };
    let trimmed = head.trim_end_matches('/');
    if trimmed.is_empty() {
        head
    } else {
        trimmed
    }
}

/// `str.isdigit()` as the original uses it to accept integers, limited to ASCII digits: Python
/// would also accept other scripts' decimal digits, which no one writes in a config.
pub(crate) fn py_isdigit(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit())
}

/// `configcommon.FLOAT_RE`, `^(\d*)(\.(\d+)){0,1}$`. Python's `$` also matches before one final
/// newline, which a triple-quoted value can end with.
pub(crate) fn matches_float_re(s: &str) -> bool {
    let s = s.strip_suffix('\n').unwrap_or(s);
    let (int_part, frac) = match s.split_once('.') {
        Some((i, f)) => (i, Some(f)),
        None => (s, None),
    };
    int_part.bytes().all(|b| b.is_ascii_digit())
        && match frac {
            None => true,
            Some(f) => !f.is_empty() && f.bytes().all(|b| b.is_ascii_digit()),
        }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn isspace_is_pythons() {
        // Every code point for which Python 3.11 `chr(c).isspace()` is true.
        let python: [u32; 29] = [
            0x9, 0xa, 0xb, 0xc, 0xd, 0x1c, 0x1d, 0x1e, 0x1f, 0x20, 0x85, 0xa0, 0x1680, 0x2000,
            0x2001, 0x2002, 0x2003, 0x2004, 0x2005, 0x2006, 0x2007, 0x2008, 0x2009, 0x200a, 0x2028,
            0x2029, 0x202f, 0x205f, 0x3000,
        ];
        let ours: Vec<u32> = (0..=0x10ffff_u32)
            .filter_map(char::from_u32)
            .filter(|&c| py_isspace(c))
            .map(|c| c as u32)
            .collect();
        assert_eq!(ours, python);
        assert_eq!(py_strip("\u{1c} a b\t\u{85}"), "a b");
    }

    #[test]
    fn repr_matches_python() {
        // Expected values from CPython 3.11 repr().
        assert_eq!(py_repr("colour"), "'colour'");
        assert_eq!(py_repr("it's"), "\"it's\"");
        assert_eq!(py_repr("a'b\"c"), "'a\\'b\"c'");
        assert_eq!(py_repr("tab\there\\"), "'tab\\there\\\\'");
        assert_eq!(
            py_repr("\u{7}\u{7f}é\u{a0}\u{200b}😀"),
            "'\\x07\\x7fé\\xa0\\u200b😀'"
        );
        assert_eq!(py_list_repr(&["colour", "x y"]), "['colour', 'x y']");
        assert_eq!(py_list_repr::<&str>(&[]), "[]");
    }

    #[test]
    fn dirname_matches_posixpath() {
        assert_eq!(py_dirname("/a/b/c"), "/a/b");
        assert_eq!(py_dirname("/a/b/"), "/a/b");
        assert_eq!(py_dirname("/x"), "/");
        assert_eq!(py_dirname("//x"), "//");
        assert_eq!(py_dirname("x"), "");
        assert_eq!(py_dirname("a//b"), "a");
    }

    #[test]
    fn digit_and_float_rules() {
        assert!(py_isdigit("0042"));
        assert!(!py_isdigit(""));
        assert!(!py_isdigit("-1"));
        assert!(!py_isdigit("1.5"));
        assert!(!py_isdigit(" 1"));
        for ok in ["5", "5.5", ".5", "", "0.25", "5\n"] {
            assert!(matches_float_re(ok), "{ok:?}");
        }
        for bad in ["5.", "-1", "1e3", "1.2.3", " 5", "5 ", "."] {
            assert!(!matches_float_re(bad), "{bad:?}");
        }
    }
}
