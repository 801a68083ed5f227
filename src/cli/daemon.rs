//! `usrsvcd [ACTION]`: argument handling of the daemon. This release implements `checkconfig`,
//! which prints every configuration error, not only the first; the daemon itself comes next.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;

use super::{answer_early, config_path, load_config, Console};
use crate::control::Report;
use crate::exit::ReturnCode;

fn usage() -> String {
    format!(
        "Usage: usrsvcd (Optional: [action])
  Runs the usrsvc daemon, or acts on a running one.

Actions:
    start        Start the daemon (default).
    stop         Stop the running daemon; programs keep running.
    restart      Restart the daemon; programs keep running.
    status       Tell whether the daemon is running.
    reread       Load a changed configuration into the running daemon.
    checkconfig  Check the configuration and print every error in it.

Options:
    --config PATH, -c     Main config file (default: $USRSVC_CONFIG, else $HOME/usrsvc.cfg).
    --debug               Print debugging information.

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
        eprint!("{}", usage());
        return ReturnCode::GeneralFailure;
    };
    let action = match args.words.as_slice() {
        [] => "start",
        [one] => one.as_str(),
        _ => {
            console.error("Too many arguments.\n");
            eprint!("{}", usage());
            return ReturnCode::GeneralFailure;
        }
    };
    let path = config_path(args.config);
    match action {
        "checkconfig" => match load_config(&path, &console, false) {
            Ok(_) => ReturnCode::Success,
            Err(errors) => {
                for e in errors.iter() {
                    console.error(&format!("Error in configuration: {e}"));
                }
                ReturnCode::InvalidConfig
            }
        },
        "start" | "stop" | "restart" | "status" | "reread" => {
            console.error(&format!(
                "usrsvcd {action}: the daemon is not part of this release yet; only checkconfig is available."
            ));
            ReturnCode::GeneralFailure
        }
        other => {
            console.error(&format!("Unknown action: {other}"));
            ReturnCode::InvalidAction
        }
    }
}
