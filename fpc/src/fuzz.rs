//! Property test of the decoders over untrusted bytes: random byte strings
//! and random mutations and truncations of valid frames, from a fixed seed.
//! Nothing may panic, and whatever decodes must re-emit to a frame that
//! decodes to the same message; a batch decoded split (routes apart, as
//! fpd reads them) gives the same verdict and ops as the whole decoder.

use rand::rngs::SmallRng as Rng64;
use rand::{Rng, SeedableRng};

use super::message::{parse_frame, parse_header, Header, Message, SplitBatch, HEADER_LEN, MAGIC};

/// Checks one input both ways the server reads frames.
fn check(bytes: &[u8]) -> bool {
    let whole = parse_frame(bytes);
    if let Ok((header, msg)) = &whole {
        re_emits(header, msg);
    }
    // As a stream reader does: the header, then as much body as it says.
    let Some(raw) = bytes.get(..HEADER_LEN) else {
        return whole.is_ok();
    };
    let raw: &[u8; HEADER_LEN] = raw.try_into().unwrap();
    if let Ok(header) = parse_header(raw) {
        let end = bytes.len().min(HEADER_LEN + header.body_len);
        let parsed = Message::parse(&header, &bytes[HEADER_LEN..end]);
        // fpd decodes batches split (routes apart): the same verdict, the
        // same ops.
        if Message::is_batch(&header) {
            let mut split = SplitBatch::default();
            let got = split.parse(&bytes[HEADER_LEN..end]);
            match &parsed {
                Ok(Message::Batch(ops)) => {
                    assert_eq!(got, Ok(()));
                    assert_eq!(&split.to_ops(), ops);
                }
                Ok(other) => panic!("a batch header gave {other:?}"),
                Err(e) => assert_eq!(got, Err(e.clone())),
            }
        }
        if let Ok(msg) = parsed {
            re_emits(&header, &msg);
        }
    }
    whole.is_ok()
}

fn re_emits(header: &Header, msg: &Message) {
    let mut again = Vec::new();
    msg.emit(header.seq, &mut again);
    let (h2, back) = parse_frame(&again).expect("a re-emitted frame parses");
    assert_eq!(&back, msg);
    assert_eq!(h2.seq, header.seq);
}

/// A frame header for `body_len` bytes of kind `kind`.
fn header_for(kind: u8, body_len: usize, rng: &mut Rng64) -> Vec<u8> {
    let mut h = Vec::with_capacity(HEADER_LEN + body_len);
    h.extend_from_slice(&MAGIC.to_be_bytes());
    h.push(kind);
    h.push(rng.random());
    h.extend_from_slice(&(body_len as u32).to_be_bytes());
    h.extend_from_slice(&rng.random::<u64>().to_be_bytes());
    h
}

fn mutate(frame: &mut Vec<u8>, rng: &mut Rng64) {
    for _ in 0..rng.random_range(1..=4) {
        let len = frame.len();
        match rng.random_range(0..7) {
            0 if len > 0 => {
                let i = rng.random_range(0..len);
                frame[i] ^= 1 << rng.random_range(0..8);
            }
            1 if len > 0 => {
                let i = rng.random_range(0..len);
                frame[i] = rng.random();
            }
            2 => frame.truncate(rng.random_range(0..=len)),
            3 => {
                let i = rng.random_range(0..=len);
                frame.insert(i, rng.random());
            }
            4 if len > 0 => {
                frame.remove(rng.random_range(0..len));
            }
            5 if len > 0 => {
                // Interesting values at a random place: lengths and counts.
                let i = rng.random_range(0..len);
                let v = [0x00, 0xff, 0x7f, 0x80, 4, 16, 32, 128][rng.random_range(0..8)];
                frame[i] = v;
            }
            _ if len > HEADER_LEN => {
                // Duplicate a chunk of the body.
                let a = rng.random_range(HEADER_LEN..len);
                let b = rng.random_range(a..=len.min(a + 32));
                let chunk = frame[a..b].to_vec();
                let at = rng.random_range(HEADER_LEN..=len);
                frame.splice(at..at, chunk);
            }
            _ => {}
        }
    }
    // Often make the header's length agree with the body, so that decoding
    // goes past the header check into the body.
    if frame.len() >= HEADER_LEN && rng.random_bool(0.7) {
        let body = (frame.len() - HEADER_LEN) as u32;
        frame[4..8].copy_from_slice(&body.to_be_bytes());
    }
}

#[test]
fn decoders_survive_random_input() {
    let mut rng = Rng64::seed_from_u64(0x00fb_5c00_2024);
    let corpus: Vec<Vec<u8>> = super::message::tests_corpus()
        .into_iter()
        .enumerate()
        .map(|(i, m)| {
            let mut f = Vec::new();
            m.emit(i as u64, &mut f);
            f
        })
        .collect();
    for f in &corpus {
        assert!(check(f), "the corpus decodes");
    }

    let mut buf = Vec::new();
    // Plain random bytes: mostly refused at the magic.
    for _ in 0..2_000_000 {
        let len = rng.random_range(0..48);
        buf.resize(len, 0);
        rng.fill(&mut buf[..]);
        check(&buf);
    }
    // A valid header over a random body: every body decoder on noise.
    let mut ok = 0;
    for _ in 0..1_000_000 {
        let len = rng.random_range(0..64);
        let kind = rng.random_range(0..17);
        let mut frame = header_for(kind, len, &mut rng);
        frame.resize(HEADER_LEN + len, 0);
        rng.fill(&mut frame[HEADER_LEN..]);
        ok += usize::from(check(&frame));
    }
    // Mutations and truncations of valid frames.
    for _ in 0..1_000_000 {
        let mut frame = corpus[rng.random_range(0..corpus.len())].clone();
        mutate(&mut frame, &mut rng);
        ok += usize::from(check(&frame));
    }
    // Some inputs must have decoded, or the test proves little.
    assert!(ok > 10_000, "only {ok} inputs decoded");
}
