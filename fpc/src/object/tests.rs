//! Tests of the object codec: every kind round-trips, and no input panics or allocates past what is there.

use super::*;
use crate::object::conntrack::{CtTuple, SeqAdj};
use crate::object::nftables::NftElemData;
use crate::object::xfrm::{Encap, Lifetime, Selector, XfrmAlgo, XfrmTmpl};

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn hop(gw: Option<&str>, oif: u32, weight: u16, flags: u8) -> Hop {
    Hop {
        gateway: gw.map(ip),
        oif,
        weight,
        flags,
    }
}

fn route(dst: &str, dst_len: u8, nexthops: NextHops) -> Route {
    Route {
        table: 254,
        dst: ip(dst),
        dst_len,
        tos: 0,
        priority: 100,
        rtype: rtn::UNICAST,
        protocol: 3,
        scope: 0,
        prefsrc: None,
        mtu: 0,
        nexthops,
    }
}

/// One object of every kind and every form.
pub(crate) fn samples() -> Vec<Object> {
    let mut local = route("192.0.2.7", 32, NextHops::Single(hop(None, 2, 1, 0)));
    local.table = 255;
    local.rtype = rtn::LOCAL;
    local.scope = 254;
    local.prefsrc = Some(ip("192.0.2.7"));
    let mut tos = route("10.0.0.0", 8, NextHops::Id(12));
    tos.tos = 0x10;
    tos.priority = u32::MAX;
    let mut blackhole = route("::", 0, NextHops::None);
    blackhole.rtype = rtn::BLACKHOLE;
    vec![
        Object::Link(Link {
            ifindex: 2,
            name: "eth0".into(),
            kind: "veth".into(),
            flags: 0x11043,
            mtu: 1500,
            link_type: 1,
            mac: vec![2, 0, 0, 0, 0, 1],
            master: 5,
            link: 3,
            link_netnsid: -1,
            operstate: 6,
            info: LinkInfo::None,
        }),
        Object::Link(Link {
            ifindex: u32::MAX,
            name: "lo".into(),
            kind: String::new(),
            flags: 0,
            mtu: 65536,
            link_type: 772,
            mac: vec![],
            master: 0,
            link: 0,
            link_netnsid: 7,
            operstate: 0,
            info: LinkInfo::Vxlan {
                vni: 42,
                local: Some(ip("192.0.2.1")),
                remote: Some(ip("ff02::1")),
                port: 4789,
                learning: true,
                ttl: 8,
                dev: 3,
            },
        }),
        Object::Link(Link {
            ifindex: 9,
            name: "gre1".into(),
            kind: "gre".into(),
            flags: 1,
            mtu: 1476,
            link_type: 778,
            mac: vec![192, 0, 2, 1],
            master: 0,
            link: 0,
            link_netnsid: -1,
            operstate: 6,
            info: LinkInfo::Gre {
                ikey: 1,
                okey: 2,
                iflags: 0x2000,
                oflags: 0x2000,
                local: None,
                remote: Some(ip("192.0.2.2")),
                ttl: 64,
                dev: 0,
            },
        }),
        Object::BridgePort(BridgePort {
            ifindex: 4,
            master: 2,
            state: 3,
            vlans: vec![(1, 6), (100, 0)],
        }),
        Object::Fdb(Fdb {
            ifindex: 4,
            mac: vec![2, 0, 0, 0, 0, 9],
            vlan: 100,
            dst: Some(ip("2001:db8::9")),
            vni: 5000,
            master: 2,
            state: 0x80,
            flags: 0x02,
        }),
        Object::Addr(Addr {
            ifindex: 2,
            addr: ip("192.0.2.7"),
            peer: None,
            prefix_len: 24,
            scope: 0,
            flags: 0x80,
        }),
        Object::Addr(Addr {
            ifindex: 2,
            addr: ip("2001:db8::7"),
            peer: Some(ip("2001:db8::8")),
            prefix_len: 128,
            scope: 200,
            flags: 0x2,
        }),
        Object::Route(route(
            "0.0.0.0",
            0,
            NextHops::Single(hop(Some("192.0.2.1"), 2, 1, RTNH_F_ONLINK)),
        )),
        Object::Route(route(
            "2001:db8::",
            32,
            NextHops::Multipath(vec![
                hop(Some("fe80::1"), 2, 1, 0),
                hop(Some("fe80::2"), 3, 256, 0),
                hop(None, 4, 2, 0),
            ]),
        )),
        Object::Route(local),
        Object::Route(tos),
        Object::Route(blackhole),
        Object::Nexthop(Nexthop {
            id: 10,
            family: AF_INET,
            gateway: Some(ip("192.0.2.1")),
            oif: 2,
            blackhole: false,
            fdb: false,
            flags: RTNH_F_ONLINK,
            group: vec![],
            group_type: 0,
        }),
        Object::Nexthop(Nexthop {
            id: 12,
            family: 0,
            gateway: None,
            oif: 0,
            blackhole: false,
            fdb: true,
            flags: 0,
            group: vec![(10, 1), (11, 256)],
            group_type: 1,
        }),
        Object::Nexthop(Nexthop {
            id: 13,
            family: AF_INET6,
            gateway: None,
            oif: 0,
            blackhole: true,
            fdb: false,
            flags: 0,
            group: vec![],
            group_type: 0,
        }),
        Object::Neigh(Neigh {
            ifindex: 2,
            dst: ip("192.0.2.1"),
            lladdr: vec![2, 0, 0, 0, 0, 2],
            state: 0x02,
            flags: 0,
        }),
        Object::Neigh(Neigh {
            ifindex: 3,
            dst: ip("fe80::1"),
            lladdr: vec![],
            state: 0x20,
            flags: 0x80,
        }),
        Object::XfrmSa(xfrm_sa()),
        Object::XfrmSp(XfrmSp {
            sel: selector(),
            dir: 1,
            index: 0x209,
            ptype: 0,
            priority: 100,
            action: 0,
            flags: 0,
            mark: (0, 0),
            if_id: 0,
            lifetime: Lifetime::default(),
            tmpls: vec![XfrmTmpl {
                daddr: ip("192.0.2.2"),
                spi: 0,
                proto: 50,
                saddr: ip("192.0.2.1"),
                reqid: 7,
                mode: 1,
                share: 0,
                optional: 0,
                aalgos: u32::MAX,
                ealgos: u32::MAX,
                calgos: u32::MAX,
            }],
        }),
        Object::XfrmReplay(XfrmReplay {
            daddr: ip("2001:db8::2"),
            spi: 0x1000,
            proto: 50,
            mark: (1, 0xff),
            oseq: 1 << 33,
            seq: 12,
            esn: true,
            bitmap: vec![0xffff_0000, 1],
        }),
        Object::Conntrack(Conntrack {
            orig: CtTuple {
                src: ip("10.0.0.1"),
                dst: ip("192.0.2.9"),
                proto: 6,
                sport: 40000,
                dport: 80,
            },
            reply: CtTuple {
                src: ip("10.1.0.9"),
                dst: ip("192.0.2.1"),
                proto: 6,
                sport: 8080,
                dport: 40000,
            },
            zone: 3,
            status: 0x3e,
            mark: 0xdead,
            timeout: 431_999,
            seq_adj: [
                None,
                Some(SeqAdj {
                    correction_pos: 0x8000_0001,
                    offset_before: 0,
                    offset_after: -3,
                }),
            ],
        }),
        Object::NftTable(NftTable {
            family: 1,
            name: "t".into(),
            flags: 0,
        }),
        Object::NftChain(NftChain {
            family: 1,
            table: "t".into(),
            name: "fw".into(),
            hook: Some((2, -100)),
            chain_type: "nat".into(),
            policy: Some(1),
            flags: 1,
        }),
        Object::NftRule(NftRule {
            family: 2,
            table: "t".into(),
            chain: "fw".into(),
            handle: 4,
            prev: 3,
            nat: true,
            exprs: vec![1, 2, 3, 4, 5],
        }),
        Object::NftSet(NftSet {
            family: 1,
            table: "t".into(),
            name: "__map0".into(),
            flags: 0xb,
            key_type: 13,
            key_len: 2,
            data_type: 0xffff_ff00,
            data_len: 16,
            fields: vec![4, 2],
            exprs: true,
            timeout: false,
        }),
        Object::NftSetElem(NftSetElem {
            family: 1,
            table: "t".into(),
            set: "__map0".into(),
            key: vec![0x11, 0x5c, 0, 0],
            key_end: vec![0x11, 0x5d, 0, 0],
            flags: 1,
            data: NftElemData::Verdict {
                code: -3,
                chain: "c2".into(),
            },
            stateful: false,
        }),
        Object::NftSetElem(NftSetElem {
            family: 2,
            table: "t".into(),
            set: "m".into(),
            key: vec![10, 2, 0, 2],
            key_end: vec![],
            flags: 0,
            data: NftElemData::Value(vec![7, 0, 0, 0]),
            stateful: true,
        }),
        Object::Qdisc(Qdisc {
            ifindex: 3,
            handle: 0x8001_0000,
            parent: 0xffff_ffff,
            kind: "tbf".into(),
        }),
        Object::NftSetElem(NftSetElem {
            family: 2,
            table: "t".into(),
            set: "m".into(),
            key: vec![],
            key_end: vec![],
            flags: 2,
            data: NftElemData::None,
            stateful: false,
        }),
        Object::Mroute(Mroute {
            table: 253,
            source: ip("10.0.0.1"),
            group: ip("239.1.1.1"),
            iif: 2,
            oifs: vec![(3, 1), (4, 2)],
        }),
        Object::CaptureFilter(CaptureFilter {
            inode: 12345,
            ifindex: 1,
            protocol: 3,
            process: "tcpdump".into(),
            program: vec![0x06, 0, 0, 0, 0, 0, 4, 0],
        }),
        Object::MrouteVif(MrouteVif {
            family: AF_INET,
            table: 253,
            vif: 2,
            ifindex: 2,
            flags: 0,
            local: Some(ip("10.9.1.1")),
            remote: Some(ip("192.0.2.9")),
        }),
        Object::MrouteVif(MrouteVif {
            family: AF_INET6,
            table: 254,
            vif: 31,
            ifindex: 7,
            flags: 1,
            local: None,
            remote: None,
        }),
        Object::NetConf(NetConf {
            family: AF_INET,
            ifindex: 3,
            forwarding: Some(1),
            rp_filter: Some(2),
            mc_forwarding: Some(0),
            proxy_neigh: Some(0),
            ignore_routes_with_linkdown: Some(1),
        }),
        Object::NetConf(NetConf {
            family: AF_INET6,
            ifindex: crate::object::netconf::NETCONFA_IFINDEX_ALL,
            forwarding: Some(0),
            rp_filter: None,
            mc_forwarding: None,
            proxy_neigh: Some(1),
            ignore_routes_with_linkdown: None,
        }),
    ]
    .into_iter()
    .chain(crate::object::xtables::tests::samples())
    .chain(crate::object::rule::tests::samples())
    .collect()
}

fn selector() -> Selector {
    Selector {
        daddr: ip("10.2.0.0"),
        saddr: ip("10.1.0.0"),
        prefixlen_d: 16,
        prefixlen_s: 16,
        dport: 0,
        dport_mask: 0,
        sport: 500,
        sport_mask: 0xffff,
        proto: 17,
        ifindex: 0,
        user: 0,
    }
}

fn xfrm_sa() -> XfrmSa {
    XfrmSa {
        sel: selector(),
        daddr: ip("192.0.2.2"),
        spi: 0xc0ffee,
        proto: 50,
        saddr: ip("192.0.2.1"),
        mode: 1,
        reqid: 7,
        replay_window: 64,
        flags: 0x21,
        algos: vec![
            XfrmAlgo {
                attr: 2,
                name: "cbc(aes)".into(),
                key_bits: 128,
                param: 0,
                key: vec![7; 16],
            },
            XfrmAlgo {
                attr: 20,
                name: "hmac(sha256)".into(),
                key_bits: 256,
                param: 128,
                key: vec![9; 32],
            },
        ],
        encap: Some(Encap {
            encap_type: 2,
            sport: 4500,
            dport: 4500,
            oa: None,
        }),
        mark: (5, 0xffff),
        if_id: 3,
        lifetime: Lifetime {
            hard_bytes: u64::MAX,
            ..Lifetime::default()
        },
    }
}

fn round_trip(o: &Object) -> Object {
    let mut buf = Vec::new();
    o.emit(&mut buf);
    let mut r = Reader::new(&buf);
    let back = Object::parse(&mut r).unwrap();
    r.finish().unwrap();
    back
}

#[test]
fn every_object_round_trips() {
    for o in samples() {
        assert_eq!(round_trip(&o), o);
        // Display never fails and says what the object is.
        assert!(o.to_string().starts_with(o.kind().name()), "{o}");
    }
}

#[test]
fn neighbour_bytes() {
    let n = Object::Neigh(Neigh {
        ifindex: 2,
        dst: ip("192.0.2.1"),
        lladdr: vec![0xaa, 0xbb],
        state: 0x0102,
        flags: 0x80,
    });
    let mut buf = Vec::new();
    n.emit(&mut buf);
    #[rustfmt::skip]
    let expected = [
        5, 0, 15,               // kind Neigh, body length 15
        0, 0, 0, 2,             // ifindex
        4, 192, 0, 2, 1,        // dst
        2, 0xaa, 0xbb,          // lladdr
        0x01, 0x02,             // state
        0x80,                   // flags
    ];
    assert_eq!(buf, expected);
    assert_eq!(round_trip(&n), n);
}

#[test]
fn bad_objects_are_refused() {
    // A /33 IPv4 route.
    let mut buf = Vec::new();
    Object::Route(route("10.0.0.0", 8, NextHops::None)).emit(&mut buf);
    buf[3 + 4 + 5] = 33;
    assert!(Object::parse(&mut Reader::new(&buf)).is_err());
    // A body shorter than its fields, and one longer.
    let mut buf = Vec::new();
    samples()[0].emit(&mut buf);
    let short = [&[1, 0, 3][..], &buf[3..6]].concat();
    assert!(Object::parse(&mut Reader::new(&short)).is_err());
    let len = u16::from_be_bytes([buf[1], buf[2]]) + 1;
    let mut long = buf.clone();
    long[1..3].copy_from_slice(&len.to_be_bytes());
    long.push(0);
    assert_eq!(
        Object::parse(&mut Reader::new(&long)),
        Err(DecodeError::Trailing(1))
    );
}
