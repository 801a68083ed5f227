//! The daemon's log: whole lines written with one `write` to file descriptor 1 (info) or 2
//! (errors), so lines of the daemon, of its start workers and of a crash interleave only
//! between lines. Human lines look like every usrsvc line (`[ctime] - text`); `--log-format
//! json` writes one object per line with an RFC 3339 time. Where fds 1 and 2 point is decided
//! by `instance::open_logs` (the real descriptors, so a panic's output lands there too).

use std::os::fd::{AsFd, BorrowedFd};

use serde_json::json;

use crate::control::Report;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Human,
    Json,
}

impl Format {
    pub fn parse(word: &str) -> Option<Format> {
        match word {
            "human" | "text" => Some(Format::Human),
            "json" => Some(Format::Json),
            _ => None,
        }
    }

    pub fn word(self) -> &'static str {
        match self {
            Format::Human => "human",
            Format::Json => "json",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Level {
    Debug,
    Info,
    Warn,
    Error,
}

/// The daemon's (or a worker's) log sink.
#[derive(Debug, Clone)]
pub struct Log {
    pub format: Format,
    pub debug: bool,
    /// Set in a worker: every line names the program it works on.
    pub program: Option<String>,
}

impl Log {
    pub fn new(format: Format, debug: bool) -> Log {
        Log {
            format,
            debug,
            program: None,
        }
    }

    /// The same sink, scoped to one program (JSON: a `program` field).
    pub fn for_program(&self, name: &str) -> Log {
        Log {
            program: Some(name.to_string()),
            ..self.clone()
        }
    }

    fn line(&self, level: Level, msg: &str) -> String {
        match self.format {
            Format::Human => {
                let text = match level {
                    Level::Debug => format!("DEBUG: {msg}"),
                    _ => msg.to_string(),
                };
                let mut line = format!("[{}] - {text}", crate::cli::timestamp());
                if !line.ends_with('\n') {
                    line.push('\n');
                }
                line
            }
            Format::Json => {
                let mut obj = json!({
                    "time": chrono::Local::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, false),
                    "level": match level {
                        Level::Debug => "debug",
                        Level::Info => "info",
                        Level::Warn => "warn",
                        Level::Error => "error",
                    },
                    "pid": std::process::id(),
                    "msg": msg.trim_end_matches('\n'),
                });
                if let Some(p) = &self.program {
                    obj["program"] = json!(p);
                }
                let mut line = obj.to_string();
                line.push('\n');
                line
            }
        }
    }

    fn emit(&self, level: Level, msg: &str) {
        let line = self.line(level, msg);
        // A log that cannot be written (disk full, closed terminal) must not stop supervision.
        if level == Level::Info {
            write_all(std::io::stdout().as_fd(), line.as_bytes());
        } else {
            write_all(std::io::stderr().as_fd(), line.as_bytes());
        }
    }
}

/// One `write` for the whole line where the kernel allows it; partial writes are continued.
fn write_all(fd: BorrowedFd<'_>, mut bytes: &[u8]) {
    while !bytes.is_empty() {
        match rustix::io::write(fd, bytes) {
            Ok(0) | Err(_) => return,
            Ok(n) => bytes = &bytes[n..],
        }
    }
}

impl Report for Log {
    fn info(&self, msg: &str) {
        self.emit(Level::Info, msg);
    }
    fn error(&self, msg: &str) {
        self.emit(Level::Error, msg);
    }
    fn warn(&self, msg: &str) {
        self.emit(Level::Warn, msg);
    }
    fn debug(&self, msg: &str) {
        if self.debug {
            self.emit(Level::Debug, msg);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_lines_are_one_object_with_time_level_and_program() {
        let log = Log::new(Format::Json, false).for_program("web");
        let line = log.line(Level::Error, "went away\n");
        assert!(line.ends_with('\n') && line.matches('\n').count() == 1);
        let v: serde_json::Value = serde_json::from_str(&line).expect("json");
        assert_eq!(v["level"], "error");
        assert_eq!(v["program"], "web");
        assert_eq!(v["msg"], "went away");
        let time = v["time"].as_str().expect("time");
        assert!(chrono::DateTime::parse_from_rfc3339(time).is_ok(), "{time}");
    }

    #[test]
    fn human_lines_carry_the_ctime_prefix() {
        let line = Log::new(Format::Human, true).line(Level::Debug, "x");
        assert!(
            line.starts_with('[') && line.ends_with("] - DEBUG: x\n"),
            "{line}"
        );
    }
}
