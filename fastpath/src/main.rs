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
    Dataplane, DataplaneConfig, DataplaneError, PortBackend, RxRingVersion, Server, ServerConfig,
    ServerError,
};
use tokio::signal::unix::{signal, SignalKind};
use tokio_util::sync::CancellationToken;
use tracing::{info, Instrument};

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
