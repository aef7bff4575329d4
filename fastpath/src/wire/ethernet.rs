//! Ethernet II frames (no 802.1Q tag: a tagged frame is just another
//! ethertype, which the dataplane leaves to Linux).
//!
//! ```text
//!  0          6          12         14
//!  +----------+----------+----------+---------
//!  |   dst    |   src    | ethertype| payload
//!  +----------+----------+----------+---------
//! ```

use super::Error;

pub const HEADER_LEN: usize = 14;

/// Ethertypes the dataplane tells apart.
pub mod ethertype {
    pub const IPV4: u16 = 0x0800;
    pub const ARP: u16 = 0x0806;
    pub const VLAN: u16 = 0x8100;
    pub const IPV6: u16 = 0x86dd;
}

/// A MAC address.
pub type Mac = [u8; 6];

/// Group bit: broadcast and multicast destinations.
pub fn is_multicast(mac: &Mac) -> bool {
    mac[0] & 1 != 0
}

/// A view of an Ethernet frame.
#[derive(Debug, Clone)]
pub struct Frame<T> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Frame<T> {
    /// A view of `buffer`, which must hold at least a header.
    pub fn new_checked(buffer: T) -> Result<Self, Error> {
        if buffer.as_ref().len() < HEADER_LEN {
            return Err(Error::Truncated);
        }
        Ok(Frame { buffer })
    }

    pub fn dst(&self) -> Mac {
        let b = self.buffer.as_ref();
        [b[0], b[1], b[2], b[3], b[4], b[5]]
    }

    pub fn src(&self) -> Mac {
        let b = self.buffer.as_ref();
        [b[6], b[7], b[8], b[9], b[10], b[11]]
    }

    pub fn ethertype(&self) -> u16 {
        let b = self.buffer.as_ref();
        u16::from_be_bytes([b[12], b[13]])
    }

    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[HEADER_LEN..]
    }

    pub fn into_inner(self) -> T {
        self.buffer
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Frame<T> {
    pub fn set_dst(&mut self, mac: &Mac) {
        self.buffer.as_mut()[0..6].copy_from_slice(mac);
    }

    pub fn set_ethertype(&mut self, ethertype: u16) {
        self.buffer.as_mut()[12..14].copy_from_slice(&ethertype.to_be_bytes());
    }

    pub fn set_src(&mut self, mac: &Mac) {
        self.buffer.as_mut()[6..12].copy_from_slice(mac);
    }

    pub fn payload_mut(&mut self) -> &mut [u8] {
        &mut self.buffer.as_mut()[HEADER_LEN..]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[rustfmt::skip]
    const FRAME: [u8; 16] = [
        0x02, 0, 0, 0, 0, 0x01,     // dst
        0x02, 0, 0, 0, 0, 0x02,     // src
        0x08, 0x06,                 // ARP
        0xaa, 0xbb,                 // payload
    ];

    #[test]
    fn parse() {
        let f = Frame::new_checked(&FRAME[..]).unwrap();
        assert_eq!(f.dst(), [2, 0, 0, 0, 0, 1]);
        assert_eq!(f.src(), [2, 0, 0, 0, 0, 2]);
        assert_eq!(f.ethertype(), ethertype::ARP);
        assert_eq!(f.payload(), &[0xaa, 0xbb]);
        assert!(!is_multicast(&f.dst()));
        assert!(is_multicast(&[0xff; 6]));
        assert!(is_multicast(&[0x33, 0x33, 0, 0, 0, 1]));
    }

    #[test]
    fn emit() {
        let mut buf = FRAME;
        let mut f = Frame::new_checked(&mut buf[..]).unwrap();
        f.set_dst(&[1, 2, 3, 4, 5, 6]);
        f.set_src(&[7, 8, 9, 10, 11, 12]);
        f.payload_mut()[0] = 0xcc;
        assert_eq!(&buf[..12], &[1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12]);
        assert_eq!(buf[14], 0xcc);
    }

    #[test]
    fn truncated() {
        assert_eq!(
            Frame::new_checked(&FRAME[..13]).unwrap_err(),
            Error::Truncated
        );
        assert!(Frame::new_checked(&FRAME[..14])
            .unwrap()
            .payload()
            .is_empty());
    }
}
