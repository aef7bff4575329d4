//! fpsyncd answers from memory: a child that stops answering (SIGSTOP) is
//! shown stale within its report interval while `Status()` and
//! `Statistics()` keep answering at once; each child's `MemoryCurrent`,
//! `CPUUsageNSec` and `TasksCurrent` (systemd's names) move when it works.
//! A private dbus-daemon with the shipped policy, real cmgrd and fpd in a
//! throwaway namespace.

mod supervisor_common;

use std::time::{Duration, Instant};

use fpsync_tests::{unique, wait_until, Netns};
use serde_json::Value;
use supervisor_common::{Supervisor, Tree};

/// The report interval these scenarios configure.
const INTERVAL: Duration = Duration::from_millis(300);

/// Sends SIGCONT on drop, so that a failing test leaves no stopped child
/// behind (fpsyncd's stop then finds it able to exit).
struct Stopped(u32);

impl Stopped {
    fn stop(pid: u32) -> Stopped {
        // SAFETY: kill(2) on a child of the fpsyncd this test started.
        unsafe { libc::kill(pid as i32, libc::SIGSTOP) };
        Stopped(pid)
    }
}

impl Drop for Stopped {
    fn drop(&mut self) {
        // SAFETY: as above.
        unsafe { libc::kill(self.0 as i32, libc::SIGCONT) };
    }
}

fn child<'a>(st: &'a Value, kind: &str, id: u32) -> &'a Value {
    st[kind]
        .as_array()
        .and_then(|a| a.iter().find(|c| c["id"].as_u64() == Some(id as u64)))
        .unwrap_or_else(|| panic!("no {kind} {id} in {st}"))
}

/// `Status` or `Statistics`, and how long the call took (busctl included).
fn timed(s: &Supervisor, method: &str) -> (Value, Duration) {
    let t = Instant::now();
    let v = s.json(method);
    (v, t.elapsed())
}

/// One instance `id` in `ns` feeding blade `id`, asked every [`INTERVAL`].
fn start(ns: &Netns, id: u32) -> Tree {
    let extra = format!(
        "REPORT_INTERVAL_SEC={}ms\nQUERY_TIMEOUT_SEC=2s\n",
        INTERVAL.as_millis()
    );
    Tree::one(&ns.name, id, &extra)
}

#[test]
fn a_stopped_child_is_stale_within_its_interval_and_calls_stay_fast() {
    let ns = Netns::new("sup-stale");
    let id = 60_000 + unique() % 1_000_000;
    let tree = start(&ns, id);
    let s = &tree.s;
    let st = s.status();
    assert_eq!(
        st["report_interval_ms"],
        INTERVAL.as_millis() as u64,
        "{st}"
    );
    for kind in ["instances", "blades"] {
        let c = child(&st, kind, id);
        // Not stale: `stale` is there only when true.
        assert_eq!(c.get("stale"), None, "{st}");
        assert!(
            c["report_age_ms"]
                .as_u64()
                .is_some_and(|a| a <= 2 * INTERVAL.as_millis() as u64),
            "{st}"
        );
    }

    for kind in ["blades", "instances"] {
        let pid = child(&s.status(), kind, id)["main_pid"].as_u64().unwrap() as u32;
        let stopped = Stopped::stop(pid);
        let t0 = Instant::now();
        let mut slowest = Duration::ZERO;
        let mut seen = None;
        while t0.elapsed() < Duration::from_secs(5) {
            let (st, took) = timed(s, "Status");
            let (stats, took2) = timed(s, "Statistics");
            slowest = slowest.max(took).max(took2);
            let c = child(&st, kind, id);
            let who = format!("{} {id}", kind.trim_end_matches('s'));
            if c["stale"] == true {
                assert!(c["error"].is_string(), "{st}");
                assert!(stats["errors"][&who].is_string(), "{stats}");
                seen = Some((t0.elapsed(), st));
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let (after, st) = seen.unwrap_or_else(|| {
            panic!(
                "{kind} {id} (pid {pid}) stopped but never stale:\n{}\n{}",
                s.status(),
                s.log()
            )
        });
        // Stale once silent for twice the interval; one round of slack.
        assert!(
            after <= INTERVAL * 3 + Duration::from_millis(300),
            "stale only after {after:?}: {st}"
        );
        // The query timeout is 2 s: a call that waited on the stopped
        // child would take that long.
        assert!(
            slowest < Duration::from_millis(500),
            "a call took {slowest:?} while {kind} {id} was stopped"
        );
        // The other child is still fresh.
        let other = if kind == "blades" {
            "instances"
        } else {
            "blades"
        };
        assert_eq!(child(&st, other, id).get("stale"), None, "{st}");
        // Until the stopped child's round times out, the error says how
        // long it has been silent; then it names the timeout.
        assert!(
            wait_until(Duration::from_secs(4), || {
                child(&s.status(), kind, id)["error"]
                    .as_str()
                    .is_some_and(|e| e.contains("no answer within 2s"))
            }),
            "{}",
            s.status()
        );
        drop(stopped);
        assert!(
            wait_until(Duration::from_secs(5), || child(&s.status(), kind, id)
                .get("stale")
                .is_none()),
            "{kind} {id} still stale after SIGCONT: {}\n{}",
            s.status(),
            s.log()
        );
    }
}

fn property(s: &Supervisor, path: &str, iface: &str, name: &str) -> u64 {
    let (ok, out, err) = s.busctl(&["get-property", "org.fpsync.Supervisor1", path, iface, name]);
    assert!(ok, "{name}: {err}");
    // "t 12345"
    out.split_whitespace()
        .nth(1)
        .and_then(|x| x.parse().ok())
        .unwrap_or_else(|| panic!("{name}: {out:?}"))
}

#[test]
fn memory_and_cpu_move_when_a_child_works() {
    let ns = Netns::new("sup-res");
    let id = 70_000 + unique() % 1_000_000;
    let tree = start(&ns, id);
    let s = &tree.s;
    let path = format!("/org/fpsync/Supervisor1/instance/{id}");
    let iface = "org.fpsync.Supervisor1.Instance";
    let read = |name: &str| property(s, &path, iface, name);
    assert!(
        wait_until(Duration::from_secs(5), || read("MemoryCurrent") != u64::MAX),
        "MemoryCurrent never sampled"
    );
    // The first sample may come before cmgrd has started its threads.
    assert!(
        wait_until(Duration::from_secs(5), || (2..1000)
            .contains(&read("TasksCurrent"))),
        "TasksCurrent {}",
        read("TasksCurrent")
    );
    let (mem0, cpu0) = (read("MemoryCurrent"), read("CPUUsageNSec"));
    let tasks = read("TasksCurrent");
    assert!(mem0 > 1 << 20 && mem0 < 1 << 32, "MemoryCurrent {mem0}");
    assert!((2..1000).contains(&tasks), "TasksCurrent {tasks}");
    let pid = child(&s.status(), "instances", id)["main_pid"]
        .as_u64()
        .unwrap();
    let vm_rss = |pid: u64| -> u64 {
        std::fs::read_to_string(format!("/proc/{pid}/status"))
            .unwrap_or_default()
            .lines()
            .find(|l| l.starts_with("VmRSS:"))
            .and_then(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
            .unwrap_or(0)
            * 1024
    };
    // The figure is the process's resident size as /proc says it.
    let rss = vm_rss(pid);
    assert!(
        mem0.abs_diff(rss) < 16 << 20,
        "MemoryCurrent {mem0}, VmRSS {rss}"
    );

    // Work: 60,000 routes for cmgrd to cache and send to its blade. cmgrd
    // keeps a route in about 54 bytes, so that is some 3 MiB of growth.
    ns.ip(&["link", "add", "v0", "type", "veth", "peer", "name", "v1"]);
    ns.ip(&["link", "set", "v0", "up"]);
    ns.ip(&["addr", "add", "10.9.0.1/16", "dev", "v0"]);
    let mut batch = String::new();
    for i in 0..60_000u32 {
        batch += &format!(
            "route add 10.{}.{}.0/24 via 10.9.0.2\n",
            16 + (i >> 8),
            i & 255
        );
    }
    ns.batch(&batch);
    let blade_path = format!("/org/fpsync/Supervisor1/blade/{id}");
    let routes = || {
        child(&s.status(), "blades", id)["tables"]["routes4"]
            .as_u64()
            .unwrap_or(0)
    };
    assert!(
        wait_until(Duration::from_secs(30), || routes() >= 60_000),
        "the blade has {} routes",
        routes()
    );
    let grown = wait_until(Duration::from_secs(5), || {
        read("MemoryCurrent") > mem0 + (2 << 20) && read("CPUUsageNSec") > cpu0
    });
    assert!(
        grown,
        "MemoryCurrent {mem0} -> {}, CPUUsageNSec {cpu0} -> {}",
        read("MemoryCurrent"),
        read("CPUUsageNSec")
    );
    let blade_cpu = property(
        s,
        &blade_path,
        "org.fpsync.Supervisor1.Blade",
        "CPUUsageNSec",
    );
    assert!(blade_cpu > 0 && blade_cpu != u64::MAX, "{blade_cpu}");
    // Status carries the same figures.
    let st = s.status();
    let c = child(&st, "instances", id);
    assert!(
        c["memory_current"].as_u64().is_some_and(|m| m > mem0),
        "{st}"
    );
    assert!(
        c["cpu_usage_nsec"].as_u64().is_some_and(|x| x > cpu0),
        "{st}"
    );
    assert!(c["tasks_current"].as_u64().is_some_and(|t| t >= 2), "{st}");
    // A child not running: systemd's "not known".
    let (ok, _, err) = s.busctl(&["call", "org.fpsync.Supervisor1", &path, iface, "Stop"]);
    assert!(ok, "{err}");
    assert!(
        wait_until(Duration::from_secs(5), || read("MemoryCurrent") == u64::MAX),
        "MemoryCurrent of a stopped instance: {}",
        read("MemoryCurrent")
    );
}

/// `Status()` and `Statistics()` reply with answers built ahead of the
/// call (every tenth of the report interval), but a change of a child's
/// state withdraws them before the method that caused it replies: the very
/// next call shows the change, however long the interval.
#[test]
fn a_state_change_shows_in_the_next_call() {
    let ns = Netns::new("sup-next");
    let id = 61_000 + unique() % 1_000_000;
    // A long interval: a prebuilt answer would be a while stale.
    let tree = Tree::one(&ns.name, id, "REPORT_INTERVAL_SEC=5s\n");
    let s = &tree.s;
    let call = |method: &str| {
        let (ok, _, err) = s.busctl(&[
            "call",
            "--timeout=30",
            "org.fpsync.Supervisor1",
            "/org/fpsync/Supervisor1",
            "org.fpsync.Supervisor1",
            method,
            "u",
            &id.to_string(),
        ]);
        assert!(ok, "{method} {id}: {err}");
    };
    // Prebuilt answers are in place (several periods after running).
    std::thread::sleep(Duration::from_millis(1200));
    assert_eq!(
        child(&s.status(), "instances", id)["active_state"],
        "active"
    );
    call("StopInstance");
    let st = s.status();
    assert_eq!(
        child(&st, "instances", id)["active_state"],
        "inactive",
        "{st}"
    );
    let stats = s.json("Statistics");
    let who = format!("instance {id}");
    assert!(
        stats["errors"][&who]
            .as_str()
            .is_some_and(|e| e.starts_with("not running")),
        "{stats}"
    );
    call("StartInstance");
    let st = s.status();
    assert_eq!(
        child(&st, "instances", id)["active_state"],
        "active",
        "{st}"
    );
    // And the answers built afterwards agree.
    std::thread::sleep(Duration::from_millis(700));
    let st = s.status();
    assert_eq!(
        child(&st, "instances", id)["active_state"],
        "active",
        "{st}"
    );
}
