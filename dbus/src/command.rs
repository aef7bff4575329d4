//! The typed commands the D-Bus adapters send to the supervisor's core, and
//! its answers.

use std::collections::BTreeMap;
use std::fmt;

use tokio::sync::oneshot;

/// One supervised child: a cache manager instance or a fast path blade.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Unit {
    Instance(u32),
    Blade(u32),
}

impl Unit {
    pub fn kind(self) -> &'static str {
        match self {
            Unit::Instance(_) => "instance",
            Unit::Blade(_) => "blade",
        }
    }

    pub fn id(self) -> u32 {
        match self {
            Unit::Instance(id) | Unit::Blade(id) => id,
        }
    }
}

impl fmt::Display for Unit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.kind(), self.id())
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// Lifecycle and sync state of every child, with each blade's table
    /// sizes (JSON).
    Status,
    /// Every blade's counters and their sums, every instance's queues (JSON).
    Statistics,
    /// Every counter, in the OpenMetrics text format.
    Metrics,
    /// Each blade's IPsec HA switch (its instance's).
    IpsecHaStatus,
    /// Switches IPsec HA on the instances that feed `blades` (all if empty).
    SetIpsecHa {
        enable: bool,
        blades: Vec<u32>,
    },
    Start(Unit),
    Stop(Unit),
    Restart(Unit),
    /// Clears a failed state (all children when None).
    ResetFailed(Option<Unit>),
    /// One line for an instance's console.
    Console {
        instance: u32,
        command: String,
    },
}

impl Command {
    /// Whether the command changes anything (root only).
    pub fn mutates(&self) -> bool {
        !matches!(
            self,
            Command::Status | Command::Statistics | Command::Metrics | Command::IpsecHaStatus
        )
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    Done,
    Text(String),
    /// Blade -> IPsec HA enabled.
    IpsecHa(BTreeMap<u32, bool>),
}

/// Why the core refused or failed a command; each maps to a named D-Bus
/// error.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CommandError {
    #[error("no instance {id} (configured: {known})")]
    NoSuchInstance { id: u32, known: String },
    #[error("no blade {id} (configured: {known})")]
    NoSuchBlade { id: u32, known: String },
    #[error("{0} is not running")]
    NotRunning(Unit),
    #[error("{0}")]
    InvalidArgument(String),
    #[error("partial failure: {0}")]
    PartialFailure(String),
    #[error("{unit} failed to start: {reason}")]
    StartFailed { unit: Unit, reason: String },
    #[error("{0}")]
    Failed(String),
    #[error("the supervisor is stopping")]
    ShuttingDown,
}

/// A command on its way to the core, with where to send the answer.
#[derive(Debug)]
pub struct Request {
    pub command: Command,
    pub reply: oneshot::Sender<Result<Answer, CommandError>>,
}
