//! The verbs new in 2.0 — `signal`, `health`, `repair`, `history`, `plan` — and the guard
//! rails every acting verb passes first: `require_reason` and the kill switch. Output and exit
//! codes only; what the verbs do lives in `control`, `health`, `audit` and `schedule`.
//! `signal`, `health` and `repair` are also what the daemon's worker runs for its control
//! API (`usrsvcd --worker signal:N|health|repair[:CHECK]`), so both say and exit the same.

use crate::config::Config;
use crate::control::{self, Report, Request};
use crate::exit::ReturnCode;
use crate::health::{self, Status};

use super::Console;

/// The flags of `usrsvc` these verbs read.
pub struct Flags<'f> {
    pub reason: Option<&'f str>,
    pub force: bool,
    pub json: bool,
    pub count: Option<usize>,
    /// `-f`: `logs` follows the files.
    pub follow: bool,
    /// A member's command run by a group or `all`: its parent has said what is shared.
    pub nested: bool,
}

/// The guard rails of a verb that acts on programs: `Ok(reason to record)`, or the refusal's
/// exit code after saying why.
pub fn guard(
    config: &Config,
    verb: &str,
    flags: &Flags<'_>,
    console: &dyn Report,
) -> Result<Option<String>, ReturnCode> {
    let reason = flags
        .reason
        .map(str::trim)
        .filter(|r| !r.is_empty())
        .map(str::to_string);
    if !matches!(verb, "start" | "stop" | "restart" | "signal" | "repair") {
        return Ok(reason);
    }
    if config.main.require_reason && reason.is_none() {
        console.error(&format!(
            "usrsvc {verb}: a reason is required (require_reason = true in [Main] of {}). Say why with --reason TEXT (or -r TEXT).",
            config.main_file.display()
        ));
        return Err(ReturnCode::ReasonRequired);
    }
    let Some(switch) = control::hold::kill_switch(config) else {
        return Ok(reason);
    };
    if !flags.force {
        console.error(&format!(
            "usrsvc {verb}: refused, the kill switch is on: {} exists (kill_switch_file in [Main]). Nothing is started, stopped or restarted on purpose while it is there; usrsvcd still restarts programs that crash. Remove the file, or add --force to act anyway.",
            switch.display()
        ));
        return Err(ReturnCode::KillSwitchEngaged);
    }
    if !flags.nested {
        console.warn(&format!(
            "Warning: the kill switch {} is on; acting anyway (--force).",
            switch.display()
        ));
    }
    const FORCED: &str = "forced past the kill switch";
    // A group's or `all`'s members run as nested commands that pass this guard again with
    // the reason already marked.
    let marked = format!("({FORCED})");
    Ok(Some(match reason {
        Some(r) if r == FORCED || r.ends_with(&marked) => r,
        Some(r) => format!("{r} {marked}"),
        None => FORCED.to_string(),
    }))
}

/// Runs a 2.0 verb; `None` when `words` is not one (the 1.5.13 verbs go on as before).
pub fn run(
    config: &Config,
    words: &[String],
    flags: &Flags<'_>,
    console: &Console,
) -> Option<ReturnCode> {
    let (verb, rest) = words.split_first()?;
    let invalid = |usage: &str| {
        console.error(&format!("Usage: {usage}"));
        Some(ReturnCode::GeneralFailure)
    };
    match (verb.as_str(), rest) {
        ("signal", [name, sig]) => Some(signal(
            config,
            program(config, name),
            sig,
            flags,
            console,
            &Request::cli(None),
        )),
        ("signal", _) => invalid("usrsvc signal NAME SIGNAL [--reason TEXT]"),
        ("health", [name]) => Some(health(config, name, flags, console)),
        ("health", _) => invalid("usrsvc health NAME|GROUP|all [--json]"),
        ("repair", [name]) => Some(repair(
            config,
            program(config, name),
            None,
            flags,
            console,
            &Request::cli(None),
        )),
        ("repair", _) => invalid("usrsvc repair NAME [--reason TEXT]"),
        ("history", [] | [_]) => {
            let name = rest.first().map(|n| program(config, n));
            Some(history(config, name, flags, console))
        }
        ("history", _) => invalid("usrsvc history [NAME] [-n N] [--json]"),
        ("logs", [name]) => Some(super::logs::logs(
            config,
            program(config, name),
            flags.count.unwrap_or(10),
            flags.follow,
            console,
        )),
        ("logs", _) => invalid("usrsvc logs NAME [-n N] [-f]"),
        ("plan", []) => Some(super::plan::plan(config, flags.json, console)),
        ("plan", _) => invalid("usrsvc plan [--json]"),
        _ => None,
    }
}

/// `program:NAME` is the program NAME here too, as for the other verbs (these act on
/// programs only, so a bare NAME is the program already).
fn program<'n>(config: &Config, name: &'n str) -> &'n str {
    name.strip_prefix("program:")
        .filter(|p| config.program(p).is_some())
        .unwrap_or(name)
}

/// `base` with the reason to record (the trigger and the caller are `base`'s).
fn with_reason<'r>(base: &Request<'_>, reason: Option<&'r str>) -> Request<'r> {
    Request {
        by: base.by,
        trigger: base.trigger.clone(),
        reason,
        step: base.step,
        expect: base.expect,
        replaces: base.replaces,
        caller: base.caller.clone(),
    }
}

/// `usrsvc signal NAME SIGNAL`, recorded with `base`'s trigger and caller.
pub fn signal(
    config: &Config,
    name: &str,
    sig: &str,
    flags: &Flags<'_>,
    console: &dyn Report,
    base: &Request<'_>,
) -> ReturnCode {
    let Some(signal) = control::parse_signal(sig) else {
        console.error(&format!(
            "Unknown signal: {sig}. Give a name (QUIT, SIGQUIT, HUP, USR1, …) or a number from 1 to 31."
        ));
        return ReturnCode::InvalidAction;
    };
    let reason = match guard(config, "signal", flags, console) {
        Ok(r) => r,
        Err(code) => return code,
    };
    let req = with_reason(base, reason.as_deref());
    control::send_signal(config, name, signal, console, &req).code
}

/// The programs `name` means for `health`: one program, a group's members, or every program.
fn programs_of<'c>(config: &'c Config, name: &'c str) -> Option<Vec<&'c str>> {
    if name == "all" {
        return Some(config.programs.iter().map(|p| p.name.as_str()).collect());
    }
    // As for the other verbs: a group first (it may carry a member's name), `program:NAME`
    // for the program alone.
    if let Some(g) = config.group(name.strip_prefix("group:").unwrap_or(name)) {
        return Some(g.programs.iter().map(String::as_str).collect());
    }
    let name = name.strip_prefix("program:").unwrap_or(name);
    config.program(name).is_some().then(|| vec![name])
}

/// `usrsvc health NAME|GROUP|all`: the verdicts on stdout, exit 1 when one is failing.
pub fn health(config: &Config, name: &str, flags: &Flags<'_>, console: &dyn Report) -> ReturnCode {
    let Some(names) = programs_of(config, name) else {
        console.error(&format!("No such program or group: {name}"));
        return ReturnCode::ProgramUndefined;
    };
    let mut jobs = Vec::new();
    let mut rows: Vec<serde_json::Value> = Vec::new();
    let mut failing = false;
    for n in names {
        let Some(prog) = config.program(n) else {
            continue;
        };
        if prog.health_checks.is_empty() {
            if name != "all" {
                console.info(&format!("{n}: no health checks configured"));
            }
            continue;
        }
        match control::group::health_target(config, n) {
            Some(target) => {
                for check in &prog.health_checks {
                    jobs.push((target.clone(), check.clone()));
                }
            }
            None => {
                failing = true;
                for check in &prog.health_checks {
                    rows.push(serde_json::json!({
                        "program": n, "check": check.name, "status": "failing",
                        "detail": "not running", "pid": null, "output": "",
                    }));
                    if !flags.json {
                        super::out::println(&format!("{n} {}: failing (not running)", check.name));
                    }
                }
            }
        }
    }
    for ((target, check), outcome) in jobs.iter().zip(health::run_all(&jobs)) {
        failing |= outcome.status == Status::Failing;
        if flags.json {
            rows.push(serde_json::json!({
                "program": target.program, "check": check.name,
                "status": outcome.status, "detail": outcome.describe(),
                "pid": target.pid, "elapsed": outcome.elapsed.as_secs_f64(),
                "output": outcome.output,
            }));
            continue;
        }
        super::out::println(&format!(
            "{} {}: {} ({}, {:.2} s)",
            target.program,
            check.name,
            status_word(&outcome.status),
            outcome.describe(),
            outcome.elapsed.as_secs_f64()
        ));
        if outcome.status != Status::Healthy {
            for line in outcome
                .output
                .lines()
                .rev()
                .take(10)
                .collect::<Vec<_>>()
                .iter()
                .rev()
            {
                super::out::println(&format!("    {line}"));
            }
        }
    }
    if flags.json {
        super::out::println(&serde_json::Value::Array(rows).to_string());
    } else if jobs.is_empty() && rows.is_empty() && name == "all" {
        console.info("No program has a health check ([[HealthCheck:NAME]]).");
    }
    if failing {
        ReturnCode::GeneralFailure
    } else {
        ReturnCode::Success
    }
}

pub fn status_word(s: &Status) -> &'static str {
    match s {
        Status::Healthy => "healthy",
        Status::Degraded => "degraded",
        Status::Failing => "failing",
    }
}

/// `usrsvc repair NAME`: every repair command of the program's health checks (only that of
/// the check `only` when given), recorded with `base`'s trigger and caller.
pub fn repair(
    config: &Config,
    name: &str,
    only: Option<&str>,
    flags: &Flags<'_>,
    console: &dyn Report,
    base: &Request<'_>,
) -> ReturnCode {
    let Some(prog) = config.program(name) else {
        console.error(&format!("No such program: {name}"));
        return ReturnCode::ProgramUndefined;
    };
    let reason = match guard(config, "repair", flags, console) {
        Ok(r) => r,
        Err(code) => return code,
    };
    let checks: Vec<_> = prog
        .health_checks
        .iter()
        .filter(|c| c.repair.is_some() && only.is_none_or(|o| c.name == o))
        .collect();
    if checks.is_empty() {
        match only {
            Some(o) => console.error(&format!(
                "{name} has no health check {o} with a repair command."
            )),
            None => console.error(&format!(
                "{name} has no health check with a repair command."
            )),
        }
        return ReturnCode::GeneralFailure;
    }
    let Some(target) = control::group::health_target(config, name) else {
        console.error(&format!("{name} is NOT running; nothing to repair."));
        return ReturnCode::GeneralFailure;
    };
    let req = with_reason(base, reason.as_deref());
    let mut code = ReturnCode::Success;
    for check in checks {
        let Some(outcome) = health::run_repair(&target, check) else {
            continue;
        };
        let ok = matches!(outcome.exit, health::Exit::Code(0));
        let line = format!("{name} {}: repair {}", check.name, outcome.describe());
        if ok {
            console.info(&line);
        } else {
            console.error(&line);
            code = ReturnCode::GeneralFailure;
        }
        for l in outcome.output.lines() {
            // The repair is done but its audit record is not: carry on whatever the reader does.
            super::out::print_or_drop(&format!("    {l}"));
        }
        control::audit::record(
            config,
            name,
            &format!("repair:{}", check.name),
            &req,
            if ok { "ok" } else { "failed" },
            Some(target.pid),
            Some(target.pid),
            console,
        );
    }
    code
}

fn history(
    config: &Config,
    name: Option<&str>,
    flags: &Flags<'_>,
    console: &Console,
) -> ReturnCode {
    let Some(path) = control::audit::log_path(config) else {
        console.error("No state directory: no audit log to read.");
        return ReturnCode::InsufficientPermissions;
    };
    let n = flags.count.unwrap_or(20);
    let (records, skipped) = match crate::audit::read_history(&path, name, n) {
        Ok(r) => r,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => (Vec::new(), 0),
        Err(e) => {
            console.error(&format!(
                "Cannot read the audit log {}: {e}",
                path.display()
            ));
            return ReturnCode::GeneralFailure;
        }
    };
    if skipped > 0 {
        console.error(&format!(
            "Warning: skipped {skipped} damaged lines of {} (not whole audit records).",
            path.display()
        ));
    }
    if flags.json {
        let mut lines = String::new();
        for r in &records {
            lines.push_str(&serde_json::to_string(r).unwrap_or_default());
            lines.push('\n');
        }
        super::out::print(&lines);
    } else {
        super::out::print(&crate::audit::format_history(&records));
    }
    ReturnCode::Success
}
