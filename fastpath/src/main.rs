//! fpd: one fast path blade. Parses the command line, sets up logging and
//! serves FPC until SIGTERM or SIGINT; everything else is in the library.
//!
//! Exit codes: 0 after a clean stop, 1 when fpd cannot start (the reason on
//! one line of stderr), 2 for a bad command line.

use std::error::Error;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use fastpath::fpc::Endpoint;
use fastpath::{Server, ServerConfig, ServerError};
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
}

#[derive(Debug, thiserror::Error)]
enum FpdError {
    #[error("cannot start the runtime")]
    Runtime(#[source] std::io::Error),
    #[error("cannot handle signals")]
    Signals(#[source] std::io::Error),
    #[error(transparent)]
    Server(#[from] ServerError),
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
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(FpdError::Runtime)?;
    let span = tracing::info_span!("fpd", blade = cli.blade);
    let result = runtime.block_on(serve(cli).instrument(span));
    // Blocking tasks (a dump to a slow reader) must not hold the exit.
    runtime.shutdown_timeout(Duration::from_secs(1));
    result
}

async fn serve(cli: Cli) -> Result<(), FpdError> {
    let mut config = ServerConfig::new(cli.blade);
    if !cli.listen.is_empty() {
        config.endpoints = cli.listen;
    }
    let mut sigterm = signal(SignalKind::terminate()).map_err(FpdError::Signals)?;
    let mut sigint = signal(SignalKind::interrupt()).map_err(FpdError::Signals)?;
    let server = Server::bind(config).await?;
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
