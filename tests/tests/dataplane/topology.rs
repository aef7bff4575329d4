//! The dataplane topology shared by the dataplane scenario and benchmark
//! (`tests/src/bin/bench-dataplane.rs` includes this file by path):
//! three namespaces joined by veth, the router in the middle synced into
//! an fpd attached to its interfaces.
//!
//! ```text
//!  host-a                 router                      host-b
//!  eth0 10.1.0.2 ---- veth-a 10.1.0.1
//!       fd01::2              fd01::1
//!                        veth-b 10.2.0.1 ---- eth0 10.2.0.2, fd02::2
//!                               fd02::1
//!                        veth-c 10.3.0.1 ---- eth1 10.3.0.2
//!                                             lo   10.9.0.2 (behind both)
//! ```

use std::net::UdpSocket;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use fpc::{Endpoint, InterfaceStats, QueryClient};

use fpsync_tests::{bin, sh, tail, unique, wait_until, Daemon, Netns, TempDir};

/// The UDP port the sink listens on.
pub const SINK_PORT: u16 = 5678;

pub struct Topology {
    pub a: Netns,
    pub r: Netns,
    pub b: Netns,
    pub dir: TempDir,
    pub endpoint: Endpoint,
    pub fpd: Option<Daemon>,
    pub cmgrd: Option<Daemon>,
    /// cmgrd's instance id (its console is /tmp/.cmgrd<id>).
    pub instance: u32,
}

impl Topology {
    /// The namespaces, links and addresses; the router does not forward.
    pub fn new(tag: &str) -> Topology {
        let a = Netns::new(&format!("{tag}a"));
        let r = Netns::new(&format!("{tag}r"));
        let b = Netns::new(&format!("{tag}b"));
        let dir = TempDir::new(tag);
        let endpoint = Endpoint::Unix(dir.path.join("fpd.sock"));
        for (rdev, other, odev) in [
            ("veth-a", &a, "eth0"),
            ("veth-b", &b, "eth0"),
            ("veth-c", &b, "eth1"),
        ] {
            sh(&[
                "ip",
                "link",
                "add",
                rdev,
                "netns",
                &r.name,
                "type",
                "veth",
                "peer",
                "name",
                odev,
                "netns",
                &other.name,
            ]);
        }
        a.batch(
            "addr add 10.1.0.2/24 dev eth0\naddr add fd01::2/64 dev eth0 nodad\n\
             link set eth0 up\nroute add default via 10.1.0.1\n\
             route add default via fd01::1\n",
        );
        b.batch(
            "addr add 10.2.0.2/24 dev eth0\naddr add fd02::2/64 dev eth0 nodad\n\
             addr add 10.3.0.2/24 dev eth1\naddr add 10.9.0.2/32 dev lo\n\
             link set eth0 up\nlink set eth1 up\nroute add default via 10.2.0.1\n\
             route add default via fd02::1\n",
        );
        r.batch(
            "addr add 10.1.0.1/24 dev veth-a\naddr add fd01::1/64 dev veth-a nodad\n\
             addr add 10.2.0.1/24 dev veth-b\naddr add fd02::1/64 dev veth-b nodad\n\
             addr add 10.3.0.1/24 dev veth-c\n\
             link set veth-a up\nlink set veth-b up\nlink set veth-c up\n",
        );
        // A new namespace copies init_net's IPv4 settings (forwarding,
        // rp_filter): set what matters explicitly.
        sysctl(
            &r,
            &["net.ipv4.ip_forward=0", "net.ipv6.conf.all.forwarding=0"],
        );
        sysctl(
            &b,
            &[
                "net.ipv4.conf.all.rp_filter=0",
                "net.ipv4.conf.eth0.rp_filter=0",
                "net.ipv4.conf.eth1.rp_filter=0",
                "net.ipv4.conf.default.rp_filter=0",
            ],
        );
        Topology {
            a,
            r,
            b,
            dir,
            endpoint,
            fpd: None,
            cmgrd: None,
            instance: 0,
        }
    }

    /// The topology as a router with `backend` runs: AF_XDP hands Linux
    /// what fpd does not forward, so the router's Linux forwards; with
    /// AF_PACKET Linux receives every frame too, so it must not.
    pub fn for_backend(tag: &str, backend: &str) -> Topology {
        let t = Topology::new(tag);
        if backend == "af_xdp" {
            // rp_filter comes from init_net's settings: off, so that fpd
            // (which leaves a port with reverse-path filtering to Linux)
            // forwards whatever this machine's defaults.
            sysctl(
                &t.r,
                &[
                    "net.ipv4.ip_forward=1",
                    "net.ipv6.conf.all.forwarding=1",
                    "net.ipv4.conf.all.rp_filter=0",
                    "net.ipv4.conf.default.rp_filter=0",
                    "net.ipv4.conf.veth-a.rp_filter=0",
                    "net.ipv4.conf.veth-b.rp_filter=0",
                    "net.ipv4.conf.veth-c.rp_filter=0",
                ],
            );
        }
        t
    }

    /// Starts fpd on the router's three interfaces (`extra` appended to
    /// its command line), then cmgrd syncing the router into it, and waits
    /// for sync.
    pub fn start_fast_path(&mut self, extra: &[&str]) {
        let mut args: Vec<String> = [
            "--blade",
            "1",
            "--listen",
            &self.endpoint.to_string(),
            "--netns",
            &self.r.name,
            "--port",
            "veth-a",
            "--port",
            "veth-b",
            "--port",
            "veth-c",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        args.extend(extra.iter().map(|s| s.to_string()));
        let log = self.dir.path.join("fpd.log");
        self.fpd = Some(Daemon::spawn(&bin("fpd"), &args, log));
        let ep = self.endpoint.clone();
        assert!(
            wait_until(Duration::from_secs(10), || QueryClient::connect(
                &ep,
                "test",
                Duration::from_secs(1)
            )
            .is_ok()),
            "fpd did not start: {}",
            self.fpd.as_ref().unwrap().log()
        );
        self.instance = unique();
        let args = vec![
            "-F".to_string(),
            "-I".into(),
            self.instance.to_string(),
            "--netns".into(),
            self.r.name.clone(),
            "--blade".into(),
            format!("1={}", self.endpoint),
        ];
        let log = self.dir.path.join("cmgrd.log");
        self.cmgrd = Some(Daemon::spawn(&bin("cmgrd"), &args, log));
        // Synced: the first replay ended, and the router's routes are in.
        let ep = self.endpoint.clone();
        let synced = wait_until(Duration::from_secs(10), || {
            QueryClient::connect(&ep, "test", Duration::from_secs(1)).is_ok_and(|mut c| {
                let syncs = c
                    .counters()
                    .ok()
                    .and_then(|cs| cs.into_iter().find(|(n, _)| n == "syncs").map(|(_, v)| v));
                syncs.unwrap_or(0) >= 1
                    && ["10.2.0.2", "10.3.0.2"].iter().all(|a| {
                        c.route_get(254, a.parse().unwrap())
                            .is_ok_and(|r| r.is_some())
                    })
            })
        });
        assert!(synced, "fpd not synced\n{}", self.logs());
    }

    /// Stops fpd and cmgrd (SIGKILL).
    pub fn stop_fast_path(&mut self) {
        self.cmgrd = None;
        self.fpd = None;
    }

    pub fn logs(&self) -> String {
        format!(
            "--- fpd log:\n{}\n--- cmgrd log:\n{}",
            tail(&self.fpd.as_ref().map(Daemon::log).unwrap_or_default()),
            tail(&self.cmgrd.as_ref().map(Daemon::log).unwrap_or_default()),
        )
    }

    /// fpd's counters (objects per table, syncs, ...).
    pub fn counters(&self) -> Vec<(String, u64)> {
        QueryClient::connect(&self.endpoint, "test", Duration::from_secs(5))
            .and_then(|mut c| c.counters())
            .expect("fpd counters")
    }

    /// fpd's per-interface statistics.
    pub fn stats(&self) -> Vec<InterfaceStats> {
        QueryClient::connect(&self.endpoint, "test", Duration::from_secs(5))
            .and_then(|mut c| c.stats())
            .expect("fpd statistics")
    }
}

/// One counter of one interface in `stats`.
pub fn counter(stats: &[InterfaceStats], ifname: &str, name: &str) -> u64 {
    let i = stats
        .iter()
        .find(|i| i.name == ifname)
        .unwrap_or_else(|| panic!("no interface {ifname} in {stats:?}"));
    i.counters
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| *v)
        .unwrap_or_else(|| panic!("no counter {name} for {ifname}"))
}

pub fn sysctl(ns: &Netns, settings: &[&str]) {
    let mut args = vec!["ip", "netns", "exec", &ns.name, "sysctl", "-qw"];
    args.extend_from_slice(settings);
    sh(&args);
}

/// `ping` from `ns`: how many of `count` echo requests were answered.
pub fn ping(ns: &Netns, dst: &str, count: u32, interval: &str) -> u32 {
    let out = std::process::Command::new("ip")
        .args([
            "netns", "exec", &ns.name, "ping", "-n", "-q", "-W", "1", "-i", interval,
        ])
        .args(["-c", &count.to_string(), dst])
        .output()
        .expect("ping (Debian package iputils-ping)");
    let text = String::from_utf8_lossy(&out.stdout);
    text.split(',')
        .find_map(|part| part.trim().strip_suffix(" received"))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or(0)
}

/// Runs `f` on a new thread inside the namespace `ns`.
pub fn in_netns<T: Send + 'static>(
    ns: &Netns,
    f: impl FnOnce() -> T + Send + 'static,
) -> JoinHandle<T> {
    let name = ns.name.clone();
    std::thread::spawn(move || {
        instance::netns::enter(&name).expect("setns");
        f()
    })
}

/// Counts the UDP datagrams that reach port [`SINK_PORT`] in a namespace.
pub struct Sink {
    pub received: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Sink {
    pub fn start(ns: &Netns) -> Sink {
        let received = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (r, s) = (received.clone(), stop.clone());
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let thread = in_netns(ns, move || {
            let sock = UdpSocket::bind(("0.0.0.0", SINK_PORT)).expect("bind the sink");
            // Room for bursts while this thread is not scheduled (the
            // counts must be exact on a busy machine).
            let size: libc::c_int = 8 << 20;
            // SAFETY: setsockopt on a socket we own, with a live c_int.
            unsafe {
                libc::setsockopt(
                    std::os::fd::AsRawFd::as_raw_fd(&sock),
                    libc::SOL_SOCKET,
                    libc::SO_RCVBUFFORCE,
                    &size as *const _ as *const libc::c_void,
                    std::mem::size_of::<libc::c_int>() as libc::socklen_t,
                )
            };
            sock.set_read_timeout(Some(Duration::from_millis(50)))
                .unwrap();
            let _ = ready_tx.send(());
            let mut buf = [0u8; 2048];
            while !s.load(Ordering::Relaxed) {
                if sock.recv(&mut buf).is_ok() {
                    r.fetch_add(1, Ordering::Relaxed);
                }
            }
        });
        ready_rx.recv().expect("the sink starts");
        Sink {
            received,
            stop,
            thread: Some(thread),
        }
    }

    pub fn count(&self) -> u64 {
        self.received.load(Ordering::Relaxed)
    }
}

impl Drop for Sink {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Sends UDP datagrams of `payload` bytes from a namespace to `dst`, at
/// about `rate` a second, `count` of them or until stopped.
pub struct Source {
    pub sent: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Source {
    pub fn start(ns: &Netns, dst: &str, payload: usize, rate: u64, count: Option<u64>) -> Source {
        let sent = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (n, s, dst) = (sent.clone(), stop.clone(), dst.to_owned());
        let thread = in_netns(ns, move || {
            let sock = UdpSocket::bind("0.0.0.0:0").expect("bind the source");
            let data = vec![0x5a; payload];
            let start = Instant::now();
            let mut i = 0u64;
            while !s.load(Ordering::Relaxed) && count.is_none_or(|c| i < c) {
                // Paced: packet i leaves at i / rate seconds.
                let due = start + Duration::from_secs_f64(i as f64 / rate as f64);
                let now = Instant::now();
                if due > now {
                    std::thread::sleep(due - now);
                }
                if sock.send_to(&data, (dst.as_str(), SINK_PORT)).is_ok() {
                    n.fetch_add(1, Ordering::Relaxed);
                }
                i += 1;
            }
        });
        Source {
            sent,
            stop,
            thread: Some(thread),
        }
    }

    /// Waits for a counted source to finish; returns what it sent.
    pub fn join(mut self) -> u64 {
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        self.sent.load(Ordering::Relaxed)
    }

    pub fn stop(self) -> u64 {
        self.stop.store(true, Ordering::Relaxed);
        self.join()
    }
}

impl Drop for Source {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
