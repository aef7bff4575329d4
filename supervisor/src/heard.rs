//! What a watcher heard of one run of a child (`Heard`: its figures, when,
//! its last error) and the parts of the answers rendered from it once per
//! round (`Fragments`), shared by the collector that writes them, the
//! reports that assemble them and the metrics. It depends on no module
//! that uses it.
//!
//! Invariants: a fragment leaves zero counters out (absent means 0), but
//! for the blade table sizes `Status()` shows; rendering does no I/O.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Map, Value};

use crate::probe::SyncInfo;

/// A blade's counters that are sizes of its tables (one family, `table`).
pub const BLADE_TABLES: [&str; 23] = [
    "links",
    "addresses",
    "routes4",
    "routes6",
    "nexthops",
    "neighbours",
    "bridge_ports",
    "fdb",
    "ipsec_sas",
    "ipsec_sps",
    "ipsec_replays",
    "conntracks",
    "nft_tables",
    "nft_chains",
    "nft_rules",
    "mroutes",
    "mroute_vifs",
    "capture_filters",
    "xt_chains",
    "xt_rules",
    "netconfs",
    "rules",
    "route_attrs",
];

/// The blade tables `Status()` shows the sizes of (the first of those
/// the metrics export).
pub(crate) const TABLES: &[&str] = BLADE_TABLES.split_at(6).0;

/// What a child said last.
#[derive(Debug, Clone)]
pub enum Data {
    Instance {
        sync: SyncInfo,
        /// `show stats --json` (each blade's ports), or why not.
        stats: Result<Value, String>,
        /// `show netlink --json` (each socket's messages), or why not.
        netlink: Result<Value, String>,
    },
    Blade {
        counters: Vec<(String, u64)>,
    },
}

/// What the collector heard from one run of one child.
#[derive(Debug, Clone)]
pub struct Heard {
    pub run: u64,
    /// Since when it is watched.
    pub since: Instant,
    /// When `data` was read.
    pub at: Option<Instant>,
    /// Why the last round failed (cleared by a good one).
    pub error: Option<String>,
    /// Shared, so that swapping an entry in copies no figures.
    pub data: Option<Arc<Data>>,
    /// `data`'s parts of the answers, rendered when it came.
    pub fragments: Arc<Fragments>,
}

impl Heard {
    /// How old its figures are.
    pub fn age(&self, now: Instant) -> Option<Duration> {
        self.at.map(|t| now.saturating_duration_since(t))
    }

    /// Why it is stale (see the module's invariants), if it is.
    pub fn stale(&self, now: Instant, interval: Duration) -> Option<String> {
        let limit = interval * 2;
        let silent = now.saturating_duration_since(self.at.unwrap_or(self.since));
        if silent <= limit {
            return None;
        }
        Some(match &self.error {
            Some(e) => e.clone(),
            None => format!("no report for {} ms", silent.as_millis()),
        })
    }
}

/// The parts of a child's answers that change only when it reports,
/// rendered once per round by its watcher (not per call): JSON object
/// members without their braces, or empty.
#[derive(Debug, Clone, Default)]
pub struct Fragments {
    /// `Status()`: an instance's overruns, resyncs, reconciles and silent
    /// deletions (when not 0), a blade's table sizes.
    pub status: String,
    /// `Statistics()`: a blade's counters; an instance's sync counters
    /// (its state among them), queues, ports and netlink sockets; zeros
    /// left out.
    pub statistics: String,
}

/// `{"a":1,"b":2}` -> `"a":1,"b":2`.
pub(crate) fn members(object: &Map<String, Value>) -> String {
    let text = Value::Object(object.clone()).to_string();
    text[1..text.len() - 1].to_owned()
}

/// `v` without its zero counters: members that are 0 or false, and
/// objects left empty by that, are left out at every depth (absent means
/// 0); array elements are kept (pruned).
pub fn pruned(v: &Value) -> Value {
    match v {
        Value::Object(m) => Value::Object(
            m.iter()
                .map(|(k, x)| (k.clone(), pruned(x)))
                .filter(|(_, x)| !is_zero(x))
                .collect(),
        ),
        Value::Array(a) => Value::Array(a.iter().map(pruned).collect()),
        x => x.clone(),
    }
}

pub(crate) fn is_zero(v: &Value) -> bool {
    match v {
        Value::Number(n) => n.as_u64() == Some(0) || n.as_f64() == Some(0.0),
        Value::Bool(b) => !b,
        Value::Object(m) => m.is_empty(),
        _ => false,
    }
}

/// An instance's netlink sockets, pruned: a socket that carried no
/// message (only its name left) is left out.
pub(crate) fn netlink_sockets(n: &Value) -> Value {
    match pruned(n) {
        Value::Array(a) => Value::Array(
            a.into_iter()
                .filter(|s| s.as_object().is_none_or(|o| o.len() > 1))
                .collect(),
        ),
        other => other,
    }
}

/// What `data` adds to each answer.
pub fn fragments(data: &Data) -> Fragments {
    let mut status = Map::new();
    let mut statistics = Map::new();
    match data {
        Data::Instance {
            sync,
            stats,
            netlink,
        } => {
            // What went wrong, if anything; the cache's sizes and the
            // generation are `Statistics()`' (`sync`).
            for k in ["overruns", "resyncs", "reconciles", "silent_deletions"] {
                if let Some(x) = sync.sync.get(k).filter(|x| !is_zero(x)) {
                    status.insert(k.into(), x.clone());
                }
            }
            // `sync.state` is the sync state; each queue's blade endpoint
            // is the blade's own (`Status()`).
            statistics.insert("sync".into(), pruned(&sync.sync));
            let mut queue = sync.queue.clone();
            for b in queue.as_array_mut().into_iter().flatten() {
                b.as_object_mut().map(|b| b.remove("endpoint"));
            }
            statistics.insert("queue".into(), pruned(&queue));
            match stats {
                Ok(s) => statistics.insert("interfaces".into(), pruned(&s["blades"])),
                Err(e) => statistics.insert("interfaces_error".into(), json!(e)),
            };
            match netlink {
                Ok(n) => statistics.insert("netlink".into(), netlink_sockets(n)),
                Err(e) => statistics.insert("netlink_error".into(), json!(e)),
            };
        }
        Data::Blade { counters } => {
            let get = |k: &str| counters.iter().find(|(n, _)| n == k).map(|(_, x)| *x);
            let tables: Map<String, Value> = TABLES
                .iter()
                .filter_map(|k| get(k).map(|x| ((*k).to_owned(), json!(x))))
                .collect();
            // The rest (generation, sync_connected, ...) is
            // `Statistics()`'.
            status.insert("tables".into(), Value::Object(tables));
            for (k, v) in counters.iter().filter(|(_, v)| *v != 0) {
                statistics.insert(k.clone(), json!(v));
            }
        }
    }
    Fragments {
        status: members(&status),
        statistics: members(&statistics),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zeros_are_left_out_at_every_depth_and_sockets_without_messages() {
        let v = json!({
            "state": "synced", "overruns": 0, "resyncs": 2, "backup": false,
            "in_sync": true, "cache": {"route": 5, "fdb": 0}, "hit_flags": {"a": 0},
            "list": [{"n": 0}, {"n": 1}],
        });
        assert_eq!(
            pruned(&v),
            json!({"state": "synced", "resyncs": 2, "in_sync": true,
                   "cache": {"route": 5}, "list": [{}, {"n": 1}]})
        );
        let sockets = json!([
            {"name": "listen", "packets": 0, "by_type": {}},
            {"name": "cmd", "packets": 3, "by_type": {"24": 3, "16": 0}},
        ]);
        assert_eq!(
            netlink_sockets(&sockets),
            json!([{"name": "cmd", "packets": 3, "by_type": {"24": 3}}])
        );
    }

    #[test]
    fn a_blade_fragment_leaves_zeros_out_but_status_keeps_its_tables() {
        let counters = vec![
            ("routes4".to_owned(), 7),
            ("routes6".to_owned(), 0),
            ("refused_tls".to_owned(), 0),
            ("sync_connected".to_owned(), 1),
        ];
        let f = fragments(&Data::Blade { counters });
        let stats: Value = serde_json::from_str(&format!("{{{}}}", f.statistics)).unwrap();
        assert_eq!(stats, json!({"routes4": 7, "sync_connected": 1}));
        let status: Value = serde_json::from_str(&format!("{{{}}}", f.status)).unwrap();
        assert_eq!(status["tables"]["routes6"], 0, "{status}");
        assert_eq!(status["tables"]["routes4"], 7, "{status}");
        // The other counters are Statistics()' alone.
        assert_eq!(status.as_object().unwrap().len(), 1, "{status}");
    }
}
