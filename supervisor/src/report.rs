//! The aggregated views (`Status()`, `Statistics()`), built from memory:
//! the core's view of each child and what the collector last heard from it
//! (see `collect`), each child's figures with their age, a stale child
//! with its error. Nothing here does I/O, so a call never waits on a child.
//! The IPsec HA switch is still a live console call (it changes state).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use fpsync_dbus::{Resources, Unit};
use serde::Serialize;
use serde_json::{json, Map, Value};

use crate::collect::{Data, Heard};
use crate::metrics;

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
    pub unit: Option<Unit>,
    /// The run the collector's entry must belong to.
    #[serde(skip)]
    pub run: u64,
}

impl ChildView {
    pub fn running(&self) -> bool {
        self.active_state == "active"
    }
}

/// What a report is built from: the core's views, the collector's store
/// and the sampled resources, as of `now`.
pub struct Inputs<'a> {
    pub views: &'a [ChildView],
    pub heard: &'a BTreeMap<Unit, Arc<Heard>>,
    pub resources: &'a BTreeMap<Unit, Resources>,
    pub interval: Duration,
    pub now: Instant,
}

impl Inputs<'_> {
    /// What was heard of `v`'s current run.
    pub fn heard(&self, v: &ChildView) -> Option<&Heard> {
        let unit = v.unit?;
        self.heard
            .get(&unit)
            .map(|h| h.as_ref())
            .filter(|h| h.run == v.run && v.running())
    }
}

/// The blade tables `Status()` shows the sizes of (the first of those
/// the metrics export).
const TABLES: &[&str] = metrics::TABLES.split_at(6).0;

/// Counters that are not quantities and are not summed.
const NOT_SUMMED: [&str; 1] = ["generation"];

fn not_running(v: &ChildView) -> Value {
    json!(format!("not running ({} {})", v.active_state, v.sub_state))
}

fn object(v: &ChildView) -> Map<String, Value> {
    match serde_json::to_value(v) {
        Ok(Value::Object(m)) => m,
        _ => Map::new(),
    }
}

fn millis(d: Duration) -> u64 {
    d.as_millis().min(u64::MAX as u128) as u64
}

/// Why `v` has no fresh figures (not running, not heard yet, stale), if so.
fn problem(inputs: &Inputs, v: &ChildView) -> Option<Value> {
    if !v.running() {
        return Some(not_running(v));
    }
    match inputs.heard(v) {
        None => Some(json!("not watched yet")),
        Some(h) => h.stale(inputs.now, inputs.interval).map(Value::from),
    }
}

/// `Status()`: lifecycle and sync state of every child, each blade's table
/// sizes, each child's resources, and the age of its figures.
pub fn status(header: Value, inputs: &Inputs) -> String {
    let mut instances = Vec::new();
    let mut blades = Vec::new();
    for v in inputs.views {
        let mut o = object(v);
        let heard = inputs.heard(v);
        if let Some(h) = heard {
            let age = h.age(inputs.now).map(millis);
            o.insert("report_age_ms".into(), json!(age));
            o.insert(
                "stale".into(),
                json!(h.stale(inputs.now, inputs.interval).is_some()),
            );
        }
        if let Some(e) = problem(inputs, v) {
            o.insert("error".into(), e);
        }
        if let Some(r) = v.unit.and_then(|u| inputs.resources.get(&u)) {
            o.insert("memory_current".into(), json!(r.memory_current));
            o.insert("cpu_usage_nsec".into(), json!(r.cpu_usage_nsec));
            o.insert("tasks_current".into(), json!(r.tasks_current));
        }
        match heard.and_then(|h| Some((h, h.data.as_ref()?))) {
            Some((h, Data::Instance { sync, .. })) => {
                o.insert("sync_state".into(), json!(sync.sync_state()));
                o.insert(
                    "sync_age_ms".into(),
                    json!(h.age(inputs.now).map(millis).unwrap_or(0)),
                );
                for k in [
                    "generation",
                    "overruns",
                    "resyncs",
                    "reconciles",
                    "silent_deletions",
                ] {
                    if let Some(x) = sync.sync.get(k) {
                        o.insert(k.into(), x.clone());
                    }
                }
                if let Some(c) = sync.sync.get("cache") {
                    o.insert("cache".into(), c.clone());
                }
            }
            Some((_, Data::Blade { counters })) => {
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
            None => {}
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
    out.insert("report_interval_ms".into(), json!(millis(inputs.interval)));
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
/// queues and their sums, and its blades' ports; the age of each child's
/// figures (`age_ms`, by "blade B" / "instance N"); an error per child not
/// running, not heard yet, or stale (its last figures are still given).
pub fn statistics(inputs: &Inputs) -> String {
    let mut per_blade = BTreeMap::new();
    let mut instances = Map::new();
    let mut errors = Map::new();
    let mut ages = Map::new();
    for v in inputs.views {
        let who = format!("{} {}", v.kind, v.id);
        if let Some(e) = problem(inputs, v) {
            errors.insert(who.clone(), e);
        }
        let Some(h) = inputs.heard(v) else {
            continue;
        };
        let Some(data) = &h.data else {
            continue;
        };
        let age = h.age(inputs.now).map(millis).unwrap_or(0);
        ages.insert(who, json!(age));
        match data {
            Data::Blade { counters } => {
                per_blade.insert(v.id, counters.clone());
            }
            Data::Instance {
                sync,
                stats,
                netlink,
            } => {
                let mut entry = json!({
                    "sync_state": sync.sync_state(),
                    "sync": sync.sync,
                    "queue": sync.queue,
                    "age_ms": age,
                });
                match stats {
                    Ok(s) => entry["interfaces"] = s["blades"].clone(),
                    Err(e) => entry["interfaces_error"] = json!(e),
                }
                match netlink {
                    Ok(n) => entry["netlink"] = n.clone(),
                    Err(e) => entry["netlink_error"] = json!(e),
                }
                instances.insert(v.id.to_string(), entry);
            }
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
        "age_ms": ages,
    })
    .to_string()
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
