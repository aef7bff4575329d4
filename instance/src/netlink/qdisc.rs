//! Traffic control messages (RTM_NEWQDISC, RTM_DELQDISC on RTNLGRP_TC)
//! decoded into the ports' queueing disciplines, and their dump request.
//!
//! Invariants:
//! * No I/O, no logging; every length is checked, a malformed message is
//!   an error, never a panic.
//! * The kernel's default disciplines and plain FIFOs are not synced
//!   ([`Qdisc::is_transparent`]): a message about one is `Ignored`, in
//!   dumps as in notifications, so both sides agree whatever the kernel
//!   attaches silently when a device comes up.
//! * A device's qdiscs go with it without RTM_DELQDISC: the processor
//!   removes them with the link.

use fpc::{Object, ObjectKey, Qdisc};

use super::wire::{attrs, Event, WireError, NLMSG_HDRLEN, NLM_F_DUMP, NLM_F_REQUEST};

pub use super::wire::{RTM_DELQDISC, RTM_GETQDISC, RTM_NEWQDISC};

/// RTNLGRP_TC.
pub const RTNLGRP_TC: u32 = 4;

const TCA_KIND: u16 = 1;
/// struct tcmsg: family, 3 bytes of padding, ifindex, handle, parent, info.
const TCMSG_LEN: usize = 20;

/// Decodes one RTM_NEWQDISC or RTM_DELQDISC message.
pub fn decode(kind: u16, payload: &[u8]) -> Result<Event, WireError> {
    let Some(h) = payload.get(..TCMSG_LEN) else {
        return Err(WireError::Short(payload.len()));
    };
    let word = |at: usize| u32::from_ne_bytes([h[at], h[at + 1], h[at + 2], h[at + 3]]);
    let mut q = Qdisc {
        ifindex: word(4),
        handle: word(8),
        parent: word(12),
        kind: String::new(),
    };
    for a in attrs(&payload[TCMSG_LEN..]) {
        let (k, v) = a?;
        if k == TCA_KIND {
            let raw = v.split(|b| *b == 0).next().unwrap_or_default();
            q.kind = String::from_utf8_lossy(raw).into_owned();
        }
    }
    if q.ifindex == 0 || Qdisc::is_transparent(&q.kind) {
        return Ok(Event::Ignored);
    }
    Ok(match kind {
        RTM_NEWQDISC => Event::New(Object::Qdisc(q)),
        _ => Event::Del(ObjectKey::Qdisc {
            ifindex: q.ifindex,
            handle: q.handle,
        }),
    })
}

/// A dump of every device's qdiscs.
pub fn dump_request(seq: u32) -> Vec<u8> {
    let len = NLMSG_HDRLEN + TCMSG_LEN;
    let mut buf = Vec::with_capacity(len);
    buf.extend_from_slice(&(len as u32).to_ne_bytes());
    buf.extend_from_slice(&RTM_GETQDISC.to_ne_bytes());
    buf.extend_from_slice(&(NLM_F_REQUEST | NLM_F_DUMP).to_ne_bytes());
    buf.extend_from_slice(&seq.to_ne_bytes());
    buf.extend_from_slice(&0u32.to_ne_bytes());
    buf.extend_from_slice(&[0; TCMSG_LEN]);
    buf
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::netlink::Messages;

    fn unhex(s: &str) -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    fn decode_hex(hex: &str) -> Result<Event, WireError> {
        let buf = unhex(hex);
        let m = Messages::new(&buf).next().unwrap()?;
        decode(m.kind, m.payload)
    }

    /// Captured on this kernel (Linux 6.18, `tc` in a netns, vb #2, va
    /// #3): `tc qdisc add dev vb root tbf rate 100mbit burst 64k latency
    /// 50ms` (the default noqueue deleted, the tbf added), `tc qdisc del
    /// dev vb root`, `tc qdisc add dev va ingress`, `del` of it, and `tc
    /// qdisc add dev va clsact`.
    const CAPTURED: [(&str, &str); 6] = [
        ("940000002500000006b2116b8b130000000000000200000000000000ffffffff010000000c0001006e6f71756575650005000c00000000003000070014000100000000000000000000000000000000001800030000000000000000000000000000000000000000002c00030000000000000000000000000000000000000000000000000000000000000000000000000000000000", "ignored"),
        ("bc0000002400000106b2116b8b130000000000000200000000000480ffffffff0300000008000100746266002c00020028000100000100000000000020bcbe0000000000000000000000000068890a00004001000000000005000c00000000003000070014000100000000000000000000000000000000001800030000000000000000000000000000000000000000002c00030000000000000000000000000000000000000000000000000000000000000000000000000000000000", "new qdisc tbf dev #2 handle 8004:0 parent ffff:ffff"),
        ("bc0000002500000006b2116b8c130000000000000200000000000480ffffffff0100000008000100746266002c00020028000100000100000000000020bcbe0000000000000000000000000068890a00004001000000000005000c00000000003000070014000100000000000000000000000000000000001800030000000000000000000000000000000000000000002c00030000000000000000000000000000000000000000000000000000000000000000000000000000000000", "del #2 80040000"),
        ("980000002400000100b2116b6f12000000000000030000000000fffff1ffffff010000000c000100696e6772657373000400020005000c00000000003000070014000100000000000000000000000000000000001800030000000000000000000000000000000000000000002c00030000000000000000000000000000000000000000000000000000000000000000000000000000000000", "new qdisc ingress dev #3 handle ffff:0 parent ffff:fff1"),
        ("980000002500000000b2116b6b12000000000000030000000000fffff1ffffff000000000c000100696e6772657373000400020005000c00000000003000070014000100000000000000000000000000000000001800030000000000000000000000000000000000000000002c00030000000000000000000000000000000000000000000000000000000000000000000000000000000000", "del #3 ffff0000"),
        ("980000002400000106b2116b8a13000000000000030000000000fffff1ffffff010000000b000100636c7361637400000400020005000c00000000003000070014000100000000000000000000000000000000001800030000000000000000000000000000000000000000002c00030000000000000000000000000000000000000000000000000000000000000000000000000000000000", "new qdisc clsact dev #3 handle ffff:0 parent ffff:fff1"),
    ];

    #[test]
    fn shapers_and_classifiers_are_synced_defaults_are_not() {
        for (hex, want) in CAPTURED {
            let got = match decode_hex(hex) {
                Ok(Event::New(Object::Qdisc(q))) => format!("new {q}"),
                Ok(Event::Del(ObjectKey::Qdisc { ifindex, handle })) => {
                    format!("del #{ifindex} {handle:x}")
                }
                Ok(Event::Ignored) => "ignored".into(),
                other => format!("{other:?}"),
            };
            assert_eq!(&got, want);
        }
    }

    #[test]
    fn malformed_messages_are_errors_not_panics() {
        for (hex, _) in CAPTURED {
            let m = unhex(hex);
            for cut in 0..m.len() - NLMSG_HDRLEN {
                let _ = decode(RTM_NEWQDISC, &m[NLMSG_HDRLEN..NLMSG_HDRLEN + cut]);
            }
            for at in NLMSG_HDRLEN..m.len() {
                let mut b = m[NLMSG_HDRLEN..].to_vec();
                b[at - NLMSG_HDRLEN] = 0xff;
                let _ = decode(RTM_NEWQDISC, &b);
            }
        }
    }
}
