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
//! [--firewall-only] (defaults 4, 2, 10000).
//!
//! Last, fpd (AF_XDP) forwards the same flow again with N conntrack
//! entries synced into it, the flow's own among them: every packet then
//! finds and marks its entry (the hit flags that keep it alive in Linux).
//!
//! Then (alone with `--firewall-only`) a realistic router configuration,
//! made with `nft -f`: a forward chain of policy drop with 100 rules (98
//! that the flow does not match, then `ct state established,related
//! accept`, then an accept of host-a's subnet so that a new flow can
//! start), masquerade out of veth-b, and N other conntrack entries. The
//! flow is made ESTABLISHED in Linux first (host-b answers on its NATed
//! 5-tuple; a packet more than 2 s later sets ASSURED, as the kernel's UDP
//! tracker wants), then the kernel alone and fpd (AF_XDP) forward it, same
//! sizes, and the bench prints fpd's exception counters (`exception_*`,
//! `nf_*`) and the CPU time fpd used, so a reader sees whether fpd
//! forwarded the flow itself.
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

/// `count` conntrack entries in `ns`, plus (`with_flow`) the benchmark
/// flow's own (10.1.0.2:9 -> 10.2.0.2:5678), all UDP with an hour to live.
fn load_conntracks(ns: &Netns, count: u32, with_flow: bool) {
    let flow = if with_flow {
        "conntrack -I -p udp -s 10.1.0.2 -d 10.2.0.2 --sport 9 --dport 5678 --timeout 3600 && "
    } else {
        ""
    };
    let script = format!(
        "{flow}i=0; while [ $i -lt {count} ]; do \
           conntrack -I -p udp -s 10.8.$((i / 250 % 250)).$((i % 250 + 1)) -d 10.2.0.2 \
             --sport $((1024 + i / 62500)) --dport 5678 --timeout 3600 2>/dev/null || exit 1; \
           i=$((i + 1)); done"
    );
    let started = Instant::now();
    sh(&["ip", "netns", "exec", &ns.name, "sh", "-c", &script]);
    eprintln!(
        "{} conntrack entries made in {:.1} s",
        count + u32::from(with_flow),
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

/// The router's firewall for the firewall phase (`nft -f`): a forward
/// chain of policy drop, 98 rules the benchmark flow does not match
/// (other UDP ports, other source networks), `ct state
/// established,related accept`, then host-a's subnet accepted (the first
/// packets of a flow, before Linux has seen a reply); masquerade out of
/// veth-b. 100 forward rules in all.
fn firewall_ruleset() -> String {
    let mut s = String::from(
        "table inet bench {\n  chain fw {\n    type filter hook forward priority 0; policy drop;\n",
    );
    for i in 0..98u32 {
        if i % 2 == 0 {
            s.push_str(&format!("    udp dport {} drop\n", 20000 + i));
        } else {
            s.push_str(&format!("    ip saddr 172.16.{i}.0/24 drop\n"));
        }
    }
    s.push_str(
        "    ct state established,related accept\n    ip saddr 10.1.0.0/24 accept\n  }\n}\n\
         table ip benchnat {\n  chain post {\n    type nat hook postrouting priority 100; policy accept;\n\
         \x20   oifname \"veth-b\" masquerade\n  }\n}\n",
    );
    s
}

/// The benchmark flow's conntrack entry in `ns` as `conntrack -L` prints
/// it (empty when there is none).
fn flow_entry(ns: &Netns) -> String {
    let out = Command::new("ip")
        .args(["netns", "exec", &ns.name, "conntrack", "-L", "-p", "udp"])
        .args(["--orig-src", "10.1.0.2", "--orig-port-src", "9"])
        .output()
        .expect("conntrack (Debian package conntrack)");
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// One UDP datagram from `src` to `dst`, sent from inside `ns`.
fn send_udp(ns: &Netns, src: &str, dst: String) {
    let src = src.to_owned();
    topology::in_netns(ns, move || {
        let sock = std::net::UdpSocket::bind(&src).expect("bind");
        sock.send_to(b"establish", &dst).expect("send");
    })
    .join()
    .unwrap();
}

/// Makes the benchmark flow's entry ESTABLISHED and ASSURED in the
/// router's Linux: host-a sends, host-b answers on the NATed 5-tuple
/// (SEEN_REPLY), and a packet more than 2 s after the first sets ASSURED
/// (the kernel's UDP tracker assures a flow only once it has lasted that
/// long). Returns the entry as conntrack prints it.
fn establish_flow(t: &Topology) -> String {
    send_udp(&t.a, "10.1.0.2:9", "10.2.0.2:5678".into());
    std::thread::sleep(Duration::from_millis(100));
    let entry = flow_entry(&t.r);
    // ... src=10.2.0.2 dst=10.2.0.1 sport=5678 dport=9 ...: the reply tuple.
    let reply_port = entry
        .split_whitespace()
        .filter_map(|w| w.strip_prefix("dport="))
        .nth(1)
        .unwrap_or_else(|| panic!("no NATed entry for the flow: {entry:?}"))
        .to_owned();
    send_udp(&t.b, "10.2.0.2:5678", format!("10.2.0.1:{reply_port}"));
    std::thread::sleep(Duration::from_millis(2500));
    send_udp(&t.a, "10.1.0.2:9", "10.2.0.2:5678".into());
    std::thread::sleep(Duration::from_millis(100));
    let entry = flow_entry(&t.r);
    assert!(
        entry.contains("ASSURED") && entry.contains("dst=10.2.0.1"),
        "the flow is not established and masqueraded in Linux: {entry:?}"
    );
    entry
}

/// fpd's CPU time so far (user + system, all threads), in seconds.
fn cpu_seconds(pid: i32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let fields: Vec<&str> = stat
        .rsplit_once(") ")
        .map_or(Vec::new(), |(_, rest)| rest.split(' ').collect());
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
    };
    // SAFETY: sysconf reads a constant of the system; no memory is passed.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    // Fields 14 and 15 (utime, stime); `fields` starts at field 3.
    (ticks(11) + ticks(12)) as f64 / hz
}

/// Whether fpd holds the benchmark flow's entry, established (SEEN_REPLY
/// and ASSURED) and source-NATed.
fn fpd_holds_flow(t: &Topology) -> bool {
    use fpc::{Conntrack, Object, QueryClient};
    QueryClient::connect(&t.endpoint, "bench", Duration::from_secs(5))
        .and_then(|mut c| c.dump())
        .is_ok_and(|objects| {
            objects.iter().any(|o| {
                matches!(o, Object::Conntrack(ct)
                    if ct.orig.sport == 9
                        && ct.orig.src == std::net::IpAddr::from([10, 1, 0, 2])
                        && ct.status & 0x6 == 0x6
                        && ct.status & Conntrack::IPS_SRC_NAT != 0)
            })
        })
}

/// The firewall phase: the kernel alone, then fpd (AF_XDP), with the
/// firewall, masquerade and `conntracks` other entries; prints its own
/// table. `load`: make the other entries here (the conntrack phase has
/// made them already otherwise).
fn firewall_phase(
    t: &mut Topology,
    sizes: &[usize],
    cfgs: &[std::path::PathBuf],
    seconds: u64,
    rounds: u64,
    conntracks: u32,
    load: bool,
) {
    // The conntrack phase's hand-made entry for the flow (no reply, no
    // NAT) would stand in for the real one.
    let _ = Command::new("ip")
        .args(["netns", "exec", &t.r.name, "conntrack", "-D", "-p", "udp"])
        .args(["--orig-src", "10.1.0.2", "--orig-port-src", "9"])
        .output();
    if load {
        load_conntracks(&t.r, conntracks, false);
    }
    let rules = t.dir.path.join("firewall.nft");
    std::fs::write(&rules, firewall_ruleset()).unwrap();
    sh(&[
        "ip",
        "netns",
        "exec",
        &t.r.name,
        "nft",
        "-f",
        rules.to_str().unwrap(),
    ]);
    sysctl(&t.r, &["net.ipv4.ip_forward=1"]);
    let entry = establish_flow(t);
    eprintln!("the flow in Linux: {entry}");
    let mode = format!(
        "fpd af_xdp, firewall, masquerade, {} conntracks",
        conntracks + 1
    );
    let (mut kernel, mut fpd) = (Vec::new(), Vec::new());
    let (mut rtt_k, mut rtt_f) = (Vec::new(), Vec::new());
    let mut fpd_cores: Vec<(usize, f64)> = Vec::new();
    let mut exceptions: std::collections::BTreeMap<String, u64> = Default::default();
    let mut forwarded = 0u64;
    for round in 1..=rounds {
        assert!(
            ping(&t.a, "10.2.0.2", 3, "0.1") > 0,
            "the kernel does not forward through the firewall"
        );
        rtt_k.push(rtt_us(t));
        for (frame, cfg) in sizes.iter().zip(cfgs) {
            let (offered, delivered) = blast(t, cfg, seconds);
            eprintln!(
                "round {round} kernel, firewall {frame}B: offered {offered:.0} pps, \
                 delivered {delivered:.0} pps"
            );
            kernel.push(Run {
                frame: *frame,
                offered,
                delivered,
            });
        }
        assert!(
            flow_entry(&t.r).contains("ASSURED"),
            "the flow's entry is gone"
        );
        std::thread::sleep(Duration::from_secs(2));
        start_forwarding(t, &["--cpus", "1", "--backend", "af_xdp"]);
        // fpd holds the flow's entry, with its NAT, before measuring.
        let held = fpsync_tests::wait_until(Duration::from_secs(20), || fpd_holds_flow(t));
        let synced = t
            .counters()
            .into_iter()
            .find(|(n, _)| n == "conntracks")
            .map_or(0, |(_, v)| v);
        eprintln!(
            "fpd holds {synced} conntrack entries; the flow's, established and NATed: {held}"
        );
        assert!(
            held,
            "fpd does not hold the flow's established entry\n{}",
            t.logs()
        );
        rtt_f.push(rtt_us(t));
        let pid = t.fpd.as_ref().expect("fpd").pid();
        for (frame, cfg) in sizes.iter().zip(cfgs) {
            let before = t.stats();
            let (cpu0, t0) = (cpu_seconds(pid), Instant::now());
            let (offered, delivered) = blast(t, cfg, seconds);
            let cores = (cpu_seconds(pid) - cpu0) / t0.elapsed().as_secs_f64();
            let after = t.stats();
            let d = |name: &str| counter(&after, "veth-a", name) - counter(&before, "veth-a", name);
            forwarded += d("forwarded");
            let port = after.iter().find(|s| s.name == "veth-a").expect("veth-a");
            for (name, _) in &port.counters {
                if name.starts_with("exception") || name.starts_with("nf_") {
                    *exceptions.entry(name.clone()).or_default() += d(name);
                }
            }
            eprintln!(
                "round {round} {mode} {frame}B: offered {offered:.0} pps, delivered \
                 {delivered:.0} pps (fpd: forwarded {}, exceptions {}, exception_netfilter {}, \
                 ring drops {}, CPU {cores:.2} cores)",
                d("forwarded"),
                d("exceptions"),
                d("exception_netfilter"),
                d("rx_ring_drops"),
            );
            fpd_cores.push((*frame, cores));
            fpd.push(Run {
                frame: *frame,
                offered,
                delivered,
            });
        }
        stop_forwarding(t);
    }
    println!(
        "\nfirewall phase: 100 forward rules (policy drop; 98 that do not match, ct state \
         established,related accept, an accept of host-a's subnet), masquerade out of veth-b, \
         {} conntrack entries",
        conntracks + 1
    );
    println!("| frame | forwarder | delivered pps (offered) | vs kernel | cores used |");
    println!("|---|---|---|---|---|");
    for &frame in sizes {
        let (k, ko) = best(&kernel, frame);
        println!(
            "| {frame} B | kernel, firewall | {k:.0} ({ko:.0}) | 1.00x | 1: softirq on CPU 0, \
             shared with trafgen |"
        );
        let (f, fo) = best(&fpd, frame);
        let cores: Vec<String> = fpd_cores
            .iter()
            .filter(|(fr, _)| *fr == frame)
            .map(|(_, c)| format!("{c:.2}"))
            .collect();
        println!(
            "| {frame} B | {mode} | {f:.0} ({fo:.0}) | {:.2}x | worker on CPU 1 (fpd's CPU \
             time: {} cores) + XDP on CPU 0 |",
            f / k,
            cores.join(" / ")
        );
    }
    let (rk, rf) = (avg(&rtt_k), avg(&rtt_f));
    println!(
        "ping round trip, firewall: kernel {rk:.0} us, fpd af_xdp {rf:.0} us: fpd adds {:.0} us \
         per crossing",
        (rf - rk) / 2.0
    );
    let nonzero: Vec<String> = exceptions
        .iter()
        .filter(|(_, v)| **v > 0)
        .map(|(k, v)| format!("{k} {v}"))
        .collect();
    println!(
        "fpd forwarded {forwarded} packets itself over the phase; to Linux, by reason: {}",
        if nonzero.is_empty() {
            "none".to_owned()
        } else {
            nonzero.join(", ")
        }
    );
}

/// The best round of `frame`: (delivered, offered).
fn best(runs: &[Run], frame: usize) -> (f64, f64) {
    runs.iter()
        .filter(|r| r.frame == frame)
        .map(|r| (r.delivered, r.offered))
        .fold((0.0f64, 0.0f64), |a, b| if b.0 > a.0 { b } else { a })
}

fn avg(v: &[f64]) -> f64 {
    v.iter().sum::<f64>() / v.len() as f64
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
    let conntracks: u32 = arg("--conntracks", 10_000u32);
    if std::env::args().any(|a| a == "--firewall-only") {
        firewall_phase(&mut t, &sizes, &cfgs, seconds, rounds, conntracks, true);
        return;
    }
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
    load_conntracks(&t.r, conntracks, true);
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
    firewall_phase(&mut t, &sizes, &cfgs, seconds, rounds, conntracks, false);
}
