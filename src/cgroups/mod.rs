//! The container's cgroup, through libcgroups: path resolution (cgroupfs and systemd's
//! slice:prefix:name), joining, limits, freezing, and removal of what create made.

mod dbus;
pub mod stats;
pub mod systemd;

use std::fs;
use std::os::fd::AsFd;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nix::poll::{poll, PollFd, PollFlags, PollTimeout};

use libcgroups::common::{
    create_cgroup_manager, AnyCgroupManager, CgroupConfig, CgroupManager, FreezerState,
};
use nix::unistd::Pid;
use oci_spec::runtime::LinuxResources;

use crate::error::{Error, Result};
use crate::logging;

pub mod devices;
pub mod limits;

const CGROUP_ROOT: &str = "/sys/fs/cgroup";

/// Whether /sys/fs/cgroup is a pure cgroup v2 host. The host's cgroup layout does not change
/// while berth runs: asked once (create used to statfs it at each step).
pub fn is_unified() -> bool {
    static UNIFIED: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *UNIFIED.get_or_init(|| {
        nix::sys::statfs::statfs(CGROUP_ROOT)
            .map(|s| s.filesystem_type() == nix::sys::statfs::CGROUP2_SUPER_MAGIC)
            .unwrap_or(false)
    })
}

/// Turns the config's cgroupsPath into the path berth uses in every hierarchy.
///
/// - empty: `/<id>` (runc's default), or `system.slice:berth:<id>` with `--systemd-cgroup`;
/// - `slice:prefix:name` with `--systemd-cgroup`: the slice expanded as systemd nests it
///   (`a-b.slice` lives in `a.slice/a-b.slice`) plus `<prefix>-<name>.scope`;
/// - otherwise the path itself; a relative path is taken from the hierarchy's root.
pub fn resolve_path(cgroups_path: Option<&Path>, id: &str, systemd: bool) -> Result<PathBuf> {
    let given = cgroups_path
        .map(|p| p.to_string_lossy().into_owned())
        .unwrap_or_default();
    if systemd {
        let spec = if given.is_empty() {
            format!("system.slice:berth:{id}")
        } else {
            given
        };
        return systemd_to_path(&spec);
    }
    if given.is_empty() {
        return Ok(PathBuf::from(format!("/{id}")));
    }
    let path = PathBuf::from(&given);
    if path
        .components()
        .any(|c| matches!(c, std::path::Component::ParentDir))
    {
        return Err(Error::config(
            "linux.cgroupsPath",
            format!("{given:?} must not contain '..'"),
        ));
    }
    Ok(if path.is_absolute() {
        path
    } else {
        Path::new("/").join(path)
    })
}

fn systemd_to_path(spec: &str) -> Result<PathBuf> {
    let parts: Vec<&str> = spec.split(':').collect();
    let [slice, prefix, name] = parts[..] else {
        return Err(Error::config(
            "linux.cgroupsPath",
            format!("{spec:?} is not of the form slice:prefix:name (--systemd-cgroup)"),
        ));
    };
    if name.is_empty() || name.contains('/') || prefix.contains('/') || slice.contains('/') {
        return Err(Error::config(
            "linux.cgroupsPath",
            format!("{spec:?}: slice, prefix and name must be plain names"),
        ));
    }
    let mut path = PathBuf::from("/");
    let slice = if slice.is_empty() {
        "system.slice"
    } else {
        slice
    };
    if slice != "-.slice" {
        let stem = slice.strip_suffix(".slice").ok_or_else(|| {
            Error::config("linux.cgroupsPath", format!("{slice:?} is not a .slice"))
        })?;
        let mut acc = String::new();
        for part in stem.split('-') {
            if !acc.is_empty() {
                acc.push('-');
            }
            acc.push_str(part);
            path.push(format!("{acc}.slice"));
        }
    }
    let unit = if name.ends_with(".slice") {
        name.to_string()
    } else if prefix.is_empty() {
        format!("{name}.scope")
    } else {
        format!("{prefix}-{name}.scope")
    };
    path.push(unit);
    Ok(path)
}

fn manager(path: &Path) -> Result<AnyCgroupManager> {
    // berth resolves systemd paths itself, so libcgroups always gets a cgroupfs path.
    create_cgroup_manager(CgroupConfig {
        cgroup_path: path.to_path_buf(),
        systemd_cgroup: false,
        container_name: String::new(),
    })
    .map_err(|e| Error::Cgroup(format!("{}: {e}", path.display())))
}

/// The hierarchies berth writes: every v1 controller mount, or the unified root. Listed once
/// per run (create walks them for the frozen check, the join, limits and devices).
fn hierarchies() -> Vec<PathBuf> {
    static LIST: std::sync::OnceLock<Vec<PathBuf>> = std::sync::OnceLock::new();
    LIST.get_or_init(|| {
        if is_unified() {
            return vec![PathBuf::from(CGROUP_ROOT)];
        }
        let Ok(entries) = fs::read_dir(CGROUP_ROOT) else {
            return Vec::new();
        };
        entries
            .filter_map(|e| e.ok())
            .map(|e| e.path())
            .filter(|p| p.join("cgroup.procs").exists())
            .collect()
    })
    .clone()
}

/// The shallowest ancestor of `path` (inside the hierarchies) that does not exist yet, as a depth:
/// delete removes empty directories up to that depth and no further.
/// Whether the cgroup exists in any hierarchy.
pub fn exists(path: &Path) -> bool {
    let rel = path.strip_prefix("/").unwrap_or(path);
    hierarchies().iter().any(|base| base.join(rel).is_dir())
}

pub fn first_missing_depth(path: &Path) -> usize {
    let comps: Vec<_> = path.components().skip(1).collect();
    let Some(base) = hierarchies().into_iter().next() else {
        return comps.len();
    };
    let mut cur = base;
    for (i, c) in comps.iter().enumerate() {
        cur.push(c);
        if !cur.exists() {
            return i + 1;
        }
    }
    comps.len()
}

/// Refuses a cgroup that is already frozen (the init would hang in it), and warns about one
/// that already holds processes, as runc does.
fn preflight(path: &Path) -> Result<()> {
    if is_frozen(path) {
        return Err(Error::Cgroup(format!(
            "container's cgroup unexpectedly frozen: {}",
            path.display()
        )));
    }
    let rel = path.strip_prefix("/").unwrap_or(path);
    let mut found: Vec<String> = Vec::new();
    for base in hierarchies() {
        if let Ok(procs) = fs::read_to_string(base.join(rel).join("cgroup.procs")) {
            found.extend(procs.split_whitespace().map(str::to_string));
        }
    }
    found.sort();
    found.dedup();
    if !found.is_empty() {
        logging::warn(&format!(
            "container's cgroup is not empty: {} process(es) found",
            found.len()
        ));
    }
    Ok(())
}

/// Puts `pid` in the cgroup (creating it) and applies the resource limits and device rules.
/// With `systemd`, systemd::start has made the unit already and placed the pid in a scope:
/// berth then only joins the hierarchies systemd does not manage (v1) and writes the limits.
pub fn join_and_apply(
    path: &Path,
    pid: i32,
    resources: Option<&LinuxResources>,
    device_rules: &[devices::Rule],
    systemd: bool,
) -> Result<()> {
    let scope = systemd && path.extension().is_some_and(|e| e == "scope");
    if !scope {
        preflight(path)?;
        let mgr = manager(path)?;
        mgr.add_task(Pid::from_raw(pid))
            .map_err(|e| Error::Cgroup(format!("join {}: {e}", path.display())))?;
    }
    join_other_hierarchies(path, pid)?;
    // Limits are berth's own writes (limits.rs), device rules too (devices.rs): libcgroups
    // only creates and joins the cgroup.
    if let Some(resources) = resources {
        limits::apply(path, resources, limits::Current::default())?;
    }
    devices::apply(path, device_rules)
}

/// Bytes of memory the cgroup uses now (memory.usage_in_bytes on v1, memory.current on v2).
pub fn memory_usage(path: &Path) -> Option<u64> {
    let layout = limits::Layout::detect();
    let dir = layout.dir("memory", path)?;
    let file = match layout.version_of("memory")? {
        limits::Version::V1 => "memory.usage_in_bytes",
        limits::Version::V2 => "memory.current",
    };
    fs::read_to_string(dir.join(file)).ok()?.trim().parse().ok()
}

/// On v1 and hybrid hosts libcgroups joins only the controllers it manages; named hierarchies
/// (name=systemd) and the hybrid cgroup2 `unified` tree would leave the container in the
/// runtime's own cgroup, which a cgroup mount inside the container would then show with all
/// its siblings. The container gets its own cgroup in every hierarchy.
fn join_other_hierarchies(path: &Path, pid: i32) -> Result<()> {
    if is_unified() {
        return Ok(());
    }
    let rel = path.strip_prefix("/").unwrap_or(path);
    for base in hierarchies() {
        let dir = base.join(rel);
        let procs = dir.join("cgroup.procs");
        // Another container's delete may remove a shared, empty parent between the mkdir and
        // the join: make the path again then.
        let mut tries = 0;
        loop {
            tries += 1;
            let r = fs::create_dir_all(&dir).and_then(|()| fs::write(&procs, pid.to_string()));
            match r {
                Ok(()) => break,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound && tries < 5 => continue,
                Err(e) => {
                    return Err(Error::Cgroup(format!("join {}: {e}", procs.display())));
                }
            }
        }
    }
    Ok(())
}

/// Puts `pid` in the container's existing cgroup in every hierarchy, or in the sub-cgroups
/// `subs` names (`path` for all hierarchies, `controller:path` for one v1 hierarchy; both
/// relative to the container's cgroup, and never created here).
pub fn join_existing(path: &Path, pid: i32, subs: &[String]) -> Result<()> {
    let unified = is_unified();
    let mut all: Option<&str> = None;
    let mut by_controller: Vec<(&str, &str)> = Vec::new();
    for s in subs {
        let (ctrl, sub) = match s.split_once(':') {
            Some((c, p)) => (Some(c), p),
            None => (None, s.as_str()),
        };
        let sub_path = Path::new(sub);
        if sub_path.is_absolute()
            || sub_path
                .components()
                .any(|c| matches!(c, std::path::Component::ParentDir))
        {
            return Err(Error::config(
                "--cgroup",
                format!("{s:?}: the path must be relative to the container's cgroup, without '..'"),
            ));
        }
        match ctrl {
            None | Some("") => all = Some(sub),
            Some(_) if unified => {
                return Err(Error::config(
                    "--cgroup",
                    format!("{s:?}: controller names only apply to cgroup v1"),
                ))
            }
            Some(c) => by_controller.push((c, sub)),
        }
    }
    let rel = path.strip_prefix("/").unwrap_or(path);
    let mut matched = vec![false; by_controller.len()];
    for base in hierarchies() {
        let name = base
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let mut dir = base.join(rel);
        let own = by_controller.iter().position(|(c, _)| {
            name.split(',').any(|n| n == *c) || c.strip_prefix("name=") == Some(name.as_str())
        });
        match (own, all) {
            (Some(i), _) => {
                matched[i] = true;
                dir.push(by_controller[i].1);
            }
            (None, Some(sub)) => dir.push(sub),
            (None, None) => {}
        }
        let procs = dir.join("cgroup.procs");
        fs::write(&procs, pid.to_string()).map_err(|e| {
            if e.kind() == std::io::ErrorKind::NotFound {
                Error::Cgroup(format!("{} does not exist", dir.display()))
            } else {
                Error::Cgroup(format!("join {}: {e}", procs.display()))
            }
        })?;
    }
    if let Some(i) = matched.iter().position(|m| !m) {
        return Err(Error::config(
            "--cgroup",
            format!(
                "no cgroup hierarchy has the controller {:?}",
                by_controller[i].0
            ),
        ));
    }
    Ok(())
}

/// Removes the container's cgroup, then its empty parents down to `created_depth`. With
/// `systemd`, stops the unit berth started (systemd removes its cgroup and leaves the slices
/// to itself); only what systemd does not manage (other v1 hierarchies) is removed here.
pub fn remove(path: &Path, created_depth: usize, systemd: bool) -> Result<()> {
    if systemd {
        let stopped = systemd::stop(path);
        for base in hierarchies() {
            let _ = fs::remove_dir(base.join(path.strip_prefix("/").unwrap_or(path)));
        }
        return stopped;
    }
    let result = manager(path).and_then(|m| {
        m.remove()
            .map_err(|e| Error::Cgroup(format!("remove {}: {e}", path.display())))
    });
    let depth = path.components().count().saturating_sub(1);
    for base in hierarchies() {
        let mut p = base.join(path.strip_prefix("/").unwrap_or(path));
        // Hierarchies libcgroups does not manage (see join_other_hierarchies).
        let _ = fs::remove_dir(&p);
        for _ in created_depth..depth {
            if !p.pop() {
                break;
            }
            let _ = fs::remove_dir(&p);
        }
    }
    result
}

pub fn freeze(path: &Path, frozen: bool) -> Result<()> {
    if is_unified() {
        return freeze_v2(path, frozen);
    }
    let state = if frozen {
        FreezerState::Frozen
    } else {
        FreezerState::Thawed
    };
    manager(path)?
        .freeze(state)
        .map_err(|e| Error::Cgroup(format!("freeze {}: {e}", path.display())))
}

/// How long pause/resume waits for the kernel to report the new state.
const FREEZE_TIMEOUT: Duration = Duration::from_secs(10);

/// v2: writes cgroup.freeze, then waits until cgroup.events says the whole cgroup is frozen
/// (or thawed): the write only asks, and a task in uninterruptible sleep delays it. The kernel
/// signals changes of cgroup.events as POLLPRI, so the wait is a poll, not a sleep loop.
fn freeze_v2(path: &Path, frozen: bool) -> Result<()> {
    let dir = Path::new(CGROUP_ROOT).join(path.strip_prefix("/").unwrap_or(path));
    let want = if frozen { "frozen 1" } else { "frozen 0" };
    let events_path = dir.join("cgroup.events");
    let events = fs::File::open(&events_path)
        .map_err(|e| Error::Cgroup(format!("open {}: {e}", events_path.display())))?;
    fs::write(dir.join("cgroup.freeze"), if frozen { "1" } else { "0" })
        .map_err(|e| Error::Cgroup(format!("freeze {}: {e}", dir.display())))?;
    let deadline = Instant::now() + FREEZE_TIMEOUT;
    let mut buf = [0u8; 256];
    loop {
        let n = events
            .read_at(&mut buf, 0)
            .map_err(|e| Error::Cgroup(format!("read {}: {e}", events_path.display())))?;
        let text = String::from_utf8_lossy(&buf[..n]);
        if text.lines().any(|l| l.trim() == want) {
            return Ok(());
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(Error::Cgroup(format!(
                "{}: the kernel did not report \"{want}\" within {}s",
                events_path.display(),
                FREEZE_TIMEOUT.as_secs()
            )));
        }
        let ms = u16::try_from(left.as_millis()).unwrap_or(u16::MAX);
        let mut fds = [PollFd::new(events.as_fd(), PollFlags::POLLPRI)];
        match poll(&mut fds, PollTimeout::from(ms)) {
            Ok(_) | Err(nix::errno::Errno::EINTR) => {}
            Err(e) => {
                return Err(Error::Cgroup(format!(
                    "poll {}: {e}",
                    events_path.display()
                )))
            }
        }
    }
}

pub fn is_frozen(path: &Path) -> bool {
    let rel = path.strip_prefix("/").unwrap_or(path);
    let v1 = Path::new(CGROUP_ROOT).join("freezer").join(rel);
    if let Ok(s) = fs::read_to_string(v1.join("freezer.state")) {
        return s.trim() == "FROZEN";
    }
    let v2 = Path::new(CGROUP_ROOT).join(rel);
    // cgroup.events also says "frozen 1" when an ancestor is frozen.
    matches!(fs::read_to_string(v2.join("cgroup.freeze")), Ok(s) if s.trim() == "1")
        || matches!(fs::read_to_string(v2.join("cgroup.events")),
            Ok(s) if s.lines().any(|l| l.trim() == "frozen 1"))
}

/// SIGKILLs every process in the cgroup at once through cgroup v2's `cgroup.kill` (on a hybrid
/// host, the unified tree's, where the container has its cgroup too). False where the kernel
/// has no such file.
pub fn kill_all(path: &Path) -> bool {
    let rel = path.strip_prefix("/").unwrap_or(path);
    let file = if is_unified() {
        Path::new(CGROUP_ROOT).join(rel).join("cgroup.kill")
    } else {
        Path::new(CGROUP_ROOT)
            .join("unified")
            .join(rel)
            .join("cgroup.kill")
    };
    fs::write(file, "1").is_ok()
}

/// Every pid in the container's cgroup.
pub fn pids(path: &Path) -> Result<Vec<i32>> {
    let mgr = manager(path)?;
    mgr.get_all_pids()
        .map(|v| v.into_iter().map(|p| p.as_raw()).collect())
        .map_err(|e| Error::Cgroup(format!("list pids of {}: {e}", path.display())))
}
