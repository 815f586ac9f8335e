//! Running the commands the benchmark measures or needs: with a deadline (a command past it is
//! a hang, killed with what it started), stopped on SIGINT/SIGTERM, output to files (a runtime's
//! `create` leaves a container process holding its stdio: a pipe would never reach EOF).

use std::collections::HashMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

static INTERRUPTED: AtomicBool = AtomicBool::new(false);
static SIGNAL: AtomicU64 = AtomicU64::new(0);
static CLEANING: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(sig: libc::c_int) {
    SIGNAL.store(sig as u64, Ordering::SeqCst);
    INTERRUPTED.store(true, Ordering::SeqCst);
}

/// SIGINT and SIGTERM only raise a flag: every wait checks it, stops what it runs and the
/// benchmark cleans up before it exits.
pub fn install_signal_handlers() {
    for sig in [libc::SIGINT, libc::SIGTERM] {
        // SAFETY: the handler only stores to atomics, which is async-signal-safe.
        unsafe {
            libc::signal(sig, on_signal as *const () as libc::sighandler_t);
        }
    }
}

/// True once SIGINT or SIGTERM came, until the cleanup starts: the cleanup's own commands
/// must run to their end.
pub fn interrupted() -> bool {
    INTERRUPTED.load(Ordering::SeqCst) && !CLEANING.load(Ordering::SeqCst)
}

/// Whether a signal came at any time.
pub fn was_interrupted() -> bool {
    INTERRUPTED.load(Ordering::SeqCst)
}

/// From now on waits ignore SIGINT/SIGTERM (they still end only at their deadlines).
pub fn cleaning(on: bool) {
    CLEANING.store(on, Ordering::SeqCst);
}

/// The signal that interrupted the run (0 if none).
pub fn signal() -> i32 {
    SIGNAL.load(Ordering::SeqCst) as i32
}

/// Why a measurement has no figure.
#[derive(Debug)]
pub enum Fail {
    /// SIGINT or SIGTERM: stop everything, clean up, exit.
    Interrupted,
    /// A command ran past its deadline.
    Hang(String),
    /// A command failed.
    Failed(String),
}

impl std::fmt::Display for Fail {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Fail::Interrupted => write!(f, "interrupted"),
            Fail::Hang(m) => write!(f, "hang: {m}"),
            Fail::Failed(m) => write!(f, "{m}"),
        }
    }
}

pub fn failed(m: impl Into<String>) -> Fail {
    Fail::Failed(m.into())
}

/// Scratch files for command output, under the benchmark's own directory.
pub struct Scratch {
    dir: PathBuf,
    n: u64,
}

impl Scratch {
    pub fn new(dir: &Path) -> Result<Scratch, Fail> {
        std::fs::create_dir_all(dir).map_err(|e| failed(format!("{}: {e}", dir.display())))?;
        Ok(Scratch {
            dir: dir.to_path_buf(),
            n: 0,
        })
    }

    pub fn file(&mut self, what: &str) -> PathBuf {
        self.n += 1;
        self.dir.join(format!("{}-{what}", self.n))
    }
}

/// What a finished command left.
pub struct Done {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

impl Done {
    /// The command line and the end of its stderr, for an error message.
    pub fn why(&self, what: &str) -> String {
        format!("{what}: {}: {}", self.status, gist(&self.stderr))
    }
}

/// What a failed command said, in short: its lines that mention an error (a runtime's
/// backtrace, say, comes after its message), else its last lines.
pub fn gist(stderr: &str) -> String {
    let lines: Vec<&str> = stderr
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    let errors: Vec<&str> = lines
        .iter()
        .copied()
        .filter(|l| l.to_ascii_lowercase().contains("error"))
        .take(3)
        .collect();
    let pick = if errors.is_empty() {
        &lines[lines.len().saturating_sub(3)..]
    } else {
        &errors[..]
    };
    pick.join(" / ")
}

/// Runs `cmd` (stdin from /dev/null, stdout and stderr to scratch files) until it exits or
/// `timeout` passes.
pub fn run(cmd: &mut Command, scratch: &mut Scratch, timeout: Duration) -> Result<Done, Fail> {
    run_limited(cmd, scratch, timeout, None)
}

/// `run`, and with `stuck`: a hang as soon as any process under the command (but a shell) has
/// lived that long (hyperfine's runs are its children: one stuck run need not wait for the
/// whole job's deadline).
pub fn run_limited(
    cmd: &mut Command,
    scratch: &mut Scratch,
    timeout: Duration,
    stuck: Option<Duration>,
) -> Result<Done, Fail> {
    let out_path = scratch.file("stdout");
    let err_path = scratch.file("stderr");
    let out = File::create(&out_path).map_err(|e| failed(format!("scratch file: {e}")))?;
    let err = File::create(&err_path).map_err(|e| failed(format!("scratch file: {e}")))?;
    cmd.stdin(Stdio::null())
        .stdout(Stdio::from(out))
        .stderr(Stdio::from(err));
    let shown = show(cmd);
    let mut child = cmd
        .spawn()
        .map_err(|e| failed(format!("{shown}: cannot start: {e}")))?;
    let status = wait(&mut child, Instant::now() + timeout, stuck, &shown);
    let read = |p: &Path| {
        let s = std::fs::read(p).map(|b| String::from_utf8_lossy(&b).into_owned());
        let _ = std::fs::remove_file(p);
        s.unwrap_or_default()
    };
    let (stdout, stderr) = (read(&out_path), read(&err_path));
    Ok(Done {
        status: status?,
        stdout,
        stderr,
    })
}

/// Like `run`, and a non-zero exit is a failure.
pub fn run_ok(cmd: &mut Command, scratch: &mut Scratch, timeout: Duration) -> Result<Done, Fail> {
    let shown = show(cmd);
    let done = run(cmd, scratch, timeout)?;
    if done.status.success() {
        Ok(done)
    } else {
        Err(failed(done.why(&shown)))
    }
}

/// The command line, for messages.
pub fn show(cmd: &Command) -> String {
    let mut s = cmd.get_program().to_string_lossy().into_owned();
    for a in cmd.get_args() {
        s.push(' ');
        s.push_str(&a.to_string_lossy());
    }
    s
}

/// Waits for `child` until `deadline`. Past it, or when a process under the child has lived
/// longer than `stuck`, or on SIGINT/SIGTERM, the child and every process it started that is
/// still its descendant are stopped (SIGINT first on an interrupt, so hyperfine can end its own
/// runs; SIGKILL after a grace period).
pub fn wait(
    child: &mut Child,
    deadline: Instant,
    stuck: Option<Duration>,
    what: &str,
) -> Result<ExitStatus, Fail> {
    let mut next_look = Instant::now() + Duration::from_secs(1);
    loop {
        match child.try_wait() {
            Ok(Some(status)) => return Ok(status),
            Ok(None) => {}
            Err(e) => return Err(failed(format!("{what}: wait: {e}"))),
        }
        if interrupted() {
            stop(child, true);
            return Err(Fail::Interrupted);
        }
        let now = Instant::now();
        if now >= deadline {
            stop(child, false);
            return Err(Fail::Hang(format!("{what}: still running at its deadline")));
        }
        if let Some(limit) = stuck.filter(|_| now >= next_look) {
            next_look = now + Duration::from_secs(1);
            // Not the shells: each of ours is bounded, or waits only on commands checked here.
            let old = descendants(child.id() as libc::pid_t)
                .into_iter()
                .filter(|p| !is_shell(*p))
                .filter_map(|p| Some((p, age(p)?)))
                .find(|(_, a)| *a > limit);
            if let Some((pid, a)) = old {
                let cmdline = std::fs::read(format!("/proc/{pid}/cmdline"))
                    .map(|b| String::from_utf8_lossy(&b).replace('\0', " "))
                    .unwrap_or_default();
                stop(child, false);
                return Err(Fail::Hang(format!(
                    "`{}` (pid {pid}) still running after {:.0} s",
                    cmdline.trim(),
                    a.as_secs_f64()
                )));
            }
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn is_shell(pid: libc::pid_t) -> bool {
    let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
    matches!(comm.trim(), "sh" | "dash" | "bash")
}

/// A process's start time: field 22 of /proc/PID/stat, clock ticks after boot.
fn start_time(pid: libc::pid_t) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields 3.. follow the `(comm)`, which may hold spaces and parentheses.
    stat.rsplit_once(')')?
        .1
        .split_whitespace()
        .nth(19)?
        .parse()
        .ok()
}

/// How long a process has been running.
fn age(pid: libc::pid_t) -> Option<Duration> {
    let start = start_time(pid)? as f64;
    let uptime: f64 = std::fs::read_to_string("/proc/uptime")
        .ok()?
        .split_whitespace()
        .next()?
        .parse()
        .ok()?;
    // SAFETY: sysconf only reads a system constant.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    (hz > 0.0).then(|| Duration::from_secs_f64((uptime - start / hz).max(0.0)))
}

/// Stops a child we started and what it started under it, by pid.
pub fn stop(child: &mut Child, gently: bool) {
    stop_all(&mut [child], gently);
}

/// Stops children we started and what they started under them, by pid: on an interrupt
/// SIGINT first and up to 3 s for the children to end; then SIGKILL to what is left, the
/// descendants included — found before the children end (an orphan is no longer under them)
/// and matched by start time, so a reused pid is never hit.
pub fn stop_all(children: &mut [&mut Child], gently: bool) {
    let tree = |children: &mut [&mut Child]| -> Vec<(libc::pid_t, u64)> {
        children
            .iter()
            .flat_map(|c| descendants(c.id() as libc::pid_t))
            .filter_map(|p| Some((p, start_time(p)?)))
            .collect()
    };
    let mut doomed = tree(children);
    if gently {
        for c in children.iter() {
            // SAFETY: signals our own child, not reaped yet (so the pid is still ours).
            unsafe { libc::kill(c.id() as libc::pid_t, libc::SIGINT) };
        }
        let until = Instant::now() + Duration::from_secs(3);
        while Instant::now() < until {
            if children
                .iter_mut()
                .all(|c| matches!(c.try_wait(), Ok(Some(_))))
            {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    doomed.extend(tree(children));
    for (pid, started) in doomed {
        if start_time(pid) == Some(started) {
            // SAFETY: a process started under one of our children (same pid, same start time
            // as when it was found there).
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
    }
    for c in children.iter_mut() {
        let _ = c.kill();
        let _ = c.wait();
    }
}

/// Processes this run started and left running: under this process, or orphans (parent
/// init) in this process's group (which every process started under it inherits) started no
/// earlier than it. A runtime that ignores SIGINT outlives hyperfine and is no longer under
/// it. Never an ancestor, nor a sibling such as the other end of a pipe (their parent is not
/// init).
pub fn strays() -> Vec<(libc::pid_t, String)> {
    let me = std::process::id() as libc::pid_t;
    // SAFETY: getpgrp cannot fail.
    let group = unsafe { libc::getpgrp() };
    let Some(born) = start_time(me) else {
        return Vec::new();
    };
    let mine = descendants(me);
    let mut out = Vec::new();
    let Ok(rd) = std::fs::read_dir("/proc") else {
        return out;
    };
    for e in rd.flatten() {
        let Some(pid) = e
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<libc::pid_t>().ok())
        else {
            continue;
        };
        if pid == me {
            continue;
        }
        let Ok(stat) = std::fs::read_to_string(e.path().join("stat")) else {
            continue;
        };
        // After `(comm)`: state ppid pgrp ... starttime (the 20th).
        let Some((_, rest)) = stat.rsplit_once(')') else {
            continue;
        };
        let f: Vec<&str> = rest.split_whitespace().collect();
        let ppid = f.get(1).and_then(|v| v.parse::<libc::pid_t>().ok());
        let pgrp = f.get(2).and_then(|v| v.parse::<libc::pid_t>().ok());
        let started = f.get(19).and_then(|v| v.parse::<u64>().ok());
        let orphan = ppid == Some(1) && pgrp == Some(group) && started.is_some_and(|t| t >= born);
        if f.first() == Some(&"Z") || !(orphan || mine.contains(&pid)) {
            continue;
        }
        let cmdline = std::fs::read(e.path().join("cmdline"))
            .map(|b| String::from_utf8_lossy(&b).replace('\0', " "))
            .unwrap_or_default();
        out.push((pid, cmdline.trim().to_string()));
    }
    out
}

/// SIGKILL to a process found by `strays`.
pub fn kill(pid: libc::pid_t) -> std::io::Result<()> {
    // SAFETY: kill(2) on a pid this run started (see `strays`).
    if unsafe { libc::kill(pid, libc::SIGKILL) } == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// The pids whose chain of parents leads to `root` (not `root` itself).
fn descendants(root: libc::pid_t) -> Vec<libc::pid_t> {
    let mut parent: HashMap<libc::pid_t, libc::pid_t> = HashMap::new();
    if let Ok(rd) = std::fs::read_dir("/proc") {
        for e in rd.flatten() {
            let Some(pid) = e.file_name().to_str().and_then(|s| s.parse().ok()) else {
                continue;
            };
            // /proc/PID/stat: PID (COMM) STATE PPID ...; COMM may hold spaces and parens.
            let Ok(stat) = std::fs::read_to_string(e.path().join("stat")) else {
                continue;
            };
            let ppid = stat
                .rsplit_once(')')
                .and_then(|(_, rest)| rest.split_whitespace().nth(1))
                .and_then(|p| p.parse().ok());
            if let Some(ppid) = ppid {
                parent.insert(pid, ppid);
            }
        }
    }
    let mut out: Vec<libc::pid_t> = Vec::new();
    let mut frontier = vec![root];
    while let Some(p) = frontier.pop() {
        for (&c, &pp) in &parent {
            if pp == p && !out.contains(&c) {
                out.push(c);
                frontier.push(c);
            }
        }
    }
    out
}

/// Quotes a word for a POSIX shell (and for hyperfine, which splits commands the same way).
pub fn quote(s: &str) -> String {
    let plain = !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"/._-=:,+@%".contains(&b));
    if plain {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

/// A command line of quoted words.
pub fn join(words: &[&str]) -> String {
    words.iter().map(|w| quote(w)).collect::<Vec<_>>().join(" ")
}
