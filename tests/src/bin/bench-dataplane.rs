//! Dataplane benchmark (issue 7): packets per second forwarded by fpd
//! (AF_PACKET and AF_XDP) against the Linux kernel forwarding on the same topology,
//! measured in this one run, with 64-byte and 1514-byte frames (60 and 1514
//! bytes without FCS: 18-byte and 1472-byte UDP payloads), as ratios; and
//! the latency fpd adds per packet (ping round trips through the router,
//! kernel and fpd, halved: one crossing each way).
//!
//! Topology: tests/tests/dataplane/topology.rs. trafgen (Debian package
//! netsniff-ng) sends one UDP flow from host-a, pinned to CPU 0, one
//! worker (`-P 1`) on its TX ring; delivered packets are host-b's eth0
//! rx_packets over the measuring window. Kernel run: the router forwards
//! (ip_forward=1), in softirq on the sender's CPU (veth runs sender,
//! router and receiver there). fpd runs: fpd's one worker pinned to CPU 1
//! (`--cpus`), which also carries host-b's receive; with AF_PACKET
//! (ip_forward=0: Linux sees every frame too) and the TPACKET_V2 receive
//! ring (the default), with V3, and with AF_XDP (`--backend af_xdp`;
//! ip_forward=1, as a router with fpd runs: Linux forwards what fpd hands
//! it, and never sees what fpd forwards).
//!
//! Usage: bench-dataplane [--seconds N] [--rounds N] [--conntracks N]
//! (defaults 4, 2, 10000).
//!
//! Last, fpd (AF_XDP) forwards the same flow again with N conntrack
//! entries synced into it, the flow's own among them: every packet then
//! finds and marks its entry (the hit flags that keep it alive in Linux).
//! Run the release build as root.

#[path = "../../tests/dataplane/topology.rs"]
#[allow(dead_code)]
mod topology;

use std::process::Command;
use std::time::{Duration, Instant};

use fpsync_tests::{arg, sh, Netns, TempDir};
use topology::{counter, ping, sysctl, Topology};

fn mac(ns: &Netns, dev: &str) -> String {
    let out = sh(&[
        "ip",
        "netns",
        "exec",
        &ns.name,
        "cat",
        &format!("/sys/class/net/{dev}/address"),
    ]);
    out.trim().to_owned()
}

fn link_counter(ns: &Netns, dev: &str, name: &str) -> u64 {
    let path = format!("/sys/class/net/{dev}/statistics/{name}");
    sh(&["ip", "netns", "exec", &ns.name, "cat", &path])
        .trim()
        .parse()
        .unwrap()
}

/// Frame length (no FCS) -> trafgen configuration of one UDP flow.
fn trafgen_config(router_mac: &str, host_mac: &str, frame: usize) -> String {
    let payload = frame - 14 - 20 - 8;
    format!(
        "{{ eth(da={router_mac}, sa={host_mac}, type=0x0800), \
         ipv4(sa=10.1.0.2, da=10.2.0.2, ttl=64, df), udp(sp=9, dp=5678), \
         fill(0x41, {payload}) }}\n"
    )
}

/// Runs trafgen for `seconds` and returns (offered, delivered) packets per
/// second over the middle of the run.
fn blast(t: &Topology, cfg: &std::path::Path, seconds: u64) -> (f64, f64) {
    let mut child = Command::new("ip")
        .args([
            "netns",
            "exec",
            &t.a.name,
            "timeout",
            "-s",
            "INT",
            &seconds.to_string(),
        ])
        .args(["taskset", "-c", "0", "trafgen", "-o", "eth0", "-i"])
        .arg(cfg)
        // One worker; touch neither socket memory sysctls nor IRQs.
        .args(["-P", "1", "--no-sock-mem", "-Q"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("trafgen (Debian package netsniff-ng)");
    std::thread::sleep(Duration::from_millis(1000));
    let (tx0, rx0, t0) = (
        link_counter(&t.a, "eth0", "tx_packets"),
        link_counter(&t.b, "eth0", "rx_packets"),
        Instant::now(),
    );
    std::thread::sleep(Duration::from_millis((seconds * 1000).saturating_sub(1600)));
    let (tx1, rx1, dt) = (
        link_counter(&t.a, "eth0", "tx_packets"),
        link_counter(&t.b, "eth0", "rx_packets"),
        t0.elapsed().as_secs_f64(),
    );
    let _ = child.wait();
    ((tx1 - tx0) as f64 / dt, (rx1 - rx0) as f64 / dt)
}

/// Starts fpd (and cmgrd) on the router with `args`, and waits until a
/// ping crosses it.
fn start_forwarding(t: &mut Topology, args: &[&str]) {
    t.start_fast_path(args);
    let mut tries = 0;
    while ping(&t.a, "10.2.0.2", 1, "0.1") == 0 {
        tries += 1;
        assert!(tries < 50, "fpd does not forward\n{}", t.logs());
    }
}

/// One blast of each frame size through the running fpd.
fn blast_each_size(
    t: &Topology,
    sizes: &[usize],
    cfgs: &[std::path::PathBuf],
    seconds: u64,
    label: &str,
) -> Vec<Run> {
    let mut runs = Vec::new();
    for (frame, cfg) in sizes.iter().zip(cfgs) {
        let before = t.stats();
        let (offered, delivered) = blast(t, cfg, seconds);
        let after = t.stats();
        let d = |name: &str| counter(&after, "veth-a", name) - counter(&before, "veth-a", name);
        eprintln!(
            "{label} {frame}B: offered {offered:.0} pps, delivered {delivered:.0} pps \
             (fpd: forwarded {}, ring drops {}, tx full {})",
            d("forwarded"),
            d("rx_ring_drops"),
            d("drop_tx_full"),
        );
        runs.push(Run {
            frame: *frame,
            offered,
            delivered,
        });
    }
    runs
}

/// Stops fpd and cmgrd. A killed fpd leaves its XDP program attached
/// (passing every frame to Linux, but still on the path): off, for the
/// next run.
fn stop_forwarding(t: &mut Topology) {
    t.stop_fast_path();
    for dev in ["veth-a", "veth-b", "veth-c"] {
        t.r.ip(&["link", "set", "dev", dev, "xdp", "off"]);
    }
}

/// `count` conntrack entries in `ns`, plus the benchmark flow's own
/// (10.1.0.2:9 -> 10.2.0.2:5678), all UDP with an hour to live.
fn load_conntracks(ns: &Netns, count: u32) {
    let script = format!(
        "conntrack -I -p udp -s 10.1.0.2 -d 10.2.0.2 --sport 9 --dport 5678 --timeout 3600 && \
         i=0; while [ $i -lt {count} ]; do \
           conntrack -I -p udp -s 10.8.$((i / 250 % 250)).$((i % 250 + 1)) -d 10.2.0.2 \
             --sport $((1024 + i / 62500)) --dport 5678 --timeout 3600 2>/dev/null || exit 1; \
           i=$((i + 1)); done"
    );
    let started = Instant::now();
    sh(&["ip", "netns", "exec", &ns.name, "sh", "-c", &script]);
    eprintln!(
        "{} conntrack entries made in {:.1} s",
        count + 1,
        started.elapsed().as_secs_f64()
    );
}

/// Average ping round trip through the router, in microseconds.
fn rtt_us(t: &Topology) -> f64 {
    let out = sh(&[
        "ip", "netns", "exec", &t.a.name, "ping", "-n", "-q", "-c", "500", "-i", "0.002",
        "10.2.0.2",
    ]);
    // rtt min/avg/max/mdev = 0.041/0.052/0.090/0.007 ms
    out.lines()
        .find(|l| l.contains("min/avg/max"))
        .and_then(|l| l.split('=').nth(1))
        .and_then(|v| v.trim().split('/').nth(1))
        .and_then(|v| v.parse::<f64>().ok())
        .map(|ms| ms * 1000.0)
        .expect("ping summary")
}

struct Run {
    frame: usize,
    offered: f64,
    delivered: f64,
}

fn main() {
    let seconds: u64 = arg("--seconds", 4u64).max(3);
    let rounds: u64 = arg("--rounds", 2u64).max(1);
    let dir = TempDir::new("bdp");
    let mut t = Topology::new("bdp");
    let router_mac = mac(&t.r, "veth-a");
    let host_mac = mac(&t.a, "eth0");
    let sizes = [60usize, 1514];
    let cfgs: Vec<_> = sizes
        .iter()
        .map(|&frame| {
            let path = dir.path.join(format!("udp{frame}.cfg"));
            std::fs::write(&path, trafgen_config(&router_mac, &host_mac, frame)).unwrap();
            path
        })
        .collect();
    let modes: [(&str, &[&str]); 3] = [
        ("fpd af_packet rx v2", &["--cpus", "1", "--rx-ring", "v2"]),
        ("fpd af_packet rx v3", &["--cpus", "1", "--rx-ring", "v3"]),
        ("fpd af_xdp", &["--cpus", "1", "--backend", "af_xdp"]),
    ];
    let mut kernel = Vec::new();
    let mut fpd: Vec<Vec<Run>> = modes.iter().map(|_| Vec::new()).collect();
    let mut rtt_kernel = Vec::new();
    let mut rtt_fpd: Vec<Vec<f64>> = modes.iter().map(|_| Vec::new()).collect();
    for round in 1..=rounds {
        // The kernel forwards; no fpd.
        sysctl(&t.r, &["net.ipv4.ip_forward=1"]);
        assert!(
            ping(&t.a, "10.2.0.2", 3, "0.1") > 0,
            "the kernel does not forward"
        );
        rtt_kernel.push(rtt_us(&t));
        for (frame, cfg) in sizes.iter().zip(&cfgs) {
            let (offered, delivered) = blast(&t, cfg, seconds);
            eprintln!("round {round} kernel {frame}B: offered {offered:.0} pps, delivered {delivered:.0} pps");
            kernel.push(Run {
                frame: *frame,
                offered,
                delivered,
            });
        }
        // fpd forwards. With AF_PACKET the kernel must not (it sees every
        // frame too); with AF_XDP it forwards what fpd hands it, as a
        // router with fpd runs.
        for (m, (mode, args)) in modes.iter().enumerate() {
            let xdp = args.contains(&"af_xdp");
            sysctl(
                &t.r,
                &[if xdp {
                    "net.ipv4.ip_forward=1"
                } else {
                    "net.ipv4.ip_forward=0"
                }],
            );
            start_forwarding(&mut t, args);
            rtt_fpd[m].push(rtt_us(&t));
            let label = format!("round {round} {mode}");
            fpd[m].extend(blast_each_size(&t, &sizes, &cfgs, seconds, &label));
            stop_forwarding(&mut t);
        }
    }
    // The same with conntrack entries: the flow's own and `conntracks`
    // others, made before fpd starts so that the first sync carries them.
    let conntracks: u32 = arg("--conntracks", 10_000u32);
    load_conntracks(&t.r, conntracks);
    let ct_mode = format!("fpd af_xdp, {} conntracks", conntracks + 1);
    let mut fpd_ct = Vec::new();
    sysctl(&t.r, &["net.ipv4.ip_forward=1"]);
    for round in 1..=rounds {
        // The kernel releases a killed fpd's AF_XDP sockets a little after
        // its exit (EBUSY on bind until then).
        std::thread::sleep(Duration::from_secs(2));
        start_forwarding(&mut t, &["--cpus", "1", "--backend", "af_xdp"]);
        let synced = t
            .counters()
            .into_iter()
            .find(|(n, _)| n == "conntracks")
            .map_or(0, |(_, v)| v);
        assert_eq!(synced, u64::from(conntracks) + 1, "conntracks in fpd");
        let label = format!("round {round} {ct_mode}");
        fpd_ct.extend(blast_each_size(&t, &sizes, &cfgs, seconds, &label));
        stop_forwarding(&mut t);
    }
    let best = |runs: &[Run], frame: usize| {
        runs.iter()
            .filter(|r| r.frame == frame)
            .map(|r| (r.delivered, r.offered))
            .fold((0.0f64, 0.0f64), |a, b| if b.0 > a.0 { b } else { a })
    };
    let avg = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
    println!("| frame | forwarder | delivered pps (offered) | vs kernel |");
    println!("|---|---|---|---|");
    for frame in sizes {
        let (k, ko) = best(&kernel, frame);
        println!("| {frame} B | kernel | {k:.0} ({ko:.0}) | 1.00x |");
        for (m, (mode, _)) in modes.iter().enumerate() {
            let (f, fo) = best(&fpd[m], frame);
            println!("| {frame} B | {mode} | {f:.0} ({fo:.0}) | {:.2}x |", f / k);
        }
        let (f, fo) = best(&fpd_ct, frame);
        println!(
            "| {frame} B | {ct_mode} | {f:.0} ({fo:.0}) | {:.2}x |",
            f / k
        );
    }
    let rk = avg(&rtt_kernel);
    println!("\nping round trip through the router (500 pings, 2 ms apart): kernel {rk:.0} us");
    for (m, (mode, _)) in modes.iter().enumerate() {
        let rf = avg(&rtt_fpd[m]);
        println!(
            "{mode}: {rf:.0} us, so fpd adds {:.0} us per packet (per crossing)",
            (rf - rk) / 2.0
        );
    }
}
