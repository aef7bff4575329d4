//! cmgrd's command line: the seed's options, short and long, plus the
//! namespace and blades of this instance.
//!
//! Sizes take K, M or G; masks are hexadecimal (0x...) or decimal. A bad
//! value is reported by clap with the option's name, exit status 2.

use std::path::PathBuf;

use clap::{Arg, ArgAction, ArgMatches, Command};
use fpc::Endpoint;

use crate::features::{self, Features, FEATURES};

/// Everything the command line sets.
#[derive(Debug, Clone, PartialEq)]
pub struct Options {
    pub instance: Option<u32>,
    pub netns: Option<String>,
    pub blades: Vec<(u32, Endpoint)>,
    pub features: Features,
    /// `-A`: sync capture filters of every process, not only the listed tools.
    pub bpf_all: bool,
    /// `-R`: sync IPsec SA sequence numbers (IPsec HA) from the start.
    pub ipsec_replay: bool,
    /// `-d`: 0 logs at info; bit 0x1 adds debug, 0x2 adds trace.
    pub debug: u32,
    pub foreground: bool,
    /// `-b`: the FPC sockets' send buffer.
    pub socket_buffer: usize,
    /// `-l`: the netlink listener's receive buffer.
    pub netlink_buffer: usize,
    pub max_queue: usize,
    /// How often links and bridge ports are re-dumped (changes the kernel
    /// makes silently); None: never.
    pub link_poll: Option<std::time::Duration>,
    pub pid_file: PathBuf,
    /// `--tls-cert`, `--tls-key`, `--tls-ca`: this cache manager's identity
    /// towards TCP blades (mutual TLS); `--allow-plain-tcp`: plain TCP to
    /// loopback blades, for testing.
    pub tls: fpc::TlsOptions,
    /// `--election-id`: this cache manager's election id towards its
    /// blades (the highest of a blade's sync sessions is its primary).
    pub election_id: u64,
    /// `--keepalive`: how often each blade is sent a Keepalive.
    pub keepalive: std::time::Duration,
    /// `--peer-timeout`: a blade silent this long (no frame, not even its
    /// Keepalive) is taken for gone, reconnected and resynced. It bounds
    /// the blade's keepalive (fpd's `--keepalive`), not ours.
    pub peer_timeout: std::time::Duration,
}

/// Parses `64M`, `2K`, `1G` or a plain number of bytes (1 to 2G).
pub fn parse_size(s: &str) -> Result<usize, String> {
    common::units::parse_size(s, 1 << 31).map(|n| n as usize)
}

/// The longest `--link-poll` period: a day (longer is as good as never,
/// which is 0).
pub const MAX_LINK_POLL_MS: u64 = 24 * 3600 * 1000;

/// Parses `--link-poll`'s milliseconds, 0 to a day.
pub fn parse_link_poll(s: &str) -> Result<u64, String> {
    s.parse::<u64>()
        .ok()
        .filter(|ms| *ms <= MAX_LINK_POLL_MS)
        .ok_or_else(|| {
            format!(
                "bad period {}: expected milliseconds, 0 (never) to {MAX_LINK_POLL_MS}",
                common::units::quoted_prefix(s)
            )
        })
}

/// Parses `B` or `B=ENDPOINT`.
pub fn parse_blade(s: &str) -> Result<(u32, Endpoint), String> {
    let (id, ep) = match s.split_once('=') {
        Some((id, ep)) => (id, Some(ep)),
        None => (s, None),
    };
    let id: u32 = id
        .parse()
        .map_err(|_| format!("bad blade {s:?}: expected a number, optionally =ENDPOINT"))?;
    let ep = match ep {
        Some(ep) => ep.parse().map_err(|e| format!("bad blade {s:?}: {e}"))?,
        None => Endpoint::for_blade(id),
    };
    Ok((id, ep))
}

fn parse_debug(s: &str) -> Result<u32, String> {
    let parsed = match s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        Some(hex) => u32::from_str_radix(hex, 16),
        None => s.parse(),
    };
    parsed.map_err(|_| {
        format!("bad debug mask {s:?}: expected a hexadecimal (0x...) or decimal number")
    })
}

/// The clap command, with one `--disable-sync-<feature>` per seed feature.
pub fn command() -> Command {
    let mut cmd = Command::new("cmgrd")
        .version(env!("CARGO_PKG_VERSION"))
        .about("Cache manager: mirrors Linux networking into fast paths over the FPC API")
        .arg(Arg::new("instance").short('I').value_name("val").value_parser(clap::value_parser!(u32))
            .help("Instance id: logs as cmgrd<val>, console at /tmp/.cmgrd<val>"))
        .arg(Arg::new("netns").long("netns").value_name("NAME")
            .help("Network namespace to listen in (as `ip netns` names it)"))
        .arg(Arg::new("blade").long("blade").value_name("B[=ENDPOINT]").action(ArgAction::Append)
            .value_parser(parse_blade)
            .help("Blade to sync, at unix:PATH or tcp:HOST:PORT (default /run/fpsync/fpd<B>.sock); repeatable; default blade 1. TCP endpoints are dialled from inside --netns (127.0.0.1 is that namespace's loopback)"))
        .arg(Arg::new("sync-mask").short('S').long("sync-mask").value_name("mask")
            .value_parser(features::parse_mask)
            .help("Features to synchronize, as the seed's flag mask (default 0x1ffff: all; without 0x4000, tap pattern only, BPF syncs any application's filters)"))
        .arg(Arg::new("sync-bpf-all").short('A').long("sync-bpf-all").action(ArgAction::SetTrue)
            .help("BPF (tap): sync the capture filters of any application, not only tcpdump, ethereal, wireshark, tshark, nmap"))
        .arg(Arg::new("sync-ipsec-replay").short('R').long("sync-ipsec-replay").action(ArgAction::SetTrue)
            .help("IPsec: sync SA input and output sequence numbers (IPsec HA); also `daemonctl cmgrd ipsec ha enable`"))
        .arg(Arg::new("debug").short('d').value_name("mask").value_parser(parse_debug)
            .help("Debug mask: 0x1 debug logs, 0x2 trace logs"))
        .arg(Arg::new("foreground").short('F').action(ArgAction::SetTrue)
            .help("Foreground (without it, cmgrd daemonizes once ready and writes its pid file)"))
        .arg(Arg::new("socket-buffer").short('b').value_name("val").default_value("2M")
            .value_parser(common::units::Checked(parse_size)).help("FPC socket buffer size"))
        .arg(Arg::new("netlink-buffer").short('l').value_name("val").default_value("64M")
            .value_parser(common::units::Checked(parse_size)).help("Netlink socket buffer size (set with SO_RCVBUFFORCE)"))
        .arg(Arg::new("max-queue").long("max-queue").value_name("SIZE").default_value("256M")
            .value_parser(common::units::Checked(parse_size))
            .help("Largest outgoing queue per blade; a blade past it gets a full resync once drained"))
        .arg(Arg::new("link-poll").long("link-poll").value_name("MS").default_value("500")
            .value_parser(common::units::Checked(parse_link_poll))
            .help("Re-dump links and bridge ports every MS milliseconds, for the changes the kernel does not announce (0: never)"))
        .arg(Arg::new("pid-file").long("pid-file").value_name("PATH")
            .value_parser(clap::value_parser!(PathBuf))
            .help("Pid file when daemonized (default /run/fpsync/cmgrd<val>.pid)"))
        .arg(Arg::new("election-id").long("election-id").value_name("N").default_value("0")
            .value_parser(clap::value_parser!(u64))
            .help("Election id towards the blades: of the cache managers syncing a blade, the highest id is the primary (its writes applied), the others are backups that take over when it goes; unique per blade"))
        .arg(Arg::new("keepalive").long("keepalive").value_name("SECONDS").default_value("1")
            .value_parser(common::units::Checked(common::units::parse_timeout))
            .help("Seconds between the Keepalives sent to each blade (fractions allowed; at most 86400)"))
        .arg(Arg::new("peer-timeout").long("peer-timeout").value_name("SECONDS").default_value("5")
            .value_parser(common::units::Checked(common::units::parse_timeout))
            .help("Seconds a blade may stay silent (its Keepalives included, sent every fpd --keepalive) before it is taken for gone, reconnected and resynced"))
        .arg(Arg::new("compile-options").short('o').action(ArgAction::SetTrue)
            .help("Display compilation options and exit"));
    for f in FEATURES.iter() {
        if let Some(flag) = f.flag {
            cmd = cmd.arg(
                Arg::new(format!("disable-sync-{flag}"))
                    .long(format!("disable-sync-{flag}"))
                    .action(ArgAction::SetTrue)
                    .help(format!("Disable the synchronization of {}", f.what)),
            );
        }
    }
    <fpc::TlsOptions as clap::Args>::augment_args(cmd)
}

impl Options {
    pub fn from_matches(m: &ArgMatches) -> Options {
        let instance = m.get_one::<u32>("instance").copied();
        let mut mask = m
            .get_one::<u32>("sync-mask")
            .copied()
            .unwrap_or(Features::default().mask);
        for f in FEATURES.iter() {
            if let Some(flag) = f.flag {
                if m.get_flag(&format!("disable-sync-{flag}")) {
                    mask &= !features::disable_bits(flag).unwrap_or(f.bit);
                }
            }
        }
        let blades: Vec<(u32, Endpoint)> = m
            .get_many::<(u32, Endpoint)>("blade")
            .map(|b| b.cloned().collect())
            .unwrap_or_default();
        let pid_file = m
            .get_one::<PathBuf>("pid-file")
            .cloned()
            .unwrap_or_else(|| {
                PathBuf::from(format!(
                    "/run/fpsync/cmgrd{}.pid",
                    instance.map(|i| i.to_string()).unwrap_or_default()
                ))
            });
        Options {
            instance,
            netns: m.get_one::<String>("netns").cloned(),
            blades: if blades.is_empty() {
                vec![(1, Endpoint::for_blade(1))]
            } else {
                blades
            },
            features: Features {
                bpf_all: m.get_flag("sync-bpf-all"),
                ..Features::from_mask(mask)
            },
            bpf_all: m.get_flag("sync-bpf-all"),
            ipsec_replay: m.get_flag("sync-ipsec-replay"),
            debug: m.get_one::<u32>("debug").copied().unwrap_or(0),
            foreground: m.get_flag("foreground"),
            socket_buffer: *m.get_one::<usize>("socket-buffer").expect("defaulted"),
            netlink_buffer: *m.get_one::<usize>("netlink-buffer").expect("defaulted"),
            max_queue: *m.get_one::<usize>("max-queue").expect("defaulted"),
            link_poll: match *m.get_one::<u64>("link-poll").expect("defaulted") {
                0 => None,
                ms => Some(std::time::Duration::from_millis(ms)),
            },
            pid_file,
            election_id: *m.get_one::<u64>("election-id").expect("defaulted"),
            keepalive: *m
                .get_one::<std::time::Duration>("keepalive")
                .expect("defaulted"),
            peer_timeout: *m
                .get_one::<std::time::Duration>("peer-timeout")
                .expect("defaulted"),
            tls: <fpc::TlsOptions as clap::FromArgMatches>::from_arg_matches(m).unwrap_or_default(),
        }
    }

    /// Sets this process's TCP policy from the TLS options, and checks
    /// that every TCP blade may be dialled with it: one line naming the
    /// file, or the blade, and the reason.
    pub fn install_tcp_policy(&self) -> Result<(), String> {
        let policy = self.tls.client().map_err(|e| e.to_string())?;
        fpc::install_client(policy);
        for (blade, endpoint) in &self.blades {
            if let Endpoint::Tcp(addr) = endpoint {
                fpc::check_dial(addr).map_err(|e| format!("blade {blade}: {e}"))?;
            }
        }
        Ok(())
    }

    /// Parses a command line (the program name first).
    pub fn try_parse_from<I, T>(args: I) -> Result<Options, clap::Error>
    where
        I: IntoIterator<Item = T>,
        T: Into<std::ffi::OsString> + Clone,
    {
        command()
            .try_get_matches_from(args)
            .map(|m| Options::from_matches(&m))
    }

    /// The log filter `-d` asks for.
    pub fn log_filter(&self) -> &'static str {
        if self.debug & 0x2 != 0 {
            "trace"
        } else if self.debug & 0x1 != 0 {
            "debug"
        } else {
            "info"
        }
    }
}

/// What `cmgrd -o` prints: how this build was made and what it syncs.
pub fn compile_options() -> String {
    let mut out = format!(
        "cmgrd {} ({} build, {} {})\n",
        env!("CARGO_PKG_VERSION"),
        if cfg!(debug_assertions) {
            "debug"
        } else {
            "release"
        },
        std::env::consts::ARCH,
        std::env::consts::OS,
    );
    out += &format!("FPC protocol version: {}\n", fpc::VERSION);
    out += "netlink families: route (links, addresses, routes, policy routing rules, \
            nexthop objects, neighbours, bridge ports, FDB, multicast routes, netconf, qdiscs), \
            xfrm (SAs, policies, replay, expire, migrate), \
            netfilter (conntrack, nf_tables with sets and maps), audit (AUDIT_NETFILTER_CFG: legacy iptables \
            tables re-read; polled while audit is off), sock_diag (capture filters, polled)\n";
    out += &format!("feature mask bits known: {:#07x}\n", features::ALL);
    out += &format!(
        "features synchronized by this build: {}\n",
        features::implemented_names().join(" ")
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::features::*;

    fn parse(args: &[&str]) -> Result<Options, clap::Error> {
        Options::try_parse_from(std::iter::once("cmgrd").chain(args.iter().copied()))
    }

    #[test]
    fn defaults_follow_the_seed() {
        let o = parse(&[]).unwrap();
        assert_eq!(o.netlink_buffer, 64 << 20);
        assert_eq!(o.socket_buffer, 2 << 20);
        assert_eq!(o.features, Features::default());
        assert_eq!(o.blades, vec![(1, Endpoint::for_blade(1))]);
        assert!(!o.foreground && !o.bpf_all && !o.ipsec_replay);
        assert_eq!(o.pid_file, PathBuf::from("/run/fpsync/cmgrd.pid"));
    }

    #[test]
    fn every_seed_option_parses() {
        let o = parse(&[
            "-I",
            "3",
            "-S",
            "0x10000",
            "-A",
            "-R",
            "-d",
            "0x1",
            "-F",
            "-b",
            "4M",
            "-l",
            "1G",
            "--netns",
            "red",
            "--blade",
            "2=tcp:127.0.0.1:7000",
        ])
        .unwrap();
        assert_eq!(o.instance, Some(3));
        assert_eq!(o.features.mask, IPV6);
        assert!(o.bpf_all && o.ipsec_replay && o.foreground);
        assert_eq!((o.debug, o.log_filter()), (1, "debug"));
        assert_eq!((o.socket_buffer, o.netlink_buffer), (4 << 20, 1 << 30));
        assert_eq!(o.netns.as_deref(), Some("red"));
        assert_eq!(o.blades[0].0, 2);
        assert_eq!(o.pid_file, PathBuf::from("/run/fpsync/cmgrd3.pid"));
        let long = parse(&[
            "--sync-mask",
            "65536",
            "--sync-bpf-all",
            "--sync-ipsec-replay",
        ])
        .unwrap();
        assert_eq!(long.features.mask, IPV6);
        assert!(long.bpf_all && long.ipsec_replay);
    }

    #[test]
    fn liveness_options_default_to_one_and_five_seconds() {
        let o = parse(&[]).unwrap();
        assert_eq!(o.keepalive, std::time::Duration::from_secs(1));
        assert_eq!(o.peer_timeout, std::time::Duration::from_secs(5));
        let o = parse(&["--keepalive", "0.25", "--peer-timeout", "2"]).unwrap();
        assert_eq!(o.keepalive, std::time::Duration::from_millis(250));
        assert_eq!(o.peer_timeout, std::time::Duration::from_secs(2));
        for bad in ["0", "-1", "86401", "soon"] {
            let e = parse(&[&format!("--peer-timeout={bad}")])
                .unwrap_err()
                .to_string();
            assert!(e.contains("'--peer-timeout <SECONDS>'"), "{bad}: {e}");
        }
    }

    #[test]
    fn disable_flags_follow_the_seed_inclusions() {
        for f in FEATURES.iter().filter_map(|f| f.flag) {
            let o = parse(&[&format!("--disable-sync-{f}")]).unwrap();
            let cleared = disable_bits(f).unwrap();
            assert_eq!(o.features.mask & cleared, 0, "{f}");
        }
        let o = parse(&["--disable-sync-netfilter"]).unwrap();
        assert!(!o.features.enabled(NAT) && !o.features.enabled(CONNTRACK));
        let o = parse(&["--disable-sync-ipsec"]).unwrap();
        assert!(!o.features.enabled(SVTI));
        // A mask and a disable flag combine.
        let o = parse(&["-S", "0x10001", "--disable-sync-ipv6"]).unwrap();
        assert_eq!(o.features.mask, VXLAN);
    }

    #[test]
    fn bad_values_name_the_option() {
        for (args, word) in [
            (&["-S", "0x40000"][..], "sync-mask"),
            (&["-S", "ipv6"][..], "sync-mask"),
            (&["-l", "12Q"][..], "-l"),
            (&["-b", "0"][..], "-b"),
            (&["-I", "x"][..], "-I"),
            (&["-d", "zz"][..], "-d"),
            (&["--blade", "one"][..], "blade"),
            (&["--disable-sync-nothing"][..], "disable-sync-nothing"),
        ] {
            let e = parse(args).unwrap_err();
            assert_eq!(e.exit_code(), 2, "{args:?}");
            assert!(e.to_string().contains(word), "{args:?}: {e}");
        }
    }
}
