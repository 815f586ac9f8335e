//! The runtimes compared: berth and whichever peers are installed, each with its own state
//! root under the benchmark's directory.

use crate::proc::{self, join, Scratch};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

/// The runtimes the benchmark knows, in the table's order.
pub const KEYS: [&str; 4] = ["berth", "runc", "crun", "youki"];

/// The file crun 1.8 reads to refuse a hybrid host whose cgroup2 tree has controllers.
const UNIFIED_CONTROLLERS: &str = "/sys/fs/cgroup/unified/cgroup.controllers";

pub struct Runtime {
    /// berth, runc, crun or youki: the key in the results.
    pub key: &'static str,
    /// The column heading: `crun (shimmed)` when it runs with the shim.
    pub label: String,
    /// None: not installed (or cannot run here; `absent` says why).
    pub path: Option<PathBuf>,
    pub absent: String,
    /// Set for every command of this runtime (LD_PRELOAD for the shimmed crun).
    pub env: Vec<(String, String)>,
    pub root: PathBuf,
    pub version: String,
    /// Installed but left out by `--runtimes`: not measured, still cleaned up after.
    pub skipped: bool,
}

impl Runtime {
    /// Installed and measured in this run.
    pub fn installed(&self) -> bool {
        self.path.is_some() && !self.skipped
    }

    /// Installed (so a container an earlier run left in its root can be deleted).
    pub fn present(&self) -> bool {
        self.path.is_some()
    }

    pub fn program(&self) -> &Path {
        self.path.as_deref().unwrap_or(Path::new(""))
    }

    fn path_str(&self) -> String {
        self.path
            .as_deref()
            .map(|p| p.to_string_lossy().into_owned())
            .unwrap_or_default()
    }

    /// `RT --root ROOT ARGS...` as a quoted line (for hyperfine and sh).
    pub fn line(&self, args: &[&str]) -> String {
        let path = self.path_str();
        let root = self.root.to_string_lossy();
        let mut words = vec![path.as_str(), "--root", &root];
        words.extend_from_slice(args);
        join(&words)
    }

    /// `RT --root ROOT ARGS...` as a Command with the runtime's environment.
    pub fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new(self.path_str());
        c.arg("--root").arg(&self.root).args(args);
        c.envs(self.env.iter().map(|(k, v)| (k, v)));
        c
    }

    /// `RT --root ROOT delete --force ID`; a missing container is no error.
    pub fn delete(&self, id: &str, scratch: &mut Scratch) -> Result<(), proc::Fail> {
        let done = proc::run(
            &mut self.command(&["delete", "--force", id]),
            scratch,
            Duration::from_secs(60),
        )?;
        let gone = done.status.success()
            || done.stderr.contains("does not exist")
            || done.stderr.contains("not found")
            || done.stderr.contains("No such file");
        if gone {
            Ok(())
        } else {
            Err(proc::failed(
                done.why(&format!("{} delete --force {id}", self.key)),
            ))
        }
    }
}

fn in_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(name))
        .find(|p| is_executable(p))
}

fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// True when crun 1.8 would refuse this host: a hybrid layout whose cgroup2 tree has
/// controllers bound.
pub fn crun_needs_shim() -> bool {
    std::fs::read_to_string(UNIFIED_CONTROLLERS).is_ok_and(|s| !s.trim().is_empty())
}

/// The first line of `RT --version`.
fn version(path: &Path, env: &[(String, String)], scratch: &mut Scratch) -> String {
    let mut c = Command::new(path);
    c.arg("--version").envs(env.iter().map(|(k, v)| (k, v)));
    match proc::run(&mut c, scratch, Duration::from_secs(20)) {
        Ok(d) if d.status.success() => d.stdout.lines().next().unwrap_or("").trim().to_string(),
        Ok(d) => format!("? ({})", d.status),
        Err(e) => format!("? ({e})"),
    }
}

/// berth at `berth`, then runc, crun (shimmed with `shim` where the host needs it) and youki
/// where installed, less the peers not named in `only`.
pub fn discover(
    berth: &Path,
    shim: Option<&Path>,
    only: Option<&[String]>,
    roots: &Path,
    scratch: &mut Scratch,
) -> Vec<Runtime> {
    let home_youki = std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cargo/bin/youki"));
    let found: [(&'static str, Option<PathBuf>); 4] = [
        (
            "berth",
            Some(berth.to_path_buf()).filter(|p| is_executable(p)),
        ),
        ("runc", in_path("runc")),
        ("crun", in_path("crun")),
        (
            "youki",
            in_path("youki").or(home_youki.filter(|p| is_executable(p))),
        ),
    ];
    let mut out = Vec::new();
    for (key, path) in found {
        let mut rt = Runtime {
            key,
            label: key.to_string(),
            path,
            absent: String::new(),
            env: Vec::new(),
            root: roots.join(key),
            version: String::new(),
            skipped: false,
        };
        let wanted = key == "berth" || only.is_none_or(|o| o.iter().any(|n| n == key));
        if !wanted {
            rt.skipped = true;
            rt.absent = "skipped (--runtimes)".into();
        } else if rt.path.is_none() {
            rt.absent = if key == "berth" {
                format!("{} not built", berth.display())
            } else {
                "not installed".into()
            };
        }
        if key == "crun" && rt.installed() && crun_needs_shim() {
            match shim.filter(|s| s.is_file()) {
                Some(s) => {
                    rt.label = "crun (shimmed)".into();
                    rt.env
                        .push(("LD_PRELOAD".into(), s.to_string_lossy().into_owned()));
                }
                None => {
                    rt.skipped = true;
                    rt.absent = "refuses this hybrid host; no shim (--crun-shim)".into();
                }
            }
        }
        if let Some(p) = &rt.path {
            rt.version = version(p, &rt.env, scratch);
        }
        out.push(rt);
    }
    out
}
