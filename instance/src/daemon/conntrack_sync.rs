//! What ctnetlink events leave out of a conntrack entry, and how the
//! processor makes up for it.
//!
//! * NAT sequence adjustments change without an event: the FTP NAT helper
//!   rewrites a PORT command (`nf_ct_seqadj_set`), sets IPS_SEQ_ADJUST and
//!   the offsets, and raises no event at all (neither the status bit nor
//!   CTA_SEQ_ADJ_* is announced; the next event, at a TCP state change,
//!   carries the bit but still no adjustments); only dumps carry them.
//!   So an event for an entry with IPS_SEQ_ADJUST keeps the adjustments
//!   cached for it, and while some cached entry is NAT-ed TCP, every
//!   link-poll tick dumps the entries with IPS_SEQ_ADJUST (the kernel
//!   filters by status and sends only those: a handful of helper-NAT-ed
//!   connections) and syncs the bit and the offsets that moved, counted as
//!   silent changes.
//! * The timeout an event announces is kept, except in the echo of
//!   cmgrd's own refresh (hit flags, `crate::hitflags`), which carries the
//!   refresher socket's port id: that one keeps the cached timeout.
//!
//! * A dump announces what is left of each entry's timeout, less than the
//!   cached (announced) one when nothing changed but time: a dumped entry
//!   keeps its cached timeout unless the dump's is larger (an update the
//!   dump is the only news of). So a resync after an overrun sends only
//!   the entries that really changed, and refreshes (hit flags) keep
//!   setting the state's full timeout rather than a remainder.
//!
//! Invariant: only `seq_adj` and `timeout` are ever taken from the cache;
//! every other field is the kernel's latest word.

use fpc::{Conntrack, Object, ObjectKey};
use tracing::warn;

use super::Processor;
use crate::netlink::{conntrack, Event as NlEvent};

/// Completes `new`, an event's entry, from `cached`, the entry as cached;
/// `echo`: the event answers cmgrd's own refresh.
pub(super) fn merge_event(cached: &Conntrack, new: &mut Conntrack, echo: bool) {
    if new.status & Conntrack::IPS_SEQ_ADJUST != 0 && new.seq_adj == [None, None] {
        new.seq_adj = cached.seq_adj;
    }
    if echo {
        new.timeout = cached.timeout;
    }
}

/// Completes `dumped`, a dump's entry, from `cached`: what is left of the
/// cached timeout is no change.
pub(super) fn merge_dump(cached: &Conntrack, dumped: &mut Conntrack) {
    if dumped.timeout <= cached.timeout {
        dumped.timeout = cached.timeout;
    }
}

impl Processor {
    /// Completes a dump's entries from the cache, as [`merge_dump`] says.
    pub(super) fn complete_dumped_conntracks(&self, fresh: &mut [Object]) {
        for obj in fresh {
            let Object::Conntrack(ct) = obj else { continue };
            if let Some(Object::Conntrack(cached)) = self.cache.get(&ObjectKey::Conntrack(ct.key()))
            {
                merge_dump(cached, ct);
            }
        }
    }

    /// An object of a ctnetlink event from the socket of port id `pid`,
    /// completed as [`merge_event`] says when it is a cached entry.
    pub(super) fn conntrack_event(&self, pid: u32, obj: Object) -> Object {
        let Object::Conntrack(mut ct) = obj else {
            return obj;
        };
        if let Some(Object::Conntrack(cached)) = self.cache.get(&ObjectKey::Conntrack(ct.key())) {
            let echo = pid != 0 && pid == self.reverse.ct_portid;
            merge_event(cached, &mut ct, echo);
        }
        Object::Conntrack(ct)
    }

    /// Dumps the entries with IPS_SEQ_ADJUST (when some cached entry is
    /// NAT-ed TCP, which a helper may adjust) and syncs their adjustments
    /// if they moved.
    pub(super) fn poll_seq_adj(&mut self) {
        if !self.config.features.enabled(crate::features::CONNTRACK) {
            return;
        }
        let nat = Conntrack::IPS_SRC_NAT | Conntrack::IPS_DST_NAT;
        let may_adjust = |o: &Object| matches!(o, Object::Conntrack(c) if c.orig.proto == 6 && c.status & nat != 0);
        if !self
            .cache
            .objects(fpc::ObjectKind::Conntrack)
            .any(may_adjust)
        {
            return;
        }
        let Some(cmd) = self.linux.sockets() else {
            return;
        };
        let mut found = Vec::new();
        let stats = &mut self.ct_cmd_stats;
        let res = cmd.netfilter.dump_with(
            |seq| conntrack::dump_request_status(seq, Conntrack::IPS_SEQ_ADJUST),
            |msg| {
                let Some(msg) = msg else {
                    found.clear();
                    return;
                };
                stats.count(msg.kind);
                if let Ok(NlEvent::New(Object::Conntrack(ct))) = conntrack::decode(msg) {
                    found.push(ct);
                }
            },
        );
        if let Err(e) = res {
            warn!("dumping the sequence-adjusted conntrack entries failed: {e}");
            return;
        }
        for ct in found {
            let Some(Object::Conntrack(cached)) = self.cache.get(&ObjectKey::Conntrack(ct.key()))
            else {
                continue; // its event is on its way
            };
            let status = cached.status | Conntrack::IPS_SEQ_ADJUST;
            if cached.seq_adj == ct.seq_adj && cached.status == status {
                continue;
            }
            let mut changed = cached.clone();
            changed.seq_adj = ct.seq_adj;
            changed.status = status;
            self.sync.silent_changes += 1;
            self.pending
                .extend(self.cache.upsert(Object::Conntrack(changed)));
        }
        self.flush();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use fpc::{CtTuple, SeqAdj};

    fn entry(status: u32, timeout: u32, seq_adj: [Option<SeqAdj>; 2]) -> Conntrack {
        let t = CtTuple {
            src: "10.10.1.2".parse().unwrap(),
            dst: "10.10.2.2".parse().unwrap(),
            proto: 6,
            sport: 40000,
            dport: 21,
        };
        Conntrack {
            orig: t,
            reply: t,
            zone: 0,
            status,
            mark: 0,
            timeout,
            seq_adj,
        }
    }

    const ADJ: SeqAdj = SeqAdj {
        correction_pos: 0x7b15_5d3f,
        offset_before: 0,
        offset_after: 2,
    };

    #[test]
    fn an_event_keeps_the_cached_adjustments_and_its_own_timeout() {
        let seq = Conntrack::IPS_SEQ_ADJUST;
        let cached = entry(seq | 0x19e, 120, [Some(ADJ), None]);
        let mut new = entry(seq | 0x19e, 100, [None, None]);
        merge_event(&cached, &mut new, false);
        assert_eq!((new.timeout, new.seq_adj), (100, [Some(ADJ), None]));
        // Adjustments the event carries win; without IPS_SEQ_ADJUST there
        // are none to keep.
        let other = SeqAdj {
            offset_after: 4,
            ..ADJ
        };
        let mut new = entry(seq, 100, [Some(other), None]);
        merge_event(&cached, &mut new, false);
        assert_eq!(new.seq_adj, [Some(other), None]);
        let mut new = entry(0x19e, 100, [None, None]);
        merge_event(&cached, &mut new, false);
        assert_eq!(new.seq_adj, [None, None]);
    }

    #[test]
    fn a_dump_keeps_the_cached_timeout_unless_it_grew() {
        let cached = entry(0x18e, 120, [None, None]);
        let mut dumped = entry(0x18e, 97, [Some(ADJ), None]);
        merge_dump(&cached, &mut dumped);
        assert_eq!(
            dumped,
            Conntrack {
                seq_adj: [Some(ADJ), None],
                ..cached
            }
        );
        // An update that only the dump tells of (its event lost).
        let mut dumped = entry(0x18e, 299, [None, None]);
        merge_dump(&cached, &mut dumped);
        assert_eq!(dumped.timeout, 299);
    }

    #[test]
    fn the_echo_of_a_refresh_keeps_the_cached_timeout() {
        let cached = entry(0x18e, 3, [None, None]);
        let mut echo = entry(0x18e, 2, [None, None]);
        echo.mark = 9;
        merge_event(&cached, &mut echo, true);
        assert_eq!((echo.timeout, echo.mark), (3, 9));
    }
}
