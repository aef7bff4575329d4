//! Policy routing rules as forwarding evaluates them: the synced rules of
//! one family, compiled and sorted once per view, then walked per packet
//! the way the kernel's fib_rules_lookup walks its list.
//!
//! Semantics (net/core/fib_rules.c, net/ipv4/fib_rules.c,
//! net/ipv6/fib6_rules.c of this kernel, 6.18):
//! * Rules are tried by priority, then in the kernel's order within a
//!   priority (insertion order, the synced `position`). A rule matches
//!   when all its selectors do; `not` (FIB_RULE_INVERT) negates that.
//! * `goto P` continues at the first rule of priority P (the kernel
//!   resolves it to that rule, and to the next one of the same priority
//!   when it goes); with no rule of priority P it does nothing, as `nop`.
//! * `lookup T`: the table's longest match. No route, or a `throw` route,
//!   continues with the next rule (-EAGAIN); a usable route (unicast,
//!   local, broadcast, anycast, multicast) whose prefix is not longer than
//!   `suppress_prefixlength` is ignored and the walk goes on; any other
//!   route (blackhole, unreachable, prohibit) is the answer, never
//!   suppressed (the kernel suppresses only a lookup that succeeded).
//!   Table 0 is main (fib_get_table, fib6_get_table).
//! * blackhole drops; unreachable and prohibit need Linux's ICMP error.
//! * No rule answering: no route (the kernel's ENETUNREACH).
//!
//! What forwarded packets carry in the kernel's flow (ip_route_input_slow,
//! ip6_route_input): the ingress device as iif; oif 0, so a rule with an
//! `oif` selector never matches a forwarded packet (fib_rule_match
//! compares the rule's oifindex, set or -1 when detached, with
//! flowi_oif); the skb mark (0 unless netfilter set one); uid 0
//! (sock_net_uid(net, NULL)); the protocol and ports from the flow
//! dissector when some rule needs them (fib4_rules_early_flow_dissect:
//! ports only for TCP, UDP, UDP-Lite, DCCP, SCTP, zero for fragments).
//!
//! Invariants: building sorts and resolves everything (goto targets,
//! device names to indexes) so that the walk allocates nothing and
//! takes no lock; whatever fpd cannot evaluate exactly (l3mdev, tun_id,
//! suppress_ifgroup, an action or an attribute it does not know, a TOS
//! selector on a packet fpd made itself) ends the walk with
//! [`Verdict::Linux`] for every packet the rule could match, never a
//! guess.

use std::ops::{BitAnd, BitXor};

use crate::tables::RouteAttrs;
use crate::wire::{ipv4, ipv6};
use fpc::{rtn, Link};
use fpc::{rule_action as action, PortMatch, Rule, RuleSpec, AF_INET, FIB_RULE_INVERT};

/// The kernel's default rules: local, main, default.
pub(crate) const RT_TABLE_LOCAL: u32 = 255;
pub(crate) const RT_TABLE_MAIN: u32 = 254;
pub(crate) const RT_TABLE_DEFAULT: u32 = 253;
/// The loopback device: the iif of what the host sends itself.
pub(crate) const LOOPBACK_IFINDEX: u32 = 1;

/// What the rules see of a packet. `A` is the address (u32 IPv4, u128
/// IPv6, host order).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Flow<A> {
    pub src: A,
    pub dst: A,
    /// The ingress interface; [`LOOPBACK_IFINDEX`] for fpd's own packets.
    pub iif: u32,
    /// The packet's mark (0: fpd sets none).
    pub mark: u32,
    /// The IPv4 TOS byte or IPv6 traffic class; None when not known (the
    /// ICMP errors fpd makes: Linux derives theirs from the original).
    pub tos: Option<u8>,
    /// The IPv6 flow label (20 bits), 0 for IPv4.
    pub flowlabel: u32,
    pub proto: u8,
    pub sport: u16,
    pub dport: u16,
    /// Whether `proto` and the ports are what the kernel's flow dissector
    /// finds: false for an IPv6 packet with extension headers, which it
    /// walks and fpd does not.
    pub l4_known: bool,
}

impl<A: RuleAddr> Flow<A> {
    /// What Linux's own ICMP error would carry (icmp_route_lookup): iif
    /// loopback, oif 0, mark 0, the type and code where the ports are
    /// (the flow's union); its TOS derives from the original's: unknown.
    pub fn icmp_error(src: A, dst: A, proto: u8, icmp_type: u8, code: u8) -> Flow<A> {
        Flow {
            src,
            dst,
            iif: LOOPBACK_IFINDEX,
            mark: 0,
            tos: None,
            flowlabel: 0,
            proto,
            sport: 0,
            dport: u16::from_be_bytes([icmp_type, code]),
            l4_known: true,
        }
    }
}

impl Flow<u32> {
    /// A forwarded IPv4 packet received on `iif`.
    #[inline]
    pub fn of_ipv4<T: AsRef<[u8]>>(p: &ipv4::Packet<T>, iif: u32) -> Flow<u32> {
        let (sport, dport) = dissected_ports(p.protocol(), p.is_fragment(), p.payload());
        Flow {
            src: p.src(),
            dst: p.dst(),
            iif,
            mark: 0,
            tos: Some(p.tos()),
            flowlabel: 0,
            proto: p.protocol(),
            sport,
            dport,
            l4_known: true,
        }
    }
}

impl Flow<u128> {
    /// A forwarded IPv6 packet received on `iif`.
    #[inline]
    pub fn of_ipv6<T: AsRef<[u8]>>(p: &ipv6::Packet<T>, iif: u32) -> Flow<u128> {
        // Routing (43), fragment (44), ESP, AH, destination options (60)
        // and the other extension headers: the kernel's dissector walks
        // or reads them, fpd does not look past them.
        let l4_known = !matches!(p.next_header(), 43 | 44 | 50 | 51 | 60 | 135 | 139 | 140);
        let (sport, dport) = dissected_ports(p.next_header(), false, p.payload());
        Flow {
            src: p.src(),
            dst: p.dst(),
            iif,
            mark: 0,
            tos: Some(p.traffic_class()),
            flowlabel: p.flow_label(),
            proto: p.next_header(),
            sport,
            dport,
            l4_known,
        }
    }
}

/// Why a lookup must be left to Linux.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ToLinux {
    /// An `unreachable` rule (ICMP net unreachable from Linux).
    Unreachable,
    /// A `prohibit` rule (ICMP packet filtered).
    Prohibit,
    /// A rule fpd cannot evaluate exactly.
    Unsupported,
}

/// Where the rules send a packet.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Verdict<'a> {
    /// The route a table gave.
    Route(&'a RouteAttrs),
    /// No rule gave a route.
    NoRoute,
    /// A blackhole rule: drop, no ICMP error.
    Blackhole,
    Linux(ToLinux),
}

/// An address type the rules compare under a prefix mask.
pub(crate) trait RuleAddr:
    Copy + Default + Eq + BitXor<Output = Self> + BitAnd<Output = Self>
{
    const BITS: u8;
    fn from_ip(ip: std::net::IpAddr) -> Option<Self>;
    fn mask(len: u8) -> Self;
}

impl RuleAddr for u32 {
    const BITS: u8 = 32;
    fn from_ip(ip: std::net::IpAddr) -> Option<u32> {
        match ip {
            std::net::IpAddr::V4(a) => Some(a.into()),
            std::net::IpAddr::V6(_) => None,
        }
    }
    fn mask(len: u8) -> u32 {
        u32::MAX
            .checked_shl(32 - u32::from(len.min(32)))
            .unwrap_or(0)
    }
}

impl RuleAddr for u128 {
    const BITS: u8 = 128;
    fn from_ip(ip: std::net::IpAddr) -> Option<u128> {
        match ip {
            std::net::IpAddr::V6(a) => Some(a.into()),
            std::net::IpAddr::V4(_) => None,
        }
    }
    fn mask(len: u8) -> u128 {
        u128::MAX
            .checked_shl(128 - u32::from(len.min(128)))
            .unwrap_or(0)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Iif {
    Any,
    Index(u32),
    /// The name is no device's (the kernel's iifindex -1): never matches.
    Detached,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Tos {
    Any,
    /// IPv4 `tos T`: T equals the packet's TOS under IPTOS_RT_MASK (the
    /// kernel's fib_dscp_masked_match keeps DSCP bits 0x1c).
    Legacy4(u8),
    /// IPv4 FRA_DSCP, IPv6 `tos` and FRA_DSCP: (dscp ^ packet dscp) & mask.
    Dscp(u8, u8),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Action {
    Table {
        table: u32,
        suppress_prefixlen: Option<u32>,
        suppress_ifgroup: bool,
    },
    /// The index of the target rule, None when unresolved.
    Goto(Option<usize>),
    Nop,
    Blackhole,
    Unreachable,
    Prohibit,
    Unknown,
}

#[derive(Debug, Clone)]
struct Compiled<A> {
    priority: u32,
    src: A,
    src_mask: A,
    dst: A,
    dst_mask: A,
    iif: Iif,
    /// An `oif` selector: never true for forwarded packets.
    oif: bool,
    fwmark: u32,
    fwmask: u32,
    tos: Tos,
    flowlabel: Option<(u32, u32)>,
    proto: u8,
    sport: Option<PortMatch>,
    dport: Option<PortMatch>,
    uid: Option<(u32, u32)>,
    invert: bool,
    /// A selector fpd cannot evaluate (l3mdev, tun_id, unknown attributes).
    unsupported: bool,
    /// No selector at all (`from all`, as the default rules): matches
    /// every packet (unless inverted), without a look at it.
    all: bool,
    action: Action,
}

/// The rules of one family, in evaluation order.
#[derive(Debug, Clone)]
pub(crate) struct RuleList<A> {
    rules: Vec<Compiled<A>>,
}

/// The result of one rule's selectors.
enum Match {
    No,
    Yes,
    Unknown,
}

impl<A: RuleAddr> RuleList<A> {
    /// Compiles the rules of `family` among `rules`; device names resolve
    /// against `links`. A family without any rule gets the kernel's
    /// default rules: a peer that syncs no rules (or nothing synced yet)
    /// then forwards as before rules were synced. (A kernel whose rules
    /// were all deleted routes nothing; that case is not told apart.)
    pub fn build<'r>(
        family: u8,
        rules: impl Iterator<Item = &'r Rule>,
        links: &[&Link],
    ) -> RuleList<A> {
        let mut mine: Vec<&Rule> = rules.filter(|r| r.spec.family == family).collect();
        mine.sort_by_key(|r| (r.spec.priority, r.position, r.nth));
        let mut out: Vec<Compiled<A>> = if mine.is_empty() {
            default_rules(family)
                .iter()
                .map(|s| compile(s, links))
                .collect()
        } else {
            mine.iter().map(|r| compile(&r.spec, links)).collect()
        };
        // Goto targets: the first rule of the target priority.
        let targets: Vec<Option<u32>> = if mine.is_empty() {
            vec![None; out.len()]
        } else {
            mine.iter().map(|r| r.spec.goto).collect()
        };
        for i in 0..out.len() {
            if let Action::Goto(_) = out[i].action {
                let target = targets[i].and_then(|p| out.iter().position(|r| r.priority == p));
                // The kernel refuses backward jumps (target <= priority);
                // one here would loop: leave such a rule to Linux.
                out[i].action = match target {
                    Some(t) if t <= i => Action::Unknown,
                    t => Action::Goto(t),
                };
            }
        }
        RuleList { rules: out }
    }

    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.rules.len()
    }

    /// Walks the rules for `flow`; `table_lookup(table, dst)` is the
    /// longest match of a table, with its prefix length.
    #[inline]
    pub fn lookup<'a>(
        &self,
        flow: &Flow<A>,
        table_lookup: impl Fn(u32, A) -> Option<(u8, &'a RouteAttrs)>,
    ) -> Verdict<'a> {
        let mut i = 0;
        while let Some(r) = self.rules.get(i) {
            i += 1;
            match r.matches(flow) {
                Match::No => continue,
                Match::Unknown => return Verdict::Linux(ToLinux::Unsupported),
                Match::Yes => {}
            }
            match r.action {
                Action::Goto(Some(t)) => i = t,
                Action::Goto(None) | Action::Nop => {}
                Action::Blackhole => return Verdict::Blackhole,
                Action::Unreachable => return Verdict::Linux(ToLinux::Unreachable),
                Action::Prohibit => return Verdict::Linux(ToLinux::Prohibit),
                Action::Unknown => return Verdict::Linux(ToLinux::Unsupported),
                Action::Table {
                    table,
                    suppress_prefixlen,
                    suppress_ifgroup,
                } => {
                    let table = if table == 0 { RT_TABLE_MAIN } else { table };
                    let Some((len, attrs)) = table_lookup(table, flow.dst) else {
                        continue;
                    };
                    match attrs.rtype {
                        rtn::THROW => continue,
                        rtn::UNICAST
                        | rtn::LOCAL
                        | rtn::BROADCAST
                        | rtn::ANYCAST
                        | rtn::MULTICAST => {
                            if suppress_prefixlen.is_some_and(|p| u32::from(len) <= p) {
                                continue;
                            }
                            // The device group of the route's device: not
                            // synced.
                            if suppress_ifgroup {
                                return Verdict::Linux(ToLinux::Unsupported);
                            }
                            return Verdict::Route(attrs);
                        }
                        _ => return Verdict::Route(attrs),
                    }
                }
            }
        }
        Verdict::NoRoute
    }
}

impl<A: RuleAddr> Compiled<A> {
    /// fib_rule_match and the family's match, then the inversion.
    #[inline]
    fn matches(&self, f: &Flow<A>) -> Match {
        if self.all {
            return if self.invert { Match::No } else { Match::Yes };
        }
        let known = self.selectors(f);
        match known {
            Some(false) if !self.invert => Match::No,
            Some(false) => Match::Yes,
            // A selector whose value fpd does not know decides.
            _ if self.unsupported || known.is_none() => Match::Unknown,
            _ if self.invert => Match::No,
            _ => Match::Yes,
        }
    }

    /// Whether every selector fpd can evaluate matches; None when one
    /// needs what this flow does not say (its TOS).
    #[inline]
    fn selectors(&self, f: &Flow<A>) -> Option<bool> {
        let iif = match self.iif {
            Iif::Any => true,
            Iif::Index(i) => i == f.iif,
            Iif::Detached => false,
        };
        // Forwarded packets and fpd's own ICMP errors: flowi_oif 0; the
        // kernel's uid 0 (sock_net_uid(net, NULL)).
        let uid = self.uid.is_none_or(|(start, _)| start == 0);
        let ok = iif
            && !self.oif
            && (self.fwmark ^ f.mark) & self.fwmask == 0
            && uid
            && (f.src ^ self.src) & self.src_mask == A::default()
            && (f.dst ^ self.dst) & self.dst_mask == A::default()
            && self
                .flowlabel
                .is_none_or(|(l, m)| (l ^ f.flowlabel) & m == 0)
            && (!f.l4_known
                || (self.proto == 0 || self.proto == f.proto)
                    && self.sport.is_none_or(|p| p.matches(f.sport))
                    && self.dport.is_none_or(|p| p.matches(f.dport)));
        if !ok {
            return Some(false);
        }
        let needs_l4 = self.proto != 0 || self.sport.is_some() || self.dport.is_some();
        if needs_l4 && !f.l4_known {
            return None;
        }
        match (self.tos, f.tos) {
            (Tos::Any, _) => Some(true),
            (_, None) => None,
            (Tos::Legacy4(t), Some(p)) => Some(t == p & 0x1c),
            (Tos::Dscp(d, m), Some(p)) => Some((d ^ (p >> 2)) & m == 0),
        }
    }
}

fn compile<A: RuleAddr>(s: &RuleSpec, links: &[&Link]) -> Compiled<A> {
    let prefix = |a: Option<std::net::IpAddr>, len: u8| -> (A, A) {
        match a.and_then(A::from_ip) {
            Some(a) => {
                let m = A::mask(len.min(A::BITS));
                (a & m, m)
            }
            None => (A::default(), A::default()),
        }
    };
    let (src, src_mask) = prefix(s.src, s.src_len);
    let (dst, dst_mask) = prefix(s.dst, s.dst_len);
    let iif = match s.iif.as_str() {
        "" => Iif::Any,
        name => links
            .iter()
            .find(|l| l.name == name)
            .map_or(Iif::Detached, |l| Iif::Index(l.ifindex)),
    };
    let tos = match (s.dscp, s.tos) {
        (Some((d, m)), _) => Tos::Dscp(d, m),
        (None, 0) => Tos::Any,
        (None, t) if s.family == AF_INET => Tos::Legacy4(t),
        // IPv6: the tos is a DSCP compared whole (fib6_rule_configure).
        (None, t) => Tos::Dscp(t >> 2, 0x3f),
    };
    let act = match s.action {
        _ if s.l3mdev => Action::Unknown,
        action::TO_TBL => Action::Table {
            table: s.table,
            suppress_prefixlen: s.suppress_prefixlen,
            suppress_ifgroup: s.suppress_ifgroup.is_some(),
        },
        action::GOTO => Action::Goto(None),
        action::NOP => Action::Nop,
        action::BLACKHOLE => Action::Blackhole,
        action::UNREACHABLE => Action::Unreachable,
        action::PROHIBIT => Action::Prohibit,
        _ => Action::Unknown,
    };
    let unsupported = s.l3mdev || s.tun_id != 0 || !s.unknown.is_empty();
    let all = src_mask == A::default()
        && dst_mask == A::default()
        && iif == Iif::Any
        && s.oif.is_empty()
        && s.fwmask == 0
        && tos == Tos::Any
        && s.flowlabel.is_none()
        && s.ip_proto == 0
        && s.sport.is_none()
        && s.dport.is_none()
        && s.uid_range.is_none()
        && !unsupported;
    Compiled {
        priority: s.priority,
        src,
        src_mask,
        dst,
        dst_mask,
        iif,
        oif: !s.oif.is_empty(),
        fwmark: s.fwmark,
        fwmask: s.fwmask,
        tos,
        flowlabel: s.flowlabel,
        proto: s.ip_proto,
        sport: s.sport,
        dport: s.dport,
        uid: s.uid_range,
        invert: s.flags & FIB_RULE_INVERT != 0,
        unsupported,
        all,
        action: act,
    }
}

/// The rules a new namespace starts with (IPv6 has no default-table rule).
fn default_rules(family: u8) -> Vec<RuleSpec> {
    let rule = |priority, table| RuleSpec {
        family,
        priority,
        src: None,
        src_len: 0,
        dst: None,
        dst_len: 0,
        iif: String::new(),
        oif: String::new(),
        fwmark: 0,
        fwmask: 0,
        tos: 0,
        dscp: None,
        flowlabel: None,
        ip_proto: 0,
        sport: None,
        dport: None,
        uid_range: None,
        l3mdev: false,
        tun_id: 0,
        realms: 0,
        table,
        goto: None,
        suppress_prefixlen: None,
        suppress_ifgroup: None,
        action: action::TO_TBL,
        flags: 0,
        protocol: 2,
        unknown: Vec::new(),
    };
    let mut v = vec![rule(0, RT_TABLE_LOCAL), rule(32766, RT_TABLE_MAIN)];
    if family == AF_INET {
        v.push(rule(32767, RT_TABLE_DEFAULT));
    }
    v
}

/// The ports the kernel's flow dissector gives a rule
/// (proto_ports_offset): the first four bytes of the transport header for
/// TCP, UDP, UDP-Lite, DCCP, SCTP and ESP (its SPI), bytes 4 to 8 for AH
/// (its SPI), else zero; zero for any fragment, first or not
/// (FLOW_DISSECTOR_F_PARSE_1ST_FRAG is not asked for).
#[inline]
pub(crate) fn dissected_ports(proto: u8, fragment: bool, l4: &[u8]) -> (u16, u16) {
    use crate::wire::ip_proto;
    const DCCP: u8 = 33;
    const ESP: u8 = 50;
    const AH: u8 = 51;
    const SCTP: u8 = 132;
    const UDPLITE: u8 = 136;
    let offset = match proto {
        ip_proto::TCP | ip_proto::UDP | DCCP | ESP | SCTP | UDPLITE => 0,
        AH => 4,
        _ => return (0, 0),
    };
    match (fragment, l4.get(offset..offset + 4)) {
        (false, Some(p)) => (
            u16::from_be_bytes([p[0], p[1]]),
            u16::from_be_bytes([p[2], p[3]]),
        ),
        _ => (0, 0),
    }
}

#[cfg(test)]
mod tests;
