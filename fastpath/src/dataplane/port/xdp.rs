//! AF_XDP ports: per interface, one AF_XDP socket bound to receive queue 0
//! with its own UMEM, the XDP program of [`xdp_prog`](super::xdp_prog)
//! redirecting IPv4 and IPv6 to it, and a TAP through which frames fpd
//! does not forward go back to Linux.
//!
//! UMEM: `FRAMES` chunks of `FRAME_SIZE` bytes. The first half belongs to
//! receive: every chunk is either in the fill ring, in the rx ring, or
//! being looked at by the worker, which gives it back to the fill ring at
//! once (forwarded frames are copied to the output port's UMEM), so the
//! fill ring never runs dry. The second half belongs to transmit: a stack
//! of free chunks, refilled from the completion ring.
//!
//! Exception path: the XDP program takes IPv4 and IPv6 away from Linux,
//! so what fpd leaves to Linux (local destination, no route, no
//! neighbour, TTL expiry, options, multicast, and whatever the
//! configuration makes fpd unable to decide exactly) is written to a TAP
//! named after the port (`fpx-<port>`), with the port's MAC, whose tcx
//! program hands it to the port's own receive path
//! ([`IngressRedirect`]): Linux takes it as if it came from the wire on
//! the port, so `iif` rules, rp_filter, conntrack and Linux's own
//! forwarding treat it exactly as they would without fpd. ARP and IPv6
//! neighbour discovery are never redirected: they reach Linux on the port
//! itself.
//!
//! Kernel quirks:
//! * Without a driver that supports zero-copy (veth has none) the socket is
//!   bound in copy mode; the kernel copies each frame into the UMEM.
//! * In copy mode a `sendto` sends at most 32 frames (TX_BATCH_SIZE) and
//!   answers EAGAIN while more wait: `flush` calls it until the ring drains.
//! * Two sockets cannot bind the same interface queue: when several workers
//!   transmit on a port, the first gets the socket's tx ring and the
//!   others an AF_PACKET ring.
//! * AF_XDP says nothing of checksums: a frame whose UDP or TCP checksum a
//!   sender on this host offloaded (veth peers do) arrives with only the
//!   pseudo-header sum in the field. [`looks_partial`] recognises it, and
//!   the worker completes it before sending it on, as it does for
//!   AF_PACKET's TP_STATUS_CSUMNOTREADY.
//! * Only queue 0 is bound: frames the driver spreads to other queues find
//!   no socket in the map and go to Linux (veth has one queue by default).
//!
//! Invariants: ring entries are read after an acquire load of the
//! producer, and handed back with a release store of the consumer (and
//! the other way round for the rings fpd produces); the rx half of the
//! UMEM is touched only by the worker that owns the rx queue, the tx half
//! only by the one that owns the tx queue.

use std::collections::HashMap;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use super::afpacket::TxRing;
use super::xdp_prog::{
    IngressRedirect, XdpAttachment, LINUX_MARK_ETHERTYPE, LINUX_MARK_LEN, LINUX_MARK_SRC,
};
use super::PortInfo;
use super::{Backend, Fate, RxMeta, RxQueue, TxQueue};

/// UMEM chunks: half for receive, half for transmit.
const FRAMES: u32 = 4096;
const FRAME_SIZE: u32 = 2048;
const RX_FRAMES: u32 = FRAMES / 2;
/// Ring sizes (powers of two): the fill and rx rings hold every receive
/// chunk, the tx and completion rings every transmit chunk.
const RING: u32 = FRAMES / 2;

pub(crate) struct AfXdp {
    /// Sockets opened for a port, by ifindex, until both halves are taken.
    opened: Mutex<HashMap<u32, Halves>>,
}

#[derive(Default)]
struct Halves {
    rx: Option<XskRx>,
    tx: Option<XskTx>,
    /// Both halves were made (a later open_tx falls back to AF_PACKET).
    made: bool,
}

impl AfXdp {
    pub(crate) fn new() -> AfXdp {
        AfXdp {
            opened: Mutex::new(HashMap::new()),
        }
    }

    fn halves<T>(&self, port: &PortInfo, take: impl FnOnce(&mut Halves) -> T) -> io::Result<T> {
        let mut opened = self.opened.lock().unwrap_or_else(PoisonError::into_inner);
        let h = opened.entry(port.ifindex).or_default();
        if !h.made {
            let (rx, tx) = open_socket(port)?;
            h.rx = Some(rx);
            h.tx = Some(tx);
            h.made = true;
        }
        Ok(take(h))
    }
}

impl Backend for AfXdp {
    fn name(&self) -> &'static str {
        "af_xdp (copy mode)"
    }

    fn open_rx(&self, port: &PortInfo) -> io::Result<Box<dyn RxQueue>> {
        match self.halves(port, |h| h.rx.take())? {
            Some(rx) => Ok(Box::new(rx)),
            None => Err(io::Error::other("a second receive queue on one port")),
        }
    }

    fn open_tx(&self, port: &PortInfo) -> io::Result<Box<dyn TxQueue>> {
        match self.halves(port, |h| h.tx.take())? {
            Some(tx) => Ok(Box::new(tx)),
            None => Ok(Box::new(TxRing::open(port)?)),
        }
    }
}

fn check(ret: libc::c_int, what: &str) -> io::Result<libc::c_int> {
    if ret < 0 {
        let e = io::Error::last_os_error();
        Err(io::Error::new(e.kind(), format!("{what}: {e}")))
    } else {
        Ok(ret)
    }
}

fn setsockopt<T>(fd: &OwnedFd, name: libc::c_int, value: &T, what: &str) -> io::Result<()> {
    check(
        // SAFETY: `value` is a live T of the size given.
        unsafe {
            libc::setsockopt(
                fd.as_raw_fd(),
                libc::SOL_XDP,
                name,
                value as *const T as *const libc::c_void,
                std::mem::size_of::<T>() as libc::socklen_t,
            )
        },
        what,
    )
    .map(drop)
}

/// A shared mapping (the UMEM, or one ring), unmapped on drop.
struct Mmap {
    ptr: NonNull<u8>,
    len: usize,
}

// SAFETY: plain memory shared with the kernel; each part of it is used by
// one thread at a time (module invariants).
unsafe impl Send for Mmap {}
// SAFETY: as above; the UMEM is shared by the rx and tx halves, which
// touch disjoint chunks.
unsafe impl Sync for Mmap {}

impl Mmap {
    /// Anonymous memory for the UMEM, or (`fd`) a ring at `offset`.
    fn new(fd: Option<&OwnedFd>, len: usize, offset: libc::off_t) -> io::Result<Mmap> {
        let (flags, raw) = match fd {
            Some(fd) => (libc::MAP_SHARED | libc::MAP_POPULATE, fd.as_raw_fd()),
            None => (
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_POPULATE,
                -1,
            ),
        };
        // SAFETY: a fresh mapping of `len` bytes; checked below.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                flags,
                raw,
                offset,
            )
        };
        if ptr == libc::MAP_FAILED {
            let e = io::Error::last_os_error();
            return Err(io::Error::new(e.kind(), format!("mmap: {e}")));
        }
        Ok(Mmap {
            ptr: NonNull::new(ptr as *mut u8)
                .ok_or_else(|| io::Error::other("mmap returned null"))?,
            len,
        })
    }
}

impl Drop for Mmap {
    fn drop(&mut self) {
        // SAFETY: unmaps exactly what `new` mapped, once.
        unsafe { libc::munmap(self.ptr.as_ptr() as *mut libc::c_void, self.len) };
    }
}

/// One of the four rings: producer and consumer indexes and `RING`
/// descriptors of type `D` (u64 addresses, or xdp_desc).
struct Ring<D> {
    _map: Mmap,
    producer: *const AtomicU32,
    consumer: *const AtomicU32,
    desc: *mut D,
    /// The index this side moves, kept locally and published in batches.
    local: u32,
}

// SAFETY: the ring's pointers point into its own mapping, which moves with
// it; one thread uses a ring at a time.
unsafe impl<D> Send for Ring<D> {}

impl<D> Ring<D> {
    fn map(fd: &OwnedFd, off: &libc::xdp_ring_offset, pgoff: u64) -> io::Result<Ring<D>> {
        let len = off.desc as usize + RING as usize * std::mem::size_of::<D>();
        let map = Mmap::new(Some(fd), len, pgoff as libc::off_t)?;
        let base = map.ptr.as_ptr();
        // SAFETY: the kernel's offsets lie inside the mapping it sized;
        // producer and consumer are 4-aligned u32s it only accesses
        // atomically.
        let (producer, consumer, desc) = unsafe {
            (
                base.add(off.producer as usize) as *const AtomicU32,
                base.add(off.consumer as usize) as *const AtomicU32,
                base.add(off.desc as usize) as *mut D,
            )
        };
        Ok(Ring {
            _map: map,
            producer,
            consumer,
            desc,
            local: 0,
        })
    }

    fn producer(&self) -> &AtomicU32 {
        // SAFETY: points into `self._map` (see `map`).
        unsafe { &*self.producer }
    }

    fn consumer(&self) -> &AtomicU32 {
        // SAFETY: points into `self._map` (see `map`).
        unsafe { &*self.consumer }
    }

    /// The descriptor at index `i` (masked).
    fn slot(&self, i: u32) -> *mut D {
        // SAFETY: masked to the ring's RING descriptors, inside the map.
        unsafe { self.desc.add((i & (RING - 1)) as usize) }
    }
}

/// What the rx and tx halves of a port's socket share.
struct Socket {
    // Drop order: the socket before the UMEM it uses, the program after.
    fd: OwnedFd,
    umem: Mmap,
    _xdp: XdpAttachment,
}

impl Socket {
    /// The chunk at UMEM address `addr`, `len` bytes.
    ///
    /// # Safety
    /// `addr + len` lies inside the UMEM, and the caller owns that chunk.
    #[allow(clippy::mut_from_ref)]
    unsafe fn chunk(&self, addr: u64, len: usize) -> &mut [u8] {
        // SAFETY: per the contract.
        unsafe { std::slice::from_raw_parts_mut(self.umem.ptr.as_ptr().add(addr as usize), len) }
    }
}

/// The receive half: rx and fill rings, the TAP back to Linux.
pub(crate) struct XskRx {
    rx: Ring<libc::xdp_desc>,
    fill: Ring<u64>,
    tap: Tap,
    socket: Arc<Socket>,
    /// The kernel's drop counters when last read (they are cumulative).
    seen_drops: u64,
    bad: u64,
}

/// The transmit half: tx and completion rings, the free tx chunks.
pub(crate) struct XskTx {
    tx: Ring<libc::xdp_desc>,
    comp: Ring<u64>,
    free: Vec<u64>,
    socket: Arc<Socket>,
}

fn open_socket(port: &PortInfo) -> io::Result<(XskRx, XskTx)> {
    let umem = Mmap::new(None, (FRAMES * FRAME_SIZE) as usize, 0)?;
    // SAFETY: a plain socket(2) call; the result is checked.
    let raw = check(
        unsafe { libc::socket(libc::AF_XDP, libc::SOCK_RAW | libc::SOCK_CLOEXEC, 0) },
        "AF_XDP socket",
    )?;
    // SAFETY: `raw` is a fresh descriptor that nothing else owns.
    let fd = unsafe { OwnedFd::from_raw_fd(raw) };
    let reg = libc::xdp_umem_reg {
        addr: umem.ptr.as_ptr() as u64,
        len: umem.len as u64,
        chunk_size: FRAME_SIZE,
        headroom: 0,
        flags: 0,
        tx_metadata_len: 0,
    };
    setsockopt(&fd, libc::XDP_UMEM_REG, &reg, "XDP_UMEM_REG")?;
    let size = RING as libc::c_int;
    setsockopt(&fd, libc::XDP_UMEM_FILL_RING, &size, "XDP_UMEM_FILL_RING")?;
    setsockopt(
        &fd,
        libc::XDP_UMEM_COMPLETION_RING,
        &size,
        "XDP_UMEM_COMPLETION_RING",
    )?;
    setsockopt(&fd, libc::XDP_RX_RING, &size, "XDP_RX_RING")?;
    setsockopt(&fd, libc::XDP_TX_RING, &size, "XDP_TX_RING")?;
    // SAFETY: xdp_mmap_offsets is plain data; zeroed is a valid value.
    let mut off: libc::xdp_mmap_offsets = unsafe { std::mem::zeroed() };
    let mut len = std::mem::size_of::<libc::xdp_mmap_offsets>() as libc::socklen_t;
    check(
        // SAFETY: XDP_MMAP_OFFSETS fills `off`; `len` says its size.
        unsafe {
            libc::getsockopt(
                fd.as_raw_fd(),
                libc::SOL_XDP,
                libc::XDP_MMAP_OFFSETS,
                &mut off as *mut _ as *mut libc::c_void,
                &mut len,
            )
        },
        "XDP_MMAP_OFFSETS",
    )?;
    let rx: Ring<libc::xdp_desc> = Ring::map(&fd, &off.rx, libc::XDP_PGOFF_RX_RING as u64)?;
    let tx: Ring<libc::xdp_desc> = Ring::map(&fd, &off.tx, libc::XDP_PGOFF_TX_RING as u64)?;
    let mut fill: Ring<u64> = Ring::map(&fd, &off.fr, libc::XDP_UMEM_PGOFF_FILL_RING)?;
    let comp: Ring<u64> = Ring::map(&fd, &off.cr, libc::XDP_UMEM_PGOFF_COMPLETION_RING)?;
    // Every receive chunk goes to the fill ring before the bind.
    for i in 0..RX_FRAMES {
        // SAFETY: the slot is inside the fill ring, not yet published.
        unsafe { *fill.slot(i) = u64::from(i * FRAME_SIZE) };
    }
    fill.local = RX_FRAMES;
    fill.producer().store(RX_FRAMES, Ordering::Release);

    // SAFETY: sockaddr_xdp is plain data; zeroed is a valid value.
    let mut addr: libc::sockaddr_xdp = unsafe { std::mem::zeroed() };
    addr.sxdp_family = libc::AF_XDP as u16;
    addr.sxdp_flags = libc::XDP_COPY;
    addr.sxdp_ifindex = port.ifindex;
    addr.sxdp_queue_id = 0;
    check(
        // SAFETY: `addr` is a valid sockaddr_xdp of the length given.
        unsafe {
            libc::bind(
                fd.as_raw_fd(),
                &addr as *const _ as *const libc::sockaddr,
                std::mem::size_of::<libc::sockaddr_xdp>() as libc::socklen_t,
            )
        },
        "bind AF_XDP",
    )?;
    let xdp = XdpAttachment::attach(port.ifindex)?;
    let tap = Tap::open(port, xdp.generic())?;
    xdp.insert(0, &fd)?;
    tracing::info!(port = %port.name, mode = xdp.mode(), tap = %tap.name, "AF_XDP port");
    let socket = Arc::new(Socket {
        fd,
        umem,
        _xdp: xdp,
    });
    let free = (RX_FRAMES..FRAMES)
        .map(|i| u64::from(i * FRAME_SIZE))
        .collect();
    Ok((
        XskRx {
            rx,
            fill,
            tap,
            socket: socket.clone(),
            seen_drops: 0,
            bad: 0,
        },
        XskTx {
            tx,
            comp,
            free,
            socket,
        },
    ))
}

impl RxQueue for XskRx {
    fn fd(&self) -> RawFd {
        self.socket.fd.as_raw_fd()
    }

    fn recv_burst(&mut self, budget: usize, f: &mut dyn FnMut(&mut [u8], RxMeta) -> Fate) -> usize {
        let ready = self
            .rx
            .producer()
            .load(Ordering::Acquire)
            .wrapping_sub(self.rx.local);
        let n = (ready as usize).min(budget) as u32;
        if n == 0 {
            return 0;
        }
        let mut handled = 0;
        for _ in 0..n {
            // SAFETY: the entry is below the producer index (acquired) and
            // not yet released: ours.
            let desc = unsafe { std::ptr::read(self.rx.slot(self.rx.local)) };
            self.rx.local = self.rx.local.wrapping_add(1);
            let chunk = desc.addr & !u64::from(FRAME_SIZE - 1);
            let in_rx_half = chunk < u64::from(RX_FRAMES * FRAME_SIZE);
            if in_rx_half && (desc.addr - chunk) + u64::from(desc.len) <= u64::from(FRAME_SIZE) {
                // SAFETY: inside a receive chunk (checked), which the kernel
                // handed over and gets back only through the fill ring below.
                let frame = unsafe { self.socket.chunk(desc.addr, desc.len as usize) };
                let meta = RxMeta {
                    csum_partial: looks_partial(frame),
                };
                if f(frame, meta) == Fate::ToLinux {
                    self.tap.write(frame);
                }
                handled += 1;
            } else {
                self.bad += 1;
            }
            if in_rx_half {
                // The fill ring holds at most every receive chunk: room.
                // SAFETY: the slot is ours until the producer store below.
                unsafe { *self.fill.slot(self.fill.local) = chunk };
                self.fill.local = self.fill.local.wrapping_add(1);
            }
        }
        self.rx.consumer().store(self.rx.local, Ordering::Release);
        self.fill
            .producer()
            .store(self.fill.local, Ordering::Release);
        handled
    }

    fn take_drops(&mut self) -> u64 {
        // SAFETY: xdp_statistics is plain data; zeroed is a valid value.
        let mut st: libc::xdp_statistics = unsafe { std::mem::zeroed() };
        let mut len = std::mem::size_of::<libc::xdp_statistics>() as libc::socklen_t;
        // SAFETY: XDP_STATISTICS fills `st`; `len` says its size.
        let ret = unsafe {
            libc::getsockopt(
                self.socket.fd.as_raw_fd(),
                libc::SOL_XDP,
                libc::XDP_STATISTICS,
                &mut st as *mut _ as *mut libc::c_void,
                &mut len,
            )
        };
        let total = if ret == 0 {
            st.rx_dropped + st.rx_ring_full + st.rx_invalid_descs
        } else {
            self.seen_drops
        };
        let new = total.saturating_sub(self.seen_drops);
        self.seen_drops = total;
        new + std::mem::take(&mut self.bad)
    }
}

impl XskTx {
    /// Takes back the chunks the kernel has sent.
    fn reclaim(&mut self) {
        let done = self
            .comp
            .producer()
            .load(Ordering::Acquire)
            .wrapping_sub(self.comp.local);
        for _ in 0..done {
            // SAFETY: below the producer index (acquired): ours to read.
            let addr = unsafe { std::ptr::read(self.comp.slot(self.comp.local)) };
            self.comp.local = self.comp.local.wrapping_add(1);
            // Never beyond the capacity: only tx chunks come back, once.
            if self.free.len() < self.free.capacity() {
                self.free.push(addr & !u64::from(FRAME_SIZE - 1));
            }
        }
        if done > 0 {
            self.comp
                .consumer()
                .store(self.comp.local, Ordering::Release);
        }
    }

    /// Entries in the tx ring the kernel has not consumed.
    fn in_flight(&self) -> u32 {
        self.tx
            .local
            .wrapping_sub(self.tx.consumer().load(Ordering::Acquire))
    }
}

impl TxQueue for XskTx {
    fn push(&mut self, frame: &[u8]) -> bool {
        if frame.len() > FRAME_SIZE as usize {
            return false;
        }
        if self.free.is_empty() {
            self.reclaim();
        }
        if self.in_flight() >= RING {
            return false;
        }
        let Some(addr) = self.free.pop() else {
            return false;
        };
        // SAFETY: a free tx chunk (ours until it comes back through the
        // completion ring); the frame fits (checked).
        unsafe { self.socket.chunk(addr, frame.len()) }.copy_from_slice(frame);
        // SAFETY: the tx ring has room (in_flight < RING); the slot is ours
        // until the producer store in `flush`.
        unsafe {
            *self.tx.slot(self.tx.local) = libc::xdp_desc {
                addr,
                len: frame.len() as u32,
                options: 0,
            }
        };
        self.tx.local = self.tx.local.wrapping_add(1);
        true
    }

    fn flush(&mut self) {
        self.tx.producer().store(self.tx.local, Ordering::Release);
        // Copy mode sends 32 frames a call and says EAGAIN while more wait.
        let mut tries = RING / 16;
        while self.in_flight() > 0 && tries > 0 {
            tries -= 1;
            // SAFETY: a zero-length sendto asks the kernel to send the tx
            // ring's entries; nothing is read from the null buffer.
            let ret = unsafe {
                libc::sendto(
                    self.socket.fd.as_raw_fd(),
                    std::ptr::null(),
                    0,
                    libc::MSG_DONTWAIT,
                    std::ptr::null(),
                    0,
                )
            };
            if ret < 0 {
                let errno = io::Error::last_os_error().raw_os_error();
                if errno != Some(libc::EAGAIN) && errno != Some(libc::EBUSY) {
                    break;
                }
            }
        }
        self.reclaim();
    }
}

/// A TAP with the port's MAC: what is written to it, Linux receives as
/// received on the port itself (a tcx redirect on the TAP's receive path).
struct Tap {
    fd: OwnedFd,
    name: String,
    /// The header put before each frame, when the port's XDP program
    /// must recognise it.
    mark: Option<[u8; LINUX_MARK_LEN]>,
    /// Hands what is written to the TAP to the port's receive path.
    _redirect: IngressRedirect,
}

impl Tap {
    /// `marked`: frames written get the header the port's XDP program
    /// strips (generic mode, where it sees them again).
    fn open(port: &PortInfo, marked: bool) -> io::Result<Tap> {
        let name: String = format!("fpx-{}", port.name)
            .chars()
            .take(libc::IFNAMSIZ - 1)
            .collect();
        // SAFETY: opens a device with a NUL-terminated path; checked.
        let raw = check(
            unsafe {
                libc::open(
                    c"/dev/net/tun".as_ptr(),
                    libc::O_RDWR | libc::O_CLOEXEC | libc::O_NONBLOCK,
                )
            },
            "/dev/net/tun",
        )?;
        // SAFETY: `raw` is a fresh descriptor that nothing else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        let mut req = ifreq(&name);
        req.ifr_ifru.ifru_flags = (libc::IFF_TAP | libc::IFF_NO_PI) as libc::c_short;
        check(
            // SAFETY: TUNSETIFF reads `req`, which lives across the call.
            unsafe { libc::ioctl(fd.as_raw_fd(), libc::TUNSETIFF, &mut req) },
            "TUNSETIFF",
        )?;
        // SAFETY: a plain socket(2) call; the descriptor is owned below.
        let raw = check(
            unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) },
            "socket",
        )?;
        // SAFETY: `raw` is a fresh descriptor that nothing else owns.
        let ctl = unsafe { OwnedFd::from_raw_fd(raw) };
        let mut req = ifreq(&name);
        // SAFETY: sockaddr is plain data; zeroed is a valid value.
        let mut hw: libc::sockaddr = unsafe { std::mem::zeroed() };
        hw.sa_family = libc::ARPHRD_ETHER;
        for (d, s) in hw.sa_data.iter_mut().zip(port.mac) {
            *d = s as libc::c_char;
        }
        req.ifr_ifru.ifru_hwaddr = hw;
        check(
            // SAFETY: SIOCSIFHWADDR reads `req`, which lives across the call.
            unsafe { libc::ioctl(ctl.as_raw_fd(), libc::SIOCSIFHWADDR, &mut req) },
            "SIOCSIFHWADDR",
        )?;
        let mut req = ifreq(&name);
        check(
            // SAFETY: SIOCGIFFLAGS fills `req`, which lives across the call.
            unsafe { libc::ioctl(ctl.as_raw_fd(), libc::SIOCGIFFLAGS, &mut req) },
            "SIOCGIFFLAGS",
        )?;
        // SAFETY: SIOCGIFFLAGS set the flags member of the union.
        let flags = unsafe { req.ifr_ifru.ifru_flags };
        req.ifr_ifru.ifru_flags = flags | libc::IFF_UP as libc::c_short;
        check(
            // SAFETY: SIOCSIFFLAGS reads `req`, which lives across the call.
            unsafe { libc::ioctl(ctl.as_raw_fd(), libc::SIOCSIFFLAGS, &mut req) },
            "SIOCSIFFLAGS",
        )?;
        let cname = std::ffi::CString::new(name.clone()).map_err(io::Error::other)?;
        // SAFETY: a NUL-terminated name; 0 means no such device.
        let tap_ifindex = unsafe { libc::if_nametoindex(cname.as_ptr()) };
        if tap_ifindex == 0 {
            return Err(io::Error::last_os_error());
        }
        let redirect = IngressRedirect::attach(tap_ifindex, port.ifindex)
            .map_err(|e| io::Error::new(e.kind(), format!("{name} -> {}: {e}", port.name)))?;
        let mut mark = [0u8; LINUX_MARK_LEN];
        mark[..6].copy_from_slice(&port.mac);
        mark[6..12].copy_from_slice(&LINUX_MARK_SRC);
        mark[12..].copy_from_slice(&LINUX_MARK_ETHERTYPE.to_be_bytes());
        Ok(Tap {
            fd,
            name,
            mark: marked.then_some(mark),
            _redirect: redirect,
        })
    }

    /// Hands `frame` to Linux; lost when the TAP's queue is full.
    fn write(&self, frame: &[u8]) {
        let Some(mark) = &self.mark else {
            // SAFETY: `frame` is a live buffer of the length given.
            unsafe { libc::write(self.fd.as_raw_fd(), frame.as_ptr().cast(), frame.len()) };
            return;
        };
        let iov = [
            libc::iovec {
                iov_base: mark.as_ptr() as *mut libc::c_void,
                iov_len: mark.len(),
            },
            libc::iovec {
                iov_base: frame.as_ptr() as *mut libc::c_void,
                iov_len: frame.len(),
            },
        ];
        // SAFETY: both iovecs point at live buffers of the lengths given,
        // which the kernel only reads.
        unsafe { libc::writev(self.fd.as_raw_fd(), iov.as_ptr(), iov.len() as libc::c_int) };
    }
}

/// Whether the UDP or TCP checksum field of `frame` (unfragmented IPv4, or
/// IPv6 without extension headers) holds the folded pseudo-header sum, as
/// a sender that offloaded it leaves it, rather than a full checksum: the
/// field must equal that sum and the segment must not verify (a full
/// checksum can equal the pseudo-header sum by chance). Costs one sum of
/// the addresses per frame; the segment is summed only on a match.
fn looks_partial(frame: &[u8]) -> bool {
    use crate::wire::checksum::sum;
    let Some(ip) = frame.get(14..) else {
        return false;
    };
    let (pseudo, proto, l4) = match u16::from_be_bytes([frame[12], frame[13]]) {
        0x0800 if ip.len() >= 20 => {
            let hl = usize::from(ip[0] & 0x0f) * 4;
            let tl = usize::from(u16::from_be_bytes([ip[2], ip[3]]));
            let fragment = u16::from_be_bytes([ip[6], ip[7]]) & 0x3fff != 0;
            if hl < 20 || tl < hl || tl > ip.len() || fragment {
                return false;
            }
            let l4 = &ip[hl..tl];
            (u32::from(sum(&ip[12..20])), ip[9], l4)
        }
        0x86dd if ip.len() >= 40 => {
            let end = 40 + usize::from(u16::from_be_bytes([ip[4], ip[5]]));
            let Some(l4) = ip.get(40..end) else {
                return false;
            };
            (u32::from(sum(&ip[8..40])), ip[6], l4)
        }
        _ => return false,
    };
    let at = match proto {
        17 if l4.len() >= 8 => 6,
        6 if l4.len() >= 20 => 16,
        _ => return false,
    };
    let pseudo = fold(pseudo + u32::from(proto) + l4.len() as u32);
    let field = u16::from_be_bytes([l4[at], l4[at + 1]]);
    field == pseudo && fold(u32::from(sum(l4)) + u32::from(pseudo)) != 0xffff
}

fn fold(mut acc: u32) -> u16 {
    while acc >> 16 != 0 {
        acc = (acc & 0xffff) + (acc >> 16);
    }
    acc as u16
}

fn ifreq(name: &str) -> libc::ifreq {
    // SAFETY: ifreq is plain data; zeroed is a valid value.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    for (dst, src) in req
        .ifr_name
        .iter_mut()
        .zip(name.bytes().take(libc::IFNAMSIZ - 1))
    {
        *dst = src as libc::c_char;
    }
    req
}

#[cfg(test)]
mod tests {
    use super::*;

    /// UDP over IPv4 with only the pseudo-header sum in the field, then
    /// with the full checksum the worker writes.
    #[test]
    fn partial_checksums_are_recognised() {
        #[rustfmt::skip]
        let mut frame = vec![
            2, 0, 0, 0, 0, 1, 2, 0, 0, 0, 0, 2, 0x08, 0x00,
            0x45, 0, 0, 32, 0, 1, 0x40, 0, 64, 17, 0, 0, 10, 1, 0, 2, 10, 2, 0, 2,
            0x04, 0xd2, 0x16, 0x2e, 0, 12, 0, 0, 1, 2, 3, 4,
        ];
        let pseudo = crate::wire::checksum::sum(&[10, 1, 0, 2, 10, 2, 0, 2, 0, 17, 0, 12]);
        frame[40..42].copy_from_slice(&pseudo.to_be_bytes());
        assert!(looks_partial(&frame));
        assert!(crate::wire::complete_partial_checksum(&mut frame));
        assert!(!looks_partial(&frame));
        // Not UDP or TCP, too short, or not IP: never partial.
        frame[23] = 1;
        assert!(!looks_partial(&frame));
        assert!(!looks_partial(&frame[..20]));
        frame[12] = 0x86;
        assert!(!looks_partial(&frame));
    }
}
