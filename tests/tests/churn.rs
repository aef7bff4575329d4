//! Twenty thousand random route-family operations, with carrier loss and
//! recovery, peer deletion, links moved between namespaces, nexthop group
//! edits under routes and link flaps, and among them random operations of
//! the other families (policy rules, bridge ports and FDB entries,
//! nftables tables, conntrack entries); then the fast path must equal
//! Linux, by the check and by the oracle, in the middle and at the end.
//! The seed is printed; FPSYNC_CHURN_SEED replays a run.
//!
//! The other families' operations are drawn from a second generator
//! seeded from the same seed, so a seed of the route-family churn alone
//! still replays the same route-family operations and checks.

use std::collections::HashMap;
use std::time::Duration;

use fpc::Object;

use fpsync_tests::{Netns, Setup};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

const OPS: usize = 20_000;

/// Where an operation runs: the namespace under sync, or the far one that
/// holds the veth peers (v1, w1, x1).
#[derive(Clone, Copy, PartialEq)]
enum At {
    Near,
    Far,
}

/// One random operation: the lines `ip -batch` runs, and where. `ip
/// -batch` takes no `-6`: IPv6 commands name IPv6 addresses instead.
fn random_op(rng: &mut StdRng, near: &str, far: &str) -> (At, Vec<String>) {
    // Each device has its own subnet (v0: 10.0.0.0/24, w0: 10.0.1.0/24, ...)
    // so that most gateways are reachable through the device named.
    let sub = rng.random_range(0..3);
    let dev = ["v0", "w0", "x0"][sub];
    let peer = ["v1", "w1", "x1"][sub];
    let gw4 = format!("10.0.{sub}.{}", rng.random_range(2..6));
    let dst4 = format!(
        "172.{}.{}.0/24",
        rng.random_range(16..18),
        rng.random_range(0..40)
    );
    let dst6 = format!("2001:db8:{:x}::/64", rng.random_range(0x100..0x140));
    let gw6 = format!("2001:db8:{sub}::{}", rng.random_range(2..6));
    let table = ["", " table 100", " table 200"][rng.random_range(0..3)];
    let metric = [" metric 10", ""][rng.random_range(0..2)];
    // Few ids, so that groups find their members.
    let nhid = rng.random_range(1..6);
    // Creating, deleting and moving links costs the kernel tens of
    // milliseconds each: those run in one case of four.
    let heavy = rng.random_range(0..4) == 0;
    // Links going down, losing carrier or moving flush most of what the
    // other operations build: they run in one case of three, so that the
    // churn holds state as well as tearing it down.
    let disrupt = rng.random_range(0..3) == 0;
    let one = |line: String| (At::Near, vec![line]);
    match rng.random_range(0..56) {
        0 if disrupt => one(format!("link set {dev} down")),
        0..=2 => one(format!("link set {dev} up")),
        3 => one(format!(
            "link set {dev} mtu {}",
            rng.random_range(1280..9000)
        )),
        4 => one(format!(
            "addr add 10.0.{sub}.{}/24 dev {dev}",
            rng.random_range(1..3)
        )),
        5 => one(format!(
            "addr del 10.0.{sub}.{}/24 dev {dev}",
            rng.random_range(1..3)
        )),
        6 => one(format!("addr add 2001:db8:{sub}::1/64 dev {dev} nodad")),
        7..=8 => one(format!("route add {dst4} via {gw4}{table}{metric}")),
        9 => one(format!("route replace {dst4} dev {dev}{table}")),
        10 => one(format!("route del {dst4}{table}{metric}")),
        11 => one(format!(
            "route replace {dst4}{table} nexthop via {gw4} weight {} nexthop via 10.0.{}.2",
            rng.random_range(1..4),
            (sub + 1) % 3
        )),
        12 => one(format!("route add blackhole {dst4}{table}")),
        13 => one(format!("route replace {dst4}{table} nhid {nhid}")),
        14..=15 => one(format!("route add {dst6} via {gw6}{table}")),
        16 => one(format!("route del {dst6}{table}")),
        17 => one(format!("route append {dst6} via {gw6} dev {dev}")),
        18 => one(format!("route del {dst6} via {gw6} dev {dev}")),
        19 => one(format!(
            "nexthop replace id {nhid} via {gw4} dev {dev} onlink"
        )),
        // Group edits under the routes that use them, weighted or not.
        20 => one(format!(
            "nexthop replace id {} group {}/{}",
            nhid + 20,
            nhid,
            nhid % 5 + 1
        )),
        21 => one(format!(
            "nexthop del id {}",
            [nhid, nhid + 20][rng.random_range(0..2)]
        )),
        22 => one(format!("route replace {dst4}{table} nhid {}", nhid + 20)),
        23 => one(format!(
            "neigh replace 10.0.{sub}.{} lladdr 02:00:00:00:{sub:02x}:{:02x} dev {dev}",
            rng.random_range(2..9),
            rng.random_range(0..255)
        )),
        24 => one(format!(
            "neigh del 10.0.{sub}.{} dev {dev}",
            rng.random_range(2..9)
        )),
        25 => one(format!(
            "neigh replace {gw6} lladdr 02:00:00:00:01:{:02x} dev {dev}",
            rng.random_range(0..255)
        )),
        26 => one(format!(
            "nexthop replace id {} group {},{}/{},{}/{}",
            nhid + 20,
            nhid,
            rng.random_range(1..5),
            nhid % 5 + 1,
            rng.random_range(1..5),
            (nhid + 1) % 5 + 1
        )),
        // IPv6 nexthops and routes on them.
        27 => one(format!(
            "nexthop replace id {} via {gw6} dev {dev}",
            nhid + 40
        )),
        28 => one(format!("route replace {dst6}{table} nhid {}", nhid + 40)),
        // Link flaps.
        29 if disrupt => (
            At::Near,
            vec![format!("link set {dev} down"), format!("link set {dev} up")],
        ),
        // Carrier loss and recovery: the peer goes down and up.
        30 if disrupt => (At::Far, vec![format!("link set {peer} down")]),
        29..=32 => (At::Far, vec![format!("link set {peer} up")]),
        // The peer deleted (the pair goes), and the pair made again.
        33 if heavy && disrupt => (At::Far, vec![format!("link del {peer}")]),
        34 if heavy => (
            At::Near,
            vec![
                format!("link add {dev} type veth peer name {peer} netns {far}"),
                format!("link set {dev} up"),
            ],
        ),
        // The link moved to the far namespace, and back.
        35 if heavy && disrupt => one(format!("link set {dev} netns {far}")),
        36 if heavy => (
            At::Far,
            vec![
                format!("link set {dev} netns {near}"),
                format!("link set {peer} up"),
            ],
        ),
        33..=37 => (At::Far, vec![format!("link set {peer} up")]),
        // More of what builds state than of what tears it down.
        38..=40 => one(format!("link set {dev} up")),
        41..=42 => one(format!("addr add 2001:db8:{sub}::1/64 dev {dev} nodad")),
        43..=44 => one(format!(
            "addr add 10.0.{sub}.{}/24 dev {dev}",
            rng.random_range(1..3)
        )),
        45..=46 => one(format!(
            "nexthop replace id {nhid} via {gw4} dev {dev} onlink"
        )),
        47..=48 => one(format!(
            "nexthop replace id {} via {gw6} dev {dev}",
            nhid + 40
        )),
        49..=50 => one(format!(
            "nexthop replace id {} group {}/{}",
            nhid + 20,
            nhid,
            nhid % 5 + 1
        )),
        51..=52 => one(format!("route replace {dst4}{table} nhid {}", nhid + 20)),
        53 => one(format!("route add {dst6} via {gw6}{table}")),
        _ => one(format!("route replace {dst4}{table} nhid {}", nhid + 40)),
    }
}

/// Mixed into the route family's operations from their own generator
/// (see the module's header), the other families' operations, each in the
/// tool that makes it.
enum Wide {
    /// A line for the near namespace's `ip -batch` (rules, bridge ports).
    Ip(String),
    /// A line for its `bridge -batch` (FDB entries).
    Bridge(String),
    /// Lines of an `nft -f` file; each operation's lines succeed whatever
    /// state they find (a `delete table` follows an `add table`), so that
    /// one file a run of operations cannot fail as a whole.
    Nft(String),
    /// The arguments of a `conntrack` run.
    Conntrack(String),
}

fn wide_op(rng: &mut StdRng) -> Wide {
    // Few priorities, prefixes and tables, so that deletes find rules and
    // identical rules (and their order) occur.
    let prio = 1000 + rng.random_range(0..8);
    let table = ["100", "200", "main"][rng.random_range(0..3)];
    let from4 = format!("10.{}.0.0/16", rng.random_range(0..4));
    let from6 = format!("2001:db8:{:x}::/48", rng.random_range(0x200..0x204));
    let iif = ["v0", "w0", "x0", "p0"][rng.random_range(0..4)];
    let mac = format!("02:00:00:00:aa:{:02x}", rng.random_range(0..16));
    let nft = rng.random_range(0..3);
    let sport = 1000 + rng.random_range(0..12);
    let src = format!("10.9.{}.{}", rng.random_range(0..2), rng.random_range(1..5));
    match rng.random_range(0..16) {
        0 => Wide::Ip(format!("rule add pref {prio} from {from4} table {table}")),
        1 => Wide::Ip(format!(
            "rule add pref {prio} to 172.16.{}.0/24 iif {iif} table {table}",
            rng.random_range(0..4)
        )),
        2 => Wide::Ip(format!(
            "rule add pref {prio} fwmark {:#x}/0xff not from {from4} goto 32766",
            rng.random_range(1..4)
        )),
        3 => Wide::Ip(format!("rule add pref {prio} from {from6} table {table}")),
        4 => Wide::Ip(format!("rule del pref {prio}")),
        5 => Wide::Ip(format!("rule del pref {prio} from {from6}")),
        // Bridge ports leave and join (the kernel flushes a leaving
        // port's FDB entries).
        6 => Wide::Ip("link set p0 nomaster".into()),
        7 => Wide::Ip("link set p0 master br0".into()),
        8..=9 => Wide::Bridge(format!("fdb add {mac} dev p0 master static")),
        10 => Wide::Bridge(format!("fdb del {mac} dev p0 master")),
        11 => Wide::Nft(format!(
            "add table inet c{nft}\n\
             add chain inet c{nft} fc {{ type filter hook forward priority 0; policy accept; }}\n\
             add rule inet c{nft} fc ip saddr 10.0.{}.0/24 counter accept\n\
             add rule inet c{nft} fc udp dport {sport} drop\n",
            rng.random_range(0..3)
        )),
        12 => Wide::Nft(format!("add table inet c{nft}\ndelete table inet c{nft}\n")),
        13..=14 => Wide::Conntrack(format!(
            "-I -p udp -s {src} -d 10.9.0.1 --sport {sport} --dport 53 -t 600"
        )),
        _ => Wide::Conntrack(format!(
            "-D -p udp -s {src} -d 10.9.0.1 --sport {sport} --dport 53"
        )),
    }
}

/// Runs `lines` with `ip -n NS -force -batch`: an operation that fails (a
/// delete of nothing, ...) is part of churn, not a reason to stop.
fn run_batch(ns: &str, lines: &[String]) {
    let dir = fpsync_tests::TempDir::new("churn");
    let path = dir.path.join("batch");
    std::fs::write(&path, lines.join("\n") + "\n").unwrap();
    let _ = std::process::Command::new("ip")
        .args(["-n", ns, "-force", "-batch", path.to_str().unwrap()])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status();
}

/// Runs a run of the other families' operations (the `ip` lines go with
/// the near namespace's batch, in `ip_lines`): one `bridge -batch`, one
/// `nft -f`, one shell for the conntrack runs. Failures are churn too.
fn run_wide(ns: &str, ops: Vec<Wide>, ip_lines: &mut Vec<String>) {
    let dir = fpsync_tests::TempDir::new("churnw");
    let (mut bridge, mut nft, mut ct) = (String::new(), String::new(), String::new());
    for op in ops {
        match op {
            Wide::Ip(l) => ip_lines.push(l),
            Wide::Bridge(l) => bridge += &(l + "\n"),
            Wide::Nft(l) => nft += &l,
            Wide::Conntrack(a) => ct += &format!("conntrack {a} >/dev/null 2>&1\n"),
        }
    }
    let quiet = |args: &[&str]| {
        let _ = std::process::Command::new(args[0])
            .args(&args[1..])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status();
    };
    for (text, file, cmd) in [
        (
            &bridge,
            "bridge",
            ["bridge", "-n", ns, "-force", "-batch"].as_slice(),
        ),
        (
            &nft,
            "nft",
            ["ip", "netns", "exec", ns, "nft", "-f"].as_slice(),
        ),
        (&ct, "ct", ["ip", "netns", "exec", ns, "sh"].as_slice()),
    ] {
        if text.is_empty() {
            continue;
        }
        let path = dir.path.join(file);
        std::fs::write(&path, text).unwrap();
        let mut args = cmd.to_vec();
        args.push(path.to_str().unwrap());
        quiet(&args);
    }
}

#[test]
fn random_churn_ends_in_sync() {
    let seed = std::env::var("FPSYNC_CHURN_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(rand::random::<u64>);
    println!("churn seed {seed} (FPSYNC_CHURN_SEED={seed} replays it)");
    let mut rng = StdRng::seed_from_u64(seed);
    // The other families' generator: see the module's header.
    let mut wide = StdRng::seed_from_u64(seed ^ 0x5749_4445);
    let s = Setup::new("churn");
    let far = Netns::new("churn-far");
    for (dev, peer) in [("v0", "v1"), ("w0", "w1"), ("x0", "x1")] {
        s.ns.ip(&[
            "link", "add", dev, "type", "veth", "peer", "name", peer, "netns", &far.name,
        ]);
        far.ip(&["link", "set", peer, "up"]);
    }
    // A bridge with a port (its veth peer stays in the near namespace),
    // for the FDB and bridge port operations.
    s.ns.batch(
        "link add br0 type bridge\nlink add p0 type veth peer name p1\n\
         link set p0 master br0\nlink set br0 up\nlink set p0 up\nlink set p1 up\n",
    );
    let mut done = 0;
    let mut wide_done = 0;
    // The most of each kind Linux held between runs of operations: the
    // churn really built state (random ops that fail do not count).
    let mut peak = HashMap::<&str, usize>::new();
    let mut count = HashMap::<&str, usize>::new();
    let mut checks = 0;
    let (mut t_ops, mut t_checks) = (Duration::ZERO, Duration::ZERO);
    while done < OPS {
        let mut t0 = std::time::Instant::now();
        let n = rng.random_range(50..400).min(OPS - done);
        let ops: Vec<(At, Vec<String>)> = (0..n)
            .map(|_| random_op(&mut rng, &s.ns.name, &far.name))
            .collect();
        // A batch per namespace for each run of about 50 operations (an
        // `ip` per operation would cost more than the churn itself): the
        // near one's, then the far one's.
        for seg in ops.chunks(50) {
            let others: Vec<Wide> = (0..wide.random_range(0..10))
                .map(|_| wide_op(&mut wide))
                .collect();
            wide_done += others.len();
            let mut near_lines = Vec::new();
            run_wide(&s.ns.name, others, &mut near_lines);
            for (at, ns) in [(At::Near, &s.ns.name), (At::Far, &far.name)] {
                let mut lines: Vec<String> = seg
                    .iter()
                    .filter(|(a, _)| *a == at)
                    .flat_map(|(_, l)| l.iter().cloned())
                    .collect();
                if at == At::Near {
                    lines.append(&mut near_lines);
                }
                if !lines.is_empty() {
                    run_batch(ns, &lines);
                }
            }
            t_ops += t0.elapsed();
            for obj in instance::check::linux_objects(Some(&s.ns.name), &s.features).unwrap() {
                let kind = match &obj {
                    Object::Route(r) if r.dst.is_ipv6() && r.protocol != 2 => "routes6",
                    Object::Route(r) if r.dst.is_ipv4() && r.protocol != 2 => "routes4",
                    Object::Nexthop(n) if !n.group.is_empty() => "groups",
                    Object::Nexthop(n) if n.family == fpc::AF_INET6 => "nexthops6",
                    Object::Nexthop(_) => "nexthops4",
                    Object::Neigh(_) => "neighbours",
                    Object::Rule(r) if (1000..1008).contains(&r.spec.priority) => "rules",
                    Object::Fdb(e) if e.ifindex != e.master && e.state & 0x40 != 0 => "fdb",
                    Object::NftTable(_) => "nft tables",
                    Object::Conntrack(_) => "conntrack",
                    _ => continue,
                };
                *count.entry(kind).or_insert(0) += 1;
            }
            for (kind, n) in count.drain() {
                let max = peak.entry(kind).or_insert(0);
                *max = (*max).max(n);
            }
            t0 = std::time::Instant::now();
        }
        done += n;
        // Sometimes check in the middle of the churn too, with the check
        // and the oracle.
        if rng.random_range(0..8) == 0 {
            let t0 = std::time::Instant::now();
            s.assert_equal_to_linux(Duration::from_secs(2));
            t_checks += t0.elapsed();
            checks += 1;
        }
    }
    s.assert_equal_to_linux(Duration::from_secs(2));
    println!(
        "Linux peaks during churn: {peak:?}; {checks} checks midway; \
         {t_ops:?} in operations ({wide_done} of them of the other families), \
         {t_checks:?} in checks midway"
    );
    // Routes the churn made (not the kernel's own), of each kind.
    for (kind, least) in [
        ("routes4", 10),
        ("routes6", 5),
        ("nexthops4", 1),
        ("nexthops6", 1),
        ("groups", 1),
        ("neighbours", 1),
        ("rules", 1),
        ("fdb", 1),
        ("nft tables", 1),
        ("conntrack", 1),
    ] {
        assert!(
            peak.get(kind).copied().unwrap_or(0) >= least,
            "churn built too few {kind}: {peak:?}"
        );
    }
    assert!(checks > 0, "no check midway");
}
