//! Conntrack entries from the real kernel: made by `conntrack -I`/`-D` and
//! by real traffic between two namespaces routed through the synced one
//! (an nftables rule there makes conntrack track its packets); timeouts as
//! announced, across restarts; NAT sequence adjustments of an FTP control
//! connection through the kernel's FTP NAT helper; and the disable flags.

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::process::Command;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use fpc::{Object, QueryClient, SeqAdj};
use fpsync_tests::{sh, wait_until, Netns, Setup};

const SYNC: Duration = Duration::from_secs(2);

fn conntracks(s: &Setup) -> Vec<fpc::Conntrack> {
    QueryClient::connect(&s.endpoint, "test", Duration::from_secs(5))
        .and_then(|mut c| c.dump())
        .unwrap()
        .into_iter()
        .filter_map(|o| match o {
            Object::Conntrack(ct) => Some(ct),
            _ => None,
        })
        .collect()
}

fn in_ns(ns: &Netns, args: &[&str]) -> String {
    let mut full = vec!["ip", "netns", "exec", &ns.name];
    full.extend_from_slice(args);
    sh(&full)
}

const ENTRY: [&str; 16] = [
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
    "100",
    "-u",
    "SEEN_REPLY",
];

fn conntrack(ns: &Netns, verb: &str, extra: &[&str]) {
    let mut args = vec!["conntrack", verb];
    args.extend_from_slice(extra);
    in_ns(ns, &args);
}

#[test]
fn conntrack_tool_insert_update_delete() {
    let s = Setup::new("ct-tool");
    conntrack(&s.ns, "-I", &ENTRY);
    s.assert_equal_to_linux(SYNC);
    let cts = conntracks(&s);
    assert_eq!(cts.len(), 1, "{cts:?}");
    assert_eq!((cts[0].orig.sport, cts[0].orig.dport), (1000, 80));
    assert_eq!(cts[0].reply.src, cts[0].orig.dst);
    // A mark change is an update event.
    conntrack(&s.ns, "-U", &["-p", "tcp", "-s", "10.0.0.1", "--mark", "5"]);
    s.assert_equal_to_linux(SYNC);
    assert_eq!(conntracks(&s)[0].mark, 5);
    conntrack(&s.ns, "-D", &["-p", "tcp", "-s", "10.0.0.1"]);
    s.assert_equal_to_linux(SYNC);
    assert!(conntracks(&s).is_empty());
    let netlink = s.console("show netlink");
    assert!(netlink.contains("IPCTNL_MSG_CT_DELETE"), "{netlink}");
}

#[test]
fn traffic_between_two_namespaces_through_the_synced_one() {
    let s = Setup::new("ct-traffic");
    let (a, b) = (Netns::new("ct-a"), Netns::new("ct-b"));
    for (peer, net) in [(&a, "10.10.1"), (&b, "10.10.2")] {
        let host = format!("r{}", &net[6..]);
        s.ns.ip(&[
            "link", "add", &host, "type", "veth", "peer", "name", "eth0", "netns", &peer.name,
        ]);
        s.ns.ip(&["addr", "add", &format!("{net}.1/24"), "dev", &host]);
        s.ns.ip(&["link", "set", &host, "up"]);
        peer.ip(&["addr", "add", &format!("{net}.2/24"), "dev", "eth0"]);
        peer.ip(&["link", "set", "eth0", "up"]);
        peer.ip(&["route", "add", "default", "via", &format!("{net}.1")]);
    }
    in_ns(&s.ns, &["sysctl", "-qw", "net.ipv4.ip_forward=1"]);
    // A rule that needs conntrack makes the kernel track this namespace.
    in_ns(
        &s.ns,
        &[
            "nft",
            "add table inet t; add chain inet t fw { type filter hook forward priority 0; }; add rule inet t fw ct state new,established accept",
        ],
    );
    let ping = Command::new("ip")
        .args([
            "netns", "exec", &a.name, "ping", "-c", "2", "-i", "0.2", "-W", "1",
        ])
        .arg("10.10.2.2")
        .output()
        .unwrap();
    assert!(ping.status.success(), "{ping:?}");
    s.assert_equal_to_linux(SYNC);
    let cts = conntracks(&s);
    assert!(
        cts.iter()
            .any(|c| c.orig.proto == 1 && c.orig.src.to_string() == "10.10.1.2"),
        "{cts:?}"
    );
    // Flushed entries are destroyed, with events.
    in_ns(&s.ns, &["conntrack", "-F"]);
    s.assert_equal_to_linux(SYNC);
    assert!(conntracks(&s).is_empty());
}

#[test]
fn disable_flags_keep_conntrack_out() {
    for flag in ["--disable-sync-conntrack", "--disable-sync-netfilter"] {
        let s = Setup::with_args("ct-off", &[flag]);
        conntrack(&s.ns, "-I", &ENTRY);
        s.assert_equal_to_linux(SYNC);
        std::thread::sleep(Duration::from_millis(200));
        assert!(conntracks(&s).is_empty(), "{flag}");
        assert_eq!(s.fp_counter("conntracks"), 0);
    }
}

/// The fast path's entry whose original source port is `sport`.
fn entry_by_sport(s: &Setup, sport: u16) -> Option<fpc::Conntrack> {
    conntracks(s).into_iter().find(|c| c.orig.sport == sport)
}

const UDP: [&str; 10] = [
    "-p", "udp", "-s", "10.0.0.1", "-d", "10.0.0.2", "--sport", "1000", "--dport", "53",
];

#[test]
fn the_timeout_is_synced_as_announced_and_survives_restarts() {
    let mut s = Setup::new("ct-timeout");
    conntrack(&s.ns, "-I", &[&UDP[..], &["--timeout", "120"]].concat());
    let holds = |s: &Setup, t: u32| {
        wait_until(SYNC, || {
            entry_by_sport(s, 1000).is_some_and(|c| c.timeout == t)
        })
    };
    assert!(holds(&s, 120), "{:?}", conntracks(&s));
    // A timeout-only change is announced (an update event).
    conntrack(&s.ns, "-U", &[&UDP[..4], &["--timeout", "300"]].concat());
    let changed = Instant::now();
    assert!(holds(&s, 300), "{:?}", conntracks(&s));
    // Linux counts down without telling; the check does not call that a
    // difference.
    std::thread::sleep(Duration::from_millis(1200));
    s.assert_equal_to_linux(SYNC);
    // fpd killed: the replay carries the value cmgrd was told.
    s.fpd.as_mut().unwrap().kill();
    s.start_fpd();
    assert!(holds(&s, 300), "{:?}", conntracks(&s));
    s.assert_equal_to_linux(SYNC);
    // cmgrd restarted: its dump carries what Linux says now, counted down.
    std::thread::sleep(Duration::from_secs(2).saturating_sub(changed.elapsed()));
    s.cmgrd.as_mut().unwrap().kill();
    s.start_cmgrd();
    assert!(
        wait_until(Duration::from_secs(5), || {
            entry_by_sport(&s, 1000).is_some_and(|c| (200..300).contains(&c.timeout))
        }),
        "{:?}",
        conntracks(&s)
    );
    s.assert_equal_to_linux(SYNC);
}

/// A full resync (here after an overrun) finds every entry with less of
/// its timeout left than announced: that is no change, so the blades keep
/// the announced timeout and get no op for it.
#[test]
fn a_resync_keeps_the_announced_timeouts() {
    let s = Setup::with_args("ct-resync", &["-l", "256K"]);
    conntrack(&s.ns, "-I", &[&UDP[..], &["--timeout", "120"]].concat());
    assert!(
        wait_until(SYNC, || entry_by_sport(&s, 1000)
            .is_some_and(|c| c.timeout == 120)),
        "{:?}",
        conntracks(&s)
    );
    std::thread::sleep(Duration::from_millis(1500)); // Linux counts down
    s.ns.batch("link add v0 type veth peer name v1\nlink set v0 up\naddr add 10.9.0.1/16 dev v0\n");
    s.cmgrd.as_ref().unwrap().signal(libc::SIGSTOP);
    let routes: String = (0..20_000u32)
        .map(|i| format!("route add 100.{}.{}.0/24 via 10.9.0.2\n", i / 256, i % 256))
        .collect();
    s.ns.batch(&routes);
    s.cmgrd.as_ref().unwrap().signal(libc::SIGCONT);
    s.assert_equal_to_linux(Duration::from_secs(30));
    let sync = s.console("show sync");
    assert!(
        !sync.contains("- resyncs: 0\n"),
        "no resync happened: {sync}"
    );
    let left: u32 = in_ns(&s.ns, &["conntrack", "-L", "-p", "udp", "--sport", "1000"])
        .split_whitespace()
        .nth(2)
        .and_then(|t| t.parse().ok())
        .expect("the entry in Linux");
    assert!(left < 120, "Linux counted down: {left}");
    assert_eq!(entry_by_sport(&s, 1000).map(|c| c.timeout), Some(120));
}

/// Runs `f` on a new thread inside the namespace `ns`.
fn in_netns<T: Send + 'static>(
    ns: &Netns,
    f: impl FnOnce() -> T + Send + 'static,
) -> std::thread::JoinHandle<T> {
    let name = ns.name.clone();
    std::thread::spawn(move || {
        instance::netns::enter(&name).expect("setns");
        f()
    })
}

/// Sends one FTP command line and reads the one-line answer.
fn command(conn: &mut BufReader<TcpStream>, line: &str) {
    conn.get_mut().write_all(line.as_bytes()).unwrap();
    let mut answer = String::new();
    conn.read_line(&mut answer).unwrap();
    assert!(answer.starts_with("200"), "{answer:?}");
}

#[test]
fn ftp_through_nat_syncs_its_sequence_adjustments() {
    let mut s = Setup::new("ct-ftp");
    let (a, b) = (Netns::new("ct-fa"), Netns::new("ct-fb"));
    for (peer, net, dev) in [(&a, "10.10.1", "ra"), (&b, "10.10.2", "rb")] {
        s.ns.ip(&[
            "link", "add", dev, "type", "veth", "peer", "name", "eth0", "netns", &peer.name,
        ]);
        s.ns.ip(&["addr", "add", &format!("{net}.1/24"), "dev", dev]);
        s.ns.ip(&["link", "set", dev, "up"]);
        peer.ip(&["addr", "add", &format!("{net}.2/24"), "dev", "eth0"]);
        peer.ip(&["link", "set", "eth0", "up"]);
        peer.ip(&["route", "add", "default", "via", &format!("{net}.1")]);
    }
    // SNAT to an address two characters longer than the client's: the
    // NAT helper rewrites "PORT 10,10,1,2,..." to "PORT 10,10,2,100,...",
    // and the connection's sequence numbers shift by two from there.
    s.ns.ip(&["addr", "add", "10.10.2.100/24", "dev", "rb"]);
    in_ns(&s.ns, &["sysctl", "-qw", "net.ipv4.ip_forward=1"]);
    in_ns(
        &s.ns,
        &[
            "nft",
            "add table ip ftp; \
             add ct helper ip ftp std { type \"ftp\" protocol tcp; }; \
             add chain ip ftp pre { type filter hook prerouting priority 0; }; \
             add rule ip ftp pre tcp dport 21 ct helper set \"std\"; \
             add chain ip ftp post { type nat hook postrouting priority 100; }; \
             add rule ip ftp post oifname \"rb\" snat to 10.10.2.100",
        ],
    );
    let (ready_tx, ready_rx) = mpsc::channel();
    let server = in_netns(&b, move || {
        let listener = TcpListener::bind("0.0.0.0:21").unwrap();
        ready_tx.send(()).unwrap();
        let (conn, _) = listener.accept().unwrap();
        let mut conn = BufReader::new(conn);
        conn.get_mut().write_all(b"220 ready\r\n").unwrap();
        let mut seen = Vec::new();
        loop {
            let mut line = String::new();
            if conn.read_line(&mut line).unwrap_or(0) == 0 {
                return seen;
            }
            conn.get_mut().write_all(b"200 ok\r\n").unwrap();
            seen.push(line);
        }
    });
    ready_rx.recv().unwrap();
    let (go_tx, go_rx) = mpsc::channel::<()>();
    let client = in_netns(&a, move || {
        let mut conn = BufReader::new(TcpStream::connect("10.10.2.2:21").unwrap());
        let mut banner = String::new();
        conn.read_line(&mut banner).unwrap();
        // The helper parses a command only after a line it has seen end.
        command(&mut conn, "USER test\r\n");
        command(&mut conn, "PORT 10,10,1,2,200,10\r\n");
        let _ = go_rx.recv();
        command(&mut conn, "PORT 10,10,1,2,200,11\r\n");
        let _ = go_rx.recv(); // stays open until told
    });
    let adjusted = |s: &Setup, after: i32| {
        wait_until(Duration::from_secs(5), || {
            conntracks(s).iter().any(|c| {
                c.orig.dport == 21
                    && matches!(c.seq_adj[0], Some(SeqAdj { offset_after, .. }) if offset_after == after)
            })
        })
    };
    assert!(adjusted(&s, 2), "{:?}", conntracks(&s));
    s.assert_equal_to_linux(SYNC);
    // The second rewrite moves the offsets without any event: the poll
    // of the adjusted entries finds it.
    go_tx.send(()).unwrap();
    assert!(adjusted(&s, 4), "{:?}", conntracks(&s));
    s.assert_equal_to_linux(SYNC);
    // The replay to a restarted fpd and a restarted cmgrd's dump carry
    // them.
    s.fpd.as_mut().unwrap().kill();
    s.start_fpd();
    assert!(adjusted(&s, 4), "{:?}", conntracks(&s));
    let syncs = s.fp_counter("syncs");
    s.cmgrd.as_mut().unwrap().kill();
    s.start_cmgrd();
    assert!(wait_until(Duration::from_secs(5), || s.fp_counter("syncs") > syncs));
    s.assert_equal_to_linux(SYNC);
    assert!(adjusted(&s, 4), "{:?}", conntracks(&s));
    drop(go_tx);
    client.join().unwrap();
    let seen = server.join().unwrap();
    assert_eq!(
        seen[1], "PORT 10,10,2,100,200,10\r\n",
        "the helper rewrote it"
    );
}
