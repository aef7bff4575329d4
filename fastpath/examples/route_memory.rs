//! Resident memory per route of the tables alone: inserts 1,000,000 IPv4
//! /24 and 200,000 IPv6 /64 routes (table 254, four gateways and devices,
//! protocol boot, scope universe) and prints the growth of the resident set.
//!
//! `cargo run --release -p fastpath --example route_memory [V4 V6]`

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use fastpath::Tables;
use fpc::{rtn, Hop, NextHops, Object, Op, Route};

/// Resident set size in bytes, from /proc/self/statm.
fn rss() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").expect("/proc/self/statm");
    let pages: u64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|v| v.parse().ok())
        .expect("statm resident field");
    // SAFETY: sysconf has no preconditions; _SC_PAGESIZE is always valid.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    pages * page as u64
}

fn route(dst: IpAddr, dst_len: u8, i: u32) -> Route {
    let gateway = match dst {
        IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1 + (i % 4) as u8)),
        IpAddr::V6(_) => IpAddr::V6(Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 1 + (i % 4) as u16)),
    };
    Route {
        table: 254,
        dst,
        dst_len,
        tos: 0,
        priority: 0,
        rtype: rtn::UNICAST,
        protocol: 3,
        scope: 0,
        prefsrc: None,
        mtu: 0,
        nexthops: NextHops::Single(Hop {
            gateway: Some(gateway),
            oif: 2 + i % 4,
            weight: 1,
            flags: 0,
        }),
    }
}

fn main() {
    let mut args = std::env::args()
        .skip(1)
        .map(|a| a.parse::<u32>().expect("a count"));
    let v4 = args.next().unwrap_or(1_000_000);
    let v6 = args.next().unwrap_or(200_000);
    let before = rss();
    let mut tables = Tables::new();
    for i in 0..v4 {
        let dst = IpAddr::V4(Ipv4Addr::from((1u32 << 24) + (i << 8)));
        tables
            .apply(Op::Add, Object::Route(route(dst, 24, i)))
            .unwrap();
    }
    for i in 0..v6 {
        let dst = IpAddr::V6(Ipv6Addr::from(
            (0x2001_0db8u128 << 96) | (u128::from(i) << 64),
        ));
        tables
            .apply(Op::Add, Object::Route(route(dst, 64, i)))
            .unwrap();
    }
    let after = rss();
    let routes = u64::from(v4 + v6);
    println!(
        "{v4} IPv4 + {v6} IPv6 routes: resident {:.1} MiB -> {:.1} MiB, {:.1} bytes/route",
        before as f64 / 1048576.0,
        after as f64 / 1048576.0,
        (after - before) as f64 / routes as f64
    );
    let t = std::time::Instant::now();
    let mut found = 0;
    for i in 0..v4 {
        let a = IpAddr::V4(Ipv4Addr::from((1u32 << 24) + (i << 8) + 7));
        found += usize::from(tables.longest_match(254, a).is_some());
    }
    println!(
        "{found} IPv4 lookups, {:.0} ns each",
        t.elapsed().as_nanos() as f64 / f64::from(v4.max(1))
    );
    println!("{tables:?}");
}
