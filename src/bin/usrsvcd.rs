//! `usrsvcd`: the supervisor daemon and its control actions. All logic is in the library.

fn main() -> std::process::ExitCode {
    usrsvc::cli::daemon::main(std::env::args().collect())
}
