//! Byte-level reader and writer for FPC bodies.
//!
//! Invariant: the reader never panics and never reads past its slice; every
//! length it is given comes from the peer and is checked before use. All
//! integers are big-endian (network order).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// Why a body could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("truncated: needed {needed} bytes at offset {offset}, {available} left")]
    Truncated {
        offset: usize,
        needed: usize,
        available: usize,
    },
    #[error("bad {what} value {value}")]
    BadValue { what: &'static str, value: u64 },
    #[error("{0} trailing bytes")]
    Trailing(usize),
    #[error("string is not UTF-8")]
    BadUtf8,
}

/// A bounds-checked cursor over a received body.
pub struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    pub fn new(buf: &'a [u8]) -> Self {
        Reader { buf, pos: 0 }
    }

    pub fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }

    pub fn bytes(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        if self.remaining() < n {
            return Err(DecodeError::Truncated {
                offset: self.pos,
                needed: n,
                available: self.remaining(),
            });
        }
        let out = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(out)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], DecodeError> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.bytes(N)?);
        Ok(out)
    }

    pub fn u8(&mut self) -> Result<u8, DecodeError> {
        Ok(self.array::<1>()?[0])
    }
    pub fn u16(&mut self) -> Result<u16, DecodeError> {
        Ok(u16::from_be_bytes(self.array()?))
    }
    pub fn u32(&mut self) -> Result<u32, DecodeError> {
        Ok(u32::from_be_bytes(self.array()?))
    }
    pub fn i32(&mut self) -> Result<i32, DecodeError> {
        Ok(i32::from_be_bytes(self.array()?))
    }
    pub fn u64(&mut self) -> Result<u64, DecodeError> {
        Ok(u64::from_be_bytes(self.array()?))
    }

    pub fn bool(&mut self) -> Result<bool, DecodeError> {
        match self.u8()? {
            0 => Ok(false),
            1 => Ok(true),
            v => Err(DecodeError::BadValue {
                what: "bool",
                value: v.into(),
            }),
        }
    }

    /// A string with a u16 length prefix.
    pub fn str(&mut self) -> Result<String, DecodeError> {
        let len = self.u16()? as usize;
        let raw = self.bytes(len)?;
        std::str::from_utf8(raw)
            .map(str::to_owned)
            .map_err(|_| DecodeError::BadUtf8)
    }

    /// Bytes with a u8 length prefix (link-layer addresses).
    pub fn short_bytes(&mut self) -> Result<Vec<u8>, DecodeError> {
        let len = self.u8()? as usize;
        Ok(self.bytes(len)?.to_vec())
    }

    /// An optional address: a length byte (0, 4 or 16) then the address.
    pub fn opt_ip(&mut self) -> Result<Option<IpAddr>, DecodeError> {
        match self.u8()? {
            0 => Ok(None),
            4 => Ok(Some(IpAddr::V4(Ipv4Addr::from(self.array::<4>()?)))),
            16 => Ok(Some(IpAddr::V6(Ipv6Addr::from(self.array::<16>()?)))),
            v => Err(DecodeError::BadValue {
                what: "address length",
                value: v.into(),
            }),
        }
    }

    pub fn ip(&mut self) -> Result<IpAddr, DecodeError> {
        self.opt_ip()?.ok_or(DecodeError::BadValue {
            what: "address length",
            value: 0,
        })
    }

    /// Fails unless every byte was consumed.
    pub fn finish(&self) -> Result<(), DecodeError> {
        match self.remaining() {
            0 => Ok(()),
            n => Err(DecodeError::Trailing(n)),
        }
    }
}

/// Appends big-endian fields to a buffer.
pub struct Writer<'a> {
    buf: &'a mut Vec<u8>,
}

impl<'a> Writer<'a> {
    pub fn new(buf: &'a mut Vec<u8>) -> Self {
        Writer { buf }
    }
    pub fn buf_mut(&mut self) -> &mut Vec<u8> {
        self.buf
    }
    pub fn u8(&mut self, v: u8) {
        self.buf.push(v);
    }
    pub fn u16(&mut self, v: u16) {
        self.buf.extend_from_slice(&v.to_be_bytes());
    }
    pub fn u32(&mut self, v: u32) {
        self.buf.extend_from_slice(&v.to_be_bytes());
    }
    pub fn i32(&mut self, v: i32) {
        self.buf.extend_from_slice(&v.to_be_bytes());
    }
    pub fn u64(&mut self, v: u64) {
        self.buf.extend_from_slice(&v.to_be_bytes());
    }
    pub fn bool(&mut self, v: bool) {
        self.u8(v as u8);
    }
    /// Strings longer than 65535 bytes are cut, on a character boundary so
    /// that what is sent stays UTF-8 (names here are short).
    pub fn str(&mut self, s: &str) {
        let mut end = s.len().min(u16::MAX as usize);
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        let raw = &s.as_bytes()[..end];
        self.u16(raw.len() as u16);
        self.buf.extend_from_slice(raw);
    }
    pub fn short_bytes(&mut self, b: &[u8]) {
        let raw = &b[..b.len().min(u8::MAX as usize)];
        self.u8(raw.len() as u8);
        self.buf.extend_from_slice(raw);
    }
    pub fn opt_ip(&mut self, ip: Option<IpAddr>) {
        match ip {
            None => self.u8(0),
            Some(IpAddr::V4(a)) => {
                self.u8(4);
                self.buf.extend_from_slice(&a.octets());
            }
            Some(IpAddr::V6(a)) => {
                self.u8(16);
                self.buf.extend_from_slice(&a.octets());
            }
        }
    }
    pub fn ip(&mut self, ip: IpAddr) {
        self.opt_ip(Some(ip));
    }
}
