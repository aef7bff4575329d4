//! IPsec objects (XFRM): security associations, security policies, and the
//! SAs' replay state (sequence numbers) that IPsec HA synchronizes.
//!
//! Invariants:
//! * An SA's key is the kernel's identity of a state: (daddr, SPI, proto)
//!   under its mark (`__xfrm_state_lookup` matches `mark & m == v`); a
//!   policy's is its index (unique, the direction in its low bits), plus
//!   its direction and type (main or sub).
//! * Only configuration is kept: the current lifetime (bytes, packets, add
//!   and use times) and the statistics change with traffic, without a
//!   notification, and are left out. The sequence numbers also change with
//!   traffic: they travel apart, as [`XfrmReplay`], and only to blades
//!   with IPsec HA on.
//! * The decoder never panics: every count is bounded by the bytes left.

use std::fmt;
use std::net::IpAddr;

use crate::codec::{DecodeError, Reader, Writer};

/// A traffic selector (`struct xfrm_selector`), ports in host order.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Selector {
    pub daddr: IpAddr,
    pub saddr: IpAddr,
    pub prefixlen_d: u8,
    pub prefixlen_s: u8,
    pub dport: u16,
    pub dport_mask: u16,
    pub sport: u16,
    pub sport_mask: u16,
    /// IPPROTO_*, 0 for any.
    pub proto: u8,
    pub ifindex: i32,
    pub user: u32,
}

/// Configured limits (`struct xfrm_lifetime_cfg`): bytes, packets, seconds.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct Lifetime {
    pub soft_bytes: u64,
    pub hard_bytes: u64,
    pub soft_packets: u64,
    pub hard_packets: u64,
    pub soft_add_seconds: u64,
    pub hard_add_seconds: u64,
    pub soft_use_seconds: u64,
    pub hard_use_seconds: u64,
}

/// An algorithm with its key (`XFRMA_ALG_*`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct XfrmAlgo {
    /// The attribute it came in: 1 auth, 2 crypt, 3 comp, 18 aead,
    /// 20 auth with truncation.
    pub attr: u8,
    pub name: String,
    pub key_bits: u32,
    /// The truncation (auth) or ICV (aead) length in bits, else 0.
    pub param: u32,
    pub key: Vec<u8>,
}

/// UDP encapsulation (`struct xfrm_encap_tmpl`), ports in host order.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Encap {
    pub encap_type: u16,
    pub sport: u16,
    pub dport: u16,
    pub oa: Option<IpAddr>,
}

/// A security association (`XFRM_MSG_NEWSA`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct XfrmSa {
    pub sel: Selector,
    pub daddr: IpAddr,
    /// In host order.
    pub spi: u32,
    /// IPPROTO_ESP (50), IPPROTO_AH (51), IPPROTO_COMP (108).
    pub proto: u8,
    pub saddr: IpAddr,
    /// XFRM_MODE_* (0 transport, 1 tunnel, ...).
    pub mode: u8,
    pub reqid: u32,
    /// In packets (ESN's `replay_window` when there is one).
    pub replay_window: u32,
    /// XFRM_STATE_* flags, and `XFRMA_SA_EXTRA_FLAGS` shifted by 8.
    pub flags: u32,
    /// By attribute number.
    pub algos: Vec<XfrmAlgo>,
    pub encap: Option<Encap>,
    /// (value, mask).
    pub mark: (u32, u32),
    pub if_id: u32,
    pub lifetime: Lifetime,
}

/// A template of a policy (`struct xfrm_user_tmpl`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct XfrmTmpl {
    pub daddr: IpAddr,
    pub spi: u32,
    pub proto: u8,
    pub saddr: IpAddr,
    pub reqid: u32,
    pub mode: u8,
    pub share: u8,
    pub optional: u8,
    pub aalgos: u32,
    pub ealgos: u32,
    pub calgos: u32,
}

/// A security policy (`XFRM_MSG_NEWPOLICY`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct XfrmSp {
    pub sel: Selector,
    /// XFRM_POLICY_IN (0), OUT (1), FWD (2).
    pub dir: u8,
    pub index: u32,
    /// XFRM_POLICY_TYPE_MAIN (0) or SUB (1).
    pub ptype: u8,
    pub priority: u32,
    /// XFRM_POLICY_ALLOW (0) or BLOCK (1).
    pub action: u8,
    pub flags: u8,
    pub mark: (u32, u32),
    pub if_id: u32,
    pub lifetime: Lifetime,
    pub tmpls: Vec<XfrmTmpl>,
}

/// An SA's replay state (`XFRMA_REPLAY_VAL` or `XFRMA_REPLAY_ESN_VAL`):
/// what a standby needs to take over an SA without reusing a sequence
/// number or accepting a replayed packet.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct XfrmReplay {
    pub daddr: IpAddr,
    pub spi: u32,
    pub proto: u8,
    pub mark: (u32, u32),
    /// Output sequence number (64 bits with ESN).
    pub oseq: u64,
    /// Highest input sequence number seen (64 bits with ESN).
    pub seq: u64,
    pub esn: bool,
    /// The replay window bitmap, in 32-bit words.
    pub bitmap: Vec<u32>,
}

/// The identity of an SA (and of its replay state).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SaKey {
    pub daddr: IpAddr,
    pub spi: u32,
    pub proto: u8,
    pub mark: (u32, u32),
}

/// The identity of a policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SpKey {
    pub index: u32,
    pub dir: u8,
    pub ptype: u8,
}

impl XfrmSa {
    pub fn key(&self) -> SaKey {
        SaKey {
            daddr: self.daddr,
            spi: self.spi,
            proto: self.proto,
            mark: self.mark,
        }
    }
}

impl XfrmReplay {
    pub fn key(&self) -> SaKey {
        SaKey {
            daddr: self.daddr,
            spi: self.spi,
            proto: self.proto,
            mark: self.mark,
        }
    }
}

impl XfrmSp {
    pub fn key(&self) -> SpKey {
        SpKey {
            index: self.index,
            dir: self.dir,
            ptype: self.ptype,
        }
    }
}

fn emit_lifetime(w: &mut Writer<'_>, l: &Lifetime) {
    for v in [
        l.soft_bytes,
        l.hard_bytes,
        l.soft_packets,
        l.hard_packets,
        l.soft_add_seconds,
        l.hard_add_seconds,
        l.soft_use_seconds,
        l.hard_use_seconds,
    ] {
        w.u64(v);
    }
}

fn parse_lifetime(r: &mut Reader<'_>) -> Result<Lifetime, DecodeError> {
    Ok(Lifetime {
        soft_bytes: r.u64()?,
        hard_bytes: r.u64()?,
        soft_packets: r.u64()?,
        hard_packets: r.u64()?,
        soft_add_seconds: r.u64()?,
        hard_add_seconds: r.u64()?,
        soft_use_seconds: r.u64()?,
        hard_use_seconds: r.u64()?,
    })
}

fn emit_sel(w: &mut Writer<'_>, s: &Selector) {
    w.ip(s.daddr);
    w.ip(s.saddr);
    w.u8(s.prefixlen_d);
    w.u8(s.prefixlen_s);
    w.u16(s.dport);
    w.u16(s.dport_mask);
    w.u16(s.sport);
    w.u16(s.sport_mask);
    w.u8(s.proto);
    w.i32(s.ifindex);
    w.u32(s.user);
}

fn parse_sel(r: &mut Reader<'_>) -> Result<Selector, DecodeError> {
    Ok(Selector {
        daddr: r.ip()?,
        saddr: r.ip()?,
        prefixlen_d: r.u8()?,
        prefixlen_s: r.u8()?,
        dport: r.u16()?,
        dport_mask: r.u16()?,
        sport: r.u16()?,
        sport_mask: r.u16()?,
        proto: r.u8()?,
        ifindex: r.i32()?,
        user: r.u32()?,
    })
}

fn emit_mark(w: &mut Writer<'_>, m: (u32, u32)) {
    w.u32(m.0);
    w.u32(m.1);
}

fn parse_mark(r: &mut Reader<'_>) -> Result<(u32, u32), DecodeError> {
    Ok((r.u32()?, r.u32()?))
}

/// A count of items of at least `min` bytes each, bounded by what is left.
fn count(r: &mut Reader<'_>, min: usize, what: &'static str) -> Result<usize, DecodeError> {
    let n = r.u16()? as usize;
    if n > r.remaining() / min {
        return Err(DecodeError::BadValue {
            what,
            value: n as u64,
        });
    }
    Ok(n)
}

impl XfrmSa {
    pub(crate) fn emit(&self, w: &mut Writer<'_>) {
        emit_sel(w, &self.sel);
        w.ip(self.daddr);
        w.u32(self.spi);
        w.u8(self.proto);
        w.ip(self.saddr);
        w.u8(self.mode);
        w.u32(self.reqid);
        w.u32(self.replay_window);
        w.u32(self.flags);
        w.u16(self.algos.len() as u16);
        for a in &self.algos {
            w.u8(a.attr);
            w.str(&a.name);
            w.u32(a.key_bits);
            w.u32(a.param);
            w.short_bytes(&a.key);
        }
        match &self.encap {
            None => w.u8(0),
            Some(e) => {
                w.u8(1);
                w.u16(e.encap_type);
                w.u16(e.sport);
                w.u16(e.dport);
                w.opt_ip(e.oa);
            }
        }
        emit_mark(w, self.mark);
        w.u32(self.if_id);
        emit_lifetime(w, &self.lifetime);
    }

    pub(crate) fn parse(r: &mut Reader<'_>) -> Result<XfrmSa, DecodeError> {
        let sel = parse_sel(r)?;
        let daddr = r.ip()?;
        let spi = r.u32()?;
        let proto = r.u8()?;
        let saddr = r.ip()?;
        let mode = r.u8()?;
        let reqid = r.u32()?;
        let replay_window = r.u32()?;
        let flags = r.u32()?;
        let n = count(r, 12, "algorithm count")?;
        let mut algos = Vec::with_capacity(n);
        for _ in 0..n {
            algos.push(XfrmAlgo {
                attr: r.u8()?,
                name: r.str()?,
                key_bits: r.u32()?,
                param: r.u32()?,
                key: r.short_bytes()?,
            });
        }
        let encap = match r.u8()? {
            0 => None,
            1 => Some(Encap {
                encap_type: r.u16()?,
                sport: r.u16()?,
                dport: r.u16()?,
                oa: r.opt_ip()?,
            }),
            v => {
                return Err(DecodeError::BadValue {
                    what: "encap form",
                    value: v.into(),
                })
            }
        };
        Ok(XfrmSa {
            sel,
            daddr,
            spi,
            proto,
            saddr,
            mode,
            reqid,
            replay_window,
            flags,
            algos,
            encap,
            mark: parse_mark(r)?,
            if_id: r.u32()?,
            lifetime: parse_lifetime(r)?,
        })
    }
}

impl XfrmSp {
    pub(crate) fn emit(&self, w: &mut Writer<'_>) {
        emit_sel(w, &self.sel);
        w.u8(self.dir);
        w.u32(self.index);
        w.u8(self.ptype);
        w.u32(self.priority);
        w.u8(self.action);
        w.u8(self.flags);
        emit_mark(w, self.mark);
        w.u32(self.if_id);
        emit_lifetime(w, &self.lifetime);
        w.u16(self.tmpls.len() as u16);
        for t in &self.tmpls {
            w.ip(t.daddr);
            w.u32(t.spi);
            w.u8(t.proto);
            w.ip(t.saddr);
            w.u32(t.reqid);
            w.u8(t.mode);
            w.u8(t.share);
            w.u8(t.optional);
            w.u32(t.aalgos);
            w.u32(t.ealgos);
            w.u32(t.calgos);
        }
    }

    pub(crate) fn parse(r: &mut Reader<'_>) -> Result<XfrmSp, DecodeError> {
        let mut sp = XfrmSp {
            sel: parse_sel(r)?,
            dir: r.u8()?,
            index: r.u32()?,
            ptype: r.u8()?,
            priority: r.u32()?,
            action: r.u8()?,
            flags: r.u8()?,
            mark: parse_mark(r)?,
            if_id: r.u32()?,
            lifetime: parse_lifetime(r)?,
            tmpls: Vec::new(),
        };
        let n = count(r, 30, "template count")?;
        for _ in 0..n {
            sp.tmpls.push(XfrmTmpl {
                daddr: r.ip()?,
                spi: r.u32()?,
                proto: r.u8()?,
                saddr: r.ip()?,
                reqid: r.u32()?,
                mode: r.u8()?,
                share: r.u8()?,
                optional: r.u8()?,
                aalgos: r.u32()?,
                ealgos: r.u32()?,
                calgos: r.u32()?,
            });
        }
        Ok(sp)
    }
}

impl XfrmReplay {
    pub(crate) fn emit(&self, w: &mut Writer<'_>) {
        w.ip(self.daddr);
        w.u32(self.spi);
        w.u8(self.proto);
        emit_mark(w, self.mark);
        w.u64(self.oseq);
        w.u64(self.seq);
        w.bool(self.esn);
        w.u16(self.bitmap.len() as u16);
        for b in &self.bitmap {
            w.u32(*b);
        }
    }

    pub(crate) fn parse(r: &mut Reader<'_>) -> Result<XfrmReplay, DecodeError> {
        let mut rp = XfrmReplay {
            daddr: r.ip()?,
            spi: r.u32()?,
            proto: r.u8()?,
            mark: parse_mark(r)?,
            oseq: r.u64()?,
            seq: r.u64()?,
            esn: r.bool()?,
            bitmap: Vec::new(),
        };
        let n = count(r, 4, "bitmap length")?;
        for _ in 0..n {
            rp.bitmap.push(r.u32()?);
        }
        Ok(rp)
    }
}

impl fmt::Display for Selector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "src {}/{} dst {}/{}",
            self.saddr, self.prefixlen_s, self.daddr, self.prefixlen_d
        )?;
        if self.proto != 0 {
            write!(f, " proto {}", self.proto)?;
        }
        if self.sport_mask != 0 {
            write!(f, " sport {}/{:#x}", self.sport, self.sport_mask)?;
        }
        if self.dport_mask != 0 {
            write!(f, " dport {}/{:#x}", self.dport, self.dport_mask)?;
        }
        if self.ifindex != 0 {
            write!(f, " dev #{}", self.ifindex)?;
        }
        Ok(())
    }
}

fn fmt_lifetime(f: &mut fmt::Formatter<'_>, l: &Lifetime) -> fmt::Result {
    if *l != Lifetime::default() {
        write!(
            f,
            " lifetime bytes {}/{} packets {}/{} add {}/{} use {}/{}",
            l.soft_bytes,
            l.hard_bytes,
            l.soft_packets,
            l.hard_packets,
            l.soft_add_seconds,
            l.hard_add_seconds,
            l.soft_use_seconds,
            l.hard_use_seconds
        )?;
    }
    Ok(())
}

fn fmt_mark(f: &mut fmt::Formatter<'_>, m: (u32, u32)) -> fmt::Result {
    if m != (0, 0) {
        write!(f, " mark {:#x}/{:#x}", m.0, m.1)?;
    }
    Ok(())
}

impl fmt::Display for XfrmSa {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "ipsec sa src {} dst {} proto {} spi {:#x} mode {} reqid {} replay-window {} flags {:#x} sel {}",
            self.saddr, self.daddr, self.proto, self.spi, self.mode, self.reqid,
            self.replay_window, self.flags, self.sel
        )?;
        for a in &self.algos {
            write!(f, " alg{} {} {}b", a.attr, a.name, a.key_bits)?;
            if a.param != 0 {
                write!(f, "/{}", a.param)?;
            }
        }
        if let Some(e) = &self.encap {
            write!(f, " encap {} {} {}", e.encap_type, e.sport, e.dport)?;
        }
        fmt_mark(f, self.mark)?;
        if self.if_id != 0 {
            write!(f, " if_id {}", self.if_id)?;
        }
        fmt_lifetime(f, &self.lifetime)
    }
}

impl fmt::Display for XfrmSp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "ipsec sp {} dir {} index {} type {} priority {} action {} flags {:#x}",
            self.sel, self.dir, self.index, self.ptype, self.priority, self.action, self.flags
        )?;
        fmt_mark(f, self.mark)?;
        if self.if_id != 0 {
            write!(f, " if_id {}", self.if_id)?;
        }
        fmt_lifetime(f, &self.lifetime)?;
        for t in &self.tmpls {
            write!(
                f,
                " tmpl src {} dst {} proto {} spi {:#x} reqid {} mode {}",
                t.saddr, t.daddr, t.proto, t.spi, t.reqid, t.mode
            )?;
            if t.optional != 0 {
                f.write_str(" optional")?;
            }
        }
        Ok(())
    }
}

impl fmt::Display for XfrmReplay {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "ipsec replay dst {} proto {} spi {:#x} oseq {} seq {}{}",
            self.daddr,
            self.proto,
            self.spi,
            self.oseq,
            self.seq,
            if self.esn { " esn" } else { "" }
        )?;
        fmt_mark(f, self.mark)?;
        write!(f, " bitmap {:x?}", self.bitmap)
    }
}
