//! Legacy x_tables rules (`iptables-legacy`, `ip6tables-legacy`) as the
//! kernel's `ipt_do_table` / `ip6t_do_table` evaluates them: the entry's
//! own fields (`ip_packet_match`), then its matches in order, then its
//! target.
//!
//! Match data is the kernel's struct, in host byte order (ports too):
//! `xt_tcp`, `xt_udp`, `ipt_icmp`/`ip6t_icmp`, `xt_state_info`,
//! `xt_conntrack_mtinfo1..3`. Everything else is unsupported: a packet
//! that reaches it goes to Linux.
//!
//! Invariants: compiling never fails; running allocates nothing; the jump
//! stack is bounded (deeper: Linux).

use std::collections::HashMap;
use std::net::IpAddr;

use super::{
    ifname, NfCounters, NfVerdict, Packet, Reason, Tracked, AF_INET6, NF_INET_PRE_ROUTING,
};
use crate::wire::ip_proto;
use fpc::{Conntrack, XtChain, XtRule, XtTarget};

/// IPT_INV_* (the same for IP6T_INV_*).
const INV_VIA_IN: u8 = 0x01;
const INV_VIA_OUT: u8 = 0x02;
const INV_SRCIP: u8 = 0x08;
const INV_DSTIP: u8 = 0x10;
const INV_FRAG: u8 = 0x20;
const INV_PROTO: u8 = 0x40;
/// IPT_F_FRAG, IPT_F_GOTO; IP6T_F_PROTO, IP6T_F_GOTO.
const IPT_F_FRAG: u8 = 0x01;
const IPT_F_GOTO: u8 = 0x02;
const IP6T_F_PROTO: u8 = 0x01;
const IP6T_F_GOTO: u8 = 0x04;

/// Standard verdicts as stored (`-NF_* - 1`).
const XT_DROP: i32 = -1;
const XT_ACCEPT: i32 = -2;
const XT_QUEUE: i32 = -4;
const XT_RETURN: i32 = -5;

/// xt_conntrack's match flags and its extra state bits.
const XT_CONNTRACK_STATE: u16 = 1 << 0;
const XT_CONNTRACK_STATUS: u16 = 1 << 6;
const XT_CONNTRACK_STATE_ALIAS: u16 = 1 << 13;
const XT_CONNTRACK_STATE_SNAT: u32 = 1 << 6;
const XT_CONNTRACK_STATE_DNAT: u32 = 1 << 7;

/// Nested user chains followed at most (the kernel bounds its own by the
/// table; fpd hands deeper ones to Linux).
/// Rules one packet may visit in one base chain before fpd gives up.
const MAX_RULE_VISITS: u32 = 1 << 16;
const JUMP_STACK: usize = 32;

/// The priority of a legacy table's chain on `hook` (NF_IP_PRI_*; IPv6
/// has the same values).
pub(super) fn table_priority(table: &str, hook: u32) -> Option<i32> {
    Some(match table {
        "raw" => -300,
        "mangle" => -150,
        "nat" if hook == NF_INET_PRE_ROUTING || hook == 3 => -100,
        "nat" => 100,
        "filter" => 0,
        "security" => 50,
        _ => return None,
    })
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Match {
    Tcp {
        sport: (u16, u16),
        dport: (u16, u16),
        flag_mask: u8,
        flag_cmp: u8,
        inv: u8,
    },
    Udp {
        sport: (u16, u16),
        dport: (u16, u16),
        inv: u8,
    },
    Icmp {
        v6: bool,
        icmp_type: u8,
        code: (u8, u8),
        inv: bool,
    },
    /// `-m state --state`: a mask of ct state bits.
    State(u32),
    Conntrack {
        flags: u16,
        inv: u16,
        state_mask: u32,
        status_mask: u32,
    },
    Unsupported(Reason),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Target {
    Accept,
    Drop,
    Return,
    Continue,
    Jump(usize),
    Goto(usize),
    Linux(Reason),
}

#[derive(Debug, Clone)]
struct Rule {
    src: u128,
    src_mask: u128,
    dst: u128,
    dst_mask: u128,
    iniface: [u8; 16],
    iniface_mask: [u8; 16],
    outiface: [u8; 16],
    outiface_mask: [u8; 16],
    proto: u16,
    flags: u8,
    invflags: u8,
    matches: Vec<Match>,
    target: Target,
}

/// A compiled chain.
#[derive(Debug)]
pub(super) struct Chain {
    pub family: u8,
    pub table: String,
    pub hook: Option<u32>,
    /// A builtin chain's policy (`Err`: a verdict fpd does not take).
    policy: Result<bool, Reason>,
    rules: Vec<Rule>,
    /// A conntrack or state match is in it.
    pub reads_conntrack: bool,
}

impl Chain {
    /// A builtin chain without rules whose policy is ACCEPT.
    pub fn is_noop(&self) -> bool {
        self.rules.is_empty() && self.policy == Ok(true)
    }
}

#[derive(Debug, Default)]
pub(super) struct Program {
    chains: Vec<Chain>,
}

fn bits(ip: IpAddr) -> u128 {
    match ip {
        IpAddr::V4(a) => u32::from(a).into(),
        IpAddr::V6(a) => a.into(),
    }
}

fn ne16(d: &[u8], at: usize) -> u16 {
    u16::from_ne_bytes([d[at], d[at + 1]])
}

fn compile_match(name: &str, revision: u8, d: &[u8], table: &str, v6: bool) -> Match {
    let ct_ok = table != "raw"; // raw runs before conntrack
    match (name, revision) {
        ("tcp", 0) if d.len() >= 12 => {
            if d[8] != 0 || d[11] & !0x07 != 0 {
                return Match::Unsupported(Reason::XtMatch); // --tcp-option
            }
            Match::Tcp {
                sport: (ne16(d, 0), ne16(d, 2)),
                dport: (ne16(d, 4), ne16(d, 6)),
                flag_mask: d[9],
                flag_cmp: d[10],
                inv: d[11],
            }
        }
        ("udp", 0) if d.len() >= 9 => Match::Udp {
            sport: (ne16(d, 0), ne16(d, 2)),
            dport: (ne16(d, 4), ne16(d, 6)),
            inv: d[8],
        },
        ("icmp", 0) | ("icmp6", 0) if d.len() >= 4 && v6 == (name == "icmp6") => Match::Icmp {
            v6,
            icmp_type: d[0],
            code: (d[1], d[2]),
            inv: d[3] & 0x01 != 0,
        },
        ("state", 0) if d.len() >= 4 && ct_ok => {
            Match::State(u32::from_ne_bytes([d[0], d[1], d[2], d[3]]))
        }
        ("conntrack", 1..=3) if d.len() >= 152 && ct_ok => {
            let (flags, inv) = (ne16(d, 146), ne16(d, 148));
            let (state_mask, status_mask) = match revision {
                1 => (u32::from(d[150]), u32::from(d[151])),
                _ if d.len() >= 154 => (u32::from(ne16(d, 150)), u32::from(ne16(d, 152))),
                _ => return Match::Unsupported(Reason::XtMatch),
            };
            // --ctdir is left to Linux: its flag's sense is easy to get
            // wrong and it is rare.
            let known = XT_CONNTRACK_STATE | XT_CONNTRACK_STATE_ALIAS | XT_CONNTRACK_STATUS;
            if flags & !known != 0
                || flags & XT_CONNTRACK_STATUS != 0 && status_mask & !Conntrack::STATUS_SYNCED != 0
            {
                return Match::Unsupported(Reason::XtMatch);
            }
            Match::Conntrack {
                flags,
                inv,
                state_mask,
                status_mask,
            }
        }
        ("state" | "conntrack", _) => Match::Unsupported(Reason::CtKey),
        _ => Match::Unsupported(Reason::XtMatch),
    }
}

fn compile_target(r: &XtRule, names: &HashMap<&str, usize>) -> Target {
    let goto = if r.family == AF_INET6 {
        IP6T_F_GOTO
    } else {
        IPT_F_GOTO
    };
    match &r.target {
        XtTarget::Verdict(XT_ACCEPT) => Target::Accept,
        XtTarget::Verdict(XT_DROP) => Target::Drop,
        XtTarget::Verdict(XT_RETURN) => Target::Return,
        XtTarget::Verdict(XT_QUEUE) => Target::Linux(Reason::Queue),
        XtTarget::Verdict(_) => Target::Linux(Reason::XtTarget),
        XtTarget::Continue => Target::Continue,
        XtTarget::Jump(chain) => match names.get(chain.as_str()) {
            Some(&i) if r.flags & goto != 0 => Target::Goto(i),
            Some(&i) => Target::Jump(i),
            None => Target::Linux(Reason::JumpDepth),
        },
        XtTarget::Extension { name, .. } => Target::Linux(match name.as_str() {
            "REJECT" => Reason::Reject,
            "SNAT" | "DNAT" | "MASQUERADE" | "REDIRECT" | "NETMAP" => Reason::NatRule,
            "NFQUEUE" => Reason::Queue,
            _ => Reason::XtTarget,
        }),
    }
}

impl Program {
    pub fn build<'a>(
        chains: impl Iterator<Item = &'a XtChain>,
        rules: impl Iterator<Item = &'a XtRule>,
    ) -> Program {
        let mut chains: Vec<&XtChain> = chains.collect();
        chains.sort_by(|a, b| (a.family, &a.table, &a.name).cmp(&(b.family, &b.table, &b.name)));
        let mut names: HashMap<(u8, &str), HashMap<&str, usize>> = HashMap::new();
        for (i, c) in chains.iter().enumerate() {
            names
                .entry((c.family, c.table.as_str()))
                .or_default()
                .insert(c.name.as_str(), i);
        }
        let mut program = Program {
            chains: chains
                .iter()
                .map(|c| Chain {
                    family: c.family,
                    table: c.table.clone(),
                    hook: c.hook,
                    policy: match c.policy {
                        Some(XT_ACCEPT) | None => Ok(true),
                        Some(XT_DROP) => Ok(false),
                        Some(XT_QUEUE) => Err(Reason::Queue),
                        Some(_) => Err(Reason::XtTarget),
                    },
                    rules: Vec::new(),
                    reads_conntrack: false,
                })
                .collect(),
        };
        let mut rules: Vec<&XtRule> = rules.collect();
        rules.sort_by(|a, b| {
            (a.family, &a.table, &a.chain, a.position)
                .cmp(&(b.family, &b.table, &b.chain, b.position))
        });
        let empty = HashMap::new();
        for r in rules {
            let names = names.get(&(r.family, r.table.as_str())).unwrap_or(&empty);
            let Some(&index) = names.get(r.chain.as_str()) else {
                continue;
            };
            let v6 = r.family == AF_INET6;
            let matches: Vec<Match> = r
                .matches
                .iter()
                .map(|m| compile_match(&m.name, m.revision, &m.data, &r.table, v6))
                .collect();
            let rule = Rule {
                src: bits(r.src),
                src_mask: bits(r.src_mask),
                dst: bits(r.dst),
                dst_mask: bits(r.dst_mask),
                iniface: ifname(&r.iniface),
                iniface_mask: r.iniface_mask,
                outiface: ifname(&r.outiface),
                outiface_mask: r.outiface_mask,
                proto: r.proto,
                flags: r.flags,
                invflags: r.invflags,
                target: compile_target(r, names),
                matches,
            };
            let chain = &mut program.chains[index];
            chain.reads_conntrack |= r
                .matches
                .iter()
                .any(|m| m.name == "state" || m.name == "conntrack");
            chain.rules.push(rule);
        }
        program
    }

    pub fn chains(&self) -> &[Chain] {
        &self.chains
    }

    /// The verdict of builtin chain `start` for `pkt` (`ipt_do_table`).
    pub fn run(
        &self,
        start: usize,
        pkt: &Packet<'_>,
        ct: Option<&Tracked<'_>>,
        counters: &mut NfCounters,
    ) -> NfVerdict {
        let Some(base) = self.chains.get(start) else {
            return NfVerdict::Linux(Reason::JumpDepth);
        };
        if table_priority(&base.table, base.hook.unwrap_or(0)).is_none() {
            return NfVerdict::Linux(Reason::XtTarget);
        }
        let policy = || match base.policy {
            Ok(true) => NfVerdict::Accept,
            Ok(false) => NfVerdict::Drop,
            Err(r) => NfVerdict::Linux(r),
        };
        let mut stack = [(0usize, 0usize); JUMP_STACK];
        let mut depth = 0;
        let (mut chain, mut rule) = (start, 0);
        // The kernel refuses loops at load; rules synced half-way through
        // a change could still form one: never spin on it.
        let mut budget = MAX_RULE_VISITS;
        loop {
            let Some(r) = self.chains[chain].rules.get(rule) else {
                if depth == 0 {
                    return policy();
                }
                depth -= 1;
                (chain, rule) = stack[depth];
                continue;
            };
            budget -= 1;
            if budget == 0 {
                return NfVerdict::Linux(Reason::JumpDepth);
            }
            match rule_matches(r, pkt, ct) {
                Ok(false) => {
                    rule += 1;
                    continue;
                }
                Ok(true) => counters.rule_counters += 1,
                Err(reason) => return NfVerdict::Linux(reason),
            }
            match r.target {
                Target::Continue => rule += 1,
                Target::Accept => return NfVerdict::Accept,
                Target::Drop => return NfVerdict::Drop,
                Target::Linux(reason) => return NfVerdict::Linux(reason),
                Target::Return => {
                    if depth == 0 {
                        return policy();
                    }
                    depth -= 1;
                    (chain, rule) = stack[depth];
                }
                Target::Jump(to) => {
                    if depth == JUMP_STACK {
                        return NfVerdict::Linux(Reason::JumpDepth);
                    }
                    stack[depth] = (chain, rule + 1);
                    depth += 1;
                    (chain, rule) = (to, 0);
                }
                Target::Goto(to) => (chain, rule) = (to, 0),
            }
        }
    }
}

/// `(a & mask) != b`, as `ip_packet_match` compares addresses.
fn differs(a: u128, mask: u128, b: u128) -> bool {
    a & mask != b
}

fn ifname_differs(dev: &[u8; 16], name: &[u8; 16], mask: &[u8; 16]) -> bool {
    (0..16).any(|i| (dev[i] ^ name[i]) & mask[i] != 0)
}

fn addrs(pkt: &Packet<'_>) -> (u128, u128) {
    let l3 = pkt.l3;
    if pkt.v6 {
        let mut s = [0u8; 16];
        let mut d = [0u8; 16];
        s.copy_from_slice(&l3[8..24]);
        d.copy_from_slice(&l3[24..40]);
        (u128::from_be_bytes(s), u128::from_be_bytes(d))
    } else {
        (
            u32::from_be_bytes([l3[12], l3[13], l3[14], l3[15]]).into(),
            u32::from_be_bytes([l3[16], l3[17], l3[18], l3[19]]).into(),
        )
    }
}

fn rule_matches(r: &Rule, pkt: &Packet<'_>, ct: Option<&Tracked<'_>>) -> Result<bool, Reason> {
    let inv = |flag: u8, cond: bool| cond ^ (r.invflags & flag != 0);
    let (src, dst) = addrs(pkt);
    if inv(INV_SRCIP, differs(src, r.src_mask, r.src))
        || inv(INV_DSTIP, differs(dst, r.dst_mask, r.dst))
    {
        return Ok(false);
    }
    // Prerouting has no output device: the kernel compares "".
    let out = pkt.oif.map_or([0; 16], |o| o.name);
    if inv(
        INV_VIA_IN,
        ifname_differs(&pkt.iif.name, &r.iniface, &r.iniface_mask),
    ) || inv(
        INV_VIA_OUT,
        ifname_differs(&out, &r.outiface, &r.outiface_mask),
    ) {
        return Ok(false);
    }
    let proto = u16::from(pkt.l4proto);
    if pkt.v6 {
        // ip6_packet_match: the protocol after the extension headers
        // (a packet with any is Linux's already).
        if r.flags & IP6T_F_PROTO != 0 {
            if r.proto == proto {
                if r.invflags & INV_PROTO != 0 {
                    return Ok(false);
                }
            } else if r.proto != 0 && r.invflags & INV_PROTO == 0 {
                return Ok(false);
            }
        }
    } else {
        if r.proto != 0 && inv(INV_PROTO, proto != r.proto) {
            return Ok(false);
        }
        // -f: non-first fragments, which fpd never evaluates.
        if inv(INV_FRAG, r.flags & IPT_F_FRAG != 0) {
            return Ok(false);
        }
    }
    for m in &r.matches {
        if !match_one(m, pkt, ct)? {
            return Ok(false);
        }
    }
    Ok(true)
}

fn port_in(range: (u16, u16), port: u16, invert: bool) -> bool {
    (port >= range.0 && port <= range.1) ^ invert
}

fn match_one(m: &Match, pkt: &Packet<'_>, ct: Option<&Tracked<'_>>) -> Result<bool, Reason> {
    let l4 = pkt.l4();
    Ok(match m {
        Match::Tcp {
            sport,
            dport,
            flag_mask,
            flag_cmp,
            inv,
        } => {
            // The kernel drops (hotdrop) a header it cannot read.
            let h = l4.get(..20).ok_or(Reason::Malformed)?;
            port_in(*sport, u16::from_be_bytes([h[0], h[1]]), inv & 0x01 != 0)
                && port_in(*dport, u16::from_be_bytes([h[2], h[3]]), inv & 0x02 != 0)
                && ((h[13] & flag_mask) == *flag_cmp) ^ (inv & 0x04 != 0)
        }
        Match::Udp { sport, dport, inv } => {
            let h = l4.get(..8).ok_or(Reason::Malformed)?;
            port_in(*sport, u16::from_be_bytes([h[0], h[1]]), inv & 0x01 != 0)
                && port_in(*dport, u16::from_be_bytes([h[2], h[3]]), inv & 0x02 != 0)
        }
        Match::Icmp {
            v6,
            icmp_type,
            code,
            inv,
        } => {
            // The match is for its own protocol only (iptables requires
            // -p icmp with it; checked here all the same).
            let want = if *v6 {
                ip_proto::ICMPV6
            } else {
                ip_proto::ICMP
            };
            if pkt.l4proto != want {
                return Ok(false);
            }
            let h = l4.get(..2).ok_or(Reason::Malformed)?;
            (*icmp_type == 0xff || h[0] == *icmp_type && h[1] >= code.0 && h[1] <= code.1) ^ inv
        }
        Match::State(mask) => {
            let t = ct.ok_or(Reason::NoConntrack)?;
            mask & t.state != 0
        }
        Match::Conntrack {
            flags,
            inv,
            state_mask,
            status_mask,
        } => {
            let t = ct.ok_or(Reason::NoConntrack)?;
            let status = t.entry.status();
            if flags & XT_CONNTRACK_STATE != 0 {
                let mut bit = t.state;
                if status & Conntrack::IPS_SRC_NAT != 0 {
                    bit |= XT_CONNTRACK_STATE_SNAT;
                }
                if status & Conntrack::IPS_DST_NAT != 0 {
                    bit |= XT_CONNTRACK_STATE_DNAT;
                }
                // conntrack_mt: `!!(mask & bit) ^ !(invert)` fails the match.
                if (state_mask & bit != 0) == (inv & XT_CONNTRACK_STATE != 0) {
                    return Ok(false);
                }
            }
            if flags & XT_CONNTRACK_STATUS != 0
                && (status_mask & status != 0) == (inv & XT_CONNTRACK_STATUS != 0)
            {
                return Ok(false);
            }
            true
        }
        Match::Unsupported(reason) => return Err(*reason),
    })
}
