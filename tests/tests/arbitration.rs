//! Primary and backup cache managers of one blade: the highest election id
//! is the primary, the others wait as backups; killing the primary (-9)
//! while routes change promotes the backup, which resyncs (mark and
//! sweep) to an empty check; the old primary back with a lower id stays a
//! backup; a backup's write is refused with a clear error; a higher id
//! takes over, and the one it displaced is told and steps back.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use fpc::{
    all_capabilities, parse_header, Endpoint, ErrorCode, Header, Hello, Message, Object, Op, Role,
    HEADER_LEN, VERSION,
};
use fpsync_tests::{bin, unique, wait_until, Daemon, Setup};

const SYNC: Duration = Duration::from_secs(10);
/// cmgrd notices a dead primary's connection at once (the kernel closes
/// it); the bound is the liveness timeout's order.
const TAKEOVER: Duration = Duration::from_secs(5);

fn cmgrd(s: &Setup, instance: u32, election_id: u64) -> Daemon {
    let args: Vec<String> = [
        "-F",
        "-I",
        &instance.to_string(),
        "--netns",
        &s.ns.name,
        "--blade",
        &format!("1={}", s.endpoint),
        "--election-id",
        &election_id.to_string(),
    ]
    .iter()
    .map(|a| a.to_string())
    .collect();
    Daemon::spawn(
        &bin("cmgrd"),
        &args,
        s.dir.path.join(format!("cmgrd{instance}.log")),
    )
}

/// A raw sync session, for the backup's write.
struct Raw {
    stream: UnixStream,
    seq: u64,
}

impl Raw {
    fn connect(ep: &Endpoint, instance: u32, election_id: u64) -> (Raw, Message) {
        let Endpoint::Unix(path) = ep else {
            panic!("a Unix endpoint")
        };
        let stream = UnixStream::connect(path).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let mut raw = Raw { stream, seq: 0 };
        raw.send(&Message::Hello(Hello {
            version: VERSION,
            role: Role::Sync,
            instance,
            blade: 1,
            capabilities: all_capabilities(),
            election_id,
            name: format!("raw{instance}"),
        }));
        assert!(matches!(raw.recv().1, Message::Hello(_)));
        let role = raw.recv().1;
        (raw, role)
    }

    fn send(&mut self, msg: &Message) -> u64 {
        self.seq += 1;
        let mut frame = Vec::new();
        msg.emit(self.seq, &mut frame);
        self.stream.write_all(&frame).unwrap();
        self.seq
    }

    /// The next frame but Keepalives.
    fn recv(&mut self) -> (Header, Message) {
        loop {
            let mut raw = [0u8; HEADER_LEN];
            self.stream.read_exact(&mut raw).unwrap();
            let header = parse_header(&raw).unwrap();
            let mut body = vec![0; header.body_len];
            self.stream.read_exact(&mut body).unwrap();
            match Message::parse(&header, &body).unwrap() {
                Message::Keepalive => {}
                msg => return (header, msg),
            }
        }
    }
}

/// Adds and removes blackhole routes until told to stop.
fn churn(s: &Setup, stop: &AtomicBool) -> u32 {
    let mut n = 0u32;
    while !stop.load(Ordering::Relaxed) {
        let net = format!("198.18.{}.0/24", n % 200);
        if n >= 200 && n.is_multiple_of(3) {
            s.ns.try_ip(&["route", "del", "blackhole", &net]);
        } else {
            s.ns.try_ip(&["route", "replace", "blackhole", &net]);
        }
        n += 1;
        std::thread::sleep(Duration::from_millis(5));
    }
    n
}

#[test]
fn the_backup_takes_over_when_the_primary_dies_and_resyncs() {
    let mut s = Setup::with_args("arb", &["--election-id", "20"]);
    let a_instance = s.instance;
    let b_instance = unique() + 6_000_000;
    let b = cmgrd(&s, b_instance, 10);
    assert!(
        wait_until(SYNC, || s.fp_counter("sync_backups") == 1),
        "B is no backup: {}",
        b.log()
    );
    assert!(wait_until(SYNC, || b.log().contains("backup of the blade")));
    assert_eq!(s.fp_counter("primary_election_id"), 20);
    let changes = s.fp_counter("primary_changes");

    // A backup's write is refused with a clear error; nothing changes.
    let before = s.diff();
    let (mut raw, role) = Raw::connect(&s.endpoint, unique() + 6_500_000, 5);
    assert_eq!(
        role,
        Message::Arbitration {
            primary: false,
            primary_instance: a_instance,
            primary_election_id: 20,
        }
    );
    let victim = fpc::QueryClient::connect(&s.endpoint, "t", Duration::from_secs(5))
        .and_then(|mut c| c.dump())
        .unwrap()
        .into_iter()
        .find(|o| matches!(o, Object::Link(_)))
        .unwrap();
    let seq = raw.send(&Message::Batch(vec![(Op::Delete, victim)]));
    match raw.recv() {
        (h, Message::Error { code, message }) => {
            assert_eq!(h.seq, seq);
            assert_eq!(code, ErrorCode::NotPrimary as u16);
            assert_eq!(
                message,
                format!("blade 1: this session is a backup, not the primary (instance {a_instance} with election id 20 is): its writes are refused")
            );
        }
        other => panic!("expected an Error, got {other:?}"),
    }
    assert_eq!(s.fp_counter("refused_not_primary"), 1);
    assert_eq!(s.diff(), before);
    drop(raw);

    // Kill -9 the primary while routes change.
    let mut old_primary = s.cmgrd.take().unwrap();
    let stop = AtomicBool::new(false);
    let took = std::thread::scope(|scope| {
        let changer = scope.spawn(|| churn(&s, &stop));
        std::thread::sleep(Duration::from_millis(300));
        let start = Instant::now();
        old_primary.kill();
        assert!(
            wait_until(TAKEOVER, || s.fp_counter("primary_election_id") == 10),
            "no takeover: {}",
            b.log()
        );
        let took = start.elapsed();
        std::thread::sleep(Duration::from_millis(500));
        stop.store(true, Ordering::Relaxed);
        let n = changer.join().unwrap();
        assert!(n > 20, "only {n} route changes");
        took
    });
    assert!(took < TAKEOVER, "{took:?}");
    assert_eq!(s.fp_counter("primary_changes"), changes + 1);
    assert!(b.log().contains("now the blade's primary: resyncing"));
    s.cmgrd = Some(b);
    s.assert_in_sync(SYNC);

    // The old primary back with a lower id stays a backup.
    s.cmgrd_args = vec!["--election-id".into(), "5".into()];
    let b = s.cmgrd.take();
    s.start_cmgrd();
    let a = s.cmgrd.take().unwrap();
    s.cmgrd = b;
    assert!(
        wait_until(SYNC, || a.log().contains("backup of the blade")),
        "{}",
        a.log()
    );
    assert_eq!(s.fp_counter("sync_backups"), 1);
    assert_eq!(s.fp_counter("primary_election_id"), 10);
    s.ns.ip(&["route", "add", "blackhole", "198.19.0.0/24"]);
    s.assert_in_sync(SYNC);
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(s.fp_counter("primary_election_id"), 10);

    // A higher id takes over; the displaced primary is told and steps
    // back to a backup.
    let c_instance = unique() + 6_600_000;
    let c = cmgrd(&s, c_instance, 30);
    assert!(wait_until(SYNC, || s.fp_counter("primary_election_id") == 30));
    let b = s.cmgrd.as_ref().unwrap();
    assert!(
        wait_until(SYNC, || b.log().contains(&format!(
            "taken over by instance {c_instance} with election id 30"
        ))),
        "{}",
        b.log()
    );
    assert!(wait_until(SYNC, || s.fp_counter("sync_backups") == 2));
    s.ns.ip(&["route", "add", "blackhole", "198.19.1.0/24"]);
    s.assert_in_sync(SYNC);
    drop(c);
    drop(a);
}
