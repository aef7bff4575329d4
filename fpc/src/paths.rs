//! The well-known places of fpsync's local sockets, written once: a blade's
//! FPC socket under the run directory and a cache manager's console (the
//! seed's `/tmp/.cmgrd<id>`). Every program that binds or dials one of
//! them takes its path from here.

use std::path::{Path, PathBuf};

/// Where fpsyncd and a local fpd keep their sockets unless told otherwise.
pub const DEFAULT_RUN_DIR: &str = "/run/fpsync";

/// Blade `blade`'s FPC socket in `run_dir`: `RUN_DIR/fpd<blade>.sock`.
pub fn fpd_socket(run_dir: &Path, blade: u32) -> PathBuf {
    run_dir.join(format!("fpd{blade}.sock"))
}

/// The console of instance `instance` (`/tmp/.cmgrd<id>`, or
/// `/tmp/.cmgrd` for a cache manager started without an instance id).
pub fn console_path(instance: Option<u32>) -> PathBuf {
    match instance {
        Some(i) => PathBuf::from(format!("/tmp/.cmgrd{i}")),
        None => PathBuf::from("/tmp/.cmgrd"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths() {
        assert_eq!(
            fpd_socket(Path::new(DEFAULT_RUN_DIR), 3),
            PathBuf::from("/run/fpsync/fpd3.sock")
        );
        assert_eq!(console_path(Some(7)), PathBuf::from("/tmp/.cmgrd7"));
        assert_eq!(console_path(None), PathBuf::from("/tmp/.cmgrd"));
    }
}
