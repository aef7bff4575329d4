//! Policy routing rules (`ip rule`, RTM_NEWRULE / RTM_DELRULE of AF_INET
//! and AF_INET6) as FPC objects.
//!
//! Identity: the kernel gives a rule no handle. Rules are told apart by
//! their whole content ([`RuleSpec`]: every selector, the action and its
//! arguments, the priority), and identical rules may exist more than once
//! (a request without NLM_F_EXCL adds a copy; `ip rule add` sets EXCL and
//! gets EEXIST). `ip rule del` deletes the first rule that matches the
//! request, so among identical copies the first goes first. The key is
//! therefore (content, `nth`): `nth` counts the identical copies before
//! this one in the kernel's list. Order matters too: the kernel inserts a
//! rule after every rule of a priority lower than or equal to its own, so
//! rules of one priority keep their insertion order; `position` is the
//! rule's index among the rules of its family and priority, in the
//! kernel's order (what a dump lists). It is not part of the key: deleting
//! an earlier rule of the same priority shifts it (a Replace).
//!
//! Invariants: flags are configuration only (FIB_RULE_INVERT and IPv6's
//! FIB_RULE_FIND_SADDR); the
//! kernel's state flags (FIB_RULE_UNRESOLVED for a goto whose target
//! priority has no rule, FIB_RULE_IIF_DETACHED / OIF_DETACHED for a
//! device name that names no device) change without a notification when
//! devices or target rules come and go, so they are left out and fpd
//! computes them itself. Attributes the decoder does not know are kept by
//! number in `unknown`: fpd cannot evaluate such a rule and hands the
//! packets it could match to Linux.

use std::fmt;
use std::net::IpAddr;

use super::{AF_INET, AF_INET6};
use crate::codec::{DecodeError, Reader, Writer};

/// `FR_ACT_*`: what a matching rule does.
pub mod action {
    /// Look the destination up in `table`.
    pub const TO_TBL: u8 = 1;
    /// Continue at the first rule of priority `goto`.
    pub const GOTO: u8 = 2;
    pub const NOP: u8 = 3;
    /// Drop without an ICMP error.
    pub const BLACKHOLE: u8 = 6;
    /// Drop with ENETUNREACH (ICMP net unreachable).
    pub const UNREACHABLE: u8 = 7;
    /// Drop with EACCES (ICMP packet filtered).
    pub const PROHIBIT: u8 = 8;
}

/// `FIB_RULE_INVERT`: the selectors' result is negated (`ip rule add not`).
pub const FIB_RULE_INVERT: u32 = 0x2;
/// `FIB_RULE_FIND_SADDR` (IPv6): a `from` selector on a lookup without a
/// source address defers to the source the route would choose. Forwarded
/// packets always have one, so it changes nothing for fpd.
pub const FIB_RULE_FIND_SADDR: u32 = 0x1_0000;

/// A source or destination port selector (FRA_SPORT_RANGE and
/// FRA_SPORT_MASK, or the DPORT pair).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PortMatch {
    pub start: u16,
    pub end: u16,
    /// With a mask the kernel matches `(start ^ port) & mask == 0` (it sets
    /// 0xffff itself for a single port), without one the range.
    pub mask: Option<u16>,
}

impl PortMatch {
    /// The kernel's fib_rule_port_match.
    #[inline]
    pub fn matches(&self, port: u16) -> bool {
        match self.mask {
            Some(m) => (self.start ^ port) & m == 0,
            None => (self.start..=self.end).contains(&port),
        }
    }
}

/// What a rule is, all of it: the identity of a rule but for its copies.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RuleSpec {
    /// AF_INET or AF_INET6.
    pub family: u8,
    /// FRA_PRIORITY (0 when absent: the local rule).
    pub priority: u32,
    /// FRA_SRC and the header's src_len; None for `from all`.
    pub src: Option<IpAddr>,
    pub src_len: u8,
    pub dst: Option<IpAddr>,
    pub dst_len: u8,
    /// FRA_IIFNAME, FRA_OIFNAME (empty: any). Names, not indexes: the
    /// kernel re-attaches a rule to whatever device takes the name.
    pub iif: String,
    pub oif: String,
    /// FRA_FWMARK, FRA_FWMASK (0xffffffff when only a mark is given).
    pub fwmark: u32,
    pub fwmask: u32,
    /// The header's tos (the legacy `tos` selector).
    pub tos: u8,
    /// FRA_DSCP and FRA_DSCP_MASK (the kernel reports 0x3f as the mask of
    /// a DSCP given alone).
    pub dscp: Option<(u8, u8)>,
    /// FRA_FLOWLABEL and FRA_FLOWLABEL_MASK (IPv6).
    pub flowlabel: Option<(u32, u32)>,
    /// FRA_IP_PROTO, 0 for any.
    pub ip_proto: u8,
    pub sport: Option<PortMatch>,
    pub dport: Option<PortMatch>,
    /// FRA_UID_RANGE (start, end), absent when it is the whole range.
    pub uid_range: Option<(u32, u32)>,
    /// FRA_L3MDEV: look up the table of the packet's VRF.
    pub l3mdev: bool,
    /// FRA_TUN_ID (metadata tunnels), 0 for none.
    pub tun_id: u64,
    /// FRA_FLOW: realms (route classification only, no effect on where a
    /// packet goes).
    pub realms: u32,
    /// FRA_TABLE, else the header's table.
    pub table: u32,
    /// FRA_GOTO: the target priority of a goto rule.
    pub goto: Option<u32>,
    /// FRA_SUPPRESS_PREFIXLEN (the kernel reports 0xffffffff, -1, for none).
    pub suppress_prefixlen: Option<u32>,
    /// FRA_SUPPRESS_IFGROUP.
    pub suppress_ifgroup: Option<u32>,
    /// FR_ACT_* (see [`action`]).
    pub action: u8,
    /// Configuration flags only: FIB_RULE_INVERT, FIB_RULE_FIND_SADDR.
    pub flags: u32,
    /// FRA_PROTOCOL (RTPROT_*: who made the rule; 2 kernel for the
    /// defaults).
    pub protocol: u8,
    /// Attribute numbers this decoder does not know, sorted.
    pub unknown: Vec<u16>,
}

/// A rule as the fast path holds it: see the module documentation.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Rule {
    pub spec: RuleSpec,
    /// How many identical rules come before this one.
    pub nth: u32,
    /// Its index among the rules of its family and priority.
    pub position: u32,
}

/// The identity of a rule.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RuleKey {
    pub spec: RuleSpec,
    pub nth: u32,
}

fn max_len(family: u8) -> u8 {
    if family == AF_INET {
        32
    } else {
        128
    }
}

impl Rule {
    pub fn key(&self) -> RuleKey {
        RuleKey {
            spec: self.spec.clone(),
            nth: self.nth,
        }
    }

    /// What a fast path can hold: a known family, addresses of it, prefix
    /// lengths within it.
    pub fn is_valid(&self) -> bool {
        let s = &self.spec;
        let v4 = match s.family {
            AF_INET => true,
            AF_INET6 => false,
            _ => return false,
        };
        let addr_ok = |a: Option<IpAddr>, len: u8| match a {
            None => len == 0,
            Some(a) => a.is_ipv4() == v4 && len <= max_len(s.family),
        };
        addr_ok(s.src, s.src_len) && addr_ok(s.dst, s.dst_len)
    }

    pub(crate) fn emit(&self, w: &mut Writer<'_>) {
        let s = &self.spec;
        w.u8(s.family);
        w.u32(s.priority);
        w.opt_ip(s.src);
        w.u8(s.src_len);
        w.opt_ip(s.dst);
        w.u8(s.dst_len);
        w.str(&s.iif);
        w.str(&s.oif);
        w.u32(s.fwmark);
        w.u32(s.fwmask);
        w.u8(s.tos);
        w.bool(s.dscp.is_some());
        let (d, dm) = s.dscp.unwrap_or_default();
        w.u8(d);
        w.u8(dm);
        w.bool(s.flowlabel.is_some());
        let (f, fm) = s.flowlabel.unwrap_or_default();
        w.u32(f);
        w.u32(fm);
        w.u8(s.ip_proto);
        for p in [s.sport, s.dport] {
            w.bool(p.is_some());
            let p = p.unwrap_or(PortMatch {
                start: 0,
                end: 0,
                mask: None,
            });
            w.u16(p.start);
            w.u16(p.end);
            w.bool(p.mask.is_some());
            w.u16(p.mask.unwrap_or(0));
        }
        w.bool(s.uid_range.is_some());
        let (a, b) = s.uid_range.unwrap_or_default();
        w.u32(a);
        w.u32(b);
        w.bool(s.l3mdev);
        w.u64(s.tun_id);
        w.u32(s.realms);
        w.u32(s.table);
        for v in [s.goto, s.suppress_prefixlen, s.suppress_ifgroup] {
            w.bool(v.is_some());
            w.u32(v.unwrap_or(0));
        }
        w.u8(s.action);
        w.u32(s.flags);
        w.u8(s.protocol);
        w.u16(s.unknown.len() as u16);
        for u in &s.unknown {
            w.u16(*u);
        }
        w.u32(self.nth);
        w.u32(self.position);
    }

    pub(crate) fn parse(r: &mut Reader<'_>) -> Result<Rule, DecodeError> {
        fn opt<T>(present: bool, v: T) -> Option<T> {
            present.then_some(v)
        }
        let family = r.u8()?;
        let priority = r.u32()?;
        let src = r.opt_ip()?;
        let src_len = r.u8()?;
        let dst = r.opt_ip()?;
        let dst_len = r.u8()?;
        let iif = r.str()?;
        let oif = r.str()?;
        let fwmark = r.u32()?;
        let fwmask = r.u32()?;
        let tos = r.u8()?;
        let has = r.bool()?;
        let dscp = opt(has, (r.u8()?, r.u8()?));
        let has = r.bool()?;
        let flowlabel = opt(has, (r.u32()?, r.u32()?));
        let ip_proto = r.u8()?;
        let mut ports = [None, None];
        for p in &mut ports {
            let has = r.bool()?;
            let (start, end) = (r.u16()?, r.u16()?);
            let has_mask = r.bool()?;
            let mask = opt(has_mask, r.u16()?);
            *p = opt(has, PortMatch { start, end, mask });
        }
        let has = r.bool()?;
        let uid_range = opt(has, (r.u32()?, r.u32()?));
        let l3mdev = r.bool()?;
        let tun_id = r.u64()?;
        let realms = r.u32()?;
        let table = r.u32()?;
        let mut opts = [None; 3];
        for o in &mut opts {
            let has = r.bool()?;
            *o = opt(has, r.u32()?);
        }
        let action = r.u8()?;
        let flags = r.u32()?;
        let protocol = r.u8()?;
        let n = r.u16()? as usize;
        // Each costs two bytes: a bad count fails on the bytes left.
        if n * 2 > r.remaining() {
            return Err(DecodeError::BadValue {
                what: "unknown rule attribute count",
                value: n as u64,
            });
        }
        let unknown = (0..n).map(|_| r.u16()).collect::<Result<_, _>>()?;
        Ok(Rule {
            spec: RuleSpec {
                family,
                priority,
                src,
                src_len,
                dst,
                dst_len,
                iif,
                oif,
                fwmark,
                fwmask,
                tos,
                dscp,
                flowlabel,
                ip_proto,
                sport: ports[0],
                dport: ports[1],
                uid_range,
                l3mdev,
                tun_id,
                realms,
                table,
                goto: opts[0],
                suppress_prefixlen: opts[1],
                suppress_ifgroup: opts[2],
                action,
                flags,
                protocol,
                unknown,
            },
            nth: r.u32()?,
            position: r.u32()?,
        })
    }
}

fn table_name(t: u32) -> String {
    match t {
        255 => "local".into(),
        254 => "main".into(),
        253 => "default".into(),
        t => t.to_string(),
    }
}

/// As `ip rule` prints it, with the family in front and the copy and
/// position behind.
impl fmt::Display for Rule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = &self.spec;
        let family = if s.family == AF_INET6 { "ipv6" } else { "ipv4" };
        write!(f, "rule {family} {}:", s.priority)?;
        if s.flags & FIB_RULE_INVERT != 0 {
            write!(f, " not")?;
        }
        match s.src {
            Some(a) => write!(f, " from {a}/{}", s.src_len)?,
            None => write!(f, " from all")?,
        }
        if let Some(a) = s.dst {
            write!(f, " to {a}/{}", s.dst_len)?;
        }
        if s.tos != 0 {
            write!(f, " tos {:#x}", s.tos)?;
        }
        if let Some((d, m)) = s.dscp {
            write!(f, " dscp {d}/{m:#x}")?;
        }
        if let Some((l, m)) = s.flowlabel {
            write!(f, " flowlabel {l:#x}/{m:#x}")?;
        }
        if s.fwmask != 0 {
            write!(f, " fwmark {:#x}/{:#x}", s.fwmark, s.fwmask)?;
        }
        if !s.iif.is_empty() {
            write!(f, " iif {}", s.iif)?;
        }
        if !s.oif.is_empty() {
            write!(f, " oif {}", s.oif)?;
        }
        if let Some((a, b)) = s.uid_range {
            write!(f, " uidrange {a}-{b}")?;
        }
        if s.ip_proto != 0 {
            write!(f, " ipproto {}", s.ip_proto)?;
        }
        for (name, p) in [("sport", s.sport), ("dport", s.dport)] {
            match p {
                Some(PortMatch {
                    start,
                    mask: Some(0xffff),
                    ..
                }) => write!(f, " {name} {start}")?,
                Some(PortMatch {
                    start,
                    mask: Some(m),
                    ..
                }) => write!(f, " {name} {start:#x}/{m:#x}")?,
                Some(PortMatch {
                    start,
                    end,
                    mask: None,
                }) => write!(f, " {name} {start}-{end}")?,
                None => {}
            }
        }
        if s.tun_id != 0 {
            write!(f, " tun_id {}", s.tun_id)?;
        }
        if s.realms != 0 {
            write!(f, " realms {:#x}", s.realms)?;
        }
        match s.action {
            _ if s.l3mdev => write!(f, " lookup [l3mdev-table]")?,
            action::TO_TBL => write!(f, " lookup {}", table_name(s.table))?,
            action::GOTO => match s.goto {
                Some(t) => write!(f, " goto {t}")?,
                None => write!(f, " goto none")?,
            },
            action::NOP => write!(f, " nop")?,
            action::BLACKHOLE => write!(f, " blackhole")?,
            action::UNREACHABLE => write!(f, " unreachable")?,
            action::PROHIBIT => write!(f, " prohibit")?,
            a => write!(f, " action {a}")?,
        }
        if let Some(p) = s.suppress_prefixlen {
            write!(f, " suppress_prefixlength {p}")?;
        }
        if let Some(g) = s.suppress_ifgroup {
            write!(f, " suppress_ifgroup {g}")?;
        }
        write!(f, " proto {}", s.protocol)?;
        if !s.unknown.is_empty() {
            write!(f, " unknown attributes {:?}", s.unknown)?;
        }
        write!(f, " (copy {}, position {})", self.nth, self.position)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::Object;

    /// The default main rule, and one with every selector set.
    pub(crate) fn samples() -> Vec<Object> {
        let main = RuleSpec {
            family: AF_INET,
            priority: 32766,
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
            table: 254,
            goto: None,
            suppress_prefixlen: None,
            suppress_ifgroup: None,
            action: action::TO_TBL,
            flags: 0,
            protocol: 2,
            unknown: Vec::new(),
        };
        let every = RuleSpec {
            family: AF_INET6,
            priority: 100,
            src: Some("2001:db8:1::".parse().unwrap()),
            src_len: 48,
            dst: Some("2001:db8:2::".parse().unwrap()),
            dst_len: 64,
            iif: "veth-a".into(),
            oif: "veth-b".into(),
            fwmark: 5,
            fwmask: 0xff,
            tos: 0x10,
            dscp: Some((10, 0x3f)),
            flowlabel: Some((0x12345, 0xfffff)),
            ip_proto: 17,
            sport: Some(PortMatch {
                start: 1000,
                end: 2000,
                mask: None,
            }),
            dport: Some(PortMatch {
                start: 53,
                end: 53,
                mask: Some(0xffff),
            }),
            uid_range: Some((1000, 2000)),
            l3mdev: true,
            tun_id: 42,
            realms: 7,
            table: 300,
            goto: Some(200),
            suppress_prefixlen: Some(8),
            suppress_ifgroup: Some(3),
            action: action::GOTO,
            flags: FIB_RULE_INVERT,
            protocol: 4,
            unknown: vec![31, 40],
        };
        vec![
            Object::Rule(Box::new(Rule {
                spec: main,
                nth: 0,
                position: 0,
            })),
            Object::Rule(Box::new(Rule {
                spec: every,
                nth: 1,
                position: 3,
            })),
        ]
    }

    #[test]
    fn port_selectors_match_as_the_kernel_does() {
        let range = PortMatch {
            start: 1000,
            end: 2000,
            mask: None,
        };
        assert!(range.matches(1000) && range.matches(2000) && !range.matches(2001));
        let masked = PortMatch {
            start: 0x1000,
            end: 0x1000,
            mask: Some(0xff00),
        };
        assert!(masked.matches(0x10ab) && !masked.matches(0x11ab));
    }
}
