//! `fpsync-check`: prints every difference between Linux's state in a
//! namespace and a fast path's tables; no output means in sync.

use std::process::ExitCode;

use clap::Parser;
use fpc::Endpoint;
use instance::cli::CheckCli as Cli;
use instance::features::Features;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let endpoint = cli.fpc.unwrap_or_else(|| Endpoint::for_blade(cli.blade));
    match cli.tls.client() {
        Ok(policy) => fpc::install_client(policy),
        Err(e) => {
            eprintln!("fpsync-check: {e}");
            return ExitCode::from(2);
        }
    }
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
    eprintln!("fpsync-check: {}", common::error_chain(e));
    ExitCode::from(2)
}
