//! The `fpsync` CLI as an operator uses it: start (fpsyncd daemonized on a
//! private bus, returning once every instance is in sync), status, show,
//! ipsec ha, console, stop.

mod supervisor_common;

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use fpsync_tests::{bin, unique, wait_until, Netns, TempDir};
use serde_json::Value;
use supervisor_common::{alive, write_config, InstanceSpec};

struct Cli {
    env: Vec<(String, String)>,
    run_dir: PathBuf,
    _dir: TempDir,
}

impl Cli {
    fn run(&self, args: &[&str]) -> (i32, String, String) {
        let out = Command::new(bin("fpsync"))
            .args(args)
            .envs(self.env.iter().cloned())
            .env("FPSYNC_NO_JOURNAL", "1")
            .output()
            .unwrap();
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    fn fpsyncd_pid(&self) -> Option<u32> {
        std::fs::read_to_string(self.run_dir.join("fpsyncd.pid"))
            .ok()?
            .trim()
            .parse()
            .ok()
    }
}

impl Drop for Cli {
    fn drop(&mut self) {
        // Whatever happened, no fpsyncd (so no child) outlives the test.
        if let Some(pid) = self.fpsyncd_pid() {
            if alive(pid) {
                // SAFETY: kill(2) on the pid fpsyncd wrote in our run dir.
                unsafe { libc::kill(pid as i32, libc::SIGKILL) };
            }
        }
    }
}

#[test]
fn start_status_show_ipsec_console_stop() {
    let a = Netns::new("cli-a");
    let b = Netns::new("cli-b");
    let base = 50_000 + unique() % 1_000_000 * 2;
    let dir = TempDir::new("cli");
    let env = write_config(
        &dir.path,
        &[
            InstanceSpec {
                id: base,
                netns: a.name.clone(),
                blades: vec![1],
            },
            InstanceSpec {
                id: base + 1,
                netns: b.name.clone(),
                blades: vec![2],
            },
        ],
        "",
    );
    let cli = Cli {
        env,
        run_dir: dir.path.join("run"),
        _dir: dir,
    };
    a.ip(&["route", "add", "blackhole", "192.0.2.0/24"]);
    b.ip(&["route", "add", "blackhole", "198.51.100.0/24"]);
    b.ip(&["route", "add", "blackhole", "203.0.113.0/24"]);

    // status of a stopped fpsyncd: exit 3.
    let (code, out, _) = cli.run(&["status"]);
    assert_eq!(code, 3, "{out}");

    let (code, out, err) = cli.run(&["start", "--bus", "private", "--timeout", "30"]);
    assert_eq!(code, 0, "start: {out}{err}");
    assert!(out.contains("all instances in sync"), "{out}");
    // A second start finds it running.
    let (code, out, _) = cli.run(&["start", "--bus", "private"]);
    assert_eq!(code, 0);
    assert!(out.contains("already runs"), "{out}");

    let (code, out, err) = cli.run(&["status"]);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains(&a.name) && out.contains(&b.name) && out.contains("synced"),
        "{out}"
    );

    // Blue has one blackhole route more than red (both have lo's local
    // routes), once the blades' figures (from memory) caught up.
    let stats_json = || {
        let (code, out, _) = cli.run(&["show", "stats", "--json"]);
        assert_eq!(code, 0);
        serde_json::from_str::<Value>(&out).unwrap()
    };
    let routes = |stats: &Value, b: &str| stats["blades"][b]["routes4"].as_u64().unwrap_or(0);
    assert!(
        wait_until(Duration::from_secs(5), || {
            let st = stats_json();
            routes(&st, "1") > 0 && routes(&st, "2") == routes(&st, "1") + 1
        }),
        "{}",
        stats_json()
    );
    let stats = stats_json();
    let (r1, r2) = (routes(&stats, "1"), routes(&stats, "2"));
    assert_eq!(stats["total"]["routes4"].as_u64(), Some(r1 + r2), "{stats}");
    let (code, out, _) = cli.run(&["show", "stats"]);
    assert_eq!(code, 0);
    let row = [r1, r2, r1 + r2].map(|x| x.to_string());
    assert!(
        out.lines().any(|l| l.split_whitespace().collect::<Vec<_>>()
            == ["routes4", row[0].as_str(), row[1].as_str(), row[2].as_str()]),
        "{out}"
    );

    let (code, out, _) = cli.run(&["show", "instances", "--json"]);
    assert_eq!(code, 0);
    let inst: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(inst.as_array().unwrap().len(), 2);
    let (code, out, _) = cli.run(&["show", "blades", "-b", "2", "--json"]);
    assert_eq!(code, 0);
    let blades: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(blades.as_array().unwrap().len(), 1, "{blades}");
    assert_eq!(blades[0]["instance"], base + 1);

    let (code, out, err) = cli.run(&["show", "sync-features", "-b", "2"]);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.starts_with(&format!("== instance {} ==", base + 1)),
        "{out}"
    );
    let (code, out, _) = cli.run(&["show", "queue", "--json", "-I", &base.to_string()]);
    assert_eq!(code, 0);
    let q: Value = serde_json::from_str(&out).unwrap();
    assert!(q[base.to_string()].is_array(), "{q}");

    let (code, out, err) = cli.run(&["ipsec", "ha", "enable", "-b", "2"]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(out.trim(), "blade 2: IPsec High Availability enabled");
    let (code, out, _) = cli.run(&["ipsec", "ha", "show"]);
    assert_eq!(code, 0);
    assert_eq!(
        out.trim(),
        "blade 1: IPsec High Availability disabled\nblade 2: IPsec High Availability enabled"
    );
    let (code, _, err) = cli.run(&["ipsec", "ha", "enable", "-b", "9"]);
    assert_eq!(code, 1);
    assert!(
        err.contains("no blade 9") && err.contains("InvalidArgument"),
        "{err}"
    );

    let (code, out, _) = cli.run(&["console", "-I", &base.to_string(), "show", "pid"]);
    assert_eq!(code, 0);
    assert!(out.starts_with("pid: "), "{out}");
    let (code, _, err) = cli.run(&["console", "-I", "7", "show", "pid"]);
    assert_eq!(code, 1);
    assert!(err.contains("NoSuchInstance"), "{err}");

    // Restart one instance through the CLI: only its pid changes.
    let pids = |cli: &Cli| -> Vec<u64> {
        let (_, out, _) = cli.run(&["show", "instances", "--json"]);
        let v: Value = serde_json::from_str(&out).unwrap();
        v.as_array()
            .unwrap()
            .iter()
            .map(|i| i["main_pid"].as_u64().unwrap())
            .collect()
    };
    let before = pids(&cli);
    let (code, _, err) = cli.run(&["restart", "-I", &base.to_string()]);
    assert_eq!(code, 0, "{err}");
    let after = pids(&cli);
    assert_ne!(before[0], after[0]);
    assert_eq!(before[1], after[1]);

    let (code, out, _) = cli.run(&["status", "complete"]);
    assert_eq!(code, 0);
    for section in [
        "Installation: programs",
        "Installation: configuration",
        "Installation: bus",
        "Installation: journal",
        "Installation: kernel",
    ] {
        assert!(out.contains(section), "{section} missing:\n{out}");
    }
    assert!(out.contains("veth") && out.contains("present"), "{out}");

    let pid = cli.fpsyncd_pid().expect("pid file");
    let (code, out, _) = cli.run(&["stop"]);
    assert_eq!(code, 0);
    assert!(out.contains("fpsyncd stopped"), "{out}");
    assert!(wait_until(Duration::from_secs(5), || !alive(pid)));
    for p in after.iter().chain(before.iter()) {
        assert!(!alive(*p as u32), "child {p} left after stop");
    }
    let (code, _, _) = cli.run(&["status"]);
    assert_eq!(code, 3);
}
