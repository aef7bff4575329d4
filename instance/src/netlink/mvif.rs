//! Multicast virtual interfaces (IPv4 VIFs, IPv6 MIFs) as the kernel
//! reports them, decoded into [`MrouteVif`] objects: the IPMR link dump
//! (IPv4), the text of `/proc/net/ip6_mr_vif` (IPv6), and the netconf
//! news that give their changes away.
//!
//! Invariants: no I/O, no logging, no panic on any input; counters
//! (IPMRA_VIFA_BYTES_IN, ..., the /proc columns) are left out, so two
//! reads of an unchanged table are equal.
//!
//! Kernel facts (Linux 6.18, checked on this machine):
//! * VIFs and MIFs come and go without any netlink notification of their
//!   own (vif_add, vif_delete, mif6_add, mif6_delete send none), and
//!   closing the mroute socket (or MRT_DONE) deletes them all silently
//!   too. What is announced is the device's `mc_forwarding` count
//!   changing: an RTM_NEWNETCONF with NETCONFA_MC_FORWARDING for the
//!   device (and for "all" at MRT_INIT and MRT_DONE), which
//!   [`mc_forwarding_news`] recognises.
//! * IPv4 has a dump: RTM_GETLINK of family RTNL_FAMILY_IPMR answered by
//!   ipmr_rtm_dumplink, one RTM_NEWLINK per table (more if a table does not
//!   fit in one message) with IFLA_AF_SPEC { IPMRA_TABLE_ID, ...,
//!   IPMRA_TABLE_VIFS { IPMRA_VIF { IPMRA_VIFA_* } ... } }, every table.
//! * IPv6 has none: RTM_GETLINK of family RTNL_FAMILY_IP6MR falls back to
//!   the plain link dump. `/proc/net/ip6_mr_vif` lists the MIFs of the
//!   default table (RT6_TABLE_DFLT, 254) only, by device name.
//! * Neither reports a VIF's threshold or rate limit.
//! * MFC entries themselves are announced, also when MRT_DONE or the
//!   socket's closing flushes them (mroute_clean_tables sends an
//!   RTM_DELROUTE for each, after the VIFs are gone, so without RTA_IIF);
//!   what changes silently is an entry's dump when a VIF it names goes:
//!   mr_fill_mroute leaves out VIFs that no longer exist.

use std::net::{IpAddr, Ipv4Addr};

use fpc::{MrouteVif, AF_INET, AF_INET6};

use super::mroute::{u32_of, RTNL_FAMILY_IPMR};
use super::wire::{attrs, WireError};

pub use super::wire::{RTM_DELNETCONF, RTM_NEWNETCONF};

/// The netconf groups, where VIF and MIF changes show.
pub const RTNLGRP_IPV4_NETCONF: u32 = 24;
pub const RTNLGRP_IPV6_NETCONF: u32 = 25;
const NETCONFA_MC_FORWARDING: u16 = 4;

const IFLA_AF_SPEC: u16 = 26;
const IPMRA_TABLE_ID: u16 = 1;
const IPMRA_TABLE_VIFS: u16 = 6;
const IPMRA_VIF: u16 = 1;
const IPMRA_VIFA_IFINDEX: u16 = 1;
const IPMRA_VIFA_VIF_ID: u16 = 2;
const IPMRA_VIFA_FLAGS: u16 = 3;
const IPMRA_VIFA_LOCAL_ADDR: u16 = 8;
const IPMRA_VIFA_REMOTE_ADDR: u16 = 9;

pub const VIFF_TUNNEL: u16 = 0x1;
pub const VIFF_REGISTER: u16 = 0x4;
pub const VIFF_USE_IFINDEX: u16 = 0x8;
/// The table /proc/net/ip6_mr_vif shows (RT6_TABLE_DFLT, RT_TABLE_MAIN).
pub const IP6MR_PROC_TABLE: u32 = 254;
/// MAXVIFS, MAXMIFS.
const MAXVIFS: u32 = 32;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VifError {
    #[error(transparent)]
    Wire(#[from] WireError),
    #[error("IPMR link message without {0}")]
    Missing(&'static str),
    #[error("VIF index {0} is beyond the kernel's 32")]
    BadIndex(u32),
    #[error("ip6_mr_vif line {line}: bad {what}")]
    ProcLine { line: usize, what: &'static str },
}

/// The VIFs of one RTM_NEWLINK of family RTNL_FAMILY_IPMR (an answer to
/// the IPMR link dump); Ok(None) for a message of another family.
pub fn decode_ipmr_link(payload: &[u8]) -> Result<Option<Vec<MrouteVif>>, VifError> {
    // struct ifinfomsg (16 bytes); only its family is set.
    let rest = payload.get(16..).ok_or(WireError::Short(payload.len()))?;
    if payload[0] != RTNL_FAMILY_IPMR {
        return Ok(None);
    }
    let mut table = None;
    let mut vifs = Vec::new();
    for a in attrs(rest) {
        let (kind, spec) = a?;
        if kind != IFLA_AF_SPEC {
            continue;
        }
        for a in attrs(spec) {
            match a? {
                (IPMRA_TABLE_ID, v) => table = Some(u32_of(IPMRA_TABLE_ID, v)?),
                (IPMRA_TABLE_VIFS, v) => {
                    for a in attrs(v) {
                        if let (IPMRA_VIF, v) = a? {
                            vifs.push(decode_vif(v)?);
                        }
                    }
                }
                _ => {}
            }
        }
    }
    let table = table.ok_or(VifError::Missing("IPMRA_TABLE_ID"))?;
    for v in &mut vifs {
        v.table = table;
    }
    Ok(Some(vifs))
}

fn decode_vif(nest: &[u8]) -> Result<MrouteVif, VifError> {
    let (mut ifindex, mut vif, mut flags) = (None, None, 0u16);
    let (mut local, mut remote) = (None, None);
    for a in attrs(nest) {
        let (kind, v) = a?;
        match kind {
            IPMRA_VIFA_IFINDEX => ifindex = Some(u32_of(kind, v)?),
            IPMRA_VIFA_VIF_ID => vif = Some(u32_of(kind, v)?),
            IPMRA_VIFA_FLAGS => {
                let b = v
                    .get(..2)
                    .ok_or(WireError::BadAttr { kind, len: v.len() })?;
                flags = u16::from_ne_bytes([b[0], b[1]]);
            }
            IPMRA_VIFA_LOCAL_ADDR => local = Some(be32_addr(kind, v)?),
            IPMRA_VIFA_REMOTE_ADDR => remote = Some(be32_addr(kind, v)?),
            _ => {}
        }
    }
    let vif = vif.ok_or(VifError::Missing("IPMRA_VIFA_VIF_ID"))?;
    if vif >= MAXVIFS {
        return Err(VifError::BadIndex(vif));
    }
    let nonzero = |a: Option<Ipv4Addr>| a.filter(|a| !a.is_unspecified()).map(IpAddr::V4);
    Ok(MrouteVif {
        family: AF_INET,
        table: 0,
        vif: vif as u16,
        ifindex: ifindex.ok_or(VifError::Missing("IPMRA_VIFA_IFINDEX"))?,
        flags,
        // A VIF set up with VIFF_USE_IFINDEX has its ifindex where the
        // local address would be (vifc_lcl_ifindex shares a union with
        // vifc_lcl_addr, and vif_add keeps the raw value): not an address.
        local: if flags & VIFF_USE_IFINDEX != 0 {
            None
        } else {
            nonzero(local)
        },
        remote: nonzero(remote),
    })
}

fn be32_addr(kind: u16, v: &[u8]) -> Result<Ipv4Addr, WireError> {
    let b: [u8; 4] = v
        .get(..4)
        .and_then(|b| b.try_into().ok())
        .ok_or(WireError::BadAttr { kind, len: v.len() })?;
    Ok(Ipv4Addr::from(b))
}

/// One line of `/proc/net/ip6_mr_vif`: a MIF of the default table, named
/// by its device (the caller resolves the name to an ifindex).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcMif {
    pub mif: u16,
    pub name: String,
    pub flags: u16,
}

impl ProcMif {
    /// The MIF as an object, on device `ifindex`.
    pub fn object(&self, ifindex: u32) -> MrouteVif {
        MrouteVif {
            family: AF_INET6,
            table: IP6MR_PROC_TABLE,
            vif: self.mif,
            ifindex,
            flags: self.flags,
            local: None,
            remote: None,
        }
    }
}

/// Parses `/proc/net/ip6_mr_vif`: a header line, then per MIF
/// "index name bytes-in packets-in bytes-out packets-out flags(hex)".
/// One result per MIF line, so that a bad line costs only itself.
pub fn parse_ip6_mr_vif(text: &str) -> impl Iterator<Item = Result<ProcMif, VifError>> + '_ {
    text.lines().enumerate().filter_map(|(n, line)| {
        let cols: Vec<&str> = line.split_whitespace().collect();
        if cols.is_empty() || (n == 0 && cols[0] == "Interface") {
            return None;
        }
        let bad = |what| VifError::ProcLine { line: n + 1, what };
        let parse = || {
            if cols.len() < 7 {
                return Err(bad("column count"));
            }
            let mif: u16 = cols[0].parse().map_err(|_| bad("index"))?;
            if u32::from(mif) >= MAXVIFS {
                return Err(bad("index"));
            }
            Ok(ProcMif {
                mif,
                name: cols[1].to_owned(),
                flags: u16::from_str_radix(cols[6], 16).map_err(|_| bad("flags"))?,
            })
        };
        Some(parse())
    })
}

/// Whether a route-family message is netconf news of a device's (or
/// "all"'s) mc_forwarding, which changes with every VIF or MIF added or
/// deleted on it: the family (AF_INET, AF_INET6) whose VIFs to re-read.
/// A new device's full netconf announcement mentions mc_forwarding too:
/// one re-read more, harmless.
pub fn mc_forwarding_news(kind: u16, payload: &[u8]) -> Option<u8> {
    if kind != RTM_NEWNETCONF && kind != RTM_DELNETCONF {
        return None;
    }
    // struct netconfmsg: the family, padded to 4 bytes.
    let family = *payload.first()?;
    let mentions = attrs(payload.get(4..)?).any(|a| matches!(a, Ok((NETCONFA_MC_FORWARDING, _))));
    (mentions && (family == AF_INET || family == AF_INET6)).then_some(family)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::netlink::wire::{Messages, RTM_NEWLINK};

    fn hex(s: &str) -> Vec<u8> {
        let s: String = s.split_whitespace().collect();
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    /// The exact answer of this kernel (6.18) to RTM_GETLINK of family
    /// RTNL_FAMILY_IPMR, in a namespace with veths a1 (ifindex 2) and a0
    /// (3): table 253 with VIF 0 on a0 (VIFF_USE_IFINDEX), VIF 2 by local
    /// address 10.9.1.1 (a1), VIF 3 the register VIF (pimreg, 6); table 7
    /// with VIF 5 on a1 (VIFF_USE_IFINDEX); then NLMSG_DONE.
    const IPMR_DUMP: &str = "\
        6c010000 10000200 01000000 a6490000 80000000 00000000 00000000 00000000 \
        4c011a00 08000100 fd000000 08000200 00000000 08000300 03000000 05000400 \
        00000000 05000500 00000000 05000700 00000000 18010600 5c000100 08000100 \
        03000000 08000200 00000000 06000300 08000000 0c000400 00000000 00000000 \
        0c000500 00000000 00000000 0c000600 00000000 00000000 0c000700 00000000 \
        00000000 08000800 03000000 08000900 00000000 5c000100 08000100 02000000 \
        08000200 02000000 06000300 00000000 0c000400 00000000 00000000 0c000500 \
        00000000 00000000 0c000600 00000000 00000000 0c000700 00000000 00000000 \
        08000800 0a090101 08000900 00000000 5c000100 08000100 06000000 08000200 \
        03000000 06000300 04000000 0c000400 00000000 00000000 0c000500 00000000 \
        00000000 0c000600 00000000 00000000 0c000700 00000000 00000000 08000800 \
        00000000 08000900 00000000 b4000000 10000200 01000000 a6490000 80000000 \
        00000000 00000000 00000000 94001a00 08000100 07000000 08000200 00000000 \
        08000300 ffffffff 05000400 00000000 05000500 00000000 05000700 00000000 \
        60000600 5c000100 08000100 02000000 08000200 05000000 06000300 08000000 \
        0c000400 00000000 00000000 0c000500 00000000 00000000 0c000600 00000000 \
        00000000 0c000700 00000000 00000000 08000800 02000000 08000900 00000000 \
        14000000 03000200 01000000 a6490000 00000000";

    /// /proc/net/ip6_mr_vif of the same namespace: MIFs 0 and 1 on a0 and
    /// a1, MIF 2 the register MIF (MIFF_REGISTER).
    const IP6_MR_VIF: &str = "\
Interface      BytesIn  PktsIn  BytesOut PktsOut Flags
 0 a0                0       0         0       0 00000
 1 a1                0       0         0       0 00000
 2 pim6reg           0       0         0       0 00001
";

    /// Two RTM_NEWNETCONF this kernel sent at MRT_INIT and MRT6_INIT:
    /// "all" (NETCONFA_IFINDEX_ALL) mc_forwarding 1, IPv4 then IPv6.
    const NETCONF: &str = "\
        24000000 50000000 00000000 00000000 02000000 08000100 ffffffff 08000400 01000000 \
        24000000 50000000 00000000 00000000 0a000000 08000100 ffffffff 08000400 01000000";

    fn vif(table: u32, vif: u16, ifindex: u32, flags: u16, local: Option<&str>) -> MrouteVif {
        MrouteVif {
            family: AF_INET,
            table,
            vif,
            ifindex,
            flags,
            local: local.map(|a| a.parse().unwrap()),
            remote: None,
        }
    }

    fn decode_dump(buf: &[u8]) -> Result<Vec<MrouteVif>, VifError> {
        let mut out = Vec::new();
        for msg in Messages::new(buf) {
            let msg = msg?;
            if msg.kind == RTM_NEWLINK {
                out.extend(decode_ipmr_link(msg.payload)?.unwrap_or_default());
            }
        }
        Ok(out)
    }

    #[test]
    fn ipmr_link_dump_of_two_tables() {
        assert_eq!(
            decode_dump(&hex(IPMR_DUMP)).unwrap(),
            vec![
                vif(253, 0, 3, VIFF_USE_IFINDEX, None),
                vif(253, 2, 2, 0, Some("10.9.1.1")),
                vif(253, 3, 6, VIFF_REGISTER, None),
                vif(7, 5, 2, VIFF_USE_IFINDEX, None),
            ]
        );
    }

    #[test]
    fn plain_link_messages_are_not_vifs() {
        let mut p = hex(IPMR_DUMP)[16..16 + 0x16c - 16].to_vec();
        p[0] = 0; // AF_UNSPEC: what a kernel without IPMR answers
        assert_eq!(decode_ipmr_link(&p), Ok(None));
    }

    #[test]
    fn vif_without_its_index_is_an_error() {
        let mut b = hex(IPMR_DUMP);
        // The first VIF's IPMRA_VIFA_VIF_ID (at 0x64) renamed to an unknown kind.
        assert_eq!(&b[0x66..0x68], &[2, 0]);
        b[0x66] = 0x30;
        assert_eq!(decode_dump(&b), Err(VifError::Missing("IPMRA_VIFA_VIF_ID")));
    }

    #[test]
    fn ip6_mr_vif_lines() {
        let mifs: Vec<ProcMif> = parse_ip6_mr_vif(IP6_MR_VIF).map(Result::unwrap).collect();
        let names: Vec<_> = mifs
            .iter()
            .map(|m| (m.mif, m.name.as_str(), m.flags))
            .collect();
        assert_eq!(names, vec![(0, "a0", 0), (1, "a1", 0), (2, "pim6reg", 1)]);
        let o = mifs[2].object(9);
        assert_eq!((o.family, o.table, o.vif, o.ifindex), (AF_INET6, 254, 2, 9));
        assert_eq!(
            parse_ip6_mr_vif(IP6_MR_VIF.lines().next().unwrap()).count(),
            0
        );
        let lines: Vec<_> = parse_ip6_mr_vif(
            "Interface\n 40 a0 0 0 0 0 00000\n 1 a1 0 0 0 0 0000g\n 2 a1 0 0 0 0 00000\n",
        )
        .collect();
        assert_eq!(
            lines[..2],
            [
                Err(VifError::ProcLine {
                    line: 2,
                    what: "index"
                }),
                Err(VifError::ProcLine {
                    line: 3,
                    what: "flags"
                }),
            ]
        );
        assert_eq!(
            lines[2].as_ref().map(|m| m.mif),
            Ok(2),
            "a bad line costs only itself"
        );
    }

    #[test]
    fn netconf_mc_forwarding_news() {
        let buf = hex(NETCONF);
        let families: Vec<_> = Messages::new(&buf)
            .map(|m| m.unwrap())
            .map(|m| mc_forwarding_news(m.kind, m.payload))
            .collect();
        assert_eq!(families, vec![Some(AF_INET), Some(AF_INET6)]);
        let first = Messages::new(&buf).next().unwrap().unwrap();
        assert_eq!(mc_forwarding_news(RTM_NEWLINK, first.payload), None);
        let mut other = first.payload.to_vec();
        other[14] = 2; // NETCONFA_FORWARDING: not about multicast
        assert_eq!(mc_forwarding_news(first.kind, &other), None);
    }

    #[test]
    fn malformed_input_is_an_error_not_a_panic() {
        let dump = hex(IPMR_DUMP);
        let payload = &dump[16..0x16c];
        for cut in 0..payload.len() {
            let _ = decode_ipmr_link(&payload[..cut]);
        }
        for at in 0..payload.len() {
            for v in [0u8, 1, 3, 4, 8, 0x1a, 0x80, 0xff] {
                let mut b = payload.to_vec();
                b[at] = v;
                let _ = decode_ipmr_link(&b);
            }
        }
        let nc = hex(NETCONF);
        for cut in 0..nc.len() {
            let _ = mc_forwarding_news(RTM_NEWNETCONF, &nc[16..cut.max(16)]);
        }
        for cut in 0..IP6_MR_VIF.len() {
            if IP6_MR_VIF.is_char_boundary(cut) {
                let _ = parse_ip6_mr_vif(&IP6_MR_VIF[..cut]).count();
            }
        }
        let bytes = IP6_MR_VIF.as_bytes();
        for at in 0..bytes.len() {
            for v in [b' ', b'\n', b'9', b'f', b'z', 0xff] {
                let mut b = bytes.to_vec();
                b[at] = v;
                let _ = parse_ip6_mr_vif(&String::from_utf8_lossy(&b)).count();
            }
        }
    }
}
