//! The builder's `[[Env]]` and `[[Monitoring]]` subsections of a program (and the shared
//! lookup of a `[[NAME]]` subsection).

use super::super::model::MonitoringConfig;
use super::{Builder, Kind, Resolved, Scope, Value, Values};

const MONITORING_KEYS: [&str; 5] = [
    "monitor_after",
    "activityfile",
    "activityfile_limit",
    "rss_limit",
    // New in 2.0.
    "check_interval",
];

impl<'a> Builder<'a> {
    /// A program's `[[NAME]]` subsection, resolved, and the prefix (`NAME.`) its keys carry in
    /// errors; `None` when it is absent, or (reported here) when NAME is a plain value.
    pub(super) fn subsection<'t>(
        &mut self,
        values: &Values<'t, 'a>,
        name: &str,
        scope: &Scope,
    ) -> Option<(Vec<Value<'t, 'a>>, String)> {
        let (_, item, resolved) = values.iter().find(|(k, _, _)| *k == name)?;
        let Resolved::Section(table) = resolved else {
            if !matches!(resolved, Resolved::Failed) {
                let key = item.key();
                self.error(
                    Kind::NotASubsection,
                    scope,
                    Some(item.origin()),
                    Some(key),
                    format!("{key} must be a subsection, like [[{key}]]"),
                );
            }
            return None;
        };
        let prefix = format!("{}.", item.key());
        let inner = self.resolve(table, scope, &prefix);
        Some((inner, prefix))
    }

    pub(super) fn env(&mut self, values: &Values<'_, 'a>, scope: &Scope) -> Vec<(String, String)> {
        let Some((inner, prefix)) = self.subsection(values, "Env", scope) else {
            return Vec::new();
        };
        let mut env = Vec::new();
        for value in &inner {
            if let Some((v, origin, key)) = self.scalar_of(value, scope, &prefix) {
                if key.contains('\0') || v.contains('\0') {
                    self.nul_byte(&format!("{prefix}{key}"), scope, &origin);
                } else {
                    env.push((key, v));
                }
            }
        }
        env
    }

    pub(super) fn monitoring(
        &mut self,
        values: &Values<'_, 'a>,
        scope: &Scope,
    ) -> MonitoringConfig {
        let mut m = MonitoringConfig::default();
        let Some((inner, prefix)) = self.subsection(values, "Monitoring", scope) else {
            return m;
        };
        m.monitor_after = self.int_seconds(&inner, "monitor_after", 30, scope, &prefix);
        if let Some(Some((v, origin, _))) = self.scalar(&inner, "activityfile", scope, &prefix) {
            if !v.is_empty() {
                m.activityfile = Some(self.path(&v, &origin));
            }
        }
        m.activityfile_limit = self.int_seconds(&inner, "activityfile_limit", 120, scope, &prefix);
        m.rss_limit = self.int(&inner, "rss_limit", 0, scope, &prefix);
        m.check_interval = self.float_seconds(&inner, "check_interval", 5.0, scope, &prefix);
        if m.check_interval < 0.1 {
            if let Some(Some((_, origin, key))) =
                self.scalar(&inner, "check_interval", scope, &prefix)
            {
                self.error(
                    Kind::InvalidRange,
                    scope,
                    Some(&origin),
                    Some(&format!("{prefix}{key}")),
                    "check_interval must be at least 0.1 seconds.".into(),
                );
            }
            m.check_interval = 5.0;
        }
        let unknown = Self::unknown(&inner, &MONITORING_KEYS);
        self.unknown_keys(
            &unknown,
            Kind::UnknownMonitoringKeys,
            scope,
            "Unknown configuration options in Monitoring section: ",
        );
        m
    }
}
