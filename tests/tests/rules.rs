//! Policy routing rules from the real kernel: `ip rule add` / `del` of
//! every selector and action this kernel and iproute2 6.1 accept, IPv4
//! and IPv6; rules only raw netlink makes (FRA_DSCP, port and DSCP
//! masks, the IPv6 flow label, identical copies without NLM_F_EXCL);
//! the order within a priority; restarts of either side; the IPv6
//! disable flag. The equivalence check is empty after every step.

use std::time::Duration;

use fpc::{Object, QueryClient, Rule, AF_INET, AF_INET6};
use fpsync_tests::{wait_until, Setup};

const SYNC: Duration = Duration::from_secs(3);

/// The fast path's rules of `family`, in the order they apply.
fn fp_rules(s: &Setup, family: u8) -> Vec<Rule> {
    let mut v: Vec<Rule> = QueryClient::connect(&s.endpoint, "test", Duration::from_secs(5))
        .and_then(|mut c| c.dump())
        .unwrap()
        .into_iter()
        .filter_map(|o| match o {
            Object::Rule(r) if r.spec.family == family => Some(*r),
            _ => None,
        })
        .collect();
    v.sort_by_key(|r| (r.spec.priority, r.position));
    v
}

fn priorities(s: &Setup, family: u8) -> Vec<u32> {
    fp_rules(s, family)
        .iter()
        .map(|r| r.spec.priority)
        .collect()
}

/// `ip [-6] rule ARGS` in the namespace, then the check.
fn rule(s: &Setup, v6: bool, args: &str) {
    let mut full: Vec<&str> = if v6 { vec!["-6", "rule"] } else { vec!["rule"] };
    full.extend(args.split_whitespace());
    s.ns.ip(&full);
    s.assert_equal_to_linux(SYNC);
}

/// Sends one RTM_NEWRULE (`excl`: with NLM_F_EXCL) made of `family`,
/// `action`, `table` and raw attributes, from inside the namespace; the
/// kernel's answer (0 or -errno).
fn raw_rule(s: &Setup, family: u8, action: u8, attrs: &[(u16, Vec<u8>)], excl: bool) -> i32 {
    let ns = s.ns.name.clone();
    let attrs = attrs.to_vec();
    std::thread::spawn(move || {
        instance::netns::enter(&ns).unwrap();
        let mut body = vec![family, 0, 0, 0, 0, 0, 0, action, 0, 0, 0, 0];
        for (kind, v) in attrs {
            let len = 4 + v.len() as u16;
            body.extend_from_slice(&len.to_ne_bytes());
            body.extend_from_slice(&kind.to_ne_bytes());
            body.extend_from_slice(&v);
            while body.len() % 4 != 0 {
                body.push(0);
            }
        }
        // NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE (| NLM_F_EXCL).
        let flags: u16 = 0x1 | 0x4 | 0x400 | if excl { 0x200 } else { 0 };
        let mut msg = ((16 + body.len()) as u32).to_ne_bytes().to_vec();
        msg.extend_from_slice(&32u16.to_ne_bytes()); // RTM_NEWRULE
        msg.extend_from_slice(&flags.to_ne_bytes());
        msg.extend_from_slice(&[1, 0, 0, 0, 0, 0, 0, 0]);
        msg.extend_from_slice(&body);
        let mut sock = instance::netlink::NetlinkSocket::open(&[], 1 << 16).unwrap();
        sock.send(&msg).unwrap();
        let mut buf = Vec::new();
        sock.recv(&mut buf, false).unwrap();
        i32::from_ne_bytes(buf[16..20].try_into().unwrap())
    })
    .join()
    .unwrap()
}

fn u32a(kind: u16, v: u32) -> (u16, Vec<u8>) {
    (kind, v.to_ne_bytes().to_vec())
}

const FRA_PRIORITY: u16 = 6;
const FRA_TABLE: u16 = 15;
const FRA_IP_PROTO: u16 = 22;
const FRA_SPORT_RANGE: u16 = 23;
const FRA_DSCP: u16 = 25;
const FRA_FLOWLABEL: u16 = 26;
const FRA_FLOWLABEL_MASK: u16 = 27;
const FRA_SPORT_MASK: u16 = 28;
const FRA_DSCP_MASK: u16 = 30;

#[test]
fn every_ipv4_selector_and_action_is_synced() {
    let s = Setup::new("rules4");
    s.ns.ip(&["link", "add", "ra", "type", "veth", "peer", "name", "rb"]);
    s.assert_equal_to_linux(SYNC);
    // The kernel's defaults are synced like the others.
    assert_eq!(priorities(&s, AF_INET), [0, 32766, 32767]);
    let added = [
        "pref 100 from 10.1.0.0/16 table 100",
        "pref 101 to 10.2.0.0/24 table 101",
        "pref 102 tos 0x10 table 102",
        "pref 103 fwmark 0x5/0xff table 103",
        "pref 104 fwmark 7 table 104",
        "pref 105 iif ra table 105",
        "pref 106 oif rb table 106",
        "pref 107 uidrange 1000-2000 table 107",
        "pref 108 ipproto udp sport 1000-2000 dport 53 table 108",
        "pref 109 not from 10.9.0.0/16 table 109",
        "pref 110 from 10.1.0.2 goto 120",
        "pref 111 fwmark 9 nop",
        "pref 112 iif ra blackhole",
        "pref 113 to 192.0.2.0/24 unreachable",
        "pref 114 ipproto tcp dport 22 prohibit",
        "pref 115 l3mdev",
        "pref 116 table 116 suppress_prefixlength 0",
        "pref 117 table 117 suppress_ifgroup 3",
        "pref 118 from 10.3.0.0/16 table 118 protocol static",
        "pref 119 from 10.4.0.0/16 table 1000",
        "pref 120 from 10.5.0.0/16 lookup main",
    ];
    for a in added {
        rule(&s, false, &format!("add {a}"));
    }
    let want: Vec<u32> = std::iter::once(0)
        .chain(100..=120)
        .chain([32766, 32767])
        .collect();
    assert_eq!(priorities(&s, AF_INET), want);
    let rules = fp_rules(&s, AF_INET);
    let by = |p: u32| rules.iter().find(|r| r.spec.priority == p).unwrap();
    assert_eq!(by(105).spec.iif, "ra");
    assert_eq!(by(106).spec.oif, "rb");
    assert_eq!(by(110).spec.goto, Some(120));
    assert_eq!(by(116).spec.suppress_prefixlen, Some(0));
    assert_eq!(by(119).spec.table, 1000);
    // The device goes: the kernel marks the rules detached, silently;
    // nothing changes for the check.
    s.ns.ip(&["link", "del", "ra"]);
    s.assert_equal_to_linux(SYNC);
    for a in added {
        let pref = a.split_whitespace().nth(1).unwrap();
        rule(&s, false, &format!("del pref {pref}"));
    }
    assert_eq!(priorities(&s, AF_INET), [0, 32766, 32767]);
    // Even the defaults can go, and come back.
    rule(&s, false, "del pref 32767");
    assert_eq!(priorities(&s, AF_INET), [0, 32766]);
    rule(&s, false, "add pref 32767 table default");
    assert_eq!(priorities(&s, AF_INET), [0, 32766, 32767]);
}

#[test]
fn every_ipv6_selector_and_action_is_synced() {
    let s = Setup::new("rules6");
    s.ns.ip(&["link", "add", "ra", "type", "veth", "peer", "name", "rb"]);
    s.assert_equal_to_linux(SYNC);
    assert_eq!(priorities(&s, AF_INET6), [0, 32766]);
    let added = [
        "pref 100 from 2001:db8:1::/48 to 2001:db8:2::/64 table 100",
        "pref 101 tos 0x20 table 101",
        "pref 102 fwmark 0x5/0xff iif ra table 102",
        "pref 103 oif rb uidrange 0-0 table 103",
        "pref 104 ipproto udp dport 53 sport 1000-2000 table 104",
        "pref 105 not ipproto ipv6-icmp goto 110",
        "pref 106 nop",
        "pref 107 from 2001:db8:7::/48 blackhole",
        "pref 108 from 2001:db8:8::/48 unreachable",
        "pref 109 from 2001:db8:9::/48 prohibit",
        "pref 110 table 110 suppress_prefixlength 48",
    ];
    for a in added {
        rule(&s, true, &format!("add {a}"));
    }
    assert_eq!(priorities(&s, AF_INET6).len(), 2 + added.len());
    // The goto target goes: the kernel marks the goto unresolved,
    // silently; it comes back.
    rule(&s, true, "del pref 110");
    rule(&s, true, "add pref 110 table 110 suppress_prefixlength 48");
    for a in added {
        let pref = a.split_whitespace().nth(1).unwrap();
        rule(&s, true, &format!("del pref {pref}"));
    }
    assert_eq!(priorities(&s, AF_INET6), [0, 32766]);
}

#[test]
fn raw_netlink_selectors_and_identical_copies() {
    let s = Setup::new("rules-raw");
    let pref = |p| u32a(FRA_PRIORITY, p);
    let table = u32a(FRA_TABLE, 10);
    // FRA_DSCP alone (the kernel reports mask 0x3f), with FRA_DSCP_MASK.
    assert_eq!(
        raw_rule(
            &s,
            AF_INET,
            1,
            &[pref(200), table.clone(), (FRA_DSCP, vec![10])],
            true
        ),
        0
    );
    assert_eq!(
        raw_rule(
            &s,
            AF_INET,
            1,
            &[
                pref(201),
                table.clone(),
                (FRA_DSCP, vec![8]),
                (FRA_DSCP_MASK, vec![0x38])
            ],
            true
        ),
        0
    );
    // A masked source port.
    let masked_port = [
        pref(202),
        table.clone(),
        (FRA_IP_PROTO, vec![17]),
        (
            FRA_SPORT_RANGE,
            [0x1000u16.to_ne_bytes(), 0x1000u16.to_ne_bytes()].concat(),
        ),
        (FRA_SPORT_MASK, 0xff00u16.to_ne_bytes().to_vec()),
    ];
    assert_eq!(raw_rule(&s, AF_INET, 1, &masked_port, true), 0);
    // The IPv6 flow label.
    let label = [
        pref(203),
        table.clone(),
        (FRA_FLOWLABEL, 0x12345u32.to_be_bytes().to_vec()),
        (FRA_FLOWLABEL_MASK, 0xfffffu32.to_be_bytes().to_vec()),
    ];
    assert_eq!(raw_rule(&s, AF_INET6, 1, &label, true), 0);
    s.assert_equal_to_linux(SYNC);
    let dscp: Vec<_> = fp_rules(&s, AF_INET)
        .iter()
        .filter_map(|r| r.spec.dscp)
        .collect();
    assert_eq!(dscp, [(10, 0x3f), (8, 0x38)]);
    // Identical rules: NLM_F_EXCL refuses a copy, without it the kernel
    // keeps two, at one priority, around a third rule.
    let copy = [pref(300), table.clone()];
    assert_eq!(raw_rule(&s, AF_INET, 1, &copy, false), 0);
    assert_eq!(
        raw_rule(&s, AF_INET, 1, &[pref(300), u32a(FRA_TABLE, 20)], false),
        0
    );
    assert_eq!(raw_rule(&s, AF_INET, 1, &copy, false), 0);
    assert_eq!(raw_rule(&s, AF_INET, 1, &copy, true), -libc::EEXIST);
    s.assert_equal_to_linux(SYNC);
    let at300 = |s: &Setup| -> Vec<(u32, u32, u32)> {
        fp_rules(s, AF_INET)
            .iter()
            .filter(|r| r.spec.priority == 300)
            .map(|r| (r.spec.table, r.nth, r.position))
            .collect()
    };
    assert_eq!(at300(&s), [(10, 0, 0), (20, 0, 1), (10, 1, 2)]);
    // `ip rule del` deletes the first: the other copy stays behind the 20.
    rule(&s, false, "del pref 300 table 10");
    assert_eq!(at300(&s), [(20, 0, 0), (10, 0, 1)]);
    rule(&s, false, "del pref 300 table 20");
    rule(&s, false, "del pref 300 table 10");
    assert!(at300(&s).is_empty());
    // The order of one priority is the order of insertion.
    rule(&s, false, "add pref 400 from 10.0.0.1 table 1");
    rule(&s, false, "add pref 400 from 10.0.0.2 table 2");
    rule(&s, false, "add pref 400 from 10.0.0.3 table 3");
    rule(&s, false, "del pref 400 from 10.0.0.1 table 1");
    rule(&s, false, "add pref 400 from 10.0.0.1 table 1");
    let order: Vec<u32> = fp_rules(&s, AF_INET)
        .iter()
        .filter(|r| r.spec.priority == 400)
        .map(|r| r.spec.table)
        .collect();
    assert_eq!(order, [2, 3, 1]);
    // And `show rules` lists them so.
    let shown = s.console("show rules");
    let tables: Vec<&str> = shown
        .lines()
        .filter(|l| l.starts_with("rule ipv4 400:"))
        .map(|l| {
            l.split(" lookup ")
                .nth(1)
                .unwrap()
                .split(' ')
                .next()
                .unwrap()
        })
        .collect();
    assert_eq!(tables, ["2", "3", "1"], "{shown}");
}

#[test]
fn restarts_of_either_side_resync_the_rules() {
    let mut s = Setup::new("rules-restart");
    rule(&s, false, "add pref 100 from 10.1.0.2 table 100");
    rule(&s, false, "add pref 100 from 10.1.0.3 table 101");
    rule(&s, true, "add pref 100 from 2001:db8::/32 table 100");
    // kill -9 fpd: the replay carries them.
    s.fpd.as_mut().unwrap().kill();
    s.start_fpd();
    s.assert_equal_to_linux(SYNC);
    assert_eq!(priorities(&s, AF_INET), [0, 100, 100, 32766, 32767]);
    // kill -9 cmgrd, and change them meanwhile: its dump and the sweep.
    s.cmgrd.as_mut().unwrap().kill();
    s.ns.ip(&[
        "rule", "del", "pref", "100", "from", "10.1.0.2", "table", "100",
    ]);
    s.ns.ip(&[
        "rule", "add", "pref", "100", "from", "10.1.0.2", "table", "100",
    ]);
    s.ns.ip(&["-6", "rule", "del", "pref", "100"]);
    s.ns.ip(&["rule", "add", "pref", "50", "fwmark", "1", "blackhole"]);
    s.start_cmgrd();
    s.assert_equal_to_linux(Duration::from_secs(10));
    let order: Vec<(u32, u32)> = fp_rules(&s, AF_INET)
        .iter()
        .map(|r| (r.spec.priority, r.spec.table))
        .collect();
    assert_eq!(
        order,
        [
            (0, 255),
            (50, 0),
            (100, 101),
            (100, 100),
            (32766, 254),
            (32767, 253)
        ]
    );
    assert_eq!(priorities(&s, AF_INET6), [0, 32766]);
}

#[test]
fn disable_sync_ipv6_keeps_only_ipv6_rules_out() {
    let s = Setup::with_args("rules-nov6", &["--disable-sync-ipv6"]);
    rule(&s, false, "add pref 100 from 10.1.0.2 table 100");
    rule(&s, true, "add pref 100 from 2001:db8::/32 table 100");
    assert!(wait_until(SYNC, || priorities(&s, AF_INET) == [0, 100, 32766, 32767]));
    assert!(fp_rules(&s, AF_INET6).is_empty());
    rule(&s, true, "del pref 100");
    rule(&s, false, "del pref 100");
    assert_eq!(priorities(&s, AF_INET), [0, 32766, 32767]);
}

/// The kernel's RTM_NEWRULE message (from a dump) of the rule of `family`
/// at `priority`, as a notification would carry it.
fn rule_message(s: &Setup, family: u8, priority: u32) -> Vec<u8> {
    let ns = s.ns.name.clone();
    std::thread::spawn(move || {
        instance::netns::enter(&ns).unwrap();
        let mut sock = instance::netlink::NetlinkSocket::open(&[], 1 << 16).unwrap();
        let mut found = None;
        sock.dump(instance::netlink::rule::RTM_GETRULE, family, |m| {
            let Some(m) = m else { return };
            let spec = instance::netlink::rule::decode(m.payload).unwrap();
            if spec.priority == priority {
                let mut msg = ((16 + m.payload.len()) as u32).to_ne_bytes().to_vec();
                msg.extend_from_slice(&m.kind.to_ne_bytes());
                msg.extend_from_slice(&[0; 10]);
                msg.extend_from_slice(m.payload);
                found = Some(msg);
            }
        })
        .unwrap();
        found.expect("the rule")
    })
    .join()
    .unwrap()
}

#[test]
fn a_late_or_stray_notification_is_settled_by_a_re_dump() {
    let s = Setup::new("rules-late");
    rule(&s, false, "add pref 100 from 10.1.0.2 table 100");
    let msg = rule_message(&s, AF_INET, 100);
    let path = s.dir.path.join("late-newrule");
    // The notification of a rule the dump already had (as after a start
    // or an overrun): no second copy stays.
    std::fs::write(&path, &msg).unwrap();
    let answer = s.console(&format!("netlink replay {}", path.display()));
    assert_eq!(answer.trim(), "replayed 1 netlink messages");
    s.assert_equal_to_linux(SYNC);
    assert_eq!(priorities(&s, AF_INET), [0, 100, 32766, 32767]);
    // Its deletion, while Linux keeps the rule: it comes back.
    let mut del = msg.clone();
    del[4..6].copy_from_slice(&33u16.to_ne_bytes()); // RTM_DELRULE
    std::fs::write(&path, &del).unwrap();
    s.console(&format!("netlink replay {}", path.display()));
    s.assert_equal_to_linux(SYNC);
    assert_eq!(priorities(&s, AF_INET), [0, 100, 32766, 32767]);
    // A rule Linux never had: gone again.
    rule(&s, false, "del pref 100");
    std::fs::write(&path, &msg).unwrap();
    s.console(&format!("netlink replay {}", path.display()));
    s.assert_equal_to_linux(SYNC);
    assert_eq!(priorities(&s, AF_INET), [0, 32766, 32767]);
}
