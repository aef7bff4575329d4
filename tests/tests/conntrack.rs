//! Conntrack entries from the real kernel: made by `conntrack -I`/`-D` and
//! by real traffic between two namespaces routed through the synced one
//! (an nftables rule there makes conntrack track its packets); and the
//! disable flags.

use std::process::Command;
use std::time::Duration;

use fastpath::fpc::{Object, QueryClient};
use fpsync_tests::{sh, Netns, Setup};

const SYNC: Duration = Duration::from_secs(2);

fn conntracks(s: &Setup) -> Vec<fastpath::fpc::Conntrack> {
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
    s.assert_in_sync(SYNC);
    let cts = conntracks(&s);
    assert_eq!(cts.len(), 1, "{cts:?}");
    assert_eq!((cts[0].orig.sport, cts[0].orig.dport), (1000, 80));
    assert_eq!(cts[0].reply.src, cts[0].orig.dst);
    // A mark change is an update event.
    conntrack(&s.ns, "-U", &["-p", "tcp", "-s", "10.0.0.1", "--mark", "5"]);
    s.assert_in_sync(SYNC);
    assert_eq!(conntracks(&s)[0].mark, 5);
    conntrack(&s.ns, "-D", &["-p", "tcp", "-s", "10.0.0.1"]);
    s.assert_in_sync(SYNC);
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
    s.assert_in_sync(SYNC);
    let cts = conntracks(&s);
    assert!(
        cts.iter()
            .any(|c| c.orig.proto == 1 && c.orig.src.to_string() == "10.10.1.2"),
        "{cts:?}"
    );
    // Flushed entries are destroyed, with events.
    in_ns(&s.ns, &["conntrack", "-F"]);
    s.assert_in_sync(SYNC);
    assert!(conntracks(&s).is_empty());
}

#[test]
fn disable_flags_keep_conntrack_out() {
    for flag in ["--disable-sync-conntrack", "--disable-sync-netfilter"] {
        let s = Setup::with_args("ct-off", &[flag]);
        conntrack(&s.ns, "-I", &ENTRY);
        s.assert_in_sync(SYNC);
        std::thread::sleep(Duration::from_millis(200));
        assert!(conntracks(&s).is_empty(), "{flag}");
        assert_eq!(s.fp_counter("conntracks"), 0);
    }
}
