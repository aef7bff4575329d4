//! Runs the real fpd and feeds it bad input on side connections: each is
//! closed, and the sync session and the tables are untouched.

mod common;

use std::net::IpAddr;
use std::time::{Duration, Instant};

use common::{fpd_command, logs_to_stderr, Client, Fpd, TempDir};
use fpc::{
    rtn, Addr, Endpoint, ErrorCode, Hello, Hop, Link, LinkInfo, Message, NextHops, Object,
    ObjectError, Op, QueryClient, Role, Route, MAGIC, MAX_BODY, VERSION,
};
use rand::{Rng, SeedableRng};

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
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

fn route(prefix: &str, gw: &str) -> Object {
    let (dst, len) = prefix.split_once('/').unwrap();
    Object::Route(Route {
        table: 254,
        dst: ip(dst),
        dst_len: len.parse().unwrap(),
        tos: 0,
        priority: 0,
        rtype: rtn::UNICAST,
        protocol: 3,
        scope: 0,
        prefsrc: None,
        mtu: 0,
        nexthops: NextHops::Single(Hop {
            gateway: Some(ip(gw)),
            oif: 2,
            weight: 1,
            flags: 0,
        }),
    })
}

fn batch(objects: &[Object]) -> Message {
    Message::Batch(objects.iter().map(|o| (Op::Add, o.clone())).collect())
}

fn sorted(mut v: Vec<Object>) -> Vec<Object> {
    v.sort_by_key(|o| o.key());
    v
}

fn query(fpd: &Fpd) -> QueryClient {
    QueryClient::connect(
        &Endpoint::Unix(fpd.socket.clone()),
        "fpsync-test",
        Duration::from_secs(20),
    )
    .expect("query connection")
}

fn counter(counters: &[(String, u64)], name: &str) -> u64 {
    counters
        .iter()
        .find(|(k, _)| k == name)
        .unwrap_or_else(|| panic!("no counter {name} in {counters:?}"))
        .1
}

fn hello_frame(version: u16, role: Role) -> Vec<u8> {
    let mut frame = Vec::new();
    Message::Hello(Hello {
        version,
        role,
        instance: 3,
        blade: 7,
        capabilities: 0,
        election_id: 0,
        name: "bad".into(),
    })
    .emit(1, &mut frame);
    frame
}

fn header(kind: u8, body_len: u32) -> Vec<u8> {
    let mut h = Vec::new();
    h.extend_from_slice(&MAGIC.to_be_bytes());
    h.push(kind);
    h.push(0);
    h.extend_from_slice(&body_len.to_be_bytes());
    h.extend_from_slice(&1u64.to_be_bytes());
    h
}

/// Opens a side connection, sends `bytes` (then half-closes if `shut`),
/// and checks that fpd closes it, with an Error frame of `code` if given.
fn check_closed(
    fpd: &Fpd,
    what: &str,
    bytes: &[u8],
    shut: bool,
    code: Option<ErrorCode>,
) -> Option<String> {
    let mut c = Client::connect(&fpd.socket).unwrap();
    // fpd may close before reading everything: a failed write is fine.
    let _ = c.send_raw(bytes);
    if shut {
        c.stream.shutdown(std::net::Shutdown::Write).unwrap();
    }
    let started = Instant::now();
    let error = c.expect_closed();
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "{what}: closed only after the Hello timeout"
    );
    match code {
        Some(code) => {
            let (got, message) = error.unwrap_or_else(|| panic!("{what}: no Error frame"));
            assert_eq!(got, code as u16, "{what}: {message}");
            Some(message)
        }
        None => error.map(|(_, m)| m),
    }
}

#[test]
fn bad_input_closes_only_that_connection() {
    let fpd = Fpd::start("bad-input");

    let mut sync = Client::connect(&fpd.socket).unwrap();
    let reply = sync.hello(Role::Sync, VERSION);
    assert_eq!(
        (reply.role, reply.blade, reply.version),
        (Role::Sync, 7, VERSION)
    );
    assert_eq!(reply.name, "fpd7");
    let mut added = vec![
        link(2, "eth0"),
        link(3, "eth1"),
        Object::Addr(Addr {
            ifindex: 2,
            addr: ip("192.0.2.7"),
            peer: None,
            prefix_len: 24,
            scope: 0,
            flags: 0x80,
        }),
        route("0.0.0.0/0", "192.0.2.1"),
        route("10.0.0.0/8", "192.0.2.2"),
        route("2001:db8::/32", "fe80::1"),
    ];
    assert_eq!(sync.apply(&Message::SyncBegin { generation: 1 }), vec![]);
    assert_eq!(sync.apply(&batch(&added)), vec![]);
    // Rejected objects are reported by index; the others are applied.
    let mixed = Message::Batch(vec![
        (Op::Add, route("10.1.2.3/8", "192.0.2.2")),
        (Op::Add, route("198.51.100.0/24", "192.0.2.3")),
        (Op::Delete, route("203.0.113.0/24", "192.0.2.3")),
    ]);
    assert_eq!(
        sync.apply(&mixed),
        vec![(0, ObjectError::Invalid), (2, ObjectError::NotFound)]
    );
    added.push(route("198.51.100.0/24", "192.0.2.3"));
    assert_eq!(sync.apply(&Message::SyncEnd { generation: 1 }), vec![]);

    let mut rng = rand::rngs::StdRng::seed_from_u64(0xfb5c);
    let mut random = vec![0u8; 4096];
    rng.fill(&mut random[..]);
    random[0] = 0; // not the magic
    check_closed(
        &fpd,
        "random bytes",
        &random,
        false,
        Some(ErrorCode::Malformed),
    );

    let hello = hello_frame(VERSION, Role::Query);
    check_closed(
        &fpd,
        "truncated header",
        &hello[..10],
        true,
        Some(ErrorCode::Malformed),
    );
    check_closed(
        &fpd,
        "truncated body",
        &hello[..hello.len() - 3],
        true,
        Some(ErrorCode::Malformed),
    );

    let message = check_closed(
        &fpd,
        "wrong version",
        &hello_frame(VERSION + 1, Role::Sync),
        false,
        Some(ErrorCode::VersionMismatch),
    )
    .unwrap();
    assert!(
        message.contains(&format!("version {}", VERSION + 1))
            && message.contains(&format!("version {VERSION}")),
        "the error names both versions: {message}"
    );
    // A Hello of another version whose body does not parse as ours.
    let mut other_layout = header(1, 5);
    other_layout.extend_from_slice(&(VERSION + 1).to_be_bytes());
    other_layout.extend_from_slice(&[9, 9, 9]);
    check_closed(
        &fpd,
        "other hello layout",
        &other_layout,
        false,
        Some(ErrorCode::VersionMismatch),
    );

    let mut before_hello = Vec::new();
    Message::SyncBegin { generation: 9 }.emit(1, &mut before_hello);
    check_closed(
        &fpd,
        "frame before Hello",
        &before_hello,
        false,
        Some(ErrorCode::Unexpected),
    );

    check_closed(
        &fpd,
        "oversize length",
        &header(4, MAX_BODY as u32 + 1),
        false,
        Some(ErrorCode::Malformed),
    );

    let mut bad_magic = hello.clone();
    bad_magic[0] ^= 0xff;
    check_closed(
        &fpd,
        "bad magic",
        &bad_magic,
        false,
        Some(ErrorCode::Malformed),
    );

    let mut bad_kind = header(200, 0);
    bad_kind.extend_from_slice(&[]);
    check_closed(
        &fpd,
        "unknown kind",
        &bad_kind,
        false,
        Some(ErrorCode::Malformed),
    );

    // A Batch with a trailing garbage byte after a valid Hello: the whole
    // frame is refused, nothing in it applied.
    let mut garbage = hello_frame(VERSION, Role::Query);
    let mut b = Vec::new();
    batch(&[route("192.168.0.0/16", "192.0.2.9")]).emit(2, &mut b);
    b.push(0);
    let len = (b.len() - 16) as u32;
    b[4..8].copy_from_slice(&len.to_be_bytes());
    garbage.extend_from_slice(&b);
    let mut c = Client::connect(&fpd.socket).unwrap();
    c.send_raw(&garbage).unwrap();
    assert!(matches!(c.expect().1, Message::Hello(_)));
    assert_eq!(
        c.expect_closed().map(|(code, _)| code),
        Some(ErrorCode::Malformed as u16)
    );

    // A query peer may not sync.
    let mut q = Client::connect(&fpd.socket).unwrap();
    q.hello(Role::Query, VERSION);
    q.send(&batch(&[route("192.168.0.0/16", "192.0.2.9")]));
    assert_eq!(
        q.expect_closed().map(|(code, _)| code),
        Some(ErrorCode::Unexpected as u16)
    );

    // The sync session goes on.
    let late = route("203.0.113.0/24", "192.0.2.4");
    assert_eq!(sync.apply(&batch(std::slice::from_ref(&late))), vec![]);
    added.push(late);

    let mut query = query(&fpd);
    assert_eq!(query.peer.blade, 7);
    assert_eq!(sorted(query.dump().unwrap()), sorted(added.clone()));
    let counters = query.counters().unwrap();
    assert_eq!(counter(&counters, "bad_frames"), 9, "{counters:?}");
    assert_eq!(counter(&counters, "version_mismatches"), 2);
    assert_eq!(counter(&counters, "sync_connected"), 1);
    assert_eq!(counter(&counters, "rejected"), 2);
    assert_eq!(counter(&counters, "routes4"), 4);
    assert_eq!(counter(&counters, "routes6"), 1);
    assert_eq!(counter(&counters, "links"), 2);
    assert_eq!(counter(&counters, "syncs"), 1);
    assert_eq!(
        query.route_get(254, ip("10.1.1.1")).unwrap(),
        Some(route("10.0.0.0/8", "192.0.2.2"))
    );
    assert_eq!(query.route_get(254, ip("2001:db9::1")).unwrap(), None);

    if logs_to_stderr() {
        let log = fpd.log();
        assert!(
            log.lines().any(|l| l.contains("WARN")
                && l.contains("peer=unix pid")
                && l.contains("bad frame header")),
            "a warning names the peer and the reason:\n{log}"
        );
    }
}

#[test]
fn newer_sync_session_takes_over() {
    let fpd = Fpd::start("takeover");
    let mut old = Client::connect(&fpd.socket).unwrap();
    old.hello(Role::Sync, VERSION);
    assert_eq!(old.apply(&batch(&[link(2, "eth0")])), vec![]);

    let mut new = Client::connect(&fpd.socket).unwrap();
    new.hello(Role::Sync, VERSION);
    let (code, _) = old.expect_closed().expect("an Error frame");
    assert_eq!(code, ErrorCode::Replaced as u16);

    // The new session resyncs: what it does not send goes.
    assert_eq!(new.apply(&Message::SyncBegin { generation: 2 }), vec![]);
    assert_eq!(new.apply(&batch(&[link(3, "eth1")])), vec![]);
    assert_eq!(new.apply(&Message::SyncEnd { generation: 2 }), vec![]);
    let mut q = query(&fpd);
    assert_eq!(q.dump().unwrap(), vec![link(3, "eth1")]);
    let counters = q.counters().unwrap();
    assert_eq!(counter(&counters, "swept"), 1);
    assert_eq!(counter(&counters, "sync_connected"), 1);
    drop(new);
    let deadline = Instant::now() + Duration::from_secs(5);
    while counter(&q.counters().unwrap(), "sync_connected") != 0 {
        assert!(Instant::now() < deadline, "sync_connected stays 1");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn silent_peer_is_dropped_after_the_hello_timeout() {
    let fpd = Fpd::start("hello-timeout");
    let mut c = Client::connect(&fpd.socket).unwrap();
    let started = Instant::now();
    let (code, _) = c.expect_closed().expect("an Error frame");
    assert_eq!(code, ErrorCode::Unexpected as u16);
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_secs(4) && waited < Duration::from_secs(10),
        "{waited:?}"
    );
}

#[test]
fn large_dump_is_split_into_frames() {
    let fpd = Fpd::start("dump");
    let mut sync = Client::connect(&fpd.socket).unwrap();
    sync.hello(Role::Sync, VERSION);
    let routes: Vec<Object> = (0..20_000u32)
        .map(|i| route(&format!("10.{}.{}.0/24", i / 256, i % 256), "192.0.2.1"))
        .collect();
    assert_eq!(sync.apply(&batch(&routes)), vec![]);
    let mut q = Client::connect(&fpd.socket).unwrap();
    q.hello(Role::Query, VERSION);
    let seq = q.send(&Message::DumpRequest);
    let mut frames = 0;
    let mut got = Vec::new();
    loop {
        let mut raw = [0u8; 16];
        std::io::Read::read_exact(&mut q.stream, &mut raw).unwrap();
        let h = fpc::parse_header(&raw).unwrap();
        assert!(
            16 + h.body_len <= 64 * 1024 + 64,
            "a frame of {} bytes",
            h.body_len
        );
        assert_eq!(h.seq, seq);
        let mut body = vec![0; h.body_len];
        std::io::Read::read_exact(&mut q.stream, &mut body).unwrap();
        match Message::parse(&h, &body).unwrap() {
            Message::Batch(ops) => {
                frames += 1;
                got.extend(ops.into_iter().map(|(op, o)| {
                    assert_eq!(op, Op::Add);
                    o
                }));
            }
            Message::DumpEnd { count } => {
                assert_eq!(count, routes.len() as u64);
                break;
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    assert!(frames > 5, "{frames} frames");
    assert_eq!(sorted(got), sorted(routes));
}

#[test]
fn sigterm_removes_the_socket() {
    let mut fpd = Fpd::start("sigterm");
    assert!(fpd.socket.exists());
    let status = fpd.terminate();
    assert!(status.success(), "{status:?}");
    assert!(!fpd.socket.exists(), "the socket file is removed");
}

#[test]
fn stale_socket_is_replaced_and_live_one_kept() {
    let dir = TempDir::new("stale");
    let path = dir.0.join("fpd.sock");
    // A socket file nobody listens on any more.
    drop(std::os::unix::net::UnixListener::bind(&path).unwrap());
    assert!(path.exists());
    let ep = format!("unix:{}", path.display());
    let mut child = fpd_command(&["--blade", "1", "--listen", &ep])
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut c = loop {
        if let Ok(c) = Client::connect(&path) {
            break c;
        }
        assert!(
            Instant::now() < deadline,
            "fpd did not replace the stale socket"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    c.hello(Role::Query, VERSION);
    // A second fpd on the same live socket refuses to start.
    let out = fpd_command(&["--blade", "2", "--listen", &ep])
        .output()
        .unwrap();
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    let last = stderr.lines().last().unwrap_or_default();
    assert!(
        last.starts_with("fpd: cannot listen on unix:") && last.contains("another process"),
        "{stderr}"
    );
}

#[test]
fn start_errors_exit_1_and_bad_command_lines_exit_2() {
    let dir = TempDir::new("errors");
    let file = dir.0.join("file");
    std::fs::write(&file, b"").unwrap();
    // The socket's directory would have to be a regular file.
    let ep = format!("unix:{}/fpd.sock", file.display());
    let out = fpd_command(&["--blade", "1", "--listen", &ep])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    let last = stderr.lines().last().unwrap_or_default();
    assert!(
        last.starts_with(&format!("fpd: cannot listen on {ep}: ")),
        "{stderr}"
    );

    for args in [
        &[][..],
        &["--blade", "x"],
        &["--blade", "1", "--listen", "nowhere"],
        &["--bogus"],
    ] {
        let out = fpd_command(args).output().unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?}");
    }
}

#[test]
fn listens_on_tcp_and_unix_at_once() {
    let dir = TempDir::new("tcp");
    let path = dir.0.join("fpd.sock");
    // A free port, most likely still free when fpd binds it.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let unix = format!("unix:{}", path.display());
    let tcp = format!("tcp:127.0.0.1:{port}");
    // Plain TCP needs saying so, and a loopback address.
    let refused = fpd_command(&["--blade", "4", "--listen", &tcp])
        .output()
        .unwrap();
    assert!(!refused.status.success());
    let want = format!("fpd: refusing to listen on {tcp} without TLS: give --tls-cert, --tls-key and --tls-ca (plain TCP only with --allow-plain-tcp, on a loopback address)\n");
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(stderr.ends_with(&want), "{stderr}");
    let open = format!("tcp:0.0.0.0:{port}");
    let refused = fpd_command(&["--blade", "4", "--allow-plain-tcp", "--listen", &open])
        .output()
        .unwrap();
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("without TLS"));
    fpc::install_client(fpc::ClientTcp {
        tls: None,
        plain_loopback: true,
    });
    let mut child = fpd_command(&[
        "--blade",
        "4",
        "--allow-plain-tcp",
        "--listen",
        &unix,
        "--listen",
        &tcp,
    ])
    .stderr(std::process::Stdio::null())
    .spawn()
    .unwrap();
    let guard = scopeguard(|| {
        let _ = child.kill();
        let _ = child.wait();
    });
    let deadline = Instant::now() + Duration::from_secs(20);
    let endpoint: Endpoint = tcp.parse().unwrap();
    let mut q = loop {
        match QueryClient::connect(&endpoint, "fpsync-test", Duration::from_secs(20)) {
            Ok(q) => break q,
            Err(e) => {
                assert!(Instant::now() < deadline, "no TCP listener: {e}");
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    };
    assert_eq!(q.peer.blade, 4);
    assert_eq!(q.peer.name, "fpd4");
    let mut sync = Client::connect(&path).unwrap();
    sync.hello_to(Role::Sync, VERSION, 4);
    assert_eq!(sync.apply(&batch(&[link(2, "eth0")])), vec![]);
    assert_eq!(q.dump().unwrap(), vec![link(2, "eth0")]);
    // A peer that says goodbye with an Error frame is not bad input.
    sync.send(&Message::Error {
        code: ErrorCode::Unexpected as u16,
        message: "bye".into(),
    });
    assert_eq!(sync.expect_closed(), None);
    assert_eq!(counter(&q.counters().unwrap(), "bad_frames"), 0);
    drop(guard);
}

/// Runs `f` when dropped, even on a failed assertion.
fn scopeguard<F: FnMut()>(f: F) -> impl Drop {
    struct Guard<F: FnMut()>(F);
    impl<F: FnMut()> Drop for Guard<F> {
        fn drop(&mut self) {
            (self.0)();
        }
    }
    Guard(f)
}
