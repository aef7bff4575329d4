//! Tests of the message codec: every message round-trips, frames and headers are checked.

use super::*;
use crate::object::tests::samples;

/// One message of every kind.
pub(crate) fn messages() -> Vec<Message> {
    let objects = samples();
    vec![
        Message::Hello(Hello {
            version: VERSION,
            role: Role::Sync,
            instance: 3,
            blade: 1,
            capabilities: all_capabilities(),
            election_id: 0,
            name: "cmgrd3".into(),
        }),
        Message::Hello(Hello {
            version: 0xffff,
            role: Role::Query,
            instance: 0,
            blade: u32::MAX,
            capabilities: 0,
            election_id: 0,
            name: String::new(),
        }),
        Message::SyncBegin { generation: 1 },
        Message::SyncEnd {
            generation: u64::MAX,
        },
        Message::Batch(vec![]),
        Message::Batch(
            objects
                .iter()
                .zip([Op::Add, Op::Replace, Op::Delete].into_iter().cycle())
                .map(|(o, op)| (op, o.clone()))
                .collect(),
        ),
        Message::Ack(vec![]),
        Message::Ack(vec![
            (0, ObjectError::NotFound),
            (7, ObjectError::Invalid),
            (u32::MAX, ObjectError::Unsupported),
        ]),
        Message::Error {
            code: ErrorCode::VersionMismatch as u16,
            message: "version 2, not 1 — ünïcode".into(),
        },
        Message::DumpRequest,
        Message::Keepalive,
        Message::Arbitration {
            primary: true,
            primary_instance: 7,
            primary_election_id: u64::MAX,
        },
        Message::DumpEnd { count: 12345 },
        Message::CountersRequest,
        Message::Counters(vec![("routes4".into(), 1_000_000), ("links".into(), 0)]),
        Message::RouteGet {
            table: 254,
            addr: "10.1.2.3".parse().unwrap(),
        },
        Message::RouteGet {
            table: 100,
            addr: "2001:db8::1".parse().unwrap(),
        },
        Message::RouteReply(None),
        Message::RouteReply(Some(objects[4].clone())),
        Message::StatsRequest,
        Message::Stats(vec![]),
        Message::Stats(vec![
            InterfaceStats {
                ifindex: 2,
                name: "veth-a".into(),
                counters: vec![("rx_packets".into(), 10), ("tx_bytes".into(), u64::MAX)],
            },
            InterfaceStats {
                ifindex: u32::MAX,
                name: String::new(),
                counters: vec![],
            },
        ]),
        Message::HitFlags(vec![]),
        Message::HitFlags(vec![
            Hit::Neigh {
                ifindex: 3,
                dst: "10.2.0.2".parse().unwrap(),
            },
            Hit::NeighWanted {
                ifindex: 4,
                dst: "fe80::1".parse().unwrap(),
            },
            Hit::Conntrack {
                orig: CtTuple {
                    src: "fd01::2".parse().unwrap(),
                    dst: "fd02::2".parse().unwrap(),
                    proto: 17,
                    sport: 4000,
                    dport: 5678,
                },
                zone: 7,
                timeout: 30,
            },
        ]),
    ]
}

#[test]
fn hit_flags_bytes() {
    let mut frame = Vec::new();
    Message::HitFlags(vec![Hit::Neigh {
        ifindex: 3,
        dst: "10.2.0.2".parse().unwrap(),
    }])
    .emit(0, &mut frame);
    #[rustfmt::skip]
    let expected = [
        0xfb, 0x5c, 15, 0, 0, 0, 0, 14, 0, 0, 0, 0, 0, 0, 0, 0,
        0, 0, 0, 1,             // one hit
        1,                      // a neighbour used
        0, 0, 0, 3,             // ifindex
        4, 10, 2, 0, 2,         // 10.2.0.2
    ];
    assert_eq!(frame, expected);
    let mut bad = frame.clone();
    bad[20] = 9;
    assert!(parse_frame(&bad).is_err());
}

#[test]
fn conntrack_hit_bytes() {
    let mut frame = Vec::new();
    let hit = Hit::Conntrack {
        orig: CtTuple {
            src: "10.1.0.2".parse().unwrap(),
            dst: "10.2.0.2".parse().unwrap(),
            proto: 17,
            sport: 4000,
            dport: 5678,
        },
        zone: 2,
        timeout: 3,
    };
    Message::HitFlags(vec![hit]).emit(0, &mut frame);
    #[rustfmt::skip]
    let expected = [
        0xfb, 0x5c, 15, 0, 0, 0, 0, 26, 0, 0, 0, 0, 0, 0, 0, 0,
        0, 0, 0, 1,             // one hit
        3,                      // a conntrack entry used
        4, 10, 1, 0, 2,         // original source 10.1.0.2
        4, 10, 2, 0, 2,         // original destination 10.2.0.2
        17,                     // UDP
        0x0f, 0xa0, 0x16, 0x2e, // ports 4000 -> 5678
        0, 2,                   // zone
        0, 0, 0, 3,             // timeout
    ];
    assert_eq!(frame, expected);
    assert_eq!(parse_frame(&frame).unwrap().1, Message::HitFlags(vec![hit]));
    for cut in HEADER_LEN..frame.len() {
        let mut short = frame[..cut].to_vec();
        short[4..8].copy_from_slice(&((cut - HEADER_LEN) as u32).to_be_bytes());
        assert!(parse_frame(&short).is_err(), "cut at {cut}");
    }
}

#[test]
fn stats_bytes() {
    let mut frame = Vec::new();
    Message::Stats(vec![InterfaceStats {
        ifindex: 2,
        name: "a".into(),
        counters: vec![("rx".into(), 5)],
    }])
    .emit(1, &mut frame);
    #[rustfmt::skip]
    let expected = [
        0xfb, 0x5c, 14, 0, 0, 0, 0, 27, 0, 0, 0, 0, 0, 0, 0, 1,
        0, 0, 0, 1,             // one interface
        0, 0, 0, 2,             // ifindex
        0, 1, b'a',             // name
        0, 0, 0, 1,             // one counter
        0, 2, b'r', b'x', 0, 0, 0, 0, 0, 0, 0, 5,
    ];
    assert_eq!(frame, expected);
}

#[test]
fn every_message_round_trips() {
    for (i, m) in messages().into_iter().enumerate() {
        let seq = (i as u64) << 40 | 7;
        let mut frame = Vec::new();
        m.emit(seq, &mut frame);
        let (header, back) = parse_frame(&frame).unwrap();
        assert_eq!(back, m);
        assert_eq!(header.seq, seq);
        assert_eq!(header.body_len, frame.len() - HEADER_LEN);
        // Frames append: two in one buffer split where they should.
        let mut two = frame.clone();
        m.emit(seq + 1, &mut two);
        let (_, first) = parse_frame(&two[..frame.len()]).unwrap();
        let (h2, second) = parse_frame(&two[frame.len()..]).unwrap();
        assert_eq!((first, second, h2.seq), (m.clone(), m, seq + 1));
    }
}

#[test]
fn sync_begin_bytes() {
    let mut frame = Vec::new();
    Message::SyncBegin {
        generation: 0x0102_0304_0506_0708,
    }
    .emit(42, &mut frame);
    #[rustfmt::skip]
    let expected = [
        0xfb, 0x5c,             // magic
        2,                      // kind SyncBegin
        0,                      // flags
        0, 0, 0, 8,             // body length
        0, 0, 0, 0, 0, 0, 0, 42, // sequence number
        1, 2, 3, 4, 5, 6, 7, 8, // generation
    ];
    assert_eq!(frame, expected);
    let (header, msg) = parse_frame(&expected).unwrap();
    assert_eq!((header.seq, header.flags), (42, 0));
    assert_eq!(
        msg,
        Message::SyncBegin {
            generation: 0x0102_0304_0506_0708
        }
    );
}

#[test]
fn ack_bytes() {
    let mut frame = Vec::new();
    Message::Ack(vec![(3, ObjectError::NotFound)]).emit(9, &mut frame);
    #[rustfmt::skip]
    let expected = [
        0xfb, 0x5c, 5, 0, 0, 0, 0, 10, 0, 0, 0, 0, 0, 0, 0, 9,
        0, 0, 0, 1,             // one error
        0, 0, 0, 3, 0, 1,       // index 3, NotFound
    ];
    assert_eq!(frame, expected);
}

#[test]
fn headers_are_checked() {
    let mut frame = Vec::new();
    Message::DumpRequest.emit(1, &mut frame);
    let mut bad = frame.clone();
    bad[1] = 0;
    assert!(matches!(
        parse_frame(&bad),
        Err(DecodeError::BadValue { what: "magic", .. })
    ));
    let mut big = frame.clone();
    big[4..8].copy_from_slice(&(MAX_BODY as u32 + 1).to_be_bytes());
    assert!(matches!(
        parse_frame(&big),
        Err(DecodeError::BadValue {
            what: "body length",
            ..
        })
    ));
    let mut kind = frame.clone();
    kind[2] = 99;
    assert!(parse_frame(&kind).is_err());
    assert!(parse_frame(&frame[..10]).is_err());
    frame.push(0);
    assert_eq!(parse_frame(&frame), Err(DecodeError::Trailing(1)));
}

#[test]
fn hello_version_is_read_from_any_hello() {
    let mut frame = Vec::new();
    messages()[1].emit(1, &mut frame);
    let raw: &[u8; HEADER_LEN] = frame[..HEADER_LEN].try_into().unwrap();
    let header = parse_header(raw).unwrap();
    assert_eq!(hello_version(&header, &[0, 9, 1]), Some(9));
    assert_eq!(hello_version(&header, &[0]), None);
    let mut other = Vec::new();
    Message::DumpRequest.emit(1, &mut other);
    let raw: &[u8; HEADER_LEN] = other[..HEADER_LEN].try_into().unwrap();
    assert_eq!(hello_version(&parse_header(raw).unwrap(), &[0, 9]), None);
}

#[test]
fn long_strings_are_cut_on_a_character_boundary() {
    let name = "é".repeat(40_000); // 80,000 bytes
    let mut frame = Vec::new();
    Message::Error {
        code: 1,
        message: name,
    }
    .emit(1, &mut frame);
    match parse_frame(&frame).unwrap().1 {
        Message::Error { message, .. } => {
            assert_eq!(message.len(), 65534);
            assert!(message.chars().all(|c| c == 'é'));
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_batch_written_an_op_at_a_time_is_the_batch_message() {
    let ops: Vec<(Op, Object)> = samples()
        .into_iter()
        .zip([Op::Add, Op::Replace, Op::Delete].into_iter().cycle())
        .map(|(o, op)| (op, o))
        .collect();
    for n in [0, 1, ops.len()] {
        let mut want = b"before".to_vec();
        Message::Batch(ops[..n].to_vec()).emit(42, &mut want);
        let mut got = b"before".to_vec();
        let mut w = BatchWriter::new(42, &mut got);
        for (op, o) in &ops[..n] {
            w.push(*op, o);
        }
        assert_eq!(w.len(), n);
        assert_eq!(w.finish(), n);
        assert_eq!(got, want);
    }
}

#[test]
fn a_split_batch_holds_the_batch_message_s_ops_in_order() {
    let objects = samples();
    let ops: Vec<(Op, Object)> = objects
        .iter()
        .chain(objects.iter().rev())
        .zip([Op::Add, Op::Replace, Op::Delete].into_iter().cycle())
        .map(|(o, op)| (op, o.clone()))
        .collect();
    assert!(ops.iter().any(|(_, o)| matches!(o, Object::Route(_))));
    let mut split = SplitBatch::default();
    for n in [0, 1, ops.len()] {
        let mut frame = Vec::new();
        Message::Batch(ops[..n].to_vec()).emit(1, &mut frame);
        split.parse(&frame[HEADER_LEN..]).unwrap();
        assert_eq!(split.len(), n);
        let mut order = Vec::new();
        let mut copy = SplitBatch {
            routes: split.routes.clone(),
            others: split.others.clone(),
        };
        copy.take_each(&mut order, |o, i, _, _| o.push(i), |o, i, _, _| o.push(i));
        assert_eq!(order, (0..n as u32).collect::<Vec<_>>());
        assert_eq!(split.to_ops(), ops[..n].to_vec());
        assert!(split.is_empty());
    }
}

#[test]
fn a_split_batch_refuses_what_the_batch_message_refuses() {
    let mut frame = Vec::new();
    Message::Batch(samples().into_iter().map(|o| (Op::Add, o)).collect()).emit(1, &mut frame);
    let body = frame[HEADER_LEN..].to_vec();
    let header = parse_header(frame[..HEADER_LEN].try_into().unwrap()).unwrap();
    let mut split = SplitBatch::default();
    // Every cut and every single-byte change: both decoders agree.
    for cut in 0..body.len() {
        let whole = Message::parse(&header, &body[..cut]).map(|_| ());
        assert_eq!(
            split.parse(&body[..cut]).map_err(|e| e.to_string()),
            whole.map_err(|e| e.to_string()),
            "cut at {cut}"
        );
    }
    for at in 0..body.len() {
        for v in [0u8, 1, 3, 0x7f, 0xff] {
            let mut b = body.clone();
            b[at] = v;
            let whole = Message::parse(&header, &b).map(|_| ());
            assert_eq!(
                split.parse(&b).map_err(|e| e.to_string()),
                whole.map_err(|e| e.to_string()),
                "byte {at} = {v}"
            );
        }
    }
}
