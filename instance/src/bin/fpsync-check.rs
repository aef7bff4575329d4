//! `fpsync-check`: prints every difference between Linux's state in a
//! namespace and a fast path's tables; no output means in sync.

use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use fastpath::fpc::Endpoint;
use instance::features::Features;

#[derive(Parser)]
#[command(
    name = "fpsync-check",
    version,
    about = "Compare Linux with a fast path's tables"
)]
struct Cli {
    /// Network namespace to read Linux from (default: the current one).
    #[arg(long, value_name = "NAME")]
    netns: Option<String>,
    /// The blade whose fast path to read (its default socket).
    #[arg(long, short = 'b', default_value_t = 1)]
    blade: u32,
    /// The fast path's FPC endpoint, instead of the blade's default.
    #[arg(long, value_name = "ENDPOINT")]
    fpc: Option<Endpoint>,
    /// Compare again until in sync or this many seconds have passed.
    #[arg(long, value_name = "SECS", default_value = "0", value_parser = fastpath::units::parse_seconds)]
    wait: Duration,
    /// Compare only what cmgrd with this sync mask synchronizes (its -S).
    #[arg(short = 'S', long, value_name = "mask", value_parser = instance::features::parse_mask)]
    sync_mask: Option<u32>,
    /// Compare capture filters of any process, as cmgrd -A syncs them.
    #[arg(short = 'A', long)]
    sync_bpf_all: bool,
    /// Print the fast path's tables instead of comparing.
    #[arg(long, conflicts_with = "dump_linux")]
    dump_fastpath: bool,
    /// Print what would be synced from Linux instead of comparing.
    #[arg(long)]
    dump_linux: bool,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let endpoint = cli.fpc.unwrap_or_else(|| Endpoint::for_blade(cli.blade));
    let wait = cli.wait;
    let features = Features {
        bpf_all: cli.sync_bpf_all,
        ..cli.sync_mask.map(Features::from_mask).unwrap_or_default()
    };
    if cli.dump_fastpath || cli.dump_linux {
        let objects = if cli.dump_linux {
            instance::check::linux_objects(cli.netns.as_deref(), &features)
        } else {
            instance::check::fastpath_objects(&endpoint)
        };
        return match objects {
            Ok(mut objects) => {
                objects.sort_by_key(|o| o.key());
                for o in objects {
                    println!("{o}");
                }
                ExitCode::SUCCESS
            }
            Err(e) => fail(&e),
        };
    }
    match instance::check::check_until(cli.netns.as_deref(), &endpoint, &features, wait) {
        Ok(diffs) if diffs.is_empty() => ExitCode::SUCCESS,
        Ok(diffs) => {
            for d in diffs {
                println!("{d}");
            }
            ExitCode::from(1)
        }
        Err(e) => fail(&e),
    }
}

fn fail(e: &instance::check::CheckError) -> ExitCode {
    eprintln!("fpsync-check: {}", fastpath::error_chain(e));
    ExitCode::from(2)
}
