//! `usrsvc`: start, stop, restart or show one program (or all). All logic is in the library.

fn main() -> std::process::ExitCode {
    usrsvc::cli::client::main(std::env::args().collect())
}
