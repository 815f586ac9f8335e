//! The container's cgroup: path resolution (cgroupfs and systemd's slice:prefix:name),
//! creating and joining it, limits, freezing, and removal of what create made.
//!
//! cgroupfs is written directly, not through libcgroups: its managers re-read
//! /proc/self/mountinfo and /proc/self/cgroup for every controller each time one is built
//! (about 400 system calls per create and again per delete), and berth already knows the
//! hierarchies.

mod dbus;
pub mod stats;
pub mod systemd;

use std::fs;
use std::os::fd::AsFd;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nix::poll::{poll, PollFd, PollFlags, PollTimeout};

use oci_spec::runtime::LinuxResources;

use crate::error::{Error, Result};
use crate::{logging, sys};

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

/// Before the clone: makes the container's cgroup in the cgroup v2 tree (a pure v2 host's, or
/// a hybrid host's `unified`) and opens it, so the init is born in it (clone3
/// CLONE_INTO_CGROUP) instead of moved there afterwards. None under systemd (the unit places
/// the init), on a v1-only host, or if the directory cannot be made here (the join then
/// reports it).
/// `existed`: the cgroup was there before create, and is checked (see `preflight`).
pub fn prepare_v2(path: &Path, existed: bool) -> Result<Option<std::os::fd::OwnedFd>> {
    let base = if is_unified() {
        PathBuf::from(CGROUP_ROOT)
    } else {
        Path::new(CGROUP_ROOT).join("unified")
    };
    if !hierarchies().contains(&base) {
        return Ok(None);
    }
    if existed {
        preflight(path)?;
    }
    let rel = path.strip_prefix("/").unwrap_or(path);
    if make_dirs(&base, rel, false).is_err() {
        return Ok(None);
    }
    let dir = base.join(rel);
    Ok(nix::fcntl::open(
        &dir,
        nix::fcntl::OFlag::O_RDONLY | nix::fcntl::OFlag::O_DIRECTORY | nix::fcntl::OFlag::O_CLOEXEC,
        nix::sys::stat::Mode::empty(),
    )
    .ok()
    // SAFETY: open just returned this fd and nothing else owns it.
    .map(|fd| unsafe { std::os::fd::FromRawFd::from_raw_fd(fd) }))
}

/// Puts `pid` in the cgroup (creating it) and applies the resource limits and device rules.
/// With `systemd`, systemd::start has made the unit already and placed the pid in a scope:
/// berth then only joins the hierarchies systemd does not manage (v1) and writes the limits.
/// `born_in_v2`: the init was cloned into the v2 tree's cgroup (see `prepare_v2`), which is
/// not written again. `check`: the cgroup was there before create (and not checked yet).
pub fn join_and_apply(
    path: &Path,
    pid: i32,
    resources: Option<&LinuxResources>,
    device_rules: &[devices::Rule],
    systemd: bool,
    born_in_v2: bool,
    check: bool,
) -> Result<()> {
    let scope = systemd && path.extension().is_some_and(|e| e == "scope");
    if !scope && check {
        preflight(path)?;
    }
    create_and_join(path, pid, scope, born_in_v2)?;
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

/// Makes the cgroup in every hierarchy (every v1 controller mount, named ones such as
/// name=systemd, and a hybrid host's cgroup2 `unified` tree, so that a cgroup mount inside the
/// container shows only its own cgroup) and writes `pid` into each. Under a systemd scope the
/// unit's own hierarchies already hold the pid: writing it again is a no-op.
fn create_and_join(path: &Path, pid: i32, scope: bool, born_in_v2: bool) -> Result<()> {
    let rel = path.strip_prefix("/").unwrap_or(path);
    let pid = pid.to_string();
    for base in hierarchies() {
        if born_in_v2 && (is_unified() || base.ends_with("unified")) {
            continue;
        }
        let dir = base.join(rel);
        let procs = dir.join("cgroup.procs");
        // Another container's delete may remove a shared, empty parent between the mkdir and
        // the join: make the path again then.
        let mut tries = 0;
        loop {
            tries += 1;
            let r = make_dirs(&base, rel, scope).and_then(|()| fs::write(&procs, &pid));
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

/// mkdir -p of `rel` under one hierarchy. A new v1 cpuset level starts with empty
/// cpuset.cpus/mems, which no task may join (ENOSPC): each empty one gets its parent's. On a pure v2 host each
/// level above the container's enables the root's controllers for its children, as runc does
/// (not the container's own: a cgroup with controllers enabled for children cannot hold
/// processes).
fn make_dirs(base: &Path, rel: &Path, scope: bool) -> std::io::Result<()> {
    let v2 = is_unified();
    let cpuset = !v2
        && base
            .file_name()
            .is_some_and(|n| n.to_string_lossy().split(',').any(|c| c == "cpuset"));
    let root_controllers = if v2 && !scope {
        fs::read_to_string(base.join("cgroup.controllers")).unwrap_or_default()
    } else {
        String::new()
    };
    let mut dir = base.to_path_buf();
    for comp in rel.components() {
        if !root_controllers.is_empty() {
            enable_for_children(&dir, &root_controllers);
        }
        let parent = dir.clone();
        dir.push(comp);
        match fs::create_dir(&dir) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(e),
        }
        if cpuset {
            // Also when the level already exists: a concurrent create may have made it an
            // instant ago and not filled it in yet (the value is the same either way).
            for file in ["cpuset.cpus", "cpuset.mems"] {
                if fs::read_to_string(dir.join(file))?.trim().is_empty() {
                    let value = fs::read_to_string(parent.join(file))?;
                    fs::write(dir.join(file), value.trim())?;
                }
            }
        }
    }
    Ok(())
}

/// `+ctrl` in dir's cgroup.subtree_control for each of `controllers` not enabled yet. Best
/// effort: a limit that needs a controller the host cannot enable fails when it is written,
/// naming its field.
fn enable_for_children(dir: &Path, controllers: &str) {
    let file = dir.join("cgroup.subtree_control");
    let enabled = fs::read_to_string(&file).unwrap_or_default();
    for c in controllers.split_whitespace() {
        if enabled.split_whitespace().any(|e| e == c) {
            continue;
        }
        if let Err(e) = fs::write(&file, format!("+{c}")) {
            logging::debug(&format!("enable {c} in {}: {e}", file.display()));
        }
    }
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
    let rel = path.strip_prefix("/").unwrap_or(path);
    let depth = path.components().count().saturating_sub(1);
    let mut result = Ok(());
    for base in hierarchies() {
        let mut p = base.join(rel);
        if let Err(e) = remove_tree(&p) {
            if result.is_ok() {
                result = Err(Error::Cgroup(format!("remove {}: {e}", p.display())));
            }
            continue;
        }
        // Parents create made, if now empty (another container may still use them).
        for _ in created_depth..depth {
            if !p.pop() {
                break;
            }
            let _ = fs::remove_dir(&p);
        }
    }
    result
}

/// Removes a cgroup and the cgroups the container made inside it, deepest first. A cgroup
/// that still holds processes (EBUSY) has them killed and waited for on pidfds, then is
/// removed again; delete has normally killed and waited for every process already.
fn remove_tree(dir: &Path) -> std::io::Result<()> {
    let children = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    for entry in children.flatten() {
        if entry.file_type().is_ok_and(|t| t.is_dir()) {
            remove_tree(&entry.path())?;
        }
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        match fs::remove_dir(dir) {
            Ok(()) => return Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) if e.raw_os_error() == Some(libc::EBUSY) && Instant::now() < deadline => {
                let pids = read_procs(dir);
                if pids.is_empty() {
                    // Emptied but not released yet: the kernel finishes the exit shortly.
                    std::thread::yield_now();
                    continue;
                }
                let fds: Vec<_> = pids
                    .iter()
                    .filter_map(|p| sys::pidfd_open(*p).ok())
                    .collect();
                for fd in &fds {
                    use std::os::fd::AsRawFd;
                    let _ = sys::pidfd_send_signal(fd.as_raw_fd(), libc::SIGKILL);
                }
                sys::wait_pidfds(&fds, deadline);
            }
            Err(e) => return Err(e),
        }
    }
}

fn read_procs(dir: &Path) -> Vec<i32> {
    fs::read_to_string(dir.join("cgroup.procs"))
        .map(|s| {
            s.split_whitespace()
                .filter_map(|p| p.parse().ok())
                .collect()
        })
        .unwrap_or_default()
}

pub fn freeze(path: &Path, frozen: bool) -> Result<()> {
    if is_unified() {
        return freeze_v2(path, frozen);
    }
    freeze_v1(path, frozen)
}

/// v1: writes freezer.state. FROZEN may read back FREEZING while tasks are still being
/// stopped; writing FROZEN again retries the ones left. v1 has no change notification.
fn freeze_v1(path: &Path, frozen: bool) -> Result<()> {
    let rel = path.strip_prefix("/").unwrap_or(path);
    let file = Path::new(CGROUP_ROOT)
        .join("freezer")
        .join(rel)
        .join("freezer.state");
    let err = |e: std::io::Error| Error::Cgroup(format!("freeze {}: {e}", file.display()));
    if !frozen {
        return fs::write(&file, "THAWED").map_err(err);
    }
    let deadline = Instant::now() + FREEZE_TIMEOUT;
    loop {
        fs::write(&file, "FROZEN").map_err(err)?;
        if fs::read_to_string(&file).map_err(err)?.trim() == "FROZEN" {
            return Ok(());
        }
        if Instant::now() >= deadline {
            let _ = fs::write(&file, "THAWED");
            return Err(Error::Cgroup(format!(
                "{}: still FREEZING after {}s",
                file.display(),
                FREEZE_TIMEOUT.as_secs()
            )));
        }
        std::thread::yield_now();
    }
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

/// Every pid in the container's cgroup and the cgroups below it, read from one hierarchy (on
/// v1 the freezer's, which pause and kill use too).
pub fn pids(path: &Path) -> Result<Vec<i32>> {
    let rel = path.strip_prefix("/").unwrap_or(path);
    let list = hierarchies();
    let base = list
        .iter()
        .find(|b| b.file_name().is_some_and(|n| n == "freezer"))
        .or_else(|| list.first())
        .ok_or_else(|| Error::Cgroup("no cgroup hierarchy is mounted".into()))?;
    let dir = base.join(rel);
    if !dir.is_dir() {
        return Err(Error::Cgroup(format!("{} does not exist", dir.display())));
    }
    let mut out = Vec::new();
    collect_pids(&dir, &mut out);
    out.sort_unstable();
    out.dedup();
    Ok(out)
}

fn collect_pids(dir: &Path, out: &mut Vec<i32>) {
    out.extend(read_procs(dir));
    if let Ok(entries) = fs::read_dir(dir) {
        for e in entries.flatten() {
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                collect_pids(&e.path(), out);
            }
        }
    }
}
