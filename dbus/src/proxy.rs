//! Client proxies for the `fpsync` CLI and tests.

use std::collections::HashMap;

#[zbus::proxy(
    interface = "org.fpsync.Supervisor1",
    default_service = "org.fpsync.Supervisor1",
    default_path = "/org/fpsync/Supervisor1"
)]
pub trait Supervisor {
    fn status(&self) -> zbus::Result<String>;
    fn statistics(&self) -> zbus::Result<String>;
    fn metrics(&self) -> zbus::Result<String>;
    fn ipsec_ha_status(&self) -> zbus::Result<HashMap<u32, bool>>;
    fn set_ipsec_ha(&self, enable: bool, blades: &[u32]) -> zbus::Result<HashMap<u32, bool>>;
    fn start_instance(&self, id: u32) -> zbus::Result<()>;
    fn stop_instance(&self, id: u32) -> zbus::Result<()>;
    fn restart_instance(&self, id: u32) -> zbus::Result<()>;
    fn start_blade(&self, id: u32) -> zbus::Result<()>;
    fn stop_blade(&self, id: u32) -> zbus::Result<()>;
    fn restart_blade(&self, id: u32) -> zbus::Result<()>;
    fn reset_failed(&self) -> zbus::Result<()>;
    fn console(&self, instance: u32, command: &str) -> zbus::Result<String>;
    #[zbus(property)]
    fn instances(&self) -> zbus::Result<Vec<u32>>;
    #[zbus(property)]
    fn blades(&self) -> zbus::Result<Vec<u32>>;
    #[zbus(property)]
    fn state(&self) -> zbus::Result<String>;
    #[zbus(property)]
    fn version(&self) -> zbus::Result<String>;
    #[zbus(property)]
    fn main_pid(&self) -> zbus::Result<u32>;
}

#[zbus::proxy(
    interface = "org.fpsync.Supervisor1.Instance",
    default_service = "org.fpsync.Supervisor1"
)]
pub trait Instance {
    #[zbus(property)]
    fn active_state(&self) -> zbus::Result<String>;
    #[zbus(property)]
    fn sync_state(&self) -> zbus::Result<String>;
    #[zbus(property, name = "MainPID")]
    fn main_pid(&self) -> zbus::Result<u32>;
}

#[zbus::proxy(
    interface = "org.fpsync.Supervisor1.Blade",
    default_service = "org.fpsync.Supervisor1"
)]
pub trait Blade {
    #[zbus(property)]
    fn active_state(&self) -> zbus::Result<String>;
    #[zbus(property, name = "MainPID")]
    fn main_pid(&self) -> zbus::Result<u32>;
}
