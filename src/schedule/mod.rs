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
mod wallclock;

#[cfg(test)]
mod tests;

use std::time::Duration;

use chrono::{DateTime, TimeDelta, TimeZone, Utc};
use serde::{Deserialize, Serialize};

pub use parse::{
    parse_duration, parse_times, parse_windows, At, Days, Times, Window, Windows, DURATION_CAP,
};
pub use wallclock::{in_window, next_window, window_end, window_start};

/// One program's planned restarts. Empty (the default) when neither `restart_every` nor
/// `restart_at` is given; `restart_jitter` and `restart_windows` alone do nothing (they may
/// come from `DefaultSettings` for programs that restart on no plan).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Schedule {
    pub every: Option<Duration>,
    pub at: Option<Times>,
    pub jitter: Duration,
    pub windows: Option<Windows>,
}

impl Schedule {
    pub fn is_empty(&self) -> bool {
        self.every.is_none() && self.at.is_none()
    }

    /// The schedule from the four keys' raw values (a configobj list joined with `", "`).
    /// An error names the key it is about, for the caller to place at its file:line.
    pub fn from_keys(
        restart_every: Option<&str>,
        restart_at: Option<&str>,
        restart_jitter: Option<&str>,
        restart_windows: Option<&str>,
    ) -> Result<Schedule, (&'static str, String)> {
        let every = restart_every
            .map(|v| parse_duration(v).map_err(|e| ("restart_every", e)))
            .transpose()?;
        // A zero interval would restart the program in a loop, which no one means.
        if every.is_some_and(|e| e.is_zero()) {
            return Err(("restart_every", "must be longer than 0".to_string()));
        }
        Ok(Schedule {
            every,
            at: restart_at
                .map(|v| parse_times(v).map_err(|e| ("restart_at", e)))
                .transpose()?,
            jitter: restart_jitter
                .map(|v| parse_duration(v).map_err(|e| ("restart_jitter", e)))
                .transpose()?
                .unwrap_or(Duration::ZERO),
            windows: restart_windows
                .map(|v| parse_windows(v).map_err(|e| ("restart_windows", e)))
                .transpose()?,
        })
    }
}

/// The next planned restart.
#[derive(Clone, Debug, PartialEq)]
pub struct Next<Tz: TimeZone> {
    /// When the restart became or becomes due, before jitter and windows.
    pub due: DateTime<Tz>,
    /// When to do it: `>= now`, after the jitter, inside a window. The daemon restarts once
    /// `now >= fire`; the answer does not move as `now` advances towards it.
    pub fire: DateTime<Tz>,
    /// True when the windows put `fire` later than the jittered due time (or `now`).
    pub waits_for_window: bool,
}

/// The next planned restart of a process that started at `started`, seen at `now`, with
/// wall-clock times judged in `now`'s zone. None when the schedule is empty, or when no
/// restart can be placed (a due time beyond what a date can hold, windows that never open).
pub fn next<Tz: TimeZone>(
    s: &Schedule,
    started: DateTime<Tz>,
    now: DateTime<Tz>,
    seed: u64,
) -> Option<Next<Tz>> {
    let tz = now.timezone();
    let started = started.with_timezone(&tz);
    let by_every = s
        .every
        .and_then(|e| TimeDelta::from_std(e).ok())
        .and_then(|e| started.to_utc().checked_add_signed(e));
    let by_at =
        s.at.as_ref()
            .and_then(|at| wallclock::first_after(at, &started));
    let due = match (by_every, by_at) {
        (Some(a), Some(b)) => a.min(b),
        (a, b) => a.or(b)?,
    };
    let offset = jitter_offset(seed, due.timestamp(), s.jitter);
    let candidate = due.checked_add_signed(TimeDelta::from_std(offset).ok()?)?;
    let now_utc = now.to_utc();
    let unconstrained = candidate.max(now_utc);
    let fire = match &s.windows {
        None => unconstrained,
        Some(w) => fire_in_windows(w, &tz, candidate, now_utc, offset)?,
    };
    Some(Next {
        due: due.with_timezone(&tz),
        fire: fire.with_timezone(&tz),
        waits_for_window: fire != unconstrained,
    })
}

/// Where the windows put a restart whose jittered due time is `candidate`.
fn fire_in_windows<Tz: TimeZone>(
    w: &Windows,
    tz: &Tz,
    candidate: DateTime<Utc>,
    now: DateTime<Utc>,
    offset: Duration,
) -> Option<DateTime<Utc>> {
    let local = |t: DateTime<Utc>| t.with_timezone(tz);
    let planned = if in_window(Some(w), &local(candidate)) {
        candidate
    } else {
        placed(w, &next_window(w, &local(candidate))?, offset)?
    };
    if planned >= now {
        return Some(planned);
    }
    // Overdue. Whatever is decided must not change as `now` moves on, or the daemon would
    // see a different answer at each tick: so a later window gets the same placement a
    // first one would, and the restart is done at once only when that point has passed.
    if !in_window(Some(w), &local(now)) {
        return placed(w, &next_window(w, &local(now))?, offset);
    }
    match window_start(w, &local(now)) {
        Some(opened) if opened.to_utc() > planned => Some(placed(w, &opened, offset)?.max(now)),
        // Still the window `planned` was in (or one open for weeks): it is just late.
        _ => Some(now),
    }
}

/// A restart placed in the window opening at `open`: `offset` into it, modulo its length so
/// it stays inside.
fn placed<Tz: TimeZone>(
    w: &Windows,
    open: &DateTime<Tz>,
    offset: Duration,
) -> Option<DateTime<Utc>> {
    let open_utc = open.to_utc();
    let Some(end) = window_end(w, open) else {
        // Open for the next two weeks: the offset alone spreads the restarts.
        return open_utc.checked_add_signed(TimeDelta::from_std(offset).ok()?);
    };
    let length = (end.to_utc() - open_utc).num_nanoseconds()?;
    let offset = i64::try_from(offset.as_nanos()).ok()?;
    if length <= 0 {
        return Some(open_utc);
    }
    open_utc.checked_add_signed(TimeDelta::nanoseconds(offset % length))
}

/// The jitter offset in `[0, jitter)` for the occurrence due at `due_secs`: a splitmix64 mix
/// of both, so it is stable for one occurrence, differs between occurrences and between
/// seeds, and needs no random number generator.
pub fn jitter_offset(seed: u64, due_secs: i64, jitter: Duration) -> Duration {
    let bound = u64::try_from(jitter.min(DURATION_CAP).as_nanos()).unwrap_or(u64::MAX);
    if bound == 0 {
        return Duration::ZERO;
    }
    let due = u64::from_ne_bytes(due_secs.to_ne_bytes());
    Duration::from_nanos(splitmix64(seed ^ splitmix64(due)) % bound)
}

fn splitmix64(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// A stable 64-bit FNV-1a hash of `parts` for `next`'s seed (host name, program name): the
/// same on every run and every build, unlike std's hasher.
pub fn seed(parts: &[&str]) -> u64 {
    const PRIME: u64 = 0x0100_0000_01b3;
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for (i, part) in parts.iter().enumerate() {
        // A separator byte that UTF-8 never contains, so ["ab", "c"] and ["a", "bc"] differ.
        let separator: &[u8] = if i > 0 { &[0xff] } else { &[] };
        for &b in separator.iter().chain(part.as_bytes()) {
            hash ^= u64::from(b);
            hash = hash.wrapping_mul(PRIME);
        }
    }
    hash
}
