//! The text of the schedule keys: durations (`90`, `0.5`, `15m`, `1h30m`, `3d`), day specs
//! (`Mon`, `Mon-Fri`, `Fri-Mon`, full or 3-letter English names, any case), times of day
//! (`Sun 03:30, Mon-Fri 02:00`) and windows (`Mon-Fri 01:00-05:00, 22:00-02:00`). Parsing
//! only: what the values mean in time is `wallclock.rs`'s. Every error names the token it
//! could not read and says what would have been accepted, because it ends up in front of a
//! user as a config error.

use std::fmt;
use std::time::Duration;

use chrono::Weekday;
use serde::{Deserialize, Serialize};

/// The longest duration a config may ask for: the same cap as every other duration in a
/// config (`control::seconds`), so a typo like `999999999d` means "practically never" and no
/// deadline computed from it can overflow.
pub const DURATION_CAP: Duration = Duration::from_secs(100 * 365 * 86_400);

const DURATION_EXPECTED: &str =
    "expected seconds or a number with s, m, h or d, like 90, 0.5, 15m, 12h, 3d or 1h30m";

/// Minutes in a day: the value of `24:00`, which only a window's end may use.
pub(crate) const DAY_MINUTES: u16 = 24 * 60;

/// `90`, `90s`, `0.5`, `15m`, `12h`, `3d`, or units combined largest first (`1d12h`, `1h30m`,
/// `1h 30m`). Larger values are capped at `DURATION_CAP`.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    if text.is_empty() {
        return Err(format!("empty duration: {DURATION_EXPECTED}"));
    }
    let bad = || format!("bad duration '{text}': {DURATION_EXPECTED}");
    let mut rest = text;
    let mut total: u128 = 0; // nanoseconds; u128 holds any cap overshoot without overflow
    let mut last_unit: Option<u128> = None;
    while !rest.is_empty() {
        let number_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let (number, after) = rest.split_at(number_len);
        let after = after.trim_start();
        let (unit, after) = match after.chars().next() {
            None => (None, after),
            Some(c) => (Some(c), &after[c.len_utf8()..]),
        };
        let unit_nanos: u128 = match unit {
            // A bare number is seconds, and only on its own: `1h30` is more likely a
            // mistake than "one hour and thirty seconds".
            None if last_unit.is_none() => 1_000_000_000,
            Some('s') => 1_000_000_000,
            Some('m') => 60 * 1_000_000_000,
            Some('h') => 3_600 * 1_000_000_000,
            Some('d') => 86_400 * 1_000_000_000,
            _ => return Err(bad()),
        };
        // Largest unit first, each once: `30m1h` or `1m1m` is a typo, not a sum to guess.
        if last_unit.is_some_and(|last| unit_nanos >= last) {
            return Err(bad());
        }
        last_unit = Some(unit_nanos);
        total = total.saturating_add(scaled(number, unit_nanos).ok_or_else(bad)?);
        rest = after.trim_start();
    }
    let cap = DURATION_CAP.as_nanos();
    let nanos = u64::try_from(total.min(cap)).unwrap_or(u64::MAX);
    Ok(Duration::from_nanos(nanos))
}

/// `number` (digits, optionally a fraction) times `unit` nanoseconds, in nanoseconds,
/// saturating on absurdly long digit strings (the caller caps the total anyway). None when
/// `number` is not a plain decimal.
fn scaled(number: &str, unit: u128) -> Option<u128> {
    let (whole, fraction) = number.split_once('.').unwrap_or((number, ""));
    let digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    if (whole.is_empty() && fraction.is_empty()) || !digits(whole) || !digits(fraction) {
        return None;
    }
    let mut nanos: u128 = 0;
    for b in whole.bytes() {
        nanos = nanos
            .saturating_mul(10)
            .saturating_add(u128::from(b - b'0'));
    }
    nanos = nanos.saturating_mul(unit);
    // Digits past the nanosecond no longer matter, and skipping them bounds the loop's scale.
    let mut scale = unit;
    for b in fraction.bytes() {
        scale /= 10;
        if scale == 0 {
            break;
        }
        nanos = nanos.saturating_add(u128::from(b - b'0') * scale);
    }
    Some(nanos)
}

/// A set of weekdays from a day spec: one day or a range, which may wrap past Sunday. A bit
/// per day, Monday = bit 0, so equal sets compare equal however they were written
/// (`Mon-Sun` and `Tue-Mon` are both every day).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Days(u8);

impl Days {
    pub const ALL: Days = Days(0x7f);

    pub fn contains(self, day: Weekday) -> bool {
        self.0 & (1 << day.num_days_from_monday()) != 0
    }

    fn range(first: Weekday, last: Weekday) -> Days {
        let mut mask = 0u8;
        let mut day = first;
        loop {
            mask |= 1 << day.num_days_from_monday();
            if day == last {
                return Days(mask);
            }
            day = day.succ();
        }
    }

    /// The text before the time: `""` (every day), `Mon`, `Mon-Fri`, `Fri-Mon`.
    fn parse(text: &str, item: &str) -> Result<Days, String> {
        let text = text.trim();
        if text.is_empty() {
            return Ok(Days::ALL);
        }
        match text.split_once('-') {
            None => Ok(Days::range(weekday(text)?, weekday(text)?)),
            Some((first, last)) => {
                if first.trim().is_empty() || last.trim().is_empty() {
                    return Err(format!(
                        "bad day range '{text}' in '{item}': expected one day or a range like Mon-Fri"
                    ));
                }
                Ok(Days::range(weekday(first)?, weekday(last)?))
            }
        }
    }
}

impl fmt::Display for Days {
    /// Empty for every day, else the range starting at the day whose predecessor is not in
    /// the set (a parsed set is always one run of consecutive days).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if *self == Days::ALL || self.0 == 0 {
            return Ok(());
        }
        let days = [
            Weekday::Mon,
            Weekday::Tue,
            Weekday::Wed,
            Weekday::Thu,
            Weekday::Fri,
            Weekday::Sat,
            Weekday::Sun,
        ];
        let Some(&first) = days
            .iter()
            .find(|d| self.contains(**d) && !self.contains(d.pred()))
        else {
            return Ok(());
        };
        let mut last = first;
        while self.contains(last.succ()) && last.succ() != first {
            last = last.succ();
        }
        if first == last {
            write!(f, "{first}")
        } else {
            write!(f, "{first}-{last}")
        }
    }
}

fn weekday(name: &str) -> Result<Weekday, String> {
    let name = name.trim();
    let day = match name.to_ascii_lowercase().as_str() {
        "mon" | "monday" => Weekday::Mon,
        "tue" | "tuesday" => Weekday::Tue,
        "wed" | "wednesday" => Weekday::Wed,
        "thu" | "thursday" => Weekday::Thu,
        "fri" | "friday" => Weekday::Fri,
        "sat" | "saturday" => Weekday::Sat,
        "sun" | "sunday" => Weekday::Sun,
        _ => {
            return Err(format!(
                "unknown day '{name}': expected Mon, Tue, Wed, Thu, Fri, Sat, Sun or the full name"
            ))
        }
    };
    Ok(day)
}

/// `H:MM` or `HH:MM` as minutes since midnight; `24:00` (= `DAY_MINUTES`) only when
/// `end_of_window`.
fn minute_of_day(text: &str, end_of_window: bool) -> Result<u16, String> {
    let text = text.trim();
    let expected = if end_of_window {
        "expected HH:MM from 00:00 to 24:00"
    } else {
        "expected HH:MM from 00:00 to 23:59"
    };
    let bad = || format!("bad time '{text}': {expected}");
    let (h, m) = text.split_once(':').ok_or_else(bad)?;
    let number = |s: &str, len: std::ops::RangeInclusive<usize>| {
        if len.contains(&s.len()) && s.bytes().all(|b| b.is_ascii_digit()) {
            s.parse::<u16>().ok()
        } else {
            None
        }
    };
    let (h, m) = (
        number(h, 1..=2).ok_or_else(bad)?,
        number(m, 2..=2).ok_or_else(bad)?,
    );
    if h == 24 && m == 0 {
        return if end_of_window {
            Ok(DAY_MINUTES)
        } else {
            Err(format!(
                "bad time '{text}': 24:00 is only allowed as the end of a window; use 00:00"
            ))
        };
    }
    if h > 23 || m > 59 {
        return Err(bad());
    }
    Ok(h * 60 + m)
}

/// Splits a list item into its day spec and its time part, at the first digit: day names
/// have none, times start with one, and spaces around either are then harmless.
fn split_item(item: &str) -> Result<(&str, &str), String> {
    let at = item
        .find(|c: char| c.is_ascii_digit())
        .ok_or_else(|| format!("'{item}': missing a time (HH:MM)"))?;
    Ok(item.split_at(at))
}

/// The comma-separated items of a list; empty items (a trailing comma, which configobj
/// allows) are skipped, but an empty list is an error: a key given without a value is more
/// likely a mistake than a wish for nothing.
fn items<'a>(text: &'a str, example: &str) -> Result<Vec<&'a str>, String> {
    let items: Vec<&str> = text
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .collect();
    if items.is_empty() {
        return Err(format!("empty: expected {example}"));
    }
    Ok(items)
}

/// One `restart_at` entry: a time of day on some weekdays.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct At {
    pub days: Days,
    /// Minutes since midnight, 0..1440.
    pub minute: u16,
}

/// `restart_at`: the listed times, in the order given.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Times(Vec<At>);

impl Times {
    pub fn iter(&self) -> impl Iterator<Item = &At> {
        self.0.iter()
    }
}

const TIMES_EXAMPLE: &str = "times like 03:30, Sun 03:30 or Mon-Fri 02:00, 14:00";

pub fn parse_times(text: &str) -> Result<Times, String> {
    let mut times = Vec::new();
    for item in items(text, TIMES_EXAMPLE)? {
        let (days, time) = split_item(item)?;
        times.push(At {
            days: Days::parse(days, item)?,
            minute: minute_of_day(time, false)?,
        });
    }
    Ok(Times(times))
}

/// One `restart_windows` entry. The days name the day a window opens; `end < start` means
/// it closes the next day (crosses midnight). `end` is 1..=1440: a window ending at midnight
/// is stored as `24:00` whichever way it was written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Window {
    pub days: Days,
    pub start: u16,
    pub end: u16,
}

impl Window {
    pub fn crosses_midnight(&self) -> bool {
        self.end < self.start
    }
}

/// `restart_windows`: the listed windows, in the order given.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Windows(Vec<Window>);

impl Windows {
    pub fn iter(&self) -> impl Iterator<Item = &Window> {
        self.0.iter()
    }
}

const WINDOWS_EXAMPLE: &str =
    "windows like 01:00-05:00, Mon-Fri 22:00-02:00 or Sat-Sun 00:00-24:00";

pub fn parse_windows(text: &str) -> Result<Windows, String> {
    let mut windows = Vec::new();
    for item in items(text, WINDOWS_EXAMPLE)? {
        let (days, span) = split_item(item)?;
        let (start, end) = span.split_once('-').ok_or_else(|| {
            format!("'{item}': expected a window as HH:MM-HH:MM, like Mon-Fri 01:00-05:00")
        })?;
        let start = minute_of_day(start, false)?;
        let mut end = minute_of_day(end, true)?;
        if end == start {
            return Err(format!(
                "'{item}': a window cannot start and end at the same time; \
                 use 00:00-24:00 for the whole day"
            ));
        }
        if end == 0 {
            end = DAY_MINUTES;
        }
        windows.push(Window {
            days: Days::parse(days, item)?,
            start,
            end,
        });
    }
    Ok(Windows(windows))
}

fn hhmm(f: &mut fmt::Formatter<'_>, minute: u16) -> fmt::Result {
    write!(f, "{:02}:{:02}", minute / 60, minute % 60)
}

fn days_prefix(f: &mut fmt::Formatter<'_>, days: Days) -> fmt::Result {
    if days != Days::ALL {
        write!(f, "{days} ")?;
    }
    Ok(())
}

impl fmt::Display for Times {
    /// The canonical form: `Mon-Fri 02:00, 14:30`, items in the order given.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, at) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            days_prefix(f, at.days)?;
            hhmm(f, at.minute)?;
        }
        Ok(())
    }
}

impl fmt::Display for Windows {
    /// The canonical form: `Mon-Fri 01:00-05:00, 22:00-24:00`, items in the order given.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, w) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            days_prefix(f, w.days)?;
            hhmm(f, w.start)?;
            f.write_str("-")?;
            hhmm(f, w.end)?;
        }
        Ok(())
    }
}

// Serialized as the canonical text: readable in the JSON handed to workers, and parsing it
// back re-checks it.
impl From<Times> for String {
    fn from(t: Times) -> String {
        t.to_string()
    }
}

impl TryFrom<String> for Times {
    type Error = String;
    fn try_from(s: String) -> Result<Times, String> {
        parse_times(&s)
    }
}

impl From<Windows> for String {
    fn from(w: Windows) -> String {
        w.to_string()
    }
}

impl TryFrom<String> for Windows {
    type Error = String;
    fn try_from(s: String) -> Result<Windows, String> {
        parse_windows(&s)
    }
}
