//! Bridges and FDB, VLAN, MACVLAN, VXLAN, bonding, GRE/GRETAP, IP tunnels
//! and VTI. Families this kernel can create are driven with real `ip` and
//! `bridge`; the others (and bridge VLAN filtering, absent here) with the
//! RTM_NEWLINK / RTM_DELLINK messages the kernel sends for them, built by
//! netlink-packet-route and fed through cmgrd's decoder and sync path
//! (`netlink replay`).

use std::net::IpAddr;
use std::time::Duration;

use fpc::{Object, ObjectKey, QueryClient};
use fpsync_tests::{Netns, Setup, TempDir};
use netlink_packet_core::{NetlinkHeader, NetlinkMessage, NetlinkPayload};
use netlink_packet_route::link::{
    AfSpecBridge, BondMode, BridgeVlanInfo, BridgeVlanInfoFlags, GreIOFlags, InfoBond, InfoData,
    InfoGre, InfoGre6, InfoIpTunnel, InfoKind, InfoVlan, InfoVti, LinkAttribute, LinkFlags,
    LinkInfo as NlInfo, LinkMessage, VlanProtocol,
};
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};

const SYNC: Duration = Duration::from_secs(1);

fn fp(s: &Setup) -> Vec<Object> {
    QueryClient::connect(&s.endpoint, "test", Duration::from_secs(5))
        .and_then(|mut c| c.dump())
        .unwrap()
}

fn fp_get(s: &Setup, key: &ObjectKey) -> Option<Object> {
    fp(s).into_iter().find(|o| &o.key() == key)
}

/// Waits (1 s at most) until fpd holds `key` (or, with `present` false,
/// no longer does): acknowledged ops may still be in flight.
fn fp_wait(s: &Setup, key: &ObjectKey, present: bool) -> Option<Object> {
    fpsync_tests::wait_until(SYNC, || fp_get(s, key).is_some() == present);
    fp_get(s, key)
}

fn ifindex(ns: &Netns, name: &str) -> u32 {
    let v = ns.ip(&["-j", "link", "show", name]);
    let start = v.find("\"ifindex\":").unwrap() + 10;
    v[start..].split(',').next().unwrap().parse().unwrap()
}

/// Runs each command (`ip ...` or `bridge ...`) and checks sync after it.
fn steps(s: &Setup, cmds: &[&str]) {
    for cmd in cmds {
        let words: Vec<&str> = cmd.split_whitespace().collect();
        let mut full = vec![words[0], "-n", &s.ns.name];
        full.extend_from_slice(&words[1..]);
        fpsync_tests::sh(&full);
        s.assert_equal_to_linux(SYNC);
    }
}

#[test]
fn bridge_ports_and_fdb() {
    let s = Setup::new("bridge");
    steps(
        &s,
        &[
            "ip link add br0 type bridge",
            "ip link add v0 type veth peer name v1",
            "ip link add w0 type veth peer name w1",
            "ip link set v0 master br0",
            "ip link set w0 master br0",
            "ip link set br0 up",
            "ip link set v0 up",
            "ip link set v1 up",
            "ip link set w0 up",
            "bridge fdb add 02:00:00:00:00:01 dev v0 master static",
            "bridge fdb replace 02:00:00:00:00:01 dev w0 master static",
            "bridge fdb add 02:00:00:00:00:02 dev v0 master",
            "ip link set dev w0 type bridge_slave state 0",
        ],
    );
    let v0 = ifindex(&s.ns, "v0");
    let br0 = ifindex(&s.ns, "br0");
    let Some(Object::BridgePort(p)) = fp_get(&s, &ObjectKey::BridgePort(v0)) else {
        panic!("v0 is no port in the fast path")
    };
    assert_eq!((p.master, p.state), (br0, 3), "v0 forwarding in br0");
    let w0 = ifindex(&s.ns, "w0");
    let Some(Object::BridgePort(p)) = fp_get(&s, &ObjectKey::BridgePort(w0)) else {
        panic!("w0 is no port")
    };
    assert_eq!(p.state, 0, "w0 disabled");
    let mac = vec![2, 0, 0, 0, 0, 1];
    let key = ObjectKey::Fdb {
        domain: br0,
        mac: mac.clone(),
        vlan: 0,
        dst: None,
    };
    assert!(
        matches!(fp_get(&s, &key), Some(Object::Fdb(e)) if e.ifindex == w0),
        "the replaced static entry moved to w0: {:?} / {}",
        fp(&s)
            .into_iter()
            .filter(|o| matches!(o, Object::Fdb(_)))
            .collect::<Vec<_>>(),
        fpsync_tests::sh(&["bridge", "-n", &s.ns.name, "fdb", "show"])
    );

    // A learned entry: a host behind v1 talks through the bridge.
    let peer = Netns::new("peer");
    s.ns.ip(&["link", "set", "v1", "netns", &peer.name]);
    peer.ip(&["link", "set", "v1", "up"]);
    peer.ip(&["addr", "add", "10.7.0.2/24", "dev", "v1"]);
    s.ns.ip(&["addr", "add", "10.7.0.1/24", "dev", "br0"]);
    let _ = std::process::Command::new("ip")
        .args([
            "netns", "exec", &peer.name, "ping", "-c", "2", "-i", "0.2", "-W", "1", "10.7.0.1",
        ])
        .output();
    s.assert_equal_to_linux(SYNC);
    let learned = fp(&s).into_iter().any(|o| {
        matches!(o, Object::Fdb(e) if e.ifindex == v0 && e.state == 0x02 && e.mac != [2, 0, 0, 0, 0, 2])
    });
    assert!(
        learned,
        "the learned entry of the host behind v0 reached the fast path"
    );

    steps(
        &s,
        &[
            "bridge fdb del 02:00:00:00:00:01 dev w0 master",
            "ip link set w0 nomaster",
            "ip link set dev v0 type bridge_slave state 3",
            "ip link del br0",
        ],
    );
    assert!(
        !fp(&s).iter().any(|o| matches!(o, Object::BridgePort(_))),
        "no port left"
    );
}

#[test]
fn macvlan_modes() {
    let s = Setup::new("macvlan");
    steps(
        &s,
        &[
            "ip link add v0 type veth peer name v1",
            "ip link add mv0 link v0 type macvlan mode bridge",
            "ip link add mv1 link v0 type macvlan mode private",
            "ip link add mv2 link v0 type macvlan mode vepa",
            "ip link set mv1 type macvlan mode bridge",
            "ip link set mv0 up",
            "ip link del mv2",
        ],
    );
    let mv1 = ifindex(&s.ns, "mv1");
    let Some(Object::Link(l)) = fp_get(&s, &ObjectKey::Link(mv1)) else {
        panic!("mv1 missing")
    };
    assert_eq!(l.info, fpc::LinkInfo::Macvlan { mode: 4 });
    assert_eq!(l.link, ifindex(&s.ns, "v0"));
}

#[test]
fn vxlan_with_fdb_remotes() {
    let s = Setup::new("vxlan");
    steps(
        &s,
        &[
            "ip link add v0 type veth peer name v1",
            "ip link set v0 up",
            "ip addr add 10.0.0.1/24 dev v0",
            "ip link add vx0 type vxlan id 42 local 10.0.0.1 dev v0 dstport 4789 nolearning",
            "ip link set vx0 up",
            "bridge fdb append 00:00:00:00:00:00 dev vx0 dst 10.0.0.2",
            "bridge fdb append 00:00:00:00:00:00 dev vx0 dst 10.0.0.3",
            "bridge fdb add 02:00:00:00:00:09 dev vx0 dst 10.0.0.4",
            "bridge fdb del 00:00:00:00:00:00 dev vx0 dst 10.0.0.2",
            "ip link add vx1 type vxlan id 43 group 239.1.1.1 dev v0 dstport 4789",
            "ip link add br0 type bridge",
            "ip link set vx0 master br0",
        ],
    );
    let vx0 = ifindex(&s.ns, "vx0");
    let Some(Object::Link(l)) = fp_get(&s, &ObjectKey::Link(vx0)) else {
        panic!("vx0 missing")
    };
    let fpc::LinkInfo::Vxlan {
        vni,
        local,
        port,
        learning,
        dev,
        ..
    } = l.info
    else {
        panic!("no vxlan info: {l:?}")
    };
    assert_eq!(
        (vni, port, learning, dev),
        (42, 4789, false, ifindex(&s.ns, "v0"))
    );
    assert_eq!(local, Some("10.0.0.1".parse().unwrap()));
    let remotes: Vec<IpAddr> = fp(&s)
        .into_iter()
        .filter_map(|o| match o {
            Object::Fdb(e) if e.ifindex == vx0 && e.mac == [0; 6] => e.dst,
            _ => None,
        })
        .collect();
    assert_eq!(remotes, vec!["10.0.0.3".parse::<IpAddr>().unwrap()]);
    steps(&s, &["ip link del vx0", "ip link del vx1"]);
}

/// The bytes of one rtnetlink message.
fn emit(inner: RouteNetlinkMessage) -> Vec<u8> {
    let mut msg = NetlinkMessage::new(
        NetlinkHeader::default(),
        NetlinkPayload::InnerMessage(inner),
    );
    msg.finalize();
    let mut buf = vec![0; msg.buffer_len()];
    msg.serialize(&mut buf);
    buf
}

/// RTM_NEWLINK for a link of `kind`, as the kernel sends it.
fn new_link(
    index: u32,
    name: &str,
    kind: InfoKind,
    data: Option<InfoData>,
    extra: Vec<LinkAttribute>,
) -> LinkMessage {
    let mut m = LinkMessage::default();
    m.header.index = index;
    m.header.flags = LinkFlags::Up | LinkFlags::Running | LinkFlags::LowerUp;
    m.attributes.push(LinkAttribute::IfName(name.into()));
    m.attributes.push(LinkAttribute::Mtu(1476));
    let mut info = vec![NlInfo::Kind(kind)];
    info.extend(data.map(NlInfo::Data));
    m.attributes.push(LinkAttribute::LinkInfo(info));
    m.attributes.extend(extra);
    m
}

/// Writes `messages` to a file and has cmgrd replay them.
fn replay(s: &Setup, dir: &TempDir, messages: &[Vec<u8>]) {
    let path = dir.path.join(format!("replay-{}", fpsync_tests::unique()));
    std::fs::write(&path, messages.concat()).unwrap();
    let answer = s.console(&format!("netlink replay {}", path.display()));
    assert_eq!(
        answer,
        format!("replayed {} netlink messages\n\n", messages.len())
    );
}

/// Links this kernel cannot create, each with what the fast path needs.
fn fixtures() -> Vec<(LinkMessage, fpc::LinkInfo, u32)> {
    use fpc::LinkInfo as L;
    let v4 = |s: &str| s.parse::<std::net::Ipv4Addr>().unwrap();
    let v6 = |s: &str| s.parse::<std::net::Ipv6Addr>().unwrap();
    let key = GreIOFlags::Key;
    vec![
        (
            new_link(
                901,
                "eth0.10",
                InfoKind::Vlan,
                Some(InfoData::Vlan(vec![
                    InfoVlan::Id(10),
                    InfoVlan::Protocol(VlanProtocol::Ieee8021Q),
                ])),
                vec![LinkAttribute::Link(1)],
            ),
            L::Vlan {
                id: 10,
                protocol: 0x8100,
            },
            crate::features_bit("vlan"),
        ),
        (
            new_link(
                902,
                "eth0.20",
                InfoKind::Vlan,
                Some(InfoData::Vlan(vec![
                    InfoVlan::Id(20),
                    InfoVlan::Protocol(VlanProtocol::Ieee8021Ad),
                ])),
                vec![LinkAttribute::Link(1)],
            ),
            L::Vlan {
                id: 20,
                protocol: 0x88a8,
            },
            crate::features_bit("vlan"),
        ),
        (
            new_link(
                903,
                "bond0",
                InfoKind::Bond,
                Some(InfoData::Bond(vec![
                    InfoBond::Mode(BondMode::ActiveBackup),
                    InfoBond::ActivePort(905),
                    InfoBond::MiiMon(100),
                ])),
                vec![],
            ),
            L::Bond {
                mode: 1,
                active: 905,
                miimon: 100,
            },
            crate::features_bit("lag"),
        ),
        (
            new_link(
                904,
                "gre1",
                InfoKind::GreTun,
                Some(InfoData::GreTun(vec![
                    InfoGre::IKey(7),
                    InfoGre::OKey(8),
                    InfoGre::IFlags(key),
                    InfoGre::OFlags(key),
                    InfoGre::Local(v4("192.0.2.1")),
                    InfoGre::Remote(v4("192.0.2.2")),
                    InfoGre::Ttl(64),
                    InfoGre::Link(0),
                ])),
                vec![],
            ),
            L::Gre {
                ikey: 7,
                okey: 8,
                iflags: key.bits(),
                oflags: key.bits(),
                local: Some(v4("192.0.2.1").into()),
                remote: Some(v4("192.0.2.2").into()),
                ttl: 64,
                dev: 0,
            },
            crate::features_bit("gre"),
        ),
        (
            new_link(
                906,
                "gretap1",
                InfoKind::GreTap,
                Some(InfoData::GreTap(vec![
                    InfoGre::Local(v4("192.0.2.1")),
                    InfoGre::Remote(v4("192.0.2.3")),
                    InfoGre::Ttl(0),
                ])),
                vec![],
            ),
            L::Gre {
                ikey: 0,
                okey: 0,
                iflags: 0,
                oflags: 0,
                local: Some(v4("192.0.2.1").into()),
                remote: Some(v4("192.0.2.3").into()),
                ttl: 0,
                dev: 0,
            },
            crate::features_bit("gre"),
        ),
        (
            new_link(
                907,
                "ip6gre1",
                InfoKind::GreTun6,
                Some(InfoData::GreTun6(vec![
                    InfoGre6::Local(v6("2001:db8::1")),
                    InfoGre6::Remote(v6("2001:db8::2")),
                    InfoGre6::Ttl(32),
                ])),
                vec![],
            ),
            L::Gre {
                ikey: 0,
                okey: 0,
                iflags: 0,
                oflags: 0,
                local: Some(v6("2001:db8::1").into()),
                remote: Some(v6("2001:db8::2").into()),
                ttl: 32,
                dev: 0,
            },
            crate::features_bit("gre"),
        ),
        (
            new_link(
                908,
                "ipip1",
                InfoKind::IpIp,
                Some(InfoData::IpTunnel(vec![
                    InfoIpTunnel::Local(v4("192.0.2.1").into()),
                    InfoIpTunnel::Remote(v4("192.0.2.9").into()),
                    InfoIpTunnel::Ttl(64),
                ])),
                vec![],
            ),
            L::Tunnel {
                local: Some(v4("192.0.2.1").into()),
                remote: Some(v4("192.0.2.9").into()),
                ttl: 64,
                proto: 0,
                dev: 0,
            },
            crate::features_bit("tunnel"),
        ),
        (
            new_link(
                909,
                "sit1",
                InfoKind::SitTun,
                Some(InfoData::IpTunnel(vec![
                    InfoIpTunnel::Remote(v4("192.0.2.10").into()),
                    InfoIpTunnel::Ttl(16),
                ])),
                vec![],
            ),
            L::Tunnel {
                local: None,
                remote: Some(v4("192.0.2.10").into()),
                ttl: 16,
                proto: 0,
                dev: 0,
            },
            crate::features_bit("tunnel"),
        ),
        (
            new_link(
                910,
                "ip6tnl1",
                InfoKind::Ip6Tnl,
                Some(InfoData::IpTunnel(vec![
                    InfoIpTunnel::Local(v6("2001:db8::1").into()),
                    InfoIpTunnel::Remote(v6("2001:db8::9").into()),
                ])),
                vec![],
            ),
            L::Tunnel {
                local: Some(v6("2001:db8::1").into()),
                remote: Some(v6("2001:db8::9").into()),
                ttl: 0,
                proto: 0,
                dev: 0,
            },
            crate::features_bit("tunnel"),
        ),
        (
            new_link(
                911,
                "vti1",
                InfoKind::Vti,
                Some(InfoData::Vti(vec![
                    InfoVti::IKey(11),
                    InfoVti::OKey(12),
                    InfoVti::Local(v4("192.0.2.1").into()),
                    InfoVti::Remote(v4("192.0.2.11").into()),
                ])),
                vec![],
            ),
            L::Vti {
                ikey: 11,
                okey: 12,
                local: Some(v4("192.0.2.1").into()),
                remote: Some(v4("192.0.2.11").into()),
                dev: 0,
            },
            crate::features_bit("svti"),
        ),
    ]
}

fn features_bit(name: &str) -> u32 {
    instance::features::FEATURES
        .iter()
        .find(|f| f.name == name)
        .unwrap()
        .bit
}

#[test]
fn families_this_kernel_lacks_through_the_sync_path() {
    // Replayed links do not exist in Linux: the link poll would remove them.
    let s = Setup::with_args("fixtures", &["--link-poll", "0"]);
    let dir = TempDir::new("fixtures");
    let fx = fixtures();
    // A bond member: a plain link whose master is the bond.
    let mut member = new_link(
        905,
        "eth5",
        InfoKind::Other(String::new()),
        None,
        vec![LinkAttribute::Controller(903)],
    );
    member
        .attributes
        .retain(|a| !matches!(a, LinkAttribute::LinkInfo(_)));
    let mut msgs: Vec<Vec<u8>> = fx
        .iter()
        .map(|(m, _, _)| emit(RouteNetlinkMessage::NewLink(m.clone())))
        .collect();
    msgs.push(emit(RouteNetlinkMessage::NewLink(member)));
    replay(&s, &dir, &msgs);
    for (m, info, _) in &fx {
        match fp_wait(&s, &ObjectKey::Link(m.header.index), true) {
            Some(Object::Link(l)) => assert_eq!(&l.info, info, "{}", l.name),
            other => panic!("link {} not in the fast path: {other:?}", m.header.index),
        }
    }
    let Some(Object::Link(eth5)) = fp_get(&s, &ObjectKey::Link(905)) else {
        panic!("bond member missing")
    };
    assert_eq!(eth5.master, 903, "member of bond0");
    let shown = s.console("show interfaces");
    assert!(
        shown.contains("bond mode 1 active #905") && shown.contains("in_l_bond: yes"),
        "{shown}"
    );
    // Deletions, as RTM_DELLINK.
    let dels: Vec<Vec<u8>> = fx
        .iter()
        .map(|(m, _, _)| emit(RouteNetlinkMessage::DelLink(m.clone())))
        .collect();
    replay(&s, &dir, &dels);
    for (m, _, _) in &fx {
        assert!(
            fp_wait(&s, &ObjectKey::Link(m.header.index), false).is_none(),
            "{} still there",
            m.header.index
        );
    }
}

/// VLAN filtering and per-port VLANs (this kernel has no bridge VLAN
/// filtering): the bridge's AF_BRIDGE port messages with their VLAN list.
#[test]
fn bridge_vlan_filtering_fixture() {
    let s = Setup::with_args("brvlan", &["--link-poll", "0"]);
    let dir = TempDir::new("brvlan");
    let br = new_link(
        920,
        "br9",
        InfoKind::Bridge,
        Some(InfoData::Bridge(vec![
            netlink_packet_route::link::InfoBridge::VlanFiltering(true),
            netlink_packet_route::link::InfoBridge::VlanProtocol(VlanProtocol::Ieee8021Q),
            netlink_packet_route::link::InfoBridge::VlanDefaultPvid(1),
        ])),
        vec![],
    );
    let mut port = LinkMessage::default();
    port.header.interface_family = AddressFamily::Bridge;
    port.header.index = 921;
    port.attributes.push(LinkAttribute::IfName("eth9".into()));
    port.attributes.push(LinkAttribute::Controller(920));
    let vlan = |vid: u16, flags: BridgeVlanInfoFlags| {
        AfSpecBridge::VlanInfo(BridgeVlanInfo { flags, vid })
    };
    port.attributes.push(LinkAttribute::AfSpecBridge(vec![
        vlan(1, BridgeVlanInfoFlags::Pvid | BridgeVlanInfoFlags::Untagged),
        vlan(100, BridgeVlanInfoFlags::RangeBegin),
        vlan(103, BridgeVlanInfoFlags::RangeEnd),
    ]));
    replay(
        &s,
        &dir,
        &[
            emit(RouteNetlinkMessage::NewLink(br)),
            emit(RouteNetlinkMessage::NewLink(port.clone())),
        ],
    );
    let Some(Object::Link(l)) = fp_wait(&s, &ObjectKey::Link(920), true) else {
        panic!("br9 missing")
    };
    assert_eq!(
        l.info,
        fpc::LinkInfo::Bridge {
            vlan_filtering: true,
            vlan_protocol: 0x8100,
            default_pvid: 1
        }
    );
    let Some(Object::BridgePort(p)) = fp_wait(&s, &ObjectKey::BridgePort(921), true) else {
        panic!("port missing")
    };
    assert_eq!(p.master, 920);
    assert_eq!(
        p.vlans,
        vec![(1, 6), (100, 0), (101, 0), (102, 0), (103, 0)]
    );
    replay(&s, &dir, &[emit(RouteNetlinkMessage::DelLink(port))]);
    assert!(
        fp_wait(&s, &ObjectKey::BridgePort(921), false).is_none(),
        "the port left"
    );
}

/// Each family's disable flag: it never reaches fpd, the others still do.
#[test]
fn disable_flags_per_family() {
    let fx = fixtures();
    for flag in ["vlan", "lag", "gre", "tunnel", "svti", "ipsec"] {
        let s = Setup::with_args(
            flag,
            &[&format!("--disable-sync-{flag}"), "--link-poll", "0"],
        );
        let dir = TempDir::new(flag);
        let msgs: Vec<Vec<u8>> = fx
            .iter()
            .map(|(m, _, _)| emit(RouteNetlinkMessage::NewLink(m.clone())))
            .collect();
        replay(&s, &dir, &msgs);
        // The last fixture is always synced: once it is there, all are.
        fp_wait(
            &s,
            &ObjectKey::Link(fx.last().unwrap().0.header.index),
            flag != "svti" && flag != "ipsec",
        );
        for (m, _, bit) in &fx {
            let off = !s.features.enabled(*bit);
            // With svti or ipsec off the last fixture is absent at once:
            // give each expected link the time its ops take to arrive.
            let there = fp_wait(&s, &ObjectKey::Link(m.header.index), !off).is_some();
            assert_eq!(
                there, !off,
                "--disable-sync-{flag}: link {}",
                m.header.index
            );
        }
    }
    // Real devices: bridge (and its ports and FDB), macvlan, vxlan.
    for flag in ["bridge", "macvlan", "vxlan"] {
        let s = Setup::with_args(flag, &[&format!("--disable-sync-{flag}")]);
        for cmd in [
            "link add v0 type veth peer name v1",
            "link add br0 type bridge",
            "link set v1 master br0",
            "link add mv0 link v0 type macvlan",
            "link add vx0 type vxlan id 5 dstport 4789 dev v0",
        ] {
            s.ns.ip(&cmd.split_whitespace().collect::<Vec<_>>());
        }
        fpsync_tests::sh(&[
            "bridge",
            "-n",
            &s.ns.name,
            "fdb",
            "append",
            "00:00:00:00:00:00",
            "dev",
            "vx0",
            "dst",
            "10.0.0.2",
        ]);
        s.assert_equal_to_linux(SYNC);
        let objects = fp(&s);
        let kinds: Vec<String> = objects
            .iter()
            .filter_map(|o| match o {
                Object::Link(l) => Some(l.kind.clone()),
                _ => None,
            })
            .collect();
        let ports = objects.iter().any(|o| matches!(o, Object::BridgePort(_)));
        let remotes = objects
            .iter()
            .any(|o| matches!(o, Object::Fdb(e) if e.dst.is_some()));
        assert_eq!(
            kinds.contains(&"bridge".into()) || ports,
            flag != "bridge",
            "{flag}: {kinds:?}"
        );
        assert_eq!(
            kinds.contains(&"macvlan".into()),
            flag != "macvlan",
            "{flag}: {kinds:?}"
        );
        assert_eq!(
            kinds.contains(&"vxlan".into()) || remotes,
            flag != "vxlan",
            "{flag}: {kinds:?}"
        );
        assert!(kinds.contains(&"veth".into()));
    }
}

/// Random bridge ports, port states and FDB entries, then in sync.
#[test]
fn bridge_churn() {
    use rand::{Rng, SeedableRng};
    let seed = std::env::var("FPSYNC_CHURN_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(rand::random::<u64>);
    println!("bridge churn seed {seed}");
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let s = Setup::new("brchurn");
    s.ns.batch(
        "link add br0 type bridge\nlink add br1 type bridge\nlink set br0 up\nlink set br1 up\n\
                link add p0 type veth peer name q0\nlink add p1 type veth peer name q1\n\
                link add p2 type veth peer name q2\nlink add p3 type veth peer name q3\n",
    );
    let ports = ["p0", "p1", "p2", "p3"];
    let mut bridge_cmds = Vec::new();
    for i in 0..1500 {
        let p = ports[rng.random_range(0..4)];
        let br = ["br0", "br1"][rng.random_range(0..2)];
        let mac = format!(
            "02:00:00:00:{:02x}:{:02x}",
            rng.random_range(0..4),
            rng.random_range(0..16)
        );
        let line = match rng.random_range(0..9) {
            0..=1 => format!("ip link set {p} master {br}"),
            2 => format!("ip link set {p} nomaster"),
            3 => format!("ip link set {p} {}", ["up", "down"][rng.random_range(0..2)]),
            4 => format!(
                "ip link set dev {p} type bridge_slave state {}",
                [0, 3][rng.random_range(0..2)]
            ),
            5..=6 => format!("bridge fdb replace {mac} dev {p} master static"),
            7 => format!("bridge fdb add {mac} dev {p} master"),
            _ => format!("bridge fdb del {mac} dev {p} master"),
        };
        bridge_cmds.push(line);
        if i % 250 == 249 {
            for l in bridge_cmds.drain(..) {
                let words: Vec<&str> = l.split_whitespace().collect();
                let _ = std::process::Command::new(words[0])
                    .arg("-n")
                    .arg(&s.ns.name)
                    .args(&words[1..])
                    .stdout(std::process::Stdio::null())
                    .stderr(std::process::Stdio::null())
                    .status();
            }
            s.assert_equal_to_linux(Duration::from_secs(2));
        }
    }
    let objects = fp(&s);
    let ports_seen = objects
        .iter()
        .filter(|o| matches!(o, Object::BridgePort(_)))
        .count();
    let fdb_seen = objects
        .iter()
        .filter(|o| matches!(o, Object::Fdb(_)))
        .count();
    println!("after churn: {ports_seen} ports, {fdb_seen} fdb entries");
}
