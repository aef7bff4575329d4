//! The kernel's XFRM structures as laid out on x86_64 (include/uapi/
//! linux/xfrm.h): the size of each and the offset of every field the
//! decoder and the fixture encoder read or write. Addresses are
//! `xfrm_address_t` (16 bytes, IPv4 in the first 4). Some fields only the
//! fixture encoder writes: unused in the daemon's build.

#![allow(dead_code)]

/// `struct xfrm_selector`.
pub mod sel {
    pub const DADDR: usize = 0;
    pub const SADDR: usize = 16;
    pub const DPORT: usize = 32;
    pub const DPORT_MASK: usize = 34;
    pub const SPORT: usize = 36;
    pub const SPORT_MASK: usize = 38;
    pub const FAMILY: usize = 40;
    pub const PREFIXLEN_D: usize = 42;
    pub const PREFIXLEN_S: usize = 43;
    pub const PROTO: usize = 44;
    pub const IFINDEX: usize = 48;
    pub const USER: usize = 52;
    pub const LEN: usize = 56;
}

/// `struct xfrm_id` (inside `xfrm_usersa_info` and `xfrm_user_tmpl`).
pub mod id {
    pub const DADDR: usize = 0;
    pub const SPI: usize = 16;
    pub const PROTO: usize = 20;
    pub const LEN: usize = 24;
}

/// `struct xfrm_usersa_id` (XFRM_MSG_DELSA, and the head of
/// `xfrm_aevent_id`).
pub mod sa_id {
    pub const DADDR: usize = 0;
    pub const SPI: usize = 16;
    pub const FAMILY: usize = 20;
    pub const PROTO: usize = 22;
    pub const LEN: usize = 24;
}

/// `struct xfrm_lifetime_cfg`: eight u64 limits.
pub mod lft {
    pub const SOFT_BYTES: usize = 0;
    pub const HARD_BYTES: usize = 8;
    pub const SOFT_PACKETS: usize = 16;
    pub const HARD_PACKETS: usize = 24;
    pub const SOFT_ADD_SECONDS: usize = 32;
    pub const HARD_ADD_SECONDS: usize = 40;
    pub const SOFT_USE_SECONDS: usize = 48;
    pub const HARD_USE_SECONDS: usize = 56;
    pub const LEN: usize = 64;
}

/// `struct xfrm_usersa_info`.
pub mod sa_info {
    pub const SEL: usize = 0;
    pub const ID: usize = super::sel::LEN;
    pub const SADDR: usize = 80;
    pub const LFT: usize = 96;
    pub const SEQ: usize = 204;
    pub const REQID: usize = 208;
    pub const FAMILY: usize = 212;
    pub const MODE: usize = 214;
    pub const REPLAY_WINDOW: usize = 215;
    pub const FLAGS: usize = 216;
    pub const LEN: usize = 224;
}

/// `struct xfrm_userpolicy_info`.
pub mod policy_info {
    pub const SEL: usize = 0;
    pub const LFT: usize = super::sel::LEN;
    pub const PRIORITY: usize = 152;
    pub const INDEX: usize = 156;
    pub const DIR: usize = 160;
    pub const ACTION: usize = 161;
    pub const FLAGS: usize = 162;
    pub const SHARE: usize = 163;
    pub const LEN: usize = 168;
}

/// `struct xfrm_userpolicy_id` (XFRM_MSG_DELPOLICY, XFRM_MSG_MIGRATE).
pub mod policy_id {
    pub const SEL: usize = 0;
    pub const INDEX: usize = 56;
    pub const DIR: usize = 60;
    pub const LEN: usize = 64;
}

/// `struct xfrm_user_tmpl`.
pub mod tmpl {
    pub const ID: usize = 0;
    pub const FAMILY: usize = 24;
    pub const SADDR: usize = 28;
    pub const REQID: usize = 44;
    pub const MODE: usize = 48;
    pub const SHARE: usize = 49;
    pub const OPTIONAL: usize = 50;
    pub const AALGOS: usize = 52;
    pub const EALGOS: usize = 56;
    pub const CALGOS: usize = 60;
    pub const LEN: usize = 64;
}

/// `struct xfrm_aevent_id`.
pub mod aevent_id {
    pub const SA_ID: usize = 0;
    pub const SADDR: usize = 24;
    pub const FLAGS: usize = 40;
    pub const REQID: usize = 44;
    pub const LEN: usize = 48;
}

/// `struct xfrm_user_migrate`.
pub mod migrate {
    pub const OLD_DADDR: usize = 0;
    pub const OLD_SADDR: usize = 16;
    pub const NEW_DADDR: usize = 32;
    pub const NEW_SADDR: usize = 48;
    pub const PROTO: usize = 64;
    pub const MODE: usize = 65;
    pub const REQID: usize = 68;
    pub const OLD_FAMILY: usize = 72;
    pub const NEW_FAMILY: usize = 74;
    pub const LEN: usize = 76;
}

/// `struct xfrm_encap_tmpl`.
pub mod encap {
    pub const TYPE: usize = 0;
    pub const SPORT: usize = 2;
    pub const DPORT: usize = 4;
    pub const OA: usize = 8;
    pub const LEN: usize = 24;
}

/// `struct xfrm_mark`.
pub mod mark {
    pub const V: usize = 0;
    pub const M: usize = 4;
    pub const LEN: usize = 8;
}

/// `struct xfrm_replay_state`.
pub mod replay {
    pub const OSEQ: usize = 0;
    pub const SEQ: usize = 4;
    pub const BITMAP: usize = 8;
    pub const LEN: usize = 12;
}

/// `struct xfrm_replay_state_esn` (then `bmp_len` u32 words of bitmap).
pub mod replay_esn {
    pub const BMP_LEN: usize = 0;
    pub const OSEQ: usize = 4;
    pub const SEQ: usize = 8;
    pub const OSEQ_HI: usize = 12;
    pub const SEQ_HI: usize = 16;
    pub const REPLAY_WINDOW: usize = 20;
    pub const BMP: usize = 24;
}

/// `struct xfrm_algo` / `xfrm_algo_auth` / `xfrm_algo_aead`: the name,
/// then the key length in bits (and, for auth-trunc and AEAD, a u32 more).
pub mod algo {
    pub const NAME_LEN: usize = 64;
    pub const KEY_LEN: usize = NAME_LEN;
    pub const EXTRA: usize = NAME_LEN + 4;
}
