//! The builder's `[[HealthCheck:NAME]]` subsections of a program (new in 2.0), into
//! `CheckSpec`s; running them is `crate::health`'s.

use std::time::Duration;

use super::super::check::{CheckSpec, HealthAction};
use super::{Builder, Kind, Resolved, Scope, Values};

/// Keys of a `[[HealthCheck:NAME]]` (new in 2.0).
const HEALTH_KEYS: [&str; 7] = [
    "command",
    "interval",
    "timeout",
    "start_period",
    "failures",
    "repair",
    "action",
];

impl<'a> Builder<'a> {
    /// Every `[[HealthCheck:NAME]]` of a program, in file order.
    pub(super) fn health_checks(
        &mut self,
        values: &Values<'_, 'a>,
        scope: &Scope,
    ) -> Vec<CheckSpec> {
        let mut checks: Vec<CheckSpec> = Vec::new();
        for (canon, item, resolved) in values {
            let Some(name) = canon.strip_prefix("HealthCheck:") else {
                continue;
            };
            // `[[HealthCheck: http]]` is the check `http`.
            let name = name.trim();
            let key = item.key();
            if checks.iter().any(|c| c.name == name) {
                self.error(
                    Kind::InvalidHealthCheck,
                    scope,
                    Some(item.origin()),
                    Some(key),
                    format!("Health check {name} is defined twice in this program."),
                );
                continue;
            }
            let Resolved::Section(table) = resolved else {
                if !matches!(resolved, Resolved::Failed) {
                    self.error(
                        Kind::NotASubsection,
                        scope,
                        Some(item.origin()),
                        Some(key),
                        format!("{key} must be a subsection, like [[{key}]]"),
                    );
                }
                continue;
            };
            let prefix = format!("{key}.");
            let inner = self.resolve(table, scope, &prefix);
            if name.is_empty() {
                self.error(
                    Kind::InvalidHealthCheck,
                    scope,
                    Some(item.origin()),
                    Some(key),
                    "A health check needs a name, like [[HealthCheck:http]]".into(),
                );
            }
            let command = match self.scalar(&inner, "command", scope, &prefix) {
                Some(Some((v, origin, _))) if v.contains('\0') => {
                    self.nul_byte(&format!("{prefix}command"), scope, &origin);
                    None
                }
                Some(Some((v, _, _))) if !v.trim().is_empty() => Some(v.trim().to_string()),
                Some(None) => None,
                _ => {
                    self.error(
                        Kind::InvalidHealthCheck,
                        scope,
                        Some(item.origin()),
                        Some(&format!("{prefix}command")),
                        format!("Health check {name} has no command."),
                    );
                    None
                }
            };
            let positive = |b: &mut Self, k: &str, default: Duration| -> Duration {
                match b.duration(&inner, k, scope, &prefix) {
                    Some(d) if d.is_zero() => {
                        if let Some(Some((_, origin, spelled))) =
                            b.scalar(&inner, k, scope, &prefix)
                        {
                            b.error(
                                Kind::InvalidRange,
                                scope,
                                Some(&origin),
                                Some(&format!("{prefix}{spelled}")),
                                format!("{spelled} must be more than 0."),
                            );
                        }
                        default
                    }
                    Some(d) => d,
                    None => default,
                }
            };
            let interval = positive(self, "interval", Duration::from_secs(30));
            let timeout = positive(self, "timeout", Duration::from_secs(10));
            let start_period = self
                .duration(&inner, "start_period", scope, &prefix)
                .unwrap_or_default();
            let failures = self.int(&inner, "failures", 3, scope, &prefix);
            if failures == 0 {
                if let Some(Some((_, origin, k))) = self.scalar(&inner, "failures", scope, &prefix)
                {
                    self.error(
                        Kind::InvalidRange,
                        scope,
                        Some(&origin),
                        Some(&format!("{prefix}{k}")),
                        "failures must be at least 1.".into(),
                    );
                }
            }
            let failures = failures.max(1);
            let repair = match self.scalar(&inner, "repair", scope, &prefix) {
                Some(Some((v, _, _))) if !v.trim().is_empty() => Some(v.trim().to_string()),
                _ => None,
            };
            let action = match self.scalar(&inner, "action", scope, &prefix) {
                Some(Some((v, origin, k))) => match v.trim().to_lowercase().as_str() {
                    "restart" | "" => HealthAction::Restart,
                    "alert" => HealthAction::Alert,
                    "none" => HealthAction::None,
                    other => {
                        self.error(
                            Kind::InvalidHealthCheck,
                            scope,
                            Some(&origin),
                            Some(&format!("{prefix}{k}")),
                            format!("action must be restart, alert or none, not \"{other}\"."),
                        );
                        HealthAction::Restart
                    }
                },
                _ => HealthAction::Restart,
            };
            let unknown = Self::unknown(&inner, &HEALTH_KEYS);
            self.unknown_keys(
                &unknown,
                Kind::UnknownHealthCheckKeys,
                scope,
                &format!("Unknown configuration options in {key} section: "),
            );
            if let Some(command) = command {
                checks.push(CheckSpec {
                    name: name.to_string(),
                    command,
                    interval,
                    timeout,
                    start_period,
                    failures: u32::try_from(failures).unwrap_or(u32::MAX),
                    repair,
                    action,
                });
            }
        }
        checks
    }
}
