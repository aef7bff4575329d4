//! The seed's synchronization features: their mask bits, the
//! `--disable-sync-*` flags, and which objects each one governs.
//!
//! Invariants: the bit values are the seed's, exactly; a switched-off
//! feature sends nothing (its objects are filtered before the cache, so
//! neither notifications nor dumps nor replays carry them); the seed's
//! inclusions hold (netfilter covers NAT and conntrack, ipsec covers VTI).

use fpc::{family_of, Object, AF_INET6};

/// One feature: its name in `show sync-features`, its bit, its flag.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Feature {
    pub name: &'static str,
    pub bit: u32,
    /// The `--disable-sync-<flag>` word, when there is one.
    pub flag: Option<&'static str>,
    /// What it synchronizes, for `--help`.
    pub what: &'static str,
}

pub const VXLAN: u32 = 0x0000_0001;
pub const BRIDGE: u32 = 0x0000_0002;
pub const VLAN: u32 = 0x0000_0004;
pub const MACVLAN: u32 = 0x0000_0008;
pub const LAG: u32 = 0x0000_0010;
pub const EBTABLES: u32 = 0x0000_0020;
pub const GRE: u32 = 0x0000_0040;
pub const TUNNEL: u32 = 0x0000_0080;
pub const IPSEC: u32 = 0x0000_0100;
pub const SVTI: u32 = 0x0000_0200;
pub const FILTER: u32 = 0x0000_0400;
pub const CONNTRACK: u32 = 0x0000_0800;
pub const NAT: u32 = 0x0000_1000;
pub const BPF: u32 = 0x0000_2000;
pub const TAP_PATTERN_ONLY: u32 = 0x0000_4000;
pub const MCAST: u32 = 0x0000_8000;
pub const IPV6: u32 = 0x0001_0000;
/// Every bit the seed defines.
pub const ALL: u32 = 0x0001_ffff;

/// In the order `show sync-features` lists them (the seed's).
pub const FEATURES: [Feature; 17] = [
    Feature {
        name: "vxlan",
        bit: VXLAN,
        flag: Some("vxlan"),
        what: "Linux VXLAN",
    },
    Feature {
        name: "bridge",
        bit: BRIDGE,
        flag: Some("bridge"),
        what: "Linux bridge",
    },
    Feature {
        name: "gre",
        bit: GRE,
        flag: Some("gre"),
        what: "Linux GRE",
    },
    Feature {
        name: "vlan",
        bit: VLAN,
        flag: Some("vlan"),
        what: "Linux VLAN",
    },
    Feature {
        name: "macvlan",
        bit: MACVLAN,
        flag: Some("macvlan"),
        what: "Linux macvlan",
    },
    Feature {
        name: "lag",
        bit: LAG,
        flag: Some("lag"),
        what: "Linux Bonding",
    },
    Feature {
        name: "ebtables",
        bit: EBTABLES,
        flag: Some("ebtables"),
        what: "Linux netfilter ebtables rules",
    },
    Feature {
        name: "tunnel",
        bit: TUNNEL,
        flag: Some("tunnel"),
        what: "Linux tunnels",
    },
    Feature {
        name: "ipsec",
        bit: IPSEC,
        flag: Some("ipsec"),
        what: "Linux XFRM IPsec, including Linux VTI",
    },
    Feature {
        name: "svti",
        bit: SVTI,
        flag: Some("svti"),
        what: "Linux VTI",
    },
    Feature {
        name: "netfilter",
        bit: FILTER,
        flag: Some("netfilter"),
        what: "Linux netfilter IPv4 / IPv6 rules, including NAT and conntrack",
    },
    Feature {
        name: "conntrack",
        bit: CONNTRACK,
        flag: Some("conntrack"),
        what: "Linux conntrack",
    },
    Feature {
        name: "nat",
        bit: NAT,
        flag: Some("nat"),
        what: "Linux netfilter NAT rules",
    },
    Feature {
        name: "bpf",
        bit: BPF,
        flag: Some("bpf"),
        what: "Linux BPF",
    },
    Feature {
        name: "tap-pattern-only",
        bit: TAP_PATTERN_ONLY,
        flag: None,
        what: "BPF capture filters of the capture tools only (-A lifts it)",
    },
    Feature {
        name: "multicast",
        bit: MCAST,
        flag: Some("mcast"),
        what: "Linux IPv4 and IPv6 multicast",
    },
    Feature {
        name: "ipv6",
        bit: IPV6,
        flag: Some("ipv6"),
        what: "Linux IPv6 routing",
    },
];

/// The features this build synchronizes (the others are accepted, shown,
/// and send nothing yet).
pub const IMPLEMENTED: u32 = IPV6
    | MCAST
    | BPF
    | VXLAN
    | BRIDGE
    | VLAN
    | MACVLAN
    | LAG
    | GRE
    | TUNNEL
    | SVTI
    | IPSEC
    | CONNTRACK
    | FILTER
    | NAT
    | EBTABLES;

/// The names of the implemented features, plus the route family that is
/// always synchronized.
pub fn implemented_names() -> Vec<&'static str> {
    let mut names = vec!["route"];
    names.extend(
        FEATURES
            .iter()
            .filter(|f| f.bit & IMPLEMENTED != 0)
            .map(|f| f.name),
    );
    names
}

/// The bits one `--disable-sync-<flag>` clears (with the seed's inclusions).
pub fn disable_bits(flag: &str) -> Option<u32> {
    let base = FEATURES.iter().find(|f| f.flag == Some(flag))?.bit;
    Some(match base {
        IPSEC => IPSEC | SVTI,
        FILTER => FILTER | NAT | CONNTRACK,
        b => b,
    })
}

/// Parses a `-S` mask: hexadecimal with 0x, else decimal.
pub fn parse_mask(s: &str) -> Result<u32, String> {
    let parsed = match s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        Some(hex) => u32::from_str_radix(hex, 16),
        None => s.parse::<u32>(),
    };
    match parsed {
        Ok(m) if m & !ALL == 0 => Ok(m),
        Ok(m) => Err(format!(
            "bad sync mask {s:?}: bits {:#x} are no feature (known bits: {ALL:#x})",
            m & !ALL
        )),
        Err(_) => Err(format!(
            "bad sync mask {s:?}: expected a hexadecimal (0x...) or decimal number"
        )),
    }
}

/// The features in force.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Features {
    pub mask: u32,
    /// `-A`: capture filters of any process, not only capture tools'.
    pub bpf_all: bool,
}

impl Default for Features {
    /// Every bit, as the seed's "default is to synchronize all features";
    /// with `tap pattern only` among them, BPF follows the seed's default
    /// of the capture tools' filters only.
    fn default() -> Self {
        Features {
            mask: ALL,
            bpf_all: false,
        }
    }
}

impl Features {
    /// The mask after the seed's inclusions: a feature whose parent is off
    /// is off too (no NAT or conntrack without netfilter, no VTI without
    /// IPsec).
    pub fn from_mask(mask: u32) -> Features {
        let mut mask = mask;
        if mask & FILTER == 0 {
            mask &= !(NAT | CONNTRACK);
        }
        if mask & IPSEC == 0 {
            mask &= !SVTI;
        }
        Features {
            mask,
            bpf_all: false,
        }
    }

    pub fn enabled(&self, bit: u32) -> bool {
        self.mask & bit == bit
    }

    /// Whether only the capture tools' filters are synced: the `tap
    /// pattern only` bit (the pattern being [`CAPTURE_TOOLS`]' names),
    /// unless `-A` (`BPF_OPT`) asks for every process's. A mask without
    /// the bit syncs every process's filters, as `-A` does.
    ///
    /// [`CAPTURE_TOOLS`]: crate::netlink::capture::CAPTURE_TOOLS
    pub fn bpf_pattern_only(&self) -> bool {
        self.enabled(TAP_PATTERN_ONLY) && !self.bpf_all
    }

    /// The feature a link kind belongs to, if any.
    fn link_feature(kind: &str) -> Option<u32> {
        Some(match kind {
            "vxlan" => VXLAN,
            "bridge" => BRIDGE,
            "vlan" => VLAN,
            "macvlan" | "macvtap" => MACVLAN,
            "bond" | "team" => LAG,
            "gre" | "gretap" | "ip6gre" | "ip6gretap" => GRE,
            "ipip" | "sit" | "ip6tnl" => TUNNEL,
            "vti" | "vti6" => SVTI,
            _ => return None,
        })
    }

    fn nft_family(&self, family: u8, nat: bool) -> bool {
        const NFPROTO_BRIDGE: u8 = 7;
        if family == NFPROTO_BRIDGE {
            return self.enabled(EBTABLES);
        }
        self.enabled(FILTER) && (!nat || self.enabled(NAT))
    }

    fn xt_table(&self, family: u8, table: &str) -> bool {
        self.enabled(FILTER)
            && (table != "nat" || self.enabled(NAT))
            && (family != AF_INET6 || self.enabled(IPV6))
    }

    /// Whether `obj` is synchronized.
    pub fn syncs(&self, obj: &Object) -> bool {
        match obj {
            Object::Link(l) => Self::link_feature(&l.kind).is_none_or(|b| self.enabled(b)),
            Object::Addr(a) => family_of(&a.addr) != AF_INET6 || self.enabled(IPV6),
            Object::Route(r) => r.family() != AF_INET6 || self.enabled(IPV6),
            Object::Nexthop(n) => n.family != AF_INET6 || self.enabled(IPV6),
            Object::Neigh(n) => family_of(&n.dst) != AF_INET6 || self.enabled(IPV6),
            Object::BridgePort(_) => self.enabled(BRIDGE),
            // A VXLAN device's remotes belong to VXLAN, a bridge's entries
            // to the bridge.
            Object::Fdb(e) if e.dst.is_some() => self.enabled(VXLAN),
            Object::Fdb(_) => self.enabled(BRIDGE),
            // Sequence numbers go only to blades with IPsec HA on: the
            // processor filters them per blade.
            Object::XfrmSa(_) | Object::XfrmSp(_) | Object::XfrmReplay(_) => self.enabled(IPSEC),
            // `from_mask` already clears CONNTRACK without FILTER (netfilter).
            Object::Conntrack(ct) => {
                self.enabled(CONNTRACK) && (ct.orig.src.is_ipv4() || self.enabled(IPV6))
            }
            // nf_tables: the bridge family is ebtables'; NAT chains and
            // address-translating rules are NAT's (which needs netfilter).
            Object::NftTable(t) => self.nft_family(t.family, false),
            Object::NftChain(c) => self.nft_family(c.family, c.chain_type == "nat"),
            Object::NftRule(r) => self.nft_family(r.family, r.nat),
            // Sets ride with their table's family (NAT rules look them
            // up too, but a set is not a translation).
            Object::NftSet(t) => self.nft_family(t.family, false),
            Object::NftSetElem(e) => self.nft_family(e.family, false),
            // The ports' shapers and classifiers decide what fpd may
            // forward itself, as netconf does: always synced.
            Object::Qdisc(_) => true,
            // Legacy x_tables: netfilter's; the nat table's also NAT's,
            // ip6tables' also IPv6's.
            Object::XtChain(c) => self.xt_table(c.family, &c.table),
            Object::XtRule(r) => self.xt_table(r.family, &r.table),
            // Policy routing rules are routing: IPv4's always synced, as
            // IPv4 routes are (the seed has no bit for routing), IPv6's
            // under the IPv6 routing bit.
            Object::Rule(r) => r.spec.family != AF_INET6 || self.enabled(IPV6),
            Object::Mroute(m) => self.enabled(MCAST) && (m.group.is_ipv4() || self.enabled(IPV6)),
            Object::MrouteVif(v) => {
                self.enabled(MCAST) && (v.family != AF_INET6 || self.enabled(IPV6))
            }
            // A device's IP settings ride with their family's routing:
            // IPv4's always (as IPv4 links, addresses and routes), IPv6's
            // with the IPv6 bit. mc_forwarding is a setting like the others
            // (read-only, a count of multicast daemons), not the multicast
            // bit's.
            Object::NetConf(c) => c.family != AF_INET6 || self.enabled(IPV6),
            Object::CaptureFilter(c) => {
                self.enabled(BPF)
                    && (!self.bpf_pattern_only()
                        || crate::netlink::capture::CAPTURE_TOOLS.contains(&c.process.as_str()))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks_parse_as_the_seed_writes_them() {
        assert_eq!(parse_mask("0x10000"), Ok(IPV6));
        assert_eq!(parse_mask("65536"), Ok(IPV6));
        assert_eq!(parse_mask("0X1ffff"), Ok(ALL));
        assert!(parse_mask("0x20000").unwrap_err().contains("0x20000"));
        assert!(parse_mask("ipv6").is_err());
        assert!(parse_mask("").is_err());
    }

    #[test]
    fn inclusions_follow_the_seed() {
        assert_eq!(disable_bits("netfilter"), Some(FILTER | NAT | CONNTRACK));
        assert_eq!(disable_bits("ipsec"), Some(IPSEC | SVTI));
        assert_eq!(disable_bits("conntrack"), Some(CONNTRACK));
        assert_eq!(disable_bits("nope"), None);
        let f = Features::from_mask(ALL & !FILTER);
        assert!(!f.enabled(NAT) && !f.enabled(CONNTRACK));
        let f = Features::from_mask(ALL & !IPSEC);
        assert!(!f.enabled(SVTI));
    }

    #[test]
    fn tap_pattern_only_restricts_bpf_unless_dash_a() {
        let filter = |process: &str| {
            Object::CaptureFilter(fpc::CaptureFilter {
                inode: 1,
                ifindex: 1,
                protocol: 3,
                process: process.into(),
                program: vec![6, 0, 0, 0, 0, 0, 0, 0],
            })
        };
        let default = Features::default();
        assert!(default.bpf_pattern_only());
        assert!(default.syncs(&filter("tcpdump")) && !default.syncs(&filter("python3")));
        let all = Features {
            bpf_all: true,
            ..default
        };
        assert!(all.syncs(&filter("python3")));
        let unrestricted = Features::from_mask(ALL & !TAP_PATTERN_ONLY);
        assert!(!unrestricted.bpf_pattern_only() && unrestricted.syncs(&filter("python3")));
        let no_bpf = Features::from_mask(ALL & !BPF);
        assert!(!no_bpf.syncs(&filter("tcpdump")));
    }

    #[test]
    fn every_seed_bit_has_a_feature() {
        let all = FEATURES.iter().fold(0, |m, f| m | f.bit);
        assert_eq!(all, ALL);
    }
}
