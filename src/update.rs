//! `update`: new resource limits for a live container, from runc's flags or from
//! LinuxResources JSON (`--resources FILE`, or `-` for stdin as containerd sends it).
//!
//! Only the fields given change; they are merged into the resources recorded in the state, the
//! writes are computed and checked against the host before the first one is made, and the
//! merged resources are saved so later updates, `state` and `events` see them.

use std::io::Read;
use std::path::{Path, PathBuf};

use oci_spec::runtime::{LinuxCpu, LinuxMemory, LinuxPids, LinuxResources};

use crate::cgroups::{self, limits};
use crate::error::{Error, Result};
use crate::lifecycle::Context;
use crate::logging;
use crate::state::{StateDir, Status};

/// runc's `update` flags; None = not given.
#[derive(Clone, Debug, Default)]
pub struct Flags {
    pub memory: Option<i64>,
    pub memory_swap: Option<i64>,
    pub memory_reservation: Option<i64>,
    pub kernel_memory: Option<i64>,
    pub kernel_memory_tcp: Option<i64>,
    pub cpu_shares: Option<u64>,
    pub cpu_quota: Option<i64>,
    pub cpu_period: Option<u64>,
    pub cpu_burst: Option<u64>,
    pub cpu_rt_runtime: Option<i64>,
    pub cpu_rt_period: Option<u64>,
    pub cpuset_cpus: Option<String>,
    pub cpuset_mems: Option<String>,
    pub pids_limit: Option<i64>,
    pub blkio_weight: Option<u16>,
    pub l3_cache_schema: Option<String>,
    pub mem_bw_schema: Option<String>,
}

pub struct Request {
    /// `--resources`: a file, or `-` for stdin.
    pub resources: Option<PathBuf>,
    pub flags: Flags,
}

/// A size as runc's update takes it: bytes, or a number with a binary suffix (k, m, g, t, p;
/// an optional trailing b/ib), or -1 for unlimited.
pub fn parse_bytes(s: &str) -> std::result::Result<i64, String> {
    let t = s.trim();
    if t == "-1" {
        return Ok(-1);
    }
    let lower = t.to_ascii_lowercase();
    let body = lower
        .strip_suffix("ib")
        .or_else(|| lower.strip_suffix('b'))
        .unwrap_or(&lower);
    let (num, mult): (&str, u64) = match body.chars().last() {
        Some('k') => (&body[..body.len() - 1], 1 << 10),
        Some('m') => (&body[..body.len() - 1], 1 << 20),
        Some('g') => (&body[..body.len() - 1], 1 << 30),
        Some('t') => (&body[..body.len() - 1], 1 << 40),
        Some('p') => (&body[..body.len() - 1], 1 << 50),
        _ => (body, 1),
    };
    let bad = || {
        format!("{s:?} is not a size (bytes, or a number with k, m, g, t or p; -1 for unlimited)")
    };
    let v: f64 = num.trim().parse().map_err(|_| bad())?;
    if !v.is_finite() || v < 0.0 {
        return Err(bad());
    }
    let bytes = v * mult as f64;
    if bytes > i64::MAX as f64 {
        return Err(bad());
    }
    Ok(bytes as i64)
}

fn read_resources(src: &Path) -> Result<LinuxResources> {
    let mut text = String::new();
    let what = if src == Path::new("-") {
        std::io::stdin()
            .read_to_string(&mut text)
            .map_err(|e| Error::io("read resources", "<stdin>", e))?;
        "stdin".to_string()
    } else {
        text = std::fs::read_to_string(src).map_err(|e| Error::io("read resources", src, e))?;
        src.display().to_string()
    };
    serde_json::from_str(&text).map_err(|e| {
        Error::config(
            "--resources",
            format!("{what}: not LinuxResources JSON: {e}"),
        )
    })
}

/// The resources the flags describe.
fn from_flags(f: &Flags) -> Result<LinuxResources> {
    if f.l3_cache_schema.is_some() || f.mem_bw_schema.is_some() {
        return Err(Error::config(
            "--l3-cache-schema/--mem-bw-schema",
            "Intel RDT is not supported by berth",
        ));
    }
    let mut r = LinuxResources::default();
    if [
        f.memory,
        f.memory_swap,
        f.memory_reservation,
        f.kernel_memory,
        f.kernel_memory_tcp,
    ]
    .iter()
    .any(Option::is_some)
    {
        let mut m = LinuxMemory::default();
        m.set_limit(f.memory)
            .set_swap(f.memory_swap)
            .set_reservation(f.memory_reservation)
            .set_kernel(f.kernel_memory)
            .set_kernel_tcp(f.kernel_memory_tcp);
        r.set_memory(Some(m));
    }
    let cpu_given = f.cpu_shares.is_some()
        || f.cpu_quota.is_some()
        || f.cpu_period.is_some()
        || f.cpu_burst.is_some()
        || f.cpu_rt_runtime.is_some()
        || f.cpu_rt_period.is_some()
        || f.cpuset_cpus.is_some()
        || f.cpuset_mems.is_some();
    if cpu_given {
        let mut c = LinuxCpu::default();
        c.set_shares(f.cpu_shares)
            .set_quota(f.cpu_quota)
            .set_period(f.cpu_period)
            .set_burst(f.cpu_burst)
            .set_realtime_runtime(f.cpu_rt_runtime)
            .set_realtime_period(f.cpu_rt_period)
            .set_cpus(f.cpuset_cpus.clone())
            .set_mems(f.cpuset_mems.clone());
        r.set_cpu(Some(c));
    }
    if let Some(l) = f.pids_limit {
        let mut p = LinuxPids::default();
        p.set_limit(l);
        r.set_pids(Some(p));
    }
    if let Some(w) = f.blkio_weight {
        if w != 0 && !(10..=1000).contains(&w) {
            return Err(Error::config(
                "--blkio-weight",
                format!("{w} is not in 10..=1000"),
            ));
        }
        let mut b = oci_spec::runtime::LinuxBlockIo::default();
        b.set_weight(Some(w));
        r.set_block_io(Some(b));
    }
    Ok(r)
}

/// `over` field by field on top of `base` (a field given in `over` wins).
fn merge(base: &LinuxResources, over: &LinuxResources) -> LinuxResources {
    macro_rules! pick {
        ($new:expr, $old:expr, [$($f:ident / $set:ident),*]) => {{
            let mut out = $old.clone().unwrap_or_default();
            if let Some(n) = $new {
                $( if n.$f().is_some() { out.$set(n.$f().clone()); } )*
            }
            out
        }};
    }
    let mut out = base.clone();
    if over.memory().is_some() {
        let m = pick!(
            over.memory(),
            base.memory(),
            [
                limit / set_limit,
                swap / set_swap,
                reservation / set_reservation,
                kernel / set_kernel,
                kernel_tcp / set_kernel_tcp,
                swappiness / set_swappiness,
                disable_oom_killer / set_disable_oom_killer,
                use_hierarchy / set_use_hierarchy,
                check_before_update / set_check_before_update
            ]
        );
        out.set_memory(Some(m));
    }
    if over.cpu().is_some() {
        let c = pick!(
            over.cpu(),
            base.cpu(),
            [
                shares / set_shares,
                quota / set_quota,
                period / set_period,
                burst / set_burst,
                realtime_runtime / set_realtime_runtime,
                realtime_period / set_realtime_period,
                cpus / set_cpus,
                mems / set_mems,
                idle / set_idle
            ]
        );
        out.set_cpu(Some(c));
    }
    if over.pids().is_some() {
        out.set_pids(*over.pids());
    }
    if over.block_io().is_some() {
        let b = pick!(
            over.block_io(),
            base.block_io(),
            [
                weight / set_weight,
                leaf_weight / set_leaf_weight,
                weight_device / set_weight_device,
                throttle_read_bps_device / set_throttle_read_bps_device,
                throttle_write_bps_device / set_throttle_write_bps_device,
                throttle_read_iops_device / set_throttle_read_iops_device,
                throttle_write_iops_device / set_throttle_write_iops_device
            ]
        );
        out.set_block_io(Some(b));
    }
    if over.hugepage_limits().is_some() {
        out.set_hugepage_limits(over.hugepage_limits().clone());
    }
    if over.network().is_some() {
        out.set_network(over.network().clone());
    }
    if over.rdma().is_some() {
        out.set_rdma(over.rdma().clone());
    }
    if let Some(u) = over.unified() {
        let mut all = base.unified().clone().unwrap_or_default();
        all.extend(u.clone());
        out.set_unified(Some(all));
    }
    if over.devices().is_some() {
        out.set_devices(over.devices().clone());
    }
    out
}

/// What to write: the given fields, plus the ones their files share (cpu.max holds quota and
/// period; v2's swap is computed from the memory limit).
fn writes_for(given: &LinuxResources, merged: &LinuxResources) -> LinuxResources {
    let mut w = given.clone();
    w.set_devices(None);
    if let (Some(g), Some(m)) = (given.cpu(), merged.cpu()) {
        if g.quota().is_some() || g.period().is_some() {
            let mut c = g.clone();
            c.set_quota(m.quota()).set_period(m.period());
            w.set_cpu(Some(c));
        }
    }
    if let (Some(g), Some(m)) = (given.memory(), merged.memory()) {
        let mut mem = *g;
        if g.swap().is_some() || g.limit().is_some() {
            mem.set_limit(m.limit()).set_swap(m.swap());
        }
        w.set_memory(Some(mem));
    }
    w
}

pub fn update(ctx: &Context, id: &str, req: &Request) -> Result<()> {
    let mut given = match &req.resources {
        Some(src) => read_resources(src)?,
        None => LinuxResources::default(),
    };
    given = merge(&given, &from_flags(&req.flags)?);
    let dir = StateDir::open(&ctx.root, id)?;
    let mut st = dir.load()?;
    let status = st.status(&dir.dir);
    if status == Status::Stopped {
        return Err(Error::WrongState {
            id: id.into(),
            status: status.to_string(),
            action: "cannot update a stopped container",
        });
    }
    let base = st
        .config
        .linux()
        .as_ref()
        .and_then(|l| l.resources().clone())
        .unwrap_or_default();
    let merged = merge(&base, &given);
    let devices_changed = given.devices().is_some() && given.devices() != base.devices();
    // Device rules are checked with everything else, before the first write.
    let device_rules = if devices_changed {
        let config_devices = st
            .config
            .linux()
            .as_ref()
            .and_then(|l| l.devices().clone())
            .unwrap_or_default();
        Some(cgroups::devices::effective_rules(
            Some(&merged),
            &config_devices,
        )?)
    } else {
        None
    };
    check_before_update(&st.cgroup_path, &given, &merged)?;
    let writes = writes_for(&given, &merged);
    if st.systemd_cgroup {
        // The unit's properties first: systemd rewrites the cgroup files on a change (CPU quota
        // in 10 ms steps); berth's exact values then follow.
        limits::validate(&st.cgroup_path, &writes, limits::current(&st.cgroup_path))?;
        cgroups::systemd::set_properties(&st.cgroup_path, &writes)?;
    }
    limits::apply(&st.cgroup_path, &writes, limits::current(&st.cgroup_path))?;
    if let Some(rules) = &device_rules {
        cgroups::devices::apply(&st.cgroup_path, rules)?;
    }
    if let Some(linux) = st.config.linux_mut() {
        linux.set_resources(Some(merged));
    }
    dir.save(&st)?;
    logging::debug(&format!("update: {id}: resources saved"));
    Ok(())
}

/// memory.checkBeforeUpdate: a new limit below what the container uses now is refused rather
/// than letting the kernel reclaim or OOM-kill to meet it.
fn check_before_update(path: &Path, given: &LinuxResources, merged: &LinuxResources) -> Result<()> {
    let Some(new_limit) = given
        .memory()
        .as_ref()
        .and_then(|m| m.limit())
        .filter(|l| *l > 0)
    else {
        return Ok(());
    };
    let check = merged
        .memory()
        .as_ref()
        .and_then(|m| m.check_before_update())
        .unwrap_or(false);
    if !check {
        return Ok(());
    }
    if let Some(usage) = cgroups::memory_usage(path) {
        if (new_limit as u64) < usage {
            return Err(Error::config(
                "linux.resources.memory.limit",
                format!("{new_limit} is below the container's current usage {usage} (checkBeforeUpdate)"),
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(parse_bytes("1024"), Ok(1024));
        assert_eq!(parse_bytes("512m"), Ok(512 << 20));
        assert_eq!(parse_bytes("1G"), Ok(1 << 30));
        assert_eq!(parse_bytes("2KiB"), Ok(2048));
        assert_eq!(parse_bytes("1.5k"), Ok(1536));
        assert_eq!(parse_bytes("-1"), Ok(-1));
        for bad in ["", "x", "-2", "10q", "1e400"] {
            assert!(parse_bytes(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn merge_keeps_what_was_not_given() {
        let base: LinuxResources = serde_json::from_str(
            r#"{"memory":{"limit":1048576,"swap":2097152},"cpu":{"shares":512,"quota":1000,"period":100000},"pids":{"limit":10}}"#,
        )
        .unwrap();
        let given: LinuxResources = serde_json::from_str(r#"{"cpu":{"quota":2000}}"#).unwrap();
        let m = merge(&base, &given);
        let cpu = m.cpu().clone().unwrap();
        assert_eq!(
            (cpu.shares(), cpu.quota(), cpu.period()),
            (Some(512), Some(2000), Some(100000))
        );
        assert_eq!(m.memory().unwrap().limit(), Some(1048576));
        assert_eq!(m.pids().unwrap().limit(), 10);
        // cpu.max is written whole: the period comes from the merged value.
        let w = writes_for(&given, &m);
        assert_eq!(w.cpu().clone().unwrap().period(), Some(100000));
        assert!(w.memory().is_none());
    }

    #[test]
    fn flags_become_resources() {
        let f = Flags {
            memory: Some(1 << 20),
            pids_limit: Some(5),
            cpuset_cpus: Some("0".into()),
            ..Flags::default()
        };
        let r = from_flags(&f).unwrap();
        assert_eq!(r.memory().unwrap().limit(), Some(1 << 20));
        assert_eq!(r.pids().unwrap().limit(), 5);
        assert_eq!(r.cpu().clone().unwrap().cpus().as_deref(), Some("0"));
        let f = Flags {
            l3_cache_schema: Some("L3:0=f".into()),
            ..Flags::default()
        };
        assert!(from_flags(&f)
            .unwrap_err()
            .to_string()
            .contains("l3-cache-schema"));
        let f = Flags {
            blkio_weight: Some(5),
            ..Flags::default()
        };
        assert!(from_flags(&f).is_err());
    }
}
