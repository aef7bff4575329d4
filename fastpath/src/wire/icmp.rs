//! ICMPv4 (RFC 792) and ICMPv6 (RFC 4443) error messages, written into a
//! caller's buffer behind a fresh IP header.
//!
//! Invariants: nothing here allocates; an emitted message has valid IP and
//! ICMP checksums, and an IPv6 one never exceeds the minimum MTU (1280).

use super::{checksum, ip_proto, ipv4, ipv6};

/// ICMPv4 types.
pub mod v4 {
    pub const DEST_UNREACHABLE: u8 = 3;
    pub const TIME_EXCEEDED: u8 = 11;
}

/// ICMPv6 types.
pub mod v6 {
    pub const DEST_UNREACHABLE: u8 = 1;
    pub const TIME_EXCEEDED: u8 = 3;
}

/// The ICMP header: type, code, checksum, 4 unused (or type-specific) bytes.
pub const HEADER_LEN: usize = 8;
/// IPv6's minimum MTU: the most an ICMPv6 error may take (RFC 4443 2.4 c).
pub const V6_MIN_MTU: usize = 1280;
/// The TTL and hop limit of the messages fpd originates.
pub const TTL: u8 = 64;

/// Whether an ICMPv4 message of `icmp_type` is an error: errors are never
/// answered with errors (RFC 1812 4.3.2.7).
pub fn is_error_v4(icmp_type: u8) -> bool {
    matches!(icmp_type, 3 | 4 | 5 | 11 | 12)
}

/// ICMPv6 errors are the types below 128 (RFC 4443 2.1).
pub fn is_error_v6(icmp_type: u8) -> bool {
    icmp_type < 128
}

/// Writes an IPv4 packet from `src` to `dst` carrying an ICMP error of
/// `icmp_type`/`code` that quotes `quote` (the caller's choice: the
/// original header and 8 bytes of its payload). Returns its length, or
/// `None` when `out` is too small.
pub fn emit_error_v4(
    out: &mut [u8],
    src: u32,
    dst: u32,
    icmp_type: u8,
    code: u8,
    quote: &[u8],
) -> Option<usize> {
    let len = ipv4::HEADER_LEN + HEADER_LEN + quote.len();
    let len16 = u16::try_from(len).ok()?;
    let out = out.get_mut(..len)?;
    let (ip, icmp) = out.split_at_mut(ipv4::HEADER_LEN);
    ip[..12].copy_from_slice(&[0x45, 0, 0, 0, 0, 0, 0, 0, TTL, ip_proto::ICMP, 0, 0]);
    ip[2..4].copy_from_slice(&len16.to_be_bytes());
    ip[12..16].copy_from_slice(&src.to_be_bytes());
    ip[16..20].copy_from_slice(&dst.to_be_bytes());
    let c = !checksum::sum(ip);
    ip[10..12].copy_from_slice(&c.to_be_bytes());
    icmp[..HEADER_LEN].copy_from_slice(&[icmp_type, code, 0, 0, 0, 0, 0, 0]);
    icmp[HEADER_LEN..].copy_from_slice(quote);
    let c = !checksum::sum(icmp);
    icmp[2..4].copy_from_slice(&c.to_be_bytes());
    Some(len)
}

/// Writes an IPv6 packet from `src` to `dst` carrying an ICMPv6 error
/// that quotes as much of `original` as fits in 1280 bytes. Returns its
/// length, or `None` when `out` is too small.
pub fn emit_error_v6(
    out: &mut [u8],
    src: u128,
    dst: u128,
    icmp_type: u8,
    code: u8,
    original: &[u8],
) -> Option<usize> {
    let quoted = original
        .len()
        .min(V6_MIN_MTU - ipv6::HEADER_LEN - HEADER_LEN);
    let icmp_len = HEADER_LEN + quoted;
    let len = ipv6::HEADER_LEN + icmp_len;
    let out = out.get_mut(..len)?;
    let (ip, icmp) = out.split_at_mut(ipv6::HEADER_LEN);
    ip[..8].copy_from_slice(&[0x60, 0, 0, 0, 0, 0, ip_proto::ICMPV6, TTL]);
    ip[4..6].copy_from_slice(&(icmp_len as u16).to_be_bytes());
    ip[8..24].copy_from_slice(&src.to_be_bytes());
    ip[24..40].copy_from_slice(&dst.to_be_bytes());
    icmp[..HEADER_LEN].copy_from_slice(&[icmp_type, code, 0, 0, 0, 0, 0, 0]);
    icmp[HEADER_LEN..].copy_from_slice(&original[..quoted]);
    let c = !checksum_v6(src, dst, icmp);
    icmp[2..4].copy_from_slice(&c.to_be_bytes());
    Some(len)
}

/// The folded sum of an ICMPv6 message and its pseudo-header (RFC 8200
/// 8.1): addresses, upper-layer length, next header.
pub fn checksum_v6(src: u128, dst: u128, icmp: &[u8]) -> u16 {
    let mut pseudo = [0u8; 40];
    pseudo[..16].copy_from_slice(&src.to_be_bytes());
    pseudo[16..32].copy_from_slice(&dst.to_be_bytes());
    pseudo[32..36].copy_from_slice(&(icmp.len() as u32).to_be_bytes());
    pseudo[39] = ip_proto::ICMPV6;
    let a = checksum::sum(&pseudo);
    let b = checksum::sum(icmp);
    let s = u32::from(a) + u32::from(b);
    ((s & 0xffff) + (s >> 16)) as u16
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn v4_error_has_valid_checksums() {
        let quote = [
            0x45, 0, 0, 32, 0, 1, 0x40, 0, 1, 17, 0, 0, 10, 1, 0, 2, 10, 2, 0, 2,
        ];
        let mut out = [0u8; 64];
        let n = emit_error_v4(&mut out, 0x0a01_0001, 0x0a01_0002, 11, 0, &quote).unwrap();
        assert_eq!(n, 48);
        assert_eq!(checksum::sum(&out[..20]), 0xffff);
        assert_eq!(checksum::sum(&out[20..n]), 0xffff);
        assert_eq!(&out[28..n], &quote);
        assert!(emit_error_v4(&mut out[..40], 1, 2, 11, 0, &quote).is_none());
    }

    #[test]
    fn v6_error_is_cut_at_1280() {
        let original = [7u8; 1500];
        let mut out = [0u8; 1600];
        let n = emit_error_v6(&mut out, 1, 2, 3, 0, &original).unwrap();
        assert_eq!(n, V6_MIN_MTU);
        assert_eq!(checksum_v6(1, 2, &out[40..n]), 0xffff);
    }
}
