//! `process.apparmorProfile` / `process.selinuxLabel`, seen from inside: on a host with the LSM
//! the process's current label names the configured one. A host without it cannot label
//! anything; that is reported as a skip, never a pass.

use crate::cfg;
use crate::report::Report;
use serde_json::Value;

fn current(attr: &str) -> Option<String> {
    std::fs::read_to_string(format!("/proc/self/attr/{attr}"))
        .ok()
        .map(|s| s.trim_end_matches(['\n', '\0']).to_string())
}

pub fn run(config: &Value, r: &mut Report) {
    if let Some(want) =
        cfg::str_at(config, &["process", "apparmorProfile"]).filter(|s| !s.is_empty())
    {
        let what = "process.apparmorProfile";
        match current("apparmor/current").or_else(|| current("current")) {
            Some(got) if apparmor_on() => {
                // "name (enforce)" or "name (complain)"
                let name = got.split(" (").next().unwrap_or("");
                r.check_eq(what, want, name)
            }
            _ => r.skip(what, "AppArmor is not enabled on this host"),
        }
    }
    if let Some(want) = cfg::str_at(config, &["process", "selinuxLabel"]).filter(|s| !s.is_empty())
    {
        let what = "process.selinuxLabel";
        match current("current") {
            Some(got) if selinux_on() => r.check_eq(what, want, got.as_str()),
            _ => r.skip(what, "SELinux is not enabled on this host"),
        }
    }
}

fn apparmor_on() -> bool {
    std::fs::read_to_string("/sys/module/apparmor/parameters/enabled")
        .is_ok_and(|s| s.trim() == "Y")
}

fn selinux_on() -> bool {
    std::path::Path::new("/sys/fs/selinux/enforce").exists()
}
