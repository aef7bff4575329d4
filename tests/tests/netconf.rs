//! Per-device IP settings (netconf) from the real kernel: `sysctl -w` of
//! forwarding, rp_filter, proxy_arp/proxy_ndp and
//! ignore_routes_with_linkdown for `all`, `default` and devices, IPv4 and
//! IPv6; `ip_forward` toggled with several devices; devices added (their
//! values from `default`) and deleted; IPv6 going away with a small MTU;
//! kill -9 of either daemon; `--disable-sync-ipv6`. Each step ends with
//! the check empty and fpd's values equal to what `sysctl -n` reads in
//! the namespace (the kernel's own view, not our decoder's).

use std::collections::BTreeMap;
use std::time::Duration;

use fpc::{
    NetConf, Object, QueryClient, AF_INET, AF_INET6, NETCONFA_IFINDEX_ALL, NETCONFA_IFINDEX_DEFAULT,
};
use fpsync_tests::{bin, sh, wait_until, Setup};

const SYNC: Duration = Duration::from_secs(3);

/// fpd's netconf objects by (family, ifindex).
fn fp_netconfs(s: &Setup) -> BTreeMap<(u8, i32), NetConf> {
    QueryClient::connect(&s.endpoint, "test", Duration::from_secs(5))
        .and_then(|mut c| c.dump())
        .unwrap()
        .into_iter()
        .filter_map(|o| match o {
            Object::NetConf(c) => Some(((c.family, c.ifindex), c)),
            _ => None,
        })
        .collect()
}

fn sysctl_w(s: &Setup, key: &str, value: u32) {
    sh(&[
        "ip",
        "netns",
        "exec",
        &s.ns.name,
        "sysctl",
        "-qw",
        &format!("{key}={value}"),
    ]);
}

fn sysctl_n(s: &Setup, key: &str) -> u32 {
    let out = sh(&["ip", "netns", "exec", &s.ns.name, "sysctl", "-n", key]);
    out.trim()
        .parse()
        .unwrap_or_else(|_| panic!("{key}: {out:?}"))
}

fn ifindex(s: &Setup, name: &str) -> i32 {
    let v = s.ns.ip(&["-j", "link", "show", name]);
    let start = v.find("\"ifindex\":").unwrap() + 10;
    v[start..].split(',').next().unwrap().parse().unwrap()
}

/// What the kernel says of `conf` (`all`, `default` or a device name)
/// for `family`, as a NetConf: read with `sysctl -n`.
fn kernel_view(s: &Setup, family: u8, conf: &str) -> NetConf {
    let (fam, proxy) = if family == AF_INET {
        ("ipv4", "proxy_arp")
    } else {
        ("ipv6", "proxy_ndp")
    };
    // A setting this kernel's configuration lacks (IPv6's mc_forwarding
    // without CONFIG_IPV6_MROUTE) is neither a sysctl nor in the news.
    let get = |what: &str| {
        let path = format!("/proc/sys/net/{fam}/conf/{conf}/{what}");
        let exists = std::process::Command::new("ip")
            .args(["netns", "exec", &s.ns.name, "test", "-e", &path])
            .status()
            .is_ok_and(|st| st.success());
        exists.then(|| sysctl_n(s, &format!("net.{fam}.conf.{conf}.{what}")))
    };
    let ifindex = match conf {
        "all" => NETCONFA_IFINDEX_ALL,
        "default" => NETCONFA_IFINDEX_DEFAULT,
        dev => ifindex(s, dev),
    };
    NetConf {
        family,
        ifindex,
        forwarding: get("forwarding"),
        rp_filter: if family == AF_INET {
            get("rp_filter")
        } else {
            None
        },
        mc_forwarding: get("mc_forwarding"),
        proxy_neigh: get(proxy),
        ignore_routes_with_linkdown: get("ignore_routes_with_linkdown"),
    }
}

/// Waits until fpd holds, for each of `confs` and each family in
/// `families`, exactly what `sysctl -n` reads; then the check is empty.
fn assert_as_kernel(s: &Setup, families: &[u8], confs: &[&str]) {
    let want: Vec<NetConf> = families
        .iter()
        .flat_map(|f| confs.iter().map(|c| kernel_view(s, *f, c)))
        .collect();
    let ok = wait_until(SYNC, || {
        let fp = fp_netconfs(s);
        want.iter()
            .all(|w| fp.get(&(w.family, w.ifindex)) == Some(w))
    });
    if !ok {
        let fp = fp_netconfs(s);
        let wrong: Vec<String> = want
            .iter()
            .filter(|w| fp.get(&(w.family, w.ifindex)) != Some(w))
            .map(|w| format!("kernel {w} / fpd {:?}", fp.get(&(w.family, w.ifindex))))
            .collect();
        panic!("fpd differs from sysctl:\n{}", wrong.join("\n"));
    }
    s.assert_in_sync(SYNC);
}

fn veth(s: &Setup, a: &str, b: &str) {
    s.ns.ip(&["link", "add", a, "type", "veth", "peer", "name", b]);
}

fn silent_changes(s: &Setup) -> u64 {
    let out = s.console("show sync");
    out.lines()
        .find_map(|l| l.strip_prefix("- silent changes: "))
        .unwrap_or_else(|| panic!("no silent changes line: {out}"))
        .trim()
        .parse()
        .unwrap()
}

const BOTH: &[u8] = &[AF_INET, AF_INET6];

#[test]
fn sysctl_changes_reach_fpd_as_the_kernel_sees_them() {
    let s = Setup::new("netconf");
    // Initial sync: lo, all and default of both families.
    assert_as_kernel(&s, BOTH, &["all", "default", "lo"]);
    let fp = fp_netconfs(&s);
    assert!(fp.contains_key(&(AF_INET, NETCONFA_IFINDEX_ALL)), "{fp:?}");
    assert!(
        fp.contains_key(&(AF_INET6, NETCONFA_IFINDEX_DEFAULT)),
        "{fp:?}"
    );

    // New devices: announced whole.
    veth(&s, "va", "vb");
    let everything = ["all", "default", "lo", "va", "vb"];
    assert_as_kernel(&s, BOTH, &everything);

    // One value each time: the kernel announces only that attribute, and
    // the others must stay as they were.
    for (key, value) in [
        ("net.ipv4.conf.all.forwarding", 1),
        ("net.ipv4.conf.all.rp_filter", 1),
        ("net.ipv4.conf.default.forwarding", 1),
        ("net.ipv4.conf.va.rp_filter", 2),
        ("net.ipv4.conf.va.forwarding", 0),
        ("net.ipv4.conf.va.proxy_arp", 1),
        ("net.ipv4.conf.all.ignore_routes_with_linkdown", 1),
        ("net.ipv6.conf.all.forwarding", 1),
        ("net.ipv6.conf.default.forwarding", 0),
        ("net.ipv6.conf.va.forwarding", 0),
        ("net.ipv6.conf.vb.proxy_ndp", 1),
        ("net.ipv6.conf.default.ignore_routes_with_linkdown", 1),
    ] {
        sysctl_w(&s, key, value);
        assert_eq!(sysctl_n(&s, key), value, "{key}");
        assert_as_kernel(&s, BOTH, &everything);
    }

    // IPv4 copies a written default rp_filter into the devices that never
    // had theirs written (vb, lo), and announces only `default`.
    let before = silent_changes(&s);
    sysctl_w(&s, "net.ipv4.conf.default.rp_filter", 2);
    assert_eq!(sysctl_n(&s, "net.ipv4.conf.vb.rp_filter"), 2, "copied");
    assert_eq!(sysctl_n(&s, "net.ipv4.conf.va.rp_filter"), 2, "its own");
    assert_as_kernel(&s, BOTH, &everything);
    assert!(silent_changes(&s) > before, "the copies are silent changes");
    // IPv6 sets default's ignore_routes_with_linkdown with all's, and
    // announces all's and the devices' only.
    sysctl_w(&s, "net.ipv6.conf.default.ignore_routes_with_linkdown", 0);
    assert_as_kernel(&s, BOTH, &everything);
    sysctl_w(&s, "net.ipv6.conf.all.ignore_routes_with_linkdown", 1);
    assert_eq!(
        sysctl_n(&s, "net.ipv6.conf.default.ignore_routes_with_linkdown"),
        1
    );
    assert_as_kernel(&s, BOTH, &everything);

    // fpsync-check --dump-fastpath prints them.
    let out = std::process::Command::new(bin("fpsync-check"))
        .args(["--fpc", &s.endpoint.to_string(), "--dump-fastpath"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let va = ifindex(&s, "va");
    assert!(
        text.lines().any(|l| l
            == format!(
                "netconf ipv4 dev #{va} forwarding 0 rp_filter 2 mc_forwarding 0 \
                 proxy_neigh 1 ignore_routes_with_linkdown 0"
            )),
        "{text}"
    );
    assert!(
        text.lines()
            .any(|l| l.starts_with("netconf ipv6 all forwarding 1 ")),
        "{text}"
    );
    assert!(
        s.console("show sync").contains("- netconf: "),
        "show sync lists them"
    );

    // A device added now starts from `default` (IPv4 and IPv6 alike):
    // announced whole, with default's values.
    veth(&s, "vc", "vd");
    let everything = ["all", "default", "lo", "va", "vb", "vc", "vd"];
    assert_as_kernel(&s, BOTH, &everything);
    let fp = fp_netconfs(&s);
    let vc = ifindex(&s, "vc");
    for family in BOTH {
        let dflt = &fp[&(*family, NETCONFA_IFINDEX_DEFAULT)];
        let dev = &fp[&(*family, vc)];
        assert_eq!(
            (dev.forwarding, dev.rp_filter, dev.proxy_neigh),
            (dflt.forwarding, dflt.rp_filter, dflt.proxy_neigh),
            "a new device takes default's values"
        );
        assert_eq!(
            dev.ignore_routes_with_linkdown,
            dflt.ignore_routes_with_linkdown
        );
    }

    // ip_forward (conf.all.forwarding) with several devices: every device
    // follows, announced one by one (writing the value it already has is
    // no change at all: all.forwarding is 1 here, and va's own 0 stays).
    sysctl_w(&s, "net.ipv4.ip_forward", 1);
    assert_eq!(sysctl_n(&s, "net.ipv4.conf.va.forwarding"), 0);
    for on in [0, 1, 0, 1] {
        sysctl_w(&s, "net.ipv4.ip_forward", on);
        for dev in ["lo", "va", "vb", "vc", "vd"] {
            assert_eq!(sysctl_n(&s, &format!("net.ipv4.conf.{dev}.forwarding")), on);
        }
        sysctl_w(&s, "net.ipv6.conf.all.forwarding", on);
        assert_as_kernel(&s, BOTH, &everything);
    }

    // IPv6 leaves a device whose MTU drops below 1280 (its netconf goes)
    // and comes back with default's values when it rises again.
    let vd = ifindex(&s, "vd");
    sysctl_w(&s, "net.ipv6.conf.vd.proxy_ndp", 1);
    s.ns.ip(&["link", "set", "vd", "mtu", "1200"]);
    assert!(
        wait_until(SYNC, || {
            let fp = fp_netconfs(&s);
            !fp.contains_key(&(AF_INET6, vd)) && fp.contains_key(&(AF_INET, vd))
        }),
        "IPv6 netconf of vd still in fpd: {:?}",
        fp_netconfs(&s).get(&(AF_INET6, vd))
    );
    s.assert_in_sync(SYNC);
    s.ns.ip(&["link", "set", "vd", "mtu", "1500"]);
    assert_as_kernel(&s, BOTH, &everything);
    assert_eq!(
        sysctl_n(&s, "net.ipv6.conf.vd.proxy_ndp"),
        0,
        "from default"
    );

    // A deleted device's netconf goes (RTM_DELNETCONF, both families, for
    // both ends of the pair).
    let (vb, vc) = (ifindex(&s, "vb"), ifindex(&s, "vc"));
    s.ns.ip(&["link", "del", "vc"]);
    assert!(
        wait_until(SYNC, || {
            let fp = fp_netconfs(&s);
            BOTH.iter().all(|f| {
                !fp.contains_key(&(*f, vc))
                    && !fp.contains_key(&(*f, vd))
                    && fp.contains_key(&(*f, vb))
            })
        }),
        "{:?}",
        fp_netconfs(&s).keys().collect::<Vec<_>>()
    );
    assert_as_kernel(&s, BOTH, &["all", "default", "lo", "va", "vb"]);
}

#[test]
fn restarts_of_either_daemon_resync_them() {
    let mut s = Setup::new("netconf-restart");
    veth(&s, "va", "vb");
    veth(&s, "vc", "vd");
    sysctl_w(&s, "net.ipv4.conf.va.rp_filter", 1);
    sysctl_w(&s, "net.ipv6.conf.vb.forwarding", 1);
    let confs = ["all", "default", "lo", "va", "vb", "vc", "vd"];
    assert_as_kernel(&s, BOTH, &confs);

    // kill -9 fpd: the replay carries them.
    s.fpd.as_mut().unwrap().kill();
    s.start_fpd();
    assert_as_kernel(&s, BOTH, &confs);

    // kill -9 cmgrd, and change them meanwhile (one device goes): its dump
    // and fpd's sweep.
    s.cmgrd.as_mut().unwrap().kill();
    sysctl_w(&s, "net.ipv4.ip_forward", 1);
    sysctl_w(&s, "net.ipv4.conf.va.rp_filter", 2);
    sysctl_w(&s, "net.ipv6.conf.all.forwarding", 1);
    sysctl_w(&s, "net.ipv6.conf.vb.proxy_ndp", 1);
    let vc = ifindex(&s, "vc");
    s.ns.ip(&["link", "del", "vc"]);
    s.start_cmgrd();
    assert_as_kernel(&s, BOTH, &["all", "default", "lo", "va", "vb"]);
    let fp = fp_netconfs(&s);
    assert!(
        BOTH.iter().all(|f| !fp.contains_key(&(*f, vc))),
        "swept: {fp:?}"
    );
}

#[test]
fn disable_sync_ipv6_keeps_ipv6_netconf_out() {
    let s = Setup::with_args("netconf-nov6", &["--disable-sync-ipv6"]);
    veth(&s, "va", "vb");
    sysctl_w(&s, "net.ipv6.conf.all.forwarding", 1);
    sysctl_w(&s, "net.ipv6.conf.va.proxy_ndp", 1);
    sysctl_w(&s, "net.ipv4.conf.va.rp_filter", 2);
    assert_as_kernel(&s, &[AF_INET], &["all", "default", "lo", "va", "vb"]);
    let fp = fp_netconfs(&s);
    assert!(fp.keys().all(|(f, _)| *f == AF_INET), "{fp:?}");
}

#[test]
fn an_overrun_loses_no_netconf_change() {
    let s = Setup::with_args("netconf-overrun", &["-l", "256K"]);
    s.ns.batch("link add va type veth peer name vb\nlink set va up\naddr add 10.0.0.1/16 dev va\n");
    assert_as_kernel(&s, BOTH, &["all", "default", "va", "vb"]);
    s.cmgrd.as_ref().unwrap().signal(libc::SIGSTOP);
    // Fill the stopped listener's socket past its buffer, then change
    // netconf: those news are dropped (ENOBUFS), the resync finds them.
    let batch: String = (0..20_000u32)
        .map(|i| format!("route add 100.{}.{}.0/24 via 10.0.0.2\n", i / 256, i % 256))
        .collect();
    s.ns.batch(&batch);
    sysctl_w(&s, "net.ipv4.ip_forward", 1);
    sysctl_w(&s, "net.ipv4.conf.va.rp_filter", 2);
    sysctl_w(&s, "net.ipv6.conf.all.forwarding", 1);
    sysctl_w(&s, "net.ipv6.conf.vb.proxy_ndp", 1);
    s.cmgrd.as_ref().unwrap().signal(libc::SIGCONT);
    s.assert_in_sync(Duration::from_secs(30));
    assert_as_kernel(&s, BOTH, &["all", "default", "lo", "va", "vb"]);
    let sync = s.console("show sync");
    assert!(!sync.contains("- overruns: 0\n"), "{sync}");
}

/// One RTM_NEWNETCONF message: `family`, `ifindex` (None: left out) and
/// NETCONFA_* attributes (kind, value).
fn news(family: u8, ifindex: Option<i32>, values: &[(u16, u32)]) -> Vec<u8> {
    let mut attrs = Vec::new();
    let mut attr = |kind: u16, v: [u8; 4]| {
        attrs.extend_from_slice(&8u16.to_ne_bytes());
        attrs.extend_from_slice(&kind.to_ne_bytes());
        attrs.extend_from_slice(&v);
    };
    if let Some(i) = ifindex {
        attr(1, i.to_ne_bytes());
    }
    for (kind, v) in values {
        attr(*kind, v.to_ne_bytes());
    }
    let len = 16 + 4 + attrs.len();
    let mut m = Vec::new();
    m.extend_from_slice(&(len as u32).to_ne_bytes());
    m.extend_from_slice(&80u16.to_ne_bytes()); // RTM_NEWNETCONF
    m.extend_from_slice(&[0; 10]);
    m.extend_from_slice(&[family, 0, 0, 0]);
    m.extend_from_slice(&attrs);
    m
}

#[test]
fn odd_news_change_nothing_and_cmgrd_goes_on() {
    let s = Setup::new("netconf-odd");
    let replay = |bytes: Vec<u8>| {
        let path = s.dir.path.join(format!("news.{}", fpsync_tests::unique()));
        std::fs::write(&path, bytes).unwrap();
        s.console(&format!("netlink replay {}", path.display()))
    };
    let decode_errors = || -> u64 {
        let out = s.console("show sync");
        out.lines()
            .find_map(|l| l.strip_prefix("- decode errors: "))
            .unwrap()
            .trim()
            .parse()
            .unwrap()
    };
    // A change of a device never announced whole (as after a lost
    // announcement): not taken as the device's settings; the family is
    // dumped again instead, which does not have it.
    let answer = replay(news(AF_INET, Some(9999), &[(3, 1)]));
    assert!(answer.contains("replayed 1"), "{answer}");
    // A news without NETCONFA_IFINDEX: a decode error, nothing else.
    let before = decode_errors();
    replay(news(AF_INET6, None, &[(2, 1)]));
    assert_eq!(decode_errors(), before + 1);
    // Another family's (AF_MPLS) is not ours.
    replay(news(28, Some(1), &[(7, 1)]));
    s.assert_in_sync(SYNC);
    let fp = fp_netconfs(&s);
    assert!(!fp.contains_key(&(AF_INET, 9999)), "{fp:?}");
    assert!(fp.keys().all(|(f, _)| *f == AF_INET || *f == AF_INET6));
    assert_as_kernel(&s, BOTH, &["all", "default", "lo"]);
}
