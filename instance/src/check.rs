//! The equivalence check: Linux's state in a namespace against a fast
//! path's tables. Every difference is one line; none means in sync.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use fpc::{Endpoint, Object, ObjectKey, QueryClient, TransportError};

use crate::cache::Scope;
use crate::features::Features;
use crate::netlink::{CmdSockets, SocketError};
use crate::stats::{SocketStats, SyncStats};

#[derive(Debug, thiserror::Error)]
pub enum CheckError {
    #[error("cannot enter the network namespace")]
    Netns(#[source] std::io::Error),
    #[error("cannot open a netlink socket")]
    Socket(#[source] std::io::Error),
    #[error("dumping Linux failed")]
    Dump(#[from] SocketError),
    #[error("reading the fast path at {endpoint} failed")]
    FastPath {
        endpoint: Endpoint,
        #[source]
        source: TransportError,
    },
}

/// Everything cmgrd would sync from the namespace `netns` (the current
/// one when None) with `features`. Runs on its own thread, which enters
/// the namespace.
pub fn linux_objects(netns: Option<&str>, features: &Features) -> Result<Vec<Object>, CheckError> {
    let netns = netns.map(str::to_owned);
    let features = *features;
    std::thread::spawn(move || {
        if let Some(ns) = &netns {
            crate::netns::enter(ns).map_err(CheckError::Netns)?;
        }
        let mut socks = CmdSockets::open().map_err(CheckError::Socket)?;
        let (mut stats, mut sync) = (SocketStats::default(), SyncStats::default());
        let (mut xfrm_stats, mut ct_stats) = (SocketStats::default(), SocketStats::default());
        let mut out = Vec::new();
        for scope in Scope::ALL {
            out.extend(crate::linux::dump_scope(
                &mut socks,
                scope,
                &features,
                &mut stats,
                &mut xfrm_stats,
                &mut ct_stats,
                &mut sync,
            )?);
        }
        Ok(out)
    })
    .join()
    .expect("the dump thread does not panic")
}

pub fn fastpath_objects(endpoint: &Endpoint) -> Result<Vec<Object>, CheckError> {
    let err = |source| CheckError::FastPath {
        endpoint: endpoint.clone(),
        source,
    };
    let mut client =
        QueryClient::connect(endpoint, "fpsync-check", Duration::from_secs(10)).map_err(err)?;
    client.dump().map_err(err)
}

/// The differences between two sets of objects, one line each, in key order.
pub fn diff(linux: Vec<Object>, fastpath: Vec<Object>) -> Vec<String> {
    let mut out = Vec::new();
    // Two objects under one key would hide each other: say so.
    let mut index = |v: Vec<Object>, side: &str| -> BTreeMap<ObjectKey, Object> {
        let mut map = BTreeMap::new();
        for o in v {
            if let Some(old) = map.insert(o.key(), o) {
                out.push(format!("two objects with one key in {side}: {old}"));
            }
        }
        map
    };
    let (linux, mut fp) = (index(linux, "linux"), index(fastpath, "fast path"));
    for (key, l) in linux {
        match fp.remove(&key) {
            None => out.push(format!("missing in fast path: {l}")),
            Some(f) if f != l => out.push(format!("differs: linux {l} / fast path {f}")),
            Some(_) => {}
        }
    }
    out.extend(fp.into_values().map(|f| format!("stale in fast path: {f}")));
    out
}

/// One comparison, of what cmgrd with `features` would sync.
pub fn check(
    netns: Option<&str>,
    endpoint: &Endpoint,
    features: &Features,
) -> Result<Vec<String>, CheckError> {
    // IPsec sequence numbers change with every packet, without a
    // notification, and reach only blades with IPsec HA on: not compared.
    let unstable = |o: &Object| matches!(o, Object::XfrmReplay(_));
    let mut linux = linux_objects(netns, features)?;
    let mut fp = fastpath_objects(endpoint)?;
    linux.retain(|o| !unstable(o));
    fp.retain(|o| !unstable(o));
    // A conntrack timeout counts down in Linux without events (and
    // Linux's own packets push it back silently): the fast path holds the
    // value last announced, which a fresh dump cannot confirm.
    for o in linux.iter_mut().chain(fp.iter_mut()) {
        if let Object::Conntrack(ct) = o {
            ct.timeout = 0;
        }
    }
    Ok(diff(linux, fp))
}

/// Compares until there is no difference or `wait` has passed; the last
/// differences found. Changes in flight settle within milliseconds, so a
/// difference that outlives `wait` is real.
pub fn check_until(
    netns: Option<&str>,
    endpoint: &Endpoint,
    features: &Features,
    wait: Duration,
) -> Result<Vec<String>, CheckError> {
    let deadline = Instant::now() + wait;
    loop {
        let res = check(netns, endpoint, features);
        match &res {
            Ok(d) if d.is_empty() => return res,
            _ if Instant::now() >= deadline => return res,
            _ => std::thread::sleep(Duration::from_millis(20)),
        }
    }
}
