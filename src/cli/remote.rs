//! The commands that talk to a running daemon over its control socket: `usrsvc --user
//! ACCOUNT VERB …` (another account's daemon, through its shared socket, no local config),
//! `usrsvc events` (the owner's daemon's stream), and the daemon's view that `usrsvc status`
//! adds under its 1.5.13 lines. Output and exit codes only; the wire is `api::client`'s.
//!
//! Must not: load the caller's own config for `--user` (the account's daemon has the one
//! that counts), or act on programs itself: every change is the daemon's worker's.

use std::path::Path;
use std::sync::OnceLock;

use serde_json::{json, Value};

use crate::api::client::{self, ApiError, Client, ClientError};
use crate::control::Report;
use crate::exit::ReturnCode;

use super::Console;

/// What `--user` reads of the command line.
pub struct Remote<'a> {
    pub account: &'a str,
    pub socket: Option<&'a Path>,
    pub reason: Option<&'a str>,
    pub force: bool,
    pub json: bool,
    pub count: Option<usize>,
}

const USAGE: &str = "usrsvc --user ACCOUNT [--socket PATH] start|stop|restart|health|repair TARGET [--reason TEXT] | signal TARGET SIGNAL | status|plan|history|events [TARGET] | list";

/// `usrsvc --user ACCOUNT VERB …`.
pub fn run_user(remote: &Remote<'_>, words: &[String], console: &Console) -> ReturnCode {
    let (verb, rest) = match words.split_first() {
        Some((v, r)) => (v.as_str(), r),
        None => {
            console.error(&format!("Usage: {USAGE}"));
            return ReturnCode::GeneralFailure;
        }
    };
    let target = rest.first().map(String::as_str);
    let request = match (verb, rest.len()) {
        ("start" | "stop" | "restart" | "health" | "repair", 1) => {
            Some(json!({"v": 1, "op": verb, "target": target}))
        }
        ("signal", 2) => Some(json!({"v": 1, "op": "signal", "target": target, "signal": rest[1]})),
        ("status" | "plan" | "history" | "events", 0 | 1) | ("list", 0) => None,
        _ => {
            console.error(&format!("Usage: {USAGE}"));
            return ReturnCode::GeneralFailure;
        }
    };
    let (path, uid) = match client::account_socket(remote.account, remote.socket) {
        Ok(p) => p,
        Err(why) => {
            console.error(&format!(
                "usrsvc --user {}: no daemon to ask: {why}.",
                remote.account
            ));
            return ReturnCode::DaemonUnreachable;
        }
    };
    let mut conn = match Client::connect(&path, Some(uid)) {
        Ok(c) => c,
        Err(e) => return unreachable(&e, Some(remote.account), console),
    };
    if let Some(mut request) = request {
        if let Some(r) = remote.reason.map(str::trim).filter(|r| !r.is_empty()) {
            request["reason"] = Value::String(r.to_owned());
        }
        if remote.force {
            request["force"] = Value::Bool(true);
        }
        return change(&mut conn, &request, remote.account, console);
    }
    if verb == "events" {
        return follow(conn, target, remote.json, console);
    }
    let mut request = json!({"v": 1, "op": verb});
    if let Some(t) = target {
        request["target"] = Value::String(t.to_owned());
    }
    if verb == "history" {
        request["limit"] = json!(remote.count.unwrap_or(20));
    }
    let answer = match conn.call(&request) {
        Ok(a) => a,
        Err(e) => return unreachable(&e, Some(remote.account), console),
    };
    if let Some(e) = ApiError::of(&answer) {
        return refused(&e, remote.account, console);
    }
    if remote.json {
        super::out::println(&answer.to_string());
        return ReturnCode::Success;
    }
    let text = match verb {
        "status" => status_text(&answer),
        "history" => {
            let records: Vec<crate::audit::Record> = answer["records"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|r| serde_json::from_value(r.clone()).ok())
                .collect();
            crate::audit::format_history(&records)
        }
        "plan" => plan_text(&answer),
        _ => list_text(&answer),
    };
    super::out::print(&text);
    ReturnCode::Success
}

/// A change op with `wait: true`: its output lines, and its code as the exit code.
fn change(conn: &mut Client, request: &Value, account: &str, console: &Console) -> ReturnCode {
    match conn.change(request) {
        Err(e) => unreachable(&e, Some(account), console),
        Ok(Err(e)) => refused(&e, account, console),
        Ok(Ok(done)) => {
            // Another account's programs' words: control characters are shown, never sent
            // to the terminal.
            for line in &done.output {
                super::out::println(&escaped(line));
            }
            if done.code != 0 {
                console.error(&escaped(&format!(
                    "{account}'s usrsvcd: {} {}: {} (exit {})",
                    request["op"].as_str().unwrap_or("?"),
                    request["target"].as_str().unwrap_or("?"),
                    done.result,
                    ReturnCode::describe_code(done.code)
                )));
            }
            ReturnCode::from_code(done.code).unwrap_or(ReturnCode::UnknownFailure)
        }
    }
}

fn refused(e: &ApiError, account: &str, console: &Console) -> ReturnCode {
    console.error(&escaped(&format!(
        "{account}'s usrsvcd answered: {}",
        e.describe()
    )));
    e.return_code()
}

fn unreachable(e: &ClientError, account: Option<&str>, console: &Console) -> ReturnCode {
    let whose = account.map_or_else(|| "your".to_owned(), |a| format!("{a}'s"));
    console.error(&format!("No answer from {whose} usrsvcd: {e}."));
    e.code()
}

/// `usrsvc events [TARGET] [--json]`: the owner's daemon's events until it goes away.
pub fn events_owner(target: Option<&str>, json: bool, console: &Console) -> ReturnCode {
    let path = client::owner_socket();
    match Client::connect(&path, None) {
        Ok(conn) => follow(conn, target, json, console),
        Err(e) => {
            console.error(&format!(
                "usrsvcd is not running (or not answering on {}): {e}.",
                path.display()
            ));
            e.code()
        }
    }
}

/// Prints each event as it comes. A closed stdout ends the command (141, `out::print`); a
/// daemon that goes away (stopped, restarted) or drops a reader that fell behind ends it
/// with 143, so a script can tell it from a normal end and reconnect.
fn follow(conn: Client, target: Option<&str>, json: bool, console: &Console) -> ReturnCode {
    let socket = conn.socket().to_path_buf();
    let events = match conn.events(target) {
        Ok(Ok(ev)) => ev,
        Ok(Err(e)) => {
            console.error(&format!("usrsvcd answered: {}", e.describe()));
            return e.return_code();
        }
        Err(e) => return unreachable(&e, None, console),
    };
    for line in events {
        match line {
            Ok(v) if json => super::out::println(&v["event"].to_string()),
            Ok(v) => super::out::println(&event_line(&v["event"])),
            Err(e) => return unreachable(&e, None, console),
        }
    }
    console.error(&format!(
        "usrsvcd closed the event stream on {} (it stopped or restarted, or this reader fell behind).",
        socket.display()
    ));
    ReturnCode::DaemonUnreachable
}

/// `TIME PROGRAM KIND details`, one line (control characters escaped).
pub fn event_line(e: &Value) -> String {
    let s = |k: &str| e[k].as_str().unwrap_or("").to_owned();
    let kind = s("kind");
    let (at, program, details) = match kind.as_str() {
        "phase" => {
            let pid = e["pid"]
                .as_i64()
                .map(|p| format!(" pid {p}"))
                .unwrap_or_default();
            let detail = s("detail");
            let detail = if detail.is_empty() {
                detail
            } else {
                format!(" ({detail})")
            };
            (
                s("at"),
                s("program"),
                format!("{} -> {}{pid}{detail}", s("from"), s("to")),
            )
        }
        "restart" => (
            s("at"),
            s("program"),
            format!("{}: {}", s("trigger"), s("why")),
        ),
        "health" => (
            s("at"),
            s("program"),
            format!("{}: {} ({})", s("check"), s("status"), s("detail")),
        ),
        "audit" => {
            let r = &e["record"];
            let by = r["caller"]
                .as_str()
                .map(|c| format!(" by {c} (uid {})", r["caller_uid"]))
                .unwrap_or_default();
            let reason = r["reason"]
                .as_str()
                .map(|x| format!(": {x}"))
                .unwrap_or_default();
            (
                r["time"].as_str().unwrap_or("").to_owned(),
                r["program"].as_str().unwrap_or("").to_owned(),
                format!(
                    "{} {} {}{by}{reason}",
                    r["action"].as_str().unwrap_or("?"),
                    r["trigger"].as_str().unwrap_or("?"),
                    r["result"].as_str().unwrap_or("?")
                ),
            )
        }
        "op_done" => (
            chrono::Local::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, false),
            s("target"),
            format!(
                "op {} #{}: {} (exit {})",
                s("op"),
                e["id"],
                s("result"),
                e["code"]
            ),
        ),
        "reread" => {
            let errors: Vec<&str> = e["errors"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
                .collect();
            let what = if e["ok"].as_bool() == Some(true) {
                "config loaded".to_owned()
            } else {
                format!("config kept: {}", errors.join("; "))
            };
            (s("at"), "-".to_owned(), what)
        }
        _ => (String::new(), "-".to_owned(), e.to_string()),
    };
    let kind = if kind.is_empty() {
        "?".to_owned()
    } else {
        kind
    };
    let program = if program.is_empty() {
        "-".to_owned()
    } else {
        program
    };
    escaped(&format!("{at} {program} {kind} {details}"))
}

/// Text from another account's daemon, with its control characters escaped.
fn escaped(s: &str) -> String {
    crate::audit::escape_controls(s)
}

/// The owner's daemon's `status` answer, asked once per command (a `status all` of many
/// programs makes one connection): `None` when no daemon answers on the socket. Short
/// deadlines: `status` is what scripts call in loops, and a stuck daemon must not hold it up
/// for long (its view is extra; the 1.5.13 lines are already printed).
pub fn owner_status() -> Option<&'static Value> {
    static STATUS: OnceLock<Option<Value>> = OnceLock::new();
    STATUS
        .get_or_init(|| {
            let socket = client::owner_socket();
            let mut conn =
                Client::connect_within(&socket, None, std::time::Duration::from_secs(1)).ok()?;
            let answer = conn
                .call_within(
                    &json!({"v": 1, "op": "status"}),
                    std::time::Duration::from_secs(5),
                )
                .ok()?;
            (answer["ok"].as_bool() == Some(true)).then_some(answer)
        })
        .as_ref()
}

/// The daemon's view of `name`: from its socket, else its state file, else `None` (no
/// daemon). `with_file`: whether the state file is worth reading (it is only for health
/// verdicts, and reading it costs a look for the daemon's process).
pub fn daemon_program(name: &str, with_file: bool) -> Option<(Value, Value)> {
    if let Some(answer) = owner_status() {
        let p = answer["programs"]
            .as_array()?
            .iter()
            .find(|p| p["name"].as_str() == Some(name))?;
        return Some((answer["daemon"].clone(), p.clone()));
    }
    if !with_file {
        return None;
    }
    let doc = crate::daemon::supervise::read_state()?;
    let p = crate::daemon::supervise::program_state(&doc, name)?.clone();
    Some((json!({"pid": doc["pid"]}), p))
}

/// The lines `usrsvc status NAME` adds under its 1.5.13 lines: the daemon's state of the
/// program (indented, so that the first line stays the one scripts read).
pub fn program_lines(daemon: &Value, p: &Value) -> String {
    let mut out = String::new();
    let s = |k: &str| p[k].as_str().filter(|x| !x.is_empty());
    if let Some(state) = s("state") {
        let mut line = format!("  usrsvcd: {state}");
        if let Some(up) = p["uptime_seconds"].as_u64() {
            line.push_str(&format!(", up {}", duration(up)));
        }
        if let Some(d) = s("detail") {
            line.push_str(&format!(" ({d})"));
        }
        let restarts = p["restarts"].as_u64().unwrap_or(0);
        if restarts > 0 {
            line.push_str(&format!(", restarted {restarts} times"));
        }
        let failures = p["failures"].as_u64().unwrap_or(0);
        if failures > 0 {
            line.push_str(&format!(", {failures} consecutive failures"));
        }
        out.push_str(&escaped(&line));
        out.push('\n');
    }
    if let Some(t) = s("backoff_until") {
        out.push_str(&escaped(&format!("  back-off until {t}")));
        out.push('\n');
    }
    let last = &p["last_exit"];
    if last.is_object() {
        out.push_str(&escaped(&format!(
            "  last exit: pid {} at {} {}{}",
            last["pid"],
            last["at"].as_str().unwrap_or("?"),
            last["how"].as_str().unwrap_or(""),
            last["why"]
                .as_str()
                .filter(|w| !w.is_empty())
                .map(|w| format!(" ({w})"))
                .unwrap_or_default()
        )));
        out.push('\n');
    }
    if let Some(t) = s("next_planned_restart") {
        let held = s("planned_restart_held")
            .map(|h| format!(" (held: {h})"))
            .unwrap_or_default();
        out.push_str(&escaped(&format!("  next planned restart: {t}{held}")));
        out.push('\n');
    }
    if daemon["kill_switch_on"].as_bool() == Some(true) {
        out.push_str(&escaped(&format!(
            "  kill switch: ON ({} exists)",
            daemon["kill_switch_file"].as_str().unwrap_or("?")
        )));
        out.push('\n');
    }
    out.push_str(&crate::daemon::supervise::health_lines(p));
    out
}

fn duration(secs: u64) -> String {
    match secs {
        s if s < 60 => format!("{s}s"),
        s if s < 3600 => format!("{}m{:02}s", s / 60, s % 60),
        s if s < 86_400 => format!("{}h{:02}m", s / 3600, s % 3600 / 60),
        s => format!("{}d{:02}h", s / 86_400, s % 86_400 / 3600),
    }
}

/// `--user ACCOUNT status`: one block per program.
fn status_text(answer: &Value) -> String {
    let mut out = String::new();
    for p in answer["programs"].as_array().into_iter().flatten() {
        let pid = p["pid"]
            .as_i64()
            .map(|p| format!(" pid {p}"))
            .unwrap_or_default();
        out.push_str(&escaped(&format!(
            "{}:{pid}",
            p["name"].as_str().unwrap_or("?")
        )));
        out.push('\n');
        out.push_str(&program_lines(&answer["daemon"], p));
    }
    out
}

fn plan_text(answer: &Value) -> String {
    let mut out = String::new();
    for (what, key) in [("program", "programs"), ("group", "groups")] {
        for p in answer[key].as_array().into_iter().flatten() {
            let next = p["next_planned_restart"].as_str().unwrap_or("none");
            let held = p["planned_restart_held"]
                .as_str()
                .map(|h| format!(" (held: {h})"))
                .unwrap_or_default();
            out.push_str(&escaped(&format!(
                "{what} {}: next planned restart {next}{held}",
                p["name"].as_str().unwrap_or("?")
            )));
            out.push('\n');
        }
    }
    out
}

fn list_text(answer: &Value) -> String {
    let mut out = String::new();
    for p in answer["programs"].as_array().into_iter().flatten() {
        let pid = p["pid"]
            .as_i64()
            .map(|p| format!(" pid {p}"))
            .unwrap_or_default();
        out.push_str(&escaped(&format!(
            "{} {}{pid}",
            p["name"].as_str().unwrap_or("?"),
            p["state"].as_str().unwrap_or("?")
        )));
        out.push('\n');
    }
    for g in answer["groups"].as_array().into_iter().flatten() {
        let members: Vec<&str> = g["programs"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .collect();
        out.push_str(&escaped(&format!(
            "group {}: {}",
            g["name"].as_str().unwrap_or("?"),
            members.join(" ")
        )));
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_lines_are_one_line_with_time_program_kind() {
        let e = json!({"kind":"phase","at":"T","program":"web","from":"running","to":"waiting",
            "pid":null,"detail":"crashed\nbadly"});
        assert_eq!(
            event_line(&e),
            "T web phase running -> waiting (crashed\\nbadly)"
        );
        let e = json!({"kind":"audit","record":{"time":"T","program":"web","action":"restart",
            "trigger":"delegated","result":"ok","caller":"alice","caller_uid":1001,"reason":"x"}});
        assert_eq!(
            event_line(&e),
            "T web audit restart delegated ok by alice (uid 1001): x"
        );
        let e = json!({"kind":"reread","at":"T","ok":false,"errors":["a","b"]});
        assert_eq!(event_line(&e), "T - reread config kept: a; b");
        assert!(event_line(&json!({"kind":"new_kind","x":1})).contains("new_kind"));
        assert!(!event_line(&json!(null)).is_empty());
    }

    #[test]
    fn the_daemon_view_names_state_exit_plan_and_health() {
        let p = json!({"name":"web","state":"running","uptime_seconds":3700,"restarts":2,
            "failures":0,"detail":"","last_exit":{"pid":9,"at":"T1","how":"with status 3",
            "why":"crashed"},"next_planned_restart":"T2","planned_restart_held":"window",
            "health":[{"check":"http","status":"healthy","detail":"200","at":"T3"}]});
        let d = json!({"kill_switch_on":true,"kill_switch_file":"/k"});
        assert_eq!(
            program_lines(&d, &p),
            "  usrsvcd: running, up 1h01m, restarted 2 times\n\
             \x20 last exit: pid 9 at T1 with status 3 (crashed)\n\
             \x20 next planned restart: T2 (held: window)\n\
             \x20 kill switch: ON (/k exists)\n\
             \x20   health http: healthy (200) at T3\n"
        );
        assert_eq!(program_lines(&json!({}), &json!({})), "");
    }
}
