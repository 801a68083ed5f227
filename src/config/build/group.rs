//! The builder's `[Group:NAME]` sections (new in 2.0): members, `sequence`, `min_ok` and the
//! group's schedule, checked against the programs.

use std::collections::{HashMap, HashSet};

use super::super::inherit::{Origin, Table};
use super::super::model::{GroupConfig, Location, ProgramConfig, Step};
use super::super::syntax::ROOT;
use super::{Builder, Kind, Scope};
use crate::schedule::{parse_duration, Schedule, Windows};

/// Keys of a `[Group:NAME]` (new in 2.0).
const GROUP_KEYS: [&str; 8] = [
    "programs",
    "sequence",
    "min_ok",
    "restart_every",
    "restart_at",
    "restart_jitter",
    "restart_windows",
    "allow",
];

impl<'a> Builder<'a> {
    /// Every `[Group:NAME]` at the top of any file, checked against the programs.
    pub(super) fn groups(
        &mut self,
        programs: &[ProgramConfig],
        main_windows: Option<&Windows>,
    ) -> Vec<GroupConfig> {
        let mut groups: Vec<GroupConfig> = Vec::new();
        let mut seen: HashMap<String, Location> = HashMap::new();
        let names: HashSet<&str> = programs.iter().map(|p| p.name.as_str()).collect();
        let files = self.files;
        for (fi, file) in files.iter().enumerate() {
            let Some(root) = file.tree.section(ROOT) else {
                continue;
            };
            // A top-level `Group:x = …` key is ignored, as 1.5.13 ignored every top-level key.
            for &c in &root.children {
                let Some(sec) = file.tree.section(c) else {
                    continue;
                };
                let Some(name) = sec.name.strip_prefix("Group:") else {
                    continue;
                };
                let scope = Scope {
                    label: sec.name.clone(),
                    file: file.path.clone(),
                    line: sec.line,
                };
                let here = Location {
                    file: file.path.clone(),
                    line: sec.line,
                };
                let table = Table::from_section(files, fi, c, false, None);
                // 1.5.13 ignored every section it did not know: a `[Group:…]` without
                // `programs` is one of those, not a 2.0 group, and is ignored as it was.
                if table.get("programs").is_none() {
                    self.warnings.push(format!(
                        "Warning: [{}] at {}:{} has no \"programs\" key: ignored, as usrsvc 1.5.13 ignored it. A group names its members with programs = NAME, NAME, ...",
                        sec.name,
                        file.path.display(),
                        sec.line
                    ));
                    continue;
                }
                let first = seen.get(name).cloned();
                if let Some(g) = self.group(name, &table, here, &scope, &names, first) {
                    let mut g = g;
                    if g.schedule.windows.is_none() {
                        g.schedule.windows = main_windows.cloned();
                    }
                    seen.entry(g.name.clone())
                        .or_insert_with(|| g.defined_at.clone());
                    groups.push(g);
                }
            }
        }
        groups
    }

    pub(super) fn group(
        &mut self,
        name: &str,
        table: &Table<'a>,
        defined_at: Location,
        scope: &Scope,
        programs: &HashSet<&str>,
        first: Option<Location>,
    ) -> Option<GroupConfig> {
        let before = self.errors.len();
        let values = self.resolve(table, scope, "");
        let bad = |b: &mut Self, at: Option<&Origin>, key: Option<&str>, message: String| {
            b.error(Kind::InvalidGroup, scope, at, key, message);
        };
        if name.is_empty() {
            bad(self, None, None, "Group defined without a name.".into());
        } else if name == "all" {
            bad(
                self,
                None,
                None,
                "A group cannot be called \"all\": usrsvc ACTION all means every program.".into(),
            );
        }
        // A group may carry a program's name (`xrootd` over `cmsd` and `xrootd`): on the
        // command line NAME then means the group, `program:NAME` the program alone.
        if let Some(first) = first {
            bad(
                self,
                None,
                None,
                format!(
                    "Group \"{name}\" is defined more than once: first at {}:{}",
                    first.file.display(),
                    first.line
                ),
            );
        }
        let mut members: Vec<String> = Vec::new();
        let mut member_set: HashSet<String> = HashSet::new();
        match self.text(&values, "programs", scope, "") {
            Some((v, origin, key)) => {
                for m in v.split(',').map(str::trim).filter(|m| !m.is_empty()) {
                    if !programs.contains(m) {
                        bad(
                            self,
                            Some(&origin),
                            Some(&key),
                            format!("Group \"{name}\" names a program that is not defined: {m}"),
                        );
                    } else if !member_set.insert(m.to_string()) {
                        bad(
                            self,
                            Some(&origin),
                            Some(&key),
                            format!("Group \"{name}\" names {m} twice."),
                        );
                    } else {
                        members.push(m.to_string());
                    }
                }
                if members.is_empty() && self.errors.len() == before {
                    bad(
                        self,
                        Some(&origin),
                        Some(&key),
                        format!("Group \"{name}\" has no programs."),
                    );
                }
            }
            None => bad(
                self,
                None,
                Some("programs"),
                format!("Group \"{name}\" has no programs = ... key."),
            ),
        }
        let sequence = match self.text(&values, "sequence", scope, "") {
            Some((v, origin, key)) if !v.trim().is_empty() => match parse_sequence(&v, &members) {
                Ok(steps) => Some(steps),
                Err(e) => {
                    bad(
                        self,
                        Some(&origin),
                        Some(&key),
                        format!("Invalid sequence: {e}"),
                    );
                    None
                }
            },
            _ => None,
        };
        let min_ok = self.int(&values, "min_ok", 0, scope, "");
        if min_ok > 0
            && usize::try_from(min_ok).map_or(true, |n| n >= members.len())
            && !members.is_empty()
        {
            if let Some(Some((_, origin, key))) = self.scalar(&values, "min_ok", scope, "") {
                bad(
                    self,
                    Some(&origin),
                    Some(&key),
                    format!(
                        "min_ok ({min_ok}) must be less than the number of programs in the group ({}): otherwise no planned restart could ever start.",
                        members.len()
                    ),
                );
            }
        }
        let schedule = self.schedule(&values, scope);
        let allow = self.grants(&values, scope, "");
        // A `min_ok` the group's own restart can never meet would hold every planned restart
        // back for ever: say so now.
        let probe = GroupConfig {
            name: name.to_string(),
            defined_at: defined_at.clone(),
            programs: members.clone(),
            sequence: sequence.clone(),
            min_ok,
            schedule: Schedule::default(),
            allow: Vec::new(),
        };
        let most = u64::try_from(probe.most_down()).unwrap_or(u64::MAX);
        let can_stay = u64::try_from(members.len())
            .unwrap_or(0)
            .saturating_sub(most);
        if min_ok > can_stay && usize::try_from(min_ok).is_ok_and(|n| n < members.len()) {
            if let Some(Some((_, origin, key))) = self.scalar(&values, "min_ok", scope, "") {
                bad(
                    self,
                    Some(&origin),
                    Some(&key),
                    format!(
                        "min_ok ({min_ok}) can never hold: the sequence has {most} of the {} members down at once, so at most {can_stay} stay up.",
                        members.len()
                    ),
                );
            }
        }
        let unknown = Self::unknown(&values, &GROUP_KEYS);
        self.unknown_keys(
            &unknown,
            Kind::UnknownGroupKeys,
            scope,
            "Unknown config options in group: ",
        );
        if self.errors.len() != before {
            return None;
        }
        Some(GroupConfig {
            name: name.to_string(),
            defined_at,
            programs: members,
            sequence,
            min_ok,
            schedule,
            allow,
        })
    }
}

/// `"stop cmsd, wait 300, restart xrootd, start cmsd"`: every step names a member.
fn parse_sequence(text: &str, members: &[String]) -> Result<Vec<Step>, String> {
    let members: HashSet<&str> = members.iter().map(String::as_str).collect();
    let mut steps = Vec::new();
    for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let mut words = part.split_whitespace();
        let (Some(verb), Some(arg), None) = (words.next(), words.next(), words.next()) else {
            return Err(format!(
                "\"{part}\": each step is \"start NAME\", \"stop NAME\", \"restart NAME\" or \"wait DURATION\""
            ));
        };
        let member = |arg: &str| {
            if members.contains(arg) {
                Ok(arg.to_string())
            } else {
                Err(format!(
                    "\"{part}\": {arg} is not one of the group's programs"
                ))
            }
        };
        steps.push(match verb {
            "start" => Step::Start(member(arg)?),
            "stop" => Step::Stop(member(arg)?),
            "restart" => Step::Restart(member(arg)?),
            "wait" => Step::Wait(
                parse_duration(arg)
                    .map_err(|e| format!("\"{part}\": {e}"))?
                    .as_secs_f64(),
            ),
            other => {
                return Err(format!(
                    "\"{part}\": unknown step {other}; use start, stop, restart or wait"
                ))
            }
        });
    }
    if steps.is_empty() {
        return Err("no steps".into());
    }
    Ok(steps)
}
