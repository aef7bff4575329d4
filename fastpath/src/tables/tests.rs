//! Unit tests of the tables: longest-prefix match, mark and sweep,
//! interning, errors and lossless round trips.

use std::net::IpAddr;

use super::*;
use fpc::{rtn, Hop, LinkInfo, NextHops, ObjectKey, RTNH_F_ONLINK};

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn route(table: u32, prefix: &str, priority: u32, gw: &str) -> Route {
    let (dst, len) = prefix.split_once('/').unwrap();
    Route {
        table,
        dst: ip(dst),
        dst_len: len.parse().unwrap(),
        tos: 0,
        priority,
        rtype: rtn::UNICAST,
        protocol: 3,
        scope: 0,
        prefsrc: None,
        mtu: 0,
        nexthops: if gw.is_empty() {
            NextHops::None
        } else {
            NextHops::Single(Hop {
                gateway: Some(ip(gw)),
                oif: 2,
                weight: 1,
                flags: 0,
            })
        },
    }
}

fn add(t: &mut Tables, r: &Route) {
    t.apply(Op::Add, Object::Route(r.clone())).unwrap();
}

fn gateway_of(r: &Option<Route>) -> Option<String> {
    match &r.as_ref()?.nexthops {
        NextHops::Single(h) => h.gateway.map(|g| g.to_string()),
        _ => None,
    }
}

fn counter(t: &Tables, name: &str) -> u64 {
    t.counters()
        .into_iter()
        .find(|(k, _)| k == name)
        .unwrap_or_else(|| panic!("no counter {name}"))
        .1
}

fn dump(t: &Tables) -> Vec<Object> {
    let mut out = Vec::new();
    t.for_each(|o| out.push(o));
    out
}

fn check(t: &Tables) {
    t.routes4.check_counts();
    t.routes6.check_counts();
}

#[test]
fn longest_match_ipv4() {
    let mut t = Tables::new();
    add(&mut t, &route(254, "0.0.0.0/0", 0, "192.0.2.1"));
    add(&mut t, &route(254, "10.0.0.0/8", 0, "192.0.2.8"));
    add(&mut t, &route(254, "10.1.2.0/24", 0, "192.0.2.24"));
    add(&mut t, &route(254, "10.1.2.3/32", 0, "192.0.2.32"));
    let lm = |a: &str| gateway_of(&t.longest_match(254, ip(a)));
    assert_eq!(lm("10.1.2.3").as_deref(), Some("192.0.2.32"));
    assert_eq!(lm("10.1.2.4").as_deref(), Some("192.0.2.24"));
    assert_eq!(lm("10.1.3.4").as_deref(), Some("192.0.2.8"));
    assert_eq!(lm("11.0.0.1").as_deref(), Some("192.0.2.1"));
    assert_eq!(lm("255.255.255.255").as_deref(), Some("192.0.2.1"));
    // The match is the whole route.
    assert_eq!(
        t.longest_match(254, ip("10.1.2.200")),
        Some(route(254, "10.1.2.0/24", 0, "192.0.2.24"))
    );
    // No IPv6 route, and other tables are apart.
    assert_eq!(t.longest_match(254, ip("2001:db8::1")), None);
    assert_eq!(t.longest_match(255, ip("10.1.2.3")), None);
    check(&t);
}

#[test]
fn longest_match_ipv6_and_per_table() {
    let mut t = Tables::new();
    add(&mut t, &route(254, "::/0", 0, "fe80::1"));
    add(&mut t, &route(254, "2001:db8::/32", 0, "fe80::32"));
    add(&mut t, &route(254, "2001:db8:0:1::/64", 0, "fe80::64"));
    add(&mut t, &route(254, "2001:db8:0:1::5/128", 0, "fe80::128"));
    add(&mut t, &route(100, "2001:db8::/48", 0, "fe80::100"));
    add(&mut t, &route(100, "10.0.0.0/8", 0, "192.0.2.100"));
    let lm = |table, a: &str| gateway_of(&t.longest_match(table, ip(a)));
    assert_eq!(lm(254, "2001:db8:0:1::5").as_deref(), Some("fe80::128"));
    assert_eq!(lm(254, "2001:db8:0:1::6").as_deref(), Some("fe80::64"));
    assert_eq!(lm(254, "2001:db8:0:2::6").as_deref(), Some("fe80::32"));
    assert_eq!(lm(254, "2001:db9::1").as_deref(), Some("fe80::1"));
    assert_eq!(lm(100, "2001:db8:0:1::5").as_deref(), Some("fe80::100"));
    assert_eq!(lm(100, "2001:db9::1"), None);
    assert_eq!(lm(100, "10.2.3.4").as_deref(), Some("192.0.2.100"));
    assert_eq!(lm(254, "10.2.3.4"), None);
    assert_eq!(counter(&t, "routes4"), 1);
    assert_eq!(counter(&t, "routes6"), 5);
    check(&t);
}

#[test]
fn lowest_metric_and_tos_zero_win() {
    let mut t = Tables::new();
    add(&mut t, &route(254, "10.0.0.0/8", 0, "192.0.2.8"));
    add(&mut t, &route(254, "10.1.0.0/16", 200, "192.0.2.200"));
    add(&mut t, &route(254, "10.1.0.0/16", 100, "192.0.2.100"));
    let mut tos = route(254, "10.1.0.0/16", 50, "192.0.2.50");
    tos.tos = 0x10;
    add(&mut t, &tos);
    let lm = |t: &Tables| gateway_of(&t.longest_match(254, ip("10.1.1.1")));
    assert_eq!(lm(&t).as_deref(), Some("192.0.2.100"));
    t.apply(
        Op::Delete,
        Object::Route(route(254, "10.1.0.0/16", 100, "")),
    )
    .unwrap();
    assert_eq!(lm(&t).as_deref(), Some("192.0.2.200"));
    t.apply(
        Op::Delete,
        Object::Route(route(254, "10.1.0.0/16", 200, "")),
    )
    .unwrap();
    // Only a tos route is left for the /16: the /8 matches.
    assert_eq!(lm(&t).as_deref(), Some("192.0.2.8"));
    assert_eq!(counter(&t, "routes4"), 2);
    check(&t);
}

#[test]
fn delete_of_missing_key_is_not_found() {
    let mut t = Tables::new();
    let r = route(254, "10.0.0.0/8", 0, "192.0.2.1");
    let del = |t: &mut Tables, o: Object| t.apply(Op::Delete, o);
    assert_eq!(
        del(&mut t, Object::Route(r.clone())),
        Err(ObjectError::NotFound)
    );
    add(&mut t, &r);
    // Another metric, another table, another prefix: other keys.
    let mut other = r.clone();
    other.priority = 5;
    assert_eq!(
        del(&mut t, Object::Route(other)),
        Err(ObjectError::NotFound)
    );
    let mut other = r.clone();
    other.table = 100;
    assert_eq!(
        del(&mut t, Object::Route(other)),
        Err(ObjectError::NotFound)
    );
    let other = route(254, "10.0.0.0/9", 0, "192.0.2.1");
    assert_eq!(
        del(&mut t, Object::Route(other)),
        Err(ObjectError::NotFound)
    );
    // Attributes do not matter to a delete.
    assert_eq!(
        del(
            &mut t,
            Object::Route(route(254, "10.0.0.0/8", 0, "192.0.2.9"))
        ),
        Ok(())
    );
    assert_eq!(del(&mut t, Object::Route(r)), Err(ObjectError::NotFound));
    for o in sample_objects() {
        if !matches!(o, Object::Route(_)) {
            assert_eq!(del(&mut t, o), Err(ObjectError::NotFound));
        }
    }
    assert_eq!(counter(&t, "rejected"), 16);
    assert!(t.is_empty());
}

#[test]
fn invalid_objects_are_rejected_and_change_nothing() {
    let mut t = Tables::new();
    let mut bad = vec![
        route(254, "10.0.0.1/8", 0, "192.0.2.1"),
        route(254, "2001:db8::1/64", 0, "fe80::1"),
        route(254, "10.0.0.0/33", 0, "192.0.2.1"),
        route(254, "::/129", 0, "fe80::1"),
    ];
    let mut r = route(254, "10.0.0.0/8", 0, "192.0.2.1");
    r.nexthops = NextHops::Multipath(vec![]);
    bad.push(r);
    let mut r = route(254, "10.0.0.0/8", 0, "192.0.2.1");
    r.nexthops = NextHops::Id(0);
    bad.push(r);
    let mut r = route(254, "10.0.0.0/8", 0, "192.0.2.1");
    r.prefsrc = Some(ip("2001:db8::1"));
    bad.push(r);
    for r in bad {
        assert_eq!(
            t.apply(Op::Add, Object::Route(r.clone())),
            Err(ObjectError::Invalid),
            "{r:?}"
        );
    }
    for o in sample_objects() {
        let o = match o {
            Object::Link(mut l) => {
                l.ifindex = 0;
                Object::Link(l)
            }
            Object::Addr(mut a) => {
                a.prefix_len = 129;
                Object::Addr(a)
            }
            Object::Nexthop(mut n) => {
                n.id = 0;
                Object::Nexthop(n)
            }
            Object::Neigh(mut n) => {
                n.ifindex = 0;
                Object::Neigh(n)
            }
            Object::BridgePort(mut p) => {
                p.master = 0;
                Object::BridgePort(p)
            }
            Object::Fdb(mut e) => {
                e.mac = vec![1, 2, 3];
                Object::Fdb(e)
            }
            Object::XfrmSa(mut sa) => {
                sa.proto = 0;
                Object::XfrmSa(sa)
            }
            Object::Conntrack(mut ct) => {
                ct.orig.dst = ip("::1");
                Object::Conntrack(ct)
            }
            Object::Mroute(mut m) => {
                m.group = ip("ff02::1");
                Object::Mroute(m)
            }
            Object::CaptureFilter(mut c) => {
                c.program = vec![1, 2, 3];
                Object::CaptureFilter(c)
            }
            Object::MrouteVif(mut v) => {
                v.vif = 32;
                Object::MrouteVif(v)
            }
            Object::NetConf(mut c) => {
                c.ifindex = 0;
                Object::NetConf(c)
            }
            Object::Qdisc(mut q) => {
                q.ifindex = 0;
                Object::Qdisc(q)
            }
            Object::Rule(mut r) => {
                r.spec.src = Some(ip("192.0.2.1"));
                r.spec.src_len = 129;
                Object::Rule(r)
            }
            Object::Route(_)
            | Object::XfrmSp(_)
            | Object::XfrmReplay(_)
            | Object::NftTable(_)
            | Object::NftChain(_)
            | Object::NftRule(_)
            | Object::NftSet(_)
            | Object::NftSetElem(_)
            | Object::XtChain(_)
            | Object::XtRule(_) => continue,
        };
        assert_eq!(t.apply(Op::Add, o), Err(ObjectError::Invalid));
    }
    assert!(t.is_empty());
    assert_eq!(counter(&t, "route_attrs"), 0);
    assert_eq!(counter(&t, "rejected"), 18);
}

/// One object of every kind and form.
fn sample_objects() -> Vec<Object> {
    let hop = |gw: &str, oif, weight, flags| Hop {
        gateway: (!gw.is_empty()).then(|| ip(gw)),
        oif,
        weight,
        flags,
    };
    let mut multipath = route(254, "10.10.0.0/16", 20, "192.0.2.1");
    multipath.nexthops = NextHops::Multipath(vec![
        hop("192.0.2.1", 2, 1, 0),
        hop("192.0.2.2", 3, 5, RTNH_F_ONLINK),
    ]);
    let mut nhid = route(100, "10.20.0.0/16", 20, "192.0.2.1");
    nhid.nexthops = NextHops::Id(12);
    nhid.protocol = 186;
    let mut blackhole = route(254, "10.30.0.0/16", 0, "192.0.2.1");
    blackhole.rtype = rtn::BLACKHOLE;
    blackhole.nexthops = NextHops::None;
    let mut local = route(255, "192.0.2.7/32", 0, "192.0.2.1");
    local.rtype = rtn::LOCAL;
    local.scope = 254;
    local.prefsrc = Some(ip("192.0.2.7"));
    local.nexthops = NextHops::Single(hop("", 2, 1, 0));
    let mut v6 = route(254, "2001:db8:1::/48", 1024, "fe80::1");
    v6.prefsrc = Some(ip("2001:db8::7"));
    let mut v6_mp = route(254, "::/0", 1024, "fe80::1");
    v6_mp.nexthops = NextHops::Multipath(vec![hop("fe80::1", 2, 1, 0), hop("fe80::2", 3, 1, 0)]);
    let mut tos = route(254, "10.10.0.0/16", 20, "192.0.2.9");
    tos.tos = 0x10;
    vec![
        Object::Link(Link {
            ifindex: 2,
            name: "eth0".into(),
            kind: "veth".into(),
            flags: 0x11043,
            mtu: 1500,
            link_type: 1,
            mac: vec![2, 0, 0, 0, 0, 1],
            master: 0,
            link: 3,
            link_netnsid: 0,
            operstate: 6,
            info: LinkInfo::None,
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
            scope: 0,
            flags: 0,
        }),
        Object::Nexthop(Nexthop {
            id: 10,
            family: 2,
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
            fdb: false,
            flags: 0,
            group: vec![(10, 1), (11, 3)],
            group_type: 1,
        }),
        Object::Nexthop(Nexthop {
            id: 13,
            family: 2,
            gateway: None,
            oif: 0,
            blackhole: true,
            fdb: false,
            flags: 0,
            group: vec![],
            group_type: 0,
        }),
        Object::Route(route(254, "0.0.0.0/0", 0, "192.0.2.1")),
        Object::Route(multipath),
        Object::Route(tos),
        Object::Route(nhid),
        Object::Route(blackhole),
        Object::Route(local),
        Object::Route(v6),
        Object::Route(v6_mp),
        Object::Neigh(Neigh {
            ifindex: 2,
            dst: ip("192.0.2.1"),
            lladdr: vec![2, 0, 0, 0, 0, 2],
            state: 2,
            flags: 0,
        }),
        Object::Neigh(Neigh {
            ifindex: 2,
            dst: ip("fe80::1"),
            lladdr: vec![],
            state: 0x20,
            flags: 0x80,
        }),
        Object::NetConf(fpc::NetConf {
            family: 2,
            ifindex: 2,
            forwarding: Some(1),
            rp_filter: Some(2),
            mc_forwarding: Some(0),
            proxy_neigh: Some(0),
            ignore_routes_with_linkdown: Some(0),
        }),
        Object::NetConf(fpc::NetConf {
            family: 10,
            ifindex: fpc::NETCONFA_IFINDEX_ALL,
            forwarding: Some(0),
            rp_filter: None,
            mc_forwarding: None,
            proxy_neigh: Some(1),
            ignore_routes_with_linkdown: Some(0),
        }),
        Object::Qdisc(fpc::Qdisc {
            ifindex: 2,
            handle: 0xffff_0000,
            parent: fpc::TC_H_INGRESS,
            kind: "clsact".into(),
        }),
    ]
}

fn sorted(mut v: Vec<Object>) -> Vec<Object> {
    v.sort_by_key(|o| o.key());
    v
}

#[test]
fn round_trip_is_lossless() {
    let objects = sample_objects();
    for o in &objects {
        // Alone...
        let mut t = Tables::new();
        t.apply(Op::Add, o.clone()).unwrap();
        assert_eq!(dump(&t), vec![o.clone()]);
    }
    // ...and all together, twice (replays are idempotent), with Replace.
    let mut t = Tables::new();
    for _ in 0..2 {
        for o in &objects {
            t.apply(Op::Add, o.clone()).unwrap();
            t.apply(Op::Replace, o.clone()).unwrap();
        }
    }
    assert_eq!(sorted(dump(&t)), sorted(objects.clone()));
    assert_eq!(t.len(), objects.len());
    // Single nexthops come before groups.
    let ids: Vec<u32> = dump(&t)
        .into_iter()
        .filter_map(|o| match o {
            Object::Nexthop(n) => Some(n.id),
            _ => None,
        })
        .collect();
    assert_eq!(ids.last(), Some(&12));
    check(&t);
}

#[test]
fn replace_changes_attributes() {
    let mut t = Tables::new();
    add(&mut t, &route(254, "10.0.0.0/8", 0, "192.0.2.1"));
    t.apply(
        Op::Replace,
        Object::Route(route(254, "10.0.0.0/8", 0, "192.0.2.2")),
    )
    .unwrap();
    assert_eq!(
        dump(&t),
        vec![Object::Route(route(254, "10.0.0.0/8", 0, "192.0.2.2"))]
    );
    assert_eq!(counter(&t, "route_attrs"), 1);
}

#[test]
fn interned_attributes_are_released() {
    let mut t = Tables::new();
    for i in 0..1000u32 {
        let gw = if i % 2 == 0 { "192.0.2.1" } else { "192.0.2.2" };
        add(
            &mut t,
            &route(254, &format!("10.{}.{}.0/24", i / 256, i % 256), 0, gw),
        );
    }
    assert_eq!(counter(&t, "route_attrs"), 2);
    let (_, _, entry) = t.routes4.tables[&254]
        .longest_match(V4::from_ip(ip("10.0.0.1")).unwrap())
        .unwrap();
    let id = entry.attrs();
    assert_eq!(t.attrs.refs(id), 500);
    for i in (0..1000u32).step_by(2) {
        let r = route(254, &format!("10.{}.{}.0/24", i / 256, i % 256), 0, "");
        t.apply(Op::Delete, Object::Route(r)).unwrap();
    }
    assert_eq!(t.attrs.refs(id), 0);
    assert_eq!(counter(&t, "route_attrs"), 1);
    // Replacing every remaining route's gateway moves the references.
    for i in (1..1000u32).step_by(2) {
        add(
            &mut t,
            &route(
                254,
                &format!("10.{}.{}.0/24", i / 256, i % 256),
                0,
                "192.0.2.3",
            ),
        );
    }
    assert_eq!(counter(&t, "route_attrs"), 1);
    // Sweeping everything frees everything.
    t.begin_sync(1);
    assert_eq!(t.end_sync(1), 500);
    assert_eq!(counter(&t, "route_attrs"), 0);
    assert!(t.routes4.tables.is_empty());
    check(&t);
}

#[test]
fn mark_and_sweep() {
    let objects = sample_objects();
    let mut t = Tables::new();
    for o in &objects {
        t.apply(Op::Add, o.clone()).unwrap();
    }
    t.begin_sync(7);
    // Nothing goes before SyncEnd.
    assert_eq!(t.len(), objects.len());
    // Refresh every other object, and add a new one.
    let kept: Vec<Object> = objects.iter().step_by(2).cloned().collect();
    for o in &kept {
        t.apply(Op::Replace, o.clone()).unwrap();
    }
    let new = Object::Route(route(254, "198.51.100.0/24", 0, "192.0.2.1"));
    t.apply(Op::Add, new.clone()).unwrap();
    // A SyncEnd of another generation sweeps nothing.
    assert_eq!(t.end_sync(6), 0);
    assert_eq!(t.len(), objects.len() + 1);
    let swept = t.end_sync(7);
    assert_eq!(swept, objects.len() - kept.len());
    let mut expected = kept.clone();
    expected.push(new);
    assert_eq!(sorted(dump(&t)), sorted(expected.clone()));
    assert_eq!(counter(&t, "generation"), 7);
    assert_eq!(counter(&t, "syncs"), 1);
    assert_eq!(counter(&t, "swept"), swept as u64);
    // A second SyncEnd sweeps nothing; objects added outside a sync are fresh.
    assert_eq!(t.end_sync(7), 0);
    // A sync that refreshes everything sweeps nothing.
    t.begin_sync(8);
    for o in &expected {
        t.apply(Op::Add, o.clone()).unwrap();
    }
    assert_eq!(t.end_sync(8), 0);
    assert_eq!(sorted(dump(&t)), sorted(expected));
    // An empty sync empties the tables.
    t.begin_sync(9);
    t.end_sync(9);
    assert!(t.is_empty());
    assert_eq!(counter(&t, "route_attrs"), 0);
    assert_eq!(counter(&t, "syncs"), 3);
    check(&t);
}

#[test]
fn restarted_sync_marks_again() {
    let mut t = Tables::new();
    let a = route(254, "10.0.0.0/8", 0, "192.0.2.1");
    let b = route(254, "10.0.0.0/8", 10, "192.0.2.1");
    add(&mut t, &a);
    add(&mut t, &b);
    t.begin_sync(1);
    add(&mut t, &a);
    // The first sync never ends: the second starts over.
    t.begin_sync(2);
    add(&mut t, &b);
    assert_eq!(t.end_sync(2), 1);
    assert_eq!(dump(&t), vec![Object::Route(b)]);
    check(&t);
}

#[test]
fn keys_match_object_keys() {
    // Two objects with one key are one entry in the tables.
    let objects = sample_objects();
    let mut t = Tables::new();
    for o in &objects {
        t.apply(Op::Add, o.clone()).unwrap();
    }
    let mut keys: Vec<ObjectKey> = objects.iter().map(Object::key).collect();
    keys.sort();
    keys.dedup();
    assert_eq!(keys.len(), t.len());
}

#[test]
fn mroute_vifs_are_kept_swept_and_checked() {
    use fpc::MrouteVif;
    let vif = |family, vif, ifindex, local: Option<&str>| MrouteVif {
        family,
        table: 253,
        vif,
        ifindex,
        flags: 0,
        local: local.map(ip),
        remote: None,
    };
    let mut t = Tables::new();
    let v4 = vif(2, 0, 3, Some("10.9.1.1"));
    let v6 = vif(10, 0, 3, None);
    t.apply(Op::Add, Object::MrouteVif(v4.clone())).unwrap();
    t.apply(Op::Add, Object::MrouteVif(v6.clone())).unwrap();
    assert_eq!(counter(&t, "mroute_vifs"), 2, "one key per family");
    for bad in [
        vif(2, 32, 3, None),
        vif(2, 1, 0, None),
        vif(10, 1, 3, Some("10.9.1.1")),
        vif(2, 1, 3, Some("2001:db8::1")),
        vif(7, 1, 3, None),
    ] {
        assert_eq!(
            t.apply(Op::Add, Object::MrouteVif(bad.clone())),
            Err(ObjectError::Invalid),
            "{bad:?}"
        );
    }
    t.begin_sync(5);
    t.apply(Op::Add, Object::MrouteVif(v6.clone())).unwrap();
    assert_eq!(t.end_sync(5), 1);
    let mut left = Vec::new();
    t.for_each(|o| left.push(o));
    assert_eq!(left, vec![Object::MrouteVif(v6)]);
}

#[test]
fn netconfs_are_kept_listed_and_swept() {
    use fpc::{NetConf, NETCONFA_IFINDEX_ALL};
    let conf = |family, ifindex, forwarding| NetConf {
        family,
        ifindex,
        forwarding: Some(forwarding),
        rp_filter: (family == 2).then_some(0),
        mc_forwarding: Some(0),
        proxy_neigh: Some(0),
        ignore_routes_with_linkdown: Some(0),
    };
    let mut t = Tables::new();
    let all4 = conf(2, NETCONFA_IFINDEX_ALL, 1);
    let dev6 = conf(10, 3, 0);
    t.apply(Op::Add, Object::NetConf(all4.clone())).unwrap();
    t.apply(Op::Add, Object::NetConf(conf(10, 3, 1))).unwrap();
    t.apply(Op::Replace, Object::NetConf(dev6.clone())).unwrap();
    t.apply(Op::Add, Object::NetConf(conf(2, 3, 1))).unwrap();
    assert_eq!(counter(&t, "netconfs"), 3, "one key per (family, ifindex)");
    let mut listed: Vec<NetConf> = t.netconfs().cloned().collect();
    listed.sort_by_key(|c| c.key());
    assert_eq!(listed, vec![all4.clone(), conf(2, 3, 1), dev6.clone()]);
    let mut v6_rp = dev6.clone();
    v6_rp.rp_filter = Some(1);
    assert_eq!(
        t.apply(Op::Add, Object::NetConf(v6_rp)),
        Err(ObjectError::Invalid)
    );
    t.apply(Op::Delete, Object::NetConf(conf(2, 3, 1))).unwrap();
    t.begin_sync(9);
    t.apply(Op::Add, Object::NetConf(dev6.clone())).unwrap();
    assert_eq!(t.end_sync(9), 1);
    assert_eq!(t.netconfs().cloned().collect::<Vec<_>>(), vec![dev6]);
}
