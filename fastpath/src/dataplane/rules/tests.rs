//! The rules walk through a real view: tables built with `Tables::apply`,
//! as the manager builds them, looked up as forwarding looks them up.

use std::net::IpAddr;

use super::*;
use crate::dataplane::view::{Lookup, PortInfo, View};
use crate::tables::Tables;
use fpc::{Hop, Link, LinkInfo, NextHops, Object, Op, Route, AF_INET6};

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn v4(s: &str) -> u32 {
    s.parse::<std::net::Ipv4Addr>().unwrap().into()
}

fn v6(s: &str) -> u128 {
    s.parse::<std::net::Ipv6Addr>().unwrap().into()
}

/// A route in `table` out of interface `oif` (the oif tells results apart).
fn route(table: u32, dst: &str, len: u8, rtype: u8, oif: u32) -> Object {
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
        nexthops: NextHops::Single(Hop {
            gateway: None,
            oif,
            weight: 1,
            flags: 0,
        }),
    })
}

fn link(ifindex: u32, name: &str) -> Object {
    Object::Link(Link {
        ifindex,
        name: name.into(),
        kind: "veth".into(),
        flags: 0x1003,
        mtu: 1500,
        link_type: 1,
        mac: vec![2, 0, 0, 0, 0, ifindex as u8],
        master: 0,
        link: 0,
        link_netnsid: -1,
        operstate: 6,
        info: LinkInfo::None,
    })
}

/// A rule of `family` at `priority` doing `action` with `table`.
fn spec(family: u8, priority: u32, action: u8, table: u32) -> RuleSpec {
    let mut s = default_rules(family)[0].clone();
    s.priority = priority;
    s.action = action;
    s.table = table;
    s.protocol = 3;
    s
}

fn rule(s: RuleSpec, position: u32) -> Object {
    Object::Rule(Box::new(Rule {
        spec: s,
        nth: 0,
        position,
    }))
}

/// Links veth-a (2), veth-b (3), veth-c (4); main: 0/0 via 3 and
/// 10.9.0.0/16 via 4; table 100: 0/0 via 4; table 200: 10.0.0.0/8 via 2.
fn tables(rules: Vec<Object>) -> Tables {
    let mut t = Tables::new();
    let mut objects = vec![link(2, "veth-a"), link(3, "veth-b"), link(4, "veth-c")];
    objects.extend([
        route(254, "0.0.0.0", 0, rtn::UNICAST, 3),
        route(254, "10.9.0.0", 16, rtn::UNICAST, 4),
        route(100, "0.0.0.0", 0, rtn::UNICAST, 4),
        route(200, "10.0.0.0", 8, rtn::UNICAST, 2),
        route(254, "::", 0, rtn::UNICAST, 3),
        route(100, "::", 0, rtn::UNICAST, 4),
        route(255, "10.1.0.1", 32, rtn::LOCAL, 2),
    ]);
    objects.extend(rules);
    for o in objects {
        t.apply(Op::Add, o).unwrap();
    }
    t
}

fn view(t: &Tables) -> View {
    let ports: Vec<PortInfo> = [(2, "veth-a"), (3, "veth-b"), (4, "veth-c")]
        .into_iter()
        .map(|(ifindex, name)| PortInfo {
            name: name.into(),
            ifindex,
            mac: [2, 0, 0, 0, 0, ifindex as u8],
            mtu: 1500,
        })
        .collect();
    View::build(t, &ports)
}

/// The defaults of a namespace, as cmgrd syncs them.
fn defaults(family: u8) -> Vec<Object> {
    default_rules(family)
        .into_iter()
        .map(|s| rule(s, 0))
        .collect()
}

fn flow4(src: &str, dst: &str, iif: u32) -> Flow<u32> {
    Flow {
        src: v4(src),
        dst: v4(dst),
        iif,
        mark: 0,
        tos: Some(0),
        flowlabel: 0,
        proto: 17,
        sport: 1234,
        dport: 53,
        l4_known: true,
    }
}

/// Where a lookup went: the route's oif, or what else it said.
#[derive(Debug, PartialEq, Eq)]
enum Out {
    Oif(u32),
    Local,
    NoRoute,
    Blackhole,
    Linux(ToLinux),
    Type(u8),
}

fn out(l: Lookup<'_>) -> Out {
    match l {
        Lookup::Route(a) if a.rtype != rtn::UNICAST => Out::Type(a.rtype),
        Lookup::Route(a) => match &a.nexthops {
            NextHops::Single(h) => Out::Oif(h.oif),
            _ => unreachable!(),
        },
        Lookup::Local => Out::Local,
        Lookup::NoRoute => Out::NoRoute,
        Lookup::Blackhole => Out::Blackhole,
        Lookup::Linux(w) => Out::Linux(w),
    }
}

fn lookup4(rules: Vec<Object>, f: &Flow<u32>) -> Out {
    let t = tables(rules);
    out(view(&t).lookup4(f))
}

fn with_defaults(extra: Vec<Object>) -> Vec<Object> {
    let mut v = defaults(AF_INET);
    v.extend(extra);
    v
}

#[test]
fn without_rules_the_defaults_apply() {
    let t = tables(Vec::new());
    let v = view(&t);
    assert_eq!(v.rule_counts(), (3, 2));
    assert_eq!(
        out(v.lookup4(&flow4("10.1.0.2", "10.2.0.2", 2))),
        Out::Oif(3)
    );
    assert_eq!(
        out(v.lookup4(&flow4("10.1.0.2", "10.1.0.1", 2))),
        Out::Local
    );
    // The same with the defaults synced.
    let f = flow4("10.1.0.2", "10.9.1.1", 2);
    assert_eq!(lookup4(defaults(AF_INET), &f), Out::Oif(4));
}

#[test]
fn rules_apply_in_priority_order_then_insertion_order() {
    let mut a = spec(AF_INET, 100, action::TO_TBL, 100);
    a.src = Some(ip("10.1.0.2"));
    a.src_len = 32;
    let mut b = spec(AF_INET, 100, action::TO_TBL, 200);
    b.src = Some(ip("10.1.0.0"));
    b.src_len = 16;
    let f = flow4("10.1.0.2", "10.2.0.2", 2);
    // Same priority: the one inserted first (position 0) wins.
    let first_a = with_defaults(vec![rule(a.clone(), 0), rule(b.clone(), 1)]);
    assert_eq!(lookup4(first_a, &f), Out::Oif(4));
    let first_b = with_defaults(vec![rule(a.clone(), 1), rule(b.clone(), 0)]);
    assert_eq!(lookup4(first_b, &f), Out::Oif(2));
    // A lower priority number goes first, whatever the position.
    let mut c = b.clone();
    c.priority = 50;
    assert_eq!(
        lookup4(with_defaults(vec![rule(a, 0), rule(c, 5)]), &f),
        Out::Oif(2)
    );
    // Another source matches neither: main.
    let other = flow4("10.7.0.2", "10.2.0.2", 2);
    assert_eq!(
        lookup4(with_defaults(vec![rule(b, 0)]), &other),
        Out::Oif(3)
    );
}

#[test]
fn from_to_iif_oif_fwmark_uid_selectors() {
    let f = flow4("10.1.0.2", "10.2.0.2", 2);
    let to_100 = |edit: &dyn Fn(&mut RuleSpec)| {
        let mut s = spec(AF_INET, 100, action::TO_TBL, 100);
        edit(&mut s);
        lookup4(with_defaults(vec![rule(s, 0)]), &f)
    };
    assert_eq!(to_100(&|_| {}), Out::Oif(4));
    assert_eq!(
        to_100(&|s| {
            s.dst = Some(ip("10.2.0.0"));
            s.dst_len = 24;
        }),
        Out::Oif(4)
    );
    assert_eq!(
        to_100(&|s| {
            s.dst = Some(ip("10.3.0.0"));
            s.dst_len = 24;
        }),
        Out::Oif(3)
    );
    // iif by name: veth-a is ifindex 2, the packet's.
    assert_eq!(to_100(&|s| s.iif = "veth-a".into()), Out::Oif(4));
    assert_eq!(to_100(&|s| s.iif = "veth-b".into()), Out::Oif(3));
    // A name no device has (the kernel's detached rule) never matches.
    assert_eq!(to_100(&|s| s.iif = "gone".into()), Out::Oif(3));
    // oif: flowi_oif is 0 on input, so never for a forwarded packet.
    assert_eq!(to_100(&|s| s.oif = "veth-b".into()), Out::Oif(3));
    // fwmark: forwarded packets carry mark 0.
    assert_eq!(
        to_100(&|s| {
            s.fwmark = 1;
            s.fwmask = u32::MAX;
        }),
        Out::Oif(3)
    );
    assert_eq!(
        to_100(&|s| {
            s.fwmark = 0;
            s.fwmask = 0xff;
        }),
        Out::Oif(4)
    );
    // uid 0 for forwarded packets.
    assert_eq!(to_100(&|s| s.uid_range = Some((0, 0))), Out::Oif(4));
    assert_eq!(to_100(&|s| s.uid_range = Some((1000, 2000))), Out::Oif(3));
    // not: inverted.
    assert_eq!(
        to_100(&|s| {
            s.oif = "veth-b".into();
            s.flags = FIB_RULE_INVERT;
        }),
        Out::Oif(4)
    );
}

#[test]
fn tos_proto_and_port_selectors() {
    let to_100 = |edit: &dyn Fn(&mut RuleSpec), f: &Flow<u32>| {
        let mut s = spec(AF_INET, 100, action::TO_TBL, 100);
        edit(&mut s);
        lookup4(with_defaults(vec![rule(s, 0)]), f)
    };
    let mut f = flow4("10.1.0.2", "10.2.0.2", 2);
    f.tos = Some(0x10 | 0x01); // ECN bits do not count
    assert_eq!(to_100(&|s| s.tos = 0x10, &f), Out::Oif(4));
    assert_eq!(to_100(&|s| s.tos = 0x08, &f), Out::Oif(3));
    f.tos = Some(0xb8); // EF: legacy tos keeps 0x1c only
    assert_eq!(to_100(&|s| s.tos = 0x18, &f), Out::Oif(4));
    assert_eq!(to_100(&|s| s.dscp = Some((46, 0x3f)), &f), Out::Oif(4));
    assert_eq!(to_100(&|s| s.dscp = Some((40, 0x38)), &f), Out::Oif(4));
    assert_eq!(to_100(&|s| s.dscp = Some((10, 0x3f)), &f), Out::Oif(3));
    // A flow whose TOS fpd does not know (its own ICMP errors): Linux.
    f.tos = None;
    assert_eq!(
        to_100(&|s| s.tos = 0x10, &f),
        Out::Linux(ToLinux::Unsupported)
    );
    assert_eq!(to_100(&|_| {}, &f), Out::Oif(4));
    let f = flow4("10.1.0.2", "10.2.0.2", 2);
    assert_eq!(to_100(&|s| s.ip_proto = 17, &f), Out::Oif(4));
    assert_eq!(to_100(&|s| s.ip_proto = 6, &f), Out::Oif(3));
    let range = |a, b| {
        Some(PortMatch {
            start: a,
            end: b,
            mask: None,
        })
    };
    assert_eq!(to_100(&|s| s.sport = range(1000, 2000), &f), Out::Oif(4));
    assert_eq!(to_100(&|s| s.dport = range(54, 60), &f), Out::Oif(3));
    let masked = Some(PortMatch {
        start: 0x0400,
        end: 0x0400,
        mask: Some(0xff00),
    });
    assert_eq!(to_100(&|s| s.sport = masked, &f), Out::Oif(4)); // 1234 = 0x04d2
                                                                // IPv6 extension headers: the kernel's dissector walks them, fpd
                                                                // does not: a protocol selector goes to Linux.
    let mut ext = f;
    ext.l4_known = false;
    assert_eq!(
        to_100(&|s| s.ip_proto = 17, &ext),
        Out::Linux(ToLinux::Unsupported)
    );
    assert_eq!(to_100(&|_| {}, &ext), Out::Oif(4));
}

#[test]
fn suppress_prefixlength_ignores_short_prefixes() {
    // `lookup main suppress_prefixlength 0` first: the default route of
    // main is ignored, 10.9/16 is not.
    let mut s = spec(AF_INET, 100, action::TO_TBL, 254);
    s.suppress_prefixlen = Some(0);
    let mut to_200 = spec(AF_INET, 200, action::TO_TBL, 200);
    to_200.dst = Some(ip("10.0.0.0"));
    to_200.dst_len = 8;
    let rules = with_defaults(vec![rule(s.clone(), 0), rule(to_200, 0)]);
    assert_eq!(
        lookup4(rules.clone(), &flow4("10.1.0.2", "10.9.1.1", 2)),
        Out::Oif(4)
    );
    assert_eq!(
        lookup4(rules.clone(), &flow4("10.1.0.2", "10.2.0.2", 2)),
        Out::Oif(2)
    );
    // Up to /16 suppressed: 10.9/16 too.
    s.suppress_prefixlen = Some(16);
    let rules = with_defaults(vec![rule(s, 0)]);
    // ... and then main again at 32766, unsuppressed.
    assert_eq!(
        lookup4(rules, &flow4("10.1.0.2", "10.9.1.1", 2)),
        Out::Oif(4)
    );
    // A blackhole result is not suppressed (the kernel suppresses only a
    // lookup that succeeded).
    let mut t = tables(Vec::new());
    t.apply(Op::Add, route(300, "0.0.0.0", 0, rtn::BLACKHOLE, 0))
        .unwrap();
    let mut s = spec(AF_INET, 100, action::TO_TBL, 300);
    s.suppress_prefixlen = Some(0);
    for o in with_defaults(vec![rule(s, 0)]) {
        t.apply(Op::Add, o).unwrap();
    }
    assert_eq!(
        out(view(&t).lookup4(&flow4("10.1.0.2", "10.2.0.2", 2))),
        Out::Type(rtn::BLACKHOLE)
    );
}

#[test]
fn goto_nop_throw_and_missing_tables_continue() {
    let f = flow4("10.1.0.2", "10.2.0.2", 2);
    let mut goto = spec(AF_INET, 100, action::GOTO, 0);
    goto.goto = Some(300);
    let to_100 = spec(AF_INET, 200, action::TO_TBL, 100); // skipped
    let to_200 = spec(AF_INET, 300, action::TO_TBL, 200);
    let rules = with_defaults(vec![
        rule(goto.clone(), 0),
        rule(to_100.clone(), 0),
        rule(to_200, 0),
    ]);
    assert_eq!(lookup4(rules, &f), Out::Oif(2));
    // Unresolved goto (no rule 300): like nop.
    let rules = with_defaults(vec![rule(goto, 0), rule(to_100.clone(), 0)]);
    assert_eq!(lookup4(rules, &f), Out::Oif(4));
    let nop = spec(AF_INET, 50, action::NOP, 0);
    assert_eq!(lookup4(with_defaults(vec![rule(nop, 0)]), &f), Out::Oif(3));
    // A table without a route for it, or no such table: the next rule.
    let empty = spec(AF_INET, 50, action::TO_TBL, 999);
    let rules = with_defaults(vec![rule(empty, 0), rule(to_100.clone(), 0)]);
    assert_eq!(lookup4(rules, &f), Out::Oif(4));
    // A throw route: the next rule too.
    let mut t = tables(Vec::new());
    t.apply(Op::Add, route(100, "10.2.0.0", 24, rtn::THROW, 0))
        .unwrap();
    for o in with_defaults(vec![rule(to_100, 0)]) {
        t.apply(Op::Add, o).unwrap();
    }
    let v = view(&t);
    assert_eq!(out(v.lookup4(&f)), Out::Oif(3));
    assert_eq!(
        out(v.lookup4(&flow4("10.1.0.2", "10.5.0.2", 2))),
        Out::Oif(4)
    );
}

#[test]
fn blackhole_unreachable_prohibit_actions() {
    let f = flow4("10.1.0.2", "10.2.0.2", 2);
    let act = |a| lookup4(with_defaults(vec![rule(spec(AF_INET, 100, a, 0), 0)]), &f);
    assert_eq!(act(action::BLACKHOLE), Out::Blackhole);
    // Linux answers these with its ICMP errors.
    assert_eq!(act(action::UNREACHABLE), Out::Linux(ToLinux::Unreachable));
    assert_eq!(act(action::PROHIBIT), Out::Linux(ToLinux::Prohibit));
    // An action fpd does not know.
    assert_eq!(act(42), Out::Linux(ToLinux::Unsupported));
    // No rule at all would answer: no route.
    let only = vec![rule(spec(AF_INET, 100, action::TO_TBL, 999), 0)];
    assert_eq!(lookup4(only, &f), Out::NoRoute);
}

#[test]
fn what_fpd_cannot_evaluate_goes_to_linux() {
    let f = flow4("10.1.0.2", "10.2.0.2", 2);
    let with = |edit: &dyn Fn(&mut RuleSpec)| {
        let mut s = spec(AF_INET, 100, action::TO_TBL, 100);
        edit(&mut s);
        lookup4(with_defaults(vec![rule(s, 0)]), &f)
    };
    let linux = Out::Linux(ToLinux::Unsupported);
    assert_eq!(with(&|s| s.l3mdev = true), linux);
    assert_eq!(with(&|s| s.tun_id = 42), linux);
    assert_eq!(with(&|s| s.unknown = vec![31]), linux);
    // suppress_ifgroup: device groups are not synced; it matters only
    // once the table gave a route.
    assert_eq!(with(&|s| s.suppress_ifgroup = Some(3)), linux);
    assert_eq!(
        with(&|s| {
            s.suppress_ifgroup = Some(3);
            s.table = 999;
        }),
        Out::Oif(3)
    );
    // ... but a rule whose known selectors exclude the packet is no
    // question: the walk goes on.
    assert_eq!(
        with(&|s| {
            s.l3mdev = true;
            s.src = Some(ip("10.7.0.0"));
            s.src_len = 16;
        }),
        Out::Oif(3)
    );
}

#[test]
fn ipv6_rules() {
    let mut s = spec(AF_INET6, 100, action::TO_TBL, 100);
    s.src = Some(ip("2001:db8:1::"));
    s.src_len = 48;
    s.tos = 0x20; // IPv6: the DSCP compared whole
    let mut rules = defaults(AF_INET6);
    rules.push(rule(s, 0));
    let t = tables(rules);
    let v = view(&t);
    let mut f = Flow {
        src: v6("2001:db8:1::2"),
        dst: v6("2001:db8:2::2"),
        iif: 2,
        mark: 0,
        tos: Some(0x20),
        flowlabel: 0x12345,
        proto: 17,
        sport: 1,
        dport: 2,
        l4_known: true,
    };
    assert_eq!(out(v.lookup6(&f)), Out::Oif(4));
    f.tos = Some(0x21); // ECN aside
    assert_eq!(out(v.lookup6(&f)), Out::Oif(4));
    f.tos = Some(0x28);
    assert_eq!(out(v.lookup6(&f)), Out::Oif(3));
    f.tos = Some(0x20);
    f.src = v6("2001:db8:9::2");
    assert_eq!(out(v.lookup6(&f)), Out::Oif(3));
}

/// The cost of a lookup: the defaults, and 20 `from` rules that do not
/// match before them. `cargo test -p fastpath --release --lib
/// lookup_cost -- --ignored --nocapture`.
#[test]
#[ignore = "a measurement, not a check"]
fn lookup_cost() {
    let mut extra = Vec::new();
    for i in 0..20u32 {
        let mut s = spec(AF_INET, 100 + i, action::TO_TBL, 100);
        s.src = Some(ip(&format!("10.200.{i}.0")));
        s.src_len = 24;
        extra.push(rule(s, 0));
    }
    for (name, rules) in [
        ("defaults", defaults(AF_INET)),
        ("20 more", with_defaults(extra)),
    ] {
        let t = tables(rules);
        let v = view(&t);
        let f = flow4("10.1.0.2", "10.2.0.2", 2);
        const N: u32 = 2_000_000;
        let start = std::time::Instant::now();
        let mut hits = 0u32;
        for i in 0..N {
            let mut f = f;
            f.dst ^= i & 0xff;
            if matches!(v.lookup4(std::hint::black_box(&f)), Lookup::Route(_)) {
                hits += 1;
            }
        }
        let ns = start.elapsed().as_nanos() as f64 / f64::from(N);
        eprintln!("{name}: {ns:.1} ns a lookup ({hits} routes)");
        // What the lookup did before rules: local, then main, directly.
        let fib = t.fib_snapshot();
        let start = std::time::Instant::now();
        let mut hits = 0u32;
        for i in 0..N {
            let dst = std::hint::black_box(f.dst ^ (i & 0xff));
            let local = fib.lookup4_len(RT_TABLE_LOCAL, dst);
            if local.is_none() && fib.lookup4_len(RT_TABLE_MAIN, dst).is_some() {
                hits += 1;
            }
        }
        let ns = start.elapsed().as_nanos() as f64 / f64::from(N);
        eprintln!("  local then main, no rules: {ns:.1} ns ({hits} routes)");
    }
}
