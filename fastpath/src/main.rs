//! fpd: one fast path blade. Parses the command line, sets up logging,
//! enters its network namespace, starts the dataplane on its ports and
//! serves FPC until SIGTERM or SIGINT; everything else is in the library.
//!
//! Exit codes: 0 after a clean stop, 1 when fpd cannot start (the reason on
//! one line of stderr), 2 for a bad command line.

use std::error::Error;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use fastpath::fpc::Endpoint;
use fastpath::{
    Dataplane, DataplaneConfig, DataplaneError, Limits, PortBackend, RxRingVersion, Server,
    ServerConfig, ServerError,
};
use tokio::signal::unix::{signal, SignalKind};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn, Instrument};

/// One fast path blade: applies what a cache manager sends over FPC to its
/// tables.
#[derive(Debug, Parser)]
#[command(name = "fpd", version)]
struct Cli {
    /// The blade number.
    #[arg(long)]
    blade: u32,
    /// Where to listen: unix:PATH, tcp:HOST:PORT or a path; may be repeated
    /// [default: unix:/run/fpsync/fpdN.sock, N the blade number].
    #[arg(long = "listen", value_name = "ENDPOINT")]
    listen: Vec<Endpoint>,
    /// Run in this network namespace (a name under /var/run/netns, or a
    /// path), entered before any thread starts: the ports are its
    /// interfaces. A Unix socket path is not affected.
    #[arg(long, value_name = "NAME")]
    netns: Option<String>,
    /// Forward packets between these interfaces (see --backend); may be
    /// repeated. Without any, fpd only keeps its tables.
    #[arg(long = "port", value_name = "IFNAME")]
    ports: Vec<String>,
    /// Dataplane worker threads (each polls a share of the ports).
    #[arg(long, default_value_t = 1)]
    workers: usize,
    /// CPUs to pin the workers to, comma-separated, in worker order.
    #[arg(long, value_name = "LIST", value_delimiter = ',')]
    cpus: Vec<usize>,
    /// The AF_PACKET receive ring: v2 (slots, handed over at once) or v3
    /// (blocks, fewer wake-ups, but up to 1 ms added at low rates; on veth
    /// here v2 measured both faster and lower-latency: docs/BENCHMARKS.md).
    #[arg(long, value_name = "v2|v3", default_value = "v2", value_parser = parse_rx_ring)]
    rx_ring: RxRingVersion,
    /// The port backend: af_packet (Linux keeps a copy of every frame) or
    /// af_xdp (an XDP program redirects IPv4 and IPv6 to fpd, which hands
    /// what it does not forward back to Linux through a TAP per port).
    #[arg(long, value_name = "af_packet|af_xdp", default_value = "af_packet", value_parser = parse_backend)]
    backend: PortBackend,
    /// Connections served at once, every role. One more closes the oldest
    /// connection without Hello, else the query connection idle longest
    /// (never the sync session), or is refused if none may go.
    #[arg(long, value_name = "N", default_value = "256", value_parser = parse_count)]
    max_connections: usize,
    /// Seconds a new connection has to say Hello.
    #[arg(long, value_name = "SECONDS", default_value = "5", value_parser = parse_seconds)]
    hello_timeout: Duration,
    /// Seconds a query connection may stay silent between requests (or
    /// take to send one, or to take one dump).
    #[arg(long, value_name = "SECONDS", default_value = "60", value_parser = parse_seconds)]
    idle_timeout: Duration,
    /// Seconds one frame may take to reach a peer that does not read; then
    /// the peer is dropped.
    #[arg(long, value_name = "SECONDS", default_value = "10", value_parser = parse_seconds)]
    write_timeout: Duration,
    /// The largest frame body a connection may send before Hello and on a
    /// query connection (bytes, or with K or M); above it the frame is
    /// refused at once. A sync session may send up to 8M.
    #[arg(long, value_name = "SIZE", default_value = "16K", value_parser = parse_frame_size)]
    max_query_frame: usize,
    /// Dumps in progress at once (each holds a copy of the tables); more
    /// wait for their turn.
    #[arg(long, value_name = "N", default_value = "4", value_parser = parse_count)]
    max_dumps: usize,
    /// Give the Unix sockets this group (a name or a number) and mode 0660;
    /// without it they are 0600 (root only), whatever the umask.
    #[arg(long, value_name = "GROUP", value_parser = parse_group)]
    socket_group: Option<u32>,
}

impl Cli {
    fn limits(&self) -> Limits {
        Limits {
            max_connections: self.max_connections,
            hello_timeout: self.hello_timeout,
            idle_timeout: self.idle_timeout,
            write_timeout: self.write_timeout,
            max_query_frame: self.max_query_frame,
            max_dumps: self.max_dumps,
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

/// Seconds, possibly fractional, above 0 and at most a day.
fn parse_seconds(s: &str) -> Result<Duration, String> {
    let secs: f64 = s
        .parse()
        .map_err(|_| format!("{s:?}: expected a number of seconds"))?;
    if !(secs > 0.0 && secs <= 86_400.0) {
        return Err(format!(
            "{s:?}: expected more than 0 and at most 86400 seconds"
        ));
    }
    Duration::try_from_secs_f64(secs).map_err(|e| format!("{s:?}: {e}"))
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
    if !(1024..=fastpath::fpc::MAX_BODY).contains(&bytes) {
        return Err(format!("{s:?}: expected from 1K to 8M"));
    }
    Ok(bytes)
}

/// A group name or number.
fn parse_group(s: &str) -> Result<u32, String> {
    if let Ok(gid) = s.parse::<u32>() {
        return Ok(gid);
    }
    let name = std::ffi::CString::new(s).map_err(|_| format!("{s:?}: not a group name"))?;
    let mut buf = vec![0u8; 1024];
    loop {
        // SAFETY: getgrnam_r writes only into `group`, `buf` (of the length
        // given) and `result`, all live for the call; `name` is a C string.
        let (ret, found) = unsafe {
            let mut group: libc::group = std::mem::zeroed();
            let mut result: *mut libc::group = std::ptr::null_mut();
            let ret = libc::getgrnam_r(
                name.as_ptr(),
                &mut group,
                buf.as_mut_ptr().cast(),
                buf.len(),
                &mut result,
            );
            (ret, (!result.is_null()).then_some(group.gr_gid))
        };
        match (ret, found) {
            (libc::ERANGE, _) if buf.len() < 1 << 20 => buf.resize(buf.len() * 2, 0),
            (0, Some(gid)) => return Ok(gid),
            (0, None) => return Err(format!("{s:?}: no such group")),
            (e, _) => {
                return Err(format!(
                    "{s:?}: cannot look the group up: {}",
                    std::io::Error::from_raw_os_error(e)
                ))
            }
        }
    }
}

/// Descriptors fpd keeps for itself beside its connections (listeners,
/// the dataplane's sockets, the bus, logs).
const SPARE_FDS: u64 = 64;

/// Raises the descriptor limit to what `max_connections` needs, as far as
/// the hard limit allows; returns how many connections it allows.
fn fit_descriptor_limit(max_connections: usize) -> usize {
    let want = max_connections as u64 + SPARE_FDS;
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes one rlimit into `lim`, which lives.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        return max_connections;
    }
    if lim.rlim_cur < want {
        let raised = libc::rlimit {
            rlim_cur: want.min(lim.rlim_max),
            rlim_max: lim.rlim_max,
        };
        // SAFETY: setrlimit reads one rlimit, which lives.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } == 0 {
            lim.rlim_cur = raised.rlim_cur;
        }
    }
    if lim.rlim_cur >= want {
        return max_connections;
    }
    // With a small limit, keep half for the connections.
    let fits = (lim.rlim_cur - SPARE_FDS.min(lim.rlim_cur / 2)).max(1) as usize;
    warn!(
        max_connections,
        descriptors = lim.rlim_cur,
        "the descriptor limit allows {fits} connections only: serving at most {fits}"
    );
    fits
}

fn parse_backend(s: &str) -> Result<PortBackend, String> {
    match s {
        "af_packet" => Ok(PortBackend::AfPacket),
        "af_xdp" => Ok(PortBackend::AfXdp),
        _ => Err(format!("{s:?}: expected af_packet or af_xdp")),
    }
}

fn parse_rx_ring(s: &str) -> Result<RxRingVersion, String> {
    match s {
        "v2" => Ok(RxRingVersion::V2),
        "v3" => Ok(RxRingVersion::V3),
        _ => Err(format!("{s:?}: expected v2 or v3")),
    }
}

#[derive(Debug, thiserror::Error)]
enum FpdError {
    #[error("cannot start the runtime")]
    Runtime(#[source] std::io::Error),
    #[error("cannot handle signals")]
    Signals(#[source] std::io::Error),
    #[error(transparent)]
    Server(#[from] ServerError),
    #[error("cannot enter the network namespace")]
    Netns(#[source] std::io::Error),
    #[error("cannot start the dataplane")]
    Dataplane(#[from] DataplaneError),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    tune_allocator();
    fastpath::logging::init(&format!("fpd{}", cli.blade));
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("fpd: {}", chain(&e));
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> Result<(), FpdError> {
    // setns changes the calling thread only: before any other thread.
    if let Some(ns) = &cli.netns {
        fastpath::netns::enter(ns).map_err(FpdError::Netns)?;
    }
    let span = tracing::info_span!("fpd", blade = cli.blade);
    let dataplane = if cli.ports.is_empty() {
        None
    } else {
        let config = DataplaneConfig {
            ports: cli.ports.clone(),
            workers: cli.workers,
            cpus: cli.cpus.clone(),
            rx_ring: cli.rx_ring,
            backend: cli.backend,
        };
        Some(span.in_scope(|| Dataplane::start(&config))?)
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(FpdError::Runtime)?;
    let handle = dataplane.as_ref().map(Dataplane::handle);
    let result = runtime.block_on(serve(cli, handle).instrument(span));
    // Blocking tasks (a dump to a slow reader) must not hold the exit.
    runtime.shutdown_timeout(Duration::from_secs(1));
    if let Some(dp) = dataplane {
        dp.stop();
    }
    result
}

async fn serve(cli: Cli, dataplane: Option<fastpath::DataplaneHandle>) -> Result<(), FpdError> {
    let mut config = ServerConfig::new(cli.blade);
    config.limits = cli.limits();
    config.limits.max_connections = fit_descriptor_limit(cli.max_connections);
    config.socket_group = cli.socket_group;
    if !cli.listen.is_empty() {
        config.endpoints = cli.listen;
    }
    config.dataplane = dataplane;
    let mut sigterm = signal(SignalKind::terminate()).map_err(FpdError::Signals)?;
    let mut sigint = signal(SignalKind::interrupt()).map_err(FpdError::Signals)?;
    let server = Server::bind(config).await?;
    if let Some(endpoint) = server.local_endpoints().into_iter().next() {
        tokio::spawn(fastpath::bus::serve(cli.blade, endpoint).in_current_span());
    }
    let shutdown = CancellationToken::new();
    let stop = shutdown.clone();
    tokio::spawn(
        async move {
            let name = tokio::select! {
                _ = sigterm.recv() => "SIGTERM",
                _ = sigint.recv() => "SIGINT",
            };
            info!("{name}: stopping");
            stop.cancel();
        }
        .in_current_span(),
    );
    info!(version = env!("CARGO_PKG_VERSION"), "fpd starts");
    server.run(shutdown).await?;
    Ok(())
}

/// Keeps fpd's resident memory close to what its tables hold.
///
/// glibc raises its mmap threshold each time a large block is freed, so the
/// buffers of one big batch (its body, its decoded objects: some 15 MB for
/// 100,000 routes) are later carved from the heap, where once freed they
/// stay resident, once per arena (per thread that allocated them). With a
/// fixed threshold every large block is mmapped and handed back on free,
/// and two arenas are enough for a control plane that runs on a few threads.
fn tune_allocator() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets allocator parameters; it is called before
    // any other thread exists.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 128 * 1024);
        libc::mallopt(libc::M_ARENA_MAX, 2);
    }
}

/// The error and its sources on one line.
fn chain(e: &dyn Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

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
