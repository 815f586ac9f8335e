//! Signal names and numbers as `kill` accepts them: `KILL`, `SIGKILL`, `9`.

use nix::sys::signal::Signal;

use crate::error::{Error, Result};

/// Parses a signal given by name (with or without the SIG prefix, any case) or number.
pub fn parse_signal(text: &str) -> Result<Signal> {
    let text = text.trim();
    let invalid = || Error::Other(format!("invalid signal {text:?}"));
    if let Ok(num) = text.parse::<i32>() {
        return Signal::try_from(num).map_err(|_| invalid());
    }
    let upper = text.to_ascii_uppercase();
    let name = if upper.starts_with("SIG") {
        upper
    } else {
        format!("SIG{upper}")
    };
    name.parse::<Signal>().map_err(|_| invalid())
}
