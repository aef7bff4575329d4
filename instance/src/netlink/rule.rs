//! Policy routing rules: RTM_NEWRULE / RTM_DELRULE (`struct fib_rule_hdr`
//! and FRA_* attributes) of AF_INET and AF_INET6, decoded into
//! [`RuleSpec`]s, and the kernel's rule list they describe.
//!
//! The kernel gives a rule no handle (see `fpc::rule` for the
//! key): a notification says only what the rule is. [`RuleList`] replays
//! what the kernel does with its list: a new rule goes after every rule
//! of a priority lower than or equal to its own (fib_nl_newrule), a
//! deleted one is the first rule equal to it. From that list come the
//! FPC objects, numbered (`nth` among identical copies, `position` within
//! their priority) the same way whether the list came from notifications
//! or a dump, so a resync sends only what differs.
//!
//! Invariants: no I/O, no logging, no panic on any input. Only
//! configuration is kept: the header's state flags (FIB_RULE_UNRESOLVED,
//! IIF/OIF_DETACHED), which the kernel changes silently when a goto
//! target or a device comes or goes, are masked off; FRA_SUPPRESS_*'s -1
//! (what the kernel reports for "none") is None; a single port carries the
//! 0xffff mask the kernel gives it. Attributes this decoder does not know
//! are kept by number, so fpd can leave such a rule to Linux.

use std::net::IpAddr;

use fpc::{
    rule_action, Object, PortMatch, Rule, RuleSpec, AF_INET, AF_INET6, FIB_RULE_FIND_SADDR,
    FIB_RULE_INVERT,
};

use super::wire::{attrs, WireError};

pub use super::wire::{RTM_DELRULE, RTM_GETRULE, RTM_NEWRULE};

/// The rules' multicast groups.
pub const RTNLGRP_IPV4_RULE: u32 = 8;
pub const RTNLGRP_IPV6_RULE: u32 = 19;

const FRA_DST: u16 = 1;
const FRA_SRC: u16 = 2;
const FRA_IIFNAME: u16 = 3;
const FRA_GOTO: u16 = 4;
const FRA_PRIORITY: u16 = 6;
const FRA_FWMARK: u16 = 10;
const FRA_FLOW: u16 = 11;
const FRA_TUN_ID: u16 = 12;
const FRA_SUPPRESS_IFGROUP: u16 = 13;
const FRA_SUPPRESS_PREFIXLEN: u16 = 14;
const FRA_TABLE: u16 = 15;
const FRA_FWMASK: u16 = 16;
const FRA_OIFNAME: u16 = 17;
const FRA_PAD: u16 = 18;
const FRA_L3MDEV: u16 = 19;
const FRA_UID_RANGE: u16 = 20;
const FRA_PROTOCOL: u16 = 21;
const FRA_IP_PROTO: u16 = 22;
const FRA_SPORT_RANGE: u16 = 23;
const FRA_DPORT_RANGE: u16 = 24;
/// Since 6.15 (`ip rule ... dscp`), with its mask since 6.17; this
/// kernel (6.18) reports the mask 0x3f for a DSCP given alone.
const FRA_DSCP: u16 = 25;
const FRA_FLOWLABEL: u16 = 26;
const FRA_FLOWLABEL_MASK: u16 = 27;
/// Since 6.17: port masks, reported by the kernel as 0xffff for a single
/// port.
const FRA_SPORT_MASK: u16 = 28;
const FRA_DPORT_MASK: u16 = 29;
const FRA_DSCP_MASK: u16 = 30;

fn u32_of(kind: u16, v: &[u8]) -> Result<u32, WireError> {
    v.get(..4)
        .map(|b| u32::from_ne_bytes(b.try_into().unwrap()))
        .ok_or(WireError::BadAttr { kind, len: v.len() })
}

fn u16_of(kind: u16, v: &[u8]) -> Result<u16, WireError> {
    v.get(..2)
        .map(|b| u16::from_ne_bytes([b[0], b[1]]))
        .ok_or(WireError::BadAttr { kind, len: v.len() })
}

fn u8_of(kind: u16, v: &[u8]) -> Result<u8, WireError> {
    v.first()
        .copied()
        .ok_or(WireError::BadAttr { kind, len: 0 })
}

fn ip_of(family: u8, v: &[u8]) -> Result<IpAddr, WireError> {
    match (family, v.len()) {
        (AF_INET, 4) => Ok(IpAddr::from(<[u8; 4]>::try_from(v).unwrap())),
        (AF_INET6, 16) => Ok(IpAddr::from(<[u8; 16]>::try_from(v).unwrap())),
        (_, n) => Err(WireError::BadAddress(n)),
    }
}

/// `struct fib_rule_port_range`: start and end, host order.
fn range_of(kind: u16, v: &[u8]) -> Result<(u16, u16), WireError> {
    match v.get(..4) {
        Some(b) => Ok((
            u16::from_ne_bytes([b[0], b[1]]),
            u16::from_ne_bytes([b[2], b[3]]),
        )),
        None => Err(WireError::BadAttr { kind, len: v.len() }),
    }
}

/// Whether an RTM_*RULE payload is of a family rules are synced for
/// (AF_INET, AF_INET6; not the IPMR/IP6MR rules of multicast routing).
pub fn is_synced_family(payload: &[u8]) -> bool {
    matches!(payload.first(), Some(&AF_INET | &AF_INET6))
}

/// Decodes one RTM_NEWRULE or RTM_DELRULE payload of AF_INET or AF_INET6.
pub fn decode(payload: &[u8]) -> Result<RuleSpec, WireError> {
    // struct fib_rule_hdr: family, dst_len, src_len, tos, table, res1,
    // res2, action, flags (u32).
    if payload.len() < 12 {
        return Err(WireError::Short(payload.len()));
    }
    let family = payload[0];
    if family != AF_INET && family != AF_INET6 {
        return Err(WireError::BadFamily(family));
    }
    let max = if family == AF_INET { 32 } else { 128 };
    let (dst_len, src_len) = (payload[1], payload[2]);
    if dst_len > max || src_len > max {
        return Err(WireError::BadAttr {
            kind: 0,
            len: usize::from(dst_len.max(src_len)),
        });
    }
    let header_table = payload[4];
    let flags = u32::from_ne_bytes(payload[8..12].try_into().unwrap());
    let mut s = RuleSpec {
        family,
        priority: 0,
        src: None,
        src_len,
        dst: None,
        dst_len,
        iif: String::new(),
        oif: String::new(),
        fwmark: 0,
        fwmask: 0,
        tos: payload[3],
        dscp: None,
        flowlabel: None,
        ip_proto: 0,
        sport: None,
        dport: None,
        uid_range: None,
        l3mdev: false,
        tun_id: 0,
        realms: 0,
        table: header_table.into(),
        goto: None,
        suppress_prefixlen: None,
        suppress_ifgroup: None,
        action: payload[7],
        flags: flags & (FIB_RULE_INVERT | FIB_RULE_FIND_SADDR),
        protocol: 0,
        unknown: Vec::new(),
    };
    let (mut sport_mask, mut dport_mask, mut dscp_mask) = (None, None, None);
    let (mut flowlabel, mut flowlabel_mask) = (None, None);
    let mut fwmask = None;
    let name = |v: &[u8]| {
        let raw = v.split(|b| *b == 0).next().unwrap_or_default();
        String::from_utf8_lossy(raw).into_owned()
    };
    for a in attrs(&payload[12..]) {
        let (kind, v) = a?;
        match kind {
            FRA_DST => s.dst = Some(ip_of(family, v)?),
            FRA_SRC => s.src = Some(ip_of(family, v)?),
            FRA_IIFNAME => s.iif = name(v),
            FRA_OIFNAME => s.oif = name(v),
            FRA_GOTO => s.goto = Some(u32_of(kind, v)?),
            FRA_PRIORITY => s.priority = u32_of(kind, v)?,
            FRA_FWMARK => s.fwmark = u32_of(kind, v)?,
            FRA_FWMASK => fwmask = Some(u32_of(kind, v)?),
            FRA_FLOW => s.realms = u32_of(kind, v)?,
            FRA_TUN_ID => {
                let b = v
                    .get(..8)
                    .ok_or(WireError::BadAttr { kind, len: v.len() })?;
                s.tun_id = u64::from_be_bytes(b.try_into().unwrap());
            }
            // -1 (0xffffffff) is the kernel's "none".
            FRA_SUPPRESS_IFGROUP => {
                s.suppress_ifgroup = Some(u32_of(kind, v)?).filter(|g| *g != u32::MAX)
            }
            FRA_SUPPRESS_PREFIXLEN => {
                s.suppress_prefixlen = Some(u32_of(kind, v)?).filter(|p| *p != u32::MAX)
            }
            FRA_TABLE => s.table = u32_of(kind, v)?,
            FRA_PAD => {}
            FRA_L3MDEV => s.l3mdev = u8_of(kind, v)? != 0,
            FRA_UID_RANGE => {
                let (a, b) = (u32_of(kind, v)?, u32_of(kind, v.get(4..).unwrap_or(&[]))?);
                s.uid_range = Some((a, b));
            }
            FRA_PROTOCOL => s.protocol = u8_of(kind, v)?,
            FRA_IP_PROTO => s.ip_proto = u8_of(kind, v)?,
            FRA_SPORT_RANGE | FRA_DPORT_RANGE => {
                let (start, end) = range_of(kind, v)?;
                let p = Some(PortMatch {
                    start,
                    end,
                    mask: None,
                });
                if kind == FRA_SPORT_RANGE {
                    s.sport = p;
                } else {
                    s.dport = p;
                }
            }
            FRA_SPORT_MASK => sport_mask = Some(u16_of(kind, v)?),
            FRA_DPORT_MASK => dport_mask = Some(u16_of(kind, v)?),
            FRA_DSCP => s.dscp = Some((u8_of(kind, v)?, 0x3f)),
            FRA_DSCP_MASK => dscp_mask = Some(u8_of(kind, v)?),
            FRA_FLOWLABEL | FRA_FLOWLABEL_MASK => {
                let b = v
                    .get(..4)
                    .ok_or(WireError::BadAttr { kind, len: v.len() })?;
                let x = u32::from_be_bytes(b.try_into().unwrap());
                if kind == FRA_FLOWLABEL {
                    flowlabel = Some(x);
                } else {
                    flowlabel_mask = Some(x);
                }
            }
            other => s.unknown.push(other),
        }
    }
    // The header's table is RT_TABLE_COMPAT (252) when the table is above
    // 255; FRA_TABLE, read above, then has the real one.
    // A mark without a mask is matched whole (fib_nl2rule).
    s.fwmask = match (fwmask, s.fwmark) {
        (Some(m), _) => m,
        (None, 0) => 0,
        (None, _) => u32::MAX,
    };
    if let (Some(p), Some(m)) = (&mut s.sport, sport_mask) {
        p.mask = Some(m);
    }
    if let (Some(p), Some(m)) = (&mut s.dport, dport_mask) {
        p.mask = Some(m);
    }
    if let (Some(d), Some(m)) = (&mut s.dscp, dscp_mask) {
        d.1 = m;
    }
    if flowlabel.is_some() || flowlabel_mask.is_some() {
        s.flowlabel = Some((flowlabel.unwrap_or(0), flowlabel_mask.unwrap_or(0)));
    }
    if s.src.is_none() != (s.src_len == 0) || s.dst.is_none() != (s.dst_len == 0) {
        // An address without a length (or the reverse) is no rule the
        // kernel makes.
        return Err(WireError::BadAttr {
            kind: if s.src.is_none() != (s.src_len == 0) {
                FRA_SRC
            } else {
                FRA_DST
            },
            len: 0,
        });
    }
    s.unknown.sort_unstable();
    s.unknown.dedup();
    Ok(s)
}

/// One family's rules in the kernel's order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RuleList {
    rules: Vec<RuleSpec>,
}

impl RuleList {
    /// The list the FPC objects `rules` describe (any order, any family:
    /// the caller gives one family's).
    pub fn from_objects<'a>(rules: impl Iterator<Item = &'a Rule>) -> RuleList {
        let mut v: Vec<&Rule> = rules.collect();
        v.sort_by_key(|r| (r.spec.priority, r.position));
        RuleList {
            rules: v.into_iter().map(|r| r.spec.clone()).collect(),
        }
    }

    /// Appends a rule as a dump lists it (already in the kernel's order).
    pub fn push_dumped(&mut self, s: RuleSpec) {
        self.rules.push(s);
    }

    /// A new rule, where fib_nl_newrule puts it: after the last rule whose
    /// priority is not above its own.
    pub fn insert(&mut self, s: RuleSpec) {
        let at = self
            .rules
            .iter()
            .rposition(|r| r.priority <= s.priority)
            .map_or(0, |i| i + 1);
        self.rules.insert(at, s);
    }

    /// A deleted rule: the first equal to it. Whether there was one.
    pub fn remove(&mut self, s: &RuleSpec) -> bool {
        match self.rules.iter().position(|r| r == s) {
            Some(i) => {
                self.rules.remove(i);
                true
            }
            None => false,
        }
    }

    /// The FPC objects: each rule with its copy number and its position
    /// within its priority.
    pub fn objects(&self) -> Vec<Object> {
        let mut out = Vec::with_capacity(self.rules.len());
        let mut position = 0;
        for (i, s) in self.rules.iter().enumerate() {
            position = match i.checked_sub(1).map(|p| &self.rules[p]) {
                Some(prev) if prev.priority == s.priority => position + 1,
                _ => 0,
            };
            let nth = self.rules[..i].iter().filter(|r| *r == s).count() as u32;
            out.push(Object::Rule(Box::new(Rule {
                spec: s.clone(),
                nth,
                position,
            })));
        }
        out
    }

    pub fn len(&self) -> usize {
        self.rules.len()
    }

    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }
}

/// Whether `s` is one of the kernel's actions fpd knows (for tests and
/// `show`: unknown ones are still synced).
pub fn known_action(s: &RuleSpec) -> bool {
    matches!(
        s.action,
        rule_action::TO_TBL
            | rule_action::GOTO
            | rule_action::NOP
            | rule_action::BLACKHOLE
            | rule_action::UNREACHABLE
            | rule_action::PROHIBIT
    )
}

#[cfg(test)]
mod tests {
    use super::super::wire::Messages;
    use super::*;

    // Captured on this kernel (6.18) with a plain AF_NETLINK socket:
    // RTM_GETRULE dumps of a new namespace, of rules made with raw
    // netlink (FRA_DSCP, port and DSCP masks, tun_id, l3mdev, an unknown
    // attribute 31, two identical copies without NLM_F_EXCL), of rules
    // whose device went, and the RTNLGRP_IPV4_RULE/IPV6_RULE
    // notifications of `ip rule add` / `del` (iproute2 6.1).
    const DUMP4_DEFAULT: &[u8] = include_bytes!("fixtures/rule-dump4-default.bin");
    const DUMP6_DEFAULT: &[u8] = include_bytes!("fixtures/rule-dump6-default.bin");
    const DUMP4_RAW: &[u8] = include_bytes!("fixtures/rule-dump4-raw.bin");
    const DUMP6_RAW: &[u8] = include_bytes!("fixtures/rule-dump6-raw.bin");
    const EVENTS: &[u8] = include_bytes!("fixtures/rule-events.bin");
    const DETACHED: &[u8] = include_bytes!("fixtures/rule-dump-detached.bin");

    /// The AF_INET and AF_INET6 rules of `buf`.
    fn specs(buf: &[u8]) -> Vec<(u16, RuleSpec)> {
        Messages::new(buf)
            .map(Result::unwrap)
            .filter(|m| is_synced_family(m.payload))
            .map(|m| (m.kind, decode(m.payload).unwrap()))
            .collect()
    }

    fn list(buf: &[u8]) -> RuleList {
        let mut l = RuleList::default();
        for (_, s) in specs(buf) {
            l.push_dumped(s);
        }
        l
    }

    #[test]
    fn default_rules_of_a_new_namespace() {
        let v4 = specs(DUMP4_DEFAULT);
        let got: Vec<_> = v4
            .iter()
            .map(|(_, s)| (s.priority, s.table, s.action, s.protocol))
            .collect();
        assert_eq!(
            got,
            [(0, 255, 1, 2), (32766, 254, 1, 2), (32767, 253, 1, 2)]
        );
        let (_, main) = &v4[1];
        assert_eq!(main.suppress_prefixlen, None, "-1 is none");
        assert_eq!((main.src, main.dst, main.fwmask), (None, None, 0));
        let v6: Vec<_> = specs(DUMP6_DEFAULT)
            .into_iter()
            .map(|(_, s)| (s.family, s.priority, s.table))
            .collect();
        assert_eq!(v6, [(AF_INET6, 0, 255), (AF_INET6, 32766, 254)]);
    }

    #[test]
    fn every_selector_of_ip_rule() {
        let ev = specs(EVENTS);
        assert_eq!(ev.len(), 11);
        let (kind, r) = &ev[0];
        assert_eq!(*kind, RTM_NEWRULE);
        // not from 10.1.0.0/16 to 10.2.0.0/24 tos 0x10 fwmark 0x5/0xff
        // iif va oif vb pref 100 uidrange 1000-2000 ipproto udp
        // sport 1000-2000 dport 53 protocol static table 300
        // suppress_prefixlength 8 suppress_ifgroup 3
        assert_eq!(r.priority, 100);
        assert_eq!(r.flags, FIB_RULE_INVERT);
        assert_eq!(r.src, Some("10.1.0.0".parse().unwrap()));
        assert_eq!(r.src_len, 16);
        assert_eq!((r.dst, r.dst_len), (Some("10.2.0.0".parse().unwrap()), 24));
        assert_eq!(r.tos, 0x10);
        assert_eq!((r.fwmark, r.fwmask), (5, 0xff));
        assert_eq!((r.iif.as_str(), r.oif.as_str()), ("va", "vb"));
        assert_eq!(r.uid_range, Some((1000, 2000)));
        assert_eq!(r.ip_proto, 17);
        let range = PortMatch {
            start: 1000,
            end: 2000,
            mask: None,
        };
        assert_eq!(r.sport, Some(range));
        // A single port comes with the mask the kernel set.
        let single = PortMatch {
            start: 53,
            end: 53,
            mask: Some(0xffff),
        };
        assert_eq!(r.dport, Some(single));
        assert_eq!((r.protocol, r.table), (4, 300));
        assert_eq!(r.suppress_prefixlen, Some(8));
        assert_eq!(r.suppress_ifgroup, Some(3));
        assert_eq!(r.action, rule_action::TO_TBL);
        assert!(r.unknown.is_empty());
        let actions: Vec<_> = ev.iter().map(|(k, s)| (*k, s.priority, s.action)).collect();
        assert_eq!(
            actions,
            [
                (RTM_NEWRULE, 100, rule_action::TO_TBL),
                (RTM_NEWRULE, 101, rule_action::GOTO),
                (RTM_NEWRULE, 102, rule_action::NOP),
                (RTM_NEWRULE, 103, rule_action::BLACKHOLE),
                (RTM_NEWRULE, 104, rule_action::UNREACHABLE),
                (RTM_NEWRULE, 105, rule_action::PROHIBIT),
                (RTM_NEWRULE, 106, rule_action::TO_TBL),
                (RTM_NEWRULE, 110, rule_action::TO_TBL),
                (RTM_NEWRULE, 111, rule_action::GOTO),
                (RTM_DELRULE, 101, rule_action::GOTO),
                (RTM_DELRULE, 111, rule_action::GOTO),
            ]
        );
        assert_eq!(ev[1].1.goto, Some(200));
        assert!(ev[6].1.l3mdev);
        let v6 = &ev[7].1;
        assert_eq!(
            (v6.family, v6.table, v6.src_len, v6.dst_len),
            (AF_INET6, 1000, 48, 64)
        );
        // `not ipproto ipv6-icmp goto 200` with no rule 200: the kernel
        // says FIB_RULE_UNRESOLVED (0x4), a state; only the inversion is
        // kept, so its deletion names the same rule.
        assert_eq!(ev[8].1.flags, FIB_RULE_INVERT);
        assert_eq!(ev[8].1, ev[10].1);
    }

    #[test]
    fn raw_netlink_selectors_dscp_masks_tun_id_l3mdev_unknown() {
        let by_pref = |p: u32| {
            specs(DUMP4_RAW)
                .into_iter()
                .map(|(_, s)| s)
                .find(|s| s.priority == p)
                .unwrap()
        };
        assert_eq!(by_pref(200).dscp, Some((10, 0x3f)));
        assert_eq!(by_pref(204).dscp, Some((8, 0x38)));
        assert_eq!(
            by_pref(202).sport,
            Some(PortMatch {
                start: 0x1000,
                end: 0x1000,
                mask: Some(0xff00)
            })
        );
        assert_eq!(by_pref(203).dport.unwrap().mask, Some(0xff00));
        // Attribute 31 exists on no kernel yet; the kernel accepted and
        // ignored it, and reports nothing.
        assert!(by_pref(205).unknown.is_empty());
        assert_eq!(by_pref(206).tun_id, 42);
        assert!(by_pref(207).l3mdev);
        let v6: Vec<_> = specs(DUMP6_RAW).into_iter().map(|(_, s)| s).collect();
        assert_eq!(v6[1].flowlabel, Some((0x12345, 0xfffff)));
    }

    #[test]
    fn identical_copies_are_numbered_and_positioned() {
        let objs = list(DUMP4_RAW).objects();
        let at300: Vec<(u32, u32)> = objs
            .iter()
            .filter_map(|o| match o {
                Object::Rule(r) if r.spec.priority == 300 => Some((r.nth, r.position)),
                _ => None,
            })
            .collect();
        assert_eq!(at300, [(0, 0), (1, 1)]);
        let keys: std::collections::HashSet<_> = objs.iter().map(|o| o.key()).collect();
        assert_eq!(keys.len(), objs.len(), "every rule has its own key");
    }

    #[test]
    fn detached_devices_are_state_not_configuration() {
        let all = specs(DETACHED);
        let v4_103 = all
            .iter()
            .find(|(_, s)| s.family == AF_INET && s.priority == 103)
            .unwrap();
        let added = specs(EVENTS)
            .into_iter()
            .find(|(_, s)| s.priority == 103)
            .unwrap();
        // The dump says FIB_RULE_IIF_DETACHED; the rule is the one added.
        assert_eq!(v4_103.1, added.1);
        assert!(all.iter().any(|(_, s)| s.family == AF_INET6));
        // A dump of every family also lists multicast routing's own rules
        // (RTNL_FAMILY_IPMR, IP6MR): not synced.
        let mut mrules = 0;
        for m in Messages::new(DETACHED).map(Result::unwrap) {
            if !is_synced_family(m.payload) {
                mrules += 1;
                assert_eq!(
                    crate::netlink::decode(&m),
                    Ok(super::super::wire::Event::Ignored)
                );
            }
        }
        assert_eq!(mrules, 2);
    }

    #[test]
    fn the_list_follows_the_kernel_insert_and_delete() {
        let rule = |p: u32, table: u32| {
            let mut s = specs(DUMP4_DEFAULT)[1].1.clone();
            s.priority = p;
            s.table = table;
            s
        };
        let mut l = RuleList::default();
        l.insert(rule(32766, 254));
        l.insert(rule(100, 10));
        l.insert(rule(100, 20));
        l.insert(rule(100, 10)); // a copy, after the 20
        l.insert(rule(50, 30));
        let order = |l: &RuleList| -> Vec<(u32, u32, u32, u32)> {
            l.objects()
                .iter()
                .map(|o| match o {
                    Object::Rule(r) => (r.spec.priority, r.spec.table, r.nth, r.position),
                    _ => unreachable!(),
                })
                .collect()
        };
        assert_eq!(
            order(&l),
            [
                (50, 30, 0, 0),
                (100, 10, 0, 0),
                (100, 20, 0, 1),
                (100, 10, 1, 2),
                (32766, 254, 0, 0)
            ]
        );
        // `ip rule del` removes the first copy: the other keeps its place,
        // after the 20, and becomes copy 0.
        assert!(l.remove(&rule(100, 10)));
        assert_eq!(
            order(&l),
            [
                (50, 30, 0, 0),
                (100, 20, 0, 0),
                (100, 10, 0, 1),
                (32766, 254, 0, 0)
            ]
        );
        assert!(!l.remove(&rule(7, 7)));
        // The objects give the list back.
        let objs = l.objects();
        let back = RuleList::from_objects(objs.iter().filter_map(|o| match o {
            Object::Rule(r) => Some(&**r),
            _ => None,
        }));
        assert_eq!(back, l);
    }

    #[test]
    fn malformed_rules_are_errors_not_panics() {
        let (_, first) = Messages::new(EVENTS)
            .next()
            .unwrap()
            .map(|m| (0, m))
            .unwrap();
        let payload = first.payload;
        assert!(decode(&payload[..11]).is_err());
        let mut bad = payload.to_vec();
        bad[0] = 7;
        assert_eq!(decode(&bad), Err(WireError::BadFamily(7)));
        let mut bad = payload.to_vec();
        bad[1] = 33;
        assert!(decode(&bad).is_err());
        // Every truncation of every message decodes or fails, never panics.
        for m in Messages::new(EVENTS) {
            let p = m.unwrap().payload;
            for n in 0..p.len() {
                let _ = decode(&p[..n]);
            }
        }
    }
}
