//! `exec`: a new process in an existing container, as containerd's shim, conmon and `docker
//! exec` ask for it (`--process process.json`, or runc's flags).
//!
//! The parent pins the container's init with a pidfd, sets its own pid namespace for children
//! to the container's, and clones one child. The child joins the init's other namespaces with a
//! single `setns(pidfd)` (user first, all or none, done by the kernel), waits until the parent
//! has put it in the container's cgroup, then goes through the same `process` steps as the
//! init (terminal, rlimits, cwd, labels, seccomp, user, capabilities, no_new_privs) and execs.
//! The parent learns of the execve by EOF on the close-on-exec sync socket.

use std::fs;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};

use nix::sched::CloneFlags;
use nix::sys::signal::{kill, SigmaskHow, Signal};
use nix::sys::wait::waitpid;
use nix::unistd::Pid;
use oci_spec::runtime::{Capabilities, Capability, Process, Spec};

use crate::channel::{self, Msg};
use crate::error::{Error, Result, SysContext};
use crate::init::{self, ExecContext, ProcessSetup};
use crate::lifecycle::{write_pid_file, Context};
use crate::state::{self, ContainerState, OciState, StateDir, Status};
use crate::{cgroups, console, foreground, logging, lsm, seccomp, sys};

/// `exec`'s flags, as runc has them.
#[derive(Default, Clone)]
pub struct ExecOptions {
    /// A process.json (the spec's `process` object); the flags below that describe the process
    /// are then ignored, as in runc.
    pub process: Option<PathBuf>,
    pub args: Vec<String>,
    pub tty: bool,
    pub console_socket: Option<PathBuf>,
    pub detach: bool,
    pub pid_file: Option<PathBuf>,
    pub env: Vec<String>,
    pub cwd: Option<PathBuf>,
    /// `uid[:gid]`
    pub user: Option<String>,
    pub additional_gids: Vec<u32>,
    pub caps: Vec<String>,
    pub no_new_privs: bool,
    pub apparmor: Option<String>,
    pub process_label: Option<String>,
    pub preserve_fds: u32,
    /// `path` or `controller:path`: sub-cgroups of the container's to run in.
    pub cgroup: Vec<String>,
    pub ignore_paused: bool,
}

/// Runs a process in container `id`. Detached: returns 0 once it has exec'd (its pid in
/// `pid_file`). Otherwise waits for it, forwarding signals, and returns its exit status
/// (128+n when killed by signal n).
pub fn exec(ctx: &Context, id: &str, opts: &ExecOptions) -> Result<i32> {
    let dir = StateDir::open(&ctx.root, id)?;
    let st = dir.load()?;
    match st.status(&dir.dir) {
        Status::Stopped => return Err(Error::Other("cannot exec in a stopped container".into())),
        Status::Paused if !opts.ignore_paused => {
            return Err(Error::Other(
                "cannot exec in a paused container (use --ignore-paused to override)".into(),
            ))
        }
        _ => {}
    }
    let process = process_for(&st.config, opts)?;
    let filter = logging::timed("exec: the container's seccomp program", || {
        let Some(profile) = st
            .config
            .linux()
            .as_ref()
            .and_then(|l| l.seccomp().as_ref())
        else {
            return Ok(None);
        };
        // The program create compiled, if it kept one; else the profile compiled again.
        let kept = std::fs::read(dir.dir.join(state::SECCOMP_PROGRAM))
            .ok()
            .and_then(|b| seccomp::Filter::from_bytes(&b));
        match kept {
            Some(f) => Ok(Some(f)),
            None => seccomp::compile(profile).map(Some),
        }
    })?;
    let labels = lsm::plan(
        process.apparmor_profile().as_deref(),
        process.selinux_label().as_deref(),
        None,
    );
    let terminal = process.terminal().unwrap_or(false);
    if terminal && opts.detach && opts.console_socket.is_none() {
        return Err(Error::config(
            "process.terminal",
            "a detached exec with a terminal needs --console-socket",
        ));
    }
    // A foreground exec with a terminal and no socket proxies the pty itself, as `run` does.
    let own_console = if terminal && opts.console_socket.is_none() {
        Some(foreground::OwnConsole::new(&format!("{id}-exec"))?)
    } else {
        None
    };
    let socket = match (terminal, &opts.console_socket, &own_console) {
        (false, _, _) => None,
        (true, Some(p), _) => Some(console::connect(p)?),
        (true, None, Some(c)) => Some(console::connect(&c.path)?),
        (true, None, None) => None,
    };

    // The init, pinned: from here a recycled pid cannot stand in for it.
    let pidfd = sys::pidfd_open(st.oci.pid).map_err(|_| not_running())?;
    if !state::init_alive(st.oci.pid, st.init_start_time) {
        return Err(not_running());
    }
    let differ = namespaces_to_join(st.oci.pid)?;
    let chroot = if differ.contains(CloneFlags::CLONE_NEWNS) {
        None
    } else {
        init_root_if_chrooted(st.oci.pid)?
    };
    logging::debug(&format!("exec {id}: joining namespaces {differ:?}"));

    if !opts.detach {
        // Blocked before the clone, so no signal meant for the process is lost.
        nix::sys::signal::sigprocmask(
            SigmaskHow::SIG_BLOCK,
            Some(&foreground::forwarded_signals()),
            None,
        )
        .step("block signals")?;
    }
    let (parent_chan, child_chan) = channel::pair()?;
    let ectx = ExecContext {
        setup: ProcessSetup {
            process: &process,
            chan: &child_chan,
            console: socket.as_ref(),
            bind_console: false,
            seccomp: filter.as_ref(),
            labels: &labels,
            preserve_fds: opts.preserve_fds,
        },
        init: &pidfd,
        join: differ & !CloneFlags::CLONE_NEWPID,
        chroot: chroot.as_ref(),
    };
    let lock_fd = dir.lock_fd();
    let parent_end = parent_chan.raw();
    let pid = clone_into_pid_ns(&pidfd, differ.contains(CloneFlags::CLONE_NEWPID), || {
        // The lock is berth's, not the process's, however long its set-up takes.
        let _ = nix::unistd::close(lock_fd);
        let _ = nix::unistd::close(parent_end);
        init::run_exec(&ectx)
    })?;
    drop(child_chan);
    drop(socket);
    let kill_child = |e: Error| {
        let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
        let _ = waitpid(Pid::from_raw(pid), None);
        e
    };
    logging::debug(&format!("exec {id}: cloned process {pid}"));
    let setup = || -> Result<()> {
        logging::timed("exec: join the container's cgroup", || {
            cgroups::join_existing(&st.cgroup_path, pid, &opts.cgroup)
        })?;
        parent_chan.send(&Msg::Go { pid })?;
        // EOF: the socket is close-on-exec, so the process has exec'd (or died trying).
        while let Some((msg, fds)) = parent_chan.recv()? {
            match msg {
                Msg::SeccompFd => {
                    hand_to_agent(filter.as_ref(), &st, pid, fds)?;
                    parent_chan.send(&Msg::SeccompDone)?;
                }
                Msg::Error(e) => return Err(Error::Child(e)),
                other => {
                    return Err(Error::Protocol(format!(
                        "unexpected message {other:?} from the exec'd process"
                    )))
                }
            }
        }
        if let Some(p) = &opts.pid_file {
            write_pid_file(p, pid)?;
        }
        Ok(())
    };
    logging::timed("exec: set up the process until its execve", setup).map_err(kill_child)?;
    drop(dir);
    logging::debug(&format!("exec {id}: process {pid} started"));
    if opts.detach {
        return Ok(0);
    }
    let master = own_console
        .as_ref()
        .map(|c| c.receive_master())
        .transpose()
        .map_err(kill_child)?;
    drop(own_console);
    foreground::wait(pid, master)
}

fn not_running() -> Error {
    Error::Other("cannot exec in a stopped container".into())
}

/// The namespaces the init is in and berth is not, compared by nsfs inode.
fn namespaces_to_join(pid: i32) -> Result<CloneFlags> {
    use std::os::unix::fs::MetadataExt;
    const KINDS: [(&str, CloneFlags); 8] = [
        ("user", CloneFlags::CLONE_NEWUSER),
        ("mnt", CloneFlags::CLONE_NEWNS),
        ("pid", CloneFlags::CLONE_NEWPID),
        ("net", CloneFlags::CLONE_NEWNET),
        ("ipc", CloneFlags::CLONE_NEWIPC),
        ("uts", CloneFlags::CLONE_NEWUTS),
        ("cgroup", CloneFlags::CLONE_NEWCGROUP),
        ("time", CloneFlags::from_bits_retain(libc::CLONE_NEWTIME)),
    ];
    let mut flags = CloneFlags::empty();
    for (name, flag) in KINDS {
        let theirs = Path::new("/proc")
            .join(pid.to_string())
            .join("ns")
            .join(name);
        let ours = Path::new("/proc/self/ns").join(name);
        let (Ok(t), Ok(o)) = (fs::metadata(&theirs), fs::metadata(&ours)) else {
            // A kernel without this namespace kind: nothing to join.
            if Path::new("/proc/self/ns").join(name).exists() {
                return Err(Error::io(
                    "exec: read the container's namespaces",
                    theirs,
                    std::io::Error::from_raw_os_error(libc::ESRCH),
                ));
            }
            continue;
        };
        if (t.dev(), t.ino()) != (o.dev(), o.ino()) {
            flags |= flag;
        }
    }
    Ok(flags)
}

/// A container sharing berth's mount namespace lives in a chroot: its root, opened, if so.
fn init_root_if_chrooted(pid: i32) -> Result<Option<fs::File>> {
    use std::os::unix::fs::MetadataExt;
    let path = format!("/proc/{pid}/root");
    let theirs = fs::metadata(&path).map_err(|e| Error::io("exec: the init's root", &path, e))?;
    let ours = fs::metadata("/").map_err(|e| Error::io("exec: berth's root", "/", e))?;
    if (theirs.dev(), theirs.ino()) == (ours.dev(), ours.ino()) {
        return Ok(None);
    }
    fs::File::open(&path)
        .map(Some)
        .map_err(|e| Error::io("exec: open the init's root", &path, e))
}

/// Clones the exec child, in the container's pid namespace when `join_pid` (a pid namespace
/// applies to children only, so the parent sets it for its children around the clone and puts
/// its own back at once).
fn clone_into_pid_ns(pidfd: &OwnedFd, join_pid: bool, child: impl FnOnce()) -> Result<i32> {
    let own = if join_pid {
        let own = fs::File::open("/proc/self/ns/pid")
            .map_err(|e| Error::io("exec: open own pid namespace", "/proc/self/ns/pid", e))?;
        nix::sched::setns(pidfd, CloneFlags::CLONE_NEWPID)
            .step("exec: enter the container's pid namespace for children")?;
        Some(own)
    } else {
        None
    };
    // SAFETY: berth is single-threaded; the child never returns (run_exec ends in execve or
    // _exit).
    let cloned = unsafe { sys::clone_fork(0) };
    if let Ok(0) = cloned {
        child();
        // `child` ends in execve or _exit; never run on as a second parent.
        std::process::abort();
    }
    if let Some(own) = own {
        nix::sched::setns(&own, CloneFlags::CLONE_NEWPID)
            .step("exec: restore berth's pid namespace for children")?;
    }
    cloned.step("exec: clone the process")
}

/// Gives a notifying filter's listener fd to the agent, as `create` does, with the state of
/// the running container and the exec'd process's pid.
fn hand_to_agent(
    filter: Option<&seccomp::Filter>,
    st: &ContainerState,
    pid: i32,
    fds: Vec<OwnedFd>,
) -> Result<()> {
    let fd = fds
        .into_iter()
        .next()
        .ok_or_else(|| Error::Protocol("SeccompFd came without a file descriptor".into()))?;
    let listener = filter
        .and_then(|f| f.listener.as_ref())
        .ok_or_else(|| Error::Protocol("SeccompFd without a listenerPath".into()))?;
    let oci = OciState {
        status: Status::Running,
        ..st.oci.clone()
    };
    let json = serde_json::to_string(&oci).map_err(|e| Error::Other(e.to_string()))?;
    seccomp::send_to_agent(listener, &fd, pid, &json)
}

/// The process to run: process.json as given, or the container's own process with runc's
/// flag overrides.
pub fn process_for(config: &Spec, opts: &ExecOptions) -> Result<Process> {
    let process = match &opts.process {
        Some(path) => {
            let data = fs::read(path).map_err(|e| Error::io("read process.json", path, e))?;
            return parse_named(&data, &path.display().to_string());
        }
        None => from_flags(config, opts)?,
    };
    check_process(process)
}

/// A `--process` file's bytes as a process, checked as `process_for` checks it. Pure: the fuzz
/// target runs it.
pub fn parse_process(data: &[u8]) -> Result<Process> {
    parse_named(data, "process.json")
}

/// `file` names the input in a parse error (the path given to `--process`).
fn parse_named(data: &[u8], file: &str) -> Result<Process> {
    let process =
        serde_json::from_slice::<Process>(data).map_err(|e| Error::config(file, e.to_string()))?;
    check_process(process)
}

fn check_process(process: Process) -> Result<Process> {
    if process.args().as_ref().is_none_or(|a| a.is_empty()) {
        return Err(Error::config("process.args", "empty: nothing to exec"));
    }
    if !process.cwd().is_absolute() {
        return Err(Error::config(
            "process.cwd",
            format!("{} is not absolute", process.cwd().display()),
        ));
    }
    Ok(process)
}

fn from_flags(config: &Spec, opts: &ExecOptions) -> Result<Process> {
    let mut p = config.process().clone().unwrap_or_default();
    p.set_args(Some(opts.args.clone()));
    if let Some(cwd) = &opts.cwd {
        p.set_cwd(cwd.clone());
    }
    if let Some(a) = &opts.apparmor {
        p.set_apparmor_profile(Some(a.clone()));
    }
    if let Some(l) = &opts.process_label {
        p.set_selinux_label(Some(l.clone()));
    }
    // Later values win, so `-e` overrides the container's own variable of the same name.
    let mut env: Vec<String> = p.env().clone().unwrap_or_default();
    for e in &opts.env {
        let key = e.split('=').next().unwrap_or(e);
        env.retain(|old| old.split('=').next() != Some(key));
        env.push(e.clone());
    }
    p.set_env(Some(env));
    p.set_terminal(Some(opts.tty));
    if opts.no_new_privs {
        p.set_no_new_privileges(Some(true));
    }
    let mut user = p.user().clone();
    if let Some(u) = &opts.user {
        let (uid, gid) = match u.split_once(':') {
            Some((a, b)) => (a, Some(b)),
            None => (u.as_str(), None),
        };
        let num = |s: &str| {
            s.parse::<u32>()
                .map_err(|_| Error::config("--user", format!("{u:?} is not uid[:gid] (numbers)")))
        };
        user.set_uid(num(uid)?);
        user.set_gid(gid.map(num).transpose()?.unwrap_or(0));
    }
    if !opts.additional_gids.is_empty() {
        let mut gids = user.additional_gids().clone().unwrap_or_default();
        gids.extend(&opts.additional_gids);
        user.set_additional_gids(Some(gids));
    }
    p.set_user(user);
    if !opts.caps.is_empty() {
        let mut caps = p.capabilities().clone().unwrap_or_default();
        let added: Capabilities = opts
            .caps
            .iter()
            .map(|c| parse_cap(c))
            .collect::<Result<_>>()?;
        let grow = |set: &Option<Capabilities>| {
            let mut s = set.clone().unwrap_or_default();
            s.extend(added.iter().cloned());
            Some(s)
        };
        let inheritable = caps.inheritable().clone().unwrap_or_default();
        caps.set_bounding(grow(caps.bounding()));
        caps.set_effective(grow(caps.effective()));
        caps.set_permitted(grow(caps.permitted()));
        // Ambient only for what is also inheritable: the kernel refuses the rest.
        let mut ambient = caps.ambient().clone().unwrap_or_default();
        ambient.extend(added.iter().filter(|c| inheritable.contains(c)).cloned());
        caps.set_ambient(Some(ambient));
        p.set_capabilities(Some(caps));
    }
    Ok(p)
}

fn parse_cap(name: &str) -> Result<Capability> {
    serde_json::from_value(serde_json::Value::String(name.to_string()))
        .map_err(|_| Error::config("--cap", format!("{name:?} is not a capability")))
}
