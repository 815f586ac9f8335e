//! `integration --soak CYCLES [--parallel P]`: CYCLES create/start/exec/kill/delete cycles, P at
//! a time, with host counts taken before and after: open files (first field of
//! /proc/sys/fs/file-nr, less those held by the host's processes older than the soak),
//! mountinfo lines, cgroup directories below the soak's own parent cgroup in every hierarchy,
//! processes (/proc, and those of the soak), and the runtime's peak RSS (wait4's ru_maxrss) per
//! subcommand over the first and the last 100 cycles. Nothing may grow: after the run the counts
//! are taken again, for a bounded while, until they are back.
//! Uses cgroupfs paths (`/berth-soak-<pid>/<id>`), never --systemd-cgroup.

use crate::bundle::{base_config, Bundle};
use crate::host;
use crate::leak::{self, Target, TAG_VAR};
use crate::runtime::{Opts, Out, Runtime};
use serde_json::{json, Value};
use std::collections::HashSet;
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

const STEPS: &[&str] = &["create", "start", "exec", "kill", "state", "delete"];
fn ppid(pid: i32) -> Option<i32> {
    let s = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let i = s.rfind(')')?;
    s[i + 2..].split(' ').nth(1)?.parse().ok()
}

/// How long the counts may take to come back after the last cycle.
const SETTLE: Duration = Duration::from_secs(10);
/// Allowed growth of a peak RSS between the first and the last cycles: a fresh process each
/// time, so only page-granular noise (a few pages) is expected; a leak in per-run state that
/// scales with the number of containers seen would exceed it.
const RSS_SLACK_KB: i64 = 256;

struct Soak {
    rt: Runtime,
    rootfs: PathBuf,
    tmp: PathBuf,
    parent: String,
    cycles: usize,
    window: usize,
    next: AtomicUsize,
    /// (step, cycle) -> peak RSS in KiB.
    rss: Mutex<Vec<(&'static str, usize, i64)>>,
    failures: Mutex<Vec<String>>,
    failed: AtomicUsize,
}

/// Whether a count must not grow.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Rule {
    /// The soak's own: must not grow.
    Own,
    /// Host-wide: must not grow, unless other runtimes (other test runs) were busy on the host
    /// while counting, which moves these too.
    Host,
    /// Shown only.
    Info,
}

#[derive(Clone, Debug)]
struct Counts {
    rows: Vec<(String, i64, Rule)>,
    /// The pids on the host when counted.
    pids: Vec<i32>,
    /// The processes older than the soak (not its own): pid, start time, files held when
    /// counted (once exited, as before the soak).
    older: Vec<(i32, u64, i64)>,
}

fn count_dirs(p: &Path) -> i64 {
    let mut n = 0;
    if let Ok(rd) = fs::read_dir(p) {
        for e in rd.flatten() {
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                n += 1 + count_dirs(&e.path());
            }
        }
    }
    n
}

fn file_nr() -> i64 {
    fs::read_to_string("/proc/sys/fs/file-nr")
        .ok()
        .and_then(|s| s.split_whitespace().next().and_then(|f| f.parse().ok()))
        .unwrap_or(-1)
}

/// Start time of a process in clock ticks after boot: tells it from a later one with its pid.
fn start_time(pid: i32) -> Option<u64> {
    let s = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let i = s.rfind(')')?;
    s.get(i + 2..)?.split(' ').nth(19)?.parse().ok()
}

/// Files a process holds: its descriptors, and the distinct files it maps that no descriptor
/// has open (a mapping keeps its file open after the descriptor is closed, e.g. a compiler's
/// mapped libraries).
fn files_held(pid: i32) -> i64 {
    let mut fds = 0;
    let mut open = HashSet::new();
    if let Ok(rd) = fs::read_dir(format!("/proc/{pid}/fd")) {
        for e in rd.flatten() {
            fds += 1;
            if let Ok(m) = fs::metadata(e.path()) {
                open.insert((m.dev(), m.ino()));
            }
        }
    }
    let maps = fs::read_to_string(format!("/proc/{pid}/maps")).unwrap_or_default();
    let mapped: HashSet<(u64, u64)> = maps
        .lines()
        .filter_map(|l| {
            // "start-end perms offset major:minor inode path", the device in hex.
            let mut f = l.split_whitespace().skip(3);
            let (major, minor) = f.next()?.split_once(':')?;
            let inode: u64 = f.next()?.parse().ok()?;
            let dev = libc::makedev(
                u32::from_str_radix(major, 16).ok()?,
                u32::from_str_radix(minor, 16).ok()?,
            );
            (inode != 0).then_some((dev, inode))
        })
        .collect();
    fds + mapped.difference(&open).count() as i64
}

fn mount_lines() -> i64 {
    fs::read_to_string("/proc/self/mountinfo")
        .map(|s| s.lines().count() as i64)
        .unwrap_or(-1)
}

impl Soak {
    /// Processes of the soak: tagged by it, or in a cgroup below its parent.
    /// Is the process the soak's: tagged by it, in a cgroup below its parent, or below this
    /// process or the subreaper above it (where every orphan of the soak goes)?
    fn is_own(&self, pid: i32) -> bool {
        let prefix = format!("{TAG_VAR}={}-", self.parent);
        let tagged = fs::read(format!("/proc/{pid}/environ")).is_ok_and(|b| {
            b.split(|c| *c == 0)
                .any(|v| v.starts_with(prefix.as_bytes()))
        });
        tagged || leak::in_cgroup(pid, Path::new(&self.parent)) || self.descends(pid)
    }

    fn descends(&self, pid: i32) -> bool {
        let me = std::process::id() as i32;
        let reaper = unsafe { libc::getppid() };
        let mut p = pid;
        for _ in 0..64 {
            let Some(pp) = ppid(p) else {
                return false;
            };
            if pp == me || (pp == reaper && reaper > 1) {
                return true;
            }
            if pp <= 1 {
                return false;
            }
            p = pp;
        }
        false
    }

    /// Live processes of the soak.
    fn own_procs(&self) -> i64 {
        host::all_pids()
            .into_iter()
            .filter(|p| self.is_own(*p) && host::pid_alive(*p as i64))
            .count() as i64
    }

    /// Processes that appeared since `before` and are not the soak's: others' activity on the
    /// host, which moves the host-wide counts.
    fn foreign_new(&self, before: &[i32]) -> Vec<String> {
        let reaper = unsafe { libc::getppid() };
        host::all_pids()
            .into_iter()
            .filter(|p| *p != reaper && !before.contains(p) && !self.is_own(*p))
            .map(|p| format!("{p} {}", leak::comm(p)))
            .collect()
    }

    /// file-nr, and file-nr less the files that processes older than the soak (not its own) hold,
    /// with those processes: their churn (the VM agent opens and closes files) is not the soak's.
    /// What is left is the harness's, the soak's processes', new processes' (host busy) and the
    /// kernel's alone (e.g. pinned by a leftover mount or process). `before`: the reading whose
    /// older processes are counted again; one that has exited keeps its count, as what it freed
    /// lowers file-nr and what it shared with its parent (a fork) was never extra.
    fn open_files(&self, before: Option<&Counts>) -> (i64, i64, Vec<(i32, u64, i64)>) {
        let mut last = (-1, -1, Vec::new());
        // Again while file-nr moves during the reading: a file opened or closed meanwhile by a
        // process already read would count as the soak's (a busy VM's 9p server does so often).
        for _ in 0..20 {
            let first = file_nr();
            let older: Vec<(i32, u64, i64)> = match before {
                None => host::all_pids()
                    .into_iter()
                    .filter(|p| !self.is_own(*p))
                    .filter_map(|p| Some((p, start_time(p)?, files_held(p))))
                    .collect(),
                Some(b) => b
                    .older
                    .iter()
                    .map(|&(p, t, then)| {
                        let held = if start_time(p) == Some(t) {
                            files_held(p)
                        } else {
                            then
                        };
                        (p, t, held)
                    })
                    .collect(),
            };
            let nr = file_nr();
            let open = if nr < 0 {
                -1
            } else {
                nr - older.iter().map(|o| o.2).sum::<i64>()
            };
            last = (nr, open, older);
            if nr == first {
                break;
            }
        }
        last
    }

    /// Each row: name, value, and its rule. `before`: the reading before the soak.
    fn counts(&self, before: Option<&Counts>) -> Counts {
        let (nr, open, older) = self.open_files(before);
        let mut rows = vec![
            (
                "open files (file-nr less older processes')".to_string(),
                open,
                Rule::Host,
            ),
            ("open files (file-nr)".to_string(), nr, Rule::Info),
            ("mountinfo lines".to_string(), mount_lines(), Rule::Host),
            (
                "processes (/proc)".to_string(),
                host::all_pids().len() as i64,
                Rule::Host,
            ),
            (
                "mounts under the soak's dir".to_string(),
                host::mounts_under(&self.tmp).len() as i64,
                Rule::Own,
            ),
            (
                "processes of the soak".to_string(),
                self.own_procs(),
                Rule::Own,
            ),
            (
                "state dirs under --root".to_string(),
                fs::read_dir(&self.rt.root)
                    .map(|r| r.count() as i64)
                    .unwrap_or(0),
                Rule::Own,
            ),
        ];
        for h in host::hierarchies() {
            let name = h
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            rows.push((
                format!("cgroup dirs {name}/{}/**", self.parent),
                count_dirs(&h.join(&self.parent)),
                Rule::Own,
            ));
            rows.push((
                format!("cgroup dirs {name}/** (host)"),
                count_dirs(&h),
                Rule::Info,
            ));
        }
        Counts {
            rows,
            pids: host::all_pids(),
            older,
        }
    }

    fn fail(&self, msg: String) {
        self.failed.fetch_add(1, Ordering::SeqCst);
        let mut f = self.failures.lock().unwrap();
        if f.len() < 10 {
            f.push(msg);
        }
    }

    fn call(&self, step: &'static str, cycle: usize, id: &str, args: &[&str]) -> Out {
        let o = self.rt.exec_opts(
            args,
            Opts {
                env: vec![(TAG_VAR.into(), id.into())],
                timeout: Some(Duration::from_secs(30)),
                ..Default::default()
            },
        );
        if o.maxrss_kb > 0 {
            self.rss.lock().unwrap().push((step, cycle, o.maxrss_kb));
        }
        o
    }

    fn cycle(&self, cycle: usize) {
        let id = format!("{}-{cycle}", self.parent);
        let dir = self.tmp.join(format!("u{cycle}"));
        let cgroups_path = format!("/{}/{id}", self.parent);
        let mut c = base_config(&["sleep", "100000"]);
        c["root"]["path"] = json!(self.rootfs);
        c["linux"]["cgroupsPath"] = json!(cgroups_path);
        if fs::create_dir_all(&dir)
            .and_then(|()| fs::write(dir.join("config.json"), c.to_string()))
            .is_err()
        {
            self.fail(format!("cycle {cycle}: cannot write the bundle"));
            return;
        }
        let b = dir.to_string_lossy().into_owned();
        let steps: [(&'static str, Vec<&str>); 4] = [
            ("create", vec!["create", "--bundle", &b, &id]),
            ("start", vec!["start", &id]),
            ("exec", vec!["exec", &id, "true"]),
            ("kill", vec!["kill", &id, "KILL"]),
        ];
        let mut ok = true;
        for (step, args) in &steps {
            let o = self.call(step, cycle, &id, args);
            if !o.success() {
                self.fail(format!("cycle {cycle}: {step}: {}", o.brief()));
                ok = false;
                break;
            }
        }
        if ok {
            let end = Instant::now() + Duration::from_secs(10);
            loop {
                let o = self.call("state", cycle, &id, &["state", &id]);
                let st = serde_json::from_str::<Value>(&o.stdout)
                    .map(|v| v["status"].clone())
                    .unwrap_or(Value::Null);
                if st == "stopped" {
                    break;
                }
                if Instant::now() >= end {
                    self.fail(format!("cycle {cycle}: not stopped 10s after kill: {st}"));
                    break;
                }
                std::thread::sleep(Duration::from_millis(5));
            }
        }
        let args: &[&str] = if ok {
            &["delete", &id]
        } else {
            &["delete", "--force", &id]
        };
        let o = self.call("delete", cycle, &id, args);
        if !o.success() {
            self.fail(format!("cycle {cycle}: delete: {}", o.brief()));
        }
        let t = Target {
            rt: &self.rt,
            id: &id,
            cgroups_path: &cgroups_path,
            bundle: &dir,
            rootfs: &self.rootfs,
            tag: &id,
        };
        let l = leak::check(&t, Duration::from_millis(300));
        if !l.is_empty() {
            self.fail(format!("cycle {cycle}: left: {}", l.describe()));
            leak::scrub(&t, &l);
        }
        let _ = fs::remove_dir_all(&dir);
    }

    fn worker(&self) {
        loop {
            let c = self.next.fetch_add(1, Ordering::SeqCst);
            if c >= self.cycles || self.failed.load(Ordering::SeqCst) >= 20 {
                return;
            }
            self.cycle(c);
        }
    }

    /// Peak RSS per step over the first and the last `window` cycles.
    fn rss_rows(&self) -> Vec<(String, i64, i64)> {
        let rss = self.rss.lock().unwrap();
        let mut out = Vec::new();
        for step in STEPS {
            let peak = |f: &dyn Fn(usize) -> bool| {
                rss.iter()
                    .filter(|(s, c, _)| s == step && f(*c))
                    .map(|r| r.2)
                    .max()
                    .unwrap_or(0)
            };
            let first = peak(&|c| c < self.window);
            let last = peak(&|c| c + self.window >= self.cycles);
            out.push((step.to_string(), first, last));
        }
        out
    }
}

/// Runs the soak; returns the process exit code.
pub fn run(runtime: &Path, runtimetest: &Path, cycles: usize, parallel: usize) -> i32 {
    let parent = format!("berth-soak-{}", std::process::id());
    let tmp = std::env::temp_dir().join(&parent);
    let _ = fs::remove_dir_all(&tmp);
    let root = tmp.join("root");
    let scratch = tmp.join("scratch");
    for d in [&root, &scratch] {
        if let Err(e) = fs::create_dir_all(d) {
            eprintln!("soak: cannot create {}: {e}", d.display());
            return 2;
        }
    }
    let rootfs = match Bundle::new(&tmp.join("lab"), runtimetest, &["true"]) {
        Ok(b) => b.rootfs,
        Err(e) => {
            eprintln!("soak: cannot build the rootfs: {e}");
            return 2;
        }
    };
    // The parent cgroup exists before and after: the runtime neither makes nor removes it, so
    // the count below it starts at zero and must end there.
    for h in host::hierarchies() {
        let _ = fs::create_dir(h.join(&parent));
    }
    let soak = Soak {
        rt: Runtime {
            path: runtime.to_path_buf(),
            root,
            scratch: scratch.clone(),
            deadline: Instant::now() + Duration::from_secs(24 * 3600),
        },
        rootfs,
        tmp: tmp.clone(),
        parent: parent.clone(),
        cycles,
        window: 100.min(cycles.div_ceil(2)).max(1),
        next: AtomicUsize::new(0),
        rss: Mutex::new(Vec::new()),
        failures: Mutex::new(Vec::new()),
        failed: AtomicUsize::new(0),
    };
    // Warm up (page cache, the first cgroup writes) outside the counts.
    soak.cycle(usize::MAX / 2);
    soak.rss.lock().unwrap().clear();
    let before = soak.counts(None);
    let t0 = Instant::now();
    std::thread::scope(|s| {
        for _ in 0..parallel.max(1) {
            s.spawn(|| soak.worker());
        }
    });
    let took = t0.elapsed();
    // Output files of the runtime calls are the harness's own, not the runtime's.
    let _ = fs::remove_dir_all(&scratch);
    let _ = fs::create_dir_all(&scratch);
    let end = Instant::now() + SETTLE;
    let mut after = soak.counts(Some(&before));
    // Host-wide rows count only when nothing else started a process on the host meanwhile.
    let host_quiet = |_: &Counts| soak.foreign_new(&before.pids).is_empty();
    let grew = |a: &Counts| {
        a.rows
            .iter()
            .zip(&before.rows)
            .any(|((_, v, rule), (_, b, _))| {
                v > b && (*rule == Rule::Own || (*rule == Rule::Host && host_quiet(a)))
            })
    };
    while grew(&after) && Instant::now() < end {
        std::thread::sleep(Duration::from_millis(200));
        after = soak.counts(Some(&before));
    }
    let failed = soak.failed.load(Ordering::SeqCst);
    let done = soak.next.load(Ordering::SeqCst).min(cycles);
    println!(
        "# soak: {done} of {cycles} cycles (create, start, exec true, kill KILL, state until \
         stopped, delete), {} at a time, in {:.1}s; {failed} failures",
        parallel.max(1),
        took.as_secs_f64()
    );
    for f in soak.failures.lock().unwrap().iter() {
        println!("# soak failure: {f}");
    }
    let mut problems: Vec<String> = Vec::new();
    println!(
        "# {:<44} {:>10} {:>10} {:>8}",
        "count", "before", "after", "growth"
    );
    let quiet = host_quiet(&after);
    if !quiet {
        let o = soak.foreign_new(&before.pids);
        println!(
            "# host busy: {} processes not the soak's started meanwhile (e.g. {}); host-wide rows are shown only",
            o.len(),
            o.iter().take(6).cloned().collect::<Vec<_>>().join(", ")
        );
    }
    for ((name, b, rule), (_, a, _)) in before.rows.iter().zip(&after.rows) {
        let counts = *rule == Rule::Own || (*rule == Rule::Host && quiet);
        let mark = if counts && a > b {
            problems.push(format!("{name} grew by {}", a - b));
            "  <- grew"
        } else if !counts {
            "  (shown only)"
        } else {
            ""
        };
        println!("# {name:<44} {b:>10} {a:>10} {:>8}{mark}", a - b);
    }
    for (step, first, last) in soak.rss_rows() {
        let mark = if last > first + RSS_SLACK_KB {
            problems.push(format!("peak RSS of {step} grew {first} -> {last} KiB"));
            "  <- grew"
        } else {
            ""
        };
        println!(
            "# {:<44} {first:>10} {last:>10} {:>8}{mark}",
            format!("berth {step} peak RSS KiB (first/last {})", soak.window),
            last - first
        );
    }
    if failed > 0 {
        problems.push(format!("{failed} failed cycle steps"));
    }
    if done < cycles {
        problems.push(format!("stopped after {done} cycles"));
    }
    for h in host::hierarchies() {
        let _ = host::remove_cgroup_tree(&h.join(&parent));
    }
    if host::mounts_under(&tmp).is_empty() {
        let _ = fs::remove_dir_all(&tmp);
    }
    if problems.is_empty() {
        println!("soak: ok");
        0
    } else {
        println!("soak: FAILED: {}", problems.join("; "));
        1
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_held_counts_descriptors_and_mappings_once() {
        let me = std::process::id() as i32;
        assert!(start_time(me).is_some());
        let n = files_held(me);
        let f = fs::File::open("/proc/self/stat").unwrap();
        assert_eq!(files_held(me), n + 1);
        // A file open and mapped counts once, and still counts once only mapped.
        // SAFETY: plain system calls on a memfd and a mapping this test owns.
        let fd = unsafe { libc::memfd_create(c"soak-test".as_ptr(), 0) };
        // SAFETY: as above.
        assert!(fd >= 0 && unsafe { libc::ftruncate(fd, 4096) } == 0);
        // SAFETY: a fresh shared read-only mapping of the memfd, unmapped below.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                4096,
                libc::PROT_READ,
                libc::MAP_SHARED,
                fd,
                0,
            )
        };
        assert_ne!(p, libc::MAP_FAILED);
        assert_eq!(files_held(me), n + 2);
        // SAFETY: the memfd is ours and closed once.
        unsafe { libc::close(fd) };
        assert_eq!(files_held(me), n + 2);
        // SAFETY: the mapping made above, unmapped once.
        unsafe { libc::munmap(p, 4096) };
        assert_eq!(files_held(me), n + 1);
        drop(f);
    }
}
