//! The XDP side of the AF_XDP backend, without libbpf: an XSKMAP made and
//! a redirect program loaded with the raw bpf(2) syscall, attached to an
//! interface over rtnetlink (IFLA_XDP), and detached when dropped.
//!
//! The program (hand-assembled below) sends IPv4 and IPv6 frames to the
//! AF_XDP socket of their receive queue and passes the rest (ARP, IPv6
//! neighbour discovery, anything shorter than its headers) to Linux:
//! neighbour discovery must reach Linux on the interface it came in on.
//! A frame fpd hands back carries a mark the program strips before
//! passing it (generic mode only, see [`LINUX_MARK_SRC`]).
//!
//! Kernel quirks:
//! * `bpf_redirect_map(map, key, XDP_PASS)` returns XDP_PASS when the map
//!   holds no socket for the queue, so a program left attached by an fpd
//!   that was killed only passes frames to Linux; the next fpd replaces it
//!   (no XDP_FLAGS_UPDATE_IF_NOEXIST).
//! * bpffs is not mounted here, and nothing is pinned: the program and map
//!   live as long as their descriptors (and the attachment).

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

const BPF_MAP_CREATE: libc::c_long = 0;
const BPF_MAP_UPDATE_ELEM: libc::c_long = 2;
const BPF_PROG_LOAD: libc::c_long = 5;
const BPF_LINK_CREATE: libc::c_long = 28;
const BPF_PROG_TYPE_SCHED_CLS: u32 = 3;
/// enum bpf_attach_type: the tcx hook on a device's receive path.
const BPF_TCX_INGRESS: u32 = 46;
/// The helper `bpf_redirect`, and its flag to deliver to the device's
/// receive path rather than send on it.
const BPF_FUNC_REDIRECT: i32 = 23;
const BPF_F_INGRESS: i32 = 1;
const BPF_MAP_TYPE_XSKMAP: u32 = 17;
const BPF_PROG_TYPE_XDP: u32 = 6;
const XDP_PASS: i32 = 2;
/// The helper `bpf_redirect_map`.
const BPF_FUNC_REDIRECT_MAP: i32 = 51;
/// XDP attach flags (linux/if_link.h).
pub(crate) const XDP_FLAGS_SKB_MODE: u32 = 1 << 1;
pub(crate) const XDP_FLAGS_DRV_MODE: u32 = 1 << 2;
/// IFLA_XDP's nested attributes.
const IFLA_XDP: u16 = 43;
const IFLA_XDP_FD: u16 = 1;
const IFLA_XDP_FLAGS: u16 = 3;
const NLA_F_NESTED: u16 = 1 << 15;
/// Queues the map can hold (keys: receive queue indexes).
const MAP_ENTRIES: u32 = 64;

/// One eBPF instruction (struct bpf_insn).
#[repr(C)]
#[derive(Clone, Copy)]
struct Insn {
    code: u8,
    /// dst_reg in the low nibble, src_reg in the high one.
    regs: u8,
    off: i16,
    imm: i32,
}

const fn insn(code: u8, dst: u8, src: u8, off: i16, imm: i32) -> Insn {
    Insn {
        code,
        regs: dst | (src << 4),
        off,
        imm,
    }
}

// Opcodes used below (linux/bpf.h, linux/bpf_common.h).
const MOV64_X: u8 = 0xbf; // BPF_ALU64 | BPF_MOV | BPF_X
const MOV64_K: u8 = 0xb7; // BPF_ALU64 | BPF_MOV | BPF_K
const ADD64_K: u8 = 0x07; // BPF_ALU64 | BPF_ADD | BPF_K
const LDX_W: u8 = 0x61; // BPF_LDX | BPF_MEM | BPF_W
const LDX_H: u8 = 0x69; // BPF_LDX | BPF_MEM | BPF_H
const LDX_B: u8 = 0x71; // BPF_LDX | BPF_MEM | BPF_B
const JGT_X: u8 = 0x2d; // BPF_JMP | BPF_JGT | BPF_X
const JEQ_K: u8 = 0x15; // BPF_JMP | BPF_JEQ | BPF_K
const JNE_K: u8 = 0x55; // BPF_JMP | BPF_JNE | BPF_K
const JLT_K: u8 = 0xa5; // BPF_JMP | BPF_JLT | BPF_K
const JGT_K: u8 = 0x25; // BPF_JMP | BPF_JGT | BPF_K
const JA: u8 = 0x05; // BPF_JMP | BPF_JA
const LD_IMM64: u8 = 0x18; // BPF_LD | BPF_DW | BPF_IMM
const CALL: u8 = 0x85; // BPF_JMP | BPF_CALL
const EXIT: u8 = 0x95; // BPF_JMP | BPF_EXIT
/// ld_imm64's src_reg when imm is a map descriptor.
const PSEUDO_MAP_FD: u8 = 1;

/// Where the map descriptor goes (the first half of the ld_imm64).
const MAP_FD_INSN: usize = 20;

/// The helper `bpf_xdp_adjust_head`.
const BPF_FUNC_XDP_ADJUST_HEAD: i32 = 44;

/// The header fpd puts before a frame it hands back to Linux on an
/// interface whose XDP program runs in generic mode: there, a frame
/// redirected to the interface's receive path (see [`IngressRedirect`])
/// meets the XDP program again, which would send it back to fpd forever.
/// The program recognises this header (ethertype 0x88B5, IEEE's local
/// experimental one, and a locally administered source address spelling
/// "fpd"), strips it and passes the frame to Linux. A frame from the wire
/// that carries it only reaches Linux without fpd, which is what Linux
/// alone would do with the inner frame.
pub(crate) const LINUX_MARK_SRC: [u8; 6] = [0x02, b'f', b'p', b'd', 0x4c, 0x58];
pub(crate) const LINUX_MARK_ETHERTYPE: u16 = 0x88b5;
pub(crate) const LINUX_MARK_LEN: usize = 14;

/// The program; jump offsets count instructions after the jump.
///
/// ```text
///  0  r6 = ctx                      12  if r4 > r3 goto pass
///  1  r2 = ctx->data                13  r5 = byte 20 (next header)
///  2  r3 = ctx->data_end            14  if r5 != 58 goto redirect
///  3  r4 = r2                       15  r5 = byte 54 (ICMPv6 type)
///  4  r4 += 14                      16  if r5 < 133 goto redirect
///  5  if r4 > r3 goto pass          17  if r5 > 137 goto redirect
///  6  r5 = ethertype (as loaded)    18  goto pass (neighbour discovery)
///  7  if r5 == mark goto marked     19  redirect: r2 = ctx->rx_queue_index
///  8  if r5 == IPv4 goto redirect   20  r1 = map (ld_imm64, 2 slots)
///  9  if r5 != IPv6 goto pass       22  r3 = XDP_PASS
/// 10  r4 = r2                       23  call bpf_redirect_map; 24 exit
/// 11  r4 += 55                      25  pass: r0 = XDP_PASS; 26 exit
///
/// 27  marked: r5 = word at 6 (source, bytes 0-3)
/// 28  if r5 != mark goto pass
/// 29  r5 = half at 10 (source, bytes 4-5)
/// 30  if r5 != mark goto pass
/// 31  r1 = r6; 32 r2 = 14; 33 call bpf_xdp_adjust_head
/// 34  r0 = XDP_PASS; 35 exit
/// ```
fn program(map_fd: i32) -> [Insn; 36] {
    let src = LINUX_MARK_SRC;
    let mark_lo = i32::from_le_bytes([src[0], src[1], src[2], src[3]]);
    let mark_hi = i32::from(u16::from_le_bytes([src[4], src[5]]));
    let mark_type = i32::from(LINUX_MARK_ETHERTYPE.swap_bytes());
    let mut p = [
        insn(MOV64_X, 6, 1, 0, 0),
        insn(LDX_W, 2, 6, 0, 0),
        insn(LDX_W, 3, 6, 4, 0),
        insn(MOV64_X, 4, 2, 0, 0),
        insn(ADD64_K, 4, 0, 0, 14),
        insn(JGT_X, 4, 3, 19, 0),
        insn(LDX_H, 5, 2, 12, 0),
        // Ethertypes as a little-endian load sees them.
        insn(JEQ_K, 5, 0, 19, mark_type),
        insn(JEQ_K, 5, 0, 10, 0x0008),
        insn(JNE_K, 5, 0, 15, 0xdd86),
        insn(MOV64_X, 4, 2, 0, 0),
        insn(ADD64_K, 4, 0, 0, 55),
        insn(JGT_X, 4, 3, 12, 0),
        insn(LDX_B, 5, 2, 20, 0),
        insn(JNE_K, 5, 0, 4, 58),
        insn(LDX_B, 5, 2, 54, 0),
        insn(JLT_K, 5, 0, 2, 133),
        insn(JGT_K, 5, 0, 1, 137),
        insn(JA, 0, 0, 6, 0),
        // redirect:
        insn(LDX_W, 2, 6, 16, 0),
        insn(LD_IMM64, 1, PSEUDO_MAP_FD, 0, 0),
        insn(0, 0, 0, 0, 0),
        insn(MOV64_K, 3, 0, 0, XDP_PASS),
        insn(CALL, 0, 0, 0, BPF_FUNC_REDIRECT_MAP),
        insn(EXIT, 0, 0, 0, 0),
        // pass:
        insn(MOV64_K, 0, 0, 0, XDP_PASS),
        insn(EXIT, 0, 0, 0, 0),
        // marked:
        insn(LDX_W, 5, 2, 6, 0),
        insn(JNE_K, 5, 0, -4, mark_lo),
        insn(LDX_H, 5, 2, 10, 0),
        insn(JNE_K, 5, 0, -6, mark_hi),
        insn(MOV64_X, 1, 6, 0, 0),
        insn(MOV64_K, 2, 0, 0, LINUX_MARK_LEN as i32),
        insn(CALL, 0, 0, 0, BPF_FUNC_XDP_ADJUST_HEAD),
        insn(MOV64_K, 0, 0, 0, XDP_PASS),
        insn(EXIT, 0, 0, 0, 0),
    ];
    p[MAP_FD_INSN].imm = map_fd;
    p
}

fn bpf(cmd: libc::c_long, attr: &mut [u64], what: &str) -> io::Result<libc::c_long> {
    // SAFETY: `attr` is a live, zero-padded bpf_attr of the size given; the
    // kernel reads (and for some commands writes) within it.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            cmd,
            attr.as_mut_ptr(),
            std::mem::size_of_val(attr),
        )
    };
    if ret < 0 {
        let e = io::Error::last_os_error();
        return Err(io::Error::new(e.kind(), format!("{what}: {e}")));
    }
    Ok(ret)
}

/// Loads `insns` as a program of `prog_type`; a verifier refusal comes
/// back with the verifier's log.
fn load(prog_type: u32, insns: &[Insn]) -> io::Result<OwnedFd> {
    let license = c"GPL";
    let mut log = [0u8; 4096];
    // bpf_attr for BPF_PROG_LOAD: prog_type, insn_cnt, insns, license,
    // log_level, log_size, log_buf.
    let mut attr = [0u64; 16];
    attr[0] = u64::from(prog_type) | ((insns.len() as u64) << 32);
    attr[1] = insns.as_ptr() as u64;
    attr[2] = license.as_ptr() as u64;
    attr[3] = 1 | ((log.len() as u64) << 32);
    attr[4] = log.as_mut_ptr() as u64;
    match bpf(BPF_PROG_LOAD, &mut attr, "BPF_PROG_LOAD") {
        Ok(fd) => Ok(owned(fd)),
        Err(e) => {
            let end = log.iter().position(|b| *b == 0).unwrap_or(log.len());
            let log = String::from_utf8_lossy(&log[..end]);
            Err(io::Error::new(e.kind(), format!("{e}: {}", log.trim())))
        }
    }
}

fn owned(fd: libc::c_long) -> OwnedFd {
    // SAFETY: a fresh descriptor returned by bpf(2) that nothing else owns.
    unsafe { OwnedFd::from_raw_fd(fd as i32) }
}

/// An XSKMAP and its redirect program, attached to one interface until
/// dropped.
pub(crate) struct XdpAttachment {
    ifindex: u32,
    flags: u32,
    map: OwnedFd,
    _prog: OwnedFd,
}

impl XdpAttachment {
    /// Loads the program and attaches it to `ifindex`: in generic (SKB)
    /// mode, else natively. Generic first: on veth here, in copy mode,
    /// native mode forwarded less in the one run taken with it (0.49x the
    /// kernel at 60 B, against 1.37x to 1.59x generic; that run was on a
    /// busier machine, so the comparison is indicative: docs/BENCHMARKS.md).
    pub(crate) fn attach(ifindex: u32) -> io::Result<XdpAttachment> {
        // bpf_attr for BPF_MAP_CREATE: map_type, key_size, value_size,
        // max_entries (u32 each), the rest zero.
        let mut attr = [0u64; 16];
        attr[0] = u64::from(BPF_MAP_TYPE_XSKMAP) | (4u64 << 32);
        attr[1] = 4 | (u64::from(MAP_ENTRIES) << 32);
        let map = owned(bpf(BPF_MAP_CREATE, &mut attr, "BPF_MAP_CREATE xskmap")?);
        let prog = load(BPF_PROG_TYPE_XDP, &program(map.as_raw_fd()))?;
        let mut last = None;
        for flags in [XDP_FLAGS_SKB_MODE, XDP_FLAGS_DRV_MODE] {
            match set_link_xdp(ifindex, prog.as_raw_fd(), flags) {
                Ok(()) => {
                    return Ok(XdpAttachment {
                        ifindex,
                        flags,
                        map,
                        _prog: prog,
                    })
                }
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap_or_else(|| io::Error::other("cannot attach XDP")))
    }

    /// Whether the program runs in generic (SKB) mode, where a frame
    /// redirected to the interface's receive path meets it again.
    pub(crate) fn generic(&self) -> bool {
        self.flags != XDP_FLAGS_DRV_MODE
    }

    /// "native" or "generic".
    pub(crate) fn mode(&self) -> &'static str {
        if self.flags == XDP_FLAGS_DRV_MODE {
            "native"
        } else {
            "generic"
        }
    }

    /// Sends the frames of receive queue `queue` to the socket `xsk`.
    pub(crate) fn insert(&self, queue: u32, xsk: &OwnedFd) -> io::Result<()> {
        let key = queue;
        let value = xsk.as_raw_fd() as u32;
        // bpf_attr for BPF_MAP_UPDATE_ELEM: map_fd, key, value, flags.
        let mut attr = [0u64; 8];
        attr[0] = self.map.as_raw_fd() as u64;
        attr[1] = &key as *const u32 as u64;
        attr[2] = &value as *const u32 as u64;
        bpf(BPF_MAP_UPDATE_ELEM, &mut attr, "BPF_MAP_UPDATE_ELEM").map(drop)
    }
}

impl Drop for XdpAttachment {
    fn drop(&mut self) {
        if let Err(e) = set_link_xdp(self.ifindex, -1, self.flags) {
            tracing::warn!(ifindex = self.ifindex, "cannot detach XDP: {e}");
        }
    }
}

/// A tcx program on a device's receive path that hands every frame to
/// another device's receive path (`bpf_redirect(target, BPF_F_INGRESS)`),
/// so that Linux takes a frame written to the first (fpd's TAP) as
/// received on the second (the port it came in on): `iif` rules,
/// rp_filter, conntrack zones and forwarding see the port. Detached when
/// dropped: the BPF link is not pinned and ends with its descriptor.
///
/// XDP does not run again on the target (it runs in the driver's receive
/// path, before this hook): a frame handed back never loops into fpd.
pub(crate) struct IngressRedirect {
    _link: OwnedFd,
}

impl IngressRedirect {
    /// Attaches to `from` a redirect to `to`'s receive path.
    pub(crate) fn attach(from: u32, to: u32) -> io::Result<IngressRedirect> {
        let insns = [
            insn(MOV64_K, 1, 0, 0, to as i32),
            insn(MOV64_K, 2, 0, 0, BPF_F_INGRESS),
            insn(CALL, 0, 0, 0, BPF_FUNC_REDIRECT),
            insn(EXIT, 0, 0, 0, 0),
        ];
        let prog = load(BPF_PROG_TYPE_SCHED_CLS, &insns)?;
        // bpf_attr for BPF_LINK_CREATE: prog_fd, target_ifindex,
        // attach_type, flags, then tcx's relative_fd and
        // expected_revision (zero: anywhere, any revision).
        let mut attr = [0u64; 8];
        attr[0] = prog.as_raw_fd() as u64 | (u64::from(from) << 32);
        attr[1] = u64::from(BPF_TCX_INGRESS);
        let link = owned(bpf(BPF_LINK_CREATE, &mut attr, "BPF_LINK_CREATE tcx")?);
        Ok(IngressRedirect { _link: link })
    }
}

/// RTM_SETLINK with IFLA_XDP { FD, FLAGS }: attaches `prog_fd` (or
/// detaches with -1), and waits for the kernel's answer.
fn set_link_xdp(ifindex: u32, prog_fd: i32, flags: u32) -> io::Result<()> {
    let mut msg = [0u8; 52];
    let put16 = |m: &mut [u8], at: usize, v: u16| m[at..at + 2].copy_from_slice(&v.to_ne_bytes());
    let put32 = |m: &mut [u8], at: usize, v: u32| m[at..at + 4].copy_from_slice(&v.to_ne_bytes());
    // nlmsghdr: len, type, flags, seq, pid.
    put32(&mut msg, 0, 52);
    put16(&mut msg, 4, libc::RTM_SETLINK);
    put16(&mut msg, 6, (libc::NLM_F_REQUEST | libc::NLM_F_ACK) as u16);
    put32(&mut msg, 8, 1);
    // ifinfomsg: family, pad, type, index, flags, change.
    put32(&mut msg, 20, ifindex);
    // IFLA_XDP, nested: IFLA_XDP_FD, IFLA_XDP_FLAGS.
    put16(&mut msg, 32, 20);
    put16(&mut msg, 34, IFLA_XDP | NLA_F_NESTED);
    put16(&mut msg, 36, 8);
    put16(&mut msg, 38, IFLA_XDP_FD);
    put32(&mut msg, 40, prog_fd as u32);
    put16(&mut msg, 44, 8);
    put16(&mut msg, 46, IFLA_XDP_FLAGS);
    put32(&mut msg, 48, flags);

    // SAFETY: a plain socket(2) call; the result is checked.
    let raw = unsafe {
        libc::socket(
            libc::AF_NETLINK,
            libc::SOCK_RAW | libc::SOCK_CLOEXEC,
            libc::NETLINK_ROUTE,
        )
    };
    if raw < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `raw` is a fresh descriptor that nothing else owns.
    let sock = unsafe { OwnedFd::from_raw_fd(raw) };
    // SAFETY: `msg` is a live buffer of the length given.
    let sent = unsafe { libc::send(sock.as_raw_fd(), msg.as_ptr().cast(), msg.len(), 0) };
    if sent < 0 {
        return Err(io::Error::last_os_error());
    }
    let mut buf = [0u8; 1024];
    // SAFETY: `buf` is a live buffer of the length given.
    let n = unsafe { libc::recv(sock.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    let n = n as usize;
    // The answer: an NLMSG_ERROR whose error is 0 (an ack) or -errno.
    if n >= 20 && u16::from_ne_bytes([buf[4], buf[5]]) == libc::NLMSG_ERROR as u16 {
        let err = i32::from_ne_bytes([buf[16], buf[17], buf[18], buf[19]]);
        if err == 0 {
            return Ok(());
        }
        let e = io::Error::from_raw_os_error(-err);
        let mode = if flags == XDP_FLAGS_DRV_MODE {
            "native"
        } else {
            "generic"
        };
        return Err(io::Error::new(e.kind(), format!("IFLA_XDP ({mode}): {e}")));
    }
    Err(io::Error::other("IFLA_XDP: unexpected answer"))
}
