//! cmgrd as a user runs it: every option of the seed, observed through
//! its effect (the fast path's tables, the console, logs, sockets).

use std::process::Command;
use std::time::Duration;

use fpc::{Object, QueryClient};
use fpsync_tests::{bin, console, sh, unique, wait_until, Netns, PrivateJournal, Setup};

const SYNC: Duration = Duration::from_secs(2);

fn cmgrd(args: &[&str]) -> std::process::Output {
    Command::new(bin("cmgrd")).args(args).output().unwrap()
}

fn fp_objects(s: &Setup) -> Vec<Object> {
    QueryClient::connect(&s.endpoint, "test", Duration::from_secs(5))
        .and_then(|mut c| c.dump())
        .unwrap()
}

#[test]
fn help_lists_every_option() {
    let out = cmgrd(&["-h"]);
    assert!(out.status.success());
    let help = String::from_utf8_lossy(&out.stdout);
    for opt in [
        "-I",
        "-S, --sync-mask",
        "-A, --sync-bpf-all",
        "-R, --sync-ipsec-replay",
        "-d",
        "-F",
        "-b",
        "-l",
        "-o",
        "-h",
        "--netns",
        "--blade",
    ] {
        assert!(help.contains(opt), "{opt} missing from:\n{help}");
    }
    for f in instance::features::FEATURES.iter().filter_map(|f| f.flag) {
        assert!(help.contains(&format!("--disable-sync-{f}")), "{f}");
    }
}

#[test]
fn compile_options_print_and_exit() {
    let out = cmgrd(&["-o"]);
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("FPC protocol version") && text.contains("0x1ffff"),
        "{text}"
    );
}

#[test]
fn bad_command_lines_exit_2_naming_what_was_wrong() {
    for (args, word) in [
        (&["--no-such-option"][..], "--no-such-option"),
        (&["-S", "0x100000"][..], "sync mask"),
        (&["-S", "lots"][..], "sync mask"),
        (&["-l", "64X"][..], "bad size"),
        (&["-b", "0"][..], "bad size"),
        (&["-I", "three"][..], "-I"),
        (&["--blade", "2=udp:1.2.3.4"][..], "bad blade"),
    ] {
        let out = cmgrd(args);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(
            err.lines().next().map(|l| l.contains(word)),
            Some(true),
            "{args:?}: {err}"
        );
    }
}

#[test]
fn disable_sync_ipv6_keeps_ipv6_out() {
    let s = Setup::with_args("noipv6", &["--disable-sync-ipv6"]);
    s.ns.ip(&["link", "add", "v0", "type", "veth", "peer", "name", "v1"]);
    s.ns.ip(&["link", "set", "v0", "up"]);
    s.ns.ip(&["addr", "add", "10.0.0.1/24", "dev", "v0"]);
    s.ns.ip(&["-6", "addr", "add", "2001:db8::1/64", "dev", "v0", "nodad"]);
    s.ns.ip(&[
        "-6",
        "route",
        "add",
        "2001:db8:5::/64",
        "via",
        "2001:db8::2",
    ]);
    s.ns.ip(&["route", "add", "192.0.2.0/24", "via", "10.0.0.2"]);
    s.assert_in_sync(SYNC);
    let objects = fp_objects(&s);
    assert!(objects.iter().any(|o| matches!(o, Object::Route(r) if r.dst.is_ipv4() && r.dst_len == 24 && r.table == 254 && r.dst.to_string() == "192.0.2.0")));
    assert!(
        !objects.iter().any(|o| match o {
            Object::Route(r) => r.dst.is_ipv6(),
            Object::Addr(a) => a.addr.is_ipv6(),
            Object::Neigh(n) => n.dst.is_ipv6(),
            _ => false,
        }),
        "IPv6 reached the fast path"
    );
    let f = s.console("show sync-features");
    assert!(
        f.lines()
            .any(|l| l.split_whitespace().collect::<Vec<_>>() == ["ipv6", "disabled"]),
        "{f}"
    );
    assert!(
        f.lines()
            .any(|l| l.split_whitespace().collect::<Vec<_>>() == ["vxlan", "enabled"]),
        "{f}"
    );
}

#[test]
fn sync_mask_ipv6_only() {
    let s = Setup::with_args("mask", &["-S", "0x10000"]);
    s.ns.ip(&["link", "add", "br0", "type", "bridge"]);
    s.ns.ip(&[
        "link", "add", "vx0", "type", "vxlan", "id", "7", "dstport", "4789",
    ]);
    s.ns.ip(&["link", "add", "v0", "type", "veth", "peer", "name", "v1"]);
    s.ns.ip(&["link", "add", "mv0", "link", "v0", "type", "macvlan"]);
    s.ns.ip(&["link", "set", "v0", "up"]);
    s.ns.ip(&["-6", "addr", "add", "2001:db8::1/64", "dev", "v0", "nodad"]);
    s.ns.ip(&[
        "-6",
        "route",
        "add",
        "2001:db8:5::/64",
        "via",
        "2001:db8::2",
    ]);
    s.assert_in_sync(SYNC);
    let objects = fp_objects(&s);
    let kinds: Vec<&str> = objects
        .iter()
        .filter_map(|o| match o {
            Object::Link(l) => Some(l.kind.as_str()),
            _ => None,
        })
        .collect();
    assert!(kinds.contains(&"veth"), "{kinds:?}");
    for off in ["bridge", "vxlan", "macvlan"] {
        assert!(
            !kinds.contains(&off),
            "{off} reached the fast path: {kinds:?}"
        );
    }
    assert!(objects.iter().any(|o| matches!(o, Object::Route(r) if r.dst.is_ipv6() && r.dst_len == 64 && r.dst.to_string() == "2001:db8:5::")));
    let f = s.console("show sync-features --json");
    assert!(f.contains(r#""mask":"0x10000""#), "{f}");
}

/// Each --disable-sync-<feature>: listed as disabled (with the seed's
/// inclusions), the others enabled; a family this build syncs never
/// reaches the fast path.
#[test]
fn every_disable_flag() {
    use instance::features::{disable_bits, FEATURES};
    for flag in FEATURES.iter().filter_map(|f| f.flag) {
        let s = Setup::with_args(flag, &[&format!("--disable-sync-{flag}")]);
        let listing = s.console("show sync-features");
        let cleared = disable_bits(flag).unwrap();
        for f in FEATURES.iter().filter(|f| f.flag.is_some()) {
            let want = if f.bit & cleared != 0 {
                "disabled"
            } else {
                "enabled"
            };
            assert!(
                listing
                    .lines()
                    .any(|l| l.split_whitespace().collect::<Vec<_>>() == [f.name, want]),
                "--disable-sync-{flag}: {} should be {want}:\n{listing}",
                f.name
            );
        }
        // Families this build syncs: the link never reaches fpd.
        let link = match flag {
            "vxlan" => Some(["vx0", "type", "vxlan", "id", "9", "dstport", "4789"].as_slice()),
            "bridge" => Some(["br0", "type", "bridge"].as_slice()),
            _ => None,
        };
        if let Some(args) = link {
            let mut cmd = vec!["link", "add"];
            cmd.extend_from_slice(args);
            s.ns.ip(&cmd);
            s.ns.ip(&["link", "add", "v0", "type", "veth", "peer", "name", "v1"]);
            s.assert_in_sync(SYNC);
            let names: Vec<String> = fp_objects(&s)
                .into_iter()
                .filter_map(|o| match o {
                    Object::Link(l) => Some(l.name),
                    _ => None,
                })
                .collect();
            assert!(!names.contains(&args[0].to_string()), "{flag}: {names:?}");
            assert!(names.contains(&"v0".to_string()), "{flag}: {names:?}");
        }
    }
}

#[test]
fn bpf_all_ipsec_replay_and_debug_flags() {
    let s = Setup::with_args("flags", &["-A", "-R", "-d", "0x1", "-b", "3M", "-l", "16M"]);
    let conf = s.console("show conf");
    for line in [
        "sync_bpf_all=true",
        "sync_ipsec_replay=true",
        "debug=0x1",
        "socket_buffer=3145728",
        "netlink_buffer=16777216",
    ] {
        assert!(conf.lines().any(|l| l == line), "{line} not in:\n{conf}");
    }
    assert_eq!(
        s.console("ipsec ha show"),
        "IPsec High Availability enabled\n\n"
    );
    // Live switch, no restart.
    let pid = s.cmgrd.as_ref().unwrap().pid();
    assert_eq!(
        s.console("ipsec ha disable"),
        "IPsec High Availability disabled\n\n"
    );
    assert_eq!(
        s.console("ipsec ha show"),
        "IPsec High Availability disabled\n\n"
    );
    assert_eq!(
        s.console("ipsec ha enable blade 1"),
        "IPsec High Availability enabled\n\n"
    );
    assert!(s
        .console("ipsec ha enable blade 7")
        .starts_with("error: no blade"));
    assert_eq!(s.cmgrd.as_ref().unwrap().pid(), pid);
    // -d 0x1: debug lines in the log.
    s.ns.ip(&["link", "add", "v0", "type", "veth", "peer", "name", "v1"]);
    s.ns.ip(&["link", "set", "v0", "up"]);
    s.ns.ip(&["addr", "add", "10.0.0.1/24", "dev", "v0"]);
    s.ns.ip(&["route", "add", "192.0.2.0/24", "via", "10.0.0.2"]);
    s.ns.ip(&["link", "set", "v0", "down"]);
    s.assert_in_sync(SYNC);
    assert!(s.cmgrd.as_ref().unwrap().log().contains("DEBUG"));
    // -l 16M: the listener's receive buffer, as the kernel reports it.
    let ss = sh(&[
        "ip", "netns", "exec", &s.ns.name, "ss", "-f", "netlink", "-a", "-m", "-p",
    ]);
    assert!(
        ss.lines()
            .any(|l| l.contains(&format!("cmgrd/{pid}")) && l.contains("rb16777216")),
        "{ss}"
    );
}

#[test]
fn console_rejects_unknown_commands_and_keeps_state() {
    let mut s = Setup::new("console");
    s.ns.ip(&["route", "add", "blackhole", "192.0.2.0/24"]);
    s.assert_in_sync(SYNC);
    let before = s.console("show sync --json");
    for bad in [
        "show nonsense",
        "frobnicate",
        "ipsec ha maybe",
        "show queue extra",
    ] {
        let a = s.console(bad);
        assert!(a.starts_with("error: "), "{bad}: {a}");
    }
    let help = s.console("help");
    assert!(help.contains("show - show statistics"), "{help}");
    assert_eq!(s.console("show sync --json"), before);
    assert!(s.cmgrd.as_mut().unwrap().alive());
    // daemonctl: one command, its answer, and status 1 for an error.
    let id = format!("cmgrd{}", s.instance);
    let out = Command::new(bin("daemonctl"))
        .args([&id, "show", "pid"])
        .output()
        .unwrap();
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("pid: "));
    let out = Command::new(bin("daemonctl"))
        .args([&id, "show", "bogus"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let out = Command::new(bin("daemonctl"))
        .args(["cmgrdX", "help"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
}

/// `show netlink` counts every message by socket and type: a known series
/// of changes gives known counts.
#[test]
fn show_netlink_counts_exactly() {
    let s = Setup::new("counts");
    for net in ["192.0.2.0/24", "198.51.100.0/24", "203.0.113.0/24"] {
        s.ns.ip(&["route", "add", "blackhole", net]);
    }
    s.ns.ip(&["-6", "route", "add", "blackhole", "2001:db8::/64"]);
    s.ns.ip(&["route", "del", "blackhole", "192.0.2.0/24"]);
    s.ns.ip(&["nexthop", "add", "id", "1", "blackhole"]);
    s.assert_in_sync(SYNC);
    let out = s.console("show netlink --json");
    let v: Vec<serde_json::Value> = serde_json::from_str(out.trim()).unwrap();
    let listen = &v[0];
    assert_eq!(
        listen["name"],
        format!("netlink-route-listen-{}", s.instance)
    );
    let by_type = listen["by_type"].as_object().unwrap();
    let count = |t: u16| {
        by_type
            .get(&t.to_string())
            .and_then(|n| n.as_u64())
            .unwrap_or(0)
    };
    assert_eq!(count(24), 4, "RTM_NEWROUTE: {out}");
    assert_eq!(count(25), 1, "RTM_DELROUTE: {out}");
    assert_eq!(count(104), 1, "RTM_NEWNEXTHOP: {out}");
    assert_eq!(listen["packets"].as_u64(), Some(6), "nothing else: {out}");
    let text = s.console("show netlink");
    assert!(text.contains("RTM_NEWROUTE                 4"), "{text}");
}

/// `show interfaces` agrees with `ip -d link`.
#[test]
fn show_interfaces_matches_ip_link() {
    let s = Setup::new("ifaces");
    s.ns.ip(&["link", "add", "v0", "type", "veth", "peer", "name", "v1"]);
    s.ns.ip(&["link", "add", "br0", "type", "bridge"]);
    s.ns.ip(&["link", "set", "v1", "master", "br0"]);
    s.ns.ip(&["link", "set", "v0", "up", "mtu", "4000"]);
    s.assert_in_sync(SYNC);
    let ours: Vec<serde_json::Value> =
        serde_json::from_str(s.console("show interfaces --json").trim()).unwrap();
    let ip: Vec<serde_json::Value> = serde_json::from_str(&s.ns.ip(&["-j", "-d", "link"])).unwrap();
    assert_eq!(ours.len(), ip.len());
    for l in &ip {
        let name = l["ifname"].as_str().unwrap();
        let o = ours
            .iter()
            .find(|o| o["name"] == name)
            .unwrap_or_else(|| panic!("{name} missing"));
        assert_eq!(o["ifindex"], l["ifindex"], "{name}");
        assert_eq!(o["mtu"], l["mtu"], "{name}");
        let kind = l["linkinfo"]["info_kind"].as_str().unwrap_or("");
        assert_eq!(o["kind"].as_str().unwrap(), kind, "{name}");
        let up = l["flags"].as_array().unwrap().iter().any(|f| f == "UP");
        let flags =
            u32::from_str_radix(o["flags"].as_str().unwrap().trim_start_matches("0x"), 16).unwrap();
        assert_eq!(flags & 1 == 1, up, "{name}");
        let mac = l["address"].as_str().unwrap_or("");
        assert_eq!(o["mac"].as_str().unwrap(), mac, "{name}");
        let has_master = l.get("master").is_some();
        assert_eq!(o["master_ifuid"] != "0x0", has_master, "{name}");
    }
    let text = s.console("show interfaces");
    assert!(
        text.contains("Bridge interfaces list:\nv1 vrfid 0"),
        "{text}"
    );
}

/// Without -F, cmgrd returns once ready, leaves a pid file, and removes it
/// when it stops.
#[test]
fn daemonizes_without_foreground() {
    let ns = Netns::new("daemon");
    let dir = fpsync_tests::TempDir::new("daemon");
    let id = unique();
    let pid_file = dir.path.join("cmgrd.pid");
    let out = Command::new(bin("cmgrd"))
        .args([
            "-I",
            &id.to_string(),
            "--netns",
            &ns.name,
            "--pid-file",
            pid_file.to_str().unwrap(),
        ])
        .args([
            "--blade",
            &format!("1=unix:{}", dir.path.join("nofpd.sock").display()),
        ])
        .env("FPSYNC_NO_JOURNAL", "1")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let pid: i32 = std::fs::read_to_string(&pid_file)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let guard = KillOnDrop(pid);
    let path = std::path::PathBuf::from(format!("/tmp/.cmgrd{id}"));
    assert_eq!(console(&path, "show pid"), format!("pid: {pid}\n\n"));
    // A second one with the same id refuses, with the reason.
    let out = Command::new(bin("cmgrd"))
        .args(["-I", &id.to_string(), "--netns", &ns.name, "-F"])
        .env("FPSYNC_NO_JOURNAL", "1")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("another cache manager"));
    // SAFETY: kill(2) of the daemon started above.
    unsafe { libc::kill(pid, libc::SIGTERM) };
    assert!(wait_until(Duration::from_secs(5), || !pid_file.exists()));
    drop(guard);
}

struct KillOnDrop(i32);
impl Drop for KillOnDrop {
    fn drop(&mut self) {
        // SAFETY: kill(2) by the pid the test started.
        unsafe { libc::kill(self.0, libc::SIGKILL) };
    }
}

/// -I N: the journal holds its logs under cmgrd<N>, with its INSTANCE
/// field, and its console is /tmp/.cmgrd<N>.
#[test]
fn instance_id_names_logs_and_console() {
    let ns = Netns::new("journal");
    let journal = PrivateJournal::start();
    let dir = fpsync_tests::TempDir::new("journal");
    let id = unique();
    let mut child = journal
        .command(bin("cmgrd").to_str().unwrap())
        .args(["-F", "-I", &id.to_string(), "--netns", &ns.name])
        .args([
            "--blade",
            &format!("1=unix:{}", dir.path.join("nofpd.sock").display()),
        ])
        .spawn()
        .unwrap();
    let path = std::path::PathBuf::from(format!("/tmp/.cmgrd{id}"));
    let ready = wait_until(Duration::from_secs(10), || {
        std::os::unix::net::UnixStream::connect(&path).is_ok()
    });
    let ident = format!("cmgrd{id}");
    let found = ready
        && wait_until(Duration::from_secs(10), || {
            journal
                .entries(&ident)
                .iter()
                .any(|e| e.contains("initial dump done"))
        });
    let entries = journal.entries(&ident);
    let _ = child.kill();
    let _ = child.wait();
    assert!(found, "no journal entries for {ident}: {entries:?}");
    assert!(
        entries
            .iter()
            .all(|e| e.contains(&format!(r#""INSTANCE":"{id}""#))),
        "{entries:?}"
    );
    assert!(
        journal.entries("cmgrd").is_empty(),
        "other identifiers stay empty"
    );
}
