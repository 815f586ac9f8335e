//! All the checks, one module per area.

pub mod cgroups;
pub mod devices;
pub mod fs;
pub mod linux;
pub mod lsm;
pub mod process;
pub mod seccomp;

use crate::report::Report;
use serde_json::Value;

/// Run every check against the config.
pub fn run_all(config: &Value, r: &mut Report) {
    process::run(config, r);
    fs::run(config, r);
    devices::run(config, r);
    let mounts = fs::read_mountinfo();
    linux::run(config, mounts.as_deref(), r);
    cgroups::run(config, r);
    seccomp::run(config, r);
    lsm::run(config, r);
}
