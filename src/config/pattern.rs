//! A tiny backtracking matcher with Python `re` semantics, used only to reproduce the handful of
//! fixed regular expressions that configobj 5.0.9 parses its files with. Each pattern is built
//! by hand from nodes that mirror the original regex one to one, so the two can be compared side
//! by side; the matcher explores alternatives in the same order as Python's engine (leftmost
//! alternative first, greedy before lazy) and so returns the same groups, including in the odd
//! corners (lazy keys, items that re-split, empty last list items).
//!
//! It must not grow into a general regex engine: no parser, no backreferences, no flags. It never
//! panics and never recurses, and it remembers every (instruction, position) it has already tried
//! so no input can make it take exponential time.

use super::python::py_isspace;

/// A set of characters one instruction accepts. `\s` and `.` follow Python's `str` semantics.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Class {
    Lit(char),
    /// `.`: anything but a newline.
    Any,
    /// `\s`
    Ws,
    /// `\S`
    NotWs,
    /// `[^...]`
    NoneOf(&'static str),
    /// `[^...\s]`
    NoneOfNorWs(&'static str),
}

impl Class {
    fn accepts(self, c: char) -> bool {
        match self {
            Class::Lit(l) => c == l,
            Class::Any => c != '\n',
            Class::Ws => py_isspace(c),
            Class::NotWs => !py_isspace(c),
            Class::NoneOf(set) => !set.contains(c),
            Class::NoneOfNorWs(set) => !set.contains(c) && !py_isspace(c),
        }
    }
}

/// One node of a hand-built pattern.
#[derive(Debug, Clone)]
pub(crate) enum Node {
    Char(Class),
    Seq(Vec<Node>),
    Alt(Vec<Node>),
    Repeat {
        node: Box<Node>,
        min: u32,
        max: Option<u32>,
        greedy: bool,
    },
    Group(usize, Box<Node>),
    /// `(?<!c)`
    NotAfter(char),
    /// `$` (the inputs given to these patterns never contain a newline, so plain end of input).
    End,
}

pub(crate) fn ch(c: char) -> Node {
    Node::Char(Class::Lit(c))
}
pub(crate) fn cls(c: Class) -> Node {
    Node::Char(c)
}
pub(crate) fn lits(s: &str) -> Node {
    Node::Seq(s.chars().map(ch).collect())
}
pub(crate) fn seq(nodes: Vec<Node>) -> Node {
    Node::Seq(nodes)
}
pub(crate) fn alt(nodes: Vec<Node>) -> Node {
    Node::Alt(nodes)
}
/// `X*`
pub(crate) fn star(n: Node) -> Node {
    Node::Repeat {
        node: Box::new(n),
        min: 0,
        max: None,
        greedy: true,
    }
}
/// `X*?`
pub(crate) fn lazy_star(n: Node) -> Node {
    Node::Repeat {
        node: Box::new(n),
        min: 0,
        max: None,
        greedy: false,
    }
}
/// `X+`
pub(crate) fn plus(n: Node) -> Node {
    Node::Repeat {
        node: Box::new(n),
        min: 1,
        max: None,
        greedy: true,
    }
}
/// `X?`
pub(crate) fn opt(n: Node) -> Node {
    Node::Repeat {
        node: Box::new(n),
        min: 0,
        max: Some(1),
        greedy: true,
    }
}
pub(crate) fn group(i: usize, n: Node) -> Node {
    Node::Group(i, Box::new(n))
}

#[derive(Debug, Clone, Copy)]
enum Inst {
    Char(Class),
    /// Try the first target, and on failure the second.
    Split(usize, usize),
    Jmp(usize),
    Save(usize),
    NotAfter(char),
    End,
    Match,
}

/// A compiled pattern. Groups are numbered from 0 by the builder (Python's group 1 is our 0).
#[derive(Debug, Clone)]
pub(crate) struct Pattern {
    prog: Vec<Inst>,
    ngroups: usize,
}

/// The groups of a successful match as char-index ranges; `None` for a group that did not take
/// part, as Python's `None`.
#[derive(Debug, Clone)]
pub(crate) struct Captures {
    slots: Vec<Option<usize>>,
    end: usize,
}

impl Captures {
    pub(crate) fn get(&self, i: usize) -> Option<(usize, usize)> {
        let s = (*self.slots.get(2 * i)?)?;
        let e = (*self.slots.get(2 * i + 1)?)?;
        Some((s, e))
    }
    /// The group's text, taken from the same chars the match ran on.
    pub(crate) fn text(&self, chars: &[char], i: usize) -> Option<String> {
        let (s, e) = self.get(i)?;
        chars.get(s..e).map(|c| c.iter().collect())
    }
    /// Where the whole match ended.
    pub(crate) fn end(&self) -> usize {
        self.end
    }
}

impl Pattern {
    pub(crate) fn new(root: &Node) -> Pattern {
        let mut prog = Vec::new();
        let mut ngroups = 0;
        compile(root, &mut prog, &mut ngroups);
        prog.push(Inst::Match);
        Pattern { prog, ngroups }
    }

    /// Python `pattern.match(s, pos)`: anchored at `start`.
    pub(crate) fn match_at(&self, input: &[char], start: usize) -> Option<Captures> {
        self.match_with(input, start, &mut Memo::new(self, input))
    }

    /// `match_at` with the caller's `memo`, which must have been made for this pattern and
    /// this input. States a failed match proved hopeless stay marked, so later calls over the
    /// same input skip them; a successful match clears what it marked.
    fn match_with(&self, input: &[char], start: usize, memo: &mut Memo) -> Option<Captures> {
        if start > input.len() {
            return None;
        }
        let mut slots: Vec<Option<usize>> = vec![None; 2 * self.ngroups];
        enum Job {
            Run(usize, usize),
            Restore(usize, Option<usize>),
        }
        let mut stack = vec![Job::Run(0, start)];
        while let Some(job) = stack.pop() {
            let (mut pc, mut pos) = match job {
                Job::Restore(slot, old) => {
                    if let Some(s) = slots.get_mut(slot) {
                        *s = old;
                    }
                    continue;
                }
                Job::Run(pc, pos) => (pc, pos),
            };
            loop {
                // Tried before from here with a higher priority, and that failed.
                if !memo.visit(pc, pos) {
                    break;
                }
                let Some(inst) = self.prog.get(pc) else { break };
                match *inst {
                    Inst::Char(class) => match input.get(pos) {
                        Some(&c) if class.accepts(c) => {
                            pc += 1;
                            pos += 1;
                        }
                        _ => break,
                    },
                    Inst::Split(first, second) => {
                        stack.push(Job::Run(second, pos));
                        pc = first;
                    }
                    Inst::Jmp(to) => pc = to,
                    Inst::Save(slot) => {
                        if let Some(s) = slots.get_mut(slot) {
                            stack.push(Job::Restore(slot, *s));
                            *s = Some(pos);
                        }
                        pc += 1;
                    }
                    Inst::NotAfter(c) => {
                        if pos > 0 && input.get(pos - 1) == Some(&c) {
                            break;
                        }
                        pc += 1;
                    }
                    Inst::End => {
                        if pos != input.len() {
                            break;
                        }
                        pc += 1;
                    }
                    Inst::Match => {
                        // Some marked states lie on the way to this match and did not fail.
                        memo.clear();
                        return Some(Captures { slots, end: pos });
                    }
                }
            }
        }
        None
    }

    /// Python `pattern.findall(s)` for a pattern with one group: that group of every
    /// non-overlapping match, scanning left to right. (None of the patterns given to it can
    /// match the empty string, so there is no empty-match stepping to reproduce.)
    ///
    /// One memo serves every attempt, so the whole scan costs time linear in the input (a
    /// fresh memo per attempt made a megabyte-long list take half a minute).
    pub(crate) fn findall_group0(&self, input: &[char]) -> Vec<String> {
        let mut memo = Memo::new(self, input);
        let mut out = Vec::new();
        let mut pos = 0;
        while pos <= input.len() {
            match self.match_with(input, pos, &mut memo) {
                Some(caps) if caps.end() > pos => {
                    out.push(caps.text(input, 0).unwrap_or_default());
                    pos = caps.end();
                }
                _ => pos += 1,
            }
        }
        out
    }
}

/// Which (instruction, position) states a match has entered: one bit each, laid out position
/// by position so a match touches only the memory near the positions it looks at (the zeroed
/// allocation is mapped lazily by the system), plus the words it set, so clearing costs what
/// marking cost, not the size of the input.
struct Memo {
    bits: Vec<u64>,
    stride: usize,
    touched: Vec<usize>,
}

impl Memo {
    fn new(pattern: &Pattern, input: &[char]) -> Memo {
        let stride = pattern.prog.len();
        let cells = stride.saturating_mul(input.len().saturating_add(1));
        Memo {
            bits: vec![0u64; cells.div_ceil(64)],
            stride,
            touched: Vec::new(),
        }
    }

    /// Marks the state; false when it was marked already (or lies outside the input).
    fn visit(&mut self, pc: usize, pos: usize) -> bool {
        if pc >= self.stride {
            return false;
        }
        let idx = pos.saturating_mul(self.stride).saturating_add(pc);
        let bit = 1u64 << (idx % 64);
        match self.bits.get_mut(idx / 64) {
            Some(word) if *word & bit != 0 => false,
            Some(word) => {
                if *word == 0 {
                    self.touched.push(idx / 64);
                }
                *word |= bit;
                true
            }
            None => false,
        }
    }

    fn clear(&mut self) {
        for w in self.touched.drain(..) {
            if let Some(word) = self.bits.get_mut(w) {
                *word = 0;
            }
        }
    }
}

fn compile(node: &Node, prog: &mut Vec<Inst>, ngroups: &mut usize) {
    match node {
        Node::Char(c) => prog.push(Inst::Char(*c)),
        Node::Seq(nodes) => {
            for n in nodes {
                compile(n, prog, ngroups);
            }
        }
        Node::Alt(nodes) => {
            // Split(a, next) ; a ; Jmp end ; next: Split(b, next2) ; b ; Jmp end ; ... ; last
            let mut jumps = Vec::new();
            let count = nodes.len();
            for (i, n) in nodes.iter().enumerate() {
                if i + 1 < count {
                    let split = prog.len();
                    prog.push(Inst::Split(split + 1, 0));
                    compile(n, prog, ngroups);
                    jumps.push(prog.len());
                    prog.push(Inst::Jmp(0));
                    let next = prog.len();
                    if let Some(Inst::Split(_, second)) = prog.get_mut(split) {
                        *second = next;
                    }
                } else {
                    compile(n, prog, ngroups);
                }
            }
            let end = prog.len();
            for j in jumps {
                if let Some(Inst::Jmp(to)) = prog.get_mut(j) {
                    *to = end;
                }
            }
        }
        Node::Repeat {
            node,
            min,
            max,
            greedy,
        } => {
            for _ in 0..*min {
                compile(node, prog, ngroups);
            }
            let split_to = |prog: &mut Vec<Inst>, at: usize, body: usize, out: usize| {
                if let Some(inst) = prog.get_mut(at) {
                    *inst = if *greedy {
                        Inst::Split(body, out)
                    } else {
                        Inst::Split(out, body)
                    };
                }
            };
            match max {
                None => {
                    let split = prog.len();
                    prog.push(Inst::Split(0, 0));
                    compile(node, prog, ngroups);
                    prog.push(Inst::Jmp(split));
                    let out = prog.len();
                    split_to(prog, split, split + 1, out);
                }
                Some(max) => {
                    let mut splits = Vec::new();
                    for _ in *min..*max {
                        let split = prog.len();
                        prog.push(Inst::Split(0, 0));
                        compile(node, prog, ngroups);
                        splits.push(split);
                    }
                    let out = prog.len();
                    for split in splits {
                        split_to(prog, split, split + 1, out);
                    }
                }
            }
        }
        Node::Group(i, inner) => {
            *ngroups = (*ngroups).max(i + 1);
            prog.push(Inst::Save(2 * i));
            compile(inner, prog, ngroups);
            prog.push(Inst::Save(2 * i + 1));
        }
        Node::NotAfter(c) => prog.push(Inst::NotAfter(*c)),
        Node::End => prog.push(Inst::End),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chars(s: &str) -> Vec<char> {
        s.chars().collect()
    }

    #[test]
    fn lazy_and_greedy_pick_pythons_groups() {
        // ^(a*?)(a*)$ on "aaa": lazy gives everything away.
        let p = Pattern::new(&seq(vec![
            group(0, lazy_star(ch('a'))),
            group(1, star(ch('a'))),
            Node::End,
        ]));
        let s = chars("aaa");
        let c = p.match_at(&s, 0).expect("match");
        assert_eq!(c.text(&s, 0).as_deref(), Some(""));
        assert_eq!(c.text(&s, 1).as_deref(), Some("aaa"));
    }

    #[test]
    fn alternation_is_ordered_and_backtracks() {
        // ^(ab|a)(b?)c$ on "abc": first alternative wins.
        let p = Pattern::new(&seq(vec![
            group(0, alt(vec![lits("ab"), lits("a")])),
            group(1, opt(ch('b'))),
            ch('c'),
            Node::End,
        ]));
        let s = chars("abc");
        let c = p.match_at(&s, 0).expect("match");
        assert_eq!(c.text(&s, 0).as_deref(), Some("ab"));
        assert_eq!(c.text(&s, 1).as_deref(), Some(""));
        // an optional group that did not take part is None
        let p = Pattern::new(&seq(vec![opt(group(0, ch('x'))), ch('y'), Node::End]));
        let s = chars("y");
        let c = p.match_at(&s, 0).expect("match");
        assert_eq!(c.get(0), None);
    }

    #[test]
    fn negative_lookbehind() {
        let p = Pattern::new(&seq(vec![star(ch(',')), Node::NotAfter(','), Node::End]));
        assert!(p.match_at(&chars(""), 0).is_some());
        assert!(p.match_at(&chars(",,"), 0).is_none());
    }

    #[test]
    fn pathological_input_is_fast() {
        // (a*)*b on a long run of a's: exponential for a naive backtracker.
        let p = Pattern::new(&seq(vec![star(plus(ch('a'))), ch('b')]));
        let s: Vec<char> = std::iter::repeat_n('a', 5000).collect();
        assert!(p.match_at(&s, 0).is_none());
    }
}
