//! Leaves the host as the benchmark found it: every container under the benchmark's roots
//! deleted by its runtime, what this run started and left running killed, the benchmark's
//! cgroups (the runtimes' for its container ids, the floor's) removed, anything mounted under
//! its directory detached, and the directory gone.
//! Runs at the start (what an earlier, killed run left) and on every way out.

use crate::proc::{self, Scratch};
use crate::rt::Runtime;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// The container ids (and the floor's cgroup name) the benchmark uses. Only these are ever
/// touched in the host's cgroup trees.
pub const IDS: [&str; 7] = [
    "bench-run",
    "bench-c",
    "bench-x",
    "bench-seq",
    "bench-rss",
    "bench-dbg",
    "bench-floor",
];
/// Prefix of the parallel runs' ids: bench-p1, bench-p2, ...
pub const PARALLEL_PREFIX: &str = "bench-p";

pub fn is_bench_id(name: &str) -> bool {
    IDS.contains(&name)
        || name
            .strip_prefix(PARALLEL_PREFIX)
            .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
}

const CGROUP_ROOT: &str = "/sys/fs/cgroup";

/// Cleans up; returns what it found and did, and whether everything is gone.
pub fn cleanup(base: &Path, runtimes: &[Runtime]) -> (Vec<String>, bool) {
    let mut notes = Vec::new();
    let mut ok = true;
    if base.exists() {
        // Scratch files go under the system's temp dir here: `base` is about to go.
        let tmp = std::env::temp_dir().join(format!("berth-bench-cleanup-{}", std::process::id()));
        match Scratch::new(&tmp) {
            Ok(mut scratch) => {
                for rt in runtimes.iter().filter(|r| r.present()) {
                    ok &= delete_all(rt, &mut scratch, &mut notes);
                }
            }
            Err(e) => {
                notes.push(format!("cannot clean containers: {e}"));
                ok = false;
            }
        }
        let _ = std::fs::remove_dir_all(&tmp);
    }
    for (pid, cmdline) in proc::strays() {
        match proc::kill(pid) {
            Ok(()) => notes.push(format!("killed stray process {pid}: {cmdline}")),
            Err(e) => {
                notes.push(format!("kill stray process {pid} ({cmdline}): {e}"));
                ok = false;
            }
        }
    }
    ok &= remove_cgroups(&mut notes);
    if base.exists() {
        ok &= unmount_under(base, &mut notes);
        if let Err(e) = std::fs::remove_dir_all(base) {
            notes.push(format!("remove {}: {e}", base.display()));
            ok = false;
        }
    }
    (notes, ok)
}

/// `RT list -q` and `RT delete --force` of each; the root's own directory names count too, in
/// case a killed create left a record `list` does not show.
fn delete_all(rt: &Runtime, scratch: &mut Scratch, notes: &mut Vec<String>) -> bool {
    if !rt.root.exists() {
        return true;
    }
    let mut ids: Vec<String> = Vec::new();
    match proc::run(
        &mut rt.command(&["list", "-q"]),
        scratch,
        Duration::from_secs(30),
    ) {
        // The first word of each line: some runtimes (youki 0.7) print their table with a
        // heading even when asked for ids only.
        Ok(d) if d.status.success() => ids.extend(
            d.stdout
                .lines()
                .filter_map(|l| l.split_whitespace().next())
                .filter(|w| *w != "ID")
                .map(String::from),
        ),
        Ok(d) => notes.push(d.why(&format!("{} list -q", rt.key))),
        Err(e) => notes.push(format!("{} list -q: {e}", rt.key)),
    }
    if let Ok(rd) = std::fs::read_dir(&rt.root) {
        for e in rd.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if is_bench_id(&name) && !ids.contains(&name) {
                ids.push(name);
            }
        }
    }
    let mut ok = true;
    for id in &ids {
        match rt.delete(id, scratch) {
            Ok(()) => notes.push(format!("{}: deleted leftover container {id}", rt.key)),
            Err(e) => {
                notes.push(format!("{}: {e}", rt.key));
                ok = false;
            }
        }
    }
    ok
}

/// Removes /sys/fs/cgroup/*/ID for the benchmark's ids, nested cgroups first. A cgroup that
/// still has members after its runtime's delete holds a benchmark container's processes:
/// they are killed by pid first.
fn remove_cgroups(notes: &mut Vec<String>) -> bool {
    let mut ok = true;
    let Ok(hierarchies) = std::fs::read_dir(CGROUP_ROOT) else {
        return true;
    };
    for h in hierarchies.flatten() {
        let Ok(rd) = std::fs::read_dir(h.path()) else {
            continue;
        };
        for e in rd.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if is_bench_id(&name) && e.path().is_dir() {
                match remove_tree(&e.path()) {
                    Ok(()) => notes.push(format!("removed cgroup {}", e.path().display())),
                    Err(m) => {
                        notes.push(m);
                        ok = false;
                    }
                }
            }
        }
    }
    ok
}

fn remove_tree(dir: &Path) -> Result<(), String> {
    let children: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| format!("{}: {e}", dir.display()))?
        .flatten()
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
        .map(|e| e.path())
        .collect();
    for c in children {
        remove_tree(&c)?;
    }
    let until = Instant::now() + Duration::from_secs(5);
    loop {
        match std::fs::remove_dir(dir) {
            Ok(()) => return Ok(()),
            Err(e) if e.raw_os_error() == Some(libc::EBUSY) && Instant::now() < until => {
                let procs = std::fs::read_to_string(dir.join("cgroup.procs")).unwrap_or_default();
                for pid in procs
                    .split_whitespace()
                    .filter_map(|p| p.parse::<i32>().ok())
                {
                    // SAFETY: a process of one of the benchmark's own containers (it is in a
                    // cgroup named for a benchmark container id), killed by its pid.
                    unsafe { libc::kill(pid, libc::SIGKILL) };
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(e) => return Err(format!("rmdir {}: {e}", dir.display())),
        }
    }
}

/// Detaches whatever is still mounted under `base` (a runtime killed half-way), deepest first.
fn unmount_under(base: &Path, notes: &mut Vec<String>) -> bool {
    let Ok(info) = std::fs::read_to_string("/proc/self/mountinfo") else {
        return true;
    };
    let mut points: Vec<PathBuf> = info
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .map(unescape)
        .filter(|p| p.starts_with(base))
        .collect();
    points.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
    let mut ok = true;
    for p in points {
        let Ok(c) = std::ffi::CString::new(p.as_os_str().as_encoded_bytes()) else {
            continue;
        };
        // SAFETY: a valid C string; detaches a mount under the benchmark's own directory.
        if unsafe { libc::umount2(c.as_ptr(), libc::MNT_DETACH) } == 0 {
            notes.push(format!("unmounted leftover {}", p.display()));
        } else {
            notes.push(format!(
                "umount {}: {}",
                p.display(),
                std::io::Error::last_os_error()
            ));
            ok = false;
        }
    }
    ok
}

/// mountinfo escapes space, tab, newline and backslash as \ooo.
fn unescape(s: &str) -> PathBuf {
    use std::os::unix::ffi::OsStringExt;
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let octal = b
            .get(i + 1..i + 4)
            .filter(|d| d.iter().all(|c| (b'0'..=b'7').contains(c)));
        match octal {
            Some(d) if b[i] == b'\\' => {
                let v = d.iter().fold(0u32, |v, c| v * 8 + u32::from(c - b'0'));
                out.push(v as u8);
                i += 4;
            }
            _ => {
                out.push(b[i]);
                i += 1;
            }
        }
    }
    PathBuf::from(std::ffi::OsString::from_vec(out))
}
