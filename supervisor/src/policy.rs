//! The restart policy, with systemd's semantics: `Restart=on-failure`,
//! `RestartSec` doubled at each restart inside the start-limit window up to
//! `RestartMaxDelaySec`, and the start limit (`StartLimitBurst` starts per
//! `StartLimitIntervalSec`; the next start is refused and the child is
//! failed with `start-limit-hit`). Pure: time is an argument.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RestartPolicy {
    pub restart_sec: Duration,
    pub max_delay: Duration,
    pub burst: u32,
    pub interval: Duration,
}

/// How a child ended, as systemd's `Result` names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Success,
    ExitCode(i32),
    Signal(i32),
    CoreDump(i32),
    Timeout,
}

impl Outcome {
    /// From a wait status.
    pub fn from_status(status: std::process::ExitStatus) -> Outcome {
        use std::os::unix::process::ExitStatusExt;
        match (status.code(), status.signal()) {
            (Some(0), _) => Outcome::Success,
            (Some(c), _) => Outcome::ExitCode(c),
            (None, Some(s)) if status.core_dumped() => Outcome::CoreDump(s),
            // systemd counts these as a clean stop.
            (None, Some(libc::SIGTERM | libc::SIGINT | libc::SIGHUP | libc::SIGPIPE)) => {
                Outcome::Success
            }
            (None, Some(s)) => Outcome::Signal(s),
            (None, None) => Outcome::ExitCode(-1),
        }
    }

    /// `Restart=on-failure`: everything but a clean exit.
    pub fn is_failure(self) -> bool {
        self != Outcome::Success
    }

    /// systemd's Result word.
    pub fn result(self) -> &'static str {
        match self {
            Outcome::Success => "success",
            Outcome::ExitCode(_) => "exit-code",
            Outcome::Signal(_) => "signal",
            Outcome::CoreDump(_) => "core-dump",
            Outcome::Timeout => "timeout",
        }
    }

    pub fn describe(self) -> String {
        match self {
            Outcome::Success => "exited cleanly".into(),
            Outcome::ExitCode(c) => format!("exited with status {c}"),
            Outcome::Signal(s) => format!("killed by signal {s}"),
            Outcome::CoreDump(s) => format!("dumped core (signal {s})"),
            Outcome::Timeout => "timed out".into(),
        }
    }
}

/// The starts of one child inside the start-limit window.
#[derive(Debug, Clone, Default)]
pub struct StartHistory {
    starts: VecDeque<Instant>,
}

impl StartHistory {
    pub fn clear(&mut self) {
        self.starts.clear();
    }
}

impl RestartPolicy {
    fn prune(&self, h: &mut StartHistory, now: Instant) {
        while let Some(first) = h.starts.front() {
            if now.duration_since(*first) >= self.interval {
                h.starts.pop_front();
            } else {
                break;
            }
        }
    }

    /// Whether a start at `now` stays within the start limit; if so it is
    /// recorded. A burst of 0 disables the limit, as in systemd.
    pub fn admit(&self, h: &mut StartHistory, now: Instant) -> bool {
        self.prune(h, now);
        if self.burst > 0 && h.starts.len() >= self.burst as usize {
            return false;
        }
        h.starts.push_back(now);
        true
    }

    /// How long to wait before restarting a child that failed at `now`:
    /// RestartSec, doubled for each earlier start inside the window.
    pub fn delay(&self, h: &mut StartHistory, now: Instant) -> Duration {
        self.prune(h, now);
        let earlier = h.starts.len().saturating_sub(1).min(30) as u32;
        self.restart_sec
            .saturating_mul(1u32 << earlier)
            .min(self.max_delay.max(self.restart_sec))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> RestartPolicy {
        RestartPolicy {
            restart_sec: Duration::from_millis(100),
            max_delay: Duration::from_millis(500),
            burst: 5,
            interval: Duration::from_secs(10),
        }
    }

    #[test]
    fn five_starts_then_the_limit() {
        let p = policy();
        let mut h = StartHistory::default();
        let t0 = Instant::now();
        for i in 0..5 {
            assert!(p.admit(&mut h, t0 + Duration::from_secs(i)), "start {i}");
        }
        assert!(!p.admit(&mut h, t0 + Duration::from_secs(5)));
        // The window slides: the first start is 10 s old.
        assert!(p.admit(&mut h, t0 + Duration::from_secs(10)));
    }

    #[test]
    fn backoff_doubles_up_to_the_cap_and_resets_with_the_window() {
        let p = policy();
        let mut h = StartHistory::default();
        let t0 = Instant::now();
        let mut delays = Vec::new();
        for i in 0..5 {
            let t = t0 + Duration::from_millis(i * 10);
            p.admit(&mut h, t);
            delays.push(p.delay(&mut h, t).as_millis());
        }
        assert_eq!(delays, vec![100, 200, 400, 500, 500]);
        assert_eq!(
            p.delay(&mut h, t0 + Duration::from_secs(30)).as_millis(),
            100
        );
    }

    #[test]
    fn clean_exits_are_not_failures() {
        use std::os::unix::process::ExitStatusExt;
        let st = std::process::ExitStatus::from_raw;
        assert_eq!(Outcome::from_status(st(0)), Outcome::Success);
        assert_eq!(Outcome::from_status(st(libc::SIGTERM)), Outcome::Success);
        assert_eq!(Outcome::from_status(st(libc::SIGKILL)), Outcome::Signal(9));
        assert_eq!(Outcome::from_status(st(1 << 8)), Outcome::ExitCode(1));
        assert!(Outcome::Signal(9).is_failure());
    }
}
