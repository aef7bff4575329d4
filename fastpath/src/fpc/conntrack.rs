//! Conntrack entries (ctnetlink), as a fast path needs them to keep
//! flows and their NAT.
//!
//! Invariants:
//! * The key is the kernel's identity of an entry: its original tuple in
//!   its zone.
//! * Only what the kernel announces is kept: tuples (the reply tuple says
//!   the NAT), the status bits that change with an event (expected, seen
//!   reply, assured, confirmed, the NAT bits), mark and zone. The timeout,
//!   the counters, the TCP state and the use count change without one and
//!   are left out, so that an event-fed copy equals a fresh dump.

use std::fmt;
use std::net::IpAddr;

use super::codec::{DecodeError, Reader, Writer};

/// One direction of a flow. For ICMP, `sport` is the id and `dport` the
/// type (high byte) and code (low byte).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CtTuple {
    pub src: IpAddr,
    pub dst: IpAddr,
    /// IPPROTO_*.
    pub proto: u8,
    pub sport: u16,
    pub dport: u16,
}

/// A conntrack entry (`IPCTNL_MSG_CT_NEW`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Conntrack {
    pub orig: CtTuple,
    pub reply: CtTuple,
    pub zone: u16,
    /// IPS_* bits of [`Conntrack::STATUS_SYNCED`].
    pub status: u32,
    pub mark: u32,
}

/// The identity of a conntrack entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CtKey {
    pub orig: CtTuple,
    pub zone: u16,
}

impl Conntrack {
    /// IPS_EXPECTED, SEEN_REPLY, ASSURED, CONFIRMED, SRC_NAT, DST_NAT,
    /// SEQ_ADJUST, SRC_NAT_DONE, DST_NAT_DONE: each set with an event.
    pub const STATUS_SYNCED: u32 = 0x1ff;
    pub const IPS_SRC_NAT: u32 = 1 << 4;
    pub const IPS_DST_NAT: u32 = 1 << 5;

    pub fn key(&self) -> CtKey {
        CtKey {
            orig: self.orig,
            zone: self.zone,
        }
    }

    pub(crate) fn emit(&self, w: &mut Writer<'_>) {
        for t in [&self.orig, &self.reply] {
            w.ip(t.src);
            w.ip(t.dst);
            w.u8(t.proto);
            w.u16(t.sport);
            w.u16(t.dport);
        }
        w.u16(self.zone);
        w.u32(self.status);
        w.u32(self.mark);
    }

    pub(crate) fn parse(r: &mut Reader<'_>) -> Result<Conntrack, DecodeError> {
        let mut tuple = || -> Result<CtTuple, DecodeError> {
            Ok(CtTuple {
                src: r.ip()?,
                dst: r.ip()?,
                proto: r.u8()?,
                sport: r.u16()?,
                dport: r.u16()?,
            })
        };
        let orig = tuple()?;
        let reply = tuple()?;
        Ok(Conntrack {
            orig,
            reply,
            zone: r.u16()?,
            status: r.u32()?,
            mark: r.u32()?,
        })
    }
}

impl fmt::Display for CtTuple {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "src={} dst={} sport={} dport={}",
            self.src, self.dst, self.sport, self.dport
        )
    }
}

impl fmt::Display for Conntrack {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "conntrack proto {} {} {} zone {} status {:#x} mark {:#x}",
            self.orig.proto, self.orig, self.reply, self.zone, self.status, self.mark
        )
    }
}
