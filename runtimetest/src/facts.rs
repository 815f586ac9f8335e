//! `runtimetest facts`: a JSON snapshot of the process state, for the
//! harness's own assertions (fd leaks, ids, namespaces...).

use crate::checks::linux::NAMESPACES;
use crate::parse;
use crate::sys;
use serde_json::{json, Map, Value};

fn rlimit(res: u32) -> Value {
    match sys::getrlimit(res) {
        Ok((s, h)) => json!([s, h]),
        Err(_) => Value::Null,
    }
}

/// Build the facts object. `fds` is taken by the caller first, before
/// anything else opens a file.
pub fn collect(fds: &[i32]) -> Value {
    let (uid, euid) = sys::uids();
    let (gid, egid) = sys::gids();
    let (hostname, domainname) = match sys::uname() {
        Ok((h, d)) => (Value::from(h), Value::from(d)),
        Err(_) => (Value::Null, Value::Null),
    };
    let mut ns = Map::new();
    for (_, name, _) in NAMESPACES {
        if let Some(ino) = sys::ns_inode(name) {
            ns.insert(name.to_string(), json!(ino));
        }
    }
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let cgroup: Vec<String> = std::fs::read_to_string("/proc/self/cgroup")
        .unwrap_or_default()
        .lines()
        .map(str::to_string)
        .collect();
    let oom: Value = std::fs::read_to_string("/proc/self/oom_score_adj")
        .ok()
        .and_then(|s| s.trim().parse::<i64>().ok())
        .map_or(Value::Null, Value::from);
    let nnp: Value = parse::status_field(&status, "NoNewPrivs")
        .and_then(|v| v.parse::<u32>().ok())
        .map_or(Value::Null, Value::from);
    let cap_eff: Value = parse::status_field(&status, "CapEff").map_or(Value::Null, Value::from);
    let env: Vec<String> = std::env::vars_os()
        .map(|(k, v)| format!("{}={}", k.to_string_lossy(), v.to_string_lossy()))
        .collect();
    let cwd: Value = std::env::current_dir()
        .map(|d| Value::from(d.to_string_lossy().into_owned()))
        .unwrap_or(Value::Null);
    let args: Vec<String> = std::env::args_os()
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    json!({
        "pid": sys::getpid(),
        "ppid": sys::getppid(),
        "uid": uid,
        "euid": euid,
        "gid": gid,
        "egid": egid,
        "groups": sys::groups().unwrap_or_default(),
        "cwd": cwd,
        "hostname": hostname,
        "domainname": domainname,
        "umask": sys::umask(),
        "namespaces": Value::Object(ns),
        "fds": fds,
        "cgroup": cgroup,
        "rlimits": {
            "NOFILE": rlimit(7),
            "NPROC": rlimit(6),
            "CORE": rlimit(4),
        },
        "oom_score_adj": oom,
        "no_new_privs": nnp,
        "cap_eff": cap_eff,
        "args": args,
        "env": env,
    })
}
