//! IPv6 headers (RFC 8200): what forwarding reads and the hop limit it
//! rewrites (IPv6 has no header checksum).
//!
//! ```text
//!  0       4               12                                     32
//!  +-------+---------------+--------------------------------------+
//!  |version| traffic class |              flow label              |
//!  |         payload length          | next header |  hop limit   |
//!  |                  source address (16 bytes)                   |
//!  |               destination address (16 bytes)                 |
//! ```

use super::{l4_ports, Error};

pub const HEADER_LEN: usize = 40;

mod field {
    pub const LENGTH: usize = 4;
    pub const NEXT_HEADER: usize = 6;
    pub const HOP_LIMIT: usize = 7;
    pub const SRC: usize = 8;
    pub const DST: usize = 24;
}

/// A view of an IPv6 packet.
#[derive(Debug, Clone)]
pub struct Packet<T> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Packet<T> {
    /// A view of `buffer` whose version is 6 and whose payload length fits
    /// in the buffer (which may hold link-layer padding after it).
    pub fn new_checked(buffer: T) -> Result<Self, Error> {
        let b = buffer.as_ref();
        if b.len() < HEADER_LEN {
            return Err(Error::Truncated);
        }
        let p = Packet { buffer };
        if p.version() != 6 {
            return Err(Error::Malformed);
        }
        if HEADER_LEN + p.payload_len() > p.buffer.as_ref().len() {
            return Err(Error::Truncated);
        }
        Ok(p)
    }

    pub fn version(&self) -> u8 {
        self.buffer.as_ref()[0] >> 4
    }

    pub fn payload_len(&self) -> usize {
        let b = self.buffer.as_ref();
        usize::from(u16::from_be_bytes([b[field::LENGTH], b[field::LENGTH + 1]]))
    }

    /// The header and payload length.
    pub fn total_len(&self) -> usize {
        HEADER_LEN + self.payload_len()
    }

    pub fn next_header(&self) -> u8 {
        self.buffer.as_ref()[field::NEXT_HEADER]
    }

    /// The traffic class (DSCP and ECN).
    pub fn traffic_class(&self) -> u8 {
        let b = self.buffer.as_ref();
        (b[0] << 4) | (b[1] >> 4)
    }

    /// The flow label (20 bits).
    pub fn flow_label(&self) -> u32 {
        let b = self.buffer.as_ref();
        u32::from_be_bytes([0, b[1] & 0x0f, b[2], b[3]])
    }

    pub fn hop_limit(&self) -> u8 {
        self.buffer.as_ref()[field::HOP_LIMIT]
    }

    fn addr(&self, at: usize) -> u128 {
        let mut a = [0u8; 16];
        a.copy_from_slice(&self.buffer.as_ref()[at..at + 16]);
        u128::from_be_bytes(a)
    }

    pub fn src(&self) -> u128 {
        self.addr(field::SRC)
    }

    pub fn dst(&self) -> u128 {
        self.addr(field::DST)
    }

    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[HEADER_LEN..self.total_len()]
    }

    /// TCP or UDP ports when the next header is one of them, else zeros.
    pub fn ports(&self) -> (u16, u16) {
        l4_ports(self.next_header(), self.payload())
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Packet<T> {
    /// The caller has checked that the hop limit is above 1.
    pub fn decrement_hop_limit(&mut self) {
        let b = self.buffer.as_mut();
        b[field::HOP_LIMIT] = b[field::HOP_LIMIT].wrapping_sub(1);
    }
}

/// `ff00::/8`.
pub fn is_multicast(a: u128) -> bool {
    a >> 120 == 0xff
}

/// `fe80::/10`: never forwarded (RFC 4291 section 2.5.6).
pub fn is_link_local(a: u128) -> bool {
    a >> 118 == 0xfe80 >> 6
}

#[cfg(test)]
mod tests {
    use super::*;

    /// UDP 2001:db8:1::2 port 1234 -> 2001:db8:2::2 port 5678, hop limit 64,
    /// 4 bytes of data.
    #[rustfmt::skip]
    const UDP: [u8; 52] = [
        0x60, 0x00, 0x00, 0x00,     // version 6
        0x00, 0x0c, 0x11, 0x40,     // payload 12, UDP, hop limit 64
        0x20, 0x01, 0x0d, 0xb8, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2,
        0x20, 0x01, 0x0d, 0xb8, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2,
        0x04, 0xd2, 0x16, 0x2e, 0x00, 0x0c, 0x00, 0x00,
        1, 2, 3, 4,
    ];

    #[test]
    fn parse() {
        let p = Packet::new_checked(&UDP[..]).unwrap();
        assert_eq!(
            (p.payload_len(), p.next_header(), p.hop_limit()),
            (12, 17, 64)
        );
        assert_eq!(p.src(), 0x2001_0db8_0001_0000_0000_0000_0000_0002);
        assert_eq!(p.dst(), 0x2001_0db8_0002_0000_0000_0000_0000_0002);
        assert_eq!(p.ports(), (1234, 5678));
    }

    #[test]
    fn emit() {
        let mut buf = UDP;
        Packet::new_checked(&mut buf[..])
            .unwrap()
            .decrement_hop_limit();
        assert_eq!(buf[7], 63);
    }

    #[test]
    fn bad_headers_are_refused() {
        assert_eq!(
            Packet::new_checked(&UDP[..39]).unwrap_err(),
            Error::Truncated
        );
        assert_eq!(
            Packet::new_checked(&UDP[..51]).unwrap_err(),
            Error::Truncated
        );
        let mut v4 = UDP;
        v4[0] = 0x45;
        assert_eq!(Packet::new_checked(&v4[..]).unwrap_err(), Error::Malformed);
    }

    #[test]
    fn address_classes() {
        assert!(is_multicast(0xff02 << 112));
        assert!(!is_multicast(0x2001 << 112));
        assert!(is_link_local(0xfe80 << 112 | 1));
        assert!(is_link_local(0xfebf << 112));
        assert!(!is_link_local(0xfec0 << 112));
    }
}
