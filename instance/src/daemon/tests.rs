//! The processor without sockets: Linux is a fake holding what its dumps
//! would answer (changed by the test the way the kernel changes things,
//! silently or not), a blade is the receiving end of its queue, whose
//! frames are decoded as fpd would. Each test drives the processor's own
//! methods in the order its event loop would call them, with instants of
//! its own where time matters (the loop is the only reader of the clock).

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::{Arc, Mutex};

use fpc::{
    FrameError, FrameReader, Hop, Link, LinkInfo, Message, NextHops, Object, ObjectKind, Op, Route,
    XfrmReplay, AF_INET, MAX_BODY,
};
use tokio::sync::mpsc;

use super::{BladeSession, Processor, SessionState};
use crate::blade::{BladeEvent, Outgoing};
use crate::cache::Scope;
use crate::features::Features;
use crate::linux::Linux;
use crate::netlink::{CmdSockets, SocketError};
use crate::stats::{QueueStats, SocketStats, SyncStats};

/// What Linux holds, by scope; shared with the test, which changes it.
#[derive(Clone, Default)]
struct FakeLinux(Arc<Mutex<HashMap<Scope, Vec<Object>>>>);

impl FakeLinux {
    fn set(&self, scope: Scope, objects: Vec<Object>) {
        self.0.lock().unwrap().insert(scope, objects);
    }
}

impl Linux for FakeLinux {
    fn dump(
        &mut self,
        scope: Scope,
        _features: &Features,
        _stats: &mut SocketStats,
        _xfrm_stats: &mut SocketStats,
        _ct_stats: &mut SocketStats,
        _sync: &mut SyncStats,
    ) -> Result<Vec<Object>, SocketError> {
        Ok(self
            .0
            .lock()
            .unwrap()
            .get(&scope)
            .cloned()
            .unwrap_or_default())
    }

    fn sockets(&mut self) -> Option<&mut CmdSockets> {
        None
    }
}

/// A blade as the processor sees it: the far end of its queue.
struct FakeBlade {
    rx: mpsc::UnboundedReceiver<Outgoing>,
    stats: Arc<QueueStats>,
}

impl FakeBlade {
    /// Every message queued so far, decoded as fpd would, each taken off
    /// the queue (as the blade's writer does).
    fn take(&mut self) -> Vec<Message> {
        let mut out = Vec::new();
        while let Ok(o) = self.rx.try_recv() {
            self.stats.dequeued(o.frames, o.bytes.len() as u64);
            let mut r = FrameReader::new(&o.bytes[..], MAX_BODY);
            loop {
                match r.read_blocking() {
                    Ok((_, m)) => out.push(m),
                    Err(FrameError::Closed) => break,
                    Err(e) => panic!("bad frame queued: {e}"),
                }
            }
        }
        out
    }
}

/// The ops of the batches among `msgs`.
fn ops(msgs: &[Message]) -> Vec<(Op, Object)> {
    msgs.iter()
        .flat_map(|m| match m {
            Message::Batch(b) => b.clone(),
            _ => Vec::new(),
        })
        .collect()
}

const IFF_UP: u32 = 1;
const IFF_LOWER_UP: u32 = 0x1_0000;

fn link(ifindex: u32, flags: u32) -> Object {
    Object::Link(Link {
        ifindex,
        name: format!("eth{ifindex}"),
        kind: String::new(),
        flags,
        mtu: 1500,
        link_type: 1,
        mac: vec![2, 0, 0, 0, 0, ifindex as u8],
        master: 0,
        link: 0,
        link_netnsid: -1,
        operstate: 6,
        info: LinkInfo::default(),
    })
}

fn route(dst: [u8; 4], oif: u32) -> Object {
    Object::Route(Route {
        table: 254,
        dst: IpAddr::V4(Ipv4Addr::from(dst)),
        dst_len: 24,
        tos: 0,
        priority: 0,
        rtype: 1,
        protocol: 3,
        scope: 0,
        prefsrc: None,
        mtu: 0,
        nexthops: NextHops::Single(Hop {
            gateway: Some(IpAddr::V4(Ipv4Addr::new(10, 0, oif as u8, 1))),
            oif,
            weight: 1,
            flags: 0,
        }),
    })
}

fn replay_state(oseq: u64) -> Object {
    Object::XfrmReplay(XfrmReplay {
        daddr: IpAddr::V4(Ipv4Addr::new(10, 9, 0, 1)),
        spi: 0x100,
        proto: 50,
        mark: (0, 0),
        oseq,
        seq: oseq,
        esn: false,
        bitmap: vec![0],
    })
}

/// A processor with `blades` blades (numbers 1..), reading `linux`, its
/// initial dump done and every blade connected (conn 1) and replayed.
fn processor(linux: &FakeLinux, args: &[&str], blades: u32) -> (Processor, Vec<FakeBlade>) {
    let mut argv = vec!["cmgrd".to_owned(), "-F".to_owned()];
    for b in 1..=blades {
        argv.extend(["--blade".into(), format!("{b}=unix:/nonexistent/fpd{b}")]);
    }
    argv.extend(args.iter().map(|a| a.to_string()));
    let m = crate::options::command().get_matches_from(argv);
    let config = crate::options::Options::from_matches(&m);
    let mut sessions = Vec::new();
    let mut fakes = Vec::new();
    for (b, endpoint) in &config.blades {
        let (tx, rx) = mpsc::unbounded_channel();
        let stats = Arc::new(QueueStats::default());
        sessions.push(BladeSession::new(*b, endpoint.clone(), stats.clone(), tx));
        fakes.push(FakeBlade { rx, stats });
    }
    let mut p = Processor::new(
        config,
        Box::new(linux.clone()),
        sessions,
        Arc::default(),
        false,
    );
    p.full_resync().unwrap();
    p.state = super::SyncState::Synced;
    p.flush();
    for index in 0..fakes.len() {
        p.on_blade(BladeEvent::Up { index, conn: 1 });
    }
    (p, fakes)
}

#[test]
fn a_link_losing_carrier_has_its_silently_deleted_routes_withdrawn() {
    let linux = FakeLinux::default();
    linux.set(
        Scope::whole(ObjectKind::Link),
        vec![
            link(2, IFF_UP | IFF_LOWER_UP),
            link(3, IFF_UP | IFF_LOWER_UP),
        ],
    );
    let on_2 = route([10, 2, 0, 0], 2);
    let on_3 = route([10, 3, 0, 0], 3);
    linux.set(
        Scope::new(ObjectKind::Route, AF_INET),
        vec![on_2.clone(), on_3.clone()],
    );
    let (mut p, mut blades) = processor(&linux, &[], 1);
    let replay = blades[0].take();
    assert!(matches!(replay.first(), Some(Message::SyncBegin { .. })));
    assert!(ops(&replay).contains(&(Op::Add, on_2.clone())));

    // The kernel deletes link 2's IPv4 routes without RTM_DELROUTE, then
    // announces the link: carrier lost, still administratively up.
    linux.set(Scope::new(ObjectKind::Route, AF_INET), vec![on_3.clone()]);
    p.on_new(link(2, IFF_UP), 0);
    assert!(p.reconcile_since.is_some(), "no re-dump scheduled");
    p.run_reconcile();
    p.flush();
    let sent = ops(&blades[0].take());
    assert!(
        sent.contains(&(Op::Delete, on_2.clone())),
        "the silently deleted route was not withdrawn: {sent:?}"
    );
    assert!(!sent.iter().any(|(_, o)| *o == on_3), "{sent:?}");
    assert_eq!(p.sync.silent_deletions, 1);
    assert_eq!(p.sync.reconciles, 1);
}

#[test]
fn a_link_without_routes_going_down_costs_no_re_dump() {
    let linux = FakeLinux::default();
    linux.set(
        Scope::whole(ObjectKind::Link),
        vec![link(2, IFF_UP | IFF_LOWER_UP)],
    );
    let (mut p, mut blades) = processor(&linux, &[], 1);
    blades[0].take();
    p.on_new(link(2, 0), 0);
    assert!(p.reconcile_since.is_none());
    p.flush();
    assert_eq!(ops(&blades[0].take()), vec![(Op::Replace, link(2, 0))]);
}

#[test]
fn reconcile_makes_the_cache_and_the_blades_equal_to_linux() {
    let linux = FakeLinux::default();
    let kept = route([10, 1, 0, 0], 1);
    let gone = route([10, 2, 0, 0], 1);
    linux.set(
        Scope::new(ObjectKind::Route, AF_INET),
        vec![kept.clone(), gone.clone()],
    );
    let (mut p, mut blades) = processor(&linux, &[], 1);
    blades[0].take();
    // Linux changed behind the processor's back: one route gone, one new.
    let new = route([10, 3, 0, 0], 1);
    linux.set(
        Scope::new(ObjectKind::Route, AF_INET),
        vec![kept.clone(), new.clone()],
    );
    p.schedule(&[Scope::new(ObjectKind::Route, AF_INET)]);
    p.run_reconcile();
    p.flush();
    let mut sent = ops(&blades[0].take());
    sent.sort_by_key(|(op, _)| *op == Op::Add);
    assert_eq!(sent, vec![(Op::Delete, gone), (Op::Add, new.clone())]);
    // Reconciled again with nothing changed: nothing sent.
    p.schedule(&[Scope::new(ObjectKind::Route, AF_INET)]);
    p.run_reconcile();
    p.flush();
    assert!(ops(&blades[0].take()).is_empty());
    assert!(p.cache.contains(&new.key()));
}

#[test]
fn an_overflowed_queue_is_replayed_once_drained_with_no_later_change() {
    let linux = FakeLinux::default();
    let routes: Vec<Object> = (0..200).map(|i| route([10, 0, i as u8, 0], 1)).collect();
    linux.set(Scope::new(ObjectKind::Route, AF_INET), routes.clone());
    // A limit the replay alone passes: the allowance covers it until it
    // is acked; then a change on top of an unread queue overflows.
    let (mut p, mut blades) = processor(&linux, &["--max-queue", "1K"], 1);
    let stats = blades[0].stats.clone();
    stats.acked_up_to(u64::MAX - 1); // the replay acked: in sync
    assert_eq!(stats.in_sync.load(std::sync::atomic::Ordering::Relaxed), 1);
    for i in 0..50u8 {
        p.on_new(route([10, 1, i, 0], 1), 0);
    }
    p.flush();
    assert!(
        matches!(p.blades[0].state, SessionState::Overflowed { .. }),
        "{:?}",
        p.blades[0].state
    );
    assert_eq!(p.sync_state(), super::SyncState::Resyncing);
    assert_eq!(
        stats.overflows.load(std::sync::atomic::Ordering::Relaxed),
        1
    );
    // The writer drains the queue (its frames go with the old connection)
    // and says so; the processor replays without any new change.
    let drained = blades[0].take();
    assert!(!drained.is_empty());
    p.on_blade(BladeEvent::Drained { index: 0 });
    let replay = blades[0].take();
    assert!(matches!(replay.first(), Some(Message::SyncBegin { .. })));
    assert!(matches!(replay.last(), Some(Message::SyncEnd { .. })));
    let replayed = ops(&replay);
    assert_eq!(replayed.len(), 250, "the whole cache, routes old and new");
    assert!(matches!(p.blades[0].state, SessionState::Up { .. }));
}

#[test]
fn ipsec_sequence_numbers_go_only_to_blades_with_ha_on() {
    let linux = FakeLinux::default();
    let (mut p, mut blades) = processor(&linux, &[], 2);
    for b in &mut blades {
        b.take();
    }
    p.set_ipsec_ha(2, true);
    for b in &mut blades {
        b.take();
    }
    let r = route([10, 5, 0, 0], 1);
    p.pending.push((Op::Add, replay_state(7)));
    p.pending.push((Op::Add, r.clone()));
    p.flush();
    assert_eq!(ops(&blades[0].take()), vec![(Op::Add, r.clone())]);
    assert_eq!(
        ops(&blades[1].take()),
        vec![(Op::Add, replay_state(7)), (Op::Add, r)]
    );
    // A batch of sequence numbers alone sends nothing to blade 1.
    p.pending.push((Op::Add, replay_state(8)));
    p.flush();
    assert!(blades[0].take().is_empty());
    assert_eq!(ops(&blades[1].take()), vec![(Op::Add, replay_state(8))]);
}

#[test]
fn a_reconcile_waits_for_a_quiet_moment_but_not_longer_than_its_delay() {
    let linux = FakeLinux::default();
    linux.set(
        Scope::whole(ObjectKind::Link),
        vec![link(2, IFF_UP | IFF_LOWER_UP)],
    );
    let on_2 = route([10, 2, 0, 0], 2);
    linux.set(Scope::new(ObjectKind::Route, AF_INET), vec![on_2.clone()]);
    let (mut p, mut blades) = processor(&linux, &[], 1);
    blades[0].take();
    let t0 = std::time::Instant::now();
    // Carrier lost at t0; events keep coming (no quiet moment).
    linux.set(Scope::new(ObjectKind::Route, AF_INET), vec![]);
    p.now = t0;
    p.on_new(link(2, IFF_UP), 0);
    p.after_event(t0 + super::RECONCILE_DELAY - std::time::Duration::from_millis(1));
    p.flush();
    assert_eq!(ops(&blades[0].take()), vec![(Op::Replace, link(2, IFF_UP))]);
    assert_eq!(p.sync.reconciles, 0, "reconciled before its delay");
    // The delay is over: it runs, though events still come.
    p.after_event(t0 + super::RECONCILE_DELAY);
    p.flush();
    assert_eq!(ops(&blades[0].take()), vec![(Op::Delete, on_2)]);
    assert_eq!(p.sync.reconciles, 1);
    assert!(p.reconcile_since.is_none());
}

#[test]
fn the_link_poll_runs_on_its_tick_and_sends_what_changed_unannounced() {
    let linux = FakeLinux::default();
    linux.set(
        Scope::whole(ObjectKind::Link),
        vec![link(2, IFF_UP | IFF_LOWER_UP)],
    );
    let (mut p, mut blades) = processor(&linux, &["--link-poll", "1000"], 1);
    blades[0].take();
    let t0 = std::time::Instant::now();
    let mut ticks = p.ticks(t0);
    // The kernel changes a link without a message (a bridge's MAC).
    let Object::Link(mut changed) = link(2, IFF_UP | IFF_LOWER_UP) else {
        unreachable!()
    };
    changed.mac = vec![2, 0, 0, 0, 0, 0x99];
    linux.set(
        Scope::whole(ObjectKind::Link),
        vec![Object::Link(changed.clone())],
    );
    let ms = std::time::Duration::from_millis;
    let wait = p.tick(&mut ticks, t0 + ms(999));
    assert!(wait <= ms(1), "{wait:?}");
    assert!(ops(&blades[0].take()).is_empty(), "polled before its tick");
    let wait = p.tick(&mut ticks, t0 + ms(1000));
    assert!(wait > ms(0) && wait <= ms(1000), "{wait:?}");
    assert_eq!(
        ops(&blades[0].take()),
        vec![(Op::Replace, Object::Link(changed))]
    );
    assert_eq!(p.sync.silent_changes, 1);
    // Next due a period after it was due (at 2000 ms), though it ran late:
    // a change at 2100 ms is found at 2100, the next one at 3000.
    let mut polled = |p: &mut Processor, ticks: &mut super::event_loop::Ticks, at, flags| {
        linux.set(Scope::whole(ObjectKind::Link), vec![link(2, flags)]);
        p.tick(ticks, t0 + ms(at));
        !ops(&blades[0].take()).is_empty()
    };
    assert!(polled(&mut p, &mut ticks, 2100, IFF_UP));
    assert!(!polled(&mut p, &mut ticks, 2999, IFF_UP | IFF_LOWER_UP));
    assert!(polled(&mut p, &mut ticks, 3000, IFF_UP | IFF_LOWER_UP));
    // Far behind: next due a period from when it ran, not at once again.
    assert!(polled(&mut p, &mut ticks, 9000, IFF_UP));
    assert!(!polled(&mut p, &mut ticks, 9999, IFF_UP | IFF_LOWER_UP));
    assert!(polled(&mut p, &mut ticks, 10000, IFF_UP | IFF_LOWER_UP));
}

#[test]
fn the_sync_state_is_published_when_it_changes_and_only_then() {
    let linux = FakeLinux::default();
    linux.set(
        Scope::new(ObjectKind::Route, AF_INET),
        (0..200).map(|i| route([10, 0, i as u8, 0], 1)).collect(),
    );
    let (mut p, mut blades) = processor(&linux, &["--max-queue", "1K"], 1);
    let (tx, mut rx) = tokio::sync::watch::channel(super::SyncState::InitialDump);
    p.published = Some(tx);
    let stats = blades[0].stats.clone();
    // The replay is acked: in sync, and said once.
    assert!(stats.acked_up_to(u64::MAX - 1));
    assert!(!stats.acked_up_to(u64::MAX - 1), "said twice");
    p.on_blade(BladeEvent::InSync { index: 0 });
    p.after_event(p.now);
    assert!(rx.has_changed().unwrap());
    assert_eq!(*rx.borrow_and_update(), super::SyncState::Synced);
    p.after_event(p.now);
    assert!(!rx.has_changed().unwrap(), "published with no change");
    // An overflow: resyncing, published by the step that caused it.
    for i in 0..50u8 {
        p.on_new(route([10, 1, i, 0], 1), 0);
    }
    p.flush();
    p.after_event(p.now);
    assert_eq!(*rx.borrow_and_update(), super::SyncState::Resyncing);
    // Drained, replayed, then acked: the ack alone (no other event)
    // brings it back.
    blades[0].take();
    p.on_blade(BladeEvent::Drained { index: 0 });
    p.after_event(p.now);
    assert!(
        !rx.has_changed().unwrap(),
        "in sync before the replay's ack"
    );
    assert!(stats.acked_up_to(u64::MAX - 1));
    p.on_blade(BladeEvent::InSync { index: 0 });
    p.after_event(p.now);
    assert_eq!(*rx.borrow_and_update(), super::SyncState::Synced);
}
