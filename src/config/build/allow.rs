//! The builder's delegation keys (new in 2.0): `[Main] allow_users`, `allow_groups` and
//! `shared_socket`, and `allow` of a program (also through `[DefaultSettings:…]`) or a group.
//! Names are checked for form only: the config does no I/O, and a name that is not in the
//! passwd or group database simply never matches a caller.

use std::path::PathBuf;

use super::super::model::Grant;
use super::{Builder, Kind, Scope, Values};

/// A passwd or group name as `allow_users`/`allow_groups` may hold it.
fn plausible_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 256
        && !name.starts_with('-')
        && name
            .chars()
            .all(|c| !c.is_whitespace() && !c.is_control() && c != '/' && c != ':' && c != ',')
}

/// One word of `allow`.
fn grant(word: &str) -> Result<Grant, String> {
    match word {
        "start" => Ok(Grant::Start),
        "stop" => Ok(Grant::Stop),
        "restart" => Ok(Grant::Restart),
        "health" => Ok(Grant::Health),
        "repair" => Ok(Grant::Repair),
        "signal" => Err(
            "\"signal\" needs the signal it grants, e.g. signal:QUIT (there is no grant of every signal)"
                .into(),
        ),
        _ => match word.strip_prefix("signal:") {
            Some(sig) if sig.trim().parse::<i32>().is_ok() => Err(format!(
                "{word}: name the signal (signal:QUIT, signal:HUP), not its number"
            )),
            Some(sig) => crate::config::parse_signal(sig)
                .map(|s| Grant::Signal(s.as_raw()))
                .ok_or_else(|| format!("{word}: no such signal")),
            None => Err(format!(
                "unknown grant \"{word}\" (start, stop, restart, signal:NAME, health, repair)"
            )),
        },
    }
}

impl<'a> Builder<'a> {
    /// `allow_users` or `allow_groups`: names, each checked for form.
    pub(super) fn allow_names(
        &mut self,
        values: &Values<'_, 'a>,
        canon: &str,
        scope: &Scope,
    ) -> Vec<String> {
        let Some((text, origin, key)) = self.text(values, canon, scope, "") else {
            return Vec::new();
        };
        let mut out: Vec<String> = Vec::new();
        for name in text.split(',').map(str::trim).filter(|n| !n.is_empty()) {
            if !plausible_name(name) {
                self.error(
                    Kind::InvalidDelegation,
                    scope,
                    Some(&origin),
                    Some(&key),
                    format!("Invalid value for config parameter {key}: {name:?} is not a user or group name"),
                );
            } else if !out.iter().any(|n| n == name) {
                out.push(name.to_string());
            }
        }
        out
    }

    /// `[Main] shared_socket`: an absolute path (after `~/` and the file's folder), required
    /// when anyone is allowed.
    pub(super) fn shared_socket(
        &mut self,
        values: &Values<'_, 'a>,
        scope: &Scope,
        delegating: bool,
    ) -> Option<PathBuf> {
        let path = match self.scalar(values, "shared_socket", scope, "") {
            Some(Some((v, origin, _))) if !v.trim().is_empty() => {
                Some(self.path(v.trim(), &origin))
            }
            _ => None,
        };
        if path.is_none() && delegating {
            let at = values
                .iter()
                .find(|(k, _, _)| *k == "allow_users" || *k == "allow_groups")
                .map(|(_, item, _)| (item.origin().clone(), item.key().to_string()));
            let (origin, key) = match &at {
                Some((o, k)) => (Some(o), Some(k.as_str())),
                None => (None, None),
            };
            self.error(
                Kind::InvalidDelegation,
                scope,
                origin,
                key,
                format!(
                    "{} needs shared_socket = PATH: the socket the allowed users connect to",
                    key.unwrap_or("allow_users")
                ),
            );
        }
        path
    }

    /// `allow` of a program or group.
    pub(super) fn grants(
        &mut self,
        values: &Values<'_, 'a>,
        scope: &Scope,
        prefix: &str,
    ) -> Vec<Grant> {
        let Some((text, origin, key)) = self.text(values, "allow", scope, prefix) else {
            return Vec::new();
        };
        let mut out = Vec::new();
        for word in text.split(',').map(str::trim).filter(|w| !w.is_empty()) {
            match grant(word) {
                Ok(g) if out.contains(&g) => self.error(
                    Kind::InvalidDelegation,
                    scope,
                    Some(&origin),
                    Some(&format!("{prefix}{key}")),
                    format!("Invalid value for config parameter {key}: {word} is given twice"),
                ),
                Ok(g) => out.push(g),
                Err(why) => self.error(
                    Kind::InvalidDelegation,
                    scope,
                    Some(&origin),
                    Some(&format!("{prefix}{key}")),
                    format!("Invalid value for config parameter {key}: {why}"),
                ),
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grant_words() {
        let sigquit = nix::sys::signal::Signal::SIGQUIT as i32;
        let cases: [(&str, Result<Grant, &str>); 10] = [
            ("restart", Ok(Grant::Restart)),
            ("start", Ok(Grant::Start)),
            ("stop", Ok(Grant::Stop)),
            ("health", Ok(Grant::Health)),
            ("repair", Ok(Grant::Repair)),
            ("signal:QUIT", Ok(Grant::Signal(sigquit))),
            ("signal:SIGQUIT", Ok(Grant::Signal(sigquit))),
            ("signal", Err("needs the signal")),
            ("signal:3", Err("not its number")),
            ("reboot", Err("unknown grant")),
        ];
        for (word, want) in cases {
            match (grant(word), want) {
                (Ok(g), Ok(w)) => assert_eq!(g, w, "{word}"),
                (Err(e), Err(w)) => assert!(e.contains(w), "{word}: {e}"),
                (got, want) => panic!("{word}: got {got:?}, want {want:?}"),
            }
        }
        assert!(grant("signal:NOPE").is_err());
    }

    #[test]
    fn names_are_checked_for_form_only() {
        for ok in ["alice", "svc-deploy", "dev.team", "u_1", "nobody"] {
            assert!(plausible_name(ok), "{ok}");
        }
        for bad in ["", "a b", "a/b", "a:b", "-x", "a\u{7}"] {
            assert!(!plausible_name(bad), "{bad:?}");
        }
    }
}
