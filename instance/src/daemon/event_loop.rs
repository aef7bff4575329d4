//! The processor's loop: one event at a time from the listeners, the
//! blades and the console, with the periodic polls (links, capture filters,
//! legacy tables) on their ticks; pending ops are flushed in batches of
//! [`BATCH`] or when nothing is waiting, and a due reconcile runs after a
//! quiet moment of at most [`RECONCILE_DELAY`].
//!
//! Time is injected: only `run_loop` reads the clock; the steps it calls
//! (`tick`, `after_event`, and `Processor::now` for what they schedule)
//! take the instant they are given, so unit tests drive them with their
//! own instants.

use std::time::{Duration, Instant};

use crossbeam_channel::{select, Receiver};
use fpc::{Object, ObjectKey, ObjectKind, AF_INET, AF_INET6};
use tracing::{debug, error, trace, warn};

use super::{
    scope_ord, Processor, Proto, Source, SyncState, BATCH, CAPTURE_POLL, RECONCILE_DELAY, XT_POLL,
};
use crate::cache::Scope;
use crate::event::Event;
use crate::netlink::{self, Event as NlEvent, Messages, NlMsg};

/// One periodic job of the loop: its period and when it is next due.
struct Tick {
    period: Duration,
    next: Instant,
}

impl Tick {
    fn every(period: Option<Duration>, now: Instant) -> Option<Tick> {
        period.map(|period| Tick {
            period,
            next: now + period,
        })
    }

    /// Due at `now`: then next due a period after it was due (so jobs
    /// whose periods are multiples of one another keep sharing their
    /// wake-ups), or a period after `now` if the loop fell behind.
    fn due(tick: &mut Option<Tick>, now: Instant) -> bool {
        match tick {
            Some(t) if now >= t.next => {
                t.next += t.period;
                if t.next <= now {
                    t.next = now + t.period;
                }
                true
            }
            _ => false,
        }
    }
}

/// The loop's periodic jobs. Time is given, never read here: the loop
/// passes the clock's reading at each turn, a unit test its own instants.
pub(super) struct Ticks {
    links: Option<Tick>,
    captures: Option<Tick>,
    xtables: Option<Tick>,
}

impl Processor {
    /// The periodic jobs this configuration runs, first due a period
    /// after `now`: the link poll (`--link-poll`), packet sockets' filters
    /// (no notification exists for them), legacy x_tables (the audit
    /// status looked at and, without records, the tables polled, on the
    /// link poll's tick).
    pub(super) fn ticks(&self, now: Instant) -> Ticks {
        let poll = self.config.link_poll;
        let features = &self.config.features;
        Ticks {
            links: Tick::every(poll, now),
            captures: Tick::every(
                features
                    .enabled(crate::features::BPF)
                    .then_some(CAPTURE_POLL),
                now,
            ),
            xtables: Tick::every(
                features
                    .enabled(crate::features::FILTER)
                    .then(|| poll.unwrap_or(XT_POLL)),
                now,
            ),
        }
    }

    /// Runs the jobs due at `now`; returns how long the loop may then wait
    /// for an event before the next one is due.
    pub(super) fn tick(&mut self, ticks: &mut Ticks, now: Instant) -> Duration {
        self.now = now;
        if Tick::due(&mut ticks.xtables, now) {
            self.watch_xtables(true);
        }
        if Tick::due(&mut ticks.links, now) {
            self.poll_links();
            self.poll_seq_adj();
        }
        if Tick::due(&mut ticks.captures, now) {
            if let Err(e) = self.resync_scopes(&[Scope::whole(ObjectKind::CaptureFilter)]) {
                warn!("capture filter poll failed: {e}");
            }
            self.flush();
        }
        self.publish_state();
        [&ticks.links, &ticks.captures, &ticks.xtables]
            .into_iter()
            .flatten()
            .map(|t| t.next.saturating_duration_since(now))
            .min()
            .unwrap_or(Duration::MAX / 4)
    }

    /// After an event handled at `now`: a full batch is sent, and a
    /// reconcile that has waited [`RECONCILE_DELAY`] for a quiet moment
    /// runs anyway (a steady stream of events never leaves one).
    pub(super) fn after_event(&mut self, now: Instant) {
        self.now = now;
        if self.pending.len() >= BATCH {
            self.flush();
        }
        if self
            .reconcile_since
            .is_some_and(|t| now.saturating_duration_since(t) >= RECONCILE_DELAY)
        {
            self.run_reconcile();
        }
        self.publish_state();
    }

    /// The loop: the clock is read here, once before the due jobs and once
    /// when an event arrives, and given to the steps it calls.
    pub(super) fn run_loop(&mut self, net_rx: Receiver<Event>, ctl_rx: Receiver<Event>) {
        let mut ticks = self.ticks(Instant::now());
        loop {
            let wait = self.tick(&mut ticks, Instant::now());
            let event = if self.pending.is_empty() && self.reconcile.is_empty() {
                select! {
                    recv(net_rx) -> e => e.ok(),
                    recv(ctl_rx) -> e => e.ok(),
                    default(wait) => continue,
                }
            } else {
                // Work is waiting: take what is already there, else do it.
                match ctl_rx.try_recv().or_else(|_| net_rx.try_recv()) {
                    Ok(e) => Some(e),
                    Err(_) => {
                        self.idle();
                        continue;
                    }
                }
            };
            let Some(event) = event else { return };
            self.now = Instant::now();
            if !self.handle(event) {
                return;
            }
            self.after_event(Instant::now());
        }
    }

    /// One event; false when the loop is to end.
    fn handle(&mut self, event: Event) -> bool {
        match event {
            Event::Netlink(buf) => self.on_netlink(&buf, Source::Listener),
            Event::Xfrm(buf) => self.on_xfrm(&buf, Source::Listener),
            Event::Netfilter(buf) => self.on_netfilter(&buf),
            Event::Audit(buf) => self.on_audit(&buf),
            Event::AuditFailed(e) => {
                warn!("audit listener stopped: {e}; legacy iptables tables will be polled");
                self.xt_watch.listening = false;
                self.watch_xtables(true);
            }
            Event::Overrun => {
                self.sync.overruns += 1;
                self.state = SyncState::Resyncing;
                if let Err(e) = self.full_resync() {
                    error!("resync failed: {e}; retrying at the next event");
                    self.reconcile
                        .extend(Scope::ALL.iter().map(|s| scope_ord(*s)));
                }
                self.sync.resyncs += 1;
                self.state = SyncState::Synced;
            }
            Event::ListenerFailed(e) => {
                error!("netlink listener failed: {e}");
                return false;
            }
            Event::Blade(e) => self.on_blade(e),
            Event::Console { line, reply } => {
                let _ = reply.send(super::answers::answer(self, &line));
            }
            Event::Replay { xfrm, bytes, reply } => {
                let _ = reply.send(super::answers::replayed(self, xfrm, &bytes));
            }
            Event::Shutdown => return false,
        }
        true
    }

    /// Nothing is waiting: send what is pending, recover silent deletions.
    pub(super) fn idle(&mut self) {
        self.flush();
        if !self.reconcile.is_empty() {
            self.run_reconcile();
            self.flush();
        }
    }

    /// The kernel announces a link's kind-specific changes (`ip link set
    /// ... type macvlan mode ...`), its master and a bridge port's state
    /// only while the link is up (netdev_state_change checks IFF_UP), and
    /// recomputes a bridge's MAC without telling: links and bridge ports
    /// are re-dumped periodically, and what changed is counted. So are
    /// multicast VIFs and MIFs, never announced at all.
    pub(super) fn poll_links(&mut self) {
        let before = self.pending.len();
        if let Err(e) = self.resync_scopes(&[
            Scope::whole(ObjectKind::Link),
            Scope::whole(ObjectKind::BridgePort),
        ]) {
            warn!("link poll failed: {e}");
            return;
        }
        let found = self.pending.len().saturating_sub(before);
        if found > 0 {
            self.sync.silent_changes += found as u64;
            debug!(found, "link poll found changes the kernel did not announce");
            self.flush();
        }
        self.reread_vifs(&[AF_INET, AF_INET6]);
    }

    /// Feeds messages captured elsewhere (a file of netlink messages, as
    /// the kernel sends them) through the same decoder and sync path as
    /// the listener's. Returns how many messages there were.
    pub fn feed_netlink(&mut self, buf: &[u8]) -> usize {
        let before = self.replay_stats.packets;
        self.on_netlink(buf, Source::Fed);
        self.flush();
        (self.replay_stats.packets - before) as usize
    }

    /// A new or changed object from rtnetlink (`nlmsg_flags` say whether
    /// it replaced another): what it may silently change is scheduled, the
    /// cache updated. A switched-off feature sends nothing.
    pub(super) fn on_new(&mut self, obj: Object, nlmsg_flags: u16) {
        if !self.config.features.syncs(&obj) {
            return;
        }
        self.watch_silent_changes(&obj);
        self.watch_replaced(&obj, nlmsg_flags);
        self.pending.extend(self.cache.upsert(obj));
    }

    /// An object gone from rtnetlink.
    pub(super) fn on_del(&mut self, key: &ObjectKey) {
        self.watch_silent_deletions_del(key);
        self.pending.extend(self.cache.remove(key));
    }

    /// The messages of one buffer of `proto` (from its listener or a
    /// replay), each counted on that socket's statistics. A malformed
    /// datagram ends the buffer: counted as a decode error and warned.
    /// One walk for every family's ingest.
    pub(super) fn take_messages<'a>(
        &mut self,
        buf: &'a [u8],
        proto: Proto,
        source: Source,
    ) -> Vec<NlMsg<'a>> {
        let mut out = Vec::new();
        for msg in Messages::new(buf) {
            match msg {
                Ok(m) => out.push(m),
                Err(e) => {
                    self.sync.decode_errors += 1;
                    warn!("malformed {} datagram: {e}", proto.name());
                    break;
                }
            }
        }
        let stats = match (proto, source) {
            (Proto::Route, Source::Listener) => &mut self.listen_stats,
            (Proto::Route, Source::Fed) => &mut self.replay_stats,
            (Proto::Xfrm, Source::Listener) => &mut self.xfrm_listen_stats,
            (Proto::Xfrm, Source::Fed) => &mut self.xfrm_replay_stats,
            (Proto::Netfilter, _) => &mut self.ct_listen_stats,
            (Proto::Audit, _) => &mut self.audit_listen_stats,
        };
        for m in &out {
            stats.count(m.kind);
        }
        out
    }

    pub(super) fn on_netlink(&mut self, buf: &[u8], source: Source) {
        for msg in self.take_messages(buf, Proto::Route, source) {
            if let Some(af) = netlink::mvif::mc_forwarding_news(msg.kind, msg.payload) {
                self.schedule_vifs(af == AF_INET);
            }
            let event = netlink::decode(&msg);
            trace!(kind = msg.kind, ?event, payload = ?msg.payload, "netlink message");
            match event {
                Ok(NlEvent::New(obj)) => self.on_new(obj, msg.flags),
                Ok(NlEvent::Del(key)) => self.on_del(&key),
                Ok(NlEvent::DelRoute(route)) => {
                    self.pending.extend(self.cache.remove_route(route));
                }
                Ok(NlEvent::NetConfChange(news)) => self.netconf_change(news),
                Ok(NlEvent::NewRule(spec)) => self.on_rule(spec, true),
                Ok(NlEvent::DelRule(spec)) => self.on_rule(spec, false),
                Ok(NlEvent::Ignored | NlEvent::Unknown) => {}
                Err(e) => {
                    self.sync.decode_errors += 1;
                    warn!(kind = msg.kind, "malformed netlink message: {e}");
                }
            }
            if self.pending.len() >= BATCH {
                self.flush();
            }
        }
    }
}
