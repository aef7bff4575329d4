//! Starting and stopping children: blades before instances, a start
//! replied to when the child is ready, a stop when it has exited, and the
//! ordered shutdown (instances first, then blades).

use super::*;

impl Core {
    /// Starts `unit` now (the start limit permitting); `waiter` is answered
    /// once it is ready or has failed.
    pub(super) fn start(&mut self, unit: Unit, waiter: Option<Reply>) {
        let policy = self.config.policy.clone();
        let start_timeout = self.config.start_timeout;
        let Some(c) = self.children.get_mut(&unit) else {
            return;
        };
        if c.remote {
            if let Some(w) = waiter {
                let _ = w.send(Err(remote_refusal(c)));
            }
            return;
        }
        c.pending = false;
        c.restart_at = None;
        if let Some(w) = waiter {
            c.start_waiters.push(w);
        }
        let now = Instant::now();
        if !policy.admit(&mut c.history, now) {
            c.restarting = false;
            c.result = "start-limit-hit";
            c.last_failure = Some(format!(
                "start limit hit: {} starts within {:?}",
                policy.burst, policy.interval
            ));
            child_log!(
                error,
                unit,
                "{}: start limit hit ({} starts within {:?}); failed until reset",
                c.log_name(),
                policy.burst,
                policy.interval
            );
            let reason = c.last_failure.clone().unwrap_or_default();
            for w in c.start_waiters.drain(..) {
                let _ = w.send(Err(CommandError::StartFailed {
                    unit,
                    reason: reason.clone(),
                }));
            }
            self.set_state(unit, "failed", "start-limit-hit");
            return;
        }
        let mut cmd = process::command(&c.program, &c.args);
        cmd.stdin(Stdio::null());
        // Children join fpsyncd's bus under their own names.
        if !self.bus_address.is_empty() {
            cmd.env("FPSYNC_BUS_ADDRESS", &self.bus_address);
        }
        match cmd.spawn() {
            Ok(mut child) => {
                let pid = child.id().unwrap_or(0);
                c.handle = Some(process::handle(pid));
                c.run += 1;
                c.sync = None;
                c.killed = false;
                c.start_deadline = Some(now + start_timeout);
                if std::mem::take(&mut c.restarting) {
                    c.n_restarts += 1;
                }
                let run = c.run;
                child_log!(info, unit, "{} started (pid {pid})", c.log_name());
                let events = self.events_tx.clone();
                tokio::spawn(async move {
                    let outcome = match child.wait().await {
                        Ok(status) => Outcome::from_status(status),
                        Err(_) => Outcome::ExitCode(-1),
                    };
                    let _ = events.send(Event::Exited { unit, run, outcome });
                });
                self.spawn_ready_probe(unit, run, pid);
                self.set_state(unit, "activating", "start");
                self.record_children();
            }
            Err(e) => {
                let reason = format!("cannot run {}: {e}", c.program.display());
                child_log!(error, unit, "{reason}");
                c.last_failure = Some(reason.clone());
                for w in c.start_waiters.drain(..) {
                    let _ = w.send(Err(CommandError::StartFailed {
                        unit,
                        reason: reason.clone(),
                    }));
                }
                self.after_failure(unit, "resources");
            }
        }
    }

    pub(super) fn spawn_ready_probe(&self, unit: Unit, run: u64, pid: u32) {
        let events = self.events_tx.clone();
        let token = self.tasks.clone();
        let timeout = self.config.start_timeout;
        let endpoint = self.children.get(&unit).and_then(|c| c.endpoint.clone());
        tokio::spawn(async move {
            let deadline = Instant::now() + timeout;
            let probe_timeout = Duration::from_millis(500);
            while Instant::now() < deadline && !token.is_cancelled() {
                let ready = match (unit, &endpoint) {
                    (Unit::Instance(id), _) => {
                        probe::console_json(id, "show pid --json", probe_timeout)
                            .await
                            .is_ok_and(|v| v["pid"].as_u64() == Some(pid as u64))
                    }
                    (Unit::Blade(id), Some(ep)) => probe::fpd_counters(ep, probe_timeout)
                        .await
                        .is_ok_and(|(blade, _)| blade == id),
                    _ => false,
                };
                if ready {
                    let _ = events.send(Event::Ready { unit, run });
                    return;
                }
                tokio::select! {
                    _ = tokio::time::sleep(READY_POLL) => {}
                    _ = token.cancelled() => return,
                }
            }
        });
    }

    /// Starts the instances whose blades are no longer activating.
    pub(super) fn start_pending(&mut self) {
        if self.stopping {
            return;
        }
        let ready: Vec<Unit> = self
            .children
            .values()
            .filter(|c| c.pending)
            .filter(|c| {
                c.peers.iter().all(|b| {
                    self.children
                        .get(&Unit::Blade(*b))
                        .is_none_or(|bc| bc.remote || bc.active != "activating")
                })
            })
            .map(|c| c.unit)
            .collect();
        for unit in ready {
            self.start(unit, None);
        }
    }

    // ---- stopping --------------------------------------------------------

    /// Sends SIGTERM; `waiter` is answered when it has exited.
    pub(super) fn stop(&mut self, unit: Unit, waiter: Option<Reply>) {
        let stop_timeout = self.config.stop_timeout;
        let Some(c) = self.children.get_mut(&unit) else {
            return;
        };
        c.pending = false;
        if c.restart_at.take().is_some() || !c.is_running() {
            // Waiting to restart or not running: nothing to stop.
            if let Some(w) = waiter {
                let _ = w.send(Ok(Answer::Done));
            }
            if c.active == "activating" && c.sub == "auto-restart" {
                self.set_state(unit, "inactive", "dead");
            }
            return;
        }
        if let Some(w) = waiter {
            c.stop_waiters.push(w);
        }
        if c.active == "deactivating" {
            return;
        }
        if let Some(h) = &c.handle {
            h.signal(libc::SIGTERM);
        }
        c.stop_deadline = Some(Instant::now() + stop_timeout);
        c.start_deadline = None;
        child_log!(info, unit, "stopping {} (pid {})", c.log_name(), c.pid());
        for w in c.start_waiters.drain(..) {
            let _ = w.send(Err(CommandError::StartFailed {
                unit,
                reason: "stopped before it was ready".into(),
            }));
        }
        self.set_state(unit, "deactivating", "stop-sigterm");
    }

    pub(super) fn begin_shutdown(&mut self) {
        info!("stopping: instances first, then blades");
        self.stopping = true;
        let _ = self.publish.send(Publish::State("stopping".into()));
        self.state = "stopping".into();
        for c in self.children.values_mut() {
            c.start_after_stop = false;
            c.pending = false;
        }
        let units: Vec<Unit> = self.children.keys().copied().collect();
        for unit in units {
            let c = &self.children[&unit];
            if c.restart_at.is_some() {
                self.stop(unit, None);
            }
        }
        let instances: Vec<Unit> = self
            .children
            .keys()
            .copied()
            .filter(|u| matches!(u, Unit::Instance(_)))
            .collect();
        for unit in instances {
            self.stop(unit, None);
        }
    }

    /// Once no instance runs any more, stops the blades.
    pub(super) fn advance_shutdown(&mut self) {
        if !self.stopping {
            return;
        }
        let instances_down = self
            .children
            .values()
            .filter(|c| matches!(c.unit, Unit::Instance(_)))
            .all(|c| !c.is_running());
        if !instances_down {
            return;
        }
        let blades: Vec<Unit> = self
            .children
            .values()
            .filter(|c| {
                matches!(c.unit, Unit::Blade(_)) && c.is_running() && c.active != "deactivating"
            })
            .map(|c| c.unit)
            .collect();
        for unit in blades {
            self.stop(unit, None);
        }
    }

    // ---- events ------------------------------------------------------------
}
