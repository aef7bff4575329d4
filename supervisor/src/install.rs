//! `fpsync status complete`: the installation as fpsyncd would find it —
//! programs and their versions, configuration files, bus, journal, and the
//! kernel features present or absent (probed in a throwaway network
//! namespace, so nothing on the host changes).

use std::path::Path;
use std::process::{Command, Stdio};

use serde_json::{json, Value};

use crate::config::{Config, DEFAULT_CMGR_FILE, DEFAULT_GLOBAL_FILE};

#[derive(Debug, Clone)]
pub struct Check {
    pub section: &'static str,
    pub name: String,
    pub ok: bool,
    pub detail: String,
}

fn item(
    section: &'static str,
    name: impl Into<String>,
    ok: bool,
    detail: impl Into<String>,
) -> Check {
    Check {
        section,
        name: name.into(),
        ok,
        detail: detail.into(),
    }
}

fn run(program: &str, args: &[&str]) -> Option<String> {
    let out = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stderr(Stdio::piped())
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

pub fn check() -> Vec<Check> {
    let mut out = Vec::new();
    for name in [
        "fpsyncd",
        "cmgrd",
        "fpd",
        "fpsync",
        "daemonctl",
        "fpsync-check",
    ] {
        match crate::find_program(name, None) {
            Some(p) => {
                let v = run(&p.display().to_string(), &["--version"])
                    .unwrap_or_else(|| "no --version".into());
                out.push(item(
                    "programs",
                    name,
                    true,
                    format!("{} ({v})", p.display()),
                ));
            }
            None => out.push(item(
                "programs",
                name,
                false,
                "not found beside fpsync nor in PATH",
            )),
        }
    }
    for tool in ["ip", "dbus-daemon", "busctl", "journalctl"] {
        let found = crate::find_program(tool, None);
        out.push(item(
            "programs",
            tool,
            found.is_some(),
            found
                .map(|p| p.display().to_string())
                .unwrap_or_else(|| "missing".into()),
        ));
    }
    let global =
        std::env::var("CONF_FILE_linux_fp_sync").unwrap_or_else(|_| DEFAULT_GLOBAL_FILE.into());
    let cmgr = std::env::var("CONF_FILE_cmgr").unwrap_or_else(|_| DEFAULT_CMGR_FILE.into());
    for f in [&global, &cmgr] {
        let exists = Path::new(f).exists();
        out.push(item(
            "configuration",
            f.clone(),
            true,
            if exists {
                "present"
            } else {
                "absent: built-in defaults apply"
            },
        ));
    }
    match Config::load() {
        Ok(c) => {
            out.push(item(
                "configuration",
                "parse",
                true,
                format!(
                    "{} instance(s) {:?}, {} blade(s) {:?}, files read: {:?}",
                    c.instances.len(),
                    c.instances.iter().map(|i| i.id).collect::<Vec<_>>(),
                    c.blades.len(),
                    c.blades.iter().map(|b| b.id).collect::<Vec<_>>(),
                    c.files
                ),
            ));
            for i in &c.instances {
                if let Some(ns) = &i.netns {
                    let ok = Path::new("/var/run/netns").join(ns).exists();
                    out.push(item(
                        "configuration",
                        format!("instance {} netns {ns}", i.id),
                        ok,
                        if ok {
                            "exists"
                        } else {
                            "missing: cmgrd will fail to start"
                        },
                    ));
                }
            }
            let bus = crate::bus::address_file(&c.run_dir);
            let pid = crate::process::running_supervisor(&c.run_dir);
            out.push(item(
                "bus",
                "fpsyncd",
                pid.is_some(),
                match pid {
                    Some(p) => format!("runs (pid {p})"),
                    None => "not running".into(),
                },
            ));
            let private = std::fs::read_to_string(&bus).ok();
            out.push(item(
                "bus",
                "private bus",
                true,
                match private {
                    Some(a) => format!("{} ({})", a.trim(), bus.display()),
                    None => "none".into(),
                },
            ));
        }
        Err(e) => out.push(item("configuration", "parse", false, crate::chain(&e))),
    }
    let system_bus = Path::new("/run/dbus/system_bus_socket").exists();
    out.push(item(
        "bus",
        "system bus",
        true,
        if system_bus {
            "present"
        } else {
            "absent: fpsyncd starts a private bus"
        },
    ));
    let journal = Path::new("/run/systemd/journal/socket").exists();
    out.push(item(
        "journal",
        "systemd-journald",
        true,
        if journal {
            "present: logs go to the journal"
        } else {
            "absent: logs go to stderr"
        },
    ));
    out.extend(kernel());
    out
}

/// Link kinds and kernel facilities fpsync syncs, probed in a throwaway
/// network namespace (`unshare -n`). Absent ones are reported, not errors.
fn kernel() -> Vec<Check> {
    let release = run("uname", &["-r"]).unwrap_or_default();
    let mut out = vec![item("kernel", "release", true, release)];
    let links: [(&str, &str); 14] = [
        ("veth", "link add p0 type veth peer name p1"),
        ("bridge", "link add p0 type bridge"),
        ("macvlan", "link add d0 type veth peer name d1 && ip link add p0 link d0 type macvlan"),
        ("vxlan", "link add p0 type vxlan id 1 dstport 4789"),
        ("tun/tap", "tuntap add p0 mode tap"),
        ("8021q vlan", "link add d0 type veth peer name d1 && ip link add p0 link d0 type vlan id 5"),
        ("bonding", "link add p0 type bond"),
        ("gre", "link add p0 type gre remote 192.0.2.1 local 192.0.2.2"),
        ("ipip", "link add p0 type ipip remote 192.0.2.1 local 192.0.2.2"),
        ("vti", "link add p0 type vti remote 192.0.2.1 local 192.0.2.2"),
        ("vrf", "link add p0 type vrf table 10"),
        ("wireguard", "link add p0 type wireguard"),
        ("nexthop objects", "link add d0 type veth peer name d1 && ip link set d0 up && ip nexthop add id 1 dev d0"),
        (
            "xfrm esp",
            "xfrm state add src 192.0.2.1 dst 192.0.2.2 proto esp spi 0x100 enc 'cbc(aes)' 0x00112233445566778899aabbccddeeff",
        ),
    ];
    for (name, cmd) in links {
        let script = format!("ip {cmd}");
        let ok = Command::new("unshare")
            .args(["-n", "sh", "-c", &script])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .map(|s| s.success())
            .unwrap_or(false);
        out.push(item(
            "kernel",
            name,
            true,
            if ok { "present" } else { "absent" },
        ));
    }
    let files: [(&str, &str); 5] = [
        ("nf_conntrack", "/proc/sys/net/netfilter/nf_conntrack_max"),
        ("ipv4 multicast routing", "/proc/net/ip_mr_vif"),
        ("ipv6", "/proc/net/if_inet6"),
        ("bpffs mounted", "/sys/fs/bpf/."),
        ("netns", "/proc/self/ns/net"),
    ];
    for (name, path) in files {
        let ok = Path::new(path).exists()
            && (name != "bpffs mounted"
                || std::fs::read_to_string("/proc/mounts")
                    .is_ok_and(|m| m.contains(" /sys/fs/bpf bpf ")));
        out.push(item(
            "kernel",
            name,
            true,
            if ok { "present" } else { "absent" },
        ));
    }
    let modules = std::fs::read_to_string("/proc/modules").unwrap_or_default();
    let loaded: Vec<&str> = modules
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    out.push(item(
        "kernel",
        "loaded modules",
        true,
        if loaded.is_empty() {
            "none (built in)".to_owned()
        } else {
            loaded.join(" ")
        },
    ));
    out
}

pub fn print(checks: &[Check]) {
    let mut section = "";
    for c in checks {
        if c.section != section {
            section = c.section;
            println!("Installation: {section}");
        }
        println!(
            "  {:<4} {:<26} {}",
            if c.ok { "ok" } else { "FAIL" },
            c.name,
            c.detail
        );
    }
}

pub fn to_json(checks: &[Check]) -> Value {
    Value::Array(
        checks
            .iter()
            .map(|c| json!({"section": c.section, "name": c.name, "ok": c.ok, "detail": c.detail}))
            .collect(),
    )
}
