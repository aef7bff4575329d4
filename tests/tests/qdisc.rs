//! The ports' queueing disciplines from the real kernel: `tc qdisc` shapers
//! and classifiers reach fpd (the defaults do not), follow replace and
//! delete, go with a deleted link (unannounced), and come back from
//! cmgrd's dump after a restart.

use std::time::Duration;

use fpc::{Object, QueryClient};
use fpsync_tests::{oracle, sh, Setup};

const SYNC: Duration = Duration::from_secs(2);

fn qdiscs(s: &Setup) -> Vec<String> {
    let mut v: Vec<String> = QueryClient::connect(&s.endpoint, "test", Duration::from_secs(5))
        .and_then(|mut c| c.dump())
        .unwrap()
        .into_iter()
        .filter_map(|o| match o {
            Object::Qdisc(q) => Some(q.kind),
            _ => None,
        })
        .collect();
    v.sort();
    v
}

fn tc(s: &Setup, args: &str) {
    let mut full = vec!["ip", "netns", "exec", &s.ns.name, "tc"];
    full.extend(args.split_whitespace());
    sh(&full);
    s.assert_equal_to_linux(SYNC);
}

#[test]
fn shapers_and_classifiers_follow_tc() {
    if !fpsync_tests::kernel_has_tc_qdiscs() {
        return;
    }
    let mut s = Setup::new("qdisc");
    for (a, b) in [("q0", "q1"), ("q2", "q3")] {
        s.ns.ip(&["link", "add", a, "type", "veth", "peer", "name", b]);
        s.ns.ip(&["link", "set", a, "up"]);
        s.ns.ip(&["link", "set", b, "up"]);
    }
    s.assert_equal_to_linux(SYNC);
    assert!(qdiscs(&s).is_empty(), "the defaults are not synced");
    tc(
        &s,
        "qdisc add dev q0 root tbf rate 100mbit burst 64k latency 50ms",
    );
    tc(&s, "qdisc add dev q1 ingress");
    tc(&s, "qdisc add dev q2 clsact");
    assert_eq!(qdiscs(&s), ["clsact", "ingress", "tbf"]);
    // tc's own listing says the same (the oracle reads `tc -j`).
    let linux = oracle::linux(&s.ns.name, &s.features).unwrap();
    assert_eq!(
        linux.keys().filter(|(k, _)| *k == "qdisc").count(),
        3,
        "{linux:?}"
    );
    let diff = oracle::compare(&s.ns.name, &s.endpoint, &s.features);
    assert!(diff.is_empty(), "{diff:?}");
    tc(
        &s,
        "qdisc replace dev q0 root tbf rate 10mbit burst 64k latency 50ms",
    );
    tc(&s, "qdisc del dev q1 ingress");
    assert_eq!(qdiscs(&s), ["clsact", "tbf"]);
    // Back to the default (noqueue): not synced.
    tc(&s, "qdisc del dev q0 root");
    assert_eq!(qdiscs(&s), ["clsact"]);
    tc(
        &s,
        "qdisc add dev q3 root tbf rate 1mbit burst 32k latency 10ms",
    );
    // A deleted link takes its qdiscs along, without RTM_DELQDISC.
    s.ns.ip(&["link", "del", "q2"]);
    s.assert_equal_to_linux(SYNC);
    assert!(qdiscs(&s).is_empty(), "{:?}", qdiscs(&s));
    // From cmgrd's dump.
    tc(
        &s,
        "qdisc add dev q0 root tbf rate 100mbit burst 64k latency 50ms",
    );
    s.cmgrd.as_mut().unwrap().kill();
    s.start_cmgrd();
    s.assert_equal_to_linux(SYNC);
    assert_eq!(qdiscs(&s), ["tbf"]);
}
