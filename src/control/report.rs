//! How control actions speak: a `Report` sink (the CLI prints timestamped lines, the daemon will
//! log them) and the Python-`repr` process dict that 1.5.13 printed in its human messages.

use crate::proc::ProcInfo;

/// Where an action's messages go. `info` is stdout in the CLI, `error` stderr.
pub trait Report: Sync {
    fn info(&self, msg: &str);
    fn error(&self, msg: &str);
    /// A warning that 1.5.13 printed on stdout; sinks that keep stdout for data send it
    /// elsewhere.
    fn warn(&self, msg: &str) {
        self.info(msg);
    }
    fn debug(&self, _msg: &str) {}
}

/// Python's `repr` of a str: single quotes unless the text has `'` and no `"`.
pub fn py_str(s: &str) -> String {
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
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c == quote => {
                out.push('\\');
                out.push(c);
            }
            c if (c as u32) < 0x20 || c as u32 == 0x7f => {
                out.push_str(&format!("\\x{:02x}", c as u32));
            }
            c => out.push(c),
        }
    }
    out.push(quote);
    out
}

/// The dict usrsvc 1.5.13 printed for a process, byte for byte:
/// `{'pid': 9091, 'cmdline': 'sleep 1000', 'executable': 'sleep', 'args': ['1000'], 'running': True}`.
pub fn process_dict(p: &ProcInfo) -> String {
    let exe = p.cmdline.first().map(String::as_str).unwrap_or("");
    let args: Vec<String> = p.cmdline.iter().skip(1).map(|a| py_str(a)).collect();
    format!(
        "{{'pid': {}, 'cmdline': {}, 'executable': {}, 'args': [{}], 'running': {}}}",
        p.pid,
        py_str(&p.cmdline_string()),
        py_str(exe),
        args.join(", "),
        if p.is_alive() { "True" } else { "False" }
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proc::ProcState;

    #[test]
    fn dict_matches_python_repr() {
        let p = ProcInfo {
            pid: 9091,
            uid: 1000,
            ppid: 1,
            pgrp: 9091,
            session: 9091,
            state: ProcState::Sleeping,
            start_ticks: 1,
            rss_pages: 1,
            cmdline: vec!["sleep".into(), "1000".into()],
        };
        assert_eq!(
            process_dict(&p),
            "{'pid': 9091, 'cmdline': 'sleep 1000', 'executable': 'sleep', 'args': ['1000'], 'running': True}"
        );
        assert_eq!(py_str("it's"), "\"it's\"");
        assert_eq!(py_str("a'b\"c"), "'a\\'b\"c'");
        assert_eq!(py_str("tab\there"), "'tab\\there'");
    }
}
