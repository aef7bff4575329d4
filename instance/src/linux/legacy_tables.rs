//! Legacy x_tables (iptables-legacy, ip6tables-legacy): reading the tables
//! of the calling thread's namespace, and the audit status that decides
//! whether their changes are announced.
//!
//! Invariants:
//! * Only tables that exist are read: their names come from
//!   /proc/thread-self/net/ip_tables_names (ip6_); a getsockopt on a name
//!   that is not registered registers it (the kernel instantiates the
//!   table in the namespace on first use), which cmgrd must not cause.
//! * A table is read as info, entries, info again: when the two infos
//!   differ (or the kernel answers EAGAIN: the size changed under the
//!   read) it is read again, so hooks and entries are of one version.
//! * A table that does not decode fails the whole read (the cache keeps
//!   what it had); nothing here changes the kernel's configuration.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use fpc::{Object, AF_INET, AF_INET6};
use tracing::warn;

use crate::cache::Scope;
use crate::features::{Features, FILTER, IPV6, NAT};
use crate::netlink::audit;
use crate::netlink::xtables::{
    decode_table, entries_request, TableInfo, INFO_LEN, SO_GET_ENTRIES, SO_GET_INFO,
};
use crate::netlink::{Messages, NetlinkSocket, SocketError};

/// Attempts at reading one table while it changes under the read.
const ATTEMPTS: u32 = 5;

/// The tables of `family` that exist in the calling thread's namespace.
/// `/proc/net` is `/proc/self/net`, the namespace of the process's main
/// thread: a thread that entered another namespace (the check's dump
/// thread) must read its own, `/proc/thread-self/net`.
pub fn table_names(family: u8) -> io::Result<Vec<String>> {
    let file = match family {
        AF_INET6 => "/proc/thread-self/net/ip6_tables_names",
        _ => "/proc/thread-self/net/ip_tables_names",
    };
    match std::fs::read_to_string(file) {
        Ok(s) => Ok(s.lines().map(str::to_owned).collect()),
        // A kernel without legacy tables of this family.
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(e),
    }
}

/// A raw socket of the calling thread's namespace, for the getsockopts.
fn raw_socket(family: u8) -> io::Result<OwnedFd> {
    let domain = if family == AF_INET6 {
        libc::AF_INET6
    } else {
        libc::AF_INET
    };
    // SAFETY: plain socket(2); the result is checked before use.
    let fd = unsafe {
        libc::socket(
            domain,
            libc::SOCK_RAW | libc::SOCK_CLOEXEC,
            libc::IPPROTO_RAW,
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: a fresh descriptor nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// getsockopt(fd, level, name, buf): `buf` goes in (the table's name) and
/// comes back filled; the length the kernel wrote.
fn getsockopt(
    fd: &OwnedFd,
    level: libc::c_int,
    name: libc::c_int,
    buf: &mut [u8],
) -> io::Result<usize> {
    let mut len = buf.len() as libc::socklen_t;
    // SAFETY: `buf` is valid for `len` bytes for the call's duration.
    let ret = unsafe {
        libc::getsockopt(
            fd.as_raw_fd(),
            level,
            name,
            buf.as_mut_ptr() as *mut libc::c_void,
            &mut len,
        )
    };
    if ret < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(len as usize)
}

fn info(fd: &OwnedFd, level: libc::c_int, name: &str) -> io::Result<TableInfo> {
    let mut buf = [0u8; INFO_LEN];
    let n = name.len().min(31);
    buf[..n].copy_from_slice(&name.as_bytes()[..n]);
    getsockopt(fd, level, SO_GET_INFO, &mut buf)?;
    TableInfo::parse(&buf).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
}

/// Reads and decodes one table; an empty list when it went away.
fn read_table(family: u8, name: &str) -> io::Result<Vec<Object>> {
    let fd = raw_socket(family)?;
    let level = if family == AF_INET6 {
        libc::IPPROTO_IPV6
    } else {
        libc::IPPROTO_IP
    };
    for _ in 0..ATTEMPTS {
        let before = match info(&fd, level, name) {
            Ok(i) => i,
            // Gone between the names and the read (its namespace is
            // going away): nothing to sync.
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => return Ok(Vec::new()),
            Err(e) => return Err(e),
        };
        let mut reply = entries_request(&before);
        match getsockopt(&fd, level, SO_GET_ENTRIES, &mut reply) {
            Ok(_) => {}
            // The table's size changed since the info: read it again.
            Err(e) if e.raw_os_error() == Some(libc::EAGAIN) => continue,
            Err(e) => return Err(e),
        }
        if info(&fd, level, name)? != before {
            continue;
        }
        return decode_table(family, &before, &reply).map_err(|e| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("legacy table {name} (family {family}): {e}"),
            )
        });
    }
    Err(io::Error::new(
        io::ErrorKind::Interrupted,
        format!("legacy table {name} kept changing while read"),
    ))
}

/// The chains or the rules (`scope`) of every legacy table `features`
/// syncs, of both families.
pub fn dump(scope: Scope, features: &Features) -> Result<Vec<Object>, SocketError> {
    if !features.enabled(FILTER) {
        return Ok(Vec::new());
    }
    let mut out = Vec::new();
    for family in [AF_INET, AF_INET6] {
        if family == AF_INET6 && !features.enabled(IPV6) {
            continue;
        }
        for name in table_names(family)? {
            if name == "nat" && !features.enabled(NAT) {
                continue;
            }
            out.extend(
                read_table(family, &name)?
                    .into_iter()
                    .filter(|o| Scope::of(o) == scope && features.syncs(o)),
            );
        }
    }
    Ok(out)
}

/// The inode the kernel gives the init network namespace
/// (PROC_NET_INIT_INO, fixed since Linux 6.x; `net:[4026531833]` here).
const PROC_NET_INIT_INO: u64 = 0xEFFF_FFF9;

/// Whether this thread's network namespace is the init namespace (that of
/// pid 1): the only one whose audit socket gets the records. Where pid 1's
/// namespace files may not be read (EACCES even for root on some hosts,
/// as on the machines this is tested on), the init namespace's fixed
/// inode decides; a kernel without it answers no, and cmgrd polls.
pub fn in_init_netns() -> io::Result<bool> {
    use std::os::unix::fs::MetadataExt;
    let ours = std::fs::metadata("/proc/thread-self/ns/net")?;
    match std::fs::metadata("/proc/1/ns/net") {
        Ok(init) => Ok(init.ino() == ours.ino() && init.dev() == ours.dev()),
        Err(e) if e.kind() == io::ErrorKind::PermissionDenied => {
            Ok(ours.ino() == PROC_NET_INIT_INO)
        }
        Err(e) => Err(e),
    }
}

/// The record listener: a NETLINK_AUDIT socket on AUDIT_NLGRP_READLOG.
/// The kernel multicasts records only on the init namespace's audit
/// socket (kauditd_send_multicast_skb uses init_net): open it there.
pub fn open_listener(rcvbuf: usize) -> io::Result<NetlinkSocket> {
    NetlinkSocket::open_proto(audit::NETLINK_AUDIT, &[audit::AUDIT_NLGRP_READLOG], rcvbuf)
}

/// Asks the kernel whether audit is enabled (AUDIT_GET; root). Records
/// (AUDIT_NETFILTER_CFG among them) are emitted only while it is.
pub struct AuditStatus {
    sock: NetlinkSocket,
    seq: u32,
}

impl AuditStatus {
    pub fn open() -> io::Result<AuditStatus> {
        let sock = NetlinkSocket::open_proto(audit::NETLINK_AUDIT, &[], 64 << 10)?;
        // The reply comes from a kernel thread; never wait on it forever.
        let timeout = libc::timeval {
            tv_sec: 1,
            tv_usec: 0,
        };
        // SAFETY: a timeval that lives across the call, of its size.
        let ret = unsafe {
            libc::setsockopt(
                sock.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_RCVTIMEO,
                &timeout as *const _ as *const libc::c_void,
                std::mem::size_of::<libc::timeval>() as libc::socklen_t,
            )
        };
        if ret < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(AuditStatus { sock, seq: 0 })
    }

    pub fn enabled(&mut self) -> io::Result<bool> {
        self.seq = self.seq.wrapping_add(1);
        self.sock.send(&audit::status_request(self.seq))?;
        let mut buf = Vec::new();
        for _ in 0..16 {
            buf.clear();
            self.sock.recv(&mut buf, false).map_err(|e| match e {
                SocketError::Io(e) => e,
                e => io::Error::other(e.to_string()),
            })?;
            for msg in Messages::new(&buf).flatten() {
                if msg.seq != self.seq {
                    continue; // an answer to an earlier request that timed out
                }
                if msg.kind == crate::netlink::wire::NLMSG_ERROR {
                    match crate::netlink::wire::error_code(msg.payload) {
                        0 => continue, // an ack
                        code => return Err(io::Error::from_raw_os_error(-code)),
                    }
                }
                if msg.kind == audit::AUDIT_GET {
                    return audit::status_enabled(msg.payload).ok_or_else(|| {
                        io::Error::new(io::ErrorKind::InvalidData, "short AUDIT_GET reply")
                    });
                }
            }
        }
        warn!("no AUDIT_GET reply among the messages received");
        Err(io::Error::new(
            io::ErrorKind::TimedOut,
            "no AUDIT_GET reply",
        ))
    }
}
