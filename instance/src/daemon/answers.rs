//! The console's questions answered (the seed's `show ...`, `ipsec ha
//! ...`, `netlink replay`), on the processor's thread: each answer reads
//! the processor's state as it is between two events, so it is consistent
//! with itself. The console module carries lines to and from clients and
//! never sees the processor.

use serde_json::json;

use super::Processor;
use crate::console::quote;
use crate::netlink::wire::type_name;
use crate::stats::SocketStats;

/// The processor's side of `netlink replay`: the bytes were read by the
/// console thread.
pub fn replayed(p: &mut Processor, xfrm: bool, bytes: &[u8]) -> String {
    let n = if xfrm {
        p.feed_xfrm(bytes)
    } else {
        p.feed_netlink(bytes)
    };
    format!("replayed {n} netlink messages\n")
}

const HELP: &str = "\
help - Show help
? - Show help
quit - Quit the shell
show - show statistics
ipsec - ipsec commands
netlink - netlink commands
";

const SHOW_HELP: &str = "\
pid - show pid
netlink - show netlink packets
queue - show queued msg
conf - show conf variables
modules - show registered modules
interfaces - show registered interfaces
sync-features - show synchronized feartures
sync - show synchronization state
stats - show fast path statistics beside Linux's own counters
rules - show the policy routing rules synced, in the order they apply
(add --json to any show for JSON)
";

const NETLINK_HELP: &str = "\
replay FILE - feed the netlink messages of FILE (as the kernel sends them)
  through the decoder and sync path, as if the listener had received them
  (a regular file of at most 64 MiB)
replay xfrm FILE - the same for NETLINK_XFRM messages
";

const IPSEC_HELP: &str = "\
ha show - show IPsec High Availability status
ha enable [blade B] - enable IPsec HA (SA sequence numbers sync)
ha disable [blade B] - disable IPsec HA
";

/// Answers one console command. Commands that change state take `&mut`.
pub fn answer(p: &mut Processor, line: &str) -> String {
    let mut words: Vec<&str> = line.split_whitespace().collect();
    let json = words.last() == Some(&"--json");
    if json {
        words.pop();
    }
    let out = |v: serde_json::Value| format!("{v}\n");
    match words.as_slice() {
        [] | ["help"] | ["?"] => HELP.to_owned(),
        ["show"] | ["show", "help"] | ["show", "?"] => SHOW_HELP.to_owned(),
        ["show", "pid"] if json => out(json!({ "pid": std::process::id() })),
        ["show", "pid"] => format!("pid: {}\n", std::process::id()),
        ["show", "netlink"] if json => out(json!(sockets(p))),
        ["show", "netlink"] => show_netlink(&sockets(p)),
        // Read by the console thread (`submit`), never here.
        ["netlink", "replay", ..] => {
            "error: netlink replay files are read by the console (daemonctl)\n".to_owned()
        }
        ["show", "queue"] if json => {
            let blades: Vec<_> = p
                .blades
                .iter()
                .map(|b| json!({"blade": b.blade, "endpoint": b.endpoint.to_string(), "queue": b.stats.snapshot()}))
                .collect();
            out(json!(blades))
        }
        ["show", "queue"] => show_queue(p),
        ["show", "sync"] => show_sync(p, json),
        ["show", "rules"] => show_rules(p, json),
        ["show", "stats"] => show_stats(p, json),
        ["show", "conf"] => show_conf(p, json),
        ["show", "modules"] if json => out(json!(MODULES)),
        ["show", "modules"] => MODULES.iter().map(|m| format!("{m}\n")).collect(),
        ["show", "interfaces"] => show_interfaces(p, json),
        ["show", "sync-features"] => show_sync_features(p, json),
        ["ipsec"] | ["ipsec", "help"] | ["ipsec", "ha"] => IPSEC_HELP.to_owned(),
        ["netlink"] | ["netlink", "help"] => NETLINK_HELP.to_owned(),
        ["ipsec", "ha", "show"] => show_ipsec_ha(p, json),
        ["ipsec", "ha", verb @ ("enable" | "disable"), rest @ ..] => {
            let enable = *verb == "enable";
            let blades: Vec<u32> = match rest {
                [] => p.ipsec_ha.keys().copied().collect(),
                ["blade", b] => match b.parse::<u32>() {
                    Ok(b) if p.ipsec_ha.contains_key(&b) => vec![b],
                    _ => {
                        return format!(
                            "error: no blade {} in this instance (blades: {})\n",
                            quote(b),
                            blade_list(p)
                        )
                    }
                },
                _ => {
                    return format!(
                        "error: usage: ipsec ha {verb} [blade B], not {}\n",
                        quote(line)
                    )
                }
            };
            for b in blades {
                p.set_ipsec_ha(b, enable);
            }
            tracing::info!(enable, "IPsec High Availability switched");
            show_ipsec_ha(p, json)
        }
        _ => format!("error: unknown command {} (try help)\n", quote(line)),
    }
}

/// The sockets to list: the replay pseudo-socket only once used.
fn sockets(p: &Processor) -> Vec<&SocketStats> {
    let mut v = vec![
        &p.listen_stats,
        &p.cmd_stats,
        &p.xfrm_listen_stats,
        &p.xfrm_cmd_stats,
        &p.ct_listen_stats,
        &p.ct_cmd_stats,
        &p.audit_listen_stats,
    ];
    if p.replay_stats.packets > 0 {
        v.push(&p.replay_stats);
    }
    if p.xfrm_replay_stats.packets > 0 {
        v.push(&p.xfrm_replay_stats);
    }
    v
}

/// The netlink families this build registers (the seed's `show modules`).
const MODULES: &[&str] = &[
    "route",
    "xfrm",
    "xfrm-migrate",
    "netfilter-conntrack",
    "netfilter-nftables",
    "netfilter-xtables-audit",
];

fn blade_list(p: &Processor) -> String {
    let ids: Vec<String> = p.ipsec_ha.keys().map(u32::to_string).collect();
    ids.join(", ")
}

fn show_ipsec_ha(p: &Processor, json: bool) -> String {
    if json {
        let per: serde_json::Map<String, serde_json::Value> = p
            .ipsec_ha
            .iter()
            .map(|(b, on)| (b.to_string(), json!(on)))
            .collect();
        return format!("{}\n", json!({ "blades": per }));
    }
    let states: std::collections::BTreeSet<bool> = p.ipsec_ha.values().copied().collect();
    let word = |on: bool| if on { "enabled" } else { "disabled" };
    match states.len() {
        0 | 1 => format!(
            "IPsec High Availability {}\n",
            word(states.into_iter().next().unwrap_or(false))
        ),
        _ => p
            .ipsec_ha
            .iter()
            .map(|(b, on)| format!("IPsec High Availability {} (blade {b})\n", word(*on)))
            .collect(),
    }
}

fn show_conf(p: &Processor, json: bool) -> String {
    let c = &p.config;
    let blades: Vec<String> = c.blades.iter().map(|(b, ep)| format!("{b}={ep}")).collect();
    let vars: Vec<(&str, serde_json::Value)> = vec![
        ("instance", json!(c.instance)),
        ("netns", json!(c.netns)),
        ("blades", json!(blades)),
        ("sync_mask", json!(format!("{:#07x}", c.features.mask))),
        ("sync_bpf_all", json!(c.bpf_all)),
        (
            "sync_bpf_pattern_only",
            json!(c.features.bpf_pattern_only()),
        ),
        ("sync_ipsec_replay", json!(c.ipsec_replay)),
        ("debug", json!(format!("{:#x}", c.debug))),
        ("foreground", json!(c.foreground)),
        ("socket_buffer", json!(c.socket_buffer)),
        ("netlink_buffer", json!(c.netlink_buffer)),
        ("max_queue", json!(c.max_queue)),
        (
            "link_poll_ms",
            json!(c.link_poll.map(|d| d.as_millis() as u64).unwrap_or(0)),
        ),
        ("console", json!(c.console().display().to_string())),
        ("pid_file", json!(c.pid_file.display().to_string())),
    ];
    if json {
        let map: serde_json::Map<String, serde_json::Value> =
            vars.into_iter().map(|(k, v)| (k.to_owned(), v)).collect();
        return format!("{}\n", serde_json::Value::Object(map));
    }
    vars.into_iter()
        .map(|(k, v)| match v {
            serde_json::Value::String(s) => format!("{k}={s}\n"),
            serde_json::Value::Null => format!("{k}=\n"),
            other => format!("{k}={other}\n"),
        })
        .collect()
}

fn show_sync_features(p: &Processor, json: bool) -> String {
    let features = &p.config.features;
    let listed = crate::features::FEATURES
        .iter()
        .filter(|f| f.bit != crate::features::TAP_PATTERN_ONLY);
    if json {
        let map: serde_json::Map<String, serde_json::Value> = listed
            .map(|f| {
                (
                    f.name.to_owned(),
                    json!({"enabled": features.enabled(f.bit),
                           "synchronized_by_this_build": f.bit & crate::features::IMPLEMENTED != 0}),
                )
            })
            .collect();
        return format!(
            "{}\n",
            json!({"mask": format!("{:#07x}", features.mask),
                   "bpf_pattern_only": features.bpf_pattern_only(),
                   "features": map})
        );
    }
    let mut out = String::from(
        "Cache manager uses fpsync configuration\nFeatures Status (enabled/disabled)\n",
    );
    for f in listed {
        let state = if features.enabled(f.bit) {
            "enabled"
        } else {
            "disabled"
        };
        out += &format!("{:<16}{state}\n", f.name);
    }
    out
}

/// A stable 32-bit id of an interface: FNV-1a of the namespace and the
/// ifindex (names change, ifindexes are not reused while the link lives).
pub fn ifuid(netns: &str, ifindex: u32) -> u32 {
    let mut h: u32 = 0x811c_9dc5;
    for b in netns.bytes().chain(ifindex.to_be_bytes()) {
        h ^= b as u32;
        h = h.wrapping_mul(0x0100_0193);
    }
    h
}

/// The seed's interface type (24 loopback, 6 Ethernet-like) and our
/// subtype by link kind.
fn if_type(l: &fpc::Link) -> (u32, u32) {
    const ARPHRD_LOOPBACK: u16 = 772;
    let ty = if l.link_type == ARPHRD_LOOPBACK {
        24
    } else {
        6
    };
    let subtype = match l.kind.as_str() {
        "veth" => 1,
        "vlan" => 2,
        "macvlan" | "macvtap" => 3,
        "vxlan" => 4,
        "bridge" => 5,
        "bond" => 6,
        "gre" | "gretap" | "ip6gre" | "ip6gretap" => 7,
        "tun" => 8,
        "ipip" | "sit" | "ip6tnl" => 9,
        "vti" | "vti6" => 10,
        _ => 0,
    };
    (ty, subtype)
}

fn show_interfaces(p: &Processor, json: bool) -> String {
    use fpc::{Object, ObjectKey};
    let ns = p.config.netns.clone().unwrap_or_default();
    let blade = p.config.blades.first().map(|(b, _)| *b).unwrap_or(0);
    let mut links: Vec<&fpc::Link> = p
        .cache
        .objects(fpc::ObjectKind::Link)
        .filter_map(|o| match o {
            Object::Link(l) => Some(l),
            _ => None,
        })
        .collect();
    links.sort_by_key(|l| std::cmp::Reverse(l.ifindex));
    let master_of = |l: &fpc::Link| match l.master {
        0 => None,
        m => match p.cache.get(&ObjectKey::Link(m)) {
            Some(Object::Link(master)) => Some(master.clone()),
            _ => None,
        },
    };
    let mac = |m: &[u8]| {
        m.iter()
            .map(|b| format!("{b:02x}"))
            .collect::<Vec<_>>()
            .join(":")
    };
    if json {
        let list: Vec<_> = links
            .iter()
            .map(|l| {
                let (ty, subtype) = if_type(l);
                let master = master_of(l);
                json!({
                    "name": l.name, "vrfid": 0, "ifindex": l.ifindex,
                    "ifuid": format!("{:#x}", ifuid(&ns, l.ifindex)),
                    "type": ty, "subtype": subtype, "flags": format!("{:#x}", l.flags), "mtu": l.mtu,
                    "master_ifuid": format!("{:#x}", master.as_ref().map(|m| ifuid(&ns, m.ifindex)).unwrap_or(0)),
                    "vnb_nodeid": "0x0",
                    "in_l_bond": master.as_ref().is_some_and(|m| m.kind == "bond"),
                    "blade_id": blade, "kind": l.kind, "mac": mac(&l.mac), "link": l.link,
                    "operstate": l.operstate, "info": l.info.to_string().trim(),
                })
            })
            .collect();
        return format!("{}\n", json!(list));
    }
    let mut out = String::from("Interfaces list:\n");
    let mut bridge_ports = String::new();
    for l in &links {
        let (ty, subtype) = if_type(l);
        let master = master_of(l);
        let master_uid = master.as_ref().map(|m| ifuid(&ns, m.ifindex)).unwrap_or(0);
        out += &format!(
            "{} vrfid 0 (ifindex: {}, ifuid: {:#x})\n\
             \x20 type: {ty}, subtype: {subtype}, flags: {:#x}, mtu: {}\n\
             \x20 master_ifuid: {master_uid:#x}, vnb_nodeid: 0x0\n\
             \x20 in_l_bond: {}, blade_id: {blade}\n\
             \x20 kind: {}, mac: {}, link: {}, operstate: {}{}\n",
            l.name,
            l.ifindex,
            ifuid(&ns, l.ifindex),
            l.flags,
            l.mtu,
            if master.as_ref().is_some_and(|m| m.kind == "bond") {
                "yes"
            } else {
                "no"
            },
            if l.kind.is_empty() { "-" } else { &l.kind },
            mac(&l.mac),
            l.link,
            l.operstate,
            l.info,
        );
        if master.as_ref().is_some_and(|m| m.kind == "bridge") {
            bridge_ports += &format!(
                "{} vrfid 0 (ifindex: {}, ifuid: {:#x})\n\x20 type: 249, subtype: 0, master_ifuid: {master_uid:#x}\n",
                l.name,
                l.ifindex,
                ifuid(&ns, l.ifindex),
            );
        }
    }
    out += "Bridge interfaces list:\n";
    out += &bridge_ports;
    out
}

fn show_netlink(sockets: &[&SocketStats]) -> String {
    let mut out = String::from("Dump netlink socket statistics:\n");
    out += &format!("{:<32} {}\n", "netlink socket name", "packets received");
    for s in sockets {
        out += &format!("{:<32} {}\n", s.name, s.packets);
        let xfrm = s.name.starts_with("netlink-xfrm");
        for (kind, n) in &s.by_type {
            let name = if xfrm {
                crate::netlink::xfrm::type_name(*kind)
            } else if s.name.starts_with("netlink-audit") {
                crate::netlink::audit::type_name(*kind)
            } else if s.name.starts_with("netlink-netfilter") {
                crate::netlink::nftables::type_name(*kind)
                    .map(str::to_owned)
                    .unwrap_or_else(|| crate::netlink::conntrack::type_name(*kind))
            } else {
                type_name(*kind)
            };
            out += &format!("    {:<28} {}\n", name, n);
        }
    }
    out
}

fn show_queue(p: &Processor) -> String {
    let mut out = String::new();
    for b in &p.blades {
        let q = b.stats.snapshot();
        out += &format!(
            "Queue information (blade {} at {})\n\
             - sent: {}\n- directly: {}\n- in-queue: {}\n- highest in-queue: {}\n\
             - has blocked: {}\n- partially sent: {}\n- errors: {}\n\
             - rejected objects: {}\n- connected: {}\n- in sync: {}\n- replays: {}\n- overflows: {}\n",
            b.blade,
            b.endpoint,
            q.sent,
            q.directly,
            q.in_queue,
            q.highest_in_queue,
            q.has_blocked,
            q.partially_sent,
            q.errors,
            q.rejected,
            q.connected as u8,
            q.in_sync as u8,
            q.replays,
            q.overflows,
        );
    }
    out
}

/// The fast paths' per-interface statistics (their latest reports), each
/// beside Linux's own counters of the same interface.
fn show_stats(p: &mut Processor, json: bool) -> String {
    let reports = p.reverse.interfaces();
    let linux = p.linux_link_stats();
    let get = |counters: &[(String, u64)], name: &str| {
        counters
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| *v)
            .unwrap_or(0)
    };
    if json {
        let blades: serde_json::Map<String, serde_json::Value> =
            reports
                .iter()
                .map(|(blade, ifaces)| {
                    let list: Vec<serde_json::Value> = ifaces
                    .iter()
                    .map(|i| {
                        let fp: serde_json::Map<String, serde_json::Value> =
                            i.counters.iter().map(|(k, v)| (k.clone(), json!(v))).collect();
                        let lx = linux.get(&i.ifindex).map(|(_, s)| {
                            json!({"rx_packets": s[0], "tx_packets": s[1], "rx_bytes": s[2],
                                   "tx_bytes": s[3], "rx_dropped": s[4], "tx_dropped": s[5]})
                        });
                        json!({"ifindex": i.ifindex, "name": i.name, "fastpath": fp, "linux": lx})
                    })
                    .collect();
                    (blade.to_string(), json!(list))
                })
                .collect();
        return format!("{}\n", json!({ "blades": blades }));
    }
    if reports.is_empty() {
        return "No fast path statistics reported (no blade forwards on ports)\n".into();
    }
    let mut out = String::new();
    for (blade, ifaces) in &reports {
        out += &format!(
            "Fast path statistics (blade {blade}), beside Linux's own counters\n\
             {:<16}{:>12}{:>12}{:>12}{:>12}{:>12}{:>14}{:>14}\n",
            "interface", "fp rx", "fp tx", "fp fwd", "fp exc", "fp drops", "linux rx", "linux tx"
        );
        for i in ifaces {
            let exceptions: u64 = i
                .counters
                .iter()
                .filter(|(k, _)| k.starts_with("exception_"))
                .map(|(_, v)| v)
                .sum();
            let drops: u64 = i
                .counters
                .iter()
                .filter(|(k, _)| k.starts_with("drop_"))
                .map(|(_, v)| v)
                .sum();
            let (lrx, ltx) = linux
                .get(&i.ifindex)
                .map(|(_, s)| (s[0], s[1]))
                .unwrap_or_default();
            out += &format!(
                "{:<16}{:>12}{:>12}{:>12}{:>12}{:>12}{:>14}{:>14}\n",
                i.name,
                get(&i.counters, "rx_packets"),
                get(&i.counters, "tx_packets"),
                get(&i.counters, "forwarded"),
                exceptions,
                drops,
                lrx,
                ltx
            );
        }
        // Why packets left the fast path for Linux, by reason.
        for i in ifaces {
            let reasons: Vec<String> = i
                .counters
                .iter()
                .filter(|(k, v)| k.starts_with("exception_") && *v > 0)
                .map(|(k, v)| format!("{} {v}", &k["exception_".len()..]))
                .collect();
            if !reasons.is_empty() {
                out += &format!("{} to Linux: {}\n", i.name, reasons.join(", "));
            }
        }
    }
    out
}

/// The synced rules of each family by priority, then the kernel's order,
/// as `ip rule` lists them.
fn show_rules(p: &Processor, json: bool) -> String {
    use fpc::{Object, ObjectKind};
    let mut rules: Vec<_> = p
        .cache
        .objects(ObjectKind::Rule)
        .filter_map(|o| match o {
            Object::Rule(r) => Some(r),
            _ => None,
        })
        .collect();
    rules.sort_by_key(|r| (r.spec.family, r.spec.priority, r.position));
    if json {
        let v: Vec<_> = rules.iter().map(|r| json!(r.to_string())).collect();
        return format!("{}\n", serde_json::Value::Array(v));
    }
    rules.iter().map(|r| format!("{r}\n")).collect()
}

fn show_sync(p: &Processor, json: bool) -> String {
    use fpc::ObjectKind;
    let counts: serde_json::Map<String, serde_json::Value> = ObjectKind::ALL
        .iter()
        .map(|k| (k.name().to_owned(), json!(p.cache.len(*k))))
        .collect();
    let v = json!({
        "state": p.sync_state().name(),
        "generation": p.generation(),
        "overruns": p.sync.overruns,
        "resyncs": p.sync.resyncs,
        "reconciles": p.sync.reconciles,
        "silent_deletions": p.sync.silent_deletions,
        "silent_changes": p.sync.silent_changes,
        "decode_errors": p.sync.decode_errors,
        "xtables": p.xtables_watch(),
        "cache": counts,
        "hit_flags": hit_flags(p),
    });
    if json {
        return format!("{v}\n");
    }
    let mut out = format!(
        "Synchronization state: {}\n- overruns: {}\n- resyncs: {}\n- reconciles: {}\n\
         - silent deletions: {}\n- silent changes: {}\n- decode errors: {}\n\
         - legacy iptables changes: {}\nCached objects\n",
        p.sync_state().name(),
        p.sync.overruns,
        p.sync.resyncs,
        p.sync.reconciles,
        p.sync.silent_deletions,
        p.sync.silent_changes,
        p.sync.decode_errors,
        p.xtables_watch(),
    );
    for k in ObjectKind::ALL {
        out += &format!("- {}: {}\n", k.name(), p.cache.len(k));
    }
    out += "Hit flags (refreshed in Linux for the fast paths)\n";
    if let serde_json::Value::Object(m) = hit_flags(p) {
        for (k, v) in m {
            out += &format!("- {}: {v}\n", k.replace('_', " "));
        }
    }
    out
}

/// What the hit-flags refresher did (`crate::hitflags`).
fn hit_flags(p: &Processor) -> serde_json::Value {
    use std::sync::atomic::Ordering::Relaxed;
    let r = &p.reverse;
    json!({
        "neighbours_refreshed": r.refreshed.load(Relaxed),
        "neighbour_resolve_requests": r.resolve_requests.load(Relaxed),
        "neighbour_errors": r.errors.load(Relaxed),
        "conntracks_refreshed": r.ct_refreshed.load(Relaxed),
        "conntrack_refresh_errors": r.ct_errors.load(Relaxed),
        "dropped_reports": r.dropped_reports.load(Relaxed),
    })
}
