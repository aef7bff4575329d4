//! cmgrd on D-Bus: `org.fpsync.CacheManager1.I<N>` at
//! `/org/fpsync/CacheManager1/<N>`, an adapter that sends console commands
//! to the processor (which owns every answer) and mirrors its SyncState.
//! Without a bus, cmgrd runs on and says so once.

use std::sync::Arc;
use std::time::Duration;

use crossbeam_channel::Sender;
use fpsync_dbus::{CacheManagerCore, CacheManagerObject};
use tracing::{info, warn};

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
/// current (every 250 ms) until the process ends.
pub async fn serve(instance: u32, netns: String, events: Sender<Event>) {
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
        let c = core.clone();
        let state = tokio::task::spawn_blocking(move || c.console("show sync --json"))
            .await
            .ok()
            .and_then(Result::ok)
            .and_then(|s| serde_json::from_str::<serde_json::Value>(&s).ok())
            .and_then(|v| v["state"].as_str().map(str::to_owned));
        if let Some(state) = state {
            if let Err(e) = fpsync_dbus::set_sync_state(&conn, instance, &state).await {
                warn!("cannot update SyncState on the bus: {e}");
            }
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}
