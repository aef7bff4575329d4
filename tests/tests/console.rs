//! cmgrd's console as a hostile client uses it: idle and trickling
//! clients, a 200 MB line, `netlink replay` of /dev/zero and a FIFO, a
//! console path squatted by another user, a socket bound over cmgrd's.

use std::io::{Read, Write};
use std::os::unix::fs::MetadataExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use fpsync_tests::{bin, unique, wait_until, Daemon, Setup};

/// cmgrd's resident set size, in KiB.
fn rss_kib(pid: i32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS")
}

/// How long one `show pid` takes, start to answer.
fn timed_answer(s: &Setup) -> Duration {
    let t0 = Instant::now();
    let answer = s.console("show pid");
    assert!(answer.starts_with("pid: "), "{answer}");
    t0.elapsed()
}

#[test]
fn idle_and_trickling_clients_do_not_delay_another() {
    let s = Setup::new("console-slow");
    let path = s.console_path();
    // One connects and says nothing; one sends a byte every 4 s.
    let idle = UnixStream::connect(&path).unwrap();
    let mut trickle = UnixStream::connect(&path).unwrap();
    let trickler = {
        let mut t = trickle.try_clone().unwrap();
        std::thread::spawn(move || {
            for _ in 0..5 {
                if t.write_all(b"s").is_err() {
                    return;
                }
                std::thread::sleep(Duration::from_secs(4));
            }
        })
    };
    std::thread::sleep(Duration::from_millis(200));
    let mut worst = Duration::ZERO;
    for _ in 0..20 {
        worst = worst.max(timed_answer(&s));
        std::thread::sleep(Duration::from_millis(100));
    }
    eprintln!("slowest answer beside an idle and a trickling client: {worst:?}");
    assert!(worst < Duration::from_millis(200), "{worst:?}");
    // The trickler is cut once the line's deadline (5 s) passes, however
    // often it sends a byte.
    let t0 = Instant::now();
    trickle
        .set_read_timeout(Some(Duration::from_secs(15)))
        .unwrap();
    let mut answer = String::new();
    let _ = trickle.read_to_string(&mut answer);
    assert!(
        answer.contains("no whole command line within 5 s"),
        "{answer:?}"
    );
    assert!(t0.elapsed() < Duration::from_secs(6), "{:?}", t0.elapsed());
    trickler.join().unwrap();
    drop(idle);
}

#[test]
fn a_200_mb_line_is_refused_and_memory_stays_bounded() {
    let s = Setup::new("console-long");
    let pid = s.cmgrd.as_ref().unwrap().pid();
    let before = rss_kib(pid);
    let mut c = UnixStream::connect(s.console_path()).unwrap();
    c.set_write_timeout(Some(Duration::from_secs(10))).unwrap();
    let chunk = vec![b'x'; 1 << 20];
    let mut sent = 0usize;
    let mut peak = before;
    while sent < 200 << 20 {
        match c.write(&chunk) {
            Ok(n) => sent += n,
            Err(_) => break,
        }
        peak = peak.max(rss_kib(pid));
    }
    c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut answer = Vec::new();
    let _ = c.read_to_end(&mut answer);
    let answer = String::from_utf8_lossy(&answer);
    peak = peak.max(rss_kib(pid));
    eprintln!(
        "sent {} KiB before the refusal; cmgrd RSS {before} KiB -> peak {peak} KiB",
        sent >> 10
    );
    assert!(
        answer.starts_with("error: command line longer than 65536 bytes: refused"),
        "{answer:?}"
    );
    assert!(sent < 16 << 20, "the console read {sent} bytes of one line");
    assert!(peak < before + 8 * 1024, "RSS {before} KiB -> {peak} KiB");
    // It goes on answering.
    assert!(s.console("show pid").starts_with("pid: "));
    // And an unknown command is quoted short.
    let long = format!("bogus {}", "y".repeat(10_000));
    let answer = s.console(&long);
    assert!(
        answer.starts_with("error: unknown command") && answer.len() < 200,
        "{answer}"
    );
}

#[test]
fn replay_refuses_devices_and_fifos_and_sync_goes_on() {
    let s = Setup::new("console-replay");
    for command in ["netlink replay /dev/zero", "netlink replay xfrm /dev/zero"] {
        let t0 = Instant::now();
        let answer = s.console(command);
        assert!(
            answer.starts_with("error: refused: \"/dev/zero\" is a character device; netlink replay reads regular files only"),
            "{command}: {answer}"
        );
        assert!(t0.elapsed() < Duration::from_secs(1));
    }
    let fifo = s.dir.path.join("fifo");
    fpsync_tests::sh(&["mkfifo", fifo.to_str().unwrap()]);
    let t0 = Instant::now();
    let answer = s.console(&format!("netlink replay {}", fifo.display()));
    assert!(
        answer.starts_with("error: refused:") && answer.contains("is a FIFO"),
        "{answer}"
    );
    assert!(t0.elapsed() < Duration::from_secs(1), "{:?}", t0.elapsed());
    let answer = s.console("netlink replay");
    assert!(
        answer.starts_with("error: usage: netlink replay"),
        "{answer}"
    );
    // An empty regular file is fine.
    let empty = s.dir.path.join("empty");
    std::fs::write(&empty, b"").unwrap();
    let answer = s.console(&format!("netlink replay {}", empty.display()));
    assert_eq!(answer, "replayed 0 netlink messages\n\n");
    // Sync goes on: a route added now reaches fpd.
    s.ns.ip(&["route", "add", "192.0.2.0/24", "dev", "lo"]);
    s.assert_in_sync(Duration::from_secs(5));
    assert!(s.fp_counter("routes4") >= 1);
}

/// A socket bound by uid nobody at `path`, listening (python3 under
/// setpriv); killed on drop.
struct Squatter {
    daemon: Daemon,
    path: std::path::PathBuf,
}

impl Squatter {
    fn bind(path: &std::path::Path, log: std::path::PathBuf) -> Squatter {
        let script = format!(
            "import socket\ns=socket.socket(socket.AF_UNIX)\ns.bind({:?})\ns.listen(8)\nwhile True:\n  c,_=s.accept()\n  try:\n    c.sendall(b'pid: 1\\n\\n')\n  except OSError:\n    pass\n  c.close()\n",
            path.to_str().unwrap()
        );
        let file = std::fs::File::create(&log).unwrap();
        let child = Command::new("setpriv")
            .args([
                "--reuid=nobody",
                "--regid=nogroup",
                "--clear-groups",
                "/usr/bin/python3",
                "-c",
                &script,
            ])
            .stdin(Stdio::null())
            .stdout(file.try_clone().unwrap())
            .stderr(file)
            .spawn()
            .expect("setpriv");
        let daemon = Daemon { child, log };
        assert!(
            wait_until(Duration::from_secs(10), || UnixStream::connect(path)
                .is_ok()),
            "the squatter did not bind {}: {}",
            path.display(),
            daemon.log()
        );
        Squatter {
            daemon,
            path: path.to_owned(),
        }
    }
}

impl Drop for Squatter {
    fn drop(&mut self) {
        self.daemon.kill();
        let _ = std::fs::remove_file(&self.path);
    }
}

/// A cmgrd of `instance` in the Setup's namespace, syncing `blade`
/// (B=ENDPOINT).
fn cmgrd_args(s: &Setup, instance: u32, blade: &str) -> Vec<String> {
    vec![
        "-F".into(),
        "-I".into(),
        instance.to_string(),
        "--netns".into(),
        s.ns.name.clone(),
        "--blade".into(),
        blade.into(),
    ]
}

/// A blade nobody serves (so that a second cmgrd disturbs no fpd).
fn nowhere(s: &Setup) -> String {
    format!("9=unix:{}", s.dir.path.join("nobody.sock").display())
}

#[test]
fn a_console_path_squatted_by_another_user_is_refused() {
    let s = Setup::new("console-squat");
    let instance = unique() + 7_000_000;
    let path = std::path::PathBuf::from(format!("/tmp/.cmgrd{instance}"));
    let squatter = Squatter::bind(&path, s.dir.path.join("squatter.log"));

    // daemonctl does not believe the squatter's answers.
    let out = Command::new(bin("daemonctl"))
        .args([format!("cmgrd{instance}"), "show".into(), "pid".into()])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}{stderr}");
    assert!(stdout.is_empty(), "{stdout}");
    assert!(
        stderr.contains(&format!("not trusting {}", path.display()))
            && stderr.contains("runs as uid 65534 (nobody, pid"),
        "{stderr}"
    );

    // cmgrd refuses the path, naming it and its owner, and leaves it.
    let mut cmgrd = Daemon::spawn(
        &bin("cmgrd"),
        &cmgrd_args(&s, instance, &nowhere(&s)),
        s.dir.path.join("cmgrd-squat.log"),
    );
    assert!(
        wait_until(Duration::from_secs(10), || !cmgrd.alive()),
        "cmgrd started over a squatted console"
    );
    let log = cmgrd.log();
    assert!(
        log.contains(&format!("console at {}", path.display()))
            && log.contains("owned by uid 65534 (nobody)"),
        "{log}"
    );
    assert!(
        UnixStream::connect(&path).is_ok(),
        "the squatter's socket went"
    );
    drop(squatter);
}

#[test]
fn exit_removes_only_the_socket_cmgrd_bound() {
    let mut s = Setup::new("console-own");
    let path = s.console_path();
    // A normal exit removes cmgrd's own socket.
    let mut cmgrd = s.cmgrd.take().unwrap();
    cmgrd.signal(libc::SIGTERM);
    assert!(wait_until(Duration::from_secs(10), || !cmgrd.alive()));
    assert!(!path.exists(), "cmgrd left its console socket");

    // A live socket of another process: cmgrd refuses to start over it.
    let other = UnixListener::bind(&path).unwrap();
    let mut refused = Daemon::spawn(
        &bin("cmgrd"),
        &cmgrd_args(&s, s.instance, &nowhere(&s)),
        s.dir.path.join("cmgrd-inuse.log"),
    );
    assert!(wait_until(Duration::from_secs(10), || !refused.alive()));
    let log = refused.log();
    assert!(
        log.contains("another process answers there")
            && log.contains(&format!("pid {}", std::process::id())),
        "{log}"
    );
    drop(other);
    std::fs::remove_file(&path).unwrap();

    // Another process binds the path while cmgrd runs: cmgrd's exit
    // leaves that socket alone.
    s.start_cmgrd();
    assert!(wait_until(Duration::from_secs(10), || UnixStream::connect(
        &path
    )
    .is_ok()));
    std::fs::remove_file(&path).unwrap();
    let newer = UnixListener::bind(&path).unwrap();
    let ino = std::fs::symlink_metadata(&path).unwrap().ino();
    let mut cmgrd = s.cmgrd.take().unwrap();
    cmgrd.signal(libc::SIGTERM);
    assert!(wait_until(Duration::from_secs(10), || !cmgrd.alive()));
    let meta = std::fs::symlink_metadata(&path).expect("the newer socket was removed");
    assert_eq!(meta.ino(), ino);
    assert!(UnixStream::connect(&path).is_ok());
    drop(newer);
    std::fs::remove_file(&path).unwrap();
}

#[test]
fn an_unreachable_tcp_blade_is_logged_with_endpoint_netns_and_errno() {
    let s = Setup::new("console-tcp");
    // Nothing listens on this port inside the namespace.
    let port = 20_000 + unique() % 20_000;
    let instance = unique() + 8_000_000;
    let mut args = cmgrd_args(&s, instance, &format!("2=tcp:127.0.0.1:{port}"));
    // Without TLS files nor --allow-plain-tcp, a TCP blade is refused at
    // start, with the blade and the reason.
    let refused = Command::new(bin("cmgrd")).args(&args).output().unwrap();
    assert!(!refused.status.success());
    assert_eq!(
        String::from_utf8_lossy(&refused.stderr).trim_end(),
        format!("cmgrd: blade 2: FPC over TCP to 127.0.0.1:{port} needs TLS: give --tls-cert, --tls-key and --tls-ca (--allow-plain-tcp allows plain TCP to loopback addresses only)")
    );
    args.push("--allow-plain-tcp".into());
    let cmgrd = Daemon::spawn(&bin("cmgrd"), &args, s.dir.path.join("cmgrd-tcp.log"));
    let want = format!(
        "blade 2: connect tcp:127.0.0.1:{port} from netns {}: Connection refused (os error 111)",
        s.ns.name
    );
    assert!(
        wait_until(Duration::from_secs(10), || cmgrd.log().contains(&want)),
        "want {want:?} in:\n{}",
        cmgrd.log()
    );
    let help = Command::new(bin("cmgrd")).arg("-h").output().unwrap();
    let help = String::from_utf8_lossy(&help.stdout);
    assert!(
        help.contains("TCP endpoints are dialled from inside --netns"),
        "{help}"
    );
}
