//! Remote blades (`BLADE_<B>_ENDPOINT`): watched for the whole life of
//! fpsyncd, never started or stopped; each watcher round says whether the
//! blade was reached, and its SyncState is its instance's word on it.

use super::*;

impl Core {
    /// Begins watching remote blade `unit` (its only run).
    pub(super) fn watch_remote(&mut self, unit: Unit) {
        let Some(c) = self.children.get_mut(&unit) else {
            return;
        };
        c.run = 1;
        child_log!(
            info,
            unit,
            "{} is remote, at {}: watched, not started",
            c.log_name(),
            c.endpoint
                .as_ref()
                .map(|e| e.to_string())
                .unwrap_or_default()
        );
        self.set_state(unit, "activating", "connecting");
        self.spawn_watcher(unit);
    }

    /// A remote blade's watcher reached it, or not.
    pub(super) fn on_reached(&mut self, unit: Unit, run: u64, result: Result<(), String>) {
        let Some(c) = self.children.get_mut(&unit) else {
            return;
        };
        if c.run != run || !c.remote {
            return;
        }
        match result {
            Ok(()) => {
                if c.active != "active" {
                    child_log!(
                        info,
                        unit,
                        "{} reached at {}",
                        c.log_name(),
                        c.endpoint
                            .as_ref()
                            .map(|e| e.to_string())
                            .unwrap_or_default()
                    );
                }
                // Only a change is published (and withdraws the answers).
                let changed = c.unreachable.take().is_some() || c.sub != "remote";
                if changed {
                    self.set_state(unit, "active", "remote");
                }
            }
            Err(reason) => {
                let changed = c.unreachable.as_ref() != Some(&reason) || c.sub != "unreachable";
                if c.unreachable.as_ref() != Some(&reason) {
                    child_log!(warn, unit, "{} unreachable: {reason}", c.log_name());
                    c.last_failure = Some(format!("unreachable: {reason}"));
                }
                c.unreachable = Some(reason);
                if changed {
                    self.set_state(unit, "activating", "unreachable");
                }
            }
        }
    }

    /// What instance `unit`'s report says of each of its blades' queues.
    pub(super) fn update_blade_sync(&mut self, unit: Unit) {
        let Some(c) = self.children.get(&unit) else {
            return;
        };
        let queue = c
            .sync
            .as_ref()
            .filter(|_| c.active == "active")
            .map(|s| s.queue.clone());
        for b in c.peers.clone() {
            let state = queue.as_ref().map(|q| blade_queue_state(q, b));
            let Some(bc) = self.children.get_mut(&Unit::Blade(b)) else {
                continue;
            };
            if bc.blade_sync != state {
                bc.blade_sync = state;
                self.publish_child(Unit::Blade(b));
            }
        }
    }

    pub(super) fn is_remote(&self, unit: Unit) -> bool {
        self.children.get(&unit).is_some_and(|c| c.remote)
    }
}
