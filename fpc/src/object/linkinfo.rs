//! What a fast path needs of each kind of link beyond its common fields
//! (`IFLA_INFO_DATA`): VLAN, MACVLAN, VXLAN, bonding, GRE/GRETAP, IP
//! tunnels, VTI, bridge.

use std::fmt;
use std::net::IpAddr;

use crate::codec::{DecodeError, Reader, Writer};

#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub enum LinkInfo {
    /// A link with nothing kind-specific to sync (veth, tap, loopback, ...).
    #[default]
    None,
    /// 802.1Q or 802.1ad sub-interface; its parent is `Link::link`.
    Vlan {
        id: u16,
        /// 0x8100 (802.1Q) or 0x88a8 (802.1ad).
        protocol: u16,
    },
    /// Its parent is `Link::link`.
    Macvlan {
        /// MACVLAN_MODE_* (1 private, 2 vepa, 4 bridge, 8 passthru, 16 source).
        mode: u32,
    },
    Vxlan {
        vni: u32,
        local: Option<IpAddr>,
        /// The remote (unicast) or the group (multicast).
        remote: Option<IpAddr>,
        port: u16,
        learning: bool,
        ttl: u8,
        /// The underlay device, 0 for none.
        dev: u32,
    },
    Bond {
        /// BOND_MODE_* (0 balance-rr, 1 active-backup, 4 802.3ad, ...).
        mode: u8,
        /// The active member's ifindex, 0 for none.
        active: u32,
        miimon: u32,
    },
    /// gre, gretap, ip6gre, ip6gretap.
    Gre {
        ikey: u32,
        okey: u32,
        iflags: u16,
        oflags: u16,
        local: Option<IpAddr>,
        remote: Option<IpAddr>,
        ttl: u8,
        dev: u32,
    },
    /// ipip, sit, ip6tnl.
    Tunnel {
        local: Option<IpAddr>,
        remote: Option<IpAddr>,
        ttl: u8,
        /// The carried protocol (IPPROTO_*), 0 for the kind's default.
        proto: u8,
        dev: u32,
    },
    /// vti, vti6.
    Vti {
        ikey: u32,
        okey: u32,
        local: Option<IpAddr>,
        remote: Option<IpAddr>,
        dev: u32,
    },
    Bridge {
        vlan_filtering: bool,
        /// The VLAN protocol filtered on (0x8100 or 0x88a8).
        vlan_protocol: u16,
        default_pvid: u16,
    },
}

impl LinkInfo {
    pub(crate) fn emit(&self, w: &mut Writer<'_>) {
        match self {
            LinkInfo::None => w.u8(0),
            LinkInfo::Vlan { id, protocol } => {
                w.u8(1);
                w.u16(*id);
                w.u16(*protocol);
            }
            LinkInfo::Macvlan { mode } => {
                w.u8(2);
                w.u32(*mode);
            }
            LinkInfo::Vxlan {
                vni,
                local,
                remote,
                port,
                learning,
                ttl,
                dev,
            } => {
                w.u8(3);
                w.u32(*vni);
                w.opt_ip(*local);
                w.opt_ip(*remote);
                w.u16(*port);
                w.bool(*learning);
                w.u8(*ttl);
                w.u32(*dev);
            }
            LinkInfo::Bond {
                mode,
                active,
                miimon,
            } => {
                w.u8(4);
                w.u8(*mode);
                w.u32(*active);
                w.u32(*miimon);
            }
            LinkInfo::Gre {
                ikey,
                okey,
                iflags,
                oflags,
                local,
                remote,
                ttl,
                dev,
            } => {
                w.u8(5);
                w.u32(*ikey);
                w.u32(*okey);
                w.u16(*iflags);
                w.u16(*oflags);
                w.opt_ip(*local);
                w.opt_ip(*remote);
                w.u8(*ttl);
                w.u32(*dev);
            }
            LinkInfo::Tunnel {
                local,
                remote,
                ttl,
                proto,
                dev,
            } => {
                w.u8(6);
                w.opt_ip(*local);
                w.opt_ip(*remote);
                w.u8(*ttl);
                w.u8(*proto);
                w.u32(*dev);
            }
            LinkInfo::Vti {
                ikey,
                okey,
                local,
                remote,
                dev,
            } => {
                w.u8(7);
                w.u32(*ikey);
                w.u32(*okey);
                w.opt_ip(*local);
                w.opt_ip(*remote);
                w.u32(*dev);
            }
            LinkInfo::Bridge {
                vlan_filtering,
                vlan_protocol,
                default_pvid,
            } => {
                w.u8(8);
                w.bool(*vlan_filtering);
                w.u16(*vlan_protocol);
                w.u16(*default_pvid);
            }
        }
    }

    pub(crate) fn parse(r: &mut Reader<'_>) -> Result<LinkInfo, DecodeError> {
        Ok(match r.u8()? {
            0 => LinkInfo::None,
            1 => LinkInfo::Vlan {
                id: r.u16()?,
                protocol: r.u16()?,
            },
            2 => LinkInfo::Macvlan { mode: r.u32()? },
            3 => LinkInfo::Vxlan {
                vni: r.u32()?,
                local: r.opt_ip()?,
                remote: r.opt_ip()?,
                port: r.u16()?,
                learning: r.bool()?,
                ttl: r.u8()?,
                dev: r.u32()?,
            },
            4 => LinkInfo::Bond {
                mode: r.u8()?,
                active: r.u32()?,
                miimon: r.u32()?,
            },
            5 => LinkInfo::Gre {
                ikey: r.u32()?,
                okey: r.u32()?,
                iflags: r.u16()?,
                oflags: r.u16()?,
                local: r.opt_ip()?,
                remote: r.opt_ip()?,
                ttl: r.u8()?,
                dev: r.u32()?,
            },
            6 => LinkInfo::Tunnel {
                local: r.opt_ip()?,
                remote: r.opt_ip()?,
                ttl: r.u8()?,
                proto: r.u8()?,
                dev: r.u32()?,
            },
            7 => LinkInfo::Vti {
                ikey: r.u32()?,
                okey: r.u32()?,
                local: r.opt_ip()?,
                remote: r.opt_ip()?,
                dev: r.u32()?,
            },
            8 => LinkInfo::Bridge {
                vlan_filtering: r.bool()?,
                vlan_protocol: r.u16()?,
                default_pvid: r.u16()?,
            },
            v => {
                return Err(DecodeError::BadValue {
                    what: "link info",
                    value: v.into(),
                })
            }
        })
    }
}

fn ends(
    f: &mut fmt::Formatter<'_>,
    local: &Option<IpAddr>,
    remote: &Option<IpAddr>,
) -> fmt::Result {
    if let Some(l) = local {
        write!(f, " local {l}")?;
    }
    if let Some(r) = remote {
        write!(f, " remote {r}")?;
    }
    Ok(())
}

impl fmt::Display for LinkInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LinkInfo::None => Ok(()),
            LinkInfo::Vlan { id, protocol } => write!(f, " vlan id {id} protocol {protocol:#06x}"),
            LinkInfo::Macvlan { mode } => write!(f, " macvlan mode {mode}"),
            LinkInfo::Vxlan {
                vni,
                local,
                remote,
                port,
                learning,
                ttl,
                dev,
            } => {
                write!(f, " vxlan vni {vni}")?;
                ends(f, local, remote)?;
                write!(f, " port {port} learning {learning} ttl {ttl} dev #{dev}")
            }
            LinkInfo::Bond {
                mode,
                active,
                miimon,
            } => write!(f, " bond mode {mode} active #{active} miimon {miimon}"),
            LinkInfo::Gre {
                ikey,
                okey,
                iflags,
                oflags,
                local,
                remote,
                ttl,
                dev,
            } => {
                write!(
                    f,
                    " gre ikey {ikey} okey {okey} iflags {iflags:#x} oflags {oflags:#x}"
                )?;
                ends(f, local, remote)?;
                write!(f, " ttl {ttl} dev #{dev}")
            }
            LinkInfo::Tunnel {
                local,
                remote,
                ttl,
                proto,
                dev,
            } => {
                f.write_str(" tunnel")?;
                ends(f, local, remote)?;
                write!(f, " ttl {ttl} proto {proto} dev #{dev}")
            }
            LinkInfo::Vti {
                ikey,
                okey,
                local,
                remote,
                dev,
            } => {
                write!(f, " vti ikey {ikey} okey {okey}")?;
                ends(f, local, remote)?;
                write!(f, " dev #{dev}")
            }
            LinkInfo::Bridge {
                vlan_filtering,
                vlan_protocol,
                default_pvid,
            } => write!(
                f,
                " bridge vlan_filtering {} vlan_protocol {vlan_protocol:#06x} pvid {default_pvid}",
                *vlan_filtering as u8
            ),
        }
    }
}
