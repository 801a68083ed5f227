//! Who sends the alerts and from where: the passwd name of our uid (1.5.13 meant to use it but
//! a typo made it read `$USER`, §7.2) and the host name of §7.2 (the FQDN unless it contains
//! `localhost`, then the plain host name). Looked up once per process; must not hang the
//! daemon on a broken resolver, so the FQDN lookup gets a short deadline.

use std::sync::mpsc;
use std::sync::OnceLock;
use std::time::Duration;

/// How long the FQDN lookup may take before the plain host name is used. The lookup happens
/// once, when the daemon sets up alerts; a resolver that hangs must not delay supervision.
const FQDN_DEADLINE: Duration = Duration::from_secs(1);

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// The passwd name of our uid, else the uid as a number.
    pub user: String,
    /// As spec §7.2: the FQDN, or the host name if the FQDN contains `localhost`.
    pub host: String,
}

impl Identity {
    /// This process's identity (cached: user and host do not change under a running daemon,
    /// and the lookups are not free).
    pub fn of_this_process() -> Identity {
        static CACHE: OnceLock<Identity> = OnceLock::new();
        CACHE
            .get_or_init(|| Identity {
                user: user_name(),
                host: mail_host(),
            })
            .clone()
    }

    /// The default `From:` address, `<user>@<host>`.
    pub fn default_from(&self) -> String {
        format!("{}@{}", self.user, self.host)
    }
}

/// The passwd name of our uid, else the uid as a number. Also the `user` of audit records.
pub(crate) fn user_name() -> String {
    let uid = nix::unistd::getuid();
    match nix::unistd::User::from_uid(uid) {
        Ok(Some(u)) => u.name,
        // No passwd entry (a container with an arbitrary uid): the number still says who.
        _ => uid.as_raw().to_string(),
    }
}

/// The kernel's host name (`hostname`, no resolver involved), or `localhost` if it cannot be
/// read. Also the `host` of audit records, which must not wait on DNS.
pub(crate) fn short_host() -> String {
    nix::unistd::gethostname()
        .ok()
        .and_then(|h| h.into_string().ok())
        .unwrap_or_else(|| "localhost".to_owned())
}

fn mail_host() -> String {
    let short = short_host();
    let fqdn = fqdn_within(&short, FQDN_DEADLINE).unwrap_or_else(|| short.clone());
    if fqdn.contains("localhost") {
        short
    } else {
        fqdn
    }
}

/// The canonical name of `host` as the resolver gives it (what `hostname -f` prints), or None
/// if the lookup fails or takes longer than `deadline` (the helper thread is then left to
/// finish on its own; it holds nothing).
fn fqdn_within(host: &str, deadline: Duration) -> Option<String> {
    let (tx, rx) = mpsc::channel();
    let name = host.to_owned();
    std::thread::Builder::new()
        .name("usrsvc-fqdn".into())
        .spawn(move || {
            let hints = dns_lookup::AddrInfoHints {
                flags: libc::AI_CANONNAME,
                ..Default::default()
            };
            let canon = dns_lookup::getaddrinfo(Some(&name), None, Some(hints))
                .ok()
                .and_then(|mut it| it.find_map(|ai| ai.ok()?.canonname))
                .filter(|c| !c.is_empty());
            let _ = tx.send(canon);
        })
        .ok()?;
    rx.recv_timeout(deadline).ok().flatten()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_is_the_passwd_name_not_the_environment() {
        let id = Identity::of_this_process();
        let expected = nix::unistd::User::from_uid(nix::unistd::getuid())
            .ok()
            .flatten()
            .map(|u| u.name);
        if let Some(name) = expected {
            assert_eq!(id.user, name);
        }
        assert!(!id.host.is_empty());
        assert!(!id.host.contains("localhost") || id.host == "localhost");
    }
}
