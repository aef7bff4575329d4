//! The metrics endpoint (`METRICS_LISTEN`) read by a real OpenMetrics
//! parser (Debian's python3-prometheus-client), its counters equal to
//! `fpsync show stats --json`, `fpsync show stats --format openmetrics`
//! the same text, and the endpoint's bounds: loopback only, few
//! connections, bounded requests.

mod supervisor_common;

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::Duration;

use fpsync_tests::{bin, unique, wait_until, Netns};
use serde_json::Value;
use supervisor_common::{Supervisor, Tree};

/// Parses OpenMetrics text with prometheus_client's parser; prints each
/// sample as [name, labels, value]. A parse error exits non-zero.
const PARSER: &str = r#"
import json, sys
from prometheus_client.openmetrics.parser import text_string_to_metric_families
out = []
for family in text_string_to_metric_families(sys.stdin.read()):
    for s in family.samples:
        out.append([s.name, s.labels, s.value])
print(json.dumps(out))
"#;

/// name{sorted labels} -> value.
type Samples = BTreeMap<String, f64>;

fn key(name: &str, labels: &[(&str, &str)]) -> String {
    let mut l: Vec<String> = labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
    l.sort();
    format!("{name}{{{}}}", l.join(","))
}

fn parse(text: &str) -> Samples {
    let mut child = Command::new("/usr/bin/python3")
        .args(["-c", PARSER])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python3 (scripts/setup.sh installs python3-prometheus-client)");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "the OpenMetrics parser refused the text: {}\n{text}",
        String::from_utf8_lossy(&out.stderr)
    );
    let list: Vec<(String, BTreeMap<String, String>, f64)> =
        serde_json::from_slice(&out.stdout).unwrap();
    list.into_iter()
        .map(|(name, labels, v)| {
            let l: Vec<(&str, &str)> = labels
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str()))
                .collect();
            (key(&name, &l), v)
        })
        .collect()
}

/// One HTTP exchange; the whole answer.
fn http(port: u16, request: &[u8]) -> String {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(request).unwrap();
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    out
}

fn scrape(port: u16) -> String {
    let answer = http(port, b"GET /metrics HTTP/1.1\r\nHost: localhost\r\n\r\n");
    let (head, body) = answer.split_once("\r\n\r\n").expect("an HTTP answer");
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(
        head.contains("Content-Type: application/openmetrics-text; version=1.0.0"),
        "{head}"
    );
    body.to_owned()
}

fn fpsync(s: &Supervisor, args: &[&str]) -> String {
    let out = Command::new(bin("fpsync"))
        .arg(format!("--address={}", s.address))
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "fpsync {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The figure `name` (a counter's `_total` or a gauge's plain name) with
/// `labels`; exactly one of both must exist.
fn figure(samples: &Samples, name: &str, labels: &[(&str, &str)]) -> f64 {
    let counter = samples.get(&key(&format!("{name}_total"), labels));
    let gauge = samples.get(&key(name, labels));
    match (counter, gauge) {
        (Some(v), None) | (None, Some(v)) => *v,
        _ => panic!("{name} {labels:?}: counter {counter:?}, gauge {gauge:?}"),
    }
}

fn number(v: &Value) -> Option<f64> {
    match v {
        Value::Bool(b) => Some(f64::from(u8::from(*b))),
        v => v.as_u64().map(|n| n as f64),
    }
}

/// Without what changes by itself between two reads (ages).
fn steady(mut stats: Value) -> Value {
    stats.as_object_mut().map(|m| m.remove("age_ms"));
    for i in stats["instances"].as_object_mut().into_iter().flatten() {
        i.1.as_object_mut().map(|m| m.remove("age_ms"));
    }
    stats
}

#[test]
fn the_endpoint_parses_and_equals_show_stats() {
    let ns = Netns::new("sup-metrics");
    ns.ip(&["link", "add", "v0", "type", "veth", "peer", "name", "v1"]);
    ns.ip(&["link", "set", "v0", "up"]);
    ns.ip(&["addr", "add", "10.7.0.1/24", "dev", "v0"]);
    for i in 0..5 {
        ns.ip(&["route", "add", &format!("10.8.{i}.0/24"), "via", "10.7.0.2"]);
    }
    let id = 80_000 + unique() % 1_000_000;
    let port = free_port();
    let extra = format!("REPORT_INTERVAL_SEC=2s\nMETRICS_LISTEN=127.0.0.1:{port}\n");
    let tree = Tree::one(&ns.name, id, &extra);
    let s = &tree.s;
    let stats =
        || -> Value { serde_json::from_str(&fpsync(s, &["show", "stats", "--json"])).unwrap() };
    let blade = id.to_string();
    assert!(
        wait_until(Duration::from_secs(8), || stats()["blades"][&blade]
            ["routes4"]
            .as_u64()
            .unwrap_or(0)
            >= 5),
        "{}",
        stats()
    );

    // A scrape between two equal reads of the JSON saw the same figures.
    let (json, samples) = (0..10)
        .find_map(|_| {
            let before = steady(stats());
            let text = scrape(port);
            let after = steady(stats());
            (before == after).then(|| (after, parse(&text)))
        })
        .expect("the figures never stood still for a scrape");

    let inst = id.to_string();
    let mut compared = 0;
    for (k, v) in json["blades"][&blade].as_object().unwrap() {
        let v = v.as_u64().unwrap() as f64;
        let got = if k == "generation" {
            continue;
        } else if let Some(x) = samples.get(&key(
            "fpsync_blade_table_entries",
            &[("blade", &blade), ("table", k)],
        )) {
            *x
        } else {
            figure(&samples, &format!("fpsync_blade_{k}"), &[("blade", &blade)])
        };
        assert_eq!(got, v, "blade {blade} {k}");
        compared += 1;
    }
    // Statistics() leaves a blade's zero counters out: each of this
    // blade's counters in the metrics (those `total` lists: the table
    // sizes and fpd's counts) equals the JSON's, absent meaning 0.
    let prefix = "fpsync_blade_";
    let mut from_metrics = 0;
    for (k, x) in &samples {
        let Some((name, labels)) = k.split_once('{') else {
            continue;
        };
        let counter = if name == "fpsync_blade_table_entries" {
            match labels.strip_prefix(&format!("blade={blade},table=")) {
                Some(t) => t.trim_end_matches('}'),
                None => continue,
            }
        } else if labels == format!("blade={blade}}}") && name.starts_with(prefix) {
            name[prefix.len()..].trim_end_matches("_total")
        } else {
            continue;
        };
        if json["total"].get(counter).is_none() {
            continue; // the child's own figures (restarts, memory, state)
        }
        let v = json["blades"][&blade][counter].as_u64().unwrap_or(0) as f64;
        assert_eq!(*x, v, "blade {blade} {counter} (metrics to JSON)");
        from_metrics += 1;
    }
    let listed = json["total"].as_object().map_or(0, |t| t.len());
    assert_eq!(from_metrics, listed, "total lists every blade counter");
    compared += from_metrics;
    let i = &json["instances"][&inst];
    for k in [
        "overruns",
        "resyncs",
        "reconciles",
        "silent_deletions",
        "silent_changes",
        "decode_errors",
    ] {
        let v = number(&i["sync"][k]).unwrap_or(0.0);
        assert_eq!(
            figure(
                &samples,
                &format!("fpsync_instance_{k}"),
                &[("instance", &inst)]
            ),
            v
        );
        compared += 1;
    }
    for (kind, v) in i["sync"]["cache"].as_object().unwrap() {
        let got = samples[&key(
            "fpsync_instance_cache_objects",
            &[("instance", &inst), ("kind", kind)],
        )];
        assert_eq!(got, number(v).unwrap(), "cache {kind}");
        compared += 1;
    }
    for q in i["queue"].as_array().unwrap() {
        let b = q["blade"].to_string();
        for (k, v) in q["queue"].as_object().unwrap() {
            let name = format!("fpsync_instance_queue_{k}");
            let got = figure(&samples, &name, &[("instance", &inst), ("blade", &b)]);
            assert_eq!(got, number(v).unwrap(), "queue {k}");
            compared += 1;
        }
    }
    let sockets = i["netlink"]
        .as_array()
        .expect("netlink counters in show stats");
    assert!(!sockets.is_empty(), "{i}");
    for sock in sockets {
        let name = sock["name"].as_str().unwrap();
        let l = [("instance", inst.as_str()), ("socket", name)];
        let got = samples[&key("fpsync_instance_netlink_messages_total", &l)];
        assert_eq!(
            got,
            sock["packets"].as_u64().unwrap() as f64,
            "socket {name}"
        );
        for (t, n) in sock["by_type"].as_object().unwrap() {
            let l = [("instance", inst.as_str()), ("socket", name), ("type", t)];
            let got = samples[&key("fpsync_instance_netlink_messages_by_type_total", &l)];
            assert_eq!(got, n.as_u64().unwrap() as f64);
            compared += 1;
        }
    }
    // And the other way: each of this instance's cache kinds, queue
    // figures and netlink sockets in the metrics equals the JSON's, absent
    // meaning 0 (zeros and sockets without a message are left out).
    let socket = |name: &str| {
        i["netlink"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|s| s["name"] == name)
            .cloned()
            .unwrap_or(Value::Null)
    };
    let mut instance_figures = 0;
    for (k, x) in &samples {
        let Some((name, labels)) = k.split_once('{') else {
            continue;
        };
        let labels: BTreeMap<&str, &str> = labels
            .trim_end_matches('}')
            .split(',')
            .filter_map(|l| l.split_once('='))
            .collect();
        if labels.get("instance") != Some(&inst.as_str()) {
            continue;
        }
        let v = if name == "fpsync_instance_cache_objects" {
            &i["sync"]["cache"][labels["kind"]]
        } else if name == "fpsync_instance_netlink_messages_total" {
            &socket(labels["socket"])["packets"].clone()
        } else if name == "fpsync_instance_netlink_messages_by_type_total" {
            &socket(labels["socket"])["by_type"][labels["type"]].clone()
        } else if let Some(q) = name.strip_prefix("fpsync_instance_queue_") {
            let q = q.trim_end_matches("_total");
            let b: u64 = labels["blade"].parse().unwrap();
            &i["queue"]
                .as_array()
                .into_iter()
                .flatten()
                .find(|e| e["blade"] == b)
                .map_or(Value::Null, |e| e["queue"][q].clone())
                .clone()
        } else {
            continue;
        };
        assert_eq!(*x, number(v).unwrap_or(0.0), "{k} (metrics to JSON)");
        instance_figures += 1;
    }
    assert!(
        instance_figures > 30,
        "only {instance_figures} instance figures"
    );
    compared += instance_figures;
    for (b, ports) in i["interfaces"].as_object().into_iter().flatten() {
        for p in ports.as_array().into_iter().flatten() {
            let ifindex = p["ifindex"].to_string();
            let l = [
                ("instance", inst.as_str()),
                ("blade", b.as_str()),
                ("interface", p["name"].as_str().unwrap()),
                ("ifindex", ifindex.as_str()),
            ];
            for side in ["fastpath", "linux"] {
                for (k, v) in p[side].as_object().into_iter().flatten() {
                    let got = figure(&samples, &format!("fpsync_interface_{side}_{k}"), &l);
                    assert_eq!(got, number(v).unwrap());
                    compared += 1;
                }
            }
        }
    }
    assert!(compared > 60, "only {compared} figures compared");
    // Lifecycle: restarts and states, as Status says.
    let st = s.status();
    for kind in ["instance", "blade"] {
        let c = st[format!("{kind}s")]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["id"].as_u64() == Some(id as u64))
            .unwrap();
        let l = [(kind, inst.as_str())];
        assert_eq!(
            samples[&key(&format!("fpsync_{kind}_restarts_total"), &l)],
            c["n_restarts"].as_u64().unwrap() as f64
        );
        let active = [(kind, inst.as_str()), ("state", "active")];
        assert_eq!(
            samples[&key(&format!("fpsync_{kind}_active_state"), &active)],
            1.0
        );
        // The sampler reads a child at its start (a process still being
        // loaded, well under 1 MB) and then every interval: the figure of
        // a running child comes with the next sample.
        let memory = key(&format!("fpsync_{kind}_memory_bytes"), &l);
        let grown = |samples: &Samples| samples.get(&memory).is_some_and(|m| *m > 1e6);
        assert!(
            grown(&samples) || wait_until(Duration::from_secs(5), || grown(&parse(&scrape(port)))),
            "{memory}: {:?}",
            parse(&scrape(port)).get(&memory)
        );
    }
    let synced = [("instance", inst.as_str()), ("state", "synced")];
    assert_eq!(samples[&key("fpsync_instance_sync_state", &synced)], 1.0);
    assert_eq!(
        samples[&key("fpsync_supervisor_state", &[("state", "running")])],
        1.0
    );

    // The CLI prints the same text, but for what moves by itself (ages,
    // resources); the children's figures may move between the two reads,
    // so a few tries.
    let moving = |k: &String| {
        [
            "_report_age_seconds",
            "_memory_bytes",
            "_cpu_seconds",
            "_tasks",
        ]
        .iter()
        .any(|m| k.contains(m))
    };
    let steady_samples = |text: &str| -> Samples {
        parse(text)
            .into_iter()
            .filter(|(k, _)| !moving(k))
            .collect()
    };
    let mut last = String::new();
    let same = (0..10).any(|_| {
        let a = steady_samples(&fpsync(s, &["show", "stats", "--format", "openmetrics"]));
        let b = steady_samples(&scrape(port));
        let differ: Vec<&String> = a.keys().filter(|k| b.get(*k) != a.get(*k)).collect();
        last = format!("{differ:?}, {} and {} samples", a.len(), b.len());
        differ.is_empty() && a.len() == b.len()
    });
    assert!(same, "the CLI and the endpoint differ: {last}");

    // Bounds: other paths and methods, an oversize head, too many at once.
    assert!(http(port, b"GET / HTTP/1.1\r\n\r\n").starts_with("HTTP/1.1 404"));
    assert!(http(port, b"POST /metrics HTTP/1.1\r\n\r\n").starts_with("HTTP/1.1 405"));
    let mut big = b"GET /metrics HTTP/1.1\r\nX: ".to_vec();
    big.extend(std::iter::repeat_n(b'a', 20_000));
    assert!(http(port, &big).starts_with("HTTP/1.1 400"));
    let idle: Vec<TcpStream> = (0..4)
        .map(|_| TcpStream::connect(("127.0.0.1", port)).unwrap())
        .collect();
    std::thread::sleep(Duration::from_millis(200));
    let mut fifth = TcpStream::connect(("127.0.0.1", port)).unwrap();
    fifth
        .set_read_timeout(Some(Duration::from_secs(3)))
        .unwrap();
    let _ = fifth.write_all(b"GET /metrics HTTP/1.1\r\n\r\n");
    let mut got = String::new();
    let _ = fifth.read_to_string(&mut got);
    assert!(got.is_empty(), "a fifth connection was served: {got:.80}");
    drop(idle);
    // Once the idle ones are gone, scrapes are served again.
    assert!(
        wait_until(Duration::from_secs(7), || http(
            port,
            b"GET /metrics HTTP/1.1\r\n\r\n"
        )
        .starts_with("HTTP/1.1 200")),
        "no scrape served after the idle connections closed"
    );
}

#[test]
fn only_a_loopback_address_is_accepted() {
    let out = Command::new(bin("fpsyncd"))
        .args(["--metrics-listen", "0.0.0.0:9469"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("not a loopback address"), "{err}");
    let out = Command::new(bin("fpsyncd"))
        .args(["--metrics-listen", "localhost"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("not an address:port"), "{err}");
}
