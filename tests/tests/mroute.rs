//! Multicast routes from the real kernel: a small multicast routing daemon
//! (this test's thread) opens the kernel's mroute socket in the synced
//! namespace (MRT_INIT), adds two VIFs and an MFC entry; closing it
//! removes them. And `--disable-sync-mcast`.

use std::os::fd::AsRawFd;
use std::sync::mpsc;
use std::time::Duration;

use fastpath::fpc::{Mroute, Object, QueryClient};
use fpsync_tests::Setup;

const SYNC: Duration = Duration::from_secs(2);
const MRT_INIT: libc::c_int = 200;
const MRT_ADD_VIF: libc::c_int = 202;
const MRT_ADD_MFC: libc::c_int = 204;
const VIFF_USE_IFINDEX: u8 = 0x8;

fn mroutes(s: &Setup) -> Vec<Mroute> {
    QueryClient::connect(&s.endpoint, "test", Duration::from_secs(5))
        .and_then(|mut c| c.dump())
        .unwrap()
        .into_iter()
        .filter_map(|o| match o {
            Object::Mroute(m) => Some(m),
            _ => None,
        })
        .collect()
}

fn ifindex(s: &Setup, name: &str) -> u32 {
    let v = s.ns.ip(&["-j", "link", "show", name]);
    let start = v.find("\"ifindex\":").unwrap() + 10;
    v[start..].split(',').next().unwrap().parse().unwrap()
}

fn setsockopt(fd: libc::c_int, name: libc::c_int, value: &[u8]) {
    // SAFETY: `value` is a valid buffer of the length given.
    let r = unsafe {
        libc::setsockopt(
            fd,
            libc::IPPROTO_IP,
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

/// Runs a multicast router in `netns` with VIF 0 on `iif` and VIF 1 on
/// `oif`, forwarding (10.0.0.1, 239.1.1.1) from VIF 0 to VIF 1, until the
/// returned sender is dropped.
fn mrouted(netns: &str, iif: u32, oif: u32) -> (mpsc::Sender<()>, std::thread::JoinHandle<()>) {
    let (stop_tx, stop_rx) = mpsc::channel::<()>();
    let (ready_tx, ready_rx) = mpsc::channel::<()>();
    let ns = std::fs::File::open(format!("/run/netns/{netns}")).unwrap();
    let join = std::thread::spawn(move || {
        // SAFETY: setns on this thread only, with a valid namespace fd.
        let entered = unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) };
        assert_eq!(entered, 0);
        // SAFETY: plain socket(2); the result is checked.
        let fd = unsafe {
            libc::socket(
                libc::AF_INET,
                libc::SOCK_RAW | libc::SOCK_CLOEXEC,
                libc::IPPROTO_IGMP,
            )
        };
        assert!(fd >= 0);
        setsockopt(fd, MRT_INIT, &1i32.to_ne_bytes());
        for (vifi, ifindex) in [(0u16, iif), (1, oif)] {
            // struct vifctl: vifi, flags, threshold, rate_limit, ifindex, rmt.
            let mut vif = [0u8; 16];
            vif[0..2].copy_from_slice(&vifi.to_ne_bytes());
            vif[2] = VIFF_USE_IFINDEX;
            vif[3] = 1;
            vif[8..12].copy_from_slice(&ifindex.to_ne_bytes());
            setsockopt(fd, MRT_ADD_VIF, &vif);
        }
        // struct mfcctl: origin, group, parent, ttls[32], counters.
        let mut mfc = [0u8; 60];
        mfc[0..4].copy_from_slice(&[10, 0, 0, 1]);
        mfc[4..8].copy_from_slice(&[239, 1, 1, 1]);
        mfc[8..10].copy_from_slice(&0u16.to_ne_bytes());
        mfc[10 + 1] = 1; // forward on VIF 1 with TTL threshold 1
        setsockopt(fd, MRT_ADD_MFC, &mfc);
        ready_tx.send(()).unwrap();
        let _ = stop_rx.recv();
        // SAFETY: fd is ours; closing it ends the kernel's mroute state.
        unsafe { libc::close(fd) };
    });
    ready_rx
        .recv_timeout(Duration::from_secs(5))
        .expect("mrouted ready");
    (stop_tx, join)
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

#[test]
fn mfc_entries_from_a_multicast_router() {
    let s = Setup::new("mroute");
    let (iif, oif) = veths(&s);
    let (stop, join) = mrouted(&s.ns.name, iif, oif);
    s.assert_in_sync(SYNC);
    let m = mroutes(&s);
    assert_eq!(m.len(), 1, "{m:?}");
    assert_eq!(m[0].source.to_string(), "10.0.0.1");
    assert_eq!(m[0].group.to_string(), "239.1.1.1");
    assert_eq!((m[0].iif, m[0].oifs.clone()), (iif, vec![(oif, 1)]));
    let shown = s.ns.ip(&["mroute", "show"]);
    assert!(shown.contains("239.1.1.1"), "{shown}");
    drop(stop);
    join.join().unwrap();
    s.assert_in_sync(SYNC);
    assert!(mroutes(&s).is_empty());
}

#[test]
fn disable_sync_mcast_keeps_them_out() {
    let s = Setup::with_args("mroute-off", &["--disable-sync-mcast"]);
    let (iif, oif) = veths(&s);
    let (stop, join) = mrouted(&s.ns.name, iif, oif);
    s.assert_in_sync(SYNC);
    std::thread::sleep(Duration::from_millis(200));
    assert!(mroutes(&s).is_empty());
    drop(stop);
    join.join().unwrap();
}
