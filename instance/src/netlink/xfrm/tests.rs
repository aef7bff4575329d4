//! Tests of the XFRM decoder, against messages the fixture encoder builds as the kernel lays them out.

use super::*;
use crate::netlink::Messages;

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn decode_one(buf: &[u8]) -> Result<XfrmEvent, WireError> {
    let mut it = Messages::new(buf);
    let msg = it.next().expect("one message")?;
    assert!(it.next().is_none());
    decode(&msg)
}

pub(crate) fn sample_sa() -> XfrmSa {
    XfrmSa {
        sel: Selector {
            daddr: ip("10.2.0.0"),
            saddr: ip("10.1.0.0"),
            prefixlen_d: 16,
            prefixlen_s: 16,
            dport: 0,
            dport_mask: 0,
            sport: 0,
            sport_mask: 0,
            proto: 0,
            ifindex: 0,
            user: 0,
        },
        daddr: ip("192.0.2.2"),
        spi: 0xc0ffee,
        proto: 50,
        saddr: ip("192.0.2.1"),
        mode: 1,
        reqid: 7,
        replay_window: 32,
        flags: 0,
        algos: vec![
            XfrmAlgo {
                attr: XFRMA_ALG_CRYPT as u8,
                name: "cbc(aes)".into(),
                key_bits: 128,
                param: 0,
                key: vec![0x11; 16],
            },
            XfrmAlgo {
                attr: XFRMA_ALG_AUTH_TRUNC as u8,
                name: "hmac(sha256)".into(),
                key_bits: 256,
                param: 128,
                key: vec![0x22; 32],
            },
        ],
        encap: None,
        mark: (0x10, 0xff),
        if_id: 0,
        lifetime: Lifetime {
            hard_add_seconds: 3600,
            ..Lifetime::default()
        },
    }
}

fn replay_of(sa: &XfrmSa, oseq: u64, seq: u64, esn: bool) -> XfrmReplay {
    let k = sa.key();
    XfrmReplay {
        daddr: k.daddr,
        spi: k.spi,
        proto: k.proto,
        mark: k.mark,
        oseq,
        seq,
        esn,
        bitmap: if esn { vec![0xf, 0] } else { vec![0xf] },
    }
}

#[test]
fn sa_layout_is_the_kernels() {
    let sa = sample_sa();
    let msg = build::new_sa(&sa, None, false);
    // Header, 224-byte xfrm_usersa_info, then attributes.
    assert_eq!(u16::from_ne_bytes([msg[4], msg[5]]), XFRM_MSG_NEWSA);
    let info = &msg[NLMSG_HDRLEN..NLMSG_HDRLEN + sa_info::LEN];
    assert_eq!(&info[56..60], &[192, 0, 2, 2], "id.daddr");
    assert_eq!(
        &info[72..76],
        &[0, 0xc0, 0xff, 0xee],
        "id.spi, network order"
    );
    assert_eq!(info[76], 50, "id.proto");
    assert_eq!(&info[80..84], &[192, 0, 2, 1], "saddr");
    assert_eq!(u16::from_ne_bytes([info[212], info[213]]), 2, "family");
    assert_eq!((info[214], info[215]), (1, 32), "mode, replay_window");
    assert_eq!(decode_one(&msg), Ok(XfrmEvent::Sa(sa, None)));
}

#[test]
fn sa_with_replay_state_both_forms() {
    let sa = sample_sa();
    for esn in [false, true] {
        let mut sa = sa.clone();
        let r = replay_of(&sa, if esn { 5 << 32 | 9 } else { 9 }, 4, esn);
        if esn {
            sa.replay_window = 64;
        }
        let msg = build::new_sa(&sa, Some(&r), true);
        assert_eq!(decode_one(&msg), Ok(XfrmEvent::Sa(sa, Some(r))));
    }
}

#[test]
fn deletions_expires_and_flushes() {
    let sa = sample_sa();
    assert_eq!(
        decode_one(&build::del_sa(&sa)),
        Ok(XfrmEvent::DelSa(sa.key()))
    );
    assert_eq!(
        decode_one(&build::expire(&sa, true)),
        Ok(XfrmEvent::DelSa(sa.key()))
    );
    assert_eq!(
        decode_one(&build::expire(&sa, false)),
        Ok(XfrmEvent::Ignored)
    );
    assert_eq!(
        decode_one(&build::flush_sa(IPSEC_PROTO_ANY)),
        Ok(XfrmEvent::FlushSa {
            proto: IPSEC_PROTO_ANY
        })
    );
    assert!(flush_matches(IPSEC_PROTO_ANY, 50) && flush_matches(51, 51));
    assert!(!flush_matches(51, 50));
}

#[test]
fn aevent_carries_the_sequence_numbers() {
    let sa = sample_sa();
    let r = replay_of(&sa, 1000, 990, false);
    let msg = build::new_ae(&r, &sa.saddr, sa.reqid, 32);
    assert_eq!(decode_one(&msg), Ok(XfrmEvent::Replay(r)));
}

fn sample_sp() -> XfrmSp {
    XfrmSp {
        sel: sample_sa().sel,
        dir: 1,
        index: 0x201,
        ptype: 0,
        priority: 1000,
        action: 0,
        flags: 0,
        mark: (0, 0),
        if_id: 0,
        lifetime: Lifetime {
            soft_bytes: u64::MAX,
            hard_bytes: u64::MAX,
            soft_packets: u64::MAX,
            hard_packets: u64::MAX,
            ..Lifetime::default()
        },
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
    }
}

#[test]
fn policies_and_their_deletion() {
    let sp = sample_sp();
    assert_eq!(
        decode_one(&build::new_sp(&sp)),
        Ok(XfrmEvent::Sp(sp.clone()))
    );
    assert_eq!(
        decode_one(&build::del_sp(&sp)),
        Ok(XfrmEvent::DelSp(sp.key()))
    );
    // A socket policy (dir 3 + n) is not the system's.
    let mut sock = sp.clone();
    sock.dir = 4;
    assert_eq!(decode_one(&build::new_sp(&sock)), Ok(XfrmEvent::Ignored));
}

#[test]
fn migrate_lists_its_moves() {
    let sp = sample_sp();
    let mv = Migration {
        old_daddr: ip("192.0.2.2"),
        old_saddr: ip("192.0.2.1"),
        new_daddr: ip("198.51.100.2"),
        new_saddr: ip("198.51.100.1"),
        proto: 50,
        mode: 1,
        reqid: 7,
    };
    assert_eq!(
        decode_one(&build::migrate(&sp.sel, 1, std::slice::from_ref(&mv))),
        Ok(XfrmEvent::Migrate {
            sel: sp.sel,
            dir: 1,
            ptype: 0,
            moves: vec![mv]
        })
    );
}

#[test]
fn malformed_messages_are_errors_not_panics() {
    let sa = sample_sa();
    let sp = sample_sp();
    let good = [
        build::new_sa(&sa, Some(&replay_of(&sa, 1, 2, true)), false),
        build::del_sa(&sa),
        build::expire(&sa, true),
        build::new_sp(&sp),
        build::del_sp(&sp),
        build::new_ae(&replay_of(&sa, 1, 2, false), &sa.saddr, 1, 32),
        build::migrate(
            &sp.sel,
            1,
            &[Migration {
                old_daddr: ip("::1"),
                old_saddr: ip("::2"),
                new_daddr: ip("10.0.0.1"),
                new_saddr: ip("10.0.0.2"),
                proto: 50,
                mode: 1,
                reqid: 0,
            }],
        ),
    ];
    for msg in good {
        // Every truncation and every byte value at every place.
        for cut in NLMSG_HDRLEN..msg.len() {
            let mut m = msg[..cut].to_vec();
            m[0..4].copy_from_slice(&(cut as u32).to_ne_bytes());
            let _ = decode_one(&m);
        }
        for at in NLMSG_HDRLEN..msg.len() {
            for v in [0u8, 1, 2, 10, 0x7f, 0xff] {
                let mut m = msg.clone();
                m[at] = v;
                let _ = decode_one(&m);
            }
        }
    }
}
