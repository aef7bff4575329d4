//! Conntrack entries (ctnetlink), as a fast path needs them to keep
//! flows and their NAT.
//!
//! Invariants:
//! * The key is the kernel's identity of an entry: its original tuple in
//!   its zone.
//! * Only what the kernel announces is kept: tuples (the reply tuple says
//!   the NAT), the status bits that change with an event (expected, seen
//!   reply, assured, confirmed, the NAT bits), mark, zone, the NAT
//!   sequence adjustments a helper made (FTP), and the timeout as the
//!   latest event or dump announced it. The counters, the TCP state and
//!   the use count change without an event and are left out.
//! * The timeout is the announced value, in seconds, not a deadline: it
//!   counts down in Linux without events (and Linux's own packets push it
//!   back silently), so a fresh dump differs from an event-fed copy only
//!   there, and the equivalence check leaves it out. fpd does not age
//!   entries itself: Linux does and announces their destruction; the
//!   announced value is what cmgrd sets again when fpd reports the entry
//!   used (hit flags), the timeout Linux itself last gave the entry.

use std::fmt;
use std::net::IpAddr;

use crate::codec::{DecodeError, Reader, Writer};

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
    /// Seconds left, as last announced (CTA_TIMEOUT).
    pub timeout: u32,
    /// The TCP sequence adjustments of each direction (original, reply)
    /// after a NAT helper resized the payload (CTA_SEQ_ADJ_ORIG/_REPLY).
    pub seq_adj: [Option<SeqAdj>; 2],
}

/// A TCP sequence adjustment (`struct nf_ct_seqadj`): packets whose
/// sequence number is after `correction_pos` are shifted by
/// `offset_after`, earlier ones by `offset_before`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SeqAdj {
    pub correction_pos: u32,
    pub offset_before: i32,
    pub offset_after: i32,
}

impl CtTuple {
    pub(crate) fn emit(&self, w: &mut Writer<'_>) {
        w.ip(self.src);
        w.ip(self.dst);
        w.u8(self.proto);
        w.u16(self.sport);
        w.u16(self.dport);
    }

    pub(crate) fn parse(r: &mut Reader<'_>) -> Result<CtTuple, DecodeError> {
        Ok(CtTuple {
            src: r.ip()?,
            dst: r.ip()?,
            proto: r.u8()?,
            sport: r.u16()?,
            dport: r.u16()?,
        })
    }
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
    /// A NAT helper resized a payload: [`Conntrack::seq_adj`] applies.
    pub const IPS_SEQ_ADJUST: u32 = 1 << 6;

    pub fn key(&self) -> CtKey {
        CtKey {
            orig: self.orig,
            zone: self.zone,
        }
    }

    pub(crate) fn emit(&self, w: &mut Writer<'_>) {
        self.orig.emit(w);
        self.reply.emit(w);
        w.u16(self.zone);
        w.u32(self.status);
        w.u32(self.mark);
        w.u32(self.timeout);
        for adj in &self.seq_adj {
            w.bool(adj.is_some());
            if let Some(a) = adj {
                w.u32(a.correction_pos);
                w.i32(a.offset_before);
                w.i32(a.offset_after);
            }
        }
    }

    pub(crate) fn parse(r: &mut Reader<'_>) -> Result<Conntrack, DecodeError> {
        let orig = CtTuple::parse(r)?;
        let reply = CtTuple::parse(r)?;
        let (zone, status, mark, timeout) = (r.u16()?, r.u32()?, r.u32()?, r.u32()?);
        let mut seq_adj = [None; 2];
        for adj in &mut seq_adj {
            if r.bool()? {
                *adj = Some(SeqAdj {
                    correction_pos: r.u32()?,
                    offset_before: r.i32()?,
                    offset_after: r.i32()?,
                });
            }
        }
        Ok(Conntrack {
            orig,
            reply,
            zone,
            status,
            mark,
            timeout,
            seq_adj,
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
            "conntrack proto {} {} {} zone {} status {:#x} mark {:#x} timeout {}",
            self.orig.proto, self.orig, self.reply, self.zone, self.status, self.mark, self.timeout
        )?;
        for (dir, adj) in ["orig", "reply"].iter().zip(&self.seq_adj) {
            if let Some(a) = adj {
                write!(
                    f,
                    " seq-adj-{dir} pos {} before {} after {}",
                    a.correction_pos, a.offset_before, a.offset_after
                )?;
            }
        }
        Ok(())
    }
}
