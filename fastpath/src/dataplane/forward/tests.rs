//! The forwarding decision on byte fixtures, with tables built through the
//! same `Tables::apply` the FPC server uses. Long (one case per Linux
//! forwarding behaviour, each a few lines of fixture and assertion): a
//! table of cases, not logic, so it is kept in one file.

use std::net::IpAddr;

use super::*;
use crate::dataplane::view::{Parts, PortInfo};
use crate::tables::Tables;
use crate::wire::ipv4::Packet as Ip4;
use crate::wire::ipv6::Packet as Ip6;
use fpc::{Addr, Hop, Link, LinkInfo, Neigh, Nexthop, Object, Op, Route};

const MAC_A: Mac = [2, 0, 0, 0, 0, 0x0a];
const MAC_B: Mac = [2, 0, 0, 0, 0, 0x0b];
const MAC_C: Mac = [2, 0, 0, 0, 0, 0x0c];
const MAC_HOST_A: Mac = [2, 0, 0, 0, 0xa, 2];
const MAC_HOST_B: Mac = [2, 0, 0, 0, 0xb, 2];
const MAC_HOST_C: Mac = [2, 0, 0, 0, 0xc, 2];
const REACHABLE: u16 = 0x02;
const STALE: u16 = 0x04;
const INCOMPLETE: u16 = 0x01;

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn ports() -> Vec<PortInfo> {
    [
        ("veth-a", 2, MAC_A),
        ("veth-b", 3, MAC_B),
        ("veth-c", 4, MAC_C),
    ]
    .into_iter()
    .map(|(name, ifindex, mac)| PortInfo {
        name: name.into(),
        ifindex,
        mac,
        mtu: 1500,
    })
    .collect()
}

fn route(table: u32, dst: &str, len: u8, rtype: u8, nexthops: NextHops) -> Object {
    Object::Route(Route {
        table,
        dst: ip(dst),
        dst_len: len,
        tos: 0,
        priority: 0,
        rtype,
        protocol: 4,
        scope: 0,
        prefsrc: None,
        mtu: 0,
        nexthops,
    })
}

fn hop(gw: Option<&str>, oif: u32) -> Hop {
    Hop {
        gateway: gw.map(ip),
        oif,
        weight: 1,
        flags: 0,
    }
}

fn neigh(ifindex: u32, dst: &str, mac: &[u8], state: u16) -> Object {
    Object::Neigh(Neigh {
        ifindex,
        dst: ip(dst),
        lladdr: mac.to_vec(),
        state,
        flags: 0,
    })
}

/// The router of the end-to-end test: host-a on veth-a (10.1.0.0/24),
/// host-b on veth-b (10.2.0.0/24), host-b again on veth-c (10.3.0.0/24).
fn tables() -> Tables {
    let mut t = Tables::new();
    let mut objects = Vec::new();
    for (ifindex, name, mac) in [
        (2, "veth-a", MAC_A),
        (3, "veth-b", MAC_B),
        (4, "veth-c", MAC_C),
    ] {
        objects.push(Object::Link(Link {
            ifindex,
            name: name.into(),
            kind: "veth".into(),
            flags: 0x11043,
            mtu: 1500,
            link_type: 1,
            mac: mac.to_vec(),
            master: 0,
            link: 0,
            link_netnsid: -1,
            operstate: 6,
            info: LinkInfo::None,
        }));
    }
    for (ifindex, a, len) in [
        (2, "10.1.0.1", 24),
        (3, "10.2.0.1", 24),
        (4, "10.3.0.1", 24),
        (2, "fe80::a", 64),
        (2, "fd01::1", 64),
        (3, "fd02::1", 64),
        (4, "fe80::c", 64),
    ] {
        objects.push(Object::Addr(Addr {
            ifindex,
            addr: ip(a),
            peer: None,
            prefix_len: len,
            scope: 0,
            flags: 0x80,
        }));
    }
    let s = |h| NextHops::Single(h);
    objects.extend([
        route(255, "10.1.0.1", 32, rtn::LOCAL, s(hop(None, 2))),
        route(255, "10.1.0.255", 32, rtn::BROADCAST, s(hop(None, 2))),
        route(254, "10.1.0.0", 24, rtn::UNICAST, s(hop(None, 2))),
        route(254, "10.2.0.0", 24, rtn::UNICAST, s(hop(None, 3))),
        route(254, "10.3.0.0", 24, rtn::UNICAST, s(hop(None, 4))),
        route(
            254,
            "10.9.0.0",
            24,
            rtn::UNICAST,
            s(hop(Some("10.2.0.2"), 3)),
        ),
        route(
            254,
            "10.8.0.0",
            24,
            rtn::UNICAST,
            NextHops::Multipath(vec![hop(Some("10.2.0.2"), 3), hop(Some("10.3.0.2"), 4)]),
        ),
        route(254, "10.7.0.0", 24, rtn::UNICAST, NextHops::Id(10)),
        route(254, "10.6.0.0", 24, rtn::BLACKHOLE, NextHops::None),
        route(254, "10.5.0.0", 24, rtn::UNREACHABLE, NextHops::None),
        route(
            254,
            "10.4.0.0",
            24,
            rtn::UNICAST,
            s(hop(Some("10.2.0.3"), 3)),
        ),
        route(
            254,
            "172.16.0.0",
            12,
            rtn::UNICAST,
            s(hop(Some("10.2.0.2"), 9)),
        ),
        route(254, "fd01::", 64, rtn::UNICAST, s(hop(None, 2))),
        route(254, "fd02::", 64, rtn::UNICAST, s(hop(None, 3))),
        route(254, "fd09::", 64, rtn::UNICAST, s(hop(Some("fe80::b2"), 3))),
    ]);
    for (id, gw, oif) in [(11, "10.2.0.2", 3), (12, "10.3.0.2", 4)] {
        objects.push(Object::Nexthop(Nexthop {
            id,
            family: 2,
            gateway: Some(ip(gw)),
            oif,
            blackhole: false,
            fdb: false,
            flags: 0,
            group: vec![],
            group_type: 0,
        }));
    }
    objects.push(Object::Nexthop(Nexthop {
        id: 10,
        family: 0,
        gateway: None,
        oif: 0,
        blackhole: false,
        fdb: false,
        flags: 0,
        group: vec![(11, 1), (12, 1)],
        group_type: 0,
    }));
    objects.extend([
        neigh(3, "10.2.0.2", &MAC_HOST_B, REACHABLE),
        neigh(2, "10.1.0.2", &MAC_HOST_A, STALE),
        neigh(4, "10.3.0.2", &MAC_HOST_C, REACHABLE),
        neigh(3, "10.2.0.3", &[], INCOMPLETE),
        neigh(3, "fd02::2", &MAC_HOST_B, REACHABLE),
        neigh(2, "fd01::2", &MAC_HOST_A, REACHABLE),
        neigh(3, "fe80::b2", &MAC_HOST_B, STALE),
    ]);
    for o in objects {
        t.apply(Op::Add, o).unwrap();
    }
    t
}

fn view() -> View {
    View::build(&tables(), &ports())
}

/// An Ethernet frame to `dst_mac` carrying UDP from `src` to `dst`.
fn udp4(dst_mac: Mac, src: &str, dst: &str, ttl: u8, sport: u16) -> Vec<u8> {
    let (IpAddr::V4(s), IpAddr::V4(d)) = (ip(src), ip(dst)) else {
        panic!()
    };
    let mut f = Vec::new();
    f.extend_from_slice(&dst_mac);
    f.extend_from_slice(&MAC_HOST_A);
    f.extend_from_slice(&ethertype::IPV4.to_be_bytes());
    f.extend_from_slice(&[0x45, 0, 0, 32, 0, 1, 0x40, 0, ttl, 17, 0, 0]);
    f.extend_from_slice(&s.octets());
    f.extend_from_slice(&d.octets());
    f.extend_from_slice(&sport.to_be_bytes());
    f.extend_from_slice(&[0x16, 0x2e, 0, 12, 0, 0, 1, 2, 3, 4]);
    Ip4::new_checked(&mut f[14..]).unwrap().fill_checksum();
    f
}

fn udp6(dst_mac: Mac, src: &str, dst: &str, hops: u8) -> Vec<u8> {
    let (IpAddr::V6(s), IpAddr::V6(d)) = (ip(src), ip(dst)) else {
        panic!()
    };
    let mut f = Vec::new();
    f.extend_from_slice(&dst_mac);
    f.extend_from_slice(&MAC_HOST_A);
    f.extend_from_slice(&ethertype::IPV6.to_be_bytes());
    f.extend_from_slice(&[0x60, 0, 0, 0, 0, 12, 17, hops]);
    f.extend_from_slice(&s.octets());
    f.extend_from_slice(&d.octets());
    f.extend_from_slice(&[0x04, 0xd2, 0x16, 0x2e, 0, 12, 0, 0, 1, 2, 3, 4]);
    f
}

fn run(v: &View, frame: &mut [u8]) -> Verdict {
    forward(v, 0, frame)
}

#[test]
fn forwards_to_a_connected_host_and_rewrites() {
    let v = view();
    let mut f = udp4(MAC_A, "10.1.0.2", "10.2.0.2", 64, 1234);
    let before = f.clone();
    assert_eq!(run(&v, &mut f), Verdict::Forward(1));
    assert_eq!(&f[0..6], &MAC_HOST_B);
    assert_eq!(&f[6..12], &MAC_B);
    let p = Ip4::new_checked(&f[14..]).unwrap();
    assert_eq!(p.ttl(), 63);
    assert!(p.verify_checksum());
    // Only the MACs, the TTL and the checksum changed.
    let changed: Vec<usize> = (0..f.len()).filter(|&i| f[i] != before[i]).collect();
    assert!(
        changed
            .iter()
            .all(|&i| i < 12 || i == 22 || i == 24 || i == 25),
        "{changed:?}"
    );
    // The neighbour is reported used once.
    let mut hits = Vec::new();
    v.take_hits(&mut hits);
    assert_eq!(
        hits,
        vec![fpc::Hit::Neigh {
            ifindex: 3,
            dst: ip("10.2.0.2")
        }]
    );
    hits.clear();
    v.take_hits(&mut hits);
    assert!(hits.is_empty());
}

#[test]
fn forwards_through_a_gateway() {
    let v = view();
    let mut f = udp4(MAC_A, "10.1.0.2", "10.9.0.7", 64, 1);
    assert_eq!(run(&v, &mut f), Verdict::Forward(1));
    assert_eq!(&f[0..6], &MAC_HOST_B);
}

#[test]
fn what_linux_handles_is_left_untouched() {
    let v = view();
    let cases: Vec<(Vec<u8>, Verdict)> = vec![
        (
            udp4(MAC_A, "10.1.0.2", "10.1.0.1", 64, 1),
            Verdict::Exception(Exception::Local),
        ),
        (
            udp4(MAC_A, "10.1.0.2", "10.2.0.1", 64, 1),
            Verdict::Exception(Exception::Local),
        ),
        (
            udp4(MAC_A, "10.1.0.2", "10.1.0.255", 64, 1),
            Verdict::Exception(Exception::Local),
        ),
        (
            udp4(MAC_A, "10.1.0.2", "192.0.2.1", 64, 1),
            Verdict::Exception(Exception::NoRoute),
        ),
        (
            udp4(MAC_A, "10.1.0.2", "10.2.0.2", 1, 1),
            Verdict::Exception(Exception::Ttl),
        ),
        (
            udp4(MAC_A, "10.1.0.2", "224.0.0.5", 64, 1),
            Verdict::Exception(Exception::Multicast),
        ),
        (
            udp4(MAC_A, "10.1.0.2", "10.5.0.1", 64, 1),
            Verdict::Exception(Exception::Unreachable),
        ),
        (
            udp4(MAC_A, "10.1.0.2", "172.16.0.1", 64, 1),
            Verdict::Exception(Exception::NotAPort),
        ),
        (
            udp4([0xff; 6], "10.1.0.2", "10.2.0.2", 64, 1),
            Verdict::Exception(Exception::L2Multicast),
        ),
        (
            udp4(MAC_HOST_C, "10.1.0.2", "10.2.0.2", 64, 1),
            Verdict::Exception(Exception::OtherHost),
        ),
        (
            udp4(MAC_A, "10.1.0.2", "10.4.0.9", 64, 1),
            Verdict::Resolve {
                ifindex: 3,
                dst: ip("10.2.0.3"),
            },
        ),
        (
            udp4(MAC_A, "10.1.0.2", "10.2.0.77", 64, 1),
            Verdict::Resolve {
                ifindex: 3,
                dst: ip("10.2.0.77"),
            },
        ),
        (
            udp6(MAC_A, "fd01::2", "fe80::1", 64),
            Verdict::Exception(Exception::LinkLocal),
        ),
        (
            udp6(MAC_A, "fe80::2", "fd02::2", 64),
            Verdict::Exception(Exception::LinkLocal),
        ),
        (
            udp6(MAC_A, "fd01::2", "ff02::1", 64),
            Verdict::Exception(Exception::Multicast),
        ),
        (
            udp6(MAC_A, "fd01::2", "fd01::1", 64),
            Verdict::Exception(Exception::Local),
        ),
        (
            udp6(MAC_A, "fd01::2", "fd02::2", 1),
            Verdict::Exception(Exception::Ttl),
        ),
    ];
    for (mut f, expected) in cases {
        let before = f.clone();
        assert_eq!(run(&v, &mut f), expected);
        assert_eq!(f, before, "{expected:?} must not rewrite");
    }
    let mut arp = udp4(MAC_A, "10.1.0.2", "10.2.0.2", 64, 1);
    arp[12..14].copy_from_slice(&ethertype::ARP.to_be_bytes());
    assert_eq!(run(&v, &mut arp), Verdict::Exception(Exception::NotIp));
    let mut options = udp4(MAC_A, "10.1.0.2", "10.2.0.2", 64, 1);
    options[14] = 0x46;
    options[17] = 36;
    options.extend_from_slice(&[0; 4]);
    Ip4::new_checked(&mut options[14..])
        .unwrap()
        .fill_checksum();
    assert_eq!(
        run(&v, &mut options),
        Verdict::Exception(Exception::IpOptions)
    );
}

#[test]
fn drops() {
    let v = view();
    let mut f = udp4(MAC_A, "10.1.0.2", "10.6.0.1", 64, 1);
    assert_eq!(run(&v, &mut f), Verdict::Drop(DropReason::Blackhole));
    let mut f = udp4(MAC_A, "10.1.0.2", "10.2.0.2", 64, 1);
    f[25] ^= 0xff;
    assert_eq!(run(&v, &mut f), Verdict::Drop(DropReason::BadChecksum));
    let mut f = udp4(MAC_A, "10.1.0.2", "10.2.0.2", 64, 1);
    f.truncate(30);
    assert_eq!(run(&v, &mut f), Verdict::Drop(DropReason::Malformed));
    assert_eq!(
        run(&v, &mut [0u8; 10]),
        Verdict::Drop(DropReason::Malformed)
    );
}

#[test]
fn multipath_and_groups_spread_flows_over_every_hop() {
    let v = view();
    for dst in ["10.8.0.1", "10.7.0.1"] {
        let mut used = [0u32; 3];
        for sport in 0..200 {
            let mut f = udp4(MAC_A, "10.1.0.2", dst, 64, sport);
            match run(&v, &mut f) {
                Verdict::Forward(p) => used[p] += 1,
                other => panic!("{dst}: {other:?}"),
            }
            // One flow always takes the same hop.
            let mut again = udp4(MAC_A, "10.1.0.2", dst, 64, sport);
            assert_eq!(
                run(&v, &mut again),
                Verdict::Forward(if f[..6] == MAC_HOST_B { 1 } else { 2 })
            );
        }
        assert_eq!(used[0], 0);
        assert!(used[1] > 50 && used[2] > 50, "{dst}: {used:?}");
    }
}

#[test]
fn ipv6_forwarding() {
    let v = view();
    let mut f = udp6(MAC_A, "fd01::2", "fd02::2", 64);
    assert_eq!(run(&v, &mut f), Verdict::Forward(1));
    assert_eq!(&f[0..6], &MAC_HOST_B);
    assert_eq!(&f[6..12], &MAC_B);
    assert_eq!(Ip6::new_checked(&f[14..]).unwrap().hop_limit(), 63);
    // Through a link-local gateway.
    let mut f = udp6(MAC_A, "fd01::2", "fd09::5", 64);
    assert_eq!(run(&v, &mut f), Verdict::Forward(1));
    let mut hits = Vec::new();
    v.take_hits(&mut hits);
    hits.sort();
    assert_eq!(hits.len(), 2, "{hits:?}");
}

#[test]
fn mtu_and_port_state_come_from_the_synced_link() {
    let mut t = tables();
    let mut link = Link {
        ifindex: 3,
        name: "veth-b".into(),
        kind: "veth".into(),
        flags: 0x11043,
        mtu: 30,
        link_type: 1,
        mac: MAC_C.to_vec(),
        master: 0,
        link: 0,
        link_netnsid: -1,
        operstate: 6,
        info: LinkInfo::None,
    };
    t.apply(Op::Replace, Object::Link(link.clone())).unwrap();
    let v = View::build(&t, &ports());
    let mut f = udp4(MAC_A, "10.1.0.2", "10.2.0.2", 64, 1);
    assert_eq!(run(&v, &mut f), Verdict::Exception(Exception::Mtu));
    link.mtu = 1500;
    t.apply(Op::Replace, Object::Link(link.clone())).unwrap();
    let v = View::build(&t, &ports());
    let mut f = udp4(MAC_A, "10.1.0.2", "10.2.0.2", 64, 1);
    assert_eq!(run(&v, &mut f), Verdict::Forward(1));
    assert_eq!(&f[6..12], &MAC_C, "the new MAC of veth-b");
    link.flags = 0;
    t.apply(Op::Replace, Object::Link(link)).unwrap();
    let v = View::build(&t, &ports());
    let mut f = udp4(MAC_A, "10.1.0.2", "10.2.0.2", 64, 1);
    assert_eq!(run(&v, &mut f), Verdict::Exception(Exception::LinkDown));
}

#[test]
fn a_port_with_a_shaper_or_classifier_is_left_to_linux() {
    let mut t = tables();
    let ifindex = ports()[1].ifindex;
    let tbf = fpc::Qdisc {
        ifindex,
        handle: 0x8001_0000,
        parent: u32::MAX,
        kind: "tbf".into(),
    };
    t.apply(Op::Add, Object::Qdisc(tbf.clone())).unwrap();
    let v = View::build(&t, &ports());
    // Out through veth-b (its tbf), and in from it (fpd would answer or
    // forward past what Linux's egress puts through it).
    let mut f = udp4(MAC_A, "10.1.0.2", "10.2.0.2", 64, 1);
    assert_eq!(run(&v, &mut f), Verdict::Exception(Exception::Tc));
    let mut f = udp4(MAC_B, "10.2.0.2", "10.1.0.2", 64, 1);
    assert_eq!(forward(&v, 1, &mut f), Verdict::Exception(Exception::Tc));
    t.apply(Op::Delete, Object::Qdisc(tbf)).unwrap();
    let v = View::build(&t, &ports());
    let mut f = udp4(MAC_A, "10.1.0.2", "10.2.0.2", 64, 1);
    assert_eq!(run(&v, &mut f), Verdict::Forward(1));
}

#[test]
fn an_empty_view_forwards_nothing() {
    let v = View::empty(&ports(), false);
    let mut f = udp4(MAC_A, "10.1.0.2", "10.2.0.2", 64, 1);
    assert_eq!(run(&v, &mut f), Verdict::Exception(Exception::NoRoute));
}

/// 10.9.0.0/24 via 10.3.0.2 (veth-c, port 2).
fn add_route_via_veth_c(t: &mut Tables) {
    t.apply(
        Op::Replace,
        route(
            254,
            "10.9.0.0",
            24,
            rtn::UNICAST,
            NextHops::Single(hop(Some("10.3.0.2"), 4)),
        ),
    )
    .unwrap();
}

#[test]
fn route_changes_take_effect_in_the_next_view() {
    let mut t = tables();
    add_route_via_veth_c(&mut t);
    let v = View::build(&t, &ports());
    let mut f = udp4(MAC_A, "10.1.0.2", "10.9.0.7", 64, 1);
    assert_eq!(run(&v, &mut f), Verdict::Forward(2));
    t.apply(
        Op::Delete,
        route(254, "10.9.0.0", 24, rtn::UNICAST, NextHops::None),
    )
    .unwrap();
    let v = View::build(&t, &ports());
    let mut f = udp4(MAC_A, "10.1.0.2", "10.9.0.7", 64, 1);
    assert_eq!(run(&v, &mut f), Verdict::Exception(Exception::NoRoute));
}

/// The ICMP error fpd sends for `f`, received on veth-a, as
/// (output port, frame).
fn answer(v: &View, f: &[u8], why: IcmpError) -> Result<(usize, Vec<u8>), Option<Verdict>> {
    let mut out = [0u8; 1536];
    icmp_error(v, 0, f, why, &mut out).map(|(port, len)| (port, out[..len].to_vec()))
}

fn v6(s: &str) -> u128 {
    s.parse::<Ipv6Addr>().unwrap().into()
}

#[test]
fn ttl_expiry_is_answered_with_time_exceeded_from_the_ingress_address() {
    let v = view();
    let f = udp4(MAC_A, "10.1.0.2", "10.2.0.2", 1, 1234);
    assert_eq!(run(&v, &mut f.clone()), Verdict::Exception(Exception::Ttl));
    let (port, r) = answer(&v, &f, IcmpError::TimeExceeded).unwrap();
    assert_eq!(port, 0, "back out of veth-a");
    // Ethernet: to host-a, from veth-a.
    assert_eq!(&r[0..6], &MAC_HOST_A);
    assert_eq!(&r[6..12], &MAC_A);
    assert_eq!(&r[12..14], &[0x08, 0x00]);
    // IPv4: 20 + 8 + the quoted 20-byte header and 8 bytes of UDP.
    #[rustfmt::skip]
    let header = [
        0x45, 0, 0, 56, 0, 0, 0, 0, 64, 1, 0, 0,
        10, 1, 0, 1, 10, 1, 0, 2,
    ];
    assert_eq!(r.len(), 14 + 56);
    assert_eq!(&r[14..24], &header[..10]);
    assert_eq!(&r[26..34], &header[12..]);
    assert!(Ip4::new_checked(&r[14..]).unwrap().verify_checksum());
    // ICMP: type 11 code 0, a valid checksum, the original as received
    // (TTL 1, its checksum) and the first 8 bytes of its payload.
    assert_eq!(&r[34..36], &[11, 0]);
    assert_eq!(&r[38..42], &[0; 4]);
    assert_eq!(crate::wire::checksum::sum(&r[34..]), 0xffff);
    assert_eq!(&r[42..], &f[14..14 + 28]);
    // The neighbour of the way back is marked used.
    let mut hits = Vec::new();
    v.take_hits(&mut hits);
    assert!(hits.contains(&fpc::Hit::Neigh {
        ifindex: 2,
        dst: ip("10.1.0.2")
    }));
}

#[test]
fn hop_limit_expiry_is_answered_with_icmpv6_time_exceeded() {
    let v = view();
    let f = udp6(MAC_A, "fd01::2", "fd02::2", 1);
    assert_eq!(run(&v, &mut f.clone()), Verdict::Exception(Exception::Ttl));
    let (port, r) = answer(&v, &f, IcmpError::TimeExceeded).unwrap();
    assert_eq!(port, 0);
    assert_eq!(&r[0..6], &MAC_HOST_A);
    assert_eq!(&r[6..12], &MAC_A);
    assert_eq!(&r[12..14], &[0x86, 0xdd]);
    let quoted = f.len() - 14;
    assert_eq!(r.len(), 14 + 40 + 8 + quoted);
    // IPv6: payload length, ICMPv6, hop limit 64; the global address of
    // veth-a (not its link-local one) to host-a.
    assert_eq!(&r[14..22], &[0x60, 0, 0, 0, 0, (8 + quoted) as u8, 58, 64]);
    assert_eq!(&r[22..38], &v6("fd01::1").to_be_bytes());
    assert_eq!(&r[38..54], &v6("fd01::2").to_be_bytes());
    assert_eq!(&r[54..56], &[3, 0]);
    assert_eq!(&r[58..62], &[0; 4]);
    assert_eq!(
        icmp::checksum_v6(v6("fd01::1"), v6("fd01::2"), &r[54..]),
        0xffff
    );
    assert_eq!(&r[62..], &f[14..]);
}

#[test]
fn icmpv6_errors_quote_at_most_1280_bytes_and_fall_back_to_link_local() {
    let v = view();
    let mut f = udp6(MAC_A, "fd01::2", "fd02::2", 1);
    f.resize(14 + 1500, 0xab);
    f[18..20].copy_from_slice(&(1500u16 - 40).to_be_bytes());
    let (_, r) = answer(&v, &f, IcmpError::TimeExceeded).unwrap();
    assert_eq!(r.len(), 14 + 1280);
    assert_eq!(&r[62..], &f[14..14 + 1280 - 48]);
    assert_eq!(
        icmp::checksum_v6(v6("fd01::1"), v6("fd01::2"), &r[54..]),
        0xffff
    );
    // veth-c has only a link-local address: that is the source there.
    assert_eq!(v.ports[0].addr6, Some(v6("fd01::1")));
    assert_eq!(v.ports[2].addr6, Some(v6("fe80::c")));
    assert_eq!(v.ports[0].addr4, Some(0x0a01_0001));
}

#[test]
fn no_route_is_answered_with_net_unreachable() {
    let v = view();
    let f = udp4(MAC_A, "10.1.0.2", "192.0.2.1", 64, 1);
    assert_eq!(
        run(&v, &mut f.clone()),
        Verdict::Exception(Exception::NoRoute)
    );
    let why = IcmpError::for_verdict(Verdict::Exception(Exception::NoRoute)).unwrap();
    let (port, r) = answer(&v, &f, why).unwrap();
    assert_eq!(port, 0);
    assert_eq!(&r[34..36], &[3, 0]);
    assert_eq!(crate::wire::checksum::sum(&r[34..]), 0xffff);
    assert_eq!(&r[42..], &f[14..14 + 28]);

    let f = udp6(MAC_A, "fd01::2", "fd99::1", 64);
    assert_eq!(
        run(&v, &mut f.clone()),
        Verdict::Exception(Exception::NoRoute)
    );
    let (_, r) = answer(&v, &f, IcmpError::NetUnreachable).unwrap();
    assert_eq!(&r[54..56], &[1, 0]);
    assert_eq!(
        icmp::checksum_v6(v6("fd01::1"), v6("fd01::2"), &r[54..]),
        0xffff
    );
    // Other exceptions call for no error.
    assert_eq!(
        IcmpError::for_verdict(Verdict::Exception(Exception::Local)),
        None
    );
    assert_eq!(IcmpError::for_verdict(Verdict::Forward(1)), None);
}

#[test]
fn errors_are_never_answered_nor_fragments_nor_group_sources() {
    let v = view();
    let te = IcmpError::TimeExceeded;
    // An ICMP error (time exceeded) in transit.
    let mut f = udp4(MAC_A, "10.1.0.2", "10.2.0.2", 1, 1);
    f[23] = ip_proto::ICMP;
    f[34] = 11;
    Ip4::new_checked(&mut f[14..]).unwrap().fill_checksum();
    assert_eq!(answer(&v, &f, te), Err(None));
    // An echo request is answered.
    f[34] = 8;
    assert!(answer(&v, &f, te).is_ok());
    // A non-first fragment is not; a first one is.
    let mut f = udp4(MAC_A, "10.1.0.2", "10.2.0.2", 1, 1);
    f[20..22].copy_from_slice(&[0x00, 0x10]);
    Ip4::new_checked(&mut f[14..]).unwrap().fill_checksum();
    assert_eq!(answer(&v, &f, te), Err(None));
    f[20..22].copy_from_slice(&[0x20, 0x00]);
    Ip4::new_checked(&mut f[14..]).unwrap().fill_checksum();
    assert!(answer(&v, &f, te).is_ok());
    // Multicast, broadcast, unspecified and local sources.
    for src in [
        "224.0.0.9",
        "255.255.255.255",
        "0.0.0.0",
        "10.1.0.255",
        "10.1.0.1",
    ] {
        let f = udp4(MAC_A, src, "10.2.0.2", 1, 1);
        assert_eq!(answer(&v, &f, te), Err(None), "{src}");
    }
    // IPv6: an ICMPv6 error, a non-first fragment, a multicast source.
    let mut f = udp6(MAC_A, "fd01::2", "fd02::2", 1);
    f[20] = ip_proto::ICMPV6;
    f[54] = 1;
    assert_eq!(answer(&v, &f, te), Err(None));
    f[54] = 128;
    assert!(answer(&v, &f, te).is_ok());
    let mut f = udp6(MAC_A, "fd01::2", "fd02::2", 1);
    f[20] = ip_proto::FRAGMENT;
    f[56..58].copy_from_slice(&[0x00, 0x08]);
    assert_eq!(answer(&v, &f, te), Err(None));
    let f = udp6(MAC_A, "ff02::1", "fd02::2", 1);
    assert_eq!(answer(&v, &f, te), Err(None));
    // Not IP.
    let mut arp = udp4(MAC_A, "10.1.0.2", "10.2.0.2", 1, 1);
    arp[12..14].copy_from_slice(&ethertype::ARP.to_be_bytes());
    assert_eq!(answer(&v, &arp, te), Err(None));
}

#[test]
fn the_way_back_needs_a_neighbour() {
    let v = view();
    let f = udp4(MAC_A, "10.1.0.77", "10.2.0.2", 1, 1);
    assert_eq!(
        answer(&v, &f, IcmpError::TimeExceeded),
        Err(Some(Verdict::Resolve {
            ifindex: 2,
            dst: ip("10.1.0.77")
        }))
    );
    // A source without a route back: nothing is sent.
    let f = udp4(MAC_A, "192.0.2.9", "10.2.0.2", 1, 1);
    assert_eq!(answer(&v, &f, IcmpError::TimeExceeded), Err(None));
    // An interface without an address cannot be a source.
    let f = udp4(MAC_C, "10.3.0.2", "10.2.0.2", 1, 1);
    let mut out = [0u8; 1536];
    assert!(icmp_error(&v, 2, &f, IcmpError::TimeExceeded, &mut out).is_ok());
    let f = udp6(MAC_C, "fd01::2", "fd02::2", 1);
    assert!(icmp_error(&v, 2, &f, IcmpError::TimeExceeded, &mut out).is_ok());
}

/// A UDP conntrack tuple.
fn tuple(src: &str, dst: &str, sport: u16, dport: u16) -> fpc::CtTuple {
    fpc::CtTuple {
        src: ip(src),
        dst: ip(dst),
        proto: 17,
        sport,
        dport,
    }
}

#[test]
fn a_forwarded_packet_marks_its_conntrack_entry() {
    use fpc::{Conntrack, Hit};
    let mut t = tables();
    for (a, b) in [("10.1.0.2", "10.2.0.2"), ("fd01::2", "fd02::2")] {
        let ct = Conntrack {
            orig: tuple(a, b, 1234, 5678),
            reply: tuple(b, a, 5678, 1234),
            zone: 0,
            status: 0x8,
            mark: 0,
            timeout: 30,
            seq_adj: [None; 2],
        };
        t.apply(Op::Add, Object::Conntrack(ct)).unwrap();
    }
    let v = View::build(&t, &ports());
    let hits = |v: &View| {
        let mut out = Vec::new();
        v.take_hits(&mut out);
        out.retain(|h| matches!(h, Hit::Conntrack { .. }));
        out
    };
    // Left to Linux (TTL expires here): not fpd's to mark.
    let mut f = udp4(MAC_A, "10.1.0.2", "10.2.0.2", 1, 1234);
    assert_eq!(run(&v, &mut f), Verdict::Exception(Exception::Ttl));
    assert_eq!(hits(&v), vec![]);
    let mut f = udp4(MAC_A, "10.1.0.2", "10.2.0.2", 64, 1234);
    assert_eq!(run(&v, &mut f), Verdict::Forward(1));
    assert_eq!(
        hits(&v),
        vec![Hit::Conntrack {
            orig: tuple("10.1.0.2", "10.2.0.2", 1234, 5678),
            zone: 0,
            timeout: 30,
        }]
    );
    // Another source port is another flow.
    let mut f = udp4(MAC_A, "10.1.0.2", "10.2.0.2", 64, 1235);
    assert_eq!(run(&v, &mut f), Verdict::Forward(1));
    assert_eq!(hits(&v), vec![]);
    let mut f = udp6(MAC_A, "fd01::2", "fd02::2", 64);
    assert_eq!(run(&v, &mut f), Verdict::Forward(1));
    assert_eq!(hits(&v).len(), 1);
}

#[test]
fn a_conntrack_change_copies_no_routes_and_keeps_every_hit() {
    use crate::dataplane::view::Parts;
    use fpc::{Conntrack, Hit, ObjectKind};
    let entry = |sport| {
        Object::Conntrack(Conntrack {
            orig: tuple("10.1.0.2", "10.2.0.2", sport, 5678),
            reply: tuple("10.2.0.2", "10.1.0.2", 5678, sport),
            zone: 0,
            status: 0x8,
            mark: 0,
            timeout: 30,
            seq_adj: [None; 2],
        })
    };
    let mut t = tables();
    t.apply(Op::Add, entry(1234)).unwrap();
    let v1 = View::build(&t, &ports());
    let mut f = udp4(MAC_A, "10.1.0.2", "10.2.0.2", 64, 1234);
    assert_eq!(run(&v1, &mut f), Verdict::Forward(1));

    // A new conntrack entry: a new flow table, the same routing part.
    t.apply(Op::Add, entry(1235)).unwrap();
    let flows = Parts::of(ObjectKind::Conntrack);
    let v2 = v1.rebuild(&t, &ports(), flows);
    assert!(v2.shares_routing(&v1));
    assert_eq!(v2.conntracks.len(), 2);
    v2.carry_hits_from(&v1);
    let mut hits = Vec::new();
    v2.take_hits(&mut hits);
    assert!(
        hits.iter().any(|h| matches!(h, Hit::Neigh { .. })),
        "{hits:?}"
    );
    assert!(
        hits.iter()
            .any(|h| matches!(h, Hit::Conntrack { orig, .. } if orig.sport == 1234)),
        "{hits:?}"
    );

    // A route: a new routing part, the same flow table.
    add_route_via_veth_c(&mut t);
    let v3 = v2.rebuild(&t, &ports(), Parts::of(ObjectKind::Route));
    assert!(!v3.shares_routing(&v2));
    assert!(std::sync::Arc::ptr_eq(&v3.conntracks, &v2.conntracks));
    let mut f = udp4(MAC_A, "10.1.0.2", "10.9.0.7", 64, 1);
    assert_eq!(run(&v3, &mut f), Verdict::Forward(2));
    // What forwarding does not read changes nothing.
    assert!(Parts::of(ObjectKind::XfrmSa).is_empty());
    assert!(Parts::of(ObjectKind::CaptureFilter).is_empty());
    // Netfilter rules and IPsec policies only touch the gates.
    for kind in [ObjectKind::NftRule, ObjectKind::XfrmSp] {
        let p = Parts::of(kind);
        assert!(p.gates && !p.routing && !p.flows, "{kind:?}");
    }
}

/// A frame fpd must leave to Linux, and why.
fn left_to_linux(v: &View, mut f: Vec<u8>) -> Verdict {
    let before = f.clone();
    let verdict = run(v, &mut f);
    assert_eq!(f, before, "a frame left to Linux is left as received");
    verdict
}

#[test]
fn what_linux_would_treat_otherwise_goes_to_linux() {
    let v = view();
    let exception = |e| Verdict::Exception(e);
    // Martians: loopback and zero sources or destinations, a multicast
    // source, one of the router's own addresses as source.
    for (src, dst) in [
        ("127.0.0.1", "10.2.0.2"),
        ("0.1.2.3", "10.2.0.2"),
        ("224.0.0.9", "10.2.0.2"),
        ("10.1.0.1", "10.2.0.2"),
        ("10.1.0.2", "127.0.0.1"),
    ] {
        let f = udp4(MAC_A, src, dst, 64, 1);
        assert_eq!(
            left_to_linux(&v, f),
            exception(Exception::Martian),
            "{src} > {dst}"
        );
    }
    for (src, dst) in [
        ("::1", "fd02::2"),
        ("fd01::2", "::ffff:10.2.0.2"),
        ("fd01::1", "fd02::2"),
    ] {
        let f = udp6(MAC_A, src, dst, 64);
        assert_eq!(
            left_to_linux(&v, f),
            exception(Exception::Martian),
            "{src} > {dst}"
        );
    }
    // Fragments (Linux reassembles them once conntrack runs).
    let mut f = udp4(MAC_A, "10.1.0.2", "10.2.0.2", 64, 1);
    f[14 + 6] = 0x20; // MF
    Ip4::new_checked(&mut f[14..]).unwrap().fill_checksum();
    assert_eq!(left_to_linux(&v, f), exception(Exception::Fragment));
    let mut f = udp6(MAC_A, "fd01::2", "fd02::2", 64);
    f[14 + 6] = ip_proto::FRAGMENT;
    assert_eq!(left_to_linux(&v, f), exception(Exception::Fragment));
    // Ethernet padding after the packet: Linux forwards the packet alone.
    let mut f = udp4(MAC_A, "10.1.0.2", "10.2.0.2", 64, 1);
    f.extend_from_slice(&[0; 6]);
    assert_eq!(left_to_linux(&v, f), exception(Exception::Padded));
    // Out through the port it came in on: Linux also sends a redirect.
    let f = udp4(MAC_A, "10.1.0.3", "10.1.0.2", 64, 1);
    assert_eq!(
        forward(&v, 0, &mut f.clone()),
        exception(Exception::Redirect)
    );
}

#[test]
fn a_forward_chain_is_evaluated_and_ipsec_policies_send_their_family_to_linux() {
    use fpc::{NftChain, Selector, XfrmSp};
    let mut t = tables();
    t.apply(
        Op::Add,
        Object::NftChain(NftChain {
            family: 2, // ip
            table: "f".into(),
            name: "fw".into(),
            hook: Some((2, 0)), // forward
            chain_type: "filter".into(),
            policy: Some(0), // drop
            flags: 0,
        }),
    )
    .unwrap();
    // The forward chain's policy drops, as Linux would: silently.
    let v = View::build(&t, &ports());
    let mut f = udp4(MAC_A, "10.1.0.2", "10.2.0.2", 64, 1);
    assert_eq!(run(&v, &mut f), Verdict::Drop(DropReason::Netfilter));
    // IPv6 has no hook: still fpd's.
    let mut f = udp6(MAC_A, "fd01::2", "fd02::2", 64);
    assert_eq!(run(&v, &mut f), Verdict::Forward(1));

    let mut t = tables();
    let any6: IpAddr = "::".parse().unwrap();
    let sel = Selector {
        daddr: any6,
        saddr: any6,
        prefixlen_d: 0,
        prefixlen_s: 0,
        dport: 0,
        dport_mask: 0,
        sport: 0,
        sport_mask: 0,
        proto: 0,
        ifindex: 0,
        user: 0,
    };
    let sp = XfrmSp {
        sel,
        dir: 2, // fwd
        index: 8,
        ptype: 0,
        priority: 0,
        action: 1, // block
        flags: 0,
        mark: (0, 0),
        if_id: 0,
        lifetime: Default::default(),
        tmpls: vec![],
    };
    t.apply(Op::Add, Object::XfrmSp(sp)).unwrap();
    let v = View::build(&t, &ports());
    let f = udp6(MAC_A, "fd01::2", "fd02::2", 64);
    assert_eq!(left_to_linux(&v, f), Verdict::Exception(Exception::Xfrm));
    let mut f = udp4(MAC_A, "10.1.0.2", "10.2.0.2", 64, 1);
    assert_eq!(run(&v, &mut f), Verdict::Forward(1));
}

#[test]
fn where_linux_forwards_its_own_settings_for_the_input_port_decide() {
    use fpc::{NetConf, NETCONFA_IFINDEX_ALL};
    let conf = |family, ifindex, forwarding, rp_filter| {
        Object::NetConf(NetConf {
            family,
            ifindex,
            forwarding: Some(forwarding),
            rp_filter: (family == 2).then_some(rp_filter),
            mc_forwarding: Some(0),
            proxy_neigh: Some(0),
            ignore_routes_with_linkdown: Some(0),
        })
    };
    let forwarding_view = |t: &Tables| View::empty(&ports(), true).rebuild(t, &ports(), Parts::ALL);
    let run_v4 = |v: &View| forward(v, 0, &mut udp4(MAC_A, "10.1.0.2", "10.2.0.2", 64, 1));
    let run_v6 = |v: &View| forward(v, 0, &mut udp6(MAC_A, "fd01::2", "fd02::2", 64));
    // Nothing synced yet: Linux decides.
    let mut t = tables();
    let v = forwarding_view(&t);
    assert_eq!(run_v4(&v), Verdict::Exception(Exception::Forwarding));
    assert_eq!(run_v6(&v), Verdict::Exception(Exception::Forwarding));
    // Forwarding on, rp_filter off: fpd's.
    for o in [
        conf(2, 2, 1, 0),
        conf(2, NETCONFA_IFINDEX_ALL, 1, 0),
        conf(10, NETCONFA_IFINDEX_ALL, 1, 0),
    ] {
        t.apply(Op::Replace, o).unwrap();
    }
    let v = forwarding_view(&t);
    assert_eq!(run_v4(&v), Verdict::Forward(1));
    assert_eq!(run_v6(&v), Verdict::Forward(1));
    // rp_filter on for all (Linux takes the higher): Linux checks.
    t.apply(Op::Replace, conf(2, NETCONFA_IFINDEX_ALL, 1, 2))
        .unwrap();
    assert_eq!(
        run_v4(&forwarding_view(&t)),
        Verdict::Exception(Exception::RpFilter)
    );
    t.apply(Op::Replace, conf(2, NETCONFA_IFINDEX_ALL, 1, 0))
        .unwrap();
    // The input port's forwarding off: Linux does not forward.
    t.apply(Op::Replace, conf(2, 2, 0, 0)).unwrap();
    t.apply(Op::Replace, conf(10, NETCONFA_IFINDEX_ALL, 0, 0))
        .unwrap();
    let v = forwarding_view(&t);
    assert_eq!(run_v4(&v), Verdict::Exception(Exception::Forwarding));
    assert_eq!(run_v6(&v), Verdict::Exception(Exception::Forwarding));
    // Where Linux does not forward (AF_PACKET), its settings do not count.
    assert_eq!(
        run(
            &View::build(&t, &ports()),
            &mut udp4(MAC_A, "10.1.0.2", "10.2.0.2", 64, 1)
        ),
        Verdict::Forward(1)
    );
}
