//! The NAT of a conntrack entry applied to one packet, as the kernel's
//! `nf_nat_packet` / `nf_nat_manip_pkt` does it for an established flow.
//!
//! The entry says the translation: a packet of direction `dir` leaves
//! with the inverse of the *other* direction's tuple. Linux splits it in
//! two manipulations: the destination at prerouting (priority -100) and
//! the source at postrouting (100). Which applies follows the status:
//! in the original direction the destination if IPS_DST_NAT and the
//! source if IPS_SRC_NAT; in the reply direction the other way round.
//!
//! Checksums are updated incrementally as the kernel does (RFC 1624
//! equation 3, `inet_proto_csum_replace*`): the IPv4 header's for the
//! address, TCP's and UDP's for the pseudo-header address and the port
//! (a UDP checksum of 0 stays 0, and one that becomes 0 is written
//! 0xffff, CSUM_MANGLED_0), ICMP's for the echo id and ICMPv6's for the
//! pseudo-header and the echo id. The caller must have completed a
//! partial checksum (a local sender's offload) first.
//!
//! Invariants: pure, no allocation; the packet is changed only when the
//! whole translation can be made (else it is left as it was, with the
//! reason).

use super::{Direction, FlowEntry, Reason};
use crate::wire::{checksum, ip_proto};
use fpc::{Conntrack, CtTuple};
use std::net::IpAddr;

/// Which half of the translation: Linux's NAT hooks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Manip {
    /// At prerouting: the destination address and port.
    Dst,
    /// At postrouting: the source address and port.
    Src,
}

/// Whether `manip` translates packets of `dir` of an entry with `status`.
pub(crate) fn applies(status: u32, dir: Direction, manip: Manip) -> bool {
    let bit = match (manip, dir) {
        (Manip::Src, Direction::Original) | (Manip::Dst, Direction::Reply) => {
            Conntrack::IPS_SRC_NAT
        }
        (Manip::Dst, Direction::Original) | (Manip::Src, Direction::Reply) => {
            Conntrack::IPS_DST_NAT
        }
    };
    status & bit != 0
}

/// Rewrites `l3` (an IP packet, header first, of the entry's flow in
/// direction `dir`) with `manip` of `entry`'s NAT. Returns whether it
/// changed anything (false: the manipulation does not apply).
pub(crate) fn apply_nat(
    entry: &FlowEntry,
    dir: Direction,
    manip: Manip,
    l3: &mut [u8],
) -> Result<bool, Reason> {
    if !applies(entry.status(), dir, manip) {
        return Ok(false);
    }
    let other = match dir {
        Direction::Original => entry.reply(),
        Direction::Reply => entry.orig(),
    };
    rewrite(other, manip, l3)?;
    Ok(true)
}

/// The address and port (ICMP: the echo id) the packet gets: those of
/// the inverse of `other`.
fn target(other: &CtTuple, manip: Manip) -> (IpAddr, u16, u16) {
    match manip {
        Manip::Src => (other.dst, other.dport, other.sport),
        Manip::Dst => (other.src, other.sport, other.sport),
    }
}

fn rewrite(other: &CtTuple, manip: Manip, l3: &mut [u8]) -> Result<(), Reason> {
    let (addr, port, icmp_id) = target(other, manip);
    let version = l3.first().ok_or(Reason::Malformed)? >> 4;
    let (addr_at, addr_len, l4_at, proto): (usize, usize, usize, u8) = match (version, addr) {
        (4, IpAddr::V4(_)) if l3.len() >= 20 => {
            let ihl = usize::from(l3[0] & 0x0f) * 4;
            let at = if manip == Manip::Src { 12 } else { 16 };
            (at, 4, ihl, l3[9])
        }
        (6, IpAddr::V6(_)) if l3.len() >= 40 => {
            let at = if manip == Manip::Src { 8 } else { 24 };
            (at, 16, 40, l3[6])
        }
        _ => return Err(Reason::Malformed),
    };
    if proto != other.proto {
        return Err(Reason::Malformed);
    }
    let new_addr: [u8; 16] = match addr {
        IpAddr::V4(a) => {
            let mut b = [0u8; 16];
            b[..4].copy_from_slice(&a.octets());
            b
        }
        IpAddr::V6(a) => a.octets(),
    };
    let new_addr = &new_addr[..addr_len];
    let l4_len = l3.len().checked_sub(l4_at).ok_or(Reason::Malformed)?;
    // Where the L4 checksum is, whether the pseudo-header covers the
    // addresses, and which port (or id) field changes.
    let (csum_at, pseudo, field_at, value) = match proto {
        ip_proto::TCP if l4_len >= 20 => (16, true, if manip == Manip::Src { 0 } else { 2 }, port),
        ip_proto::UDP if l4_len >= 8 => (6, true, if manip == Manip::Src { 0 } else { 2 }, port),
        ip_proto::ICMP if version == 4 && l4_len >= 8 => (2, false, 4, icmp_id),
        ip_proto::ICMPV6 if version == 6 && l4_len >= 8 => (2, true, 4, icmp_id),
        ip_proto::TCP | ip_proto::UDP | ip_proto::ICMP | ip_proto::ICMPV6 => {
            return Err(Reason::Malformed)
        }
        _ => return Err(Reason::Nat),
    };
    let l4 = l4_at;
    let word = |b: &[u8], at: usize| u16::from_be_bytes([b[at], b[at + 1]]);
    let old_csum = word(l3, l4 + csum_at);
    // UDP without a checksum keeps none (the kernel's do_csum).
    let do_csum = !(proto == ip_proto::UDP && old_csum == 0);
    // ICMP: only the query types carry an id (icmp_manip_pkt); ICMPv6
    // only echo request and reply; other types keep theirs.
    let id_changes = match proto {
        ip_proto::ICMP => matches!(l3[l4], 0 | 8 | 13 | 14 | 15 | 16 | 17 | 18),
        ip_proto::ICMPV6 => matches!(l3[l4], 128 | 129),
        _ => true,
    };
    let mut csum = old_csum;
    if do_csum {
        if pseudo {
            for i in (0..addr_len).step_by(2) {
                let old = word(l3, addr_at + i);
                let new = u16::from_be_bytes([new_addr[i], new_addr[i + 1]]);
                csum = checksum::update(csum, old, new);
            }
        }
        if id_changes {
            csum = checksum::update(csum, word(l3, l4 + field_at), value);
        }
        if proto == ip_proto::UDP && csum == 0 {
            csum = 0xffff; // CSUM_MANGLED_0
        }
    }
    // The IPv4 header checksum follows the address.
    if version == 4 {
        let mut hc = word(l3, 10);
        for i in (0..4).step_by(2) {
            let new = u16::from_be_bytes([new_addr[i], new_addr[i + 1]]);
            hc = checksum::update(hc, word(l3, addr_at + i), new);
        }
        l3[10..12].copy_from_slice(&hc.to_be_bytes());
    }
    l3[addr_at..addr_at + addr_len].copy_from_slice(new_addr);
    if id_changes {
        l3[l4 + field_at..l4 + field_at + 2].copy_from_slice(&value.to_be_bytes());
    }
    l3[l4 + csum_at..l4 + csum_at + 2].copy_from_slice(&csum.to_be_bytes());
    Ok(())
}
