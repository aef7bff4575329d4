//! The aggregated views (`Status()`, `Statistics()`, the IPsec HA switch):
//! every running child is queried in parallel with its own deadline; a child
//! that does not answer gets an `error` member, never a hang.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use fastpath::fpc::Endpoint;
use serde::Serialize;
use serde_json::{json, Map, Value};
use tokio::task::JoinSet;

use crate::probe::{self, ProbeError};

/// One child as the core sees it, for a report.
#[derive(Debug, Clone, Serialize)]
pub struct ChildView {
    pub kind: &'static str,
    pub id: u32,
    pub active_state: &'static str,
    pub sub_state: &'static str,
    pub result: &'static str,
    pub main_pid: u32,
    pub n_restarts: u32,
    pub state_change_timestamp: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sync_state: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub netns: Option<String>,
    /// Instances: their blades; blades: their instance.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub blades: Vec<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub instance: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_failure: Option<String>,
    #[serde(skip)]
    pub fpc: Option<Endpoint>,
    /// Instances: the sync state the supervisor's watch read last, and when.
    #[serde(skip)]
    pub watched: Option<(probe::SyncInfo, Instant)>,
}

impl ChildView {
    fn running(&self) -> bool {
        self.active_state == "active"
    }
}

/// The counters of a blade that make its table sizes.
const TABLES: [&str; 6] = [
    "links",
    "addresses",
    "routes4",
    "routes6",
    "nexthops",
    "neighbours",
];

/// Counters that are not quantities and are not summed.
const NOT_SUMMED: [&str; 1] = ["generation"];

/// How old an instance's watched sync state may be to stand for a live
/// query (the watch reads it every 250 ms).
const WATCH_FRESH: Duration = Duration::from_secs(1);

enum Reply {
    /// The sync info, and its age when it came from the watch.
    Instance(u32, Result<probe::SyncInfo, ProbeError>, Option<Duration>),
    Blade(u32, Result<(u32, Vec<(String, u64)>), ProbeError>),
}

/// Queries every running child of `views` in parallel. An instance's sync
/// state comes from the supervisor's own watch when it is fresh (the watch
/// polls every instance anyway; asking again would double the load of a
/// status poller), else from its console.
async fn query(views: &[ChildView], timeout: Duration) -> Vec<Reply> {
    let mut set = JoinSet::new();
    let mut out = Vec::new();
    for v in views.iter().filter(|v| v.running()) {
        let id = v.id;
        match (v.kind, &v.fpc) {
            ("instance", _) => match &v.watched {
                Some((info, at)) if at.elapsed() < WATCH_FRESH => {
                    out.push(Reply::Instance(id, Ok(info.clone()), Some(at.elapsed())));
                }
                _ => {
                    set.spawn(async move {
                        Reply::Instance(id, probe::sync_info(id, timeout).await, None)
                    });
                }
            },
            (_, Some(ep)) => {
                let ep = ep.clone();
                set.spawn(async move { Reply::Blade(id, probe::fpd_counters(&ep, timeout).await) });
            }
            _ => {}
        }
    }
    while let Some(r) = set.join_next().await {
        if let Ok(r) = r {
            out.push(r);
        }
    }
    out
}

fn not_running(v: &ChildView) -> Value {
    json!(format!("not running ({} {})", v.active_state, v.sub_state))
}

fn object(v: &ChildView) -> Map<String, Value> {
    match serde_json::to_value(v) {
        Ok(Value::Object(m)) => m,
        _ => Map::new(),
    }
}

/// `Status()`: lifecycle and sync state of every child, each blade's table
/// sizes.
pub async fn status(header: Value, views: Vec<ChildView>, timeout: Duration) -> String {
    let replies = query(&views, timeout).await;
    let mut instances = Vec::new();
    let mut blades = Vec::new();
    for v in &views {
        let mut o = object(v);
        if !v.running() {
            o.insert("error".into(), not_running(v));
        }
        for r in &replies {
            match r {
                Reply::Instance(id, res, age) if v.kind == "instance" && *id == v.id => match res {
                    Ok(info) => {
                        o.insert("sync_state".into(), json!(info.sync_state()));
                        o.insert(
                            "sync_age_ms".into(),
                            json!(age.map(|a| a.as_millis() as u64).unwrap_or(0)),
                        );
                        for k in [
                            "generation",
                            "overruns",
                            "resyncs",
                            "reconciles",
                            "silent_deletions",
                        ] {
                            if let Some(x) = info.sync.get(k) {
                                o.insert(k.into(), x.clone());
                            }
                        }
                        if let Some(c) = info.sync.get("cache") {
                            o.insert("cache".into(), c.clone());
                        }
                    }
                    Err(e) => {
                        o.insert("error".into(), json!(e.to_string()));
                    }
                },
                Reply::Blade(id, res) if v.kind == "blade" && *id == v.id => match res {
                    Ok((_, counters)) => {
                        let get = |k: &str| counters.iter().find(|(n, _)| n == k).map(|(_, x)| *x);
                        let tables: Map<String, Value> = TABLES
                            .iter()
                            .filter_map(|k| get(k).map(|x| ((*k).to_owned(), json!(x))))
                            .collect();
                        o.insert("tables".into(), Value::Object(tables));
                        for k in ["generation", "sync_connected"] {
                            if let Some(x) = get(k) {
                                o.insert(k.into(), json!(x));
                            }
                        }
                    }
                    Err(e) => {
                        o.insert("error".into(), json!(e.to_string()));
                    }
                },
                _ => {}
            }
        }
        if v.kind == "instance" {
            instances.push(Value::Object(o));
        } else {
            blades.push(Value::Object(o));
        }
    }
    let mut out = match header {
        Value::Object(m) => m,
        _ => Map::new(),
    };
    out.insert("instances".into(), Value::Array(instances));
    out.insert("blades".into(), Value::Array(blades));
    Value::Object(out).to_string()
}

/// Sums per-blade counters (all but identifiers such as `generation`).
pub fn sum(per_blade: &BTreeMap<u32, Vec<(String, u64)>>) -> BTreeMap<String, u64> {
    let mut total = BTreeMap::new();
    for counters in per_blade.values() {
        for (k, v) in counters {
            if !NOT_SUMMED.contains(&k.as_str()) {
                *total.entry(k.clone()).or_insert(0u64) += v;
            }
        }
    }
    total
}

/// Sums the numeric queue counters of every instance's blades.
fn sum_queues(instances: &Map<String, Value>) -> BTreeMap<String, u64> {
    let mut total = BTreeMap::new();
    for inst in instances.values() {
        for b in inst["queue"].as_array().into_iter().flatten() {
            if let Some(q) = b["queue"].as_object() {
                for (k, v) in q {
                    if let Some(n) = v.as_u64() {
                        *total.entry(k.clone()).or_insert(0u64) += n;
                    }
                }
            }
        }
    }
    total
}

/// `Statistics()`: every blade's counters and their sums; every instance's
/// queues and their sums; an error per child that did not answer.
pub async fn statistics(views: Vec<ChildView>, timeout: Duration) -> String {
    let replies = query(&views, timeout).await;
    let mut per_blade = BTreeMap::new();
    let mut instances = Map::new();
    let mut errors = Map::new();
    for v in views.iter().filter(|v| !v.running()) {
        errors.insert(format!("{} {}", v.kind, v.id), not_running(v));
    }
    for r in replies {
        match r {
            Reply::Blade(id, Ok((_, counters))) => {
                per_blade.insert(id, counters);
            }
            Reply::Blade(id, Err(e)) => {
                errors.insert(format!("blade {id}"), json!(e.to_string()));
            }
            Reply::Instance(id, Ok(info), age) => {
                instances.insert(
                    id.to_string(),
                    json!({
                        "sync_state": info.sync_state(),
                        "sync": info.sync,
                        "queue": info.queue,
                        "age_ms": age.map(|a| a.as_millis() as u64).unwrap_or(0),
                    }),
                );
            }
            Reply::Instance(id, Err(e), _) => {
                errors.insert(format!("instance {id}"), json!(e.to_string()));
            }
        }
    }
    // Each instance's view of its blades' ports: the fast path's counters
    // (as fpd reported them to cmgrd) beside Linux's own.
    let ids: Vec<u32> = instances.keys().filter_map(|k| k.parse().ok()).collect();
    let answers = futures_join(ids.iter().map(|id| {
        let id = *id;
        async move {
            (
                id,
                probe::console(id, &["show stats --json"], timeout).await,
            )
        }
    }))
    .await;
    for (id, answer) in answers {
        let entry = &mut instances[&id.to_string()];
        match answer.map(|mut a| a.remove(0)) {
            Ok(text) => match serde_json::from_str::<Value>(text.trim()) {
                Ok(v) => entry["interfaces"] = v["blades"].clone(),
                Err(_) => entry["interfaces_error"] = json!(text.lines().next().unwrap_or("")),
            },
            Err(e) => entry["interfaces_error"] = json!(e.to_string()),
        }
    }
    let total = sum(&per_blade);
    let blades: Map<String, Value> = per_blade
        .iter()
        .map(|(id, c)| {
            let m: Map<String, Value> = c.iter().map(|(k, v)| (k.clone(), json!(v))).collect();
            (id.to_string(), Value::Object(m))
        })
        .collect();
    let queue_total = sum_queues(&instances);
    json!({
        "blades": blades,
        "total": total,
        "instances": instances,
        "instances_total": {"queue": queue_total},
        "errors": errors,
    })
    .to_string()
}

/// Runs futures concurrently and collects their outputs in order.
async fn futures_join<F>(futs: impl Iterator<Item = F>) -> Vec<F::Output>
where
    F: std::future::Future + Send + 'static,
    F::Output: Send + 'static,
{
    let handles: Vec<_> = futs.map(tokio::spawn).collect();
    let mut out = Vec::with_capacity(handles.len());
    for h in handles {
        if let Ok(v) = h.await {
            out.push(v);
        }
    }
    out
}

/// Reads "IPsec High Availability enabled|disabled".
pub fn parse_ha(answer: &str) -> Result<bool, String> {
    let line = answer.lines().next().unwrap_or("").trim();
    if line.ends_with("enabled") {
        Ok(true)
    } else if line.ends_with("disabled") {
        Ok(false)
    } else {
        Err(format!("unexpected console answer {line:?}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sums_everything_but_identifiers() {
        let mut m = BTreeMap::new();
        m.insert(1, vec![("routes4".into(), 3), ("generation".into(), 7)]);
        m.insert(
            2,
            vec![
                ("routes4".into(), 4),
                ("routes6".into(), 1),
                ("generation".into(), 9),
            ],
        );
        let t = sum(&m);
        assert_eq!(t.get("routes4"), Some(&7));
        assert_eq!(t.get("routes6"), Some(&1));
        assert_eq!(t.get("generation"), None);
    }

    #[test]
    fn reads_the_ha_switch() {
        assert_eq!(parse_ha("IPsec High Availability enabled\n"), Ok(true));
        assert_eq!(parse_ha("IPsec High Availability disabled\n"), Ok(false));
        assert!(parse_ha("error: unknown command").is_err());
    }
}
