//! BPF capture filters, found through sock_diag (NETLINK_SOCK_DIAG,
//! AF_PACKET, PACKET_DIAG_FILTER) and the owning process (`/proc`).
//!
//! Invariants:
//! * The kernel sends no notification for packet sockets: the processor
//!   polls this dump, and what the poll no longer finds is deleted.
//! * Only sockets with a filter count, and by default only those of the
//!   seed's capture tools ([`CAPTURE_TOOLS`]); with `-A` any process's.
//! * The decoder does no I/O and never panics; finding owners reads
//!   `/proc/*/fd`, outside of it.

use std::collections::HashMap;

use fpc::CaptureFilter;

use super::wire::{NlMsg, WireError, NLMSG_HDRLEN, NLM_F_DUMP, NLM_F_REQUEST};

pub const NETLINK_SOCK_DIAG: libc::c_int = 4;
pub const SOCK_DIAG_BY_FAMILY: u16 = 20;
const AF_PACKET: u8 = 17;
const PACKET_SHOW_INFO: u32 = 0x1;
const PACKET_SHOW_FILTER: u32 = 0x20;
const PACKET_DIAG_INFO: u16 = 0;
const PACKET_DIAG_FILTER: u16 = 7;

/// The programs whose filters are synced without `-A` (the seed's list).
pub const CAPTURE_TOOLS: [&str; 5] = ["tcpdump", "ethereal", "wireshark", "tshark", "nmap"];

/// A dump of every packet socket with its info and filter.
pub fn dump_request(seq: u32) -> Vec<u8> {
    let len = NLMSG_HDRLEN + 20;
    let mut buf = Vec::with_capacity(len);
    buf.extend_from_slice(&(len as u32).to_ne_bytes());
    buf.extend_from_slice(&SOCK_DIAG_BY_FAMILY.to_ne_bytes());
    buf.extend_from_slice(&(NLM_F_REQUEST | NLM_F_DUMP).to_ne_bytes());
    buf.extend_from_slice(&seq.to_ne_bytes());
    buf.extend_from_slice(&0u32.to_ne_bytes());
    // struct packet_diag_req: family, protocol, pad, ino, show, cookie[2].
    buf.extend_from_slice(&[AF_PACKET, 0, 0, 0]);
    buf.extend_from_slice(&0u32.to_ne_bytes());
    buf.extend_from_slice(&(PACKET_SHOW_INFO | PACKET_SHOW_FILTER).to_ne_bytes());
    buf.extend_from_slice(&[0; 8]);
    buf
}

/// The filter of one `packet_diag_msg`, without its owner (filled later);
/// None for a socket without a filter.
pub fn decode(msg: &NlMsg<'_>) -> Result<Option<CaptureFilter>, WireError> {
    let p = msg.payload;
    // struct packet_diag_msg: family, type, num (be16), ino, cookie[2].
    if p.len() < 16 {
        return Err(WireError::Short(p.len()));
    }
    let mut c = CaptureFilter {
        inode: u32::from_ne_bytes(p[4..8].try_into().unwrap()),
        ifindex: 0,
        protocol: u16::from_be_bytes([p[2], p[3]]),
        process: String::new(),
        program: Vec::new(),
    };
    let mut rest = &p[16..];
    while rest.len() >= 4 {
        let len = u16::from_ne_bytes([rest[0], rest[1]]) as usize;
        let kind = u16::from_ne_bytes([rest[2], rest[3]]) & 0x3fff;
        if len < 4 || len > rest.len() {
            return Err(WireError::BadAttr { kind, len });
        }
        let v = &rest[4..len];
        match kind {
            PACKET_DIAG_INFO if v.len() >= 4 => {
                c.ifindex = u32::from_ne_bytes(v[..4].try_into().unwrap())
            }
            PACKET_DIAG_FILTER => c.program = v[..v.len() - v.len() % 8].to_vec(),
            _ => {}
        }
        rest = &rest[((len + 3) & !3).min(rest.len())..];
    }
    Ok((!c.program.is_empty()).then_some(c))
}

/// The name of the process owning each socket inode, from `/proc/*/fd`.
pub fn socket_owners() -> HashMap<u32, String> {
    let mut owners = HashMap::new();
    let Ok(procs) = std::fs::read_dir("/proc") else {
        return owners;
    };
    for p in procs.flatten() {
        let path = p.path();
        if !p
            .file_name()
            .to_string_lossy()
            .bytes()
            .all(|b| b.is_ascii_digit())
        {
            continue;
        }
        let Ok(fds) = std::fs::read_dir(path.join("fd")) else {
            continue;
        };
        let comm = std::fs::read_to_string(path.join("comm")).unwrap_or_default();
        for fd in fds.flatten() {
            let Ok(target) = std::fs::read_link(fd.path()) else {
                continue;
            };
            let t = target.to_string_lossy();
            if let Some(ino) = t
                .strip_prefix("socket:[")
                .and_then(|s| s.strip_suffix(']'))
                .and_then(|s| s.parse::<u32>().ok())
            {
                // A socket shared by several processes (inherited) is a
                // capture tool's when one of them is.
                let tool = |c: &String| CAPTURE_TOOLS.contains(&c.as_str());
                if !owners.get(&ino).is_some_and(tool) {
                    owners.insert(ino, comm.trim_end().to_owned());
                }
            }
        }
    }
    owners
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(filter: &[u8]) -> Vec<u8> {
        let mut m = vec![0u8; NLMSG_HDRLEN];
        m.extend_from_slice(&[AF_PACKET, 3, 0x00, 0x03]);
        m.extend_from_slice(&777u32.to_ne_bytes());
        m.extend_from_slice(&[0; 8]);
        let mut info = vec![0u8; 4 + 24];
        info[0..2].copy_from_slice(&28u16.to_ne_bytes());
        info[2..4].copy_from_slice(&PACKET_DIAG_INFO.to_ne_bytes());
        info[4..8].copy_from_slice(&5u32.to_ne_bytes());
        m.extend(info);
        m.extend_from_slice(&((4 + filter.len()) as u16).to_ne_bytes());
        m.extend_from_slice(&PACKET_DIAG_FILTER.to_ne_bytes());
        m.extend_from_slice(filter);
        let len = m.len() as u32;
        m[0..4].copy_from_slice(&len.to_ne_bytes());
        m
    }

    fn decode_one(b: &[u8]) -> Result<Option<CaptureFilter>, WireError> {
        decode(&crate::netlink::Messages::new(b).next().unwrap()?)
    }

    #[test]
    fn packet_socket_with_its_filter() {
        let prog = [0x06, 0, 0, 0, 0xff, 0xff, 0, 0];
        let c = decode_one(&message(&prog)).unwrap().unwrap();
        assert_eq!((c.inode, c.ifindex, c.protocol), (777, 5, 3));
        assert_eq!(c.program, prog);
        assert_eq!(decode_one(&message(&[])), Ok(None), "no filter");
    }

    #[test]
    fn malformed_messages_are_errors_not_panics() {
        let m = message(&[1; 16]);
        for cut in NLMSG_HDRLEN..m.len() {
            let mut b = m[..cut].to_vec();
            b[0..4].copy_from_slice(&(cut as u32).to_ne_bytes());
            let _ = decode_one(&b);
        }
        for at in NLMSG_HDRLEN..m.len() {
            for v in [0u8, 3, 4, 0xff] {
                let mut b = m.clone();
                b[at] = v;
                let _ = decode_one(&b);
            }
        }
    }
}
