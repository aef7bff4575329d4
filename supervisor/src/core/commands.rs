//! The commands the D-Bus adapters send: each checked (unknown child, a
//! remote blade that cannot be started) and replied to once, when its
//! work is done; the IPsec HA switch, applied to the instances' consoles.

use super::*;

impl Core {
    pub(super) fn spawn_ha_reapply(&self, id: u32, enable: bool) {
        let timeout = self.config.query_timeout;
        tokio::spawn(async move {
            let command = if enable {
                "ipsec ha enable"
            } else {
                "ipsec ha disable"
            };
            match probe::console(id, &[command], timeout).await {
                Ok(a) if report::parse_ha(&a[0]) == Ok(enable) => {
                    info!(
                        instance = id,
                        "IPsec HA {} again after the restart",
                        if enable { "enabled" } else { "disabled" }
                    );
                }
                Ok(a) => warn!(instance = id, "cannot re-apply IPsec HA: {}", a[0].trim()),
                Err(e) => warn!(instance = id, "cannot re-apply IPsec HA: {e}"),
            }
        });
    }

    pub(super) fn known(&self, instance: bool) -> String {
        let ids: Vec<String> = self
            .children
            .keys()
            .filter(|u| matches!(u, Unit::Instance(_)) == instance)
            .map(|u| u.id().to_string())
            .collect();
        if ids.is_empty() {
            "none".into()
        } else {
            ids.join(", ")
        }
    }

    pub(super) fn check_unit(&self, unit: Unit) -> Result<(), CommandError> {
        if self.children.contains_key(&unit) {
            return Ok(());
        }
        Err(match unit {
            Unit::Instance(id) => CommandError::NoSuchInstance {
                id,
                known: self.known(true),
            },
            Unit::Blade(id) => CommandError::NoSuchBlade {
                id,
                known: self.known(false),
            },
        })
    }

    pub(super) fn handle(&mut self, request: Request) {
        let Request { command, reply } = request;
        if self.stopping && command.mutates() {
            let _ = reply.send(Err(CommandError::ShuttingDown));
            return;
        }
        let timeout = self.config.query_timeout;
        match command {
            Command::Status => {
                let header = self.status_header();
                let text = self.report(|inputs| report::status(header, inputs));
                let _ = reply.send(Ok(Answer::Text(text)));
            }
            Command::Statistics => {
                let text = self.report(report::statistics);
                let _ = reply.send(Ok(Answer::Text(text)));
            }
            Command::Metrics => {
                let state = self.state.clone();
                let text = self.report(|inputs| metrics::render(&state, inputs));
                let _ = reply.send(Ok(Answer::Text(text)));
            }
            Command::IpsecHaStatus => self.ipsec_ha(None, reply),
            Command::SetIpsecHa { enable, blades } => self.ipsec_ha(Some((enable, blades)), reply),
            Command::Start(unit) => {
                if let Err(e) = self.check_unit(unit) {
                    let _ = reply.send(Err(e));
                    return;
                }
                let c = self.children.get_mut(&unit).expect("checked");
                match (c.active, c.sub) {
                    ("active", _) => {
                        let _ = reply.send(Ok(Answer::Done));
                    }
                    ("activating", "start") => c.start_waiters.push(reply),
                    ("deactivating", _) => {
                        c.start_after_stop = true;
                        c.start_waiters.push(reply);
                    }
                    _ => {
                        // An operator's start clears a failed state first.
                        c.history.clear();
                        self.start(unit, Some(reply));
                    }
                }
            }
            Command::Stop(unit) | Command::Restart(unit) if self.is_remote(unit) => {
                let _ = reply.send(Err(remote_refusal(&self.children[&unit])));
            }
            Command::Stop(unit) => match self.check_unit(unit) {
                Ok(()) => self.stop(unit, Some(reply)),
                Err(e) => {
                    let _ = reply.send(Err(e));
                }
            },
            Command::Restart(unit) => {
                if let Err(e) = self.check_unit(unit) {
                    let _ = reply.send(Err(e));
                    return;
                }
                let c = self.children.get_mut(&unit).expect("checked");
                if c.is_running() {
                    // Stop first: a stop fails the waiters of a start.
                    self.stop(unit, None);
                    let c = self.children.get_mut(&unit).expect("checked");
                    c.start_after_stop = true;
                    c.start_waiters.push(reply);
                } else {
                    c.history.clear();
                    self.start(unit, Some(reply));
                }
            }
            Command::ResetFailed(unit) => {
                if let Some(u) = unit {
                    if let Err(e) = self.check_unit(u) {
                        let _ = reply.send(Err(e));
                        return;
                    }
                }
                let units: Vec<Unit> = self
                    .children
                    .keys()
                    .copied()
                    .filter(|u| unit.is_none_or(|x| x == *u))
                    .collect();
                for u in units {
                    let c = self.children.get_mut(&u).expect("present");
                    c.history.clear();
                    if c.active == "failed" {
                        c.result = "success";
                        self.set_state(u, "inactive", "dead");
                    }
                }
                let _ = reply.send(Ok(Answer::Done));
            }
            Command::Console { instance, command } => {
                let unit = Unit::Instance(instance);
                if let Err(e) = self.check_unit(unit) {
                    let _ = reply.send(Err(e));
                    return;
                }
                let line = command.trim().to_owned();
                if line.is_empty() || line.chars().any(|c| c.is_control()) || line == "quit" {
                    let _ = reply.send(Err(CommandError::InvalidArgument(format!(
                        "{command:?} is not a console command: one line, not empty, not quit"
                    ))));
                    return;
                }
                if self.children[&unit].active != "active" {
                    let _ = reply.send(Err(CommandError::NotRunning(unit)));
                    return;
                }
                tokio::spawn(async move {
                    let answer = match probe::console(instance, &[line.as_str()], timeout).await {
                        Ok(mut a) => {
                            let a = a.remove(0);
                            if a.starts_with("error:") {
                                Err(CommandError::InvalidArgument(format!(
                                    "instance {instance}: {}",
                                    a.trim_end()
                                )))
                            } else {
                                Ok(Answer::Text(a))
                            }
                        }
                        Err(e) => Err(CommandError::Failed(format!("instance {instance}: {e}"))),
                    };
                    let _ = reply.send(answer);
                });
            }
        }
    }

    /// Reads (set None) or switches the IPsec HA switch of the instances
    /// feeding the blades named. The switch is per instance: switching
    /// some of an instance's blades but not all is refused, since it would
    /// switch the others too.
    pub(super) fn ipsec_ha(&mut self, set: Option<(bool, Vec<u32>)>, reply: Reply) {
        let all: Vec<u32> = self
            .children
            .keys()
            .filter_map(|u| match u {
                Unit::Blade(b) => Some(*b),
                _ => None,
            })
            .collect();
        let named: Vec<u32> = match &set {
            Some((_, blades)) if !blades.is_empty() => blades.clone(),
            _ => all.clone(),
        };
        let mut seen = BTreeSet::new();
        for b in &named {
            if !seen.insert(*b) {
                let _ = reply.send(Err(CommandError::InvalidArgument(format!(
                    "blade {b} is listed twice"
                ))));
                return;
            }
            if !all.contains(b) {
                let _ = reply.send(Err(CommandError::InvalidArgument(format!(
                    "no blade {b} (configured: {})",
                    self.known(false)
                ))));
                return;
            }
        }
        // instance -> its blades among those named
        let mut by_instance: BTreeMap<u32, Vec<u32>> = BTreeMap::new();
        let mut orphans = Vec::new();
        for b in &named {
            match self.children[&Unit::Blade(*b)].peers.first() {
                Some(i) => by_instance.entry(*i).or_default().push(*b),
                None => orphans.push(*b),
            }
        }
        if set.is_some() {
            if let Some(b) = orphans.first() {
                let _ = reply.send(Err(CommandError::InvalidArgument(format!(
                    "no instance feeds blade {b}: nothing to switch"
                ))));
                return;
            }
            for (i, blades) in &by_instance {
                let own = &self.children[&Unit::Instance(*i)].peers;
                if own.len() != blades.len() {
                    let _ = reply.send(Err(CommandError::InvalidArgument(format!(
                        "blades {own:?} share instance {i}, whose IPsec HA switch is per instance: name them all"
                    ))));
                    return;
                }
            }
            if let Some((enable, _)) = &set {
                for i in by_instance.keys() {
                    if let Some(c) = self.children.get_mut(&Unit::Instance(*i)) {
                        c.ipsec_ha = Some(*enable);
                    }
                }
            }
        }
        let running: BTreeMap<u32, bool> = by_instance
            .keys()
            .map(|i| (*i, self.children[&Unit::Instance(*i)].active == "active"))
            .collect();
        let timeout = self.config.query_timeout;
        let enable = set.as_ref().map(|(e, _)| *e);
        tokio::spawn(async move {
            let mut tasks = tokio::task::JoinSet::new();
            for (i, blades) in by_instance {
                let up = running[&i];
                tasks.spawn(async move {
                    if !up {
                        return (i, blades, Err(format!("instance {i} is not running")));
                    }
                    let mut commands = Vec::new();
                    if let Some(e) = enable {
                        commands.push(if e {
                            "ipsec ha enable"
                        } else {
                            "ipsec ha disable"
                        });
                    }
                    commands.push("ipsec ha show");
                    let res = match probe::console(i, &commands, timeout).await {
                        Ok(answers) => {
                            report::parse_ha(answers.last().map(String::as_str).unwrap_or(""))
                                .map_err(|e| format!("instance {i}: {e}"))
                                .and_then(|state| match enable {
                                    Some(e) if e != state => Err(format!(
                                        "instance {i} still says {}",
                                        if state { "enabled" } else { "disabled" }
                                    )),
                                    _ => Ok(state),
                                })
                        }
                        Err(e) => Err(format!("instance {i}: {e}")),
                    };
                    (i, blades, res)
                });
            }
            let mut states = BTreeMap::new();
            let mut failures = Vec::new();
            let mut lines = Vec::new();
            while let Some(Ok((_, blades, res))) = tasks.join_next().await {
                for b in blades {
                    match &res {
                        Ok(s) => {
                            states.insert(b, *s);
                            lines.push((
                                b,
                                format!("blade {b}: {}", if *s { "enabled" } else { "disabled" }),
                            ));
                        }
                        Err(e) => {
                            failures.push(b);
                            lines.push((b, format!("blade {b}: failed: {e}")));
                        }
                    }
                }
            }
            lines.sort();
            let answer = if failures.is_empty() {
                Ok(Answer::IpsecHa(states))
            } else {
                let text: Vec<String> = lines.into_iter().map(|(_, l)| l).collect();
                Err(CommandError::PartialFailure(text.join("; ")))
            };
            let _ = reply.send(answer);
        });
    }
}
