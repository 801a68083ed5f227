//! `usrsvcd`: the supervisor daemon and its control actions. All logic is in the library.

fn main() -> std::process::ExitCode {
    usrsvc::cli::daemon::main(
        std::env::args_os()
            .map(|a| a.to_string_lossy().into_owned())
            .collect(),
    )
}
