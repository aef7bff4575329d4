//! fpd: one fast path blade. Parses the command line, sets up logging,
//! enters its network namespace, starts the dataplane on its ports and
//! serves FPC until SIGTERM or SIGINT; everything else is in the library.
//!
//! Exit codes: 0 after a clean stop, 1 when fpd cannot start (the reason on
//! one line of stderr), 2 for a bad command line.

use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use fastpath::cli::Cli;
use fastpath::{Dataplane, DataplaneConfig, DataplaneError, Server, ServerConfig, ServerError};
use nix::sys::resource::{getrlimit, setrlimit, Resource};
use tokio::signal::unix::{signal, SignalKind};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn, Instrument};

/// Descriptors fpd keeps for itself beside its connections (listeners,
/// the dataplane's sockets, the bus, logs).
const SPARE_FDS: u64 = 64;

/// Raises the descriptor limit to what `max_connections` needs, as far as
/// the hard limit allows; returns how many connections it allows.
fn fit_descriptor_limit(max_connections: usize) -> usize {
    let want = max_connections as u64 + SPARE_FDS;
    let Ok((mut soft, hard)) = getrlimit(Resource::RLIMIT_NOFILE) else {
        return max_connections;
    };
    if soft < want && setrlimit(Resource::RLIMIT_NOFILE, want.min(hard), hard).is_ok() {
        soft = want.min(hard);
    }
    if soft >= want {
        return max_connections;
    }
    // With a small limit, keep half for the connections.
    let fits = (soft - SPARE_FDS.min(soft / 2)).max(1) as usize;
    warn!(
        max_connections,
        descriptors = soft,
        "the descriptor limit allows {fits} connections only: serving at most {fits}"
    );
    fits
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
    #[error(transparent)]
    Tls(#[from] fpc::TlsError),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    tune_allocator();
    common::logging::init(&format!("fpd{}", cli.blade));
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("fpd: {}", common::error_chain(&e));
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> Result<(), FpdError> {
    // setns changes the calling thread only: before any other thread.
    if let Some(ns) = &cli.netns {
        common::netns::enter(ns).map_err(FpdError::Netns)?;
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
    config.tls = cli
        .tls
        .files()
        .map(|f| fpc::server_config(&f))
        .transpose()?;
    config.allow_plain_tcp = cli.tls.allow_plain_tcp;
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
