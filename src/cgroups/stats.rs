//! A container's resource usage in the shape `runc events` prints (`data` of a stats event):
//! the same JSON keys and the same rules for leaving fields out, so clients that parse runc's
//! output (containerd's shims, `docker stats` through them) read berth's unchanged.
//!
//! Read straight from the cgroup files rather than through libcgroups' `stats()`: its v2 swap
//! is swap alone where runc reports memory+swap, its managers fail as a whole when one
//! controller or swap accounting is missing, and it has no cpuset or v1 bfq/throttle blkio.

use std::collections::BTreeMap;
use std::fs;
use std::io::ErrorKind;
use std::path::{Path, PathBuf};

use serde::{Serialize, Serializer};

use crate::error::{Error, Result};

fn is_zero(v: &u64) -> bool {
    *v == 0
}

fn is_default<T: Default + PartialEq>(v: &T) -> bool {
    *v == T::default()
}

/// Go prints an integral float without a fraction (`0`, not `0.0`).
fn go_float<S: Serializer>(v: &f64, s: S) -> std::result::Result<S::Ok, S::Error> {
    if v.fract() == 0.0 && v.abs() < 1e15 {
        s.serialize_i64(*v as i64)
    } else {
        s.serialize_f64(*v)
    }
}

#[derive(Serialize, Default, Debug, Clone, PartialEq)]
pub struct Stats {
    pub cpu: Cpu,
    pub cpuset: CpuSet,
    pub memory: Memory,
    pub pids: Pids,
    pub blkio: Blkio,
    pub hugetlb: BTreeMap<String, Hugetlb>,
    pub intel_rdt: IntelRdt,
    /// runc fills this from libcontainer's veth networks, which an OCI bundle never has, so it
    /// is `null` there too.
    pub network_interfaces: Option<Vec<NetworkInterface>>,
}

#[derive(Serialize, Default, Debug, Clone, PartialEq)]
pub struct Cpu {
    #[serde(skip_serializing_if = "is_default")]
    pub usage: CpuUsage,
    #[serde(skip_serializing_if = "is_default")]
    pub throttling: Throttling,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub psi: Option<Psi>,
}

/// Nanoseconds.
#[derive(Serialize, Default, Debug, Clone, PartialEq, Eq)]
pub struct CpuUsage {
    #[serde(skip_serializing_if = "is_zero")]
    pub total: u64,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub percpu: Vec<u64>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub percpu_kernel: Vec<u64>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub percpu_user: Vec<u64>,
    pub kernel: u64,
    pub user: u64,
}

#[derive(Serialize, Default, Debug, Clone, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Throttling {
    #[serde(skip_serializing_if = "is_zero")]
    pub periods: u64,
    #[serde(skip_serializing_if = "is_zero")]
    pub throttled_periods: u64,
    /// Nanoseconds.
    #[serde(skip_serializing_if = "is_zero")]
    pub throttled_time: u64,
}

#[derive(Serialize, Default, Debug, Clone, PartialEq)]
pub struct Psi {
    #[serde(skip_serializing_if = "is_default")]
    pub some: PsiData,
    #[serde(skip_serializing_if = "is_default")]
    pub full: PsiData,
}

#[derive(Serialize, Default, Debug, Clone, PartialEq)]
pub struct PsiData {
    #[serde(serialize_with = "go_float")]
    pub avg10: f64,
    #[serde(serialize_with = "go_float")]
    pub avg60: f64,
    #[serde(serialize_with = "go_float")]
    pub avg300: f64,
    pub total: u64,
}

#[derive(Serialize, Default, Debug, Clone, PartialEq, Eq)]
pub struct CpuSet {
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub cpus: Vec<u16>,
    pub cpu_exclusive: u64,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub mems: Vec<u16>,
    pub mem_hardwall: u64,
    pub mem_exclusive: u64,
    pub memory_migrate: u64,
    pub memory_spread_page: u64,
    pub memory_spread_slab: u64,
    pub memory_pressure: u64,
    pub sched_load_balance: u64,
    pub sched_relax_domain_level: i64,
}

#[derive(Serialize, Default, Debug, Clone, PartialEq, Eq)]
pub struct MemoryEntry {
    pub limit: u64,
    #[serde(skip_serializing_if = "is_zero")]
    pub usage: u64,
    #[serde(skip_serializing_if = "is_zero")]
    pub max: u64,
    pub failcnt: u64,
}

#[derive(Serialize, Default, Debug, Clone, PartialEq)]
pub struct Memory {
    #[serde(skip_serializing_if = "is_zero")]
    pub cache: u64,
    #[serde(skip_serializing_if = "is_default")]
    pub usage: MemoryEntry,
    /// Memory plus swap, on v2 as well (as v1's memsw counts it).
    #[serde(skip_serializing_if = "is_default")]
    pub swap: MemoryEntry,
    #[serde(skip_serializing_if = "is_default")]
    pub kernel: MemoryEntry,
    #[serde(rename = "kernelTCP", skip_serializing_if = "is_default")]
    pub kernel_tcp: MemoryEntry,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub raw: BTreeMap<String, u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub psi: Option<Psi>,
}

#[derive(Serialize, Default, Debug, Clone, PartialEq, Eq)]
pub struct Pids {
    #[serde(skip_serializing_if = "is_zero")]
    pub current: u64,
    /// 0 when unlimited.
    #[serde(skip_serializing_if = "is_zero")]
    pub limit: u64,
}

#[derive(Serialize, Default, Debug, Clone, PartialEq, Eq)]
pub struct BlkioEntry {
    #[serde(skip_serializing_if = "is_zero")]
    pub major: u64,
    #[serde(skip_serializing_if = "is_zero")]
    pub minor: u64,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub op: String,
    #[serde(skip_serializing_if = "is_zero")]
    pub value: u64,
}

#[derive(Serialize, Default, Debug, Clone, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Blkio {
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub io_service_bytes_recursive: Vec<BlkioEntry>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub io_serviced_recursive: Vec<BlkioEntry>,
    /// runc's key lacks the "d".
    #[serde(rename = "ioQueueRecursive", skip_serializing_if = "Vec::is_empty")]
    pub io_queued_recursive: Vec<BlkioEntry>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub io_service_time_recursive: Vec<BlkioEntry>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub io_wait_time_recursive: Vec<BlkioEntry>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub io_merged_recursive: Vec<BlkioEntry>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub io_time_recursive: Vec<BlkioEntry>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub sectors_recursive: Vec<BlkioEntry>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub psi: Option<Psi>,
}

#[derive(Serialize, Default, Debug, Clone, PartialEq, Eq)]
pub struct Hugetlb {
    #[serde(skip_serializing_if = "is_zero")]
    pub usage: u64,
    #[serde(skip_serializing_if = "is_zero")]
    pub max: u64,
    pub failcnt: u64,
}

/// Intel RDT (resctrl) is not supported: an empty object, as runc prints without it.
#[derive(Serialize, Default, Debug, Clone, PartialEq, Eq)]
pub struct IntelRdt {}

#[derive(Serialize, Default, Debug, Clone, PartialEq, Eq)]
#[serde(rename_all = "PascalCase")]
pub struct NetworkInterface {
    pub name: String,
    pub rx_bytes: u64,
    pub rx_packets: u64,
    pub rx_errors: u64,
    pub rx_dropped: u64,
    pub tx_bytes: u64,
    pub tx_packets: u64,
    pub tx_errors: u64,
    pub tx_dropped: u64,
}

// ---- reading -------------------------------------------------------------------------------

/// The container's stats on this host; `cgroup_path` is the path recorded in its state.
pub fn read(cgroup_path: &Path) -> Result<Stats> {
    let root = Path::new(super::CGROUP_ROOT);
    if super::is_unified() {
        read_v2(&root.join(rel(cgroup_path)))
    } else {
        read_v1(root, cgroup_path)
    }
}

fn rel(p: &Path) -> &Path {
    p.strip_prefix("/").unwrap_or(p)
}

/// A file's contents; `None` when it does not exist (a controller not mounted or not enabled,
/// or a kernel without that file).
fn read_opt(path: &Path) -> Result<Option<String>> {
    match fs::read_to_string(path) {
        Ok(s) => Ok(Some(s)),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
        // Reading some files of a cgroup being removed, or PSI with psi=0, fails this way.
        Err(e) if e.raw_os_error() == Some(libc::ENOTSUP) => Ok(None),
        Err(e) => Err(Error::Cgroup(format!("read {}: {e}", path.display()))),
    }
}

fn bad(path: &Path, what: &str) -> Error {
    Error::Cgroup(format!("{}: unexpected content: {what:?}", path.display()))
}

/// A number, where "max" means unlimited (u64::MAX, as runc reports it).
fn parse_u64(path: &Path, s: &str) -> Result<u64> {
    let s = s.trim();
    if s == "max" {
        return Ok(u64::MAX);
    }
    s.parse().map_err(|_| bad(path, s))
}

/// A single-number file; 0 when missing.
fn read_u64(dir: &Path, file: &str) -> Result<u64> {
    let path = dir.join(file);
    match read_opt(&path)? {
        Some(s) => parse_u64(&path, &s),
        None => Ok(0),
    }
}

/// `key value` lines (cpu.stat, memory.stat, memory.events...); empty when missing.
fn read_keyed(dir: &Path, file: &str) -> Result<BTreeMap<String, u64>> {
    let path = dir.join(file);
    let mut map = BTreeMap::new();
    let Some(text) = read_opt(&path)? else {
        return Ok(map);
    };
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let mut f = line.split_whitespace();
        let (Some(k), Some(v), None) = (f.next(), f.next(), f.next()) else {
            return Err(bad(&path, line));
        };
        map.insert(k.to_string(), parse_u64(&path, v)?);
    }
    Ok(map)
}

/// A cpu or node list such as `0-3,8,10-11`.
fn parse_list(path: &Path, s: &str) -> Result<Vec<u16>> {
    let mut out = Vec::new();
    for part in s.trim().split(',').filter(|p| !p.is_empty()) {
        let num = |x: &str| x.trim().parse::<u16>().map_err(|_| bad(path, part));
        match part.split_once('-') {
            Some((a, b)) => {
                let (a, b) = (num(a)?, num(b)?);
                if a > b {
                    return Err(bad(path, part));
                }
                out.extend(a..=b);
            }
            None => out.push(num(part)?),
        }
    }
    Ok(out)
}

/// A PSI file (`some avg10=0.00 avg60=0.00 avg300=0.00 total=0`); `None` when missing.
fn read_psi(dir: &Path, file: &str) -> Result<Option<Psi>> {
    let path = dir.join(file);
    let Some(text) = read_opt(&path)? else {
        return Ok(None);
    };
    let mut psi = Psi::default();
    for line in text.lines() {
        let mut f = line.split_whitespace();
        let slot = match f.next() {
            Some("some") => &mut psi.some,
            Some("full") => &mut psi.full,
            _ => continue,
        };
        for kv in f {
            let (k, v) = kv.split_once('=').ok_or_else(|| bad(&path, kv))?;
            let float = || v.parse::<f64>().map_err(|_| bad(&path, kv));
            match k {
                "avg10" => slot.avg10 = float()?,
                "avg60" => slot.avg60 = float()?,
                "avg300" => slot.avg300 = float()?,
                "total" => slot.total = v.parse().map_err(|_| bad(&path, kv))?,
                _ => {}
            }
        }
    }
    Ok(Some(psi))
}

// ---- cgroup v1 -----------------------------------------------------------------------------

/// cgroup v1: each controller's directory is `<root>/<controller>/<path>`; a controller that is
/// not mounted (or where the container has no directory) leaves its part empty, as in runc.
pub fn read_v1(root: &Path, cgroup_path: &Path) -> Result<Stats> {
    let dir = |ctrl: &str| -> Option<PathBuf> {
        let d = root.join(ctrl).join(rel(cgroup_path));
        d.is_dir().then_some(d)
    };
    let ctrls = [
        "cpu", "cpuacct", "cpuset", "memory", "pids", "blkio", "hugetlb",
    ];
    if ctrls.iter().all(|c| dir(c).is_none()) {
        return Err(Error::Cgroup(format!(
            "{}: no cgroup directory under {}",
            cgroup_path.display(),
            root.display()
        )));
    }
    let mut st = Stats::default();
    if let Some(d) = dir("cpuacct") {
        st.cpu.usage = v1_cpuacct(&d)?;
    }
    if let Some(d) = dir("cpu") {
        let s = read_keyed(&d, "cpu.stat")?;
        st.cpu.throttling = Throttling {
            periods: s.get("nr_periods").copied().unwrap_or(0),
            throttled_periods: s.get("nr_throttled").copied().unwrap_or(0),
            throttled_time: s.get("throttled_time").copied().unwrap_or(0),
        };
    }
    if let Some(d) = dir("cpuset") {
        st.cpuset = v1_cpuset(&d)?;
    }
    if let Some(d) = dir("memory") {
        st.memory = v1_memory(&d)?;
    }
    if let Some(d) = dir("pids") {
        st.pids = pids(&d)?;
    }
    if let Some(d) = dir("blkio") {
        st.blkio = v1_blkio(&d)?;
    }
    if let Some(d) = dir("hugetlb") {
        for size in hugetlb_sizes(&d, ".limit_in_bytes")? {
            let p = format!("hugetlb.{size}");
            let h = Hugetlb {
                usage: read_u64(&d, &format!("{p}.usage_in_bytes"))?,
                max: read_u64(&d, &format!("{p}.max_usage_in_bytes"))?,
                failcnt: read_u64(&d, &format!("{p}.failcnt"))?,
            };
            st.hugetlb.insert(size, h);
        }
    }
    Ok(st)
}

/// `cpuacct.stat` counts USER_HZ ticks, which Linux fixes at 100 a second for this interface.
const NS_PER_TICK: u64 = 1_000_000_000 / 100;

fn v1_cpuacct(d: &Path) -> Result<CpuUsage> {
    let mut u = CpuUsage {
        total: read_u64(d, "cpuacct.usage")?,
        ..Default::default()
    };
    let path = d.join("cpuacct.usage_percpu");
    if let Some(text) = read_opt(&path)? {
        u.percpu = text
            .split_whitespace()
            .map(|v| parse_u64(&path, v))
            .collect::<Result<_>>()?;
    }
    // "cpu user system" then one row per cpu.
    let path = d.join("cpuacct.usage_all");
    if let Some(text) = read_opt(&path)? {
        for line in text.lines().skip(1).filter(|l| !l.trim().is_empty()) {
            let f: Vec<&str> = line.split_whitespace().collect();
            let [_, user, sys] = f[..] else {
                return Err(bad(&path, line));
            };
            u.percpu_user.push(parse_u64(&path, user)?);
            u.percpu_kernel.push(parse_u64(&path, sys)?);
        }
    }
    let s = read_keyed(d, "cpuacct.stat")?;
    u.user = s
        .get("user")
        .copied()
        .unwrap_or(0)
        .saturating_mul(NS_PER_TICK);
    u.kernel = s
        .get("system")
        .copied()
        .unwrap_or(0)
        .saturating_mul(NS_PER_TICK);
    Ok(u)
}

fn v1_cpuset(d: &Path) -> Result<CpuSet> {
    let list = |f: &str| -> Result<Vec<u16>> {
        let path = d.join(f);
        match read_opt(&path)? {
            Some(s) => parse_list(&path, &s),
            None => Ok(Vec::new()),
        }
    };
    let n = |f: &str| read_u64(d, &format!("cpuset.{f}"));
    let path = d.join("cpuset.sched_relax_domain_level");
    let relax = match read_opt(&path)? {
        Some(s) => s.trim().parse().map_err(|_| bad(&path, &s))?,
        None => 0,
    };
    Ok(CpuSet {
        cpus: list("cpuset.cpus")?,
        cpu_exclusive: n("cpu_exclusive")?,
        mems: list("cpuset.mems")?,
        mem_hardwall: n("mem_hardwall")?,
        mem_exclusive: n("mem_exclusive")?,
        memory_migrate: n("memory_migrate")?,
        memory_spread_page: n("memory_spread_page")?,
        memory_spread_slab: n("memory_spread_slab")?,
        memory_pressure: n("memory_pressure")?,
        sched_load_balance: n("sched_load_balance")?,
        sched_relax_domain_level: relax,
    })
}

fn v1_memory_entry(d: &Path, prefix: &str) -> Result<MemoryEntry> {
    Ok(MemoryEntry {
        limit: read_u64(d, &format!("{prefix}.limit_in_bytes"))?,
        usage: read_u64(d, &format!("{prefix}.usage_in_bytes"))?,
        max: read_u64(d, &format!("{prefix}.max_usage_in_bytes"))?,
        failcnt: read_u64(d, &format!("{prefix}.failcnt"))?,
    })
}

fn v1_memory(d: &Path) -> Result<Memory> {
    let raw = read_keyed(d, "memory.stat")?;
    Ok(Memory {
        cache: raw.get("cache").copied().unwrap_or(0),
        usage: v1_memory_entry(d, "memory")?,
        // memsw and kmem are missing without swap accounting or on newer kernels: zero then.
        swap: v1_memory_entry(d, "memory.memsw")?,
        kernel: v1_memory_entry(d, "memory.kmem")?,
        kernel_tcp: v1_memory_entry(d, "memory.kmem.tcp")?,
        raw,
        psi: None,
    })
}

/// `pids.current` and `pids.max` (unlimited is 0); without the pids controller (v2) the
/// processes in `cgroup.procs` are counted, as runc does.
fn pids(d: &Path) -> Result<Pids> {
    let path = d.join("pids.current");
    let Some(cur) = read_opt(&path)? else {
        let procs = read_opt(&d.join("cgroup.procs"))?.unwrap_or_default();
        return Ok(Pids {
            current: procs.lines().filter(|l| !l.trim().is_empty()).count() as u64,
            limit: 0,
        });
    };
    let limit = read_u64(d, "pids.max")?;
    Ok(Pids {
        current: parse_u64(&path, &cur)?,
        limit: if limit == u64::MAX { 0 } else { limit },
    })
}

/// Lines `MAJ:MIN Op value`, `MAJ:MIN value` or `Total value` (skipped); `None` when the
/// file is missing or empty.
fn v1_blkio_file(d: &Path, file: &str) -> Result<Option<Vec<BlkioEntry>>> {
    let path = d.join(file);
    let Some(text) = read_opt(&path)? else {
        return Ok(None);
    };
    let mut out = Vec::new();
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.first() == Some(&"Total") {
            continue;
        }
        let (dev, op, value) = match f[..] {
            [dev, op, value] => (dev, op, value),
            [dev, value] => (dev, "", value),
            _ => return Err(bad(&path, line)),
        };
        let (maj, min) = dev.split_once(':').ok_or_else(|| bad(&path, line))?;
        out.push(BlkioEntry {
            major: parse_u64(&path, maj)?,
            minor: parse_u64(&path, min)?,
            op: op.to_string(),
            value: parse_u64(&path, value)?,
        });
    }
    Ok((!out.is_empty()).then_some(out))
}

/// runc's order of preference: bfq with debug files, bfq, cfq, then the throttle policy's
/// counters (recursive, then not). A set is taken when its first file has entries.
fn v1_blkio(d: &Path) -> Result<Blkio> {
    type Slot = fn(&mut Blkio) -> &mut Vec<BlkioEntry>;
    let serviced: Slot = |b| &mut b.io_serviced_recursive;
    let bytes: Slot = |b| &mut b.io_service_bytes_recursive;
    let sectors: Slot = |b| &mut b.sectors_recursive;
    let svc_time: Slot = |b| &mut b.io_service_time_recursive;
    let wait: Slot = |b| &mut b.io_wait_time_recursive;
    let merged: Slot = |b| &mut b.io_merged_recursive;
    let queued: Slot = |b| &mut b.io_queued_recursive;
    let time: Slot = |b| &mut b.io_time_recursive;
    let full = |p: &str| -> Vec<(String, Slot)> {
        vec![
            (format!("{p}sectors_recursive"), sectors),
            (format!("{p}io_service_time_recursive"), svc_time),
            (format!("{p}io_wait_time_recursive"), wait),
            (format!("{p}io_merged_recursive"), merged),
            (format!("{p}io_queued_recursive"), queued),
            (format!("{p}time_recursive"), time),
            (format!("{p}io_serviced_recursive"), serviced),
            (format!("{p}io_service_bytes_recursive"), bytes),
        ]
    };
    let two = |a: &str, b: &str| -> Vec<(String, Slot)> {
        vec![(a.to_string(), serviced), (b.to_string(), bytes)]
    };
    let sets = [
        full("blkio.bfq."),
        two(
            "blkio.bfq.io_serviced_recursive",
            "blkio.bfq.io_service_bytes_recursive",
        ),
        full("blkio."),
        two(
            "blkio.throttle.io_serviced_recursive",
            "blkio.throttle.io_service_bytes_recursive",
        ),
        two(
            "blkio.throttle.io_serviced",
            "blkio.throttle.io_service_bytes",
        ),
    ];
    let mut b = Blkio::default();
    for set in sets {
        let Some(first) = v1_blkio_file(d, &set[0].0)? else {
            continue;
        };
        *(set[0].1)(&mut b) = first;
        for (file, slot) in &set[1..] {
            *slot(&mut b) = v1_blkio_file(d, file)?.unwrap_or_default();
        }
        break;
    }
    Ok(b)
}

/// Page sizes (`2MB`, `1GB`) named by the `hugetlb.<size><suffix>` files of a cgroup.
fn hugetlb_sizes(d: &Path, suffix: &str) -> Result<Vec<String>> {
    let entries = fs::read_dir(d).map_err(|e| Error::Cgroup(format!("{}: {e}", d.display())))?;
    let mut sizes: Vec<String> = entries
        .filter_map(|e| e.ok())
        .filter_map(|e| e.file_name().into_string().ok())
        .filter_map(|n| {
            let size = n.strip_prefix("hugetlb.")?.strip_suffix(suffix)?;
            // Leaves out hugetlb.2MB.rsvd.max and the like.
            (!size.contains('.')).then(|| size.to_string())
        })
        .collect();
    sizes.sort();
    Ok(sizes)
}

// ---- cgroup v2 -----------------------------------------------------------------------------

/// cgroup v2: everything from the container's one directory, converted to v1's meaning where
/// runc does (usec to nsec, swap as memory+swap, io.stat into the service tables).
pub fn read_v2(d: &Path) -> Result<Stats> {
    if !d.is_dir() {
        return Err(Error::Cgroup(format!("{} does not exist", d.display())));
    }
    let mut st = Stats::default();

    // cpu.stat exists whether or not the cpu controller is enabled.
    let c = read_keyed(d, "cpu.stat")?;
    let us = |k: &str| c.get(k).copied().unwrap_or(0).saturating_mul(1000);
    st.cpu.usage = CpuUsage {
        total: us("usage_usec"),
        user: us("user_usec"),
        kernel: us("system_usec"),
        ..Default::default()
    };
    st.cpu.throttling = Throttling {
        periods: c.get("nr_periods").copied().unwrap_or(0),
        throttled_periods: c.get("nr_throttled").copied().unwrap_or(0),
        throttled_time: us("throttled_usec"),
    };
    st.cpu.psi = read_psi(d, "cpu.pressure")?;

    st.memory = v2_memory(d)?;
    st.memory.psi = read_psi(d, "memory.pressure")?;

    st.pids = pids(d)?;

    st.blkio = v2_io(d)?;
    st.blkio.psi = read_psi(d, "io.pressure")?;

    for size in hugetlb_sizes(d, ".max")? {
        let p = format!("hugetlb.{size}");
        // Reservations, where the kernel has them, are what a fault-time limit compares.
        let usage = match read_opt(&d.join(format!("{p}.rsvd.current")))? {
            Some(s) => parse_u64(&d.join(format!("{p}.rsvd.current")), &s)?,
            None => read_u64(d, &format!("{p}.current"))?,
        };
        let events = read_keyed(d, &format!("{p}.events"))?;
        let h = Hugetlb {
            usage,
            max: 0,
            failcnt: events.get("max").copied().unwrap_or(0),
        };
        st.hugetlb.insert(size, h);
    }
    Ok(st)
}

fn v2_memory_entry(d: &Path, prefix: &str) -> Result<Option<MemoryEntry>> {
    let path = d.join(format!("{prefix}.current"));
    let Some(cur) = read_opt(&path)? else {
        return Ok(None);
    };
    Ok(Some(MemoryEntry {
        usage: parse_u64(&path, &cur)?,
        limit: read_u64(d, &format!("{prefix}.max"))?,
        // memory.peak since 5.19, memory.swap.peak since 6.5.
        max: read_u64(d, &format!("{prefix}.peak"))?,
        failcnt: 0,
    }))
}

fn v2_memory(d: &Path) -> Result<Memory> {
    let raw = read_keyed(d, "memory.stat")?;
    let mut m = Memory {
        cache: raw.get("file").copied().unwrap_or(0),
        raw,
        ..Default::default()
    };
    let Some(usage) = v2_memory_entry(d, "memory")? else {
        // The memory controller is not enabled for this cgroup.
        return Ok(m);
    };
    // Without swap accounting there is no memory.swap.*: swap stays zero then.
    if let Some(swap) = v2_memory_entry(d, "memory.swap")? {
        m.swap = MemoryEntry {
            usage: swap.usage.saturating_add(usage.usage),
            limit: if swap.limit == u64::MAX {
                u64::MAX
            } else {
                swap.limit.saturating_add(usage.limit)
            },
            // A peak of the sum cannot be made from the two peaks.
            max: 0,
            failcnt: 0,
        };
    }
    m.usage = usage;
    Ok(m)
}

/// `MAJ:MIN rbytes=.. wbytes=.. rios=.. wios=.. ...` lines, into v1's service tables.
fn v2_io(d: &Path) -> Result<Blkio> {
    let path = d.join("io.stat");
    let mut b = Blkio::default();
    let Some(text) = read_opt(&path)? else {
        return Ok(b);
    };
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let mut f = line.split_whitespace();
        let dev = f.next().unwrap_or_default();
        let (maj, min) = dev.split_once(':').ok_or_else(|| bad(&path, line))?;
        let (major, minor) = (parse_u64(&path, maj)?, parse_u64(&path, min)?);
        for kv in f {
            let Some((k, v)) = kv.split_once('=') else {
                continue;
            };
            let (table, op) = match k {
                "rbytes" => (&mut b.io_service_bytes_recursive, "Read"),
                "wbytes" => (&mut b.io_service_bytes_recursive, "Write"),
                "rios" => (&mut b.io_serviced_recursive, "Read"),
                "wios" => (&mut b.io_serviced_recursive, "Write"),
                _ => continue,
            };
            table.push(BlkioEntry {
                major,
                minor,
                op: op.to_string(),
                value: parse_u64(&path, v)?,
            });
        }
    }
    Ok(b)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    fn put(dir: &Path, files: &[(&str, &str)]) {
        fs::create_dir_all(dir).unwrap();
        for (name, text) in files {
            fs::write(dir.join(name), text).unwrap();
        }
    }

    fn keys(v: &Value) -> Vec<String> {
        v.as_object().unwrap().keys().cloned().collect()
    }

    #[test]
    fn empty_stats_have_runcs_top_level_shape() {
        let v = serde_json::to_value(Stats::default()).unwrap();
        let mut k = keys(&v);
        k.sort();
        assert_eq!(
            k,
            [
                "blkio",
                "cpu",
                "cpuset",
                "hugetlb",
                "intel_rdt",
                "memory",
                "network_interfaces",
                "pids"
            ]
        );
        // Zero structs are left out, as Go's omitzero does; cpuset's scalars are not omitempty.
        assert_eq!(v["cpu"], serde_json::json!({}));
        assert_eq!(v["memory"], serde_json::json!({}));
        assert_eq!(v["pids"], serde_json::json!({}));
        assert_eq!(v["network_interfaces"], Value::Null);
        assert_eq!(v["cpuset"]["sched_relax_domain_level"], 0);
        assert!(v["cpuset"].get("cpus").is_none());
    }

    #[test]
    fn v1_fixture() {
        let t = tempfile::tempdir().unwrap();
        let root = t.path();
        let cg = Path::new("/berth/c1");
        let d = |c: &str| root.join(c).join("berth/c1");
        put(
            &d("cpuacct"),
            &[
                ("cpuacct.usage", "5000\n"),
                ("cpuacct.usage_percpu", "3000 2000 \n"),
                (
                    "cpuacct.usage_all",
                    "cpu user system\n0 2500 500\n1 1500 500\n",
                ),
                ("cpuacct.stat", "user 3\nsystem 1\n"),
            ],
        );
        put(
            &d("cpu"),
            &[(
                "cpu.stat",
                "nr_periods 10\nnr_throttled 2\nthrottled_time 777\n",
            )],
        );
        put(
            &d("cpuset"),
            &[
                ("cpuset.cpus", "0-2,5\n"),
                ("cpuset.mems", "0\n"),
                ("cpuset.sched_load_balance", "1\n"),
                ("cpuset.sched_relax_domain_level", "-1\n"),
            ],
        );
        put(
            &d("memory"),
            &[
                ("memory.stat", "cache 4096\nrss 8192\n"),
                ("memory.limit_in_bytes", "8388608\n"),
                ("memory.usage_in_bytes", "12288\n"),
                ("memory.max_usage_in_bytes", "20000\n"),
                ("memory.failcnt", "3\n"),
                ("memory.memsw.limit_in_bytes", "8388608\n"),
                ("memory.memsw.usage_in_bytes", "12288\n"),
                ("memory.memsw.failcnt", "0\n"),
            ],
        );
        put(
            &d("pids"),
            &[("pids.current", "2\n"), ("pids.max", "max\n")],
        );
        put(
            &d("blkio"),
            &[
                ("blkio.bfq.io_serviced_recursive", ""),
                (
                    "blkio.throttle.io_serviced_recursive",
                    "8:0 Read 4\n8:0 Write 1\nTotal 5\n",
                ),
                (
                    "blkio.throttle.io_service_bytes_recursive",
                    "8:0 Read 16384\n8:0 Write 0\nTotal 16384\n",
                ),
            ],
        );
        put(
            &d("hugetlb"),
            &[
                ("hugetlb.2MB.limit_in_bytes", "0\n"),
                ("hugetlb.2MB.usage_in_bytes", "0\n"),
                ("hugetlb.2MB.failcnt", "4\n"),
            ],
        );
        let st = read_v1(root, cg).unwrap();
        let v = serde_json::to_value(&st).unwrap();
        assert_eq!(v["cpu"]["usage"]["total"], 5000);
        assert_eq!(v["cpu"]["usage"]["percpu"], serde_json::json!([3000, 2000]));
        assert_eq!(
            v["cpu"]["usage"]["percpu_user"],
            serde_json::json!([2500, 1500])
        );
        assert_eq!(
            v["cpu"]["usage"]["percpu_kernel"],
            serde_json::json!([500, 500])
        );
        assert_eq!(v["cpu"]["usage"]["user"], 30_000_000);
        assert_eq!(v["cpu"]["usage"]["kernel"], 10_000_000);
        assert_eq!(v["cpu"]["throttling"]["throttledPeriods"], 2);
        assert_eq!(v["cpu"]["throttling"]["throttledTime"], 777);
        assert_eq!(v["cpuset"]["cpus"], serde_json::json!([0, 1, 2, 5]));
        assert_eq!(v["cpuset"]["sched_relax_domain_level"], -1);
        assert_eq!(v["memory"]["cache"], 4096);
        assert_eq!(v["memory"]["usage"]["limit"], 8388608);
        assert_eq!(v["memory"]["usage"]["max"], 20000);
        assert_eq!(v["memory"]["usage"]["failcnt"], 3);
        assert_eq!(v["memory"]["swap"]["limit"], 8388608);
        assert_eq!(v["memory"]["raw"]["rss"], 8192);
        // No kmem files: the zero entries are left out.
        assert!(v["memory"].get("kernel").is_none());
        assert!(v["memory"].get("kernelTCP").is_none());
        assert_eq!(v["pids"], serde_json::json!({"current": 2}));
        // The empty bfq file makes runc (and berth) fall through to the throttle counters.
        assert_eq!(
            v["blkio"]["ioServicedRecursive"][0],
            // minor 0 is left out: omitempty.
            serde_json::json!({"major": 8, "op": "Read", "value": 4})
        );
        assert_eq!(
            v["blkio"]["ioServiceBytesRecursive"][1],
            serde_json::json!({"major": 8, "op": "Write"})
        );
        assert_eq!(v["hugetlb"]["2MB"], serde_json::json!({"failcnt": 4}));
    }

    #[test]
    fn v1_missing_cgroup_is_an_error() {
        let t = tempfile::tempdir().unwrap();
        assert!(read_v1(t.path(), Path::new("/nope")).is_err());
    }

    #[test]
    fn v1_garbage_is_an_error() {
        let t = tempfile::tempdir().unwrap();
        put(
            &t.path().join("pids/c"),
            &[("pids.current", "lots\n"), ("pids.max", "5\n")],
        );
        let e = read_v1(t.path(), Path::new("/c")).unwrap_err().to_string();
        assert!(e.contains("pids.current"), "{e}");
    }

    #[test]
    fn v2_fixture() {
        let t = tempfile::tempdir().unwrap();
        let d = t.path().join("berth/c2");
        put(
            &d,
            &[
                (
                    "cpu.stat",
                    "usage_usec 1500\nuser_usec 1000\nsystem_usec 500\nnr_periods 0\n\
                     nr_throttled 0\nthrottled_usec 0\n",
                ),
                (
                    "cpu.pressure",
                    "some avg10=1.50 avg60=0.00 avg300=0.00 total=42\n\
                     full avg10=0.00 avg60=0.00 avg300=0.00 total=0\n",
                ),
                ("memory.stat", "anon 8192\nfile 4096\n"),
                ("memory.current", "12288\n"),
                ("memory.max", "8388608\n"),
                ("memory.peak", "16384\n"),
                ("memory.swap.current", "100\n"),
                ("memory.swap.max", "0\n"),
                ("memory.events", "low 0\nhigh 0\nmax 5\noom 1\noom_kill 1\n"),
                ("pids.current", "3\n"),
                ("pids.max", "64\n"),
                (
                    "io.stat",
                    "254:0 rbytes=4096 wbytes=0 rios=1 wios=0 dbytes=0 dios=0\n",
                ),
                ("hugetlb.2MB.max", "max\n"),
                ("hugetlb.2MB.current", "0\n"),
                ("hugetlb.2MB.rsvd.max", "max\n"),
                ("hugetlb.2MB.events", "max 2\n"),
            ],
        );
        let v = serde_json::to_value(read_v2(&d).unwrap()).unwrap();
        assert_eq!(
            v["cpu"]["usage"],
            serde_json::json!({"total": 1_500_000, "kernel": 500_000, "user": 1_000_000})
        );
        assert!(v["cpu"].get("throttling").is_none());
        assert_eq!(
            v["cpu"]["psi"],
            serde_json::json!({"some": {"avg10": 1.5, "avg60": 0, "avg300": 0, "total": 42}})
        );
        assert_eq!(v["memory"]["cache"], 4096);
        assert_eq!(
            v["memory"]["usage"],
            serde_json::json!({"limit": 8388608, "usage": 12288, "max": 16384, "failcnt": 0})
        );
        // memory+swap, as v1 reports it.
        assert_eq!(
            v["memory"]["swap"],
            serde_json::json!({"limit": 8388608, "usage": 12388, "failcnt": 0})
        );
        assert_eq!(v["memory"]["raw"]["anon"], 8192);
        assert!(v["memory"].get("psi").is_none());
        assert_eq!(v["pids"], serde_json::json!({"current": 3, "limit": 64}));
        assert_eq!(
            v["blkio"]["ioServiceBytesRecursive"],
            serde_json::json!([
                {"major": 254, "op": "Read", "value": 4096},
                {"major": 254, "op": "Write"}
            ])
        );
        assert_eq!(v["blkio"]["ioServicedRecursive"][0]["value"], 1);
        assert_eq!(v["hugetlb"], serde_json::json!({"2MB": {"failcnt": 2}}));
    }

    #[test]
    fn v2_unlimited_and_missing_controllers() {
        let t = tempfile::tempdir().unwrap();
        let d = t.path().join("c");
        put(
            &d,
            &[
                ("cgroup.procs", "10\n11\n"),
                ("memory.current", "1\n"),
                ("memory.max", "max\n"),
                ("memory.swap.current", "0\n"),
                ("memory.swap.max", "max\n"),
            ],
        );
        let v = serde_json::to_value(read_v2(&d).unwrap()).unwrap();
        assert_eq!(v["memory"]["usage"]["limit"], u64::MAX);
        assert_eq!(v["memory"]["swap"]["limit"], u64::MAX);
        // No pids controller: counted from cgroup.procs, no limit.
        assert_eq!(v["pids"], serde_json::json!({"current": 2}));
        assert!(read_v2(&t.path().join("gone")).is_err());
    }

    #[test]
    fn cpu_lists() {
        let p = Path::new("x");
        assert_eq!(parse_list(p, "0-3,8\n").unwrap(), vec![0, 1, 2, 3, 8]);
        assert_eq!(parse_list(p, "\n").unwrap(), Vec::<u16>::new());
        assert!(parse_list(p, "3-1").is_err());
        assert!(parse_list(p, "a").is_err());
    }
}
