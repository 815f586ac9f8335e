//! Cgroup membership and the resource limits visible inside the container.

use crate::cfg;
use crate::checks::linux::listed_namespaces;
use crate::parse;
use crate::report::Report;
use crate::sys;
use serde_json::Value;
use std::path::Path;

pub fn run(config: &Value, r: &mut Report) {
    check_membership(config, r);
    check_resources(config, r);
}

fn check_membership(config: &Value, r: &mut Report) {
    let Some(cp) = cfg::str_at(config, &["linux", "cgroupsPath"]) else {
        return;
    };
    if !cp.starts_with('/') {
        return;
    }
    let cp = parse::normalize_path(cp);
    let what = "linux.cgroupsPath membership";
    let text = match std::fs::read_to_string("/proc/self/cgroup") {
        Ok(t) => t,
        Err(e) => {
            r.skip(what, format!("/proc/self/cgroup: {}", sys::errno_name(&e)));
            return;
        }
    };
    let lines = parse::parse_cgroup(&text);
    let line = lines
        .iter()
        .find(|l| l.controllers.iter().any(|c| c == "memory"))
        .or_else(|| {
            lines
                .iter()
                .find(|l| l.hierarchy == 0 && l.controllers.is_empty())
        });
    let Some(line) = line else {
        r.skip(what, "no memory or unified line in /proc/self/cgroup");
        return;
    };
    let ns = listed_namespaces(config).unwrap_or_default();
    match ns.iter().find(|(t, _)| t == "cgroup") {
        Some((_, None)) => r.check_eq(what, "/", line.path.as_str()),
        Some((_, Some(_))) => r.skip(what, "joined an existing cgroup namespace"),
        None => {
            let got = parse::normalize_path(&line.path);
            r.check_that(
                what,
                got.ends_with(&cp),
                format!("path ending in {cp}"),
                &line.path,
            );
        }
    }
}

fn read_trim(path: &str) -> Option<String> {
    std::fs::read_to_string(path)
        .ok()
        .map(|s| s.trim().to_string())
}

/// First readable file among the candidates, with its path.
fn read_first(paths: &[&str]) -> Option<(String, String)> {
    paths
        .iter()
        .find_map(|p| read_trim(p).map(|v| (p.to_string(), v)))
}

fn is_v2() -> bool {
    Path::new("/sys/fs/cgroup/cgroup.controllers").exists()
}

fn check_resources(config: &Value, r: &mut Report) {
    let Some(res) = cfg::get(config, &["linux", "resources"]) else {
        return;
    };
    let v2 = is_v2();
    check_memory(res, v2, r);
    check_pids(res, v2, r);
    check_cpu(res, v2, r);
    for (what, file, want) in expected_files(res) {
        match read_trim(&file) {
            Some(got) => r.check_eq(&what, want, got),
            None => r.skip(&what, format!("{file} not visible")),
        }
    }
}

/// Where the container sees the cgroup files of `ctrl`: its v1 hierarchy, the v2 tree, or the
/// hybrid host's cgroup2 tree at /sys/fs/cgroup/unified.
fn ctrl_dir(ctrl: &str) -> Option<String> {
    if is_v2() {
        return Some("/sys/fs/cgroup".into());
    }
    let v1 = format!("/sys/fs/cgroup/{ctrl}");
    if Path::new(&v1).join("cgroup.procs").exists() {
        return Some(v1);
    }
    let unified = read_trim("/sys/fs/cgroup/unified/cgroup.controllers")?;
    unified
        .split_whitespace()
        .any(|c| c == ctrl)
        .then(|| "/sys/fs/cgroup/unified".into())
}

fn on_v1(ctrl: &str) -> bool {
    ctrl_dir(ctrl).is_some_and(|d| d.ends_with(ctrl))
}

/// The rest of linux.resources as (field, file, value the kernel must hold), for the knobs
/// visible from inside; the limit, pids and cpu quota/shares are checked above.
fn expected_files(res: &Value) -> Vec<(String, String, String)> {
    let mut out = Vec::new();
    let mut add = |what: &str, ctrl: &str, file: &str, want: String| {
        if let Some(d) = ctrl_dir(ctrl) {
            out.push((
                format!("linux.resources.{what}"),
                format!("{d}/{file}"),
                want,
            ));
        }
    };
    let mem_v1 = on_v1("memory");
    let limit = cfg::i64_at(res, &["memory", "limit"]).unwrap_or(0);
    if let Some(v) = cfg::i64_at(res, &["memory", "reservation"]).filter(|v| *v > 0) {
        let page = sys::page_size() as i64;
        let rounded = (v / page * page).to_string();
        if mem_v1 {
            add(
                "memory.reservation",
                "memory",
                "memory.soft_limit_in_bytes",
                rounded,
            );
        } else {
            add("memory.reservation", "memory", "memory.low", rounded);
        }
    }
    if let Some(swap) = cfg::i64_at(res, &["memory", "swap"]).filter(|v| *v != 0) {
        if mem_v1 {
            if Path::new("/sys/fs/cgroup/memory/memory.memsw.limit_in_bytes").exists() && swap > 0 {
                add(
                    "memory.swap",
                    "memory",
                    "memory.memsw.limit_in_bytes",
                    swap.to_string(),
                );
            }
        } else if Path::new("/sys/fs/cgroup/memory.swap.max").exists() {
            let want = if swap == -1 {
                "max".to_string()
            } else {
                (swap - limit).to_string()
            };
            add("memory.swap", "memory", "memory.swap.max", want);
        }
    }
    if mem_v1 {
        if let Some(v) = cfg::u64_at(res, &["memory", "swappiness"]) {
            add(
                "memory.swappiness",
                "memory",
                "memory.swappiness",
                v.to_string(),
            );
        }
        if let Some(v) = cfg::i64_at(res, &["memory", "kernelTCP"]).filter(|v| *v > 0) {
            add(
                "memory.kernelTCP",
                "memory",
                "memory.kmem.tcp.limit_in_bytes",
                v.to_string(),
            );
        }
    }
    let cpu_v1 = on_v1("cpu");
    if let Some(v) = cfg::u64_at(res, &["cpu", "burst"]) {
        let file = if cpu_v1 {
            "cpu.cfs_burst_us"
        } else {
            "cpu.max.burst"
        };
        add("cpu.burst", "cpu", file, v.to_string());
    }
    if let Some(v) = cfg::i64_at(res, &["cpu", "idle"]) {
        add("cpu.idle", "cpu", "cpu.idle", v.to_string());
    }
    if cpu_v1 {
        if let Some(v) = cfg::i64_at(res, &["cpu", "realtimeRuntime"]).filter(|v| *v != 0) {
            add(
                "cpu.realtimeRuntime",
                "cpu",
                "cpu.rt_runtime_us",
                v.to_string(),
            );
        }
        if let Some(v) = cfg::u64_at(res, &["cpu", "realtimePeriod"]).filter(|v| *v != 0) {
            add(
                "cpu.realtimePeriod",
                "cpu",
                "cpu.rt_period_us",
                v.to_string(),
            );
        }
    }
    for (key, file) in [("cpus", "cpuset.cpus"), ("mems", "cpuset.mems")] {
        if let Some(v) = cfg::str_at(res, &["cpu", key]).filter(|v| !v.is_empty()) {
            add(&format!("cpu.{key}"), "cpuset", file, v.to_string());
        }
    }
    for (i, h) in cfg::array_at(res, &["hugepageLimits"]).iter().enumerate() {
        let (Some(size), Some(limit)) = (cfg::str_at(h, &["pageSize"]), cfg::u64_at(h, &["limit"]))
        else {
            continue;
        };
        let file = if on_v1("hugetlb") {
            format!("hugetlb.{size}.limit_in_bytes")
        } else {
            format!("hugetlb.{size}.max")
        };
        add(
            &format!("hugepageLimits[{i}]"),
            "hugetlb",
            &file,
            limit.to_string(),
        );
    }
    let io_v1 = on_v1("blkio");
    let io = if io_v1 { "blkio" } else { "io" };
    for (key, v1_file) in [
        ("throttleReadBpsDevice", "blkio.throttle.read_bps_device"),
        ("throttleWriteBpsDevice", "blkio.throttle.write_bps_device"),
        ("throttleReadIOPSDevice", "blkio.throttle.read_iops_device"),
        (
            "throttleWriteIOPSDevice",
            "blkio.throttle.write_iops_device",
        ),
    ] {
        let list = cfg::array_at(res, &["blockIO", key]);
        // One device per list keeps the expected file content a single line.
        if let [d] = list {
            let (Some(maj), Some(min), Some(rate)) = (
                cfg::u64_at(d, &["major"]),
                cfg::u64_at(d, &["minor"]),
                cfg::u64_at(d, &["rate"]),
            ) else {
                continue;
            };
            if io_v1 {
                add(
                    &format!("blockIO.{key}"),
                    io,
                    v1_file,
                    format!("{maj}:{min} {rate}"),
                );
            }
        }
    }
    if !is_v2() {
        return out;
    }
    if let Some(map) = cfg::get(res, &["unified"]).and_then(|u| u.as_object()) {
        for (k, v) in map {
            if let Some(v) = v.as_str() {
                add(&format!("unified.{k}"), "cgroup", k, v.trim().to_string());
            }
        }
    }
    out
}

fn check_memory(res: &Value, v2: bool, r: &mut Report) {
    let Some(limit) = cfg::i64_at(res, &["memory", "limit"]) else {
        return;
    };
    let what = "linux.resources.memory.limit";
    let file = if v2 {
        "/sys/fs/cgroup/memory.max"
    } else {
        "/sys/fs/cgroup/memory/memory.limit_in_bytes"
    };
    let Some(got) = read_trim(file) else {
        r.skip(what, format!("{file} not visible"));
        return;
    };
    let page = sys::page_size();
    if limit < 0 {
        // Unlimited: "max" on v2, a huge page-rounded number on v1.
        let ok = got == "max" || got.parse::<u64>().is_ok_and(|v| v >= (1u64 << 62));
        r.check_that(what, ok, "unlimited", got);
    } else {
        let want = (limit.unsigned_abs() / page) * page;
        r.check_eq(what, want.to_string(), got);
    }
}

fn check_pids(res: &Value, v2: bool, r: &mut Report) {
    let Some(limit) = cfg::i64_at(res, &["pids", "limit"]) else {
        return;
    };
    let what = "linux.resources.pids.limit";
    let file = if v2 {
        "/sys/fs/cgroup/pids.max"
    } else {
        "/sys/fs/cgroup/pids/pids.max"
    };
    let Some(got) = read_trim(file) else {
        r.skip(what, format!("{file} not visible"));
        return;
    };
    let want = if limit <= 0 {
        "max".to_string()
    } else {
        limit.to_string()
    };
    r.check_eq(what, want, got);
}

fn check_cpu(res: &Value, v2: bool, r: &mut Report) {
    let shares = cfg::u64_at(res, &["cpu", "shares"]);
    let quota = cfg::i64_at(res, &["cpu", "quota"]);
    let period = cfg::u64_at(res, &["cpu", "period"]);
    if v2 {
        if let Some(s) = shares.filter(|s| *s > 0) {
            let what = "linux.resources.cpu.shares (cpu.weight)";
            match read_trim("/sys/fs/cgroup/cpu.weight") {
                Some(got) => r.check_eq(what, parse::shares_to_weight(s).to_string(), got),
                None => r.skip(what, "/sys/fs/cgroup/cpu.weight not visible"),
            }
        }
        if quota.is_none() && period.is_none() {
            return;
        }
        let Some(max) = read_trim("/sys/fs/cgroup/cpu.max") else {
            r.skip("linux.resources.cpu quota/period", "cpu.max not visible");
            return;
        };
        let mut it = max.split_whitespace();
        let got_quota = it.next().unwrap_or("").to_string();
        let got_period = it.next().unwrap_or("").to_string();
        if let Some(q) = quota {
            let want = if q <= 0 {
                "max".to_string()
            } else {
                q.to_string()
            };
            r.check_eq("linux.resources.cpu.quota", want, got_quota);
        }
        if let Some(p) = period.filter(|p| *p > 0) {
            r.check_eq("linux.resources.cpu.period", p.to_string(), got_period);
        }
        return;
    }
    let dirs = ["/sys/fs/cgroup/cpu", "/sys/fs/cgroup/cpu,cpuacct"];
    let v1 = |file: &str| -> Option<(String, String)> {
        let a = format!("{}/{file}", dirs[0]);
        let b = format!("{}/{file}", dirs[1]);
        read_first(&[a.as_str(), b.as_str()])
    };
    if let Some(s) = shares.filter(|s| *s > 0) {
        let what = "linux.resources.cpu.shares";
        match v1("cpu.shares") {
            Some((_, got)) => r.check_eq(what, s.to_string(), got),
            None => r.skip(what, "cpu.shares not visible"),
        }
    }
    if let Some(q) = quota {
        let what = "linux.resources.cpu.quota";
        let want = if q <= 0 {
            "-1".to_string()
        } else {
            q.to_string()
        };
        match v1("cpu.cfs_quota_us") {
            Some((_, got)) => r.check_eq(what, want, got),
            None => r.skip(what, "cpu.cfs_quota_us not visible"),
        }
    }
    if let Some(p) = period.filter(|p| *p > 0) {
        let what = "linux.resources.cpu.period";
        match v1("cpu.cfs_period_us") {
            Some((_, got)) => r.check_eq(what, p.to_string(), got),
            None => r.skip(what, "cpu.cfs_period_us not visible"),
        }
    }
}
