//! A worker thread: polls its receive queues, decides each frame's fate
//! with the current view, sends forwarded frames on the output port's
//! transmit queue, and counts.
//!
//! Invariants: per packet, nothing allocates, locks or logs; the view is
//! loaded once per round (lock-free), counters are the worker's own, and a
//! wanted neighbour is offered to a bounded channel without waiting (when
//! it is full the request is dropped: the next packet asks again).

use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::mpsc::SyncSender;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::forward::{forward, Verdict};
use super::port::{Fate, RxQueue, TxQueue};
use super::stats::{DropReason, Exception, WorkerStats};
use super::Shared;

/// Frames taken from one receive queue before looking at the next.
const BURST: usize = 64;
/// How long an idle worker sleeps in poll(2) before checking for stop.
const POLL_MS: i32 = 100;
/// How often the kernel's ring drop counters are read.
const DROPS_EVERY: Duration = Duration::from_millis(500);

pub(crate) struct Worker {
    pub id: usize,
    /// (port index, queue) of the ports this worker receives from.
    pub rx: Vec<(usize, Box<dyn RxQueue>)>,
    /// A transmit queue per port, by port index.
    pub tx: Vec<Box<dyn TxQueue>>,
    pub stats: Arc<WorkerStats>,
    pub shared: Arc<Shared>,
    pub wanted: SyncSender<(u32, IpAddr)>,
    pub cpu: Option<usize>,
}

impl Worker {
    pub fn run(mut self, stop: Arc<AtomicBool>) {
        if let Some(cpu) = self.cpu {
            if let Err(e) = pin_to(cpu) {
                tracing::warn!(worker = self.id, cpu, "cannot pin the worker: {e}");
            }
        }
        tracing::info!(
            worker = self.id,
            cpu = ?self.cpu,
            ports = ?self.rx.iter().map(|(p, _)| self.shared.ports[*p].name.as_str()).collect::<Vec<_>>(),
            "worker starts"
        );
        let mut pollfds: Vec<libc::pollfd> = self
            .rx
            .iter()
            .map(|(_, q)| libc::pollfd {
                fd: q.fd(),
                events: libc::POLLIN,
                revents: 0,
            })
            .collect();
        let mut pending = vec![false; self.tx.len()];
        let mut drops_at = Instant::now();
        while !stop.load(Relaxed) {
            let got = self.round(&mut pending);
            if got == 0 {
                // SAFETY: `pollfds` is a live array of the length given.
                unsafe { libc::poll(pollfds.as_mut_ptr(), pollfds.len() as libc::nfds_t, POLL_MS) };
            }
            if drops_at.elapsed() >= DROPS_EVERY {
                drops_at = Instant::now();
                for (port, q) in &mut self.rx {
                    self.stats.ports[*port].rx_ring_drops.add(q.take_drops());
                }
            }
        }
        tracing::info!(worker = self.id, "worker stops");
    }

    /// One pass over every receive queue; returns the frames handled.
    fn round(&mut self, pending: &mut [bool]) -> usize {
        let view = self.shared.view.load();
        let counters = &self.stats.ports;
        let tx = &mut self.tx;
        let wanted = &self.wanted;
        let mut got = 0;
        for (port, rxq) in &mut self.rx {
            let port = *port;
            let c = &counters[port];
            got += rxq.recv_burst(BURST, &mut |frame, meta| {
                c.rx_packets.add(1);
                c.rx_bytes.add(frame.len() as u64);
                match forward(&view, port, frame) {
                    Verdict::Forward(out) => {
                        if meta.csum_partial {
                            crate::wire::complete_partial_checksum(frame);
                        }
                        let q = &mut tx[out];
                        let mut sent = q.push(frame);
                        if !sent {
                            // Full: hand the queued frames over, retry once.
                            q.flush();
                            sent = q.push(frame);
                        }
                        if sent {
                            pending[out] = true;
                            c.forwarded.add(1);
                            counters[out].tx_packets.add(1);
                            counters[out].tx_bytes.add(frame.len() as u64);
                        } else {
                            c.drop(DropReason::TxFull);
                        }
                        Fate::Done
                    }
                    Verdict::Exception(e) => {
                        c.exception(e);
                        Fate::ToLinux
                    }
                    Verdict::Resolve { ifindex, dst } => {
                        c.exception(Exception::NoNeighbour);
                        let _ = wanted.try_send((ifindex, dst));
                        Fate::ToLinux
                    }
                    Verdict::Drop(d) => {
                        c.drop(d);
                        Fate::Done
                    }
                }
            });
        }
        for (q, p) in tx.iter_mut().zip(pending.iter_mut()) {
            if *p {
                q.flush();
                *p = false;
            }
        }
        got
    }
}

fn pin_to(cpu: usize) -> std::io::Result<()> {
    // SAFETY: cpu_set_t is plain data; CPU_SET writes inside it.
    let ret = unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set)
    };
    if ret != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}
