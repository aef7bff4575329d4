//! Per-device IP settings (the kernel's netconf: `ip netconf show`), IPv4
//! and IPv6: whether a device forwards, its reverse path filter, and the
//! other values the kernel announces on RTNLGRP_IPV4_NETCONF and
//! RTNLGRP_IPV6_NETCONF. The fast path needs them to forward only what
//! Linux would forward, the same way.
//!
//! Invariants:
//! * The key is the kernel's identity: (family, ifindex), where ifindex
//!   is a device, or NETCONFA_IFINDEX_ALL (-1, `conf.all`) or
//!   NETCONFA_IFINDEX_DEFAULT (-2, `conf.default`).
//! * A field is None when the kernel does not report it for the family
//!   (IPv6 has no rp_filter) or for this kernel's configuration; the
//!   values are the sysctls' own (`net.ipv4.conf.DEV.rp_filter` 0, 1, 2).
//! * On the wire a presence byte (one bit per field, in declaration
//!   order) precedes the fields present; an unknown bit is a decode error.

use std::fmt;

use crate::codec::{DecodeError, Reader, Writer};

/// `conf.all`: the namespace-wide value (`net.ipv4.ip_forward` is
/// `conf.all.forwarding`).
pub const NETCONFA_IFINDEX_ALL: i32 = -1;
/// `conf.default`: what a new device starts with.
pub const NETCONFA_IFINDEX_DEFAULT: i32 = -2;

/// One family's settings of one device (or of `all`, `default`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct NetConf {
    /// AF_INET (2) or AF_INET6 (10).
    pub family: u8,
    /// A device, or NETCONFA_IFINDEX_ALL (-1), NETCONFA_IFINDEX_DEFAULT (-2).
    pub ifindex: i32,
    pub forwarding: Option<u32>,
    /// IPv4 only: 0 off, 1 strict, 2 loose.
    pub rp_filter: Option<u32>,
    /// How many multicast routing daemons use the device (read-only).
    pub mc_forwarding: Option<u32>,
    /// proxy_arp (IPv4), proxy_ndp (IPv6).
    pub proxy_neigh: Option<u32>,
    pub ignore_routes_with_linkdown: Option<u32>,
}

/// The identity of a [`NetConf`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NetConfKey {
    pub family: u8,
    pub ifindex: i32,
}

impl NetConf {
    pub fn key(&self) -> NetConfKey {
        NetConfKey {
            family: self.family,
            ifindex: self.ifindex,
        }
    }

    /// What a fast path can hold: a known family, a device or `all` or
    /// `default`, and no rp_filter on IPv6 (the kernel has none there).
    pub fn is_valid(&self) -> bool {
        let family = match self.family {
            super::AF_INET => true,
            super::AF_INET6 => self.rp_filter.is_none(),
            _ => false,
        };
        family
            && (self.ifindex > 0
                || self.ifindex == NETCONFA_IFINDEX_ALL
                || self.ifindex == NETCONFA_IFINDEX_DEFAULT)
    }

    /// This object with the fields `news` carries replaced: the kernel
    /// announces a change with only the attribute that changed.
    pub fn merged(&self, news: &NetConf) -> NetConf {
        NetConf {
            family: self.family,
            ifindex: self.ifindex,
            forwarding: news.forwarding.or(self.forwarding),
            rp_filter: news.rp_filter.or(self.rp_filter),
            mc_forwarding: news.mc_forwarding.or(self.mc_forwarding),
            proxy_neigh: news.proxy_neigh.or(self.proxy_neigh),
            ignore_routes_with_linkdown: news
                .ignore_routes_with_linkdown
                .or(self.ignore_routes_with_linkdown),
        }
    }

    fn fields(&self) -> [(&'static str, Option<u32>); 5] {
        [
            ("forwarding", self.forwarding),
            ("rp_filter", self.rp_filter),
            ("mc_forwarding", self.mc_forwarding),
            ("proxy_neigh", self.proxy_neigh),
            (
                "ignore_routes_with_linkdown",
                self.ignore_routes_with_linkdown,
            ),
        ]
    }

    pub(crate) fn emit(&self, w: &mut Writer<'_>) {
        w.u8(self.family);
        w.i32(self.ifindex);
        let fields = self.fields();
        let present = fields
            .iter()
            .enumerate()
            .filter(|(_, (_, v))| v.is_some())
            .fold(0u8, |acc, (i, _)| acc | 1 << i);
        w.u8(present);
        for v in fields.iter().filter_map(|(_, v)| *v) {
            w.u32(v);
        }
    }

    pub(crate) fn parse(r: &mut Reader<'_>) -> Result<NetConf, DecodeError> {
        let family = r.u8()?;
        let ifindex = r.i32()?;
        let present = r.u8()?;
        if present >> 5 != 0 {
            return Err(DecodeError::BadValue {
                what: "netconf fields",
                value: present.into(),
            });
        }
        let mut values = [None; 5];
        for (i, v) in values.iter_mut().enumerate() {
            if present & 1 << i != 0 {
                *v = Some(r.u32()?);
            }
        }
        let [forwarding, rp_filter, mc_forwarding, proxy_neigh, ignore_routes_with_linkdown] =
            values;
        Ok(NetConf {
            family,
            ifindex,
            forwarding,
            rp_filter,
            mc_forwarding,
            proxy_neigh,
            ignore_routes_with_linkdown,
        })
    }
}

impl fmt::Display for NetConf {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let family = match self.family {
            super::AF_INET => "ipv4".to_owned(),
            super::AF_INET6 => "ipv6".to_owned(),
            other => format!("family {other}"),
        };
        write!(f, "netconf {family} ")?;
        match self.ifindex {
            NETCONFA_IFINDEX_ALL => write!(f, "all")?,
            NETCONFA_IFINDEX_DEFAULT => write!(f, "default")?,
            i => write!(f, "dev #{i}")?,
        }
        for (name, v) in self.fields() {
            if let Some(v) = v {
                write!(f, " {name} {v}")?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{AF_INET, AF_INET6};

    fn conf(family: u8, ifindex: i32) -> NetConf {
        NetConf {
            family,
            ifindex,
            forwarding: Some(1),
            rp_filter: (family == AF_INET).then_some(2),
            mc_forwarding: Some(0),
            proxy_neigh: None,
            ignore_routes_with_linkdown: Some(0),
        }
    }

    #[test]
    fn round_trips_every_presence() {
        for present in 0u8..32 {
            let mut c = conf(AF_INET, 3);
            let fields = [
                &mut c.forwarding,
                &mut c.rp_filter,
                &mut c.mc_forwarding,
                &mut c.proxy_neigh,
                &mut c.ignore_routes_with_linkdown,
            ];
            for (i, f) in fields.into_iter().enumerate() {
                *f = (present & 1 << i != 0).then_some(i as u32 + 7);
            }
            let mut buf = Vec::new();
            c.emit(&mut Writer::new(&mut buf));
            let mut r = Reader::new(&buf);
            assert_eq!(NetConf::parse(&mut r).unwrap(), c);
            assert!(r.finish().is_ok());
            for cut in 0..buf.len() {
                assert!(NetConf::parse(&mut Reader::new(&buf[..cut])).is_err());
            }
        }
    }

    #[test]
    fn unknown_presence_bits_are_refused() {
        let mut buf = Vec::new();
        conf(AF_INET, 3).emit(&mut Writer::new(&mut buf));
        buf[5] |= 0x20;
        assert!(matches!(
            NetConf::parse(&mut Reader::new(&buf)),
            Err(DecodeError::BadValue { .. })
        ));
    }

    #[test]
    fn news_replace_only_what_they_carry() {
        let cached = conf(AF_INET, 3);
        let news = NetConf {
            rp_filter: Some(0),
            forwarding: None,
            mc_forwarding: None,
            ignore_routes_with_linkdown: None,
            ..cached.clone()
        };
        let merged = cached.merged(&news);
        assert_eq!(merged.rp_filter, Some(0));
        assert_eq!(merged.forwarding, Some(1), "kept");
        assert_eq!(merged.ignore_routes_with_linkdown, Some(0), "kept");
    }

    #[test]
    fn validity_and_display() {
        assert!(conf(AF_INET, NETCONFA_IFINDEX_ALL).is_valid());
        assert!(conf(AF_INET6, NETCONFA_IFINDEX_DEFAULT).is_valid());
        assert!(!conf(AF_INET, 0).is_valid());
        assert!(!conf(AF_INET, -3).is_valid());
        assert!(!conf(7, 1).is_valid());
        let mut v6 = conf(AF_INET6, 4);
        v6.rp_filter = Some(1);
        assert!(!v6.is_valid(), "IPv6 has no rp_filter");
        assert_eq!(
            conf(AF_INET, 3).to_string(),
            "netconf ipv4 dev #3 forwarding 1 rp_filter 2 mc_forwarding 0 \
             ignore_routes_with_linkdown 0"
        );
        assert_eq!(
            conf(AF_INET6, NETCONFA_IFINDEX_ALL).to_string(),
            "netconf ipv6 all forwarding 1 mc_forwarding 0 ignore_routes_with_linkdown 0"
        );
        assert!(conf(AF_INET, NETCONFA_IFINDEX_DEFAULT)
            .to_string()
            .starts_with("netconf ipv4 default forwarding 1"));
    }
}
