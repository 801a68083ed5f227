//! Python's `shlex.split(s)` (POSIX mode, no comments), which usrsvc 1.5.13 uses to turn a
//! `command` into argv and to build the default `proctitle_re`. Reproduced state for state from
//! `shlex.read_token`, including its quirks (a backslash inside double quotes is kept unless it
//! escapes `"` or `\`; `''` is an empty argument; only space, tab, CR and LF separate words).
//!
//! Pure function; knows nothing about programs or shells beyond this one tokenizer.

const WHITESPACE: [char; 4] = [' ', '\t', '\r', '\n'];

#[derive(Clone, Copy, PartialEq, Eq)]
enum State {
    Whitespace,
    Word,
    Quote(char),
    /// After a backslash; remembers the state to return to.
    Escape(Escaped),
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Escaped {
    Word,
    DoubleQuote,
}

/// Python `shlex.split(s)` (posix, `comments=False`). `Err` carries shlex's message:
/// `No closing quotation` or `No escaped character`.
pub fn shlex_split(s: &str) -> Result<Vec<String>, String> {
    let mut chars = s.chars();
    let mut words = Vec::new();
    let mut state = State::Whitespace;
    let mut at_eof = false;
    while !at_eof {
        let mut token = String::new();
        let mut quoted = false;
        loop {
            let next = chars.next();
            match state {
                State::Whitespace => match next {
                    None => {
                        at_eof = true;
                        break;
                    }
                    Some(c) if WHITESPACE.contains(&c) => {
                        if !token.is_empty() || quoted {
                            break;
                        }
                    }
                    Some('\\') => state = State::Escape(Escaped::Word),
                    Some(c @ ('"' | '\'')) => state = State::Quote(c),
                    Some(c) => {
                        token.push(c);
                        state = State::Word;
                    }
                },
                State::Quote(q) => {
                    quoted = true;
                    match next {
                        None => return Err("No closing quotation".to_string()),
                        Some(c) if c == q => state = State::Word,
                        Some('\\') if q == '"' => state = State::Escape(Escaped::DoubleQuote),
                        Some(c) => token.push(c),
                    }
                }
                State::Escape(back) => {
                    let Some(c) = next else {
                        return Err("No escaped character".to_string());
                    };
                    if back == Escaped::DoubleQuote && c != '\\' && c != '"' {
                        token.push('\\');
                    }
                    token.push(c);
                    state = match back {
                        Escaped::Word => State::Word,
                        Escaped::DoubleQuote => State::Quote('"'),
                    };
                }
                State::Word => match next {
                    None => {
                        at_eof = true;
                        break;
                    }
                    Some(c) if WHITESPACE.contains(&c) => {
                        state = State::Whitespace;
                        if !token.is_empty() || quoted {
                            break;
                        }
                    }
                    Some(c @ ('"' | '\'')) => state = State::Quote(c),
                    Some('\\') => state = State::Escape(Escaped::Word),
                    Some(c) => token.push(c),
                },
            }
        }
        if quoted || !token.is_empty() {
            words.push(token);
        }
    }
    Ok(words)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(s: &str) -> Vec<String> {
        match shlex_split(s) {
            Ok(v) => v,
            Err(e) => panic!("{s:?}: {e}"),
        }
    }

    // Expected values from CPython 3.11 `shlex.split(s)`.
    #[test]
    fn splits_like_python() {
        assert_eq!(ok("sleep 1000"), ["sleep", "1000"]);
        assert_eq!(ok("  a\t b\r\nc  "), ["a", "b", "c"]);
        assert_eq!(ok(""), Vec::<String>::new());
        assert_eq!(ok("   "), Vec::<String>::new());
        assert_eq!(ok("a \"b c\" d"), ["a", "b c", "d"]);
        assert_eq!(ok("a 'b \"c\" d'"), ["a", "b \"c\" d"]);
        assert_eq!(ok("x'y'z\"w\""), ["xyzw"]);
        assert_eq!(ok("''"), [""]);
        assert_eq!(ok("a '' b"), ["a", "", "b"]);
        assert_eq!(ok("\"\"x"), ["x"]);
        assert_eq!(ok("a\\ b"), ["a b"]);
        assert_eq!(ok("\\'"), ["'"]);
        assert_eq!(ok("'a\\b'"), ["a\\b"]);
        assert_eq!(ok("\"a\\b\""), ["a\\b"]);
        assert_eq!(ok("\"a\\\"b\""), ["a\"b"]);
        assert_eq!(ok("\"a\\\\b\""), ["a\\b"]);
        assert_eq!(ok("\"a\\$b\""), ["a\\$b"]);
        assert_eq!(ok("a#b # c"), ["a#b", "#", "c"]);
        assert_eq!(
            ok("cd /tmp && ./run.sh -x \"a b\""),
            ["cd", "/tmp", "&&", "./run.sh", "-x", "a b"]
        );
        assert_eq!(ok("a;b|c>d"), ["a;b|c>d"]);
        assert_eq!(ok("é\u{a0}ü"), ["é\u{a0}ü"]);
        assert_eq!(ok("\\\n"), ["\n"]);
    }

    #[test]
    fn errors_like_python() {
        assert_eq!(
            shlex_split("echo 'unterminated"),
            Err("No closing quotation".into())
        );
        assert_eq!(shlex_split("a \"b"), Err("No closing quotation".into()));
        assert_eq!(shlex_split("a\\"), Err("No escaped character".into()));
        assert_eq!(shlex_split("\"a\\"), Err("No escaped character".into()));
    }
}
