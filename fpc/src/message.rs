//! FPC frames and messages.
//!
//! A frame is a 16-byte header and a body:
//!
//! ```text
//!  0      2     3      4          8                16
//!  +------+-----+------+----------+----------------+
//!  | magic| kind| flags| body len | sequence number|
//!  +------+-----+------+----------+----------------+
//! ```
//!
//! Invariants: `parse_header`, `Message::parse` and `SplitBatch::parse`
//! (the same rules as `Message::parse` for a batch) never panic on any input;
//! a body longer than [`MAX_BODY`] or a magic other than [`MAGIC`] is an
//! error, so a peer speaking another protocol is caught at the first frame.

use super::codec::{DecodeError, Reader, Writer};
use std::net::IpAddr;

use super::object::CtTuple;
use super::object::{Object, ObjectKind};

pub use batch::{BatchWriter, SplitBatch};

pub const MAGIC: u16 = 0xFB5C;
/// Bumped on any incompatible change of a message or object layout
/// (2: conntrack entries carry their timeout and sequence adjustments;
/// 3: routes carry their MTU metric; policy routing rules, kind 20, and
/// netconf, kind 21, which a version-2 peer would refuse as unknown
/// kinds, failing the whole batch; 4: the Hello's election id, the
/// Arbitration and Keepalive messages, nf_tables sets and their elements,
/// kinds 22 and 23, and the ports' qdiscs, kind 24).
pub const VERSION: u16 = 4;
pub const HEADER_LEN: usize = 16;
/// The largest body accepted (a batch of some 100,000 routes).
pub const MAX_BODY: usize = 8 << 20;

/// Capability bits announced in `Hello`: the object kinds a side handles.
pub fn kind_capability(kind: ObjectKind) -> u64 {
    1 << (kind as u8)
}

pub fn all_capabilities() -> u64 {
    ObjectKind::ALL
        .iter()
        .fold(0, |acc, k| acc | kind_capability(*k))
}

/// What a connection is for, announced in `Hello`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Role {
    /// A cache manager that owns the fast path's tables.
    Sync = 1,
    /// A reader (the equivalence check, benchmarks, the supervisor).
    Query = 2,
}

/// What to do with an object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Op {
    /// Insert, or replace when the key exists (replays are idempotent).
    Add = 1,
    Replace = 2,
    Delete = 3,
}

/// Why fpd rejected one object of a batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u16)]
pub enum ObjectError {
    NotFound = 1,
    Invalid = 2,
    Unsupported = 3,
}

impl ObjectError {
    pub fn from_u16(v: u16) -> Result<Self, DecodeError> {
        Ok(match v {
            1 => ObjectError::NotFound,
            2 => ObjectError::Invalid,
            3 => ObjectError::Unsupported,
            _ => {
                return Err(DecodeError::BadValue {
                    what: "object error",
                    value: v.into(),
                })
            }
        })
    }
}

/// Why a connection is being closed. An `Error` frame carries the code as
/// a plain number, so a peer that does not know a code still reads the
/// frame and its message (5 and 6 were added without a version change).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u16)]
pub enum ErrorCode {
    VersionMismatch = 1,
    Malformed = 2,
    Unexpected = 3,
    Replaced = 4,
    /// The peer is not accepted: a Hello for another blade, or from
    /// another instance while the blade has an owner.
    Refused = 5,
    /// A limit of fpd: connections, frame size, idle time, a peer that
    /// does not read.
    Limit = 6,
    /// A write from a sync session that is not the blade's primary
    /// (a backup, or a primary taken over by a higher election id): not
    /// applied; the connection stays open.
    NotPrimary = 7,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hello {
    pub version: u16,
    pub role: Role,
    pub instance: u32,
    pub blade: u32,
    pub capabilities: u64,
    /// A sync session's election id (`cmgrd --election-id`, FPC version
    /// 4): of the sync sessions of a blade, the highest is the primary,
    /// the only one whose writes are applied. 0 elsewhere.
    pub election_id: u64,
    /// Free text for logs ("cmgrd3", "fpd1", "fpsync-check").
    pub name: String,
}

/// A key/value counter, as fpd reports its table sizes.
pub type Counter = (String, u64);

/// The dataplane's counters for one interface it forwards on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InterfaceStats {
    pub ifindex: u32,
    pub name: String,
    /// `rx_packets`, `tx_bytes`, `exception_no_route`, `drop_blackhole`, ...
    pub counters: Vec<Counter>,
}

/// One entry of a hit-flags report (fpd -> cmgrd): what the fast path used
/// or needed since its last report. Kinds are numbered on the wire, each
/// followed by its own fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Hit {
    /// A neighbour that forwarded packets used: Linux should keep it fresh
    /// (NTF_USE), since Linux itself no longer sees that traffic.
    Neigh { ifindex: u32, dst: IpAddr },
    /// A next hop packets needed and the fast path has no usable neighbour
    /// for: Linux should resolve it (NTF_USE creates and probes it).
    NeighWanted { ifindex: u32, dst: IpAddr },
    /// A conntrack entry that forwarded packets matched (either tuple):
    /// Linux should push its timeout back (to `timeout`, the value fpd
    /// holds: the one Linux last announced), since Linux itself no longer
    /// sees that traffic.
    Conntrack {
        orig: CtTuple,
        zone: u16,
        timeout: u32,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    Hello(Hello),
    /// Marks every object; those not refreshed before `SyncEnd` go.
    SyncBegin {
        generation: u64,
    },
    SyncEnd {
        generation: u64,
    },
    Batch(Vec<(Op, Object)>),
    /// Acknowledges the frame whose sequence number is in the header, with
    /// the index in the batch of each rejected object.
    Ack(Vec<(u32, ObjectError)>),
    /// Sent just before closing the connection.
    Error {
        code: u16,
        message: String,
    },
    /// Query: stream every object back, then `DumpEnd`.
    DumpRequest,
    DumpEnd {
        count: u64,
    },
    /// Query: the table sizes and sync state.
    CountersRequest,
    Counters(Vec<Counter>),
    /// Query: the longest-prefix match of `addr` in `table`.
    RouteGet {
        table: u32,
        addr: std::net::IpAddr,
    },
    RouteReply(Option<Object>),
    /// Query: the dataplane's per-interface statistics.
    StatsRequest,
    /// The answer to `StatsRequest`; also sent unasked to the sync peer
    /// (cmgrd) every report interval.
    Stats(Vec<InterfaceStats>),
    /// fpd -> cmgrd on the sync connection: neighbours used or wanted.
    HitFlags(Vec<Hit>),
    /// fpd -> every sync session of the blade, after its Hello and at
    /// each change of primary: whether this session is the primary (its
    /// writes applied) or a backup, and who the primary is.
    Arbitration {
        primary: bool,
        primary_instance: u32,
        primary_election_id: u64,
    },
    /// Both ways on a sync session, every second or so: a peer that sends
    /// nothing for the peer timeout is taken for gone (a cut link, a
    /// frozen host). Not acknowledged.
    Keepalive,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
enum Kind {
    Hello = 1,
    SyncBegin = 2,
    SyncEnd = 3,
    Batch = 4,
    Ack = 5,
    Error = 6,
    DumpRequest = 7,
    DumpEnd = 8,
    CountersRequest = 9,
    Counters = 10,
    RouteGet = 11,
    RouteReply = 12,
    StatsRequest = 13,
    Stats = 14,
    HitFlags = 15,
    Arbitration = 16,
    Keepalive = 17,
}

impl Kind {
    fn from_u8(v: u8) -> Result<Self, DecodeError> {
        use Kind::*;
        Ok(match v {
            1 => Hello,
            2 => SyncBegin,
            3 => SyncEnd,
            4 => Batch,
            5 => Ack,
            6 => Error,
            7 => DumpRequest,
            8 => DumpEnd,
            9 => CountersRequest,
            10 => Counters,
            11 => RouteGet,
            12 => RouteReply,
            13 => StatsRequest,
            14 => Stats,
            15 => HitFlags,
            16 => Arbitration,
            17 => Keepalive,
            _ => {
                return Err(DecodeError::BadValue {
                    what: "message kind",
                    value: v.into(),
                })
            }
        })
    }
}

/// A decoded frame header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    kind: u8,
    pub flags: u8,
    pub body_len: usize,
    pub seq: u64,
}

/// Checks magic and length; the kind is checked with the body.
pub fn parse_header(raw: &[u8; HEADER_LEN]) -> Result<Header, DecodeError> {
    let mut r = Reader::new(raw);
    let magic = r.u16()?;
    if magic != MAGIC {
        return Err(DecodeError::BadValue {
            what: "magic",
            value: magic.into(),
        });
    }
    let kind = r.u8()?;
    let flags = r.u8()?;
    let body_len = r.u32()? as usize;
    let seq = r.u64()?;
    if body_len > MAX_BODY {
        return Err(DecodeError::BadValue {
            what: "body length",
            value: body_len as u64,
        });
    }
    Ok(Header {
        kind,
        flags,
        body_len,
        seq,
    })
}

/// The version a Hello frame announces, read from the first two bytes of
/// its body even when the rest does not parse: a peer of another version
/// may lay out the rest differently, and must be told "version mismatch",
/// not "malformed". `None` for other kinds of frame.
pub fn hello_version(header: &Header, body: &[u8]) -> Option<u16> {
    if header.kind != Kind::Hello as u8 {
        return None;
    }
    body.get(..2).map(|v| u16::from_be_bytes([v[0], v[1]]))
}

impl Message {
    /// The name of a message's kind, for logs.
    pub fn name(&self) -> &'static str {
        match self {
            Message::Hello(_) => "Hello",
            Message::SyncBegin { .. } => "SyncBegin",
            Message::SyncEnd { .. } => "SyncEnd",
            Message::Batch(_) => "Batch",
            Message::Ack(_) => "Ack",
            Message::Error { .. } => "Error",
            Message::DumpRequest => "DumpRequest",
            Message::DumpEnd { .. } => "DumpEnd",
            Message::CountersRequest => "CountersRequest",
            Message::Counters(_) => "Counters",
            Message::RouteGet { .. } => "RouteGet",
            Message::RouteReply(_) => "RouteReply",
            Message::StatsRequest => "StatsRequest",
            Message::Stats(_) => "Stats",
            Message::HitFlags(_) => "HitFlags",
            Message::Arbitration { .. } => "Arbitration",
            Message::Keepalive => "Keepalive",
        }
    }

    fn kind(&self) -> Kind {
        match self {
            Message::Hello(_) => Kind::Hello,
            Message::SyncBegin { .. } => Kind::SyncBegin,
            Message::SyncEnd { .. } => Kind::SyncEnd,
            Message::Batch(_) => Kind::Batch,
            Message::Ack(_) => Kind::Ack,
            Message::Error { .. } => Kind::Error,
            Message::DumpRequest => Kind::DumpRequest,
            Message::DumpEnd { .. } => Kind::DumpEnd,
            Message::CountersRequest => Kind::CountersRequest,
            Message::Counters(_) => Kind::Counters,
            Message::RouteGet { .. } => Kind::RouteGet,
            Message::RouteReply(_) => Kind::RouteReply,
            Message::StatsRequest => Kind::StatsRequest,
            Message::Stats(_) => Kind::Stats,
            Message::HitFlags(_) => Kind::HitFlags,
            Message::Arbitration { .. } => Kind::Arbitration,
            Message::Keepalive => Kind::Keepalive,
        }
    }

    /// Appends one whole frame (header and body) to `buf`.
    pub fn emit(&self, seq: u64, buf: &mut Vec<u8>) {
        let start = buf.len();
        buf.extend_from_slice(&MAGIC.to_be_bytes());
        buf.push(self.kind() as u8);
        buf.push(0);
        buf.extend_from_slice(&[0; 4]);
        buf.extend_from_slice(&seq.to_be_bytes());
        let body = buf.len();
        let mut w = Writer::new(buf);
        match self {
            Message::Hello(h) => {
                w.u16(h.version);
                w.u8(h.role as u8);
                w.u32(h.instance);
                w.u32(h.blade);
                w.u64(h.capabilities);
                w.u64(h.election_id);
                w.str(&h.name);
            }
            Message::Arbitration {
                primary,
                primary_instance,
                primary_election_id,
            } => {
                w.u8(u8::from(*primary));
                w.u32(*primary_instance);
                w.u64(*primary_election_id);
            }
            Message::SyncBegin { generation } | Message::SyncEnd { generation } => {
                w.u64(*generation)
            }
            Message::Batch(ops) => {
                w.u32(ops.len() as u32);
                for (op, obj) in ops {
                    w.u8(*op as u8);
                    obj.emit(buf_of(&mut w));
                }
            }
            Message::Ack(errors) => {
                w.u32(errors.len() as u32);
                for (index, err) in errors {
                    w.u32(*index);
                    w.u16(*err as u16);
                }
            }
            Message::Error { code, message } => {
                w.u16(*code);
                w.str(message);
            }
            Message::DumpRequest
            | Message::CountersRequest
            | Message::StatsRequest
            | Message::Keepalive => {}
            Message::DumpEnd { count } => w.u64(*count),
            Message::Counters(counters) => {
                w.u32(counters.len() as u32);
                for (name, value) in counters {
                    w.str(name);
                    w.u64(*value);
                }
            }
            Message::RouteGet { table, addr } => {
                w.u32(*table);
                w.ip(*addr);
            }
            Message::RouteReply(route) => match route {
                None => w.u8(0),
                Some(obj) => {
                    w.u8(1);
                    obj.emit(buf_of(&mut w));
                }
            },
            Message::Stats(interfaces) => {
                w.u32(interfaces.len() as u32);
                for i in interfaces {
                    w.u32(i.ifindex);
                    w.str(&i.name);
                    w.u32(i.counters.len() as u32);
                    for (name, value) in &i.counters {
                        w.str(name);
                        w.u64(*value);
                    }
                }
            }
            Message::HitFlags(hits) => {
                w.u32(hits.len() as u32);
                for hit in hits {
                    match hit {
                        Hit::Neigh { ifindex, dst } | Hit::NeighWanted { ifindex, dst } => {
                            w.u8(if matches!(hit, Hit::Neigh { .. }) {
                                1
                            } else {
                                2
                            });
                            w.u32(*ifindex);
                            w.ip(*dst);
                        }
                        Hit::Conntrack {
                            orig,
                            zone,
                            timeout,
                        } => {
                            w.u8(3);
                            orig.emit(&mut w);
                            w.u16(*zone);
                            w.u32(*timeout);
                        }
                    }
                }
            }
        }
        let body_len = (buf.len() - body) as u32;
        buf[start + 4..start + 8].copy_from_slice(&body_len.to_be_bytes());
    }

    /// Whether `header` is a `Batch` frame's.
    pub fn is_batch(header: &Header) -> bool {
        header.kind == Kind::Batch as u8
    }

    /// Decodes a body whose header was accepted by [`parse_header`].
    pub fn parse(header: &Header, body: &[u8]) -> Result<Message, DecodeError> {
        let mut r = Reader::new(body);
        let msg = match Kind::from_u8(header.kind)? {
            Kind::Hello => {
                let version = r.u16()?;
                let role = match r.u8()? {
                    1 => Role::Sync,
                    2 => Role::Query,
                    v => {
                        return Err(DecodeError::BadValue {
                            what: "role",
                            value: v.into(),
                        })
                    }
                };
                Message::Hello(Hello {
                    version,
                    role,
                    instance: r.u32()?,
                    blade: r.u32()?,
                    capabilities: r.u64()?,
                    election_id: r.u64()?,
                    name: r.str()?,
                })
            }
            Kind::Keepalive => Message::Keepalive,
            Kind::Arbitration => Message::Arbitration {
                primary: r.u8()? != 0,
                primary_instance: r.u32()?,
                primary_election_id: r.u64()?,
            },
            Kind::SyncBegin => Message::SyncBegin {
                generation: r.u64()?,
            },
            Kind::SyncEnd => Message::SyncEnd {
                generation: r.u64()?,
            },
            Kind::Batch => {
                let count = batch_count(&mut r)?;
                let mut ops = Vec::with_capacity(count);
                for _ in 0..count {
                    let op = parse_op(&mut r)?;
                    ops.push((op, Object::parse(&mut r)?));
                }
                Message::Batch(ops)
            }
            Kind::Ack => {
                let count = r.u32()? as usize;
                if count > r.remaining() / 6 {
                    return Err(DecodeError::BadValue {
                        what: "error count",
                        value: count as u64,
                    });
                }
                let mut errors = Vec::with_capacity(count);
                for _ in 0..count {
                    errors.push((r.u32()?, ObjectError::from_u16(r.u16()?)?));
                }
                Message::Ack(errors)
            }
            Kind::Error => Message::Error {
                code: r.u16()?,
                message: r.str()?,
            },
            Kind::DumpRequest => Message::DumpRequest,
            Kind::DumpEnd => Message::DumpEnd { count: r.u64()? },
            Kind::CountersRequest => Message::CountersRequest,
            Kind::Counters => {
                let count = r.u32()? as usize;
                if count > r.remaining() / 10 {
                    return Err(DecodeError::BadValue {
                        what: "counter count",
                        value: count as u64,
                    });
                }
                let mut counters = Vec::with_capacity(count);
                for _ in 0..count {
                    counters.push((r.str()?, r.u64()?));
                }
                Message::Counters(counters)
            }
            Kind::RouteGet => Message::RouteGet {
                table: r.u32()?,
                addr: r.ip()?,
            },
            Kind::RouteReply => match r.u8()? {
                0 => Message::RouteReply(None),
                1 => Message::RouteReply(Some(Object::parse(&mut r)?)),
                v => {
                    return Err(DecodeError::BadValue {
                        what: "route reply",
                        value: v.into(),
                    })
                }
            },
            Kind::StatsRequest => Message::StatsRequest,
            Kind::Stats => {
                let count = r.u32()? as usize;
                // An interface is at least 10 bytes (index, name, count).
                if count > r.remaining() / 10 {
                    return Err(DecodeError::BadValue {
                        what: "interface count",
                        value: count as u64,
                    });
                }
                let mut interfaces = Vec::with_capacity(count);
                for _ in 0..count {
                    let ifindex = r.u32()?;
                    let name = r.str()?;
                    let n = r.u32()? as usize;
                    if n > r.remaining() / 10 {
                        return Err(DecodeError::BadValue {
                            what: "counter count",
                            value: n as u64,
                        });
                    }
                    let mut counters = Vec::with_capacity(n);
                    for _ in 0..n {
                        counters.push((r.str()?, r.u64()?));
                    }
                    interfaces.push(InterfaceStats {
                        ifindex,
                        name,
                        counters,
                    });
                }
                Message::Stats(interfaces)
            }
            Kind::HitFlags => {
                let count = r.u32()? as usize;
                // A hit is at least 10 bytes (kind, ifindex, IPv4 address).
                if count > r.remaining() / 10 {
                    return Err(DecodeError::BadValue {
                        what: "hit count",
                        value: count as u64,
                    });
                }
                let mut hits = Vec::with_capacity(count);
                for _ in 0..count {
                    hits.push(match r.u8()? {
                        1 => Hit::Neigh {
                            ifindex: r.u32()?,
                            dst: r.ip()?,
                        },
                        2 => Hit::NeighWanted {
                            ifindex: r.u32()?,
                            dst: r.ip()?,
                        },
                        3 => Hit::Conntrack {
                            orig: CtTuple::parse(&mut r)?,
                            zone: r.u16()?,
                            timeout: r.u32()?,
                        },
                        v => {
                            return Err(DecodeError::BadValue {
                                what: "hit kind",
                                value: v.into(),
                            })
                        }
                    });
                }
                Message::HitFlags(hits)
            }
        };
        r.finish()?;
        Ok(msg)
    }
}

/// A batch's op count, bounded by what the body holds.
fn batch_count(r: &mut Reader<'_>) -> Result<usize, DecodeError> {
    let count = r.u32()? as usize;
    // An op is at least 4 bytes (op, kind, length).
    if count > r.remaining() / 4 {
        return Err(DecodeError::BadValue {
            what: "batch count",
            value: count as u64,
        });
    }
    Ok(count)
}

fn parse_op(r: &mut Reader<'_>) -> Result<Op, DecodeError> {
    Ok(match r.u8()? {
        1 => Op::Add,
        2 => Op::Replace,
        3 => Op::Delete,
        v => {
            return Err(DecodeError::BadValue {
                what: "op",
                value: v.into(),
            })
        }
    })
}

/// Lets a nested emitter append to the writer's buffer.
fn buf_of<'a, 'b>(w: &'a mut Writer<'b>) -> &'a mut Vec<u8> {
    w.buf_mut()
}

/// Parses the header and body of one frame held whole in `frame`.
pub fn parse_frame(frame: &[u8]) -> Result<(Header, Message), DecodeError> {
    let raw: &[u8; HEADER_LEN] = frame
        .get(..HEADER_LEN)
        .and_then(|h| h.try_into().ok())
        .ok_or(DecodeError::Truncated {
            offset: 0,
            needed: HEADER_LEN,
            available: frame.len(),
        })?;
    let header = parse_header(raw)?;
    let body =
        frame
            .get(HEADER_LEN..HEADER_LEN + header.body_len)
            .ok_or(DecodeError::Truncated {
                offset: HEADER_LEN,
                needed: header.body_len,
                available: frame.len() - HEADER_LEN,
            })?;
    let msg = Message::parse(&header, body)?;
    if frame.len() != HEADER_LEN + header.body_len {
        return Err(DecodeError::Trailing(
            frame.len() - HEADER_LEN - header.body_len,
        ));
    }
    Ok((header, msg))
}

/// One message of every kind, for the tests of this module and the fuzzer.
#[cfg(test)]
pub(crate) fn tests_corpus() -> Vec<Message> {
    tests::messages()
}

mod batch;
#[cfg(test)]
mod tests;
