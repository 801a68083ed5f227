//! Planned restarts: the `restart_every`, `restart_at`, `restart_jitter` and
//! `restart_windows` keys, parsed (`parse.rs`) and turned into "when is this program's next
//! planned restart" (`next`, with the wall-clock work in `wallclock.rs`). Pure: no I/O and no
//! clock reads; every function takes `now` (and the zone, through the `DateTime`s), so the
//! daemon drives it with `Local` and tests with fixed instants in any zone, DST included. It
//! decides nothing else: acting on a restart, and whether the program is up, are the daemon's.
//!
//! The rules:
//! - `restart_every = DURATION`: due when the process has been up that long, counted from its
//!   real start time (`started`), so an adopted process keeps its age.
//! - `restart_at = TIMES`: due at the first listed wall-clock time strictly after `started`.
//!   A process that was already running at an occurrence and not restarted since is overdue:
//!   a missed occurrence is caught up, not skipped, because the point of the key is that the
//!   process gets recycled. With both keys, the earlier due time wins.
//! - `restart_jitter = DURATION`: the restart is put off by an offset in `[0, jitter)`
//!   derived from `seed` (a hash of host and program, `seed()`) and the due time, so hosts
//!   sharing a config spread out, each occurrence lands elsewhere, and the answer is the same
//!   on every call.
//! - `restart_windows = WINDOWS`: planned restarts happen only inside these. A restart that
//!   comes due (after jitter) outside them waits for the next opening plus the jitter offset
//!   modulo the window's length, so the spread survives and the restart stays inside. One
//!   that is overdue fires at once inside a window, and otherwise waits for the next one.
//! - DST: a listed time inside the spring-forward gap happens at the first instant after the
//!   gap; one that exists twice at a fall-back happens once, at the earlier instant. Windows
//!   are judged by the wall clock.
//!
//! Durations in the keys are capped at a century like every duration in a config, so no
//! deadline overflows; a due time that is still unrepresentable means "never" (`None`).

mod parse;

pub use parse::{
    parse_duration, parse_times, parse_windows, At, Days, Times, Window, Windows, DURATION_CAP,
};
