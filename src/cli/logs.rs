//! `usrsvc logs NAME [-n N] [-f]`: the last lines of a program's stdout log (and of its stderr
//! log when that is a file of its own, each labelled), and with `-f` what is written to them
//! afterwards, across rotation: a file that shrinks was truncated in place (logrotate
//! `copytruncate`) and is read again from its start; a path that names another file than the
//! one open (rename rotation) is drained and then reopened.
//!
//! Read-only. A log is opened non-blocking and read only when it is a regular file, so a FIFO
//! or device planted at the path is refused at once instead of hanging the command (a symlink
//! the operator made to a log elsewhere is followed: reading is all this does).

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::{out, Console};
use crate::config::Config;
use crate::control::Report;
use crate::exit::ReturnCode;

/// How often `-f` looks for new lines, truncation and rotation.
const POLL: Duration = Duration::from_millis(200);

/// The most of an unfinished line held back for its newline.
const MAX_PARTIAL: usize = 1024 * 1024;

/// One log file being shown.
struct Log {
    /// `stdout` or `stderr` (the label, when there are two).
    stream: &'static str,
    path: PathBuf,
    open: Option<Open>,
    /// Bytes read but not yet shown: the start of a line still being written.
    partial: Vec<u8>,
}

struct Open {
    file: File,
    id: (u64, u64),
    pos: u64,
}

/// Opens `path` for reading when it is a regular file; the error says what it is otherwise.
fn open_regular(path: &Path) -> Result<Open, String> {
    let file = std::fs::OpenOptions::new()
        .read(true)
        // A FIFO or terminal opens at once instead of blocking, and is then refused.
        .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(path)
        .map_err(|e| format!("cannot open {}: {e}", path.display()))?;
    let meta = file
        .metadata()
        .map_err(|e| format!("cannot stat {}: {e}", path.display()))?;
    if !meta.file_type().is_file() {
        return Err(format!(
            "{} is not a regular file; not read",
            path.display()
        ));
    }
    Ok(Open {
        file,
        id: (meta.dev(), meta.ino()),
        pos: 0,
    })
}

/// The offset where the last `n` lines of `file` (of `size` bytes) start.
fn tail_start(file: &mut File, size: u64, n: usize) -> std::io::Result<u64> {
    if n == 0 {
        return Ok(size);
    }
    const BLOCK: u64 = 64 * 1024;
    let mut end = size;
    let mut newlines = 0;
    let mut buf = vec![0u8; BLOCK as usize];
    while end > 0 {
        let start = end.saturating_sub(BLOCK);
        let len = (end - start) as usize;
        file.seek(SeekFrom::Start(start))?;
        file.read_exact(&mut buf[..len])?;
        for i in (0..len).rev() {
            let at = start + i as u64;
            // The newline that ends the last line does not start another one.
            if buf[i] == b'\n' && at + 1 != size {
                newlines += 1;
                if newlines == n {
                    return Ok(at + 1);
                }
            }
        }
        end = start;
    }
    Ok(0)
}

impl Log {
    /// Reads what is new since the last read, handling truncation and rotation; returns the
    /// complete lines. `Err` only when the path now names something that is not a log.
    fn poll(&mut self) -> Result<Vec<u8>, String> {
        let mut shown = Vec::new();
        let now = std::fs::metadata(&self.path).ok();
        let replaced = match (&self.open, &now) {
            (Some(o), Some(m)) => o.id != (m.dev(), m.ino()),
            (None, Some(_)) => true,
            _ => false,
        };
        if replaced {
            // What was written to the old file before it was renamed away comes first.
            self.read_new(&mut shown);
            self.end_partial(&mut shown);
            match open_regular(&self.path) {
                Ok(o) => {
                    if self.open.is_some() {
                        out::eprint(&format!(
                            "usrsvc logs: {} was replaced (rotated); reading the new file\n",
                            self.path.display()
                        ));
                    }
                    self.open = Some(o);
                }
                Err(e) => {
                    self.open = None;
                    return Err(e);
                }
            }
        } else if let Some(o) = &mut self.open {
            let size = o.file.metadata().map(|m| m.len()).unwrap_or(o.pos);
            if size < o.pos {
                out::eprint(&format!(
                    "usrsvc logs: {} was truncated; reading it from its start\n",
                    self.path.display()
                ));
                o.pos = 0;
                self.end_partial(&mut shown);
            }
        }
        self.read_new(&mut shown);
        Ok(shown)
    }

    /// Shows the unfinished last line of a file that is being left (rotated away or cut to
    /// its start), ended by a newline, so it is neither glued to the next file's first line
    /// nor lost.
    fn end_partial(&mut self, shown: &mut Vec<u8>) {
        if !self.partial.is_empty() {
            shown.append(&mut self.partial);
            shown.push(b'\n');
        }
    }

    /// Appends the complete lines written since `pos` to `shown`, reading at most 16 MB;
    /// returns how many bytes it read.
    fn read_new(&mut self, shown: &mut Vec<u8>) -> usize {
        let Some(o) = &mut self.open else {
            return 0;
        };
        let mut data = Vec::new();
        if o.file.seek(SeekFrom::Start(o.pos)).is_ok() {
            if let Ok(n) = (&o.file).take(16 * 1024 * 1024).read_to_end(&mut data) {
                o.pos += n as u64;
            }
        }
        let read = data.len();
        self.partial.extend_from_slice(&data);
        if let Some(end) = self.partial.iter().rposition(|b| *b == b'\n') {
            shown.extend(self.partial.drain(..=end));
        }
        // A line that never ends (a binary or progress stream) is shown as it comes, rather
        // than held in memory, unshown, without bound.
        if self.partial.len() > MAX_PARTIAL {
            shown.append(&mut self.partial);
        }
        read
    }
}

/// `usrsvc logs NAME [-n N] [-f]`.
pub fn logs(config: &Config, name: &str, n: usize, follow: bool, console: &Console) -> ReturnCode {
    let Some(prog) = config.program(name) else {
        console.error(&format!("No such program: {name}"));
        return ReturnCode::ProgramUndefined;
    };
    let mut streams = vec![("stdout", prog.stdout.clone())];
    if prog.stderr != prog.stdout {
        streams.push(("stderr", prog.stderr.clone()));
    }
    // Two names of one file (a symlink): shown once.
    if let [(_, out), (_, err)] = streams.as_slice() {
        let id = |p: &Path| std::fs::metadata(p).ok().map(|m| (m.dev(), m.ino()));
        if id(out).is_some() && id(out) == id(err) {
            streams.pop();
        }
    }
    let labelled = streams.len() > 1;
    let mut logs = Vec::new();
    let mut problems = Vec::new();
    for (stream, path) in streams {
        let mut log = Log {
            stream,
            path,
            open: None,
            partial: Vec::new(),
        };
        match open_regular(&log.path) {
            Ok(mut o) => {
                let size = o.file.metadata().map(|m| m.len()).unwrap_or(0);
                let start = tail_start(&mut o.file, size, n).unwrap_or(size);
                o.pos = start;
                log.open = Some(o);
            }
            Err(e) => problems.push(format!("{name}'s {stream} log: {e}")),
        }
        logs.push(log);
    }
    if logs.iter().all(|l| l.open.is_none()) && !follow {
        for p in &problems {
            console.error(p);
        }
        console.error(&format!(
            "{name} has no log file to show (stdout = {}).",
            prog.stdout.display()
        ));
        return ReturnCode::GeneralFailure;
    }
    for p in &problems {
        console.error(p);
    }
    let mut last_label: Option<&'static str> = None;
    let show = |log: &Log, bytes: &[u8], last: &mut Option<&'static str>| {
        if bytes.is_empty() {
            return;
        }
        if labelled && *last != Some(log.stream) {
            let gap = if last.is_some() { "\n" } else { "" };
            out::print(&format!(
                "{gap}==> {} ({}) <==\n",
                log.path.display(),
                log.stream
            ));
            *last = Some(log.stream);
        }
        out::print_bytes(bytes);
    };
    for log in &mut logs {
        // The tail, 16 MB at a time (`-n` may ask for a whole large file).
        loop {
            let mut shown = Vec::new();
            let done = log.read_new(&mut shown) == 0;
            // Without -f the last line is shown even when it has no newline yet.
            if done && !follow {
                shown.append(&mut log.partial);
            }
            show(log, &shown, &mut last_label);
            if done {
                break;
            }
        }
    }
    if !follow {
        return ReturnCode::Success;
    }
    let mut said: Vec<Option<String>> = vec![None; logs.len()];
    loop {
        std::thread::sleep(POLL);
        for (i, log) in logs.iter_mut().enumerate() {
            match log.poll() {
                Ok(bytes) => {
                    said[i] = None;
                    show(log, &bytes, &mut last_label);
                }
                // Said once per problem: a FIFO put where the log was is refused, not read.
                Err(e) if said[i].as_deref() != Some(e.as_str()) => {
                    console.error(&format!("{name}'s {} log: {e}", log.stream));
                    said[i] = Some(e);
                }
                Err(_) => {}
            }
        }
    }
}
