//! The oracle (tests/src/oracle.rs) against the check: on a namespace
//! holding every kind the oracle compares, both are empty; and a decoder
//! bug (a field cmgrd's decoder drops, so that Linux as the check reads it
//! and what cmgrd sends fpd are wrong alike) is invisible to the check and
//! named by the oracle.

use std::collections::BTreeSet;
use std::process::Command;
use std::time::Duration;

use fpc::Object;
use fpsync_tests::{oracle, wait_until, Setup};

/// A namespace with links of several kinds, addresses, routes of both
/// families, nexthop objects and a weighted group, neighbours (one a
/// router), policy routing rules of both families, bridge ports and FDB entries, nftables, conntrack entries.
fn everything() -> Setup {
    let s = Setup::new("oracle");
    s.ns.batch(
        "link add v0 type veth peer name v1\nlink add w0 type veth peer name w1\n\
         link set v0 up\nlink set v1 up\nlink set w0 up\nlink set w1 up mtu 9000\n\
         link add br0 type bridge\nlink set w1 master br0\nlink set br0 up\n\
         link add mv0 link v0 type macvlan mode bridge\n\
         link add vx0 type vxlan id 42 dstport 4789 local 10.0.0.1 dev v0\n\
         addr add 10.0.0.1/24 dev v0\naddr add 10.0.1.1/24 dev w0 noprefixroute\n\
         addr add 2001:db8:1::1/64 dev v0 nodad\n\
         route add 10.0.1.0/24 dev w0 src 10.0.1.1\n\
         nexthop add id 1 via 10.0.0.2 dev v0\nnexthop add id 2 via 10.0.1.2 dev w0\n\
         nexthop add id 10 group 1,3/2\n\
         route add 192.0.2.0/24 nhid 10\nroute add 198.51.100.0/24 via 10.0.0.2 table 100 metric 7\n\
         route add 203.0.113.0/24 nexthop via 10.0.0.2 weight 2 nexthop via 10.0.1.2\n\
         route add 2001:db8:10::/64 via 2001:db8:1::2 metric 300\n\
         neigh add 10.0.0.2 lladdr 02:00:00:00:00:02 dev v0 router nud reachable\n\
         neigh add 10.0.0.3 lladdr 02:00:00:00:00:03 dev v0 nud permanent\n\
         neigh add 2001:db8:1::2 lladdr 02:00:00:00:00:02 dev v0 nud stale\n\
         rule add pref 100 from 10.0.0.0/24 to 198.51.100.0/24 iif v0 table 100\n\
         rule add pref 100 fwmark 0x10/0xff ipproto udp dport 53 table 100\n\
         rule add pref 101 not from 10.0.1.1 uidrange 100-200 goto 32766\n\
         rule add pref 102 table main suppress_prefixlength 0\n\
         rule add pref 103 tos 0x10 sport 1000-2000 prohibit\n",
    );
    s.ns.ip(&[
        "-6",
        "rule",
        "add",
        "pref",
        "100",
        "from",
        "2001:db8:1::/64",
        "oif",
        "v0",
        "table",
        "100",
    ]);
    let ns = s.ns.name.clone();
    let run = |args: &[&str]| {
        let out = Command::new(args[0]).args(&args[1..]).output().unwrap();
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    run(&[
        "bridge",
        "-n",
        &ns,
        "fdb",
        "add",
        "02:00:00:00:00:09",
        "dev",
        "w1",
        "master",
        "static",
    ]);
    run(&[
        "bridge",
        "-n",
        &ns,
        "fdb",
        "add",
        "00:00:00:00:00:00",
        "dev",
        "vx0",
        "dst",
        "10.0.0.9",
    ]);
    let exec = |args: &[&str]| {
        let mut full = vec!["ip", "netns", "exec", &ns];
        full.extend_from_slice(args);
        run(&full);
    };
    exec(&["nft", "add", "table", "inet", "t"]);
    exec(&[
        "nft",
        "add chain inet t c { type filter hook input priority 0; policy drop; }",
    ]);
    exec(&["nft", "add rule inet t c tcp dport 22 accept"]);
    exec(&[
        "nft",
        "add set inet t nets { type ipv4_addr; flags interval; }; \
         add element inet t nets { 10.2.0.0/25, 10.3.0.1-10.3.0.9, 10.4.0.1 }; \
         add set inet t ports { type inet_service; }; add element inet t ports { 22, 80 }; \
         add map inet t m { type ipv4_addr : mark; }; add element inet t m { 10.2.0.2 : 7 }; \
         add rule inet t c ip saddr @nets tcp dport @ports accept",
    ]);
    exec(&[
        "conntrack",
        "-I",
        "-p",
        "tcp",
        "-s",
        "10.0.0.1",
        "-d",
        "10.0.0.2",
        "--sport",
        "1000",
        "--dport",
        "80",
        "--state",
        "ESTABLISHED",
        "-t",
        "3000",
        "-u",
        "ASSURED,SEEN_REPLY",
        "-m",
        "7",
    ]);
    exec(&[
        "conntrack",
        "-I",
        "-p",
        "udp",
        "-s",
        "2001:db8:1::1",
        "-d",
        "2001:db8:1::2",
        "--sport",
        "5",
        "--dport",
        "53",
        "-t",
        "3000",
    ]);
    // Links coming up restart DAD on their link-local addresses, which
    // are then out of Linux's synced state for a moment: let that settle.
    let settled = || {
        s.ns.ip(&["-6", "addr", "show", "tentative"])
            .trim()
            .is_empty()
    };
    assert!(wait_until(Duration::from_secs(10), settled));
    s.assert_equal_to_linux(Duration::from_secs(5));
    s
}

/// The check's view with a mutation applied to both sides, as a decoder
/// bug would: Linux read through the decoder, and fpd told by cmgrd.
fn check_with(s: &Setup, bug: fn(&mut Object)) -> (Vec<String>, Vec<Object>) {
    let mut linux = instance::check::linux_objects(Some(&s.ns.name), &s.features).unwrap();
    let mut fp = instance::check::fastpath_objects(&s.endpoint).unwrap();
    for o in linux.iter_mut().chain(fp.iter_mut()) {
        // As the check does: a conntrack timeout counts down unannounced.
        if let Object::Conntrack(ct) = o {
            ct.timeout = 0;
        }
        bug(o);
    }
    (instance::check::diff(linux, fp.clone()), fp)
}

/// [`check_with`] until the check is empty (a moment's transient, such
/// as a restarted DAD, is not the bug's doing), for at most 2 s.
fn settled_check_with(s: &Setup, bug: fn(&mut Object)) -> (Vec<String>, Vec<Object>) {
    let mut tries = 0;
    loop {
        let (check, fp) = check_with(s, bug);
        tries += 1;
        if check.is_empty() || tries == 100 {
            return (check, fp);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

type Bug = (&'static str, fn(&mut Object), &'static str);

/// Fields a decoder could drop, and what the oracle must say about each.
const BUGS: &[Bug] = &[
    (
        "link mtu",
        |o| {
            if let Object::Link(l) = o {
                l.mtu = 0;
            }
        },
        "mtu linux=9000 fastpath=0",
    ),
    (
        "route prefsrc",
        |o| {
            if let Object::Route(r) = o {
                r.prefsrc = None;
            }
        },
        "prefsrc linux=10.0.1.1 fastpath=",
    ),
    (
        "IPv6 route metric",
        |o| {
            if let Object::Route(r) = o {
                if r.dst.is_ipv6() {
                    r.priority = 0;
                }
            }
        },
        "route table 254 2001:db8:10::/64 tos 0 metric 300: missing in fastpath",
    ),
    (
        "group weights",
        |o| {
            if let Object::Nexthop(n) = o {
                n.group.iter_mut().for_each(|m| m.1 = 1);
            }
        },
        "nexthop id 10: group linux=1,3/2,1 fastpath=1,1/2,1",
    ),
    (
        "multipath weights",
        |o| {
            if let Object::Route(r) = o {
                if let fpc::NextHops::Multipath(hops) = &mut r.nexthops {
                    hops.iter_mut().for_each(|h| h.weight = 1);
                }
            }
        },
        "weight 2",
    ),
    (
        "address flags",
        |o| {
            if let Object::Addr(a) = o {
                a.flags &= !0x200;
            }
        },
        "flags linux=0x280 fastpath=0x80",
    ),
    (
        "neighbour flags",
        |o| {
            if let Object::Neigh(n) = o {
                n.flags = 0;
            }
        },
        "flags linux=0x80 fastpath=0x0",
    ),
    (
        "fdb state",
        |o| {
            if let Object::Fdb(e) = o {
                e.state = 0x2;
            }
        },
        "state linux=static fastpath=dynamic",
    ),
    (
        "vxlan vni",
        |o| {
            if let Object::Link(fpc::Link {
                info: fpc::LinkInfo::Vxlan { vni, .. },
                ..
            }) = o
            {
                *vni = 0;
            }
        },
        "vxlan_vni linux=42 fastpath=0",
    ),
    (
        "conntrack mark",
        |o| {
            if let Object::Conntrack(ct) = o {
                ct.mark = 0;
            }
        },
        "mark linux=7 fastpath=0",
    ),
    (
        "nft chain policy",
        |o| {
            if let Object::NftChain(c) = o {
                c.policy = c.policy.map(|_| 1);
            }
        },
        "policy linux=0 fastpath=1",
    ),
    (
        "rule table",
        |o| {
            if let Object::Rule(r) = o {
                if r.spec.table == 100 {
                    r.spec.table = 0;
                }
            }
        },
        "rule inet priority 100 #1: table linux=100 fastpath=0",
    ),
    (
        "set element key",
        |o| {
            // A decoder reading a key in host order.
            if let Object::NftSetElem(e) = o {
                if e.set == "ports" {
                    e.key.reverse();
                }
            }
        },
        "elements linux=22, 80 fastpath=20480, 5632",
    ),
    (
        "set interval flag",
        |o| {
            if let Object::NftSet(t) = o {
                t.flags &= !0x4;
            }
        },
        "interval linux=true fastpath=false",
    ),
];

#[test]
fn the_oracle_names_what_a_decoder_bug_hides_from_the_check() {
    let s = everything();
    // Not vacuous: the oracle read every kind it compares from Linux.
    let linux = oracle::linux(&s.ns.name, &s.features).unwrap();
    let kinds: BTreeSet<&str> = linux.keys().map(|(k, _)| *k).collect();
    for kind in [
        "link",
        "address",
        "route",
        "nexthop",
        "neighbour",
        "rule",
        "bridge port",
        "fdb",
        "nft table",
        "nft chain",
        "nft rule",
        "nft set",
        "conntrack",
    ] {
        assert!(kinds.contains(kind), "the oracle read no {kind}: {kinds:?}");
    }
    for (what, bug, expected) in BUGS {
        let (check, fp) = settled_check_with(&s, *bug);
        assert!(check.is_empty(), "{what}: the check saw it: {check:?}");
        let found = oracle::diff(&linux, &oracle::fastpath(&fp, &s.features));
        assert!(
            found.iter().any(|d| d.contains(expected)),
            "{what}: the oracle did not say {expected:?}: {found:#?}"
        );
    }
}

/// The mutation run above, undone: without a bug both are empty (so what
/// the oracle finds there is the bug's doing).
#[test]
fn without_a_bug_both_are_empty() {
    let s = everything();
    let (check, fp) = settled_check_with(&s, |_| {});
    assert!(check.is_empty(), "{check:?}");
    let linux = oracle::linux(&s.ns.name, &s.features).unwrap();
    let found = oracle::diff(&linux, &oracle::fastpath(&fp, &s.features));
    assert!(found.is_empty(), "{found:#?}");
}
