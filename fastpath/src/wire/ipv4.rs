//! IPv4 headers (RFC 791): what forwarding reads and the TTL it rewrites.
//!
//! ```text
//!  0       4       8              16      19                     32
//!  +-------+-------+--------------+-------------------------------+
//!  |version|  IHL  |     TOS      |          total length         |
//!  |          identification      |flags|    fragment offset      |
//!  |      TTL      |   protocol   |        header checksum        |
//!  |                        source address                        |
//!  |                      destination address                     |
//!  |                    options (IHL > 5) ...                     |
//! ```

use super::{checksum, l4_ports, Error};

pub const HEADER_LEN: usize = 20;

mod field {
    pub const VER_IHL: usize = 0;
    pub const LENGTH: usize = 2;
    pub const FLAGS_FRAG: usize = 6;
    pub const TTL: usize = 8;
    pub const PROTOCOL: usize = 9;
    pub const CHECKSUM: usize = 10;
    pub const SRC: usize = 12;
    pub const DST: usize = 16;
}

/// A view of an IPv4 packet.
#[derive(Debug, Clone)]
pub struct Packet<T> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Packet<T> {
    /// A view of `buffer` whose version is 4, whose header length is at
    /// least 20 bytes, and whose total length covers the header and fits
    /// in the buffer (which may hold link-layer padding after it).
    pub fn new_checked(buffer: T) -> Result<Self, Error> {
        let b = buffer.as_ref();
        if b.len() < HEADER_LEN {
            return Err(Error::Truncated);
        }
        let p = Packet { buffer };
        if p.version() != 4 || p.header_len() < HEADER_LEN {
            return Err(Error::Malformed);
        }
        let (hl, tl, len) = (p.header_len(), p.total_len(), p.buffer.as_ref().len());
        if hl > len || tl > len {
            return Err(Error::Truncated);
        }
        if tl < hl {
            return Err(Error::Malformed);
        }
        Ok(p)
    }

    fn u16_at(&self, at: usize) -> u16 {
        let b = self.buffer.as_ref();
        u16::from_be_bytes([b[at], b[at + 1]])
    }

    fn u32_at(&self, at: usize) -> u32 {
        let b = self.buffer.as_ref();
        u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
    }

    pub fn version(&self) -> u8 {
        self.buffer.as_ref()[field::VER_IHL] >> 4
    }

    /// The header length in bytes (IHL * 4).
    pub fn header_len(&self) -> usize {
        usize::from(self.buffer.as_ref()[field::VER_IHL] & 0x0f) * 4
    }

    pub fn total_len(&self) -> usize {
        usize::from(self.u16_at(field::LENGTH))
    }

    /// More fragments, or a non-zero offset: a fragment of a datagram.
    pub fn is_fragment(&self) -> bool {
        self.u16_at(field::FLAGS_FRAG) & 0x3fff != 0
    }

    /// The fragment offset, in 8-byte units: non-zero for every fragment
    /// but the first.
    pub fn frag_offset(&self) -> u16 {
        self.u16_at(field::FLAGS_FRAG) & 0x1fff
    }

    /// The TOS byte (DSCP and ECN).
    pub fn tos(&self) -> u8 {
        self.buffer.as_ref()[1]
    }

    pub fn ttl(&self) -> u8 {
        self.buffer.as_ref()[field::TTL]
    }

    pub fn protocol(&self) -> u8 {
        self.buffer.as_ref()[field::PROTOCOL]
    }

    pub fn checksum(&self) -> u16 {
        self.u16_at(field::CHECKSUM)
    }

    /// Host order.
    pub fn src(&self) -> u32 {
        self.u32_at(field::SRC)
    }

    /// Host order.
    pub fn dst(&self) -> u32 {
        self.u32_at(field::DST)
    }

    /// Whether the header checksum is right.
    pub fn verify_checksum(&self) -> bool {
        checksum::sum(&self.buffer.as_ref()[..self.header_len()]) == 0xffff
    }

    /// The bytes after the header, up to the total length.
    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[self.header_len()..self.total_len()]
    }

    /// TCP or UDP ports of an unfragmented datagram, else zeros.
    pub fn ports(&self) -> (u16, u16) {
        if self.is_fragment() {
            return (0, 0);
        }
        l4_ports(self.protocol(), self.payload())
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Packet<T> {
    /// Decrements the TTL and updates the checksum incrementally
    /// (RFC 1624); the caller has checked that the TTL is above 1.
    pub fn decrement_ttl(&mut self) {
        let old = self.u16_at(field::TTL);
        let b = self.buffer.as_mut();
        b[field::TTL] = b[field::TTL].wrapping_sub(1);
        let new = u16::from_be_bytes([b[field::TTL], b[field::PROTOCOL]]);
        let c = checksum::update(
            u16::from_be_bytes([b[field::CHECKSUM], b[field::CHECKSUM + 1]]),
            old,
            new,
        );
        b[field::CHECKSUM..field::CHECKSUM + 2].copy_from_slice(&c.to_be_bytes());
    }

    /// Recomputes the header checksum (tests and fixtures).
    pub fn fill_checksum(&mut self) {
        let hl = self.header_len();
        let b = self.buffer.as_mut();
        b[field::CHECKSUM..field::CHECKSUM + 2].copy_from_slice(&[0, 0]);
        let c = !checksum::sum(&b[..hl]);
        b[field::CHECKSUM..field::CHECKSUM + 2].copy_from_slice(&c.to_be_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A UDP datagram 10.1.0.2:1234 -> 10.2.0.2:5678, TTL 64, 4 bytes of
    /// data, with its checksum, then two bytes of Ethernet padding.
    #[rustfmt::skip]
    pub(crate) const UDP: [u8; 34] = [
        0x45, 0x00, 0x00, 0x20,     // version 4, IHL 5, total length 32
        0x00, 0x01, 0x40, 0x00,     // id 1, DF
        0x40, 0x11, 0x26, 0xc6,     // TTL 64, UDP, checksum
        10, 1, 0, 2,
        10, 2, 0, 2,
        0x04, 0xd2, 0x16, 0x2e,     // ports 1234 -> 5678
        0x00, 0x0c, 0x00, 0x00,     // UDP length 12, no checksum
        1, 2, 3, 4,
        0, 0,                       // padding
    ];

    #[test]
    fn parse() {
        let p = Packet::new_checked(&UDP[..]).unwrap();
        assert_eq!((p.version(), p.header_len(), p.total_len()), (4, 20, 32));
        assert_eq!((p.ttl(), p.protocol()), (64, 17));
        assert_eq!(p.src(), 0x0a01_0002);
        assert_eq!(p.dst(), 0x0a02_0002);
        assert!(!p.is_fragment());
        assert!(p.verify_checksum(), "checksum {:#x}", p.checksum());
        assert_eq!(p.ports(), (1234, 5678));
        assert_eq!(p.payload().len(), 12);
    }

    #[test]
    fn decrement_ttl_keeps_the_checksum_right() {
        let mut buf = UDP;
        let mut p = Packet::new_checked(&mut buf[..]).unwrap();
        for _ in 0..63 {
            p.decrement_ttl();
            assert!(p.verify_checksum(), "ttl {}", p.ttl());
        }
        assert_eq!(p.ttl(), 1);
        let c = p.checksum();
        p.fill_checksum();
        assert_eq!(p.checksum(), c);
    }

    #[test]
    fn bad_headers_are_refused() {
        assert_eq!(
            Packet::new_checked(&UDP[..19]).unwrap_err(),
            Error::Truncated
        );
        let mut v6 = UDP;
        v6[0] = 0x65;
        assert_eq!(Packet::new_checked(&v6[..]).unwrap_err(), Error::Malformed);
        let mut ihl = UDP;
        ihl[0] = 0x44;
        assert_eq!(Packet::new_checked(&ihl[..]).unwrap_err(), Error::Malformed);
        let mut long = UDP;
        long[3] = 0x40; // total length 64 > 34
        assert_eq!(
            Packet::new_checked(&long[..]).unwrap_err(),
            Error::Truncated
        );
        let mut short = UDP;
        short[3] = 0x10; // total length 16 < header
        assert_eq!(
            Packet::new_checked(&short[..]).unwrap_err(),
            Error::Malformed
        );
        let mut options = UDP;
        options[0] = 0x4f; // 60-byte header > total length 32
        assert!(Packet::new_checked(&options[..]).is_err());
        let mut sum = UDP;
        sum[11] ^= 1;
        assert!(!Packet::new_checked(&sum[..]).unwrap().verify_checksum());
    }

    #[test]
    fn fragments_hash_without_ports() {
        let mut frag = UDP;
        frag[6] = 0x20; // more fragments
        let mut p = Packet::new_checked(&mut frag[..]).unwrap();
        p.fill_checksum();
        assert!(p.is_fragment());
        assert_eq!(p.ports(), (0, 0));
    }

    #[test]
    fn never_panics_on_noise() {
        let mut seed = 0x1234_5678u32;
        for len in 0..80 {
            for _ in 0..200 {
                let buf: Vec<u8> = (0..len)
                    .map(|_| {
                        seed ^= seed << 13;
                        seed ^= seed >> 17;
                        seed ^= seed << 5;
                        seed as u8
                    })
                    .collect();
                let mut buf = buf;
                if let Some(b) = buf.first_mut() {
                    *b = 0x40 | (*b & 0x0f);
                }
                if let Ok(mut p) = Packet::new_checked(&mut buf[..]) {
                    let _ = (p.verify_checksum(), p.ports(), p.payload().len());
                    p.decrement_ttl();
                }
            }
        }
    }
}
