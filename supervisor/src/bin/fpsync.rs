//! fpsync: the supervisor's command-line client (see `fpsync --help`).

fn main() -> std::process::ExitCode {
    supervisor::cli::main()
}
