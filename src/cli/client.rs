//! `usrsvc ACTION NAME|all [--parallel|-P] [--json] [--config PATH] [--debug]`: the compatible
//! command. Forms, messages and exit codes follow usrsvc 1.5.13 (spec §1.1, §2, §6.1–6.5).

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;

use super::{answer_early, config_path, load_config, Console};
use crate::config::Config;
use crate::config::GroupConfig;
use crate::control::{self, Action, Actor, Outcome, Report, Request, Trigger};
use crate::exit::ReturnCode;
use crate::proc::ProcInfo;

fn usage() -> String {
    let cfg = config_path(None);
    format!(
        "Usage: usrsvc (Options) [start/stop/restart/status] [program name]
  Performs the given action on the given program name.
  Use \"all\" as the program name to perform the action on every configured program,
  or a group name ([Group:NAME]) to act on its members in order.

  usrsvc signal NAME SIGNAL       Send a signal (e.g. QUIT) to the identified process.
  usrsvc health NAME|GROUP|all    Run the health checks now and print the verdicts.
  usrsvc repair NAME              Run the repair commands of the health checks now.
  usrsvc history [NAME] [-n N]    Print the audit trail (the last 20 records by default).
  usrsvc logs NAME [-n N] [-f]    Print the last N lines (10) of the program's stdout log and
                                  of its stderr log when separate; -f follows them, across
                                  rotation (copytruncate or a new file).
  usrsvc plan                     Print the next planned restart of every program and group,
                                  and what holds it back.
  usrsvc events [TARGET] [--json] Follow the running usrsvcd's events (one line each) until
                                  it stops (exit 143; 143 at once when none runs).

  usrsvc --user ACCOUNT [--socket PATH] VERB TARGET [--reason TEXT]
                                  Ask ACCOUNT's usrsvcd (its shared_socket) to act, as far as
                                  its allow_users/allow_groups grant: start, stop, restart,
                                  signal TARGET SIGNAL, health, repair; or to show: status,
                                  list, plan, history, events. Your own config is not read.
                                  Refused: exit 142 (NOT_PERMITTED); no daemon: 143.

Options:
    --parallel or -P      With start/stop/restart all, act on every program at once.
    --reason TEXT, -r     Why: recorded in the audit trail (required with require_reason).
    --force               Act although the kill switch file exists.
    -n N                  With history, how many records (default 20); with logs, how many
                          lines (default 10).
    --follow or -f        With logs, print what is written to the logs until interrupted.
    --json                With status, health, history and plan, print JSON on stdout
                          (status: an object for one program, an array for \"all\").
    --config PATH, -c     Main config file (default: $USRSVC_CONFIG, else $HOME/usrsvc.cfg).
    --user ACCOUNT        Act through ACCOUNT's daemon (see above).
    --socket PATH         With --user: its socket (default: $USRSVC_SOCKET, else the
                          [Main] shared_socket of ~ACCOUNT/usrsvc.cfg).
    --debug               Print debugging information.
    --help                Show this message.
    --version             Show the version.
    --readme              Show the README.

Main config file: $HOME/usrsvc.cfg ({})
",
        cfg.display()
    )
}

#[derive(Parser, Debug)]
#[command(
    name = "usrsvc",
    disable_help_flag = true,
    disable_version_flag = true,
    no_binary_name = true
)]
struct Args {
    #[arg(long, short = 'c', value_name = "PATH")]
    config: Option<PathBuf>,
    #[arg(long)]
    debug: bool,
    #[arg(long, short = 'P')]
    parallel: bool,
    #[arg(long)]
    json: bool,
    #[arg(long, short = 'r', value_name = "TEXT")]
    reason: Option<String>,
    #[arg(long)]
    force: bool,
    #[arg(short = 'n', value_name = "N")]
    count: Option<usize>,
    /// Act through ACCOUNT's daemon (its shared socket) instead of on our own programs.
    #[arg(long, value_name = "ACCOUNT")]
    user: Option<String>,
    /// With --user: the socket to use.
    #[arg(long, value_name = "PATH")]
    socket: Option<PathBuf>,
    /// With `logs`: follow the files.
    #[arg(long, short = 'f')]
    follow: bool,
    /// Set with --nested: the audit trigger of the parent (a group's members).
    #[arg(long, hide = true)]
    trigger: Option<String>,
    /// Set with --nested: a step of a group restart (see `control::Request::step`).
    #[arg(long, hide = true)]
    step: bool,
    /// Set by `usrsvc ACTION all` for the per-program commands it runs: their parent has
    /// already printed the config warnings and "DEBUG ON".
    #[arg(long, hide = true)]
    nested: bool,
    #[arg(num_args = 0..)]
    words: Vec<String>,
}

impl Args {
    fn ops(&self) -> super::ops::Flags<'_> {
        super::ops::Flags {
            reason: self.reason.as_deref(),
            force: self.force,
            json: self.json,
            count: self.count,
            follow: self.follow,
            nested: self.nested,
        }
    }
}

/// Entry point of the `usrsvc` binary.
pub fn main(argv: Vec<String>) -> ExitCode {
    run(argv).into()
}

fn run(argv: Vec<String>) -> ReturnCode {
    let args: Vec<String> = argv.into_iter().skip(1).collect();
    if let Some(rc) = answer_early(&args, "usrsvc", usage) {
        return rc;
    }
    let invalid = |console: &Console| {
        console.error("Invalid number of arguments.");
        super::out::eprint(&usage());
        ReturnCode::GeneralFailure
    };
    let parsed = Args::try_parse_from(&args);
    let console = Console {
        debug: parsed.as_ref().is_ok_and(|a| a.debug),
        json: parsed.as_ref().is_ok_and(|a| a.json),
    };
    let Ok(args) = parsed else {
        return invalid(&console);
    };
    if args.debug && !args.nested {
        super::out::eprint("DEBUG ON\n");
    }
    // Another account's daemon: its config is the one that counts, ours is not read.
    if let Some(account) = &args.user {
        let remote = super::remote::Remote {
            account,
            socket: args.socket.as_deref(),
            reason: args.reason.as_deref(),
            force: args.force,
            json: args.json,
            count: args.count,
        };
        return super::remote::run_user(&remote, &args.words, &console);
    }
    if args.socket.is_some() {
        console.error("--socket is only available with --user.");
        return invalid(&console);
    }
    if args.words.first().is_some_and(|w| w == "events") {
        return match &args.words[1..] {
            [] => super::remote::events_owner(None, args.json, &console),
            [target] => super::remote::events_owner(Some(target), args.json, &console),
            _ => {
                console.error("Usage: usrsvc events [TARGET] [--json]");
                ReturnCode::GeneralFailure
            }
        };
    }
    let path = config_path(args.config.clone());
    let config = match load_config(&path, &console, args.nested) {
        Ok(c) => c,
        Err(errors) => {
            if let Some(first) = errors.first() {
                super::out::eprint(&format!("ERROR in config: {first}\n"));
            }
            return ReturnCode::InvalidConfig;
        }
    };
    if let Some(code) = super::ops::run(&config, &args.words, &args.ops(), &console) {
        return code;
    }
    let [action, name] = args.words.as_slice() else {
        return invalid(&console);
    };
    let Some(action) = Action::parse(action) else {
        console.error(&format!("Unknown action: {action}"));
        return ReturnCode::InvalidAction;
    };
    // A group may have a program's name: NAME is then the group, `program:NAME` the program
    // (a nested command acts on one program, always).
    let (name, group) = match target(&config, name, args.nested) {
        Ok(t) => t,
        Err(code) => {
            console.error(&format!("No such program or group: {name}"));
            return code;
        }
    };
    let name = &name;
    if args.parallel && (name != "all" || action == Action::Status) {
        return invalid(&console);
    }
    if args.json && action != Action::Status {
        console.error("--json is only available with status.");
        return invalid(&console);
    }
    let reason = match super::ops::guard(&config, action.word(), &args.ops(), &console) {
        Ok(r) => r,
        Err(code) => return code,
    };
    let trigger = match (args.nested, args.trigger.as_deref()) {
        (true, Some(t)) => t.parse().unwrap_or(Trigger::Cli),
        _ => Trigger::Cli,
    };
    let req = Request {
        by: Actor::Operator,
        trigger,
        reason: reason.as_deref(),
        step: args.nested && args.step,
        expect: None,
        replaces: None,
        caller: None,
    };
    let nested = Nested {
        config: &config,
        debug: console.debug,
        reason: reason.as_deref(),
        force: args.force,
    };
    let code = if name == "all" {
        run_all(&nested, action, args.parallel, args.json, &console)
    } else if let Some(group) = group {
        run_group(&nested, action, group, &req, args.json, &console)
    } else {
        let outcome = control::run_as(&config, action, name, &console, &req);
        if args.json {
            super::out::println(&status_json(&config, name, &outcome).to_string());
        } else if action == Action::Status {
            print_daemon_view(&config, name);
        }
        outcome.code
    };
    // A running usrsvcd looks again at once at what was started or stopped, instead of at
    // its next pidfile check.
    if action != Action::Status && !args.nested {
        crate::daemon::instance::nudge();
    }
    code
}

/// What NAME on the command line means: (program name, group). `group:NAME` and
/// `program:NAME` say which; a bare NAME is the group when one has that name.
fn target<'c>(
    config: &'c Config,
    name: &str,
    nested: bool,
) -> Result<(String, Option<&'c GroupConfig>), ReturnCode> {
    if nested || name == "all" {
        return Ok((name.to_string(), None));
    }
    if let Some(g) = name.strip_prefix("group:") {
        return match config.group(g) {
            Some(g) => Ok((g.name.clone(), Some(g))),
            // A 1.5.13 program may be called `group:x`.
            None if config.program(name).is_some() => Ok((name.to_string(), None)),
            None => Err(ReturnCode::ProgramUndefined),
        };
    }
    if let Some(p) = name.strip_prefix("program:") {
        if config.program(p).is_some() {
            return Ok((p.to_string(), None));
        }
    }
    Ok((name.to_string(), config.group(name)))
}

/// `usrsvc ACTION GROUP`: the members in order (see `control::group`), each start, stop or
/// restart in a `usrsvc` process of its own.
fn run_group(
    nested: &Nested<'_>,
    action: Action,
    group: &GroupConfig,
    req: &Request<'_>,
    json: bool,
    console: &Console,
) -> ReturnCode {
    let config = nested.config;
    let outcomes = std::cell::RefCell::new(Vec::new());
    let member = |action: Action, name: &str, sub: &Request<'_>| -> Outcome {
        let outcome = if action == Action::Status {
            control::run_as(config, action, name, console, sub)
        } else {
            let trigger = sub.trigger.to_string();
            let spawned = nested.spawn(action, name, Some((&trigger, sub.step)));
            nested.finish(action, name, spawned, console)
        };
        if json {
            outcomes
                .borrow_mut()
                .push(status_json(config, name, &outcome));
        }
        outcome
    };
    let code = control::group::run_group(config, action, group, console, req, &member);
    if json {
        super::out::println(&serde_json::Value::Array(outcomes.into_inner()).to_string());
    }
    code
}

/// How `usrsvc` runs one program's action in a process of its own: `usrsvc --nested`.
struct Nested<'n> {
    config: &'n Config,
    debug: bool,
    reason: Option<&'n str>,
    force: bool,
}

impl Nested<'_> {
    fn spawn(
        &self,
        action: Action,
        name: &str,
        trigger: Option<(&str, bool)>,
    ) -> std::io::Result<std::process::Child> {
        let mut cmd = std::process::Command::new("/proc/self/exe");
        std::os::unix::process::CommandExt::arg0(&mut cmd, "usrsvc");
        cmd.arg("--nested")
            .arg("--config")
            .arg(&self.config.main_file);
        if self.debug {
            cmd.arg("--debug");
        }
        // `--flag=VALUE`: a value that starts with `-` (`--reason=-x`) is not taken for a flag.
        if let Some(r) = self.reason {
            cmd.arg(format!("--reason={r}"));
        }
        if self.force {
            cmd.arg("--force");
        }
        if let Some((t, step)) = trigger {
            cmd.arg(format!("--trigger={t}"));
            if step {
                cmd.arg("--step");
            }
        }
        cmd.args([action.word(), "--", name]).spawn()
    }

    fn finish(
        &self,
        action: Action,
        name: &str,
        child: std::io::Result<std::process::Child>,
        console: &Console,
    ) -> Outcome {
        let code = match child.and_then(|mut c| c.wait()) {
            Ok(status) => status
                .code()
                .and_then(ReturnCode::from_code)
                .unwrap_or(ReturnCode::UnknownFailure),
            Err(e) => {
                console.error(&format!("Cannot run usrsvc {} {name}: {e}", action.word()));
                ReturnCode::UnknownFailure
            }
        };
        Outcome::no_process(code)
    }
}

fn run_all(
    nested: &Nested<'_>,
    action: Action,
    parallel: bool,
    json: bool,
    console: &Console,
) -> ReturnCode {
    let config = nested.config;
    let names: Vec<&str> = config.programs.iter().map(|p| p.name.as_str()).collect();
    // Starts run in processes of their own: a start makes its process the subreaper of what
    // it launches and, when it fails, stops every new descendant of that process — which
    // must then be only its own program's. (1.5.13 forked one process per program too.)
    let launches = matches!(action, Action::Start | Action::Restart);
    let outcomes: Vec<Outcome> = if parallel || launches {
        run_in_subprocesses(nested, action, &names, parallel, console)
    } else {
        names
            .iter()
            .map(|n| control::run_as(config, action, n, console, &Request::cli(nested.reason)))
            .collect()
    };
    let mut failed = false;
    for (name, outcome) in names.iter().zip(&outcomes) {
        if outcome.code.is_success() {
            continue;
        }
        failed = true;
        let code = ReturnCode::describe_code(i32::from(outcome.code.code()));
        if parallel {
            console.error(&format!("{name} exited with non-zero return code: {code}"));
        } else {
            console.error(&format!(
                "{name} failed to {} with error {code}",
                action.word()
            ));
        }
    }
    if json {
        let docs: Vec<serde_json::Value> = names
            .iter()
            .zip(&outcomes)
            .map(|(n, o)| status_json(config, n, o))
            .collect();
        super::out::println(&serde_json::Value::Array(docs).to_string());
    }
    if failed {
        ReturnCode::GeneralFailure
    } else {
        ReturnCode::Success
    }
}

/// One `usrsvc ACTION NAME` process per program, one after the other, or all at once with
/// `--parallel`.
fn run_in_subprocesses(
    nested: &Nested<'_>,
    action: Action,
    names: &[&str],
    parallel: bool,
    console: &Console,
) -> Vec<Outcome> {
    if parallel {
        let children: Vec<_> = names
            .iter()
            .map(|n| nested.spawn(action, n, None))
            .collect();
        names
            .iter()
            .zip(children)
            .map(|(n, c)| nested.finish(action, n, c, console))
            .collect()
    } else {
        names
            .iter()
            .map(|n| nested.finish(action, n, nested.spawn(action, n, None), console))
            .collect()
    }
}

/// The running daemon's view of `name` under its status: state, uptime, restarts, back-off,
/// last exit, next planned restart, kill switch and health verdicts — from the daemon's
/// socket, else (for the health verdicts) its state file; nothing when no daemon runs.
fn print_daemon_view(config: &Config, name: &str) {
    // Most programs have no checks: then the state file is not read at all (`status` is the
    // command scripts call in loops); the socket is one cheap connect.
    let with_file = config
        .program(name)
        .is_some_and(|p| !p.health_checks.is_empty());
    if let Some((daemon, p)) = super::remote::daemon_program(name, with_file) {
        super::out::print(&super::remote::program_lines(&daemon, &p));
    }
}

/// The `--json` status of one program.
fn status_json(config: &Config, name: &str, outcome: &Outcome) -> serde_json::Value {
    let prog = config.program(name);
    let p: Option<&ProcInfo> = outcome.process.as_ref();
    let start = p.map(|p| chrono::DateTime::<chrono::Local>::from(p.start_time()));
    // A status that could not be determined must not read as "stopped".
    let error = match outcome.code {
        ReturnCode::Success | ReturnCode::GeneralFailure => None,
        other => Some(other.name()),
    };
    serde_json::json!({
        "name": name,
        "error": error,
        // Not "stopped": no program of that name exists (error PROGRAM_UNDEFINED).
        "state": if prog.is_none() { "undefined" } else if p.is_some() { "running" } else { "stopped" },
        "enabled": prog.map(|c| c.enabled),
        "pid": p.map(|p| p.pid),
        "start_time": start.map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, false)),
        "uptime": start.map(|t| {
            let secs = (chrono::Local::now() - t).num_milliseconds() as f64 / 1000.0;
            secs.max(0.0)
        }),
        "cmdline": p.map(|p| p.cmdline.clone()),
        "rss": p.map(|p| p.rss_kb()),
        "pidfile": prog.map(|c| c.pidfile.display().to_string()),
        // The daemon's last health verdicts: [] without checks, null when no usrsvcd runs.
        "health": if prog.is_none_or(|p| p.health_checks.is_empty()) {
            serde_json::json!([])
        } else {
            super::remote::daemon_program(name, true)
                .map(|(_, p)| p["health"].clone())
                .unwrap_or(serde_json::Value::Null)
        },
        // The daemon's state of the program (its socket's `status`), null when none answers.
        "daemon": super::remote::daemon_program(name, false)
            .map(|(_, p)| p)
            .unwrap_or(serde_json::Value::Null),
    })
}
