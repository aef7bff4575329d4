//! `cmgrd`: the cache manager daemon.

use std::process::ExitCode;

use clap::Parser;
use fastpath::fpc::Endpoint;
use instance::{console::console_path, Config};

#[derive(Parser)]
#[command(
    name = "cmgrd",
    version,
    about = "Cache manager: mirrors Linux networking into fast paths"
)]
struct Cli {
    /// Instance id: logs as cmgrd<val>, console at /tmp/.cmgrd<val>.
    #[arg(short = 'I', value_name = "val")]
    instance: Option<u32>,
    /// Network namespace to listen in (as `ip netns` names it).
    #[arg(long, value_name = "NAME")]
    netns: Option<String>,
    /// Blade to sync: B or B=ENDPOINT (unix:PATH or tcp:HOST:PORT);
    /// repeatable. Default: blade 1 at /run/fpsync/fpd1.sock.
    #[arg(long = "blade", value_name = "B[=ENDPOINT]")]
    blades: Vec<String>,
    /// Netlink socket buffer size (K, M, G suffixes).
    #[arg(short = 'l', value_name = "val", default_value = "64M", value_parser = parse_size)]
    netlink_buffer: usize,
    /// Largest outgoing queue per blade before it is resynced instead.
    #[arg(long, value_name = "SIZE", default_value = "256M", value_parser = parse_size)]
    max_queue: usize,
    /// Foreground (cmgrd always stays in the foreground for now).
    #[arg(short = 'F')]
    foreground: bool,
}

/// Parses `64M`, `2K`, `1G` or a plain number of bytes.
fn parse_size(s: &str) -> Result<usize, String> {
    let (digits, mult) = match s.chars().last() {
        Some('K' | 'k') => (&s[..s.len() - 1], 1 << 10),
        Some('M' | 'm') => (&s[..s.len() - 1], 1 << 20),
        Some('G' | 'g') => (&s[..s.len() - 1], 1 << 30),
        _ => (s, 1),
    };
    digits
        .parse::<usize>()
        .ok()
        .and_then(|n| n.checked_mul(mult))
        .filter(|n| *n > 0)
        .ok_or_else(|| format!("bad size {s:?}: expected a number with an optional K, M or G"))
}

fn parse_blade(s: &str) -> Result<(u32, Endpoint), String> {
    let (id, ep) = match s.split_once('=') {
        Some((id, ep)) => (id, Some(ep)),
        None => (s, None),
    };
    let id: u32 = id
        .parse()
        .map_err(|_| format!("bad blade {s:?}: expected a number, optionally =ENDPOINT"))?;
    let ep = match ep {
        Some(ep) => ep.parse().map_err(|e| format!("bad blade {s:?}: {e}"))?,
        None => Endpoint::for_blade(id),
    };
    Ok((id, ep))
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let blades = if cli.blades.is_empty() {
        vec![(1, Endpoint::for_blade(1))]
    } else {
        match cli
            .blades
            .iter()
            .map(|b| parse_blade(b))
            .collect::<Result<Vec<_>, _>>()
        {
            Ok(b) => b,
            Err(e) => {
                eprintln!("cmgrd: {e}");
                return ExitCode::from(2);
            }
        }
    };
    let config = Config {
        instance: cli.instance,
        netns: cli.netns,
        blades,
        netlink_buffer: cli.netlink_buffer,
        max_queue: cli.max_queue,
        console: console_path(cli.instance),
    };
    let _ = cli.foreground;
    fastpath::logging::init(&config.identifier());
    match instance::run(config) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            let mut msg = format!("cmgrd: {e}");
            let mut src = std::error::Error::source(&e);
            while let Some(s) = src {
                msg += &format!(": {s}");
                src = s.source();
            }
            tracing::error!("{msg}");
            eprintln!("{msg}");
            ExitCode::FAILURE
        }
    }
}
