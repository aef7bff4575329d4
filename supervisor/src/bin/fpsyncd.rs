//! fpsyncd: the supervisor. Exit codes: 0 after a clean stop, 1 when it
//! cannot run (the reason on one line of stderr), 2 for a bad command line.

use std::process::ExitCode;

use clap::Parser;
use supervisor::fpsyncd_cli::Cli;
use supervisor::Options;

fn main() -> ExitCode {
    let cli = Cli::parse();
    common::logging::init("fpsyncd");
    let options = Options {
        bus: cli.bus,
        bin_dir: cli.bin_dir,
        metrics_listen: cli.metrics_listen,
    };
    match supervisor::run(options) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            let msg = format!("fpsyncd: {}", supervisor::chain(&e));
            tracing::error!("{msg}");
            eprintln!("{msg}");
            ExitCode::FAILURE
        }
    }
}
