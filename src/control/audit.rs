//! Where the control layer meets the audit trail: the record of one action, written to the
//! configured `audit_log` (default `audit.log` in the state directory) and `audit_syslog`.
//! A problem writing it is reported and never stops or undoes the action: the action has
//! already happened, and the trail must say what happened, not decide it.

use std::path::PathBuf;

use super::report::Report;
use super::Request;
use crate::audit::{AuditLog, Record};
use crate::config::Config;

/// The audit log's path: `[Main] audit_log`, else `audit.log` in the state directory.
pub fn log_path(config: &Config) -> Option<PathBuf> {
    match &config.main.audit_log {
        Some(p) => Some(p.clone()),
        None => super::runtime_dir().ok().map(|d| d.join("audit.log")),
    }
}

/// The configured audit log and syslog target.
pub fn audit_log(config: &Config) -> Option<AuditLog> {
    let syslog = config
        .main
        .audit_syslog
        .as_deref()
        .and_then(|s| s.parse().ok());
    log_path(config).map(|p| AuditLog::new(p, syslog))
}

/// Appends one record; problems go to `report` as warnings.
#[expect(clippy::too_many_arguments, reason = "one field of the record each")]
pub fn record(
    config: &Config,
    program: &str,
    action: &str,
    req: &Request<'_>,
    result: &str,
    old_pid: Option<i32>,
    new_pid: Option<i32>,
    report: &dyn Report,
) {
    let Some(log) = audit_log(config) else {
        report.error(&format!(
            "({program}) - Warning: no state directory, the {action} is not in the audit log."
        ));
        return;
    };
    let record = Record::new(
        program,
        action,
        req.trigger.clone(),
        req.reason.map(str::to_string),
        result,
        old_pid,
        new_pid,
    )
    .with_caller(req.caller.as_ref());
    for problem in log.append(&record) {
        report.error(&format!("({program}) - Warning: audit: {problem}"));
    }
}
