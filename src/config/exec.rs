//! New in 2.0: the keys that shape the process a program runs as — `directory`, `umask`,
//! `env_file`, `nice` and the `[[Limits]]` subsection — as typed values, and the pure rules
//! that read their text. Building them from a program's keys (with file:line:key errors) is
//! `build/exec.rs`; applying them between fork and exec is `control::spawn`.
//!
//! No I/O here, on purpose: a `directory` or `env_file` that does not exist yet may appear
//! before the program starts (a mount, a deploy), so it is the start's problem, not the
//! config's. None of these keys is in effect unless it is set, except `directory`, whose
//! default (the user's home from the passwd database) is decided when the program starts.

use std::fmt;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// A program's exec environment, as configured.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExecConfig {
    /// `directory`: the working directory; `None` = the user's home (passwd), at start.
    pub directory: Option<PathBuf>,
    /// `umask` (0..=0o777); `None` = inherited from whoever starts the program.
    pub umask: Option<u32>,
    /// `env_file`: `KEY=VALUE` lines read at each start; its variables override `[[Env]]`.
    pub env_file: Option<PathBuf>,
    /// `nice` (-20..=19), set (not added); `None` = inherited.
    pub nice: Option<i32>,
    /// `[[Limits]]`, in file order.
    pub limits: Vec<Limit>,
}

/// A resource `[[Limits]]` can set.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Resource {
    /// `RLIMIT_NOFILE`: open file descriptors.
    Nofile,
    /// `RLIMIT_CORE`: core file size, bytes.
    Core,
    /// `RLIMIT_NPROC`: processes (threads) of the user.
    Nproc,
    /// `RLIMIT_AS`: address space, bytes.
    As,
}

impl Resource {
    pub const ALL: [Resource; 4] = [
        Resource::Nofile,
        Resource::Core,
        Resource::Nproc,
        Resource::As,
    ];

    /// The key in `[[Limits]]`.
    pub fn key(self) -> &'static str {
        match self {
            Resource::Nofile => "nofile",
            Resource::Core => "core",
            Resource::Nproc => "nproc",
            Resource::As => "as",
        }
    }

    pub fn from_key(key: &str) -> Option<Resource> {
        Resource::ALL.into_iter().find(|r| r.key() == key)
    }

    /// Byte sizes take K, M, G and T suffixes; counts do not.
    pub fn is_size(self) -> bool {
        matches!(self, Resource::Core | Resource::As)
    }
}

/// One bound of a limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum LimitValue {
    Unlimited,
    Finite(u64),
}

impl fmt::Display for LimitValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LimitValue::Unlimited => f.write_str("unlimited"),
            LimitValue::Finite(n) => write!(f, "{n}"),
        }
    }
}

/// One `[[Limits]]` key: soft and hard limit (`soft <= hard`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Limit {
    pub resource: Resource,
    pub soft: LimitValue,
    pub hard: LimitValue,
}

impl fmt::Display for Limit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} = {}:{}", self.resource.key(), self.soft, self.hard)
    }
}

/// `umask = 022`: one to four octal digits, at most 0777.
pub(crate) fn parse_umask(value: &str) -> Result<u32, String> {
    let v = value.trim();
    let bad = || {
        format!(
            "Invalid value for config parameter umask: an octal mode from 0 to 0777 (such as 022 or 077) is expected. Got {value}"
        )
    };
    if v.is_empty() || v.len() > 4 || !v.bytes().all(|b| (b'0'..=b'7').contains(&b)) {
        return Err(bad());
    }
    match u32::from_str_radix(v, 8) {
        Ok(m) if m <= 0o777 => Ok(m),
        _ => Err(bad()),
    }
}

/// `nice = N`: an integer from -20 to 19.
pub(crate) fn parse_nice(value: &str) -> Result<i32, String> {
    let v = value.trim();
    let digits = v.strip_prefix(['-', '+']).unwrap_or(v);
    let n = if !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()) {
        v.parse::<i32>().ok()
    } else {
        None
    };
    match n {
        Some(n) if (-20..=19).contains(&n) => Ok(n),
        _ => Err(format!(
            "Invalid value for config parameter nice: an integer from -20 to 19 is expected. Got {value}"
        )),
    }
}

/// A `[[Limits]]` value: `VALUE` (soft and hard) or `SOFT:HARD`, each a number or
/// `unlimited` (`infinity`); `core` and `as` also take K, M, G, T suffixes (powers of 1024).
pub(crate) fn parse_limit(resource: Resource, value: &str) -> Result<Limit, String> {
    let key = resource.key();
    let v = value.trim();
    let (soft, hard) = match v.split_once(':') {
        Some((s, h)) => (one_bound(resource, s)?, one_bound(resource, h)?),
        None => {
            let b = one_bound(resource, v)?;
            (b, b)
        }
    };
    let below = match (soft, hard) {
        (_, LimitValue::Unlimited) => true,
        (LimitValue::Unlimited, LimitValue::Finite(_)) => false,
        (LimitValue::Finite(s), LimitValue::Finite(h)) => s <= h,
    };
    if !below {
        return Err(format!(
            "Invalid value for config parameter {key}: the soft limit {soft} is above the hard limit {hard}. Got {value}"
        ));
    }
    Ok(Limit {
        resource,
        soft,
        hard,
    })
}

fn one_bound(resource: Resource, text: &str) -> Result<LimitValue, String> {
    let key = resource.key();
    let t = text.trim();
    if t.eq_ignore_ascii_case("unlimited") || t.eq_ignore_ascii_case("infinity") {
        return Ok(LimitValue::Unlimited);
    }
    let (digits, shift) = match t.char_indices().last() {
        Some((i, c)) if resource.is_size() && c.is_ascii_alphabetic() => {
            let shift = match c.to_ascii_uppercase() {
                'K' => 10,
                'M' => 20,
                'G' => 30,
                'T' => 40,
                _ => return Err(bound_error(resource, text)),
            };
            (&t[..i], shift)
        }
        _ => (t, 0),
    };
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bound_error(resource, text));
    }
    let n = digits
        .parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(1u64 << shift))
        // u64::MAX is the kernel's RLIM_INFINITY: say `unlimited` for it.
        .filter(|n| *n < u64::MAX)
        .ok_or_else(|| {
            format!(
                "Invalid value for config parameter {key}: {text} is too large; write unlimited"
            )
        })?;
    Ok(LimitValue::Finite(n))
}

fn bound_error(resource: Resource, text: &str) -> String {
    let unit = if resource.is_size() {
        "a number of bytes (K, M, G or T suffixes allowed)"
    } else {
        "a number"
    };
    format!(
        "Invalid value for config parameter {}: {unit} or unlimited, optionally as SOFT:HARD, is expected. Got {text}",
        resource.key()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn umask_is_octal_up_to_0777() {
        assert_eq!(parse_umask("022"), Ok(0o22));
        assert_eq!(parse_umask(" 0077 "), Ok(0o77));
        assert_eq!(parse_umask("0"), Ok(0));
        assert_eq!(parse_umask("777"), Ok(0o777));
        for bad in ["", "8", "0o22", "1000", "07777", "-1", "22a", "0x1"] {
            assert!(parse_umask(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn nice_is_minus_20_to_19() {
        assert_eq!(parse_nice("10"), Ok(10));
        assert_eq!(parse_nice("-20"), Ok(-20));
        assert_eq!(parse_nice("+19"), Ok(19));
        for bad in ["20", "-21", "", "x", "1.5", "--1", "99999999999"] {
            assert!(parse_nice(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn limits_take_one_value_or_soft_and_hard() {
        let l = parse_limit(Resource::Nofile, "4096").expect("ok");
        assert_eq!(
            (l.soft, l.hard),
            (LimitValue::Finite(4096), LimitValue::Finite(4096))
        );
        let l = parse_limit(Resource::Nofile, "1024:unlimited").expect("ok");
        assert_eq!(
            (l.soft, l.hard),
            (LimitValue::Finite(1024), LimitValue::Unlimited)
        );
        let l = parse_limit(Resource::As, "2G").expect("ok");
        assert_eq!(l.soft, LimitValue::Finite(2 << 30));
        let l = parse_limit(Resource::Core, "0:512k").expect("ok");
        assert_eq!(
            (l.soft, l.hard),
            (LimitValue::Finite(0), LimitValue::Finite(512 << 10))
        );
        let l = parse_limit(Resource::Core, "Infinity").expect("ok");
        assert_eq!(l.hard, LimitValue::Unlimited);
    }

    #[test]
    fn bad_limits_are_refused_with_the_key() {
        for (r, bad) in [
            (Resource::Nofile, "4K"),
            (Resource::Nofile, "2048:1024"),
            (Resource::Nproc, "unlimited:10"),
            (Resource::As, "1X"),
            (Resource::As, "G"),
            (Resource::Core, ""),
            (Resource::Core, "1:2:3"),
            (Resource::Nofile, "-1"),
            (Resource::As, "99999999999T"),
            (Resource::Nofile, "18446744073709551615"),
        ] {
            let e = parse_limit(r, bad).expect_err(bad);
            assert!(e.contains(r.key()), "{e}");
        }
    }
}
