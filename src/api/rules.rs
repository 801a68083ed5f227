//! The delegation rules: who may do which operation on what (see `notes/API.md`). Pure
//! functions of the caller's kind, the config and the request — no I/O (the kill switch's
//! state is an input), so the whole table can be tested.
//!
//! The owner (the daemon's uid) and root may do everything. A user named in `allow_users`,
//! or a member of a group in `allow_groups`, may do what the `allow` of the program (or of
//! one of its groups) or of the group acted on grants, always with a reason, never with
//! `force`, never on `all` and never `reread`; and sees only the programs and groups where it
//! holds some grant — the names of the others are answered as unknown, so they are not
//! disclosed. Anyone else is refused everything.
//!
//! Must not: run anything, or look at anything the client says about itself.

use crate::config::{Config, Grant, GroupConfig, ProgramConfig};

use super::protocol::{ApiError, ErrorKind};
use super::Caller;

/// What a caller is to this daemon.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// The daemon's own uid.
    Owner,
    /// uid 0 (when the daemon is not root's).
    Root,
    /// Named in `allow_users`, or in a group of `allow_groups`.
    Delegated,
    /// Anyone else.
    Stranger,
}

impl Kind {
    pub fn of(caller: &Caller, config: &Config, owner_uid: u32) -> Kind {
        if caller.uid == owner_uid {
            Kind::Owner
        } else if caller.uid == 0 {
            Kind::Root
        } else if config.main.allow_users.contains(&caller.user)
            || caller
                .groups
                .iter()
                .any(|g| config.main.allow_groups.contains(g))
        {
            Kind::Delegated
        } else {
            Kind::Stranger
        }
    }

    /// Owner or root: every right.
    pub fn full(self) -> bool {
        matches!(self, Kind::Owner | Kind::Root)
    }
}

/// An operation as the rules see it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    /// `list`, `status`, `plan`, `history`, `events` (and `wait`, which shows a result only
    /// to the caller that asked for it).
    Read,
    Start,
    Stop,
    Restart,
    /// The signal's number.
    Signal(i32),
    Health,
    Repair,
    Reread,
}

impl Op {
    /// The grant a delegated caller needs for it.
    pub fn grant(self) -> Option<Grant> {
        match self {
            Op::Start => Some(Grant::Start),
            Op::Stop => Some(Grant::Stop),
            Op::Restart => Some(Grant::Restart),
            Op::Signal(n) => Some(Grant::Signal(n)),
            Op::Health => Some(Grant::Health),
            Op::Repair => Some(Grant::Repair),
            Op::Read | Op::Reread => None,
        }
    }

    /// Whether a group (and `all`) can be its target.
    fn takes_groups(self) -> bool {
        matches!(self, Op::Read | Op::Start | Op::Stop | Op::Restart)
    }

    /// Whether the kill switch holds it back (without `force`).
    fn held_by_kill_switch(self) -> bool {
        matches!(self, Op::Start | Op::Stop | Op::Restart | Op::Signal(_))
    }
}

/// The words of a grant (`restart`, `signal:QUIT`), as `allow` writes them.
pub fn grant_word(grant: Grant) -> String {
    match grant {
        Grant::Start => "start".into(),
        Grant::Stop => "stop".into(),
        Grant::Restart => "restart".into(),
        Grant::Health => "health".into(),
        Grant::Repair => "repair".into(),
        Grant::Signal(n) => match nix::sys::signal::Signal::try_from(n) {
            Ok(s) => format!("signal:{}", s.as_str().trim_start_matches("SIG")),
            Err(_) => format!("signal:{n}"),
        },
    }
}

/// What a target name means.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Target<'c> {
    All,
    Program(&'c ProgramConfig),
    Group(&'c GroupConfig),
}

impl Target<'_> {
    pub fn name(&self) -> &str {
        match self {
            Target::All => "all",
            Target::Program(p) => &p.name,
            Target::Group(g) => &g.name,
        }
    }
}

/// `NAME` as `usrsvc` reads it: `all`; `group:NAME` and `program:NAME` say which; a bare NAME
/// is the group when one has that name, else the program.
pub fn resolve<'c>(config: &'c Config, name: &str) -> Option<Target<'c>> {
    if name == "all" {
        return Some(Target::All);
    }
    if let Some(g) = name.strip_prefix("group:").and_then(|g| config.group(g)) {
        return Some(Target::Group(g));
    }
    if let Some(p) = name
        .strip_prefix("program:")
        .and_then(|p| config.program(p))
    {
        return Some(Target::Program(p));
    }
    if let Some(g) = config.group(name) {
        return Some(Target::Group(g));
    }
    config.program(name).map(Target::Program)
}

/// Whether `kind` may see program `name` (it exists and, for a delegated caller, it or one of
/// its groups grants something).
pub fn visible(kind: Kind, config: &Config, name: &str) -> bool {
    let Some(p) = config.program(name) else {
        return false;
    };
    match kind {
        Kind::Owner | Kind::Root => true,
        Kind::Delegated => {
            !p.allow.is_empty() || config.groups_of(name).any(|g| !g.allow.is_empty())
        }
        Kind::Stranger => false,
    }
}

/// Whether `kind` may see group `name` (it exists and, for a delegated caller, grants
/// something).
pub fn group_visible(kind: Kind, config: &Config, name: &str) -> bool {
    let Some(g) = config.group(name) else {
        return false;
    };
    match kind {
        Kind::Owner | Kind::Root => true,
        Kind::Delegated => !g.allow.is_empty(),
        Kind::Stranger => false,
    }
}

fn target_visible(kind: Kind, config: &Config, target: &Target<'_>) -> bool {
    match target {
        Target::All => true,
        Target::Program(p) => visible(kind, config, &p.name),
        Target::Group(g) => group_visible(kind, config, &g.name),
    }
}

/// Whether `grant` is given on `target` (by the program's `allow` or one of its groups').
fn granted(config: &Config, target: &Target<'_>, grant: Grant) -> bool {
    match target {
        Target::All => false,
        Target::Program(p) => {
            p.allow.contains(&grant) || config.groups_of(&p.name).any(|g| g.allow.contains(&grant))
        }
        Target::Group(g) => g.allow.contains(&grant),
    }
}

/// One request, as the rules need it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ask<'a> {
    pub op: Op,
    /// `None`: every program (read ops, `reread`).
    pub target: Option<&'a str>,
    pub reason: Option<&'a str>,
    pub force: bool,
    /// Whether `[Main] kill_switch_file` exists now.
    pub kill_switch: bool,
}

/// Why a request is not done.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub kind: ErrorKind,
    /// `not_allowed_user`, `no_grant:restart`, `reason_required`, `owner_only`,
    /// `command_not_allowed`, `kill_switch`, `not_found`, `not_granted`.
    pub rule: String,
    pub message: String,
    pub code: i32,
}

impl Refusal {
    fn refused(rule: impl Into<String>, message: impl Into<String>) -> Refusal {
        Refusal {
            kind: ErrorKind::Refused,
            rule: rule.into(),
            message: message.into(),
            code: ErrorKind::Refused.code(),
        }
    }

    /// What a delegated caller hears of a name it holds no grant on, whether or not it
    /// exists: the same refusal either way, so names are not disclosed.
    fn not_granted(name: &str) -> Refusal {
        Refusal::refused(
            "not_granted",
            format!("{name}: no program or group of this account that you hold a grant on (allow = ...)"),
        )
    }

    /// `not_found` for the owner, `not_granted` for anyone else.
    fn unknown(kind: Kind, name: &str) -> Refusal {
        if kind.full() {
            Refusal::not_found(name)
        } else {
            Refusal::not_granted(name)
        }
    }

    fn not_found(name: &str) -> Refusal {
        Refusal {
            kind: ErrorKind::NotFound,
            rule: "not_found".into(),
            message: format!("No such program or group: {name}"),
            code: ErrorKind::NotFound.code(),
        }
    }
}

impl From<Refusal> for ApiError {
    fn from(r: Refusal) -> ApiError {
        ApiError {
            kind: r.kind,
            message: r.message,
            rule: (r.kind == ErrorKind::Refused).then_some(r.rule),
            code: r.code,
        }
    }
}

/// Whether `kind` may do `ask`; `Ok` with what the target means (`None` for no target).
pub fn decide<'c>(
    kind: Kind,
    config: &'c Config,
    ask: &Ask<'_>,
) -> Result<Option<Target<'c>>, Refusal> {
    if kind == Kind::Stranger {
        return Err(Refusal::refused(
            "not_allowed_user",
            "not in allow_users or allow_groups",
        ));
    }
    let full = kind.full();
    if ask.op == Op::Reread {
        if !full {
            return Err(Refusal::refused(
                "owner_only",
                "reread is for the daemon's owner only",
            ));
        }
        return Ok(None);
    }
    if ask.op == Op::Read {
        let Some(name) = ask.target.filter(|t| *t != "all") else {
            return Ok(None);
        };
        return match resolve(config, name) {
            Some(t) if target_visible(kind, config, &t) => Ok(Some(t)),
            _ => Err(Refusal::unknown(kind, name)),
        };
    }
    // A change op.
    let name = ask.target.unwrap_or("all");
    if name == "all" && !full {
        return Err(Refusal::refused(
            "owner_only",
            "target all is for the daemon's owner only",
        ));
    }
    if ask.force && !full {
        return Err(Refusal::refused(
            "owner_only",
            "force is for the daemon's owner only",
        ));
    }
    let resolved = if ask.op.takes_groups() {
        resolve(config, name)
    } else {
        // Signals, health checks and repairs are a program's.
        config
            .program(name)
            .or_else(|| {
                name.strip_prefix("program:")
                    .and_then(|p| config.program(p))
            })
            .map(Target::Program)
    };
    let target = match resolved {
        Some(t) if target_visible(kind, config, &t) => t,
        _ => return Err(Refusal::unknown(kind, name)),
    };
    let blank = ask.reason.is_none_or(|r| r.trim().is_empty());
    if !full {
        if let Some(grant) = ask.op.grant() {
            if !granted(config, &target, grant) {
                let word = grant_word(grant);
                return Err(Refusal::refused(
                    format!("no_grant:{word}"),
                    format!("{name} does not allow {word} (allow = ...)"),
                ));
            }
        }
        if blank {
            return Err(Refusal::refused(
                "reason_required",
                "a delegated action needs a reason",
            ));
        }
    } else if blank && config.main.require_reason {
        return Err(Refusal {
            code: i32::from(crate::exit::ReturnCode::ReasonRequired.code()),
            ..Refusal::refused(
                "reason_required",
                "[Main] require_reason is set: give a reason",
            )
        });
    }
    if ask.kill_switch && ask.op.held_by_kill_switch() && !ask.force {
        return Err(Refusal {
            kind: ErrorKind::KillSwitch,
            rule: "kill_switch".into(),
            message:
                "the kill switch is on: nothing is started, stopped or signalled without force"
                    .into(),
            code: ErrorKind::KillSwitch.code(),
        });
    }
    Ok(Some(target))
}

#[cfg(test)]
#[path = "rules_tests.rs"]
mod tests;
