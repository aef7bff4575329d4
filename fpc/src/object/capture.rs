//! BPF capture filters: the classic BPF programs capture tools attach to
//! packet sockets, synced so that a capture on an interface could also
//! see the fast path's traffic.
//!
//! Invariants: the key is the socket's inode (unique while it lives);
//! the program is kept as the kernel reports it (`struct sock_filter`
//! array, host order); nothing here changes while the socket lives.

use std::fmt;

use crate::codec::{DecodeError, Reader, Writer};

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct CaptureFilter {
    /// The packet socket's inode.
    pub inode: u32,
    /// The interface it is bound to, 0 for all.
    pub ifindex: u32,
    /// The ethertype it captures (host order), 0x0003 for all.
    pub protocol: u16,
    /// The owning process's name (`comm`).
    pub process: String,
    /// `struct sock_filter` instructions, 8 bytes each.
    pub program: Vec<u8>,
}

impl CaptureFilter {
    pub(crate) fn emit(&self, w: &mut Writer<'_>) {
        w.u32(self.inode);
        w.u32(self.ifindex);
        w.u16(self.protocol);
        w.str(&self.process);
        w.u32(self.program.len() as u32);
        w.buf_mut().extend_from_slice(&self.program);
    }

    pub(crate) fn parse(r: &mut Reader<'_>) -> Result<CaptureFilter, DecodeError> {
        let inode = r.u32()?;
        let ifindex = r.u32()?;
        let protocol = r.u16()?;
        let process = r.str()?;
        let len = r.u32()? as usize;
        Ok(CaptureFilter {
            inode,
            ifindex,
            protocol,
            process,
            program: r.bytes(len)?.to_vec(),
        })
    }
}

impl fmt::Display for CaptureFilter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "capture filter socket {} of {:?} dev #{} protocol {:#x} {} instructions",
            self.inode,
            self.process,
            self.ifindex,
            self.protocol,
            self.program.len() / 8
        )
    }
}
