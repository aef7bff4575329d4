//! Multicast routes (MFC entries), IPv4 and IPv6, as `ip mroute` shows
//! them: (source, group) in a table, the incoming interface, the outgoing
//! interfaces with their TTL thresholds.
//!
//! Invariants: the key is the kernel's identity of an MFC entry, (table,
//! source, group); packet and byte counts and the last-use time change
//! without a notification and are left out.

use std::fmt;
use std::net::IpAddr;

use crate::codec::{DecodeError, Reader, Writer};

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

/// A multicast virtual interface: an IPv4 VIF or an IPv6 MIF of one
/// multicast routing table, as `/proc/net/ip_mr_vif` and
/// `/proc/net/ip6_mr_vif` list them. MFC entries name these by index.
///
/// Invariants: the key is (family, table, vif index), the kernel's
/// identity; byte and packet counters move with traffic and are left out,
/// and so are the threshold and rate limit, which the kernel takes in
/// MRT_ADD_VIF but reports nowhere (neither the IPMR link dump nor /proc),
/// so no copy of them could be checked against Linux. Local and remote
/// addresses exist only for IPv4.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct MrouteVif {
    /// AF_INET (a VIF) or AF_INET6 (a MIF).
    pub family: u8,
    pub table: u32,
    /// The VIF or MIF index (below MAXVIFS, MAXMIFS: 32).
    pub vif: u16,
    /// The device it sends and receives on (the pimreg device of a
    /// register VIF).
    pub ifindex: u32,
    /// VIFF_TUNNEL 0x1, VIFF_REGISTER 0x4, VIFF_USE_IFINDEX 0x8 for IPv4;
    /// MIFF_REGISTER 0x1 for IPv6.
    pub flags: u16,
    /// The local address of an IPv4 VIF set up by address (not by ifindex).
    pub local: Option<IpAddr>,
    /// The far end of an IPv4 tunnel VIF.
    pub remote: Option<IpAddr>,
}

/// MAXVIFS and MAXMIFS: a table has at most 32 virtual interfaces.
pub const MAXVIFS: u16 = 32;

/// The identity of a VIF or MIF.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MrouteVifKey {
    pub family: u8,
    pub table: u32,
    pub vif: u16,
}

impl MrouteVif {
    pub fn key(&self) -> MrouteVifKey {
        MrouteVifKey {
            family: self.family,
            table: self.table,
            vif: self.vif,
        }
    }

    /// What a fast path can hold: a known family, a device, an index
    /// below the kernel's 32, and IPv4 addresses on IPv4 VIFs only.
    pub fn is_valid(&self) -> bool {
        let v4 = |a: Option<IpAddr>| a.is_none_or(|a| a.is_ipv4());
        let addrs = match self.family {
            super::AF_INET => v4(self.local) && v4(self.remote),
            super::AF_INET6 => self.local.is_none() && self.remote.is_none(),
            _ => false,
        };
        addrs && self.ifindex != 0 && self.vif < MAXVIFS
    }

    pub(crate) fn emit(&self, w: &mut Writer<'_>) {
        w.u8(self.family);
        w.u32(self.table);
        w.u16(self.vif);
        w.u32(self.ifindex);
        w.u16(self.flags);
        w.opt_ip(self.local);
        w.opt_ip(self.remote);
    }

    pub(crate) fn parse(r: &mut Reader<'_>) -> Result<MrouteVif, DecodeError> {
        Ok(MrouteVif {
            family: r.u8()?,
            table: r.u32()?,
            vif: r.u16()?,
            ifindex: r.u32()?,
            flags: r.u16()?,
            local: r.opt_ip()?,
            remote: r.opt_ip()?,
        })
    }
}

impl fmt::Display for MrouteVif {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // IPv4 calls them VIFs, IPv6 MIFs.
        let family = if self.family == super::AF_INET6 {
            "ipv6 mif"
        } else {
            "ipv4"
        };
        write!(
            f,
            "mroute vif {} table {} {family} dev #{} flags {:#x}",
            self.vif, self.table, self.ifindex, self.flags
        )?;
        if let Some(a) = self.local {
            write!(f, " local {a}")?;
        }
        if let Some(a) = self.remote {
            write!(f, " remote {a}")?;
        }
        Ok(())
    }
}
