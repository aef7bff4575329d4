//! A blade's queue passing `--max-queue` on an otherwise quiet system:
//! fpd stopped while 200,000 routes are added, then continued, with no
//! further change. The blade is out of sync (console `in sync: 0`,
//! SyncState `resyncing` on D-Bus) from the overflow on, and its replay
//! starts as soon as the queue drains, with nothing else to carry it.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fpsync_tests::{bin, unique, wait_until, Daemon, Setup, TempDir};

/// A private session bus (dbus-daemon's own session policy: the caller's
/// uid may own any name), killed on drop.
struct Bus {
    child: Child,
    address: String,
    _dir: TempDir,
}

impl Bus {
    fn start() -> Bus {
        let dir = TempDir::new("overflow-bus");
        let mut child = Command::new("dbus-daemon")
            .args(["--session", "--nofork", "--print-address=1"])
            .arg(format!(
                "--address=unix:path={}",
                dir.path.join("bus").display()
            ))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("dbus-daemon");
        let mut line = String::new();
        use std::io::BufRead;
        std::io::BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        assert!(!line.trim().is_empty(), "dbus-daemon printed no address");
        Bus {
            child,
            address: line.trim().to_owned(),
            _dir: dir,
        }
    }

    /// cmgrd `instance`'s SyncState as busctl prints it (`s "synced"`).
    fn sync_state(&self, instance: u32) -> String {
        let out = Command::new("busctl")
            .arg(format!("--address={}", self.address))
            .args([
                "get-property",
                &format!("org.fpsync.CacheManager1.I{instance}"),
                &format!("/org/fpsync/CacheManager1/{instance}"),
                "org.fpsync.CacheManager1",
                "SyncState",
            ])
            .output()
            .expect("busctl");
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    }
}

impl Drop for Bus {
    fn drop(&mut self) {
        // SAFETY: kill(2) on our own child's pid.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGKILL) };
        let _ = self.child.wait();
    }
}

/// Replaces the Setup's cmgrd with one on `bus` (same arguments).
fn cmgrd_on_bus(s: &mut Setup, bus: &Bus) {
    if let Some(mut d) = s.cmgrd.take() {
        d.kill();
    }
    let mut args = vec![
        "-F".to_string(),
        "-I".into(),
        s.instance.to_string(),
        "--netns".into(),
        s.ns.name.clone(),
        "--blade".into(),
        format!("1={}", s.endpoint),
    ];
    args.extend(s.cmgrd_args.iter().cloned());
    let log = s.dir.path.join(format!("cmgrd.{}.log", unique()));
    let file = std::fs::File::create(&log).unwrap();
    let child = Command::new(bin("cmgrd"))
        .args(&args)
        .env("FPSYNC_LOG", "info")
        .env("FPSYNC_NO_JOURNAL", "1")
        .env("FPSYNC_BUS_ADDRESS", &bus.address)
        .stdin(Stdio::null())
        .stdout(file.try_clone().unwrap())
        .stderr(file)
        .spawn()
        .expect("cmgrd");
    s.cmgrd = Some(Daemon { child, log });
}

fn show_queue(s: &Setup) -> String {
    s.console("show queue")
}

#[test]
fn overflow_on_a_quiet_system_is_replayed_and_shown_resyncing() {
    let bus = Bus::start();
    let mut s = Setup::with_args("overflow", &["--max-queue", "1M"]);
    cmgrd_on_bus(&mut s, &bus);
    s.ns.batch("link add v0 type veth peer name v1\nlink set v0 up\nlink set v1 up\naddr add 10.0.0.1/16 dev v0\n");
    s.assert_in_sync(Duration::from_secs(10));
    assert!(
        wait_until(Duration::from_secs(10), || bus.sync_state(s.instance)
            == "s \"synced\""),
        "SyncState before: {:?}; cmgrd log:\n{}",
        bus.sync_state(s.instance),
        s.cmgrd.as_ref().unwrap().log()
    );

    let fpd = s.fpd.as_ref().unwrap();
    fpd.signal(libc::SIGSTOP);
    let batch: String = (0..200_000u32)
        .map(|i| {
            format!(
                "route add {}.{}.{}.0/24 via 10.0.0.2\n",
                100 + i / 65536,
                (i / 256) % 256,
                i % 256
            )
        })
        .collect();
    s.ns.batch(&batch);
    // fpd is still stopped: the queue is past its limit, and everything
    // says so.
    assert!(
        wait_until(Duration::from_secs(20), || {
            let q = show_queue(&s);
            q.contains("- in sync: 0\n") && !q.contains("- overflows: 0\n")
        }),
        "show queue while fpd is stopped:\n{}",
        show_queue(&s)
    );
    let sync = s.console("show sync");
    assert!(
        sync.starts_with("Synchronization state: resyncing\n"),
        "{sync}"
    );
    assert!(
        wait_until(Duration::from_secs(5), || bus.sync_state(s.instance)
            == "s \"resyncing\""),
        "SyncState while the blade is out of sync: {:?}",
        bus.sync_state(s.instance)
    );

    // Continued, with no further change: the replay alone must end it.
    let t0 = Instant::now();
    fpd.signal(libc::SIGCONT);
    s.assert_in_sync(Duration::from_secs(60));
    eprintln!("in sync {:?} after SIGCONT", t0.elapsed());
    assert!(
        wait_until(Duration::from_secs(20), || show_queue(&s)
            .contains("- in sync: 1\n")),
        "{}",
        show_queue(&s)
    );
    assert!(
        wait_until(Duration::from_secs(5), || bus.sync_state(s.instance)
            == "s \"synced\""),
        "SyncState after the replay: {:?}",
        bus.sync_state(s.instance)
    );
    assert!(s.fp_counter("routes4") >= 200_000);
    let log = s.cmgrd.as_ref().unwrap().log();
    assert!(log.contains("queue passed its limit"), "{log}");
}

/// The number after `- NAME: ` in `show queue`.
fn queue_field(s: &Setup, name: &str) -> u64 {
    let q = show_queue(s);
    q.lines()
        .find_map(|l| l.strip_prefix(&format!("- {name}: ")))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {name} in {q}"))
}

#[test]
fn a_replay_larger_than_the_limit_survives_changes_during_it() {
    let s = Setup::with_args("overflow-churn", &["--max-queue", "1M"]);
    s.ns.batch("link add v0 type veth peer name v1\nlink set v0 up\nlink set v1 up\naddr add 10.0.0.1/16 dev v0\n");
    s.assert_in_sync(Duration::from_secs(10));
    let fpd = s.fpd.as_ref().unwrap();
    fpd.signal(libc::SIGSTOP);
    let batch: String = (0..200_000u32)
        .map(|i| {
            format!(
                "route add {}.{}.{}.0/24 via 10.0.0.2\n",
                100 + i / 65536,
                (i / 256) % 256,
                i % 256
            )
        })
        .collect();
    s.ns.batch(&batch);
    assert!(
        wait_until(Duration::from_secs(20), || queue_field(&s, "overflows")
            == 1),
        "{}",
        show_queue(&s)
    );
    fpd.signal(libc::SIGCONT);
    // Changes keep coming while the (12 MB) replay is queued: each one
    // must not abandon it for yet another replay.
    assert!(
        wait_until(Duration::from_secs(30), || queue_field(&s, "replays") >= 2),
        "{}",
        show_queue(&s)
    );
    for i in 0..30 {
        s.ns.ip(&[
            "route",
            "add",
            &format!("198.51.100.{i}/32"),
            "via",
            "10.0.0.2",
        ]);
        std::thread::sleep(Duration::from_millis(30));
    }
    s.assert_in_sync(Duration::from_secs(60));
    assert_eq!(queue_field(&s, "overflows"), 1, "{}", show_queue(&s));
    assert_eq!(queue_field(&s, "replays"), 2, "{}", show_queue(&s));
}
