//! `linux.resources` as cgroup file writes, for v1, v2 and hybrid hosts.
//!
//! berth computes every write first (a `Plan`: controller, file, value, and the config field it
//! comes from), checks that each file exists, and only then writes. So a value the host cannot
//! apply is an error naming the field before anything changed, and `update` is never half
//! applied by a missing file. libcgroups' own writers are not used for limits: on v2 they leave
//! swap unlimited when it equals the memory limit, overflow the blkio→io weight conversion,
//! fail without BFQ and refuse leafWeight; on v1 they skip weightDevice.

use std::fs;
use std::io::ErrorKind;
use std::path::{Path, PathBuf};

use oci_spec::runtime::{LinuxBlockIo, LinuxCpu, LinuxMemory, LinuxResources, LinuxThrottleDevice};

use crate::error::{Error, Result};
use crate::logging;

const CGROUP_ROOT: &str = "/sys/fs/cgroup";

/// Which cgroup version holds a controller on this host.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Version {
    V1,
    V2,
}

/// Where each controller lives: the v1 hierarchies, and the cgroup2 tree (the whole of
/// `/sys/fs/cgroup` on a v2 host, `/sys/fs/cgroup/unified` on a hybrid one).
#[derive(Clone, Debug)]
pub struct Layout {
    /// True on a pure v2 host.
    pub unified: bool,
    pub root: PathBuf,
    /// Controllers of the cgroup2 tree (its root's cgroup.controllers).
    pub v2_controllers: Vec<String>,
    /// The container's cgroup (relative to each hierarchy), once it exists: optional knobs
    /// (BFQ's, CFQ's) are looked for there.
    pub cgroup: Option<PathBuf>,
}

impl Layout {
    pub fn detect() -> Layout {
        let unified = super::is_unified();
        let v2_root = if unified {
            PathBuf::from(CGROUP_ROOT)
        } else {
            Path::new(CGROUP_ROOT).join("unified")
        };
        let v2_controllers = fs::read_to_string(v2_root.join("cgroup.controllers"))
            .map(|s| s.split_whitespace().map(str::to_string).collect())
            .unwrap_or_default();
        Layout {
            unified,
            root: PathBuf::from(CGROUP_ROOT),
            v2_controllers,
            cgroup: None,
        }
    }

    fn v2_root(&self) -> PathBuf {
        if self.unified {
            self.root.clone()
        } else {
            self.root.join("unified")
        }
    }

    /// The version holding `ctrl`, or None when the host has no such controller. A v1
    /// hierarchy wins over the hybrid cgroup2 tree, as the kernel binds a controller to one.
    pub fn version_of(&self, ctrl: &str) -> Option<Version> {
        if !self.unified && self.root.join(ctrl).join("cgroup.procs").exists() {
            return Some(Version::V1);
        }
        self.v2_controllers
            .iter()
            .any(|c| c == ctrl)
            .then_some(Version::V2)
    }

    /// The directory of the container's cgroup `rel` in the hierarchy holding `ctrl`.
    pub fn dir(&self, ctrl: &str, rel: &Path) -> Option<PathBuf> {
        let rel = rel.strip_prefix("/").unwrap_or(rel);
        match self.version_of(ctrl)? {
            Version::V1 => Some(self.root.join(ctrl).join(rel)),
            Version::V2 => Some(self.v2_root().join(rel)),
        }
    }
}

/// What to do when the file of a write does not exist.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Missing {
    /// The host cannot apply the field: an error naming it.
    Fail,
    /// Nothing to enforce (e.g. "no swap" where swap is not accounted): skip it.
    Skip,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Write {
    /// The config field, for errors: `linux.resources.memory.limit`.
    pub field: String,
    pub ctrl: &'static str,
    pub file: String,
    pub value: String,
    pub missing: Missing,
}

/// Current values the plan needs to order writes (memory before or after swap on v1).
#[derive(Clone, Copy, Debug, Default)]
pub struct Current {
    pub memory_limit: Option<i64>,
}

#[derive(Default)]
struct Plan {
    writes: Vec<Write>,
}

impl Plan {
    fn add(
        &mut self,
        field: impl Into<String>,
        ctrl: &'static str,
        file: impl Into<String>,
        value: impl ToString,
    ) {
        self.push(field, ctrl, file, value, Missing::Fail);
    }

    fn push(
        &mut self,
        field: impl Into<String>,
        ctrl: &'static str,
        file: impl Into<String>,
        value: impl ToString,
        missing: Missing,
    ) {
        self.writes.push(Write {
            field: field.into(),
            ctrl,
            file: file.into(),
            value: value.to_string(),
            missing,
        });
    }
}

fn need(layout: &Layout, ctrl: &str, field: &str) -> Result<Version> {
    layout
        .version_of(ctrl)
        .ok_or_else(|| Error::config(field, format!("this host has no {ctrl} cgroup controller")))
}

fn unsupported_on_v2(field: &str) -> Error {
    Error::config(field, "not supported on cgroup v2")
}

/// Every write `res` asks for, in the order they must happen. Zero means "not set" for the
/// numeric fields, as in runc.
pub fn plan(res: &LinuxResources, layout: &Layout, current: Current) -> Result<Vec<Write>> {
    let mut p = Plan::default();
    if let Some(m) = res.memory() {
        memory(&mut p, m, layout, current)?;
    }
    if let Some(c) = res.cpu() {
        cpu(&mut p, c, layout)?;
    }
    if let Some(pids) = res.pids() {
        const F: &str = "linux.resources.pids.limit";
        need(layout, "pids", F)?;
        let limit = pids.limit();
        // The spec: a limit <= 0 means no limit.
        p.add(
            F,
            "pids",
            "pids.max",
            if limit > 0 {
                limit.to_string()
            } else {
                "max".into()
            },
        );
    }
    if let Some(b) = res.block_io() {
        block_io(&mut p, b, layout)?;
    }
    if let Some(hp) = res.hugepage_limits() {
        for (i, h) in hp.iter().enumerate() {
            let field = format!("linux.resources.hugepageLimits[{i}]");
            let size = h.page_size();
            if size.is_empty() || size.contains('/') || size.contains('.') {
                return Err(Error::config(
                    format!("{field}.pageSize"),
                    format!("{size:?} is not a page size like 2MB"),
                ));
            }
            match need(layout, "hugetlb", &field)? {
                Version::V1 => p.add(
                    &field,
                    "hugetlb",
                    format!("hugetlb.{size}.limit_in_bytes"),
                    h.limit(),
                ),
                Version::V2 => {
                    p.add(&field, "hugetlb", format!("hugetlb.{size}.max"), h.limit());
                    // Reserved pages (kernels since 5.7) get the same limit, so reserving
                    // cannot be used to get around it.
                    p.push(
                        &field,
                        "hugetlb",
                        format!("hugetlb.{size}.rsvd.max"),
                        h.limit(),
                        Missing::Skip,
                    );
                }
            }
        }
    }
    if let Some(net) = res.network() {
        if let Some(id) = net.class_id() {
            const F: &str = "linux.resources.network.classID";
            if need(layout, "net_cls", F)? == Version::V2 {
                return Err(unsupported_on_v2(F));
            }
            p.add(F, "net_cls", "net_cls.classid", id);
        }
        for (i, prio) in net.priorities().iter().flatten().enumerate() {
            let field = format!("linux.resources.network.priorities[{i}]");
            if need(layout, "net_prio", &field)? == Version::V2 {
                return Err(unsupported_on_v2(&field));
            }
            if prio.name().is_empty() || prio.name().contains(char::is_whitespace) {
                return Err(Error::config(
                    format!("{field}.name"),
                    "must be an interface name",
                ));
            }
            p.add(
                &field,
                "net_prio",
                "net_prio.ifpriomap",
                format!("{} {}", prio.name(), prio.priority()),
            );
        }
    }
    if let Some(rdma) = res.rdma() {
        let mut names: Vec<_> = rdma.keys().collect();
        names.sort();
        for name in names {
            let field = format!("linux.resources.rdma.{name}");
            need(layout, "rdma", &field)?;
            if name.is_empty() || name.contains(char::is_whitespace) {
                return Err(Error::config(field, "must be an RDMA device name"));
            }
            let r = &rdma[name];
            let n = |v: Option<u32>| v.map_or("max".to_string(), |v| v.to_string());
            p.add(
                &field,
                "rdma",
                "rdma.max",
                format!(
                    "{name} hca_handle={} hca_object={}",
                    n(r.hca_handles()),
                    n(r.hca_objects())
                ),
            );
        }
    }
    if let Some(unified) = res.unified() {
        unified_keys(&mut p, unified, layout)?;
    }
    Ok(p.writes)
}

fn memory(p: &mut Plan, m: &LinuxMemory, layout: &Layout, current: Current) -> Result<()> {
    const LIMIT: &str = "linux.resources.memory.limit";
    const SWAP: &str = "linux.resources.memory.swap";
    const RES: &str = "linux.resources.memory.reservation";
    let any = m.limit().is_some()
        || m.swap().is_some()
        || m.reservation().is_some()
        || m.kernel().is_some()
        || m.kernel_tcp().is_some()
        || m.swappiness().is_some()
        || m.disable_oom_killer() == Some(true)
        || m.use_hierarchy().is_some();
    if !any {
        return Ok(());
    }
    let version = need(layout, "memory", "linux.resources.memory")?;
    let limit = m.limit().unwrap_or(0);
    let mut swap = m.swap().unwrap_or(0);
    for (field, v) in [
        (LIMIT, limit),
        (SWAP, swap),
        (RES, m.reservation().unwrap_or(0)),
    ] {
        if v < -1 {
            return Err(Error::config(
                field,
                format!("{v} is neither a size nor -1 (unlimited)"),
            ));
        }
    }
    // Unlimited memory with swap unset: swap is unlimited too (runc).
    if limit == -1 && swap == 0 {
        swap = -1;
    }
    if limit > 0 && swap > 0 && swap < limit {
        return Err(Error::config(
            SWAP,
            format!("memory+swap ({swap}) must not be below the memory limit ({limit})"),
        ));
    }
    match version {
        Version::V1 => {
            let limit_w = (limit != 0).then_some((LIMIT, "memory.limit_in_bytes", limit));
            // Without swap accounting there is nothing to enforce for "unlimited".
            let swap_w = (swap != 0).then_some((SWAP, "memory.memsw.limit_in_bytes", swap));
            // The kernel keeps limit <= memsw at every step: raise memsw first when it grows.
            let swap_first = swap == -1
                || matches!((current.memory_limit, swap), (Some(cur), s) if cur >= 0 && cur < s);
            let order = if swap_first {
                [swap_w, limit_w]
            } else {
                [limit_w, swap_w]
            };
            for (field, file, v) in order.into_iter().flatten() {
                let missing = if field == SWAP && v == -1 {
                    Missing::Skip
                } else {
                    Missing::Fail
                };
                p.push(field, "memory", file, v, missing);
            }
            if let Some(r) = m.reservation().filter(|r| *r != 0) {
                p.add(RES, "memory", "memory.soft_limit_in_bytes", r);
            }
            if let Some(k) = m.kernel().filter(|k| *k != 0) {
                p.add(
                    "linux.resources.memory.kernel",
                    "memory",
                    "memory.kmem.limit_in_bytes",
                    k,
                );
            }
            if let Some(k) = m.kernel_tcp().filter(|k| *k != 0) {
                p.add(
                    "linux.resources.memory.kernelTCP",
                    "memory",
                    "memory.kmem.tcp.limit_in_bytes",
                    k,
                );
            }
            if let Some(s) = m.swappiness() {
                if s > 100 {
                    return Err(Error::config(
                        "linux.resources.memory.swappiness",
                        format!("{s} is not in 0..=100"),
                    ));
                }
                p.add(
                    "linux.resources.memory.swappiness",
                    "memory",
                    "memory.swappiness",
                    s,
                );
            }
            if m.disable_oom_killer() == Some(true) {
                p.add(
                    "linux.resources.memory.disableOOMKiller",
                    "memory",
                    "memory.oom_control",
                    1,
                );
            }
            if let Some(h) = m.use_hierarchy() {
                p.add(
                    "linux.resources.memory.useHierarchy",
                    "memory",
                    "memory.use_hierarchy",
                    u8::from(h),
                );
            }
        }
        Version::V2 => {
            if m.kernel().is_some_and(|k| k != 0) {
                logging::debug(KMEM_IGNORED);
            }
            for (field, set) in [
                (
                    "linux.resources.memory.kernelTCP",
                    m.kernel_tcp().is_some_and(|k| k != 0),
                ),
                (
                    "linux.resources.memory.swappiness",
                    m.swappiness().is_some(),
                ),
                (
                    "linux.resources.memory.disableOOMKiller",
                    m.disable_oom_killer() == Some(true),
                ),
                (
                    "linux.resources.memory.useHierarchy",
                    m.use_hierarchy() == Some(false),
                ),
            ] {
                if set {
                    return Err(unsupported_on_v2(field));
                }
            }
            if let Some(v2_swap) = v2_swap(limit, swap)? {
                // "max" or "0" where swap is not accounted: nothing to enforce.
                let missing = if v2_swap == "max" || v2_swap == "0" {
                    Missing::Skip
                } else {
                    Missing::Fail
                };
                p.push(SWAP, "memory", "memory.swap.max", v2_swap, missing);
            }
            if limit != 0 {
                p.add(LIMIT, "memory", "memory.max", max_or(limit));
            }
            if let Some(r) = m.reservation().filter(|r| *r != 0) {
                p.add(RES, "memory", "memory.low", max_or(r));
            }
        }
    }
    Ok(())
}

fn max_or(v: i64) -> String {
    if v == -1 {
        "max".into()
    } else {
        v.to_string()
    }
}

/// The spec's swap is memory+swap (v1's memsw); v2's memory.swap.max is swap alone.
pub(crate) fn v2_swap(limit: i64, swap: i64) -> Result<Option<String>> {
    Ok(match (limit, swap) {
        (_, 0) => None,
        (_, -1) => Some("max".into()),
        (0 | -1, _) => {
            return Err(Error::config(
                "linux.resources.memory.swap",
                "a swap limit needs a memory limit",
            ))
        }
        // Equal: no swap at all.
        (l, s) => Some((s - l).to_string()),
    })
}

/// runc's and the kernel docs' mapping of cpu.shares (2..262144) onto cpu.weight (1..10000).
pub fn shares_to_weight(shares: u64) -> u64 {
    if shares == 0 {
        return 0;
    }
    let s = shares.clamp(2, 262144);
    1 + ((s - 2) * 9999) / 262142
}

/// blkio.weight (10..1000) onto io.weight (1..10000).
pub fn blkio_to_io_weight(weight: u16) -> u64 {
    if weight == 0 {
        return 0;
    }
    1 + (u64::from(weight).saturating_sub(10) * 9999) / 990
}

fn cpu(p: &mut Plan, c: &LinuxCpu, layout: &Layout) -> Result<()> {
    let shares = c.shares().unwrap_or(0);
    let quota = c.quota().unwrap_or(0);
    let period = c.period().unwrap_or(0);
    let needs_cpu = shares != 0
        || quota != 0
        || period != 0
        || c.burst().is_some()
        || c.realtime_period().is_some_and(|v| v != 0)
        || c.realtime_runtime().is_some_and(|v| v != 0)
        || c.idle().is_some();
    if needs_cpu {
        let v = need(layout, "cpu", "linux.resources.cpu")?;
        match v {
            Version::V1 => {
                if shares != 0 {
                    p.add("linux.resources.cpu.shares", "cpu", "cpu.shares", shares);
                }
                if period != 0 {
                    p.add(
                        "linux.resources.cpu.period",
                        "cpu",
                        "cpu.cfs_period_us",
                        period,
                    );
                }
                if quota != 0 {
                    p.add(
                        "linux.resources.cpu.quota",
                        "cpu",
                        "cpu.cfs_quota_us",
                        if quota < 0 { -1 } else { quota },
                    );
                }
                if let Some(b) = c.burst() {
                    p.add("linux.resources.cpu.burst", "cpu", "cpu.cfs_burst_us", b);
                }
                if let Some(rp) = c.realtime_period().filter(|v| *v != 0) {
                    p.add(
                        "linux.resources.cpu.realtimePeriod",
                        "cpu",
                        "cpu.rt_period_us",
                        rp,
                    );
                }
                if let Some(rr) = c.realtime_runtime().filter(|v| *v != 0) {
                    p.add(
                        "linux.resources.cpu.realtimeRuntime",
                        "cpu",
                        "cpu.rt_runtime_us",
                        rr,
                    );
                }
                if let Some(i) = c.idle() {
                    p.add("linux.resources.cpu.idle", "cpu", "cpu.idle", i);
                }
            }
            Version::V2 => {
                for (field, set) in [
                    (
                        "linux.resources.cpu.realtimePeriod",
                        c.realtime_period().is_some_and(|v| v != 0),
                    ),
                    (
                        "linux.resources.cpu.realtimeRuntime",
                        c.realtime_runtime().is_some_and(|v| v != 0),
                    ),
                ] {
                    if set {
                        return Err(unsupported_on_v2(field));
                    }
                }
                if shares != 0 {
                    p.add(
                        "linux.resources.cpu.shares",
                        "cpu",
                        "cpu.weight",
                        shares_to_weight(shares),
                    );
                }
                if quota != 0 || period != 0 {
                    let mut v = if quota > 0 {
                        quota.to_string()
                    } else {
                        "max".to_string()
                    };
                    if period != 0 {
                        v.push_str(&format!(" {period}"));
                    }
                    p.add("linux.resources.cpu.quota", "cpu", "cpu.max", v);
                }
                if let Some(b) = c.burst() {
                    p.add("linux.resources.cpu.burst", "cpu", "cpu.max.burst", b);
                }
                if let Some(i) = c.idle() {
                    p.add("linux.resources.cpu.idle", "cpu", "cpu.idle", i);
                }
            }
        }
    }
    for (field, file, value) in [
        ("linux.resources.cpu.cpus", "cpuset.cpus", c.cpus()),
        ("linux.resources.cpu.mems", "cpuset.mems", c.mems()),
    ] {
        if let Some(v) = value.as_deref().filter(|v| !v.is_empty()) {
            need(layout, "cpuset", field)?;
            p.add(field, "cpuset", file, v);
        }
    }
    Ok(())
}

fn block_io(p: &mut Plan, b: &LinuxBlockIo, layout: &Layout) -> Result<()> {
    let any = b.weight().is_some()
        || b.leaf_weight().is_some()
        || b.weight_device().as_ref().is_some_and(|v| !v.is_empty())
        || [
            b.throttle_read_bps_device(),
            b.throttle_write_bps_device(),
            b.throttle_read_iops_device(),
            b.throttle_write_iops_device(),
        ]
        .iter()
        .any(|l| l.as_ref().is_some_and(|v| !v.is_empty()));
    if !any {
        return Ok(());
    }
    let v1 = match layout.version_of("blkio") {
        Some(_) => true,
        None => {
            need(layout, "io", "linux.resources.blockIO")?;
            false
        }
    };
    let ctrl = if v1 { "blkio" } else { "io" };
    let exists =
        |file: &str| layout.version_of(ctrl).is_some() && file_exists_in_root(layout, ctrl, file);
    const W: &str = "linux.resources.blockIO.weight";
    if let Some(w) = b.weight().filter(|w| *w != 0) {
        if v1 {
            // CFQ's blkio.weight, or BFQ's where CFQ is gone (kernels since 5.0).
            let file = if exists("blkio.weight") {
                "blkio.weight"
            } else {
                "blkio.bfq.weight"
            };
            p.add(W, ctrl, file, w);
        } else if exists("io.bfq.weight") {
            p.add(W, ctrl, "io.bfq.weight", w);
        } else {
            p.add(W, ctrl, "io.weight", blkio_to_io_weight(w));
        }
    }
    if b.leaf_weight().is_some() {
        // Gone from the kernel with CFQ; runc ignores it too.
        logging::debug("linux.resources.blockIO.leafWeight: no such knob on this kernel; ignored");
    }
    for (i, d) in b.weight_device().iter().flatten().enumerate() {
        let field = format!("linux.resources.blockIO.weightDevice[{i}]");
        let Some(w) = d.weight().filter(|w| *w != 0) else {
            continue;
        };
        let line = format!("{}:{} {w}", d.major(), d.minor());
        if v1 {
            let file = if exists("blkio.weight_device") {
                "blkio.weight_device"
            } else {
                "blkio.bfq.weight_device"
            };
            p.add(&field, ctrl, file, line);
        } else if exists("io.bfq.weight_device") {
            p.add(&field, ctrl, "io.bfq.weight_device", line);
        } else {
            // io.weight takes per-device weights only through BFQ; runc skips it too.
            logging::debug(&format!("{field}: BFQ is not active on this host; ignored"));
        }
    }
    let lists: [(&str, &Option<Vec<LinuxThrottleDevice>>, &str, &str); 4] = [
        (
            "throttleReadBpsDevice",
            b.throttle_read_bps_device(),
            "blkio.throttle.read_bps_device",
            "rbps",
        ),
        (
            "throttleWriteBpsDevice",
            b.throttle_write_bps_device(),
            "blkio.throttle.write_bps_device",
            "wbps",
        ),
        (
            "throttleReadIOPSDevice",
            b.throttle_read_iops_device(),
            "blkio.throttle.read_iops_device",
            "riops",
        ),
        (
            "throttleWriteIOPSDevice",
            b.throttle_write_iops_device(),
            "blkio.throttle.write_iops_device",
            "wiops",
        ),
    ];
    for (name, list, v1_file, v2_key) in lists {
        for (i, d) in list.iter().flatten().enumerate() {
            let field = format!("linux.resources.blockIO.{name}[{i}]");
            let dev = format!("{}:{}", d.major(), d.minor());
            if v1 {
                p.add(field, ctrl, v1_file, format!("{dev} {}", d.rate()));
            } else {
                let rate = if d.rate() == 0 {
                    "max".to_string()
                } else {
                    d.rate().to_string()
                };
                p.add(field, ctrl, "io.max", format!("{dev} {v2_key}={rate}"));
            }
        }
    }
    Ok(())
}

/// Whether the container's cgroup has the knob `file`; before it exists, whether the
/// hierarchy's root or one of its children has it.
fn file_exists_in_root(layout: &Layout, ctrl: &str, file: &str) -> bool {
    if let Some(dir) = layout.cgroup.as_ref().and_then(|rel| layout.dir(ctrl, rel)) {
        return dir.join(file).exists();
    }
    layout
        .dir(ctrl, Path::new("/"))
        .is_some_and(|d| d.join(file).exists() || child_has(&d, file))
}

/// Some knobs (io.weight, io.max) exist only below the root: look at any child.
fn child_has(dir: &Path, file: &str) -> bool {
    fs::read_dir(dir)
        .map(|it| {
            it.filter_map(|e| e.ok())
                .filter(|e| e.path().is_dir())
                .take(8)
                .any(|e| e.path().join(file).exists())
        })
        .unwrap_or(false)
}

fn unified_keys(
    p: &mut Plan,
    unified: &std::collections::HashMap<String, String>,
    layout: &Layout,
) -> Result<()> {
    if unified.is_empty() {
        return Ok(());
    }
    if !layout.unified {
        return Err(Error::config(
            "linux.resources.unified",
            "needs a cgroup v2 host; this one uses cgroup v1",
        ));
    }
    let mut keys: Vec<_> = unified.keys().collect();
    keys.sort();
    for key in keys {
        let field = format!("linux.resources.unified.{key}");
        let Some((ctrl, _)) = key.split_once('.') else {
            return Err(Error::config(field, "is not a cgroup file name"));
        };
        if key.contains('/') || ctrl.is_empty() {
            return Err(Error::config(field, "is not a cgroup file name"));
        }
        let ctrl: &'static str = match ctrl {
            "cgroup" => "cgroup",
            c => {
                if layout.version_of(c).is_none() {
                    return Err(Error::config(
                        field,
                        format!("this host has no {c} cgroup controller"),
                    ));
                }
                // The plan's controllers are static names; the unified ones are a known few.
                known_v2_controller(c).unwrap_or("cgroup")
            }
        };
        p.add(&field, ctrl, key.as_str(), &unified[key]);
    }
    Ok(())
}

fn known_v2_controller(c: &str) -> Option<&'static str> {
    [
        "cpu", "cpuset", "io", "memory", "hugetlb", "pids", "rdma", "misc",
    ]
    .into_iter()
    .find(|k| *k == c)
}

/// Makes sure every v2 controller the plan uses is enabled for the container's cgroup
/// (`+ctrl` in each ancestor's cgroup.subtree_control). On a v2 host the cgroup manager did it
/// for cgroupfs and systemd for its own controllers (cpu, cpuset, io, memory, pids): the rest
/// (hugetlb, rdma, misc under a systemd scope) is berth's, as runc does. Idempotent.
fn enable_v2_controllers(layout: &Layout, rel: &Path, writes: &[Write]) -> Result<()> {
    let rel = rel.strip_prefix("/").unwrap_or(rel);
    let mut ctrls: Vec<&str> = writes
        .iter()
        .filter(|w| w.ctrl != "cgroup" && layout.version_of(w.ctrl) == Some(Version::V2))
        .map(|w| w.ctrl)
        .collect();
    ctrls.sort();
    ctrls.dedup();
    if ctrls.is_empty() {
        return Ok(());
    }
    let mut dir = layout.v2_root();
    for comp in rel.components() {
        let sc = dir.join("cgroup.subtree_control");
        let have = fs::read_to_string(&sc).unwrap_or_default();
        for c in &ctrls {
            if !have.split_whitespace().any(|h| h == *c) {
                fs::write(&sc, format!("+{c}"))
                    .map_err(|e| Error::Cgroup(format!("enable {c} in {}: {e}", sc.display())))?;
            }
        }
        dir.push(comp);
    }
    Ok(())
}

/// Checks that every file of the plan exists for the container's cgroup `rel`; returns the
/// writes to make (skippable ones whose file is missing dropped).
pub fn check(layout: &Layout, rel: &Path, writes: Vec<Write>) -> Result<Vec<(PathBuf, Write)>> {
    let mut out = Vec::with_capacity(writes.len());
    for w in writes {
        let Some(dir) = layout.dir(w.ctrl, rel) else {
            return Err(Error::config(
                &w.field,
                format!("this host has no {} cgroup controller", w.ctrl),
            ));
        };
        let path = dir.join(&w.file);
        if !path.exists() && !would_appear(layout, &w) {
            if w.missing == Missing::Skip {
                logging::debug(&format!(
                    "{}: {} absent; nothing to enforce",
                    w.field, w.file
                ));
                continue;
            }
            return Err(Error::config(
                &w.field,
                format!("this host cannot apply it: {} does not exist", w.file),
            ));
        }
        out.push((path, w));
    }
    Ok(out)
}

/// A v2 controller's files appear in the cgroup only once it is enabled in the parent: judge
/// those by the root's children instead.
fn would_appear(layout: &Layout, w: &Write) -> bool {
    layout.version_of(w.ctrl) == Some(Version::V2)
        && w.ctrl != "cgroup"
        && child_has(&layout.v2_root(), &w.file)
}

/// Computes, checks and writes `res` for the cgroup at `rel`.
pub fn apply(rel: &Path, res: &LinuxResources, current: Current) -> Result<()> {
    let mut layout = Layout::detect();
    layout.cgroup = Some(rel.to_path_buf());
    let writes = plan(res, &layout, current)?;
    enable_v2_controllers(&layout, rel, &writes)?;
    for (path, w) in check(&layout, rel, writes)? {
        crate::fault::point_with(|| format!("cgroup: write {}", path.display()))?;
        write_one(&path, &w)?;
        verify(&path, &w)?;
    }
    Ok(())
}

/// Kernel memory limits are gone from the kernel (v2 never had one; v1 accepts the write and
/// ignores it since Linux 5.16), and runc 1.1 no longer sets them: like an absent LSM, a
/// debug record, not an error. Where a v1 kernel still holds the value, it is applied.
const KMEM_IGNORED: &str = "linux.resources.memory.kernel: this kernel does not enforce kernel \
memory limits (deprecated since Linux 5.16; runc ignores them too); not applied";

/// Knobs a kernel may accept and then not hold: cpu.shares (clamped to 2..=262144) is read
/// back, so a changed value is an error naming the field rather than a limit that silently
/// isn't there; v1 kernel memory is read back to tell whether the kernel still has it.
fn verify(path: &Path, w: &Write) -> Result<()> {
    let kmem = w.file == "memory.kmem.limit_in_bytes";
    if !kmem && w.file != "cpu.shares" {
        return Ok(());
    }
    let held = fs::read_to_string(path)
        .map(|s| s.trim().to_string())
        .unwrap_or_default();
    let ok = if kmem {
        let page = nix::unistd::sysconf(nix::unistd::SysconfVar::PAGE_SIZE)
            .ok()
            .flatten()
            .filter(|p| *p > 0)
            .unwrap_or(4096) as i64;
        match (w.value.parse::<i64>(), held.parse::<i64>()) {
            (Ok(-1), Ok(h)) => h >= 1 << 62,
            (Ok(v), Ok(h)) => h == v / page * page,
            _ => false,
        }
    } else {
        held == w.value
    };
    if ok {
        return Ok(());
    }
    if kmem {
        logging::debug(&format!("{KMEM_IGNORED} (it holds {held})"));
        return Ok(());
    }
    Err(Error::config(
        &w.field,
        format!(
            "the kernel did not keep it: wrote {} to {}, it holds {held:?}",
            w.value,
            path.display()
        ),
    ))
}

/// What `apply` would check, without writing: lets a caller refuse before it changes anything
/// else (update's systemd unit properties).
pub fn validate(rel: &Path, res: &LinuxResources, current: Current) -> Result<()> {
    let mut layout = Layout::detect();
    layout.cgroup = Some(rel.to_path_buf());
    let writes = plan(res, &layout, current)?;
    check(&layout, rel, writes).map(|_| ())
}

fn write_one(path: &Path, w: &Write) -> Result<()> {
    match fs::write(path, &w.value) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == ErrorKind::NotFound && w.missing == Missing::Skip => Ok(()),
        Err(e) => Err(Error::config(
            &w.field,
            format!("write {:?} to {}: {e}", w.value, path.display()),
        )),
    }
}

/// The memory limit the cgroup holds now (v1 only; v2 needs no ordering).
pub fn current(rel: &Path) -> Current {
    let layout = Layout::detect();
    let memory_limit = layout
        .dir("memory", rel)
        .filter(|_| layout.version_of("memory") == Some(Version::V1))
        .and_then(|d| fs::read_to_string(d.join("memory.limit_in_bytes")).ok())
        .and_then(|s| s.trim().parse::<i64>().ok());
    Current { memory_limit }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layout(unified: bool, v2: &[&str]) -> Layout {
        Layout {
            unified,
            // No v1 hierarchy exists under this root, so only `v2_controllers` count.
            root: PathBuf::from("/nonexistent-cgroup-root"),
            v2_controllers: v2.iter().map(|s| s.to_string()).collect(),
            cgroup: None,
        }
    }

    fn res(json: &str) -> LinuxResources {
        serde_json::from_str(json).expect("test resources parse")
    }

    fn files(w: &[Write]) -> Vec<(String, String)> {
        w.iter()
            .map(|w| (w.file.clone(), w.value.clone()))
            .collect()
    }

    const V2: &[&str] = &["cpuset", "cpu", "io", "memory", "hugetlb", "pids", "rdma"];

    #[test]
    fn v2_swap_equal_to_limit_means_no_swap() {
        let w = plan(
            &res(r#"{"memory":{"limit":1048576,"swap":1048576}}"#),
            &layout(true, V2),
            Current::default(),
        )
        .unwrap();
        assert_eq!(
            files(&w),
            [
                ("memory.swap.max".into(), "0".into()),
                ("memory.max".into(), "1048576".into())
            ]
        );
        let w = plan(
            &res(r#"{"memory":{"limit":1048576,"swap":3145728}}"#),
            &layout(true, V2),
            Current::default(),
        )
        .unwrap();
        assert_eq!(w[0].value, "2097152");
        let w = plan(
            &res(r#"{"memory":{"limit":-1}}"#),
            &layout(true, V2),
            Current::default(),
        )
        .unwrap();
        assert_eq!(
            files(&w),
            [
                ("memory.swap.max".into(), "max".into()),
                ("memory.max".into(), "max".into())
            ]
        );
        let e = plan(
            &res(r#"{"memory":{"swap":1048576}}"#),
            &layout(true, V2),
            Current::default(),
        )
        .unwrap_err();
        assert!(e.to_string().contains("linux.resources.memory.swap"), "{e}");
        let e = plan(
            &res(r#"{"memory":{"limit":2097152,"swap":1048576}}"#),
            &layout(true, V2),
            Current::default(),
        )
        .unwrap_err();
        assert!(e.to_string().contains("linux.resources.memory.swap"), "{e}");
    }

    #[test]
    fn weights_convert_without_overflow() {
        assert_eq!(blkio_to_io_weight(500), 4950);
        assert_eq!(blkio_to_io_weight(10), 1);
        assert_eq!(blkio_to_io_weight(1000), 10000);
        assert_eq!(shares_to_weight(1024), 39);
        assert_eq!(shares_to_weight(2), 1);
        assert_eq!(shares_to_weight(262144), 10000);
    }

    #[test]
    fn v2_cpu_max_and_weight() {
        let w = plan(&res(r#"{"cpu":{"shares":512,"quota":50000,"period":100000,"burst":1000,"idle":1,"cpus":"0","mems":"0"}}"#), &layout(true, V2), Current::default()).unwrap();
        assert_eq!(
            files(&w),
            [
                ("cpu.weight".into(), "20".into()),
                ("cpu.max".into(), "50000 100000".into()),
                ("cpu.max.burst".into(), "1000".into()),
                ("cpu.idle".into(), "1".into()),
                ("cpuset.cpus".into(), "0".into()),
                ("cpuset.mems".into(), "0".into()),
            ]
        );
        let w = plan(
            &res(r#"{"cpu":{"quota":-1}}"#),
            &layout(true, V2),
            Current::default(),
        )
        .unwrap();
        assert_eq!(files(&w), [("cpu.max".into(), "max".into())]);
        let e = plan(
            &res(r#"{"cpu":{"realtimeRuntime":1000}}"#),
            &layout(true, V2),
            Current::default(),
        )
        .unwrap_err();
        assert!(
            e.to_string()
                .contains("linux.resources.cpu.realtimeRuntime"),
            "{e}"
        );
    }

    #[test]
    fn unified_needs_v2_and_the_controller() {
        let r = res(r#"{"unified":{"pids.max":"42"}}"#);
        let e = plan(&r, &layout(false, &["hugetlb"]), Current::default()).unwrap_err();
        assert!(e.to_string().contains("linux.resources.unified"), "{e}");
        let w = plan(&r, &layout(true, V2), Current::default()).unwrap();
        assert_eq!(files(&w), [("pids.max".into(), "42".into())]);
        for bad in [
            r#"{"unified":{"misc.max":"1"}}"#,
            r#"{"unified":{"../x.max":"1"}}"#,
            r#"{"unified":{"nodot":"1"}}"#,
        ] {
            let e = plan(&res(bad), &layout(true, V2), Current::default()).unwrap_err();
            assert!(
                e.to_string().contains("linux.resources.unified."),
                "{bad}: {e}"
            );
        }
    }

    #[test]
    fn pids_limit_zero_and_minus_one_are_unlimited() {
        for (limit, want) in [(0, "max"), (-1, "max"), (7, "7")] {
            let w = plan(
                &res(&format!(r#"{{"pids":{{"limit":{limit}}}}}"#)),
                &layout(true, V2),
                Current::default(),
            )
            .unwrap();
            assert_eq!(files(&w), [("pids.max".into(), want.into())]);
        }
    }

    #[test]
    fn io_throttles_and_hugetlb_on_v2() {
        let r = res(
            r#"{"blockIO":{"leafWeight":10,"throttleReadBpsDevice":[{"major":8,"minor":0,"rate":1048576}],
            "throttleWriteIOPSDevice":[{"major":8,"minor":0,"rate":100}]},
            "hugepageLimits":[{"pageSize":"2MB","limit":4194304}]}"#,
        );
        let w = plan(&r, &layout(true, V2), Current::default()).unwrap();
        assert_eq!(
            files(&w),
            [
                ("io.max".into(), "8:0 rbps=1048576".into()),
                ("io.max".into(), "8:0 wiops=100".into()),
                ("hugetlb.2MB.max".into(), "4194304".into()),
                ("hugetlb.2MB.rsvd.max".into(), "4194304".into()),
            ]
        );
        let e = plan(
            &res(r#"{"hugepageLimits":[{"pageSize":"../2MB","limit":1}]}"#),
            &layout(true, V2),
            Current::default(),
        )
        .unwrap_err();
        assert!(e.to_string().contains("hugepageLimits[0].pageSize"), "{e}");
    }

    #[test]
    fn missing_controller_names_the_field() {
        let e = plan(
            &res(r#"{"pids":{"limit":5}}"#),
            &layout(true, &["memory"]),
            Current::default(),
        )
        .unwrap_err();
        assert!(e.to_string().contains("linux.resources.pids.limit"), "{e}");
        let e = plan(
            &res(r#"{"network":{"classID":1}}"#),
            &layout(true, V2),
            Current::default(),
        )
        .unwrap_err();
        assert!(
            e.to_string().contains("linux.resources.network.classID"),
            "{e}"
        );
        // Kernel memory: no such limit on v2, skipped as runc does (a debug record).
        let w = plan(
            &res(r#"{"memory":{"kernel":1048576}}"#),
            &layout(true, V2),
            Current::default(),
        )
        .unwrap();
        assert!(w.is_empty(), "{w:?}");
    }

    #[test]
    fn rdma_lines() {
        let w = plan(
            &res(r#"{"rdma":{"mlx5_0":{"hcaHandles":3}}}"#),
            &layout(true, V2),
            Current::default(),
        )
        .unwrap();
        assert_eq!(
            files(&w),
            [(
                "rdma.max".into(),
                "mlx5_0 hca_handle=3 hca_object=max".into()
            )]
        );
    }
}
