//! AF_PACKET ports: a TPACKET_V2 (or V3) receive ring and a TPACKET_V2
//! transmit ring per interface, all mmapped.
//!
//! Receive (V3, `--rx-ring v3`): the kernel fills blocks of variable-size
//! frames and hands a block over when it is full or after `RETIRE_MS` (so
//! at low rates a frame waits up to that long: V3 trades latency for fewer
//! wake-ups). The worker walks a block's frames, then gives the block back.
//! Receive (V2, the default): fixed slots handed over one by one, at once:
//! more wake-ups at low rates, but on veth here both faster and some 350 us
//! quicker per packet than V3 (docs/BENCHMARKS.md).
//! Transmit (V2): fixed slots; the worker copies a frame into the next free
//! slot, marks it SEND_REQUEST, and one `sendto` per burst sends them all.
//!
//! Kernel quirks:
//! * Linux still receives every frame on the interface: fpd must not be the
//!   only one forwarding them twice, so the router runs with forwarding off
//!   and fpd leaves to Linux whatever it does not forward (see
//!   `forward`).
//! * A packet socket also sees what the host sends on the interface,
//!   including fpd's own frames: PACKET_IGNORE_OUTGOING (Linux 4.20) hides
//!   them.
//! * The transmit socket is bound with protocol 0, so it receives nothing.
//!
//! Invariants: a block or slot is read only after its status says it is
//! ours (acquire), and handed back with a release store; nothing else in
//! the rings is touched.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU32, Ordering};

use super::{Backend, Fate, RxMeta, RxQueue, TxQueue};
use crate::dataplane::view::PortInfo;

const ETH_P_ALL: u16 = 0x0003;
/// Receive ring: 16 blocks of 256 KiB, each good for some 1,800 small
/// frames or 170 full-size ones.
const RX_BLOCK_SIZE: u32 = 1 << 18;
const RX_BLOCKS: u32 = 16;
const RX_FRAME_SIZE: u32 = 2048;
/// How long a partly filled block waits before the kernel hands it over.
const RETIRE_MS: u32 = 1;
/// Transmit ring: 1,024 slots of 2 KiB.
const TX_FRAME_SIZE: u32 = 2048;
const TX_BLOCK_SIZE: u32 = 1 << 16;
const TX_FRAMES: u32 = 1024;
/// Where the frame starts in a V2 slot: TPACKET2_HDRLEN less the
/// sockaddr_ll that only receive uses.
const TX_DATA_OFFSET: usize = libc::TPACKET2_HDRLEN - std::mem::size_of::<libc::sockaddr_ll>();

/// Receive ring slots for V2: 4,096 of 2 KiB.
const RX2_FRAMES: u32 = 4096;
const RX2_BLOCK_SIZE: u32 = 1 << 16;

/// The receive ring's TPACKET version.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RxRingVersion {
    V2,
    V3,
}

pub(crate) struct AfPacket {
    pub rx: RxRingVersion,
}

impl Backend for AfPacket {
    fn name(&self) -> &'static str {
        match self.rx {
            RxRingVersion::V2 => "af_packet (rx TPACKET_V2)",
            RxRingVersion::V3 => "af_packet (rx TPACKET_V3)",
        }
    }

    fn open_rx(&self, port: &PortInfo) -> io::Result<Box<dyn RxQueue>> {
        Ok(match self.rx {
            RxRingVersion::V2 => Box::new(RxRingV2::open(port)?),
            RxRingVersion::V3 => Box::new(RxRing::open(port)?),
        })
    }

    fn open_tx(&self, port: &PortInfo) -> io::Result<Box<dyn TxQueue>> {
        Ok(Box::new(TxRing::open(port)?))
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

fn packet_socket(protocol: u16) -> io::Result<OwnedFd> {
    // SAFETY: a plain socket(2) call; the result is checked.
    let raw = check(
        unsafe {
            libc::socket(
                libc::AF_PACKET,
                libc::SOCK_RAW | libc::SOCK_CLOEXEC,
                i32::from(protocol.to_be()),
            )
        },
        "AF_PACKET socket",
    )?;
    // SAFETY: `raw` is a fresh descriptor that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(raw) })
}

fn setsockopt<T>(fd: &OwnedFd, name: libc::c_int, value: &T, what: &str) -> io::Result<()> {
    // SAFETY: `value` is a live T of the size given.
    check(
        unsafe {
            libc::setsockopt(
                fd.as_raw_fd(),
                libc::SOL_PACKET,
                name,
                value as *const T as *const libc::c_void,
                std::mem::size_of::<T>() as libc::socklen_t,
            )
        },
        what,
    )
    .map(drop)
}

fn bind(fd: &OwnedFd, ifindex: u32, protocol: u16) -> io::Result<()> {
    // SAFETY: sockaddr_ll is plain data; zeroed is a valid value.
    let mut addr: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
    addr.sll_family = libc::AF_PACKET as u16;
    addr.sll_protocol = protocol.to_be();
    addr.sll_ifindex = ifindex as i32;
    // SAFETY: `addr` is a valid sockaddr_ll of the length given.
    check(
        unsafe {
            libc::bind(
                fd.as_raw_fd(),
                &addr as *const _ as *const libc::sockaddr,
                std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t,
            )
        },
        "bind",
    )
    .map(drop)
}

/// A shared mapping of a packet ring, unmapped on drop.
struct Mmap {
    ptr: NonNull<u8>,
    len: usize,
}

// SAFETY: the mapping is plain memory shared with the kernel; the owning
// ring is used by one thread at a time.
unsafe impl Send for Mmap {}

impl Mmap {
    fn new(fd: &OwnedFd, len: usize) -> io::Result<Mmap> {
        // SAFETY: maps the ring just configured on `fd`; checked below.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED | libc::MAP_LOCKED | libc::MAP_POPULATE,
                fd.as_raw_fd(),
                0,
            )
        };
        let ptr = if ptr == libc::MAP_FAILED {
            // MAP_LOCKED fails beyond RLIMIT_MEMLOCK: try without it.
            // SAFETY: as above.
            unsafe {
                libc::mmap(
                    std::ptr::null_mut(),
                    len,
                    libc::PROT_READ | libc::PROT_WRITE,
                    libc::MAP_SHARED | libc::MAP_POPULATE,
                    fd.as_raw_fd(),
                    0,
                )
            }
        } else {
            ptr
        };
        if ptr == libc::MAP_FAILED {
            let e = io::Error::last_os_error();
            return Err(io::Error::new(e.kind(), format!("mmap of the ring: {e}")));
        }
        Ok(Mmap {
            ptr: NonNull::new(ptr as *mut u8)
                .ok_or_else(|| io::Error::other("mmap returned null"))?,
            len,
        })
    }

    /// The status word at `offset` (a block's or a slot's first field).
    ///
    /// # Safety
    /// `offset + 4 <= len`, aligned to 4.
    unsafe fn status(&self, offset: usize) -> &AtomicU32 {
        // SAFETY: in bounds and aligned per the contract; the kernel and
        // this process only access it atomically.
        unsafe { &*(self.ptr.as_ptr().add(offset) as *const AtomicU32) }
    }
}

impl Drop for Mmap {
    fn drop(&mut self) {
        // SAFETY: unmaps exactly what `new` mapped, once.
        unsafe { libc::munmap(self.ptr.as_ptr() as *mut libc::c_void, self.len) };
    }
}

/// A TPACKET_V3 receive ring bound to one interface.
pub(crate) struct RxRing {
    // Field order: the mapping goes before the socket.
    map: Mmap,
    fd: OwnedFd,
    block: u32,
    /// Frames left to read in the current block, and where the next is.
    left: u32,
    next: usize,
    truncated: u64,
}

impl RxRing {
    pub(crate) fn open(port: &PortInfo) -> io::Result<RxRing> {
        let fd = packet_socket(ETH_P_ALL)?;
        let version = libc::tpacket_versions::TPACKET_V3 as libc::c_int;
        setsockopt(&fd, libc::PACKET_VERSION, &version, "PACKET_VERSION")?;
        let one: libc::c_int = 1;
        setsockopt(
            &fd,
            libc::PACKET_IGNORE_OUTGOING,
            &one,
            "PACKET_IGNORE_OUTGOING",
        )?;
        let req = libc::tpacket_req3 {
            tp_block_size: RX_BLOCK_SIZE,
            tp_block_nr: RX_BLOCKS,
            tp_frame_size: RX_FRAME_SIZE,
            tp_frame_nr: RX_BLOCK_SIZE / RX_FRAME_SIZE * RX_BLOCKS,
            tp_retire_blk_tov: RETIRE_MS,
            tp_sizeof_priv: 0,
            tp_feature_req_word: 0,
        };
        setsockopt(&fd, libc::PACKET_RX_RING, &req, "PACKET_RX_RING")?;
        let map = Mmap::new(&fd, (RX_BLOCK_SIZE * RX_BLOCKS) as usize)?;
        // Bound last: no frame arrives before the ring exists.
        bind(&fd, port.ifindex, ETH_P_ALL)?;
        Ok(RxRing {
            map,
            fd,
            block: 0,
            left: 0,
            next: 0,
            truncated: 0,
        })
    }

    fn block_offset(&self) -> usize {
        (self.block * RX_BLOCK_SIZE) as usize
    }

    fn block_desc(&self) -> *const libc::tpacket_block_desc {
        // SAFETY: the block offset is within the mapping.
        unsafe { self.map.ptr.as_ptr().add(self.block_offset()) as *const _ }
    }

    /// The current block's status word (`hdr.bh1.block_status`).
    fn block_status(&self) -> &AtomicU32 {
        let off = self.block_offset() + std::mem::offset_of!(libc::tpacket_block_desc, hdr);
        // SAFETY: block_status is the first, 4-aligned field of bh1, inside
        // the block.
        unsafe { self.map.status(off) }
    }
}

impl RxQueue for RxRing {
    fn fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }

    fn recv_burst(&mut self, budget: usize, f: &mut dyn FnMut(&mut [u8], RxMeta) -> Fate) -> usize {
        let mut n = 0;
        while n < budget {
            if self.left == 0 {
                if self.block_status().load(Ordering::Acquire) & libc::TP_STATUS_USER == 0 {
                    break;
                }
                // SAFETY: the block is ours (TP_STATUS_USER, acquired).
                let bh = unsafe { (*self.block_desc()).hdr.bh1 };
                if bh.num_pkts == 0 {
                    self.release_block();
                    continue;
                }
                self.left = bh.num_pkts;
                self.next = self.block_offset() + bh.offset_to_first_pkt as usize;
            }
            let block_end = self.block_offset() + RX_BLOCK_SIZE as usize;
            let hdr_len = std::mem::size_of::<libc::tpacket3_hdr>();
            if self.next + hdr_len > block_end {
                // A corrupt block: skip the rest of it.
                self.release_block();
                continue;
            }
            // SAFETY: the header lies inside our block (checked above).
            let hdr = unsafe {
                std::ptr::read_unaligned(
                    self.map.ptr.as_ptr().add(self.next) as *const libc::tpacket3_hdr
                )
            };
            let start = self.next + hdr.tp_mac as usize;
            let len = hdr.tp_snaplen as usize;
            if hdr.tp_snaplen < hdr.tp_len || start + len > block_end {
                self.truncated += 1;
            } else {
                // SAFETY: the frame lies inside our block, which nothing
                // else touches until we release it.
                let frame = unsafe {
                    std::slice::from_raw_parts_mut(self.map.ptr.as_ptr().add(start), len)
                };
                let meta = RxMeta {
                    csum_partial: hdr.tp_status & libc::TP_STATUS_CSUMNOTREADY != 0,
                };
                // Linux has its own copy of every frame.
                let _ = f(frame, meta);
                n += 1;
            }
            self.left -= 1;
            if self.left == 0 {
                self.release_block();
            } else {
                self.next += hdr.tp_next_offset as usize;
            }
        }
        n
    }

    fn take_drops(&mut self) -> u64 {
        let mut st = libc::tpacket_stats_v3 {
            tp_packets: 0,
            tp_drops: 0,
            tp_freeze_q_cnt: 0,
        };
        let mut len = std::mem::size_of::<libc::tpacket_stats_v3>() as libc::socklen_t;
        // SAFETY: PACKET_STATISTICS fills `st` (and resets the kernel's
        // counters); `len` says its size.
        let ret = unsafe {
            libc::getsockopt(
                self.fd.as_raw_fd(),
                libc::SOL_PACKET,
                libc::PACKET_STATISTICS,
                &mut st as *mut _ as *mut libc::c_void,
                &mut len,
            )
        };
        let drops = if ret == 0 { u64::from(st.tp_drops) } else { 0 };
        drops + std::mem::take(&mut self.truncated)
    }
}

/// Reads and resets the kernel's count of frames the ring had no room for.
fn ring_drops(fd: &OwnedFd) -> u64 {
    let mut st = libc::tpacket_stats {
        tp_packets: 0,
        tp_drops: 0,
    };
    let mut len = std::mem::size_of::<libc::tpacket_stats>() as libc::socklen_t;
    // SAFETY: PACKET_STATISTICS fills `st` (V1/V2 layout); `len` says its
    // size.
    let ret = unsafe {
        libc::getsockopt(
            fd.as_raw_fd(),
            libc::SOL_PACKET,
            libc::PACKET_STATISTICS,
            &mut st as *mut _ as *mut libc::c_void,
            &mut len,
        )
    };
    if ret == 0 {
        u64::from(st.tp_drops)
    } else {
        0
    }
}

/// A TPACKET_V2 receive ring bound to one interface.
pub(crate) struct RxRingV2 {
    map: Mmap,
    fd: OwnedFd,
    slot: u32,
    truncated: u64,
}

impl RxRingV2 {
    pub(crate) fn open(port: &PortInfo) -> io::Result<RxRingV2> {
        let fd = packet_socket(ETH_P_ALL)?;
        let version = libc::tpacket_versions::TPACKET_V2 as libc::c_int;
        setsockopt(&fd, libc::PACKET_VERSION, &version, "PACKET_VERSION")?;
        let one: libc::c_int = 1;
        setsockopt(
            &fd,
            libc::PACKET_IGNORE_OUTGOING,
            &one,
            "PACKET_IGNORE_OUTGOING",
        )?;
        let req = libc::tpacket_req {
            tp_block_size: RX2_BLOCK_SIZE,
            tp_block_nr: RX2_FRAMES * RX_FRAME_SIZE / RX2_BLOCK_SIZE,
            tp_frame_size: RX_FRAME_SIZE,
            tp_frame_nr: RX2_FRAMES,
        };
        setsockopt(&fd, libc::PACKET_RX_RING, &req, "PACKET_RX_RING")?;
        let map = Mmap::new(&fd, (RX2_FRAMES * RX_FRAME_SIZE) as usize)?;
        bind(&fd, port.ifindex, ETH_P_ALL)?;
        Ok(RxRingV2 {
            map,
            fd,
            slot: 0,
            truncated: 0,
        })
    }
}

impl RxQueue for RxRingV2 {
    fn fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }

    fn recv_burst(&mut self, budget: usize, f: &mut dyn FnMut(&mut [u8], RxMeta) -> Fate) -> usize {
        let mut n = 0;
        while n < budget {
            let off = (self.slot * RX_FRAME_SIZE) as usize;
            // SAFETY: tp_status is the first, 4-aligned field of the slot.
            let status = unsafe { self.map.status(off) };
            let s = status.load(Ordering::Acquire);
            if s & libc::TP_STATUS_USER == 0 {
                break;
            }
            // SAFETY: the slot is ours (TP_STATUS_USER, acquired).
            let hdr = unsafe {
                std::ptr::read_unaligned(self.map.ptr.as_ptr().add(off) as *const libc::tpacket2_hdr)
            };
            let start = usize::from(hdr.tp_mac);
            let len = hdr.tp_snaplen as usize;
            if hdr.tp_snaplen < hdr.tp_len || start + len > RX_FRAME_SIZE as usize {
                self.truncated += 1;
            } else {
                // SAFETY: the frame lies inside our slot, which nothing else
                // touches until we release it.
                let frame = unsafe {
                    std::slice::from_raw_parts_mut(self.map.ptr.as_ptr().add(off + start), len)
                };
                let _ = f(
                    frame,
                    RxMeta {
                        csum_partial: s & libc::TP_STATUS_CSUMNOTREADY != 0,
                    },
                );
                n += 1;
            }
            status.store(libc::TP_STATUS_KERNEL, Ordering::Release);
            self.slot = (self.slot + 1) % RX2_FRAMES;
        }
        n
    }

    fn take_drops(&mut self) -> u64 {
        ring_drops(&self.fd) + std::mem::take(&mut self.truncated)
    }
}

impl RxRing {
    fn release_block(&mut self) {
        self.block_status()
            .store(libc::TP_STATUS_KERNEL, Ordering::Release);
        self.block = (self.block + 1) % RX_BLOCKS;
        self.left = 0;
    }
}

/// A TPACKET_V2 transmit ring bound to one interface.
pub(crate) struct TxRing {
    map: Mmap,
    fd: OwnedFd,
    slot: u32,
    queued: u32,
}

impl TxRing {
    pub(crate) fn open(port: &PortInfo) -> io::Result<TxRing> {
        let fd = packet_socket(0)?;
        let version = libc::tpacket_versions::TPACKET_V2 as libc::c_int;
        setsockopt(&fd, libc::PACKET_VERSION, &version, "PACKET_VERSION")?;
        let one: libc::c_int = 1;
        // Straight to the driver: fpd is the only sender of these frames.
        setsockopt(&fd, libc::PACKET_QDISC_BYPASS, &one, "PACKET_QDISC_BYPASS")?;
        let req = libc::tpacket_req {
            tp_block_size: TX_BLOCK_SIZE,
            tp_block_nr: TX_FRAMES * TX_FRAME_SIZE / TX_BLOCK_SIZE,
            tp_frame_size: TX_FRAME_SIZE,
            tp_frame_nr: TX_FRAMES,
        };
        setsockopt(&fd, libc::PACKET_TX_RING, &req, "PACKET_TX_RING")?;
        let map = Mmap::new(&fd, (TX_FRAMES * TX_FRAME_SIZE) as usize)?;
        bind(&fd, port.ifindex, 0)?;
        Ok(TxRing {
            map,
            fd,
            slot: 0,
            queued: 0,
        })
    }

    fn slot_offset(&self) -> usize {
        (self.slot * TX_FRAME_SIZE) as usize
    }
}

impl TxQueue for TxRing {
    fn push(&mut self, frame: &[u8]) -> bool {
        let off = self.slot_offset();
        if frame.len() > TX_FRAME_SIZE as usize - TX_DATA_OFFSET {
            return false;
        }
        // SAFETY: tp_status is the first, 4-aligned field of the slot.
        let status = unsafe { self.map.status(off) };
        let s = status.load(Ordering::Acquire);
        if s != libc::TP_STATUS_AVAILABLE && s != libc::TP_STATUS_WRONG_FORMAT {
            // Still being sent (or queued by us and not yet flushed).
            return false;
        }
        // SAFETY: the slot is ours (AVAILABLE); the frame fits after the
        // header (checked above).
        unsafe {
            let base = self.map.ptr.as_ptr().add(off);
            std::ptr::copy_nonoverlapping(frame.as_ptr(), base.add(TX_DATA_OFFSET), frame.len());
            let hdr = base as *mut libc::tpacket2_hdr;
            (*hdr).tp_len = frame.len() as u32;
            (*hdr).tp_snaplen = frame.len() as u32;
        }
        status.store(libc::TP_STATUS_SEND_REQUEST, Ordering::Release);
        self.slot = (self.slot + 1) % TX_FRAMES;
        self.queued += 1;
        true
    }

    fn flush(&mut self) {
        if self.queued == 0 {
            return;
        }
        self.queued = 0;
        // SAFETY: a zero-length sendto asks the kernel to send the ring's
        // SEND_REQUEST slots; nothing is read from the null buffer.
        unsafe {
            libc::sendto(
                self.fd.as_raw_fd(),
                std::ptr::null(),
                0,
                libc::MSG_DONTWAIT,
                std::ptr::null(),
                0,
            )
        };
    }
}
