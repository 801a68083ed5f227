//! The plain data of a `[[HealthCheck:NAME]]` as the config states it: `CheckSpec` and the
//! `HealthAction` taken when it keeps failing. Running a check is `crate::health`'s (which
//! re-exports these); this file must not grow any behaviour that spawns, waits or signals,
//! so `config` stays below `health` and `control` in the module graph.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// What the daemon does when a check has failed `failures` times in a row.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum HealthAction {
    Restart,
    Alert,
    None,
}

/// One `[[HealthCheck:NAME]]`, parsed.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CheckSpec {
    pub name: String,
    pub command: String,
    pub interval: Duration,
    pub timeout: Duration,
    pub start_period: Duration,
    pub failures: u32,
    pub repair: Option<String>,
    pub action: HealthAction,
}

impl CheckSpec {
    /// A check with the documented defaults: every 30 s, 10 s timeout, no start period, three
    /// failures, no repair, restart.
    pub fn new(name: &str, command: &str) -> CheckSpec {
        CheckSpec {
            name: name.to_string(),
            command: command.to_string(),
            interval: Duration::from_secs(30),
            timeout: Duration::from_secs(10),
            start_period: Duration::ZERO,
            failures: 3,
            repair: None,
            action: HealthAction::Restart,
        }
    }
}
