//! Changes the kernel makes without a message (DESIGN.md "As built":
//! silent changes): each cached object that depends on something that can
//! vanish silently schedules a scoped re-dump (reconcile) when that thing
//! changes; a reconcile waits for a quiet moment and compares Linux's dump
//! with the cache, mark and sweep. Multicast VIFs, never announced, are
//! re-read when their sysctls change.

use std::net::IpAddr;
use std::time::Instant;

use fpc::{Object, ObjectKey, ObjectKind, Op, AF_INET, AF_INET6};
use tracing::{debug, warn};

use super::{scope_ord, Processor, BATCH};
use crate::cache::Scope;
use crate::netlink::SocketError;

impl Processor {
    pub(super) fn schedule(&mut self, scopes: &[Scope]) {
        self.reconcile.extend(scopes.iter().map(|s| scope_ord(*s)));
        self.reconcile_since.get_or_insert(self.now);
    }

    /// Changes the kernel makes without telling, that follow a link's news:
    /// * IPv4 routes (and nexthop objects) are deleted without RTM_DELROUTE
    ///   when their link goes down, administratively or by carrier loss;
    /// * the first end of a new veth pair is announced before its peer
    ///   exists (IFLA_LINK 0), and gets its peer's index silently.
    ///
    /// Each schedules a re-dump of what may have changed.
    pub(super) fn watch_silent_changes(&mut self, obj: &Object) {
        // MFC news name VIFs, which come and go unannounced.
        if let Object::Mroute(m) = obj {
            self.schedule_vifs(m.group.is_ipv4());
        }
        let Object::Link(new) = obj else { return };
        const IFF_UP: u32 = 1;
        // The kernel reports IFF_LOWER_UP (carrier) only while IFF_UP.
        const IFF_LOWER_UP: u32 = 0x1_0000;
        let old = self.cache.get(&ObjectKey::Link(new.ifindex));
        let new_veth = old.is_none() && new.kind == "veth";
        // Carrier loss with the link left up (its veth peer down, a cable
        // pulled; NETDEV_CHANGE) flushes like admin down, also silently:
        // nexthop_flush_dev deletes the nexthop objects on the link (both
        // families) and shrinks their groups, which deletes the IPv4
        // routes using them (an IPv6 route's deletion is announced);
        // fib_sync_down_dev only marks other routes linkdown, which is not
        // synced. Its non-permanent neighbours go with RTM_DELNEIGH.
        //
        // Judged on the link's state, not on a change from the cached one:
        // the link poll's dump may have cached the new flags before the
        // announcement (queued behind the listener) is processed. Both
        // flushes run before their announcement (linkwatch's carrier
        // change is a notifier call, then RTM_NEWLINK), so a re-dump it
        // schedules finds them done.
        let carrier_lost = new.flags & IFF_UP != 0 && new.flags & IFF_LOWER_UP == 0;
        // A port's or a bridge's MAC change re-points the bridge's local
        // FDB entries without telling (br_fdb_changeaddr).
        let mac_moved = matches!(old, Some(Object::Link(old)) if old.mac != new.mac)
            && (new.master != 0 || new.kind == "bridge");
        if new_veth {
            self.schedule(&[Scope::whole(ObjectKind::Link)]);
        }
        if mac_moved {
            self.schedule(&[Scope::whole(ObjectKind::Fdb)]);
        }
        let went_down = new.flags & IFF_UP == 0 || carrier_lost;
        if went_down && self.cache.routes_depend_on(new.ifindex, None) {
            debug!(
                ifindex = new.ifindex,
                carrier_lost, "link down: re-dumping routes and nexthops"
            );
            self.schedule(&[
                Scope::whole(ObjectKind::Nexthop),
                Scope::new(ObjectKind::Route, AF_INET),
                Scope::new(ObjectKind::Route, AF_INET6),
            ]);
        }
    }

    /// `ip -6 route replace` may replace a route of another identity (IPv6
    /// keys apart a gateway route, a device route and a nexthop-object
    /// route of one prefix and metric): the kernel's RTM_NEWROUTE carries
    /// NLM_F_REPLACE and the route that came, not the one that went. A
    /// replacement whose route is not cached under its own key replaced
    /// another: the IPv6 routes are re-dumped.
    pub(super) fn watch_replaced(&mut self, obj: &Object, nlmsg_flags: u16) {
        const NLM_F_REPLACE: u16 = 0x100;
        if let Object::Route(r) = obj {
            if nlmsg_flags & NLM_F_REPLACE != 0
                && r.dst.is_ipv6()
                && !self.cache.contains(&obj.key())
            {
                self.schedule(&[Scope::new(ObjectKind::Route, AF_INET6)]);
            }
        }
    }

    /// Deleting a link, an IPv4 address or a nexthop object also deletes,
    /// without a notification, the routes (and nexthops) that used it; a
    /// link's deletion also its VIFs and MIFs (ipmr_device_event).
    pub(super) fn watch_silent_deletions_del(&mut self, key: &ObjectKey) {
        match key {
            ObjectKey::Mroute(m) => self.schedule_vifs(m.group.is_ipv4()),
            ObjectKey::Link(ifindex) => {
                let on = |o: &Object| matches!(o, Object::MrouteVif(v) if v.ifindex == *ifindex);
                if self.cache.objects(ObjectKind::MrouteVif).any(on) {
                    self.schedule_vifs(true);
                    self.schedule_vifs(false);
                }
                if self.cache.routes_depend_on(*ifindex, None) {
                    self.schedule(&[
                        Scope::whole(ObjectKind::Nexthop),
                        Scope::new(ObjectKind::Route, AF_INET),
                        Scope::new(ObjectKind::Route, AF_INET6),
                    ]);
                }
                // Its qdiscs go with it, unannounced.
                self.schedule(&[
                    Scope::whole(ObjectKind::Addr),
                    Scope::new(ObjectKind::Neigh, AF_INET),
                    Scope::new(ObjectKind::Neigh, AF_INET6),
                    Scope::whole(ObjectKind::BridgePort),
                    Scope::whole(ObjectKind::Fdb),
                    Scope::whole(ObjectKind::Qdisc),
                ]);
            }
            ObjectKey::Addr {
                ifindex,
                addr: addr @ IpAddr::V4(_),
                ..
            } if self.cache.routes_depend_on(*ifindex, Some(*addr)) => {
                self.schedule(&[Scope::new(ObjectKind::Route, AF_INET)]);
            }
            // A port leaving its bridge: its local FDB entry may be
            // re-pointed to the bridge itself, silently (fdb_delete_local).
            ObjectKey::BridgePort(_) => self.schedule(&[Scope::whole(ObjectKind::Fdb)]),
            ObjectKey::Nexthop(id) => {
                if self.cache.routes_use_nexthop(*id) {
                    self.schedule(&[
                        Scope::new(ObjectKind::Route, AF_INET),
                        Scope::new(ObjectKind::Route, AF_INET6),
                    ]);
                }
                self.schedule(&[Scope::whole(ObjectKind::Nexthop)]);
            }
            _ => {}
        }
    }

    pub(super) fn run_reconcile(&mut self) {
        let (vifs, scopes): (Vec<Scope>, Vec<Scope>) = std::mem::take(&mut self.reconcile)
            .into_iter()
            .map(|s| Scope::ALL[s.0])
            .partition(|s| s.kind == ObjectKind::MrouteVif);
        let (netconfs, scopes): (Vec<Scope>, Vec<Scope>) = scopes
            .into_iter()
            .partition(|s| s.kind == ObjectKind::NetConf);
        self.reconcile_since = None;
        self.sync.reconciles += 1;
        // Netconf re-dumps, too, count what they find as silent changes.
        let families: Vec<u8> = netconfs.iter().map(|s| s.family).collect();
        self.redump_netconfs(&families);
        // VIF re-reads count what they find themselves (silent changes).
        let families: Vec<u8> = vifs.iter().map(|s| s.family).collect();
        self.reread_vifs(&families);
        let before = self.pending.len();
        let t0 = Instant::now();
        let res = self.resync_scopes(&scopes);
        debug!(
            ?scopes,
            elapsed_us = t0.elapsed().as_micros() as u64,
            "re-dumped"
        );
        if let Err(e) = res {
            warn!("re-dump failed: {e}; retrying");
            self.schedule(&scopes);
        }
        let deleted = self.pending[before..]
            .iter()
            .filter(|(op, _)| *op == Op::Delete)
            .count();
        self.sync.silent_deletions += deleted as u64;
        if deleted > 0 {
            debug!(
                deleted,
                "re-dump found objects deleted without notification"
            );
        }
    }

    /// Dumps every scope and makes the cache (and so the blades) equal to it.
    pub(super) fn full_resync(&mut self) -> Result<(), SocketError> {
        self.resync_scopes(&Scope::ALL).map(drop)
    }

    /// Dumps `scopes` and reconciles the cache with them; how many ops
    /// that made.
    pub(super) fn resync_scopes(&mut self, scopes: &[Scope]) -> Result<usize, SocketError> {
        let mut changes = 0;
        for scope in scopes {
            let mut fresh = match self.linux.dump(
                *scope,
                &self.config.features,
                &mut self.cmd_stats,
                &mut self.xfrm_cmd_stats,
                &mut self.ct_cmd_stats,
                &mut self.sync,
            ) {
                Ok(fresh) => fresh,
                // A legacy table that cannot be read or decoded leaves the
                // cache as it was (and cmgrd running): said, counted.
                Err(SocketError::Io(e))
                    if matches!(scope.kind, ObjectKind::XtChain | ObjectKind::XtRule) =>
                {
                    warn!("legacy iptables tables not read: {e}");
                    if e.kind() == std::io::ErrorKind::InvalidData {
                        self.sync.decode_errors += 1;
                    }
                    continue;
                }
                Err(e) => return Err(e),
            };
            if *scope == Scope::whole(ObjectKind::Conntrack) {
                self.complete_dumped_conntracks(&mut fresh);
            }
            let ops = self.cache.reconcile(*scope, fresh);
            changes += ops.len();
            self.pending.extend(ops);
            if self.pending.len() >= BATCH {
                self.flush();
            }
        }
        Ok(changes)
    }

    /// Re-reads the VIFs and MIFs of `families` (AF_INET, AF_INET6;
    /// the kernel announces none of their changes, see [`crate::linux::vifs`])
    /// and, where they changed, the family's MFC entries, which the kernel
    /// dumps with existing VIFs only. What it finds is a silent change.
    pub(super) fn reread_vifs(&mut self, families: &[u8]) {
        let mut found = 0;
        for &f in families {
            let res = self
                .resync_scopes(&[Scope::new(ObjectKind::MrouteVif, f)])
                .and_then(|n| match n {
                    0 => Ok(0),
                    n => Ok(n + self.resync_scopes(&[Scope::new(ObjectKind::Mroute, f)])?),
                });
            match res {
                Ok(n) => found += n,
                Err(e) => {
                    warn!("multicast VIF re-read failed: {e}; retrying");
                    self.schedule(&[Scope::new(ObjectKind::MrouteVif, f)]);
                }
            }
        }
        if found > 0 {
            self.sync.silent_changes += found as u64;
            debug!(
                found,
                "VIF re-read found changes the kernel did not announce"
            );
            self.flush();
        }
    }

    /// Schedules a VIF (`ipv4`) or MIF re-read, when multicast is synced.
    pub(super) fn schedule_vifs(&mut self, ipv4: bool) {
        if self.config.features.enabled(crate::features::MCAST) {
            let af = if ipv4 { AF_INET } else { AF_INET6 };
            self.schedule(&[Scope::new(ObjectKind::MrouteVif, af)]);
        }
    }
}
