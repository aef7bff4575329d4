//! fpsyncd as operators run it: under systemd's notification protocol (a
//! NOTIFY_SOCKET of our own, as systemd would give it, with a watchdog),
//! and with durations no parser may panic on.

mod supervisor_common;

use std::os::unix::net::UnixDatagram;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use fpsync_tests::{bin, wait_until, Netns, TempDir};
use supervisor_common::{write_config, InstanceSpec, Supervisor};

/// Datagrams received on `sock` until `until` holds for the list or
/// `timeout` passes.
fn collect(
    sock: &UnixDatagram,
    got: &mut Vec<(Instant, String)>,
    timeout: Duration,
    until: impl Fn(&[(Instant, String)]) -> bool,
) -> bool {
    let deadline = Instant::now() + timeout;
    let mut buf = vec![0u8; 4096];
    while Instant::now() < deadline {
        if until(got) {
            return true;
        }
        sock.set_read_timeout(Some(Duration::from_millis(100)))
            .unwrap();
        if let Ok(n) = sock.recv(&mut buf) {
            got.push((
                Instant::now(),
                String::from_utf8_lossy(&buf[..n]).into_owned(),
            ));
        }
    }
    until(got)
}

fn has(got: &[(Instant, String)], line: &str) -> bool {
    got.iter().any(|(_, d)| d.lines().any(|l| l == line))
}

#[test]
fn fpsyncd_notifies_ready_status_and_watchdog() {
    let red = Netns::new("ops-red");
    let blue = Netns::new("ops-blue");
    let dir = TempDir::new("notify");
    let socket_path = dir.path.join("notify");
    let sock = UnixDatagram::bind(&socket_path).unwrap();

    let conf = TempDir::new("fpsyncd");
    let instances = [
        InstanceSpec {
            id: 1,
            netns: red.name.clone(),
            blades: vec![1],
        },
        InstanceSpec {
            id: 2,
            netns: blue.name.clone(),
            blades: vec![2],
        },
    ];
    let env = write_config(&conf.path, &instances, "");
    let log = conf.path.join("fpsyncd.log");
    let file = std::fs::File::create(&log).unwrap();
    // WatchdogSec=400ms, as systemd passes it: pings every 200 ms.
    let child = Command::new(bin("fpsyncd"))
        .args(["--bus", "private"])
        .envs(env)
        .env("FPSYNC_LOG", "info")
        .env("FPSYNC_NO_JOURNAL", "1")
        .env("NOTIFY_SOCKET", &socket_path)
        .env("WATCHDOG_USEC", "400000")
        .stdin(Stdio::null())
        .stdout(file.try_clone().unwrap())
        .stderr(file)
        .spawn()
        .unwrap();
    let pid = child.id();
    let run_dir = conf.path.join("run");
    let mut s = Supervisor {
        child: Some(child),
        run_dir: run_dir.clone(),
        dir: conf,
        address: String::new(),
        log,
    };
    assert!(
        wait_until(Duration::from_secs(10), || std::fs::read_to_string(
            run_dir.join("bus")
        )
        .is_ok_and(|a| !a.trim().is_empty())),
        "no private bus: {}",
        s.log()
    );
    s.address = std::fs::read_to_string(run_dir.join("bus"))
        .unwrap()
        .trim()
        .to_owned();

    let mut got = Vec::new();
    let all_in_sync = "STATUS=2/2 instances in sync, 2/2 blades running";
    assert!(
        collect(&sock, &mut got, Duration::from_secs(20), |g| has(
            g, "READY=1"
        ) && has(
            g,
            all_in_sync
        )),
        "{got:?}\n{}",
        s.log()
    );
    // READY=1 once, after the children were started: by then both blades
    // run, and the bus agrees with what was announced.
    let ready: Vec<&String> = got
        .iter()
        .map(|(_, d)| d)
        .filter(|d| d.lines().any(|l| l == "READY=1"))
        .collect();
    assert_eq!(ready.len(), 1, "{got:?}");
    let at = |pred: &dyn Fn(&str) -> bool| got.iter().position(|(_, d)| pred(d));
    let ready_at = at(&|d| d.lines().any(|l| l == "READY=1")).unwrap();
    let blades_at = at(&|d| d.contains("2/2 blades running")).unwrap();
    assert!(
        blades_at <= ready_at,
        "READY=1 before the blades ran: {got:?}"
    );
    s.wait_state("running", Duration::from_secs(10));
    // Progress was told on the way (a status before every instance synced).
    assert!(
        got.iter()
            .any(|(_, d)| d.starts_with("STATUS=") || d.contains("\nSTATUS=")),
        "{got:?}"
    );

    // The watchdog: WATCHDOG=1 about every 200 ms.
    let pings_before = got.iter().filter(|(_, d)| d == "WATCHDOG=1").count();
    let t0 = Instant::now();
    collect(&sock, &mut got, Duration::from_millis(1500), |_| false);
    let pings: Vec<Instant> = got
        .iter()
        .filter(|(t, d)| d == "WATCHDOG=1" && *t >= t0)
        .map(|(t, _)| *t)
        .collect();
    // (Loose bounds: the machine is shared and the loop may be late.)
    assert!(
        (4..=10).contains(&pings.len()),
        "{} pings in 1.5 s (and {pings_before} before): {got:?}",
        pings.len()
    );
    for w in pings.windows(2) {
        let gap = w[1] - w[0];
        assert!(
            gap >= Duration::from_millis(150) && gap <= Duration::from_millis(600),
            "pings {gap:?} apart"
        );
    }

    // The children do not inherit the socket (only fpsyncd speaks for the unit).
    let pids = s.child_pids();
    assert_eq!(pids.len(), 4, "{pids:?}");
    for p in pids {
        let environ = std::fs::read(format!("/proc/{p}/environ")).unwrap_or_default();
        assert!(
            !environ
                .split(|b| *b == 0)
                .any(|v| v.starts_with(b"NOTIFY_SOCKET=") || v.starts_with(b"WATCHDOG_")),
            "child {p} has systemd's variables"
        );
    }

    // A stuck main loop stops the pings (that is what the watchdog is for).
    // SAFETY: kill(2) on our own child's pid.
    unsafe { libc::kill(pid as i32, libc::SIGSTOP) };
    std::thread::sleep(Duration::from_millis(100));
    let mut stuck = Vec::new();
    while sock.recv(&mut [0u8; 256]).is_ok() {} // drain what was queued
    collect(&sock, &mut stuck, Duration::from_millis(800), |_| false);
    // SAFETY: as above.
    unsafe { libc::kill(pid as i32, libc::SIGCONT) };
    assert!(stuck.is_empty(), "{stuck:?}");

    // SIGTERM: STOPPING=1, and fpsyncd exits 0.
    let status = s.stop(Duration::from_secs(20)).expect("fpsyncd stops");
    assert!(status.success(), "{status:?}: {}", s.log());
    let mut tail = Vec::new();
    collect(&sock, &mut tail, Duration::from_millis(300), |_| false);
    assert!(has(&tail, "STOPPING=1"), "{tail:?}");
}

fn fpsyncd_with(dir: &TempDir, global: &str, env: &[(&str, &str)]) -> (Option<i32>, String) {
    let file = dir.path.join("linux-fp-sync.env");
    std::fs::write(&file, global).unwrap();
    std::fs::write(dir.path.join("cmgr.env"), "").unwrap();
    let out = Command::new(bin("fpsyncd"))
        .args(["--bus", "private"])
        .env("CONF_FILE_linux_fp_sync", &file)
        .env("CONF_FILE_cmgr", dir.path.join("cmgr.env"))
        .env("FPSYNC_NO_JOURNAL", "1")
        .env("FPSYNC_RUN_DIR", dir.path.join("run"))
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .output()
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn durations_that_panicked_are_errors_naming_the_variable() {
    let dir = TempDir::new("durations");
    // From the environment, as the issue did it: was exit 101, "cannot
    // convert float seconds to Duration".
    let (code, err) = fpsyncd_with(
        &dir,
        "INSTANCES=1\n",
        &[("TIMEOUT_START_SEC", "99999999999999999999s")],
    );
    assert_eq!(code, Some(1), "{err}");
    assert!(
        err.contains(
            "the environment: TIMEOUT_START_SEC: \"99999999999999999999s\" is too long a time span"
        ),
        "{err}"
    );
    assert!(!err.contains("panicked"), "{err}");
    // From the file, u64::MAX seconds: named with its file and line.
    let (code, err) = fpsyncd_with(
        &dir,
        "INSTANCES=1\nTIMEOUT_STOP_SEC=18446744073709551615\n",
        &[],
    );
    assert_eq!(code, Some(1), "{err}");
    assert!(
        err.contains("linux-fp-sync.env:2: TIMEOUT_STOP_SEC: \"18446744073709551615\" is too long"),
        "{err}"
    );
    // A long value is quoted by a short prefix only.
    let long = "9".repeat(5000);
    let (code, err) = fpsyncd_with(&dir, &format!("INSTANCES=1\nRESTART_SEC={long}\n"), &[]);
    assert_eq!(code, Some(1), "{err}");
    assert!(
        err.contains("RESTART_SEC") && err.contains("(5000 bytes)"),
        "{err}"
    );
    assert!(err.lines().all(|l| l.len() < 300), "{err}");

    // The options that took durations as floats or unbounded integers.
    for (program, args, word) in [
        ("fpsync", &["start", "--timeout", "1e300"][..], "--timeout"),
        ("fpsync", &["start", "--timeout", "inf"][..], "--timeout"),
        ("fpsync-check", &["--wait", "inf"][..], "--wait"),
        (
            "fpsync-check",
            &["--wait", "99999999999999999999"][..],
            "--wait",
        ),
        (
            "cmgrd",
            &["--link-poll", "18446744073709551615"][..],
            "--link-poll",
        ),
        (
            "cmgrd",
            &["--max-queue", "18446744073709551615G"][..],
            "--max-queue",
        ),
    ] {
        let out = Command::new(bin(program))
            .args(args)
            .env("FPSYNC_NO_JOURNAL", "1")
            .stdin(Stdio::null())
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{program} {args:?}: {err}");
        assert!(err.contains(word), "{program} {args:?}: {err}");
        assert!(!err.contains("panicked"), "{program} {args:?}: {err}");
    }
}
