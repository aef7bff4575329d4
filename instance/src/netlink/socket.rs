//! A blocking netlink socket (NETLINK_ROUTE, NETLINK_XFRM, ...): listener
//! (multicast groups) or command socket (dumps).
//!
//! Through nix where it wraps the call (bind, getsockname, recv, send,
//! SO_RCVBUF[FORCE]); raw libc, with SAFETY lines, for what nix lacks:
//! socket(2) of NETLINK_XFRM (no SockProtocol for it) and
//! NETLINK_ADD_MEMBERSHIP (groups above 31 do not fit the bind mask).

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

use nix::errno::Errno;
use nix::sys::socket::{self, sockopt, MsgFlags, NetlinkAddr};

use super::wire::{self, Messages, NlMsg, WireError, NLMSG_DONE, NLMSG_ERROR, NLM_F_DUMP_INTR};

const SOL_NETLINK: libc::c_int = 270;
const NETLINK_ADD_MEMBERSHIP: libc::c_int = 1;

#[derive(Debug, thiserror::Error)]
pub enum SocketError {
    #[error("netlink socket")]
    Io(#[from] io::Error),
    #[error("the netlink receive queue overran (ENOBUFS)")]
    Overrun,
    #[error("malformed netlink message")]
    Wire(#[from] WireError),
    #[error("the kernel answered a dump with error {0}")]
    Kernel(i32),
    #[error("the dump was interrupted {0} times by concurrent changes")]
    Interrupted(u32),
}

pub struct NetlinkSocket {
    fd: OwnedFd,
    seq: u32,
    /// One datagram at a time lands here (allocated once: zero-filling a
    /// large buffer per receive costs more than the receive itself).
    scratch: Box<[u8]>,
}

/// The largest datagram received (dump parts and notifications are far
/// smaller; a link with many VFs can pass 64 KiB).
const DATAGRAM_MAX: usize = 1 << 20;

fn check(ret: libc::c_int) -> io::Result<libc::c_int> {
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret)
    }
}

impl NetlinkSocket {
    /// A NETLINK_ROUTE socket subscribed to `groups`, with a receive buffer
    /// of `rcvbuf` bytes.
    pub fn open(groups: &[u32], rcvbuf: usize) -> io::Result<Self> {
        Self::open_proto(libc::NETLINK_ROUTE, groups, rcvbuf)
    }

    /// A socket of netlink protocol `proto` (NETLINK_XFRM, ...) subscribed
    /// to `groups`, with a receive buffer of `rcvbuf` bytes.
    pub fn open_proto(proto: libc::c_int, groups: &[u32], rcvbuf: usize) -> io::Result<Self> {
        // SAFETY: plain socket(2) call; the result is checked.
        let raw = check(unsafe {
            libc::socket(libc::AF_NETLINK, libc::SOCK_RAW | libc::SOCK_CLOEXEC, proto)
        })?;
        // SAFETY: `raw` is a fresh descriptor that nothing else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        let sock = NetlinkSocket {
            fd,
            seq: 1,
            scratch: vec![0; DATAGRAM_MAX].into_boxed_slice(),
        };
        sock.set_rcvbuf(rcvbuf)?;
        socket::bind(sock.fd.as_raw_fd(), &NetlinkAddr::new(0, 0))?;
        for group in groups {
            // Groups above 31 (RTNLGRP_NEXTHOP) do not fit the bind mask.
            sock.setsockopt(SOL_NETLINK, NETLINK_ADD_MEMBERSHIP, *group as libc::c_int)?;
        }
        Ok(sock)
    }

    /// The port id the kernel gave this socket at bind (the nlmsg_pid of
    /// the notifications its requests cause).
    pub fn portid(&self) -> io::Result<u32> {
        let addr: NetlinkAddr = socket::getsockname(self.fd.as_raw_fd())?;
        Ok(addr.pid())
    }

    fn setsockopt(
        &self,
        level: libc::c_int,
        name: libc::c_int,
        value: libc::c_int,
    ) -> io::Result<()> {
        // SAFETY: value is a c_int that lives across the call.
        check(unsafe {
            libc::setsockopt(
                self.fd.as_raw_fd(),
                level,
                name,
                &value as *const _ as *const libc::c_void,
                std::mem::size_of::<libc::c_int>() as u32,
            )
        })?;
        Ok(())
    }

    /// SO_RCVBUF is silently capped at net.core.rmem_max (4 MiB here), too
    /// small for a full table's worth of notifications; SO_RCVBUFFORCE
    /// (CAP_NET_ADMIN) is not. Without the capability, fall back to the cap.
    fn set_rcvbuf(&self, bytes: usize) -> io::Result<()> {
        // The kernel doubles the value it is given for its bookkeeping.
        let value = (bytes / 2).min(i32::MAX as usize);
        socket::setsockopt(&self.fd, sockopt::RcvBufForce, &value)
            .or_else(|_| socket::setsockopt(&self.fd, sockopt::RcvBuf, &value))
            .map_err(io::Error::from)
    }

    /// Receives one datagram and appends it to `buf`. `Overrun` when the
    /// kernel dropped messages (ENOBUFS): the socket must be reopened.
    pub fn recv(&mut self, buf: &mut Vec<u8>, nonblocking: bool) -> Result<usize, SocketError> {
        let flags = if nonblocking {
            MsgFlags::MSG_DONTWAIT
        } else {
            MsgFlags::empty()
        };
        loop {
            match socket::recv(self.fd.as_raw_fd(), &mut self.scratch, flags) {
                Ok(n) => {
                    buf.extend_from_slice(&self.scratch[..n]);
                    return Ok(n);
                }
                Err(Errno::EINTR) => continue,
                Err(Errno::ENOBUFS) => return Err(SocketError::Overrun),
                Err(e) => return Err(io::Error::from(e).into()),
            }
        }
    }

    pub fn send(&self, msg: &[u8]) -> io::Result<()> {
        let n = socket::send(self.fd.as_raw_fd(), msg, MsgFlags::empty())?;
        if n != msg.len() {
            return Err(io::Error::new(
                io::ErrorKind::WriteZero,
                "short netlink send",
            ));
        }
        Ok(())
    }

    /// Dumps `kind` for `family`, calling `each` with every message. A dump
    /// that the kernel marks as interrupted (NLM_F_DUMP_INTR: the table
    /// changed under it) is restarted, up to a few times; `each(None)` is
    /// called before each new attempt so that the caller can forget what
    /// it was given.
    pub fn dump(
        &mut self,
        kind: u16,
        family: u8,
        each: impl FnMut(Option<&NlMsg<'_>>),
    ) -> Result<(), SocketError> {
        self.dump_with(|seq| wire::dump_request(kind, family, seq), each)
    }

    /// As [`Self::dump`], with the request built by `request(seq)`.
    pub fn dump_with(
        &mut self,
        request: impl Fn(u32) -> Vec<u8>,
        mut each: impl FnMut(Option<&NlMsg<'_>>),
    ) -> Result<(), SocketError> {
        const ATTEMPTS: u32 = 5;
        let mut buf = Vec::with_capacity(1 << 20);
        for attempt in 1..=ATTEMPTS {
            self.seq = self.seq.wrapping_add(1);
            let seq = self.seq;
            self.send(&request(seq))?;
            let mut interrupted = false;
            'recv: loop {
                buf.clear();
                self.recv(&mut buf, false)?;
                for msg in Messages::new(&buf) {
                    let msg = msg?;
                    if msg.seq != seq {
                        continue; // a reply to an earlier, abandoned dump
                    }
                    interrupted |= msg.flags & NLM_F_DUMP_INTR != 0;
                    match msg.kind {
                        NLMSG_DONE => break 'recv,
                        NLMSG_ERROR => match wire::error_code(msg.payload) {
                            0 => break 'recv,
                            e => return Err(SocketError::Kernel(-e)),
                        },
                        _ => each(Some(&msg)),
                    }
                }
            }
            if !interrupted {
                return Ok(());
            }
            if attempt < ATTEMPTS {
                each(None);
            }
        }
        Err(SocketError::Interrupted(ATTEMPTS))
    }
}

impl AsRawFd for NetlinkSocket {
    fn as_raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}
