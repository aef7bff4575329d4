//! IPsec (XFRM): policies from the real kernel (`ip xfrm policy`), SAs
//! from byte fixtures (this kernel has no ESP: `ip xfrm state add ...
//! proto esp` fails), fed through cmgrd's XFRM decoder and sync path with
//! `netlink replay xfrm`: add, replay-number updates with and without IPsec
//! HA (`-R`, and switched live), delete, expire, flush, migrate; and the
//! disable flags.

use std::net::IpAddr;
use std::time::Duration;

use fpc::{Lifetime, Object, ObjectKey, QueryClient, XfrmReplay, XfrmSa, XfrmSp, XfrmTmpl};
use fpsync_tests::fixtures::{sa, selector};
use fpsync_tests::{Setup, TempDir};
use instance::netlink::xfrm::{build, Migration, IPSEC_PROTO_ANY};

const SYNC: Duration = Duration::from_secs(1);

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn fp(s: &Setup) -> Vec<Object> {
    QueryClient::connect(&s.endpoint, "test", Duration::from_secs(5))
        .and_then(|mut c| c.dump())
        .unwrap()
}

fn fp_get(s: &Setup, key: &ObjectKey) -> Option<Object> {
    fp(s).into_iter().find(|o| &o.key() == key)
}

/// Waits until `f` holds of fpd's object under `key` (None when absent):
/// acknowledged ops may still be in flight.
fn fp_until(s: &Setup, key: &ObjectKey, f: impl Fn(Option<&Object>) -> bool) -> Option<Object> {
    fpsync_tests::wait_until(SYNC, || f(fp_get(s, key).as_ref()));
    let o = fp_get(s, key);
    assert!(f(o.as_ref()), "fpd's {key:?} is {o:?}");
    o
}

fn count(s: &Setup, pred: impl Fn(&Object) -> bool) -> usize {
    fp(s).iter().filter(|o| pred(o)).count()
}

/// Writes `messages` to a file and has cmgrd replay them as XFRM messages.
fn replay(s: &Setup, dir: &TempDir, messages: &[Vec<u8>]) {
    let path = dir.path.join(format!("xfrm-{}", fpsync_tests::unique()));
    std::fs::write(&path, messages.concat()).unwrap();
    let answer = s.console(&format!("netlink replay xfrm {}", path.display()));
    assert_eq!(
        answer,
        format!("replayed {} netlink messages\n\n", messages.len())
    );
}

fn replay_of(sa: &XfrmSa, oseq: u64, seq: u64) -> XfrmReplay {
    XfrmReplay {
        daddr: sa.daddr,
        spi: sa.spi,
        proto: sa.proto,
        mark: sa.mark,
        oseq,
        seq,
        esn: false,
        bitmap: vec![0xff],
    }
}

fn sa_key(sa: &XfrmSa) -> ObjectKey {
    ObjectKey::XfrmSa(sa.key())
}

fn replay_key(sa: &XfrmSa) -> ObjectKey {
    ObjectKey::XfrmReplay(sa.key())
}

fn is_sp(o: &Object) -> bool {
    matches!(o, Object::XfrmSp(_))
}

const POLICY: &str = "src 10.1.0.0/16 dst 10.2.0.0/16 dir out";
const TMPL: &str = "tmpl src 192.0.2.1 dst 192.0.2.2 proto esp reqid 7 mode tunnel";

fn xfrm(s: &Setup, args: &str) {
    let mut full = vec!["xfrm"];
    full.extend(args.split_whitespace());
    s.ns.ip(&full);
}

#[test]
fn kernel_policies_add_update_delete_flush() {
    let s = Setup::new("xfrm-sp");
    xfrm(&s, &format!("policy add {POLICY} priority 100 {TMPL}"));
    s.assert_in_sync(SYNC);
    let sps: Vec<XfrmSp> = fp(&s)
        .into_iter()
        .filter_map(|o| match o {
            Object::XfrmSp(sp) => Some(sp),
            _ => None,
        })
        .collect();
    assert_eq!(sps.len(), 1, "{sps:?}");
    assert_eq!(sps[0].priority, 100);
    assert_eq!(sps[0].dir, 1);
    assert_eq!(
        sps[0].tmpls,
        vec![XfrmTmpl {
            daddr: ip("192.0.2.2"),
            spi: 0,
            proto: 50,
            saddr: ip("192.0.2.1"),
            reqid: 7,
            mode: 1,
            share: 0,
            optional: 0,
            aalgos: u32::MAX,
            ealgos: u32::MAX,
            calgos: u32::MAX,
        }]
    );
    // Update in place (same index), then more of every direction.
    xfrm(&s, &format!("policy update {POLICY} priority 200 {TMPL}"));
    s.assert_in_sync(SYNC);
    xfrm(
        &s,
        "policy add src 10.2.0.0/16 dst 10.1.0.0/16 dir in action block",
    );
    xfrm(
        &s,
        "policy add src 2001:db8:2::/48 dst 2001:db8:1::/48 proto udp dport 4500 dir fwd mark 5 mask 0xff",
    );
    s.assert_in_sync(SYNC);
    assert_eq!(count(&s, is_sp), 3);
    let sp = fp(&s)
        .into_iter()
        .find_map(|o| match o {
            Object::XfrmSp(sp) if sp.dir == 1 => Some(sp),
            _ => None,
        })
        .unwrap();
    assert_eq!(sp.priority, 200, "updated");
    xfrm(&s, "policy delete src 10.2.0.0/16 dst 10.1.0.0/16 dir in");
    s.assert_in_sync(SYNC);
    assert_eq!(count(&s, is_sp), 2);
    xfrm(&s, "policy flush");
    s.assert_in_sync(SYNC);
    assert_eq!(count(&s, is_sp), 0);
    let netlink = s.console("show netlink");
    assert!(
        netlink.contains("XFRM_MSG_UPDPOLICY") && netlink.contains("XFRM_MSG_FLUSHPOLICY"),
        "{netlink}"
    );
    let modules = s.console("show modules");
    assert!(modules.contains("xfrm-migrate"), "{modules}");
}

#[test]
fn sa_fixtures_and_replay_numbers_follow_ipsec_ha_live() {
    // No -R: the blade starts without IPsec HA.
    let s = Setup::new("xfrm-sa");
    let dir = TempDir::new("xfrm-sa");
    let a = sa(0x1001);
    replay(
        &s,
        &dir,
        &[build::new_sa(&a, Some(&replay_of(&a, 10, 9)), false)],
    );
    match fp_until(&s, &sa_key(&a), |o| o.is_some()) {
        Some(Object::XfrmSa(got)) => assert_eq!(got, a),
        other => panic!("{other:?}"),
    }
    // Sequence numbers reach no blade without HA.
    replay(
        &s,
        &dir,
        &[build::new_ae(&replay_of(&a, 50, 40), &a.saddr, 7, 32)],
    );
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(fp_get(&s, &replay_key(&a)), None);
    // Enabling HA pushes the current numbers at once.
    let answer = s.console("ipsec ha enable");
    assert!(answer.contains("enabled"), "{answer}");
    fp_until(&s, &replay_key(&a), |o| {
        o == Some(&Object::XfrmReplay(replay_of(&a, 50, 40)))
    });
    // And then every update.
    replay(
        &s,
        &dir,
        &[build::new_ae(&replay_of(&a, 70, 66), &a.saddr, 7, 32)],
    );
    fp_until(&s, &replay_key(&a), |o| {
        o == Some(&Object::XfrmReplay(replay_of(&a, 70, 66)))
    });
    // An SA update carries its numbers too.
    let mut a2 = a.clone();
    a2.lifetime.hard_add_seconds = 7200;
    replay(
        &s,
        &dir,
        &[build::new_sa(&a2, Some(&replay_of(&a2, 80, 77)), true)],
    );
    fp_until(&s, &sa_key(&a), |o| o == Some(&Object::XfrmSa(a2.clone())));
    fp_until(&s, &replay_key(&a), |o| {
        o == Some(&Object::XfrmReplay(replay_of(&a, 80, 77)))
    });
    // Disabling withdraws them; the SA stays.
    s.console("ipsec ha disable blade 1");
    fp_until(&s, &replay_key(&a), |o| o.is_none());
    replay(
        &s,
        &dir,
        &[build::new_ae(&replay_of(&a, 90, 88), &a.saddr, 7, 32)],
    );
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(fp_get(&s, &replay_key(&a)), None);
    assert!(fp_get(&s, &sa_key(&a)).is_some());
    // Delete.
    replay(&s, &dir, &[build::del_sa(&a2)]);
    fp_until(&s, &sa_key(&a), |o| o.is_none());
    // Policies and SAs are compared with Linux only where Linux has them:
    // nothing else differs.
    s.assert_in_sync(SYNC);
}

#[test]
fn with_dash_r_expire_flush_and_migrate() {
    let s = Setup::with_args("xfrm-ha", &["-R"]);
    let dir = TempDir::new("xfrm-ha");
    let (a, b, c) = (sa(0x2001), sa(0x2002), sa(0x2003));
    let mut ah = sa(0x2004);
    ah.proto = 51;
    let sp = XfrmSp {
        sel: selector(),
        dir: 1,
        index: 0x1001 * 8 + 1,
        ptype: 0,
        priority: 100,
        action: 0,
        flags: 0,
        mark: (0, 0),
        if_id: 0,
        lifetime: Lifetime::default(),
        tmpls: vec![XfrmTmpl {
            daddr: ip("192.0.2.2"),
            spi: 0,
            proto: 50,
            saddr: ip("192.0.2.1"),
            reqid: 7,
            mode: 1,
            share: 0,
            optional: 0,
            aalgos: u32::MAX,
            ealgos: u32::MAX,
            calgos: u32::MAX,
        }],
    };
    replay(
        &s,
        &dir,
        &[
            build::new_sa(&a, Some(&replay_of(&a, 1, 2)), false),
            build::new_sa(&b, Some(&replay_of(&b, 3, 4)), false),
            build::new_sa(&c, None, false),
            build::new_sa(&ah, None, false),
            build::new_sp(&sp),
        ],
    );
    // With -R the numbers arrive with the SA.
    fp_until(&s, &replay_key(&a), |o| {
        o == Some(&Object::XfrmReplay(replay_of(&a, 1, 2)))
    });
    fp_until(&s, &replay_key(&b), |o| o.is_some());
    let ha = s.console("ipsec ha show");
    assert!(ha.contains("enabled"), "{ha}");
    // A soft expire changes nothing, a hard one deletes (SA and numbers).
    replay(&s, &dir, &[build::expire(&a, false)]);
    std::thread::sleep(Duration::from_millis(200));
    assert!(fp_get(&s, &sa_key(&a)).is_some());
    replay(&s, &dir, &[build::expire(&a, true)]);
    fp_until(&s, &sa_key(&a), |o| o.is_none());
    fp_until(&s, &replay_key(&a), |o| o.is_none());
    // Migrate b (and c, reqid 7 too) and the policy to new addresses.
    let mv = Migration {
        old_daddr: ip("192.0.2.2"),
        old_saddr: ip("192.0.2.1"),
        new_daddr: ip("198.51.100.2"),
        new_saddr: ip("198.51.100.1"),
        proto: 50,
        mode: 1,
        reqid: 7,
    };
    replay(&s, &dir, &[build::migrate(&sp.sel, 1, &[mv])]);
    let mut moved = b.clone();
    moved.daddr = ip("198.51.100.2");
    moved.saddr = ip("198.51.100.1");
    fp_until(&s, &sa_key(&b), |o| o.is_none());
    fp_until(&s, &sa_key(&moved), |o| {
        o == Some(&Object::XfrmSa(moved.clone()))
    });
    let mut moved_replay = replay_of(&b, 3, 4);
    moved_replay.daddr = moved.daddr;
    fp_until(&s, &replay_key(&moved), |o| {
        o == Some(&Object::XfrmReplay(moved_replay.clone()))
    });
    match fp_until(
        &s,
        &ObjectKey::XfrmSp(sp.key()),
        |o| matches!(o, Some(Object::XfrmSp(p)) if p.tmpls[0].daddr == moved.daddr),
    ) {
        Some(Object::XfrmSp(p)) => assert_eq!(p.tmpls[0].saddr, moved.saddr),
        other => panic!("{other:?}"),
    }
    let mut c_moved = c.clone();
    c_moved.daddr = moved.daddr;
    c_moved.saddr = moved.saddr;
    fp_until(&s, &sa_key(&c_moved), |o| o.is_some());
    // A flush of ESP leaves the AH SA; a flush of every protocol does not.
    replay(&s, &dir, &[build::flush_sa(50)]);
    fp_until(&s, &sa_key(&moved), |o| o.is_none());
    fp_until(&s, &replay_key(&moved), |o| o.is_none());
    assert!(fp_get(&s, &sa_key(&ah)).is_some());
    replay(&s, &dir, &[build::flush_sa(IPSEC_PROTO_ANY)]);
    fp_until(&s, &sa_key(&ah), |o| o.is_none());
    assert_eq!(
        count(&s, |o| matches!(
            o,
            Object::XfrmSa(_) | Object::XfrmReplay(_)
        )),
        0
    );
}

#[test]
fn disable_sync_ipsec_keeps_all_of_it_out() {
    for flag in ["--disable-sync-ipsec", "-S0x10000"] {
        let s = Setup::with_args("xfrm-off", &[flag]);
        let dir = TempDir::new("xfrm-off");
        xfrm(&s, &format!("policy add {POLICY} {TMPL}"));
        let a = sa(0x3001);
        replay(
            &s,
            &dir,
            &[build::new_sa(&a, Some(&replay_of(&a, 1, 1)), false)],
        );
        s.console("ipsec ha enable");
        s.assert_in_sync(SYNC);
        std::thread::sleep(Duration::from_millis(200));
        assert_eq!(
            count(&s, |o| matches!(
                o,
                Object::XfrmSa(_) | Object::XfrmSp(_) | Object::XfrmReplay(_)
            )),
            0,
            "{flag}"
        );
        assert_eq!(s.fp_counter("ipsec_sps"), 0);
    }
    // --disable-sync-svti is VTI only: policies still sync (the seed).
    let s = Setup::with_args("xfrm-svti", &["--disable-sync-svti"]);
    xfrm(&s, &format!("policy add {POLICY} {TMPL}"));
    s.assert_in_sync(SYNC);
    assert_eq!(count(&s, is_sp), 1);
}
