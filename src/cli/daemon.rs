//! `usrsvcd [ACTION]`: the daemon's command line (spec §1.2, §6.6–6.9). `start` (the default)
//! detaches and returns only once the daemon is up, or says why it is not; `--foreground`
//! runs it in place (systemd, tests). `stop|status|restart|reread` find the running daemon by
//! its instance lock, pid, start time and uid. `--worker` is internal: the daemon's start
//! and restart workers.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use clap::Parser;

use super::{answer_early, config_path, load_config, Console};
use crate::control::signal::Pidfd;
use crate::control::{process_dict, Report};
use crate::daemon::instance::{self, Instance, Readiness, StartError};
use crate::daemon::reread;
use crate::daemon::supervise::{Daemon, Options};
use crate::daemon::{Format, Log};
use crate::exit::ReturnCode;
use crate::proc::ProcInfo;

fn usage() -> String {
    format!(
        "Usage: usrsvcd (Optional: [action])
  Runs the usrsvc daemon, or acts on a running one.

Actions:
    start        Start the daemon in the background (default); returns once it is up.
    stop         Stop the running daemon; programs keep running.
    restart      Restart the daemon; programs keep running.
    status       Tell whether the daemon is running, with its view of the programs.
    reread       Load a changed configuration into the running daemon (also SIGUSR1, SIGHUP).
    checkconfig  Check the configuration and print every error in it.

Options:
    --config PATH, -c     Main config file (default: $USRSVC_CONFIG, else $HOME/usrsvc.cfg).
    --foreground          Run the daemon in the foreground (systemd, containers).
    --log-format FORMAT   human (default) or json: one JSON object per log line.
    --debug               Print debugging information.
    --json                status: one JSON document on stdout.
    --force               reread, restart: load a config even if it ends the supervision
                          of most programs (one that usrsvcd otherwise refuses as cut short).

stop, restart, status and reread act only on a daemon that runs the same main config file;
one that runs another is left alone (exit 1).

Uses main config file in $HOME/usrsvc.cfg ( {} )
",
        config_path(None).display()
    )
}

#[derive(Parser, Debug)]
#[command(
    name = "usrsvcd",
    disable_help_flag = true,
    disable_version_flag = true,
    no_binary_name = true
)]
struct Args {
    #[arg(long, short = 'c', value_name = "PATH")]
    config: Option<PathBuf>,
    #[arg(long)]
    debug: bool,
    #[arg(long)]
    foreground: bool,
    #[arg(long, value_name = "FORMAT")]
    log_format: Option<String>,
    #[arg(long)]
    json: bool,
    #[arg(long)]
    force: bool,
    /// Internal: report readiness on the pipe given as stdin (used by `usrsvcd start`).
    #[arg(long, hide = true)]
    ready_on_stdin: bool,
    /// Internal: run one start/restart for the daemon, config as JSON on stdin.
    #[arg(long, hide = true, value_name = "ACTION")]
    worker: Option<String>,
    /// Internal: the worker's audit trigger (`crash`, `schedule`, `health:NAME`, …).
    #[arg(long, hide = true, value_name = "TRIGGER")]
    trigger: Option<String>,
    /// Internal: the worker's audit reason.
    #[arg(long, hide = true, value_name = "TEXT")]
    reason: Option<String>,
    /// Internal: the process (`PID:START_TICKS`) a worker's restart is meant for.
    #[arg(long, hide = true, value_name = "PID:TICKS")]
    expect: Option<String>,
    /// Internal: the pid of the process a crash restart replaces (for the audit record).
    #[arg(long, hide = true, value_name = "PID")]
    replaces: Option<i32>,
    /// Internal: the delegated caller (`USER:UID`) a worker of the control API acts for.
    #[arg(long, hide = true, value_name = "USER:UID")]
    caller: Option<String>,
    /// Internal: a worker that acts as the operator's `usrsvc` would (a group member's
    /// worker of a control API action).
    #[arg(long, hide = true)]
    as_operator: bool,
    /// Internal: a member's worker of a group restart (see `control::Request::step`).
    #[arg(long, hide = true)]
    step: bool,
    #[arg(num_args = 0..)]
    words: Vec<String>,
}

/// Entry point of the `usrsvcd` binary.
pub fn main(argv: Vec<String>) -> ExitCode {
    run(argv).into()
}

fn run(argv: Vec<String>) -> ReturnCode {
    let args: Vec<String> = argv.into_iter().skip(1).collect();
    if let Some(rc) = answer_early(&args, "usrsvcd", usage) {
        return rc;
    }
    let console = Console {
        debug: false,
        json: false,
    };
    let Ok(args) = Args::try_parse_from(&args) else {
        console.error("Too many arguments.\n");
        super::out::eprint(&usage());
        return ReturnCode::GeneralFailure;
    };
    let console = Console {
        debug: args.debug,
        json: false,
    };
    let format = match args.log_format.as_deref().map(Format::parse) {
        None => Format::Human,
        Some(Some(f)) => f,
        Some(None) => {
            console.error("--log-format must be human or json.");
            return ReturnCode::GeneralFailure;
        }
    };
    if let Some(action) = &args.worker {
        let worker_args = super::worker::WorkerArgs {
            trigger: args.trigger.as_deref(),
            reason: args.reason.as_deref(),
            expect: args.expect.as_deref(),
            replaces: args.replaces,
            caller: args.caller.as_deref(),
            as_operator: args.as_operator,
            step: args.step,
            force: args.force,
        };
        return super::worker::worker(
            action,
            &args.words,
            &worker_args,
            Log::new(format, args.debug),
        );
    }
    let action = match args.words.as_slice() {
        [] => "start",
        [one] => one.as_str(),
        _ => {
            console.error("Too many arguments.\n");
            super::out::eprint(&usage());
            return ReturnCode::GeneralFailure;
        }
    };
    // Absolute: the daemon rereads it later, and `usrsvcd status` shows it in the cmdline.
    let path = config_path(args.config.clone());
    let path = std::path::absolute(&path).unwrap_or(path);
    if args.json && action != "status" {
        console.error("--json is only available with status.");
        return ReturnCode::GeneralFailure;
    }
    if args.force && action != "reread" && action != "restart" {
        console.error("--force is only available with reread and restart.");
        return ReturnCode::GeneralFailure;
    }
    // The running daemon, if it runs this config file; another daemon's is not ours to touch.
    let running = || daemon_of(&path, &console, args.json);
    match action {
        "start" if args.foreground => foreground(&path, &args, format),
        "start" => start(&path, &args, &console),
        "checkconfig" => match load_config(&path, &console, false) {
            Ok(cfg) => {
                for prog in &cfg.programs {
                    for w in crate::control::spawn::check_exec(prog) {
                        console.warn(&format!("Warning: {w}"));
                    }
                }
                // What `usrsvcd start` would fail on (136) though the config is valid.
                for e in &cfg.daemon_errors {
                    console.error(&format!("Error in configuration: {e}"));
                }
                if cfg.daemon_errors.is_empty() {
                    ReturnCode::Success
                } else {
                    ReturnCode::InsufficientPermissions
                }
            }
            Err(errors) => {
                for e in errors.iter() {
                    console.error(&format!("Error in configuration: {e}"));
                }
                ReturnCode::InvalidConfig
            }
        },
        "status" => match running() {
            Ok(d) => status(d, &console, args.json),
            Err(rc) => rc,
        },
        "stop" => match running() {
            Ok(Some((p, runs))) => {
                console.info(&format!(
                    "usrsvcd pid={} runs the config file {}.",
                    p.pid,
                    runs.display()
                ));
                stop(&p, &console)
            }
            Ok(None) => ReturnCode::Success,
            Err(rc) => rc,
        },
        "restart" => match running() {
            Ok(d) => restart(d, &path, &args, &console),
            Err(rc) => rc,
        },
        "reread" => match running() {
            Ok(d) => reread(d, &path, args.force, &console),
            Err(rc) => rc,
        },
        other => {
            console.error(&format!("Unknown action: {other}"));
            ReturnCode::InvalidAction
        }
    }
}

/// `usrsvcd --foreground`: the daemon itself.
fn foreground(path: &Path, args: &Args, format: Format) -> ReturnCode {
    instance::take_notify_socket();
    let log = Log::new(format, args.debug);
    let mut ready = Readiness::new(args.ready_on_stdin);
    let fail = |ready: &mut Readiness, e: StartError| {
        log.error(&e.message);
        ready.report(Err(&e));
        e.code
    };
    let config = match crate::config::load(path, &super::home_dir()) {
        Ok(c) => c,
        Err(errors) => {
            for e in errors.iter() {
                log.error(&format!("Error in configuration: {e}"));
            }
            let first = errors
                .iter()
                .next()
                .map(|e| e.to_string())
                .unwrap_or_default();
            ready.report(Err(&StartError::new(
                ReturnCode::InvalidConfig,
                format!("Error in configuration: {first}"),
            )));
            return ReturnCode::InvalidConfig;
        }
    };
    // Detached (`usrsvcd start`) without a log file: not the terminal it was started from.
    let default_log = if args.ready_on_stdin {
        instance::default_log()
    } else {
        None
    };
    if let Err(e) = instance::open_logs(&config.main, default_log.as_deref()) {
        return fail(&mut ready, e);
    }
    for w in &config.warnings {
        log.warn(w);
    }
    // From the claim (pidfile written) until the handlers are in place, the signals the
    // daemon handles wait instead of killing it with their default action (which would leave
    // the pidfile behind). Threads started meanwhile (the mail thread) keep them blocked, so
    // they always reach the main thread's loop.
    let handled = handled_signals();
    let _ = handled.thread_block();
    let claim = match Instance::claim(&config.main.pidfile, path) {
        Ok(c) => c,
        Err(e) => return fail(&mut ready, e),
    };
    let opts = Options {
        config_path: path.to_path_buf(),
        default_log: default_log.clone(),
        log: log.clone(),
        poll_mode: std::env::var("USRSVCD_WATCH").is_ok_and(|v| v == "poll"),
    };
    let daemon = match Daemon::new(opts, config, claim) {
        Ok(d) => d,
        Err(e) => {
            return fail(
                &mut ready,
                StartError::new(
                    ReturnCode::UnknownFailure,
                    format!("Cannot set up signal handling: {e}"),
                ),
            )
        }
    };
    let _ = handled.thread_unblock();
    log.info(&format!("usrsvcd started as pid: {}", std::process::id()));
    if args.debug {
        log.info("DEBUG IS ENABLED!");
    }
    let api = start_api(&daemon, &log);
    // READY once the loop is about to run and every program has been looked at.
    daemon.run(|| ready.report(Ok(())));
    if let Some(mut api) = api {
        api.shutdown();
    }
    log.info("usrsvcd stopped.");
    ReturnCode::Success
}

/// The control socket (and the shared one, when configured). Without it the daemon still
/// supervises: `usrsvc` then reads the state file, and says so.
fn start_api(daemon: &Daemon, log: &Log) -> Option<crate::api::server::Server> {
    let private = match crate::control::runtime_dir() {
        Ok(dir) => dir.join(crate::api::SOCKET),
        Err(e) => {
            log.error(&format!("No control socket: no runtime directory: {e}"));
            return None;
        }
    };
    let handle = match daemon.handle() {
        Ok(h) => h,
        Err(e) => {
            log.error(&format!("No control socket: {e}"));
            return None;
        }
    };
    let shared = daemon.config().main.shared_socket.clone();
    match crate::api::server::Server::start(
        std::sync::Arc::new(handle),
        private.clone(),
        shared,
        log.clone(),
    ) {
        Ok(server) => Some(server),
        Err(e) => {
            log.error(&format!(
                "No control socket at {}: {e} (supervision goes on; usrsvc reads the state file)",
                private.display()
            ));
            None
        }
    }
}

fn handled_signals() -> nix::sys::signal::SigSet {
    use nix::sys::signal::{SigSet, Signal};
    let mut set = SigSet::empty();
    for sig in [
        Signal::SIGTERM,
        Signal::SIGINT,
        Signal::SIGHUP,
        Signal::SIGUSR1,
        Signal::SIGUSR2,
    ] {
        set.add(sig);
    }
    set
}

/// `usrsvcd start`: runs `usrsvcd --foreground` detached and waits until it says it is up
/// (or why it is not).
fn start(path: &Path, args: &Args, console: &Console) -> ReturnCode {
    if let Err(errors) = load_config(path, console, false) {
        for e in errors.iter() {
            console.error(&format!("Error in configuration: {e}"));
        }
        return ReturnCode::InvalidConfig;
    }
    if let Some((p, runs)) = instance::running_with_config() {
        console.error(&format!(
            "usrsvcd is already running{}:\n\n{}\n",
            runs.map(|r| format!(" with the config file {}", r.display()))
                .unwrap_or_default(),
            process_dict(&p)
        ));
        return ReturnCode::UsrsvcdAlreadyRunning;
    }
    let (mut rd, wr) = match std::os::unix::net::UnixStream::pair() {
        Ok(p) => p,
        Err(e) => {
            console.error(&format!("Cannot start usrsvcd: {e}"));
            return ReturnCode::UnknownFailure;
        }
    };
    let mut cmd = Command::new("/proc/self/exe");
    std::os::unix::process::CommandExt::arg0(&mut cmd, "usrsvcd");
    cmd.arg("--foreground")
        .arg("--ready-on-stdin")
        .arg("--config")
        .arg(path);
    if args.debug {
        cmd.arg("--debug");
    }
    if let Some(f) = &args.log_format {
        cmd.arg("--log-format").arg(f);
    }
    cmd.stdin(Stdio::from(std::os::fd::OwnedFd::from(wr)));
    crate::control::spawn::detach(&mut cmd);
    let mut child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => {
            console.error(&format!("Cannot start usrsvcd: {e}"));
            return ReturnCode::UnknownFailure;
        }
    };
    drop(cmd);
    let mut answer = String::new();
    let _ = rd.read_to_string(&mut answer);
    let line = answer.lines().next().unwrap_or("");
    if let Some(pid) = line.strip_prefix("READY ") {
        console.info(&format!("usrsvcd started as pid: {pid}"));
        return ReturnCode::Success;
    }
    if let Some(rest) = line.strip_prefix("ERROR ") {
        let (code, msg) = rest.split_once(' ').unwrap_or((rest, ""));
        console.error(&format!("usrsvcd did not start: {msg}"));
        return code
            .parse()
            .ok()
            .and_then(ReturnCode::from_code)
            .unwrap_or(ReturnCode::GeneralFailure);
    }
    let how = match child.wait() {
        Ok(s) => s.to_string(),
        Err(e) => e.to_string(),
    };
    console.error(&format!(
        "usrsvcd did not start: it ended during start-up ({how})."
    ));
    ReturnCode::GeneralFailure
}

/// The user's running daemon and the config file it runs — Ok(None) when none runs — or,
/// when it runs another file than `path`, Err after saying so: `usrsvcd --config B stop`
/// must not stop the daemon of config A, nor `reread` report that A was "the new config".
fn daemon_of(
    path: &Path,
    console: &Console,
    json: bool,
) -> Result<Option<(ProcInfo, PathBuf)>, ReturnCode> {
    let Some((p, runs)) = instance::running_with_config() else {
        return Ok(None);
    };
    // A daemon that did not record its file (an older build) runs, for all we know, this one.
    let runs = runs.unwrap_or_else(|| path.to_path_buf());
    if instance::same_config(&runs, path) {
        return Ok(Some((p, runs)));
    }
    if json {
        say(&format!(
            "{}\n",
            serde_json::json!({
                "running": true,
                "pid": p.pid,
                "config_file": runs.display().to_string(),
                "error": format!("the daemon runs another config file than {}", path.display()),
            })
        ));
    }
    console.error(&format!(
        "usrsvcd (pid {}) runs the config file {}, not {}: not acting on it. Name its file with --config, or stop it first.",
        p.pid,
        runs.display(),
        path.display()
    ));
    Err(ReturnCode::GeneralFailure)
}

fn status(daemon: Option<(ProcInfo, PathBuf)>, console: &Console, json: bool) -> ReturnCode {
    let Some((p, runs)) = daemon else {
        if json {
            say(&format!(
                "{}\n",
                serde_json::json!({ "running": false, "pid": null })
            ));
        }
        console.error("usrsvcd is not running.");
        return ReturnCode::GeneralFailure;
    };
    let state = crate::daemon::supervise::read_state()
        .filter(|d| d["pid"].as_i64() == Some(i64::from(p.pid)));
    // The kill switch of the daemon's config (it may not have reread the file yet), as it
    // stands now.
    let switch = state
        .as_ref()
        .and_then(|d| d["kill_switch_file"].as_str().map(PathBuf::from));
    let switch_on = switch
        .as_deref()
        .is_some_and(|f| std::fs::symlink_metadata(f).is_ok());
    if json {
        let doc = serde_json::json!({
            "running": true,
            "pid": p.pid,
            "config_file": runs.display().to_string(),
            "kill_switch": {
                "file": switch.as_ref().map(|f| f.display().to_string()),
                "on": switch_on,
            },
            "reread_in_progress": state.as_ref().map(|d| d["reread_in_progress"].clone()),
            "programs": state.as_ref().map(|d| d["programs"].clone()),
        });
        say(&format!("{doc}\n"));
        return ReturnCode::Success;
    }
    console.info(&format!("usrsvcd is running:\n\n{}\n", process_dict(&p)));
    let switch_line = match (&switch, switch_on) {
        (Some(f), true) => format!(
            "ON ({} exists): no planned, monitor or health restarts",
            f.display()
        ),
        (Some(f), false) => format!("off ({} does not exist)", f.display()),
        (None, _) => "not configured (kill_switch_file)".to_string(),
    };
    say(&format!(
        "  config file: {}\n  kill switch: {switch_line}\n",
        runs.display()
    ));
    if let Some(table) = state.as_ref().and_then(programs_table) {
        say(&table);
    }
    ReturnCode::Success
}

/// Result output on stdout: a closed pipe (`usrsvcd status | head -1`) ends the command
/// quietly (`cli::out`), never with a panic.
fn say(text: &str) {
    super::out::print(text);
}

/// The daemon's view of its programs (from its state file), one line each.
fn programs_table(doc: &serde_json::Value) -> Option<String> {
    let mut out = String::new();
    for p in doc["programs"].as_array()? {
        let pid = p["pid"]
            .as_i64()
            .map(|p| format!("pid {p}"))
            .unwrap_or_default();
        let mut line = format!(
            "  {:<20} {:<10} {:<10}",
            p["name"].as_str().unwrap_or("?"),
            p["state"].as_str().unwrap_or("?"),
            pid
        );
        if let Some(d) = p["detail"].as_str().filter(|d| !d.is_empty()) {
            line.push(' ');
            line.push_str(d);
        }
        let restarts = p["restarts"].as_u64().unwrap_or(0);
        if restarts > 0 {
            line.push_str(&format!(" (restarted {restarts} times)"));
        }
        out.push_str(line.trim_end());
        out.push('\n');
        out.push_str(&crate::daemon::supervise::health_lines(p));
    }
    Some(out)
}

/// `usrsvcd restart`: everything a new daemon needs is checked first (config, logs,
/// pidfile), and only then is the running one stopped; a failed check leaves it running.
fn restart(
    daemon: Option<(ProcInfo, PathBuf)>,
    path: &Path,
    args: &Args,
    console: &Console,
) -> ReturnCode {
    if let Some((p, _)) = &daemon {
        let checked = check_new_daemon(path, console).and_then(|config| {
            if args.force {
                return Ok(());
            }
            drop_check(p.pid, &config)
        });
        if let Err(e) = checked {
            console.error(&e.message);
            console.error(&format!(
                "Not restarting: the running daemon (pid {}) was left running.",
                p.pid
            ));
            return e.code;
        }
        let rc = stop(p, console);
        if !rc.is_success() {
            return rc;
        }
    }
    start(path, args, console)
}

/// The drop rule of a reread, for a restart: a new daemon whose config would end the
/// supervision of most of the programs the running daemon `pid` manages (its state file says
/// which) is refused without `--force`, as a reread of that config is.
fn drop_check(pid: i32, config: &crate::config::Config) -> Result<(), StartError> {
    let Some(state) = crate::daemon::supervise::read_state()
        .filter(|d| d["pid"].as_i64() == Some(i64::from(pid)))
    else {
        return Ok(());
    };
    let managed: Vec<&str> = state["programs"]
        .as_array()
        .map(|a| a.iter().filter_map(|p| p["name"].as_str()).collect())
        .unwrap_or_default();
    let dropped: Vec<&str> = managed
        .iter()
        .copied()
        .filter(|n| config.program(n).is_none())
        .collect();
    let kept = managed.len() - dropped.len();
    if !reread::drops_too_many(managed.len(), kept, config.programs.len()) {
        return Ok(());
    }
    let shown: Vec<&str> = dropped.iter().copied().take(10).collect();
    let more = dropped.len() - shown.len();
    Err(StartError::new(
        ReturnCode::GeneralFailure,
        format!(
            "The new config would end the supervision of {} of the {} programs usrsvcd manages ({}{}); it has {} program(s). Refusing it (was the file cut short?); \"usrsvcd restart --force\" restarts with it anyway.",
            dropped.len(),
            managed.len(),
            shown.join(", "),
            if more > 0 { format!(" and {more} more") } else { String::new() },
            config.programs.len()
        ),
    ))
}

/// What `usrsvcd start` (detached) needs to come up, checked without side effects; the config.
fn check_new_daemon(path: &Path, console: &Console) -> Result<crate::config::Config, StartError> {
    // Quiet: `start` prints the warnings.
    let config = load_config(path, console, true).map_err(|errors| {
        let all: Vec<String> = errors
            .iter()
            .map(|e| format!("Error in configuration: {e}"))
            .collect();
        StartError::new(ReturnCode::InvalidConfig, all.join("\n"))
    })?;
    instance::preflight(&config.main, instance::default_log().as_deref())?;
    Ok(config)
}

/// SIGTERM through a verified pidfd, then wait for it to be gone (SIGKILL after 10 s).
fn stop(p: &ProcInfo, console: &Console) -> ReturnCode {
    let fd = match Pidfd::open_verified(p) {
        Ok(Some(fd)) => fd,
        Ok(None) => return ReturnCode::Success,
        Err(e) => {
            console.error(&format!("Cannot terminate existing usrsvcd process ({e})"));
            return ReturnCode::GeneralFailure;
        }
    };
    console.info(&format!("Sending SIGTERM to running usrsvcd pid={}", p.pid));
    if let Err(e) = fd.signal(rustix::process::Signal::TERM) {
        console.error(&format!(
            "Cannot terminate existing usrsvcd process ({e}):\n\n{}\n",
            process_dict(p)
        ));
        return ReturnCode::GeneralFailure;
    }
    if fd.wait_exit(Some(Duration::from_secs(10))) {
        return ReturnCode::Success;
    }
    console.error("usrsvcd did not die within 10 seconds, sending SIGKILL");
    let _ = fd.signal(rustix::process::Signal::KILL);
    fd.wait_exit(Some(Duration::from_secs(10)));
    ReturnCode::Success
}

/// Checks the config, signals the daemon and reports what the daemon made of it.
fn reread(
    daemon: Option<(ProcInfo, PathBuf)>,
    path: &Path,
    force: bool,
    console: &Console,
) -> ReturnCode {
    if let Err(errors) = load_config(path, console, false) {
        for e in errors.iter() {
            console.error(&format!("Error in configuration: {e}"));
        }
        console.error("Error in config, cannot continue.");
        return ReturnCode::InvalidConfig;
    }
    let Some((p, runs)) = daemon else {
        console.error("usrsvcd is not running.");
        return ReturnCode::Success;
    };
    // Past any reread under way: ours comes after it.
    let before = reread::read_status()
        .filter(|s| s.pid == p.pid as u32)
        .map_or(0, |s| s.seq);
    let fd = match Pidfd::open_verified(&p) {
        Ok(Some(fd)) => fd,
        _ => {
            console.error("usrsvcd is not running.");
            return ReturnCode::Success;
        }
    };
    if force {
        if let Err(e) = reread::request_force(p.pid) {
            console.error(&format!("Cannot ask usrsvcd for a forced reread: {e}"));
            return ReturnCode::GeneralFailure;
        }
    }
    console.info(&format!(
        "Config okay, triggering reload of {} (usrsvcd pid {})...",
        runs.display(),
        p.pid
    ));
    if let Err(e) = fd.signal(rustix::process::Signal::USR1) {
        console.error(&format!("Cannot signal usrsvcd: {e}"));
        return ReturnCode::GeneralFailure;
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if let Some(st) = reread::read_status() {
            if st.pid == p.pid as u32 && st.seq > before && st.done {
                let code =
                    ReturnCode::from_code(i32::from(st.code)).unwrap_or(ReturnCode::GeneralFailure);
                if code.is_success() {
                    console.info(&format!("usrsvcd loaded the new config ({}).", st.config));
                    return ReturnCode::Success;
                }
                for e in st.errors {
                    if code == ReturnCode::InvalidConfig {
                        console.error(&format!("Error in configuration: {e}"));
                    } else {
                        console.error(&e);
                    }
                }
                console.error("usrsvcd rejected the new config and keeps the running one.");
                return code;
            }
        }
        if fd.wait_exit(Some(Duration::from_millis(20))) {
            console.error("usrsvcd exited while rereading its config.");
            return ReturnCode::GeneralFailure;
        }
    }
    console.error("usrsvcd did not report on the reread within 30 s (it may still be at it).");
    ReturnCode::GeneralFailure
}
