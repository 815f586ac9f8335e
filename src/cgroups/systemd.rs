//! The systemd cgroup driver (`--systemd-cgroup`), as runc's: the container's cgroup is a
//! transient scope unit that systemd starts around the init (Delegate=yes, so the cgroup below
//! the scope is berth's), carrying the resources as unit properties so that systemd keeps the
//! same values on daemon-reload. berth still writes every limit itself afterwards
//! (`limits::apply`): the kernel's values are berth's, exact where systemd would round.
//!
//! Own properties, not libcgroups' systemd manager: that one starts the unit without the
//! resources, sleep-polls instead of waiting for the job, writes subtree_control itself and
//! converts some values differently from berth's writer (swap, weights).

use std::fs;
use std::path::Path;
use std::time::{Duration, Instant};

use oci_spec::runtime::LinuxResources;

use super::dbus::{Connection, DbusError, Value};
use super::limits;
use crate::error::{Error, Result};
use crate::logging;

/// How long a unit's start or stop job may take (runc allows 30 s too).
const JOB_TIMEOUT: Duration = Duration::from_secs(30);
const DEST: &str = "org.freedesktop.systemd1";
const OBJECT: &str = "/org/freedesktop/systemd1";
const MANAGER: &str = "org.freedesktop.systemd1.Manager";
const SYSTEM_BUS: &str = "/run/dbus/system_bus_socket";
const PRIVATE: &str = "/run/systemd/private";
/// "infinity" for systemd's u64 limits.
const INFINITY: u64 = u64::MAX;

/// True when systemd is the init (what sd_booted checks).
pub fn booted() -> bool {
    Path::new("/run/systemd/system").is_dir()
}

fn err(msg: impl Into<String>) -> Error {
    Error::Cgroup(format!("systemd: {}", msg.into()))
}

/// The unit and its parent slice for a cgroup path resolve_path made from slice:prefix:name.
pub fn unit_names(path: &Path) -> Result<(String, String)> {
    let unit = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".scope") || n.ends_with(".slice"))
        .ok_or_else(|| err(format!("{} does not name a unit", path.display())))?;
    let slice = match path.parent().and_then(Path::file_name) {
        Some(p) => p.to_string_lossy().into_owned(),
        None => "-.slice".to_string(),
    };
    Ok((unit, slice))
}

struct Systemd {
    conn: Connection,
    /// systemd's major version: properties newer than it are not sent (as runc does).
    version: u32,
}

impl Systemd {
    /// The system bus first; as root, systemd's private socket when no bus daemon answers
    /// (what runc's D-Bus library does for root too).
    fn connect(deadline: Instant) -> Result<Systemd> {
        if !booted() {
            return Err(err(
                "--systemd-cgroup needs systemd as init, and this host has none \
                 (no /run/systemd/system)",
            ));
        }
        let bus = std::env::var("DBUS_SYSTEM_BUS_ADDRESS")
            .ok()
            .and_then(|a| {
                a.split(';')
                    .find_map(|e| e.strip_prefix("unix:path=").map(str::to_string))
            })
            .unwrap_or_else(|| SYSTEM_BUS.to_string());
        let conn = match Connection::open(&bus, true, deadline) {
            Ok(c) => c,
            Err(bus_err) => {
                let private = if nix::unistd::geteuid().is_root() {
                    Connection::open(PRIVATE, false, deadline)
                } else {
                    Err(DbusError::Protocol("only root may use it".into()))
                };
                private.map_err(|e| {
                    err(format!(
                        "--systemd-cgroup: cannot reach systemd over D-Bus \
                         ({bus}: {bus_err}; {PRIVATE}: {e})"
                    ))
                })?
            }
        };
        let mut sd = Systemd { conn, version: 0 };
        let v = sd.call(
            "org.freedesktop.DBus.Properties",
            "Get",
            &[Value::str(MANAGER), Value::str("Version")],
            deadline,
        )?;
        // "252.36-1~deb12u1": the leading number.
        sd.version = v
            .first()
            .and_then(Value::as_str)
            .map(|s| {
                s.chars()
                    .skip_while(|c| !c.is_ascii_digit())
                    .take_while(char::is_ascii_digit)
                    .collect::<String>()
            })
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        Ok(sd)
    }

    fn call(
        &mut self,
        interface: &str,
        member: &str,
        args: &[Value],
        deadline: Instant,
    ) -> Result<Vec<Value>> {
        self.conn
            .call(Some(DEST), OBJECT, interface, member, args, deadline)
            .map_err(|e| err(format!("{member}: {e}")))
    }

    /// Asks for the JobRemoved signals (a bus only routes the ones matched; systemd only emits
    /// them once a client subscribed).
    fn subscribe(&mut self, deadline: Instant) -> Result<()> {
        let rule = format!(
            "type='signal',sender='{DEST}',path='{OBJECT}',interface='{MANAGER}',member='JobRemoved'"
        );
        // Only a bus daemon knows AddMatch: the private socket sends every signal anyway.
        match self.conn.call(
            Some("org.freedesktop.DBus"),
            "/org/freedesktop/DBus",
            "org.freedesktop.DBus",
            "AddMatch",
            &[Value::Str(rule)],
            deadline,
        ) {
            Ok(_) => {}
            Err(DbusError::Remote { name, .. }) if name.ends_with("UnknownMethod") => {}
            Err(DbusError::Remote { name, .. }) if name.ends_with("UnknownObject") => {}
            Err(e) => return Err(err(format!("AddMatch: {e}"))),
        }
        self.call(MANAGER, "Subscribe", &[], deadline).map(|_| ())
    }

    /// Waits for the job's JobRemoved signal; returns its result ("done", "failed", ...).
    fn wait_job(&mut self, job: &str, unit: &str, deadline: Instant) -> Result<String> {
        loop {
            let m = self.conn.next_signal(deadline).map_err(|e| match e {
                DbusError::Timeout(_) => err(format!(
                    "the job for {unit} did not finish within {}s",
                    JOB_TIMEOUT.as_secs()
                )),
                e => err(format!("waiting for the job of {unit}: {e}")),
            })?;
            if m.interface.as_deref() != Some(MANAGER) || m.member.as_deref() != Some("JobRemoved")
            {
                continue;
            }
            // JobRemoved(u id, o job, s unit, s result)
            if m.body.get(1).and_then(Value::as_str) == Some(job) {
                return Ok(m
                    .body
                    .get(3)
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_string());
            }
        }
    }

    fn stop(&mut self, unit: &str, deadline: Instant) -> Result<()> {
        let reply = match self.conn.call(
            Some(DEST),
            OBJECT,
            MANAGER,
            "StopUnit",
            &[Value::str(unit), Value::str("replace")],
            deadline,
        ) {
            Ok(r) => r,
            // Gone already: systemd drops a scope once its last process exited.
            Err(DbusError::Remote { name, .. }) if name.ends_with(".NoSuchUnit") => return Ok(()),
            Err(e) => return Err(err(format!("StopUnit {unit}: {e}"))),
        };
        let job = reply
            .first()
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        match self.wait_job(&job, unit, deadline)?.as_str() {
            "done" => Ok(()),
            r => Err(err(format!("stopping {unit}: the job ended {r:?}"))),
        }
    }
}

/// Starts the container's unit: a scope holding `pid` (or a slice, for a name ending in
/// `.slice`, which berth then joins through cgroupfs), and waits until systemd has made it.
/// A unit of that name that exists already is refused, never taken over. On any failure after
/// the start, the unit is stopped again.
pub fn start(path: &Path, pid: i32, res: &LinuxResources, id: &str) -> Result<()> {
    let (unit, slice) = unit_names(path)?;
    // berth's writer refuses what it cannot apply, naming the field: before any unit exists.
    limits::plan(res, &limits::Layout::detect(), limits::Current::default())?;
    let deadline = Instant::now() + JOB_TIMEOUT;
    let mut sd = Systemd::connect(deadline)?;
    sd.subscribe(deadline)?;
    let unified = super::is_unified();
    let mut props = vec![prop(
        "Description",
        Value::Str(format!("berth container {id}")),
    )];
    if unit.ends_with(".slice") {
        props.push(prop("Wants", Value::Str(slice.clone())));
    } else {
        let pid = u32::try_from(pid).map_err(|_| err(format!("bad pid {pid}")))?;
        props.push(prop("Slice", Value::Str(slice.clone())));
        props.push(prop("Delegate", Value::Bool(true)));
        props.push(prop(
            "PIDs",
            Value::Array("u".into(), vec![Value::U32(pid)]),
        ));
    }
    props.push(prop("DefaultDependencies", Value::Bool(false)));
    props.push(prop("MemoryAccounting", Value::Bool(true)));
    props.push(prop("CPUAccounting", Value::Bool(true)));
    props.push(prop("TasksAccounting", Value::Bool(true)));
    let io = if unified {
        "IOAccounting"
    } else {
        "BlockIOAccounting"
    };
    props.push(prop(io, Value::Bool(true)));
    props.extend(properties(res, unified, sd.version)?);
    logging::debug(&format!(
        "systemd: StartTransientUnit {unit} in {slice} ({} properties)",
        props.len()
    ));
    let reply = sd
        .conn
        .call(
            Some(DEST),
            OBJECT,
            MANAGER,
            "StartTransientUnit",
            &[
                Value::str(&unit),
                Value::str("replace"),
                Value::Array("(sv)".into(), props),
                Value::Array("(sa(sv))".into(), Vec::new()),
            ],
            deadline,
        )
        .map_err(|e| match e {
            DbusError::Remote { name, .. } if name.ends_with(".UnitExists") => err(format!(
                "unit {unit} already exists; berth does not take over a unit it did not start"
            )),
            e => err(format!("StartTransientUnit {unit}: {e}")),
        })?;
    let job = reply
        .first()
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    let started = sd
        .wait_job(&job, &unit, deadline)
        .and_then(|result| match result.as_str() {
            "done" => Ok(()),
            r => Err(err(format!("starting {unit}: the job ended {r:?}"))),
        })
        .and_then(|()| check_placed(path, pid, &unit));
    if let Err(e) = started {
        let stop_by = Instant::now() + JOB_TIMEOUT;
        if let Err(e2) = sd.stop(&unit, stop_by) {
            logging::warn(&format!("after a failed start: {e2}"));
        }
        return Err(e);
    }
    Ok(())
}

/// The init must sit where berth will look for the container's cgroup: systemd's cgroup root
/// may differ from berth's view (e.g. berth in a cgroup namespace).
fn check_placed(path: &Path, pid: i32, unit: &str) -> Result<()> {
    if unit.ends_with(".slice") || !super::is_unified() {
        return Ok(());
    }
    let own = fs::read_to_string(format!("/proc/{pid}/cgroup"))
        .map_err(|e| err(format!("read /proc/{pid}/cgroup: {e}")))?;
    let now = own
        .lines()
        .find_map(|l| l.strip_prefix("0::"))
        .unwrap_or_default();
    if Path::new(now) != path {
        return Err(err(format!(
            "systemd put the init in {now:?}, not in {} where berth expects it",
            path.display()
        )));
    }
    Ok(())
}

/// Stops the container's unit and waits until it is gone (with it, its cgroup).
pub fn stop(path: &Path) -> Result<()> {
    let (unit, _) = unit_names(path)?;
    let deadline = Instant::now() + JOB_TIMEOUT;
    let mut sd = Systemd::connect(deadline)?;
    sd.subscribe(deadline)?;
    sd.stop(&unit, deadline)
}

/// `update`: the changed resources as runtime unit properties, so that systemd does not put
/// back the old values on daemon-reload.
pub fn set_properties(path: &Path, res: &LinuxResources) -> Result<()> {
    let (unit, _) = unit_names(path)?;
    let deadline = Instant::now() + JOB_TIMEOUT;
    let mut sd = Systemd::connect(deadline)?;
    let props = properties(res, super::is_unified(), sd.version)?;
    if props.is_empty() {
        return Ok(());
    }
    sd.call(
        MANAGER,
        "SetUnitProperties",
        &[
            Value::str(&unit),
            Value::Bool(true),
            Value::Array("(sv)".into(), props),
        ],
        deadline,
    )
    .map(|_| ())
}

fn prop(name: &str, v: Value) -> Value {
    Value::Struct(vec![Value::str(name), Value::Variant(Box::new(v))])
}

fn limit(v: i64) -> u64 {
    if v < 0 {
        INFINITY
    } else {
        v as u64
    }
}

/// The resources systemd has unit properties for, as runc translates them (runc's
/// docs/systemd.md tables), from the values berth's writer uses.
pub fn properties(res: &LinuxResources, unified: bool, version: u32) -> Result<Vec<Value>> {
    let mut p: Vec<(&str, Value)> = Vec::new();
    if let Some(m) = res.memory() {
        let mem_limit = m.limit().unwrap_or(0);
        if mem_limit != 0 {
            let name = if unified { "MemoryMax" } else { "MemoryLimit" };
            p.push((name, Value::U64(limit(mem_limit))));
        }
        if unified {
            if let Some(r) = m.reservation().filter(|r| *r != 0) {
                p.push(("MemoryLow", Value::U64(limit(r))));
            }
            let swap = m.swap().unwrap_or(0);
            // Unlimited memory with swap unset: swap is unlimited too (as the writer does).
            let swap = if mem_limit == -1 && swap == 0 {
                -1
            } else {
                swap
            };
            if let Some(s) = limits::v2_swap(mem_limit, swap)? {
                p.push((
                    "MemorySwapMax",
                    Value::U64(parse_max("linux.resources.memory.swap", &s)?),
                ));
            }
        }
    }
    if let Some(c) = res.cpu() {
        if let Some(s) = c.shares().filter(|s| *s != 0) {
            if unified {
                p.push(("CPUWeight", Value::U64(limits::shares_to_weight(s))));
            } else {
                p.push(("CPUShares", Value::U64(s)));
            }
        }
        let quota = c.quota().unwrap_or(0);
        let period = c.period().unwrap_or(0);
        if unified && (quota != 0 || period != 0) {
            cpu_quota(&mut p, quota, period, version);
        }
        if version >= 244 {
            if let Some(cpus) = c.cpus().as_deref().filter(|s| !s.is_empty()) {
                p.push(("AllowedCPUs", bitmask("linux.resources.cpu.cpus", cpus)?));
            }
            if let Some(mems) = c.mems().as_deref().filter(|s| !s.is_empty()) {
                p.push((
                    "AllowedMemoryNodes",
                    bitmask("linux.resources.cpu.mems", mems)?,
                ));
            }
        }
    }
    if let Some(pids) = res.pids() {
        // runc: a positive limit, or -1 for none; 0 leaves the unit's default.
        if pids.limit() > 0 || pids.limit() == -1 {
            p.push(("TasksMax", Value::U64(limit(pids.limit()))));
        }
    }
    if let Some(w) = res.block_io().as_ref().and_then(|b| b.weight()) {
        if w != 0 {
            if unified {
                p.push(("IOWeight", Value::U64(limits::blkio_to_io_weight(w))));
            } else {
                p.push(("BlockIOWeight", Value::U64(u64::from(w))));
            }
        }
    }
    if unified {
        if let Some(u) = res.unified() {
            let mut keys: Vec<_> = u.keys().collect();
            keys.sort();
            for k in keys {
                unified_prop(&mut p, k, &u[k], version)?;
            }
        }
    }
    // A later entry (from `unified`) overrides an earlier one of the same name.
    let mut out: Vec<(&str, Value)> = Vec::new();
    for (name, v) in p {
        out.retain(|(n, _)| *n != name);
        out.push((name, v));
    }
    Ok(out.into_iter().map(|(n, v)| prop(n, v)).collect())
}

/// systemd holds CPU quota as time per second, in 10 ms steps (rounded up, as runc does);
/// berth's own write of cpu.max afterwards keeps the exact value in the kernel.
fn cpu_quota(p: &mut Vec<(&'static str, Value)>, quota: i64, period: u64, version: u32) {
    let period = if period == 0 { 100_000 } else { period };
    let per_sec = if quota > 0 {
        let us = (quota as u64).saturating_mul(1_000_000) / period;
        us.div_ceil(10_000) * 10_000
    } else {
        INFINITY
    };
    p.push(("CPUQuotaPerSecUSec", Value::U64(per_sec)));
    if version >= 242 {
        p.push(("CPUQuotaPeriodUSec", Value::U64(period)));
    }
}

fn parse_max(field: &str, s: &str) -> Result<u64> {
    let s = s.trim();
    if s == "max" {
        return Ok(INFINITY);
    }
    s.parse()
        .map_err(|_| Error::config(field, format!("{s:?} is not a number or \"max\"")))
}

fn unified_prop(
    p: &mut Vec<(&'static str, Value)>,
    key: &str,
    value: &str,
    version: u32,
) -> Result<()> {
    let field = format!("linux.resources.unified.{key}");
    let name = match key {
        "memory.high" => "MemoryHigh",
        "memory.low" => "MemoryLow",
        "memory.min" => "MemoryMin",
        "memory.max" => "MemoryMax",
        "memory.swap.max" => "MemorySwapMax",
        "pids.max" => "TasksMax",
        "cpu.weight" => "CPUWeight",
        "cpuset.cpus" | "cpuset.mems" if version >= 244 => {
            let name = if key == "cpuset.cpus" {
                "AllowedCPUs"
            } else {
                "AllowedMemoryNodes"
            };
            p.push((name, bitmask(&field, value)?));
            return Ok(());
        }
        "cpu.max" => {
            let mut words = value.split_whitespace();
            let quota = match words.next() {
                Some("max") => -1,
                Some(q) => q
                    .parse()
                    .map_err(|_| Error::config(&field, format!("{value:?}: bad quota")))?,
                None => return Err(Error::config(&field, "empty")),
            };
            let period = match words.next() {
                Some(w) => w
                    .parse()
                    .map_err(|_| Error::config(&field, format!("{value:?}: bad period")))?,
                None => 0,
            };
            cpu_quota(p, quota, period, version);
            return Ok(());
        }
        // Not a unit property: berth's writer alone sets it.
        _ => return Ok(()),
    };
    p.push((name, Value::U64(parse_max(&field, value)?)));
    Ok(())
}

/// A cpu or node list ("0-3,8") as systemd's byte array: bit n of byte n/8.
fn bitmask(field: &str, list: &str) -> Result<Value> {
    let bad = || Error::config(field, format!("{list:?} is not a list like 0-3,8"));
    let mut bytes: Vec<u8> = Vec::new();
    for part in list.trim().split(',').filter(|s| !s.is_empty()) {
        let (lo, hi) = match part.split_once('-') {
            Some((a, b)) => (a.trim().parse::<usize>(), b.trim().parse::<usize>()),
            None => (part.trim().parse(), part.trim().parse()),
        };
        let (lo, hi) = (lo.map_err(|_| bad())?, hi.map_err(|_| bad())?);
        // The kernel's limit on CPUs (CONFIG_NR_CPUS tops out at 8192).
        if lo > hi || hi >= 8192 {
            return Err(bad());
        }
        if bytes.len() <= hi / 8 {
            bytes.resize(hi / 8 + 1, 0);
        }
        for n in lo..=hi {
            bytes[n / 8] |= 1 << (n % 8);
        }
    }
    Ok(Value::Array(
        "y".into(),
        bytes.into_iter().map(Value::Byte).collect(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use oci_spec::runtime::{
        LinuxCpuBuilder, LinuxMemoryBuilder, LinuxPidsBuilder, LinuxResourcesBuilder,
    };

    fn names(props: &[Value]) -> Vec<(String, Value)> {
        props
            .iter()
            .map(|p| match p {
                Value::Struct(f) => match (&f[0], &f[1]) {
                    (Value::Str(n), Value::Variant(v)) => (n.clone(), (**v).clone()),
                    _ => panic!("bad property {p:?}"),
                },
                _ => panic!("bad property {p:?}"),
            })
            .collect()
    }

    #[test]
    fn unit_and_slice_from_the_path() {
        let (u, s) = unit_names(Path::new("/berthit.slice/berth-x.scope")).expect("names");
        assert_eq!((u.as_str(), s.as_str()), ("berth-x.scope", "berthit.slice"));
        let (u, s) = unit_names(Path::new("/a.slice/a-b.slice/p-n.scope")).expect("names");
        assert_eq!((u.as_str(), s.as_str()), ("p-n.scope", "a-b.slice"));
        let (_, s) = unit_names(Path::new("/p-n.scope")).expect("names");
        assert_eq!(s, "-.slice");
        assert!(unit_names(Path::new("/berth-it/x")).is_err());
    }

    #[test]
    fn v2_properties_as_runc_sends_them() {
        let res = LinuxResourcesBuilder::default()
            .memory(
                LinuxMemoryBuilder::default()
                    .limit(64 << 20)
                    .swap(96 << 20)
                    .reservation(32 << 20)
                    .build()
                    .expect("memory"),
            )
            .cpu(
                LinuxCpuBuilder::default()
                    .shares(1024u64)
                    .quota(12_345i64)
                    .period(100_000u64)
                    .cpus("0-2,9")
                    .build()
                    .expect("cpu"),
            )
            .pids(LinuxPidsBuilder::default().limit(7).build().expect("pids"))
            .build()
            .expect("resources");
        let p = names(&properties(&res, true, 252).expect("props"));
        let get = |n: &str| p.iter().find(|(k, _)| k == n).map(|(_, v)| v.clone());
        assert_eq!(get("MemoryMax"), Some(Value::U64(64 << 20)));
        assert_eq!(get("MemoryLow"), Some(Value::U64(32 << 20)));
        assert_eq!(get("MemorySwapMax"), Some(Value::U64(32 << 20)));
        assert_eq!(get("CPUWeight"), Some(Value::U64(39)));
        // 123450 us/s rounds up to systemd's 10 ms steps.
        assert_eq!(get("CPUQuotaPerSecUSec"), Some(Value::U64(130_000)));
        assert_eq!(get("CPUQuotaPeriodUSec"), Some(Value::U64(100_000)));
        assert_eq!(get("TasksMax"), Some(Value::U64(7)));
        assert_eq!(
            get("AllowedCPUs"),
            Some(Value::Array(
                "y".into(),
                vec![Value::Byte(0b0000_0111), Value::Byte(0b0000_0010)]
            ))
        );
        // Too old a systemd gets neither the cpuset nor the period.
        let old = names(&properties(&res, true, 240).expect("props"));
        assert!(!old
            .iter()
            .any(|(k, _)| k == "AllowedCPUs" || k == "CPUQuotaPeriodUSec"));
    }

    #[test]
    fn unlimited_and_unified() {
        let mut unified = std::collections::HashMap::new();
        unified.insert("memory.high".to_string(), "max".to_string());
        unified.insert("pids.max".to_string(), "20".to_string());
        unified.insert("cpu.max".to_string(), "max 50000".to_string());
        let res = LinuxResourcesBuilder::default()
            .memory(
                LinuxMemoryBuilder::default()
                    .limit(-1)
                    .build()
                    .expect("memory"),
            )
            .pids(LinuxPidsBuilder::default().limit(-1).build().expect("pids"))
            .unified(unified)
            .build()
            .expect("resources");
        let p = names(&properties(&res, true, 252).expect("props"));
        let get = |n: &str| p.iter().find(|(k, _)| k == n).map(|(_, v)| v.clone());
        assert_eq!(get("MemoryMax"), Some(Value::U64(INFINITY)));
        assert_eq!(get("MemorySwapMax"), Some(Value::U64(INFINITY)));
        assert_eq!(get("MemoryHigh"), Some(Value::U64(INFINITY)));
        // unified overrides the pids limit, and appears once.
        assert_eq!(get("TasksMax"), Some(Value::U64(20)));
        assert_eq!(p.iter().filter(|(k, _)| k == "TasksMax").count(), 1);
        assert_eq!(get("CPUQuotaPerSecUSec"), Some(Value::U64(INFINITY)));
        assert_eq!(get("CPUQuotaPeriodUSec"), Some(Value::U64(50_000)));
    }

    #[test]
    fn v1_names() {
        let res = LinuxResourcesBuilder::default()
            .memory(
                LinuxMemoryBuilder::default()
                    .limit(1 << 20)
                    .build()
                    .expect("memory"),
            )
            .cpu(
                LinuxCpuBuilder::default()
                    .shares(512u64)
                    .build()
                    .expect("cpu"),
            )
            .build()
            .expect("resources");
        let p = names(&properties(&res, false, 252).expect("props"));
        let keys: Vec<_> = p.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(keys, vec!["MemoryLimit", "CPUShares"]);
    }

    #[test]
    fn bad_lists_are_refused() {
        assert!(bitmask("f", "3-1").is_err());
        assert!(bitmask("f", "x").is_err());
        assert!(bitmask("f", "99999").is_err());
    }
}
