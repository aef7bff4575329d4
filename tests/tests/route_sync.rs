//! The route family on the real kernel: after every `ip` change the fast
//! path equals Linux (the equivalence check is empty) within 1 s.

use std::time::Duration;

use fpsync_tests::{wait_until, Setup};

const SYNC: Duration = Duration::from_secs(1);

/// Runs each `ip` command in the namespace and checks sync after each.
fn steps(s: &Setup, cmds: &[&str]) {
    for cmd in cmds {
        let args: Vec<&str> = cmd.split_whitespace().collect();
        s.ns.ip(&args);
        s.assert_equal_to_linux(SYNC);
    }
}

#[test]
fn links_of_every_kind() {
    let s = Setup::new("links");
    steps(
        &s,
        &[
            "link add v0 type veth peer name v1",
            "link set v0 up",
            "link set v1 up mtu 9000",
            "link set v0 address 02:00:00:00:00:aa",
            "link add br0 type bridge",
            "link set v1 master br0",
            "link set br0 up",
            "link add mv0 link v0 type macvlan mode bridge",
            "link add vx0 type vxlan id 42 dstport 4789 local 10.9.9.9 dev v0",
            "tuntap add tp0 mode tap",
            "tuntap add tp1 mode tap",
            "link set tp0 up",
            "link set v1 nomaster",
            "link set mv0 name mv1",
            "link del vx0",
            "link del mv1",
            "link del tp0",
            "link del br0",
            "link set v0 down",
            "link del v0",
        ],
    );
}

#[test]
fn addresses_and_routes() {
    let s = Setup::new("routes");
    steps(
        &s,
        &[
            "link add v0 type veth peer name v1",
            "link add w0 type veth peer name w1",
            "link set v0 up",
            "link set v1 up",
            "link set w0 up",
            "link set w1 up",
            "addr add 10.0.0.1/24 dev v0",
            "addr add 10.0.1.1/24 dev w0",
            "addr add 10.0.0.100/24 dev v0",
            "addr add 2001:db8:1::1/64 dev v0 nodad",
            "addr add 2001:db8:2::1/64 dev w0 nodad",
            "route add 192.168.1.0/24 via 10.0.0.2",
            "route replace 192.168.1.0/24 via 10.0.1.2",
            "route add 192.168.2.0/24 via 10.0.0.2 metric 50",
            "route add 192.168.2.0/24 via 10.0.1.2 metric 60",
            "route add 192.168.3.0/24 nexthop via 10.0.0.2 weight 1 nexthop via 10.0.1.2 weight 3",
            "route add blackhole 192.168.4.0/24",
            "route add unreachable 192.168.5.0/24",
            "route add prohibit 192.168.6.0/24",
            "route add 192.168.7.0/24 via 10.0.0.2 table 100",
            "route add default via 10.0.0.2 table 100",
            "route add 192.168.8.0/24 dev v0 src 10.0.0.100",
            "-6 route add 2001:db8:10::/64 via 2001:db8:1::2",
            "-6 route replace 2001:db8:10::/64 via 2001:db8:2::2",
            "-6 route add 2001:db8:11::/64 nexthop via 2001:db8:1::2 dev v0 nexthop via 2001:db8:2::2 dev w0",
            "-6 route append 2001:db8:11::/64 via 2001:db8:1::3 dev v0",
            "-6 route del 2001:db8:11::/64 via 2001:db8:1::2 dev v0",
            "-6 route del 2001:db8:11::/64 via 2001:db8:2::2 dev w0",
            "-6 route add blackhole 2001:db8:12::/64",
            "-6 route add 2001:db8:13::/64 via 2001:db8:1::2 table 100",
            // IPv6 keeps one prefix and metric apart per device.
            "-6 route add 2001:db8:14::/64 dev v0",
            "-6 route append 2001:db8:14::/64 dev w0",
            "-6 route del 2001:db8:14::/64 dev v0",
            "route del 192.168.1.0/24",
            "route del 192.168.2.0/24 metric 50",
            "route del 192.168.3.0/24",
            "route del blackhole 192.168.4.0/24",
            "route del 192.168.7.0/24 table 100",
            "-6 route del 2001:db8:10::/64",
            "-6 route del 2001:db8:11::/64",
            "-6 route del blackhole 2001:db8:12::/64",
            "addr del 10.0.0.100/24 dev v0",
            "addr del 2001:db8:2::1/64 dev w0",
        ],
    );
}

#[test]
fn nexthop_objects_and_groups() {
    let s = Setup::new("nexthops");
    steps(
        &s,
        &[
            "link add v0 type veth peer name v1",
            "link add w0 type veth peer name w1",
            "link set v0 up",
            "link set w0 up",
            "link set v1 up",
            "link set w1 up",
            "addr add 10.0.0.1/24 dev v0",
            "addr add 10.0.1.1/24 dev w0",
            "addr add 2001:db8:1::1/64 dev v0 nodad",
            "nexthop add id 1 via 10.0.0.2 dev v0",
            "nexthop add id 2 via 10.0.1.2 dev w0",
            "nexthop add id 3 blackhole",
            "nexthop add id 4 via 2001:db8:1::2 dev v0",
            "nexthop add id 10 group 1/2",
            "nexthop add id 11 group 1,3/2,5",
            "route add 172.16.0.0/16 nhid 1",
            "route add 172.17.0.0/16 nhid 10",
            "route add 172.18.0.0/16 nhid 11 table 100",
            "-6 route add 2001:db8:50::/64 nhid 4",
            "nexthop replace id 1 via 10.0.0.3 dev v0",
            "nexthop replace id 10 group 1,4/2",
            "route replace 172.16.0.0/16 nhid 2",
            "route del 172.17.0.0/16",
            "nexthop del id 11",
            "nexthop del id 2",
            "nexthop del id 4",
            "nexthop del id 10",
        ],
    );
}

#[test]
fn neighbours() {
    let s = Setup::new("neigh");
    steps(
        &s,
        &[
            "link add v0 type veth peer name v1",
            "link set v0 up",
            "link set v1 up",
            "addr add 10.0.0.1/24 dev v0",
            "addr add 2001:db8:1::1/64 dev v0 nodad",
            "neigh add 10.0.0.2 lladdr 02:00:00:00:00:02 dev v0",
            "neigh add 10.0.0.3 lladdr 02:00:00:00:00:03 dev v0 nud reachable",
            "neigh replace 10.0.0.2 lladdr 02:00:00:00:00:22 dev v0",
            "neigh add 2001:db8:1::2 lladdr 02:00:00:00:00:12 dev v0",
            "neigh replace 2001:db8:1::2 lladdr 02:00:00:00:00:13 dev v0 nud stale",
            "neigh del 10.0.0.2 dev v0",
            "neigh del 2001:db8:1::2 dev v0",
        ],
    );
}

/// The kernel deletes these IPv4 routes without RTM_DELROUTE.
#[test]
fn silent_ipv4_deletions() {
    let s = Setup::new("silent");
    steps(
        &s,
        &[
            "link add v0 type veth peer name v1",
            "link set v0 up",
            "link set v1 up",
            "addr add 10.0.0.1/24 dev v0",
            "addr add 10.0.0.9/24 dev v0",
            "route add 192.168.1.0/24 via 10.0.0.2",
            "route add 192.168.2.0/24 dev v0 src 10.0.0.9",
            "route add 192.168.3.0/24 via 10.0.0.2 table 100",
            "nexthop add id 7 via 10.0.0.2 dev v0",
            "route add 192.168.4.0/24 nhid 7",
        ],
    );
    // Address removal takes the routes whose source it was.
    s.ns.ip(&["addr", "del", "10.0.0.9/24", "dev", "v0"]);
    s.assert_equal_to_linux(SYNC);
    // A nexthop's removal takes its routes.
    s.ns.ip(&["nexthop", "del", "id", "7"]);
    s.assert_equal_to_linux(SYNC);
    s.ns.ip(&["route", "add", "192.168.5.0/24", "via", "10.0.0.2"]);
    s.assert_equal_to_linux(SYNC);
    // Link down takes every route through the link, in every table.
    s.ns.ip(&["link", "set", "v0", "down"]);
    s.assert_equal_to_linux(SYNC);
    s.ns.ip(&["link", "set", "v0", "up"]);
    s.ns.ip(&["route", "add", "192.168.6.0/24", "via", "10.0.0.2"]);
    s.assert_equal_to_linux(SYNC);
    // Removing the last address of the subnet takes the routes via it.
    s.ns.ip(&["addr", "del", "10.0.0.1/24", "dev", "v0"]);
    s.assert_equal_to_linux(SYNC);
    let sync = s.console("show sync");
    assert!(sync.contains("silent deletions"), "{sync}");
    assert!(
        !sync.contains("silent deletions: 0\n"),
        "the reconciles found the deletions: {sync}"
    );
}

#[test]
fn fpd_restart_gets_a_full_replay() {
    let mut s = Setup::new("fpdrestart");
    s.ns.batch(
        "link add v0 type veth peer name v1\nlink set v0 up\naddr add 10.0.0.1/24 dev v0\n\
         route add 192.168.1.0/24 via 10.0.0.2\nroute add 192.168.2.0/24 via 10.0.0.2 table 7\n\
         route add 2001:db8:9::/64 dev v0\nneigh add 10.0.0.2 lladdr 02:00:00:00:00:02 dev v0\n",
    );
    s.assert_equal_to_linux(SYNC);
    s.fpd.as_mut().unwrap().kill();
    s.start_fpd();
    // No change to Linux: the replay alone brings fpd back.
    s.assert_equal_to_linux(Duration::from_secs(5));
    let q = s.console("show queue");
    assert!(q.contains("- replays: 2"), "{q}");
}

#[test]
fn cmgrd_restart_resyncs_with_a_new_generation() {
    let mut s = Setup::new("cmgrdrestart");
    s.ns.batch(
        "link add v0 type veth peer name v1\nlink set v0 up\naddr add 10.0.0.1/24 dev v0\n\
         route add 192.168.1.0/24 via 10.0.0.2\nroute add 192.168.2.0/24 via 10.0.0.2\n",
    );
    s.assert_equal_to_linux(SYNC);
    let generation = s.fp_counter("generation");
    s.cmgrd.as_mut().unwrap().kill();
    // Changes while cmgrd is down: one route gone, one new.
    s.ns.ip(&["route", "del", "192.168.1.0/24"]);
    s.ns.ip(&["route", "add", "192.168.3.0/24", "via", "10.0.0.2"]);
    s.start_cmgrd();
    s.assert_equal_to_linux(Duration::from_secs(5));
    assert!(s.fp_counter("generation") > generation);
    assert!(s.fp_counter("swept") >= 1, "the deleted route was swept");
}

#[test]
fn killed_cmgrd_restarts_without_linux_changes() {
    let mut s = Setup::new("cmgrdkill");
    s.ns.batch("link add v0 type veth peer name v1\nlink set v0 up\naddr add 10.0.0.1/24 dev v0\n");
    s.assert_equal_to_linux(SYNC);
    s.cmgrd.as_mut().unwrap().kill();
    s.start_cmgrd();
    s.assert_equal_to_linux(Duration::from_secs(5));
    assert!(wait_until(Duration::from_secs(5), || {
        std::os::unix::net::UnixStream::connect(s.console_path()).is_ok()
            && s.console("show queue").contains("- in sync: 1")
    }));
}
