//! cmgrd on D-Bus: `org.fpsync.CacheManager1.I<N>` at
//! `/org/fpsync/CacheManager1/<N>`, an adapter that sends console commands
//! to the processor (which owns every answer) and mirrors its SyncState,
//! which the processor publishes when it changes (nothing is polled: an
//! idle cmgrd is not woken for it).
//! Without a bus, cmgrd runs on and says so once.

use crossbeam_channel::Sender;
use fpsync_dbus::{CacheManagerCore, CacheManagerObject};
use std::sync::Arc;
use tracing::{info, warn};

use crate::daemon::SyncState;
use crate::event::Event;

struct Core {
    events: Sender<Event>,
}

impl CacheManagerCore for Core {
    fn console(&self, command: &str) -> Result<String, String> {
        // Replay files are read here (a blocking thread), not by the
        // processor.
        let answer = crate::console::submit(&self.events, command);
        match answer.strip_prefix("error: ") {
            Some(e) => Err(e.trim().to_owned()),
            None => Ok(answer),
        }
    }
}

/// Joins the bus, serves the instance's object and keeps its SyncState
/// equal to what the processor publishes on `state` until the process ends.
pub async fn serve(
    instance: u32,
    netns: String,
    events: Sender<Event>,
    mut state: tokio::sync::watch::Receiver<SyncState>,
) {
    let conn = match fpsync_dbus::connect_child().await {
        Ok(c) => c,
        Err(e) => {
            info!("no D-Bus ({e}): cmgrd runs without its bus name");
            return;
        }
    };
    let core = Arc::new(Core { events });
    let object = CacheManagerObject::new(instance, netns, core.clone());
    if let Err(e) = fpsync_dbus::serve_cache_manager(&conn, object).await {
        warn!(
            "cannot take the bus name {}: {e}",
            fpsync_dbus::cache_manager_name(instance)
        );
        return;
    }
    info!(name = %fpsync_dbus::cache_manager_name(instance), "on D-Bus");
    loop {
        let now = state.borrow_and_update().name();
        if let Err(e) = fpsync_dbus::set_sync_state(&conn, instance, now).await {
            warn!("cannot update SyncState on the bus: {e}");
        }
        if state.changed().await.is_err() {
            return; // the processor is gone
        }
    }
}
