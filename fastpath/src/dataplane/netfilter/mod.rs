//! Netfilter in the fast path: the synced nf_tables and legacy x_tables
//! rules of the hooks a forwarded packet traverses, compiled into a
//! [`Ruleset`] when the view is built, evaluated per packet, and the NAT
//! of its conntrack entry applied as Linux applies it ([`apply_nat`]).
//!
//! The rule: for every packet, the answer is what Linux would do with the
//! same configuration, or [`NfVerdict::Linux`] with the [`Reason`] fpd
//! could not decide exactly. Never a guess.
//!
//! # How the caller uses it (per IPv4/IPv6 packet of a port)
//!
//! ```text
//! if ruleset.is_empty(): forward as before (no netfilter at all)
//! pkt    = Packet::parse(l3, iif, None)?          Err(reason) -> Linux
//! flow   = view.conntracks.find4/find6(...)       (the packet as received)
//! ct     = ruleset.track(&pkt, flow)?             Err(reason) -> Linux
//! ruleset.evaluate(Stage::PreroutingBeforeNat, &pkt, ct, &mut counters)
//! if ct.nat_dst: apply_nat(entry, dir, Manip::Dst, l3)?; re-parse pkt
//! ruleset.evaluate(Stage::PreroutingAfterNat, ...)
//! route on the (translated) destination -> oif; decrement TTL/hop limit
//! pkt    = Packet::parse(l3, iif, Some(oif))      (TTL as Linux has it)
//! ruleset.evaluate(Stage::Forward, ...)
//! ruleset.evaluate(Stage::PostroutingBeforeNat, ...)
//! if ct.nat_src: apply_nat(entry, dir, Manip::Src, l3)?; re-parse pkt
//! ruleset.evaluate(Stage::PostroutingAfterNat, ...)
//! ```
//!
//! `iif` is the input interface at every stage: Linux passes it to the
//! postrouting hook of a forwarded packet too (checked on this kernel:
//! `iifname` matches there, IPv4 and IPv6), while `oif` is unset (0, "")
//! at prerouting. The flow lookup uses `FlowTable::find4`/`find6` on the
//! packet as received (before any NAT); the caller marks the entry used
//! (`FlowEntry::mark_hit`) when it forwards the packet.
//!
//! Each `evaluate` answers `Accept` (go on to the next stage), `Drop`
//! (Linux would drop: count it, send nothing) or `Linux(reason)` (hand the
//! packet *as received* to Linux on its input interface: the caller keeps
//! the original bytes or hands over before rewriting). Linux's NAT hooks
//! sit at priority -100 (prerouting, destination) and 100 (postrouting,
//! source); the stages split each hook there, so chains before and after
//! see the packet as Linux shows it to them. Conntrack runs at -200: a
//! chain before it that reads conntrack is not evaluated (Linux).
//!
//! Invariants:
//! * Built off the hot path from the tables; evaluation allocates nothing,
//!   locks nothing, and walks each rule at most once per chain visit (the
//!   jump stack is bounded by the kernel's 16).
//! * An expression, match or target fpd does not implement exactly is
//!   compiled into an "unsupported" step: a packet that reaches it goes to
//!   Linux, a packet that leaves the rule before it does not (Linux would
//!   not have run it either).
//! * Chain order: by hook, then priority, nf_tables and x_tables chains
//!   interleaved. Chains of equal priority run in Linux in registration
//!   order, which fpd does not know: such a group is evaluated whole, and
//!   any `Linux` in it wins over a `Drop`.
//! * nat-type chains (nft `type nat`, the legacy `nat` table) are never
//!   evaluated: Linux runs them only for a connection's first packet,
//!   which fpd hands to Linux; later packets get the entry's NAT.
//! * nft rules are ordered by handle, which is the kernel's order only
//!   when every rule was appended (see the module `nft` and the report in
//!   docs/DESIGN.md on how cmgrd can sync the real order).

mod nat;
mod nft;
#[cfg(test)]
mod tests;
mod xt;

use std::collections::HashMap;

use super::conntrack::{Direction, FlowEntry, FlowMatch};
use crate::tables::Tables;
use crate::wire::ip_proto;
use fpc::{Conntrack, NftChain, NftSet, NftSetElem, NftTable, XtChain};

#[allow(unused_imports)] // the forwarding path's, once wired in
pub(crate) use nat::{apply_nat, Manip};

/// NFPROTO_* of nf_tables families.
const NFPROTO_INET: u8 = 1;
const NFPROTO_IPV4: u8 = 2;
const NFPROTO_NETDEV: u8 = 5;
const NFPROTO_IPV6: u8 = 10;
/// AF_INET, AF_INET6: the families of legacy tables.
const AF_INET: u8 = 2;
const AF_INET6: u8 = 10;

/// NF_INET_* hooks.
const NF_INET_PRE_ROUTING: u32 = 0;
const NF_INET_FORWARD: u32 = 2;
const NF_INET_POST_ROUTING: u32 = 4;
/// NF_INET_INGRESS (inet family, per device since 5.10).
const NF_INET_INGRESS: u32 = 5;

/// Priorities of Linux's own hooks (NF_IP_PRI_*, the same for IPv6).
const PRI_CONNTRACK: i32 = -200;
const PRI_NAT_DST: i32 = -100;
const PRI_NAT_SRC: i32 = 100;

/// NFT_TABLE_F_DORMANT: the table's chains are not registered.
const NFT_TABLE_F_DORMANT: u32 = 1;

/// IPS_* bits of a conntrack entry.
const IPS_EXPECTED: u32 = 1 << 0;
const IPS_SEEN_REPLY: u32 = 1 << 1;
const IPS_ASSURED: u32 = 1 << 2;

/// The nft `ct state` bits (NF_CT_STATE_BIT(ctinfo)); x_tables' state and
/// conntrack matches use the same for these.
pub(crate) const CT_STATE_ESTABLISHED: u32 = 1 << 1;
pub(crate) const CT_STATE_RELATED: u32 = 1 << 2;
pub(crate) const CT_STATE_NEW: u32 = 1 << 3;

/// TCP flags that move conntrack's TCP state machine.
const TCP_FIN: u8 = 0x01;
const TCP_SYN: u8 = 0x02;
const TCP_RST: u8 = 0x04;

/// Where in a forwarded packet's path chains are evaluated; see the
/// module documentation for the order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Stage {
    /// Prerouting chains of priority up to -100 (the destination NAT).
    PreroutingBeforeNat,
    /// Prerouting chains after the destination NAT.
    PreroutingAfterNat,
    Forward,
    /// Postrouting chains of priority below 100 (the source NAT).
    PostroutingBeforeNat,
    /// Postrouting chains from priority 100 on.
    PostroutingAfterNat,
}

impl Stage {
    fn index(self) -> usize {
        self as usize
    }

    /// The stage of a chain at `hook` with `priority`; `None` for hooks
    /// a forwarded packet does not traverse.
    fn of(hook: u32, priority: i32) -> Option<Stage> {
        Some(match hook {
            NF_INET_PRE_ROUTING if priority <= PRI_NAT_DST => Stage::PreroutingBeforeNat,
            NF_INET_PRE_ROUTING => Stage::PreroutingAfterNat,
            NF_INET_FORWARD => Stage::Forward,
            NF_INET_POST_ROUTING if priority < PRI_NAT_SRC => Stage::PostroutingBeforeNat,
            NF_INET_POST_ROUTING => Stage::PostroutingAfterNat,
            _ => return None,
        })
    }
}

/// What Linux would do with a packet at a stage.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum NfVerdict {
    /// Every chain of the stage let it through.
    Accept,
    /// A chain dropped it (Linux sends no answer: a `reject` is `Linux`).
    Drop,
    /// fpd cannot decide exactly: Linux must handle the packet.
    Linux(Reason),
}

/// Why a packet went to Linux: what fpd does not implement. Small and
/// `Copy`, so that the caller counts each (`Reason::ALL`, `name`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Reason {
    /// A netdev (or inet ingress) base chain: per device, and its device
    /// is not synced.
    NetdevChain,
    /// A lookup in a set or map fpd cannot answer exactly: not synced
    /// (yet), with timeouts, filled from the packet path, with per
    /// element expressions, or a concatenation of ranges (see `nft`).
    SetLookup,
    /// nat, masq, redir, or an x_tables SNAT/DNAT/MASQUERADE/REDIRECT.
    NatRule,
    /// reject, or the REJECT target: the kernel answers.
    Reject,
    /// queue, or a QUEUE/NFQUEUE verdict.
    Queue,
    /// An expression that writes the packet or its metadata (payload or
    /// meta or ct set, notrack, ...).
    Mangle,
    /// A payload load from the link-layer, inner or tunnel header.
    LinkLayer,
    /// A meta key fpd does not have.
    MetaKey,
    /// A ct key fpd does not have, or ct read before conntrack ran.
    CtKey,
    /// `ct status` read without a mask keeping to the synced bits.
    CtStatus,
    /// Any other nft expression (log, limit, quota, match, target, ...).
    Expression,
    /// A malformed or unknown nft expression or verdict.
    BadExpression,
    /// An x_tables match fpd does not implement.
    XtMatch,
    /// An x_tables target fpd does not implement (LOG, MARK, CT, ...).
    XtTarget,
    /// Jumps nested deeper than the kernel allows, or to no chain.
    JumpDepth,
    /// An IPv4 fragment (conntrack reassembles; transport loads break).
    Fragment,
    /// An IPv6 extension header before the transport header.
    Ipv6ExtHeader,
    /// A packet whose headers are not what Linux would accept.
    Malformed,
    /// The rules make flows stateful and this flow has no synced entry:
    /// Linux creates it (it then reaches fpd).
    NoConntrack,
    /// The entry has not seen a reply (or is not assured): Linux must see
    /// the packets that make it so.
    CtNotEstablished,
    /// A TCP SYN, FIN or RST: Linux tracks the state machine.
    TcpControl,
    /// The entry has TCP sequence adjustments (a helper resized payload).
    SeqAdjust,
    /// The entry is in another zone than 0, or the flow has several.
    CtZone,
    /// NAT fpd cannot redo: the entry translates without NAT hooks, an
    /// unsupported protocol, or a chain shares the NAT hook's priority.
    Nat,
    /// An nft chain whose rules' order is not known (a rule notified
    /// without its place, before cmgrd's re-dump), or not one list.
    RuleOrder,
    /// A rule offloads flows to a flowtable (`flow add @ft`): Linux
    /// forwards an offloaded flow from its ingress hook, past the
    /// forward chains, and fpd cannot tell which flows are.
    Flowtable,
}

impl Reason {
    pub const ALL: [Reason; 26] = [
        Reason::NetdevChain,
        Reason::SetLookup,
        Reason::NatRule,
        Reason::Reject,
        Reason::Queue,
        Reason::Mangle,
        Reason::LinkLayer,
        Reason::MetaKey,
        Reason::CtKey,
        Reason::CtStatus,
        Reason::Expression,
        Reason::BadExpression,
        Reason::XtMatch,
        Reason::XtTarget,
        Reason::JumpDepth,
        Reason::Fragment,
        Reason::Ipv6ExtHeader,
        Reason::Malformed,
        Reason::NoConntrack,
        Reason::CtNotEstablished,
        Reason::TcpControl,
        Reason::SeqAdjust,
        Reason::CtZone,
        Reason::Nat,
        Reason::RuleOrder,
        Reason::Flowtable,
    ];

    /// The counter's name.
    pub fn name(self) -> &'static str {
        match self {
            Reason::NetdevChain => "nf_netdev_chain",
            Reason::SetLookup => "nf_set_lookup",
            Reason::NatRule => "nf_nat_rule",
            Reason::Reject => "nf_reject",
            Reason::Queue => "nf_queue",
            Reason::Mangle => "nf_mangle",
            Reason::LinkLayer => "nf_link_layer",
            Reason::MetaKey => "nf_meta_key",
            Reason::CtKey => "nf_ct_key",
            Reason::CtStatus => "nf_ct_status",
            Reason::Expression => "nf_expression",
            Reason::BadExpression => "nf_bad_expression",
            Reason::XtMatch => "nf_xt_match",
            Reason::XtTarget => "nf_xt_target",
            Reason::JumpDepth => "nf_jump_depth",
            Reason::Fragment => "nf_fragment",
            Reason::Ipv6ExtHeader => "nf_ipv6_ext_header",
            Reason::Malformed => "nf_malformed",
            Reason::NoConntrack => "nf_no_conntrack",
            Reason::CtNotEstablished => "nf_ct_not_established",
            Reason::TcpControl => "nf_tcp_control",
            Reason::SeqAdjust => "nf_seq_adjust",
            Reason::CtZone => "nf_ct_zone",
            Reason::Nat => "nf_nat",
            Reason::RuleOrder => "nf_rule_order",
            Reason::Flowtable => "nf_flowtable",
        }
    }
}

/// What a worker counts while evaluating (its own, no atomics).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct NfCounters {
    /// `counter` expressions (nft) and rules (x_tables) a packet reached:
    /// Linux's own counters of those rules do not move for packets fpd
    /// forwards (reporting them back is a later step).
    pub rule_counters: u64,
}

/// An interface as netfilter sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Iface {
    pub ifindex: u32,
    /// NUL-padded to IFNAMSIZ, as `meta iifname` loads it.
    pub name: [u8; 16],
}

/// A name NUL-padded to IFNAMSIZ (longer names are cut, as the kernel's
/// never are longer than 15 bytes).
pub(crate) fn ifname(name: &str) -> [u8; 16] {
    let mut out = [0u8; 16];
    let n = name.len().min(15);
    out[..n].copy_from_slice(&name.as_bytes()[..n]);
    out
}

/// A packet as the rules see it at one stage.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Packet<'a> {
    /// The IP packet, header first, cut to its total length.
    pub l3: &'a [u8],
    pub v6: bool,
    /// The transport protocol and where its header starts in `l3`.
    pub l4proto: u8,
    pub thoff: usize,
    pub iif: Iface,
    /// The output interface, known from the forward hook on.
    pub oif: Option<Iface>,
}

const IPV6_EXT_HEADERS: [u8; 10] = [0, 43, 44, 50, 51, 60, 135, 139, 140, 253];

impl<'a> Packet<'a> {
    /// The packet of `l3` (an IPv4 or IPv6 header first; bytes past its
    /// total length, link padding, are ignored).
    pub fn parse(l3: &'a [u8], iif: Iface, oif: Option<Iface>) -> Result<Packet<'a>, Reason> {
        let first = *l3.first().ok_or(Reason::Malformed)?;
        match first >> 4 {
            4 => {
                let ihl = usize::from(first & 0x0f) * 4;
                if ihl < 20 || l3.len() < 20 {
                    return Err(Reason::Malformed);
                }
                let total = usize::from(u16::from_be_bytes([l3[2], l3[3]]));
                if total < ihl || total > l3.len() {
                    return Err(Reason::Malformed);
                }
                // More fragments, or an offset: conntrack would reassemble
                // (and transport loads break on non-first fragments).
                if u16::from_be_bytes([l3[6], l3[7]]) & 0x3fff != 0 {
                    return Err(Reason::Fragment);
                }
                Ok(Packet {
                    l3: &l3[..total],
                    v6: false,
                    l4proto: l3[9],
                    thoff: ihl,
                    iif,
                    oif,
                })
            }
            6 => {
                if l3.len() < 40 {
                    return Err(Reason::Malformed);
                }
                let total = 40 + usize::from(u16::from_be_bytes([l3[4], l3[5]]));
                // A jumbogram (payload length 0) needs the hop-by-hop header.
                if total > l3.len() || total == 40 && l3[6] == 0 {
                    return Err(Reason::Malformed);
                }
                if IPV6_EXT_HEADERS.contains(&l3[6]) {
                    return Err(Reason::Ipv6ExtHeader);
                }
                Ok(Packet {
                    l3: &l3[..total],
                    v6: true,
                    l4proto: l3[6],
                    thoff: 40,
                    iif,
                    oif,
                })
            }
            _ => Err(Reason::Malformed),
        }
    }

    /// The transport header and what follows.
    pub fn l4(&self) -> &'a [u8] {
        &self.l3[self.thoff.min(self.l3.len())..]
    }

    fn tcp_flags(&self) -> Option<u8> {
        (self.l4proto == ip_proto::TCP)
            .then(|| self.l4().get(13).copied())
            .flatten()
    }
}

/// A packet's conntrack entry and what Linux's conntrack makes of the
/// packet: the `ct state` bit, the direction, and the NAT to apply.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Tracked<'a> {
    pub entry: &'a FlowEntry,
    pub dir: Direction,
    /// CT_STATE_ESTABLISHED, _RELATED or _NEW.
    pub state: u32,
    /// Whether the destination (prerouting) and source (postrouting) of
    /// this packet are translated.
    pub nat_dst: bool,
    pub nat_src: bool,
}

/// One base chain in a stage's order.
#[derive(Debug, Clone, Copy)]
enum ChainRef {
    /// Index into `Ruleset::nft`.
    Nft(usize),
    /// Index into `Ruleset::xt`.
    Xt(usize),
}

#[derive(Debug, Clone, Copy)]
struct BaseChain {
    priority: i32,
    chain: ChainRef,
}

/// What one family's packets traverse.
#[derive(Debug, Default)]
struct FamilyRules {
    stages: [Vec<BaseChain>; 5],
    /// Whether conntrack matters: a ct expression, a conntrack match or a
    /// NAT hook anywhere.
    stateful: bool,
    /// Whether Linux's NAT hooks are registered (any nat chain).
    nat: bool,
    /// A chain sits exactly at a NAT hook's priority (order unknown).
    nat_tie: [bool; 2],
    /// A netdev or ingress chain exists.
    netdev: bool,
    /// A rule of the family offloads flows to a flowtable.
    flowtable: bool,
}

/// See the module documentation.
#[derive(Debug, Default)]
pub(crate) struct Ruleset {
    nft: nft::Program,
    xt: xt::Program,
    v4: FamilyRules,
    v6: FamilyRules,
}

impl Ruleset {
    /// Compiles the synced rules of `tables`.
    pub fn build(tables: &Tables) -> Ruleset {
        Self::from_parts(
            tables.nft_tables(),
            tables.nft_chains(),
            tables.nft_rules(),
            tables.nft_sets(),
            tables.nft_elems(),
            tables.xt_chains(),
            tables.xt_rules(),
        )
    }

    fn from_parts<'a>(
        nft_tables: impl Iterator<Item = &'a NftTable>,
        nft_chains: impl Iterator<Item = &'a NftChain>,
        nft_rules: impl Iterator<Item = &'a fpc::NftRule>,
        nft_sets: impl Iterator<Item = &'a NftSet>,
        nft_elems: impl Iterator<Item = &'a NftSetElem>,
        xt_chains: impl Iterator<Item = &'a XtChain>,
        xt_rules: impl Iterator<Item = &'a fpc::XtRule>,
    ) -> Ruleset {
        let mut rs = Ruleset::default();
        let dormant: HashMap<(u8, &str), bool> = nft_tables
            .map(|t| {
                (
                    (t.family, t.name.as_str()),
                    t.flags & NFT_TABLE_F_DORMANT != 0,
                )
            })
            .collect();
        let chains: Vec<&NftChain> = nft_chains
            // A chain whose table is not (yet) synced counts: only a
            // dormant table is known to be off.
            .filter(|c| dormant.get(&(c.family, c.table.as_str())) != Some(&true))
            .collect();
        let nft_rules: Vec<&fpc::NftRule> = nft_rules.collect();
        for r in &nft_rules {
            let live = dormant.get(&(r.family, r.table.as_str())) != Some(&true);
            if live && nft::offloads_flows(&r.exprs) {
                let families: &[bool] = match r.family {
                    NFPROTO_IPV4 => &[false],
                    NFPROTO_IPV6 => &[true],
                    NFPROTO_INET => &[false, true],
                    _ => &[],
                };
                for &v6 in families {
                    if v6 {
                        rs.v6.flowtable = true;
                    } else {
                        rs.v4.flowtable = true;
                    }
                }
            }
        }
        rs.nft = nft::Program::build(&chains, nft_rules.into_iter(), nft_sets, nft_elems);
        for (index, c) in chains.iter().enumerate() {
            let families: &[bool] = match c.family {
                NFPROTO_IPV4 => &[false],
                NFPROTO_IPV6 => &[true],
                NFPROTO_INET => &[false, true],
                NFPROTO_NETDEV if c.hook.is_some() => {
                    rs.v4.netdev = true;
                    rs.v6.netdev = true;
                    continue;
                }
                _ => continue, // arp, bridge: not on the routed path
            };
            let Some((hook, priority)) = c.hook else {
                continue; // a regular chain matters through its callers
            };
            // A ct read reachable from a base chain of any hook (more
            // than the forward path needs: never less), and any nat chain
            // (Linux's NAT hooks then run for every flow).
            let is_nat = c.chain_type == "nat";
            let stateful = is_nat || rs.nft.reaches_conntrack(index);
            for &v6 in families {
                let f = if v6 { &mut rs.v6 } else { &mut rs.v4 };
                f.stateful |= stateful;
                f.nat |= is_nat;
            }
            for &v6 in families {
                let f = if v6 { &mut rs.v6 } else { &mut rs.v4 };
                if hook == NF_INET_INGRESS {
                    f.netdev = true;
                    continue;
                }
                if is_nat {
                    continue; // never evaluated: see the module documentation
                }
                f.add(hook, priority, ChainRef::Nft(index));
            }
        }
        rs.xt = xt::Program::build(xt_chains, xt_rules);
        for (index, c) in rs.xt.chains().iter().enumerate() {
            let f = match c.family {
                AF_INET => &mut rs.v4,
                AF_INET6 => &mut rs.v6,
                _ => continue,
            };
            let is_nat = c.table == "nat";
            f.stateful |= is_nat || c.reads_conntrack;
            f.nat |= is_nat;
            let Some(hook) = c.hook else { continue };
            let Some(priority) = xt::table_priority(&c.table, hook) else {
                // A table fpd does not know the priority of: every packet
                // of the hook it is on goes to Linux.
                f.add(hook, 0, ChainRef::Xt(index));
                continue;
            };
            if is_nat || c.is_noop() {
                continue; // an empty ACCEPT chain costs nothing
            }
            f.add(hook, priority, ChainRef::Xt(index));
        }
        for f in [&mut rs.v4, &mut rs.v6] {
            for stage in &mut f.stages {
                stage.sort_by_key(|b| b.priority);
            }
        }
        rs
    }

    /// No chain applies to forwarded packets and no conntrack or NAT is
    /// in play: the caller can skip netfilter altogether.
    pub fn is_empty(&self) -> bool {
        [&self.v4, &self.v6].iter().all(|f| {
            f.stages.iter().all(Vec::is_empty) && !f.stateful && !f.nat && !f.netdev && !f.flowtable
        })
    }

    /// Whether packets of this family need their conntrack entry.
    #[cfg(test)]
    pub fn is_stateful(&self, v6: bool) -> bool {
        self.family(v6).stateful
    }

    fn family(&self, v6: bool) -> &FamilyRules {
        if v6 {
            &self.v6
        } else {
            &self.v4
        }
    }

    /// What Linux's conntrack makes of `pkt` (as received), given the
    /// entries of its flow: `None` when conntrack does not matter to the
    /// rules, an error when only Linux can say.
    pub fn track<'e>(
        &self,
        pkt: &Packet<'_>,
        flow: FlowMatch<'e>,
    ) -> Result<Option<Tracked<'e>>, Reason> {
        let f = self.family(pkt.v6);
        if f.netdev {
            return Err(Reason::NetdevChain);
        }
        if f.flowtable {
            return Err(Reason::Flowtable);
        }
        if !f.stateful {
            return Ok(None);
        }
        let (entry, dir) = match flow {
            FlowMatch::None => return Err(Reason::NoConntrack),
            FlowMatch::Several => return Err(Reason::CtZone),
            FlowMatch::One(e, d) => (e, d),
        };
        if entry.zone() != 0 {
            return Err(Reason::CtZone);
        }
        let status = entry.status();
        if status & Conntrack::IPS_SEQ_ADJUST != 0 {
            return Err(Reason::SeqAdjust);
        }
        if let Some(flags) = pkt.tcp_flags() {
            if flags & (TCP_SYN | TCP_FIN | TCP_RST) != 0 {
                return Err(Reason::TcpControl);
            }
        } else if pkt.l4proto == ip_proto::TCP {
            return Err(Reason::Malformed);
        }
        let replied = status & IPS_SEEN_REPLY != 0;
        let state = if replied && status & IPS_ASSURED != 0 {
            CT_STATE_ESTABLISHED
        } else if replied || dir == Direction::Reply || pkt.l4proto == ip_proto::TCP {
            // The packet would change the entry (seen reply, assured, the
            // TCP state): Linux must see it.
            return Err(Reason::CtNotEstablished);
        } else if status & IPS_EXPECTED != 0 {
            CT_STATE_RELATED
        } else {
            CT_STATE_NEW
        };
        if state != CT_STATE_ESTABLISHED && f.nat {
            // A connection's first packets still run the nat chains.
            return Err(Reason::CtNotEstablished);
        }
        let (src_nat, dst_nat) = (
            status & Conntrack::IPS_SRC_NAT != 0,
            status & Conntrack::IPS_DST_NAT != 0,
        );
        let (nat_dst, nat_src) = match dir {
            Direction::Original => (dst_nat, src_nat),
            Direction::Reply => (src_nat, dst_nat),
        };
        if (nat_dst || nat_src) && !f.nat {
            // Without NAT hooks Linux no longer translates this entry:
            // a case fpd leaves to Linux rather than reason about.
            return Err(Reason::Nat);
        }
        if nat_dst && f.nat_tie[0] || nat_src && f.nat_tie[1] {
            return Err(Reason::Nat);
        }
        Ok(Some(Tracked {
            entry,
            dir,
            state,
            nat_dst,
            nat_src,
        }))
    }

    /// The verdict of the chains of `stage` for `pkt`.
    pub fn evaluate(
        &self,
        stage: Stage,
        pkt: &Packet<'_>,
        ct: Option<&Tracked<'_>>,
        counters: &mut NfCounters,
    ) -> NfVerdict {
        let f = self.family(pkt.v6);
        if f.netdev {
            return NfVerdict::Linux(Reason::NetdevChain);
        }
        if f.flowtable {
            return NfVerdict::Linux(Reason::Flowtable);
        }
        if f.stateful && ct.is_none() {
            return NfVerdict::Linux(Reason::NoConntrack);
        }
        let chains = &f.stages[stage.index()];
        let mut i = 0;
        while i < chains.len() {
            // A group of equal priority: order unknown, so every chain of
            // it runs and a Linux answer beats a drop.
            let prio = chains[i].priority;
            let mut dropped = false;
            while i < chains.len() && chains[i].priority == prio {
                match self.run(chains[i].chain, pkt, ct, counters) {
                    NfVerdict::Accept => {}
                    NfVerdict::Drop => dropped = true,
                    linux => return linux,
                }
                i += 1;
            }
            if dropped {
                return NfVerdict::Drop;
            }
        }
        NfVerdict::Accept
    }

    fn run(
        &self,
        chain: ChainRef,
        pkt: &Packet<'_>,
        ct: Option<&Tracked<'_>>,
        counters: &mut NfCounters,
    ) -> NfVerdict {
        match chain {
            ChainRef::Nft(c) => self.nft.run(c, pkt, ct, counters),
            ChainRef::Xt(c) => self.xt.run(c, pkt, ct, counters),
        }
    }
}

impl FamilyRules {
    fn add(&mut self, hook: u32, priority: i32, chain: ChainRef) {
        let Some(stage) = Stage::of(hook, priority) else {
            return;
        };
        if hook == NF_INET_PRE_ROUTING && priority == PRI_NAT_DST {
            self.nat_tie[0] = true;
        }
        if hook == NF_INET_POST_ROUTING && priority == PRI_NAT_SRC {
            self.nat_tie[1] = true;
        }
        self.stages[stage.index()].push(BaseChain { priority, chain });
    }
}

/// Whether a chain at (`hook`, `priority`) runs before conntrack has
/// looked the packet up (a ct read there is Linux's).
fn before_conntrack(hook: u32, priority: i32) -> bool {
    hook == NF_INET_PRE_ROUTING && priority <= PRI_CONNTRACK
}

#[cfg(test)]
impl Ruleset {
    /// The stage list, for tests: (priority, "nft"/"xt") per chain.
    pub(crate) fn order(&self, v6: bool, stage: Stage) -> Vec<(i32, &'static str)> {
        self.family(v6).stages[stage.index()]
            .iter()
            .map(|b| {
                (
                    b.priority,
                    match b.chain {
                        ChainRef::Nft(_) => "nft",
                        ChainRef::Xt(_) => "xt",
                    },
                )
            })
            .collect()
    }
}
