//! Thousands of random route-family operations, then the fast path must
//! equal Linux. The seed is printed; FPSYNC_CHURN_SEED replays a run.

use std::collections::HashMap;
use std::time::Duration;

use fastpath::fpc::Object;

use fpsync_tests::Setup;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

const OPS: usize = 4000;

fn random_op(rng: &mut StdRng) -> String {
    // Each device has its own subnet (v0: 10.0.0.0/24, w0: 10.0.1.0/24, ...)
    // so that most gateways are reachable through the device named.
    let sub = rng.random_range(0..3);
    let dev = ["v0", "w0", "x0"][sub];
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
    let nhid = rng.random_range(1..12);
    match rng.random_range(0..26) {
        0 => format!("link set {dev} down"),
        1..=2 => format!("link set {dev} up"),
        3 => format!("link set {dev} mtu {}", rng.random_range(1280..9000)),
        4 => format!(
            "addr add 10.0.{sub}.{}/24 dev {dev}",
            rng.random_range(1..3)
        ),
        5 => format!(
            "addr del 10.0.{sub}.{}/24 dev {dev}",
            rng.random_range(1..3)
        ),
        6 => format!("addr add 2001:db8:{sub}::1/64 dev {dev} nodad"),
        7..=8 => format!("route add {dst4} via {gw4}{table}{metric}"),
        9 => format!("route replace {dst4} dev {dev}{table}"),
        10 => format!("route del {dst4}{table}{metric}"),
        11 => format!(
            "route replace {dst4}{table} nexthop via {gw4} weight {} nexthop via 10.0.{}.2",
            rng.random_range(1..4),
            (sub + 1) % 3
        ),
        12 => format!("route add blackhole {dst4}{table}"),
        13 => format!("route replace {dst4}{table} nhid {nhid}"),
        14..=15 => format!("-6 route add {dst6} via {gw6}{table}"),
        16 => format!("-6 route del {dst6}{table}"),
        17 => format!("-6 route append {dst6} via {gw6} dev {dev}"),
        18 => format!("-6 route del {dst6} via {gw6} dev {dev}"),
        19 => format!("nexthop replace id {nhid} via {gw4} dev {dev} onlink"),
        20 => format!(
            "nexthop replace id {} group {}/{}",
            nhid + 20,
            nhid,
            nhid % 11 + 1
        ),
        21 => format!(
            "nexthop del id {}",
            [nhid, nhid + 20][rng.random_range(0..2)]
        ),
        22 => format!("route replace {dst4}{table} nhid {}", nhid + 20),
        23 => format!(
            "neigh replace 10.0.{sub}.{} lladdr 02:00:00:00:{sub:02x}:{:02x} dev {dev}",
            rng.random_range(2..9),
            rng.random_range(0..255)
        ),
        24 => format!("neigh del 10.0.{sub}.{} dev {dev}", rng.random_range(2..9)),
        _ => format!(
            "-6 neigh replace {gw6} lladdr 02:00:00:00:01:{:02x} dev {dev}",
            rng.random_range(0..255)
        ),
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
    let s = Setup::new("churn");
    s.ns.batch(
        "link add v0 type veth peer name v1\nlink add w0 type veth peer name w1\n\
         link add x0 type veth peer name x1\nlink set v1 up\nlink set w1 up\nlink set x1 up\n",
    );
    let mut done = 0;
    // The most of each kind Linux held between batches: the churn really
    // built state (random ops that fail do not count).
    let mut peak = HashMap::<&str, usize>::new();
    let mut count = HashMap::<&str, usize>::new();
    while done < OPS {
        let n = rng.random_range(50..400).min(OPS - done);
        let lines: Vec<String> = (0..n).map(|_| random_op(&mut rng)).collect();
        // -force: an operation that fails (a delete of nothing, ...) is
        // part of churn, not a reason to stop.
        let dir = fpsync_tests::TempDir::new("churn");
        let path = dir.path.join("batch");
        std::fs::write(&path, lines.join("\n") + "\n").unwrap();
        let _ = std::process::Command::new("ip")
            .args(["-n", &s.ns.name, "-force", "-batch", path.to_str().unwrap()])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status();
        done += n;
        for obj in instance::check::linux_objects(Some(&s.ns.name), &s.features).unwrap() {
            let kind = match &obj {
                Object::Route(r) if r.dst.is_ipv6() => "routes6",
                Object::Route(_) => "routes4",
                Object::Nexthop(_) => "nexthops",
                Object::Neigh(_) => "neighbours",
                _ => continue,
            };
            *count.entry(kind).or_insert(0) += 1;
        }
        for (kind, n) in count.drain() {
            let max = peak.entry(kind).or_insert(0);
            *max = (*max).max(n);
        }
        // Sometimes check in the middle of the churn too.
        if rng.random_range(0..4) == 0 {
            s.assert_in_sync(Duration::from_secs(2));
        }
    }
    s.assert_in_sync(Duration::from_secs(2));
    println!("Linux peaks during churn: {peak:?}");
    for (kind, least) in [
        ("routes4", 10),
        ("routes6", 3),
        ("nexthops", 1),
        ("neighbours", 1),
    ] {
        assert!(
            peak.get(kind).copied().unwrap_or(0) >= least,
            "churn built too few {kind}: {peak:?}"
        );
    }
}
