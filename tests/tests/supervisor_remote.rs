//! fpsyncd with a remote blade: its fpd runs in a "blade machine"
//! namespace, reached from the control-plane namespace over veth and
//! mutual TLS (certificates made at run time). fpsyncd is configured with
//! `BLADE_<B>_ENDPOINT` and the `FPC_TLS_*` files: it starts no fpd for
//! the blade, its instance's cmgrd syncs it over TLS, and Status,
//! Statistics, the D-Bus blade object and `fpsync status` include it. The
//! link is cut for 10 s while routes change: the blade shows unreachable
//! (with the reason) within the liveness timeout and every call still
//! answers at once; healed, it is reached again and back in sync, the
//! check empty. The liveness is fpsyncd's `FPC_KEEPALIVE_SEC=500ms` and
//! `FPC_PEER_TIMEOUT_SEC=2`, handed to cmgrd as `--keepalive`,
//! `--peer-timeout` (and to the blade's fpd likewise), so the cut is seen
//! in about 2 s, not the default 5 s.

mod supervisor_common;

use std::process::Command;
use std::time::{Duration, Instant};

use fpc::{Endpoint, QueryClient, TlsFiles};
use fpsync_tests::pki::{tls_args, Pki};
use fpsync_tests::{bin, unique, wait_until, Daemon, Netns};
use instance::features::Features;
use serde_json::Value;
use supervisor_common::{Bus, InstanceSpec, Supervisor};

const PORT: u16 = 7700;
const BLADE: u32 = 7;
const BLADE_IP: &str = "10.93.1.2";
const SYNC: Duration = Duration::from_secs(10);
/// cmgrd's and fpd's peer timeout (`FPC_PEER_TIMEOUT_SEC`).
const PEER_TIMEOUT: Duration = Duration::from_secs(2);
/// The peer timeout, plus the report rounds; below the default 5 s.
const LIVENESS: Duration = Duration::from_millis(4500);

fn blade_of(st: &Value) -> Value {
    st["blades"]
        .as_array()
        .and_then(|a| a.iter().find(|b| b["id"].as_u64() == Some(BLADE.into())))
        .cloned()
        .unwrap_or_else(|| panic!("no blade {BLADE} in {st}"))
}

fn get_property(s: &Supervisor, prop: &str) -> String {
    let (_, out, _) = s.busctl(&[
        "get-property",
        "org.fpsync.Supervisor1",
        &format!("/org/fpsync/Supervisor1/blade/{BLADE}"),
        "org.fpsync.Supervisor1.Blade",
        prop,
    ]);
    out.trim().to_owned()
}

/// `fpsync status --json`'s view of the blade.
fn cli_blade(s: &Supervisor) -> Value {
    let out = Command::new(bin("fpsync"))
        .args(["--address", &s.address, "status", "--json"])
        .env("FPSYNC_NO_JOURNAL", "1")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).expect("fpsync status --json");
    blade_of(&v["status"])
}

/// Status, timed: it must answer from memory, whatever the blade does.
fn timed_status(s: &Supervisor) -> Value {
    let t = Instant::now();
    let st = s.status();
    assert!(
        t.elapsed() < Duration::from_secs(2),
        "Status took {:?}",
        t.elapsed()
    );
    st
}

fn assert_in_sync(cp: &Netns, ep: &Endpoint, s: &Supervisor, fpd: &Daemon) {
    let diffs = instance::check::check_until(Some(&cp.name), ep, &Features::default(), SYNC)
        .unwrap_or_else(|e| vec![format!("check failed: {e:?}")]);
    assert!(
        diffs.is_empty(),
        "the remote blade differs from {}:\n{}\n--- fpsyncd:\n{}\n--- fpd:\n{}",
        cp.name,
        diffs.join("\n"),
        s.log(),
        fpsync_tests::tail(&fpd.log())
    );
}

/// The control-plane namespace and the blade machine joined by veth, the
/// blade's fpd running there (TLS on TCP, and a Unix socket for the
/// test's reads). Fields drop in order: fpd, then the namespaces.
struct Machines {
    fpd: Daemon,
    local: Endpoint,
    /// The control planes' identity.
    cp_id: TlsFiles,
    _pki: Pki,
    dir: fpsync_tests::TempDir,
    cp: Netns,
    bm: Netns,
}

impl Machines {
    fn new() -> Machines {
        let cp = Netns::new("srm-cp");
        let bm = Netns::new("srm-b");
        for ns in [&cp, &bm] {
            fpsync_tests::sh(&[
                "ip",
                "netns",
                "exec",
                &ns.name,
                "sysctl",
                "-qw",
                "net.ipv6.conf.default.accept_dad=0",
            ]);
        }
        cp.ip(&[
            "link", "add", "tob", "type", "veth", "peer", "name", "tocp", "netns", &bm.name,
        ]);
        cp.ip(&["addr", "add", "10.93.1.1/24", "dev", "tob"]);
        cp.ip(&["link", "set", "tob", "up"]);
        bm.ip(&["addr", "add", &format!("{BLADE_IP}/24"), "dev", "tocp"]);
        bm.ip(&["link", "set", "tocp", "up"]);
        assert!(wait_until(SYNC, || {
            let out = cp.ip(&["-6", "addr", "show", "scope", "link"]);
            out.contains("inet6 fe80") && !out.contains("tentative")
        }));
        let dir = fpsync_tests::TempDir::new("srm");
        let pki = Pki::new(&dir.path, "fpsync");
        let blade_id = pki.issue("blade", &[BLADE_IP]);
        let cp_id = pki.issue("cp", &[]);
        let local = Endpoint::Unix(dir.path.join("fpd.sock"));
        let mut args = vec![
            "--blade".to_string(),
            BLADE.to_string(),
            "--netns".into(),
            bm.name.clone(),
            "--listen".into(),
            format!("tcp:{BLADE_IP}:{PORT}"),
            "--listen".into(),
            local.to_string(),
            "--keepalive".into(),
            "0.5".into(),
            "--peer-timeout".into(),
            PEER_TIMEOUT.as_secs().to_string(),
        ];
        args.extend(tls_args(&blade_id));
        let fpd = Daemon::spawn(&bin("fpd"), &args, dir.path.join("fpd.log"));
        assert!(
            wait_until(SYNC, || QueryClient::connect(
                &local,
                "test",
                Duration::from_secs(1)
            )
            .is_ok()),
            "fpd did not start: {}",
            fpd.log()
        );
        Machines {
            fpd,
            local,
            cp_id,
            _pki: pki,
            dir,
            cp,
            bm,
        }
    }

    /// An fpsyncd on `bus` whose instance `instance`, in the cp namespace,
    /// feeds the remote blade; `cmgr_extra` goes to its cmgr.env.
    fn control_plane(&self, bus: &Bus, instance: u32, cmgr_extra: &str) -> Supervisor {
        let extra = format!(
            "BLADE_{BLADE}_ENDPOINT=tcp:{BLADE_IP}:{PORT}\nFPC_TLS_CERT={}\nFPC_TLS_KEY={}\nFPC_TLS_CA={}\nREPORT_INTERVAL_SEC=250ms\nFPC_KEEPALIVE_SEC=500ms\nFPC_PEER_TIMEOUT_SEC={}\n",
            self.cp_id.cert.display(),
            self.cp_id.key.display(),
            self.cp_id.ca.display(),
            PEER_TIMEOUT.as_secs()
        );
        Supervisor::start_with(
            &[InstanceSpec {
                id: instance,
                netns: self.cp.name.clone(),
                blades: vec![BLADE],
            }],
            &bus.address,
            None,
            &extra,
            cmgr_extra,
        )
    }

    fn counter(&self, name: &str) -> u64 {
        QueryClient::connect(&self.local, "test", Duration::from_secs(5))
            .and_then(|mut c| c.counters())
            .expect("fpd counters")
            .into_iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v)
            .unwrap_or_else(|| panic!("no counter {name}"))
    }
}

#[test]
fn a_remote_blade_is_fed_over_tls_shown_unreachable_when_cut_and_resynced() {
    let m = Machines::new();
    let (cp, bm, dir, local, fpd) = (&m.cp, &m.bm, &m.dir, &m.local, &m.fpd);
    let bus = Bus::start();
    let instance = 4000 + unique() % 1000;
    let s = m.control_plane(&bus, instance, "");
    s.wait_state("running", Duration::from_secs(20));
    cp.ip(&["route", "add", "192.0.2.0/24", "via", "10.93.1.2"]);
    assert_in_sync(cp, local, &s, fpd);

    // No fpd was started for it; Status shows it remote, reached, synced,
    // with its tables; Statistics has its counters; so does the bus.
    let st = timed_status(&s);
    let b = blade_of(&st);
    assert_eq!(b["remote"], true, "{st}");
    assert_eq!(b["main_pid"], 0, "{st}");
    assert_eq!(b["endpoint"], format!("tcp:{BLADE_IP}:{PORT}"), "{st}");
    assert_eq!(
        (b["active_state"].as_str(), b["sub_state"].as_str()),
        (Some("active"), Some("remote")),
        "{st}"
    );
    assert!(
        wait_until(Duration::from_secs(5), || blade_of(&s.status())
            ["sync_state"]
            == "synced"),
        "{}",
        s.status()
    );
    assert!(b["tables"]["routes4"].as_u64().unwrap_or(0) >= 1, "{st}");
    assert!(
        !s.log().contains(&format!("fpd{BLADE} started")),
        "{}",
        s.log()
    );
    // cmgrd was given the liveness of the configuration.
    let pid = st["instances"][0]["main_pid"].as_u64().unwrap();
    let cmdline = std::fs::read_to_string(format!("/proc/{pid}/cmdline"))
        .unwrap()
        .replace('\0', " ");
    assert!(
        cmdline.contains("--keepalive 0.5 --peer-timeout 2"),
        "{cmdline}"
    );
    let stats = s.json("Statistics");
    assert!(
        stats["blades"][BLADE.to_string()]["sync_connected"].as_u64() == Some(1),
        "{stats}"
    );
    assert_eq!(get_property(&s, "ActiveState"), "s \"active\"");
    assert_eq!(get_property(&s, "SubState"), "s \"remote\"");
    assert_eq!(get_property(&s, "SyncState"), "s \"synced\"");
    assert_eq!(cli_blade(&s)["sub_state"], "remote");
    // A remote blade is not fpsyncd's to stop.
    let (ok, _, err) = s.busctl(&[
        "call",
        "org.fpsync.Supervisor1",
        &format!("/org/fpsync/Supervisor1/blade/{BLADE}"),
        "org.fpsync.Supervisor1.Blade",
        "Stop",
    ]);
    assert!(!ok && err.contains("is remote"), "{err}");

    // Cut the blade machine off: its FPC port drops everything, both ways.
    let rules = dir.path.join("cut.nft");
    std::fs::write(
        &rules,
        format!(
            "table inet fpsync_cut {{\n chain in {{ type filter hook input priority 0; tcp dport {PORT} drop; }}\n chain out {{ type filter hook output priority 0; tcp sport {PORT} drop; }}\n}}\n"
        ),
    )
    .unwrap();
    fpsync_tests::sh(&[
        "ip",
        "netns",
        "exec",
        &bm.name,
        "nft",
        "-f",
        rules.to_str().unwrap(),
    ]);
    let cut = Instant::now();
    for n in 0..30 {
        cp.ip(&[
            "route",
            "add",
            &format!("198.51.{n}.0/24"),
            "via",
            "10.93.1.2",
        ]);
        if n % 5 == 0 {
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    cp.ip(&["route", "del", "198.51.4.0/24"]);
    assert!(
        wait_until(LIVENESS, || {
            let b = blade_of(&timed_status(&s));
            b["sub_state"] == "unreachable"
                && b["error"]
                    .as_str()
                    .is_some_and(|e| e.starts_with("unreachable: "))
                && b["sync_state"] == "disconnected"
        }),
        "not shown unreachable within {LIVENESS:?}: {}\n{}",
        s.status(),
        s.log()
    );
    let detected = cut.elapsed();
    let st = timed_status(&s);
    assert_eq!(st["state"], "degraded", "{st}");
    let stats = s.json("Statistics");
    let e = stats["errors"][format!("blade {BLADE}")]
        .as_str()
        .unwrap_or("");
    assert!(e.starts_with("unreachable: "), "{stats}");
    assert_eq!(get_property(&s, "SubState"), "s \"unreachable\"");
    assert_eq!(get_property(&s, "SyncState"), "s \"disconnected\"");
    let cli = cli_blade(&s);
    assert!(
        cli["error"]
            .as_str()
            .is_some_and(|e| e.starts_with("unreachable: ")),
        "{cli}"
    );
    assert!(s.log().contains("unreachable: "), "{}", s.log());
    std::thread::sleep(Duration::from_secs(10).saturating_sub(cut.elapsed()));
    assert_eq!(blade_of(&timed_status(&s))["sub_state"], "unreachable");

    // Healed: reached again, resynced, the check empty.
    fpsync_tests::sh(&[
        "ip",
        "netns",
        "exec",
        &bm.name,
        "nft",
        "delete",
        "table",
        "inet",
        "fpsync_cut",
    ]);
    let healed = Instant::now();
    assert!(
        wait_until(Duration::from_secs(15), || {
            let b = blade_of(&timed_status(&s));
            b["sub_state"] == "remote" && b["sync_state"] == "synced" && b.get("error").is_none()
        }),
        "not back in sync: {}\n{}",
        s.status(),
        s.log()
    );
    s.wait_state("running", Duration::from_secs(10));
    assert_in_sync(cp, local, &s, fpd);
    assert_eq!(get_property(&s, "SyncState"), "s \"synced\"");
    eprintln!(
        "shown unreachable {detected:?} after the cut, in sync again {:?} after the heal",
        healed.elapsed()
    );
}

/// Adds and removes routes in `ns` until told to stop; how many changes.
fn churn(ns: &Netns, stop: &std::sync::atomic::AtomicBool) -> u32 {
    let mut n = 0u32;
    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
        let net = format!("198.18.{}.0/24", n % 100);
        if n >= 100 && n.is_multiple_of(3) {
            ns.try_ip(&["route", "del", "blackhole", &net]);
        } else {
            ns.try_ip(&["route", "replace", "blackhole", &net]);
        }
        n += 1;
        std::thread::sleep(Duration::from_millis(10));
    }
    n
}

/// Two control planes (two fpsyncd, each with its cache manager for the
/// same namespace) serve the remote blade as primary (election id 20) and
/// backup (10). The primary's whole control plane is killed (-9: its cmgrd
/// dies with it) while routes change: the backup takes over within the
/// liveness timeout and the check is empty; the old control plane back with
/// a lower id (5) stays a backup, and says so.
#[test]
fn two_control_planes_serve_a_remote_blade_as_primary_and_backup() {
    let m = Machines::new();
    let (bus_a, bus_b) = (Bus::start(), Bus::start());
    let (ia, ib) = (5000 + unique() % 1000, 6000 + unique() % 1000);
    let mut a = m.control_plane(&bus_a, ia, "CMGR_OPTIONS=\"--election-id 20\"\n");
    a.wait_state("running", Duration::from_secs(20));
    let b = m.control_plane(&bus_b, ib, "CMGR_OPTIONS=\"--election-id 10\"\n");
    // The backup's control plane is running too: its blade is a backup,
    // which is in sync for its instance.
    b.wait_state("running", Duration::from_secs(20));
    assert_eq!(
        blade_of(&b.status())["sync_state"],
        "backup",
        "{}",
        b.status()
    );
    assert_eq!(
        blade_of(&a.status())["sync_state"],
        "synced",
        "{}",
        a.status()
    );
    assert_eq!(m.counter("primary_election_id"), 20);
    assert_eq!(m.counter("sync_backups"), 1);
    m.cp.ip(&["route", "add", "192.0.2.0/24", "via", "10.93.1.2"]);
    assert_in_sync(&m.cp, &m.local, &a, &m.fpd);
    let changes = m.counter("primary_changes");

    // Kill -9 the primary's control plane while routes change.
    let stop = std::sync::atomic::AtomicBool::new(false);
    let took = std::thread::scope(|scope| {
        let changer = scope.spawn(|| churn(&m.cp, &stop));
        std::thread::sleep(Duration::from_millis(300));
        let start = Instant::now();
        a.kill();
        assert!(
            wait_until(LIVENESS, || m.counter("primary_election_id") == 10),
            "no takeover: {}",
            b.log()
        );
        let took = start.elapsed();
        std::thread::sleep(Duration::from_millis(500));
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        let n = changer.join().unwrap();
        assert!(n > 20, "only {n} route changes");
        took
    });
    assert!(took < LIVENESS, "{took:?}");
    assert_eq!(m.counter("primary_changes"), changes + 1);
    assert!(
        wait_until(Duration::from_secs(5), || blade_of(&b.status())
            ["sync_state"]
            == "synced"),
        "{}",
        b.status()
    );
    assert!(
        b.log().contains("now the blade's primary: resyncing"),
        "{}",
        b.log()
    );
    assert_in_sync(&m.cp, &m.local, &b, &m.fpd);

    // The old control plane back, its instance with a lower id: a backup.
    drop(a);
    let a = m.control_plane(&bus_a, ia, "CMGR_OPTIONS=\"--election-id 5\"\n");
    a.wait_state("running", Duration::from_secs(20));
    assert_eq!(
        blade_of(&a.status())["sync_state"],
        "backup",
        "{}",
        a.status()
    );
    assert_eq!(m.counter("primary_election_id"), 10);
    assert_eq!(m.counter("sync_backups"), 1);
    assert!(
        a.log().contains("backup of the blade: instance"),
        "{}",
        a.log()
    );
    m.cp.ip(&["route", "add", "192.0.3.0/24", "via", "10.93.1.2"]);
    assert_in_sync(&m.cp, &m.local, &b, &m.fpd);
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(m.counter("primary_election_id"), 10);

    // The primary's host freezes (SIGSTOP: its connection stays open,
    // silent): the backup takes over once fpd's peer timeout passes.
    let frozen = b.status()["instances"][0]["main_pid"].as_u64().unwrap() as i32;
    let start = Instant::now();
    // SAFETY: kill(2) on the pid fpsyncd reported for its own child.
    unsafe { libc::kill(frozen, libc::SIGSTOP) };
    let promoted = wait_until(LIVENESS, || m.counter("primary_election_id") == 5);
    let frozen_took = start.elapsed();
    m.cp.ip(&["route", "add", "192.0.4.0/24", "via", "10.93.1.2"]);
    let in_sync =
        instance::check::check_until(Some(&m.cp.name), &m.local, &Features::default(), SYNC);
    // SAFETY: as above.
    unsafe { libc::kill(frozen, libc::SIGCONT) };
    assert!(promoted, "no takeover from a frozen primary: {}", a.log());
    assert!(
        // Silent since its last Keepalive, at most 0.5 s before the stop.
        frozen_took >= PEER_TIMEOUT - Duration::from_millis(600) && frozen_took < LIVENESS,
        "{frozen_took:?}"
    );
    assert_eq!(in_sync.map(|d| d.len()).ok(), Some(0));
    // Thawed, the higher id takes the blade back (after its own peer
    // timeout, which its silence made it miss): the check stays empty.
    assert!(
        wait_until(SYNC, || m.counter("primary_election_id") == 10),
        "{}",
        b.log()
    );
    assert_in_sync(&m.cp, &m.local, &b, &m.fpd);
    eprintln!(
        "the backup control plane took over {took:?} after the primary's was killed, {frozen_took:?} after it froze"
    );
}
