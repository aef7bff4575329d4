//! `fpsync status`: the supervisor's and every child's state, with the
//! resources systemd also shows per unit (memory, CPU, tasks), as text or
//! JSON.

use std::process::ExitCode;

use serde_json::Value;

use super::{connect, proxy, status_json, CliError};

pub(super) fn s<'a>(v: &'a Value, k: &str) -> &'a str {
    v[k].as_str().unwrap_or("-")
}

pub(super) fn n(v: &Value, k: &str) -> String {
    v[k].as_u64()
        .map(|x| x.to_string())
        .unwrap_or_else(|| "-".into())
}

pub(super) fn ids(v: &Value) -> String {
    match v.as_array() {
        Some(a) if !a.is_empty() => a
            .iter()
            .map(|x| x.to_string())
            .collect::<Vec<_>>()
            .join(","),
        _ => "-".into(),
    }
}

/// Bytes as systemd prints MemoryCurrent (1024-based, one decimal).
pub(super) fn bytes(v: &Value) -> String {
    let Some(b) = v.as_u64() else {
        return "-".into();
    };
    let units = ["B", "K", "M", "G", "T"];
    let mut x = b as f64;
    let mut i = 0;
    while x >= 1024.0 && i + 1 < units.len() {
        x /= 1024.0;
        i += 1;
    }
    if i == 0 {
        format!("{b}B")
    } else {
        format!("{x:.1}{}", units[i])
    }
}

/// CPU nanoseconds as seconds with milliseconds.
pub(super) fn cpu(v: &Value) -> String {
    match v.as_u64() {
        Some(ns) => format!("{}.{:03}s", ns / 1_000_000_000, ns / 1_000_000 % 1000),
        None => "-".into(),
    }
}

/// The columns every child has: resources and the age of its figures.
pub(super) fn usage(c: &Value) -> String {
    format!(
        "{:>8} {:>9} {:>5} {:>7}",
        bytes(&c["memory_current"]),
        cpu(&c["cpu_usage_nsec"]),
        n(c, "tasks_current"),
        match c["report_age_ms"].as_u64() {
            Some(ms) => format!("{ms}ms"),
            None => "-".into(),
        }
    )
}

pub(super) const USAGE_HEADER: [&str; 4] = ["MEMORY", "CPU", "TASKS", "AGE"];

pub(super) fn usage_header() -> String {
    let [m, c, t, a] = USAGE_HEADER;
    format!("{m:>8} {c:>9} {t:>5} {a:>7}")
}

pub(super) fn print_status(st: &Value) {
    println!(
        "fpsyncd {} (pid {}), state {}, bus {}",
        s(st, "version"),
        n(st, "pid"),
        s(st, "state"),
        s(st, "bus")
    );
    println!(
        "{:<9} {:<16} {:<7} {:<24} {:<13} {:>8} {:>8} {}  NOTE",
        "INSTANCE",
        "NETNS",
        "BLADES",
        "STATE",
        "SYNC",
        "PID",
        "RESTARTS",
        usage_header()
    );
    for i in st["instances"].as_array().into_iter().flatten() {
        let netns = match s(i, "netns") {
            "" => "(fpsyncd's)",
            x => x,
        };
        println!(
            "{:<9} {:<16} {:<7} {:<24} {:<13} {:>8} {:>8} {}  {}",
            n(i, "id"),
            netns,
            ids(&i["blades"]),
            format!("{}/{}", s(i, "active_state"), s(i, "sub_state")),
            s(i, "sync_state"),
            n(i, "main_pid"),
            n(i, "n_restarts"),
            usage(i),
            i["error"]
                .as_str()
                .or(i["last_failure"].as_str())
                .unwrap_or("")
        );
    }
    println!(
        "{:<9} {:<9} {:<24} {:>8} {:>6} {:>6} {:>8} {:>8} {:>8} {:>6} {}  NOTE",
        "BLADE",
        "INSTANCE",
        "STATE",
        "PID",
        "LINKS",
        "ADDRS",
        "ROUTES4",
        "ROUTES6",
        "NEXTHOPS",
        "NEIGH",
        usage_header()
    );
    for b in st["blades"].as_array().into_iter().flatten() {
        let t = &b["tables"];
        println!(
            "{:<9} {:<9} {:<24} {:>8} {:>6} {:>6} {:>8} {:>8} {:>8} {:>6} {}  {}",
            n(b, "id"),
            n(b, "instance"),
            format!("{}/{}", s(b, "active_state"), s(b, "sub_state")),
            n(b, "main_pid"),
            n(t, "links"),
            n(t, "addresses"),
            n(t, "routes4"),
            n(t, "routes6"),
            n(t, "nexthops"),
            n(t, "neighbours"),
            usage(b),
            b["error"]
                .as_str()
                .or(b["last_failure"].as_str())
                .unwrap_or("")
        );
    }
}

pub(super) async fn status(
    address: &Option<String>,
    complete: bool,
    json: bool,
) -> Result<ExitCode, CliError> {
    let running = match connect(address).await {
        Ok(conn) => match proxy(&conn).await {
            Ok(p) => Some(status_json(&p).await?),
            Err(CliError::NotRunning) => None,
            Err(e) => return Err(e),
        },
        Err(CliError::NotRunning) => None,
        Err(e) if !complete => return Err(e),
        Err(e) => {
            eprintln!("fpsync: {e}");
            None
        }
    };
    let checks = complete.then(crate::install::check);
    if json {
        let mut out = serde_json::json!({ "running": running.is_some(), "status": running });
        if let Some(c) = &checks {
            out["installation"] = crate::install::to_json(c);
        }
        println!("{out}");
    } else {
        match &running {
            Some(st) => print_status(st),
            None => println!("fpsyncd is not running"),
        }
        if let Some(c) = &checks {
            println!();
            crate::install::print(c);
        }
    }
    Ok(match running {
        Some(_) => ExitCode::SUCCESS,
        None => ExitCode::from(3),
    })
}

/// The instances a show targets: -I N, the instance feeding -b B, or all.
pub(super) fn targets(
    st: &Value,
    instance: Option<u32>,
    blade: Option<u32>,
) -> Result<Vec<u32>, CliError> {
    let all: Vec<u32> = st["instances"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|i| i["id"].as_u64().map(|x| x as u32))
        .collect();
    match (instance, blade) {
        (Some(i), _) if all.contains(&i) => Ok(vec![i]),
        (Some(i), _) => Err(CliError::Msg(format!(
            "no instance {i} (configured: {all:?})"
        ))),
        (None, Some(b)) => st["blades"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|x| x["id"].as_u64() == Some(b as u64))
            .map(|x| {
                x["instance"]
                    .as_u64()
                    .map(|i| vec![i as u32])
                    .unwrap_or_default()
            })
            .ok_or_else(|| CliError::Msg(format!("no blade {b}"))),
        (None, None) => Ok(all),
    }
}
