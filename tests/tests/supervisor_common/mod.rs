//! Helpers for the supervisor scenarios and its benchmark: a private
//! dbus-daemon run with the shipped policy, a journald in a private mount
//! namespace, fpsyncd with its configuration files, and busctl calls.
//! Every guard removes what it made on drop, by pid.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fpsync_tests::{bin, wait_until, TempDir};
use serde_json::Value;

/// The workspace's `etc/`.
pub fn etc() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../etc")
}

fn kill(child: &mut Child) {
    // SAFETY: kill(2) on our own child's pid.
    unsafe { libc::kill(child.id() as i32, libc::SIGKILL) };
    let _ = child.wait();
}

/// A private dbus-daemon with the shipped configuration and policy.
pub struct Bus {
    pub child: Child,
    pub address: String,
    _dir: TempDir,
}

impl Bus {
    pub fn start() -> Bus {
        let dir = TempDir::new("bus");
        let socket = dir.path.join("bus.sock");
        let mut child = Command::new("dbus-daemon")
            .arg("--nofork")
            .arg(format!(
                "--config-file={}",
                etc().join("dbus-1/fpsync-bus.conf").display()
            ))
            .arg(format!("--address=unix:path={}", socket.display()))
            .arg("--print-address=1")
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
}

impl Drop for Bus {
    fn drop(&mut self) {
        kill(&mut self.child);
    }
}

/// A systemd-journald in a mount namespace of its own, where tmpfs hides
/// the host's /run/systemd, /run/log and /var/log/journal: the host's logs
/// and sockets are untouched. Processes that should log to it run through
/// [`Journal::command`].
pub struct Journal {
    pub child: Child,
}

impl Journal {
    pub fn start() -> Journal {
        let script = "mount -t tmpfs tmpfs /run/systemd && \
                      mount -t tmpfs tmpfs /run/log && \
                      mount -t tmpfs tmpfs /var/log/journal && \
                      exec /lib/systemd/systemd-journald";
        let _ = std::fs::create_dir_all("/run/systemd");
        let _ = std::fs::create_dir_all("/run/log");
        let _ = std::fs::create_dir_all("/var/log/journal");
        let child = Command::new("unshare")
            .args(["-m", "--propagation", "private", "sh", "-c", script])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("unshare journald");
        let j = Journal { child };
        let pid = j.child.id();
        assert!(
            wait_until(Duration::from_secs(10), || {
                Command::new("nsenter")
                    .args([
                        "-t",
                        &pid.to_string(),
                        "-m",
                        "test",
                        "-S",
                        "/run/systemd/journal/socket",
                    ])
                    .status()
                    .is_ok_and(|s| s.success())
            }),
            "journald did not start"
        );
        j
    }

    /// `program` run inside the journal's mount namespace.
    pub fn command(&self, program: &Path) -> Command {
        let mut c = Command::new("nsenter");
        c.args(["-t", &self.child.id().to_string(), "-m"])
            .arg(program);
        c
    }

    /// `journalctl ARGS -o json`, one object per entry.
    pub fn entries(&self, args: &[&str]) -> Vec<Value> {
        let out = self
            .command(Path::new("journalctl"))
            .args(["--no-pager", "-o", "json"])
            .args(args)
            .output()
            .expect("journalctl");
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }
}

impl Drop for Journal {
    fn drop(&mut self) {
        kill(&mut self.child);
    }
}

/// One instance of a supervisor's configuration.
pub struct InstanceSpec {
    pub id: u32,
    pub netns: String,
    pub blades: Vec<u32>,
}

/// fpsyncd with its configuration in a temporary directory; stopped
/// (SIGTERM, then SIGKILL) on drop.
pub struct Supervisor {
    pub child: Option<Child>,
    pub dir: TempDir,
    pub run_dir: PathBuf,
    pub address: String,
    pub log: PathBuf,
}

/// Writes the configuration files; returns the environment that names them.
pub fn write_config(dir: &Path, instances: &[InstanceSpec], extra: &str) -> Vec<(String, String)> {
    let run_dir = dir.join("run");
    let ids: Vec<String> = instances.iter().map(|i| i.id.to_string()).collect();
    let global = format!(
        "# written by the supervisor tests\n\
         INSTANCES=\"{}\"\n\
         FPSYNC_RUN_DIR={}\n\
         CMGR_INSTANCE_CONF={}/cmgr@%i.env\n\
         RESTART_SEC=100ms\n\
         START_LIMIT_BURST=5\n\
         START_LIMIT_INTERVAL_SEC=10s\n{extra}",
        ids.join(" "),
        run_dir.display(),
        dir.display()
    );
    std::fs::write(dir.join("linux-fp-sync.env"), global).unwrap();
    std::fs::write(dir.join("cmgr.env"), ": ${CMGR_OPTIONS:=}\n").unwrap();
    for i in instances {
        let blades: Vec<String> = i.blades.iter().map(|b| b.to_string()).collect();
        std::fs::write(
            dir.join(format!("cmgr@{}.env", i.id)),
            format!(
                "CMGR_NETNS={}\nCMGR_BLADES=\"{}\"\n",
                i.netns,
                blades.join(" ")
            ),
        )
        .unwrap();
    }
    vec![
        (
            "CONF_FILE_linux_fp_sync".into(),
            dir.join("linux-fp-sync.env").display().to_string(),
        ),
        (
            "CONF_FILE_cmgr".into(),
            dir.join("cmgr.env").display().to_string(),
        ),
    ]
}

impl Supervisor {
    /// Starts fpsyncd on `bus` (an address, or "private"), in `journal`'s
    /// mount namespace when given (then it and its children log there).
    pub fn start(
        instances: &[InstanceSpec],
        bus: &str,
        journal: Option<&Journal>,
        extra_config: &str,
    ) -> Supervisor {
        Supervisor::start_with(instances, bus, journal, extra_config, "")
    }

    /// As [`Supervisor::start`], with `cmgr_extra` appended to every
    /// instance's `cmgr.env` (such as `CMGR_OPTIONS=...`).
    pub fn start_with(
        instances: &[InstanceSpec],
        bus: &str,
        journal: Option<&Journal>,
        extra_config: &str,
        cmgr_extra: &str,
    ) -> Supervisor {
        let dir = TempDir::new("fpsyncd");
        let env = write_config(&dir.path, instances, extra_config);
        if !cmgr_extra.is_empty() {
            let path = dir.path.join("cmgr.env");
            let mut text = std::fs::read_to_string(&path).unwrap();
            text.push_str(cmgr_extra);
            std::fs::write(&path, text).unwrap();
        }
        let log = dir.path.join("fpsyncd.log");
        let file = std::fs::File::create(&log).unwrap();
        let fpsyncd = bin("fpsyncd");
        let mut cmd = match journal {
            Some(j) => j.command(&fpsyncd),
            None => Command::new(&fpsyncd),
        };
        cmd.args(["--bus", bus])
            .envs(env)
            .env("FPSYNC_LOG", "info")
            .stdin(Stdio::null())
            .stdout(file.try_clone().unwrap())
            .stderr(file);
        if journal.is_none() {
            cmd.env("FPSYNC_NO_JOURNAL", "1");
        } else {
            cmd.env_remove("FPSYNC_NO_JOURNAL");
        }
        let child = cmd.spawn().expect("fpsyncd");
        let run_dir = dir.path.join("run");
        let mut s = Supervisor {
            child: Some(child),
            run_dir,
            dir,
            address: bus.to_owned(),
            log,
        };
        if bus == "private" {
            let file = s.run_dir.join("bus");
            assert!(
                wait_until(Duration::from_secs(10), || std::fs::read_to_string(&file)
                    .is_ok_and(|a| !a.trim().is_empty())),
                "no private bus address: {}",
                s.log()
            );
            s.address = std::fs::read_to_string(&file).unwrap().trim().to_owned();
        }
        s
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().map(|c| c.id()).unwrap_or(0)
    }

    /// Busctl against this supervisor's bus.
    pub fn busctl(&self, args: &[&str]) -> (bool, String, String) {
        busctl(&self.address, args)
    }

    /// Calls a method of org.fpsync.Supervisor1 returning a JSON string.
    pub fn json(&self, method: &str) -> Value {
        let (ok, out, err) = self.busctl(&[
            "--json=short",
            "call",
            "org.fpsync.Supervisor1",
            "/org/fpsync/Supervisor1",
            "org.fpsync.Supervisor1",
            method,
        ]);
        assert!(ok, "{method}: {err}\n{}", self.log());
        let v: Value = serde_json::from_str(&out).expect("busctl json");
        serde_json::from_str(v["data"][0].as_str().expect("a string")).expect("JSON answer")
    }

    pub fn status(&self) -> Value {
        self.json("Status")
    }

    /// Waits until the supervisor's State is `state`.
    pub fn wait_state(&self, state: &str, timeout: Duration) {
        let mut last = String::new();
        let ok = wait_until(timeout, || {
            let (ok, out, _) = self.busctl(&[
                "get-property",
                "org.fpsync.Supervisor1",
                "/org/fpsync/Supervisor1",
                "org.fpsync.Supervisor1",
                "State",
            ]);
            last = out.trim().to_owned();
            ok && last == format!("s \"{state}\"")
        });
        assert!(ok, "State is {last}, not {state}:\n{}", self.log());
    }

    /// The children's pids, from Status.
    pub fn child_pids(&self) -> Vec<u32> {
        let st = self.status();
        st["instances"]
            .as_array()
            .into_iter()
            .flatten()
            .chain(st["blades"].as_array().into_iter().flatten())
            .filter_map(|c| c["main_pid"].as_u64())
            .filter(|p| *p != 0)
            .map(|p| p as u32)
            .collect()
    }

    /// SIGTERM, then waits (SIGKILL after `timeout`); the exit status.
    pub fn stop(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        let mut child = self.child.take()?;
        // SAFETY: kill(2) on our own child's pid.
        unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
        let deadline = Instant::now() + timeout;
        loop {
            if let Ok(Some(st)) = child.try_wait() {
                return Some(st);
            }
            if Instant::now() >= deadline {
                kill(&mut child);
                return None;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// SIGKILL, as a crash would.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            kill(&mut c);
        }
    }
}

impl Drop for Supervisor {
    fn drop(&mut self) {
        self.stop(Duration::from_secs(10));
    }
}

/// fpsyncd on a private bus of its own; fields drop in order, fpsyncd
/// first.
pub struct Tree {
    pub s: Supervisor,
    _bus: Bus,
}

impl Tree {
    /// One instance `id` in `netns` feeding blade `id`, running.
    pub fn one(netns: &str, id: u32, extra_config: &str) -> Tree {
        let bus = Bus::start();
        let s = Supervisor::start(
            &[InstanceSpec {
                id,
                netns: netns.to_owned(),
                blades: vec![id],
            }],
            &bus.address,
            None,
            extra_config,
        );
        s.wait_state("running", Duration::from_secs(20));
        Tree { s, _bus: bus }
    }
}

pub fn busctl(address: &str, args: &[&str]) -> (bool, String, String) {
    let out = Command::new("busctl")
        .arg(format!("--address={address}"))
        .args(args)
        .output()
        .expect("busctl");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// `dbus-send --print-reply` (prints named errors as `Error NAME: message`).
pub fn dbus_send(address: &str, method: &str, args: &[&str]) -> (bool, String) {
    let out = Command::new("dbus-send")
        .arg(format!("--bus={address}"))
        .args([
            "--print-reply",
            "--dest=org.fpsync.Supervisor1",
            "/org/fpsync/Supervisor1",
        ])
        .arg(format!("org.fpsync.Supervisor1.{method}"))
        .args(args)
        .output()
        .expect("dbus-send");
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

/// Whether a process exists (and is not a zombie).
pub fn alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(s) => !s
            .rsplit(')')
            .next()
            .unwrap_or("")
            .trim_start()
            .starts_with('Z'),
        Err(_) => false,
    }
}
