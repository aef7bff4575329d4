//! Twenty thousand random route-family operations, with carrier loss and
//! recovery, peer deletion, links moved between namespaces, nexthop group
//! edits under routes and link flaps; then the fast path must equal Linux,
//! by the check and by the oracle, in the middle and at the end. The seed
//! is printed; FPSYNC_CHURN_SEED replays a run.

use std::collections::HashMap;
use std::time::Duration;

use fastpath::fpc::Object;

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

#[test]
fn random_churn_ends_in_sync() {
    let seed = std::env::var("FPSYNC_CHURN_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(rand::random::<u64>);
    println!("churn seed {seed} (FPSYNC_CHURN_SEED={seed} replays it)");
    let mut rng = StdRng::seed_from_u64(seed);
    let s = Setup::new("churn");
    let far = Netns::new("churn-far");
    for (dev, peer) in [("v0", "v1"), ("w0", "w1"), ("x0", "x1")] {
        s.ns.ip(&[
            "link", "add", dev, "type", "veth", "peer", "name", peer, "netns", &far.name,
        ]);
        far.ip(&["link", "set", peer, "up"]);
    }
    let mut done = 0;
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
            for (at, ns) in [(At::Near, &s.ns.name), (At::Far, &far.name)] {
                let lines: Vec<String> = seg
                    .iter()
                    .filter(|(a, _)| *a == at)
                    .flat_map(|(_, l)| l.iter().cloned())
                    .collect();
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
                    Object::Nexthop(n) if n.family == fastpath::fpc::AF_INET6 => "nexthops6",
                    Object::Nexthop(_) => "nexthops4",
                    Object::Neigh(_) => "neighbours",
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
         {t_ops:?} in operations, {t_checks:?} in checks midway"
    );
    // Routes the churn made (not the kernel's own), of each kind.
    for (kind, least) in [
        ("routes4", 10),
        ("routes6", 5),
        ("nexthops4", 1),
        ("nexthops6", 1),
        ("groups", 1),
        ("neighbours", 1),
    ] {
        assert!(
            peak.get(kind).copied().unwrap_or(0) >= least,
            "churn built too few {kind}: {peak:?}"
        );
    }
    assert!(checks > 0, "no check midway");
}
