//! fpsyncd end to end: a private dbus-daemon run with the shipped policy,
//! a journald of its own, two instances in two namespaces feeding two
//! blades; faults (kill -9 of a child, a child that dies at once, SIGTERM
//! and SIGKILL to fpsyncd); bad input over the bus and in the files.

mod supervisor_common;

use std::collections::BTreeMap;
use std::process::{Command, Stdio};
use std::time::Duration;

use fpc::{Endpoint, Object, AF_INET};
use fpsync_tests::{bin, unique, wait_until, Netns, TempDir};
use instance::features::Features;
use serde_json::Value;
use supervisor_common::{alive, busctl, dbus_send, Bus, InstanceSpec, Journal, Supervisor};

const SYNC: Duration = Duration::from_secs(5);

fn endpoint(s: &Supervisor, blade: u32) -> Endpoint {
    Endpoint::Unix(s.run_dir.join(format!("fpd{blade}.sock")))
}

fn assert_in_sync(s: &Supervisor, ns: &Netns, blade: u32) {
    let diffs = instance::check::check_until(
        Some(&ns.name),
        &endpoint(s, blade),
        &Features::default(),
        SYNC,
    )
    .unwrap_or_else(|e| vec![format!("check failed: {e:?}")]);
    assert!(
        diffs.is_empty(),
        "blade {blade} differs from {}:\n{}\n{}",
        ns.name,
        diffs.join("\n"),
        s.log()
    );
}

fn ipv4_routes(ns: &Netns) -> u64 {
    instance::check::linux_objects(Some(&ns.name), &Features::default())
        .unwrap()
        .iter()
        .filter(|o| matches!(o, Object::Route(r) if r.family() == AF_INET))
        .count() as u64
}

fn by_id(list: &Value, id: u64) -> &Value {
    list.as_array()
        .unwrap()
        .iter()
        .find(|x| x["id"].as_u64() == Some(id))
        .unwrap_or_else(|| panic!("no id {id} in {list}"))
}

fn get_property(s: &Supervisor, path: &str, iface: &str, prop: &str) -> String {
    let (_, out, _) = s.busctl(&["get-property", "org.fpsync.Supervisor1", path, iface, prop]);
    out.trim().to_owned()
}

/// The main scenario: Status, SetIpsecHa, Statistics, the journal, the
/// object tree, the policy, bad input.
#[test]
fn two_instances_two_blades_on_a_private_bus_with_a_journal() {
    let red = Netns::new("sup-red");
    let blue = Netns::new("sup-blue");
    let journal = Journal::start();
    let bus = Bus::start();
    let s = Supervisor::start(
        &[
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
        ],
        &bus.address,
        Some(&journal),
        "",
    );
    s.wait_state("running", Duration::from_secs(20));

    red.ip(&["link", "add", "v0", "type", "veth", "peer", "name", "v1"]);
    red.ip(&["link", "set", "v0", "up"]);
    red.ip(&["addr", "add", "10.1.0.1/24", "dev", "v0"]);
    for i in 0..3 {
        red.ip(&[
            "route",
            "add",
            &format!("192.0.{i}.0/24"),
            "via",
            "10.1.0.2",
        ]);
    }
    blue.ip(&["link", "add", "w0", "type", "veth", "peer", "name", "w1"]);
    blue.ip(&["link", "set", "w0", "up"]);
    blue.ip(&["addr", "add", "10.2.0.1/24", "dev", "w0"]);
    for i in 0..7 {
        blue.ip(&[
            "route",
            "add",
            &format!("198.51.{i}.0/24"),
            "via",
            "10.2.0.2",
        ]);
    }
    blue.ip(&["-6", "route", "add", "2001:db8:5::/64", "dev", "w0"]);
    assert_in_sync(&s, &red, 1);
    assert_in_sync(&s, &blue, 2);

    // Status lists both, with each blade's route count matching its
    // namespace once the figures (answered from memory, each at most a
    // report interval old) have caught up.
    let routes = [(1, ipv4_routes(&red)), (2, ipv4_routes(&blue))];
    assert!(
        wait_until(Duration::from_secs(5), || {
            let st = s.status();
            routes
                .iter()
                .all(|(b, n)| by_id(&st["blades"], *b)["tables"]["routes4"].as_u64() == Some(*n))
        }),
        "the blades' figures never caught up: {}",
        s.status()
    );
    let st = s.status();
    assert_eq!(st["state"], "running", "{st}");
    assert_eq!(st["instances"].as_array().unwrap().len(), 2, "{st}");
    for (inst, ns, blade) in [(1, &red, 1), (2, &blue, 2)] {
        let i = by_id(&st["instances"], inst);
        assert_eq!(i["netns"], ns.name.as_str(), "{st}");
        assert_eq!(i["active_state"], "active", "{st}");
        assert_eq!(i["sync_state"], "synced", "{st}");
        let b = by_id(&st["blades"], blade);
        assert_eq!(b["instance"], inst, "{st}");
        assert_eq!(
            b["tables"]["routes4"].as_u64(),
            Some(ipv4_routes(ns)),
            "blade {blade}: {st}"
        );
    }
    assert_ne!(
        by_id(&st["blades"], 1)["tables"]["routes4"],
        by_id(&st["blades"], 2)["tables"]["routes4"],
        "the namespaces differ, so must the blades"
    );

    // SetIpsecHa true [2]: only blade 2's instance changes.
    let (ok, out, err) = s.busctl(&[
        "call",
        "org.fpsync.Supervisor1",
        "/org/fpsync/Supervisor1",
        "org.fpsync.Supervisor1",
        "SetIpsecHa",
        "bau",
        "true",
        "1",
        "2",
    ]);
    assert!(ok, "SetIpsecHa: {err}");
    assert_eq!(out.trim(), "a{ub} 1 2 true");
    let console = |i: u32, c: &str| -> String {
        let (ok, out, err) = s.busctl(&[
            "--json=short",
            "call",
            "org.fpsync.Supervisor1",
            "/org/fpsync/Supervisor1",
            "org.fpsync.Supervisor1",
            "Console",
            "us",
            &i.to_string(),
            c,
        ]);
        assert!(ok, "Console {i} {c}: {err}");
        let v: Value = serde_json::from_str(&out).unwrap();
        v["data"][0].as_str().unwrap().to_owned()
    };
    assert_eq!(
        console(1, "ipsec ha show").trim(),
        "IPsec High Availability disabled"
    );
    assert_eq!(
        console(2, "ipsec ha show").trim(),
        "IPsec High Availability enabled"
    );
    let (_, out, _) = s.busctl(&[
        "call",
        "org.fpsync.Supervisor1",
        "/org/fpsync/Supervisor1",
        "org.fpsync.Supervisor1",
        "IpsecHaStatus",
    ]);
    let words: Vec<&str> = out.split_whitespace().collect();
    let mut ha = BTreeMap::new();
    for pair in words[2..].chunks(2) {
        ha.insert(pair[0].to_owned(), pair[1].to_owned());
    }
    assert_eq!(ha.get("1").map(String::as_str), Some("false"), "{out}");
    assert_eq!(ha.get("2").map(String::as_str), Some("true"), "{out}");

    // Statistics: the sums equal the per-blade values.
    let stats = s.json("Statistics");
    let total = stats["total"].as_object().unwrap();
    assert!(total.contains_key("routes4"), "{stats}");
    for (k, v) in total {
        let sum: u64 = ["1", "2"]
            .iter()
            .map(|b| stats["blades"][b][k].as_u64().unwrap_or(0))
            .sum();
        assert_eq!(v.as_u64(), Some(sum), "{k}: {stats}");
    }
    assert!(stats["errors"].as_object().unwrap().is_empty(), "{stats}");
    // Each instance's view of its ports (fast path beside Linux): empty
    // here, since these blades forward on no port.
    for i in ["1", "2"] {
        assert!(stats["instances"][i]["interfaces"].is_object(), "{stats}");
    }

    // The object tree and the ObjectManager list every instance and blade.
    let (ok, tree, _) = s.busctl(&["tree", "org.fpsync.Supervisor1"]);
    assert!(ok);
    for p in ["instance/1", "instance/2", "blade/1", "blade/2"] {
        assert!(
            tree.contains(&format!("/org/fpsync/Supervisor1/{p}")),
            "{tree}"
        );
    }
    let (ok, managed, err) = s.busctl(&[
        "--json=short",
        "call",
        "org.fpsync.Supervisor1",
        "/org/fpsync",
        "org.freedesktop.DBus.ObjectManager",
        "GetManagedObjects",
    ]);
    assert!(ok, "{err}");
    let managed: Value = serde_json::from_str(&managed).unwrap();
    let objects = managed["data"][0].as_object().unwrap();
    for p in ["instance/1", "instance/2", "blade/1", "blade/2"] {
        let path = format!("/org/fpsync/Supervisor1/{p}");
        assert!(objects.contains_key(&path), "{path} missing: {managed}");
    }
    assert_eq!(
        objects["/org/fpsync/Supervisor1/instance/2"]["org.fpsync.Supervisor1.Instance"]
            ["NetNamespace"]["data"],
        blue.name.as_str()
    );

    // Logs: journalctl -t cmgrd1 holds instance 1's lines only.
    let cmgrd1 = journal.entries(&["-t", "cmgrd1"]);
    assert!(!cmgrd1.is_empty(), "no cmgrd1 lines in the journal");
    for e in &cmgrd1 {
        assert_eq!(e["SYSLOG_IDENTIFIER"], "cmgrd1");
        if let Some(i) = e.get("INSTANCE") {
            assert_eq!(i, "1", "{e}");
        }
        assert_ne!(
            e.get("NETNS").and_then(Value::as_str),
            Some(blue.name.as_str()),
            "{e}"
        );
    }
    assert!(
        cmgrd1.iter().any(|e| e["INSTANCE"] == "1"),
        "no INSTANCE field"
    );
    let fpd2 = journal.entries(&["-t", "fpd2"]);
    assert!(!fpd2.is_empty() && fpd2.iter().all(|e| e.get("BLADE").is_none_or(|b| b == "2")));
    let fpsyncd = journal.entries(&["-t", "fpsyncd", "INSTANCE=2"]);
    assert!(
        !fpsyncd.is_empty(),
        "fpsyncd's lines about instance 2 carry INSTANCE=2"
    );

    // A caller that is not root: AccessDenied for a mutating method, Status
    // still readable.
    let as_nobody = |args: &[&str]| {
        let out = Command::new("setpriv")
            .args(["--reuid=65534", "--regid=65534", "--clear-groups", "busctl"])
            .arg(format!("--address={}", bus.address))
            .args(args)
            .output()
            .unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let sup = [
        "org.fpsync.Supervisor1",
        "/org/fpsync/Supervisor1",
        "org.fpsync.Supervisor1",
    ];
    for call in [
        vec!["RestartInstance", "u", "1"],
        vec!["SetIpsecHa", "bau", "false", "0"],
        vec!["Console", "us", "1", "ipsec ha disable"],
    ] {
        let mut args = vec!["call"];
        args.extend(sup);
        args.extend(call.iter().copied());
        let (ok, _, err) = as_nobody(&args);
        assert!(!ok && err.contains("Access denied"), "{call:?}: {err}");
    }
    let mut args = vec!["call"];
    args.extend(sup);
    args.push("Status");
    let (ok, out, err) = as_nobody(&args);
    assert!(ok && out.contains("instances"), "Status as nobody: {err}");

    // Each cmgrd and fpd owns its own name and object on fpsyncd's bus.
    let names = [
        "org.fpsync.CacheManager1.I1",
        "org.fpsync.CacheManager1.I2",
        "org.fpsync.FastPath1.B1",
        "org.fpsync.FastPath1.B2",
    ];
    assert!(
        wait_until(Duration::from_secs(10), || {
            let (_, list, _) = s.busctl(&["list", "--acquired"]);
            names.iter().all(|n| list.contains(n))
        }),
        "per-daemon names missing: {}",
        s.busctl(&["list", "--acquired"]).1
    );
    assert!(
        wait_until(Duration::from_secs(5), || {
            s.busctl(&[
                "get-property",
                "org.fpsync.CacheManager1.I1",
                "/org/fpsync/CacheManager1/1",
                "org.fpsync.CacheManager1",
                "SyncState",
            ])
            .1
            .contains("\"synced\"")
        }),
        "cmgrd1's SyncState"
    );
    let (ok, ns2, err) = s.busctl(&[
        "get-property",
        "org.fpsync.CacheManager1.I2",
        "/org/fpsync/CacheManager1/2",
        "org.fpsync.CacheManager1",
        "NetNamespace",
    ]);
    assert!(ok && ns2.contains(&blue.name), "{ns2} {err}");
    let (ok, counters, err) = s.busctl(&[
        "--json=short",
        "call",
        "org.fpsync.FastPath1.B2",
        "/org/fpsync/FastPath1/2",
        "org.fpsync.FastPath1",
        "Counters",
    ]);
    assert!(ok && counters.contains("routes4"), "{counters} {err}");
    let (ok, _, err) = as_nobody(&[
        "call",
        "org.fpsync.CacheManager1.I1",
        "/org/fpsync/CacheManager1/1",
        "org.fpsync.CacheManager1",
        "Console",
        "s",
        "ipsec ha enable",
    ]);
    assert!(
        !ok && err.contains("Access denied"),
        "Console as nobody: {err}"
    );
    let (ok, out, err) = as_nobody(&[
        "call",
        "org.fpsync.CacheManager1.I1",
        "/org/fpsync/CacheManager1/1",
        "org.fpsync.CacheManager1",
        "Status",
    ]);
    assert!(
        ok && out.contains("synced"),
        "cmgrd Status as nobody: {err}"
    );
    let (ok, _, err) = s.busctl(&[
        "call",
        "org.fpsync.CacheManager1.I1",
        "/org/fpsync/CacheManager1/1",
        "org.fpsync.CacheManager1",
        "Console",
        "s",
        "show nonsense",
    ]);
    assert!(
        !ok && err.contains("unknown command"),
        "a refused console command is a named error: {err}"
    );

    // Bad input: named errors, nothing restarted, nothing lost.
    let pids = s.child_pids();
    let cases: [(&str, Vec<&str>, &str); 6] = [
        (
            "StopInstance",
            vec!["uint32:9"],
            "org.fpsync.Supervisor1.Error.NoSuchInstance",
        ),
        (
            "RestartInstance",
            vec!["uint32:7"],
            "org.fpsync.Supervisor1.Error.NoSuchInstance",
        ),
        (
            "SetIpsecHa",
            vec!["boolean:true", "array:uint32:7"],
            "org.fpsync.Supervisor1.Error.InvalidArgument",
        ),
        (
            "SetIpsecHa",
            vec!["boolean:true", "array:uint32:2,2"],
            "org.fpsync.Supervisor1.Error.InvalidArgument",
        ),
        (
            "Console",
            vec!["uint32:1", "string:bogus command"],
            "org.fpsync.Supervisor1.Error.InvalidArgument",
        ),
        (
            "Console",
            vec!["uint32:5", "string:show pid"],
            "org.fpsync.Supervisor1.Error.NoSuchInstance",
        ),
    ];
    for (method, args, error) in cases {
        let (ok, out) = dbus_send(&bus.address, method, &args);
        assert!(!ok && out.contains(error), "{method} {args:?}: {out}");
    }
    assert_eq!(s.child_pids(), pids, "bad input restarted something");
    assert_eq!(
        console(2, "ipsec ha show").trim(),
        "IPsec High Availability enabled"
    );
    assert_in_sync(&s, &red, 1);
    assert_in_sync(&s, &blue, 2);
    assert_eq!(s.status()["state"], "running");
}

/// kill -9 of one cmgrd: restarted, back in sync, the state signal seen; the
/// other instance untouched.
#[test]
fn a_killed_cache_manager_is_restarted_and_resynced() {
    let a = Netns::new("sup-ka");
    let b = Netns::new("sup-kb");
    let base = 10_000 + unique() % 1_000_000 * 2;
    let (ia, ib) = (base, base + 1);
    let s = Supervisor::start(
        &[
            InstanceSpec {
                id: ia,
                netns: a.name.clone(),
                blades: vec![1],
            },
            InstanceSpec {
                id: ib,
                netns: b.name.clone(),
                blades: vec![2],
            },
        ],
        "private",
        None,
        "",
    );
    s.wait_state("running", Duration::from_secs(20));
    a.ip(&["link", "add", "v0", "type", "veth", "peer", "name", "v1"]);
    a.ip(&["link", "set", "v0", "up"]);
    a.ip(&["addr", "add", "10.9.0.1/24", "dev", "v0"]);
    a.ip(&["route", "add", "203.0.113.0/24", "via", "10.9.0.2"]);
    assert_in_sync(&s, &a, 1);

    // Watch the supervisor's signals.
    let log = TempDir::new("monitor");
    let mon_path = log.path.join("monitor.json");
    let mut monitor = Command::new("busctl")
        .arg(format!("--address={}", s.address))
        .args([
            "monitor",
            "--json=short",
            "--match",
            "type='signal',member='ChildStateChanged'",
        ])
        .stdout(std::fs::File::create(&mon_path).unwrap())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(500));

    let path = format!("/org/fpsync/Supervisor1/instance/{ia}");
    let iface = "org.fpsync.Supervisor1.Instance";
    let old: u32 = get_property(&s, &path, iface, "MainPID")
        .trim_start_matches("u ")
        .parse()
        .unwrap();
    let other = get_property(
        &s,
        &format!("/org/fpsync/Supervisor1/instance/{ib}"),
        iface,
        "MainPID",
    );
    // SAFETY: kill(2) on a pid the supervisor reported.
    unsafe { libc::kill(old as i32, libc::SIGKILL) };
    // While it is down, Linux changes: the restarted cmgrd must see them.
    a.ip(&["route", "add", "203.0.114.0/24", "via", "10.9.0.2"]);
    assert!(
        wait_until(Duration::from_secs(10), || {
            let pid = get_property(&s, &path, iface, "MainPID");
            pid != format!("u {old}")
                && pid != "u 0"
                && get_property(&s, &path, iface, "SyncState") == "s \"synced\""
        }),
        "not restarted: {}",
        s.log()
    );
    assert_in_sync(&s, &a, 1);
    assert_eq!(get_property(&s, &path, iface, "NRestarts"), "u 1");
    assert_eq!(
        get_property(
            &s,
            &format!("/org/fpsync/Supervisor1/instance/{ib}"),
            iface,
            "MainPID"
        ),
        other,
        "the other instance was touched"
    );
    s.wait_state("running", Duration::from_secs(10));
    std::thread::sleep(Duration::from_millis(300));
    // SAFETY: kill(2) on our own child.
    unsafe { libc::kill(monitor.id() as i32, libc::SIGTERM) };
    let _ = monitor.wait();
    let signals: Vec<Value> = std::fs::read_to_string(&mon_path)
        .unwrap()
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    let states: Vec<String> = signals
        .iter()
        .filter(|m| m["payload"]["data"][1] == ia)
        .map(|m| {
            format!(
                "{}/{}",
                m["payload"]["data"][2].as_str().unwrap_or(""),
                m["payload"]["data"][3].as_str().unwrap_or("")
            )
        })
        .collect();
    assert!(
        states.contains(&"activating/auto-restart".to_owned()),
        "{states:?}"
    );
    assert!(states.contains(&"active/running".to_owned()), "{states:?}");
}

/// A child that dies at once hits the start limit and is failed; the others
/// run on. Then SIGTERM and SIGKILL to fpsyncd leave no child.
#[test]
fn start_limit_then_no_orphans() {
    let good = Netns::new("sup-good");
    let base = 20_000 + unique() % 1_000_000 * 2;
    let (ig, ibad) = (base, base + 1);
    let mut s = Supervisor::start(
        &[
            InstanceSpec {
                id: ig,
                netns: good.name.clone(),
                blades: vec![1],
            },
            // No such namespace: cmgrd exits at once, every time.
            InstanceSpec {
                id: ibad,
                netns: format!("fpst-missing-{base}"),
                blades: vec![2],
            },
        ],
        "private",
        None,
        "",
    );
    let path = format!("/org/fpsync/Supervisor1/instance/{ibad}");
    let iface = "org.fpsync.Supervisor1.Instance";
    assert!(
        wait_until(Duration::from_secs(20), || get_property(
            &s, &path, iface, "SubState"
        ) == "s \"start-limit-hit\""),
        "not failed: {}",
        s.log()
    );
    assert_eq!(
        get_property(&s, &path, iface, "ActiveState"),
        "s \"failed\""
    );
    assert_eq!(
        get_property(&s, &path, iface, "Result"),
        "s \"start-limit-hit\""
    );
    assert_eq!(
        get_property(&s, &path, iface, "NRestarts"),
        "u 4",
        "5 starts: the first and 4 restarts"
    );
    let st = s.status();
    assert_eq!(st["state"], "degraded");
    assert_eq!(
        by_id(&st["instances"], ig as u64)["active_state"],
        "active",
        "{st}"
    );
    assert_eq!(by_id(&st["instances"], ig as u64)["n_restarts"], 0, "{st}");
    assert_eq!(by_id(&st["blades"], 2)["active_state"], "active", "{st}");
    good.ip(&["route", "add", "blackhole", "192.0.2.0/24"]);
    assert_in_sync(&s, &good, 1);

    // SIGTERM: every child stops, instances first; fpsyncd exits 0.
    let pids = s.child_pids();
    assert_eq!(pids.len(), 3, "{pids:?}");
    let status = s
        .stop(Duration::from_secs(20))
        .expect("fpsyncd stopped on SIGTERM");
    assert!(status.success(), "{status:?}: {}", s.log());
    for p in &pids {
        assert!(!alive(*p), "child {p} left after SIGTERM");
    }
    let log = s.log();
    let inst = log
        .find(&format!("cmgrd{ig} stopped"))
        .expect("instance stopped");
    let blade = log.find("fpd1 stopped").expect("blade stopped");
    assert!(inst < blade, "instances stop before blades:\n{log}");
}

#[test]
fn sigkill_to_fpsyncd_leaves_no_child() {
    let ns = Netns::new("sup-kill");
    let id = 30_000 + unique() % 1_000_000;
    let mut s = Supervisor::start(
        &[InstanceSpec {
            id,
            netns: ns.name.clone(),
            blades: vec![1],
        }],
        "private",
        None,
        "",
    );
    s.wait_state("running", Duration::from_secs(20));
    let pids = s.child_pids();
    assert_eq!(pids.len(), 2);
    s.kill();
    assert!(
        wait_until(Duration::from_secs(5), || pids.iter().all(|p| !alive(*p))),
        "children outlived a killed fpsyncd: {:?}",
        pids.iter().filter(|p| alive(**p)).collect::<Vec<_>>()
    );
    // The private bus went with it.
    let (ok, _, _) = busctl(&s.address, &["list"]);
    assert!(!ok, "the private bus outlived fpsyncd");
}

#[test]
fn a_malformed_configuration_is_refused_with_file_and_line() {
    let dir = TempDir::new("badconf");
    let global = dir.path.join("linux-fp-sync.env");
    std::fs::write(&global, "# fpsync\nINSTANCES=\"1 two\"\n").unwrap();
    let out = Command::new(bin("fpsyncd"))
        .args(["--bus", "private"])
        .env("CONF_FILE_linux_fp_sync", &global)
        .env("CONF_FILE_cmgr", dir.path.join("none.env"))
        .env("FPSYNC_NO_JOURNAL", "1")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!(
            "{}:2: INSTANCES: \"two\" is not an instance id",
            global.display()
        )),
        "{err}"
    );
    // The CLI says the same and starts nothing.
    std::fs::write(&global, "INSTANCES=1\nRESTART_SEC=\"soon\"\n").unwrap();
    let out = Command::new(bin("fpsync"))
        .arg("start")
        .env("CONF_FILE_linux_fp_sync", &global)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(":2: RESTART_SEC: \"soon\" is not a time span"),
        "{err}"
    );
    // A line that is not shell we accept.
    std::fs::write(&global, "INSTANCES=1\nif true; then X=1; fi\n").unwrap();
    let out = Command::new(bin("fpsync"))
        .arg("start")
        .env("CONF_FILE_linux_fp_sync", &global)
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&out.stderr).contains(":2: cannot parse"),
        "{out:?}"
    );
}
