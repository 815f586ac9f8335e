//! Docker's (and Podman's) seccomp profile format turned into OCI `linux.seccomp`. Shared by
//! the integration suite and the benchmark (`bench/`, which includes this file by path), so it
//! depends on serde_json alone.

use serde_json::{json, Value};

/// Where `make deps` unpacks Debian's golang-github-containers-common (Podman's default
/// profile, derived from Docker's).
pub const PODMAN_PROFILE: &str = "target/containers-common/usr/share/containers/seccomp.json";

/// Turns a Docker/Podman profile into the OCI one a manager would send for an x86_64 container
/// holding `caps`, as they do: keep the rules whose includes/excludes fit.
pub fn oci_from_moby(profile: &Value, caps: &[&str]) -> Value {
    let fits = |rule: &Value| {
        // rule.includes.arches, rule.excludes.caps, ...: the strings of one list.
        let list = |k: &str, what: &str| -> Vec<String> {
            rule[k][what]
                .as_array()
                .map(|a| {
                    a.iter()
                        .filter_map(|v| v.as_str().map(String::from))
                        .collect()
                })
                .unwrap_or_default()
        };
        let arches = |k: &str| list(k, "arches");
        let rcaps = |k: &str| list(k, "caps");
        let inc_a = arches("includes");
        let exc_a = arches("excludes");
        let inc_c = rcaps("includes");
        let exc_c = rcaps("excludes");
        (inc_a.is_empty() || inc_a.iter().any(|a| a == "amd64"))
            && !exc_a.iter().any(|a| a == "amd64")
            && inc_c.iter().all(|c| caps.contains(&c.as_str()))
            && !exc_c.iter().any(|c| caps.contains(&c.as_str()))
            && rule["includes"]["minKernel"].is_null()
    };
    let syscalls: Vec<Value> = profile["syscalls"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|r| fits(r))
        .map(|r| {
            let mut o = json!({"names": r["names"], "action": r["action"]});
            if let Some(a) = r["args"].as_array().filter(|a| !a.is_empty()) {
                o["args"] = json!(a);
            }
            if !r["errnoRet"].is_null() {
                o["errnoRet"] = r["errnoRet"].clone();
            }
            o
        })
        .collect();
    let mut out = json!({
        "defaultAction": profile["defaultAction"],
        "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"],
        "syscalls": syscalls,
    });
    if !profile["defaultErrnoRet"].is_null() {
        out["defaultErrnoRet"] = profile["defaultErrnoRet"].clone();
    }
    out
}
