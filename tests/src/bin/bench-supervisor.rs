//! The supervisor benchmark (docs/BENCHMARKS.md, "Supervisor"): fpsyncd
//! with N instances in N namespaces feeding N blades (default 32), on the
//! private bus it starts itself. Measures, in one run:
//! (a) the time from starting fpsyncd to its State being `running` (every
//!     child ready, every instance synced to its blade);
//! (b) the memory of the whole tree (fpsyncd, dbus-daemon, every cmgrd and
//!     fpd): RSS and PSS summed;
//!     and PSS per child;
//! (c) `Status()`, `Statistics()` and `Metrics()` latency over the bus, p50
//!     and p99 (targets: p99 at most 1 ms at 32 children, 5 ms at 256). They
//!     answer from memory (`supervisor::collect`), so no child is asked.
//!
//! (d) the tree's CPU while nothing is asked of it (5 s, after SETTLE_MS),
//!     the background every call competes with on these cores;
//! (e) the peer the calls are measured against, in the same run: a trivial
//!     zbus server on the same bus (2 worker threads, as fpsyncd's bus)
//!     returning a constant string of each answer's size, so the bus's own
//!     cost for that size, under the same tree, gives each method a ratio.
//!
//! Run (as root): cargo build --release --workspace --bins &&
//!   target/release/bench-supervisor [N] [ROUTES] [CALLS] [INTERVAL_MS] [SETTLE_MS]

#[path = "../../tests/supervisor_common/mod.rs"]
mod supervisor_common;

use std::time::{Duration, Instant};

use fpsync_tests::wait_until;

use fpsync_dbus::SupervisorProxy;
use fpsync_tests::{unique, Netns};
use supervisor_common::{InstanceSpec, Supervisor};

fn arg(i: usize, default: usize) -> usize {
    std::env::args()
        .nth(i)
        .and_then(|a| a.parse().ok())
        .unwrap_or(default)
}

/// Every process under `root` (itself included).
fn tree(root: u32) -> Vec<u32> {
    let mut out = vec![root];
    let mut i = 0;
    while i < out.len() {
        let pid = out[i];
        if let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) {
            for t in tasks.flatten() {
                let path = t.path().join("children");
                for c in std::fs::read_to_string(path)
                    .unwrap_or_default()
                    .split_whitespace()
                {
                    if let Ok(c) = c.parse() {
                        out.push(c);
                    }
                }
            }
        }
        i += 1;
    }
    out
}

/// (RSS, PSS) in KiB, from /proc/<pid>/smaps_rollup.
fn memory(pid: u32) -> (u64, u64) {
    let text = std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup")).unwrap_or_default();
    let field = |name: &str| {
        text.lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    (field("Rss:"), field("Pss:"))
}

/// CPU time (user and system) of `pid` so far, in clock ticks.
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // The fields after the command name (which may hold spaces).
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<&str> = rest.split_whitespace().collect();
    let field = |i: usize| f.get(i).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
    // utime and stime are fields 14 and 15 of stat(5): 12 and 13 here.
    field(11) + field(12)
}

fn comm(pid: u32) -> String {
    std::fs::read_to_string(format!("/proc/{pid}/comm"))
        .unwrap_or_default()
        .trim()
        .to_owned()
}

/// (e)'s bus name: fpsync's bus policy lets root own and call names under
/// the blades' prefix only (no blade is called this).
const ECHO_NAME: &str = "org.fpsync.FastPath1.BenchEcho";

/// (e): a server whose only work is to return `text`.
struct Echo {
    text: String,
}

#[zbus::interface(name = "org.fpsync.BenchEcho")]
impl Echo {
    async fn echo(&self) -> String {
        self.text.clone()
    }
}

/// `calls` calls of `Echo()` returning `size` bytes, from `conn`, the server
/// on its own thread and runtime (2 workers) on the bus at `address`;
/// the latencies, sorted.
fn echo_latency(
    address: &str,
    size: usize,
    calls: usize,
    runtime: &tokio::runtime::Runtime,
    conn: &zbus::Connection,
) -> Vec<Duration> {
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let address = address.to_owned();
    let server = std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let _conn = zbus::connection::Builder::address(address.as_str())
                .unwrap()
                .name(ECHO_NAME)
                .unwrap()
                .serve_at(
                    "/org/fpsync/BenchEcho",
                    Echo {
                        text: "x".repeat(size),
                    },
                )
                .unwrap()
                .build()
                .await
                .unwrap();
            ready_tx.send(()).unwrap();
            let _ = stop_rx.await;
        });
    });
    ready_rx.recv().unwrap();
    let mut lat = runtime.block_on(async {
        let mut lat = Vec::with_capacity(calls);
        for _ in 0..calls {
            let t = Instant::now();
            let reply = conn
                .call_method(
                    Some(ECHO_NAME),
                    "/org/fpsync/BenchEcho",
                    Some("org.fpsync.BenchEcho"),
                    "Echo",
                    &(),
                )
                .await
                .unwrap();
            let text: String = reply.body().deserialize().unwrap();
            lat.push(t.elapsed());
            assert_eq!(text.len(), size);
        }
        lat
    });
    let _ = stop_tx.send(());
    server.join().unwrap();
    lat.sort();
    lat
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

const HELP: &str = "\
bench-supervisor [N] [ROUTES] [CALLS] [INTERVAL_MS] [SETTLE_MS]   (as root)
  N        instances, namespaces and blades (default 32; 256 is the large tree)
  ROUTES   IPv4 routes per namespace (default 100)
  CALLS    calls of each of Status(), Statistics() and Metrics() (default 500)
  INTERVAL_MS  REPORT_INTERVAL_SEC for fpsyncd, in ms (default: its own, 1 s)
  SETTLE_MS    wait this long after all is in sync before measuring (default 0:
               the calls then meet the tree's start-up work)
Starts fpsyncd --bus private (cmgrd and fpd from target/release), times start to
all in sync, sums the tree's memory, measures the idle tree's CPU over 5 s,
then times each method, then a trivial server's constant string of the same size
on the same bus (the bus's own cost, for the ratios) over the private bus
(dbus-daemon) from one zbus client; prints a Markdown table (docs/BENCHMARKS.md,
\"Supervisor\"). BENCH_DUMP=DIR writes each method's first answer to DIR.
Example: cargo build --release --workspace --bins && target/release/bench-supervisor 256 100 500";

fn main() {
    if std::env::args().any(|a| a == "--help" || a == "-h") {
        println!("{HELP}");
        return;
    }
    let n = arg(1, 32);
    let routes = arg(2, 100);
    let calls = arg(3, 500);
    // REPORT_INTERVAL_SEC in ms; 0: fpsyncd's default (1 s).
    let interval_ms = arg(4, 0);
    let settle = Duration::from_millis(arg(5, 0) as u64);
    println!("bench-supervisor: {n} instances, {n} namespaces, {n} blades, {routes} routes each, {calls} calls, report interval {}", if interval_ms > 0 { format!("{interval_ms} ms") } else { "1 s (default)".into() });
    let cores = std::thread::available_parallelism().map_or(0, |c| c.get());
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let available = || {
        std::fs::read_to_string("/proc/meminfo")
            .unwrap_or_default()
            .lines()
            .find(|l| l.starts_with("MemAvailable:"))
            .and_then(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
            .unwrap_or(0)
    };
    let available_before = available();
    println!(
        "{cores} cores shared by the whole tree and this client; load average before: {}; MemAvailable {:.1} GiB",
        load.split_whitespace().take(3).collect::<Vec<_>>().join(" "),
        available_before as f64 / 1048576.0
    );

    let namespaces: Vec<Netns> = (0..n).map(|i| Netns::new(&format!("bs{i}"))).collect();
    for ns in &namespaces {
        let mut batch = String::from(
            "link add v0 type veth peer name v1\nlink set v0 up\nlink set v1 up\naddr add 10.0.0.1/24 dev v0\n",
        );
        for r in 0..routes {
            batch += &format!(
                "route add 172.{}.{}.0/24 via 10.0.0.2\n",
                16 + r / 256,
                r % 256
            );
        }
        ns.batch(&batch);
    }
    let base = 40_000 + unique() % 1_000_000 * 64;
    let specs: Vec<InstanceSpec> = namespaces
        .iter()
        .enumerate()
        .map(|(i, ns)| InstanceSpec {
            id: base + i as u32,
            netns: ns.name.clone(),
            blades: vec![i as u32 + 1],
        })
        .collect();

    // (a) start to all in sync.
    let t0 = Instant::now();
    let mut extra = String::from("TIMEOUT_START_SEC=120s\n");
    if interval_ms > 0 {
        extra += &format!("REPORT_INTERVAL_SEC={interval_ms}ms\n");
    }
    let s = Supervisor::start(&specs, "private", None, &extra);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let (synced, conn) = runtime.block_on(async {
        let conn = zbus::connection::Builder::address(s.address.as_str())
            .unwrap()
            .build()
            .await
            .unwrap();
        // No property cache: the proxy may be built before fpsyncd owns its
        // name, and a cache would then never see the property.
        let proxy = SupervisorProxy::builder(&conn)
            .cache_properties(zbus::proxy::CacheProperties::No)
            .build()
            .await
            .unwrap();
        loop {
            let state = proxy.state().await.unwrap_or_default();
            if state == "running" {
                break;
            }
            assert!(
                t0.elapsed() < Duration::from_secs(300),
                "state {state} after 300 s:\n{}",
                s.log()
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        (t0.elapsed(), conn)
    });
    // Every blade holds its namespace's routes (as fpsyncd last heard:
    // within a report interval).
    let filled = |st: &serde_json::Value| {
        st["blades"].as_array().is_some_and(|bs| {
            bs.iter()
                .all(|b| b["tables"]["routes4"].as_u64().unwrap_or(0) >= routes as u64)
        })
    };
    assert!(
        wait_until(Duration::from_secs(30), || filled(&s.status())),
        "blades not filled: {}",
        s.status()
    );

    std::thread::sleep(settle);
    // (b) memory of the tree.
    let pids = tree(s.pid());
    let mut by_name: std::collections::BTreeMap<String, (u32, u64, u64)> = Default::default();
    let (mut rss, mut pss) = (0, 0);
    for p in &pids {
        let (r, q) = memory(*p);
        rss += r;
        pss += q;
        let e = by_name.entry(comm(*p)).or_default();
        e.0 += 1;
        e.1 += r;
        e.2 += q;
    }

    // (d) the idle tree's CPU, over 5 s, summed and by program.
    let ticks = || {
        let mut by: std::collections::BTreeMap<String, u64> = Default::default();
        for p in &pids {
            *by.entry(comm(*p)).or_default() += cpu_ticks(*p);
        }
        by
    };
    let (c0, w0) = (ticks(), Instant::now());
    std::thread::sleep(Duration::from_secs(5));
    let c1 = ticks();
    let secs = w0.elapsed().as_secs_f64();
    // /proc counts in USER_HZ, 100 a second on Linux whatever the kernel's HZ.
    let share = |name: &str| {
        (c1.get(name).unwrap_or(&0) - c0.get(name).unwrap_or(&0)) as f64 / 100.0 / secs
    };
    let idle_cpu: f64 = c1.keys().map(|k| share(k)).sum();
    let idle_by: Vec<String> = c1
        .keys()
        .map(|k| format!("{k} {:.0}%", share(k) * 100.0))
        .collect();

    // (c) Status(), Statistics() and Metrics() latency.
    let (latencies, sizes, errors) = runtime.block_on(async {
        let proxy = SupervisorProxy::new(&conn).await.unwrap();
        let mut out = Vec::new();
        let mut sizes = Vec::new();
        let mut errors = std::collections::BTreeMap::new();
        for method in ["Status", "Statistics", "Metrics"] {
            let mut lat = Vec::with_capacity(calls);
            let mut size = 0;
            for _ in 0..calls {
                let t = Instant::now();
                let text = match method {
                    "Status" => proxy.status().await.unwrap(),
                    "Statistics" => proxy.statistics().await.unwrap(),
                    _ => proxy.metrics().await.unwrap(),
                };
                lat.push(t.elapsed());
                if size == 0 {
                    if let Some(dir) = std::env::var_os("BENCH_DUMP") {
                        let path = std::path::Path::new(&dir).join(format!("{method}.txt"));
                        let _ = std::fs::write(path, &text);
                    }
                }
                size = text.len();
                if method == "Status" {
                    // Children reported stale (or otherwise in error).
                    let st: serde_json::Value = serde_json::from_str(&text).unwrap();
                    for c in ["instances", "blades"]
                        .iter()
                        .flat_map(|k| st[*k].as_array().cloned().unwrap_or_default())
                    {
                        if let Some(e) = c["error"].as_str() {
                            let e = e.split(" for ").next().unwrap_or(e).to_owned();
                            *errors.entry(e).or_insert(0u32) += 1;
                        }
                    }
                }
            }
            lat.sort();
            out.push((method, lat));
            sizes.push(size);
        }
        (out, sizes, errors)
    });
    // (e) the bus alone, for Status()' and Statistics()' sizes.
    let echoes: Vec<Vec<Duration>> = sizes[..2]
        .iter()
        .map(|size| echo_latency(&s.address, *size, calls, &runtime, &conn))
        .collect();
    let available_after = available();

    println!();
    println!("| figure | value |");
    println!("|---|---|");
    println!(
        "| start to all {n} instances in sync | {:.0} ms |",
        synced.as_secs_f64() * 1e3
    );
    println!("| processes in the tree | {} |", pids.len());
    println!(
        "| the tree's CPU while idle (5 s{}) | {:.0}% of one core ({}) |",
        if settle.is_zero() {
            String::new()
        } else {
            format!(", {} ms after in sync", settle.as_millis())
        },
        idle_cpu * 100.0,
        idle_by.join(", ")
    );
    println!(
        "| tree memory, RSS summed | {:.1} MiB |",
        rss as f64 / 1024.0
    );
    println!(
        "| tree memory, PSS summed | {:.1} MiB |",
        pss as f64 / 1024.0
    );
    for (name, (count, r, q)) in &by_name {
        println!(
            "| &nbsp;&nbsp;{name} ×{count} | RSS {:.1} MiB, PSS {:.1} MiB; PSS per process {:.2} MiB |",
            *r as f64 / 1024.0,
            *q as f64 / 1024.0,
            *q as f64 / 1024.0 / f64::from(*count)
        );
    }
    let children = 2 * n as u64;
    let child_pss: u64 = by_name
        .iter()
        .filter(|(name, _)| name.as_str() == "cmgrd" || name.as_str() == "fpd")
        .map(|(_, (_, _, q))| q)
        .sum();
    println!(
        "| PSS per child (cmgrd and fpd, {children} children) | {:.2} MiB |",
        child_pss as f64 / 1024.0 / children as f64
    );
    println!(
        "| MemAvailable, before start / after the calls | {:.1} / {:.1} GiB |",
        available_before as f64 / 1048576.0,
        available_after as f64 / 1048576.0
    );
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    for ((method, lat), size) in latencies.iter().zip(&sizes) {
        println!(
            "| `{method}()` p50 / p99 / max ({calls} calls, {:.0} KiB answer) | {:.2} / {:.2} / {:.2} ms |",
            *size as f64 / 1024.0,
            ms(percentile(lat, 0.5)),
            ms(percentile(lat, 0.99)),
            ms(*lat.last().unwrap())
        );
    }
    for ((method, lat), echo) in latencies.iter().zip(&echoes) {
        let (p50, p99) = (percentile(echo, 0.5), percentile(echo, 0.99));
        println!(
            "| the bus alone, a constant string of `{method}()`' size: p50 / p99 / max; `{method}()`/bus p50, p99 | {:.2} / {:.2} / {:.2} ms; {:.2}, {:.2} |",
            ms(p50),
            ms(p99),
            ms(*echo.last().unwrap()),
            percentile(lat, 0.5).as_secs_f64() / p50.as_secs_f64(),
            percentile(lat, 0.99).as_secs_f64() / p99.as_secs_f64()
        );
    }
    println!(
        "| children shown in error over the {calls} `Status()` calls | {} |",
        if errors.is_empty() {
            "none".to_owned()
        } else {
            format!("{errors:?}")
        }
    );
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    println!(
        "load average after: {}",
        load.split_whitespace()
            .take(3)
            .collect::<Vec<_>>()
            .join(" ")
    );
    drop(conn);
    drop(s);
    drop(namespaces);
}
