//! Descriptors berth inherits from its caller (CVE-2024-21626): none may reach the container or
//! a hook unless asked for.

use crate::error::{Error, Result};
use crate::sys;

/// How many socket-activation fds (from 3 up) systemd passed to this very process: LISTEN_FDS,
/// honoured only when LISTEN_PID names us.
pub fn socket_activation_fds() -> u32 {
    let for_us = std::env::var("LISTEN_PID")
        .ok()
        .and_then(|p| p.trim().parse::<u32>().ok())
        .is_some_and(|p| p == std::process::id());
    if !for_us {
        return 0;
    }
    std::env::var("LISTEN_FDS")
        .ok()
        .and_then(|n| n.trim().parse::<u32>().ok())
        .unwrap_or(0)
}

/// Called first thing in `main`: every inherited fd from 3 up is closed, except the
/// socket-activation fds and the `preserve_fds` after them. Closed, not only marked
/// close-on-exec: berth's stage and init are clones, not execs, so a close-on-exec fd would
/// still be open in the init while it resolves `process.cwd`, `process.args[0]` and hook paths
/// (`/proc/self/fd/N/...` would reach the host). Whatever berth opens later is close-on-exec,
/// and the init marks all but the preserved fds close-on-exec before its execve.
pub fn seal_inherited(preserve_fds: u32) -> Result<()> {
    let first = 3u32
        .saturating_add(socket_activation_fds())
        .saturating_add(preserve_fds);
    sys::close_inherited_from(first)
        .map_err(|e| Error::sys(format!("close inherited fds from {first} up"), e))
}
