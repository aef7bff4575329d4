//! The systemd notification protocol (`sd_notify(3)`), by hand: one
//! datagram of `KEY=value` lines to the Unix socket `$NOTIFY_SOCKET` names
//! (a path, or an abstract name written with a leading `@`).
//!
//! Why by hand: the protocol is one `sendto` of a text datagram, so
//! linking libsystemd (a C library and its dependencies, for one call)
//! buys nothing, and the `sd-notify` crate would not know the watchdog
//! rules below or our errors; this module is some sixty lines with tests.
//!
//! Invariants:
//! * Without `$NOTIFY_SOCKET` (not started by systemd) nothing is sent and
//!   nothing fails.
//! * The watchdog is on only when `$WATCHDOG_USEC` is a positive number of
//!   microseconds and `$WATCHDOG_PID`, when set, is fpsyncd's own pid (as
//!   `sd_watchdog_enabled(3)` decides); pings go out at half that interval,
//!   from the core's main loop, so a stuck loop stops them and systemd
//!   restarts fpsyncd.
//! * The variables are not passed on to the children (`process::command`):
//!   only fpsyncd speaks for the unit (NotifyAccess=main).
//! * A send that fails is logged by the caller and never stops fpsyncd.

use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::time::{Duration, Instant};

use common::units::quoted_prefix;
use tracing::warn;

/// The environment variables of the protocol.
pub const NOTIFY_SOCKET: &str = "NOTIFY_SOCKET";
pub const WATCHDOG_USEC: &str = "WATCHDOG_USEC";
pub const WATCHDOG_PID: &str = "WATCHDOG_PID";

#[derive(Debug, thiserror::Error)]
pub enum NotifyError {
    #[error("{NOTIFY_SOCKET}={}: not an absolute path or an @abstract name", quoted_prefix(.0))]
    BadSocket(String),
    #[error("{WATCHDOG_USEC}={}: not a positive number of microseconds", quoted_prefix(.0))]
    BadWatchdog(String),
    #[error("cannot reach {NOTIFY_SOCKET} {path}")]
    Send {
        path: String,
        #[source]
        source: std::io::Error,
    },
}

/// The unit's notification socket.
#[derive(Debug)]
pub struct Notifier {
    socket: UnixDatagram,
    addr: SocketAddr,
    path: String,
    watchdog: Option<Duration>,
}

impl Notifier {
    /// From fpsyncd's environment; None when systemd does not listen.
    pub fn from_env() -> Result<Option<Notifier>, NotifyError> {
        let get = |k: &str| std::env::var(k).ok();
        Notifier::from_vars(
            get(NOTIFY_SOCKET).as_deref(),
            get(WATCHDOG_USEC).as_deref(),
            get(WATCHDOG_PID).as_deref(),
            std::process::id(),
        )
    }

    /// From the variables' values (testable without the environment).
    pub fn from_vars(
        socket: Option<&str>,
        watchdog_usec: Option<&str>,
        watchdog_pid: Option<&str>,
        own_pid: u32,
    ) -> Result<Option<Notifier>, NotifyError> {
        let Some(path) = socket.filter(|s| !s.is_empty()) else {
            return Ok(None);
        };
        let addr = if let Some(name) = path.strip_prefix('@') {
            SocketAddr::from_abstract_name(name.as_bytes())
        } else if path.starts_with('/') {
            SocketAddr::from_pathname(path)
        } else {
            return Err(NotifyError::BadSocket(path.to_owned()));
        }
        .map_err(|_| NotifyError::BadSocket(path.to_owned()))?;
        let socket = UnixDatagram::unbound().map_err(|source| NotifyError::Send {
            path: path.to_owned(),
            source,
        })?;
        // Another process's watchdog (WATCHDOG_PID) is not ours to ping.
        let ours = watchdog_pid.is_none_or(|p| p.trim().parse::<u32>() == Ok(own_pid));
        let watchdog = match watchdog_usec.filter(|_| ours) {
            None => None,
            Some(v) => match v.trim().parse::<u64>() {
                Ok(0) | Err(_) => return Err(NotifyError::BadWatchdog(v.to_owned())),
                Ok(us) => Some(Duration::from_micros(us)),
            },
        };
        Ok(Some(Notifier {
            socket,
            addr,
            path: path.to_owned(),
            watchdog,
        }))
    }

    /// How often to send WATCHDOG=1: half the unit's WatchdogSec (as
    /// systemd advises), None when the watchdog is off.
    pub fn ping_interval(&self) -> Option<Duration> {
        self.watchdog
            .map(|w| (w / 2).min(common::units::MAX_DURATION))
    }

    /// Sends one datagram of `KEY=value` lines.
    pub fn send(&self, state: &str) -> Result<(), NotifyError> {
        self.socket
            .send_to_addr(state.as_bytes(), &self.addr)
            .map(|_| ())
            .map_err(|source| NotifyError::Send {
                path: self.path.clone(),
                source,
            })
    }
}

/// What the core tells systemd, and when: READY=1 once every child has
/// been started once (whether or not all are in sync: that can take long,
/// and STATUS= says it), STATUS= whenever the counts change, STOPPING=1
/// when the stop begins, WATCHDOG=1 every [`Notifier::ping_interval`].
#[derive(Debug)]
pub struct Watch {
    notifier: Notifier,
    ready: bool,
    stopping: bool,
    status: String,
    next_ping: Option<Instant>,
}

impl Watch {
    pub fn new(notifier: Notifier) -> Watch {
        let next_ping = notifier.ping_interval().map(|i| Instant::now() + i);
        Watch {
            notifier,
            ready: false,
            stopping: false,
            status: String::new(),
            next_ping,
        }
    }

    fn send(&self, state: &str) {
        if let Err(e) = self.notifier.send(state) {
            warn!(
                "sd_notify {}: {}",
                state.replace('\n', " "),
                common::error_chain(&e)
            );
        }
    }

    /// Called from each turn of the core's loop with the current counts.
    pub fn progress(&mut self, started: bool, stopping: bool, status: String) {
        let mut lines = Vec::new();
        if stopping && !self.stopping {
            self.stopping = true;
            lines.push("STOPPING=1".to_owned());
        }
        if started && !self.ready && !stopping {
            self.ready = true;
            lines.push("READY=1".to_owned());
        }
        let status = if stopping {
            format!("stopping: {status}")
        } else {
            status
        };
        if status != self.status {
            lines.push(format!("STATUS={status}"));
            self.status = status;
        }
        if !lines.is_empty() {
            self.send(&lines.join("\n"));
        }
    }

    /// When the next WATCHDOG=1 is due (None: no watchdog).
    pub fn next_ping(&self) -> Option<Instant> {
        self.next_ping
    }

    /// Sends WATCHDOG=1 when it is due.
    pub fn ping_if_due(&mut self, now: Instant) {
        let (Some(at), Some(interval)) = (self.next_ping, self.notifier.ping_interval()) else {
            return;
        };
        if now >= at {
            self.send("WATCHDOG=1");
            self.next_ping = Some(now + interval);
        }
    }
}

/// The STATUS= text: how many instances are in sync and blades running.
pub fn status_line(synced: usize, instances: usize, running: usize, blades: usize) -> String {
    format!("{synced}/{instances} instances in sync, {running}/{blades} blades running")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_socket_no_notifier() {
        assert!(Notifier::from_vars(None, Some("1000"), None, 1)
            .unwrap()
            .is_none());
        assert!(Notifier::from_vars(Some(""), None, None, 1)
            .unwrap()
            .is_none());
    }

    #[test]
    fn abstract_names_and_paths() {
        let name = format!("fpsync-notify-test-{}", std::process::id());
        let listener = UnixDatagram::bind_addr(&SocketAddr::from_abstract_name(&name).unwrap())
            .expect("abstract socket");
        let n = Notifier::from_vars(Some(&format!("@{name}")), None, None, 1)
            .unwrap()
            .unwrap();
        n.send("READY=1\nSTATUS=x").unwrap();
        let mut buf = [0u8; 64];
        let len = listener.recv(&mut buf).unwrap();
        assert_eq!(&buf[..len], b"READY=1\nSTATUS=x");

        let dir = std::env::temp_dir().join(format!("fpsync-notify-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("notify");
        let listener = UnixDatagram::bind(&path).unwrap();
        let n = Notifier::from_vars(path.to_str(), None, None, 1)
            .unwrap()
            .unwrap();
        n.send("WATCHDOG=1").unwrap();
        let len = listener.recv(&mut buf).unwrap();
        assert_eq!(&buf[..len], b"WATCHDOG=1");
        std::fs::remove_dir_all(&dir).unwrap();

        let e = Notifier::from_vars(Some("relative/x"), None, None, 1).unwrap_err();
        assert!(
            e.to_string().starts_with("NOTIFY_SOCKET=\"relative/x\""),
            "{e}"
        );
        // Nobody listens: an error naming the socket, not a panic.
        let n = Notifier::from_vars(Some("/nonexistent/notify"), None, None, 1)
            .unwrap()
            .unwrap();
        let e = n.send("READY=1").unwrap_err();
        assert!(e.to_string().contains("/nonexistent/notify"), "{e}");
    }

    #[test]
    fn watchdog_rules() {
        let at = |usec: Option<&str>, pid: Option<&str>| {
            Notifier::from_vars(Some("@x"), usec, pid, 42).map(|n| n.unwrap().ping_interval())
        };
        assert_eq!(at(None, None).unwrap(), None);
        assert_eq!(
            at(Some("2000000"), None).unwrap(),
            Some(Duration::from_secs(1))
        );
        assert_eq!(
            at(Some("2000000"), Some("42")).unwrap(),
            Some(Duration::from_secs(1))
        );
        // Another process's watchdog: not ours, and its value not ours to judge.
        assert_eq!(at(Some("2000000"), Some("7")).unwrap(), None);
        assert_eq!(at(Some("bogus"), Some("7")).unwrap(), None);
        for bad in ["0", "-5", "1.5", "99999999999999999999", "x"] {
            let e = at(Some(bad), None).unwrap_err();
            assert!(e.to_string().starts_with("WATCHDOG_USEC="), "{bad}: {e}");
        }
        assert_eq!(
            at(Some("18446744073709551615"), None).unwrap(),
            Some(common::units::MAX_DURATION)
        );
    }

    #[test]
    fn watch_sends_ready_once_then_status_changes_then_stopping() {
        let name = format!("fpsync-watch-test-{}", std::process::id());
        let listener =
            UnixDatagram::bind_addr(&SocketAddr::from_abstract_name(&name).unwrap()).unwrap();
        listener
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        let n = Notifier::from_vars(Some(&format!("@{name}")), Some("20000"), None, 1)
            .unwrap()
            .unwrap();
        let mut w = Watch::new(n);
        let recv = || {
            let mut buf = [0u8; 256];
            let len = listener.recv(&mut buf).unwrap();
            String::from_utf8_lossy(&buf[..len]).into_owned()
        };
        w.progress(false, false, status_line(0, 2, 1, 2));
        assert_eq!(recv(), "STATUS=0/2 instances in sync, 1/2 blades running");
        w.progress(false, false, status_line(0, 2, 1, 2));
        w.progress(true, false, status_line(0, 2, 2, 2));
        assert_eq!(
            recv(),
            "READY=1\nSTATUS=0/2 instances in sync, 2/2 blades running"
        );
        w.progress(true, false, status_line(2, 2, 2, 2));
        assert_eq!(recv(), "STATUS=2/2 instances in sync, 2/2 blades running");
        let due = w.next_ping().expect("a watchdog");
        w.ping_if_due(due - Duration::from_millis(1));
        w.ping_if_due(due);
        assert_eq!(recv(), "WATCHDOG=1");
        assert_eq!(w.next_ping(), Some(due + Duration::from_millis(10)));
        w.progress(true, true, status_line(1, 2, 2, 2));
        assert_eq!(
            recv(),
            "STOPPING=1\nSTATUS=stopping: 1/2 instances in sync, 2/2 blades running"
        );
        // Nothing else was sent (READY=1 once).
        listener.set_nonblocking(true).unwrap();
        assert!(listener.recv(&mut [0u8; 16]).is_err());
    }

    #[test]
    fn status_lines() {
        assert_eq!(
            status_line(3, 4, 4, 4),
            "3/4 instances in sync, 4/4 blades running"
        );
    }
}
