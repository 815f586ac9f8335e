//! Signal names and numbers as `kill` accepts them: `KILL`, `SIGKILL`, `9`.

use nix::sys::signal::Signal;

use crate::error::{Error, Result};

/// Parses a signal given by name (with or without the SIG prefix, any case) or number. 0 (only
/// checks the process exists) and real-time signals, which have no name here, are numbers.
pub fn parse_signal(text: &str) -> Result<i32> {
    let text = text.trim();
    let invalid = || Error::Other(format!("invalid signal {text:?}"));
    if let Ok(num) = text.parse::<i32>() {
        return if (0..=libc::SIGRTMAX()).contains(&num) {
            Ok(num)
        } else {
            Err(invalid())
        };
    }
    let upper = text.to_ascii_uppercase();
    let name = if upper.starts_with("SIG") {
        upper
    } else {
        format!("SIG{upper}")
    };
    name.parse::<Signal>()
        .map(|s| s as i32)
        .map_err(|_| invalid())
}
