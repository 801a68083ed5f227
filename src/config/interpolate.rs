//! configobj's ConfigParser-style interpolation: `%(name)s` in a value is replaced by the value
//! of `name`, looked up from the section that holds the value: that section, then its
//! `[[DEFAULT]]` subsection, then each parent section (and its `DEFAULT`) up to the file's
//! root. Replacements are interpolated in turn; a name met again on the way is a loop, as in
//! configobj (which has no fixed depth limit). A bare `%` is literal.
//!
//! Works on one file's `RawTree`; does no I/O and knows nothing about usrsvc keys.

use std::collections::HashMap;
use std::fmt;

use super::syntax::{RawTree, RawValue};

/// No legitimate config comes near this; it stops `%(a)s%(a)s` chains from doubling their way
/// into gigabytes.
const MAX_LEN: usize = 1 << 20;

/// Nor this: a chain of references nested deeper stops here, where Python's recursion limit
/// made configobj crash, rather than exhausting the stack.
const MAX_DEPTH: usize = 200;

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum InterpolationError {
    /// configobj's `MissingInterpolationOption`.
    Missing(String),
    /// configobj's `InterpolationLoopError`.
    Loop(String),
    /// The named option is a list; configobj crashed with a TypeError here.
    ListValue(String),
    TooLong,
    /// References nested more than `MAX_DEPTH` deep.
    TooDeep,
}

impl fmt::Display for InterpolationError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            InterpolationError::Missing(name) => {
                write!(f, "missing option \"{name}\" in interpolation.")
            }
            InterpolationError::Loop(name) => {
                write!(f, "interpolation loop detected in value \"{name}\".")
            }
            InterpolationError::ListValue(name) => write!(
                f,
                "cannot interpolate \"%({name})s\": the value of {name} is a list (unquoted comma); quote it"
            ),
            InterpolationError::TooLong => write!(
                f,
                "interpolation makes the value longer than {MAX_LEN} characters"
            ),
            InterpolationError::TooDeep => write!(
                f,
                "interpolation nests references more than {MAX_DEPTH} deep"
            ),
        }
    }
}

/// The interpolated value of `key` = `value` held by `section` of `tree`.
pub(crate) fn interpolate(
    tree: &RawTree,
    section: usize,
    key: &str,
    value: &str,
) -> Result<String, InterpolationError> {
    if !value.contains('%') {
        return Ok(value.to_string());
    }
    let mut walk = Walk::default();
    resolve(tree, section, key, Found::Str(value), &mut walk)
}

/// An interpolated `RawValue`: each list item on its own, as configobj does.
pub(crate) fn interpolate_value(
    tree: &RawTree,
    section: usize,
    key: &str,
    value: &RawValue,
) -> Result<RawValue, InterpolationError> {
    Ok(match value {
        RawValue::Scalar(s) => RawValue::Scalar(interpolate(tree, section, key, s)?),
        RawValue::List(items) => RawValue::List(
            items
                .iter()
                .map(|s| interpolate(tree, section, key, s))
                .collect::<Result<_, _>>()?,
        ),
    })
}

enum Found<'a> {
    Str(&'a str),
    List,
}

/// The state of one interpolation: the names being expanded (configobj's backtrail), and the
/// names already expanded. A name resolves the same way wherever it is met (see `resolve`),
/// so each is expanded once: `a = %(b)s%(b)s`, `b = %(c)s%(c)s`, … costs the length of the
/// chain, not two to its power.
#[derive(Default)]
struct Walk {
    backtrail: Vec<String>,
    done: HashMap<String, String>,
}

/// configobj's `recursive_interpolate`. Every lookup starts again from the section that holds
/// the original value (configobj's engine is bound to that section), so a name resolves the
/// same way wherever it is met and the backtrail can be keyed by name alone.
///
/// configobj splices each replacement into the value and searches again after it; the text
/// after a reference is never changed, so building the result left to right gives the same
/// string in time linear in its length.
fn resolve(
    tree: &RawTree,
    section: usize,
    key: &str,
    value: Found<'_>,
    walk: &mut Walk,
) -> Result<String, InterpolationError> {
    if walk.backtrail.iter().any(|k| k == key) {
        return Err(InterpolationError::Loop(key.to_string()));
    }
    let Found::Str(value) = value else {
        return Err(InterpolationError::ListValue(key.to_string()));
    };
    if walk.backtrail.len() >= MAX_DEPTH {
        return Err(InterpolationError::TooDeep);
    }
    walk.backtrail.push(key.to_string());
    let mut out = String::new();
    let mut copied = 0;
    let mut refs = References::new(value);
    while let Some((start, end, name)) = refs.next() {
        out.push_str(value.get(copied..start).unwrap_or(""));
        copied = end;
        match walk.done.get(name) {
            Some(replacement) => out.push_str(replacement),
            None => {
                let replacement = resolve(tree, section, name, fetch(tree, section, name)?, walk)?;
                out.push_str(&replacement);
                walk.done.insert(name.to_string(), replacement);
            }
        }
        if out.len() + value.len().saturating_sub(copied) > MAX_LEN {
            return Err(InterpolationError::TooLong);
        }
    }
    out.push_str(value.get(copied..).unwrap_or(""));
    walk.backtrail.pop();
    Ok(out)
}

/// configobj's `_fetch`: the raw value of `name` as seen from `section`.
fn fetch<'t>(
    tree: &'t RawTree,
    section: usize,
    name: &str,
) -> Result<Found<'t>, InterpolationError> {
    let mut current = section;
    loop {
        let found = tree.entry(current, name).or_else(|| {
            tree.child(current, "DEFAULT")
                .and_then(|d| tree.entry(d, name))
        });
        if let Some(entry) = found {
            return Ok(match &entry.value {
                RawValue::Scalar(s) => Found::Str(s),
                RawValue::List(_) => Found::List,
            });
        }
        match tree.section(current) {
            Some(s) if s.parent != current => current = s.parent,
            _ => return Err(InterpolationError::Missing(name.to_string())),
        }
    }
}

/// The matches of `%\(([^)]*)\)s` in a value, left to right, without overlap, as configobj's
/// repeated `search` finds them: (start, end, name), byte offsets.
struct References<'v> {
    value: &'v str,
    from: usize,
    /// The first `)` at or after some position already looked at: also the first one after
    /// any later position before it, so `%(%(%(…` is not scanned once per `%(`.
    close: Option<usize>,
    /// No `)` at or after this position.
    no_close_from: Option<usize>,
}

impl<'v> References<'v> {
    fn new(value: &'v str) -> References<'v> {
        References {
            value,
            from: 0,
            close: None,
            no_close_from: None,
        }
    }

    fn first_close(&mut self, at: usize) -> Option<usize> {
        if let Some(c) = self.close.filter(|&c| c >= at) {
            return Some(c);
        }
        if self.no_close_from.is_some_and(|n| at >= n) {
            return None;
        }
        match self.value.get(at..).and_then(|r| r.find(')')) {
            Some(i) => {
                self.close = Some(at + i);
                self.close
            }
            None => {
                self.no_close_from = Some(at);
                None
            }
        }
    }

    fn next(&mut self) -> Option<(usize, usize, &'v str)> {
        let value = self.value;
        let bytes = value.as_bytes();
        while self.from < bytes.len() {
            let pct = self.from + value.get(self.from..)?.find('%')?;
            self.from = pct + 1;
            if bytes.get(pct + 1) != Some(&b'(') {
                continue;
            }
            let name_start = pct + 2;
            // No `)` after this `%(` means none after any later one either.
            let close = self.first_close(name_start)?;
            if bytes.get(close + 1) == Some(&b's') {
                self.from = close + 2;
                return Some((pct, close + 2, value.get(name_start..close)?));
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::super::syntax::{parse_bytes, ROOT};
    use super::*;

    fn tree(text: &str) -> RawTree {
        match parse_bytes(text.as_bytes()) {
            Ok(p) if p.errors.is_empty() => p.tree,
            other => panic!("{other:?}"),
        }
    }

    /// Interpolates `key` of the section at `path` (names from the root).
    fn get(t: &RawTree, path: &[&str], key: &str) -> Result<String, InterpolationError> {
        let mut id = ROOT;
        for p in path {
            id = t.child(id, p).unwrap_or(usize::MAX);
        }
        let v = match t.entry(id, key).map(|e| &e.value) {
            Some(RawValue::Scalar(s)) => s.clone(),
            other => panic!("{key}: {other:?}"),
        };
        interpolate(t, id, key, &v)
    }

    // Behaviour checked against configobj 5.0.9.
    #[test]
    fn looks_up_section_default_parents_and_root() {
        let t = tree(
            "\
base = /srv
[Program:p]
name = p
log = %(base)s/%(name)s.log
both = %(name)s-%(name)s
viadefault = %(d)s
[[DEFAULT]]
d = from-default
[[Env]]
X = %(name)s in %(base)s
",
        );
        assert_eq!(get(&t, &["Program:p"], "log"), Ok("/srv/p.log".into()));
        assert_eq!(get(&t, &["Program:p"], "both"), Ok("p-p".into()));
        assert_eq!(
            get(&t, &["Program:p"], "viadefault"),
            Ok("from-default".into())
        );
        assert_eq!(get(&t, &["Program:p", "Env"], "X"), Ok("p in /srv".into()));
    }

    #[test]
    fn recursion_and_loops() {
        let t = tree("a = %(b)s!\nb = %(c)s?\nc = end\nself = %(self)s\nx = %(y)s\ny = %(x)s\n");
        assert_eq!(get(&t, &[], "a"), Ok("end?!".into()));
        assert_eq!(
            get(&t, &[], "self"),
            Err(InterpolationError::Loop("self".into()))
        );
        assert_eq!(get(&t, &[], "x"), Err(InterpolationError::Loop("x".into())));
        assert_eq!(
            get(&t, &[], "x").map_err(|e| e.to_string()),
            Err("interpolation loop detected in value \"x\".".into())
        );
    }

    #[test]
    fn nested_lookups_start_from_the_original_section() {
        // b is found at the root, but its %(n)s is looked up from [s] again (configobj's engine
        // is bound to the section of the value being read).
        let t = tree("n = root\nb = %(n)s\n[s]\nn = inner\nv = %(b)s\n");
        assert_eq!(get(&t, &["s"], "v"), Ok("inner".into()));
        assert_eq!(get(&t, &[], "b"), Ok("root".into()));
    }

    #[test]
    fn missing_names_and_literal_percent() {
        let t = tree("a = %(nope)s\nb = 100% sure %s %(x\nc = %(l)s\nl = x, y\nd = 50%%\n");
        assert_eq!(
            get(&t, &[], "a").map_err(|e| e.to_string()),
            Err("missing option \"nope\" in interpolation.".into())
        );
        assert_eq!(get(&t, &[], "b"), Ok("100% sure %s %(x".into()));
        assert_eq!(
            get(&t, &[], "c"),
            Err(InterpolationError::ListValue("l".into()))
        );
        assert_eq!(get(&t, &[], "d"), Ok("50%%".into()));
    }

    #[test]
    fn replacement_text_is_not_rescanned() {
        // %(p)s gives "%(q)s" once interpolated... which is interpolated recursively first, so
        // build a '%(' only by concatenation: the new text after a replacement is not searched
        // again from before its end.
        let t = tree("pct = %\nv = %(pct)s(q)s\nq = Q\n");
        assert_eq!(get(&t, &[], "v"), Ok("%(q)s".into()));
    }

    #[test]
    fn doubling_chains_are_cut_off() {
        let mut text = String::from("k0 = xxxxxxxxxxxxxxxx\n");
        for i in 1..40 {
            text.push_str(&format!("k{i} = %(k{p})s%(k{p})s\n", p = i - 1));
        }
        let t = tree(&text);
        assert_eq!(get(&t, &[], "k39"), Err(InterpolationError::TooLong));
    }
}
