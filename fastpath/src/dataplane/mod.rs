//! The dataplane: worker threads that forward frames between the ports
//! fpd is attached to, with a view of the tables that the FPC server keeps
//! current, and the statistics and hit flags that flow back to the cache
//! manager.
//!
//! ```text
//!   FPC server --apply--> Tables --build (fpd-view thread)--> View
//!                                                                 | ArcSwap
//!   port rx queue --> worker: forward(view, frame) --> port tx queue
//!                        | counters (per worker)   | hit flags (in the view)
//!                        +--> stats, hits, wanted neighbours --> FPC server --> cmgrd
//! ```
//!
//! Invariants:
//! * Workers never take a lock: they load the view with `arc_swap` once
//!   per round, own their counters, and offer wanted neighbours to a
//!   bounded channel without blocking.
//! * A view is built after every change of the tables (changes that land
//!   during a build are folded into the next one), so a change reaches the
//!   workers within one build (milliseconds for thousands of routes).
//! * The old view is dropped by the builder, never by a worker, so a large
//!   deallocation never lands on the hot path.

mod conntrack;
mod forward;
mod gates;
mod netfilter;
mod port;
mod rules;
mod stats;
mod view;
mod worker;

use std::collections::BTreeSet;
use std::io;
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::mpsc::{sync_channel, Receiver};
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
pub use port::afpacket::RxRingVersion;

use crate::tables::Tables;
use fpc::{Counter, Hit, InterfaceStats};
use port::Backend;
use stats::WorkerStats;
pub(crate) use view::Parts;
use view::{PortInfo, View};

/// Wanted neighbours waiting for the next report, at most.
const WANTED_QUEUE: usize = 1024;

/// Which interfaces to forward on, and how.
#[derive(Debug, Clone)]
pub struct DataplaneConfig {
    /// Interface names, in fpd's network namespace.
    pub ports: Vec<String>,
    /// Worker threads; each receives from a share of the ports.
    pub workers: usize,
    /// CPUs to pin the workers to, in order (fewer than workers: the rest
    /// float).
    pub cpus: Vec<usize>,
    /// The AF_PACKET receive ring: V3 (blocks: fewer wake-ups, up to 1 ms
    /// of added latency at low rates) or V2 (slots: no added wait).
    pub rx_ring: RxRingVersion,
    /// How frames get in and out.
    pub backend: PortBackend,
}

/// The port backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PortBackend {
    /// AF_PACKET rings: Linux keeps a copy of every frame, so the router
    /// runs with forwarding off and what fpd leaves to Linux is not
    /// forwarded (TTL expiry and missing routes fpd answers itself).
    #[default]
    AfPacket,
    /// AF_XDP sockets and a redirect program; exceptions go back to Linux,
    /// through a TAP per port, as received on the port: the router runs
    /// with Linux's forwarding on, and Linux forwards what fpd does not.
    AfXdp,
}

#[derive(Debug, thiserror::Error)]
pub enum DataplaneError {
    #[error("no port to forward on")]
    NoPort,
    #[error("port {port}")]
    Port {
        port: String,
        #[source]
        source: io::Error,
    },
    #[error("cannot start a worker thread")]
    Thread(#[source] io::Error),
}

/// What the workers, the view builder and the FPC server share.
pub(crate) struct Shared {
    pub ports: Vec<PortInfo>,
    pub view: ArcSwap<View>,
    workers: Vec<Arc<WorkerStats>>,
    wanted: Mutex<Receiver<(u32, IpAddr)>>,
    /// Bumped by every change of the tables; the builder waits on it.
    changes: Mutex<Changes>,
    changed: Condvar,
    builds: AtomicU64,
    /// Views whose routing part was built anew (not shared).
    routing_builds: AtomicU64,
    backend: &'static str,
    /// Whether Linux forwards what fpd hands it (AF_XDP: the exception
    /// path reaches Linux as if from the wire) or not (AF_PACKET: Linux
    /// holds a copy of every frame, so it must not forward, and fpd
    /// answers TTL expiry and missing routes itself).
    pub linux_forwards: bool,
}

#[derive(Default)]
struct Changes {
    count: u64,
    /// The parts of the view the changes since the last build touched.
    parts: Parts,
    closing: bool,
}

/// The running dataplane: its workers stop when it is stopped or dropped.
pub struct Dataplane {
    shared: Arc<Shared>,
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
}

impl std::fmt::Debug for Dataplane {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Dataplane")
            .field("ports", &self.shared.ports)
            .field("workers", &self.threads.len())
            .finish()
    }
}

/// A handle on the dataplane for the FPC server: it feeds the view
/// builder and reads statistics and hit flags.
#[derive(Clone)]
pub struct DataplaneHandle(pub(crate) Arc<Shared>);

impl std::fmt::Debug for DataplaneHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DataplaneHandle")
            .field("ports", &self.0.ports.len())
            .finish()
    }
}

impl Dataplane {
    /// Opens every port (in the calling thread's network namespace) and
    /// starts the workers. Nothing is forwarded until the FPC server
    /// builds a view from synced tables.
    pub fn start(config: &DataplaneConfig) -> Result<Dataplane, DataplaneError> {
        if config.ports.is_empty() {
            return Err(DataplaneError::NoPort);
        }
        let backend: Box<dyn Backend> = match config.backend {
            PortBackend::AfPacket => Box::new(port::afpacket::AfPacket { rx: config.rx_ring }),
            PortBackend::AfXdp => Box::new(port::xdp::AfXdp::new()),
        };
        let port_err = |port: &str| {
            let port = port.to_owned();
            move |source| DataplaneError::Port { port, source }
        };
        let mut ports = Vec::new();
        for name in &config.ports {
            ports.push(port::port_info(name).map_err(port_err(name))?);
        }
        let workers = config.workers.clamp(1, ports.len());
        let (wanted_tx, wanted_rx) = sync_channel(WANTED_QUEUE);
        let stats: Vec<Arc<WorkerStats>> = (0..workers)
            .map(|_| Arc::new(WorkerStats::new(ports.len())))
            .collect();
        let shared = Arc::new(Shared {
            view: ArcSwap::from_pointee(View::empty(&ports, config.backend == PortBackend::AfXdp)),
            ports,
            workers: stats.clone(),
            wanted: Mutex::new(wanted_rx),
            changes: Mutex::new(Changes::default()),
            changed: Condvar::new(),
            builds: AtomicU64::new(0),
            routing_builds: AtomicU64::new(0),
            backend: backend.name(),
            linux_forwards: config.backend == PortBackend::AfXdp,
        });
        // Open everything before any thread starts: a bad port fails fpd
        // at once.
        let mut plans = Vec::new();
        for (id, worker_stats) in stats.iter().enumerate() {
            let mut rx = Vec::new();
            for (index, p) in shared.ports.iter().enumerate() {
                if index % workers == id {
                    rx.push((index, backend.open_rx(p).map_err(port_err(&p.name))?));
                }
            }
            let mut tx = Vec::new();
            for p in &shared.ports {
                tx.push(backend.open_tx(p).map_err(port_err(&p.name))?);
            }
            plans.push(worker::Worker {
                id,
                rx,
                tx,
                stats: worker_stats.clone(),
                shared: shared.clone(),
                wanted: wanted_tx.clone(),
                cpu: config.cpus.get(id).copied(),
            });
        }
        let stop = Arc::new(AtomicBool::new(false));
        let mut threads = Vec::new();
        let span = tracing::Span::current();
        for w in plans {
            let (flag, span) = (stop.clone(), span.clone());
            let thread = std::thread::Builder::new()
                .name(format!("fpd-worker{}", w.id))
                .spawn(move || span.in_scope(|| w.run(flag)));
            match thread {
                Ok(t) => threads.push(t),
                Err(e) => {
                    stop.store(true, Relaxed);
                    return Err(DataplaneError::Thread(e));
                }
            }
        }
        tracing::info!(
            backend = shared.backend,
            ports = ?shared.ports.iter().map(|p| &p.name).collect::<Vec<_>>(),
            workers,
            "dataplane starts"
        );
        Ok(Dataplane {
            shared,
            stop,
            threads,
        })
    }

    pub fn handle(&self) -> DataplaneHandle {
        DataplaneHandle(self.shared.clone())
    }

    /// Stops and joins the workers.
    pub fn stop(mut self) {
        self.stop_workers();
    }

    fn stop_workers(&mut self) {
        self.stop.store(true, Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
        self.shared.close();
    }
}

impl Drop for Dataplane {
    fn drop(&mut self) {
        self.stop_workers();
    }
}

/// With AF_PACKET, Linux does not forward (it holds a copy of every
/// frame), so a family whose configuration needs Linux crosses nothing:
/// say so whenever that changes.
fn warn_af_packet_gates(old: view::Gates, new: view::Gates) {
    for (family, was, gate) in [("IPv4", old.v4, new.v4), ("IPv6", old.v6, new.v6)] {
        if was == gate {
            continue;
        }
        match gate {
            Some(why) => tracing::warn!(
                family,
                reason = why.name(),
                "the configuration needs Linux to forward {family}, which it does not \
                 beside AF_PACKET: {family} transit packets are not forwarded \
                 (fpd --backend af_xdp hands them to Linux)"
            ),
            None => tracing::info!(family, "fpd forwards {family} again"),
        }
    }
}

impl Shared {
    fn changes(&self) -> std::sync::MutexGuard<'_, Changes> {
        self.changes.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The tables changed in `parts`: the builder makes a new view (none
    /// when `parts` is empty: nothing forwarding reads changed).
    pub(crate) fn changed(&self, parts: Parts) {
        if parts.is_empty() {
            return;
        }
        let mut c = self.changes();
        c.count += 1;
        c.parts = c.parts.union(parts);
        drop(c);
        self.changed.notify_one();
    }

    fn close(&self) {
        self.changes().closing = true;
        self.changed.notify_all();
    }

    /// Waits for a change after `seen`: its count and the parts changed
    /// since the last call; `None` once closing.
    fn wait_change(&self, seen: u64) -> Option<(u64, Parts)> {
        let mut c = self.changes();
        loop {
            if c.closing {
                return None;
            }
            if c.count != seen {
                return Some((c.count, std::mem::take(&mut c.parts)));
            }
            c = self
                .changed
                .wait_timeout(c, Duration::from_millis(500))
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
    }

    /// The view after a change of `parts` of `tables` (locked by the
    /// caller, briefly): the parts not changed are the current view's.
    fn build(&self, tables: &Tables, parts: Parts) -> View {
        self.builds.fetch_add(1, Relaxed);
        if parts.routing {
            self.routing_builds.fetch_add(1, Relaxed);
        }
        self.view.load().rebuild(tables, &self.ports, parts)
    }

    /// Publishes `view` (the tables unlocked).
    fn publish(&self, view: View) {
        let old = self.view.swap(Arc::new(view));
        if !self.linux_forwards {
            warn_af_packet_gates(old.gates.family, self.view.load().gates.family);
        }
        // Wait for the workers to let go of the old view, so that its
        // memory is freed here and not on the hot path.
        let deadline = Instant::now() + Duration::from_secs(1);
        while Arc::strong_count(&old) > 1 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_micros(200));
        }
        self.view.load().carry_hits_from(&old);
    }

    /// Per-interface statistics, every worker summed.
    pub(crate) fn stats(&self) -> Vec<InterfaceStats> {
        stats::collect(&self.ports, &self.workers)
    }

    /// Neighbours wanted since the last call, each once.
    pub(crate) fn take_wanted(&self) -> Vec<Hit> {
        let rx = self.wanted.lock().unwrap_or_else(PoisonError::into_inner);
        let wanted: BTreeSet<(u32, IpAddr)> = rx.try_iter().collect();
        wanted
            .into_iter()
            .map(|(ifindex, dst)| Hit::NeighWanted { ifindex, dst })
            .collect()
    }

    /// Neighbours and conntrack entries used since the last call.
    pub(crate) fn take_hits(&self, out: &mut Vec<Hit>) {
        self.view.load().take_hits(out);
    }

    /// The dataplane's own counters, for `Counters`.
    pub(crate) fn counters(&self) -> Vec<Counter> {
        let view = self.view.load();
        vec![
            ("dataplane_ports".to_owned(), self.ports.len() as u64),
            ("dataplane_workers".to_owned(), self.workers.len() as u64),
            (
                "dataplane_view_builds".to_owned(),
                self.builds.load(Relaxed),
            ),
            (
                "dataplane_routing_builds".to_owned(),
                self.routing_builds.load(Relaxed),
            ),
            ("dataplane_neighbours".to_owned(), view.neighbours() as u64),
            (
                "dataplane_conntracks".to_owned(),
                view.conntracks.len() as u64,
            ),
        ]
    }
}

impl DataplaneHandle {
    /// Runs the view builder on the calling thread until the dataplane
    /// stops: a new view after every change, `tables` locked by `lock`
    /// only while it is copied.
    pub(crate) fn build_views<G>(&self, mut lock: impl FnMut() -> G)
    where
        G: std::ops::Deref<Target = Tables>,
    {
        let shared = &self.0;
        let mut seen = 0;
        let mut parts = Parts::ALL;
        loop {
            let view = shared.build(&lock(), parts);
            shared.publish(view);
            match shared.wait_change(seen) {
                Some((now, changed)) => (seen, parts) = (now, changed),
                None => return,
            }
        }
    }

    /// Stops the view builder (the workers are stopped by [`Dataplane`]).
    pub(crate) fn close(&self) {
        self.0.close();
    }
}
