//! Encoders of the kernel's NETLINK_XFRM messages, for byte fixtures
//! (unit tests, the end-to-end scenarios, captures): each builds what the
//! kernel would multicast for the object, with the layouts of
//! [`super::layout`]. Built only for tests and with the `fixtures`
//! feature: the daemon never encodes XFRM messages.

use super::layout::*;
use super::*;

fn family(ip: &IpAddr) -> u16 {
    if ip.is_ipv4() {
        AF_INET.into()
    } else {
        AF_INET6.into()
    }
}

fn put_addr(b: &mut [u8], at: usize, ip: &IpAddr) {
    match ip {
        IpAddr::V4(a) => b[at..at + 4].copy_from_slice(&a.octets()),
        IpAddr::V6(a) => b[at..at + 16].copy_from_slice(&a.octets()),
    }
}

fn put_be16(b: &mut [u8], at: usize, v: u16) {
    b[at..at + 2].copy_from_slice(&v.to_be_bytes());
}

fn put_be32(b: &mut [u8], at: usize, v: u32) {
    b[at..at + 4].copy_from_slice(&v.to_be_bytes());
}

fn put_u16(b: &mut [u8], at: usize, v: u16) {
    b[at..at + 2].copy_from_slice(&v.to_ne_bytes());
}

fn put_u32(b: &mut [u8], at: usize, v: u32) {
    b[at..at + 4].copy_from_slice(&v.to_ne_bytes());
}

fn put_u64(b: &mut [u8], at: usize, v: u64) {
    b[at..at + 8].copy_from_slice(&v.to_ne_bytes());
}

fn sel(s: &Selector) -> [u8; sel::LEN] {
    let mut b = [0; sel::LEN];
    put_addr(&mut b, sel::DADDR, &s.daddr);
    put_addr(&mut b, sel::SADDR, &s.saddr);
    put_be16(&mut b, sel::DPORT, s.dport);
    put_be16(&mut b, sel::DPORT_MASK, s.dport_mask);
    put_be16(&mut b, sel::SPORT, s.sport);
    put_be16(&mut b, sel::SPORT_MASK, s.sport_mask);
    put_u16(&mut b, sel::FAMILY, family(&s.daddr));
    b[sel::PREFIXLEN_D] = s.prefixlen_d;
    b[sel::PREFIXLEN_S] = s.prefixlen_s;
    b[sel::PROTO] = s.proto;
    put_u32(&mut b, sel::IFINDEX, s.ifindex as u32);
    put_u32(&mut b, sel::USER, s.user);
    b
}

fn lft(l: &Lifetime) -> [u8; lft::LEN] {
    let mut b = [0; lft::LEN];
    for (i, v) in [
        l.soft_bytes,
        l.hard_bytes,
        l.soft_packets,
        l.hard_packets,
        l.soft_add_seconds,
        l.hard_add_seconds,
        l.soft_use_seconds,
        l.hard_use_seconds,
    ]
    .into_iter()
    .enumerate()
    {
        put_u64(&mut b, 8 * i, v);
    }
    b
}

/// A message under construction: header, fixed part, attributes.
struct Msg(Vec<u8>);

impl Msg {
    fn new(kind: u16, fixed: &[u8]) -> Msg {
        let mut b = vec![0u8; NLMSG_HDRLEN];
        b[4..6].copy_from_slice(&kind.to_ne_bytes());
        b.extend_from_slice(fixed);
        Msg(b)
    }
    fn attr(mut self, kind: u16, value: &[u8]) -> Msg {
        self.0
            .extend_from_slice(&((4 + value.len()) as u16).to_ne_bytes());
        self.0.extend_from_slice(&kind.to_ne_bytes());
        self.0.extend_from_slice(value);
        while !self.0.len().is_multiple_of(4) {
            self.0.push(0);
        }
        self
    }
    fn done(mut self) -> Vec<u8> {
        let len = self.0.len() as u32;
        self.0[0..4].copy_from_slice(&len.to_ne_bytes());
        self.0
    }
}

fn sa_info(sa: &XfrmSa) -> Vec<u8> {
    let mut b = vec![0u8; sa_info::LEN];
    b[sa_info::SEL..sa_info::SEL + sel::LEN].copy_from_slice(&sel(&sa.sel));
    put_addr(&mut b, sa_info::ID + id::DADDR, &sa.daddr);
    put_be32(&mut b, sa_info::ID + id::SPI, sa.spi);
    b[sa_info::ID + id::PROTO] = sa.proto;
    put_addr(&mut b, sa_info::SADDR, &sa.saddr);
    b[sa_info::LFT..sa_info::LFT + lft::LEN].copy_from_slice(&lft(&sa.lifetime));
    put_u32(&mut b, sa_info::REQID, sa.reqid);
    put_u16(&mut b, sa_info::FAMILY, family(&sa.daddr));
    b[sa_info::MODE] = sa.mode;
    b[sa_info::REPLAY_WINDOW] = sa.replay_window.min(255) as u8;
    b[sa_info::FLAGS] = sa.flags as u8;
    b
}

fn replay_attr(r: &XfrmReplay, window: u32) -> (u16, Vec<u8>) {
    let mut v = Vec::new();
    if r.esn {
        v.extend_from_slice(&(r.bitmap.len() as u32).to_ne_bytes());
        v.extend_from_slice(&(r.oseq as u32).to_ne_bytes());
        v.extend_from_slice(&(r.seq as u32).to_ne_bytes());
        v.extend_from_slice(&((r.oseq >> 32) as u32).to_ne_bytes());
        v.extend_from_slice(&((r.seq >> 32) as u32).to_ne_bytes());
        v.extend_from_slice(&window.to_ne_bytes());
        for w in &r.bitmap {
            v.extend_from_slice(&w.to_ne_bytes());
        }
        (XFRMA_REPLAY_ESN_VAL, v)
    } else {
        v.extend_from_slice(&(r.oseq as u32).to_ne_bytes());
        v.extend_from_slice(&(r.seq as u32).to_ne_bytes());
        v.extend_from_slice(&r.bitmap.first().copied().unwrap_or(0).to_ne_bytes());
        (XFRMA_REPLAY_VAL, v)
    }
}

fn sa_attrs(mut m: Msg, sa: &XfrmSa, replay: Option<&XfrmReplay>) -> Msg {
    for a in &sa.algos {
        let mut v = vec![0u8; algo::NAME_LEN];
        let n = a.name.len().min(algo::NAME_LEN - 1);
        v[..n].copy_from_slice(&a.name.as_bytes()[..n]);
        v.extend_from_slice(&a.key_bits.to_ne_bytes());
        if matches!(a.attr.into(), XFRMA_ALG_AUTH_TRUNC | XFRMA_ALG_AEAD) {
            v.extend_from_slice(&a.param.to_ne_bytes());
        }
        v.extend_from_slice(&a.key);
        m = m.attr(a.attr.into(), &v);
    }
    if let Some(e) = &sa.encap {
        let mut v = vec![0u8; encap::LEN];
        put_u16(&mut v, encap::TYPE, e.encap_type);
        put_be16(&mut v, encap::SPORT, e.sport);
        put_be16(&mut v, encap::DPORT, e.dport);
        if let Some(oa) = &e.oa {
            put_addr(&mut v, encap::OA, oa);
        }
        m = m.attr(XFRMA_ENCAP, &v);
    }
    if let Some(r) = replay {
        let (kind, v) = replay_attr(r, sa.replay_window);
        m = m.attr(kind, &v);
    }
    if sa.flags >> 8 != 0 {
        m = m.attr(XFRMA_SA_EXTRA_FLAGS, &(sa.flags >> 8).to_ne_bytes());
    }
    if sa.mark != (0, 0) {
        let mut v = sa.mark.0.to_ne_bytes().to_vec();
        v.extend_from_slice(&sa.mark.1.to_ne_bytes());
        m = m.attr(XFRMA_MARK, &v);
    }
    if sa.if_id != 0 {
        m = m.attr(XFRMA_IF_ID, &sa.if_id.to_ne_bytes());
    }
    m
}

/// XFRM_MSG_NEWSA (or UPDSA with `update`), with the replay state.
pub fn new_sa(sa: &XfrmSa, replay: Option<&XfrmReplay>, update: bool) -> Vec<u8> {
    let kind = if update {
        XFRM_MSG_UPDSA
    } else {
        XFRM_MSG_NEWSA
    };
    sa_attrs(Msg::new(kind, &sa_info(sa)), sa, replay).done()
}

/// XFRM_MSG_DELSA: the id, the state in XFRMA_SA, its attributes.
pub fn del_sa(sa: &XfrmSa) -> Vec<u8> {
    let mut id = vec![0u8; sa_id::LEN];
    put_addr(&mut id, sa_id::DADDR, &sa.daddr);
    put_be32(&mut id, sa_id::SPI, sa.spi);
    put_u16(&mut id, sa_id::FAMILY, family(&sa.daddr));
    id[sa_id::PROTO] = sa.proto;
    let m = Msg::new(XFRM_MSG_DELSA, &id).attr(XFRMA_SA, &sa_info(sa));
    sa_attrs(m, sa, None).done()
}

/// XFRM_MSG_EXPIRE, soft or hard.
pub fn expire(sa: &XfrmSa, hard: bool) -> Vec<u8> {
    let mut fixed = sa_info(sa);
    fixed.extend_from_slice(&[hard as u8, 0, 0, 0, 0, 0, 0, 0]);
    sa_attrs(Msg::new(XFRM_MSG_EXPIRE, &fixed), sa, None).done()
}

/// XFRM_MSG_FLUSHSA of `proto` (IPSEC_PROTO_ANY for all).
pub fn flush_sa(proto: u8) -> Vec<u8> {
    Msg::new(XFRM_MSG_FLUSHSA, &[proto, 0, 0, 0]).done()
}

/// XFRM_MSG_NEWAE: an SA's new sequence numbers.
pub fn new_ae(r: &XfrmReplay, saddr: &IpAddr, reqid: u32, window: u32) -> Vec<u8> {
    let mut id = vec![0u8; aevent_id::LEN];
    let sa = aevent_id::SA_ID;
    put_addr(&mut id, sa + sa_id::DADDR, &r.daddr);
    put_be32(&mut id, sa + sa_id::SPI, r.spi);
    put_u16(&mut id, sa + sa_id::FAMILY, family(&r.daddr));
    id[sa + sa_id::PROTO] = r.proto;
    put_addr(&mut id, aevent_id::SADDR, saddr);
    put_u32(&mut id, aevent_id::REQID, reqid);
    let (kind, v) = replay_attr(r, window);
    let mut m = Msg::new(XFRM_MSG_NEWAE, &id).attr(kind, &v);
    if r.mark != (0, 0) {
        let mut v = r.mark.0.to_ne_bytes().to_vec();
        v.extend_from_slice(&r.mark.1.to_ne_bytes());
        m = m.attr(XFRMA_MARK, &v);
    }
    m.done()
}

fn sp_info(sp: &XfrmSp) -> Vec<u8> {
    let mut b = vec![0u8; policy_info::LEN];
    b[policy_info::SEL..policy_info::SEL + sel::LEN].copy_from_slice(&sel(&sp.sel));
    b[policy_info::LFT..policy_info::LFT + lft::LEN].copy_from_slice(&lft(&sp.lifetime));
    put_u32(&mut b, policy_info::PRIORITY, sp.priority);
    put_u32(&mut b, policy_info::INDEX, sp.index);
    b[policy_info::DIR] = sp.dir;
    b[policy_info::ACTION] = sp.action;
    b[policy_info::FLAGS] = sp.flags;
    b
}

fn sp_attrs(mut m: Msg, sp: &XfrmSp) -> Msg {
    if !sp.tmpls.is_empty() {
        let mut v = Vec::new();
        for t in &sp.tmpls {
            let mut b = [0u8; tmpl::LEN];
            put_addr(&mut b, tmpl::ID + id::DADDR, &t.daddr);
            put_be32(&mut b, tmpl::ID + id::SPI, t.spi);
            b[tmpl::ID + id::PROTO] = t.proto;
            put_u16(&mut b, tmpl::FAMILY, family(&t.daddr));
            put_addr(&mut b, tmpl::SADDR, &t.saddr);
            put_u32(&mut b, tmpl::REQID, t.reqid);
            b[tmpl::MODE] = t.mode;
            b[tmpl::SHARE] = t.share;
            b[tmpl::OPTIONAL] = t.optional;
            put_u32(&mut b, tmpl::AALGOS, t.aalgos);
            put_u32(&mut b, tmpl::EALGOS, t.ealgos);
            put_u32(&mut b, tmpl::CALGOS, t.calgos);
            v.extend_from_slice(&b);
        }
        m = m.attr(XFRMA_TMPL, &v);
    }
    m = m.attr(XFRMA_POLICY_TYPE, &[sp.ptype, 0, 0, 0, 0, 0]);
    if sp.mark != (0, 0) {
        let mut v = sp.mark.0.to_ne_bytes().to_vec();
        v.extend_from_slice(&sp.mark.1.to_ne_bytes());
        m = m.attr(XFRMA_MARK, &v);
    }
    if sp.if_id != 0 {
        m = m.attr(XFRMA_IF_ID, &sp.if_id.to_ne_bytes());
    }
    m
}

/// XFRM_MSG_NEWPOLICY.
pub fn new_sp(sp: &XfrmSp) -> Vec<u8> {
    sp_attrs(Msg::new(XFRM_MSG_NEWPOLICY, &sp_info(sp)), sp).done()
}

fn policy_id(s: &Selector, index: u32, dir: u8) -> Vec<u8> {
    let mut id = vec![0u8; policy_id::LEN];
    id[policy_id::SEL..policy_id::SEL + sel::LEN].copy_from_slice(&sel(s));
    put_u32(&mut id, policy_id::INDEX, index);
    id[policy_id::DIR] = dir;
    id
}

/// XFRM_MSG_DELPOLICY: the id, the policy in XFRMA_POLICY, its attributes.
pub fn del_sp(sp: &XfrmSp) -> Vec<u8> {
    let m = Msg::new(XFRM_MSG_DELPOLICY, &policy_id(&sp.sel, sp.index, sp.dir))
        .attr(XFRMA_POLICY, &sp_info(sp));
    sp_attrs(m, sp).done()
}

/// XFRM_MSG_MIGRATE of the policy (`sel`, `dir`) and its SAs.
pub fn migrate(sel: &Selector, dir: u8, moves: &[Migration]) -> Vec<u8> {
    let mut v = Vec::new();
    for mv in moves {
        let mut b = [0u8; migrate::LEN];
        put_addr(&mut b, migrate::OLD_DADDR, &mv.old_daddr);
        put_addr(&mut b, migrate::OLD_SADDR, &mv.old_saddr);
        put_addr(&mut b, migrate::NEW_DADDR, &mv.new_daddr);
        put_addr(&mut b, migrate::NEW_SADDR, &mv.new_saddr);
        b[migrate::PROTO] = mv.proto;
        b[migrate::MODE] = mv.mode;
        put_u32(&mut b, migrate::REQID, mv.reqid);
        put_u16(&mut b, migrate::OLD_FAMILY, family(&mv.old_daddr));
        put_u16(&mut b, migrate::NEW_FAMILY, family(&mv.new_daddr));
        v.extend_from_slice(&b);
    }
    Msg::new(XFRM_MSG_MIGRATE, &policy_id(sel, 0, dir))
        .attr(XFRMA_POLICY_TYPE, &[0, 0, 0, 0, 0, 0])
        .attr(XFRMA_MIGRATE, &v)
        .done()
}
