//! Multicast routes (MFC entries), IPv4 and IPv6, as `ip mroute` shows
//! them: (source, group) in a table, the incoming interface, the outgoing
//! interfaces with their TTL thresholds.
//!
//! Invariants: the key is the kernel's identity of an MFC entry, (table,
//! source, group); packet and byte counts and the last-use time change
//! without a notification and are left out.

use std::fmt;
use std::net::IpAddr;

use super::codec::{DecodeError, Reader, Writer};

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Mroute {
    pub table: u32,
    pub source: IpAddr,
    pub group: IpAddr,
    /// Ifindex of the incoming interface, 0 for none.
    pub iif: u32,
    /// (ifindex, TTL threshold) of each outgoing interface.
    pub oifs: Vec<(u32, u8)>,
}

/// The identity of an MFC entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MrouteKey {
    pub table: u32,
    pub source: IpAddr,
    pub group: IpAddr,
}

impl Mroute {
    pub fn key(&self) -> MrouteKey {
        MrouteKey {
            table: self.table,
            source: self.source,
            group: self.group,
        }
    }

    pub(crate) fn emit(&self, w: &mut Writer<'_>) {
        w.u32(self.table);
        w.ip(self.source);
        w.ip(self.group);
        w.u32(self.iif);
        w.u16(self.oifs.len() as u16);
        for (ifindex, ttl) in &self.oifs {
            w.u32(*ifindex);
            w.u8(*ttl);
        }
    }

    pub(crate) fn parse(r: &mut Reader<'_>) -> Result<Mroute, DecodeError> {
        let mut m = Mroute {
            table: r.u32()?,
            source: r.ip()?,
            group: r.ip()?,
            iif: r.u32()?,
            oifs: Vec::new(),
        };
        let n = r.u16()? as usize;
        if n > r.remaining() / 5 {
            return Err(DecodeError::BadValue {
                what: "oif count",
                value: n as u64,
            });
        }
        for _ in 0..n {
            m.oifs.push((r.u32()?, r.u8()?));
        }
        Ok(m)
    }
}

impl fmt::Display for Mroute {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "mroute table {} ({}, {}) iif #{} oifs",
            self.table, self.source, self.group, self.iif
        )?;
        for (ifindex, ttl) in &self.oifs {
            write!(f, " #{ifindex}/{ttl}")?;
        }
        Ok(())
    }
}
