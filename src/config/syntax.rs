//! The configobj 5.0.9 file syntax, exactly as `ConfigObj(filename)` reads it (list values on,
//! ConfigParser interpolation, which lives in `interpolate.rs`): bytes → lines → a `RawTree` of
//! sections, keys and values, each with its line number, plus every syntax error with the
//! message configobj gives. Like configobj it keeps going after an error, so all of a file's
//! errors are reported at once.
//!
//! This module knows nothing about usrsvc's keys and does no I/O; it must not reject anything
//! configobj accepts, nor accept anything configobj rejects.

use std::sync::OnceLock;

use super::fastpath;
use super::hashing::NameMap;
use super::pattern::{
    alt, ch, cls, group, lazy_star, lits, opt, plus, seq, star, Class, Node, Pattern,
};
use super::python::{py_repr, py_strip};

/// A value as configobj stores it: a string, or a list when the value has unquoted commas.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum RawValue {
    Scalar(String),
    List(Vec<String>),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RawEntry {
    pub key: String,
    pub value: RawValue,
    /// The line of the key (for a multi-line value, its first line).
    pub line: usize,
}

/// One section. The tree is an arena: `RawTree::sections[0]` is the file's root, whose parent
/// is itself, as in configobj.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RawSection {
    pub name: String,
    /// Line of the section marker (0 for the root).
    pub line: usize,
    /// Number of brackets; 0 for the root.
    pub depth: usize,
    pub parent: usize,
    /// Keys in file order.
    pub entries: Vec<RawEntry>,
    /// Subsections in file order, as indices into the arena.
    pub children: Vec<usize>,
    /// Every key and subsection by name once there are more than `SMALL` of them, so lookups
    /// and configobj's duplicate checks take constant time however many a section holds (a
    /// scan made them quadratic). Small sections, nearly all of them, are scanned.
    names: NameMap<Named>,
}

/// Up to this many names a section is scanned rather than indexed.
const SMALL: usize = 12;

/// What a name in a section stands for: an index into `entries`, or a subsection's id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Named {
    Entry(usize),
    Child(usize),
}

impl RawSection {
    fn new(name: String, line: usize, depth: usize, parent: usize) -> RawSection {
        RawSection {
            name,
            line,
            depth,
            parent,
            entries: Vec::new(),
            children: Vec::new(),
            names: NameMap::default(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RawTree {
    pub sections: Vec<RawSection>,
}

pub(crate) const ROOT: usize = 0;

impl RawTree {
    fn new() -> RawTree {
        RawTree {
            sections: vec![RawSection::new(String::new(), 0, 0, ROOT)],
        }
    }

    pub(crate) fn section(&self, id: usize) -> Option<&RawSection> {
        self.sections.get(id)
    }

    pub(crate) fn child(&self, id: usize, name: &str) -> Option<usize> {
        match self.lookup(id, name)? {
            Named::Child(c) => Some(c),
            Named::Entry(_) => None,
        }
    }

    pub(crate) fn entry(&self, id: usize, key: &str) -> Option<&RawEntry> {
        match self.lookup(id, key)? {
            Named::Entry(i) => self.section(id)?.entries.get(i),
            Named::Child(_) => None,
        }
    }

    /// configobj's `name in section`: keys and subsections share one namespace.
    fn contains(&self, id: usize, name: &str) -> bool {
        self.lookup(id, name).is_some()
    }

    fn lookup(&self, id: usize, name: &str) -> Option<Named> {
        let sec = self.section(id)?;
        if sec.entries.len() + sec.children.len() > SMALL {
            return sec.names.get(name).copied();
        }
        if let Some(i) = sec.entries.iter().position(|e| e.key == name) {
            return Some(Named::Entry(i));
        }
        sec.children
            .iter()
            .copied()
            .find(|&c| self.section(c).is_some_and(|s| s.name == name))
            .map(Named::Child)
    }

    /// Adds a subsection to `parent` (whose names must not hold `name` yet).
    fn add_child(&mut self, parent: usize, name: String, line: usize, depth: usize) -> usize {
        let id = self.sections.len();
        self.sections
            .push(RawSection::new(name.clone(), line, depth, parent));
        if let Some(par) = self.sections.get_mut(parent) {
            par.children.push(id);
        }
        self.index(parent, name, Named::Child(id));
        id
    }

    /// Adds a key to `section` (whose names must not hold it yet).
    fn add_entry(&mut self, section: usize, entry: RawEntry) {
        let key = entry.key.clone();
        let Some(sec) = self.sections.get_mut(section) else {
            return;
        };
        let at = sec.entries.len();
        sec.entries.push(entry);
        self.index(section, key, Named::Entry(at));
    }

    /// Records a name just added to `section` in its index, building the index when the
    /// section has just grown past `SMALL`.
    fn index(&mut self, section: usize, name: String, named: Named) {
        let Some(sec) = self.sections.get(section) else {
            return;
        };
        let count = sec.entries.len() + sec.children.len();
        if count <= SMALL {
            return;
        }
        let mut all = Vec::new();
        if count == SMALL + 1 {
            for (i, e) in sec.entries.iter().enumerate() {
                all.push((e.key.clone(), Named::Entry(i)));
            }
            for &c in &sec.children {
                if let Some(child) = self.sections.get(c) {
                    all.push((child.name.clone(), Named::Child(c)));
                }
            }
        } else {
            all.push((name, named));
        }
        if let Some(sec) = self.sections.get_mut(section) {
            sec.names.extend(all);
        }
    }
}

/// What kind of syntax error, for the caller's error kinds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SyntaxErrorKind {
    Nesting,
    DuplicateSection,
    DuplicateKey,
    InvalidLine,
    Value,
    Multiline,
}

/// A configobj parse error; `message` is configobj's, ending in `at line N.`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SyntaxError {
    pub kind: SyntaxErrorKind,
    pub line: usize,
    pub message: String,
}

/// A file that is not UTF-8; `message` is Python's `UnicodeDecodeError` text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct DecodeError {
    pub line: usize,
    pub message: String,
}

/// The parsed file: the tree as far as it could be built, and every error met on the way.
#[derive(Debug, Clone)]
pub(crate) struct Parsed {
    pub tree: RawTree,
    pub errors: Vec<SyntaxError>,
}

/// Reads a file's bytes the way configobj does: `readlines()` (split after each `\n` only),
/// a UTF-8 BOM dropped from the first line, each line decoded on its own (so a decode error's
/// position counts from the start of its line), then trailing `\r`/`\n` stripped.
pub(crate) fn parse_bytes(bytes: &[u8]) -> Result<Parsed, DecodeError> {
    let mut lines = Vec::new();
    for (i, raw) in bytes.split_inclusive(|&b| b == b'\n').enumerate() {
        let raw = if i == 0 {
            raw.strip_prefix(b"\xef\xbb\xbf".as_slice()).unwrap_or(raw)
        } else {
            raw
        };
        let text = std::str::from_utf8(raw).map_err(|e| DecodeError {
            line: i + 1,
            message: utf8_error_message(raw, &e),
        })?;
        lines.push(text.trim_end_matches(['\r', '\n']));
    }
    Ok(parse_lines(&lines))
}

/// Python's message for the first undecodable bytes of `raw`.
fn utf8_error_message(raw: &[u8], e: &std::str::Utf8Error) -> String {
    let start = e.valid_up_to();
    let (end, reason) = match e.error_len() {
        None => (raw.len(), "unexpected end of data"),
        Some(n) => {
            let lead = raw.get(start).copied().unwrap_or(0);
            let bad_start = matches!(lead, 0x80..=0xc1 | 0xf5..=0xff);
            (
                start + n,
                if bad_start {
                    "invalid start byte"
                } else {
                    "invalid continuation byte"
                },
            )
        }
    };
    if end.saturating_sub(start) <= 1 {
        let byte = raw.get(start).copied().unwrap_or(0);
        format!("'utf-8' codec can't decode byte 0x{byte:02x} in position {start}: {reason}")
    } else {
        format!(
            "'utf-8' codec can't decode bytes in position {start}-{}: {reason}",
            end - 1
        )
    }
}

struct Patterns {
    keyword: Pattern,
    section: Pattern,
    value: Pattern,
    list_item: Pattern,
    single_line_single: Pattern,
    single_line_double: Pattern,
    multi_line_single: Pattern,
    multi_line_double: Pattern,
}

fn any() -> Node {
    cls(Class::Any)
}
fn ws() -> Node {
    cls(Class::Ws)
}
/// `"<lazy anything>"` and its single-quoted twin.
fn quoted(q: char) -> Node {
    seq(vec![ch(q), lazy_star(any()), ch(q)])
}
/// `(\#.*)?` as group `i`.
fn comment(i: usize) -> Node {
    opt(group(i, seq(vec![ch('#'), star(any())])))
}

fn patterns() -> &'static Patterns {
    static P: OnceLock<Patterns> = OnceLock::new();
    P.get_or_init(|| {
        // ConfigObj._keyword:
        //   ^(\s*)((?:".*?")|(?:'.*?')|(?:[^'"=].*?))\s*=\s*(.*)$
        let keyword = seq(vec![
            group(0, star(ws())),
            group(
                1,
                alt(vec![
                    quoted('"'),
                    quoted('\''),
                    seq(vec![cls(Class::NoneOf("'\"=")), lazy_star(any())]),
                ]),
            ),
            star(ws()),
            ch('='),
            star(ws()),
            group(2, star(any())),
            Node::End,
        ]);
        // ConfigObj._sectionmarker:
        //   ^(\s*)((?:\[\s*)+)((?:"\s*\S.*?\s*")|(?:'\s*\S.*?\s*')|(?:[^'"\s].*?))
        //   ((?:\s*\])+)\s*(\#.*)?$
        let quoted_name = |q: char| {
            seq(vec![
                ch(q),
                star(ws()),
                cls(Class::NotWs),
                lazy_star(any()),
                star(ws()),
                ch(q),
            ])
        };
        let section = seq(vec![
            group(0, star(ws())),
            group(1, plus(seq(vec![ch('['), star(ws())]))),
            group(
                2,
                alt(vec![
                    quoted_name('"'),
                    quoted_name('\''),
                    seq(vec![cls(Class::NoneOfNorWs("'\"")), lazy_star(any())]),
                ]),
            ),
            group(3, plus(seq(vec![star(ws()), ch(']')]))),
            star(ws()),
            comment(4),
            Node::End,
        ]);
        // ConfigObj._valueexp:
        //   ^(?:(?:((?:(?:(?:".*?")|(?:'.*?')|(?:[^'",\#][^,\#]*?))\s*,\s*)*)
        //          ((?:".*?")|(?:'.*?')|(?:[^'",\#\s][^,]*?)|(?:(?<!,)))?)
        //      |(,))\s*(\#.*)?$
        let list_part = group(
            0,
            star(seq(vec![
                alt(vec![
                    quoted('"'),
                    quoted('\''),
                    seq(vec![
                        cls(Class::NoneOf("'\",#")),
                        lazy_star(cls(Class::NoneOf(",#"))),
                    ]),
                ]),
                star(ws()),
                ch(','),
                star(ws()),
            ])),
        );
        let last_item = opt(group(
            1,
            alt(vec![
                quoted('"'),
                quoted('\''),
                seq(vec![
                    cls(Class::NoneOfNorWs("'\",#")),
                    lazy_star(cls(Class::NoneOf(","))),
                ]),
                Node::NotAfter(','),
            ]),
        ));
        let value = seq(vec![
            alt(vec![seq(vec![list_part, last_item]), group(2, ch(','))]),
            star(ws()),
            comment(3),
            Node::End,
        ]);
        // ConfigObj._listvalueexp (used with findall):
        //   ((?:".*?")|(?:'.*?')|(?:[^'",\#]?.*?))\s*,\s*
        let list_item = seq(vec![
            group(
                0,
                alt(vec![
                    quoted('"'),
                    quoted('\''),
                    seq(vec![opt(cls(Class::NoneOf("'\",#"))), lazy_star(any())]),
                ]),
            ),
            star(ws()),
            ch(','),
            star(ws()),
        ]);
        // _single_line_single / _double: ^'''(.*?)'''\s*(#.*)?$
        let single_line = |q: &str| {
            seq(vec![
                lits(q),
                group(0, lazy_star(any())),
                lits(q),
                star(ws()),
                comment(1),
                Node::End,
            ])
        };
        // _multi_line_single / _double: ^(.*?)'''\s*(#.*)?$
        let multi_line = |q: &str| {
            seq(vec![
                group(0, lazy_star(any())),
                lits(q),
                star(ws()),
                comment(1),
                Node::End,
            ])
        };
        Patterns {
            keyword: Pattern::new(&keyword),
            section: Pattern::new(&section),
            value: Pattern::new(&value),
            list_item: Pattern::new(&list_item),
            single_line_single: Pattern::new(&single_line("'''")),
            single_line_double: Pattern::new(&single_line("\"\"\"")),
            multi_line_single: Pattern::new(&multi_line("'''")),
            multi_line_double: Pattern::new(&multi_line("\"\"\"")),
        }
    })
}

/// configobj's `_unquote`: one matching pair of surrounding quotes removed. `None` for the empty
/// string, where configobj raises.
fn unquote(s: &str) -> Option<String> {
    let first = s.chars().next()?;
    let last = s.chars().next_back()?;
    if first == last && (first == '"' || first == '\'') {
        let inner = s.get(first.len_utf8()..s.len().saturating_sub(last.len_utf8()));
        Some(inner.unwrap_or("").to_string())
    } else {
        Some(s.to_string())
    }
}

/// The section marker regex's brackets, name and closing brackets of a line (plain markers
/// without the matcher; `None` at once when the line cannot be one).
pub(super) fn section_marker(line: &str) -> Option<(String, String, String)> {
    if !fastpath::may_be_section(line) {
        return None;
    }
    if let Some((open, name, close)) = fastpath::section(line) {
        return Some((open.to_string(), name.to_string(), close.to_string()));
    }
    section_regex(line)
}

pub(super) fn section_regex(line: &str) -> Option<(String, String, String)> {
    let chars: Vec<char> = line.chars().collect();
    let caps = patterns().section.match_at(&chars, 0)?;
    Some((
        caps.text(&chars, 1).unwrap_or_default(),
        caps.text(&chars, 2).unwrap_or_default(),
        caps.text(&chars, 3).unwrap_or_default(),
    ))
}

/// The keyword regex's key and value text of a line (plain lines without the matcher).
pub(super) fn keyword(line: &str) -> Option<(String, String)> {
    if let Some((key, value)) = fastpath::keyword(line) {
        return Some((key.to_string(), value.to_string()));
    }
    keyword_regex(line)
}

pub(super) fn keyword_regex(line: &str) -> Option<(String, String)> {
    let chars: Vec<char> = line.chars().collect();
    let caps = patterns().keyword.match_at(&chars, 0)?;
    Some((
        caps.text(&chars, 1).unwrap_or_default(),
        caps.text(&chars, 2).unwrap_or_default(),
    ))
}

/// configobj's `_handle_value` with list values on: the value text after `=` (with any
/// trailing comment) to a string or list. `None` is configobj's "Parse error in value".
pub(crate) fn handle_value(value: &str) -> Option<RawValue> {
    fastpath::value(value).or_else(|| handle_value_regex(value))
}

/// `handle_value` by configobj's regular expressions alone.
pub(super) fn handle_value_regex(value: &str) -> Option<RawValue> {
    let p = patterns();
    let chars: Vec<char> = value.chars().collect();
    let caps = p.value.match_at(&chars, 0)?;
    let list_values = caps.text(&chars, 0);
    let mut single = caps.text(&chars, 1);
    let empty_list = caps.get(2).is_some();
    if list_values.as_deref() == Some("") && single.is_none() {
        return None;
    }
    if empty_list {
        return Some(RawValue::List(Vec::new()));
    }
    if let Some(s) = single.take() {
        if list_values.as_deref().is_some_and(|l| !l.is_empty()) && s.is_empty() {
            // configobj's workaround: the regex matches '' after a trailing comma.
            single = None;
        } else if s.is_empty() {
            single = Some(String::new());
        } else {
            single = Some(unquote(&s)?);
        }
    }
    let list_values = list_values.unwrap_or_default();
    if list_values.is_empty() {
        return single.map(RawValue::Scalar);
    }
    let lv: Vec<char> = list_values.chars().collect();
    let mut items = Vec::new();
    for item in p.list_item.findall_group0(&lv) {
        items.push(unquote(&item)?);
    }
    if let Some(s) = single {
        items.push(s);
    }
    Some(RawValue::List(items))
}

/// configobj's `_multiline`: `value` starts with a triple quote. Returns the value and the index
/// of the line it ended on, or `None` for "Parse error in multiline value".
fn multiline(value: &str, lines: &[&str], cur: usize) -> Option<(String, usize)> {
    let p = patterns();
    let (quot, single_line, multi_line) = if value.starts_with("'''") {
        ("'''", &p.single_line_single, &p.multi_line_single)
    } else {
        ("\"\"\"", &p.single_line_double, &p.multi_line_double)
    };
    let chars: Vec<char> = value.chars().collect();
    if let Some(caps) = single_line.match_at(&chars, 0) {
        return Some((caps.text(&chars, 0).unwrap_or_default(), cur));
    }
    let mut newvalue = value.get(quot.len()..).unwrap_or("").to_string();
    if newvalue.contains(quot) {
        return None;
    }
    let mut idx = cur;
    let mut closing = None;
    while idx + 1 < lines.len() {
        idx += 1;
        newvalue.push('\n');
        let line = lines.get(idx)?;
        if line.contains(quot) {
            closing = Some(line);
            break;
        }
        newvalue.push_str(line);
    }
    let line: Vec<char> = closing?.chars().collect();
    let caps = multi_line.match_at(&line, 0)?;
    newvalue.push_str(&caps.text(&line, 0).unwrap_or_default());
    Some((newvalue, idx))
}

/// configobj's `_parse` over lines that have already been decoded and had their line endings
/// stripped.
pub(crate) fn parse_lines(lines: &[&str]) -> Parsed {
    let mut tree = RawTree::new();
    let mut errors = Vec::new();
    let mut this = ROOT;
    let mut cur = 0;
    while cur < lines.len() {
        let Some(line) = lines.get(cur) else { break };
        let lineno = cur + 1;
        let mut err = |kind: SyntaxErrorKind, text: &str, at: usize| {
            errors.push(SyntaxError {
                kind,
                line: at,
                message: format!("{text} at line {at}."),
            });
        };
        let sline = py_strip(line);
        if sline.is_empty() || sline.starts_with('#') {
            cur += 1;
            continue;
        }
        if let Some((open, name, close)) = section_marker(line) {
            cur += 1;
            let depth = open.matches('[').count();
            if depth != close.matches(']').count() {
                err(
                    SyntaxErrorKind::Nesting,
                    "Cannot compute the section depth",
                    lineno,
                );
                continue;
            }
            let this_depth = tree.section(this).map_or(0, |s| s.depth);
            let parent = if depth < this_depth {
                match match_depth(&tree, this, depth) {
                    Some(s) => tree.section(s).map_or(ROOT, |s| s.parent),
                    None => {
                        err(
                            SyntaxErrorKind::Nesting,
                            "Cannot compute nesting level",
                            lineno,
                        );
                        continue;
                    }
                }
            } else if depth == this_depth {
                tree.section(this).map_or(ROOT, |s| s.parent)
            } else if depth == this_depth + 1 {
                this
            } else {
                err(SyntaxErrorKind::Nesting, "Section too nested", lineno);
                continue;
            };
            let name = unquote(&name).unwrap_or_default();
            if tree.contains(parent, &name) {
                err(
                    SyntaxErrorKind::DuplicateSection,
                    "Duplicate section name",
                    lineno,
                );
                continue;
            }
            this = tree.add_child(parent, name, lineno, depth);
            continue;
        }

        let Some((key, value_text)) = keyword(line) else {
            err(
                SyntaxErrorKind::InvalidLine,
                &format!(
                    "Invalid line ({}) (matched as neither section nor keyword)",
                    py_repr(line)
                ),
                lineno,
            );
            cur += 1;
            continue;
        };
        let value = if value_text.starts_with("'''") || value_text.starts_with("\"\"\"") {
            match multiline(&value_text, lines, cur) {
                Some((v, end)) => {
                    cur = end;
                    RawValue::Scalar(v)
                }
                None => {
                    err(
                        SyntaxErrorKind::Multiline,
                        "Parse error in multiline value",
                        lineno,
                    );
                    cur += 1;
                    continue;
                }
            }
        } else {
            match handle_value(&value_text) {
                Some(v) => v,
                None => {
                    err(SyntaxErrorKind::Value, "Parse error in value", lineno);
                    cur += 1;
                    continue;
                }
            }
        };
        let key = unquote(&key).unwrap_or_default();
        if tree.contains(this, &key) {
            // configobj reports this at the line the value ended on.
            err(
                SyntaxErrorKind::DuplicateKey,
                "Duplicate keyword name",
                cur + 1,
            );
            cur += 1;
            continue;
        }
        tree.add_entry(
            this,
            RawEntry {
                key,
                value,
                line: lineno,
            },
        );
        cur += 1;
    }
    Parsed { tree, errors }
}

/// configobj's `_match_depth`: the ancestor of `sect` at `depth`.
fn match_depth(tree: &RawTree, mut sect: usize, depth: usize) -> Option<usize> {
    loop {
        let s = tree.section(sect)?;
        if depth >= s.depth {
            return (s.depth == depth).then_some(sect);
        }
        if s.parent == sect {
            return None;
        }
        sect = s.parent;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scalar(s: &str) -> Option<RawValue> {
        Some(RawValue::Scalar(s.to_string()))
    }
    fn list(items: &[&str]) -> Option<RawValue> {
        Some(RawValue::List(
            items.iter().map(|s| s.to_string()).collect(),
        ))
    }
    fn parse(text: &str) -> Parsed {
        match parse_bytes(text.as_bytes()) {
            Ok(p) => p,
            Err(e) => panic!("decode error {e:?}"),
        }
    }
    fn errors(text: &str) -> Vec<(usize, String)> {
        parse(text)
            .errors
            .into_iter()
            .map(|e| (e.line, e.message))
            .collect()
    }
    /// Root entries and top-level sections' entries as "section.key=value" strings.
    fn flat(text: &str) -> Vec<String> {
        let p = parse(text);
        assert!(p.errors.is_empty(), "{:?}", p.errors);
        let mut out = Vec::new();
        fn walk(t: &RawTree, id: usize, prefix: &str, out: &mut Vec<String>) {
            let Some(s) = t.section(id) else { return };
            for e in &s.entries {
                out.push(format!("{prefix}{}={:?}@{}", e.key, e.value, e.line));
            }
            for &c in &s.children {
                let Some(cs) = t.section(c) else { continue };
                let name = format!("{prefix}{}.", cs.name);
                out.push(format!("[{}]d{}@{}", cs.name, cs.depth, cs.line));
                walk(t, c, &name, out);
            }
        }
        walk(&p.tree, ROOT, "", &mut out);
        out
    }

    // Expected values below were produced with configobj 5.0.9 on CPython 3.11
    // (`ConfigObj()._handle_value(v)` and `ConfigObj(lines)`).
    #[test]
    fn values_like_configobj() {
        assert_eq!(handle_value(""), scalar(""));
        assert_eq!(handle_value("1"), scalar("1"));
        assert_eq!(handle_value("a b   "), scalar("a b"));
        assert_eq!(handle_value("a b # c"), scalar("a b"));
        assert_eq!(handle_value("a b#c"), scalar("a b"));
        assert_eq!(handle_value("# only comment"), scalar(""));
        assert_eq!(handle_value("\"a # b\""), scalar("a # b"));
        assert_eq!(handle_value("'a, b' # c"), scalar("a, b"));
        assert_eq!(handle_value("\"q\""), scalar("q"));
        assert_eq!(handle_value("\"\""), scalar(""));
        assert_eq!(
            handle_value("python -c \"print(1)\""),
            scalar("python -c \"print(1)\"")
        );
        assert_eq!(handle_value("a\"b"), scalar("a\"b"));
        assert_eq!(handle_value("x, y"), list(&["x", "y"]));
        assert_eq!(handle_value("x ,y ,  z"), list(&["x", "y", "z"]));
        assert_eq!(handle_value("f,"), list(&["f"]));
        assert_eq!(handle_value("f, "), list(&["f"]));
        assert_eq!(handle_value(","), list(&[]));
        assert_eq!(handle_value(", # c"), list(&[]));
        assert_eq!(handle_value("\"q, r\" , s # com"), list(&["q, r", "s"]));
        assert_eq!(handle_value("\\d{1,3}"), list(&["\\d{1", "3}"]));
        assert_eq!(handle_value("a, \"b\", 'c'"), list(&["a", "b", "c"]));
        assert_eq!(handle_value("\"abc"), None);
        assert_eq!(handle_value("'abc"), None);
        assert_eq!(handle_value("\"a\" b"), None);
        assert_eq!(handle_value(",,"), None);
        assert_eq!(handle_value("a,,b"), None);
        assert_eq!(handle_value(", a"), None);
        assert_eq!(handle_value("a'b, 'c, d"), list(&["a'b", "'c", "d"]));
        assert_eq!(handle_value("'a'b, c"), None);
        assert_eq!(handle_value("a\"b, c\"d"), list(&["a\"b", "c\"d"]));
        assert_eq!(handle_value(" x"), None);
        assert_eq!(handle_value("\"\", a"), list(&["", "a"]));
        assert_eq!(handle_value("a, \"\""), list(&["a", ""]));
        assert_eq!(handle_value("x # y, z"), scalar("x"));
        assert_eq!(handle_value("'a'#c"), scalar("a"));
        assert_eq!(handle_value("a,b,"), list(&["a", "b"]));
        assert_eq!(handle_value("\"a\"\"b\""), scalar("a\"\"b"));
        assert_eq!(handle_value("'''x'''"), scalar("''x''"));
    }

    #[test]
    fn keys_sections_and_line_numbers() {
        let text = "\
# comment
top = 1

[Main]
  config_dir = /x   # trailing
\"quoted key\" = 'v'
k=v=w
[Program:p]
command = sleep 1
[[Env]]
A = b
[ Program:q ]
[[Monitoring]]
[[[deep]]]
x = 1
[\"Program:r\"]
";
        assert_eq!(
            flat(text),
            vec![
                "top=Scalar(\"1\")@2",
                "[Main]d1@4",
                "Main.config_dir=Scalar(\"/x\")@5",
                "Main.quoted key=Scalar(\"v\")@6",
                "Main.k=Scalar(\"v=w\")@7",
                "[Program:p]d1@8",
                "Program:p.command=Scalar(\"sleep 1\")@9",
                "[Env]d2@10",
                "Program:p.Env.A=Scalar(\"b\")@11",
                "[Program:q]d1@12",
                "[Monitoring]d2@13",
                "[deep]d3@14",
                "Program:q.Monitoring.deep.x=Scalar(\"1\")@15",
                "[Program:r]d1@16",
            ]
        );
    }

    #[test]
    fn odd_keys_follow_the_regex() {
        // Lazy key: it ends at the first '='; whitespace before it belongs to the separator.
        assert_eq!(flat("a b = c"), vec!["a b=Scalar(\"c\")@1"]);
        // An indented line starting with '=' makes a one-space key, as Python's backtracking does.
        assert_eq!(flat("  = v"), vec![" =Scalar(\"v\")@1"]);
        // A quote that does not close before '=' makes the key include it.
        assert_eq!(flat("  \"abc = x"), vec![" \"abc=Scalar(\"x\")@1"]);
        assert_eq!(flat("\"a\"b\" = c"), vec!["a\"b=Scalar(\"c\")@1"]);
    }

    #[test]
    fn syntax_errors_like_configobj() {
        assert_eq!(
            errors("[Main]\nkey: value\n"),
            vec![(
                2,
                "Invalid line ('key: value') (matched as neither section nor keyword) at line 2."
                    .to_string()
            )]
        );
        assert_eq!(
            errors("[Main]\njustaword\n"),
            vec![(
                2,
                "Invalid line ('justaword') (matched as neither section nor keyword) at line 2."
                    .to_string()
            )]
        );
        assert_eq!(
            errors("= v\n"),
            vec![(
                1,
                "Invalid line ('= v') (matched as neither section nor keyword) at line 1."
                    .to_string()
            )]
        );
        assert_eq!(
            errors("[a]\nx = 1\ny = 2\nx = 3\n"),
            vec![(4, "Duplicate keyword name at line 4.".to_string())]
        );
        assert_eq!(
            errors("[a]\n[b]\n[a]\nk = 1\n"),
            vec![(3, "Duplicate section name at line 3.".to_string())]
        );
        // A section may not share a name with a key of its parent, nor a key with a section.
        assert_eq!(
            errors("a = 1\n[a]\n"),
            vec![(2, "Duplicate section name at line 2.".to_string())]
        );
        assert_eq!(
            errors("[[sub]]\n"),
            vec![(1, "Section too nested at line 1.".to_string())]
        );
        assert_eq!(
            errors("[a]\n[[[c]]]\n"),
            vec![(2, "Section too nested at line 2.".to_string())]
        );
        assert_eq!(
            errors("[a]]\n"),
            vec![(1, "Cannot compute the section depth at line 1.".to_string())]
        );
        assert_eq!(
            errors("[[]]\n"),
            vec![(1, "Cannot compute the section depth at line 1.".to_string())]
        );
        assert_eq!(
            errors("k = \"abc\n"),
            vec![(1, "Parse error in value at line 1.".to_string())]
        );
        // configobj collects every error and keeps going.
        assert_eq!(
            errors("[a]\nx = 1\nbad\nx = 2\n[[[z]]]\ny = 'q\n"),
            vec![
                (
                    3,
                    "Invalid line ('bad') (matched as neither section nor keyword) at line 3."
                        .to_string()
                ),
                (4, "Duplicate keyword name at line 4.".to_string()),
                (5, "Section too nested at line 5.".to_string()),
                (6, "Parse error in value at line 6.".to_string()),
            ]
        );
    }

    #[test]
    fn odd_section_markers_follow_the_regex() {
        assert_eq!(flat("[a] # c\n"), vec!["[a]d1@1"]);
        assert_eq!(flat("[ 'a b' ]\n"), vec!["[a b]d1@1"]);
        assert_eq!(flat("[a]b]\n"), vec!["[a]b]d1@1"]);
        // Not a section marker, but a key named "[a]".
        assert_eq!(flat("[a] = b\n"), vec!["[a]=Scalar(\"b\")@1"]);
        // A form feed is part of the line (no splitlines) and part of the value.
        assert_eq!(flat("k = a\x0cb\n"), vec!["k=Scalar(\"a\\u{c}b\")@1"]);
        assert_eq!(
            errors("[a] x\n"),
            vec![(
                1,
                "Invalid line ('[a] x') (matched as neither section nor keyword) at line 1."
                    .to_string()
            )]
        );
        assert_eq!(
            errors("['']\n"),
            vec![(
                1,
                "Invalid line (\"['']\") (matched as neither section nor keyword) at line 1."
                    .to_string()
            )]
        );
        // Two brackets with spaces between still count as depth 2.
        assert_eq!(
            errors("[ [a] ]\n"),
            vec![(1, "Section too nested at line 1.".to_string())]
        );
        // Quoted and unquoted spellings of a key are the same key.
        assert_eq!(
            errors("\"k\" = v\n'k' = w\n"),
            vec![(2, "Duplicate keyword name at line 2.".to_string())]
        );
    }

    #[test]
    fn after_a_duplicate_section_keys_go_to_the_previous_one() {
        // configobj `continue`s without changing the current section.
        assert_eq!(
            errors("[a]\nk = 1\n[a]\nk = 2\n"),
            vec![
                (3, "Duplicate section name at line 3.".to_string()),
                (4, "Duplicate keyword name at line 4.".to_string()),
            ]
        );
    }

    #[test]
    fn nesting_returns_to_the_right_level() {
        assert_eq!(
            flat("[a]\n[[b]]\n[[[c]]]\n[[d]]\nk = 1\n[e]\nj = 2\n"),
            vec![
                "[a]d1@1",
                "[b]d2@2",
                "[c]d3@3",
                "[d]d2@4",
                "a.d.k=Scalar(\"1\")@5",
                "[e]d1@6",
                "e.j=Scalar(\"2\")@7",
            ]
        );
    }

    #[test]
    fn triple_quoted_values() {
        assert_eq!(flat("k = '''a, b # c'''"), vec!["k=Scalar(\"a, b # c\")@1"]);
        assert_eq!(flat("k = \"\"\"x\"\"\"  # c"), vec!["k=Scalar(\"x\")@1"]);
        assert_eq!(flat("k = ''''''"), vec!["k=Scalar(\"\")@1"]);
        assert_eq!(
            flat("k = '''first\nsecond, # not a comment\nlast''' # c\nj = 2\n"),
            vec![
                "k=Scalar(\"first\\nsecond, # not a comment\\nlast\")@1",
                "j=Scalar(\"2\")@4"
            ]
        );
        assert_eq!(flat("k = '''a\r\nb'''\r\n"), vec!["k=Scalar(\"a\\nb\")@1"]);
        // Unterminated: error at the key line, and the following lines are parsed normally.
        assert_eq!(
            errors("k = '''abc\nj = 1\n"),
            vec![(1, "Parse error in multiline value at line 1.".to_string())]
        );
        // The closing line must end after the quotes (bar a comment).
        assert_eq!(
            errors("k = '''abc\nx''' y\nz = 1\n"),
            vec![
                (1, "Parse error in multiline value at line 1.".to_string()),
                (
                    2,
                    "Invalid line (\"x''' y\") (matched as neither section nor keyword) at line 2."
                        .to_string()
                ),
            ]
        );
        // A triple quote later on the first line that does not close it.
        assert_eq!(
            errors("k = '''a''' b\n"),
            vec![(1, "Parse error in multiline value at line 1.".to_string())]
        );
        // Duplicate key after a multi-line value is reported at its last line.
        assert_eq!(
            errors("k = 1\nk = '''a\nb'''\n"),
            vec![(3, "Duplicate keyword name at line 3.".to_string())]
        );
    }

    #[test]
    fn bom_crlf_and_bad_utf8() {
        assert_eq!(
            flat("\u{feff}[Main]\r\nk = v\r\n"),
            vec!["[Main]d1@1", "Main.k=Scalar(\"v\")@2"]
        );
        // A lone CR does not end a line (readlines splits on LF only).
        assert_eq!(flat("k = a\rb\n"), vec!["k=Scalar(\"a\\rb\")@1"]);
        let e = parse_bytes(b"[Main]\nk = \xff\n").err();
        assert_eq!(
            e,
            Some(DecodeError {
                line: 2,
                message: "'utf-8' codec can't decode byte 0xff in position 4: invalid start byte"
                    .into()
            })
        );
        let e = parse_bytes(b"k = \xe2\x82\n").err();
        assert_eq!(
            e.map(|e| e.message),
            Some(
                "'utf-8' codec can't decode bytes in position 4-5: invalid continuation byte"
                    .into()
            )
        );
        let e = parse_bytes(b"k = \xc3").err();
        assert_eq!(
            e.map(|e| e.message),
            Some(
                "'utf-8' codec can't decode byte 0xc3 in position 4: unexpected end of data".into()
            )
        );
        assert!(parse_bytes(b"").is_ok_and(|p| p.tree.sections.len() == 1));
    }
}
