//! A worker thread: polls its receive queues, decides each frame's fate
//! with the current view, sends forwarded frames on the output port's
//! transmit queue, and counts.
//!
//! Invariants: per packet, nothing allocates, locks or logs; the view is
//! loaded once per round (lock-free), counters are the worker's own, and a
//! wanted neighbour is offered to a bounded channel without waiting (when
//! it is full the request is dropped: the next packet asks again).
//! ICMP errors fpd answers with are built in the worker's scratch buffer
//! and limited by its token bucket.

use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::mpsc::SyncSender;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::forward::{forward_counting, icmp_error, IcmpError, Verdict};
use super::netfilter::{NfCounters, Reason};
use super::port::{Fate, RxQueue, TxQueue};
use super::stats::{DropReason, Exception, WorkerStats};
use super::Shared;

/// Frames taken from one receive queue before looking at the next.
const BURST: usize = 64;
/// How long an idle worker sleeps in poll(2) before checking for stop.
const POLL_MS: i32 = 100;
/// How often the kernel's ring drop counters are read.
const DROPS_EVERY: Duration = Duration::from_millis(500);
/// ICMP errors a worker sends per second at most, and in a burst.
const ICMP_PER_SEC: u32 = 1000;
const ICMP_BURST: u32 = 100;
/// Room for the largest ICMP error: Ethernet and 1280 bytes of IPv6.
const SCRATCH_LEN: usize = 1536;

/// A token bucket, refilled once per round (no clock read per packet).
#[derive(Debug)]
struct TokenBucket {
    tokens: u32,
    at: Instant,
}

impl TokenBucket {
    fn new(now: Instant) -> Self {
        TokenBucket {
            tokens: ICMP_BURST,
            at: now,
        }
    }

    fn refill(&mut self, now: Instant) {
        let earned = now.duration_since(self.at).as_micros() * u128::from(ICMP_PER_SEC) / 1_000_000;
        if earned > 0 {
            self.tokens = u32::try_from(earned)
                .unwrap_or(u32::MAX)
                .saturating_add(self.tokens)
                .min(ICMP_BURST);
            self.at = now;
        }
    }

    fn take(&mut self) -> bool {
        let ok = self.tokens > 0;
        self.tokens -= u32::from(ok);
        ok
    }
}

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
        let mut scratch = [0u8; SCRATCH_LEN];
        let mut bucket = TokenBucket::new(drops_at);
        while !stop.load(Relaxed) {
            bucket.refill(Instant::now());
            let got = self.round(&mut pending, &mut scratch, &mut bucket);
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
    fn round(
        &mut self,
        pending: &mut [bool],
        scratch: &mut [u8; SCRATCH_LEN],
        bucket: &mut TokenBucket,
    ) -> usize {
        let view = self.shared.view.load();
        let counters = &self.stats.ports;
        let tx = &mut self.tx;
        let wanted = &self.wanted;
        let linux_forwards = self.shared.linux_forwards;
        let mut got = 0;
        for (port, rxq) in &mut self.rx {
            let port = *port;
            let c = &counters[port];
            got += rxq.recv_burst(BURST, &mut |frame, meta| {
                c.rx_packets.add(1);
                c.rx_bytes.add(frame.len() as u64);
                let mut nf = NfCounters::default();
                let verdict = forward_counting(&view, port, frame, &mut nf);
                if nf.rule_counters > 0 {
                    c.nf_rule_counters.add(nf.rule_counters);
                }
                match verdict {
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
                        // A Linux that forwards answers it itself. One that
                        // does not (AF_PACKET) drops it silently: answer it
                        // here. The packet itself is still left to Linux,
                        // as counted.
                        if linux_forwards {
                            return Fate::ToLinux;
                        }
                        let Some(why) = IcmpError::for_verdict(verdict) else {
                            return Fate::ToLinux;
                        };
                        if !bucket.take() {
                            return Fate::ToLinux;
                        }
                        match icmp_error(&view, port, frame, why, scratch) {
                            Ok((out, len)) => {
                                let q = &mut tx[out];
                                let reply = &scratch[..len];
                                let mut sent = q.push(reply);
                                if !sent {
                                    q.flush();
                                    sent = q.push(reply);
                                }
                                if sent {
                                    pending[out] = true;
                                    c.icmp_errors_sent.add(1);
                                    counters[out].tx_packets.add(1);
                                    counters[out].tx_bytes.add(len as u64);
                                } else {
                                    c.drop(DropReason::TxFull);
                                }
                            }
                            Err(Some(Verdict::Resolve { ifindex, dst })) => {
                                let _ = wanted.try_send((ifindex, dst));
                            }
                            Err(_) => {}
                        }
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
                    Verdict::Netfilter(reason) => {
                        c.exception(Exception::Netfilter);
                        if let Some(i) = Reason::ALL.iter().position(|r| *r == reason) {
                            c.nf_reasons[i].add(1);
                        }
                        Fate::ToLinux
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_token_bucket_limits_bursts_and_refills() {
        let t0 = Instant::now();
        let mut b = TokenBucket::new(t0);
        assert_eq!((0..1000).filter(|_| b.take()).count(), ICMP_BURST as usize);
        b.refill(t0 + Duration::from_millis(10));
        assert_eq!((0..1000).filter(|_| b.take()).count(), 10);
        b.refill(t0 + Duration::from_secs(60));
        assert_eq!((0..1000).filter(|_| b.take()).count(), ICMP_BURST as usize);
    }
}
