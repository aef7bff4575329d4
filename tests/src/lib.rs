//! Helpers for end-to-end scenarios: throwaway network namespaces, daemons
//! started from the workspace's binaries, and waiting for sync.
//!
//! Everything a scenario creates is owned by a guard that removes it on
//! drop, so a failing test still deletes its namespaces and kills its
//! processes (by pid, never by name).

use std::fs::File;
use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use fpc::{Endpoint, QueryClient};

pub mod oracle;
pub mod pcap;
pub mod pki;

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// A number unique to this test process and call.
pub fn unique() -> u32 {
    std::process::id() % 100_000 * 100 + COUNTER.fetch_add(1, Ordering::Relaxed)
}

/// Where cargo put the workspace's binaries (target/<profile>/): beside
/// this executable (a bench binary) or one level up (a test, in deps/).
pub fn bin(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    let here = exe.parent().expect("executable directory");
    let dir = if here.ends_with("deps") {
        here.parent().expect("target/<profile>")
    } else {
        here
    };
    let path = dir.join(name);
    assert!(
        path.exists(),
        "{} is missing: run `cargo build --bins` (the README's test command does)",
        path.display()
    );
    path
}

/// Runs a command, panicking with its output when it fails.
pub fn sh(args: &[&str]) -> String {
    let out = Command::new(args[0])
        .args(&args[1..])
        .output()
        .unwrap_or_else(|e| panic!("{args:?}: {e}"));
    assert!(
        out.status.success(),
        "{args:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A network namespace deleted on drop.
pub struct Netns {
    pub name: String,
}

impl Netns {
    pub fn new(tag: &str) -> Netns {
        let name = format!("fpst-{tag}-{}", unique());
        sh(&["ip", "netns", "add", &name]);
        let ns = Netns { name };
        ns.ip(&["link", "set", "lo", "up"]);
        ns
    }

    /// `ip -n <ns> ARGS...`, panicking on failure.
    pub fn ip(&self, args: &[&str]) -> String {
        let mut full = vec!["ip", "-n", &self.name];
        full.extend_from_slice(args);
        sh(&full)
    }

    /// `ip -n <ns> ARGS...`, whether it succeeded.
    pub fn try_ip(&self, args: &[&str]) -> bool {
        Command::new("ip")
            .args(["-n", &self.name])
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .map(|s| s.success())
            .unwrap_or(false)
    }

    /// `ip -n <ns> -batch FILE` with `lines`.
    pub fn batch(&self, lines: &str) {
        let dir = TempDir::new("batch");
        let path = dir.path.join("batch");
        std::fs::write(&path, lines).unwrap();
        sh(&["ip", "-n", &self.name, "-batch", path.to_str().unwrap()]);
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .status();
    }
}

/// A directory removed on drop.
pub struct TempDir {
    pub path: PathBuf,
}

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        let path = std::env::temp_dir().join(format!("fpst-{tag}-{}", unique()));
        std::fs::create_dir_all(&path).unwrap();
        TempDir { path }
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

/// A child process killed (SIGKILL, by pid) on drop; its stderr goes to a
/// log file that `log()` reads back.
pub struct Daemon {
    pub child: Child,
    pub log: PathBuf,
}

impl Daemon {
    pub fn spawn(program: &Path, args: &[String], log: PathBuf) -> Daemon {
        let file = File::create(&log).unwrap();
        // FPSYNC_TEST_WRAP="strace -f -o /tmp/x" runs daemons under a tool.
        let wrap = std::env::var("FPSYNC_TEST_WRAP").unwrap_or_default();
        let mut words = wrap.split_whitespace();
        let mut cmd = match words.next() {
            Some(tool) => {
                let mut c = Command::new(tool);
                c.args(words).arg(program);
                c
            }
            None => Command::new(program),
        };
        let child = cmd
            .args(args)
            .env(
                "FPSYNC_LOG",
                std::env::var("FPSYNC_LOG").unwrap_or_else(|_| "info".into()),
            )
            .env("FPSYNC_NO_JOURNAL", "1")
            .stdin(Stdio::null())
            .stdout(file.try_clone().unwrap())
            .stderr(file)
            .spawn()
            .unwrap_or_else(|e| panic!("{}: {e}", program.display()));
        Daemon { child, log }
    }

    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    pub fn signal(&self, sig: i32) {
        // SAFETY: kill(2) on our own child's pid.
        unsafe { libc::kill(self.pid(), sig) };
    }

    /// SIGKILL and reap.
    pub fn kill(&mut self) {
        self.signal(libc::SIGKILL);
        let _ = self.child.wait();
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Whether the process is still running.
    pub fn alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if self.alive() {
            self.signal(libc::SIGCONT);
            self.kill();
        }
    }
}

/// Polls `f` every 10 ms until it returns true or `timeout` passes.
pub fn wait_until(timeout: Duration, mut f: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if f() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// One fast path (fpd) and one cache manager (cmgrd) syncing a namespace.
pub struct Setup {
    pub ns: Netns,
    pub dir: TempDir,
    pub instance: u32,
    pub endpoint: Endpoint,
    pub fpd: Option<Daemon>,
    pub cmgrd: Option<Daemon>,
    pub cmgrd_args: Vec<String>,
    /// What cmgrd syncs, from its arguments: the check compares that.
    pub features: instance::features::Features,
}

impl Setup {
    /// Starts fpd, then cmgrd in a new namespace, and waits for sync.
    pub fn new(tag: &str) -> Setup {
        Self::with_args(tag, &[])
    }

    pub fn with_args(tag: &str, cmgrd_args: &[&str]) -> Setup {
        let ns = Netns::new(tag);
        let dir = TempDir::new(tag);
        let endpoint = Endpoint::Unix(dir.path.join("fpd.sock"));
        let mut s = Setup {
            ns,
            dir,
            instance: unique(),
            endpoint,
            fpd: None,
            cmgrd: None,
            cmgrd_args: cmgrd_args.iter().map(|s| s.to_string()).collect(),
            features: instance::Options::try_parse_from(
                std::iter::once("cmgrd").chain(cmgrd_args.iter().copied()),
            )
            .expect("valid cmgrd arguments")
            .features,
        };
        s.start_fpd();
        s.start_cmgrd();
        s.assert_in_sync(Duration::from_secs(10));
        s
    }

    pub fn start_fpd(&mut self) {
        let args = vec![
            "--blade".into(),
            "1".into(),
            "--listen".into(),
            self.endpoint.to_string(),
        ];
        let log = self.dir.path.join(format!("fpd.{}.log", unique()));
        self.fpd = Some(Daemon::spawn(&bin("fpd"), &args, log));
        let ep = self.endpoint.clone();
        assert!(
            wait_until(Duration::from_secs(10), || QueryClient::connect(
                &ep,
                "test",
                Duration::from_secs(1)
            )
            .is_ok()),
            "fpd did not start: {}",
            self.fpd.as_ref().unwrap().log()
        );
    }

    pub fn start_cmgrd(&mut self) {
        let mut args = vec![
            "-F".to_string(),
            "-I".into(),
            self.instance.to_string(),
            "--netns".into(),
            self.ns.name.clone(),
            "--blade".into(),
            format!("1={}", self.endpoint),
        ];
        args.extend(self.cmgrd_args.iter().cloned());
        let log = self.dir.path.join(format!("cmgrd.{}.log", unique()));
        self.cmgrd = Some(Daemon::spawn(&bin("cmgrd"), &args, log));
    }

    pub fn console_path(&self) -> PathBuf {
        PathBuf::from(format!("/tmp/.cmgrd{}", self.instance))
    }

    /// Sends one console command and returns the answer.
    pub fn console(&self, command: &str) -> String {
        console(&self.console_path(), command)
    }

    /// The differences between Linux and the fast path right now.
    pub fn diff(&self) -> Vec<String> {
        instance::check::check(Some(&self.ns.name), &self.endpoint, &self.features)
            .unwrap_or_else(|e| vec![format!("check failed: {e:?}")])
    }

    /// Waits until the check is empty; panics with the differences and
    /// the daemons' logs otherwise.
    pub fn assert_in_sync(&self, timeout: Duration) {
        let diffs = instance::check::check_until(
            Some(&self.ns.name),
            &self.endpoint,
            &self.features,
            timeout,
        )
        .unwrap_or_else(|e| vec![format!("check failed: {e:?}")]);
        if !diffs.is_empty() {
            // Keep the whole logs for a post-mortem; the panic shows tails.
            let keep = std::path::Path::new("/tmp/fpst-failed");
            let _ = std::fs::create_dir_all(keep);
            for (name, d) in [("cmgrd", &self.cmgrd), ("fpd", &self.fpd)] {
                if let Some(d) = d {
                    let _ =
                        std::fs::copy(&d.log, keep.join(format!("{}-{name}.log", self.ns.name)));
                }
            }
            if std::env::var_os("FPSYNC_GDB_ON_FAIL").is_some() {
                let state = format!(
                    "{}\n{}\n{:?}\n",
                    self.console("show queue"),
                    self.console("show sync"),
                    QueryClient::connect(&self.endpoint, "test", Duration::from_secs(5))
                        .and_then(|mut c| c.counters())
                );
                let _ = std::fs::write(keep.join(format!("{}-state.txt", self.ns.name)), state);
            }
            if let (Some(d), true) = (
                &self.cmgrd,
                std::env::var_os("FPSYNC_GDB_ON_FAIL").is_some(),
            ) {
                let pid = d.pid().to_string();
                if let Ok(out) = Command::new("gdb")
                    .args(["-p", &pid, "-batch", "-ex", "thread apply all bt 25"])
                    .output()
                {
                    let _ = std::fs::write(
                        keep.join(format!("{}-cmgrd.gdb", self.ns.name)),
                        out.stdout,
                    );
                }
            }
            let n = diffs.len();
            let shown: Vec<_> = diffs.into_iter().take(40).collect();
            panic!(
                "{} differences after {:?} (whole logs in /tmp/fpst-failed/{}-*.log):\n{}\n--- cmgrd log:\n{}\n--- fpd log:\n{}",
                n,
                timeout,
                self.ns.name,
                shown.join("\n"),
                tail(&self.cmgrd.as_ref().map(Daemon::log).unwrap_or_default()),
                tail(&self.fpd.as_ref().map(Daemon::log).unwrap_or_default()),
            );
        }
    }

    /// The oracle's differences right now: Linux as its own tools print
    /// it against fpd's dump ([`oracle`]).
    pub fn oracle_diff(&self) -> Vec<String> {
        oracle::compare(&self.ns.name, &self.endpoint, &self.features)
    }

    /// Waits until the check is empty, then until the oracle is, both
    /// within `timeout` of the call (the oracle compares at least once);
    /// panics with the differences and the daemons' logs otherwise.
    pub fn assert_equal_to_linux(&self, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        self.assert_in_sync(timeout);
        let left = deadline.saturating_duration_since(Instant::now());
        let diffs = oracle::compare_until(&self.ns.name, &self.endpoint, &self.features, left);
        if !diffs.is_empty() {
            let n = diffs.len();
            let shown: Vec<_> = diffs.into_iter().take(40).collect();
            panic!(
                "the check is empty but the oracle finds {n} differences after {timeout:?}:\n{}\n--- cmgrd log:\n{}",
                shown.join("\n"),
                tail(&self.cmgrd.as_ref().map(Daemon::log).unwrap_or_default()),
            );
        }
    }

    /// The fast path's counters.
    pub fn fp_counters(&self) -> Vec<(String, u64)> {
        QueryClient::connect(&self.endpoint, "test", Duration::from_secs(5))
            .and_then(|mut c| c.counters())
            .expect("fpd counters")
    }

    pub fn fp_counter(&self, name: &str) -> u64 {
        self.fp_counters()
            .into_iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v)
            .unwrap_or_else(|| panic!("no counter {name}"))
    }
}

/// The last lines of a log.
pub fn tail(log: &str) -> String {
    let lines: Vec<&str> = log.lines().collect();
    lines[lines.len().saturating_sub(30)..].join("\n")
}

/// Sends one command to a cmgrd console and returns the answer.
pub fn console(path: &Path, command: &str) -> String {
    let mut s =
        UnixStream::connect(path).unwrap_or_else(|e| panic!("console {}: {e}", path.display()));
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    s.write_all(format!("{command}\n").as_bytes()).unwrap();
    s.shutdown(std::net::Shutdown::Write).unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    out
}

/// A systemd-journald of its own, in a private mount namespace (slave: the
/// host's mounts, such as new `ip netns` files, still appear in it; tmpfs on
/// /run/systemd/journal and /run/log), so that the host's /run is never
/// touched. Commands that must log to it or read it run inside that
/// namespace through `command()`.
pub struct PrivateJournal {
    journald: Daemon,
    _dir: TempDir,
}

impl PrivateJournal {
    pub fn start() -> PrivateJournal {
        let dir = TempDir::new("journal");
        // The mount points must exist before the namespace mounts on them.
        std::fs::create_dir_all("/run/systemd/journal").unwrap();
        std::fs::create_dir_all("/run/log").unwrap();
        let script = "mount -t tmpfs tmpfs /run/systemd/journal && mount -t tmpfs tmpfs /run/log \
                      && exec /lib/systemd/systemd-journald";
        let args: Vec<String> = [
            "--mount",
            "--propagation",
            "slave",
            "--",
            "sh",
            "-c",
            script,
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let journald = Daemon::spawn(
            Path::new("/usr/bin/unshare"),
            &args,
            dir.path.join("journald.log"),
        );
        let j = PrivateJournal {
            journald,
            _dir: dir,
        };
        let ok = wait_until(Duration::from_secs(10), || {
            j.command("test")
                .args(["-S", "/run/systemd/journal/socket"])
                .status()
                .is_ok_and(|s| s.success())
        });
        assert!(ok, "journald did not start: {}", j.journald.log());
        j
    }

    /// A command that runs inside the journal's mount namespace.
    pub fn command(&self, program: &str) -> Command {
        let mut c = Command::new("nsenter");
        c.arg(format!("--mount=/proc/{}/ns/mnt", self.journald.pid()))
            .arg("--")
            .arg(program);
        c
    }

    /// `journalctl -t IDENT -o json`: each entry's MESSAGE and fields.
    pub fn entries(&self, identifier: &str) -> Vec<String> {
        let out = self
            .command("journalctl")
            .args(["-t", identifier, "-o", "json", "--no-pager"])
            .output()
            .expect("journalctl");
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(str::to_owned)
            .collect()
    }
}

/// `--name N` from a benchmark's command line, else `default`.
pub fn arg<T: std::str::FromStr>(name: &str, default: T) -> T {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .map(|v| {
            v.parse()
                .unwrap_or_else(|_| panic!("{name} takes a number"))
        })
        .unwrap_or(default)
}

/// Audit switched on or off, machine-wide, for one test; the previous
/// setting comes back on drop, even when the test fails. Audit is one
/// setting for the whole machine: the guard also holds a process-wide
/// lock, so that the tests that depend on it run one at a time.
pub struct AuditSetting {
    previous: bool,
    _lock: MutexGuard<'static, ()>,
}

static AUDIT_LOCK: Mutex<()> = Mutex::new(());

impl AuditSetting {
    pub fn set(enabled: bool) -> AuditSetting {
        let lock = AUDIT_LOCK.lock().unwrap_or_else(|e| e.into_inner());
        let previous = audit_enabled();
        audit_set(enabled);
        assert_eq!(audit_enabled(), enabled, "AUDIT_SET did not take");
        AuditSetting {
            previous,
            _lock: lock,
        }
    }
}

impl Drop for AuditSetting {
    fn drop(&mut self) {
        audit_set(self.previous);
    }
}

/// Whether the kernel emits audit records (AUDIT_GET).
pub fn audit_enabled() -> bool {
    instance::linux::legacy_tables::AuditStatus::open()
        .and_then(|mut s| s.enabled())
        .expect("AUDIT_GET")
}

/// AUDIT_SET of `audit_status.enabled` alone (mask AUDIT_STATUS_ENABLED),
/// acknowledged.
fn audit_set(enabled: bool) {
    use instance::netlink::{Messages, NetlinkSocket};
    const AUDIT_SET: u16 = 1001;
    const AUDIT_STATUS_ENABLED: u32 = 1;
    let sock = NetlinkSocket::open_proto(9, &[], 64 << 10).expect("NETLINK_AUDIT socket");
    // struct audit_status: mask, enabled, then nine fields left alone.
    let mut body = Vec::new();
    body.extend_from_slice(&AUDIT_STATUS_ENABLED.to_ne_bytes());
    body.extend_from_slice(&u32::from(enabled).to_ne_bytes());
    body.resize(44, 0);
    let mut msg = Vec::new();
    msg.extend_from_slice(&(16 + body.len() as u32).to_ne_bytes());
    msg.extend_from_slice(&AUDIT_SET.to_ne_bytes());
    msg.extend_from_slice(&(1u16 | 4).to_ne_bytes()); // NLM_F_REQUEST | NLM_F_ACK
    msg.extend_from_slice(&1u32.to_ne_bytes());
    msg.extend_from_slice(&0u32.to_ne_bytes());
    msg.extend_from_slice(&body);
    sock.send(&msg).expect("AUDIT_SET");
    let mut sock = sock;
    loop {
        let mut buf = Vec::new();
        sock.recv(&mut buf, false).expect("AUDIT_SET ack");
        for m in Messages::new(&buf).flatten() {
            if m.kind == 2 {
                let code = instance::netlink::wire::error_code(m.payload);
                assert_eq!(code, 0, "AUDIT_SET refused");
                return;
            }
        }
    }
}

/// Runs `f` on a thread of its own inside the network namespace `name`
/// (setns changes only the calling thread), and returns what it returns.
pub fn in_netns<T: Send>(name: &str, f: impl FnOnce() -> T + Send) -> T {
    use std::os::fd::AsRawFd;
    let ns = File::open(format!("/var/run/netns/{name}"))
        .unwrap_or_else(|e| panic!("netns {name}: {e}"));
    std::thread::scope(|scope| {
        scope
            .spawn(|| {
                // SAFETY: setns(2) on a descriptor we hold open, for this
                // thread only (a network namespace).
                let ret = unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) };
                assert_eq!(ret, 0, "setns {name}: {}", std::io::Error::last_os_error());
                f()
            })
            .join()
            .expect("the thread in the namespace panicked")
    })
}

/// Objects the kernel here cannot make, for fixtures (this kernel has no
/// ESP: SAs come from netlink messages built from these).
pub mod fixtures {
    use fpc::{Lifetime, Selector, XfrmAlgo, XfrmSa};

    fn ip(s: &str) -> std::net::IpAddr {
        s.parse().expect("an address")
    }

    /// An SA's selector: 10.1.0.0/16 to 10.2.0.0/16.
    pub fn selector() -> Selector {
        Selector {
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
        }
    }

    /// An ESP SA 192.0.2.1 to 192.0.2.2, AES-CBC and HMAC-SHA256.
    pub fn sa(spi: u32) -> XfrmSa {
        XfrmSa {
            sel: selector(),
            daddr: ip("192.0.2.2"),
            spi,
            proto: 50,
            saddr: ip("192.0.2.1"),
            mode: 1,
            reqid: 7,
            replay_window: 32,
            flags: 0,
            algos: vec![
                XfrmAlgo {
                    attr: 2,
                    name: "cbc(aes)".into(),
                    key_bits: 128,
                    param: 0,
                    key: vec![0x11; 16],
                },
                XfrmAlgo {
                    attr: 20,
                    name: "hmac(sha256)".into(),
                    key_bits: 256,
                    param: 128,
                    key: vec![0x22; 32],
                },
            ],
            encap: None,
            mark: (0, 0),
            if_id: 0,
            lifetime: Lifetime {
                hard_add_seconds: 3600,
                soft_add_seconds: 3000,
                ..Lifetime::default()
            },
        }
    }
}

/// The `ip -batch` lines of the route benchmarks' load: `v4` IPv4 /24s
/// via 10.0.0.2 and `v6` IPv6 /64s via 2001:db8::2 (both on a link with
/// 10.0.0.1/16 and 2001:db8::1/64).
pub fn route_batch(v4: usize, v6: usize) -> String {
    let mut batch = String::with_capacity((v4 + v6) * 48);
    for i in 0..v4 as u32 {
        batch += &format!(
            "route add {}.{}.{}.0/24 via 10.0.0.2\n",
            11 + (i >> 16),
            (i >> 8) & 255,
            i & 255
        );
    }
    for i in 0..v6 as u32 {
        batch += &format!(
            "route add 2001:db8:{:x}:{:x}::/64 via 2001:db8::2\n",
            1 + (i >> 16),
            i & 0xffff
        );
    }
    batch
}

/// Whether this kernel has the qdisc kinds the traffic-control scenarios
/// use (tbf, ingress, clsact): kernels here differ (one had no fq_codel,
/// htb nor netem). Tried on the loopback of a namespace of its own; where
/// one is missing, the caller says SKIPPED and stops.
pub fn kernel_has_tc_qdiscs() -> bool {
    let ns = Netns::new("tcprobe");
    let ok = [
        "qdisc add dev lo root tbf rate 1mbit burst 32k latency 50ms",
        "qdisc del dev lo root",
        "qdisc add dev lo ingress",
        "qdisc del dev lo ingress",
        "qdisc add dev lo clsact",
    ]
    .iter()
    .all(|cmd| {
        std::process::Command::new("tc")
            .args(["-n", &ns.name])
            .args(cmd.split_whitespace())
            .output()
            .is_ok_and(|o| o.status.success())
    });
    if !ok {
        eprintln!("SKIPPED: this kernel lacks the tbf, ingress or clsact qdisc");
    }
    ok
}
