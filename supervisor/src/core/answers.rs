//! Answers from memory: a watcher per running child keeps what it last
//! heard in the store; `Status()` and `Statistics()` are built from the
//! views, the store and the resources, ahead of the calls every answer
//! period, and withdrawn by any change of state.

use super::*;

impl Core {
    /// Starts the collector's watcher of `unit`'s current run; each
    /// instance round's sync state comes back as [`Event::Synced`].
    pub(super) fn spawn_watcher(&mut self, unit: Unit) {
        let netns = self.dial_netns(unit);
        let Some(c) = self.children.get_mut(&unit) else {
            return;
        };
        let token = self.tasks.child_token();
        if let Some(old) = c.watcher.replace(token.clone()) {
            old.cancel();
        }
        let run = c.run;
        let watcher = Watcher {
            unit,
            run,
            endpoint: c.endpoint.clone(),
            netns,
            interval: self.config.report_interval,
            timeout: self.config.query_timeout,
            store: self.store.clone(),
            nudge: c.nudge.clone(),
        };
        let events = self.events_tx.clone();
        tokio::spawn(watcher.run(token, move |round| {
            let _ = events.send(match round {
                collect::Round::Instance(info) => Event::Synced { unit, run, info },
                collect::Round::Blade(result) => Event::Reached {
                    unit,
                    run,
                    result: result.map_err(|e| e.to_string()),
                },
            });
        }));
    }

    /// The namespace a remote blade is dialled from: its instance's.
    pub(super) fn dial_netns(&self, unit: Unit) -> Option<String> {
        let c = self.children.get(&unit)?;
        if !c.remote {
            return None;
        }
        let instance = c.peers.first()?;
        self.children.get(&Unit::Instance(*instance))?.netns.clone()
    }

    pub(super) fn views(&self) -> Vec<ChildView> {
        self.children.values().map(Child::view).collect()
    }

    /// When the prebuilt answers are next due: none while stopping.
    pub(super) fn answers_due(&self) -> Option<Instant> {
        if self.stopping {
            return None;
        }
        let period = answer_period(self.config.report_interval);
        Some(self.answers_at.map_or_else(Instant::now, |t| t + period))
    }

    /// Rebuilds `Status()` and `Statistics()` into the answer table when
    /// due; while stopping, withdraws them (every call then comes here).
    pub(super) fn build_answers_if_due(&mut self) {
        let Some(due) = self.answers_due() else {
            self.withdraw_answers();
            return;
        };
        if due > Instant::now() {
            return;
        }
        let header = self.status_header();
        let (status, statistics) =
            self.report(|inputs| (report::status(header, inputs), report::statistics(inputs)));
        let old = self.answers.write().ok().map(|mut t| {
            std::mem::replace(
                &mut *t,
                fpsync_dbus::Prebuilt {
                    status: Some(status.into()),
                    statistics: Some(statistics.into()),
                },
            )
        });
        // The old texts are freed here, outside the lock.
        drop(old);
        self.answers_at = Some(Instant::now());
    }

    /// Withdraws the prebuilt answers (a child's or the supervisor's state
    /// changed): calls are answered by the core until the next build.
    pub(super) fn withdraw_answers(&mut self) {
        let old = self
            .answers
            .write()
            .ok()
            .map(|mut t| std::mem::take(&mut *t));
        drop(old);
    }

    /// The supervisor's own members of `Status()`.
    pub(super) fn status_header(&self) -> serde_json::Value {
        json!({
            "state": self.state,
            "pid": std::process::id(),
            "version": env!("CARGO_PKG_VERSION"),
            "bus": self.bus_address,
            "config": self.config.files,
        })
    }

    /// Builds a report from memory (see `report`).
    pub(super) fn report<T>(&self, build: impl FnOnce(&report::Inputs) -> T) -> T {
        let views = self.views();
        let heard = self.store.snapshot();
        let resources = self.resources.read().map(|r| r.clone()).unwrap_or_default();
        build(&report::Inputs {
            views: &views,
            heard: &heard,
            resources: &resources,
            interval: self.config.report_interval,
            now: Instant::now(),
        })
    }
}
