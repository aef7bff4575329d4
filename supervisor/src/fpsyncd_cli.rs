//! fpsyncd's command line (clap), in the library so that its man page and
//! shell completions are generated from this definition (see the `manual`
//! crate).

use std::path::PathBuf;

use clap::{CommandFactory, Parser};

use crate::BusChoice;

/// Runs one cache manager per instance and one fast path per blade, as
/// /etc/linux-fp-sync.env (or $CONF_FILE_linux_fp_sync) says, and serves
/// org.fpsync.Supervisor1 on D-Bus.
#[derive(Debug, Parser)]
#[command(name = "fpsyncd", version)]
pub struct Cli {
    /// auto (the system bus, else a private one), system, private, or a
    /// D-Bus address.
    #[arg(long, default_value = "auto")]
    pub bus: BusChoice,
    /// Where cmgrd and fpd are [default: beside fpsyncd, else PATH].
    #[arg(long, value_name = "DIR")]
    pub bin_dir: Option<PathBuf>,
    /// Serve every counter in the OpenMetrics text format at
    /// http://ADDRESS/metrics, ADDRESS a loopback address:port such as
    /// 127.0.0.1:9469 [default: METRICS_LISTEN in
    /// /etc/linux-fp-sync.env, else no endpoint].
    #[arg(long, value_name = "ADDRESS", value_parser = crate::config::parse_metrics_listen)]
    pub metrics_listen: Option<std::net::SocketAddr>,
}

/// fpsyncd's clap command.
pub fn command() -> clap::Command {
    Cli::command()
}
