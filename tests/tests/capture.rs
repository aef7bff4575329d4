//! BPF capture filters: `tcpdump -i lo 'udp port 53'` in the synced
//! namespace makes its filter appear in fpd, and disappear when tcpdump
//! exits; a program not in the seed's list (this test, attaching a filter
//! to a packet socket of its own) is ignored unless `-A`; and
//! `--disable-sync-bpf`.

use std::os::fd::AsRawFd;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use fpc::{CaptureFilter, Object, QueryClient};
use fpsync_tests::{wait_until, Setup};

const SYNC: Duration = Duration::from_secs(2);

fn filters(s: &Setup) -> Vec<CaptureFilter> {
    QueryClient::connect(&s.endpoint, "test", Duration::from_secs(5))
        .and_then(|mut c| c.dump())
        .unwrap()
        .into_iter()
        .filter_map(|o| match o {
            Object::CaptureFilter(c) => Some(c),
            _ => None,
        })
        .collect()
}

/// A child killed (by its pid) on drop.
struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn tcpdump(s: &Setup) -> Killed {
    Killed(
        Command::new("ip")
            .args(["netns", "exec", &s.ns.name])
            .args(["tcpdump", "-i", "lo", "-n", "udp port 53"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    )
}

/// A packet socket with a one-instruction filter (`ret #0`), owned by this
/// test process, in `netns`, until the sender is dropped.
fn own_filter(netns: &str) -> (mpsc::Sender<()>, std::thread::JoinHandle<()>) {
    let (stop_tx, stop_rx) = mpsc::channel::<()>();
    let (ready_tx, ready_rx) = mpsc::channel::<()>();
    let ns = std::fs::File::open(format!("/run/netns/{netns}")).unwrap();
    let join = std::thread::spawn(move || {
        // SAFETY: setns on this thread only, with a valid namespace fd.
        let entered = unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) };
        assert_eq!(entered, 0);
        let proto = (libc::ETH_P_ALL as u16).to_be() as libc::c_int;
        // SAFETY: plain socket(2); the result is checked.
        let fd =
            unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW | libc::SOCK_CLOEXEC, proto) };
        assert!(fd >= 0);
        let mut insn = [libc::sock_filter {
            code: 0x06,
            jt: 0,
            jf: 0,
            k: 0,
        }];
        let prog = libc::sock_fprog {
            len: 1,
            filter: insn.as_mut_ptr(),
        };
        // SAFETY: `prog` points at `insn`, both alive across the call.
        let r = unsafe {
            libc::setsockopt(
                fd,
                libc::SOL_SOCKET,
                libc::SO_ATTACH_FILTER,
                &prog as *const _ as *const libc::c_void,
                std::mem::size_of::<libc::sock_fprog>() as libc::socklen_t,
            )
        };
        assert_eq!(r, 0, "{}", std::io::Error::last_os_error());
        ready_tx.send(()).unwrap();
        let _ = stop_rx.recv();
        // SAFETY: fd is ours.
        unsafe { libc::close(fd) };
    });
    ready_rx.recv_timeout(Duration::from_secs(5)).unwrap();
    (stop_tx, join)
}

#[test]
fn tcpdump_filter_comes_and_goes() {
    let s = Setup::new("bpf");
    let td = tcpdump(&s);
    assert!(
        wait_until(Duration::from_secs(5), || filters(&s)
            .iter()
            .any(|c| c.process == "tcpdump")),
        "no tcpdump filter in fpd"
    );
    s.assert_in_sync(SYNC);
    let f = filters(&s);
    assert_eq!(f.len(), 1, "{f:?}");
    assert!(f[0].program.len() >= 8 && f[0].program.len().is_multiple_of(8));
    drop(td);
    assert!(wait_until(Duration::from_secs(5), || filters(&s).is_empty()));
    s.assert_in_sync(SYNC);
}

#[test]
fn other_programs_only_with_dash_a() {
    let s = Setup::new("bpf-other");
    let (stop, join) = own_filter(&s.ns.name);
    std::thread::sleep(Duration::from_millis(700));
    s.assert_in_sync(SYNC);
    let f = filters(&s);
    assert!(f.is_empty(), "ignored without -A: {f:?}");
    drop(stop);
    join.join().unwrap();
    drop(s);

    let s = Setup::with_args("bpf-all", &["-A"]);
    let (stop, join) = own_filter(&s.ns.name);
    assert!(wait_until(Duration::from_secs(5), || filters(&s).len() == 1));
    s.assert_in_sync(SYNC);
    assert_eq!(filters(&s)[0].program, [0x06, 0, 0, 0, 0, 0, 0, 0]);
    drop(stop);
    join.join().unwrap();
    assert!(wait_until(Duration::from_secs(5), || filters(&s).is_empty()));
}

/// The `tap pattern only` bit (0x4000) is what restricts BPF to the
/// capture tools: a mask without it syncs any process's filter, as -A
/// does; the full mask (the default) keeps the restriction.
#[test]
fn tap_pattern_only_bit_restricts_to_capture_tools() {
    let s = Setup::with_args("bpf-nopattern", &["-S", "0x1bfff"]);
    assert!(s
        .console("show conf")
        .contains("sync_bpf_pattern_only=false\n"));
    let (stop, join) = own_filter(&s.ns.name);
    assert!(wait_until(Duration::from_secs(5), || filters(&s).len() == 1));
    s.assert_in_sync(SYNC);
    drop(stop);
    join.join().unwrap();
    assert!(wait_until(Duration::from_secs(5), || filters(&s).is_empty()));
    drop(s);

    let s = Setup::with_args("bpf-pattern", &["-S", "0x1ffff"]);
    assert!(s
        .console("show conf")
        .contains("sync_bpf_pattern_only=true\n"));
    let (stop, join) = own_filter(&s.ns.name);
    let _td = tcpdump(&s);
    assert!(wait_until(Duration::from_secs(5), || filters(&s)
        .iter()
        .any(|c| c.process == "tcpdump")));
    s.assert_in_sync(SYNC);
    let f = filters(&s);
    assert!(f.iter().all(|c| c.process == "tcpdump"), "{f:?}");
    drop(stop);
    join.join().unwrap();
}

#[test]
fn disable_sync_bpf_keeps_them_out() {
    let s = Setup::with_args("bpf-off", &["--disable-sync-bpf"]);
    let _td = tcpdump(&s);
    std::thread::sleep(Duration::from_millis(1000));
    s.assert_in_sync(SYNC);
    assert!(filters(&s).is_empty());
}
