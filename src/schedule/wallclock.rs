//! Local wall-clock arithmetic for the schedule: when a listed time of day happens, and
//! whether and until when an instant is inside the restart windows, in any `TimeZone`
//! (`Local` in the daemon, chrono-tz zones and `FixedOffset` in tests). Pure: every answer is
//! about instants the caller passes.
//!
//! DST is the hard part. A listed time that does not exist that day (the spring-forward gap)
//! happens at the first instant after the gap; one that exists twice (fall-back) happens at
//! the earlier instant only. Windows are judged by the wall-clock reading of an instant, so a
//! window can be entered at a transition instead of at its opening (`01:00-02:30` is entered
//! again when a fall-back at 03:00 turns the clock back to 02:00) and left at one (a gap that
//! jumps past its end). Membership can only change at the instants the wall clock reads a
//! window's opening or closing, or at a transition; `boundaries` lists those, so the window
//! searches are exact without stepping through time.
//!
//! chrono's `TimeZone` has no way to list transitions, so they are found by sampling the
//! offset hourly and bisecting to the second where it changes; two transitions within one
//! hour would be missed, which no zone has.

use std::cmp::min;

use chrono::{
    DateTime, Datelike, Days as DateSteps, FixedOffset, MappedLocalTime, NaiveDate, NaiveDateTime,
    Offset, TimeDelta, TimeZone, Timelike, Utc,
};

use super::parse::{Times, Windows};

/// How far the window searches look from the instant asked about: two weeks and a bit, so a
/// weekly window that a DST gap swallows once (`Sun 02:15-02:45`) is found the week after.
const HORIZON: TimeDelta = TimeDelta::days(16);

/// Offset samples while looking for transitions (see the module doc).
const SAMPLE: i64 = 3_600;

/// The wall-clock reading `minute` minutes after the start of `date` (1440 is the next day's
/// midnight).
fn at_minute(date: NaiveDate, minute: u16) -> Option<NaiveDateTime> {
    date.and_hms_opt(0, 0, 0)?
        .checked_add_signed(TimeDelta::minutes(i64::from(minute)))
}

fn instant(secs: i64) -> Option<DateTime<Utc>> {
    DateTime::from_timestamp(secs, 0)
}

fn offset_at<Tz: TimeZone>(tz: &Tz, secs: i64) -> Option<FixedOffset> {
    Some(
        tz.offset_from_utc_datetime(&instant(secs)?.naive_utc())
            .fix(),
    )
}

/// The wall-clock reading of `t`. chrono's `naive_local` panics at the ends of its range,
/// which an instant from a caller may reach; this is None there instead.
fn local_of<Tz: TimeZone>(t: &DateTime<Tz>) -> Option<NaiveDateTime> {
    t.naive_utc().checked_add_offset(t.offset().fix())
}

fn wall<Tz: TimeZone>(tz: &Tz, t: &DateTime<Utc>) -> Option<NaiveDateTime> {
    local_of(&t.with_timezone(tz))
}

/// Whether the wall clock in `tz` reads a time inside the windows at `t`.
fn inside<Tz: TimeZone>(w: &Windows, tz: &Tz, t: &DateTime<Utc>) -> bool {
    wall(tz, t).is_some_and(|local| contains(w, &local))
}

/// The instant a listed wall-clock time happens: itself; the earlier of two at a fall-back;
/// the end of the gap at a spring-forward.
pub(crate) fn resolve<Tz: TimeZone>(tz: &Tz, local: NaiveDateTime) -> Option<DateTime<Utc>> {
    match tz.from_local_datetime(&local) {
        MappedLocalTime::Single(t) => Some(t.to_utc()),
        MappedLocalTime::Ambiguous(a, b) => Some(min(a.to_utc(), b.to_utc())),
        MappedLocalTime::None => gap_end(tz, local),
    }
}

/// The first instant whose wall clock reads `local` or later, for a `local` inside a gap: the
/// transition that skips it.
fn gap_end<Tz: TimeZone>(tz: &Tz, local: NaiveDateTime) -> Option<DateTime<Utc>> {
    // The first whole minute after the gap. Gaps last an hour, sometimes half an hour, once a
    // whole day (Samoa, 2011): two days bound the search.
    let after = (1..=2 * 24 * 60).find_map(|i| {
        let later = local.checked_add_signed(TimeDelta::minutes(i))?;
        tz.from_local_datetime(&later).earliest()
    })?;
    // The transition lies within the minute before that; bisect to the second rather than
    // assume transitions fall on whole minutes (historic ones do not).
    let mut hi = after.to_utc().timestamp();
    let mut lo = hi - 60;
    while hi - lo > 1 {
        let mid = lo + (hi - lo) / 2;
        if wall(tz, &instant(mid)?)? >= local {
            hi = mid;
        } else {
            lo = mid;
        }
    }
    instant(hi)
}

/// The instants in `(from, to]` at which the zone's offset changes.
fn transitions<Tz: TimeZone>(tz: &Tz, from: i64, to: i64) -> Vec<DateTime<Utc>> {
    let mut found = Vec::new();
    let Some(mut prev_offset) = offset_at(tz, from) else {
        return found;
    };
    let mut prev = from;
    while prev < to {
        let next = prev.saturating_add(SAMPLE).min(to);
        let Some(offset) = offset_at(tz, next) else {
            break;
        };
        if offset != prev_offset {
            let (mut lo, mut hi) = (prev, next);
            while hi - lo > 1 {
                let mid = lo + (hi - lo) / 2;
                if offset_at(tz, mid) == Some(prev_offset) {
                    lo = mid;
                } else {
                    hi = mid;
                }
            }
            found.extend(instant(hi));
        }
        prev = next;
        prev_offset = offset;
    }
    found
}

/// Every instant in `[from, to]` where window membership may change: each instant whose
/// wall clock reads a window's opening or closing, and each transition. Membership is
/// constant from one of these to the next (exclusive), since windows are half-open.
fn boundaries<Tz: TimeZone>(
    w: &Windows,
    tz: &Tz,
    from: &DateTime<Utc>,
    to: &DateTime<Utc>,
) -> Vec<DateTime<Utc>> {
    let mut found = transitions(tz, from.timestamp(), to.timestamp());
    // A day either side: a window opening the day before `from` may close after it, and the
    // wall clock can be a day off UTC.
    let first = wall(tz, from).and_then(|l| l.date().pred_opt());
    let last = wall(tz, to).and_then(|l| l.date().succ_opt());
    let (Some(first), Some(last)) = (first, last) else {
        return found;
    };
    for date in first.iter_days().take_while(|d| *d <= last) {
        for window in w.iter().filter(|w| w.days.contains(date.weekday())) {
            let close_date = if window.crosses_midnight() {
                date.checked_add_days(DateSteps::new(1))
            } else {
                Some(date)
            };
            let opening = at_minute(date, window.start);
            let closing = close_date.and_then(|d| at_minute(d, window.end));
            for local in [opening, closing].into_iter().flatten() {
                // A reading inside a gap has no instant; the transition stands for it.
                match tz.from_local_datetime(&local) {
                    MappedLocalTime::Single(t) => found.push(t.to_utc()),
                    MappedLocalTime::Ambiguous(a, b) => found.extend([a.to_utc(), b.to_utc()]),
                    MappedLocalTime::None => {}
                }
            }
        }
    }
    found.retain(|b| b >= from && b <= to);
    found.sort_unstable();
    found.dedup();
    found
}

/// Whether a wall-clock reading is inside one of the windows. The day part names the day a
/// window opens, so a window crossing midnight is also looked up under yesterday.
fn contains(w: &Windows, local: &NaiveDateTime) -> bool {
    let today = local.weekday();
    let yesterday = today.pred();
    // Whole seconds suffice: window edges are whole minutes and windows are half-open.
    let secs = local.num_seconds_from_midnight();
    w.iter().any(|w| {
        let (start, end) = (u32::from(w.start) * 60, u32::from(w.end) * 60);
        if w.crosses_midnight() {
            (w.days.contains(today) && secs >= start) || (w.days.contains(yesterday) && secs < end)
        } else {
            w.days.contains(today) && start <= secs && secs < end
        }
    })
}

/// Whether `t` is inside the windows (true when there are none).
pub fn in_window<Tz: TimeZone>(w: Option<&Windows>, t: &DateTime<Tz>) -> bool {
    w.is_none_or(|w| local_of(t).is_some_and(|local| contains(w, &local)))
}

/// The first instant `>= t` inside a window: `t` itself when inside. None when no window
/// opens within two weeks, which valid windows always do.
pub fn next_window<Tz: TimeZone>(w: &Windows, t: &DateTime<Tz>) -> Option<DateTime<Tz>> {
    if in_window(Some(w), t) {
        return Some(t.clone());
    }
    let tz = t.timezone();
    let from = t.to_utc();
    let to = from.checked_add_signed(HORIZON)?;
    boundaries(w, &tz, &from, &to)
        .into_iter()
        .find(|b| *b > from && inside(w, &tz, b))
        .map(|b| b.with_timezone(&tz))
}

/// When the window containing `t` closes: the first instant after `t` outside every window.
/// None when `t` is outside the windows, or when they stay open for the next two weeks
/// (`00:00-24:00`: they never close).
pub fn window_end<Tz: TimeZone>(w: &Windows, t: &DateTime<Tz>) -> Option<DateTime<Tz>> {
    if !in_window(Some(w), t) {
        return None;
    }
    let tz = t.timezone();
    let from = t.to_utc();
    let to = from.checked_add_signed(HORIZON)?;
    boundaries(w, &tz, &from, &to)
        .into_iter()
        .find(|b| *b > from && !inside(w, &tz, b))
        .map(|b| b.with_timezone(&tz))
}

/// When the window containing `t` opened: the earliest instant from which the windows have
/// been open without a break up to `t`. None when `t` is outside the windows, or when they
/// have been open for the past two weeks.
pub fn window_start<Tz: TimeZone>(w: &Windows, t: &DateTime<Tz>) -> Option<DateTime<Tz>> {
    if !in_window(Some(w), t) {
        return None;
    }
    let tz = t.timezone();
    let to = t.to_utc();
    let from = to.checked_sub_signed(HORIZON)?;
    let found = boundaries(w, &tz, &from, &to);
    // Walk back over the stretches that are inside; the opening is where the one before a
    // stretch is outside.
    let mut stretches = found.iter().rev();
    let mut start = stretches.next()?;
    for before in stretches {
        if !inside(w, &tz, before) {
            return Some(start.with_timezone(&tz));
        }
        start = before;
    }
    None
}

/// The first occurrence of any of `times` strictly after `after`, judged on the wall clock of
/// `after`'s zone.
pub(crate) fn first_after<Tz: TimeZone>(
    times: &Times,
    after: &DateTime<Tz>,
) -> Option<DateTime<Utc>> {
    let tz = after.timezone();
    let after_utc = after.to_utc();
    // From the day before (its occurrence may be pushed past midnight by a gap) to a week
    // after: every listed time recurs at least weekly, and every occurrence has an instant.
    let first = local_of(after)?.date().pred_opt()?;
    first
        .iter_days()
        .take(9)
        .flat_map(|date| {
            times
                .iter()
                .filter(move |at| at.days.contains(date.weekday()))
                .filter_map(move |at| at_minute(date, at.minute))
        })
        .filter_map(|local| resolve(&tz, local))
        .filter(|t| *t > after_utc)
        .min()
}
