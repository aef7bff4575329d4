//! The command lines of the instance's client programs, in the library so
//! that their man pages and shell completions are generated from these
//! definitions (see the `manual` crate): `fpsync-check` (clap, parsed from
//! this), and `daemonctl` (parsed by hand, as the seed's is: this clap
//! command only describes it, and a test keeps the two in step).

use std::time::Duration;

use clap::{Arg, CommandFactory, Parser};
use fpc::Endpoint;

#[derive(Debug, Parser)]
#[command(
    name = "fpsync-check",
    version,
    about = "Compare Linux with a fast path's tables"
)]
pub struct CheckCli {
    /// Network namespace to read Linux from (default: the current one).
    #[arg(long, value_name = "NAME")]
    pub netns: Option<String>,
    /// The blade whose fast path to read (its default socket).
    #[arg(long, short = 'b', default_value_t = 1)]
    pub blade: u32,
    /// The fast path's FPC endpoint, instead of the blade's default.
    #[arg(long, value_name = "ENDPOINT")]
    pub fpc: Option<Endpoint>,
    /// Compare again until in sync or this many seconds have passed.
    #[arg(long, value_name = "SECS", default_value = "0", value_parser = common::units::Checked(common::units::parse_seconds))]
    pub wait: Duration,
    /// Compare only what cmgrd with this sync mask synchronizes (its -S).
    #[arg(short = 'S', long, value_name = "mask", value_parser = crate::features::parse_mask)]
    pub sync_mask: Option<u32>,
    /// Compare capture filters of any process, as cmgrd -A syncs them.
    #[arg(short = 'A', long)]
    pub sync_bpf_all: bool,
    /// Print the fast path's tables instead of comparing.
    #[arg(long, conflicts_with = "dump_linux")]
    pub dump_fastpath: bool,
    /// Print what would be synced from Linux instead of comparing.
    #[arg(long)]
    pub dump_linux: bool,
    #[command(flatten)]
    pub tls: fpc::TlsOptions,
}

/// fpsync-check's clap command.
pub fn check_command() -> clap::Command {
    CheckCli::command()
}

/// What `daemonctl` takes, for its man page and completions.
pub fn daemonctl_command() -> clap::Command {
    clap::Command::new("daemonctl")
        .version(env!("CARGO_PKG_VERSION"))
        .about("The cache manager's console client")
        .long_about(
            "The cache manager's console client. With a command, sends it to the console of \
             cmgrd<id> (at /tmp/.cmgrd<id>, the seed's path) and prints the answer; without, \
             reads commands from standard input, one a line, until `quit` or the end of input. \
             Exit status: 0 when every answer was a success, 1 when one was an error or the \
             console cannot be reached, 2 for a bad command line. `daemonctl cmgrd help` lists \
             the console's commands.",
        )
        .disable_help_flag(true)
        .disable_version_flag(true)
        .arg(
            Arg::new("daemon")
                .value_name("cmgrd[<id>]")
                .required(true)
                .help("The daemon: cmgrd, or cmgrd<id> for instance <id> (as cmgrd -I <id>)"),
        )
        .arg(
            Arg::new("command")
                .value_name("COMMAND")
                .num_args(0..)
                .trailing_var_arg(true)
                .allow_hyphen_values(true)
                .help("A console command and its words, e.g. `show queue`, `show sync --json`, `ipsec ha enable`, `help`"),
        )
}
