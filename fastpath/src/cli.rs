//! fpd's command line (clap): the options and their parsers, in the
//! library so that the man page and the shell completions are generated
//! from this one definition (see the `manual` crate).

use clap::{CommandFactory, Parser};

use crate::fpc::Endpoint;
use crate::{PortBackend, RxRingVersion};

/// One fast path blade: applies what a cache manager sends over FPC to its
/// tables.
#[derive(Debug, Parser)]
#[command(name = "fpd", version)]
pub struct Cli {
    /// The blade number.
    #[arg(long)]
    pub blade: u32,
    /// Where to listen: unix:PATH, tcp:HOST:PORT or a path; may be repeated
    /// [default: unix:/run/fpsync/fpdN.sock, N the blade number].
    #[arg(long = "listen", value_name = "ENDPOINT")]
    pub listen: Vec<Endpoint>,
    /// Run in this network namespace (a name under /var/run/netns, or a
    /// path), entered before any thread starts: the ports are its
    /// interfaces. A Unix socket path is not affected.
    #[arg(long, value_name = "NAME")]
    pub netns: Option<String>,
    /// Forward packets between these interfaces (see --backend); may be
    /// repeated. Without any, fpd only keeps its tables.
    #[arg(long = "port", value_name = "IFNAME")]
    pub ports: Vec<String>,
    /// Dataplane worker threads (each polls a share of the ports).
    #[arg(long, default_value_t = 1)]
    pub workers: usize,
    /// CPUs to pin the workers to, comma-separated, in worker order.
    #[arg(long, value_name = "LIST", value_delimiter = ',')]
    pub cpus: Vec<usize>,
    /// The AF_PACKET receive ring: v2 (slots, handed over at once) or v3
    /// (blocks, fewer wake-ups, but up to 1 ms added at low rates; on veth
    /// here v2 measured both faster and lower-latency: docs/BENCHMARKS.md).
    #[arg(long, value_name = "v2|v3", default_value = "v2", value_parser = parse_rx_ring)]
    pub rx_ring: RxRingVersion,
    /// The port backend: af_packet (Linux keeps a copy of every frame) or
    /// af_xdp (an XDP program redirects IPv4 and IPv6 to fpd, which hands
    /// what it does not forward back to Linux through a TAP per port).
    #[arg(long, value_name = "af_packet|af_xdp", default_value = "af_packet", value_parser = parse_backend)]
    pub backend: PortBackend,
}

pub fn parse_backend(s: &str) -> Result<PortBackend, String> {
    match s {
        "af_packet" => Ok(PortBackend::AfPacket),
        "af_xdp" => Ok(PortBackend::AfXdp),
        _ => Err(format!("{s:?}: expected af_packet or af_xdp")),
    }
}

pub fn parse_rx_ring(s: &str) -> Result<RxRingVersion, String> {
    match s {
        "v2" => Ok(RxRingVersion::V2),
        "v3" => Ok(RxRingVersion::V3),
        _ => Err(format!("{s:?}: expected v2 or v3")),
    }
}

/// The clap command, for the man page and completions.
pub fn command() -> clap::Command {
    Cli::command()
}
