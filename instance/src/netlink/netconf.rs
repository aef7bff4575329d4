//! The kernel's per-device IP settings (netconf, `ip netconf show`) as
//! RTM_NEWNETCONF / RTM_DELNETCONF report them, decoded into
//! [`NetConf`] objects, IPv4 and IPv6.
//!
//! Invariants: no I/O, no logging, no panic on any input; a message of
//! another family (MPLS) is ignored; NETCONFA_INPUT and
//! NETCONFA_BC_FORWARDING are not kept (the object does not carry them).
//!
//! Kernel facts (Linux 6.18, checked on this machine with `ip monitor
//! netconf` and the fixtures below):
//! * A full announcement (a device's in_device / inet6_dev created: a new
//!   device, or IPv6 coming back after an MTU below 1280; every
//!   RTM_GETNETCONF dump reply) carries every value of the family (IPv4:
//!   forwarding, rp_filter, mc_forwarding, bc_forwarding, proxy_neigh,
//!   ignore_routes_with_linkdown; IPv6 the same without rp_filter and
//!   bc_forwarding). A change is announced with ONLY the attribute that
//!   changed (`sysctl -w net.ipv4.conf.X.rp_filter=2` sends NETCONFA_IFINDEX
//!   and NETCONFA_RP_FILTER): such news must be merged into the cached
//!   object, never replace it. [`decode`] tells the two apart
//!   ([`Event::NetConfChange`] for a news of one value).
//! * `conf.all.forwarding` (`net.ipv4.ip_forward`) is announced for `all`,
//!   `default` and then for every device, one news each (IPv4 always;
//!   IPv6 for the devices whose value changed, `all` last).
//! * A device's removal (or its in_device / inet6_dev going: IPv4 MTU
//!   below 68, IPv6 MTU below 1280) sends RTM_DELNETCONF with the
//!   ifindex alone, one per family.
//! * Silent: writing IPv4 `conf.default.{rp_filter, proxy_arp,
//!   ignore_routes_with_linkdown, ...}` copies the value into every
//!   device that never had that value written (devinet_copy_dflt_conf),
//!   and only `default` is announced (`default.forwarding` is not copied).
//!   Writing IPv6 `conf.all.ignore_routes_with_linkdown` sets every
//!   device's (announced) and `default`'s (not announced:
//!   addrconf_fixup_linkdown). [`implies_unannounced_changes`] recognises
//!   both news; cmgrd re-dumps the family on them.

use fpc::{NetConf, NetConfKey, Object, ObjectKey, AF_INET, AF_INET6};

use super::wire::{attrs, Event, WireError};

pub use super::wire::RTM_GETNETCONF;

pub use super::mvif::{RTM_DELNETCONF, RTM_NEWNETCONF};

const NETCONFA_IFINDEX: u16 = 1;
const NETCONFA_FORWARDING: u16 = 2;
const NETCONFA_RP_FILTER: u16 = 3;
const NETCONFA_MC_FORWARDING: u16 = 4;
const NETCONFA_PROXY_NEIGH: u16 = 5;
const NETCONFA_IGNORE_ROUTES_WITH_LINKDOWN: u16 = 6;
const NETCONFA_INPUT: u16 = 7;
const NETCONFA_BC_FORWARDING: u16 = 8;

/// `struct netconfmsg` (one byte, the family) padded to NLMSG_ALIGN.
const NETCONFMSG_LEN: usize = 4;

/// Decodes an RTM_NEWNETCONF or RTM_DELNETCONF payload.
pub fn decode(kind: u16, payload: &[u8]) -> Result<Event, WireError> {
    let rest = payload
        .get(NETCONFMSG_LEN..)
        .ok_or(WireError::Short(payload.len()))?;
    let family = payload[0];
    if family != AF_INET && family != AF_INET6 {
        return Ok(Event::Ignored);
    }
    let mut conf = NetConf {
        family,
        ifindex: 0,
        forwarding: None,
        rp_filter: None,
        mc_forwarding: None,
        proxy_neigh: None,
        ignore_routes_with_linkdown: None,
    };
    let mut ifindex = None;
    // How many values the message carries, kept or not: one is a change.
    let mut values = 0;
    for a in attrs(rest) {
        let (attr, v) = a?;
        let value = || -> Result<u32, WireError> {
            v.get(..4)
                .map(|b| u32::from_ne_bytes(b.try_into().unwrap()))
                .ok_or(WireError::BadAttr {
                    kind: attr,
                    len: v.len(),
                })
        };
        let field = match attr {
            NETCONFA_IFINDEX => {
                ifindex = Some(value()? as i32);
                continue;
            }
            NETCONFA_FORWARDING => &mut conf.forwarding,
            NETCONFA_RP_FILTER => &mut conf.rp_filter,
            NETCONFA_MC_FORWARDING => &mut conf.mc_forwarding,
            NETCONFA_PROXY_NEIGH => &mut conf.proxy_neigh,
            NETCONFA_IGNORE_ROUTES_WITH_LINKDOWN => &mut conf.ignore_routes_with_linkdown,
            NETCONFA_INPUT | NETCONFA_BC_FORWARDING => {
                value()?;
                values += 1;
                continue;
            }
            _ => continue,
        };
        *field = Some(value()?);
        values += 1;
    }
    conf.ifindex = ifindex.ok_or(WireError::Missing("NETCONFA_IFINDEX"))?;
    Ok(match kind {
        RTM_DELNETCONF => Event::Del(ObjectKey::NetConf(NetConfKey {
            family,
            ifindex: conf.ifindex,
        })),
        _ if values > 1 => Event::New(Object::NetConf(conf)),
        _ => Event::NetConfChange(conf),
    })
}

/// Whether the change a netconf news announces came with others the
/// kernel does not announce: an IPv4 `conf.default` rp_filter, proxy_arp
/// or ignore_routes_with_linkdown is also copied into the devices that
/// never had theirs written (forwarding is not copied, mc_forwarding is
/// read-only); an IPv6 `conf.all` ignore_routes_with_linkdown also sets
/// `default`'s.
pub fn implies_unannounced_changes(news: &NetConf) -> bool {
    use fpc::{NETCONFA_IFINDEX_ALL, NETCONFA_IFINDEX_DEFAULT};
    match (news.family, news.ifindex) {
        (AF_INET, NETCONFA_IFINDEX_DEFAULT) => {
            news.rp_filter.is_some()
                || news.proxy_neigh.is_some()
                || news.ignore_routes_with_linkdown.is_some()
        }
        (AF_INET6, NETCONFA_IFINDEX_ALL) => news.ignore_routes_with_linkdown.is_some(),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::netlink::wire::Messages;
    use fpc::{NETCONFA_IFINDEX_ALL, NETCONFA_IFINDEX_DEFAULT};

    fn hex(s: &str) -> Vec<u8> {
        let s: String = s.split_whitespace().collect();
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    /// Messages captured on this kernel (6.18) on RTNLGRP_IPV4_NETCONF and
    /// RTNLGRP_IPV6_NETCONF, whole (netlink header included).
    mod fixtures {
        /// `sysctl -w net.ipv4.conf.all.forwarding=1`: the news for `all`.
        pub const V4_ALL_FORWARDING: &str = "\
            24000000 50000000 00000000 00000000 02000000 08000100 ffffffff \
            08000200 01000000";
        /// `sysctl -w net.ipv4.conf.all.rp_filter=2`: only rp_filter.
        pub const V4_ALL_RP_FILTER: &str = "\
            24000000 50000000 00000000 00000000 02000000 08000100 ffffffff \
            08000300 02000000";
        /// `ip link add va type veth peer name vb`: vb (ifindex 2)
        /// announced whole, IPv4 (with bc_forwarding, 8) then IPv6.
        pub const V4_NEW_DEVICE: &str = "\
            4c000000 50000000 00000000 00000000 02000000 08000100 02000000 \
            08000200 01000000 08000300 00000000 08000400 00000000 08000800 \
            00000000 08000500 00000000 08000600 00000000";
        pub const V6_NEW_DEVICE: &str = "\
            3c000000 50000000 00000000 00000000 0a000000 08000100 02000000 \
            08000200 00000000 08000400 00000000 08000500 00000000 08000600 \
            00000000";
        /// `ip link del va`: one RTM_DELNETCONF per family (va, ifindex 3).
        pub const V4_DEL_DEVICE: &str = "\
            1c000000 51000000 00000000 00000000 02000000 08000100 03000000";
        pub const V6_DEL_DEVICE: &str = "\
            1c000000 51000000 00000000 00000000 0a000000 08000100 03000000";
        /// `sysctl -w net.ipv6.conf.all.forwarding=1`: `default` first.
        pub const V6_DEFAULT_FORWARDING: &str = "\
            24000000 50000000 00000000 00000000 0a000000 08000100 feffffff \
            08000200 01000000";
        /// `sysctl -w net.ipv4.conf.default.rp_filter=2`.
        pub const V4_DEFAULT_RP_FILTER: &str = "\
            24000000 50000000 00000000 00000000 02000000 08000100 feffffff \
            08000300 02000000";
        /// The answer to RTM_GETNETCONF of AF_INET: `all`'s (the first
        /// reply is lo's, then all, default), with NLM_F_MULTI.
        pub const V4_DUMP_ALL: &str = "\
            4c000000 50000200 01000000 71d51391 02000000 08000100 ffffffff \
            08000200 01000000 08000300 02000000 08000400 00000000 08000800 \
            00000000 08000500 00000000 08000600 00000000";
    }

    fn one(fixture: &str) -> (u16, Vec<u8>) {
        let bytes = hex(fixture);
        let msg = Messages::new(&bytes).next().unwrap().unwrap();
        (msg.kind, msg.payload.to_vec())
    }

    fn decode_fixture(fixture: &str) -> Event {
        let (kind, payload) = one(fixture);
        decode(kind, &payload).unwrap()
    }

    fn conf(family: u8, ifindex: i32) -> NetConf {
        NetConf {
            family,
            ifindex,
            forwarding: None,
            rp_filter: None,
            mc_forwarding: None,
            proxy_neigh: None,
            ignore_routes_with_linkdown: None,
        }
    }

    #[test]
    fn a_change_carries_only_what_changed() {
        let Event::NetConfChange(c) = decode_fixture(fixtures::V4_ALL_FORWARDING) else {
            panic!("a one-value news is a change");
        };
        assert_eq!(
            c,
            NetConf {
                forwarding: Some(1),
                ..conf(AF_INET, NETCONFA_IFINDEX_ALL)
            }
        );
        let Event::NetConfChange(c) = decode_fixture(fixtures::V4_ALL_RP_FILTER) else {
            panic!("a one-value news is a change");
        };
        assert_eq!(
            c,
            NetConf {
                rp_filter: Some(2),
                ..conf(AF_INET, NETCONFA_IFINDEX_ALL)
            }
        );
        assert!(!implies_unannounced_changes(&c), "all is not copied");
        let Event::NetConfChange(c) = decode_fixture(fixtures::V6_DEFAULT_FORWARDING) else {
            panic!("a one-value news is a change");
        };
        assert_eq!(c.ifindex, NETCONFA_IFINDEX_DEFAULT);
        assert_eq!(c.family, AF_INET6);
        assert!(!implies_unannounced_changes(&c));
        let Event::NetConfChange(c) = decode_fixture(fixtures::V4_DEFAULT_RP_FILTER) else {
            panic!("a one-value news is a change");
        };
        assert!(
            implies_unannounced_changes(&c),
            "IPv4 default rp_filter is copied"
        );
        let v6_all_linkdown = NetConf {
            ignore_routes_with_linkdown: Some(1),
            ..conf(AF_INET6, NETCONFA_IFINDEX_ALL)
        };
        assert!(implies_unannounced_changes(&v6_all_linkdown));
        let v6_all_proxy = NetConf {
            proxy_neigh: Some(1),
            ..conf(AF_INET6, NETCONFA_IFINDEX_ALL)
        };
        assert!(!implies_unannounced_changes(&v6_all_proxy));
    }

    #[test]
    fn an_announcement_carries_everything() {
        let full = |forwarding, rp_filter| NetConf {
            forwarding: Some(forwarding),
            rp_filter,
            mc_forwarding: Some(0),
            proxy_neigh: Some(0),
            ignore_routes_with_linkdown: Some(0),
            ..conf(0, 0)
        };
        assert_eq!(
            decode_fixture(fixtures::V4_NEW_DEVICE),
            Event::New(Object::NetConf(NetConf {
                family: AF_INET,
                ifindex: 2,
                ..full(1, Some(0))
            }))
        );
        assert_eq!(
            decode_fixture(fixtures::V6_NEW_DEVICE),
            Event::New(Object::NetConf(NetConf {
                family: AF_INET6,
                ifindex: 2,
                ..full(0, None)
            }))
        );
        assert_eq!(
            decode_fixture(fixtures::V4_DUMP_ALL),
            Event::New(Object::NetConf(NetConf {
                family: AF_INET,
                ifindex: NETCONFA_IFINDEX_ALL,
                ..full(1, Some(2))
            }))
        );
    }

    #[test]
    fn a_removal_names_the_device() {
        for (fixture, family) in [
            (fixtures::V4_DEL_DEVICE, AF_INET),
            (fixtures::V6_DEL_DEVICE, AF_INET6),
        ] {
            assert_eq!(
                decode_fixture(fixture),
                Event::Del(ObjectKey::NetConf(NetConfKey { family, ifindex: 3 }))
            );
        }
    }

    #[test]
    fn other_families_are_ignored_and_bad_input_refused() {
        let (kind, mut payload) = one(fixtures::V4_ALL_FORWARDING);
        payload[0] = 28; // AF_MPLS
        assert_eq!(decode(kind, &payload).unwrap(), Event::Ignored);
        let (kind, payload) = one(fixtures::V4_ALL_FORWARDING);
        // Without NETCONFA_IFINDEX.
        let mut no_index = payload[..4].to_vec();
        no_index.extend_from_slice(&payload[12..]);
        assert_eq!(
            decode(kind, &no_index),
            Err(WireError::Missing("NETCONFA_IFINDEX"))
        );
        // A value attribute of 2 bytes.
        let mut short = payload.clone();
        short[12] = 6;
        assert!(matches!(
            decode(kind, &short[..18]),
            Err(WireError::BadAttr { kind: 2, len: 2 })
        ));
        assert_eq!(decode(kind, &payload[..3]), Err(WireError::Short(3)));
    }

    #[test]
    fn truncations_and_mutations_never_panic() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand::rngs::SmallRng::seed_from_u64(0x6e6574636f6e66);
        for fixture in [
            fixtures::V4_ALL_FORWARDING,
            fixtures::V4_NEW_DEVICE,
            fixtures::V6_NEW_DEVICE,
            fixtures::V4_DEL_DEVICE,
            fixtures::V4_DUMP_ALL,
        ] {
            let (kind, payload) = one(fixture);
            for cut in 0..payload.len() {
                let _ = decode(kind, &payload[..cut]);
            }
            for _ in 0..20_000 {
                let mut p = payload.clone();
                for _ in 0..rng.random_range(1..4) {
                    let i = rng.random_range(0..p.len());
                    p[i] = rng.random();
                }
                let cut = rng.random_range(0..=p.len());
                let _ = decode(kind, &p[..cut]);
                let _ = decode(RTM_DELNETCONF, &p[..cut]);
            }
        }
    }

    #[test]
    fn the_dump_request_is_a_bare_netconfmsg() {
        let req = crate::netlink::wire::dump_request(RTM_GETNETCONF, AF_INET6, 7);
        assert_eq!(
            req,
            hex("14000000 52000103 07000000 00000000 0a000000"),
            "len 20, RTM_GETNETCONF, NLM_F_REQUEST|NLM_F_DUMP, seq 7"
        );
    }
}
