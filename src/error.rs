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

    /// Another berth process held the container's lock for the whole wait.
    #[error("container {id:?} is busy: {holder} has held its lock for over {waited:?}")]
    Busy {
        id: String,
        holder: String,
        waited: std::time::Duration,
    },

    /// state.json cannot be read as a record: `delete --force` still removes the container.
    #[error("state file {path} is unusable: {reason} (`delete --force` removes the container)")]
    CorruptState { path: PathBuf, reason: String },

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

    /// An error reported by the container's init, the stage process or an exec'd process,
    /// with the step, field and errno it had there.
    #[error("{0}")]
    Child(Box<ChildError>),

    /// The container's process ended before it reported (it died, or was killed).
    #[error("{0}")]
    ChildGone(String),

    /// A named step failed; `source` is what went wrong in it.
    #[error("{step}: {source}")]
    InStep {
        step: &'static str,
        source: Box<Error>,
    },

    /// What went wrong while applying one config field (`mounts[3] (/proc)`).
    #[error("{field}: {source}")]
    InField { field: String, source: Box<Error> },

    /// A fault injected at a named point (test builds with the `fault-injection` feature).
    #[error("injected fault at {0:?}")]
    Fault(String),

    #[error("sync with the container process: {0}")]
    Protocol(String),

    #[error("{0}")]
    Other(String),
}

impl Error {
    /// The config field an error names, looking through steps.
    pub fn field(&self) -> Option<&str> {
        match self {
            Error::Config { field, .. } => Some(field),
            Error::InField { field, source } => source.field().or(Some(field)),
            Error::InStep { source, .. } => source.field(),
            Error::Child(c) => c.field.as_deref(),
            _ => None,
        }
    }

    /// The errno behind an error, looking through steps.
    pub fn errno(&self) -> Option<i32> {
        match self {
            Error::Io { source, .. } => source.raw_os_error(),
            Error::Sys { source, .. } => Some(*source as i32),
            Error::InStep { source, .. } | Error::InField { source, .. } => source.errno(),
            Error::Child(c) => c.errno,
            _ => None,
        }
    }

    /// The innermost operation that failed (a system call or file operation), if any.
    pub fn call(&self) -> Option<String> {
        match self {
            Error::Io { step, path, .. } => Some(format!("{step} {}", path.display())),
            Error::Sys { step, .. } => Some(step.clone()),
            Error::InStep { source, .. } | Error::InField { source, .. } => source.call(),
            Error::Child(c) => c.call.clone(),
            _ => None,
        }
    }

    /// The outermost named step, if the error went through one.
    pub fn step_name(&self) -> Option<&str> {
        match self {
            Error::InStep { step, .. } => Some(step),
            Error::Child(c) => Some(&c.step),
            _ => None,
        }
    }

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

/// Every named system call is a fault point too: the fault comes after the call succeeded, so
/// the undo of what it made is exercised as well.
impl<T> SysContext<T> for nix::Result<T> {
    fn step(self, step: &str) -> Result<T> {
        let v = self.map_err(|e| Error::sys(step, e))?;
        crate::fault::point(step)?;
        Ok(v)
    }
    fn with_step<F: FnOnce() -> String>(self, f: F) -> Result<T> {
        match self {
            Ok(v) => {
                if crate::fault::enabled() {
                    crate::fault::point(&f())?;
                }
                Ok(v)
            }
            Err(e) => Err(Error::sys(f(), e)),
        }
    }
}

impl From<crate::fault::Injected> for Error {
    fn from(f: crate::fault::Injected) -> Self {
        Error::Fault(f.0)
    }
}

/// An error as it crosses from a child process to berth: the stage it was in, the step, the
/// config field, the failing call and its errno stay separate, so the parent can report them
/// (and match on them) without parsing text.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ChildError {
    /// Which process: "stage", "init" or "exec".
    pub process: String,
    /// The named step that failed ("mounts", "pivot_root", ...).
    pub step: String,
    #[serde(default)]
    pub field: Option<String>,
    /// The failing system call or file operation.
    #[serde(default)]
    pub call: Option<String>,
    #[serde(default)]
    pub errno: Option<i32>,
    /// The whole message as the child had it.
    pub message: String,
}

impl ChildError {
    pub fn from_error(process: &str, fallback_step: &str, e: &Error) -> ChildError {
        ChildError {
            process: process.to_string(),
            step: e.step_name().unwrap_or(fallback_step).to_string(),
            field: e.field().map(String::from),
            call: e.call(),
            errno: e.errno(),
            message: e.to_string(),
        }
    }
}

impl std::fmt::Display for ChildError {
    /// `init: step mounts: <message> (errno EPERM)`: the message already names the field and
    /// the call; the errno's symbolic name is added for grepping.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: ", self.process)?;
        if !self.message.starts_with(&self.step) {
            write!(f, "step {}: ", self.step)?;
        }
        f.write_str(&self.message)?;
        if let Some(n) = self.errno {
            write!(f, " (errno {})", nix::Error::from_raw(n).desc_name())?;
        }
        Ok(())
    }
}

trait DescName {
    fn desc_name(self) -> String;
}

impl DescName for nix::Error {
    fn desc_name(self) -> String {
        // nix's Debug of an errno is its symbolic name (EPERM).
        format!("{self:?}")
    }
}

/// Runs `f` as the named step: a fault point, and its error says which step it was.
pub fn in_step<T>(step: &'static str, f: impl FnOnce() -> Result<T>) -> Result<T> {
    crate::fault::point(step)?;
    f().map_err(|e| match e {
        e @ Error::InStep { .. } => e,
        e => Error::InStep {
            step,
            source: Box::new(e),
        },
    })
}
