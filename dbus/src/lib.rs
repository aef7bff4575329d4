//! fpsync's D-Bus surface (DESIGN.md "D-Bus"): well-known names, object
//! paths, named errors, the supervisor's interfaces as thin adapters, and
//! the client proxies.
//!
//! Invariants: no logic lives here. An interface method checks the caller
//! (mutating methods are root-only, on top of the bus policy), parses its
//! arguments into a typed [`Command`], sends it to the supervisor's core and
//! maps the [`Answer`] or [`CommandError`] back; the core never sees D-Bus
//! types and this crate never sees processes. `Status()` and
//! `Statistics()` reply with the text the core last built
//! ([`AnswerTable`]) when it has one, without a round trip to the core.

mod command;
mod daemons;
mod error;
mod objects;
mod proxy;

pub use command::{Answer, Command, CommandError, Request, Unit};
pub use daemons::{
    connect_child, serve_cache_manager, serve_fast_path, set_sync_state, CacheManagerCore,
    CacheManagerObject, FastPathCore, FastPathObject,
};
pub use error::Error;
pub use objects::{
    child_path, AnswerTable, BladeObject, ChildProps, InstanceObject, Prebuilt, Publisher,
    ResourceTable, Resources, SupervisorObject, BLADE_INTERFACE, INSTANCE_INTERFACE,
};
pub use proxy::{BladeProxy, InstanceProxy, SupervisorProxy};

/// The supervisor's well-known name, path and interface.
pub const SUPERVISOR_NAME: &str = "org.fpsync.Supervisor1";
pub const SUPERVISOR_PATH: &str = "/org/fpsync/Supervisor1";
pub const SUPERVISOR_INTERFACE: &str = "org.fpsync.Supervisor1";
/// Where the supervisor's ObjectManager lives.
pub const MANAGER_PATH: &str = "/org/fpsync";
/// The prefix of the supervisor's named errors.
pub const ERROR_PREFIX: &str = "org.fpsync.Supervisor1.Error";

pub const CACHE_MANAGER_INTERFACE: &str = "org.fpsync.CacheManager1";
pub const FAST_PATH_INTERFACE: &str = "org.fpsync.FastPath1";

/// The bus name of cache manager instance `id`.
pub fn cache_manager_name(id: u32) -> String {
    format!("org.fpsync.CacheManager1.I{id}")
}

pub fn cache_manager_path(id: u32) -> String {
    format!("/org/fpsync/CacheManager1/{id}")
}

/// The bus name of fast path blade `blade`.
pub fn fast_path_name(blade: u32) -> String {
    format!("org.fpsync.FastPath1.B{blade}")
}

pub fn fast_path_path(blade: u32) -> String {
    format!("/org/fpsync/FastPath1/{blade}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_the_design() {
        assert_eq!(cache_manager_name(3), "org.fpsync.CacheManager1.I3");
        assert_eq!(cache_manager_path(3), "/org/fpsync/CacheManager1/3");
        assert_eq!(fast_path_name(2), "org.fpsync.FastPath1.B2");
        assert_eq!(fast_path_path(2), "/org/fpsync/FastPath1/2");
        assert_eq!(
            child_path(Unit::Instance(4)),
            "/org/fpsync/Supervisor1/instance/4"
        );
        assert_eq!(
            child_path(Unit::Blade(2)),
            "/org/fpsync/Supervisor1/blade/2"
        );
    }
}
