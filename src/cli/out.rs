//! What the commands print on stdout and stderr, written so that a reader that went away
//! (`usrsvc history | head -1`, a closed terminal) never panics the command as `println!`
//! does. A closed pipe on stdout ends the command quietly with exit 141 (128 + SIGPIPE, what a
//! shell shows for a command that SIGPIPE killed); every other write error loses the output
//! and leaves the command's exit code alone.
//!
//! SIGPIPE itself stays ignored (Rust's default) rather than restored: a command in the middle
//! of an action (a start holding the program lock, a nested `usrsvc` of `start all`, a daemon
//! worker) must finish it and its audit record, and the daemon must never die of a pipe.
//! So only the verbs' result output calls [`print`]; progress lines and the output of an
//! action that is not done yet go through [`print_or_drop`] (or `Console`), which carry on.

use std::io::Write;

/// The exit code of a command whose stdout reader went away: 128 + SIGPIPE.
pub const BROKEN_PIPE_EXIT: i32 = 141;

/// Writes `text` to stdout; a closed pipe ends the process with [`BROKEN_PIPE_EXIT`].
pub fn print(text: &str) {
    print_bytes(text.as_bytes());
}

/// [`print`] of bytes that need not be UTF-8 (a program's log).
pub fn print_bytes(bytes: &[u8]) {
    if let Err(e) = write_stdout(bytes) {
        if e.kind() == std::io::ErrorKind::BrokenPipe {
            std::process::exit(BROKEN_PIPE_EXIT);
        }
    }
}

/// [`print`] with a newline.
pub fn println(text: &str) {
    print(&format!("{text}\n"));
}

/// Writes `text` and a newline to stdout, and carries on whatever happens to the write (for
/// output in the middle of an action that must still finish).
pub fn print_or_drop(text: &str) {
    let _ = write_stdout(format!("{text}\n").as_bytes());
}

/// Writes `text` to stderr; a failed write is ignored (there is nowhere left to say so).
pub fn eprint(text: &str) {
    let mut err = std::io::stderr().lock();
    let _ = err.write_all(text.as_bytes()).and_then(|()| err.flush());
}

fn write_stdout(bytes: &[u8]) -> std::io::Result<()> {
    let mut out = std::io::stdout().lock();
    out.write_all(bytes)?;
    out.flush()
}
