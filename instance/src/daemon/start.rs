//! Starting cmgrd: the namespace entered, the sockets opened and
//! subscribed before the initial dump (so no change falls between the dump
//! and the notifications), the listener, console, bus and blade tasks
//! started, then the processor's loop on this thread until shutdown.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::Sender;
use tokio::sync::mpsc;
use tracing::{error, info, info_span, warn};

use super::listener::{listen, open_audit};
use super::{BladeSession, Config, DaemonError, Processor, Proto, SyncState};
use crate::blade::BladeTask;
use crate::event::Event;
use crate::netlink::CmdSockets;
use crate::stats::QueueStats;

/// Runs cmgrd until SIGTERM/SIGINT. `ready` is called once the initial
/// dump is done and the console answers.
pub fn run(config: Config, ready: impl FnOnce()) -> Result<(), DaemonError> {
    // Audit records reach only the init namespace's audit socket, and a
    // socket keeps the namespace it was made in: the listener is opened
    // here, before --netns is entered, and its thread goes back to this
    // namespace to reopen it after an overrun.
    let audit = open_audit(&config);
    if let Some(ns) = &config.netns {
        crate::netns::enter(ns).map_err(DaemonError::Netns)?;
    }
    let span = info_span!(
        "cmgrd",
        instance = config.instance_id(),
        netns = config.netns.as_deref().unwrap_or("")
    );
    let _enter = span.enter();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .thread_name("cmgrd-blades")
        .build()
        .map_err(DaemonError::Runtime)?;

    let (net_tx, net_rx) = crossbeam_channel::bounded::<Event>(4096);
    let (ctl_tx, ctl_rx) = crossbeam_channel::unbounded::<Event>();

    // Subscribe before dumping: see the module's invariants.
    for (proto, name) in [
        (Proto::Route, "cmgrd-listener"),
        (Proto::Xfrm, "cmgrd-xfrm-listener"),
        (Proto::Netfilter, "cmgrd-ct-listener"),
    ] {
        let listener = proto
            .open(config.netlink_buffer)
            .map_err(DaemonError::Netlink)?;
        let nl_buffer = config.netlink_buffer;
        let listener_span = span.clone();
        let net_tx = net_tx.clone();
        std::thread::Builder::new()
            .name(name.into())
            .spawn(move || {
                let _e = listener_span.enter();
                listen(proto, listener, nl_buffer, net_tx)
            })
            .map_err(DaemonError::Runtime)?;
    }
    let audit_listening = audit.is_some();
    if let Some((listener, home)) = audit {
        let nl_buffer = config.netlink_buffer;
        let listener_span = span.clone();
        let net_tx = net_tx.clone();
        std::thread::Builder::new()
            .name("cmgrd-audit-listener".into())
            .spawn(move || {
                let _e = listener_span.enter();
                if let Some(home) = home {
                    if let Err(e) = crate::netns::enter_fd(&home) {
                        let _ = net_tx.send(Event::AuditFailed(format!(
                            "cannot return to the init namespace: {e}"
                        )));
                        return;
                    }
                }
                listen(Proto::Audit, listener, nl_buffer, net_tx)
            })
            .map_err(DaemonError::Runtime)?;
    }
    drop(net_tx);

    let cmd = CmdSockets::open().map_err(DaemonError::Netlink)?;
    let reverse = crate::hitflags::Reverse::spawn().map_err(DaemonError::Netlink)?;
    let mut blades = Vec::new();
    for (index, (blade, endpoint)) in config.blades.iter().enumerate() {
        let (tx, rx) = mpsc::unbounded_channel();
        let stats = Arc::new(QueueStats::default());
        let task = BladeTask {
            index,
            blade: *blade,
            endpoint: endpoint.clone(),
            netns: config.netns.clone(),
            instance: config.instance_id(),
            name: config.identifier(),
            socket_buffer: config.socket_buffer,
            election_id: config.election_id,
            keepalive: config.keepalive,
            peer_timeout: config.peer_timeout,
            stats: stats.clone(),
            reverse: reverse.clone(),
        };
        let events = ctl_tx.clone();
        let notify: crate::blade::Notify =
            std::sync::Arc::new(move |e| events.send(Event::Blade(e)).is_ok());
        let blade_span = info_span!("blade", blade = *blade);
        runtime.spawn(tracing::Instrument::instrument(
            task.run(rx, notify),
            blade_span,
        ));
        blades.push(BladeSession::new(*blade, endpoint.clone(), stats, tx));
    }

    // Removes the console's socket file when dropped (if still ours).
    let _console = crate::console::spawn(&config.console(), ctl_tx.clone()).map_err(|source| {
        DaemonError::Console {
            path: config.console(),
            source,
        }
    })?;
    spawn_signal_watcher(&runtime, ctl_tx.clone());
    let (state_tx, state_rx) = tokio::sync::watch::channel(SyncState::InitialDump);
    runtime.spawn(tracing::Instrument::instrument(
        crate::bus::serve(
            config.instance_id(),
            config.netns.clone().unwrap_or_default(),
            ctl_tx.clone(),
            state_rx,
        ),
        span.clone(),
    ));

    let mut p = Processor::new(
        config,
        Box::new(cmd),
        blades,
        reverse.stats.clone(),
        audit_listening,
    );
    p.xt_watch.status = match crate::linux::legacy_tables::AuditStatus::open() {
        Ok(s) => Some(s),
        Err(e) => {
            warn!("cannot open an audit socket to read the audit status: {e}");
            None
        }
    };
    p.watch_xtables(false);
    let t0 = Instant::now();
    p.full_resync().map_err(DaemonError::Dump)?;
    p.state = SyncState::Synced;
    p.published = Some(state_tx);
    p.publish_state();
    info!(
        objects = p.cache.total(),
        elapsed_ms = t0.elapsed().as_millis() as u64,
        "initial dump done"
    );
    ready();
    p.run_loop(net_rx, ctl_rx);
    drop(p); // closes the blades' queues: their tasks end
    runtime.shutdown_timeout(Duration::from_secs(1));
    info!("stopped");
    Ok(())
}

pub(super) fn spawn_signal_watcher(runtime: &tokio::runtime::Runtime, tx: Sender<Event>) {
    runtime.spawn(async move {
        use tokio::signal::unix::{signal, SignalKind};
        let (Ok(mut term), Ok(mut int)) = (
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
        ) else {
            error!("cannot watch signals");
            return;
        };
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
        info!("signal received, stopping");
        let _ = tx.send(Event::Shutdown);
    });
}
