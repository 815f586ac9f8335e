//! Fault injection for the reliability tests, compiled in only with the `fault-injection`
//! feature (release builds have none of it: every point is an inlined `Ok(())`).
//!
//! Every named step is a point: `logging::timed` steps in the parent, `error::in_step` steps in
//! the children, each named system call (`SysContext`), each mount, hook, cgroup write, state
//! save and sync message. The suite learns the points by running berth with
//! `BERTH_FAULT_TRACE=<file>` (each point reached is appended as `name<TAB>n`, n counting the
//! hits of that name in that process), then walks them one at a time:
//!
//! - `BERTH_FAULT=<name>` (or `<name><TAB><n>` for the n-th hit) makes that point fail;
//! - `BERTH_FAULT_ACTION=kill` makes the process SIGKILL itself there instead, as a crash would.

/// An injected fault: the point's name and its hit. `error::Error` converts from it (the
/// dependency runs that way only: error names steps, which are points).
#[derive(Debug)]
pub struct Injected(pub String);

pub type Result<T> = std::result::Result<T, Injected>;

#[cfg(feature = "fault-injection")]
mod imp {
    use std::collections::HashMap;
    use std::io::Write;
    use std::sync::{Mutex, OnceLock};

    use super::{Injected, Result};

    struct Config {
        target: Option<(String, Option<usize>)>,
        kill: bool,
        /// Opened once, before any clone: the init still reaches it after pivot_root. Rust
        /// opens it close-on-exec, so no container process inherits it.
        trace: Option<std::fs::File>,
    }

    fn config() -> &'static Option<Config> {
        static CONFIG: OnceLock<Option<Config>> = OnceLock::new();
        CONFIG.get_or_init(|| {
            let target = std::env::var("BERTH_FAULT").ok().filter(|s| !s.is_empty());
            let trace = std::env::var("BERTH_FAULT_TRACE")
                .ok()
                .filter(|s| !s.is_empty())
                .and_then(|p| {
                    std::fs::OpenOptions::new()
                        .append(true)
                        .create(true)
                        .open(p)
                        .ok()
                });
            if target.is_none() && trace.is_none() {
                return None;
            }
            let target = target.map(|t| match t.rsplit_once('\t') {
                Some((name, n)) => (name.to_string(), n.parse().ok()),
                None => (t, None),
            });
            let kill = std::env::var("BERTH_FAULT_ACTION").is_ok_and(|a| a == "kill");
            Some(Config {
                target,
                kill,
                trace,
            })
        })
    }

    pub fn init() {
        let _ = config();
    }

    pub fn enabled() -> bool {
        config().is_some()
    }

    pub fn point(name: &str) -> Result<()> {
        let Some(cfg) = config() else { return Ok(()) };
        static HITS: Mutex<Option<HashMap<String, usize>>> = Mutex::new(None);
        let n = {
            let mut hits = HITS.lock().unwrap_or_else(|p| p.into_inner());
            let n = hits
                .get_or_insert_with(HashMap::new)
                .entry(name.to_string())
                .or_insert(0);
            *n += 1;
            *n
        };
        if let Some(mut f) = cfg.trace.as_ref() {
            // One write per line: O_APPEND keeps lines of concurrent processes whole.
            let _ = f.write_all(format!("{name}\t{n}\n").as_bytes());
        }
        match &cfg.target {
            Some((t, nth)) if t == name && nth.is_none_or(|k| k == n) => {
                if cfg.kill {
                    // SAFETY: raising a signal has no memory-safety preconditions.
                    unsafe { libc::raise(libc::SIGKILL) };
                }
                Err(Injected(format!("{name} (hit {n})")))
            }
            _ => Ok(()),
        }
    }
}

#[cfg(not(feature = "fault-injection"))]
mod imp {
    use super::Result;

    #[inline(always)]
    pub fn init() {}

    #[inline(always)]
    pub fn enabled() -> bool {
        false
    }

    #[inline(always)]
    pub fn point(_name: &str) -> Result<()> {
        Ok(())
    }
}

/// Reads the fault settings once, before any child is cloned.
pub fn init() {
    imp::init()
}

/// Whether any fault setting is present (to skip building dynamic point names otherwise).
pub fn enabled() -> bool {
    imp::enabled()
}

/// A named point: fails (or kills the process) when the tests ask for it here.
pub fn point(name: &str) -> Result<()> {
    imp::point(name)
}

/// A point whose name is built only when faults are enabled.
pub fn point_with(name: impl FnOnce() -> String) -> Result<()> {
    if enabled() {
        point(&name())
    } else {
        Ok(())
    }
}
