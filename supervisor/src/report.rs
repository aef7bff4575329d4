//! The aggregated views (`Status()`, `Statistics()`), built from memory:
//! the core's view of each child and what the collector last heard from it
//! (see `collect`), each child's figures with their age, a stale child
//! with its error. Nothing here does I/O, so a call never waits on a child.
//! A remote blade that cannot be reached shows `"error": "unreachable:
//! REASON"` (its figures left out until it is reached again).
//! The IPsec HA switch is still a live console call (it changes state).
//!
//! Both answers leave out what is zero and what another member already
//! says, to keep them small on the bus: a counter that is 0 (or a flag
//! that is false) is absent, at every depth, but for `Statistics()`'
//! `total` (every blade counter, zeros included: the list of names) and
//! `Status()`' blade `tables` (what `fpsync status` prints); `stale` is
//! there only when true; `Status()` carries each child's lifecycle,
//! resources, errors and a blade's tables, and the counters (an instance's
//! cache sizes, the generations, `sync_connected`) are `Statistics()`'
//! alone, but for an instance's overruns, resyncs, reconciles and silent
//! deletions when not 0; a netlink
//! socket that carried no message is absent; a child's `kind` is the list
//! it is in; an instance's sync state is `sync.state` in `Statistics()`;
//! each child's age is `age_ms` (by "blade B" / "instance N").

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use fpsync_dbus::{Resources, Unit};
use serde::Serialize;
use serde_json::{json, Map, Value};

use crate::heard::{members, Data, Heard};

/// One child as the core sees it, for a report.
#[derive(Debug, Clone, Serialize)]
pub struct ChildView {
    /// Not shown: the list a child is in says it.
    #[serde(skip)]
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
    /// A blade whose fpd runs on another host (`BLADE_<B>_ENDPOINT`).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub remote: bool,
    /// A remote blade: why the last round could not reach it.
    #[serde(skip)]
    pub unreachable: Option<String>,
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

/// Counters that are not quantities and are not summed.
const NOT_SUMMED: [&str; 1] = ["generation"];

fn not_running(v: &ChildView) -> Value {
    json!(format!("not running ({} {})", v.active_state, v.sub_state))
}

fn millis(d: Duration) -> u64 {
    d.as_millis().min(u64::MAX as u128) as u64
}

/// Why `v` has no fresh figures (not running, not heard yet, stale), if so.
fn problem(inputs: &Inputs, v: &ChildView) -> Option<Value> {
    if let Some(reason) = &v.unreachable {
        return Some(json!(format!("unreachable: {reason}")));
    }
    if v.remote && !v.running() {
        return Some(json!("not reached yet"));
    }
    if !v.running() {
        return Some(not_running(v));
    }
    match inputs.heard(v) {
        None => Some(json!("not watched yet")),
        Some(h) => h.stale(inputs.now, inputs.interval).map(Value::from),
    }
}

/// Appends `,"key":value` to an object being written.
fn member(out: &mut String, key: &str, value: &Value) {
    out.push(',');
    out.push_str(&Value::from(key).to_string());
    out.push(':');
    out.push_str(&value.to_string());
}

/// Closes an object being written with `fragment`'s members.
fn close(out: &mut String, fragment: &str) {
    if !fragment.is_empty() {
        out.push(',');
        out.push_str(fragment);
    }
    out.push('}');
}

/// `Status()`: lifecycle and sync state of every child, each blade's table
/// sizes, each child's resources, and the age of its figures. Written as
/// text around the watchers' fragments.
pub fn status(header: Value, inputs: &Inputs) -> String {
    let mut instances = String::from("[");
    let mut blades = String::from("[");
    for v in inputs.views {
        let list = if v.kind == "instance" {
            &mut instances
        } else {
            &mut blades
        };
        if list.len() > 1 {
            list.push(',');
        }
        let mut o = serde_json::to_string(v).unwrap_or_else(|_| "{}".into());
        o.pop();
        if o.len() == 1 {
            // Cannot happen (a view has members); keep the JSON valid.
            o.push_str("\"id\":null");
        }
        let heard = inputs.heard(v);
        if let Some(h) = heard {
            let age = h.age(inputs.now).map(millis);
            member(&mut o, "report_age_ms", &json!(age));
            if h.stale(inputs.now, inputs.interval).is_some() {
                member(&mut o, "stale", &json!(true));
            }
        }
        if let Some(e) = problem(inputs, v) {
            member(&mut o, "error", &e);
        }
        if let Some(r) = v.unit.and_then(|u| inputs.resources.get(&u)) {
            member(&mut o, "memory_current", &json!(r.memory_current));
            member(&mut o, "cpu_usage_nsec", &json!(r.cpu_usage_nsec));
            member(&mut o, "tasks_current", &json!(r.tasks_current));
        }
        let fragment = heard.map(|h| h.fragments.status.as_str()).unwrap_or("");
        close(&mut o, fragment);
        list.push_str(&o);
    }
    instances.push(']');
    blades.push(']');
    let mut out = match header {
        Value::Object(m) => members(&m),
        _ => String::new(),
    };
    if !out.is_empty() {
        out.push(',');
    }
    format!(
        "{{{out}\"instances\":{instances},\"blades\":{blades},\"report_interval_ms\":{}}}",
        millis(inputs.interval)
    )
}

/// Adds a blade's counters to `total` (all but identifiers such as
/// `generation`).
fn add_counters(counters: &[(String, u64)], total: &mut BTreeMap<String, u64>) {
    for (k, n) in counters {
        if !NOT_SUMMED.contains(&k.as_str()) {
            *total.entry(k.clone()).or_insert(0u64) += n;
        }
    }
}

/// Adds the numeric queue counters of one instance's blades to `total`.
fn sum_queues(queue: &Value, total: &mut BTreeMap<String, u64>) {
    for b in queue.as_array().into_iter().flatten() {
        if let Some(q) = b["queue"].as_object() {
            for (k, v) in q {
                if let Some(n) = v.as_u64() {
                    *total.entry(k.clone()).or_insert(0u64) += n;
                }
            }
        }
    }
}

/// `Statistics()`: every blade's counters (zeros left out) and their sums
/// (all of them); every instance's queues and their sums, and its blades'
/// ports; the age of each child's figures (`age_ms`, by "blade B" /
/// "instance N"); an error per child not
/// running, not heard yet, or stale (its last figures are still given).
/// Written as text around the watchers' fragments.
pub fn statistics(inputs: &Inputs) -> String {
    let mut blades = String::from("{");
    let mut instances = String::from("{");
    let mut total = BTreeMap::new();
    let mut queue_total = BTreeMap::new();
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
        let Some(data) = h.data.as_deref() else {
            continue;
        };
        let age = h.age(inputs.now).map(millis).unwrap_or(0);
        ages.insert(who, json!(age));
        let fragment = &h.fragments.statistics;
        match data {
            Data::Blade { counters } => {
                add_counters(counters, &mut total);
                if blades.len() > 1 {
                    blades.push(',');
                }
                blades.push_str(&format!("\"{}\":{{{fragment}}}", v.id));
            }
            Data::Instance { sync, .. } => {
                sum_queues(&sync.queue, &mut queue_total);
                if instances.len() > 1 {
                    instances.push(',');
                }
                instances.push_str(&format!("\"{}\":{{{fragment}}}", v.id));
            }
        }
    }
    blades.push('}');
    instances.push('}');
    format!(
        "{{\"blades\":{blades},\"total\":{},\"instances\":{instances},\"instances_total\":{{\"queue\":{}}},\"errors\":{},\"age_ms\":{}}}",
        json!(total),
        json!(queue_total),
        Value::Object(errors),
        Value::Object(ages)
    )
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
        let mut t = BTreeMap::new();
        add_counters(
            &[
                ("routes4".into(), 3),
                ("generation".into(), 7),
                ("refused_tls".into(), 0),
            ],
            &mut t,
        );
        add_counters(
            &[
                ("routes4".into(), 4),
                ("routes6".into(), 1),
                ("generation".into(), 9),
            ],
            &mut t,
        );
        assert_eq!(t.get("routes4"), Some(&7));
        assert_eq!(t.get("routes6"), Some(&1));
        assert_eq!(t.get("generation"), None);
        // The totals keep zeros: they list every counter's name.
        assert_eq!(t.get("refused_tls"), Some(&0));
    }

    #[test]
    fn reads_the_ha_switch() {
        assert_eq!(parse_ha("IPsec High Availability enabled\n"), Ok(true));
        assert_eq!(parse_ha("IPsec High Availability disabled\n"), Ok(false));
        assert!(parse_ha("error: unknown command").is_err());
    }
}
