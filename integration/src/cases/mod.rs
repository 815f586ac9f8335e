//! Case registry, per-case context and shared helpers.

use crate::bundle::Bundle;
use crate::host;
use crate::runtime::{one_line, Opts, Out, Runtime};
use serde_json::{json, Value};
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

pub mod cgroups;
pub mod cli;
pub mod config;
pub mod errors;
pub mod escapes;
pub mod events;
pub mod exe;
pub mod exec;
pub mod faults;
pub mod features;
pub mod hooks;
pub mod hostile;
pub mod lifecycle;
pub mod paths;
pub mod races;
pub mod records;
pub mod reliability;
pub mod seccomp;
pub mod systemd;

/// Why a case did not pass.
#[derive(Debug)]
pub enum Fail {
    Fail(String),
    Skip(String),
}

impl From<String> for Fail {
    fn from(s: String) -> Self {
        Fail::Fail(s)
    }
}

impl From<std::io::Error> for Fail {
    fn from(e: std::io::Error) -> Self {
        Fail::Fail(format!("harness I/O error: {e}"))
    }
}

pub type R = Result<(), Fail>;

#[macro_export]
macro_rules! ensure {
    ($c:expr, $($f:tt)+) => {
        if !($c) {
            return Err($crate::cases::Fail::Fail(format!($($f)+)));
        }
    };
}

#[macro_export]
macro_rules! bail {
    ($($f:tt)+) => {
        return Err($crate::cases::Fail::Fail(format!($($f)+)))
    };
}

pub struct Case {
    pub name: &'static str,
    pub run: fn(&mut Ctx) -> R,
}

pub fn all() -> Vec<Case> {
    let mut v = Vec::new();
    v.extend(lifecycle::cases());
    v.extend(cli::cases());
    v.extend(errors::cases());
    v.extend(config::cases());
    v.extend(hooks::cases());
    v.extend(seccomp::cases());
    v.extend(paths::cases());
    v.extend(escapes::cases());
    v.extend(exe::cases());
    v.extend(exec::cases());
    v.extend(features::cases());
    v.extend(cgroups::cases());
    v.extend(events::cases());
    v.extend(systemd::cases());
    v.extend(faults::cases());
    v.extend(records::cases());
    v.extend(reliability::cases());
    v.extend(races::cases());
    v.extend(hostile::cases());
    v
}

/// The whole-case budget: 60 s, more for the cases that loop (they bound every call
/// themselves, so a hang still fails).
pub fn timeout_for(name: &str) -> Duration {
    if name.starts_with("reliability/sigkill") {
        Duration::from_secs(900)
    } else if name.starts_with("races/")
        || name.starts_with("reliability/")
        || name.starts_with("faults/")
    {
        Duration::from_secs(180)
    } else {
        Duration::from_secs(60)
    }
}

/// Host namespace types and the env suffix runtimetest expects.
pub const NS_KINDS: &[(&str, &str)] = &[
    ("PID", "pid"),
    ("NET", "net"),
    ("MNT", "mnt"),
    ("IPC", "ipc"),
    ("UTS", "uts"),
    ("USER", "user"),
    ("CGROUP", "cgroup"),
    ("TIME", "time"),
];

pub type Cleanup = Box<dyn FnOnce()>;

pub struct Ctx {
    pub rt: Runtime,
    pub tmp: PathBuf,
    pub base_id: String,
    pub runtimetest: PathBuf,
    pub ids: Vec<String>,
    pub cleanups: Vec<Cleanup>,
    seq: usize,
}

impl Ctx {
    pub fn new(
        runtime: &Path,
        runtimetest: &Path,
        base_id: &str,
        deadline: Instant,
    ) -> std::io::Result<Ctx> {
        let tmp = std::env::temp_dir().join(base_id);
        let _ = fs::remove_dir_all(&tmp);
        fs::create_dir_all(tmp.join("root"))?;
        fs::create_dir_all(tmp.join("scratch"))?;
        fs::set_permissions(&tmp, fs::Permissions::from_mode(0o755))?;
        Ok(Ctx {
            rt: Runtime {
                path: runtime.to_path_buf(),
                root: tmp.join("root"),
                scratch: tmp.join("scratch"),
                deadline,
            },
            tmp,
            base_id: base_id.to_string(),
            runtimetest: runtimetest.to_path_buf(),
            ids: Vec::new(),
            cleanups: Vec::new(),
            seq: 0,
        })
    }

    /// A fresh container id, registered for cleanup.
    pub fn new_id(&mut self) -> String {
        self.seq += 1;
        let id = if self.seq == 1 {
            self.base_id.clone()
        } else {
            format!("{}-{}", self.base_id, self.seq)
        };
        self.ids.push(id.clone());
        id
    }

    /// A new container (id + bundle) running `args`; config not yet written.
    pub fn container(&mut self, args: &[&str]) -> Result<Ct, Fail> {
        let id = self.new_id();
        let dir = self.tmp.join(format!("bundle-{}", self.seq));
        let mut b = Bundle::new(&dir, &self.runtimetest, args)?;
        b.config["linux"]["cgroupsPath"] = json!(host::cgroups_path(&id));
        Ok(Ct {
            out: self.tmp.join(format!("{id}.stdout")),
            err: self.tmp.join(format!("{id}.stderr")),
            id,
            b,
            rt: self.rt.clone(),
        })
    }

    /// Host directory bind-mounted by cases at /shared (world-writable).
    pub fn shared(&self) -> PathBuf {
        let p = self.tmp.join("shared");
        let _ = fs::create_dir_all(&p);
        let _ = fs::set_permissions(&p, fs::Permissions::from_mode(0o777));
        p
    }

    pub fn dir(&self, name: &str) -> PathBuf {
        let p = self.tmp.join(name);
        let _ = fs::create_dir_all(&p);
        p
    }

    pub fn need_runtimetest(&self) -> R {
        if self.runtimetest.is_file() {
            Ok(())
        } else {
            bail!("runtimetest missing ({})", self.runtimetest.display())
        }
    }

    pub fn on_cleanup(&mut self, f: impl FnOnce() + 'static) {
        self.cleanups.push(Box::new(f));
    }

    /// Run a busybox shell script built from `checks` in a container prepared
    /// by `setup`, then (if `with_runtimetest`) run /runtimetest under the same
    /// setup. Passes only if every run exits 0.
    pub fn inside(
        &mut self,
        setup: &dyn Fn(&mut Bundle) -> R,
        checks: &[&str],
        with_runtimetest: bool,
    ) -> R {
        let script = sh_script(checks);
        let mut ct = self.container(&["sh", "-c", &script])?;
        setup(&mut ct.b)?;
        let o = ct.run_fg();
        if !o.success() {
            bail!(
                "busybox checks: {}; output: {}",
                o.brief(),
                one_line(&o.stdout, 400)
            );
        }
        if with_runtimetest {
            if !self.runtimetest.is_file() {
                bail!(
                    "busybox checks passed, but runtimetest missing ({})",
                    self.runtimetest.display()
                );
            }
            self.runtimetest_run(setup, &[])?;
        }
        Ok(())
    }

    /// Run /runtimetest (with extra args) as the container process.
    pub fn runtimetest_run(&mut self, setup: &dyn Fn(&mut Bundle) -> R, args: &[&str]) -> R {
        self.need_runtimetest()?;
        let mut argv = vec!["/runtimetest"];
        argv.extend_from_slice(args);
        let mut ct = self.container(&argv)?;
        for (k, ns) in NS_KINDS {
            if let Some(ino) = host::ns_inode("self", ns) {
                ct.b.push_env(&format!("RUNTIMETEST_HOST_NS_{k}={ino}"));
            }
        }
        if let Some(caps) = host::own_cap_prm() {
            ct.b.push_env(&format!("RUNTIMETEST_HOST_CAPS={caps}"));
        }
        setup(&mut ct.b)?;
        let o = ct.run_fg();
        if !o.success() {
            let notok: Vec<&str> = o
                .stdout
                .lines()
                .filter(|l| l.starts_with("not ok"))
                .collect();
            bail!(
                "runtimetest: {}; {}",
                o.brief(),
                if notok.is_empty() {
                    one_line(&o.stdout, 300)
                } else {
                    notok.join(" | ")
                }
            );
        }
        Ok(())
    }
}

/// Build a shell script that runs each check and reports the failing ones.
pub fn sh_script(checks: &[&str]) -> String {
    let mut s = String::from("rc=0\n");
    for c in checks {
        s.push_str(&format!(
            "{{ {c} ; }} || {{ echo 'check failed: {}'; rc=1; }}\n",
            c.replace('\'', "'\\''")
        ));
    }
    s.push_str("exit $rc\n");
    s
}

pub fn no_setup(_: &mut Bundle) -> R {
    Ok(())
}

/// One container of a case.
pub struct Ct {
    pub id: String,
    pub b: Bundle,
    pub rt: Runtime,
    /// stdout/stderr files given to create/run (shared with the container).
    pub out: PathBuf,
    pub err: PathBuf,
}

impl Ct {
    fn bundle_arg(&self) -> String {
        self.b.dir.to_string_lossy().into_owned()
    }

    fn stdio_opts(&self) -> Opts {
        Opts {
            stdout: Some(self.out.clone()),
            stderr: Some(self.err.clone()),
            ..Default::default()
        }
    }

    /// Write config and `create --bundle B id`.
    pub fn create(&self) -> Out {
        if let Err(e) = self.b.write() {
            return harness_err(e);
        }
        self.create_raw(&[], self.stdio_opts())
    }

    /// `create` without writing config; extra args go before the id.
    pub fn create_raw(&self, extra: &[&str], opts: Opts) -> Out {
        let b = self.bundle_arg();
        let mut args = vec!["create", "--bundle", &b];
        args.extend_from_slice(extra);
        args.push(&self.id);
        self.rt.exec_opts(&args, opts)
    }

    /// `create` with `--log LOG --log-format json`, the config as it is on disk.
    pub fn create_json_log(&self, log: &Path) -> Out {
        self.create_raw(
            &[],
            Opts {
                global: vec![
                    "--log".into(),
                    log.to_string_lossy().into_owned(),
                    "--log-format".into(),
                    "json".into(),
                ],
                ..Default::default()
            },
        )
    }

    pub fn start(&self) -> Out {
        self.rt.exec(&["start", &self.id])
    }

    /// Create and start; both must succeed.
    pub fn up(&self) -> R {
        let o = self.create();
        ensure!(o.success(), "create failed: {}", o.brief());
        let o = self.start();
        ensure!(o.success(), "start failed: {}", o.brief());
        Ok(())
    }

    /// Foreground `run --bundle B id` (writes config first).
    pub fn run_fg(&self) -> Out {
        if let Err(e) = self.b.write() {
            return harness_err(e);
        }
        let b = self.bundle_arg();
        self.rt
            .exec_opts(&["run", "--bundle", &b, &self.id], self.stdio_opts())
    }

    pub fn kill(&self, sig: &str) -> Out {
        self.rt.exec(&["kill", &self.id, sig])
    }

    pub fn delete(&self, force: bool) -> Out {
        if force {
            self.rt.exec(&["delete", "--force", &self.id])
        } else {
            self.rt.exec(&["delete", &self.id])
        }
    }

    pub fn state(&self) -> Result<Value, String> {
        let o = self.rt.exec(&["state", &self.id]);
        if !o.success() {
            return Err(format!("state failed: {}", o.brief()));
        }
        serde_json::from_str(&o.stdout).map_err(|e| {
            format!(
                "state output is not JSON ({e}): {}",
                one_line(&o.stdout, 200)
            )
        })
    }

    pub fn status(&self) -> Result<String, String> {
        let s = self.state()?;
        s["status"]
            .as_str()
            .map(String::from)
            .ok_or_else(|| format!("state has no status: {s}"))
    }

    pub fn pid(&self) -> Result<i64, String> {
        let s = self.state()?;
        s["pid"]
            .as_i64()
            .ok_or_else(|| format!("state has no pid: {s}"))
    }

    pub fn wait_status(&self, want: &str, secs: u64) -> R {
        let end = Instant::now() + Duration::from_secs(secs);
        let mut last;
        loop {
            last = self.status();
            if matches!(&last, Ok(s) if s == want) {
                return Ok(());
            }
            if Instant::now() >= end {
                bail!("status did not become {want:?} within {secs}s (last: {last:?})");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn stdout_text(&self) -> String {
        crate::runtime::read_lossy(&self.out)
    }

    pub fn stderr_text(&self) -> String {
        crate::runtime::read_lossy(&self.err)
    }
}

fn harness_err(e: std::io::Error) -> Out {
    Out {
        code: None,
        signal: None,
        stdout: String::new(),
        stderr: format!("harness could not write config: {e}"),
        timed_out: false,
        cmd: "(not run)".into(),
        maxrss_kb: 0,
    }
}

/// Wait until a path exists.
pub fn wait_file(p: &Path, secs: u64) -> R {
    let end = Instant::now() + Duration::from_secs(secs);
    while !p.exists() {
        if Instant::now() >= end {
            bail!("{} did not appear within {secs}s", p.display());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(())
}

/// Wait until a pid is gone (or a zombie).
pub fn wait_pid_gone(pid: i64, secs: u64) -> bool {
    let end = Instant::now() + Duration::from_secs(secs);
    while host::pid_alive(pid) {
        if Instant::now() >= end {
            return false;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    true
}

/// Everything a failed create must not leave behind.
pub fn leftovers(ctx: &Ctx, id: &str, bundle: &Path) -> Vec<String> {
    let mut v = Vec::new();
    let sd = ctx.rt.root.join(id);
    if sd.exists() {
        v.push(format!("state dir {} exists", sd.display()));
    }
    let cg = host::cgroup_dirs(id);
    if !cg.is_empty() {
        v.push(format!("cgroup dirs left: {cg:?}"));
    }
    let bs = bundle.to_string_lossy();
    let m = host::mountinfo_mentions(&bs);
    if !m.is_empty() {
        v.push(format!("mounts mention bundle: {m:?}"));
    }
    // Give a dying runtime child a moment before calling it a leak.
    let end = Instant::now() + Duration::from_secs(2);
    loop {
        let p = host::procs_under(bundle);
        let c = host::procs_in_cgroup(id);
        if p.is_empty() && c.is_empty() {
            break;
        }
        if Instant::now() >= end {
            v.push(format!(
                "processes left (cwd/root in bundle: {p:?}, in cgroup: {c:?})"
            ));
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    v
}

/// Does `hay` (lowercased) contain any of the keywords?
pub fn mentions_any(hay: &str, words: &[&str]) -> bool {
    let h = hay.to_lowercase();
    words.iter().any(|w| h.contains(&w.to_lowercase()))
}
