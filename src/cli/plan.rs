//! `usrsvc plan [--json]`: for every program and group, the next planned restart and what
//! holds it back — the kill switch, `restart_windows`, `min_ok`, a failed program, a program
//! that is not running, or no usrsvcd to carry it out. Read-only: it looks at `/proc`, the
//! config and the running daemon's state file, and acts on nothing.

use std::time::SystemTime;

use chrono::{DateTime, Local, SecondsFormat};

use super::Console;
use crate::config::Config;
use crate::control::{self, group, Report};
use crate::daemon::planned::{self, Planned};
use crate::daemon::supervise::{program_state, read_state};
use crate::exit::ReturnCode;

/// One row of the plan.
struct Row {
    kind: &'static str,
    name: String,
    plan: Option<Planned>,
    blocked: Vec<String>,
}

pub fn plan(config: &Config, json: bool, console: &Console) -> ReturnCode {
    let now = Local::now();
    // The daemon's jitter seed: the same host name.
    let host = crate::alert::identity::short_host();
    let state = read_state();
    let switch = control::hold::kill_switch(config).map(|p| p.display().to_string());
    let started = |name: &str| -> Option<SystemTime> {
        control::group::health_target(config, name).map(|t| t.started)
    };
    let failed = |name: &str| -> bool {
        state
            .as_ref()
            .and_then(|d| program_state(d, name))
            .is_some_and(|p| {
                p["state"] == "failed"
                    || p["detail"]
                        .as_str()
                        .is_some_and(|d| d.starts_with("not monitored: gave up"))
            })
    };
    // What `min_ok` counts: up, and no failing health verdict in the daemon's view.
    let ok = |name: &str| -> bool {
        started(name).is_some()
            && !state
                .as_ref()
                .and_then(|d| program_state(d, name))
                .and_then(|p| p["health"].as_array())
                .is_some_and(|hs| hs.iter().any(|h| h["status"] == "failing"))
    };
    let common = |blocked: &mut Vec<String>, plan: &Planned| {
        if state.is_none() {
            blocked.push("usrsvcd is not running (planned restarts are its job)".into());
        }
        if let Some(s) = &switch {
            blocked.push(format!("kill switch {s} is on"));
        }
        if plan.waits_for_window {
            blocked.push(format!(
                "outside restart_windows until {}",
                stamp(&plan.fire)
            ));
        }
    };
    let mut rows = Vec::new();
    for p in &config.programs {
        let mut blocked = Vec::new();
        let mut plan = None;
        if !p.schedule.is_empty() {
            match started(&p.name) {
                None => blocked.push("not running".into()),
                Some(t) => plan = planned::program_plan(p, t, now, &host),
            }
            if !p.enabled {
                blocked.push("disabled".into());
            }
            if failed(&p.name) {
                blocked.push("failed: usrsvcd gave up on it (maxrestarts)".into());
            }
            if let Some(pl) = &plan {
                common(&mut blocked, pl);
                if let Some(b) = group::program_min_ok_blocks(config, &p.name, &ok) {
                    blocked.push(b);
                }
            }
        }
        rows.push(Row {
            kind: "program",
            name: p.name.clone(),
            plan,
            blocked,
        });
    }
    for g in &config.groups {
        let mut blocked = Vec::new();
        let mut plan = None;
        if !g.schedule.is_empty() {
            // As usrsvcd counts it: the members the restart renews, not stopped by the operator.
            let renewed = group::renewed(g);
            match g
                .programs
                .iter()
                .filter(|m| renewed.contains(&m.as_str()) && !control::hold::is_stopped(m))
                .filter_map(|m| started(m))
                .min()
            {
                None => blocked.push("no member is running".into()),
                Some(t) => plan = planned::group_plan(g, t, now, &host),
            }
            if let Some(m) = g.programs.iter().find(|m| failed(m)) {
                blocked.push(format!("member {m} failed: usrsvcd gave up on it"));
            }
            if let Some(pl) = &plan {
                common(&mut blocked, pl);
                if let Some(b) = group::min_ok_blocks(g, &ok) {
                    blocked.push(b);
                }
            }
        }
        rows.push(Row {
            kind: "group",
            name: g.name.clone(),
            plan,
            blocked,
        });
    }
    if json {
        let docs: Vec<serde_json::Value> = rows
            .iter()
            .map(|r| {
                serde_json::json!({
                    "kind": r.kind,
                    "name": r.name,
                    "next_restart": r.plan.as_ref().map(|p| stamp(&p.fire)),
                    "due": r.plan.as_ref().map(|p| stamp(&p.due)),
                    "why": r.plan.as_ref().map(|p| p.why.clone()),
                    "blocked_by": r.blocked,
                })
            })
            .collect();
        super::out::println(&serde_json::Value::Array(docs).to_string());
        return ReturnCode::Success;
    }
    if rows.is_empty() {
        console.info("No programs or groups are configured.");
        return ReturnCode::Success;
    }
    if state.is_none()
        && rows
            .iter()
            .any(|r| r.plan.is_some() || !r.blocked.is_empty())
    {
        console.info("usrsvcd is not running: planned restarts happen only under usrsvcd.");
    }
    // One write for the whole table (a program per row can be thousands of rows).
    let mut table = format!(
        "{:<8} {:<20} {:<26} WHY / BLOCKED BY\n",
        "KIND", "NAME", "NEXT RESTART"
    );
    for r in &rows {
        let (next, why) = match &r.plan {
            Some(p) => (stamp(&p.fire), p.why.clone()),
            None if r.blocked.is_empty() => ("-".to_string(), "no schedule".to_string()),
            None => ("-".to_string(), String::new()),
        };
        let mut line = format!("{:<8} {:<20} {:<26} {why}", r.kind, r.name, next);
        for b in &r.blocked {
            line.push_str(&format!("\n{:57}blocked: {b}", ""));
        }
        table.push_str(line.trim_end());
        table.push('\n');
    }
    super::out::print(&table);
    ReturnCode::Success
}

fn stamp(t: &DateTime<Local>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, false)
}
