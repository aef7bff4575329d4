//! fpsyncd: the supervisor. Exit codes: 0 after a clean stop, 1 when it
//! cannot run (the reason on one line of stderr), 2 for a bad command line.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use supervisor::{BusChoice, Options};

/// Runs one cache manager per instance and one fast path per blade, as
/// /etc/linux-fp-sync.env (or $CONF_FILE_linux_fp_sync) says, and serves
/// org.fpsync.Supervisor1 on D-Bus.
#[derive(Debug, Parser)]
#[command(name = "fpsyncd", version)]
struct Cli {
    /// auto (the system bus, else a private one), system, private, or a
    /// D-Bus address.
    #[arg(long, default_value = "auto")]
    bus: BusChoice,
    /// Where cmgrd and fpd are [default: beside fpsyncd, else PATH].
    #[arg(long, value_name = "DIR")]
    bin_dir: Option<PathBuf>,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    fastpath::logging::init("fpsyncd");
    let options = Options {
        bus: cli.bus,
        bin_dir: cli.bin_dir,
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
