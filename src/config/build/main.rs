//! The builder's `[Main]` (spec §4.4): the daemon's own files, `sendmail_path` discovery,
//! SMTP, and the 2.0 daemon-wide keys. Reads nothing itself; folders are asked of the `Probe`.

use std::path::{Path, PathBuf};

use super::super::error::ConfigError;
use super::super::inherit::{Origin, Table};
use super::super::model::{LogTarget, MainConfig, SmtpConfig};
use super::super::python::py_dirname;
use super::super::syntax::ROOT;
use super::{config_dir_path, Builder, Kind, Scope, Values};

const MAIN_KEYS: [&str; 18] = [
    "config_dir",
    "pidfile",
    "usrsvcd_stdout",
    "usrsvcd_stderr",
    "sendmail_path",
    // New in 2.0: SMTP delivery of alerts.
    "smtp_host",
    "smtp_port",
    "smtp_from",
    "smtp_starttls",
    "smtp_credentials_file",
    // New in 2.0: planned restarts, the kill switch, reasons and the audit trail.
    "restart_windows",
    "kill_switch_file",
    "require_reason",
    "audit_log",
    "audit_syslog",
    // New in 2.0: delegation through the control API.
    "allow_users",
    "allow_groups",
    "shared_socket",
];

impl<'a> Builder<'a> {
    pub(super) fn main(&mut self) -> Option<MainConfig> {
        let file = self.files.first()?;
        let tree = &file.tree;
        let scope = Scope {
            label: "Main".into(),
            file: file.path.clone(),
            line: 0,
        };
        let Some(sec) = tree.child(ROOT, "Main") else {
            let (kind, message) = if tree.entry(ROOT, "Main").is_some() {
                (Kind::NotASection, "Main must be a section, like [Main]")
            } else {
                (
                    Kind::MissingMain,
                    "Missing [Main] section in main config. Required.",
                )
            };
            let mut e = ConfigError::new(kind, file.path.clone(), message.into());
            if let Some(entry) = tree.entry(ROOT, "Main") {
                e = e.at_line(entry.line);
            }
            self.errors.push(e);
            return None;
        };
        let scope = Scope {
            line: tree.section(sec).map_or(0, |s| s.line),
            ..scope
        };
        let table = Table::from_section(self.files, 0, sec, false, None);
        let values = self.resolve(&table, &scope, "");

        let unknown = Self::unknown(&values, &MAIN_KEYS);
        self.unknown_keys(
            &unknown,
            Kind::UnknownMainKeys,
            &scope,
            "Unknown config options in Main section: ",
        );

        let config_dir = match self.scalar(&values, "config_dir", &scope, "") {
            Some(Some((v, origin, _))) if !v.is_empty() => {
                Some(config_dir_path(&v, self.home, self.dir_of(origin.file)))
            }
            _ => None,
        };
        let pidfile = match self.scalar(&values, "pidfile", &scope, "") {
            Some(Some((v, origin, _))) if !v.is_empty() => {
                let p = self.path(&v, &origin);
                self.daemon_file("pidfile", &p, &scope, Some(&origin));
                p
            }
            _ => {
                let p = self.home.join(format!("{}_usrsvcd.pid", self.probe.uid()));
                self.daemon_file("pidfile", &p, &scope, None);
                p
            }
        };
        let usrsvcd_stdout = match self.scalar(&values, "usrsvcd_stdout", &scope, "") {
            Some(Some((v, origin, key))) if !v.is_empty() => {
                let p = self.path(&v, &origin);
                self.daemon_file(&key, &p, &scope, Some(&origin));
                Some(p)
            }
            _ => None,
        };
        let usrsvcd_stderr = match self.scalar(&values, "usrsvcd_stderr", &scope, "") {
            Some(Some((v, _, _))) if v == "stdout" => Some(LogTarget::Stdout),
            Some(Some((v, origin, key))) if !v.is_empty() => {
                let p = self.path(&v, &origin);
                self.daemon_file(&key, &p, &scope, Some(&origin));
                Some(LogTarget::Path(p))
            }
            _ => None,
        };
        let sendmail_path = match self.scalar(&values, "sendmail_path", &scope, "") {
            Some(Some((v, origin, key))) if !v.is_empty() && v != "auto" => {
                let p = self.path(&v, &origin);
                if !self.probe.exists(&p) {
                    self.error(
                        Kind::SendmailMissing,
                        &scope,
                        Some(&origin),
                        Some(&key),
                        format!("sendmail_path \"{}\" does not exist.", p.display()),
                    );
                }
                Some(p)
            }
            Some(None) => None,
            _ => self.find_sendmail(),
        };
        let smtp = self.smtp(&values, &scope);
        let restart_windows = self.windows(&values, &scope);
        let kill_switch_file = match self.scalar(&values, "kill_switch_file", &scope, "") {
            Some(Some((v, origin, _))) if !v.is_empty() => Some(self.path(&v, &origin)),
            _ => None,
        };
        let require_reason = self.boolean(&values, "require_reason", false, &scope);
        let audit_log = match self.scalar(&values, "audit_log", &scope, "") {
            Some(Some((v, origin, _))) if !v.is_empty() => Some(self.path(&v, &origin)),
            _ => None,
        };
        let audit_syslog = match self.scalar(&values, "audit_syslog", &scope, "") {
            Some(Some((v, origin, key))) if !v.trim().is_empty() => {
                match v.trim().parse::<crate::audit::SyslogTarget>() {
                    Ok(_) => Some(v.trim().to_string()),
                    Err(e) => {
                        self.error(
                            Kind::InvalidSyslog,
                            &scope,
                            Some(&origin),
                            Some(&key),
                            format!("Invalid value for config parameter {key}: {e}"),
                        );
                        None
                    }
                }
            }
            _ => None,
        };
        let allow_users = self.allow_names(&values, "allow_users", &scope);
        let allow_groups = self.allow_names(&values, "allow_groups", &scope);
        let delegating = !allow_users.is_empty() || !allow_groups.is_empty();
        let shared_socket = self.shared_socket(&values, &scope, delegating);
        Some(MainConfig {
            config_dir,
            pidfile,
            usrsvcd_stdout,
            usrsvcd_stderr,
            sendmail_path,
            smtp,
            restart_windows,
            kill_switch_file,
            require_reason,
            audit_log,
            audit_syslog,
            allow_users,
            allow_groups,
            shared_socket,
        })
    }

    /// The `smtp_*` keys: `None` unless `smtp_host` is set; the others without it are an error
    /// (they would silently do nothing).
    pub(super) fn smtp(&mut self, values: &Values<'_, 'a>, scope: &Scope) -> Option<SmtpConfig> {
        let host = match self.scalar(values, "smtp_host", scope, "") {
            Some(Some((v, _, _))) if !v.trim().is_empty() => Some(v.trim().to_string()),
            _ => None,
        };
        let port = self.int(values, "smtp_port", 25, scope, "");
        let starttls = self.boolean(values, "smtp_starttls", false, scope);
        let from = match self.scalar(values, "smtp_from", scope, "") {
            Some(Some((v, _, _))) if !v.trim().is_empty() => Some(v.trim().to_string()),
            _ => None,
        };
        let credentials_file = match self.scalar(values, "smtp_credentials_file", scope, "") {
            Some(Some((v, origin, _))) if !v.is_empty() => Some(self.path(&v, &origin)),
            _ => None,
        };
        if host.is_none() {
            for key in [
                "smtp_port",
                "smtp_from",
                "smtp_starttls",
                "smtp_credentials_file",
            ] {
                if let Some((_, item, _)) = values.iter().find(|(k, _, _)| *k == key) {
                    let origin = item.origin().clone();
                    self.error(
                        Kind::SmtpWithoutHost,
                        scope,
                        Some(&origin),
                        Some(key),
                        format!("{key} is set but smtp_host is not; set smtp_host to send alerts by SMTP."),
                    );
                }
            }
            return None;
        }
        if port == 0 || port > 65535 {
            if let Some(Some((_, origin, key))) = self.scalar(values, "smtp_port", scope, "") {
                self.error(
                    Kind::InvalidRange,
                    scope,
                    Some(&origin),
                    Some(&key),
                    format!("smtp_port must be between 1 and 65535, not {port}."),
                );
            }
        }
        Some(SmtpConfig {
            host: host?,
            port: u16::try_from(port).unwrap_or(25),
            from,
            starttls,
            credentials_file,
        })
    }

    /// Spec §7.3: the two usual places, then the first executable `sendmail` on `$PATH`.
    pub(super) fn find_sendmail(&self) -> Option<PathBuf> {
        for p in ["/usr/sbin/sendmail", "/usr/bin/sendmail"] {
            if self.probe.exists(Path::new(p)) {
                return Some(PathBuf::from(p));
            }
        }
        let path = self.probe.path_var()?;
        let path = path.to_string_lossy().into_owned();
        for dir in path.split(':') {
            if dir.is_empty() {
                continue;
            }
            let dir = match dir.strip_suffix('/') {
                Some(d) if !d.is_empty() => d,
                _ => dir,
            };
            let candidate = PathBuf::from(format!("{dir}/sendmail"));
            if self.probe.is_executable(&candidate) {
                return Some(candidate);
            }
        }
        None
    }

    /// A file of the daemon's own (`[Main] pidfile`, `usrsvcd_stdout`, `usrsvcd_stderr`) in a
    /// folder that does not exist: `usrsvcd start` would fail on it (exit 136), `usrsvc` does
    /// not care. Kept apart from the errors, for `usrsvcd checkconfig` (new in 2.0).
    pub(super) fn daemon_file(
        &mut self,
        key: &str,
        path: &Path,
        scope: &Scope,
        origin: Option<&Origin>,
    ) {
        let text = path.to_string_lossy();
        let dir = py_dirname(&text);
        if dir.is_empty() || self.probe.is_dir(Path::new(dir)) {
            return;
        }
        let what = if key == "pidfile" {
            "its pidfile"
        } else {
            "its log"
        };
        let e = self.located(
            Kind::DaemonDirMissing,
            scope,
            origin,
            Some(key),
            format!("usrsvcd cannot write {what} \"{text}\": the folder {dir} does not exist."),
        );
        self.daemon_errors.push(e);
    }
}
