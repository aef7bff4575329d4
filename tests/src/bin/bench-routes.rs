//! Route-sync benchmark (issue: foundation). Loads IPv4 and IPv6 routes
//! into a namespace with `ip -batch` while cmgrd syncs them into fpd, and
//! prints, each measured in this one run:
//!
//! (a) time until fpd holds every route / the kernel's own install time;
//! (b) full resync time after fpd is killed and restarted;
//! (c) fpd resident memory per route, and cmgrd's per cached route;
//! (d) p50/p99 latency from one route add (netlink) to fpd applied, beside
//!     the kernel's own add latency (its netlink ack).
//!
//! With `--tls 1`, the same cmgrd also feeds blade 2 on another "machine":
//! an fpd in a namespace of its own, reached over veth and TCP with mutual
//! TLS (certificates made at run time). (a), (b) and (d) are then given
//! for both blades, measured in the same run: the Unix socket against TLS
//! between namespaces (each fpd read through its own Unix socket, so only
//! the sync path differs).
//!
//! Usage: bench-routes [--v4 N] [--v6 N] [--samples N] [--tls 0|1]
//! (defaults 1,000,000, 200,000, 2,000, 0). Run the release build as root.

use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, Instant};

use fpc::Endpoint;
use fpc::{Object, QueryClient};
use fpsync_tests::pki::{tls_args, Pki};
use fpsync_tests::{arg, bin, wait_until, Daemon, Netns, Setup};
use instance::netlink::{wire, Messages, NetlinkSocket};

fn rss_kib(pid: i32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap()
}

fn routes_in_fpd(client: &mut QueryClient) -> u64 {
    client
        .counters()
        .unwrap()
        .into_iter()
        .filter(|(n, _)| n == "routes4" || n == "routes6")
        .map(|(_, v)| v)
        .sum()
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 * p) as usize).min(sorted.len() - 1)]
}

/// An RTM_NEWROUTE for `dst`/32 via 10.0.0.2 in the main table, with an ack.
fn route_add_msg(dst: Ipv4Addr, seq: u32) -> Vec<u8> {
    let mut m = Vec::new();
    let attr = |m: &mut Vec<u8>, kind: u16, v: &[u8]| {
        m.extend_from_slice(&((4 + v.len()) as u16).to_ne_bytes());
        m.extend_from_slice(&kind.to_ne_bytes());
        m.extend_from_slice(v);
    };
    m.extend_from_slice(&[0; 4]);
    m.extend_from_slice(&wire::RTM_NEWROUTE.to_ne_bytes());
    let flags = wire::NLM_F_REQUEST | wire::NLM_F_ACK | 0x400 /* CREATE */ | 0x200 /* EXCL */;
    m.extend_from_slice(&flags.to_ne_bytes());
    m.extend_from_slice(&seq.to_ne_bytes());
    m.extend_from_slice(&0u32.to_ne_bytes());
    // rtmsg: family, dst_len, src_len, tos, table, protocol, scope, type, flags
    m.extend_from_slice(&[2, 32, 0, 0, 254, 4, 0, 1, 0, 0, 0, 0]);
    attr(&mut m, 1, &dst.octets()); // RTA_DST
    attr(&mut m, 5, &[10, 0, 0, 2]); // RTA_GATEWAY
    let len = m.len() as u32;
    m[0..4].copy_from_slice(&len.to_ne_bytes());
    m
}

/// Blade 2 on another "machine": its namespace, joined to the synced one
/// by veth, and its fpd (TLS on TCP; a Unix socket for the reads).
struct TlsBlade {
    fpd: Option<Daemon>,
    args: Vec<String>,
    endpoint: Endpoint,
    _pki: Pki,
    _ns: Netns,
}

const TLS_IP: &str = "10.94.0.2";

impl TlsBlade {
    /// Makes the machine and starts its fpd; cmgrd's extra arguments to
    /// feed it.
    fn new(s: &Setup) -> (TlsBlade, Vec<String>) {
        let ns = Netns::new("bench-b");
        s.ns.ip(&[
            "link", "add", "tob", "type", "veth", "peer", "name", "tocp", "netns", &ns.name,
        ]);
        s.ns.ip(&["addr", "add", "10.94.0.1/24", "dev", "tob"]);
        s.ns.ip(&["link", "set", "tob", "up"]);
        ns.ip(&["addr", "add", &format!("{TLS_IP}/24"), "dev", "tocp"]);
        ns.ip(&["link", "set", "tocp", "up"]);
        let pki = Pki::new(&s.dir.path, "bench");
        let blade_id = pki.issue("blade", &[TLS_IP]);
        let endpoint = Endpoint::Unix(s.dir.path.join("fpd2.sock"));
        let mut args = vec![
            "--blade".to_string(),
            "2".into(),
            "--netns".into(),
            ns.name.clone(),
            "--listen".into(),
            format!("tcp:{TLS_IP}:7700"),
            "--listen".into(),
            endpoint.to_string(),
        ];
        args.extend(tls_args(&blade_id));
        let mut cmgrd = vec!["--blade".to_string(), format!("2=tcp:{TLS_IP}:7700")];
        cmgrd.extend(tls_args(&pki.issue("cmgr", &[])));
        let mut b = TlsBlade {
            fpd: None,
            args,
            endpoint,
            _pki: pki,
            _ns: ns,
        };
        b.start(s);
        (b, cmgrd)
    }

    fn start(&mut self, s: &Setup) {
        let log = s
            .dir
            .path
            .join(format!("fpd2.{}.log", fpsync_tests::unique()));
        self.fpd = Some(Daemon::spawn(&bin("fpd"), &self.args, log));
        let ep = self.endpoint.clone();
        assert!(
            wait_until(Duration::from_secs(10), || QueryClient::connect(
                &ep,
                "bench",
                Duration::from_secs(1)
            )
            .is_ok()),
            "fpd2 did not start"
        );
    }

    fn client(&self) -> QueryClient {
        QueryClient::connect(&self.endpoint, "bench", Duration::from_secs(30)).unwrap()
    }

    fn assert_in_sync(&self, s: &Setup) {
        let diffs = instance::check::check_until(
            Some(&s.ns.name),
            &self.endpoint,
            &s.features,
            Duration::from_secs(30),
        )
        .unwrap();
        assert!(diffs.is_empty(), "blade 2 (TLS) differs: {diffs:?}");
    }
}

fn main() {
    let (v4, v6, samples) = (
        arg("--v4", 1_000_000),
        arg("--v6", 200_000),
        arg("--samples", 2_000),
    );
    let with_tls = arg("--tls", 0u32) != 0;
    let mut s = Setup::new("bench");
    let mut tls = None;
    if with_tls {
        let (b, extra) = TlsBlade::new(&s);
        s.cmgrd_args.extend(extra);
        s.cmgrd.as_mut().unwrap().kill();
        s.start_cmgrd();
        tls = Some(b);
    }
    s.ns.batch(
        "link add v0 type veth peer name v1\nlink set v0 up\nlink set v1 up\n\
         addr add 10.0.0.1/16 dev v0\naddr add 2001:db8::1/64 dev v0 nodad\n",
    );
    s.assert_in_sync(Duration::from_secs(5));
    if let Some(b) = &tls {
        b.assert_in_sync(&s);
    }
    let mut client = QueryClient::connect(&s.endpoint, "bench", Duration::from_secs(30)).unwrap();
    let mut client2 = tls.as_ref().map(TlsBlade::client);
    let base = routes_in_fpd(&mut client);
    let fpd_pid = s.fpd.as_ref().unwrap().pid();
    let rss_before = rss_kib(fpd_pid);
    let cmgrd_pid = s.cmgrd.as_ref().unwrap().pid();
    let cmgrd_before = rss_kib(cmgrd_pid);

    let batch = fpsync_tests::route_batch(v4, v6);
    let dir = fpsync_tests::TempDir::new("bench");
    let path = dir.path.join("routes.batch");
    std::fs::write(&path, &batch).unwrap();
    drop(batch);

    // (a) kernel install time and fpd convergence, in the same run.
    let target = base + (v4 + v6) as u64;
    let t0 = Instant::now();
    let mut ip = std::process::Command::new("ip")
        .args(["-n", &s.ns.name, "-batch", path.to_str().unwrap()])
        .spawn()
        .unwrap();
    let mut kernel_done = None;
    let mut fpd_done = None;
    let mut tls_done = None;
    while fpd_done.is_none() || kernel_done.is_none() || (tls.is_some() && tls_done.is_none()) {
        if kernel_done.is_none() {
            if let Some(status) = ip.try_wait().unwrap() {
                assert!(status.success(), "ip -batch failed");
                kernel_done = Some(t0.elapsed());
            }
        }
        if fpd_done.is_none() && routes_in_fpd(&mut client) >= target {
            fpd_done = Some(t0.elapsed());
        }
        if let Some(c) = client2.as_mut() {
            if tls_done.is_none() && routes_in_fpd(c) >= target {
                tls_done = Some(t0.elapsed());
            }
        }
        std::thread::sleep(Duration::from_millis(2));
        assert!(
            t0.elapsed() < Duration::from_secs(600),
            "no convergence in 600 s"
        );
    }
    ip.wait().unwrap(); // already exited: reaps it
    let (kernel_t, fpd_t) = (kernel_done.unwrap(), fpd_done.unwrap());
    s.assert_in_sync(Duration::from_secs(30));

    // (c) memory per route.
    let rss_after = rss_kib(fpd_pid);
    let per_route = (rss_after.saturating_sub(rss_before) * 1024) as f64 / (v4 + v6) as f64;
    let cmgrd_after = rss_kib(cmgrd_pid);
    let cmgrd_per_route =
        (cmgrd_after.saturating_sub(cmgrd_before) * 1024) as f64 / (v4 + v6) as f64;

    // (b) full resync after an fpd restart.
    s.fpd.as_mut().unwrap().kill();
    let t1 = Instant::now();
    s.start_fpd();
    let mut client = QueryClient::connect(&s.endpoint, "bench", Duration::from_secs(30)).unwrap();
    assert!(wait_until(Duration::from_secs(120), || routes_in_fpd(
        &mut client
    ) >= target));
    let resync_t = t1.elapsed();
    s.assert_in_sync(Duration::from_secs(30));
    // ... and of the TLS blade, alone.
    let tls_resync = tls.as_mut().map(|b| {
        b.fpd.as_mut().unwrap().kill();
        let t = Instant::now();
        b.start(&s);
        let mut c = b.client();
        assert!(wait_until(Duration::from_secs(120), || routes_in_fpd(
            &mut c
        ) >= target));
        let took = t.elapsed();
        b.assert_in_sync(&s);
        took
    });

    // (d) latency of one add, idle system.
    let ns = s.ns.name.clone();
    let ep = s.endpoint.clone();
    let ep2 = tls.as_ref().map(|b| b.endpoint.clone());
    let (kernel_lat, fpd_lat, tls_lat) = std::thread::spawn(move || {
        instance::netns::enter(&ns).unwrap();
        let mut sock = NetlinkSocket::open(&[], 1 << 20).unwrap();
        let mut client = QueryClient::connect(&ep, "bench", Duration::from_secs(5)).unwrap();
        let mut client2 =
            ep2.map(|ep| QueryClient::connect(&ep, "bench", Duration::from_secs(5)).unwrap());
        let has = |c: &mut QueryClient, dst: Ipv4Addr| {
            matches!(c.route_get(254, IpAddr::V4(dst)).unwrap(),
                Some(Object::Route(r)) if r.dst == IpAddr::V4(dst) && r.dst_len == 32)
        };
        let (mut k, mut f, mut f2) = (Vec::new(), Vec::new(), Vec::new());
        let mut buf = Vec::new();
        for i in 0..samples as u32 {
            let dst = Ipv4Addr::new(203, (i >> 16) as u8, (i >> 8) as u8, i as u8);
            let t = Instant::now();
            sock.send(&route_add_msg(dst, i + 1)).unwrap();
            buf.clear();
            sock.recv(&mut buf, false).unwrap();
            let acked = t.elapsed();
            for m in Messages::new(&buf) {
                let m = m.unwrap();
                assert_eq!(wire::error_code(m.payload), 0, "route add refused");
            }
            // Both blades polled in turn, each timed when it has it.
            let (mut done, mut done2) = (None, client2.as_ref().map(|_| None));
            while done.is_none() || done2.is_some_and(|d: Option<Duration>| d.is_none()) {
                if done.is_none() && has(&mut client, dst) {
                    done = Some(t.elapsed());
                }
                if let (Some(c), Some(None)) = (client2.as_mut(), done2) {
                    if has(c, dst) {
                        done2 = Some(Some(t.elapsed()));
                    }
                }
                assert!(t.elapsed() < Duration::from_secs(5), "route never applied");
            }
            f.push(done.unwrap());
            if let Some(Some(d)) = done2 {
                f2.push(d);
            }
            k.push(acked);
            std::thread::sleep(Duration::from_millis(1));
        }
        k.sort();
        f.sort();
        f2.sort();
        (k, f, f2)
    })
    .join()
    .unwrap();

    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    let us = |d: Duration| d.as_secs_f64() * 1e6;
    println!("routes: {v4} IPv4 + {v6} IPv6, added with ip -batch");
    println!(
        "(a) kernel install {:.2} s, fpd holds all at {:.2} s: ratio {:.3} (target <= 1.02)",
        kernel_t.as_secs_f64(),
        fpd_t.as_secs_f64(),
        fpd_t.as_secs_f64() / kernel_t.as_secs_f64()
    );
    println!(
        "(b) full resync after fpd restart: {:.0} ms = {:.3} x the kernel install (target <= 250 ms)",
        ms(resync_t),
        resync_t.as_secs_f64() / kernel_t.as_secs_f64()
    );
    println!(
        "(c) fpd RSS {} KiB -> {} KiB: {:.1} bytes per route (target <= 32); \
         cmgrd RSS {} KiB -> {} KiB: {:.1} bytes per cached route (target <= 64)",
        rss_before, rss_after, per_route, cmgrd_before, cmgrd_after, cmgrd_per_route
    );
    let (kp50, kp99) = (percentile(&kernel_lat, 0.5), percentile(&kernel_lat, 0.99));
    let (fp50, fp99) = (percentile(&fpd_lat, 0.5), percentile(&fpd_lat, 0.99));
    println!(
        "(d) {samples} single adds: kernel ack p50 {:.0} us p99 {:.0} us; fpd applied p50 {:.0} us p99 {:.0} us \
         fpd p99 - kernel p99 {:.0} us (target <= 100 us); fpd/kernel p50 {:.2} p99 {:.2}",
        us(kp50),
        us(kp99),
        us(fp50),
        us(fp99),
        us(fp99) - us(kp99),
        fp50.as_secs_f64() / kp50.as_secs_f64(),
        fp99.as_secs_f64() / kp99.as_secs_f64()
    );
    if let (Some(tls_t), Some(tls_resync)) = (tls_done, tls_resync) {
        let (tp50, tp99) = (percentile(&tls_lat, 0.5), percentile(&tls_lat, 0.99));
        println!(
            "TLS blade (another namespace, veth, mutual TLS), same run: \
             (a) holds all at {:.2} s (Unix {:.2} s); (b) full resync {:.0} ms (Unix {:.0} ms); \
             (d) applied p50 {:.0} us p99 {:.0} us (Unix p50 {:.0} us p99 {:.0} us): TLS/Unix p50 {:.2} p99 {:.2}",
            tls_t.as_secs_f64(),
            fpd_t.as_secs_f64(),
            ms(tls_resync),
            ms(resync_t),
            us(tp50),
            us(tp99),
            us(fp50),
            us(fp99),
            tp50.as_secs_f64() / fp50.as_secs_f64(),
            tp99.as_secs_f64() / fp99.as_secs_f64()
        );
    }
}
