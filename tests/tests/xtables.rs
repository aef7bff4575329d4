//! Legacy iptables (x_tables) from the real kernel: `iptables-legacy` and
//! `ip6tables-legacy` changes reach the fast path through
//! AUDIT_NETFILTER_CFG records when audit is on, by polling when it is
//! off; the disable flags; restarts of either side.
//!
//! Every test sets the machine-wide audit switch itself (and puts it back):
//! `AuditSetting` makes them run one at a time.

use std::time::Duration;

use fpc::{Object, QueryClient, XtChain, XtRule, XtTarget, AF_INET, AF_INET6};
use fpsync_tests::{sh, wait_until, AuditSetting, Setup};

const SYNC: Duration = Duration::from_secs(3);

fn fp(s: &Setup) -> Vec<Object> {
    QueryClient::connect(&s.endpoint, "test", Duration::from_secs(5))
        .and_then(|mut c| c.dump())
        .unwrap()
}

fn xt_rules(s: &Setup, family: u8, table: &str, chain: &str) -> Vec<XtRule> {
    let mut v: Vec<XtRule> = fp(s)
        .into_iter()
        .filter_map(|o| match o {
            Object::XtRule(r) if r.family == family && r.table == table && r.chain == chain => {
                Some(*r)
            }
            _ => None,
        })
        .collect();
    v.sort_by_key(|r| r.position);
    v
}

fn xt_chain(s: &Setup, family: u8, table: &str, name: &str) -> Option<XtChain> {
    fp(s).into_iter().find_map(|o| match o {
        Object::XtChain(c) if c.family == family && c.table == table && c.name == name => Some(c),
        _ => None,
    })
}

fn xt_count(s: &Setup) -> usize {
    fp(s)
        .iter()
        .filter(|o| matches!(o, Object::XtChain(_) | Object::XtRule(_)))
        .count()
}

/// Runs `tool args` in the test's namespace, then waits for the check.
fn run(s: &Setup, tool: &str, args: &str) {
    let mut full = vec!["ip", "netns", "exec", &s.ns.name, tool];
    full.extend(args.split_whitespace());
    sh(&full);
    s.assert_in_sync(SYNC);
}

fn ipt(s: &Setup, args: &str) {
    run(s, "iptables-legacy", args);
}

fn ip6t(s: &Setup, args: &str) {
    run(s, "ip6tables-legacy", args);
}

fn sources(rules: &[XtRule]) -> Vec<String> {
    rules.iter().map(|r| r.src.to_string()).collect()
}

fn sync_stat(s: &Setup, name: &str) -> serde_json::Value {
    let v: serde_json::Value = serde_json::from_str(&s.console("show sync --json")).unwrap();
    v[name].clone()
}

/// The AUDIT_NETFILTER_CFG count on `netlink-audit-listen-<id>`.
fn netfilter_cfg_records(s: &Setup) -> u64 {
    let out = s.console("show netlink");
    let socket = format!("netlink-audit-listen-{}", s.instance);
    let mut lines = out.lines().skip_while(|l| !l.starts_with(&socket));
    assert!(lines.next().is_some(), "no {socket} in:\n{out}");
    lines
        .take_while(|l| l.starts_with(' '))
        .find_map(|l| {
            let mut w = l.split_whitespace();
            (w.next() == Some("AUDIT_NETFILTER_CFG")).then(|| w.next()?.parse().ok())?
        })
        .unwrap_or(0)
}

/// Every kind of change, each checked against Linux and in the fast path.
fn every_change(s: &Setup) {
    ipt(s, "-A INPUT -s 10.0.0.0/8 -j DROP");
    let input = xt_rules(s, AF_INET, "filter", "INPUT");
    assert_eq!(sources(&input), ["10.0.0.0"]);
    assert_eq!(input[0].target, XtTarget::Verdict(-1));
    ipt(s, "-I INPUT 1 -s 10.1.0.0/16 -p tcp --dport 22 -j ACCEPT");
    let input = xt_rules(s, AF_INET, "filter", "INPUT");
    assert_eq!(sources(&input), ["10.1.0.0", "10.0.0.0"]);
    assert_eq!(input[0].matches[0].name, "tcp");
    ipt(s, "-R INPUT 2 -s 10.2.0.0/16 -j DROP");
    assert_eq!(
        sources(&xt_rules(s, AF_INET, "filter", "INPUT")),
        ["10.1.0.0", "10.2.0.0"]
    );
    ipt(s, "-D INPUT 1");
    assert_eq!(
        sources(&xt_rules(s, AF_INET, "filter", "INPUT")),
        ["10.2.0.0"]
    );
    // A user chain and a jump to it.
    ipt(s, "-N web");
    assert!(xt_chain(s, AF_INET, "filter", "web").is_some());
    ipt(s, "-A web -p udp --dport 53 -j ACCEPT");
    ipt(s, "-A INPUT -s 192.0.2.0/24 -j web");
    let input = xt_rules(s, AF_INET, "filter", "INPUT");
    assert_eq!(input[1].target, XtTarget::Jump("web".into()));
    assert_eq!(xt_rules(s, AF_INET, "filter", "web").len(), 1);
    ipt(s, "-D INPUT -s 192.0.2.0/24 -j web");
    ipt(s, "-F web");
    ipt(s, "-X web");
    assert!(xt_chain(s, AF_INET, "filter", "web").is_none());
    // Policy.
    ipt(s, "-P FORWARD DROP");
    let forward = xt_chain(s, AF_INET, "filter", "FORWARD").unwrap();
    assert_eq!((forward.hook, forward.policy), (Some(2), Some(-1)));
    ipt(s, "-F INPUT");
    assert!(xt_rules(s, AF_INET, "filter", "INPUT").is_empty());
    // NAT.
    ipt(s, "-t nat -A POSTROUTING -o lo -j MASQUERADE");
    ipt(
        s,
        "-t nat -A POSTROUTING -s 10.1.0.0/16 -j SNAT --to-source 192.0.2.9",
    );
    let post = xt_rules(s, AF_INET, "nat", "POSTROUTING");
    let targets: Vec<&str> = post
        .iter()
        .map(|r| match &r.target {
            XtTarget::Extension { name, .. } => name.as_str(),
            _ => "?",
        })
        .collect();
    assert_eq!(targets, ["MASQUERADE", "SNAT"]);
    // IPv6.
    ip6t(s, "-A INPUT -s 2001:db8::/32 -j DROP");
    let v6 = xt_rules(s, AF_INET6, "filter", "INPUT");
    assert_eq!(sources(&v6), ["2001:db8::"]);
    ip6t(s, "-D INPUT -s 2001:db8::/32 -j DROP");
    assert!(xt_rules(s, AF_INET6, "filter", "INPUT").is_empty());
    assert!(xt_chain(s, AF_INET6, "filter", "INPUT").is_some());
}

#[test]
fn legacy_rules_arrive_through_audit_records() {
    let _audit = AuditSetting::set(true);
    let s = Setup::with_args("xt-audit", &["--link-poll", "0"]);
    assert_eq!(sync_stat(&s, "xtables"), "audit");
    every_change(&s);
    assert!(
        netfilter_cfg_records(&s) > 0,
        "{}",
        s.console("show netlink")
    );
    // Records, not polls: nothing was found unannounced.
    assert_eq!(sync_stat(&s, "silent_changes"), 0);
}

#[test]
fn legacy_rules_are_polled_while_audit_is_off() {
    let audit = AuditSetting::set(false);
    let s = Setup::with_args("xt-poll", &["--link-poll", "0"]);
    assert_eq!(sync_stat(&s, "xtables"), "poll");
    ipt(&s, "-A INPUT -s 10.0.0.0/8 -j DROP");
    assert_eq!(
        sources(&xt_rules(&s, AF_INET, "filter", "INPUT")),
        ["10.0.0.0"]
    );
    let silent = sync_stat(&s, "silent_changes").as_u64().unwrap();
    assert!(silent > 0, "the poll found the rule: counted as silent");
    assert_eq!(netfilter_cfg_records(&s), 0);
    // Audit switched on later: changes come as records again.
    drop(audit);
    let _audit = AuditSetting::set(true);
    assert!(wait_until(SYNC, || sync_stat(&s, "xtables") == "audit"));
    ipt(&s, "-A INPUT -s 10.3.0.0/16 -j ACCEPT");
    assert_eq!(xt_rules(&s, AF_INET, "filter", "INPUT").len(), 2);
    assert!(netfilter_cfg_records(&s) > 0);
    assert_eq!(
        sync_stat(&s, "silent_changes").as_u64().unwrap(),
        silent,
        "nothing more found by polling"
    );
}

#[test]
fn disable_flags_keep_legacy_rules_out() {
    let _audit = AuditSetting::set(true);
    let setup = |tag: &str, flag: &str| {
        let s = Setup::with_args(tag, &[flag]);
        ipt(&s, "-A INPUT -s 10.0.0.0/8 -j DROP");
        ipt(&s, "-t nat -A POSTROUTING -o lo -j MASQUERADE");
        ip6t(&s, "-A INPUT -s 2001:db8::/32 -j DROP");
        s
    };
    let s = setup("xt-nofilter", "--disable-sync-netfilter");
    assert_eq!(xt_count(&s), 0);
    drop(s);
    let s = setup("xt-nonat", "--disable-sync-nat");
    assert!(xt_chain(&s, AF_INET, "nat", "POSTROUTING").is_none());
    assert_eq!(xt_rules(&s, AF_INET, "filter", "INPUT").len(), 1);
    assert_eq!(xt_rules(&s, AF_INET6, "filter", "INPUT").len(), 1);
    drop(s);
    let s = setup("xt-noipv6", "--disable-sync-ipv6");
    assert!(xt_chain(&s, AF_INET6, "filter", "INPUT").is_none());
    assert_eq!(xt_rules(&s, AF_INET, "filter", "INPUT").len(), 1);
    assert_eq!(xt_rules(&s, AF_INET, "nat", "POSTROUTING").len(), 1);
}

#[test]
fn restarts_of_either_side_end_in_sync() {
    let _audit = AuditSetting::set(true);
    let mut s = Setup::new("xt-restart");
    ipt(&s, "-N web");
    ipt(&s, "-A web -j ACCEPT");
    ipt(&s, "-A INPUT -s 10.0.0.0/8 -j web");
    ip6t(&s, "-A OUTPUT -d 2001:db8::1 -j DROP");
    let before = xt_count(&s);
    assert!(before >= 10, "{before} legacy objects");
    // fpd killed: the replay carries the legacy objects.
    s.fpd.as_mut().unwrap().kill();
    s.start_fpd();
    s.assert_in_sync(Duration::from_secs(10));
    assert_eq!(xt_count(&s), before);
    // cmgrd killed, rules changed meanwhile: the dump brings the new ones,
    // the sweep takes the old ones.
    s.cmgrd.as_mut().unwrap().kill();
    let exec = |tool: &str, args: &str| {
        let mut full = vec!["ip", "netns", "exec", &s.ns.name, tool];
        full.extend(args.split_whitespace());
        sh(&full);
    };
    exec("iptables-legacy", "-D INPUT -s 10.0.0.0/8 -j web");
    exec("iptables-legacy", "-F web");
    exec("iptables-legacy", "-X web");
    exec("iptables-legacy", "-A INPUT -s 10.9.0.0/16 -j DROP");
    s.start_cmgrd();
    s.assert_in_sync(Duration::from_secs(10));
    assert!(xt_chain(&s, AF_INET, "filter", "web").is_none(), "swept");
    assert_eq!(
        sources(&xt_rules(&s, AF_INET, "filter", "INPUT")),
        ["10.9.0.0"]
    );
    assert_eq!(xt_rules(&s, AF_INET6, "filter", "OUTPUT").len(), 1);
}

#[test]
fn an_overrun_of_the_audit_socket_resyncs() {
    let _audit = AuditSetting::set(true);
    // The smallest receive buffers: a few records fill the audit socket's.
    let s = Setup::with_args("xt-overrun", &["-l", "4K", "--link-poll", "0"]);
    let cmgrd = s.cmgrd.as_ref().unwrap();
    cmgrd.signal(libc::SIGSTOP);
    let exec = |args: &str| {
        let mut full = vec!["ip", "netns", "exec", &s.ns.name, "iptables-legacy"];
        full.extend(args.split_whitespace());
        sh(&full);
    };
    for i in 0..40 {
        exec(&format!("-A INPUT -s 10.0.{i}.0/24 -j DROP"));
    }
    cmgrd.signal(libc::SIGCONT);
    s.assert_in_sync(Duration::from_secs(10));
    assert_eq!(xt_rules(&s, AF_INET, "filter", "INPUT").len(), 40);
    assert!(sync_stat(&s, "overruns").as_u64().unwrap() > 0);
    let log = cmgrd.log();
    assert!(
        log.contains("proto=Audit"),
        "the audit listener overran:\n{log}"
    );
    // Reopened (in the init namespace): records still arrive. Records of
    // other tests' namespaces reach this 4K socket too and may overrun it
    // again meanwhile: then the resync that follows carries the change.
    let before = netfilter_cfg_records(&s);
    let overruns = sync_stat(&s, "overruns").as_u64().unwrap();
    ipt(&s, "-A INPUT -s 10.1.0.0/16 -j ACCEPT");
    assert!(wait_until(SYNC, || netfilter_cfg_records(&s) > before
        || sync_stat(&s, "overruns").as_u64().unwrap() > overruns));
    s.assert_in_sync(Duration::from_secs(10));
    assert_eq!(xt_rules(&s, AF_INET, "filter", "INPUT").len(), 41);
    assert_eq!(sync_stat(&s, "xtables"), "audit");
}
