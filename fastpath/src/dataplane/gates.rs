//! What in the synced configuration makes fpd unable to forward a family
//! exactly as Linux would, whatever the packet: IPsec policies, and Linux's
//! own settings for the input port. Such a family's packets go to Linux,
//! which applies its full semantics; fpd forwards them itself again once
//! the configuration no longer needs Linux. (Netfilter is evaluated per
//! packet: see `netfilter`.)
//!
//! The rule is conservative on purpose: a gate closed for nothing only
//! costs speed (Linux forwards), a gate open by mistake lets a packet leave
//! differently from Linux. So:
//! * any IPsec policy of direction out or fwd closes its family: forwarded
//!   packets are checked against fwd policies and looked up in out ones;
//! * where Linux forwards what fpd hands it (AF_XDP), Linux's own
//!   settings for the port a packet came in on (netconf): IPv4 is fpd's
//!   only when the port's `forwarding` is on and `rp_filter` is off for
//!   both the port and `all` (Linux applies the higher of the two), IPv6
//!   only when `all.forwarding` is on (what `ip6_forward` checks). A
//!   setting not synced yet closes the gate: Linux decides. With
//!   AF_PACKET Linux's forwarding is off by design and these do not apply.
//!
//! Invariants: built off the hot path with the view; a worker reads one
//! word per packet (its port's gate, the family's folded in).

use std::net::IpAddr;

use super::port::PortInfo;
use super::stats::Exception;
use crate::tables::Tables;
use fpc::{NetConf, NETCONFA_IFINDEX_ALL};

const AF_INET: u8 = 2;
const AF_INET6: u8 = 10;
/// XFRM_POLICY_OUT, XFRM_POLICY_FWD.
const XFRM_POLICY_OUT: u8 = 1;
const XFRM_POLICY_FWD: u8 = 2;

/// Why a family's packets must go to Linux, if they must.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Gates {
    pub v4: Option<Exception>,
    pub v6: Option<Exception>,
}

/// The gates of the packets received on each port: the family's, and the
/// port's own settings.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct PortGates {
    /// Whatever the port.
    pub family: Gates,
    /// By port index.
    pub ports: Vec<Gates>,
}

impl PortGates {
    /// `linux_forwards`: Linux forwards what fpd hands it (AF_XDP), so its
    /// netconf settings decide too.
    pub fn build(tables: &Tables, ports: &[PortInfo], linux_forwards: bool) -> PortGates {
        let family = Gates::build(tables);
        let ports = ports
            .iter()
            .map(|p| {
                let mut g = family;
                if linux_forwards {
                    g.close_by_netconf(tables, p.ifindex);
                }
                g
            })
            .collect();
        PortGates { family, ports }
    }

    /// The gate of packets received on port `index` (a port fpd does not
    /// know gets its family's).
    #[inline]
    pub fn port(&self, index: usize) -> Gates {
        self.ports.get(index).copied().unwrap_or(self.family)
    }
}

impl Gates {
    /// Closes what Linux's settings for device `ifindex` make Linux's.
    fn close_by_netconf(&mut self, tables: &Tables, ifindex: u32) {
        let find = |family: u8, ifindex: i32| -> Option<&NetConf> {
            tables
                .netconfs()
                .find(|c| c.family == family && c.ifindex == ifindex)
        };
        let dev4 = find(AF_INET, ifindex as i32);
        let all4 = find(AF_INET, NETCONFA_IFINDEX_ALL);
        if dev4.and_then(|c| c.forwarding) != Some(1) {
            self.close(true, false, Exception::Forwarding);
        }
        let rp = |c: Option<&NetConf>| c.and_then(|c| c.rp_filter);
        match (rp(dev4), rp(all4)) {
            (Some(0), Some(0)) => {}
            _ => self.close(true, false, Exception::RpFilter),
        }
        if find(AF_INET6, NETCONFA_IFINDEX_ALL).and_then(|c| c.forwarding) != Some(1) {
            self.close(false, true, Exception::Forwarding);
        }
    }

    pub fn build(tables: &Tables) -> Gates {
        let mut g = Gates::default();
        for p in tables.xfrm_policies() {
            if matches!(p.dir, XFRM_POLICY_OUT | XFRM_POLICY_FWD) {
                match p.sel.daddr {
                    IpAddr::V4(_) => g.close(true, false, Exception::Xfrm),
                    IpAddr::V6(_) => g.close(false, true, Exception::Xfrm),
                }
            }
        }
        g
    }

    /// Closes the families given, keeping the first reason found.
    fn close(&mut self, v4: bool, v6: bool, why: Exception) {
        if v4 {
            self.v4.get_or_insert(why);
        }
        if v6 {
            self.v6.get_or_insert(why);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use fpc::{NftChain, Object, Op, Selector, XfrmSp};

    fn gates(objects: Vec<Object>) -> Gates {
        let mut t = Tables::new();
        for o in objects {
            t.apply(Op::Add, o).unwrap();
        }
        Gates::build(&t)
    }

    fn policy(dir: u8, any: &str) -> Object {
        let a: IpAddr = any.parse().unwrap();
        Object::XfrmSp(XfrmSp {
            sel: Selector {
                daddr: a,
                saddr: a,
                prefixlen_d: 0,
                prefixlen_s: 0,
                dport: 0,
                dport_mask: 0,
                sport: 0,
                sport_mask: 0,
                proto: 0,
                ifindex: 0,
                user: 0,
            },
            dir,
            index: 8 + u32::from(dir),
            ptype: 0,
            priority: 0,
            action: 0,
            flags: 0,
            mark: (0, 0),
            if_id: 0,
            lifetime: Default::default(),
            tmpls: vec![],
        })
    }

    #[test]
    fn out_and_fwd_policies_close_their_family_and_in_ones_do_not() {
        assert_eq!(gates(vec![]), Gates::default());
        let x = Some(Exception::Xfrm);
        assert_eq!(
            gates(vec![policy(XFRM_POLICY_FWD, "0.0.0.0")]),
            Gates { v4: x, v6: None }
        );
        assert_eq!(
            gates(vec![policy(XFRM_POLICY_OUT, "::")]),
            Gates { v4: None, v6: x }
        );
        assert_eq!(gates(vec![policy(0, "0.0.0.0")]), Gates::default());
        // Netfilter is the evaluator's: a chain closes nothing here.
        let chain = Object::NftChain(NftChain {
            family: 1,
            table: "t".into(),
            name: "fw".into(),
            hook: Some((2, 0)),
            chain_type: "filter".into(),
            policy: Some(0),
            flags: 0,
        });
        assert_eq!(gates(vec![chain]), Gates::default());
    }
}
