//! Reading back what `tcpdump -w` captured (classic pcap, Ethernet,
//! IPv4): each TCP segment's addresses, ports, sequence number, flags and
//! payload, and one direction of a connection reassembled. For the
//! scenarios that check what crosses the wire.

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddrV4};

/// One TCP segment.
#[derive(Debug, Clone)]
pub struct Segment {
    pub src: SocketAddrV4,
    pub dst: SocketAddrV4,
    pub seq: u32,
    pub syn: bool,
    pub payload: Vec<u8>,
}

/// The TCP/IPv4 segments of a pcap file's bytes (other frames skipped).
pub fn segments(file: &[u8]) -> Vec<Segment> {
    let mut out = Vec::new();
    if file.len() < 24 {
        return out;
    }
    let little = match file[..4] {
        [0xd4, 0xc3, 0xb2, 0xa1] | [0x4d, 0x3c, 0xb2, 0xa1] => true,
        [0xa1, 0xb2, 0xc3, 0xd4] | [0xa1, 0xb2, 0x3c, 0x4d] => false,
        _ => return out,
    };
    let u32_at = |b: &[u8], at: usize| {
        let raw = [b[at], b[at + 1], b[at + 2], b[at + 3]];
        if little {
            u32::from_le_bytes(raw)
        } else {
            u32::from_be_bytes(raw)
        }
    };
    let link = u32_at(file, 20);
    let mut at = 24;
    while at + 16 <= file.len() {
        let caplen = u32_at(file, at + 8) as usize;
        let Some(frame) = file.get(at + 16..at + 16 + caplen) else {
            break;
        };
        at += 16 + caplen;
        // Ethernet (1) or Linux cooked (113) framing.
        let ip = match link {
            1 if frame.len() > 14 && frame[12..14] == [0x08, 0x00] => &frame[14..],
            113 if frame.len() > 16 && frame[14..16] == [0x08, 0x00] => &frame[16..],
            _ => continue,
        };
        if ip.len() < 20 || ip[0] >> 4 != 4 || ip[9] != 6 {
            continue;
        }
        let ihl = usize::from(ip[0] & 0x0f) * 4;
        let total = usize::from(u16::from_be_bytes([ip[2], ip[3]])).min(ip.len());
        let Some(tcp) = ip.get(ihl..total) else {
            continue;
        };
        if tcp.len() < 20 {
            continue;
        }
        let off = usize::from(tcp[12] >> 4) * 4;
        let addr = |b: &[u8]| Ipv4Addr::new(b[0], b[1], b[2], b[3]);
        out.push(Segment {
            src: SocketAddrV4::new(addr(&ip[12..16]), u16::from_be_bytes([tcp[0], tcp[1]])),
            dst: SocketAddrV4::new(addr(&ip[16..20]), u16::from_be_bytes([tcp[2], tcp[3]])),
            seq: u32::from_be_bytes([tcp[4], tcp[5], tcp[6], tcp[7]]),
            syn: tcp[13] & 0x02 != 0,
            payload: tcp.get(off..).unwrap_or_default().to_vec(),
        });
    }
    out
}

/// The bytes `src` sent to `dst` on one connection, in order, each once
/// (retransmissions dropped).
pub fn stream(segments: &[Segment], src: SocketAddrV4, dst: SocketAddrV4) -> Vec<u8> {
    let mut isn = None;
    let mut parts = BTreeMap::new();
    for s in segments.iter().filter(|s| s.src == src && s.dst == dst) {
        if s.syn {
            isn = Some(s.seq.wrapping_add(1));
        } else if !s.payload.is_empty() {
            parts.entry(s.seq).or_insert_with(|| s.payload.clone());
        }
    }
    let Some(isn) = isn else {
        return Vec::new();
    };
    let mut ordered: Vec<(u32, Vec<u8>)> = parts
        .into_iter()
        .map(|(seq, p)| (seq.wrapping_sub(isn), p))
        .collect();
    ordered.sort_by_key(|(off, _)| *off);
    let mut out = Vec::new();
    for (off, p) in ordered {
        let off = off as usize;
        if off + p.len() > out.len() && off <= out.len() {
            out.extend_from_slice(&p[out.len() - off..]);
        }
    }
    out
}

/// Whether `needle` occurs in `haystack`.
pub fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty() && haystack.windows(needle.len()).any(|w| w == needle)
}
