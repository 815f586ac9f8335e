//! What a container left behind once the runtime says it is gone: its state directory, its
//! cgroup in every hierarchy, its processes, host mounts of its bundle, and its line in `list`.
//! Used by the reliability and race cases (after a final `delete --force`) and by the soak.
//!
//! Processes are tied to one container in two ways, so that other cases' and other runs'
//! processes are never counted: by cgroup (a line of /proc/PID/cgroup names the container's
//! cgroup), and by a tag in the environment (`BERTH_IT_TAG=<tag>`, given to every runtime
//! invocation of the container): the runtime's own children (`berth:[1:STAGE]`,
//! `berth:[2:INIT]`, `berth:[EXEC]`) are forks of it and carry its environment until they
//! execve the container's program, after which the cgroup names them.

use crate::host;
use crate::runtime::{Opts, Runtime};
use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// The environment variable that ties runtime processes to one container.
pub const TAG_VAR: &str = "BERTH_IT_TAG";

/// Opts for a runtime call on behalf of the container tagged `tag`.
pub fn tagged(tag: &str) -> Opts {
    Opts {
        env: vec![(TAG_VAR.into(), tag.into())],
        ..Default::default()
    }
}

/// One container as the checker sees it.
pub struct Target<'a> {
    pub rt: &'a Runtime,
    pub id: &'a str,
    /// The cgroupsPath of its config (`/a/b` or systemd's `slice:prefix:name`).
    pub cgroups_path: &'a str,
    /// Bundle directory and rootfs (the rootfs may live outside the bundle).
    pub bundle: &'a Path,
    pub rootfs: &'a Path,
    /// The value of BERTH_IT_TAG in its runtime invocations (usually the id).
    pub tag: &'a str,
}

/// A process that is still there.
#[derive(Clone, Debug)]
pub struct Proc {
    pub pid: i32,
    pub comm: String,
    /// Why it counts as the container's: "cgroup" or "tag".
    pub why: &'static str,
}

#[derive(Default, Debug)]
pub struct Leaks {
    /// Files (or the directory itself) under `<root>/<id>`.
    pub state: Vec<String>,
    pub cgroups: Vec<PathBuf>,
    pub procs: Vec<Proc>,
    /// mountinfo lines naming the bundle or the rootfs.
    pub mounts: Vec<String>,
    /// `list --format json` still shows the id (or could not be read: then the reason).
    pub listed: Option<String>,
}

impl Leaks {
    pub fn is_empty(&self) -> bool {
        self.kinds().is_empty()
    }

    /// Which kinds are present: state, cgroup, process, mount, list.
    pub fn kinds(&self) -> Vec<&'static str> {
        let mut v = Vec::new();
        if !self.state.is_empty() {
            v.push("state");
        }
        if !self.cgroups.is_empty() {
            v.push("cgroup");
        }
        if !self.procs.is_empty() {
            v.push("process");
        }
        if !self.mounts.is_empty() {
            v.push("mount");
        }
        if self.listed.is_some() {
            v.push("list");
        }
        v
    }

    pub fn describe(&self) -> String {
        let mut v = Vec::new();
        if !self.state.is_empty() {
            v.push(format!("state files {:?}", self.state));
        }
        if !self.cgroups.is_empty() {
            v.push(format!("cgroup dirs {:?}", self.cgroups));
        }
        if !self.procs.is_empty() {
            let p: Vec<String> = self
                .procs
                .iter()
                .map(|p| format!("{} {:?} ({})", p.pid, p.comm, p.why))
                .collect();
            v.push(format!("processes [{}]", p.join(", ")));
        }
        if !self.mounts.is_empty() {
            v.push(format!("mounts {:?}", self.mounts));
        }
        if let Some(l) = &self.listed {
            v.push(format!("list: {l}"));
        }
        v.join("; ")
    }
}

/// The cgroup of a cgroupsPath, relative to a hierarchy's root.
pub fn cgroup_rel_of(cgroups_path: &str) -> PathBuf {
    let parts: Vec<&str> = cgroups_path.split(':').collect();
    if parts.len() == 3 {
        // systemd: slice:prefix:name -> slice/prefix-name.scope (nested slices are not used
        // by the cases).
        return Path::new(parts[0]).join(format!("{}-{}.scope", parts[1], parts[2]));
    }
    PathBuf::from(cgroups_path.trim_start_matches('/'))
}

/// Everything left now, looking again for up to `settle` while anything is found (a dying
/// process takes a moment to leave its cgroup).
pub fn check(t: &Target, settle: Duration) -> Leaks {
    let end = Instant::now() + settle;
    loop {
        let l = check_once(t);
        if l.is_empty() || Instant::now() >= end {
            return l;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn check_once(t: &Target) -> Leaks {
    let rel = cgroup_rel_of(t.cgroups_path);
    let mut l = Leaks::default();
    let sd = t.rt.root.join(t.id);
    if sd.exists() {
        let mut files: Vec<String> = fs::read_dir(&sd)
            .map(|rd| {
                rd.flatten()
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default();
        files.sort();
        if files.is_empty() {
            files.push(format!("{}/ (empty)", t.id));
        }
        l.state = files;
    }
    l.cgroups = host::hierarchies()
        .into_iter()
        .map(|h| h.join(&rel))
        .filter(|p| p.is_dir())
        .collect();
    l.procs = procs_of(&rel, t.tag);
    let b = t.bundle.to_string_lossy();
    let r = t.rootfs.to_string_lossy();
    l.mounts = fs::read_to_string("/proc/self/mountinfo")
        .unwrap_or_default()
        .lines()
        .filter(|line| {
            // Fields 4 and 5: the root of the mount within its filesystem, the mount point.
            let f: Vec<&str> = line.split(' ').collect();
            f.len() > 4
                && [f[3], f[4]].iter().any(|x| {
                    let x = unescape(x);
                    under(&x, &b) || under(&x, &r)
                })
        })
        .map(String::from)
        .collect();
    l.listed = listed(t.rt, t.id);
    l
}

fn under(p: &str, dir: &str) -> bool {
    p == dir || p.starts_with(&format!("{}/", dir.trim_end_matches('/')))
}

fn unescape(s: &str) -> String {
    s.replace("\\040", " ")
        .replace("\\011", "\t")
        .replace("\\012", "\n")
        .replace("\\134", "\\")
}

/// None if `list --format json` works and does not show the id.
pub fn listed(rt: &Runtime, id: &str) -> Option<String> {
    let o = rt.exec(&["list", "--format", "json"]);
    if !o.success() {
        return Some(format!("list failed: {}", o.brief()));
    }
    let v: serde_json::Value = match serde_json::from_str(o.stdout.trim()) {
        Ok(v) => v,
        Err(e) => return Some(format!("list output is not JSON ({e})")),
    };
    let shown = v
        .as_array()
        .is_some_and(|a| a.iter().any(|c| c["id"] == id));
    shown.then(|| format!("still lists {id}"))
}

pub fn comm(pid: i32) -> String {
    fs::read_to_string(format!("/proc/{pid}/comm"))
        .map(|s| s.trim_end().to_string())
        .unwrap_or_default()
}

/// Does /proc/PID/environ hold `BERTH_IT_TAG=<tag>`?
pub fn has_tag(pid: i32, tag: &str) -> bool {
    let want = format!("{TAG_VAR}={tag}");
    fs::read(format!("/proc/{pid}/environ"))
        .map(|b| b.split(|c| *c == 0).any(|v| v == want.as_bytes()))
        .unwrap_or(false)
}

/// Does a line of /proc/PID/cgroup name `rel` or a cgroup below it?
pub fn in_cgroup(pid: i32, rel: &Path) -> bool {
    let needle = format!("/{}", rel.display());
    fs::read_to_string(format!("/proc/{pid}/cgroup"))
        .map(|c| {
            c.lines().any(|l| {
                let path = l.splitn(3, ':').nth(2).unwrap_or("");
                path == needle || path.starts_with(&format!("{needle}/"))
            })
        })
        .unwrap_or(false)
}

/// Live (not zombie) processes in the cgroup or carrying the tag.
pub fn procs_of(rel: &Path, tag: &str) -> Vec<Proc> {
    let mut v = Vec::new();
    for pid in host::all_pids() {
        let why = if in_cgroup(pid, rel) {
            "cgroup"
        } else if has_tag(pid, tag) {
            "tag"
        } else {
            continue;
        };
        if host::pid_alive(pid as i64) {
            v.push(Proc {
                pid,
                comm: comm(pid),
                why,
            });
        }
    }
    v
}

/// Removes what `check` found, so that the next iteration starts clean: SIGKILL to the
/// processes (until gone, bounded), lazy unmounts, rmdir of the cgroups, and the state dir.
pub fn scrub(t: &Target, l: &Leaks) {
    let rel = cgroup_rel_of(t.cgroups_path);
    let end = Instant::now() + Duration::from_secs(5);
    loop {
        let left = procs_of(&rel, t.tag);
        if left.is_empty() || Instant::now() >= end {
            break;
        }
        for p in left {
            host::kill9(p.pid);
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    for line in &l.mounts {
        if let Some(mp) = line.split(' ').nth(4) {
            host::umount_detach(Path::new(&unescape(mp)));
        }
    }
    for d in &l.cgroups {
        // A frozen cgroup keeps its killed tasks until thawed.
        for (f, v) in [("freezer.state", "THAWED"), ("cgroup.freeze", "0")] {
            let f = d.join(f);
            if f.exists() {
                let _ = fs::write(&f, v);
            }
        }
        let end = Instant::now() + Duration::from_secs(2);
        while host::remove_cgroup_tree(d).is_err() && d.exists() && Instant::now() < end {
            std::thread::sleep(Duration::from_millis(10));
        }
    }
    let _ = fs::remove_dir_all(t.rt.root.join(t.id));
}
