//! Traffic control on the ports: the queueing disciplines Linux would put
//! a forwarded packet through (`tc qdisc`), so that fpd, which transmits
//! past them, leaves the ports that have one to Linux.
//!
//! Invariants:
//! * The key is the kernel's identity: (ifindex, handle); the ingress and
//!   clsact qdiscs have handle ffff:0000 and parent TC_H_INGRESS.
//! * Only what changes forwarding is synced: the kernel's default
//!   disciplines and plain FIFOs ([`Qdisc::is_transparent`]) are not
//!   (the kernel attaches them silently when a device comes up, and they
//!   forward in order, as fpd does, unless the port is congested).

use std::fmt;

use crate::codec::{DecodeError, Reader, Writer};

/// `TC_H_INGRESS`: the parent of the ingress and clsact qdiscs.
pub const TC_H_INGRESS: u32 = 0xffff_fff1;

/// A queueing discipline of a device.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Qdisc {
    pub ifindex: u32,
    pub handle: u32,
    /// TC_H_ROOT (0xffffffff), TC_H_INGRESS, or a parent class.
    pub parent: u32,
    /// `TCA_KIND`: "tbf", "htb", "ingress", "clsact", ...
    pub kind: String,
}

impl Qdisc {
    /// The disciplines Linux attaches by default, and plain FIFOs: a
    /// packet leaves through them as it came, in order.
    pub fn is_transparent(kind: &str) -> bool {
        matches!(
            kind,
            "noqueue" | "pfifo_fast" | "fq_codel" | "mq" | "pfifo" | "bfifo" | "noop"
        )
    }

    /// Whether it classifies received packets (filters and actions run
    /// on them before routing).
    pub fn at_ingress(&self) -> bool {
        self.parent == TC_H_INGRESS
    }

    pub(crate) fn emit(&self, w: &mut Writer<'_>) {
        w.u32(self.ifindex);
        w.u32(self.handle);
        w.u32(self.parent);
        w.str(&self.kind);
    }

    pub(crate) fn parse(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(Qdisc {
            ifindex: r.u32()?,
            handle: r.u32()?,
            parent: r.u32()?,
            kind: r.str()?,
        })
    }
}

impl fmt::Display for Qdisc {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "qdisc {} dev #{} handle {:x}:{:x} parent {:x}:{:x}",
            self.kind,
            self.ifindex,
            self.handle >> 16,
            self.handle & 0xffff,
            self.parent >> 16,
            self.parent & 0xffff
        )
    }
}
