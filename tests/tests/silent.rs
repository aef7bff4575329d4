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
        Self::with_args(tag, &[])
    }

    fn with_args(tag: &str, cmgrd_args: &[&str]) -> Pair {
        let s = Setup::with_args(tag, cmgrd_args);
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
        s.assert_equal_to_linux(Duration::from_secs(5));
        Pair { s, far }
    }

    /// The near end's nexthop ids, as Linux lists them.
    fn nexthops(&self) -> String {
        self.s.ns.ip(&["nexthop", "show"])
    }

    /// Waits until the kernel has flushed nexthop `id` (linkwatch runs a
    /// carrier change's flush from a work queue, a moment after the carrier
    /// went: until then there is nothing to find).
    fn await_flush(&self, id: u32) {
        let gone = || !self.nexthops().contains(&format!("id {id} "));
        assert!(wait_until(SYNC, gone), "{}", self.nexthops());
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
    p.s.assert_equal_to_linux(SYNC);
    // Carrier back: nothing the kernel deleted comes back, routes lose
    // their (unsynced) linkdown flag.
    p.far.ip(&["link", "set", "c2", "up"]);
    p.s.assert_equal_to_linux(SYNC);
    p.s.ns.batch(
        "nexthop add id 1 via 10.1.0.2 dev c1\nnexthop replace id 10 group 1/2\n\
         route replace 198.51.100.0/24 nhid 1\n",
    );
    p.s.assert_equal_to_linux(SYNC);
}

/// The race behind link news: a link's new flags reach cmgrd two ways,
/// the announcement (through the listener's queue) and the link poll's
/// dump. With a poll every 20 ms the dump often comes first, and the
/// cached link already has the new flags when the announcement is
/// processed: recovery must be judged on the link's state, not on a change
/// from the cache (with a change, this failed about one run in two).
#[test]
fn carrier_loss_seen_first_by_the_link_poll() {
    let p = Pair::with_args("carrierpoll", &["--link-poll", "20"]);
    p.far.ip(&["link", "set", "d2", "down"]);
    p.far.ip(&["link", "set", "c2", "down"]);
    p.await_flush(2);
    p.await_flush(1);
    p.s.assert_equal_to_linux(SYNC);
}

/// Runs `ip` in the near namespace, then the fast path must equal Linux.
fn step(p: &Pair, cmd: &str) {
    let args: Vec<&str> = cmd.split_whitespace().collect();
    p.s.ns.ip(&args);
    p.s.assert_equal_to_linux(SYNC);
}

/// `ip link set c1 netns FAR`: to its old namespace the link is
/// unregistered (RTM_DELLINK, its addresses' RTM_DELADDR), its IPv4
/// routes and its nexthops go silently.
#[test]
fn link_moved_to_another_namespace() {
    let p = Pair::new("netns");
    step(&p, &format!("link set c1 netns {}", p.far.name));
    // And one moved in: announced with none of its addresses.
    p.far.ip(&["link", "set", "c1", "netns", &p.s.ns.name]);
    p.s.assert_equal_to_linux(SYNC);
    step(&p, "link set c1 up");
}

/// The far end deletes its end of the pair: the near end goes too.
#[test]
fn veth_peer_deleted() {
    let p = Pair::new("peerdel");
    p.far.ip(&["link", "del", "c2"]);
    p.s.assert_equal_to_linux(SYNC);
}

/// Deleting a group's member: the group's shrinking is announced
/// (RTM_NEWNEXTHOP), the IPv4 routes on the member alone go silently;
/// deleting its last member deletes the group (announced) and the IPv4
/// routes on it (silently).
#[test]
fn nexthop_group_member_deleted() {
    let p = Pair::new("nhmember");
    step(&p, "nexthop del id 1");
    step(&p, "nexthop del id 2");
    step(&p, "nexthop del id 3");
    step(&p, "nexthop del id 4");
}

/// Addresses without their prefix route (`noprefixroute`), and switching
/// an address's prefix route off and on with `ip addr change`.
#[test]
fn noprefixroute_addresses() {
    let p = Pair::new("noprefix");
    step(&p, "addr add 10.3.0.1/24 dev c1 noprefixroute");
    step(&p, "route add 10.9.0.0/24 dev c1 src 10.3.0.1");
    step(&p, "addr del 10.3.0.1/24 dev c1");
    step(&p, "addr change 10.1.0.1/24 dev c1 noprefixroute");
    step(&p, "addr change 10.1.0.1/24 dev c1");
    step(&p, "addr add 2001:db8:3::1/64 dev c1 nodad noprefixroute");
    step(&p, "addr del 2001:db8:3::1/64 dev c1");
    step(
        &p,
        "addr change 2001:db8:1::1/64 dev c1 nodad noprefixroute",
    );
    step(&p, "addr change 2001:db8:1::1/64 dev c1 nodad");
}

/// Enslaving a link with addresses, routes and nexthops to a bridge, and
/// releasing it; with the port down; and deleting the bridge under it.
#[test]
fn master_and_nomaster() {
    let p = Pair::new("master");
    step(&p, "link add br0 type bridge");
    step(&p, "link set br0 up");
    step(&p, "link set d1 master br0");
    step(&p, "link set d1 nomaster");
    step(&p, "link set d1 down");
    step(&p, "link set d1 master br0");
    step(&p, "link set d1 up");
    step(&p, "link set c1 master br0");
    step(&p, "link del br0");
}

/// MTU changes: below 1280 IPv6 leaves the link (addrconf_ifdown: its
/// addresses, routes and neighbours, each announced; its IPv6 nexthop
/// objects stay), back above it returns with a new link-local address
/// only. An IPv4 route with `mtu lock` keeps its metric.
#[test]
fn mtu_changes() {
    let p = Pair::new("mtu");
    step(&p, "link set c1 mtu 9000");
    step(&p, "link set c1 mtu 1280");
    step(&p, "link set c1 mtu 1200");
    step(&p, "link set c1 mtu 1500");
    step(
        &p,
        "route add 10.8.0.0/24 via 10.1.0.2 dev c1 mtu lock 1400",
    );
    step(&p, "link set c1 mtu 1300");
}

/// Neighbour flushes: on admin down, a MAC change, the last IPv4 address
/// removed (arp_ifdown), IPv6 switched off on the link.
#[test]
fn neighbour_flushes() {
    let p = Pair::new("neigh");
    step(&p, "link set c1 address 02:00:00:00:01:01");
    step(
        &p,
        "neigh add 10.1.0.7 lladdr 02:00:00:00:00:07 dev c1 nud stale",
    );
    step(&p, "addr del 10.1.0.1/24 dev c1");
    step(
        &p,
        "neigh add 2001:db8:1::7 lladdr 02:00:00:00:00:07 dev c1 nud stale",
    );
    sysctl(&p.s.ns, "net.ipv6.conf.c1.disable_ipv6=1");
    p.s.assert_equal_to_linux(SYNC);
    sysctl(&p.s.ns, "net.ipv6.conf.c1.disable_ipv6=0");
    p.s.assert_equal_to_linux(SYNC);
    step(
        &p,
        "neigh add 10.1.0.8 lladdr 02:00:00:00:00:08 dev c1 nud reachable",
    );
    step(&p, "link set c1 down");
}

/// With net.ipv6.route.skip_notify_on_dev_down=1 the kernel deletes a
/// downed link's IPv6 routes without RTM_DELROUTE (rt6_sync_down_dev).
#[test]
fn ipv6_routes_deleted_without_notification_on_link_down() {
    let p = Pair::new("skipnotify");
    sysctl(&p.s.ns, "net.ipv6.route.skip_notify_on_dev_down=1");
    step(&p, "link set c1 down");
    step(&p, "link set c1 up");
    p.far.ip(&["link", "set", "d2", "down"]);
    p.await_flush(2);
    p.s.assert_equal_to_linux(SYNC);
    step(&p, "link set d1 down");
}

/// `sysctl -w` inside a namespace.
fn sysctl(ns: &Netns, setting: &str) {
    fpsync_tests::sh(&["ip", "netns", "exec", &ns.name, "sysctl", "-qw", setting]);
}

/// The far end moves to a third namespace: the near end loses carrier
/// and its link-netnsid changes (announced); then that namespace goes,
/// and the pair with it.
#[test]
fn veth_peer_moved_to_another_namespace() {
    let p = Pair::new("peermove");
    let third = Netns::new("peermove-third");
    p.far.ip(&["link", "set", "c2", "netns", &third.name]);
    p.await_flush(1);
    p.s.assert_equal_to_linux(SYNC);
    third.ip(&["link", "set", "c2", "up"]);
    p.s.assert_equal_to_linux(SYNC);
    drop(third);
    p.s.assert_equal_to_linux(SYNC);
}

/// Removing a link's primary IPv4 address: without promotion its
/// secondaries go (announced), and with the last address every IPv4 route
/// through the link (fib_disable_ip, silent); with promote_secondaries a
/// secondary becomes primary and routes using the old one as source go.
#[test]
fn primary_address_removed() {
    let p = Pair::new("primary");
    step(&p, "addr add 10.1.0.100/24 dev c1");
    step(&p, "route add 10.9.0.0/24 dev c1 src 10.1.0.100");
    step(&p, "addr del 10.1.0.1/24 dev c1");
    sysctl(&p.s.ns, "net.ipv4.conf.d1.promote_secondaries=1");
    step(&p, "addr add 10.2.0.100/24 dev d1");
    step(&p, "route add 10.10.0.0/24 dev d1 src 10.2.0.1");
    step(&p, "route add 10.11.0.0/24 dev d1 src 10.2.0.100");
    step(&p, "addr del 10.2.0.1/24 dev d1");
}

/// A bridge whose only port loses carrier loses carrier itself: the
/// nexthops and routes on the bridge go as on any link (NETDEV_CHANGE).
#[test]
fn bridge_loses_carrier_with_its_port() {
    let p = Pair::new("brcarrier");
    p.s.ns.batch(
        "link add br0 type bridge\nlink set d1 master br0\nlink set br0 up\n\
         addr add 10.5.0.1/24 dev br0\nnexthop add id 5 via 10.5.0.2 dev br0\n\
         route add 10.50.0.0/24 nhid 5\nroute add 10.51.0.0/24 via 10.5.0.2 dev br0\n",
    );
    fpsync_tests::sh(&[
        "bridge",
        "-n",
        &p.s.ns.name,
        "fdb",
        "add",
        "02:00:00:00:00:09",
        "dev",
        "d1",
        "master",
        "dynamic",
    ]);
    assert!(wait_until(SYNC, || p
        .s
        .ns
        .ip(&["link", "show", "br0"])
        .contains("LOWER_UP")));
    p.s.assert_equal_to_linux(SYNC);
    p.far.ip(&["link", "set", "d2", "down"]);
    assert!(wait_until(SYNC, || !p.nexthops().contains("id 5 ")));
    p.s.assert_equal_to_linux(SYNC);
    p.far.ip(&["link", "set", "d2", "up"]);
    p.s.assert_equal_to_linux(SYNC);
}

/// A macvlan on c1 loses carrier with it (the kernel stacks the lower
/// link's operstate onto it: NETDEV_CHANGE on the macvlan too), and its
/// nexthops and routes go as on any link.
#[test]
fn stacked_link_loses_carrier_with_its_lower() {
    let p = Pair::new("stacked");
    p.s.ns.batch(
        "link add mv0 link c1 type macvlan mode bridge\nlink set mv0 up\n\
         addr add 10.6.0.1/24 dev mv0\nnexthop add id 6 via 10.6.0.2 dev mv0\n\
         route add 10.60.0.0/24 nhid 6\n",
    );
    p.s.assert_equal_to_linux(SYNC);
    p.far.ip(&["link", "set", "c2", "down"]);
    p.await_flush(6);
    p.s.assert_equal_to_linux(SYNC);
    p.far.ip(&["link", "set", "c2", "up"]);
    p.s.assert_equal_to_linux(SYNC);
}

/// A bridge port with learned-like (dynamic) and static FDB entries moved
/// to another namespace: it leaves the bridge on the way (br_del_if), its
/// entries go, the bridge may take another MAC.
#[test]
fn bridge_port_moved_to_another_namespace() {
    let p = Pair::new("portmove");
    p.s.ns
        .batch("link add br0 type bridge\nlink set d1 master br0\nlink set br0 up\n");
    for (mac, how) in [
        ("02:00:00:00:00:09", "dynamic"),
        ("02:00:00:00:00:0a", "static"),
    ] {
        fpsync_tests::sh(&[
            "bridge",
            "-n",
            &p.s.ns.name,
            "fdb",
            "add",
            mac,
            "dev",
            "d1",
            "master",
            how,
        ]);
    }
    p.s.assert_equal_to_linux(SYNC);
    step(&p, &format!("link set d1 netns {}", p.far.name));
}

/// Lifetimes running out: an IPv4 address's valid_lft (its deletion is
/// announced, the routes using it as source go silently, as on `addr
/// del`) and an IPv6 route's `expires` (the route's deletion by the
/// garbage collector is announced).
#[test]
fn lifetimes_expire() {
    let p = Pair::new("lifetimes");
    sysctl(&p.s.ns, "net.ipv6.route.gc_interval=1");
    p.s.ns.batch(
        "addr add 10.7.0.1/24 dev d1 valid_lft 2 preferred_lft 1\n\
         route add 10.70.0.0/24 dev d1 src 10.7.0.1\n\
         route add 2001:db8:300::/64 via 2001:db8:1::2 expires 2\n",
    );
    p.s.assert_equal_to_linux(SYNC);
    let gone = || {
        !p.s.ns
            .ip(&["addr", "show", "dev", "d1"])
            .contains("10.7.0.1")
            && p.s
                .ns
                .ip(&["-6", "route", "show", "2001:db8:300::/64"])
                .trim()
                .is_empty()
    };
    assert!(wait_until(Duration::from_secs(10), gone));
    p.s.assert_equal_to_linux(SYNC);
}

/// `ip -6 route replace` of a prefix by a route of another identity (a
/// gateway route by one on a nexthop object, that by a device route, and
/// back): the kernel announces the route that came (RTM_NEWROUTE with
/// NLM_F_REPLACE), not the one it replaced, which IPv6 keys apart.
#[test]
fn ipv6_route_replaced_by_another_identity() {
    let p = Pair::new("replace6");
    step(&p, "route add 2001:db8:127::/64 via 2001:db8:1::5 dev c1");
    step(&p, "route replace 2001:db8:127::/64 nhid 3");
    step(&p, "route replace 2001:db8:127::/64 dev d1");
    step(
        &p,
        "route replace 2001:db8:127::/64 via 2001:db8:2::5 dev d1",
    );
    step(&p, "route replace 2001:db8:127::/64 nhid 11");
}

/// An IPv6 multipath route with a hop on each link: a link's admin down
/// only marks its hop dead (rt6_sync_down_dev, silently), its up revives
/// it, and its unregistering deletes that hop alone.
#[test]
fn ipv6_multipath_hop_on_a_link_that_goes() {
    let p = Pair::new("mpath6");
    step(&p, "route add 2001:db8:11a::/64 via 2001:db8:1::5 dev c1");
    step(
        &p,
        "route append 2001:db8:11a::/64 via 2001:db8:2::4 dev d1",
    );
    step(&p, "link set c1 down");
    step(&p, "link set c1 up");
    step(&p, "addr add 2001:db8:1::1/64 dev c1 nodad");
    step(&p, &format!("link set c1 netns {}", p.far.name));
}
