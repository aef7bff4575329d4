//! Per-family ingest beside routing: netconf, policy rules, ctnetlink and
//! nftables, XFRM (SAs, policies and, with IPsec HA, replay state), each
//! message decoded, filtered by the features switched on, and applied to
//! the cache, whose ops go to the blades in the order the cache saw them.

use fpc::{Message, Object, ObjectKey, ObjectKind, Op};
use tracing::{debug, trace, warn};

use super::blades::send;
use super::{Processor, Proto, SessionState, Source, BATCH};
use crate::cache::Scope;
use crate::netlink::rule::RuleList;
use crate::netlink::xfrm::{self, XfrmEvent};
use crate::netlink::{self, wire, Event as NlEvent};

impl Processor {
    /// A netconf news of one value. The kernel sends only the attribute
    /// that changed, so it is merged into the cached object (the other
    /// values stay); see [`netlink::netconf`] for what it announces.
    pub(super) fn netconf_change(&mut self, news: fpc::NetConf) {
        let family = news.family;
        if !self.config.features.syncs(&Object::NetConf(news.clone())) {
            return; // a switched-off feature sends nothing
        }
        // IPv4 copies some `default` values into every device that never
        // had them written, and announces `default` only; IPv6 sets
        // `default` with some `all` values, unannounced: re-dumped.
        if netlink::netconf::implies_unannounced_changes(&news) {
            self.schedule(&[Scope::new(ObjectKind::NetConf, family)]);
        }
        match self.cache.get(&ObjectKey::NetConf(news.key())) {
            Some(Object::NetConf(cached)) => {
                let merged = Object::NetConf(cached.merged(&news));
                self.pending.extend(self.cache.upsert(merged));
            }
            // A change of something never announced whole (its
            // announcement was lost): the family is dumped again.
            _ => {
                debug!(?news, "netconf change of an unknown device: re-dumping");
                self.schedule(&[Scope::new(ObjectKind::NetConf, family)]);
            }
        }
    }

    /// Re-dumps the netconf of `families` (AF_INET, AF_INET6); what it
    /// finds the kernel changed without telling.
    pub(super) fn redump_netconfs(&mut self, families: &[u8]) {
        let mut found = 0;
        for &f in families {
            match self.resync_scopes(&[Scope::new(ObjectKind::NetConf, f)]) {
                Ok(n) => found += n,
                Err(e) => {
                    warn!("netconf re-dump failed: {e}; retrying");
                    self.schedule(&[Scope::new(ObjectKind::NetConf, f)]);
                }
            }
        }
        if found > 0 {
            self.sync.silent_changes += found as u64;
            debug!(
                found,
                "netconf re-dump found changes the kernel did not announce"
            );
            self.flush();
        }
    }

    /// A rule added or deleted: the kernel's list changes as the kernel
    /// changes it (see `netlink::rule::RuleList`), and the family's rules
    /// are renumbered from it; only what moved is sent. Then the family
    /// is re-dumped (see below).
    pub(super) fn on_rule(&mut self, spec: fpc::RuleSpec, new: bool) {
        let family = spec.family;
        let probe = Object::Rule(Box::new(fpc::Rule {
            spec,
            nth: 0,
            position: 0,
        }));
        if !self.config.features.syncs(&probe) {
            return;
        }
        let Object::Rule(probe) = probe else {
            unreachable!("made above")
        };
        let mut list = RuleList::from_objects(self.cache.objects(ObjectKind::Rule).filter_map(
            |o| match o {
                Object::Rule(r) if r.spec.family == family => Some(&**r),
                _ => None,
            },
        ));
        if new {
            list.insert(probe.spec);
        } else if !list.remove(&probe.spec) {
            return; // not synced (it came before a resync that had it gone)
        }
        let ops = self
            .cache
            .reconcile(Scope::new(ObjectKind::Rule, family), list.objects());
        self.pending.extend(ops);
        // Adding is not idempotent: a notification read after a dump that
        // already listed its rule (the listener opens before the dump at
        // start and on overruns) would add a second copy. A re-dump of the
        // family, coalesced and run once the queue is drained, settles it.
        self.schedule(&[Scope::new(ObjectKind::Rule, family)]);
    }

    /// ctnetlink events: conntrack entries created, updated, destroyed.
    pub(super) fn on_netfilter(&mut self, buf: &[u8]) {
        for msg in self.take_messages(buf, Proto::Netfilter, Source::Listener) {
            if matches!(
                msg.kind,
                netlink::nftables::NFT_MSG_NEWSETELEM | netlink::nftables::NFT_MSG_DELSETELEM
            ) {
                self.on_set_elements(&msg);
                if self.pending.len() >= BATCH {
                    self.flush();
                }
                continue;
            }
            let event = if msg.kind >> 8 == netlink::nftables::NFNL_SUBSYS_NFTABLES {
                netlink::nftables::decode(&msg)
            } else {
                netlink::conntrack::decode(&msg)
            };
            match event {
                Ok(NlEvent::New(obj)) if self.config.features.syncs(&obj) => {
                    let obj = self.conntrack_event(msg.pid, obj);
                    self.pending.extend(self.cache.upsert(obj));
                }
                Ok(NlEvent::Del(key)) => {
                    self.remove_nft_contents(&key);
                    self.pending.extend(self.cache.remove(&key));
                }
                Ok(_) => {}
                Err(e) => {
                    self.sync.decode_errors += 1;
                    warn!(kind = msg.kind, "malformed ctnetlink message: {e}");
                }
            }
            if matches!(
                msg.kind,
                netlink::nftables::NFT_MSG_NEWRULE | netlink::nftables::NFT_MSG_DELRULE
            ) {
                // A notified rule's place is unknown, and a delete moves
                // its successor: a coalesced re-dump gives every place.
                self.schedule(&[Scope::whole(ObjectKind::NftRule)]);
            }
            if self.pending.len() >= BATCH {
                self.flush();
            }
        }
    }

    /// Set elements added or deleted (one per notification, as the kernel
    /// sends them; a message without any, which no kernel path sends
    /// today, re-dumps every set's elements rather than guess).
    pub(super) fn on_set_elements(&mut self, msg: &netlink::NlMsg<'_>) {
        let elems = match netlink::nftables::decode_elements(msg) {
            Ok(elems) => elems,
            Err(e) => {
                self.sync.decode_errors += 1;
                warn!(
                    kind = msg.kind,
                    "malformed nf_tables set element message: {e}"
                );
                self.schedule(&[Scope::whole(ObjectKind::NftSetElem)]);
                return;
            }
        };
        if elems.is_empty() {
            self.schedule(&[Scope::whole(ObjectKind::NftSetElem)]);
        }
        let new = msg.kind == netlink::nftables::NFT_MSG_NEWSETELEM;
        for e in elems {
            let set = ObjectKey::NftSet {
                family: e.family,
                table: e.table.clone(),
                name: e.set.clone(),
            };
            if matches!(self.cache.get(&set), Some(Object::NftSet(s)) if !s.elements_synced()) {
                continue;
            }
            let obj = Object::NftSetElem(e);
            if !self.config.features.syncs(&obj) {
                continue;
            }
            if new {
                self.pending.extend(self.cache.upsert(obj));
            } else {
                self.pending.extend(self.cache.remove(&obj.key()));
            }
        }
    }

    /// A deleted nf_tables table or chain takes its chains and rules along
    /// (announced one by one too; this makes sure, and deletes them first);
    /// a table its sets, and a set its elements (the kernel announces only
    /// the set's deletion).
    pub(super) fn remove_nft_contents(&mut self, key: &ObjectKey) {
        if let ObjectKey::NftSet {
            family,
            table,
            name,
        } = key
        {
            let elems = self.cache.remove_where(ObjectKind::NftSetElem, |o| {
                matches!(o, Object::NftSetElem(e) if e.family == *family && e.table == *table
                    && e.set == *name)
            });
            self.pending.extend(elems);
            return;
        }
        let (family, table, chain) = match key {
            ObjectKey::NftTable { family, name } => (*family, name.clone(), None),
            ObjectKey::NftChain {
                family,
                table,
                name,
            } => (*family, table.clone(), Some(name.clone())),
            _ => return,
        };
        let rules = self.cache.remove_where(ObjectKind::NftRule, |o| {
            matches!(o, Object::NftRule(r) if r.family == family && r.table == table
                && chain.as_ref().is_none_or(|c| *c == r.chain))
        });
        self.pending.extend(rules);
        if chain.is_none() {
            let elems = self.cache.remove_where(
                ObjectKind::NftSetElem,
                |o| matches!(o, Object::NftSetElem(e) if e.family == family && e.table == table),
            );
            self.pending.extend(elems);
            let sets = self.cache.remove_where(
                ObjectKind::NftSet,
                |o| matches!(o, Object::NftSet(s) if s.family == family && s.table == table),
            );
            self.pending.extend(sets);
            let chains = self.cache.remove_where(
                ObjectKind::NftChain,
                |o| matches!(o, Object::NftChain(c) if c.family == family && c.table == table),
            );
            self.pending.extend(chains);
        }
    }

    /// Feeds captured XFRM messages (byte fixtures: this kernel has no
    /// ESP) through the XFRM sync path. Returns how many there were.
    pub fn feed_xfrm(&mut self, buf: &[u8]) -> usize {
        let before = self.xfrm_replay_stats.packets;
        self.on_xfrm(buf, Source::Fed);
        self.flush();
        (self.xfrm_replay_stats.packets - before) as usize
    }

    pub(super) fn on_xfrm(&mut self, buf: &[u8], source: Source) {
        for msg in self.take_messages(buf, Proto::Xfrm, source) {
            let event = xfrm::decode(&msg);
            trace!(kind = msg.kind, ?event, "xfrm message");
            match event {
                Ok(e) if self.config.features.enabled(crate::features::IPSEC) => self.apply_xfrm(e),
                Ok(_) => {} // a switched-off feature sends nothing
                Err(e) => {
                    self.sync.decode_errors += 1;
                    warn!(kind = msg.kind, "malformed xfrm message: {e}");
                }
            }
            if self.pending.len() >= BATCH {
                self.flush();
            }
        }
    }

    /// What one XFRM event changes in the cache. An SA's replay state
    /// lives and dies with it; a NEWAE for an SA not cached is dropped.
    pub(super) fn apply_xfrm(&mut self, event: XfrmEvent) {
        match event {
            XfrmEvent::Sa(sa, replay) => {
                self.pending.extend(self.cache.upsert(Object::XfrmSa(sa)));
                if let Some(r) = replay {
                    self.pending
                        .extend(self.cache.upsert(Object::XfrmReplay(r)));
                }
            }
            XfrmEvent::DelSa(key) => {
                self.pending
                    .extend(self.cache.remove(&ObjectKey::XfrmReplay(key)));
                self.pending
                    .extend(self.cache.remove(&ObjectKey::XfrmSa(key)));
            }
            XfrmEvent::Replay(r) => {
                if self.cache.get(&ObjectKey::XfrmSa(r.key())).is_some() {
                    self.pending
                        .extend(self.cache.upsert(Object::XfrmReplay(r)));
                }
            }
            XfrmEvent::Sp(sp) => self.pending.extend(self.cache.upsert(Object::XfrmSp(sp))),
            XfrmEvent::DelSp(key) => self
                .pending
                .extend(self.cache.remove(&ObjectKey::XfrmSp(key))),
            XfrmEvent::FlushSa { proto } => {
                for kind in [ObjectKind::XfrmReplay, ObjectKind::XfrmSa] {
                    let ops = self.cache.remove_where(kind, |o| match o {
                        Object::XfrmSa(sa) => xfrm::flush_matches(proto, sa.proto),
                        Object::XfrmReplay(r) => xfrm::flush_matches(proto, r.proto),
                        _ => false,
                    });
                    self.pending.extend(ops);
                }
            }
            XfrmEvent::FlushSp { ptype } => {
                let ops = self.cache.remove_where(
                    ObjectKind::XfrmSp,
                    |o| matches!(o, Object::XfrmSp(sp) if sp.ptype == ptype),
                );
                self.pending.extend(ops);
            }
            XfrmEvent::Migrate {
                sel,
                dir,
                ptype,
                moves,
            } => {
                let ops = crate::migrate::apply(&mut self.cache, &sel, dir, ptype, &moves);
                self.sync.migrations += 1;
                self.pending.extend(ops);
            }
            XfrmEvent::Ignored | XfrmEvent::Unknown => {}
        }
    }

    /// Switches IPsec HA for one blade, live: enabling sends it every SA's
    /// current sequence numbers at once, disabling withdraws them (a
    /// blade without HA holds no sequence numbers that would go stale).
    pub fn set_ipsec_ha(&mut self, blade: u32, enable: bool) {
        let was = self.ipsec_ha.insert(blade, enable).unwrap_or(false);
        if was == enable {
            return;
        }
        self.flush(); // what is pending predates the switch
        let op = if enable { Op::Add } else { Op::Delete };
        let ops: Vec<(Op, Object)> = self
            .cache
            .objects(ObjectKind::XfrmReplay)
            .map(|o| (op, o.clone()))
            .collect();
        let Some(session) = self.blades.iter_mut().find(|s| s.blade == blade) else {
            return;
        };
        let SessionState::Up { conn } = session.state else {
            return; // its replay on connection will follow the new setting
        };
        if !ops.is_empty() {
            send(session, conn, &Message::Batch(ops), &mut Vec::new());
        }
    }

    /// Linux's own counters of every link, by ifindex (a link dump).
    pub fn linux_link_stats(&mut self) -> std::collections::BTreeMap<u32, (String, [u64; 6])> {
        let mut out = std::collections::BTreeMap::new();
        let Some(cmd) = self.linux.sockets() else {
            return out;
        };
        let res = cmd.route.dump(wire::RTM_GETLINK, 0, |msg| match msg {
            None => out.clear(),
            Some(m) => {
                if let Ok(Some((ifindex, name, stats))) =
                    crate::netlink::rtnl::decode_link_stats(m.payload)
                {
                    out.insert(ifindex, (name, stats));
                }
            }
        });
        if let Err(e) = res {
            warn!("link statistics dump failed: {e}");
        }
        out
    }
}
