//! NETLINK_AUDIT messages: the records the kernel multicasts to
//! AUDIT_NLGRP_READLOG readers (cmgrd follows `AUDIT_NETFILTER_CFG`, which
//! x_tables logs on every table registration, replacement and removal),
//! and the `AUDIT_GET` status request and reply.
//!
//! Invariants:
//! * No I/O, no logging, no panics; integers are in host order.
//! * A record says which table of which family changed, never in which
//!   network namespace: cmgrd re-reads its own namespace's tables on each.
//! * cmgrd only reads the audit configuration (AUDIT_GET), never sets it.

use super::wire::{NlMsg, NLMSG_HDRLEN, NLM_F_REQUEST};

/// The netlink protocol (linux/netlink.h).
pub const NETLINK_AUDIT: libc::c_int = 9;
/// The multicast group of record readers (needs CAP_AUDIT_READ).
pub const AUDIT_NLGRP_READLOG: u32 = 1;
pub const AUDIT_GET: u16 = 1000;
pub const AUDIT_NETFILTER_CFG: u16 = 1325;

/// `op=` of the records x_tables logs (nf_tables logs `nft_*` ops, which
/// cmgrd follows through nfnetlink instead).
const XT_OPS: [&str; 3] = ["xt_register", "xt_replace", "xt_unregister"];

/// The name `show netlink` prints: the seed's `AUDIT_NETFILTER_CFG`, and
/// `AUDIT_[n]` for the rest.
pub fn type_name(kind: u16) -> String {
    match kind {
        AUDIT_NETFILTER_CFG => "AUDIT_NETFILTER_CFG".to_owned(),
        _ => format!("AUDIT_[{kind}]"),
    }
}

/// What one `AUDIT_NETFILTER_CFG` record says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetfilterCfg {
    pub table: String,
    /// NFPROTO_* (2 IPv4, 10 IPv6, 3 ARP, 7 bridge).
    pub family: u8,
    pub op: String,
}

impl NetfilterCfg {
    /// Whether this is an x_tables change (not nf_tables').
    pub fn is_xtables(&self) -> bool {
        XT_OPS.contains(&self.op.as_str())
    }
}

/// Parses an `AUDIT_NETFILTER_CFG` record's text, `audit(<time>:<serial>):
/// table=filter family=2 entries=13 op=xt_replace pid=... comm="..."`.
/// None for another type or a record without table, family and op.
pub fn netfilter_cfg(msg: &NlMsg<'_>) -> Option<NetfilterCfg> {
    if msg.kind != AUDIT_NETFILTER_CFG {
        return None;
    }
    let text = std::str::from_utf8(msg.payload).ok()?;
    let (_, fields) = text.split_once("): ")?;
    let field = |name: &str| {
        fields
            .split(' ')
            .find_map(|w| w.strip_prefix(name)?.strip_prefix('='))
    };
    Some(NetfilterCfg {
        table: field("table")?.to_owned(),
        family: field("family")?.parse().ok()?,
        op: field("op")?.to_owned(),
    })
}

/// An `AUDIT_GET` request.
pub fn status_request(seq: u32) -> Vec<u8> {
    let mut m = Vec::with_capacity(NLMSG_HDRLEN);
    m.extend_from_slice(&(NLMSG_HDRLEN as u32).to_ne_bytes());
    m.extend_from_slice(&AUDIT_GET.to_ne_bytes());
    m.extend_from_slice(&NLM_F_REQUEST.to_ne_bytes());
    m.extend_from_slice(&seq.to_ne_bytes());
    m.extend_from_slice(&0u32.to_ne_bytes());
    m
}

/// `audit_status.enabled` of an `AUDIT_GET` reply: whether the kernel
/// emits records (1 on, 2 on and locked). None for a reply too short.
pub fn status_enabled(payload: &[u8]) -> Option<bool> {
    let raw = payload.get(4..8)?;
    Some(u32::from_ne_bytes([raw[0], raw[1], raw[2], raw[3]]) != 0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::netlink::Messages;

    /// Datagrams captured on this kernel: the record `iptables-legacy -A
    /// INPUT -s 10.9.9.9 -j ACCEPT` caused in a namespace (on the init
    /// namespace's READLOG group), the end-of-event record after it, and
    /// AUDIT_GET replies with audit on and off.
    const NETFILTER_CFG: &[u8] = include_bytes!("fixtures/audit-netfilter-cfg.bin");
    const EOE: &[u8] = include_bytes!("fixtures/audit-eoe.bin");
    const STATUS_ON: &[u8] = include_bytes!("fixtures/audit-status-enabled.bin");
    const STATUS_OFF: &[u8] = include_bytes!("fixtures/audit-status-disabled.bin");

    fn one(buf: &[u8]) -> NlMsg<'_> {
        let mut it = Messages::new(buf);
        let m = it.next().unwrap().unwrap();
        assert!(it.next().is_none());
        m
    }

    #[test]
    fn an_xt_replace_record() {
        // The kernel does not pad records to NLMSG_ALIGN.
        assert_eq!(NETFILTER_CFG.len() % 4, 1);
        let m = one(NETFILTER_CFG);
        assert_eq!(type_name(m.kind), "AUDIT_NETFILTER_CFG");
        let cfg = netfilter_cfg(&m).unwrap();
        assert_eq!(
            cfg,
            NetfilterCfg {
                table: "filter".into(),
                family: 2,
                op: "xt_replace".into()
            }
        );
        assert!(cfg.is_xtables());
        let eoe = one(EOE);
        assert_eq!(type_name(eoe.kind), "AUDIT_[1320]");
        assert_eq!(netfilter_cfg(&eoe), None);
    }

    #[test]
    fn nft_records_are_not_xtables() {
        let text = b"audit(1796192016.062:6): table=zz:2 family=2 entries=1 op=nft_register_table pid=1 comm=\"nft\"";
        let m = NlMsg {
            kind: AUDIT_NETFILTER_CFG,
            flags: 0,
            seq: 0,
            pid: 0,
            payload: text,
        };
        assert!(!netfilter_cfg(&m).unwrap().is_xtables());
    }

    #[test]
    fn status_replies() {
        let on = one(STATUS_ON);
        assert_eq!(on.kind, AUDIT_GET);
        assert_eq!(status_enabled(on.payload), Some(true));
        assert_eq!(status_enabled(one(STATUS_OFF).payload), Some(false));
        assert_eq!(status_enabled(&on.payload[..6]), None);
        // The reply answers the request's type and sequence number.
        let req = status_request(7);
        assert_eq!(req.len(), 16);
        assert_eq!(&req[..4], &16u32.to_ne_bytes());
        assert_eq!(&req[4..6], &STATUS_ON[4..6]);
        assert_eq!(&req[8..12], &STATUS_ON[8..12]);
    }

    #[test]
    fn truncations_and_mutations_never_panic() {
        for fixture in [NETFILTER_CFG, EOE, STATUS_ON] {
            for len in 0..=fixture.len() {
                for m in Messages::new(&fixture[..len]).flatten() {
                    let _ = netfilter_cfg(&m);
                    let _ = status_enabled(m.payload);
                }
            }
            for at in 0..fixture.len() {
                for v in [0u8, b' ', b'=', b')', 0xff] {
                    let mut b = fixture.to_vec();
                    b[at] = v;
                    for m in Messages::new(&b).flatten() {
                        let _ = netfilter_cfg(&m);
                        let _ = status_enabled(m.payload);
                    }
                }
            }
        }
    }
}
