//! The legacy x_tables table blob (`iptables-legacy`, `ip6tables-legacy`)
//! decoded into chain and rule objects: what `IPT_SO_GET_INFO` and
//! `IPT_SO_GET_ENTRIES` (IP6T_ for IPv6) return, as the kernel lays it out
//! (`struct ipt_getinfo`, `ipt_get_entries`, `ipt_entry`, `ip6t_entry`,
//! `xt_entry_match`, `xt_entry_target`), in host byte order.
//!
//! Invariants:
//! * No I/O, no logging, no panics: every offset and size comes from the
//!   kernel (or a fuzzer) and is checked before use; a malformed blob is an
//!   error naming what was wrong.
//! * Only what iptables sets is kept. Left out: packet and byte counters
//!   (they move with traffic), `comefrom` (the kernel's mark of the hooks
//!   that reach an entry), `nfcache` (unused). Match and target data are
//!   kept whole: the kernel copies an extension's data only up to its
//!   `usersize` and zeroes the rest (xt_data_to_user), so its own pointers
//!   and state (limit's `master`, hashlimit's `hinfo`) never show.
//! * Chains: a builtin chain runs from its `hook_entry` to its `underflow`
//!   entry, whose verdict is the policy. A user chain starts at an `ERROR`
//!   entry naming it and ends with the unconditional `RETURN` libiptc
//!   always appends (not a rule). The blob's last entry is an `ERROR`
//!   entry named `ERROR`: the end.
//! * A standard target's non-negative verdict is a byte offset in the
//!   blob: to the first entry of a user chain it is a jump, to the next
//!   entry it is no target at all (a rule that only counts).

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use fpc::{Object, XtChain, XtMatch, XtRule, XtTarget, AF_INET, AF_INET6};

/// `IPT_SO_GET_INFO` (IP6T_ too), at level SOL_IP / SOL_IPV6.
pub const SO_GET_INFO: libc::c_int = 64;
/// `IPT_SO_GET_ENTRIES` (IP6T_ too).
pub const SO_GET_ENTRIES: libc::c_int = 65;
/// `XT_TABLE_MAXNAMELEN`.
pub const TABLE_NAME_LEN: usize = 32;
/// `sizeof(struct ipt_getinfo)` (and ip6t_getinfo).
pub const INFO_LEN: usize = 84;
/// `sizeof(struct ipt_get_entries)`: name, size, padding to the entries'
/// 8-byte alignment.
pub const ENTRIES_HEADER_LEN: usize = 40;
/// NF_INET_NUMHOOKS.
const HOOKS: usize = 5;
/// The names iptables gives the builtin chains, by NF_INET_* hook.
const HOOK_NAMES: [&str; HOOKS] = ["PREROUTING", "INPUT", "FORWARD", "OUTPUT", "POSTROUTING"];
/// `sizeof(struct xt_entry_match)` and `xt_entry_target`.
const EXT_HEADER_LEN: usize = 32;
/// XT_EXTENSION_MAXNAMELEN (with its NUL) as the header lays it out.
const EXT_NAME_LEN: usize = 29;
/// The standard target's name (XT_STANDARD_TARGET) and the error one's.
const STANDARD: &str = "";
const ERROR: &str = "ERROR";
/// `-NF_REPEAT - 1`: a standard RETURN.
const XT_RETURN: i32 = -5;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum XtError {
    #[error("{what} needs {needed} bytes at offset {offset}, the blob has {len}")]
    Truncated {
        what: &'static str,
        offset: usize,
        needed: usize,
        len: usize,
    },
    #[error("entry at offset {offset}: bad {what} {value}")]
    BadEntry {
        offset: usize,
        what: &'static str,
        value: usize,
    },
    #[error("the entries are of table {got:?}, not {want:?}")]
    WrongTable { want: String, got: String },
    #[error("the entries are {got} bytes, the table's info says {want}")]
    WrongSize { want: usize, got: usize },
    #[error("hook {hook}: {what} offset {offset} is no entry")]
    BadHook {
        hook: usize,
        what: &'static str,
        offset: u32,
    },
    #[error("builtin chain {chain}: its underflow entry has no standard verdict")]
    NoPolicy { chain: &'static str },
    #[error("entry at offset {offset} jumps to offset {target}, which starts no chain")]
    BadJump { offset: usize, target: usize },
    #[error("address family {0} has no legacy table layout here")]
    Family(u8),
}

/// `struct ipt_getinfo`: where the builtin chains start and end.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableInfo {
    pub name: String,
    pub valid_hooks: u32,
    pub hook_entry: [u32; HOOKS],
    pub underflow: [u32; HOOKS],
    pub num_entries: u32,
    /// Bytes of the entries blob.
    pub size: u32,
}

fn need(buf: &[u8], offset: usize, n: usize, what: &'static str) -> Result<(), XtError> {
    match offset.checked_add(n) {
        Some(end) if end <= buf.len() => Ok(()),
        _ => Err(XtError::Truncated {
            what,
            offset,
            needed: n,
            len: buf.len(),
        }),
    }
}

/// Reads a host-order u32 at `at`; the caller has checked the bounds.
fn u32_at(b: &[u8], at: usize) -> u32 {
    let mut raw = [0u8; 4];
    raw.copy_from_slice(&b[at..at + 4]);
    u32::from_ne_bytes(raw)
}

fn u16_at(b: &[u8], at: usize) -> u16 {
    u16::from_ne_bytes([b[at], b[at + 1]])
}

/// A NUL-terminated name of a fixed-size field.
fn cstr(b: &[u8]) -> String {
    let raw = b.split(|c| *c == 0).next().unwrap_or_default();
    String::from_utf8_lossy(raw).into_owned()
}

impl TableInfo {
    pub fn parse(buf: &[u8]) -> Result<TableInfo, XtError> {
        need(buf, 0, INFO_LEN, "struct ipt_getinfo")?;
        let words =
            |at: usize| -> [u32; HOOKS] { std::array::from_fn(|i| u32_at(buf, at + 4 * i)) };
        Ok(TableInfo {
            name: cstr(&buf[..TABLE_NAME_LEN]),
            valid_hooks: u32_at(buf, 32),
            hook_entry: words(36),
            underflow: words(56),
            num_entries: u32_at(buf, 76),
            size: u32_at(buf, 80),
        })
    }
}

/// The `struct ipt_get_entries` request for `info`'s table: its name and
/// size, then room for the entries.
pub fn entries_request(info: &TableInfo) -> Vec<u8> {
    let mut req = vec![0u8; ENTRIES_HEADER_LEN + info.size as usize];
    let name = info.name.as_bytes();
    let n = name.len().min(TABLE_NAME_LEN - 1);
    req[..n].copy_from_slice(&name[..n]);
    req[32..36].copy_from_slice(&info.size.to_ne_bytes());
    req
}

/// Where the fields of one family's entry are.
struct Layout {
    family: u8,
    addr_len: usize,
    /// Offset of iniface (after src, dst, smsk, dmsk).
    ifaces: usize,
    /// Offsets of proto (u16), tos (IPv6 only), flags, invflags.
    proto: usize,
    tos: Option<usize>,
    flags: usize,
    invflags: usize,
    target_offset: usize,
    next_offset: usize,
    /// `sizeof(struct ipt_entry)` / `ip6t_entry`: where matches start.
    len: usize,
}

const IPV4: Layout = Layout {
    family: AF_INET,
    addr_len: 4,
    ifaces: 16,
    proto: 80,
    tos: None,
    flags: 82,
    invflags: 83,
    target_offset: 88,
    next_offset: 90,
    len: 112,
};

const IPV6: Layout = Layout {
    family: AF_INET6,
    addr_len: 16,
    ifaces: 64,
    proto: 128,
    tos: Some(130),
    flags: 131,
    invflags: 132,
    target_offset: 140,
    next_offset: 142,
    len: 168,
};

/// One entry of the blob, its fields borrowed.
struct Entry<'a> {
    offset: usize,
    next: usize,
    rule: XtRule,
    target: (String, u8, &'a [u8]),
    /// The standard target's verdict, when it is one.
    verdict: Option<i32>,
    error_name: Option<String>,
}

fn addr(layout: &Layout, b: &[u8]) -> IpAddr {
    if layout.addr_len == 4 {
        IpAddr::V4(Ipv4Addr::new(b[0], b[1], b[2], b[3]))
    } else {
        let mut raw = [0u8; 16];
        raw.copy_from_slice(&b[..16]);
        IpAddr::V6(Ipv6Addr::from(raw))
    }
}

/// (size, name, revision, data) of the match or target header at `at`,
/// within `end`.
fn extension<'a>(
    blob: &'a [u8],
    at: usize,
    end: usize,
    what: &'static str,
) -> Result<(usize, String, u8, &'a [u8]), XtError> {
    if at + EXT_HEADER_LEN > end {
        return Err(XtError::BadEntry {
            offset: at,
            what,
            value: end - at.min(end),
        });
    }
    let size = u16_at(blob, at) as usize;
    if size < EXT_HEADER_LEN || at + size > end {
        return Err(XtError::BadEntry {
            offset: at,
            what,
            value: size,
        });
    }
    let name = cstr(&blob[at + 2..at + 2 + EXT_NAME_LEN]);
    let revision = blob[at + 2 + EXT_NAME_LEN];
    Ok((size, name, revision, &blob[at + EXT_HEADER_LEN..at + size]))
}

fn parse_entry<'a>(
    layout: &Layout,
    blob: &'a [u8],
    offset: usize,
    table: &str,
) -> Result<Entry<'a>, XtError> {
    need(blob, offset, layout.len, "an entry")?;
    let e = &blob[offset..];
    let target_offset = u16_at(e, layout.target_offset) as usize;
    let next = u16_at(e, layout.next_offset) as usize;
    if next < layout.len + EXT_HEADER_LEN || offset + next > blob.len() {
        return Err(XtError::BadEntry {
            offset,
            what: "next_offset",
            value: next,
        });
    }
    if target_offset < layout.len || target_offset + EXT_HEADER_LEN > next {
        return Err(XtError::BadEntry {
            offset,
            what: "target_offset",
            value: target_offset,
        });
    }
    let entry = &blob[offset..offset + next];
    let mut matches = Vec::new();
    let mut at = layout.len;
    while at < target_offset {
        let (size, name, revision, data) = extension(entry, at, target_offset, "match size")?;
        matches.push(XtMatch {
            name,
            revision,
            data: data.to_vec(),
        });
        at += size;
    }
    let (_, tname, trev, tdata) = extension(entry, target_offset, next, "target size")?;
    let verdict = (tname == STANDARD && tdata.len() >= 4)
        .then(|| i32::from_ne_bytes([tdata[0], tdata[1], tdata[2], tdata[3]]));
    let error_name = (tname == ERROR).then(|| cstr(tdata));
    let a = layout.addr_len;
    let i = layout.ifaces;
    let mask = |at: usize| -> [u8; 16] { std::array::from_fn(|k| e[at + k]) };
    let rule = XtRule {
        family: layout.family,
        table: table.to_owned(),
        chain: String::new(),
        position: 0,
        src: addr(layout, e),
        dst: addr(layout, &e[a..]),
        src_mask: addr(layout, &e[2 * a..]),
        dst_mask: addr(layout, &e[3 * a..]),
        iniface: cstr(&e[i..i + 16]),
        outiface: cstr(&e[i + 16..i + 32]),
        iniface_mask: mask(i + 32),
        outiface_mask: mask(i + 48),
        proto: u16_at(e, layout.proto),
        tos: layout.tos.map(|t| e[t]).unwrap_or(0),
        flags: e[layout.flags],
        invflags: e[layout.invflags],
        matches,
        target: XtTarget::Continue,
    };
    Ok(Entry {
        offset,
        next,
        rule,
        target: (tname, trev, tdata),
        verdict,
        error_name,
    })
}

/// A chain's place among the entries.
struct Span {
    name: String,
    /// (hook, policy) of a builtin chain.
    builtin: Option<(u32, i32)>,
    /// Index of its first rule's entry, and of the entry past its last.
    first: usize,
    end: usize,
}

/// Whether an entry matches every packet (libiptc's `unconditional`).
fn unconditional(r: &XtRule) -> bool {
    let zero = |ip: &IpAddr| ip.is_unspecified();
    zero(&r.src)
        && zero(&r.dst)
        && zero(&r.src_mask)
        && zero(&r.dst_mask)
        && r.iniface.is_empty()
        && r.outiface.is_empty()
        && r.iniface_mask == [0; 16]
        && r.outiface_mask == [0; 16]
        && r.proto == 0
        && r.tos == 0
        && r.flags == 0
        && r.invflags == 0
        && r.matches.is_empty()
}

/// Decodes one table of `family` (AF_INET or AF_INET6): its info, and the
/// `ipt_get_entries` reply (header included). Returns its chains, then its
/// rules, each chain's in order.
pub fn decode_table(family: u8, info: &TableInfo, reply: &[u8]) -> Result<Vec<Object>, XtError> {
    let layout = match family {
        AF_INET => &IPV4,
        AF_INET6 => &IPV6,
        f => return Err(XtError::Family(f)),
    };
    need(reply, 0, ENTRIES_HEADER_LEN, "struct ipt_get_entries")?;
    let got = cstr(&reply[..TABLE_NAME_LEN]);
    if got != info.name {
        return Err(XtError::WrongTable {
            want: info.name.clone(),
            got,
        });
    }
    let size = u32_at(reply, 32) as usize;
    let blob = &reply[ENTRIES_HEADER_LEN..];
    if size != info.size as usize || blob.len() != size {
        return Err(XtError::WrongSize {
            want: info.size as usize,
            got: blob.len().min(size),
        });
    }
    let mut entries = Vec::new();
    let mut offset = 0;
    while offset < blob.len() {
        let e = parse_entry(layout, blob, offset, &info.name)?;
        offset += e.next;
        entries.push(e);
    }
    let index: BTreeMap<usize, usize> = entries
        .iter()
        .enumerate()
        .map(|(i, e)| (e.offset, i))
        .collect();

    let mut chains: Vec<Span> = Vec::new();
    for (hook, hook_name) in HOOK_NAMES.iter().enumerate() {
        if info.valid_hooks & (1 << hook) == 0 {
            continue;
        }
        let at = |what, offset: u32| {
            index
                .get(&(offset as usize))
                .copied()
                .ok_or(XtError::BadHook { hook, what, offset })
        };
        let first = at("hook_entry", info.hook_entry[hook])?;
        let last = at("underflow", info.underflow[hook])?;
        let policy = match (entries[last].verdict, first <= last) {
            (Some(v), true) if v < 0 => v,
            (_, true) => return Err(XtError::NoPolicy { chain: hook_name }),
            (_, false) => {
                return Err(XtError::BadHook {
                    hook,
                    what: "underflow before hook_entry",
                    offset: info.underflow[hook],
                })
            }
        };
        chains.push(Span {
            name: (*hook_name).to_owned(),
            builtin: Some((hook as u32, policy)),
            first,
            end: last,
        });
    }
    // User chains: from an ERROR entry to the next one (the last entry is
    // the end marker), less the RETURN libiptc appends.
    let mut heads: Vec<usize> = (0..entries.len())
        .filter(|i| entries[*i].error_name.is_some())
        .collect();
    // A blob without its end marker ends its last chain at its end.
    if heads.last() != Some(&entries.len().saturating_sub(1)) {
        heads.push(entries.len());
    }
    let mut starts = BTreeMap::new();
    for pair in heads.windows(2) {
        let (head, next_head) = (pair[0], pair[1]);
        let name = entries[head].error_name.clone().unwrap_or_default();
        let mut end = next_head;
        let tail = &entries[next_head - 1];
        if next_head > head + 1 && tail.verdict == Some(XT_RETURN) && unconditional(&tail.rule) {
            end = next_head - 1;
        }
        if let Some(first) = entries.get(head + 1) {
            starts.insert(first.offset, name.clone());
        }
        chains.push(Span {
            name,
            builtin: None,
            first: head + 1,
            end,
        });
    }

    let mut out = Vec::new();
    let mut rules = Vec::new();
    for Span {
        name,
        builtin,
        first,
        end,
    } in chains
    {
        out.push(Object::XtChain(XtChain {
            family,
            table: info.name.clone(),
            name: name.clone(),
            hook: builtin.map(|b| b.0),
            policy: builtin.map(|b| b.1),
        }));
        for (position, e) in entries[first..end].iter().enumerate() {
            let mut rule = e.rule.clone();
            rule.chain = name.clone();
            rule.position = position as u32 + 1;
            rule.target = target_of(e, &starts)?;
            rules.push(Object::XtRule(Box::new(rule)));
        }
    }
    out.extend(rules);
    Ok(out)
}

fn target_of(e: &Entry<'_>, starts: &BTreeMap<usize, String>) -> Result<XtTarget, XtError> {
    let (name, revision, data) = &e.target;
    Ok(match e.verdict {
        Some(v) if v < 0 => XtTarget::Verdict(v),
        Some(v) => {
            let to = v as usize;
            match starts.get(&to) {
                Some(chain) => XtTarget::Jump(chain.clone()),
                None if to == e.offset + e.next => XtTarget::Continue,
                None => {
                    return Err(XtError::BadJump {
                        offset: e.offset,
                        target: to,
                    })
                }
            }
        }
        None => XtTarget::Extension {
            name: name.clone(),
            revision: *revision,
            data: data.to_vec(),
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use fpc::XT_F_GOTO;

    /// Captured on this kernel with getsockopt(IPT_SO_GET_INFO) then
    /// (IPT_SO_GET_ENTRIES), the two replies back to back, from a
    /// namespace set up with:
    ///   iptables-legacy -N web
    ///   iptables-legacy -A INPUT -s 10.0.0.0/8 -i veth+ -p tcp --dport 22 -j DROP
    ///   iptables-legacy -A INPUT ! -d 192.0.2.1/32 -m comment --comment hi -j web
    ///   iptables-legacy -A INPUT -m limit --limit 5/s -j LOG --log-prefix "x: "
    ///   iptables-legacy -A INPUT -s 198.51.100.7
    ///   iptables-legacy -A INPUT -g web
    ///   iptables-legacy -A web -p udp --dport 53 -j ACCEPT
    ///   iptables-legacy -A web -j RETURN
    ///   iptables-legacy -P FORWARD DROP
    ///   iptables-legacy -t nat -A POSTROUTING -o lo -j MASQUERADE
    ///   iptables-legacy -t nat -A POSTROUTING -s 10.1.0.0/16 -j SNAT --to-source 192.0.2.9
    ///   ip6tables-legacy -A INPUT -s 2001:db8::/32 -p tcp --dport 80 -j REJECT
    ///   ip6tables-legacy -A OUTPUT ! -d ::1 -j ACCEPT
    const FILTER4: &[u8] = include_bytes!("fixtures/xt-filter4.bin");
    const NAT4: &[u8] = include_bytes!("fixtures/xt-nat4.bin");
    const FILTER6: &[u8] = include_bytes!("fixtures/xt-filter6.bin");

    fn decode(family: u8, fixture: &[u8]) -> Result<Vec<Object>, XtError> {
        let info = TableInfo::parse(fixture)?;
        decode_table(family, &info, &fixture[INFO_LEN.min(fixture.len())..])
    }

    fn rules(objs: &[Object], chain: &str) -> Vec<XtRule> {
        objs.iter()
            .filter_map(|o| match o {
                Object::XtRule(r) if r.chain == chain => Some(XtRule::clone(r)),
                _ => None,
            })
            .collect()
    }

    fn chain(objs: &[Object], name: &str) -> XtChain {
        objs.iter()
            .find_map(|o| match o {
                Object::XtChain(c) if c.name == name => Some(c.clone()),
                _ => None,
            })
            .unwrap_or_else(|| panic!("no chain {name}"))
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn filter_table_chains_policies_and_rules() {
        let info = TableInfo::parse(FILTER4).unwrap();
        assert_eq!(info.name, "filter");
        assert_eq!(info.valid_hooks, 0b1110);
        let objs = decode(AF_INET, FILTER4).unwrap();
        let input = chain(&objs, "INPUT");
        assert_eq!((input.hook, input.policy), (Some(1), Some(-2)));
        assert_eq!(chain(&objs, "FORWARD").policy, Some(-1), "-P FORWARD DROP");
        let web = chain(&objs, "web");
        assert_eq!((web.hook, web.policy), (None, None));
        let chains = objs.iter().filter(|o| matches!(o, Object::XtChain(_)));
        assert_eq!(chains.count(), 4);

        let input = rules(&objs, "INPUT");
        assert_eq!(input.len(), 5);
        let r = &input[0];
        assert_eq!(r.position, 1);
        assert_eq!((r.src, r.src_mask), (ip("10.0.0.0"), ip("255.0.0.0")));
        // iptables keeps the wildcard's `+` in the name; the mask stops before it.
        assert_eq!(r.iniface, "veth+");
        assert_eq!(&r.iniface_mask[..5], &[0xff, 0xff, 0xff, 0xff, 0]);
        assert_eq!(r.proto, 6);
        assert_eq!(r.matches.len(), 1);
        assert_eq!(r.matches[0].name, "tcp");
        assert_eq!(r.target, XtTarget::Verdict(-1));
        assert!(r.to_string().contains(" in veth+ "), "{r}");
        // ! -d 192.0.2.1/32 -m comment -j web
        let r = &input[1];
        assert_eq!(r.dst, ip("192.0.2.1"));
        assert_eq!(r.invflags, 0x10, "IPT_INV_DSTIP");
        assert_eq!(r.matches[0].name, "comment");
        assert_eq!(&r.matches[0].data[..3], b"hi\0");
        assert_eq!(r.target, XtTarget::Jump("web".into()));
        // limit: the kernel's own fields come back zeroed.
        let r = &input[2];
        assert_eq!(r.matches[0].name, "limit");
        assert!(r.matches[0].data[8..].iter().all(|b| *b == 0));
        assert!(matches!(&r.target, XtTarget::Extension { name, .. } if name == "LOG"));
        // No target: a counting rule.
        assert_eq!(input[3].target, XtTarget::Continue);
        assert_eq!(input[3].src, ip("198.51.100.7"));
        // -g web
        assert_eq!(input[4].target, XtTarget::Jump("web".into()));
        assert_eq!(input[4].flags & XT_F_GOTO, XT_F_GOTO);
        // The user chain's own RETURN stays; libiptc's tail does not.
        let web = rules(&objs, "web");
        assert_eq!(web.len(), 2);
        assert_eq!(web[0].matches[0].name, "udp");
        assert_eq!(web[0].target, XtTarget::Verdict(-2));
        assert_eq!(web[1].target, XtTarget::Verdict(-5));
        assert!(rules(&objs, "FORWARD").is_empty());
    }

    #[test]
    fn nat_table_targets() {
        let objs = decode(AF_INET, NAT4).unwrap();
        assert_eq!(
            objs.iter()
                .filter(|o| matches!(o, Object::XtChain(c) if c.hook.is_some()))
                .count(),
            4
        );
        let post = rules(&objs, "POSTROUTING");
        assert_eq!(post.len(), 2);
        assert_eq!(post[0].outiface, "lo");
        assert!(
            matches!(&post[0].target, XtTarget::Extension { name, .. } if name == "MASQUERADE")
        );
        let XtTarget::Extension { name, data, .. } = &post[1].target else {
            panic!("{:?}", post[1].target)
        };
        assert_eq!(name, "SNAT");
        assert!(data.windows(4).any(|w| w == [192, 0, 2, 9]));
    }

    #[test]
    fn ipv6_layout() {
        let objs = decode(AF_INET6, FILTER6).unwrap();
        let input = rules(&objs, "INPUT");
        assert_eq!(input.len(), 1);
        assert_eq!(input[0].family, AF_INET6);
        assert_eq!(
            (input[0].src, input[0].src_mask),
            (ip("2001:db8::"), ip("ffff:ffff::"))
        );
        assert_eq!(input[0].proto, 6);
        assert!(matches!(&input[0].target, XtTarget::Extension { name, .. } if name == "REJECT"));
        let out = rules(&objs, "OUTPUT");
        assert_eq!(out[0].dst, ip("::1"));
        assert_eq!(out[0].target, XtTarget::Verdict(-2));
        // The same blob read as IPv4 is refused, not misread.
        assert!(decode(AF_INET, FILTER6).is_err());
    }

    #[test]
    fn counters_are_not_part_of_the_objects() {
        // Counters of the first entry: after ipt_entry's fixed fields.
        let mut moved = FILTER4.to_vec();
        let at = INFO_LEN + ENTRIES_HEADER_LEN + 96;
        moved[at..at + 16].copy_from_slice(&[7; 16]);
        assert_eq!(decode(AF_INET, &moved), decode(AF_INET, FILTER4));
    }

    #[test]
    fn wrong_table_or_size_is_named() {
        let mut other = FILTER4.to_vec();
        other[INFO_LEN] = b'F';
        assert!(matches!(
            decode(AF_INET, &other),
            Err(XtError::WrongTable { .. })
        ));
        assert!(matches!(
            decode(AF_INET, &FILTER4[..FILTER4.len() - 8]),
            Err(XtError::WrongSize { .. })
        ));
        assert_eq!(
            decode(3, FILTER4),
            Err(XtError::Family(3)),
            "arptables is not decoded"
        );
    }

    #[test]
    fn truncations_and_mutations_never_panic() {
        for fixture in [FILTER4, NAT4, FILTER6] {
            for family in [AF_INET, AF_INET6] {
                for len in 0..fixture.len() {
                    let _ = decode(family, &fixture[..len]);
                }
                // Every byte set to values that matter for sizes and offsets.
                for at in 0..fixture.len() {
                    for v in [0x00, 0x01, 0x20, 0x7f, 0x80, 0xff] {
                        let mut m = fixture.to_vec();
                        m[at] = v;
                        let _ = decode(family, &m);
                    }
                }
            }
        }
    }

    #[test]
    fn entries_request_names_the_table() {
        let info = TableInfo::parse(NAT4).unwrap();
        let req = entries_request(&info);
        assert_eq!(req.len(), ENTRIES_HEADER_LEN + info.size as usize);
        assert_eq!(&req[..4], b"nat\0");
        assert_eq!(u32_at(&req, 32), info.size);
    }
}
