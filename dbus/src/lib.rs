//! fpsync's D-Bus names, object paths and interface names (DESIGN.md).
//! Only definitions live here; the interfaces themselves come with the
//! supervisor.

/// The supervisor's well-known name, path and interface.
pub const SUPERVISOR_NAME: &str = "org.fpsync.Supervisor1";
pub const SUPERVISOR_PATH: &str = "/org/fpsync/Supervisor1";
pub const SUPERVISOR_INTERFACE: &str = "org.fpsync.Supervisor1";
/// Where the supervisor's ObjectManager lives.
pub const MANAGER_PATH: &str = "/org/fpsync";

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
    }
}
