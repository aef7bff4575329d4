//! Multicast routes from the real kernel: a small multicast routing daemon
//! (a thread of this test, in the synced namespace) opens the kernel's
//! IPv4 and IPv6 mroute sockets (MRT_INIT, MRT6_INIT), adds VIFs, MIFs and
//! an MFC entry, deletes some, and closes. The kernel announces the MFC
//! entries but none of the VIFs and MIFs: fpd must get them all the same.
//! And `--disable-sync-mcast`, `--disable-sync-ipv6`, restarts.

use std::os::fd::AsRawFd;
use std::sync::mpsc;
use std::time::Duration;

use fpc::{Mroute, MrouteVif, Object, QueryClient, AF_INET, AF_INET6};
use fpsync_tests::{bin, wait_until, Setup};

const SYNC: Duration = Duration::from_secs(3);
const MRT_INIT: libc::c_int = 200;
const MRT_DONE: libc::c_int = 201;
const MRT_ADD_VIF: libc::c_int = 202;
const MRT_DEL_VIF: libc::c_int = 203;
const MRT_ADD_MFC: libc::c_int = 204;
// The IPv6 options have the same numbers, at IPPROTO_IPV6.
const MRT6_INIT: libc::c_int = 200;
const MRT6_ADD_MIF: libc::c_int = 202;
const MRT6_DEL_MIF: libc::c_int = 203;
const MRT_TABLE: libc::c_int = 209;
const MRT6_TABLE: libc::c_int = 209;
const VIFF_REGISTER: u16 = 0x4;
const VIFF_USE_IFINDEX: u16 = 0x8;

/// Whether this kernel routes multicast (CONFIG_IP_MROUTE and
/// CONFIG_IPV6_MROUTE: their /proc files exist). Some kernels these tests
/// run on have neither; there the tests say so and stop (the decoder's
/// byte fixtures, captured where the kernel has them, still run).
fn no_multicast_routing() -> bool {
    let has = ["/proc/net/ip_mr_vif", "/proc/net/ip6_mr_vif"]
        .iter()
        .all(|p| std::path::Path::new(p).exists());
    if !has {
        eprintln!("SKIPPED: this kernel has no multicast routing (no /proc/net/ip_mr_vif)");
    }
    !has
}

fn fp_objects(s: &Setup) -> Vec<Object> {
    QueryClient::connect(&s.endpoint, "test", Duration::from_secs(5))
        .and_then(|mut c| c.dump())
        .unwrap()
}

fn mroutes(s: &Setup) -> Vec<Mroute> {
    fp_objects(s)
        .into_iter()
        .filter_map(|o| match o {
            Object::Mroute(m) => Some(m),
            _ => None,
        })
        .collect()
}

/// fpd's VIFs (`family` AF_INET) or MIFs (AF_INET6) as (table, index,
/// ifindex, flags), sorted.
fn vifs(s: &Setup, family: u8) -> Vec<(u32, u16, u32, u16)> {
    let mut v: Vec<_> = fp_objects(s)
        .into_iter()
        .filter_map(|o| match o {
            Object::MrouteVif(MrouteVif {
                family: f,
                table,
                vif,
                ifindex,
                flags,
                ..
            }) if f == family => Some((table, vif, ifindex, flags)),
            _ => None,
        })
        .collect();
    v.sort_unstable();
    v
}

fn ifindex(s: &Setup, name: &str) -> u32 {
    let v = s.ns.ip(&["-j", "link", "show", name]);
    let start = v.find("\"ifindex\":").unwrap() + 10;
    v[start..].split(',').next().unwrap().parse().unwrap()
}

fn setsockopt(fd: libc::c_int, level: libc::c_int, name: libc::c_int, value: &[u8]) {
    // SAFETY: `value` is a valid buffer of the length given.
    let r = unsafe {
        libc::setsockopt(
            fd,
            level,
            name,
            value.as_ptr() as *const libc::c_void,
            value.len() as libc::socklen_t,
        )
    };
    assert_eq!(
        r,
        0,
        "setsockopt {name}: {}",
        std::io::Error::last_os_error()
    );
}

/// The mroute sockets of the router thread: IPv4 and IPv6, -1 once closed.
struct Sockets {
    v4: libc::c_int,
    v6: libc::c_int,
}

impl Sockets {
    fn add_vif(&self, vifi: u16, ifindex: u32) {
        self.add_vif_with(vifi, VIFF_USE_IFINDEX, ifindex.to_ne_bytes());
    }

    /// `local` is the ifindex with VIFF_USE_IFINDEX, else the address.
    fn add_vif_with(&self, vifi: u16, flags: u16, local: [u8; 4]) {
        // struct vifctl: vifi, flags, threshold, rate_limit, local
        // (address or ifindex), remote.
        let mut vif = [0u8; 16];
        vif[0..2].copy_from_slice(&vifi.to_ne_bytes());
        vif[2] = flags as u8;
        vif[3] = 1;
        vif[8..12].copy_from_slice(&local);
        setsockopt(self.v4, libc::IPPROTO_IP, MRT_ADD_VIF, &vif);
    }

    fn del_vif(&self, vifi: u16) {
        let mut vif = [0u8; 16];
        vif[0..2].copy_from_slice(&vifi.to_ne_bytes());
        setsockopt(self.v4, libc::IPPROTO_IP, MRT_DEL_VIF, &vif);
    }

    /// Forwards (10.0.0.1, 239.1.1.1) from VIF `iif` to VIF `oif`.
    fn add_mfc(&self, iif: u16, oif: usize) {
        // struct mfcctl: origin, group, parent, ttls[32], counters.
        let mut mfc = [0u8; 60];
        mfc[0..4].copy_from_slice(&[10, 0, 0, 1]);
        mfc[4..8].copy_from_slice(&[239, 1, 1, 1]);
        mfc[8..10].copy_from_slice(&iif.to_ne_bytes());
        mfc[10 + oif] = 1; // TTL threshold 1
        setsockopt(self.v4, libc::IPPROTO_IP, MRT_ADD_MFC, &mfc);
    }

    fn add_mif(&self, mifi: u16, ifindex: u32) {
        // struct mif6ctl: mifi, flags, threshold, pifi (u16), rate_limit.
        let mut mif = [0u8; 12];
        mif[0..2].copy_from_slice(&mifi.to_ne_bytes());
        mif[3] = 1;
        mif[4..6].copy_from_slice(&(ifindex as u16).to_ne_bytes());
        setsockopt(self.v6, libc::IPPROTO_IPV6, MRT6_ADD_MIF, &mif);
    }

    fn del_mif(&self, mifi: u16) {
        setsockopt(
            self.v6,
            libc::IPPROTO_IPV6,
            MRT6_DEL_MIF,
            &mifi.to_ne_bytes(),
        );
    }

    /// MRT_DONE: the IPv4 routing daemon leaves (its VIFs and MFC
    /// entries go), the socket stays open.
    fn done_v4(&self) {
        setsockopt(self.v4, libc::IPPROTO_IP, MRT_DONE, &[]);
    }

    fn close_v6(&mut self) {
        // SAFETY: our own fd, closed once.
        unsafe { libc::close(self.v6) };
        self.v6 = -1;
    }
}

type Job = Box<dyn FnOnce(&mut Sockets) + Send>;

/// A multicast routing daemon on its own thread, in `netns`: runs jobs on
/// its mroute sockets, one at a time; dropping it closes them (the
/// kernel's mroute state goes with them) even when a test fails.
struct Router {
    jobs: Option<mpsc::Sender<(Job, mpsc::Sender<()>)>>,
    join: Option<std::thread::JoinHandle<()>>,
}

impl Router {
    fn start(netns: &str) -> Router {
        Self::start_in_table(netns, None)
    }

    /// With `table`, the sockets route that table (MRT_TABLE, MRT6_TABLE).
    fn start_in_table(netns: &str, table: Option<u32>) -> Router {
        let (tx, rx) = mpsc::channel::<(Job, mpsc::Sender<()>)>();
        let ns = std::fs::File::open(format!("/run/netns/{netns}")).unwrap();
        let join = std::thread::spawn(move || {
            // SAFETY: setns on this thread only, with a valid namespace fd.
            let entered = unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) };
            assert_eq!(entered, 0);
            let open = |domain, proto| {
                // SAFETY: plain socket(2); the result is checked.
                let fd =
                    unsafe { libc::socket(domain, libc::SOCK_RAW | libc::SOCK_CLOEXEC, proto) };
                assert!(fd >= 0, "{}", std::io::Error::last_os_error());
                fd
            };
            let mut socks = Sockets {
                v4: open(libc::AF_INET, libc::IPPROTO_IGMP),
                v6: open(libc::AF_INET6, libc::IPPROTO_ICMPV6),
            };
            let one = 1i32.to_ne_bytes();
            if let Some(t) = table {
                setsockopt(socks.v4, libc::IPPROTO_IP, MRT_TABLE, &t.to_ne_bytes());
                setsockopt(socks.v6, libc::IPPROTO_IPV6, MRT6_TABLE, &t.to_ne_bytes());
            }
            setsockopt(socks.v4, libc::IPPROTO_IP, MRT_INIT, &one);
            setsockopt(socks.v6, libc::IPPROTO_IPV6, MRT6_INIT, &one);
            for (job, done) in rx {
                let res =
                    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| job(&mut socks)));
                if res.is_ok() {
                    let _ = done.send(());
                }
            }
            for fd in [socks.v4, socks.v6] {
                if fd >= 0 {
                    // SAFETY: our own fds; closing ends the kernel's mroute state.
                    unsafe { libc::close(fd) };
                }
            }
        });
        Router {
            jobs: Some(tx),
            join: Some(join),
        }
    }

    fn run(&self, job: impl FnOnce(&mut Sockets) + Send + 'static) {
        let (done_tx, done_rx) = mpsc::channel();
        self.jobs
            .as_ref()
            .unwrap()
            .send((Box::new(job), done_tx))
            .unwrap();
        done_rx
            .recv_timeout(Duration::from_secs(5))
            .expect("the router's job failed");
    }

    /// Closes the sockets, as a routing daemon's exit does.
    fn stop(mut self) {
        self.shut();
    }

    fn shut(&mut self) {
        drop(self.jobs.take());
        if let Some(j) = self.join.take() {
            let _ = j.join();
        }
    }
}

impl Drop for Router {
    fn drop(&mut self) {
        self.shut();
    }
}

fn veths(s: &Setup) -> (u32, u32) {
    for (a, b) in [("mr0", "mr1"), ("mr2", "mr3")] {
        s.ns.ip(&["link", "add", a, "type", "veth", "peer", "name", b]);
        s.ns.ip(&["link", "set", a, "up"]);
        s.ns.ip(&["link", "set", b, "up"]);
    }
    s.ns.ip(&["addr", "add", "10.0.0.254/24", "dev", "mr0"]);
    s.ns.ip(&["addr", "add", "10.0.1.254/24", "dev", "mr2"]);
    (ifindex(s, "mr0"), ifindex(s, "mr2"))
}

/// A router with VIFs 0 and 1 and MIFs 0 and 1 on mr0 and mr2, and the
/// MFC entry (10.0.0.1, 239.1.1.1) from VIF 0 to VIF 1.
fn router(s: &Setup, a: u32, b: u32) -> Router {
    let r = Router::start(&s.ns.name);
    r.run(move |k| {
        k.add_vif(0, a);
        k.add_vif(1, b);
        k.add_mfc(0, 1);
        k.add_mif(0, a);
        k.add_mif(1, b);
    });
    r
}

const T4: u32 = 253; // the IPv4 default mroute table
const T6: u32 = 254; // the IPv6 one
const USE: u16 = VIFF_USE_IFINDEX;

#[test]
fn mfc_entries_from_a_multicast_router() {
    if no_multicast_routing() {
        return;
    }
    let s = Setup::new("mroute");
    let (a, b) = veths(&s);
    let r = router(&s, a, b);
    s.assert_in_sync(SYNC);
    let m = mroutes(&s);
    assert_eq!(m.len(), 1, "{m:?}");
    assert_eq!(m[0].source.to_string(), "10.0.0.1");
    assert_eq!(m[0].group.to_string(), "239.1.1.1");
    assert_eq!((m[0].iif, m[0].oifs.clone()), (a, vec![(b, 1)]));
    let shown = s.ns.ip(&["mroute", "show"]);
    assert!(shown.contains("239.1.1.1"), "{shown}");
    r.stop();
    s.assert_in_sync(SYNC);
    assert!(mroutes(&s).is_empty());
}

#[test]
fn vifs_and_mifs_follow_the_router_without_notifications() {
    if no_multicast_routing() {
        return;
    }
    let s = Setup::new("mvif");
    let (a, b) = veths(&s);
    let r = router(&s, a, b);
    s.assert_in_sync(SYNC);
    assert_eq!(vifs(&s, AF_INET), vec![(T4, 0, a, USE), (T4, 1, b, USE)]);
    assert_eq!(vifs(&s, AF_INET6), vec![(T6, 0, a, 0), (T6, 1, b, 0)]);
    // fpsync-check shows them in fpd's tables.
    let out = std::process::Command::new(bin("fpsync-check"))
        .args(["--fpc", &s.endpoint.to_string(), "--dump-fastpath"])
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.contains(&format!("mroute vif 1 table 253 ipv4 dev #{b} flags 0x8")),
        "{out}"
    );
    assert!(
        out.contains(&format!("mroute vif 0 table 254 ipv6 mif dev #{a}")),
        "{out}"
    );

    // MRT_DEL_VIF: the VIF goes, and the MFC entry loses its outgoing
    // VIF in the kernel's dumps, both without a notification.
    r.run(|k| k.del_vif(1));
    s.assert_in_sync(SYNC);
    assert_eq!(vifs(&s, AF_INET), vec![(T4, 0, a, USE)]);
    let m = mroutes(&s);
    assert_eq!((m.len(), m[0].iif, m[0].oifs.clone()), (1, a, vec![]));
    r.run(|k| k.del_mif(1));
    s.assert_in_sync(SYNC);
    assert_eq!(vifs(&s, AF_INET6), vec![(T6, 0, a, 0)]);
    let sync = s.console("show sync");
    assert!(!sync.contains("- silent changes: 0\n"), "{sync}");

    // A VIF set up by its local address, and the register VIF (on the
    // pimreg device the kernel makes for it).
    r.run(|k| {
        k.add_vif_with(2, 0, [10, 0, 1, 254]);
        k.add_vif_with(3, VIFF_REGISTER, [0; 4]);
    });
    s.assert_in_sync(SYNC);
    let pimreg = ifindex(&s, "pimreg");
    assert_eq!(
        vifs(&s, AF_INET),
        vec![
            (T4, 0, a, USE),
            (T4, 2, b, 0),
            (T4, 3, pimreg, VIFF_REGISTER)
        ]
    );
    let by_addr = fp_objects(&s).into_iter().find_map(|o| match o {
        Object::MrouteVif(v) if v.family == AF_INET && v.vif == 2 => Some(v),
        _ => None,
    });
    assert_eq!(by_addr.unwrap().local, Some("10.0.1.254".parse().unwrap()));

    // MRT_DONE takes the IPv4 VIFs and MFC entries, closing the IPv6
    // socket the MIFs.
    r.run(|k| k.done_v4());
    s.assert_in_sync(SYNC);
    assert_eq!(vifs(&s, AF_INET), vec![]);
    assert!(mroutes(&s).is_empty());
    assert_eq!(vifs(&s, AF_INET6), vec![(T6, 0, a, 0)]);
    r.run(|k| k.close_v6());
    // The socket's release can end after close(2) returns (the check
    // then still finds the MIF in Linux): wait for Linux to drop it.
    assert!(wait_until(SYNC, || vifs(&s, AF_INET6).is_empty()));
    s.assert_in_sync(SYNC);
    r.stop();
}

#[test]
fn mc_forwarding_news_alone_bring_vif_changes() {
    if no_multicast_routing() {
        return;
    }
    // No link poll: only the netconf news of the devices' mc_forwarding
    // tell cmgrd that a VIF or MIF came or went.
    let s = Setup::with_args("mvif-netconf", &["--link-poll", "0"]);
    let (a, b) = veths(&s);
    let r = router(&s, a, b);
    s.assert_in_sync(SYNC);
    r.run(|k| {
        k.del_vif(1);
        k.del_mif(0);
    });
    s.assert_in_sync(SYNC);
    assert_eq!(vifs(&s, AF_INET), vec![(T4, 0, a, USE)]);
    assert_eq!(vifs(&s, AF_INET6), vec![(T6, 1, b, 0)]);
    r.run(move |k| k.add_vif(3, b));
    s.assert_in_sync(SYNC);
    assert_eq!(vifs(&s, AF_INET), vec![(T4, 0, a, USE), (T4, 3, b, USE)]);
    r.stop();
    s.assert_in_sync(SYNC);
}

#[test]
fn vifs_of_every_ipv4_table() {
    if no_multicast_routing() {
        return;
    }
    let s = Setup::new("mvif-tables");
    let (a, b) = veths(&s);
    let main = router(&s, a, b);
    let other = Router::start_in_table(&s.ns.name, Some(7));
    other.run(move |k| {
        k.add_vif(4, b);
        k.add_mif(4, b);
    });
    s.assert_in_sync(SYNC);
    assert_eq!(
        vifs(&s, AF_INET),
        vec![(7, 4, b, USE), (T4, 0, a, USE), (T4, 1, b, USE)]
    );
    // IPv6 shows the MIFs of its default table only (/proc/net/ip6_mr_vif).
    assert_eq!(vifs(&s, AF_INET6), vec![(T6, 0, a, 0), (T6, 1, b, 0)]);
    other.stop();
    s.assert_in_sync(SYNC);
    assert_eq!(vifs(&s, AF_INET), vec![(T4, 0, a, USE), (T4, 1, b, USE)]);
    main.stop();
    s.assert_in_sync(SYNC);
}

#[test]
fn a_link_deleted_takes_its_vifs() {
    if no_multicast_routing() {
        return;
    }
    let s = Setup::new("mvif-link");
    let (a, b) = veths(&s);
    let r = router(&s, a, b);
    s.assert_in_sync(SYNC);
    s.ns.ip(&["link", "del", "mr2"]);
    s.assert_in_sync(SYNC);
    assert_eq!(vifs(&s, AF_INET), vec![(T4, 0, a, USE)]);
    assert_eq!(vifs(&s, AF_INET6), vec![(T6, 0, a, 0)]);
    r.stop();
    s.assert_in_sync(SYNC);
}

#[test]
fn restarts_carry_the_vifs() {
    if no_multicast_routing() {
        return;
    }
    let mut s = Setup::new("mvif-restart");
    let (a, b) = veths(&s);
    let r = router(&s, a, b);
    s.assert_in_sync(SYNC);
    // kill -9 fpd: the replay carries them.
    s.fpd.as_mut().unwrap().kill();
    s.start_fpd();
    s.assert_in_sync(SYNC);
    assert_eq!(vifs(&s, AF_INET), vec![(T4, 0, a, USE), (T4, 1, b, USE)]);
    assert_eq!(vifs(&s, AF_INET6), vec![(T6, 0, a, 0), (T6, 1, b, 0)]);
    // kill -9 cmgrd, and change them meanwhile: its dump and the sweep.
    s.cmgrd.as_mut().unwrap().kill();
    r.run(|k| {
        k.del_vif(0);
        k.del_mif(1);
    });
    s.start_cmgrd();
    s.assert_in_sync(SYNC);
    assert_eq!(vifs(&s, AF_INET), vec![(T4, 1, b, USE)]);
    assert_eq!(vifs(&s, AF_INET6), vec![(T6, 0, a, 0)]);
    r.stop();
    s.assert_in_sync(SYNC);
}

#[test]
fn disable_sync_mcast_keeps_them_out() {
    if no_multicast_routing() {
        return;
    }
    let s = Setup::with_args("mroute-off", &["--disable-sync-mcast"]);
    let (a, b) = veths(&s);
    let r = router(&s, a, b);
    s.assert_in_sync(SYNC);
    std::thread::sleep(Duration::from_millis(700)); // past a link poll
    let multicast: Vec<_> = fp_objects(&s)
        .into_iter()
        .filter(|o| matches!(o, Object::Mroute(_) | Object::MrouteVif(_)))
        .collect();
    assert!(multicast.is_empty(), "{multicast:?}");
    r.stop();
}

#[test]
fn disable_sync_ipv6_keeps_only_the_mifs_out() {
    if no_multicast_routing() {
        return;
    }
    let s = Setup::with_args("mvif-nov6", &["--disable-sync-ipv6"]);
    let (a, b) = veths(&s);
    let r = router(&s, a, b);
    s.assert_in_sync(SYNC);
    std::thread::sleep(Duration::from_millis(700)); // past a link poll
    assert_eq!(vifs(&s, AF_INET), vec![(T4, 0, a, USE), (T4, 1, b, USE)]);
    assert_eq!(vifs(&s, AF_INET6), vec![]);
    r.stop();
    s.assert_in_sync(SYNC);
}

/// Carrier loss on a link carrying VIFs and MIFs (its veth peer down,
/// the link left up): ipmr and ip6mr act on unregister only, so the VIFs,
/// MIFs and the MFC entry stay, and so they must in fpd; carrier back,
/// the same. Admin down and the link's deletion then take them.
#[test]
fn carrier_loss_under_vifs() {
    if no_multicast_routing() {
        return;
    }
    let s = Setup::new("mrcarrier");
    let (a, b) = veths(&s);
    let _r = router(&s, a, b);
    s.assert_equal_to_linux(SYNC);
    s.ns.ip(&["link", "set", "mr1", "down"]);
    let no_carrier = || s.ns.ip(&["link", "show", "mr0"]).contains("NO-CARRIER");
    assert!(fpsync_tests::wait_until(SYNC, no_carrier));
    s.assert_equal_to_linux(SYNC);
    assert_eq!(vifs(&s, AF_INET).len(), 2);
    assert_eq!(vifs(&s, AF_INET6).len(), 2);
    assert_eq!(mroutes(&s).len(), 1);
    s.ns.ip(&["link", "set", "mr1", "up"]);
    s.assert_equal_to_linux(SYNC);
    s.ns.ip(&["link", "set", "mr0", "down"]);
    s.assert_equal_to_linux(SYNC);
    s.ns.ip(&["link", "del", "mr0"]);
    s.assert_equal_to_linux(SYNC);
    assert_eq!(vifs(&s, AF_INET).len(), 1);
}
