//! What in the synced configuration makes fpd unable to forward a family
//! exactly as Linux would, whatever the packet: the forwarding path's
//! netfilter hooks (nf_tables base chains, legacy x_tables rules) and
//! IPsec policies. Such a family's packets go to Linux, which applies its
//! full semantics; fpd forwards them itself again once the configuration
//! no longer needs Linux.
//!
//! The rule is conservative on purpose: a gate closed for nothing only
//! costs speed (Linux forwards), a gate open by mistake lets a packet leave
//! differently from Linux (a firewall bypass). So:
//! * any nf_tables base chain of family ip/ip6/inet on prerouting, forward,
//!   postrouting or (inet) ingress closes its families, whatever its rules
//!   (an empty chain with policy accept included: it may be filled next);
//!   netdev chains close both families (they run on the ports themselves);
//!   bridge and arp chains do not see routed packets;
//! * any legacy x_tables rule in a builtin chain of those hooks closes its
//!   family, and so does a builtin chain whose policy is not ACCEPT (user
//!   chains are reached only through such rules); tables with empty
//!   builtin chains and ACCEPT policies change nothing;
//! * any IPsec policy of direction out or fwd closes its family: forwarded
//!   packets are checked against fwd policies and looked up in out ones.
//!
//! Invariants: built off the hot path with the view; a worker reads two
//! words per packet.

use std::net::IpAddr;

use super::stats::Exception;
use crate::tables::Tables;

/// NFPROTO_* families of nf_tables.
const NFPROTO_INET: u8 = 1;
const NFPROTO_IPV4: u8 = 2;
const NFPROTO_NETDEV: u8 = 5;
const NFPROTO_IPV6: u8 = 10;
/// NF_INET_* hooks a forwarded packet traverses, and inet's ingress.
const NF_INET_PRE_ROUTING: u32 = 0;
const NF_INET_FORWARD: u32 = 2;
const NF_INET_POST_ROUTING: u32 = 4;
const NF_INET_INGRESS: u32 = 5;
const AF_INET: u8 = 2;
const AF_INET6: u8 = 10;
/// x_tables' ACCEPT as a standard verdict (`-NF_ACCEPT - 1`).
const XT_ACCEPT: i32 = -2;
/// XFRM_POLICY_OUT, XFRM_POLICY_FWD.
const XFRM_POLICY_OUT: u8 = 1;
const XFRM_POLICY_FWD: u8 = 2;

/// Why a family's packets must go to Linux, if they must.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Gates {
    pub v4: Option<Exception>,
    pub v6: Option<Exception>,
}

impl Gates {
    pub fn build(tables: &Tables) -> Gates {
        let mut g = Gates::default();
        for c in tables.nft_chains() {
            let Some((hook, _)) = c.hook else { continue };
            let (v4, v6) = match c.family {
                NFPROTO_NETDEV => (true, true),
                NFPROTO_INET | NFPROTO_IPV4 | NFPROTO_IPV6 => {
                    let on_path = matches!(
                        hook,
                        NF_INET_PRE_ROUTING | NF_INET_FORWARD | NF_INET_POST_ROUTING
                    ) || (c.family == NFPROTO_INET && hook == NF_INET_INGRESS);
                    (
                        on_path && c.family != NFPROTO_IPV6,
                        on_path && c.family != NFPROTO_IPV4,
                    )
                }
                _ => (false, false),
            };
            g.close(v4, v6, Exception::Netfilter);
        }
        let on_path = |name: &str| matches!(name, "PREROUTING" | "FORWARD" | "POSTROUTING");
        for c in tables.xt_chains() {
            let strict = c.policy.is_some_and(|p| p != XT_ACCEPT);
            if strict && on_path(&c.name) {
                g.close_family(c.family, Exception::Netfilter);
            }
        }
        for r in tables.xt_rules() {
            if on_path(&r.chain) {
                g.close_family(r.family, Exception::Netfilter);
            }
        }
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

    fn close_family(&mut self, family: u8, why: Exception) {
        self.close(family == AF_INET, family == AF_INET6, why);
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
    use crate::fpc::{NftChain, Object, Op, XtChain};

    fn chain(family: u8, hook: u32) -> Object {
        Object::NftChain(NftChain {
            family,
            table: "t".into(),
            name: format!("c{family}-{hook}"),
            hook: Some((hook, 0)),
            chain_type: "filter".into(),
            policy: Some(1),
            flags: 0,
        })
    }

    fn gates(objects: Vec<Object>) -> Gates {
        let mut t = Tables::new();
        for o in objects {
            t.apply(Op::Add, o).unwrap();
        }
        Gates::build(&t)
    }

    #[test]
    fn forwarding_hooks_close_their_families_and_others_do_not() {
        assert_eq!(gates(vec![]), Gates::default());
        let nf = Some(Exception::Netfilter);
        assert_eq!(
            gates(vec![chain(NFPROTO_INET, NF_INET_FORWARD)]),
            Gates { v4: nf, v6: nf }
        );
        assert_eq!(
            gates(vec![chain(NFPROTO_IPV4, NF_INET_POST_ROUTING)]),
            Gates { v4: nf, v6: None }
        );
        assert_eq!(
            gates(vec![chain(NFPROTO_IPV6, NF_INET_PRE_ROUTING)]),
            Gates { v4: None, v6: nf }
        );
        // input (1) and output (3) never see a forwarded packet.
        assert_eq!(
            gates(vec![chain(NFPROTO_INET, 1), chain(NFPROTO_IPV4, 3)]),
            Gates::default()
        );
        // A netdev chain runs on the ports: both families.
        assert_eq!(
            gates(vec![chain(NFPROTO_NETDEV, 0)]),
            Gates { v4: nf, v6: nf }
        );
    }

    #[test]
    fn legacy_builtin_chains_close_only_when_they_can_act() {
        let builtin = |name: &str, policy: i32| {
            Object::XtChain(XtChain {
                family: AF_INET,
                table: "filter".into(),
                name: name.into(),
                hook: Some(2),
                policy: Some(policy),
            })
        };
        assert_eq!(
            gates(vec![builtin("FORWARD", XT_ACCEPT), builtin("INPUT", -1)]),
            Gates::default()
        );
        assert_eq!(
            gates(vec![builtin("FORWARD", -1)]).v4,
            Some(Exception::Netfilter)
        );
    }
}
