//! Host-side observations used for leak checks: cgroups, mounts, processes,
//! namespaces.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

pub const CGROUP_ROOT: &str = "/sys/fs/cgroup";
pub const CGROUP_PARENT: &str = "berth-it";
/// The slice of the containers in systemd mode (no `-`: a dash would nest it).
pub const SYSTEMD_SLICE: &str = "berthit.slice";

static SYSTEMD_MODE: std::sync::OnceLock<bool> = std::sync::OnceLock::new();

/// Systemd mode (`--systemd-cgroup` or BERTH_IT_SYSTEMD=1): the runtime gets the global
/// `--systemd-cgroup`, containers get cgroupsPath `berthit.slice:berth:<id>`, and their cgroup
/// is the scope `berthit.slice/berth-<id>.scope`.
pub fn set_systemd_mode(on: bool) {
    let _ = SYSTEMD_MODE.set(on);
}

pub fn systemd_mode() -> bool {
    *SYSTEMD_MODE.get_or_init(|| std::env::var("BERTH_IT_SYSTEMD").is_ok_and(|v| v == "1"))
}

/// The cgroupsPath a case container gets.
pub fn cgroups_path(id: &str) -> String {
    if systemd_mode() {
        format!("{SYSTEMD_SLICE}:berth:{id}")
    } else {
        format!("/{CGROUP_PARENT}/{id}")
    }
}

/// The container's cgroup relative to a hierarchy's root.
pub fn cgroup_rel(id: &str) -> PathBuf {
    if systemd_mode() {
        Path::new(SYSTEMD_SLICE).join(format!("berth-{id}.scope"))
    } else {
        Path::new(CGROUP_PARENT).join(id)
    }
}

/// The directory holding the case containers' cgroups.
fn cgroup_parent() -> &'static str {
    if systemd_mode() {
        SYSTEMD_SLICE
    } else {
        CGROUP_PARENT
    }
}

/// Inode number of /proc/<pid>/ns/<ns> (pid may be "self").
pub fn ns_inode(pid: &str, ns: &str) -> Option<u64> {
    let l = fs::read_link(format!("/proc/{pid}/ns/{ns}")).ok()?;
    let s = l.to_string_lossy();
    let start = s.find('[')? + 1;
    let end = s.find(']')?;
    s[start..end].parse().ok()
}

/// True if the pid exists and is not a zombie.
/// The harness's own permitted capabilities (hex, as in /proc/self/status): as root, what a
/// runtime started from here can hand on.
pub fn own_cap_prm() -> Option<String> {
    let s = fs::read_to_string("/proc/self/status").ok()?;
    s.lines()
        .find_map(|l| l.strip_prefix("CapPrm:"))
        .map(|v| v.trim().to_string())
}

pub fn pid_alive(pid: i64) -> bool {
    if pid <= 0 {
        return false;
    }
    match fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(s) => match s.rfind(')') {
            Some(i) => !matches!(
                s[i + 1..].trim_start().chars().next(),
                Some('Z') | Some('X')
            ),
            None => true,
        },
        Err(_) => false,
    }
}

/// Hierarchy mount points under /sys/fs/cgroup (deduplicated); on a pure v2 host, the one
/// tree (its subdirectories are cgroups, not hierarchies).
pub fn hierarchies() -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = Vec::new();
    if Path::new(CGROUP_ROOT).join("cgroup.controllers").exists() {
        out.push(PathBuf::from(CGROUP_ROOT));
        return out;
    }
    let Ok(rd) = fs::read_dir(CGROUP_ROOT) else {
        return out;
    };
    for e in rd.flatten() {
        let p = e.path();
        let Ok(c) = fs::canonicalize(&p) else {
            continue;
        };
        if c.is_dir() && !out.contains(&c) {
            out.push(c);
        }
    }
    out.sort();
    out
}

/// Existing cgroup dirs for a container id (`cgroup_rel`) in any hierarchy.
pub fn cgroup_dirs(id: &str) -> Vec<PathBuf> {
    hierarchies()
        .into_iter()
        .map(|h| h.join(cgroup_rel(id)))
        .filter(|p| p.is_dir())
        .collect()
}

/// Cgroup dirs whose name contains the given fragment (e.g. an id prefix).
pub fn cgroup_dirs_matching(frag: &str) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for h in hierarchies() {
        if let Ok(rd) = fs::read_dir(h.join(cgroup_parent())) {
            for e in rd.flatten() {
                if e.file_name().to_string_lossy().contains(frag) {
                    out.push(e.path());
                }
            }
        }
    }
    out
}

/// rmdir a cgroup tree, deepest first. Never removes files.
pub fn remove_cgroup_tree(p: &Path) -> io::Result<()> {
    if let Ok(rd) = fs::read_dir(p) {
        for e in rd.flatten() {
            if e.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                remove_cgroup_tree(&e.path())?;
            }
        }
    }
    fs::remove_dir(p)
}

/// Remove the shared `berth-it` parent in each hierarchy if empty (the slice of systemd mode
/// is systemd's).
pub fn remove_cgroup_parents() {
    if systemd_mode() {
        return;
    }
    for h in hierarchies() {
        let _ = fs::remove_dir(h.join(CGROUP_PARENT));
    }
}

fn unescape(s: &str) -> String {
    s.replace("\\040", " ")
        .replace("\\011", "\t")
        .replace("\\012", "\n")
        .replace("\\134", "\\")
}

/// Mount points in our mount namespace at or below `dir`, deepest first.
pub fn mounts_under(dir: &Path) -> Vec<PathBuf> {
    let text = fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let mut v: Vec<PathBuf> = text
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .map(|m| PathBuf::from(unescape(m)))
        .filter(|m| m.starts_with(dir))
        .collect();
    v.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
    v.dedup();
    v
}

/// mountinfo lines mentioning a string anywhere (mount point or root).
pub fn mountinfo_mentions(s: &str) -> Vec<String> {
    fs::read_to_string("/proc/self/mountinfo")
        .unwrap_or_default()
        .lines()
        .filter(|l| unescape(l).contains(s))
        .map(String::from)
        .collect()
}

pub fn umount_detach(p: &Path) -> bool {
    let c = std::ffi::CString::new(p.as_os_str().as_encoded_bytes()).unwrap();
    unsafe { libc::umount2(c.as_ptr(), libc::MNT_DETACH) == 0 }
}

/// Every pid in /proc but the harness's own.
pub fn all_pids() -> Vec<i32> {
    let me = std::process::id() as i32;
    fs::read_dir("/proc")
        .map(|rd| {
            rd.flatten()
                .filter_map(|e| e.file_name().to_string_lossy().parse::<i32>().ok())
                .filter(|p| *p != me)
                .collect()
        })
        .unwrap_or_default()
}

/// Live processes whose cwd or root is at or below `dir`.
pub fn procs_under(dir: &Path) -> Vec<i32> {
    all_pids()
        .into_iter()
        .filter(|p| {
            ["cwd", "root"].iter().any(|w| {
                fs::read_link(format!("/proc/{p}/{w}"))
                    .map(|l| l.starts_with(dir))
                    .unwrap_or(false)
            }) && pid_alive(*p as i64)
        })
        .collect()
}

/// Live processes whose cgroup path contains the container's (`cgroup_rel`).
pub fn procs_in_cgroup(id: &str) -> Vec<i32> {
    let needle = format!("/{}", cgroup_rel(id).display());
    all_pids()
        .into_iter()
        .filter(|p| {
            fs::read_to_string(format!("/proc/{p}/cgroup"))
                .map(|c| {
                    c.lines()
                        .any(|l| l.ends_with(&needle) || l.contains(&format!("{needle}/")))
                })
                .unwrap_or(false)
                && pid_alive(*p as i64)
        })
        .collect()
}

pub fn kill9(pid: i32) {
    unsafe { libc::kill(pid, libc::SIGKILL) };
}
