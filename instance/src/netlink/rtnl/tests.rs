//! Tests of the rtnetlink decoder, on messages built byte by byte as the kernel lays them out.

use super::*;
use crate::netlink::decode;
use crate::netlink::wire::{
    dump_request, type_name, Event, Messages, NLMSG_HDRLEN, NLM_F_DUMP, NLM_F_REQUEST, NUD_NONE,
    RTM_DELLINK, RTM_GETROUTE, RTM_NEWADDR, RTM_NEWLINK, RTM_NEWNEIGH, RTM_NEWNEXTHOP,
    RTM_NEWROUTE,
};
use fpc::rtn;

/// Builds netlink messages byte by byte, as the kernel lays them out.
struct Msg(Vec<u8>);

impl Msg {
    fn new(kind: u16, header: &[u8]) -> Msg {
        let mut b = vec![0u8; NLMSG_HDRLEN];
        b[4..6].copy_from_slice(&kind.to_ne_bytes());
        b.extend_from_slice(header);
        Msg(b)
    }
    fn attr(mut self, kind: u16, value: &[u8]) -> Msg {
        self.0
            .extend_from_slice(&((4 + value.len()) as u16).to_ne_bytes());
        self.0.extend_from_slice(&kind.to_ne_bytes());
        self.0.extend_from_slice(value);
        while !self.0.len().is_multiple_of(4) {
            self.0.push(0);
        }
        self
    }
    fn u32(self, kind: u16, v: u32) -> Msg {
        self.attr(kind, &v.to_ne_bytes())
    }
    fn done(mut self) -> Vec<u8> {
        let len = self.0.len() as u32;
        self.0[0..4].copy_from_slice(&len.to_ne_bytes());
        self.0
    }
}

fn decode_one(buf: &[u8]) -> Result<Event, WireError> {
    let mut it = Messages::new(buf);
    let msg = it.next().expect("one message")?;
    assert!(it.next().is_none());
    decode(&msg)
}

fn ifinfomsg(family: u8, ifindex: u32, flags: u32) -> Vec<u8> {
    let mut h = vec![family, 0];
    h.extend_from_slice(&1u16.to_ne_bytes()); // ARPHRD_ETHER
    h.extend_from_slice(&ifindex.to_ne_bytes());
    h.extend_from_slice(&flags.to_ne_bytes());
    h.extend_from_slice(&0u32.to_ne_bytes());
    h
}

fn rtmsg(family: u8, dst_len: u8, table: u8, rtype: u8, flags: u32) -> Vec<u8> {
    let mut h = vec![family, dst_len, 0, 0, table, 4, 0, rtype];
    h.extend_from_slice(&flags.to_ne_bytes());
    h
}

#[test]
fn veth_link_with_its_kind_and_peer() {
    let info = Msg(Vec::new()).attr(IFLA_INFO_KIND, b"veth\0").0;
    let buf = Msg::new(RTM_NEWLINK, &ifinfomsg(0, 7, 0x1003))
        .attr(IFLA_IFNAME, b"v0\0")
        .u32(IFLA_MTU, 9000)
        .attr(IFLA_ADDRESS, &[2, 0, 0, 0, 0, 1])
        .u32(IFLA_LINK, 8)
        .u32(IFLA_MASTER, 3)
        .attr(IFLA_OPERSTATE, &[6])
        .attr(IFLA_LINKINFO | 0x8000, &info) // NLA_F_NESTED set
        .done();
    let Event::New(Object::Link(l)) = decode_one(&buf).unwrap() else {
        panic!("not a link")
    };
    assert_eq!(
        (l.ifindex, l.name.as_str(), l.kind.as_str()),
        (7, "v0", "veth")
    );
    assert_eq!(
        (l.flags, l.mtu, l.link, l.master, l.operstate),
        (0x1003, 9000, 8, 3, 6)
    );
    assert_eq!((l.mac, l.link_netnsid), (vec![2, 0, 0, 0, 0, 1], -1));
}

#[test]
fn bridge_family_link_messages_are_port_news() {
    let buf = Msg::new(RTM_DELLINK, &ifinfomsg(AF_BRIDGE, 7, 0)).done();
    assert_eq!(decode_one(&buf).unwrap(), Event::Ignored);
}

#[test]
fn ipv4_address_local_and_peer() {
    let mut h = vec![AF_INET, 24, 0x80, 0];
    h.extend_from_slice(&5u32.to_ne_bytes());
    let buf = Msg::new(RTM_NEWADDR, &h)
        .attr(IFA_ADDRESS, &[10, 0, 0, 1])
        .attr(IFA_LOCAL, &[10, 0, 0, 1])
        .u32(IFA_FLAGS, 0x80 | 0x20) // permanent, deprecated (state)
        .done();
    let Event::New(Object::Addr(a)) = decode_one(&buf).unwrap() else {
        panic!("not an address")
    };
    assert_eq!(a.addr, "10.0.0.1".parse::<IpAddr>().unwrap());
    assert_eq!((a.peer, a.prefix_len, a.flags), (None, 24, 0x80));
}

#[test]
fn tentative_ipv6_address_is_withdrawn() {
    let mut h = vec![AF_INET6, 64, 0x40, 0];
    h.extend_from_slice(&5u32.to_ne_bytes());
    let mut addr = [0u8; 16];
    addr[0] = 0xfe;
    addr[1] = 0x80;
    addr[15] = 1;
    let buf = Msg::new(RTM_NEWADDR, &h).attr(IFA_ADDRESS, &addr).done();
    assert!(matches!(
        decode_one(&buf).unwrap(),
        Event::Del(ObjectKey::Addr { .. })
    ));
}

#[test]
fn multipath_route_hops_sorted_with_weights() {
    let hop = |ifindex: u32, hops: u8, gw: [u8; 4]| {
        let gw_attr = Msg(Vec::new()).attr(RTA_GATEWAY, &gw).0;
        let mut h = ((8 + gw_attr.len()) as u16).to_ne_bytes().to_vec();
        h.extend_from_slice(&[0, hops]);
        h.extend_from_slice(&ifindex.to_ne_bytes());
        h.extend_from_slice(&gw_attr);
        h
    };
    let mut mp = hop(3, 2, [10, 0, 1, 2]);
    mp.extend(hop(2, 0, [10, 0, 0, 2]));
    let buf = Msg::new(RTM_NEWROUTE, &rtmsg(AF_INET, 24, 254, rtn::UNICAST, 0))
        .attr(RTA_DST, &[192, 168, 3, 0])
        .u32(RTA_TABLE, 254)
        .attr(RTA_MULTIPATH, &mp)
        .done();
    let Event::New(Object::Route(r)) = decode_one(&buf).unwrap() else {
        panic!("not a route")
    };
    let NextHops::Multipath(hops) = r.nexthops else {
        panic!("not multipath")
    };
    assert_eq!(hops[0].gateway, Some("10.0.0.2".parse().unwrap()));
    assert_eq!((hops[0].oif, hops[0].weight), (2, 1));
    assert_eq!((hops[1].oif, hops[1].weight), (3, 3));
}

/// What this kernel announced for `ip route add 10.9.0.0/24 dev lo mtu
/// lock 1280`: RTA_METRICS holds RTAX_LOCK (the MTU's bit) and RTAX_MTU.
const ROUTE_MTU_LOCK_1280: &str = "4800000018000006bc43116bbf0c000002180000fe03fd0100000000\
    08000f00fe000000080001000a09000014000800080001000400000008000200000500000800040001000000";

#[test]
fn a_routes_mtu_metric_is_kept() {
    let hex = ROUTE_MTU_LOCK_1280.replace(char::is_whitespace, "");
    let buf: Vec<u8> = (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
        .collect();
    let Event::New(Object::Route(r)) = decode_one(&buf).unwrap() else {
        panic!("not a route")
    };
    assert_eq!((r.dst_len, r.mtu), (24, 1280));
    // Without RTA_METRICS, no MTU; a truncated metric is an error.
    let plain = Msg::new(RTM_NEWROUTE, &rtmsg(AF_INET, 24, 254, rtn::UNICAST, 0))
        .attr(RTA_DST, &[10, 9, 0, 0])
        .done();
    let Event::New(Object::Route(r)) = decode_one(&plain).unwrap() else {
        panic!("not a route")
    };
    assert_eq!(r.mtu, 0);
    let bad = Msg(Vec::new()).attr(RTAX_MTU, &[5, 0]).0;
    let cut = Msg::new(RTM_NEWROUTE, &rtmsg(AF_INET, 24, 254, rtn::UNICAST, 0))
        .attr(RTA_METRICS, &bad)
        .done();
    assert!(decode_one(&cut).is_err());
}

#[test]
fn nexthop_object_wins_over_its_compat_expansion() {
    let buf = Msg::new(RTM_NEWROUTE, &rtmsg(AF_INET, 16, 100, rtn::UNICAST, 0))
        .attr(RTA_DST, &[172, 16, 0, 0])
        .u32(RTA_TABLE, 100)
        .u32(RTA_NH_ID, 11)
        .u32(RTA_OIF, 3)
        .attr(RTA_GATEWAY, &[10, 0, 0, 2])
        .done();
    let Event::New(Object::Route(r)) = decode_one(&buf).unwrap() else {
        panic!("not a route")
    };
    assert_eq!((r.table, r.nexthops), (100, NextHops::Id(11)));
}

#[test]
fn cloned_routes_are_not_configuration() {
    let buf = Msg::new(
        RTM_NEWROUTE,
        &rtmsg(AF_INET6, 128, 254, rtn::UNICAST, RTM_F_CLONED),
    )
    .attr(
        RTA_DST,
        &[0x20, 1, 0xd, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1],
    )
    .done();
    assert_eq!(decode_one(&buf).unwrap(), Event::Ignored);
}

#[test]
fn neighbours_in_noarp_or_none_are_not_synced() {
    let ndmsg = |state: u16| {
        let mut h = vec![AF_INET, 0, 0, 0];
        h.extend_from_slice(&4u32.to_ne_bytes());
        h.extend_from_slice(&state.to_ne_bytes());
        h.extend_from_slice(&[0, 1]);
        h
    };
    let msg = |state| {
        Msg::new(RTM_NEWNEIGH, &ndmsg(state))
            .attr(NDA_DST, &[10, 0, 0, 2])
            .attr(NDA_LLADDR, &[2, 0, 0, 0, 0, 2])
            .done()
    };
    assert!(matches!(
        decode_one(&msg(0x02)).unwrap(),
        Event::New(Object::Neigh(_))
    ));
    assert!(matches!(
        decode_one(&msg(NUD_NOARP)).unwrap(),
        Event::Del(_)
    ));
    assert!(matches!(decode_one(&msg(NUD_NONE)).unwrap(), Event::Del(_)));
}

#[test]
fn nexthop_group_weights() {
    let mut h = vec![AF_INET, 0, 4, 0];
    h.extend_from_slice(&0u32.to_ne_bytes());
    let mut group = Vec::new();
    for (id, weight_minus_one) in [(1u32, 0u8), (3, 4)] {
        group.extend_from_slice(&id.to_ne_bytes());
        group.extend_from_slice(&[weight_minus_one, 0, 0, 0]);
    }
    let buf = Msg::new(RTM_NEWNEXTHOP, &h)
        .u32(NHA_ID, 11)
        .attr(NHA_GROUP, &group)
        .attr(NHA_GROUP_TYPE, &0u16.to_ne_bytes())
        .done();
    let Event::New(Object::Nexthop(n)) = decode_one(&buf).unwrap() else {
        panic!("not a nexthop")
    };
    assert_eq!((n.id, n.group), (11, vec![(1, 1), (3, 5)]));
}

#[test]
fn malformed_messages_are_errors_not_panics() {
    let good = Msg::new(RTM_NEWROUTE, &rtmsg(AF_INET, 24, 254, rtn::UNICAST, 0))
        .attr(RTA_DST, &[192, 168, 3, 0])
        .u32(RTA_OIF, 2)
        .done();
    // Every truncation and a wrong attribute length.
    for cut in 0..good.len() {
        let mut b = good[..cut].to_vec();
        if b.len() >= 4 {
            let len = b.len() as u32;
            b[0..4].copy_from_slice(&len.to_ne_bytes());
        }
        for m in Messages::new(&b).flatten() {
            let _ = decode(&m);
        }
    }
    let mut bad = good.clone();
    bad[NLMSG_HDRLEN + 12] = 200; // RTA_DST claims 200 bytes
    let m = Messages::new(&bad).next().unwrap().unwrap();
    assert!(decode(&m).is_err());
    // Random bytes.
    let mut seed = 0x9e3779b97f4a7c15u64;
    for _ in 0..20_000 {
        let len = (seed % 96) as usize;
        let mut b = Vec::with_capacity(len);
        for _ in 0..len {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            b.push(seed as u8);
        }
        if b.len() >= 16 {
            // A plausible header, so the payload decoders run.
            let n = b.len() as u32;
            b[0..4].copy_from_slice(&n.to_ne_bytes());
            b[4] = [16, 20, 24, 28, 104][(seed % 5) as usize];
            b[5] = 0;
        }
        for m in Messages::new(&b).flatten() {
            let _ = decode(&m);
        }
    }
}

#[test]
fn dump_requests_have_the_kernel_layout() {
    let req = dump_request(RTM_GETROUTE, AF_INET6, 9);
    assert_eq!(req.len(), NLMSG_HDRLEN + 12);
    assert_eq!(
        u32::from_ne_bytes(req[0..4].try_into().unwrap()) as usize,
        req.len()
    );
    assert_eq!(u16::from_ne_bytes([req[4], req[5]]), RTM_GETROUTE);
    assert_eq!(
        u16::from_ne_bytes([req[6], req[7]]),
        NLM_F_REQUEST | NLM_F_DUMP
    );
    assert_eq!(req[NLMSG_HDRLEN], AF_INET6);
    assert_eq!(type_name(RTM_NEWROUTE), "RTM_NEWROUTE");
    assert_eq!(type_name(80), "RTM_NEWNETCONF");
    assert_eq!(type_name(200), "RTM_[200]");
}
