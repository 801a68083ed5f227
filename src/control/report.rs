//! How control actions speak: a `Report` sink (the CLI prints timestamped lines, the daemon will
//! log them) and the Python-`repr` process dict that 1.5.13 printed in its human messages.

pub(crate) use crate::config::python::py_repr as py_str;
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

/// A sink that drops everything: for looking without speaking (health-check targets).
pub struct Silent;

impl Report for Silent {
    fn info(&self, _msg: &str) {}
    fn error(&self, _msg: &str) {}
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
            uids: [1000; 3],
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
