//! How cmgrd learns of legacy x_tables changes: records on the init
//! namespace's audit socket while audit is enabled, else by polling on the
//! link poll's tick. Each record has the legacy tables re-read; each
//! reason for polling is warned once.

use tracing::{debug, info, warn};

use super::{Processor, Proto, Source};
use fpc::ObjectKind;

use crate::cache::Scope;
use crate::netlink::{self};

impl Processor {
    /// Audit records: every x_tables one (the kernel does not say of which
    /// namespace) has this namespace's legacy tables read again.
    pub(super) fn on_audit(&mut self, buf: &[u8]) {
        let mut xt = false;
        for msg in self.take_messages(buf, Proto::Audit, Source::Listener) {
            xt |= netlink::audit::netfilter_cfg(&msg).is_some_and(|c| c.is_xtables());
        }
        if xt {
            self.read_xtables();
        }
    }

    pub(super) fn read_xtables(&mut self) -> usize {
        let before = self.pending.len();
        if let Err(e) = self.resync_scopes(&[
            Scope::whole(ObjectKind::XtChain),
            Scope::whole(ObjectKind::XtRule),
        ]) {
            warn!("reading the legacy iptables tables failed: {e}");
        }
        let changed = self.pending.len().saturating_sub(before);
        self.flush();
        changed
    }

    /// Looks at the audit status: while it is enabled (and cmgrd hears the
    /// records) changes arrive as AUDIT_NETFILTER_CFG; otherwise the tables
    /// are read on each tick (`poll`), and what changed is counted as
    /// silent. Switching to records reads the tables once more, for what
    /// changed since the last poll.
    pub(super) fn watch_xtables(&mut self, poll: bool) {
        if !self.config.features.enabled(crate::features::FILTER) {
            return; // a switched-off feature reads nothing
        }
        let w = &mut self.xt_watch;
        let status = match (&mut w.status, w.listening) {
            (_, false) => Err("cmgrd hears no audit records".to_owned()),
            (None, true) => Err("the audit status cannot be read".to_owned()),
            (Some(s), true) => match s.enabled() {
                Ok(true) => Ok(()),
                Ok(false) => Err("audit is disabled (auditctl -e 0)".to_owned()),
                Err(e) => Err(format!("the audit status cannot be read: {e}")),
            },
        };
        match status {
            Ok(()) => {
                if !w.events {
                    w.events = true;
                    w.warned = None;
                    info!("legacy iptables changes arrive as AUDIT_NETFILTER_CFG records");
                    if poll {
                        self.read_xtables();
                    }
                }
            }
            Err(why) => {
                w.events = false;
                if w.warned.as_ref() != Some(&why) {
                    warn!("{why}: legacy iptables tables are polled");
                    w.warned = Some(why);
                }
                if poll {
                    let found = self.read_xtables();
                    if found > 0 {
                        self.sync.silent_changes += found as u64;
                        debug!(found, "legacy table poll found changes");
                    }
                }
            }
        }
    }

    /// How legacy iptables changes are found now: `audit` (records) or
    /// `poll`.
    pub fn xtables_watch(&self) -> &'static str {
        if self.xt_watch.events {
            "audit"
        } else {
            "poll"
        }
    }
}
