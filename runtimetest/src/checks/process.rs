//! Checks for the `process` object: args, cwd, env, user, umask,
//! noNewPrivileges, rlimits, oomScoreAdj and capabilities.

use crate::cfg;
use crate::parse;
use crate::report::Report;
use crate::sys;
use serde_json::Value;
use std::collections::BTreeSet;
use std::path::Path;

pub fn run(config: &Value, r: &mut Report) {
    let Some(p) = config.get("process") else {
        return;
    };
    check_args(p, r);
    check_cwd(p, r);
    check_env(p, r);
    check_user(p, r);
    check_additional_gids(p, r);
    check_umask(p, r);
    check_no_new_privs(p, r);
    check_rlimits(p, r);
    check_oom_score_adj(p, r);
    check_capabilities(p, r);
    check_signal_defaults(r);
}

/// The spec says nothing of signals, so the process starts as after a plain execve by a clean
/// parent: nothing blocked, nothing ignored (a runtime written in a language that ignores
/// SIGPIPE for itself must not hand that on). Left out: signals 32 and 33, which the C library
/// keeps for itself (no program using it can see or change them, and some callers of runtimes,
/// and runc, leave them ignored), and SIGPIPE, which this very program's Rust runtime ignores
/// before main; the end-to-end case process/no_signal_ignored looks at SIGPIPE with busybox.
fn check_signal_defaults(r: &mut Report) {
    const NOT_SEEN: u64 = (1 << 31) | (1 << 32) | (1 << (libc::SIGPIPE - 1));
    let status = read_status().unwrap_or_default();
    for (field, what) in [("SigBlk", "blocked signals"), ("SigIgn", "ignored signals")] {
        let got = parse::status_field(&status, field)
            .and_then(|h| u64::from_str_radix(h, 16).ok())
            .map(|m| format!("{:016x}", m & !NOT_SEEN))
            .unwrap_or_else(|| "(unreadable)".into());
        r.check_eq(what, "0000000000000000", got.as_str());
    }
}

fn basename(s: &str) -> &str {
    Path::new(s)
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or(s)
}

fn check_args(p: &Value, r: &mut Report) {
    // Empty arguments are legitimate here, so no strings_at.
    let want: Vec<String> = cfg::array_at(p, &["args"])
        .iter()
        .filter_map(|a| a.as_str().map(str::to_string))
        .collect();
    if want.is_empty() {
        return;
    }
    let got: Vec<String> = std::env::args_os()
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    match got.first() {
        Some(a0) => r.check_eq("process.args[0] basename", basename(&want[0]), basename(a0)),
        None => r.fail(
            "process.args[0] basename",
            basename(&want[0]),
            "(empty argv)",
        ),
    }
    let want_rest = want.get(1..).unwrap_or(&[]);
    let got_rest = got.get(1..).unwrap_or(&[]);
    r.check_eq(
        "process.args[1..]",
        format!("{want_rest:?}"),
        format!("{got_rest:?}"),
    );
}

fn check_cwd(p: &Value, r: &mut Report) {
    let Some(want) = cfg::str_at(p, &["cwd"]) else {
        return;
    };
    let want = parse::normalize_path(want);
    match std::env::current_dir() {
        Ok(d) => r.check_eq("process.cwd", want, d.to_string_lossy().into_owned()),
        Err(e) => r.fail("process.cwd", want, format!("getcwd error: {e}")),
    }
}

fn check_env(p: &Value, r: &mut Report) {
    let want = cfg::strings_at(p, &["env"]);
    if want.is_empty() {
        return;
    }
    let have: BTreeSet<String> = std::env::vars_os()
        .map(|(k, v)| format!("{}={}", k.to_string_lossy(), v.to_string_lossy()))
        .collect();
    for e in want {
        let key = e.split_once('=').map_or(e.as_str(), |(k, _)| k);
        let what = format!("process.env {key}");
        if have.contains(&e) {
            r.ok(&what);
        } else {
            let got = std::env::var_os(key)
                .map(|v| format!("{key}={}", v.to_string_lossy()))
                .unwrap_or_else(|| "(unset)".into());
            r.fail(&what, &e, got);
        }
    }
}

fn check_user(p: &Value, r: &mut Report) {
    if !cfg::present(p, &["user"]) {
        return;
    }
    let (Some(uid), Some(gid)) = (
        cfg::u64_or(p, &["user", "uid"], 0),
        cfg::u64_or(p, &["user", "gid"], 0),
    ) else {
        r.skip("process.user", "uid/gid is not a number");
        return;
    };
    let (ruid, euid) = sys::uids();
    let (rgid, egid) = sys::gids();
    r.check_eq("process.user.uid (getuid)", uid, u64::from(ruid));
    r.check_eq("process.user.uid (geteuid)", uid, u64::from(euid));
    r.check_eq("process.user.gid (getgid)", gid, u64::from(rgid));
    r.check_eq("process.user.gid (getegid)", gid, u64::from(egid));
}

fn check_additional_gids(p: &Value, r: &mut Report) {
    if !cfg::is_array(p, &["user", "additionalGids"]) {
        return;
    }
    let extra: Vec<u64> = cfg::array_at(p, &["user", "additionalGids"])
        .iter()
        .filter_map(Value::as_u64)
        .collect();
    let Some(gid) = cfg::u64_or(p, &["user", "gid"], 0) else {
        return;
    };
    let groups: BTreeSet<u64> = match sys::groups() {
        Ok(g) => g.into_iter().map(u64::from).collect(),
        Err(e) => {
            r.fail("process.user.additionalGids", "getgroups to work", e);
            return;
        }
    };
    for g in &extra {
        r.check_that(
            &format!("process.user.additionalGids contains {g}"),
            groups.contains(g),
            format!("{g} in groups"),
            format!("{groups:?}"),
        );
    }
    let mut allowed: BTreeSet<u64> = extra.iter().copied().collect();
    allowed.insert(gid);
    let stray: Vec<u64> = groups.difference(&allowed).copied().collect();
    r.check_that(
        "process.user.additionalGids no other groups",
        stray.is_empty(),
        format!("groups within {allowed:?}"),
        format!("{groups:?}"),
    );
}

fn check_umask(p: &Value, r: &mut Report) {
    let Some(want) = cfg::u64_at(p, &["user", "umask"]) else {
        return;
    };
    let got = u64::from(sys::umask());
    r.check_that(
        "process.user.umask",
        want == got,
        format!("{want:04o}"),
        format!("{got:04o}"),
    );
}

fn read_status() -> Option<String> {
    std::fs::read_to_string("/proc/self/status").ok()
}

/// Always checked: absent or false means the bit must be clear.
fn check_no_new_privs(p: &Value, r: &mut Report) {
    let want = if cfg::bool_at(p, &["noNewPrivileges"]) == Some(true) {
        "1"
    } else {
        "0"
    };
    let got = read_status()
        .and_then(|s| parse::status_field(&s, "NoNewPrivs").map(str::to_string))
        .unwrap_or_else(|| "(unreadable)".into());
    r.check_eq("process.noNewPrivileges", want, got.as_str());
}

fn fmt_limit(v: u64) -> String {
    if v == u64::MAX {
        "unlimited".into()
    } else {
        v.to_string()
    }
}

fn check_rlimits(p: &Value, r: &mut Report) {
    for rl in cfg::array_at(p, &["rlimits"]) {
        let Some(name) = cfg::str_at(rl, &["type"]) else {
            continue;
        };
        let what = format!("process.rlimits {name}");
        let Some(res) = parse::rlimit_resource(name) else {
            r.skip(&what, "unknown rlimit type");
            continue;
        };
        let soft = cfg::u64_at(rl, &["soft"]);
        let hard = cfg::u64_at(rl, &["hard"]);
        match sys::getrlimit(res) {
            Ok((s, h)) => {
                let ok = soft.is_none_or(|x| x == s) && hard.is_none_or(|x| x == h);
                let show = |o: Option<u64>| o.map_or("-".to_string(), fmt_limit);
                r.check_that(
                    &what,
                    ok,
                    format!("soft={} hard={}", show(soft), show(hard)),
                    format!("soft={} hard={}", fmt_limit(s), fmt_limit(h)),
                );
            }
            Err(e) => r.fail(&what, "getrlimit to work", e),
        }
    }
}

fn check_oom_score_adj(p: &Value, r: &mut Report) {
    let Some(want) = cfg::i64_at(p, &["oomScoreAdj"]) else {
        return;
    };
    match std::fs::read_to_string("/proc/self/oom_score_adj") {
        Ok(s) => r.check_eq(
            "process.oomScoreAdj",
            want.to_string(),
            s.trim().to_string(),
        ),
        Err(e) => r.fail("process.oomScoreAdj", want, format!("unreadable: {e}")),
    }
}

/// Highest capability the running kernel knows.
pub fn last_cap() -> u32 {
    std::fs::read_to_string("/proc/sys/kernel/cap_last_cap")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(40)
}

/// Compare capability sets, always: a config without `process.capabilities` (or without one
/// of its sets) asks for empty sets. Bounding, inheritable and ambient must equal
/// the config. Permitted and effective are compared with what execve(2)
/// leaves behind: for uid 0 the kernel grants inheritable|bounding, for
/// other users only the ambient set survives. That is the state a correct
/// runtime produces once it has exec'd the container process.
///
/// Capabilities the host cannot grant (outside the runtime's own permitted set, e.g. a
/// machine without CAP_SYS_RESOURCE in its bounding set) are warned about and skipped by the
/// runtime; the harness passes the host's set as RUNTIMETEST_HOST_CAPS (hex) and only those
/// are expected.
fn check_capabilities(p: &Value, r: &mut Report) {
    let empty = Value::Object(Default::default());
    let c = p
        .get("capabilities")
        .filter(|v| v.is_object())
        .unwrap_or(&empty);
    let Some(status) = read_status() else {
        r.fail(
            "process.capabilities",
            "/proc/self/status readable",
            "unreadable",
        );
        return;
    };
    let have = parse::parse_status_caps(&status);
    let last = last_cap();
    let all = parse::cap_all(last);
    let host = std::env::var("RUNTIMETEST_HOST_CAPS")
        .ok()
        .and_then(|h| parse::parse_hex_mask(&h))
        .unwrap_or(all);
    let set = |name: &str| -> Option<u64> {
        let (m, _unknown) = parse::cap_mask(&cfg::strings_at(c, &[name]), last);
        Some(m & host)
    };
    let bnd = set("bounding");
    let inh = set("inheritable");
    let prm = set("permitted");
    let eff = set("effective");
    let amb = set("ambient");

    let Some(uid) = cfg::u64_or(p, &["user", "uid"], 0) else {
        return;
    };
    let want = parse::CapSets {
        inheritable: inh,
        permitted: prm,
        effective: eff,
        bounding: bnd,
        ambient: amb,
    };
    let after = parse::caps_after_exec(&want, uid == 0, have.bounding, all);

    let mut cmp = |what: &str, want: Option<u64>, got: Option<u64>| {
        let Some(want) = want else { return };
        let what = format!("process.capabilities.{what}");
        match got {
            Some(g) => {
                let g = g & all;
                let missing = want & !g;
                let extra = g & !want;
                r.check_that(
                    &what,
                    g == want,
                    format!("{want:#x}"),
                    format!(
                        "{g:#x} (missing {}; extra {})",
                        parse::cap_names_of(missing),
                        parse::cap_names_of(extra)
                    ),
                );
            }
            None => r.skip(&what, "kernel does not report this set"),
        }
    };
    cmp("bounding", bnd, have.bounding);
    cmp("inheritable", inh, have.inheritable);
    cmp("ambient", after.ambient, have.ambient);
    cmp("permitted", after.permitted, have.permitted);
    cmp("effective", after.effective, have.effective);
}
