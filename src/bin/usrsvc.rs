//! `usrsvc`: start, stop, restart or show one program (or all). All logic is in the library.

fn main() -> std::process::ExitCode {
    usrsvc::cli::client::main(
        std::env::args_os()
            .map(|a| a.to_string_lossy().into_owned())
            .collect(),
    )
}
