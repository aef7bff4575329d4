//! fpd's resident memory per route, measured on the real process: a sync
//! session sends 1,000,000 IPv4 /24 and 200,000 IPv6 /64 routes (table 254,
//! four gateways and devices, protocol boot, scope universe) in batches of
//! 10,000 (or `FPD_MEMORY_BATCH`), and the growth of fpd's VmRSS is divided by the route count.
//! The target is at most 64 bytes a route. Slow in debug builds, hence
//! ignored; run it with
//!
//! `cargo test --release -p fastpath --test fpd_memory -- --ignored --nocapture`

mod common;

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use common::{Client, Fpd};
use fpc::{rtn, Hop, Message, NextHops, Object, Op, Role, Route, VERSION};

/// VmRSS of `pid` in bytes.
fn rss(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS");
    kib * 1024
}

fn route(dst: IpAddr, dst_len: u8, i: u32) -> Object {
    let gateway = match dst {
        IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1 + (i % 4) as u8)),
        IpAddr::V6(_) => IpAddr::V6(Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 1 + (i % 4) as u16)),
    };
    Object::Route(Route {
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
    })
}

#[test]
#[ignore = "slow in debug builds: run with --release -- --ignored"]
fn fpd_resident_memory_per_route() {
    const V4: u32 = 1_000_000;
    const V6: u32 = 200_000;
    let fpd = Fpd::start("memory");
    let mut sync = Client::connect(&fpd.socket).unwrap();
    sync.hello(Role::Sync, VERSION);
    let before = rss(fpd.pid());
    assert!(sync.apply(&Message::SyncBegin { generation: 1 }).is_empty());
    let started = std::time::Instant::now();
    let all = (0..V4)
        .map(|i| route(IpAddr::V4(Ipv4Addr::from((1u32 << 24) + (i << 8))), 24, i))
        .chain((0..V6).map(|i| {
            let dst = Ipv6Addr::from((0x2001_0db8u128 << 96) | (u128::from(i) << 64));
            route(IpAddr::V6(dst), 64, i)
        }));
    let size: usize = std::env::var("FPD_MEMORY_BATCH")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000);
    let mut batch = Vec::with_capacity(size);
    for o in all {
        batch.push((Op::Add, o));
        if batch.len() == size {
            let errors = sync.apply(&Message::Batch(std::mem::take(&mut batch)));
            assert!(errors.is_empty(), "{errors:?}");
        }
    }
    if !batch.is_empty() {
        assert!(sync.apply(&Message::Batch(batch)).is_empty());
    }
    assert!(sync.apply(&Message::SyncEnd { generation: 1 }).is_empty());
    let elapsed = started.elapsed();
    let after = rss(fpd.pid());
    let routes = u64::from(V4 + V6);
    println!(
        "fpd: {routes} routes in {:.2} s; VmRSS {:.1} MiB -> {:.1} MiB: {:.1} bytes/route ({:.1} counting the whole process)",
        elapsed.as_secs_f64(),
        before as f64 / 1048576.0,
        after as f64 / 1048576.0,
        (after - before) as f64 / routes as f64,
        after as f64 / routes as f64,
    );
    assert!((after - before) / routes <= 64, "over 64 bytes a route");

    // A dump streams: it does not grow fpd.
    let started = std::time::Instant::now();
    let mut query = fpc::QueryClient::connect(
        &fpc::Endpoint::Unix(fpd.socket.clone()),
        "fpd-memory",
        std::time::Duration::from_secs(60),
    )
    .unwrap();
    assert_eq!(query.dump().unwrap().len(), routes as usize);
    let dumped = rss(fpd.pid());
    println!(
        "fpd: dump in {:.2} s; VmRSS after it {:.1} MiB",
        started.elapsed().as_secs_f64(),
        dumped as f64 / 1048576.0
    );
    assert!(
        (dumped - before) / routes <= 64,
        "over 64 bytes a route after a dump"
    );
}
