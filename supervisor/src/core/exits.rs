//! What happens when a child exits: its result, the restart policy with
//! its start limit, and the timers (restart delays, stop timeouts) the
//! core's loop waits on.

use super::*;

impl Core {
    pub(super) fn on_exit(&mut self, unit: Unit, run: u64, outcome: Outcome) {
        let Some(c) = self.children.get_mut(&unit) else {
            return;
        };
        if c.run != run {
            return;
        }
        let ours = c.active == "deactivating";
        let pid = c.pid();
        c.handle = None;
        c.sync = None;
        if let Some(w) = c.watcher.take() {
            w.cancel();
        }
        self.store.forget(unit);
        c.start_deadline = None;
        c.stop_deadline = None;
        if matches!(unit, Unit::Instance(_)) {
            self.update_blade_sync(unit);
        }
        let c = self.children.get_mut(&unit).expect("present");
        let was_ready = c.active == "active";
        let outcome = if ours && c.killed {
            Outcome::Timeout
        } else {
            outcome
        };
        self.record_children();
        let c = self.children.get_mut(&unit).expect("present");
        if ours {
            child_log!(
                info,
                unit,
                "{} stopped ({})",
                c.log_name(),
                outcome.describe()
            );
            c.result = if c.killed { "timeout" } else { "success" };
            for w in c.stop_waiters.drain(..) {
                let _ = w.send(Ok(Answer::Done));
            }
            let again = std::mem::take(&mut c.start_after_stop);
            self.set_state(unit, "inactive", "dead");
            if again && !self.stopping {
                let c = self.children.get_mut(&unit).expect("present");
                c.history.clear();
                let waiters = std::mem::take(&mut c.start_waiters);
                self.start(unit, None);
                if let Some(c) = self.children.get_mut(&unit) {
                    c.start_waiters.extend(waiters);
                }
            }
            return;
        }
        let why = outcome.describe();
        for w in c.start_waiters.drain(..) {
            let _ = w.send(Err(CommandError::StartFailed {
                unit,
                reason: why.clone(),
            }));
        }
        if !outcome.is_failure() {
            child_log!(
                warn,
                unit,
                "{} {why} on its own; not restarted (Restart=on-failure)",
                c.log_name()
            );
            c.result = "success";
            self.set_state(unit, "inactive", "dead");
            return;
        }
        child_log!(
            error,
            unit,
            "{} (pid {pid}) {why}{}",
            c.log_name(),
            if was_ready {
                ""
            } else {
                " before it was ready"
            }
        );
        c.last_failure = Some(why);
        self.after_failure(unit, outcome.result());
    }

    /// Schedules a restart with back-off, or marks the child failed.
    pub(super) fn after_failure(&mut self, unit: Unit, result: &'static str) {
        let policy = self.config.policy.clone();
        let stopping = self.stopping;
        let Some(c) = self.children.get_mut(&unit) else {
            return;
        };
        c.handle = None;
        c.result = result;
        if stopping {
            self.set_state(unit, "failed", "failed");
            return;
        }
        let now = Instant::now();
        let delay = policy.delay(&mut c.history, now);
        c.restart_at = Some(now + delay);
        child_log!(info, unit, "{} restarts in {delay:?}", c.log_name());
        self.set_state(unit, "activating", "auto-restart");
    }

    pub(super) fn on_timers(&mut self) {
        let now = Instant::now();
        if let Some(w) = self.watch.as_mut() {
            w.ping_if_due(now);
        }
        let units: Vec<Unit> = self.children.keys().copied().collect();
        for unit in units {
            let c = self.children.get_mut(&unit).expect("present");
            if c.restart_at.is_some_and(|t| t <= now) {
                c.restart_at = None;
                c.restarting = true;
                self.start(unit, None);
                continue;
            }
            if c.start_deadline.is_some_and(|t| t <= now) {
                c.start_deadline = None;
                child_log!(
                    error,
                    unit,
                    "{} not ready after {:?}: killing it",
                    c.log_name(),
                    self.config.start_timeout
                );
                c.last_failure = Some("not ready in time".into());
                if let Some(h) = &c.handle {
                    h.signal(libc::SIGKILL);
                }
                // Its exit is a failure; restart policy applies then.
            }
            if c.stop_deadline.is_some_and(|t| t <= now) {
                c.stop_deadline = None;
                c.killed = true;
                child_log!(
                    warn,
                    unit,
                    "{} did not stop in {:?}: SIGKILL",
                    c.log_name(),
                    self.config.stop_timeout
                );
                if let Some(h) = &c.handle {
                    h.signal(libc::SIGKILL);
                }
                self.set_state(unit, "deactivating", "stop-sigkill");
            }
        }
    }

    pub(super) fn next_deadline(&self) -> Instant {
        // Nothing due: wake up now and then all the same.
        let mut next = Instant::now() + Duration::from_secs(3600);
        if let Some(t) = self.watch.as_ref().and_then(Watch::next_ping) {
            next = next.min(t);
        }
        if let Some(t) = self.answers_due() {
            next = next.min(t);
        }
        for c in self.children.values() {
            for t in [c.restart_at, c.start_deadline, c.stop_deadline]
                .into_iter()
                .flatten()
            {
                next = next.min(t);
            }
        }
        next
    }
}
