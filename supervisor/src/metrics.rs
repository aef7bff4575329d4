//! Every counter fpsync has, in the OpenMetrics text format (which
//! Prometheus scrapes), built from memory like `Statistics()` and from the
//! same inputs: the supervisor's state, each child's lifecycle, restarts,
//! resources and report age, each instance's sync counters, cache sizes,
//! hit flags, queues (per blade) and netlink sockets (per socket and
//! message type), each interface's fast path and Linux counters, and each
//! blade's fpd counters.
//!
//! Names follow Prometheus exporters' conventions: prefix `fpsync_`, the
//! unit in the name (`_bytes`, `_seconds`), counters end in `_total`
//! (the encoder adds it), an enumeration is a gauge per value with a
//! `state` label set to 1 for the current one. Identifiers (`generation`)
//! are not metrics. Labels: `instance`, `blade`, `interface`, `ifindex`,
//! `socket`, `type`, `table`, `kind`, `state`.
//!
//! Encoding is `prometheus-client`'s; a registry is built per scrape from
//! the snapshot (the figures come from the children, not from counters
//! this process increments).

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use serde_json::Value;
use std::collections::BTreeMap;
use std::sync::atomic::AtomicU64;

use crate::heard::Data;
use crate::report::Inputs;

/// The content type of [`render`]'s text.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

type Labels = Vec<(String, String)>;
/// Families of one metric type by name, each with its help.
type ByName<M> = BTreeMap<String, (String, Family<Labels, M>)>;

/// A blade's counters that are levels, not counts.
const BLADE_GAUGES: [&str; 7] = [
    "sync_connected",
    "connections",
    "max_connections",
    "dataplane_ports",
    "dataplane_workers",
    "dataplane_neighbours",
    "dataplane_conntracks",
];

/// Queue figures that are levels (the rest count). `acked` is the last
/// sequence number acknowledged.
const QUEUE_GAUGES: [&str; 6] = [
    "in_queue",
    "in_queue_bytes",
    "highest_in_queue",
    "acked",
    "connected",
    "in_sync",
];

/// Figures that identify rather than measure.
const IDENTIFIERS: [&str; 1] = ["generation"];

const ACTIVE_STATES: [&str; 5] = ["inactive", "activating", "active", "deactivating", "failed"];
const SYNC_STATES: [&str; 4] = ["initial-dump", "synced", "resyncing", "unknown"];
const SUPERVISOR_STATES: [&str; 5] = ["starting", "running", "syncing", "degraded", "stopping"];

/// What a blade counter named `name` becomes.
#[derive(Debug, PartialEq, Eq)]
pub enum BladeMetric {
    /// `fpsync_blade_table_entries{table=name}`
    Table,
    /// `fpsync_blade_<name>`
    Gauge,
    /// `fpsync_blade_<name>_total`
    Counter,
    /// Not exported.
    Identifier,
}

pub fn blade_metric(name: &str) -> BladeMetric {
    if IDENTIFIERS.contains(&name) {
        BladeMetric::Identifier
    } else if crate::heard::BLADE_TABLES.contains(&name) {
        BladeMetric::Table
    } else if BLADE_GAUGES.contains(&name) {
        BladeMetric::Gauge
    } else {
        BladeMetric::Counter
    }
}

/// A metric name part from a figure's name: `[a-z0-9_]`, anything else `_`.
fn sanitize(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '_'
            }
        })
        .collect()
}

fn labels(pairs: &[(&str, String)]) -> Labels {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), v.clone()))
        .collect()
}

/// The families of one scrape, by name, registered at the end.
#[derive(Default)]
struct Families {
    counters: ByName<Counter>,
    float_counters: ByName<Counter<f64, AtomicU64>>,
    gauges: ByName<Gauge>,
    float_gauges: ByName<Gauge<f64, AtomicU64>>,
}

impl Families {
    fn counter(&mut self, name: &str, help: &str, l: Labels, v: u64) {
        let (_, f) = self
            .counters
            .entry(name.to_owned())
            .or_insert_with(|| (help.to_owned(), Family::default()));
        f.get_or_create(&l).inc_by(v);
    }

    fn seconds_counter(&mut self, name: &str, help: &str, l: Labels, v: f64) {
        let (_, f) = self
            .float_counters
            .entry(name.to_owned())
            .or_insert_with(|| (help.to_owned(), Family::default()));
        f.get_or_create(&l).inc_by(v);
    }

    fn gauge(&mut self, name: &str, help: &str, l: Labels, v: u64) {
        let (_, f) = self
            .gauges
            .entry(name.to_owned())
            .or_insert_with(|| (help.to_owned(), Family::default()));
        f.get_or_create(&l)
            .set(i64::try_from(v).unwrap_or(i64::MAX));
    }

    fn float_gauge(&mut self, name: &str, help: &str, l: Labels, v: f64) {
        let (_, f) = self
            .float_gauges
            .entry(name.to_owned())
            .or_insert_with(|| (help.to_owned(), Family::default()));
        f.get_or_create(&l).set(v);
    }

    /// One gauge per state, 1 for `current`.
    fn state(&mut self, name: &str, help: &str, l: &Labels, all: &[&str], current: &str) {
        for s in all {
            let mut l = l.clone();
            l.push(("state".into(), (*s).to_owned()));
            self.gauge(name, help, l, u64::from(*s == current));
        }
    }

    /// Every number in `object` as a counter `<prefix>_<key>_total`, except
    /// `gauges` (levels, booleans as 0/1) and identifiers.
    fn object(&mut self, prefix: &str, help: &str, l: &Labels, object: &Value, gauges: &[&str]) {
        for (k, v) in object.as_object().into_iter().flatten() {
            if IDENTIFIERS.contains(&k.as_str()) {
                continue;
            }
            let n = match v {
                Value::Bool(b) => u64::from(*b),
                v => match v.as_u64() {
                    Some(n) => n,
                    None => continue,
                },
            };
            let name = format!("{prefix}_{}", sanitize(k));
            if gauges.contains(&k.as_str()) || v.is_boolean() {
                self.gauge(&name, help, l.clone(), n);
            } else {
                self.counter(&name, help, l.clone(), n);
            }
        }
    }

    fn encode(self) -> String {
        let mut registry = Registry::with_prefix("fpsync");
        for (name, (help, f)) in self.counters {
            registry.register(name, help, f);
        }
        for (name, (help, f)) in self.float_counters {
            registry.register(name, help, f);
        }
        for (name, (help, f)) in self.gauges {
            registry.register(name, help, f);
        }
        for (name, (help, f)) in self.float_gauges {
            registry.register(name, help, f);
        }
        let mut out = String::new();
        // Writing to a String cannot fail.
        let _ = encode(&mut out, &registry);
        out
    }
}

/// The OpenMetrics text of everything in `inputs`; `state` is the
/// supervisor's.
pub fn render(state: &str, inputs: &Inputs) -> String {
    let mut m = Families::default();
    m.state(
        "supervisor_state",
        "The supervisor's state (1 for the current one).",
        &Vec::new(),
        &SUPERVISOR_STATES,
        state,
    );
    m.float_gauge(
        "supervisor_report_interval_seconds",
        "How often each running child is asked for its figures.",
        Vec::new(),
        inputs.interval.as_secs_f64(),
    );
    for v in inputs.views {
        let kind = v.kind;
        let id = labels(&[(kind, v.id.to_string())]);
        m.counter(
            &format!("{kind}_restarts"),
            "Automatic restarts (systemd's NRestarts).",
            id.clone(),
            u64::from(v.n_restarts),
        );
        m.state(
            &format!("{kind}_active_state"),
            "systemd's ActiveState of the child (1 for the current one).",
            &id,
            &ACTIVE_STATES,
            v.active_state,
        );
        if let Some(r) = v.unit.and_then(|u| inputs.resources.get(&u)) {
            m.gauge(
                &format!("{kind}_memory_bytes"),
                "Resident memory (systemd's MemoryCurrent).",
                id.clone(),
                r.memory_current,
            );
            m.seconds_counter(
                &format!("{kind}_cpu_seconds"),
                "CPU time used, user and system (systemd's CPUUsageNSec).",
                id.clone(),
                r.cpu_usage_nsec as f64 / 1e9,
            );
            m.gauge(
                &format!("{kind}_tasks"),
                "Threads (systemd's TasksCurrent).",
                id.clone(),
                r.tasks_current,
            );
        }
        let Some(h) = inputs.heard(v) else {
            if kind == "instance" {
                m.state(
                    "instance_sync_state",
                    "The instance's SyncState (1 for the current one).",
                    &id,
                    &SYNC_STATES,
                    "unknown",
                );
            }
            continue;
        };
        m.gauge(
            &format!("{kind}_stale"),
            "1 when the child has not reported for twice the report interval.",
            id.clone(),
            u64::from(h.stale(inputs.now, inputs.interval).is_some()),
        );
        if let Some(age) = h.age(inputs.now) {
            m.float_gauge(
                &format!("{kind}_report_age_seconds"),
                "How old the child's figures are.",
                id.clone(),
                age.as_secs_f64(),
            );
        }
        match h.data.as_deref() {
            Some(Data::Blade { counters }) => {
                for (k, n) in counters {
                    let name = format!("blade_{}", sanitize(k));
                    match blade_metric(k) {
                        BladeMetric::Table => {
                            let mut l = id.clone();
                            l.push(("table".into(), k.clone()));
                            m.gauge(
                                "blade_table_entries",
                                "Entries in a fast path table.",
                                l,
                                *n,
                            )
                        }
                        BladeMetric::Gauge => {
                            m.gauge(&name, "A level fpd reports.", id.clone(), *n)
                        }
                        BladeMetric::Counter => {
                            m.counter(&name, "A count fpd reports.", id.clone(), *n)
                        }
                        BladeMetric::Identifier => {}
                    }
                }
            }
            Some(Data::Instance {
                sync,
                stats,
                netlink,
            }) => {
                m.state(
                    "instance_sync_state",
                    "The instance's SyncState (1 for the current one).",
                    &id,
                    &SYNC_STATES,
                    sync.sync_state(),
                );
                m.object(
                    "instance",
                    "A count cmgrd reports (show sync).",
                    &id,
                    &sync.sync,
                    &[],
                );
                m.object(
                    "instance_hit_flags",
                    "Hit-flag work of cmgrd (show sync).",
                    &id,
                    &sync.sync["hit_flags"],
                    &[],
                );
                for (k, n) in sync.sync["cache"].as_object().into_iter().flatten() {
                    let mut l = id.clone();
                    l.push(("kind".into(), k.clone()));
                    if let Some(n) = n.as_u64() {
                        m.gauge("instance_cache_objects", "Objects in cmgrd's cache.", l, n);
                    }
                }
                for b in sync.queue.as_array().into_iter().flatten() {
                    let mut l = id.clone();
                    l.push(("blade".into(), b["blade"].to_string()));
                    m.object(
                        "instance_queue",
                        "cmgrd's queue to one blade (show queue).",
                        &l,
                        &b["queue"],
                        &QUEUE_GAUGES,
                    );
                }
                for s in netlink
                    .as_ref()
                    .ok()
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                {
                    let socket = s["name"].as_str().unwrap_or("").to_owned();
                    let mut l = id.clone();
                    l.push(("socket".into(), socket));
                    if let Some(n) = s["packets"].as_u64() {
                        m.counter(
                            "instance_netlink_messages",
                            "Netlink messages a socket of cmgrd received (show netlink).",
                            l.clone(),
                            n,
                        );
                    }
                    for (t, n) in s["by_type"].as_object().into_iter().flatten() {
                        let mut l = l.clone();
                        l.push(("type".into(), t.clone()));
                        if let Some(n) = n.as_u64() {
                            m.counter(
                                "instance_netlink_messages_by_type",
                                "Netlink messages of one type a socket of cmgrd received.",
                                l,
                                n,
                            );
                        }
                    }
                }
                let ports = stats.as_ref().ok().map(|s| &s["blades"]);
                for (blade, list) in ports.and_then(Value::as_object).into_iter().flatten() {
                    for i in list.as_array().into_iter().flatten() {
                        let mut l = id.clone();
                        l.push(("blade".into(), blade.clone()));
                        l.push(("interface".into(), i["name"].as_str().unwrap_or("").into()));
                        l.push(("ifindex".into(), i["ifindex"].to_string()));
                        m.object(
                            "interface_fastpath",
                            "A port's counter in the fast path (show stats).",
                            &l,
                            &i["fastpath"],
                            &[],
                        );
                        m.object(
                            "interface_linux",
                            "The same port's counter in Linux (show stats).",
                            &l,
                            &i["linux"],
                            &[],
                        );
                    }
                }
            }
            None => {}
        }
    }
    m.encode()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blade_counters_are_classified() {
        assert_eq!(blade_metric("routes4"), BladeMetric::Table);
        assert_eq!(blade_metric("connections"), BladeMetric::Gauge);
        assert_eq!(blade_metric("bad_frames"), BladeMetric::Counter);
        assert_eq!(blade_metric("generation"), BladeMetric::Identifier);
        assert_eq!(sanitize("ipsec sa"), "ipsec_sa");
    }
}
