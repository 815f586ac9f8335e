//! hostname/domainname, sysctl, namespaces, id mappings and root
//! propagation.

use crate::cfg;
use crate::parse::{self, MountInfo};
use crate::report::Report;
use crate::sys;
use serde_json::Value;

/// (config type, /proc/self/ns name, env suffix)
pub const NAMESPACES: [(&str, &str, &str); 8] = [
    ("pid", "pid", "PID"),
    ("network", "net", "NET"),
    ("mount", "mnt", "MNT"),
    ("ipc", "ipc", "IPC"),
    ("uts", "uts", "UTS"),
    ("user", "user", "USER"),
    ("cgroup", "cgroup", "CGROUP"),
    ("time", "time", "TIME"),
];

pub fn run(config: &Value, mounts: Option<&[MountInfo]>, r: &mut Report) {
    check_uts(config, r);
    check_sysctl(config, r);
    check_namespaces(config, r);
    check_id_map(config, "uidMappings", "/proc/self/uid_map", r);
    check_id_map(config, "gidMappings", "/proc/self/gid_map", r);
    if let Some(m) = mounts {
        check_propagation(config, m, r);
    }
}

fn check_uts(config: &Value, r: &mut Report) {
    let want_host = cfg::str_at(config, &["hostname"]);
    let want_domain = cfg::str_at(config, &["domainname"]);
    if want_host.is_none() && want_domain.is_none() {
        return;
    }
    let (node, domain) = match sys::uname() {
        Ok(v) => v,
        Err(e) => {
            r.fail("hostname", "uname to work", e);
            return;
        }
    };
    if let Some(h) = want_host {
        r.check_eq("hostname", h, node.as_str());
    }
    if let Some(d) = want_domain {
        r.check_eq("domainname", d, domain.as_str());
    }
}

fn check_sysctl(config: &Value, r: &mut Report) {
    let Some(map) = cfg::get(config, &["linux", "sysctl"]).and_then(Value::as_object) else {
        return;
    };
    for (key, val) in map {
        let what = format!("sysctl {key}");
        let Some(want) = val.as_str() else {
            continue;
        };
        let path = format!("/proc/sys/{}", key.replace('.', "/"));
        match std::fs::read_to_string(&path) {
            Ok(got) => r.check_eq(&what, parse::normalize_ws(want), parse::normalize_ws(&got)),
            Err(e) => r.fail(
                &what,
                want,
                format!("{path} unreadable: {}", sys::errno_name(&e)),
            ),
        }
    }
}

fn env_u64(name: &str) -> Option<u64> {
    std::env::var(name).ok().and_then(|v| v.trim().parse().ok())
}

/// The config's namespace list as (type, optional path).
pub fn listed_namespaces(config: &Value) -> Option<Vec<(String, Option<String>)>> {
    let list = cfg::get(config, &["linux", "namespaces"])?.as_array()?;
    Some(
        list.iter()
            .filter_map(|n| {
                let t = cfg::str_at(n, &["type"])?.to_string();
                let p = cfg::str_at(n, &["path"])
                    .filter(|p| !p.is_empty())
                    .map(str::to_string);
                Some((t, p))
            })
            .collect(),
    )
}

fn check_namespaces(config: &Value, r: &mut Report) {
    let Some(listed) = listed_namespaces(config) else {
        return;
    };
    for (typ, proc_name, env) in NAMESPACES {
        let entry = listed.iter().find(|(t, _)| t == typ);
        let what = format!("namespace {typ}");
        let Some(own) = sys::ns_inode(proc_name) else {
            if entry.is_some() {
                r.skip(&what, format!("/proc/self/ns/{proc_name} not available"));
            }
            continue;
        };
        let host = env_u64(&format!("RUNTIMETEST_HOST_NS_{env}"));
        match entry {
            Some((_, None)) => {
                if let Some(h) = host {
                    r.check_that(
                        &format!("{what} is new"),
                        own != h,
                        format!("inode != host {h}"),
                        own,
                    );
                }
                if typ == "pid" && std::env::var_os("RUNTIMETEST_NOT_INIT").is_none() {
                    r.check_eq("namespace pid: getpid() == 1", 1, sys::getpid());
                }
            }
            Some((_, Some(path))) => {
                if let Some(want) = env_u64(&format!("RUNTIMETEST_NS_PATH_INODE_{env}")) {
                    r.check_eq(&format!("{what} joined {path}"), want, own);
                }
            }
            None => {
                if let Some(h) = host {
                    r.check_eq(&format!("{what} shared with host"), h, own);
                }
            }
        }
    }
}

fn check_id_map(config: &Value, key: &str, file: &str, r: &mut Report) {
    if !cfg::is_array(config, &["linux", key]) {
        return;
    }
    let mut want: Vec<parse::IdMap> = cfg::array_at(config, &["linux", key])
        .iter()
        .filter_map(|m| {
            Some((
                cfg::u64_at(m, &["containerID"])?,
                cfg::u64_at(m, &["hostID"])?,
                cfg::u64_at(m, &["size"])?,
            ))
        })
        .collect();
    let what = format!("linux.{key}");
    if want.is_empty() {
        r.skip(&what, "no well-formed entries in the config");
        return;
    }
    let text = match std::fs::read_to_string(file) {
        Ok(t) => t,
        Err(e) => {
            r.fail(&what, format!("{file} readable"), sys::errno_name(&e));
            return;
        }
    };
    let mut got = parse::parse_id_map(&text);
    want.sort_unstable();
    got.sort_unstable();
    let show = |v: &[parse::IdMap]| {
        v.iter()
            .map(|(a, b, c)| format!("{a} {b} {c}"))
            .collect::<Vec<_>>()
            .join("; ")
    };
    r.check_eq(&what, show(&want), show(&got));
}

fn check_propagation(config: &Value, mounts: &[MountInfo], r: &mut Report) {
    let Some(prop) = cfg::str_at(config, &["linux", "rootfsPropagation"]) else {
        return;
    };
    let what = format!("linux.rootfsPropagation {prop}");
    let Some(root) = parse::mount_at(mounts, "/") else {
        r.fail(&what, "a mount at /", "none");
        return;
    };
    let got = root.propagation();
    match prop {
        "shared" | "rshared" => r.check_that(&what, root.is_shared(), "shared:N", got),
        "slave" | "rslave" => r.check_that(&what, root.is_slave(), "master:N", got),
        "private" | "rprivate" => {
            r.check_that(&what, !root.is_shared() && !root.is_slave(), "private", got)
        }
        "unbindable" | "runbindable" => {
            r.check_that(&what, root.is_unbindable(), "unbindable", got)
        }
        _ => r.skip(&what, "unknown propagation value"),
    }
}
