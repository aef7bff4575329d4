//! Packet formats the dataplane reads and rewrites: zero-copy views over a
//! frame's bytes, in the style of smoltcp's `wire` (`Frame<T>`/`Packet<T>`
//! over `T: AsRef<[u8]>`, `new_checked` before any accessor).
//!
//! Invariants: these modules do no I/O, no allocation and no logging; a view
//! built with `new_checked` never panics on any accessor, whatever the
//! bytes, because every length it trusts was checked against the buffer.

pub mod checksum;
pub mod ethernet;
pub mod icmp;
pub mod ipv4;
pub mod ipv6;

/// Why a view could not be built over some bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    #[error("truncated")]
    Truncated,
    #[error("malformed header")]
    Malformed,
}

/// IP protocol numbers the dataplane looks into (for flow hashing).
pub mod ip_proto {
    pub const HOP_BY_HOP: u8 = 0;
    pub const ICMP: u8 = 1;
    pub const TCP: u8 = 6;
    pub const UDP: u8 = 17;
    pub const FRAGMENT: u8 = 44;
    pub const ICMPV6: u8 = 58;
}

/// The source and destination ports of a TCP or UDP header at the start
/// of `l4`, or zeros for other protocols (flow hashing only).
pub(crate) fn l4_ports(protocol: u8, l4: &[u8]) -> (u16, u16) {
    match (protocol, l4.get(..4)) {
        (ip_proto::TCP | ip_proto::UDP, Some(p)) => (
            u16::from_be_bytes([p[0], p[1]]),
            u16::from_be_bytes([p[2], p[3]]),
        ),
        _ => (0, 0),
    }
}

/// Completes the TCP or UDP checksum of a frame that a local sender left
/// partial (checksum offload: the field holds only the pseudo-header sum,
/// and the device was to fold in the rest). Packet sockets hand such frames
/// over as they are (`TP_STATUS_CSUMNOTREADY`): a veth peer in the same
/// host never computes them, so forwarding them unfinished would deliver
/// datagrams the receiver drops. Returns whether a checksum was written.
pub fn complete_partial_checksum(frame: &mut [u8]) -> bool {
    let Ok(mut eth) = ethernet::Frame::new_checked(&mut *frame) else {
        return false;
    };
    let (protocol, l4) = match eth.ethertype() {
        ethernet::ethertype::IPV4 => {
            let payload = eth.payload_mut();
            let Ok(p) = ipv4::Packet::new_checked(&*payload) else {
                return false;
            };
            if p.is_fragment() {
                return false;
            }
            let (hl, tl, proto) = (p.header_len(), p.total_len(), p.protocol());
            (proto, &mut payload[hl..tl])
        }
        ethernet::ethertype::IPV6 => {
            let payload = eth.payload_mut();
            let Ok(p) = ipv6::Packet::new_checked(&*payload) else {
                return false;
            };
            let (tl, proto) = (p.total_len(), p.next_header());
            (proto, &mut payload[ipv6::HEADER_LEN..tl])
        }
        _ => return false,
    };
    let at = match protocol {
        ip_proto::UDP if l4.len() >= 8 => 6,
        ip_proto::TCP if l4.len() >= 20 => 16,
        _ => return false,
    };
    // The field already holds the pseudo-header sum: summing the segment
    // with it and inverting gives the full checksum.
    let mut c = !checksum::sum(l4);
    if c == 0 && protocol == ip_proto::UDP {
        c = 0xffff; // 0 means "no checksum" in UDP
    }
    l4[at..at + 2].copy_from_slice(&c.to_be_bytes());
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A UDP datagram over IPv4 with a full checksum, and the same with
    /// only the pseudo-header sum in the field, as an offloading sender
    /// leaves it.
    #[test]
    fn partial_checksums_are_completed() {
        #[rustfmt::skip]
        let mut frame = vec![
            2, 0, 0, 0, 0, 1, 2, 0, 0, 0, 0, 2, 0x08, 0x00,
            0x45, 0, 0, 32, 0, 1, 0x40, 0, 64, 17, 0, 0, 10, 1, 0, 2, 10, 2, 0, 2,
            0x04, 0xd2, 0x16, 0x2e, 0, 12, 0, 0, 1, 2, 3, 4,
        ];
        ipv4::Packet::new_checked(&mut frame[14..])
            .unwrap()
            .fill_checksum();
        // The full checksum, computed the long way.
        let mut pseudo = vec![10, 1, 0, 2, 10, 2, 0, 2, 0, 17, 0, 12];
        pseudo.extend_from_slice(&frame[34..]);
        let full = !checksum::sum(&pseudo);
        // The partial one: the pseudo-header sum alone.
        let partial = checksum::sum(&[10, 1, 0, 2, 10, 2, 0, 2, 0, 17, 0, 12]);
        frame[40..42].copy_from_slice(&partial.to_be_bytes());
        assert!(complete_partial_checksum(&mut frame));
        assert_eq!(u16::from_be_bytes([frame[40], frame[41]]), full);
        // ARP and short frames are left alone.
        let mut arp = frame.clone();
        arp[12..14].copy_from_slice(&[0x08, 0x06]);
        assert!(!complete_partial_checksum(&mut arp));
        assert!(!complete_partial_checksum(&mut frame[..20]));
    }
}
