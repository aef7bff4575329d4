//! The shipped unit under a real systemd: systemd as PID 1 of its own pid,
//! mount, UTS, network and cgroup namespaces (`unshare`), seeing only the
//! units of a temporary directory (`SYSTEMD_UNIT_PATH`): a few empty
//! targets, Debian's dbus.service and dbus.socket (a system bus of its
//! own), and etc/systemd/fpsyncd.service with its ExecStart pointed at this
//! build and WatchdogSec shortened. /run and /tmp are private tmpfs, the
//! D-Bus policy directory is bound to a copy with the shipped policy, and
//! the cgroup2 hierarchy is mounted from a cgroup of our own, so nothing
//! the test's systemd does is seen outside it; the whole tree dies with
//! its PID 1 and that cgroup is removed.
//!
//! What it shows: Type=notify (active only after READY=1), the STATUS=
//! text, a route synced in the unit's namespace, the watchdog (a SIGSTOPped
//! fpsyncd is killed and restarted by systemd), and a clean stop.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use fpsync_tests::{bin, unique, wait_until, TempDir};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_owned()
}

/// The cgroup2 hierarchy: /sys/fs/cgroup itself (unified) or its
/// `unified` mount (hybrid, as here), with our own cgroup's path in it.
fn cgroup2_dir() -> PathBuf {
    let root = if Path::new("/sys/fs/cgroup/cgroup.controllers").exists() {
        PathBuf::from("/sys/fs/cgroup")
    } else {
        PathBuf::from("/sys/fs/cgroup/unified")
    };
    let own = std::fs::read_to_string("/proc/self/cgroup").unwrap();
    let path = own
        .lines()
        .find_map(|l| l.strip_prefix("0::"))
        .expect("a cgroup2 line in /proc/self/cgroup");
    root.join(path.trim_start_matches('/'))
}

/// systemd in its namespaces; killed (the whole namespace with it) and its
/// cgroup removed on drop.
struct Systemd {
    unshare: Child,
    pid: u32,
    cgroup: PathBuf,
    _dir: TempDir,
}

impl Systemd {
    /// Runs `args` inside the namespaces (nsenter), as systemctl would be.
    fn run(&self, args: &[&str]) -> (bool, String) {
        let out = Command::new("nsenter")
            .args(["-t", &self.pid.to_string(), "-m", "-p", "-u", "-n", "--"])
            .args(args)
            .output()
            .unwrap();
        (
            out.status.success(),
            format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ),
        )
    }

    fn show(&self, prop: &str) -> String {
        let (_, out) = self.run(&["systemctl", "show", "fpsyncd", "-p", prop, "--value"]);
        out.trim().to_owned()
    }
}

impl Drop for Systemd {
    fn drop(&mut self) {
        // SIGKILL to a PID 1 kills every process of its namespace.
        // SAFETY: kill(2) on the systemd this test started.
        unsafe { libc::kill(self.pid as i32, libc::SIGKILL) };
        let _ = self.unshare.wait();
        // Depth first: every cgroup systemd made under ours, then ours.
        let mut dirs = vec![self.cgroup.clone()];
        let mut i = 0;
        while i < dirs.len() {
            if let Ok(entries) = std::fs::read_dir(&dirs[i]) {
                for e in entries.flatten() {
                    if e.file_type().is_ok_and(|t| t.is_dir()) {
                        dirs.push(e.path());
                    }
                }
            }
            i += 1;
        }
        for d in dirs.iter().rev() {
            let _ = wait_until(Duration::from_secs(2), || {
                std::fs::remove_dir(d).is_ok() || !d.exists()
            });
        }
    }
}

fn start_systemd() -> Systemd {
    let dir = TempDir::new("systemd");
    let t = &dir.path;
    let units = t.join("units");
    let conf = t.join("conf");
    let policy = t.join("dbus");
    for d in [&units, &conf, &policy] {
        std::fs::create_dir_all(d).unwrap();
    }
    for target in [
        "sysinit",
        "basic",
        "sockets",
        "shutdown",
        "timers",
        "paths",
        "slices",
        "local-fs",
        "network-pre",
        "network",
        "multi-user",
    ] {
        std::fs::write(
            units.join(format!("{target}.target")),
            format!("[Unit]\nDescription={target} (empty, for the test)\n"),
        )
        .unwrap();
    }
    std::fs::write(
        units.join("fpsync-test.target"),
        "[Unit]\nDescription=fpsync test\nWants=fpsyncd.service\nAfter=fpsyncd.service\n",
    )
    .unwrap();
    for u in ["dbus.service", "dbus.socket"] {
        std::fs::copy(Path::new("/lib/systemd/system").join(u), units.join(u)).unwrap();
    }
    // The shipped unit, pointed at this build and at the test's files.
    let shipped = std::fs::read_to_string(repo().join("etc/systemd/fpsyncd.service")).unwrap();
    for line in [
        "Type=notify",
        "WatchdogSec=10s",
        "ExecStart=/usr/sbin/fpsyncd --bus system",
    ] {
        assert!(shipped.lines().any(|l| l == line), "the unit lacks {line}");
    }
    let unit: String = shipped
        .lines()
        .map(|l| {
            if l.starts_with("ExecStart=") {
                // The build's binaries, bound under /run/t/bin before the
                // private /tmp hides a checkout that lives there.
                "ExecStart=/run/t/bin/fpsyncd --bus system".to_owned()
            } else if l.starts_with("Environment=") {
                "Environment=CONF_FILE_linux_fp_sync=/run/t/conf/lfs.env \
                 CONF_FILE_cmgr=/run/t/conf/cmgr.env FPSYNC_NO_JOURNAL=1"
                    .to_owned()
            } else if l.starts_with("WatchdogSec=") {
                "WatchdogSec=2s".to_owned()
            } else {
                l.to_owned()
            }
        })
        .collect::<Vec<_>>()
        .join("\n");
    std::fs::write(units.join("fpsyncd.service"), unit + "\n").unwrap();
    std::fs::write(
        conf.join("lfs.env"),
        "INSTANCES=1\nFPSYNC_RUN_DIR=/run/fpsync\nCMGR_INSTANCE_CONF=/run/t/conf/cmgr@%i.env\n",
    )
    .unwrap();
    std::fs::write(conf.join("cmgr.env"), "").unwrap();
    if let Ok(entries) = std::fs::read_dir("/etc/dbus-1/system.d") {
        for e in entries.flatten() {
            let _ = std::fs::copy(e.path(), policy.join(e.file_name()));
        }
    }
    std::fs::copy(
        repo().join("etc/dbus-1/system.d/org.fpsync.conf"),
        policy.join("org.fpsync.conf"),
    )
    .unwrap();

    let cgroup = cgroup2_dir().join(format!("fpst-systemd-{}", unique()));
    let inner = "mount -t tmpfs tmpfs /run && mkdir /run/t && mount --bind \"$T\" /run/t \
         && mkdir -p /run/t/bin && mount --bind \"$B\" /run/t/bin \
         && mount -t tmpfs tmpfs /tmp && mount --bind /run/t/dbus /etc/dbus-1/system.d \
         && mount -t cgroup2 cgroup2 /sys/fs/cgroup && ip link set lo up \
         && exec env -i container=fpsync-test SYSTEMD_UNIT_PATH=/run/t/units \
            PATH=/usr/sbin:/usr/bin:/sbin:/bin /lib/systemd/systemd --system \
            --unit=fpsync-test.target";
    let outer = format!(
        "set -eu; mkdir \"$CG\"; echo $$ >\"$CG/cgroup.procs\"; exec unshare --cgroup --pid \
         --fork --mount --uts --net --propagation private --mount-proc bash -c '{inner}'"
    );
    let log = std::fs::File::create(t.join("systemd.log")).unwrap();
    let unshare = Command::new("bash")
        .arg("-c")
        .arg(outer)
        .env("T", t)
        .env("B", bin("fpsyncd").parent().expect("the build's directory"))
        .env("CG", &cgroup)
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .unwrap();
    let upid = unshare.id();
    let mut pid = 0;
    let found = wait_until(Duration::from_secs(10), || {
        pid = std::fs::read_to_string(format!("/proc/{upid}/task/{upid}/children"))
            .ok()
            .and_then(|c| c.split_whitespace().next().and_then(|p| p.parse().ok()))
            .unwrap_or(0);
        pid != 0
            && std::fs::read_to_string(format!("/proc/{pid}/comm"))
                .is_ok_and(|c| c.trim() == "systemd")
    });
    let s = Systemd {
        unshare,
        pid,
        cgroup,
        _dir: dir,
    };
    assert!(
        found,
        "systemd did not start: {}",
        std::fs::read_to_string(s._dir.path.join("systemd.log")).unwrap_or_default()
    );
    s
}

#[test]
fn the_unit_runs_under_systemd_with_notify_and_watchdog() {
    let s = start_systemd();
    let in_sync = "1/1 instances in sync, 1/1 blades running";
    let ok = wait_until(Duration::from_secs(30), || {
        s.show("ActiveState") == "active" && s.show("StatusText") == in_sync
    });
    let (_, status) = s.run(&["systemctl", "status", "fpsyncd", "--no-pager"]);
    assert!(ok, "{status}");
    assert_eq!(s.show("Type"), "notify");
    assert_eq!(s.show("WatchdogUSec"), "2s");
    assert_eq!(s.show("NRestarts"), "0", "{status}");
    // The supervised tree syncs the unit's namespace.
    let (ok, out) = s.run(&["ip", "route", "add", "192.0.2.0/24", "dev", "lo"]);
    assert!(ok, "{out}");
    // Inside the namespaces the build is at /run/t/bin (see above).
    let (ok, out) = s.run(&[
        "/run/t/bin/fpsync-check",
        "--fpc",
        "unix:/run/fpsync/fpd1.sock",
        "--wait",
        "5",
    ]);
    assert!(ok, "not in sync: {out}");

    // The watchdog: a stuck fpsyncd (SIGSTOP) is killed by systemd after
    // WatchdogSec and restarted (Restart=on-failure).
    let first = s.show("MainPID");
    let (ok, out) = s.run(&["kill", "-STOP", &first]);
    assert!(ok, "{out}");
    let restarted = wait_until(Duration::from_secs(15), || {
        s.show("NRestarts") == "1"
            && s.show("MainPID") != first
            && s.show("ActiveState") == "active"
            && s.show("StatusText") == in_sync
    });
    let (_, status) = s.run(&["systemctl", "status", "fpsyncd", "--no-pager"]);
    assert!(restarted, "{status}");

    // A clean stop: children gone, Result success.
    let (ok, out) = s.run(&["systemctl", "stop", "fpsyncd"]);
    assert!(ok, "{out}");
    assert_eq!(s.show("ActiveState"), "inactive");
    assert_eq!(s.show("Result"), "success");
    let (_, ps) = s.run(&["ps", "-e", "-o", "comm="]);
    assert!(
        !ps.lines()
            .any(|c| matches!(c.trim(), "fpd" | "cmgrd" | "fpsyncd")),
        "{ps}"
    );
}
