//! `usrsvc ACTION NAME|all [--parallel|-P] [--json] [--config PATH] [--debug]`: the compatible
//! command. Forms, messages and exit codes follow usrsvc 1.5.13 (spec §1.1, §2, §6.1–6.5).

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;

use super::{answer_early, config_path, load_config, Console};
use crate::config::Config;
use crate::control::{self, Action, Outcome, Report};
use crate::exit::ReturnCode;
use crate::proc::ProcInfo;

fn usage() -> String {
    let cfg = config_path(None);
    format!(
        "Usage: usrsvc (Options) [start/stop/restart/status] [program name]
  Performs the given action on the given program name.
  Use \"all\" as the program name to perform the action on every configured program.

Options:
    --parallel or -P      With start/stop/restart all, act on every program at once.
    --json                With status, print a JSON document on stdout (an object for one
                          program, an array for \"all\").
    --config PATH, -c     Main config file (default: $USRSVC_CONFIG, else $HOME/usrsvc.cfg).
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
    /// Set by `usrsvc ACTION all` for the per-program commands it runs: their parent has
    /// already printed the config warnings and "DEBUG ON".
    #[arg(long, hide = true)]
    nested: bool,
    #[arg(num_args = 0..)]
    words: Vec<String>,
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
        eprint!("{}", usage());
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
        eprintln!("DEBUG ON");
    }
    let path = config_path(args.config.clone());
    let config = match load_config(&path, &console, args.nested) {
        Ok(c) => c,
        Err(errors) => {
            if let Some(first) = errors.first() {
                eprintln!("ERROR in config: {first}");
            }
            return ReturnCode::InvalidConfig;
        }
    };
    let [action, name] = args.words.as_slice() else {
        return invalid(&console);
    };
    let Some(action) = Action::parse(action) else {
        console.error(&format!("Unknown action: {action}"));
        return ReturnCode::InvalidAction;
    };
    if args.parallel && (name != "all" || action == Action::Status) {
        return invalid(&console);
    }
    if args.json && action != Action::Status {
        console.error("--json is only available with status.");
        return invalid(&console);
    }
    let code = if name == "all" {
        run_all(&config, action, args.parallel, args.json, &console)
    } else {
        let outcome = control::run(&config, action, name, &console);
        if args.json {
            println!("{}", status_json(&config, name, &outcome));
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

fn run_all(
    config: &Config,
    action: Action,
    parallel: bool,
    json: bool,
    console: &Console,
) -> ReturnCode {
    let names: Vec<&str> = config.programs.iter().map(|p| p.name.as_str()).collect();
    // Starts run in processes of their own: a start makes its process the subreaper of what
    // it launches and, when it fails, stops every new descendant of that process — which
    // must then be only its own program's. (1.5.13 forked one process per program too.)
    let launches = matches!(action, Action::Start | Action::Restart);
    let outcomes: Vec<Outcome> = if parallel || launches {
        run_in_subprocesses(config, action, &names, parallel, console)
    } else {
        names
            .iter()
            .map(|n| control::run(config, action, n, console))
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
        println!("{}", serde_json::Value::Array(docs));
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
    config: &Config,
    action: Action,
    names: &[&str],
    parallel: bool,
    console: &Console,
) -> Vec<Outcome> {
    let spawn = |name: &str| {
        let mut cmd = std::process::Command::new("/proc/self/exe");
        std::os::unix::process::CommandExt::arg0(&mut cmd, "usrsvc");
        cmd.arg("--nested").arg("--config").arg(&config.main_file);
        if console.debug {
            cmd.arg("--debug");
        }
        cmd.args([action.word(), "--", name]).spawn()
    };
    let finish = |name: &str, child: std::io::Result<std::process::Child>| {
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
    };
    if parallel {
        let children: Vec<_> = names.iter().map(|n| spawn(n)).collect();
        names
            .iter()
            .zip(children)
            .map(|(n, c)| finish(n, c))
            .collect()
    } else {
        names.iter().map(|n| finish(n, spawn(n))).collect()
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
        "state": if p.is_some() { "running" } else { "stopped" },
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
    })
}
