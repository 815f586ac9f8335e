//! The library's error type: one variant per kind of failure, each naming what failed.

use std::path::PathBuf;

pub type Result<T> = std::result::Result<T, Error>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The bundle or its config.json is unusable; `field` names the offending part. The words
    /// "invalid configuration" are runc's, which managers look for.
    #[error("invalid configuration: {field}: {reason}")]
    Config { field: String, reason: String },

    #[error("container id {0:?} is invalid: {1}")]
    InvalidId(String, &'static str),

    #[error("container {0:?} does not exist")]
    NotFound(String),

    #[error("container {0:?} already exists")]
    Exists(String),

    /// runc's words, for the verbs that need a live container (`events`).
    #[error("container with id {0} is not running")]
    NotRunning(String),

    #[error("container {id:?} is {status}: {action}")]
    WrongState {
        id: String,
        status: String,
        action: &'static str,
    },

    /// A system call or file operation failed; `step` says what berth was doing.
    #[error("{step}: {path}: {source}")]
    Io {
        step: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },

    #[error("{step}: {source}")]
    Sys { step: String, source: nix::Error },

    #[error("cgroup: {0}")]
    Cgroup(String),

    #[error("hook {kind} {path:?} failed: {reason}")]
    Hook {
        kind: &'static str,
        path: PathBuf,
        reason: String,
    },

    /// An error reported by the container's init or the stage process.
    #[error("{0}")]
    Child(String),

    #[error("sync with the container process: {0}")]
    Protocol(String),

    #[error("{0}")]
    Other(String),
}

impl Error {
    pub fn config(field: impl Into<String>, reason: impl Into<String>) -> Self {
        Error::Config {
            field: field.into(),
            reason: reason.into(),
        }
    }

    pub fn io(step: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            step,
            path: path.into(),
            source,
        }
    }

    pub fn sys(step: impl Into<String>, source: nix::Error) -> Self {
        Error::Sys {
            step: step.into(),
            source,
        }
    }
}

/// Attaches a step name to a nix result.
pub trait SysContext<T> {
    fn step(self, step: &str) -> Result<T>;
    fn with_step<F: FnOnce() -> String>(self, f: F) -> Result<T>;
}

impl<T> SysContext<T> for nix::Result<T> {
    fn step(self, step: &str) -> Result<T> {
        self.map_err(|e| Error::sys(step, e))
    }
    fn with_step<F: FnOnce() -> String>(self, f: F) -> Result<T> {
        self.map_err(|e| Error::sys(f(), e))
    }
}
