//! Changes the kernel makes without a netlink message of their own, one
//! test each: after the trigger, the fast path equals Linux within 1 s
//! (docs/DESIGN.md, "What the kernel changes without telling").

use std::time::Duration;

use fpsync_tests::{wait_until, Netns, Setup};

const SYNC: Duration = Duration::from_secs(1);

/// A namespace under sync joined to a second one (the far end) by two veth
/// pairs, c1–c2 and d1–d2, addressed on both families, with nexthop
/// objects on each device, a group of them, and routes using each.
struct Pair {
    s: Setup,
    far: Netns,
}

impl Pair {
    fn new(tag: &str) -> Pair {
        let s = Setup::new(tag);
        let far = Netns::new(&format!("{tag}-far"));
        for (near, peer) in [("c1", "c2"), ("d1", "d2")] {
            s.ns.ip(&[
                "link", "add", near, "type", "veth", "peer", "name", peer, "netns", &far.name,
            ]);
            s.ns.ip(&["link", "set", near, "up"]);
            far.ip(&["link", "set", peer, "up"]);
        }
        s.ns.batch(
            "addr add 10.1.0.1/24 dev c1\naddr add 10.2.0.1/24 dev d1\n\
             addr add 2001:db8:1::1/64 dev c1 nodad\naddr add 2001:db8:2::1/64 dev d1 nodad\n\
             nexthop add id 1 via 10.1.0.2 dev c1\nnexthop add id 2 via 10.2.0.2 dev d1\n\
             nexthop add id 10 group 1/2\n\
             route add 192.0.2.0/24 nhid 10\nroute add 198.51.100.0/24 nhid 1\n\
             route add 203.0.113.0/24 via 10.1.0.2 dev c1\n\
             route add 203.0.113.128/25 nexthop via 10.1.0.2 dev c1 nexthop via 10.2.0.2 dev d1\n\
             nexthop add id 3 via 2001:db8:1::2 dev c1\nnexthop add id 4 via 2001:db8:2::2 dev d1\n\
             nexthop add id 11 group 3/4\n\
             route add 2001:db8:100::/64 nhid 11\nroute add 2001:db8:101::/64 nhid 3\n\
             route add 2001:db8:102::/64 via 2001:db8:1::2 dev c1\n\
             neigh add 10.1.0.5 lladdr 02:00:00:00:00:05 dev c1 nud permanent\n\
             neigh add 10.1.0.6 lladdr 02:00:00:00:00:06 dev c1 nud reachable\n\
             neigh add 2001:db8:1::6 lladdr 02:00:00:00:00:06 dev c1 nud reachable\n",
        );
        s.assert_in_sync(Duration::from_secs(5));
        Pair { s, far }
    }

    /// The near end's nexthop ids, as Linux lists them.
    fn nexthops(&self) -> String {
        self.s.ns.ip(&["nexthop", "show"])
    }
}

/// The veth peer goes down: c1 loses carrier but stays up. The kernel
/// deletes nexthops 1 and 3, the IPv4 route on nexthop 1, shrinks groups
/// 10 and 11, flushes c1's non-permanent neighbours, and announces only
/// the link (IFF_LOWER_UP cleared) and the neighbours.
#[test]
fn carrier_loss_and_recovery() {
    let p = Pair::new("carrier");
    p.far.ip(&["link", "set", "c2", "down"]);
    // What this test is about: the kernel did flush them (linkwatch runs
    // the carrier change a moment later, from a work queue).
    let flushed = |nh: &str| !nh.contains("id 1 ") && !nh.contains("id 3 ");
    assert!(
        wait_until(SYNC, || flushed(&p.nexthops())),
        "{}",
        p.nexthops()
    );
    p.s.assert_in_sync(SYNC);
    // Carrier back: nothing the kernel deleted comes back, routes lose
    // their (unsynced) linkdown flag.
    p.far.ip(&["link", "set", "c2", "up"]);
    p.s.assert_in_sync(SYNC);
    p.s.ns.batch(
        "nexthop add id 1 via 10.1.0.2 dev c1\nnexthop replace id 10 group 1/2\n\
         route replace 198.51.100.0/24 nhid 1\n",
    );
    p.s.assert_in_sync(SYNC);
}
