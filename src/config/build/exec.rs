//! The builder's part for the exec-environment keys of a program (`directory`, `umask`,
//! `env_file`, `nice`, `[[Limits]]`; new in 2.0): each value checked with an error that names
//! file, line and key. The value rules themselves are `config::exec`. Kept apart from the
//! 1.5.13 keys so that both stay readable.

use super::super::exec::{parse_limit, parse_nice, parse_umask, ExecConfig, Limit, Resource};
use super::{Builder, Kind, Scope, Values};

/// The keys this part reads (canonical spellings), for the program's unknown-key check.
pub(super) const EXEC_KEYS: [&str; 5] = ["directory", "umask", "env_file", "nice", "Limits"];

impl<'a> Builder<'a> {
    pub(super) fn exec(&mut self, values: &Values<'_, 'a>, scope: &Scope) -> ExecConfig {
        let directory = self.exec_path(values, "directory", scope);
        let env_file = self.exec_path(values, "env_file", scope);
        let umask = self.exec_value(values, "umask", scope, parse_umask);
        let nice = self.exec_value(values, "nice", scope, parse_nice);
        let limits = self.limits(values, scope);
        ExecConfig {
            directory,
            umask,
            env_file,
            nice,
            limits,
        }
    }

    /// A path key (`~/`, relative to the file's folder, as every path key); empty = absent.
    /// Whether it exists is the start's business.
    fn exec_path(
        &mut self,
        values: &Values<'_, 'a>,
        canon: &str,
        scope: &Scope,
    ) -> Option<std::path::PathBuf> {
        let (v, origin, key) = self.scalar(values, canon, scope, "")??;
        if v.is_empty() {
            return None;
        }
        if v.contains('\0') {
            self.error(
                Kind::InvalidExecSetting,
                scope,
                Some(&origin),
                Some(&key),
                format!("Invalid value for config parameter {key}: it contains a NUL byte"),
            );
            return None;
        }
        Some(self.path(&v, &origin))
    }

    fn exec_value<T>(
        &mut self,
        values: &Values<'_, 'a>,
        canon: &str,
        scope: &Scope,
        parse: fn(&str) -> Result<T, String>,
    ) -> Option<T> {
        let (v, origin, key) = self.scalar(values, canon, scope, "")??;
        match parse(&v) {
            Ok(t) => Some(t),
            Err(message) => {
                self.error(
                    Kind::InvalidExecSetting,
                    scope,
                    Some(&origin),
                    Some(&key),
                    message,
                );
                None
            }
        }
    }

    /// `[[Limits]]`: `nofile`, `core`, `nproc`, `as`, in file order.
    fn limits(&mut self, values: &Values<'_, 'a>, scope: &Scope) -> Vec<Limit> {
        let Some((inner, prefix)) = self.subsection(values, "Limits", scope) else {
            return Vec::new();
        };
        let mut limits = Vec::new();
        for (k, _, _) in &inner {
            let Some(resource) = Resource::from_key(k) else {
                continue;
            };
            let Some(Some((v, origin, key))) = self.scalar(&inner, k, scope, &prefix) else {
                continue;
            };
            match parse_limit(resource, &v) {
                Ok(l) => limits.push(l),
                Err(message) => self.error(
                    Kind::InvalidExecSetting,
                    scope,
                    Some(&origin),
                    Some(&format!("{prefix}{key}")),
                    message,
                ),
            }
        }
        let known = Resource::ALL.map(Resource::key);
        let unknown = Self::unknown(&inner, &known);
        self.unknown_keys(
            &unknown,
            Kind::UnknownLimitsKeys,
            scope,
            "Unknown configuration options in Limits section: ",
        );
        limits
    }
}
