//! Logging set-up shared by every fpsync daemon (fpd, cmgrd, fpsyncd).
//!
//! Invariants: logs go to the systemd journal when its socket exists, with
//! `SYSLOG_IDENTIFIER` set to the given identifier and span and event fields
//! unprefixed (a `blade` field becomes `BLADE`, so `journalctl BLADE=1`
//! works); otherwise, or if the journal cannot be reached, to stderr. The
//! level comes from `FPSYNC_LOG` (EnvFilter syntax, default `info`).
//! Calling [`init`] again does nothing.
//!
//! Because fields are unprefixed, no field may be named after a journal
//! field (`message`, `priority`, `code_file`, ...).

use std::io::IsTerminal;
use std::path::Path;

use tracing_subscriber::filter::{EnvFilter, LevelFilter};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

/// The variable that sets the log filter.
pub const ENV_VAR: &str = "FPSYNC_LOG";

/// Set (to anything) to log to stderr even when a journal runs.
pub const NO_JOURNAL: &str = "FPSYNC_NO_JOURNAL";

const JOURNAL_SOCKET: &str = "/run/systemd/journal/socket";

/// Whether logs will go to the journal (its socket exists and
/// FPSYNC_NO_JOURNAL is not set).
pub fn journal_available() -> bool {
    Path::new(JOURNAL_SOCKET).exists() && std::env::var_os(NO_JOURNAL).is_none()
}

/// Installs the global subscriber: journald when present, else stderr.
pub fn init(identifier: &str) {
    let filter = EnvFilter::builder()
        .with_default_directive(LevelFilter::INFO.into())
        .with_env_var(ENV_VAR)
        .from_env_lossy();
    // FPSYNC_NO_JOURNAL keeps logs on stderr (tests read them from there).
    let journald = if journal_available() {
        tracing_journald::layer().ok().map(|layer| {
            layer
                .with_syslog_identifier(identifier.to_owned())
                .with_field_prefix(None)
        })
    } else {
        None
    };
    let result = match journald {
        Some(layer) => tracing_subscriber::registry()
            .with(filter)
            .with(layer)
            .try_init(),
        None => tracing_subscriber::registry()
            .with(filter)
            .with(
                tracing_subscriber::fmt::layer()
                    .with_writer(std::io::stderr)
                    .with_ansi(std::io::stderr().is_terminal()),
            )
            .try_init(),
    };
    // Already initialised (tests, or a second call): keep the first.
    drop(result);
}
