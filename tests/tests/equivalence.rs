//! The fast path never forwards a packet differently from Linux: on the
//! dataplane topology (host-a, router, host-b), each router configuration
//! below is made with the usual tools, the same probe frames are sent from
//! host-a twice, once with fpd (AF_XDP) on the router's ports and once
//! with the router's kernel alone, and what host-b receives (on both its
//! links) and what comes back to host-a are compared byte for byte. Each
//! scenario runs twice: configured before fpd starts (the configuration
//! reaches fpd with cmgrd's first dump), and configured while fpd runs
//! (as news).
//!
//! Probes are whole Ethernet frames written to an AF_PACKET socket on
//! host-a (fixed IP IDs and checksums: the same bytes both times), each
//! carrying a marker that the captures look for. Only the IPv4 ID and
//! header checksum of ICMP errors the router itself sends are left out of
//! the comparison: Linux picks a new ID for each.
//!
//! Needs root, `ip`, `nft`, `iptables-legacy`, `conntrack`; run with
//! `cargo build --bins && cargo test -p fpsync-tests --test equivalence`.

#[path = "dataplane/topology.rs"]
#[allow(dead_code)]
mod topology;

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use fpsync_tests::{sh, Netns};
use topology::{counter, in_netns, Topology};

/// The scenarios start fpd on fixed interface names: one at a time.
static SERIAL: Mutex<()> = Mutex::new(());

/// Linux answers a packet without a route (or to an unreachable or
/// prohibit route) at most once a second per source after a burst of five
/// (`net.ipv4.route.error_cost`, `error_burst`): a budget of the whole
/// machine, not of a namespace, so two runs a few seconds apart would not
/// get the same answers. While a scenario runs, the cost is 0; the old
/// value comes back on drop.
struct NoRouteErrorLimit(Option<String>);

const ERROR_COST: &str = "/proc/sys/net/ipv4/route/error_cost";

impl NoRouteErrorLimit {
    fn new() -> NoRouteErrorLimit {
        let old = std::fs::read_to_string(ERROR_COST).ok();
        if old.is_some() {
            std::fs::write(ERROR_COST, "0").expect("net.ipv4.route.error_cost");
        }
        NoRouteErrorLimit(old)
    }
}

impl Drop for NoRouteErrorLimit {
    fn drop(&mut self) {
        if let Some(old) = &self.0 {
            let _ = std::fs::write(ERROR_COST, old.trim());
        }
    }
}

/// One scenario at a time, without the route error limit.
fn serial() -> (std::sync::MutexGuard<'static, ()>, NoRouteErrorLimit) {
    let lock = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    (lock, NoRouteErrorLimit::new())
}

const MAGIC: &[u8; 8] = b"FPSYNCEQ";

/// One router configuration: shell commands run in the router's
/// namespace (`ip netns exec`), and the probes.
struct Scenario {
    name: String,
    /// A reason `show stats` must give for packets left to Linux.
    reason: Option<&'static str>,
    setup: Vec<String>,
    probes: Vec<Vec<u8>>,
}

/// What a probe run saw: frames received on host-b's links, and on
/// host-a's (both sorted).
#[derive(Debug, PartialEq, Eq)]
struct Seen {
    at_b: Vec<String>,
    at_a: Vec<String>,
}

fn mac_of(ns: &Netns, dev: &str) -> [u8; 6] {
    let out = ns.ip(&["-j", "link", "show", dev]);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    let text = v[0]["address"].as_str().unwrap().to_owned();
    let mut mac = [0u8; 6];
    for (m, part) in mac.iter_mut().zip(text.split(':')) {
        *m = u8::from_str_radix(part, 16).unwrap();
    }
    mac
}

fn sum(data: &[u8], mut acc: u32) -> u32 {
    for c in data.chunks(2) {
        acc += u32::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)]));
    }
    acc
}

fn fold(mut acc: u32) -> u16 {
    while acc > 0xffff {
        acc = (acc & 0xffff) + (acc >> 16);
    }
    !(acc as u16)
}

/// Addresses of the probes: a = host-a, b = host-b, and the router's.
struct Macs {
    host_a: [u8; 6],
    router_a: [u8; 6],
}

/// IPv4 header fields of a probe beyond its addresses: TTL, DF, its
/// payload length and its ID (also its source port's offset).
struct Ip4Fields {
    ttl: u8,
    df: bool,
    len: usize,
    id: u16,
}

/// An Ethernet frame from host-a to the router carrying UDP.
fn udp4(m: &Macs, src: [u8; 4], dst: [u8; 4], dport: u16, f: Ip4Fields) -> Vec<u8> {
    let Ip4Fields { ttl, df, len, id } = f;
    let mut payload = MAGIC.to_vec();
    payload.extend((0..len.saturating_sub(MAGIC.len())).map(|i| i as u8));
    let udp_len = 8 + payload.len();
    let total = 20 + udp_len;
    let mut ip = vec![0x45, 0];
    ip.extend((total as u16).to_be_bytes());
    ip.extend(id.to_be_bytes());
    ip.extend(if df { [0x40, 0] } else { [0, 0] });
    ip.extend([ttl, 17, 0, 0]);
    ip.extend(src);
    ip.extend(dst);
    let c = fold(sum(&ip, 0));
    ip[10..12].copy_from_slice(&c.to_be_bytes());
    // A source port per probe: two probes of one flow would make NAT
    // choose a port at random for the second.
    let mut udp = Vec::new();
    udp.extend((4000 + id).to_be_bytes());
    udp.extend(dport.to_be_bytes());
    udp.extend((udp_len as u16).to_be_bytes());
    udp.extend([0, 0]);
    udp.extend(&payload);
    let mut pseudo = Vec::new();
    pseudo.extend(src);
    pseudo.extend(dst);
    pseudo.extend([0, 17]);
    pseudo.extend((udp_len as u16).to_be_bytes());
    let c = fold(sum(&udp, sum(&pseudo, 0)));
    udp[6..8].copy_from_slice(&c.to_be_bytes());
    let mut f = m.router_a.to_vec();
    f.extend(m.host_a);
    f.extend([0x08, 0x00]);
    f.extend(ip);
    f.extend(udp);
    f
}

fn v6(s: &str) -> [u8; 16] {
    s.parse::<std::net::Ipv6Addr>().unwrap().octets()
}

fn v4(s: &str) -> [u8; 4] {
    s.parse::<std::net::Ipv4Addr>().unwrap().octets()
}

fn udp6(m: &Macs, src: &str, dst: &str, dport: u16, hops: u8, len: usize) -> Vec<u8> {
    let (src, dst) = (v6(src), v6(dst));
    let mut payload = MAGIC.to_vec();
    payload.extend((0..len.saturating_sub(MAGIC.len())).map(|i| i as u8));
    let udp_len = 8 + payload.len();
    let mut udp = Vec::new();
    udp.extend(4000u16.to_be_bytes());
    udp.extend(dport.to_be_bytes());
    udp.extend((udp_len as u16).to_be_bytes());
    udp.extend([0, 0]);
    udp.extend(&payload);
    let mut pseudo = Vec::new();
    pseudo.extend(src);
    pseudo.extend(dst);
    pseudo.extend((udp_len as u32).to_be_bytes());
    pseudo.extend([0, 0, 0, 17]);
    let c = fold(sum(&udp, sum(&pseudo, 0)));
    udp[6..8].copy_from_slice(&c.to_be_bytes());
    let mut f = m.router_a.to_vec();
    f.extend(m.host_a);
    f.extend([0x86, 0xdd]);
    f.extend([0x60, 0, 0, 0]);
    f.extend((udp_len as u16).to_be_bytes());
    f.extend([17, hops]);
    f.extend(src);
    f.extend(dst);
    f.extend(udp);
    f
}

fn packet_socket(ifname: &str) -> OwnedFd {
    let proto = (libc::ETH_P_ALL as u16).to_be();
    // SAFETY: a plain socket(2) call; checked below.
    let fd = unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW, i32::from(proto)) };
    assert!(fd >= 0, "AF_PACKET: {}", std::io::Error::last_os_error());
    // SAFETY: a fresh descriptor that nothing else owns.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    let name = std::ffi::CString::new(ifname).unwrap();
    // SAFETY: a NUL-terminated name.
    let ifindex = unsafe { libc::if_nametoindex(name.as_ptr()) };
    assert!(ifindex != 0, "{ifname}");
    // SAFETY: sockaddr_ll is plain data; zeroed is valid.
    let mut addr: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
    addr.sll_family = libc::AF_PACKET as u16;
    addr.sll_protocol = proto;
    addr.sll_ifindex = ifindex as i32;
    // SAFETY: a valid sockaddr_ll of the size given.
    let ret = unsafe {
        libc::bind(
            fd.as_raw_fd(),
            &addr as *const _ as *const libc::sockaddr,
            std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t,
        )
    };
    assert_eq!(ret, 0, "bind {ifname}");
    fd
}

/// Frames with the marker received on some interfaces of a namespace.
struct Capture {
    frames: Arc<Mutex<Vec<Vec<u8>>>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Capture {
    fn start(ns: &Netns, ifnames: &[&str]) -> Capture {
        let frames = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (f, s) = (frames.clone(), stop.clone());
        let names: Vec<String> = ifnames.iter().map(|n| n.to_string()).collect();
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let thread = in_netns(ns, move || {
            let socks: Vec<OwnedFd> = names.iter().map(|n| packet_socket(n)).collect();
            let _ = ready_tx.send(());
            let mut buf = vec![0u8; 65536];
            while !s.load(Ordering::Relaxed) {
                let mut fds: Vec<libc::pollfd> = socks
                    .iter()
                    .map(|s| libc::pollfd {
                        fd: s.as_raw_fd(),
                        events: libc::POLLIN,
                        revents: 0,
                    })
                    .collect();
                // SAFETY: a live array of the length given.
                unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, 20) };
                for (sock, p) in socks.iter().zip(&fds) {
                    if p.revents & libc::POLLIN == 0 {
                        continue;
                    }
                    // SAFETY: `buf` is live and as long as given.
                    let n = unsafe {
                        libc::recv(
                            sock.as_raw_fd(),
                            buf.as_mut_ptr().cast(),
                            buf.len(),
                            libc::MSG_DONTWAIT,
                        )
                    };
                    if n > 0 {
                        let frame = &buf[..n as usize];
                        if frame.windows(MAGIC.len()).any(|w| w == MAGIC) {
                            f.lock().unwrap().push(frame.to_vec());
                        }
                    }
                }
            }
        });
        ready_rx.recv().expect("the capture starts");
        Capture {
            frames,
            stop,
            thread: Some(thread),
        }
    }

    fn finish(mut self) -> Vec<Vec<u8>> {
        std::thread::sleep(Duration::from_millis(400));
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            t.join().unwrap();
        }
        std::mem::take(&mut *self.frames.lock().unwrap())
    }
}

impl Drop for Capture {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// A frame as compared: hex, with the IPv4 ID and header checksum of an
/// ICMP error left out (Linux picks the ID anew each time).
fn shown(frame: &[u8]) -> String {
    let mut f = frame.to_vec();
    if f.len() >= 34 && f[12..14] == [0x08, 0x00] && f[23] == 1 {
        f[18..20].fill(0);
        f[24..26].fill(0);
    }
    f.iter().map(|b| format!("{b:02x}")).collect()
}

/// Sends the probes from host-a and returns what was seen.
fn probe(t: &Topology, probes: &[Vec<u8>]) -> Seen {
    // A resolution still running from the run before (a probe to a host
    // that does not answer ARP) would fail during this one and send its
    // ICMP host unreachable inside the window: each run starts without.
    for nud in ["incomplete", "failed"] {
        let _ = std::process::Command::new("ip")
            .args(["-n", &t.r.name, "neigh", "flush", "nud", nud])
            .output();
    }
    let at_b = Capture::start(&t.b, &["eth0", "eth1"]);
    let at_a = Capture::start(&t.a, &["eth0"]);
    let frames = probes.to_vec();
    in_netns(&t.a, move || {
        let sock = packet_socket("eth0");
        for f in frames {
            // SAFETY: `f` is live and as long as given.
            let n = unsafe { libc::send(sock.as_raw_fd(), f.as_ptr().cast(), f.len(), 0) };
            assert_eq!(
                n as usize,
                f.len(),
                "send: {}",
                std::io::Error::last_os_error()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    })
    .join()
    .unwrap();
    let mut b: Vec<String> = at_b.finish().iter().map(|f| shown(f)).collect();
    // host-a's own sends are seen by its capture too: keep what came in.
    let sent: Vec<String> = probes.iter().map(|f| shown(f)).collect();
    let mut a: Vec<String> = at_a
        .finish()
        .iter()
        .map(|f| shown(f))
        .filter(|f| !sent.contains(f))
        .collect();
    b.sort();
    a.sort();
    Seen { at_b: b, at_a: a }
}

/// The frames one run saw and the other did not, one a line.
fn difference(alone: &Seen, with_fpd: &Seen) -> String {
    let mut out = String::new();
    for (place, l, r) in [
        ("host-b", &alone.at_b, &with_fpd.at_b),
        ("host-a", &alone.at_a, &with_fpd.at_a),
    ] {
        for f in l.iter().filter(|f| !r.contains(f)) {
            out += &format!(
                "only with the kernel alone, at {place}: {} bytes {}\n",
                f.len() / 2,
                &f[..f.len().min(140)]
            );
        }
        for f in r.iter().filter(|f| !l.contains(f)) {
            out += &format!(
                "only with fpd, at {place}: {} bytes {}\n",
                f.len() / 2,
                &f[..f.len().min(140)]
            );
        }
    }
    out
}

fn router(t: &Topology, commands: &[String]) {
    for c in commands {
        sh(&["ip", "netns", "exec", &t.r.name, "sh", "-c", c]);
    }
}

/// When the configuration is made.
#[derive(Clone, Copy, PartialEq, Eq)]
enum When {
    /// Before fpd starts: it arrives with cmgrd's first dump.
    BeforeFpd,
    /// While fpd runs: it arrives as news.
    Live,
}

/// Runs the scenario `name` on a topology of its own (the probes are
/// built for its MACs), with fpd and with the kernel alone; returns fpd's
/// counters of veth-a (received, forwarded) over its run.
fn equivalent(name: &str, when: When) -> (u64, u64) {
    equivalent_with(
        |m| {
            scenarios(m)
                .into_iter()
                .find(|s| s.name == name)
                .expect("a scenario")
        },
        when,
    )
}

/// The same for the scenario `make` builds for a topology's MACs.
fn equivalent_with(make: impl Fn(&Macs) -> Scenario, when: When) -> (u64, u64) {
    let mut t = Topology::for_backend("eqv", "af_xdp");
    let s = make(&macs(&t));
    // ICMP errors are rate-limited per peer, and by a global budget that
    // other traffic spends too: either run could get fewer. Without the
    // limits, both runs get every one.
    for ns in [&t.r, &t.b] {
        topology::sysctl(
            ns,
            &[
                "net.ipv4.icmp_ratelimit=0",
                "net.ipv6.icmp.ratelimit=0",
                "net.ipv4.icmp_msgs_per_sec=1000000",
                "net.ipv4.icmp_msgs_burst=1000000",
            ],
        );
    }
    // Both runs find the neighbours resolved and the same conntrack state.
    // A few tries: on a loaded machine one ping may miss its second.
    for dst in ["10.2.0.2", "10.1.0.2", "10.3.0.2", "fd02::2", "fd01::2"] {
        let answered = (0..5).any(|_| {
            std::process::Command::new("ip")
                .args([
                    "netns", "exec", &t.r.name, "ping", "-c", "1", "-W", "2", dst,
                ])
                .output()
                .is_ok_and(|o| o.status.success())
        });
        assert!(answered, "the router cannot reach {dst}");
    }
    let flush = |t: &Topology| {
        let _ = std::process::Command::new("ip")
            .args(["netns", "exec", &t.r.name, "conntrack", "-F"])
            .output();
    };
    if when == When::BeforeFpd {
        router(&t, &s.setup);
    }
    flush(&t);
    t.start_fast_path(&["--backend", "af_xdp"]);
    if when == When::Live {
        router(&t, &s.setup);
        let features = instance::Options::try_parse_from(["cmgrd"])
            .unwrap()
            .features;
        let diffs = instance::check::check_until(
            Some(&t.r.name),
            &t.endpoint,
            &features,
            Duration::from_secs(10),
        );
        assert_eq!(
            diffs.ok(),
            Some(vec![]),
            "{}: not synced\n{}",
            s.name,
            t.logs()
        );
        flush(&t);
    }
    let before = t.stats();
    let with_fpd = probe(&t, &s.probes);
    let after = t.stats();
    let logs = t.logs();
    // `show stats` says why packets left the fast path (fpd reports its
    // counters to cmgrd every second or so).
    let console = std::path::PathBuf::from(format!("/tmp/.cmgrd{}", t.instance));
    let mut stats = String::new();
    let said = fpsync_tests::wait_until(Duration::from_secs(5), || {
        stats = fpsync_tests::console(&console, "show stats");
        s.reason
            .is_none_or(|r| stats.contains("veth-a to Linux: ") && stats.contains(r))
    });
    assert!(
        said,
        "{}: show stats does not name {:?}:\n{stats}",
        s.name, s.reason
    );
    // The kernel alone: fpd gone (its XDP program, left attached, passes
    // every frame to Linux once its sockets are closed).
    t.stop_fast_path();
    flush(&t);
    let alone = probe(&t, &s.probes);
    assert!(
        alone == with_fpd,
        "{}: the kernel alone and fpd differ\n{}\nrouter configuration:\n{}\n{after:?}\n{logs}",
        s.name,
        difference(&alone, &with_fpd),
        s.setup.join("\n"),
    );
    assert!(
        s.reason.is_none() || !alone.at_b.is_empty(),
        "{}: nothing crossed the router: the comparison proves nothing",
        s.name
    );
    let delta = |name: &str| counter(&after, "veth-a", name) - counter(&before, "veth-a", name);
    let rx = delta("rx_packets");
    assert!(
        rx >= s.probes.len() as u64,
        "{}: fpd saw {rx} probes",
        s.name
    );
    (rx, delta("forwarded"))
}

fn macs(t: &Topology) -> Macs {
    Macs {
        host_a: mac_of(&t.a, "eth0"),
        router_a: mac_of(&t.r, "veth-a"),
    }
}

/// The probes every scenario sends: UDP to host-b's sink port and to
/// 9999, IPv4 and IPv6, small and large (with and without DF), TTL 1,
/// to the unreachable, prohibit and blackhole prefixes.
fn probes(m: &Macs) -> Vec<Vec<u8>> {
    let (a, b, c) = (v4("10.1.0.2"), v4("10.2.0.2"), v4("10.9.0.2"));
    vec![
        udp4(
            m,
            a,
            b,
            5678,
            Ip4Fields {
                ttl: 64,
                df: true,
                len: 64,
                id: 1,
            },
        ),
        udp4(
            m,
            a,
            b,
            9999,
            Ip4Fields {
                ttl: 64,
                df: true,
                len: 64,
                id: 2,
            },
        ),
        udp4(
            m,
            a,
            c,
            5678,
            Ip4Fields {
                ttl: 64,
                df: true,
                len: 64,
                id: 3,
            },
        ),
        udp4(
            m,
            a,
            b,
            5678,
            Ip4Fields {
                ttl: 64,
                df: true,
                len: 1400,
                id: 4,
            },
        ),
        udp4(
            m,
            a,
            b,
            5678,
            Ip4Fields {
                ttl: 64,
                df: false,
                len: 1400,
                id: 5,
            },
        ),
        udp4(
            m,
            a,
            b,
            5678,
            Ip4Fields {
                ttl: 1,
                df: true,
                len: 64,
                id: 6,
            },
        ),
        udp4(
            m,
            a,
            v4("10.77.0.1"),
            5678,
            Ip4Fields {
                ttl: 64,
                df: true,
                len: 64,
                id: 7,
            },
        ),
        udp4(
            m,
            a,
            v4("10.78.0.1"),
            5678,
            Ip4Fields {
                ttl: 64,
                df: true,
                len: 64,
                id: 8,
            },
        ),
        udp4(
            m,
            a,
            v4("10.79.0.1"),
            5678,
            Ip4Fields {
                ttl: 64,
                df: true,
                len: 64,
                id: 9,
            },
        ),
        udp4(
            m,
            a,
            v4("10.2.0.99"),
            80,
            Ip4Fields {
                ttl: 64,
                df: true,
                len: 64,
                id: 10,
            },
        ),
        udp4(
            m,
            a,
            c,
            5678,
            Ip4Fields {
                ttl: 64,
                df: true,
                len: 1400,
                id: 11,
            },
        ),
        udp4(
            m,
            a,
            c,
            5678,
            Ip4Fields {
                ttl: 64,
                df: false,
                len: 1400,
                id: 12,
            },
        ),
        // A source that strict reverse-path filtering refuses on veth-a
        // (its route leaves through veth-c).
        udp4(
            m,
            v4("10.9.0.77"),
            b,
            5678,
            Ip4Fields {
                ttl: 64,
                df: true,
                len: 64,
                id: 13,
            },
        ),
        udp6(m, "fd01::2", "fd02::2", 5678, 64, 64),
        udp6(m, "fd01::2", "fd02::2", 9999, 64, 64),
        udp6(m, "fd01::2", "fd02::2", 5678, 64, 1400),
        udp6(m, "fd01::2", "fd02::2", 5678, 1, 64),
    ]
}

/// Routes every scenario has: to host-b's loopback through veth-c, and
/// the special route types.
const ROUTES: &str = "ip route add 10.9.0.0/24 via 10.3.0.2; \
     ip route add unreachable 10.77.0.0/16; ip route add prohibit 10.78.0.0/16; \
     ip route add blackhole 10.79.0.0/16";

fn scenarios(m: &Macs) -> Vec<Scenario> {
    let p = probes(m);
    let s = |name: &str, reason, setup: &[&str]| Scenario {
        name: name.to_owned(),
        reason: Some(reason),
        setup: setup.iter().map(|c| c.to_string()).collect(),
        probes: p.clone(),
    };
    vec![
        s("routes alone", "ttl", &[ROUTES]),
        s(
            "nft forward drop",
            "ttl",
            &[
                ROUTES,
                "nft add table inet f; nft add chain inet f fw '{ type filter hook forward priority 0; }'; \
                 nft add rule inet f fw udp dport 9999 drop",
            ],
        ),
        s(
            "nft reject, set lookup, iifname",
            "netfilter",
            &[
                ROUTES,
                "nft add table inet f; nft add chain inet f fw '{ type filter hook forward priority 0; }'; \
                 nft add set inet f ports '{ type inet_service; }'; nft add element inet f ports '{ 9999 }'; \
                 nft add rule inet f fw udp dport @ports reject; \
                 nft add rule inet f fw iifname veth-a ip daddr 10.9.0.0/24 drop",
            ],
        ),
        s(
            "nft sets, intervals, vmaps, concatenations",
            "ttl",
            &[
                ROUTES,
                "nft add table inet f; nft add chain inet f fw '{ type filter hook forward priority 0; }'; \
                 nft add chain inet f c2; \
                 nft add set inet f nets '{ type ipv4_addr; flags interval; }'; \
                 nft add element inet f nets '{ 10.9.0.0/25, 10.77.0.0-10.77.255.255 }'; \
                 nft add set inet f ports '{ type inet_service; }'; nft add element inet f ports '{ 9999, 7 }'; \
                 nft add rule inet f fw ip daddr @nets drop; \
                 nft add rule inet f fw udp dport @ports drop; \
                 nft add rule inet f fw udp dport vmap '{ 5678 : jump c2, 80 : accept }'; \
                 nft add rule inet f c2 ip saddr != '{ 10.1.0.0/24 }' drop; \
                 nft add rule inet f c2 ip daddr . udp dport '{ 10.2.0.2 . 5678 }' accept",
            ],
        ),
        s(
            "tc shaper on the egress port",
            "tc ",
            // A bucket that lets a few probes through and drops the rest
            // (no queue): fpd, which transmits past qdiscs, must not.
            &[
                ROUTES,
                "tc qdisc add dev veth-b root tbf rate 8kbit burst 3000 limit 100",
            ],
        ),
        s(
            "tc ingress qdisc on the input port",
            "tc ",
            &[ROUTES, "tc qdisc add dev veth-a ingress"],
        ),
        s(
            "nft ct state established,related accept, policy drop",
            "netfilter",
            &[
                ROUTES,
                "nft add table inet f; nft add chain inet f fw '{ type filter hook forward priority 0; policy drop; }'; \
                 nft add rule inet f fw ct state established,related accept; \
                 nft add rule inet f fw ip daddr 10.2.0.2 udp dport 5678 accept",
            ],
        ),
        s(
            "nft dnat",
            "netfilter",
            &[
                ROUTES,
                "nft add table ip n; nft add chain ip n pre '{ type nat hook prerouting priority -100; }'; \
                 nft add rule ip n pre ip daddr 10.2.0.99 udp dport 80 dnat to 10.2.0.2:5678",
            ],
        ),
        s(
            "iptables-legacy FORWARD drop and REJECT, ip6tables-legacy drop",
            "netfilter",
            &[
                ROUTES,
                "iptables-legacy -A FORWARD -p udp --dport 9999 -j DROP; \
                 iptables-legacy -A FORWARD -d 10.9.0.0/24 -j REJECT; \
                 ip6tables-legacy -A FORWARD -p udp --dport 9999 -j DROP",
            ],
        ),
        s(
            "iptables-legacy MASQUERADE",
            "netfilter",
            &[
                ROUTES,
                "iptables-legacy -t nat -A POSTROUTING -o veth-b -j MASQUERADE",
            ],
        ),
        s(
            "xfrm policy block fwd",
            "xfrm",
            &[
                ROUTES,
                "ip xfrm policy add src 10.1.0.0/24 dst 10.2.0.0/24 dir fwd action block; \
                 ip xfrm policy add src fd01::/64 dst fd02::/64 dir fwd action block",
            ],
        ),
        s(
            "egress MTU 1280",
            "mtu",
            &[ROUTES, "ip link set veth-b mtu 1280"],
        ),
        s(
            "rp_filter strict",
            "rp_filter",
            &[ROUTES, "sysctl -qw net.ipv4.conf.all.rp_filter=1"],
        ),
        s(
            "IPv4 forwarding off on the input port",
            "forwarding",
            &[ROUTES, "sysctl -qw net.ipv4.conf.veth-a.forwarding=0"],
        ),
        s(
            "route MTU metric 1280",
            "mtu",
            &[ROUTES, "ip route change 10.9.0.0/24 via 10.3.0.2 mtu 1280"],
        ),
    ]
}

/// One test per scenario, so that a failure names its configuration.
macro_rules! scenario_tests {
    ($($test:ident: $name:literal, $fpd_forwards:expr;)*) => {$(
        #[test]
        fn $test() {
            if $name.starts_with("tc ") && !fpsync_tests::kernel_has_tc_qdiscs() {
                return;
            }
            let _serial = serial();
            for when in [When::BeforeFpd, When::Live] {
                let (rx, forwarded) = equivalent($name, when);
                eprintln!("{}: fpd received {rx}, forwarded {forwarded} itself", $name);
                // Where fpd can decide exactly it forwards itself: the
                // comparison then tests its own forwarding, not Linux's.
                if $fpd_forwards {
                    assert!(forwarded > 0, "{}: fpd forwarded nothing itself", $name);
                }
            }
        }
    )*};
}

scenario_tests! {
    routes_alone: "routes alone", true;
    nft_forward_drop: "nft forward drop", true;
    nft_reject_set_lookup_iifname: "nft reject, set lookup, iifname", false;
    nft_sets_intervals_vmaps_concatenations: "nft sets, intervals, vmaps, concatenations", true;
    tc_shaper_on_the_egress_port: "tc shaper on the egress port", true;
    tc_ingress_qdisc_on_the_input_port: "tc ingress qdisc on the input port", false;
    nft_ct_state_policy_drop: "nft ct state established,related accept, policy drop", false;
    nft_dnat: "nft dnat", false;
    iptables_legacy_drop_reject: "iptables-legacy FORWARD drop and REJECT, ip6tables-legacy drop", false;
    iptables_legacy_masquerade: "iptables-legacy MASQUERADE", false;
    xfrm_policy_block: "xfrm policy block fwd", false;
    egress_mtu_1280: "egress MTU 1280", true;
    route_mtu_metric_1280: "route MTU metric 1280", true;
    rp_filter_strict: "rp_filter strict", true;
    forwarding_off_on_the_input_port: "IPv4 forwarding off on the input port", true;
}

/// A small seeded generator (xorshift64*): the same seed, the same run.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len() as u64) as usize]
    }

    fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
}

/// A random router configuration and random probes, from a grammar over
/// routes (every type, MTU metrics), policy rules (the selectors and
/// actions fpd evaluates, and some it leaves to Linux), nftables rules
/// (expressions fpd evaluates and some it does not), legacy iptables
/// rules, and packets to every kind of destination.
fn random_scenario(seed: u64, m: &Macs) -> Scenario {
    let mut r = Rng(seed.max(1));
    let mut setup = vec![ROUTES.to_string()];
    let nets: Vec<String> = (1..=6).map(|i| format!("10.9.{i}")).collect();
    for net in &nets {
        let route = match r.below(6) {
            0 => format!("ip route add {net}.0/24 via 10.3.0.2"),
            1 => format!("ip route add {net}.0/24 via 10.2.0.2"),
            2 => format!(
                "ip route add {net}.0/24 via 10.3.0.2 mtu {}",
                r.pick(&[576, 1280, 1400])
            ),
            3 => format!(
                "ip route add {} {net}.0/24",
                r.pick(&["unreachable", "prohibit", "blackhole"])
            ),
            4 => format!("ip route add {net}.0/24 via 10.2.0.2 table 100"),
            _ => continue,
        };
        setup.push(route);
    }
    setup.push(format!(
        "ip route add default via {} table 100",
        r.pick(&["10.3.0.2", "10.2.0.2"])
    ));
    setup.push("ip route add blackhole default table 101".into());
    for _ in 0..r.below(4) {
        let pref = 100 + r.below(900);
        let selector = match r.below(6) {
            0 => "from 10.1.0.2".to_string(),
            1 => format!("to {}.0/24", r.pick(&nets)),
            2 => "iif veth-a".to_string(),
            3 => format!("ipproto udp dport {}", r.pick(&[5678, 9999])),
            4 => "fwmark 0x1".to_string(),
            _ => "not from 10.1.0.0/24".to_string(),
        };
        let action = match r.below(5) {
            0 => "table 100".to_string(),
            1 => "table 101".to_string(),
            2 => "unreachable".to_string(),
            3 => "prohibit".to_string(),
            _ => "table 100 suppress_prefixlength 0".to_string(),
        };
        setup.push(format!("ip rule add pref {pref} {selector} {action}"));
    }
    if r.chance(60) {
        let policy = if r.chance(30) { "drop" } else { "accept" };
        setup.push(format!(
            "nft add table inet f; nft add chain inet f fw '{{ type filter hook forward priority 0; policy {policy}; }}'"
        ));
        for _ in 0..1 + r.below(5) {
            let net = r.pick(&nets).clone();
            let other = r.pick(&nets).clone();
            let rule = match r.below(12) {
                0 => format!("udp dport {} drop", r.pick(&[5678, 9999])),
                1 => format!("ip daddr {net}.0/24 accept"),
                2 => format!("ip daddr {net}.0/24 drop"),
                3 => "iifname veth-a udp dport 9999 drop".to_string(),
                4 => "ct state established,related accept".to_string(),
                5 => "meta l4proto udp counter accept".to_string(),
                // Not evaluated by fpd (and stateless: a `limit` would
                // differ between two runs by its own state).
                6 => "fib saddr . iif oif missing drop".to_string(),
                7 => "ip6 daddr fd02::2 udp dport 5678 accept".to_string(),
                8 => format!("ip daddr {net}.0/24 reject"),
                // Set lookups: an interval set, a vmap, a concatenation.
                9 => format!("ip daddr {{ {net}.0/25, {other}.0/24 }} drop"),
                10 => format!(
                    "udp dport vmap {{ 5678 : {}, 9999 : {} }}",
                    r.pick(&["accept", "drop", "continue"]),
                    r.pick(&["accept", "drop", "continue"])
                ),
                _ => format!("ip daddr . udp dport {{ 10.2.0.2 . 5678, {net}.1 . 9999 }} drop"),
            };
            setup.push(format!("nft add rule inet f fw {rule}"));
        }
    }
    if r.chance(20) {
        setup.push("iptables-legacy -A FORWARD -p udp --dport 9999 -j DROP".into());
    }
    if r.chance(15) {
        setup.push("iptables-legacy -t nat -A POSTROUTING -o veth-c -j MASQUERADE".into());
    }
    let a = v4("10.1.0.2");
    let mut probes = Vec::new();
    for id in 0..16u16 {
        let dst = match r.below(4) {
            0 => v4("10.2.0.2"),
            1 => v4("10.9.0.2"),
            _ => {
                let net = r.pick(&nets);
                v4(&format!("{net}.{}", 1 + r.below(3)))
            }
        };
        let f = Ip4Fields {
            ttl: *r.pick(&[64, 64, 64, 1]),
            df: r.chance(70),
            len: *r.pick(&[64, 64, 600, 1400]),
            id: 100 + id,
        };
        probes.push(udp4(m, a, dst, *r.pick(&[5678, 9999]), f));
    }
    for _ in 0..4 {
        let len = *r.pick(&[64, 1400]);
        probes.push(udp6(
            m,
            "fd01::2",
            "fd02::2",
            *r.pick(&[5678, 9999]),
            *r.pick(&[64, 1]),
            len,
        ));
    }
    Scenario {
        name: format!("random seed {seed}"),
        reason: None,
        setup,
        probes,
    }
}

/// Seeded random configurations and packets: for each, what crosses with
/// fpd equals what crosses with the kernel alone. `FPSYNC_SEED=N` replays
/// a run (the seed is printed); `FPSYNC_RANDOM_RUNS` sets how many.
#[test]
fn random_configurations_forward_as_the_kernel_does() {
    let _serial = serial();
    let first: u64 = std::env::var("FPSYNC_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_secs()
        });
    let runs: u64 = std::env::var("FPSYNC_RANDOM_RUNS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(6);
    for seed in first..first + runs {
        eprintln!("random configuration: FPSYNC_SEED={seed}");
        let when = if seed % 2 == 0 {
            When::Live
        } else {
            When::BeforeFpd
        };
        let (rx, forwarded) = equivalent_with(|m| random_scenario(seed, m), when);
        eprintln!("seed {seed}: fpd received {rx}, forwarded {forwarded} itself");
    }
}
