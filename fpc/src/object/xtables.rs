//! Netfilter rules from the legacy x_tables (`iptables-legacy`,
//! `ip6tables-legacy`): chains and rules as the kernel's table blob holds
//! them, read back with `IPT_SO_GET_ENTRIES` / `IP6T_SO_GET_ENTRIES`.
//!
//! Invariants:
//! * A chain is keyed by (family, table, name), a rule by (family, table,
//!   chain, position): the blob has no rule handles, and a rule's identity
//!   is its place, as `iptables -L --line-numbers` shows it (1-based).
//! * Only what iptables sets is kept: no packet or byte counters (they move
//!   with traffic), no `comefrom` (the kernel fills it), no offsets (a jump
//!   names its chain).
//! * Builtin chains have a hook and a policy (the verdict of their
//!   underflow rule); user chains have neither.

use std::fmt;
use std::net::IpAddr;

use crate::codec::{DecodeError, Reader, Writer};

/// A chain of a legacy table.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct XtChain {
    /// AF_INET (iptables) or AF_INET6 (ip6tables).
    pub family: u8,
    pub table: String,
    pub name: String,
    /// NF_INET_* hook of a builtin chain (0 PREROUTING .. 4 POSTROUTING).
    pub hook: Option<u32>,
    /// A builtin chain's policy, as a standard verdict (see [`XtTarget`]).
    pub policy: Option<i32>,
}

/// One match of a rule (`xt_entry_match`): its extension and its data as
/// the kernel gives them back (its own fields past the extension's
/// `usersize` come back zeroed).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct XtMatch {
    pub name: String,
    pub revision: u8,
    pub data: Vec<u8>,
}

/// What a rule does when it matches.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum XtTarget {
    /// A standard verdict as the kernel stores it: -1 DROP, -2 ACCEPT,
    /// -4 QUEUE, -5 RETURN (`-NF_* - 1`).
    Verdict(i32),
    /// A jump to a user chain (a goto when the rule has `IPT_F_GOTO`).
    Jump(String),
    /// No target: the rule only counts, evaluation goes on.
    Continue,
    /// Any other target (`LOG`, `MASQUERADE`, `SNAT`, `REJECT`, ...).
    Extension {
        name: String,
        revision: u8,
        data: Vec<u8>,
    },
}

/// A rule of a legacy table: the entry's own match fields, its matches and
/// its target.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct XtRule {
    pub family: u8,
    pub table: String,
    pub chain: String,
    /// 1-based place in its chain.
    pub position: u32,
    pub src: IpAddr,
    pub src_mask: IpAddr,
    pub dst: IpAddr,
    pub dst_mask: IpAddr,
    pub iniface: String,
    pub iniface_mask: [u8; 16],
    pub outiface: String,
    pub outiface_mask: [u8; 16],
    pub proto: u16,
    /// `ip6t_ip6.tos` (IPv6 only; 0 for IPv4).
    pub tos: u8,
    /// IPT_F_* / IP6T_F_* (0x01 fragment or protocol given, 0x02 goto).
    pub flags: u8,
    /// IPT_INV_* / IP6T_INV_*.
    pub invflags: u8,
    pub matches: Vec<XtMatch>,
    pub target: XtTarget,
}

/// The goto flag of `ipt_ip.flags` and `ip6t_ip6.flags`.
pub const XT_F_GOTO: u8 = 0x02;

impl XtChain {
    pub(crate) fn emit(&self, w: &mut Writer<'_>) {
        w.u8(self.family);
        w.str(&self.table);
        w.str(&self.name);
        match self.hook {
            None => w.u8(0),
            Some(hook) => {
                w.u8(1);
                w.u32(hook);
            }
        }
        match self.policy {
            None => w.u8(0),
            Some(policy) => {
                w.u8(1);
                w.i32(policy);
            }
        }
    }

    pub(crate) fn parse(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let family = r.u8()?;
        let table = r.str()?;
        let name = r.str()?;
        let hook = r.bool()?.then(|| r.u32()).transpose()?;
        let policy = r.bool()?.then(|| r.i32()).transpose()?;
        Ok(XtChain {
            family,
            table,
            name,
            hook,
            policy,
        })
    }
}

fn emit_data(w: &mut Writer<'_>, data: &[u8]) {
    // An FPC object body is at most 64 KiB: so is what it carries.
    let data = &data[..data.len().min(u16::MAX as usize)];
    w.u16(data.len() as u16);
    w.buf_mut().extend_from_slice(data);
}

fn parse_data(r: &mut Reader<'_>) -> Result<Vec<u8>, DecodeError> {
    let len = r.u16()? as usize;
    Ok(r.bytes(len)?.to_vec())
}

fn parse_mask(r: &mut Reader<'_>) -> Result<[u8; 16], DecodeError> {
    let mut out = [0u8; 16];
    out.copy_from_slice(r.bytes(16)?);
    Ok(out)
}

impl XtRule {
    pub(crate) fn emit(&self, w: &mut Writer<'_>) {
        w.u8(self.family);
        w.str(&self.table);
        w.str(&self.chain);
        w.u32(self.position);
        for ip in [self.src, self.src_mask, self.dst, self.dst_mask] {
            w.ip(ip);
        }
        w.str(&self.iniface);
        w.buf_mut().extend_from_slice(&self.iniface_mask);
        w.str(&self.outiface);
        w.buf_mut().extend_from_slice(&self.outiface_mask);
        w.u16(self.proto);
        w.u8(self.tos);
        w.u8(self.flags);
        w.u8(self.invflags);
        w.u16(self.matches.len() as u16);
        for m in &self.matches {
            w.str(&m.name);
            w.u8(m.revision);
            emit_data(w, &m.data);
        }
        match &self.target {
            XtTarget::Verdict(v) => {
                w.u8(0);
                w.i32(*v);
            }
            XtTarget::Jump(chain) => {
                w.u8(1);
                w.str(chain);
            }
            XtTarget::Continue => w.u8(2),
            XtTarget::Extension {
                name,
                revision,
                data,
            } => {
                w.u8(3);
                w.str(name);
                w.u8(*revision);
                emit_data(w, data);
            }
        }
    }

    pub(crate) fn parse(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let family = r.u8()?;
        let table = r.str()?;
        let chain = r.str()?;
        let position = r.u32()?;
        let (src, src_mask, dst, dst_mask) = (r.ip()?, r.ip()?, r.ip()?, r.ip()?);
        let iniface = r.str()?;
        let iniface_mask = parse_mask(r)?;
        let outiface = r.str()?;
        let outiface_mask = parse_mask(r)?;
        let proto = r.u16()?;
        let (tos, flags, invflags) = (r.u8()?, r.u8()?, r.u8()?);
        let n = r.u16()? as usize;
        // A match is at least 5 bytes (name length, revision, data length).
        if n > r.remaining() / 5 {
            return Err(DecodeError::BadValue {
                what: "match count",
                value: n as u64,
            });
        }
        let mut matches = Vec::with_capacity(n);
        for _ in 0..n {
            matches.push(XtMatch {
                name: r.str()?,
                revision: r.u8()?,
                data: parse_data(r)?,
            });
        }
        let target = match r.u8()? {
            0 => XtTarget::Verdict(r.i32()?),
            1 => XtTarget::Jump(r.str()?),
            2 => XtTarget::Continue,
            3 => XtTarget::Extension {
                name: r.str()?,
                revision: r.u8()?,
                data: parse_data(r)?,
            },
            v => {
                return Err(DecodeError::BadValue {
                    what: "xt target",
                    value: v.into(),
                })
            }
        };
        let rule = XtRule {
            family,
            table,
            chain,
            position,
            src,
            src_mask,
            dst,
            dst_mask,
            iniface,
            iniface_mask,
            outiface,
            outiface_mask,
            proto,
            tos,
            flags,
            invflags,
            matches,
            target,
        };
        let family_ok = [rule.src_mask, rule.dst, rule.dst_mask]
            .iter()
            .all(|ip| ip.is_ipv4() == rule.src.is_ipv4());
        if !family_ok {
            return Err(DecodeError::BadValue {
                what: "xt rule address family",
                value: family.into(),
            });
        }
        Ok(rule)
    }
}

/// The name iptables gives a standard verdict.
pub fn verdict_name(v: i32) -> Option<&'static str> {
    Some(match v {
        -1 => "DROP",
        -2 => "ACCEPT",
        -4 => "QUEUE",
        -5 => "RETURN",
        _ => return None,
    })
}

struct Verdict(i32);

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match verdict_name(self.0) {
            Some(n) => f.write_str(n),
            None => write!(f, "verdict {}", self.0),
        }
    }
}

impl fmt::Display for XtChain {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "xt chain family {} {} {}",
            self.family, self.table, self.name
        )?;
        if let Some(hook) = self.hook {
            write!(f, " hook {hook}")?;
        }
        if let Some(policy) = self.policy {
            write!(f, " policy {}", Verdict(policy))?;
        }
        Ok(())
    }
}

impl fmt::Display for XtRule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "xt rule family {} {} {} #{} src {}/{} dst {}/{}",
            self.family,
            self.table,
            self.chain,
            self.position,
            self.src,
            self.src_mask,
            self.dst,
            self.dst_mask
        )?;
        // iptables keeps a wildcard's `+` in the name (`veth+`).
        if !self.iniface.is_empty() {
            write!(f, " in {}", self.iniface)?;
        }
        if !self.outiface.is_empty() {
            write!(f, " out {}", self.outiface)?;
        }
        write!(
            f,
            " proto {} flags {:#x} inv {:#x}",
            self.proto, self.flags, self.invflags
        )?;
        for m in &self.matches {
            write!(f, " -m {}/{} ({} bytes)", m.name, m.revision, m.data.len())?;
        }
        match &self.target {
            XtTarget::Verdict(v) => write!(f, " -j {}", Verdict(*v)),
            XtTarget::Jump(c) if self.flags & XT_F_GOTO != 0 => write!(f, " -g {c}"),
            XtTarget::Jump(c) => write!(f, " -j {c}"),
            XtTarget::Continue => Ok(()),
            XtTarget::Extension {
                name,
                revision,
                data,
            } => write!(f, " -j {name}/{revision} ({} bytes)", data.len()),
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    /// Chains and rules of every form, for the object tests and the fuzz
    /// corpus.
    pub(crate) fn samples() -> Vec<crate::Object> {
        use crate::Object;
        let rule = XtRule {
            family: 2,
            table: "filter".into(),
            chain: "INPUT".into(),
            position: 1,
            src: ip("10.0.0.0"),
            src_mask: ip("255.0.0.0"),
            dst: ip("0.0.0.0"),
            dst_mask: ip("0.0.0.0"),
            iniface: "veth+".into(),
            iniface_mask: [0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
            outiface: String::new(),
            outiface_mask: [0; 16],
            proto: 6,
            tos: 0,
            flags: 0,
            invflags: 0x08,
            matches: vec![XtMatch {
                name: "tcp".into(),
                revision: 0,
                data: vec![0, 0, 0xff, 0xff, 0, 22, 0, 22, 0, 0, 0, 0],
            }],
            target: XtTarget::Verdict(-1),
        };
        let v6 = XtRule {
            family: 10,
            table: "nat".into(),
            chain: "POSTROUTING".into(),
            position: u32::MAX,
            src: ip("2001:db8::"),
            src_mask: ip("ffff:ffff::"),
            dst: ip("::1"),
            dst_mask: ip("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"),
            iniface: String::new(),
            iniface_mask: [0; 16],
            outiface: "lo".into(),
            outiface_mask: [0xff; 16],
            proto: 0,
            tos: 3,
            flags: XT_F_GOTO,
            invflags: 0xff,
            matches: vec![],
            target: XtTarget::Extension {
                name: "MASQUERADE".into(),
                revision: 0,
                data: vec![1, 0, 0, 0, 0, 0, 0, 0],
            },
        };
        vec![
            Object::XtChain(XtChain {
                family: 2,
                table: "filter".into(),
                name: "INPUT".into(),
                hook: Some(1),
                policy: Some(-2),
            }),
            Object::XtChain(XtChain {
                family: 10,
                table: "filter".into(),
                name: "web".into(),
                hook: None,
                policy: None,
            }),
            Object::XtRule(Box::new(rule.clone())),
            Object::XtRule(Box::new(XtRule {
                target: XtTarget::Jump("web".into()),
                position: 2,
                ..rule.clone()
            })),
            Object::XtRule(Box::new(XtRule {
                target: XtTarget::Continue,
                position: 3,
                matches: vec![],
                ..rule
            })),
            Object::XtRule(Box::new(v6)),
        ]
    }

    #[test]
    fn a_rule_of_mixed_families_is_refused() {
        let crate::Object::XtRule(mut r) = samples().remove(2) else {
            unreachable!()
        };
        r.dst = ip("::");
        let mut buf = Vec::new();
        r.emit(&mut Writer::new(&mut buf));
        assert!(XtRule::parse(&mut Reader::new(&buf)).is_err());
    }

    #[test]
    fn rules_show_as_iptables_writes_them() {
        let s = samples()[2].to_string();
        assert!(s.contains(" in veth+ "), "{s}");
        assert!(s.ends_with("-j DROP"), "{s}");
        assert!(samples()[3].to_string().ends_with("-j web"));
        assert!(samples()[5].to_string().contains(" out lo "));
    }
}
