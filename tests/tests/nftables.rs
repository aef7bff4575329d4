//! Netfilter rules from the real kernel: `nft` tables, chains and rules,
//! `iptables -A`/`-D` (iptables-nft: the same nf_tables objects), NAT rules,
//! and the disable flags (NAT under netfilter).

use std::time::Duration;

use fpc::{Object, QueryClient};
use fpsync_tests::{sh, Netns, Setup};

const SYNC: Duration = Duration::from_secs(2);

fn fp(s: &Setup) -> Vec<Object> {
    QueryClient::connect(&s.endpoint, "test", Duration::from_secs(5))
        .and_then(|mut c| c.dump())
        .unwrap()
}

fn count(s: &Setup, pred: impl Fn(&Object) -> bool) -> usize {
    fp(s).iter().filter(|o| pred(o)).count()
}

fn is_rule(o: &Object) -> bool {
    matches!(o, Object::NftRule(_))
}

fn is_nat_rule(o: &Object) -> bool {
    matches!(o, Object::NftRule(r) if r.nat)
}

fn in_ns(ns: &Netns, args: &[&str]) -> String {
    let mut full = vec!["ip", "netns", "exec", &ns.name];
    full.extend_from_slice(args);
    sh(&full)
}

fn nft(s: &Setup, cmd: &str) {
    in_ns(&s.ns, &["nft", cmd]);
    s.assert_equal_to_linux(SYNC);
}

#[test]
fn nft_tables_chains_rules() {
    let s = Setup::new("nft");
    nft(&s, "add table inet t");
    nft(
        &s,
        "add chain inet t input { type filter hook input priority 0; policy accept; }",
    );
    nft(&s, "add chain inet t other");
    nft(&s, "add rule inet t input ip saddr 10.0.0.0/8 counter drop");
    nft(&s, "add rule inet t input tcp dport 22 accept");
    nft(&s, "add rule inet t other udp dport 53 accept");
    assert_eq!(count(&s, is_rule), 3);
    assert_eq!(count(&s, |o| matches!(o, Object::NftChain(_))), 2);
    assert!(fp(&s).iter().any(
        |o| matches!(o, Object::NftChain(c) if c.hook == Some((1, 0)) && c.policy == Some(1))
    ));
    // NAT: a nat chain and a masquerade rule.
    nft(&s, "add table ip n");
    nft(
        &s,
        "add chain ip n post { type nat hook postrouting priority 100; }",
    );
    nft(&s, "add rule ip n post oifname lo masquerade");
    assert_eq!(count(&s, is_nat_rule), 1);
    // Delete a rule by handle, a chain, the tables.
    let handle = fp(&s)
        .into_iter()
        .find_map(|o| match o {
            Object::NftRule(r) if r.chain == "other" => Some(r.handle),
            _ => None,
        })
        .unwrap();
    nft(&s, &format!("delete rule inet t other handle {handle}"));
    assert_eq!(count(&s, is_rule), 3);
    nft(&s, "delete chain inet t other");
    nft(&s, "delete table inet t");
    nft(&s, "flush ruleset");
    assert_eq!(
        count(&s, |o| matches!(
            o,
            Object::NftTable(_) | Object::NftChain(_) | Object::NftRule(_)
        )),
        0
    );
}

#[test]
fn iptables_append_delete_and_nat() {
    let s = Setup::new("ipt");
    let ipt = |args: &str| {
        let mut full = vec!["iptables"];
        full.extend(args.split_whitespace());
        in_ns(&s.ns, &full);
        s.assert_equal_to_linux(SYNC);
    };
    ipt("-A INPUT -s 10.0.0.0/8 -j DROP");
    ipt("-A INPUT -p tcp --dport 22 -j ACCEPT");
    assert_eq!(count(&s, is_rule), 2);
    ipt("-t nat -A POSTROUTING -o lo -j MASQUERADE");
    assert_eq!(count(&s, is_nat_rule), 1);
    ipt("-D INPUT -s 10.0.0.0/8 -j DROP");
    ipt("-t nat -D POSTROUTING -o lo -j MASQUERADE");
    assert_eq!(count(&s, is_rule), 1);
    assert_eq!(count(&s, is_nat_rule), 0);
}

#[test]
fn disable_flags() {
    // NAT off: NAT chains and rules stay out, filter rules sync.
    let s = Setup::with_args("nft-nonat", &["--disable-sync-nat"]);
    nft(&s, "add table ip n");
    nft(
        &s,
        "add chain ip n post { type nat hook postrouting priority 100; }",
    );
    nft(
        &s,
        "add chain ip n fw { type filter hook forward priority 0; }",
    );
    nft(&s, "add rule ip n post oifname lo masquerade");
    nft(&s, "add rule ip n fw ip daddr 192.0.2.1 drop");
    assert_eq!(count(&s, is_rule), 1);
    assert_eq!(count(&s, is_nat_rule), 0);
    assert_eq!(
        count(
            &s,
            |o| matches!(o, Object::NftChain(c) if c.chain_type == "nat")
        ),
        0
    );
    drop(s);
    // Netfilter off: nothing of it (NAT and conntrack follow).
    let s = Setup::with_args("nft-off", &["--disable-sync-netfilter"]);
    nft(&s, "add table ip n");
    nft(
        &s,
        "add chain ip n fw { type filter hook forward priority 0; }",
    );
    nft(&s, "add rule ip n fw ip daddr 192.0.2.1 drop");
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(
        count(&s, |o| matches!(
            o,
            Object::NftTable(_) | Object::NftChain(_) | Object::NftRule(_)
        )),
        0
    );
}

#[test]
fn ebtables_rules_answer_to_their_own_flag() {
    // ebtables on Debian 12 is ebtables-nft: bridge-family nf_tables rules.
    let is_bridge_rule = |o: &Object| matches!(o, Object::NftRule(r) if r.family == 7);
    let s = Setup::new("ebt");
    in_ns(
        &s.ns,
        &[
            "ebtables",
            "-A",
            "FORWARD",
            "-s",
            "02:00:00:00:00:01",
            "-j",
            "DROP",
        ],
    );
    s.assert_equal_to_linux(SYNC);
    assert_eq!(count(&s, is_bridge_rule), 1);
    in_ns(
        &s.ns,
        &[
            "ebtables",
            "-D",
            "FORWARD",
            "-s",
            "02:00:00:00:00:01",
            "-j",
            "DROP",
        ],
    );
    s.assert_equal_to_linux(SYNC);
    assert_eq!(count(&s, is_bridge_rule), 0);
    drop(s);
    let s = Setup::with_args("ebt-off", &["--disable-sync-ebtables"]);
    in_ns(
        &s.ns,
        &[
            "ebtables",
            "-A",
            "FORWARD",
            "-s",
            "02:00:00:00:00:01",
            "-j",
            "DROP",
        ],
    );
    nft(&s, "add table ip f");
    s.assert_equal_to_linux(SYNC);
    assert_eq!(
        count(&s, |o| matches!(o, Object::NftTable(t) if t.family == 7)),
        0
    );
    assert_eq!(
        count(&s, |o| matches!(o, Object::NftTable(t) if t.family == 2)),
        1,
        "ip tables still sync"
    );
}

/// The handles of chain inet t `chain` in the kernel's own order
/// (`nft -a list chain`).
fn kernel_order(s: &Setup, chain: &str) -> Vec<u64> {
    in_ns(&s.ns, &["nft", "-a", "list", "chain", "inet", "t", chain])
        .lines()
        .filter(|l| !l.contains("chain ") && !l.contains("table "))
        .filter_map(|l| l.rsplit_once("# handle ")?.1.trim().parse().ok())
        .collect()
}

/// fpd's rules of chain inet t `chain`, followed from `prev` = 0.
fn fp_order(s: &Setup, chain: &str) -> Vec<u64> {
    let rules: Vec<(u64, u64)> = fp(s)
        .into_iter()
        .filter_map(|o| match o {
            Object::NftRule(r) if r.table == "t" && r.chain == chain => Some((r.handle, r.prev)),
            _ => None,
        })
        .collect();
    let mut out = Vec::new();
    let mut at = 0;
    while let Some(&(h, _)) = rules.iter().find(|(_, p)| *p == at) {
        if out.len() > rules.len() {
            break;
        }
        out.push(h);
        at = h;
    }
    assert_eq!(
        out.len(),
        rules.len(),
        "fpd's links are not one list: {rules:?}"
    );
    out
}

#[test]
fn inserted_and_positioned_rules_keep_the_kernels_order() {
    let s = Setup::new("nft-order");
    nft(&s, "add table inet t");
    nft(
        &s,
        "add chain inet t fw { type filter hook forward priority 0; policy accept; }",
    );
    nft(&s, "add rule inet t fw udp dport 1 accept");
    let first = kernel_order(&s, "fw")[0];
    nft(&s, "add rule inet t fw udp dport 2 accept");
    // Inserted first, then after the first rule (not last): handle order
    // is not the kernel's.
    nft(&s, "insert rule inet t fw udp dport 3 drop");
    nft(
        &s,
        &format!("add rule inet t fw position {first} udp dport 4 counter"),
    );
    nft(
        &s,
        &format!("insert rule inet t fw position {first} udp dport 5 drop"),
    );
    let kernel = kernel_order(&s, "fw");
    assert_eq!(kernel.len(), 5);
    let mut by_handle = kernel.clone();
    by_handle.sort();
    assert_ne!(kernel, by_handle, "the test must not be in handle order");
    assert_eq!(fp_order(&s, "fw"), kernel);
    // The oracle (`nft -j list ruleset`, each rule's predecessor the one
    // listed before it) agrees with fpd's `prev` of every rule.
    assert_eq!(s.oracle_diff(), Vec::<String>::new());
    // A delete moves its successor's predecessor.
    nft(&s, &format!("delete rule inet t fw handle {first}"));
    assert_eq!(fp_order(&s, "fw"), kernel_order(&s, "fw"));
}

fn set_names(s: &Setup) -> Vec<String> {
    let mut names: Vec<String> = fp(s)
        .into_iter()
        .filter_map(|o| match o {
            Object::NftSet(t) => Some(t.name),
            _ => None,
        })
        .collect();
    names.sort();
    names
}

fn elements_of(s: &Setup, set: &str) -> usize {
    count(s, |o| matches!(o, Object::NftSetElem(e) if e.set == set))
}

#[test]
fn nft_sets_maps_and_their_elements() {
    let s = Setup::new("nftset");
    nft(&s, "add table inet t");
    nft(
        &s,
        "add chain inet t fw { type filter hook forward priority 0; }",
    );
    nft(&s, "add chain inet t c2");
    nft(&s, "add set inet t ports { type inet_service; }");
    nft(&s, "add element inet t ports { 22, 80, 443 }");
    nft(
        &s,
        "add set inet t nets { type ipv4_addr; flags interval; }",
    );
    nft(
        &s,
        "add element inet t nets { 10.2.0.0/25, 10.3.0.1-10.3.0.9 }",
    );
    nft(&s, "add map inet t marks { type ipv4_addr : mark; }");
    nft(&s, "add element inet t marks { 10.2.0.2 : 7 }");
    nft(&s, "add rule inet t fw tcp dport @ports accept");
    nft(&s, "add rule inet t fw ip daddr @nets drop");
    nft(
        &s,
        "add rule inet t fw udp dport vmap { 5678 : accept, 4444 : jump c2, * : continue }",
    );
    nft(
        &s,
        "add rule inet t fw ip daddr . udp dport { 10.2.0.2 . 7777 } drop",
    );
    let names = set_names(&s);
    assert_eq!(names.len(), 5, "{names:?}");
    assert!(names.iter().filter(|n| n.starts_with("__")).count() == 2);
    assert_eq!(elements_of(&s, "ports"), 3);
    // The interval set: a leading end marker, then each range's start
    // and end + 1.
    assert_eq!(elements_of(&s, "nets"), 5);
    nft(&s, "delete element inet t ports { 80 }");
    assert_eq!(elements_of(&s, "ports"), 2);
    nft(&s, "flush set inet t ports");
    assert_eq!(elements_of(&s, "ports"), 0);
    nft(&s, "add element inet t ports { 8080 }");
    // A rule's anonymous set goes with it.
    let handle = fp(&s)
        .into_iter()
        .find_map(|o| match o {
            Object::NftRule(r) if r.exprs.windows(6).any(|w| w == b"__map0") => Some(r.handle),
            _ => None,
        })
        .expect("the vmap rule");
    nft(&s, &format!("delete rule inet t fw handle {handle}"));
    assert_eq!(set_names(&s).len(), 4);
    nft(&s, "flush chain inet t fw");
    nft(&s, "delete set inet t nets");
    assert_eq!(elements_of(&s, "nets"), 0);
    // Elements that expire (the kernel removes them unannounced) and a
    // dynamic set's (the packet path adds them unannounced) are not
    // synced: their sets are, and fpd leaves lookups in them to Linux.
    nft(&s, "add set inet t tmo { type ipv4_addr; flags timeout; }");
    nft(
        &s,
        "add element inet t tmo { 10.0.0.1 timeout 1s, 10.0.0.2 }",
    );
    nft(&s, "add set inet t dyn { type ipv4_addr; flags dynamic; }");
    nft(&s, "add element inet t dyn { 10.0.0.3 }");
    assert_eq!(elements_of(&s, "tmo") + elements_of(&s, "dyn"), 0);
    std::thread::sleep(Duration::from_millis(1500));
    s.assert_equal_to_linux(SYNC);
    nft(&s, "delete table inet t");
    assert_eq!(
        count(&s, |o| matches!(
            o,
            Object::NftSet(_) | Object::NftSetElem(_)
        )),
        0
    );
}

#[test]
fn nft_sets_after_a_restart_of_cmgrd() {
    // Sets made before cmgrd starts come from its dump (one element dump
    // per set).
    let mut s = Setup::new("nftset2");
    in_ns(
        &s.ns,
        &[
            "nft",
            "add table ip t; add set ip t a { type ipv4_addr; }; add element ip t a { 192.0.2.1, 192.0.2.2 }",
        ],
    );
    s.cmgrd.as_mut().unwrap().kill();
    s.start_cmgrd();
    s.assert_equal_to_linux(SYNC);
    assert_eq!(elements_of(&s, "a"), 2);
}
