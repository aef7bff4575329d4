//! The supervisor's named D-Bus errors (`org.fpsync.Supervisor1.Error.*`).

use crate::command::CommandError;

#[derive(Debug, zbus::DBusError)]
#[zbus(prefix = "org.fpsync.Supervisor1.Error")]
pub enum Error {
    #[zbus(error)]
    ZBus(zbus::Error),
    NoSuchInstance(String),
    NoSuchBlade(String),
    NotRunning(String),
    InvalidArgument(String),
    PartialFailure(String),
    StartFailed(String),
    Failed(String),
    ShuttingDown(String),
    /// Raised by the supervisor itself for a non-root caller of a mutating
    /// method on a bus without the shipped policy (the policy answers
    /// org.freedesktop.DBus.Error.AccessDenied before that).
    AccessDenied(String),
}

impl From<CommandError> for Error {
    fn from(e: CommandError) -> Self {
        let msg = e.to_string();
        match e {
            CommandError::NoSuchInstance { .. } => Error::NoSuchInstance(msg),
            CommandError::NoSuchBlade { .. } => Error::NoSuchBlade(msg),
            CommandError::NotRunning(_) => Error::NotRunning(msg),
            CommandError::InvalidArgument(_) => Error::InvalidArgument(msg),
            CommandError::PartialFailure(_) => Error::PartialFailure(msg),
            CommandError::StartFailed { .. } => Error::StartFailed(msg),
            CommandError::Failed(_) => Error::Failed(msg),
            CommandError::ShuttingDown => Error::ShuttingDown(msg),
        }
    }
}
