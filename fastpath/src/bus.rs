//! fpd on D-Bus: `org.fpsync.FastPath1.B<B>` at `/org/fpsync/FastPath1/<B>`,
//! an adapter that answers from fpd's own FPC query socket (the same view
//! every other reader gets). Without a bus, fpd runs on and says so once.

use std::sync::Arc;
use std::time::Duration;

use fpsync_dbus::{FastPathCore, FastPathObject};
use tracing::{info, warn};

use fpc::{Endpoint, QueryClient};

struct Core {
    endpoint: Endpoint,
}

impl Core {
    fn client(&self) -> Result<QueryClient, String> {
        QueryClient::connect(&self.endpoint, "fpd-dbus", Duration::from_secs(2))
            .map_err(|e| e.to_string())
    }
}

impl FastPathCore for Core {
    fn counters(&self) -> Result<String, String> {
        let counters = self.client()?.counters().map_err(|e| e.to_string())?;
        let map: serde_json::Map<String, serde_json::Value> =
            counters.into_iter().map(|(k, v)| (k, v.into())).collect();
        Ok(serde_json::Value::Object(map).to_string())
    }

    fn statistics(&self) -> Result<String, String> {
        let stats = self.client()?.stats().map_err(|e| e.to_string())?;
        let list: Vec<serde_json::Value> = stats
            .into_iter()
            .map(|s| {
                let counters: serde_json::Map<String, serde_json::Value> =
                    s.counters.into_iter().map(|(k, v)| (k, v.into())).collect();
                serde_json::json!({"ifindex": s.ifindex, "name": s.name, "counters": counters})
            })
            .collect();
        Ok(serde_json::Value::Array(list).to_string())
    }
}

/// Joins the bus and serves blade `blade`'s object until the process ends.
pub async fn serve(blade: u32, endpoint: Endpoint) {
    let conn = match fpsync_dbus::connect_child().await {
        Ok(c) => c,
        Err(e) => {
            info!("no D-Bus ({e}): fpd runs without its bus name");
            return;
        }
    };
    let object = FastPathObject::new(blade, Arc::new(Core { endpoint }));
    match fpsync_dbus::serve_fast_path(&conn, object).await {
        Ok(()) => {
            info!(name = %fpsync_dbus::fast_path_name(blade), "on D-Bus");
            // The connection lives as long as this task.
            std::future::pending::<()>().await;
        }
        Err(e) => warn!(
            "cannot take the bus name {}: {e}",
            fpsync_dbus::fast_path_name(blade)
        ),
    }
}
