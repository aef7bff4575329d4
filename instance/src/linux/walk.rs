//! The one walk every dump of `crate::linux` shares: a request, every
//! answer counted and decoded, an interrupted dump started again, a
//! malformed message counted and skipped. It imports nothing of the
//! dumps that use it.

use tracing::warn;

use crate::netlink::{NetlinkSocket, NlMsg, SocketError};
use crate::stats::{SocketStats, SyncStats};

/// One dump: `request(seq)` sent on `sock`, every answer counted on
/// `stats` and handed to `take`, which keeps what it wants in its `Vec`.
/// An interrupted dump starts again (what was kept is dropped); a message
/// `take` cannot decode is counted in `sync.decode_errors`, logged with
/// `what`, and skipped. The one walk every dump here shares.
pub(super) fn collect<T, E: std::fmt::Display>(
    sock: &mut NetlinkSocket,
    request: impl Fn(u32) -> Vec<u8>,
    what: &str,
    stats: &mut SocketStats,
    sync: &mut SyncStats,
    mut take: impl FnMut(&NlMsg<'_>, &mut Vec<T>) -> Result<(), E>,
) -> Result<Vec<T>, SocketError> {
    let mut out = Vec::new();
    let mut bad = 0u64;
    let res = sock.dump_with(request, |msg| {
        let Some(msg) = msg else {
            out.clear();
            return;
        };
        stats.count(msg.kind);
        if let Err(e) = take(msg, &mut out) {
            bad += 1;
            warn!(kind = msg.kind, "malformed {what} message in dump: {e}");
        }
    });
    sync.decode_errors += bad;
    res.map(|()| out)
}
