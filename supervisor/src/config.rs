//! fpsyncd's configuration: which instances and blades to run, and how.
//!
//! Files, read in this order (each optional at its default path, required
//! when named by the variable):
//! * `/etc/linux-fp-sync.env` (or `$CONF_FILE_linux_fp_sync`): `INSTANCES`
//!   (instance ids, default `1`), `BLADES` (blades to start, default every
//!   blade an instance feeds), `FPD_OPTIONS`, `FPSYNC_RUN_DIR`,
//!   `CMGR_INSTANCE_CONF` (the per-instance file, `%i` the id, default
//!   `/etc/cmgr@%i.env`), and the restart policy in systemd's terms:
//!   `RESTART_SEC`, `RESTART_MAX_DELAY_SEC`, `START_LIMIT_BURST`,
//!   `START_LIMIT_INTERVAL_SEC`, `TIMEOUT_START_SEC`, `TIMEOUT_STOP_SEC`,
//!   `QUERY_TIMEOUT_SEC` (the bound of each exchange with a child),
//!   `REPORT_INTERVAL_SEC` (how often each running child is asked for its
//!   state, counters and resources; at least 10 ms), and `METRICS_LISTEN`
//!   (a loopback `address:port` for the OpenMetrics endpoint; unset or
//!   empty: none);
//!   `FPC_TLS_CERT`, `FPC_TLS_KEY`, `FPC_TLS_CA` (all three or none: given
//!   to every fpd and cmgrd as `--tls-*`), and `BLADE_<B>_LISTEN=tcp:HOST:PORT`
//!   (blade B's fpd also serves FPC there, for cache managers on other
//!   hosts; needs the TLS files), or `BLADE_<B>_ENDPOINT=tcp:HOST:PORT`
//!   (blade B is remote: its fpd runs on another host, which this fpsyncd
//!   does not start; its instance's cmgrd and fpsyncd's own queries reach
//!   it there over mutual TLS; needs the TLS files, and not with
//!   `BLADE_<B>_LISTEN`, which is for a blade run here).
//!   `FPC_KEEPALIVE_SEC` and `FPC_PEER_TIMEOUT_SEC` (liveness of every sync
//!   session, both ways: given to every fpd and cmgrd as `--keepalive` and
//!   `--peer-timeout`; unset, the daemons' defaults, 1 s and 5 s; more than
//!   0, at most a day, and the timeout longer than the keepalive).
//! * for each instance, `/etc/cmgr.env` (or `$CONF_FILE_cmgr`), then its own
//!   file on top: `CMGR_NETNS` (default: fpsyncd's namespace),
//!   `CMGR_BLADES` (default: the blade numbered like the instance),
//!   `CMGR_OPTIONS`, `DEBUG`, `BPF_OPT`, `HA_IPSEC`, `HA`, as `cmgr.sh` reads them.
//!
//! Invariants of a loaded [`Config`]: ids are unique, every blade is fed by
//! at most one instance (an fpd has one sync owner), every blade an
//! instance feeds is started (or, remote, watched), and `CMGR_OPTIONS` does not set what fpsyncd
//! sets itself (`-I`, `--netns`, `--blade`, `-F`). Any wrong value names its
//! variable and its file and line (or the environment), quoting at most a
//! short prefix; time spans are parsed without overflow, at most a year
//! (`common::units`), and files are read up to [`MAX_FILE_SIZE`].

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

use fpc::Endpoint;

pub use common::units::{parse_duration, quoted_prefix, MAX_DURATION};

use crate::envfile::{split_words, Origin, ParseError, Vars};
use crate::policy::RestartPolicy;

pub const DEFAULT_GLOBAL_FILE: &str = "/etc/linux-fp-sync.env";
pub const DEFAULT_CMGR_FILE: &str = "/etc/cmgr.env";
pub const DEFAULT_INSTANCE_FILE: &str = "/etc/cmgr@%i.env";
pub use fpc::paths::DEFAULT_RUN_DIR;

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// `via`: the variable that named the file, as "origin: NAME: ", or "".
    #[error("{via}cannot read {}", short_path(path))]
    Read {
        via: String,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Parse(#[from] ParseError),
    #[error("{origin}: {message}")]
    Value { origin: Origin, message: String },
}

fn bad(vars: &Vars, name: &str, message: String) -> ConfigError {
    ConfigError::Value {
        origin: vars.origin(name),
        message: format!("{name}: {message}"),
    }
}

/// One cache manager instance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstanceConfig {
    pub id: u32,
    /// The network namespace (`ip netns` name); None: fpsyncd's own.
    pub netns: Option<String>,
    pub blades: Vec<u32>,
    /// cmgrd options from CMGR_OPTIONS, DEBUG, BPF_OPT, HA_IPSEC.
    pub options: Vec<String>,
    /// The files read for it, in order.
    pub files: Vec<PathBuf>,
}

/// One fast path blade: run locally (fpsyncd starts its fpd), or remote
/// (`BLADE_<B>_ENDPOINT`: only watched and fed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BladeConfig {
    pub id: u32,
    /// Where its fpd serves FPC: the Unix socket in the run directory, or
    /// a remote blade's TCP endpoint.
    pub endpoint: Endpoint,
    /// `BLADE_<B>_ENDPOINT`: the fpd runs on another host; fpsyncd does
    /// not start it.
    pub remote: bool,
    /// `BLADE_<B>_LISTEN=tcp:HOST:PORT`: also serve FPC there, over
    /// mutual TLS with `FPC_TLS_*` (for cache managers on other hosts).
    pub listen_tcp: Option<Endpoint>,
    /// The instance that feeds it.
    pub instance: Option<u32>,
}

#[derive(Debug, Clone)]
pub struct Config {
    /// Every file read, in order.
    pub files: Vec<PathBuf>,
    pub instances: Vec<InstanceConfig>,
    pub blades: Vec<BladeConfig>,
    pub run_dir: PathBuf,
    pub fpd_options: Vec<String>,
    /// `FPC_TLS_CERT`, `FPC_TLS_KEY`, `FPC_TLS_CA`: the TLS files given to
    /// every fpd and cmgrd (all three or none).
    pub tls: Option<fpc::TlsFiles>,
    /// `FPC_KEEPALIVE_SEC`, `FPC_PEER_TIMEOUT_SEC`: `--keepalive` and
    /// `--peer-timeout` of every fpd and cmgrd (None: their defaults).
    pub keepalive: Option<Duration>,
    pub peer_timeout: Option<Duration>,
    pub policy: RestartPolicy,
    pub start_timeout: Duration,
    pub stop_timeout: Duration,
    pub query_timeout: Duration,
    /// How often the collector asks each running child.
    pub report_interval: Duration,
    /// Where the metrics endpoint listens (None: off).
    pub metrics_listen: Option<std::net::SocketAddr>,
}

/// A metrics endpoint address: `IP:PORT` (`[IPv6]:PORT`) on a loopback
/// address, so that the endpoint is no way in from the network.
pub fn parse_metrics_listen(value: &str) -> Result<std::net::SocketAddr, String> {
    let addr: std::net::SocketAddr = value.parse().map_err(|_| {
        format!(
            "{} is not an address:port (such as 127.0.0.1:9469)",
            quoted_prefix(value)
        )
    })?;
    if !addr.ip().is_loopback() {
        return Err(format!(
            "{addr} is not a loopback address: the metrics endpoint listens on 127.0.0.0/8 or ::1 only"
        ));
    }
    Ok(addr)
}

/// The longest keepalive or peer timeout: what fpd and cmgrd accept.
pub const MAX_LIVENESS: Duration = Duration::from_secs(86_400);

/// The shortest report interval accepted: below it the collector would be
/// a busy loop over every child.
pub const MIN_REPORT_INTERVAL: Duration = Duration::from_millis(10);

impl Config {
    /// Loads the configuration the way `linux-fp-sync.sh` would, from the
    /// process environment.
    pub fn load() -> Result<Config, ConfigError> {
        Config::load_from(std::env::vars())
    }

    pub fn load_from<I: IntoIterator<Item = (String, String)>>(
        env: I,
    ) -> Result<Config, ConfigError> {
        let env: Vec<(String, String)> = env.into_iter().collect();
        let base = Vars::from_env(env.iter().cloned());
        let mut files = Vec::new();
        let mut global = base.clone();
        read_into(
            &mut global,
            &base,
            "CONF_FILE_linux_fp_sync",
            DEFAULT_GLOBAL_FILE,
            &mut files,
        )?;

        let ids = parse_ids(&global, "INSTANCES", "1", "an instance id")?;
        if ids.is_empty() {
            return Err(bad(&global, "INSTANCES", "no instance to run".into()));
        }
        let run_dir = PathBuf::from(
            global
                .non_empty("FPSYNC_RUN_DIR")
                .unwrap_or(DEFAULT_RUN_DIR),
        );
        let instance_pattern = global
            .non_empty("CMGR_INSTANCE_CONF")
            .unwrap_or(DEFAULT_INSTANCE_FILE)
            .to_owned();

        let mut instances = Vec::new();
        let mut owner: BTreeMap<u32, u32> = BTreeMap::new();
        for id in ids {
            let mut vars = base.clone();
            let mut ifiles = Vec::new();
            read_into(
                &mut vars,
                &base,
                "CONF_FILE_cmgr",
                DEFAULT_CMGR_FILE,
                &mut ifiles,
            )?;
            let own = instance_pattern.replace("%i", &id.to_string());
            let via = match global.non_empty("CMGR_INSTANCE_CONF") {
                Some(_) => format!(
                    "{}: CMGR_INSTANCE_CONF: ",
                    global.origin("CMGR_INSTANCE_CONF")
                ),
                None => String::new(),
            };
            read_optional(&mut vars, Path::new(&own), &via, &mut ifiles)?;
            let instance = instance_config(id, &vars, ifiles)?;
            for b in &instance.blades {
                if let Some(other) = owner.insert(*b, id) {
                    return Err(bad(
                        &vars,
                        "CMGR_BLADES",
                        format!(
                            "blade {b} is already fed by instance {other}: a fast path has one cache manager"
                        ),
                    ));
                }
            }
            for f in &instance.files {
                if !files.contains(f) {
                    files.push(f.clone());
                }
            }
            instances.push(instance);
        }

        let blade_ids: BTreeSet<u32> = match global.non_empty("BLADES") {
            Some(_) => {
                let listed: BTreeSet<u32> = parse_ids(&global, "BLADES", "", "a blade number")?
                    .into_iter()
                    .collect();
                if let Some((b, i)) = owner.iter().find(|(b, _)| !listed.contains(b)) {
                    return Err(bad(
                        &global,
                        "BLADES",
                        format!("instance {i} feeds blade {b}, which is not listed"),
                    ));
                }
                listed
            }
            None => owner.keys().copied().collect(),
        };
        let tls = tls_files(&global)?;
        let mut blades = Vec::new();
        // A blade's variable for a blade nobody runs is a mistake.
        let blade_of_var = |n: &str| -> Option<u32> {
            let id: u32 = n.trim_matches(|c: char| !c.is_ascii_digit()).parse().ok()?;
            (n == format!("BLADE_{id}_ENDPOINT") || n == format!("BLADE_{id}_LISTEN")).then_some(id)
        };
        if let Some(name) = global
            .names()
            .find(|n| blade_of_var(n).is_some_and(|b| !blade_ids.contains(&b)))
        {
            return Err(bad(
                &global,
                name,
                "names a blade no instance feeds and BLADES does not list".into(),
            ));
        }
        for id in blade_ids {
            let remote = remote_endpoint(&global, id, tls.is_some())?;
            let name = format!("BLADE_{id}_LISTEN");
            let listen_tcp = match global.non_empty(&name) {
                None => None,
                Some(v) => match v.parse::<Endpoint>() {
                    Ok(ep @ Endpoint::Tcp(_)) if tls.is_some() => Some(ep),
                    Ok(Endpoint::Tcp(_)) => {
                        return Err(bad(
                            &global,
                            &name,
                            "FPC over TCP needs FPC_TLS_CERT, FPC_TLS_KEY and FPC_TLS_CA".into(),
                        ))
                    }
                    _ => {
                        return Err(bad(
                            &global,
                            &name,
                            format!("{} is not tcp:HOST:PORT", quoted_prefix(v)),
                        ))
                    }
                },
            };
            if remote.is_some() && listen_tcp.is_some() {
                return Err(bad(
                    &global,
                    &format!("BLADE_{id}_ENDPOINT"),
                    format!("blade {id} is remote (its fpd runs on another host), so BLADE_{id}_LISTEN, which makes fpsyncd run it here, cannot go with it: give one of the two"),
                ));
            }
            blades.push(BladeConfig {
                id,
                remote: remote.is_some(),
                endpoint: remote
                    .unwrap_or_else(|| Endpoint::Unix(fpc::paths::fpd_socket(&run_dir, id))),
                listen_tcp,
                instance: owner.get(&id).copied(),
            });
        }

        let fpd_options = split_words(global.non_empty("FPD_OPTIONS").unwrap_or(""))
            .map_err(|e| bad(&global, "FPD_OPTIONS", e))?;
        if let Some(w) = fpd_options
            .iter()
            .find(|w| w.starts_with("--blade") || w.starts_with("--listen"))
        {
            return Err(bad(
                &global,
                "FPD_OPTIONS",
                format!(
                    "{} is set by fpsyncd (from BLADES and FPSYNC_RUN_DIR)",
                    quoted_prefix(w)
                ),
            ));
        }
        let dur = |name: &str, default: &str| -> Result<Duration, ConfigError> {
            parse_duration(global.non_empty(name).unwrap_or(default))
                .map_err(|e| bad(&global, name, e))
        };
        let liveness = |name: &str| -> Result<Option<Duration>, ConfigError> {
            let Some(v) = global.non_empty(name) else {
                return Ok(None);
            };
            match parse_duration(v).map_err(|e| bad(&global, name, e))? {
                d if d.is_zero() || d > MAX_LIVENESS => Err(bad(
                    &global,
                    name,
                    format!("{d:?} is not more than 0 and at most {MAX_LIVENESS:?}"),
                )),
                d => Ok(Some(d)),
            }
        };
        let keepalive = liveness("FPC_KEEPALIVE_SEC")?;
        let peer_timeout = liveness("FPC_PEER_TIMEOUT_SEC")?;
        let effective = (
            keepalive.unwrap_or(Duration::from_secs(1)),
            peer_timeout.unwrap_or(Duration::from_secs(5)),
        );
        if effective.1 <= effective.0 {
            let name = if peer_timeout.is_some() {
                "FPC_PEER_TIMEOUT_SEC"
            } else {
                "FPC_KEEPALIVE_SEC"
            };
            return Err(bad(
                &global,
                name,
                format!(
                    "the peer timeout ({:?}) must be longer than the keepalive ({:?}), or every session is taken for gone between two Keepalives",
                    effective.1, effective.0
                ),
            ));
        }
        let set_here = [
            ("FPC_KEEPALIVE_SEC", "--keepalive", keepalive.is_some()),
            (
                "FPC_PEER_TIMEOUT_SEC",
                "--peer-timeout",
                peer_timeout.is_some(),
            ),
        ];
        for (key, option, _) in set_here.into_iter().filter(|(_, _, set)| *set) {
            if fpd_options.iter().any(|w| w.starts_with(option)) {
                return Err(bad(
                    &global,
                    "FPD_OPTIONS",
                    format!("{option} is set by fpsyncd (from {key})"),
                ));
            }
            if let Some(i) = instances
                .iter()
                .find(|i| i.options.iter().any(|w| w.starts_with(option)))
            {
                return Err(ConfigError::Value {
                    origin: global.origin(key),
                    message: format!(
                        "{key}: instance {}'s CMGR_OPTIONS sets {option} too: give one",
                        i.id
                    ),
                });
            }
        }
        let count = |name: &str, default: u32| -> Result<u32, ConfigError> {
            match global.non_empty(name) {
                None => Ok(default),
                Some(v) => v.parse().map_err(|_| {
                    bad(
                        &global,
                        name,
                        format!("{} is not a count", quoted_prefix(v)),
                    )
                }),
            }
        };
        let policy = RestartPolicy {
            restart_sec: dur("RESTART_SEC", "100ms")?,
            max_delay: dur("RESTART_MAX_DELAY_SEC", "10s")?,
            burst: count("START_LIMIT_BURST", 5)?,
            interval: dur("START_LIMIT_INTERVAL_SEC", "10s")?,
        };
        Ok(Config {
            files,
            instances,
            blades,
            run_dir,
            fpd_options,
            tls,
            keepalive,
            peer_timeout,
            policy,
            start_timeout: dur("TIMEOUT_START_SEC", "30s")?,
            stop_timeout: dur("TIMEOUT_STOP_SEC", "5s")?,
            query_timeout: dur("QUERY_TIMEOUT_SEC", "1s")?,
            metrics_listen: match global.non_empty("METRICS_LISTEN") {
                None => None,
                Some(v) => {
                    Some(parse_metrics_listen(v).map_err(|e| bad(&global, "METRICS_LISTEN", e))?)
                }
            },
            report_interval: match dur("REPORT_INTERVAL_SEC", "1s")? {
                d if d < MIN_REPORT_INTERVAL => {
                    return Err(bad(
                        &global,
                        "REPORT_INTERVAL_SEC",
                        format!("{d:?} is shorter than {MIN_REPORT_INTERVAL:?}"),
                    ))
                }
                d => d,
            },
        })
    }

    pub fn instance(&self, id: u32) -> Option<&InstanceConfig> {
        self.instances.iter().find(|i| i.id == id)
    }

    pub fn blade(&self, id: u32) -> Option<&BladeConfig> {
        self.blades.iter().find(|b| b.id == id)
    }

    /// The command line of instance `i`'s cmgrd (after the program name).
    pub fn cmgrd_args(&self, i: &InstanceConfig) -> Vec<String> {
        let mut args = vec!["-F".to_owned(), "-I".into(), i.id.to_string()];
        if let Some(ns) = &i.netns {
            args.extend(["--netns".into(), ns.clone()]);
        }
        for b in &i.blades {
            let endpoint = self
                .blade(*b)
                .map(|b| b.endpoint.clone())
                .unwrap_or_else(|| Endpoint::Unix(fpc::paths::fpd_socket(&self.run_dir, *b)));
            args.extend(["--blade".into(), format!("{b}={endpoint}")]);
        }
        args.extend(self.tls_args());
        args.extend(self.liveness_args());
        args.extend(i.options.iter().cloned());
        args
    }

    /// `--keepalive`, `--peer-timeout` from `FPC_KEEPALIVE_SEC`,
    /// `FPC_PEER_TIMEOUT_SEC`, if set (in seconds, as both daemons take
    /// them).
    fn liveness_args(&self) -> Vec<String> {
        [
            ("--keepalive", self.keepalive),
            ("--peer-timeout", self.peer_timeout),
        ]
        .into_iter()
        .filter_map(|(o, d)| d.map(|d| [o.to_owned(), d.as_secs_f64().to_string()]))
        .flatten()
        .collect()
    }

    /// `--tls-cert`, `--tls-key`, `--tls-ca` from `FPC_TLS_*`, if set.
    fn tls_args(&self) -> Vec<String> {
        self.tls
            .iter()
            .flat_map(|t| {
                [
                    "--tls-cert".to_owned(),
                    t.cert.display().to_string(),
                    "--tls-key".into(),
                    t.key.display().to_string(),
                    "--tls-ca".into(),
                    t.ca.display().to_string(),
                ]
            })
            .collect()
    }

    /// The command line of blade `b`'s fpd.
    pub fn fpd_args(&self, b: &BladeConfig) -> Vec<String> {
        let mut args = vec![
            "--blade".to_owned(),
            b.id.to_string(),
            "--listen".into(),
            b.endpoint.to_string(),
        ];
        if let Some(tcp) = &b.listen_tcp {
            args.extend(["--listen".into(), tcp.to_string()]);
        }
        args.extend(self.tls_args());
        args.extend(self.liveness_args());
        args.extend(self.fpd_options.iter().cloned());
        args
    }
}

/// `BLADE_<id>_ENDPOINT`: a remote blade's `tcp:HOST:PORT`, which needs the
/// TLS files (FPC to another host is never plain).
fn remote_endpoint(vars: &Vars, id: u32, tls: bool) -> Result<Option<Endpoint>, ConfigError> {
    let name = format!("BLADE_{id}_ENDPOINT");
    let Some(v) = vars.non_empty(&name) else {
        return Ok(None);
    };
    match v.parse::<Endpoint>() {
        Ok(ep @ Endpoint::Tcp(_)) if tls => Ok(Some(ep)),
        Ok(Endpoint::Tcp(_)) => Err(bad(
            vars,
            &name,
            "a remote blade is reached over mutual TLS: set FPC_TLS_CERT, FPC_TLS_KEY and FPC_TLS_CA".into(),
        )),
        _ => Err(bad(
            vars,
            &name,
            format!(
                "{} is not tcp:HOST:PORT (HOST an IP address)",
                quoted_prefix(v)
            ),
        )),
    }
}

/// `FPC_TLS_CERT`, `FPC_TLS_KEY`, `FPC_TLS_CA`: all three or none.
fn tls_files(vars: &Vars) -> Result<Option<fpc::TlsFiles>, ConfigError> {
    const NAMES: [&str; 3] = ["FPC_TLS_CERT", "FPC_TLS_KEY", "FPC_TLS_CA"];
    let values = NAMES.map(|n| vars.non_empty(n).map(PathBuf::from));
    match values {
        [Some(cert), Some(key), Some(ca)] => Ok(Some(fpc::TlsFiles { cert, key, ca })),
        [None, None, None] => Ok(None),
        _ => {
            let missing = NAMES
                .iter()
                .zip(&values)
                .find(|(_, v)| v.is_none())
                .map_or("", |(n, _)| *n);
            let given = NAMES
                .iter()
                .zip(&values)
                .find(|(_, v)| v.is_some())
                .map_or("", |(n, _)| *n);
            Err(bad(
                vars,
                given,
                format!("{missing} is missing: the TLS files go together (FPC_TLS_CERT, FPC_TLS_KEY, FPC_TLS_CA)"),
            ))
        }
    }
}

/// The largest configuration file read: far more than any real one, and a
/// bound when a variable names /dev/zero or a huge file.
pub const MAX_FILE_SIZE: u64 = 1 << 20;

/// A file's text, at most [`MAX_FILE_SIZE`] bytes.
fn read_text(path: &Path) -> std::io::Result<String> {
    use std::io::Read;
    let mut text = String::new();
    std::fs::File::open(path)?
        .take(MAX_FILE_SIZE + 1)
        .read_to_string(&mut text)?;
    if text.len() as u64 > MAX_FILE_SIZE {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("larger than {MAX_FILE_SIZE} bytes"),
        ));
    }
    Ok(text)
}

/// A path for a message: whole when reasonably short, else a prefix.
fn short_path(path: &Path) -> String {
    let shown = path.display().to_string();
    if shown.len() <= 200 {
        shown
    } else {
        quoted_prefix(&shown)
    }
}

/// Applies the file the variable `name` of `env` names (required), or else
/// `default` (skipped when absent).
fn read_into(
    vars: &mut Vars,
    env: &Vars,
    name: &str,
    default: &str,
    files: &mut Vec<PathBuf>,
) -> Result<(), ConfigError> {
    match env.non_empty(name) {
        Some(path) => {
            let path = PathBuf::from(path);
            let text = read_text(&path).map_err(|source| ConfigError::Read {
                via: format!("{}: {name}: ", env.origin(name)),
                path: path.clone(),
                source,
            })?;
            vars.apply(&path, &text)?;
            files.push(path);
            Ok(())
        }
        None => read_optional(vars, Path::new(default), "", files),
    }
}

fn read_optional(
    vars: &mut Vars,
    path: &Path,
    via: &str,
    files: &mut Vec<PathBuf>,
) -> Result<(), ConfigError> {
    match read_text(path) {
        Ok(text) => {
            vars.apply(path, &text)?;
            files.push(path.to_owned());
            Ok(())
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(source) => Err(ConfigError::Read {
            via: via.to_owned(),
            path: path.to_owned(),
            source,
        }),
    }
}

fn parse_ids(vars: &Vars, name: &str, default: &str, what: &str) -> Result<Vec<u32>, ConfigError> {
    let text = vars.non_empty(name).unwrap_or(default);
    let mut ids = Vec::new();
    for word in text.split(|c: char| c.is_whitespace() || c == ',') {
        if word.is_empty() {
            continue;
        }
        let id: u32 = word
            .parse()
            .map_err(|_| bad(vars, name, format!("{} is not {what}", quoted_prefix(word))))?;
        if ids.contains(&id) {
            return Err(bad(vars, name, format!("{id} is listed twice")));
        }
        ids.push(id);
    }
    Ok(ids)
}

fn instance_config(
    id: u32,
    vars: &Vars,
    files: Vec<PathBuf>,
) -> Result<InstanceConfig, ConfigError> {
    let netns = match vars.non_empty("CMGR_NETNS") {
        None => None,
        Some(ns) if ns.contains('/') || ns == "." || ns == ".." || ns.len() > 255 => {
            return Err(bad(
                vars,
                "CMGR_NETNS",
                format!("{} is not a network namespace name", quoted_prefix(ns)),
            ))
        }
        Some(ns) => Some(ns.to_owned()),
    };
    let blades = parse_ids(vars, "CMGR_BLADES", &id.to_string(), "a blade number")?;
    if blades.is_empty() {
        return Err(bad(
            vars,
            "CMGR_BLADES",
            "an instance feeds at least one blade".into(),
        ));
    }
    let mut options = Vec::new();
    if let Some(d) = vars.non_empty("DEBUG") {
        options.extend(["-d".to_owned(), d.to_owned()]);
    }
    if is_true(vars, "BPF_OPT")? {
        options.push("-A".into());
    }
    // As cmgr.sh: HA_IPSEC when set, else HA (high availability as a
    // whole implies IPsec HA).
    let ipsec_ha = match vars.non_empty("HA_IPSEC") {
        Some(_) => is_true(vars, "HA_IPSEC")?,
        None => is_true(vars, "HA")?,
    };
    if ipsec_ha {
        options.push("-R".into());
    }
    let extra = split_words(vars.non_empty("CMGR_OPTIONS").unwrap_or(""))
        .map_err(|e| bad(vars, "CMGR_OPTIONS", e))?;
    for w in &extra {
        let owned = w == "-F"
            || w.starts_with("-I")
            || w.starts_with("--netns")
            || w.starts_with("--blade");
        if owned {
            return Err(bad(
                vars,
                "CMGR_OPTIONS",
                format!(
                    "{} is set by fpsyncd (from INSTANCES, CMGR_NETNS and CMGR_BLADES)",
                    quoted_prefix(w)
                ),
            ));
        }
    }
    options.extend(extra);
    Ok(InstanceConfig {
        id,
        netns,
        blades,
        options,
        files,
    })
}

fn is_true(vars: &Vars, name: &str) -> Result<bool, ConfigError> {
    match vars.non_empty(name) {
        None => Ok(false),
        Some("true" | "yes" | "1" | "on") => Ok(true),
        Some("false" | "no" | "0" | "off") => Ok(false),
        Some(v) => Err(bad(
            vars,
            name,
            format!("{} is not true or false", quoted_prefix(v)),
        )),
    }
}

#[cfg(test)]
mod tests;
