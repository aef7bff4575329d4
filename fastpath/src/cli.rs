//! fpd's command line (clap): the options and their parsers, in the
//! library so that the man page and the shell completions are generated
//! from this one definition (see the `manual` crate).

use clap::{CommandFactory, Parser};

use std::time::Duration;

use crate::{Limits, PortBackend, RxRingVersion};
use common::units::parse_timeout;
use fpc::{Endpoint, TlsOptions};

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
    /// Connections served at once, every role. One more closes the oldest
    /// connection without Hello, else the query connection idle longest
    /// (never the sync session), or is refused if none may go.
    #[arg(long, value_name = "N", default_value = "256", value_parser = parse_count)]
    pub max_connections: usize,
    /// Seconds a new connection has to say Hello.
    #[arg(long, value_name = "SECONDS", default_value = "5", value_parser = parse_timeout)]
    pub hello_timeout: Duration,
    /// Seconds a query connection may stay silent between requests (or
    /// take to send one, or to take one dump).
    #[arg(long, value_name = "SECONDS", default_value = "60", value_parser = parse_timeout)]
    pub idle_timeout: Duration,
    /// Seconds one frame may take to reach a peer that does not read; then
    /// the peer is dropped.
    #[arg(long, value_name = "SECONDS", default_value = "10", value_parser = parse_timeout)]
    pub write_timeout: Duration,
    /// The largest frame body a connection may send before Hello and on a
    /// query connection (bytes, or with K or M); above it the frame is
    /// refused at once. A sync session may send up to 8M.
    #[arg(long, value_name = "SIZE", default_value = "16K", value_parser = parse_frame_size)]
    pub max_query_frame: usize,
    /// Dumps in progress at once (each holds a copy of the tables); more
    /// wait for their turn.
    #[arg(long, value_name = "N", default_value = "4", value_parser = parse_count)]
    pub max_dumps: usize,
    /// Give the Unix sockets this group (a name or a number) and mode 0660;
    /// without it they are 0600 (root only), whatever the umask.
    #[arg(long, value_name = "GROUP", value_parser = parse_group)]
    pub socket_group: Option<u32>,
    /// Seconds between the Keepalives sent to each sync session.
    #[arg(long, value_name = "SECONDS", default_value = "1", value_parser = parse_timeout)]
    pub keepalive: Duration,
    /// Seconds a sync peer may stay silent (its Keepalives included)
    /// before it is taken for gone; a primary's backup then takes over.
    #[arg(long, value_name = "SECONDS", default_value = "5", value_parser = parse_timeout)]
    pub peer_timeout: Duration,
    #[command(flatten)]
    pub tls: TlsOptions,
}

impl Cli {
    pub fn limits(&self) -> Limits {
        Limits {
            max_connections: self.max_connections,
            hello_timeout: self.hello_timeout,
            idle_timeout: self.idle_timeout,
            write_timeout: self.write_timeout,
            max_query_frame: self.max_query_frame,
            max_dumps: self.max_dumps,
            keepalive: self.keepalive,
            peer_timeout: self.peer_timeout,
        }
    }
}

/// A count from 1 to 1,000,000.
fn parse_count(s: &str) -> Result<usize, String> {
    match s.parse::<usize>() {
        Ok(n) if (1..=1_000_000).contains(&n) => Ok(n),
        _ => Err(format!("{s:?}: expected a whole number from 1 to 1000000")),
    }
}

/// Bytes, or with a K or M suffix (binary), from 1K to 8M.
fn parse_frame_size(s: &str) -> Result<usize, String> {
    let (digits, unit) = match s.strip_suffix(['K', 'k']) {
        Some(d) => (d, 1024),
        None => match s.strip_suffix(['M', 'm']) {
            Some(d) => (d, 1024 * 1024),
            None => (s, 1),
        },
    };
    let bytes = digits
        .parse::<usize>()
        .ok()
        .and_then(|n| n.checked_mul(unit))
        .ok_or_else(|| format!("{s:?}: expected a size in bytes, or with K or M"))?;
    if !(1024..=fpc::MAX_BODY).contains(&bytes) {
        return Err(format!("{s:?}: expected from 1K to 8M"));
    }
    Ok(bytes)
}

/// A group name or number.
fn parse_group(s: &str) -> Result<u32, String> {
    if let Ok(gid) = s.parse::<u32>() {
        return Ok(gid);
    }
    if s.contains('\0') {
        return Err(format!("{s:?}: not a group name"));
    }
    match nix::unistd::Group::from_name(s) {
        Ok(Some(g)) => Ok(g.gid.as_raw()),
        Ok(None) => Err(format!("{s:?}: no such group")),
        Err(e) => Err(format!(
            "{s:?}: cannot look the group up: {}",
            std::io::Error::from(e)
        )),
    }
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

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[test]
    fn the_defaults_are_the_library_s() {
        let cli = Cli::try_parse_from(["fpd", "--blade", "1"]).unwrap();
        assert_eq!(cli.limits(), Limits::default());
        assert_eq!(cli.socket_group, None);
    }

    #[test]
    fn limits_parse_with_checks() {
        let cli = Cli::try_parse_from([
            "fpd",
            "--blade",
            "1",
            "--max-connections",
            "10",
            "--hello-timeout",
            "0.5",
            "--max-query-frame",
            "64K",
            "--socket-group",
            "0",
        ])
        .unwrap();
        assert_eq!(cli.max_connections, 10);
        assert_eq!(cli.hello_timeout, Duration::from_millis(500));
        assert_eq!(cli.max_query_frame, 65536);
        assert_eq!(cli.socket_group, Some(0));
        assert_eq!(parse_group("root"), Ok(0));
        for bad in [
            &["--max-connections", "0"][..],
            &["--max-connections", "99999999999999999999999"],
            &["--idle-timeout", "0"],
            &["--idle-timeout", "1e300"],
            &["--idle-timeout", "NaN"],
            &["--write-timeout=-1"],
            &["--max-query-frame", "99999999999999999999M"],
            &["--max-query-frame", "9M"],
            &["--max-query-frame", "12"],
            &["--socket-group", "no-such-group-here"],
        ] {
            let args = ["fpd", "--blade", "1"]
                .into_iter()
                .chain(bad.iter().copied());
            let err = Cli::try_parse_from(args).unwrap_err();
            assert_eq!(
                err.kind(),
                clap::error::ErrorKind::ValueValidation,
                "{bad:?}"
            );
        }
    }
}
