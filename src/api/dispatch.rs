//! What each request of the control API does: the read ops answered from the backend's
//! snapshot and config (filtered by what the caller may see), and the change ops decided by
//! `rules` and run by the daemon's worker process (`usrsvcd --worker`), with the daemon's
//! in-memory config on its stdin, in a thread of their own.
//!
//! Must not: run anything a request names — the worker runs the config's commands — or keep
//! more than [`KEPT_RESULTS`] results and [`OUTPUT_LINES`] lines of a worker's output.

use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{json, Value};

use super::protocol::{self, ApiError, ErrorKind, Request};
use super::rules::{self, Ask, Kind, Op, Target};
use super::server::{peer_gone, send_value, Ctx, OpResult, KEPT_RESULTS};
use super::Caller;
use crate::config::Config;
use crate::control::Report;
use crate::daemon::state::Event;

/// Lines of a worker's output kept (the last ones).
pub const OUTPUT_LINES: usize = 200;
/// A longer line of output is cut.
const OUTPUT_LINE_BYTES: usize = 4096;
/// The most records `history` answers with.
const HISTORY_MAX: usize = 10_000;

/// Answers `req`; `false` when the connection is to end.
pub(super) fn answer(ctx: &Arc<Ctx>, out: &UnixStream, caller: &Caller, req: Request) -> bool {
    let config = ctx.backend.config();
    let kind = Kind::of(caller, &config, ctx.limits.owner_uid);
    let result = match &req {
        Request::List {} => read(kind, &config, None).map(|_| list(ctx, kind, &config)),
        Request::Status { target } => {
            read(kind, &config, target.as_deref()).map(|t| status(ctx, kind, &config, t.as_ref()))
        }
        Request::Plan { target } => {
            read(kind, &config, target.as_deref()).map(|t| plan(ctx, kind, &config, t.as_ref()))
        }
        Request::History { target, limit } => read(kind, &config, target.as_deref())
            .and_then(|t| history(kind, &config, t.as_ref(), *limit)),
        Request::Events { target } => {
            return match read(kind, &config, target.as_deref()) {
                Ok(t) => events(ctx, out, kind, &config, t.as_ref().map(|t| t.name())),
                Err(e) => send_value(out, &e.to_value()),
            };
        }
        Request::Wait { id } => match wait_for(ctx, kind, caller, *id) {
            Ok(v) => return send_value(out, &v),
            Err(e) => Err(e),
        },
        Request::Reread { force } => {
            let ask = Ask {
                op: Op::Reread,
                target: None,
                reason: None,
                force: *force,
                kill_switch: false,
            };
            match rules::decide(kind, &config, &ask) {
                Err(r) => {
                    audit_refusal(ctx, &config, caller, kind, "reread", "all", None, &r.rule);
                    Err(r.into())
                }
                Ok(_) => match ctx.backend.reread(*force) {
                    Ok(()) => Ok(protocol::ok(json!({}))),
                    Err((code, errors)) => Err(ApiError {
                        kind: ErrorKind::Reread,
                        message: errors.join("\n"),
                        rule: None,
                        code,
                    }),
                },
            }
        }
        _ => return change(ctx, out, caller, kind, &config, &req),
    };
    match result {
        Ok(v) => send_value(out, &v),
        Err(e) => send_value(out, &e.to_value()),
    }
}

fn read<'c>(
    kind: Kind,
    config: &'c Config,
    target: Option<&str>,
) -> Result<Option<Target<'c>>, ApiError> {
    let ask = Ask {
        op: Op::Read,
        target,
        reason: None,
        force: false,
        kill_switch: false,
    };
    rules::decide(kind, config, &ask)
        .map(|t| t.filter(|t| *t != Target::All))
        .map_err(ApiError::from)
}

/// Whether a program (or group) called `name` is in `target` and the caller may see it.
fn shown(kind: Kind, config: &Config, target: Option<&Target<'_>>, name: &str) -> bool {
    let visible = rules::visible(kind, config, name) || rules::group_visible(kind, config, name);
    visible
        && match target {
            None | Some(Target::All) => true,
            Some(Target::Program(p)) => p.name == name,
            Some(Target::Group(g)) => g.name == name || g.programs.iter().any(|m| m == name),
        }
}

fn list(ctx: &Ctx, kind: Kind, config: &Config) -> Value {
    let snap = ctx.backend.snapshot();
    let programs: Vec<Value> = snap
        .programs
        .iter()
        .filter(|p| rules::visible(kind, config, &p.name))
        .map(|p| {
            let groups: Vec<&String> = p
                .groups
                .iter()
                .filter(|g| rules::group_visible(kind, config, g))
                .collect();
            json!({"name": p.name, "state": p.state, "pid": p.pid, "groups": groups})
        })
        .collect();
    let groups: Vec<Value> = snap
        .groups
        .iter()
        .filter(|g| rules::group_visible(kind, config, &g.name))
        .map(|g| {
            let members: Vec<&String> = g
                .programs
                .iter()
                .filter(|m| rules::visible(kind, config, m))
                .collect();
            json!({"name": g.name, "programs": members})
        })
        .collect();
    protocol::ok(json!({"programs": programs, "groups": groups}))
}

/// The snapshot's programs and groups that `target` and the caller's view hold.
fn selected(
    ctx: &Ctx,
    kind: Kind,
    config: &Config,
    target: Option<&Target<'_>>,
) -> (
    Arc<crate::daemon::state::Snapshot>,
    Vec<crate::daemon::state::ProgramState>,
    Vec<crate::daemon::state::GroupState>,
) {
    let snap = ctx.backend.snapshot();
    let programs = snap
        .programs
        .iter()
        .filter(|p| rules::visible(kind, config, &p.name) && shown(kind, config, target, &p.name))
        .cloned()
        .map(|mut p| {
            p.groups.retain(|g| rules::group_visible(kind, config, g));
            p
        })
        .collect();
    let groups = snap
        .groups
        .iter()
        .filter(|g| {
            rules::group_visible(kind, config, &g.name)
                && match target {
                    None | Some(Target::All) => true,
                    Some(Target::Group(t)) => t.name == g.name,
                    Some(Target::Program(_)) => false,
                }
        })
        .cloned()
        .map(|mut g| {
            g.programs.retain(|m| rules::visible(kind, config, m));
            g
        })
        .collect();
    (snap, programs, groups)
}

fn status(ctx: &Ctx, kind: Kind, config: &Config, target: Option<&Target<'_>>) -> Value {
    let (snap, programs, groups) = selected(ctx, kind, config, target);
    protocol::ok(json!({
        "daemon": {
            "pid": snap.pid,
            "config_file": snap.config_file,
            "kill_switch_file": snap.kill_switch_file,
            "kill_switch_on": snap.kill_switch_on,
            "reread_in_progress": snap.reread_in_progress,
            "at": snap.at,
        },
        "programs": programs,
        "groups": groups,
    }))
}

fn plan(ctx: &Ctx, kind: Kind, config: &Config, target: Option<&Target<'_>>) -> Value {
    let (_, programs, groups) = selected(ctx, kind, config, target);
    let programs: Vec<Value> = programs
        .iter()
        .map(|p| json!({"name": p.name, "next_planned_restart": p.next_planned_restart, "planned_restart_held": p.planned_restart_held}))
        .collect();
    let groups: Vec<Value> = groups
        .iter()
        .map(|g| json!({"name": g.name, "next_planned_restart": g.next_planned_restart, "planned_restart_held": g.planned_restart_held, "restarting": g.restarting}))
        .collect();
    protocol::ok(json!({"programs": programs, "groups": groups}))
}

fn history(
    kind: Kind,
    config: &Config,
    target: Option<&Target<'_>>,
    limit: Option<u32>,
) -> Result<Value, ApiError> {
    let n = limit.map_or(20, |l| l as usize).min(HISTORY_MAX);
    let Some(path) = crate::control::audit::log_path(config) else {
        return Ok(protocol::ok(json!({"records": []})));
    };
    let keep = |r: &crate::audit::Record| shown(kind, config, target, &r.program);
    match crate::audit::read_history_where(&path, &keep, n) {
        Ok((records, _)) => Ok(protocol::ok(json!({"records": records}))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            Ok(protocol::ok(json!({"records": []})))
        }
        Err(e) => Err(ApiError::new(
            ErrorKind::Internal,
            format!("cannot read the audit log: {e}"),
        )),
    }
}

/// The event stream: the header, then each event the caller may see, until the client goes
/// away, the subscription ends, or the server stops.
fn events(ctx: &Ctx, out: &UnixStream, kind: Kind, config: &Config, target: Option<&str>) -> bool {
    let events = ctx.backend.subscribe();
    if !send_value(out, &protocol::ok(json!({"stream": "events"}))) {
        return false;
    }
    let target = target.and_then(|t| rules::resolve(config, t));
    loop {
        match events.recv_timeout(Duration::from_millis(500)) {
            Ok(event) => {
                let show = match event.program() {
                    Some(name) => shown(kind, config, target.as_ref(), name),
                    // Rereads: the config's errors are the owner's business.
                    None => kind.full() && target.is_none(),
                };
                if show && !send_value(out, &protocol::event(&event)) {
                    return false;
                }
            }
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
                if ctx.stop.load(Ordering::SeqCst) || peer_gone(out) {
                    return false;
                }
            }
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => return false,
        }
    }
}

/// Waits for op `id` (the caller's own, or any for the owner and root) and returns its done
/// line.
fn wait_for(ctx: &Ctx, kind: Kind, caller: &Caller, id: u64) -> Result<Value, ApiError> {
    let missing = || {
        ApiError::new(
            ErrorKind::NotFound,
            format!("no operation {id} (results are kept for the last {KEPT_RESULTS})"),
        )
    };
    let mut results = ctx.results.lock().map_err(|_| missing())?;
    loop {
        let Some(r) = results
            .iter()
            .find(|r| r.id == id && (r.uid == caller.uid || kind.full()))
        else {
            return Err(missing());
        };
        if let Some((code, result, output)) = &r.done {
            return Ok(protocol::done(id, *code, result, output));
        }
        if ctx.stop.load(Ordering::SeqCst) {
            return Err(ApiError::new(ErrorKind::Internal, "the daemon is stopping"));
        }
        results = ctx
            .results_changed
            .wait_timeout(results, Duration::from_secs(1))
            .map_err(|_| missing())?
            .0;
    }
}

/// One worker run: the ACTION word, the NAME, and the config it gets.
struct Job {
    action: String,
    name: String,
    config: Config,
}

/// A change op: decided, accepted, run in a thread; the done line follows if `wait`.
fn change(
    ctx: &Arc<Ctx>,
    out: &UnixStream,
    caller: &Caller,
    kind: Kind,
    config: &Arc<Config>,
    req: &Request,
) -> bool {
    let op_word = req.op();
    let (op, target, reason, wait, force, check) = match req {
        Request::Start(c) => (Op::Start, &c.target, &c.reason, c.wait, c.force, None),
        Request::Stop(c) => (Op::Stop, &c.target, &c.reason, c.wait, c.force, None),
        Request::Restart(c) => (Op::Restart, &c.target, &c.reason, c.wait, c.force, None),
        Request::Signal(c) => match protocol::parse_signal(&c.signal) {
            Ok(n) => (Op::Signal(n), &c.target, &c.reason, c.wait, c.force, None),
            Err(e) => return send_value(out, &ApiError::new(ErrorKind::BadRequest, e).to_value()),
        },
        Request::Health {
            target,
            reason,
            wait,
        } => (Op::Health, target, reason, *wait, false, None),
        Request::Repair(c) => (
            Op::Repair,
            &c.target,
            &c.reason,
            c.wait,
            false,
            c.check.as_deref(),
        ),
        _ => {
            return send_value(
                out,
                &ApiError::new(ErrorKind::Internal, "not a change").to_value(),
            )
        }
    };
    let reason = reason.as_deref().map(str::trim).filter(|r| !r.is_empty());
    let ask = Ask {
        op,
        target: Some(target),
        reason,
        force,
        kill_switch: crate::control::hold::kill_switch(config).is_some(),
    };
    let resolved = match rules::decide(kind, config, &ask) {
        Ok(Some(t)) => t,
        Ok(None) => Target::All,
        Err(r) => {
            let action = action_word(op, check, false);
            audit_refusal(ctx, config, caller, kind, &action, target, reason, &r.rule);
            return send_value(out, &ApiError::from(r).to_value());
        }
    };
    let jobs = jobs(config, op, check, &resolved);
    let id = ctx.next_id.fetch_add(1, Ordering::SeqCst);
    if let Ok(mut results) = ctx.results.lock() {
        if results.len() == KEPT_RESULTS {
            results.pop_front();
        }
        results.push_back(OpResult {
            id,
            uid: caller.uid,
            done: None,
        });
    }
    let run = Run {
        id,
        op: op_word.to_string(),
        target: resolved.name().to_string(),
        delegated: !kind.full(),
        reason: reason.map(str::to_string),
        caller: format!("{}:{}", caller.user, caller.uid),
        force,
    };
    ctx.log.info(&format!(
        "control: op {id}: {op_word} {} by {} (uid {}){}",
        resolved.name(),
        caller.user,
        caller.uid,
        reason.map_or(String::new(), |r| format!(", reason: {r}"))
    ));
    let thread_ctx = Arc::clone(ctx);
    let spawned = std::thread::Builder::new()
        .name("usrsvcd-api-op".into())
        .spawn(move || run.go(&thread_ctx, jobs));
    if let Err(e) = spawned {
        finish(
            ctx,
            id,
            254,
            format!("failed: cannot start a thread: {e}"),
            Vec::new(),
        );
    }
    if !send_value(out, &protocol::accepted(id)) {
        return false;
    }
    if wait {
        return match wait_for(ctx, kind, caller, id) {
            Ok(v) => send_value(out, &v),
            Err(e) => send_value(out, &e.to_value()),
        };
    }
    true
}

/// The worker's ACTION word.
fn action_word(op: Op, check: Option<&str>, group: bool) -> String {
    let base = match op {
        Op::Start => "start",
        Op::Stop => "stop",
        Op::Restart => "restart",
        Op::Signal(n) => return format!("signal:{n}"),
        Op::Health => "health",
        Op::Repair => {
            return match check {
                Some(c) => format!("repair:{c}"),
                None => "repair".into(),
            }
        }
        Op::Read | Op::Reread => "",
    };
    if group {
        format!("{base}-group")
    } else {
        base.to_string()
    }
}

/// The config a worker gets: `[Main]` and only what it acts on (as the daemon's own
/// workers get it).
fn worker_config(
    config: &Config,
    programs: Vec<crate::config::ProgramConfig>,
    groups: Vec<crate::config::GroupConfig>,
) -> Config {
    Config {
        main_file: config.main_file.clone(),
        files: Vec::new(),
        main: config.main.clone(),
        programs,
        groups,
        warnings: Vec::new(),
        daemon_errors: Vec::new(),
    }
}

fn jobs(config: &Config, op: Op, check: Option<&str>, target: &Target<'_>) -> Vec<Job> {
    let one = |p: &crate::config::ProgramConfig| Job {
        action: action_word(op, check, false),
        name: p.name.clone(),
        config: worker_config(config, vec![p.clone()], Vec::new()),
    };
    match target {
        Target::Program(p) => vec![one(p)],
        Target::Group(g) => vec![Job {
            action: action_word(op, check, true),
            name: g.name.clone(),
            config: worker_config(
                config,
                config
                    .programs
                    .iter()
                    .filter(|p| g.programs.contains(&p.name))
                    .cloned()
                    .collect(),
                vec![(*g).clone()],
            ),
        }],
        // Stop goes in reverse order, as `usrsvc stop all`.
        Target::All if op == Op::Stop => config.programs.iter().rev().map(one).collect(),
        Target::All => config.programs.iter().map(one).collect(),
    }
}

/// An accepted op, as its thread runs it.
struct Run {
    id: u64,
    op: String,
    target: String,
    delegated: bool,
    reason: Option<String>,
    /// `USER:UID`.
    caller: String,
    force: bool,
}

impl Run {
    fn go(self, ctx: &Ctx, jobs: Vec<Job>) {
        let mut code = 0;
        let mut output = VecDeque::new();
        for job in jobs {
            let (c, lines) = self.worker(ctx, &job);
            if code == 0 {
                code = c;
            }
            for l in lines {
                if output.len() == OUTPUT_LINES {
                    output.pop_front();
                }
                output.push_back(l);
            }
        }
        let result = if code == 0 {
            "ok".to_string()
        } else {
            format!("failed: {}", crate::exit::ReturnCode::describe_code(code))
        };
        ctx.backend.emit(Event::OpDone {
            id: self.id,
            op: self.op.clone(),
            target: self.target.clone(),
            code,
            result: result.clone(),
        });
        ctx.log.info(&format!(
            "control: op {}: {} {}: {result}",
            self.id, self.op, self.target
        ));
        // The loop looks at once, before the caller hears it is done.
        ctx.backend.nudge();
        finish(ctx, self.id, code, result, output.into());
    }

    /// Runs one worker: its exit code and the last lines of its stdout and stderr.
    fn worker(&self, ctx: &Ctx, job: &Job) -> (i32, Vec<String>) {
        let unknown = i32::from(crate::exit::ReturnCode::UnknownFailure.code());
        let json = match serde_json::to_vec(&job.config) {
            Ok(j) => j,
            Err(e) => {
                return (
                    unknown,
                    vec![format!("cannot hand the config to a worker: {e}")],
                )
            }
        };
        let (read, write) = match rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC) {
            Ok(p) => p,
            Err(e) => return (unknown, vec![format!("cannot make a pipe: {e}")]),
        };
        let stderr = match write.try_clone() {
            Ok(w) => w,
            Err(e) => return (unknown, vec![format!("cannot make a pipe: {e}")]),
        };
        let mut cmd = Command::new(&ctx.limits.worker);
        cmd.arg0("usrsvcd")
            .arg("--worker")
            .arg(&job.action)
            // Human lines: the output goes back to a person.
            .arg("--log-format")
            .arg("human")
            .arg(format!(
                "--trigger={}",
                if self.delegated { "delegated" } else { "cli" }
            ));
        if let Some(r) = &self.reason {
            cmd.arg(format!("--reason={r}"));
        }
        if self.delegated {
            cmd.arg(format!("--caller={}", self.caller));
        }
        if self.force {
            cmd.arg("--force");
        }
        cmd.arg("--")
            .arg(&job.name)
            .stdin(Stdio::piped())
            .stdout(Stdio::from(write))
            .stderr(Stdio::from(stderr));
        let spawned = cmd.spawn();
        // Our copies of the pipe's write end go with `cmd`: EOF comes when the worker ends.
        drop(cmd);
        let mut child = match spawned {
            Ok(c) => c,
            Err(e) => {
                ctx.log
                    .error(&format!("({}) - cannot run a worker: {e}", job.name));
                return (unknown, vec![format!("cannot run a worker: {e}")]);
            }
        };
        let lines = Arc::new(Mutex::new(VecDeque::new()));
        let (done_tx, done_rx) = std::sync::mpsc::channel();
        let reader_lines = Arc::clone(&lines);
        let reader = std::thread::Builder::new()
            .name("usrsvcd-api-out".into())
            .spawn(move || {
                collect(std::fs::File::from(read), &reader_lines);
                let _ = done_tx.send(());
            });
        if let Some(mut stdin) = child.stdin.take() {
            let _ = stdin.write_all(&json);
        }
        let code = match child.wait() {
            Ok(st) => st.code().unwrap_or(unknown),
            Err(_) => unknown,
        };
        // A process the worker left behind may hold the pipe: its output is not waited for
        // beyond a moment.
        if reader.is_ok() {
            let _ = done_rx.recv_timeout(Duration::from_secs(2));
        }
        let lines = lines
            .lock()
            .map(|l| l.iter().cloned().collect())
            .unwrap_or_default();
        (code, lines)
    }
}

/// Reads `from` to its end, keeping the last [`OUTPUT_LINES`] lines, each cut at
/// [`OUTPUT_LINE_BYTES`].
fn collect(from: std::fs::File, lines: &Mutex<VecDeque<String>>) {
    let mut reader = BufReader::new(from);
    let mut line = Vec::new();
    loop {
        line.clear();
        match (&mut reader)
            .take(OUTPUT_LINE_BYTES as u64)
            .read_until(b'\n', &mut line)
        {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        let text = String::from_utf8_lossy(&line)
            .trim_end_matches('\n')
            .to_string();
        if !line.ends_with(b"\n") {
            // The rest of an over-long line is skipped.
            let _ = reader.skip_until(b'\n');
        }
        if let Ok(mut l) = lines.lock() {
            if l.len() == OUTPUT_LINES {
                l.pop_front();
            }
            l.push_back(text);
        }
    }
}

/// Records op `id`'s result and wakes its waiters.
fn finish(ctx: &Ctx, id: u64, code: i32, result: String, output: Vec<String>) {
    if let Ok(mut results) = ctx.results.lock() {
        if let Some(r) = results.iter_mut().find(|r| r.id == id) {
            r.done = Some((code, result, output));
        }
    }
    ctx.results_changed.notify_all();
}

/// A refused change op of anyone but the owner goes into the audit trail, the caller named.
#[expect(clippy::too_many_arguments, reason = "one field of the record each")]
fn audit_refusal(
    ctx: &Ctx,
    config: &Config,
    caller: &Caller,
    kind: Kind,
    action: &str,
    target: &str,
    reason: Option<&str>,
    rule: &str,
) {
    if kind.full() {
        return;
    }
    if !refusal_audited(ctx, caller.uid) {
        return;
    }
    let Some(log) = crate::control::audit::audit_log(config) else {
        return;
    };
    let record = crate::audit::Record::new(
        target,
        action,
        crate::audit::Trigger::Delegated,
        reason.map(str::to_string),
        format!("refused: {rule}"),
        None,
        None,
    )
    .with_caller(Some(&(caller.user.clone(), caller.uid)));
    for problem in log.append(&record) {
        ctx.log
            .error(&format!("({target}) - Warning: audit: {problem}"));
    }
}

/// How many refusals of one caller are audited per minute; the rest are counted in the
/// daemon's log only (a local user hammering the shared socket cannot fill the trail).
const REFUSALS_AUDITED_PER_MINUTE: u32 = 30;

/// Whether this refusal of `uid` goes to the audit trail.
fn refusal_audited(ctx: &Ctx, uid: u32) -> bool {
    let now = std::time::Instant::now();
    let Ok(mut map) = ctx.refusals.lock() else {
        return false;
    };
    if map.len() > 4096 {
        map.retain(|_, (start, _)| now.duration_since(*start).as_secs() < 60);
    }
    let entry = map.entry(uid).or_insert((now, 0));
    if now.duration_since(entry.0).as_secs() >= 60 {
        *entry = (now, 0);
    }
    entry.1 += 1;
    if entry.1 == REFUSALS_AUDITED_PER_MINUTE + 1 {
        ctx.log.error(&format!(
            "control: more than {REFUSALS_AUDITED_PER_MINUTE} refusals of uid {uid} this minute; the rest are not audited"
        ));
    }
    entry.1 <= REFUSALS_AUDITED_PER_MINUTE
}
