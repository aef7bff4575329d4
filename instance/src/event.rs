//! Everything cmgrd's processor reacts to, from the listeners, the blade
//! tasks, the console and the bus: one queue, one consumer.

use crossbeam_channel::Sender;

use crate::blade::BladeEvent;

/// Everything the processor reacts to.
pub enum Event {
    /// One or more datagrams from the listener.
    Netlink(Vec<u8>),
    /// One or more datagrams from the XFRM listener.
    Xfrm(Vec<u8>),
    /// One or more datagrams from the ctnetlink listener.
    Netfilter(Vec<u8>),
    /// One or more datagrams (audit records) from the audit listener.
    Audit(Vec<u8>),
    /// The audit listener could not go on: legacy tables are polled.
    AuditFailed(String),
    /// The listener overran, and has reopened its socket.
    Overrun,
    ListenerFailed(String),
    Blade(BladeEvent),
    Console {
        line: String,
        reply: Sender<String>,
    },
    /// `netlink replay [xfrm] FILE`, the file read by the console thread.
    Replay {
        xfrm: bool,
        bytes: Vec<u8>,
        reply: Sender<String>,
    },
    Shutdown,
}
