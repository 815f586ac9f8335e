//! Thin wrapper that drives a runtime through its CLI, always passing
//! `--root <dir>` as a global flag, capturing stdout/stderr into files and
//! enforcing a timeout.

use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

static SEQ: AtomicUsize = AtomicUsize::new(0);

/// Default per-call timeout.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(20);

#[derive(Clone, Debug)]
pub struct Runtime {
    pub path: PathBuf,
    pub root: PathBuf,
    /// Directory for captured output files.
    pub scratch: PathBuf,
    /// Hard deadline for the current case; no call may run past it.
    pub deadline: Instant,
}

#[derive(Clone, Debug)]
pub struct Out {
    pub code: Option<i32>,
    pub signal: Option<i32>,
    pub stdout: String,
    pub stderr: String,
    pub timed_out: bool,
    pub cmd: String,
    /// Peak resident set of the runtime process, in KiB (wait4's ru_maxrss; 0 if unknown).
    pub maxrss_kb: i64,
}

impl Out {
    pub fn success(&self) -> bool {
        self.code == Some(0) && !self.timed_out
    }

    /// A clean failure: the runtime exited by itself with a non-zero code.
    pub fn failed(&self) -> bool {
        !self.timed_out && matches!(self.code, Some(c) if c != 0)
    }

    pub fn status_text(&self) -> String {
        if self.timed_out {
            "timed out".into()
        } else if let Some(c) = self.code {
            format!("exit {c}")
        } else if let Some(s) = self.signal {
            format!("killed by signal {s}")
        } else {
            "did not run".into()
        }
    }

    pub fn brief(&self) -> String {
        let err = one_line(&self.stderr, 300);
        if err.is_empty() {
            format!("`{}` -> {}", self.cmd, self.status_text())
        } else {
            format!("`{}` -> {}; stderr: {}", self.cmd, self.status_text(), err)
        }
    }
}

pub fn one_line(s: &str, max: usize) -> String {
    let s: String = s.trim().replace('\n', " | ");
    if s.chars().count() > max {
        let t: String = s.chars().take(max).collect();
        format!("{t}...")
    } else {
        s
    }
}

#[derive(Default)]
pub struct Opts {
    pub stdin: Option<PathBuf>,
    pub stdout: Option<PathBuf>,
    pub stderr: Option<PathBuf>,
    /// Files that become fds 3, 4, ... in the runtime process.
    pub extra_fds: Vec<File>,
    /// Extra global flags placed before the subcommand (e.g. `--log f`).
    pub global: Vec<String>,
    /// Extra environment for the runtime process.
    pub env: Vec<(String, String)>,
    pub timeout: Option<Duration>,
}

impl Runtime {
    pub fn exec(&self, args: &[&str]) -> Out {
        self.exec_opts(args, Opts::default())
    }

    pub fn exec_opts(&self, args: &[&str], opts: Opts) -> Out {
        let timeout = opts.timeout;
        match self.spawn(args, opts) {
            Ok(r) => r.wait(timeout),
            Err(out) => out,
        }
    }

    /// Starts the runtime without waiting for it (in its own process group); `Running::wait`
    /// collects it. The error is an `Out` saying why it could not run.
    pub fn spawn(&self, args: &[&str], opts: Opts) -> Result<Running, Out> {
        let n = SEQ.fetch_add(1, Ordering::SeqCst);
        let out_path = opts
            .stdout
            .clone()
            .unwrap_or_else(|| self.scratch.join(format!("rt-{n}.stdout")));
        let err_path = opts
            .stderr
            .clone()
            .unwrap_or_else(|| self.scratch.join(format!("rt-{n}.stderr")));
        let mut cmdline = format!("{} --root {}", self.path.display(), self.root.display());
        if crate::host::systemd_mode() {
            cmdline.push_str(" --systemd-cgroup");
        }
        for g in &opts.global {
            cmdline.push(' ');
            cmdline.push_str(g);
        }
        for a in args {
            cmdline.push(' ');
            cmdline.push_str(a);
        }
        match self.spawn_child(args, &opts, &out_path, &err_path) {
            Ok(child) => Ok(Running {
                child,
                cmd: cmdline,
                out_path,
                err_path,
                started: Instant::now(),
                deadline: self.deadline,
            }),
            Err(e) => Err(Out {
                code: None,
                signal: None,
                stdout: String::new(),
                stderr: format!("failed to execute runtime: {e}"),
                timed_out: false,
                cmd: cmdline,
                maxrss_kb: 0,
            }),
        }
    }

    fn spawn_child(
        &self,
        args: &[&str],
        opts: &Opts,
        out_path: &Path,
        err_path: &Path,
    ) -> io::Result<Child> {
        let mut cmd = Command::new(&self.path);
        cmd.arg("--root").arg(&self.root);
        if crate::host::systemd_mode() {
            cmd.arg("--systemd-cgroup");
        }
        cmd.args(&opts.global).args(args);
        cmd.envs(opts.env.iter().map(|(k, v)| (k, v)));
        match &opts.stdin {
            Some(p) => cmd.stdin(File::open(p)?),
            None => cmd.stdin(Stdio::null()),
        };
        cmd.stdout(File::create(out_path)?);
        cmd.stderr(File::create(err_path)?);
        cmd.process_group(0);
        // Move the extra fds out of the low range first so dup2 onto 3, 4, ...
        // never collides with a source fd (and always clears CLOEXEC).
        let mut high = Vec::new();
        for f in &opts.extra_fds {
            let fd = unsafe { libc::fcntl(f.as_raw_fd(), libc::F_DUPFD_CLOEXEC, 100) };
            if fd < 0 {
                return Err(io::Error::last_os_error());
            }
            high.push(fd);
        }
        if !high.is_empty() {
            let targets = high.clone();
            unsafe {
                cmd.pre_exec(move || {
                    for (i, fd) in targets.iter().enumerate() {
                        if libc::dup2(*fd, 3 + i as i32) < 0 {
                            return Err(io::Error::last_os_error());
                        }
                    }
                    Ok(())
                });
            }
        }
        let spawned = cmd.spawn();
        for fd in &high {
            unsafe { libc::close(*fd) };
        }
        spawned
    }
}

/// A runtime invocation that has been started and not yet collected.
pub struct Running {
    child: Child,
    pub cmd: String,
    out_path: PathBuf,
    err_path: PathBuf,
    pub started: Instant,
    deadline: Instant,
}

impl Running {
    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    /// SIGKILL to the runtime process only (not its process group).
    pub fn kill9(&self) {
        unsafe { libc::kill(self.pid(), libc::SIGKILL) };
    }

    /// Has it exited? Does not reap it.
    pub fn exited(&self) -> bool {
        let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
        let r = unsafe {
            libc::waitid(
                libc::P_PID,
                self.pid() as libc::id_t,
                &mut info,
                libc::WEXITED | libc::WNOHANG | libc::WNOWAIT,
            )
        };
        r == 0 && unsafe { info.si_pid() } != 0
    }

    /// Waits for the runtime (SIGKILLing its process group at the timeout or the case
    /// deadline), with its peak RSS from wait4.
    pub fn wait(self, timeout: Option<Duration>) -> Out {
        let limit = timeout
            .unwrap_or(CALL_TIMEOUT)
            .min(self.deadline.saturating_duration_since(self.started));
        let pid = self.pid();
        let mut out = Out {
            code: None,
            signal: None,
            stdout: String::new(),
            stderr: String::new(),
            timed_out: false,
            cmd: self.cmd.clone(),
            maxrss_kb: 0,
        };
        // Fine-grained at first: the reliability cases time runtime steps with this.
        let mut sleep = Duration::from_micros(100);
        loop {
            let mut status = 0;
            let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
            let r = unsafe { libc::wait4(pid, &mut status, libc::WNOHANG, &mut ru) };
            if r == pid {
                let st = std::process::ExitStatus::from_raw(status);
                out.code = st.code();
                out.signal = st.signal();
                out.maxrss_kb = ru.ru_maxrss;
                break;
            }
            if r < 0 {
                let e = io::Error::last_os_error();
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                out.stderr = format!("wait4: {e}");
                return out;
            }
            if !out.timed_out && self.started.elapsed() >= limit {
                unsafe { libc::kill(-pid, libc::SIGKILL) };
                unsafe { libc::kill(pid, libc::SIGKILL) };
                out.timed_out = true;
            }
            std::thread::sleep(sleep);
            sleep = (sleep * 2).min(Duration::from_millis(5));
        }
        out.stdout = read_lossy(&self.out_path);
        out.stderr = read_lossy(&self.err_path);
        out
    }
}

pub fn read_lossy(p: &Path) -> String {
    std::fs::read(p)
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or_default()
}
