//! Ports: how frames get in and out of fpd. A backend opens, for one
//! interface, receive queues (each polled by one worker) and transmit
//! queues (one per worker and interface, so that no queue is shared).
//!
//! Backends: AF_PACKET with a TPACKET_V3 (or V2) receive ring and a
//! TPACKET_V2 transmit ring ([`afpacket`]); AF_XDP with a UMEM,
//! fill/completion/rx/tx rings, a redirect program and a TAP back to Linux
//! ([`xdp`]).

use std::io;
use std::os::fd::RawFd;

use crate::wire::ethernet::Mac;

/// What a port is, as found when it was opened.
#[derive(Debug, Clone)]
pub(crate) struct PortInfo {
    pub name: String,
    pub ifindex: u32,
    pub mac: Mac,
    pub mtu: u32,
}

pub(crate) mod afpacket;
pub(crate) mod xdp;
mod xdp_prog;

/// Frames received on one interface.
pub(crate) trait RxQueue: Send {
    /// For poll(2): readable when frames wait.
    fn fd(&self) -> RawFd;

    /// Hands received frames to `f`, each writable in place (it is
    /// rewritten before being sent on), about `budget` of them at most;
    /// returns how many. A frame `f` leaves to Linux (an exception) is
    /// handed to Linux when the backend took it away.
    fn recv_burst(&mut self, budget: usize, f: &mut dyn FnMut(&mut [u8], RxMeta) -> Fate) -> usize;

    /// Frames lost since the last call: the kernel found the ring full, or
    /// a frame did not fit a slot.
    fn take_drops(&mut self) -> u64;
}

/// What the kernel says of a received frame beyond its bytes.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct RxMeta {
    /// The TCP/UDP checksum is partial (a local sender offloaded it): it
    /// must be completed before the frame leaves.
    pub csum_partial: bool,
}

/// What became of a received frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Fate {
    /// Forwarded or dropped by fpd.
    Done,
    /// Left to Linux: AF_PACKET has nothing to do (Linux has its own
    /// copy); AF_XDP gives it back.
    ToLinux,
}

/// Frames sent on one interface.
pub(crate) trait TxQueue: Send {
    /// Queues a copy of `frame`; false when the queue is full.
    fn push(&mut self, frame: &[u8]) -> bool;

    /// Hands what was queued to the kernel.
    fn flush(&mut self);
}

/// Opens queues on interfaces.
pub(crate) trait Backend: Send + Sync {
    fn name(&self) -> &'static str;
    fn open_rx(&self, port: &PortInfo) -> io::Result<Box<dyn RxQueue>>;
    fn open_tx(&self, port: &PortInfo) -> io::Result<Box<dyn TxQueue>>;
}

/// What `ip link` says of an interface, by name, in the calling thread's
/// namespace (not through /sys, which shows the namespace of whoever
/// mounted it).
pub(crate) fn port_info(name: &str) -> io::Result<PortInfo> {
    let cname = std::ffi::CString::new(name)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "interface name with a NUL"))?;
    // SAFETY: if_nametoindex reads a NUL-terminated string we own.
    let ifindex = unsafe { libc::if_nametoindex(cname.as_ptr()) };
    if ifindex == 0 {
        let e = io::Error::last_os_error();
        return Err(io::Error::new(e.kind(), format!("interface {name:?}: {e}")));
    }
    let hw = ifreq_ioctl(name, libc::SIOCGIFHWADDR)?;
    // SAFETY: SIOCGIFHWADDR set the ifr_hwaddr member of the union.
    let sa = unsafe { hw.ifr_ifru.ifru_hwaddr };
    let mut mac = [0u8; 6];
    for (m, b) in mac.iter_mut().zip(sa.sa_data.iter()) {
        *m = *b as u8;
    }
    let m = ifreq_ioctl(name, libc::SIOCGIFMTU)?;
    // SAFETY: SIOCGIFMTU set the ifr_mtu member of the union.
    let mtu = unsafe { m.ifr_ifru.ifru_mtu };
    Ok(PortInfo {
        name: name.to_owned(),
        ifindex,
        mac,
        mtu: mtu.max(0) as u32,
    })
}

/// One SIOCGIF* ioctl on `name`.
fn ifreq_ioctl(name: &str, request: libc::Ioctl) -> io::Result<libc::ifreq> {
    // SAFETY: a plain socket(2) call; the descriptor is closed below.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: ifreq is plain data; zeroed is a valid value.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    for (dst, src) in req
        .ifr_name
        .iter_mut()
        .zip(name.bytes().take(libc::IFNAMSIZ - 1))
    {
        *dst = src as libc::c_char;
    }
    // SAFETY: the request fills `req`, which lives across the call.
    let ret = unsafe { libc::ioctl(fd, request, &mut req) };
    let err = io::Error::last_os_error();
    // SAFETY: `fd` is ours and closed once.
    unsafe { libc::close(fd) };
    if ret < 0 {
        return Err(io::Error::new(
            err.kind(),
            format!("interface {name:?}: {err}"),
        ));
    }
    Ok(req)
}
